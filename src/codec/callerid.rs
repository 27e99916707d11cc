//! Caller ID on analog lines (CND / CLIP): the message, its FSK modulation, DTMF CLIP,
//! and the receiving side (an FSK demodulator and the message parser) for FXO ports.
//!
//! - **Messages**: SDMF (type 0x04: date, time and number) and MDMF (type 0x80, the
//!   "call setup" message of Bellcore GR-30 and ETSI EN 300 659-3: parameters 0x01 date
//!   and time, 0x02 number, 0x04 why the number is absent, 0x07 name, 0x08 why the name
//!   is absent), each closed by a checksum byte that makes the sum of all bytes 0.
//! - **FSK**: 1200 baud, Bell 202 (mark 1200 Hz, space 2200 Hz) or ITU-T V.23 (mark
//!   1300 Hz, space 2100 Hz), phase-continuous, at 8000 samples per second; a channel
//!   seizure of alternating bits, a mark signal, then each byte as a start bit, eight
//!   data bits (least significant first) and a stop bit.
//! - **DTMF CLIP**: the number between 'A' and 'C' (ETSI ES 200 778-1 annex); only a
//!   present number is sent this way.
//!
//! Everything here is bounded: a message is at most 255 bytes plus type, length and
//! checksum; the receiver keeps at most one message.

use std::fmt;

/// One of the message's fields: given, or absent and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    Value(String),
    /// Withheld by the caller ('P').
    Private,
    /// Not available, e.g. an international call ('O').
    Unavailable,
    /// Not in the message at all.
    Absent,
}

/// Month, day, hour, minute (local time of the sender).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerId {
    pub when: Option<Stamp>,
    pub number: Field,
    pub name: Field,
}

/// The longest number and name a message carries (ETSI's limits; Bell's are shorter).
pub const MAX_NUMBER: usize = 20;
pub const MAX_NAME: usize = 50;

const SDMF: u8 = 0x04;
const MDMF: u8 = 0x80;
const P_TIME: u8 = 0x01;
const P_NUMBER: u8 = 0x02;
const P_NUMBER_ABSENT: u8 = 0x04;
const P_NAME: u8 = 0x07;
const P_NAME_ABSENT: u8 = 0x08;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CidError {
    /// Fewer bytes than the header or the length byte says.
    Short,
    /// The bytes do not sum to zero.
    Checksum,
    UnknownType(u8),
    /// A field that cannot be sent or was received malformed.
    BadField(&'static str),
}

impl fmt::Display for CidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidError::Short => write!(f, "caller ID message cut short"),
            CidError::Checksum => write!(f, "caller ID checksum does not match"),
            CidError::UnknownType(t) => write!(f, "caller ID message type 0x{t:02x} unknown"),
            CidError::BadField(w) => write!(f, "caller ID {w}"),
        }
    }
}

fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)).wrapping_neg()
}

fn printable(s: &str, max: usize, what: &'static str) -> Result<(), CidError> {
    if s.is_empty() || s.len() > max || !s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(CidError::BadField(what));
    }
    Ok(())
}

fn stamp_text(t: &Stamp) -> Result<[u8; 8], CidError> {
    let ok = (1..=12).contains(&t.month) && (1..=31).contains(&t.day) && t.hour < 24 && t.minute < 60;
    if !ok {
        return Err(CidError::BadField("date and time out of range"));
    }
    let mut out = [0u8; 8];
    for (i, v) in [t.month, t.day, t.hour, t.minute].into_iter().enumerate() {
        out[2 * i] = b'0' + v / 10;
        out[2 * i + 1] = b'0' + v % 10;
    }
    Ok(out)
}

fn parse_stamp(b: &[u8]) -> Result<Stamp, CidError> {
    let bad = CidError::BadField("date and time malformed");
    if b.len() != 8 || !b.iter().all(u8::is_ascii_digit) {
        return Err(bad);
    }
    let two = |i: usize| (b[i] - b'0') * 10 + (b[i + 1] - b'0');
    let t = Stamp { month: two(0), day: two(2), hour: two(4), minute: two(6) };
    stamp_text(&t).map(|_| t).map_err(|_| bad)
}

/// The SDMF message (number only: a name is not carried; a withheld or unavailable
/// number is 'P' or 'O'), with its checksum.
pub fn encode_sdmf(m: &CallerId) -> Result<Vec<u8>, CidError> {
    let when = m.when.ok_or(CidError::BadField("date and time needed for SDMF"))?;
    let mut body = stamp_text(&when)?.to_vec();
    match &m.number {
        Field::Value(n) => {
            printable(n, MAX_NUMBER, "number empty, too long or not printable")?;
            body.extend_from_slice(n.as_bytes());
        }
        Field::Private => body.push(b'P'),
        Field::Unavailable | Field::Absent => body.push(b'O'),
    }
    Ok(frame(SDMF, body))
}

