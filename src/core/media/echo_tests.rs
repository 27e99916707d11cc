//! Tests for the line echo canceller: convergence on a simulated 64 ms hybrid echo
//! path with a speech-like far signal, double talk, an echo path change, no added
//! delay, the NLP and its comfort noise, and any input without a panic.

use super::sim::{echo, Hybrid};
use super::*;
use crate::core::media::{dbm0_to_peak, FRAME_SAMPLES};

const RATE: usize = 8000;

/// xorshift64*: deterministic noise for the signals.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Roughly Gaussian, unit variance (sum of 4 uniforms).
    fn gauss(&mut self) -> f64 {
        let s: f64 = (0..4).map(|_| self.unit()).sum();
        (s - 2.0) * 3f64.sqrt()
    }
}

/// A two-pole resonance at `f` Hz with bandwidth `bw` Hz, run in place.
fn formant(s: &mut [f64], f: f64, bw: f64) {
    let r = (-std::f64::consts::PI * bw / RATE as f64).exp();
    let c = 2.0 * r * (2.0 * std::f64::consts::PI * f / RATE as f64).cos();
    let (mut y1, mut y2) = (0.0, 0.0);
    for v in s.iter_mut() {
        let y = (1.0 - r) * *v + c * y1 - r * r * y2;
        y2 = y1;
        y1 = y;
        *v = y;
    }
}

/// Speech-like PCM16: words of 2-4 syllables (voiced: a jittered glottal pulse train at
/// 100-220 Hz; or unvoiced noise), each through three formants that change per
/// syllable, under a raised-cosine envelope, with pauses between words. The active
/// parts are scaled to `level_dbm0`.
fn speech(seed: u64, seconds: f64, level_dbm0: f32) -> Vec<i16> {
    let n = (seconds * RATE as f64) as usize;
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut s = vec![0.0f64; n];
    let mut active = vec![false; n];
    let mut t = (rng.unit() * 800.0) as usize;
    while t < n {
        let syllables = 2 + (rng.next() % 3) as usize;
        for _ in 0..syllables {
            let len = 960 + (rng.unit() * 1400.0) as usize;
            let end = (t + len).min(n);
            if t >= end {
                break;
            }
            let voiced = rng.unit() < 0.8;
            let f0 = 100.0 + rng.unit() * 120.0;
            let mut exc = vec![0.0f64; end - t];
            let mut phase = 0.0;
            for e in exc.iter_mut() {
                if voiced {
                    phase += f0 * (1.0 + 0.02 * rng.gauss()) / RATE as f64;
                    if phase >= 1.0 {
                        phase -= 1.0;
                        *e = 1.0;
                    }
                    *e += 0.05 * rng.gauss();
                } else {
                    *e = 0.3 * rng.gauss();
                }
            }
            formant(&mut exc, 300.0 + rng.unit() * 500.0, 90.0);
            formant(&mut exc, 900.0 + rng.unit() * 1300.0, 120.0);
            formant(&mut exc, 2400.0 + rng.unit() * 600.0, 160.0);
            let m = exc.len() as f64;
            for (i, e) in exc.iter().enumerate() {
                let w = (std::f64::consts::PI * i as f64 / m).sin();
                s[t + i] += e * w * w;
                active[t + i] = true;
            }
            t = end;
        }
        t += 1200 + (rng.unit() * 3200.0) as usize;
    }
    // Scale the active part to the level (RMS of an equal-power sine).
    let (e, c) = s.iter().zip(&active).filter(|(_, &a)| a).fold((0.0, 0usize), |(e, c), (v, _)| (e + v * v, c + 1));
    let rms = if c > 0 { (e / c as f64).sqrt() } else { 1.0 };
    let target = f64::from(dbm0_to_peak(level_dbm0)) / std::f64::consts::SQRT_2;
    let k = if rms > 0.0 { target / rms } else { 0.0 };
    s.iter().map(|v| (v * k).round().clamp(-32768.0, 32767.0) as i16).collect()
}

