//! The session on a virtual clock: pacing, latching (window, foreign sources, NAT
//! rebinding), digits both ways, RTCP, RTP timeout and the orphan rule.

use super::*;
use crate::core::media::dtmf::{synth_digit, DtmfTone};
use crate::core::media::rtp::RtpHeader;
use std::sync::Arc;

const C: &str = "192.0.2.10:4000"; // the commanded remote (SDP)
const NAT: &str = "198.51.100.7:31000"; // where the phone's RTP really comes from
const STRAY: &str = "203.0.113.9:5004";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ms(n: u64) -> Time {
    Time::from_millis(n)
}

fn session(source: Source) -> Session {
    let mut cfg = SessionConfig::new(addr(C), Law::Ulaw, source, 0x1234_5678_9abc_def0, Duration::from_secs(1_700_000_000));
    cfg.rtp_timeout = Duration::from_secs(30);
    Session::new(Time::ZERO, cfg)
}

fn rtp(ssrc: u32, seq: u16, pt: u8, payload: &[u8]) -> Vec<u8> {
    RtpHeader { payload_type: pt, sequence: seq, timestamp: u32::from(seq) * 160, ssrc, ..Default::default() }.to_packet(payload)
}

fn audio(ssrc: u32, seq: u16) -> Vec<u8> {
    rtp(ssrc, seq, 0, &[0xFF; 160])
}

fn events(s: &mut Session) -> Vec<SessionEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// Runs the session to `until` the way the media thread does: timers, then every due
/// datagram. Returns what it sent.
fn run(s: &mut Session, until: Time) -> Vec<(Time, Transmit, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = [0u8; TRANSMIT_MAX];
    while let Some(t) = s.poll_timeout().filter(|t| *t <= until) {
        s.handle_timeout(t);
        while let Some(x) = s.poll_transmit(t, &mut buf) {
            out.push((t, x, buf[..x.len].to_vec()));
        }
    }
    out
}

#[test]
fn frames_are_paced_numbered_and_marked() {
    let mut s = session(Source::Silence);
    let sent = run(&mut s, ms(1990));
    let frames: Vec<_> = sent.iter().filter(|(_, t, _)| matches!(t.kind, Kind::Rtp { .. })).collect();
    assert_eq!(frames.len(), 100);
    for (i, (at, t, bytes)) in frames.iter().enumerate() {
        assert_eq!(*at, ms(20 * i as u64), "frame {i} due on the schedule");
        assert_eq!(t.kind, Kind::Rtp { due: *at });
        assert_eq!(t.to, addr(C));
        let p = rtp::parse(bytes).unwrap();
        let first = rtp::parse(&frames[0].2).unwrap().header;
        assert_eq!(p.header.sequence, first.sequence.wrapping_add(i as u16));
        assert_eq!(p.header.timestamp, first.timestamp.wrapping_add(160 * i as u32));
        assert_eq!(p.header.marker, i == 0);
        assert_eq!(p.payload, &[Law::Ulaw.silence(); 160][..]);
    }
}

#[test]
fn a_starved_driver_skips_ahead_and_the_timestamp_counts_the_gap() {
    let mut s = session(Source::Silence);
    let mut buf = [0u8; TRANSMIT_MAX];
    let t0 = s.poll_transmit(Time::ZERO, &mut buf).unwrap();
    let h0 = rtp::parse(&buf[..t0.len]).unwrap().header;
    // 200 ms late: 10 frames behind, more than MAX_BEHIND.
    let t = s.poll_transmit(ms(220), &mut buf).unwrap();
    let h = rtp::parse(&buf[..t.len]).unwrap().header;
    assert_eq!(h.sequence, h0.sequence.wrapping_add(1), "the sequence stays continuous");
    assert_eq!(h.timestamp, h0.timestamp.wrapping_add(160 * 11));
    assert_eq!(t.kind, Kind::Rtp { due: ms(220) });
    assert_eq!(events(&mut s), [SessionEvent::FramesSkipped(10)]);
    // A few frames late (within MAX_BEHIND) are sent one after another.
    assert!(s.poll_transmit(ms(300), &mut buf).is_some());
    assert_eq!(s.next_send(), Some(ms(260)));
}

