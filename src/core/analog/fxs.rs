//! An FXS port's line, at the level of calls: what the subscriber hears and what the
//! port asks of the call engine. Pure and on the engine's clock. It takes what the
//! hook switch says (`hook::HookEvent`: lifted, hung up, flashed, a rotary digit), the
//! DTMF digits detected in the port's capture, and what happens to the port's calls
//! (offered, ringing at the far end, answered, ended); it gives the sounds the port
//! plays, the ringer on and off, the caller ID to send, and the calls to make, answer
//! or drop (`FxsOut`). The engine (`analog::engine`) carries those out through the
//! typed API, as a built-in client that has the port's device open.
//!
//! The subscriber's side, as on a central-office line:
//! - **Off hook** from idle: dial tone. The first digit stops it; digits (DTMF or
//!   rotary) collect until the dial plan says the number is complete (`Dial::Now`),
//!   `#` ends it, or `inter_digit` passes; a number nothing can match gives reorder at
//!   once. No digit within `first_digit`: reorder ("permanent signal").
//! - **Calling**: silence, ringback once the far end rings, the call's audio once it
//!   is answered (`Connect`). Busy gives busy tone, any other failure reorder.
//! - **The far end hangs up**: busy tone. Any tone left playing (busy, reorder) turns
//!   into the howler after `release_tone`, and the howler into silence after
//!   `howler` (the line stays parked until the handset goes down).
//! - **On hook**: the call, if any, is dropped; the line is idle.
//! - **An offered call** on an idle line rings it with the country's cadence; caller ID
//!   goes after the first ring (Bell 202) or before it (`cid_first`, ETSI); lifting the
//!   handset (ring-trip) answers. The caller giving up stops the ringer. A line that is
//!   not idle is busy: the engine does not offer it calls (`busy()`).
//! - **Call waiting** (`call_waiting`): a call offered while the line talks is a
//!   waiting call: the port mixes the call-waiting tone into the conversation
//!   (`CallWaiting`, again every `cw_repeat`) and, where the country sends off-hook
//!   caller ID, the CPE alerting signal after it; a set that can show caller ID
//!   answers with DTMF `A` or `D` within `cw_ack`, and the caller ID goes then (FSK
//!   with the call-waiting preamble, `CallerIdOffHook`). A hook flash holds the
//!   call in progress and answers the waiting one; another flash swaps the two.
//!   Hanging up with a call held or waiting rings the line again for it (recall);
//!   lifting the handset takes it back. A waiting call nobody takes follows the
//!   line's Call Forward No Answer, or rings the caller until they give up. The far
//!   end of the active call hanging up leaves busy tone; a flash then takes the other.
//! - **Hook flash** with no second call holds the call in progress and gives dial
//!   tone: digits dial a consultation call. Hanging up once it is answered puts the
//!   held party through to the consulted one (`Transfer`); hanging up before that
//!   drops the consultation and rings the line back for the held call; a flash drops
//!   the consultation and returns to the held call.

use crate::codec::callerid::Field;
use crate::core::media::tone::ToneKind;
use crate::core::Time;
use std::collections::VecDeque;
use std::time::Duration;

/// What a dialled prefix is, to the dial plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dial {
    /// Complete: nothing longer could match. Dial it now.
    Now,
    /// Could be complete or could go on: wait for more digits (dial at the timeout).
    Wait,
    /// Nothing can match it, however it goes on.
    Never,
}

/// What the port plays toward the subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sound {
    Silence,
    Tone(ToneKind),
    /// The off-hook warning (receiver off hook): loud, four tones, 0.1 s on and off.
    Howler,
}

/// The caller ID of an offered call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cid {
    pub number: Field,
    pub name: Field,
}

/// What the line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FxsOut {
    Play(Sound),
    /// The ringer on (from the cadence's start) or off.
    Ring(bool),
    /// Send caller ID now (on hook, between rings or before the first).
    CallerId(Cid),
    /// Join the port's audio to the call's media.
    Connect { call: String },
    /// Leave the call's media (the port plays what `Play` says again).
    Disconnect,
    /// The call-waiting tone into the conversation; `cas`: the CPE alerting signal
    /// follows it (an acknowledgement, DTMF A or D, may come back for caller ID).
    CallWaiting { cas: bool },
    /// Caller ID of the waiting call, sent off hook (the set acknowledged).
    CallerIdOffHook(Cid),
    /// The port's media for the call in progress and for the second call (held or
    /// waiting) change places; the port leaves the first's RTP and joins nothing.
    Swap,
    Hold { call: String },
    Unhold { call: String },
    /// Put the held call's party through to the consultation call's, and leave both.
    Transfer { keep: String, other: String },
    MakeCall { to: String },
    Answer { call: String },
    Drop { call: String },
    /// Something the subscriber did that nothing uses yet (logged).
    Ignored(&'static str),
}

