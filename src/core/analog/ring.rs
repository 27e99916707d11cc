//! Ringing an FXS port through a low-power SLIC (Ag1171 / KS0835F kind): the module
//! makes the ring voltage while `ring_mode` (RM) is high, and the host makes the ring
//! frequency by toggling `fwd_rev` (F/R) every half period, and the cadence by raising
//! and dropping RM. Pure and on the engine's clock: this says which level each line
//! must take and when; the shell sets the GPIO lines.
//!
//! Between rings (and when not ringing) F/R rests at the line's polarity: normal, or
//! reversed when the port signals with a line reversal (ETSI caller ID's wake-up, a
//! disconnect), which `set_polarity` sets. Ring-trip (the handset lifted during a
//! ring) is seen on the hook input; the port stops the ringer then (`stop`), and RM
//! drops at once.

use crate::config::model::Country;
use crate::core::Time;
use std::collections::VecDeque;
use std::time::Duration;

/// Most on/off steps a ring cadence may have.
pub const MAX_STEPS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingSettings {
    /// Ring frequency, 15-60 Hz.
    pub freq_hz: u32,
    /// On/off steps in ms, starting with "on"; the cadence repeats.
    steps: [u32; MAX_STEPS],
    n_steps: usize,
}

impl RingSettings {
    /// A ring of `freq_hz` with `cadence` (ms, on first), or why not: 15-60 Hz, 2 to
    /// `MAX_STEPS` steps of an even count, each 50-10000 ms.
    pub fn new(freq_hz: u32, cadence: &[u32]) -> Result<RingSettings, &'static str> {
        if !(15..=60).contains(&freq_hz) {
            return Err("the ring frequency must be 15-60 Hz");
        }
        if cadence.len() < 2 || cadence.len() > MAX_STEPS || !cadence.len().is_multiple_of(2) {
            return Err("a ring cadence is 2, 4, 6 or 8 steps, on and off in turn");
        }
        if cadence.iter().any(|ms| !(50..=10_000).contains(ms)) {
            return Err("each step of a ring cadence must be 50-10000 ms");
        }
        let mut steps = [0; MAX_STEPS];
        steps[..cadence.len()].copy_from_slice(cadence);
        Ok(RingSettings { freq_hz, steps, n_steps: cadence.len() })
    }

    /// The country's ring (ITU-T E.180 and the national specifications).
    pub fn for_country(c: Country) -> RingSettings {
        let (hz, cadence): (u32, &[u32]) = match c {
            Country::Us | Country::Ca => (20, &[2000, 4000]),
            Country::Uk | Country::Au => (25, &[400, 200, 400, 2000]),
            Country::De | Country::It | Country::Nl => (25, &[1000, 4000]),
            Country::Fr => (50, &[1500, 3500]),
            Country::Es => (25, &[1500, 3000]),
        };
        match RingSettings::new(hz, cadence) {
            Ok(s) => s,
            Err(_) => unreachable!("the built-in cadences are valid"),
        }
    }

    pub fn cadence(&self) -> &[u32] {
        &self.steps[..self.n_steps]
    }

    fn half_period(&self) -> Duration {
        Duration::from_micros(500_000 / u64::from(self.freq_hz))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingOutput {
    /// Set RM (true: ring voltage on).
    RingMode(bool),
    /// Set F/R (true: reversed).
    FwdRev(bool),
    /// The `n`th ring (1-based) has ended: Bell 202 caller ID goes out after the first.
    RingEnded(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    /// In cadence step `step` since `at`; during an "on" step F/R flips at `flip`.
    Ringing { step: usize, at: Time, flip: Time },
}

#[derive(Debug)]
pub struct Ringer {
    s: RingSettings,
    state: State,
    /// F/R's level now, and its resting level (the line's polarity).
    fr: bool,
    polarity: bool,
    rings: u32,
    out: VecDeque<RingOutput>,
}

impl Ringer {
    pub fn new(s: RingSettings) -> Ringer {
        Ringer { s, state: State::Idle, fr: false, polarity: false, rings: 0, out: VecDeque::new() }
    }

    pub fn ringing(&self) -> bool {
        self.state != State::Idle
    }

    /// Starts ringing at `now`, from the cadence's first "on" step.
    pub fn ring(&mut self, now: Time) {
        if self.ringing() {
            return;
        }
        self.rings = 0;
        self.enter(0, now);
    }

    /// Stops at once (ring-trip, the caller gave up): RM drops and F/R rests.
    pub fn stop(&mut self) {
        if self.ringing() {
            self.state = State::Idle;
            self.out.push_back(RingOutput::RingMode(false));
            self.rest();
        }
    }

    /// Sets the line's resting polarity (true: reversed); it applies at once unless a
    /// ring is on, then when it ends.
    pub fn set_polarity(&mut self, reversed: bool) {
        self.polarity = reversed;
        if !self.in_on_step() {
            self.rest();
        }
    }

    pub fn poll_output(&mut self) -> Option<RingOutput> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        match self.state {
            State::Idle => None,
            State::Ringing { step, at, flip } => {
                let end = at + self.step_len(step);
                Some(if step.is_multiple_of(2) { flip.min(end) } else { end })
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Time) {
        while let State::Ringing { step, at, flip } = self.state {
            let end = at + self.step_len(step);
            let on = step.is_multiple_of(2);
            if on && flip < end && flip <= now {
                self.fr = !self.fr;
                self.out.push_back(RingOutput::FwdRev(self.fr));
                self.state = State::Ringing { step, at, flip: flip + self.s.half_period() };
            } else if end <= now {
                if on {
                    self.rings = self.rings.saturating_add(1);
                }
                let next = (step + 1) % self.s.n_steps;
                self.enter(next, end);
                if on && !next.is_multiple_of(2) {
                    self.out.push_back(RingOutput::RingEnded(self.rings));
                }
            } else {
                return;
            }
        }
    }

    fn step_len(&self, step: usize) -> Duration {
        Duration::from_millis(u64::from(self.s.steps[step]))
    }

    fn in_on_step(&self) -> bool {
        matches!(self.state, State::Ringing { step, .. } if step.is_multiple_of(2))
    }

    fn enter(&mut self, step: usize, at: Time) {
        let on = step.is_multiple_of(2);
        self.state = State::Ringing { step, at, flip: at + self.s.half_period() };
        self.out.push_back(RingOutput::RingMode(on));
        if !on {
            self.rest();
        }
    }

    fn rest(&mut self) {
        if self.fr != self.polarity {
            self.fr = self.polarity;
            self.out.push_back(RingOutput::FwdRev(self.fr));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the ringer to `end`, returning every output with its time.
    fn run(r: &mut Ringer, end: Time) -> Vec<(Time, RingOutput)> {
        let mut v = vec![];
        while let Some(t) = r.poll_timeout().filter(|t| *t <= end) {
            r.handle_timeout(t);
            while let Some(o) = r.poll_output() {
                v.push((t, o));
            }
        }
        v
    }

    /// The instants RM rose and fell, in ms.
    fn rm_edges(v: &[(Time, RingOutput)]) -> Vec<(u64, bool)> {
        v.iter().filter_map(|(t, o)| if let RingOutput::RingMode(on) = o { Some((t.as_millis(), *on)) } else { None }).collect()
    }

    #[test]
    fn the_us_ring_is_2_s_on_4_s_off_at_20_hz_to_the_millisecond() {
        let mut r = Ringer::new(RingSettings::for_country(Country::Us));
        r.ring(Time::ZERO);
        let mut first: Vec<_> = std::iter::from_fn(|| r.poll_output()).collect();
        assert_eq!(first, vec![RingOutput::RingMode(true)]);
        let v = run(&mut r, Time::from_millis(12_000));
        assert_eq!(rm_edges(&v), vec![(2000, false), (6000, true), (8000, false), (12_000, true)]);
        // F/R flips every 25 ms during each ring: 79 flips inside the 2 s (the 80th
        // would fall on its end), then rests forward.
        let flips: Vec<_> = v.iter().filter(|(t, o)| matches!(o, RingOutput::FwdRev(_)) && t.as_millis() <= 2000).collect();
        assert_eq!(flips.len(), 80, "79 flips and the rest");
        assert_eq!(flips[0].0, Time::from_millis(25));
        assert_eq!(flips[1].0, Time::from_millis(50));
        assert_eq!(flips.last().unwrap(), &&(Time::from_millis(2000), RingOutput::FwdRev(false)));
        first.clear();
        assert!(v.contains(&(Time::from_millis(2000), RingOutput::RingEnded(1))));
        assert!(v.contains(&(Time::from_millis(8000), RingOutput::RingEnded(2))));
    }

    #[test]
    fn the_uk_double_ring_and_each_country_s_cadence_repeat_exactly() {
        let mut r = Ringer::new(RingSettings::for_country(Country::Uk));
        r.ring(Time::ZERO);
        assert_eq!(r.poll_output(), Some(RingOutput::RingMode(true)));
        let v = run(&mut r, Time::from_millis(3000));
        assert_eq!(rm_edges(&v), vec![(400, false), (600, true), (1000, false), (3000, true)]);
        // The double ring is two rings for caller ID's count.
        assert!(v.contains(&(Time::from_millis(400), RingOutput::RingEnded(1))));
        for c in [Country::Us, Country::Ca, Country::Uk, Country::De, Country::Fr, Country::It, Country::Es, Country::Nl, Country::Au] {
            let s = RingSettings::for_country(c);
            let period: u32 = s.cadence().iter().sum();
            let mut r = Ringer::new(s);
            r.ring(Time::ZERO);
            let v = run(&mut r, Time::from_millis(u64::from(period) * 3));
            let rises: Vec<u64> = rm_edges(&v).iter().filter(|e| e.1).map(|e| e.0).collect();
            let cycle_starts: Vec<u64> = rises.iter().copied().filter(|t| t % u64::from(period) == 0).collect();
            assert_eq!(cycle_starts, vec![u64::from(period), 2 * u64::from(period), 3 * u64::from(period)], "{c:?}");
            // F/R only flips while RM is up.
            let mut rm = false;
            for (t, o) in &v {
                match o {
                    RingOutput::RingMode(on) => rm = *on,
                    RingOutput::FwdRev(_) => assert!(rm || rm_edges(&v).contains(&(t.as_millis(), false)), "{c:?} F/R at {t}"),
                    RingOutput::RingEnded(_) => {}
                }
            }
        }
    }

    #[test]
    fn ring_trip_stops_at_once_and_polarity_rests_where_the_line_wants_it() {
        let mut r = Ringer::new(RingSettings::for_country(Country::De));
        r.set_polarity(true);
        assert_eq!(r.poll_output(), Some(RingOutput::FwdRev(true)));
        r.ring(Time::ZERO);
        run(&mut r, Time::from_millis(510));
        r.stop();
        let out: Vec<_> = std::iter::from_fn(|| r.poll_output()).collect();
        assert_eq!(out.first(), Some(&RingOutput::RingMode(false)));
        assert!(!r.ringing() && r.poll_timeout().is_none());
        // 25 Hz: 20 ms half periods, 25 flips by 510 ms (odd: F/R at normal), so
        // stopping brings it back to reversed.
        assert_eq!(out.last(), Some(&RingOutput::FwdRev(true)));
    }

    #[test]
    fn bad_ring_settings_are_refused_naming_the_problem() {
        assert!(RingSettings::new(10, &[1000, 4000]).unwrap_err().contains("15-60 Hz"));
        assert!(RingSettings::new(20, &[1000]).unwrap_err().contains("on and off"));
        assert!(RingSettings::new(20, &[1000, 4000, 1000]).unwrap_err().contains("on and off"));
        assert!(RingSettings::new(20, &[10, 4000]).unwrap_err().contains("50-10000"));
        assert!(RingSettings::new(20, &[400, 200, 400, 2000]).is_ok());
    }
}
