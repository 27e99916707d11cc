//! Line echo canceller for the FXO ports, in the spirit of ITU-T G.168.
//!
//! An FXO port meets the PSTN line through a 600 ohm transformer and a two-wire hybrid,
//! which reflects part of what the port plays (the far end's voice, from SIP) back into
//! what it captures: line echo, typically 6-15 dB below the signal (ERL), linear,
//! slowly varying, and over within 64 ms. The port's audio thread calls
//! [`EchoCanceller::process`] once per frame with `far` (what the port is playing to the
//! line, the reference) and `near` (what it captured: the PSTN talker plus the echo);
//! the output, with the echo taken out, goes to RTP.
//!
//! How it works:
//!
//! - **Two filters.** An adaptive FIR over the whole tail (`tail_ms`, 8 taps per ms)
//!   learns the echo path from the far signal (the *background* filter); a second FIR
//!   of the same length (the *foreground* filter) makes the output. The background's
//!   taps are copied into the foreground only after it has cancelled better than the
//!   foreground for three 10 ms blocks in a row, with the far end talking and no
//!   double talk, and by at least what the output has achieved lately less 6 dB
//!   (between 3 and 18 dB asked): a background that adapted on near speech the
//!   detector missed can beat a good foreground for a while (it has tracked some of
//!   that speech) but does not cancel by 18 dB while the near end talks. What upsets
//!   the background (double talk the detector missed, a burst of noise) therefore
//!   does not reach the output; a background that goes
//!   wrong (its residual far above the foreground's and above the input) is put back
//!   to the foreground's taps, and a foreground that makes the output louder than
//!   its input is cleared (the output is then the input: no harm done). An echo path
//!   that changes is learned again by the background, which then wins and is copied.
//! - **Adaptation: IPNLMS** (improved proportionate NLMS). Each tap's step is
//!   proportional partly to its magnitude, so the few large taps of a hybrid's
//!   response (a bulk delay of a few ms, then a dispersion of a few ms, in a 64 ms
//!   window that is mostly near zero) converge faster than with NLMS's equal steps,
//!   while a dispersive response does no worse than with NLMS (half of each step
//!   stays uniform). On the simulated hybrid with the tests' speech-like signal it
//!   is up to 7 dB ahead of NLMS (alpha -1, same step) in the first second and 2-4 dB
//!   over the next few. It costs one more pass over the taps than NLMS, and
//!   it adapts sample by sample, so the canceller adds no delay, which a partitioned
//!   block (frequency-domain) form would (a block of latency, or a far more complex
//!   constrained form) for a gain that a 512-tap filter at 8 kHz does not need.
//! - **Double-talk detector (Geigel).** With the far end talking, near-end talk is
//!   declared when a near sample's magnitude reaches the largest far magnitude of the
//!   last tail (plus 32 samples) lowered by `dt_threshold_db` (6 dB by default: an
//!   ERL of at least 6 dB); it holds for 40 ms after the last such sample. Once the
//!   output's ERLE estimate is 12 dB or more the test is made on the residual (the
//!   near sample less the echo estimate) instead: the same sensitivity to a talker,
//!   and no false alarm where loud echo dips under the threshold's ERL. While it
//!   holds the background does not adapt, no copy is made and the NLP passes.
//! - **NLP** (optional, `nlp`): where the residual is well under the echo estimate and
//!   nobody is talking at the near end, the output fades (in 4 ms) to comfort noise at
//!   the level of the line's noise floor (a minimum tracker of the residual's power);
//!   it fades back in 1 ms as soon as the residual rises or double talk is declared.
//!   Switch it off to measure the linear part.
//! - A DC blocker (a first-order high-pass at about 6 Hz) on both inputs: a line's
//!   offset is not echo, and a far signal with an offset would only slow adaptation.
//!
//! Everything is allocated by [`EchoCanceller::new`]; `process` allocates nothing, and
//! takes any input (i16 extremes, silence, DC, slices of unequal length) without
//! panicking. Arithmetic is f32 on samples scaled to [-1, 1). The output sample n is
//! computed from the near sample n and the far samples up to n: no added delay.
//!
//! What the caller must keep: `far` and `near` on one clock (one sound device), and
//! the delay from a sample handed in as `far` to its echo in `near` (the device's
//! playback and capture buffering plus the line's bulk delay) together with the
//! echo's dispersion within the tail. The canceller models that whole path; it does
//! not search for a bulk delay beyond the tail.
//!
//! Not done (G.168 items this canceller does not claim): disabling on the 2100 Hz
//! answer tone with phase reversals (fax and modems), and the standard's full test
//! suite; `scripts/bench/echo` and the unit tests measure what is claimed.

