//! Tests for the DTMF generator and detector (Q.24 tolerances, timing, talk-off).

use super::super::g711::Law;
use super::*;

fn digits() -> impl Iterator<Item = Digit> {
    Digit::ALL.chars().filter_map(Digit::from_char)
}

/// 100 ms of silence, `on_ms` of the digit, 100 ms of silence.
fn burst(d: Digit, tone: &DtmfTone, on_ms: usize) -> Vec<i16> {
    let mut s = vec![0i16; 800];
    synth_digit(d, tone, on_ms * 8, &mut s);
    s.extend(std::iter::repeat_n(0, 800));
    s
}

/// The digits a fresh detector reports (Start events), fed in 160-sample frames.
fn detect(samples: &[i16]) -> Vec<Digit> {
    let mut det = DtmfDetector::default();
    let mut out = Vec::new();
    for chunk in samples.chunks(160) {
        det.process(chunk);
        while let Some(e) = det.poll_event() {
            if let DtmfEvent::Start { digit, .. } = e {
                out.push(digit);
            }
        }
    }
    out
}

fn tone(low_factor: f32, high_factor: f32) -> DtmfTone {
    DtmfTone { low_freq_factor: low_factor, high_freq_factor: high_factor, ..DtmfTone::default() }
}

#[test]
fn digits_map_to_their_keypad_frequencies_event_codes_and_characters() {
    assert_eq!(Digit::from_char('5').unwrap().freqs(), (770.0, 1336.0));
    assert_eq!(Digit::from_char('*').unwrap().event(), 10);
    assert_eq!(Digit::from_char('#').unwrap().freqs(), (941.0, 1477.0));
    assert_eq!(Digit::from_char('d').unwrap().freqs(), (941.0, 1633.0));
    assert_eq!(Digit::from_event(12).unwrap().to_char(), 'A');
    assert!(Digit::from_event(16).is_none());
    assert!(Digit::from_char('x').is_none());
    assert_eq!(digits().map(|d| d.to_string()).collect::<String>(), Digit::ALL);
}

#[test]
fn every_digit_at_nominal_and_1_5_percent_is_detected_once() {
    for d in digits() {
        for (lf, hf) in [(1.0, 1.0), (1.015, 1.015), (0.985, 0.985), (1.015, 0.985), (0.985, 1.015)] {
            assert_eq!(detect(&burst(d, &tone(lf, hf), 50)), vec![d], "digit {d} at {lf}/{hf}");
        }
    }
}

#[test]
fn every_digit_at_3_5_percent_is_rejected() {
    for d in digits() {
        for (lf, hf) in [(1.035, 1.0), (0.965, 1.0), (1.0, 1.035), (1.0, 0.965)] {
            assert_eq!(detect(&burst(d, &tone(lf, hf), 100)), vec![], "digit {d} at {lf}/{hf}");
        }
    }
}

/// Widest accepted frequency error, in 0.1 % steps, over every tone of the keypad.
fn accepted_band(sign: f32) -> (f32, f32) {
    let (mut min_ok, mut max_ok) = (f32::MAX, 0.0f32);
    for d in ["1", "5", "9", "D"].iter().filter_map(|s| Digit::from_char(s.chars().next().unwrap())) {
        for group in 0..2 {
            let mut last_ok = 0.0;
            for step in 0..=50 {
                let e = step as f32 * 0.001;
                let f = 1.0 + sign * e;
                let t = if group == 0 { tone(f, 1.0) } else { tone(1.0, f) };
                if detect(&burst(d, &t, 100)) == vec![d] {
                    last_ok = e;
                } else {
                    break;
                }
            }
            min_ok = min_ok.min(last_ok);
            max_ok = max_ok.max(last_ok);
        }
    }
    (min_ok, max_ok)
}

#[test]
fn frequency_acceptance_band_lies_between_1_5_and_3_5_percent() {
    for sign in [1.0, -1.0] {
        let (lo, hi) = accepted_band(sign);
        eprintln!("dtmf: sign {sign:+}: accepted up to {:.1}%..{:.1}% error", lo * 100.0, hi * 100.0);
        assert!(lo >= 0.015 && hi < 0.035, "{lo} {hi}");
    }
}

#[test]
fn measured_frequency_is_accurate() {
    let mut worst = 0.0f32;
    for d in digits() {
        for (lf, hf) in [(1.0, 1.0), (1.012, 0.988), (0.98, 1.02)] {
            let mut det = DtmfDetector::default();
            let mut s = Vec::new();
            synth_digit(d, &tone(lf, hf), 800, &mut s);
            det.process(&s);
            let a = det.last_analysis().unwrap();
            let (lo, hi) = d.freqs();
            worst = worst.max((a.low_hz - lo * lf).abs()).max((a.high_hz - hi * hf).abs());
        }
    }
    eprintln!("dtmf: worst frequency estimate error {worst:.2} Hz");
    assert!(worst < 1.0, "{worst}");
}

