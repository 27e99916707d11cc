//! Fuzz target: digest credentials (src/core/digest.rs). Never panics; parsed
//! credentials carry the five required parameters; verifying them against a nonce
//! book never panics; the same credentials given a fresh nonce of ours and the right
//! response verify (when their realm, algorithm and qop are ones we take), and a
//! second use of the same nonce count is refused as a replay.
#![no_main]

use ctibox::core::digest::{expected_response, ha1, parse_credentials, Algorithm, AuthError, NonceBook};
use ctibox::core::Time;
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(c) = parse_credentials(text) else { return };
    for v in [&c.username, &c.realm, &c.nonce, &c.uri, &c.response] {
        assert!(!v.is_empty());
    }
    let mut book = NonceBook::new([9; 32]);
    let src: IpAddr = [127, 0, 0, 1].into();
    let now = Time::from_millis(1000);
    let _ = book.verify(now, src, &c.realm, "REGISTER", "pw", &c);
    let _ = book.verify(now, src, "ctibox", "INVITE", "pw", &c);

    let alg = match c.algorithm.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("MD5") => Algorithm::Md5,
        Some("SHA-256") => Algorithm::Sha256,
        Some(_) => return,
    };
    let qop_ok = match c.qop.as_deref() {
        None => true,
        Some(q) => q.eq_ignore_ascii_case("auth") && c.cnonce.is_some() && c.nc.as_deref().is_some_and(|n| u32::from_str_radix(n, 16).is_ok()),
    };
    let mut good = c.clone();
    good.nonce = book.issue(now, src);
    good.response = expected_response(alg, &ha1(alg, &c.username, &c.realm, "pw"), "REGISTER", &good);
    let first = book.verify(now, src, &c.realm, "REGISTER", "pw", &good);
    if qop_ok {
        assert_eq!(first, Ok(()), "right response refused");
        assert_eq!(book.verify(now, src, &c.realm, "REGISTER", "pw", &good), Err(AuthError::Replay));
    } else {
        assert!(first.is_err());
    }
    assert!(book.verify(now, src, &c.realm, "REGISTER", "wrong", &good).is_err());
});
