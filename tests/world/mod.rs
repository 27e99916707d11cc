//! The World: the real engine, simulated SIP phones and CTI applications, and a network
//! between them, all on one virtual clock. Nothing touches a socket or the real clock;
//! every run with the same seed is the same run.
//!
//! - `Phone` is a small RFC 3261 user agent over the project's own SIP codec: it
//!   registers with digest, places and answers calls, sends ACK, BYE, CANCEL and
//!   re-INVITE, and runs client and server transactions over UDP (retransmissions,
//!   2xx retransmission until the ACK).
//! - `App` is a CTI application: JSON lines in and out.
//! - The network delivers each message after its link's latency, and may lose,
//!   duplicate or delay (reorder) datagrams from a seeded RNG. CTI is a stream: never
//!   lost or reordered.
//! - `step()` runs the next event in time order (a delivery, a phone's timer, the
//!   engine's `poll_timeout`); `drive()` runs until nothing is in flight and no phone
//!   has a timer; `drive_until(t)` runs every event up to `t`. All of them panic with
//!   the last events when a bound is passed (a livelock).
//! - The media path is not simulated: the engine's commands to it are recorded
//!   (`media`), and a test feeds its events (`media_event`) at a virtual time.
//! - Every message is logged with its virtual send time (`log`, `trace`).
#![allow(dead_code)]

use ctibox::config::secrets::AppSecret;
use ctibox::config::{Config, DeviceKind};
use ctibox::core::digest::{self, Algorithm, Credentials};
use ctibox::core::rng::EngineRng;
use ctibox::core::sip::{self, AuthParams, Contact, HeaderName, Message, Method, Request, Response, SipHeaders, Uri};
use ctibox::core::snapshot::{Delta, EngineSnapshot};
use ctibox::core::{ConnId, CtiTransport, Engine, HttpRequest, Input, MediaCmd, MediaEvent, Output, Restored, Time, Transport};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The box's SIP address.
pub const BOX: &str = "127.0.0.1:5060";
/// The password every simulated phone has.
pub const PHONE_PASSWORD: &str = "Hq4-Vt8-Rn2w";
/// RFC 3261 timers, as in the test configuration (the defaults).
pub const T1: Duration = Duration::from_millis(500);
pub const T2: Duration = Duration::from_secs(4);
pub const T4: Duration = Duration::from_secs(5);
/// The RTP port every phone offers.
pub const PHONE_RTP: u16 = 4000;
/// A generous bound on steps for one `drive` (a livelock guard, not a speed limit).
pub const STEP_BOUND: usize = 200_000;
const STATUS_CONN: ConnId = ConnId(u64::MAX);

pub fn ms(n: u64) -> Time {
    Time::from_millis(n)
}
pub fn secs(s: f64) -> Time {
    Time((s * 1_000_000.0).round() as u64)
}
/// `12.345` style, the form the log uses.
pub fn fmt_t(t: Time) -> String {
    let m = t.as_millis();
    format!("{}.{:03}", m / 1000, m % 1000)
}

/// The test configuration: phones 1001..=1006 (password `PHONE_PASSWORD`) on lines of
/// the same numbers in partition `internal`, a CTI route point `rp-2000` on line 2000
/// (answer timeout 10 s; CFNA 1003, CFOF 1004) opened by application `ivr`, extra lines
/// 3001..=3008 on no device (for forward chains), and `forwards`: extra `forward = {..}`
/// contents per line number. `extra` is appended.
pub fn config(forwards: &[(&str, &str)], extra: &str) -> String {
    let fwd = |dn: &str, default: &str| -> String {
        match forwards.iter().find(|(d, _)| *d == dn) {
            Some((_, f)) => format!("forward = {{ {f} }}\n"),
            None if default.is_empty() => String::new(),
            None => format!("forward = {{ {default} }}\n"),
        }
    };
    let mut s = String::from(
        "[sip]\nudp = \"127.0.0.1:5060\"\nrealm = \"ctibox\"\n\
         [cti]\nlisten = \"127.0.0.1:2748\"\nheartbeat_s = 3600\n\
         [http]\nlisten = \"127.0.0.1:8080\"\n\
         [media]\nrtp_port_min = 16384\nrtp_port_max = 16420\n\
         [[partition]]\nname = \"internal\"\n\
         [[calling_search_space]]\nname = \"all\"\npartitions = [\"internal\"]\n",
    );
    for dn in 1001..=1006 {
        s += &format!("[[line]]\ndn = \"{dn}\"\npartition = \"internal\"\n{}", fwd(&dn.to_string(), ""));
    }
    for dn in 3001..=3008 {
        s += &format!("[[line]]\ndn = \"{dn}\"\npartition = \"internal\"\n{}", fwd(&dn.to_string(), "css = \"all\""));
    }
    s += &format!(
        "[[line]]\ndn = \"2000\"\npartition = \"internal\"\n{}",
        fwd("2000", "no_answer = \"1003\", on_failure = \"1004\"")
    );
    for dn in 1001..=1006 {
        s += &format!(
            "[[device]]\nname = \"phone-{dn}\"\ntype = \"sip_phone\"\nusername = \"{dn}\"\npassword = \"{PHONE_PASSWORD}\"\nlines = [\"{dn}\"]\ncss = \"all\"\n"
        );
    }
    s += "[[device]]\nname = \"rp-2000\"\ntype = \"cti_route_point\"\nlines = [\"2000\"]\ncss = \"all\"\nmax_calls = 4\nanswer_timeout_s = 10\n\
          [[app_user]]\nname = \"ivr\"\nsecret = \"generate\"\ndevices = [\"rp-2000\"]\n";
    s += extra;
    s
}

/// Who a message is from or to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Node {
    Box,
    Phone(usize),
    App(usize),
    /// The box's media path (its events reach the engine at the time they are given).
    Media,
}

#[derive(Clone, Debug)]
enum Payload {
    Sip(Vec<u8>),
    Cti(String),
    /// The application's end of the CTI connection closed (or the box closed it).
    CtiClosed,
    /// An event of the media path for the engine.
    Media(MediaEvent),
}

#[derive(Clone, Debug)]
struct Packet {
    from: Node,
    to: Node,
    payload: Payload,
    /// Its entry in the log (`NOT_LOGGED`: a media event, logged when delivered).
    log: usize,
}

const NOT_LOGGED: usize = usize::MAX;

/// One direction-independent link between a node and the box.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    pub latency: Duration,
    /// Each datagram is lost with this probability.
    pub loss: f64,
    /// Each delivered datagram arrives twice with this probability.
    pub dup: f64,
    /// Up to this much extra delay per datagram (reordering).
    pub jitter: Duration,
}

impl Default for Link {
    fn default() -> Self {
        Link { latency: Duration::from_millis(10), loss: 0.0, dup: 0.0, jitter: Duration::ZERO }
    }
}

/// One message as it went over the network.
#[derive(Clone, Debug)]
pub struct Entry {
    pub sent: Time,
    pub from: String,
    pub to: String,
    /// `INVITE`, `180 INVITE`, `cti login`, `cti event call_offered`...
    pub label: String,
    pub text: String,
    /// Lost by the network.
    pub lost: bool,
}

impl Entry {
    /// `"1.020 box>1002 INVITE"`.
    pub fn line(&self) -> String {
        format!("{} {}>{} {}{}", fmt_t(self.sent), self.from, self.to, self.label, if self.lost { " (lost)" } else { "" })
    }
}

/// `INVITE` for a request, `180 INVITE` for a response (from the start line and CSeq;
/// the receiver parses the message properly).
fn label_sip(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(2048)]);
    let first = text.lines().next().unwrap_or_default();
    match first.strip_prefix("SIP/2.0 ") {
        Some(rest) => {
            let code = rest.split(' ').next().unwrap_or("?");
            let method = text.lines().find_map(|l| l.strip_prefix("CSeq: ")).and_then(|c| c.split_whitespace().nth(1)).unwrap_or("?");
            format!("{code} {method}")
        }
        None => first.split(' ').next().unwrap_or("?").to_string(),
    }
}

fn label_cti(text: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => {
            let ty = v["type"].as_str().unwrap_or("?");
            match (ty, v["event"].as_str()) {
                ("event", Some(e)) => format!("cti event {e}"),
                ("reply", _) => format!("cti reply {}", if v["ok"] == true { "ok" } else { "error" }),
                _ => format!("cti {ty}"),
            }
        }
        Err(_) => "cti unparsable".into(),
    }
}

