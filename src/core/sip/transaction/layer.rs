//! `TransactionLayer`: owns every transaction, indexes them for matching, routes
//! incoming requests and responses, fires timers, and queues transmits and TU events.
//! The per-machine transitions live in client.rs and server.rs.

use super::SipTimers;
use super::{client_key, server_key, Kind, Peer, State, TimerKind, Transaction, Transmit, TxError, TxEvent, TxId};
use crate::core::sip::headers::Via;
use crate::core::sip::msg::{Request, Response, SipHeaders};
use crate::core::sip::name::{HeaderName, Method};
use crate::core::sip::uri::Host;
use crate::core::timer::Timers;
use crate::core::Time;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Counters for /status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxStats {
    pub created: u64,
    pub refused_capacity: u64,
    pub retransmissions_sent: u64,
    pub retransmissions_absorbed: u64,
    pub stray_responses: u64,
    pub timeouts: u64,
}

/// All transactions of one engine.
pub struct TransactionLayer {
    pub(super) cfg: SipTimers,
    pub(super) max: usize,
    pub(super) txs: BTreeMap<TxId, Transaction>,
    pub(super) server_index: HashMap<String, TxId>,
    pub(super) client_index: HashMap<String, TxId>,
    pub(super) timers: Timers<(TxId, TimerKind)>,
    pub(super) events: VecDeque<TxEvent>,
    pub(super) transmits: VecDeque<Transmit>,
    pub(super) next_id: u64,
    pub(super) stats: TxStats,
}

const ALL_TIMERS: [TimerKind; 12] = [
    TimerKind::A,
    TimerKind::B,
    TimerKind::D,
    TimerKind::E,
    TimerKind::F,
    TimerKind::G,
    TimerKind::H,
    TimerKind::I,
    TimerKind::J,
    TimerKind::K,
    TimerKind::L,
    TimerKind::M,
];

impl TransactionLayer {
    /// A layer holding at most `max` transactions (use `limits::SIP_MAX_TRANSACTIONS`).
    pub fn new(cfg: SipTimers, max: usize) -> Self {
        TransactionLayer {
            cfg,
            max,
            txs: BTreeMap::new(),
            server_index: HashMap::new(),
            client_index: HashMap::new(),
            timers: Timers::default(),
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            next_id: 1,
            stats: TxStats::default(),
        }
    }

