//! CTI sessions: which connection is which application, which devices it has open,
//! its heartbeat deadline and event sequence. Requests are checked here (logged in,
//! device known and allowed, not open elsewhere) and call control is handed to the
//! B2BUA. An application whose connection closes or whose heartbeat stops is closed:
//! its devices' unanswered calls go to Call Forward On Failure, and new calls to Call
//! Forward No Answer until a device is opened again.

use super::wire::{self, DeviceInfo, ErrorCode, Event, EventKind, Reply, Request, RequestId};
use crate::config::DeviceKind;
use crate::core::call::box_media::CollectSpec;
use crate::core::call::cti::AppMedia;
use crate::config::{AppSecret, Config};
use crate::core::throttle::{Throttle, ThrottlePolicy};
use crate::core::timer::Timers;
use crate::core::{ConnId, Engine, Output, Time, Verdict, VerifyJob};
use crate::core::snapshot::{Delta, DeviceOwner};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

struct Session {
    /// Where the application connected from (failed logins are counted per address).
    peer: IpAddr,
    app: Option<String>,
    /// A login whose secret the shell is verifying: its ticket, request and app name.
    pending: Option<(u64, RequestId, String)>,
    seq: u64,
    /// Open devices, with the static media termination given at open (CTI ports).
    devices: BTreeMap<String, Option<AppMedia>>,
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
    owners: BTreeMap<String, ConnId>,
    /// Devices held for an application by name, with no connection yet (restored or
    /// replicated from the peer): only that application may open them, and it can
    /// when it logs in here (CTIManager redundancy: applications re-open on the backup).
    reserved: BTreeMap<String, (String, Option<AppMedia>)>,
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
            owners: BTreeMap::new(),
            reserved: BTreeMap::new(),
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

    /// Device ownership by application name: the open devices of logged-in sessions,
    /// and the devices still held for applications that have not opened them again.
    pub(crate) fn owners_by_name(&self) -> Vec<DeviceOwner> {
        let mut v: Vec<DeviceOwner> = self.reserved.iter().map(|(d, (app, media))| DeviceOwner { device: d.clone(), app: app.clone(), media: *media }).collect();
        for s in self.sessions.values() {
            let Some(app) = &s.app else { continue };
            v.extend(s.devices.iter().map(|(d, media)| DeviceOwner { device: d.clone(), app: app.clone(), media: *media }));
        }
        v.sort_by(|a, b| a.device.cmp(&b.device));
        v
    }

    /// Holds a device for its application until it opens it here.
    pub(crate) fn reserve(&mut self, d: DeviceOwner) {
        self.reserved.insert(d.device, (d.app, d.media));
    }

    pub(crate) fn unreserve(&mut self, device: &str) {
        self.reserved.remove(device);
    }

    pub(crate) fn reserved_len(&self) -> usize {
        self.reserved.len()
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
        let session = Session { peer: peer.ip(), app: None, pending: None, seq: 0, devices: BTreeMap::new() };
        self.cti.sessions.insert(conn, session);
        let at = self.now + self.heartbeat_window();
        self.cti.heartbeats.arm(conn, at);
        self.out.push_back(Output::CtiSend { conn, text: wire::hello() });
    }

    /// Anything received counts as a sign of life.
    pub(crate) fn cti_alive(&mut self, conn: ConnId) {
        if self.cti.sessions.contains_key(&conn) {
            let at = self.now + self.heartbeat_window();
            self.cti.heartbeats.arm(conn, at);
        }
    }

    pub(crate) fn cti_send_event(&mut self, conn: ConnId, event: &Event) {
        if let Some(s) = self.cti.sessions.get_mut(&conn) {
            s.seq += 1;
            let text = event.to_json(s.seq);
            self.out.push_back(Output::CtiSend { conn, text });
        }
    }

