//! HTTP Digest authentication as SIP uses it (RFC 3261 §22, RFC 8760 for SHA-256,
//! RFC 7616 for the qop/nc rules): challenges, credential parsing, verification, and
//! nonces that expire and cannot be replayed. Pure: time and keys come from outside.

use super::time::Time;
use crate::codec::hex;
use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// How long a nonce may be used before the client is told it is stale.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(300);
/// Nonces whose use (nonce count) is remembered; past this the oldest are retired.
pub const NONCES_TRACKED: usize = 16_384;

/// The algorithm is a configured value (`[sip] digest_algorithms`), so the type lives
/// in the configuration model; hashing with it lives here.
pub use crate::config::DigestAlgorithm as Algorithm;

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }
    fn parse(s: &str) -> Option<Algorithm> {
        match s.to_ascii_uppercase().as_str() {
            "MD5" => Some(Algorithm::Md5),
            "SHA-256" => Some(Algorithm::Sha256),
            _ => None,
        }
    }
    /// The hash of `parts` joined with ':', in lowercase hex, without an allocation
    /// (each authenticated request takes three of these).
    fn hash_parts(self, parts: &[&[u8]]) -> HexDigest {
        fn feed<D: Digest>(mut h: D, parts: &[&[u8]]) -> HexDigest {
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    h.update(b":");
                }
                h.update(p);
            }
            HexDigest::of(&h.finalize())
        }
        match self {
            Algorithm::Md5 => feed(Md5::new(), parts),
            Algorithm::Sha256 => feed(Sha256::new(), parts),
        }
    }
}

/// A digest in lowercase hex, on the stack (SHA-256 has 64 digits).
struct HexDigest {
    buf: [u8; 64],
    len: usize,
}

impl HexDigest {
    fn of(bytes: &[u8]) -> HexDigest {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut d = HexDigest { buf: [0; 64], len: 0 };
        for (&x, out) in bytes.iter().zip(d.buf.chunks_exact_mut(2)) {
            out[0] = DIGITS[usize::from(x >> 4)];
            out[1] = DIGITS[usize::from(x & 0xf)];
            d.len += 2;
        }
        d
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// Digest credentials from an Authorization / Proxy-Authorization header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Option<String>,
    pub cnonce: Option<String>,
    pub nc: Option<String>,
    pub qop: Option<String>,
    pub opaque: Option<String>,
}

/// Why credentials were not accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// Not a Digest header, or a parameter is malformed.
    Malformed(&'static str),
    /// A required parameter is absent.
    Missing(&'static str),
    UnsupportedAlgorithm,
    UnsupportedQop,
    WrongRealm,
    /// The nonce was not issued by this box (or was tampered with).
    UnknownNonce,
    /// The nonce was ours but is too old: re-challenge with stale=true.
    Stale,
    /// The nonce count did not increase, or a no-qop nonce was reused.
    Replay,
    /// The response hash is wrong: bad password.
    BadResponse,
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::Malformed(what) => write!(f, "malformed credentials: {what}"),
            AuthError::Missing(p) => write!(f, "credentials lack the {p} parameter"),
            AuthError::UnsupportedAlgorithm => write!(f, "unsupported digest algorithm"),
            AuthError::UnsupportedQop => write!(f, "unsupported qop"),
            AuthError::WrongRealm => write!(f, "credentials are for another realm"),
            AuthError::UnknownNonce => write!(f, "nonce not issued here"),
            AuthError::Stale => write!(f, "nonce expired"),
            AuthError::Replay => write!(f, "nonce reused (replay)"),
            AuthError::BadResponse => write!(f, "wrong password"),
        }
    }
}

