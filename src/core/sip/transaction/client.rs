//! Client transactions: INVITE (RFC 3261 §17.1.1, Figure 5, with RFC 6026's Accepted
//! state) and non-INVITE (§17.1.2, Figure 6): sending, retransmission on Timers A/E,
//! timeouts B/F, the ACK for non-2xx finals (§17.1.1.3), and CANCEL (§9.1).

use super::layer::TransactionLayer;
use super::{client_key, Kind, Peer, State, TimerKind, TxError, TxEvent, TxId};
use crate::core::sip::msg::{Header, Headers, Request, Response, SipHeaders};
use crate::core::sip::name::{HeaderName, Method};
use crate::core::Time;
use std::time::Duration;

impl TransactionLayer {
    /// Starts a client transaction for `request` (its top Via must carry an RFC 3261
    /// branch) and sends it to `peer`. ACK is not a transaction: use `send_stateless`.
    pub fn send_request(&mut self, now: Time, peer: Peer, request: Request) -> Result<TxId, TxError> {
        if request.method == Method::Ack {
            return Err(TxError::WrongState);
        }
        let via = request.top_via().map_err(|_| TxError::Malformed("Via"))?;
        if !via.has_rfc3261_branch() {
            return Err(TxError::Malformed("branch"));
        }
        let key = client_key(via.branch().unwrap_or(""), request.method.as_str());
        if self.client_index.contains_key(&key) {
            return Err(TxError::Malformed("branch in use"));
        }
        let invite = request.method == Method::Invite;
        let tx = self.create(invite, peer, request, key, false)?;
        let bytes = self.txs[&tx].request_bytes.clone();
        self.send(tx, peer, bytes);
        let (retransmit, timeout) = if invite { (TimerKind::A, TimerKind::B) } else { (TimerKind::E, TimerKind::F) };
        if !peer.reliable() {
            self.arm(now, tx, retransmit, self.cfg.t1);
        }
        self.arm(now, tx, timeout, self.cfg.timeout());
        Ok(tx)
    }

    /// Cancels an INVITE client transaction (RFC 3261 §9.1). In Proceeding the CANCEL
    /// goes now and its own transaction id is returned; in Calling it is held until
    /// the first provisional response (`Ok(None)`), as §9.1 requires; its responses
    /// then arrive under a transaction id the TU has not seen, and may be ignored. A
    /// final response to the INVITE still arrives on `tx` (487 or a racing 2xx).
    pub fn cancel(&mut self, now: Time, tx: TxId) -> Result<Option<TxId>, TxError> {
        let t = self.txs.get_mut(&tx).ok_or(TxError::NoTransaction)?;
        if t.kind != Kind::InviteClient {
            return Err(TxError::NoTransaction);
        }
        match t.state {
            State::Calling => {
                t.cancel_pending = true;
                Ok(None)
            }
            State::Proceeding => {
                let (peer, cancel) = (t.peer, build_cancel(&t.request));
                self.send_request(now, peer, cancel).map(Some)
            }
            _ => Err(TxError::WrongState),
        }
    }

    pub(super) fn client_response(&mut self, now: Time, tx: TxId, response: Response) {
        let Some(t) = self.txs.get_mut(&tx) else { return };
        let status = response.status;
        match (t.kind, t.state) {
            (Kind::InviteClient, State::Calling | State::Proceeding) if status < 200 => {
                let first = t.state == State::Calling;
                t.state = State::Proceeding;
                let pending = std::mem::take(&mut t.cancel_pending);
                let (peer, cancel) = (t.peer, pending.then(|| build_cancel(&t.request)));
                if first {
                    self.disarm(tx, TimerKind::A);
                    self.disarm(tx, TimerKind::B);
                }
                self.events.push_back(TxEvent::Response { tx, response });
                if let Some(c) = cancel {
                    let _ = self.send_request(now, peer, c);
                }
            }
            (Kind::InviteClient, State::Calling | State::Proceeding) if status < 300 => {
                t.state = State::Accepted;
                self.disarm(tx, TimerKind::A);
                self.disarm(tx, TimerKind::B);
                self.arm(now, tx, TimerKind::M, self.cfg.timeout());
                self.events.push_back(TxEvent::Response { tx, response });
            }
            (Kind::InviteClient, State::Calling | State::Proceeding) => {
                t.state = State::Completed;
                let ack = build_ack(&t.request, &response).to_bytes();
                t.ack_bytes = Some(ack.clone());
                let peer = t.peer;
                self.disarm(tx, TimerKind::A);
                self.disarm(tx, TimerKind::B);
                self.send(tx, peer, ack);
                self.events.push_back(TxEvent::Response { tx, response });
                let d = if peer.reliable() { Duration::ZERO } else { Duration::from_secs(32).max(self.cfg.timeout()) };
                self.linger(now, tx, TimerKind::D, d);
            }
            // RFC 6026 §8.4: 2xx retransmissions go to the TU, which re-ACKs.
            (Kind::InviteClient, State::Accepted) if (200..300).contains(&status) => {
                self.events.push_back(TxEvent::Response { tx, response });
            }
            (Kind::InviteClient, State::Completed) if status >= 300 => {
                let (peer, ack) = (t.peer, t.ack_bytes.clone().unwrap_or_default());
                self.stats.retransmissions_absorbed += 1;
                self.send(tx, peer, ack);
            }
            (Kind::NonInviteClient, State::Trying | State::Proceeding) if status < 200 => {
                t.state = State::Proceeding;
                self.events.push_back(TxEvent::Response { tx, response });
            }
            (Kind::NonInviteClient, State::Trying | State::Proceeding) => {
                t.state = State::Completed;
                let reliable = t.peer.reliable();
                self.disarm(tx, TimerKind::E);
                self.disarm(tx, TimerKind::F);
                self.events.push_back(TxEvent::Response { tx, response });
                let k = if reliable { Duration::ZERO } else { self.cfg.t4 };
                self.linger(now, tx, TimerKind::K, k);
            }
            _ => self.stats.retransmissions_absorbed += 1,
        }
    }

