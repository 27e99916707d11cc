//! One RTP session as a pure state machine: what to send when (20 ms frames from a
//! `Source`, RFC 4733 telephone-events in their place, RTCP reports and the BYE), the
//! receive path (RTP parse, symmetric RTP latching, `ReceiveStats`, digit collection
//! from RFC 4733 events and in-band DTMF), the RTP timeout and the orphan rule. No
//! socket, no clock: datagrams and `now` come in (`handle_rtp`, `handle_rtcp`,
//! `handle_timeout`), datagrams and events go out (`poll_transmit`, `poll_event`),
//! and `poll_timeout` says when to call again. The media thread (`src/io/media`) owns
//! the sockets and the waiting; see docs/media.md.
//!
//! Latching (symmetric RTP, RFC 4961, without RTP bleed): the stream sends to the
//! commanded remote until valid RTP arrives. Within `latch_window` of creation or of a
//! new commanded remote, the first source to send valid RTP becomes the remote (RTP
//! from the commanded address itself always does, within the window). After the
//! window, or once a source latched, RTP from any other address is dropped
//! (`Verdict::Foreign`) unless it continues the latched SSRC with a sequence number
//! 1..=`MEDIA_REBIND_SEQ_STEP` ahead (a NAT rebinding), which moves the remote.

use super::dtmf::{Digit, DtmfDetector, DtmfEvent};
use super::g711::Law;
use super::rtcp::{self, RtcpPacket, SdesChunk, SenderInfo};
use super::rtp::{self, ReceiveStats};
use super::source::Source;
use super::telephone_event::{self, EventReceiver, ReceivedEvent, TelephoneEvent};
use super::{FRAME_SAMPLES, SAMPLE_RATE};
use crate::core::Time;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

/// One RTP frame: 20 ms.
pub const FRAME: Duration = Duration::from_millis(20);
const FRAME_US: u64 = 20_000;
/// A session more than this many frames behind its schedule (its driver was starved)
/// skips ahead rather than bursting the backlog out.
pub const MAX_BEHIND: u64 = 5;
/// A latched SSRC silent this long may be replaced by another one from the same
/// address (a phone that restarted its stream).
const RELATCH_AFTER: Duration = Duration::from_secs(1);
/// Pending digits to send per session, at most.
pub const DTMF_QUEUE: usize = 32;
/// 100 ms events, a packet every 20 ms, 60 ms between events.
const DTMF_DURATION: u16 = 800;
const DTMF_GAP_FRAMES: u8 = 3;
/// The buffer `poll_transmit` and `close` write into must hold this much (an RTP frame
/// is 172 bytes, the largest RTCP compound sent under 100).
pub const TRANSMIT_MAX: usize = 512;

/// How a session is set up.
pub struct SessionConfig {
    /// The commanded remote (from SDP).
    pub remote: SocketAddr,
    pub law: Law,
    pub source: Source,
    /// Random bits: SSRC, initial sequence number and timestamp (RFC 3550 5.1), and
    /// the spread of the first RTCP report.
    pub random: u64,
    /// Wall-clock time (since the Unix epoch) at `Time::ZERO`: RTCP's NTP timestamps
    /// are this plus `now`.
    pub wall_at_zero: Duration,
    /// `RtpTimeout` after this long without RTP on a session that had some.
    pub rtp_timeout: Duration,
    pub latch_window: Duration,
    /// Orphan rule: closed after `rtp_timeout + orphan_grace` with nothing received and
    /// no command on a session that had RTP, after `orphan_idle` on one that never had.
    pub orphan_grace: Duration,
    pub orphan_idle: Duration,
}

impl SessionConfig {
    /// A configuration with the limits' defaults (`src/limits.rs`).
    pub fn new(remote: SocketAddr, law: Law, source: Source, random: u64, wall_at_zero: Duration) -> SessionConfig {
        use crate::limits as l;
        SessionConfig {
            remote,
            law,
            source,
            random,
            wall_at_zero,
            rtp_timeout: Duration::from_millis(l::MEDIA_RTP_TIMEOUT_MS),
            latch_window: Duration::from_millis(l::MEDIA_LATCH_WINDOW_MS),
            orphan_grace: Duration::from_millis(l::MEDIA_ORPHAN_GRACE_MS),
            orphan_idle: Duration::from_millis(l::MEDIA_ORPHAN_IDLE_MS),
        }
    }
}

