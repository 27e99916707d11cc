//! One RTP stream: its two sockets (RTP, RTCP on +1), the send schedule and packet
//! counters, the latched remote (symmetric RTP), receive statistics, and digit
//! collection (RFC 4733 events and in-band DTMF). The runtime owns the clock and the
//! poll loop; this file turns datagrams into effects.

use super::source::Source;
use super::stats::{inc, MediaStats};
use crate::core::media::dtmf::{Digit, DtmfDetector, DtmfEvent};
use crate::core::media::g711::Law;
use crate::core::media::rtcp::{self, RtcpPacket, SdesChunk, SenderInfo};
use crate::core::media::rtp::{self, ReceiveStats, RtpHeader};
use crate::core::media::telephone_event::{EventReceiver, ReceivedEvent, TelephoneEvent};
use crate::core::media::{FRAME_SAMPLES, SAMPLE_RATE};
use crate::core::{StreamId, Time};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// One RTP frame: 20 ms.
pub const FRAME: Duration = Duration::from_millis(20);
/// A latched source silent this long may be replaced by a new one (a phone that
/// restarted its stream, a re-INVITE to another device).
const RELATCH_AFTER: Duration = Duration::from_secs(1);

/// Digit collection state.
pub struct Collect {
    pub dtmf_pt: Option<u8>,
    events: EventReceiver,
    detector: DtmfDetector,
    /// Once the peer sends RFC 4733 events, in-band detection stops (a phone sending
    /// both must not give each digit twice).
    saw_events: bool,
}

impl Collect {
    pub fn new(dtmf_pt: Option<u8>) -> Collect {
        Collect { dtmf_pt, events: EventReceiver::new(), detector: DtmfDetector::default(), saw_events: false }
    }
    pub fn poll_timeout(&self) -> Option<Time> {
        self.events.poll_timeout()
    }
    /// Ends an RFC 4733 event whose packets stopped (no digit comes of it).
    pub fn handle_timeout(&mut self, now: Time) {
        self.events.handle_timeout(now);
        while self.events.poll_event().is_some() {}
    }
}

pub struct Stream {
    pub id: StreamId,
    /// Bumped whenever the send schedule is replaced; stale deadlines are skipped.
    pub tick_gen: u64,
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
    pub local_port: u16,
    pub remote: SocketAddr,
    pub remote_rtcp: SocketAddr,
    rtcp_latched: bool,
    pub law: Law,
    pub source: Source,
    ssrc: u32,
    seq: u16,
    ts_base: u32,
    /// Frame `n` is due at `start + n * FRAME`.
    pub start: Instant,
    pub frame: u64,
    sent_any: bool,
    packets: u32,
    octets: u32,
    pub rtcp_at: Instant,
    // Receive side.
    peer_ssrc: Option<u32>,
    pub last_rx: Option<Instant>,
    pub timed_out: bool,
    rx: Option<ReceiveStats>,
    last_sr: Option<(u32, Instant)>,
    pub collect: Option<Collect>,
    /// The slot of the stream this one is relayed with.
    pub relay: Option<usize>,
    /// DTMF to send (RFC 4733), and the one being sent.
    pub dtmf: DtmfOut,
    /// The generation the sockets were opened under (io_uring completions carry it,
    /// so one for a closed socket is not taken for its slot's next stream).
    pub io_gen: u64,
}

/// Telephone-events waiting to be sent on a stream, one packet per 20 ms frame.
#[derive(Default)]
pub struct DtmfOut {
    pub pt: u8,
    pending: std::collections::VecDeque<u8>,
    /// The event under way.
    run: Option<EventRun>,
    /// Frames of audio still to send before the next event.
    gap: u8,
}

/// One telephone-event being sent: its packets (marker, payload), the next one to
/// send, and the event's RTP timestamp (the same on all its packets).
struct EventRun {
    packets: Vec<(bool, crate::core::media::telephone_event::TelephoneEvent)>,
    next: usize,
    timestamp: u32,
}

/// Pending digits per stream, at most.
pub const DTMF_QUEUE: usize = 32;
/// 100 ms events, a packet every 20 ms, 60 ms between events.
const DTMF_DURATION: u16 = 800;
const DTMF_GAP_FRAMES: u8 = 3;

