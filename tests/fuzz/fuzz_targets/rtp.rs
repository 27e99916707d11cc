//! Fuzz target: RTP (src/core/media/rtp.rs). Never panics; a packet that parses has
//! its parts inside the datagram, and writing its header, extension, payload and
//! padding back gives the same bytes (padding contents aside, which are written as
//! zeros) and the same parse.
#![no_main]

use ctibox::core::media::rtp::{parse, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = parse(data) else { return };
    let ext_len = p.extension.map_or(0, |e| 4 + e.data.len());
    assert_eq!(HEADER_LEN + 4 * p.header.csrc.len() + ext_len + p.payload.len() + usize::from(p.padding), data.len());
    let mut out = Vec::new();
    p.header.write(p.extension, p.payload, p.padding, &mut out).expect("a parsed packet must write");
    assert_eq!(out.len(), data.len());
    let body = data.len() - usize::from(p.padding);
    assert_eq!(&out[..body], &data[..body], "header, extension and payload must be written as read");
    assert_eq!(out.last(), data.last());
    assert_eq!(parse(&out).expect("a written packet must parse"), p);
    if p.extension.is_none() && p.padding == 0 {
        assert_eq!(p.header.to_packet(p.payload), data);
    }
});
