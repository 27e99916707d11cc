//! The box as a SIP element: every SIP message enters here. Parses (malformed ones
//! get 400 or are dropped and counted), applies the message checks, drops banned
//! scanners, runs transactions, authenticates, and hands REGISTER to the registrar and
//! calls to the B2BUA. Owns the SIP half of the engine's state. Pure.

use super::call::b2bua::Ctx;
use super::call::{Action, B2bua, ServerTxn};
use super::digest::NonceBook;
use super::rng::EngineRng;
use super::registrar::{self, Binding, ChallengeKind, Denied, Guard, Origin, Registrar};
use super::snapshot::{BindingSnapshot, Delta};
use super::sip::txn::{ClientEvent, Incoming, SipTimers, TxnLayer};
use super::sip::{self, answer_unparsable, check_request, HeaderName, Message, Method, Request, Response, SipHeaders, Unparsable};
use super::throttle::{Throttle, ThrottlePolicy};
use super::{Output, Time};
use crate::config::Config;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::Duration;


/// Counters an operator reads on /status.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SipStats {
    pub received: u64,
    /// Could not be parsed and could not be answered: dropped.
    pub malformed_dropped: u64,
    /// Could not be parsed, answered with 400 (or 505/513).
    pub malformed_answered: u64,
    /// Refused by the message checks (416, 420, 415, 483...).
    pub rejected: u64,
    /// From a banned source: dropped unanswered.
    pub banned_dropped: u64,
    pub auth_failures: u64,
    pub registrations: u64,
    pub calls_started: u64,
    /// Requests refused with 503 for capacity (new calls past the call limit, and
    /// requests past the transaction limit).
    pub refused_overload: u64,
}

/// Persisted registrations: bindings plus the wall clock they were saved at, so
/// expiries survive a restart (engine time restarts at zero).
#[derive(Serialize, Deserialize)]
pub struct SavedRegistrations {
    pub version: u8,
    pub saved_unix_ms: u64,
    pub saved_at: Time,
    pub registrar: Registrar,
}

pub struct SipEndpoint {
    pub registrar: Registrar,
    nonces: NonceBook,
    throttle: Throttle,
    txn: TxnLayer,
    pub b2bua: B2bua,
    pub stats: SipStats,
    /// The set of bindings changed since the last save: write at the next pump.
    dirty: bool,
    /// Only expiries changed since the last save (refreshes): written when
    /// `refresh_save_due` comes, coalesced (docs/ARCHITECTURE.md, Persistence).
    refresh_pending: bool,
    last_saved: Option<Time>,
    /// The time of the latest input (a save at `Input::Stop` is stamped with it).
    last_now: Time,
    /// Wall clock (unix ms) at engine time zero, for persisted expiries.
    unix_at_zero_ms: u64,
    /// Devices a live CTI application has open (kept by the CTI sessions).
    pub cti_open: std::collections::BTreeSet<String>,
    /// What the B2BUA has to tell CTI applications, for the engine to deliver.
    pub cti_notes: Vec<super::call::cti::CtiNote>,
    /// Calls the current input reached, for the engine to compare with what it last
    /// replicated; `touch_all` when any call may have changed (a CTI request).
    pub(crate) touched: Vec<u64>,
    /// The shell says the engine loop is saturated (`Input::Load`): new calls are
    /// refused until it clears.
    busy: bool,
    pub(crate) touch_all: bool,
    /// Registration facts changed, emitted as `Output::Replicate` by `pump`.
    deltas: Vec<Delta>,
}

/// Whether two lists of a device's bindings are the same set (same contacts at the same
/// addresses), whatever their expiries: a refresh, not a change to save at once.
fn same_set(a: &[Binding], b: &[Binding]) -> bool {
    let key = |x: &Binding| (x.uri.clone(), x.source, x.transport == super::Transport::Tcp, x.local, x.q);
    let mut ka: Vec<_> = a.iter().map(key).collect();
    let mut kb: Vec<_> = b.iter().map(key).collect();
    ka.sort();
    kb.sort();
    ka == kb
}

