//! Jitter buffer tests on a virtual clock: synthetic jitter, reordering, loss, drift.

use super::*;

const PTIME_US: u64 = 20_000;

/// Sample value for extended timestamp position `pos`: a ramp, so order is visible.
fn val(pos: u64) -> i16 {
    (pos % 30_000) as i16
}

fn packet(start: u64) -> Vec<i16> {
    (0..160).map(|i| val(start + i)).collect()
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[derive(Default, Debug)]
struct Run {
    kinds: Vec<Frame>,
    frames: Vec<[i16; 160]>,
    max_target: u32,
    delays: Vec<u32>,
}

/// Sends `n` packets (packet i: timestamp `ts0 + 160 i`, sent at 20 ms * i * `rate`),
/// each delayed by `delay(i)` us or lost when `None`, and pops a frame every 20 ms
/// at phase 7 ms, for `n + 50` ticks.
fn simulate(jb: &mut JitterBuffer, n: u64, ts0: u32, rate: f64, mut delay: impl FnMut(u64) -> Option<u64>) -> Run {
    let mut arrivals: Vec<(u64, u64)> =
        (0..n).filter_map(|i| delay(i).map(|d| ((i as f64 * PTIME_US as f64 * rate) as u64 + d, i))).collect();
    arrivals.sort();
    let mut run = Run::default();
    let mut next = 0;
    for tick in 0..n + 50 {
        let now = tick * PTIME_US + 7_000;
        while next < arrivals.len() && arrivals[next].0 <= now {
            let (at, i) = arrivals[next];
            let ts = ts0.wrapping_add((i * 160) as u32);
            jb.push(Time(at), ts, &packet(u64::from(ts0) + i * 160));
            next += 1;
        }
        let mut f = [0i16; 160];
        run.kinds.push(jb.pop(Time(now), &mut f));
        run.frames.push(f);
        run.max_target = run.max_target.max(jb.target_ms());
        if let Some(d) = jb.delay_ms(Time(now)) {
            run.delays.push(d);
        }
    }
    run
}

/// Every audio frame is a contiguous ramp, and audio frames never go backwards.
fn assert_in_order(run: &Run) {
    let mut last: Option<i16> = None;
    for (k, f) in run.kinds.iter().zip(&run.frames) {
        if *k != Frame::Audio {
            continue;
        }
        for w in f.windows(2) {
            assert!(w[1] == w[0] + 1 || (w[0] == 29_999 && w[1] == 0), "not contiguous: {:?}", &f[..4]);
        }
        if let Some(l) = last {
            assert!(f[0] > l || l > 25_000, "went backwards: {l} then {}", f[0]);
        }
        last = Some(f[159]);
    }
}

fn count(run: &Run, k: Frame) -> usize {
    run.kinds.iter().filter(|&&x| x == k).count()
}

#[test]
fn clean_stream_plays_everything_at_minimum_delay() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let run = simulate(&mut jb, 500, 1000, 1.0, |_| Some(30_000));
    assert_in_order(&run);
    let s = jb.stats();
    // The only concealment is the three frames after the stream stops.
    assert_eq!((s.late, s.concealed_frames, s.dropped_frames, s.inserted_frames), (0, 3, 0, 0));
    assert_eq!(s.audio_frames, 500);
    let first = run.kinds.iter().position(|&k| k == Frame::Audio).unwrap();
    assert!(run.kinds[..first].iter().all(|&k| k == Frame::Idle));
    assert_eq!(count(&run, Frame::Audio), 500);
    assert_eq!(
        &run.kinds[first + 500..first + 504],
        &[Frame::Concealed, Frame::Concealed, Frame::Concealed, Frame::Silence]
    );
    assert_eq!(jb.target_ms(), 20);
    assert!(run.delays.iter().all(|&d| (20..=50).contains(&d)), "{:?}", &run.delays[..10]);
}

#[test]
fn adapts_to_jitter_with_few_late_packets() {
    let mut rng = Lcg(1);
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let run = simulate(&mut jb, 3000, 0, 1.0, |_| Some(30_000 + rng.next() % 60_000));
    assert_in_order(&run);
    let s = *jb.stats();
    let late = s.late as f64 / 3000.0;
    eprintln!(
        "jitter: 0-60 ms uniform: target {} ms, late {:.1}%, concealed {}, inserted {}, dropped {}",
        jb.target_ms(),
        late * 100.0,
        s.concealed_frames,
        s.inserted_frames,
        s.dropped_frames
    );
    assert!((50..=65).contains(&jb.target_ms()), "{}", jb.target_ms());
    assert!(late < 0.03, "{late}");
    assert!(run.max_target <= 200);
}

#[test]
fn reordering_is_absorbed() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    // Every odd packet overtakes its predecessor by 10 ms.
    let run = simulate(&mut jb, 1000, 5, 1.0, |i| Some(if i % 2 == 0 { 40_000 } else { 15_000 }));
    assert_in_order(&run);
    let s = jb.stats();
    assert_eq!(s.late, 0);
    assert!(s.audio_frames >= 995, "{s:?}");
}

