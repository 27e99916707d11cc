//! Call-progress tone detection on a line's audio: which of the country's dial, busy
//! and reorder tones an FXO port hears, from 20 ms frames. A frame "has" a tone when
//! the tone's components hold most of the frame's power above a floor level; a
//! cadenced tone is heard after two whole on/off cycles within tolerance, a
//! continuous one (dial tone) after it has held for `DIAL_HOLD_MS`. Each tone is
//! reported once until it has been absent for `REARM_MS`. Pure arithmetic on the
//! samples handed in; the port's audio thread (src/io/port_audio.rs) feeds it.

use super::goertzel::Goertzel;
use super::tone::{plan, Country, ToneKind};
use super::{rms_dbm0, FRAME_MS, FRAME_SAMPLES};

/// Quieter than this (dBm0 RMS) is no tone.
pub const FLOOR_DBM0: f32 = -42.0;
/// Share of the frame's power the tone's components must hold.
const SHARE: f64 = 0.6;
/// A continuous tone is heard after this long.
pub const DIAL_HOLD_MS: u32 = 1000;
/// A reported tone is reported again only after this long without it.
const REARM_MS: u32 = 1000;
/// Runs kept per tone (two cycles of a two-step cadence).
const RUNS: usize = 4;

const KINDS: [ToneKind; 3] = [ToneKind::Dial, ToneKind::Busy, ToneKind::Reorder];

struct Track {
    kind: ToneKind,
    filters: heapless::Vec<Goertzel, 2>,
    cadence: heapless::Vec<u32, 8>,
    on: bool,
    run_ms: u32,
    /// Completed runs, oldest first: (was on, length in ms).
    runs: heapless::Deque<(bool, u32), RUNS>,
    reported: bool,
    absent_ms: u32,
}

/// The detector for one line.
pub struct ProgressDetector {
    tracks: heapless::Vec<Track, 3>,
}

impl ProgressDetector {
    pub fn new(country: Country) -> ProgressDetector {
        let mut tracks = heapless::Vec::new();
        for kind in KINDS {
            let def = plan(country, kind);
            let mut filters = heapless::Vec::new();
            for c in def.components() {
                // At most two components per tone (ToneDef's own bound).
                let _ = filters.push(Goertzel::new(c.hz));
            }
            let mut cadence = heapless::Vec::new();
            for &ms in def.cadence().iter().take(8) {
                let _ = cadence.push(ms);
            }
            let track = Track { kind, filters, cadence, on: false, run_ms: 0, runs: heapless::Deque::new(), reported: false, absent_ms: 0 };
            // Three kinds, capacity three.
            let _ = tracks.push(track);
        }
        ProgressDetector { tracks }
    }

    /// Forgets what was heard (a new call on the line).
    pub fn reset(&mut self) {
        for t in &mut self.tracks {
            t.on = false;
            t.run_ms = 0;
            t.runs.clear();
            t.reported = false;
            t.absent_ms = 0;
        }
    }

    /// One 20 ms frame; the tone newly heard in it, if any.
    pub fn process(&mut self, frame: &[i16; FRAME_SAMPLES]) -> Option<ToneKind> {
        let loud = rms_dbm0(frame) > FLOOR_DBM0;
        let mean_power: f64 = frame.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / FRAME_SAMPLES as f64;
        let mut heard = None;
        for t in &mut self.tracks {
            let tone_power: f64 = t.filters.iter().map(|g| g.amplitude(frame).powi(2) / 2.0).sum();
            let on = loud && mean_power > 0.0 && tone_power >= SHARE * mean_power;
            if let Some(k) = t.step(on) {
                heard = heard.or(Some(k));
            }
        }
        heard
    }
}

impl Track {
    fn step(&mut self, on: bool) -> Option<ToneKind> {
        if on == self.on {
            self.run_ms = self.run_ms.saturating_add(FRAME_MS);
        } else {
            if self.run_ms > 0 {
                if self.runs.is_full() {
                    self.runs.pop_front();
                }
                let _ = self.runs.push_back((self.on, self.run_ms));
            }
            self.on = on;
            self.run_ms = FRAME_MS;
        }
        if on {
            self.absent_ms = 0;
        } else {
            self.absent_ms = self.absent_ms.saturating_add(FRAME_MS);
            if self.absent_ms >= REARM_MS {
                self.reported = false;
            }
        }
        if self.reported || !self.matches() {
            return None;
        }
        self.reported = true;
        Some(self.kind)
    }

