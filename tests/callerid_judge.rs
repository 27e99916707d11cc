//! Caller ID as the box writes it, judged by a decoder the project did not write:
//! spandsp's ADSI receiver (Debian's libspandsp-dev, installed by scripts/deps), in a
//! small C program this test builds (tests/judge/cid_judge.c, by tests/common/judge.rs).
//! Bell 202 SDMF and MDMF, ETSI V.23 MDMF and DTMF CLIP, each 100 messages through a line with 20 dB SNR and
//! ±1 % frequency error; spandsp checks the checksum itself. The judge cannot tell
//! Bell 202's tones from V.23's, so the test measures them. The box's own FSK receiver
//! (for FXO ports) is held to the same line.
// A test process: it builds and runs the judge and writes its audio files.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use ctibox::codec::callerid::{dtmf_clip, encode_mdmf, encode_sdmf, modulate, CallerId, Field, Fsk, FskRx, Preamble, Stamp};
use ctibox::core::media::dtmf::{synth_digit, Digit, DtmfTone};

mod common;

use common::judge::judged;

/// The audio through a line: resampled by `ratio` (a frequency error of 1/ratio - 1)
/// and white Gaussian noise `snr_db` below the signal's power.
fn line(samples: &[i16], ratio: f64, snr_db: f64, seed: u64) -> Vec<i16> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let loud: Vec<f64> = samples.iter().map(|s| f64::from(*s)).filter(|s| *s != 0.0).collect();
    let power = loud.iter().map(|s| s * s).sum::<f64>() / loud.len().max(1) as f64;
    let sigma = (power / 10f64.powf(snr_db / 10.0)).sqrt();
    let n = (samples.len() as f64 / ratio) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 * ratio;
            let (j, f) = (t as usize, t.fract());
            let a = f64::from(samples[j.min(samples.len() - 1)]);
            let b = f64::from(samples[(j + 1).min(samples.len() - 1)]);
            let g = (-2.0 * rnd().max(1e-12).ln()).sqrt() * (2.0 * std::f64::consts::PI * rnd()).cos();
            (a + (b - a) * f + sigma * g).round().clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

fn message(i: u64) -> CallerId {
    CallerId {
        when: Some(Stamp { month: (i % 12 + 1) as u8, day: (i % 28 + 1) as u8, hour: (i % 24) as u8, minute: (i % 60) as u8 }),
        number: Field::Value(format!("{}", 2_025_550_000 + i * 37)),
        name: Field::Value(format!("CALLER {i:03}")),
    }
}

/// The lines the judge prints for `m` sent as MDMF.
fn mdmf_lines(m: &CallerId) -> Vec<String> {
    let t = m.when.unwrap();
    let Field::Value(number) = &m.number else { unreachable!() };
    let Field::Value(name) = &m.name else { unreachable!() };
    vec![
        "msg 80".to_string(),
        format!("field 01 {:02}{:02}{:02}{:02}", t.month, t.day, t.hour, t.minute),
        format!("field 02 {number}"),
        format!("field 07 {name}"),
    ]
}

/// 100 messages of one kind through the line, each followed by half a second of
/// silence, judged: how many came out exactly as sent.
fn run(fsk: Fsk, standard: &str, sdmf: bool, name: &str) -> usize {
    let mut audio = vec![0i16; 4000];
    let mut want = vec![];
    for i in 0..100u64 {
        let m = message(i);
        let msg = if sdmf { encode_sdmf(&m).unwrap() } else { encode_mdmf(&m).unwrap() };
        let mut s = vec![];
        modulate(fsk, Preamble::ON_HOOK, &msg, 6000, &mut s);
        let ratio = if i % 2 == 0 { 1.01 } else { 0.99 };
        audio.extend(line(&s, ratio, 20.0, i + 1));
        audio.extend(line(&[0i16; 4000], 1.0, 200.0, i));
        want.push(if sdmf {
            let t = m.when.unwrap();
            let Field::Value(n) = &m.number else { unreachable!() };
            // spandsp gives an SDMF message as its type and one field: the body.
            vec!["msg 04".to_string(), format!("field 00 {:02}{:02}{:02}{:02}{n}", t.month, t.day, t.hour, t.minute)]
        } else {
            mdmf_lines(&m)
        });
    }
    let got = judged(standard, &audio, name);
    want.iter().filter(|w| got.contains(w)).count()
}

#[test]
fn bell_202_mdmf_is_decoded_by_spandsp_through_a_noisy_detuned_line() {
    let ok = run(Fsk::Bell202, "class", false, "bell-mdmf");
    assert!(ok >= 99, "{ok} of 100");
}

#[test]
fn bell_202_sdmf_is_decoded_by_spandsp_through_a_noisy_detuned_line() {
    let ok = run(Fsk::Bell202, "class", true, "bell-sdmf");
    assert!(ok >= 99, "{ok} of 100");
}

#[test]
fn etsi_v23_mdmf_is_decoded_by_spandsp_through_a_noisy_detuned_line() {
    let ok = run(Fsk::V23, "clip", false, "v23-mdmf");
    assert!(ok >= 99, "{ok} of 100");
}

