//! In-band DTMF: the keypad, a generator (for sending in-band and for tests) and a
//! Goertzel-style detector for 8 kHz PCM16 meeting ITU-T Q.24 tolerances. Owns only
//! the signal processing; RFC 4733 events live in `telephone_event`.
//!
//! Detector, per block of 102 samples (12.75 ms):
//! - eight rectangular-window DFTs pick the strongest row and column tone, each of
//!   which must stand `relative_peak_db` above the others of its group;
//! - each tone's frequency is measured from the phase advance of a Hann-windowed
//!   DFT between consecutive blocks (unwrapped with the phase advance between the
//!   two half-blocks) and must be within `max_freq_error` of nominal;
//! - levels come from the Hann DFTs, corrected for the measured frequency offset:
//!   each tone must reach `min_level_dbm0`, the twist must stay within limits, the
//!   two tones must hold `min_energy_ratio` of the block's energy, and the column
//!   tone's second harmonic must stay `max_harmonic_db` below it (speech fails these);
//! - both halves of each block must hold about the same energy (steady tone);
//! - a digit starts when two consecutive blocks agree (25.5 ms, so every tone of
//!   40 ms or more is seen) and ends after four block pairs without it, which
//!   bridges dropouts up to 12.75 ms while still splitting digits 26 ms apart.

use super::tone::Osc;
use super::{dbm0_to_peak, peak_to_dbm0, SAMPLE_RATE};
use std::collections::VecDeque;
use std::f32::consts::PI;

/// Row (low group) frequencies, Hz.
pub const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
/// Column (high group) frequencies, Hz.
pub const COLS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYS: [[u8; 4]; 4] = [*b"123A", *b"456B", *b"789C", *b"*0#D"];

/// A DTMF key, stored as its RFC 4733 event code (0-9, * = 10, # = 11, A-D = 12-15).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Digit(u8);

impl Digit {
    pub const ALL: &'static str = "0123456789*#ABCD";

    /// From an RFC 4733 event code (0-15).
    pub fn from_event(code: u8) -> Option<Digit> {
        (code < 16).then_some(Digit(code))
    }
    /// From a keypad character (A-D in either case).
    pub fn from_char(c: char) -> Option<Digit> {
        Self::ALL.find(c.to_ascii_uppercase()).map(|i| Digit(i as u8))
    }
    pub fn event(self) -> u8 {
        self.0
    }
    pub fn to_char(self) -> char {
        Self::ALL.as_bytes()[self.0 as usize] as char
    }
    /// (row, column) indexes into `ROWS` and `COLS`.
    pub fn position(self) -> (usize, usize) {
        let c = self.to_char() as u8;
        for (r, row) in KEYS.iter().enumerate() {
            if let Some(col) = row.iter().position(|&k| k == c) {
                return (r, col);
            }
        }
        unreachable!("every digit is on the keypad")
    }
    fn at(row: usize, col: usize) -> Digit {
        Digit::from_char(KEYS[row][col] as char).unwrap_or(Digit(0))
    }
    /// (low, high) frequencies in Hz.
    pub fn freqs(self) -> (f32, f32) {
        let (r, c) = self.position();
        (ROWS[r], COLS[c])
    }
}

impl std::fmt::Display for Digit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_char())
    }
}

/// How to synthesise a digit: per-group level and frequency factor (1.0 = nominal).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DtmfTone {
    pub low_dbm0: f32,
    pub high_dbm0: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
}

impl Default for DtmfTone {
    /// Q.23 sending levels: low group -10 dBm0, high group 2 dB higher.
    fn default() -> Self {
        DtmfTone { low_dbm0: -10.0, high_dbm0: -8.0, low_freq_factor: 1.0, high_freq_factor: 1.0 }
    }
}

/// Appends `n` samples of `digit` to `out`.
pub fn synth_digit(digit: Digit, tone: &DtmfTone, n: usize, out: &mut Vec<i16>) {
    let (lo, hi) = digit.freqs();
    let mut a = Osc::new(lo * tone.low_freq_factor, dbm0_to_peak(tone.low_dbm0));
    let mut b = Osc::new(hi * tone.high_freq_factor, dbm0_to_peak(tone.high_dbm0));
    out.extend((0..n).map(|_| (a.next_sample() + b.next_sample()).round().clamp(-32768.0, 32767.0) as i16));
}