/// Parses `Digest k=v, k="v", ...` (the value of an Authorization header), with the
/// SIP parser's auth-parameter grammar.
pub fn parse_credentials(value: &str) -> Result<Credentials, AuthError> {
    let p = super::sip::AuthParams::parse(value).ok_or(AuthError::Malformed("unreadable parameters"))?;
    if !p.is_digest() {
        return Err(AuthError::Malformed("not a Digest scheme"));
    }
    if p.params.len() > 32 {
        return Err(AuthError::Malformed("too many parameters"));
    }
    let c = Credentials {
        username: p.get("username").unwrap_or_default(),
        realm: p.get("realm").unwrap_or_default(),
        nonce: p.get("nonce").unwrap_or_default(),
        uri: p.get("uri").unwrap_or_default(),
        response: p.get("response").unwrap_or_default(),
        algorithm: p.get("algorithm"),
        cnonce: p.get("cnonce"),
        nc: p.get("nc"),
        qop: p.get("qop"),
        opaque: p.get("opaque"),
    };
    for (v, name) in [(&c.username, "username"), (&c.realm, "realm"), (&c.nonce, "nonce"), (&c.uri, "uri"), (&c.response, "response")] {
        if v.is_empty() {
            return Err(AuthError::Missing(name));
        }
    }
    Ok(c)
}

/// H(A1) for a user: what a line's password is reduced to.
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    ha1_hex(alg, username, realm, password).as_str().to_string()
}

fn ha1_hex(alg: Algorithm, username: &str, realm: &str, password: &str) -> HexDigest {
    alg.hash_parts(&[username.as_bytes(), realm.as_bytes(), password.as_bytes()])
}

/// The expected `response` for credentials (RFC 7616 §3.4.1, qop=auth or none).
pub fn expected_response(alg: Algorithm, ha1: &str, method: &str, c: &Credentials) -> String {
    expected_hex(alg, ha1.as_bytes(), method, c).as_str().to_string()
}

fn expected_hex(alg: Algorithm, ha1: &[u8], method: &str, c: &Credentials) -> HexDigest {
    let ha2 = alg.hash_parts(&[method.as_bytes(), c.uri.as_bytes()]);
    match (&c.qop, &c.nc, &c.cnonce) {
        (Some(q), Some(nc), Some(cn)) => {
            alg.hash_parts(&[ha1, c.nonce.as_bytes(), nc.as_bytes(), cn.as_bytes(), q.as_bytes(), ha2.as_bytes()])
        }
        _ => alg.hash_parts(&[ha1, c.nonce.as_bytes(), ha2.as_bytes()]),
    }
}

/// Constant-time equality, `b` compared as ASCII case-insensitively when `fold`.
fn ct_eq_bytes(a: &[u8], b: &[u8], fold: bool) -> bool {
    let lower = |x: u8| if fold { x.to_ascii_lowercase() } else { x };
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ lower(*y))) == 0
}

/// Issues and checks nonces: stateless to verify (an HMAC over issue time and the
/// client's address), stateful only for replay (the highest nonce count seen).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NonceBook {
    key: [u8; 32],
    counter: u64,
    /// nonce (its issue time and counter, the part the MAC covers) -> (issued at,
    /// highest nc used; u32::MAX once a no-qop nonce is used). Fixed-size keys keep
    /// the table one allocation: a string per nonce, alive for minutes, would pin
    /// heap pages all over after a burst of calls and keep them from the system.
    used: HashMap<[u8; 16], (Time, u32)>,
    #[serde(skip)]
    room: super::Room,
    /// Nonces issued before this are refused as stale (raised when `used` is full).
    floor: Time,
}

impl NonceBook {
    pub fn new(key: [u8; 32]) -> NonceBook {
        NonceBook { key, counter: 0, used: HashMap::new(), room: super::Room::default(), floor: Time::ZERO }
    }

    fn mac(&self, body: &[u8], source: IpAddr) -> Vec<u8> {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length");
        m.update(body);
        m.update(source.to_string().as_bytes());
        m.finalize().into_bytes()[..12].to_vec()
    }

    /// A fresh nonce bound to `source`.
    pub fn issue(&mut self, now: Time, source: IpAddr) -> String {
        self.counter += 1;
        let mut body = now.as_micros().to_be_bytes().to_vec();
        body.extend_from_slice(&self.counter.to_be_bytes());
        let mac = self.mac(&body, source);
        format!("{}{}", hex(&body), hex(&mac))
    }

    /// WWW-Authenticate / Proxy-Authenticate values, one per algorithm in order of
    /// preference (RFC 8760 §2.4), sharing one nonce.
    pub fn challenges(&mut self, now: Time, source: IpAddr, realm: &str, stale: bool, algorithms: &[Algorithm]) -> Vec<String> {
        let nonce = self.issue(now, source);
        let stale = if stale { ", stale=true" } else { "" };
        algorithms
            .iter()
            .map(|a| format!("Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}", a.name()))
            .collect()
    }

