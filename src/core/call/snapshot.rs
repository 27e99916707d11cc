//! Calls as replicated data: the projection of an established call that a standby
//! needs to carry it on (both dialogs with their CSeqs, tags, targets and peers; the
//! call's ends; music on hold and box media to re-create), taken and put back without
//! touching the B2BUA's handlers. Ringing calls and requests in flight are not stable
//! facts and are not projected (docs/ARCHITECTURE.md, "Engine state as serde data").

use super::b2bua::{B2bua, CallTimer};
use super::box_media::BoxMedia;
use super::cti::{CtiEnd, CtiState};
use super::end::End;
use super::leg::{Leg, Side};
use super::state::{Call, CallState, Established};
use super::moh::Moh;
use crate::config::LineKey;
use crate::core::registrar::{uri_addr, Origin};
use crate::core::sip::{Request, SipHeaders};
use crate::core::{MediaCmd, MediaSource, StreamId, Time, Transport};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Where a leg's peer is, without its connection: a restored engine has none, so a
/// peer reached over TCP is reached at its remote target's address (a new connection).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerSnapshot {
    pub source: SocketAddr,
    pub transport: Transport,
    /// The box's address this peer talks to (Via, Contact).
    pub local: SocketAddr,
}

/// One dialog of a call.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LegSnapshot {
    pub call_id: String,
    pub local: String,
    pub remote: String,
    pub local_tag: String,
    pub remote_tag: Option<String>,
    pub target: String,
    pub local_cseq: u32,
    pub remote_cseq: u32,
    pub peer: PeerSnapshot,
    pub confirmed: bool,
}

/// An established call.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CallSnapshot {
    pub id: u64,
    /// The caller's dialog (empty for a call an application placed).
    pub a: LegSnapshot,
    /// The called party's dialog (none for a call answered at a CTI device).
    pub b: Option<LegSnapshot>,
    pub caller_device: String,
    pub caller_dn: String,
    pub caller_display: Option<String>,
    pub dialled: String,
    pub visited: Vec<LineKey>,
    pub ringing_line: Option<LineKey>,
    pub hops: u8,
    pub a_sdp: Vec<u8>,
    pub b_sdp: Vec<u8>,
    /// Phones an application watches that take part in the call.
    pub watchers: Vec<String>,
    pub cti: Option<CtiEnd>,
    pub moh: Option<Moh>,
    pub box_media: Option<BoxMedia>,
    /// o= version of the session descriptions the box writes for this call.
    pub sdp_version: Option<u64>,
    /// A `collect_digits` timeout, as wall-clock milliseconds.
    pub digits_deadline_unix_ms: Option<u64>,
}

fn leg_snapshot(l: &Leg) -> LegSnapshot {
    // A TCP peer's source is the far end of a connection that will not exist on the
    // standby: a new connection goes to the remote target.
    let source = match l.peer.transport {
        Transport::Tcp if l.peer.conn.is_some() => uri_addr(&l.target).unwrap_or(l.peer.source),
        _ => l.peer.source,
    };
    LegSnapshot {
        call_id: l.call_id.clone(),
        local: l.local.clone(),
        remote: l.remote.clone(),
        local_tag: l.local_tag.clone(),
        remote_tag: l.remote_tag.clone(),
        target: l.target.clone(),
        local_cseq: l.local_cseq,
        remote_cseq: l.remote_cseq,
        peer: PeerSnapshot { source, transport: l.peer.transport, local: l.peer.local },
        confirmed: l.confirmed,
    }
}

fn leg_of(s: LegSnapshot) -> Leg {
    Leg {
        call_id: s.call_id,
        local: s.local,
        remote: s.remote,
        local_tag: s.local_tag,
        remote_tag: s.remote_tag,
        target: s.target,
        local_cseq: s.local_cseq,
        remote_cseq: s.remote_cseq,
        peer: Origin { source: s.peer.source, transport: s.peer.transport, conn: None, local: s.peer.local },
        confirmed: s.confirmed,
    }
}

