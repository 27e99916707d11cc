//! RFC 3550 RTP: header parse and build (bounded, errors not panics), and per-source
//! receive statistics: sequence tracking with wrap (A.1), loss (A.3) and interarrival
//! jitter (A.8), with arrival time passed in. Owns no socket and reads no clock.

use super::rtcp::ReportBlock;
use crate::core::Time;

pub const RTP_VERSION: u8 = 2;
/// Fixed header length.
pub const HEADER_LEN: usize = 12;
/// Most contributing sources a header can carry (4-bit CC).
pub const MAX_CSRC: usize = 15;

/// Why an RTP packet was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtpError {
    /// Shorter than the header it announces.
    TooShort {
        needed: usize,
        got: usize,
    },
    BadVersion(u8),
    /// Padding count of zero or longer than the packet.
    BadPadding(u8),
    /// Building: more than 15 CSRCs.
    TooManyCsrc(usize),
    /// Building: extension data not a whole number of 32-bit words, or too long.
    BadExtension(usize),
}

impl std::fmt::Display for RtpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RtpError::TooShort { needed, got } => write!(f, "RTP packet too short: need {needed} bytes, got {got}"),
            RtpError::BadVersion(v) => write!(f, "RTP version {v}, expected 2"),
            RtpError::BadPadding(p) => write!(f, "RTP padding count {p} is invalid"),
            RtpError::TooManyCsrc(n) => write!(f, "{n} CSRCs, at most 15"),
            RtpError::BadExtension(n) => write!(f, "RTP extension of {n} bytes is not whole 32-bit words"),
        }
    }
}

impl std::error::Error for RtpError {}

/// The RTP header fields (RFC 3550 section 5.1) other than version, P, X and CC,
/// which follow from the packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub csrc: heapless::Vec<u32, MAX_CSRC>,
}

/// A header extension (section 5.3.1): a 16-bit profile word and whole 32-bit words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpExtension<'a> {
    pub profile: u16,
    pub data: &'a [u8],
}

/// A parsed packet borrowing the datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub header: RtpHeader,
    pub extension: Option<RtpExtension<'a>>,
    /// The payload, without padding.
    pub payload: &'a [u8],
    /// Padding bytes that followed the payload (0 when P was clear).
    pub padding: u8,
}

fn need(buf: &[u8], n: usize) -> Result<(), RtpError> {
    if buf.len() < n {
        Err(RtpError::TooShort { needed: n, got: buf.len() })
    } else {
        Ok(())
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses one RTP datagram.
pub fn parse(buf: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    need(buf, HEADER_LEN)?;
    let version = buf[0] >> 6;
    if version != RTP_VERSION {
        return Err(RtpError::BadVersion(version));
    }
    let has_padding = buf[0] & 0x20 != 0;
    let has_ext = buf[0] & 0x10 != 0;
    let cc = (buf[0] & 0x0F) as usize;
    let mut at = HEADER_LEN + 4 * cc;
    need(buf, at)?;
    let mut csrc = heapless::Vec::new();
    for i in 0..cc {
        // cc <= 15 = capacity, so this cannot fail.
        let _ = csrc.push(be32(buf, HEADER_LEN + 4 * i));
    }
    let extension = if has_ext {
        need(buf, at + 4)?;
        let profile = u16::from_be_bytes([buf[at], buf[at + 1]]);
        let words = u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as usize;
        let end = at + 4 + 4 * words;
        need(buf, end)?;
        let ext = RtpExtension { profile, data: &buf[at + 4..end] };
        at = end;
        Some(ext)
    } else {
        None
    };
    let mut end = buf.len();
    let mut padding = 0;
    if has_padding {
        padding = buf[buf.len() - 1];
        if padding == 0 || buf.len() - at < padding as usize {
            return Err(RtpError::BadPadding(padding));
        }
        end -= padding as usize;
    }
    Ok(RtpPacket {
        header: RtpHeader {
            marker: buf[1] & 0x80 != 0,
            payload_type: buf[1] & 0x7F,
            sequence: u16::from_be_bytes([buf[2], buf[3]]),
            timestamp: be32(buf, 4),
            ssrc: be32(buf, 8),
            csrc,
        },
        extension,
        payload: &buf[at..end],
        padding,
    })
}

impl RtpHeader {
    /// Appends a whole packet to `out`: this header, an optional extension, the
    /// payload and `padding` bytes of padding (0 for none; the last byte holds the
    /// count). On error nothing is appended.
    pub fn write(
        &self,
        extension: Option<RtpExtension<'_>>,
        payload: &[u8],
        padding: u8,
        out: &mut Vec<u8>,
    ) -> Result<(), RtpError> {
        if let Some(e) = &extension {
            if e.data.len() % 4 != 0 || e.data.len() / 4 > usize::from(u16::MAX) {
                return Err(RtpError::BadExtension(e.data.len()));
            }
        }
        let cc = self.csrc.len();
        out.push((RTP_VERSION << 6) | (u8::from(padding > 0) << 5) | (u8::from(extension.is_some()) << 4) | cc as u8);
        out.push((u8::from(self.marker) << 7) | (self.payload_type & 0x7F));
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        for c in &self.csrc {
            out.extend_from_slice(&c.to_be_bytes());
        }
        if let Some(e) = extension {
            out.extend_from_slice(&e.profile.to_be_bytes());
            out.extend_from_slice(&((e.data.len() / 4) as u16).to_be_bytes());
            out.extend_from_slice(e.data);
        }
        out.extend_from_slice(payload);
        if padding > 0 {
            out.extend(std::iter::repeat_n(0, padding as usize - 1));
            out.push(padding);
        }
        Ok(())
    }

    /// A packet with no extension or padding, as a new buffer.
    pub fn to_packet(&self, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER_LEN + 4 * self.csrc.len() + payload.len());
        // No extension and no padding: cannot fail.
        let _ = self.write(None, payload, 0, &mut v);
        v
    }
}

const RTP_SEQ_MOD: u32 = 1 << 16;
const MAX_DROPOUT: u32 = 3000;
const MAX_MISORDER: u32 = 100;
const MIN_SEQUENTIAL: u32 = 2;

/// What `ReceiveStats::update` made of a packet's sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqVerdict {
    /// In sequence, or a tolerable reorder/duplicate: use it.
    Valid,
    /// The source is still on probation (RFC 3550 A.1): not yet valid.
    Probation,
    /// A large jump; valid only if the next packet confirms it (sender restarted).
    Jump,
}

