//! Fuzz target: parse; if OK, print, re-parse and compare; run the message checks and
//! the best-effort answer for failures. Same property as tests/sip_mutations.rs.
#![no_main]

use ctibox::core::sip::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_message(data) {
        Ok(m) => {
            let printed = m.to_bytes();
            let again = parse_message(&printed).expect("printed message must re-parse");
            assert_eq!(again, m, "round trip must be identical");
            if let Message::Request(r) = &m {
                if let Err(rej) = check_request(r) {
                    let _ = rej.response(r, "x").to_bytes();
                }
            }
            let _ = (m.via(), m.from(), m.to(), m.cseq(), m.contact(), m.expires(), m.content_type());
        }
        Err(e) => {
            let _ = e.to_string();
            let _ = answer_unparsable(data, &e, "x");
        }
    }
});
