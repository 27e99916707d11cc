//! The network side of the peer-pair failover: take over and give back the shared
//! address (rtnetlink RTM_NEWADDR and RTM_DELADDR), announce it (a gratuitous ARP or
//! an unsolicited neighbour advertisement), and ping the witness (one ICMP echo).
//! Linux only. The bytes on the wire come from the pure `crate::codec::icmp`; the
//! netlink messages are built and their acks parsed by the pure functions below.
//!
//! Everything here acts in the network namespace of the calling thread: sockets are
//! created in it, and interfaces and addresses are read over netlink
//! (`getifaddrs`), not from /sys, which shows the namespace that mounted it.

use crate::codec::icmp;
use nix::libc;
use nix::sys::socket::{
    bind, recvfrom, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
    SockType, SockaddrIn, SockaddrIn6, SockaddrStorage,
};
use nix::sys::time::{TimeVal, TimeValLike};
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

// Netlink and rtnetlink constants (linux/netlink.h, linux/rtnetlink.h, linux/if_addr.h).
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const RTA_HDRLEN: usize = 4;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
const IFA_F_NODAD: u32 = 0x02;
const RT_SCOPE_UNIVERSE: u8 = 0;

/// How long a netlink request waits for the kernel's ack.
const NETLINK_ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// Datagrams read while looking for the ack before giving up (our socket joins no
/// multicast group, so only the ack is expected).
const NETLINK_MAX_READS: usize = 16;
/// Receive buffer for netlink acks (an error ack echoes our small request).
const NETLINK_BUF: usize = 8192;
/// Receive buffer for ICMP: larger packets are truncated and then do not match.
const ICMP_BUF: usize = 2048;
/// The payload of the witness echo request.
const PING_PAYLOAD: &[u8] = b"ctibox pair ping";

/// The index of interface `name` (`if_nametoindex(3)`); ENODEV if there is none.
pub fn ifindex(name: &str) -> io::Result<u32> {
    Ok(nix::net::if_::if_nametoindex(name)?)
}

