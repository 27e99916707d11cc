//! Adaptive playout jitter buffer for one RTP stream toward a sound device: decoded
//! packets go in with their arrival time, 20 ms frames come out at the device's
//! playout ticks. The target delay follows the measured delay spread (95th
//! percentile over the last `WINDOW` packets) within configured bounds; reordering
//! is absorbed, late packets are dropped and counted, loss is concealed by repeating
//! the last frame with attenuation, then silence. Capacity is bounded. Time is an
//! argument; nothing here reads a clock or touches the device.

use super::{FRAME_SAMPLES, SAMPLE_RATE};
use crate::core::Time;

/// Packets whose transit times set the target delay.
pub const WINDOW: usize = 128;
const FRAME: i64 = FRAME_SAMPLES as i64;

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JitterConfig {
    /// Smallest target delay (ms).
    pub min_delay_ms: u32,
    /// Largest target delay (ms); packets later than this are lost.
    pub max_delay_ms: u32,
    /// Most packets held.
    pub capacity: usize,
    /// Missing frames concealed by repeating the last one before going silent.
    pub conceal_frames: u32,
    /// Gain applied per concealed frame (0.5 = -6 dB each).
    pub conceal_gain: f32,
    /// Largest packet accepted (samples).
    pub max_packet_samples: usize,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            min_delay_ms: 20,
            max_delay_ms: 200,
            capacity: 64,
            conceal_frames: 3,
            conceal_gain: 0.5,
            max_packet_samples: 480,
        }
    }
}

/// What became of a pushed packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    Stored,
    /// Its audio was already played (or skipped): dropped.
    Late,
    /// A packet with the same timestamp is held: dropped.
    Duplicate,
    /// The buffer is full: dropped.
    Overflow,
    /// Empty, or longer than `max_packet_samples`: dropped.
    Invalid,
    /// The timestamp jumped by more than `RESYNC_MS`: the buffer restarted on it.
    Resynced,
}

/// What a played frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Nothing received and played yet: silence.
    Idle,
    /// Received audio (any missing samples inside were concealed).
    Audio,
    /// Inserted to grow the delay toward the target (a concealment frame).
    Inserted,
    /// Missing audio, concealed by the attenuated last frame.
    Concealed,
    /// Missing audio past the concealment frames: silence.
    Silence,
}

/// A timestamp jump beyond this is a new stream position, not jitter.
pub const RESYNC_MS: u32 = 5000;

/// Counters, for RTCP and the operator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JitterStats {
    pub received: u64,
    pub late: u64,
    pub duplicate: u64,
    pub overflow: u64,
    pub invalid: u64,
    pub resyncs: u64,
    pub audio_frames: u64,
    pub concealed_frames: u64,
    pub silence_frames: u64,
    /// Frames inserted to grow the delay.
    pub inserted_frames: u64,
    /// Frames skipped to shrink the delay.
    pub dropped_frames: u64,
}

#[derive(Clone, Debug)]
struct Packet {
    ts: i64,
    samples: Vec<i16>,
}

/// The jitter buffer. See the module docs.
#[derive(Clone, Debug)]
pub struct JitterBuffer {
    cfg: JitterConfig,
    /// Held packets, sorted by extended timestamp.
    packets: Vec<Packet>,
    /// Extended timestamp of the next sample to play.
    cursor: Option<i64>,
    /// Highest extended timestamp seen (for unwrapping).
    highest: Option<i64>,
    /// Recent transit times (arrival in samples minus timestamp), oldest first.
    transits: std::collections::VecDeque<i64>,
    min_transit: i64,
    target: i64,
    last_audio: [i16; FRAME_SAMPLES],
    conceal_run: u32,
    /// Some audio has been played since the start or the last reset.
    playing: bool,
    stats: JitterStats,
}

fn to_samples(t: Time) -> i64 {
    (u128::from(t.as_micros()) * u128::from(SAMPLE_RATE) / 1_000_000) as i64
}

fn ms_to_samples(ms: u32) -> i64 {
    i64::from(ms) * i64::from(SAMPLE_RATE) / 1000
}

impl JitterBuffer {
    pub fn new(cfg: JitterConfig) -> Self {
        JitterBuffer {
            cfg,
            packets: Vec::new(),
            cursor: None,
            highest: None,
            transits: std::collections::VecDeque::new(),
            min_transit: 0,
            target: ms_to_samples(cfg.min_delay_ms),
            last_audio: [0; FRAME_SAMPLES],
            conceal_run: 0,
            playing: false,
            stats: JitterStats::default(),
        }
    }

    /// Forgets the stream (new SSRC); keeps the counters.
    pub fn reset(&mut self) {
        let stats = self.stats;
        *self = JitterBuffer::new(self.cfg);
        self.stats = stats;
    }

    pub fn stats(&self) -> &JitterStats {
        &self.stats
    }

    /// The delay the buffer aims for (ms).
    pub fn target_ms(&self) -> u32 {
        (self.target * 1000 / i64::from(SAMPLE_RATE)) as u32
    }

    /// The delay of the frame last popped, if popped at `now`: from the arrival of
    /// the earliest-arriving packets to playout (ms); `None` before playout starts.
    pub fn delay_ms(&self, now: Time) -> Option<u32> {
        self.cursor.map(|c| (self.delay_at(now, c - FRAME).max(0) * 1000 / i64::from(SAMPLE_RATE)) as u32)
    }

