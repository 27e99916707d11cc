//! Parse-speed benchmark for the SIP parser: ns per `parse_message` for a typical
//! INVITE (with SDP) and REGISTER (with digest credentials), plus parse followed by
//! the typed decode a registrar or B2BUA does. Run via scripts/bench/sip-parse.
#![allow(clippy::disallowed_methods)] // a benchmark reads the clock

use ctibox::core::sip::*;
use std::hint::black_box;
use std::time::Instant;

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY\r\n\
Supported: replaces, timer\r\n\
User-Agent: Grandstream GXP2170 1.0.11.3\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 142\r\n\r\n\
v=0\r\no=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\ns=-\r\nc=IN IP4 192.0.2.101\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

const REGISTER: &[u8] = b"REGISTER sip:registrar.biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP bobspc.biloxi.example.com:5060;branch=z9hG4bKnashds7;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Bob <sip:bob@biloxi.example.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:bob@192.0.2.4:5060;transport=udp>;expires=7200;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\"\r\n\
Expires: 7200\r\n\
Authorization: Digest username=\"bob\", realm=\"biloxi.example.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"sip:biloxi.example.com\", response=\"245f23415f11432b3434341c022\", algorithm=MD5\r\n\
Content-Length: 0\r\n\r\n";

fn decode(m: &Message) -> usize {
    let v = m.via().unwrap();
    let f = m.from().unwrap();
    let t = m.to().unwrap();
    let c = m.cseq().unwrap();
    let k = m.contact().unwrap();
    v.len() + f.params.len() + t.params.len() + c.seq as usize + usize::from(k.is_some())
}

/// Best of 5 rounds of `n` iterations, in ns per iteration.
fn bench(name: &str, n: u32, f: impl Fn() -> usize) {
    for _ in 0..n / 10 {
        black_box(f());
    }
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..n {
            black_box(f());
        }
        best = best.min(t.elapsed().as_nanos() as f64 / f64::from(n));
    }
    println!("{name:<34} {best:>8.0} ns");
}

fn main() {
    let n = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    bench("parse INVITE (678 B, SDP)", n, || parse_message(black_box(INVITE)).unwrap().headers().len());
    bench("parse REGISTER (651 B, digest)", n, || parse_message(black_box(REGISTER)).unwrap().headers().len());
    bench("parse+decode INVITE", n, || decode(&parse_message(black_box(INVITE)).unwrap()));
    bench("parse+decode REGISTER", n, || decode(&parse_message(black_box(REGISTER)).unwrap()));
    let m = parse_message(INVITE).unwrap();
    bench("print INVITE", n, || m.to_bytes().len());
}
