//! Calls that end at a CTI device (route point or port) instead of a phone: offered to
//! the application that has the device open, answered with the application's media
//! address in the SDP toward the caller, redirected through the device's calling
//! search space, held and resumed by re-INVITE, dropped; unanswered within the
//! device's timeout, or with no application, they follow Call Forward No Answer, and
//! when the application fails, Call Forward On Failure. Also the events of phone
//! lines an application watches. Part of the B2BUA; talks to CTI sessions through
//! `Action::Cti`.

use super::table::{branch, Action, B2bua, CallTimer, Ctx, Purpose};
use super::dialplan;
use super::end::End;
use super::leg::{self, Leg, Side};
use super::state::Call;
use crate::config::{DeviceKind, LineKey};
use crate::core::cti::wire::{self, CallInfo, CallState, EndReason, ErrorCode, EventKind, Media, MediaInfo};
use crate::core::sdp::{self, Direction};
use crate::core::sip::{Method, Response, SipHeaders};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::time::Duration;

/// How long a call out of an FXO line may go unanswered (the PSTN rings it).
const FXO_ANSWER_TIMEOUT: Duration = Duration::from_secs(180);

/// A CTI request refused: the error code and the sentence.
pub type CtiError = (ErrorCode, String);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CtiState {
    Offered,
    Connected,
    Held,
}

/// Media the application terminates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AppMedia {
    pub ip: IpAddr,
    pub port: u16,
    pub codec: Option<crate::config::Codec>,
}

impl From<Media> for AppMedia {
    fn from(m: Media) -> AppMedia {
        AppMedia { ip: m.ip, port: m.port, codec: m.codec }
    }
}

/// The CTI end of a call.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CtiEnd {
    pub device: String,
    pub line: LineKey,
    pub state: CtiState,
    /// Set by `set_media` (dynamic, per call) before answer.
    pub media: Option<AppMedia>,
    /// What was agreed at answer: far end and application ends.
    pub agreed: Option<(IpAddr, u16, crate::config::Codec, AppMedia, Option<u8>)>,
    pub sdp_version: u64,
    pub redirected_from: Option<String>,
    /// Placed by the application (make_call): the far end is the B leg.
    pub outgoing: bool,
    /// Media for an outgoing call, offered in the INVITE.
    pub offer_media: Option<AppMedia>,
    /// Why the call ended, when it is not a plain hang-up.
    pub end: Option<EndReason>,
}

impl CtiEnd {
    /// The SDP offer of an application-originated call: its media, every codec allowed.
    pub fn outgoing_offer(&self, id: u64, codecs: &[crate::config::Codec]) -> Option<Vec<u8>> {
        let m = self.offer_media.filter(|_| self.outgoing)?;
        let list: Vec<crate::config::Codec> = match m.codec {
            Some(c) => vec![c],
            None => codecs.to_vec(),
        };
        Some(sdp::offer(m.ip, m.port, &list, Some(101), id, self.sdp_version))
    }

    /// The leg the far end is on.
    pub fn far(&self) -> Side {
        if self.outgoing {
            Side::B
        } else {
            Side::A
        }
    }
}

/// Why the B2BUA tells a CTI session something.
#[derive(Debug)]
pub struct CtiNote {
    pub device: String,
    pub call: String,
    pub kind: EventKind,
}

pub fn call_name(id: u64) -> String {
    format!("c{id}")
}

pub fn call_id_of(name: &str) -> Option<u64> {
    name.strip_prefix('c')?.parse().ok()
}

impl B2bua {
    pub(super) fn note(&mut self, device: &str, id: u64, kind: EventKind) {
        self.out.push(Action::Cti(CtiNote { device: device.to_string(), call: call_name(id), kind }));
    }

    /// Tells every application watching this call (its CTI device, watched phones).
    pub(super) fn notify_all(&mut self, id: u64, kind: impl Fn() -> EventKind) {
        let Some(call) = self.calls.get(&id) else { return };
        let mut devices: Vec<String> = call.watchers.clone();
        if let Some(c) = call.cti() {
            devices.push(c.device.clone());
        }
        for d in devices {
            self.note(&d, id, kind());
        }
    }

