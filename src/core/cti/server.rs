//! The CTI server: a front end of the engine's API (`core/api.rs`). It keeps one
//! session per connection: where it connected from, the login (throttled per source,
//! Argon2 secrets checked off the engine loop), the heartbeat deadline. A logged-in
//! connection is one API client (`core/api_session.rs`): every request but login,
//! logout and heartbeat becomes a `Command`, its outcome the reply, and the client's
//! events go out as they are queued, with their sequence numbers. An application
//! whose connection closes or whose heartbeat stops is disconnected as failed: its
//! devices' unanswered calls go to Call Forward On Failure, and new calls to Call
//! Forward No Answer until a device is opened again.

use super::wire::{self, ErrorCode, Reply, Request, RequestId};
use crate::config::{AppSecret, Config};
use crate::core::api::{ClientId, Grant};
use crate::core::throttle::{Throttle, ThrottlePolicy};
use crate::core::timer::Timers;
use crate::core::{ConnId, Engine, Output, Time, Verdict, VerifyJob};

use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

struct Session {
    /// Where the application connected from (failed logins are counted per address).
    peer: IpAddr,
    app: Option<String>,
    /// The API client this connection is, once logged in.
    client: Option<ClientId>,
    /// A login whose secret the shell is verifying: its ticket, request and app name.
    pending: Option<(u64, RequestId, String)>,
}

/// Login counters an operator reads on /status.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CtiStats {
    pub logins: u64,
    pub login_failures: u64,
    /// Logins refused at once because their source was banned.
    pub logins_throttled: u64,
    /// Logins answered "capacity" because the verifier was full.
    pub logins_busy: u64,
    /// Sources banned for failed logins.
    pub bans: u64,
}

/// All CTI connections.
pub struct CtiSessions {
    sessions: HashMap<ConnId, Session>,
    /// The connection each logged-in client is on.
    conns: BTreeMap<ClientId, ConnId>,
    heartbeats: Timers<ConnId>,
    /// Failed logins per source address, like SIP's digest failures.
    throttle: Throttle,
    next_ticket: u64,
    pub stats: CtiStats,
}

fn policy_of(cfg: &Config) -> ThrottlePolicy {
    let t = &cfg.cti.throttle;
    ThrottlePolicy {
        limit: t.auth_failures,
        window: Duration::from_secs(u64::from(t.window_s)),
        ban: Duration::from_secs(u64::from(t.ban_s)),
    }
}

impl CtiSessions {
    pub fn new(cfg: &Config) -> CtiSessions {
        CtiSessions {
            sessions: HashMap::new(),
            conns: BTreeMap::new(),
            heartbeats: Timers::default(),
            throttle: Throttle::new(policy_of(cfg)),
            next_ticket: 0,
            stats: CtiStats::default(),
        }
    }
    pub fn next_timeout(&self) -> Option<crate::core::Time> {
        self.heartbeats.next()
    }
    pub fn apps(&self) -> usize {
        self.sessions.values().filter(|s| s.app.is_some()).count()
    }
    pub(crate) fn reconfigure(&mut self, cfg: &Config) {
        self.throttle.set_policy(policy_of(cfg));
    }
    pub(crate) fn sweep(&mut self, now: Time) {
        self.throttle.sweep(now);
    }
}

fn err(id: &RequestId, code: ErrorCode, message: impl Into<String>) -> Reply {
    Reply::error(Some(id.clone()), code, message)
}

impl Engine {
    fn heartbeat_window(&self) -> Duration {
        Duration::from_secs(u64::from(self.config.cti.heartbeat_s))
    }

    /// A CTI connection opened: greet it; it has one heartbeat window to log in.
    pub(crate) fn cti_opened(&mut self, conn: ConnId, peer: SocketAddr) {
        let session = Session { peer: peer.ip(), app: None, client: None, pending: None };
        self.cti.sessions.insert(conn, session);
        let at = self.now + self.heartbeat_window();
        self.cti.heartbeats.arm(conn, at);
        self.out.push_back(Output::CtiSend { conn, text: wire::hello(self.pair.as_ref()) });
    }

    /// Every CTI connection with a session.
    pub(crate) fn cti_conns(&self) -> Vec<ConnId> {
        self.cti.sessions.keys().copied().collect()
    }