    pub fn timers(&self) -> SipTimers {
        self.cfg
    }
    pub fn stats(&self) -> &TxStats {
        &self.stats
    }
    pub fn len(&self) -> usize {
        self.txs.len()
    }
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }
    pub fn get(&self, tx: TxId) -> Option<&Transaction> {
        self.txs.get(&tx)
    }

    /// Next event for the TU.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }
    /// Next message to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }
    /// When to call `handle_timeout` next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        self.timers.next()
    }

    /// Sends bytes outside any transaction (ACK for 2xx, a stateless 503 or 400).
    pub fn send_stateless(&mut self, peer: Peer, bytes: Vec<u8>) {
        self.transmits.push_back(Transmit { peer, bytes, tx: None });
    }

    /// A request from the transport (parsed, and passed `check_request` or about to
    /// be answered by the TU). Retransmissions are absorbed; a new request creates a
    /// server transaction (not for ACK) and becomes `TxEvent::Request`. The top Via
    /// gets `received` / `rport` filled in (RFC 3261 §18.2.1, RFC 3581 §4).
    /// `Err(Capacity)`: answer 503 with `send_stateless`.
    pub fn handle_request(&mut self, now: Time, peer: Peer, mut request: Request) -> Result<(), TxError> {
        let via = request.top_via().map_err(|_| TxError::Malformed("Via"))?;
        request.cseq().map_err(|_| TxError::Malformed("CSeq"))?;
        let via = stamp_via(&mut request, via, peer.addr);
        let key = server_key(&request, &via);
        if let Some(&tx) = self.server_index.get(&key) {
            self.server_retransmission(now, tx, request, peer);
            return Ok(());
        }
        if request.method == Method::Ack {
            self.events.push_back(TxEvent::Request { tx: None, peer, request, cancels: None });
            return Ok(());
        }
        let cancels = if request.method == Method::Cancel {
            let mut invite = request.clone();
            invite.method = Method::Invite;
            self.server_index.get(&server_key(&invite, &via)).copied()
        } else {
            None
        };
        let dest = Peer { addr: response_addr(&via, peer), ..peer };
        let invite = request.method == Method::Invite;
        let tx = self.create(invite, dest, request.clone(), key, true)?;
        self.server_started(now, tx);
        self.events.push_back(TxEvent::Request { tx: Some(tx), peer, request, cancels });
        Ok(())
    }

    /// A response from the transport: matched on top Via branch and CSeq method
    /// (RFC 3261 §17.1.3); strays are dropped and counted.
    pub fn handle_response(&mut self, now: Time, response: Response) {
        let key = match (response.top_via(), response.cseq()) {
            (Ok(v), Ok(c)) => v.branch().map(|b| client_key(b, c.method.as_str())),
            _ => None,
        };
        match key.and_then(|k| self.client_index.get(&k).copied()) {
            Some(tx) => self.client_response(now, tx, response),
            None => self.stats.stray_responses += 1,
        }
    }

    /// Fires the timers that are due.
    pub fn handle_timeout(&mut self, now: Time) {
        while let Some((tx, timer)) = self.timers.pop_expired(now) {
            let Some(kind) = self.txs.get(&tx).map(|t| t.kind) else { continue };
            match kind {
                Kind::InviteClient | Kind::NonInviteClient => self.client_timer(now, tx, timer),
                Kind::InviteServer | Kind::NonInviteServer => self.server_timer(now, tx, timer),
            }
        }
    }

    /// The transport failed to send for `tx` (connection refused, ICMP, closed
    /// stream): the TU hears `TransportError` and the transaction ends.
    pub fn handle_transport_error(&mut self, _now: Time, tx: TxId) {
        if self.txs.contains_key(&tx) {
            self.events.push_back(TxEvent::TransportError { tx });
            self.terminate(tx);
        }
    }

    /// Creates a transaction, indexes it and counts it; refuses past the bound.
    pub(super) fn create(
        &mut self,
        invite: bool,
        peer: Peer,
        request: Request,
        key: String,
        server: bool,
    ) -> Result<TxId, TxError> {
        if self.txs.len() >= self.max {
            self.stats.refused_capacity += 1;
            return Err(TxError::Capacity);
        }
        let id = TxId(self.next_id);
        self.next_id += 1;
        let kind = match (server, invite) {
            (false, true) => Kind::InviteClient,
            (false, false) => Kind::NonInviteClient,
            (true, true) => Kind::InviteServer,
            (true, false) => Kind::NonInviteServer,
        };
        let state = match kind {
            Kind::InviteClient => State::Calling,
            Kind::InviteServer => State::Proceeding,
            _ => State::Trying,
        };
        let request_bytes = if server { Vec::new() } else { request.to_bytes() };
        let t = Transaction {
            kind,
            state,
            peer,
            request,
            key: key.clone(),
            request_bytes,
            last_response: None,
            ack_bytes: None,
            interval: self.cfg.t1,
            cancel_pending: false,
        };
        if server {
            self.server_index.insert(key, id);
        } else {
            self.client_index.insert(key, id);
        }
        self.txs.insert(id, t);
        self.stats.created += 1;
        Ok(id)
    }

    pub(super) fn arm(&mut self, now: Time, tx: TxId, timer: TimerKind, after: Duration) {
        self.timers.arm((tx, timer), now + after);
    }
    pub(super) fn disarm(&mut self, tx: TxId, timer: TimerKind) {
        self.timers.cancel(&(tx, timer));
    }

    /// Enters a waiting state whose timer is zero on reliable transports: a zero
    /// wait terminates at once.
    pub(super) fn linger(&mut self, now: Time, tx: TxId, timer: TimerKind, after: Duration) {
        if after.is_zero() {
            self.terminate(tx);
        } else {
            self.arm(now, tx, timer, after);
        }
    }

    pub(super) fn terminate(&mut self, tx: TxId) {
        let Some(t) = self.txs.remove(&tx) else { return };
        match t.kind {
            Kind::InviteClient | Kind::NonInviteClient => self.client_index.remove(&t.key),
            Kind::InviteServer | Kind::NonInviteServer => self.server_index.remove(&t.key),
        };
        for timer in ALL_TIMERS {
            self.timers.cancel(&(tx, timer));
        }
        self.events.push_back(TxEvent::Terminated { tx });
    }

    pub(super) fn send(&mut self, tx: TxId, peer: Peer, bytes: Vec<u8>) {
        self.transmits.push_back(Transmit { peer, bytes, tx: Some(tx) });
    }
}

/// Adds `received` when the sent-by host is not the source address, and fills in a
/// requested `rport` (RFC 3261 §18.2.1, RFC 3581 §4). Returns the stamped Via.
fn stamp_via(request: &mut Request, mut via: Via, source: SocketAddr) -> Via {
    let src_ip = source.ip();
    let host_is_src = match &via.host {
        Host::V4(a) => IpAddr::V4(*a) == src_ip,
        Host::V6(a) => IpAddr::V6(*a) == src_ip,
        Host::Domain(_) => false,
    };
    let wants_rport = via.rport().is_some();
    if host_is_src && !wants_rport {
        return via;
    }
    via.set_param("received", Some(&src_ip.to_string()));
    if wants_rport {
        via.set_param("rport", Some(&source.port().to_string()));
    }
    // Rewrite the first element of the first Via line.
    if let Some(h) = request.headers.0.iter_mut().find(|h| h.name == HeaderName::Via) {
        let rest = crate::core::sip::text::split_commas(&h.value).map(|v| v[1..].join(", ")).unwrap_or_default();
        h.value = if rest.is_empty() { via.to_string() } else { format!("{via}, {rest}") };
    }
    via
}

/// Where responses go (RFC 3261 §18.2.2, RFC 3581 §4): the stream it came on for
/// reliable transports; for UDP the source address, at the source port when rport was
/// asked for, else at the sent-by port (default 5060).
fn response_addr(via: &Via, peer: Peer) -> SocketAddr {
    if peer.reliable() || via.rport().is_some() {
        return peer.addr;
    }
    SocketAddr::new(peer.addr.ip(), via.port.unwrap_or(5060))
}