    /// A call reached a line on a CTI device: offer it, or forward it if no
    /// application has the device open or it is full.
    pub(super) fn ring_cti(&mut self, cx: &mut Ctx<'_>, id: u64, key: &LineKey, device: &str) -> bool {
        let Some(dev) = cx.cfg.device(device) else { return false };
        let Some(line) = cx.cfg.line(key).cloned() else { return false };
        if !cx.cti_open.contains(device) {
            if let Some(n) = &line.forward.no_answer {
                self.forward(cx, id, key, n, "no application has the device open");
            } else {
                self.fail(id, 480, &format!("Temporarily Unavailable (no application has {device} open)"));
            }
            return true;
        }
        let (limit, timeout) = match &dev.kind {
            DeviceKind::CtiRoutePoint { max_calls, answer_timeout_s } => (*max_calls as usize, *answer_timeout_s),
            DeviceKind::CtiPort { .. } | DeviceKind::AnalogFxs { call_waiting: false, .. } => (1, line.forward.no_answer_timeout_s),
            // A second call waits while the port talks (the port says when it is busy).
            DeviceKind::AnalogFxs { call_waiting: true, .. } => (2, line.forward.no_answer_timeout_s),
            _ => return false,
        };
        let busy = self.busy_devices.contains(device) || self.calls.values().filter(|c| c.cti().is_some_and(|e| e.device == device)).count() >= limit;
        if busy {
            if let Some(n) = &line.forward.busy {
                self.forward(cx, id, key, n, "busy");
            } else {
                self.fail(id, 486, &format!("Busy Here ({device} has no free call slot)"));
            }
            return true;
        }
        // A phone still being rung is cancelled: the device is the called party now.
        self.cancel_b(cx, id);
        let Some(call) = self.calls.get_mut(&id) else { return true };
        let redirected_from = call.visited.first().filter(|f| *f != key).map(|f| f.dn.clone());
        if let Some(old) = call.b.as_ref().and_then(End::leg) {
            self.dialogs.remove(&super::table::dialog_key(&old.call_id, &old.local_tag));
        }
        call.b = Some(End::CtiDevice(CtiEnd {
            device: device.to_string(),
            line: key.clone(),
            state: CtiState::Offered,
            media: None,
            agreed: None,
            sdp_version: 1,
            redirected_from: redirected_from.clone(),
            outgoing: false,
            offer_media: None,
            end: None,
        }));
        call.ringing_line = Some(key.clone());
        let from = call.caller_dn.clone();
        let from_name = call.caller_display.clone();
        if let (Some((stx, a_req)), Some(a)) = (&call.a_invite, call.a.leg()) {
            let mut r = Response::to_request(a_req, 180, Some(&a.local_tag));
            leg::set_contact(&mut r.headers, a.contact(&call.dialled));
            self.out.push(Action::Respond(*stx, r));
        }
        self.timers.arm((id, CallTimer::CtiAnswer), cx.now + Duration::from_secs(u64::from(timeout.max(1))));
        log::info!("call {id}: offered to {device}");
        let to = key.dn.clone();
        self.note(device, id, EventKind::CallOffered { from, from_name, to, redirected_from });
        true
    }

    /// A call routed out of an FXO line (a route pattern to an analog_fxo device):
    /// offered to the device like a CTI call, `to` the number the line dials. The
    /// analog ports' client seizes, dials and answers when the far end does. The
    /// device's end carries no line of the box (nothing to forward to): unanswered
    /// within `FXO_ANSWER_TIMEOUT`, the call fails with 480.
    pub(super) fn ring_fxo(&mut self, cx: &mut Ctx<'_>, id: u64, device: &str, number: String) {
        if !matches!(cx.cfg.device(device).map(|d| &d.kind), Some(DeviceKind::AnalogFxo { .. })) {
            return self.fail(id, 503, &format!("Service Unavailable ({device} is not an FXO line)"));
        }
        if !cx.cti_open.contains(device) {
            return self.fail(id, 503, &format!("Service Unavailable ({device} is not in service)"));
        }
        if self.busy_devices.contains(device) || self.calls.values().any(|c| c.cti().is_some_and(|e| e.device == device)) {
            return self.fail(id, 486, &format!("Busy Here (the PSTN line of {device} is in use)"));
        }
        let Some(call) = self.calls.get_mut(&id) else { return };
        if call.a_invite.is_none() {
            // The caller is inside the box too (an FXS port, a CTI port): the box
            // cannot yet join two of its own terminations.
            return self.fail(id, 503, "Service Unavailable (calls out of an FXO line come from SIP callers only)");
        }
        if let Some(old) = call.b.as_ref().and_then(End::leg) {
            self.dialogs.remove(&super::table::dialog_key(&old.call_id, &old.local_tag));
        }
        call.b = Some(End::CtiDevice(CtiEnd {
            device: device.to_string(),
            line: LineKey { dn: number.clone(), partition: String::new() },
            state: CtiState::Offered,
            media: None,
            agreed: None,
            sdp_version: 1,
            redirected_from: None,
            outgoing: false,
            offer_media: None,
            end: None,
        }));
        let from = call.caller_dn.clone();
        let from_name = call.caller_display.clone();
        if let (Some((stx, a_req)), Some(a)) = (&call.a_invite, call.a.leg()) {
            let mut r = Response::to_request(a_req, 180, Some(&a.local_tag));
            leg::set_contact(&mut r.headers, a.contact(&call.dialled));
            self.out.push(Action::Respond(*stx, r));
        }
        self.timers.arm((id, CallTimer::CtiAnswer), cx.now + FXO_ANSWER_TIMEOUT);
        log::info!("call {id}: out of {device} to {number}");
        self.note(device, id, EventKind::CallOffered { from, from_name, to: number, redirected_from: None });
    }