/// The MDMF message, with its checksum.
pub fn encode_mdmf(m: &CallerId) -> Result<Vec<u8>, CidError> {
    let mut body = Vec::new();
    let mut param = |code: u8, v: &[u8]| {
        body.push(code);
        body.push(v.len() as u8); // every value is at most 50 bytes
        body.extend_from_slice(v);
    };
    if let Some(t) = &m.when {
        param(P_TIME, &stamp_text(t)?);
    }
    for (field, code, absent, max, what) in [
        (&m.number, P_NUMBER, P_NUMBER_ABSENT, MAX_NUMBER, "number empty, too long or not printable"),
        (&m.name, P_NAME, P_NAME_ABSENT, MAX_NAME, "name empty, too long or not printable"),
    ] {
        match field {
            Field::Value(v) => {
                printable(v, max, what)?;
                param(code, v.as_bytes());
            }
            Field::Private => param(absent, b"P"),
            Field::Unavailable => param(absent, b"O"),
            Field::Absent => {}
        }
    }
    Ok(frame(MDMF, body))
}

fn frame(kind: u8, body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 3);
    out.push(kind);
    out.push(body.len() as u8); // at most 8 + 3 * 2 + 20 + 50 bytes
    out.extend_from_slice(&body);
    out.push(checksum(&out));
    out
}

/// How many bytes the message starting `bytes` has in all (type, length, body,
/// checksum), once its first two bytes are in.
pub fn message_len(bytes: &[u8]) -> Option<usize> {
    Some(usize::from(*bytes.get(1)?) + 3)
}

/// Parses a whole message (type, length, body, checksum).
pub fn parse(bytes: &[u8]) -> Result<CallerId, CidError> {
    let total = message_len(bytes).ok_or(CidError::Short)?;
    if bytes.len() < total {
        return Err(CidError::Short);
    }
    let msg = &bytes[..total];
    if checksum(&msg[..total - 1]) != msg[total - 1] {
        return Err(CidError::Checksum);
    }
    let body = &msg[2..total - 1];
    let text = |b: &[u8], max: usize, what: &'static str| -> Result<String, CidError> {
        let s = std::str::from_utf8(b).map_err(|_| CidError::BadField(what))?;
        printable(s, max, what)?;
        Ok(s.to_string())
    };
    let absence = |b: &[u8]| match b {
        b"P" => Ok(Field::Private),
        b"O" => Ok(Field::Unavailable),
        _ => Err(CidError::BadField("reason for absence malformed")),
    };
    match msg[0] {
        SDMF => {
            if body.len() < 9 {
                return Err(CidError::BadField("SDMF message too short"));
            }
            let when = Some(parse_stamp(&body[..8])?);
            let number = match &body[8..] {
                b"P" => Field::Private,
                b"O" => Field::Unavailable,
                n => Field::Value(text(n, MAX_NUMBER, "number malformed")?),
            };
            Ok(CallerId { when, number, name: Field::Absent })
        }
        MDMF => {
            let mut m = CallerId { when: None, number: Field::Absent, name: Field::Absent };
            let mut rest = body;
            while !rest.is_empty() {
                let (&code, after) = rest.split_first().ok_or(CidError::Short)?;
                let (&len, after) = after.split_first().ok_or(CidError::BadField("parameter without length"))?;
                let len = usize::from(len);
                if after.len() < len {
                    return Err(CidError::BadField("parameter longer than the message"));
                }
                let (v, next) = after.split_at(len);
                match code {
                    P_TIME => m.when = Some(parse_stamp(v)?),
                    P_NUMBER => m.number = Field::Value(text(v, MAX_NUMBER, "number malformed")?),
                    P_NUMBER_ABSENT => m.number = absence(v)?,
                    P_NAME => m.name = Field::Value(text(v, MAX_NAME, "name malformed")?),
                    P_NAME_ABSENT => m.name = absence(v)?,
                    _ => {} // other parameters (call type, redirecting number) are skipped
                }
                rest = next;
            }
            Ok(m)
        }
        t => Err(CidError::UnknownType(t)),
    }
}

