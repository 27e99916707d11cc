//! Music on hold. When one party holds the other (a re-INVITE whose offer is sendonly
//! or inactive), the box does not pass the hold on: it re-INVITEs the held party
//! toward an RTP port of its own and has the media path play music there, and answers
//! the holder itself. When the holder resumes, its offer is relayed as usual, so media
//! flows phone to phone again, and the music stops. Part of the B2BUA.

use super::table::{branch, Action, B2bua, ClientTxn, Ctx, Purpose, ServerTxn};
use super::end::End;
use super::leg::{self, Side};
use crate::config::Codec;
use crate::core::sdp::{self, Direction};
use crate::core::sip::{Method, Request, Response};
use crate::core::{MediaCmd, MediaSource, StreamId};
use serde::{Deserialize, Serialize};

/// Music playing to a held party.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Moh {
    pub stream: StreamId,
    pub port: u16,
    /// The side that hears it.
    pub held: Side,
    /// Where the music goes and in which codec (to re-create the stream on restore).
    pub remote: std::net::SocketAddr,
    pub codec: Codec,
}

/// A music-on-hold re-INVITE on its way: the holder's transaction to answer, and the
/// stream it will start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MohPending {
    pub stx: ServerTxn,
    pub port: u16,
    pub stream: StreamId,
    pub codec: Codec,
}

/// Whether an offer puts the other party on hold.
pub fn is_hold_offer(body: &[u8]) -> bool {
    sdp::parse_audio(body).is_some_and(|a| matches!(a.direction, Direction::SendOnly | Direction::Inactive) || a.ip.is_unspecified())
}

impl B2bua {
    /// A free even RTP port from `[media]`'s range.
    pub(super) fn allocate_port(&mut self, cx: &Ctx<'_>) -> Option<u16> {
        self.book_port(cx.cfg)
    }

    /// Books an even RTP port of `[media]`'s range for a media end outside the call
    /// table (an analog port's call); `free_port` gives it back.
    pub fn book_port(&mut self, cfg: &crate::config::Config) -> Option<u16> {
        let (lo, hi) = (cfg.media.rtp_port_min, cfg.media.rtp_port_max);
        let mut p = lo + (lo % 2);
        while p < hi {
            if !self.media_ports.contains(&p) {
                self.media_ports.insert(p);
                return Some(p);
            }
            // At the top of the port space the next even port does not exist.
            p = p.checked_add(2)?;
        }
        None
    }

    pub fn free_port(&mut self, port: u16) {
        self.media_ports.remove(&port);
    }

    /// `holder` put the other party on hold with `req` (its server transaction `stx`).
    /// Returns false when music cannot be played (the hold is then relayed as usual).
    pub(super) fn moh_hold(&mut self, cx: &mut Ctx<'_>, id: u64, holder: Side, stx: ServerTxn, req: &Request) -> bool {
        let Some(call) = self.calls.get(&id) else { return false };
        // Only an answered call is held (a request in an early dialog is relayed).
        if !call.state.is_established() || call.state.moh().is_some() || call.cti().is_some() {
            return false;
        }
        let held_sdp = if holder == Side::A { call.b_sdp.clone() } else { call.a_sdp.clone() };
        let Some(held_audio) = sdp::parse_audio(&held_sdp) else { return false };
        let Some(codec) = sdp::choose_codec(&held_audio, &[Codec::Pcmu, Codec::Pcma]) else { return false };
        let Some(port) = self.allocate_port(cx) else {
            log::warn!("call {id}: no free RTP port for music on hold");
            return false;
        };
        self.next_stream += 1;
        let stream = StreamId(self.next_stream);
        let call = self.calls.get_mut(&id).expect("checked");
        let held_leg = if holder == Side::A { call.b.as_mut().and_then(End::leg_mut) } else { call.a.leg_mut() };
        let Some(held_leg) = held_leg.filter(|l| l.confirmed) else {
            self.media_ports.remove(&port);
            return false;
        };
        let Some(mut reinvite) = held_leg.request(Method::Invite, &branch(cx.rng)) else {
            self.media_ports.remove(&port);
            return false;
        };
        let user = if holder == Side::A { call.caller_dn.clone() } else { call.dialled.clone() };
        leg::set_contact(&mut reinvite.headers, held_leg.contact(&user));
        let local_ip = held_leg.peer.local.ip();
        held_leg_sdp_version_bump(&mut self.sdp_versions, id);
        let version = self.sdp_versions.get(&id).copied().unwrap_or(1);
        reinvite.set_body("application/sdp", sdp::body(local_ip, port, codec, None, Direction::SendOnly, id, version));
        let to = held_leg.peer;
        let txn = ClientTxn(cx.rng.next_u64());
        call.relaying = Some(txn);
        self.client.insert(txn, (id, holder.other(), Purpose::MohHold(MohPending { stx, port, stream, codec })));
        self.pending_requests.insert(stx, req.clone());
        self.out.push(Action::Request { txn, request: reinvite, to });
        log::info!("call {id}: {} holds; music on hold to the other party", if holder == Side::A { "caller" } else { "called party" });
        true
    }