impl DtmfOut {
    /// Queues digits; returns how many were taken (unknown characters are skipped).
    pub fn push(&mut self, digits: &str, pt: u8) -> usize {
        self.pt = pt;
        let mut taken = 0;
        for c in digits.chars() {
            if self.pending.len() >= DTMF_QUEUE {
                break;
            }
            if let Some(d) = crate::core::media::dtmf::Digit::from_char(c) {
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
            let packets = crate::core::media::telephone_event::sender_run(event, 10, DTMF_DURATION, FRAME_SAMPLES as u16);
            self.run = Some(EventRun { packets, next: 0, timestamp });
        }
        let run = self.run.as_mut()?;
        let (marker, ev) = run.packets[run.next];
        let out = (marker, ev.encode(), run.timestamp);
        run.next += 1;
        if run.next == run.packets.len() {
            self.run = None;
            self.gap = DTMF_GAP_FRAMES;
        }
        Some(out)
    }
}

/// What a received datagram asks the runtime to do.
pub enum RxEffect {
    None,
    /// Forward these bytes out of the relay partner's socket (RTP, or RTCP if `rtcp`).
    Forward { rtcp: bool },
}

impl Stream {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: StreamId,
        rtp: UdpSocket,
        rtcp: UdpSocket,
        local_port: u16,
        remote: SocketAddr,
        law: Law,
        source: Source,
        random: u64,
        start: Instant,
    ) -> Stream {
        let remote_rtcp = SocketAddr::new(remote.ip(), remote.port().wrapping_add(1));
        Stream {
            id,
            tick_gen: 0,
            rtp,
            rtcp,
            local_port,
            remote,
            remote_rtcp,
            rtcp_latched: false,
            law,
            source,
            ssrc: random as u32,
            // RFC 3550 5.1: random initial sequence number and timestamp.
            seq: (random >> 32) as u16,
            ts_base: ((random >> 48) as u32) << 16 | (random as u32 >> 16),
            start,
            frame: 0,
            sent_any: false,
            packets: 0,
            octets: 0,
            // The first report after 2.5..5 s, then every interval (spread out).
            rtcp_at: start + Duration::from_millis(2500 + (random >> 20) % 2500),
            peer_ssrc: None,
            last_rx: None,
            timed_out: false,
            rx: None,
            last_sr: None,
            collect: None,
            relay: None,
            dtmf: DtmfOut::default(),
            io_gen: 0,
        }
    }

    pub fn due(&self) -> Instant {
        self.start + FRAME * (self.frame as u32)
    }

    fn timestamp(&self) -> u32 {
        self.ts_base.wrapping_add((self.frame as u32).wrapping_mul(FRAME_SAMPLES as u32))
    }

