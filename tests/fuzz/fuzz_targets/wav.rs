//! Fuzz target: WAV prompts (src/core/media/wav.rs). Never panics; a file that
//! parses holds at most MAX_SAMPLES samples; PCM16 samples written by write_pcm16
//! parse back unchanged, both those decoded from the input and the input's raw bytes.
#![no_main]

use ctibox::core::media::wav::{parse, write_pcm16, WavEncoding, MAX_SAMPLES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(w) = parse(data) {
        assert!(w.samples.len() <= MAX_SAMPLES);
        assert!(w.samples.len() <= data.len(), "more samples than bytes");
        let again = parse(&write_pcm16(&w.samples)).expect("written WAV must parse");
        assert_eq!(again.encoding, WavEncoding::Pcm16);
        assert_eq!(again.samples, w.samples);
    }
    let samples: Vec<i16> = data.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect();
    let w = parse(&write_pcm16(&samples)).expect("written WAV must parse");
    assert_eq!(w.samples, samples);
});
