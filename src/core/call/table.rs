//! The call table: every call by id, and the maps that route what arrives to its call
//! (dialogs, client and server transactions, the box's media streams), the id
//! allocator and the capacity. What arrives is dispatched here to the call's handler
//! (routing.rs, relay.rs, cti.rs, moh.rs, box_media.rs); a call ends in `remove`,
//! which frees every entry it holds. Talks to the transaction layer through `Action`s.

use super::leg::Side;
use super::state::{Call, CallState};
use crate::config::Config;
use crate::core::rng::EngineRng;
use crate::core::registrar::{Origin, Registrar};
use crate::core::sip::{HeaderName, Request, Response, SipHeaders};
use crate::core::timer::Timers;
use crate::core::Time;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Forwarding hops one call may take before it is refused as a loop.
pub const MAX_FORWARD_HOPS: u8 = 5;

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
    /// An in-dialog OPTIONS asking an idle call's party whether it still has the call.
    IdleProbe,
    /// A re-INVITE putting a party through to another (`cti_join`).
    Joined,
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

/// A dialog as the B2BUA looks it up: a 128-bit digest of its Call-ID and the box's
/// tag (as the transaction keys are, sip/txn.rs), so a lookup for every request
/// builds no strings.
pub type DialogKey = (u64, u64);

pub fn dialog_key(call_id: &str, tag: &str) -> DialogKey {
    crate::core::sip::txn::key_of(&[b"dialog", call_id.as_bytes(), tag.as_bytes()])
}

/// All calls.
#[derive(Default, Serialize, Deserialize)]
pub struct B2bua {
    pub(super) calls: BTreeMap<u64, Box<Call>>,
    pub(super) next_id: u64,
    /// (Call-ID, our tag) -> call and side.
    /// By `dialog_key(Call-ID, the box's tag)`.
    pub(super) dialogs: HashMap<DialogKey, (u64, Side)>,
    pub(super) client: HashMap<ClientTxn, (u64, Side, Purpose)>,
    /// Caller INVITE server transactions -> call (for CANCEL).
    pub(super) invites: HashMap<ServerTxn, u64>,
    /// Requests relayed to the other leg, by the server transaction awaiting the answer.
    pub(super) pending_requests: HashMap<ServerTxn, Request>,
    /// The calls' timers, keyed by call (each `CallState` says which it keeps armed).
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
    pub(super) cancelled: HashMap<ClientTxn, Cancelled>,
    /// `tend_map`'s notes on the six tables `shrink` tends, in its order.
    #[serde(skip)]
    rooms: [crate::core::Room; 6],
    /// Devices that cannot take a call now (an analog port off hook or ringing): a call
    /// to one is busy, as to a CTI port that has its call.
    #[serde(skip)]
    pub busy_devices: std::collections::BTreeSet<String>,
}

/// An INVITE the box cancelled, until its final answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Cancelled {
    pub(super) request: Request,
    pub(super) to: Origin,
    /// It had no provisional answer yet: its CANCEL goes with the first one (RFC 3261 §9.1).
    pub(super) on_provisional: bool,
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

pub(super) fn respond(req: &Request, code: u16, reason: Option<&str>, tag: &str) -> Response {
    let mut r = Response::to_request(req, code, if code == 100 { None } else { Some(tag) });
    if let Some(reason) = reason {
        r.reason = reason.to_string();
    }
    r
}

/// A message's body with its Content-Type (SDP when unnamed), to pass on; `None` when
/// there is no body.
pub(super) fn body_of(headers: &crate::core::sip::Headers, body: &[u8]) -> Option<(String, Vec<u8>)> {
    (!body.is_empty()).then(|| (headers.get(&HeaderName::ContentType).unwrap_or("application/sdp").to_string(), body.to_vec()))
}