/// Whether a call is a stable fact: answered and acknowledged, no INVITE of either
/// leg waiting for its answer, not offered to an application.
fn is_stable(c: &Call) -> bool {
    matches!(&c.state, CallState::Established(e) if e.a_2xx.is_none())
        && c.a_invite.is_none()
        && c.phone_ack_pending.is_none()
        && c.cti().is_none_or(|e| e.state != CtiState::Offered)
}

/// The dialogs of a call's ends as the snapshot keeps them: the caller's (empty when
/// an application placed the call: its device is the A end) and the called party's
/// (none when the call is at a CTI device).
fn legs_of(c: &Call) -> (Leg, Option<&Leg>) {
    (c.a.leg().cloned().unwrap_or_else(Leg::detached), c.b.as_ref().and_then(End::leg))
}

impl B2bua {
    /// The established call `id` as replicated data; `None` when there is no such
    /// call or it is not stable. `wall` turns engine time into wall-clock ms.
    pub fn stable_call(&self, id: u64, wall: &dyn Fn(Time) -> u64) -> Option<CallSnapshot> {
        let c = self.calls.get(&id).filter(|c| is_stable(c))?;
        // Box media still being moved to the box (its re-INVITE in flight) is not
        // a fact yet: the far end still sends to the application.
        let box_media = c.state.box_media().cloned().filter(|b| b.ready);
        let (a, b) = legs_of(c);
        Some(CallSnapshot {
            id,
            a: leg_snapshot(&a),
            b: b.map(leg_snapshot),
            caller_device: c.caller_device.clone(),
            caller_dn: c.caller_dn.clone(),
            caller_display: c.caller_display.clone(),
            dialled: c.dialled.clone(),
            visited: c.visited.clone(),
            ringing_line: c.ringing_line.clone(),
            hops: c.hops,
            a_sdp: c.a_sdp.clone(),
            b_sdp: c.b_sdp.clone(),
            watchers: c.watchers.clone(),
            cti: c.cti().cloned(),
            moh: c.state.moh(),
            digits_deadline_unix_ms: box_media.as_ref().and_then(|_| self.timers.deadline(&(id, CallTimer::Digits))).map(wall),
            box_media,
            sdp_version: self.sdp_versions.get(&id).copied(),
        })
    }

    /// Every established call, in id order.
    pub fn stable_calls(&self, wall: &dyn Fn(Time) -> u64) -> Vec<CallSnapshot> {
        self.calls.keys().filter_map(|id| self.stable_call(*id, wall)).collect()
    }

    /// The box's own media streams (music on hold, box media) of every call.
    pub fn stream_ids(&self) -> Vec<crate::core::StreamId> {
        self.streams.keys().copied().collect()
    }

    /// Ids of every call (for a full comparison against what was replicated).
    pub fn call_ids(&self) -> Vec<u64> {
        self.calls.keys().copied().collect()
    }

    /// The call a request inside a dialog belongs to.
    pub fn call_of_request(&self, req: &Request) -> Option<u64> {
        let call_id = req.call_id().ok()?;
        self.dialogs.get(&super::table::dialog_key(call_id, req.tag_of_to()?)).map(|(id, _)| *id)
    }

    /// The call a client transaction of the B2BUA belongs to.
    pub fn call_of_txn(&self, txn: super::ClientTxn) -> Option<u64> {
        self.client.get(&txn).map(|(id, _, _)| *id)
    }

    /// The call a box stream belongs to.
    pub fn call_of_stream(&self, stream: StreamId) -> Option<u64> {
        self.streams.get(&stream).copied()
    }

    /// Calls with a timer due at `now`.
    pub fn calls_due(&self, now: Time) -> Vec<u64> {
        self.timers.due(now).map(|(id, _)| *id).collect()
    }

    /// The counters new calls and streams are numbered from.
    pub fn next_ids(&self) -> (u64, u64) {
        (self.next_id, self.next_stream)
    }

    /// Numbers new calls and streams after `call` and `stream` (never reusing one).
    pub fn raise_next_ids(&mut self, call: u64, stream: u64) {
        self.next_id = self.next_id.max(call);
        self.next_stream = self.next_stream.max(stream);
    }

