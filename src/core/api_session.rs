//! Clients of the engine's API (`core/api.rs`): one [`ApiSession`] per authenticated
//! client, holding the devices it has open, its event sequence and its queue of
//! events. Commands are checked here (device known, allowed and not open elsewhere;
//! call at a device the client has open) and call control is handed to the B2BUA.
//! Front ends (the CTI server today) authenticate, connect a client, and then only
//! translate: a command in, its result out, and the client's events as they come.
//!
//! The event queue is bounded (`limits::API_EVENT_QUEUE`). A front end that drains it
//! as events arrive (the CTI server does, within the same engine step) never fills
//! it; a client that lets it fill has missed an event, so its picture of its calls is
//! wrong: the event is not queued and the client is closed as failed at the end of
//! the step, like a CTI application whose connection was lost (its offered calls go
//! to Call Forward On Failure). It reconnects and takes a snapshot.

use crate::config::DeviceKind;
use crate::core::api::{ApiError, ClientId, Command, CommandResult, DeviceCall, DeviceInfo, ErrorCode, Event, EventKind, Grant};
use crate::core::call::box_media::CollectSpec;
use crate::core::call::cti::AppMedia;
use crate::core::snapshot::{Delta, DeviceOwner};
use crate::core::{Engine, Output, Time};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// One client of the engine (plain data, so engine snapshots can carry it).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiSession {
    principal: String,
    grant: Grant,
    /// Open devices, with the static media termination given at open (CTI ports).
    devices: BTreeMap<String, Option<AppMedia>>,
    /// The last event's sequence number (events count from 1).
    seq: u64,
    events: VecDeque<(u64, Event)>,
    /// An event found the queue full; the client is closed at the end of the step.
    overflowed: bool,
}

impl ApiSession {
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// The name the client authenticated as (an `[[app_user]]` for CTI applications).
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// The devices it has open.
    pub fn open_devices(&self) -> impl Iterator<Item = &str> {
        self.devices.keys().map(String::as_str)
    }

    /// Events waiting to be taken.
    pub fn pending_events(&self) -> usize {
        self.events.len()
    }

    /// The next event and its sequence number.
    pub fn poll_event(&mut self) -> Option<(u64, Event)> {
        self.events.pop_front()
    }

    fn push(&mut self, event: Event) {
        if self.events.len() >= crate::limits::API_EVENT_QUEUE {
            self.overflowed = true;
            return;
        }
        self.seq += 1;
        self.events.push_back((self.seq, event));
    }
}

/// Every client, and which client has each device open.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ApiSessions {
    clients: BTreeMap<ClientId, ApiSession>,
    owners: BTreeMap<String, ClientId>,
    /// Devices held for a principal by name, with no client yet (restored or
    /// replicated from the peer): only that principal may open them, and it can when
    /// it connects here (CTIManager redundancy: applications re-open on the backup).
    reserved: BTreeMap<String, (String, Option<AppMedia>)>,
    /// Analog devices the analog ports' client has open and applications share with
    /// it: they see the device's events and may drop and hold its calls.
    #[serde(default)]
    shared: BTreeMap<String, std::collections::BTreeSet<ClientId>>,
    next_id: u64,
}

impl ApiSessions {
    pub fn len(&self) -> usize {
        self.clients.len()
    }
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
    pub fn get(&self, client: ClientId) -> Option<&ApiSession> {
        self.clients.get(&client)
    }
    /// The client that has `device` open.
    pub fn owner(&self, device: &str) -> Option<ClientId> {
        self.owners.get(device).copied()
    }

    /// Device ownership by principal name: the open devices of connected clients,
    /// and the devices still held for principals that have not opened them again.
    pub(crate) fn owners_by_name(&self) -> Vec<DeviceOwner> {
        let mut v: Vec<DeviceOwner> = self.reserved.iter().map(|(d, (app, media))| DeviceOwner { device: d.clone(), app: app.clone(), media: *media }).collect();
        for s in self.clients.values() {
            v.extend(s.devices.iter().map(|(d, media)| DeviceOwner { device: d.clone(), app: s.principal.clone(), media: *media }));
        }
        v.sort_by(|a, b| a.device.cmp(&b.device));
        v
    }

