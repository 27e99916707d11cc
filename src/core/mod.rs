//! The pure engine: owns all call, registration, CTI and failover state. It must not
//! touch a clock, socket, file, thread or global; see the crate docs for the contract.

pub mod analog;
pub mod api;
pub mod api_session;
pub mod call;
pub mod cti;
pub mod digest;
pub mod endpoint;
pub mod media;
pub mod pair;
pub mod registrar;
pub mod rng;
pub mod sdp;
pub mod sip;
pub mod snapshot;
pub mod throttle;
pub mod time;
pub mod timer;

use crate::config::Config;
use rng::EngineRng;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
pub use time::Time;
use timer::Timers;

/// A stream connection (SIP over TCP, CTI, HTTP), numbered by the shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConnId(pub u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Transport {
    Udp,
    Tcp,
}

/// How a CTI application is connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CtiTransport {
    Tcp,
    WebSocket,
}

/// A parsed HTTP request, as much of it as the engine needs.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

/// What `tend_map` knows of a hash table: how many entries it had room for when it was
/// last (re)allocated.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Room(usize);

/// Looks after a hash table that churns (as many removals as inserts at a steady
/// size, as the transaction tables do under load). Two things, each cheap when there
/// is nothing to do:
/// - it gives the memory back once the table holds four times what it needs (after a
///   burst of calls; a table otherwise keeps its largest size);
/// - it keeps the table at most half full, growing it early when it passes half. A
///   removal leaves a tombstone in a crowded table, and when the tombstones have used
///   up the room, a table more than half full doubles (a table at most half full is
///   rehashed in place instead): under a steady load the table would otherwise double
///   minutes into the load, at some random moment, for no more entries, and the RSS
///   would step up then. Grown early, it reaches its size while the load ramps up and
///   then holds it.
pub(crate) fn tend_map<K: std::hash::Hash + Eq, V, S: std::hash::BuildHasher>(
    m: &mut std::collections::HashMap<K, V, S>,
    room: &mut Room,
) {
    // `capacity()` is the entries it holds plus the room left, which tombstones eat
    // into: its highest value since the last reallocation is the table's size.
    room.0 = room.0.max(m.capacity());
    let len = m.len();
    if room.0 > 64 && room.0 > len.saturating_mul(4) {
        m.shrink_to(len.saturating_mul(2));
        room.0 = m.capacity();
    } else if len > room.0 / 2 {
        m.reserve((room.0 + 1).saturating_sub(len));
        room.0 = m.capacity();
    }
}

/// `tend_map` for a FIFO queue (no tombstones; it is only kept from doubling late).
pub(crate) fn tend_queue<T>(q: &mut std::collections::VecDeque<T>) {
    let (cap, len) = (q.capacity(), q.len());
    if cap > 64 && cap > len.saturating_mul(4) {
        q.shrink_to(len.saturating_mul(2));
    } else if len > cap / 4 * 3 {
        q.reserve(cap);
    }
}

/// Everything the world can tell the engine.
#[derive(Debug)]
pub enum Input {
    /// `poll_timeout()`'s deadline passed (or the shell's idle tick).
    Timeout,
    /// SIP bytes: one datagram, or one framed message from a TCP connection.
    Sip { transport: Transport, conn: Option<ConnId>, from: SocketAddr, local: SocketAddr, bytes: Vec<u8> },
    /// A CTI application connected.
    CtiOpened { conn: ConnId, peer: SocketAddr, transport: CtiTransport },
    /// One CTI message (a line over TCP, a text frame over WebSocket).
    CtiMessage { conn: ConnId, text: String },
    /// An HTTP request on the status/web port.
    Http { conn: ConnId, request: HttpRequest },
    /// A stream connection (any kind) closed.
    ConnClosed { conn: ConnId },
    /// A new, already validated configuration (SIGHUP).
    Reload(Arc<Config>),
    /// Something the media path noticed (a digit, the end of a prompt, lost RTP).
    Media(MediaEvent),
    /// The verdict on an `Output::VerifySecret` job.
    SecretVerified { ticket: u64, verdict: Verdict },
    /// A connection's task panicked; the shell closed the connection (`conn` is
    /// `None` for an HTTP request that had no engine connection yet).
    ConnPanicked { conn: Option<ConnId> },
    /// The shell is stopping cleanly: save what is held back (registration refreshes
    /// not yet written) before it flushes the persist queue.
    Stop,
    /// The shell's measure of the engine loop: `busy` while the loop had no idle
    /// moment (work waiting) over its last measurement window. While busy, new calls
    /// are refused 503 with Retry-After before any work is spent on them, so that the
    /// requests of calls in progress (ACK, BYE, CANCEL) are still served instead of
    /// being lost with everything else in an overflowing socket buffer.
    Load { busy: bool },
    /// An analog port's GPIO edge or detected digit (`analog::engine`).
    Analog(analog::engine::AnalogInput),
}