/// The DTMF digits of a DTMF CLIP message for a present number; None otherwise (only
/// digits 0-9 can be sent).
pub fn dtmf_clip(number: &Field) -> Option<String> {
    match number {
        Field::Value(n) if !n.is_empty() && n.len() <= MAX_NUMBER && n.bytes().all(|b| b.is_ascii_digit()) => Some(format!("A{n}C")),
        _ => None,
    }
}

/// Parses DTMF CLIP digits ('A' or 'D', the number, 'C').
pub fn parse_dtmf_clip(digits: &str) -> Option<Field> {
    let inner = digits.strip_prefix('A').or_else(|| digits.strip_prefix('D'))?.strip_suffix('C')?;
    (!inner.is_empty() && inner.len() <= MAX_NUMBER && inner.bytes().all(|b| b.is_ascii_digit())).then(|| Field::Value(inner.to_string()))
}

/// The FSK flavour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsk {
    /// Bell 202: mark 1200 Hz, space 2200 Hz (North America).
    Bell202,
    /// ITU-T V.23: mark 1300 Hz, space 2100 Hz (ETSI, BT).
    V23,
}

impl Fsk {
    /// (mark, space) in Hz.
    pub fn tones(self) -> (f32, f32) {
        match self {
            Fsk::Bell202 => (1200.0, 2200.0),
            Fsk::V23 => (1300.0, 2100.0),
        }
    }
}

pub const SAMPLE_RATE: u32 = 8000;
pub const BAUD: u32 = 1200;

/// How the transmission starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preamble {
    /// Alternating bits (0101...), 300 on hook; 0 during a call (call waiting).
    pub seizure_bits: u32,
    /// Mark bits before the message: 180 on hook, 80 during a call.
    pub mark_bits: u32,
}

impl Preamble {
    pub const ON_HOOK: Preamble = Preamble { seizure_bits: 300, mark_bits: 180 };
    pub const OFF_HOOK: Preamble = Preamble { seizure_bits: 0, mark_bits: 80 };
}

/// Appends the FSK signal for `message` (already framed, checksum included) to `out`:
/// linear 16-bit samples at 8 kHz, peak `amplitude`.
pub fn modulate(fsk: Fsk, pre: Preamble, message: &[u8], amplitude: i16, out: &mut Vec<i16>) {
    let mut bits: Vec<bool> = Vec::with_capacity((pre.seizure_bits + pre.mark_bits) as usize + message.len() * 10 + 2);
    bits.extend((0..pre.seizure_bits).map(|i| i % 2 == 1));
    bits.extend((0..pre.mark_bits).map(|_| true));
    for b in message {
        bits.push(false);
        bits.extend((0..8).map(|i| b >> i & 1 == 1));
        bits.push(true);
    }
    // Two mark bits after the last stop bit, so a receiver's filters see it whole.
    bits.extend([true, true]);
    let (mark, space) = fsk.tones();
    let n = (bits.len() as u64 * u64::from(SAMPLE_RATE)).div_ceil(u64::from(BAUD));
    let mut phase = 0.0f64;
    let amp = f64::from(amplitude);
    for i in 0..n {
        let bit = bits[(i * u64::from(BAUD) / u64::from(SAMPLE_RATE)) as usize];
        let f = if bit { mark } else { space };
        out.push((amp * phase.sin()).round() as i16);
        phase += 2.0 * std::f64::consts::PI * f64::from(f) / f64::from(SAMPLE_RATE);
        if phase > 2.0 * std::f64::consts::PI {
            phase -= 2.0 * std::f64::consts::PI;
        }
    }
}

/// Samples per bit, as a fraction.
const SPB: f32 = SAMPLE_RATE as f32 / BAUD as f32;
/// The correlators' window: about one bit.
const WINDOW: usize = 7;
/// Mark bits in a row that make the line idle enough for a message to start.
const MARK_BEFORE: u32 = 10;
/// Mark bits between two bytes of a message past which it is given up.
const GAP_MAX: u32 = 20;
/// Signal energy under which the line counts as silent (no carrier).
const MIN_ENERGY: f32 = 4.0e4;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Rx {
    /// Counting mark bit-times (the fraction of the current one in `phase`).
    Hunt { marks: u32, phase: f32 },
    /// In a byte: `pos` samples since the start bit's leading edge.
    Byte { pos: f32, bits: u16, sum: f32, n: u32 },
}

/// An FSK caller-ID receiver: push samples, poll messages.
#[derive(Debug)]
pub struct FskRx {
    fsk: Fsk,
    hist: [f32; WINDOW],
    at: usize,
    /// Per-sample phase steps of the mark and space references.
    w: (f32, f32),
    state: Rx,
    /// A message is being received (bytes after a mark signal).
    bytes: Vec<u8>,
    in_message: bool,
    gap: u32,
    done: Option<Result<CallerId, CidError>>,
    /// Smoothed decision (mark positive).
    d: f32,
}