    /// Holds a device for its principal until it opens it here.
    pub(crate) fn reserve(&mut self, d: DeviceOwner) {
        self.reserved.insert(d.device, (d.app, d.media));
    }

    pub(crate) fn clear_reserved(&mut self) {
        self.reserved.clear();
    }

    pub(crate) fn unreserve(&mut self, device: &str) {
        self.reserved.remove(device);
    }

    pub(crate) fn reserved_len(&self) -> usize {
        self.reserved.len()
    }

    /// The principal a device is held for, when it is.
    fn held_for(&self, device: &str) -> Option<&str> {
        self.reserved.get(device).map(|(a, _)| a.as_str())
    }
}

impl Engine {
    /// The API's clients, for inspection (tests, status).
    pub fn api(&self) -> &ApiSessions {
        &self.api
    }

    /// An authenticated client starts: `principal` is who it is, `grant` what it may open.
    pub fn api_connect(&mut self, principal: &str, grant: Grant) -> ClientId {
        self.api.next_id += 1;
        let id = ClientId(self.api.next_id);
        let session = ApiSession { principal: principal.to_string(), grant, devices: BTreeMap::new(), seq: 0, events: VecDeque::new(), overflowed: false };
        self.api.clients.insert(id, session);
        id
    }

    /// A client ends: its devices are closed; on `failure` (it was lost rather than
    /// leaving) their offered calls go to Call Forward On Failure, else No Answer.
    pub fn api_disconnect(&mut self, client: ClientId, failure: bool) {
        if let Some(s) = self.api.clients.remove(&client) {
            for device in s.devices.keys() {
                if !self.api_unshare(device, client) {
                    self.api_release_device(device, failure);
                }
            }
        }
        self.api_deliver();
    }

    /// One command from a client at time `now` (an in-process client's entry; drain
    /// `poll_output` afterwards as after `handle_input`).
    pub fn api_command(&mut self, now: Time, client: ClientId, command: Command) -> Result<CommandResult, ApiError> {
        if now > self.now {
            self.now = now;
        }
        self.api_handle(client, command)
    }

    /// The next event for a client, with its sequence number.
    pub fn api_poll_event(&mut self, client: ClientId) -> Option<(u64, Event)> {
        self.api.clients.get_mut(&client)?.poll_event()
    }

    /// Carries out one command, then delivers the events it caused.
    pub(crate) fn api_handle(&mut self, client: ClientId, command: Command) -> Result<CommandResult, ApiError> {
        let r = self.api_run(client, command);
        self.api_deliver();
        r
    }

    /// Queues an event for a client and tells its front end.
    fn api_emit(&mut self, client: ClientId, event: Event) {
        if let Some(s) = self.api.clients.get_mut(&client) {
            s.push(event);
            self.api_wake(client);
        }
    }

    /// Delivers what the B2BUA noted to the clients owning the devices; closes any
    /// client whose queue overflowed.
    pub(crate) fn api_deliver(&mut self) {
        let notes = std::mem::take(&mut self.sip.cti_notes);
        for n in notes {
            let sharers: Vec<ClientId> = self.api.shared.get(&n.device).map(|s| s.iter().copied().collect()).unwrap_or_default();
            for c in sharers {
                self.api_emit(c, Event::new(n.device.clone(), Some(&n.call), n.kind.clone()));
            }
            if let Some(client) = self.api.owner(&n.device) {
                self.api_emit(client, Event::new(n.device, Some(&n.call), n.kind));
            }
        }
        let overflowed = self.api.clients.iter().find(|(_, s)| s.overflowed).map(|(c, _)| *c);
        if let Some(c) = overflowed {
            let principal = self.api.clients.get(&c).map(|s| s.principal.clone()).unwrap_or_default();
            log::warn!("api: client {} ({principal}) left {} events untaken; closing it as failed", c.0, crate::limits::API_EVENT_QUEUE);
            self.api_closed(c);
            // Delivers again, and so closes any other overflowed client.
            self.api_disconnect(c, true);
        }
    }