/// Adds `addr/prefix` to interface `ifname` (RTM_NEWADDR with NLM_F_CREATE and
/// NLM_F_REPLACE). An IPv6 address is added with IFA_F_NODAD, so it is usable at once
/// rather than tentative. Adding an address that is already there is not an error.
/// Needs CAP_NET_ADMIN.
pub fn add_address(ifname: &str, addr: IpAddr, prefix: u8) -> io::Result<()> {
    check_prefix(addr, prefix)?;
    let index = ifindex(ifname)?;
    let seq = next_netlink_seq();
    match netlink_request(&address_message(AddrOp::Add, seq, index, addr, prefix), seq)? {
        Ok(()) => Ok(()),
        Err(libc::EEXIST) => Ok(()),
        Err(errno) => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// Removes `addr/prefix` from interface `ifname` (RTM_DELADDR). True if it was there,
/// false if the interface has no such address (EADDRNOTAVAIL: an IPv4 address added
/// with another prefix length counts as not there). Needs CAP_NET_ADMIN.
pub fn remove_address(ifname: &str, addr: IpAddr, prefix: u8) -> io::Result<bool> {
    check_prefix(addr, prefix)?;
    let index = ifindex(ifname)?;
    let seq = next_netlink_seq();
    match netlink_request(&address_message(AddrOp::Remove, seq, index, addr, prefix), seq)? {
        Ok(()) => Ok(true),
        Err(libc::EADDRNOTAVAIL) => Ok(false),
        Err(errno) => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// Whether interface `ifname` has address `addr` (any prefix length; an IPv6 address
/// still tentative counts). ENODEV if there is no such interface.
pub fn has_address(ifname: &str, addr: IpAddr) -> io::Result<bool> {
    ifindex(ifname)?;
    Ok(nix::ifaddrs::getifaddrs()?
        .any(|a| a.interface_name == ifname && a.address.as_ref().and_then(ip_of) == Some(addr)))
}

/// The Ethernet address of interface `ifname`. NotFound if it has no 6-byte
/// link-layer address.
pub fn mac_of(ifname: &str) -> io::Result<[u8; 6]> {
    ifindex(ifname)?;
    nix::ifaddrs::getifaddrs()?
        .filter(|a| a.interface_name == ifname)
        .find_map(|a| a.address.as_ref()?.as_link_addr().filter(|l| l.halen() == 6)?.addr())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{ifname}: no Ethernet address")))
}

/// Announces that `addr` is now at this box's interface `ifname`, so neighbours
/// update their caches: for IPv4 one gratuitous ARP request broadcast on the link
/// (AF_PACKET, SOCK_DGRAM, ETH_P_ARP), for IPv6 one unsolicited neighbour
/// advertisement with the override flag to ff02::1, hop limit 255, from `addr`
/// (which must already be on the interface). Needs CAP_NET_RAW.
pub fn announce(ifname: &str, addr: IpAddr) -> io::Result<()> {
    let index = ifindex(ifname)?;
    let mac = mac_of(ifname)?;
    match addr {
        IpAddr::V4(ip) => send_arp(index, &icmp::garp_v4(mac, ip)),
        IpAddr::V6(ip) => send_na(index, ip, &icmp::unsolicited_na_v6(mac, ip)),
    }
}

/// The kind of ICMP socket a ping goes out on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpSocket {
    /// SOCK_RAW: needs CAP_NET_RAW; sees every ICMP packet the host receives.
    Raw,
    /// SOCK_DGRAM ICMP ("ping socket"): needs the group in net.ipv4.ping_group_range;
    /// the kernel picks the identifier and delivers only the replies that carry it.
    Datagram,
}

/// Pings `witness` once: true iff its matching echo reply arrived within `timeout`.
/// Uses a raw ICMP socket if permitted, else an ICMP datagram socket; if neither can
/// be opened it logs a warning (once per process) and returns false. Must be called
/// within a tokio runtime with IO and time enabled.
pub async fn ping(witness: IpAddr, timeout: Duration) -> bool {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let fd = match open_icmp(IcmpSocket::Raw, witness) {
        Ok(fd) => Ok((IcmpSocket::Raw, fd)),
        Err(raw) => match open_icmp(IcmpSocket::Datagram, witness) {
            Ok(fd) => Ok((IcmpSocket::Datagram, fd)),
            Err(dgram) => Err((raw, dgram)),
        },
    };
    match fd {
        Ok((kind, fd)) => echo(kind, fd, witness, timeout).await,
        Err((raw, dgram)) => {
            if !WARNED.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "pair: no ICMP socket for pinging the witness (raw: {raw}; datagram: {dgram}); every ping fails \
                     (it needs CAP_NET_RAW, or the group in net.ipv4.ping_group_range)"
                );
            }
            false
        }
    }
}

/// Pings `witness` once over the given kind of socket, as [`ping`] does: Ok(true)
/// iff the matching reply arrived within `timeout`; Err if the socket cannot be
/// opened.
pub async fn ping_over(kind: IcmpSocket, witness: IpAddr, timeout: Duration) -> io::Result<bool> {
    let fd = open_icmp(kind, witness)?;
    Ok(echo(kind, fd, witness, timeout).await)
}

/// A non-blocking ICMP (or ICMPv6, after the witness's family) socket.
fn open_icmp(kind: IcmpSocket, witness: IpAddr) -> io::Result<OwnedFd> {
    let (family, protocol) = match witness {
        IpAddr::V4(_) => (AddressFamily::Inet, SockProtocol::Icmp),
        IpAddr::V6(_) => (AddressFamily::Inet6, SockProtocol::IcmpV6),
    };
    let ty = match kind {
        IcmpSocket::Raw => SockType::Raw,
        IcmpSocket::Datagram => SockType::Datagram,
    };
    Ok(socket(family, ty, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, protocol)?)
}

/// The identifier and sequence number of the next echo request. The sequence counts
/// up; the identifier is the process id's low bits, moved on each time the sequence
/// wraps, so a pair does not repeat within 2^32 pings.
fn next_echo_ids() -> (u16, u16) {
    static PINGS: AtomicU32 = AtomicU32::new(0);
    let n = PINGS.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let id = (pid as u16 ^ (pid >> 16) as u16).wrapping_add((n >> 16) as u16);
    (id, n as u16)
}

/// Sends one echo request on `fd` and waits up to `timeout` for its reply from
/// `witness`, ignoring every other packet. A send or receive error is a failed ping.
async fn echo(kind: IcmpSocket, fd: OwnedFd, witness: IpAddr, timeout: Duration) -> bool {
    let (id, seq) = next_echo_ids();
    // SAFETY: the AsyncFd owns the OwnedFd, whose descriptor stays open and the same
    // until the AsyncFd is dropped.
    let fd = match unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
        Ok(fd) => fd,
        Err(e) => {
            log::debug!("pair: ping {witness}: {e}");
            return false;
        }
    };
    let sent = match witness {
        IpAddr::V4(ip) => {
            let to = SockaddrIn::from(SocketAddrV4::new(ip, 0));
            sendto(fd.as_raw_fd(), &icmp::echo_request_v4(id, seq, PING_PAYLOAD), &to, MsgFlags::empty())
        }
        IpAddr::V6(ip) => {
            let to = SockaddrIn6::from(SocketAddrV6::new(ip, 0, 0, 0));
            sendto(fd.as_raw_fd(), &icmp::echo_request_v6(id, seq, PING_PAYLOAD), &to, MsgFlags::empty())
        }
    };
    if let Err(e) = sent {
        log::debug!("pair: ping {witness}: send: {e}");
        return false;
    }
    let matches = |packet: &[u8]| match (kind, witness) {
        (IcmpSocket::Raw, IpAddr::V4(_)) => icmp::is_echo_reply_v4(packet, id, seq),
        (IcmpSocket::Raw, IpAddr::V6(_)) => icmp::is_echo_reply_v6(packet, id, seq),
        (IcmpSocket::Datagram, IpAddr::V4(_)) => icmp::is_echo_reply_dgram_v4(packet, seq),
        (IcmpSocket::Datagram, IpAddr::V6(_)) => icmp::is_echo_reply_dgram_v6(packet, seq),
    };
    let mut buf = vec![0u8; ICMP_BUF];
    let reply = async {
        loop {
            let (n, from) = fd
                .async_io(Interest::READABLE, |fd| Ok(recvfrom::<SockaddrStorage>(fd.as_raw_fd(), &mut buf)?))
                .await?;
            let packet = buf.get(..n).unwrap_or(&buf);
            if from.as_ref().and_then(ip_of) == Some(witness) && matches(packet) {
                return io::Result::Ok(());
            }
        }
    };
    match tokio::time::timeout(timeout, reply).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            log::debug!("pair: ping {witness}: receive: {e}");
            false
        }
        Err(_elapsed) => false,
    }
}

