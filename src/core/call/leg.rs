//! One SIP dialog of a call, as the box sees it: identifiers, the remote target, CSeq
//! counters, and where to send. Builds in-dialog requests (RFC 3261 §12.2.1.1).

use crate::core::registrar::Origin;
use crate::core::sip::text::AddrText;
use crate::core::sip::{HeaderName, Method, Request, Uri};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    /// The caller's dialog: the box answered its INVITE.
    A,
    /// The called party's dialog: the box sent the INVITE.
    B,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Leg {
    pub call_id: String,
    /// Our side's name-addr (with our tag) as it appears in From/To.
    pub local: String,
    /// The peer's name-addr (with its tag once known).
    pub remote: String,
    pub local_tag: String,
    pub remote_tag: Option<String>,
    /// Where in-dialog requests go (the peer's Contact).
    pub target: String,
    pub local_cseq: u32,
    pub remote_cseq: u32,
    /// Where the peer is, and the box's address it reaches (Via, Contact).
    pub peer: Origin,
    /// Confirmed (2xx and ACK seen).
    pub confirmed: bool,
}

impl Leg {
    /// A new in-dialog request toward the peer (BYE, re-INVITE, ...).
    pub fn request(&mut self, method: Method, branch: &str) -> Option<Request> {
        if method != Method::Ack && method != Method::Cancel {
            self.local_cseq += 1;
        }
        let uri = Uri::parse(&self.target)?;
        Some(Request::new(
            method,
            uri,
            &via(self.peer.local, self.tcp(), branch),
            &self.local,
            &self.remote,
            &self.call_id,
            self.local_cseq,
            70,
        ))
    }

    pub fn tcp(&self) -> bool {
        self.peer.transport == crate::core::Transport::Tcp
    }

    /// ACK for a 2xx to the INVITE with CSeq number `cseq` (RFC 3261 §13.2.2.4: a new
    /// transaction-less request with the INVITE's CSeq number).
    pub fn ack(&mut self, cseq: u32, branch: &str) -> Option<Request> {
        let mut ack = self.request(Method::Ack, branch)?;
        ack.headers.set(HeaderName::CSeq, format!("{cseq} ACK"));
        Some(ack)
    }

    /// ACK for the 2xx `resp` (its CSeq number, else our last).
    pub fn ack_for(&mut self, resp: &crate::core::sip::Response, branch: &str) -> Option<Request> {
        use crate::core::sip::SipHeaders;
        let cseq = resp.cseq().map(|c| c.seq).unwrap_or(self.local_cseq);
        self.ack(cseq, branch)
    }

    /// The Contact the box gives this peer.
    pub fn contact(&self, user: &str) -> String {
        contact(user, self.peer.local, self.tcp())
    }
}

pub fn via(local: SocketAddr, tcp: bool, branch: &str) -> String {
    let local = AddrText::socket(local);
    let mut v = String::with_capacity(40 + branch.len());
    v.push_str(if tcp { "SIP/2.0/TCP " } else { "SIP/2.0/UDP " });
    v.push_str(local.as_str());
    v.push_str(";branch=");
    v.push_str(branch);
    v.push_str(";rport");
    v
}

pub fn contact(user: &str, local: SocketAddr, tcp: bool) -> String {
    let local = AddrText::socket(local);
    let mut v = String::with_capacity(24 + user.len() + local.as_str().len());
    v.push_str("<sip:");
    v.push_str(user);
    v.push('@');
    v.push_str(local.as_str());
    v.push_str(if tcp { ";transport=tcp>" } else { ">" });
    v
}

/// Adds `Contact` to a message's headers before Content-Length.
pub fn set_contact(headers: &mut crate::core::sip::Headers, value: String) {
    headers.remove(&HeaderName::Contact);
    headers.add(HeaderName::Contact, value);
}