#[test]
fn twist_of_4_db_normal_and_8_db_reverse_is_accepted_beyond_refused_and_measured_within_0_2_db() {
    let d = Digit::from_char('5').unwrap();
    let at =
        |low: f32, high: f32| detect(&burst(d, &DtmfTone { low_dbm0: low, high_dbm0: high, ..tone(1.0, 1.0) }, 100));
    // Normal twist: high group above low, up to 4 dB.
    assert_eq!(at(-14.0, -10.5), vec![d]);
    assert_eq!(at(-14.0, -9.5), vec![]);
    // Reverse twist: low group above high, up to 8 dB.
    assert_eq!(at(-6.0, -13.5), vec![d]);
    assert_eq!(at(-6.0, -14.5), vec![]);
    // The measured twist is within 0.2 dB of the sent one.
    let mut det = DtmfDetector::default();
    let mut s = Vec::new();
    for dig in digits() {
        for twist in [-7.0f32, -3.0, 0.0, 3.0] {
            s.clear();
            synth_digit(dig, &DtmfTone { low_dbm0: -12.0, high_dbm0: -12.0 + twist, ..tone(1.0, 1.0) }, 400, &mut s);
            det.reset();
            det.process(&s);
            let a = det.last_analysis().unwrap();
            assert!((a.twist_db - twist).abs() < 0.2, "{dig} {twist}: {}", a.twist_db);
            assert!((a.low_dbm0 + 12.0).abs() < 0.2, "{dig}: {}", a.low_dbm0);
        }
    }
}

#[test]
fn digits_at_minus_28_to_0_dbm0_are_detected_at_minus_32_not() {
    let d = Digit::from_char('0').unwrap();
    let at = |lvl: f32| detect(&burst(d, &DtmfTone { low_dbm0: lvl, high_dbm0: lvl, ..tone(1.0, 1.0) }, 100));
    assert_eq!(at(-28.0), vec![d]);
    assert_eq!(at(-32.0), vec![]);
    assert_eq!(at(0.0), vec![d]);
}

#[test]
fn timing_40ms_accepted_short_rejected_and_gaps_split_digits() {
    let d = Digit::from_char('7').unwrap();
    // Every alignment against the 102-sample block.
    for shift in (0..BLOCK).step_by(7) {
        let mut s = vec![0i16; 800 + shift];
        synth_digit(d, &DtmfTone::default(), 320, &mut s);
        s.extend(std::iter::repeat_n(0, 800));
        assert_eq!(detect(&s), vec![d], "40 ms at shift {shift}");
        let mut s = vec![0i16; 800 + shift];
        synth_digit(d, &DtmfTone::default(), 160, &mut s);
        s.extend(std::iter::repeat_n(0, 800));
        assert_eq!(detect(&s), vec![], "20 ms at shift {shift}");
    }
    // Two presses 40 ms apart are two digits.
    let mut s = vec![0i16; 400];
    synth_digit(d, &DtmfTone::default(), 400, &mut s);
    s.extend(std::iter::repeat_n(0, 320));
    synth_digit(d, &DtmfTone::default(), 400, &mut s);
    s.extend(std::iter::repeat_n(0, 800));
    assert_eq!(detect(&s), vec![d, d]);
    // A 10 ms dropout inside a press does not split it.
    let mut s = vec![0i16; 400];
    synth_digit(d, &DtmfTone::default(), 600, &mut s);
    s.extend(std::iter::repeat_n(0, 80));
    synth_digit(d, &DtmfTone::default(), 600, &mut s);
    s.extend(std::iter::repeat_n(0, 800));
    assert_eq!(detect(&s), vec![d]);
}

#[test]
fn no_tone_of_20_ms_or_less_is_detected_and_one_under_40_ms_is() {
    // Find the shortest tone detected at some alignment and the longest never detected.
    let d = Digit::from_char('2').unwrap();
    let (mut shortest_any, mut longest_none) = (u32::MAX, 0u32);
    for ms in 15..=40u32 {
        let hits = (0..BLOCK)
            .step_by(3)
            .filter(|&shift| {
                let mut s = vec![0i16; 400 + shift];
                synth_digit(d, &DtmfTone::default(), ms as usize * 8, &mut s);
                s.extend(std::iter::repeat_n(0, 800));
                detect(&s) == vec![d]
            })
            .count();
        if hits > 0 {
            shortest_any = shortest_any.min(ms);
        } else {
            longest_none = ms;
        }
    }
    eprintln!("dtmf: shortest tone detected {shortest_any} ms; longest never detected {longest_none} ms");
    assert!(longest_none >= 20 && shortest_any < 40);
}

