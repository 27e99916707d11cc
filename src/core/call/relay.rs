//! A call's dialogs once they exist: ACK and 2xx retransmissions, requests inside a
//! dialog (BYE, re-INVITE, INFO, UPDATE, OPTIONS) relayed to the other party or
//! answered by the box for an end that terminates media itself, and hanging up.

use super::end::End;
use super::leg::{self, Side};
use super::table::{body_of, branch, copy_body, respond, Action, B2bua, CallTimer, ClientTxn, Ctx, Purpose, ServerTxn};
use crate::core::sip::{HeaderName, Method, Request, Response, SipHeaders};

impl B2bua {
    /// An ACK for a 2xx (outside transactions).
    pub fn handle_ack(&mut self, now: crate::core::Time, req: &Request) {
        let Some((id, side)) = self.find_dialog(req) else { return };
        self.activity(id, now);
        if side != Side::A {
            return;
        }
        let mut connected_at = None;
        if let Some(call) = self.calls.get_mut(&id) {
            let Some(a) = call.a.leg_mut() else { return };
            let first = !a.confirmed;
            a.confirmed = true;
            if let Some(e) = call.state.established_mut() {
                e.a_2xx = None;
            }
            self.timers.cancel(&(id, CallTimer::Retransmit2xx));
            if first {
                connected_at = call.cti().filter(|e| e.agreed.is_some()).map(|e| e.device.clone());
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
        let Some(&(id, Side::B)) = self.dialogs.get(&super::table::dialog_key(call_id, tag)) else { return };
        if let Some(call) = self.calls.get_mut(&id) {
            let Some(of) = call.state.b_ack().cloned() else { return };
            if let Some(b) = call.leg_mut(Side::B) {
                if let Some(ack) = b.ack(of.cseq, &of.branch) {
                    self.out.push(Action::Stateless { message: ack.to_bytes(), to: b.peer });
                }
            }
        }
    }

    /// A request inside a dialog (BYE, re-INVITE, INFO, UPDATE, OPTIONS...).
    pub fn handle_in_dialog(&mut self, cx: &mut Ctx<'_>, stx: ServerTxn, req: Request) {
        let tag_for_errors = req.tag_of_to().unwrap_or_default().to_string();
        let Some((id, side)) = self.find_dialog(&req) else {
            self.out.push(Action::Respond(stx, respond(&req, 481, None, &tag_for_errors)));
            return;
        };
        self.activity(id, cx.now);
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(this) = call.leg_mut(side) else { return };
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
                log::debug!("call {id}: {} hangs up", if side == Side::A { "caller" } else { "called party" });
                self.out.push(Action::Respond(stx, respond(&req, 200, None, &tag)));
                self.hang_up(cx, id, Some(side));
            }
            Method::Options => {
                let mut r = respond(&req, 200, None, &tag);
                r.headers.add(HeaderName::Allow, crate::core::sip::ALLOW);
                self.out.push(Action::Respond(stx, r));
            }
            _ if call.cti().is_some_and(|e| e.agreed.is_some()) => {
                // The application terminates media: the box answers for it.
                let contact = call.leg(side).map(|l| l.contact(&call.dialled)).unwrap_or_default();
                let end = call.cti_mut().expect("checked");
                let mut r = respond(&req, 200, None, &tag);
                if req.method == Method::Invite {
                    let (_, _, codec, m, dtmf) = end.agreed.expect("checked");
                    let dir = match crate::core::sdp::parse_audio(&req.body).map(|a| a.direction) {
                        Some(crate::core::sdp::Direction::SendOnly) => crate::core::sdp::Direction::RecvOnly,
                        Some(crate::core::sdp::Direction::Inactive) => crate::core::sdp::Direction::Inactive,
                        _ => crate::core::sdp::Direction::SendRecv,
                    };
                    end.sdp_version += 1;
                    leg::set_contact(&mut r.headers, contact);
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
                if side == Side::B && call.a.leg().is_none() {
                    // The caller is an application's device, with no dialog to relay to.
                    return;
                }
                let other = if side == Side::A { call.b.as_mut().and_then(End::leg_mut) } else { call.a.leg_mut() };
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

    pub(super) fn relay_response(&mut self, cx: &mut Ctx<'_>, id: u64, to_side: Side, txn: ClientTxn, stx: ServerTxn, resp: Response) {
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
        let sent_on = if to_side == Side::A { call.a.leg_mut() } else { call.b.as_mut().and_then(End::leg_mut) };
        if let Some(l) = sent_on {
            if (200..300).contains(&resp.status) && resp.cseq().is_ok_and(|c| c.method == Method::Invite) {
                if let Some(ack) = l.ack_for(&resp, &branch(cx.rng)) {
                    self.out.push(Action::Stateless { message: ack.to_bytes(), to: l.peer });
                }
            }
        }
        let from_leg = if to_side == Side::A { call.b.as_ref().and_then(End::leg) } else { call.a.leg() };
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
        // At most one BYE per side. On the stack: a heap vector of these is over 1 KiB,
        // a size for which glibc first consolidates its fast bins (1.4 % of the CPU).
        let mut byes: heapless::Vec<(Request, crate::core::sip::Origin), 2> = heapless::Vec::new();
        let answered = call.state.is_established();
        if from != Some(Side::A) {
            if let Some(a) = call.a.leg_mut().filter(|a| (a.confirmed || answered) && !a.call_id.is_empty()) {
                if let Some(r) = a.request(Method::Bye, &branch(cx.rng)) {
                    let _ = byes.push((r, a.peer));
                }
            }
        }
        if from != Some(Side::B) {
            if let Some(b) = call.leg_mut(Side::B).filter(|b| b.confirmed) {
                if let Some(r) = b.request(Method::Bye, &branch(cx.rng)) {
                    let _ = byes.push((r, b.peer));
                }
            }
        }
        for (request, to) in byes {
            let txn = ClientTxn(cx.rng.next_u64());
            self.client.insert(txn, (id, Side::A, Purpose::Own));
            self.out.push(Action::Request { txn, request, to });
        }
        // One line per call at its start (routing.rs) and one at its end.
        let answered = if answered { "" } else { " before it was answered" };
        match from {
            Some(Side::A) => log::info!("call {id}: ended by the caller{answered}"),
            Some(Side::B) => log::info!("call {id}: ended by the called party{answered}"),
            None => log::info!("call {id}: ended by the box{answered}"),
        }
        self.remove(id);
    }
}
