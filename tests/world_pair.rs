//! The peer pair's role machine (core::pair) on the virtual clock: two units, a peer
//! link that can be cut, a LAN each unit can lose, a witness on the LAN, freezes
//! (SIGSTOP: the unit runs nothing, its datagrams wait in the kernel), kills and
//! restarts with no memory. Directed tests for each fault, then random faults and
//! heals over many seeds with the invariants checked after every event.

use ctibox::core::pair::wire::{self, Body, Frame, ReplayGuard};
use ctibox::core::pair::{Output, Pair, Role, Settings};
use ctibox::core::rng::EngineRng;
use ctibox::core::Time;
use std::time::Duration;

const HEARTBEAT: Duration = Duration::from_millis(50);
const DEAD_AFTER: Duration = Duration::from_millis(150);
/// One way over the peer link or the LAN.
const LATENCY: Duration = Duration::from_millis(1);
/// A probe's answer (the witness and the peer over the LAN) comes this much later.
const PROBE_RTT: Duration = Duration::from_millis(2);
const KEY: &[u8] = b"the pair key of the two test units";

fn ms(n: u64) -> Time {
    Time::from_millis(n)
}

struct Unit {
    name: &'static str,
    settings: Settings,
    pair: Option<Pair>,
    frozen: bool,
    lan: bool,
    /// Frames and probe answers that reached a frozen unit, in order.
    held: Vec<Event>,
    /// (when, role, term) of every role change.
    roles: Vec<(Time, Role, u64)>,
    /// Starts so far (the frames' boot number) and frames sent in this one.
    boot: u64,
    seq: u64,
    /// The peer's last frame accepted, as the shell keeps it (reset by a restart).
    guard: ReplayGuard,
}

#[derive(Clone, Debug)]
enum Event {
    /// A datagram of the peer link, as encoded by `pair::wire`.
    Frame(Vec<u8>),
    /// The answer to this unit's probe, judged when it arrives.
    ProbeAnswer,
}

struct World {
    now: Time,
    units: [Unit; 2],
    link_cut: bool,
    /// (deliver at, to, event)
    flight: Vec<(Time, usize, Event)>,
    /// Since when both units serve the LAN as active at once.
    both_active_since: Option<Time>,
    log: Vec<String>,
    /// The network's faults: each frame or probe answer lost with `loss`, a frame
    /// delivered twice with `dup`, each delayed by up to `jitter` more (reordering).
    net: EngineRng,
    loss: f64,
    dup: f64,
    jitter: Duration,
}

impl World {
    fn new() -> World {
        let unit = |name, unit, priority| Unit {
            name,
            settings: Settings { heartbeat: HEARTBEAT, dead_after: DEAD_AFTER, priority, unit },
            pair: None,
            frozen: false,
            lan: true,
            held: Vec::new(),
            roles: Vec::new(),
            boot: 0,
            seq: 0,
            guard: ReplayGuard::default(),
        };
        World {
            now: Time::ZERO,
            units: [unit("a", 0, 200), unit("b", 1, 100)],
            link_cut: false,
            flight: Vec::new(),
            both_active_since: None,
            log: Vec::new(),
            net: EngineRng::from_seed([0; 32]),
            loss: 0.0,
            dup: 0.0,
            jitter: Duration::ZERO,
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.net.next_u64() % 1_000_000) as f64 / 1_000_000.0 < p
    }

    fn delay(&mut self, base: Duration) -> Duration {
        let j = self.jitter.as_micros() as u64;
        base + if j == 0 { Duration::ZERO } else { Duration::from_micros(self.net.next_u64() % j) }
    }

    fn start(&mut self, i: usize) {
        let u = &mut self.units[i];
        u.pair = Some(Pair::new(u.settings, self.now, 0));
        u.frozen = false;
        u.held.clear();
        u.boot += 1;
        u.seq = 0;
        u.guard = ReplayGuard::default();
        self.log.push(format!("{} {} starts", self.now, u.name));
        self.pump(i);
    }