    /// The held party answered the box's music-on-hold re-INVITE.
    pub(super) fn moh_answered(&mut self, cx: &mut Ctx<'_>, id: u64, held: Side, p: MohPending, resp: &Response) {
        let MohPending { stx, port, stream, codec } = p;
        let orig = self.pending_requests.remove(&stx);
        let Some(call) = self.calls.get_mut(&id) else {
            self.media_ports.remove(&port);
            return;
        };
        call.relaying = None;
        let held_leg = if held == Side::A { call.a.leg_mut() } else { call.b.as_mut().and_then(End::leg_mut) };
        let ok = (200..300).contains(&resp.status);
        if ok {
            if let Some(l) = held_leg {
                if let Some(ack) = l.ack_for(resp, &branch(cx.rng)) {
                    self.out.push(Action::Stateless { message: ack.to_bytes(), to: l.peer });
                }
            }
        }
        let remote = sdp::parse_audio(&resp.body).map(|a| std::net::SocketAddr::new(a.ip, a.port));
        let Some(orig) = orig else { return };
        let holder_leg = if held == Side::A { call.b.as_ref().and_then(End::leg) } else { call.a.leg() };
        let Some(holder_leg) = holder_leg else { return };
        match (ok, remote) {
            (true, Some(remote)) => {
                // Answer the holder with the held party's session, now receive-only.
                let held_sdp = if held == Side::B { call.b_sdp.clone() } else { call.a_sdp.clone() };
                let mut r = Response::to_request(&orig, 200, Some(&holder_leg.local_tag));
                let user = if held == Side::B { call.dialled.clone() } else { call.caller_dn.clone() };
                leg::set_contact(&mut r.headers, holder_leg.contact(&user));
                r.set_body("application/sdp", sdp::with_direction(&held_sdp, Direction::RecvOnly));
                call.state.set_moh(Moh { stream, port, held, remote, codec });
                self.streams.insert(stream, id);
                self.out.push(Action::Respond(stx, r));
                self.out.push(Action::Media(MediaCmd::Play { stream, local_port: port, remote, codec, source: MediaSource::MusicOnHold }));
            }
            _ => {
                self.media_ports.remove(&port);
                let code = if ok { 488 } else { resp.status };
                let r = Response::to_request(&orig, code, Some(&holder_leg.local_tag));
                self.out.push(Action::Respond(stx, r));
            }
        }
    }

    /// Stops the music of a call (resumed, or ended).
    pub(super) fn moh_stop(&mut self, id: u64) {
        let Some(m) = self.calls.get_mut(&id).and_then(|c| c.state.take_moh()) else { return };
        self.media_ports.remove(&m.port);
        self.streams.remove(&m.stream);
        self.out.push(Action::Media(MediaCmd::Stop { stream: m.stream }));
        log::info!("call {id}: music on hold stopped");
    }
}

fn held_leg_sdp_version_bump(versions: &mut std::collections::HashMap<u64, u64>, id: u64) {
    *versions.entry(id).or_insert(1) += 1;
}
