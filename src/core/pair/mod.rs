//! The peer pair's role machine: which of two units serves (holds the service
//! address, answers SIP and CTI) and which stands by. Pure and on the engine's clock:
//! the shell sends and receives the frames (`wire`), runs the probes and moves the
//! address; this decides.
//!
//! Roles: `Starting` (just started, has not heard whether the peer serves),
//! `Standby`, `Active`, `SteppingDown` (gave up serving: an operator's switchover, a
//! higher term seen, or a freeze of its own; it serves nothing and does not take over
//! for `dead_after`, then stands by).
//!
//! - Every frame carries the sender's term, role, priority and unit number. A takeover
//!   sets the term past every term seen, so terms only grow.
//! - Of two units that are both active, the one with the lower (term, unit) steps down
//!   as soon as it hears the other.
//! - A standby takes over only when the peer has been silent for `dead_after` **and**
//!   a probe says the witness answers and the peer does not. The probe starts
//!   `probe_window` before the silence reaches `dead_after` (once a heartbeat is a
//!   quarter heartbeat overdue) and lasts until it does,
//!   so the takeover follows `dead_after` at once and the peer's silence over the LAN
//!   is part of the silence counted. A probe (`Output::Probe`)
//!   tests the witness (an address both units reach, such as the gateway) and asks
//!   the peer over the LAN, not over the peer link, for its role: so a cut peer link
//!   while both units still serve the LAN is no reason to take over, and a unit cut
//!   off from the LAN (no witness) never takes over. An active unit whose peer is
//!   silent probes too, so two actives that cannot hear each other on the peer link
//!   still learn of each other and the lower term steps down.
//! - A unit that finds its own clock jumped by more than `dead_after` between two runs
//!   (it was frozen: SIGSTOP, a stalled VM) gives up serving at once if it was active,
//!   and counts the peer's silence from that moment: it never takes anything back
//!   from a peer that took over meanwhile.
//! - No fail-back: a unit that returns finds the peer active and stands by. Priority
//!   only decides between two units of which neither is active (both starting).

pub mod wire;

use super::Time;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    Starting,
    Standby,
    Active,
    SteppingDown,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Starting => "starting",
            Role::Standby => "standby",
            Role::Active => "active",
            Role::SteppingDown => "stepping down",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// How often a heartbeat goes to the peer.
    pub heartbeat: Duration,
    /// Silence after which the peer counts as gone (at least 1.5 `heartbeat`: a
    /// heartbeat lost or late costs a probe, which the live peer answers over the
    /// LAN, not a takeover).
    pub dead_after: Duration,
    /// Decides only between two units of which neither is active: the higher serves.
    pub priority: u8,
    /// This unit's number, 0 or 1, distinct for the two units (the shell gives 0 to
    /// the unit whose peer-link address is the lower): it breaks a tie of priorities,
    /// and terms taken by unit 0 are even, by unit 1 odd, so two units never hold
    /// the same term.
    pub unit: u64,
}

/// What a unit says of itself in every frame (and in its answer to a probe).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Status {
    pub term: u64,
    pub role: Role,
    pub priority: u8,
    pub unit: u64,
    /// Stepping down for an operator's switchover: the standby takes over at once.
    pub handover: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send this heartbeat to the peer over the peer link.
    Send(Status),
    /// Test the witness and ask the peer over the LAN for its status, waiting for
    /// the peer's answer until `until`; answer with `Pair::probed` then (or as soon as
    /// the peer answers).
    Probe { until: Time },
    /// The role changed: an `Active` unit adds the service address (and announces
    /// it); any other removes it.
    Role { role: Role, term: u64 },
}

/// What this unit knows of its peer.
#[derive(Clone, Copy, Debug)]
struct Heard {
    at: Time,
    status: Status,
}

pub struct Pair {
    cfg: Settings,
    role: Role,
    term: u64,
    /// The highest term seen in any frame or probe answer.
    seen_term: u64,
    /// The peer's silence is counted from here at the earliest (start, a freeze).
    observe_from: Time,
    last_run: Option<Time>,
    heard: Option<Heard>,
    next_beat: Time,
    /// A probe is out since then; its answer is waited for until `dead_after` later.
    probing: Option<Time>,
    /// No new probe before then.
    next_probe: Time,
    /// `SteppingDown` ends then.
    down_until: Time,
    handover: bool,
    /// When the peer's host last said its peer-link port is closed (its process is
    /// gone): its silence counts as `dead_after` from then on, until it is heard.
    gone: Option<Time>,
    out: VecDeque<Output>,
}

/// How long before the peer's silence reaches `dead_after` a probe starts: as soon
/// as a heartbeat is a quarter heartbeat overdue (a heartbeat merely on time starts
/// none), and at least `least_probe_window` before `dead_after`. The peer's answer
/// over the LAN is waited for through the whole window, so a peer that serves but is
/// heard only over the LAN (a cut peer link) has most of `dead_after` to answer, not
/// a scheduling slice: a busy host's late answer is not taken for a dead peer.
pub fn probe_window(heartbeat: Duration, dead_after: Duration) -> Duration {
    dead_after.saturating_sub(heartbeat + heartbeat / 4).max(least_probe_window(heartbeat)).min(dead_after)
}

