//! The back-to-back user agent: turns an authenticated INVITE into a call, routes it
//! (dial plan, forward all/busy/no answer/unregistered), drives the called leg, and
//! relays provisional and final answers, BYE, CANCEL and re-INVITE (hold, unhold)
//! between the legs. Talks to the transaction layer through `Action`s.

use super::dialplan::{self, Destination};
use super::leg::{self, Leg, Side};
use crate::config::{Config, DeviceKind, LineKey, RouteTarget};
use crate::core::rng::EngineRng;
use crate::core::sip::registrar::{Origin, Registrar};
use crate::core::sip::{HeaderName, Method, Request, Response, SipHeaders, Uri};
use crate::core::timer::Timers;
use crate::core::Time;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Forwarding hops one call may take before it is refused as a loop.
pub const MAX_FORWARD_HOPS: u8 = 5;
/// Calls up at once; past it new INVITEs get 503.
pub const MAX_CALLS: usize = 8192;

/// The transaction layer's handles: the B2BUA names its transactions with them, and
/// the transaction layer knows nothing of calls.
pub use crate::core::sip::txn::{ClientTxn, ServerTxn};

/// What the B2BUA asks of the transaction layer.
#[derive(Debug)]
pub enum Action {
    /// Answer the request of a server transaction.
    Respond(ServerTxn, Response),
    /// Send a request (never ACK) in a new client transaction.
    Request { txn: ClientTxn, request: Request, to: Origin },
    /// Send outside any transaction: ACK for 2xx, 2xx retransmissions (RFC 3261 §13).
    Stateless { message: Vec<u8>, to: Origin },
    /// Tell the CTI application that has a device open.
    Cti(super::cti::CtiNote),
    /// A command for the media path.
    Media(crate::core::MediaCmd),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Purpose {
    /// The INVITE that creates the B leg.
    Invite,
    /// A request relayed from the other leg; its answer goes back to this server txn.
    Relay(ServerTxn),
    /// BYE or CANCEL the box sent on its own; the answer needs nothing.
    Own,
    /// A hold or unhold re-INVITE asked for by a CTI application.
    CtiReinvite { hold: bool },
    /// Click-to-dial: the offerless INVITE to the phone that places the call.
    PhoneInvite,
    /// The re-INVITE that points the held party at the box's music on hold; the
    /// holder's re-INVITE (server transaction) is answered when it completes.
    MohHold(super::moh::MohPending),
    /// The re-INVITE that moves the far end's media to the box's own stream (`play`
    /// or `collect_digits` on a call answered with the application's media).
    BoxMedia,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(super) enum CallTimer {
    /// Retransmit the 2xx toward the caller until its ACK (RFC 3261 §13.3.1.4).
    Retransmit2xx,
    /// The called line's no-answer timeout: forward to its CFNA target.
    NoAnswer,
    /// A CTI application's time to act on an offered call: then CFNA.
    CtiAnswer,
    /// `collect_digits`: the first-digit or inter-digit timeout.
    Digits,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Pending2xx {
    pub(super) message: Vec<u8>,
    pub(super) interval: Duration,
    pub(super) give_up: Time,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Call {
    pub(super) id: u64,
    pub(super) a: Leg,
    /// The caller's INVITE, until it has a final answer.
    pub(super) a_invite: Option<(ServerTxn, Request)>,
    pub(super) b: Option<Leg>,
    /// The called leg's INVITE and its client transaction, until a final answer.
    pub(super) b_invite: Option<(ClientTxn, Request)>,
    pub(super) b_got_provisional: bool,
    pub(super) cancel_when_provisional: bool,
    /// The ACK sent for the B leg's 2xx (re-sent if the 2xx is retransmitted).
    pub(super) b_ack: Option<Vec<u8>>,
    pub(super) a_2xx: Option<Pending2xx>,
    pub(super) caller_device: String,
    pub(super) caller_dn: String,
    pub(super) caller_display: Option<String>,
    pub(super) dialled: String,
    /// The line being rung now, and the lines already tried (loop protection).
    pub(super) ringing_line: Option<LineKey>,
    pub(super) visited: Vec<LineKey>,
    pub(super) hops: u8,
    pub(super) max_forwards: u8,
    pub(super) answered: bool,
    /// A re-INVITE or other request relayed and not answered yet.
    pub(super) relaying: Option<ClientTxn>,
    /// The CTI device the call ends at, when it is not a phone.
    pub(super) cti: Option<super::cti::CtiEnd>,
    /// Phone devices an application watches that take part in this call.
    pub(super) watchers: Vec<String>,
    /// The latest session descriptions of each side (for hold on a watched phone).
    pub(super) a_sdp: Vec<u8>,
    pub(super) b_sdp: Vec<u8>,
    /// Click-to-dial: the phone answered our offerless INVITE; its 2xx waits for the
    /// ACK that carries the called party's answer (RFC 3725 flow I). The CSeq to ACK.
    pub(super) phone_ack_pending: Option<u32>,
    /// Why the call ended, for the events of watched phones.
    pub(super) end_reason: Option<crate::core::cti::wire::EndReason>,
    /// Music on hold playing to one party.
    pub(super) moh: Option<super::moh::Moh>,
    /// The box's own media termination (CTI `"media": "box"`, `play`, `collect_digits`).
    pub(super) box_media: Option<super::box_media::BoxMedia>,
}

/// The box answered the caller with a 2xx: over UDP it resends it (T1 doubling to T2)
/// until the ACK comes, for 64*T1 (RFC 3261 §13.3.1.4).
pub(super) fn start_2xx_retransmission(call: &mut Call, timers: &mut Timers<(u64, CallTimer)>, cx: &Ctx<'_>, message: Vec<u8>) {
    if call.a.peer.transport == crate::core::Transport::Udp {
        call.a_2xx = Some(Pending2xx { message, interval: cx.t1(), give_up: cx.now + cx.t1() * 64 });
        timers.arm((call.id, CallTimer::Retransmit2xx), cx.now + cx.t1());
    }
}

impl Call {
    /// A call with its caller side; nothing is routed or answered yet.
    fn new(id: u64, a: Leg, device: &str, caller_dn: String, caller_display: Option<String>, dialled: &str, max_forwards: u8) -> Call {
        Call {
            id,
            a,
            a_invite: None,
            b: None,
            b_invite: None,
            b_got_provisional: false,
            cancel_when_provisional: false,
            b_ack: None,
            a_2xx: None,
            caller_device: device.to_string(),
            caller_dn,
            caller_display,
            dialled: dialled.to_string(),
            ringing_line: None,
            visited: Vec::new(),
            hops: 0,
            max_forwards,
            answered: false,
            relaying: None,
            cti: None,
            watchers: Vec::new(),
            a_sdp: Vec::new(),
            b_sdp: Vec::new(),
            phone_ack_pending: None,
            end_reason: None,
            moh: None,
            box_media: None,
        }
    }
}

/// All calls.
#[derive(Default, Serialize, Deserialize)]
pub struct B2bua {
    pub(super) calls: BTreeMap<u64, Call>,
    pub(super) next_id: u64,
    /// (Call-ID, our tag) -> call and side.
    pub(super) dialogs: HashMap<(String, String), (u64, Side)>,
    pub(super) client: HashMap<ClientTxn, (u64, Side, Purpose)>,
    /// Caller INVITE server transactions -> call (for CANCEL).
    pub(super) invites: HashMap<ServerTxn, u64>,
    /// Requests relayed to the other leg, by the server transaction awaiting the answer.
    pub(super) pending_requests: HashMap<ServerTxn, Request>,
    #[serde(skip)]
    pub(super) timers: Timers<(u64, CallTimer)>,
    #[serde(skip)]
    pub(super) out: Vec<Action>,
    /// Completed calls (for /status).
    pub completed: u64,
    /// Counter for branches and transactions the B2BUA makes without the RNG at hand.
    pub(super) seq: u64,
    /// RTP ports of `[media]`'s range in use by the box's own streams.
    pub(super) media_ports: std::collections::BTreeSet<u16>,
    pub(super) next_stream: u64,
    /// The box's open streams and the calls they belong to (media events find their
    /// call here).
    pub(super) streams: BTreeMap<crate::core::StreamId, u64>,
    /// Media counters for /status.
    pub stats: super::box_media::CallStats,
    /// o= versions of the session descriptions the box writes, per call.
    pub(super) sdp_versions: HashMap<u64, u64>,
    /// INVITEs the box cancelled, by client transaction, until their final answer:
    /// the request and where it went, so that a 2xx crossing the CANCEL can be ACKed
    /// and hung up even when its call is gone or rings elsewhere now (RFC 3261 §9.1).
    #[serde(default)]
    pub(super) cancelled: HashMap<ClientTxn, (Request, Origin)>,
}

/// Everything a handler needs besides the call state.
pub struct Ctx<'a> {
    pub now: Time,
    pub cfg: &'a Config,
    pub registrar: &'a Registrar,
    pub rng: &'a mut EngineRng,
    /// Devices a live CTI application has open.
    pub cti_open: &'a std::collections::BTreeSet<String>,
}

impl Ctx<'_> {
    /// RFC 3261 T1 from the configuration.
    pub fn t1(&self) -> Duration {
        Duration::from_millis(u64::from(self.cfg.sip.t1_ms))
    }
    /// RFC 3261 T2 from the configuration.
    pub fn t2(&self) -> Duration {
        Duration::from_millis(u64::from(self.cfg.sip.t2_ms))
    }
}

fn respond(req: &Request, code: u16, reason: Option<&str>, tag: &str) -> Response {
    let mut r = Response::to_request(req, code, if code == 100 { None } else { Some(tag) });
    if let Some(reason) = reason {
        r.reason = reason.to_string();
    }
    r
}

fn dialled_of(req: &Request) -> Option<String> {
    match &req.uri {
        Uri::Sip(s) => s.user.clone(),
        Uri::Tel(t) => Some(t.number.chars().filter(|c| c.is_ascii_digit() || *c == '+' || *c == '*' || *c == '#').collect()),
        Uri::Other { .. } => None,
    }
}

/// A message's body with its Content-Type (SDP when unnamed), to pass on; `None` when
/// there is no body.
fn body_of(headers: &crate::core::sip::Headers, body: &[u8]) -> Option<(String, Vec<u8>)> {
    (!body.is_empty()).then(|| (headers.get(&HeaderName::ContentType).unwrap_or("application/sdp").to_string(), body.to_vec()))
}

fn copy_body(from_headers: &crate::core::sip::Headers, body: &[u8], into: &mut Request) {
    if let Some((ct, b)) = body_of(from_headers, body) {
        into.set_body(&ct, b);
    }
}

pub(super) fn branch(rng: &mut EngineRng) -> String {
    format!("z9hG4bK{}", rng.token(16))
}

impl B2bua {
    /// Takes the actions produced so far.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Action> {
        self.out.drain(..)
    }

    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// How many entries each of the B2BUA's tables holds (calls, dialogs, transactions
    /// it waits on, RTP ports, timers): all zero once every call is over and its
    /// transactions have ended. For leak checks in tests and for diagnosis.
    pub fn table_sizes(&self) -> [(&'static str, usize); 9] {
        [
            ("calls", self.calls.len()),
            ("dialogs", self.dialogs.len()),
            ("client", self.client.len()),
            ("invites", self.invites.len()),
            ("pending_requests", self.pending_requests.len()),
            ("media_ports", self.media_ports.len()),
            ("sdp_versions", self.sdp_versions.len()),
            ("timers", self.timers.len()),
            ("cancelled", self.cancelled.len()),
        ]
    }

    /// Earliest call timer.
    pub fn next_timeout(&self) -> Option<Time> {
        self.timers.next()
    }

    fn new_txn(&mut self, rng: &mut EngineRng) -> ClientTxn {
        ClientTxn(rng.next_u64())
    }

    /// An authenticated INVITE outside any dialog, from `device`.
    pub fn handle_invite(&mut self, cx: &mut Ctx<'_>, stx: ServerTxn, req: Request, origin: Origin, device: &str) {
        let tag = cx.rng.token(12);
        let max_forwards = req.max_forwards().ok().flatten().unwrap_or(70);
        if max_forwards == 0 {
            self.out.push(Action::Respond(stx, respond(&req, 483, None, &tag)));
            return;
        }
        if self.calls.len() >= MAX_CALLS {
            self.out.push(Action::Respond(stx, respond(&req, 503, Some("Service Unavailable (call capacity)"), &tag)));
            return;
        }
        let Some(dialled) = dialled_of(&req) else {
            self.out.push(Action::Respond(stx, respond(&req, 416, None, &tag)));
            return;
        };
        let (Ok(call_id), Ok(from), Ok(to), Ok(cseq)) = (req.call_id(), req.from(), req.to(), req.cseq()) else {
            self.out.push(Action::Respond(stx, respond(&req, 400, None, &tag)));
            return;
        };
        let target = match req.contact() {
            Ok(Some(crate::core::sip::Contact::Addrs(a))) if !a.is_empty() => a[0].uri.to_string(),
            _ => {
                self.out.push(Action::Respond(stx, respond(&req, 400, Some("Bad Request (INVITE without Contact)"), &tag)));
                return;
            }
        };
        let Some(dev) = cx.cfg.device(device) else { return };
        let caller_line = dev.lines.first().and_then(|k| cx.cfg.line(k));
        let caller_dn = caller_line.map_or_else(|| device.to_string(), |l| l.dn.clone());
        let caller_display = caller_line.and_then(|l| l.display_name.clone());
        let css = dev.css.clone();
        self.next_id += 1;
        let id = self.next_id;
        let mut local = to.clone();
        local.set_param("tag", Some(&tag));
        let a = Leg {
            call_id: call_id.to_string(),
            local: local.to_string(),
            remote: from.to_string(),
            local_tag: tag.clone(),
            remote_tag: from.tag().map(str::to_string),
            target,
            local_cseq: 0,
            remote_cseq: cseq.seq,
            peer: origin,
            confirmed: false,
        };
        self.dialogs.insert((a.call_id.clone(), tag.clone()), (id, Side::A));
        self.invites.insert(stx, id);
        log::info!("call {id}: {caller_dn} ({device}) dials {dialled}");
        self.out.push(Action::Respond(stx, respond(&req, 100, None, &tag)));
        let mut call = Call::new(id, a, device, caller_dn, caller_display, &dialled, max_forwards - 1);
        call.a_invite = Some((stx, req));
        if let Some((_, r)) = &call.a_invite {
            call.a_sdp = r.body.clone();
        }
        let caller_watched = cx.cti_open.contains(device);
        if caller_watched {
            call.watchers.push(device.to_string());
        }
        self.calls.insert(id, call);
        match dialplan::resolve(cx.cfg, css.as_deref(), &dialled) {
            Ok(dest) => self.place(cx, id, dest),
            Err(e) => self.fail(id, 404, e.reason()),
        }
    }

    /// A call placed by a CTI application from `device`: there is no caller dialog;
    /// the application's media is offered to the called party.
    pub(super) fn new_outgoing_call(&mut self, device: &str, line: &LineKey, display: Option<String>, to: &str, media: super::cti::AppMedia) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        let none: std::net::SocketAddr = ([0, 0, 0, 0], 0).into();
        let a = Leg {
            call_id: String::new(),
            local: String::new(),
            remote: String::new(),
            local_tag: String::new(),
            remote_tag: None,
            target: String::new(),
            local_cseq: 0,
            remote_cseq: 0,
            peer: Origin { source: none, transport: crate::core::Transport::Udp, conn: None, local: none },
            confirmed: false,
        };
        let cti = super::cti::CtiEnd {
            device: device.to_string(),
            line: line.clone(),
            state: super::cti::CtiState::Offered,
            media: None,
            agreed: None,
            sdp_version: 1,
            redirected_from: None,
            outgoing: true,
            offer_media: Some(media),
            end: None,
        };
        let mut call = Call::new(id, a, device, line.dn.clone(), display, to, 70);
        call.cti = Some(cti);
        self.calls.insert(id, call);
        id
    }

    /// Answers the caller with a final failure and ends the call.
    pub(super) fn fail(&mut self, id: u64, code: u16, reason: &str) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        if let Some((stx, req)) = call.a_invite.take() {
            log::info!("call {id}: {code} {reason}");
            let r = respond(&req, code, Some(reason), &call.a.local_tag);
            self.out.push(Action::Respond(stx, r));
        }
        if call.phone_ack_pending.is_some() {
            log::info!("call {id}: {code} {reason}; releasing the phone");
            self.release_phone(id);
        }
        self.remove(id);
    }

