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
//!
//! Outbound (a route pattern to the port's device offered the port a call):
//! - **Seize**, then wait for the exchange's dial tone (`ToneHeard { Dial }` from the
//!   shell's detector). Without it after `dial_tone_wait` the number is dialled
//!   blind, as FXO gateways do: many lines' dial tone is late or odd, and a line that
//!   is really dead shows it by its busy or reorder tone, or by no answer.
//! - **Dial** the number in DTMF (`Dial`, `DTMF_DIGIT` a digit).
//! - **Answer supervision**: with a polarity input on the port, the far end's answer
//!   is the line's polarity reversal; without one the call is taken as answered
//!   `answer_delay` after the last digit (the caller then hears the PSTN's ringback
//!   through the call's audio). Either way the box answers its caller (`Answer`) and
//!   the port joins the call's media once it is up.
//! - **Before the answer**: busy or reorder heard on the line refuses the caller's
//!   call with 486 (`Reject`), loop current gone for `loop_drop` with 503; the caller
//!   giving up releases the line.
//! - **After the answer**: as an inbound call, loop current gone, a (second)
//!   polarity reversal, or busy or reorder tone end the call.

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
    /// Outbound: how long to wait for dial tone after seizing before dialling blind.
    pub dial_tone_wait: Duration,
    /// Outbound: the far end's answer is the line's polarity reversal (the port has a
    /// polarity input); otherwise the call counts as answered `answer_delay` after
    /// the last digit.
    pub answer_on_polarity: bool,
    pub answer_delay: Duration,
}

/// How long one DTMF digit takes on the line: 100 ms of tone, 100 ms of pause.
pub const DTMF_DIGIT: Duration = Duration::from_millis(200);

impl Default for FxoSettings {
    fn default() -> Self {
        FxoSettings {
            cid_wait: Duration::from_millis(4500),
            cid_early: Duration::from_secs(10),
            loop_drop: Duration::from_millis(150),
            dial_tone_wait: Duration::from_secs(3),
            answer_on_polarity: false,
            answer_delay: Duration::from_secs(2),
        }
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
    /// Outbound: send these digits on the line in DTMF.
    Dial { digits: String },
    /// Outbound: the far end answered: answer the box's caller.
    Answer { call: String },
    /// Outbound: the call cannot be completed; refuse the box's caller with `code`.
    Reject { call: String, code: u16 },
}

/// Where an outbound call stands before the far end answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    DialTone,
    Dialling,
    /// Dialled; waiting for the answer (polarity, or the delay).
    Waiting,
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
    /// An outbound call: seized, dialling, waiting for the answer.
    Outbound { call: String, number: String, phase: Phase },
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
    /// When to place the call without caller ID (`Ringing`); the next step of an
    /// outbound call.
    timer: Option<Time>,
    /// When the loop current, gone, has been gone long enough (seized).
    loop_gone: Option<Time>,
    out: VecDeque<FxoOut>,
}

impl FxoLine {
    pub fn new(s: FxoSettings) -> FxoLine {
        FxoLine { s, state: State::Idle, early: None, timer: None, loop_gone: None, out: VecDeque::new() }
    }

