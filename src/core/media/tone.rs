//! Call-progress tones per country (dial, ringback, busy, reorder, call waiting):
//! the plan tables and a phase-continuous 8 kHz PCM16 generator that yields 20 ms
//! frames. Owns only tone synthesis; playing a frame is the media path's job.

use super::{dbm0_to_peak, FRAME_SAMPLES, SAMPLE_RATE};

/// A sine oscillator with a 32-bit phase accumulator: phase-continuous forever, with
/// a frequency resolution of 8000 / 2^32 Hz.
#[derive(Clone, Copy, Debug)]
pub struct Osc {
    phase: u32,
    step: u32,
    peak: f32,
}

impl Osc {
    /// An oscillator at `freq_hz` (0..4000) with this peak amplitude.
    pub fn new(freq_hz: f32, peak: f32) -> Self {
        let step = (f64::from(freq_hz) / f64::from(SAMPLE_RATE) * 4_294_967_296.0).round() as u64;
        Osc { phase: 0, step: step as u32, peak }
    }

    /// The next sample (not rounded).
    #[inline]
    pub fn next_sample(&mut self) -> f32 {
        let angle = f64::from(self.phase) * (2.0 * std::f64::consts::PI / 4_294_967_296.0);
        self.phase = self.phase.wrapping_add(self.step);
        (angle.sin() as f32) * self.peak
    }
}

/// Which call-progress tone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ToneKind {
    Dial,
    Ringback,
    Busy,
    /// Reorder / congestion ("all circuits busy", fast busy).
    Reorder,
    CallWaiting,
}

impl ToneKind {
    pub const ALL: [ToneKind; 5] =
        [ToneKind::Dial, ToneKind::Ringback, ToneKind::Busy, ToneKind::Reorder, ToneKind::CallWaiting];
}

/// A country's tone plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Country {
    Us,
    Uk,
    De,
}

impl Country {
    pub const ALL: [Country; 3] = [Country::Us, Country::Uk, Country::De];

    /// Parses an ISO 3166 code ("us", "uk"/"gb", "de"), any case.
    pub fn from_code(code: &str) -> Option<Country> {
        match code.to_ascii_lowercase().as_str() {
            "us" | "ca" => Some(Country::Us),
            "uk" | "gb" => Some(Country::Uk),
            "de" => Some(Country::De),
            _ => None,
        }
    }
}

/// One sine component of a tone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Component {
    pub hz: f32,
    pub dbm0: f32,
}

/// Most on/off steps a cadence may have.
pub const MAX_CADENCE: usize = 8;

/// A tone: up to two components and an on/off cadence (ms, starting with "on";
/// an empty cadence is continuous). A non-repeating cadence plays once and ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ToneDef {
    components: [Component; 2],
    n_components: usize,
    cadence: [u32; MAX_CADENCE],
    n_cadence: usize,
    repeat: bool,
}

impl ToneDef {
    /// A tone definition; `None` if there are 0 or more than 2 components, more than
    /// `MAX_CADENCE` steps, a frequency outside 0..4000 Hz, or a zero-length cadence.
    pub const fn new(components: &[Component], cadence: &[u32], repeat: bool) -> Option<ToneDef> {
        if components.is_empty() || components.len() > 2 || cadence.len() > MAX_CADENCE {
            return None;
        }
        let mut c = [Component { hz: 0.0, dbm0: -100.0 }; 2];
        let mut i = 0;
        while i < components.len() {
            if !(components[i].hz > 0.0 && components[i].hz < 4000.0) {
                return None;
            }
            c[i] = components[i];
            i += 1;
        }
        let mut k = [0u32; MAX_CADENCE];
        let mut total = 0u64;
        let mut j = 0;
        while j < cadence.len() {
            k[j] = cadence[j];
            total += cadence[j] as u64;
            j += 1;
        }
        if !cadence.is_empty() && total == 0 {
            return None;
        }
        Some(ToneDef { components: c, n_components: components.len(), cadence: k, n_cadence: cadence.len(), repeat })
    }

    pub fn components(&self) -> &[Component] {
        &self.components[..self.n_components]
    }
    /// On/off durations in ms, starting with "on"; empty when continuous.
    pub fn cadence(&self) -> &[u32] {
        &self.cadence[..self.n_cadence]
    }
    pub fn repeats(&self) -> bool {
        self.repeat
    }
}

const fn c(hz: f32, dbm0: f32) -> Component {
    Component { hz, dbm0 }
}

const fn def(components: &[Component], cadence: &[u32], repeat: bool) -> ToneDef {
    match ToneDef::new(components, cadence, repeat) {
        Some(d) => d,
        None => panic!("bad tone table entry"),
    }
}

