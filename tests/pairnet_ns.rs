//! The pair's network pieces (src/io/pairnet.rs) against the kernel: each test makes
//! two network namespaces of its own joined by a veth pair (`pnA` in one, `pnB` in
//! the other), with addresses from 192.0.2.0/24 and 2001:db8::/32 only, and calls
//! the functions from a thread that has entered namespace A. Needs root (it creates
//! namespaces; CI runs as root): not being root is a failure, never a skip.
// Namespaces are made with `ip`, entered from a thread, and read back from files.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use ctibox::io::pairnet::{self, IcmpSocket};
use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{
    bind, recv, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use nix::sys::time::{TimeVal, TimeValLike};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The stale link-layer address planted in B's neighbour table before an announce.
const PLANTED_MAC: &str = "02:00:00:00:00:99";
/// How long a reply or a neighbour update may take before the test fails.
const GUARD: Duration = Duration::from_secs(5);
/// The ping timeout for the address nobody has.
const MISS_TIMEOUT: Duration = Duration::from_millis(300);

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "tests/pairnet_ns.rs must run as root: it creates network namespaces and veth pairs \
         (CI runs as root; run `cargo test --test pairnet_ns` as root)"
    );
}

/// Runs `ip args...`; panics with its stderr if it fails. Returns its stdout.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    assert!(out.status.success(), "ip {args:?}: {}{}", String::from_utf8_lossy(&out.stderr), out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `sysctl -w setting` inside namespace `ns`.
fn sysctl(ns: &str, setting: &str) {
    ip(&["netns", "exec", ns, "sysctl", "-q", "-w", setting]);
}

/// Two namespaces, `a` holding veth end `pnA` and `b` holding `pnB`, both up. Dropped
/// (even when the test panics), it deletes both namespaces and so the veth pair.
struct Link {
    a: String,
    b: String,
}

impl Link {
    fn new(tag: &str) -> Link {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = format!("ctibox-pairnet-{}-{tag}{n}", std::process::id());
        // Dropped on any failure below; deleting a namespace not yet made is harmless.
        let link = Link { a: format!("{base}-a"), b: format!("{base}-b") };
        ip(&["netns", "add", &link.a]);
        ip(&["netns", "add", &link.b]);
        ip(&["link", "add", "pnA", "netns", &link.a, "type", "veth", "peer", "name", "pnB", "netns", &link.b]);
        for (ns, dev) in [(&link.a, "pnA"), (&link.b, "pnB")] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        link
    }

    /// Runs `f` on a thread that has entered namespace A.
    fn in_a<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_ns(&self.a, f)
    }

    /// `pnA`'s index and MAC as `ip` reports them.
    fn a_link(&self) -> (u32, String) {
        let line = ip(&["-n", &self.a, "-o", "link", "show", "dev", "pnA"]);
        let index = line.split(':').next().unwrap().trim().parse().unwrap();
        let mac = line.split("link/ether ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().to_owned();
        (index, mac)
    }

    /// `ip -o addr show dev pnA` in namespace A.
    fn a_addrs(&self) -> String {
        ip(&["-n", &self.a, "-o", "addr", "show", "dev", "pnA"])
    }

    /// B's neighbour entry for `addr` on `pnB`, as `ip neigh` prints it.
    fn b_neigh(&self, addr: &str) -> String {
        ip(&["-n", &self.b, "neigh", "show", addr, "dev", "pnB"])
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
        }
    }
}