    fn kill(&mut self, i: usize) {
        self.units[i].pair = None;
        self.log.push(format!("{} {} killed", self.now, self.units[i].name));
        self.flight.retain(|(_, to, _)| *to != i);
    }

    fn role(&self, i: usize) -> Option<Role> {
        self.units[i].pair.as_ref().map(Pair::role)
    }

    /// Whether unit `i` serves the LAN: alive, running, on the LAN and active.
    fn serving(&self, i: usize) -> bool {
        let u = &self.units[i];
        !u.frozen && u.lan && u.pair.as_ref().is_some_and(|p| p.role() == Role::Active)
    }

    fn link_up(&self) -> bool {
        !self.link_cut && self.units.iter().all(|u| u.lan)
    }

    /// Takes each output of unit `i` and acts on it.
    fn pump(&mut self, i: usize) {
        loop {
            let Some(out) = self.units[i].pair.as_mut().and_then(Pair::poll_output) else { return };
            match out {
                Output::Send(s) => {
                    let u = &mut self.units[i];
                    u.seq += 1;
                    let bytes = wire::encode(KEY, &Frame { boot: u.boot, seq: u.seq, body: Body::Heartbeat { status: s, calls: 0 } }).expect("a heartbeat fits");
                    if self.link_up() && !self.chance(self.loss) {
                        let copies = if self.chance(self.dup) { 2 } else { 1 };
                        for _ in 0..copies {
                            let at = self.now + self.delay(LATENCY);
                            self.flight.push((at, 1 - i, Event::Frame(bytes.clone())));
                        }
                    }
                }
                Output::Probe { until } => {
                    // A lost answer never comes: the machine gives the probe up. The
                    // shell hands the result over at `until` unless the peer answers;
                    // here it is judged then.
                    if !self.chance(self.loss) {
                        let at = (self.now + self.delay(PROBE_RTT)).max(until);
                        self.flight.push((at, i, Event::ProbeAnswer));
                    }
                }
                Output::Role { role, term } => {
                    self.log.push(format!("{} {} becomes {} (term {term})", self.now, self.units[i].name, role.name()));
                    self.units[i].roles.push((self.now, role, term));
                    if role == Role::Active {
                        self.check_takeover(i);
                    }
                }
            }
        }
    }

    /// A unit becomes active: its peer must not be serving a LAN this unit is on.
    fn check_takeover(&self, i: usize) {
        let other = 1 - i;
        if self.units[i].lan && self.serving(other) {
            self.fail(&format!("{} took over while {} serves", self.units[i].name, self.units[other].name));
        }
    }

    fn deliver(&mut self, i: usize, ev: Event) {
        if self.units[i].pair.is_none() {
            return;
        }
        if self.units[i].frozen {
            self.units[i].held.push(ev);
            return;
        }
        let now = self.now;
        match ev {
            Event::Frame(bytes) => {
                let frame = wire::decode(KEY, &bytes).expect("the test's own frames are authentic");
                // As the shell does: a duplicate or a frame overtaken by a later one is dropped.
                if self.units[i].guard.accept(&frame).is_ok() {
                    let Body::Heartbeat { status: s, .. } = frame.body else { panic!("only heartbeats cross this link") };
                    if let Some(p) = self.units[i].pair.as_mut() {
                        p.handle_frame(now, s);
                    }
                }
            }
            Event::ProbeAnswer => {
                let other = 1 - i;
                let witness = self.units[i].lan;
                let o = &self.units[other];
                let peer = if self.units[i].lan && o.lan && !o.frozen { o.pair.as_ref().map(Pair::status) } else { None };
                if let Some(p) = self.units[i].pair.as_mut() {
                    p.probed(now, witness, peer);
                }
            }
        }
        self.pump(i);
    }

    fn next_event(&self) -> Option<Time> {
        let timers = self.units.iter().filter(|u| !u.frozen).filter_map(|u| u.pair.as_ref().map(Pair::poll_timeout));
        timers.chain(self.flight.iter().map(|f| f.0)).min()
    }