pub fn parse(bytes: &[u8]) -> Message {
    sip::parse_message(bytes).unwrap_or_else(|e| panic!("the box sent unparsable SIP ({e}):\n{}", String::from_utf8_lossy(bytes)))
}

// ---------------------------------------------------------------------------------
// The world
// ---------------------------------------------------------------------------------

pub struct World {
    pub engine: Engine,
    pub now: Time,
    pub box_addr: SocketAddr,
    pub phones: Vec<Phone>,
    pub apps: Vec<App>,
    /// Every message, in the order sent.
    pub log: Vec<Entry>,
    /// Media commands the engine gave, with their time.
    pub media: Vec<(Time, MediaCmd)>,
    /// What the engine asked of analog ports, with the time.
    pub analog: Vec<(Time, ctibox::core::analog::engine::AnalogOutput)>,
    /// State blobs the engine asked to save.
    pub persisted: Vec<(Time, &'static str, usize)>,
    /// Replicated facts the engine reported, with their time.
    pub replicated: Vec<(Time, Delta)>,
    /// Engine time minus world time, in µs (non-zero after `restore_from`: the
    /// restored engine's clock started elsewhere).
    pub shift: i64,
    /// The engine's wall clock (unix ms) at its time zero.
    pub unix_at_zero: u64,
    pub default_link: Link,
    links: BTreeMap<Node, Link>,
    queue: BTreeMap<(Time, u64), Packet>,
    seq: u64,
    net_rng: EngineRng,
    recent: VecDeque<String>,
    http: Option<(u16, Vec<u8>)>,
    next_conn: u64,
    pub steps: u64,
    /// Calls a test expects the idle probe to end (`assert_nothing_leaked` holds every
    /// other test to none: a leak must not pass because the probe cleaned it up).
    pub idle_ends_expected: u64,
}

/// What `step` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Stepped {
    Delivered,
    PhoneTimer,
    EngineTimer,
}

impl World {
    /// A world on `toml` (see `config`), the engine seeded with `seed`.
    pub fn new(toml: &str, seed: u64) -> World {
        let mut cfg: Config = ctibox::config::parse_str(toml, "world.toml").unwrap_or_else(|e| panic!("test config: {e}"));
        // Generated application secrets, known to the test (no Argon2 on the loop).
        for a in &mut cfg.app_users {
            if a.secret == AppSecret::Generate {
                a.secret = AppSecret::Generated(format!("secret-{}", a.name));
            }
        }
        let mut phones = Vec::new();
        for d in &cfg.devices {
            if let DeviceKind::SipPhone { username, .. } = &d.kind {
                let i = phones.len();
                let addr: SocketAddr = format!("127.0.0.{}:5060", 11 + i).parse().unwrap();
                phones.push(Phone::new(username, addr, PHONE_PASSWORD));
            }
        }
        let t1 = Duration::from_millis(u64::from(cfg.sip.t1_ms));
        assert_eq!(t1, T1, "the harness's phones use the default T1");
        let apps = cfg.app_users.iter().map(|a| App::new(&a.name)).collect();
        let engine = Engine::new(Arc::new(cfg), EngineRng::seed_from_u64(seed), Time::ZERO, 0, Restored::default());
        World {
            engine,
            now: Time::ZERO,
            box_addr: BOX.parse().unwrap(),
            phones,
            apps,
            log: Vec::new(),
            media: Vec::new(),
            analog: Vec::new(),
            persisted: Vec::new(),
            replicated: Vec::new(),
            shift: 0,
            unix_at_zero: 0,
            default_link: Link::default(),
            links: BTreeMap::new(),
            queue: BTreeMap::new(),
            seq: 0,
            net_rng: EngineRng::seed_from_u64(seed ^ 0x0005_eed0_f9e7),
            recent: VecDeque::new(),
            http: None,
            next_conn: 1,
            steps: 0,
            idle_ends_expected: 0,
        }
    }

    // ---- names ----

    pub fn phone(&self, dn: &str) -> &Phone {
        &self.phones[self.pi(dn)]
    }
    pub fn phone_mut(&mut self, dn: &str) -> &mut Phone {
        let i = self.pi(dn);
        &mut self.phones[i]
    }
    fn pi(&self, dn: &str) -> usize {
        self.phones.iter().position(|p| p.dn == dn).unwrap_or_else(|| panic!("no phone {dn}"))
    }
    fn ai(&self, name: &str) -> usize {
        self.apps.iter().position(|a| a.name == name).unwrap_or_else(|| panic!("no app {name}"))
    }
    pub fn app(&self, name: &str) -> &App {
        &self.apps[self.ai(name)]
    }
    fn name(&self, n: Node) -> String {
        match n {
            Node::Box => "box".into(),
            Node::Phone(i) => self.phones[i].dn.clone(),
            Node::App(i) => self.apps[i].name.clone(),
            Node::Media => "media".into(),
        }
    }
    pub fn set_link(&mut self, dn: &str, link: Link) {
        let i = self.pi(dn);
        self.links.insert(Node::Phone(i), link);
    }

    // ---- failure ----

    fn remember(&mut self, what: String) {
        if self.recent.len() == 60 {
            self.recent.pop_front();
        }
        self.recent.push_back(what);
    }

    /// Panics with `msg` and the last events.
    pub fn fail(&self, msg: &str) -> ! {
        let trace: Vec<&str> = self.recent.iter().map(String::as_str).collect();
        panic!("{msg}\n--- at {} after {} steps; last events:\n{}", fmt_t(self.now), self.steps, trace.join("\n"))
    }

    // ---- the network ----

    fn send(&mut self, from: Node, to: Node, payload: Payload) {
        let (label, text, datagram) = match &payload {
            Payload::Sip(b) => (label_sip(b), String::from_utf8_lossy(b).into_owned(), true),
            Payload::Cti(t) => (label_cti(t), t.clone(), false),
            Payload::CtiClosed => ("cti closed".to_string(), String::new(), false),
            Payload::Media(ev) => (format!("media {ev:?}"), String::new(), false),
        };
        let peer = if from == Node::Box { to } else { from };
        let link = self.links.get(&peer).copied().unwrap_or(self.default_link);
        let lost = datagram && link.loss > 0.0 && self.chance(link.loss);
        let entry = Entry { sent: self.now, from: self.name(from), to: self.name(to), label, text, lost };
        self.remember(format!("send {}", entry.line()));
        self.log.push(entry);
        if lost {
            return;
        }
        let copies = if datagram && link.dup > 0.0 && self.chance(link.dup) { 2 } else { 1 };
        for _ in 0..copies {
            let mut at = self.now + link.latency;
            if datagram && !link.jitter.is_zero() {
                let j = self.net_rng.next_u64() % (link.jitter.as_micros() as u64 + 1);
                at = at + Duration::from_micros(j);
            }
            self.seq += 1;
            self.queue.insert((at, self.seq), Packet { from, to, payload: payload.clone(), log: self.log.len() - 1 });
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.net_rng.next_u64() as f64 / u64::MAX as f64) < p
    }

    /// The media path reports `ev` to the engine at `at` (not before `now`), in time
    /// order with everything else; logged (`media>box`) when it is delivered.
    pub fn media_event_at(&mut self, at: Time, ev: MediaEvent) {
        if at < self.now {
            self.fail(&format!("a media event for {} is in the past", fmt_t(at)));
        }
        self.seq += 1;
        self.queue.insert((at, self.seq), Packet { from: Node::Media, to: Node::Box, payload: Payload::Media(ev), log: NOT_LOGGED });
    }

    /// `media_event_at(now, ev)`.
    pub fn media_event(&mut self, ev: MediaEvent) {
        let now = self.now;
        self.media_event_at(now, ev)
    }

    // ---- the engine ----

    /// World time on the engine's clock.
    pub fn engine_time(&self, t: Time) -> Time {
        Time(t.0.saturating_add_signed(self.shift))
    }

    /// Engine time on the world's clock.
    pub fn world_time(&self, t: Time) -> Time {
        Time(t.0.saturating_add_signed(-self.shift))
    }

