//! The peer pair in the shell, around the engine's role machine (`core::pair`): the
//! peer link's sockets (UDP heartbeats and LAN probes on `peer.listen`, TCP
//! replication on the same port), the witness probe, the service address and its
//! announcements, and the replication stream between the two engines.
//!
//! - Heartbeats go out on a socket connected to the peer's link address, so a peer
//!   whose process is gone (its port closed) shows at the next heartbeat as "port
//!   unreachable" (`Pair::peer_gone`), without waiting out `dead_after`.
//! - A probe pings the witness (`pairnet::ping`) and asks the peer over the LAN
//!   (`peer_lan_address`) for its status with a nonce (three times, a third of the
//!   wait apart, in case a datagram is lost); it is decided when the ping has answered or timed out
//!   and the peer has answered or the probe's `until` has come (the instant the peer's
//!   silence reaches `dead_after`: the probe runs in the last `probe_window` of it).
//! - Replication: a standby dials the active unit; the active sends a challenge, the
//!   standby subscribes, and the active sends its whole state (`Engine::snapshot`),
//!   then every `Output::Replicate` in order. A standby that loses the stream (or a
//!   frame: the MACs are numbered) dials again and gets a new snapshot. The active's
//!   queue to the standby is bounded: a standby that cannot keep up is dropped and
//!   catches up with a snapshot.

use super::driver::{Event, PersistQueue};
use super::pairnet;
use crate::config::model::PeerConfig;
use crate::core::pair::wire::{self, Body, Dir, Frame, ReplayGuard, StreamMsg, StreamSide};
use crate::core::pair::{Output as PairOut, Pair, Role, Settings, Status};
use crate::core::snapshot::Delta;
use crate::core::{Engine, PairView, Time};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

/// Errors of a connect to the peer's link address that mean "no route yet".
const NO_ROUTE: [i32; 3] = [nix::libc::ENETUNREACH, nix::libc::EHOSTUNREACH, nix::libc::EADDRNOTAVAIL];

/// Frames queued for the standby before it counts as unable to keep up.
const REPL_QUEUE: usize = 8192;
/// How long a replication handshake may take.
const HANDSHAKE: Duration = Duration::from_secs(2);
/// Announcements of the service address after a takeover or a heal, from then.
const ANNOUNCE_AT_MS: [u64; 6] = [0, 100, 300, 1000, 2000, 4000];
/// Failed replication handshakes from one address before it is refused for a while.
const HANDSHAKE_FAILS: u32 = 5;
const HANDSHAKE_BAN: Duration = Duration::from_secs(60);

/// What the pair's tasks tell the engine loop.
pub enum PairEvent {
    /// A ping of the witness for probe `nonce` answered (or not).
    Witness { nonce: u64, ok: bool },
    /// A standby subscribed (on the active): its frames go into `tx`.
    Subscriber { tx: mpsc::Sender<Vec<u8>>, side: StreamSide, from: SocketAddr },
    /// On a standby: a message of the replication stream.
    Stream(StreamMsg),
    /// On a standby: the replication stream ended; `closed` if the active's side
    /// closed or reset the connection at a frame's start (its process may be gone).
    StreamEnded { why: String, closed: bool },
}

/// Counters on /status ("pair").
#[derive(Clone, Debug, Default, Serialize)]
pub struct PairStats {
    pub frames_sent: u64,
    pub frames_received: u64,
    /// Frames refused, by reason (short, version, length, forged, malformed, replayed).
    pub refused: BTreeMap<&'static str, u64>,
    pub probes: u64,
    pub takeovers: u64,
    pub step_downs: u64,
    pub announcements: u64,
    pub address_errors: u64,
    /// On the active: snapshots and deltas sent to the standby; on a standby: applied.
    pub snapshots_sent: u64,
    pub deltas_sent: u64,
    pub snapshots_applied: u64,
    pub deltas_applied: u64,
    /// Standbys dropped for not keeping up with the deltas.
    pub standby_overflows: u64,
    pub handshakes_refused: u64,
    /// SIP messages a non-serving unit did not send (its engine's, while standby).
    pub held_back: u64,
    /// SIP messages a non-serving unit received and dropped unread.
    pub sip_dropped: u64,
    /// Calls the peer held in setup when this unit took over from it, which it could
    /// not carry on: the peer's calls in its last heartbeat less the established calls
    /// replicated here (an estimate: calls begun or ended since that heartbeat, at
    /// most `heartbeat_ms` before the fault, are not in it).
    pub calls_lost_in_setup: u64,
    /// The calls the peer said it held in its last heartbeat while active (0 if it
    /// is not active).
    pub peer_calls: u64,
}

