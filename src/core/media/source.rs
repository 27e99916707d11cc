//! What a stream sends, 20 ms at a time: looping music on hold (pre-encoded once per
//! law, so a held call costs a copy), call-progress tones, prompts played once, and
//! silence. Also the built-in music-on-hold melody.

use crate::core::media::g711::Law;
use crate::core::media::tone::{Osc, ToneGen};
use crate::core::media::{dbm0_to_peak, FRAME_SAMPLES, SAMPLE_RATE};
use std::sync::Arc;

/// Audio played in a loop, kept as PCM16 and pre-encoded in both laws.
#[derive(Debug)]
pub struct LoopAudio {
    pub pcm: Vec<i16>,
    ulaw: Vec<u8>,
    alaw: Vec<u8>,
}

impl LoopAudio {
    /// Loop audio from PCM16 samples (at least one frame: shorter input is repeated).
    pub fn new(mut pcm: Vec<i16>) -> LoopAudio {
        if pcm.is_empty() {
            pcm.push(0);
        }
        while pcm.len() < FRAME_SAMPLES {
            pcm.extend_from_within(..);
        }
        let ulaw = pcm.iter().map(|&s| Law::Ulaw.encode(s)).collect();
        let alaw = pcm.iter().map(|&s| Law::Alaw.encode(s)).collect();
        LoopAudio { pcm, ulaw, alaw }
    }

    fn encoded(&self, law: Law) -> &[u8] {
        match law {
            Law::Ulaw => &self.ulaw,
            Law::Alaw => &self.alaw,
        }
    }
}

/// The built-in music on hold: a slow, soft arpeggio (C, A minor, F, G major) with
/// a bell-like envelope, 9.6 s, looping seamlessly. Made from the tone module's
/// oscillators; about -20 dBm0, well clear of DTMF (one note sounds at a time).
pub fn melody() -> Vec<i16> {
    // Note frequencies (Hz) of four chords, each arpeggiated up and down.
    const C4: f32 = 261.63;
    const E4: f32 = 329.63;
    const G4: f32 = 392.00;
    const A4: f32 = 440.00;
    const C5: f32 = 523.25;
    const F4: f32 = 349.23;
    const B4: f32 = 493.88;
    const D5: f32 = 587.33;
    const A3: f32 = 220.00;
    const F5: f32 = 698.46;
    const G5: f32 = 783.99;
    const CHORDS: [[f32; 4]; 4] = [[C4, E4, G4, C5], [A3, C4, E4, A4], [F4, A4, C5, F5], [G4, B4, D5, G5]];
    let note_len = (SAMPLE_RATE as usize) * 300 / 1000; // 300 ms per note
    let peak = dbm0_to_peak(-20.0);
    let mut out = Vec::with_capacity(CHORDS.len() * 8 * note_len);
    for chord in CHORDS {
        for &f in chord.iter().chain(chord.iter().rev()) {
            // Fundamental plus a soft octave: warmer than a bare sine.
            let mut a = Osc::new(f, peak);
            let mut b = Osc::new(f * 2.0, peak * 0.25);
            for i in 0..note_len {
                let t = i as f32 / note_len as f32;
                // 10 ms attack, then an exponential decay to silence at the note's end.
                let attack = (i as f32 / 80.0).min(1.0);
                let env = attack * (-3.0 * t).exp() * (1.0 - t);
                out.push(((a.next_sample() + b.next_sample()) * env).round() as i16);
            }
        }
    }
    out
}

/// One stream's source.
pub enum Source {
    Loop { audio: Arc<LoopAudio>, pos: usize },
    Tone(Box<ToneGen>),
    /// A prompt, played once; `None` while the loader reads the file.
    Prompt { pcm: Option<Vec<i16>>, pos: usize },
    Silence,
}

impl Source {
    /// Writes the next 20 ms into `out` in `law`. Returns true exactly when a prompt
    /// or a non-repeating tone has just played out (the stream then sends silence).
    pub fn next_frame(&mut self, law: Law, out: &mut [u8; FRAME_SAMPLES]) -> bool {
        match self {
            Source::Loop { audio, pos } => {
                let src = audio.encoded(law);
                let mut filled = 0;
                while filled < FRAME_SAMPLES {
                    let n = (FRAME_SAMPLES - filled).min(src.len() - *pos);
                    out[filled..filled + n].copy_from_slice(&src[*pos..*pos + n]);
                    filled += n;
                    *pos = (*pos + n) % src.len();
                }
                false
            }
            Source::Tone(gen) => {
                let mut pcm = [0i16; FRAME_SAMPLES];
                let n = gen.fill(&mut pcm);
                law.encode_into(&pcm, out);
                if gen.is_done() && n < FRAME_SAMPLES {
                    *self = Source::Silence;
                    return true;
                }
                false
            }
            Source::Prompt { pcm: None, .. } | Source::Silence => {
                out.fill(law.silence());
                false
            }
            Source::Prompt { pcm: Some(pcm), pos } => {
                let n = (pcm.len() - *pos).min(FRAME_SAMPLES);
                law.encode_into(&pcm[*pos..*pos + n], &mut out[..n]);
                out[n..].fill(law.silence());
                *pos += n;
                if *pos >= pcm.len() {
                    *self = Source::Silence;
                    return true;
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::media::goertzel;

    #[test]
    fn loop_wraps_and_prompt_ends_once() {
        let audio = Arc::new(LoopAudio::new((0..250).map(|i| (i * 100) as i16).collect()));
        let mut s = Source::Loop { audio: audio.clone(), pos: 0 };
        let mut f = [0u8; FRAME_SAMPLES];
        let mut got = Vec::new();
        for _ in 0..4 {
            assert!(!s.next_frame(Law::Ulaw, &mut f));
            got.extend(f.iter().map(|&c| Law::Ulaw.decode(c)));
        }
        for (i, g) in got.iter().enumerate() {
            assert_eq!(*g, Law::Ulaw.decode(Law::Ulaw.encode(audio.pcm[i % 250])));
        }
        let mut p = Source::Prompt { pcm: Some(vec![1000; 400]), pos: 0 };
        let done: Vec<bool> = (0..5).map(|_| p.next_frame(Law::Alaw, &mut f)).collect();
        assert_eq!(done, [false, false, true, false, false]);
        assert!(f.iter().all(|&c| c == Law::Alaw.silence()));
    }

    #[test]
    fn melody_is_audible_and_not_dtmf_like() {
        let m = melody();
        assert_eq!(m.len(), 9600 * 8);
        let level = crate::core::media::rms_dbm0(&m);
        assert!((-32.0..-18.0).contains(&level), "{level}");
        let mut det = crate::core::media::dtmf::DtmfDetector::default();
        det.process(&m);
        assert!(det.poll_event().is_none());
        // The first note is C4.
        assert!(goertzel::peak_frequency(&m[100..2000], 200, 600).abs_diff(262) <= 4);
    }
}
