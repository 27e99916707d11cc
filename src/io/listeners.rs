//! Binds every listening socket the configuration names and runs their accept and
//! receive loops. SIP over UDP and TCP share one port; CTI and HTTP have their own
//! (the HTTP port, in http.rs, also carries CTI over WebSocket at /cti).

use super::driver::Event;
use super::framing;
use super::writer::{attach, next_conn_id, read_loop, spawn_conn, ConnSlot};
use crate::core::{CtiTransport, Input, Transport};
use crate::limits;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::{TcpListener, TcpSocket, UdpSocket};
use tokio::sync::mpsc;

/// The addresses to listen on (after command-line overrides).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenPlan {
    pub sip_udp: Option<SocketAddr>,
    pub sip_tcp: Option<SocketAddr>,
    pub cti: SocketAddr,
    pub http: SocketAddr,
}

/// Sockets bound and ready.
pub struct Bound {
    pub sip_udp: Option<Rc<UdpSocket>>,
    pub sip_tcp: Option<TcpListener>,
    pub cti: TcpListener,
    pub http: TcpListener,
}

impl Bound {
    pub fn addrs(&self) -> ListenPlan {
        ListenPlan {
            sip_udp: self.sip_udp.as_ref().and_then(|s| s.local_addr().ok()),
            sip_tcp: self.sip_tcp.as_ref().and_then(|s| s.local_addr().ok()),
            cti: self.cti.local_addr().expect("bound socket has an address"),
            http: self.http.local_addr().expect("bound socket has an address"),
        }
    }
}

fn tcp_listen(addr: SocketAddr, what: &str) -> Result<TcpListener, String> {
    let sock = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
        .map_err(|e| format!("{what}: cannot create socket: {e}"))?;
    sock.set_reuseaddr(true).map_err(|e| format!("{what}: {e}"))?;
    sock.bind(addr).map_err(|e| format!("cannot listen for {what} on tcp {addr}: {e}"))?;
    sock.listen(1024).map_err(|e| format!("cannot listen for {what} on tcp {addr}: {e}"))
}

fn udp_listen(a: SocketAddr) -> Result<Rc<UdpSocket>, String> {
    let std = std::net::UdpSocket::bind(a).map_err(|e| format!("cannot listen for SIP on udp {a}: {e}"))?;
    std.set_nonblocking(true).map_err(|e| e.to_string())?;
    // The default receive buffer (~200 KiB) holds a few milliseconds of a busy
    // box's datagrams: a short stall of the loop (another process on the core)
    // would drop requests and cost the phones retransmissions. The kernel caps
    // the request at net.core.rmem_max; a refusal only leaves the default.
    if let Err(e) = nix::sys::socket::setsockopt(&std, nix::sys::socket::sockopt::RcvBuf, &limits::SIP_UDP_RECV_BUFFER) {
        log::warn!("SIP udp: cannot enlarge the receive buffer: {e}");
    }
    Ok(Rc::new(UdpSocket::from_std(std).map_err(|e| e.to_string())?))
}

/// Tries for one port number free on both transports when both ask for port 0.
const SIP_ANY_PORT_TRIES: usize = 16;