/// White line noise at `dbm0` (RMS of an equal-power sine).
fn noise(seed: u64, n: usize, dbm0: f32) -> Vec<f32> {
    let mut rng = Rng(seed | 1);
    let rms = f64::from(dbm0_to_peak(dbm0)) / std::f64::consts::SQRT_2;
    (0..n).map(|_| (rng.gauss() * rms) as f32).collect()
}

/// The captured signal: echo + near-end parts, rounded to PCM16.
fn mix(parts: &[&[f32]]) -> Vec<i16> {
    let n = parts.iter().map(|p| p.len()).min().unwrap_or(0);
    (0..n)
        .map(|i| parts.iter().map(|p| p[i]).sum::<f32>().round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

#[allow(dead_code)]
fn to_f32(s: &[i16]) -> Vec<f32> {
    s.iter().map(|&v| f32::from(v)).collect()
}

/// Runs a canceller over whole signals, frame by frame.
fn run(ec: &mut EchoCanceller, far: &[i16], near: &[i16]) -> Vec<i16> {
    let mut out = vec![0i16; near.len()];
    for ((f, n), o) in far.chunks(FRAME_SAMPLES).zip(near.chunks(FRAME_SAMPLES)).zip(out.chunks_mut(FRAME_SAMPLES)) {
        ec.process(f, n, o);
    }
    out
}

fn energy(s: &[i16]) -> f64 {
    s.iter().map(|&v| f64::from(v) * f64::from(v)).sum()
}

/// ERLE (dB) over samples `a..b` (seconds): near power over output power.
fn erle(near: &[i16], out: &[i16], a: f64, b: f64) -> f64 {
    let (a, b) = ((a * RATE as f64) as usize, (b * RATE as f64) as usize);
    10.0 * (energy(&near[a..b]) / energy(&out[a..b]).max(1.0)).log10()
}

fn no_nlp() -> EchoConfig {
    EchoConfig { nlp: false, ..EchoConfig::default() }
}

/// Seconds of the shared far signal.
const SECS: f64 = 16.0;

/// The far end (speech-like, -18 dBm0), its echo through hybrid A at 8 dB ERL and
/// through hybrid B at 10 dB, and line noise at -70 dBm0: made once, shared.
struct Signals {
    far: Vec<i16>,
    echo_a: Vec<f32>,
    echo_b: Vec<f32>,
    noise: Vec<f32>,
}

fn signals() -> &'static Signals {
    static S: std::sync::OnceLock<Signals> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        let far = speech(1, SECS, -18.0);
        let echo_a = echo(&far, &Hybrid::A.response(), 8.0);
        let echo_b = echo(&far, &Hybrid::B.response(), 10.0);
        let noise = noise(7, far.len(), -70.0);
        Signals { far, echo_a, echo_b, noise }
    })
}

/// Single talk: the far end and what the line gives back (echo A + noise), `secs` long.
fn single_talk(secs: f64) -> (&'static [i16], Vec<i16>) {
    let s = signals();
    let n = (secs * RATE as f64) as usize;
    (&s.far[..n], mix(&[&s.echo_a[..n], &s.noise[..n]]))
}

fn scaled(v: &[f32], db: f32) -> Vec<f32> {
    let k = 10f32.powf(db / 20.0);
    v.iter().map(|&x| x * k).collect()
}

#[test]
fn the_simulated_echo_path_spans_64_ms_with_a_bulk_delay_and_the_erl_asked_for() {
    let h = Hybrid::A.response();
    assert_eq!(h.len(), 512);
    let first = h.iter().position(|v| v.abs() > 1e-3).unwrap();
    let last = h.iter().rposition(|v| v.abs() > 1e-3).unwrap();
    assert_eq!(first, 32, "4 ms of bulk delay");
    assert!(last > 400, "the late reflection reaches past 50 ms: {last}");
    let s = signals();
    let erl = 10.0 * (energy(&s.far) / s.echo_a.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>()).log10();
    assert!((erl - 8.0).abs() < 0.01, "{erl}");
}