    /// Packets held.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    fn delay_at(&self, now: Time, cursor: i64) -> i64 {
        to_samples(now) - self.min_transit - cursor
    }

    fn unwrap_ts(&self, ts: u32) -> i64 {
        match self.highest {
            None => i64::from(ts),
            Some(h) => h + i64::from(ts.wrapping_sub(h as u32) as i32),
        }
    }

    fn retarget(&mut self) {
        self.min_transit = self.transits.iter().copied().min().unwrap_or(0);
        let mut spread: Vec<i64> = self.transits.iter().map(|t| t - self.min_transit).collect();
        spread.sort_unstable();
        let p95 = spread.get(spread.len().saturating_sub(1) * 95 / 100).copied().unwrap_or(0);
        self.target = p95.clamp(ms_to_samples(self.cfg.min_delay_ms), ms_to_samples(self.cfg.max_delay_ms));
    }

    /// A decoded packet (PCM16 at 8 kHz) with its RTP timestamp, arrived at `now`.
    pub fn push(&mut self, now: Time, timestamp: u32, samples: &[i16]) -> Pushed {
        if samples.is_empty() || samples.len() > self.cfg.max_packet_samples {
            self.stats.invalid += 1;
            return Pushed::Invalid;
        }
        let mut ts = self.unwrap_ts(timestamp);
        let mut outcome = Pushed::Stored;
        let reference = self.cursor.or(self.highest);
        if reference.is_some_and(|r| (ts - r).abs() > ms_to_samples(RESYNC_MS)) {
            self.reset();
            self.stats.resyncs += 1;
            ts = i64::from(timestamp);
            outcome = Pushed::Resynced;
        }
        self.highest = Some(self.highest.map_or(ts, |h| h.max(ts)));
        if self.transits.len() >= WINDOW {
            self.transits.pop_front();
        }
        self.transits.push_back(to_samples(now) - ts);
        self.retarget();
        if self.cursor.is_some_and(|c| ts + samples.len() as i64 <= c) {
            self.stats.late += 1;
            return Pushed::Late;
        }
        let at = match self.packets.binary_search_by_key(&ts, |p| p.ts) {
            Ok(_) => {
                self.stats.duplicate += 1;
                return Pushed::Duplicate;
            }
            Err(at) => at,
        };
        if self.packets.len() >= self.cfg.capacity {
            self.stats.overflow += 1;
            return Pushed::Overflow;
        }
        self.packets.insert(at, Packet { ts, samples: samples.to_vec() });
        self.stats.received += 1;
        outcome
    }

    /// The frame to play at playout tick `now`, written to `out`.
    pub fn pop(&mut self, now: Time, out: &mut [i16; FRAME_SAMPLES]) -> Frame {
        let cursor = match self.cursor {
            Some(c) => c,
            None if self.packets.is_empty() => {
                *out = [0; FRAME_SAMPLES];
                return Frame::Idle;
            }
            // Start so that the delay is the target (up to one frame more), on the
            // frame grid of the oldest packet so that frames and packets line up.
            None => {
                let ideal = to_samples(now) - self.min_transit - self.target;
                ideal - (ideal - self.packets[0].ts).rem_euclid(FRAME)
            }
        };
        let delay = self.delay_at(now, cursor);
        let mut cursor = cursor;
        if self.cursor.is_some() && delay < self.target {
            // Too little delay: play a filler without consuming audio.
            self.stats.inserted_frames += 1;
            for (o, s) in out.iter_mut().zip(self.last_audio.iter_mut()) {
                *s = (f32::from(*s) * self.cfg.conceal_gain) as i16;
                *o = *s;
            }
            return Frame::Inserted;
        }
        if delay >= self.target + FRAME + FRAME / 2 {
            cursor += FRAME;
            self.stats.dropped_frames += 1;
        }
        self.packets.retain(|p| p.ts + p.samples.len() as i64 > cursor);
        let mut filled = [false; FRAME_SAMPLES];
        let mut any = false;
        for p in &self.packets {
            if p.ts >= cursor + FRAME {
                break;
            }
            for (i, &s) in p.samples.iter().enumerate() {
                let pos = p.ts + i as i64 - cursor;
                if (0..FRAME).contains(&pos) {
                    out[pos as usize] = s;
                    filled[pos as usize] = true;
                    any = true;
                }
            }
        }
        self.cursor = Some(cursor + FRAME);
        if !any {
            if !self.playing {
                *out = [0; FRAME_SAMPLES];
                return Frame::Idle;
            }
            return self.conceal(out);
        }
        self.playing = true;
        for (i, f) in filled.iter().enumerate() {
            if !f {
                out[i] = (f32::from(self.last_audio[i]) * self.cfg.conceal_gain) as i16;
            }
        }
        self.last_audio = *out;
        self.conceal_run = 0;
        self.stats.audio_frames += 1;
        Frame::Audio
    }

    fn conceal(&mut self, out: &mut [i16; FRAME_SAMPLES]) -> Frame {
        self.conceal_run += 1;
        if self.conceal_run <= self.cfg.conceal_frames {
            let gain = self.cfg.conceal_gain.powi(self.conceal_run as i32);
            for (o, &s) in out.iter_mut().zip(&self.last_audio) {
                *o = (f32::from(s) * gain) as i16;
            }
            self.stats.concealed_frames += 1;
            Frame::Concealed
        } else {
            *out = [0; FRAME_SAMPLES];
            self.stats.silence_frames += 1;
            Frame::Silence
        }
    }
}

#[cfg(test)]
#[path = "jitter_tests.rs"]
mod tests;
