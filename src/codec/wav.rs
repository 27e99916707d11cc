//! WAV prompt parsing from bytes: RIFF/WAVE with 8 kHz mono PCM16, mu-law or A-law
//! (also WAVE_FORMAT_EXTENSIBLE), decoded to PCM16. Bounded, errors not panics; the
//! caller reads the file, this module only looks at the bytes.

use super::g711::Law;
use super::SAMPLE_RATE;

/// Longest prompt accepted: 10 minutes at 8 kHz.
pub const MAX_SAMPLES: usize = 10 * 60 * SAMPLE_RATE as usize;
/// Most chunks looked at before giving up.
const MAX_CHUNKS: usize = 64;

/// The sample encoding a WAV file carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WavEncoding {
    Pcm16,
    G711(Law),
}

/// A decoded prompt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wav {
    pub encoding: WavEncoding,
    pub samples: Vec<i16>,
}

/// Why a WAV file was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WavError {
    NotRiff,
    NotWave,
    /// A chunk header or body runs past the end of the data.
    Truncated,
    MissingFmt,
    MissingData,
    /// A format tag other than PCM (1), A-law (6), mu-law (7) or extensible of those.
    UnsupportedFormat(u16),
    UnsupportedChannels(u16),
    UnsupportedRate(u32),
    UnsupportedBits(u16),
    TooLong(usize),
    TooManyChunks,
}

impl std::fmt::Display for WavError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WavError::NotRiff => write!(f, "not a RIFF file"),
            WavError::NotWave => write!(f, "RIFF file is not WAVE"),
            WavError::Truncated => write!(f, "WAV file is truncated"),
            WavError::MissingFmt => write!(f, "WAV file has no fmt chunk before its data"),
            WavError::MissingData => write!(f, "WAV file has no data chunk"),
            WavError::UnsupportedFormat(t) => write!(f, "WAV format tag {t:#06x} is not PCM, A-law or mu-law"),
            WavError::UnsupportedChannels(n) => write!(f, "WAV has {n} channels; prompts must be mono"),
            WavError::UnsupportedRate(r) => write!(f, "WAV rate is {r} Hz; prompts must be 8000 Hz"),
            WavError::UnsupportedBits(b) => write!(f, "WAV has {b} bits per sample for its format"),
            WavError::TooLong(n) => write!(f, "WAV holds {n} samples, more than {MAX_SAMPLES}"),
            WavError::TooManyChunks => write!(f, "WAV has more than {MAX_CHUNKS} chunks"),
        }
    }
}

impl std::error::Error for WavError {}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses and decodes a WAV file.
pub fn parse(bytes: &[u8]) -> Result<Wav, WavError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" {
        return Err(WavError::NotRiff);
    }
    if &bytes[8..12] != b"WAVE" {
        return Err(WavError::NotWave);
    }
    let mut encoding = None;
    let mut at = 12;
    for _ in 0..MAX_CHUNKS {
        if at + 8 > bytes.len() {
            return Err(if encoding.is_some() { WavError::MissingData } else { WavError::MissingFmt });
        }
        let id = &bytes[at..at + 4];
        let size = le32(bytes, at + 4) as usize;
        let body_start = at + 8;
        let available = bytes.len() - body_start;
        if id == b"data" {
            let enc = encoding.ok_or(WavError::MissingFmt)?;
            // Streaming writers leave the size at 0 or 0xFFFFFFFF: take what is there.
            let size = if size == 0 || size > available { available } else { size };
            let body = &bytes[body_start..body_start + size];
            return decode(enc, body);
        }
        if size > available {
            return Err(WavError::Truncated);
        }
        if id == b"fmt " {
            encoding = Some(parse_fmt(&bytes[body_start..body_start + size])?);
        }
        at = body_start + size + (size & 1); // chunks are padded to even length
    }
    Err(WavError::TooManyChunks)
}

fn parse_fmt(f: &[u8]) -> Result<WavEncoding, WavError> {
    if f.len() < 16 {
        return Err(WavError::Truncated);
    }
    let mut tag = le16(f, 0);
    let channels = le16(f, 2);
    let rate = le32(f, 4);
    let bits = le16(f, 14);
    if tag == 0xFFFE {
        // WAVE_FORMAT_EXTENSIBLE: the real tag is the first two bytes of the GUID.
        if f.len() < 40 {
            return Err(WavError::Truncated);
        }
        tag = le16(f, 24);
    }
    if channels != 1 {
        return Err(WavError::UnsupportedChannels(channels));
    }
    if rate != SAMPLE_RATE {
        return Err(WavError::UnsupportedRate(rate));
    }
    let (enc, want_bits) = match tag {
        1 => (WavEncoding::Pcm16, 16),
        6 => (WavEncoding::G711(Law::Alaw), 8),
        7 => (WavEncoding::G711(Law::Ulaw), 8),
        t => return Err(WavError::UnsupportedFormat(t)),
    };
    if bits != want_bits {
        return Err(WavError::UnsupportedBits(bits));
    }
    Ok(enc)
}

fn decode(encoding: WavEncoding, body: &[u8]) -> Result<Wav, WavError> {
    let n = match encoding {
        WavEncoding::Pcm16 => body.len() / 2,
        WavEncoding::G711(_) => body.len(),
    };
    if n > MAX_SAMPLES {
        return Err(WavError::TooLong(n));
    }
    let samples = match encoding {
        WavEncoding::Pcm16 => body.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect(),
        WavEncoding::G711(law) => body.iter().map(|&c| law.decode(c)).collect(),
    };
    Ok(Wav { encoding, samples })
}