/// The IP address in `a`, if it is an IPv4 or IPv6 socket address.
fn ip_of(a: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        Some(IpAddr::V4(v4.ip()))
    } else {
        a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
    }
}

/// Broadcasts the ARP payload `arp` on interface `index` (AF_PACKET, SOCK_DGRAM: the
/// kernel adds the Ethernet header).
fn send_arp(index: u32, arp: &[u8]) -> io::Result<()> {
    let protocol = (libc::ETH_P_ARP as u16).to_be();
    // SAFETY: socket(2) takes no pointers; a non-negative result is a new descriptor
    // that the OwnedFd then owns alone.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, i32::from(protocol)) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let to = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: protocol,
        sll_ifindex: i32::try_from(index).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0],
    };
    // SAFETY: `arp` and `to` are valid for the lengths passed and outlive the call.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            arp.as_ptr().cast(),
            arp.len(),
            0,
            (&raw const to).cast::<libc::sockaddr>(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    match usize::try_from(n) {
        Ok(n) if n == arp.len() => Ok(()),
        Ok(n) => Err(io::Error::other(format!("ARP: sent {n} of {} bytes", arp.len()))),
        Err(_) => Err(io::Error::last_os_error()),
    }
}

/// Sends the neighbour advertisement `na` from `source` to ff02::1 on interface
/// `index` (raw ICMPv6: the kernel fills in the checksum), hop limit 255 as RFC 4861
/// requires of neighbour discovery.
fn send_na(index: u32, source: Ipv6Addr, na: &[u8]) -> io::Result<()> {
    let fd = socket(AddressFamily::Inet6, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::IcmpV6)?;
    setsockopt(&fd, sockopt::Ipv6MulticastHops, &255)?;
    let ifindex = libc::c_int::try_from(index).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?;
    // SAFETY: the option value is a c_int that lives across the call, its size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_MULTICAST_IF,
            (&raw const ifindex).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let scope = if source.is_unicast_link_local() { index } else { 0 };
    bind(fd.as_raw_fd(), &SockaddrIn6::from(SocketAddrV6::new(source, 0, 0, scope)))?;
    let all_nodes = SockaddrIn6::from(SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), 0, 0, index));
    let n = sendto(fd.as_raw_fd(), na, &all_nodes, MsgFlags::empty())?;
    if n != na.len() {
        return Err(io::Error::other(format!("neighbour advertisement: sent {n} of {} bytes", na.len())));
    }
    Ok(())
}