/// Digits queued in a sender at most.
pub const SEND_QUEUE: usize = 64;

/// Plays queued digits in-band: `on_ms` of tone, then `off_ms` of silence each.
#[derive(Clone, Debug)]
pub struct DtmfSender {
    tone: DtmfTone,
    on: usize,
    off: usize,
    queue: VecDeque<Digit>,
    current: Option<(Osc, Osc)>,
    left: usize,
}

impl DtmfSender {
    pub fn new(tone: DtmfTone, on_ms: u32, off_ms: u32) -> Self {
        let per_ms = (SAMPLE_RATE / 1000) as usize;
        DtmfSender {
            tone,
            on: on_ms as usize * per_ms,
            off: off_ms as usize * per_ms,
            queue: VecDeque::new(),
            current: None,
            left: 0,
        }
    }

    /// Queues a digit; false (and dropped) when `SEND_QUEUE` are already waiting.
    pub fn push(&mut self, d: Digit) -> bool {
        if self.queue.len() >= SEND_QUEUE {
            return false;
        }
        self.queue.push_back(d);
        true
    }

    /// Nothing playing and nothing queued.
    pub fn is_idle(&self) -> bool {
        self.left == 0 && self.queue.is_empty()
    }

    /// Fills `out` with tone or silence.
    pub fn fill(&mut self, out: &mut [i16]) {
        for o in out {
            if self.left == 0 {
                if let Some(d) = self.queue.pop_front() {
                    let (lo, hi) = d.freqs();
                    self.current = Some((
                        Osc::new(lo * self.tone.low_freq_factor, dbm0_to_peak(self.tone.low_dbm0)),
                        Osc::new(hi * self.tone.high_freq_factor, dbm0_to_peak(self.tone.high_dbm0)),
                    ));
                    self.left = self.on + self.off;
                }
            }
            *o = 0;
            if self.left > 0 {
                if self.left > self.off {
                    if let Some((a, b)) = &mut self.current {
                        *o = (a.next_sample() + b.next_sample()).round().clamp(-32768.0, 32767.0) as i16;
                    }
                }
                self.left -= 1;
            }
        }
    }
}

/// Detector thresholds. The defaults meet Q.24: accept +-1.5 %, reject +-3.5 %.
/// The frequency window is 2 %, not the 2.5 % midpoint: speech harmonics (3 f0 and
/// 4 f0 of a 307 Hz voice land at 920 and 1228 Hz, "*") came within 2.2-2.5 %.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DtmfConfig {
    /// Each tone must be at least this loud.
    pub min_level_dbm0: f32,
    /// Normal (forward) twist: how far the high group may be above the low group.
    pub normal_twist_db: f32,
    /// Reverse twist: how far the low group may be above the high group.
    pub reverse_twist_db: f32,
    /// Largest accepted |f - nominal| / nominal.
    pub max_freq_error: f32,
    /// The chosen tone must beat the other tones of its group by this much.
    pub relative_peak_db: f32,
    /// Share of the block energy the two tones must hold.
    pub min_energy_ratio: f32,
    /// The column tone's second harmonic must stay this far below it.
    pub max_harmonic_db: f32,
}

impl Default for DtmfConfig {
    fn default() -> Self {
        DtmfConfig {
            min_level_dbm0: -30.0,
            normal_twist_db: 4.0,
            reverse_twist_db: 8.0,
            max_freq_error: 0.02,
            relative_peak_db: 8.0,
            min_energy_ratio: 0.85,
            max_harmonic_db: 12.0,
        }
    }
}

/// Detector block length (samples).
pub const BLOCK: usize = 102;
const HALF: usize = BLOCK / 2;
/// Block pairs without the digit that end it. A dropout touching at most two blocks
/// (any dropout up to 12.75 ms) fails three pairs and is bridged; a pause touching
/// three blocks or more (any pause from 25.75 ms, so every Q.24 40 ms pause) ends it.
const END_MISSES: u32 = 4;
/// Least energy ratio between the two halves of a block (-1.5 dB): a steady two-tone
/// signal varies by less than +-0.4 dB, a block the tone covers under ~87 % fails.
const STEADY_RATIO: f32 = 0.7;
/// Events queued in a detector at most; older ones are dropped past this.
pub const EVENT_QUEUE: usize = 32;