    /// A branch (and a transaction id) unique within this B2BUA, when no RNG is at hand.
    fn next_branch(&mut self, id: u64) -> (String, ClientTxn) {
        self.seq += 1;
        (format!("z9hG4bK3p{id}x{}", self.seq), ClientTxn(u64::MAX - self.seq))
    }

    /// Click-to-dial that will not complete: ACK the phone's 2xx (with its media
    /// inactive) and hang it up.
    fn release_phone(&mut self, id: u64) {
        let Some(call) = self.calls.get(&id) else { return };
        let Some(cseq) = call.phone_ack_pending else { return };
        let (b1, _) = self.next_branch(id);
        let (b2, txn) = self.next_branch(id);
        let Some(call) = self.calls.get_mut(&id) else { return };
        call.phone_ack_pending = None;
        let inactive = crate::core::sdp::with_direction(&call.a_sdp, crate::core::sdp::Direction::Inactive);
        if let Some(mut ack) = call.a.ack(cseq, &b1) {
            ack.set_body("application/sdp", inactive);
            self.out.push(Action::Stateless { message: ack.to_bytes(), to: call.a.peer });
        }
        if let Some(bye) = call.a.request(Method::Bye, &b2) {
            let to = call.a.peer;
            self.client.insert(txn, (id, Side::A, Purpose::Own));
            self.out.push(Action::Request { txn, request: bye, to });
        }
        call.a.confirmed = false;
    }