    /// An application stops sharing `device`: true when it was sharing it.
    fn api_unshare(&mut self, device: &str, client: ClientId) -> bool {
        let Some(set) = self.api.shared.get_mut(device) else { return false };
        let was = set.remove(&client);
        if set.is_empty() {
            self.api.shared.remove(device);
        }
        was
    }

    fn api_release_device(&mut self, device: &str, failure: bool) {
        // The applications sharing it lose it with its owner (a port out of service).
        for c in self.api.shared.remove(device).unwrap_or_default() {
            if let Some(s) = self.api.clients.get_mut(&c) {
                s.devices.remove(device);
            }
            self.api_emit(c, Event::new(device.to_string(), None, EventKind::DeviceOutOfService));
        }
        if self.api.owners.remove(device).is_some() {
            self.out.push_back(Output::Replicate(Delta::DeviceClosed { device: device.to_string() }));
        }
        self.sip.cti_open.remove(device);
        let cfg = self.config.clone();
        let now = self.now;
        let d = device.to_string();
        let is_cti = cfg.device(device).is_some_and(|x| matches!(x.kind, DeviceKind::CtiRoutePoint { .. } | DeviceKind::CtiPort { .. } | DeviceKind::AnalogFxs { .. } | DeviceKind::AnalogFxo { .. }));
        if is_cti {
            // Offered calls must not wait for a client that is gone: on failure they
            // follow Call Forward On Failure, on a deliberate close No Answer.
            // Any call at the device may change.
            self.sip.touch_all = true;
            self.sip.cti_command(now, &cfg, &mut self.rng, &mut self.out, |b, cx| b.cti_device_released(cx, &d, failure));
        }
    }

