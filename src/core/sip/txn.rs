//! SIP transactions (RFC 3261 §17, RFC 6026): INVITE and non-INVITE, client and
//! server, with timers A-L from T1/T2/T4. Retransmissions over UDP only; over TCP the
//! waiting timers are zero. Matches requests and responses to transactions (§17.1.3,
//! §17.2.3), absorbs retransmitted requests by resending the last response, ACKs
//! non-2xx INVITE answers itself, and hands everything else to the TU. Pure.
//!
//! A transaction is kept whole only while it is live: no final answer yet, or an
//! INVITE's non-2xx waiting for its ACK. Once its final answer is out it shrinks to
//! a compact record keyed by a 128-bit digest of its key (branch, sent-by, method
//! class): what absorbs a retransmission and answers it again, and nothing else (see
//! `Done`). Those records wait in two expiry queues (64*T1 and T4), not in the timer
//! table, and are bounded by `limits::SIP_MAX_COMPLETED` (the oldest go first: a
//! record lost early only means a late retransmission is treated as new).
//!
//! An ACK for a non-2xx answer is matched by its branch, or, when a client gave it a
//! new branch (RFC 2543-era and sloppy clients), by the dialog identifiers and CSeq
//! number of the answer (Call-ID, From tag, To tag, CSeq): absorbed and counted,
//! where before the answer was retransmitted for 64*T1.
//!
//! Capacity: live transactions are bounded by `limit`. A request that would start a
//! call or a dialog (no To tag) is refused past it (`Incoming::Overloaded`); requests
//! inside a dialog, CANCELs and ACKs are admitted up to twice the limit, the hard
//! bound on memory, so that calls in progress can always end.

use super::origin::Origin;
use super::{HeaderName, Method, Request, Response, SipHeaders};
use crate::core::timer::Timers;
use crate::core::{Time, Transport};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::hash::Hasher;
use std::time::Duration;

/// A server transaction the layer holds for its user (a request to answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServerTxn(pub u64);
/// A client transaction its user asked for (its responses come back with this).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ClientTxn(pub u64);

/// RFC 3261 timer values (defaults: 500 ms, 4 s, 5 s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipTimers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for SipTimers {
    fn default() -> Self {
        SipTimers { t1: Duration::from_millis(500), t2: Duration::from_secs(4), t4: Duration::from_secs(5) }
    }
}

/// Timers of live transactions. The waits of completed ones (D, I, J, K, L) are the
/// expiry queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Timer {
    /// Timer A: INVITE client retransmit, T1 doubling (§17.1.1.2).
    A(ClientTxn),
    /// Timer B: INVITE client timeout, 64*T1 (§17.1.1.2).
    B(ClientTxn),
    /// Timer E: non-INVITE client retransmit, T1 doubling to T2 (§17.1.2.2).
    E(ClientTxn),
    /// Timer F: non-INVITE client timeout, 64*T1 (§17.1.2.2).
    F(ClientTxn),
    /// Timer G: INVITE server final-response retransmit, T1 doubling to T2 (§17.2.1).
    G(ServerTxn),
    /// Timer H: INVITE server wait for ACK, 64*T1 (§17.2.1).
    H(ServerTxn),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Trying,
    Proceeding,
    /// A non-2xx final answer to an INVITE was sent; waiting for the ACK.
    Completed,
}

/// A transaction key: a 128-bit digest of the parts that identify it.
type Key = (u64, u64);

/// Hashing for the layer's tables, whose keys are digests or ids already: one
/// multiply (Fibonacci hashing spreads sequential ids over the high bits the table
/// probes with) instead of SipHash over them again.
#[derive(Clone, Copy, Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(29) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type IdMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;

/// The digest of `parts` (two SipHash-1-3 runs with different prefixes; a collision
/// between honest keys is as likely as 2^-128 per pair, and crafting one costs the
/// work of a 128-bit second preimage). 0xff never occurs in UTF-8, so it separates.
pub(crate) fn key_of(parts: &[&[u8]]) -> Key {
    digest(|h| {
        for p in parts {
            h.write(p);
            h.write_u8(0xff);
        }
    })
}

/// The two SipHash runs of `key_of` over what `feed` writes.
fn digest(feed: impl Fn(&mut std::collections::hash_map::DefaultHasher)) -> Key {
    let (mut a, mut b) = (std::collections::hash_map::DefaultHasher::new(), std::collections::hash_map::DefaultHasher::new());
    b.write_u8(0x5a);
    feed(&mut a);
    feed(&mut b);
    (a.finish(), b.finish())
}

struct Server {
    key: Key,
    invite: bool,
    state: State,
    origin: Origin,
    last: Option<Vec<u8>>,
    interval: Duration,
    /// The request's To had a tag: an answer can be rebuilt from a retransmission.
    in_dialog: bool,
    /// Completed INVITE: the key its ACK has by dialog identifiers and CSeq.
    ack_key: Option<Key>,
}

/// What is left of a server transaction once its final answer is out (a few bytes,
/// or the answer itself when it cannot be rebuilt from a retransmitted request).
enum Done {
    /// An INVITE answered 2xx (RFC 6026 Accepted, Timer L): retransmitted INVITEs are
    /// absorbed (the TU retransmits the 2xx) and ACKs go to the TU.
    Accepted,
    /// An INVITE's non-2xx was ACKed (Timer I): further ACKs are absorbed. Holds the
    /// ACK's dialog key, to forget it with the record.
    Confirmed(Key),
    /// A non-INVITE request inside a dialog answered with nothing but the headers
    /// copied from the request (a 200 to a BYE): a retransmission is answered with
    /// the same status rebuilt from it (Timer J).
    Rebuild(u16),
    /// Any other non-INVITE final answer (Timer J): sent again as it was.
    Bytes(Box<[u8]>),
}