/// A secret check the engine hands to the shell: Argon2 is slow on purpose (tens of
/// milliseconds, megabytes of memory), so it never runs on the engine loop. The shell
/// verifies on its own bounded worker and answers with `Input::SecretVerified`.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyJob {
    pub ticket: u64,
    /// The Argon2id PHC string from the configuration (its cost was bounded at load).
    pub phc: String,
    pub presented: String,
}

impl std::fmt::Debug for VerifyJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyJob {{ ticket: {}, <redacted> }}", self.ticket)
    }
}

/// The outcome of a `VerifyJob`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Match,
    Mismatch,
    /// The verifier had no room (a fixed number of checks in flight): not a failure
    /// of the secret; the application may retry.
    Busy,
}

/// A media stream the engine asked for, numbered by the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StreamId(pub u64);

/// What a stream sends.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MediaSource {
    /// The configured music-on-hold file (`[media] moh_file`), or the built-in melody.
    MusicOnHold,
    /// A call-progress tone of the system's country.
    Tone(media::tone::ToneKind),
    /// An 8 kHz mono WAV prompt, played once (then `MediaEvent::PlayoutDone`).
    Prompt(std::path::PathBuf),
    Silence,
}

/// Commands to the media path, which runs beside the engine (audio never passes
/// through it). The engine allocates local RTP ports from `[media]`'s range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaCmd {
    /// Open an RTP stream on `local_port` (RTCP on +1) sending `source` to `remote`
    /// in `codec` (G.711, 20 ms packets), symmetric RTP: once RTP arrives from
    /// elsewhere, send there instead.
    Play { stream: StreamId, local_port: u16, remote: SocketAddr, codec: crate::config::Codec, source: MediaSource },
    /// Report DTMF digits received on the stream: RFC 4733 events with payload type
    /// `dtmf_pt` when given, and in-band tones.
    CollectDigits { stream: StreamId, dtmf_pt: Option<u8> },
    /// Stop sending and close the stream's sockets.
    Stop { stream: StreamId },
    /// Join two open streams: RTP and RTCP arriving on one are forwarded unchanged out
    /// of the other toward its (symmetric) remote, so the box relays the media of a
    /// call between two legs (for far ends that cannot reach each other). Both stop
    /// sending their own source while joined; digit collection goes on. Stopping
    /// either ends the relay and the other resumes its source. Added after Play /
    /// CollectDigits / Stop because relayed calls are the media path's capacity
    /// measure (docs/BENCHMARKS.md) and a B2BUA needs it for NAT-bound phones.
    Relay { a: StreamId, b: StreamId },
    /// Send DTMF `digits` (0-9, *, #, A-D) as RFC 4733 telephone-events with payload
    /// type `dtmf_pt`, 100 ms each with 60 ms between them, in place of the stream's
    /// audio while they play.
    SendDigits { stream: StreamId, digits: String, dtmf_pt: u8 },
}