    /// Drops a call's state without a message or media command (a standby forgetting
    /// a call the primary ended or replaced).
    pub fn forget_call(&mut self, id: u64) {
        let Some(c) = self.calls.remove(&id) else { return };
        for l in [c.a.leg(), c.b.as_ref().and_then(End::leg)].into_iter().flatten() {
            self.dialogs.remove(&super::table::dialog_key(&l.call_id, &l.local_tag));
        }
        let moh = c.state.moh().map(|m| (m.port, Some(m.stream)));
        let bm = c.state.box_media().map(|b| (b.port, b.stream));
        for (port, stream) in moh.into_iter().chain(bm) {
            self.media_ports.remove(&port);
            if let Some(s) = stream {
                self.streams.remove(&s);
            }
        }
        self.sdp_versions.remove(&id);
        for t in [CallTimer::Retransmit2xx, CallTimer::NoAnswer, CallTimer::CtiAnswer, CallTimer::Digits] {
            self.timers.cancel(&(id, t));
        }
    }

    /// Puts an established call in place (replacing one of the same id). Returns the
    /// media commands that re-create its streams: music on hold, and box media with
    /// its source and digit detection. `at` maps a wall-clock ms deadline onto this
    /// engine's clock.
    pub fn restore_call(&mut self, s: CallSnapshot, at: &dyn Fn(u64) -> Time) -> Vec<MediaCmd> {
        let id = s.id;
        self.forget_call(id);
        let a = leg_of(s.a);
        let b = s.b.map(leg_of);
        if !a.call_id.is_empty() {
            self.dialogs.insert(super::table::dialog_key(&a.call_id, &a.local_tag), (id, Side::A));
        }
        if let Some(b) = &b {
            self.dialogs.insert(super::table::dialog_key(&b.call_id, &b.local_tag), (id, Side::B));
        }
        let mut cmds = Vec::new();
        if let Some(m) = &s.moh {
            self.media_ports.insert(m.port);
            self.streams.insert(m.stream, id);
            cmds.push(MediaCmd::Play { stream: m.stream, local_port: m.port, remote: m.remote, codec: m.codec, source: MediaSource::MusicOnHold });
        }
        if let Some(bm) = &s.box_media {
            self.media_ports.insert(bm.port);
            if let Some(stream) = bm.stream {
                self.streams.insert(stream, id);
                let source = bm.source.clone().unwrap_or(MediaSource::Silence);
                cmds.push(MediaCmd::Play { stream, local_port: bm.port, remote: bm.remote, codec: bm.codec, source });
                cmds.push(MediaCmd::CollectDigits { stream, dtmf_pt: bm.dtmf });
            }
            if let Some(ms) = s.digits_deadline_unix_ms {
                self.timers.arm((id, CallTimer::Digits), at(ms));
            }
        }
        if let Some(v) = s.sdp_version {
            self.sdp_versions.insert(id, v);
        }
        let max_stream = s.moh.map(|m| m.stream.0).into_iter().chain(s.box_media.as_ref().and_then(|b| b.stream).map(|x| x.0)).max().unwrap_or(0);
        self.raise_next_ids(id, max_stream);
        // The device is the A end of a call an application placed, else the B end.
        let (a, b) = match s.cti {
            Some(e) if e.outgoing => (End::CtiDevice(e), b.map(End::SipLeg)),
            Some(e) => (End::SipLeg(a), Some(End::CtiDevice(e))),
            None => (End::SipLeg(a), b.map(End::SipLeg)),
        };
        let call = Call {
            id,
            a,
            a_invite: None,
            b,
            state: CallState::Established(Established { a_2xx: None, b_ack: None, moh: s.moh, box_media: s.box_media.map(Box::new) }),
            caller_device: s.caller_device,
            caller_dn: s.caller_dn,
            caller_display: s.caller_display,
            dialled: s.dialled,
            ringing_line: s.ringing_line,
            visited: s.visited,
            hops: s.hops,
            max_forwards: 70,
            relaying: None,
            watchers: s.watchers,
            a_sdp: s.a_sdp,
            b_sdp: s.b_sdp,
            phone_ack_pending: None,
            end_reason: None,
            last_activity: None,
            probing: 0,
            a_stx: None,
        };
        self.calls.insert(id, Box::new(call));
        cmds
    }
}