    /// Anything received counts as a sign of life.
    pub(crate) fn cti_alive(&mut self, conn: ConnId) {
        if self.cti.sessions.contains_key(&conn) {
            let at = self.now + self.heartbeat_window();
            self.cti.heartbeats.arm(conn, at);
        }
    }

    /// A client's events were queued: if it is a CTI connection, they go out now.
    pub(crate) fn cti_flush(&mut self, client: ClientId) {
        let Some(&conn) = self.cti.conns.get(&client) else { return };
        while let Some((seq, event)) = self.api_poll_event(client) {
            self.out.push_back(Output::CtiSend { conn, text: event.to_json(seq) });
        }
    }

    /// The engine closed a client (its event queue overflowed): its connection goes.
    pub(crate) fn cti_client_closed(&mut self, client: ClientId) {
        let Some(conn) = self.cti.conns.remove(&client) else { return };
        self.cti.heartbeats.cancel(&conn);
        self.cti.sessions.remove(&conn);
        self.out.push_back(Output::Close { conn });
    }

    /// Heartbeat deadlines.
    pub(crate) fn cti_timeouts(&mut self) {
        while let Some(conn) = self.cti.heartbeats.pop_expired(self.now) {
            let app = self.cti.sessions.get(&conn).and_then(|s| s.app.clone());
            log::warn!("cti: {} on conn {}: no heartbeat for {} s; closing", app.as_deref().unwrap_or("unknown application"), conn.0, self.config.cti.heartbeat_s);
            self.cti_close_session(conn, true);
            self.out.push_back(Output::Close { conn });
        }
    }

    /// A session ends: its client is disconnected; on failure its offered calls go to CFOF.
    pub(crate) fn cti_close_session(&mut self, conn: ConnId, failure: bool) {
        self.cti.heartbeats.cancel(&conn);
        let Some(s) = self.cti.sessions.remove(&conn) else { return };
        if let Some(app) = &s.app {
            log::info!("cti: application {app} {}", if failure { "failed (connection lost)" } else { "logged out" });
        }
        match s.client {
            Some(client) => {
                self.cti.conns.remove(&client);
                self.api_disconnect(client, failure);
            }
            None => self.api_deliver(),
        }
    }

    /// One request from an application.
    pub(crate) fn handle_cti(&mut self, conn: ConnId, id: RequestId, request: Request) {
        self.cti_alive(conn);
        let logout = matches!(request, Request::Logout);
        // The reply goes out before any event the request causes.
        let start = self.out.len();
        let Some(reply) = self.cti_request(conn, &id, request) else {
            // A login waiting for its secret check: the reply comes with the verdict.
            return;
        };
        let logged_out = logout && matches!(reply, Reply::Ok { .. });
        let throttled = matches!(reply, Reply::Error { code: ErrorCode::Throttled, .. });
        self.out.insert(start, Output::CtiSend { conn, text: reply.to_json() });
        self.api_deliver();
        if logged_out || throttled {
            if throttled {
                self.cti_close_session(conn, false);
            }
            self.out.push_back(Output::Close { conn });
        }
    }

    /// The reply to one request; `None` only for a login whose secret is being checked.
    fn cti_request(&mut self, conn: ConnId, id: &RequestId, request: Request) -> Option<Reply> {
        let Some(session) = self.cti.sessions.get(&conn) else { return Some(err(id, ErrorCode::Internal, "no session for this connection")) };
        if session.pending.is_some() {
            return Some(err(id, ErrorCode::InvalidState, format!("a login is being checked on this connection; {} must wait for its reply", request.name())));
        }
        let (app, client) = (session.app.clone(), session.client);
        if let (None, Request::Login { app, secret, protocol }) = (&app, &request) {
            return self.cti_login(conn, id, app, secret, *protocol);
        }
        Some(self.cti_session_request(conn, id, app, client, request))
    }