    /// Joins the far ends of two calls at one device and takes the device out of both
    /// (an analog port's consultation transfer: the held party is put through to the
    /// consulted one). `keep`'s far end stays in its call; `other`'s far end moves
    /// into it, and `other` ends. Each far end is re-INVITEd with the other's latest
    /// session description, so their media flows end to end.
    pub fn cti_join(&mut self, cx: &mut Ctx<'_>, keep: &str, other: &str, device_ok: &dyn Fn(&str) -> bool) -> Result<(), CtiError> {
        let k = self.cti_call(keep, device_ok)?;
        let o = self.cti_call(other, device_ok)?;
        if k == o {
            return Err((ErrorCode::BadField, "a call cannot be joined to itself".into()));
        }
        // Each call: answered, no request under way, the device on one side and a
        // SIP party on the other. The side of the SIP party.
        let far_side = |c: &Call| -> Option<Side> {
            if !c.state.is_established() || c.relaying.is_some() {
                return None;
            }
            match (&c.a, &c.b) {
                (End::SipLeg(_), Some(End::CtiDevice(_))) => Some(Side::A),
                (End::CtiDevice(_), Some(End::SipLeg(_))) => Some(Side::B),
                _ => None,
            }
        };
        let (Some(ks), Some(os)) = (far_side(&self.calls[&k]), far_side(&self.calls[&o])) else {
            return Err((ErrorCode::InvalidState, "both calls must be answered, between the device and one party each, with nothing under way".into()));
        };
        let device = self.calls[&k].cti().map(|e| e.device.clone()).unwrap_or_default();
        // The moving party's dialog and session description, out of its call.
        let oc = self.calls.get_mut(&o).expect("checked");
        let (moved, moved_sdp) = match os {
            Side::A => (std::mem::replace(&mut oc.a, End::SipLeg(Leg::detached())), std::mem::take(&mut oc.a_sdp)),
            Side::B => (oc.b.take().unwrap_or(End::SipLeg(Leg::detached())), std::mem::take(&mut oc.b_sdp)),
        };
        let End::SipLeg(moved) = moved else { return Err((ErrorCode::Internal, "no dialog to move".into())) };
        if let Some(e) = self.calls.get_mut(&o).and_then(|c| c.cti_mut()) {
            e.end = Some(EndReason::Redirected);
        }
        self.remove(o);
        // Into the kept call, where the device was.
        let dev_side = if ks == Side::A { Side::B } else { Side::A };
        let kc = self.calls.get_mut(&k).expect("checked");
        let was = kc.take_cti();
        let keep_sdp = if ks == Side::A { kc.a_sdp.clone() } else { kc.b_sdp.clone() };
        self.dialogs.insert(super::table::dialog_key(&moved.call_id, &moved.local_tag), (k, dev_side));
        match dev_side {
            Side::A => {
                kc.a = End::SipLeg(moved);
                kc.a_sdp = moved_sdp.clone();
            }
            Side::B => {
                kc.b = Some(End::SipLeg(moved));
                kc.b_sdp = moved_sdp.clone();
            }
        }
        if let Some(e) = was {
            if e.agreed.is_some() {
                self.note(&e.device, k, EventKind::MediaStopped);
            }
            self.note(&e.device, k, EventKind::CallEnded { reason: EndReason::Redirected });
        }
        log::info!("call {k}: {device} puts its party through to the party of call {o}");
        // Each party gets the other's session description (active again).
        for (side, body) in [(ks, sdp::with_direction(&moved_sdp, Direction::SendRecv)), (dev_side, sdp::with_direction(&keep_sdp, Direction::SendRecv))] {
            let Some(c) = self.calls.get_mut(&k) else { break };
            let user = if side == Side::A { c.dialled.clone() } else { c.caller_dn.clone() };
            let Some(leg) = c.leg_mut(side) else { continue };
            let b = branch(cx.rng);
            let Some(mut req) = leg.request(Method::Invite, &b) else { continue };
            leg::set_contact(&mut req.headers, leg.contact(&user));
            req.set_body("application/sdp", body);
            let to = leg.peer;
            let txn = super::table::ClientTxn(cx.rng.next_u64());
            self.client.insert(txn, (k, side, Purpose::Joined));
            self.out.push(Action::Request { txn, request: req, to });
        }
        Ok(())
    }

    /// The answer to a re-INVITE of `cti_join`: ACKed; a refusal ends the call.
    pub(super) fn joined_answered(&mut self, cx: &mut Ctx<'_>, id: u64, side: Side, resp: &Response) {
        let Some(c) = self.calls.get_mut(&id) else { return };
        let Some(l) = c.leg_mut(side) else { return };
        if (200..300).contains(&resp.status) {
            if let Some(ack) = l.ack_for(resp, &branch(cx.rng)) {
                let to = l.peer;
                self.out.push(Action::Stateless { message: ack.to_bytes(), to });
            }
        } else {
            log::info!("call {id}: a party refused the transfer's re-INVITE with {}; the call ends", resp.status);
            self.hang_up(cx, id, None);
        }
    }

    /// Refuses an offered call at a device with `code` (the analog ports' client: a
    /// PSTN line heard busy).
    pub fn cti_reject(&mut self, call: &str, code: u16, reason: &str, device_ok: &dyn Fn(&str) -> bool) -> Result<(), CtiError> {
        let id = self.cti_call(call, device_ok)?;
        let Some(e) = self.calls[&id].cti().filter(|e| e.state == CtiState::Offered && !e.outgoing) else {
            return Err((ErrorCode::InvalidState, format!("call {call:?} is not offered")));
        };
        let d = e.device.clone();
        self.timers.cancel(&(id, CallTimer::CtiAnswer));
        self.note(&d, id, EventKind::CallEnded { reason: EndReason::Dropped });
        self.fail(id, code, reason);
        Ok(())
    }

