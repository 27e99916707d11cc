//! Media the box terminates itself, for CTI applications that do not (`answer` with
//! `"media": "box"`, `play`, `collect_digits`, `stop_media`, `send_digits`), and the
//! media path's events routed to the call that owns each stream (music on hold too):
//! an RTP timeout ends the call, a failed stream frees its port, digits and the end
//! of a prompt go to the application controlling the call. Part of the B2BUA.

use super::table::{branch, Action, B2bua, CallTimer, ClientTxn, Ctx, Purpose};
use super::cti::{call_id_of, AppMedia, CtiError, CtiState};
use super::end::End;
use super::leg::{self, Side};
use crate::config::{Codec, Config};
use crate::core::cti::wire::{CollectEnd, EndReason, ErrorCode, EventKind, MediaInfo};
use crate::core::media::tone::ToneKind;
use crate::core::sdp::{self, Direction};
use crate::core::sip::{Method, Response};
use crate::core::{MediaCmd, MediaEvent, MediaSource, StreamId};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The box's own RTP termination on a call at a CTI device.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BoxMedia {
    /// Its port from `[media]`'s range, booked until the call ends (or the stream fails).
    pub port: u16,
    /// The box's address in the session description.
    pub ip: IpAddr,
    /// The far end's RTP address.
    pub remote: SocketAddr,
    pub codec: Codec,
    pub dtmf: Option<u8>,
    /// The far end sends its media here (answered with box media, or the re-INVITE
    /// that moved it here was accepted).
    pub ready: bool,
    /// The stream open at the media path, if any (a new id each time it opens after a
    /// `stop_media`; a `play` on an open stream changes it in place).
    pub stream: Option<StreamId>,
    /// What it plays; silence when none.
    pub source: Option<MediaSource>,
    pub collect: Option<Collect>,
}

/// A `collect_digits` under way.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Collect {
    pub max: u32,
    pub terminator: Option<char>,
    pub inter_digit: Duration,
    pub digits: String,
}

/// What `collect_digits` asks for.
#[derive(Clone, Copy, Debug)]
pub struct CollectSpec {
    pub max: u32,
    pub terminator: Option<char>,
    pub inter_digit: Duration,
    pub first_digit: Option<Duration>,
}

/// Counters an operator reads on /status.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CallStats {
    /// Calls ended because RTP stopped on a stream the box terminates.
    pub calls_ended_rtp_timeout: u64,
    /// Box streams (music on hold, CTI box media) that failed.
    pub media_failed: u64,
    /// Answered calls ended because a party no longer knew the dialog (481, 408 or
    /// no answer to the idle probe, idle.rs).
    pub calls_ended_idle: u64,
}

/// Tone names `play` accepts (`congestion` is reorder).
const TONES: [(&str, ToneKind); 6] = [
    ("dial", ToneKind::Dial),
    ("ringback", ToneKind::Ringback),
    ("busy", ToneKind::Busy),
    ("reorder", ToneKind::Reorder),
    ("congestion", ToneKind::Reorder),
    ("call_waiting", ToneKind::CallWaiting),
];

/// What `play`'s `prompt` names: `moh`, a tone, or a `.wav` file name inside
/// `[media] prompts_dir` (one name: no `/`, `\`, leading dot, so never outside it).
pub fn prompt_source(cfg: &Config, name: &str) -> Result<MediaSource, CtiError> {
    if name == "moh" {
        return Ok(MediaSource::MusicOnHold);
    }
    if let Some((_, k)) = TONES.iter().find(|(n, _)| *n == name) {
        return Ok(MediaSource::Tone(*k));
    }
    let shown: String = name.chars().take(64).collect();
    let is_wav = name.len() > 4 && name.get(name.len() - 4..).is_some_and(|e| e.eq_ignore_ascii_case(".wav"));
    if !is_wav {
        let tones: Vec<&str> = TONES.iter().map(|(n, _)| *n).collect();
        return Err((ErrorCode::BadField, format!("prompt {shown:?} is neither a .wav file name nor moh nor a tone ({})", tones.join(", "))));
    }
    if name.contains(['/', '\\']) || name.starts_with('.') || name.chars().any(char::is_control) {
        return Err((ErrorCode::BadField, format!("prompt {shown:?} must be a file name inside the prompts directory (no '/', '\\', or leading '.')")));
    }
    Ok(MediaSource::Prompt(cfg.media.prompts_dir.join(name)))
}