    fn matches(&self) -> bool {
        if self.cadence.is_empty() {
            return self.on && self.run_ms >= DIAL_HOLD_MS;
        }
        // The last four completed runs must be one of the cadence's on/off sequences
        // starting at an "on" step: two cycles of a two-step cadence, one of a
        // four-step one (UK reorder: 400 on, 350 off, 225 on, 525 off).
        let n = self.cadence.len();
        if !self.runs.is_full() || !(n == 2 || n == RUNS) || !self.runs.front().is_some_and(|r| r.0) {
            return false;
        }
        (0..n).step_by(2).any(|k| self.runs.iter().enumerate().all(|(i, &(_, ms))| close(ms, self.cadence[(i + k) % n])))
    }
}

/// Within 25 % of the wanted length, and never closer than two frames.
fn close(ms: u32, want: u32) -> bool {
    let slack = (want / 4).max(2 * FRAME_MS);
    ms.abs_diff(want) <= slack
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::media::tone::ToneGen;

    fn run(det: &mut ProgressDetector, samples: &[i16]) -> Vec<(usize, ToneKind)> {
        let mut heard = Vec::new();
        for (i, chunk) in samples.chunks_exact(FRAME_SAMPLES).enumerate() {
            let frame: &[i16; FRAME_SAMPLES] = chunk.try_into().unwrap();
            if let Some(k) = det.process(frame) {
                heard.push((i, k));
            }
        }
        heard
    }

    fn tone(country: Country, kind: ToneKind, ms: usize) -> Vec<i16> {
        let mut g = ToneGen::for_plan(country, kind);
        let mut out = vec![0i16; ms * 8];
        g.fill(&mut out);
        out
    }

    #[test]
    fn each_countrys_busy_reorder_and_dial_tone_is_told_apart_from_the_others() {
        for country in Country::ALL {
            for kind in KINDS {
                let mut det = ProgressDetector::new(country);
                let heard = run(&mut det, &tone(country, kind, 4000));
                assert_eq!(heard.iter().map(|h| h.1).collect::<Vec<_>>(), vec![kind], "{country:?} {kind:?}: {heard:?}");
            }
        }
    }

    #[test]
    fn us_busy_is_heard_after_two_cycles_and_dial_tone_after_a_second() {
        let mut det = ProgressDetector::new(Country::Us);
        // 500 ms on, 500 off: the fourth run ends at 2.0 s, seen in the next frame.
        let heard = run(&mut det, &tone(Country::Us, ToneKind::Busy, 3000));
        assert_eq!(heard, vec![(100, ToneKind::Busy)]);
        let mut det = ProgressDetector::new(Country::Us);
        let heard = run(&mut det, &tone(Country::Us, ToneKind::Dial, 3000));
        assert_eq!(heard, vec![(49, ToneKind::Dial)]);
    }

    #[test]
    fn speech_like_noise_silence_and_quiet_tones_are_no_tone() {
        let mut det = ProgressDetector::new(Country::Us);
        // A deterministic pseudo-random signal, loud: spread over the band.
        let mut x = 0x1234_5678u32;
        let noise: Vec<i16> = (0..8000 * 4)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 20) as i16 - 2048
            })
            .collect();
        assert!(run(&mut det, &noise).is_empty());
        assert!(run(&mut det, &vec![0; 8000 * 4]).is_empty());
        // Busy tone 30 dB down, below the floor.
        let quiet: Vec<i16> = tone(Country::Us, ToneKind::Busy, 4000).iter().map(|&s| s / 32).collect();
        assert!(run(&mut det, &quiet).is_empty());
    }

    #[test]
    fn a_tone_is_reported_once_until_it_has_been_gone_a_second() {
        let mut det = ProgressDetector::new(Country::Us);
        let mut s = tone(Country::Us, ToneKind::Dial, 3000);
        s.extend(vec![0; 8 * 1200]);
        s.extend(tone(Country::Us, ToneKind::Dial, 1500));
        let heard = run(&mut det, &s);
        assert_eq!(heard.len(), 2, "{heard:?}");
        det.reset();
        assert_eq!(run(&mut det, &tone(Country::Us, ToneKind::Dial, 1500)).len(), 1);
    }
}
