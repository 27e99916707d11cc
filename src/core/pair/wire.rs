//! Frames of the peer link: `version (1) | length (2, big-endian) | postcard body |
//! HMAC-SHA256 (32)`, the MAC over everything before it with the pair key. The
//! length is checked against `MAX_BODY` and the datagram before anything is decoded,
//! the MAC before the body is; a frame whose (boot, seq) is not past the last one
//! accepted from that peer is a replay (`ReplayGuard`).
//!
//! Replication goes over TCP in stream frames: the serving unit opens with a
//! challenge (`CHALLENGE_MAGIC` and 16 random bytes, unsigned), and every frame after
//! it is `version (1) | length (4, big-endian) | postcard StreamMsg | HMAC-SHA256`,
//! the MAC keyed by `HMAC(pair key, "ctibox stream" | challenge)` and taken over the
//! direction, the frame's number in its direction and the frame. So a frame is good
//! only on its connection, in its direction and at its place: a recorded stream
//! replayed into a new connection, a frame reflected back or dropped is refused.

use super::Status;
use crate::core::snapshot::{Delta, EngineSnapshot};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The frame format; a unit refuses another.
pub const VERSION: u8 = 2;
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
    /// Over the peer link, every `heartbeat_ms`: the sender's status and how many
    /// calls it holds (on the active: established and in setup), so a standby that
    /// takes over knows how many calls in setup it could not carry on.
    Heartbeat { status: Status, calls: u32 },
    /// A probe over the LAN: "what is your status?" (the answer echoes the nonce).
    Query { nonce: u64 },
    Answer { nonce: u64, status: Status },
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

/// What a stream (replication) connection's first bytes are: this and a nonce.
pub const CHALLENGE_MAGIC: &[u8; 8] = b"CTIBOXR1";
pub const CHALLENGE_LEN: usize = 24;
/// The largest stream frame body (a snapshot of a full box is a few MiB).
pub const MAX_STREAM_BODY: usize = 64 << 20;
/// Before the subscriber is known, a frame past this is refused (no large buffer
/// for an unauthenticated peer).
pub const MAX_HANDSHAKE_BODY: usize = 256;
pub const STREAM_HEAD: usize = 5;

/// One message of a replication connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StreamMsg {
    /// From the standby, first: send me your state.
    Subscribe { unit: u64 },
    /// From the serving unit: everything, then `Delta`s in order.
    Snapshot { term: u64, snapshot: Box<EngineSnapshot> },
    Delta(Delta),
}

/// Which way a stream frame goes (part of its MAC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    ToServer = 1,
    ToStandby = 2,
}

/// The challenge a serving unit opens a replication connection with.
pub fn challenge(nonce: [u8; 16]) -> [u8; CHALLENGE_LEN] {
    let mut c = [0u8; CHALLENGE_LEN];
    c[..8].copy_from_slice(CHALLENGE_MAGIC);
    c[8..].copy_from_slice(&nonce);
    c
}

/// The connection key from the pair key and the challenge's bytes; `None` if they
/// are not a challenge.
pub fn stream_key(key: &[u8], challenge: &[u8]) -> Option<[u8; 32]> {
    if challenge.len() != CHALLENGE_LEN || &challenge[..8] != CHALLENGE_MAGIC {
        return None;
    }
    let mut m = mac(key);
    m.update(b"ctibox stream");
    m.update(&challenge[8..]);
    Some(m.finalize().into_bytes().into())
}

/// Seals or opens the frames of one direction of one stream connection.
pub struct StreamSide {
    key: [u8; 32],
    dir: Dir,
    seq: u64,
    max: usize,
}

impl StreamSide {
    pub fn new(key: [u8; 32], dir: Dir) -> StreamSide {
        StreamSide { key, dir, seq: 0, max: MAX_HANDSHAKE_BODY }
    }

    /// Raises the largest body accepted (after the handshake).
    pub fn allow(&mut self, max: usize) {
        self.max = max.min(MAX_STREAM_BODY);
    }

    /// The MAC of the next frame: its direction, its number, then `parts` (the frame).
    fn tag(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut m = mac(&self.key);
        m.update(&[self.dir as u8]);
        m.update(&self.seq.to_be_bytes());
        for p in parts {
            m.update(p);
        }
        m
    }