    /// Login, logout and heartbeat are the front end's; every other request is a
    /// command of the logged-in client.
    fn cti_session_request(&mut self, conn: ConnId, id: &RequestId, app: Option<String>, client: Option<ClientId>, request: Request) -> Reply {
        match (&app, client, request) {
            (None, _, Request::Login { .. }) => err(id, ErrorCode::Internal, "login handled above"),
            (Some(a), _, Request::Login { .. }) => err(id, ErrorCode::AlreadyLoggedIn, format!("already logged in as {a}")),
            (None, _, r) => err(id, ErrorCode::NotLoggedIn, format!("log in before {}", r.name())),
            (Some(_), _, Request::Heartbeat) => Reply::ok(id.clone()),
            (Some(_), _, Request::Logout) => {
                self.cti_close_session(conn, false);
                Reply::ok(id.clone())
            }
            (Some(_), None, r) => err(id, ErrorCode::Internal, format!("no client for this session's {}", r.name())),
            (Some(_), Some(_), r) if !self.serving() => {
                let active = self.pair.as_ref().and_then(|p| p.active.clone());
                let where_ = active.map_or_else(|| "no unit is active yet; try again shortly".to_string(), |a| format!("the active unit is {a}"));
                err(id, ErrorCode::NotActive, format!("this box is the standby of its pair: {} goes to the active unit ({where_})", r.name()))
            }
            (Some(_), Some(client), r) => match r.into_command() {
                Ok(command) => Reply::from_result(id.clone(), self.api_handle(client, command)),
                Err(r) => err(id, ErrorCode::Internal, format!("{} handled above", r.name())),
            },
        }
    }

    /// A login: refused at once from a banned source; a generated secret is compared
    /// here (constant time, microseconds); an Argon2id hash goes to the shell's
    /// verifier and the reply waits for `Input::SecretVerified`.
    fn cti_login(&mut self, conn: ConnId, id: &RequestId, app: &str, secret: &str, protocol: Option<u32>) -> Option<Reply> {
        if protocol.is_some_and(|p| p != 1) {
            return Some(err(id, ErrorCode::UnsupportedProtocol, format!("protocol {} is not supported; this server speaks 1", protocol.unwrap_or(0))));
        }
        let peer = self.cti.sessions.get(&conn)?.peer;
        if self.cti.throttle.is_banned(self.now, peer) {
            // Refused, and the connection closed after the reply: a banned source
            // gets nothing more from this one.
            self.cti.stats.logins_throttled += 1;
            log::debug!("cti: login from banned {peer} on conn {} refused; closing", conn.0);
            return Some(err(id, ErrorCode::Throttled, format!("too many failed logins from {peer}; try again later")));
        }
        let ok = match self.config.app_user(app).map(|u| &u.secret) {
            Some(AppSecret::Hash(phc)) => {
                self.cti.next_ticket += 1;
                let ticket = self.cti.next_ticket;
                if let Some(s) = self.cti.sessions.get_mut(&conn) {
                    s.pending = Some((ticket, id.clone(), app.to_string()));
                }
                self.out.push_back(Output::VerifySecret(VerifyJob { ticket, phc: phc.clone(), presented: secret.to_string() }));
                return None;
            }
            Some(s) => s.verify(secret),
            None => false,
        };
        Some(self.cti_login_verdict(conn, id, app, ok))
    }

    /// The shell's verdict on a login's secret.
    pub(crate) fn cti_secret_verified(&mut self, ticket: u64, verdict: Verdict) {
        let found = self.cti.sessions.iter_mut().find(|(_, s)| s.pending.as_ref().is_some_and(|p| p.0 == ticket));
        // The connection may have closed meanwhile: nothing to answer.
        let Some((&conn, s)) = found else { return };
        let Some((_, id, app)) = s.pending.take() else { return };
        let reply = match verdict {
            Verdict::Busy => {
                self.cti.stats.logins_busy += 1;
                log::warn!("cti: login for {app:?} on conn {}: the secret verifier is full", conn.0);
                err(&id, ErrorCode::Capacity, "too many logins are being checked; try again shortly")
            }
            Verdict::Match | Verdict::Mismatch => self.cti_login_verdict(conn, &id, &app, verdict == Verdict::Match),
        };
        self.out.push_back(Output::CtiSend { conn, text: reply.to_json() });
        self.api_deliver();
    }