#[test]
fn latches_to_the_first_source_within_the_window() {
    let mut s = session(Source::Silence);
    let r = s.handle_rtp(ms(1500), addr(NAT), &audio(7, 100));
    assert_eq!((r.verdict, r.relatched), (Verdict::Accepted, true));
    assert_eq!(s.remote(), addr(NAT));
    assert_eq!(s.remote_rtcp(), addr("198.51.100.7:31001"));
    let mut buf = [0u8; TRANSMIT_MAX];
    assert_eq!(s.poll_transmit(ms(1500), &mut buf).unwrap().to, addr(NAT));
    // Latched: another source in the window no longer may take it.
    assert_eq!(s.handle_rtp(ms(1600), addr(STRAY), &audio(9, 1)).verdict, Verdict::Foreign);
    assert_eq!(s.remote(), addr(NAT));
}

#[test]
fn no_latch_after_the_window_but_the_commanded_remote_is_heard() {
    let mut s = session(Source::Silence);
    let r = s.handle_rtp(ms(2000), addr(NAT), &audio(7, 100));
    assert_eq!(r.verdict, Verdict::Foreign);
    assert_eq!(s.remote(), addr(C));
    let r = s.handle_rtp(ms(2500), addr(C), &audio(7, 101));
    assert_eq!((r.verdict, r.relatched), (Verdict::Accepted, false));
    assert_eq!(s.remote(), addr(C));
}

#[test]
fn a_foreign_ssrc_from_another_address_is_dropped_in_and_after_the_window() {
    let mut s = session(Source::Silence);
    assert_eq!(s.handle_rtp(ms(10), addr(C), &audio(7, 100)).verdict, Verdict::Accepted);
    for (t, seq) in [(500, 101), (5000, 102)] {
        let r = s.handle_rtp(ms(t), addr(STRAY), &audio(0xBAD, seq));
        assert_eq!((r.verdict, r.relatched, r.forward), (Verdict::Foreign, false, false));
        assert_eq!(s.remote(), addr(C));
    }
    // The latched source goes on.
    assert_eq!(s.handle_rtp(ms(5010), addr(C), &audio(7, 101)).verdict, Verdict::Accepted);
}

#[test]
fn the_same_ssrc_continuing_from_a_new_port_is_a_nat_rebinding() {
    let mut s = session(Source::Silence);
    for i in 0..10u16 {
        assert_eq!(s.handle_rtp(ms(20 * u64::from(i)), addr(C), &audio(7, 100 + i)).verdict, Verdict::Accepted);
    }
    // Long after the window the NAT maps the phone to a new port; three packets lost.
    let moved = addr("192.0.2.10:4100");
    let r = s.handle_rtp(ms(60_000), moved, &audio(7, 113));
    assert_eq!((r.verdict, r.relatched), (Verdict::Accepted, true));
    assert_eq!(s.remote(), moved);
    // A straggler sent through the old binding before the move is foreign now.
    assert_eq!(s.handle_rtp(ms(60_010), addr(C), &audio(7, 112)).verdict, Verdict::Foreign);
    assert_eq!(s.remote(), moved);
    assert_eq!(s.handle_rtp(ms(60_020), moved, &audio(7, 114)).verdict, Verdict::Accepted);
}

#[test]
fn a_far_sequence_jump_or_a_repeat_from_a_new_address_is_refused() {
    let mut s = session(Source::Silence);
    assert_eq!(s.handle_rtp(ms(10), addr(C), &audio(7, 100)).verdict, Verdict::Accepted);
    assert_eq!(s.handle_rtp(ms(30), addr(C), &audio(7, 101)).verdict, Verdict::Accepted);
    let other = addr("192.0.2.10:4100");
    let step = crate::limits::MEDIA_REBIND_SEQ_STEP;
    for seq in [101 + step + 1, 101, 100, 1000, 101u16.wrapping_sub(50)] {
        assert_eq!(s.handle_rtp(ms(10_000), other, &audio(7, seq)).verdict, Verdict::Foreign, "seq {seq}");
    }
    assert_eq!(s.remote(), addr(C));
    // The edge of the step is still a rebinding.
    assert_eq!(s.handle_rtp(ms(10_000), other, &audio(7, 101 + step)).verdict, Verdict::Accepted);
}