fn timers_of(cfg: &Config) -> SipTimers {
    SipTimers {
        t1: Duration::from_millis(u64::from(cfg.sip.t1_ms)),
        t2: Duration::from_millis(u64::from(cfg.sip.t2_ms)),
        t4: Duration::from_millis(u64::from(cfg.sip.t4_ms)),
    }
}

fn policy_of(cfg: &Config) -> ThrottlePolicy {
    ThrottlePolicy {
        limit: cfg.sip.throttle.auth_failures,
        window: Duration::from_secs(u64::from(cfg.sip.throttle.window_s)),
        ban: Duration::from_secs(u64::from(cfg.sip.throttle.ban_s)),
    }
}

/// Adds `received` and `rport` to the top Via (RFC 3261 §18.2.1, RFC 3581 §4).
fn stamp_via(req: &mut Request, origin: &Origin) {
    let Some(first) = req.headers.0.iter_mut().find(|h| h.name == HeaderName::Via) else { return };
    let received = sip::text::AddrText::ip(origin.source.ip());
    let mut v: Option<String> = None;
    let mut failed = false;
    let balanced = sip::text::each_comma(&first.value, |part| match v.as_mut() {
        None => match sip::Via::stamped(part, received.as_str(), origin.source.port()) {
            Some(top) => v = Some(top),
            None => failed = true,
        },
        Some(v) => {
            v.push_str(", ");
            v.push_str(part);
        }
    });
    if let (Ok(()), false, Some(v)) = (balanced, failed, v) {
        first.value = v.into();
    }
}

fn answer(req: &Request, code: u16, tag: &str) -> Response {
    Response::to_request(req, code, Some(tag))
}

/// 503 for a request the box has no room for, with the time to wait before trying
/// again (RFC 3261 §21.5.4).
fn overloaded(req: &Request, what: &str, tag: &str) -> Response {
    let mut r = answer(req, 503, tag);
    r.reason = format!("Service Unavailable ({what})");
    r.headers.add(HeaderName::RetryAfter, crate::limits::SIP_OVERLOAD_RETRY_AFTER_S.to_string());
    r
}

impl SipEndpoint {
    pub fn new(cfg: &Config, rng: &mut EngineRng, unix_at_zero_ms: u64) -> SipEndpoint {
        let mut key = [0u8; 32];
        rng.fill(&mut key);
        SipEndpoint {
            registrar: Registrar::default(),
            nonces: NonceBook::new(key),
            throttle: Throttle::new(policy_of(cfg)),
            txn: TxnLayer::new(timers_of(cfg), cfg.sip.max_transactions as usize),
            b2bua: B2bua::default(),
            stats: SipStats::default(),
            dirty: false,
            refresh_pending: false,
            last_saved: None,
            last_now: Time::ZERO,
            unix_at_zero_ms,
            cti_open: Default::default(),
            cti_notes: Vec::new(),
            touched: Vec::new(),
            busy: false,
            touch_all: false,
            deltas: Vec::new(),
        }
    }

    /// A new configuration: timers and throttle policy follow it.
    pub fn reconfigure(&mut self, cfg: &Config) {
        self.txn.set_timers(timers_of(cfg));
        self.txn.set_limit(cfg.sip.max_transactions as usize);
        self.throttle.set_policy(policy_of(cfg));
    }

    /// Restores saved registrations, moving their expiries onto this engine's clock.
    pub fn restore(&mut self, saved: SavedRegistrations, now: Time) {
        let now_unix_ms = self.unix_at_zero_ms + now.as_millis();
        let elapsed_ms = now_unix_ms.saturating_sub(saved.saved_unix_ms);
        let mut r = saved.registrar;
        r.rebase(saved.saved_at, now, Duration::from_millis(elapsed_ms));
        r.expire(now);
        log::info!("registrar: restored {} registrations", r.len());
        self.registrar = r;
    }

    /// Wall clock (unix ms) at engine time zero.
    pub fn unix_at_zero_ms(&self) -> u64 {
        self.unix_at_zero_ms
    }