    /// Runs every event up to `t`, checking the invariants after each.
    fn run_until(&mut self, t: Time) {
        let mut same_instant = 0;
        while let Some(at) = self.next_event().filter(|&at| at <= t) {
            same_instant = if at <= self.now { same_instant + 1 } else { 0 };
            if same_instant > 1000 {
                self.fail("a timer that keeps firing without the clock moving");
            }
            self.now = self.now.max(at);
            let due = self.flight.iter().enumerate().filter(|(_, f)| f.0 <= self.now).min_by_key(|(_, f)| f.0).map(|(k, _)| k);
            if let Some(k) = due {
                let (_, to, ev) = self.flight.remove(k);
                self.deliver(to, ev);
            } else {
                for i in 0..2 {
                    let due = !self.units[i].frozen && self.units[i].pair.as_ref().is_some_and(|p| p.poll_timeout() <= self.now);
                    if due {
                        let now = self.now;
                        if let Some(p) = self.units[i].pair.as_mut() {
                            p.handle_timeout(now);
                        }
                        self.pump(i);
                    }
                }
            }
            self.check();
        }
        self.now = self.now.max(t);
        self.check();
    }

    fn check(&mut self) {
        let (a, b) = (&self.units[0].pair, &self.units[1].pair);
        if let (Some(a), Some(b)) = (a, b) {
            if a.role() == Role::Active && b.role() == Role::Active && a.term() == b.term() {
                self.fail(&format!("both active with term {}", a.term()));
            }
        }
        if self.serving(0) && self.serving(1) {
            let since = *self.both_active_since.get_or_insert(self.now);
            let grace = DEAD_AFTER * 2 + HEARTBEAT + PROBE_RTT * 2;
            if self.now.since(since) > grace {
                self.fail(&format!("both active and serving the LAN since {since}"));
            }
        } else {
            self.both_active_since = None;
        }
    }

    fn freeze(&mut self, i: usize) {
        self.units[i].frozen = true;
        self.log.push(format!("{} {} frozen", self.now, self.units[i].name));
    }

    fn thaw(&mut self, i: usize) {
        self.units[i].frozen = false;
        self.log.push(format!("{} {} resumes", self.now, self.units[i].name));
        let now = self.now;
        if let Some(p) = self.units[i].pair.as_mut() {
            // Its overdue timer runs first, as a process resuming finds it expired.
            if p.poll_timeout() <= now {
                p.handle_timeout(now);
            }
        }
        self.pump(i);
        for ev in std::mem::take(&mut self.units[i].held) {
            self.deliver(i, ev);
        }
    }

    fn set_lan(&mut self, i: usize, up: bool) {
        self.units[i].lan = up;
        self.log.push(format!("{} {} LAN {}", self.now, self.units[i].name, if up { "up" } else { "down" }));
    }

    fn set_link(&mut self, cut: bool) {
        self.link_cut = cut;
        self.log.push(format!("{} peer link {}", self.now, if cut { "cut" } else { "healed" }));
    }

    fn actives(&self) -> Vec<&'static str> {
        (0..2).filter(|&i| self.role(i) == Some(Role::Active)).map(|i| self.units[i].name).collect()
    }

    fn fail(&self, what: &str) -> ! {
        panic!("{what} at {}\n{}", self.now, self.log.join("\n"));
    }
}

/// Both units started together and settled: a (priority 200) active, b standing by.
fn pair_up() -> World {
    let mut w = World::new();
    w.start(0);
    w.start(1);
    w.run_until(ms(1000));
    assert_eq!((w.role(0), w.role(1)), (Some(Role::Active), Some(Role::Standby)), "{}", w.log.join("\n"));
    w
}

fn took_over_at(w: &World, i: usize, after: Time) -> Option<Time> {
    w.units[i].roles.iter().find(|(t, r, _)| *t >= after && *r == Role::Active).map(|(t, _, _)| *t)
}