/// Samples per millisecond at 8 kHz.
const TAPS_PER_MS: usize = 8;
/// Longest tail accepted (ms); longer requests are clamped.
pub const MAX_TAIL_MS: u32 = 128;
/// Scale of PCM16 to [-1, 1).
const SCALE: f32 = 1.0 / 32768.0;
/// Mean far power (over the tail) below which the far end is taken as silent and the
/// filter does not adapt: about -44 dBm0.
const FAR_MIN_POWER: f64 = 1.0e-5;
/// IPNLMS's alpha: -1 is NLMS, 1 fully proportionate; -0.5 is the usual compromise.
const IPNLMS_ALPHA: f32 = -0.5;
/// The proportionate gains are recomputed every this many samples.
const GAIN_EVERY: u32 = 8;
/// Near magnitude under which no double talk is declared (a -55 dBm0 peak).
const NEAR_FLOOR: f32 = 0.0012;
/// ERLE estimate (dB) from which the Geigel test is on the residual, not the input.
const DT_RESIDUAL_ERLE_DB: f32 = 12.0;
/// Double-talk hangover (samples): 40 ms.
const DT_HANGOVER: u32 = 320;
/// Block over which the two filters are compared (samples): 10 ms.
const BLOCK: u32 = 80;
/// Geigel peak tracker: the far's largest magnitude per this many samples.
const PEAK_BLOCK: usize = 32;
/// The decay of the best ERLE seen, per block (2 dB/s).
const ERLE_BEST_DECAY: f32 = 0.02;
/// Blocks in a row the background must win before it is copied.
const TRANSFER_BLOCKS: u32 = 3;
/// Blocks in a row of a diverged background before it is restored.
const RESTORE_BLOCKS: u32 = 3;
/// Blocks in a row of a harmful foreground before it is cleared.
const CLEAR_BLOCKS: u32 = 5;
/// DC blocker pole (corner at about 6 Hz at 8 kHz).
const DC_POLE: f32 = 0.995;
/// NLP: one-pole smoothing of the residual and echo-estimate powers (10 ms).
const NLP_SMOOTH: f32 = 1.0 / 80.0;
/// NLP: suppress while the residual is this far under the echo estimate (-6 dB).
const NLP_RATIO: f32 = 0.25;
/// NLP: gain steps per sample towards suppression (4 ms) and back to pass (1 ms).
const NLP_FADE_OUT: f32 = 1.0 / 32.0;
const NLP_FADE_IN: f32 = 1.0 / 8.0;
/// NLP: the noise floor's rise per sample (about 6 dB/s) and its bounds
/// (about -90 and -40 dBm0).
const NOISE_RISE: f32 = 1.000_173;
const NOISE_MIN: f32 = 1.0e-10;
const NOISE_MAX: f32 = 1.0e-4;

/// What a canceller is built with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EchoConfig {
    /// Echo tail covered (ms), clamped to 1..=[`MAX_TAIL_MS`]: 8 taps per ms.
    pub tail_ms: u32,
    /// The non-linear processor (residual suppression with comfort noise).
    pub nlp: bool,
    /// The background filter's IPNLMS step, clamped to 0.01..=1.0.
    pub step: f32,
    /// Geigel threshold (dB): double talk when a near sample is within this of the far
    /// peak; the least ERL expected. Clamped to 0..=20.
    pub dt_threshold_db: f32,
}

impl Default for EchoConfig {
    fn default() -> Self {
        EchoConfig { tail_ms: 64, nlp: true, step: 0.5, dt_threshold_db: 6.0 }
    }
}

