//! The FXO line echo canceller on real speech: what scripts/bench/echo runs.
//! Usage: echo_bench FAR.wav TALKER.wav   (8 kHz mono PCM16; prints one JSON object)
//!
//! FAR.wav is the far end (the SIP caller: what the port plays to the line), TALKER.wav
//! a PSTN talker for the double-talk run. Both are scaled to an active speech level of
//! -18 dBm0. The line's capture is the far end through a simulated two-wire hybrid
//! (`core::media::echo::sim`: a 64 ms impulse response with a bulk delay, a dispersive
//! band-limited main reflection and a weak late reflection) at a given ERL, plus white
//! line noise at -70 dBm0. Every run is the canceller fed 20 ms frames, as the port's
//! audio thread will.
#![allow(clippy::disallowed_methods)] // a benchmark reads its input files and the clock

use ctibox::codec::wav;
use ctibox::core::media::echo::sim::{echo, Hybrid};
use ctibox::core::media::echo::{EchoCanceller, EchoConfig};
use ctibox::core::media::{dbm0_to_peak, FRAME_SAMPLES};
use std::time::Instant;

const RATE: usize = 8000;
const LEVEL_DBM0: f32 = -18.0;
const NOISE_DBM0: f32 = -70.0;
/// ERLE "after convergence" is measured from here to the end (s).
const SETTLED_S: f64 = 10.0;

fn load(path: &str) -> Vec<i16> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let w = wav::parse(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
    w.samples
}

/// Scales speech so that its 20 ms frames louder than 40 dB under the loudest average
/// `dbm0` (RMS of an equal-power sine).
fn level(s: &[i16], dbm0: f32) -> Vec<i16> {
    let frames: Vec<f64> = s.chunks(FRAME_SAMPLES).map(energy).collect();
    let max = frames.iter().cloned().fold(0.0, f64::max);
    let active: Vec<f64> = frames.iter().cloned().filter(|&e| e > max * 1e-4).collect();
    let rms = (active.iter().sum::<f64>() / (active.len().max(1) * FRAME_SAMPLES) as f64).sqrt();
    let target = f64::from(dbm0_to_peak(dbm0)) / std::f64::consts::SQRT_2;
    let k = if rms > 0.0 { target / rms } else { 0.0 };
    s.iter().map(|&v| (f64::from(v) * k).round().clamp(-32768.0, 32767.0) as i16).collect()
}

fn energy(s: &[i16]) -> f64 {
    s.iter().map(|&v| f64::from(v) * f64::from(v)).sum()
}

fn energy_f(s: &[f32]) -> f64 {
    s.iter().map(|&v| f64::from(v) * f64::from(v)).sum()
}

/// Deterministic white noise (xorshift64*, sum of four uniforms) at `dbm0`.
fn noise(n: usize, dbm0: f32) -> Vec<f32> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let rms = f64::from(dbm0_to_peak(dbm0)) / std::f64::consts::SQRT_2;
    (0..n)
        .map(|_| {
            let mut s = 0.0;
            for _ in 0..4 {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                s += (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
            }
            ((s - 2.0) * 3f64.sqrt() * rms) as f32
        })
        .collect()
}

fn mix(parts: &[&[f32]]) -> Vec<i16> {
    let n = parts.iter().map(|p| p.len()).min().unwrap_or(0);
    (0..n).map(|i| parts.iter().map(|p| p[i]).sum::<f32>().round().clamp(-32768.0, 32767.0) as i16).collect()
}

fn run(ec: &mut EchoCanceller, far: &[i16], near: &[i16]) -> Vec<i16> {
    let mut out = vec![0i16; near.len()];
    for ((f, n), o) in far.chunks(FRAME_SAMPLES).zip(near.chunks(FRAME_SAMPLES)).zip(out.chunks_mut(FRAME_SAMPLES)) {
        ec.process(f, n, o);
    }
    out
}

fn db(num: f64, den: f64) -> f64 {
    10.0 * (num / den.max(1.0)).log10()
}

fn secs(t: f64) -> usize {
    (t * RATE as f64) as usize
}

