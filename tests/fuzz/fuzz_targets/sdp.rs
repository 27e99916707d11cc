//! Fuzz target: SDP (src/core/sdp.rs). Never panics; a changed direction is read back
//! as that direction when the body has an audio stream; what `body` and `offer` print
//! from a parsed stream reads back as the same address, port, codecs and direction.
#![no_main]

use ctibox::config::Codec;
use ctibox::core::sdp::{body, choose_codec, offer, parse_audio, with_direction, Direction};
use libfuzzer_sys::fuzz_target;

const DIRECTIONS: [Direction; 4] = [Direction::SendRecv, Direction::SendOnly, Direction::RecvOnly, Direction::Inactive];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, sdp)) = data.split_first() else { return };
    let dir = DIRECTIONS[usize::from(pick & 3)];
    let parsed = parse_audio(sdp);
    let changed = with_direction(sdp, dir);
    assert!(changed.len() <= sdp.len() * 3 + 16, "with_direction grew {} bytes to {}", sdp.len(), changed.len());
    if let Some(a) = &parsed {
        // The session is read from its audio stream; with_direction may only change
        // that stream's direction (a session-level attribute counts until m=).
        if let Some(b) = parse_audio(&changed) {
            assert_eq!((b.ip, b.port, &b.payloads, b.dtmf), (a.ip, a.port, &a.payloads, a.dtmf), "with_direction changed more than the direction");
        }
        let codecs = [Codec::Pcmu, Codec::Pcma];
        let codec = choose_codec(a, &codecs).unwrap_or(Codec::Pcmu);
        let dtmf = a.dtmf.filter(|&d| d != codec.payload_type());
        let printed = body(a.ip, a.port, codec, dtmf, dir, 1, u64::from(pick));
        let back = parse_audio(&printed).expect("printed answer must parse");
        let mut want = vec![codec.payload_type()];
        want.extend(dtmf);
        assert_eq!((back.ip, back.port, back.payloads, back.dtmf, back.direction), (a.ip, a.port, want, dtmf, dir));
        let printed = offer(a.ip, a.port, &codecs, a.dtmf, 1, 2);
        let back = parse_audio(&printed).expect("printed offer must parse");
        assert_eq!((back.ip, back.port, back.dtmf, back.direction), (a.ip, a.port, a.dtmf, Direction::SendRecv));
    }
});