/// What a session reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// A DTMF digit received (RFC 4733 or in-band), once per press.
    Digit(char),
    /// A prompt or a non-repeating tone played out.
    PlayoutDone,
    /// No RTP for `rtp_timeout` on a session that had some (once until RTP returns).
    RtpTimeout,
    /// The orphan rule fired: the driver should close the session (once).
    Orphaned,
    /// Frames not sent because the driver fell more than `MAX_BEHIND` behind (for the
    /// driver's counters; the RTP timestamp counts them).
    FramesSkipped(u64),
}

/// What became of one received datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// Not RTP (short, bad version or padding, RTCP muxed on the RTP port), or RTCP
    /// failing the RFC 3550 A.2 checks.
    Malformed,
    /// RTP of another SSRC from the latched address while the latched one is alive.
    WrongSsrc,
    /// RTP from an address that may not become the remote (see the module doc).
    Foreign,
}

/// The outcome of `handle_rtp` / `handle_rtcp`, for the driver's counters and relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    pub verdict: Verdict,
    /// The remote moved to the datagram's source (latched, or a NAT rebinding).
    pub relatched: bool,
    /// A payload type the session does not take (neither its codec nor its DTMF).
    pub wrong_payload_type: bool,
    /// A telephone-event payload that does not decode.
    pub bad_payload: bool,
    /// Relayed: forward the datagram unchanged to the partner's remote.
    pub forward: bool,
}

impl Received {
    fn of(verdict: Verdict) -> Received {
        Received { verdict, relatched: false, wrong_payload_type: false, bad_payload: false, forward: false }
    }
}

/// Which socket a transmit goes out of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A paced RTP frame that was due at `due` (the driver measures lateness with it).
    Rtp { due: Time },
    Rtcp,
}

/// A datagram `poll_transmit` or `close` wrote into the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub len: usize,
    pub kind: Kind,
}

/// Digit collection state.
struct Collect {
    dtmf_pt: Option<u8>,
    events: EventReceiver,
    detector: DtmfDetector,
    /// Once the peer sends RFC 4733 events, in-band detection stops (a phone sending
    /// both must not give each digit twice).
    saw_events: bool,
}

impl Collect {
    fn new(dtmf_pt: Option<u8>) -> Collect {
        Collect { dtmf_pt, events: EventReceiver::new(), detector: DtmfDetector::default(), saw_events: false }
    }
}

/// Telephone-events waiting to be sent, one packet per 20 ms frame.
#[derive(Default)]
struct DtmfOut {
    pt: u8,
    pending: VecDeque<u8>,
    /// The event under way.
    run: Option<EventRun>,
    /// Frames of audio still to send before the next event.
    gap: u8,
}

/// One telephone-event being sent: its packets (marker, payload), the next one to
/// send, and the event's RTP timestamp (the same on all its packets).
struct EventRun {
    packets: Vec<(bool, TelephoneEvent)>,
    next: usize,
    timestamp: u32,
}

impl DtmfOut {
    fn push(&mut self, digits: &str, pt: u8) -> usize {
        self.pt = pt;
        let mut taken = 0;
        for c in digits.chars() {
            if self.pending.len() >= DTMF_QUEUE {
                break;
            }
            if let Some(d) = Digit::from_char(c) {
                self.pending.push_back(d.event());
                taken += 1;
            }
        }
        taken
    }

    /// The event packet to send in place of audio this frame, if any.
    fn next(&mut self, timestamp: u32) -> Option<(bool, [u8; 4], u32)> {
        if self.run.is_none() {
            if self.gap > 0 {
                self.gap -= 1;
                return None;
            }
            let event = self.pending.pop_front()?;
            let packets = telephone_event::sender_run(event, 10, DTMF_DURATION, FRAME_SAMPLES as u16);
            self.run = Some(EventRun { packets, next: 0, timestamp });
        }
        let run = self.run.as_mut()?;
        let (marker, ev) = *run.packets.get(run.next)?;
        let out = (marker, ev.encode(), run.timestamp);
        run.next += 1;
        if run.next >= run.packets.len() {
            self.run = None;
            self.gap = DTMF_GAP_FRAMES;
        }
        Some(out)
    }
}

/// The latched source: its SSRC and the highest sequence number seen from it.
#[derive(Clone, Copy)]
struct Peer {
    ssrc: u32,
    max_seq: u16,
}