#[test]
fn a_new_commanded_remote_opens_the_window_again_and_wins_it() {
    let mut s = session(Source::Silence);
    assert!(s.handle_rtp(ms(10), addr(NAT), &audio(7, 1)).relatched);
    // A re-INVITE moves the media to another device at 30 s.
    let device = addr("192.0.2.20:6000");
    s.set_remote(ms(30_000), device);
    assert_eq!(s.remote(), device);
    // The old phone's last packets arrive first and latch within the new window...
    assert!(s.handle_rtp(ms(30_005), addr(NAT), &audio(7, 2)).relatched);
    // ...but the commanded device itself takes the stream back within the window.
    let r = s.handle_rtp(ms(30_020), device, &audio(8, 500));
    assert_eq!((r.verdict, r.relatched), (Verdict::Accepted, true));
    assert_eq!(s.remote(), device);
    assert_eq!(s.handle_rtp(ms(30_040), addr(NAT), &audio(7, 3)).verdict, Verdict::Foreign);
    // The same remote commanded again (another source) changes nothing.
    s.set_remote(ms(40_000), device);
    assert_eq!(s.handle_rtp(ms(40_010), addr(STRAY), &audio(9, 1)).verdict, Verdict::Foreign);
}

#[test]
fn another_ssrc_from_the_latched_address_waits_until_the_first_is_silent() {
    let mut s = session(Source::Silence);
    assert_eq!(s.handle_rtp(ms(10), addr(C), &audio(7, 1)).verdict, Verdict::Accepted);
    assert_eq!(s.handle_rtp(ms(500), addr(C), &audio(8, 1)).verdict, Verdict::WrongSsrc);
    // A phone that restarted its stream: 1 s later the new SSRC takes over.
    assert_eq!(s.handle_rtp(ms(1100), addr(C), &audio(8, 2)).verdict, Verdict::Accepted);
    assert_eq!(s.handle_rtp(ms(1120), addr(C), &audio(7, 2)).verdict, Verdict::WrongSsrc);
}

#[test]
fn bad_datagrams_are_malformed_and_payload_types_are_checked() {
    let mut s = session(Source::Silence);
    assert_eq!(s.handle_rtp(ms(1), addr(C), &[0x80, 0, 1]).verdict, Verdict::Malformed);
    assert_eq!(s.handle_rtp(ms(1), addr(C), &rtp(7, 1, 72, &[0; 8])).verdict, Verdict::Malformed, "RTCP muxed on the RTP port");
    assert_eq!(s.handle_rtcp(ms(1), addr(C), &[1, 2, 3, 4]).verdict, Verdict::Malformed);
    let r = s.handle_rtp(ms(2), addr(C), &rtp(7, 1, 8, &[0xD5; 160]));
    assert_eq!((r.verdict, r.wrong_payload_type), (Verdict::Accepted, true), "A-law on a mu-law stream");
    assert!(!s.handle_rtp(ms(3), addr(C), &rtp(7, 2, 13, &[0; 1])).wrong_payload_type, "comfort noise");
    s.collect_digits(Some(101));
    let r = s.handle_rtp(ms(4), addr(C), &rtp(7, 3, 101, &[1, 2, 3]));
    assert!(r.bad_payload, "a telephone-event payload of the wrong length");
}

#[test]
fn rfc4733_digits_come_once_and_inband_detection_stops_after_events() {
    let mut s = session(Source::Silence);
    s.collect_digits(Some(101));
    let mut seq = 1u16;
    let mut t = 0;
    let mut send = |s: &mut Session, pt: u8, marker: bool, ts: u32, payload: &[u8]| {
        let h = RtpHeader { marker, payload_type: pt, sequence: seq, timestamp: ts, ssrc: 7, ..Default::default() };
        seq += 1;
        t += 20;
        s.handle_rtp(ms(t), addr(C), &h.to_packet(payload))
    };
    for (i, d) in "159#".chars().enumerate() {
        let ts = 10_000 + 1000 * i as u32;
        for (marker, ev) in telephone_event::sender_run(Digit::from_char(d).unwrap().event(), 10, 640, 160) {
            for _ in 0..2 {
                assert_eq!(send(&mut s, 101, marker, ts, &ev.encode()).verdict, Verdict::Accepted);
            }
        }
    }
    let digits: String = events(&mut s).into_iter().map(|e| if let SessionEvent::Digit(c) = e { c } else { panic!("{e:?}") }).collect();
    assert_eq!(digits, "159#");
    // In-band tones after the events are not detected (no digit twice).
    let mut pcm = Vec::new();
    synth_digit(Digit::from_char('7').unwrap(), &DtmfTone::default(), 1600, &mut pcm);
    for (i, chunk) in pcm.chunks(160).enumerate() {
        let codes: Vec<u8> = chunk.iter().map(|&x| Law::Ulaw.encode(x)).collect();
        send(&mut s, 0, false, 20_000 + 160 * i as u32, &codes);
    }
    assert_eq!(events(&mut s), []);
}