#[test]
fn end_event_reports_duration() {
    let d = Digit::from_char('9').unwrap();
    let mut det = DtmfDetector::default();
    det.process(&burst(d, &DtmfTone::default(), 200));
    let events: Vec<_> = std::iter::from_fn(|| det.poll_event()).collect();
    assert_eq!(events.len(), 2, "{events:?}");
    match events[1] {
        DtmfEvent::End { digit, duration_ms, .. } => {
            assert_eq!(digit, d);
            assert!((170..=200).contains(&duration_ms), "{duration_ms}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn mu_law_and_a_law_round_trip_still_detected() {
    for law in [Law::Ulaw, Law::Alaw] {
        for d in digits() {
            for lvl in [-25.0f32, -5.0] {
                let s = burst(d, &DtmfTone { low_dbm0: lvl, high_dbm0: lvl, ..DtmfTone::default() }, 60);
                let rt: Vec<i16> = s.iter().map(|&x| law.decode(law.encode(x))).collect();
                assert_eq!(detect(&rt), vec![d], "{law:?} {d} {lvl}");
            }
        }
    }
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

#[test]
fn noise_and_voice_like_signals_do_not_fire() {
    let mut rng = Lcg(7);
    // White noise at a loud level, 20 s.
    let noise: Vec<i16> = (0..160_000).map(|_| (rng.next() * 20_000.0) as i16).collect();
    assert_eq!(detect(&noise), vec![]);
    // Harmonic "vowels": pitch 80..300 Hz with many harmonics, gliding.
    let mut s = Vec::new();
    for f0 in (80..300).step_by(3) {
        let mut phase = 0.0f32;
        for n in 0..800 {
            let f = f0 as f32 + n as f32 * 0.01;
            phase += 2.0 * PI * f / 8000.0;
            let mut v = 0.0;
            for h in 1..(3800 / f0) {
                v += (phase * h as f32).sin() * 3000.0 / h as f32;
            }
            s.push(v.clamp(-32768.0, 32767.0) as i16);
        }
    }
    assert_eq!(detect(&s), vec![]);
    // Two tones that are not a DTMF pair (dial tone) do not fire either.
    let mut dial = Vec::new();
    let mut a = Osc::new(350.0, 8000.0);
    let mut b = Osc::new(440.0, 8000.0);
    dial.extend((0..16_000).map(|_| (a.next_sample() + b.next_sample()) as i16));
    assert_eq!(detect(&dial), vec![]);
}

#[test]
fn digit_with_noise_is_detected() {
    let mut rng = Lcg(3);
    for d in digits() {
        let mut s = burst(d, &DtmfTone::default(), 60);
        // Noise 25 dB below the tones.
        for x in &mut s {
            *x = x.saturating_add((rng.next() * dbm0_to_peak(-33.0) * 1.7) as i16);
        }
        assert_eq!(detect(&s), vec![d], "{d}");
    }
}

#[test]
fn sender_plays_queued_digits() {
    let mut tx = DtmfSender::new(DtmfTone::default(), 60, 60);
    for c in "123#0*D".chars() {
        assert!(tx.push(Digit::from_char(c).unwrap()));
    }
    let mut s = Vec::new();
    let mut frame = [0i16; 160];
    while !tx.is_idle() {
        tx.fill(&mut frame);
        s.extend_from_slice(&frame);
    }
    tx.fill(&mut frame);
    assert!(frame.iter().all(|&x| x == 0));
    s.extend_from_slice(&frame);
    let got: String = detect(&s).iter().map(|d| d.to_char()).collect();
    assert_eq!(got, "123#0*D");
    for _ in 0..SEND_QUEUE {
        tx.push(Digit::from_char('1').unwrap());
    }
    assert!(!tx.push(Digit::from_char('1').unwrap()));
}

#[test]
fn odd_chunk_sizes_give_same_result() {
    let d = Digit::from_char('B').unwrap();
    let s = burst(d, &DtmfTone::default(), 80);
    let mut det = DtmfDetector::default();
    for chunk in s.chunks(37) {
        det.process(chunk);
    }
    let events: Vec<_> = std::iter::from_fn(|| det.poll_event()).collect();
    assert!(matches!(events[0], DtmfEvent::Start { digit, .. } if digit == d), "{events:?}");
}
