//! RFC 3550 RTCP: sender and receiver reports with report blocks, SDES (CNAME),
//! BYE, and compound packets (build, and parse with the A.2 validity checks); plus
//! the NTP helpers for LSR/DLSR and round-trip time. Wall-clock NTP times come in
//! as arguments; nothing here reads a clock.

use std::time::Duration;

pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
pub const PT_SDES: u8 = 202;
pub const PT_BYE: u8 = 203;
/// SDES item type CNAME.
pub const SDES_CNAME: u8 = 1;
/// Most packets accepted in one compound packet.
pub const MAX_COMPOUND: usize = 16;
/// Most report blocks / sources / chunks in one packet (5-bit count).
pub const MAX_COUNT: usize = 31;

/// One reception report block (section 6.4.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReportBlock {
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost, a 24-bit signed field.
    pub cumulative_lost: i32,
    pub ext_highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR from this source (0 if none).
    pub lsr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub dlsr: u32,
}

/// The sender info of an SR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderInfo {
    /// NTP timestamp (seconds since 1900 in the high 32 bits, fraction in the low).
    pub ntp: u64,
    pub rtp_timestamp: u32,
    pub packets: u32,
    pub octets: u32,
}

/// One SDES chunk: a source and its items `(type, value)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdesChunk {
    pub ssrc: u32,
    pub items: Vec<(u8, Vec<u8>)>,
}

/// One RTCP packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RtcpPacket {
    Sr {
        ssrc: u32,
        info: SenderInfo,
        reports: Vec<ReportBlock>,
    },
    Rr {
        ssrc: u32,
        reports: Vec<ReportBlock>,
    },
    Sdes(Vec<SdesChunk>),
    Bye {
        sources: Vec<u32>,
        reason: Option<Vec<u8>>,
    },
    /// Any other type (APP, XR, feedback...), kept as its count field and body.
    Other {
        packet_type: u8,
        count: u8,
        body: Vec<u8>,
    },
}

/// Why an RTCP packet was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtcpError {
    TooShort {
        needed: usize,
        got: usize,
    },
    BadVersion(u8),
    /// The first packet of a compound is not an SR or RR.
    NotReportFirst(u8),
    /// Padding on a packet that is not the last, or a bad padding count.
    BadPadding,
    /// A count field does not fit the packet's length.
    BadCount,
    /// More than `MAX_COMPOUND` packets.
    TooManyPackets,
    /// Building: more than 31 entries, or an SDES item / BYE reason over 255 bytes.
    TooMany(usize),
}

impl std::fmt::Display for RtcpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RtcpError::TooShort { needed, got } => write!(f, "RTCP packet too short: need {needed} bytes, got {got}"),
            RtcpError::BadVersion(v) => write!(f, "RTCP version {v}, expected 2"),
            RtcpError::NotReportFirst(pt) => write!(f, "compound RTCP starts with type {pt}, not SR/RR"),
            RtcpError::BadPadding => write!(f, "RTCP padding is invalid"),
            RtcpError::BadCount => write!(f, "RTCP count does not fit the packet length"),
            RtcpError::TooManyPackets => write!(f, "compound RTCP holds more than {MAX_COMPOUND} packets"),
            RtcpError::TooMany(n) => write!(f, "{n} entries or bytes where at most 31 / 255 fit"),
        }
    }
}

impl std::error::Error for RtcpError {}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn put_header(out: &mut Vec<u8>, count: usize, pt: u8) -> usize {
    out.push(0x80 | count as u8);
    out.push(pt);
    out.extend_from_slice(&[0, 0]); // length, patched by finish()
    out.len() - 4
}

fn finish(out: &mut [u8], start: usize) {
    let words = ((out.len() - start) / 4 - 1) as u16;
    out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
}

fn put_block(out: &mut Vec<u8>, b: &ReportBlock) {
    out.extend_from_slice(&b.ssrc.to_be_bytes());
    let lost = (b.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32) & 0x00FF_FFFF;
    out.extend_from_slice(&((u32::from(b.fraction_lost) << 24) | lost).to_be_bytes());
    for v in [b.ext_highest_seq, b.jitter, b.lsr, b.dlsr] {
        out.extend_from_slice(&v.to_be_bytes());
    }
}