// Plans after ITU-T E.180 Supplement 2 and the operators' own specifications
// (Telcordia GR-506 for North America, BT SIN 350 for the UK, Telekom 1TR110 for DE).
const US: [ToneDef; 5] = [
    def(&[c(350.0, -13.0), c(440.0, -13.0)], &[], true),
    def(&[c(440.0, -19.0), c(480.0, -19.0)], &[2000, 4000], true),
    def(&[c(480.0, -24.0), c(620.0, -24.0)], &[500, 500], true),
    def(&[c(480.0, -24.0), c(620.0, -24.0)], &[250, 250], true),
    def(&[c(440.0, -13.0)], &[300, 9700], true),
];
const UK: [ToneDef; 5] = [
    def(&[c(350.0, -19.0), c(440.0, -19.0)], &[], true),
    def(&[c(400.0, -19.0), c(450.0, -19.0)], &[400, 200, 400, 2000], true),
    def(&[c(400.0, -19.0)], &[375, 375], true),
    def(&[c(400.0, -19.0)], &[400, 350, 225, 525], true),
    def(&[c(400.0, -19.0)], &[100, 4000], true),
];
const DE: [ToneDef; 5] = [
    def(&[c(425.0, -13.0)], &[], true),
    def(&[c(425.0, -13.0)], &[1000, 4000], true),
    def(&[c(425.0, -13.0)], &[480, 480], true),
    def(&[c(425.0, -13.0)], &[240, 240], true),
    def(&[c(425.0, -13.0)], &[200, 200, 200, 5000], true),
];

/// The tone `kind` in `country`'s plan.
pub fn plan(country: Country, kind: ToneKind) -> &'static ToneDef {
    let table = match country {
        Country::Us => &US,
        Country::Uk => &UK,
        Country::De => &DE,
    };
    &table[kind as usize]
}

/// Samples of linear ramp at each on/off edge (2 ms), so cadence edges do not click.
pub const RAMP_SAMPLES: u32 = 16;

/// Generates a tone as 8 kHz PCM16, frame after frame, phase-continuous across frames
/// and cadence steps (the oscillators keep running through "off" steps).
#[derive(Clone, Debug)]
pub struct ToneGen {
    def: ToneDef,
    osc: [Osc; 2],
    step: usize,
    left: u64,
    gain: f32,
    done: bool,
}

impl ToneGen {
    pub fn new(def: &ToneDef) -> Self {
        let mut osc = [Osc::new(1.0, 0.0); 2];
        for (o, comp) in osc.iter_mut().zip(def.components()) {
            *o = Osc::new(comp.hz, dbm0_to_peak(comp.dbm0));
        }
        let mut g = ToneGen { def: *def, osc, step: 0, left: 0, gain: 0.0, done: false };
        g.left = g.step_samples(0);
        g
    }

    /// The plan tone for a country.
    pub fn for_plan(country: Country, kind: ToneKind) -> Self {
        Self::new(plan(country, kind))
    }

    fn step_samples(&self, step: usize) -> u64 {
        match self.def.cadence().get(step) {
            Some(&ms) => u64::from(ms) * u64::from(SAMPLE_RATE) / 1000,
            None => u64::MAX,
        }
    }

    fn on(&self) -> bool {
        self.def.n_cadence == 0 || self.step.is_multiple_of(2)
    }

    /// True once a non-repeating cadence has played out.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The next sample, or `None` once done.
    fn sample(&mut self) -> Option<i16> {
        if self.done {
            return None;
        }
        while self.left == 0 {
            self.step += 1;
            if self.step >= self.def.n_cadence {
                if !self.def.repeat {
                    self.done = true;
                    return None;
                }
                self.step = 0;
            }
            self.left = self.step_samples(self.step);
        }
        self.left -= 1;
        let target = if self.on() { 1.0 } else { 0.0 };
        let delta = 1.0 / RAMP_SAMPLES as f32;
        self.gain = if self.gain < target { (self.gain + delta).min(target) } else { (self.gain - delta).max(target) };
        let mut v = 0.0f32;
        for o in &mut self.osc[..self.def.n_components] {
            v += o.next_sample();
        }
        Some((v * self.gain).round().clamp(-32768.0, 32767.0) as i16)
    }

    /// Fills `out`; returns how many samples were written (fewer once done).
    pub fn fill(&mut self, out: &mut [i16]) -> usize {
        for (i, o) in out.iter_mut().enumerate() {
            match self.sample() {
                Some(s) => *o = s,
                None => return i,
            }
        }
        out.len()
    }

    /// The next 20 ms frame (zero-padded at the end of a non-repeating tone), or
    /// `None` once done.
    pub fn next_frame(&mut self) -> Option<[i16; FRAME_SAMPLES]> {
        if self.done {
            return None;
        }
        let mut f = [0i16; FRAME_SAMPLES];
        let n = self.fill(&mut f);
        if n == 0 {
            None
        } else {
            Some(f)
        }
    }
}

