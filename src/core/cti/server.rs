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
use crate::core::timer::Timers;
use crate::core::{ConnId, Engine, Output};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

#[derive(Default)]
struct Session {
    app: Option<String>,
    seq: u64,
    /// Open devices, with the static media termination given at open (CTI ports).
    devices: BTreeMap<String, Option<AppMedia>>,
}

/// All CTI connections.
#[derive(Default)]
pub struct CtiSessions {
    sessions: HashMap<ConnId, Session>,
    owners: BTreeMap<String, ConnId>,
    heartbeats: Timers<ConnId>,
}

impl CtiSessions {
    pub fn next_timeout(&self) -> Option<crate::core::Time> {
        self.heartbeats.next()
    }
    pub fn apps(&self) -> usize {
        self.sessions.values().filter(|s| s.app.is_some()).count()
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
    pub(crate) fn cti_opened(&mut self, conn: ConnId) {
        self.cti.sessions.insert(conn, Session::default());
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
        self.cti.owners.remove(device);
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
        let reply = self.cti_request(conn, &id, request);
        let logged_out = logout && matches!(reply, Reply::Ok { .. });
        self.out.insert(start, Output::CtiSend { conn, text: reply.to_json() });
        self.cti_deliver();
        if logged_out {
            self.out.push_back(Output::Close { conn });
        }
    }

    fn cti_request(&mut self, conn: ConnId, id: &RequestId, request: Request) -> Reply {
        let Some(session) = self.cti.sessions.get(&conn) else { return err(id, ErrorCode::Internal, "no session for this connection") };
        let app = session.app.clone();
        match (&app, request) {
            (None, Request::Login { app, secret, protocol }) => self.cti_login(conn, id, app, secret, protocol),
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

    fn cti_login(&mut self, conn: ConnId, id: &RequestId, app: String, secret: String, protocol: Option<u32>) -> Reply {
        if protocol.is_some_and(|p| p != 1) {
            return err(id, ErrorCode::UnsupportedProtocol, format!("protocol {} is not supported; this server speaks 1", protocol.unwrap_or(0)));
        }
        let ok = self.config.app_user(&app).is_some_and(|u| u.secret.verify(&secret));
        if !ok {
            log::warn!("cti: login refused for application {app:?} on conn {}", conn.0);
            return err(id, ErrorCode::AuthFailed, "unknown application or wrong secret");
        }
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
                    in_use: owner.is_some_and(|o| o != conn),
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
    use crate::core::{ConnId, CtiTransport, Engine, Input, Output, Restored, Time};
    use std::sync::Arc;

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

    #[test]
    fn silent_application_is_closed_after_its_heartbeat_window() {
        let mut e = engine();
        let a = ConnId(1);
        e.handle_input(Time::ZERO, Input::CtiOpened { conn: a, peer: "127.0.0.1:9".parse().unwrap(), transport: CtiTransport::Tcp });
        while e.poll_output().is_some() {}
        let t = |s: u64| Time::from_millis(s * 1000);
        assert!(texts(&send(&mut e, t(1), a, r#"{"type":"login","id":1,"app":"app","secret":"Test-secret-77"}"#))[0].contains("\"ok\":true"));
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
        send(&mut e, t(36), b, r#"{"type":"login","id":1,"app":"app","secret":"Test-secret-77"}"#);
        assert!(texts(&send(&mut e, t(37), b, r#"{"type":"open","id":2,"device":"rp"}"#))[0].contains("\"ok\":true"));
    }
}