/// The shortest probe: a quarter heartbeat, 5-50 ms, long enough for a ping of the
/// witness and a query over the LAN to come back. A probe after the peer's port was
/// found closed (its process is gone) waits no longer than this for the peer's answer.
pub fn least_probe_window(heartbeat: Duration) -> Duration {
    (heartbeat / 4).clamp(Duration::from_millis(5), Duration::from_millis(50))
}

impl Pair {
    /// A unit starting at `now`, with the highest term it remembers (0 if none).
    pub fn new(cfg: Settings, now: Time, term: u64) -> Pair {
        let mut p = Pair {
            cfg,
            role: Role::Starting,
            term,
            seen_term: term,
            observe_from: now,
            last_run: Some(now),
            heard: None,
            next_beat: now,
            probing: None,
            next_probe: now,
            down_until: now,
            handover: false,
            gone: None,
            out: VecDeque::new(),
        };
        p.beat(now);
        p
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn term(&self) -> u64 {
        self.term
    }

    /// The highest term this unit has held or seen: what it must remember across a
    /// restart.
    pub fn highest_term(&self) -> u64 {
        self.term.max(self.seen_term)
    }

    pub fn status(&self) -> Status {
        Status { term: self.term, role: self.role, priority: self.cfg.priority, unit: self.cfg.unit, handover: self.handover }
    }

    /// The peer's status as last heard, and when.
    pub fn peer(&self) -> Option<(Time, Status)> {
        self.heard.map(|h| (h.at, h.status))
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When `handle_timeout` should run next.
    pub fn poll_timeout(&self) -> Time {
        let mut t = self.next_beat;
        if let Some(p) = self.probing {
            t = t.min(p + self.cfg.dead_after);
        }
        if self.role == Role::SteppingDown {
            t = t.min(self.down_until);
        }
        if self.probing.is_none() && self.role != Role::SteppingDown {
            // The instant a probe for the peer's silence is due (or the next probe).
            let from = if self.role == Role::Active { self.dead_at() } else { self.probe_from() };
            let due = from.max(self.next_probe);
            t = t.min(due);
        }
        t
    }

    pub fn handle_timeout(&mut self, now: Time) {
        self.run(now);
        if self.probing.is_some_and(|p| now >= p + self.cfg.dead_after) {
            // No answer in time: as good as a witness that did not answer.
            self.probing = None;
        }
        if now >= self.next_beat {
            self.beat(now);
        }
        self.decide(now);
    }

    /// A heartbeat from the peer (already authenticated and checked by `wire`).
    pub fn handle_frame(&mut self, now: Time, status: Status) {
        self.run(now);
        self.hear(now, status);
        if status.handover && status.role == Role::SteppingDown && matches!(self.role, Role::Standby | Role::Starting) {
            // The active hands over: take over at once, nothing to probe for.
            return self.take_over(now);
        }
        self.decide(now);
    }

    /// The answer to `Output::Probe`: whether the witness answered, and the peer's
    /// status if the peer answered over the LAN.
    pub fn probed(&mut self, now: Time, witness: bool, peer: Option<Status>) {
        self.run(now);
        if self.probing.take().is_none() {
            return; // late: its probe already counted as failed
        }
        if let Some(s) = peer {
            self.hear(now, s);
        }
        if witness && self.may_take_over(now) {
            return self.take_over(now);
        }
        self.decide(now);
    }

    /// An operator's switchover: the active unit hands over to a standby it hears.
    /// Returns whether it did.
    pub fn switchover(&mut self, now: Time) -> bool {
        self.run(now);
        let peer_stands_by = self.live_peer(now).is_some_and(|s| s.role == Role::Standby);
        if self.role != Role::Active || !peer_stands_by {
            return false;
        }
        self.handover = true;
        self.step_down(now);
        true
    }

    /// The peer's host answered a heartbeat with "port unreachable": no process
    /// listens there, so there is no need to wait out `dead_after` before probing.
    /// The probe still decides (a forged ICMP error cannot make a unit take over
    /// from a peer that answers over the LAN).
    pub fn peer_gone(&mut self, now: Time) {
        self.run(now);
        self.gone = Some(now);
        self.decide(now);
    }

    /// The peer's silence, from `silent_since`, after which it counts as dead: none
    /// if its port was found closed since it was last heard.
    fn silence_allowed(&self) -> Duration {
        if self.gone.is_some_and(|g| g >= self.silent_since()) {
            Duration::ZERO
        } else {
            self.cfg.dead_after
        }
    }

    /// When the peer's silence reaches `dead_after` (at once if its port is closed).
    fn dead_at(&self) -> Time {
        self.silent_since() + self.silence_allowed()
    }

    /// When a probe for the peer's silence should start: `probe_window` before
    /// `dead_at` (at once if the port is closed).
    fn probe_from(&self) -> Time {
        self.silent_since() + self.silence_allowed().saturating_sub(self.window())
    }

    /// Whether the peer counts as silent for `dead_after` at `now`.
    fn peer_dead(&self, now: Time) -> bool {
        now >= self.dead_at()
    }

    /// How long a probe waits for the peer's answer: the short window once the peer's
    /// port was found closed, else the long one.
    fn window(&self) -> Duration {
        if self.silence_allowed().is_zero() {
            least_probe_window(self.cfg.heartbeat)
        } else {
            probe_window(self.cfg.heartbeat, self.cfg.dead_after)
        }
    }

    /// Notes that the machine runs at `now`, and what a jump of the clock means.
    fn run(&mut self, now: Time) {
        if let Some(last) = self.last_run {
            if now.since(last) > self.cfg.dead_after {
                // Frozen: whatever happened meanwhile, this unit cannot know it.
                self.observe_from = now;
                self.probing = None;
                if self.role == Role::Active {
                    self.step_down(now);
                }
            }
        }
        self.last_run = Some(now);
    }

    fn hear(&mut self, now: Time, status: Status) {
        if status.unit == self.cfg.unit {
            return; // our own frame looped back: not a peer
        }
        self.seen_term = self.seen_term.max(status.term);
        self.heard = Some(Heard { at: now, status });
        if self.role == Role::Active && status.role == Role::Active && (status.term, status.unit) > (self.term, self.cfg.unit) {
            self.step_down(now);
        }
    }

    fn silent_since(&self) -> Time {
        self.heard.map_or(self.observe_from, |h| h.at.max(self.observe_from))
    }

    fn live_peer(&self, now: Time) -> Option<Status> {
        let gone_after = |h: &Heard| self.gone.is_some_and(|g| g >= h.at);
        self.heard
            .filter(|h| now.since(h.at) < self.cfg.dead_after && h.at >= self.observe_from && !gone_after(h))
            .map(|h| h.status)
    }

    /// Whether this unit may take over now (the witness having answered): a standby
    /// (or starting) unit whose peer is silent on the link and over the LAN, or whose
    /// peer is alive and serves nobody while this unit is the better one.
    fn may_take_over(&self, now: Time) -> bool {
        if !matches!(self.role, Role::Standby | Role::Starting) {
            return false;
        }
        match self.live_peer(now) {
            None => self.peer_dead(now),
            Some(p) => self.outranks(p),
        }
    }

    /// Of two units neither of which is active, whether this one should serve.
    fn outranks(&self, p: Status) -> bool {
        match p.role {
            Role::Active => false,
            Role::SteppingDown => true,
            Role::Starting | Role::Standby => (self.cfg.priority, self.cfg.unit) > (p.priority, p.unit),
        }
    }

    fn decide(&mut self, now: Time) {
        match self.role {
            Role::SteppingDown => {
                if now >= self.down_until {
                    self.handover = false;
                    self.set_role(now, Role::Standby);
                }
            }
            Role::Active => {
                if self.live_peer(now).is_none() {
                    // The peer is silent on the peer link: look for it over the LAN.
                    self.probe(now, self.cfg.dead_after / 2, now + self.window());
                }
            }
            Role::Starting | Role::Standby => {
                match self.live_peer(now) {
                    Some(p) if p.role == Role::Active && self.role == Role::Starting => {
                        self.set_role(now, Role::Standby);
                    }
                    Some(p) if p.role != Role::Active => {
                        if self.outranks(p) {
                            // Nobody serves and this unit should: once the witness answers
                            // (the peer is heard on the link: no long wait for it).
                            self.probe(now, self.cfg.heartbeat, now + least_probe_window(self.cfg.heartbeat));
                        } else if self.role == Role::Starting {
                            self.set_role(now, Role::Standby);
                        }
                    }
                    _ => {}
                }
                if now >= self.probe_from() {
                    // Silent for nearly `dead_after`: the probe ends when it is (or,
                    // past it, a short window on).
                    let until = self.dead_at().max(now + least_probe_window(self.cfg.heartbeat));
                    self.probe(now, self.cfg.heartbeat, until);
                }
            }
        }
    }

    /// Sends a probe unless one is out, and allows the next one `gap` later.
    fn probe(&mut self, now: Time, gap: Duration, until: Time) {
        if self.probing.is_none() && now >= self.next_probe {
            self.probing = Some(now);
            self.next_probe = now + gap;
            self.out.push_back(Output::Probe { until });
        }
    }

    fn take_over(&mut self, now: Time) {
        let next = self.term.max(self.seen_term).saturating_add(1);
        self.term = if next % 2 == self.cfg.unit % 2 { next } else { next.saturating_add(1) };
        self.seen_term = self.term;
        self.set_role(now, Role::Active);
    }

    fn step_down(&mut self, now: Time) {
        self.down_until = now + self.cfg.dead_after;
        self.set_role(now, Role::SteppingDown);
    }

    fn set_role(&mut self, now: Time, role: Role) {
        if role == self.role {
            return;
        }
        self.role = role;
        self.out.push_back(Output::Role { role, term: self.term });
        self.beat(now);
    }

    fn beat(&mut self, now: Time) {
        self.out.push_back(Output::Send(self.status()));
        self.next_beat = now + self.cfg.heartbeat;
    }
}

#[cfg(test)]
mod tests;