    pub fn poll_output(&mut self) -> Option<FxoOut> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        [self.timer, self.loop_gone, self.early.as_ref().map(|e| e.1)].into_iter().flatten().min()
    }

    pub fn call(&self) -> Option<&str> {
        match &self.state {
            State::Offering { call, .. } => call.as_deref(),
            State::Seized { call } | State::Outbound { call, .. } => Some(call),
            _ => None,
        }
    }

    /// The line is in use (ringing, offered, seized): no outbound call can take it.
    pub fn busy(&self) -> bool {
        self.state != State::Idle
    }

    /// The line is off hook (seized), for status.
    pub fn seized(&self) -> bool {
        matches!(self.state, State::Seized { .. } | State::Outbound { .. })
    }

    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::Idle => "idle",
            State::Ringing { .. } => "ringing",
            State::Offering { refused: false, .. } => "offering",
            State::Offering { refused: true, .. } => "refused",
            State::Seized { .. } => "seized",
            State::Outbound { phase: Phase::DialTone, .. } => "dial-tone",
            State::Outbound { phase: Phase::Dialling, .. } => "dialling",
            State::Outbound { phase: Phase::Waiting, .. } => "outbound",
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
            s @ (State::Seized { .. } | State::Outbound { .. }) => self.state = s,
            _ => {}
        }
        if !self.seized() {
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

    /// The call's media is up: on an inbound call, it was answered inside the box:
    /// seize and join; on an outbound one (answered by the far end), join.
    pub fn answered(&mut self, call: &str) {
        match &self.state {
            State::Offering { call: Some(c), .. } if c == call => {
                self.state = State::Seized { call: call.to_string() };
                self.out.push_back(FxoOut::Seize(true));
                self.out.push_back(FxoOut::Connect { call: call.to_string() });
            }
            State::Seized { call: c } if c == call => self.out.push_back(FxoOut::Connect { call: call.to_string() }),
            _ => {}
        }
    }

    /// A call from the box out of this line, to `number`: false when the line is in
    /// use (the engine refuses the call).
    pub fn outbound(&mut self, now: Time, call: &str, number: &str) -> bool {
        if self.busy() {
            return false;
        }
        self.state = State::Outbound { call: call.to_string(), number: number.to_string(), phase: Phase::DialTone };
        self.timer = Some(now + self.s.dial_tone_wait);
        self.loop_gone = None;
        self.out.push_back(FxoOut::Seize(true));
        true
    }

    fn dial(&mut self, now: Time) {
        let State::Outbound { number, phase, .. } = &mut self.state else { return };
        *phase = Phase::Dialling;
        let digits = number.clone();
        let n = u32::try_from(digits.len()).unwrap_or(u32::MAX);
        self.timer = Some(now + DTMF_DIGIT.saturating_mul(n));
        self.out.push_back(FxoOut::Dial { digits });
    }

    fn answer_now(&mut self) {
        let State::Outbound { call, .. } = &self.state else { return };
        let call = call.clone();
        self.timer = None;
        self.state = State::Seized { call: call.clone() };
        self.out.push_back(FxoOut::Answer { call });
    }

    /// A call-progress tone heard on the line: dial tone starts the dialling; busy or
    /// reorder refuse an outbound call not answered yet, and end a call in progress.
    pub fn tone(&mut self, now: Time, tone: crate::core::media::tone::ToneKind) {
        use crate::core::media::tone::ToneKind;
        match (&self.state, tone) {
            (State::Outbound { phase: Phase::DialTone, .. }, ToneKind::Dial) => self.dial(now),
            (State::Outbound { call, .. }, ToneKind::Busy | ToneKind::Reorder) => {
                let call = call.clone();
                self.out.push_back(FxoOut::Reject { call, code: 486 });
                self.release();
            }
            (State::Seized { .. }, ToneKind::Busy | ToneKind::Reorder) => self.supervision(now, Supervision::Tone, true),
            _ => {}
        }
    }

    /// The call ended inside the box (hung up, refused, not answered).
    pub fn ended(&mut self, call: &str) {
        match &mut self.state {
            State::Seized { call: c } | State::Outbound { call: c, .. } if c == call => self.release(),
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
        self.loop_gone = None;
        self.out.push_back(FxoOut::Disconnect);
        self.out.push_back(FxoOut::Seize(false));
    }

    /// The far end went away while the line is seized (or, on an outbound call not
    /// yet answered, a polarity reversal is the answer).
    pub fn supervision(&mut self, now: Time, what: Supervision, active: bool) {
        match (&self.state, what) {
            (State::Outbound { phase: Phase::Waiting, .. }, Supervision::PolarityReversed) if self.s.answer_on_polarity => return self.answer_now(),
            // Polarity may change as the exchange sets the line up: not an answer yet.
            (State::Outbound { .. }, Supervision::PolarityReversed) => return,
            (State::Outbound { .. }, Supervision::Tone) => return self.tone(now, crate::core::media::tone::ToneKind::Busy),
            _ => {}
        }
        let (State::Seized { call } | State::Outbound { call, .. }) = &self.state else { return };
        let call = call.clone();
        match what {
            Supervision::LoopCurrentGone if !active => {
                self.loop_gone.get_or_insert(now + self.s.loop_drop);
            }
            // The loop current came back within the window: a glitch.
            Supervision::LoopCurrentGone => self.loop_gone = None,
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
        if self.loop_gone.is_some_and(|t| t <= now) {
            self.loop_gone = None;
            match &self.state {
                State::Seized { call } => {
                    let call = call.clone();
                    self.out.push_back(FxoOut::Drop { call });
                    self.release();
                }
                // The line went dead before the answer.
                State::Outbound { call, .. } => {
                    let call = call.clone();
                    self.out.push_back(FxoOut::Reject { call, code: 503 });
                    self.release();
                }
                _ => {}
            }
        }
        if self.timer.is_none_or(|t| t > now) {
            return;
        }
        self.timer = None;
        match &mut self.state {
            State::Ringing { cid } => {
                let cid = cid.take();
                self.place(cid);
            }
            // No dial tone in time: dial blind.
            State::Outbound { phase: Phase::DialTone, .. } => self.dial(now),
            State::Outbound { phase: phase @ Phase::Dialling, .. } => {
                *phase = Phase::Waiting;
                if !self.s.answer_on_polarity {
                    self.timer = Some(now + self.s.answer_delay);
                }
            }
            State::Outbound { phase: Phase::Waiting, .. } => self.answer_now(),
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

    fn outbound(polarity: bool) -> FxoLine {
        let mut l = FxoLine::new(FxoSettings { answer_on_polarity: polarity, ..FxoSettings::default() });
        assert!(l.outbound(ms(0), "o1", "5551234"));
        assert_eq!(outs(&mut l), vec![FxoOut::Seize(true)]);
        assert!(l.busy());
        l
    }

    #[test]
    fn outbound_seizes_dials_on_dial_tone_and_answers_on_polarity() {
        use crate::core::media::tone::ToneKind;
        let mut l = outbound(true);
        assert_eq!(l.state_name(), "dial-tone");
        // A polarity change while the exchange sets up is not an answer.
        l.supervision(ms(100), Supervision::PolarityReversed, true);
        assert!(outs(&mut l).is_empty());
        l.tone(ms(400), ToneKind::Dial);
        assert_eq!(outs(&mut l), vec![FxoOut::Dial { digits: "5551234".into() }]);
        // Seven digits take 1.4 s; no answer follows without a reversal.
        assert_eq!(l.poll_timeout(), Some(ms(1800)));
        l.handle_timeout(ms(1800));
        assert_eq!(l.poll_timeout(), None, "waits for the reversal");
        assert!(outs(&mut l).is_empty());
        l.supervision(ms(9000), Supervision::PolarityReversed, false);
        assert_eq!(outs(&mut l), vec![FxoOut::Answer { call: "o1".into() }]);
        l.answered("o1");
        assert_eq!(outs(&mut l), vec![FxoOut::Connect { call: "o1".into() }]);
        // The second reversal is the far end going.
        l.supervision(ms(20_000), Supervision::PolarityReversed, true);
        assert_eq!(outs(&mut l), vec![FxoOut::Drop { call: "o1".into() }, FxoOut::Disconnect, FxoOut::Seize(false)]);
        assert!(!l.busy());
    }

    #[test]
    fn outbound_dials_blind_without_dial_tone_and_answers_after_the_delay_without_polarity() {
        let mut l = outbound(false);
        l.handle_timeout(ms(2999));
        assert!(outs(&mut l).is_empty());
        l.handle_timeout(ms(3000));
        assert_eq!(outs(&mut l), vec![FxoOut::Dial { digits: "5551234".into() }]);
        l.handle_timeout(ms(4400));
        assert_eq!(l.poll_timeout(), Some(ms(6400)), "2 s after the last digit");
        l.handle_timeout(ms(6400));
        assert_eq!(outs(&mut l), vec![FxoOut::Answer { call: "o1".into() }]);
        // The box's caller hangs up: the line is released.
        l.ended("o1");
        assert_eq!(outs(&mut l), vec![FxoOut::Disconnect, FxoOut::Seize(false)]);
    }

    #[test]
    fn outbound_busy_or_a_dead_line_refuses_the_call_and_a_busy_line_takes_none() {
        use crate::core::media::tone::ToneKind;
        let mut l = outbound(false);
        l.tone(ms(3500), ToneKind::Busy);
        assert_eq!(outs(&mut l), vec![FxoOut::Reject { call: "o1".into(), code: 486 }, FxoOut::Disconnect, FxoOut::Seize(false)]);
        let mut l = outbound(false);
        l.supervision(ms(500), Supervision::LoopCurrentGone, false);
        l.handle_timeout(ms(650));
        assert_eq!(outs(&mut l), vec![FxoOut::Reject { call: "o1".into(), code: 503 }, FxoOut::Disconnect, FxoOut::Seize(false)]);
        let mut l = outbound(false);
        assert!(!l.outbound(ms(10), "o2", "1"), "one call at a time");
        let mut l = FxoLine::new(FxoSettings::default());
        l.ring_started(ms(0));
        assert!(!l.outbound(ms(10), "o3", "1"), "a ringing line is not seized for a call out");
    }
}