/// What a canceller reports (counters since `new` or `reset`; the rest as of the last
/// call of `process`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EchoStats {
    /// Calls of `process` (frames).
    pub frames: u64,
    /// ERLE estimate (dB): smoothed near power over output power, over the 10 ms blocks
    /// with the far end talking and no double talk (NLP not counted). 0 until measured.
    pub erle_db: f32,
    /// Frames during which double talk was declared at some sample.
    pub double_talk_frames: u64,
    /// Double talk declared at the end of the last frame.
    pub double_talk: bool,
    /// The background filter adapted during the last frame.
    pub adapting: bool,
    /// Frames during which the NLP suppressed (fully or fading) at some sample.
    pub nlp_frames: u64,
    /// Copies of the background filter into the foreground.
    pub transfers: u64,
    /// Divergence protection: background restored from the foreground, or foreground
    /// cleared.
    pub resets: u64,
}

/// A first-order DC blocker: y[n] = x[n] - x[n-1] + p y[n-1].
#[derive(Clone, Copy, Debug, Default)]
struct DcBlock {
    x1: f32,
    y1: f32,
}

impl DcBlock {
    #[inline]
    fn run(&mut self, x: f32) -> f32 {
        let y = x - self.x1 + DC_POLE * self.y1;
        self.x1 = x;
        self.y1 = y;
        y
    }
}

/// Sums over one 10 ms block, for the filter comparisons.
#[derive(Clone, Copy, Debug, Default)]
struct Block {
    n: u32,
    near: f64,
    fg: f64,
    bg: f64,
    /// Every sample of the block had the far end active.
    far_all: bool,
    /// Double talk held at some sample of the block.
    dt: bool,
}

/// Residual suppression state.
#[derive(Clone, Copy, Debug)]
struct Nlp {
    p_e: f32,
    p_y: f32,
    noise: f32,
    /// 1 = pass the residual, 0 = comfort noise only.
    gain: f32,
    rng: u32,
}

impl Nlp {
    fn new() -> Self {
        Nlp { p_e: 0.0, p_y: 0.0, noise: NOISE_MIN, gain: 1.0, rng: 0x1234_5678 }
    }

    /// Uniform in [-1, 1) from a xorshift32.
    #[inline]
    fn white(&mut self) -> f32 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        (x as f32) * (2.0 / 4_294_967_296.0) - 1.0
    }
}

/// One port's line echo canceller. See the module documentation.
#[derive(Clone, Debug)]
pub struct EchoCanceller {
    cfg: EchoConfig,
    taps: usize,
    /// The far history, twice over: `hist[pos..pos + taps]` is x(n), x(n-1), ...
    hist: Vec<f32>,
    pos: usize,
    /// Sum of squares of the far history (f64: updated incrementally).
    x_energy: f64,
    fg: Vec<f32>,
    bg: Vec<f32>,
    /// IPNLMS gains of the background's taps.
    gain: Vec<f32>,
    gain_age: u32,
    far_dc: DcBlock,
    near_dc: DcBlock,
    /// Largest far magnitude of each of the last PEAK_BLOCK-sample blocks.
    peaks: Vec<f32>,
    peak_idx: usize,
    peak_cur: f32,
    peak_fill: usize,
    dt_hold: u32,
    /// Geigel: the far peak's factor that near samples must reach.
    dt_gain: f32,
    blk: Block,
    transfer_run: u32,
    restore_run: u32,
    clear_run: u32,
    erle_near: f64,
    erle_out: f64,
    /// The best ERLE estimate lately (dB), decaying.
    erle_best: f32,
    nlp: Nlp,
    stats: EchoStats,
}

