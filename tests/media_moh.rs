//! Music on hold end to end: SIPp parties call through the real binary; when the
//! caller holds, RTP with music (G.711 mu-law, payload type 0) reaches the held
//! party's media address, from the box; when the caller resumes, the held party gets
//! the caller's own session description back (direct media again).
// Tests of the real binary use sockets, files and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;
use common::sipp::*;
use common::*;
use ctibox::core::media::{g711, rtp};

#[test]
fn a_held_party_hears_music_and_resume_restores_direct_media() {
    let tb = start();
    // Where the held phone says it receives RTP while on hold.
    let media = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    media.set_read_timeout(Some(GUARD)).unwrap();
    let rtp_port = media.local_addr().unwrap().port().to_string();
    let port = free_udp_port();
    register(&tb, "1002", port);
    let callee = sipp(&tb, "callee_hold_moh.xml", "1002", None, port, &["-key", "rtp_port", &rtp_port]);
    let caller = sipp(&tb, "caller_hold_moh.xml", "1002", Some("1001"), free_udp_port(), &["-key", "caller", "1001"]);

    let mut buf = [0u8; 2048];
    let mut packets = Vec::new();
    while packets.len() < 10 {
        let (n, from) = media.recv_from(&mut buf).expect("music reaches the held party");
        assert_eq!(from.ip().to_string(), "127.0.0.1");
        let p = rtp::parse(&buf[..n]).expect("a valid RTP packet");
        packets.push((p.header.payload_type, p.header.sequence, p.header.timestamp, p.payload.to_vec()));
    }
    for w in packets.windows(2) {
        assert_eq!(w[0].0, 0, "PCMU");
        assert_eq!(w[1].1, w[0].1.wrapping_add(1), "consecutive sequence numbers");
        assert_eq!(w[1].2, w[0].2.wrapping_add(160), "20 ms of 8 kHz per packet");
        assert_eq!(w[0].3.len(), 160);
    }
    let samples: Vec<i16> = packets.iter().flat_map(|p| p.3.iter().map(|b| g711::ulaw_decode(*b))).collect();
    let rms = (samples.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt();
    assert!(rms > 300.0, "music, not silence (rms {rms:.0})");

    expect_success(&tb, caller, "caller holds and resumes");
    expect_success(&tb, callee, "held party: music, then direct media again");
}
