//! The media thread's io_uring backend (Linux 6.1 or later), used in place of epoll
//! when the kernel offers it: every stream socket has one multishot receive that
//! takes its buffers from a ring of provided buffers, forwarded datagrams go out as
//! ring entries submitted together, and the wait for the next poll tick is the ring's
//! own wait. Under load that removes the epoll calls and a system call per datagram
//! each way; what is left is the kernel's UDP work itself.
//!
//! The ring is set up with `DEFER_TASKRUN`: the kernel does the receives in this
//! thread when it asks for completions, not in interrupt context, and a wait for more
//! completions than will come (a tick) is not woken per datagram. The runtime
//! (`super::Runtime::run_uring`) owns the policy; this module owns the ring, the
//! buffers and the bookkeeping of what is in flight.

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use nix::libc;
use nix::sys::socket::{SockaddrLike, SockaddrStorage};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

/// Receive buffers in the provided-buffer ring (a power of two).
const RX_BUFFERS: u16 = 1024;
/// One receive buffer: the kernel's header, the source address, room for a timestamp
/// control message, then the payload (2048 bytes, as the epoll path reads).
const RX_HEADER: usize = 16; // struct io_uring_recvmsg_out
const RX_NAME: usize = std::mem::size_of::<libc::sockaddr_in6>();
const RX_CONTROL: usize = 32; // CMSG_SPACE(sizeof(struct timespec)) on 64-bit
const RX_PAYLOAD: usize = 2048;
const RX_BUF: usize = RX_HEADER + RX_NAME + RX_CONTROL + RX_PAYLOAD;
/// The buffer group id of the receive buffers.
const BGID: u16 = 1;
/// Submission queue entries; the completion queue is four times larger.
const SQ_ENTRIES: u32 = 1024;
/// Forwarded datagrams in flight at most (each holds a copy until its completion).
const MAX_SENDS: usize = 4096;

// user_data: kind in the top two bits; receives carry the slot's generation (30
// bits) and the token (slot * 2, +1 for RTCP); sends carry their slot.
const KIND_SHIFT: u32 = 62;
const KIND_RECV: u64 = 0;
const KIND_SEND: u64 = 1;
const KIND_WAKE: u64 = 2;
const GEN_MASK: u64 = (1 << 30) - 1;

/// What one completion meant.
pub(super) enum Event {
    /// A datagram of `len` bytes (copied to the caller's buffer) for `token`.
    Datagram { token: u64, gen: u64, len: usize, from: SocketAddr, arrived: Option<Duration>, more: bool },
    /// A receive completion without a datagram (`err`: the negated errno, or 0 for
    /// one that could not be read); `more`: the receive is still armed.
    NoDatagram { token: u64, gen: u64, err: i32, more: bool },
    /// The wake-up socket became readable; `more`: its poll is still armed.
    Wake { more: bool },
    /// A forwarded datagram left (or failed to).
    Sent { ok: bool },
}

/// The generation bits a receive's user_data carries for a slot generation.
pub(super) fn gen_bits(gen: u64) -> u64 {
    gen & GEN_MASK
}

struct SendSlot {
    data: [u8; RX_PAYLOAD],
    addr: SockaddrStorage,
}

pub(super) struct Uring {
    ring: IoUring,
    /// The provided-buffer ring (page-aligned, `RX_BUFFERS` entries) and its buffers.
    buf_ring: *mut types::BufRingEntry,
    buf_ring_len: usize,
    rx: Vec<u8>,
    tail: u16,
    /// The multishot receive's template: only the name and control lengths count.
    msghdr: Box<libc::msghdr>,
    /// Boxed: the kernel holds a slot's address until its completion, and the vector
    /// may grow meanwhile.
    #[allow(clippy::vec_box)]
    sends: Vec<Box<SendSlot>>,
    free_sends: Vec<usize>,
    /// Kernel arrival times of the datagrams queued since the last submit (for the
    /// added-latency histogram, recorded when they are submitted).
    pub(super) arrivals: Vec<Duration>,
}