/// Events from the media path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaEvent {
    Digit { stream: StreamId, digit: char },
    /// A `Prompt` finished playing.
    PlayoutDone { stream: StreamId },
    /// No RTP received for the RTP timeout (30 s) on a stream that had some.
    RtpTimeout { stream: StreamId },
    /// The stream could not be set up (port in use, bad file); it is closed.
    Failed { stream: StreamId, reason: String },
}

/// What the engine asks the world to do.
#[derive(Debug, PartialEq)]
pub enum Output {
    /// Send SIP bytes: on `conn` when given (TCP), else as a datagram to `to`.
    Transmit { transport: Transport, conn: Option<ConnId>, to: SocketAddr, bytes: Vec<u8> },
    /// Send one CTI message to an application.
    CtiSend { conn: ConnId, text: String },
    /// Answer an HTTP request.
    HttpResponse { conn: ConnId, status: u16, content_type: &'static str, body: Vec<u8> },
    /// Close a stream connection.
    Close { conn: ConnId },
    /// Save this state blob atomically under `name` in the data directory.
    Persist { name: &'static str, bytes: Vec<u8> },
    /// A command for the media path.
    Media(MediaCmd),
    /// Check a secret off the engine loop; answer with `Input::SecretVerified`.
    VerifySecret(VerifyJob),
    /// A replicated fact changed, for the standby (src/core/snapshot.rs).
    Replicate(snapshot::Delta),
    /// Drive an analog port: GPIO levels, what it plays, caller ID, its audio bridge.
    Analog(analog::engine::AnalogOutput),
}

/// What the engine knows of its pair, from the shell's role machine (`core::pair`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PairView {
    /// `pair::Role::name()`: "starting", "standby", "active", "stepping down".
    pub role: &'static str,
    pub term: u64,
    /// The unit that serves, when it is the peer: its LAN address.
    pub active: Option<String>,
}

/// Inputs arriving before the engine runs: state restored from the data directory.
#[derive(Default)]
pub struct Restored {
    pub registrations: Option<endpoint::SavedRegistrations>,
}

/// Counters an operator can read on /status.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Stats {
    pub cti_messages: u64,
    pub http_requests: u64,
    pub reloads: u64,
    /// Connection tasks that panicked (each closed its connection).
    pub conn_task_panics: u64,
}

/// Engine timers. Each variant says which state machine owns it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum TimerKey {
    /// Periodic housekeeping (expiry sweeps); every `HOUSEKEEPING`.
    Housekeeping,
}

const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// The engine. See the crate docs for the contract.
pub struct Engine {
    config: Arc<Config>,
    generation: u64,
    started: Time,
    now: Time,
    rng: EngineRng,
    timers: Timers<TimerKey>,
    out: VecDeque<Output>,
    stats: Stats,
    sip: endpoint::SipEndpoint,
    api: api_session::ApiSessions,
    cti: cti::server::CtiSessions,
    /// Fingerprints of the established calls last replicated, by call id.
    replicated: std::collections::HashMap<u64, u64>,
    /// In a pair: this unit's role (None: no `[peer]`, the box serves alone).
    pair: Option<PairView>,
    /// The shell's peer-link counters, for /status (`pair_stats`).
    pair_stats: serde_json::Value,
    /// `snapshot::dial_plan_digest` of the configuration in force (in a pair).
    dial_plan: Option<String>,
    /// On a standby: the active's configuration, as replicated.
    active_config: Option<snapshot::ConfigStamp>,
    /// The board's analog ports, a built-in client of the API.
    analog: analog::engine::AnalogPorts,
}

