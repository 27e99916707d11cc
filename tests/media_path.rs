//! The media path driven directly through its command queue (no engine), with real
//! UDP sockets on 127.0.0.1: pacing and RTP headers, music on hold and tones checked
//! by decoding, prompts, RFC 4733 and in-band digits (SoX), espeak-ng talk-off over
//! RTP, garbage input, symmetric RTP, RTCP, RTP timeout and relay. Every scenario runs
//! on both of the media thread's I/O backends (epoll and io_uring; the io_uring run
//! fails where the kernel does not offer it). Nothing sleeps to wait: every wait is on
//! a packet or an event, with a guard timeout.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // a test of the shell reads the clock like the shell

mod common;
use common::{require, run_tool, TempDir};
use ctibox::config::Codec;
use ctibox::core::media::dtmf::Digit;
use ctibox::core::media::g711::Law;
use ctibox::core::media::goertzel::Goertzel;
use ctibox::core::media::rtcp::{self, RtcpPacket};
use ctibox::core::media::rtp::{self, RtpHeader};
use ctibox::core::media::telephone_event::{sender_run, TelephoneEvent};
use ctibox::core::media::tone::{Country, ToneKind};
use ctibox::core::{MediaCmd, MediaEvent, MediaSource, StreamId};
use ctibox::io::media::{self, LoopAudio, MediaHandle, MediaIo, MediaSettings, MediaStats};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

const GUARD: Duration = Duration::from_secs(5);

thread_local! {
    /// The backend this test thread's media path runs on (set by the wrappers below).
    static IO: std::cell::Cell<MediaIo> = const { std::cell::Cell::new(MediaIo::Epoll) };
}

struct Media {
    h: MediaHandle,
    ev: Receiver<MediaEvent>,
}

fn start_with(rtp_timeout: Duration) -> Media {
    let settings = MediaSettings {
        bind_ip: "127.0.0.1".parse().unwrap(),
        country: Country::Us,
        moh: Arc::new(LoopAudio::new(media::melody())),
        rtp_timeout,
        io: IO.with(std::cell::Cell::get),
    };
    let (tx, ev) = mpsc::channel();
    let (h, threads) = media::start(settings, Box::new(move |e| tx.send(e).is_ok())).unwrap();
    for (name, body) in threads {
        std::thread::Builder::new().name(name.into()).spawn(move || body().unwrap()).unwrap();
    }
    Media { h, ev }
}

fn start() -> Media {
    start_with(Duration::from_secs(30))
}

impl Media {
    fn cmd(&self, c: MediaCmd) {
        self.h.send(c).unwrap();
    }
    fn event(&self) -> MediaEvent {
        self.ev.recv_timeout(GUARD).expect("no media event within the guard time")
    }
    fn stats(&self) -> &MediaStats {
        self.h.stats()
    }
}

