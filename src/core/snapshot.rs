//! Engine state as serde data, for the peer-pair failover: `Engine::snapshot` takes
//! every stable fact a standby needs (registrations, established calls, CTI device
//! ownership by application name, media to re-create), `Engine::restore` builds a
//! fresh engine from one on another clock, and `Output::Replicate(Delta)` reports each
//! replicated fact as it changes, so the standby can follow without a new snapshot
//! (`Engine::apply_delta`).
//!
//! Times cross engines as wall-clock milliseconds: a deadline `t` of an engine whose
//! wall clock at engine time zero was `U` is stored as `U + t`; an engine with `U'`,
//! now `now'`, puts it back at `max(now', w - U')`. No `ConnId` is replicated: a
//! restored engine has no connections, so peers over TCP are reached anew at their
//! Contact (docs/ARCHITECTURE.md, "Engine state as serde data").

use super::call::cti::AppMedia;
use super::call::snapshot::CallSnapshot;
use super::rng::EngineRng;
use super::registrar::Binding;
use super::{ConnId, Engine, MediaCmd, Output, Restored, Time, Transport};
use crate::config::Config;
use serde::{Deserialize, Serialize};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

/// Format of `EngineSnapshot` (and `Delta`); a standby refuses another.
pub const SNAPSHOT_VERSION: u8 = 2;

/// Everything a standby needs to take over.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngineSnapshot {
    pub version: u8,
    /// Wall clock (unix ms) when it was taken.
    pub taken_unix_ms: u64,
    /// Every registration, by device.
    pub bindings: Vec<(String, BindingSnapshot)>,
    /// Established calls.
    pub calls: Vec<CallSnapshot>,
    /// CTI devices open, by the application that has them open.
    pub devices: Vec<DeviceOwner>,
    /// The counters calls and box streams are numbered from (never reused).
    pub next_call: u64,
    pub next_stream: u64,
    /// The active's configuration: its generation (reloads applied) and the digest of
    /// its dial plan (`dial_plan_digest`), so a standby knows whether it would route
    /// calls the same way after a takeover.
    pub config: ConfigStamp,
}

/// Which configuration an engine runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigStamp {
    pub generation: u64,
    pub digest: String,
}

/// A digest of what decides how calls are routed and who may do what: partitions,
/// calling search spaces, lines, devices, pools, route patterns, trunks and
/// application users (not the unit's own name, listeners or `[peer]`, which differ
/// between the two units of a pair). SHA-256, the first 8 bytes in hex. None for a
/// box with no `[peer]`: nothing compares it, so it costs nothing at start or reload.
pub fn dial_plan_digest(c: &Config) -> Option<String> {
    use sha2::Digest;
    c.peer.as_ref()?;
    let text = format!(
        "{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}",
        c.partitions, c.calling_search_spaces, c.lines, c.devices, c.device_pools, c.route_patterns, c.trunks, c.app_users
    );
    let d = sha2::Sha256::digest(text.as_bytes());
    Some(crate::codec::hex(&d[..8]))
}

/// A registration without its TCP connection: over TCP it is reached at its Contact
/// (a new outbound connection), as after a restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingSnapshot {
    pub uri: String,
    pub expires_unix_ms: u64,
    pub source: SocketAddr,
    pub transport: Transport,
    pub local: SocketAddr,
    pub call_id: String,
    pub cseq: u32,
    pub q: u16,
}

/// A CTI device and the application (by name, not connection) that has it open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceOwner {
    pub device: String,
    pub app: String,
    /// The static media termination given at open (CTI ports).
    pub media: Option<AppMedia>,
}

/// One replicated fact that changed (large facts boxed: `Output` stays small).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Delta {
    /// A binding was added, or refreshed (a new expiry, CSeq or address).
    Binding { device: String, binding: Box<BindingSnapshot> },
    /// A binding is gone (unregistered or expired).
    BindingRemoved { device: String, uri: String },
    /// A call became established (answered and acknowledged).
    CallUp(Box<CallSnapshot>),
    /// An established call changed: CSeqs after a request in a dialog, a re-INVITE's
    /// new session, hold or resume, music on hold, box media, its CTI state.
    CallChanged(Box<CallSnapshot>),
    /// A call is over (or no longer established, e.g. redirected to ring elsewhere).
    CallEnded { id: u64 },
    /// An application opened a CTI device.
    DeviceOpened(DeviceOwner),
    /// A CTI device was closed (by the application, its logout or its failure).
    DeviceClosed { device: String },
    /// The active applied a configuration (at a reload).
    Config(ConfigStamp),
}

impl BindingSnapshot {
    pub fn of(b: &Binding, wall: u64) -> BindingSnapshot {
        BindingSnapshot {
            uri: b.uri.clone(),
            expires_unix_ms: wall,
            source: b.source,
            transport: b.transport,
            local: b.local,
            call_id: b.call_id.clone(),
            cseq: b.cseq,
            q: b.q,
        }
    }