/// Runs `f` on a thread that has entered namespace `ns`.
fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            setns(&file, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns {path}: {e}"));
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// A NETLINK_ROUTE socket in a namespace, subscribed to its neighbour table events
/// (RTMGRP_NEIGH). Subscribed once `open` returns, so no event after it is missed.
struct NeighEvents(OwnedFd);

impl NeighEvents {
    const RTMGRP_NEIGH: u32 = 4;
    const RTM_NEWNEIGH: u16 = 28;
    const NDA_DST: u16 = 1;
    const NDA_LLADDR: u16 = 2;

    fn open(ns: &str) -> NeighEvents {
        let fd = in_ns(ns, || {
            socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkRoute)
        })
        .expect("netlink socket");
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, Self::RTMGRP_NEIGH)).expect("join RTMGRP_NEIGH");
        NeighEvents(fd)
    }

    /// Waits (up to GUARD) for an RTM_NEWNEIGH that puts `addr` at `mac`.
    fn wait_for(&self, addr: IpAddr, mac: &str) {
        let want_dst = match addr {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        let want_mac: Vec<u8> = mac.split(':').map(|h| u8::from_str_radix(h, 16).unwrap()).collect();
        let deadline = Instant::now() + GUARD;
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 16384];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let left = TimeVal::microseconds(i64::try_from(left.as_micros()).unwrap().max(1));
            setsockopt(&self.0, sockopt::ReceiveTimeout, &left).unwrap();
            let n = match recv(self.0.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(n) => n,
                Err(nix::errno::Errno::EAGAIN) => {
                    panic!("no neighbour event putting {addr} at {mac} within {GUARD:?}; saw {seen:02x?}")
                }
                Err(e) => panic!("netlink recv: {e}"),
            };
            let mut rest = &buf[..n];
            while rest.len() >= 16 {
                let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
                let kind = u16::from_ne_bytes(rest[4..6].try_into().unwrap());
                assert!((16..=rest.len()).contains(&len), "netlink message length {len}");
                // nlmsghdr (16 bytes), ndmsg (12 bytes), then attributes.
                if kind == Self::RTM_NEWNEIGH && len >= 28 {
                    let (mut dst, mut lladdr) = (None, None);
                    let mut attrs = &rest[28..len];
                    while attrs.len() >= 4 {
                        let alen = u16::from_ne_bytes(attrs[0..2].try_into().unwrap()) as usize;
                        let akind = u16::from_ne_bytes(attrs[2..4].try_into().unwrap());
                        assert!((4..=attrs.len()).contains(&alen), "attribute length {alen}");
                        match akind {
                            Self::NDA_DST => dst = Some(attrs[4..alen].to_vec()),
                            Self::NDA_LLADDR => lladdr = Some(attrs[4..alen].to_vec()),
                            _ => {}
                        }
                        attrs = &attrs[alen.next_multiple_of(4).min(attrs.len())..];
                    }
                    if dst.as_deref() == Some(&want_dst[..]) && lladdr.as_deref() == Some(&want_mac[..]) {
                        return;
                    }
                    seen.push((dst, lladdr));
                }
                rest = &rest[len.next_multiple_of(4).min(rest.len())..];
            }
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Plants a stale entry for `addr` in B with PLANTED_MAC, has A announce `addr`, and
/// checks that B's entry now holds A's MAC.
fn announce_updates_the_neighbour(link: &Link, addr: IpAddr, a_mac: &str) {
    let text = addr.to_string();
    let events = NeighEvents::open(&link.b);
    ip(&["-n", &link.b, "neigh", "replace", &text, "lladdr", PLANTED_MAC, "dev", "pnB", "nud", "stale"]);
    events.wait_for(addr, PLANTED_MAC);
    assert!(link.b_neigh(&text).contains(PLANTED_MAC), "planted entry: {}", link.b_neigh(&text));
    link.in_a(|| pairnet::announce("pnA", addr)).expect("announce");
    events.wait_for(addr, a_mac);
    let entry = link.b_neigh(&text);
    assert!(entry.contains(&format!("lladdr {a_mac}")), "B's entry for {text} after the announce: {entry}");
    assert!(!entry.contains(PLANTED_MAC), "B's entry for {text} kept the planted MAC: {entry}");
}

/// Pings from A: the peer answers over raw and datagram sockets, an unassigned
/// address does not and `ping` says so within its timeout.
fn pings_from_a(link: &Link, peer: IpAddr, nobody: IpAddr) {
    link.in_a(|| {
        runtime().block_on(async {
            assert!(pairnet::ping(peer, GUARD).await, "ping {peer}");
            assert!(
                pairnet::ping_over(IcmpSocket::Raw, peer, GUARD).await.expect("raw ICMP socket"),
                "raw ping {peer}"
            );
            assert!(
                pairnet::ping_over(IcmpSocket::Datagram, peer, GUARD).await.expect("ICMP datagram socket"),
                "datagram ping {peer}"
            );
            let start = Instant::now();
            assert!(!pairnet::ping(nobody, MISS_TIMEOUT).await, "ping {nobody} answered");
            let took = start.elapsed();
            assert!(took < MISS_TIMEOUT + Duration::from_secs(1), "ping {nobody} took {took:?}");
            assert!(
                !pairnet::ping_over(IcmpSocket::Datagram, nobody, MISS_TIMEOUT).await.expect("ICMP datagram socket"),
                "datagram ping {nobody} answered"
            );
        })
    });
}

#[test]
fn ipv4_address_announce_and_ping_in_namespaces() {
    require_root();
    let link = Link::new("v4");
    ip(&["-n", &link.b, "addr", "add", "192.0.2.202/24", "dev", "pnB"]);
    // A gratuitous ARP updates an existing entry when arp_accept is set.
    sysctl(&link.b, "net.ipv4.conf.pnB.arp_accept=1");
    // ICMP datagram sockets for root (gid 0) in A.
    sysctl(&link.a, "net.ipv4.ping_group_range=0 0");
    let ours: IpAddr = "192.0.2.201".parse().unwrap();
    let (index, a_mac) = link.a_link();

    link.in_a(|| {
        assert_eq!(pairnet::ifindex("pnA").unwrap(), index);
        assert_eq!(pairnet::ifindex("pnB").unwrap_err().raw_os_error(), Some(nix::libc::ENODEV), "pnB is in B");
        let mac = pairnet::mac_of("pnA").unwrap();
        let hex: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex.join(":"), a_mac);
        assert!(!pairnet::has_address("pnA", ours).unwrap());
        pairnet::add_address("pnA", ours, 24).expect("add");
        assert!(pairnet::has_address("pnA", ours).unwrap());
    });
    let listed = link.a_addrs();
    assert_eq!(listed.matches("inet 192.0.2.201/24 ").count(), 1, "ip addr show: {listed}");
    link.in_a(|| pairnet::add_address("pnA", ours, 24)).expect("adding it again is fine");
    assert_eq!(link.a_addrs().matches("inet 192.0.2.201/24 ").count(), 1, "still once: {}", link.a_addrs());

    announce_updates_the_neighbour(&link, ours, &a_mac);
    pings_from_a(&link, "192.0.2.202".parse().unwrap(), "192.0.2.203".parse().unwrap());

    link.in_a(|| {
        assert!(pairnet::remove_address("pnA", ours, 24).expect("remove"), "it was there");
        assert!(!pairnet::remove_address("pnA", ours, 24).expect("remove again"), "it was gone");
        assert!(!pairnet::has_address("pnA", ours).unwrap());
    });
    let listed = link.a_addrs();
    assert!(!listed.contains("192.0.2.201"), "removed, yet ip addr show: {listed}");
}

