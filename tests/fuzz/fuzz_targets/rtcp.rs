//! Fuzz target: RTCP (src/core/media/rtcp.rs). Never panics; a compound packet that
//! parses holds 1..=MAX_COMPOUND packets, builds again (unless an unknown packet's
//! body lost whole words to padding), and the built bytes parse to the same packets.
#![no_main]

use ctibox::core::media::rtcp::{build_compound, parse_compound, RtcpError, RtcpPacket, MAX_COMPOUND};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(packets) = parse_compound(data) else { return };
    assert!(!packets.is_empty() && packets.len() <= MAX_COMPOUND);
    match build_compound(&packets) {
        Ok(bytes) => {
            let again = parse_compound(&bytes).unwrap_or_else(|e| panic!("built compound must parse: {e}"));
            assert_eq!(again, packets);
            assert!(bytes.len() <= data.len() + 4 * packets.len() + 3 * 32 * packets.len());
        }
        Err(RtcpError::BadCount) => {
            // Only an unknown packet whose padded body is not whole words may refuse.
            assert!(packets.iter().any(|p| matches!(p, RtcpPacket::Other { body, .. } if body.len() % 4 != 0)));
        }
        Err(e) => panic!("a parsed compound must build: {e}"),
    }
});