    /// Sends the frame now due. Returns true when a prompt or a non-repeating tone
    /// has just played out.
    pub fn send_frame(&mut self, stats: &MediaStats) -> bool {
        let mut payload = [0u8; FRAME_SAMPLES];
        let done = self.source.next_frame(self.law, &mut payload);
        let mut pkt = [0u8; rtp::HEADER_LEN + FRAME_SAMPLES];
        pkt[0] = rtp::RTP_VERSION << 6;
        pkt[2..4].copy_from_slice(&self.seq.to_be_bytes());
        pkt[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        // A DTMF event replaces the audio of this frame (RFC 4733 §2.5).
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
        match self.rtp.send_to(&pkt[..len], self.remote) {
            Ok(_) => {
                inc(&stats.packets_sent);
                self.sent_any = true;
                self.seq = self.seq.wrapping_add(1);
                self.packets = self.packets.wrapping_add(1);
                self.octets = self.octets.wrapping_add(FRAME_SAMPLES as u32);
            }
            Err(e) => {
                inc(&stats.send_errors);
                log::trace!("media: stream {}: send to {}: {e}", self.id.0, self.remote);
            }
        }
        self.frame += 1;
        done
    }

    /// Our sender report (or receiver report before we sent anything), with a report
    /// block for the peer when we hear one, and our CNAME.
    fn report(&mut self, now: Instant) -> Vec<RtcpPacket> {
        let mut reports = Vec::new();
        if let (Some(rx), Some(peer)) = (&mut self.rx, self.peer_ssrc) {
            let (lsr, dlsr) = self.last_sr.map_or((0, 0), |(lsr, at)| (lsr, rtcp::to_dlsr(now - at)));
            reports.push(rx.report_block(peer, lsr, dlsr));
        }
        let first = if self.sent_any {
            let info = SenderInfo { ntp: ntp_now(), rtp_timestamp: self.timestamp(), packets: self.packets, octets: self.octets };
            RtcpPacket::Sr { ssrc: self.ssrc, info, reports }
        } else {
            RtcpPacket::Rr { ssrc: self.ssrc, reports }
        };
        let cname = format!("ctibox-{:08x}", self.ssrc).into_bytes();
        vec![first, RtcpPacket::Sdes(vec![SdesChunk { ssrc: self.ssrc, items: vec![(rtcp::SDES_CNAME, cname)] }])]
    }

    fn send_rtcp(&mut self, packets: &[RtcpPacket], stats: &MediaStats) {
        match rtcp::build_compound(packets) {
            Ok(bytes) => match self.rtcp.send_to(&bytes, self.remote_rtcp) {
                Ok(_) => inc(&stats.rtcp_sent),
                Err(_) => inc(&stats.send_errors),
            },
            Err(e) => log::debug!("media: stream {}: RTCP not built: {e}", self.id.0),
        }
    }

    /// The periodic SR (RFC 3550 6.4.1).
    pub fn send_report(&mut self, now: Instant, stats: &MediaStats) {
        let p = self.report(now);
        self.send_rtcp(&p, stats);
        self.rtcp_at = now + Duration::from_millis(crate::limits::MEDIA_RTCP_INTERVAL_MS);
    }

    /// SR/RR + SDES + BYE, when the stream stops (RFC 3550 6.6).
    pub fn send_bye(&mut self, now: Instant, stats: &MediaStats) {
        let mut p = self.report(now);
        p.push(RtcpPacket::Bye { sources: vec![self.ssrc], reason: None });
        self.send_rtcp(&p, stats);
    }

    /// One datagram on the RTP port. `digits` receives each digit once.
    pub fn on_rtp(&mut self, data: &[u8], from: SocketAddr, now: Instant, time: Time, stats: &MediaStats, digits: &mut Vec<char>) -> RxEffect {
        let Ok(pkt) = rtp::parse(data) else {
            inc(&stats.bad_packets);
            return RxEffect::None;
        };
        let h: &RtpHeader = &pkt.header;
        // RTCP multiplexed onto the RTP port (RFC 5761 payload types 64-95) is not RTP.
        if (64..96).contains(&h.payload_type) {
            inc(&stats.bad_packets);
            return RxEffect::None;
        }
        match self.peer_ssrc {
            Some(s) if s == h.ssrc => {}
            Some(_) if self.last_rx.is_some_and(|t| now.duration_since(t) < RELATCH_AFTER) => {
                inc(&stats.wrong_ssrc);
                return RxEffect::None;
            }
            _ => {
                self.peer_ssrc = Some(h.ssrc);
                self.rx = Some(ReceiveStats::new(h.sequence, SAMPLE_RATE));
                self.last_sr = None;
                if let Some(c) = &mut self.collect {
                    *c = Collect::new(c.dtmf_pt);
                }
            }
        }
        inc(&stats.packets_received);
        if from != self.remote {
            // Symmetric RTP (RFC 4961): answer where the media comes from.
            self.remote = from;
            if !self.rtcp_latched {
                self.remote_rtcp = SocketAddr::new(from.ip(), from.port().wrapping_add(1));
            }
            inc(&stats.relatched);
        }
        self.last_rx = Some(now);
        self.timed_out = false;
        if let Some(rx) = &mut self.rx {
            rx.update(h.sequence, h.timestamp, time);
        }
        let audio = h.payload_type == self.law.payload_type();
        if let Some(c) = &mut self.collect {
            if c.dtmf_pt == Some(h.payload_type) {
                match TelephoneEvent::decode(pkt.payload) {
                    Ok(ev) => {
                        c.saw_events = true;
                        c.events.handle_packet(time, h.marker, h.timestamp, &ev);
                        while let Some(r) = c.events.poll_event() {
                            if let ReceivedEvent::Start { event, .. } = r {
                                if let Some(d) = Digit::from_event(event) {
                                    digits.push(d.to_char());
                                }
                            }
                        }
                    }
                    Err(_) => inc(&stats.bad_packets),
                }
            } else if audio && !c.saw_events {
                let mut pcm = [0i16; 256];
                for chunk in pkt.payload.chunks(pcm.len()) {
                    let n = self.law.decode_into(chunk, &mut pcm);
                    c.detector.process(&pcm[..n]);
                }
                while let Some(e) = c.detector.poll_event() {
                    if let DtmfEvent::Start { digit, .. } = e {
                        digits.push(digit.to_char());
                    }
                }
            } else if !audio {
                inc(&stats.wrong_payload_type);
            }
        } else if !audio && self.relay.is_none() && h.payload_type != 13 {
            // Comfort noise (13) is fine; telephone events without collection are not
            // counted as errors either when they are dynamic (96-127).
            if h.payload_type < 96 {
                inc(&stats.wrong_payload_type);
            }
        }
        if self.relay.is_some() {
            RxEffect::Forward { rtcp: false }
        } else {
            RxEffect::None
        }
    }

    /// One datagram on the RTCP port.
    pub fn on_rtcp(&mut self, data: &[u8], from: SocketAddr, now: Instant, stats: &MediaStats) -> RxEffect {
        let Ok(packets) = rtcp::parse_compound(data) else {
            inc(&stats.rtcp_bad);
            return RxEffect::None;
        };
        inc(&stats.rtcp_received);
        if !self.rtcp_latched || from != self.remote_rtcp {
            self.remote_rtcp = from;
            self.rtcp_latched = true;
        }
        for p in &packets {
            if let RtcpPacket::Sr { ssrc, info, .. } = p {
                if Some(*ssrc) == self.peer_ssrc {
                    self.last_sr = Some((rtcp::ntp_middle(info.ntp), now));
                }
            }
        }
        if self.relay.is_some() {
            RxEffect::Forward { rtcp: true }
        } else {
            RxEffect::None
        }
    }
}

/// The wall clock as a 64-bit NTP timestamp.
fn ntp_now() -> u64 {
    let d = super::wall_clock();
    let secs = d.as_secs() + 2_208_988_800;
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}
