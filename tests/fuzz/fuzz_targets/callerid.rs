//! Fuzz target: caller ID (src/codec/callerid.rs). The message parser never panics,
//! and a message it accepts encodes back (as MDMF) to one that parses to the same
//! fields; the FSK receiver never panics on any audio (the input as samples, in both
//! flavours) and keeps at most one message.
#![no_main]

use ctibox::codec::callerid::{encode_mdmf, parse, parse_dtmf_clip, Field, FskRx, Fsk};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = parse(data) {
        let mdmf = encode_mdmf(&m).expect("a parsed message encodes");
        let again = parse(&mdmf).expect("an encoded message parses");
        assert_eq!(again, m);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(Field::Value(n)) = parse_dtmf_clip(s) {
            assert!(n.bytes().all(|b| b.is_ascii_digit()));
        }
    }
    let samples: Vec<i16> = data.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect();
    for fsk in [Fsk::Bell202, Fsk::V23] {
        let mut rx = FskRx::new(fsk);
        rx.push(&samples);
        let _ = rx.poll();
        assert!(rx.poll().is_none());
    }
});