struct Probe {
    nonce: u64,
    witness: Option<bool>,
    answer: Option<Status>,
    answer_by: Time,
    /// When the query goes out again (a new frame, so not a replay), and how many
    /// more times.
    requery_at: Time,
    requeries: u8,
}

/// How many times a probe's query goes out in all, spread over its wait.
const PROBE_QUERIES: u8 = 3;

struct Subscriber {
    tx: mpsc::Sender<Vec<u8>>,
    side: StreamSide,
}

pub struct PairShell {
    cfg: PeerConfig,
    key: [u8; 32],
    machine: Pair,
    sock: Rc<UdpSocket>,
    hb: Rc<UdpSocket>,
    boot: u64,
    seq: u64,
    guard: ReplayGuard,
    probe: Option<Probe>,
    announces: VecDeque<Time>,
    last_heard: Option<Time>,
    subscriber: Option<Subscriber>,
    follower: Option<tokio::task::JoinHandle<()>>,
    follow_after: Time,
    bans: Bans,
    inbox: mpsc::Sender<Event>,
    nonce: u64,
    /// Where the highest term seen goes (the persist thread writes it to `pair-term`).
    persist: PersistQueue,
    pub stats: PairStats,
}

/// The file in the data directory holding the highest term this unit has seen, so a
/// unit that restarts never takes a term it or its peer held before.
pub const TERM_FILE: &str = "pair-term";

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl PairShell {
    /// Removes a stale service address (a crash or power loss can leave it), binds the
    /// peer link and starts its listener. `now` is engine time; `term` the highest term
    /// an earlier run saved (0 if none).
    pub async fn start(
        cfg: &PeerConfig,
        key: [u8; 32],
        now: Time,
        term: u64,
        nonce_seed: u64,
        inbox: mpsc::Sender<Event>,
        persist: PersistQueue,
    ) -> Result<PairShell, String> {
        let sa = cfg.service_address;
        match pairnet::remove_address(&cfg.interface, sa.addr, sa.prefix) {
            Ok(true) => log::warn!("pair: removed a stale service address {}/{} from {}", sa.addr, sa.prefix, cfg.interface),
            Ok(false) => {}
            Err(e) => return Err(format!("pair: cannot check the service address on {}: {e}", cfg.interface)),
        }
        let sock = UdpSocket::bind(cfg.listen).await.map_err(|e| format!("pair: cannot bind udp {}: {e}", cfg.listen))?;
        let local_ip = if cfg.listen.ip().is_unspecified() { None } else { Some(cfg.listen.ip()) };
        let hb_bind = SocketAddr::new(local_ip.unwrap_or(if cfg.address.is_ipv4() { IpAddr::from([0, 0, 0, 0]) } else { IpAddr::from([0u16; 8]) }), 0);
        let hb = UdpSocket::bind(hb_bind).await.map_err(|e| format!("pair: cannot bind {hb_bind}: {e}"))?;
        // At boot the peer link may have no address or route yet: wait for one (the
        // unit number comes from this side's address on it), serving nothing meanwhile.
        let mut warned = false;
        loop {
            match hb.connect(cfg.address).await {
                Ok(()) => break,
                Err(e) if matches!(e.raw_os_error(), Some(libc_err) if NO_ROUTE.contains(&libc_err)) => {
                    if !warned {
                        log::warn!("pair: no route to the peer {} yet ({e}); waiting for one before anything is served", cfg.address);
                        warned = true;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(format!("pair: cannot reach {}: {e}", cfg.address)),
            }
        }
        if warned {
            log::info!("pair: the peer link has a route to {} now", cfg.address);
        }
        let mine = hb.local_addr().map_err(|e| e.to_string())?.ip();
        // Unit 0 is the one with the lower peer-link address (distinct on a pair).
        let unit = u64::from(mine > cfg.address.ip());
        let tcp = TcpListener::bind(cfg.listen).await.map_err(|e| format!("pair: cannot bind tcp {}: {e}", cfg.listen))?;
        let settings = Settings {
            heartbeat: Duration::from_millis(cfg.heartbeat_ms.into()),
            dead_after: Duration::from_millis(cfg.dead_after_ms.into()),
            priority: cfg.priority,
            unit,
        };
        log::info!(
            "pair: unit {unit} ({mine}), peer {} (LAN {}), heartbeat {} ms, dead after {} ms, witness {}",
            cfg.address,
            cfg.peer_lan_address,
            cfg.heartbeat_ms,
            cfg.dead_after_ms,
            cfg.witness
        );
        let bans = Bans::default();
        tokio::task::spawn_local(replication_listener(tcp, key, inbox.clone(), bans.clone()));
        Ok(PairShell {
            cfg: cfg.clone(),
            key,
            machine: Pair::new(settings, now, term),
            sock: Rc::new(sock),
            hb: Rc::new(hb),
            boot: unix_ms(),
            seq: 0,
            guard: ReplayGuard::default(),
            probe: None,
            announces: VecDeque::new(),
            last_heard: None,
            subscriber: None,
            follower: None,
            follow_after: now,
            bans,
            inbox,
            nonce: nonce_seed,
            persist,
            stats: PairStats::default(),
        })
    }

    pub fn sockets(&self) -> (Rc<UdpSocket>, Rc<UdpSocket>) {
        (self.sock.clone(), self.hb.clone())
    }

    /// The service address (an active unit sends SIP from it).
    pub fn service_ip(&self) -> IpAddr {
        self.cfg.service_address.addr
    }

    pub fn role(&self) -> Role {
        self.machine.role()
    }

    pub fn serving(&self) -> bool {
        self.machine.role() == Role::Active
    }

    /// When `on_timeout` should run next.
    pub fn deadline(&self) -> Time {
        let mut t = self.machine.poll_timeout();
        // Once the ping has answered, the peer's answer is waited for until
        // `answer_by`; before that, the ping's own result wakes the loop.
        if let Some(p) = self.probe.as_ref().filter(|p| p.witness.is_some()) {
            t = t.min(p.answer_by);
        }
        if let Some(p) = self.probe.as_ref().filter(|p| p.requeries > 0 && p.answer.is_none()) {
            t = t.min(p.requery_at);
        }
        if let Some(a) = self.announces.front() {
            t = t.min(*a);
        }
        if self.wants_follower() {
            t = t.min(self.follow_after);
        }
        t
    }

    pub fn on_timeout(&mut self, now: Time, engine: &mut Engine) {
        if now >= self.machine.poll_timeout() {
            self.machine.handle_timeout(now);
        }
        self.requery(now);
        self.finish_probe(now);
        // The role machine's decisions first: a unit that wakes from a freeze steps
        // down here, and must not announce the address it is about to drop.
        self.pump(now, engine);
        while self.announces.front().is_some_and(|t| *t <= now) {
            self.announces.pop_front();
            if self.serving() {
                self.announce();
            }
        }
    }

    /// Reads every datagram queued on the peer-link socket.
    pub fn on_readable(&mut self, now: Time, engine: &mut Engine) {
        let mut buf = [0u8; wire::MAX_BODY + 64];
        loop {
            match self.sock.try_recv_from(&mut buf) {
                Ok((n, from)) => self.on_datagram(now, &buf[..n], from),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    log::debug!("pair: receive: {e}");
                    break;
                }
            }
        }
        self.pump(now, engine);
    }

    /// The heartbeat socket became readable: the peer answers nothing on it, so this
    /// is an error (port unreachable: the peer's process is gone) or stray bytes.
    pub fn on_hb_readable(&mut self, now: Time, engine: &mut Engine) {
        let mut buf = [0u8; 64];
        loop {
            match self.hb.try_recv(&mut buf) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    log::debug!("pair: the peer's port is closed");
                    self.machine.peer_gone(now);
                }
                Err(e) => {
                    log::debug!("pair: heartbeat socket: {e}");
                    break;
                }
            }
        }
        self.pump(now, engine);
    }

    fn on_datagram(&mut self, now: Time, bytes: &[u8], from: SocketAddr) {
        let frame = match wire::decode(&self.key, bytes) {
            Ok(f) => f,
            Err(r) => return self.refused(r, from),
        };
        self.stats.frames_received += 1;
        match frame.body {
            Body::Heartbeat { status, calls } => {
                if let Err(r) = self.guard.accept(&frame) {
                    return self.refused(r, from);
                }
                self.heard(now);
                let serving = status.role == Role::Active || status.handover;
                self.stats.peer_calls = if serving { u64::from(calls) } else { 0 };
                self.machine.handle_frame(now, status);
            }
            Body::Query { nonce } => {
                let answer = Body::Answer { nonce, status: self.machine.status() };
                if let Some(bytes) = self.frame(answer) {
                    let _ = self.sock.try_send_to(&bytes, from);
                }
            }
            Body::Answer { nonce, status } => {
                if let Some(p) = self.probe.as_mut().filter(|p| p.nonce == nonce) {
                    p.answer = Some(status);
                    self.heard(now);
                    self.finish_probe(now);
                }
            }
        }
    }

    fn heard(&mut self, now: Time) {
        let dead = Duration::from_millis(self.cfg.dead_after_ms.into());
        let healed = self.last_heard.is_none_or(|t| now.since(t) >= dead);
        self.last_heard = Some(now);
        if healed && self.serving() {
            // The peer is back (a heal, or it restarted): tell the LAN again who holds
            // the address, in case the peer's last word was an announcement of its own.
            self.schedule_announces(now);
        }
    }

    fn refused(&mut self, r: wire::Refused, from: SocketAddr) {
        *self.stats.refused.entry(r.name()).or_default() += 1;
        log::debug!("pair: frame from {from} refused: {}", r.name());
    }

    fn frame(&mut self, body: Body) -> Option<Vec<u8>> {
        self.seq += 1;
        self.stats.frames_sent += 1;
        wire::encode(&self.key, &Frame { boot: self.boot, seq: self.seq, body })
    }

    fn next_nonce(&mut self) -> u64 {
        // splitmix64: distinct per probe, unpredictable enough with a random seed (the
        // answer is authenticated anyway; the nonce only ties it to its probe).
        self.nonce = self.nonce.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.nonce;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Witness results and replication events.
    pub fn on_event(&mut self, now: Time, ev: PairEvent, engine: &mut Engine) {
        match ev {
            PairEvent::Witness { nonce, ok } => {
                if let Some(p) = self.probe.as_mut().filter(|p| p.nonce == nonce) {
                    p.witness = Some(ok);
                    self.finish_probe(now);
                }
            }
            PairEvent::Subscriber { tx, side, from } => {
                if !self.serving() {
                    return; // dropping `tx` ends the connection: it dials the active
                }
                log::info!("pair: standby {from} subscribed; sending the state");
                let mut sub = Subscriber { tx, side };
                let msg = StreamMsg::Snapshot { term: self.machine.term(), snapshot: Box::new(engine.snapshot()) };
                let queued = sub.side.seal(&msg).is_some_and(|bytes| sub.tx.try_send(bytes).is_ok());
                if queued {
                    self.stats.snapshots_sent += 1;
                    self.subscriber = Some(sub);
                } else {
                    log::warn!("pair: the snapshot for {from} could not be queued");
                }
            }
            PairEvent::Stream(msg) => match msg {
                StreamMsg::Snapshot { snapshot, .. } => {
                    if !self.serving() && engine.follow(*snapshot) {
                        self.stats.snapshots_applied += 1;
                    }
                }
                StreamMsg::Delta(d) => {
                    if !self.serving() {
                        engine.apply_delta(d);
                        self.stats.deltas_applied += 1;
                    }
                }
                StreamMsg::Subscribe { .. } => {}
            },
            PairEvent::StreamEnded { why, closed } => {
                log::info!("pair: replication stream ended: {why}");
                if closed && self.machine.peer().is_some_and(|(_, p)| p.role == Role::Active) {
                    // The kernel closes a dead process's connections at once: probe now
                    // rather than wait out the silence (the probe still decides).
                    self.machine.peer_gone(now);
                }
                self.follower = None;
                self.follow_after = now + Duration::from_millis(self.cfg.heartbeat_ms.into());
            }
        }
        self.pump(now, engine);
    }

    /// A replicated fact of the active engine, for the standby.
    pub fn replicate(&mut self, delta: Delta) {
        let Some(sub) = self.subscriber.as_mut() else { return };
        let Some(bytes) = sub.side.seal(&StreamMsg::Delta(delta)) else { return };
        if sub.tx.try_send(bytes).is_err() {
            log::warn!("pair: the standby does not keep up (or left); it gets a new snapshot when it comes back");
            self.stats.standby_overflows += 1;
            self.subscriber = None;
        } else {
            self.stats.deltas_sent += 1;
        }
    }

    /// An operator's switchover: whether the active handed over.
    pub fn switchover(&mut self, now: Time, engine: &mut Engine) -> bool {
        let ok = self.machine.switchover(now);
        self.pump(now, engine);
        ok
    }

    /// The text of `ctibox peer status`.
    pub fn status_text(&self, now: Time) -> String {
        let st = self.machine.status();
        let peer = match self.machine.peer() {
            Some((at, p)) => format!("{} (term {}, unit {}, priority {}), heard {} ms ago", p.role.name(), p.term, p.unit, p.priority, now.since(at).as_millis()),
            None => "not heard".into(),
        };
        let sa = self.cfg.service_address;
        let holds = pairnet::has_address(&self.cfg.interface, sa.addr).unwrap_or(false);
        format!(
            "role: {}\nterm: {}\nunit: {}\npriority: {}\npeer: {} at {} (LAN {})\npeer status: {peer}\nservice address: {}/{} on {} ({})\nwitness: {}\nreplication: {}\nstats: {}\n",
            st.role.name(),
            st.term,
            st.unit,
            st.priority,
            if self.last_heard.is_some() { "heard" } else { "silent" },
            self.cfg.address,
            self.cfg.peer_lan_address,
            sa.addr,
            sa.prefix,
            self.cfg.interface,
            if holds { "held here" } else { "not held here" },
            self.cfg.witness,
            if self.subscriber.is_some() {
                "sending to the standby"
            } else if self.follower.is_some() {
                "following the active"
            } else {
                "none"
            },
            serde_json::to_string(&self.stats_now()).unwrap_or_default()
        )
    }

    /// The counters, with the replication handshakes refused so far.
    pub fn stats_now(&self) -> PairStats {
        let mut s = self.stats.clone();
        s.handshakes_refused = self.bans.refused();
        s
    }

    fn wants_follower(&self) -> bool {
        self.follower.is_none()
            && matches!(self.machine.role(), Role::Standby | Role::Starting | Role::SteppingDown)
            && self.machine.peer().is_some_and(|(_, p)| p.role == Role::Active)
    }

    /// Acts on what the role machine decided; keeps the replication client running.
    pub fn pump(&mut self, now: Time, engine: &mut Engine) {
        while let Some(out) = self.machine.poll_output() {
            match out {
                PairOut::Send(status) => {
                    let calls = u32::try_from(engine.call_count()).unwrap_or(u32::MAX);
                    if let Some(bytes) = self.frame(Body::Heartbeat { status, calls }) {
                        if let Err(e) = self.hb.try_send(&bytes) {
                            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                                self.machine.peer_gone(now);
                            }
                        }
                    }
                }
                PairOut::Probe { until } => self.start_probe(now, until),
                PairOut::Role { role, term } => self.role_changed(now, role, term, engine),
            }
        }
        let view = self.view();
        if engine.pair() != Some(&view) {
            engine.set_pair(view);
        }
        if self.wants_follower() && now >= self.follow_after {
            let addr = self.cfg.address;
            let (key, unit, inbox) = (self.key, self.machine.status().unit, self.inbox.clone());
            self.follower = Some(tokio::task::spawn_local(follow(addr, key, unit, inbox)));
        }
        if self.serving() {
            if let Some(f) = self.follower.take() {
                f.abort();
            }
        }
    }

    fn view(&self) -> PairView {
        let active = self
            .machine
            .peer()
            .filter(|(_, p)| p.role == Role::Active && self.machine.role() != Role::Active)
            .map(|_| self.cfg.peer_lan_address.to_string());
        PairView { role: self.machine.role().name(), term: self.machine.term(), active }
    }

    fn start_probe(&mut self, now: Time, until: Time) {
        self.stats.probes += 1;
        let nonce = self.next_nonce();
        let wait = until.since(now).max(Duration::from_millis(5));
        let gap = wait / u32::from(PROBE_QUERIES);
        let requeries = PROBE_QUERIES - 1;
        self.probe = Some(Probe { nonce, witness: None, answer: None, answer_by: until, requery_at: now + gap, requeries });
        self.send_query(nonce);
        let (witness, inbox) = (self.cfg.witness, self.inbox.clone());
        tokio::task::spawn_local(async move {
            let ok = pairnet::ping(witness, wait).await;
            let _ = inbox.send(Event::Pair(PairEvent::Witness { nonce, ok })).await;
        });
    }

    /// Asks the peer over the LAN for its status, for the probe `nonce`.
    fn send_query(&mut self, nonce: u64) {
        if let Some(bytes) = self.frame(Body::Query { nonce }) {
            let to = SocketAddr::new(self.cfg.peer_lan_address, self.cfg.address.port());
            let _ = self.sock.try_send_to(&bytes, to);
        }
    }

    /// Sends the probe's query again once its time has come, in case a query or its
    /// answer was lost: spread over the wait, each a new frame (the peer refuses the
    /// same bytes twice as a replay).
    fn requery(&mut self, now: Time) {
        let Some(p) = self.probe.as_mut().filter(|p| p.requeries > 0 && p.answer.is_none() && now >= p.requery_at) else {
            return;
        };
        p.requeries -= 1;
        let gap = p.answer_by.since(now) / u32::from(p.requeries + 1);
        p.requery_at = now + gap.max(Duration::from_millis(1));
        let nonce = p.nonce;
        self.send_query(nonce);
    }

    /// Hands a probe's result to the role machine once it is known.
    fn finish_probe(&mut self, now: Time) {
        let Some(p) = &self.probe else { return };
        let Some(witness) = p.witness else { return };
        if p.answer.is_none() && witness && now < p.answer_by {
            return; // the peer may still answer
        }
        let answer = p.answer;
        self.probe = None;
        if !witness && self.serving() {
            // Cut off from the LAN: announcing the address when the LAN comes back
            // would pull the phones away from the unit that took over meanwhile.
            self.announces.clear();
        }
        log::debug!("pair: probe: witness {}, peer {}", if witness { "answers" } else { "silent" }, answer.map_or("silent", |s| s.role.name()));
        self.machine.probed(now, witness, answer);
    }

    fn role_changed(&mut self, now: Time, role: Role, term: u64, engine: &mut Engine) {
        // Why, as far as the last word from the peer tells: an operator reading the log
        // after a takeover wants the silence it followed.
        let peer = match self.machine.peer() {
            Some((at, p)) => format!(": the peer last heard {} ms ago, {} (term {})", now.since(at).as_millis(), p.role.name(), p.term),
            None => String::from(": the peer not heard yet"),
        };
        log::warn!("pair: now {} (term {term}){peer}", role.name());
        self.persist.push(TERM_FILE, self.machine.highest_term().to_le_bytes().to_vec());
        let sa = self.cfg.service_address;
        if role == Role::Active {
            self.stats.takeovers += 1;
            if !engine.serving() {
                let lost = self.stats.peer_calls.saturating_sub(u64::try_from(engine.call_count()).unwrap_or(u64::MAX));
                if lost > 0 {
                    log::warn!("pair: the peer had about {lost} call(s) in setup, which this unit cannot carry on");
                }
                self.stats.calls_lost_in_setup += lost;
                self.stats.peer_calls = 0;
            }
            engine.serve();
            if let Err(e) = pairnet::add_address(&self.cfg.interface, sa.addr, sa.prefix) {
                self.stats.address_errors += 1;
                log::error!("pair: cannot add {}/{} to {}: {e}", sa.addr, sa.prefix, self.cfg.interface);
            }
            self.schedule_announces(now);
        } else {
            if engine.serving() && engine.pair().is_some() {
                self.stats.step_downs += 1;
                engine.stand_by();
            }
            self.subscriber = None;
            self.announces.clear();
            match pairnet::remove_address(&self.cfg.interface, sa.addr, sa.prefix) {
                Ok(_) => {}
                Err(e) => {
                    self.stats.address_errors += 1;
                    log::error!("pair: cannot remove {}/{} from {}: {e}", sa.addr, sa.prefix, self.cfg.interface);
                }
            }
        }
        let view = self.view();
        engine.set_pair(view);
    }

    fn schedule_announces(&mut self, now: Time) {
        self.announces = ANNOUNCE_AT_MS.iter().map(|ms| now + Duration::from_millis(*ms)).collect();
    }

    fn announce(&mut self) {
        let sa = self.cfg.service_address;
        match pairnet::announce(&self.cfg.interface, sa.addr) {
            Ok(()) => self.stats.announcements += 1,
            Err(e) => {
                self.stats.address_errors += 1;
                log::warn!("pair: cannot announce {} on {}: {e}", sa.addr, self.cfg.interface);
            }
        }
    }
}