/// One RTP session (see the module doc).
pub struct Session {
    law: Law,
    source: Source,
    ssrc: u32,
    seq: u16,
    ts_base: u32,
    /// Frame `n` is due at `start + n * FRAME`.
    start: Time,
    frame: u64,
    sent_any: bool,
    packets: u32,
    octets: u32,
    rtcp_at: Time,
    /// Where RTP goes (the commanded remote, or the latched source).
    remote: SocketAddr,
    remote_rtcp: SocketAddr,
    rtcp_latched: bool,
    /// The remote last commanded (SDP); a different one reopens the latch window.
    commanded: SocketAddr,
    latch_until: Time,
    peer: Option<Peer>,
    last_rx: Option<Time>,
    timed_out: bool,
    rx: Option<ReceiveStats>,
    last_sr: Option<(u32, Time)>,
    collect: Option<Collect>,
    dtmf: DtmfOut,
    relayed: bool,
    /// The last command, accepted RTP or RTCP from the peer's host (orphan rule).
    last_touch: Time,
    had_rtp: bool,
    orphaned: bool,
    events: VecDeque<SessionEvent>,
    wall_at_zero: Duration,
    rtp_timeout: Duration,
    latch_window: Duration,
    orphan_grace: Duration,
    orphan_idle: Duration,
}

impl Session {
    /// A session whose first frame is due at `now`.
    pub fn new(now: Time, cfg: SessionConfig) -> Session {
        let r = cfg.random;
        let remote = cfg.remote;
        Session {
            law: cfg.law,
            source: cfg.source,
            ssrc: r as u32,
            seq: (r >> 32) as u16,
            ts_base: ((r >> 48) as u32) << 16 | (r as u32 >> 16),
            start: now,
            frame: 0,
            sent_any: false,
            packets: 0,
            octets: 0,
            // The first report after 2.5..5 s, then every interval (spread out).
            rtcp_at: now + Duration::from_millis(2500 + (r >> 20) % 2500),
            remote,
            remote_rtcp: rtcp_of(remote),
            rtcp_latched: false,
            commanded: remote,
            latch_until: now + cfg.latch_window,
            peer: None,
            last_rx: None,
            timed_out: false,
            rx: None,
            last_sr: None,
            collect: None,
            dtmf: DtmfOut::default(),
            relayed: false,
            last_touch: now,
            had_rtp: false,
            orphaned: false,
            events: VecDeque::new(),
            wall_at_zero: cfg.wall_at_zero,
            rtp_timeout: cfg.rtp_timeout,
            latch_window: cfg.latch_window,
            orphan_grace: cfg.orphan_grace,
            orphan_idle: cfg.orphan_idle,
        }
    }

    // ---- commands ----

    /// A command touched the session (orphan rule).
    pub fn touch(&mut self, now: Time) {
        self.last_touch = self.last_touch.max(now);
    }

    /// The remote commanded again (a `Play` on the open session). A different one is a
    /// renegotiation: the session sends there and the latch window opens again.
    pub fn set_remote(&mut self, now: Time, remote: SocketAddr) {
        self.touch(now);
        if remote == self.commanded {
            return;
        }
        self.commanded = remote;
        self.remote = remote;
        self.remote_rtcp = rtcp_of(remote);
        self.rtcp_latched = false;
        self.peer = None;
        self.latch_until = now + self.latch_window;
    }

    pub fn set_law(&mut self, law: Law) {
        self.law = law;
    }

    pub fn set_source(&mut self, source: Source) {
        self.source = source;
    }

    /// The source, to hand it a prompt's samples or new music on hold.
    pub fn source_mut(&mut self) -> &mut Source {
        &mut self.source
    }

    /// Reports digits from now on: RFC 4733 events with `dtmf_pt`, and in-band DTMF.
    pub fn collect_digits(&mut self, dtmf_pt: Option<u8>) {
        self.collect = Some(Collect::new(dtmf_pt));
    }

    /// Queues digits to send as telephone-events with `pt`; returns how many were taken
    /// (unknown characters are skipped, at most `DTMF_QUEUE` wait).
    pub fn send_digits(&mut self, digits: &str, pt: u8) -> usize {
        self.dtmf.push(digits, pt)
    }