fn get_block(b: &[u8]) -> ReportBlock {
    let word = be32(b, 4);
    // Sign-extend the 24-bit cumulative loss.
    let cumulative_lost = ((word << 8) as i32) >> 8;
    ReportBlock {
        ssrc: be32(b, 0),
        fraction_lost: (word >> 24) as u8,
        cumulative_lost,
        ext_highest_seq: be32(b, 8),
        jitter: be32(b, 12),
        lsr: be32(b, 16),
        dlsr: be32(b, 20),
    }
}

impl RtcpPacket {
    /// Appends this packet to `out` (nothing is appended on error).
    pub fn write(&self, out: &mut Vec<u8>) -> Result<(), RtcpError> {
        let too_many = |n: usize| if n > MAX_COUNT { Err(RtcpError::TooMany(n)) } else { Ok(()) };
        match self {
            RtcpPacket::Sr { ssrc, info, reports } => {
                too_many(reports.len())?;
                let s = put_header(out, reports.len(), PT_SR);
                out.extend_from_slice(&ssrc.to_be_bytes());
                out.extend_from_slice(&info.ntp.to_be_bytes());
                for v in [info.rtp_timestamp, info.packets, info.octets] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
                reports.iter().for_each(|b| put_block(out, b));
                finish(out, s);
            }
            RtcpPacket::Rr { ssrc, reports } => {
                too_many(reports.len())?;
                let s = put_header(out, reports.len(), PT_RR);
                out.extend_from_slice(&ssrc.to_be_bytes());
                reports.iter().for_each(|b| put_block(out, b));
                finish(out, s);
            }
            RtcpPacket::Sdes(chunks) => {
                too_many(chunks.len())?;
                if let Some(n) = chunks.iter().flat_map(|c| &c.items).map(|i| i.1.len()).find(|&n| n > 255) {
                    return Err(RtcpError::TooMany(n));
                }
                let s = put_header(out, chunks.len(), PT_SDES);
                for c in chunks {
                    out.extend_from_slice(&c.ssrc.to_be_bytes());
                    for (kind, value) in &c.items {
                        out.push(*kind);
                        out.push(value.len() as u8);
                        out.extend_from_slice(value);
                    }
                    // END item, then pad the chunk to a 32-bit boundary.
                    out.push(0);
                    while !(out.len() - s).is_multiple_of(4) {
                        out.push(0);
                    }
                }
                finish(out, s);
            }
            RtcpPacket::Bye { sources, reason } => {
                too_many(sources.len())?;
                if let Some(r) = reason.as_ref().filter(|r| r.len() > 255) {
                    return Err(RtcpError::TooMany(r.len()));
                }
                let s = put_header(out, sources.len(), PT_BYE);
                sources.iter().for_each(|v| out.extend_from_slice(&v.to_be_bytes()));
                if let Some(r) = reason {
                    out.push(r.len() as u8);
                    out.extend_from_slice(r);
                    while !(out.len() - s).is_multiple_of(4) {
                        out.push(0);
                    }
                }
                finish(out, s);
            }
            RtcpPacket::Other { packet_type, count, body } => {
                if body.len() % 4 != 0 || body.len() / 4 >= usize::from(u16::MAX) {
                    return Err(RtcpError::BadCount);
                }
                let s = put_header(out, usize::from(*count & 0x1F), *packet_type);
                out.extend_from_slice(body);
                finish(out, s);
            }
        }
        Ok(())
    }