    /// Finds a call at `device` for a CTI request.
    fn cti_call(&self, call: &str, device_ok: &dyn Fn(&str) -> bool) -> Result<u64, CtiError> {
        let id = call_id_of(call).filter(|id| self.calls.contains_key(id));
        let Some(id) = id else { return Err((ErrorCode::UnknownCall, format!("no call {call:?}"))) };
        let c = &self.calls[&id];
        let at_device = c.cti().is_some_and(|e| device_ok(&e.device)) || c.watchers.iter().any(|w| device_ok(w));
        if !at_device {
            return Err((ErrorCode::UnknownCall, format!("call {call:?} is not at a device you have open")));
        }
        Ok(id)
    }

    /// `set_media`: dynamic media for a call not yet answered.
    pub fn cti_set_media(&mut self, call: &str, media: AppMedia, device_ok: &dyn Fn(&str) -> bool) -> Result<(), CtiError> {
        let id = self.cti_call(call, device_ok)?;
        let end = self.calls.get_mut(&id).and_then(|c| c.cti_mut());
        let Some(end) = end else { return Err((ErrorCode::InvalidState, format!("call {call:?} does not end at a CTI device"))) };
        if end.state != CtiState::Offered {
            return Err((ErrorCode::InvalidState, format!("call {call:?} is already answered")));
        }
        end.media = Some(media);
        Ok(())
    }

    /// `answer`: terminate the call's media at the application, or with `box_media`
    /// at an RTP port of the box's own (`"media": "box"`).
    pub fn cti_answer(
        &mut self,
        cx: &mut Ctx<'_>,
        call: &str,
        media: Option<AppMedia>,
        static_media: Option<AppMedia>,
        box_media: bool,
        device_ok: &dyn Fn(&str) -> bool,
    ) -> Result<MediaInfo, CtiError> {
        let id = self.cti_call(call, device_ok)?;
        if !box_media {
            return self.cti_answer_with(cx, id, call, media, static_media, None);
        }
        if self.calls[&id].cti().is_some_and(|e| e.state != CtiState::Offered) {
            return Err((ErrorCode::InvalidState, format!("call {call:?} is already answered")));
        }
        let Some(port) = self.allocate_port(cx) else { return Err((ErrorCode::Capacity, "no free RTP port in [media]'s range".into())) };
        let r = self.cti_answer_with(cx, id, call, None, None, Some(port));
        match &r {
            Ok(info) => {
                let dtmf = self.calls.get(&id).and_then(|c| c.cti()).and_then(|e| e.agreed).and_then(|a| a.4);
                let remote = std::net::SocketAddr::new(info.remote_ip, info.remote_port);
                self.box_media_answered(id, info.local_ip, port, remote, info.codec, dtmf);
            }
            Err(_) => {
                self.media_ports.remove(&port);
            }
        }
        r
    }

    /// `answer` with the media termination chosen: the application's, or the box's
    /// port `box_port`.
    fn cti_answer_with(
        &mut self,
        cx: &mut Ctx<'_>,
        id: u64,
        call: &str,
        media: Option<AppMedia>,
        static_media: Option<AppMedia>,
        box_port: Option<u16>,
    ) -> Result<MediaInfo, CtiError> {
        let c = self.calls.get_mut(&id).expect("checked");
        let a_local = c.a_local();
        let Some(end) = c.cti() else { return Err((ErrorCode::InvalidState, format!("call {call:?} does not end at a CTI device"))) };
        if end.state != CtiState::Offered {
            return Err((ErrorCode::InvalidState, format!("call {call:?} is already answered")));
        }
        let box_media = box_port.map(|port| AppMedia { ip: a_local.ip(), port, codec: None });
        let Some(mut m) = box_media.or(media).or(end.media).or(static_media) else {
            return Err((ErrorCode::MediaRequired, format!("call {call:?} has no media termination: give media in answer or set_media first")));
        };
        // The box's own address toward the caller, for a termination inside the box
        // (an analog port) that does not know it.
        if m.ip.is_unspecified() {
            m.ip = a_local.ip();
        }
        let Some((stx, a_req)) = c.a_invite.take() else { return Err((ErrorCode::InvalidState, format!("call {call:?} is no longer ringing"))) };
        let Some(offer) = sdp::parse_audio(&a_req.body) else {
            c.a_invite = Some((stx, a_req));
            return Err((ErrorCode::InvalidState, format!("call {call:?}: the caller offered no usable audio")));
        };
        let prefer: Vec<crate::config::Codec> = match m.codec {
            Some(k) => vec![k],
            None => cx.cfg.media.codecs.clone(),
        };
        let Some(codec) = sdp::choose_codec(&offer, &prefer) else {
            c.a_invite = Some((stx, a_req));
            return Err((ErrorCode::BadField, format!("call {call:?}: the caller does not offer {}", prefer.iter().map(|k| wire::codec_name(*k)).collect::<Vec<_>>().join(" or "))));
        };
        // The caller's INVITE is waiting, so the caller is a dialog and the device its B end.
        let (Some(a), Some(end)) = (c.a.leg(), c.b.as_mut().and_then(End::cti_mut)) else {
            c.a_invite = Some((stx, a_req));
            return Err((ErrorCode::Internal, format!("call {call:?} has no caller dialog")));
        };
        let body = sdp::body(m.ip, m.port, codec, offer.dtmf, Direction::SendRecv, id, end.sdp_version);
        end.agreed = Some((offer.ip, offer.port, codec, m, offer.dtmf));
        end.state = CtiState::Connected;
        let device = end.device.clone();
        let mut r = Response::to_request(&a_req, 200, Some(&a.local_tag));
        leg::set_contact(&mut r.headers, a.contact(&c.dialled));
        r.set_body("application/sdp", body);
        c.state = super::state::CallState::Established(Default::default());
        super::state::start_2xx_retransmission(c, &mut self.timers, cx, r.to_bytes());
        self.timers.cancel(&(id, CallTimer::CtiAnswer));
        self.invites.remove(&stx);
        self.out.push(Action::Respond(stx, r));
        let info = MediaInfo { remote_ip: offer.ip, remote_port: offer.port, codec, local_ip: m.ip, local_port: m.port };
        log::info!("call {id}: answered by the application at {device}; media {}:{} <-> {}:{}", offer.ip, offer.port, m.ip, m.port);
        self.note(&device, id, EventKind::CallAnswered);
        self.note(&device, id, EventKind::MediaStarted(info));
        Ok(info)
    }

