//! Ring detection on an FXO port: the DAA's `ring_detect` input (an optocoupler across
//! the line) turned into rings and the end of ringing. Pure and on the engine's clock.
//!
//! The board file says what the input gives while the line rings:
//! - `Level`: active for the whole ring (a DAA with its own filter);
//! - `Pulses`: a pulse per half cycle of the ring voltage (a bare optocoupler behind a
//!   bridge: pulses at twice the ring frequency, 30-50 per second at 15-25 Hz; or once
//!   per cycle behind a single diode).
//!
//! A ring starts when the input has been active (or pulsing, no gap longer than
//! `pulse_gap`) for `ring_min`: line noise, a dial pulse or a polarity reversal on the
//! line makes a single spike, not a ring. It ends when the input has been quiet for
//! `pulse_gap` (pulses) or `release` (level). Ringing is over (the caller gave up, or
//! another phone on the line answered) when no ring has started for `ringing_over`
//! since the last one ended: longer than the longest silence of any country's cadence
//! (4 s in the US).

use crate::core::Time;
use std::collections::VecDeque;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingInput {
    Level,
    Pulses,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingDetectSettings {
    pub input: RingInput,
    /// Activity that makes a ring.
    pub ring_min: Duration,
    /// Longest gap between the pulses of one ring (`Pulses`).
    pub pulse_gap: Duration,
    /// Quiet that ends a ring (`Level`).
    pub release: Duration,
    /// Quiet after a ring that ends the ringing.
    pub ringing_over: Duration,
}

impl RingDetectSettings {
    pub fn new(input: RingInput) -> RingDetectSettings {
        RingDetectSettings {
            input,
            ring_min: Duration::from_millis(150),
            // One cycle of a 15 Hz ring is 67 ms: a half-wave detector's gaps are that.
            pulse_gap: Duration::from_millis(80),
            release: Duration::from_millis(50),
            ringing_over: Duration::from_millis(6500),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingEvent {
    /// A ring began (its activity started at `since`); the first one is a new call.
    RingStarted { since: Time },
    /// The ring ended; caller ID (Bell 202) follows the first one.
    RingEnded,
    /// No ring since `ringing_over`: the caller gave up or it was answered elsewhere.
    RingingOver,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Quiet,
    /// Activity since `since`, last seen at `last`: not a ring yet. `between`: the end
    /// of the ring before, if this came between two rings (a spike returns there).
    Maybe { since: Time, last: Time, between: Option<Time> },
    Ring { last: Time },
    /// Between rings since then.
    Between(Time),
}

#[derive(Debug)]
pub struct RingDetect {
    s: RingDetectSettings,
    /// The input's level (Level: is it active).
    active: bool,
    state: State,
    events: VecDeque<RingEvent>,
    /// Activity that never became a ring.
    pub spikes: u64,
}

impl RingDetect {
    pub fn new(s: RingDetectSettings) -> RingDetect {
        RingDetect { s, active: false, state: State::Quiet, events: VecDeque::new(), spikes: 0 }
    }

    /// Whether a ring is on now.
    pub fn ringing(&self) -> bool {
        matches!(self.state, State::Ring { .. })
    }

    /// Whether the line is in a ringing sequence (a ring on, or between two).
    pub fn alerting(&self) -> bool {
        matches!(self.state, State::Ring { .. } | State::Between(_))
    }

    /// The input changed to `active` at `at`.
    pub fn edge(&mut self, at: Time, active: bool) {
        self.handle_timeout(at);
        if active == self.active && self.s.input == RingInput::Level {
            return;
        }
        self.active = active;
        // A pulse counts at its rising edge; a level keeps the ring alive while it is
        // up and from its falling edge on.
        let activity = match self.s.input {
            RingInput::Pulses => active,
            RingInput::Level => true,
        };
        if !activity {
            return;
        }
        self.state = match self.state {
            State::Quiet => State::Maybe { since: at, last: at, between: None },
            State::Between(end) => State::Maybe { since: at, last: at, between: Some(end) },
            State::Maybe { since, between, .. } => State::Maybe { since, last: at, between },
            State::Ring { .. } => State::Ring { last: at },
        };
        self.qualify(at);
    }

    pub fn poll_event(&mut self) -> Option<RingEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        match self.state {
            State::Quiet => None,
            // A level up becomes a ring by itself; pulses qualify as they come, and
            // stop counting after a quiet spell.
            State::Maybe { since, last, .. } => Some(if self.level_up() { since + self.s.ring_min } else { last + self.quiet() }),
            State::Ring { last } => (!self.level_up()).then(|| last + self.quiet()),
            State::Between(at) => Some(at + self.s.ringing_over),
        }
    }

    pub fn handle_timeout(&mut self, now: Time) {
        loop {
            let before = self.state;
            match self.state {
                State::Quiet => {}
                State::Maybe { last, between, .. } => {
                    self.qualify(now);
                    if matches!(self.state, State::Maybe { .. }) && !self.level_up() && now >= last + self.quiet() {
                        self.spikes += 1;
                        self.state = between.map_or(State::Quiet, State::Between);
                    }
                }
                State::Ring { last } => {
                    if !self.level_up() && now >= last + self.quiet() {
                        let end = last + self.quiet();
                        self.state = State::Between(end);
                        self.events.push_back(RingEvent::RingEnded);
                    }
                }
                State::Between(at) => {
                    if now >= at + self.s.ringing_over {
                        self.state = State::Quiet;
                        self.events.push_back(RingEvent::RingingOver);
                    }
                }
            }
            if self.state == before {
                return;
            }
        }
    }

    /// Activity since `since` has lasted `ring_min` by `now`: a ring.
    fn qualify(&mut self, now: Time) {
        if let State::Maybe { since, last, .. } = self.state {
            let lasted = if self.level_up() { now } else { last };
            if lasted.since(since) >= self.s.ring_min {
                self.state = State::Ring { last: lasted };
                self.events.push_back(RingEvent::RingStarted { since });
            }
        }
    }

    fn level_up(&self) -> bool {
        self.s.input == RingInput::Level && self.active
    }

    fn quiet(&self) -> Duration {
        match self.s.input {
            RingInput::Pulses => self.s.pulse_gap,
            RingInput::Level => self.s.release,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Feeds `edges` (time ms, level) and runs every timer up to `end` ms, returning the
    /// events with their times in ms.
    fn run(d: &mut RingDetect, edges: &[(u64, bool)], end: u64) -> Vec<(u64, RingEvent)> {
        let mut v = vec![];
        let mut drain = |d: &mut RingDetect, t: Time| {
            while let Some(e) = d.poll_event() {
                v.push((t.as_millis(), e));
            }
        };
        for &(t, level) in edges {
            let t = Time::from_millis(t);
            while let Some(due) = d.poll_timeout().filter(|x| *x < t) {
                d.handle_timeout(due);
                drain(d, due);
            }
            d.edge(t, level);
            drain(d, t);
        }
        while let Some(due) = d.poll_timeout().filter(|x| *x <= Time::from_millis(end)) {
            d.handle_timeout(due);
            drain(d, due);
        }
        v
    }

    /// A ring of `len_ms` from `start` ms as pulses every `period_ms` (5 ms wide).
    fn pulses(start: u64, len_ms: u64, period_ms: u64) -> Vec<(u64, bool)> {
        (0..len_ms / period_ms).flat_map(|i| [(start + i * period_ms, true), (start + i * period_ms + 5, false)]).collect()
    }

    #[test]
    fn pulses_at_twice_a_20_hz_ring_make_us_rings_and_the_end_of_ringing() {
        let mut d = RingDetect::new(RingDetectSettings::new(RingInput::Pulses));
        let mut edges = pulses(0, 2000, 25);
        edges.extend(pulses(6000, 2000, 25));
        let v = run(&mut d, &edges, 20_000);
        assert_eq!(
            v,
            vec![
                (150, RingEvent::RingStarted { since: Time::ZERO }),
                (2055, RingEvent::RingEnded),
                (6150, RingEvent::RingStarted { since: Time::from_millis(6000) }),
                (8055, RingEvent::RingEnded),
                (8055 + 6500, RingEvent::RingingOver),
            ]
        );
    }

    #[test]
    fn a_half_wave_detector_at_15_hz_and_a_level_input_ring_too_and_a_spike_does_not() {
        let mut d = RingDetect::new(RingDetectSettings::new(RingInput::Pulses));
        let v = run(&mut d, &pulses(0, 1000, 67), 2000);
        assert_eq!(v[0], (201, RingEvent::RingStarted { since: Time::ZERO }), "the fourth pulse passes ring_min");
        assert_eq!(v[1].1, RingEvent::RingEnded);
        let mut d = RingDetect::new(RingDetectSettings::new(RingInput::Level));
        let v = run(&mut d, &[(100, true), (1100, false)], 1200);
        assert_eq!(v, vec![(250, RingEvent::RingStarted { since: Time::from_millis(100) }), (1150, RingEvent::RingEnded)]);
        // A spike (a polarity reversal, a dial pulse on a shared line): nothing.
        let mut d = RingDetect::new(RingDetectSettings::new(RingInput::Pulses));
        let v = run(&mut d, &pulses(0, 100, 25), 10_000);
        assert_eq!(v, vec![]);
        assert_eq!(d.spikes, 1);
        let mut d = RingDetect::new(RingDetectSettings::new(RingInput::Level));
        assert_eq!(run(&mut d, &[(0, true), (149, false)], 10_000), vec![]);
        assert_eq!(d.spikes, 1);
    }

    #[test]
    fn a_uk_double_ring_is_two_rings_and_a_gap_inside_one_is_not_its_end() {
        let mut d = RingDetect::new(RingDetectSettings::new(RingInput::Pulses));
        let mut edges = pulses(0, 400, 20);
        edges.extend(pulses(600, 400, 20));
        let v = run(&mut d, &edges, 2000);
        let starts = v.iter().filter(|e| matches!(e.1, RingEvent::RingStarted { .. })).count();
        assert_eq!(starts, 2);
        // A 60 ms gap (a lost pulse or two) inside a ring keeps it one ring.
        let mut d = RingDetect::new(RingDetectSettings::new(RingInput::Pulses));
        let mut edges = pulses(0, 500, 25);
        edges.extend(pulses(535, 500, 25));
        let v = run(&mut d, &edges, 1200);
        assert_eq!(v.iter().filter(|e| e.1 == RingEvent::RingEnded).count(), 1, "{v:?}");
    }

    #[test]
    fn a_spike_between_two_rings_does_not_lose_the_end_of_ringing() {
        let mut d = RingDetect::new(RingDetectSettings::new(RingInput::Pulses));
        let mut edges = pulses(0, 2000, 25);
        edges.extend(pulses(3000, 50, 25));
        let v = run(&mut d, &edges, 10_000);
        assert_eq!(v.last(), Some(&(2055 + 6500, RingEvent::RingingOver)), "{v:?}");
        assert_eq!(d.spikes, 1);
        assert!(!d.alerting() && d.poll_timeout().is_none());
        assert_eq!(ms(0), Duration::ZERO);
    }
}