/// Failed replication handshakes by source: after `HANDSHAKE_FAILS` in a row, a
/// source is refused for `HANDSHAKE_BAN` before anything is read from it.
#[derive(Clone, Default)]
struct Bans(Rc<std::cell::RefCell<BanTable>>);

/// Failures and when the last one was, by source; and how many were refused.
type BanTable = (HashMap<IpAddr, (u32, std::time::Instant)>, u64);

impl Bans {
    fn failed(&self, ip: IpAddr) {
        let mut b = self.0.borrow_mut();
        let now = std::time::Instant::now();
        b.0.retain(|_, (_, at)| now.duration_since(*at) <= HANDSHAKE_BAN);
        if b.0.len() >= 4096 && !b.0.contains_key(&ip) {
            return; // bounded: a flood of sources is refused by the handshake itself
        }
        let e = b.0.entry(ip).or_insert((0, now));
        e.0 = e.0.saturating_add(1);
        e.1 = now;
    }
    fn succeeded(&self, ip: IpAddr) {
        self.0.borrow_mut().0.remove(&ip);
    }
    fn banned(&self, ip: IpAddr) -> bool {
        let b = self.0.borrow();
        b.0.get(&ip).is_some_and(|(n, at)| *n >= HANDSHAKE_FAILS && at.elapsed() <= HANDSHAKE_BAN)
    }
    fn refused(&self) -> u64 {
        self.0.borrow().1
    }
    fn count_refused(&self) {
        self.0.borrow_mut().1 += 1;
    }
}