    /// The next frame carrying `msg`; `None` past `MAX_STREAM_BODY`.
    pub fn seal(&mut self, msg: &StreamMsg) -> Option<Vec<u8>> {
        let body = postcard::to_allocvec(msg).ok()?;
        if body.len() > MAX_STREAM_BODY {
            return None;
        }
        let len = u32::try_from(body.len()).ok()?;
        let mut out = Vec::with_capacity(STREAM_HEAD + body.len() + MAC);
        out.push(VERSION);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&body);
        let t = self.tag(&[&out]).finalize().into_bytes();
        out.extend_from_slice(&t);
        self.seq += 1;
        Some(out)
    }

    /// How many bytes follow this header (body and MAC), checked against the cap
    /// before anything is read or allocated.
    pub fn rest_len(&self, head: &[u8; STREAM_HEAD]) -> Result<usize, Refused> {
        if head[0] != VERSION {
            return Err(Refused::Version(head[0]));
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        let len = usize::try_from(len).map_err(|_| Refused::Length)?;
        if len > self.max {
            return Err(Refused::Length);
        }
        len.checked_add(MAC).ok_or(Refused::Length)
    }

    /// The next frame's message, from its header and the `rest_len` bytes after it.
    pub fn open(&mut self, head: &[u8; STREAM_HEAD], rest: &[u8]) -> Result<StreamMsg, Refused> {
        let need = self.rest_len(head)?;
        if rest.len() != need {
            return Err(Refused::Length);
        }
        let (body, tag) = rest.split_at(need - MAC);
        self.tag(&[head, body]).verify_slice(tag).map_err(|_| Refused::Forged)?;
        self.seq += 1;
        postcard::from_bytes::<StreamMsg>(body).map_err(|_| Refused::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::pair::Role;

    const KEY: &[u8] = b"pair key of thirty-two bytes ok!";

    fn frame(boot: u64, seq: u64) -> Frame {
        Frame { boot, seq, body: Body::Heartbeat { status: Status { term: 7, role: Role::Active, priority: 100, unit: 1, handover: false }, calls: 3 } }
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
        for other in [VERSION - 1, VERSION + 1] {
            let mut v = bytes.clone();
            v[0] = other;
            assert_eq!(decode(KEY, &v), Err(Refused::Version(other)));
        }
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

    fn sides() -> (StreamSide, StreamSide) {
        let c = challenge([7; 16]);
        let k = stream_key(KEY, &c).unwrap();
        (StreamSide::new(k, Dir::ToStandby), StreamSide::new(k, Dir::ToStandby))
    }

    fn split(f: &[u8]) -> ([u8; STREAM_HEAD], &[u8]) {
        (f[..STREAM_HEAD].try_into().unwrap(), &f[STREAM_HEAD..])
    }

    #[test]
    fn stream_frames_open_in_order_on_their_connection_and_direction_only() {
        let (mut tx, mut rx) = sides();
        let a = tx.seal(&StreamMsg::Subscribe { unit: 1 }).unwrap();
        let b = tx.seal(&StreamMsg::Delta(Delta::CallEnded { id: 9 })).unwrap();
        let (h, r) = split(&b);
        assert_eq!(rx.open(&h, r), Err(Refused::Forged), "out of order (a frame dropped)");
        let (h, r) = split(&a);
        assert_eq!(rx.open(&h, r), Ok(StreamMsg::Subscribe { unit: 1 }));
        assert_eq!(rx.open(&h, r), Err(Refused::Forged), "replayed");
        let (h, r) = split(&b);
        assert_eq!(rx.open(&h, r), Ok(StreamMsg::Delta(Delta::CallEnded { id: 9 })));
        // Another connection (another challenge) or the other direction: refused.
        let k2 = stream_key(KEY, &challenge([8; 16])).unwrap();
        let (h, r) = split(&a);
        assert_eq!(StreamSide::new(k2, Dir::ToStandby).open(&h, r), Err(Refused::Forged));
        let k = stream_key(KEY, &challenge([7; 16])).unwrap();
        assert_eq!(StreamSide::new(k, Dir::ToServer).open(&h, r), Err(Refused::Forged));
        assert_eq!(stream_key(KEY, b"not a challenge"), None);
    }

    #[test]
    fn a_stream_frame_past_the_cap_is_refused_from_its_header() {
        let (_, mut rx) = sides();
        let head = [VERSION, 0, 0, 1, 1];
        assert_eq!(rx.rest_len(&head), Err(Refused::Length), "257 bytes before the handshake");
        rx.allow(usize::MAX);
        assert_eq!(rx.rest_len(&head), Ok(257 + 32));
        assert_eq!(rx.rest_len(&[VERSION, 0xff, 0xff, 0xff, 0xff]), Err(Refused::Length));
        assert_eq!(rx.rest_len(&[9, 0, 0, 0, 1]), Err(Refused::Version(9)));
    }
}