    pub(super) fn remove(&mut self, id: u64) {
        self.moh_stop(id);
        self.box_media_stop(id);
        self.sdp_versions.remove(&id);
        if let Some(call) = self.calls.get(&id) {
            use crate::core::cti::wire::{EndReason, EventKind};
            let why = call.end_reason.unwrap_or(EndReason::Hangup);
            let mut ends: Vec<(String, bool, EndReason)> = call.watchers.iter().map(|w| (w.clone(), false, why)).collect();
            if let Some(e) = &call.cti {
                ends.push((e.device.clone(), e.agreed.is_some(), e.end.unwrap_or(EndReason::Hangup)));
            }
            for (d, media, reason) in ends {
                if media {
                    self.note(&d, id, EventKind::MediaStopped);
                }
                self.note(&d, id, EventKind::CallEnded { reason });
            }
        }
        // Requests still waiting for the other party's answer get 487 (RFC 3261
        // §15.1.2): the answer has no call to come back to.
        let waiting: Vec<ServerTxn> = self
            .client
            .values()
            .filter(|(c, _, _)| *c == id)
            .filter_map(|(_, _, p)| match p {
                Purpose::Relay(stx) => Some(*stx),
                Purpose::MohHold(m) => Some(m.stx),
                _ => None,
            })
            .collect();
        for stx in waiting {
            if let Some(orig) = self.pending_requests.remove(&stx) {
                let tag = orig.to().ok().and_then(|t| t.tag().map(str::to_string)).unwrap_or_default();
                self.out.push(Action::Respond(stx, respond(&orig, 487, None, &tag)));
            }
        }
        if let Some(call) = self.calls.remove(&id) {
            self.dialogs.remove(&(call.a.call_id.clone(), call.a.local_tag.clone()));
            if let Some(b) = &call.b {
                self.dialogs.remove(&(b.call_id.clone(), b.local_tag.clone()));
            }
            self.invites.retain(|_, c| *c != id);
            self.timers.cancel(&(id, CallTimer::Retransmit2xx));
            self.timers.cancel(&(id, CallTimer::NoAnswer));
            self.timers.cancel(&(id, CallTimer::CtiAnswer));
            // Client transactions still running keep their entries until they end,
            // so late answers are recognised and ignored.
            if call.answered {
                self.completed += 1;
            }
        }
    }