impl Engine {
    /// A new engine. `unix_at_zero_ms` is the wall clock at engine time zero (used only
    /// to carry expiries across restarts).
    pub fn new(config: Arc<Config>, mut rng: EngineRng, now: Time, unix_at_zero_ms: u64, restored: Restored) -> Self {
        let mut timers = Timers::default();
        timers.arm(TimerKey::Housekeeping, now + HOUSEKEEPING);
        let mut sip = endpoint::SipEndpoint::new(&config, &mut rng, unix_at_zero_ms);
        if let Some(r) = restored.registrations {
            sip.restore(r, now);
        }
        let cti = cti::server::CtiSessions::new(&config);
        let api = api_session::ApiSessions::default();
        let dial_plan = snapshot::dial_plan_digest(&config);
        let mut e = Engine {
            dial_plan,
            active_config: None,
            config,
            generation: 1,
            started: now,
            now,
            rng,
            timers,
            out: VecDeque::new(),
            stats: Stats::default(),
            sip,
            api,
            cti,
            replicated: Default::default(),
            pair: None,
            pair_stats: serde_json::Value::Null,
            analog: Default::default(),
        };
        e.analog_configure();
        e
    }

    /// The shell's peer-link counters, shown on /status as they are.
    pub fn set_pair_stats(&mut self, stats: serde_json::Value) {
        self.pair_stats = stats;
    }

    /// Whether this engine serves (it is not the standby of a pair).
    /// Calls held now (on a standby: the established calls replicated to it).
    pub fn call_count(&self) -> usize {
        self.sip.b2bua.calls()
    }

    /// Calls not yet established: a handover to the peer would lose them.
    pub fn calls_in_setup(&self) -> usize {
        self.sip.b2bua.calls_in_setup()
    }

    pub fn serving(&self) -> bool {
        self.pair.as_ref().is_none_or(|p| p.role == "active")
    }

    /// The pair role the shell's role machine decided (see `follow`, `serve`,
    /// `stand_by` for what a change of role does to the state).
    pub fn set_pair(&mut self, view: PairView) {
        self.pair = Some(view);
    }

    pub fn pair(&self) -> Option<&PairView> {
        self.pair.as_ref()
    }

    /// The SIP side, for inspection (tests, status).
    pub fn sip(&self) -> &endpoint::SipEndpoint {
        &self.sip
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }
    pub fn generation(&self) -> u64 {
        self.generation
    }
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    pub fn rng(&mut self) -> &mut EngineRng {
        &mut self.rng
    }

    /// Feeds one input. Drain `poll_output` before the next one.
    pub fn handle_input(&mut self, now: Time, input: Input) {
        if now > self.now {
            self.now = now;
        }
        log::trace!("engine: input {input:?}");
        match input {
            Input::Timeout => self.handle_timeouts(),
            Input::Sip { transport, conn, from, local, bytes } => {
                let origin = crate::core::registrar::Origin { source: from, transport, conn, local };
                let cfg = self.config.clone();
                self.sip.handle_message(self.now, &cfg, &mut self.rng, origin, &bytes, &mut self.out);
                self.api_deliver();
            }
            Input::ConnClosed { conn } => self.connection_closed(conn),
            Input::ConnPanicked { conn } => {
                self.stats.conn_task_panics += 1;
                if let Some(conn) = conn {
                    self.connection_closed(conn);
                }
            }
            Input::CtiOpened { conn, peer, .. } => self.handle_cti_opened(conn, peer),
            Input::SecretVerified { ticket, verdict } => self.cti_secret_verified(ticket, verdict),
            Input::CtiMessage { conn, text } => self.handle_cti_message(conn, &text),
            Input::Http { conn, request } => self.handle_http(conn, request),
            Input::Reload(config) => self.handle_reload(config),
            Input::Media(ev) => self.handle_media(ev),
            Input::Stop => self.sip.stopping(self.now, &mut self.out),
            Input::Load { busy } => self.sip.set_busy(busy),
            Input::Analog(a) => self.analog_input(a),
        }
        self.analog_pump();
        self.replicate_calls();
    }

    /// A stream connection is gone: its SIP flows and its CTI session (a failure: its
    /// offered calls follow Call Forward On Failure).
    fn connection_closed(&mut self, conn: ConnId) {
        self.sip.connection_closed(conn);
        self.cti_close_session(conn, true);
    }

