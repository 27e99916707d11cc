//! The hook switch of an FXS port, from the SLIC's `hook` (SHK) input to what the
//! subscriber did: lifted the handset, hung up, flashed, dialled a rotary digit.
//! Pure and on the engine's clock: the shell hands in every edge of the input with
//! the time it was seen; this debounces and classifies.
//!
//! - **Debounce**: a level counts once it has held for `debounce` (contact bounce and
//!   ringing noise are shorter); its time is the edge that started it, so durations
//!   are measured from the real edges, not from the debounce timer.
//! - **An on-hook spell** (a "break") is classified by its length when it ends:
//!   shorter than `flash_min` is a dial pulse, `flash_min..=flash_max` a hook flash,
//!   and one that reaches past `flash_max` is a hang-up, reported as soon as it does
//!   (not when the handset is lifted again).
//! - **Pulse dialling**: the pulses of one digit are counted until the line has been
//!   off-hook for `digit_gap` (longer than any make between pulses, shorter than a
//!   person's pause between digits); ten pulses are 0. A count past ten is no digit
//!   and is dropped (counted in `bad_digits`). Rotary dials run at 8-12 pulses per
//!   second with a break of 55-70 % of each pulse: at 8 pps the longest break is about
//!   88 ms and the shortest make about 38 ms, at 12 pps the shortest break about 46
//!   ms and make 25 ms, so the defaults (debounce 10 ms, flash from 100 ms, a digit
//!   after 150 ms off-hook) separate them with room on both sides.

use crate::core::Time;
use std::collections::VecDeque;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HookSettings {
    pub debounce: Duration,
    /// The shortest on-hook spell that is a hook flash; anything shorter is a dial pulse.
    pub flash_min: Duration,
    /// The longest on-hook spell that is a hook flash; anything longer is a hang-up.
    pub flash_max: Duration,
    /// Off-hook time that ends a pulsed digit.
    pub digit_gap: Duration,
}

impl Default for HookSettings {
    fn default() -> Self {
        HookSettings {
            debounce: Duration::from_millis(10),
            flash_min: Duration::from_millis(100),
            flash_max: Duration::from_millis(800),
            digit_gap: Duration::from_millis(150),
        }
    }
}

impl HookSettings {
    /// Whether the windows are in order and leave pulses room: debounce shorter than
    /// the shortest make (20 ms), flash_min above the longest break (90 ms), flash_max
    /// above flash_min, digit_gap above the longest make (60 ms).
    pub fn check(&self) -> Result<(), &'static str> {
        let ms = Duration::from_millis;
        if self.debounce.is_zero() || self.debounce > ms(20) {
            return Err("the hook debounce must be 1-20 ms (a dial pulse's make can be 25 ms)");
        }
        if self.flash_min < ms(90) {
            return Err("the shortest hook flash must be at least 90 ms (a dial pulse's break can be 88 ms)");
        }
        if self.flash_max <= self.flash_min || self.flash_max > ms(2000) {
            return Err("the longest hook flash must be above the shortest and at most 2000 ms");
        }
        if self.digit_gap < ms(60) || self.digit_gap >= self.flash_max {
            return Err("the gap that ends a pulsed digit must be at least 60 ms and below the longest flash");
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookEvent {
    /// The handset was lifted (from idle).
    OffHook,
    /// The handset was put down for longer than a flash.
    OnHook,
    Flash,
    /// A rotary digit, '0'..='9'.
    Digit(char),
}

/// Where the debounced switch is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// On hook, nothing going on.
    Idle,
    OffHook,
    /// On hook since then: a pulse, a flash or a hang-up, not known yet.
    Break(Time),
}

/// Events waiting to be polled; a subscriber cannot make more than a few in the time
/// between two polls, and older ones are dropped first if they do.
const MAX_EVENTS: usize = 16;

#[derive(Debug)]
pub struct Hook {
    s: HookSettings,
    /// The raw input as last seen, and since when.
    raw: bool,
    raw_at: Time,
    /// The debounced level (true: off-hook).
    stable: bool,
    state: State,
    pulses: u8,
    /// When the pulsed digit ends (off-hook for `digit_gap`).
    digit_at: Option<Time>,
    events: VecDeque<HookEvent>,
    pub bad_digits: u64,
    pub dropped_events: u64,
}

impl Hook {
    /// A hook switch that is on hook (idle) at `now`.
    pub fn new(s: HookSettings, now: Time) -> Hook {
        Hook {
            s,
            raw: false,
            raw_at: now,
            stable: false,
            state: State::Idle,
            pulses: 0,
            digit_at: None,
            events: VecDeque::new(),
            bad_digits: 0,
            dropped_events: 0,
        }
    }