    /// Routes a call to a destination, following forward-all and unregistered.
    pub(super) fn place(&mut self, cx: &mut Ctx<'_>, id: u64, dest: Destination) {
        match dest {
            Destination::Line(key) => self.ring_line(cx, id, key),
            Destination::Route { target: RouteTarget::Trunk(name), number, .. } => {
                let Some(trunk) = cx.cfg.trunk(&name) else { return self.fail(id, 503, "Service Unavailable (no such trunk)") };
                let Ok(ip) = trunk.host.parse::<std::net::IpAddr>() else {
                    return self.fail(id, 503, "Service Unavailable (trunk host is not an address)");
                };
                let Some(call) = self.calls.get(&id) else { return };
                let peer = Origin {
                    source: std::net::SocketAddr::new(ip, trunk.port),
                    transport: match trunk.transport {
                        crate::config::Transport::Udp => crate::core::Transport::Udp,
                        crate::config::Transport::Tcp => crate::core::Transport::Tcp,
                    },
                    conn: None,
                    local: call.a.peer.local,
                };
                let uri = format!("sip:{number}@{}:{}", trunk.host, trunk.port);
                self.invite_b(cx, id, uri, format!("<sip:{number}@{}>", trunk.host), peer, None);
            }
            Destination::Route { target: RouteTarget::Device(dev), .. } => {
                self.fail(id, 480, &format!("Temporarily Unavailable ({dev} is not in service)"))
            }
        }
    }

    pub(super) fn forward(&mut self, cx: &mut Ctx<'_>, id: u64, from_line: &LineKey, number: &str, why: &str) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        call.hops += 1;
        if call.hops > MAX_FORWARD_HOPS {
            return self.fail(id, 482, "Loop Detected (too many forwards)");
        }
        log::info!("call {id}: {from_line} forwards ({why}) to {number}");
        match dialplan::resolve(cx.cfg, dialplan::forward_css(cx.cfg, from_line), number) {
            Ok(dest) => self.place(cx, id, dest),
            Err(e) => self.fail(id, 404, e.reason()),
        }
    }

    fn ring_line(&mut self, cx: &mut Ctx<'_>, id: u64, key: LineKey) {
        let Some(line) = cx.cfg.line(&key).cloned() else { return self.fail(id, 404, "Not Found") };
        let Some(call) = self.calls.get_mut(&id) else { return };
        if call.visited.contains(&key) {
            return self.fail(id, 482, "Loop Detected (forwarding returns to a line already tried)");
        }
        call.visited.push(key.clone());
        if let Some(all) = &line.forward.all {
            return self.forward(cx, id, &key, all, "all");
        }
        // A CTI device on the line takes the call.
        let cti_dev = dialplan::devices_of(cx.cfg, &key)
            .find(|d| matches!(d.kind, DeviceKind::CtiRoutePoint { .. } | DeviceKind::CtiPort { .. }))
            .map(|d| d.name.clone());
        if let Some(dev) = cti_dev {
            if self.ring_cti(cx, id, &key, &dev) {
                return;
            }
        }
        // The first registered SIP phone the line is on; its best contact.
        let mut other_kind = None;
        let mut target = None;
        let mut phone = None;
        for d in dialplan::devices_of(cx.cfg, &key) {
            if !matches!(d.kind, DeviceKind::SipPhone { .. }) {
                other_kind.get_or_insert(d.kind.type_name());
                continue;
            }
            if let Some(b) = cx.registrar.contacts(&d.name).first() {
                target = Some(b.clone());
                phone = Some(d.name.clone());
                break;
            }
        }
        let Some(binding) = target else {
            if let Some(u) = &line.forward.unregistered {
                return self.forward(cx, id, &key, u, "unregistered");
            }
            let why = match other_kind {
                Some(k) => format!("Temporarily Unavailable ({} is a {k}, not in service)", key.dn),
                None => format!("Temporarily Unavailable ({} is not registered)", key.dn),
            };
            return self.fail(id, 480, &why);
        };
        let to = match &line.display_name {
            Some(n) => format!("\"{n}\" <sip:{}@{}>", key.dn, binding.local),
            None => format!("<sip:{}@{}>", key.dn, binding.local),
        };
        let peer = Origin { source: binding.send_to(), transport: binding.transport, conn: binding.conn, local: binding.local };
        if let Some(c) = self.calls.get_mut(&id) {
            c.ringing_line = Some(key.clone());
        }
        if let Some(p) = phone.filter(|p| cx.cti_open.contains(p)) {
            let (from, from_name) = self.calls.get(&id).map(|c| (c.caller_dn.clone(), c.caller_display.clone())).unwrap_or_default();
            if let Some(c) = self.calls.get_mut(&id) {
                if !c.watchers.contains(&p) {
                    c.watchers.push(p.clone());
                }
            }
            let redirected_from = self.calls.get(&id).and_then(|c| c.visited.first().filter(|f| **f != key).map(|f| f.dn.clone()));
            self.note(&p, id, crate::core::cti::wire::EventKind::CallOffered { from, from_name, to: key.dn.clone(), redirected_from });
        }
        self.invite_b(cx, id, binding.uri.clone(), to, peer, Some(&line));
    }

    /// Sends the INVITE of a (new) B leg, cancelling any previous one.
    fn invite_b(&mut self, cx: &mut Ctx<'_>, id: u64, uri: String, to: String, peer: Origin, line: Option<&crate::config::Line>) {
        self.cancel_b(cx, id);
        let txn = self.new_txn(cx.rng);
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(req_uri) = Uri::parse(&uri) else { return self.fail(id, 480, "Temporarily Unavailable (bad contact)") };
        let tag = cx.rng.token(12);
        let call_id = format!("{}@ctibox", cx.rng.token(20));
        let from = match &call.caller_display {
            Some(n) => format!("\"{n}\" <sip:{}@{}>;tag={tag}", call.caller_dn, peer.local),
            None => format!("<sip:{}@{}>;tag={tag}", call.caller_dn, peer.local),
        };
        let tcp = peer.transport == crate::core::Transport::Tcp;
        let mut req = Request::new(Method::Invite, req_uri, &leg::via(peer.local, tcp, &branch(cx.rng)), &from, &to, &call_id, 1, call.max_forwards);
        leg::set_contact(&mut req.headers, leg::contact(&call.caller_dn, peer.local, tcp));
        req.headers.add(HeaderName::Allow, crate::core::sip::ALLOW);
        if let Some((_, a_req)) = &call.a_invite {
            copy_body(&a_req.headers, &a_req.body, &mut req);
        } else if let Some(offer) = call.cti.as_ref().and_then(|e| e.outgoing_offer(id, &cx.cfg.media.codecs)) {
            req.set_body("application/sdp", offer);
        } else if !call.a_sdp.is_empty() {
            req.set_body("application/sdp", call.a_sdp.clone());
        }
        let b = Leg {
            call_id: call_id.clone(),
            local: from,
            remote: to,
            local_tag: tag.clone(),
            remote_tag: None,
            target: uri,
            local_cseq: 1,
            remote_cseq: 0,
            peer,
            confirmed: false,
        };
        if let Some(old) = call.b.replace(b) {
            self.dialogs.remove(&(old.call_id, old.local_tag));
        }
        call.b_invite = Some((txn, req.clone()));
        call.b_got_provisional = false;
        call.cancel_when_provisional = false;
        self.dialogs.insert((call_id, tag), (id, Side::B));
        self.client.insert(txn, (id, Side::B, Purpose::Invite));
        if let Some(l) = line {
            if l.forward.no_answer.is_some() {
                let t = Duration::from_secs(u64::from(l.forward.no_answer_timeout_s.max(1)));
                self.timers.arm((id, CallTimer::NoAnswer), cx.now + t);
            }
        }
        self.out.push(Action::Request { txn, request: req, to: peer });
    }