struct Client {
    key: Key,
    invite: bool,
    state: State,
    to: Origin,
    request: Vec<u8>,
    /// The INVITE, to build the ACK for a non-2xx answer.
    invite_req: Option<Request>,
    interval: Duration,
}

/// What a received request is.
#[derive(Debug)]
pub enum Incoming {
    /// A new request for the TU, in server transaction `ServerTxn`.
    New(ServerTxn, Request),
    /// An ACK for a 2xx (no transaction): for the TU's dialog.
    Ack(Request),
    /// A CANCEL in its own transaction, and the INVITE transaction it matches.
    Cancel { cancel: ServerTxn, request: Request, invite: Option<ServerTxn> },
    /// A retransmission, already handled.
    Absorbed,
    /// No room for another transaction: answer 503 statelessly.
    Overloaded(Request),
}

/// What the TU learns from client transactions.
#[derive(Debug)]
pub enum ClientEvent {
    Response(ClientTxn, Response),
    /// Timer B or F fired: no final answer (treat as 408).
    Timeout(ClientTxn),
}

/// Why a request could not start a client transaction.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The hard bound (twice `limit`) of live transactions is reached.
    Capacity,
    /// The request has no Via branch to key the transaction on.
    NoBranch,
}

/// Counters for /status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TxnStats {
    /// ACKs for a non-2xx answer that came with a new branch, matched by dialog
    /// identifiers and CSeq and absorbed.
    pub acks_matched_by_dialog: u64,
    /// Completed INVITE transactions whose ACK never came (Timer H).
    pub ack_timeouts: u64,
    /// Retransmitted requests absorbed (answered again or ignored).
    pub retransmissions_absorbed: u64,
    /// Requests refused because `limit` live transactions were alive.
    pub refused_overload: u64,
    /// Completed records dropped before their time to make room.
    pub completed_evicted: u64,
}

/// Live and completed transaction counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TxnCounts {
    pub live: usize,
    pub completed: usize,
}

#[derive(Default)]
pub struct TxnLayer {
    timers_cfg: SipTimers,
    servers: IdMap<ServerTxn, Server>,
    server_keys: IdMap<Key, ServerTxn>,
    clients: IdMap<ClientTxn, Client>,
    client_keys: IdMap<Key, ClientTxn>,
    timers: Timers<Timer>,
    next_server: u64,
    /// Completed server transactions.
    done: IdMap<Key, Done>,
    /// ACK dialog keys of INVITEs answered non-2xx -> their server key.
    ack_keys: IdMap<Key, Key>,
    /// Completed INVITE client transactions (non-2xx, Timer D): the ACK to send again
    /// when the answer is retransmitted, and where.
    done_clients: IdMap<Key, (Box<[u8]>, Origin)>,
    /// Expiry queues of the records above: 64*T1 (J, L), T4 (I), 32 s (D).
    long_q: VecDeque<(Time, Key)>,
    short_q: VecDeque<(Time, Key)>,
    client_q: VecDeque<(Time, Key)>,
    /// Requests without a branch to key a transaction on (RFC 2543 peers): where to
    /// answer them, until their final response. Bounded; the oldest go first.
    unkeyed: std::collections::BTreeMap<ServerTxn, Origin>,
    limit: usize,
    max_done: usize,
    out: VecDeque<(Vec<u8>, Origin)>,
    events: VecDeque<ClientEvent>,
    pub stats: TxnStats,
    /// `tend_map`'s notes on the seven tables above, in `shrink`'s order.
    rooms: [crate::core::Room; 7],
}

fn reliable(o: &Origin) -> bool {
    o.transport == Transport::Tcp
}

/// The key an ACK for a non-2xx answer has by dialog identifiers and CSeq number
/// (from the answer or from the ACK: both carry them).
fn ack_key(call_id: Option<&str>, from_tag: Option<&str>, to_tag: Option<&str>, cseq: Option<u32>) -> Option<Key> {
    let cseq = cseq?.to_string();
    Some(key_of(&[b"ack", call_id?.as_bytes(), from_tag.unwrap_or("").as_bytes(), to_tag.unwrap_or("").as_bytes(), cseq.as_bytes()]))
}

fn ack_key_of_headers(h: &impl SipHeaders) -> Option<Key> {
    ack_key(h.call_id().ok(), h.tag_of_from(), h.tag_of_to(), h.cseq().ok().map(|c| c.seq))
}

/// Whether `resp` holds only what `Response::to_request` copies from a request that
/// already has a To tag: then it can be rebuilt from a retransmission of it.
fn rebuildable(resp: &Response) -> bool {
    resp.body.is_empty()
        && resp.reason == super::print::reason_phrase(resp.status)
        && resp.headers.0.iter().all(|h| matches!(h.name, HeaderName::Via | HeaderName::From | HeaderName::To | HeaderName::CallId | HeaderName::CSeq | HeaderName::ContentLength))
}

impl TxnLayer {
    pub fn new(timers: SipTimers, limit: usize) -> TxnLayer {
        TxnLayer { timers_cfg: timers, limit, max_done: crate::limits::SIP_MAX_COMPLETED, ..Default::default() }
    }

    /// A layer keeping at most `max_done` completed records (tests of eviction).
    #[cfg(test)]
    fn with_max_done(timers: SipTimers, limit: usize, max_done: usize) -> TxnLayer {
        TxnLayer { timers_cfg: timers, limit, max_done, ..Default::default() }
    }

    pub fn set_timers(&mut self, timers: SipTimers) {
        self.timers_cfg = timers;
    }

    /// A new limit of live transactions (the configuration's `max_transactions`).
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Live transactions (server + client): the ones `limit` bounds.
    pub fn len(&self) -> usize {
        self.servers.len() + self.clients.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.completed() == 0
    }