    /// Whether the debounced switch is off hook.
    pub fn off_hook(&self) -> bool {
        self.stable
    }

    /// The input changed to `off_hook` at `at` (an edge event's own timestamp, which
    /// may be a little before `now`).
    pub fn edge(&mut self, at: Time, off_hook: bool) {
        // What fell due before the edge first; a break that ends exactly at
        // `flash_max` is still a flash.
        self.advance(at, false);
        if off_hook != self.raw {
            self.raw = off_hook;
            self.raw_at = at;
        }
    }

    pub fn poll_event(&mut self) -> Option<HookEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        [self.settle_at(), self.hang_up_at(), self.digit_due()].into_iter().flatten().min()
    }

    pub fn handle_timeout(&mut self, now: Time) {
        self.advance(now, true);
    }

    /// Runs what is due by `now`, in time order (each step may change what is due
    /// next); a hang-up due exactly at `now` only if `hang_up_at_now`.
    fn advance(&mut self, now: Time, hang_up_at_now: bool) {
        loop {
            let due = |t: Option<Time>| t.filter(|t| *t <= now);
            let hang_up = self.hang_up_at().filter(|t| *t < now || (hang_up_at_now && *t == now));
            let (settle, digit) = (due(self.settle_at()), due(self.digit_due()));
            let Some(next) = [settle, hang_up, digit].into_iter().flatten().min() else { return };
            if settle == Some(next) {
                self.settle();
            } else if hang_up == Some(next) {
                // A digit being pulsed and then a hang-up: the digit was never finished.
                self.state = State::Idle;
                self.digit_at = None;
                self.pulses = 0;
                self.push(HookEvent::OnHook);
            } else {
                self.end_digit();
            }
        }
    }

    /// The start of a raw level not yet settled.
    fn pending_edge(&self) -> Option<Time> {
        (self.raw != self.stable).then_some(self.raw_at)
    }

    fn settle_at(&self) -> Option<Time> {
        self.pending_edge().map(|e| e + self.s.debounce)
    }

    /// When an on-hook spell becomes a hang-up; not while an edge from before then is
    /// still settling (the spell may have ended in time).
    fn hang_up_at(&self) -> Option<Time> {
        let State::Break(since) = self.state else { return None };
        let at = since + self.s.flash_max;
        self.pending_edge().is_none_or(|e| e > at).then_some(at)
    }

    /// When the pulsed digit ends; not while a break from before then is still
    /// settling (it may be the digit's next pulse).
    fn digit_due(&self) -> Option<Time> {
        let at = self.digit_at?;
        self.pending_edge().is_none_or(|e| e >= at).then_some(at)
    }

    /// The raw level has held for `debounce`: it is the switch's level from the edge
    /// that started it.
    fn settle(&mut self) {
        let at = self.raw_at;
        self.stable = self.raw;
        match (self.state, self.stable) {
            (State::Idle, true) => {
                self.state = State::OffHook;
                self.push(HookEvent::OffHook);
            }
            (State::OffHook, false) => {
                self.state = State::Break(at);
                self.digit_at = None;
            }
            (State::Break(since), true) => {
                let d = at.since(since);
                self.state = State::OffHook;
                if d < self.s.flash_min {
                    self.pulses = self.pulses.saturating_add(1);
                    self.digit_at = Some(at + self.s.digit_gap);
                } else {
                    // A flash (a longer break was a hang-up already). A digit being
                    // pulsed ends first.
                    if self.pulses > 0 {
                        self.end_digit();
                    }
                    self.push(HookEvent::Flash);
                }
            }
            _ => {}
        }
    }

    fn end_digit(&mut self) {
        self.digit_at = None;
        let n = std::mem::take(&mut self.pulses);
        match n {
            1..=9 => self.push(HookEvent::Digit(char::from(b'0' + n))),
            10 => self.push(HookEvent::Digit('0')),
            _ => self.bad_digits += 1,
        }
    }

