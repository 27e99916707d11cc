//! SIP transactions (RFC 3261 §17): INVITE and non-INVITE, client and server, with
//! timers A-K from T1/T2/T4. Retransmissions over UDP only; over TCP the waiting
//! timers are zero. Matches requests and responses to transactions (§17.1.3,
//! §17.2.3), absorbs retransmitted requests by resending the last response, ACKs
//! non-2xx INVITE answers itself, and hands everything else to the TU. Pure.

use super::registrar::Origin;
use super::{HeaderName, Method, Request, Response, SipHeaders};
use crate::core::call::{ClientTxn, ServerTxn};
use crate::core::timer::Timers;
use crate::core::{Time, Transport};
use std::collections::HashMap;
use std::time::Duration;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Timer {
    /// Timer A: INVITE client retransmit, T1 doubling (§17.1.1.2).
    A(ClientTxn),
    /// Timer B: INVITE client timeout, 64*T1 (§17.1.1.2).
    B(ClientTxn),
    /// Timer D: INVITE client Completed wait, 32 s UDP / 0 TCP (§17.1.1.2).
    D(ClientTxn),
    /// Timer E: non-INVITE client retransmit, T1 doubling to T2 (§17.1.2.2).
    E(ClientTxn),
    /// Timer F: non-INVITE client timeout, 64*T1 (§17.1.2.2).
    F(ClientTxn),
    /// Timer K: non-INVITE client Completed wait, T4 UDP / 0 TCP (§17.1.2.2).
    K(ClientTxn),
    /// Timer G: INVITE server final-response retransmit, T1 doubling to T2 (§17.2.1).
    G(ServerTxn),
    /// Timer H: INVITE server wait for ACK, 64*T1 (§17.2.1).
    H(ServerTxn),
    /// Timer I: INVITE server Confirmed wait, T4 UDP / 0 TCP (§17.2.1).
    I(ServerTxn),
    /// Timer J: non-INVITE server Completed wait, 64*T1 UDP / 0 TCP (§17.2.2).
    J(ServerTxn),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Trying,
    Proceeding,
    Completed,
    Confirmed,
}

struct Server {
    key: (String, String, bool),
    invite: bool,
    state: State,
    origin: Origin,
    last: Option<Vec<u8>>,
    interval: Duration,
}

struct Client {
    key: (String, Method),
    invite: bool,
    state: State,
    to: Origin,
    request: Vec<u8>,
    /// The INVITE, to build the ACK for a non-2xx answer.
    invite_req: Option<Request>,
    ack: Option<Vec<u8>>,
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
    /// `limits::SIP_MAX_TRANSACTIONS` are alive.
    Capacity,
    /// The request has no Via branch to key the transaction on.
    NoBranch,
}

#[derive(Default)]
pub struct TxnLayer {
    timers_cfg: SipTimers,
    servers: HashMap<ServerTxn, Server>,
    server_keys: HashMap<(String, String, bool), ServerTxn>,
    clients: HashMap<ClientTxn, Client>,
    client_keys: HashMap<(String, Method), ClientTxn>,
    timers: Timers<Timer>,
    next_server: u64,
    limit: usize,
    out: Vec<(Vec<u8>, Origin)>,
    events: Vec<ClientEvent>,
}

fn reliable(o: &Origin) -> bool {
    o.transport == Transport::Tcp
}

impl TxnLayer {
    pub fn new(timers: SipTimers, limit: usize) -> TxnLayer {
        TxnLayer { timers_cfg: timers, limit, ..Default::default() }
    }

    pub fn set_timers(&mut self, timers: SipTimers) {
        self.timers_cfg = timers;
    }