/// First time (s, window end) at which the ERLE over a 0.5 s window (sliding by 0.1 s)
/// reaches `target`, among windows where the echo is at least 20 dB over the line
/// noise (elsewhere there is too little echo to measure).
fn convergence(near: &[i16], echo_only: &[f32], noise: &[f32], out: &[i16], target: f64) -> Option<f64> {
    let w = secs(0.5);
    let step = secs(0.1);
    let mut a = 0;
    while a + w <= out.len() {
        let b = a + w;
        if energy_f(&echo_only[a..b]) >= 100.0 * energy_f(&noise[a..b])
            && db(energy(&near[a..b]), energy(&out[a..b])) >= target
        {
            return Some(b as f64 / RATE as f64);
        }
        a += step;
    }
    None
}

fn scenario(far: &[i16], path: Hybrid, erl_db: f32, noise_v: &[f32]) -> String {
    let e = echo(far, &path.response(), erl_db);
    let near = mix(&[&e, noise_v]);
    let s = secs(SETTLED_S);
    let mut fields = vec![
        format!("\"path\":\"{path:?}\""),
        format!("\"erl_db\":{erl_db}"),
        format!("\"noise_limit_db\":{:.1}", db(energy(&near[s..]), energy_f(&noise_v[s..near.len()]))),
    ];
    for nlp in [false, true] {
        let mut ec = EchoCanceller::new(EchoConfig { nlp, ..EchoConfig::default() });
        let out = run(&mut ec, far, &near);
        let tag = if nlp { "nlp" } else { "linear" };
        fields.push(format!("\"erle_{tag}_db\":{:.1}", db(energy(&near[s..]), energy(&out[s..]))));
        if !nlp {
            for target in [20.0, 25.0] {
                let t = convergence(&near, &e, noise_v, &out, target);
                fields.push(format!(
                    "\"conv_{target}_s\":{}",
                    t.map_or("null".to_string(), |t| format!("{t:.1}"))
                ));
            }
            fields.push(format!("\"stats_erle_db\":{:.1}", ec.stats().erle_db));
            fields.push(format!("\"transfers\":{}", ec.stats().transfers));
        }
    }
    format!("{{{}}}", fields.join(","))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: echo_bench FAR.wav TALKER.wav");
        std::process::exit(2);
    }
    let far = level(&load(&args[1]), LEVEL_DBM0);
    let talker_src = level(&load(&args[2]), LEVEL_DBM0);
    let n = far.len();
    assert!(n >= secs(SETTLED_S + 10.0), "far speech shorter than {} s", SETTLED_S + 10.0);
    let noise_v = noise(n, NOISE_DBM0);

    let scenarios: Vec<String> = [(Hybrid::A, 8.0), (Hybrid::B, 6.0), (Hybrid::A, 12.0)]
        .iter()
        .map(|&(p, erl)| scenario(&far, p, erl, &noise_v))
        .collect();

    // An echo path change: path A (8 dB) until 30 s, then path B (10 dB).
    let change = secs(30.0).min(n / 2);
    let ea = echo(&far, &Hybrid::A.response(), 8.0);
    let eb = echo(&far, &Hybrid::B.response(), 10.0);
    let e_pc: Vec<f32> = (0..n).map(|i| if i < change { ea[i] } else { eb[i] }).collect();
    let near_pc = mix(&[&e_pc, &noise_v]);
    let mut ec = EchoCanceller::new(EchoConfig { nlp: false, ..EchoConfig::default() });
    let out_pc = run(&mut ec, &far, &near_pc);
    let mut pc = vec![format!("\"change_s\":{:.1}", change as f64 / RATE as f64)];
    for target in [20.0, 25.0] {
        let t = convergence(&near_pc[change..], &e_pc[change..], &noise_v[change..], &out_pc[change..], target);
        pc.push(format!("\"conv_{target}_s\":{}", t.map_or("null".to_string(), |t| format!("{t:.1}"))));
    }
    let settled = (change + secs(SETTLED_S)).min(n);
    pc.push(format!("\"erle_settled_db\":{:.1}", db(energy(&near_pc[settled..]), energy(&out_pc[settled..]))));

    // Double talk: the PSTN talker from 12 s for up to 6 s, as loud as the far end.
    let e = ea;
    let (dt_a, dt_b) = (secs(12.0), secs(12.0) + talker_src.len().min(secs(6.0)));
    let mut talker = vec![0.0f32; n];
    for (t, &x) in talker[dt_a..dt_b].iter_mut().zip(&talker_src) {
        *t = f32::from(x);
    }
    let near = mix(&[&e, &noise_v, &talker]);
    let mut dt = Vec::new();
    let mut xcorr_lag = 0i64;
    for nlp in [false, true] {
        let mut ec = EchoCanceller::new(EchoConfig { nlp, ..EchoConfig::default() });
        let out = run(&mut ec, &far, &near);
        let o = &out[dt_a..dt_b];
        let t = &talker[dt_a..dt_b];
        let proj = |lag: i64| -> f64 {
            (0..o.len())
                .filter_map(|i| {
                    let j = i as i64 + lag;
                    (j >= 0 && (j as usize) < o.len()).then(|| f64::from(o[j as usize]) * f64::from(t[i]))
                })
                .sum()
        };
        let gain = 20.0 * (proj(0) / energy_f(t)).log10();
        let tag = if nlp { "nlp" } else { "linear" };
        dt.push(format!("\"talker_gain_{tag}_db\":{gain:.2}"));
        if !nlp {
            let after_a = dt_b;
            let after_b = (dt_b + secs(2.0)).min(n);
            dt.push(format!("\"erle_after_2s_db\":{:.1}", db(energy(&near[after_a..after_b]), energy(&out[after_a..after_b]))));
            dt.push(format!("\"erle_rest_db\":{:.1}", db(energy(&near[after_b..]), energy(&out[after_b..]))));
            dt.push(format!("\"dt_frames\":{}", ec.stats().double_talk_frames));
            // Where the talker lines up with the output: the lag of the largest
            // cross-correlation over -40..=40 samples.
            xcorr_lag = (-40..=40).max_by(|&a, &b| proj(a).total_cmp(&proj(b))).unwrap_or(0);
        }
    }
    dt.push(format!("\"talker_s\":{:.1}", (dt_b - dt_a) as f64 / RATE as f64));

    // Latency: an impulse on the line with the far end silent, into a fresh canceller.
    let mut ec = EchoCanceller::new(EchoConfig::default());
    let mut imp = [0i16; FRAME_SAMPLES];
    imp[50] = 16_000;
    let mut out = [0i16; FRAME_SAMPLES];
    ec.process(&[0; FRAME_SAMPLES], &imp, &mut out);
    let peak = out.iter().enumerate().max_by_key(|(_, v)| v.unsigned_abs()).map_or(0, |(i, _)| i);
    let impulse_lag = peak as i64 - 50;

    // CPU: the whole signal through a fresh canceller, best of 10, NLP on and off.
    let near1 = mix(&[&e, &noise_v]);
    let mut cpu = Vec::new();
    for nlp in [true, false] {
        let mut best = f64::MAX;
        for _ in 0..10 {
            let mut ec = EchoCanceller::new(EchoConfig { nlp, ..EchoConfig::default() });
            let t0 = Instant::now();
            let out = run(&mut ec, &far, &near1);
            let dt = t0.elapsed().as_secs_f64();
            std::hint::black_box(&out);
            best = best.min(dt);
        }
        let frames = n.div_ceil(FRAME_SAMPLES) as f64;
        let us = best * 1e6 / frames;
        let tag = if nlp { "nlp" } else { "linear" };
        cpu.push(format!("\"us_per_frame_{tag}\":{us:.1},\"core_pct_{tag}\":{:.3}", us / 20_000.0 * 100.0));
    }

    println!(
        "{{\"far_s\":{:.1},\"taps\":{},\"scenarios\":[{}],\"double_talk\":{{{}}},\"path_change\":{{{}}},\"impulse_lag\":{},\"xcorr_lag\":{},{}}}",
        n as f64 / RATE as f64,
        EchoCanceller::new(EchoConfig::default()).taps(),
        scenarios.join(","),
        dt.join(","),
        pc.join(","),
        impulse_lag,
        xcorr_lag,
        cpu.join(",")
    );
}
