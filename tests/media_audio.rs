//! Media DSP checked against real tools: SoX (G.711 bytes, DTMF tones, WAV files)
//! and espeak-ng (a minute of speech must not fire the DTMF detector). Audio is
//! generated into a temporary directory at test time and removed afterwards. A test
//! whose tool is missing says so and passes; CI installs both through scripts/deps.
// Tests of the real binary use sockets, files and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;
use common::{require, run_tool, TempDir};
use ctibox::core::media::dtmf::{Digit, DtmfDetector, DtmfEvent};
use ctibox::core::media::g711::{self, Law};
use ctibox::core::media::wav::{self, WavEncoding, WavError};
use std::path::Path;




fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

const RAW16: [&str; 10] = ["-t", "raw", "-r", "8000", "-e", "signed-integer", "-b", "16", "-c", "1"];

fn read_raw16(path: &Path) -> Vec<i16> {
    std::fs::read(path).unwrap().chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect()
}

fn write_raw16(path: &Path, s: &[i16]) {
    std::fs::write(path, s.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
}

/// SoX encodes a raw PCM16 file to raw G.711 (no dither).
fn sox_encode(dir: &TempDir, pcm: &[i16], law: Law) -> Vec<u8> {
    let (src, dst) = (dir.file("in.raw"), dir.file("out.g711"));
    write_raw16(&src, pcm);
    let enc = if law == Law::Ulaw { "mu-law" } else { "a-law" };
    let mut args = vec!["-D", "-L"];
    args.extend(RAW16);
    args.extend([p(&src), "-t", "raw", "-e", enc, "-b", "8", p(&dst)]);
    run_tool("sox", &args);
    std::fs::read(&dst).unwrap()
}

/// A test signal from SoX: a full-scale 100-3900 Hz sweep, then quiet noise.
fn sox_signal(dir: &TempDir) -> Vec<i16> {
    let mut s = Vec::new();
    for (i, synth) in
        [["3", "sine", "100-3900", "gain", "-0.1"], ["2", "whitenoise", "gain", "-45", ""]].iter().enumerate()
    {
        let f = dir.file(&format!("sig{i}.raw"));
        let mut args = vec!["-D", "-n", "-L"];
        args.extend(RAW16);
        args.extend([p(&f), "synth"]);
        args.extend(synth.iter().filter(|a| !a.is_empty()));
        run_tool("sox", &args);
        s.extend(read_raw16(&f));
    }
    s
}

#[test]
fn g711_encoder_matches_sox_bytes() {
    require("sox");
    let dir = TempDir::new("g711");
    let signal = sox_signal(&dir);
    assert!(signal.len() >= 40_000);
    // SoX rounds PCM16 to the law's 14/13 bits before quantising, G.191 truncates: on
    // samples where the two agree (low bits chosen so rounding cannot carry), the
    // bytes must be identical.
    // (-4..=-1 become 0: SoX codes -2 as +0, 0xFF, G.191 as -0, 0x7F.)
    let ulaw_in: Vec<i16> = signal
        .iter()
        .map(|&x| {
            if x >= 0 {
                x & !3
            } else if x >= -4 {
                0
            } else {
                (x & !3) | 2
            }
        })
        .collect();
    let alaw_in: Vec<i16> = signal.iter().map(|&x| x & !7).collect();
    for (law, input) in [(Law::Ulaw, &ulaw_in), (Law::Alaw, &alaw_in)] {
        let sox = sox_encode(&dir, input, law);
        let ours: Vec<u8> = input.iter().map(|&x| law.encode(x)).collect();
        assert_eq!(sox.len(), ours.len());
        let diff = sox.iter().zip(&ours).filter(|(a, b)| a != b).count();
        assert_eq!(diff, 0, "{law:?}: {diff} bytes differ from sox");
    }
    // On the raw signal, every byte SoX writes is what our encoder gives for SoX's
    // rounded value; report how often the two conventions differ.
    for law in [Law::Ulaw, Law::Alaw] {
        let sox = sox_encode(&dir, &signal, law);
        let mut differ = 0;
        for (&x, &b) in signal.iter().zip(&sox) {
            let rounded = match law {
                Law::Ulaw => {
                    let m = ((i32::from(x) + 2) >> 2).min(8191);
                    if m >= 0 {
                        m << 2
                    } else {
                        (m << 2) - 2
                    }
                }
                Law::Alaw => ((i32::from(x) + 4) >> 3).min(4095) << 3,
            };
            let rounded = rounded.clamp(-32768, 32767) as i16;
            assert_eq!(b, law.encode(rounded), "{law:?} x={x}");
            differ += usize::from(b != law.encode(x));
        }
        eprintln!(
            "g711: {law:?}: sox's rounding differs from G.191 truncation on {differ} of {} samples ({:.1}%), always by one step",
            signal.len(),
            100.0 * differ as f64 / signal.len() as f64
        );
    }
}

#[test]
fn g711_decode_tables_match_sox() {
    require("sox");
    let dir = TempDir::new("g711dec");
    for (law, enc, table) in [(Law::Ulaw, "mu-law", &g711::ULAW_TO_LINEAR), (Law::Alaw, "a-law", &g711::ALAW_TO_LINEAR)]
    {
        let src = dir.file("codes.g711");
        std::fs::write(&src, (0..=255u8).collect::<Vec<u8>>()).unwrap();
        let dst = dir.file("codes.raw");
        let mut args = vec!["-D", "-t", "raw", "-r", "8000", "-e", enc, "-b", "8", "-c", "1", p(&src), "-L"];
        args.extend(RAW16);
        args.push(p(&dst));
        run_tool("sox", &args);
        assert_eq!(read_raw16(&dst), table.to_vec(), "{law:?}");
    }
}

fn detect(samples: &[i16]) -> String {
    let mut det = DtmfDetector::default();
    let mut out = String::new();
    for chunk in samples.chunks(160) {
        det.process(chunk);
        while let Some(e) = det.poll_event() {
            if let DtmfEvent::Start { digit, .. } = e {
                out.push(digit.to_char());
            }
        }
    }
    out
}

/// One digit from SoX: two sines mixed down, 10 dB under full scale.
fn sox_digit(dir: &TempDir, d: Digit, secs: &str, law: Option<Law>) -> Vec<i16> {
    let (lo, hi) = d.freqs();
    let (lo, hi) = (format!("{lo}"), format!("{hi}"));
    let f = dir.file("digit.raw");
    let mut args = vec!["-D", "-n", "-L"];
    match law {
        None => args.extend(RAW16),
        Some(l) => args.extend([
            "-t",
            "raw",
            "-r",
            "8000",
            "-e",
            if l == Law::Ulaw { "mu-law" } else { "a-law" },
            "-b",
            "8",
            "-c",
            "1",
        ]),
    }
    args.extend([p(&f), "synth", secs, "sine", &lo, "sine", &hi, "channels", "1", "gain", "-10"]);
    run_tool("sox", &args);
    match law {
        None => read_raw16(&f),
        Some(l) => std::fs::read(&f).unwrap().iter().map(|&c| l.decode(c)).collect(),
    }
}

#[test]
fn sox_generated_digits_are_detected() {
    require("sox");
    let dir = TempDir::new("dtmf");
    for law in [None, Some(Law::Ulaw), Some(Law::Alaw)] {
        for secs in ["0.1", "0.045"] {
            let mut s = vec![0i16; 800];
            for c in Digit::ALL.chars() {
                s.extend(sox_digit(&dir, Digit::from_char(c).unwrap(), secs, law));
                s.extend(std::iter::repeat_n(0, 480)); // 60 ms pause
            }
            assert_eq!(detect(&s), Digit::ALL, "{law:?} {secs} s");
        }
    }
}

const TEXT: &str = "The quick brown fox jumps over the lazy dog while the telephone rings in the \
    empty office. Please hold the line, your call is important to us, and an agent will be with \
    you shortly. Meanwhile, remember that our opening hours are from nine in the morning until \
    five thirty in the afternoon, Monday to Friday, except on public holidays. If you know the \
    extension of the person you wish to reach, you may dial it at any time. For sales, press one. \
    For support, press two. For accounts, press three. To hear these options again, press star. \
    Seventy six trombones led the big parade, with a hundred and ten cornets close at hand. She \
    sells sea shells by the sea shore, and the shells she sells are surely sea shells. A stitch in \
    time saves nine, and many hands make light work, but too many cooks spoil the broth. Whistling \
    kettles, squeaking doors, humming refrigerators and singing children all make sounds with \
    strong harmonics, which a good tone detector must never mistake for a key press. Zero, one, \
    two, three, four, five, six, seven, eight, nine, hash, star. Peter Piper picked a peck of \
    pickled peppers; how many pickled peppers did Peter Piper pick? The rain in Spain stays mainly \
    in the plain. How now brown cow. Eeeeee, ooooooo, aaaaah, mmmmmm, iiiiiii. Thank you for \
    calling, goodbye.";

#[test]
fn a_minute_of_espeak_speech_fires_no_digit() {
    require("sox");
    require("espeak-ng");
    let dir = TempDir::new("speech");
    let mut total = 0usize;
    // A man's and a woman's voice, at normal and high pitch.
    for (i, (voice, pitch)) in [("en", "50"), ("en+f3", "70"), ("en-us+m3", "30"), ("en+f4", "99")].iter().enumerate() {
        let wav_path = dir.file(&format!("s{i}.wav"));
        let raw_path = dir.file(&format!("s{i}.raw"));
        run_tool("espeak-ng", &["-v", voice, "-p", pitch, "-w", p(&wav_path), TEXT]);
        // espeak-ng writes 22050 Hz: our prompt parser refuses it, sox converts it.
        let bytes = std::fs::read(&wav_path).unwrap();
        assert!(matches!(wav::parse(&bytes), Err(WavError::UnsupportedRate(_))));
        let mut args = vec!["-D", p(&wav_path), "-L"];
        args.extend(RAW16);
        args.push(p(&raw_path));
        run_tool("sox", &args);
        let speech = read_raw16(&raw_path);
        total += speech.len();
        assert_eq!(detect(&speech), "", "voice {voice} pitch {pitch}: talk-off");
        for law in [Law::Ulaw, Law::Alaw] {
            let rt: Vec<i16> = speech.iter().map(|&x| law.decode(law.encode(x))).collect();
            assert_eq!(detect(&rt), "", "voice {voice} via {law:?}: talk-off");
        }
        // Louder by 10 dB (clipping) still fires nothing.
        let loud: Vec<i16> = speech.iter().map(|&x| (i32::from(x) * 3).clamp(-32768, 32767) as i16).collect();
        assert_eq!(detect(&loud), "", "voice {voice} +10 dB: talk-off");
    }
    eprintln!("dtmf: {:.1} s of espeak-ng speech (x3 codings, +10 dB): no false digit", total as f64 / 8000.0);
    assert!(total >= 60 * 8000, "only {} s of speech", total / 8000);
}

#[test]
fn sox_pcm16_mu_law_and_a_law_wavs_parse_to_their_encoding_and_samples() {
    require("sox");
    let dir = TempDir::new("wav");
    let signal = sox_signal(&dir);
    let src = dir.file("sig.raw");
    write_raw16(&src, &signal);
    for (enc, bits, want) in [
        ("signed-integer", "16", WavEncoding::Pcm16),
        ("mu-law", "8", WavEncoding::G711(Law::Ulaw)),
        ("a-law", "8", WavEncoding::G711(Law::Alaw)),
    ] {
        let dst = dir.file("prompt.wav");
        let mut args = vec!["-D", "-L"];
        args.extend(RAW16);
        args.extend([p(&src), "-e", enc, "-b", bits, p(&dst)]);
        run_tool("sox", &args);
        let w = wav::parse(&std::fs::read(&dst).unwrap()).unwrap();
        assert_eq!(w.encoding, want);
        assert_eq!(w.samples.len(), signal.len());
        if want == WavEncoding::Pcm16 {
            assert_eq!(w.samples, signal);
        } else {
            // Decoded G.711 is within one quantisation step of the source.
            for (&a, &b) in w.samples.iter().zip(&signal) {
                assert!((i32::from(a) - i32::from(b)).abs() <= 1100, "{a} vs {b}");
            }
        }
    }
}