impl EchoCanceller {
    /// A canceller with everything it will use allocated.
    pub fn new(config: EchoConfig) -> Self {
        let tail_ms = config.tail_ms.clamp(1, MAX_TAIL_MS);
        let cfg = EchoConfig {
            tail_ms,
            nlp: config.nlp,
            step: if config.step.is_finite() { config.step.clamp(0.01, 1.0) } else { 0.5 },
            dt_threshold_db: if config.dt_threshold_db.is_finite() {
                config.dt_threshold_db.clamp(0.0, 20.0)
            } else {
                6.0
            },
        };
        let taps = tail_ms as usize * TAPS_PER_MS;
        let mut ec = EchoCanceller {
            cfg,
            taps,
            hist: vec![0.0; 2 * taps],
            pos: 0,
            x_energy: 0.0,
            fg: vec![0.0; taps],
            bg: vec![0.0; taps],
            gain: vec![0.0; taps],
            gain_age: 0,
            far_dc: DcBlock::default(),
            near_dc: DcBlock::default(),
            peaks: vec![0.0; taps.div_ceil(PEAK_BLOCK)],
            peak_idx: 0,
            peak_cur: 0.0,
            peak_fill: 0,
            dt_hold: 0,
            dt_gain: 10f32.powf(-cfg.dt_threshold_db / 20.0),
            blk: Block::default(),
            transfer_run: 0,
            restore_run: 0,
            clear_run: 0,
            erle_near: 0.0,
            erle_out: 0.0,
            erle_best: 0.0,
            nlp: Nlp::new(),
            stats: EchoStats::default(),
        };
        ec.reset();
        ec
    }

    /// The configuration in force (after clamping).
    pub fn config(&self) -> EchoConfig {
        self.cfg
    }

    /// Filter taps (8 per ms of tail).
    pub fn taps(&self) -> usize {
        self.taps
    }

    /// Turns the NLP on or off from the next sample on.
    pub fn set_nlp(&mut self, on: bool) {
        self.cfg.nlp = on;
    }

    /// Back to the state `new` left: no echo path learnt, counters at zero.
    pub fn reset(&mut self) {
        self.hist.fill(0.0);
        self.pos = 0;
        self.x_energy = 0.0;
        self.fg.fill(0.0);
        self.bg.fill(0.0);
        self.gain_age = 0;
        self.update_gains();
        self.far_dc = DcBlock::default();
        self.near_dc = DcBlock::default();
        self.peaks.fill(0.0);
        self.peak_idx = 0;
        self.peak_cur = 0.0;
        self.peak_fill = 0;
        self.dt_hold = 0;
        self.blk = Block { far_all: true, ..Block::default() };
        self.transfer_run = 0;
        self.restore_run = 0;
        self.clear_run = 0;
        self.erle_near = 0.0;
        self.erle_out = 0.0;
        self.erle_best = 0.0;
        self.nlp = Nlp::new();
        self.stats = EchoStats::default();
    }

    /// What it has measured so far.
    pub fn stats(&self) -> EchoStats {
        self.stats
    }

    /// Cancels the echo of `far` in `near` into `out`, sample by sample: `out[n]` comes
    /// from `near[n]` and `far[..=n]`. The slices should be of equal length (a 20 ms
    /// frame is 160 samples; any length works). If they are not, the common length is
    /// processed and the rest of `out` is `near` passed through (silence past `near`'s
    /// end); the far history then misses the samples it lacked.
    pub fn process(&mut self, far: &[i16], near: &[i16], out: &mut [i16]) {
        let n = far.len().min(near.len()).min(out.len());
        let mut dt_any = false;
        let mut adapted = false;
        let mut nlp_any = false;
        for i in 0..n {
            let s = self.sample(far[i], near[i]);
            dt_any |= s.dt;
            adapted |= s.adapted;
            nlp_any |= s.nlp;
            out[i] = s.out;
        }
        for (i, o) in out.iter_mut().enumerate().skip(n) {
            *o = near.get(i).copied().unwrap_or(0);
        }
        let st = &mut self.stats;
        st.frames = st.frames.saturating_add(1);
        if dt_any {
            st.double_talk_frames = st.double_talk_frames.saturating_add(1);
        }
        if nlp_any {
            st.nlp_frames = st.nlp_frames.saturating_add(1);
        }
        st.double_talk = self.dt_hold > 0;
        st.adapting = adapted;
    }

