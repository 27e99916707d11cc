//! The one loop: waits for an input or the engine's next deadline, feeds the engine,
//! drains its outputs into sockets and files, and beats the watchdog heartbeat.

use super::notify::Heartbeat;
use crate::core::{ConnId, Engine, Input, Output, Time, Transport};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What the shell's tasks send to the loop.
pub enum Event {
    Input(Input),
    /// A stream connection's writer queue, so outputs can reach it.
    Stream { conn: ConnId, writer: mpsc::Sender<Vec<u8>> },
    /// A CTI WebSocket's queue: each item goes out as one text message.
    WebSocket { conn: ConnId, writer: mpsc::Sender<Vec<u8>> },
    /// Fault injection for tests (CTIBOX_FAULT=stall-on-usr2): block the loop.
    Stall,
    /// From the peer pair's tasks (io/pair.rs).
    Pair(super::pair::PairEvent),
    /// A command on the control socket (io/control.rs) and where its answer goes.
    Control { command: String, reply: tokio::sync::oneshot::Sender<String> },
    /// A clean stop: the engine saves what it holds back (`Input::Stop`), its outputs
    /// are drained into the persist queue, then the sender is told.
    Stop(tokio::sync::oneshot::Sender<()>),
    /// A simulated port finished sending digits or a flash (io/analog.rs).
    SimDone { port: String },
}

