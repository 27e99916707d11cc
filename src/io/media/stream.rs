//! One stream as the media thread holds it: its two sockets (RTP, RTCP on +1), the
//! slot bookkeeping of the runtime (relay partner, schedule and socket generations),
//! and the pure `Session` (`core::media::session`) that decides everything else:
//! what to send when, latching, receive statistics, digits, timeouts.

use crate::core::media::session::Session;
use crate::core::StreamId;
use std::net::UdpSocket;

pub struct Stream {
    pub id: StreamId,
    pub session: Session,
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
    pub local_port: u16,
    /// The slot of the stream this one is relayed with.
    pub relay: Option<usize>,
    /// Bumped whenever the send schedule is replaced; stale deadlines are skipped.
    pub tick_gen: u64,
    /// The generation the sockets were opened under (io_uring completions carry it,
    /// so one for a closed socket is not taken for its slot's next stream).
    pub io_gen: u64,
}