impl Iterator for ToneGen {
    type Item = i16;
    fn next(&mut self) -> Option<i16> {
        self.sample()
    }
}

#[cfg(test)]
mod tests {
    use super::super::goertzel::{peak_frequency, Goertzel};
    use super::super::peak_to_dbm0;
    use super::*;

    /// Run lengths (samples) of on/off, where "off" is 16+ consecutive zero samples.
    fn runs(s: &[i16]) -> Vec<(bool, usize)> {
        let mut out: Vec<(bool, usize)> = Vec::new();
        let mut i = 0;
        while i < s.len() {
            let zeros = s[i..].iter().take_while(|&&x| x == 0).count();
            let on = zeros < 16;
            let len = if on { zeros.max(1) } else { zeros };
            match out.last_mut() {
                Some((o, n)) if *o == on => *n += len,
                _ => out.push((on, len)),
            }
            i += len;
        }
        out
    }

    #[test]
    fn every_plan_has_right_frequencies_levels_and_cadence() {
        for country in Country::ALL {
            for kind in ToneKind::ALL {
                let def = plan(country, kind);
                let cycle_ms: u32 = def.cadence().iter().sum();
                let total_ms = if cycle_ms == 0 { 2000 } else { 2 * cycle_ms };
                let mut g = ToneGen::new(def);
                let mut s = vec![0i16; (total_ms * 8) as usize];
                assert_eq!(g.fill(&mut s), s.len());
                let r = runs(&s);
                let what = format!("{country:?} {kind:?}");
                if def.cadence().is_empty() {
                    assert_eq!(r, vec![(true, s.len())], "{what}");
                } else {
                    // Two whole cycles; the last "off" runs to the end of the buffer.
                    let want: Vec<u32> = def.cadence().iter().chain(def.cadence()).copied().collect();
                    assert_eq!(r.len(), want.len(), "{what}: {r:?}");
                    for (k, (&(on, n), &ms)) in r.iter().zip(&want).enumerate() {
                        assert_eq!(on, k % 2 == 0, "{what}");
                        // Edges move by at most the 2 ms ramp.
                        let got_ms = n as f32 / 8.0;
                        assert!((got_ms - ms as f32).abs() <= 2.0, "{what} step {k}: {got_ms} ms vs {ms}");
                    }
                }
                // Frequency and level over the middle of the first "on" step.
                let on_ms = def.cadence().first().copied().unwrap_or(total_ms);
                let window = &s[(4 * 8)..((on_ms - 4) * 8) as usize];
                for comp in def.components() {
                    let f = comp.hz as u32;
                    let peak = peak_frequency(window, f - 20, f + 20);
                    assert!(peak.abs_diff(f) <= 1, "{what}: {peak} Hz vs {f}");
                    let level = peak_to_dbm0(Goertzel::new(comp.hz).amplitude(window) as f32);
                    assert!((level - comp.dbm0).abs() < 0.5, "{what}: {level} dBm0 vs {}", comp.dbm0);
                }
            }
        }
    }

    #[test]
    fn tone_frames_equal_one_long_run_and_never_jump_beyond_the_tones_slope() {
        // Frame by frame equals one long run, and no sample-to-sample jump exceeds what
        // the tone's own slope allows.
        let mut a = ToneGen::for_plan(Country::De, ToneKind::Dial);
        let mut b = a.clone();
        let mut frames = Vec::new();
        for _ in 0..50 {
            frames.extend_from_slice(&a.next_frame().unwrap());
        }
        let mut long = vec![0i16; frames.len()];
        b.fill(&mut long);
        assert_eq!(frames, long);
        let peak = dbm0_to_peak(-13.0);
        let max_step = peak * 2.0 * std::f32::consts::PI * 425.0 / 8000.0 + 2.0;
        for w in frames[RAMP_SAMPLES as usize..].windows(2) {
            assert!(f32::from((w[1] - w[0]).abs()) <= max_step);
        }
    }

    #[test]
    fn once_tone_ends_and_custom_defs_are_checked() {
        let d = ToneDef::new(&[Component { hz: 1000.0, dbm0: -10.0 }], &[100, 50], false).unwrap();
        let mut g = ToneGen::new(&d);
        let n = g.by_ref().count();
        assert_eq!(n, 1200);
        assert!(g.is_done());
        assert!(g.next_frame().is_none());
        assert!(ToneDef::new(&[], &[], true).is_none());
        assert!(ToneDef::new(&[Component { hz: 5000.0, dbm0: 0.0 }], &[], true).is_none());
        assert!(ToneDef::new(&[Component { hz: 500.0, dbm0: 0.0 }], &[0, 0], true).is_none());
        assert_eq!(Country::from_code("GB"), Some(Country::Uk));
        assert_eq!(Country::from_code("fr"), None);
    }
}