pub(super) fn copy_body(from_headers: &crate::core::sip::Headers, body: &[u8], into: &mut Request) {
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

    /// Calls not yet established (ringing, being routed or forwarded).
    pub fn calls_in_setup(&self) -> usize {
        self.calls.values().filter(|c| !c.state.is_established()).count()
    }

    /// `[sip] max_calls` are up: new calls are refused.
    pub fn at_capacity(&self, cfg: &Config) -> bool {
        self.calls.len() >= cfg.sip.max_calls as usize
    }

    /// Gives back the memory of tables that have emptied out after load.
    pub fn shrink(&mut self) {
        use crate::core::tend_map;
        let r = &mut self.rooms;
        tend_map(&mut self.dialogs, &mut r[0]);
        tend_map(&mut self.client, &mut r[1]);
        tend_map(&mut self.invites, &mut r[2]);
        tend_map(&mut self.pending_requests, &mut r[3]);
        tend_map(&mut self.sdp_versions, &mut r[4]);
        tend_map(&mut self.cancelled, &mut r[5]);
        self.timers.shrink();
        if self.out.capacity() > 64 && self.out.is_empty() {
            self.out.shrink_to(16);
        }
    }

    /// How many entries each of the B2BUA's tables holds (calls, dialogs, transactions
    /// it waits on, RTP ports, timers): all zero once every call is over and its
    /// transactions have ended. For leak checks in tests and for diagnosis.
    pub fn table_sizes(&self) -> [(&'static str, usize); 10] {
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
            ("streams", self.streams.len()),
        ]
    }

    /// Earliest call timer.
    pub fn next_timeout(&self) -> Option<Time> {
        self.timers.next()
    }

    pub(super) fn new_txn(&mut self, rng: &mut EngineRng) -> ClientTxn {
        ClientTxn(rng.next_u64())
    }

    /// A branch (and a transaction id) unique within this B2BUA, when no RNG is at hand.
    pub(super) fn next_branch(&mut self, id: u64) -> (String, ClientTxn) {
        self.seq += 1;
        (format!("z9hG4bK3p{id}x{}", self.seq), ClientTxn(u64::MAX - self.seq))
    }

    pub(super) fn find_dialog(&self, req: &Request) -> Option<(u64, Side)> {
        self.dialogs.get(&dialog_key(req.call_id().ok()?, req.tag_of_to()?)).copied()
    }

    /// Whether a request belongs to one of our dialogs.
    pub fn knows(&self, req: &Request) -> bool {
        self.find_dialog(req).is_some()
    }

    pub(super) fn remove(&mut self, id: u64) {
        self.moh_stop(id);
        self.box_media_stop(id);
        self.sdp_versions.remove(&id);
        if let Some(call) = self.calls.get(&id) {
            use crate::core::cti::wire::{EndReason, EventKind};
            let why = call.end_reason.unwrap_or(EndReason::Hangup);
            let mut ends: Vec<(String, bool, EndReason)> = call.watchers.iter().map(|w| (w.clone(), false, why)).collect();
            if let Some(e) = call.cti() {
                ends.push((e.device.clone(), e.agreed.is_some(), e.end.unwrap_or(EndReason::Hangup)));
            }
            for (d, media, reason) in ends {
                if media {
                    self.note(&d, id, EventKind::MediaStopped);
                }
                self.note(&d, id, EventKind::CallEnded { reason });
            }
        }
        // A request still waiting for the other party's answer gets 487 (RFC 3261
        // §15.1.2): the answer has no call to come back to. There is at most one,
        // the one `relaying` names (others get 491 meanwhile).
        let relayed = self.calls.get(&id).and_then(|c| c.relaying).and_then(|t| self.client.get(&t));
        let waiting = relayed.and_then(|(c, _, p)| match p {
            Purpose::Relay(stx) if *c == id => Some(*stx),
            Purpose::MohHold(m) if *c == id => Some(m.stx),
            _ => None,
        });
        if let Some((stx, orig)) = waiting.and_then(|stx| Some((stx, self.pending_requests.remove(&stx)?))) {
            self.out.push(Action::Respond(stx, respond(&orig, 487, None, orig.tag_of_to().unwrap_or_default())));
        }
        if let Some(call) = self.calls.remove(&id) {
            for l in [call.leg(Side::A), call.leg(Side::B)].into_iter().flatten() {
                self.dialogs.remove(&dialog_key(&l.call_id, &l.local_tag));
            }
            if let Some(stx) = call.a_stx {
                self.invites.remove(&stx);
            }
            self.timers.cancel(&(id, CallTimer::Retransmit2xx));
            self.timers.cancel(&(id, CallTimer::NoAnswer));
            self.timers.cancel(&(id, CallTimer::CtiAnswer));
            self.timers.cancel(&(id, CallTimer::Digits));
            // Client transactions still running keep their entries until they end,
            // so late answers are recognised and ignored.
            if call.state.is_established() {
                self.completed += 1;
            }
        }
    }

    /// A response to a client transaction of ours.
    pub fn handle_response(&mut self, cx: &mut Ctx<'_>, txn: ClientTxn, resp: Response) {
        let Some(&(id, side, purpose)) = self.client.get(&txn) else { return };
        if resp.status >= 200 {
            self.client.remove(&txn);
        }
        match purpose {
            Purpose::Own => {
                if resp.status < 200 {
                    // The first provisional answer to a cancelled INVITE: its CANCEL goes now.
                    if let Some(c) = self.cancelled.get_mut(&txn).filter(|c| c.on_provisional) {
                        c.on_provisional = false;
                        let (inv, to) = (c.request.clone(), c.to);
                        self.send_cancel(cx, id, &inv, to);
                    }
                } else if let Some(Cancelled { request: inv, to: peer, .. }) = self.cancelled.remove(&txn) {
                    // A late 2xx to a cancelled INVITE: ACK and hang it up (RFC 3261 §9.1 race).
                    if resp.status < 300 {
                        self.ack_and_bye_cancelled(cx, id, &inv, peer, &resp);
                    }
                    self.end_if_cancelled(id, txn);
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
            Purpose::IdleProbe => {
                if resp.status >= 200 {
                    self.probe_answered(cx, id, side, Some(resp.status));
                }
            }
            Purpose::Joined => {
                if resp.status >= 200 {
                    self.joined_answered(cx, id, side, &resp);
                }
            }
        }
    }

    /// A request could not even start its transaction (the table is full): an INVITE's
    /// caller is told the box is overloaded (503), not that nobody answered.
    pub fn handle_unsendable(&mut self, cx: &mut Ctx<'_>, txn: ClientTxn) {
        if let Some(&(id, side, Purpose::IdleProbe)) = self.client.get(&txn) {
            // Not sent (no room): no sign the party is gone; asked again later.
            self.client.remove(&txn);
            return self.probe_answered(cx, id, side, Some(200));
        }
        if let Some(&(id, _, Purpose::Invite)) = self.client.get(&txn) {
            self.client.remove(&txn);
            if let Some(c) = self.calls.get_mut(&id).filter(|c| c.state.ringing().is_some()) {
                c.state = CallState::Routing;
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
                    if let Some(c) = self.calls.get_mut(&id).filter(|c| c.state.ringing().is_some()) {
                        c.state = CallState::Routing;
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
                    self.out.push(Action::Respond(stx, respond(&orig, 408, None, orig.tag_of_to().unwrap_or_default())));
                }
                if let Some(call) = self.calls.get_mut(&id) {
                    call.relaying = None;
                }
                self.hang_up(cx, id, None);
            }
            Purpose::Own => {
                if self.cancelled.remove(&txn).is_some() {
                    self.end_if_cancelled(id, txn);
                }
            }
            Purpose::MohHold(super::moh::MohPending { stx, port, .. }) => {
                self.media_ports.remove(&port);
                if let Some(orig) = self.pending_requests.remove(&stx) {
                    self.out.push(Action::Respond(stx, respond(&orig, 408, None, orig.tag_of_to().unwrap_or_default())));
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
            Purpose::IdleProbe => self.probe_answered(cx, id, side, None),
            Purpose::Joined => {}
        }
    }

    /// Fires due call timers.
    pub fn handle_timeout(&mut self, cx: &mut Ctx<'_>) {
        while let Some((id, t)) = self.timers.pop_expired(cx.now) {
            match t {
                CallTimer::Retransmit2xx => {
                    let Some(call) = self.calls.get_mut(&id) else { continue };
                    let Some(est) = call.state.established_mut() else { continue };
                    let Some(p) = est.a_2xx.as_mut() else { continue };
                    if cx.now >= p.give_up {
                        log::warn!("call {id}: caller never acknowledged the answer; hanging up");
                        est.a_2xx = None;
                        if let Some(a) = call.a.leg_mut() {
                            a.confirmed = true;
                        }
                        self.hang_up(cx, id, None);
                        continue;
                    }
                    let Some(a) = call.a.leg() else { continue };
                    self.out.push(Action::Stateless { message: p.message.clone(), to: a.peer });
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