    /// `redirect`: send an offered call on, routed with the device's calling search space.
    pub fn cti_redirect(&mut self, cx: &mut Ctx<'_>, call: &str, to: &str, device_ok: &dyn Fn(&str) -> bool) -> Result<(), CtiError> {
        let id = self.cti_call(call, device_ok)?;
        let c = self.calls.get_mut(&id).expect("checked");
        let Some(end) = c.cti() else { return Err((ErrorCode::InvalidState, format!("call {call:?} does not end at a CTI device"))) };
        if end.state != CtiState::Offered {
            return Err((ErrorCode::InvalidState, format!("call {call:?} is answered: only an offered call can be redirected")));
        }
        let device = end.device.clone();
        let css = cx.cfg.device(&device).and_then(|d| d.css.clone());
        let dest = dialplan::resolve(cx.cfg, css.as_deref(), to).map_err(|e| {
            (ErrorCode::InvalidState, format!("{to:?} cannot be reached from {device}'s calling search space {:?}: {}", css.as_deref().unwrap_or("(none)"), e.reason()))
        })?;
        c.take_cti();
        self.timers.cancel(&(id, CallTimer::CtiAnswer));
        log::info!("call {id}: redirected by the application at {device} to {to}");
        self.note(&device, id, EventKind::CallRedirected { to: to.to_string() });
        self.note(&device, id, EventKind::CallEnded { reason: EndReason::Redirected });
        self.place(cx, id, dest);
        Ok(())
    }

    /// `drop`: reject an offered call, or hang up an answered one.
    pub fn cti_drop(&mut self, cx: &mut Ctx<'_>, call: &str, device_ok: &dyn Fn(&str) -> bool) -> Result<(), CtiError> {
        let id = self.cti_call(call, device_ok)?;
        let c = &self.calls[&id];
        let offered = c.cti().is_some_and(|e| e.state == CtiState::Offered) || (c.cti().is_none() && !c.state.is_established());
        let outgoing = c.cti().is_some_and(|e| e.outgoing);
        if let Some(e) = c.cti() {
            let d = e.device.clone();
            let media = e.agreed.is_some();
            if media {
                self.note(&d, id, EventKind::MediaStopped);
            }
            self.note(&d, id, EventKind::CallEnded { reason: EndReason::Dropped });
        }
        if offered && outgoing {
            // The application's own call, not answered yet: the called party's
            // INVITE is cancelled (it rings no more), and the call ends.
            log::info!("call {id}: the application at its device gives up its call");
            self.cancel_b(cx, id);
            self.remove(id);
        } else if offered {
            self.fail(id, 603, "Decline (dropped by the application)");
        } else {
            let watchers = self.calls[&id].watchers.clone();
            for w in watchers {
                self.note(&w, id, EventKind::CallEnded { reason: EndReason::Dropped });
            }
            if let Some(c) = self.calls.get_mut(&id) {
                c.watchers.clear();
                c.take_cti();
            }
            self.hang_up(cx, id, None);
        }
        Ok(())
    }

