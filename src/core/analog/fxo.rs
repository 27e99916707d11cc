//! An FXO port's line (a PSTN line on a DAA), inbound, at the level of calls. Pure and
//! on the engine's clock. It takes what the ring detector says (`ring_detect`), the
//! caller ID the shell's receiver decoded from the line, the line's supervision (loop
//! current, polarity, busy or reorder tone heard on it), and what happens to the call
//! it placed; it gives the calls to make and drop, the seize relay, and the audio
//! bridge (`FxoOut`).
//!
//! - **Ringing** starts a call: the box waits for caller ID (it comes after the first
//!   ring in North America, before it in most of Europe; one already decoded within
//!   `cid_early` before the first ring counts) and places the call to the device's
//!   inbound line when it arrives, when the second ring starts, or `cid_wait` after
//!   the first ring ended, whichever comes first. The PSTN keeps ringing the line
//!   while the box rings its phones; the line is not seized yet.
//! - **Answered** inside the box: the line is seized (off hook) and the port joins
//!   the call's media.
//! - **The PSTN caller gives up** before that (the ring detector says ringing is
//!   over): the call is dropped.
//! - **Disconnect supervision** while seized: loop current gone for `loop_drop`, a
//!   polarity reversal, or busy or reorder tone heard on the line end the call and
//!   release the line.
//! - **The box's side hangs up**: the line is released.

use super::fxs::Cid;
use crate::core::Time;
use std::collections::VecDeque;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FxoSettings {
    /// How long after the first ring the box waits for caller ID.
    pub cid_wait: Duration,
    /// How long a caller ID decoded while idle is kept for the ring that follows it.
    pub cid_early: Duration,
    /// Loop current gone this long is a disconnect (calling party control is a 90 ms
    /// to 800 ms open loop; dial pulses on an extension are shorter).
    pub loop_drop: Duration,
}

impl Default for FxoSettings {
    fn default() -> Self {
        FxoSettings { cid_wait: Duration::from_millis(4500), cid_early: Duration::from_secs(10), loop_drop: Duration::from_millis(150) }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FxoOut {
    /// Place the call to the inbound line, with the PSTN caller's ID if known.
    Place { cid: Option<Cid> },
    Drop { call: String },
    /// The seize relay (true: off hook).
    Seize(bool),
    Connect { call: String },
    Disconnect,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Idle,
    /// The line rings; no call placed yet.
    Ringing { cid: Option<Cid> },
    /// `Place` went out; the call's name once known. `refused`: it failed, and the
    /// line is left to ring out.
    Offering { call: Option<String>, refused: bool },
    Seized { call: String },
}

/// Why the line is given up while seized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Supervision {
    LoopCurrentGone,
    PolarityReversed,
    /// Busy or reorder heard on the line.
    Tone,
}

#[derive(Debug)]
pub struct FxoLine {
    s: FxoSettings,
    state: State,
    /// A caller ID decoded while idle, and until when it is kept.
    early: Option<(Cid, Time)>,
    /// When to place the call without caller ID (`Ringing`), or when the loop current
    /// has been gone long enough (`Seized`).
    timer: Option<Time>,
    out: VecDeque<FxoOut>,
}

impl FxoLine {
    pub fn new(s: FxoSettings) -> FxoLine {
        FxoLine { s, state: State::Idle, early: None, timer: None, out: VecDeque::new() }
    }

    pub fn poll_output(&mut self) -> Option<FxoOut> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        [self.timer, self.early.as_ref().map(|e| e.1)].into_iter().flatten().min()
    }

