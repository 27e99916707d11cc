//! Pure media building blocks: G.711, tone and DTMF synthesis/detection, RFC 4733
//! telephone events, RTP/RTCP wire formats and statistics, the playout jitter buffer
//! and WAV prompt parsing. Everything here is plain computation on buffers handed in
//! by the caller: no clock (time is an argument), no socket, thread, file or global.
//!
//! Audio samples never pass through the engine. The media path in `src/io` (RTP
//! sockets, ALSA threads) owns the buffers and calls these functions beside the engine;
//! the engine only sends commands (play, stop, connect, collect digits) and receives
//! events (digit, playout done, RTP timeout). See docs/media.md.

pub mod dtmf;
pub mod echo;
/// G.711 and WAV are codecs the configuration uses too: they live in `crate::codec`.
pub use crate::codec::{g711, wav};
pub mod goertzel;
pub mod jitter;
pub mod progress;
pub mod rtcp;
pub mod rtp;
pub mod session;
pub mod source;
pub mod telephone_event;
pub mod tone;

pub use crate::codec::SAMPLE_RATE;
/// One 20 ms frame at 8 kHz: the unit the sound device, tones and RTP use.
pub const FRAME_SAMPLES: usize = 160;
/// Duration of one frame (ms).
pub const FRAME_MS: u32 = 20;

/// Peak PCM16 amplitude of a sine wave at 0 dBm0.
///
/// G.711 puts the mu-law clipping level (±8159 in 14-bit units, ±32636 in PCM16) at
/// +3.17 dBm0 for a sine wave, so 0 dBm0 is 32636 / 10^(3.17/20) = 22657. (A-law's
/// +3.14 dBm0 at 32768 gives 22827, 0.06 dB away.)
pub const DBM0_PEAK: f32 = 22_657.0;

/// Peak PCM16 amplitude of a sine wave at `dbm0`.
pub fn dbm0_to_peak(dbm0: f32) -> f32 {
    DBM0_PEAK * 10f32.powf(dbm0 / 20.0)
}

/// Level in dBm0 of a sine wave with this peak amplitude (-inf for 0).
pub fn peak_to_dbm0(peak: f32) -> f32 {
    20.0 * (peak / DBM0_PEAK).log10()
}

/// Level in dBm0 of a block of samples, taken as the RMS of an equivalent sine wave.
pub fn rms_dbm0(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return f32::NEG_INFINITY;
    }
    let energy: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (energy / samples.len() as f64).sqrt() as f32;
    peak_to_dbm0(rms * std::f32::consts::SQRT_2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dbm0_and_peak_convert_both_ways_and_mu_law_clips_at_3_17_dbm0() {
        assert!((dbm0_to_peak(0.0) - DBM0_PEAK).abs() < 1e-3);
        assert!((peak_to_dbm0(dbm0_to_peak(-13.0)) + 13.0).abs() < 1e-4);
        // mu-law clip level is +3.17 dBm0.
        assert!((peak_to_dbm0(32636.0) - 3.17).abs() < 0.01);
    }
}