impl FskRx {
    pub fn new(fsk: Fsk) -> FskRx {
        let (m, s) = fsk.tones();
        let rate = SAMPLE_RATE as f32;
        FskRx {
            fsk,
            hist: [0.0; WINDOW],
            at: 0,
            w: (2.0 * std::f32::consts::PI * m / rate, 2.0 * std::f32::consts::PI * s / rate),
            state: Rx::Hunt { marks: 0, phase: 0.0 },
            bytes: Vec::new(),
            in_message: false,
            gap: 0,
            done: None,
            d: 0.0,
        }
    }

    pub fn fsk(&self) -> Fsk {
        self.fsk
    }

    /// The message received, if one has ended (then the receiver hunts again).
    pub fn poll(&mut self) -> Option<Result<CallerId, CidError>> {
        self.done.take()
    }

    pub fn push(&mut self, samples: &[i16]) {
        for &x in samples {
            self.hist[self.at] = f32::from(x);
            self.at = (self.at + 1) % WINDOW;
            let d = self.decision();
            self.step(d);
        }
    }

    /// Mark energy minus space energy over the window, normalised; 0 on silence.
    fn decision(&mut self) -> f32 {
        let (mut mi, mut mq, mut si, mut sq, mut e) = (0.0f32, 0.0f32, 0.0f32, 0.0f32, 0.0f32);
        for k in 0..WINDOW {
            let x = self.hist[(self.at + k) % WINDOW];
            let (pm, ps) = (self.w.0 * k as f32, self.w.1 * k as f32);
            mi += x * pm.cos();
            mq += x * pm.sin();
            si += x * ps.cos();
            sq += x * ps.sin();
            e += x * x;
        }
        let raw = if e < MIN_ENERGY { 0.0 } else { ((mi * mi + mq * mq) - (si * si + sq * sq)) / e };
        // A light low-pass against noise (a third of a bit).
        self.d += (raw - self.d) * 0.5;
        self.d
    }

    fn step(&mut self, d: f32) {
        match self.state {
            Rx::Hunt { marks, phase } => {
                if d < 0.0 && marks >= MARK_BEFORE.min(if self.in_message { 1 } else { MARK_BEFORE }) {
                    self.state = Rx::Byte { pos: 0.0, bits: 0, sum: 0.0, n: 0 };
                    return;
                }
                let mut phase = phase + 1.0;
                let mut marks = marks;
                if d <= 0.0 {
                    marks = 0;
                    phase = 0.0;
                } else if phase >= SPB {
                    phase -= SPB;
                    marks = marks.saturating_add(1);
                    if self.in_message {
                        self.gap += 1;
                        if self.gap > GAP_MAX {
                            self.finish(Err(CidError::Short));
                        }
                    }
                }
                self.state = Rx::Hunt { marks, phase };
            }
            Rx::Byte { pos, bits, sum, n } => {
                let pos = pos + 1.0;
                // Bit k (0 = start, 1-8 data, 9 stop) is judged by the mean decision over
                // its middle: from 0.3 to 0.7 of the bit.
                let bit = (pos / SPB) as u32;
                let frac = pos / SPB - bit as f32;
                let (mut sum, mut n, mut bits) = (sum, n, bits);
                if (0.3..0.7).contains(&frac) {
                    sum += d;
                    n += 1;
                } else if frac >= 0.7 && n > 0 {
                    let one = sum > 0.0;
                    match bit {
                        0 if one => {
                            // A false start: back to hunting.
                            self.state = Rx::Hunt { marks: 0, phase: 0.0 };
                            return;
                        }
                        1..=8 if one => bits |= 1 << (bit - 1),
                        9 => {
                            if one {
                                self.byte(bits as u8);
                            } else if self.in_message {
                                self.finish(Err(CidError::BadField("framing error")));
                            }
                            self.state = Rx::Hunt { marks: 1, phase: 0.0 };
                            return;
                        }
                        _ => {}
                    }
                    sum = 0.0;
                    n = 0;
                }
                self.state = Rx::Byte { pos, bits, sum, n };
            }
        }
    }

    fn byte(&mut self, b: u8) {
        if !self.in_message {
            if b != SDMF && b != MDMF {
                return; // not a message start (the tail of a seizure, noise)
            }
            self.in_message = true;
            self.bytes.clear();
        }
        self.gap = 0;
        self.bytes.push(b);
        if let Some(total) = message_len(&self.bytes) {
            if self.bytes.len() >= total {
                let r = parse(&self.bytes);
                self.finish(r);
            }
        }
    }