    /// Checks `c` for `method` against a password; records the nonce use on success.
    pub fn verify(&mut self, now: Time, source: IpAddr, realm: &str, method: &str, password: &str, c: &Credentials) -> Result<(), AuthError> {
        if c.realm != realm {
            return Err(AuthError::WrongRealm);
        }
        let alg = match &c.algorithm {
            None => Algorithm::Md5,
            Some(a) => Algorithm::parse(a).ok_or(AuthError::UnsupportedAlgorithm)?,
        };
        let nc = match c.qop.as_deref() {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let nc = c.nc.as_deref().ok_or(AuthError::Missing("nc"))?;
                c.cnonce.as_deref().ok_or(AuthError::Missing("cnonce"))?;
                Some(u32::from_str_radix(nc, 16).map_err(|_| AuthError::Malformed("nc is not 8 hex digits"))?)
            }
            Some(_) => return Err(AuthError::UnsupportedQop),
        };
        let raw = unhex(&c.nonce).filter(|r| r.len() == 28).ok_or(AuthError::UnknownNonce)?;
        if !ct_eq_bytes(&self.mac(&raw[..16], source), &raw[16..], false) {
            return Err(AuthError::UnknownNonce);
        }
        let issued = Time(u64::from_be_bytes(raw[..8].try_into().expect("8 bytes")));
        if issued < self.floor || now.since(issued) > NONCE_LIFETIME {
            return Err(AuthError::Stale);
        }
        let expected = expected_hex(alg, ha1_hex(alg, &c.username, realm, password).as_bytes(), method, c);
        if !ct_eq_bytes(expected.as_bytes(), c.response.as_bytes(), true) {
            return Err(AuthError::BadResponse);
        }
        let id: [u8; 16] = raw[..16].try_into().expect("16 bytes");
        let last = self.used.get(&id).map(|(_, n)| *n);
        let next = match (nc, last) {
            (None, None) => u32::MAX,
            (Some(n), None) => n,
            (Some(n), Some(l)) if l != u32::MAX && n > l => n,
            _ => return Err(AuthError::Replay),
        };
        if last.is_none() && self.used.len() >= NONCES_TRACKED {
            self.retire_oldest();
        }
        self.used.insert(id, (issued, next));
        Ok(())
    }

    /// Forgets nonces that can no longer be used; call periodically.
    pub fn sweep(&mut self, now: Time) {
        self.used.retain(|_, (issued, _)| now.since(*issued) <= NONCE_LIFETIME);
        super::tend_map(&mut self.used, &mut self.room);
    }

    /// Retires the older half of the tracked nonces by raising the floor.
    fn retire_oldest(&mut self) {
        let mut times: Vec<Time> = self.used.values().map(|(t, _)| *t).collect();
        times.sort_unstable();
        let cut = times[times.len() / 2];
        self.floor = self.floor.max(Time(cut.0 + 1));
        let floor = self.floor;
        self.used.retain(|_, (t, _)| *t >= floor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "127.0.0.1";

    /// What a phone computes for a challenge.
    fn answer(alg: Algorithm, nonce: &str, nc: u32, password: &str) -> Credentials {
        let mut c = Credentials {
            username: "1001".into(),
            realm: "ctibox".into(),
            nonce: nonce.into(),
            uri: "sip:ctibox".into(),
            algorithm: Some(alg.name().into()),
            cnonce: Some("abc123".into()),
            nc: Some(format!("{nc:08x}")),
            qop: Some("auth".into()),
            ..Default::default()
        };
        c.response = expected_response(alg, &ha1(alg, "1001", "ctibox", password), "REGISTER", &c);
        c
    }

    fn nonce_of(ch: &str) -> String {
        ch.split("nonce=\"").nth(1).unwrap().split('"').next().unwrap().to_string()
    }

    #[test]
    fn md5_response_matches_the_rfc2617_example() {
        // RFC 2617 §3.5 example (MD5, qop=auth).
        let c = Credentials {
            username: "Mufasa".into(),
            realm: "testrealm@host.com".into(),
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093".into(),
            uri: "/dir/index.html".into(),
            cnonce: Some("0a4f113b".into()),
            nc: Some("00000001".into()),
            qop: Some("auth".into()),
            ..Default::default()
        };
        let h = ha1(Algorithm::Md5, "Mufasa", "testrealm@host.com", "Circle Of Life");
        assert_eq!(expected_response(Algorithm::Md5, &h, "GET", &c), "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn sha256_response_matches_the_rfc7616_example() {
        // RFC 7616 §3.9.1 example (SHA-256, qop=auth).
        let c = Credentials {
            username: "Mufasa".into(),
            realm: "http-auth@example.org".into(),
            nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v".into(),
            uri: "/dir/index.html".into(),
            cnonce: Some("f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ".into()),
            nc: Some("00000001".into()),
            qop: Some("auth".into()),
            ..Default::default()
        };
        let h = ha1(Algorithm::Sha256, "Mufasa", "http-auth@example.org", "Circle of Life");
        assert_eq!(
            expected_response(Algorithm::Sha256, &h, "GET", &c),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn accepts_both_algorithms_and_refuses_replay_and_bad_password() {
        let mut book = NonceBook::new([7; 32]);
        let src: IpAddr = SRC.parse().unwrap();
        let ch = book.challenges(Time::ZERO, src, "ctibox", false, &[Algorithm::Sha256, Algorithm::Md5]);
        assert!(ch[0].contains("algorithm=SHA-256") && ch[1].contains("algorithm=MD5"));
        let n = nonce_of(&ch[0]);
        for alg in [Algorithm::Sha256, Algorithm::Md5] {
            let n = book.issue(Time::ZERO, src);
            let c = answer(alg, &n, 1, "s3cret-pass");
            assert_eq!(book.verify(Time::from_millis(10), src, "ctibox", "REGISTER", "s3cret-pass", &c), Ok(()));
            assert_eq!(book.verify(Time::from_millis(20), src, "ctibox", "REGISTER", "s3cret-pass", &c), Err(AuthError::Replay));
            let c2 = answer(alg, &n, 2, "s3cret-pass");
            assert_eq!(book.verify(Time::from_millis(30), src, "ctibox", "REGISTER", "s3cret-pass", &c2), Ok(()));
        }
        let wrong = answer(Algorithm::Sha256, &n, 1, "guess");
        assert_eq!(book.verify(Time::ZERO, src, "ctibox", "REGISTER", "s3cret-pass", &wrong), Err(AuthError::BadResponse));
    }

    #[test]
    fn nonces_expire_and_are_bound_to_the_source() {
        let mut book = NonceBook::new([9; 32]);
        let src: IpAddr = SRC.parse().unwrap();
        let n = book.issue(Time::ZERO, src);
        let c = answer(Algorithm::Md5, &n, 1, "s3cret-pass");
        let late = Time::ZERO + NONCE_LIFETIME + Duration::from_secs(1);
        assert_eq!(book.verify(late, src, "ctibox", "REGISTER", "s3cret-pass", &c), Err(AuthError::Stale));
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(book.verify(Time::ZERO, other, "ctibox", "REGISTER", "s3cret-pass", &c), Err(AuthError::UnknownNonce));
        let mut forged = c.clone();
        forged.nonce = "00".repeat(28);
        assert_eq!(book.verify(Time::ZERO, src, "ctibox", "REGISTER", "s3cret-pass", &forged), Err(AuthError::UnknownNonce));
    }

    #[test]
    fn parses_headers_with_quotes_and_escapes() {
        let c = parse_credentials(
            "Digest username=\"bob\", realm=\"ctibox\", nonce=\"n\", uri=\"sip:x\", response=\"r\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"a\\\"b, c\"",
        )
        .unwrap();
        assert_eq!((c.username.as_str(), c.cnonce.as_deref(), c.qop.as_deref()), ("bob", Some("a\"b, c"), Some("auth")));
        assert!(matches!(parse_credentials("Basic Zm9v"), Err(AuthError::Malformed(_))));
        assert_eq!(parse_credentials("Basic realm=\"x\""), Err(AuthError::Malformed("not a Digest scheme")));
        assert_eq!(parse_credentials("Digest realm=\"x\""), Err(AuthError::Missing("username")));
        assert!(parse_credentials("Digest username=\"unterminated").is_err());
        for junk in ["", "Digest", "Digest ,,,", "Digest =", "Digest a", "Digest a=\"\\"] {
            let _ = parse_credentials(junk); // never panics
        }
    }
}