/// A UDP port pair (even RTP, RTCP above) free right now, never handed out before in
/// this process. Pairs come from below the kernel's ephemeral range (32768 up), so a
/// socket bound to port 0 meanwhile, by this test or a parallel one, cannot take a port
/// that was handed to the media thread before its bind.
fn free_pair() -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(20_000);
    loop {
        let p = NEXT.fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        assert!(p < 32_000, "no free port pair below the ephemeral range");
        if UdpSocket::bind(("127.0.0.1", p)).is_ok() && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

/// A test peer: RTP and RTCP sockets on a port pair.
struct Peer {
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

impl Peer {
    fn new() -> Peer {
        loop {
            let p = free_pair();
            if let (Ok(rtp), Ok(rtcp)) = (UdpSocket::bind(("127.0.0.1", p)), UdpSocket::bind(("127.0.0.1", p + 1))) {
                rtp.set_read_timeout(Some(GUARD)).unwrap();
                rtcp.set_read_timeout(Some(GUARD)).unwrap();
                return Peer { rtp, rtcp };
            }
        }
    }
    fn addr(&self) -> SocketAddr {
        self.rtp.local_addr().unwrap()
    }
    /// The next RTP packet: header, payload, arrival.
    fn recv(&self) -> (RtpHeader, Vec<u8>, Instant) {
        let mut b = [0u8; 2048];
        let (n, _) = self.rtp.recv_from(&mut b).expect("no RTP within the guard time");
        let at = Instant::now();
        let p = rtp::parse(&b[..n]).expect("valid RTP");
        (p.header, p.payload.to_vec(), at)
    }
    fn recv_rtcp(&self) -> Vec<RtcpPacket> {
        let mut b = [0u8; 2048];
        let (n, _) = self.rtcp.recv_from(&mut b).expect("no RTCP within the guard time");
        rtcp::parse_compound(&b[..n]).expect("valid RTCP")
    }
}

fn play(m: &Media, id: u64, to: SocketAddr, codec: Codec, source: MediaSource) -> u16 {
    let port = free_pair();
    m.cmd(MediaCmd::Play { stream: StreamId(id), local_port: port, remote: to, codec, source });
    port
}

fn decode(law: Law, payload: &[u8]) -> Vec<i16> {
    payload.iter().map(|&c| law.decode(c)).collect()
}

fn music_on_hold_is_paced_numbered_audible_and_reported() {
    let m = start();
    let peer = Peer::new();
    play(&m, 1, peer.addr(), Codec::Pcmu, MediaSource::MusicOnHold);
    let mut pkts = Vec::new();
    for _ in 0..100 {
        pkts.push(peer.recv());
    }
    let (h0, _, t0) = &pkts[0];
    assert!(h0.marker, "marker on the first packet");
    let mut pcm = Vec::new();
    for (i, (h, payload, _)) in pkts.iter().enumerate() {
        assert_eq!(h.payload_type, 0);
        assert_eq!(h.ssrc, h0.ssrc);
        assert_eq!(payload.len(), 160);
        assert_eq!(h.sequence, h0.sequence.wrapping_add(i as u16));
        assert_eq!(h.timestamp, h0.timestamp.wrapping_add(160 * i as u32));
        if i > 0 {
            assert!(!h.marker);
        }
        pcm.extend(decode(Law::Ulaw, payload));
    }
    // 99 intervals of 20 ms: about 50 packets per second.
    let span = pkts[99].2 - *t0;
    assert!(span > Duration::from_millis(1900) && span < Duration::from_millis(2150), "{span:?}");
    let level = ctibox::core::media::rms_dbm0(&pcm);
    assert!(level > -35.0, "music on hold at {level} dBm0");
    // An SR within ~5 s, then a BYE at Stop.
    let sr = peer.recv_rtcp();
    assert!(matches!(&sr[0], RtcpPacket::Sr { ssrc, info, .. } if *ssrc == h0.ssrc && info.packets > 100), "{sr:?}");
    assert!(matches!(&sr[1], RtcpPacket::Sdes(_)));
    m.cmd(MediaCmd::Stop { stream: StreamId(1) });
    let bye = peer.recv_rtcp();
    assert!(bye.iter().any(|p| matches!(p, RtcpPacket::Bye { sources, .. } if sources == &[h0.ssrc])), "{bye:?}");
    assert_eq!(MediaStats::get(&m.stats().send_errors), 0);
}

fn tone_power(pcm: &[i16], f: f32) -> f64 {
    Goertzel::new(f).power(pcm)
}

fn tone_plays_the_plan_frequencies_in_alaw() {
    let m = start();
    let peer = Peer::new();
    play(&m, 2, peer.addr(), Codec::Pcma, MediaSource::Tone(ToneKind::Dial));
    let mut pcm = Vec::new();
    for _ in 0..25 {
        let (h, payload, _) = peer.recv();
        assert_eq!(h.payload_type, 8);
        pcm.extend(decode(Law::Alaw, &payload));
    }
    // US dial tone: 350 + 440 Hz, nothing at 1 kHz or at the neighbours.
    let (p350, p440) = (tone_power(&pcm, 350.0), tone_power(&pcm, 440.0));
    for off in [300.0, 395.0, 500.0, 1000.0] {
        let p = tone_power(&pcm, off);
        assert!(p350 > 100.0 * p && p440 > 100.0 * p, "{off} Hz: {p} vs {p350}/{p440}");
    }
    let peak = ctibox::core::media::goertzel::peak_frequency(&pcm, 300, 600);
    assert!(peak.abs_diff(350) <= 2 || peak.abs_diff(440) <= 2, "{peak}");
    m.cmd(MediaCmd::Stop { stream: StreamId(2) });
}

fn prompt_plays_once_then_silence_and_failures_are_reported() {
    let m = start();
    let dir = TempDir::new("prompt");
    let tone: Vec<i16> = (0..4000).map(|i| ((i as f32 * 2.0 * std::f32::consts::PI * 1000.0 / 8000.0).sin() * 8000.0) as i16).collect();
    let path = dir.file("p.wav");
    std::fs::write(&path, ctibox::core::media::wav::write_pcm16(&tone)).unwrap();
    let peer = Peer::new();
    play(&m, 3, peer.addr(), Codec::Pcmu, MediaSource::Prompt(path));
    assert_eq!(m.event(), MediaEvent::PlayoutDone { stream: StreamId(3) });
    // 0.5 s of prompt (25 frames, maybe a few of silence while the file loaded) then silence.
    let mut loud = 0;
    for _ in 0..40 {
        let (_, payload, _) = peer.recv();
        if payload.iter().any(|&c| c != Law::Ulaw.silence()) {
            loud += 1;
        }
    }
    assert!((20..=26).contains(&loud), "{loud} audible frames");
    for _ in 0..10 {
        let (_, payload, _) = peer.recv();
        assert!(payload.iter().all(|&c| c == Law::Ulaw.silence()));
    }
    // A prompt that does not exist, a port in use.
    play(&m, 4, peer.addr(), Codec::Pcmu, MediaSource::Prompt(dir.file("missing.wav")));
    assert!(matches!(m.event(), MediaEvent::Failed { stream: StreamId(4), reason } if reason.contains("missing.wav")));
    let busy = peer.addr().port();
    m.cmd(MediaCmd::Play { stream: StreamId(5), local_port: busy, remote: peer.addr(), codec: Codec::Pcmu, source: MediaSource::Silence });
    assert!(matches!(m.event(), MediaEvent::Failed { stream: StreamId(5), reason } if reason.contains("cannot bind")));
}

/// Sends RTP from `sock` to `to`, numbered from `seq`.
struct Sender {
    sock: UdpSocket,
    to: SocketAddr,
    seq: u16,
    ts: u32,
    ssrc: u32,
}

impl Sender {
    fn new(sock: UdpSocket, to: SocketAddr, ssrc: u32) -> Sender {
        Sender { sock, to, seq: 1000, ts: 5000, ssrc }
    }
    fn send(&mut self, pt: u8, marker: bool, ts: u32, payload: &[u8]) {
        let h = RtpHeader { marker, payload_type: pt, sequence: self.seq, timestamp: ts, ssrc: self.ssrc, ..Default::default() };
        self.seq = self.seq.wrapping_add(1);
        self.sock.send_to(&h.to_packet(payload), self.to).unwrap();
    }
    fn audio(&mut self, law: Law, codes: &[u8]) {
        for chunk in codes.chunks(160) {
            let ts = self.ts;
            self.send(law.payload_type(), false, ts, chunk);
            self.ts = self.ts.wrapping_add(160);
        }
    }
    /// One RFC 4733 key press (80 ms, end packet three times), each packet twice.
    fn event(&mut self, d: char, pt: u8) {
        let ts = self.ts;
        for (marker, ev) in sender_run(Digit::from_char(d).unwrap().event(), 10, 640, 160) {
            for _ in 0..2 {
                self.send(pt, marker, ts, &ev.encode());
            }
        }
        self.ts = self.ts.wrapping_add(800);
    }
}

fn digits_until(m: &Media, last: char) -> String {
    let mut got = String::new();
    loop {
        match m.event() {
            MediaEvent::Digit { digit, .. } => {
                got.push(digit);
                if digit == last {
                    return got;
                }
            }
            other => panic!("unexpected {other:?} after {got:?}"),
        }
    }
}

fn rfc4733_digits_come_exactly_once_and_rtp_is_symmetric() {
    let m = start();
    let peer = Peer::new();
    // The stream is told to send to a port nobody listens on; the peer's RTP moves it.
    let nowhere: SocketAddr = format!("127.0.0.1:{}", free_pair()).parse().unwrap();
    let port = play(&m, 10, nowhere, Codec::Pcmu, MediaSource::MusicOnHold);
    m.cmd(MediaCmd::CollectDigits { stream: StreamId(10), dtmf_pt: Some(101) });
    let mut s = Sender::new(peer.rtp.try_clone().unwrap(), format!("127.0.0.1:{port}").parse().unwrap(), 0x1234);
    // Until the stream has its port (the command is asynchronous) audio is lost; once
    // it hears the peer, it sends there (symmetric RTP).
    peer.rtp.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let t = Instant::now();
    let mut b = [0u8; 512];
    loop {
        s.audio(Law::Ulaw, &[0xFF; 160]);
        if peer.rtp.recv_from(&mut b).is_ok() {
            break;
        }
        assert!(t.elapsed() < GUARD, "the stream never answered the peer");
    }
    peer.rtp.set_read_timeout(Some(GUARD)).unwrap();
    assert_eq!(rtp::parse(&b).map(|p| p.header.payload_type).ok(), Some(0));
    for d in "1234567890*#ABC".chars() {
        s.event(d, 101);
        s.audio(Law::Ulaw, &[0xFF; 160]);
    }
    // A straggler: the end packet of 'D' again, after the audio that followed it.
    let end = TelephoneEvent::digit(Digit::from_char('C').unwrap(), true, 10, 640);
    s.send(101, false, s.ts.wrapping_sub(960), &end.encode());
    s.event('D', 101);
    assert_eq!(digits_until(&m, 'D'), "1234567890*#ABCD");
    // Two sentinels: the next events are exactly these (a digit given twice, the
    // straggler's or a sentinel's own, would come before the second).
    s.event('1', 101);
    s.event('2', 101);
    assert_eq!(m.event(), MediaEvent::Digit { stream: StreamId(10), digit: '1' });
    assert_eq!(m.event(), MediaEvent::Digit { stream: StreamId(10), digit: '2' }, "a digit came twice");
    assert!(MediaStats::get(&m.stats().relatched) >= 1);
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// SoX writes raw mu-law: `synth` arguments, or silence for `secs`.
fn sox_ulaw(dir: &TempDir, name: &str, synth: &[&str]) -> Vec<u8> {
    let f = dir.file(name);
    let mut args = vec!["-D", "-n", "-r", "8000", "-c", "1", "-t", "raw", "-e", "mu-law", "-b", "8", p(&f), "synth"];
    args.extend(synth);
    run_tool("sox", &args);
    std::fs::read(&f).unwrap()
}

fn inband_dtmf_from_sox_over_rtp() {
    require("sox");
    let dir = TempDir::new("inband");
    let m = start();
    let peer = Peer::new();
    let port = play(&m, 20, peer.addr(), Codec::Pcmu, MediaSource::Silence);
    peer.recv(); // the stream is open
    m.cmd(MediaCmd::CollectDigits { stream: StreamId(20), dtmf_pt: Some(101) });
    let mut s = Sender::new(peer.rtp.try_clone().unwrap(), format!("127.0.0.1:{port}").parse().unwrap(), 0x77);
    let gap = sox_ulaw(&dir, "gap.raw", &["0.1", "sine", "0", "vol", "0"]);
    for d in "159*0#".chars() {
        let (lo, hi) = Digit::from_char(d).unwrap().freqs();
        let (lo, hi) = (lo.to_string(), hi.to_string());
        let tone = sox_ulaw(&dir, "d.raw", &["0.1", "sine", &lo, "sine", &hi, "channels", "1", "vol", "0.3"]);
        s.audio(Law::Ulaw, &tone);
        s.audio(Law::Ulaw, &gap);
    }
    // An RFC 4733 sentinel: once it is reported, every packet before it was read.
    s.event('D', 101);
    assert_eq!(digits_until(&m, 'D'), "159*0#D");
}

fn a_minute_of_espeak_speech_over_rtp_gives_no_digit() {
    require("sox");
    require("espeak-ng");
    let dir = TempDir::new("speech");
    let text = "Thank you for calling. Your call is important to us. Please stay on the line and \
        the next available agent will answer. For opening hours, press one. To speak to an \
        operator, press zero. Our offices are closed on public holidays. Please have your \
        account number ready. Calls may be recorded for training and quality purposes.";
    let m = start();
    let peer = Peer::new();
    let port = play(&m, 30, peer.addr(), Codec::Pcma, MediaSource::Silence);
    peer.recv(); // the stream is open
    m.cmd(MediaCmd::CollectDigits { stream: StreamId(30), dtmf_pt: Some(96) });
    let mut s = Sender::new(peer.rtp.try_clone().unwrap(), format!("127.0.0.1:{port}").parse().unwrap(), 0x99);
    let mut seconds = 0.0;
    for (i, (voice, pitch)) in [("en", "50"), ("en+f3", "70"), ("en-us+m3", "30"), ("en+f4", "99")].iter().enumerate() {
        let wav = dir.file(&format!("s{i}.wav"));
        let raw = dir.file(&format!("s{i}.alaw"));
        run_tool("espeak-ng", &["-v", voice, "-p", pitch, "-w", p(&wav), text]);
        run_tool("sox", &["-D", p(&wav), "-r", "8000", "-c", "1", "-t", "raw", "-e", "a-law", "-b", "8", p(&raw)]);
        let codes = std::fs::read(&raw).unwrap();
        seconds += codes.len() as f64 / 8000.0;
        // Paced in 1 s bursts so the socket buffer never overflows.
        for sec in codes.chunks(8000) {
            s.audio(Law::Alaw, sec);
            // Pacing the sender, not waiting for anything.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    assert!(seconds >= 60.0, "only {seconds} s of speech");
    s.event('#', 96);
    assert_eq!(digits_until(&m, '#'), "#", "talk-off in {seconds:.0} s of speech");
    assert_eq!(MediaStats::get(&m.stats().wrong_payload_type), 0);
}

fn garbage_wrong_ssrc_and_truncated_packets_are_dropped_and_counted() {
    let m = start();
    let peer = Peer::new();
    let port = play(&m, 40, peer.addr(), Codec::Pcmu, MediaSource::Silence);
    peer.recv(); // the stream is open
    m.cmd(MediaCmd::CollectDigits { stream: StreamId(40), dtmf_pt: Some(101) });
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut s = Sender::new(peer.rtp.try_clone().unwrap(), to, 0xAAAA);
    s.audio(Law::Ulaw, &[0xFF; 320]);
    let other = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut x: u32 = 12345;
    let mut good = RtpHeader { payload_type: 0, sequence: 1, timestamp: 1, ssrc: 0xBBBB, ..Default::default() }.to_packet(&[0xFF; 160]);
    // 40 rounds of 50: each round ends with a digit that must come through, which
    // also keeps the socket buffers from overflowing.
    for round in 0..40 {
        for i in 0..50 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let len = (x % 200) as usize;
            let junk: Vec<u8> = (0..len).map(|k| (x >> (k % 24)) as u8).collect();
            other.send_to(&junk, to).unwrap();
            other.send_to(&good[..((round * 50 + i) % good.len())], to).unwrap();
            other.send_to(&junk, SocketAddr::new(to.ip(), port + 1)).unwrap();
        }
        good[3] = good[3].wrapping_add(1);
        other.send_to(&good, to).unwrap(); // a second source: wrong SSRC
        s.audio(Law::Ulaw, &[0xFF; 160]); // the first source stays alive
        let d = if round % 2 == 0 { '7' } else { '8' };
        s.event(d, 101);
        assert_eq!(digits_until(&m, d), d.to_string(), "round {round}");
    }
    let st = m.stats();
    assert!(MediaStats::get(&st.bad_packets) > 1000, "{}", MediaStats::get(&st.bad_packets));
    // The second source sends from another address after the first latched: dropped
    // as foreign (no RTP bleed), as are the truncated copies that still parse.
    assert!(MediaStats::get(&st.rtp_foreign_dropped) >= 20, "{}", MediaStats::get(&st.rtp_foreign_dropped));
    assert!(MediaStats::get(&st.rtcp_bad) > 1000);
    // The stream still sends to the first source.
    let (h, _, _) = peer.recv();
    assert_eq!(h.payload_type, 0);
}

fn rtp_timeout_after_silence_from_a_peer_that_had_sent() {
    let m = start_with(Duration::from_millis(300));
    let peer = Peer::new();
    let port = play(&m, 50, peer.addr(), Codec::Pcmu, MediaSource::Silence);
    peer.recv(); // the stream is open
    let _quiet = play(&m, 51, peer.addr(), Codec::Pcmu, MediaSource::Silence);
    let mut s = Sender::new(peer.rtp.try_clone().unwrap(), format!("127.0.0.1:{port}").parse().unwrap(), 5);
    s.audio(Law::Ulaw, &[0xFF; 480]);
    let t = Instant::now();
    assert_eq!(m.event(), MediaEvent::RtpTimeout { stream: StreamId(50) });
    assert!(t.elapsed() >= Duration::from_millis(250), "{:?}", t.elapsed());
    // A sentinel: stream 52 gets RTP now and times out in turn. By its timeout 50 and
    // 51 have been silent for two timeouts more, yet it is the next event: 51, which
    // never received RTP, reports none, and 50 reports only once.
    let port52 = play(&m, 52, peer.addr(), Codec::Pcmu, MediaSource::Silence);
    // Open once its first packet reaches the peer (from its port).
    let mut b = [0u8; 2048];
    while peer.rtp.recv_from(&mut b).expect("RTP within the guard time").1.port() != port52 {}
    let mut s52 = Sender::new(peer.rtp.try_clone().unwrap(), format!("127.0.0.1:{port52}").parse().unwrap(), 52);
    s52.audio(Law::Ulaw, &[0xFF; 480]);
    assert_eq!(m.event(), MediaEvent::RtpTimeout { stream: StreamId(52) });
    assert!(t.elapsed() >= Duration::from_millis(550), "{:?}", t.elapsed());
}

/// Sends with `send` every 20 ms of silence at `to` until a packet from `ssrc` arrives
/// there; returns its header and payload. Fails after the guard time.
fn relayed(to: &Peer, mut send: impl FnMut(), ssrc: u32) -> (RtpHeader, Vec<u8>) {
    let deadline = Instant::now() + GUARD;
    to.rtp.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut b = [0u8; 2048];
    loop {
        assert!(Instant::now() < deadline, "nothing from SSRC {ssrc:#x} within the guard time");
        send();
        if let Ok((n, _)) = to.rtp.recv_from(&mut b) {
            let p = rtp::parse(&b[..n]).expect("valid RTP");
            if p.header.ssrc == ssrc {
                to.rtp.set_read_timeout(Some(GUARD)).unwrap();
                return (p.header, p.payload.to_vec());
            }
        }
    }
}

fn relay_forwards_both_ways_and_stop_resumes_the_other() {
    let m = start();
    let (pa, pb) = (Peer::new(), Peer::new());
    let port_a = play(&m, 60, pa.addr(), Codec::Pcmu, MediaSource::MusicOnHold);
    let port_b = play(&m, 61, pb.addr(), Codec::Pcmu, MediaSource::MusicOnHold);
    pa.recv();
    pb.recv(); // both streams are open
    m.cmd(MediaCmd::Relay { a: StreamId(60), b: StreamId(61) });
    let mut sa = Sender::new(pa.rtp.try_clone().unwrap(), format!("127.0.0.1:{port_a}").parse().unwrap(), 0xA);
    let mut sb = Sender::new(pb.rtp.try_clone().unwrap(), format!("127.0.0.1:{port_b}").parse().unwrap(), 0xB);
    // Wait until B's receiver sees A's SSRC. A packet that reaches the media thread
    // before the Relay command is not forwarded, and once relayed the music stops, so
    // A keeps sending until one comes through (bounded by the guard).
    let h = relayed(&pb, || sa.audio(Law::Ulaw, &[0x11; 160]), 0xA);
    assert_eq!(h.0.payload_type, 0);
    assert_eq!(h.1, vec![0x11; 160]);
    relayed(&pa, || sb.audio(Law::Ulaw, &[0x22; 160]), 0xB);
    assert!(MediaStats::get(&m.stats().relayed) >= 2);
    // Stopping A: B goes back to its own music on hold.
    m.cmd(MediaCmd::Stop { stream: StreamId(60) });
    loop {
        let (h, payload, _) = pb.recv();
        if h.ssrc != 0xA && payload.iter().any(|&c| c != 0x11) {
            break;
        }
    }
}

/// Bursts on many relayed calls at once: more datagrams queued than one wake-up of the
/// media thread takes (epoll: one per readable socket per round, `MEDIA_RECV_ROUNDS`
/// rounds; io_uring: `MEDIA_URING_BATCH` completions), so the thread must come back for
/// the rest at once. Every datagram of every call comes out on the other leg, in order,
/// none lost or duplicated.
fn bursts_on_many_relayed_calls_are_forwarded_whole_and_in_order() {
    bursts(12, 40);
}

/// 2,400 datagrams at once, more than the io_uring backend has receive buffers (1,024):
/// receives that find none end and are armed again, and the datagrams that waited in
/// their sockets meanwhile are forwarded like the rest.
fn a_burst_larger_than_the_receive_buffers_is_forwarded_whole_and_in_order() {
    bursts(24, 100);
}

fn bursts(calls_n: usize, burst: u16) {
    let m = start();
    let mut calls = Vec::new();
    for c in 0..calls_n {
        let (pa, pb) = (Peer::new(), Peer::new());
        let (a, b) = (700 + 2 * c as u64, 701 + 2 * c as u64);
        let port_a = play(&m, a, pa.addr(), Codec::Pcmu, MediaSource::Silence);
        play(&m, b, pb.addr(), Codec::Pcmu, MediaSource::Silence);
        m.cmd(MediaCmd::Relay { a: StreamId(a), b: StreamId(b) });
        let ssrc = 0x5000 + c as u32;
        let mut sa = Sender::new(pa.rtp.try_clone().unwrap(), format!("127.0.0.1:{port_a}").parse().unwrap(), ssrc);
        // The relay is in place once one packet comes through.
        relayed(&pb, || sa.audio(Law::Ulaw, &[0x33; 160]), ssrc);
        calls.push((sa, pb, ssrc));
    }
    let before = MediaStats::get(&m.stats().relayed);
    // All bursts go out before any is read back.
    let mut first = Vec::new();
    for (sa, _, _) in &mut calls {
        first.push(sa.seq);
        for i in 0..burst {
            sa.audio(Law::Ulaw, &[i as u8; 160]);
        }
    }
    for ((_, pb, ssrc), first) in calls.iter().zip(first) {
        let mut want = first;
        while want != first.wrapping_add(burst) {
            let (h, payload, _) = pb.recv();
            // The leg's own silence from before the relay, or a priming packet that
            // came through late (sequence numbers start at 1000: no wrap here).
            if h.ssrc != *ssrc || h.sequence < first {
                continue;
            }
            assert_eq!(h.sequence, want, "call with SSRC {ssrc:#x}: out of order or lost");
            assert_eq!(payload, vec![want.wrapping_sub(first) as u8; 160]);
            want = want.wrapping_add(1);
        }
    }
    assert!(MediaStats::get(&m.stats().relayed) - before >= (calls_n * burst as usize) as u64);
}

/// A stream stopped and another opened on the same port (and the same slot of the
/// runtime): the new one gets the datagrams. On io_uring the closed socket's receive
/// is cancelled before the socket is dropped, and a completion meant for the old
/// stream is not taken for the new one.
fn a_port_reopened_by_a_new_stream_serves_the_new_stream() {
    let m = start();
    let (pa, pb) = (Peer::new(), Peer::new());
    let port_a = play(&m, 90, pa.addr(), Codec::Pcmu, MediaSource::Silence);
    pa.recv(); // open, and its receive armed
    m.cmd(MediaCmd::Stop { stream: StreamId(90) });
    m.cmd(MediaCmd::Play { stream: StreamId(91), local_port: port_a, remote: pa.addr(), codec: Codec::Pcmu, source: MediaSource::Silence });
    play(&m, 92, pb.addr(), Codec::Pcmu, MediaSource::Silence);
    m.cmd(MediaCmd::Relay { a: StreamId(91), b: StreamId(92) });
    let mut sa = Sender::new(pa.rtp.try_clone().unwrap(), format!("127.0.0.1:{port_a}").parse().unwrap(), 0x91);
    let (h, payload) = relayed(&pb, || sa.audio(Law::Ulaw, &[0x44; 160]), 0x91);
    assert_eq!((h.payload_type, payload), (0, vec![0x44; 160]));
    while let Ok(ev) = m.ev.try_recv() {
        assert!(!matches!(ev, MediaEvent::Failed { .. }), "unexpected {ev:?}");
    }
}

fn digits_are_sent_as_rfc4733_events_in_place_of_audio() {
    use ctibox::core::media::telephone_event::{EventReceiver, ReceivedEvent};
    use ctibox::core::Time;
    let m = start();
    let peer = Peer::new();
    play(&m, 90, peer.addr(), Codec::Pcmu, MediaSource::MusicOnHold);
    // Audio first, then the digits replace it.
    let (h, _, _) = peer.recv();
    assert_eq!(h.payload_type, 0);
    m.cmd(MediaCmd::SendDigits { stream: StreamId(90), digits: "1#9x".into(), dtmf_pt: 101 });
    let mut rx = EventReceiver::new();
    let mut got = String::new();
    let mut markers = 0;
    let started = Instant::now();
    while got.len() < 3 {
        let (h, payload, at) = peer.recv();
        if h.payload_type != 101 {
            continue;
        }
        assert_eq!(payload.len(), 4, "a telephone-event payload");
        markers += usize::from(h.marker);
        let ev = TelephoneEvent::decode(&payload).unwrap();
        rx.handle_packet(Time((at - started).as_micros() as u64), h.marker, h.timestamp, &ev);
        while let Some(e) = rx.poll_event() {
            if let ReceivedEvent::End { event, duration, timed_out: false, .. } = e {
                assert_eq!(duration, 800, "100 ms at 8 kHz");
                got.push(Digit::from_event(event).unwrap().to_char());
            }
        }
    }
    assert_eq!(got, "1#9", "each digit once, in order; the unknown 'x' skipped");
    assert_eq!(markers, 3, "one marker per event");
    // Audio resumes after the last event.
    loop {
        let (h, payload, _) = peer.recv();
        if h.payload_type == 0 {
            assert_eq!(payload.len(), 160);
            break;
        }
    }
    m.cmd(MediaCmd::Stop { stream: StreamId(90) });
}

/// A Play on an open stream (same id, same port) changes it in place: a new tone and
/// a new remote, then a prompt. The stream keeps sending (same SSRC, the sequence
/// continuing) with the new content to the new remote, and keeps receiving (digits
/// from the new remote are reported).
fn a_play_on_an_open_stream_changes_its_source_and_remote_in_place() {
    let m = start();
    let (pa, pb) = (Peer::new(), Peer::new());
    let port = play(&m, 95, pa.addr(), Codec::Pcmu, MediaSource::Tone(ToneKind::Dial));
    let dial = |pcm: &[i16]| tone_power(pcm, 350.0) + tone_power(pcm, 440.0);
    let busy = |pcm: &[i16]| tone_power(pcm, 480.0) + tone_power(pcm, 620.0);
    let mut pcm = Vec::new();
    let mut last = None;
    for _ in 0..10 {
        let (h, payload, _) = pa.recv();
        pcm.extend(decode(Law::Ulaw, &payload));
        last = Some(h);
    }
    let before = last.unwrap();
    assert!(dial(&pcm) > 100.0 * busy(&pcm), "dial tone first");
    // The same stream and port, US busy tone (480 + 620 Hz, 500 ms on first), to B.
    m.cmd(MediaCmd::Play { stream: StreamId(95), local_port: port, remote: pb.addr(), codec: Codec::Pcmu, source: MediaSource::Tone(ToneKind::Busy) });
    let mut pcm = Vec::new();
    let mut seqs = Vec::new();
    for _ in 0..20 {
        let (h, payload, _) = pb.recv();
        assert_eq!((h.ssrc, h.payload_type), (before.ssrc, 0), "the same stream goes on");
        seqs.push(h.sequence);
        pcm.extend(decode(Law::Ulaw, &payload));
    }
    // Frames after the last one A read and before the Play may have gone to A.
    assert!(seqs[0].wrapping_sub(before.sequence) >= 1 && seqs[0].wrapping_sub(before.sequence) < 100, "{} after {}", seqs[0], before.sequence);
    assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)), "{seqs:?}");
    assert!(busy(&pcm) > 100.0 * dial(&pcm), "busy tone after the Play: {} vs {}", busy(&pcm), dial(&pcm));
    // It receives on the same sockets: a digit from B comes through.
    m.cmd(MediaCmd::CollectDigits { stream: StreamId(95), dtmf_pt: Some(101) });
    let mut s = Sender::new(pb.rtp.try_clone().unwrap(), format!("127.0.0.1:{port}").parse().unwrap(), 0x95);
    s.audio(Law::Ulaw, &[0xFF; 160]);
    s.event('5', 101);
    assert_eq!(digits_until(&m, '5'), "5");
    // A prompt in place of the tone (its file is read by the loader for this Play):
    // played out, 1 kHz, then silence.
    let dir = TempDir::new("replay");
    let path = dir.file("k.wav");
    let sine: Vec<i16> = (0..2400).map(|i| ((i as f32 * 2.0 * std::f32::consts::PI * 1000.0 / 8000.0).sin() * 8000.0) as i16).collect();
    std::fs::write(&path, ctibox::core::media::wav::write_pcm16(&sine)).unwrap();
    m.cmd(MediaCmd::Play { stream: StreamId(95), local_port: port, remote: pb.addr(), codec: Codec::Pcmu, source: MediaSource::Prompt(path) });
    assert_eq!(m.event(), MediaEvent::PlayoutDone { stream: StreamId(95) });
    // Read what B has queued up to the end of the prompt (the playout event came after
    // it was sent): the prompt's frames are among them.
    let mut prompt = Vec::new();
    loop {
        let (h, payload, _) = pb.recv();
        assert_eq!(h.ssrc, before.ssrc);
        let pcm = decode(Law::Ulaw, &payload);
        if tone_power(&pcm, 1000.0) > 100.0 * (busy(&pcm) + dial(&pcm) + 1.0) {
            prompt.push(h.sequence);
        } else if !prompt.is_empty() {
            break; // past the prompt
        }
    }
    assert_eq!(prompt.len(), 15, "the 300 ms prompt, whole");
    assert!(m.ev.try_recv().is_err(), "no Failed event");
    assert_eq!(MediaStats::get(&m.stats().streams), 1, "one stream, updated in place");
    m.cmd(MediaCmd::Stop { stream: StreamId(95) });
}

/// Every scenario above, once on each backend of the media thread.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod epoll {
            $(#[test]
            fn $name() {
                super::IO.with(|c| c.set(super::MediaIo::Epoll));
                super::$name()
            })*
        }
        mod io_uring {
            $(#[test]
            fn $name() {
                super::IO.with(|c| c.set(super::MediaIo::Uring));
                super::$name()
            })*
        }
    };
}

on_both_backends!(
    music_on_hold_is_paced_numbered_audible_and_reported,
    tone_plays_the_plan_frequencies_in_alaw,
    prompt_plays_once_then_silence_and_failures_are_reported,
    rfc4733_digits_come_exactly_once_and_rtp_is_symmetric,
    inband_dtmf_from_sox_over_rtp,
    a_minute_of_espeak_speech_over_rtp_gives_no_digit,
    garbage_wrong_ssrc_and_truncated_packets_are_dropped_and_counted,
    rtp_timeout_after_silence_from_a_peer_that_had_sent,
    relay_forwards_both_ways_and_stop_resumes_the_other,
    digits_are_sent_as_rfc4733_events_in_place_of_audio,
    bursts_on_many_relayed_calls_are_forwarded_whole_and_in_order,
    a_burst_larger_than_the_receive_buffers_is_forwarded_whole_and_in_order,
    a_port_reopened_by_a_new_stream_serves_the_new_stream,
    a_play_on_an_open_stream_changes_its_source_and_remote_in_place,
);