    fn push(&mut self, e: HookEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
            self.dropped_events += 1;
        }
        self.events.push_back(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Drives a hook through `spells` (off-hook?, duration) from `start`, running every
    /// timer on the way, and returns the events with the time each came out.
    fn drive(h: &mut Hook, start: Time, spells: &[(bool, Duration)]) -> (Vec<(Time, HookEvent)>, Time) {
        let mut out = vec![];
        let mut t = start;
        for &(level, d) in spells {
            h.edge(t, level);
            let end = t + d;
            while let Some(due) = h.poll_timeout().filter(|x| *x < end) {
                h.handle_timeout(due);
                while let Some(e) = h.poll_event() {
                    out.push((due, e));
                }
            }
            t = end;
        }
        h.handle_timeout(t);
        while let Some(e) = h.poll_event() {
            out.push((t, e));
        }
        (out, t)
    }

    fn events(v: &[(Time, HookEvent)]) -> Vec<HookEvent> {
        v.iter().map(|(_, e)| *e).collect()
    }

    /// The spells of dialling `digits` at `pps` with a break of `break_pct` % of each
    /// pulse, and `pause` off-hook between digits.
    fn rotary(digits: &str, pps: u64, break_pct: u64, pause: Duration) -> Vec<(bool, Duration)> {
        let period = 1_000_000 / pps; // µs
        let brk = Duration::from_micros(period * break_pct / 100);
        let make = Duration::from_micros(period - period * break_pct / 100);
        let mut v = vec![];
        for c in digits.chars() {
            let n = match c.to_digit(10).unwrap() {
                0 => 10,
                n => n,
            };
            for i in 0..n {
                v.push((false, brk));
                v.push((true, if i + 1 == n { pause } else { make }));
            }
        }
        v
    }

    #[test]
    fn lifting_and_hanging_up_are_reported_once_the_level_holds_and_a_hang_up_when_it_passes_flash_max() {
        let mut h = Hook::new(HookSettings::default(), Time::ZERO);
        // Bounce: 3 ms of chatter, then off-hook for good.
        let (ev, t) = drive(&mut h, Time::from_millis(100), &[(true, ms(1)), (false, ms(1)), (true, ms(1)), (false, ms(1)), (true, ms(500))]);
        assert_eq!(ev, vec![(Time::from_millis(114), HookEvent::OffHook)], "debounced from the last edge of the chatter");
        // Down for good: the hang-up is reported flash_max after the edge, not later.
        let (ev, _) = drive(&mut h, t, &[(false, ms(2000))]);
        assert_eq!(ev, vec![(t + ms(800), HookEvent::OnHook)]);
        assert!(!h.off_hook());
    }

    #[test]
    fn a_break_at_the_window_edges_is_a_pulse_a_flash_or_a_hang_up() {
        let s = HookSettings::default();
        for (brk, want) in [
            (ms(99), vec![HookEvent::Digit('1')]),
            (ms(100), vec![HookEvent::Flash]),
            (ms(800), vec![HookEvent::Flash]),
            (Duration::from_micros(800_001), vec![HookEvent::OnHook, HookEvent::OffHook]),
        ] {
            let mut h = Hook::new(s, Time::ZERO);
            let (_, t) = drive(&mut h, Time::ZERO, &[(true, ms(1000))]);
            let (ev, _) = drive(&mut h, t, &[(false, brk), (true, ms(1000))]);
            assert_eq!(events(&ev), want, "a break of {brk:?}");
        }
        // A glitch shorter than the debounce is nothing at all.
        let mut h = Hook::new(s, Time::ZERO);
        let (_, t) = drive(&mut h, Time::ZERO, &[(true, ms(1000))]);
        let (ev, _) = drive(&mut h, t, &[(false, ms(9)), (true, ms(1000))]);
        assert_eq!(events(&ev), vec![]);
    }

    #[test]
    fn a_configured_flash_window_is_obeyed_to_the_millisecond() {
        let s = HookSettings { flash_min: ms(300), flash_max: ms(600), ..HookSettings::default() };
        assert_eq!(s.check(), Ok(()));
        for (brk, want) in [(ms(299), None), (ms(300), Some(HookEvent::Flash)), (ms(600), Some(HookEvent::Flash)), (ms(601), Some(HookEvent::OnHook))] {
            let mut h = Hook::new(s, Time::ZERO);
            let (_, t) = drive(&mut h, Time::ZERO, &[(true, ms(1000))]);
            let (ev, _) = drive(&mut h, t, &[(false, brk), (true, ms(1000))]);
            let first = events(&ev).first().copied();
            match want {
                // 299 ms is a pulse of one: a '1' (a real dial never makes such a break,
                // but it is shorter than a flash).
                None => assert_eq!(first, Some(HookEvent::Digit('1')), "{brk:?}"),
                w => assert_eq!(first, w, "{brk:?}"),
            }
        }
    }

    #[test]
    fn rotary_dialling_at_8_10_and_12_pps_with_real_break_make_ratios_gives_the_digits() {
        for pps in [8, 10, 12] {
            for break_pct in [55, 60, 67, 70] {
                let mut h = Hook::new(HookSettings::default(), Time::ZERO);
                let (_, t) = drive(&mut h, Time::ZERO, &[(true, ms(1000))]);
                let (ev, _) = drive(&mut h, t, &rotary("4072815963", pps, break_pct, ms(400)));
                let got: String = events(&ev).iter().map(|e| if let HookEvent::Digit(c) = e { *c } else { '?' }).collect();
                assert_eq!(got, "4072815963", "{pps} pps, break {break_pct} %");
                assert_eq!(h.bad_digits, 0);
            }
        }
    }

    #[test]
    fn a_digit_ends_digit_gap_after_its_last_pulse_and_a_flash_after_pulses_ends_the_digit_first() {
        let mut h = Hook::new(HookSettings::default(), Time::ZERO);
        let (_, t) = drive(&mut h, Time::ZERO, &[(true, ms(1000))]);
        let (ev, _) = drive(&mut h, t, &rotary("3", 10, 60, ms(1000)));
        // The third break ends 60 + 40 + 60 + 40 + 60 ms in; the digit 150 ms later.
        assert_eq!(ev, vec![(t + ms(260 + 150), HookEvent::Digit('3'))]);
        let mut spells = rotary("2", 10, 60, ms(40));
        spells.push((false, ms(400)));
        spells.push((true, ms(1000)));
        let (ev, _) = drive(&mut h, t + ms(2000), &spells);
        assert_eq!(events(&ev), vec![HookEvent::Digit('2'), HookEvent::Flash]);
    }

    #[test]
    fn too_many_pulses_are_no_digit_and_are_counted() {
        let mut h = Hook::new(HookSettings::default(), Time::ZERO);
        let (_, t) = drive(&mut h, Time::ZERO, &[(true, ms(1000))]);
        let mut spells = vec![];
        for _ in 0..11 {
            spells.push((false, ms(60)));
            spells.push((true, ms(40)));
        }
        spells.push((true, ms(500)));
        let (ev, _) = drive(&mut h, t, &spells);
        assert_eq!(events(&ev), vec![]);
        assert_eq!(h.bad_digits, 1);
    }

    #[test]
    fn settings_out_of_order_are_refused_naming_the_problem() {
        let ok = HookSettings::default();
        assert_eq!(ok.check(), Ok(()));
        assert!(HookSettings { flash_min: ms(80), ..ok }.check().unwrap_err().contains("shortest hook flash"));
        assert!(HookSettings { flash_max: ms(100), ..ok }.check().unwrap_err().contains("longest hook flash"));
        assert!(HookSettings { debounce: ms(30), ..ok }.check().unwrap_err().contains("debounce"));
        assert!(HookSettings { digit_gap: ms(50), ..ok }.check().unwrap_err().contains("pulsed digit"));
    }

    #[test]
    fn any_edge_sequence_leaves_the_machine_consistent() {
        // A deterministic pseudo-random storm of edges: no panic, a bounded queue, and
        // once left alone the switch settles on the last level.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..200 {
            let mut h = Hook::new(HookSettings::default(), Time::ZERO);
            let mut t = Time::ZERO;
            let mut level = false;
            for _ in 0..300 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                t = t + Duration::from_micros(x % 200_000);
                level = !level;
                h.edge(t, level);
                while let Some(d) = h.poll_timeout().filter(|d| *d <= t) {
                    h.handle_timeout(d);
                }
                assert!(h.events.len() <= MAX_EVENTS);
            }
            h.handle_timeout(t + ms(5000));
            assert_eq!(h.off_hook(), level);
            assert!(h.poll_timeout().is_none(), "nothing left to time");
        }
    }
}
