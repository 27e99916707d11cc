//! The registrar (RFC 3261 §10.3) and the digest challenge of requests from phones:
//! which contacts each sip_phone device is reachable at, for how long, and from which
//! source and connection. Pure: answers are returned, not sent; bindings are plain
//! data that persist across restarts and replicate to the peer.

use crate::core::sip::{Contact, HeaderName, Request, Response, SipHeaders, Uri};
use crate::config::{Config, Device, DeviceKind};
use crate::core::digest::{self, AuthError, NonceBook};
use crate::core::throttle::{Throttle, Verdict};
use crate::core::{ConnId, Time, Transport};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Contacts one device may hold at once; a further one replaces the one expiring soonest.
pub const MAX_CONTACTS_PER_DEVICE: usize = 8;

/// Where a device can be reached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The Contact URI as the phone gave it.
    pub uri: String,
    pub expires_at: Time,
    /// Where its REGISTER came from: requests go here (symmetric, NAT-friendly).
    pub source: SocketAddr,
    pub transport: Transport,
    /// The TCP connection it registered over, while open.
    pub conn: Option<ConnId>,
    /// The box's address the phone registered to (where it expects requests from).
    pub local: SocketAddr,
    pub call_id: String,
    pub cseq: u32,
    /// Preference in thousandths (Contact q).
    pub q: u16,
}

impl Binding {
    /// Where requests to this contact go: back to where it registered from (symmetric,
    /// through NAT) over UDP or an open TCP connection; to the Contact's own address
    /// when a TCP connection must be opened anew.
    pub fn send_to(&self) -> SocketAddr {
        if self.transport == Transport::Tcp && self.conn.is_none() {
            if let Some(a) = uri_addr(&self.uri) {
                return a;
            }
        }
        self.source
    }
}

/// The address of a SIP URI whose host is an IP address (port 5060 when absent): where
/// a new TCP connection to a Contact goes.
pub fn uri_addr(uri: &str) -> Option<SocketAddr> {
    match Uri::parse(uri)? {
        Uri::Sip(u) => match u.host {
            crate::core::sip::Host::V4(ip) => Some(SocketAddr::new(ip.into(), u.port.unwrap_or(5060))),
            crate::core::sip::Host::V6(ip) => Some(SocketAddr::new(ip.into(), u.port.unwrap_or(5060))),
            _ => None,
        },
        _ => None,
    }
}

pub use crate::core::sip::Origin;

/// Which challenge a request gets: REGISTER is challenged by a registrar (401), other
/// requests by the box acting as a proxy-like server (407).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChallengeKind {
    Registrar,
    Proxy,
}

impl ChallengeKind {
    fn code(self) -> u16 {
        match self {
            ChallengeKind::Registrar => 401,
            ChallengeKind::Proxy => 407,
        }
    }
    fn challenge_header(self) -> HeaderName {
        match self {
            ChallengeKind::Registrar => HeaderName::WwwAuthenticate,
            ChallengeKind::Proxy => HeaderName::ProxyAuthenticate,
        }
    }
    fn credentials_header(self) -> HeaderName {
        match self {
            ChallengeKind::Registrar => HeaderName::Authorization,
            ChallengeKind::Proxy => HeaderName::ProxyAuthorization,
        }
    }
}

/// The security state requests are checked against.
pub struct Guard<'a> {
    pub now: Time,
    pub cfg: &'a Config,
    pub nonces: &'a mut NonceBook,
    pub throttle: &'a mut Throttle,
}

/// Why authentication did not let a request through, with the answer to send.
pub enum Denied {
    /// Answer with this response (a challenge or a refusal).
    Answer(Response, &'static str),
    /// The failure banned the source: drop silently from now on.
    Banned(Response),
}

/// Finds the sip_phone device whose digest username is `user`.
pub fn phone_by_username<'c>(cfg: &'c Config, user: &str) -> Option<&'c Device> {
    cfg.phone_by_username(user)
}

