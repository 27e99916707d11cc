//! Goertzel single-frequency DFT: the power and amplitude of one frequency in a
//! block of PCM16. Used by tone tests and level checks; pure arithmetic only.

use super::SAMPLE_RATE;

/// One Goertzel filter tuned to a frequency (any real frequency, not only a DFT bin).
#[derive(Clone, Copy, Debug)]
pub struct Goertzel {
    coeff: f64,
    omega: f64,
}

impl Goertzel {
    /// A filter for `freq_hz` at the 8 kHz telephony rate.
    pub fn new(freq_hz: f32) -> Self {
        Self::with_rate(freq_hz, SAMPLE_RATE)
    }

    pub fn with_rate(freq_hz: f32, rate: u32) -> Self {
        let omega = 2.0 * std::f64::consts::PI * f64::from(freq_hz) / f64::from(rate);
        Goertzel { coeff: 2.0 * omega.cos(), omega }
    }

    /// |X(f)|^2 over the block.
    pub fn power(&self, samples: &[i16]) -> f64 {
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &x in samples {
            let s0 = f64::from(x) + self.coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        // |s1 - e^{-jw} s2|^2
        let re = s1 - s2 * self.omega.cos();
        let im = s2 * self.omega.sin();
        re * re + im * im
    }

    /// Peak amplitude of a sine at this frequency: 2|X|/N (exact when the block holds a
    /// whole number of periods, otherwise within the filter's leakage).
    pub fn amplitude(&self, samples: &[i16]) -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        2.0 * self.power(samples).sqrt() / samples.len() as f64
    }
}

/// The frequency in `lo..=hi` (1 Hz steps) with the most Goertzel power in `samples`.
pub fn peak_frequency(samples: &[i16], lo: u32, hi: u32) -> u32 {
    let mut best = (lo, f64::MIN);
    for f in lo..=hi {
        let p = Goertzel::new(f as f32).power(samples);
        if p > best.1 {
            best = (f, p);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, amp: f64, n: usize) -> Vec<i16> {
        (0..n).map(|i| (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / 8000.0).sin()).round() as i16).collect()
    }

    #[test]
    fn measures_amplitude_and_rejects_other_frequencies() {
        let s = sine(1000.0, 10_000.0, 800);
        let a = Goertzel::new(1000.0).amplitude(&s);
        assert!((a - 10_000.0).abs() < 5.0, "{a}");
        assert!(Goertzel::new(1200.0).amplitude(&s) < 50.0);
        assert_eq!(peak_frequency(&s, 900, 1100), 1000);
        assert_eq!(Goertzel::new(1000.0).amplitude(&[]), 0.0);
    }
}