/// Binds everything in `plan`. A SIP TCP port of 0 follows the UDP port, so both
/// transports share one number as phones expect; when both are 0 and the port the
/// kernel gave UDP is taken for TCP (an outgoing connection may hold it), another
/// is tried.
pub fn bind(plan: &ListenPlan) -> Result<Bound, String> {
    let (sip_udp, sip_tcp) = match (plan.sip_udp, plan.sip_tcp) {
        (Some(u), Some(t)) if u.port() == 0 && t.port() == 0 => {
            let mut tries = 0;
            loop {
                let udp = udp_listen(u)?;
                let mut a = t;
                a.set_port(udp.local_addr().map_err(|e| e.to_string())?.port());
                match tcp_listen(a, "SIP") {
                    Ok(tcp) => break (Some(udp), Some(tcp)),
                    Err(e) if tries + 1 < SIP_ANY_PORT_TRIES => {
                        log::debug!("{e}; trying another port");
                        tries += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        (u, t) => {
            let udp = u.map(udp_listen).transpose()?;
            let tcp = match t {
                Some(mut a) => {
                    if a.port() == 0 {
                        if let Some(p) = udp.as_ref().and_then(|s| s.local_addr().ok()) {
                            a.set_port(p.port());
                        }
                    }
                    Some(tcp_listen(a, "SIP")?)
                }
                None => None,
            };
            (udp, tcp)
        }
    };
    let cti = tcp_listen(plan.cti, "CTI")?;
    let http = tcp_listen(plan.http, "HTTP")?;
    Ok(Bound { sip_udp, sip_tcp, cti, http })
}

/// The SIP UDP socket's receiving side, read by the engine loop itself (no task and
/// no queue between them: the loop drains the socket, then sends what it caused).
/// On a wildcard address (0.0.0.0 or ::) each datagram's own destination address is
/// read with IP_PKTINFO, so the engine knows which of the box's addresses a phone
/// reached (its Via and Contact toward it).
pub struct UdpIn {
    sock: Rc<UdpSocket>,
    bound: SocketAddr,
    /// `RECV_BURST` buffers of `SIP_MAX_MESSAGE + 1` bytes, one after the other: one
    /// `recvmmsg` fills as many as there are datagrams queued.
    bufs: Vec<u8>,
    /// Per buffer: room for the receive timestamp and (on a wildcard bind)
    /// IP_PKTINFO, and the sender's address.
    cmsgs: Vec<[u8; CMSG_ROOM]>,
    names: Vec<nix::libc::sockaddr_storage>,
    /// What the last `recvmmsg` read and `try_recv` has not handed out yet, with how
    /// long each waited.
    ready: std::collections::VecDeque<(Received, std::time::Duration)>,
    /// How long the last datagram read waited in the socket (its kernel receive
    /// timestamp against the clock at the read): the load meter's input.
    pub waited: std::time::Duration,
}

/// Datagrams one `recvmmsg` may read.
const RECV_BURST: usize = 8;
/// Control-message room per datagram: an `in6_pktinfo` and a `timespec`, with headers.
const CMSG_ROOM: usize = 96;

/// What one read of the SIP UDP socket gave.
pub enum Received {
    Input(Input),
    /// Nothing for the engine (an oversized datagram, an ICMP error, no source).
    Skipped,
}

impl UdpIn {
    pub fn new(sock: Rc<UdpSocket>) -> Result<UdpIn, String> {
        use nix::sys::socket::{setsockopt, sockopt};
        let bound = sock.local_addr().map_err(|e| e.to_string())?;
        let wildcard = bound.ip().is_unspecified();
        if wildcard {
            let r = if bound.is_ipv4() {
                setsockopt(&*sock, sockopt::Ipv4PacketInfo, &true)
            } else {
                setsockopt(&*sock, sockopt::Ipv6RecvPacketInfo, &true)
            };
            r.map_err(|e| format!("SIP udp: cannot enable packet info: {e}"))?;
        }
        if let Err(e) = setsockopt(&*sock, sockopt::ReceiveTimestampns, &true) {
            // Some emulators (qemu-user) lack it: the load meter then sees no queueing
            // delay, only how long the socket takes to drain.
            log::warn!("SIP udp: no receive timestamps ({e}); the overload check goes by drain times alone");
        }
        debug_assert!(nix::cmsg_space!(nix::libc::in6_pktinfo, nix::libc::timespec).len() <= CMSG_ROOM);
        Ok(UdpIn {
            sock,
            bound,
            bufs: vec![0u8; RECV_BURST * (limits::SIP_MAX_MESSAGE + 1)],
            cmsgs: vec![[0u8; CMSG_ROOM]; RECV_BURST],
            // SAFETY: an all-zero sockaddr_storage is a valid (unspecified) address.
            names: vec![unsafe { std::mem::zeroed() }; RECV_BURST],
            ready: std::collections::VecDeque::with_capacity(RECV_BURST),
            waited: std::time::Duration::ZERO,
        })
    }

    /// Waits until a datagram may be there.
    pub async fn readable(&self) -> std::io::Result<()> {
        self.sock.readable().await
    }

    /// Reads one datagram without waiting: `Err(WouldBlock)` when none is queued,
    /// another `Err` when the socket is broken. Datagrams come off the socket in
    /// bursts of up to `RECV_BURST` (one `recvmmsg`), handed out one per call.
    pub fn try_recv(&mut self) -> std::io::Result<Received> {
        if self.ready.is_empty() {
            match self.read_burst() {
                Ok(()) => {}
                // ICMP port unreachable from an earlier send surfaces here on Linux; not fatal.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(Received::Skipped),
                Err(e) => return Err(e),
            }
        }
        match self.ready.pop_front() {
            Some((r, waited)) => {
                self.waited = waited;
                Ok(r)
            }
            None => Err(std::io::ErrorKind::WouldBlock.into()),
        }
    }

    /// One `recvmmsg` into the buffers; what it read goes to `ready`.
    fn read_burst(&mut self) -> std::io::Result<()> {
        use nix::libc;
        use std::os::fd::AsRawFd;
        const ROOM: usize = limits::SIP_MAX_MESSAGE + 1;
        let (sock, bufs, cmsgs, names) = (&self.sock, &mut self.bufs, &mut self.cmsgs, &mut self.names);
        let mut iovs: heapless::Vec<libc::iovec, RECV_BURST> = bufs
            .chunks_exact_mut(ROOM)
            .map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: ROOM })
            .collect();
        let mut hdrs: heapless::Vec<libc::mmsghdr, RECV_BURST> = iovs
            .iter_mut()
            .zip(cmsgs.iter_mut())
            .zip(names.iter_mut())
            .map(|((iov, c), name)| {
                // SAFETY: an all-zero mmsghdr is a valid empty one (it may have padding
                // fields, so it is not built field by field).
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_control = c.as_mut_ptr().cast();
                h.msg_hdr.msg_controllen = CMSG_ROOM as _;
                h
            })
            .collect();
        let n = sock.try_io(tokio::io::Interest::READABLE, || {
            // SAFETY: every header points at a buffer of `ROOM` bytes, a control area of
            // `CMSG_ROOM` bytes and an address (`bufs`, `cmsgs`, `names`, borrowed for
            // the call), and `hdrs.len()` headers are passed.
            let n = unsafe {
                libc::recvmmsg(sock.as_raw_fd(), hdrs.as_mut_ptr(), hdrs.len() as _, libc::MSG_DONTWAIT, std::ptr::null_mut())
            };
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        })?;
        // One clock reading for the burst: each datagram's wait is against it.
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME).ok();
        for (i, h) in hdrs.iter().enumerate().take(n) {
            let mut local = self.bound;
            let mut waited = std::time::Duration::ZERO;
            let m = &h.msg_hdr;
            // SAFETY: `m` is a header the kernel filled in: its control area is ours
            // and `msg_controllen` says how much of it holds messages; CMSG_FIRSTHDR
            // and CMSG_NXTHDR stay within it, and each data pointer is read unaligned
            // within its message.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(m);
                while !c.is_null() {
                    let data = libc::CMSG_DATA(c);
                    match ((*c).cmsg_level, (*c).cmsg_type) {
                        (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS) => {
                            let ts: libc::timespec = std::ptr::read_unaligned(data.cast());
                            if let Some(now) = now {
                                let d = now - nix::sys::time::TimeSpec::from(ts);
                                if d.tv_sec() >= 0 {
                                    waited = std::time::Duration::from(d);
                                }
                            }
                        }
                        (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                            let pi: libc::in_pktinfo = std::ptr::read_unaligned(data.cast());
                            local = SocketAddr::new(std::net::Ipv4Addr::from(u32::from_be(pi.ipi_addr.s_addr)).into(), self.bound.port());
                        }
                        (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                            let pi: libc::in6_pktinfo = std::ptr::read_unaligned(data.cast());
                            local = SocketAddr::new(std::net::Ipv6Addr::from(pi.ipi6_addr.s6_addr).into(), self.bound.port());
                        }
                        _ => {}
                    }
                    c = libc::CMSG_NXTHDR(m, c);
                }
            }
            let from = sockaddr_of(&self.names[i], m.msg_namelen);
            let len = h.msg_len as usize;
            let r = match from {
                None => Received::Skipped,
                Some(from) if len > limits::SIP_MAX_MESSAGE || m.msg_flags & libc::MSG_TRUNC != 0 => {
                    log::debug!("sip: datagram from {from} over {} bytes dropped", limits::SIP_MAX_MESSAGE);
                    Received::Skipped
                }
                Some(from) => {
                    let bytes = self.bufs[i * ROOM..i * ROOM + len].to_vec();
                    Received::Input(Input::Sip { transport: Transport::Udp, conn: None, from, local, bytes })
                }
            };
            self.ready.push_back((r, waited));
        }
        Ok(())
    }
}