impl B2bua {
    /// A new stream id, owned by call `id`.
    fn new_stream(&mut self, id: u64) -> StreamId {
        self.next_stream += 1;
        let s = StreamId(self.next_stream);
        self.streams.insert(s, id);
        s
    }

    /// A call at a CTI device this application has open, for a media request.
    fn cti_media_call(&self, call: &str, device_ok: &dyn Fn(&str) -> bool) -> Result<u64, CtiError> {
        let id = call_id_of(call).filter(|id| self.calls.contains_key(id));
        let Some(id) = id else { return Err((ErrorCode::UnknownCall, format!("no call {call:?}"))) };
        let c = &self.calls[&id];
        match c.cti() {
            Some(e) if device_ok(&e.device) => {}
            _ if c.watchers.iter().any(|w| device_ok(w)) => {
                return Err((ErrorCode::InvalidState, format!("call {call:?} is at a phone, which carries its own audio; the box plays only on calls at a CTI route point or port")));
            }
            _ => return Err((ErrorCode::UnknownCall, format!("call {call:?} is not at a device you have open"))),
        }
        Ok(id)
    }

    /// The call must be connected for the box to play or collect on it.
    fn cti_media_connected(&self, id: u64, call: &str) -> Result<(), CtiError> {
        match self.calls.get(&id).and_then(|c| c.cti()).map(|e| e.state) {
            Some(CtiState::Connected) => Ok(()),
            Some(CtiState::Offered) => Err((ErrorCode::InvalidState, format!("call {call:?} is not answered (answer it, with \"media\": \"box\" for the box to terminate its media)"))),
            _ => Err((ErrorCode::InvalidState, format!("call {call:?} is held"))),
        }
    }

    /// Box media for `answer` with `"media": "box"`: RTP from the far end at
    /// `ip:port` (the 200 OK's SDP), opened at once with silence and digit detection.
    pub(super) fn box_media_answered(&mut self, id: u64, ip: IpAddr, port: u16, remote: SocketAddr, codec: Codec, dtmf: Option<u8>) {
        let Some(c) = self.calls.get_mut(&id) else { return };
        c.state.set_box_media(BoxMedia { port, ip, remote, codec, dtmf, ready: true, stream: None, source: None, collect: None });
        self.box_start(id);
    }

    /// Opens the box's stream (or changes what it plays) once the far end sends to it.
    fn box_start(&mut self, id: u64) {
        let opened = match self.calls.get(&id).and_then(|c| c.state.box_media()) {
            Some(b) if b.ready => b.stream,
            _ => return,
        };
        let stream = match opened {
            Some(s) => s,
            None => self.new_stream(id),
        };
        let Some(b) = self.calls.get_mut(&id).and_then(|c| c.state.box_media_mut()) else { return };
        b.stream = Some(stream);
        let source = b.source.clone().unwrap_or(MediaSource::Silence);
        let (local_port, remote, codec, dtmf_pt) = (b.port, b.remote, b.codec, b.dtmf);
        self.out.push(Action::Media(MediaCmd::Play { stream, local_port, remote, codec, source }));
        if opened.is_none() {
            self.out.push(Action::Media(MediaCmd::CollectDigits { stream, dtmf_pt }));
        }
    }