    /// The box fails over: a fresh engine restored from `snapshot`, its clock at
    /// `start` when the world's clock is `gap` later than now, takes the box's address.
    /// Phones and applications move over (applications have no connection any more);
    /// messages in flight to the old box are lost. The restored engine's first outputs
    /// (media re-created) are recorded in the new world's `media`.
    pub fn restore_from(self, snapshot: EngineSnapshot, start: Time, gap: Duration, seed: u64) -> World {
        let now = self.now + gap;
        // The wall clock goes on: the new engine's time `start` is the old one's `now`.
        let wall_now = self.unix_at_zero + self.engine_time(now).as_millis();
        let unix_at_zero = wall_now - start.as_millis();
        let engine = Engine::restore(self.engine.config().clone(), EngineRng::seed_from_u64(seed), start, unix_at_zero, snapshot);
        let mut apps = self.apps;
        for a in &mut apps {
            a.conn = None;
        }
        let queue: BTreeMap<(Time, u64), Packet> = self.queue.into_iter().filter(|(_, p)| p.to != Node::Box).collect();
        let mut w = World {
            engine,
            now,
            box_addr: self.box_addr,
            phones: self.phones,
            apps,
            log: self.log,
            media: Vec::new(),
            analog: Vec::new(),
            persisted: Vec::new(),
            replicated: Vec::new(),
            shift: start.0 as i64 - now.0 as i64,
            unix_at_zero,
            default_link: self.default_link,
            links: self.links,
            queue,
            seq: self.seq,
            net_rng: self.net_rng,
            recent: self.recent,
            http: None,
            next_conn: self.next_conn,
            steps: self.steps,
            idle_ends_expected: self.idle_ends_expected,
        };
        while let Some(o) = w.engine.poll_output() {
            w.on_output(o);
        }
        w
    }

    pub fn feed(&mut self, input: Input) {
        let t = self.engine_time(self.now);
        self.engine.handle_input(t, input);
        while let Some(o) = self.engine.poll_output() {
            self.on_output(o);
        }
    }

    /// Every output of the engine, in one place: a variant not handled here fails.
    fn on_output(&mut self, o: Output) {
        match o {
            Output::Transmit { transport: Transport::Udp, conn: None, to, bytes } => match self.phones.iter().position(|p| p.addr == to) {
                Some(i) => self.send(Node::Box, Node::Phone(i), Payload::Sip(bytes)),
                None => self.fail(&format!("the box sent SIP to {to}, where no phone is:\n{}", String::from_utf8_lossy(&bytes))),
            },
            Output::CtiSend { conn, text } => match self.apps.iter().position(|a| a.conn == Some(conn)) {
                Some(i) => self.send(Node::Box, Node::App(i), Payload::Cti(text)),
                None => self.fail(&format!("CTI message for unknown connection {conn:?}: {text}")),
            },
            Output::Close { conn } => match self.apps.iter().position(|a| a.conn == Some(conn)) {
                Some(i) => self.send(Node::Box, Node::App(i), Payload::CtiClosed),
                None => self.fail(&format!("close of unknown connection {conn:?}")),
            },
            Output::HttpResponse { conn: STATUS_CONN, status, body, .. } => self.http = Some((status, body)),
            Output::Persist { name, bytes } => self.persisted.push((self.now, name, bytes.len())),
            Output::Replicate(d) => self.replicated.push((self.now, d)),
            Output::Media(cmd) => {
                self.remember(format!("media {cmd:?}"));
                self.media.push((self.now, cmd));
            }
            Output::Analog(a) => {
                self.remember(format!("analog {a:?}"));
                self.analog.push((self.now, a));
            }
            other => self.fail(&format!("the harness does not handle this engine output: {other:?}")),
        }
    }

    /// GET /status, answered at once.
    pub fn status(&mut self) -> serde_json::Value {
        self.feed(Input::Http { conn: STATUS_CONN, request: HttpRequest { method: "GET".into(), path: "/status".into(), body: vec![] } });
        match self.http.take() {
            Some((200, body)) => serde_json::from_slice(&body).expect("status is JSON"),
            other => self.fail(&format!("/status answered {other:?}")),
        }
    }

    // ---- time ----

    fn next_phone_timer(&self) -> Option<(Time, usize)> {
        self.phones.iter().enumerate().filter_map(|(i, p)| p.next_timer().map(|t| (t, i))).min()
    }

    /// When the next event is due, if any (deliveries, phone timers, the engine).
    pub fn next_event(&self) -> Option<Time> {
        [self.queue.keys().next().map(|k| k.0), self.next_phone_timer().map(|t| t.0), self.engine.poll_timeout().map(|t| self.world_time(t))].into_iter().flatten().min()
    }

    /// Runs the next event in time order (ties: deliveries, then phone timers, then
    /// the engine). `None` when nothing at all is scheduled.
    pub fn step(&mut self) -> Option<Stepped> {
        let pkt = self.queue.keys().next().map(|k| k.0);
        let ph = self.next_phone_timer();
        let eng = self.engine.poll_timeout().map(|t| self.world_time(t));
        let t = self.next_event()?;
        if t < self.now {
            self.fail(&format!("an event is due in the past: {}", fmt_t(t)));
        }
        self.now = t;
        self.steps += 1;
        if pkt == Some(t) {
            let (_, p) = self.queue.pop_first().expect("checked");
            self.deliver(p);
            return Some(Stepped::Delivered);
        }
        if let Some((pt, i)) = ph.filter(|(pt, _)| *pt == t) {
            let _ = pt;
            self.remember(format!("{} timer {}", fmt_t(t), self.phones[i].dn));
            let now = self.now;
            self.phones[i].on_timer(now);
            self.flush_phone(i);
            return Some(Stepped::PhoneTimer);
        }
        debug_assert_eq!(eng, Some(t));
        self.feed(Input::Timeout);
        Some(Stepped::EngineTimer)
    }

