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
    buf: Vec<u8>,
    /// Room for the receive timestamp and (on a wildcard bind) IP_PKTINFO, kept
    /// between reads.
    cmsg: Vec<u8>,
    /// How long the last datagram read waited in the socket (its kernel receive
    /// timestamp against the clock at the read): the load meter's input.
    pub waited: std::time::Duration,
}

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
        setsockopt(&*sock, sockopt::ReceiveTimestampns, &true).map_err(|e| format!("SIP udp: cannot enable receive timestamps: {e}"))?;
        let cmsg = nix::cmsg_space!(nix::libc::in6_pktinfo, nix::libc::timespec);
        Ok(UdpIn { sock, bound, buf: vec![0u8; limits::SIP_MAX_MESSAGE + 1], cmsg, waited: std::time::Duration::ZERO })
    }

    /// Waits until a datagram may be there.
    pub async fn readable(&self) -> std::io::Result<()> {
        self.sock.readable().await
    }

    /// Reads one datagram without waiting: `Err(WouldBlock)` when none is queued,
    /// another `Err` when the socket is broken.
    pub fn try_recv(&mut self) -> std::io::Result<Received> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
        use std::io::IoSliceMut;
        use std::os::fd::AsRawFd;
        let (sock, bound, buf, cmsg, waited) = (&self.sock, self.bound, &mut self.buf, &mut self.cmsg, &mut self.waited);
        let got = sock.try_io(tokio::io::Interest::READABLE, || {
            let fd = sock.as_raw_fd();
            let mut iov = [IoSliceMut::new(buf)];
            let msg = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(cmsg), MsgFlags::MSG_DONTWAIT)
                .map_err(std::io::Error::from)?;
            let mut local = bound;
            *waited = std::time::Duration::ZERO;
            for c in msg.cmsgs().into_iter().flatten() {
                match c {
                    ControlMessageOwned::ScmTimestampns(ts) => {
                        if let Ok(now) = nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME) {
                            let d = now - ts;
                            if d.tv_sec() >= 0 {
                                *waited = std::time::Duration::from(d);
                            }
                        }
                    }
                    ControlMessageOwned::Ipv4PacketInfo(pi) => {
                        let ip = std::net::Ipv4Addr::from(u32::from_be(pi.ipi_addr.s_addr));
                        local = SocketAddr::new(ip.into(), bound.port());
                    }
                    ControlMessageOwned::Ipv6PacketInfo(pi) => {
                        let ip = std::net::Ipv6Addr::from(pi.ipi6_addr.s6_addr);
                        local = SocketAddr::new(ip.into(), bound.port());
                    }
                    _ => {}
                }
            }
            let from = msg.address.and_then(|a: SockaddrStorage| {
                a.as_sockaddr_in().map(|v4| SocketAddr::from((v4.ip(), v4.port())))
                    .or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::from((v6.ip(), v6.port()))))
            });
            Ok((msg.bytes, from, local))
        });
        let (n, from, local) = match got {
            Ok((n, Some(from), local)) => (n, from, local),
            Ok((_, None, _)) => return Ok(Received::Skipped),
            // ICMP port unreachable from an earlier send surfaces here on Linux; not fatal.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(Received::Skipped),
            Err(e) => return Err(e),
        };
        if n > limits::SIP_MAX_MESSAGE {
            log::debug!("sip: datagram from {from} over {} bytes dropped", limits::SIP_MAX_MESSAGE);
            return Ok(Received::Skipped);
        }
        let bytes = self.buf[..n].to_vec();
        Ok(Received::Input(Input::Sip { transport: Transport::Udp, conn: None, from, local, bytes }))
    }
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