    /// Makes sure the call has box media: on a call answered with the application's
    /// own media, a re-INVITE asks the far end to send to a port of the box.
    fn ensure_box_media(&mut self, cx: &mut Ctx<'_>, id: u64, call: &str) -> Result<(), CtiError> {
        let Some(c) = self.calls.get(&id) else { return Err((ErrorCode::UnknownCall, format!("no call {call:?}"))) };
        if c.state.box_media().is_some() {
            return Ok(());
        }
        if c.relaying.is_some() {
            return Err((ErrorCode::InvalidState, format!("call {call:?} is being renegotiated; try again")));
        }
        let Some(end) = c.cti() else { return Err((ErrorCode::InvalidState, format!("call {call:?} does not end at a CTI device"))) };
        let Some((rip, rport, codec, _, dtmf)) = end.agreed else { return Err((ErrorCode::InvalidState, format!("call {call:?} has no media"))) };
        let side = end.far();
        let Some(port) = self.allocate_port(cx) else {
            return Err((ErrorCode::Capacity, "no free RTP port in [media]'s range".into()));
        };
        let c = self.calls.get_mut(&id).expect("checked");
        let end = c.cti_mut().expect("checked");
        end.sdp_version += 1;
        let version = end.sdp_version;
        let user = if side == Side::A { c.dialled.clone() } else { c.caller_dn.clone() };
        let leg = if side == Side::A { c.a.leg_mut() } else { c.b.as_mut().and_then(End::leg_mut) };
        let request = leg.filter(|l| l.confirmed).and_then(|l| {
            let ip = l.peer.local.ip();
            let mut req = l.request(Method::Invite, &branch(cx.rng))?;
            leg::set_contact(&mut req.headers, l.contact(&user));
            req.set_body("application/sdp", sdp::body(ip, port, codec, dtmf, Direction::SendRecv, id, version));
            Some((req, l.peer, ip))
        });
        let Some((request, to, ip)) = request else {
            self.media_ports.remove(&port);
            return Err((ErrorCode::InvalidState, format!("call {call:?} is not connected")));
        };
        let remote = SocketAddr::new(rip, rport);
        c.state.set_box_media(BoxMedia { port, ip, remote, codec, dtmf, ready: false, stream: None, source: None, collect: None });
        let txn = ClientTxn(cx.rng.next_u64());
        c.relaying = Some(txn);
        self.client.insert(txn, (id, side, Purpose::BoxMedia));
        self.out.push(Action::Request { txn, request, to });
        log::info!("call {id}: the box takes over the media (re-INVITE toward port {port})");
        Ok(())
    }

    /// The far end answered the re-INVITE that moves its media to the box (`None`:
    /// the transaction timed out).
    pub(super) fn box_reinvite_answered(&mut self, cx: &mut Ctx<'_>, id: u64, side: Side, resp: Option<&Response>) {
        let Some(c) = self.calls.get_mut(&id) else { return };
        c.relaying = None;
        let ok = resp.is_some_and(|r| (200..300).contains(&r.status));
        if let (true, Some(r)) = (ok, resp) {
            let leg = if side == Side::A { c.a.leg_mut() } else { c.b.as_mut().and_then(End::leg_mut) };
            if let Some(l) = leg {
                if let Some(ack) = l.ack_for(r, &branch(cx.rng)) {
                    self.out.push(Action::Stateless { message: ack.to_bytes(), to: l.peer });
                }
            }
            let answer = sdp::parse_audio(&r.body);
            let end = match c.b.as_mut().and_then(End::cti_mut) {
                Some(e) => Some(e),
                None => c.a.cti_mut(),
            };
            let (Some(b), Some(end)) = (c.state.box_media_mut(), end) else { return };
            if let Some(a) = answer {
                b.remote = SocketAddr::new(a.ip, a.port);
            }
            b.ready = true;
            end.agreed = Some((b.remote.ip(), b.remote.port(), b.codec, AppMedia { ip: b.ip, port: b.port, codec: Some(b.codec) }, b.dtmf));
            let info = MediaInfo { remote_ip: b.remote.ip(), remote_port: b.remote.port(), codec: b.codec, local_ip: b.ip, local_port: b.port };
            let device = end.device.clone();
            self.note(&device, id, EventKind::MediaStopped);
            self.note(&device, id, EventKind::MediaStarted(info));
            self.box_start(id);
            return;
        }
        let why = match resp {
            Some(r) => format!("the far end refused to send its media to the box ({} {})", r.status, r.reason),
            None => "the far end did not answer the re-INVITE that moves its media to the box".to_string(),
        };
        log::info!("call {id}: {why}");
        if let Some(b) = c.state.take_box_media() {
            self.media_ports.remove(&b.port);
        }
        self.timers.cancel(&(id, CallTimer::Digits));
        let device = c.cti().map(|e| e.device.clone());
        if let Some(d) = device {
            self.note(&d, id, EventKind::MediaFailed { reason: why });
        }
    }

    /// `play`: the box plays a prompt, a tone or music to the far end.
    pub fn cti_play(&mut self, cx: &mut Ctx<'_>, call: &str, prompt: &str, device_ok: &dyn Fn(&str) -> bool) -> Result<(), CtiError> {
        let id = self.cti_media_call(call, device_ok)?;
        self.cti_media_connected(id, call)?;
        let source = prompt_source(cx.cfg, prompt)?;
        self.ensure_box_media(cx, id, call)?;
        if let Some(b) = self.calls.get_mut(&id).and_then(|c| c.state.box_media_mut()) {
            b.source = Some(source);
        }
        self.box_start(id);
        Ok(())
    }

