//! One call's state: its two ends, what the caller dialled, how it was routed, the
//! session descriptions of each side, and where it stands in its life (`CallState`:
//! what can happen to a call is read from its state, not from a set of flags).

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

/// Where a call stands. Its timers live in the call table keyed by call; each state
/// says which of them it keeps armed, and leaving the state disarms them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) enum CallState {
    /// No INVITE toward the B side is out: the dial plan and forwarding are being
    /// followed; or the call is offered to a CTI device (B is `End::CtiDevice`, timer
    /// `CtiAnswer`: answer leads to `Established`, redirect and the timeout route it
    /// again, drop fails it); or a click-to-dial is calling its phone (A) first.
    Routing,
    /// The B side's INVITE is out without a final answer (timer `NoAnswer` when the
    /// line forwards on no answer). Provisional answers go to the caller; a 2xx leads
    /// to `Established`; busy or no answer forward; another failure fails the call; a
    /// CANCEL from the caller leads to `Cancelling`, or ends the call once the INVITE
    /// has had a provisional answer (its CANCEL goes at once).
    Ringing(Invite),
    /// The caller cancelled before the B side's INVITE `invite` had a provisional
    /// answer: its CANCEL waits for one (RFC 3261 §9.1), and the call ends at that
    /// INVITE's final answer (a 2xx crossing the CANCEL is ACKed and hung up).
    Cancelling { invite: ClientTxn },
    /// Answered: in-dialog requests are relayed, or answered by the box for an end
    /// that terminates media itself. Hold, music on hold and the box's own media are
    /// its sub-state. BYE, a CTI drop or an RTP timeout end the call.
    Established(Established),
}

/// The INVITE toward the B side while it has no final answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Invite {
    pub(super) txn: ClientTxn,
    pub(super) request: Box<Request>,
    /// A provisional answer came (a CANCEL may be sent).
    pub(super) provisional: bool,
}

/// An answered call's sub-state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct Established {
    /// The 2xx to the caller, resent until its ACK (timer `Retransmit2xx`).
    pub(super) a_2xx: Option<Pending2xx>,
    /// The ACK sent for the B leg's 2xx, made again from the dialog if the 2xx is
    /// retransmitted (its CSeq number and branch: a few bytes, not the message).
    pub(super) b_ack: Option<AckOf>,
    /// Held with music on hold playing to one party.
    pub(super) moh: Option<super::moh::Moh>,
    /// The box's own media termination (CTI `"media": "box"`, `play`,
    /// `collect_digits`; timer `Digits` while collecting).
    pub(super) box_media: Option<Box<super::box_media::BoxMedia>>,
}

/// The ACK the box sent for a 2xx: what it takes to send the same ACK again.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct AckOf {
    pub(super) cseq: u32,
    pub(super) branch: compact_str::CompactString,
}

impl CallState {
    pub(super) fn is_established(&self) -> bool {
        matches!(self, CallState::Established(_))
    }

    pub(super) fn established_mut(&mut self) -> Option<&mut Established> {
        match self {
            CallState::Established(e) => Some(e),
            _ => None,
        }
    }

    /// The ACK for the B side's 2xx, to send again when the 2xx is.
    pub(super) fn b_ack(&self) -> Option<&AckOf> {
        match self {
            CallState::Established(e) => e.b_ack.as_ref(),
            _ => None,
        }
    }

    /// The B side's INVITE while the call rings.
    pub(super) fn ringing(&self) -> Option<&Invite> {
        match self {
            CallState::Ringing(i) => Some(i),
            _ => None,
        }
    }

    pub(super) fn moh(&self) -> Option<super::moh::Moh> {
        match self {
            CallState::Established(e) => e.moh,
            _ => None,
        }
    }

    pub(super) fn take_moh(&mut self) -> Option<super::moh::Moh> {
        self.established_mut().and_then(|e| e.moh.take())
    }

    pub(super) fn box_media(&self) -> Option<&super::box_media::BoxMedia> {
        match self {
            CallState::Established(e) => e.box_media.as_deref(),
            _ => None,
        }
    }

    pub(super) fn box_media_mut(&mut self) -> Option<&mut super::box_media::BoxMedia> {
        self.established_mut().and_then(|e| e.box_media.as_deref_mut())
    }

    /// Music on hold starts (only an answered call is held).
    pub(super) fn set_moh(&mut self, m: super::moh::Moh) {
        if let Some(e) = self.established_mut() {
            e.moh = Some(m);
        }
    }

    /// The box terminates the media (only of an answered call).
    pub(super) fn set_box_media(&mut self, b: super::box_media::BoxMedia) {
        if let Some(e) = self.established_mut() {
            e.box_media = Some(Box::new(b));
        }
    }

    pub(super) fn take_box_media(&mut self) -> Option<super::box_media::BoxMedia> {
        self.established_mut().and_then(|e| e.box_media.take()).map(|b| *b)
    }
}

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
    pub(super) a_invite: Option<(ServerTxn, Box<Request>)>,
    /// The called party, once the call is routed: the phone or trunk rung, or the CTI
    /// device the call is offered to.
    pub(super) b: Option<End>,
    /// Where the call stands, and what each state holds.
    pub(super) state: CallState,
    pub(super) caller_device: String,
    pub(super) caller_dn: String,
    pub(super) caller_display: Option<String>,
    pub(super) dialled: String,
    /// The line being rung now, and the lines already tried (loop protection).
    pub(super) ringing_line: Option<LineKey>,
    pub(super) visited: Vec<LineKey>,
    pub(super) hops: u8,
    pub(super) max_forwards: u8,
    /// A re-INVITE or other request relayed, or a re-INVITE of the box's own, not
    /// answered yet: one at a time, others get 491. It can be under way before the
    /// answer too (a request from the called party in its early dialog).
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
    /// Last request from either party (or the box's first look at the call): the
    /// idle probe's clock (idle.rs). Not replicated: a restored call starts afresh.
    #[serde(skip)]
    pub(super) last_activity: Option<Time>,
    /// Idle probes (OPTIONS) sent and not answered yet.
    #[serde(skip)]
    pub(super) probing: u8,
    /// The caller's INVITE, as `invites` knows it until its final answer: so that
    /// ending the call finds its entry there without a look at every other call's.
    #[serde(default)]
    pub(super) a_stx: Option<ServerTxn>,
}

/// The box answered the caller with a 2xx: over UDP it resends it (T1 doubling to T2)
/// until the ACK comes, for 64*T1 (RFC 3261 §13.3.1.4).
pub(super) fn start_2xx_retransmission(call: &mut Call, timers: &mut Timers<(u64, CallTimer)>, cx: &Ctx<'_>, message: Vec<u8>) {
    if call.a.leg().is_some_and(|a| a.peer.transport == crate::core::Transport::Udp) {
        let Some(e) = call.state.established_mut() else { return };
        e.a_2xx = Some(Pending2xx { message, interval: cx.t1(), give_up: cx.now + cx.t1() * 64 });
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
            state: CallState::Routing,
            caller_device: device.to_string(),
            caller_dn,
            caller_display,
            dialled: dialled.to_string(),
            ringing_line: None,
            visited: Vec::new(),
            hops: 0,
            max_forwards,
            relaying: None,
            watchers: Vec::new(),
            a_sdp: Vec::new(),
            b_sdp: Vec::new(),
            phone_ack_pending: None,
            end_reason: None,
            last_activity: None,
            probing: 0,
            a_stx: None,
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