fn random16() -> Option<[u8; 16]> {
    use std::io::Read;
    let mut n = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut n)).ok()?;
    Some(n)
}

/// On the active: accepts standbys' replication connections.
async fn replication_listener(l: TcpListener, key: [u8; 32], inbox: mpsc::Sender<Event>, bans: Bans) {
    loop {
        match l.accept().await {
            Ok((s, from)) => {
                if bans.banned(from.ip()) {
                    bans.count_refused();
                    continue; // dropped: closed at once
                }
                tokio::task::spawn_local(serve_standby(s, from, key, inbox.clone(), bans.clone()));
            }
            Err(e) => {
                log::warn!("pair: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn read_frame(s: &mut (impl AsyncReadExt + Unpin), side: &mut StreamSide) -> Result<StreamMsg, String> {
    read_frame_or_end(s, side).await.map_err(|(why, _)| why)
}

/// As `read_frame`, and whether the stream was closed or reset before a frame began.
async fn read_frame_or_end(s: &mut (impl AsyncReadExt + Unpin), side: &mut StreamSide) -> Result<StreamMsg, (String, bool)> {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, UnexpectedEof};
    let mut head = [0u8; wire::STREAM_HEAD];
    s.read_exact(&mut head).await.map_err(|e| (e.to_string(), matches!(e.kind(), UnexpectedEof | ConnectionReset | ConnectionAborted)))?;
    read_rest(s, side, &head).await.map_err(|why| (why, false))
}

async fn read_rest(s: &mut (impl AsyncReadExt + Unpin), side: &mut StreamSide, head: &[u8; wire::STREAM_HEAD]) -> Result<StreamMsg, String> {
    let n = side.rest_len(head).map_err(|r| format!("frame refused: {}", r.name()))?;
    let mut rest = vec![0u8; n];
    s.read_exact(&mut rest).await.map_err(|e| e.to_string())?;
    side.open(head, &rest).map_err(|r| format!("frame refused: {}", r.name()))
}

/// One standby's connection (on the active): challenge, subscription, then frames.
async fn serve_standby(mut s: TcpStream, from: SocketAddr, key: [u8; 32], inbox: mpsc::Sender<Event>, bans: Bans) {
    let _ = s.set_nodelay(true);
    let Some(nonce) = random16() else { return };
    let challenge = wire::challenge(nonce);
    let Some(k) = wire::stream_key(&key, &challenge) else { return };
    let hello = async {
        s.write_all(&challenge).await.map_err(|e| e.to_string())?;
        let mut side = StreamSide::new(k, Dir::ToServer);
        read_frame(&mut s, &mut side).await
    };
    match tokio::time::timeout(HANDSHAKE, hello).await {
        Ok(Ok(StreamMsg::Subscribe { .. })) => {}
        other => {
            let why = match other {
                Ok(Err(e)) => e,
                Ok(Ok(_)) => "not a subscription".into(),
                Err(_) => "timed out".into(),
            };
            log::warn!("pair: replication handshake from {from} failed: {why}");
            bans.failed(from.ip());
            bans.count_refused();
            return;
        }
    }
    bans.succeeded(from.ip());
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(REPL_QUEUE);
    let side = StreamSide::new(k, Dir::ToStandby);
    if inbox.send(Event::Pair(PairEvent::Subscriber { tx, side, from })).await.is_err() {
        return;
    }
    let (mut r, mut w) = s.into_split();
    let mut sink = [0u8; 64];
    loop {
        tokio::select! {
            item = rx.recv() => match item {
                Some(bytes) => if w.write_all(&bytes).await.is_err() { return },
                None => return, // the active let go of this standby
            },
            n = r.read(&mut sink) => match n {
                Ok(0) | Err(_) => return,
                Ok(_) => {} // a standby sends nothing after subscribing
            },
        }
    }
}

/// On a standby: dials the active and feeds its stream to the engine loop.
async fn follow(addr: SocketAddr, key: [u8; 32], unit: u64, inbox: mpsc::Sender<Event>) {
    let (why, closed) = match follow_inner(addr, key, unit, &inbox).await {
        Ok(()) => ("closed".to_string(), false),
        Err(e) => e,
    };
    let _ = inbox.send(Event::Pair(PairEvent::StreamEnded { why, closed })).await;
}

async fn follow_inner(addr: SocketAddr, key: [u8; 32], unit: u64, inbox: &mpsc::Sender<Event>) -> Result<(), (String, bool)> {
    let (mut s, mut rx) = follow_handshake(addr, key, unit).await.map_err(|why| (why, false))?;
    loop {
        let msg = read_frame_or_end(&mut s, &mut rx).await?;
        if inbox.send(Event::Pair(PairEvent::Stream(msg))).await.is_err() {
            return Ok(());
        }
    }
}

/// Dials the active, answers its challenge and subscribes: the stream and its side.
async fn follow_handshake(addr: SocketAddr, key: [u8; 32], unit: u64) -> Result<(TcpStream, StreamSide), String> {
    let mut s = tokio::time::timeout(HANDSHAKE, TcpStream::connect(addr)).await.map_err(|_| "connect timed out".to_string())?.map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    let mut c = [0u8; wire::CHALLENGE_LEN];
    tokio::time::timeout(HANDSHAKE, s.read_exact(&mut c)).await.map_err(|_| "no challenge".to_string())?.map_err(|e| e.to_string())?;
    let k = wire::stream_key(&key, &c).ok_or("not a replication challenge")?;
    let mut tx = StreamSide::new(k, Dir::ToServer);
    let sub = tx.seal(&StreamMsg::Subscribe { unit }).ok_or("cannot seal")?;
    s.write_all(&sub).await.map_err(|e| e.to_string())?;
    let mut rx = StreamSide::new(k, Dir::ToStandby);
    rx.allow(wire::MAX_STREAM_BODY);
    Ok((s, rx))
}