#[test]
fn converges_to_at_least_25_db_erle_on_a_64_ms_hybrid_with_speech() {
    let (far, near) = single_talk(12.0);
    let mut ec = EchoCanceller::new(no_nlp());
    assert_eq!(ec.taps(), 512);
    let out = run(&mut ec, far, &near);
    let first = erle(&near, &out, 0.0, 0.5);
    let last = erle(&near, &out, 6.0, 12.0);
    eprintln!("ERLE first 0.5 s {first:.1} dB, 6-12 s {last:.1} dB, {:?}", ec.stats());
    assert!(first < 15.0, "not converged at once: {first:.1} dB");
    assert!(last >= 25.0, "ERLE after convergence {last:.1} dB");
    let st = ec.stats();
    assert!(st.erle_db >= 20.0, "the estimate agrees: {st:?}");
    assert!(st.transfers > 0, "{st:?}");
    assert_eq!(st.frames as usize, far.len().div_ceil(FRAME_SAMPLES));
}

#[test]
fn converges_at_6_db_erl_too_where_the_echo_nears_the_double_talk_threshold() {
    let s = signals();
    let n = 10 * RATE;
    let near = mix(&[&scaled(&s.echo_b[..n], 4.0), &s.noise[..n]]);
    let mut ec = EchoCanceller::new(no_nlp());
    let out = run(&mut ec, &s.far[..n], &near);
    let last = erle(&near, &out, 5.0, 10.0);
    eprintln!("ERL 6 dB: ERLE 5-10 s {last:.1} dB");
    assert!(last >= 25.0, "ERLE after convergence {last:.1} dB");
}

/// The near talker's gain (dB) in the output over `a..b`: its projection.
fn talker_gain_db(out: &[i16], talker: &[f32], a: usize, b: usize) -> f64 {
    let dot: f64 = out[a..b].iter().zip(&talker[a..b]).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
    let tt: f64 = talker[a..b].iter().map(|&y| f64::from(y) * f64::from(y)).sum();
    20.0 * (dot / tt).log10()
}

/// Echo A + noise + a PSTN talker at `level` from 6 s to 10 s.
fn double_talk(level: f32) -> (Vec<i16>, Vec<f32>) {
    let s = signals();
    let mut talker = vec![0.0f32; s.far.len()];
    for (t, &x) in talker[6 * RATE..10 * RATE].iter_mut().zip(&speech(2, 4.0, level)) {
        *t = f32::from(x);
    }
    (mix(&[&s.echo_a, &s.noise, &talker]), talker)
}

#[test]
fn double_talk_neither_diverges_the_filter_nor_attenuates_the_near_talker() {
    let far = &signals().far;
    // The talker as loud as the far end: the detector sees it.
    let (near, talker) = double_talk(-18.0);
    for nlp in [false, true] {
        let mut ec = EchoCanceller::new(EchoConfig { nlp, ..EchoConfig::default() });
        let out = run(&mut ec, far, &near);
        let st = ec.stats();
        let gain_db = talker_gain_db(&out, &talker, 6 * RATE, 10 * RATE);
        let (after, later) = (erle(&near, &out, 10.0, 12.0), erle(&near, &out, 12.0, SECS));
        eprintln!("nlp {nlp}: near talker {gain_db:.2} dB, ERLE 10-12 s {after:.1} dB, 12-16 s {later:.1} dB, {st:?}");
        assert!(st.double_talk_frames > 0, "{st:?}");
        if nlp {
            assert!(gain_db > -3.0, "near talker through the NLP: {gain_db:.2} dB");
        } else {
            assert!(gain_db.abs() < 1.0, "near talker: {gain_db:.2} dB");
            assert!(after >= 20.0, "ERLE right after double talk: {after:.1} dB");
            assert!(later >= 25.0, "ERLE later: {later:.1} dB");
        }
    }
}