    fn cti_login_verdict(&mut self, conn: ConnId, id: &RequestId, app: &str, ok: bool) -> Reply {
        let Some(peer) = self.cti.sessions.get(&conn).map(|s| s.peer) else { return err(id, ErrorCode::Internal, "no session for this connection") };
        if !ok {
            self.cti.stats.login_failures += 1;
            match self.cti.throttle.failure(self.now, peer) {
                crate::core::throttle::Verdict::Banned(until) => {
                    self.cti.stats.bans += 1;
                    let secs = until.since(self.now).as_secs();
                    log::warn!("cti: {peer} banned for {secs} s after {} failed logins", self.config.cti.throttle.auth_failures);
                }
                crate::core::throttle::Verdict::Counted(n) => {
                    log::warn!("cti: login refused for application {app:?} from {peer} on conn {} ({n} failed)", conn.0);
                }
            }
            return err(id, ErrorCode::AuthFailed, "unknown application or wrong secret");
        }
        self.cti.throttle.success(peer);
        self.cti.stats.logins += 1;
        let app = app.to_string();
        let live = self.cti.sessions.iter().filter(|(_, s)| s.app.as_deref() == Some(app.as_str())).count();
        if live == 0 && self.cti.apps() >= self.config.cti.max_apps as usize {
            return err(id, ErrorCode::Capacity, format!("{} applications are logged in already", self.config.cti.max_apps));
        }
        // The same application logging in again replaces its old connection.
        let old: Vec<ConnId> = self.cti.sessions.iter().filter(|(c, s)| **c != conn && s.app.as_deref() == Some(app.as_str())).map(|(c, _)| *c).collect();
        for c in old {
            log::info!("cti: application {app} reconnected; closing its old connection {}", c.0);
            self.cti_close_session(c, false);
            self.out.push_back(Output::Close { conn: c });
        }
        let client = self.api_connect(&app, Grant::AppUser);
        self.cti.conns.insert(client, conn);
        if let Some(s) = self.cti.sessions.get_mut(&conn) {
            s.app = Some(app.clone());
            s.client = Some(client);
        }
        log::info!("cti: application {app} logged in on conn {} as client {}", conn.0, client.0);
        let devices: Vec<serde_json::Value> = self.api_devices(client).iter().map(wire::DeviceInfo::to_value).collect();
        Reply::ok(id.clone()).with("app", app).with("heartbeat_s", self.config.cti.heartbeat_s).with("devices", devices)
    }
}

#[cfg(test)]
mod tests {
    //! Sessions on the engine's virtual clock: a silent application is closed when its
    //! heartbeat window passes, and its device is free again; a talking one is not.
    use crate::core::rng::EngineRng;
    use crate::core::{ConnId, CtiTransport, Engine, Input, Output, Restored, Time, Verdict};
    use std::sync::Arc;

    const LOGIN: &str = r#"{"type":"login","id":1,"app":"app","secret":"Test-secret-77"}"#;
    const WRONG: &str = r#"{"type":"login","id":1,"app":"app","secret":"Test-secret-78"}"#;

    fn engine() -> Engine {
        let hash = crate::config::hash_secret("Test-secret-77", &[7; 16]).unwrap();
        let toml = format!(
            "[cti]\nlisten = \"127.0.0.1:0\"\nheartbeat_s = 10\n[sip]\nudp = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [[partition]]\nname = \"p\"\n[[calling_search_space]]\nname = \"c\"\npartitions = [\"p\"]\n\
             [[line]]\ndn = \"2000\"\npartition = \"p\"\n\
             [[device]]\nname = \"rp\"\ntype = \"cti_route_point\"\nlines = [\"2000\"]\ncss = \"c\"\n\
             [[app_user]]\nname = \"app\"\nsecret = \"{hash}\"\ndevices = [\"rp\"]\n"
        );
        let cfg = crate::config::parse_str(&toml, "t.toml").unwrap();
        Engine::new(Arc::new(cfg), EngineRng::seed_from_u64(3), Time::ZERO, 0, Restored::default())
    }

    fn send(e: &mut Engine, now: Time, conn: ConnId, text: &str) -> Vec<Output> {
        e.handle_input(now, Input::CtiMessage { conn, text: text.into() });
        std::iter::from_fn(|| e.poll_output()).collect()
    }

    fn texts(out: &[Output]) -> Vec<String> {
        out.iter().filter_map(|o| if let Output::CtiSend { text, .. } = o { Some(text.clone()) } else { None }).collect()
    }