    /// Delivers what the B2BUA noted to the applications owning the devices.
    pub(crate) fn cti_deliver(&mut self) {
        let notes = std::mem::take(&mut self.sip.cti_notes);
        for n in notes {
            if let Some(&conn) = self.cti.owners.get(&n.device) {
                let ev = Event::new(n.device, Some(&n.call), n.kind);
                self.cti_send_event(conn, &ev);
            }
        }
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

    /// A session ends: its devices are closed; on failure their offered calls go to CFOF.
    pub(crate) fn cti_close_session(&mut self, conn: ConnId, failure: bool) {
        self.cti.heartbeats.cancel(&conn);
        let Some(s) = self.cti.sessions.remove(&conn) else { return };
        if let Some(app) = &s.app {
            log::info!("cti: application {app} {}", if failure { "failed (connection lost)" } else { "logged out" });
        }
        for device in s.devices.keys() {
            self.cti_release_device(device, failure);
        }
        self.cti_deliver();
    }

    fn cti_release_device(&mut self, device: &str, failure: bool) {
        if self.cti.owners.remove(device).is_some() {
            self.out.push_back(Output::Replicate(Delta::DeviceClosed { device: device.to_string() }));
        }
        self.sip.cti_open.remove(device);
        let cfg = self.config.clone();
        let now = self.now;
        let d = device.to_string();
        let is_cti = cfg.device(device).is_some_and(|x| matches!(x.kind, DeviceKind::CtiRoutePoint { .. } | DeviceKind::CtiPort { .. }));
        if is_cti {
            // Offered calls must not wait for an application that is gone: on failure
            // they follow Call Forward On Failure, on a deliberate close No Answer.
            self.sip.cti_command(now, &cfg, &mut self.rng, &mut self.out, |b, cx| b.cti_device_released(cx, &d, failure));
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
        self.cti_deliver();
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
        let app = session.app.clone();
        if let (None, Request::Login { app, secret, protocol }) = (&app, &request) {
            return self.cti_login(conn, id, app, secret, *protocol);
        }
        Some(self.cti_session_request(conn, id, app, request))
    }

    fn cti_session_request(&mut self, conn: ConnId, id: &RequestId, app: Option<String>, request: Request) -> Reply {
        match (&app, request) {
            (None, Request::Login { .. }) => err(id, ErrorCode::Internal, "login handled above"),
            (Some(a), Request::Login { .. }) => err(id, ErrorCode::AlreadyLoggedIn, format!("already logged in as {a}")),
            (None, r) => err(id, ErrorCode::NotLoggedIn, format!("log in before {}", r.name())),
            (Some(_), Request::Heartbeat) => Reply::ok(id.clone()),
            (Some(_), Request::Logout) => {
                self.cti_close_session(conn, false);
                Reply::ok(id.clone())
            }
            (Some(a), Request::ListDevices) => {
                let list: Vec<serde_json::Value> = self.cti_devices(a, conn).iter().map(DeviceInfo::to_value).collect();
                Reply::ok(id.clone()).with("devices", list)
            }
            (Some(a), Request::Open { device, media }) => self.cti_open(conn, id, a, &device, media.map(AppMedia::from)),
            (Some(_), Request::Close { device }) => {
                let owned = self.cti.sessions.get(&conn).is_some_and(|s| s.devices.contains_key(&device));
                if !owned {
                    return err(id, ErrorCode::DeviceNotOpen, format!("device {device:?} is not open"));
                }
                if let Some(s) = self.cti.sessions.get_mut(&conn) {
                    s.devices.remove(&device);
                }
                self.cti_send_event(conn, &Event::new(device.clone(), None, EventKind::DeviceOutOfService));
                self.cti_release_device(&device, false);
                Reply::ok(id.clone())
            }
            (Some(_), Request::Snapshot { device }) => self.cti_snapshot(conn, id, device),
            (Some(_), Request::SetMedia { call, media }) => {
                let owned = self.cti_owned(conn);
                match self.sip.b2bua.cti_set_media(&call, media.into(), &|d| owned.contains_key(d)) {
                    Ok(()) => Reply::ok(id.clone()),
                    Err((code, msg)) => err(id, code, msg),
                }
            }
            (Some(_), Request::Answer { call, media, box_media }) => {
                let owned = self.cti_owned(conn);
                let cfg = self.config.clone();
                let now = self.now;
                let r = self.sip.cti_command(now, &cfg, &mut self.rng, &mut self.out, |b, cx| {
                    // The static media of the very device the call is at.
                    let at = b.cti_device_of(&call);
                    let st = at.as_deref().and_then(|d| owned.get(d).copied().flatten().or_else(|| config_static(&cfg, d)));
                    b.cti_answer(cx, &call, media.map(AppMedia::from), st, box_media, &|d| owned.contains_key(d))
                });
                match r {
                    Ok(m) => Reply::ok(id.clone()).with("media", m.to_value()),
                    Err((code, msg)) => err(id, code, msg),
                }
            }
            (Some(_), Request::Redirect { call, to }) => self.cti_call_op(conn, id, |b, cx, ok| b.cti_redirect(cx, &call, &to, ok)),
            (Some(_), Request::Hold { call }) => self.cti_call_op(conn, id, |b, cx, ok| b.cti_hold(cx, &call, true, ok)),
            (Some(_), Request::Unhold { call }) => self.cti_call_op(conn, id, |b, cx, ok| b.cti_hold(cx, &call, false, ok)),
            (Some(_), Request::Drop { call }) => self.cti_call_op(conn, id, |b, cx, ok| b.cti_drop(cx, &call, ok)),
            (Some(_), Request::Play { call, prompt }) => self.cti_call_op(conn, id, |b, cx, ok| b.cti_play(cx, &call, &prompt, ok)),
            (Some(_), Request::CollectDigits { call, max, terminator, inter_digit_timeout_ms, first_digit_timeout_ms }) => {
                let ms = |v: u32| Duration::from_millis(u64::from(v));
                let spec = CollectSpec { max, terminator, inter_digit: ms(inter_digit_timeout_ms), first_digit: first_digit_timeout_ms.map(ms) };
                self.cti_call_op(conn, id, |b, cx, ok| b.cti_collect_digits(cx, &call, spec, ok))
            }
            (Some(_), Request::StopMedia { call }) => self.cti_call_op(conn, id, |b, _, ok| b.cti_stop_media(&call, ok)),
            (Some(_), Request::SendDigits { call, digits }) => self.cti_call_op(conn, id, |b, _, ok| b.cti_send_digits(&call, &digits, ok)),
            (Some(_), Request::MakeCall { device, to, media }) => {
                let owned = self.cti_owned(conn);
                let Some(static_media) = owned.get(&device) else {
                    return err(id, ErrorCode::DeviceNotOpen, format!("device {device:?} is not open"));
                };
                let m = media.map(AppMedia::from).or(*static_media).or_else(|| config_static(&self.config, &device));
                let cfg = self.config.clone();
                let now = self.now;
                match self.sip.cti_command(now, &cfg, &mut self.rng, &mut self.out, |b, cx| b.cti_make_call(cx, &device, &to, m)) {
                    Ok(call) => Reply::ok(id.clone()).with("call", call),
                    Err((code, msg)) => err(id, code, msg),
                }
            }
        }
    }

    fn cti_owned(&self, conn: ConnId) -> BTreeMap<String, Option<AppMedia>> {
        self.cti.sessions.get(&conn).map(|s| s.devices.clone()).unwrap_or_default()
    }

    fn cti_call_op(
        &mut self,
        conn: ConnId,
        id: &RequestId,
        f: impl FnOnce(&mut crate::core::call::B2bua, &mut crate::core::call::b2bua::Ctx<'_>, &dyn Fn(&str) -> bool) -> Result<(), (ErrorCode, String)>,
    ) -> Reply {
        let owned = self.cti_owned(conn);
        let cfg = self.config.clone();
        let now = self.now;
        let r = self.sip.cti_command(now, &cfg, &mut self.rng, &mut self.out, |b, cx| f(b, cx, &|d| owned.contains_key(d)));
        match r {
            Ok(()) => Reply::ok(id.clone()),
            Err((code, msg)) => err(id, code, msg),
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
        self.cti_deliver();
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
        if let Some(s) = self.cti.sessions.get_mut(&conn) {
            s.app = Some(app.clone());
        }
        log::info!("cti: application {app} logged in on conn {}", conn.0);
        let devices: Vec<serde_json::Value> = self.cti_devices(&app, conn).iter().map(DeviceInfo::to_value).collect();
        Reply::ok(id.clone()).with("app", app).with("heartbeat_s", self.config.cti.heartbeat_s).with("devices", devices)
    }

    fn cti_devices(&self, app: &str, conn: ConnId) -> Vec<DeviceInfo> {
        let Some(user) = self.config.app_user(app) else { return Vec::new() };
        self.config
            .devices
            .iter()
            .filter(|d| user.devices.contains(&d.name))
            .filter(|d| matches!(d.kind, DeviceKind::CtiRoutePoint { .. } | DeviceKind::CtiPort { .. } | DeviceKind::SipPhone { .. }))
            .map(|d| {
                let owner = self.cti.owners.get(&d.name).copied();
                DeviceInfo {
                    name: d.name.clone(),
                    kind: d.kind.type_name().to_string(),
                    lines: d.lines.iter().map(|l| l.to_string()).collect(),
                    open: owner == Some(conn),
                    in_use: owner.is_some_and(|o| o != conn) || self.cti.reserved.get(&d.name).is_some_and(|(a, _)| a != app),
                }
            })
            .collect()
    }

    fn cti_open(&mut self, conn: ConnId, id: &RequestId, app: &str, device: &str, media: Option<AppMedia>) -> Reply {
        let cfg = self.config.clone();
        let Some(d) = cfg.device(device) else { return err(id, ErrorCode::UnknownDevice, format!("no device named {device:?}")) };
        let allowed = self.config.app_user(app).is_some_and(|u| u.devices.contains(device));
        if !allowed {
            return err(id, ErrorCode::DeviceNotAllowed, format!("application {app} may not open {device:?}"));
        }
        match (&d.kind, media) {
            (DeviceKind::CtiRoutePoint { .. }, Some(_)) => {
                return err(id, ErrorCode::BadField, "media: a route point takes media per call (answer or set_media), not at open");
            }
            (DeviceKind::SipPhone { .. }, Some(_)) => return err(id, ErrorCode::BadField, "media: a phone terminates its own media"),
            (DeviceKind::CtiRoutePoint { .. } | DeviceKind::CtiPort { .. } | DeviceKind::SipPhone { .. }, _) => {}
            _ => return err(id, ErrorCode::BadField, format!("device {device:?} is a {}, which applications cannot open", d.kind.type_name())),
        }
        match self.cti.owners.get(device) {
            Some(o) if *o == conn => return err(id, ErrorCode::InvalidState, format!("device {device:?} is already open")),
            Some(_) => return err(id, ErrorCode::DeviceInUse, format!("device {device:?} is open by another application")),
            None => {}
        }
        match self.cti.reserved.get(device) {
            Some((holder, _)) if holder != app => {
                return err(id, ErrorCode::DeviceInUse, format!("device {device:?} is held for application {holder}, which had it open before the failover"));
            }
            Some(_) => {
                self.cti.reserved.remove(device);
            }
            None => {}
        }
        self.out.push_back(Output::Replicate(Delta::DeviceOpened(DeviceOwner { device: device.to_string(), app: app.to_string(), media })));
        self.cti.owners.insert(device.to_string(), conn);
        self.sip.cti_open.insert(device.to_string());
        if let Some(s) = self.cti.sessions.get_mut(&conn) {
            s.devices.insert(device.to_string(), media);
        }
        log::info!("cti: {app} opened {device}");
        self.cti_send_event(conn, &Event::new(device, None, EventKind::DeviceInService));
        Reply::ok(id.clone()).with("device", device).with("kind", d.kind.type_name())
    }

    fn cti_snapshot(&mut self, conn: ConnId, id: &RequestId, device: Option<String>) -> Reply {
        let owned = self.cti_owned(conn);
        let devices: Vec<String> = match device {
            Some(d) if owned.contains_key(&d) => vec![d],
            Some(d) => return err(id, ErrorCode::DeviceNotOpen, format!("device {d:?} is not open")),
            None => owned.keys().cloned().collect(),
        };
        let mut all = Vec::new();
        for d in &devices {
            let calls = self.sip.b2bua.cti_snapshot(d);
            all.extend(calls.iter().map(|c| {
                let mut v = c.to_value();
                if let Some(o) = v.as_object_mut() {
                    o.insert("device".into(), d.clone().into());
                }
                v
            }));
            self.cti_send_event(conn, &Event::new(d.clone(), None, EventKind::Snapshot { calls }));
        }
        Reply::ok(id.clone()).with("calls", all)
    }
}

/// Static media from the configuration of a CTI port, if it has one.
fn config_static(cfg: &crate::config::Config, device: &str) -> Option<AppMedia> {
    match cfg.device(device).map(|d| &d.kind) {
        Some(DeviceKind::CtiPort { media: Some(a), codec }) => Some(AppMedia { ip: a.ip(), port: a.port(), codec: *codec }),
        _ => None,
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