    /// One sample through the canceller.
    #[inline]
    fn sample(&mut self, far: i16, near: i16) -> SampleOut {
        let taps = self.taps;
        // The far history: newest first.
        let x = self.far_dc.run(f32::from(far) * SCALE);
        self.pos = if self.pos == 0 { taps - 1 } else { self.pos - 1 };
        let old = self.hist[self.pos];
        self.hist[self.pos] = x;
        self.hist[self.pos + taps] = x;
        self.x_energy += f64::from(x) * f64::from(x) - f64::from(old) * f64::from(old);
        if self.x_energy < 0.0 {
            self.x_energy = 0.0;
        }
        self.track_peak(x.abs());
        let d = self.near_dc.run(f32::from(near) * SCALE);

        let xv = &self.hist[self.pos..self.pos + taps];
        let (y_fg, y_bg, xgx) = dots(xv, &self.fg, &self.bg, &self.gain);
        let e_fg = d - y_fg;
        let e_bg = d - y_bg;

        // Geigel double-talk detection (with the far end silent there is nothing to
        // protect: no adaptation, no NLP).
        // Once the output cancels well, the test is on what is left of the echo, so
        // that loud echo where the ERL dips under the threshold is not taken for talk.
        let far_active = self.x_energy >= FAR_MIN_POWER * taps as f64;
        let probe = if self.stats.erle_db >= DT_RESIDUAL_ERLE_DB { e_fg } else { d };
        if far_active && probe.abs() >= self.dt_gain * self.far_peak() && probe.abs() > NEAR_FLOOR {
            self.dt_hold = DT_HANGOVER;
        } else if self.dt_hold > 0 {
            self.dt_hold -= 1;
        }
        let dt = self.dt_hold > 0;

        // Background adaptation (IPNLMS).
        let adapted = far_active && !dt && e_bg.is_finite();
        if adapted {
            let delta = (1.0 - IPNLMS_ALPHA) * 0.5 * FAR_MIN_POWER as f32;
            let mu = self.cfg.step * e_bg / (xgx + delta);
            if mu.is_finite() {
                update(&mut self.bg, &self.gain, xv, mu);
            }
            self.gain_age += 1;
            if self.gain_age >= GAIN_EVERY {
                self.gain_age = 0;
                self.update_gains();
            }
        }

        self.end_sample_block(d, e_fg, e_bg, far_active, dt);

        // Output: the foreground's residual, through the NLP.
        let (o, nlp) = self.nlp(e_fg, y_fg, far_active, dt);
        let out = (o * 32768.0).round().clamp(-32768.0, 32767.0);
        // `as` saturates and maps NaN to 0.
        SampleOut { out: out as i16, dt, adapted, nlp }
    }

    fn track_peak(&mut self, ax: f32) {
        if ax > self.peak_cur {
            self.peak_cur = ax;
        }
        self.peak_fill += 1;
        if self.peak_fill >= PEAK_BLOCK {
            self.peaks[self.peak_idx] = self.peak_cur;
            self.peak_idx = (self.peak_idx + 1) % self.peaks.len();
            self.peak_cur = 0.0;
            self.peak_fill = 0;
        }
    }

    /// The far's largest magnitude over the last tail (and up to PEAK_BLOCK more).
    fn far_peak(&self) -> f32 {
        self.peaks.iter().fold(self.peak_cur, |m, &p| m.max(p))
    }

    fn update_gains(&mut self) {
        let l = self.taps as f32;
        let l1: f32 = self.bg.iter().map(|h| h.abs()).sum();
        let uniform = (1.0 - IPNLMS_ALPHA) / (2.0 * l);
        let prop = (1.0 + IPNLMS_ALPHA) / (2.0 * l1 + 1.0e-6);
        for (g, h) in self.gain.iter_mut().zip(&self.bg) {
            *g = uniform + prop * h.abs();
        }
    }