    fn api_run(&mut self, client: ClientId, command: Command) -> Result<CommandResult, ApiError> {
        let Some(s) = self.api.clients.get(&client) else {
            return Err(ApiError::new(ErrorCode::NotLoggedIn, format!("client {} is not connected", client.0)));
        };
        let principal = s.principal.clone();
        let done = |r: Result<(), (ErrorCode, String)>| r.map(|()| CommandResult::Done).map_err(ApiError::from);
        match command {
            Command::ListDevices => Ok(CommandResult::Devices { devices: self.api_devices(client) }),
            Command::Open { device, media } => self.api_open(client, &principal, &device, media.map(AppMedia::from)),
            Command::Close { device } => {
                let owned = self.api.clients.get_mut(&client).and_then(|s| s.devices.remove(&device)).is_some();
                if !owned {
                    return Err(ApiError::new(ErrorCode::DeviceNotOpen, format!("device {device:?} is not open")));
                }
                self.api_emit(client, Event::new(device.clone(), None, EventKind::DeviceOutOfService));
                if !self.api_unshare(&device, client) {
                    self.api_release_device(&device, false);
                }
                Ok(CommandResult::Done)
            }
            Command::Snapshot { device } => self.api_snapshot(client, device),
            Command::SetMedia { call, media } => {
                let owned = self.api_owned(client);
                done(self.sip.b2bua.cti_set_media(&call, media.into(), &|d| owned.contains_key(d)))
            }
            Command::Answer { call, media, box_media } => {
                if let Some(d) = self.sip.b2bua.cti_device_of(&call).filter(|d| self.api.shared.get(d).is_some_and(|s| s.contains(&client))) {
                    let how = if cfg_is_fxs(&self.config, &d) { "the subscriber answers by lifting the handset" } else { "the line answers when the box's side does" };
                    return Err(ApiError::new(ErrorCode::InvalidState, format!("{d} is an analog port: {how}; an application cannot answer for it")));
                }
                self.sip.touch_call(&call);
                let owned = self.api_owned(client);
                let cfg = self.config.clone();
                let now = self.now;
                let r = self.sip.cti_command(now, &cfg, &mut self.rng, &mut self.out, |b, cx| {
                    // The static media of the very device the call is at.
                    let at = b.cti_device_of(&call);
                    let st = at.as_deref().and_then(|d| owned.get(d).copied().flatten().or_else(|| config_static(&cfg, d)));
                    b.cti_answer(cx, &call, media.map(AppMedia::from), st, box_media, &|d| owned.contains_key(d))
                });
                r.map(|media| CommandResult::Answered { media }).map_err(ApiError::from)
            }
            Command::Redirect { call, to } => done(self.api_call_op(&call, client, |b, cx, ok| b.cti_redirect(cx, &call, &to, ok))),
            Command::Hold { call } => done(self.api_call_op(&call, client, |b, cx, ok| b.cti_hold(cx, &call, true, ok))),
            Command::Unhold { call } => done(self.api_call_op(&call, client, |b, cx, ok| b.cti_hold(cx, &call, false, ok))),
            Command::Drop { call } => done(self.api_call_op(&call, client, |b, cx, ok| b.cti_drop(cx, &call, ok))),
            Command::Play { call, prompt } => done(self.api_call_op(&call, client, |b, cx, ok| b.cti_play(cx, &call, &prompt, ok))),
            Command::CollectDigits { call, max, terminator, inter_digit_timeout_ms, first_digit_timeout_ms } => {
                let ms = |v: u32| Duration::from_millis(u64::from(v));
                let spec = CollectSpec { max, terminator, inter_digit: ms(inter_digit_timeout_ms), first_digit: first_digit_timeout_ms.map(ms) };
                done(self.api_call_op(&call, client, |b, cx, ok| b.cti_collect_digits(cx, &call, spec, ok)))
            }
            Command::StopMedia { call } => done(self.api_call_op(&call, client, |b, _, ok| b.cti_stop_media(&call, ok))),
            Command::SendDigits { call, digits } => done(self.api_call_op(&call, client, |b, _, ok| b.cti_send_digits(&call, &digits, ok))),
            Command::MakeCall { device, to, media: None, caller: None } if self.api.shared.get(&device).is_some_and(|s| s.contains(&client)) => {
                // An FXS port off hook (dial tone): the box dials for the subscriber.
                let call = self.analog_dial_for_app(&device, &to).map_err(|m| ApiError::new(ErrorCode::InvalidState, m))?;
                // The new call is at a device the application shares: it sees its events.
                Ok(CommandResult::Placed { call })
            }
            Command::MakeCall { device, .. } if self.api.shared.get(&device).is_some_and(|s| s.contains(&client)) => {
                Err(ApiError::new(ErrorCode::BadField, format!("make_call from analog port {device} takes neither media nor caller: the port's own are used")))
            }
            Command::MakeCall { device, to, media, caller } => {
                let owned = self.api_owned(client);
                let Some(static_media) = owned.get(&device) else {
                    return Err(ApiError::new(ErrorCode::DeviceNotOpen, format!("device {device:?} is not open")));
                };
                let m = media.map(AppMedia::from).or(*static_media).or_else(|| config_static(&self.config, &device));
                let cfg = self.config.clone();
                let now = self.now;
                let r = self.sip.cti_command(now, &cfg, &mut self.rng, &mut self.out, |b, cx| b.cti_make_call(cx, &device, &to, m, caller));
                if let Ok(call) = &r {
                    self.sip.touch_call(call);
                }
                r.map(|call| CommandResult::Placed { call }).map_err(ApiError::from)
            }
        }
    }