#[test]
fn loss_is_concealed_then_silent() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let lost = |i: u64| i == 100 || (200..206).contains(&i);
    let run = simulate(&mut jb, 400, 0, 1.0, |i| (!lost(i)).then_some(30_000));
    assert_in_order(&run);
    // Find the frames around the first loss.
    let k = run.frames.iter().position(|f| f[0] == val(99 * 160)).unwrap();
    assert_eq!(run.kinds[k + 1], Frame::Concealed);
    for i in 0..160 {
        assert_eq!(run.frames[k + 1][i], (f32::from(run.frames[k][i]) * 0.5) as i16);
    }
    assert_eq!(run.kinds[k + 2], Frame::Audio);
    // Six in a row: three attenuated repeats, then silence.
    let k = run.frames.iter().position(|f| f[0] == val(199 * 160)).unwrap();
    assert_eq!(
        &run.kinds[k + 1..k + 8],
        &[
            Frame::Concealed,
            Frame::Concealed,
            Frame::Concealed,
            Frame::Silence,
            Frame::Silence,
            Frame::Silence,
            Frame::Audio
        ]
    );
    assert_eq!(run.frames[k + 3][100], (f32::from(run.frames[k][100]) * 0.125) as i16);
    assert!(run.frames[k + 4].iter().all(|&x| x == 0));
    assert_eq!(jb.stats().concealed_frames, 4 + 3, "plus three after the stream stops");
}

#[test]
fn spike_grows_the_delay_then_it_shrinks_back_within_bounds() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    // 2 s of 150 ms extra delay in the middle of 12 s; and one 1 s outlier.
    let run = simulate(&mut jb, 600, 0, 1.0, |i| {
        Some(if (200..300).contains(&i) {
            180_000
        } else if i == 400 {
            1_000_000
        } else {
            30_000
        })
    });
    assert_in_order(&run);
    let s = *jb.stats();
    assert!(run.max_target >= 140 && run.max_target <= 200, "{}", run.max_target);
    assert!(s.inserted_frames > 0 && s.dropped_frames > 0, "{s:?}");
    assert!(s.late >= 1, "the 1 s outlier is late: {s:?}");
    assert_eq!(jb.target_ms(), 20, "back to the minimum");
    assert!(*run.delays.last().unwrap() <= 50, "{:?}", run.delays.last());
}

#[test]
fn timestamp_wrap_and_sender_clock_drift() {
    // Timestamps cross 2^32; the sender's clock runs 0.5 % fast for 60 s.
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let ts0 = u32::MAX - 160 * 100;
    let run = simulate(&mut jb, 3000, ts0, 0.995, |_| Some(30_000));
    assert_in_order(&run);
    let s = jb.stats();
    assert_eq!((s.late, s.overflow, s.resyncs), (0, 0, 0));
    assert!(s.dropped_frames >= 10, "{s:?}");
    assert!(run.delays.iter().rev().take(100).all(|&d| d <= 60), "{:?}", run.delays.last());
    // Slow sender: the buffer inserts instead.
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let run = simulate(&mut jb, 3000, 0, 1.005, |_| Some(30_000));
    assert_in_order(&run);
    assert!(jb.stats().inserted_frames >= 10 && jb.stats().late == 0, "{:?}", jb.stats());
}

#[test]
fn holds_64_packets_refuses_duplicate_bad_and_late_ones_and_resyncs_on_a_far_jump() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let mut f = [0i16; 160];
    assert_eq!(jb.pop(Time(0), &mut f), Frame::Idle);
    for i in 0..100u32 {
        let r = jb.push(Time(0), i * 160, &packet(u64::from(i) * 160));
        assert_eq!(r, if i < 64 { Pushed::Stored } else { Pushed::Overflow });
    }
    assert_eq!(jb.len(), 64);
    assert_eq!(jb.push(Time(0), 0, &packet(0)), Pushed::Duplicate);
    assert_eq!(jb.push(Time(0), 0, &[]), Pushed::Invalid);
    assert_eq!(jb.push(Time(0), 0, &[0; 2000]), Pushed::Invalid);
    assert_eq!(jb.stats().overflow, 36);
    // Play a little, then a packet for audio already played is late.
    for t in 0..10u64 {
        jb.pop(Time(t * PTIME_US), &mut f);
    }
    assert_eq!(jb.push(Time(200_000), 0, &packet(0)), Pushed::Late);
    // A timestamp 10 s away restarts the buffer.
    assert_eq!(jb.push(Time(220_000), 80_000 + 100_000, &packet(0)), Pushed::Resynced);
    assert_eq!(jb.len(), 1);
    assert_eq!(jb.stats().resyncs, 1);
    jb.reset();
    assert!(jb.is_empty());
    assert_eq!(jb.stats().overflow, 36, "counters survive a reset");
}

#[test]
fn interleaved_10_and_30_ms_packets_play_out_as_contiguous_20_ms_frames() {
    // 10 ms and 30 ms packets interleaved still give contiguous 20 ms frames.
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let mut pos = 0u64;
    let mut t = 0u64;
    let mut kinds = Vec::new();
    let mut out = Vec::new();
    let mut next_tick = 40_000u64;
    for k in 0..200 {
        let len = if k % 2 == 0 { 80 } else { 240 };
        let p: Vec<i16> = (0..len).map(|i| val(pos + i)).collect();
        jb.push(Time(t + 30_000), pos as u32, &p);
        pos += len;
        t += len * 125;
        while next_tick <= t + 30_000 {
            let mut f = [0i16; 160];
            kinds.push(jb.pop(Time(next_tick), &mut f));
            out.push(f);
            next_tick += PTIME_US;
        }
    }
    let audio: Vec<&[i16; 160]> = kinds.iter().zip(&out).filter(|(k, _)| **k == Frame::Audio).map(|(_, f)| f).collect();
    assert!(audio.len() > 180);
    for f in audio {
        assert!(f.windows(2).all(|w| w[1] == w[0] + 1 || w[1] == 0));
    }
}