#[test]
fn inband_digits_are_detected_in_the_audio() {
    let mut s = session(Source::Silence);
    s.collect_digits(None);
    let mut pcm = Vec::new();
    synth_digit(Digit::from_char('5').unwrap(), &DtmfTone::default(), 800, &mut pcm);
    pcm.extend(std::iter::repeat_n(0, 800));
    synth_digit(Digit::from_char('*').unwrap(), &DtmfTone::default(), 800, &mut pcm);
    pcm.extend(std::iter::repeat_n(0, 800));
    for (i, chunk) in pcm.chunks(160).enumerate() {
        let codes: Vec<u8> = chunk.iter().map(|&x| Law::Ulaw.encode(x)).collect();
        s.handle_rtp(ms(20 * i as u64), addr(C), &rtp(7, i as u16, 0, &codes));
    }
    assert_eq!(events(&mut s), [SessionEvent::Digit('5'), SessionEvent::Digit('*')]);
}

#[test]
fn digits_are_sent_as_events_in_place_of_audio() {
    let mut s = session(Source::Silence);
    assert_eq!(s.send_digits("1x#", 101), 2);
    let sent = run(&mut s, ms(1000));
    let mut rx = EventReceiver::new();
    let mut got = String::new();
    let mut seqs = Vec::new();
    for (at, _, bytes) in &sent {
        let Ok(p) = rtp::parse(bytes) else { continue }; // RTCP
        seqs.push(p.header.sequence);
        if p.header.payload_type == 101 {
            rx.handle_packet(*at, p.header.marker, p.header.timestamp, &TelephoneEvent::decode(p.payload).unwrap());
            while let Some(e) = rx.poll_event() {
                if let ReceivedEvent::End { event, duration, .. } = e {
                    assert_eq!(duration, 800);
                    got.push(Digit::from_event(event).unwrap().to_char());
                }
            }
        }
    }
    assert_eq!(got, "1#");
    assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)), "one sequence for audio and events");
}

#[test]
fn a_prompt_reports_playout_done_once() {
    let mut s = session(Source::Prompt { pcm: Some(vec![1000; 400]), pos: 0 });
    run(&mut s, ms(200));
    assert_eq!(events(&mut s), [SessionEvent::PlayoutDone]);
}

#[test]
fn rtcp_reports_carry_ntp_from_the_given_wall_clock_and_close_sends_bye() {
    let mut s = session(Source::Silence);
    s.handle_rtp(ms(5), addr(C), &audio(7, 1));
    let sent = run(&mut s, ms(5100));
    let reports: Vec<_> = sent.iter().filter(|(_, t, _)| t.kind == Kind::Rtcp).collect();
    assert_eq!(reports.len(), 1, "the first report after 2.5..5 s");
    let (at, t, bytes) = reports[0];
    assert!((ms(2500)..=ms(5000)).contains(at), "{at}");
    assert_eq!(t.to, addr("192.0.2.10:4001"));
    let p = rtcp::parse_compound(bytes).unwrap();
    let RtcpPacket::Sr { info, reports, .. } = &p[0] else { panic!("{p:?}") };
    let unix = 1_700_000_000 + at.as_millis() / 1000;
    assert_eq!(info.ntp >> 32, unix + 2_208_988_800);
    assert_eq!(reports.len(), 1, "a block for the peer heard");
    assert!(matches!(p[1], RtcpPacket::Sdes(_)));
    let mut buf = [0u8; TRANSMIT_MAX];
    let bye = s.close(ms(6000), &mut buf).unwrap();
    let p = rtcp::parse_compound(&buf[..bye.len]).unwrap();
    assert!(matches!(p.last(), Some(RtcpPacket::Bye { .. })));
}