    /// Relayed: no paced frames or reports of its own. Back from a relay, the frames
    /// resume on the schedule's grid at or after `now` (frames missed meanwhile are
    /// skipped: the timestamp counts them, the sequence stays continuous).
    pub fn set_relayed(&mut self, now: Time, relayed: bool) {
        if self.relayed && !relayed {
            let since = now.as_micros().saturating_sub(self.start.as_micros());
            self.frame = since.div_ceil(FRAME_US);
        }
        self.relayed = relayed;
    }

    // ---- accessors ----

    pub fn remote(&self) -> SocketAddr {
        self.remote
    }
    pub fn remote_rtcp(&self) -> SocketAddr {
        self.remote_rtcp
    }
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }
    pub fn is_relayed(&self) -> bool {
        self.relayed
    }

    // ---- inputs ----

    /// One datagram on the RTP port.
    pub fn handle_rtp(&mut self, now: Time, from: SocketAddr, data: &[u8]) -> Received {
        let Ok(pkt) = rtp::parse(data) else {
            return Received::of(Verdict::Malformed);
        };
        let h = pkt.header;
        // RTCP multiplexed onto the RTP port (RFC 5761 payload types 64-95) is not RTP.
        if (64..96).contains(&h.payload_type) {
            return Received::of(Verdict::Malformed);
        }
        let mut out = Received::of(Verdict::Accepted);
        if from != self.remote {
            let continues = self.peer.is_some_and(|p| p.ssrc == h.ssrc && (1..=crate::limits::MEDIA_REBIND_SEQ_STEP).contains(&h.sequence.wrapping_sub(p.max_seq)));
            let may_latch = now < self.latch_until && (self.peer.is_none() || from == self.commanded);
            if !continues && !may_latch {
                return Received::of(Verdict::Foreign);
            }
            if !continues {
                self.peer = None; // a new source latches below
            }
            self.remote = from;
            if !self.rtcp_latched {
                self.remote_rtcp = rtcp_of(from);
            }
            out.relatched = true;
        }
        match self.peer {
            Some(p) if p.ssrc == h.ssrc => {}
            Some(_) if self.last_rx.is_some_and(|t| now.since(t) < RELATCH_AFTER) => {
                return Received::of(Verdict::WrongSsrc);
            }
            _ => {
                self.peer = Some(Peer { ssrc: h.ssrc, max_seq: h.sequence });
                self.rx = Some(ReceiveStats::new(h.sequence, SAMPLE_RATE));
                self.last_sr = None;
                if let Some(c) = &mut self.collect {
                    *c = Collect::new(c.dtmf_pt);
                }
            }
        }
        if let Some(p) = &mut self.peer {
            if (h.sequence.wrapping_sub(p.max_seq) as i16) > 0 {
                p.max_seq = h.sequence;
            }
        }
        self.last_rx = Some(now);
        self.timed_out = false;
        self.had_rtp = true;
        self.touch(now);
        if let Some(rx) = &mut self.rx {
            rx.update(h.sequence, h.timestamp, now);
        }
        let audio = h.payload_type == self.law.payload_type();
        if let Some(c) = &mut self.collect {
            if c.dtmf_pt == Some(h.payload_type) {
                match TelephoneEvent::decode(pkt.payload) {
                    Ok(ev) => {
                        c.saw_events = true;
                        c.events.handle_packet(now, h.marker, h.timestamp, &ev);
                        while let Some(r) = c.events.poll_event() {
                            if let ReceivedEvent::Start { event, .. } = r {
                                if let Some(d) = Digit::from_event(event) {
                                    self.events.push_back(SessionEvent::Digit(d.to_char()));
                                }
                            }
                        }
                    }
                    Err(_) => out.bad_payload = true,
                }
            } else if audio && !c.saw_events {
                let mut pcm = [0i16; 256];
                for chunk in pkt.payload.chunks(pcm.len()) {
                    let n = self.law.decode_into(chunk, &mut pcm);
                    c.detector.process(&pcm[..n]);
                }
                while let Some(e) = c.detector.poll_event() {
                    if let DtmfEvent::Start { digit, .. } = e {
                        self.events.push_back(SessionEvent::Digit(digit.to_char()));
                    }
                }
            } else if !audio {
                out.wrong_payload_type = true;
            }
        } else if !audio && !self.relayed && h.payload_type != 13 && h.payload_type < 96 {
            // Comfort noise (13) is fine; telephone events without collection are not
            // counted as errors either when they are dynamic (96-127).
            out.wrong_payload_type = true;
        }
        out.forward = self.relayed;
        out
    }

    /// One datagram on the RTCP port. RTCP is sent to the RTP peer's port + 1 until
    /// RTCP arrives, then to where it comes from.
    pub fn handle_rtcp(&mut self, now: Time, from: SocketAddr, data: &[u8]) -> Received {
        let Ok(packets) = rtcp::parse_compound(data) else {
            return Received::of(Verdict::Malformed);
        };
        if !self.rtcp_latched || from != self.remote_rtcp {
            self.remote_rtcp = from;
            self.rtcp_latched = true;
        }
        if from.ip() == self.remote.ip() {
            self.touch(now);
        }
        for p in &packets {
            if let RtcpPacket::Sr { ssrc, info, .. } = p {
                if self.peer.is_some_and(|p| p.ssrc == *ssrc) {
                    self.last_sr = Some((rtcp::ntp_middle(info.ntp), now));
                }
            }
        }
        let mut out = Received::of(Verdict::Accepted);
        out.forward = self.relayed;
        out
    }

    /// Runs the timers due at `now`: RFC 4733 events whose packets stopped, the RTP
    /// timeout, the orphan rule. Calling it early or often is harmless.
    pub fn handle_timeout(&mut self, now: Time) {
        if let Some(c) = &mut self.collect {
            if c.events.poll_timeout().is_some_and(|t| t <= now) {
                c.events.handle_timeout(now);
                while c.events.poll_event().is_some() {} // an event cut short gives no digit
            }
        }
        if !self.timed_out && self.last_rx.is_some_and(|t| now.since(t) >= self.rtp_timeout) {
            self.timed_out = true;
            self.events.push_back(SessionEvent::RtpTimeout);
        }
        // Relayed sessions report nothing themselves; the far ends' RTCP passes.
        if self.relayed && now >= self.rtcp_at {
            self.rtcp_at = now + Duration::from_millis(crate::limits::MEDIA_RTCP_INTERVAL_MS);
        }
        if !self.orphaned && now >= self.orphan_at() {
            self.orphaned = true;
            self.events.push_back(SessionEvent::Orphaned);
        }
    }

    // ---- outputs ----

    /// When the next paced frame is due (None while relayed).
    pub fn next_send(&self) -> Option<Time> {
        (!self.relayed).then(|| self.due())
    }

    /// The earliest time `poll_transmit` or `handle_timeout` has something to do.
    pub fn poll_timeout(&self) -> Option<Time> {
        let mut t = self.next_send();
        let mut at = |x: Time| t = Some(t.map_or(x, |t| t.min(x)));
        if let Some(x) = self.collect.as_ref().and_then(|c| c.events.poll_timeout()) {
            at(x);
        }
        if let (false, Some(rx)) = (self.timed_out, self.last_rx) {
            at(rx + self.rtp_timeout);
        }
        if !self.orphaned {
            at(self.orphan_at());
        }
        t
    }

    /// The next datagram due at `now`, written into `buf` (at least `TRANSMIT_MAX`):
    /// the paced frame (a telephone-event in its place while digits are sent), then
    /// the periodic RTCP report (RFC 3550 6.4.1). None when nothing is due.
    pub fn poll_transmit(&mut self, now: Time, buf: &mut [u8]) -> Option<Transmit> {
        if self.relayed {
            return None;
        }
        if now >= self.due() {
            let behind = now.since(self.due()).as_micros() as u64 / FRAME_US;
            if behind > MAX_BEHIND {
                self.frame += behind;
                self.events.push_back(SessionEvent::FramesSkipped(behind));
            }
            let due = self.due();
            let len = self.write_frame(buf)?;
            return Some(Transmit { to: self.remote, len, kind: Kind::Rtp { due } });
        }
        if now >= self.rtcp_at {
            self.rtcp_at = now + Duration::from_millis(crate::limits::MEDIA_RTCP_INTERVAL_MS);
            let p = self.report(now);
            return self.write_rtcp(&p, buf);
        }
        None
    }

    /// SR/RR + SDES + BYE for closing the session (RFC 3550 6.6), into `buf`.
    pub fn close(&mut self, now: Time, buf: &mut [u8]) -> Option<Transmit> {
        let mut p = self.report(now);
        p.push(RtcpPacket::Bye { sources: vec![self.ssrc], reason: None });
        self.write_rtcp(&p, buf)
    }

    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// True when `poll_event` has something (a cheap check on the receive path).
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    // ---- internals ----

    fn due(&self) -> Time {
        Time(self.start.as_micros().saturating_add(self.frame.saturating_mul(FRAME_US)))
    }

    fn timestamp(&self) -> u32 {
        self.ts_base.wrapping_add((self.frame as u32).wrapping_mul(FRAME_SAMPLES as u32))
    }

    fn orphan_at(&self) -> Time {
        let after = if self.had_rtp { self.rtp_timeout + self.orphan_grace } else { self.orphan_idle };
        self.last_touch + after
    }

    /// Writes the frame now due and advances the schedule; None (nothing written, the
    /// frame still due) if `buf` is too small.
    fn write_frame(&mut self, buf: &mut [u8]) -> Option<usize> {
        let pkt = buf.get_mut(..rtp::HEADER_LEN + FRAME_SAMPLES)?;
        pkt[..rtp::HEADER_LEN].fill(0);
        pkt[0] = rtp::RTP_VERSION << 6;
        pkt[2..4].copy_from_slice(&self.seq.to_be_bytes());
        pkt[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        let mut payload = [0u8; FRAME_SAMPLES];
        let done = self.source.next_frame(self.law, &mut payload);
        // A DTMF event replaces the audio of this frame (RFC 4733 2.5).
        let len = match self.dtmf.next(self.timestamp()) {
            Some((marker, ev, ts)) => {
                pkt[1] = (u8::from(marker) << 7) | (self.dtmf.pt & 0x7F);
                pkt[4..8].copy_from_slice(&ts.to_be_bytes());
                pkt[12..16].copy_from_slice(&ev);
                rtp::HEADER_LEN + 4
            }
            None => {
                pkt[1] = (u8::from(!self.sent_any) << 7) | self.law.payload_type();
                pkt[4..8].copy_from_slice(&self.timestamp().to_be_bytes());
                pkt[12..].copy_from_slice(&payload);
                pkt.len()
            }
        };
        self.sent_any = true;
        self.seq = self.seq.wrapping_add(1);
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add((len - rtp::HEADER_LEN) as u32);
        self.frame += 1;
        if done {
            self.events.push_back(SessionEvent::PlayoutDone);
        }
        Some(len)
    }

    /// Our sender report (or receiver report before we sent anything), with a report
    /// block for the peer when we hear one, and our CNAME.
    fn report(&mut self, now: Time) -> Vec<RtcpPacket> {
        let mut reports = Vec::new();
        if let (Some(rx), Some(peer)) = (&mut self.rx, self.peer) {
            let (lsr, dlsr) = self.last_sr.map_or((0, 0), |(lsr, at)| (lsr, rtcp::to_dlsr(now.since(at))));
            reports.push(rx.report_block(peer.ssrc, lsr, dlsr));
        }
        let first = if self.sent_any {
            let info = SenderInfo { ntp: self.ntp(now), rtp_timestamp: self.timestamp(), packets: self.packets, octets: self.octets };
            RtcpPacket::Sr { ssrc: self.ssrc, info, reports }
        } else {
            RtcpPacket::Rr { ssrc: self.ssrc, reports }
        };
        let cname = format!("ctibox-{:08x}", self.ssrc).into_bytes();
        vec![first, RtcpPacket::Sdes(vec![SdesChunk { ssrc: self.ssrc, items: vec![(rtcp::SDES_CNAME, cname)] }])]
    }

    fn write_rtcp(&self, packets: &[RtcpPacket], buf: &mut [u8]) -> Option<Transmit> {
        let bytes = rtcp::build_compound(packets).ok()?;
        buf.get_mut(..bytes.len())?.copy_from_slice(&bytes);
        Some(Transmit { to: self.remote_rtcp, len: bytes.len(), kind: Kind::Rtcp })
    }

    /// `now` on the wall clock as a 64-bit NTP timestamp.
    fn ntp(&self, now: Time) -> u64 {
        let d = self.wall_at_zero + Duration::from_micros(now.as_micros());
        let secs = d.as_secs().wrapping_add(2_208_988_800);
        let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
        (secs << 32) | frac
    }
}

/// The RTCP address beside an RTP one (port + 1).
fn rtcp_of(rtp: SocketAddr) -> SocketAddr {
    SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1))
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