/// Rejects a prefix longer than the address.
fn check_prefix(addr: IpAddr, prefix: u8) -> io::Result<()> {
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("prefix /{prefix} is longer than {addr}")));
    }
    Ok(())
}

/// The sequence number of the next netlink request.
fn next_netlink_seq() -> u32 {
    static SEQ: AtomicU32 = AtomicU32::new(1);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// Sends one rtnetlink request `msg` (carrying NLM_F_ACK and sequence `seq`) on a new
/// NETLINK_ROUTE socket and reads the kernel's ack: Ok(Ok(())) for success,
/// Ok(Err(errno)) for the kernel's refusal, Err if no ack arrived.
fn netlink_request(msg: &[u8], seq: u32) -> io::Result<Result<(), i32>> {
    let fd = socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute)?;
    setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::milliseconds(NETLINK_ACK_TIMEOUT.as_millis() as i64))?;
    let kernel = NetlinkAddr::new(0, 0);
    let n = sendto(fd.as_raw_fd(), msg, &kernel, MsgFlags::empty())?;
    if n != msg.len() {
        return Err(io::Error::other(format!("netlink: sent {n} of {} bytes", msg.len())));
    }
    let mut buf = vec![0u8; NETLINK_BUF];
    for _ in 0..NETLINK_MAX_READS {
        let (n, from) = match recvfrom::<NetlinkAddr>(fd.as_raw_fd(), &mut buf) {
            Ok(r) => r,
            Err(nix::errno::Errno::EAGAIN) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "netlink: no ack from the kernel"))
            }
            Err(e) => return Err(e.into()),
        };
        if from.is_some_and(|a| a.pid() != 0) {
            continue; // not from the kernel
        }
        if let Some(ack) = parse_ack(buf.get(..n).unwrap_or(&buf), seq) {
            return Ok(ack);
        }
    }
    Err(io::Error::other("netlink: no ack among the kernel's replies"))
}

/// An address request: add or remove.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AddrOp {
    Add,
    Remove,
}

/// Appends one rtnetlink attribute (header, data, padding to 4 bytes).
fn push_attr(m: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = (RTA_HDRLEN + data.len()) as u16; // attribute data here is at most 16 bytes
    m.extend_from_slice(&len.to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(data);
    m.resize(m.len().next_multiple_of(4), 0);
}

/// The RTM_NEWADDR or RTM_DELADDR request for `addr/prefix` on interface `index`:
/// nlmsghdr, ifaddrmsg (universe scope), then IFA_LOCAL and IFA_ADDRESS for IPv4, or
/// IFA_ADDRESS (and on add IFA_FLAGS with IFA_F_NODAD) for IPv6. Header fields are
/// in host byte order, addresses in network order. `prefix` is at most the address
/// length (`check_prefix`).
fn address_message(op: AddrOp, seq: u32, index: u32, addr: IpAddr, prefix: u8) -> Vec<u8> {
    let (kind, flags) = match op {
        AddrOp::Add => (libc::RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE),
        AddrOp::Remove => (libc::RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK),
    };
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&[0; 4]); // nlmsg_len, set below
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel fills in ours
    let (family, ifa_flags) = match (addr, op) {
        (IpAddr::V4(_), _) => (libc::AF_INET as u8, 0),
        (IpAddr::V6(_), AddrOp::Add) => (libc::AF_INET6 as u8, IFA_F_NODAD as u8),
        (IpAddr::V6(_), AddrOp::Remove) => (libc::AF_INET6 as u8, 0),
    };
    m.extend_from_slice(&[family, prefix, ifa_flags, RT_SCOPE_UNIVERSE]);
    m.extend_from_slice(&index.to_ne_bytes());
    match addr {
        IpAddr::V4(ip) => {
            push_attr(&mut m, IFA_LOCAL, &ip.octets());
            push_attr(&mut m, IFA_ADDRESS, &ip.octets());
        }
        IpAddr::V6(ip) => {
            push_attr(&mut m, IFA_ADDRESS, &ip.octets());
            if op == AddrOp::Add {
                push_attr(&mut m, IFA_FLAGS, &IFA_F_NODAD.to_ne_bytes());
            }
        }
    }
    let len = m.len() as u32; // at most 64 bytes
    m[0..4].copy_from_slice(&len.to_ne_bytes());
    m
}