/// Timing of the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FxsSettings {
    pub first_digit: Duration,
    pub inter_digit: Duration,
    /// How long busy or reorder plays before the howler.
    pub release_tone: Duration,
    pub howler: Duration,
    /// Caller ID before the first ring (ETSI) instead of after it (Bell).
    pub cid_first: bool,
    /// How long the subscriber may have to wait for a reply to `MakeCall` before the
    /// call is taken as failed (the engine answers at once; this is a bound).
    pub call_setup: Duration,
    /// A call offered while the line talks waits (instead of the line being busy).
    pub call_waiting: bool,
    /// Off-hook caller ID after the call-waiting tone (the country sends FSK).
    pub cw_cid: bool,
    /// How long after the call-waiting alert the set's acknowledgement is taken:
    /// the tone (300 ms), the alerting signal (80 ms), the set's 100 ms to answer and
    /// the detector's delay.
    pub cw_ack: Duration,
    /// The call-waiting tone again this often while the call waits.
    pub cw_repeat: Duration,
}

impl Default for FxsSettings {
    fn default() -> Self {
        FxsSettings {
            first_digit: Duration::from_secs(15),
            inter_digit: Duration::from_secs(4),
            release_tone: Duration::from_secs(30),
            howler: Duration::from_secs(60),
            cid_first: false,
            call_setup: Duration::from_secs(180),
            call_waiting: true,
            cw_cid: true,
            cw_ack: Duration::from_millis(1000),
            cw_repeat: Duration::from_secs(10),
        }
    }
}

/// The longest number the line collects (the dial plan's own limit).
pub const MAX_DIALLED: usize = crate::config::dialplan::MAX_DIGITS;

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Idle,
    /// An offered call rings the line.
    Alerting { call: String, cid: Option<Cid>, cid_sent: bool },
    /// Off hook: dial tone until the first digit, then digits.
    Dialling { digits: String },
    /// `MakeCall` went out; the call's name once the engine gave it.
    Calling { call: Option<String>, alerted: bool },
    Talking { call: String },
    /// No call; a tone (busy, reorder), then the howler, then silence.
    Parked { sound: Sound },
    /// On hook with a call held or waiting: the line rings for it.
    Recall { call: String, answered: bool },
}

/// The line's second call, beside the one in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Second {
    /// Offered while the line talks. `ack_until`: the set may acknowledge the alert
    /// for caller ID until then; `repeat`: the next call-waiting tone.
    Waiting { call: String, cid: Option<Cid>, ack_until: Option<Time>, repeat: Time },
    /// Put on hold by a hook flash.
    Held { call: String },
}

impl Second {
    fn call(&self) -> &str {
        match self {
            Second::Waiting { call, .. } | Second::Held { call } => call,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    Digit,
    Setup,
    Tone,
}

/// How a call ended, as the line needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The far end hung up (or the caller gave up, for an offered call).
    Hangup,
    Busy,
    /// Refused, unreachable, not answered, failed.
    Failed,
}

#[derive(Debug)]
pub struct FxsLine {
    s: FxsSettings,
    state: State,
    off_hook: bool,
    timer: Option<(Time, Timer)>,
    second: Option<Second>,
    /// The second call (held) is the one a consultation started from: the call in
    /// progress (or being dialled) is the consultation.
    consult: bool,
    out: VecDeque<FxsOut>,
}

impl FxsLine {
    pub fn new(s: FxsSettings) -> FxsLine {
        FxsLine { s, state: State::Idle, off_hook: false, timer: None, second: None, consult: false, out: VecDeque::new() }
    }

    pub fn poll_output(&mut self) -> Option<FxsOut> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        let cw = match &self.second {
            Some(Second::Waiting { ack_until, repeat, .. }) => [*ack_until, Some(*repeat)].into_iter().flatten().min(),
            _ => None,
        };
        [self.timer.map(|(t, _)| t), cw].into_iter().flatten().min()
    }

    /// A call offered now would be a waiting call.
    fn can_wait(&self) -> bool {
        self.s.call_waiting && self.off_hook && self.second.is_none() && matches!(self.state, State::Talking { .. })
    }

    /// Not free for a new call: off hook, or already ringing (unless a call offered
    /// now would wait).
    pub fn busy(&self) -> bool {
        !self.can_wait() && (self.off_hook || self.state != State::Idle)
    }