    fn deliver(&mut self, mut p: Packet) {
        if let (NOT_LOGGED, Payload::Media(ev)) = (p.log, &p.payload) {
            let label = format!("media {ev:?}");
            self.log.push(Entry { sent: self.now, from: "media".into(), to: "box".into(), label, text: String::new(), lost: false });
            p.log = self.log.len() - 1;
        }
        let line = self.log[p.log].line();
        self.remember(format!("{} recv {line}", fmt_t(self.now)));
        match (p.to, p.payload) {
            (Node::Box, Payload::Sip(bytes)) => {
                let Node::Phone(i) = p.from else { unreachable!() };
                let from = self.phones[i].addr;
                let local = self.box_addr;
                self.feed(Input::Sip { transport: Transport::Udp, conn: None, from, local, bytes });
            }
            (Node::Box, Payload::Cti(text)) => {
                let Node::App(i) = p.from else { unreachable!() };
                let conn = self.apps[i].conn.expect("connected");
                self.feed(Input::CtiMessage { conn, text });
            }
            (Node::Box, Payload::Media(ev)) => self.feed(Input::Media(ev)),
            (Node::Box, Payload::CtiClosed) => {
                let Node::App(i) = p.from else { unreachable!() };
                let conn = self.apps[i].conn.take().expect("connected");
                self.feed(Input::ConnClosed { conn });
            }
            (Node::Phone(i), Payload::Sip(bytes)) => {
                let msg = parse(&bytes);
                let now = self.now;
                self.phones[i].on_message(now, msg);
                self.flush_phone(i);
            }
            (Node::App(i), Payload::Cti(text)) => {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| self.fail(&format!("CTI text is not JSON ({e}): {text}")));
                let now = self.now;
                self.apps[i].received.push((now, v));
            }
            (Node::App(i), Payload::CtiClosed) => {
                if let Some(conn) = self.apps[i].conn.take() {
                    self.apps[i].closed_at = Some(self.now);
                    self.feed(Input::ConnClosed { conn });
                }
            }
            (to, payload) => self.fail(&format!("nothing to deliver {payload:?} to {to:?}")),
        }
    }

    fn flush_phone(&mut self, i: usize) {
        for bytes in std::mem::take(&mut self.phones[i].out) {
            self.send(Node::Phone(i), Node::Box, Payload::Sip(bytes));
        }
    }

    /// Whether anything is in flight or a phone waits for something (a retransmission,
    /// an answer); the engine's timers and the phones' transaction clean-up don't count.
    pub fn busy(&self) -> bool {
        !self.queue.is_empty() || self.phones.iter().any(Phone::active)
    }

    /// Runs until nothing is in flight and no phone waits for anything (`busy`); every
    /// timer that falls due meanwhile runs too. Panics past `STEP_BOUND` steps.
    pub fn drive(&mut self) {
        self.drive_bounded(STEP_BOUND)
    }

    /// `drive`, failing after `n` steps.
    pub fn drive_bounded(&mut self, n: usize) {
        for _ in 0..n {
            if !self.busy() {
                return;
            }
            self.step();
        }
        self.fail(&format!("not quiet after {n} steps (livelock?)"))
    }

    /// Runs every event due up to `t`, then sets the clock to `t`.
    pub fn drive_until(&mut self, t: Time) {
        for _ in 0..STEP_BOUND {
            match self.next_event() {
                Some(n) if n <= t => {
                    self.step();
                }
                _ => {
                    self.now = self.now.max(t);
                    return;
                }
            }
        }
        self.fail(&format!("more than {STEP_BOUND} steps before {} (livelock?)", fmt_t(t)))
    }

    /// `drive_until(now + d)`.
    pub fn drive_for(&mut self, d: Duration) {
        let t = self.now + d;
        self.drive_until(t)
    }

    /// Runs until 64*T1 + T4 (and a 32 s Timer D) have passed with no message at all,
    /// so every transaction has ended after its timers.
    pub fn settle(&mut self) {
        for _ in 0..100 {
            self.drive();
            let before = self.log.len();
            self.drive_for(T1 * 64 + T4 + Duration::from_secs(1));
            if self.log.len() == before && !self.busy() {
                return;
            }
        }
        self.fail("never settled")
    }

    // ---- log ----

    /// The log lines (`"1.020 box>1002 INVITE"`) of messages to or from `who` (a
    /// phone number or app name), in order.
    pub fn trace(&self, who: &[&str]) -> Vec<String> {
        self.log.iter().filter(|e| who.contains(&e.from.as_str()) || who.contains(&e.to.as_str())).map(Entry::line).collect()
    }

    /// Log lines of SIP messages only, for these nodes.
    pub fn sip_trace(&self, who: &[&str]) -> Vec<String> {
        self.log
            .iter()
            .filter(|e| !e.label.starts_with("cti") && !e.label.starts_with("media"))
            .filter(|e| who.contains(&e.from.as_str()) || who.contains(&e.to.as_str()))
            .map(Entry::line)
            .collect()
    }

    /// The log entries of SIP messages with this label (`"BYE"`, `"200 INVITE"`).
    pub fn find(&self, from: &str, to: &str, label: &str) -> Vec<&Entry> {
        self.log.iter().filter(|e| e.from == from && e.to == to && e.label == label).collect()
    }

    /// Prints the whole log (for writing a test).
    pub fn dump(&self) {
        for e in &self.log {
            eprintln!("{}", e.line());
        }
    }

    // ---- phone actions ----

    fn act(&mut self, dn: &str, f: impl FnOnce(&mut Phone, Time)) {
        let i = self.pi(dn);
        let now = self.now;
        self.remember(format!("{} action {dn}", fmt_t(now)));
        f(&mut self.phones[i], now);
        self.flush_phone(i);
    }

    pub fn register(&mut self, dn: &str) {
        self.act(dn, |p, now| p.register(now));
    }
    /// Registers every phone, one after the other, and drives until done.
    pub fn register_all(&mut self) {
        let dns: Vec<String> = self.phones.iter().map(|p| p.dn.clone()).collect();
        for dn in dns {
            self.register(&dn);
            self.drive();
            if !self.phone(&dn).registered {
                self.fail(&format!("{dn} did not register"));
            }
        }
    }
    pub fn dial(&mut self, dn: &str, to: &str) {
        let to = to.to_string();
        self.act(dn, move |p, now| p.dial(now, &to));
    }
    pub fn ring(&mut self, dn: &str) {
        self.act(dn, |p, now| p.respond_incoming(now, 180));
    }
    pub fn answer(&mut self, dn: &str) {
        self.act(dn, |p, now| p.respond_incoming(now, 200));
    }
    pub fn reject(&mut self, dn: &str, code: u16) {
        self.act(dn, |p, now| p.respond_incoming(now, code));
    }
    pub fn hangup(&mut self, dn: &str) {
        self.act(dn, |p, now| p.hangup(now));
    }
    pub fn cancel(&mut self, dn: &str) {
        self.act(dn, |p, now| p.cancel(now));
    }
    /// A re-INVITE whose offer has this direction (`sendonly` holds, `sendrecv` resumes).
    pub fn reinvite(&mut self, dn: &str, dir: &'static str) {
        self.act(dn, move |p, now| p.reinvite(now, dir));
    }

    /// The shell stops cleanly (`Input::Stop`).
    pub fn stop(&mut self) {
        self.feed(Input::Stop);
    }

    // ---- CTI applications ----

    /// The application connects (the box greets it after the link latency).
    pub fn app_connect(&mut self, name: &str) {
        let i = self.ai(name);
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.apps[i].conn = Some(conn);
        self.apps[i].closed_at = None;
        let peer: SocketAddr = format!("127.0.0.{}:40000", 100 + i).parse().unwrap();
        self.log.push(Entry { sent: self.now, from: name.into(), to: "box".into(), label: "cti connect".into(), text: String::new(), lost: false });
        self.feed(Input::CtiOpened { conn, peer, transport: CtiTransport::Tcp });
    }

    /// Sends one request; `id` is filled in. Returns the id.
    pub fn app_send(&mut self, name: &str, mut req: serde_json::Value) -> u64 {
        let i = self.ai(name);
        self.apps[i].next_id += 1;
        let id = self.apps[i].next_id;
        req["id"] = id.into();
        self.send(Node::App(i), Node::Box, Payload::Cti(req.to_string()));
        id
    }

    /// The application's connection drops (a crash): the box sees it closed.
    pub fn app_crash(&mut self, name: &str) {
        let i = self.ai(name);
        self.send(Node::App(i), Node::Box, Payload::CtiClosed);
    }

    /// Connects, logs in with the generated secret and opens `devices`, driving until done.
    pub fn app_login(&mut self, name: &str, devices: &[&str]) {
        self.app_connect(name);
        let secret = format!("secret-{name}");
        self.app_send(name, serde_json::json!({"type":"login","app":name,"secret":secret,"protocol":1}));
        self.drive();
        for d in devices {
            self.app_send(name, serde_json::json!({"type":"open","device":d}));
            self.drive();
        }
        let app = self.app(name);
        let fails: Vec<_> = app.received.iter().filter(|(_, v)| v["type"] == "reply" && v["ok"] != true).collect();
        if !fails.is_empty() {
            self.fail(&format!("{name} could not log in and open {devices:?}: {fails:?}"));
        }
    }

    // ---- leaks ----

    /// Every table of the engine's SIP side that should be empty when all is over.
    pub fn leftovers(&self) -> Vec<(&'static str, usize)> {
        let sip = self.engine.sip();
        let mut v: Vec<(&'static str, usize)> = sip.b2bua.table_sizes().into_iter().filter(|(_, n)| *n > 0).collect();
        if sip.transactions() > 0 {
            v.push(("transactions", sip.transactions()));
        }
        v
    }

    /// Panics unless the box holds no call, dialog, transaction, RTP port or call timer.
    pub fn assert_nothing_leaked(&mut self) {
        let left = self.leftovers();
        if !left.is_empty() {
            self.fail(&format!("left over in the engine: {left:?}"));
        }
        let st = self.status();
        assert_eq!(st["calls"], 0, "calls on /status");
        assert_eq!(st["call_media"]["calls_ended_idle"], self.idle_ends_expected, "calls ended by the idle probe");
        for p in &self.phones {
            if let Some(d) = &p.dialog {
                self.fail(&format!("phone {} still has a call: {d:?}", p.dn));
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// CTI application
// ---------------------------------------------------------------------------------

pub struct App {
    pub name: String,
    pub conn: Option<ConnId>,
    pub closed_at: Option<Time>,
    pub received: Vec<(Time, serde_json::Value)>,
    next_id: u64,
}

impl App {
    fn new(name: &str) -> App {
        App { name: name.to_string(), conn: None, closed_at: None, received: Vec::new(), next_id: 0 }
    }
    /// The events received, as `(time, event name)`.
    pub fn events(&self) -> Vec<(String, String)> {
        self.received
            .iter()
            .filter(|(_, v)| v["type"] == "event")
            .map(|(t, v)| (fmt_t(*t), v["event"].as_str().unwrap_or("?").to_string()))
            .collect()
    }
    /// The last event named `name`.
    pub fn last_event(&self, name: &str) -> Option<&serde_json::Value> {
        self.received.iter().rev().map(|(_, v)| v).find(|v| v["type"] == "event" && v["event"] == name)
    }
}

// ---------------------------------------------------------------------------------
// SIP phone
// ---------------------------------------------------------------------------------

/// How a phone answers a new call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 180, then waits for the test (`answer`, `reject`).
    Ring,
    /// Nothing at all until the test says (`ring`, `answer`).
    Silent,
    /// 180, then 200 after the delay.
    After(Duration),
    /// 486 at once.
    Busy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DState {
    /// Our INVITE is out (caller) / an INVITE came in (callee), no final answer yet.
    Early,
    Confirmed,
}

/// The phone's one call.
#[derive(Clone, Debug)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: Option<String>,
    /// Our name-addr with our tag; the peer's, with its tag once known.
    local: String,
    remote: String,
    pub remote_target: String,
    local_cseq: u32,
    remote_cseq: u32,
    pub caller: bool,
    pub state: DState,
    /// The caller's INVITE (for CANCEL), until its final answer.
    invite: Option<Request>,
    /// The callee's incoming INVITE, until answered.
    incoming: Option<Request>,
    /// Our 2xx waiting for its ACK: bytes, interval, when to give up.
    pending_2xx: Option<(Vec<u8>, Duration, Time)>,
    /// A re-INVITE of ours is out.
    reinvite_out: bool,
    /// The direction of our last re-INVITE offer, to retry after 491.
    reinvite_dir: Option<&'static str>,
    /// Our SDP direction now.
    pub local_dir: &'static str,
    /// The peer's last SDP.
    pub remote_sdp: String,
    sdp_version: u32,
}

impl Dialog {
    /// A call to this phone waiting for its answer.
    pub fn ringing(&self) -> bool {
        self.incoming.is_some()
    }
    /// A re-INVITE of this phone's is waiting for its answer (or its glare retry).
    pub fn reinvite_pending(&self) -> bool {
        self.reinvite_out || self.reinvite_dir.is_some()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CState {
    Calling,
    Proceeding,
    Completed,
}

#[derive(Clone, Debug)]
struct ClientTx {
    branch: String,
    method: Method,
    req: Request,
    bytes: Vec<u8>,
    state: CState,
    interval: Duration,
    ack: Option<Vec<u8>>,
}

#[derive(Clone, Debug)]
struct ServerTx {
    branch: String,
    /// INVITE, CANCEL or other (ACK matches INVITE).
    class: u8,
    req: Request,
    last: Option<Vec<u8>>,
    final_sent: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum PTimer {
    Retransmit(String),
    Timeout(String),
    Forget(String),
    ForgetServer(String, u8),
    Retransmit2xx,
    AutoAnswer,
    GlareRetry,
}

pub struct Phone {
    pub dn: String,
    pub addr: SocketAddr,
    password: String,
    pub answer: Answer,
    /// When false the phone never ACKs a 2xx (a broken UA).
    pub sends_ack: bool,
    /// How long after a 491 the phone retries its re-INVITE (RFC 3261 §14.1).
    pub glare_retry: Duration,
    /// The status it answers a BYE with (200; a broken or overloaded UA: 503), or
    /// `None`: it takes the BYE and never answers.
    pub bye_answer: Option<u16>,
    /// It sends the ACK for a non-2xx answer with a branch of its own (RFC 2543-era
    /// and sloppy clients) instead of the INVITE's.
    pub ack_new_branch: bool,
    n: u64,
    pub registered: bool,
    reg_call_id: String,
    reg_cseq: u32,
    pub dialog: Option<Dialog>,
    clients: Vec<ClientTx>,
    servers: Vec<ServerTx>,
    timers: BTreeMap<(Time, u64), PTimer>,
    out: Vec<Vec<u8>>,
    /// What became of this phone's calls: `(time, "answered" | "failed 486" | ...)`.
    pub history: Vec<(Time, String)>,
    /// Final statuses of its re-INVITEs, in order.
    pub reinvite_results: Vec<(Time, u16)>,
}

fn class_of(m: &Method) -> u8 {
    match m {
        Method::Invite | Method::Ack => 0,
        Method::Cancel => 1,
        _ => 2,
    }
}

fn sdp_of(addr: SocketAddr, dir: &str, version: u32) -> Vec<u8> {
    let ip = addr.ip();
    format!(
        "v=0\r\no=- 1 {version} IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {PHONE_RTP} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na={dir}\r\n"
    )
    .into_bytes()
}

fn direction_in(body: &[u8]) -> &'static str {
    let t = String::from_utf8_lossy(body);
    for d in ["sendonly", "recvonly", "inactive"] {
        if t.contains(&format!("a={d}")) {
            return d;
        }
    }
    "sendrecv"
}

fn answer_dir(offer: &str) -> &'static str {
    match offer {
        "sendonly" => "recvonly",
        "recvonly" => "sendonly",
        "inactive" => "inactive",
        _ => "sendrecv",
    }
}

impl Phone {
    fn new(dn: &str, addr: SocketAddr, password: &str) -> Phone {
        Phone {
            dn: dn.to_string(),
            addr,
            password: password.to_string(),
            answer: Answer::Ring,
            sends_ack: true,
            glare_retry: Duration::from_secs(2),
            bye_answer: Some(200),
            ack_new_branch: false,
            n: 0,
            registered: false,
            reg_call_id: format!("reg-{dn}@{}", addr.ip()),
            reg_cseq: 0,
            dialog: None,
            clients: Vec::new(),
            servers: Vec::new(),
            timers: BTreeMap::new(),
            out: Vec::new(),
            history: Vec::new(),
            reinvite_results: Vec::new(),
        }
    }

    fn next(&mut self) -> u64 {
        self.n += 1;
        self.n
    }
    fn branch(&mut self) -> String {
        let n = self.next();
        format!("z9hG4bK-{}-{n}", self.dn)
    }
    fn arm(&mut self, at: Time, t: PTimer) {
        let n = self.next();
        self.timers.insert((at, n), t);
    }
    fn disarm(&mut self, t: &PTimer) {
        self.timers.retain(|_, v| v != t);
    }
    pub fn next_timer(&self) -> Option<Time> {
        self.timers.keys().next().map(|k| k.0)
    }
    /// Whether the phone is waiting for something (not just forgetting transactions).
    pub fn active(&self) -> bool {
        self.timers.values().any(|t| !matches!(t, PTimer::Forget(_) | PTimer::ForgetServer(..)))
    }
    fn via(&self, branch: &str) -> String {
        format!("SIP/2.0/UDP {};branch={branch};rport", self.addr)
    }
    fn contact(&self) -> String {
        format!("<sip:{}@{}>", self.dn, self.addr)
    }
    fn aor(&self) -> String {
        format!("<sip:{}@{}>", self.dn, BOX.split(':').next().unwrap_or("127.0.0.1"))
    }

    // ---- client transactions ----

    fn send_request(&mut self, now: Time, req: Request) {
        let branch = req.top_via().ok().and_then(|v| v.branch().map(str::to_string)).expect("branch");
        let bytes = req.to_bytes();
        self.out.push(bytes.clone());
        if req.method == Method::Ack {
            return;
        }
        self.arm(now + T1, PTimer::Retransmit(branch.clone()));
        self.arm(now + T1 * 64, PTimer::Timeout(branch.clone()));
        self.clients.push(ClientTx { branch, method: req.method.clone(), req, bytes, state: CState::Calling, interval: T1, ack: None });
    }

    fn on_response(&mut self, now: Time, resp: Response) {
        let branch = resp.top_via().ok().and_then(|v| v.branch().map(str::to_string)).unwrap_or_default();
        let method = resp.cseq().map(|c| c.method).unwrap_or(Method::Options);
        let Some(i) = self.clients.iter().position(|c| c.branch == branch && c.method == method) else {
            // No transaction: a retransmitted 2xx to an INVITE is the dialog's to ACK.
            if method == Method::Invite && (200..300).contains(&resp.status) {
                self.invite_2xx(now, &resp, true);
            }
            return;
        };
        let invite = method == Method::Invite;
        if resp.status < 200 {
            if self.clients[i].state == CState::Calling {
                self.clients[i].state = CState::Proceeding;
                if invite {
                    // Timer A stops; Timer B only runs while Calling (§17.1.1.2).
                    let b = self.clients[i].branch.clone();
                    self.disarm(&PTimer::Retransmit(b.clone()));
                    self.disarm(&PTimer::Timeout(b));
                }
            }
            self.tu_response(now, &self.clients[i].req.clone(), resp);
            return;
        }
        if self.clients[i].state == CState::Completed {
            if let Some(a) = self.clients[i].ack.clone() {
                self.out.push(a);
            }
            return;
        }
        let b = self.clients[i].branch.clone();
        self.disarm(&PTimer::Retransmit(b.clone()));
        self.disarm(&PTimer::Timeout(b.clone()));
        let req = self.clients[i].req.clone();
        if invite && resp.status < 300 {
            self.clients.remove(i);
        } else {
            if invite {
                let mut ack = ack_for_failure(&req, &resp);
                if self.ack_new_branch {
                    let fresh = self.branch();
                    let via = format!("SIP/2.0/UDP {};branch={fresh}", self.addr);
                    ack.headers.set(HeaderName::Via, via);
                }
                let ack = ack.to_bytes();
                self.out.push(ack.clone());
                self.clients[i].ack = Some(ack);
            }
            self.clients[i].state = CState::Completed;
            let wait = if invite { Duration::from_secs(32) } else { T4 };
            self.arm(now + wait, PTimer::Forget(b));
        }
        self.tu_response(now, &req, resp);
    }

    // ---- server transactions ----

    fn on_request(&mut self, now: Time, req: Request) {
        let branch = req.top_via().ok().and_then(|v| v.branch().map(str::to_string)).unwrap_or_default();
        let class = class_of(&req.method);
        let existing = self.servers.iter().position(|s| s.branch == branch && s.class == class);
        if req.method == Method::Ack {
            if let Some(s) = existing.map(|i| &self.servers[i]) {
                if s.final_sent && s.last.as_ref().is_some_and(|l| !l.starts_with(b"SIP/2.0 2")) {
                    return; // ACK for our non-2xx: the transaction's
                }
            }
            return self.tu_ack(now, &req);
        }
        if let Some(i) = existing {
            if let Some(l) = self.servers[i].last.clone() {
                self.out.push(l);
            }
            return;
        }
        self.servers.push(ServerTx { branch, class, req: req.clone(), last: None, final_sent: false });
        self.tu_request(now, req);
    }

    /// Answers the server transaction of `req`.
    fn respond(&mut self, now: Time, req: &Request, code: u16, tag: Option<&str>, body: Option<Vec<u8>>) {
        let mut r = Response::to_request(req, code, tag);
        if tag.is_some() && req.method == Method::Invite && code < 300 {
            r.headers.add(HeaderName::Contact, self.contact());
        }
        if let Some(b) = body {
            r.set_body("application/sdp", b);
        }
        let bytes = r.to_bytes();
        self.out.push(bytes.clone());
        let branch = req.top_via().ok().and_then(|v| v.branch().map(str::to_string)).unwrap_or_default();
        let class = class_of(&req.method);
        if let Some(s) = self.servers.iter_mut().find(|s| s.branch == branch && s.class == class) {
            s.last = Some(bytes.clone());
            if code >= 200 {
                s.final_sent = true;
                let key = PTimer::ForgetServer(branch, class);
                self.arm(now + T1 * 64, key);
            }
        }
        if req.method == Method::Invite && (200..300).contains(&code) {
            if let Some(d) = self.dialog.as_mut() {
                d.pending_2xx = Some((bytes, T1, now + T1 * 64));
            }
            self.disarm(&PTimer::Retransmit2xx);
            self.arm(now + T1, PTimer::Retransmit2xx);
        }
    }

    fn on_timer(&mut self, now: Time) {
        let Some((&key, _)) = self.timers.iter().next() else { return };
        let t = self.timers.remove(&key).expect("present");
        match t {
            PTimer::Retransmit(b) => {
                let Some(c) = self.clients.iter_mut().find(|c| c.branch == b) else { return };
                if c.state == CState::Completed {
                    return;
                }
                self.out.push(c.bytes.clone());
                c.interval = if c.method == Method::Invite { c.interval * 2 } else if c.state == CState::Proceeding { T2 } else { (c.interval * 2).min(T2) };
                let next = now + c.interval;
                self.arm(next, PTimer::Retransmit(b));
            }
            PTimer::Timeout(b) => {
                self.disarm(&PTimer::Retransmit(b.clone()));
                if let Some(i) = self.clients.iter().position(|c| c.branch == b) {
                    let c = self.clients.remove(i);
                    self.tu_timeout(now, &c.req);
                }
            }
            PTimer::Forget(b) => self.clients.retain(|c| c.branch != b),
            PTimer::ForgetServer(b, class) => self.servers.retain(|s| !(s.branch == b && s.class == class)),
            PTimer::Retransmit2xx => {
                let Some(d) = self.dialog.as_mut() else { return };
                let Some((bytes, interval, give_up)) = d.pending_2xx.clone() else { return };
                if now >= give_up {
                    d.pending_2xx = None;
                    self.history.push((now, "no ACK".into()));
                    self.bye(now);
                    return;
                }
                self.out.push(bytes.clone());
                let next = (interval * 2).min(T2);
                d.pending_2xx = Some((bytes, next, give_up));
                self.arm((now + next).min(give_up), PTimer::Retransmit2xx);
            }
            PTimer::AutoAnswer => self.respond_incoming(now, 200),
            PTimer::GlareRetry => {
                if let Some(dir) = self.dialog.as_ref().and_then(|d| d.reinvite_dir) {
                    self.reinvite(now, dir);
                }
            }
        }
    }

    // ---- the user agent ----

    fn on_message(&mut self, now: Time, m: Message) {
        match m {
            Message::Request(r) => self.on_request(now, r),
            Message::Response(r) => self.on_response(now, r),
        }
    }

    pub fn register(&mut self, now: Time) {
        let req = self.register_request(None);
        self.send_request(now, req);
    }

    fn register_request(&mut self, challenge: Option<(&Response, HeaderName)>) -> Request {
        self.reg_cseq += 1;
        let branch = self.branch();
        let uri = Uri::parse("sip:127.0.0.1").expect("uri");
        let aor = self.aor();
        let mut req = Request::new(Method::Register, uri, &self.via(&branch), &format!("{aor};tag=r{}", self.dn), &aor, &self.reg_call_id.clone(), self.reg_cseq, 70);
        req.headers.add(HeaderName::Contact, self.contact());
        req.headers.add(HeaderName::Expires, "3600");
        if let Some((resp, h)) = challenge {
            if let Some(v) = self.credentials(resp, h.clone(), "REGISTER", "sip:127.0.0.1") {
                req.headers.add(if h == HeaderName::WwwAuthenticate { HeaderName::Authorization } else { HeaderName::ProxyAuthorization }, v);
            }
        }
        req
    }

    /// Digest credentials for the first challenge of `resp`.
    fn credentials(&mut self, resp: &Response, h: HeaderName, method: &str, uri: &str) -> Option<String> {
        let ch: AuthParams = resp.auth(h).ok()?.into_iter().next()?;
        let realm = ch.get("realm")?;
        let nonce = ch.get("nonce")?;
        let alg = match ch.get("algorithm").as_deref() {
            Some("SHA-256") => Algorithm::Sha256,
            _ => Algorithm::Md5,
        };
        let cnonce = format!("c{}", self.next());
        let mut c = Credentials {
            username: self.dn.clone(),
            realm: realm.clone(),
            nonce: nonce.clone(),
            uri: uri.to_string(),
            response: String::new(),
            algorithm: Some(alg.name().to_string()),
            cnonce: Some(cnonce.clone()),
            nc: Some("00000001".into()),
            qop: Some("auth".into()),
            opaque: None,
        };
        c.response = digest::expected_response(alg, &digest::ha1(alg, &self.dn, &realm, &self.password), method, &c);
        Some(format!(
            "Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{}\", algorithm={}, cnonce=\"{cnonce}\", nc=00000001, qop=auth",
            self.dn,
            c.response,
            alg.name()
        ))
    }

    /// Places a call to `to`.
    pub fn dial(&mut self, now: Time, to: &str) {
        assert!(self.dialog.is_none(), "{} already has a call", self.dn);
        let n = self.next();
        let call_id = format!("call-{}-{n}@{}", self.dn, self.addr.ip());
        let tag = format!("t{}x{n}", self.dn);
        let local = format!("{};tag={tag}", self.aor());
        let remote = format!("<sip:{to}@127.0.0.1>");
        self.dialog = Some(Dialog {
            call_id,
            local_tag: tag,
            remote_tag: None,
            local,
            remote: remote.clone(),
            remote_target: format!("sip:{to}@127.0.0.1"),
            local_cseq: 0,
            remote_cseq: 0,
            caller: true,
            state: DState::Early,
            invite: None,
            incoming: None,
            pending_2xx: None,
            reinvite_out: false,
            reinvite_dir: None,
            local_dir: "sendrecv",
            remote_sdp: String::new(),
            sdp_version: 1,
        });
        self.send_invite(now, None);
    }

    fn send_invite(&mut self, now: Time, challenge: Option<(&Response, HeaderName)>) {
        let branch = self.branch();
        let via = self.via(&branch);
        let contact = self.contact();
        let addr = self.addr;
        let cred = {
            let uri = self.dialog.as_ref().map(|d| d.remote_target.clone()).unwrap_or_default();
            challenge.and_then(|(r, h)| self.credentials(r, h, "INVITE", &uri))
        };
        let Some(d) = self.dialog.as_mut() else { return };
        d.local_cseq += 1;
        let uri = Uri::parse(&d.remote_target).expect("uri");
        let mut req = Request::new(Method::Invite, uri, &via, &d.local, &d.remote, &d.call_id, d.local_cseq, 70);
        req.headers.add(HeaderName::Contact, contact);
        if let Some(c) = cred {
            req.headers.add(HeaderName::ProxyAuthorization, c);
        }
        req.set_body("application/sdp", sdp_of(addr, "sendrecv", d.sdp_version));
        d.invite = Some(req.clone());
        self.send_request(now, req);
    }

    /// An in-dialog request toward the peer.
    fn in_dialog(&mut self, method: Method) -> Option<Request> {
        let branch = self.branch();
        let via = self.via(&branch);
        let contact = self.contact();
        let d = self.dialog.as_mut()?;
        d.local_cseq += 1;
        let uri = Uri::parse(&d.remote_target)?;
        let mut req = Request::new(method.clone(), uri, &via, &d.local, &d.remote, &d.call_id, d.local_cseq, 70);
        if method == Method::Invite {
            req.headers.add(HeaderName::Contact, contact);
        }
        Some(req)
    }

    fn bye(&mut self, now: Time) {
        if let Some(req) = self.in_dialog(Method::Bye) {
            self.send_request(now, req);
        }
        self.disarm(&PTimer::Retransmit2xx);
        self.disarm(&PTimer::GlareRetry);
        self.dialog = None;
    }

    /// Hangs up an established call.
    pub fn hangup(&mut self, now: Time) {
        assert!(self.dialog.as_ref().is_some_and(|d| d.state == DState::Confirmed), "{}: no call to hang up", self.dn);
        self.history.push((now, "hung up".into()));
        self.bye(now);
    }

    /// CANCELs our unanswered INVITE (RFC 3261 §9.1).
    pub fn cancel(&mut self, now: Time) {
        let Some(inv) = self.dialog.as_ref().and_then(|d| d.invite.clone()) else { panic!("{}: nothing to cancel", self.dn) };
        let mut headers = sip::Headers::default();
        for h in &inv.headers.0 {
            match h.name {
                HeaderName::Via | HeaderName::From | HeaderName::To | HeaderName::CallId | HeaderName::MaxForwards => headers.0.push(h.clone()),
                HeaderName::CSeq => headers.push(HeaderName::CSeq, format!("{} CANCEL", inv.cseq().map(|c| c.seq).unwrap_or(1))),
                _ => {}
            }
        }
        headers.push(HeaderName::ContentLength, "0");
        let cancel = Request { method: Method::Cancel, uri: inv.uri.clone(), headers, body: Vec::new() };
        self.history.push((now, "cancel".into()));
        self.send_request(now, cancel);
    }

    /// A re-INVITE with our SDP in direction `dir`.
    pub fn reinvite(&mut self, now: Time, dir: &'static str) {
        let addr = self.addr;
        let Some(mut req) = self.in_dialog(Method::Invite) else { return };
        let d = self.dialog.as_mut().expect("in dialog");
        d.sdp_version += 1;
        d.reinvite_out = true;
        d.reinvite_dir = Some(dir);
        req.set_body("application/sdp", sdp_of(addr, dir, d.sdp_version));
        self.send_request(now, req);
    }

    /// The callee answers the INVITE it is ringing with (180, 200, 486...).
    pub fn respond_incoming(&mut self, now: Time, code: u16) {
        let addr = self.addr;
        let Some(d) = self.dialog.as_mut() else { panic!("{}: no incoming call", self.dn) };
        let Some(inv) = d.incoming.clone() else { panic!("{}: the call is not ringing", self.dn) };
        let tag = d.local_tag.clone();
        let body = (code == 200).then(|| sdp_of(addr, answer_dir(direction_in(&inv.body)), d.sdp_version));
        if code >= 200 {
            d.incoming = None;
        }
        if code >= 300 {
            self.dialog = None;
            self.disarm(&PTimer::AutoAnswer);
            self.history.push((now, format!("refused {code}")));
        }
        if code == 200 {
            self.history.push((now, "answered".into()));
        }
        self.respond(now, &inv, code, Some(&tag), body);
    }

    fn matches_dialog(&self, req: &Request) -> bool {
        let Some(d) = &self.dialog else { return false };
        req.call_id().ok() == Some(d.call_id.as_str()) && req.to().ok().and_then(|t| t.tag().map(str::to_string)).as_deref() == Some(d.local_tag.as_str())
    }

    fn stale_cseq(&self, req: &Request) -> bool {
        let Some(d) = &self.dialog else { return false };
        let seq = req.cseq().map(|c| c.seq).unwrap_or(0);
        d.remote_cseq != 0 && seq <= d.remote_cseq && req.method != Method::Ack
    }

    fn tu_request(&mut self, now: Time, req: Request) {
        let to_tag = req.to().ok().and_then(|t| t.tag().map(str::to_string));
        match (&req.method, to_tag) {
            (Method::Invite, None) => self.incoming_invite(now, req),
            (Method::Cancel, _) => {
                let branch = req.top_via().ok().and_then(|v| v.branch().map(str::to_string)).unwrap_or_default();
                let inv = self.servers.iter().find(|s| s.branch == branch && s.class == 0).map(|s| (s.req.clone(), s.final_sent));
                match inv {
                    None => self.respond(now, &req, 481, Some("x"), None),
                    Some((inv, final_sent)) => {
                        self.respond(now, &req, 200, None, None);
                        if !final_sent {
                            let tag = self.dialog.as_ref().map(|d| d.local_tag.clone()).unwrap_or_else(|| "x".into());
                            self.respond(now, &inv, 487, Some(&tag), None);
                            self.dialog = None;
                            self.disarm(&PTimer::AutoAnswer);
                            self.history.push((now, "cancelled".into()));
                        }
                    }
                }
            }
            (_, Some(tag)) if !self.matches_dialog(&req) => self.respond(now, &req, 481, Some(&tag), None),
            // RFC 3261 §12.2.2: a CSeq not above the last one in the dialog is refused.
            (_, Some(tag)) if self.stale_cseq(&req) => {
                self.history.push((now, format!("refused {} with a stale CSeq", req.method.as_str())));
                self.respond(now, &req, 500, Some(&tag), None)
            }
            (Method::Bye, Some(tag)) => {
                match self.bye_answer {
                    Some(code) if code >= 300 => {
                        // It refuses the BYE and believes it is still in the call.
                        self.history.push((now, format!("refused a BYE with {code}")));
                        return self.respond(now, &req, code, Some(&tag), None);
                    }
                    Some(code) => self.respond(now, &req, code, Some(&tag), None),
                    None => self.history.push((now, "took the BYE without answering".into())),
                }
                self.history.push((now, "ended by the box".into()));
                self.disarm(&PTimer::Retransmit2xx);
                self.disarm(&PTimer::GlareRetry);
                self.dialog = None;
            }
            (Method::Invite, Some(tag)) => {
                let addr = self.addr;
                let d = self.dialog.as_mut().expect("matched");
                let cseq = req.cseq().map(|c| c.seq).unwrap_or(0);
                if d.reinvite_out {
                    // §14.2: our own re-INVITE is pending.
                    d.remote_cseq = cseq;
                    return self.respond(now, &req, 491, Some(&tag), None);
                }
                d.remote_cseq = cseq;
                if let Ok(Some(Contact::Addrs(a))) = req.contact() {
                    if let Some(c) = a.first() {
                        d.remote_target = c.uri.to_string();
                    }
                }
                d.remote_sdp = String::from_utf8_lossy(&req.body).into_owned();
                d.local_dir = answer_dir(direction_in(&req.body));
                d.sdp_version += 1;
                let body = sdp_of(addr, d.local_dir, d.sdp_version);
                self.respond(now, &req, 200, Some(&tag), Some(body));
            }
            (_, Some(tag)) => self.respond(now, &req, 200, Some(&tag), None),
            (_, None) => self.respond(now, &req, 481, Some("x"), None),
        }
    }

    fn incoming_invite(&mut self, now: Time, req: Request) {
        if self.dialog.is_some() || self.answer == Answer::Busy {
            return self.respond(now, &req, 486, Some(&format!("busy{}", self.n)), None);
        }
        let n = self.next();
        let tag = format!("t{}y{n}", self.dn);
        let from = req.from().map(|f| f.to_string()).unwrap_or_default();
        let to = req.headers.get(&HeaderName::To).unwrap_or_default().to_string();
        let target = match req.contact() {
            Ok(Some(Contact::Addrs(a))) if !a.is_empty() => a[0].uri.to_string(),
            _ => return self.respond(now, &req, 400, Some(&tag), None),
        };
        self.dialog = Some(Dialog {
            call_id: req.call_id().unwrap_or_default().to_string(),
            local_tag: tag.clone(),
            remote_tag: req.from().ok().and_then(|f| f.tag().map(str::to_string)),
            local: format!("{to};tag={tag}"),
            remote: from,
            remote_target: target,
            local_cseq: 0,
            remote_cseq: req.cseq().map(|c| c.seq).unwrap_or(0),
            caller: false,
            state: DState::Early,
            invite: None,
            incoming: Some(req.clone()),
            pending_2xx: None,
            reinvite_out: false,
            reinvite_dir: None,
            local_dir: "sendrecv",
            remote_sdp: String::from_utf8_lossy(&req.body).into_owned(),
            sdp_version: 1,
        });
        self.history.push((now, "offered".into()));
        match self.answer {
            Answer::Silent => {}
            Answer::Ring => self.respond(now, &req, 180, Some(&tag), None),
            Answer::After(d) => {
                self.respond(now, &req, 180, Some(&tag), None);
                self.arm(now + d, PTimer::AutoAnswer);
            }
            Answer::Busy => unreachable!(),
        }
    }

    fn tu_ack(&mut self, _now: Time, req: &Request) {
        if !self.matches_dialog(req) {
            return;
        }
        let d = self.dialog.as_mut().expect("matched");
        d.pending_2xx = None;
        d.state = DState::Confirmed;
        self.disarm(&PTimer::Retransmit2xx);
    }

    fn tu_response(&mut self, now: Time, req: &Request, resp: Response) {
        match req.method {
            Method::Register => match resp.status {
                401 => {
                    let r = self.register_request(Some((&resp, HeaderName::WwwAuthenticate)));
                    self.send_request(now, r);
                }
                200..=299 => self.registered = true,
                s if s >= 300 => self.history.push((now, format!("register failed {s}"))),
                _ => {}
            },
            Method::Invite => {
                let reinvite = req.to().ok().is_some_and(|t| t.tag().is_some());
                if reinvite {
                    return self.reinvite_response(now, resp);
                }
                if self.dialog.as_ref().is_none_or(|d| d.call_id != req.call_id().unwrap_or_default()) {
                    return;
                }
                match resp.status {
                    100 => {}
                    101..=199 => {
                        if let Some(tag) = resp.to().ok().and_then(|t| t.tag().map(str::to_string)) {
                            let d = self.dialog.as_mut().expect("checked");
                            d.remote_tag = Some(tag);
                            d.remote = resp.headers.get(&HeaderName::To).unwrap_or_default().to_string();
                        }
                    }
                    200..=299 => self.invite_2xx(now, &resp, false),
                    407 => self.send_invite(now, Some((&resp, HeaderName::ProxyAuthenticate))),
                    s => {
                        self.dialog = None;
                        self.history.push((now, format!("failed {s}")));
                    }
                }
            }
            Method::Cancel | Method::Bye | Method::Options => {}
            _ => {}
        }
    }

    /// A 2xx to our INVITE (first or retransmitted): ACK it.
    fn invite_2xx(&mut self, now: Time, resp: &Response, retransmitted: bool) {
        let matches = self.dialog.as_ref().is_some_and(|d| resp.call_id().ok() == Some(d.call_id.as_str()) && d.caller);
        if !matches {
            return;
        }
        let seq = resp.cseq().map(|c| c.seq).unwrap_or(1);
        let branch = self.branch();
        let via = self.via(&branch);
        let d = self.dialog.as_mut().expect("checked");
        if !retransmitted && d.state == DState::Early {
            d.remote_tag = resp.to().ok().and_then(|t| t.tag().map(str::to_string));
            d.remote = resp.headers.get(&HeaderName::To).unwrap_or_default().to_string();
            if let Ok(Some(Contact::Addrs(a))) = resp.contact() {
                if let Some(c) = a.first() {
                    d.remote_target = c.uri.to_string();
                }
            }
            d.remote_sdp = String::from_utf8_lossy(&resp.body).into_owned();
            d.state = DState::Confirmed;
            d.invite = None;
            self.history.push((now, "answered".into()));
        }
        if !self.sends_ack {
            return;
        }
        let Some(d) = self.dialog.as_ref() else { return };
        let uri = Uri::parse(&d.remote_target).expect("uri");
        let mut ack = Request::new(Method::Ack, uri, &via, &d.local, &d.remote, &d.call_id, seq, 70);
        ack.headers.set(HeaderName::CSeq, format!("{seq} ACK"));
        self.send_request(now, ack);
    }

    fn reinvite_response(&mut self, now: Time, resp: Response) {
        if resp.status < 200 {
            return;
        }
        self.reinvite_results.push((now, resp.status));
        let glare_retry = self.glare_retry;
        let Some(d) = self.dialog.as_mut() else { return };
        d.reinvite_out = false;
        match resp.status {
            200..=299 => {
                d.local_dir = d.reinvite_dir.take().unwrap_or("sendrecv");
                d.remote_sdp = String::from_utf8_lossy(&resp.body).into_owned();
                let seq = resp.cseq().map(|c| c.seq).unwrap_or(1);
                if let Some(mut ack) = self.in_dialog(Method::Ack) {
                    if let Some(d) = self.dialog.as_mut() {
                        d.local_cseq -= 1; // ACK takes the INVITE's number
                    }
                    ack.headers.set(HeaderName::CSeq, format!("{seq} ACK"));
                    self.send_request(now, ack);
                }
            }
            491 => self.arm(now + glare_retry, PTimer::GlareRetry),
            _ => d.reinvite_dir = None,
        }
    }

    fn tu_timeout(&mut self, now: Time, req: &Request) {
        self.history.push((now, format!("{} timed out", req.method)));
        if req.method == Method::Invite && req.to().ok().is_some_and(|t| t.tag().is_none()) {
            self.dialog = None;
        }
    }
}

/// ACK for a non-2xx final answer (§17.1.1.3).
fn ack_for_failure(inv: &Request, resp: &Response) -> Request {
    let mut headers = sip::Headers::default();
    for h in &inv.headers.0 {
        match h.name {
            HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::MaxForwards => headers.0.push(h.clone()),
            HeaderName::To => headers.push(HeaderName::To, resp.headers.get(&HeaderName::To).unwrap_or(&h.value).to_string()),
            _ => {}
        }
    }
    headers.push(HeaderName::CSeq, format!("{} ACK", inv.cseq().map(|c| c.seq).unwrap_or(1)));
    headers.push(HeaderName::ContentLength, "0");
    Request { method: Method::Ack, uri: inv.uri.clone(), headers, body: Vec::new() }
}