    pub fn binding(self, expires_at: Time) -> Binding {
        Binding {
            uri: self.uri,
            expires_at,
            source: self.source,
            transport: self.transport,
            conn: None,
            local: self.local,
            call_id: self.call_id,
            cseq: self.cseq,
            q: self.q,
        }
    }
}

/// Engine time to wall-clock ms, for an engine whose wall clock at time zero was `u`.
pub fn to_wall(u: u64, t: Time) -> u64 {
    u.saturating_add(t.as_millis())
}

/// Wall-clock ms to engine time, never before `now`.
pub fn from_wall(u: u64, now: Time, wall_ms: u64) -> Time {
    Time::from_millis(wall_ms.saturating_sub(u)).max(now)
}

/// A call's fingerprint: what was replicated last, compared without keeping a copy.
pub(crate) fn fingerprint(c: &CallSnapshot) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    c.hash(&mut h);
    h.finish()
}

impl Engine {
    fn wall(&self) -> impl Fn(Time) -> u64 {
        let u = self.sip.unix_at_zero_ms();
        move |t| to_wall(u, t)
    }

    /// The stable facts of this engine (cheap enough to take now and then, not per
    /// message: it copies every binding and established call).
    pub fn snapshot(&self) -> EngineSnapshot {
        let wall = self.wall();
        let (next_call, next_stream) = self.sip.b2bua.next_ids();
        EngineSnapshot {
            version: SNAPSHOT_VERSION,
            taken_unix_ms: wall(self.now),
            bindings: self.sip.registrar.iter().map(|(d, b)| (d.to_string(), BindingSnapshot::of(b, wall(b.expires_at)))).collect(),
            calls: self.sip.b2bua.stable_calls(&wall),
            devices: self.api.owners_by_name(),
            next_call,
            next_stream,
            config: self.config_stamp(),
        }
    }

    /// This engine's configuration generation and dial-plan digest.
    pub fn config_stamp(&self) -> ConfigStamp {
        ConfigStamp { generation: self.generation(), digest: self.dial_plan.clone().unwrap_or_default() }
    }

    /// On a standby: the active's configuration stamp, as last replicated.
    pub fn active_config(&self) -> Option<&ConfigStamp> {
        self.active_config.as_ref()
    }

    fn note_active_config(&mut self, stamp: ConfigStamp) {
        if self.dial_plan.as_deref() != Some(stamp.digest.as_str()) && self.active_config.as_ref().is_none_or(|s| s.digest != stamp.digest) {
            log::warn!(
                "pair: the active's dial plan (digest {}) differs from this unit's ({}): calls may route differently after a takeover",
                stamp.digest,
                self.dial_plan.as_deref().unwrap_or("none")
            );
        }
        self.active_config = Some(stamp);
    }

    /// A fresh engine carrying on from `snapshot`, its clock at `now` with the wall
    /// clock at its time zero `unix_at_zero_ms` (as for `Engine::new`). Deadlines are
    /// rebased (see the module docs); expired registrations are dropped. Its first
    /// outputs are the `MediaCmd::Play`s that re-create music on hold and box media.
    pub fn restore(config: Arc<Config>, rng: EngineRng, now: Time, unix_at_zero_ms: u64, snapshot: EngineSnapshot) -> Engine {
        let mut e = Engine::new(config, rng, now, unix_at_zero_ms, Restored::default());
        // What a standby does when it takes over: follow the state, then serve it.
        if e.follow(snapshot) {
            e.serve();
        }
        e
    }

    /// Follows the primary (on a standby): puts one replicated fact in place, without
    /// any message or media command. A standby keeps its media idle until restored.
    pub fn apply_delta(&mut self, delta: Delta) {
        let (u, now) = (self.sip.unix_at_zero_ms(), self.now);
        let at = |ms: u64| from_wall(u, now, ms);
        match delta {
            Delta::Binding { device, binding } => {
                let t = at(binding.expires_unix_ms);
                self.sip.registrar.insert(&device, (*binding).binding(t));
            }
            Delta::BindingRemoved { device, uri } => {
                self.sip.registrar.remove(&device, &uri);
            }
            Delta::CallUp(c) | Delta::CallChanged(c) => {
                let fp = fingerprint(&c);
                let id = c.id;
                let _ = self.sip.b2bua.restore_call(*c, &at);
                self.replicated.insert(id, fp);
            }
            Delta::CallEnded { id } => {
                self.sip.b2bua.forget_call(id);
                self.replicated.remove(&id);
            }
            Delta::DeviceOpened(d) => self.api.reserve(d),
            Delta::DeviceClosed { device } => self.api.unreserve(&device),
            Delta::Config(stamp) => self.note_active_config(stamp),
        }
    }