    /// The call the line has, if any (the one in progress).
    pub fn call(&self) -> Option<&str> {
        match &self.state {
            State::Alerting { call, .. } | State::Talking { call } | State::Recall { call, .. } => Some(call),
            State::Calling { call, .. } => call.as_deref(),
            _ => None,
        }
    }

    /// The second call (held or waiting), if any.
    pub fn second_call(&self) -> Option<&str> {
        self.second.as_ref().map(Second::call)
    }

    /// Whether `call` is one of the line's.
    pub fn has(&self, call: &str) -> bool {
        self.call() == Some(call) || self.second_call() == Some(call)
    }

    /// A short name of where the line stands (status, logs).
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::Idle => "idle",
            State::Alerting { .. } => "ringing",
            State::Dialling { .. } => "dialling",
            State::Calling { .. } => "calling",
            State::Talking { .. } => "talking",
            State::Parked { sound: Sound::Howler } => "howler",
            State::Parked { .. } => "parked",
            State::Recall { .. } => "recall",
        }
    }

    fn play(&mut self, s: Sound) {
        self.out.push_back(FxsOut::Play(s));
    }

    fn park(&mut self, now: Time, sound: Sound) {
        self.state = State::Parked { sound };
        self.play(sound);
        self.timer = Some((now + self.s.release_tone, Timer::Tone));
    }

    /// The handset was lifted.
    pub fn off_hook(&mut self, now: Time) {
        if self.off_hook {
            return;
        }
        self.off_hook = true;
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Alerting { call, .. } => {
                self.out.push_back(FxsOut::Ring(false));
                self.out.push_back(FxsOut::Answer { call: call.clone() });
                // Talking once answered; the audio joins at `connected`.
                self.state = State::Talking { call };
                self.timer = None;
            }
            // Back to the call that was held (or that waited and was answered).
            State::Recall { call, answered } => {
                self.out.push_back(FxsOut::Ring(false));
                if answered {
                    self.out.push_back(FxsOut::Unhold { call: call.clone() });
                    self.out.push_back(FxsOut::Connect { call: call.clone() });
                } else {
                    self.out.push_back(FxsOut::Answer { call: call.clone() });
                }
                self.state = State::Talking { call };
                self.timer = None;
            }
            _ => {
                self.state = State::Dialling { digits: String::new() };
                self.play(Sound::Tone(ToneKind::Dial));
                self.timer = Some((now + self.s.first_digit, Timer::Digit));
            }
        }
    }

    /// The handset went down (for longer than a flash).
    pub fn on_hook(&mut self) {
        if !self.off_hook {
            return;
        }
        self.off_hook = false;
        self.timer = None;
        if std::mem::take(&mut self.consult) {
            if let (State::Talking { call }, Some(Second::Held { call: held })) = (&self.state, &self.second) {
                // Consultation answered: the held party goes through to it.
                let (keep, other) = (held.clone(), call.clone());
                self.state = State::Idle;
                self.second = None;
                self.out.push_back(FxsOut::Disconnect);
                self.out.push_back(FxsOut::Transfer { keep, other });
                self.play(Sound::Silence);
                return;
            }
        }
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Talking { call } | State::Calling { call: Some(call), .. } => {
                self.out.push_back(FxsOut::Disconnect);
                self.out.push_back(FxsOut::Drop { call });
            }
            State::Calling { call: None, .. } => self.out.push_back(FxsOut::Disconnect),
            _ => {}
        }
        self.play(Sound::Silence);
        // A second call rings the line back.
        if let Some(second) = self.second.take() {
            let answered = matches!(second, Second::Held { .. });
            if answered {
                self.out.push_back(FxsOut::Swap);
            }
            self.state = State::Recall { call: second.call().to_string(), answered };
            self.out.push_back(FxsOut::Ring(true));
        }
    }

    pub fn flash(&mut self, now: Time) {
        if !self.off_hook {
            return;
        }
        if self.consult {
            return self.end_consultation();
        }
        if let (State::Talking { call }, None) = (&self.state, &self.second) {
            // Consultation: hold the call, dial tone for the next number.
            let call = call.clone();
            self.out.push_back(FxsOut::Hold { call: call.clone() });
            self.out.push_back(FxsOut::Swap);
            self.second = Some(Second::Held { call });
            self.consult = true;
            self.state = State::Dialling { digits: String::new() };
            self.play(Sound::Tone(ToneKind::Dial));
            self.timer = Some((now + self.s.first_digit, Timer::Digit));
            return;
        }
        let current = match &self.state {
            State::Talking { call } => Some(call.clone()),
            // The far end of the call in progress hung up (busy tone): the flash takes
            // the other call.
            State::Parked { .. } => None,
            _ => return self.out.push_back(FxsOut::Ignored("hook flash with no call to hold")),
        };
        let Some(second) = self.second.take() else {
            return self.out.push_back(FxsOut::Ignored("hook flash with no call"));
        };
        self.timer = None;
        if let Some(c) = &current {
            self.out.push_back(FxsOut::Hold { call: c.clone() });
        }
        self.out.push_back(FxsOut::Swap);
        match second {
            Second::Waiting { call, .. } => {
                self.out.push_back(FxsOut::Answer { call: call.clone() });
                self.state = State::Talking { call };
            }
            Second::Held { call } => {
                self.out.push_back(FxsOut::Unhold { call: call.clone() });
                self.out.push_back(FxsOut::Connect { call: call.clone() });
                self.state = State::Talking { call };
            }
        }
        self.second = current.map(|call| Second::Held { call });
    }

    /// Back from a consultation to the held call: the consultation (if any) is dropped.
    fn end_consultation(&mut self) {
        self.consult = false;
        self.timer = None;
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Talking { call } | State::Calling { call: Some(call), .. } => {
                self.out.push_back(FxsOut::Disconnect);
                self.out.push_back(FxsOut::Drop { call });
            }
            State::Calling { call: None, .. } => self.out.push_back(FxsOut::Disconnect),
            _ => {}
        }
        match self.second.take() {
            Some(Second::Held { call }) => {
                self.out.push_back(FxsOut::Swap);
                self.out.push_back(FxsOut::Unhold { call: call.clone() });
                self.out.push_back(FxsOut::Connect { call: call.clone() });
                self.state = State::Talking { call };
            }
            // The held party hung up meanwhile: nothing to go back to.
            _ => self.park_silence(),
        }
    }

    fn park_silence(&mut self) {
        self.state = State::Parked { sound: Sound::Silence };
        self.play(Sound::Silence);
    }

    /// A digit from the subscriber (DTMF from the capture, or rotary); `plan` says what
    /// the digits so far are to the dial plan.
    pub fn digit(&mut self, now: Time, d: char, plan: &dyn Fn(&str) -> Dial) {
        let State::Dialling { digits } = &mut self.state else {
            // In a call the digit is in the audio already (in-band); only the set's
            // acknowledgement of a call-waiting alert means something here.
            if let Some(Second::Waiting { cid, ack_until: ack @ Some(_), .. }) = &mut self.second {
                if matches!(d, 'A' | 'D') && ack.is_some_and(|t| now <= t) {
                    *ack = None;
                    if let Some(c) = cid.clone() {
                        self.out.push_back(FxsOut::CallerIdOffHook(c));
                    }
                }
            }
            return;
        };
        if digits.is_empty() {
            self.out.push_back(FxsOut::Play(Sound::Silence));
        }
        if d == '#' && !digits.is_empty() {
            let number = std::mem::take(digits);
            return self.dial(now, number);
        }
        if digits.len() >= MAX_DIALLED {
            return self.park(now, Sound::Tone(ToneKind::Reorder));
        }
        digits.push(d);
        match plan(digits) {
            Dial::Now => {
                let number = std::mem::take(digits);
                self.dial(now, number)
            }
            Dial::Wait => self.timer = Some((now + self.s.inter_digit, Timer::Digit)),
            Dial::Never => self.park(now, Sound::Tone(ToneKind::Reorder)),
        }
    }

    /// Dials `to` for the subscriber (a CTI application's `make_call`): only off
    /// hook, at dial tone or while digits are being typed.
    pub fn dial_for(&mut self, now: Time, to: &str) -> Result<(), &'static str> {
        match &self.state {
            State::Dialling { .. } => {
                self.out.push_back(FxsOut::Play(Sound::Silence));
                self.dial(now, to.to_string());
                Ok(())
            }
            _ if !self.off_hook => Err("the handset is on hook: the port dials only when it is lifted (dial tone)"),
            _ => Err("the port is not at dial tone (in a call, or parked)"),
        }
    }

    fn dial(&mut self, now: Time, to: String) {
        self.state = State::Calling { call: None, alerted: false };
        self.timer = Some((now + self.s.call_setup, Timer::Setup));
        self.out.push_back(FxsOut::MakeCall { to });
    }

    /// The engine's answer to `MakeCall`: the call's name, or `None` (refused).
    pub fn call_placed(&mut self, now: Time, call: Option<String>) {
        let State::Calling { call: c @ None, .. } = &mut self.state else {
            // The handset went down meanwhile: a call that was made is let go.
            if let Some(call) = call {
                self.out.push_back(FxsOut::Drop { call });
            }
            return;
        };
        match call {
            Some(name) => *c = Some(name),
            None => self.park(now, Sound::Tone(ToneKind::Reorder)),
        }
    }

    /// A call is offered to the line.
    pub fn offered(&mut self, now: Time, call: &str, cid: Option<Cid>) -> bool {
        if self.can_wait() {
            let cas = self.s.cw_cid && cid.is_some();
            self.out.push_back(FxsOut::CallWaiting { cas });
            let ack_until = cas.then(|| now + self.s.cw_ack);
            self.second = Some(Second::Waiting { call: call.to_string(), cid, ack_until, repeat: now + self.s.cw_repeat });
            return true;
        }
        if self.busy() {
            return false;
        }
        let send_first = self.s.cid_first && cid.is_some();
        if send_first {
            if let Some(c) = cid.clone() {
                self.out.push_back(FxsOut::CallerId(c));
            }
        }
        self.state = State::Alerting { call: call.to_string(), cid, cid_sent: send_first };
        self.out.push_back(FxsOut::Ring(true));
        true
    }

    /// The ringer finished its first ring: Bell caller ID goes now.
    pub fn first_ring_ended(&mut self) {
        if let State::Alerting { cid: Some(c), cid_sent: sent @ false, .. } = &mut self.state {
            *sent = true;
            let c = c.clone();
            self.out.push_back(FxsOut::CallerId(c));
        }
    }

    /// The far end of the line's outgoing call rings.
    pub fn far_ringing(&mut self, call: &str) {
        if let State::Calling { call: Some(c), alerted: a @ false } = &mut self.state {
            if c == call {
                *a = true;
                self.out.push_back(FxsOut::Play(Sound::Tone(ToneKind::Ringback)));
            }
        }
    }

    /// The call's media is up (answered either way): the port joins it.
    pub fn connected(&mut self, call: &str) {
        match &self.state {
            State::Calling { call: Some(c), .. } if c == call => {
                self.state = State::Talking { call: call.to_string() };
                self.timer = None;
                self.out.push_back(FxsOut::Connect { call: call.to_string() });
            }
            State::Talking { call: c } if c == call => self.out.push_back(FxsOut::Connect { call: call.to_string() }),
            _ => {}
        }
    }

    /// The line's call ended at the far end or in the network.
    pub fn ended(&mut self, now: Time, call: &str, how: Ended) {
        if self.second_call() == Some(call) {
            // The waiting caller gave up (or was forwarded), or the held party hung up.
            self.second = None;
            self.consult = false;
            return;
        }
        if self.call() != Some(call) {
            return;
        }
        match self.state {
            State::Alerting { .. } | State::Recall { .. } => {
                self.out.push_back(FxsOut::Ring(false));
                self.state = State::Idle;
                self.timer = None;
            }
            State::Talking { .. } | State::Calling { .. } => {
                self.out.push_back(FxsOut::Disconnect);
                let tone = match how {
                    Ended::Busy | Ended::Hangup => ToneKind::Busy,
                    Ended::Failed => ToneKind::Reorder,
                };
                self.park(now, Sound::Tone(tone));
            }
            _ => {}
        }
    }

    pub fn handle_timeout(&mut self, now: Time, plan: &dyn Fn(&str) -> Dial) {
        if let Some(Second::Waiting { ack_until, repeat, .. }) = &mut self.second {
            if ack_until.is_some_and(|t| t <= now) {
                *ack_until = None;
            }
            if *repeat <= now {
                *repeat = now + self.s.cw_repeat;
                // Only into a conversation (not over busy tone).
                if matches!(self.state, State::Talking { .. }) {
                    self.out.push_back(FxsOut::CallWaiting { cas: false });
                }
            }
        }
        let Some((at, which)) = self.timer else { return };
        if at > now {
            return;
        }
        self.timer = None;
        match (which, &mut self.state) {
            (Timer::Digit, State::Dialling { digits }) if digits.is_empty() => self.park(now, Sound::Tone(ToneKind::Reorder)),
            (Timer::Digit, State::Dialling { digits }) => {
                let number = std::mem::take(digits);
                match plan(&number) {
                    Dial::Never => self.park(now, Sound::Tone(ToneKind::Reorder)),
                    _ => self.dial(now, number),
                }
            }
            (Timer::Setup, State::Calling { call, .. }) => {
                if let Some(c) = call.take() {
                    self.out.push_back(FxsOut::Drop { call: c });
                }
                self.park(now, Sound::Tone(ToneKind::Reorder));
            }
            (Timer::Tone, State::Parked { sound: Sound::Tone(_) }) => {
                self.state = State::Parked { sound: Sound::Howler };
                self.play(Sound::Howler);
                self.timer = Some((now + self.s.howler, Timer::Tone));
            }
            (Timer::Tone, State::Parked { sound: Sound::Howler }) => {
                self.state = State::Parked { sound: Sound::Silence };
                self.play(Sound::Silence);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Time {
        Time::ZERO + Duration::from_millis(n)
    }

    fn outs(l: &mut FxsLine) -> Vec<FxsOut> {
        std::iter::from_fn(|| l.poll_output()).collect()
    }

    /// Four-digit numbers starting with 2 are complete; "9" then anything waits.
    fn plan(d: &str) -> Dial {
        match d.as_bytes() {
            [b'2', ..] if d.len() == 4 => Dial::Now,
            [b'2', ..] if d.len() < 4 => Dial::Wait,
            [b'9', ..] => Dial::Wait,
            _ => Dial::Never,
        }
    }

    fn dial(l: &mut FxsLine, t: u64, digits: &str) {
        for (i, d) in digits.chars().enumerate() {
            l.digit(ms(t + 200 * i as u64), d, &plan);
        }
    }

    #[test]
    fn off_hook_gives_dial_tone_and_a_complete_number_is_dialled_at_once() {
        let mut l = FxsLine::new(FxsSettings::default());
        l.off_hook(ms(0));
        assert_eq!(outs(&mut l), vec![FxsOut::Play(Sound::Tone(ToneKind::Dial))]);
        assert!(l.busy());
        dial(&mut l, 1000, "2001");
        assert_eq!(outs(&mut l), vec![FxsOut::Play(Sound::Silence), FxsOut::MakeCall { to: "2001".into() }]);
        l.call_placed(ms(2000), Some("c1".into()));
        l.far_ringing("c1");
        l.connected("c1");
        assert_eq!(outs(&mut l), vec![FxsOut::Play(Sound::Tone(ToneKind::Ringback)), FxsOut::Connect { call: "c1".into() }]);
        assert_eq!(l.state_name(), "talking");
        l.on_hook();
        assert_eq!(outs(&mut l), vec![FxsOut::Disconnect, FxsOut::Drop { call: "c1".into() }, FxsOut::Play(Sound::Silence)]);
        assert!(!l.busy());
        assert_eq!(l.poll_timeout(), None);
    }

    #[test]
    fn an_open_number_is_dialled_at_the_inter_digit_timeout_and_hash_ends_it_early() {
        let mut l = FxsLine::new(FxsSettings::default());
        l.off_hook(ms(0));
        dial(&mut l, 100, "90");
        outs(&mut l);
        // 4 s after the last digit (at 300 ms), not before.
        assert_eq!(l.poll_timeout(), Some(ms(4300)));
        l.handle_timeout(ms(4299), &plan);
        assert!(outs(&mut l).is_empty());
        l.handle_timeout(ms(4300), &plan);
        assert_eq!(outs(&mut l), vec![FxsOut::MakeCall { to: "90".into() }]);

        let mut l = FxsLine::new(FxsSettings::default());
        l.off_hook(ms(0));
        dial(&mut l, 100, "95#");
        assert_eq!(outs(&mut l).last(), Some(&FxsOut::MakeCall { to: "95".into() }));
    }

    #[test]
    fn no_digit_gives_reorder_then_the_howler_then_silence() {
        let s = FxsSettings::default();
        let mut l = FxsLine::new(s);
        l.off_hook(ms(0));
        outs(&mut l);
        let t = ms(15_000);
        assert_eq!(l.poll_timeout(), Some(t));
        l.handle_timeout(t, &plan);
        assert_eq!(outs(&mut l), vec![FxsOut::Play(Sound::Tone(ToneKind::Reorder))]);
        let t = l.poll_timeout().unwrap();
        assert_eq!(t, ms(45_000));
        l.handle_timeout(t, &plan);
        assert_eq!(outs(&mut l), vec![FxsOut::Play(Sound::Howler)]);
        assert_eq!(l.state_name(), "howler");
        let t = l.poll_timeout().unwrap();
        assert_eq!(t, ms(105_000));
        l.handle_timeout(t, &plan);
        assert_eq!(outs(&mut l), vec![FxsOut::Play(Sound::Silence)]);
        assert_eq!(l.poll_timeout(), None);
        // Digits now do nothing; going on hook frees the line.
        l.digit(ms(200_000), '2', &plan);
        assert!(outs(&mut l).is_empty());
        l.on_hook();
        assert!(!l.busy());
    }

    #[test]
    fn a_number_nothing_matches_gives_reorder_at_once() {
        let mut l = FxsLine::new(FxsSettings::default());
        l.off_hook(ms(0));
        outs(&mut l);
        l.digit(ms(500), '5', &plan);
        assert_eq!(outs(&mut l), vec![FxsOut::Play(Sound::Silence), FxsOut::Play(Sound::Tone(ToneKind::Reorder))]);
        assert_eq!(l.state_name(), "parked");
    }

    #[test]
    fn an_offered_call_rings_sends_bell_caller_id_after_the_first_ring_and_ring_trip_answers() {
        let mut l = FxsLine::new(FxsSettings::default());
        let cid = Cid { number: Field::Value("2001".into()), name: Field::Value("Alice".into()) };
        assert!(l.offered(ms(0), "c7", Some(cid.clone())));
        assert_eq!(outs(&mut l), vec![FxsOut::Ring(true)]);
        assert!(l.busy(), "a ringing line takes no second call");
        assert!(!l.offered(ms(10), "c8", None));
        l.first_ring_ended();
        assert_eq!(outs(&mut l), vec![FxsOut::CallerId(cid)]);
        l.first_ring_ended();
        assert!(outs(&mut l).is_empty(), "caller ID goes once");
        l.off_hook(ms(5000));
        assert_eq!(outs(&mut l), vec![FxsOut::Ring(false), FxsOut::Answer { call: "c7".into() }]);
        l.connected("c7");
        assert_eq!(outs(&mut l), vec![FxsOut::Connect { call: "c7".into() }]);
        // The far end hangs up: busy tone.
        l.ended(ms(9000), "c7", Ended::Hangup);
        assert_eq!(outs(&mut l), vec![FxsOut::Disconnect, FxsOut::Play(Sound::Tone(ToneKind::Busy))]);
    }

    #[test]
    fn etsi_caller_id_goes_before_the_first_ring_and_a_caller_giving_up_stops_the_ringer() {
        let mut l = FxsLine::new(FxsSettings { cid_first: true, ..FxsSettings::default() });
        let cid = Cid { number: Field::Private, name: Field::Absent };
        l.offered(ms(0), "c1", Some(cid.clone()));
        assert_eq!(outs(&mut l), vec![FxsOut::CallerId(cid), FxsOut::Ring(true)]);
        l.first_ring_ended();
        assert!(outs(&mut l).is_empty());
        l.ended(ms(3000), "c1", Ended::Hangup);
        assert_eq!(outs(&mut l), vec![FxsOut::Ring(false)]);
        assert!(!l.busy());
    }

    #[test]
    fn a_busy_far_end_gives_busy_and_a_refused_call_reorder() {
        for (how, tone) in [(Ended::Busy, ToneKind::Busy), (Ended::Failed, ToneKind::Reorder)] {
            let mut l = FxsLine::new(FxsSettings::default());
            l.off_hook(ms(0));
            dial(&mut l, 100, "2002");
            l.call_placed(ms(900), Some("c2".into()));
            outs(&mut l);
            l.ended(ms(1000), "c2", how);
            assert_eq!(outs(&mut l), vec![FxsOut::Disconnect, FxsOut::Play(Sound::Tone(tone))]);
        }
        // The engine refusing the call at once is reorder too.
        let mut l = FxsLine::new(FxsSettings::default());
        l.off_hook(ms(0));
        dial(&mut l, 100, "2002");
        outs(&mut l);
        l.call_placed(ms(900), None);
        assert_eq!(outs(&mut l), vec![FxsOut::Play(Sound::Tone(ToneKind::Reorder))]);
    }

    #[test]
    fn hanging_up_before_the_call_is_placed_lets_it_go() {
        let mut l = FxsLine::new(FxsSettings::default());
        l.off_hook(ms(0));
        dial(&mut l, 100, "2002");
        outs(&mut l);
        l.on_hook();
        l.call_placed(ms(900), Some("c3".into()));
        assert_eq!(outs(&mut l), vec![FxsOut::Disconnect, FxsOut::Play(Sound::Silence), FxsOut::Drop { call: "c3".into() }]);
    }

    #[test]
    fn too_many_digits_give_reorder() {
        let mut l = FxsLine::new(FxsSettings::default());
        l.off_hook(ms(0));
        let long: String = std::iter::once('9').chain(std::iter::repeat_n('1', MAX_DIALLED)).collect();
        dial(&mut l, 100, &long);
        assert_eq!(outs(&mut l).last(), Some(&FxsOut::Play(Sound::Tone(ToneKind::Reorder))));
    }

    fn talking() -> FxsLine {
        let mut l = FxsLine::new(FxsSettings::default());
        l.offered(ms(0), "c1", None);
        l.off_hook(ms(1000));
        l.connected("c1");
        outs(&mut l);
        l
    }

    #[test]
    fn call_waiting_acknowledged_late_sends_no_caller_id_and_the_far_end_going_leaves_the_flash_to_take_it() {
        let cid = Cid { number: Field::Value("2002".into()), name: Field::Absent };
        let mut l = talking();
        assert!(!l.busy());
        assert!(l.offered(ms(2000), "c2", Some(cid)));
        assert_eq!(outs(&mut l), vec![FxsOut::CallWaiting { cas: true }]);
        assert!(l.busy(), "a third call is busy");
        // The acknowledgement after the window: nothing.
        l.handle_timeout(ms(3000), &plan);
        l.digit(ms(3001), 'D', &plan);
        assert!(outs(&mut l).is_empty());
        // The call in progress ends at the far end: busy tone; a flash takes the waiting call.
        l.ended(ms(4000), "c1", Ended::Hangup);
        assert_eq!(outs(&mut l), vec![FxsOut::Disconnect, FxsOut::Play(Sound::Tone(ToneKind::Busy))]);
        l.flash(ms(6000));
        assert_eq!(outs(&mut l), vec![FxsOut::Swap, FxsOut::Answer { call: "c2".into() }]);
        assert_eq!(l.call(), Some("c2"));
        assert_eq!(l.second_call(), None);
    }

    #[test]
    fn without_call_waiting_a_talking_line_is_busy_and_a_waiting_caller_giving_up_is_forgotten() {
        let mut l = FxsLine::new(FxsSettings { call_waiting: false, ..FxsSettings::default() });
        l.offered(ms(0), "c1", None);
        l.off_hook(ms(1000));
        outs(&mut l);
        assert!(l.busy());
        assert!(!l.offered(ms(2000), "c2", None));
        let mut l = talking();
        l.offered(ms(2000), "c2", None);
        assert_eq!(outs(&mut l), vec![FxsOut::CallWaiting { cas: false }], "no caller ID to send: no alerting signal");
        l.ended(ms(5000), "c2", Ended::Hangup);
        assert!(outs(&mut l).is_empty());
        l.on_hook();
        assert_eq!(outs(&mut l), vec![FxsOut::Disconnect, FxsOut::Drop { call: "c1".into() }, FxsOut::Play(Sound::Silence)]);
        assert!(!l.busy(), "no recall");
    }

    #[test]
    fn a_flash_holds_for_a_consultation_hanging_up_transfers_and_a_flash_returns() {
        let mut l = talking();
        l.flash(ms(2000));
        assert_eq!(outs(&mut l), vec![FxsOut::Hold { call: "c1".into() }, FxsOut::Swap, FxsOut::Play(Sound::Tone(ToneKind::Dial))]);
        assert!(l.busy(), "no call waits during a consultation");
        dial(&mut l, 3000, "2002");
        assert_eq!(outs(&mut l), vec![FxsOut::Play(Sound::Silence), FxsOut::MakeCall { to: "2002".into() }]);
        l.call_placed(ms(4000), Some("c2".into()));
        l.connected("c2");
        outs(&mut l);
        // A flash drops the consultation and returns to the held call.
        l.flash(ms(5000));
        assert_eq!(
            outs(&mut l),
            vec![FxsOut::Disconnect, FxsOut::Drop { call: "c2".into() }, FxsOut::Swap, FxsOut::Unhold { call: "c1".into() }, FxsOut::Connect { call: "c1".into() }]
        );
        // Again, and this time hang up once it is answered: transfer.
        l.flash(ms(6000));
        dial(&mut l, 7000, "2003");
        l.call_placed(ms(8000), Some("c3".into()));
        l.connected("c3");
        outs(&mut l);
        l.on_hook();
        assert_eq!(outs(&mut l), vec![FxsOut::Disconnect, FxsOut::Transfer { keep: "c1".into(), other: "c3".into() }, FxsOut::Play(Sound::Silence)]);
        assert!(!l.busy());
        assert_eq!(l.call(), None);
        // Hanging up before the consultation is answered rings back for the held call.
        let mut l = talking();
        l.flash(ms(2000));
        dial(&mut l, 3000, "2002");
        l.call_placed(ms(4000), Some("c2".into()));
        outs(&mut l);
        l.on_hook();
        assert_eq!(
            outs(&mut l),
            vec![FxsOut::Disconnect, FxsOut::Drop { call: "c2".into() }, FxsOut::Play(Sound::Silence), FxsOut::Swap, FxsOut::Ring(true)]
        );
        assert_eq!(l.state_name(), "recall");
    }
}