    /// `collect_digits`: the box gathers the far end's digits until `max`, the
    /// terminator, or a timeout (on the engine's clock).
    pub fn cti_collect_digits(&mut self, cx: &mut Ctx<'_>, call: &str, spec: CollectSpec, device_ok: &dyn Fn(&str) -> bool) -> Result<(), CtiError> {
        let id = self.cti_media_call(call, device_ok)?;
        self.cti_media_connected(id, call)?;
        if self.calls[&id].state.box_media().is_some_and(|b| b.collect.is_some()) {
            return Err((ErrorCode::InvalidState, format!("call {call:?} is already collecting digits (stop_media ends it)")));
        }
        self.ensure_box_media(cx, id, call)?;
        let Some(b) = self.calls.get_mut(&id).and_then(|c| c.state.box_media_mut()) else { return Err((ErrorCode::Internal, "box media vanished".into())) };
        b.collect = Some(Collect { max: spec.max, terminator: spec.terminator, inter_digit: spec.inter_digit, digits: String::new() });
        let open = b.stream.is_some();
        self.timers.arm((id, CallTimer::Digits), cx.now + spec.first_digit.unwrap_or(spec.inter_digit));
        if !open {
            self.box_start(id);
        }
        Ok(())
    }

    /// `stop_media`: the box stops playing and collecting on the call (its stream
    /// closes; its port stays the call's for the next `play`).
    pub fn cti_stop_media(&mut self, call: &str, device_ok: &dyn Fn(&str) -> bool) -> Result<(), CtiError> {
        let id = self.cti_media_call(call, device_ok)?;
        let Some(b) = self.calls.get_mut(&id).and_then(|c| c.state.box_media_mut()) else {
            return Err((ErrorCode::InvalidState, format!("the box has no media on call {call:?}")));
        };
        b.source = None;
        b.collect = None;
        let stream = b.stream.take();
        self.timers.cancel(&(id, CallTimer::Digits));
        if let Some(s) = stream {
            self.streams.remove(&s);
            self.out.push(Action::Media(MediaCmd::Stop { stream: s }));
        }
        Ok(())
    }

    /// `send_digits`: RFC 4733 telephone-events to the far end, in the box's stream.
    pub fn cti_send_digits(&mut self, call: &str, digits: &str, device_ok: &dyn Fn(&str) -> bool) -> Result<(), CtiError> {
        let id = self.cti_media_call(call, device_ok)?;
        self.cti_media_connected(id, call)?;
        let b = self.calls.get(&id).and_then(|c| c.state.box_media());
        let Some((Some(stream), dtmf)) = b.map(|b| (b.stream, b.dtmf)) else {
            return Err((ErrorCode::InvalidState, format!("the box has no open stream on call {call:?} (play something first)")));
        };
        let Some(dtmf_pt) = dtmf else {
            return Err((ErrorCode::InvalidState, format!("the far end of call {call:?} did not offer telephone-event")));
        };
        self.out.push(Action::Media(MediaCmd::SendDigits { stream, digits: digits.to_string(), dtmf_pt }));
        Ok(())
    }

    /// The call's digit collection ends.
    fn collect_done(&mut self, id: u64, reason: CollectEnd) {
        self.timers.cancel(&(id, CallTimer::Digits));
        let Some(c) = self.calls.get_mut(&id) else { return };
        let Some(col) = c.state.box_media_mut().and_then(|b| b.collect.take()) else { return };
        let Some(device) = c.cti().map(|e| e.device.clone()) else { return };
        log::debug!("call {id}: digits {:?} collected ({})", col.digits, reason.as_str());
        self.note(&device, id, EventKind::DigitsCollected { digits: col.digits, reason });
    }

    /// The first-digit or inter-digit timeout ran out.
    pub(super) fn digit_timeout(&mut self, id: u64) {
        self.collect_done(id, CollectEnd::Timeout);
    }