    fn api_owned(&self, client: ClientId) -> BTreeMap<String, Option<AppMedia>> {
        self.api.clients.get(&client).map(|s| s.devices.clone()).unwrap_or_default()
    }

    /// A command on one call: `call` is the only call it may change.
    pub(crate) fn api_call_op(
        &mut self,
        call: &str,
        client: ClientId,
        f: impl FnOnce(&mut crate::core::call::B2bua, &mut crate::core::call::b2bua::Ctx<'_>, &dyn Fn(&str) -> bool) -> Result<(), (ErrorCode, String)>,
    ) -> Result<(), (ErrorCode, String)> {
        self.sip.touch_call(call);
        let owned = self.api_owned(client);
        let cfg = self.config.clone();
        let now = self.now;
        self.sip.cti_command(now, &cfg, &mut self.rng, &mut self.out, |b, cx| f(b, cx, &|d| owned.contains_key(d)))
    }

    /// Whether a client's grant lets it open `device`.
    fn api_may_open(&self, client: ClientId, device: &str) -> bool {
        match self.api.clients.get(&client).map(|s| (&s.grant, &s.principal)) {
            Some((Grant::AppUser, p)) => self.config.app_user(p).is_some_and(|u| u.devices.contains(device)),
            Some((Grant::Devices(set), _)) => set.contains(device),
            None => false,
        }
    }

    /// The devices a client may open, as `list_devices` describes them.
    pub(crate) fn api_devices(&self, client: ClientId) -> Vec<DeviceInfo> {
        self.config
            .devices
            .iter()
            .filter(|d| self.api_may_open(client, &d.name))
            .filter(|d| matches!(d.kind, DeviceKind::CtiRoutePoint { .. } | DeviceKind::CtiPort { .. } | DeviceKind::SipPhone { .. } | DeviceKind::AnalogFxs { .. } | DeviceKind::AnalogFxo { .. }))
            .map(|d| {
                let owner = self.api.owner(&d.name);
                DeviceInfo {
                    name: d.name.clone(),
                    kind: d.kind.type_name().to_string(),
                    lines: d.lines.iter().map(|l| l.to_string()).collect(),
                    open: owner == Some(client) || self.api.shared.get(&d.name).is_some_and(|c| c.contains(&client)),
                    // An analog port in service is open by the ports' client, and
                    // applications may still open it (shared): not in use to them.
                    in_use: owner.is_some_and(|o| o != client && !(analog_kind(&d.kind) && self.api.get(o).is_some_and(|s| s.principal == crate::core::analog::engine::PRINCIPAL)))
                        || self.api.held_for(&d.name).is_some_and(|a| Some(a) != self.api.get(client).map(ApiSession::principal)),
                }
            })
            .collect()
    }

    fn api_open(&mut self, client: ClientId, principal: &str, device: &str, media: Option<AppMedia>) -> Result<CommandResult, ApiError> {
        let cfg = self.config.clone();
        let fail = |code, message: String| Err(ApiError::new(code, message));
        let Some(d) = cfg.device(device) else { return fail(ErrorCode::UnknownDevice, format!("no device named {device:?}")) };
        if !self.api_may_open(client, device) {
            return fail(ErrorCode::DeviceNotAllowed, format!("application {principal} may not open {device:?}"));
        }
        match (&d.kind, media) {
            (DeviceKind::CtiRoutePoint { .. }, Some(_)) => {
                return fail(ErrorCode::BadField, "media: a route point takes media per call (answer or set_media), not at open".into());
            }
            (DeviceKind::SipPhone { .. }, Some(_)) => return fail(ErrorCode::BadField, "media: a phone terminates its own media".into()),
            (DeviceKind::AnalogFxs { .. } | DeviceKind::AnalogFxo { .. }, Some(_)) => return fail(ErrorCode::BadField, "media: an analog port's media is the port's own".into()),
            (DeviceKind::CtiRoutePoint { .. } | DeviceKind::CtiPort { .. } | DeviceKind::SipPhone { .. } | DeviceKind::AnalogFxs { .. } | DeviceKind::AnalogFxo { .. }, _) => {}
        }
        let analog = matches!(d.kind, DeviceKind::AnalogFxs { .. } | DeviceKind::AnalogFxo { .. });
        if analog && self.api.clients.get(&client).is_some_and(|s| s.principal != crate::core::analog::engine::PRINCIPAL) {
            // The analog ports' client has the device open while the port is in
            // service; an application shares it.
            match self.api.owner(device) {
                Some(o) if self.api.clients.get(&o).is_some_and(|s| s.principal == crate::core::analog::engine::PRINCIPAL) => {}
                _ => return fail(ErrorCode::InvalidState, format!("analog port {device:?} is not in service")),
            }
            if self.api.shared.get(device).is_some_and(|s| s.contains(&client)) {
                return fail(ErrorCode::InvalidState, format!("device {device:?} is already open"));
            }
            self.api.shared.entry(device.to_string()).or_default().insert(client);
            if let Some(s) = self.api.clients.get_mut(&client) {
                s.devices.insert(device.to_string(), None);
            }
            log::info!("api: {principal} opened {device} (shared with the analog ports)");
            self.api_emit(client, Event::new(device, None, EventKind::DeviceInService));
            return Ok(CommandResult::Opened { device: device.to_string(), kind: d.kind.type_name().to_string() });
        }
        match self.api.owner(device) {
            Some(o) if o == client => return fail(ErrorCode::InvalidState, format!("device {device:?} is already open")),
            Some(_) => return fail(ErrorCode::DeviceInUse, format!("device {device:?} is open by another application")),
            None => {}
        }
        match self.api.held_for(device) {
            Some(holder) if holder != principal => {
                return fail(ErrorCode::DeviceInUse, format!("device {device:?} is held for application {holder}, which had it open before the failover"));
            }
            Some(_) => self.api.unreserve(device),
            None => {}
        }
        self.out.push_back(Output::Replicate(Delta::DeviceOpened(DeviceOwner { device: device.to_string(), app: principal.to_string(), media })));
        self.api.owners.insert(device.to_string(), client);
        self.sip.cti_open.insert(device.to_string());
        if let Some(s) = self.api.clients.get_mut(&client) {
            s.devices.insert(device.to_string(), media);
        }
        log::info!("api: {principal} opened {device}");
        self.api_emit(client, Event::new(device, None, EventKind::DeviceInService));
        Ok(CommandResult::Opened { device: device.to_string(), kind: d.kind.type_name().to_string() })
    }

    fn api_snapshot(&mut self, client: ClientId, device: Option<String>) -> Result<CommandResult, ApiError> {
        let owned = self.api_owned(client);
        let devices: Vec<String> = match device {
            Some(d) if owned.contains_key(&d) => vec![d],
            Some(d) => return Err(ApiError::new(ErrorCode::DeviceNotOpen, format!("device {d:?} is not open"))),
            None => owned.keys().cloned().collect(),
        };
        let mut all = Vec::new();
        for d in &devices {
            let calls = self.sip.b2bua.cti_snapshot(d);
            all.extend(calls.iter().map(|c| DeviceCall { device: d.clone(), call: c.clone() }));
            self.api_emit(client, Event::new(d.clone(), None, EventKind::Snapshot { calls }));
        }
        Ok(CommandResult::Calls { calls: all })
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
#[path = "api_session_tests.rs"]
mod tests;

fn cfg_is_fxs(cfg: &crate::config::Config, device: &str) -> bool {
    cfg.device(device).is_some_and(|d| matches!(d.kind, DeviceKind::AnalogFxs { .. }))
}

fn analog_kind(k: &DeviceKind) -> bool {
    matches!(k, DeviceKind::AnalogFxs { .. } | DeviceKind::AnalogFxo { .. })
}