    pub fn call(&self) -> Option<&str> {
        match &self.state {
            State::Offering { call, .. } => call.as_deref(),
            State::Seized { call } => Some(call),
            _ => None,
        }
    }

    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::Idle => "idle",
            State::Ringing { .. } => "ringing",
            State::Offering { refused: false, .. } => "offering",
            State::Offering { refused: true, .. } => "refused",
            State::Seized { .. } => "seized",
        }
    }

    fn place(&mut self, cid: Option<Cid>) {
        self.timer = None;
        self.state = State::Offering { call: None, refused: false };
        self.out.push_back(FxoOut::Place { cid });
    }

    /// A ring began.
    pub fn ring_started(&mut self, now: Time) {
        match &mut self.state {
            State::Idle => {
                let cid = self.early.take().filter(|(_, until)| *until >= now).map(|(c, _)| c);
                if cid.is_some() {
                    // Caller ID came before the ring (ETSI): nothing more to wait for.
                    return self.place(cid);
                }
                self.state = State::Ringing { cid: None };
            }
            // The second ring: caller ID had its chance.
            State::Ringing { cid } => {
                let cid = cid.take();
                self.place(cid);
            }
            _ => {}
        }
    }

    /// A ring ended: the wait for caller ID runs from the first.
    pub fn ring_ended(&mut self, now: Time) {
        if matches!(self.state, State::Ringing { .. }) && self.timer.is_none() {
            self.timer = Some(now + self.s.cid_wait);
        }
    }

    /// No ring for a while: the caller gave up (or another set answered).
    pub fn ringing_over(&mut self) {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Offering { call: Some(call), refused: false } => self.out.push_back(FxoOut::Drop { call }),
            s @ State::Seized { .. } => self.state = s,
            _ => {}
        }
        if !matches!(self.state, State::Seized { .. }) {
            self.timer = None;
        }
    }

    /// Caller ID decoded from the line.
    pub fn caller_id(&mut self, now: Time, cid: Cid) {
        match &mut self.state {
            State::Idle => self.early = Some((cid, now + self.s.cid_early)),
            State::Ringing { .. } => self.place(Some(cid)),
            _ => {}
        }
    }

    /// The engine's answer to `Place`: the call, or `None` (refused).
    pub fn placed(&mut self, call: Option<String>) {
        if let State::Offering { call: c @ None, refused } = &mut self.state {
            match call {
                Some(name) => *c = Some(name),
                None => *refused = true,
            }
        } else if let Some(call) = call {
            // The caller gave up meanwhile.
            self.out.push_back(FxoOut::Drop { call });
        }
    }

    /// The call was answered inside the box and its media is up: seize and join.
    pub fn answered(&mut self, call: &str) {
        if let State::Offering { call: Some(c), .. } = &self.state {
            if c == call {
                self.state = State::Seized { call: call.to_string() };
                self.out.push_back(FxoOut::Seize(true));
                self.out.push_back(FxoOut::Connect { call: call.to_string() });
            }
        }
    }

    /// The call ended inside the box (hung up, refused, not answered).
    pub fn ended(&mut self, call: &str) {
        match &mut self.state {
            State::Seized { call: c } if c == call => self.release(),
            State::Offering { call: Some(c), refused } if c == call => {
                // Nobody took it: the line rings out by itself (it is never seized).
                *refused = true;
            }
            _ => {}
        }
    }

    fn release(&mut self) {
        self.state = State::Idle;
        self.timer = None;
        self.out.push_back(FxoOut::Disconnect);
        self.out.push_back(FxoOut::Seize(false));
    }

    /// The far end went away while the line is seized.
    pub fn supervision(&mut self, now: Time, what: Supervision, active: bool) {
        let State::Seized { call } = &self.state else { return };
        let call = call.clone();
        match what {
            Supervision::LoopCurrentGone if !active => {
                self.timer.get_or_insert(now + self.s.loop_drop);
            }
            // The loop current came back within the window: a glitch.
            Supervision::LoopCurrentGone => self.timer = None,
            Supervision::PolarityReversed | Supervision::Tone => {
                self.out.push_back(FxoOut::Drop { call });
                self.release();
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Time) {
        if self.early.as_ref().is_some_and(|e| e.1 <= now) {
            self.early = None;
        }
        let Some(at) = self.timer.filter(|t| *t <= now) else { return };
        let _ = at;
        self.timer = None;
        match &mut self.state {
            State::Ringing { cid } => {
                let cid = cid.take();
                self.place(cid);
            }
            State::Seized { call } => {
                let call = call.clone();
                self.out.push_back(FxoOut::Drop { call });
                self.release();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::callerid::Field;

    fn ms(n: u64) -> Time {
        Time::ZERO + Duration::from_millis(n)
    }

    fn outs(l: &mut FxoLine) -> Vec<FxoOut> {
        std::iter::from_fn(|| l.poll_output()).collect()
    }

    fn cid(n: &str) -> Cid {
        Cid { number: Field::Value(n.into()), name: Field::Absent }
    }

    #[test]
    fn bell_caller_id_after_the_first_ring_places_the_call_and_an_answer_seizes() {
        let mut l = FxoLine::new(FxoSettings::default());
        l.ring_started(ms(0));
        assert!(outs(&mut l).is_empty(), "waits for caller ID");
        l.ring_ended(ms(2000));
        l.caller_id(ms(2600), cid("5551234"));
        assert_eq!(outs(&mut l), vec![FxoOut::Place { cid: Some(cid("5551234")) }]);
        l.placed(Some("c1".into()));
        // The second ring changes nothing now.
        l.ring_started(ms(6000));
        assert!(outs(&mut l).is_empty());
        l.answered("c1");
        assert_eq!(outs(&mut l), vec![FxoOut::Seize(true), FxoOut::Connect { call: "c1".into() }]);
        assert_eq!(l.state_name(), "seized");
        // Ringing over while seized is not a hang-up.
        l.ringing_over();
        assert!(outs(&mut l).is_empty());
        l.ended("c1");
        assert_eq!(outs(&mut l), vec![FxoOut::Disconnect, FxoOut::Seize(false)]);
        assert_eq!(l.state_name(), "idle");
    }

    #[test]
    fn without_caller_id_the_call_goes_at_the_second_ring_or_after_the_wait() {
        let mut l = FxoLine::new(FxoSettings::default());
        l.ring_started(ms(0));
        l.ring_ended(ms(2000));
        l.ring_started(ms(6000));
        assert_eq!(outs(&mut l), vec![FxoOut::Place { cid: None }]);

        // A cadence with a long silence: the wait runs out first (4.5 s after the ring).
        let mut l = FxoLine::new(FxoSettings::default());
        l.ring_started(ms(0));
        l.ring_ended(ms(1000));
        assert_eq!(l.poll_timeout(), Some(ms(5500)));
        l.handle_timeout(ms(5499));
        assert!(outs(&mut l).is_empty());
        l.handle_timeout(ms(5500));
        assert_eq!(outs(&mut l), vec![FxoOut::Place { cid: None }]);
    }

    #[test]
    fn etsi_caller_id_before_the_first_ring_is_kept_for_it() {
        let mut l = FxoLine::new(FxoSettings::default());
        l.caller_id(ms(0), cid("0301234"));
        l.ring_started(ms(800));
        assert_eq!(outs(&mut l), vec![FxoOut::Place { cid: Some(cid("0301234")) }]);
        // A stale one (older than 10 s) is not.
        let mut l = FxoLine::new(FxoSettings::default());
        l.caller_id(ms(0), cid("0301234"));
        l.handle_timeout(ms(10_001));
        l.ring_started(ms(10_500));
        assert!(outs(&mut l).is_empty());
    }

    #[test]
    fn the_caller_giving_up_drops_the_call_and_a_refused_call_lets_the_line_ring_out() {
        let mut l = FxoLine::new(FxoSettings::default());
        l.ring_started(ms(0));
        l.ring_started(ms(6000));
        l.placed(Some("c2".into()));
        outs(&mut l);
        l.ringing_over();
        assert_eq!(outs(&mut l), vec![FxoOut::Drop { call: "c2".into() }]);

        let mut l = FxoLine::new(FxoSettings::default());
        l.ring_started(ms(0));
        l.ring_started(ms(6000));
        l.placed(None);
        assert_eq!(l.state_name(), "refused");
        l.ring_started(ms(12_000));
        l.ringing_over();
        assert!(outs(&mut l).iter().all(|o| matches!(o, FxoOut::Place { .. })), "never seized, nothing dropped");
        assert_eq!(l.state_name(), "idle");
    }

    #[test]
    fn loop_current_gone_for_the_window_polarity_or_a_busy_tone_release_the_line() {
        let seized = || {
            let mut l = FxoLine::new(FxoSettings::default());
            l.ring_started(ms(0));
            l.ring_started(ms(6000));
            l.placed(Some("c3".into()));
            l.answered("c3");
            outs(&mut l);
            l
        };
        let mut l = seized();
        // A 100 ms glitch is not a disconnect.
        l.supervision(ms(10_000), Supervision::LoopCurrentGone, false);
        l.supervision(ms(10_100), Supervision::LoopCurrentGone, true);
        l.handle_timeout(ms(10_200));
        assert!(outs(&mut l).is_empty());
        l.supervision(ms(11_000), Supervision::LoopCurrentGone, false);
        l.handle_timeout(ms(11_150));
        assert_eq!(outs(&mut l), vec![FxoOut::Drop { call: "c3".into() }, FxoOut::Disconnect, FxoOut::Seize(false)]);

        for what in [Supervision::PolarityReversed, Supervision::Tone] {
            let mut l = seized();
            l.supervision(ms(9000), what, true);
            assert_eq!(outs(&mut l), vec![FxoOut::Drop { call: "c3".into() }, FxoOut::Disconnect, FxoOut::Seize(false)]);
        }
    }
}