#[test]
fn a_near_talker_too_quiet_for_the_detector_does_not_reach_the_output_filter() {
    // 12 dB under the far end, 4 dB under its echo: Geigel cannot see it, so the
    // background filter adapts on it; the foreground must not take its taps.
    let far = &signals().far;
    let (near, talker) = double_talk(-30.0);
    let mut ec = EchoCanceller::new(no_nlp());
    let out = run(&mut ec, far, &near);
    let gain_db = talker_gain_db(&out, &talker, 6 * RATE, 10 * RATE);
    let after = erle(&near, &out, 10.0, 12.0);
    eprintln!("quiet talker {gain_db:.2} dB, ERLE 10-12 s {after:.1} dB, {:?}", ec.stats());
    assert!(gain_db.abs() < 1.0, "near talker: {gain_db:.2} dB");
    assert!(after >= 25.0, "ERLE right after double talk: {after:.1} dB");
}

#[test]
fn an_echo_path_change_is_learnt_again() {
    let s = signals();
    let change = 7 * RATE;
    let e: Vec<f32> = (0..s.far.len()).map(|i| if i < change { s.echo_a[i] } else { s.echo_b[i] }).collect();
    let near = mix(&[&e, &s.noise]);
    let mut ec = EchoCanceller::new(no_nlp());
    let before = run(&mut ec, &s.far[..change], &near[..change]);
    let transfers = ec.stats().transfers;
    let after = run(&mut ec, &s.far[change..], &near[change..]);
    let out: Vec<i16> = before.into_iter().chain(after).collect();
    let converged = erle(&near, &out, 3.0, 7.0);
    let just_after = erle(&near, &out, 7.0, 7.2);
    let relearnt = erle(&near, &out, 11.0, SECS);
    eprintln!("before {converged:.1} dB, just after {just_after:.1} dB, relearnt {relearnt:.1} dB");
    assert!(converged >= 25.0, "{converged:.1} dB");
    assert!(just_after < 10.0, "the change was felt: {just_after:.1} dB");
    assert!(relearnt >= 25.0, "re-converged: {relearnt:.1} dB");
    assert!(ec.stats().transfers > transfers);
}

#[test]
fn adds_no_delay_output_sample_n_follows_near_sample_n() {
    let (far, near) = single_talk(4.0);
    let mut ec = EchoCanceller::new(no_nlp());
    let k = 3 * RATE + 37;
    let _ = run(&mut ec, &far[..3 * RATE], &near[..3 * RATE]);
    // Two copies of the same (adapted) canceller; one near sample differs.
    let mut twin = ec.clone();
    let mut near2 = near.clone();
    near2[k] = near2[k].saturating_add(5000);
    let o1 = run(&mut ec, &far[3 * RATE..], &near[3 * RATE..]);
    let o2 = run(&mut twin, &far[3 * RATE..], &near2[3 * RATE..]);
    let j = k - 3 * RATE;
    assert_eq!(o1[..j], o2[..j], "nothing before the changed sample moves");
    let step = i32::from(o2[j]) - i32::from(o1[j]);
    assert!((step - 5000).abs() <= 2, "the change is in the same sample: {step}");
    // Also from a fresh canceller with the far end silent: an impulse comes out at once.
    let mut ec = EchoCanceller::new(no_nlp());
    let mut near = [0i16; 160];
    near[10] = 10_000;
    let mut out = [0i16; 160];
    ec.process(&[0; 160], &near, &mut out);
    assert_eq!(out[..10], [0; 10]);
    assert_eq!(out[10], 10_000);
}