/// The ack for request `seq` in the netlink datagram `buf`, if there is one: the
/// first NLMSG_ERROR message with that sequence number, as Ok(()) for error 0 or
/// Err(errno). A message whose length runs past the datagram ends the walk; an
/// error field that is not 0 or a negative errno reads as EPROTO.
fn parse_ack(buf: &[u8], seq: u32) -> Option<Result<(), i32>> {
    let mut rest = buf;
    while rest.len() >= NLMSG_HDRLEN {
        let len = usize::try_from(u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]])).ok()?;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return None;
        }
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let msg_seq = u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]);
        if kind == NLMSG_ERROR && msg_seq == seq {
            let &[e0, e1, e2, e3, ..] = rest.get(NLMSG_HDRLEN..len)? else { return None };
            let error = i32::from_ne_bytes([e0, e1, e2, e3]);
            return Some(match error {
                0 => Ok(()),
                e if e < 0 => Err(e.checked_neg().unwrap_or(libc::EPROTO)),
                _ => Err(libc::EPROTO),
            });
        }
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or(&[]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ne16(v: u16) -> [u8; 2] {
        v.to_ne_bytes()
    }
    fn ne32(v: u32) -> [u8; 4] {
        v.to_ne_bytes()
    }

    #[test]
    fn add_v4_message_has_header_ifaddrmsg_local_and_address() {
        let m = address_message(AddrOp::Add, 7, 3, "192.0.2.201".parse().unwrap(), 24);
        let mut want = Vec::new();
        want.extend_from_slice(&ne32(40));
        want.extend_from_slice(&ne16(20)); // RTM_NEWADDR
        want.extend_from_slice(&ne16(0x1 | 0x4 | 0x400 | 0x100));
        want.extend_from_slice(&ne32(7));
        want.extend_from_slice(&ne32(0));
        want.extend_from_slice(&[2, 24, 0, 0]); // AF_INET, /24, no flags, universe
        want.extend_from_slice(&ne32(3));
        want.extend_from_slice(&ne16(8));
        want.extend_from_slice(&ne16(2)); // IFA_LOCAL
        want.extend_from_slice(&[192, 0, 2, 201]);
        want.extend_from_slice(&ne16(8));
        want.extend_from_slice(&ne16(1)); // IFA_ADDRESS
        want.extend_from_slice(&[192, 0, 2, 201]);
        assert_eq!(m, want);
    }

    #[test]
    fn add_v6_message_asks_for_no_dad() {
        let ip: Ipv6Addr = "2001:db8::201".parse().unwrap();
        let m = address_message(AddrOp::Add, 9, 4, IpAddr::V6(ip), 64);
        assert_eq!(m.len(), 16 + 8 + 20 + 8);
        assert_eq!(m[0..4], ne32(52));
        assert_eq!(m[4..6], ne16(20));
        assert_eq!(m[16..20], [10, 64, 0x02, 0]); // AF_INET6, /64, IFA_F_NODAD, universe
        assert_eq!(m[20..24], ne32(4));
        assert_eq!(m[24..26], ne16(20));
        assert_eq!(m[26..28], ne16(1)); // IFA_ADDRESS
        assert_eq!(m[28..44], ip.octets());
        assert_eq!(m[44..46], ne16(8));
        assert_eq!(m[46..48], ne16(8)); // IFA_FLAGS
        assert_eq!(m[48..52], ne32(0x02));
    }

    #[test]
    fn remove_messages_carry_only_request_and_ack() {
        let m = address_message(AddrOp::Remove, 1, 2, "192.0.2.201".parse().unwrap(), 24);
        assert_eq!(m.len(), 40);
        assert_eq!(m[4..6], ne16(21)); // RTM_DELADDR
        assert_eq!(m[6..8], ne16(0x1 | 0x4));
        let m = address_message(AddrOp::Remove, 1, 2, "2001:db8::201".parse().unwrap(), 64);
        assert_eq!(m.len(), 16 + 8 + 20, "no IFA_FLAGS on remove");
        assert_eq!(m[0..4], ne32(44));
        assert_eq!(m[16..20], [10, 64, 0, 0]);
    }

    /// A netlink message of `kind` and `seq` with `payload`, padded to 4 bytes.
    fn nlmsg(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&ne32((16 + payload.len()) as u32));
        m.extend_from_slice(&ne16(kind));
        m.extend_from_slice(&ne16(0));
        m.extend_from_slice(&ne32(seq));
        m.extend_from_slice(&ne32(4242));
        m.extend_from_slice(payload);
        m.resize(m.len().next_multiple_of(4), 0);
        m
    }

    /// An NLMSG_ERROR for `seq` with `error`, echoing a 16-byte request header.
    fn error_msg(seq: u32, error: i32) -> Vec<u8> {
        let mut payload = error.to_ne_bytes().to_vec();
        payload.extend_from_slice(&nlmsg(20, seq, &[])[..16]);
        nlmsg(NLMSG_ERROR, seq, &payload)
    }

    #[test]
    fn acks_are_found_by_sequence() {
        assert_eq!(parse_ack(&error_msg(5, 0), 5), Some(Ok(())));
        assert_eq!(parse_ack(&error_msg(5, -libc::EEXIST), 5), Some(Err(libc::EEXIST)));
        assert_eq!(parse_ack(&error_msg(5, -libc::EADDRNOTAVAIL), 5), Some(Err(libc::EADDRNOTAVAIL)));
        assert_eq!(parse_ack(&error_msg(4, 0), 5), None, "another request's ack");
        // After another message in the same datagram, odd length padded.
        let mut two = nlmsg(20, 5, &[1, 2, 3]);
        two.extend_from_slice(&error_msg(5, -libc::EPERM));
        assert_eq!(parse_ack(&two, 5), Some(Err(libc::EPERM)));
        // An error field that is no errno.
        assert_eq!(parse_ack(&error_msg(5, 3), 5), Some(Err(libc::EPROTO)));
        assert_eq!(parse_ack(&error_msg(5, i32::MIN), 5), Some(Err(libc::EPROTO)));
    }

    #[test]
    fn truncated_or_garbled_acks_are_refused() {
        let ack = error_msg(5, 0);
        for n in 0..ack.len() {
            assert_eq!(parse_ack(&ack[..n], 5), None, "truncated to {n}");
        }
        // An NLMSG_ERROR too short for its error field.
        assert_eq!(parse_ack(&nlmsg(NLMSG_ERROR, 5, &[0, 0]), 5), None);
        for bad_len in [0u32, 15, ack.len() as u32 + 1, u32::MAX] {
            let mut m = ack.clone();
            m[0..4].copy_from_slice(&ne32(bad_len));
            assert_eq!(parse_ack(&m, 5), None, "length {bad_len}");
        }
    }

    #[test]
    fn prefixes_longer_than_the_address_are_refused() {
        assert!(check_prefix("192.0.2.1".parse().unwrap(), 32).is_ok());
        assert!(check_prefix("192.0.2.1".parse().unwrap(), 33).is_err());
        assert!(check_prefix("2001:db8::1".parse().unwrap(), 128).is_ok());
        assert!(check_prefix("2001:db8::1".parse().unwrap(), 129).is_err());
        let e = add_address("lo", "192.0.2.1".parse().unwrap(), 40).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn echo_ids_do_not_repeat() {
        let (id1, seq1) = next_echo_ids();
        let (id2, seq2) = next_echo_ids();
        assert_ne!((id1, seq1), (id2, seq2));
    }

    #[test]
    fn an_unknown_interface_is_enodev() {
        let e = ifindex("ctibox-none0").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV));
        assert!(has_address("ctibox-none0", "192.0.2.1".parse().unwrap()).is_err());
        assert!(mac_of("ctibox-none0").is_err());
    }

    #[test]
    fn loopback_has_an_index_a_zero_mac_and_not_a_documentation_address() {
        assert!(ifindex("lo").unwrap() > 0);
        assert_eq!(mac_of("lo").unwrap(), [0; 6]);
        assert!(!has_address("lo", "192.0.2.1".parse().unwrap()).unwrap());
    }
}