    /// On a standby: every replicated fact is replaced by `snapshot`'s, in place (the
    /// standby's own CTI and HTTP sessions stay), without any message or media
    /// command. Returns false (and changes nothing) for another snapshot version.
    pub fn follow(&mut self, snapshot: EngineSnapshot) -> bool {
        if snapshot.version != SNAPSHOT_VERSION {
            log::warn!("pair: snapshot version {} is not {SNAPSHOT_VERSION}; not followed", snapshot.version);
            return false;
        }
        let old: Vec<(String, String)> = self.sip.registrar.iter().map(|(d, b)| (d.to_string(), b.uri.to_string())).collect();
        for (d, uri) in old {
            self.sip.registrar.remove(&d, &uri);
        }
        for id in self.sip.b2bua.call_ids() {
            self.sip.b2bua.forget_call(id);
        }
        self.replicated.clear();
        self.api.clear_reserved();
        for (device, b) in snapshot.bindings {
            self.apply_delta(Delta::Binding { device, binding: Box::new(b) });
        }
        self.sip.registrar.expire(self.now);
        for c in snapshot.calls {
            self.apply_delta(Delta::CallUp(Box::new(c)));
        }
        for d in snapshot.devices {
            self.api.reserve(d);
        }
        self.sip.b2bua.raise_next_ids(snapshot.next_call, snapshot.next_stream);
        self.note_active_config(snapshot.config);
        log::info!(
            "pair: following the active unit: {} registrations, {} calls, {} CTI devices",
            self.sip.registrar.len(),
            self.sip.b2bua.calls(),
            self.api.reserved_len()
        );
        true
    }

    /// A standby takes over: the followed calls' own media (music on hold, box
    /// media) starts here, as after `restore`. The caller sets the role to active.
    pub fn serve(&mut self) {
        let wall = self.wall();
        let (u, now) = (self.sip.unix_at_zero_ms(), self.now);
        let at = |ms: u64| from_wall(u, now, ms);
        let calls = self.sip.b2bua.stable_calls(&wall);
        let n = calls.len();
        for c in calls {
            let fp = fingerprint(&c);
            let id = c.id;
            for cmd in self.sip.b2bua.restore_call(c, &at) {
                self.out.push_back(Output::Media(cmd));
            }
            self.replicated.insert(id, fp);
        }
        log::info!("pair: serving {} registrations and {n} calls", self.sip.registrar.len());
    }

    /// An active unit gives up serving (it was frozen, a higher term serves, or an
    /// operator's switchover): its own media stops and its CTI applications are let
    /// go, so that they reconnect to the unit that serves now. What it held is
    /// replaced by the serving unit's snapshot (`follow`).
    pub fn stand_by(&mut self) {
        for stream in self.sip.b2bua.stream_ids() {
            self.out.push_back(Output::Media(MediaCmd::Stop { stream }));
        }
        let conns: Vec<ConnId> = self.cti_conns();
        for conn in conns {
            self.cti_close_session(conn, false);
            self.out.push_back(Output::Close { conn });
        }
    }

    /// After an input: compares the calls it touched with what was replicated last and
    /// emits `CallUp`, `CallChanged` or `CallEnded`. Only touched calls are looked at
    /// (a CTI request looks at all of them: it may act on any call).
    /// Without a `[peer]` there is no standby to keep up to date, and nothing is
    /// compared: a call's projection, built and hashed after every message of it, was a
    /// few per cent of the CPU per call under load.
    pub(crate) fn replicate_calls(&mut self) {
        if self.config.peer.is_none() {
            self.sip.touched.clear();
            self.sip.touch_all = false;
            self.replicated.clear();
            return;
        }
        let mut ids = std::mem::take(&mut self.sip.touched);
        if std::mem::take(&mut self.sip.touch_all) {
            ids.extend(self.sip.b2bua.call_ids());
            ids.extend(self.replicated.keys().copied());
        }
        if ids.is_empty() {
            return;
        }
        ids.sort_unstable();
        ids.dedup();
        let wall = self.wall();
        for id in ids {
            match self.sip.b2bua.stable_call(id, &wall) {
                Some(c) => {
                    let fp = fingerprint(&c);
                    match self.replicated.insert(id, fp) {
                        None => self.out.push_back(Output::Replicate(Delta::CallUp(Box::new(c)))),
                        Some(old) if old != fp => self.out.push_back(Output::Replicate(Delta::CallChanged(Box::new(c)))),
                        Some(_) => {}
                    }
                }
                None => {
                    if self.replicated.remove(&id).is_some() {
                        self.out.push_back(Output::Replicate(Delta::CallEnded { id }));
                    }
                }
            }
        }
    }
}