#[test]
fn ipv6_address_announce_and_ping_in_namespaces() {
    require_root();
    let link = Link::new("v6");
    ip(&["-n", &link.b, "-6", "addr", "add", "2001:db8::202/64", "dev", "pnB", "nodad"]);
    sysctl(&link.a, "net.ipv4.ping_group_range=0 0"); // covers ICMPv6 datagram sockets too
    let ours: IpAddr = "2001:db8::201".parse().unwrap();
    let (_, a_mac) = link.a_link();

    link.in_a(|| {
        assert!(!pairnet::has_address("pnA", ours).unwrap());
        pairnet::add_address("pnA", ours, 64).expect("add");
        assert!(pairnet::has_address("pnA", ours).unwrap());
        pairnet::add_address("pnA", ours, 64).expect("adding it again is fine");
    });
    let listed = link.a_addrs();
    let line = listed
        .lines()
        .find(|l| l.contains("inet6 2001:db8::201/64 "))
        .unwrap_or_else(|| panic!("not listed: {listed}"));
    assert!(!line.contains("tentative"), "added without DAD, yet: {line}");
    assert_eq!(listed.matches("inet6 2001:db8::201/64 ").count(), 1, "ip addr show: {listed}");

    announce_updates_the_neighbour(&link, ours, &a_mac);
    pings_from_a(&link, "2001:db8::202".parse().unwrap(), "2001:db8::203".parse().unwrap());

    link.in_a(|| {
        assert!(pairnet::remove_address("pnA", ours, 64).expect("remove"), "it was there");
        assert!(!pairnet::remove_address("pnA", ours, 64).expect("remove again"), "it was gone");
        assert!(!pairnet::has_address("pnA", ours).unwrap());
    });
    let listed = link.a_addrs();
    assert!(!listed.contains("2001:db8::201"), "removed, yet ip addr show: {listed}");
}