    fn open_conn(e: &mut Engine, now: Time, conn: ConnId, peer: &str) {
        e.handle_input(now, Input::CtiOpened { conn, peer: peer.parse().unwrap(), transport: CtiTransport::Tcp });
        while e.poll_output().is_some() {}
    }

    /// Sends a login and plays the shell's verifier: the engine must hand the Argon2
    /// check out (no reply yet), and the reply comes with the verdict.
    fn login(e: &mut Engine, now: Time, conn: ConnId, text: &str) -> Vec<String> {
        let out = send(e, now, conn, text);
        let jobs: Vec<_> = out.iter().filter_map(|o| if let Output::VerifySecret(j) = o { Some(j.clone()) } else { None }).collect();
        if jobs.is_empty() {
            return texts(&out); // answered at once (throttled, malformed...)
        }
        assert_eq!((jobs.len(), texts(&out).len()), (1, 0), "one check handed out and no reply before it: {out:?}");
        let verdict = if crate::config::verify_phc(&jobs[0].phc, &jobs[0].presented) { Verdict::Match } else { Verdict::Mismatch };
        e.handle_input(now, Input::SecretVerified { ticket: jobs[0].ticket, verdict });
        texts(&std::iter::from_fn(|| e.poll_output()).collect::<Vec<_>>())
    }