#[test]
fn two_units_starting_together_make_the_higher_priority_active_and_the_other_standby() {
    let w = pair_up();
    let a = &w.units[0].roles;
    assert_eq!(a.first().map(|r| (r.1, r.2)), Some((Role::Active, 2)), "unit 0 takes even terms: {a:?}");
    // Decided within one heartbeat and a probe, not after a dead interval.
    assert!(a[0].0 <= ms(60), "{a:?}");
    assert_eq!(w.units[1].roles.iter().map(|r| r.1).collect::<Vec<_>>(), [Role::Standby]);
}

#[test]
fn a_killed_active_is_replaced_within_dead_after_and_a_probe_and_never_given_back() {
    let mut w = pair_up();
    w.kill(0);
    let fault = w.now;
    w.run_until(ms(2000));
    let at = took_over_at(&w, 1, fault).expect("b takes over");
    let took = at.since(fault);
    assert!(took <= DEAD_AFTER + PROBE_RTT, "took {took:?}");
    assert!(w.units[1].roles.last().is_some_and(|r| r.2 == 3), "b's term is past a's and odd: {:?}", w.units[1].roles);
    // a returns with no memory: it stands by, no fail-back.
    w.start(0);
    w.run_until(ms(10_000));
    assert_eq!(w.actives(), ["b"]);
    assert_eq!(w.role(0), Some(Role::Standby));
}

#[test]
fn a_frozen_active_is_replaced_and_on_resuming_steps_down_without_taking_anything_back() {
    let mut w = pair_up();
    w.freeze(0);
    let fault = w.now;
    w.run_until(ms(3000));
    assert!(took_over_at(&w, 1, fault).is_some_and(|t| t.since(fault) <= DEAD_AFTER + PROBE_RTT), "{}", w.log.join("\n"));
    w.thaw(0);
    let resumed = w.now;
    w.run_until(ms(10_000));
    assert_eq!(w.actives(), ["b"]);
    // Its first act on resuming is to stop serving, at that very instant.
    let a_roles: Vec<_> = w.units[0].roles.iter().filter(|r| r.0 >= resumed).map(|r| (r.0, r.1)).collect();
    assert_eq!(a_roles.first(), Some(&(resumed, Role::SteppingDown)), "{a_roles:?}");
    assert_eq!(a_roles.last().map(|r| r.1), Some(Role::Standby));
}

#[test]
fn a_frozen_active_that_resumes_hearing_nothing_stops_serving_at_that_instant() {
    let mut w = pair_up();
    // The peer link is down: no frame of b's waits for a when it resumes.
    w.set_link(true);
    w.freeze(0);
    w.run_until(ms(3000));
    assert_eq!(w.actives(), ["a", "b"], "a is frozen, still active in its own eyes");
    w.thaw(0);
    let resumed = w.now;
    assert_eq!(w.role(0), Some(Role::SteppingDown), "{}", w.log.join("\n"));
    assert_eq!(w.units[0].roles.last().map(|r| r.0), Some(resumed));
    w.run_until(ms(10_000));
    assert_eq!(w.actives(), ["b"], "and it never takes anything back");
}

#[test]
fn a_cut_peer_link_while_both_serve_the_lan_causes_no_takeover() {
    let mut w = pair_up();
    w.set_link(true);
    let fault = w.now;
    w.run_until(ms(20_000));
    assert_eq!(took_over_at(&w, 1, fault), None, "{}", w.log.join("\n"));
    assert_eq!(w.actives(), ["a"]);
    w.set_link(false);
    w.run_until(ms(21_000));
    assert_eq!((w.role(0), w.role(1)), (Some(Role::Active), Some(Role::Standby)));
}