/// Authenticates `req` from a phone. Ok: the device it proved to be.
pub fn authenticate<'c>(g: &mut Guard<'c>, req: &Request, origin: &Origin, kind: ChallengeKind, to_tag: &str) -> Result<&'c Device, Denied> {
    let realm = g.cfg.sip.realm.as_str();
    let challenge = |g: &mut Guard<'_>, stale: bool| {
        let mut r = Response::to_request(req, kind.code(), Some(to_tag));
        for v in g.nonces.challenges(g.now, origin.source.ip(), realm, stale, &g.cfg.sip.digest_algorithms) {
            r.headers.add(kind.challenge_header(), v);
        }
        r
    };
    let creds: Vec<digest::Credentials> = req
        .headers
        .get_all(&kind.credentials_header())
        .filter_map(|v| digest::parse_credentials(v).ok())
        .filter(|c| c.realm == realm)
        .filter(|c| {
            // Only the algorithms this box offers (an absent algorithm means MD5).
            let alg = match c.algorithm.as_deref().map(str::to_ascii_uppercase).as_deref() {
                None | Some("MD5") => Some(digest::Algorithm::Md5),
                Some("SHA-256") => Some(digest::Algorithm::Sha256),
                _ => None,
            };
            alg.is_some_and(|a| g.cfg.sip.digest_algorithms.contains(&a))
        })
        .collect();
    let Some(creds) = creds.into_iter().next() else {
        return Err(Denied::Answer(challenge(g, false), "no credentials"));
    };
    let device = phone_by_username(g.cfg, &creds.username);
    let password = device.and_then(|d| match &d.kind {
        DeviceKind::SipPhone { password, .. } => password.plain(),
        _ => None,
    });
    let result = match password {
        Some(p) => g.nonces.verify(g.now, origin.source.ip(), realm, req.method.as_str(), p, &creds),
        None => Err(AuthError::BadResponse),
    };
    match (result, device) {
        (Ok(()), Some(d)) => {
            g.throttle.success(origin.source.ip());
            Ok(d)
        }
        (Err(AuthError::Stale), _) => Err(Denied::Answer(challenge(g, true), "stale nonce")),
        (Err(e), _) => {
            let why: &'static str = match e {
                AuthError::BadResponse => "wrong username or password",
                AuthError::Replay => "replayed credentials",
                AuthError::UnknownNonce => "nonce not issued here",
                _ => "malformed credentials",
            };
            let mut r = Response::to_request(req, 403, Some(to_tag));
            r.reason = "Forbidden".into();
            match g.throttle.failure(g.now, origin.source.ip()) {
                Verdict::Banned(until) => {
                    log::warn!(
                        "sip: {} banned until {until}: too many authentication failures (last: {why} for {:?})",
                        origin.source.ip(),
                        creds.username
                    );
                    Err(Denied::Banned(r))
                }
                Verdict::Counted(_) => {
                    log::info!("sip: authentication failed from {} for {:?}: {why}", origin.source, creds.username);
                    Err(Denied::Answer(r, why))
                }
            }
        }
        (Ok(()), None) => Err(Denied::Answer(challenge(g, false), "no such user")),
    }
}

/// Every device's current contacts.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Registrar {
    bindings: BTreeMap<String, Vec<Binding>>,
    /// The earliest expiry, kept current by every change (the engine asks for it on
    /// every loop iteration).
    #[serde(skip)]
    earliest: Option<Time>,
}

/// Result of handling a REGISTER.
pub struct RegisterResult {
    pub response: Response,
    /// Whether bindings changed (persist and replicate).
    pub changed: bool,
}

impl Registrar {
    /// Current contacts of `device`, best (highest q, newest) first.
    pub fn contacts(&self, device: &str) -> &[Binding] {
        self.bindings.get(device).map_or(&[], |v| v.as_slice())
    }