    /// `hold` / `unhold`: re-INVITE toward the party the application's device talks to.
    pub fn cti_hold(&mut self, cx: &mut Ctx<'_>, call: &str, hold: bool, device_ok: &dyn Fn(&str) -> bool) -> Result<(), CtiError> {
        let id = self.cti_call(call, device_ok)?;
        let c = self.calls.get_mut(&id).expect("checked");
        if c.relaying.is_some() {
            return Err((ErrorCode::InvalidState, format!("call {call:?} is being renegotiated; try again")));
        }
        let dir = if hold { Direction::SendOnly } else { Direction::SendRecv };
        let (side, body) = if let Some(end) = c.cti_mut() {
            let want = if hold { CtiState::Connected } else { CtiState::Held };
            if end.state != want {
                let what = if hold { "connected" } else { "held" };
                return Err((ErrorCode::InvalidState, format!("call {call:?} is not {what}")));
            }
            let Some((_, _, codec, m, dtmf)) = end.agreed else { return Err((ErrorCode::InvalidState, format!("call {call:?} has no media"))) };
            end.sdp_version += 1;
            (end.far(), sdp::body(m.ip, m.port, codec, dtmf, dir, id, end.sdp_version))
        } else {
            // A watched phone: re-INVITE the phone with the far end's session description.
            if !c.state.is_established() || !c.a.confirmed() && c.b.as_ref().is_none_or(|b| !b.confirmed()) {
                return Err((ErrorCode::InvalidState, format!("call {call:?} is not connected")));
            }
            let (side, far_sdp) = if device_ok(&c.caller_device) {
                (Side::A, c.b_sdp.clone())
            } else {
                (Side::B, c.a_sdp.clone())
            };
            (side, sdp::with_direction(&far_sdp, dir))
        };
        let leg = if side == Side::A { c.a.leg_mut() } else { c.b.as_mut().and_then(End::leg_mut) };
        let Some(leg) = leg else { return Err((ErrorCode::InvalidState, format!("call {call:?} is not connected"))) };
        let branch = branch(cx.rng);
        let Some(mut req) = leg.request(Method::Invite, &branch) else { return Err((ErrorCode::Internal, "cannot address the party".into())) };
        let user = if side == Side::A { c.dialled.clone() } else { c.caller_dn.clone() };
        leg::set_contact(&mut req.headers, leg.contact(&user));
        req.set_body("application/sdp", body);
        let to = leg.peer;
        let txn = super::table::ClientTxn(cx.rng.next_u64());
        c.relaying = Some(txn);
        self.client.insert(txn, (id, side, Purpose::CtiReinvite { hold }));
        self.out.push(Action::Request { txn, request: req, to });
        Ok(())
    }

    /// The answer to a hold/unhold re-INVITE.
    pub(super) fn cti_reinvite_answered(&mut self, cx: &mut Ctx<'_>, id: u64, side: Side, hold: bool, resp: &Response) {
        let Some(c) = self.calls.get_mut(&id) else { return };
        c.relaying = None;
        let leg = if side == Side::A { c.a.leg_mut() } else { c.b.as_mut().and_then(End::leg_mut) };
        if (200..300).contains(&resp.status) {
            if let Some(l) = leg {
                if let Some(ack) = l.ack_for(resp, &branch(cx.rng)) {
                    self.out.push(Action::Stateless { message: ack.to_bytes(), to: l.peer });
                }
            }
            let mut media = None;
            if let Some(end) = c.cti_mut() {
                end.state = if hold { CtiState::Held } else { CtiState::Connected };
                media = end.agreed.map(|(rip, rport, codec, m, _)| (end.device.clone(), MediaInfo { remote_ip: rip, remote_port: rport, codec, local_ip: m.ip, local_port: m.port }));
            }
            self.notify_all(id, || if hold { EventKind::CallHeld } else { EventKind::CallResumed });
            if let Some((device, info)) = media {
                self.note(&device, id, if hold { EventKind::MediaStopped } else { EventKind::MediaStarted(info) });
            }
        } else {
            log::info!("call {id}: {} refused with {}", if hold { "hold" } else { "unhold" }, resp.status);
        }
    }

    /// The application's answer timeout ran out: Call Forward No Answer.
    pub(super) fn cti_answer_timeout(&mut self, cx: &mut Ctx<'_>, id: u64) {
        let Some(c) = self.calls.get_mut(&id) else { return };
        let Some(end) = c.take_cti_unless(|e| e.state != CtiState::Offered) else { return };
        self.note(&end.device, id, EventKind::CallEnded { reason: EndReason::NoAnswer });
        match cx.cfg.line(&end.line).and_then(|l| l.forward.no_answer.clone()) {
            Some(n) => self.forward(cx, id, &end.line, &n, "application did not answer"),
            None => self.fail(id, 480, &format!("Temporarily Unavailable ({} did not answer)", end.device)),
        }
    }

