//! Frames of the peer link: `version (1) | length (2, big-endian) | postcard body |
//! HMAC-SHA256 (32)`, the MAC over everything before it with the pair key. The
//! length is checked against `MAX_BODY` and the datagram before anything is decoded,
//! the MAC before the body is; a frame whose (boot, seq) is not past the last one
//! accepted from that peer is a replay (`ReplayGuard`).

use super::Status;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The frame format; a unit refuses another.
pub const VERSION: u8 = 1;
/// The largest body accepted (a heartbeat is about 20 bytes).
pub const MAX_BODY: usize = 1024;
const HEAD: usize = 3;
const MAC: usize = 32;

/// One frame's content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// The sender's start (a number that grows from one start to the next, such as
    /// its wall clock in ms at start).
    pub boot: u64,
    /// Grows by one per frame within a boot.
    pub seq: u64,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    Heartbeat(Status),
}

/// Why a frame was refused (each is counted by the shell).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Shorter than a header and a MAC.
    Short,
    /// Another frame version.
    Version(u8),
    /// The length field is past `MAX_BODY` or does not match the datagram.
    Length,
    /// The MAC does not match: forged, corrupted or another pair's key.
    Forged,
    /// Authentic but not a body this version knows.
    Malformed,
    /// Not past the last frame accepted from the peer.
    Replayed,
}

impl Refused {
    pub fn name(self) -> &'static str {
        match self {
            Refused::Short => "short",
            Refused::Version(_) => "version",
            Refused::Length => "length",
            Refused::Forged => "forged",
            Refused::Malformed => "malformed",
            Refused::Replayed => "replayed",
        }
    }
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length")
}

/// The datagram for `frame`; `None` if its body would be past `MAX_BODY`.
pub fn encode(key: &[u8], frame: &Frame) -> Option<Vec<u8>> {
    sign(key, &postcard::to_allocvec(frame).ok()?)
}

/// The datagram carrying `body` as it is (the header and the MAC around it); `None`
/// past `MAX_BODY`.
pub fn sign(key: &[u8], body: &[u8]) -> Option<Vec<u8>> {
    if body.len() > MAX_BODY {
        return None;
    }
    let len = u16::try_from(body.len()).ok()?;
    let mut out = Vec::with_capacity(HEAD + body.len() + MAC);
    out.push(VERSION);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    let mut m = mac(key);
    m.update(&out);
    out.extend_from_slice(&m.finalize().into_bytes());
    Some(out)
}

/// The frame in `datagram`, if it is authentic and well formed (replays are the
/// guard's to refuse).
pub fn decode(key: &[u8], datagram: &[u8]) -> Result<Frame, Refused> {
    if datagram.len() < HEAD + MAC {
        return Err(Refused::Short);
    }
    if datagram[0] != VERSION {
        return Err(Refused::Version(datagram[0]));
    }
    let len = usize::from(u16::from_be_bytes([datagram[1], datagram[2]]));
    if len > MAX_BODY || Some(datagram.len()) != HEAD.checked_add(len).and_then(|n| n.checked_add(MAC)) {
        return Err(Refused::Length);
    }
    let (signed, tag) = datagram.split_at(HEAD + len);
    let mut m = mac(key);
    m.update(signed);
    m.verify_slice(tag).map_err(|_| Refused::Forged)?;
    match postcard::from_bytes::<Frame>(&signed[HEAD..]) {
        Ok(f) => Ok(f),
        Err(_) => Err(Refused::Malformed),
    }
}

/// The last (boot, seq) accepted from the peer: frames not past it are replays.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReplayGuard {
    last: Option<(u64, u64)>,
}

impl ReplayGuard {
    pub fn accept(&mut self, f: &Frame) -> Result<(), Refused> {
        if self.last.is_some_and(|l| (f.boot, f.seq) <= l) {
            return Err(Refused::Replayed);
        }
        self.last = Some((f.boot, f.seq));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::pair::Role;

    const KEY: &[u8] = b"pair key of thirty-two bytes ok!";

    fn frame(boot: u64, seq: u64) -> Frame {
        Frame { boot, seq, body: Body::Heartbeat(Status { term: 7, role: Role::Active, priority: 100, unit: 1, handover: false }) }
    }

    #[test]
    fn a_frame_round_trips_and_every_flipped_bit_is_refused() {
        let bytes = encode(KEY, &frame(5, 9)).unwrap();
        assert_eq!(decode(KEY, &bytes), Ok(frame(5, 9)));
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                let r = decode(KEY, &b);
                assert!(r.is_err(), "byte {i} bit {bit} accepted: {r:?}");
            }
        }
        assert_eq!(decode(b"another pair's key", &bytes), Err(Refused::Forged));
    }

    #[test]
    fn short_long_and_other_versions_are_refused_before_the_mac_is_computed() {
        let bytes = encode(KEY, &frame(1, 1)).unwrap();
        assert_eq!(decode(KEY, &bytes[..10]), Err(Refused::Short));
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert_eq!(decode(KEY, &v2), Err(Refused::Version(2)));
        let mut long = bytes.clone();
        long[1..3].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(decode(KEY, &long), Err(Refused::Length));
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(decode(KEY, &extra), Err(Refused::Length));
    }

    #[test]
    fn replays_and_frames_of_an_older_boot_are_refused() {
        let mut g = ReplayGuard::default();
        assert_eq!(g.accept(&frame(10, 1)), Ok(()));
        assert_eq!(g.accept(&frame(10, 2)), Ok(()));
        assert_eq!(g.accept(&frame(10, 2)), Err(Refused::Replayed));
        assert_eq!(g.accept(&frame(10, 1)), Err(Refused::Replayed));
        assert_eq!(g.accept(&frame(9, 500)), Err(Refused::Replayed), "an older boot");
        assert_eq!(g.accept(&frame(11, 0)), Ok(()), "the peer restarted");
    }
}