    /// Block sums; at each block's end, the comparisons that copy, restore or clear.
    fn end_sample_block(&mut self, d: f32, e_fg: f32, e_bg: f32, far_active: bool, dt: bool) {
        let b = &mut self.blk;
        b.n += 1;
        b.near += f64::from(d) * f64::from(d);
        b.fg += f64::from(e_fg) * f64::from(e_fg);
        b.bg += f64::from(e_bg) * f64::from(e_bg);
        b.far_all &= far_active;
        b.dt |= dt;
        if b.n < BLOCK {
            return;
        }
        let b = std::mem::replace(&mut self.blk, Block { far_all: true, ..Block::default() });
        if !b.fg.is_finite() {
            self.fg.fill(0.0);
            self.stats.resets = self.stats.resets.saturating_add(1);
        }
        if !b.bg.is_finite() {
            self.bg.fill(0.0);
            self.update_gains();
            self.stats.resets = self.stats.resets.saturating_add(1);
        }
        if !b.far_all || b.dt || !b.fg.is_finite() || !b.bg.is_finite() {
            self.transfer_run = 0;
            self.restore_run = 0;
            self.clear_run = 0;
            return;
        }
        // ERLE estimate of the output (foreground).
        let a = 0.1;
        self.erle_near += a * (b.near - self.erle_near);
        self.erle_out += a * (b.fg - self.erle_out);
        if self.erle_out > 0.0 && self.erle_near > 0.0 {
            self.stats.erle_db = (10.0 * (self.erle_near / self.erle_out).log10()) as f32;
        }
        // The background wins: copy it. Besides beating the foreground it must cancel
        // nearly as well as the output has lately (at least 3 dB, at most 18 dB asked):
        // a background that adapted on near-end speech the detector missed may beat a
        // good foreground for a few blocks (it has tracked some of that speech), but it
        // does not cancel by 18 dB where the near end is talking.
        self.erle_best = (self.erle_best - ERLE_BEST_DECAY).max(self.stats.erle_db);
        let need_db = (self.erle_best - 6.0).clamp(3.0, 18.0);
        let need = 10f64.powf(-f64::from(need_db) / 10.0);
        if b.bg < 0.9 * b.fg && b.bg < need * b.near {
            self.transfer_run += 1;
            if self.transfer_run >= TRANSFER_BLOCKS {
                self.transfer_run = 0;
                self.fg.copy_from_slice(&self.bg);
                self.stats.transfers = self.stats.transfers.saturating_add(1);
            }
        } else {
            self.transfer_run = 0;
        }
        // The background has gone wrong: back to the foreground.
        if b.bg > 2.0 * b.near && b.bg > 4.0 * b.fg {
            self.restore_run += 1;
            if self.restore_run >= RESTORE_BLOCKS {
                self.restore_run = 0;
                self.bg.copy_from_slice(&self.fg);
                self.update_gains();
                self.stats.resets = self.stats.resets.saturating_add(1);
            }
        } else {
            self.restore_run = 0;
        }
        // The foreground does harm: clear it (the output is then the input).
        if b.fg > 2.0 * b.near && b.bg >= b.fg * 0.9 {
            self.clear_run += 1;
            if self.clear_run >= CLEAR_BLOCKS {
                self.clear_run = 0;
                self.fg.fill(0.0);
                self.stats.resets = self.stats.resets.saturating_add(1);
            }
        } else {
            self.clear_run = 0;
        }
    }

    /// The NLP on one residual sample: (output, suppressing).
    #[inline]
    fn nlp(&mut self, e: f32, y: f32, far_active: bool, dt: bool) -> (f32, bool) {
        let p = &mut self.nlp;
        p.p_e += NLP_SMOOTH * (e * e - p.p_e);
        p.p_y += NLP_SMOOTH * (y * y - p.p_y);
        if !p.p_e.is_finite() || !p.p_y.is_finite() {
            *p = Nlp::new();
        }
        p.noise = if p.p_e < p.noise { p.p_e } else { p.noise * NOISE_RISE };
        p.noise = p.noise.clamp(NOISE_MIN, NOISE_MAX);
        if !self.cfg.nlp {
            p.gain = 1.0;
            return (e, false);
        }
        let suppress = far_active && !dt && p.p_e < NLP_RATIO * p.p_y;
        p.gain = if suppress {
            (p.gain - NLP_FADE_OUT).max(0.0)
        } else {
            (p.gain + NLP_FADE_IN).min(1.0)
        };
        if p.gain >= 1.0 {
            return (e, false);
        }
        // Uniform white noise of variance 1/3 scaled to the noise floor's power.
        let cn = p.white() * (3.0 * p.noise).sqrt();
        (p.gain * e + (1.0 - p.gain) * cn, true)
    }
}

/// What one sample gave.
#[derive(Clone, Copy, Debug)]
struct SampleOut {
    out: i16,
    dt: bool,
    adapted: bool,
    nlp: bool,
}

