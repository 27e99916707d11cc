//! SIP transactions (RFC 3261 §17): INVITE and non-INVITE, client and server, with
//! timers A-K from T1/T2/T4. Retransmissions over UDP only; over TCP the waiting
//! timers are zero. Matches requests and responses to transactions (§17.1.3,
//! §17.2.3), absorbs retransmitted requests by resending the last response, ACKs
//! non-2xx INVITE answers itself, and hands everything else to the TU. Pure.

use super::origin::Origin;
use super::{HeaderName, Method, Request, Response, SipHeaders};
use crate::core::timer::Timers;
use crate::core::{Time, Transport};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
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
    /// Timer L: INVITE server Accepted wait after a 2xx, 64*T1 (RFC 6026 §7.1).
    L(ServerTxn),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    /// RFC 6026 §7.1: a 2xx was sent; retransmitted INVITEs are absorbed (the TU
    /// retransmits the 2xx) and ACKs pass to the TU.
    Accepted,
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
    /// Requests without a branch to key a transaction on (RFC 2543 peers): where to
    /// answer them, until their final response. Bounded; the oldest go first.
    unkeyed: std::collections::BTreeMap<ServerTxn, Origin>,
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
                    // Accepted: an ACK for the 2xx belongs to the TU's dialog.
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
        if key.is_none() {
            if self.unkeyed.len() >= crate::limits::SIP_MAX_UNKEYED {
                self.unkeyed.pop_first();
            }
            self.unkeyed.insert(id, origin);
        }
        if req.method == Method::Cancel {
            let invite = key.and_then(|k| self.server_keys.get(&(k.0, k.1, true)).copied());
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
                self.out.push((bytes, o));
            } else {
                log::debug!("sip: answer {} for an ended transaction dropped", resp.status);
            }
            return;
        };
        if matches!(s.state, State::Completed | State::Confirmed | State::Accepted) {
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
            // RFC 6026: Accepted until Timer L; the TU retransmits the 2xx (§13.3.1.4).
            s.state = State::Accepted;
            s.last = None;
            self.timers.arm(Timer::L(id), now + t1 * 64);
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
        for t in [Timer::G(id), Timer::H(id), Timer::I(id), Timer::J(id), Timer::L(id)] {
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
                Timer::H(id) | Timer::I(id) | Timer::J(id) | Timer::L(id) => self.drop_server(id),
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

    #[test]
    fn past_its_capacity_the_layer_answers_overloaded_and_refuses_to_send() {
        let mut l = TxnLayer::new(SipTimers::default(), 2);
        for (i, b) in ["z9hG4bKa", "z9hG4bKb"].iter().enumerate() {
            assert!(matches!(l.on_request(ms(i as u64), req("OPTIONS", b), origin(false)), Incoming::New(..)));
        }
        assert!(matches!(l.on_request(ms(3), req("OPTIONS", "z9hG4bKc"), origin(false)), Incoming::Overloaded(_)));
        assert_eq!(l.send(ms(3), ClientTxn(9), req("BYE", "z9hG4bKd"), origin(false)), Err(SendError::Capacity));
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