/// Builds a canonical 44-byte-header WAV (for tests and recordings).
pub fn write_pcm16(samples: &[i16]) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut v = Vec::with_capacity(44 + samples.len() * 2);
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data_len).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&SAMPLE_RATE.to_le_bytes());
    v.extend_from_slice(&(SAMPLE_RATE * 2).to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        v.extend_from_slice(&s.to_le_bytes());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pcm16_wav_writes_its_golden_header_and_samples_and_parses_back() {
        let bytes = write_pcm16(&[0, 1, -1, i16::MAX, i16::MIN]);
        assert_eq!(&bytes[..12], b"RIFF\x2e\x00\x00\x00WAVE");
        assert_eq!(&bytes[20..24], &[1, 0, 1, 0]);
        assert_eq!(&bytes[24..28], &8000u32.to_le_bytes());
        assert_eq!(&bytes[44..], &[0, 0, 1, 0, 0xFF, 0xFF, 0xFF, 0x7F, 0x00, 0x80]);
        let w = parse(&bytes).unwrap();
        assert_eq!(w, Wav { encoding: WavEncoding::Pcm16, samples: vec![0, 1, -1, i16::MAX, i16::MIN] });
    }

    fn g711_file(tag: u16, extra_chunk: bool, extensible: bool, data: &[u8]) -> Vec<u8> {
        let mut fmt = Vec::new();
        fmt.extend_from_slice(&(if extensible { 0xFFFEu16 } else { tag }).to_le_bytes());
        fmt.extend_from_slice(&1u16.to_le_bytes());
        fmt.extend_from_slice(&8000u32.to_le_bytes());
        fmt.extend_from_slice(&8000u32.to_le_bytes());
        fmt.extend_from_slice(&1u16.to_le_bytes());
        fmt.extend_from_slice(&8u16.to_le_bytes());
        fmt.extend_from_slice(&(if extensible { 22u16 } else { 0 }).to_le_bytes());
        if extensible {
            fmt.extend_from_slice(&8u16.to_le_bytes());
            fmt.extend_from_slice(&4u32.to_le_bytes());
            fmt.extend_from_slice(&tag.to_le_bytes());
            fmt.extend_from_slice(&[0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71]);
        }
        let mut v = b"RIFF\0\0\0\0WAVE".to_vec();
        v.extend_from_slice(b"fmt ");
        v.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
        v.extend_from_slice(&fmt);
        if extra_chunk {
            v.extend_from_slice(b"LIST\x03\x00\x00\x00abc\x00"); // odd size, padded
        }
        v.extend_from_slice(b"data");
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn g711_wavs_in_extensible_form_and_with_odd_chunks_decode_to_their_samples() {
        let w = parse(&g711_file(7, true, false, &[0xFF, 0x80, 0x00])).unwrap();
        assert_eq!(w, Wav { encoding: WavEncoding::G711(Law::Ulaw), samples: vec![0, 32124, -32124] });
        let w = parse(&g711_file(6, false, true, &[0xD5, 0xAA])).unwrap();
        assert_eq!(w, Wav { encoding: WavEncoding::G711(Law::Alaw), samples: vec![8, 32256] });
    }

    #[test]
    fn bad_wavs_are_refused_with_their_reason_and_damage_never_panics() {
        assert_eq!(parse(b"RIFX"), Err(WavError::NotRiff));
        assert_eq!(parse(b"RIFF\0\0\0\0AVI "), Err(WavError::NotWave));
        assert_eq!(parse(b"RIFF\0\0\0\0WAVE"), Err(WavError::MissingFmt));
        let mut stereo = write_pcm16(&[0; 4]);
        stereo[22] = 2;
        assert_eq!(parse(&stereo), Err(WavError::UnsupportedChannels(2)));
        let mut cd = write_pcm16(&[0; 4]);
        cd[24..28].copy_from_slice(&44_100u32.to_le_bytes());
        assert_eq!(parse(&cd), Err(WavError::UnsupportedRate(44_100)));
        let mut float = write_pcm16(&[0; 4]);
        float[20] = 3;
        assert_eq!(parse(&float), Err(WavError::UnsupportedFormat(3)));
        let mut bits8 = write_pcm16(&[0; 4]);
        bits8[34] = 8;
        assert_eq!(parse(&bits8), Err(WavError::UnsupportedBits(8)));
        let mut no_data = write_pcm16(&[]);
        no_data.truncate(36);
        assert_eq!(parse(&no_data), Err(WavError::MissingData));
        // A data size past the end (streaming writer) takes what is there.
        let mut stream = write_pcm16(&[5, 6]);
        stream[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&stream).unwrap().samples, vec![5, 6]);
        let long = g711_file(7, false, false, &vec![0xFF; MAX_SAMPLES + 1]);
        assert_eq!(parse(&long), Err(WavError::TooLong(MAX_SAMPLES + 1)));
        let good = g711_file(6, true, true, &[1, 2, 3, 4]);
        for n in 0..good.len() {
            let _ = parse(&good[..n]);
        }
        for i in 0..good.len() {
            let mut v = good.clone();
            v[i] ^= 0xFF;
            let _ = parse(&v);
        }
    }
}