/// fg·x, bg·x and Σ g x²: three dot products, each with eight partial sums over
/// fixed-size chunks (so that the compiler vectorises them, and an unoptimised build
/// does not crawl). `taps` is a multiple of 8.
#[inline]
fn dots(x: &[f32], fg: &[f32], bg: &[f32], g: &[f32]) -> (f32, f32, f32) {
    (dot(fg, x), dot(bg, x), dot_sq(g, x))
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len()) / 8 * 8;
    let (a, b) = (&a[..n], &b[..n]);
    let mut s = [0f32; 8];
    let mut i = 0;
    while i < n {
        let (a, b) = (&a[i..i + 8], &b[i..i + 8]);
        s[0] += a[0] * b[0];
        s[1] += a[1] * b[1];
        s[2] += a[2] * b[2];
        s[3] += a[3] * b[3];
        s[4] += a[4] * b[4];
        s[5] += a[5] * b[5];
        s[6] += a[6] * b[6];
        s[7] += a[7] * b[7];
        i += 8;
    }
    (s[0] + s[4]) + (s[1] + s[5]) + (s[2] + s[6]) + (s[3] + s[7])
}

/// Σ g x².
#[inline]
fn dot_sq(g: &[f32], x: &[f32]) -> f32 {
    let n = g.len().min(x.len()) / 8 * 8;
    let (g, x) = (&g[..n], &x[..n]);
    let mut s = [0f32; 8];
    let mut i = 0;
    while i < n {
        let (g, x) = (&g[i..i + 8], &x[i..i + 8]);
        s[0] += g[0] * x[0] * x[0];
        s[1] += g[1] * x[1] * x[1];
        s[2] += g[2] * x[2] * x[2];
        s[3] += g[3] * x[3] * x[3];
        s[4] += g[4] * x[4] * x[4];
        s[5] += g[5] * x[5] * x[5];
        s[6] += g[6] * x[6] * x[6];
        s[7] += g[7] * x[7] * x[7];
        i += 8;
    }
    (s[0] + s[4]) + (s[1] + s[5]) + (s[2] + s[6]) + (s[3] + s[7])
}

/// h += m g x.
#[inline]
fn update(h: &mut [f32], g: &[f32], x: &[f32], m: f32) {
    let n = h.len().min(g.len()).min(x.len()) / 8 * 8;
    let (h, g, x) = (&mut h[..n], &g[..n], &x[..n]);
    let mut i = 0;
    while i < n {
        let (h, g, x) = (&mut h[i..i + 8], &g[i..i + 8], &x[i..i + 8]);
        h[0] += m * g[0] * x[0];
        h[1] += m * g[1] * x[1];
        h[2] += m * g[2] * x[2];
        h[3] += m * g[3] * x[3];
        h[4] += m * g[4] * x[4];
        h[5] += m * g[5] * x[5];
        h[6] += m * g[6] * x[6];
        h[7] += m * g[7] * x[7];
        i += 8;
    }
}

/// A model of a two-wire hybrid's echo, for the unit tests and `scripts/bench/echo`
/// (the box itself does not use it): an impulse response over a 64 ms window with a
/// bulk delay, a band-limited dispersive main reflection and a weak late reflection.
pub mod sim {
    /// The window the responses span (samples): 64 ms.
    pub const PATH_TAPS: usize = 512;