/// Per-source receive statistics, RFC 3550 appendix A.1, A.3 and A.8.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReceiveStats {
    clock_rate: u32,
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    probation: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    transit: Option<u32>,
    /// Interarrival jitter in timestamp units, times 16 (A.8 integer form).
    jitter16: u32,
}

impl ReceiveStats {
    /// Statistics for a source first heard with sequence `seq`, whose timestamps run
    /// at `clock_rate` Hz. The first packet is counted through `update` as well.
    pub fn new(seq: u16, clock_rate: u32) -> Self {
        let mut s = ReceiveStats {
            clock_rate: clock_rate.max(1),
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: 0,
            probation: MIN_SEQUENTIAL,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            transit: None,
            jitter16: 0,
        };
        s.init_seq(seq);
        s.max_seq = seq.wrapping_sub(1);
        s
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
    }

    /// Accounts one received packet (A.1 `update_seq`, A.8 jitter).
    pub fn update(&mut self, seq: u16, timestamp: u32, arrival: Time) -> SeqVerdict {
        let udelta = u32::from(seq.wrapping_sub(self.max_seq));
        let verdict = if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.received += 1;
                    SeqVerdict::Valid
                } else {
                    SeqVerdict::Probation
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
                SeqVerdict::Probation
            }
        } else if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(RTP_SEQ_MOD);
            }
            self.max_seq = seq;
            self.received += 1;
            SeqVerdict::Valid
        } else if udelta <= RTP_SEQ_MOD - MAX_MISORDER {
            if u32::from(seq) == self.bad_seq {
                self.init_seq(seq);
                self.transit = None;
                self.received += 1;
                SeqVerdict::Valid
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
                return SeqVerdict::Jump;
            }
        } else {
            self.received += 1; // duplicate or reordered
            SeqVerdict::Valid
        };
        // A.8: transit time in timestamp units; only differences matter.
        let arrival_units = (u128::from(arrival.as_micros()) * u128::from(self.clock_rate) / 1_000_000) as u32;
        let transit = arrival_units.wrapping_sub(timestamp);
        if let Some(prev) = self.transit {
            let d = (transit.wrapping_sub(prev) as i32).unsigned_abs();
            // jitter += (|d| - jitter) / 16, kept scaled by 16.
            self.jitter16 = self.jitter16.wrapping_add(d).wrapping_sub((self.jitter16 + 8) >> 4);
        }
        self.transit = Some(transit);
        verdict
    }

    /// Highest sequence number received, extended with the wrap count.
    pub fn extended_max(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    /// Packets expected since the first valid one.
    pub fn expected(&self) -> u32 {
        self.extended_max().wrapping_sub(self.base_seq).wrapping_add(1)
    }

    pub fn received(&self) -> u32 {
        self.received
    }

    /// Cumulative packets lost (duplicates can make it negative), clamped to the
    /// 24-bit signed field of a report block.
    pub fn lost(&self) -> i32 {
        let lost = i64::from(self.expected()) - i64::from(self.received);
        lost.clamp(-0x80_0000, 0x7F_FFFF) as i32
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> u32 {
        self.jitter16 >> 4
    }

    /// Interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f32 {
        self.jitter16 as f32 / 16.0 * 1000.0 / self.clock_rate as f32
    }

    /// A report block for this source (A.3 fraction lost since the last one), with
    /// LSR/DLSR supplied by the caller from the source's last sender report.
    pub fn report_block(&mut self, ssrc: u32, lsr: u32, dlsr: u32) -> ReportBlock {
        let expected = self.expected();
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        self.expected_prior = expected;
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: self.lost(),
            ext_highest_seq: self.extended_max(),
            jitter: self.jitter(),
            lsr,
            dlsr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN_SIMPLE: [u8; 16] = [
        0x80, 0x88, 0x12, 0x34, 0x00, 0x00, 0x0F, 0xA0, 0xDE, 0xAD, 0xBE, 0xEF, // header
        0xD5, 0xD5, 0x55, 0x2A, // payload
    ];

    #[test]
    fn a_simple_packet_writes_and_parses_as_its_golden_bytes() {
        let h = RtpHeader {
            marker: true,
            payload_type: 8,
            sequence: 0x1234,
            timestamp: 4000,
            ssrc: 0xDEAD_BEEF,
            ..Default::default()
        };
        assert_eq!(h.to_packet(&[0xD5, 0xD5, 0x55, 0x2A]), GOLDEN_SIMPLE);
        let p = parse(&GOLDEN_SIMPLE).unwrap();
        assert_eq!(p.header, h);
        assert_eq!(p.payload, &[0xD5, 0xD5, 0x55, 0x2A]);
        assert_eq!((p.extension, p.padding), (None, 0));
    }

    #[test]
    fn csrcs_extension_and_padding_round_trip_golden_and_an_unaligned_extension_fails() {
        let golden: Vec<u8> = vec![
            0xB2, 0x00, 0xFF, 0xFF, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // V=2 P X CC=2
            0x00, 0x00, 0x00, 0x0A, 0x00, 0x00, 0x00, 0x0B, // CSRCs
            0xBE, 0xDE, 0x00, 0x01, 0x10, 0xAA, 0x00, 0x00, // extension: 1 word
            0x01, 0x02, 0x03, // payload
            0x00, 0x00, 0x03, // 3 bytes of padding
        ];
        let mut csrc = heapless::Vec::new();
        csrc.push(10).unwrap();
        csrc.push(11).unwrap();
        let h = RtpHeader { marker: false, payload_type: 0, sequence: 0xFFFF, timestamp: 0x10000, ssrc: 1, csrc };
        let ext = RtpExtension { profile: 0xBEDE, data: &[0x10, 0xAA, 0, 0] };
        let mut out = Vec::new();
        h.write(Some(ext), &[1, 2, 3], 3, &mut out).unwrap();
        assert_eq!(out, golden);
        let p = parse(&golden).unwrap();
        assert_eq!(p.header, h);
        assert_eq!(p.extension, Some(ext));
        assert_eq!(p.payload, &[1, 2, 3]);
        assert_eq!(p.padding, 3);
        assert_eq!(
            h.write(Some(RtpExtension { profile: 1, data: &[1, 2] }), &[], 0, &mut out),
            Err(RtpError::BadExtension(2))
        );
    }

    #[test]
    fn malformed_packets_are_errors_not_panics() {
        assert_eq!(parse(&[0x80; 11]), Err(RtpError::TooShort { needed: 12, got: 11 }));
        assert_eq!(parse(&[0x40; 12]), Err(RtpError::BadVersion(1)));
        let mut p = GOLDEN_SIMPLE.to_vec();
        p[0] = 0x81; // one CSRC: the 4 payload bytes become it
        assert_eq!(parse(&p).unwrap().payload, &[] as &[u8]);
        p[0] = 0x82;
        assert_eq!(parse(&p), Err(RtpError::TooShort { needed: 20, got: 16 }));
        p[0] = 0x90; // the payload read as an extension header announces 0x552A words
        assert_eq!(parse(&p), Err(RtpError::TooShort { needed: 16 + 4 * 0x552A, got: 16 }));
        p[0] = 0xA0;
        p[15] = 0; // padding count 0
        assert_eq!(parse(&p), Err(RtpError::BadPadding(0)));
        p[15] = 5; // more padding than payload
        assert_eq!(parse(&p), Err(RtpError::BadPadding(5)));
        // Every truncation and every first byte of a valid packet: never a panic.
        let mut full = Vec::new();
        RtpHeader { ssrc: 9, ..Default::default() }
            .write(Some(RtpExtension { profile: 1, data: &[0; 8] }), &[7; 20], 4, &mut full)
            .unwrap();
        for n in 0..full.len() {
            let _ = parse(&full[..n]);
        }
        for b in 0..=255u8 {
            full[0] = b;
            let _ = parse(&full);
        }
    }

    fn t(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    #[test]
    fn a_source_is_valid_after_probation_and_report_blocks_count_loss_per_interval() {
        let mut s = ReceiveStats::new(100, 8000);
        assert_eq!(s.update(100, 0, t(0)), SeqVerdict::Probation);
        assert_eq!(s.update(101, 160, t(20)), SeqVerdict::Valid);
        // 102..=110 arrive except 105 and 106.
        for seq in 102..=110u16 {
            if seq != 105 && seq != 106 {
                assert_eq!(s.update(seq, u32::from(seq - 100) * 160, t(u64::from(seq - 100) * 20)), SeqVerdict::Valid);
            }
        }
        assert_eq!(s.expected(), 10); // base is 101 after probation
        assert_eq!(s.lost(), 2);
        let rb = s.report_block(7, 0x1234_5678, 0x0001_0000);
        assert_eq!(rb.fraction_lost, 51); // (2 << 8) / 10
        assert_eq!(rb.cumulative_lost, 2);
        assert_eq!(rb.ext_highest_seq, 110);
        assert_eq!((rb.lsr, rb.dlsr), (0x1234_5678, 0x0001_0000));
        // Next interval without loss: fraction 0, cumulative unchanged.
        for seq in 111..=120u16 {
            s.update(seq, u32::from(seq - 100) * 160, t(u64::from(seq - 100) * 20));
        }
        let rb = s.report_block(7, 0, 0);
        assert_eq!((rb.fraction_lost, rb.cumulative_lost), (0, 2));
    }

    #[test]
    fn the_extended_sequence_counts_across_the_wrap_and_a_duplicate_makes_loss_negative() {
        let mut s = ReceiveStats::new(65534, 8000);
        for (i, seq) in [65534u16, 65535, 0, 1, 1, 2].iter().enumerate() {
            s.update(*seq, i as u32 * 160, t(i as u64 * 20));
        }
        assert_eq!(s.extended_max(), 65536 + 2);
        assert_eq!(s.expected(), 4);
        assert_eq!(s.received(), 5);
        assert_eq!(s.lost(), -1); // a duplicate
    }

    #[test]
    fn large_jump_needs_confirmation() {
        let mut s = ReceiveStats::new(10, 8000);
        for seq in 10..20u16 {
            s.update(seq, 0, t(0));
        }
        assert_eq!(s.update(40_000, 0, t(0)), SeqVerdict::Jump);
        assert_eq!(s.extended_max(), 19);
        assert_eq!(s.update(40_001, 0, t(0)), SeqVerdict::Valid); // sender restarted
        assert_eq!(s.extended_max(), 40_001);
        assert_eq!(s.expected(), 1);
    }

    #[test]
    fn jitter_matches_rfc_formula() {
        // Packets every 20 ms of media; arrivals alternate +0 / +10 ms late.
        let mut s = ReceiveStats::new(0, 8000);
        let mut j = 0.0f64;
        let mut prev_transit: Option<f64> = None;
        for i in 0..400u64 {
            let arrival_ms = i * 20 + if i % 2 == 1 { 10 } else { 0 };
            s.update(i as u16, (i * 160) as u32, t(arrival_ms));
            let transit = arrival_ms as f64 * 8.0 - (i * 160) as f64;
            if let Some(p) = prev_transit {
                j += ((transit - p).abs() - j) / 16.0;
            }
            prev_transit = Some(transit);
        }
        // |D| = 80 units each time: J converges to 80 (10 ms).
        assert!((f64::from(s.jitter()) - j).abs() <= 1.0, "{} vs {j}", s.jitter());
        assert!((s.jitter_ms() - 10.0).abs() < 0.2, "{}", s.jitter_ms());
        // Perfectly regular arrival: jitter decays toward 0.
        for i in 400..800u64 {
            s.update(i as u16, (i * 160) as u32, t(i * 20 + 5));
        }
        assert!(s.jitter() <= 1, "{}", s.jitter());
    }
}