/// A detector event; `at` is the sample index (since creation) where it was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtmfEvent {
    Start { digit: Digit, at: u64 },
    End { digit: Digit, at: u64, duration_ms: u32 },
}

/// Why the last block pair was not a digit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// The two blocks' strongest row/column differ.
    Unstable,
    /// A half-block holds much less energy than the other: the tone starts or stops
    /// inside the pair, so it is not a steady tone yet.
    Unsteady,
    RelativePeak,
    Frequency,
    Level,
    Twist,
    Energy,
    Harmonic,
}

/// What the detector measured on the last block pair (for tests and diagnostics).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Analysis {
    pub digit: Digit,
    pub low_hz: f32,
    pub high_hz: f32,
    pub low_dbm0: f32,
    pub high_dbm0: f32,
    /// High group level minus low group level (dB).
    pub twist_db: f32,
    pub energy_ratio: f32,
    pub verdict: Result<(), Reject>,
}

#[derive(Clone, Copy, Debug, Default)]
struct C32 {
    re: f32,
    im: f32,
}

impl C32 {
    fn mul_conj(self, o: C32) -> C32 {
        C32 { re: self.re * o.re + self.im * o.im, im: self.im * o.re - self.re * o.im }
    }
    fn abs(self) -> f32 {
        self.re.hypot(self.im)
    }
    fn arg(self) -> f32 {
        self.im.atan2(self.re)
    }
}

/// Per-block measurements.
#[derive(Clone, Copy, Debug, Default)]
struct Block {
    /// Rectangular half-block DFTs (block-relative phase), rows then columns.
    h1: [C32; 8],
    h2: [C32; 8],
    /// Hann-window full-block DFTs.
    hann: [C32; 8],
    harmonic: [C32; 4],
    energy: f32,
    /// Energy of the first and second half-block.
    halves: [f32; 2],
    row: usize,
    col: usize,
    peaks_ok: bool,
}

/// The detector. Feed any number of samples with `process`, then drain `poll_event`.
#[derive(Clone, Debug)]
pub struct DtmfDetector {
    cfg: DtmfConfig,
    cos: Vec<[f32; BLOCK]>,
    sin: Vec<[f32; BLOCK]>,
    window: [f32; BLOCK],
    window_sum: f32,
    buf: [i16; BLOCK],
    fill: usize,
    prev: Option<Block>,
    samples: u64,
    current: Option<(Digit, u64)>,
    last_seen_end: u64,
    misses: u32,
    events: VecDeque<DtmfEvent>,
    last: Option<Analysis>,
}

fn freq_of(k: usize) -> f32 {
    if k < 4 {
        ROWS[k]
    } else if k < 8 {
        COLS[k - 4]
    } else {
        2.0 * COLS[k - 8]
    }
}

impl DtmfDetector {
    pub fn new(cfg: DtmfConfig) -> Self {
        let mut cos = vec![[0f32; BLOCK]; 12];
        let mut sin = vec![[0f32; BLOCK]; 12];
        for k in 0..12 {
            let w = 2.0 * std::f64::consts::PI * f64::from(freq_of(k)) / f64::from(SAMPLE_RATE);
            for n in 0..BLOCK {
                cos[k][n] = (w * n as f64).cos() as f32;
                sin[k][n] = (w * n as f64).sin() as f32;
            }
        }
        let mut window = [0f32; BLOCK];
        for (n, w) in window.iter_mut().enumerate() {
            *w = 0.5 - 0.5 * (2.0 * PI * (n as f32 + 0.5) / BLOCK as f32).cos();
        }
        let window_sum = window.iter().sum();
        DtmfDetector {
            cfg,
            cos,
            sin,
            window,
            window_sum,
            buf: [0; BLOCK],
            fill: 0,
            prev: None,
            samples: 0,
            current: None,
            last_seen_end: 0,
            misses: 0,
            events: VecDeque::new(),
            last: None,
        }
    }

    /// Forgets all state (stream restart); keeps the configuration.
    pub fn reset(&mut self) {
        *self = DtmfDetector::new(self.cfg);
    }

    /// Feeds samples (any count).
    pub fn process(&mut self, mut samples: &[i16]) {
        while !samples.is_empty() {
            let n = (BLOCK - self.fill).min(samples.len());
            self.buf[self.fill..self.fill + n].copy_from_slice(&samples[..n]);
            self.fill += n;
            self.samples += n as u64;
            samples = &samples[n..];
            if self.fill == BLOCK {
                self.fill = 0;
                self.block();
            }
        }
    }

