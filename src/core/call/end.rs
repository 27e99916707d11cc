//! The ends of a call: what the caller (A) and the called party (B) are. A phone or a
//! trunk's far party is a SIP dialog; a CTI route point or port is an application's
//! device. Analog lines and built-in applications become new variants here, handled
//! in their own modules, not new flags on the call.

use super::cti::CtiEnd;
use super::leg::Leg;
use crate::core::registrar::Origin;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// One end of a call.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum End {
    /// A SIP dialog: a phone's line, or the far party over a trunk.
    SipLeg(Leg),
    /// A CTI route point or port: the application that has it open answers,
    /// redirects or drops the call, and it (or the box) terminates the media.
    CtiDevice(CtiEnd),
    /// An analog (FXS) port of the board. Not built yet: a line on one is refused
    /// with 480 where the dial plan reaches it, and nothing makes this end.
    AnalogLine { port: String },
    /// An application built into the box (voicemail, auto attendant, conference).
    /// Not built yet: nothing makes this end.
    BuiltInApp { app: String },
    /// A trunk's far party with trunk state of its own (registration, channel
    /// limits). Not built yet: calls over a trunk are `SipLeg`s today.
    Trunk { trunk: String },
}

impl End {
    /// The dialog of a SIP end.
    pub fn leg(&self) -> Option<&Leg> {
        match self {
            End::SipLeg(l) => Some(l),
            _ => None,
        }
    }

    pub fn leg_mut(&mut self) -> Option<&mut Leg> {
        match self {
            End::SipLeg(l) => Some(l),
            _ => None,
        }
    }

    /// The device end of a CTI device.
    pub fn cti(&self) -> Option<&CtiEnd> {
        match self {
            End::CtiDevice(e) => Some(e),
            _ => None,
        }
    }

    pub fn cti_mut(&mut self) -> Option<&mut CtiEnd> {
        match self {
            End::CtiDevice(e) => Some(e),
            _ => None,
        }
    }

    /// Whether this end is a confirmed dialog (2xx and ACK seen).
    pub fn confirmed(&self) -> bool {
        self.leg().is_some_and(|l| l.confirmed)
    }
}

impl Leg {
    /// No dialog: what an application's call keeps on its calling side once the
    /// application's device leaves it (redirected, or released while it rang).
    pub fn detached() -> Leg {
        let none: SocketAddr = ([0, 0, 0, 0], 0).into();
        Leg {
            call_id: String::new(),
            local: String::new(),
            remote: String::new(),
            local_tag: String::new(),
            remote_tag: None,
            target: String::new(),
            local_cseq: 0,
            remote_cseq: 0,
            peer: Origin { source: none, transport: crate::core::Transport::Udp, conn: None, local: none },
            confirmed: false,
        }
    }
}