// SAFETY: the raw pointer is the ring's own mapping, used only by the thread that owns
// the `Uring` (the struct moves into the media thread once, before any use).
unsafe impl Send for Uring {}

impl Uring {
    /// Sets up the ring; fails on kernels without the features used (then the runtime
    /// uses epoll).
    pub(super) fn new() -> std::io::Result<Uring> {
        let ring = IoUring::builder().setup_single_issuer().setup_defer_taskrun().setup_cqsize(SQ_ENTRIES * 4).build(SQ_ENTRIES)?;
        if !ring.params().is_feature_nodrop() {
            return Err(std::io::Error::other("io_uring without IORING_FEAT_NODROP"));
        }
        let entries = RX_BUFFERS as usize;
        let buf_ring_len = entries * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: an anonymous private mapping; checked for failure below.
        let map = unsafe { libc::mmap(std::ptr::null_mut(), buf_ring_len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) };
        if map == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let mut u = Uring {
            ring,
            buf_ring: map.cast(),
            buf_ring_len,
            rx: vec![0u8; entries * RX_BUF],
            tail: 0,
            msghdr: Box::new(
                // SAFETY: msghdr is plain data; all zeroes is a valid value.
                unsafe { std::mem::zeroed() },
            ),
            sends: Vec::new(),
            free_sends: Vec::new(),
            arrivals: Vec::new(),
        };
        u.msghdr.msg_namelen = RX_NAME as u32;
        u.msghdr.msg_controllen = RX_CONTROL as _;
        for bid in 0..RX_BUFFERS {
            u.provide(bid);
        }
        u.publish_tail();
        // SAFETY: the mapping is page-aligned, `RX_BUFFERS` entries long and lives
        // until `drop`, which comes after the ring (and its registration) is gone.
        unsafe { u.ring.submitter().register_buf_ring_with_flags(u.buf_ring as u64, RX_BUFFERS, BGID, 0)? };
        u.self_test()?;
        Ok(u)
    }