    /// Transactions alive (server + client).
    pub fn len(&self) -> usize {
        self.servers.len() + self.clients.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn next_timeout(&self) -> Option<Time> {
        self.timers.next()
    }

    /// Bytes to send, and where.
    pub fn poll_transmit(&mut self) -> Option<(Vec<u8>, Origin)> {
        if self.out.is_empty() {
            None
        } else {
            Some(self.out.remove(0))
        }
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        if self.events.is_empty() {
            None
        } else {
            Some(self.events.remove(0))
        }
    }

    /// The server transaction key of a request (§17.2.3): branch, sent-by, and
    /// INVITE-vs-other (ACK matches its INVITE).
    fn server_key(req: &Request) -> Option<(String, String, bool)> {
        let via = req.top_via().ok()?;
        let branch = via.branch()?.to_string();
        let sent_by = format!("{}:{}", via.host, via.port.unwrap_or(5060));
        let invite = matches!(req.method, Method::Invite | Method::Ack);
        Some((branch, sent_by, invite))
    }

    /// A request arrived.
    pub fn on_request(&mut self, now: Time, req: Request, origin: Origin) -> Incoming {
        let key = Self::server_key(&req);
        if req.method == Method::Ack {
            if let Some(id) = key.as_ref().and_then(|k| self.server_keys.get(k)).copied() {
                if let Some(s) = self.servers.get_mut(&id) {
                    if s.invite && s.state == State::Completed {
                        s.state = State::Confirmed;
                        self.timers.cancel(&Timer::G(id));
                        self.timers.cancel(&Timer::H(id));
                        let wait = if reliable(&s.origin) { Duration::ZERO } else { self.timers_cfg.t4 };
                        self.timers.arm(Timer::I(id), now + wait);
                        return Incoming::Absorbed;
                    }
                    if s.state == State::Confirmed {
                        return Incoming::Absorbed;
                    }
                }
            }
            return Incoming::Ack(req);
        }
        if let Some(k) = &key {
            // CANCEL has its own transaction (its key differs by method class only
            // when it is not an INVITE); match it to the INVITE by branch.
            let lookup = if req.method == Method::Cancel { (k.0.clone(), k.1.clone(), false) } else { k.clone() };
            let cancel_key = (format!("{}|CANCEL", k.0), k.1.clone(), false);
            let existing = if req.method == Method::Cancel { self.server_keys.get(&cancel_key) } else { self.server_keys.get(&lookup) };
            if let Some(&id) = existing {
                if let Some(s) = self.servers.get(&id) {
                    if let Some(last) = &s.last {
                        self.out.push((last.clone(), s.origin));
                    }
                }
                return Incoming::Absorbed;
            }
        }
        if self.len() >= self.limit {
            return Incoming::Overloaded(req);
        }
        self.next_server += 1;
        let id = ServerTxn(self.next_server);
        let invite = req.method == Method::Invite;
        if let Some(k) = key.clone() {
            let k = if req.method == Method::Cancel { (format!("{}|CANCEL", k.0), k.1, false) } else { k };
            self.server_keys.insert(k.clone(), id);
            let state = if invite { State::Proceeding } else { State::Trying };
            self.servers.insert(id, Server { key: k, invite, state, origin, last: None, interval: self.timers_cfg.t1 });
        }
        if req.method == Method::Cancel {
            let invite = key.and_then(|k| self.server_keys.get(&(k.0, k.1, true)).copied());
            let invite = invite.filter(|i| self.servers.get(i).is_some_and(|s| s.state == State::Proceeding));
            return Incoming::Cancel { cancel: id, request: req, invite };
        }
        Incoming::New(id, req)
    }

    /// The TU answers a server transaction.
    pub fn respond(&mut self, now: Time, id: ServerTxn, resp: &Response, fallback: Origin) {
        let bytes = resp.to_bytes();
        let Some(s) = self.servers.get_mut(&id) else {
            // No transaction (a request without a branch): answer statelessly.
            self.out.push((bytes, fallback));
            return;
        };
        if matches!(s.state, State::Completed | State::Confirmed) {
            return; // a final answer was already given
        }
        self.out.push((bytes.clone(), s.origin));
        let t1 = self.timers_cfg.t1;
        let udp = !reliable(&s.origin);
        if resp.status < 200 {
            s.state = State::Proceeding;
            s.last = Some(bytes);
            return;
        }
        if s.invite && resp.status < 300 {
            // 2xx ends the INVITE server transaction; the TU retransmits (§13.3.1.4).
            self.drop_server(id);
            return;
        }
        s.state = State::Completed;
        s.last = Some(bytes);
        if s.invite {
            if udp {
                self.timers.arm(Timer::G(id), now + t1);
            }
            self.timers.arm(Timer::H(id), now + t1 * 64);
        } else {
            let wait = if udp { t1 * 64 } else { Duration::ZERO };
            self.timers.arm(Timer::J(id), now + wait);
        }
    }

    fn drop_server(&mut self, id: ServerTxn) {
        if let Some(s) = self.servers.remove(&id) {
            self.server_keys.remove(&s.key);
        }
        for t in [Timer::G(id), Timer::H(id), Timer::I(id), Timer::J(id)] {
            self.timers.cancel(&t);
        }
    }

    /// The TU sends a request (not ACK) in a new client transaction `id`.
    pub fn send(&mut self, now: Time, id: ClientTxn, req: Request, to: Origin) -> Result<(), SendError> {
        if self.len() >= self.limit {
            return Err(SendError::Capacity);
        }
        let Some(branch) = req.top_via().ok().and_then(|v| v.branch().map(str::to_string)) else { return Err(SendError::NoBranch) };
        let invite = req.method == Method::Invite;
        let bytes = req.to_bytes();
        self.out.push((bytes.clone(), to));
        let t1 = self.timers_cfg.t1;
        let udp = !reliable(&to);
        let key = (branch, req.method.clone());
        self.client_keys.insert(key.clone(), id);
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
        self.clients.insert(id, Client { key, invite, state: State::Trying, to, request: bytes, invite_req, ack: None, interval: t1 });
        Ok(())
    }

    /// A response arrived. `None`: it matched no transaction (a stray 2xx to an
    /// INVITE is the TU's to ACK again).
    pub fn on_response(&mut self, now: Time, resp: Response) -> Option<Response> {
        let branch = resp.top_via().ok().and_then(|v| v.branch().map(str::to_string));
        let method = resp.cseq().ok().map(|c| c.method);
        let (Some(branch), Some(method)) = (branch, method) else { return Some(resp) };
        let Some(&id) = self.client_keys.get(&(branch, method)) else { return Some(resp) };
        let Some(c) = self.clients.get_mut(&id) else { return Some(resp) };
        let udp = !reliable(&c.to);
        if resp.status < 200 {
            if c.state == State::Trying {
                c.state = State::Proceeding;
                if c.invite {
                    self.timers.cancel(&Timer::A(id));
                }
            }
            self.events.push(ClientEvent::Response(id, resp));
            return None;
        }
        if c.invite {
            if resp.status < 300 {
                self.drop_client(id);
                self.events.push(ClientEvent::Response(id, resp));
                return None;
            }
            if c.state == State::Completed {
                if let Some(ack) = &c.ack {
                    self.out.push((ack.clone(), c.to));
                }
                return None;
            }
            // Non-2xx: the transaction ACKs it (§17.1.1.3).
            let ack = c.invite_req.as_ref().map(|inv| ack_for(inv, &resp).to_bytes());
            if let Some(a) = &ack {
                self.out.push((a.clone(), c.to));
            }
            c.ack = ack;
            c.state = State::Completed;
            self.timers.cancel(&Timer::A(id));
            self.timers.cancel(&Timer::B(id));
            let wait = if udp { Duration::from_secs(32) } else { Duration::ZERO };
            self.timers.arm(Timer::D(id), now + wait);
            self.events.push(ClientEvent::Response(id, resp));
            return None;
        }
        if c.state == State::Completed {
            return None;
        }
        c.state = State::Completed;
        self.timers.cancel(&Timer::E(id));
        self.timers.cancel(&Timer::F(id));
        let wait = if udp { self.timers_cfg.t4 } else { Duration::ZERO };
        self.timers.arm(Timer::K(id), now + wait);
        self.events.push(ClientEvent::Response(id, resp));
        None
    }

    fn drop_client(&mut self, id: ClientTxn) {
        if let Some(c) = self.clients.remove(&id) {
            self.client_keys.remove(&c.key);
        }
        for t in [Timer::A(id), Timer::B(id), Timer::D(id), Timer::E(id), Timer::F(id), Timer::K(id)] {
            self.timers.cancel(&t);
        }
    }

    /// Fires due timers.
    pub fn on_timeout(&mut self, now: Time) {
        let SipTimers { t1, t2, .. } = self.timers_cfg;
        while let Some(t) = self.timers.pop_expired(now) {
            match t {
                Timer::A(id) => {
                    if let Some(c) = self.clients.get_mut(&id) {
                        self.out.push((c.request.clone(), c.to));
                        c.interval *= 2;
                        self.timers.arm(Timer::A(id), now + c.interval);
                    }
                }
                Timer::E(id) => {
                    if let Some(c) = self.clients.get_mut(&id) {
                        self.out.push((c.request.clone(), c.to));
                        c.interval = if c.state == State::Proceeding { t2 } else { (c.interval * 2).min(t2) };
                        self.timers.arm(Timer::E(id), now + c.interval);
                    }
                }
                Timer::B(id) | Timer::F(id) => {
                    if self.clients.get(&id).is_some_and(|c| matches!(c.state, State::Trying | State::Proceeding)) {
                        self.events.push(ClientEvent::Timeout(id));
                    }
                    self.drop_client(id);
                }
                Timer::D(id) | Timer::K(id) => self.drop_client(id),
                Timer::G(id) => {
                    if let Some(s) = self.servers.get_mut(&id) {
                        if let Some(last) = &s.last {
                            self.out.push((last.clone(), s.origin));
                        }
                        s.interval = (s.interval * 2).min(t2);
                        self.timers.arm(Timer::G(id), now + s.interval);
                    }
                }
                Timer::H(id) | Timer::I(id) | Timer::J(id) => self.drop_server(id),
            }
        }
        let _ = t1;
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