    /// Two echo paths, for convergence and for an echo path change.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Hybrid {
        /// Bulk delay 4 ms, main reflection ringing near 600 Hz, late reflection at
        /// 44 ms (-20 dB).
        A,
        /// Bulk delay 7 ms, inverted, ringing near 1100 Hz, late reflection at 52 ms
        /// (-18 dB).
        B,
    }

    /// One biquad (direct form I) run over a buffer in place.
    fn biquad(b: [f64; 3], a: [f64; 2], s: &mut [f64]) {
        let (mut x1, mut x2, mut y1, mut y2) = (0.0, 0.0, 0.0, 0.0);
        for v in s.iter_mut() {
            let x = *v;
            let y = b[0] * x + b[1] * x1 + b[2] * x2 - a[0] * y1 - a[1] * y2;
            x2 = x1;
            x1 = x;
            y2 = y1;
            y1 = y;
            *v = y;
        }
    }

    /// Butterworth high-pass (2nd order) coefficients at `fc` Hz (8 kHz).
    fn highpass(fc: f64) -> ([f64; 3], [f64; 2]) {
        let w = (std::f64::consts::PI * fc / 8000.0).tan();
        let k = 1.0 / (1.0 + std::f64::consts::SQRT_2 * w + w * w);
        let b = [k, -2.0 * k, k];
        let a = [2.0 * (w * w - 1.0) * k, (1.0 - std::f64::consts::SQRT_2 * w + w * w) * k];
        (b, a)
    }

    /// Butterworth low-pass (2nd order) at `fc` Hz (8 kHz).
    fn lowpass(fc: f64) -> ([f64; 3], [f64; 2]) {
        let w = (std::f64::consts::PI * fc / 8000.0).tan();
        let k = 1.0 / (1.0 + std::f64::consts::SQRT_2 * w + w * w);
        let b = [w * w * k, 2.0 * w * w * k, w * w * k];
        let a = [2.0 * (w * w - 1.0) * k, (1.0 - std::f64::consts::SQRT_2 * w + w * w) * k];
        (b, a)
    }

    /// A resonance at `f` Hz with pole radius `r`, unity gain at DC-ish (peaking).
    fn resonator(f: f64, r: f64) -> ([f64; 3], [f64; 2]) {
        let w = 2.0 * std::f64::consts::PI * f / 8000.0;
        ([1.0 - r, 0.0, -(1.0 - r)], [-2.0 * r * w.cos(), r * r])
    }

    /// One reflection: an impulse at `delay` through a band-pass and a resonance.
    fn reflection(delay: usize, f: f64, r: f64, gain: f64, out: &mut [f64]) {
        let mut s = vec![0.0; PATH_TAPS];
        if delay < PATH_TAPS {
            s[delay] = 1.0;
        }
        let (b, a) = highpass(300.0);
        biquad(b, a, &mut s);
        let (b, a) = lowpass(3400.0);
        biquad(b, a, &mut s);
        let mut res = s.clone();
        let (b, a) = resonator(f, r);
        biquad(b, a, &mut res);
        for ((o, d), r) in out.iter_mut().zip(&s).zip(&res) {
            *o += gain * (d + 1.5 * r);
        }
    }

    impl Hybrid {
        /// The impulse response (PATH_TAPS taps), scaled to unit energy.
        pub fn response(self) -> Vec<f32> {
            let mut h = vec![0.0f64; PATH_TAPS];
            match self {
                Hybrid::A => {
                    reflection(32, 600.0, 0.96, 1.0, &mut h);
                    reflection(352, 900.0, 0.95, 0.1, &mut h);
                }
                Hybrid::B => {
                    reflection(56, 1100.0, 0.97, -1.0, &mut h);
                    reflection(416, 500.0, 0.95, 0.125, &mut h);
                }
            }
            let e: f64 = h.iter().map(|v| v * v).sum();
            let k = if e > 0.0 { 1.0 / e.sqrt() } else { 0.0 };
            h.iter().map(|v| (v * k) as f32).collect()
        }
    }

    /// The echo of `far` through `h`, scaled so that its power is `erl_db` under the
    /// far's (over the whole signal), as f32 PCM16 units.
    pub fn echo(far: &[i16], h: &[f32], erl_db: f32) -> Vec<f32> {
        let mut y = vec![0.0f32; far.len()];
        for (n, &x) in far.iter().enumerate() {
            let x = f32::from(x);
            if x != 0.0 {
                for (yk, &hk) in y[n..].iter_mut().zip(h) {
                    *yk += x * hk;
                }
            }
        }
        let pf: f64 = far.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        let py: f64 = y.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        if py > 0.0 {
            let k = ((pf / py) * 10f64.powf(-f64::from(erl_db) / 10.0)).sqrt() as f32;
            for v in &mut y {
                *v *= k;
            }
        }
        y
    }
}

#[cfg(test)]
#[path = "echo_tests.rs"]
mod tests;