    /// No application has `device` open any more. Its unanswered calls go to the
    /// line's Call Forward On Failure number when the application failed (else No
    /// Answer), or straight to No Answer when it closed the device on purpose.
    pub fn cti_device_released(&mut self, cx: &mut Ctx<'_>, device: &str, failure: bool) {
        let ids: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| c.cti().is_some_and(|e| e.device == device && e.state == CtiState::Offered))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let Some(end) = self.calls.get_mut(&id).and_then(|c| c.take_cti()) else { continue };
            self.timers.cancel(&(id, CallTimer::CtiAnswer));
            let fwd = cx.cfg.line(&end.line).map(|l| l.forward.clone()).unwrap_or_default();
            let (target, why) = if failure { (fwd.on_failure.or(fwd.no_answer), "application failed") } else { (fwd.no_answer, "application closed the device") };
            match target {
                Some(n) => self.forward(cx, id, &end.line, &n, why),
                None => self.fail(id, 480, &format!("Temporarily Unavailable (the application for {device} failed)")),
            }
        }
    }

    /// `make_call` from a CTI port or route point: the application is the calling
    /// party and terminates the media; the number is routed with the device's CSS.
    pub fn cti_make_call(&mut self, cx: &mut Ctx<'_>, device: &str, to: &str, media: Option<AppMedia>, caller: Option<crate::core::api::Caller>) -> Result<String, CtiError> {
        let Some(dev) = cx.cfg.device(device) else { return Err((ErrorCode::UnknownDevice, format!("no device named {device:?}"))) };
        if caller.is_some() && !matches!(dev.kind, DeviceKind::AnalogFxo { .. }) {
            return Err((ErrorCode::BadField, "caller: only an FXO port's calls carry a calling party from outside the box".into()));
        }
        if matches!(dev.kind, DeviceKind::SipPhone { .. }) {
            if media.is_some() {
                return Err((ErrorCode::BadField, "media: a phone carries its own audio".into()));
            }
            return self.phone_make_call(cx, device, to);
        }
        if !matches!(dev.kind, DeviceKind::CtiPort { .. } | DeviceKind::CtiRoutePoint { .. } | DeviceKind::AnalogFxs { .. } | DeviceKind::AnalogFxo { .. }) {
            return Err((ErrorCode::InvalidState, format!("make_call from a {} is not available", dev.kind.type_name())));
        }
        let Some(m) = media else {
            return Err((ErrorCode::MediaRequired, format!("make_call from {device} needs media (give media, or open the port with static media)")));
        };
        let calls_here = self.calls.values().filter(|c| c.cti().is_some_and(|e| e.device == device)).count();
        // An FXS port may place a consultation call while it holds one.
        let most = if matches!(dev.kind, DeviceKind::AnalogFxs { .. }) { 2 } else { 1 };
        if matches!(dev.kind, DeviceKind::CtiPort { .. } | DeviceKind::AnalogFxs { .. } | DeviceKind::AnalogFxo { .. }) && calls_here >= most {
            return Err((ErrorCode::InvalidState, format!("{device} already has a call (a CTI port takes one at a time)")));
        }
        if self.at_capacity(cx.cfg) {
            return Err((ErrorCode::Capacity, "call capacity reached".into()));
        }
        let css = dev.css.clone();
        let dest = dialplan::resolve(cx.cfg, css.as_deref(), to).map_err(|e| {
            (ErrorCode::InvalidState, format!("{to:?} cannot be reached from {device}'s calling search space {:?}: {}", css.as_deref().unwrap_or("(none)"), e.reason()))
        })?;
        // An FXO port's calls come from its inbound line (they have no line of their own).
        let line = match &dev.kind {
            DeviceKind::AnalogFxo { inbound, .. } => Some(inbound.clone()),
            _ => dev.lines.first().cloned(),
        };
        let line = line.ok_or((ErrorCode::InvalidState, format!("{device} has no line to call from")))?;
        let display = cx.cfg.line(&line).and_then(|l| l.display_name.clone());
        let id = self.new_outgoing_call(device, &line, display, to, m);
        if let (Some(c), Some(who)) = (self.calls.get_mut(&id), caller) {
            c.caller_dn = who.number;
            c.caller_display = who.name;
        }
        log::info!("call {id}: {device} (application) calls {to}");
        self.place(cx, id, dest);
        if !self.calls.contains_key(&id) {
            return Err((ErrorCode::InvalidState, format!("{to:?} cannot be called now")));
        }
        Ok(call_name(id))
    }

    /// Click-to-dial from a phone line (RFC 3725 flow I): the phone is called first,
    /// without an offer; when it answers, its offer goes to the number dialled, and
    /// that party's answer comes back to the phone in the ACK.
    fn phone_make_call(&mut self, cx: &mut Ctx<'_>, device: &str, to: &str) -> Result<String, CtiError> {
        let dev = cx.cfg.device(device).ok_or((ErrorCode::UnknownDevice, format!("no device named {device:?}")))?;
        let css = dev.css.clone();
        dialplan::resolve(cx.cfg, css.as_deref(), to).map_err(|e| {
            (ErrorCode::InvalidState, format!("{to:?} cannot be reached from {device}'s calling search space {:?}: {}", css.as_deref().unwrap_or("(none)"), e.reason()))
        })?;
        let Some(binding) = cx.registrar.contacts(device).first().cloned() else {
            return Err((ErrorCode::InvalidState, format!("{device} is not registered")));
        };
        let line = dev.lines.first().cloned().ok_or((ErrorCode::InvalidState, format!("{device} has no line")))?;
        let display = cx.cfg.line(&line).and_then(|l| l.display_name.clone());
        let id = self.new_outgoing_call(device, &line, display, to, AppMedia { ip: binding.local.ip(), port: 0, codec: None });
        let tag = cx.rng.token(12);
        let call_id = format!("{}@ctibox", cx.rng.token(20));
        let peer = crate::core::registrar::Origin { source: binding.send_to(), transport: binding.transport, conn: binding.conn, local: binding.local };
        let tcp = peer.transport == crate::core::Transport::Tcp;
        let local = format!("<sip:{to}@{}>;tag={tag}", peer.local);
        let remote = format!("<sip:{}@{}>", line.dn, peer.local);
        let Some(uri) = crate::core::sip::Uri::parse(&binding.uri) else { return Err((ErrorCode::Internal, "bad contact".into())) };
        let branch = branch(cx.rng);
        let mut req = crate::core::sip::Request::new(Method::Invite, uri, &leg::via(peer.local, tcp, &branch), &local, &remote, &call_id, 1, 70);
        leg::set_contact(&mut req.headers, leg::contact(to, peer.local, tcp));
        let txn = super::table::ClientTxn(cx.rng.next_u64());
        let Some(c) = self.calls.get_mut(&id) else { return Err((ErrorCode::Internal, "call vanished".into())) };
        // The phone's side is a watched phone line, not a CTI end.
        c.watchers.push(device.to_string());
        c.a = End::SipLeg(super::leg::Leg {
            call_id: call_id.clone(),
            local,
            remote,
            local_tag: tag.clone(),
            remote_tag: None,
            target: binding.uri.clone(),
            local_cseq: 1,
            remote_cseq: 0,
            peer,
            confirmed: false,
        });
        self.dialogs.insert(super::table::dialog_key(&call_id, &tag), (id, Side::A));
        self.client.insert(txn, (id, Side::A, Purpose::PhoneInvite));
        self.out.push(Action::Request { txn, request: req, to: peer });
        log::info!("call {id}: {device} places a call to {to} (click-to-dial)");
        Ok(call_name(id))
    }

    /// The phone answered (or refused) a click-to-dial INVITE.
    pub(super) fn phone_invite_response(&mut self, cx: &mut Ctx<'_>, id: u64, resp: Response) {
        let Some(c) = self.calls.get_mut(&id) else { return };
        if resp.status < 200 {
            return;
        }
        if resp.status >= 300 {
            c.end_reason = Some(if matches!(resp.status, 486 | 600) { EndReason::Busy } else { EndReason::Rejected });
            return self.remove(id);
        }
        let Some(phone) = c.a.leg_mut() else { return };
        if let Ok(to) = resp.to() {
            phone.remote_tag = to.tag().map(str::to_string);
            phone.remote = to.to_string();
        }
        if let Ok(Some(crate::core::sip::Contact::Addrs(a))) = resp.contact() {
            if let Some(x) = a.first() {
                phone.target = x.uri.to_string();
            }
        }
        phone.confirmed = true;
        c.a_sdp = resp.body.clone();
        c.phone_ack_pending = Some(resp.cseq().map(|x| x.seq).unwrap_or(1));
        let dialled = c.dialled.clone();
        let css = cx.cfg.device(&c.caller_device).and_then(|d| d.css.clone());
        match dialplan::resolve(cx.cfg, css.as_deref(), &dialled) {
            Ok(dest) => self.place(cx, id, dest),
            Err(e) => self.fail(id, 404, e.reason()),
        }
    }

    /// The far end answered an application's call: media agreed, connected.
    pub(super) fn cti_outgoing_answered(&mut self, id: u64, resp: &Response) {
        let Some(c) = self.calls.get_mut(&id) else { return };
        c.b_sdp = resp.body.clone();
        let Some(end) = c.cti_mut() else { return };
        let Some(m) = end.offer_media else { return };
        let answer = sdp::parse_audio(&resp.body);
        let codec = answer.as_ref().and_then(|a| a.payloads.iter().find_map(|p| [crate::config::Codec::Pcmu, crate::config::Codec::Pcma].into_iter().find(|k| k.payload_type() == *p)));
        end.state = CtiState::Connected;
        let device = end.device.clone();
        let info = match (answer, codec) {
            (Some(a), Some(codec)) => {
                end.agreed = Some((a.ip, a.port, codec, m, a.dtmf));
                Some(MediaInfo { remote_ip: a.ip, remote_port: a.port, codec, local_ip: m.ip, local_port: m.port })
            }
            _ => None,
        };
        log::info!("call {id}: answered by the far end");
        self.note(&device, id, EventKind::CallConnected);
        if let Some(info) = info {
            self.note(&device, id, EventKind::MediaStarted(info));
        }
    }

    /// The CTI device a call is at, if any.
    pub fn cti_device_of(&self, call: &str) -> Option<String> {
        self.calls.get(&call_id_of(call)?)?.cti().map(|e| e.device.clone())
    }

    /// Live calls at `device`, for a snapshot.
    pub fn cti_snapshot(&self, device: &str) -> Vec<CallInfo> {
        self.calls
            .iter()
            .filter_map(|(id, c)| {
                let at_cti = c.cti().filter(|e| e.device == device);
                if at_cti.is_none() && !c.watchers.iter().any(|w| w == device) {
                    return None;
                }
                let state = match at_cti.map(|e| (e.state, e.outgoing)) {
                    Some((CtiState::Offered, true)) if c.state.ringing().is_some_and(|i| i.provisional) => CallState::Ringing,
                    Some((CtiState::Offered, true)) => CallState::Dialing,
                    Some((CtiState::Offered, false)) => CallState::Offered,
                    Some((CtiState::Connected, _)) => CallState::Connected,
                    Some((CtiState::Held, _)) => CallState::Held,
                    None if c.state.is_established() => CallState::Connected,
                    None if c.caller_device == device => CallState::Ringing,
                    None => CallState::Offered,
                };
                let media = at_cti.and_then(|e| e.agreed).map(|(rip, rport, codec, m, _)| MediaInfo {
                    remote_ip: rip,
                    remote_port: rport,
                    codec,
                    local_ip: m.ip,
                    local_port: m.port,
                });
                Some(CallInfo {
                    call: call_name(*id),
                    state,
                    from: c.caller_dn.clone(),
                    from_name: c.caller_display.clone(),
                    to: c.ringing_line.as_ref().map_or_else(|| c.dialled.clone(), |l| l.dn.clone()),
                    redirected_from: at_cti.and_then(|e| e.redirected_from.clone()),
                    media,
                })
            })
            .collect()
    }
}
