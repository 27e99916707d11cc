//! Routing a call and ringing its called party: an authenticated INVITE becomes a
//! call, the dial plan and forwarding (all, busy, no answer, unregistered) choose the
//! line, its phone is rung (or the CTI device on it offered the call), and the called
//! leg's provisional and final answers go back to the caller; CANCEL, and the race of
//! a CANCEL with the called party's answer (RFC 3261 §9.1).

use super::dialplan::{self, Destination};
use super::end::End;
use super::leg::{self, Leg, Side};
use super::state::{start_2xx_retransmission, Call, CallState, AckOf, Established, Invite};
use super::table::{body_of, branch, copy_body, respond, Action, B2bua, CallTimer, Cancelled, ClientTxn, Ctx, Purpose, ServerTxn, MAX_FORWARD_HOPS};
use crate::config::{DeviceKind, LineKey, RouteTarget};
use crate::core::registrar::Origin;
use crate::core::sip::{HeaderName, Method, Request, Response, SipHeaders, Uri};
use crate::core::sip::text::AddrText;
use std::time::Duration;

fn dialled_of(req: &Request) -> Option<String> {
    match &req.uri {
        Uri::Sip(s) => s.user.as_deref().map(str::to_string),
        Uri::Tel(t) => Some(t.number.chars().filter(|c| c.is_ascii_digit() || *c == '+' || *c == '*' || *c == '#').collect()),
        Uri::Other { .. } => None,
    }
}

impl B2bua {
    /// An authenticated INVITE outside any dialog, from `device`.
    pub fn handle_invite(&mut self, cx: &mut Ctx<'_>, stx: ServerTxn, req: Request, origin: Origin, device: &str) {
        let tag = cx.rng.token(12);
        let max_forwards = req.max_forwards().ok().flatten().unwrap_or(70);
        if max_forwards == 0 {
            self.out.push(Action::Respond(stx, respond(&req, 483, None, &tag)));
            return;
        }
        // Past `max_calls` the endpoint refused this INVITE before its challenge
        // (endpoint.rs), so there is room here.
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
        self.dialogs.insert(super::table::dialog_key(&a.call_id, &tag), (id, Side::A));
        self.invites.insert(stx, id);
        log::info!("call {id}: {caller_dn} ({device}) dials {dialled}");
        self.out.push(Action::Respond(stx, respond(&req, 100, None, &tag)));
        let mut call = Call::new(id, End::SipLeg(a), device, caller_dn, caller_display, &dialled, max_forwards - 1);
        call.a_invite = Some((stx, Box::new(req)));
        call.a_stx = Some(stx);
        if let Some((_, r)) = &call.a_invite {
            call.a_sdp = r.body.clone();
        }
        let caller_watched = cx.cti_open.contains(device);
        if caller_watched {
            call.watchers.push(device.to_string());
        }
        self.calls.insert(id, Box::new(call));
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
        // The application's device is the calling party: the call has no caller dialog.
        let call = Call::new(id, End::CtiDevice(cti), device, line.dn.clone(), display, to, 70);
        self.calls.insert(id, Box::new(call));
        id
    }