    /// When refreshed expiries are to be written: `REGISTRATIONS_REFRESH_SAVE_MS`
    /// after the last save (at once if nothing was saved in this run).
    fn refresh_save_due(&self) -> Option<Time> {
        let last = self.last_saved.filter(|_| self.refresh_pending)?;
        Some(last + Duration::from_millis(crate::limits::REGISTRATIONS_REFRESH_SAVE_MS))
    }

    /// A clean stop: refreshes held back are written now.
    pub fn stopping(&mut self, now: Time, out: &mut VecDeque<Output>) {
        self.last_now = now;
        if self.refresh_pending {
            self.dirty = true;
        }
        self.save_if_dirty(out);
    }

    /// The shell's load signal (`Input::Load`).
    pub fn set_busy(&mut self, busy: bool) {
        if busy != self.busy {
            if busy {
                log::warn!("sip: the engine loop is saturated; new calls are refused with 503 until it clears");
            } else {
                log::info!("sip: the engine loop has room again; new calls are taken");
            }
        }
        self.busy = busy;
    }

    /// SIP transactions alive (server and client, live and completed records), for
    /// leak checks.
    pub fn transactions(&self) -> usize {
        self.txn.len() + self.txn.completed()
    }

    /// Live and completed transactions, and the layer's counters (for /status).
    pub fn transaction_status(&self) -> (crate::core::sip::txn::TxnCounts, crate::core::sip::txn::TxnStats) {
        (self.txn.counts(), self.txn.stats)
    }

    pub fn next_timeout(&self) -> Option<Time> {
        [self.txn.next_timeout(), self.b2bua.next_timeout(), self.registrar.next_expiry(), self.refresh_save_due()].into_iter().flatten().min()
    }

    pub fn connection_closed(&mut self, conn: super::ConnId) {
        self.registrar.connection_closed(conn);
    }

    /// Housekeeping: expiries of registrations, nonces, throttle entries.
    pub fn sweep(&mut self, now: Time) {
        self.nonces.sweep(now);
        self.throttle.sweep(now);
        self.txn.shrink();
        self.b2bua.shrink();
    }

    /// Once a second: answered calls idle for `[sip] call_idle_s` are probed
    /// (call/idle.rs).
    pub fn sweep_calls(&mut self, now: Time, cfg: &Config, rng: &mut EngineRng, out: &mut VecDeque<Output>) {
        let probed = self.run_b2bua(now, cfg, rng, out, |b, cx| b.sweep_idle(cx));
        self.touched.extend(probed);
    }