/// Maps the shell's monotonic clock onto engine time.
#[derive(Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock { origin: Instant::now() }
    }
    pub fn now(&self) -> Time {
        Time(self.origin.elapsed().as_micros() as u64)
    }
    pub fn instant(&self, t: Time) -> Instant {
        self.origin + Duration::from_micros(t.0)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Writes state blobs off the engine loop: latest blob per name wins, so a slow SD
/// card delays saves but never queues without bound.
type Pending = Mutex<HashMap<&'static str, Vec<u8>>>;

#[derive(Clone)]
pub struct PersistQueue {
    inner: Arc<(Pending, Condvar)>,
    /// Held while a batch is being written, so `flush` waits for it.
    writing: Arc<Mutex<()>>,
}

impl PersistQueue {
    pub fn new() -> PersistQueue {
        PersistQueue { inner: Arc::new((Mutex::new(HashMap::new()), Condvar::new())), writing: Arc::new(Mutex::new(())) }
    }
    pub fn push(&self, name: &'static str, bytes: Vec<u8>) {
        let (m, cv) = &*self.inner;
        m.lock().unwrap_or_else(|e| e.into_inner()).insert(name, bytes);
        cv.notify_one();
    }
    /// Writes whatever is still pending, on the caller's thread (at a clean stop).
    pub fn flush(&self, dir: &std::path::Path) {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let (m, _) = &*self.inner;
        let batch: Vec<(&'static str, Vec<u8>)> = m.lock().unwrap_or_else(|e| e.into_inner()).drain().collect();
        for (name, bytes) in batch {
            let path = dir.join(name);
            if let Err(e) = crate::persist::write_atomic(&path, &crate::persist::seal(&bytes)) {
                log::error!("persist: cannot save {}: {e}", path.display());
            }
        }
    }

    /// The writer thread's body: never returns unless a write fails.
    pub fn run(&self, dir: PathBuf) -> Result<(), String> {
        let (m, cv) = &*self.inner;
        loop {
            {
                let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
                while g.is_empty() {
                    g = cv.wait(g).unwrap_or_else(|e| e.into_inner());
                }
            }
            // Take the batch only while holding the write lock, so a flush either sees
            // it still queued or waits until it is on disk.
            let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
            let batch: Vec<(&'static str, Vec<u8>)> = m.lock().unwrap_or_else(|e| e.into_inner()).drain().collect();
            for (name, bytes) in batch {
                let path = dir.join(name);
                if let Err(e) = crate::persist::write_atomic(&path, &crate::persist::seal(&bytes)) {
                    log::error!("persist: cannot save {}: {e}", path.display());
                }
            }
        }
    }
}

impl Default for PersistQueue {
    fn default() -> Self {
        PersistQueue::new()
    }
}

/// How outputs reach one stream connection.
pub struct ConnTx {
    pub tx: mpsc::Sender<Vec<u8>>,
    /// CTI messages go out as WebSocket text messages, not newline-ended lines.
    pub websocket: bool,
}

pub struct Driver {
    pub engine: Engine,
    pub clock: Clock,
    pub udp: Option<Rc<UdpSocket>>,
    pub conns: HashMap<ConnId, ConnTx>,
    pub heartbeat: Heartbeat,
    pub persist: PersistQueue,
    /// Outbound SIP connections this box opened, by remote address.
    pub dialed: HashMap<std::net::SocketAddr, ConnId>,
    /// For tasks the loop starts itself (outbound connections).
    pub inbox: mpsc::Sender<Event>,
    /// The media path's command queue (None: media commands are dropped and logged).
    pub media: Option<super::media::MediaHandle>,
    /// Argon2 checks of CTI logins (None: every check is answered `Busy`).
    pub verifier: Option<super::verifier::Verifier>,
    /// The SIP UDP socket's receiving side (None: no UDP listener).
    pub udp_in: Option<super::listeners::UdpIn>,
    /// Whether the engine loop keeps up (io/load.rs).
    pub load: super::load::LoadMeter,
    /// SIP datagrams the engine gave, sent together at the end of a drain.
    pub udp_out: Vec<(std::net::SocketAddr, Vec<u8>)>,
    /// Secret checks the verifier had no room for, answered `Busy` once the outputs
    /// are drained.
    pub busy: Vec<u64>,
    /// The peer pair, with a `[peer]` section.
    pub pair: Option<super::pair::PairShell>,
    /// The analog ports' drivers (the sim board's twin; io/analog.rs).
    pub analog: Option<super::analog::AnalogShell>,
}

/// Resolves when a peer-pair socket may be read.
async fn pair_readable(s: Option<&Rc<UdpSocket>>) -> std::io::Result<()> {
    match s {
        Some(s) => s.readable().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the SIP UDP socket may hold a datagram; never without one.
async fn udp_readable(udp: Option<&super::listeners::UdpIn>) -> std::io::Result<()> {
    match udp {
        Some(u) => u.readable().await,
        None => std::future::pending().await,
    }
}

impl Driver {
    /// Runs forever; returns only if every input source is gone.
    pub async fn run(mut self, mut inbox: mpsc::Receiver<Event>) -> Result<(), String> {
        let tick = Duration::from_millis(crate::limits::ENGINE_TICK_MS);
        let (pair_sock, pair_hb) = match &self.pair {
            Some(p) => {
                let (a, b) = p.sockets();
                (Some(a), Some(b))
            }
            None => (None, None),
        };
        if let Some(p) = self.pair.as_mut() {
            p.pump(self.clock.now(), &mut self.engine);
        }
        // The simulated board's ports are driven from the start.
        let ups = self.analog.as_ref().map(|s| s.ups()).unwrap_or_default();
        for up in ups {
            let now = self.clock.now();
            self.engine.handle_input(now, up);
        }
        self.drain().await;
        loop {
            self.heartbeat.beat();
            let idle = Instant::now() + tick;
            let mut deadline = self.engine.poll_timeout().map_or(idle, |t| self.clock.instant(t).min(idle));
            if let Some(p) = &self.pair {
                deadline = deadline.min(self.clock.instant(p.deadline()));
            }
            tokio::select! {
                ev = inbox.recv() => match ev {
                    Some(Event::Input(input)) => {
                        if let Input::ConnClosed { conn } | Input::ConnPanicked { conn: Some(conn) } = &input {
                            self.conns.remove(conn);
                            self.dialed.retain(|_, c| c != conn);
                        }
                        if let (Input::Http { .. }, Some(p)) = (&input, &self.pair) {
                            self.engine.set_pair_stats(serde_json::to_value(p.stats_now()).unwrap_or_default());
                        }
                        if matches!(input, Input::Sip { .. }) && self.held_back() {
                            continue;
                        }
                        let now = self.clock.now();
                        self.engine.handle_input(now, input);
                    }
                    Some(Event::Stream { conn, writer }) => { self.conns.insert(conn, ConnTx { tx: writer, websocket: false }); }
                    Some(Event::WebSocket { conn, writer }) => { self.conns.insert(conn, ConnTx { tx: writer, websocket: true }); }
                    Some(Event::Stop(done)) => {
                        let now = self.clock.now();
                        self.engine.handle_input(now, Input::Stop);
                        self.drain().await;
                        let _ = done.send(());
                        continue;
                    }
                    Some(Event::Pair(ev)) => {
                        if let Some(p) = self.pair.as_mut() {
                            p.on_event(self.clock.now(), ev, &mut self.engine);
                        }
                    }
                    Some(Event::SimDone { port }) => {
                        if let Some(s) = self.analog.as_mut() {
                            s.done(&port);
                        }
                    }
                    Some(Event::Control { command, reply }) => {
                        let answer = self.control(&command);
                        let _ = reply.send(answer);
                    }
                    Some(Event::Stall) => {
                        log::warn!("fault injection: stalling the engine loop");
                        loop { std::thread::sleep(Duration::from_secs(3600)); }
                    }
                    None => return Err("all input sources closed".into()),
                },
                r = udp_readable(self.udp_in.as_ref()) => {
                    r.map_err(|e| format!("SIP udp receive: {e}"))?;
                    self.receive_udp().await?;
                }
                r = pair_readable(pair_sock.as_ref()) => {
                    r.map_err(|e| format!("peer link receive: {e}"))?;
                    if let Some(p) = self.pair.as_mut() {
                        p.on_readable(self.clock.now(), &mut self.engine);
                    }
                }
                r = pair_readable(pair_hb.as_ref()) => {
                    r.map_err(|e| format!("peer link heartbeat socket: {e}"))?;
                    if let Some(p) = self.pair.as_mut() {
                        p.on_hb_readable(self.clock.now(), &mut self.engine);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let now = self.clock.now();
                    if let Some(p) = self.pair.as_mut().filter(|p| p.deadline() <= now) {
                        p.on_timeout(now, &mut self.engine);
                    }
                    if self.engine.poll_timeout().is_some_and(|t| t <= self.clock.now()) {
                        self.engine.handle_input(self.clock.now(), Input::Timeout);
                    }
                }
            }
            self.drain().await;
        }
    }

    /// Reads up to `SIP_UDP_RECV_BATCH` queued SIP datagrams into the engine, draining
    /// its outputs after each; the datagrams they cause go out together afterwards.
    async fn receive_udp(&mut self) -> Result<(), String> {
        use super::listeners::Received;
        for _ in 0..crate::limits::SIP_UDP_RECV_BATCH {
            let Some(udp) = self.udp_in.as_mut() else { return Ok(()) };
            match udp.try_recv() {
                Ok(Received::Input(input)) => {
                    if let Some(busy) = self.load.observe(std::time::Instant::now(), udp.waited) {
                        self.engine.handle_input(self.clock.now(), Input::Load { busy });
                    }
                    if self.held_back() {
                        continue;
                    }
                    let now = self.clock.now();
                    self.engine.handle_input(now, input);
                    self.drain_once();
                    if self.udp_out.len() >= crate::limits::SIP_UDP_SEND_BATCH {
                        self.flush_udp().await;
                    }
                }
                Ok(Received::Skipped) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if let Some(busy) = self.load.drained(std::time::Instant::now()) {
                        self.engine.handle_input(self.clock.now(), Input::Load { busy });
                    }
                    break;
                }
                Err(e) => return Err(format!("SIP udp receive: {e}")),
            }
        }
        Ok(())
    }

    async fn drain(&mut self) {
        loop {
            self.drain_once();
            self.flush_udp().await;
            if self.busy.is_empty() {
                return;
            }
            let now = self.clock.now();
            for ticket in std::mem::take(&mut self.busy) {
                self.engine.handle_input(now, Input::SecretVerified { ticket, verdict: crate::core::Verdict::Busy });
            }
        }
    }

    /// Sends the queued SIP datagrams, `SIP_UDP_SEND_BATCH` per sendmmsg(2). A full
    /// socket buffer is waited for; another error drops that one datagram (logged).
    async fn flush_udp(&mut self) {
        let Some(sock) = self.udp.clone() else {
            self.udp_out.clear();
            return;
        };
        let mut sent = 0;
        while sent < self.udp_out.len() {
            let end = (sent + crate::limits::SIP_UDP_SEND_BATCH).min(self.udp_out.len());
            let batch = &self.udp_out[sent..end];
            // An active unit of a pair speaks from the service address, which moves with
            // it: a peer that answers to where a message came from must reach the
            // unit serving after a takeover, not the unit that sent the first message.
            let src = self.pair.as_ref().filter(|p| p.serving()).map(|p| p.service_ip());
            match sock.try_io(tokio::io::Interest::WRITABLE, || send_batch(&sock, batch, src)) {
                Ok(n) => sent += n.max(1),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // A full socket buffer: wait until it has room, then go on.
                    if sock.writable().await.is_err() {
                        sent += 1;
                    }
                }
                Err(e) => {
                    log::debug!("sip: send to {}: {e}", self.udp_out[sent].0);
                    sent += 1;
                }
            }
        }
        self.udp_out.clear();
    }

    /// Whether a SIP message is to be dropped (and counted) rather than handled: a
    /// unit of a pair that does not serve keeps its engine a copy of the active's, so
    /// a request sent to its own address (the service address is not here) changes
    /// nothing and gets no answer.
    fn held_back(&mut self) -> bool {
        match self.pair.as_mut() {
            Some(p) if !p.serving() => {
                p.stats.sip_dropped += 1;
                true
            }
            _ => false,
        }
    }

    /// A control-socket command's answer (io/control.rs).
    fn control(&mut self, command: &str) -> String {
        let now = self.clock.now();
        let words: Vec<&str> = command.split_whitespace().collect();
        if let Some((&"analog", rest)) = words.split_first() {
            let lines = self.engine.analog_lines();
            return match self.analog.as_mut() {
                Some(s) => s.control(rest, &lines),
                None => "error: no analog ports here\n".into(),
            };
        }
        match (command.trim(), self.pair.as_mut()) {
            (_, None) => "error: this box has no [peer] section: it runs alone\n".into(),
            ("peer status", Some(p)) => p.status_text(now),
            (c @ ("peer switchover" | "peer switchover --force"), Some(p)) => {
                let setup = self.engine.calls_in_setup();
                if setup > 0 && p.serving() && !c.ends_with("--force") {
                    // The standby holds established calls only: wait for these.
                    return format!("busy: {setup} call(s) in setup here would be lost by a handover now\n");
                }
                if p.switchover(now, &mut self.engine) {
                    "ok: handing over to the standby; this box stands by\n".into()
                } else {
                    format!("error: no switchover: this box is {} and the peer must be a live standby\n", p.role().name())
                }
            }
            (c, Some(_)) => format!("error: unknown command {c:?} (peer status, peer switchover [--force])\n"),
        }
    }

    fn drain_once(&mut self) {
        let serving = self.pair.as_ref().is_none_or(|p| p.serving());
        while let Some(out) = self.engine.poll_output() {
            if !serving {
                if let Output::Transmit { .. } = out {
                    // A standby's engine follows the active's; it says nothing on SIP.
                    if let Some(p) = self.pair.as_mut() {
                        p.stats.held_back += 1;
                    }
                    continue;
                }
            }
            match out {
                Output::VerifySecret(job) => {
                    let rejected = match &self.verifier {
                        Some(v) => v.submit(job).err(),
                        None => Some(job),
                    };
                    if let Some(job) = rejected {
                        self.busy.push(job.ticket);
                    }
                }
                Output::Transmit { transport: Transport::Udp, to, bytes, .. } => {
                    if self.udp.is_some() {
                        self.udp_out.push((to, bytes));
                    }
                }
                Output::Transmit { transport: Transport::Tcp, conn: Some(conn), bytes, .. } => self.send(conn, bytes),
                Output::Transmit { transport: Transport::Tcp, conn: None, to, bytes } => {
                    let existing = self.dialed.get(&to).copied().filter(|c| self.conns.contains_key(c));
                    match existing {
                        Some(conn) => self.send(conn, bytes),
                        None if self.dialed.len() >= crate::limits::SIP_TCP_CONNECTIONS => {
                            log::warn!("sip: {} outbound connections open; message to {to} dropped", self.dialed.len());
                        }
                        None => {
                            let conn = super::writer::next_conn_id();
                            let (tx, rx) = mpsc::channel(crate::limits::CONN_SEND_QUEUE);
                            let _ = tx.try_send(bytes);
                            self.conns.insert(conn, ConnTx { tx, websocket: false });
                            self.dialed.insert(to, conn);
                            super::writer::dial_sip(to, conn, rx, self.inbox.clone());
                        }
                    }
                }
                Output::CtiSend { conn, mut text } => {
                    if !self.conns.get(&conn).is_some_and(|c| c.websocket) {
                        text.push('\n');
                    }
                    self.send(conn, text.into_bytes());
                }
                Output::HttpResponse { conn, status, content_type, body } => {
                    let mut bytes = format!(
                        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        reason(status),
                        body.len()
                    )
                    .into_bytes();
                    bytes.extend_from_slice(&body);
                    self.send(conn, bytes);
                    self.conns.remove(&conn);
                }
                Output::Close { conn } => {
                    self.conns.remove(&conn);
                }
                Output::Persist { name, bytes } => self.persist.push(name, bytes),
                Output::Replicate(delta) => {
                    if let Some(p) = self.pair.as_mut().filter(|p| p.serving()) {
                        p.replicate(delta);
                    }
                }
                Output::Media(cmd) => match &self.media {
                    // Never waits: a full queue drops the command (logged, counted).
                    // A Stop has a queue of its own with room for every stream, so it
                    // is not lost to a full command queue (MediaHandle::send).
                    Some(m) => {
                        if let Err(cmd) = m.send(cmd) {
                            log::warn!("media: command queue full; dropped {cmd:?}");
                        }
                    }
                    None => log::debug!("media path not running; dropped {cmd:?}"),
                },
                Output::Analog(a) => match self.analog.as_mut() {
                    Some(s) => s.output(a),
                    None => log::debug!("analog: no port driver; dropped {a:?}"),
                },
            }
        }
    }

    fn send(&mut self, conn: ConnId, bytes: Vec<u8>) {
        let Some(c) = self.conns.get(&conn) else { return };
        if c.tx.try_send(bytes).is_err() {
            log::warn!("conn {}: peer not reading (send queue full); closing", conn.0);
            self.conns.remove(&conn);
        }
    }
}

/// Room for one IP_PKTINFO or IPV6_PKTINFO control message.
const PKTINFO_SPACE: usize = 64;

/// Writes the control message that makes `src` the source address of a datagram to
/// `to` (IPv4 to IPv4, IPv6 to IPv6; any other mix is left to the kernel); returns its
/// length, 0 for none.
fn pktinfo(buf: &mut [u8; PKTINFO_SPACE], src: Option<std::net::IpAddr>, to: &std::net::SocketAddr) -> usize {
    use nix::libc;
    use std::net::IpAddr;
    let (level, kind, data): (i32, i32, heapless::Vec<u8, 32>) = match (src, to) {
        (Some(IpAddr::V4(s)), std::net::SocketAddr::V4(_)) => {
            let info = libc::in_pktinfo { ipi_ifindex: 0, ipi_spec_dst: libc::in_addr { s_addr: u32::from_ne_bytes(s.octets()) }, ipi_addr: libc::in_addr { s_addr: 0 } };
            // SAFETY: in_pktinfo is plain old data; its bytes are read, not interpreted.
            let bytes = unsafe { std::slice::from_raw_parts((&info as *const libc::in_pktinfo).cast::<u8>(), std::mem::size_of::<libc::in_pktinfo>()) };
            (libc::IPPROTO_IP, libc::IP_PKTINFO, heapless::Vec::from_slice(bytes).unwrap_or_default())
        }
        (Some(IpAddr::V6(s)), std::net::SocketAddr::V6(_)) => {
            let info = libc::in6_pktinfo { ipi6_addr: libc::in6_addr { s6_addr: s.octets() }, ipi6_ifindex: 0 };
            // SAFETY: as above.
            let bytes = unsafe { std::slice::from_raw_parts((&info as *const libc::in6_pktinfo).cast::<u8>(), std::mem::size_of::<libc::in6_pktinfo>()) };
            (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, heapless::Vec::from_slice(bytes).unwrap_or_default())
        }
        _ => return 0,
    };
    // SAFETY: CMSG_SPACE/CMSG_LEN are pure arithmetic on a small constant length.
    let (space, len) = unsafe { (libc::CMSG_SPACE(data.len() as u32) as usize, libc::CMSG_LEN(data.len() as u32) as usize) };
    if data.is_empty() || space > buf.len() {
        return 0;
    }
    buf.fill(0);
    let hdr = libc::cmsghdr { cmsg_len: len as _, cmsg_level: level, cmsg_type: kind };
    let hlen = std::mem::size_of::<libc::cmsghdr>();
    // SAFETY: the header is plain old data and `buf` holds `space` >= its size.
    let hbytes = unsafe { std::slice::from_raw_parts((&hdr as *const libc::cmsghdr).cast::<u8>(), hlen) };
    buf[..hlen].copy_from_slice(hbytes);
    // The data starts at CMSG_DATA, the header's size rounded up to the alignment.
    let off = len - data.len();
    buf[off..off + data.len()].copy_from_slice(&data);
    space
}

/// One sendmmsg(2) of `batch`, from `src` when given: how many went out (at least
/// one), or the error of the first.
fn send_batch(sock: &UdpSocket, batch: &[(std::net::SocketAddr, Vec<u8>)], src: Option<std::net::IpAddr>) -> std::io::Result<usize> {
    use nix::libc;
    use nix::sys::socket::{SockaddrLike, SockaddrStorage};
    use std::os::fd::AsRawFd;
    const N: usize = crate::limits::SIP_UDP_SEND_BATCH;
    // On the stack: at most N per call (the rest go in the caller's next call).
    let batch = &batch[..batch.len().min(N)];
    let addrs: heapless::Vec<SockaddrStorage, N> = batch.iter().map(|(to, _)| SockaddrStorage::from(*to)).collect();
    let mut ctl: heapless::Vec<[u8; PKTINFO_SPACE], N> = heapless::Vec::new();
    let mut ctl_len: heapless::Vec<usize, N> = heapless::Vec::new();
    if src.is_some() {
        for (to, _) in batch {
            let mut b = [0u8; PKTINFO_SPACE];
            let n = pktinfo(&mut b, src, to);
            let _ = ctl.push(b);
            let _ = ctl_len.push(n);
        }
    }
    let mut iovs: heapless::Vec<libc::iovec, N> =
        batch.iter().map(|(_, b)| libc::iovec { iov_base: b.as_ptr().cast_mut().cast(), iov_len: b.len() }).collect();
    let mut hdrs: heapless::Vec<libc::mmsghdr, N> = addrs
        .iter()
        .zip(iovs.iter_mut())
        .enumerate()
        .map(|(i, (a, iov))| {
            // SAFETY: an all-zero msghdr is a valid empty one (it may have padding
            // fields, so it is not built field by field).
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = a.as_ptr().cast_mut().cast();
            h.msg_hdr.msg_namelen = a.len();
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            if let (Some(c), Some(&n)) = (ctl.get_mut(i), ctl_len.get(i)) {
                if n > 0 {
                    h.msg_hdr.msg_control = c.as_mut_ptr().cast();
                    h.msg_hdr.msg_controllen = n as _;
                }
            }
            h
        })
        .collect();
    // SAFETY: every header points at an address, an iovec, bytes and control data
    // (`addrs`, `iovs`, `batch`, `ctl`) that outlive the call, and `hdrs.len()` headers
    // are passed.
    let n = unsafe { libc::sendmmsg(sock.as_raw_fd(), hdrs.as_mut_ptr(), hdrs.len() as _, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n as usize)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "",
    }
}