    /// Cancels the B leg's INVITE if one is outstanding (RFC 3261 §9.1: only after a
    /// provisional response; otherwise as soon as one arrives).
    fn cancel_b(&mut self, cx: &mut Ctx<'_>, id: u64) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some((txn, inv)) = call.b_invite.take() else { return };
        self.timers.cancel(&(id, CallTimer::NoAnswer));
        if let Some(e) = self.client.get_mut(&txn) {
            e.2 = Purpose::Own; // its final answer (487) is expected and ignored
        }
        if let Some(b) = call.b.as_ref() {
            self.cancelled.insert(txn, (inv.clone(), b.peer));
        }
        if !call.b_got_provisional {
            // Keep it to cancel when the first provisional response arrives.
            call.b_invite = Some((txn, inv));
            call.cancel_when_provisional = true;
            return;
        }
        let peer = call.b.as_ref().map(|b| b.peer);
        let Some(peer) = peer else { return };
        let cancel = cancel_for(&inv);
        let ctxn = self.new_txn(cx.rng);
        self.client.insert(ctxn, (id, Side::B, Purpose::Own));
        self.out.push(Action::Request { txn: ctxn, request: cancel, to: peer });
    }

    /// A response to a client transaction of ours.
    pub fn handle_response(&mut self, cx: &mut Ctx<'_>, txn: ClientTxn, resp: Response) {
        let Some(&(id, side, purpose)) = self.client.get(&txn) else { return };
        if resp.status >= 200 {
            self.client.remove(&txn);
        }
        match purpose {
            Purpose::Own => {
                if let Some(call) = self.calls.get_mut(&id) {
                    if call.cancel_when_provisional && call.b_invite.as_ref().is_some_and(|(t, _)| *t == txn) && resp.status < 200 {
                        call.b_got_provisional = true;
                        self.cancel_b(cx, id);
                    }
                }
                if resp.status >= 200 {
                    if let Some((inv, peer)) = self.cancelled.remove(&txn) {
                        // Still waiting to CANCEL it: the answer came first.
                        if let Some(c) = self.calls.get_mut(&id).filter(|c| c.b_invite.as_ref().is_some_and(|(t, _)| *t == txn)) {
                            c.b_invite = None;
                        }
                        // A late 2xx to a cancelled INVITE: ACK and hang it up (RFC 3261 §9.1 race).
                        if resp.status < 300 {
                            self.ack_and_bye_cancelled(cx, id, &inv, peer, &resp);
                        }
                        self.end_if_cancelled(id);
                    }
                }
            }
            Purpose::Invite => self.b_invite_response(cx, id, txn, resp),
            Purpose::PhoneInvite => self.phone_invite_response(cx, id, resp),
            Purpose::MohHold(p) => {
                if resp.status >= 200 {
                    self.moh_answered(cx, id, side, p, &resp);
                }
            }
            Purpose::CtiReinvite { hold } => {
                if resp.status >= 200 {
                    self.cti_reinvite_answered(cx, id, side, hold, &resp);
                }
            }
            Purpose::BoxMedia => {
                if resp.status >= 200 {
                    self.box_reinvite_answered(cx, id, side, Some(&resp));
                }
            }
            Purpose::Relay(stx) => self.relay_response(cx, id, side, txn, stx, resp),
        }
    }

    /// A request could not even start its transaction (the table is full): an INVITE's
    /// caller is told the box is overloaded (503), not that nobody answered.
    pub fn handle_unsendable(&mut self, cx: &mut Ctx<'_>, txn: ClientTxn) {
        if let Some(&(id, _, Purpose::Invite)) = self.client.get(&txn) {
            self.client.remove(&txn);
            if let Some(c) = self.calls.get_mut(&id) {
                c.b_invite = None;
            }
            return self.fail(id, 503, "Service Unavailable (transaction capacity)");
        }
        self.handle_txn_timeout(cx, txn);
    }