    fn parse_one(pt: u8, count: usize, body: &[u8]) -> Result<RtcpPacket, RtcpError> {
        let need = |n: usize| {
            if body.len() < n {
                Err(RtcpError::TooShort { needed: n + 4, got: body.len() + 4 })
            } else {
                Ok(())
            }
        };
        let blocks = |at: usize| -> Result<Vec<ReportBlock>, RtcpError> {
            if body.len() < at + 24 * count {
                return Err(RtcpError::BadCount);
            }
            Ok((0..count).map(|i| get_block(&body[at + 24 * i..])).collect())
        };
        Ok(match pt {
            PT_SR => {
                need(24)?;
                let info = SenderInfo {
                    ntp: (u64::from(be32(body, 4)) << 32) | u64::from(be32(body, 8)),
                    rtp_timestamp: be32(body, 12),
                    packets: be32(body, 16),
                    octets: be32(body, 20),
                };
                RtcpPacket::Sr { ssrc: be32(body, 0), info, reports: blocks(24)? }
            }
            PT_RR => {
                need(4)?;
                RtcpPacket::Rr { ssrc: be32(body, 0), reports: blocks(4)? }
            }
            PT_SDES => {
                let mut chunks = Vec::new();
                let mut at = 0;
                for _ in 0..count {
                    if body.len() < at + 4 {
                        return Err(RtcpError::BadCount);
                    }
                    let mut chunk = SdesChunk { ssrc: be32(body, at), items: Vec::new() };
                    at += 4;
                    loop {
                        let kind = *body.get(at).ok_or(RtcpError::BadCount)?;
                        if kind == 0 {
                            at += 1;
                            at = at.div_ceil(4) * 4; // chunk padding
                            break;
                        }
                        let len = usize::from(*body.get(at + 1).ok_or(RtcpError::BadCount)?);
                        let value = body.get(at + 2..at + 2 + len).ok_or(RtcpError::BadCount)?;
                        chunk.items.push((kind, value.to_vec()));
                        at += 2 + len;
                    }
                    chunks.push(chunk);
                }
                RtcpPacket::Sdes(chunks)
            }
            PT_BYE => {
                if body.len() < 4 * count {
                    return Err(RtcpError::BadCount);
                }
                let sources = (0..count).map(|i| be32(body, 4 * i)).collect();
                let rest = &body[4 * count..];
                let reason = match rest.first() {
                    Some(&len) => Some(rest.get(1..1 + usize::from(len)).ok_or(RtcpError::BadCount)?.to_vec()),
                    None => None,
                };
                RtcpPacket::Bye { sources, reason }
            }
            _ => RtcpPacket::Other { packet_type: pt, count: count as u8, body: body.to_vec() },
        })
    }
}

/// Builds a compound packet from `packets` (the caller puts an SR or RR first and
/// an SDES with a CNAME next, as section 6.1 requires).
pub fn build_compound(packets: &[RtcpPacket]) -> Result<Vec<u8>, RtcpError> {
    let mut out = Vec::new();
    for p in packets {
        p.write(&mut out)?;
    }
    Ok(out)
}

/// Parses a compound packet with the appendix A.2 checks: version 2, first packet
/// SR or RR, padding only on the last packet, lengths adding up to the datagram.
pub fn parse_compound(buf: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        if out.len() >= MAX_COMPOUND {
            return Err(RtcpError::TooManyPackets);
        }
        let rest = &buf[at..];
        if rest.len() < 4 {
            return Err(RtcpError::TooShort { needed: 4, got: rest.len() });
        }
        let version = rest[0] >> 6;
        if version != 2 {
            return Err(RtcpError::BadVersion(version));
        }
        let pt = rest[1];
        if out.is_empty() && pt != PT_SR && pt != PT_RR {
            return Err(RtcpError::NotReportFirst(pt));
        }
        let len = 4 * (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1);
        if rest.len() < len {
            return Err(RtcpError::TooShort { needed: len, got: rest.len() });
        }
        let mut body = &rest[4..len];
        if rest[0] & 0x20 != 0 {
            let pad = usize::from(*body.last().unwrap_or(&0));
            if len != rest.len() || pad == 0 || pad > body.len() {
                return Err(RtcpError::BadPadding);
            }
            body = &body[..body.len() - pad];
        }
        out.push(RtcpPacket::parse_one(pt, usize::from(rest[0] & 0x1F), body)?);
        at += len;
    }
    if out.is_empty() {
        return Err(RtcpError::TooShort { needed: 4, got: 0 });
    }
    Ok(out)
}