    #[test]
    fn silent_application_is_closed_after_its_heartbeat_window() {
        let mut e = engine();
        let a = ConnId(1);
        e.handle_input(Time::ZERO, Input::CtiOpened { conn: a, peer: "127.0.0.1:9".parse().unwrap(), transport: CtiTransport::Tcp });
        while e.poll_output().is_some() {}
        let t = |s: u64| Time::from_millis(s * 1000);
        assert!(login(&mut e, t(1), a, LOGIN)[0].contains("\"ok\":true"));
        let out = texts(&send(&mut e, t(2), a, r#"{"type":"open","id":2,"device":"rp"}"#));
        assert!(out[0].contains("\"ok\":true") && out[1].contains("device_in_service"), "reply first, then the event: {out:?}");
        // Heartbeats keep it alive past the first window.
        for s in [9, 17, 25] {
            assert!(texts(&send(&mut e, t(s), a, &format!(r#"{{"type":"heartbeat","id":{s}}}"#)))[0].contains("\"ok\":true"));
        }
        e.handle_input(t(34), Input::Timeout);
        assert!(std::iter::from_fn(|| e.poll_output()).all(|o| o != Output::Close { conn: a }), "alive within the window");
        // Then silence: at 35 s (10 s after the last heartbeat) it is closed.
        assert_eq!(e.poll_timeout(), Some(t(35)));
        e.handle_input(t(35), Input::Timeout);
        let out: Vec<Output> = std::iter::from_fn(|| e.poll_output()).collect();
        assert!(out.contains(&Output::Close { conn: a }), "{out:?}");
        // The device is free for another application.
        let b = ConnId(2);
        e.handle_input(t(36), Input::CtiOpened { conn: b, peer: "127.0.0.1:9".parse().unwrap(), transport: CtiTransport::Tcp });
        while e.poll_output().is_some() {}
        assert!(login(&mut e, t(36), b, LOGIN)[0].contains("\"ok\":true"));
        assert!(texts(&send(&mut e, t(37), b, r#"{"type":"open","id":2,"device":"rp"}"#))[0].contains("\"ok\":true"));
    }

    #[test]
    fn argon2_check_leaves_the_engine_and_its_verdict_answers_the_login() {
        let mut e = engine();
        let a = ConnId(1);
        open_conn(&mut e, Time::ZERO, a, "127.0.0.1:40000");
        let out = send(&mut e, Time::ZERO, a, LOGIN);
        let Some(Output::VerifySecret(job)) = out.first() else { panic!("expected a check for the shell: {out:?}") };
        assert_eq!(out.len(), 1, "no reply before the verdict: {out:?}");
        assert!(job.phc.starts_with("$argon2id$") && job.presented == "Test-secret-77");
        assert!(!format!("{job:?}").contains("Test-secret"), "Debug must not show the secret");
        // While the check runs, other requests on the connection are refused by name.
        let r = texts(&send(&mut e, Time::ZERO, a, r#"{"type":"list_devices","id":2}"#));
        assert!(r[0].contains("invalid_state") && r[0].contains("list_devices"), "{r:?}");
        // A verdict for an unknown ticket changes nothing.
        e.handle_input(Time::ZERO, Input::SecretVerified { ticket: job.ticket + 99, verdict: Verdict::Match });
        assert!(e.poll_output().is_none());
        e.handle_input(Time::from_millis(60), Input::SecretVerified { ticket: job.ticket, verdict: Verdict::Match });
        let r = texts(&std::iter::from_fn(|| e.poll_output()).collect::<Vec<_>>());
        assert!(r[0].contains("\"ok\":true") && r[0].contains("\"id\":1") && r[0].contains("\"app\":\"app\""), "{r:?}");
        assert!(texts(&send(&mut e, Time::from_millis(70), a, r#"{"type":"open","id":3,"device":"rp"}"#))[0].contains("\"ok\":true"));
    }

    #[test]
    fn busy_verifier_answers_capacity_without_counting_a_failure() {
        let mut e = engine();
        let a = ConnId(1);
        open_conn(&mut e, Time::ZERO, a, "127.0.0.1:40000");
        for i in 0..10u64 {
            let out = send(&mut e, Time::from_millis(i), a, WRONG);
            let Some(Output::VerifySecret(job)) = out.first() else { panic!("{out:?}") };
            e.handle_input(Time::from_millis(i), Input::SecretVerified { ticket: job.ticket, verdict: Verdict::Busy });
            let r = texts(&std::iter::from_fn(|| e.poll_output()).collect::<Vec<_>>());
            assert!(r[0].contains("\"code\":\"capacity\""), "{r:?}");
        }
        // Ten busy answers did not ban the source: the right secret still logs in.
        assert!(login(&mut e, Time::from_millis(20), a, LOGIN)[0].contains("\"ok\":true"));
    }

    #[test]
    fn failed_logins_ban_their_source_without_touching_other_sources() {
        let mut e = engine();
        let (a, b) = (ConnId(1), ConnId(2));
        open_conn(&mut e, Time::ZERO, a, "127.0.0.1:40000");
        open_conn(&mut e, Time::ZERO, b, "127.0.0.2:40000");
        let t = |ms: u64| Time::from_millis(ms);
        // The default policy: 5 failures within 60 s ban the address for 300 s.
        for i in 0..5 {
            let r = login(&mut e, t(i * 100), a, WRONG);
            assert!(r[0].contains("auth_failed"), "{i}: {r:?}");
        }
        // Banned: refused at once, no check handed to the shell, even with the right
        // secret, and the connection is closed after the reply.
        let out = send(&mut e, t(600), a, LOGIN);
        assert!(!out.iter().any(|o| matches!(o, Output::VerifySecret(_))), "{out:?}");
        assert!(texts(&out)[0].contains("\"code\":\"throttled\""), "{out:?}");
        assert_eq!(out.last(), Some(&Output::Close { conn: a }));
        // Another address logs in.
        assert!(login(&mut e, t(700), b, LOGIN)[0].contains("\"ok\":true"));
        // The ban ends 300 s after the fifth failure.
        let (c, d) = (ConnId(3), ConnId(4));
        open_conn(&mut e, t(400 + 299_000), c, "127.0.0.1:40001");
        let r = login(&mut e, t(400 + 299_000), c, LOGIN);
        assert!(r[0].contains("throttled"), "{r:?}");
        open_conn(&mut e, t(400 + 300_000), d, "127.0.0.1:40002");
        let r = login(&mut e, t(400 + 300_000), d, LOGIN);
        assert!(r[0].contains("\"ok\":true"), "{r:?}");
    }

    #[test]
    fn a_verdict_for_a_closed_connection_is_dropped() {
        let mut e = engine();
        let a = ConnId(1);
        open_conn(&mut e, Time::ZERO, a, "127.0.0.1:40000");
        let out = send(&mut e, Time::ZERO, a, LOGIN);
        let Some(Output::VerifySecret(job)) = out.first() else { panic!("{out:?}") };
        e.handle_input(Time::ZERO, Input::ConnClosed { conn: a });
        while e.poll_output().is_some() {}
        e.handle_input(Time::ZERO, Input::SecretVerified { ticket: job.ticket, verdict: Verdict::Match });
        assert!(e.poll_output().is_none());
        assert_eq!(e.cti.apps(), 0);
    }
}