    /// Completed records kept to absorb retransmissions.
    pub fn completed(&self) -> usize {
        self.done.len() + self.done_clients.len()
    }

    pub fn counts(&self) -> TxnCounts {
        TxnCounts { live: self.len(), completed: self.completed() }
    }

    pub fn next_timeout(&self) -> Option<Time> {
        [self.timers.next(), self.long_q.front().map(|e| e.0), self.short_q.front().map(|e| e.0), self.client_q.front().map(|e| e.0)].into_iter().flatten().min()
    }

    /// Bytes to send, and where.
    pub fn poll_transmit(&mut self) -> Option<(Vec<u8>, Origin)> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Gives back the memory of tables that have emptied out after load (a hash
    /// table keeps its largest size otherwise). Cheap when there is nothing to give.
    pub fn shrink(&mut self) {
        use crate::core::{tend_map, tend_queue};
        let r = &mut self.rooms;
        tend_map(&mut self.servers, &mut r[0]);
        tend_map(&mut self.server_keys, &mut r[1]);
        tend_map(&mut self.clients, &mut r[2]);
        tend_map(&mut self.client_keys, &mut r[3]);
        tend_map(&mut self.done, &mut r[4]);
        tend_map(&mut self.ack_keys, &mut r[5]);
        tend_map(&mut self.done_clients, &mut r[6]);
        tend_queue(&mut self.long_q);
        tend_queue(&mut self.short_q);
        tend_queue(&mut self.client_q);
        tend_queue(&mut self.out);
        tend_queue(&mut self.events);
        self.timers.shrink();
    }

    /// The server transaction key of a request (§17.2.3): branch, sent-by, and method
    /// class (an ACK matches its INVITE; a CANCEL has its own).
    fn server_key(req: &Request) -> Option<Key> {
        let class: &[u8] = match req.method {
            Method::Invite | Method::Ack => b"I",
            Method::Cancel => b"C",
            _ => b"N",
        };
        Self::via_key(req, class)
    }

    /// The key of the INVITE transaction a CANCEL (keyed `cancel`) is for.
    fn invite_key_of_cancel(req: &Request) -> Option<Key> {
        Self::via_key(req, b"I")
    }

    /// `key_of(branch, sent-by, class)` of the top Via, the sent-by hashed as printed.
    fn via_key(req: &Request, class: &[u8]) -> Option<Key> {
        let top = req.headers.first_of_list(&HeaderName::Via).ok()??;
        let (branch, sent_by) = super::headers::Via::branch_and_sent_by(top)?;
        let branch = branch?;
        let (host, port) = super::uri::hostport_parts(&sent_by)?;
        Some(digest(|h| {
            h.write(branch.as_bytes());
            h.write_u8(0xff);
            h.write(host.as_bytes());
            h.write_u8(b':');
            h.write(super::text::AddrText::port(port.unwrap_or(5060)).as_str().as_bytes());
            h.write_u8(0xff);
            h.write(class);
            h.write_u8(0xff);
        }))
    }

    fn push_done(&mut self, now: Time, key: Key, rec: Done, short: bool) {
        if self.done.len() >= self.max_done {
            self.evict_one();
        }
        let until = now + if short { self.timers_cfg.t4 } else { self.timers_cfg.t1 * 64 };
        if let Some(Done::Confirmed(old)) = self.done.insert(key, rec) {
            self.ack_keys.remove(&old);
        }
        if short { self.short_q.push_back((until, key)) } else { self.long_q.push_back((until, key)) }
    }

    /// Drops the oldest completed record to make room.
    fn evict_one(&mut self) {
        let short_first = match (self.short_q.front(), self.long_q.front()) {
            (Some(s), Some(l)) => s.0 <= l.0,
            (Some(_), None) => true,
            _ => false,
        };
        let e = if short_first { self.short_q.pop_front() } else { self.long_q.pop_front() };
        if let Some((_, key)) = e {
            self.forget_done(key);
            self.stats.completed_evicted += 1;
        }
    }

    fn forget_done(&mut self, key: Key) {
        if let Some(Done::Confirmed(ack)) = self.done.remove(&key) {
            self.ack_keys.remove(&ack);
        }
    }

    /// A completed INVITE server transaction got its ACK (§17.2.1): Confirmed, a
    /// record for T4 over UDP.
    fn confirm(&mut self, now: Time, id: ServerTxn) {
        self.timers.cancel(&Timer::G(id));
        self.timers.cancel(&Timer::H(id));
        let Some(s) = self.servers.remove(&id) else { return };
        self.server_keys.remove(&s.key);
        match s.ack_key {
            Some(ack) if !reliable(&s.origin) => self.push_done(now, s.key, Done::Confirmed(ack), true),
            Some(ack) => {
                self.ack_keys.remove(&ack);
            }
            None => {}
        }
    }

    /// An ACK arrived: for a completed INVITE of ours (absorbed) or for the TU.
    fn on_ack(&mut self, now: Time, key: Option<Key>, req: Request) -> Incoming {
        if let Some(k) = key {
            if let Some(&id) = self.server_keys.get(&k) {
                if self.servers.get(&id).is_some_and(|s| s.state == State::Completed) {
                    self.confirm(now, id);
                    return Incoming::Absorbed;
                }
                // An ACK while the INVITE has no final answer: not ours to take.
                return Incoming::Ack(req);
            }
            match self.done.get(&k) {
                Some(Done::Confirmed(_)) => {
                    self.stats.retransmissions_absorbed += 1;
                    return Incoming::Absorbed;
                }
                Some(_) => return Incoming::Ack(req), // Accepted: the 2xx ACK is the TU's
                None => {}
            }
        }
        // A new branch (or none): the dialog identifiers and CSeq of a non-2xx answer.
        if let Some(sk) = ack_key_of_headers(&req).and_then(|a| self.ack_keys.get(&a).copied()) {
            if let Some(&id) = self.server_keys.get(&sk) {
                if self.servers.get(&id).is_some_and(|s| s.state == State::Completed) {
                    self.stats.acks_matched_by_dialog += 1;
                    self.confirm(now, id);
                    return Incoming::Absorbed;
                }
            } else if matches!(self.done.get(&sk), Some(Done::Confirmed(_))) {
                self.stats.acks_matched_by_dialog += 1;
                return Incoming::Absorbed;
            }
        }
        Incoming::Ack(req)
    }

    /// A request arrived.
    pub fn on_request(&mut self, now: Time, req: Request, origin: Origin) -> Incoming {
        let key = Self::server_key(&req);
        if req.method == Method::Ack {
            return self.on_ack(now, key, req);
        }
        if let Some(k) = key {
            if let Some(&id) = self.server_keys.get(&k) {
                if let Some(s) = self.servers.get(&id) {
                    if let Some(last) = &s.last {
                        self.out.push_back((last.clone(), s.origin));
                    }
                }
                self.stats.retransmissions_absorbed += 1;
                return Incoming::Absorbed;
            }
            if let Some(d) = self.done.get(&k) {
                match d {
                    Done::Accepted | Done::Confirmed(_) => {}
                    Done::Rebuild(status) => self.out.push_back((Response::to_request(&req, *status, None).to_bytes(), origin)),
                    Done::Bytes(b) => self.out.push_back((b.to_vec(), origin)),
                }
                self.stats.retransmissions_absorbed += 1;
                return Incoming::Absorbed;
            }
        }
        let in_dialog = req.tag_of_to().is_some();
        let bound = if in_dialog || req.method == Method::Cancel { self.limit.saturating_mul(2) } else { self.limit };
        if self.len() >= bound {
            self.stats.refused_overload += 1;
            return Incoming::Overloaded(req);
        }
        self.next_server += 1;
        let id = ServerTxn(self.next_server);
        let invite = req.method == Method::Invite;
        match key {
            Some(k) => {
                self.server_keys.insert(k, id);
                let state = if invite { State::Proceeding } else { State::Trying };
                self.servers.insert(id, Server { key: k, invite, state, origin, last: None, interval: self.timers_cfg.t1, in_dialog, ack_key: None });
            }
            None => {
                if self.unkeyed.len() >= crate::limits::SIP_MAX_UNKEYED {
                    self.unkeyed.pop_first();
                }
                self.unkeyed.insert(id, origin);
            }
        }
        if req.method == Method::Cancel {
            let invite = Self::invite_key_of_cancel(&req).and_then(|k| self.server_keys.get(&k).copied());
            let invite = invite.filter(|i| self.servers.get(i).is_some_and(|s| s.state == State::Proceeding));
            return Incoming::Cancel { cancel: id, request: req, invite };
        }
        Incoming::New(id, req)
    }

    /// The TU answers a server transaction. An answer for a transaction that has
    /// ended is dropped (it has nowhere to go).
    pub fn respond(&mut self, now: Time, id: ServerTxn, resp: &Response) {
        let bytes = resp.to_bytes();
        let Some(s) = self.servers.get_mut(&id) else {
            // A request without a branch: answered statelessly, to where it came from.
            if let Some(o) = self.unkeyed.get(&id).copied() {
                if resp.status >= 200 {
                    self.unkeyed.remove(&id);
                }
                self.out.push_back((bytes, o));
            } else {
                log::debug!("sip: answer {} for an ended transaction dropped", resp.status);
            }
            return;
        };
        if s.state == State::Completed {
            return; // a final answer was already given
        }
        let t1 = self.timers_cfg.t1;
        let udp = !reliable(&s.origin);
        if resp.status < 200 {
            s.state = State::Proceeding;
            self.out.push_back((bytes.clone(), s.origin));
            s.last = Some(bytes);
            return;
        }
        self.out.push_back((bytes, s.origin));
        if s.invite && resp.status >= 300 {
            // Completed: retransmit until the ACK (Timer G over UDP) or Timer H.
            let (ack, key) = (ack_key_of_headers(resp), s.key);
            s.state = State::Completed;
            s.ack_key = ack;
            s.last = self.out.back().map(|(b, _)| b.clone());
            if let Some(a) = ack {
                self.ack_keys.insert(a, key);
            }
            if udp {
                self.timers.arm(Timer::G(id), now + t1);
            }
            self.timers.arm(Timer::H(id), now + t1 * 64);
            return;
        }
        let (key, invite, in_dialog) = (s.key, s.invite, s.in_dialog);
        self.drop_server(id);
        if invite {
            // RFC 6026: Accepted until Timer L; the TU retransmits the 2xx (§13.3.1.4).
            self.push_done(now, key, Done::Accepted, false);
        } else if udp {
            let rec = if in_dialog && rebuildable(resp) {
                Done::Rebuild(resp.status)
            } else {
                Done::Bytes(self.out.back().map(|(b, _)| b.clone().into_boxed_slice()).unwrap_or_default())
            };
            self.push_done(now, key, rec, false);
        }
    }

    fn drop_server(&mut self, id: ServerTxn) {
        if let Some(s) = self.servers.remove(&id) {
            self.server_keys.remove(&s.key);
            if let Some(a) = s.ack_key {
                self.ack_keys.remove(&a);
            }
        }
        self.timers.cancel(&Timer::G(id));
        self.timers.cancel(&Timer::H(id));
    }

    /// The TU sends a request (not ACK) in a new client transaction `id`.
    pub fn send(&mut self, now: Time, id: ClientTxn, req: Request, to: Origin) -> Result<(), SendError> {
        if self.len() >= self.limit.saturating_mul(2) {
            return Err(SendError::Capacity);
        }
        let Some(key) = req.top_branch().map(|b| key_of(&[b.as_bytes(), req.method.as_str().as_bytes()])) else {
            return Err(SendError::NoBranch);
        };
        let invite = req.method == Method::Invite;
        let bytes = req.to_bytes();
        self.out.push_back((bytes.clone(), to));
        let t1 = self.timers_cfg.t1;
        let udp = !reliable(&to);
        self.client_keys.insert(key, id);
        if invite {
            if udp {
                self.timers.arm(Timer::A(id), now + t1);
            }
            self.timers.arm(Timer::B(id), now + t1 * 64);
        } else {
            if udp {
                self.timers.arm(Timer::E(id), now + t1);
            }
            self.timers.arm(Timer::F(id), now + t1 * 64);
        }
        let invite_req = invite.then_some(req);
        self.clients.insert(id, Client { key, invite, state: State::Trying, to, request: bytes, invite_req, interval: t1 });
        Ok(())
    }

    /// A response arrived. `None`: it was for a transaction (or absorbed); `Some`: it
    /// matched none (a stray 2xx to an INVITE is the TU's to ACK again).
    pub fn on_response(&mut self, _now: Time, resp: Response) -> Option<Response> {
        let method = resp.cseq().ok().map(|c| c.method);
        let key = match (resp.top_branch(), method) {
            (Some(branch), Some(method)) => key_of(&[branch.as_bytes(), method.as_str().as_bytes()]),
            _ => return Some(resp),
        };
        let Some(&id) = self.client_keys.get(&key) else {
            if resp.status >= 300 {
                if let Some((ack, to)) = self.done_clients.get(&key) {
                    // A retransmitted non-2xx: ACK it again (§17.1.1.2, Completed).
                    self.out.push_back((ack.to_vec(), *to));
                    self.stats.retransmissions_absorbed += 1;
                    return None;
                }
            }
            return Some(resp);
        };
        let Some(c) = self.clients.get_mut(&id) else { return Some(resp) };
        if resp.status < 200 {
            if c.state == State::Trying {
                c.state = State::Proceeding;
                if c.invite {
                    self.timers.cancel(&Timer::A(id));
                }
            }
            self.events.push_back(ClientEvent::Response(id, resp));
            return None;
        }
        if c.invite && resp.status >= 300 {
            // Non-2xx: the transaction ACKs it (§17.1.1.3) and keeps the ACK for the
            // answer's retransmissions (Timer D, 32 s over UDP).
            let ack = c.invite_req.as_ref().map(|inv| ack_for(inv, &resp).to_bytes());
            let (to, udp) = (c.to, !reliable(&c.to));
            if let Some(a) = ack {
                self.out.push_back((a.clone(), to));
                if udp {
                    if self.done_clients.len() >= self.max_done {
                        if let Some((_, k)) = self.client_q.pop_front() {
                            self.done_clients.remove(&k);
                            self.stats.completed_evicted += 1;
                        }
                    }
                    self.done_clients.insert(key, (a.into_boxed_slice(), to));
                    self.client_q.push_back((_now + Duration::from_secs(32), key));
                }
            }
        }
        // A final answer ends the live transaction. Retransmissions of a 2xx to an
        // INVITE are the TU's (stray); of a non-INVITE answer they match nothing and
        // are dropped, which is what Timer K's absorption amounts to.
        self.drop_client(id);
        self.events.push_back(ClientEvent::Response(id, resp));
        None
    }

    fn drop_client(&mut self, id: ClientTxn) {
        if let Some(c) = self.clients.remove(&id) {
            self.client_keys.remove(&c.key);
        }
        for t in [Timer::A(id), Timer::B(id), Timer::E(id), Timer::F(id)] {
            self.timers.cancel(&t);
        }
    }

    /// Fires due timers and forgets expired records.
    pub fn on_timeout(&mut self, now: Time) {
        let t2 = self.timers_cfg.t2;
        while let Some(t) = self.timers.pop_expired(now) {
            match t {
                Timer::A(id) => {
                    if let Some(c) = self.clients.get_mut(&id) {
                        self.out.push_back((c.request.clone(), c.to));
                        c.interval *= 2;
                        self.timers.arm(Timer::A(id), now + c.interval);
                    }
                }
                Timer::E(id) => {
                    if let Some(c) = self.clients.get_mut(&id) {
                        self.out.push_back((c.request.clone(), c.to));
                        c.interval = if c.state == State::Proceeding { t2 } else { (c.interval * 2).min(t2) };
                        self.timers.arm(Timer::E(id), now + c.interval);
                    }
                }
                Timer::B(id) | Timer::F(id) => {
                    if self.clients.get(&id).is_some_and(|c| matches!(c.state, State::Trying | State::Proceeding)) {
                        self.events.push_back(ClientEvent::Timeout(id));
                    }
                    self.drop_client(id);
                }
                Timer::G(id) => {
                    if let Some(s) = self.servers.get_mut(&id) {
                        if let Some(last) = &s.last {
                            self.out.push_back((last.clone(), s.origin));
                        }
                        s.interval = (s.interval * 2).min(t2);
                        self.timers.arm(Timer::G(id), now + s.interval);
                    }
                }
                Timer::H(id) => {
                    if self.servers.get(&id).is_some_and(|s| s.state == State::Completed) {
                        self.stats.ack_timeouts += 1;
                    }
                    self.drop_server(id);
                }
            }
        }
        while let Some(&(until, key)) = self.long_q.front().filter(|e| e.0 <= now) {
            let _ = until;
            self.long_q.pop_front();
            self.forget_done(key);
        }
        while let Some(&(_, key)) = self.short_q.front().filter(|e| e.0 <= now) {
            self.short_q.pop_front();
            self.forget_done(key);
        }
        while let Some(&(_, key)) = self.client_q.front().filter(|e| e.0 <= now) {
            self.client_q.pop_front();
            self.done_clients.remove(&key);
        }
    }
}

/// ACK for a non-2xx answer to `inv` (§17.1.1.3): same Request-URI, Call-ID, From,
/// CSeq number and top Via; To from the response.
fn ack_for(inv: &Request, resp: &Response) -> Request {
    let mut headers = super::Headers::default();
    if let Some(v) = inv.headers.get(&HeaderName::Via) {
        let top = super::text::split_commas(v).ok().and_then(|p| p.first().map(|s| s.to_string())).unwrap_or_else(|| v.to_string());
        headers.push(HeaderName::Via, top);
    }
    for name in [HeaderName::MaxForwards, HeaderName::From] {
        if let Some(v) = inv.headers.get(&name) {
            headers.push(name, v);
        }
    }
    if let Some(v) = resp.headers.get(&HeaderName::To) {
        headers.push(HeaderName::To, v);
    }
    if let Some(v) = inv.headers.get(&HeaderName::CallId) {
        headers.push(HeaderName::CallId, v);
    }
    let n = inv.cseq().map(|c| c.seq).unwrap_or(1);
    headers.push(HeaderName::CSeq, format!("{n} ACK"));
    for v in inv.headers.get_all(&HeaderName::Route) {
        headers.push(HeaderName::Route, v);
    }
    headers.push(HeaderName::ContentLength, "0");
    Request { method: Method::Ack, uri: inv.uri.clone(), headers, body: Vec::new() }
}

#[cfg(test)]
mod tests {
    //! The transaction layer on a virtual clock: retransmission schedules, timeouts,
    //! absorption of retransmitted requests, ACK and CANCEL matching, TCP without
    //! retransmissions.
    use super::*;
    use crate::core::sip::parse_message;
    use crate::core::sip::Message;