#[test]
fn relayed_sessions_send_nothing_forward_what_they_take_and_resume_on_the_grid() {
    let mut s = session(Source::Silence);
    run(&mut s, ms(100));
    s.set_relayed(ms(110), true);
    assert_eq!(s.next_send(), None);
    assert!(run(&mut s, ms(10_000)).is_empty(), "no frames and no reports while relayed");
    let mut buf = [0u8; TRANSMIT_MAX];
    assert!(s.poll_transmit(ms(10_000), &mut buf).is_none());
    assert!(s.handle_rtp(ms(10_001), addr(C), &audio(7, 1)).forward);
    assert!(s.handle_rtcp(ms(10_002), addr("192.0.2.10:4001"), &rtcp::build_compound(&[RtcpPacket::Rr { ssrc: 7, reports: vec![] }]).unwrap()).forward);
    assert!(!s.handle_rtp(ms(10_003), addr(STRAY), &audio(9, 1)).forward, "foreign RTP is not relayed");
    s.set_relayed(ms(10_005), false);
    assert_eq!(s.next_send(), Some(ms(10_020)));
}

#[test]
fn rtp_timeout_is_reported_once_until_rtp_returns() {
    let mut s = session(Source::Silence);
    run(&mut s, ms(60_000));
    assert!(!events(&mut s).contains(&SessionEvent::RtpTimeout), "no RTP ever: no timeout");
    s.handle_rtp(ms(60_000), addr(C), &audio(7, 1));
    run(&mut s, ms(89_999));
    assert_eq!(events(&mut s), []);
    run(&mut s, ms(95_000));
    assert_eq!(events(&mut s), [SessionEvent::RtpTimeout]);
    s.handle_rtp(ms(96_000), addr(C), &audio(7, 2));
    run(&mut s, ms(126_000));
    assert_eq!(events(&mut s), [SessionEvent::RtpTimeout]);
}

#[test]
fn a_stream_silent_after_its_timeout_and_untouched_is_orphaned() {
    let grace = crate::limits::MEDIA_ORPHAN_GRACE_MS;
    let mut s = session(Source::Silence);
    s.handle_rtp(ms(1000), addr(C), &audio(7, 1));
    // A command after the RTP timeout postpones the close by the whole period.
    run(&mut s, ms(40_000));
    assert_eq!(events(&mut s), [SessionEvent::RtpTimeout]);
    s.touch(ms(40_000));
    run(&mut s, ms(40_000 + 30_000 + grace - 1));
    assert_eq!(events(&mut s), []);
    run(&mut s, ms(40_000 + 30_000 + grace));
    assert_eq!(events(&mut s), [SessionEvent::Orphaned]);
    run(&mut s, ms(1_000_000));
    assert_eq!(events(&mut s), [], "reported once");
}

#[test]
fn rtcp_from_the_peer_keeps_a_stream_without_rtp_alive() {
    let grace = crate::limits::MEDIA_ORPHAN_GRACE_MS;
    let mut s = session(Source::Silence);
    s.handle_rtp(ms(1000), addr(C), &audio(7, 1));
    let rr = rtcp::build_compound(&[RtcpPacket::Rr { ssrc: 7, reports: vec![] }]).unwrap();
    let mut t = 1000;
    while t < 1000 + 4 * (30_000 + grace) {
        t += 5000;
        s.handle_rtcp(ms(t), addr("192.0.2.10:4001"), &rr);
        run(&mut s, ms(t));
    }
    assert_eq!(events(&mut s), [SessionEvent::RtpTimeout], "a muted phone: timed out, not orphaned");
    // RTCP from a stranger's host does not count.
    for _ in 0..30 {
        t += 5000;
        s.handle_rtcp(ms(t), addr(STRAY), &rr);
        run(&mut s, ms(t));
    }
    assert_eq!(events(&mut s), [SessionEvent::Orphaned]);
}

#[test]
fn a_stream_that_never_had_rtp_is_orphaned_only_after_the_long_idle() {
    let idle = crate::limits::MEDIA_ORPHAN_IDLE_MS;
    let mut s = session(Source::Loop { audio: Arc::new(crate::core::media::source::LoopAudio::new(vec![0; 160])), pos: 0 });
    s.touch(ms(1000));
    assert_eq!(s.poll_timeout(), Some(Time::ZERO));
    let mut buf = [0u8; TRANSMIT_MAX];
    // Step the clock coarsely (frames are skipped, that is fine here).
    let mut t = 0;
    while t < idle + 1000 - 1 {
        t += 60_000.min(idle + 999 - t);
        s.handle_timeout(ms(t));
        while s.poll_transmit(ms(t), &mut buf).is_some() {}
    }
    assert!(!events(&mut s).contains(&SessionEvent::Orphaned));
    s.handle_timeout(ms(idle + 1000));
    assert!(events(&mut s).contains(&SessionEvent::Orphaned));
}
