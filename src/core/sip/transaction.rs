//! The transaction layer of RFC 3261 §17 (with RFC 6026's Accepted states): pure
//! client and server state machines for INVITE and non-INVITE, their timers A–M as
//! data, request/response matching (§17.1.3, §17.2.3, RFC 2543 fallback), and the
//! `TransactionLayer` that owns them, bounded in count. It never touches a socket or a
//! clock: inputs carry `now`, outputs are `poll_transmit` / `poll_event` /
//! `poll_timeout`. Owns no dialogs, registrations or calls (that is the TU).

mod client;
mod layer;
mod server;
#[cfg(test)]
mod tests;

use super::headers::Via;
use super::msg::{Request, Response};
use crate::core::{ConnId, Transport};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

pub use layer::{TransactionLayer, TxStats};

/// RFC 3261 timer base values (§17.1.1.1, Table 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipTimers {
    /// RTT estimate, default 500 ms.
    pub t1: Duration,
    /// Longest retransmit interval for non-INVITE requests and INVITE responses, 4 s.
    pub t2: Duration,
    /// Longest time a message stays in the network, 5 s.
    pub t4: Duration,
}

impl Default for SipTimers {
    fn default() -> Self {
        SipTimers { t1: Duration::from_millis(500), t2: Duration::from_secs(4), t4: Duration::from_secs(5) }
    }
}

impl SipTimers {
    /// 64*T1: the transaction timeout (Timers B, F, H, J, L, M).
    pub fn timeout(&self) -> Duration {
        self.t1 * 64
    }
}

/// The transaction timers. Each variant cites where RFC 3261 (or RFC 6026) defines it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TimerKind {
    /// Timer A: INVITE request retransmit, T1 then doubling, unreliable transport only,
    /// RFC 3261 §17.1.1.2.
    A,
    /// Timer B: INVITE transaction timeout, 64*T1, RFC 3261 §17.1.1.2.
    B,
    /// Timer D: wait for response retransmits in Completed, 32 s for UDP (at least
    /// 64*T1), zero for reliable, RFC 3261 §17.1.1.2.
    D,
    /// Timer E: non-INVITE request retransmit, T1 doubling capped at T2 (T2 once
    /// Proceeding), unreliable only, RFC 3261 §17.1.2.2.
    E,
    /// Timer F: non-INVITE transaction timeout, 64*T1, RFC 3261 §17.1.2.2.
    F,
    /// Timer G: INVITE final response retransmit, T1 doubling capped at T2, unreliable
    /// only, RFC 3261 §17.2.1.
    G,
    /// Timer H: wait for ACK receipt, 64*T1, RFC 3261 §17.2.1.
    H,
    /// Timer I: wait for ACK retransmits in Confirmed, T4 for UDP, zero for reliable,
    /// RFC 3261 §17.2.1.
    I,
    /// Timer J: wait for non-INVITE request retransmits, 64*T1 for UDP, zero for
    /// reliable, RFC 3261 §17.2.2.
    J,
    /// Timer K: wait for response retransmits, T4 for UDP, zero for reliable,
    /// RFC 3261 §17.1.2.2.
    K,
    /// Timer L: wait for INVITE retransmits and 2xx retransmissions by the TU in
    /// Accepted, 64*T1, RFC 6026 §8.7.
    L,
    /// Timer M: wait for 2xx retransmits in the client's Accepted state, 64*T1,
    /// RFC 6026 §8.4.
    M,
}

/// A transaction handle, unique for the layer's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TxId(pub u64);

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tx{}", self.0)
    }
}

/// Where a message goes or came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Peer {
    pub transport: Transport,
    /// The stream connection, for TCP.
    pub conn: Option<ConnId>,
    pub addr: SocketAddr,
}

impl Peer {
    /// Retransmissions (A, E, G) run only over unreliable transports.
    pub fn reliable(&self) -> bool {
        self.transport != Transport::Udp
    }
}

/// Bytes to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub peer: Peer,
    pub bytes: Vec<u8>,
    /// The transaction it belongs to, so a send failure can be reported back with
    /// `handle_transport_error`; `None` for stateless sends.
    pub tx: Option<TxId>,
}