    fn origin(tcp: bool) -> Origin {
        Origin {
            source: "127.0.0.1:5070".parse().unwrap(),
            transport: if tcp { Transport::Tcp } else { Transport::Udp },
            conn: None,
            local: "127.0.0.1:5060".parse().unwrap(),
        }
    }

    fn req(method: &str, branch: &str) -> Request {
        let text = format!(
            "{method} sip:1002@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\nFrom: <sip:1001@x>;tag=a\r\nTo: <sip:1002@x>\r\nCall-ID: c1\r\nCSeq: 1 {}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            if method == "ACK" || method == "CANCEL" { "INVITE" } else { method }
        );
        let text = if method == "CANCEL" { text.replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL") } else if method == "ACK" { text.replace("CSeq: 1 INVITE", "CSeq: 1 ACK") } else { text };
        match parse_message(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            _ => unreachable!(),
        }
    }

    fn resp(r: &Request, code: u16) -> Response {
        Response::to_request(r, code, Some("t"))
    }

    fn ms(n: u64) -> Time {
        Time::from_millis(n)
    }

    fn sends(l: &mut TxnLayer) -> usize {
        std::iter::from_fn(|| l.poll_transmit()).count()
    }

    /// Steps the clock to each deadline up to `until`, returning the send times.
    fn run(l: &mut TxnLayer, until: u64) -> Vec<u64> {
        let mut at = Vec::new();
        while let Some(t) = l.next_timeout().filter(|t| t.as_millis() <= until) {
            l.on_timeout(t);
            for _ in 0..sends(l) {
                at.push(t.as_millis());
            }
        }
        at
    }

    #[test]
    fn invite_client_timer_a_doubles_until_timer_b() {
        let mut l = TxnLayer::new(SipTimers::default(), 10);
        l.send(ms(0), ClientTxn(1), req("INVITE", "z9hG4bK1"), origin(false)).unwrap();
        assert_eq!(sends(&mut l), 1);
        // Timer A: 500, 1000, 2000, 4000, 8000, 16000 ms after the first send; B at 32 s.
        assert_eq!(run(&mut l, 32_000), vec![500, 1500, 3500, 7500, 15_500, 31_500]);
        assert!(matches!(l.poll_event(), Some(ClientEvent::Timeout(ClientTxn(1)))));
        assert!(l.is_empty());
    }

    #[test]
    fn non_invite_client_timer_e_caps_at_t2() {
        let mut l = TxnLayer::new(SipTimers::default(), 10);
        l.send(ms(0), ClientTxn(2), req("BYE", "z9hG4bK2"), origin(false)).unwrap();
        sends(&mut l);
        let at = run(&mut l, 32_000);
        assert_eq!(&at[..6], &[500, 1500, 3500, 7500, 11_500, 15_500], "T1 doubling, then every T2 (4 s)");
        assert!(matches!(l.poll_event(), Some(ClientEvent::Timeout(ClientTxn(2)))));
    }

    #[test]
    fn over_tcp_nothing_is_retransmitted() {
        let mut l = TxnLayer::new(SipTimers::default(), 10);
        l.send(ms(0), ClientTxn(3), req("INVITE", "z9hG4bK3"), origin(true)).unwrap();
        sends(&mut l);
        assert_eq!(run(&mut l, 40_000), Vec::<u64>::new());
        assert!(matches!(l.poll_event(), Some(ClientEvent::Timeout(ClientTxn(3)))));
    }

    #[test]
    fn non_2xx_to_invite_is_acked_by_the_transaction_and_absorbed_when_repeated() {
        let mut l = TxnLayer::new(SipTimers::default(), 10);
        let inv = req("INVITE", "z9hG4bK4");
        l.send(ms(0), ClientTxn(4), inv.clone(), origin(false)).unwrap();
        sends(&mut l);
        assert!(l.on_response(ms(10), resp(&inv, 486)).is_none());
        let ack = l.poll_transmit().unwrap().0;
        assert!(ack.starts_with(b"ACK sip:1002@127.0.0.1 SIP/2.0"), "{}", String::from_utf8_lossy(&ack));
        assert!(String::from_utf8_lossy(&ack).contains("branch=z9hG4bK4"));
        assert!(matches!(l.poll_event(), Some(ClientEvent::Response(ClientTxn(4), r)) if r.status == 486));
        // The repeated 486 is ACKed again, not passed up.
        assert!(l.on_response(ms(600), resp(&inv, 486)).is_none());
        assert_eq!(sends(&mut l), 1);
        assert!(l.poll_event().is_none());
    }

    #[test]
    fn server_absorbs_retransmissions_and_matches_ack_and_cancel() {
        let mut l = TxnLayer::new(SipTimers::default(), 10);
        let inv = req("INVITE", "z9hG4bK5");
        let Incoming::New(stx, _) = l.on_request(ms(0), inv.clone(), origin(false)) else { panic!() };
        l.respond(ms(1), stx, &resp(&inv, 180));
        assert_eq!(sends(&mut l), 1);
        // A retransmitted INVITE gets the last provisional again.
        assert!(matches!(l.on_request(ms(500), inv.clone(), origin(false)), Incoming::Absorbed));
        assert_eq!(sends(&mut l), 1);
        // CANCEL matches the INVITE transaction.
        match l.on_request(ms(600), req("CANCEL", "z9hG4bK5"), origin(false)) {
            Incoming::Cancel { invite, .. } => assert_eq!(invite, Some(stx)),
            other => panic!("{other:?}"),
        }
        // Final 487: retransmitted on Timer G until the ACK, which is absorbed.
        l.respond(ms(700), stx, &resp(&inv, 487));
        sends(&mut l);
        // Timer G: T1 after the 487, then doubling (1000 ms).
        assert_eq!(run(&mut l, 2_250), vec![1_200, 2_200]);
        assert!(matches!(l.on_request(ms(2_300), req("ACK", "z9hG4bK5"), origin(false)), Incoming::Absorbed));
        assert_eq!(run(&mut l, 60_000), Vec::<u64>::new(), "no more retransmissions after the ACK");
    }

    #[test]
    fn after_a_2xx_a_retransmitted_invite_is_not_a_new_call() {
        let mut l = TxnLayer::new(SipTimers::default(), 10);
        let inv = req("INVITE", "z9hG4bK6");
        let Incoming::New(stx, _) = l.on_request(ms(0), inv.clone(), origin(false)) else { panic!() };
        l.respond(ms(5), stx, &resp(&inv, 200));
        sends(&mut l);
        assert!(matches!(l.on_request(ms(400), inv.clone(), origin(false)), Incoming::Absorbed), "RFC 6026 Accepted");
        assert!(matches!(l.on_request(ms(450), req("ACK", "z9hG4bK6"), origin(false)), Incoming::Ack(_)), "the 2xx ACK goes to the TU");
        l.on_timeout(ms(5 + 32_000));
        assert!(l.is_empty(), "Timer L ends it");
    }

    /// `req` inside a dialog (its To has a tag).
    fn in_dialog(method: &str, branch: &str) -> Request {
        let mut r = req(method, branch);
        r.headers.set(HeaderName::To, "<sip:1002@x>;tag=b2");
        r
    }

    #[test]
    fn past_its_limit_new_dialogs_are_refused_but_requests_inside_one_are_admitted_to_twice_it() {
        let mut l = TxnLayer::new(SipTimers::default(), 2);
        for (i, b) in ["z9hG4bKa", "z9hG4bKb"].iter().enumerate() {
            assert!(matches!(l.on_request(ms(i as u64), req("INVITE", b), origin(false)), Incoming::New(..)));
        }
        assert!(matches!(l.on_request(ms(3), req("INVITE", "z9hG4bKc"), origin(false)), Incoming::Overloaded(_)));
        assert_eq!(l.stats.refused_overload, 1);
        // A BYE and a CANCEL of calls in progress still get their transactions.
        assert!(matches!(l.on_request(ms(4), in_dialog("BYE", "z9hG4bKd"), origin(false)), Incoming::New(..)));
        assert!(matches!(l.on_request(ms(5), req("CANCEL", "z9hG4bKa"), origin(false)), Incoming::Cancel { invite: Some(_), .. }));
        // Twice the limit is the hard bound, for them and for the box's own requests.
        assert!(matches!(l.on_request(ms(6), in_dialog("BYE", "z9hG4bKe"), origin(false)), Incoming::Overloaded(_)));
        assert_eq!(l.send(ms(6), ClientTxn(9), req("BYE", "z9hG4bKf"), origin(false)), Err(SendError::Capacity));
    }

    #[test]
    fn an_ack_with_a_new_branch_for_a_407_is_matched_by_dialog_and_cseq_and_absorbed() {
        let mut l = TxnLayer::new(SipTimers::default(), 10);
        let inv = req("INVITE", "z9hG4bK407");
        let Incoming::New(stx, _) = l.on_request(ms(0), inv.clone(), origin(false)) else { panic!() };
        l.respond(ms(1), stx, &resp(&inv, 407));
        assert_eq!(sends(&mut l), 1);
        // The ACK copies the 407's To (with its tag) but carries a branch of its own.
        let mut ack = req("ACK", "z9hG4bKfresh");
        ack.headers.set(HeaderName::To, "<sip:1002@x>;tag=t");
        assert!(matches!(l.on_request(ms(20), ack.clone(), origin(false)), Incoming::Absorbed));
        assert_eq!(l.stats.acks_matched_by_dialog, 1);
        assert_eq!(run(&mut l, 60_000), Vec::<u64>::new(), "the 407 is not retransmitted");
        assert_eq!(l.stats.ack_timeouts, 0);
        assert!(l.is_empty(), "Confirmed for T4, then nothing is left");
        // An ACK with another CSeq or To tag is not this one's: it goes to the TU.
        let mut other = req("ACK", "z9hG4bKother");
        other.headers.set(HeaderName::To, "<sip:1002@x>;tag=zz");
        let Incoming::New(stx, _) = l.on_request(ms(61_000), req("INVITE", "z9hG4bK408"), origin(false)) else { panic!() };
        l.respond(ms(61_001), stx, &resp(&inv, 407));
        assert!(matches!(l.on_request(ms(61_002), other, origin(false)), Incoming::Ack(_)));
    }

    #[test]
    fn a_completed_bye_keeps_no_bytes_and_answers_its_retransmission_again() {
        let mut l = TxnLayer::new(SipTimers::default(), 10);
        let bye = in_dialog("BYE", "z9hG4bKbye");
        let Incoming::New(stx, _) = l.on_request(ms(0), bye.clone(), origin(false)) else { panic!() };
        l.respond(ms(1), stx, &resp(&bye, 200));
        let (first, _) = l.poll_transmit().unwrap();
        assert_eq!(l.counts(), TxnCounts { live: 0, completed: 1 });
        assert!(matches!(l.done.values().next(), Some(Done::Rebuild(200))), "rebuilt, not stored");
        assert!(matches!(l.on_request(ms(900), bye.clone(), origin(false)), Incoming::Absorbed));
        let (again, to) = l.poll_transmit().expect("answered again");
        assert_eq!(again, first, "the same answer");
        assert_eq!(to.source, origin(false).source);
        l.on_timeout(ms(1 + 32_000));
        assert!(l.is_empty(), "Timer J ends the record");
        // An answer with more than the copied headers is kept as it was sent.
        let opt = req("OPTIONS", "z9hG4bKopt");
        let Incoming::New(stx, _) = l.on_request(ms(40_000), opt.clone(), origin(false)) else { panic!() };
        let mut r = resp(&opt, 200);
        r.headers.add(HeaderName::Allow, "INVITE, ACK");
        l.respond(ms(40_001), stx, &r);
        let (sent, _) = l.poll_transmit().unwrap();
        assert!(matches!(l.on_request(ms(40_500), opt, origin(false)), Incoming::Absorbed));
        assert_eq!(l.poll_transmit().unwrap().0, sent);
    }

    #[test]
    fn completed_records_are_small_and_bounded_oldest_first() {
        assert!(std::mem::size_of::<Done>() <= 24, "a record is a few words: {}", std::mem::size_of::<Done>());
        let mut l = TxnLayer::with_max_done(SipTimers::default(), 10, 2);
        for (i, b) in ["z9hG4bK1a", "z9hG4bK2a", "z9hG4bK3a"].iter().enumerate() {
            let r = in_dialog("BYE", b);
            let Incoming::New(stx, _) = l.on_request(ms(i as u64), r.clone(), origin(false)) else { panic!() };
            l.respond(ms(i as u64), stx, &resp(&r, 200));
        }
        assert_eq!(l.completed(), 2);
        assert_eq!(l.stats.completed_evicted, 1);
        // The oldest is gone: its retransmission is a new request now; the newest is absorbed.
        assert!(matches!(l.on_request(ms(10), in_dialog("BYE", "z9hG4bK3a"), origin(false)), Incoming::Absorbed));
        assert!(matches!(l.on_request(ms(10), in_dialog("BYE", "z9hG4bK1a"), origin(false)), Incoming::New(..)));
    }

    #[test]
    fn a_retransmitted_non_2xx_is_acked_again_after_the_client_transaction_completed() {
        let mut l = TxnLayer::new(SipTimers::default(), 10);
        let inv = req("INVITE", "z9hG4bKc486");
        l.send(ms(0), ClientTxn(7), inv.clone(), origin(false)).unwrap();
        sends(&mut l);
        assert!(l.on_response(ms(10), resp(&inv, 486)).is_none());
        sends(&mut l);
        assert_eq!(l.counts(), TxnCounts { live: 0, completed: 1 });
        assert!(l.on_response(ms(3_000), resp(&inv, 486)).is_none(), "absorbed");
        assert_eq!(sends(&mut l), 1, "ACKed again");
        l.on_timeout(ms(10 + 32_000));
        assert!(l.is_empty(), "Timer D ends it");
        // A 200 to a BYE ends its transaction at once; a retransmission of it matches nothing.
        let bye = in_dialog("BYE", "z9hG4bKcbye");
        l.send(ms(40_000), ClientTxn(8), bye.clone(), origin(false)).unwrap();
        assert!(l.on_response(ms(40_010), resp(&bye, 200)).is_none());
        assert!(l.is_empty());
        assert!(l.on_response(ms(40_500), resp(&bye, 200)).is_some());
    }

    #[test]
    fn branchless_requests_are_answered_where_they_came_from_and_ended_ones_not_at_all() {
        let mut l = TxnLayer::new(SipTimers::default(), 10);
        let mut r = req("OPTIONS", "x");
        r.headers.set(crate::core::sip::HeaderName::Via, "SIP/2.0/UDP 127.0.0.1:5070");
        let Incoming::New(stx, r) = l.on_request(ms(0), r, origin(false)) else { panic!() };
        l.respond(ms(1), stx, &resp(&r, 200));
        let (_, to) = l.poll_transmit().expect("answered");
        assert_eq!(to.source, origin(false).source);
        // That was final: a second answer has nowhere to go and is dropped.
        l.respond(ms(2), stx, &resp(&r, 200));
        assert!(l.poll_transmit().is_none());
        l.respond(ms(3), ServerTxn(999), &resp(&r, 200));
        assert!(l.poll_transmit().is_none(), "no transaction, no destination");
    }
}