    /// Number of bindings across all devices.
    pub fn len(&self) -> usize {
        self.bindings.values().map(Vec::len).sum()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The earliest expiry, for the engine's timer.
    pub fn next_expiry(&self) -> Option<Time> {
        self.earliest
    }

    fn recompute_earliest(&mut self) {
        self.earliest = self.bindings.values().flatten().map(|b| b.expires_at).min();
    }

    /// Drops expired bindings; returns the devices that lost their last contact.
    pub fn expire(&mut self, now: Time) -> Vec<String> {
        let mut gone = Vec::new();
        self.bindings.retain(|dev, v| {
            v.retain(|b| b.expires_at > now);
            if v.is_empty() {
                gone.push(dev.clone());
            }
            !v.is_empty()
        });
        self.recompute_earliest();
        gone
    }

    /// Drops expired bindings; returns each one removed as (device, Contact URI).
    pub fn expire_bindings(&mut self, now: Time) -> Vec<(String, String)> {
        let mut gone = Vec::new();
        for (dev, v) in &self.bindings {
            gone.extend(v.iter().filter(|b| b.expires_at <= now).map(|b| (dev.clone(), b.uri.clone())));
        }
        self.expire(now);
        gone
    }

    /// Every binding, by device.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Binding)> {
        self.bindings.iter().flat_map(|(d, v)| v.iter().map(move |b| (d.as_str(), b)))
    }

    /// Puts a binding in place (replicated or restored state): replaces the device's
    /// binding of the same Contact URI, else adds it (up to the per-device limit).
    pub fn insert(&mut self, device: &str, binding: Binding) {
        let list = self.bindings.entry(device.to_string()).or_default();
        match list.iter().position(|b| b.uri == binding.uri) {
            Some(i) => list[i] = binding,
            None if list.len() < MAX_CONTACTS_PER_DEVICE => list.push(binding),
            None => return,
        }
        list.sort_by(|x, y| y.q.cmp(&x.q).then(y.expires_at.cmp(&x.expires_at)));
        self.recompute_earliest();
    }

    /// Removes one binding (replicated state); returns whether it was there.
    pub fn remove(&mut self, device: &str, uri: &str) -> bool {
        let Some(list) = self.bindings.get_mut(device) else { return false };
        let before = list.len();
        list.retain(|b| b.uri != uri);
        let removed = list.len() != before;
        if list.is_empty() {
            self.bindings.remove(device);
        }
        self.recompute_earliest();
        removed
    }

    /// Moves expiries saved at engine time `saved_at` onto a new clock where it is now
    /// `now` and `elapsed` of wall time has passed since the save. TCP connections
    /// are gone after a restart.
    pub fn rebase(&mut self, saved_at: Time, now: Time, elapsed: Duration) {
        for b in self.bindings.values_mut().flatten() {
            let left = b.expires_at.since(saved_at).saturating_sub(elapsed);
            b.expires_at = now + left;
            b.conn = None;
        }
        self.recompute_earliest();
    }

    /// Forgets the TCP connection a binding used once it closes (the contact stays; a
    /// phone on TCP reconnects and re-registers).
    pub fn connection_closed(&mut self, conn: ConnId) {
        for b in self.bindings.values_mut().flatten() {
            if b.conn == Some(conn) {
                b.conn = None;
            }
        }
    }

    /// Handles an authenticated REGISTER from `device` (RFC 3261 §10.3 steps 5-8).
    pub fn register(&mut self, now: Time, cfg: &Config, device: &Device, req: &Request, origin: &Origin, to_tag: &str) -> RegisterResult {
        let r = self.apply_register(now, cfg, device, req, origin, to_tag);
        // Whatever path it took (even a refusal after a first contact was stored).
        self.recompute_earliest();
        r
    }