    /// Bytes from the network.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_message(&mut self, now: Time, cfg: &Config, rng: &mut EngineRng, origin: Origin, bytes: &[u8], out: &mut VecDeque<Output>) {
        self.stats.received += 1;
        if self.throttle.is_banned(now, origin.source.ip()) {
            self.stats.banned_dropped += 1;
            return;
        }
        match sip::parse_message(bytes) {
            Err(e) => match answer_unparsable(bytes, &e, &rng.token(12)) {
                Unparsable::Answer(r) => {
                    log::debug!("sip: {} from {}: answered {}", e, origin.source, r.status);
                    self.stats.malformed_answered += 1;
                    transmit(out, r.to_bytes(), origin);
                }
                Unparsable::Drop => {
                    log::debug!("sip: {} from {}: dropped", e, origin.source);
                    self.stats.malformed_dropped += 1;
                }
            },
            Ok(Message::Request(mut req)) => {
                stamp_via(&mut req, &origin);
                if let Err(rej) = check_request(&req) {
                    self.stats.rejected += 1;
                    if req.method != Method::Ack {
                        transmit(out, rej.response(&req, &rng.token(12)).to_bytes(), origin);
                    }
                    return;
                }
                if req.method == Method::Invite && req.tag_of_to().is_none() {
                    // A new call the box has no room or time for: refused before any
                    // state is kept (a retransmission gets the same answer).
                    let full = if self.b2bua.at_capacity(cfg) { Some("call capacity") } else if self.busy { Some("overloaded") } else { None };
                    if let Some(what) = full {
                        self.stats.refused_overload += 1;
                        transmit(out, overloaded(&req, what, &rng.token(12)).to_bytes(), origin);
                        return;
                    }
                }
                let incoming = self.txn.on_request(now, req, origin);
                self.dispatch(now, cfg, rng, incoming, origin, out);
            }
            Ok(Message::Response(resp)) => {
                if let Some(stray) = self.txn.on_response(now, resp) {
                    if (200..300).contains(&stray.status) && stray.cseq().is_ok_and(|c| c.method == Method::Invite) {
                        self.b2bua.handle_stray_2xx(&stray);
                    }
                }
            }
        }
        self.pump(now, cfg, rng, out);
    }

    fn dispatch(&mut self, now: Time, cfg: &Config, rng: &mut EngineRng, incoming: Incoming, origin: Origin, out: &mut VecDeque<Output>) {
        match incoming {
            Incoming::Absorbed => {}
            Incoming::Overloaded(req) => {
                self.stats.refused_overload += 1;
                if req.method != Method::Ack {
                    transmit(out, overloaded(&req, "transaction capacity", &rng.token(12)).to_bytes(), origin);
                }
            }
            Incoming::Ack(req) => {
                self.touched.extend(self.b2bua.call_of_request(&req));
                self.b2bua.handle_ack(now, &req)
            }
            Incoming::Cancel { cancel, request, invite } => {
                let code = if invite.is_some() { 200 } else { 481 };
                let r = answer(&request, code, &rng.token(12));
                self.txn.respond(now, cancel, &r);
                if let Some(inv) = invite {
                    let mut cx = Ctx { now, cfg, registrar: &self.registrar, rng, cti_open: &self.cti_open };
                    self.b2bua.handle_cancel(&mut cx, inv);
                }
            }
            Incoming::New(stx, req) => self.handle_request(now, cfg, rng, stx, req, origin),
        }
    }

    fn handle_request(&mut self, now: Time, cfg: &Config, rng: &mut EngineRng, stx: ServerTxn, req: Request, origin: Origin) {
        let in_dialog = req.tag_of_to().is_some();
        let tag = rng.token(12);
        let respond = |txn: &mut TxnLayer, r: Response| txn.respond(now, stx, &r);
        match req.method {
            Method::Register => {
                let mut g = Guard { now, cfg, nonces: &mut self.nonces, throttle: &mut self.throttle };
                match registrar::authenticate(&mut g, &req, &origin, ChallengeKind::Registrar, &tag) {
                    Ok(device) => {
                        let before = self.registrar.contacts(&device.name).to_vec();
                        let res = self.registrar.register(now, cfg, device, &req, &origin, &tag);
                        if res.changed {
                            self.stats.registrations += 1;
                            let name = device.name.clone();
                            self.registrations_changed(&name, &before);
                        }
                        respond(&mut self.txn, res.response);
                    }
                    Err(d) => self.denied(d, &mut |t, r| t.respond(now, stx, &r)),
                }
            }
            Method::Invite if !in_dialog => {
                let mut g = Guard { now, cfg, nonces: &mut self.nonces, throttle: &mut self.throttle };
                match registrar::authenticate(&mut g, &req, &origin, ChallengeKind::Proxy, &tag) {
                    Ok(device) => {
                        let name = device.name.clone();
                        self.stats.calls_started += 1;
                        let mut cx = Ctx { now, cfg, registrar: &self.registrar, rng, cti_open: &self.cti_open };
                        self.b2bua.handle_invite(&mut cx, stx, req, origin, &name);
                    }
                    Err(d) => self.denied(d, &mut |t, r| t.respond(now, stx, &r)),
                }
            }
            Method::Options if !in_dialog => {
                let mut r = answer(&req, 200, &tag);
                r.headers.add(HeaderName::Allow, sip::ALLOW);
                r.headers.add(HeaderName::Accept, "application/sdp");
                respond(&mut self.txn, r);
            }
            _ if in_dialog => {
                self.touched.extend(self.b2bua.call_of_request(&req));
                let mut cx = Ctx { now, cfg, registrar: &self.registrar, rng, cti_open: &self.cti_open };
                self.b2bua.handle_in_dialog(&mut cx, stx, req);
            }
            Method::Bye | Method::Info | Method::Update | Method::Prack => {
                respond(&mut self.txn, answer(&req, 481, &tag));
            }
            Method::Other(_) => {
                let mut r = answer(&req, 501, &tag);
                r.headers.add(HeaderName::Allow, sip::ALLOW);
                respond(&mut self.txn, r);
            }
            _ => {
                let mut r = answer(&req, 405, &tag);
                r.headers.add(HeaderName::Allow, sip::ALLOW);
                respond(&mut self.txn, r);
            }
        }
    }

    fn denied(&mut self, d: Denied, send: &mut dyn FnMut(&mut TxnLayer, Response)) {
        match d {
            Denied::Answer(r, why) => {
                if r.status == 403 {
                    self.stats.auth_failures += 1;
                }
                log::debug!("sip: {} {}: {why}", r.status, r.reason);
                send(&mut self.txn, r);
            }
            Denied::Banned(r) => {
                self.stats.auth_failures += 1;
                send(&mut self.txn, r);
            }
        }
    }

    /// Timers of transactions, calls and registrations.
    pub fn handle_timeout(&mut self, now: Time, cfg: &Config, rng: &mut EngineRng, out: &mut VecDeque<Output>) {
        self.txn.on_timeout(now);
        self.touched.extend(self.b2bua.calls_due(now));
        let mut cx = Ctx { now, cfg, registrar: &self.registrar, rng, cti_open: &self.cti_open };
        self.b2bua.handle_timeout(&mut cx);
        if self.registrar.next_expiry().is_some_and(|e| e <= now) {
            for (device, uri) in self.registrar.expire_bindings(now) {
                log::info!("{device}: registration of {uri} expired");
                self.deltas.push(Delta::BindingRemoved { device, uri });
            }
            self.dirty = true;
        }
        if self.refresh_save_due().is_some_and(|t| t <= now) {
            self.dirty = true;
        }
        self.pump(now, cfg, rng, out);
    }

    /// Runs a CTI command against the B2BUA, then moves what it produced along. The
    /// caller says which calls it may change (`touch_call`, `touch_all`), so that only
    /// those are compared with what was replicated.
    pub fn cti_command<R>(&mut self, now: Time, cfg: &Config, rng: &mut EngineRng, out: &mut VecDeque<Output>, f: impl FnOnce(&mut B2bua, &mut Ctx<'_>) -> R) -> R {
        self.run_b2bua(now, cfg, rng, out, f)
    }

    /// A command names call `call` ("c12"): it is looked at for replication.
    pub(crate) fn touch_call(&mut self, call: &str) {
        self.touched.extend(crate::core::call::cti::call_id_of(call));
    }

    fn run_b2bua<R>(&mut self, now: Time, cfg: &Config, rng: &mut EngineRng, out: &mut VecDeque<Output>, f: impl FnOnce(&mut B2bua, &mut Ctx<'_>) -> R) -> R {
        let r = {
            let mut cx = Ctx { now, cfg, registrar: &self.registrar, rng: &mut *rng, cti_open: &self.cti_open };
            f(&mut self.b2bua, &mut cx)
        };
        self.pump(now, cfg, rng, out);
        r
    }

    /// An event from the media path, for the call that owns the stream.
    pub fn media_event(&mut self, now: Time, cfg: &Config, rng: &mut EngineRng, out: &mut VecDeque<Output>, ev: super::MediaEvent) {
        let stream = match &ev {
            super::MediaEvent::Digit { stream, .. }
            | super::MediaEvent::PlayoutDone { stream }
            | super::MediaEvent::RtpTimeout { stream }
            | super::MediaEvent::Failed { stream, .. } => *stream,
        };
        self.touched.extend(self.b2bua.call_of_stream(stream));
        self.run_b2bua(now, cfg, rng, out, |b, cx| b.handle_media(cx, ev));
    }

    /// Moves work between the transaction layer and the B2BUA until both are quiet,
    /// then emits the transmissions.
    fn pump(&mut self, now: Time, cfg: &Config, rng: &mut EngineRng, out: &mut VecDeque<Output>) {
        for _ in 0..64 {
            let mut progressed = false;
            while let Some(ev) = self.txn.poll_event() {
                progressed = true;
                let txn = match &ev {
                    ClientEvent::Response(id, _) | ClientEvent::Timeout(id) => *id,
                };
                self.touched.extend(self.b2bua.call_of_txn(txn));
                let mut cx = Ctx { now, cfg, registrar: &self.registrar, rng, cti_open: &self.cti_open };
                match ev {
                    ClientEvent::Response(id, r) => self.b2bua.handle_response(&mut cx, id, r),
                    ClientEvent::Timeout(id) => self.b2bua.handle_txn_timeout(&mut cx, id),
                }
            }
            let actions: Vec<Action> = self.b2bua.drain().collect();
            for a in actions {
                progressed = true;
                match a {
                    Action::Respond(stx, r) => self.txn.respond(now, stx, &r),
                    Action::Request { txn, request, to } => {
                        if let Err(e) = self.txn.send(now, txn, request, to) {
                            log::warn!("sip: cannot start a client transaction: {e:?}");
                            self.touched.extend(self.b2bua.call_of_txn(txn));
                            let mut cx = Ctx { now, cfg, registrar: &self.registrar, rng, cti_open: &self.cti_open };
                            self.b2bua.handle_unsendable(&mut cx, txn);
                        }
                    }
                    Action::Stateless { message, to } => transmit(out, message, to),
                    Action::Cti(note) => self.cti_notes.push(note),
                    Action::Media(cmd) => out.push_back(Output::Media(cmd)),
                }
            }
            if !progressed {
                break;
            }
        }
        while let Some((bytes, to)) = self.txn.poll_transmit() {
            transmit(out, bytes, to);
        }
        out.extend(self.deltas.drain(..).map(Output::Replicate));
        self.last_now = now;
        self.save_if_dirty(out);
    }

    /// Bindings of `device` changed from `before`: the deltas for the standby, and a
    /// save now when the set changed, later (coalesced) when only expiries did.
    fn registrations_changed(&mut self, device: &str, before: &[Binding]) {
        let after = self.registrar.contacts(device);
        let u = self.unix_at_zero_ms;
        for b in after {
            if !before.contains(b) {
                let binding = Box::new(BindingSnapshot::of(b, super::snapshot::to_wall(u, b.expires_at)));
                self.deltas.push(Delta::Binding { device: device.to_string(), binding });
            }
        }
        for b in before {
            if !after.iter().any(|a| a.uri == b.uri) {
                self.deltas.push(Delta::BindingRemoved { device: device.to_string(), uri: b.uri.clone() });
            }
        }
        if same_set(before, after) && self.last_saved.is_some() {
            self.refresh_pending = true;
        } else {
            self.dirty = true;
        }
    }

    /// Writes the registrations if they are due.
    fn save_if_dirty(&mut self, out: &mut VecDeque<Output>) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        let now = self.last_now;
        let saved_unix_ms = self.unix_at_zero_ms + now.as_millis();
        let saved = SavedRegistrationsRef { version: 1, saved_unix_ms, saved_at: now, registrar: &self.registrar };
        if let Ok(bytes) = postcard::to_allocvec(&saved) {
            out.push_back(Output::Persist { name: "registrations", bytes });
        }
        self.refresh_pending = false;
        self.last_saved = Some(now);
    }
}

/// What is written: the same shape as `SavedRegistrations`, borrowed.
#[derive(Serialize)]
struct SavedRegistrationsRef<'a> {
    version: u8,
    saved_unix_ms: u64,
    saved_at: Time,
    registrar: &'a Registrar,
}

fn transmit(out: &mut VecDeque<Output>, bytes: Vec<u8>, to: Origin) {
    out.push_back(Output::Transmit { transport: to.transport, conn: to.conn, to: to.source, bytes });
}