#[test]
fn the_nlp_takes_out_the_residual_and_fills_with_noise_at_the_line_level() {
    // A 32 ms tail on a path whose late reflection is at 44 ms: the linear part leaves
    // that reflection's echo, the NLP is there for what it leaves.
    let (far, near) = single_talk(10.0);
    let short = EchoConfig { tail_ms: 32, ..EchoConfig::default() };
    let mut lin = EchoCanceller::new(EchoConfig { nlp: false, ..short });
    let mut nlp = EchoCanceller::new(short);
    let o_lin = run(&mut lin, far, &near);
    let o_nlp = run(&mut nlp, far, &near);
    let e_lin = erle(&near, &o_lin, 6.0, 10.0);
    let e_nlp = erle(&near, &o_nlp, 6.0, 10.0);
    eprintln!("NLP {e_nlp:.1} dB, linear {e_lin:.1} dB");
    assert!(e_lin < 30.0, "the late reflection is left: {e_lin:.1} dB");
    assert!(e_nlp >= e_lin + 10.0, "NLP {e_nlp:.1} dB, linear {e_lin:.1} dB");
    assert!(nlp.stats().nlp_frames > 0);
    assert_eq!(lin.stats().nlp_frames, 0);
    // What is left is comfort noise and line noise near the line noise's level
    // (-70 dBm0), not silence.
    let tail = &o_nlp[6 * RATE..];
    let p_line: f64 = signals().noise[6 * RATE..10 * RATE].iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    let ratio_db = 10.0 * (energy(tail) / p_line).log10();
    eprintln!("out vs line noise {ratio_db:.1} dB");
    assert!(ratio_db > -6.0 && ratio_db < 6.0, "comfort noise vs line noise: {ratio_db:.1} dB");
}

#[test]
fn reset_forgets_the_path_and_the_counters() {
    let (far, near) = single_talk(3.0);
    let mut ec = EchoCanceller::new(no_nlp());
    let first = run(&mut ec, far, &near);
    assert!(ec.stats().frames > 0);
    ec.reset();
    assert_eq!(ec.stats(), EchoStats::default());
    let again = run(&mut ec, far, &near);
    assert_eq!(first, again);
}

#[test]
fn any_input_is_taken_without_a_panic() {
    let mut ec = EchoCanceller::new(EchoConfig { tail_ms: 0, step: f32::NAN, dt_threshold_db: f32::INFINITY, nlp: true });
    assert_eq!(ec.taps(), 8);
    assert_eq!(ec.config().step, 0.5);
    let big = EchoCanceller::new(EchoConfig { tail_ms: u32::MAX, ..EchoConfig::default() });
    assert_eq!(big.taps(), MAX_TAIL_MS as usize * 8);
    let mut ec64 = EchoCanceller::new(EchoConfig::default());
    let mut out = [0i16; 160];
    // Extremes, alternating and constant, on both sides.
    let alt: Vec<i16> = (0..160).map(|i| if i % 2 == 0 { i16::MAX } else { i16::MIN }).collect();
    for (f, n) in [
        (alt.clone(), alt.clone()),
        (vec![i16::MIN; 160], vec![i16::MAX; 160]),
        (vec![i16::MAX; 160], vec![i16::MIN; 160]),
        (vec![0; 160], vec![i16::MIN; 160]),
    ] {
        for _ in 0..50 {
            ec.process(&f, &n, &mut out);
            ec64.process(&f, &n, &mut out);
        }
    }
    // Unequal and empty slices: the common part is processed, the rest passed through.
    let mut out7 = [1i16; 7];
    ec64.process(&[0; 3], &[100; 5], &mut out7);
    assert_eq!(out7[3..], [100, 100, 0, 0]);
    ec64.process(&[], &[], &mut []);
    ec64.process(&[0; 160], &[0; 10], &mut out);
    // Silence in, silence out; a DC offset on the line fades out.
    let mut ec = EchoCanceller::new(EchoConfig::default());
    for _ in 0..50 {
        ec.process(&[0; 160], &[0; 160], &mut out);
        assert_eq!(out, [0; 160]);
    }
    for _ in 0..100 {
        ec.process(&[3000; 160], &[-5000; 160], &mut out);
    }
    assert!(out.iter().all(|&v| v.abs() <= 1), "{:?}", &out[..8]);
}