    /// An event from the media path, for the call whose stream it is.
    pub fn handle_media(&mut self, cx: &mut Ctx<'_>, ev: MediaEvent) {
        let stream = match &ev {
            MediaEvent::Digit { stream, .. } | MediaEvent::PlayoutDone { stream } | MediaEvent::RtpTimeout { stream } | MediaEvent::Failed { stream, .. } => *stream,
        };
        let Some(&id) = self.streams.get(&stream) else {
            log::debug!("media: {ev:?} on a stream no call owns (stopped meanwhile)");
            return;
        };
        let Some(c) = self.calls.get_mut(&id) else {
            self.streams.remove(&stream);
            return;
        };
        let is_moh = c.state.moh().is_some_and(|m| m.stream == stream);
        let is_box = c.state.box_media().is_some_and(|b| b.stream == Some(stream));
        if !is_moh && !is_box {
            self.streams.remove(&stream);
            return;
        }
        let device = c.cti().map(|e| e.device.clone());
        match ev {
            MediaEvent::RtpTimeout { .. } => {
                let what = if is_moh { "music on hold" } else { "the box's media" };
                log::warn!("call {id}: no RTP for {} s on {what} (port {}); ending the call", crate::limits::MEDIA_RTP_TIMEOUT_MS / 1000, self.port_of(id, is_moh));
                self.stats.calls_ended_rtp_timeout += 1;
                if let Some(c) = self.calls.get_mut(&id) {
                    c.end_reason = Some(EndReason::Failed);
                    if let Some(e) = c.cti_mut() {
                        e.end = Some(EndReason::Failed);
                    }
                }
                self.hang_up(cx, id, None);
            }
            MediaEvent::Failed { reason, .. } => {
                self.stats.media_failed += 1;
                self.streams.remove(&stream);
                if is_moh {
                    if let Some(m) = self.calls.get_mut(&id).and_then(|c| c.state.take_moh()) {
                        self.media_ports.remove(&m.port);
                    }
                    log::warn!("call {id}: music on hold failed ({reason}); the hold stands");
                } else {
                    if let Some(b) = self.calls.get_mut(&id).and_then(|c| c.state.take_box_media()) {
                        self.media_ports.remove(&b.port);
                    }
                    self.timers.cancel(&(id, CallTimer::Digits));
                    log::warn!("call {id}: the box's media failed ({reason})");
                    if let Some(d) = device {
                        self.note(&d, id, EventKind::MediaFailed { reason });
                    }
                }
            }
            MediaEvent::Digit { digit, .. } => {
                let Some(d) = device.filter(|_| is_box) else {
                    log::debug!("call {id}: digit {digit:?} on music on hold; nobody collects it");
                    return;
                };
                self.note(&d, id, EventKind::Digit { digit });
                let Some(col) = self.calls.get_mut(&id).and_then(|c| c.state.box_media_mut()).and_then(|b| b.collect.as_mut()) else { return };
                if col.terminator == Some(digit) {
                    return self.collect_done(id, CollectEnd::Terminator);
                }
                col.digits.push(digit);
                if col.digits.chars().count() >= col.max as usize {
                    return self.collect_done(id, CollectEnd::Max);
                }
                let at = cx.now + col.inter_digit;
                self.timers.arm((id, CallTimer::Digits), at);
            }
            MediaEvent::PlayoutDone { .. } => {
                let Some(d) = device.filter(|_| is_box) else { return };
                if let Some(b) = self.calls.get_mut(&id).and_then(|c| c.state.box_media_mut()) {
                    b.source = None;
                }
                self.note(&d, id, EventKind::PlayDone);
            }
        }
    }

    fn port_of(&self, id: u64, moh: bool) -> u16 {
        let c = self.calls.get(&id);
        if moh {
            c.and_then(|c| c.state.moh()).map_or(0, |m| m.port)
        } else {
            c.and_then(|c| c.state.box_media()).map_or(0, |b| b.port)
        }
    }

    /// The call ends: its box stream stops and its port is free.
    pub(super) fn box_media_stop(&mut self, id: u64) {
        self.timers.cancel(&(id, CallTimer::Digits));
        let Some(b) = self.calls.get_mut(&id).and_then(|c| c.state.take_box_media()) else { return };
        self.media_ports.remove(&b.port);
        if let Some(s) = b.stream {
            self.streams.remove(&s);
            self.out.push(Action::Media(MediaCmd::Stop { stream: s }));
        }
    }
}

#[cfg(test)]
#[path = "box_media_tests.rs"]
mod tests;