#[test]
fn a_bad_checksum_is_refused_by_the_judge() {
    let mut msg = encode_mdmf(&message(1)).unwrap();
    let last = msg.len() - 1;
    msg[last] ^= 0x01;
    let mut audio = vec![0i16; 4000];
    modulate(Fsk::Bell202, Preamble::ON_HOOK, &msg, 6000, &mut audio);
    audio.extend([0i16; 4000]);
    assert_eq!(judged("class", &audio, "bad-checksum"), Vec::<Vec<String>>::new());
    // The same message with its checksum intact is accepted: the judge is listening.
    let msg = encode_mdmf(&message(1)).unwrap();
    let mut audio = vec![0i16; 4000];
    modulate(Fsk::Bell202, Preamble::ON_HOOK, &msg, 6000, &mut audio);
    audio.extend([0i16; 4000]);
    assert_eq!(judged("class", &audio, "good-checksum"), vec![mdmf_lines(&message(1))]);
}

#[test]
fn dtmf_clip_is_decoded_by_spandsp_through_a_noisy_detuned_line() {
    let mut audio = vec![0i16; 4000];
    let mut want = vec![];
    for i in 0..100u64 {
        let number = format!("{}", 3_120_000_000u64 + i * 7919);
        let digits = dtmf_clip(&Field::Value(number.clone())).unwrap();
        let f = if i % 2 == 0 { 1.01 } else { 0.99 };
        let tone = DtmfTone { low_freq_factor: f, high_freq_factor: f, ..DtmfTone::default() };
        let mut s = vec![];
        for c in digits.chars() {
            synth_digit(Digit::from_char(c).unwrap(), &tone, 560, &mut s); // 70 ms on
            s.extend([0i16; 560]); // 70 ms off
        }
        s.extend([0i16; 4000]);
        audio.extend(line(&s, 1.0, 20.0, i + 1));
        want.push(number);
    }
    let got = judged("dtmf", &audio, "dtmf-clip");
    // spandsp gives the message type ('A') and the number as a field.
    let ok = want.iter().filter(|n| got.iter().any(|m| m.iter().any(|l| l.starts_with("field") && l.ends_with(n.as_str())))).count();
    assert!(ok >= 99, "{ok} of 100; the judge said {:?}", &got[..got.len().min(3)]);
}

#[test]
fn the_fsk_tones_are_bell_202_s_and_v23_s() {
    // The judge cannot tell them apart: measure the mark signal's frequency (zero
    // crossings over 1000 mark bits) and the channel seizure's mean.
    for (fsk, mark, space) in [(Fsk::Bell202, 1200.0, 2200.0), (Fsk::V23, 1300.0, 2100.0)] {
        let hz = |s: &[i16]| s.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count() as f64 / 2.0 / (s.len() as f64 / 8000.0);
        let mut s = vec![];
        modulate(fsk, Preamble { seizure_bits: 0, mark_bits: 1000 }, &[], 6000, &mut s);
        assert!((hz(&s) - mark).abs() < 3.0, "{fsk:?}: mark at {} Hz", hz(&s));
        let mut s = vec![];
        modulate(fsk, Preamble { seizure_bits: 1000, mark_bits: 0 }, &[], 6000, &mut s);
        assert!((hz(&s) - (mark + space) / 2.0).abs() < 10.0, "{fsk:?}: seizure at {} Hz", hz(&s));
    }
}

#[test]
fn the_box_s_own_receiver_decodes_both_flavours_through_the_same_line() {
    for fsk in [Fsk::Bell202, Fsk::V23] {
        let mut ok = 0;
        for i in 0..100u64 {
            let m = message(i);
            let (msg, want) = if i % 2 == 0 {
                (encode_mdmf(&m).unwrap(), m.clone())
            } else {
                (encode_sdmf(&m).unwrap(), CallerId { name: Field::Absent, ..m.clone() })
            };
            let mut s = vec![0i16; 400];
            modulate(fsk, Preamble::ON_HOOK, &msg, 6000, &mut s);
            s.extend([0i16; 400]);
            let ratio = if i % 2 == 0 { 1.01 } else { 0.99 };
            let mut rx = FskRx::new(fsk);
            rx.push(&line(&s, ratio, 20.0, i + 1));
            if rx.poll() == Some(Ok(want)) {
                ok += 1;
            }
        }
        assert!(ok >= 99, "{fsk:?}: {ok} of 100 decoded");
    }
}

#[test]
fn the_box_s_receiver_takes_a_call_waiting_message_and_ignores_silence_and_noise() {
    let msg = encode_mdmf(&message(3)).unwrap();
    let mut s = vec![0i16; 80];
    modulate(Fsk::Bell202, Preamble::OFF_HOOK, &msg, 6000, &mut s);
    let mut rx = FskRx::new(Fsk::Bell202);
    rx.push(&s);
    assert_eq!(rx.poll(), Some(Ok(message(3))));
    // Half a second of silence, then two seconds of loud noise: nothing.
    let mut rx = FskRx::new(Fsk::V23);
    rx.push(&[0i16; 4000]);
    let noise = line(&[3000i16; 16000], 1.0, 0.0, 7);
    rx.push(&noise);
    assert_eq!(rx.poll(), None);
}