/// The address the kernel wrote into `s` (`len` bytes of it), if it is IPv4 or IPv6.
fn sockaddr_of(s: &nix::libc::sockaddr_storage, len: nix::libc::socklen_t) -> Option<SocketAddr> {
    use nix::sys::socket::{SockaddrLike, SockaddrStorage};
    // SAFETY: `s` is a whole sockaddr_storage of which the kernel filled `len` bytes.
    let a = unsafe { SockaddrStorage::from_raw((s as *const nix::libc::sockaddr_storage).cast(), Some(len)) }?;
    a.as_sockaddr_in()
        .map(|v4| SocketAddr::from((v4.ip(), v4.port())))
        .or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::from((v6.ip(), v6.port()))))
}

/// Accepts SIP over TCP forever; each connection frames by Content-Length.
pub async fn sip_tcp_loop(listener: TcpListener, inbox: mpsc::Sender<Event>) -> Result<(), String> {
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let open = Rc::new(std::cell::Cell::new(0usize));
    loop {
        let (stream, from) = listener.accept().await.map_err(|e| format!("SIP tcp accept: {e}"))?;
        if open.get() >= limits::SIP_TCP_CONNECTIONS {
            log::warn!("sip: refusing tcp connection from {from}: {} open", open.get());
            continue;
        }
        let slot = ConnSlot::take(&open);
        let conn = next_conn_id();
        // The connection's own local address, not the (maybe wildcard) listener's.
        let local = stream.local_addr().unwrap_or(local);
        let Some(rd) = attach(stream, conn, &inbox).await else { return Err("engine inbox closed".into()) };
        let reader_inbox = inbox.clone();
        spawn_conn(Some(conn), inbox.clone(), async move {
            let _slot = slot;
            let deliver = |msg: &[u8]| {
                Some(Input::Sip { transport: Transport::Tcp, conn: Some(conn), from, local, bytes: msg.to_vec() })
            };
            read_loop(rd, conn, limits::SIP_TCP_BUFFER, framing::sip_frame, deliver, reader_inbox).await;
        });
    }
}

