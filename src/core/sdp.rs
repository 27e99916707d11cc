//! Just enough SDP (RFC 4566, offer/answer RFC 3264) for the box to terminate media on
//! behalf of a CTI application: read where a far end wants RTP and which codecs it
//! offers; write an offer or answer naming the application's address, port and codec;
//! change a session's direction for hold. Everything else is passed through untouched.

use crate::config::Codec;
use std::net::IpAddr;

/// The audio stream an SDP body describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Audio {
    pub ip: IpAddr,
    pub port: u16,
    /// Payload types offered, in order.
    pub payloads: Vec<u8>,
    /// telephone-event payload type, if offered.
    pub dtmf: Option<u8>,
    pub direction: Direction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn attr(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
}

/// Reads the first audio stream of an SDP body. `None` if there is none, or it has no
/// usable connection address.
pub fn parse_audio(body: &[u8]) -> Option<Audio> {
    let text = std::str::from_utf8(body).ok()?;
    let mut session_ip: Option<IpAddr> = None;
    let mut audio: Option<Audio> = None;
    let mut in_audio = false;
    let mut seen_media = false;
    for line in text.lines().map(str::trim_end) {
        let Some((k, v)) = line.split_once('=') else { continue };
        match k {
            "c" => {
                let ip = v.split_whitespace().nth(2).and_then(|a| a.split('/').next()).and_then(|a| a.parse().ok());
                if !seen_media {
                    session_ip = ip;
                } else if in_audio {
                    if let (Some(a), Some(ip)) = (audio.as_mut(), ip) {
                        a.ip = ip;
                    }
                }
            }
            "m" => {
                seen_media = true;
                let mut f = v.split_whitespace();
                in_audio = f.next() == Some("audio") && audio.is_none();
                if in_audio {
                    let port = f.next()?.split('/').next()?.parse().ok()?;
                    let _proto = f.next();
                    let payloads = f.filter_map(|p| p.parse().ok()).collect();
                    let ip = session_ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
                    audio = Some(Audio { ip, port, payloads, dtmf: None, direction: Direction::SendRecv });
                }
            }
            "a" if in_audio || !seen_media => {
                let dir = match v {
                    "sendrecv" => Some(Direction::SendRecv),
                    "sendonly" => Some(Direction::SendOnly),
                    "recvonly" => Some(Direction::RecvOnly),
                    "inactive" => Some(Direction::Inactive),
                    _ => None,
                };
                if let (Some(d), Some(a)) = (dir, audio.as_mut()) {
                    a.direction = d;
                }
                if let Some(rest) = v.strip_prefix("rtpmap:") {
                    if rest.to_ascii_lowercase().contains("telephone-event/8000") {
                        if let (Some(pt), Some(a)) = (rest.split_whitespace().next().and_then(|p| p.parse().ok()), audio.as_mut()) {
                            a.dtmf = Some(pt);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    audio.filter(|a| !a.ip.is_unspecified() || a.port == 0)
}

/// The first codec of `prefer` that the offer carries.
pub fn choose_codec(offer: &Audio, prefer: &[Codec]) -> Option<Codec> {
    prefer.iter().copied().find(|c| offer.payloads.contains(&c.payload_type()))
}

fn codec_rtpmap(c: Codec) -> &'static str {
    match c {
        Codec::Pcmu => "PCMU/8000",
        Codec::Pcma => "PCMA/8000",
    }
}

/// An SDP body for media terminated at `ip:port` in `codec` (plus telephone-event if
/// `dtmf` is given), with `version` as the o= version (bump it on every change).
pub fn body(ip: IpAddr, port: u16, codec: Codec, dtmf: Option<u8>, direction: Direction, session_id: u64, version: u64) -> Vec<u8> {
    let ipv = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let pt = codec.payload_type();
    let mut s = format!(
        "v=0\r\no=ctibox {session_id} {version} IN {ipv} {ip}\r\ns=ctibox\r\nc=IN {ipv} {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {pt}"
    );
    if let Some(d) = dtmf {
        s.push_str(&format!(" {d}"));
    }
    s.push_str(&format!("\r\na=rtpmap:{pt} {}\r\n", codec_rtpmap(codec)));
    if let Some(d) = dtmf {
        s.push_str(&format!("a=rtpmap:{d} telephone-event/8000\r\na=fmtp:{d} 0-16\r\n"));
    }
    s.push_str(&format!("a={}\r\n", direction.attr()));
    s.into_bytes()
}

/// An SDP offer for media at `ip:port`, listing `codecs` in order of preference.
pub fn offer(ip: IpAddr, port: u16, codecs: &[Codec], dtmf: Option<u8>, session_id: u64, version: u64) -> Vec<u8> {
    let ipv = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let mut pts: Vec<String> = codecs.iter().map(|c| c.payload_type().to_string()).collect();
    if let Some(d) = dtmf {
        pts.push(d.to_string());
    }
    let mut s = format!(
        "v=0\r\no=ctibox {session_id} {version} IN {ipv} {ip}\r\ns=ctibox\r\nc=IN {ipv} {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {}\r\n",
        pts.join(" ")
    );
    for c in codecs {
        s.push_str(&format!("a=rtpmap:{} {}\r\n", c.payload_type(), codec_rtpmap(*c)));
    }
    if let Some(d) = dtmf {
        s.push_str(&format!("a=rtpmap:{d} telephone-event/8000\r\na=fmtp:{d} 0-16\r\n"));
    }
    s.push_str("a=sendrecv\r\n");
    s.into_bytes()
}

/// The same body with its audio direction replaced (hold: sendonly; resume: sendrecv).
pub fn with_direction(body: &[u8], direction: Direction) -> Vec<u8> {
    let text = String::from_utf8_lossy(body);
    let mut out = String::with_capacity(text.len() + 16);
    let mut replaced = false;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end();
        if matches!(bare, "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive") {
            out.push_str(&format!("a={}\r\n", direction.attr()));
            replaced = true;
        } else {
            out.push_str(line);
        }
    }
    if !replaced {
        if !out.ends_with('\n') {
            out.push_str("\r\n");
        }
        out.push_str(&format!("a={}\r\n", direction.attr()));
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &[u8] = b"v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.5\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";

    #[test]
    fn reads_an_offer_and_answers_it() {
        let a = parse_audio(OFFER).unwrap();
        assert_eq!((a.ip, a.port, a.payloads.clone(), a.dtmf), ("127.0.0.5".parse().unwrap(), 6000, vec![8, 0, 101], Some(101)));
        assert_eq!(choose_codec(&a, &[Codec::Pcmu, Codec::Pcma]), Some(Codec::Pcmu));
        assert_eq!(choose_codec(&a, &[Codec::Pcma]), Some(Codec::Pcma));
        let ans = body("127.0.0.9".parse().unwrap(), 7000, Codec::Pcmu, a.dtmf, Direction::SendRecv, 5, 1);
        let back = parse_audio(&ans).unwrap();
        assert_eq!((back.ip, back.port, back.payloads), ("127.0.0.9".parse().unwrap(), 7000, vec![0, 101]));
        let held = parse_audio(&with_direction(&ans, Direction::SendOnly)).unwrap();
        assert_eq!(held.direction, Direction::SendOnly);
    }

    #[test]
    fn bad_bodies_give_none_not_panics() {
        for b in [&b""[..], b"m=audio", b"m=audio x RTP/AVP 0", b"\xff\xfe", b"c=IN IP4\r\nm=audio 1 RTP/AVP 0"] {
            let _ = parse_audio(b);
        }
        assert_eq!(parse_audio(b"v=0\r\nm=video 5 RTP/AVP 96\r\n"), None);
    }
}