    /// Answers the caller with a final failure and ends the call.
    pub(super) fn fail(&mut self, id: u64, code: u16, reason: &str) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        if let Some((stx, req)) = call.a_invite.take() {
            log::info!("call {id}: {code} {reason}");
            let r = respond(&req, code, Some(reason), call.a.leg().map_or("", |a| &a.local_tag));
            self.out.push(Action::Respond(stx, r));
        }
        if call.phone_ack_pending.is_some() {
            log::info!("call {id}: {code} {reason}; releasing the phone");
            self.release_phone(id);
        }
        self.remove(id);
    }

    /// Click-to-dial that will not complete: ACK the phone's 2xx (with its media
    /// inactive) and hang it up.
    pub(super) fn release_phone(&mut self, id: u64) {
        let Some(call) = self.calls.get(&id) else { return };
        let Some(cseq) = call.phone_ack_pending else { return };
        let (b1, _) = self.next_branch(id);
        let (b2, txn) = self.next_branch(id);
        let Some(call) = self.calls.get_mut(&id) else { return };
        call.phone_ack_pending = None;
        let inactive = crate::core::sdp::with_direction(&call.a_sdp, crate::core::sdp::Direction::Inactive);
        let Some(phone) = call.a.leg_mut() else { return };
        if let Some(mut ack) = phone.ack(cseq, &b1) {
            ack.set_body("application/sdp", inactive);
            self.out.push(Action::Stateless { message: ack.to_bytes(), to: phone.peer });
        }
        if let Some(bye) = phone.request(Method::Bye, &b2) {
            let to = phone.peer;
            self.client.insert(txn, (id, Side::A, Purpose::Own));
            self.out.push(Action::Request { txn, request: bye, to });
        }
        phone.confirmed = false;
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
                    local: call.a_local(),
                };
                let uri = format!("sip:{number}@{}:{}", trunk.host, trunk.port);
                self.invite_b(cx, id, uri, format!("<sip:{number}@{}>", trunk.host), peer, None);
            }
            Destination::Route { target: RouteTarget::Device(dev), number, .. } => self.ring_fxo(cx, id, &dev, number),
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

    pub(super) fn ring_line(&mut self, cx: &mut Ctx<'_>, id: u64, key: LineKey) {
        // The configuration outlives the context: borrowed, not cloned, per call.
        let cfg = cx.cfg;
        let Some(line) = cfg.line(&key) else { return self.fail(id, 404, "Not Found") };
        let Some(call) = self.calls.get_mut(&id) else { return };
        if call.visited.contains(&key) {
            return self.fail(id, 482, "Loop Detected (forwarding returns to a line already tried)");
        }
        call.visited.push(key.clone());
        if let Some(all) = &line.forward.all {
            return self.forward(cx, id, &key, all, "all");
        }
        // A CTI device on the line takes the call; so does an analog (FXS) port, which
        // the box's analog-ports client has open like a CTI port (analog/engine.rs).
        let cti_dev = dialplan::devices_of(cx.cfg, &key)
            .find(|d| matches!(d.kind, DeviceKind::CtiRoutePoint { .. } | DeviceKind::CtiPort { .. } | DeviceKind::AnalogFxs { .. }))
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
        // FXO ports and FXS ports the board does not have are not in service: 480 below.
        for d in dialplan::devices_of(cx.cfg, &key) {
            if !matches!(d.kind, DeviceKind::SipPhone { .. }) {
                other_kind.get_or_insert(d.kind.type_name());
                continue;
            }
            if let Some(b) = cx.registrar.contacts(&d.name).first() {
                // What the INVITE needs of the binding, not all of it.
                let peer = Origin { source: b.send_to(), transport: b.transport, conn: b.conn, local: b.local };
                target = Some((b.uri.clone(), peer));
                phone = Some(d.name.clone());
                break;
            }
        }
        let Some((uri, peer)) = target else {
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
            Some(n) => format!("\"{n}\" <sip:{}@{}>", key.dn, AddrText::socket(peer.local)),
            None => format!("<sip:{}@{}>", key.dn, AddrText::socket(peer.local)),
        };
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
        self.invite_b(cx, id, uri, to, peer, Some(line));
    }

    /// Sends the INVITE of a (new) B leg, cancelling any previous one.
    pub(super) fn invite_b(&mut self, cx: &mut Ctx<'_>, id: u64, uri: String, to: String, peer: Origin, line: Option<&crate::config::Line>) {
        self.cancel_b(cx, id);
        let txn = self.new_txn(cx.rng);
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(req_uri) = Uri::parse(&uri) else { return self.fail(id, 480, "Temporarily Unavailable (bad contact)") };
        let tag = cx.rng.token(12);
        let call_id = format!("{}@ctibox", cx.rng.token(20));
        let from = match &call.caller_display {
            Some(n) => format!("\"{n}\" <sip:{}@{}>;tag={tag}", call.caller_dn, AddrText::socket(peer.local)),
            None => format!("<sip:{}@{}>;tag={tag}", call.caller_dn, AddrText::socket(peer.local)),
        };
        let tcp = peer.transport == crate::core::Transport::Tcp;
        let mut req = Request::new(Method::Invite, req_uri, &leg::via(peer.local, tcp, &branch(cx.rng)), &from, &to, &call_id, 1, call.max_forwards);
        leg::set_contact(&mut req.headers, leg::contact(&call.caller_dn, peer.local, tcp));
        req.headers.add(HeaderName::Allow, crate::core::sip::ALLOW);
        // A termination inside the box (an analog port) offers the box's own address
        // toward this party.
        if let Some(m) = call.cti_mut().and_then(|e| e.offer_media.as_mut()).filter(|m| m.ip.is_unspecified()) {
            m.ip = peer.local.ip();
        }
        if let Some((_, a_req)) = &call.a_invite {
            copy_body(&a_req.headers, &a_req.body, &mut req);
        } else if let Some(offer) = call.cti().and_then(|e| e.outgoing_offer(id, &cx.cfg.media.codecs)) {
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
        if let Some(End::SipLeg(old)) = call.b.replace(End::SipLeg(b)) {
            self.dialogs.remove(&super::table::dialog_key(&old.call_id, &old.local_tag));
        }
        call.state = CallState::Ringing(Invite { txn, request: Box::new(req.clone()), provisional: false });
        self.dialogs.insert(super::table::dialog_key(&call_id, &tag), (id, Side::B));
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
    pub(super) fn cancel_b(&mut self, cx: &mut Ctx<'_>, id: u64) {
        let Some(call) = self.calls.get_mut(&id).filter(|c| c.state.ringing().is_some()) else { return };
        let CallState::Ringing(Invite { txn, request: inv, provisional }) = std::mem::replace(&mut call.state, CallState::Routing) else { return };
        self.timers.cancel(&(id, CallTimer::NoAnswer));
        if let Some(e) = self.client.get_mut(&txn) {
            e.2 = Purpose::Own; // its final answer (487) is expected and ignored
        }
        let Some(peer) = call.leg(Side::B).map(|b| b.peer) else { return };
        // Without a provisional answer yet, the CANCEL waits for the first one.
        self.cancelled.insert(txn, Cancelled { request: (*inv).clone(), to: peer, on_provisional: !provisional });
        if provisional {
            self.send_cancel(cx, id, &inv, peer);
        }
    }

    /// Sends the CANCEL of the INVITE `inv` sent to `peer`.
    pub(super) fn send_cancel(&mut self, cx: &mut Ctx<'_>, id: u64, inv: &Request, peer: Origin) {
        let cancel = cancel_for(inv);
        let ctxn = self.new_txn(cx.rng);
        self.client.insert(ctxn, (id, Side::B, Purpose::Own));
        self.out.push(Action::Request { txn: ctxn, request: cancel, to: peer });
    }

    pub(super) fn b_invite_response(&mut self, cx: &mut Ctx<'_>, id: u64, txn: ClientTxn, resp: Response) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        if call.state.ringing().is_none_or(|i| i.txn != txn) {
            return;
        }
        let Some(b) = call.b.as_mut().and_then(End::leg_mut) else { return };
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
            let CallState::Ringing(inv) = &mut call.state else { return };
            let first_ring = !inv.provisional;
            inv.provisional = true;
            if first_ring && resp.status == 180 {
                let mut watchers = call.watchers.clone();
                if let Some(e) = call.a.cti() {
                    watchers.push(e.device.clone());
                }
                for w in watchers {
                    self.note(&w, id, crate::core::cti::wire::EventKind::CallRinging);
                }
            }
            let Some(call) = self.calls.get_mut(&id) else { return };
            if let (Some((stx, a_req)), Some(a)) = (&call.a_invite, call.a.leg()) {
                let mut r = respond(a_req, resp.status, Some(&resp.reason), &a.local_tag);
                leg::set_contact(&mut r.headers, a.contact(&call.dialled));
                if let Some((ct, b)) = body_of(&resp.headers, &resp.body) {
                    r.set_body(&ct, b);
                }
                self.out.push(Action::Respond(*stx, r));
            }
            return;
        }
        call.state = CallState::Routing;
        self.timers.cancel(&(id, CallTimer::NoAnswer));
        if resp.status < 300 {
            // Answered: ACK the called leg now, answer the caller with its SDP.
            b.confirmed = true;
            let cseq = b.local_cseq;
            let ack_branch = branch(cx.rng);
            let Some(ack) = b.ack(cseq, &ack_branch) else { return };
            let to = b.peer;
            let answered = CallState::Established(Established {
                b_ack: Some(AckOf { cseq, branch: ack_branch.into() }),
                ..Established::default()
            });
            self.out.push(Action::Stateless { message: ack.to_bytes(), to });
            if call.a.cti().is_some() {
                call.state = answered;
                return self.cti_outgoing_answered(id, &resp);
            }
            if let Some(cseq) = call.phone_ack_pending.take() {
                // Click-to-dial: the called party's answer goes to the phone in its ACK.
                call.state = answered;
                call.b_sdp = resp.body.clone();
                if let Some(phone) = call.a.leg_mut() {
                    if let Some(mut ack) = phone.ack(cseq, &branch(cx.rng)) {
                        if let Some((ct, b)) = body_of(&resp.headers, &resp.body) {
                            ack.set_body(&ct, b);
                        }
                        self.out.push(Action::Stateless { message: ack.to_bytes(), to: phone.peer });
                    }
                }
                log::debug!("call {id}: answered");
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
            let (tag, contact) = call.a.leg().map(|a| (a.local_tag.clone(), a.contact(&call.dialled))).unwrap_or_default();
            let mut r = respond(&a_req, resp.status, Some(&resp.reason), &tag);
            leg::set_contact(&mut r.headers, contact);
            r.headers.add(HeaderName::Allow, crate::core::sip::ALLOW);
            if let Some((ct, b)) = body_of(&resp.headers, &resp.body) {
                r.set_body(&ct, b);
            }
            call.state = answered;
            call.b_sdp = resp.body.clone();
            log::debug!("call {id}: answered");
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
            if let Some(e) = c.cti_mut().filter(|e| e.outgoing) {
                e.end = Some(why);
            }
        }
        self.fail(id, resp.status, &reason);
    }

    /// ACK and BYE for a 2xx to the INVITE `inv` the box had cancelled, built from
    /// that INVITE and the answer alone (the call may be gone, or ring elsewhere).
    pub(super) fn ack_and_bye_cancelled(&mut self, cx: &mut Ctx<'_>, id: u64, inv: &Request, peer: Origin, resp: &Response) {
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
    /// yet, so the call was kept to CANCEL it then; that INVITE (`txn`) is over now.
    pub(super) fn end_if_cancelled(&mut self, id: u64, txn: ClientTxn) {
        let orphan = self.calls.get(&id).is_some_and(|c| matches!(c.state, CallState::Cancelling { invite } if invite == txn) && c.a_invite.is_none());
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
        self.out.push(Action::Respond(stx, respond(&req, 487, None, call.a.leg().map_or("", |a| &a.local_tag))));
        let ringing = call.state.ringing().map(|i| i.txn);
        self.cancel_b(cx, id);
        // Keep the call until the B leg's INVITE is done, if it must still be cancelled.
        let waiting = ringing.filter(|t| self.cancelled.get(t).is_some_and(|c| c.on_provisional));
        match (waiting, self.calls.get_mut(&id)) {
            (Some(invite), Some(c)) => {
                c.state = CallState::Cancelling { invite };
                self.invites.remove(&stx);
            }
            _ => self.remove(id),
        }
    }
}

/// CANCEL for a client INVITE (RFC 3261 §9.1): same Request-URI, Call-ID, From, To,
/// CSeq number and top Via.
pub(super) fn cancel_for(inv: &Request) -> Request {
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