    /// The next thing to do, until `None`.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When to feed `Input::Timeout` next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        [self.timers.next(), self.sip.next_timeout(), self.cti.next_timeout(), self.analog.next_timeout()].into_iter().flatten().min()
    }

    fn handle_timeouts(&mut self) {
        while let Some(key) = self.timers.pop_expired(self.now) {
            match key {
                TimerKey::Housekeeping => {
                    self.sip.sweep(self.now);
                    let cfg = self.config.clone();
                    // A standby's calls are the active's: it ends none of them itself.
                    if self.serving() {
                        self.sip.sweep_calls(self.now, &cfg, &mut self.rng, &mut self.out);
                    }
                    self.cti.sweep(self.now);
                    self.timers.arm(TimerKey::Housekeeping, self.now + HOUSEKEEPING);
                }
            }
        }
        let cfg = self.config.clone();
        self.sip.handle_timeout(self.now, &cfg, &mut self.rng, &mut self.out);
        self.cti_timeouts();
        self.api_deliver();
        if self.analog.next_timeout().is_some_and(|t| t <= self.now) {
            self.analog_timeouts();
        }
    }

    /// Media events go to the call that owns the stream (src/core/call/box_media.rs).
    fn handle_media(&mut self, ev: MediaEvent) {
        log::debug!("media: {ev:?}");
        let cfg = self.config.clone();
        self.sip.media_event(self.now, &cfg, &mut self.rng, &mut self.out, ev);
        self.api_deliver();
    }

    fn handle_reload(&mut self, config: Arc<Config>) {
        self.generation += 1;
        self.stats.reloads += 1;
        log::info!("config: generation {} applied from {}", self.generation, config.source);
        self.sip.reconfigure(&config);
        self.cti.reconfigure(&config);
        self.dial_plan = snapshot::dial_plan_digest(&config);
        self.config = config;
        self.analog_configure();
        if self.config.peer.is_some() {
            self.out.push_back(Output::Replicate(snapshot::Delta::Config(self.config_stamp())));
        }
    }

    // ---- API front ends ----

    /// Events were queued for `client`: its front end takes them (the CTI server sends
    /// them at once; an in-process client polls them with `api_poll_event`).
    fn api_wake(&mut self, client: api::ClientId) {
        self.cti_flush(client);
    }

    /// The engine closed `client` (see `core/api_session.rs`): its front end lets go.
    fn api_closed(&mut self, client: api::ClientId) {
        self.cti_client_closed(client);
    }

    // ---- CTI wire: hello, parsing, replies (src/core/cti/wire.rs) ----

    /// A CTI application connected: greet it.
    fn handle_cti_opened(&mut self, conn: ConnId, peer: SocketAddr) {
        self.cti_opened(conn, peer);
    }

    /// One CTI message: a readable request goes to `handle_cti`; anything else is
    /// answered here with the error naming the problem.
    fn handle_cti_message(&mut self, conn: ConnId, text: &str) {
        self.stats.cti_messages += 1;
        match cti::parse_request(text) {
            Ok((id, request)) => self.handle_cti(conn, id, request),
            Err(e) => {
                self.cti_alive(conn);
                log::debug!("cti: conn {}: {e}", conn.0);
                self.cti_reply(conn, cti::Reply::from(e));
            }
        }
    }

    fn cti_reply(&mut self, conn: ConnId, reply: cti::Reply) {
        self.out.push_back(Output::CtiSend { conn, text: reply.to_json() });
    }

    // ---- end CTI wire ----

    fn handle_http(&mut self, conn: ConnId, request: HttpRequest) {
        self.stats.http_requests += 1;
        let (status, body) = match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/status") => (200, self.status_json()),
            ("GET", _) => (404, b"{\"error\":\"not found\"}".to_vec()),
            _ => (405, b"{\"error\":\"method not allowed\"}".to_vec()),
        };
        self.out.push_back(Output::HttpResponse { conn, status, content_type: "application/json", body });
    }

    fn status_json(&self) -> Vec<u8> {
        let (txn_counts, txn_stats) = self.sip.transaction_status();
        let v = serde_json::json!({
            "name": self.config.system.name,
            "version": env!("CARGO_PKG_VERSION"),
            "board": self.config.board.name,
            "config_source": self.config.source,
            "config_generation": self.generation,
            "uptime_ms": self.now.since(self.started).as_millis() as u64,
            "stats": self.stats,
            "sip": self.sip.stats,
            "registrations": self.sip.registrar.len(),
            "transactions": self.sip.transactions(),
            "transaction_layer": {
                "live": txn_counts.live,
                "completed": txn_counts.completed,
                "stats": txn_stats,
            },
            "calls": self.sip.b2bua.calls(),
            "calls_completed": self.sip.b2bua.completed,
            "call_media": self.sip.b2bua.stats,
            "cti_apps": self.cti.apps(),
            "cti": self.cti.stats,
            "pair": self.pair,
            "pair_stats": self.pair_stats,
            "analog_ports": self.analog_lines().into_iter().map(|(port, device, line, off_hook)| serde_json::json!({
                "port": port, "device": device, "line": line, "hook": if off_hook { "off" } else { "on" },
            })).collect::<Vec<_>>(),
            "dial_plan": self.dial_plan,
            "active_config": self.active_config,
        });
        serde_json::to_vec(&v).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        Engine::new(Arc::new(crate::config::embedded_default()), EngineRng::seed_from_u64(1), Time::ZERO, 0, Restored::default())
    }

    /// A table under a steady churn (what the transaction tables see at a steady call
    /// rate), tended once a "second": after the ramp-up its size never changes, however
    /// long the churn goes on, and once the load is gone it shrinks.
    #[test]
    fn a_tended_table_under_steady_churn_keeps_one_size_and_shrinks_after() {
        let mut m: std::collections::HashMap<u64, [u64; 2]> = std::collections::HashMap::new();
        let mut room = Room::default();
        let (live, per_tick) = (120_000u64, 4_000u64);
        let mut next = 0u64;
        let mut sizes = Vec::new();
        for tick in 0..400u64 {
            for _ in 0..per_tick {
                m.insert(next.wrapping_mul(0x9E37_79B9_7F4A_7C15), [next, tick]);
                if next >= live {
                    let old = next - live;
                    assert!(m.remove(&old.wrapping_mul(0x9E37_79B9_7F4A_7C15)).is_some());
                }
                next += 1;
            }
            tend_map(&mut m, &mut room);
            if tick > live / per_tick {
                sizes.push(m.capacity());
            }
            assert!(m.len() as u64 <= live + per_tick);
        }
        // `capacity()` dips as tombstones build up and comes back when the table is
        // rehashed in place; what must not happen is a reallocation to a bigger one.
        let first = sizes[0];
        assert!(sizes.iter().all(|&c| c <= first), "grew under a steady churn: {first} then {:?}", sizes.iter().max());
        assert!(first >= 2 * live as usize, "at most half full: room for {first} with {live} in it");
        m.retain(|k, _| k % 64 == 0);
        tend_map(&mut m, &mut room);
        assert!(m.capacity() <= 4 * m.len().max(16), "shrunk after the load: {} for {}", m.capacity(), m.len());
    }

    #[test]
    fn housekeeping_timer_rearms_on_virtual_clock() {
        let mut e = engine();
        assert_eq!(e.poll_timeout(), Some(Time::from_millis(1000)));
        e.handle_input(Time::from_millis(1000), Input::Timeout);
        assert_eq!(e.poll_timeout(), Some(Time::from_millis(2000)));
        assert!(e.poll_output().is_none());
    }

    #[test]
    fn status_reports_generation_after_reload() {
        let mut e = engine();
        e.handle_input(Time::ZERO, Input::Reload(Arc::new(crate::config::embedded_default())));
        e.handle_input(Time::from_millis(5), Input::Http {
            conn: ConnId(1),
            request: HttpRequest { method: "GET".into(), path: "/status".into(), body: vec![] },
        });
        match e.poll_output() {
            Some(Output::HttpResponse { status: 200, body, .. }) => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(v["config_generation"], 2);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