    pub(super) fn client_timer(&mut self, now: Time, tx: TxId, timer: TimerKind) {
        let Some(t) = self.txs.get_mut(&tx) else { return };
        match timer {
            TimerKind::A | TimerKind::E => {
                let next = match (timer, t.state) {
                    (TimerKind::A, State::Calling) => t.interval * 2,
                    (TimerKind::E, State::Trying) => (t.interval * 2).min(self.cfg.t2),
                    (TimerKind::E, State::Proceeding) => self.cfg.t2,
                    _ => return,
                };
                t.interval = next;
                let (peer, bytes) = (t.peer, t.request_bytes.clone());
                self.stats.retransmissions_sent += 1;
                self.send(tx, peer, bytes);
                self.arm(now, tx, timer, next);
            }
            TimerKind::B | TimerKind::F => {
                self.stats.timeouts += 1;
                self.events.push_back(TxEvent::Timeout { tx, timer });
                self.terminate(tx);
            }
            TimerKind::D | TimerKind::K | TimerKind::M => self.terminate(tx),
            _ => {}
        }
    }
}

fn copy(from: &Headers, name: &HeaderName, to: &mut Headers) {
    for v in from.get_all(name) {
        to.0.push(Header { name: name.clone(), value: v.to_string() });
    }
}

/// The top Via of `req` alone.
fn top_via_only(req: &Request, out: &mut Headers) {
    if let Ok(via) = req.top_via() {
        out.push(HeaderName::Via, via.to_string());
    }
}

/// ACK for a non-2xx final response (RFC 3261 §17.1.1.3).
pub fn build_ack(invite: &Request, response: &Response) -> Request {
    let mut h = Headers::default();
    top_via_only(invite, &mut h);
    copy(&invite.headers, &HeaderName::MaxForwards, &mut h);
    copy(&invite.headers, &HeaderName::From, &mut h);
    copy(&response.headers, &HeaderName::To, &mut h);
    copy(&invite.headers, &HeaderName::CallId, &mut h);
    let seq = invite.cseq().map(|c| c.seq).unwrap_or(0);
    h.push(HeaderName::CSeq, format!("{seq} ACK"));
    copy(&invite.headers, &HeaderName::Route, &mut h);
    h.push(HeaderName::ContentLength, "0");
    Request { method: Method::Ack, uri: invite.uri.clone(), headers: h, body: Vec::new() }
}

/// CANCEL for a pending INVITE (RFC 3261 §9.1): same Request-URI, Call-ID, From,
/// To, CSeq number and top Via (hence branch), and the INVITE's Route set.
pub fn build_cancel(invite: &Request) -> Request {
    let mut h = Headers::default();
    top_via_only(invite, &mut h);
    copy(&invite.headers, &HeaderName::MaxForwards, &mut h);
    copy(&invite.headers, &HeaderName::From, &mut h);
    copy(&invite.headers, &HeaderName::To, &mut h);
    copy(&invite.headers, &HeaderName::CallId, &mut h);
    let seq = invite.cseq().map(|c| c.seq).unwrap_or(0);
    h.push(HeaderName::CSeq, format!("{seq} CANCEL"));
    copy(&invite.headers, &HeaderName::Route, &mut h);
    h.push(HeaderName::ContentLength, "0");
    Request { method: Method::Cancel, uri: invite.uri.clone(), headers: h, body: Vec::new() }
}