    fn apply_register(&mut self, now: Time, cfg: &Config, device: &Device, req: &Request, origin: &Origin, to_tag: &str) -> RegisterResult {
        let refuse = |code: u16, reason: &str| {
            let mut r = Response::to_request(req, code, Some(to_tag));
            r.reason = reason.to_string();
            RegisterResult { response: r, changed: false }
        };
        // The address of record must be the device's own (To user = its username).
        let DeviceKind::SipPhone { username, .. } = &device.kind else { return refuse(403, "Forbidden") };
        let aor_user = req.to().ok().and_then(|t| match t.uri {
            Uri::Sip(s) => s.user,
            _ => None,
        });
        if aor_user.as_deref() != Some(username.as_str()) {
            return refuse(403, "Forbidden (To is not your address of record)");
        }
        let (Ok(call_id), Ok(cseq)) = (req.call_id(), req.cseq()) else { return refuse(400, "Bad Request") };
        let call_id = call_id.to_string();
        let header_expires = req.expires().ok().flatten();
        let (min, max, default) = (cfg.sip.min_expires_s, cfg.sip.max_expires_s, cfg.sip.default_expires_s);
        let contacts = match req.contact() {
            Ok(c) => c,
            Err(_) => return refuse(400, "Bad Request (malformed Contact)"),
        };
        let mut changed = false;
        match contacts {
            None => {}
            Some(Contact::Star) => {
                if header_expires != Some(0) {
                    return refuse(400, "Bad Request (Contact: * needs Expires: 0)");
                }
                let list = self.bindings.entry(device.name.clone()).or_default();
                if list.iter().any(|b| b.call_id == call_id && b.cseq >= cseq.seq) {
                    return refuse(500, "Server Internal Error (out-of-order REGISTER)");
                }
                changed = !list.is_empty();
                list.clear();
                log::info!("{}: unregistered all contacts", device.name);
            }
            Some(Contact::Addrs(addrs)) => {
                for a in &addrs {
                    let expires = a.expires().or(header_expires).unwrap_or(default);
                    if expires != 0 && expires < min {
                        let mut r = refuse(423, "Interval Too Brief");
                        r.response.headers.add(HeaderName::MinExpires, min.to_string());
                        return r;
                    }
                }
                let list = self.bindings.entry(device.name.clone()).or_default();
                for a in addrs {
                    let uri = a.uri.to_string();
                    let expires = a.expires().or(header_expires).unwrap_or(default).min(max);
                    let existing = list.iter().position(|b| b.uri == uri);
                    if let Some(i) = existing {
                        if list[i].call_id == call_id && list[i].cseq >= cseq.seq {
                            return refuse(500, "Server Internal Error (out-of-order REGISTER)");
                        }
                    }
                    if expires == 0 {
                        if let Some(i) = existing {
                            list.remove(i);
                            changed = true;
                            log::info!("{}: unregistered {uri}", device.name);
                        }
                        continue;
                    }
                    let b = Binding {
                        uri: uri.clone(),
                        expires_at: now + Duration::from_secs(u64::from(expires)),
                        source: origin.source,
                        transport: origin.transport,
                        conn: origin.conn,
                        local: origin.local,
                        call_id: call_id.clone(),
                        cseq: cseq.seq,
                        q: a.q().unwrap_or(1000),
                    };
                    match existing {
                        Some(i) => list[i] = b,
                        None => {
                            if list.len() >= MAX_CONTACTS_PER_DEVICE {
                                let soonest = list.iter().enumerate().min_by_key(|(_, b)| b.expires_at).map(|(i, _)| i);
                                if let Some(i) = soonest {
                                    list.remove(i);
                                }
                            }
                            log::info!("{}: registered {uri} from {} for {expires} s", device.name, origin.source);
                            list.push(b);
                        }
                    }
                    changed = true;
                }
                list.sort_by(|x, y| y.q.cmp(&x.q).then(y.expires_at.cmp(&x.expires_at)));
            }
        }
        if self.bindings.get(&device.name).is_some_and(Vec::is_empty) {
            self.bindings.remove(&device.name);
        }

        let mut r = Response::to_request(req, 200, Some(to_tag));
        for b in self.contacts(&device.name) {
            let left = b.expires_at.since(now).as_secs();
            r.headers.add(HeaderName::Contact, format!("<{}>;expires={left}", b.uri));
        }
        RegisterResult { response: r, changed }
    }
}
