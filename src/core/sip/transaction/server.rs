//! Server transactions: INVITE (RFC 3261 §17.2.1, Figure 7, with RFC 6026's Accepted
//! state) and non-INVITE (§17.2.2, Figure 8): absorbing retransmitted requests by
//! resending the last response, final-response retransmission on Timer G, the ACK
//! for non-2xx finals, and Timers H, I, J, L.

use super::layer::TransactionLayer;
use super::{Kind, Peer, State, TimerKind, TxError, TxEvent, TxId};
use crate::core::sip::msg::{Request, Response};
use crate::core::sip::name::Method;
use crate::core::Time;
use std::time::Duration;

impl TransactionLayer {
    /// A server transaction was just created. An INVITE gets an immediate 100 Trying
    /// (RFC 3261 §17.2.1: the TU may take longer than 200 ms).
    pub(super) fn server_started(&mut self, _now: Time, tx: TxId) {
        let Some(t) = self.txs.get_mut(&tx) else { return };
        if t.kind == Kind::InviteServer {
            let trying = Response::to_request(&t.request, 100, None).to_bytes();
            t.last_response = Some(trying.clone());
            let peer = t.peer;
            self.send(tx, peer, trying);
        }
    }

    /// The TU answers on server transaction `tx`. Over UDP a non-2xx final to INVITE is
    /// retransmitted on Timer G until the ACK comes; a 2xx leaves the transaction in
    /// Accepted (RFC 6026), and the TU retransmits it end to end through this call.
    pub fn send_response(&mut self, now: Time, tx: TxId, response: Response) -> Result<(), TxError> {
        let t = self.txs.get_mut(&tx).ok_or(TxError::NoTransaction)?;
        let status = response.status;
        let bytes = response.to_bytes();
        let (peer, reliable) = (t.peer, t.peer.reliable());
        match (t.kind, t.state) {
            (Kind::InviteServer, State::Proceeding) if status < 200 => {
                t.last_response = Some(bytes.clone());
                self.send(tx, peer, bytes);
            }
            (Kind::InviteServer, State::Proceeding) if status < 300 => {
                t.state = State::Accepted;
                t.last_response = None;
                self.send(tx, peer, bytes);
                self.arm(now, tx, TimerKind::L, self.cfg.timeout());
            }
            (Kind::InviteServer, State::Proceeding) => {
                t.state = State::Completed;
                t.last_response = Some(bytes.clone());
                t.interval = self.cfg.t1;
                self.send(tx, peer, bytes);
                if !reliable {
                    self.arm(now, tx, TimerKind::G, self.cfg.t1);
                }
                self.arm(now, tx, TimerKind::H, self.cfg.timeout());
            }
            (Kind::InviteServer, State::Accepted) if (200..300).contains(&status) => self.send(tx, peer, bytes),
            (Kind::NonInviteServer, State::Trying | State::Proceeding) if status < 200 => {
                t.state = State::Proceeding;
                t.last_response = Some(bytes.clone());
                self.send(tx, peer, bytes);
            }
            (Kind::NonInviteServer, State::Trying | State::Proceeding) => {
                t.state = State::Completed;
                t.last_response = Some(bytes.clone());
                self.send(tx, peer, bytes);
                let j = if reliable { Duration::ZERO } else { self.cfg.timeout() };
                self.linger(now, tx, TimerKind::J, j);
            }
            _ => return Err(TxError::WrongState),
        }
        Ok(())
    }

    /// A request that matched server transaction `tx`: a retransmission, or the ACK
    /// for a non-2xx final.
    pub(super) fn server_retransmission(&mut self, now: Time, tx: TxId, request: Request, from: Peer) {
        let Some(t) = self.txs.get_mut(&tx) else { return };
        let is_ack = request.method == Method::Ack;
        match (t.kind, t.state, is_ack) {
            (Kind::InviteServer, State::Completed, true) => {
                t.state = State::Confirmed;
                let reliable = t.peer.reliable();
                self.disarm(tx, TimerKind::G);
                self.disarm(tx, TimerKind::H);
                let i = if reliable { Duration::ZERO } else { self.cfg.t4 };
                self.linger(now, tx, TimerKind::I, i);
            }
            // RFC 6026 §8.7: an ACK that matches in Accepted goes to the TU.
            (Kind::InviteServer, State::Accepted, true) => {
                self.events.push_back(TxEvent::Request { tx: None, peer: from, request, cancels: None });
            }
            (Kind::InviteServer, State::Proceeding | State::Completed, false)
            | (Kind::NonInviteServer, State::Proceeding | State::Completed, false) => {
                let (peer, last) = (t.peer, t.last_response.clone());
                self.stats.retransmissions_absorbed += 1;
                if let Some(bytes) = last {
                    self.stats.retransmissions_sent += 1;
                    self.send(tx, peer, bytes);
                }
            }
            _ => self.stats.retransmissions_absorbed += 1,
        }
    }

    pub(super) fn server_timer(&mut self, now: Time, tx: TxId, timer: TimerKind) {
        let Some(t) = self.txs.get_mut(&tx) else { return };
        match timer {
            TimerKind::G if t.state == State::Completed => {
                let next = (t.interval * 2).min(self.cfg.t2);
                t.interval = next;
                let (peer, last) = (t.peer, t.last_response.clone().unwrap_or_default());
                self.stats.retransmissions_sent += 1;
                self.send(tx, peer, last);
                self.arm(now, tx, TimerKind::G, next);
            }
            TimerKind::H => {
                self.stats.timeouts += 1;
                self.events.push_back(TxEvent::Timeout { tx, timer });
                self.terminate(tx);
            }
            TimerKind::I | TimerKind::J | TimerKind::L => self.terminate(tx),
            _ => {}
        }
    }
}