    /// One datagram through the ring on loopback, with the operations the runtime uses
    /// (a multishot receive into a provided buffer, a send with a destination address,
    /// a cancel): a kernel that sets the ring up but lacks one of them is found here,
    /// and the runtime uses epoll, rather than losing media later.
    fn self_test(&mut self) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let fail = |what: &str| std::io::Error::other(format!("self-test: {what}"));
        let rx = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let tx = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let (to, from) = (rx.local_addr()?, tx.local_addr()?);
        self.arm_recv(rx.as_raw_fd(), 0, 0)?;
        if !self.send(tx.as_raw_fd(), b"ctibox", to, None) {
            return Err(fail("send not queued"));
        }
        let (mut sent, mut got) = (false, None);
        let mut buf = [0u8; 16];
        for _ in 0..100 {
            self.wait(1, Some(Duration::from_millis(10))).map_err(std::io::Error::other)?;
            while let Some(ev) = self.next(&mut buf) {
                match ev {
                    Event::Sent { ok } if ok => sent = true,
                    Event::Sent { .. } => return Err(fail("send failed")),
                    Event::Datagram { len, from: f, .. } => got = Some((len, f)),
                    Event::NoDatagram { err, .. } => return Err(fail(&format!("receive failed (errno {})", -err))),
                    Event::Wake { .. } => {}
                }
            }
            if sent && got.is_some() {
                break;
            }
        }
        let through = sent && got == Some((6, from)) && &buf[..6] == b"ctibox";
        self.cancel_fds(&[rx.as_raw_fd()]);
        while self.next(&mut buf).is_some() {}
        if through {
            Ok(())
        } else {
            Err(fail("the datagram did not come through"))
        }
    }

    /// Puts buffer `bid` at the ring's tail (visible to the kernel after `publish_tail`).
    fn provide(&mut self, bid: u16) {
        let idx = (self.tail & (RX_BUFFERS - 1)) as usize;
        let addr = self.rx.as_ptr() as u64 + bid as u64 * RX_BUF as u64;
        // SAFETY: idx < RX_BUFFERS, within the mapping.
        let e = unsafe { &mut *self.buf_ring.add(idx) };
        e.set_addr(addr);
        e.set_len(RX_BUF as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish_tail(&self) {
        // SAFETY: the tail field of the first entry, inside the mapping; the kernel
        // reads it with acquire semantics, so a release store publishes the entries.
        let tail = unsafe { AtomicU16::from_ptr(types::BufRingEntry::tail(self.buf_ring).cast_mut()) };
        tail.store(self.tail, Ordering::Release);
    }

    fn push(&mut self, e: &squeue::Entry) -> std::io::Result<()> {
        // SAFETY: every entry pushed points at memory that outlives the request: the
        // template msghdr and the buffers (owned by self), or a send slot (freed only
        // at its completion).
        while unsafe { self.ring.submission().push(e) }.is_err() {
            self.ring.submit()?;
        }
        Ok(())
    }

    /// Arms the multishot receive of `fd` for `token` and submits it at once, so no
    /// entry naming a descriptor can outlive the socket unsubmitted.
    pub(super) fn arm_recv(&mut self, fd: RawFd, token: u64, gen: u64) -> std::io::Result<()> {
        let e = opcode::RecvMsgMulti::new(types::Fd(fd), &*self.msghdr, BGID).build().user_data((KIND_RECV << KIND_SHIFT) | (gen_bits(gen) << 32) | token);
        self.push(&e)?;
        self.ring.submit()?;
        Ok(())
    }

    /// Arms the (multishot) readability poll of the wake-up socket.
    pub(super) fn arm_wake(&mut self, fd: RawFd) -> std::io::Result<()> {
        let e = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32).multi(true).build().user_data(KIND_WAKE << KIND_SHIFT);
        self.push(&e)?;
        self.ring.submit()?;
        Ok(())
    }

    /// Cancels everything in flight on `fds` and runs the cancellations' completions,
    /// so the sockets can be closed (a request holds its file open) and their ports
    /// bound again at once.
    pub(super) fn cancel_fds(&mut self, fds: &[RawFd]) {
        // Entries queued but not submitted cannot be cancelled: submit them first.
        let _ = self.ring.submit();
        for &fd in fds {
            match self.ring.submitter().register_sync_cancel(None, types::CancelBuilder::fd(types::Fd(fd)).all()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("media: io_uring cancel on fd {fd}: {e}"),
            }
        }
        // The cancelled request lets go of the socket when its completion is run, which
        // DEFER_TASKRUN leaves to this thread's next wait: run it now (all pending work,
        // not just the first few items).
        let _ = self.wait(self.capacity(), Some(Duration::ZERO));
    }

    /// Queues `data` to go from `fd` to `to`; false when too many are in flight (the
    /// caller sends it itself). `arrived`: the datagram's kernel arrival time.
    pub(super) fn send(&mut self, fd: RawFd, data: &[u8], to: SocketAddr, arrived: Option<Duration>) -> bool {
        if data.len() > RX_PAYLOAD {
            return false;
        }
        let idx = match self.free_sends.pop() {
            Some(i) => i,
            None if self.sends.len() < MAX_SENDS => {
                self.sends.push(Box::new(SendSlot { data: [0; RX_PAYLOAD], addr: SockaddrStorage::from(to) }));
                self.sends.len() - 1
            }
            None => return false,
        };
        let slot = &mut self.sends[idx];
        slot.data[..data.len()].copy_from_slice(data);
        slot.addr = SockaddrStorage::from(to);
        let e = opcode::Send::new(types::Fd(fd), slot.data.as_ptr(), data.len() as u32)
            .dest_addr(slot.addr.as_ptr())
            .dest_addr_len(slot.addr.len())
            .build()
            .user_data((KIND_SEND << KIND_SHIFT) | idx as u64);
        if self.push(&e).is_err() {
            self.free_sends.push(idx);
            return false;
        }
        if let Some(at) = arrived {
            self.arrivals.push(at);
        }
        true
    }

    /// Entries queued and not yet submitted.
    pub(super) fn queued(&mut self) -> usize {
        self.ring.submission().len()
    }

    /// Submits what is queued without waiting.
    pub(super) fn submit(&mut self) -> Result<(), String> {
        match self.ring.submit() {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)) => Ok(()),
            Err(e) => Err(format!("io_uring_enter: {e}")),
        }
    }

    /// Submits what is queued and waits for `want` completions or `timeout` (none:
    /// no limit). The kernel does the pending receives before it returns.
    pub(super) fn wait(&mut self, want: usize, timeout: Option<Duration>) -> Result<(), String> {
        let r = match timeout {
            Some(d) => {
                let ts = types::Timespec::from(d);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(want, &args)
            }
            None => self.ring.submitter().submit_and_wait(want),
        };
        match r {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)) => Ok(()),
            Err(e) => Err(format!("io_uring_enter: {e}")),
        }
    }

    /// As many completions as the ring can hold: a wait for this many is a wait for
    /// the timeout.
    pub(super) fn capacity(&self) -> usize {
        self.ring.params().cq_entries() as usize
    }

    /// True when completions wait to be taken.
    pub(super) fn has_completions(&mut self) -> bool {
        !self.ring.completion().is_empty()
    }

    /// The next completion, if any; a datagram's payload is copied into `buf` and its
    /// buffer goes back to the kernel.
    pub(super) fn next(&mut self, buf: &mut [u8]) -> Option<Event> {
        let cqe = self.ring.completion().next()?;
        let ud = cqe.user_data();
        let (res, flags) = (cqe.result(), cqe.flags());
        let more = cqueue::more(flags);
        Some(match ud >> KIND_SHIFT {
            KIND_SEND => {
                self.free_sends.push((ud & 0xFFFF_FFFF) as usize);
                Event::Sent { ok: res >= 0 }
            }
            KIND_WAKE => Event::Wake { more },
            _ => {
                let token = ud & 0xFFFF_FFFF;
                let gen = (ud >> 32) & GEN_MASK;
                let Some(bid) = cqueue::buffer_select(flags) else {
                    return Some(Event::NoDatagram { token, gen, err: res.min(0), more });
                };
                let parsed = (res >= 0)
                    .then(|| {
                        let start = bid as usize * RX_BUF;
                        let raw = &self.rx[start..start + (res as usize).min(RX_BUF)];
                        let out = types::RecvMsgOut::parse(raw, &self.msghdr).ok()?;
                        let from = sockaddr(out.name_data())?;
                        let n = out.payload_data().len().min(buf.len());
                        buf[..n].copy_from_slice(&out.payload_data()[..n]);
                        Some((n, from, timestamp(out.control_data())))
                    })
                    .flatten();
                self.provide(bid);
                self.publish_tail();
                match parsed {
                    Some((len, from, arrived)) => Event::Datagram { token, gen, len, from, arrived, more },
                    None => Event::NoDatagram { token, gen, err: res.min(0), more },
                }
            }
        })
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        let _ = self.ring.submitter().unregister_buf_ring(BGID);
        // SAFETY: the mapping made in `new`, no longer registered with the kernel.
        unsafe { libc::munmap(self.buf_ring.cast(), self.buf_ring_len) };
    }
}