/// CTI connections open, TCP and WebSocket together (at most `CTI_CONNECTIONS`).
static CTI_OPEN: AtomicUsize = AtomicUsize::new(0);

/// One place among `CTI_CONNECTIONS`, given back on drop.
pub struct CtiSlot(());

impl CtiSlot {
    pub fn take() -> Option<CtiSlot> {
        CTI_OPEN
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < limits::CTI_CONNECTIONS).then_some(n + 1))
            .ok()
            .map(|_| CtiSlot(()))
    }
}

impl Drop for CtiSlot {
    fn drop(&mut self) {
        CTI_OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts CTI applications over TCP forever: one JSON message per line.
pub async fn cti_loop(listener: TcpListener, inbox: mpsc::Sender<Event>) -> Result<(), String> {
    loop {
        let (stream, peer) = listener.accept().await.map_err(|e| format!("CTI accept: {e}"))?;
        let Some(slot) = CtiSlot::take() else {
            log::warn!("cti: refusing connection from {peer}: {} open", limits::CTI_CONNECTIONS);
            continue;
        };
        let conn = next_conn_id();
        let Some(rd) = attach(stream, conn, &inbox).await else { return Err("engine inbox closed".into()) };
        let opened = Input::CtiOpened { conn, peer, transport: CtiTransport::Tcp };
        inbox.send(Event::Input(opened)).await.map_err(|_| "engine inbox closed".to_string())?;
        let reader_inbox = inbox.clone();
        spawn_conn(Some(conn), inbox.clone(), async move {
            let inbox = reader_inbox;
            let deliver = |line: &[u8]| {
                let text = String::from_utf8_lossy(line).trim_end_matches(['\r', '\n']).to_string();
                (!text.trim().is_empty()).then_some(Input::CtiMessage { conn, text })
            };
            let frame = |b: &[u8]| framing::line_frame(b, limits::CTI_MAX_LINE);
            read_loop(rd, conn, limits::CTI_MAX_LINE + 16 * 1024, frame, deliver, inbox).await;
            drop(slot);
        });
    }
}

pub use super::http::http_loop;

#[cfg(test)]
#[allow(clippy::disallowed_types)] // a real socket sends the datagrams: this is the shell's reader
mod tests {
    use super::*;

    /// More datagrams than one burst, of different sizes (one of them the largest an
    /// IPv4 datagram can carry): every one comes out whole, in order, with its sender
    /// and the address it reached, then WouldBlock.
    #[test]
    fn a_burst_of_datagrams_is_read_whole_and_in_order_across_recvmmsg_calls() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let sock = Rc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
            // Room for all of them at once, as the listener has (limits::SIP_UDP_RECV_BUFFER).
            nix::sys::socket::setsockopt(&*sock, nix::sys::socket::sockopt::RcvBuf, &limits::SIP_UDP_RECV_BUFFER).unwrap();
            let to = sock.local_addr().unwrap();
            let mut udp = UdpIn::new(sock.clone()).unwrap();
            let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let sizes: Vec<usize> = (0..3 * RECV_BURST + 1).map(|i| if i == 5 { 65_507 } else { 1 + i * 97 }).collect();
            for (i, n) in sizes.iter().enumerate() {
                let d: Vec<u8> = (0..*n).map(|j| (i + j) as u8).collect();
                tx.send_to(&d, to).unwrap();
            }
            let mut got = Vec::new();
            while got.len() < sizes.len() {
                udp.readable().await.unwrap();
                loop {
                    match udp.try_recv() {
                        Ok(Received::Input(Input::Sip { from, local, bytes, .. })) => {
                            assert_eq!((from, local), (tx.local_addr().unwrap(), to));
                            got.push(bytes);
                        }
                        Ok(Received::Skipped) => panic!("a datagram was skipped"),
                        Ok(Received::Input(other)) => panic!("{other:?}"),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            for (i, (n, b)) in sizes.iter().zip(&got).enumerate() {
                assert_eq!(b.len(), *n, "datagram {i}");
                assert!(b.iter().enumerate().all(|(j, x)| *x == (i + j) as u8), "datagram {i}'s bytes");
            }
            assert!(matches!(udp.try_recv(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock));
        });
    }
}