#[test]
fn an_active_cut_off_from_the_lan_is_replaced_and_steps_down_when_the_lan_returns() {
    let mut w = pair_up();
    w.set_lan(0, false);
    let fault = w.now;
    w.run_until(ms(5000));
    assert!(took_over_at(&w, 1, fault).is_some(), "{}", w.log.join("\n"));
    w.set_lan(0, true);
    let healed = w.now;
    w.run_until(ms(5100));
    assert_eq!(w.actives(), ["b"], "a steps down within a heartbeat of the heal");
    assert!(w.units[0].roles.iter().any(|r| r.0 >= healed && r.1 == Role::SteppingDown));
    w.run_until(ms(10_000));
    assert_eq!((w.role(0), w.role(1)), (Some(Role::Standby), Some(Role::Active)));
}

#[test]
fn a_standby_cut_off_from_the_lan_never_takes_over() {
    let mut w = pair_up();
    w.set_lan(1, false);
    let fault = w.now;
    w.run_until(ms(20_000));
    assert_eq!(took_over_at(&w, 1, fault), None, "{}", w.log.join("\n"));
    assert_eq!(w.actives(), ["a"]);
}

#[test]
fn a_switchover_hands_over_at_once_and_the_old_active_stands_by() {
    let mut w = pair_up();
    let now = w.now;
    assert!(w.units[0].pair.as_mut().unwrap().switchover(now));
    w.pump(0);
    w.run_until(ms(1100));
    assert_eq!(took_over_at(&w, 1, now).map(|t| t.since(now)), Some(LATENCY));
    w.run_until(ms(5000));
    assert_eq!((w.role(0), w.role(1)), (Some(Role::Standby), Some(Role::Active)));
    // A standby refuses a switchover: nothing to hand.
    let now = w.now;
    assert!(!w.units[0].pair.as_mut().unwrap().switchover(now));
}

#[test]
fn random_faults_and_heals_over_many_seeds_never_make_two_actives_and_end_with_one() {
    for seed in 0..1000u64 {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        let mut rng = EngineRng::from_seed(key);
        let mut w = World::new();
        w.net = EngineRng::from_seed([key, [1; 32]].concat()[1..33].try_into().unwrap());
        // A third of the seeds on a clean network, the others lossy, with duplicates
        // and reordering.
        if seed % 3 != 0 {
            w.loss = (rng.next_u64() % 30) as f64 / 100.0;
            w.dup = (rng.next_u64() % 10) as f64 / 100.0;
            w.jitter = Duration::from_millis(rng.next_u64() % 20);
        }
        w.start(0);
        if rng.next_u64().is_multiple_of(2) {
            w.run_until(ms(rng.next_u64() % 400));
        }
        w.start(1);
        let mut t = w.now;
        for _ in 0..60 {
            t = t + Duration::from_millis(20 + rng.next_u64() % 1500);
            w.run_until(t);
            let i = (rng.next_u64() % 2) as usize;
            match rng.next_u64() % 8 {
                0 if w.units[i].pair.is_some() => w.kill(i),
                0 => w.start(i),
                1 if !w.units[i].frozen && w.units[i].pair.is_some() => w.freeze(i),
                1 if w.units[i].frozen => w.thaw(i),
                2 => {
                    let up = !w.units[i].lan;
                    w.set_lan(i, up);
                }
                3 => {
                    let cut = !w.link_cut;
                    w.set_link(cut);
                }
                4 => {
                    let now = w.now;
                    let frozen = w.units[i].frozen;
                    if let Some(p) = w.units[i].pair.as_mut().filter(|_| !frozen) {
                        p.switchover(now);
                    }
                    w.pump(i);
                }
                _ => {}
            }
        }
        // Everything heals: both units run, on the LAN, the link up.
        w.set_link(false);
        for i in 0..2 {
            w.set_lan(i, true);
            if w.units[i].frozen {
                w.thaw(i);
            }
            if w.units[i].pair.is_none() {
                w.start(i);
            }
        }
        let healed = w.now;
        w.run_until(healed + Duration::from_secs(3));
        let roles = (w.role(0), w.role(1));
        let one_active = matches!(roles, (Some(Role::Active), Some(Role::Standby)) | (Some(Role::Standby), Some(Role::Active)));
        assert!(one_active, "seed {seed}: {roles:?} after the heal\n{}", w.log.join("\n"));
    }
}