/// What the layer tells the transaction user.
#[derive(Clone, Debug, PartialEq)]
pub enum TxEvent {
    /// A new request. `tx` is its server transaction, `None` for an ACK that matched
    /// none (the ACK for a 2xx, handled end to end by the TU). For a CANCEL, `cancels`
    /// is the INVITE server transaction it matches (`None`: answer 481).
    Request { tx: Option<TxId>, peer: Peer, request: Request, cancels: Option<TxId> },
    /// A response on a client transaction (provisional, final, or a 2xx
    /// retransmission while Accepted).
    Response { tx: TxId, response: Response },
    /// Timer B or F fired (treat as 408), or Timer H fired (no ACK came).
    Timeout { tx: TxId, timer: TimerKind },
    /// The transport could not deliver (treat as 503, RFC 3261 §8.1.3.1).
    TransportError { tx: TxId },
    /// The transaction is gone; its id will not be seen again.
    Terminated { tx: TxId },
}

/// Why the layer refused an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxError {
    /// `limits::SIP_MAX_TRANSACTIONS` reached: answer 503 statelessly.
    Capacity,
    /// The message lacks a usable Via, CSeq or branch.
    Malformed(&'static str),
    /// No such transaction (or it is not of the right kind).
    NoTransaction,
    /// The operation does not fit the transaction's state.
    WrongState,
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxError::Capacity => f.write_str("too many transactions"),
            TxError::Malformed(what) => write!(f, "malformed: {what}"),
            TxError::NoTransaction => f.write_str("no such transaction"),
            TxError::WrongState => f.write_str("not allowed in this transaction state"),
        }
    }
}

impl std::error::Error for TxError {}

/// The four machines of RFC 3261 §17.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    InviteClient,
    NonInviteClient,
    InviteServer,
    NonInviteServer,
}

/// States of all four machines (RFC 3261 Figures 5–8, RFC 6026 Figures 3 and 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    Calling,
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

/// One transaction.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Transaction {
    pub kind: Kind,
    pub state: State,
    pub peer: Peer,
    /// The request that created it (as sent or as received).
    pub request: Request,
    /// Index key (see `layer`).
    key: String,
    /// Wire form of the request, for retransmission (client).
    request_bytes: Vec<u8>,
    /// Last response sent (server), for answering retransmissions.
    last_response: Option<Vec<u8>>,
    /// The ACK sent for a non-2xx final (INVITE client), resent on retransmits.
    ack_bytes: Option<Vec<u8>>,
    /// Current retransmit interval of A, E or G.
    interval: Duration,
    /// A CANCEL asked for while still Calling (sent on the first provisional).
    cancel_pending: bool,
}

/// Server transaction key (RFC 3261 §17.2.3): branch, sent-by and method, with ACK
/// folded onto INVITE; or the RFC 2543 fallback when the branch lacks the cookie.
pub(crate) fn server_key(req: &Request, via: &Via) -> String {
    use super::msg::SipHeaders;
    use super::name::Method;
    let method = match &req.method {
        Method::Ack => "INVITE",
        m => m.as_str(),
    };
    let sent_by = format!("{}:{}", via.host, via.port.unwrap_or(0)).to_ascii_lowercase();
    if via.has_rfc3261_branch() {
        format!("3261|{}|{sent_by}|{method}", via.branch().unwrap_or(""))
    } else {
        // RFC 2543 §17.2.3 fallback: Request-URI, From tag, Call-ID, CSeq number, top
        // Via. The To tag is left out so the ACK for a non-2xx (which carries it)
        // matches the INVITE.
        let from_tag = req.from().ok().and_then(|f| f.tag().map(str::to_string)).unwrap_or_default();
        let seq = req.cseq().map(|c| c.seq).unwrap_or(0);
        format!(
            "2543|{}|{from_tag}|{}|{seq}|{sent_by}|{}|{method}",
            req.uri,
            req.call_id().unwrap_or(""),
            via.branch().unwrap_or("")
        )
    }
}

/// Client transaction key (RFC 3261 §17.1.3): branch and CSeq method.
pub(crate) fn client_key(branch: &str, method: &str) -> String {
    format!("{branch}|{method}")
}
