//! G.711 mu-law and A-law companding (ITU-T G.711), bit-exact with the ITU-T G.191
//! reference implementation: decode by 256-entry tables, encode by segment search.
//! Owns nothing but these pure conversions.
//!
//! PCM16 samples are the G.711 uniform code left-justified (14 bits for mu-law,
//! 13 bits for A-law). As in G.191 (and spandsp, Asterisk), the low bits below the
//! law's resolution are truncated, and a negative sample `x` is quantised by the
//! magnitude of its ones' complement `!x`: sample `x` stands for the interval
//! `[x, x+1)`, so the quantiser is exactly symmetric about -0.5 and its decision
//! levels fall on the G.711 table values. (SoX rounds to 14/13 bits first instead;
//! see docs/media.md and tests/media_audio.rs.)

/// mu-law bias in PCM16 units (33 in 14-bit units).
const ULAW_BIAS: i32 = 0x84;

const fn ulaw_decode_const(code: u8) -> i16 {
    let u = !code;
    let t = (((u & 0x0F) as i32) << 3) + ULAW_BIAS;
    let t = t << ((u & 0x70) >> 4);
    (if u & 0x80 != 0 { ULAW_BIAS - t } else { t - ULAW_BIAS }) as i16
}

const fn alaw_decode_const(code: u8) -> i16 {
    let a = code ^ 0x55;
    let seg = ((a & 0x70) >> 4) as i32;
    let mut t = ((a & 0x0F) as i32) << 4;
    t = match seg {
        0 => t + 8,
        1 => t + 0x108,
        _ => (t + 0x108) << (seg - 1),
    };
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

const fn build_table(alaw: bool) -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = if alaw { alaw_decode_const(i as u8) } else { ulaw_decode_const(i as u8) };
        i += 1;
    }
    table
}

/// mu-law code -> PCM16.
pub static ULAW_TO_LINEAR: [i16; 256] = build_table(false);
/// A-law code -> PCM16.
pub static ALAW_TO_LINEAR: [i16; 256] = build_table(true);

/// Decodes one mu-law code.
#[inline]
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_TO_LINEAR[code as usize]
}

/// Decodes one A-law code.
#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_TO_LINEAR[code as usize]
}

/// Encodes one PCM16 sample to mu-law.
#[inline]
pub fn ulaw_encode(x: i16) -> u8 {
    let x = i32::from(x);
    // Magnitude (ones' complement for negatives) plus bias; at most 0x8083.
    let (biased, mask) = if x < 0 { (ULAW_BIAS - 1 - x, 0x7F) } else { (ULAW_BIAS + x, 0xFF) };
    // Segment = position of the top bit above bit 7.
    let seg = (31 - (biased | 0xFF).leading_zeros()) as i32 - 7;
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let code = (seg << 4) | ((biased >> (seg + 3)) & 0x0F);
    (code as u8) ^ mask
}

/// Encodes one PCM16 sample to A-law.
#[inline]
pub fn alaw_encode(x: i16) -> u8 {
    let x = i32::from(x);
    let (mag, mask) = if x < 0 { (-x - 1, 0x55) } else { (x, 0xD5) };
    // mag <= 32767: top bit <= 14, so seg <= 7.
    let seg = (31 - (mag | 0xFF).leading_zeros()) as i32 - 7;
    let shift = if seg == 0 { 4 } else { seg + 3 };
    let code = (seg << 4) | ((mag >> shift) & 0x0F);
    (code as u8) ^ mask
}

/// Which G.711 law a payload uses (RTP static payload types 0 and 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Law {
    /// PCMU, RTP payload type 0.
    Ulaw,
    /// PCMA, RTP payload type 8.
    Alaw,
}

