//! Fuzz target: peer-link frames (src/core/pair/wire.rs). Decoding any datagram never
//! panics and accepts only what the key signed; any body signed with the key decodes
//! to a frame or is refused as malformed (never as forged or of a bad length), and a
//! decoded frame encodes and decodes back to itself. Stream (replication) frames:
//! any header and bytes are opened without a panic, a header's length is refused
//! past the cap, and only what the connection's key sealed opens.
#![no_main]

use ctibox::core::pair::wire::{challenge, decode, encode, sign, stream_key, Dir, Refused, StreamSide, STREAM_HEAD};
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"fuzz pair key";

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = decode(KEY, data) {
        assert!(decode(b"another key", data).is_err(), "valid under two keys");
        let again = encode(KEY, &f).expect("a decoded frame fits");
        assert_eq!(decode(KEY, &again), Ok(f));
    }
    if let Some(signed) = sign(KEY, data) {
        match decode(KEY, &signed) {
            Ok(f) => assert_eq!(decode(KEY, &encode(KEY, &f).expect("fits")), Ok(f)),
            Err(e) => assert_eq!(e, Refused::Malformed, "a signed body refused as {e:?}"),
        }
        assert_eq!(decode(b"another key", &signed), Err(Refused::Forged));
    }
    let _ = stream_key(KEY, data);
    if data.len() >= STREAM_HEAD {
        let k = stream_key(KEY, &challenge([3; 16])).expect("a challenge");
        let mut side = StreamSide::new(k, Dir::ToStandby);
        let head: [u8; STREAM_HEAD] = data[..STREAM_HEAD].try_into().expect("5 bytes");
        if let Ok(n) = side.rest_len(&head) {
            assert!(n <= 256 + 32, "past the handshake cap");
        }
        side.allow(usize::MAX);
        let _ = side.open(&head, &data[STREAM_HEAD..]);
    }
});