/// A socket address as the kernel wrote it (sockaddr_in or sockaddr_in6).
fn sockaddr(b: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(b.get(0..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(b.get(2..4)?.try_into().ok()?);
    match family as i32 {
        libc::AF_INET => {
            let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::from((ip, port)))
        }
        libc::AF_INET6 => {
            let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            Some(SocketAddr::from((std::net::Ipv6Addr::from(ip), port)))
        }
        _ => None,
    }
}

/// The SO_TIMESTAMPNS arrival time among the control messages, if present.
fn timestamp(mut c: &[u8]) -> Option<Duration> {
    const HDR: usize = std::mem::size_of::<libc::cmsghdr>();
    const ALIGN: usize = std::mem::size_of::<usize>();
    while c.len() >= HDR {
        let len = usize::from_ne_bytes(c[..ALIGN].try_into().ok()?);
        let level = i32::from_ne_bytes(c[ALIGN..ALIGN + 4].try_into().ok()?);
        let kind = i32::from_ne_bytes(c[ALIGN + 4..ALIGN + 8].try_into().ok()?);
        if len < HDR || len > c.len() {
            return None;
        }
        if level == libc::SOL_SOCKET && kind == libc::SCM_TIMESTAMPNS && len >= HDR + 16 {
            let sec = i64::from_ne_bytes(c[HDR..HDR + 8].try_into().ok()?);
            let nsec = i64::from_ne_bytes(c[HDR + 8..HDR + 16].try_into().ok()?);
            return Some(Duration::new(u64::try_from(sec).ok()?, u32::try_from(nsec).ok()?));
        }
        c = c.get(len.div_ceil(ALIGN) * ALIGN..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket whose multishot receive is cancelled can be closed and its port bound
    /// again at once (the request held the socket open until cancelled).
    #[test]
    fn a_cancelled_socket_frees_its_port() {
        use std::os::fd::AsRawFd;
        // Where the kernel offers no io_uring this fails, as the media path's io_uring
        // tests do: a missing facility fails a test, never skips it.
        let mut u = Uring::new().expect("io_uring");
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = s.local_addr().unwrap();
        u.arm_recv(s.as_raw_fd(), 4, 1).unwrap();
        u.cancel_fds(&[s.as_raw_fd()]);
        drop(s);
        let again = std::net::UdpSocket::bind(addr);
        assert!(again.is_ok(), "port still held: {again:?}");
    }

    #[test]
    fn kernel_written_v4_and_v6_sockaddrs_parse_and_short_or_unspec_ones_are_none() {
        let v4 = SockaddrStorage::from("127.0.0.1:4000".parse::<SocketAddr>().unwrap());
        // SAFETY: as_ptr points at len() initialised bytes.
        let b = unsafe { std::slice::from_raw_parts(v4.as_ptr().cast::<u8>(), v4.len() as usize) };
        assert_eq!(sockaddr(b), Some("127.0.0.1:4000".parse().unwrap()));
        let v6 = SockaddrStorage::from("[::1]:4002".parse::<SocketAddr>().unwrap());
        // SAFETY: as above.
        let b = unsafe { std::slice::from_raw_parts(v6.as_ptr().cast::<u8>(), v6.len() as usize) };
        assert_eq!(sockaddr(b), Some("[::1]:4002".parse().unwrap()));
        assert_eq!(sockaddr(&[0; 3]), None);
        assert_eq!(sockaddr(&[0; 16]), None); // AF_UNSPEC
    }

    #[test]
    fn the_timestamp_is_found_among_control_messages_and_bad_ones_are_refused() {
        const HDR: usize = std::mem::size_of::<libc::cmsghdr>();
        let mut c = Vec::new();
        // An unrelated message first (4 bytes of data, padded).
        c.extend_from_slice(&(HDR + 4).to_ne_bytes());
        c.extend_from_slice(&libc::SOL_IP.to_ne_bytes());
        c.extend_from_slice(&1i32.to_ne_bytes());
        c.extend_from_slice(&[0; 8]);
        c.extend_from_slice(&(HDR + 16).to_ne_bytes());
        c.extend_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
        c.extend_from_slice(&libc::SCM_TIMESTAMPNS.to_ne_bytes());
        c.extend_from_slice(&7i64.to_ne_bytes());
        c.extend_from_slice(&500i64.to_ne_bytes());
        assert_eq!(timestamp(&c), Some(Duration::new(7, 500)));
        assert_eq!(timestamp(&c[..HDR + 8]), None);
        let mut bad = c.clone();
        bad[..8].copy_from_slice(&1000usize.to_ne_bytes());
        assert_eq!(timestamp(&bad), None);
        assert_eq!(timestamp(&[]), None);
    }
}