    /// The next event, oldest first.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<DtmfEvent> {
        self.events.pop_front()
    }

    /// Measurements of the last block pair whose strongest tones agreed.
    pub fn last_analysis(&self) -> Option<Analysis> {
        self.last
    }

    fn dft(&self, k: usize, x: &[f32; BLOCK], range: std::ops::Range<usize>, windowed: bool) -> C32 {
        let mut acc = C32::default();
        for n in range {
            let v = if windowed { x[n] * self.window[n] } else { x[n] };
            acc.re += v * self.cos[k][n];
            acc.im -= v * self.sin[k][n];
        }
        acc
    }

    fn measure(&self) -> Block {
        let mut x = [0f32; BLOCK];
        for (d, &s) in x.iter_mut().zip(&self.buf) {
            *d = f32::from(s);
        }
        let e = |s: &[f32]| s.iter().map(|v| v * v).sum::<f32>();
        let halves = [e(&x[..HALF]), e(&x[HALF..])];
        let mut b = Block { energy: halves[0] + halves[1], halves, ..Block::default() };
        let mut power = [0f32; 8];
        for (k, p) in power.iter_mut().enumerate() {
            b.h1[k] = self.dft(k, &x, 0..HALF, false);
            b.h2[k] = self.dft(k, &x, HALF..BLOCK, false);
            b.hann[k] = self.dft(k, &x, 0..BLOCK, true);
            let full = C32 { re: b.h1[k].re + b.h2[k].re, im: b.h1[k].im + b.h2[k].im };
            *p = full.re * full.re + full.im * full.im;
        }
        let best = |p: &[f32]| (0..4).fold(0, |a, i| if p[i] > p[a] { i } else { a });
        b.row = best(&power[..4]);
        b.col = best(&power[4..]);
        let rel = 10f32.powf(self.cfg.relative_peak_db / 10.0);
        b.peaks_ok = (0..4).all(|i| i == b.row || power[b.row] >= rel * power[i])
            && (0..4).all(|i| i == b.col || power[4 + b.col] >= rel * power[4 + i]);
        b.harmonic[b.col] = self.dft(8 + b.col, &x, 0..BLOCK, true);
        b
    }

    /// Gain of the Hann-window DFT for a tone `df` Hz off its bin.
    fn hann_gain(&self, df: f32) -> f32 {
        let w = 2.0 * PI * df / SAMPLE_RATE as f32;
        let mut acc = C32::default();
        for (n, &win) in self.window.iter().enumerate() {
            acc.re += win * (w * n as f32).cos();
            acc.im += win * (w * n as f32).sin();
        }
        acc.abs() / self.window_sum
    }

    /// Frequency offset (Hz) of tone `k` from the previous and current blocks.
    fn offset(&self, k: usize, prev: &Block, cur: &Block) -> f32 {
        let rate = SAMPLE_RATE as f32;
        let w0 = 2.0 * PI * freq_of(k) / rate;
        let wrap = |a: f32| (a + PI).rem_euclid(2.0 * PI) - PI;
        // Coarse: second half-block against the first (lag 51: +-78 Hz unambiguous).
        let coarse = wrap(cur.h2[k].mul_conj(cur.h1[k]).arg()) * rate / (2.0 * PI * HALF as f32);
        // Fine: block against previous block (lag 102: +-39 Hz), unwrapped by the coarse.
        let fine =
            wrap(cur.hann[k].mul_conj(prev.hann[k]).arg() - w0 * BLOCK as f32) * rate / (2.0 * PI * BLOCK as f32);
        let period = rate / BLOCK as f32;
        fine + ((coarse - fine) / period).round() * period
    }

    fn analyse(&self, prev: &Block, cur: &Block) -> Result<Analysis, Reject> {
        if prev.row != cur.row || prev.col != cur.col {
            return Err(Reject::Unstable);
        }
        if !(prev.peaks_ok && cur.peaks_ok) {
            return Err(Reject::RelativePeak);
        }
        // Too quiet to hold two tones at the minimum level: skip the finer work.
        let floor = dbm0_to_peak(self.cfg.min_level_dbm0 - 3.0);
        if prev.energy.min(cur.energy) < floor * floor * BLOCK as f32 {
            return Err(Reject::Level);
        }
        let steady = |b: &Block| b.halves[0].min(b.halves[1]) >= STEADY_RATIO * b.halves[0].max(b.halves[1]);
        if !(steady(prev) && steady(cur)) {
            return Err(Reject::Unsteady);
        }
        let (r, c) = (cur.row, 4 + cur.col);
        let (dr, dc) = (self.offset(r, prev, cur), self.offset(c, prev, cur));
        let (gr, gc) = (self.hann_gain(dr), self.hann_gain(dc));
        let amp = |b: &Block, k: usize, gain: f32| 2.0 * b.hann[k].abs() / (self.window_sum * gain);
        // Judge on the weaker of the two blocks.
        let lo = amp(prev, r, gr).min(amp(cur, r, gr));
        let hi = amp(prev, c, gc).min(amp(cur, c, gc));
        let ratio = |b: &Block| {
            let (a, h) = (amp(b, r, gr), amp(b, c, gc));
            (a * a + h * h) * BLOCK as f32 / 2.0 / b.energy.max(1.0)
        };
        let harmonic_ok = |b: &Block| {
            let h = 2.0 * b.harmonic[c - 4].abs() / self.window_sum;
            h <= amp(b, c, gc) * 10f32.powf(-self.cfg.max_harmonic_db / 20.0)
        };
        let mut a = Analysis {
            digit: Digit::at(r, c - 4),
            low_hz: freq_of(r) + dr,
            high_hz: freq_of(c) + dc,
            low_dbm0: peak_to_dbm0(lo),
            high_dbm0: peak_to_dbm0(hi),
            twist_db: peak_to_dbm0(hi) - peak_to_dbm0(lo),
            energy_ratio: ratio(prev).min(ratio(cur)),
            verdict: Ok(()),
        };
        let max_err = self.cfg.max_freq_error;
        a.verdict = if (dr / freq_of(r)).abs() > max_err || (dc / freq_of(c)).abs() > max_err {
            Err(Reject::Frequency)
        } else if a.low_dbm0 < self.cfg.min_level_dbm0 || a.high_dbm0 < self.cfg.min_level_dbm0 {
            Err(Reject::Level)
        } else if a.twist_db > self.cfg.normal_twist_db || -a.twist_db > self.cfg.reverse_twist_db {
            Err(Reject::Twist)
        } else if a.energy_ratio < self.cfg.min_energy_ratio {
            Err(Reject::Energy)
        } else if !(harmonic_ok(prev) && harmonic_ok(cur)) {
            Err(Reject::Harmonic)
        } else {
            Ok(())
        };
        Ok(a)
    }

    fn emit(&mut self, e: DtmfEvent) {
        if self.events.len() >= EVENT_QUEUE {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    fn end_current(&mut self) {
        if let Some((digit, start)) = self.current.take() {
            let duration_ms = ((self.last_seen_end - start) * 1000 / u64::from(SAMPLE_RATE)) as u32;
            self.emit(DtmfEvent::End { digit, at: self.samples, duration_ms });
        }
    }

    fn block(&mut self) {
        let cur = self.measure();
        let seen = match self.prev.as_ref().map(|p| self.analyse(p, &cur)) {
            Some(Ok(a)) => {
                self.last = Some(a);
                a.verdict.ok().map(|()| a.digit)
            }
            _ => None,
        };
        self.prev = Some(cur);
        match (seen, self.current) {
            (Some(d), Some((c, _))) if d == c => {
                self.misses = 0;
                self.last_seen_end = self.samples;
            }
            (Some(d), _) => {
                self.end_current();
                self.current = Some((d, self.samples - 2 * BLOCK as u64));
                self.last_seen_end = self.samples;
                self.misses = 0;
                self.emit(DtmfEvent::Start { digit: d, at: self.samples });
            }
            (None, Some(_)) => {
                self.misses += 1;
                if self.misses >= END_MISSES {
                    self.end_current();
                }
            }
            (None, None) => {}
        }
    }
}

impl Default for DtmfDetector {
    fn default() -> Self {
        DtmfDetector::new(DtmfConfig::default())
    }
}

#[cfg(test)]
#[path = "dtmf_tests.rs"]
mod tests;