    fn finish(&mut self, r: Result<CallerId, CidError>) {
        self.in_message = false;
        self.gap = 0;
        self.bytes.clear();
        self.done = Some(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CallerId {
        CallerId {
            when: Some(Stamp { month: 12, day: 2, hour: 9, minute: 5 }),
            number: Field::Value("4155551234".into()),
            name: Field::Value("ACME SUPPLY".into()),
        }
    }

    #[test]
    fn messages_have_the_published_layout_and_parse_back() {
        let m = sample();
        let sdmf = encode_sdmf(&m).unwrap();
        assert_eq!(&sdmf[..2], &[0x04, 18]);
        assert_eq!(&sdmf[2..10], b"12020905");
        assert_eq!(&sdmf[10..20], b"4155551234");
        assert_eq!(sdmf.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0, "the checksum makes the sum zero");
        assert_eq!(parse(&sdmf).unwrap(), CallerId { name: Field::Absent, ..m.clone() });
        let mdmf = encode_mdmf(&m).unwrap();
        assert_eq!(mdmf[0], 0x80);
        assert_eq!(&mdmf[2..4], &[0x01, 8]);
        assert_eq!(parse(&mdmf).unwrap(), m);
        let private = CallerId { when: None, number: Field::Private, name: Field::Unavailable };
        let b = encode_mdmf(&private).unwrap();
        assert_eq!(&b[2..], &[0x04, 1, b'P', 0x08, 1, b'O', b[8]]);
        assert_eq!(parse(&b).unwrap(), private);
    }

    #[test]
    fn a_bad_checksum_a_short_message_and_bad_fields_are_refused() {
        let mut b = encode_mdmf(&sample()).unwrap();
        let last = b.len() - 1;
        b[last] ^= 1;
        assert_eq!(parse(&b), Err(CidError::Checksum));
        assert_eq!(parse(&b[..5]), Err(CidError::Short));
        assert_eq!(parse(&[0x80]), Err(CidError::Short));
        let long = CallerId { number: Field::Value("1".repeat(21)), ..sample() };
        assert!(matches!(encode_mdmf(&long), Err(CidError::BadField(_))));
        let bad_time = CallerId { when: Some(Stamp { month: 13, day: 1, hour: 0, minute: 0 }), ..sample() };
        assert!(encode_sdmf(&bad_time).is_err());
        let mut t = vec![0x22, 0];
        t.push(checksum(&t));
        assert_eq!(parse(&t), Err(CidError::UnknownType(0x22)));
    }

    #[test]
    fn dtmf_clip_carries_a_present_number_only() {
        assert_eq!(dtmf_clip(&Field::Value("0201234567".into())).as_deref(), Some("A0201234567C"));
        assert_eq!(dtmf_clip(&Field::Private), None);
        assert_eq!(dtmf_clip(&Field::Value("12a".into())), None);
        assert_eq!(parse_dtmf_clip("A0201234567C"), Some(Field::Value("0201234567".into())));
        assert_eq!(parse_dtmf_clip("A12"), None);
    }

    #[test]
    fn the_modulator_puts_mark_and_space_at_their_frequencies() {
        // Zero crossings per second / 2 is the frequency of a steady tone, and the mean
        // frequency of a mix.
        let hz = |s: &[i16]| s.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count() as f32 / 2.0 / (s.len() as f32 / 8000.0);
        for fsk in [Fsk::Bell202, Fsk::V23] {
            let (mark, space) = fsk.tones();
            let mut s = vec![];
            modulate(fsk, Preamble { seizure_bits: 0, mark_bits: 1200 }, &[], 8000, &mut s);
            assert!((hz(&s) - mark).abs() < 5.0, "{fsk:?} mark {}", hz(&s));
            // Bytes of 0x00: nine bits of ten are spaces (the stop bit is a mark).
            let mut s = vec![];
            modulate(fsk, Preamble { seizure_bits: 0, mark_bits: 0 }, &[0u8; 120], 8000, &mut s);
            let want = 0.9 * space + 0.1 * mark;
            assert!((hz(&s) - want).abs() < 20.0, "{fsk:?} spaces {} against {want}", hz(&s));
            let mut s = vec![];
            modulate(fsk, Preamble { seizure_bits: 1200, mark_bits: 0 }, &[], 8000, &mut s);
            assert!((hz(&s) - (mark + space) / 2.0).abs() < 15.0, "{fsk:?} seizure {}", hz(&s));
        }
    }
}
