//! One call's state: its two ends, what the caller dialled, how it was routed, the
//! session descriptions of each side, and where it stands in its life.

use super::cti::CtiEnd;
use super::end::End;
use super::leg::{Leg, Side};
use super::table::{ClientTxn, CallTimer, Ctx, ServerTxn};
use crate::config::LineKey;
use crate::core::sip::Request;
use crate::core::timer::Timers;
use crate::core::Time;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Pending2xx {
    pub(super) message: Vec<u8>,
    pub(super) interval: Duration,
    pub(super) give_up: Time,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Call {
    pub(super) id: u64,
    /// The caller: the phone whose INVITE the box answers, the phone a click-to-dial
    /// calls first, or the CTI device that placed the call.
    pub(super) a: End,
    /// The caller's INVITE, until it has a final answer.
    pub(super) a_invite: Option<(ServerTxn, Request)>,
    /// The called party, once the call is routed: the phone or trunk rung, or the CTI
    /// device the call is offered to.
    pub(super) b: Option<End>,
    /// The called leg's INVITE and its client transaction, until a final answer.
    pub(super) b_invite: Option<(ClientTxn, Request)>,
    pub(super) b_got_provisional: bool,
    pub(super) cancel_when_provisional: bool,
    /// The ACK sent for the B leg's 2xx (re-sent if the 2xx is retransmitted).
    pub(super) b_ack: Option<Vec<u8>>,
    pub(super) a_2xx: Option<Pending2xx>,
    pub(super) caller_device: String,
    pub(super) caller_dn: String,
    pub(super) caller_display: Option<String>,
    pub(super) dialled: String,
    /// The line being rung now, and the lines already tried (loop protection).
    pub(super) ringing_line: Option<LineKey>,
    pub(super) visited: Vec<LineKey>,
    pub(super) hops: u8,
    pub(super) max_forwards: u8,
    pub(super) answered: bool,
    /// A re-INVITE or other request relayed and not answered yet.
    pub(super) relaying: Option<ClientTxn>,
    /// Phone devices an application watches that take part in this call.
    pub(super) watchers: Vec<String>,
    /// The latest session descriptions of each side (for hold on a watched phone).
    pub(super) a_sdp: Vec<u8>,
    pub(super) b_sdp: Vec<u8>,
    /// Click-to-dial: the phone answered our offerless INVITE; its 2xx waits for the
    /// ACK that carries the called party's answer (RFC 3725 flow I). The CSeq to ACK.
    pub(super) phone_ack_pending: Option<u32>,
    /// Why the call ended, for the events of watched phones.
    pub(super) end_reason: Option<crate::core::cti::wire::EndReason>,
    /// Music on hold playing to one party.
    pub(super) moh: Option<super::moh::Moh>,
    /// The box's own media termination (CTI `"media": "box"`, `play`, `collect_digits`).
    pub(super) box_media: Option<super::box_media::BoxMedia>,
}

/// The box answered the caller with a 2xx: over UDP it resends it (T1 doubling to T2)
/// until the ACK comes, for 64*T1 (RFC 3261 §13.3.1.4).
pub(super) fn start_2xx_retransmission(call: &mut Call, timers: &mut Timers<(u64, CallTimer)>, cx: &Ctx<'_>, message: Vec<u8>) {
    if call.a.leg().is_some_and(|a| a.peer.transport == crate::core::Transport::Udp) {
        call.a_2xx = Some(Pending2xx { message, interval: cx.t1(), give_up: cx.now + cx.t1() * 64 });
        timers.arm((call.id, CallTimer::Retransmit2xx), cx.now + cx.t1());
    }
}

impl Call {
    /// A call with its caller side; nothing is routed or answered yet.
    pub(super) fn new(id: u64, a: End, device: &str, caller_dn: String, caller_display: Option<String>, dialled: &str, max_forwards: u8) -> Call {
        Call {
            id,
            a,
            a_invite: None,
            b: None,
            b_invite: None,
            b_got_provisional: false,
            cancel_when_provisional: false,
            b_ack: None,
            a_2xx: None,
            caller_device: device.to_string(),
            caller_dn,
            caller_display,
            dialled: dialled.to_string(),
            ringing_line: None,
            visited: Vec::new(),
            hops: 0,
            max_forwards,
            answered: false,
            relaying: None,
            watchers: Vec::new(),
            a_sdp: Vec::new(),
            b_sdp: Vec::new(),
            phone_ack_pending: None,
            end_reason: None,
            moh: None,
            box_media: None,
        }
    }

    /// The dialog of one side, when that side is a SIP end.
    pub(super) fn leg(&self, side: Side) -> Option<&Leg> {
        match side {
            Side::A => self.a.leg(),
            Side::B => self.b.as_ref().and_then(End::leg),
        }
    }

    pub(super) fn leg_mut(&mut self, side: Side) -> Option<&mut Leg> {
        match side {
            Side::A => self.a.leg_mut(),
            Side::B => self.b.as_mut().and_then(End::leg_mut),
        }
    }

    /// The CTI device end of the call (at most one side is one).
    pub(super) fn cti(&self) -> Option<&CtiEnd> {
        self.a.cti().or_else(|| self.b.as_ref().and_then(End::cti))
    }

    pub(super) fn cti_mut(&mut self) -> Option<&mut CtiEnd> {
        match self.b.as_mut().and_then(End::cti_mut) {
            Some(e) => Some(e),
            None => self.a.cti_mut(),
        }
    }

    /// Takes the CTI device off the call, when `keep` is false for it: a called
    /// device leaves the B side unrouted, a calling one leaves no dialog behind.
    pub(super) fn take_cti_unless(&mut self, keep: impl Fn(&CtiEnd) -> bool) -> Option<CtiEnd> {
        if self.b.as_ref().and_then(End::cti).is_some_and(|e| !keep(e)) {
            return match self.b.take() {
                Some(End::CtiDevice(e)) => Some(e),
                _ => None,
            };
        }
        if self.a.cti().is_some_and(|e| !keep(e)) {
            return match std::mem::replace(&mut self.a, End::SipLeg(Leg::detached())) {
                End::CtiDevice(e) => Some(e),
                _ => None,
            };
        }
        None
    }

    pub(super) fn take_cti(&mut self) -> Option<CtiEnd> {
        self.take_cti_unless(|_| false)
    }

    /// The box's address toward the caller (unspecified when the caller is not a dialog).
    pub(super) fn a_local(&self) -> std::net::SocketAddr {
        self.a.leg().map_or(([0, 0, 0, 0], 0).into(), |l| l.peer.local)
    }
}