    /// The client transaction ended without a final answer (Timer B/F).
    pub fn handle_txn_timeout(&mut self, cx: &mut Ctx<'_>, txn: ClientTxn) {
        let Some((id, side, purpose)) = self.client.remove(&txn) else { return };
        match purpose {
            Purpose::Invite => {
                let line = self.calls.get(&id).and_then(|c| c.ringing_line.clone());
                let cfna = line.as_ref().and_then(|l| cx.cfg.line(l)).and_then(|l| l.forward.no_answer.clone());
                if let (Some(line), Some(n)) = (line, cfna) {
                    if let Some(c) = self.calls.get_mut(&id) {
                        c.b_invite = None;
                    }
                    self.forward(cx, id, &line, &n, "no answer (timeout)");
                } else {
                    self.fail(id, 408, "Request Timeout (called phone did not answer)");
                }
            }
            Purpose::Relay(stx) => {
                // The other party is gone: tell the originator, and end the call.
                let _ = side;
                if let Some(orig) = self.pending_requests.remove(&stx) {
                    let tag = orig.to().ok().and_then(|t| t.tag().map(str::to_string)).unwrap_or_default();
                    self.out.push(Action::Respond(stx, respond(&orig, 408, None, &tag)));
                }
                if let Some(call) = self.calls.get_mut(&id) {
                    call.relaying = None;
                }
                self.hang_up(cx, id, None);
            }
            Purpose::Own => {
                if self.cancelled.remove(&txn).is_some() {
                    if let Some(c) = self.calls.get_mut(&id).filter(|c| c.b_invite.as_ref().is_some_and(|(t, _)| *t == txn)) {
                        c.b_invite = None;
                    }
                    self.end_if_cancelled(id);
                }
            }
            Purpose::MohHold(super::moh::MohPending { stx, port, .. }) => {
                self.media_ports.remove(&port);
                if let Some(orig) = self.pending_requests.remove(&stx) {
                    let tag = orig.to().ok().and_then(|t| t.tag().map(str::to_string)).unwrap_or_default();
                    self.out.push(Action::Respond(stx, respond(&orig, 408, None, &tag)));
                }
                if let Some(c) = self.calls.get_mut(&id) {
                    c.relaying = None;
                }
            }
            Purpose::PhoneInvite => {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.end_reason = Some(crate::core::cti::wire::EndReason::NoAnswer);
                }
                self.remove(id);
            }
            Purpose::CtiReinvite { .. } => {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.relaying = None;
                }
            }
            Purpose::BoxMedia => self.box_reinvite_answered(cx, id, side, None),
        }
    }

    fn b_invite_response(&mut self, cx: &mut Ctx<'_>, id: u64, txn: ClientTxn, resp: Response) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        if call.b_invite.as_ref().is_none_or(|(t, _)| *t != txn) {
            return;
        }
        let Some(b) = call.b.as_mut() else { return };
        if resp.status == 100 {
            return;
        }
        if let Ok(to) = resp.to() {
            if let Some(t) = to.tag() {
                b.remote_tag = Some(t.to_string());
                b.remote = to.to_string();
            }
        }
        if let Ok(Some(crate::core::sip::Contact::Addrs(a))) = resp.contact() {
            if let Some(c) = a.first() {
                b.target = c.uri.to_string();
            }
        }
        if resp.status < 200 {
            let first_ring = !call.b_got_provisional;
            call.b_got_provisional = true;
            if call.cancel_when_provisional {
                self.cancel_b(cx, id);
                return;
            }
            if first_ring && resp.status == 180 {
                let mut watchers = call.watchers.clone();
                if let Some(e) = call.cti.as_ref().filter(|e| e.outgoing) {
                    watchers.push(e.device.clone());
                }
                for w in watchers {
                    self.note(&w, id, crate::core::cti::wire::EventKind::CallRinging);
                }
            }
            let Some(call) = self.calls.get_mut(&id) else { return };
            if let Some((stx, a_req)) = &call.a_invite {
                let mut r = respond(a_req, resp.status, Some(&resp.reason), &call.a.local_tag);
                leg::set_contact(&mut r.headers, call.a.contact(&call.dialled));
                if let Some((ct, b)) = body_of(&resp.headers, &resp.body) {
                    r.set_body(&ct, b);
                }
                self.out.push(Action::Respond(*stx, r));
            }
            return;
        }
        call.b_invite = None;
        self.timers.cancel(&(id, CallTimer::NoAnswer));
        if resp.status < 300 {
            // Answered: ACK the called leg now, answer the caller with its SDP.
            b.confirmed = true;
            let cseq = b.local_cseq;
            let Some(ack) = b.ack(cseq, &branch(cx.rng)) else { return };
            let to = b.peer;
            let bytes = ack.to_bytes();
            call.b_ack = Some(bytes.clone());
            self.out.push(Action::Stateless { message: bytes, to });
            if call.cti.as_ref().is_some_and(|e| e.outgoing) {
                return self.cti_outgoing_answered(id, &resp);
            }
            if let Some(cseq) = call.phone_ack_pending.take() {
                // Click-to-dial: the called party's answer goes to the phone in its ACK.
                call.answered = true;
                call.b_sdp = resp.body.clone();
                if let Some(mut ack) = call.a.ack(cseq, &branch(cx.rng)) {
                    if let Some((ct, b)) = body_of(&resp.headers, &resp.body) {
                        ack.set_body(&ct, b);
                    }
                    self.out.push(Action::Stateless { message: ack.to_bytes(), to: call.a.peer });
                }
                log::info!("call {id}: answered");
                let watchers = call.watchers.clone();
                for w in watchers {
                    self.note(&w, id, crate::core::cti::wire::EventKind::CallConnected);
                }
                return;
            }
            let Some((stx, a_req)) = call.a_invite.take() else {
                // The caller already gave up: hang the answered leg up.
                return self.hang_up(cx, id, Some(Side::A));
            };
            let mut r = respond(&a_req, resp.status, Some(&resp.reason), &call.a.local_tag);
            leg::set_contact(&mut r.headers, call.a.contact(&call.dialled));
            r.headers.add(HeaderName::Allow, crate::core::sip::ALLOW);
            if let Some((ct, b)) = body_of(&resp.headers, &resp.body) {
                r.set_body(&ct, b);
            }
            call.answered = true;
            call.b_sdp = resp.body.clone();
            log::info!("call {id}: answered");
            let watchers = call.watchers.clone();
            start_2xx_retransmission(call, &mut self.timers, cx, r.to_bytes());
            self.invites.remove(&stx);
            self.out.push(Action::Respond(stx, r));
            for w in watchers {
                self.note(&w, id, crate::core::cti::wire::EventKind::CallConnected);
            }
            return;
        }
        // A failure from the called phone: forward on busy, else pass it on.
        let line = call.ringing_line.clone();
        let fwd = line.as_ref().and_then(|l| cx.cfg.line(l)).map(|l| l.forward.clone());
        let busy = matches!(resp.status, 486 | 600);
        if let (true, Some(line), Some(Some(n))) = (busy, line.clone(), fwd.as_ref().map(|f| f.busy.clone())) {
            return self.forward(cx, id, &line, &n, "busy");
        }
        if let (true, Some(line), Some(Some(n))) = (matches!(resp.status, 408 | 480), line, fwd.map(|f| f.no_answer)) {
            return self.forward(cx, id, &line, &n, "no answer");
        }
        let reason = resp.reason.clone();
        let why = match resp.status {
            486 | 600 => crate::core::cti::wire::EndReason::Busy,
            408 | 480 => crate::core::cti::wire::EndReason::NoAnswer,
            _ => crate::core::cti::wire::EndReason::Rejected,
        };
        if let Some(c) = self.calls.get_mut(&id) {
            c.end_reason = Some(why);
            if let Some(e) = c.cti.as_mut().filter(|e| e.outgoing) {
                e.end = Some(why);
            }
        }
        self.fail(id, resp.status, &reason);
    }

    /// ACK and BYE for a 2xx to the INVITE `inv` the box had cancelled, built from
    /// that INVITE and the answer alone (the call may be gone, or ring elsewhere).
    fn ack_and_bye_cancelled(&mut self, cx: &mut Ctx<'_>, id: u64, inv: &Request, peer: Origin, resp: &Response) {
        let (Ok(from), Ok(to), Ok(call_id), Ok(cseq)) = (inv.one(HeaderName::From), resp.one(HeaderName::To), inv.call_id(), inv.cseq()) else { return };
        let target = match resp.contact() {
            Ok(Some(crate::core::sip::Contact::Addrs(a))) if !a.is_empty() => a[0].uri.clone(),
            _ => inv.uri.clone(),
        };
        let tcp = peer.transport == crate::core::Transport::Tcp;
        let ack = Request::new(Method::Ack, target.clone(), &leg::via(peer.local, tcp, &branch(cx.rng)), from, to, call_id, cseq.seq, 70);
        self.out.push(Action::Stateless { message: ack.to_bytes(), to: peer });
        let bye = Request::new(Method::Bye, target, &leg::via(peer.local, tcp, &branch(cx.rng)), from, to, call_id, cseq.seq + 1, 70);
        let txn = ClientTxn(cx.rng.next_u64());
        self.client.insert(txn, (id, Side::B, Purpose::Own));
        log::info!("call {id}: the called party answered after the CANCEL; hanging it up");
        self.out.push(Action::Request { txn, request: bye, to: peer });
    }

    /// The caller cancelled while the called leg's INVITE had no provisional answer
    /// yet, so the call was kept to CANCEL it then; that INVITE is over now.
    fn end_if_cancelled(&mut self, id: u64) {
        let orphan = self.calls.get(&id).is_some_and(|c| c.cancel_when_provisional && c.a_invite.is_none() && !c.answered && c.b_invite.is_none());
        if orphan {
            self.remove(id);
        }
    }

    /// CANCEL for the caller's INVITE (matched by the transaction layer).
    pub fn handle_cancel(&mut self, cx: &mut Ctx<'_>, invite: ServerTxn) {
        let Some(&id) = self.invites.get(&invite) else { return };
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some((stx, req)) = call.a_invite.take() else { return };
        log::info!("call {id}: cancelled by the caller");
        self.out.push(Action::Respond(stx, respond(&req, 487, None, &call.a.local_tag)));
        self.cancel_b(cx, id);
        // Keep the call until the B leg's INVITE is done, if it must still be cancelled.
        let waiting = self.calls.get(&id).is_some_and(|c| c.cancel_when_provisional);
        if !waiting {
            self.remove(id);
        } else {
            self.invites.remove(&stx);
        }
    }

    /// An ACK for a 2xx (outside transactions).
    pub fn handle_ack(&mut self, req: &Request) {
        let Some((id, side)) = self.find_dialog(req) else { return };
        if side != Side::A {
            return;
        }
        let mut connected_at = None;
        if let Some(call) = self.calls.get_mut(&id) {
            let first = !call.a.confirmed;
            call.a.confirmed = true;
            call.a_2xx = None;
            self.timers.cancel(&(id, CallTimer::Retransmit2xx));
            if first {
                connected_at = call.cti.as_ref().filter(|e| e.agreed.is_some()).map(|e| e.device.clone());
            }
        }
        if let Some(device) = connected_at {
            self.note(&device, id, crate::core::cti::wire::EventKind::CallConnected);
        }
    }

    /// A retransmitted 2xx to the B leg's INVITE (its client transaction is gone): ACK again.
    pub fn handle_stray_2xx(&mut self, resp: &Response) {
        let (Ok(call_id), Ok(from)) = (resp.call_id(), resp.from()) else { return };
        let Some(tag) = from.tag() else { return };
        let Some(&(id, Side::B)) = self.dialogs.get(&(call_id.to_string(), tag.to_string())) else { return };
        if let Some(call) = self.calls.get(&id) {
            if let (Some(ack), Some(b)) = (&call.b_ack, &call.b) {
                self.out.push(Action::Stateless { message: ack.clone(), to: b.peer });
            }
        }
    }

    fn find_dialog(&self, req: &Request) -> Option<(u64, Side)> {
        let call_id = req.call_id().ok()?;
        let to = req.to().ok()?;
        let tag = to.tag()?;
        self.dialogs.get(&(call_id.to_string(), tag.to_string())).copied()
    }

    /// Whether a request belongs to one of our dialogs.
    pub fn knows(&self, req: &Request) -> bool {
        self.find_dialog(req).is_some()
    }

    /// A request inside a dialog (BYE, re-INVITE, INFO, UPDATE, OPTIONS...).
    pub fn handle_in_dialog(&mut self, cx: &mut Ctx<'_>, stx: ServerTxn, req: Request) {
        let tag_for_errors = req.to().ok().and_then(|t| t.tag().map(str::to_string)).unwrap_or_default();
        let Some((id, side)) = self.find_dialog(&req) else {
            self.out.push(Action::Respond(stx, respond(&req, 481, None, &tag_for_errors)));
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else { return };
        let this = if side == Side::A { &mut call.a } else {
            match call.b.as_mut() {
                Some(b) => b,
                None => return,
            }
        };
        let cseq = req.cseq().map(|c| c.seq).unwrap_or(0);
        if cseq <= this.remote_cseq && this.remote_cseq != 0 {
            self.out.push(Action::Respond(stx, respond(&req, 500, Some("Server Internal Error (CSeq out of order)"), &this.local_tag)));
            return;
        }
        this.remote_cseq = cseq;
        if let Ok(Some(crate::core::sip::Contact::Addrs(a))) = req.contact() {
            if let Some(c) = a.first() {
                this.target = c.uri.to_string();
            }
        }
        let tag = this.local_tag.clone();
        match req.method {
            Method::Bye => {
                log::info!("call {id}: {} hangs up", if side == Side::A { "caller" } else { "called party" });
                self.out.push(Action::Respond(stx, respond(&req, 200, None, &tag)));
                self.hang_up(cx, id, Some(side));
            }
            Method::Options => {
                let mut r = respond(&req, 200, None, &tag);
                r.headers.add(HeaderName::Allow, crate::core::sip::ALLOW);
                self.out.push(Action::Respond(stx, r));
            }
            _ if call.cti.as_ref().is_some_and(|e| e.agreed.is_some()) => {
                // The application terminates media: the box answers for it.
                let end = call.cti.as_mut().expect("checked");
                let mut r = respond(&req, 200, None, &tag);
                if req.method == Method::Invite {
                    let (_, _, codec, m, dtmf) = end.agreed.expect("checked");
                    let dir = match crate::core::sdp::parse_audio(&req.body).map(|a| a.direction) {
                        Some(crate::core::sdp::Direction::SendOnly) => crate::core::sdp::Direction::RecvOnly,
                        Some(crate::core::sdp::Direction::Inactive) => crate::core::sdp::Direction::Inactive,
                        _ => crate::core::sdp::Direction::SendRecv,
                    };
                    end.sdp_version += 1;
                    let this = if side == Side::A { &call.a } else { call.b.as_ref().unwrap_or(&call.a) };
                    leg::set_contact(&mut r.headers, this.contact(&call.dialled));
                    r.set_body("application/sdp", crate::core::sdp::body(m.ip, m.port, codec, dtmf, dir, id, end.sdp_version));
                }
                self.out.push(Action::Respond(stx, r));
            }
            _ => {
                if call.relaying.is_some() {
                    self.out.push(Action::Respond(stx, respond(&req, 491, None, &tag)));
                    return;
                }
                if req.method == Method::Invite {
                    self.out.push(Action::Respond(stx, respond(&req, 100, None, &tag)));
                    if super::moh::is_hold_offer(&req.body) && self.moh_hold(cx, id, side, stx, &req) {
                        return;
                    }
                }
                let Some(call) = self.calls.get_mut(&id) else { return };
                let other = if side == Side::A { call.b.as_mut() } else { Some(&mut call.a) };
                let Some(other) = other.filter(|o| o.confirmed || side == Side::B) else {
                    self.out.push(Action::Respond(stx, respond(&req, 491, Some("Request Pending (call not yet answered)"), &tag)));
                    return;
                };
                let Some(mut fwd) = other.request(req.method.clone(), &branch(cx.rng)) else { return };
                let contact_user = if side == Side::A { call.caller_dn.clone() } else { call.dialled.clone() };
                leg::set_contact(&mut fwd.headers, other.contact(&contact_user));
                copy_body(&req.headers, &req.body, &mut fwd);
                let to = other.peer;
                let txn = ClientTxn(cx.rng.next_u64());
                call.relaying = Some(txn);
                self.client.insert(txn, (id, side.other(), Purpose::Relay(stx)));
                self.pending_requests.insert(stx, req);
                self.out.push(Action::Request { txn, request: fwd, to });
            }
        }
    }

    fn relay_response(&mut self, cx: &mut Ctx<'_>, id: u64, to_side: Side, txn: ClientTxn, stx: ServerTxn, resp: Response) {
        if resp.status < 200 {
            return; // the originator already has 100 Trying
        }
        let Some(orig) = self.pending_requests.remove(&stx) else { return };
        if (200..300).contains(&resp.status) && orig.method == Method::Invite && !super::moh::is_hold_offer(&orig.body) {
            self.moh_stop(id);
        }
        let Some(call) = self.calls.get_mut(&id) else { return };
        if call.relaying == Some(txn) {
            call.relaying = None;
        }
        // ACK a 2xx to a relayed re-INVITE on the leg it was sent on.
        let sent_on = if to_side == Side::A { Some(&mut call.a) } else { call.b.as_mut() };
        if let Some(l) = sent_on {
            if (200..300).contains(&resp.status) && resp.cseq().is_ok_and(|c| c.method == Method::Invite) {
                if let Some(ack) = l.ack_for(&resp, &branch(cx.rng)) {
                    self.out.push(Action::Stateless { message: ack.to_bytes(), to: l.peer });
                }
            }
        }
        let from_leg = if to_side == Side::A { call.b.as_ref() } else { Some(&call.a) };
        let Some(from_leg) = from_leg else { return };
        let mut r = respond(&orig, resp.status, Some(&resp.reason), &from_leg.local_tag);
        // The originator is on the other side from `to_side`; its Contact names the
        // party it talks to, as in the dialog's first answer (a phone takes a 2xx
        // Contact as its new remote target).
        let user = if to_side == Side::A { call.caller_dn.clone() } else { call.dialled.clone() };
        leg::set_contact(&mut r.headers, from_leg.contact(&user));
        if let Some((ct, b)) = body_of(&resp.headers, &resp.body) {
            r.set_body(&ct, b);
        }
        self.out.push(Action::Respond(stx, r));
    }

    /// Ends a call: BYE to every confirmed leg except `from` (which hung up itself).
    pub(super) fn hang_up(&mut self, cx: &mut Ctx<'_>, id: u64, from: Option<Side>) {
        if self.calls.get(&id).is_some_and(|c| c.phone_ack_pending.is_some()) && from != Some(Side::A) {
            self.release_phone(id);
        }
        let Some(call) = self.calls.get_mut(&id) else { return };
        let mut byes = Vec::new();
        if from != Some(Side::A) && (call.a.confirmed || call.answered) && !call.a.call_id.is_empty() {
            if let Some(r) = call.a.request(Method::Bye, &branch(cx.rng)) {
                byes.push((r, call.a.peer));
            }
        }
        if from != Some(Side::B) {
            if let Some(b) = call.b.as_mut().filter(|b| b.confirmed) {
                if let Some(r) = b.request(Method::Bye, &branch(cx.rng)) {
                    byes.push((r, b.peer));
                }
            }
        }
        for (request, to) in byes {
            let txn = ClientTxn(cx.rng.next_u64());
            self.client.insert(txn, (id, Side::A, Purpose::Own));
            self.out.push(Action::Request { txn, request, to });
        }
        log::info!("call {id}: ended");
        self.remove(id);
    }

    /// Fires due call timers.
    pub fn handle_timeout(&mut self, cx: &mut Ctx<'_>) {
        while let Some((id, t)) = self.timers.pop_expired(cx.now) {
            match t {
                CallTimer::Retransmit2xx => {
                    let Some(call) = self.calls.get_mut(&id) else { continue };
                    let Some(p) = call.a_2xx.as_mut() else { continue };
                    if cx.now >= p.give_up {
                        log::warn!("call {id}: caller never acknowledged the answer; hanging up");
                        call.a_2xx = None;
                        call.a.confirmed = true;
                        self.hang_up(cx, id, None);
                        continue;
                    }
                    self.out.push(Action::Stateless { message: p.message.clone(), to: call.a.peer });
                    p.interval = (p.interval * 2).min(cx.t2());
                    // The last wait ends at 64*T1, when the call is hung up (not at
                    // the first retransmission time past it).
                    let next = (cx.now + p.interval).min(p.give_up);
                    self.timers.arm((id, CallTimer::Retransmit2xx), next);
                }
                CallTimer::CtiAnswer => self.cti_answer_timeout(cx, id),
                CallTimer::Digits => self.digit_timeout(id),
                CallTimer::NoAnswer => {
                    let Some(call) = self.calls.get(&id) else { continue };
                    let Some(line) = call.ringing_line.clone() else { continue };
                    let Some(n) = cx.cfg.line(&line).and_then(|l| l.forward.no_answer.clone()) else { continue };
                    self.forward(cx, id, &line, &n, "no answer");
                }
            }
        }
    }
}

/// CANCEL for a client INVITE (RFC 3261 §9.1): same Request-URI, Call-ID, From, To,
/// CSeq number and top Via.
fn cancel_for(inv: &Request) -> Request {
    let mut headers = crate::core::sip::Headers::default();
    for h in &inv.headers.0 {
        match h.name {
            HeaderName::Via | HeaderName::From | HeaderName::To | HeaderName::CallId | HeaderName::Route | HeaderName::MaxForwards => {
                headers.0.push(h.clone())
            }
            HeaderName::CSeq => {
                let n = h.value.split_whitespace().next().unwrap_or("1").to_string();
                headers.push(HeaderName::CSeq, format!("{n} CANCEL"));
            }
            _ => {}
        }
    }
    headers.push(HeaderName::ContentLength, "0");
    Request { method: Method::Cancel, uri: inv.uri.clone(), headers, body: Vec::new() }
}