/// The middle 32 bits of an NTP timestamp, as LSR carries it.
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// A delay in the 1/65536 s units of DLSR (saturating).
pub fn to_dlsr(d: Duration) -> u32 {
    u32::try_from(d.as_micros() * 65_536 / 1_000_000).unwrap_or(u32::MAX)
}

/// Round-trip time from a report block (section 6.4.1): `arrival` is the NTP time the
/// report arrived. `None` if the block carries no LSR or the result is negative.
pub fn round_trip(arrival_ntp: u64, block: &ReportBlock) -> Option<Duration> {
    if block.lsr == 0 {
        return None;
    }
    let a = ntp_middle(arrival_ntp);
    let rtt = a.checked_sub(block.lsr)?.checked_sub(block.dlsr)?;
    Some(Duration::from_micros(u64::from(rtt) * 1_000_000 / 65_536))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block() -> ReportBlock {
        ReportBlock {
            ssrc: 0x0102_0304,
            fraction_lost: 0x40,
            cumulative_lost: -2,
            ext_highest_seq: 0x0001_0005,
            jitter: 0x20,
            lsr: 0xAABB_CCDD,
            dlsr: 0x0002_8000,
        }
    }

    #[rustfmt::skip]
    const GOLDEN_SR_SDES: [u8; 72] = [
        // SR, RC=1, length 12 words
        0x81, 0xC8, 0x00, 0x0C, 0xDE, 0xAD, 0xBE, 0xEF,
        0xE8, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, // NTP 0xE8000000.80000000
        0x00, 0x00, 0x1F, 0x40, 0x00, 0x00, 0x00, 0x32, 0x00, 0x00, 0x1F, 0x40, // ts, packets, octets
        0x01, 0x02, 0x03, 0x04, 0x40, 0xFF, 0xFF, 0xFE, // ssrc, fraction 0x40, lost -2
        0x00, 0x01, 0x00, 0x05, 0x00, 0x00, 0x00, 0x20, // ext seq, jitter
        0xAA, 0xBB, 0xCC, 0xDD, 0x00, 0x02, 0x80, 0x00, // LSR, DLSR
        // SDES, SC=1, length 4 words: CNAME "ab@host"
        0x81, 0xCA, 0x00, 0x04, 0xDE, 0xAD, 0xBE, 0xEF,
        0x01, 0x07, b'a', b'b', b'@', b'h', b'o', b's', b't', 0x00, 0x00, 0x00,
    ];

    #[test]
    fn sr_with_sdes_builds_to_and_parses_from_its_golden_bytes() {
        let pkts = vec![
            RtcpPacket::Sr {
                ssrc: 0xDEAD_BEEF,
                info: SenderInfo { ntp: 0xE800_0000_8000_0000, rtp_timestamp: 8000, packets: 50, octets: 8000 },
                reports: vec![block()],
            },
            RtcpPacket::Sdes(vec![SdesChunk { ssrc: 0xDEAD_BEEF, items: vec![(SDES_CNAME, b"ab@host".to_vec())] }]),
        ];
        assert_eq!(build_compound(&pkts).unwrap(), GOLDEN_SR_SDES);
        assert_eq!(parse_compound(&GOLDEN_SR_SDES).unwrap(), pkts);
    }

    #[rustfmt::skip]
    const GOLDEN_RR_BYE: [u8; 24] = [
        0x80, 0xC9, 0x00, 0x01, 0x00, 0x00, 0x00, 0x07, // RR, no blocks
        0x81, 0xCB, 0x00, 0x03, 0x00, 0x00, 0x00, 0x07, // BYE, SC=1
        0x04, b'd', b'o', b'n', b'e', 0x00, 0x00, 0x00, // reason "done", padded
    ];

    #[test]
    fn rr_with_bye_builds_to_and_parses_from_its_golden_bytes() {
        let pkts = vec![
            RtcpPacket::Rr { ssrc: 7, reports: vec![] },
            RtcpPacket::Bye { sources: vec![7], reason: Some(b"done".to_vec()) },
        ];
        assert_eq!(build_compound(&pkts).unwrap(), GOLDEN_RR_BYE);
        assert_eq!(parse_compound(&GOLDEN_RR_BYE).unwrap(), pkts);
    }

    #[test]
    fn up_to_31_blocks_and_unknown_types_round_trip_more_are_refused_and_loss_is_clamped() {
        let reports: Vec<ReportBlock> =
            (0..31).map(|i| ReportBlock { ssrc: i, cumulative_lost: 0x7F_FFFF, ..block() }).collect();
        let pkts = vec![
            RtcpPacket::Rr { ssrc: 1, reports: reports.clone() },
            RtcpPacket::Other { packet_type: 204, count: 3, body: b"nameDATA".to_vec() },
            RtcpPacket::Bye { sources: vec![1, 2], reason: None },
        ];
        let bytes = build_compound(&pkts).unwrap();
        assert_eq!(parse_compound(&bytes).unwrap(), pkts);
        let mut too_many = reports;
        too_many.push(block());
        assert_eq!(RtcpPacket::Rr { ssrc: 1, reports: too_many }.write(&mut Vec::new()), Err(RtcpError::TooMany(32)));
        // Out-of-range loss is clamped to the 24-bit field.
        let mut out = Vec::new();
        RtcpPacket::Rr { ssrc: 1, reports: vec![ReportBlock { cumulative_lost: -9_000_000, ..block() }] }
            .write(&mut out)
            .unwrap();
        match &parse_compound(&out).unwrap()[0] {
            RtcpPacket::Rr { reports, .. } => assert_eq!(reports[0].cumulative_lost, -0x80_0000),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn compounds_failing_rfc3550_validity_checks_are_refused_and_damage_never_panics() {
        assert_eq!(parse_compound(&GOLDEN_RR_BYE[8..]), Err(RtcpError::NotReportFirst(PT_BYE)));
        let mut v = GOLDEN_RR_BYE.to_vec();
        v[0] = 0x40;
        assert_eq!(parse_compound(&v), Err(RtcpError::BadVersion(1)));
        // Padding on the first of two packets is invalid.
        let mut v = GOLDEN_RR_BYE.to_vec();
        v[0] |= 0x20;
        assert_eq!(parse_compound(&v), Err(RtcpError::BadPadding));
        // Padding on the last packet is removed.
        let mut v = GOLDEN_RR_BYE.to_vec();
        v[8] |= 0x20;
        v[23] = 3; // last 3 bytes are padding: reason "done" still fits
        assert!(parse_compound(&v).is_ok());
        // RC larger than the blocks present.
        let mut v = GOLDEN_RR_BYE.to_vec();
        v[0] = 0x82;
        assert_eq!(parse_compound(&v), Err(RtcpError::BadCount));
        assert!(parse_compound(&[]).is_err());
        // Truncations and byte flips never panic.
        for n in 0..GOLDEN_SR_SDES.len() {
            let _ = parse_compound(&GOLDEN_SR_SDES[..n]);
        }
        for i in 0..GOLDEN_SR_SDES.len() {
            for b in [0x00, 0xFF, 0x9F, 0x81] {
                let mut v = GOLDEN_SR_SDES.to_vec();
                v[i] = b;
                let _ = parse_compound(&v);
            }
        }
    }

    #[test]
    fn round_trip_time_is_derived_from_lsr_and_dlsr() {
        let sr_ntp: u64 = 0xE800_0010_0000_0000; // SR sent at t
        let lsr = ntp_middle(sr_ntp);
        let dlsr = to_dlsr(Duration::from_millis(250));
        assert_eq!(dlsr, 16_384);
        // The RR arrives 300 ms after the SR was sent: RTT = 50 ms.
        let arrival = sr_ntp + (300u64 << 32) / 1000;
        let rtt = round_trip(arrival, &ReportBlock { lsr, dlsr, ..block() }).unwrap();
        assert!(rtt.as_micros().abs_diff(50_000) < 100, "{rtt:?}");
        assert_eq!(round_trip(arrival, &ReportBlock { lsr: 0, ..block() }), None);
    }
}