impl Law {
    /// The static RTP payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        match self {
            Law::Ulaw => 0,
            Law::Alaw => 8,
        }
    }

    /// The law for a static RTP payload type, if it is one.
    pub fn from_payload_type(pt: u8) -> Option<Law> {
        match pt {
            0 => Some(Law::Ulaw),
            8 => Some(Law::Alaw),
            _ => None,
        }
    }

    /// The code G.711 sends for silence (PCM 0).
    pub fn silence(self) -> u8 {
        match self {
            Law::Ulaw => 0xFF,
            Law::Alaw => 0xD5,
        }
    }

    #[inline]
    pub fn encode(self, x: i16) -> u8 {
        match self {
            Law::Ulaw => ulaw_encode(x),
            Law::Alaw => alaw_encode(x),
        }
    }

    #[inline]
    pub fn decode(self, code: u8) -> i16 {
        match self {
            Law::Ulaw => ulaw_decode(code),
            Law::Alaw => alaw_decode(code),
        }
    }

    /// Encodes `pcm` into `out`, one code per sample; stops at the shorter of the two.
    /// Returns how many were written.
    pub fn encode_into(self, pcm: &[i16], out: &mut [u8]) -> usize {
        let n = pcm.len().min(out.len());
        for (o, &x) in out[..n].iter_mut().zip(&pcm[..n]) {
            *o = self.encode(x);
        }
        n
    }

    /// Decodes `codes` into `out`; stops at the shorter of the two. Returns the count.
    pub fn decode_into(self, codes: &[u8], out: &mut [i16]) -> usize {
        let table = match self {
            Law::Ulaw => &ULAW_TO_LINEAR,
            Law::Alaw => &ALAW_TO_LINEAR,
        };
        let n = codes.len().min(out.len());
        for (o, &c) in out[..n].iter_mut().zip(&codes[..n]) {
            *o = table[c as usize];
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The reference below is built from the G.711 tables, not from the code above:
    // decision intervals per segment and the reconstruction value at each interval's
    // midpoint, then scaled to PCM16.

    /// mu-law (G.711 Table 2), 14-bit magnitude units: segment c covers
    /// [START[c], START[c] + 16 * step) with step = 2 << c; the first interval of
    /// segment 0 is [-1, 1) so that it is centred on 0.
    const U_START: [i32; 8] = [-1, 31, 95, 223, 479, 991, 2015, 4063];

    fn ref_ulaw_decode(code: u8) -> i16 {
        let positive = code & 0x80 != 0;
        let c = 7 - ((code >> 4) & 7) as i32;
        let s = 15 - (code & 0x0F) as i32;
        let step = 2 << c;
        let lo = U_START[c as usize] + s * step;
        let mid = lo + step / 2; // reconstruction value
        let v = mid * 4;
        (if positive { v } else { -v }) as i16
    }

    fn ref_ulaw_encode(x: i16) -> u8 {
        let x = i32::from(x);
        let (positive, m) = if x >= 0 { (true, x >> 2) } else { (false, (-x - 1) >> 2) };
        let m = m.min(8158); // 8159 is the overload point
        let mut code = None;
        for c in 0..8 {
            let step = 2 << c;
            for s in 0..16 {
                let lo = U_START[c as usize] + s * step;
                if m >= lo.max(0) && m < lo + step {
                    code = Some(((7 - c) << 4 | (15 - s)) as u8);
                }
            }
        }
        code.expect("in range") | if positive { 0x80 } else { 0 }
    }

    /// A-law (G.711 Table 1), 12-bit magnitude units: segment 0 is [0, 32) step 2,
    /// segment c >= 1 is [32 << (c-1), 64 << (c-1)) with step 2 << (c-1).
    fn a_seg(c: i32) -> (i32, i32) {
        if c == 0 {
            (0, 2)
        } else {
            (32 << (c - 1), 2 << (c - 1))
        }
    }

    fn ref_alaw_decode(code: u8) -> i16 {
        let a = code ^ 0x55;
        let positive = a & 0x80 != 0;
        let (start, step) = a_seg(((a >> 4) & 7) as i32);
        let mid2 = 2 * (start + (a & 0x0F) as i32 * step) + step; // twice the midpoint
        let v = mid2 * 4; // 13-bit value scaled to PCM16 (x8), midpoint halves
        (if positive { v } else { -v }) as i16
    }

    fn ref_alaw_encode(x: i16) -> u8 {
        let x = i32::from(x);
        let (positive, m) = if x >= 0 { (true, x >> 3) } else { (false, (-x - 1) >> 3) };
        for c in 0..8 {
            let (start, step) = a_seg(c);
            for s in 0..16 {
                let lo = start + s * step;
                if m >= lo && m < lo + step {
                    let a = ((c << 4) | s) as u8 | if positive { 0x80 } else { 0 };
                    return a ^ 0x55;
                }
            }
        }
        unreachable!("12-bit magnitude below 4096")
    }

    #[test]
    fn zero_and_full_scale_encode_and_decode_to_their_g711_table_codes() {
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
    }

    #[test]
    fn all_codes_decode_to_reference() {
        for c in 0..=255u8 {
            assert_eq!(ulaw_decode(c), ref_ulaw_decode(c), "mu-law code {c:#04x}");
            assert_eq!(alaw_decode(c), ref_alaw_decode(c), "A-law code {c:#04x}");
        }
    }

    #[test]
    fn encode_inverts_decode() {
        for c in 0..=255u8 {
            let want = if c == 0x7F { 0xFF } else { c }; // mu-law's two zeros map to one
            assert_eq!(ulaw_encode(ulaw_decode(c)), want, "mu-law {c:#04x}");
            assert_eq!(alaw_encode(alaw_decode(c)), c, "A-law {c:#04x}");
        }
    }

    #[test]
    fn encode_all_pcm_matches_reference_quantiser() {
        for x in i16::MIN..=i16::MAX {
            assert_eq!(ulaw_encode(x), ref_ulaw_encode(x), "mu-law x={x}");
            assert_eq!(alaw_encode(x), ref_alaw_encode(x), "A-law x={x}");
        }
    }

    #[test]
    fn quantiser_is_monotonic_and_symmetric() {
        let mut prev_u = i16::MIN;
        let mut prev_a = i16::MIN;
        for x in i16::MIN..=i16::MAX {
            let u = ulaw_decode(ulaw_encode(x));
            let a = alaw_decode(alaw_encode(x));
            assert!(u >= prev_u && a >= prev_a, "monotonic at {x}");
            prev_u = u;
            prev_a = a;
            // x and its ones' complement quantise to opposite values.
            assert_eq!(u, -ulaw_decode(ulaw_encode(!x)), "mu-law symmetry at {x}");
            assert_eq!(a, -alaw_decode(alaw_encode(!x)), "A-law symmetry at {x}");
        }
    }

    #[test]
    fn slices_code_up_to_the_shorter_buffer_payload_types_map_back_and_silence_is_quiet() {
        let pcm = [0i16, 1000, -1000, 32767, -32768];
        for law in [Law::Ulaw, Law::Alaw] {
            let mut codes = [0u8; 5];
            assert_eq!(law.encode_into(&pcm, &mut codes), 5);
            let mut back = [0i16; 4];
            assert_eq!(law.decode_into(&codes, &mut back), 4);
            for (i, &b) in back.iter().enumerate() {
                assert!((i32::from(b) - i32::from(pcm[i])).abs() <= 1024, "{law:?} {i}");
            }
            assert_eq!(Law::from_payload_type(law.payload_type()), Some(law));
            assert_eq!(law.decode(law.silence()).abs(), if law == Law::Ulaw { 0 } else { 8 });
        }
        assert_eq!(Law::from_payload_type(18), None);
    }
}
