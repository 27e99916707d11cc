//! The media path: RTP streams the engine commands (`MediaCmd`), run beside it on
//! one OS thread ("media") with a helper thread that reads prompt files
//! ("media-load"), both registered with the supervisor. Audio never reaches the
//! engine; what the streams notice comes back as `MediaEvent`s.
//!
//! One thread serves every stream: an epoll set holds all sockets, two more hold it or
//! not together with a wake-up socket for commands and a timerfd armed at the
//! earliest deadline (it waits per datagram when quiet, on a poll tick under load). Frame `n` of a
//! stream is due at `start + n * 20 ms` (a monotonic schedule, no drift); stream
//! starts are put on a 250 µs grid so that many streams share a wake-up. See
//! docs/media.md.

mod stats;
mod stream;
mod uring;

pub use crate::core::media::source::{melody, LoopAudio};
pub use stats::MediaStats;

use crate::config::Config;
use crate::core::media::g711::Law;
use crate::core::media::session::{self, Kind, Session, SessionConfig, SessionEvent, Verdict};
use crate::core::media::source::Source;
use crate::core::media::tone::{self, ToneGen};
use crate::core::rng::EngineRng;
use crate::core::{MediaCmd, MediaEvent, MediaSource, StreamId, Time};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use stats::inc;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stream::Stream;

/// How often RTP timeouts, RFC 4733 event timeouts and the CPU figure are checked.
const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// Stream starts are rounded up to this grid (µs), so streams share wake-ups.
const START_GRID_US: u64 = 250;

const TOKEN_WAKE: u64 = u64::MAX;
const TOKEN_TIMER: u64 = u64::MAX - 1;
const TOKEN_SOCKETS: u64 = u64::MAX - 2;

/// What the media path needs from the configuration.
pub struct MediaSettings {
    /// Where streams bind (the SIP listener's address; the wildcard on a wildcard bind).
    pub bind_ip: IpAddr,
    pub country: tone::Country,
    /// Music on hold: the configured file or the built-in melody.
    pub moh: Arc<LoopAudio>,
    /// `RtpTimeout` after this long without RTP (`MEDIA_RTP_TIMEOUT_MS`; tests shorten it).
    pub rtp_timeout: Duration,
    /// How the media thread waits for and moves datagrams (read once, at its start).
    pub io: MediaIo,
}

/// The media thread's I/O: io_uring where the kernel offers it (Linux 6.1 or later,
/// not disabled by `kernel.io_uring_disabled` or a seccomp filter), epoll otherwise.
/// `CTIBOX_MEDIA_IO=epoll` (or `io_uring`) in the environment chooses one for the
/// appliance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaIo {
    /// io_uring if it can be set up, else epoll.
    Auto,
    Epoll,
    /// io_uring or the thread fails.
    Uring,
}

impl MediaIo {
    /// From `CTIBOX_MEDIA_IO` (unset or unknown: `Auto`, the latter with a warning).
    pub fn from_env() -> MediaIo {
        match std::env::var("CTIBOX_MEDIA_IO").as_deref() {
            Err(_) | Ok("" | "auto") => MediaIo::Auto,
            Ok("epoll") => MediaIo::Epoll,
            Ok("io_uring") => MediaIo::Uring,
            Ok(other) => {
                log::warn!("media: CTIBOX_MEDIA_IO={other:?} is not auto, epoll or io_uring; using auto");
                MediaIo::Auto
            }
        }
    }
}

impl MediaSettings {
    /// Settings from a validated configuration. Reads `[media] moh_file` (blocking
    /// file I/O: call it off the engine loop); a file that went bad since validation
    /// is logged and the melody is used.
    pub fn from_config(cfg: &Config, bind_ip: IpAddr) -> MediaSettings {
        let pcm = match &cfg.media.moh_file {
            Some(path) => match crate::config::read_audio(path) {
                Ok(pcm) => pcm,
                Err(e) => {
                    log::error!("media: music on hold {}: {e}; playing the built-in melody", path.display());
                    melody()
                }
            },
            None => melody(),
        };
        MediaSettings {
            bind_ip,
            country: tone_country(cfg.system.country),
            moh: Arc::new(LoopAudio::new(pcm)),
            rtp_timeout: Duration::from_millis(crate::limits::MEDIA_RTP_TIMEOUT_MS),
            io: MediaIo::from_env(),
        }
    }
}

/// The tone plan for a configured country. Plans exist for us/ca, uk and de; the
/// other European countries use the 425 Hz (de) plan and Australia the uk one.
pub fn tone_country(c: crate::config::Country) -> tone::Country {
    use crate::config::Country as C;
    match c {
        C::Us | C::Ca => tone::Country::Us,
        C::Uk | C::Au => tone::Country::Uk,
        C::De | C::Fr | C::It | C::Es | C::Nl => tone::Country::De,
    }
}

/// What reaches the media thread.
enum Ctl {
    /// A command with its place in the engine's order (`MediaHandle::send`).
    Cmd(u64, MediaCmd),
    Settings(Arc<MediaSettings>),
    /// A prompt file the loader read (or could not).
    Loaded { slot: usize, gen: u64, result: Result<Vec<i16>, String> },
}

/// Where events go: returns false when there was no room (the event is counted as
/// dropped). The shell wraps the engine inbox's `try_send`.
pub type EventSink = Box<dyn FnMut(MediaEvent) -> bool + Send>;

/// The engine loop's side: non-blocking sends into the bounded command queue, and
/// `Stop`s into their own bounded queue (`MEDIA_STOP_QUEUE`) so that a full command
/// queue never loses one. Each command is numbered; the media thread applies a stop
/// after every command numbered before it, so a stop never overtakes its `Play`. One
/// thread sends (the engine loop): the numbers follow its order.
#[derive(Clone)]
pub struct MediaHandle {
    tx: SyncSender<Ctl>,
    stops: SyncSender<(u64, StreamId)>,
    seq: Arc<AtomicU64>,
    waker: Arc<UnixDatagram>,
    stats: Arc<MediaStats>,
}

impl MediaHandle {
    fn push(&self, ctl: Ctl) -> Result<(), Ctl> {
        match self.tx.try_send(ctl) {
            Ok(()) => {
                // A full wake-up socket already means a wake-up is pending.
                let _ = self.waker.send(&[1]);
                Ok(())
            }
            Err(TrySendError::Full(c)) | Err(TrySendError::Disconnected(c)) => {
                inc(&self.stats.commands_dropped);
                Err(c)
            }
        }
    }

    /// Queues a command without waiting; gives it back (and counts it) when the queue
    /// is full or the media thread is gone. A `Stop` goes into the stop queue, which
    /// has room for one per stream that can exist; only if that is full too (or the
    /// thread is gone) is it refused.
    pub fn send(&self, cmd: MediaCmd) -> Result<(), MediaCmd> {
        let seq = self.seq.fetch_add(1, Relaxed);
        if let MediaCmd::Stop { stream } = cmd {
            if self.stops.try_send((seq, stream)).is_ok() {
                let _ = self.waker.send(&[1]);
                return Ok(());
            }
        }
        self.push(Ctl::Cmd(seq, cmd)).map_err(|c| match c {
            Ctl::Cmd(_, cmd) => cmd,
            _ => unreachable!("pushed a command"),
        })
    }

    /// New settings after a reload (music on hold, country); streams playing music on
    /// hold switch at their next frame. False when the queue is full.
    pub fn reconfigure(&self, settings: MediaSettings) -> bool {
        self.push(Ctl::Settings(Arc::new(settings))).is_ok()
    }

    pub fn stats(&self) -> &Arc<MediaStats> {
        &self.stats
    }
}

/// A thread body to spawn (through the supervisor in the appliance).
pub type ThreadBody = Box<dyn FnOnce() -> Result<(), String> + Send>;

/// Builds the media path: the handle for the engine loop and the two thread bodies,
/// ("media", the runtime) and ("media-load", the prompt loader).
pub fn start(settings: MediaSettings, sink: EventSink) -> std::io::Result<(MediaHandle, Vec<(&'static str, ThreadBody)>)> {
    let (tx, rx) = mpsc::sync_channel(crate::limits::MEDIA_CMD_QUEUE);
    let (stops_tx, stops) = mpsc::sync_channel(crate::limits::MEDIA_STOP_QUEUE);
    let (wake_tx, wake_rx) = UnixDatagram::pair()?;
    wake_tx.set_nonblocking(true)?;
    wake_rx.set_nonblocking(true)?;
    let waker = Arc::new(wake_tx);
    let stats = Arc::new(MediaStats::default());
    let (load_tx, load_rx) = mpsc::sync_channel::<(usize, u64, PathBuf)>(crate::limits::MEDIA_LOAD_QUEUE);
    let handle = MediaHandle { tx: tx.clone(), stops: stops_tx, seq: Arc::new(AtomicU64::new(0)), waker: waker.clone(), stats: stats.clone() };
    let errno = |e: nix::Error| std::io::Error::from_raw_os_error(e as i32);
    // Three epoll sets: `sockets` holds every stream socket; `all` holds that set, the
    // timer and the wake-up socket (waiting for anything); `quiet` holds only the timer
    // and the wake-up socket (waiting out a poll tick, see `Runtime::run`).
    let new_epoll = || Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(errno);
    let (sockets, all, quiet) = (new_epoll()?, new_epoll()?, new_epoll()?);
    let timer = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC).map_err(errno)?;
    for set in [&all, &quiet] {
        set.add(&wake_rx, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_WAKE)).map_err(errno)?;
        set.add(&timer, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_TIMER)).map_err(errno)?;
    }
    all.add(&sockets.0, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_SOCKETS)).map_err(errno)?;
    let mut seed = [0u8; 32];
    {
        use std::io::Read;
        let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut seed));
    }
    let origin = Instant::now();
    let rt = Runtime {
        rx,
        stops,
        pending_stops: VecDeque::new(),
        wall_at_zero: wall_clock(),
        txbuf: vec![0u8; session::TRANSMIT_MAX],
        wake_rx,
        settings: Arc::new(settings),
        sink,
        stats,
        epoll: sockets,
        all,
        quiet,
        timer,
        armed: None,
        slots: Vec::new(),
        free: Vec::new(),
        ids: HashMap::new(),
        heap: BinaryHeap::new(),
        origin,
        rng: EngineRng::from_seed(seed),
        next_gen: 1,
        gens: Vec::new(),
        load_tx,
        housekeeping_at: origin + HOUSEKEEPING,
        uring: None,
    };
    let loader_waker = waker.clone();
    let loader: ThreadBody = Box::new(move || {
        // Ends (cleanly) when the runtime is gone.
        while let Ok((slot, gen, path)) = load_rx.recv() {
            let result = crate::config::read_audio(&path).map_err(|e| format!("prompt {}: {e}", path.display()));
            if tx.send(Ctl::Loaded { slot, gen, result }).is_err() {
                break;
            }
            let _ = loader_waker.send(&[1]);
        }
        Ok(())
    });
    let runtime: ThreadBody = Box::new(move || {
        realtime_priority();
        rt.run()
    });
    Ok((handle, vec![("media", runtime), ("media-load", loader)]))
}

struct Runtime {
    rx: Receiver<Ctl>,
    stops: Receiver<(u64, StreamId)>,
    /// Stops taken from their queue, applied in order among the commands (`take_commands`).
    pending_stops: VecDeque<(u64, StreamId)>,
    /// The wall clock at `origin` (RTCP's NTP timestamps).
    wall_at_zero: Duration,
    /// Where sessions write the datagram to send.
    txbuf: Vec<u8>,
    wake_rx: UnixDatagram,
    settings: Arc<MediaSettings>,
    sink: EventSink,
    stats: Arc<MediaStats>,
    /// Every stream socket (token: slot * 2, +1 for RTCP).
    epoll: Epoll,
    /// `epoll`, the timer and the wake-up socket.
    all: Epoll,
    /// The timer and the wake-up socket only.
    quiet: Epoll,
    timer: TimerFd,
    armed: Option<Instant>,
    slots: Vec<Option<Stream>>,
    free: Vec<usize>,
    ids: HashMap<StreamId, usize>,
    /// Send deadlines: (due, slot, the stream's generation and tick generation).
    heap: BinaryHeap<Reverse<(Time, usize, u64, u64)>>,
    origin: Instant,
    rng: EngineRng,
    next_gen: u64,
    /// Generation of the stream in each slot (so a reused slot ignores stale entries).
    gens: Vec<u64>,
    load_tx: SyncSender<(usize, u64, PathBuf)>,
    housekeeping_at: Instant,
    /// The io_uring backend, when the thread runs on it (`run_uring`); taken out while
    /// its completions are handled.
    uring: Option<Box<uring::Uring>>,
}

impl Runtime {
    /// The loop. Two ways to wait: while datagrams are arriving, the thread sleeps
    /// until the next poll tick (`MEDIA_POLL_TICK_US`) on the timer alone and then
    /// reads every socket that became readable meanwhile: one wake-up for a batch of
    /// datagrams instead of one each, which is what the thread's time went to under
    /// load (a wake-up costs more than forwarding a datagram). A tick that finds
    /// nothing returns to waiting on the sockets themselves, so a quiet box does not
    /// wake at the tick rate and a lone datagram is served at once. Paced sends keep
    /// their own deadlines in both modes.
    fn run(mut self) -> Result<(), String> {
        if self.settings.io != MediaIo::Epoll {
            // Set up here: the ring belongs to the thread that submits (SINGLE_ISSUER).
            match uring::Uring::new() {
                Ok(u) => {
                    log::info!("media: io_uring");
                    self.stats.io_uring.store(1, std::sync::atomic::Ordering::Relaxed);
                    self.uring = Some(Box::new(u));
                    return self.run_uring();
                }
                Err(e) if self.settings.io == MediaIo::Uring => return Err(format!("io_uring: {e}")),
                Err(e) => log::info!("media: no io_uring ({e}); epoll"),
            }
        } else {
            log::info!("media: epoll (CTIBOX_MEDIA_IO)");
        }
        // `all` and `quiet` hold three descriptors at most.
        let mut events = vec![EpollEvent::empty(); 4];
        let mut ready = vec![EpollEvent::empty(); 256];
        let mut buf = vec![0u8; 2048];
        let tick = Duration::from_micros(crate::limits::MEDIA_POLL_TICK_US);
        // Some(tick end) while batching.
        let mut batching: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let mut next = self.heap.peek().map_or(self.housekeeping_at, |Reverse(e)| self.instant(e.0).min(self.housekeeping_at));
            if let Some(t) = batching {
                next = next.min(t);
            }
            let timeout = if next <= now {
                EpollTimeout::ZERO
            } else {
                if self.armed != Some(next) {
                    let d = next - now;
                    let ts = TimeSpec::from_duration(d.max(Duration::from_nanos(1)));
                    self.timer.set(Expiration::OneShot(ts), TimerSetTimeFlags::empty()).map_err(|e| format!("timerfd: {e}"))?;
                    self.armed = Some(next);
                }
                EpollTimeout::NONE
            };
            let set = if batching.is_some() { &self.quiet } else { &self.all };
            let n = match set.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(nix::Error::EINTR) => 0,
                Err(e) => return Err(format!("epoll_wait: {e}")),
            };
            // Paced sends first: a burst of received datagrams must not delay them.
            self.send_due();
            let mut wake = false;
            for ev in &events[..n] {
                match ev.data() {
                    TOKEN_WAKE => wake = true,
                    TOKEN_TIMER => {
                        let _ = self.timer.wait();
                        self.armed = None;
                    }
                    _ => {} // TOKEN_SOCKETS: read below in any case
                }
            }
            if batching.is_some_and(|t| Instant::now() < t) && !wake {
                continue; // a paced send's deadline, not the tick
            }
            let (got, behind) = self.read_ready(&mut ready, &mut buf)?;
            // Behind (sockets still readable after the last round): no tick's wait.
            batching = (got > 0).then(|| if behind { Instant::now() } else { Instant::now() + tick });
            if !self.after_wake(wake) {
                return Ok(());
            }
        }
    }

    /// The loop on io_uring: the same two ways to wait as `run`, by the ring. Idle, a
    /// wait for one completion returns at the first datagram. Under traffic the wait
    /// is for `MEDIA_URING_BATCH` completions or the tick, whichever comes first (the
    /// kernel does not wake the thread per datagram), and the kernel does the queued
    /// receives, in this thread, before it returns. Completions are handled whenever
    /// the thread is up (they cost no system call); the forwards they queue go out
    /// together in one submission.
    fn run_uring(mut self) -> Result<(), String> {
        use std::os::fd::AsRawFd;
        let mut buf = vec![0u8; 2048];
        let tick = Duration::from_micros(crate::limits::MEDIA_POLL_TICK_US);
        let mut batching: Option<Instant> = None;
        let wake_fd = self.wake_rx.as_raw_fd();
        self.uring.as_mut().ok_or("no ring")?.arm_wake(wake_fd).map_err(|e| format!("io_uring: {e}"))?;
        loop {
            let now = Instant::now();
            let mut next = self.heap.peek().map_or(self.housekeeping_at, |Reverse(e)| self.instant(e.0).min(self.housekeeping_at));
            if let Some(t) = batching {
                next = next.min(t);
            }
            let want = if batching.is_some() { crate::limits::MEDIA_URING_BATCH } else { 1 };
            self.uring.as_mut().ok_or("no ring")?.wait(want, Some(next.saturating_duration_since(now)))?;
            // Paced sends first: a burst of received datagrams must not delay them.
            self.send_due();
            let (got, wake) = self.reap_uring(&mut buf)?;
            // A full batch: more may be queued, so no tick's wait.
            let behind = got >= crate::limits::MEDIA_URING_BATCH;
            batching = if got > 0 {
                Some(if behind { Instant::now() } else { batching.filter(|t| *t > Instant::now()).unwrap_or_else(|| Instant::now() + tick) })
            } else {
                None
            };
            if !self.after_wake(wake) {
                return Ok(());
            }
        }
    }

    /// Handles every completion the ring holds, submits the forwards they queued and
    /// records their added latency. Returns how many datagrams came and whether the
    /// wake-up socket was readable.
    fn reap_uring(&mut self, buf: &mut [u8]) -> Result<(usize, bool), String> {
        use std::os::fd::AsRawFd;
        let mut io = self.uring.take().ok_or("no ring")?;
        let (mut got, mut wake) = (0, false);
        // Bounded: a full ring's worth; the forwards' own completions come after their
        // submission below and are taken in a second pass (so a failed send is counted
        // before the thread sleeps).
        let mut budget = io.capacity();
        for pass in 0..2 {
            if pass == 1 && !io.has_completions() {
                break;
            }
            while budget > 0 {
                let Some(ev) = io.next(buf) else { break };
                budget -= 1;
                let (token, gen, more, err) = match ev {
                    uring::Event::Datagram { token, gen, len, from, arrived, more } => {
                        if self.live(token, gen) {
                            got += 1;
                            self.on_datagram(token, &buf[..len], from, arrived, Some(&mut io));
                            // Forwards go out every few datagrams, not all after the batch.
                            if io.queued() >= crate::limits::MEDIA_URING_SUBMIT {
                                if let Err(e) = self.submit_forwards(&mut io) {
                                    self.uring = Some(io);
                                    return Err(e);
                                }
                            }
                        }
                        (token, gen, more, 0)
                    }
                    uring::Event::NoDatagram { token, gen, err, more } => (token, gen, more, err),
                    uring::Event::Wake { more } => {
                        wake = true;
                        if !more {
                            io.arm_wake(self.wake_rx.as_raw_fd()).map_err(|e| format!("io_uring: {e}"))?;
                        }
                        continue;
                    }
                    uring::Event::Sent { ok } => {
                        if !ok {
                            self.stats.relayed.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                            inc(&self.stats.send_errors);
                        }
                        continue;
                    }
                };
                use nix::libc::{ECANCELED, ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, ENOBUFS};
                if err == -ENOBUFS {
                    inc(&self.stats.rx_buffers_exhausted);
                } else if err < 0 && err != -ECANCELED {
                    log::trace!("media: receive on token {token}: errno {}", -err);
                }
                // A receive that ended for a passing reason (buffers ran out, an ICMP
                // error, a datagram that could not be read) is armed again. Any other
                // error would come back at once: that socket stops receiving, said
                // once, and the stream's RTP timeout reports it.
                if more || err == -ECANCELED || !self.live(token, gen) {
                    continue;
                }
                if !matches!(-err, 0 | ENOBUFS | ECONNREFUSED | EHOSTUNREACH | ENETUNREACH) {
                    log::error!("media: token {token}: receive failed (errno {}); not armed again", -err);
                } else if let Some(Some(s)) = self.slots.get((token / 2) as usize) {
                    let fd = if token % 2 == 1 { s.rtcp.as_raw_fd() } else { s.rtp.as_raw_fd() };
                    if let Err(e) = io.arm_recv(fd, token, gen) {
                        log::warn!("media: stream {}: cannot re-arm its receive: {e}", s.id.0);
                    }
                }
            }
            if let Err(e) = self.submit_forwards(&mut io) {
                self.uring = Some(io);
                return Err(e);
            }
        }
        self.uring = Some(io);
        Ok((got, wake))
    }

    /// Submits the queued forwards and records their added latency (kernel arrival to
    /// this submission, which sends them).
    fn submit_forwards(&self, io: &mut uring::Uring) -> Result<(), String> {
        io.submit()?;
        if !io.arrivals.is_empty() {
            let now = wall_clock();
            for at in io.arrivals.drain(..) {
                self.stats.relay_delay.record(now.saturating_sub(at));
            }
        }
        Ok(())
    }

    /// True when `token` still belongs to the stream generation `gen` (ring bits).
    fn live(&self, token: u64, gen: u64) -> bool {
        self.slots.get((token / 2) as usize).and_then(Option::as_ref).is_some_and(|s| uring::gen_bits(s.io_gen) == gen)
    }

    /// The end of every pass of either loop: drains the wake-up socket if it woke the
    /// thread, takes the commands, sends what is due and does housekeeping when due.
    /// False when the engine side is gone (the thread ends).
    fn after_wake(&mut self, wake: bool) -> bool {
        if wake {
            let mut b = [0u8; 64];
            while self.wake_rx.recv(&mut b).is_ok() {}
        }
        if !self.take_commands() {
            return false;
        }
        self.send_due();
        if Instant::now() >= self.housekeeping_at {
            self.housekeeping();
        }
        true
    }

    /// Reads one datagram from every readable socket, again while some are readable
    /// (level-triggered: a socket with more queued comes back in the next round), at
    /// most `MEDIA_RECV_ROUNDS` rounds so commands and housekeeping are not starved.
    /// Returns how many readable sockets were served (a datagram each) and whether the
    /// last round still found sockets readable.
    fn read_ready(&mut self, ready: &mut [EpollEvent], buf: &mut [u8]) -> Result<(usize, bool), String> {
        let mut got = 0;
        for _ in 0..crate::limits::MEDIA_RECV_ROUNDS {
            let n = match self.epoll.wait(ready, EpollTimeout::ZERO) {
                Ok(n) => n,
                Err(nix::Error::EINTR) => 0,
                Err(e) => return Err(format!("epoll_wait: {e}")),
            };
            if n == 0 {
                return Ok((got, false));
            }
            for ev in &ready[..n] {
                self.on_readable(ev.data(), buf);
                self.send_due();
            }
            got += n;
        }
        Ok((got, true))
    }

    /// Takes the queued commands and stops, the stops in their place among the
    /// commands: a stop taken here was queued after every command numbered before it,
    /// so those are in the command queue by now. False when the engine side is gone.
    fn take_commands(&mut self) -> bool {
        while let Ok(s) = self.stops.try_recv() {
            self.pending_stops.push_back(s);
        }
        loop {
            match self.rx.try_recv() {
                Ok(Ctl::Cmd(seq, cmd)) => {
                    self.stops_before(seq);
                    self.on_cmd(cmd);
                }
                Ok(ctl) => self.on_ctl(ctl),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return false,
            }
        }
        self.stops_before(u64::MAX);
        true
    }

    /// Applies the pending stops numbered before `seq`.
    fn stops_before(&mut self, seq: u64) {
        while let Some(&(n, stream)) = self.pending_stops.front() {
            if n >= seq {
                return;
            }
            self.pending_stops.pop_front();
            self.on_cmd(MediaCmd::Stop { stream });
        }
    }

    fn time(&self, at: Instant) -> Time {
        Time(at.saturating_duration_since(self.origin).as_micros() as u64)
    }

    fn instant(&self, t: Time) -> Instant {
        self.origin + Duration::from_micros(t.as_micros())
    }

    fn emit(&mut self, ev: MediaEvent) {
        log::debug!("media: {ev:?}");
        if !(self.sink)(ev) {
            inc(&self.stats.events_dropped);
            log::warn!("media: engine inbox full; event dropped");
        }
    }

    /// Turns what the stream in `slot` reported into events and counters; closes it
    /// when the orphan rule fired.
    fn drain_events(&mut self, slot: usize) {
        loop {
            let Some(Some(s)) = self.slots.get_mut(slot) else { return };
            let id = s.id;
            let Some(ev) = s.session.poll_event() else { return };
            match ev {
                SessionEvent::Digit(digit) => {
                    inc(&self.stats.digits);
                    self.emit(MediaEvent::Digit { stream: id, digit });
                }
                SessionEvent::PlayoutDone => self.emit(MediaEvent::PlayoutDone { stream: id }),
                SessionEvent::RtpTimeout => self.emit(MediaEvent::RtpTimeout { stream: id }),
                SessionEvent::FramesSkipped(n) => {
                    self.stats.frames_skipped.fetch_add(n, Relaxed);
                }
                SessionEvent::Orphaned => {
                    self.close(slot, true);
                    inc(&self.stats.streams_orphaned);
                    let reason = "orphaned: nothing received and no command for too long; closed".to_string();
                    self.emit(MediaEvent::Failed { stream: id, reason });
                    return;
                }
            }
        }
    }

    /// One datagram from a readable socket.
    fn on_readable(&mut self, token: u64, buf: &mut [u8]) {
        let slot = (token / 2) as usize;
        let is_rtcp = token % 2 == 1;
        let Some(Some(s)) = self.slots.get_mut(slot) else { return };
        let sock = if is_rtcp { &s.rtcp } else { &s.rtp };
        let relaying = s.relay.is_some();
        let got = if relaying { recv_stamped(sock, buf) } else { sock.recv_from(buf).map(|(n, f)| (n, f, None)) };
        let (len, from, arrived) = match got {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) => {
                // ICMP errors (port unreachable) surface here on Linux; not fatal.
                log::trace!("media: stream {}: recv: {e}", s.id.0);
                return;
            }
        };
        self.on_datagram(token, &buf[..len], from, arrived, None);
    }

    /// A datagram received for `token` (slot * 2, +1 for RTCP), with its kernel arrival
    /// time on relayed streams. The session decides; a relayed one is forwarded:
    /// through the ring when given (submitted by the caller), else at once.
    fn on_datagram(&mut self, token: u64, data: &[u8], from: SocketAddr, arrived: Option<Duration>, ring: Option<&mut uring::Uring>) {
        let slot = (token / 2) as usize;
        let is_rtcp = token % 2 == 1;
        let now = self.time(Instant::now());
        let Some(Some(s)) = self.slots.get_mut(slot) else { return };
        let r = if is_rtcp { s.session.handle_rtcp(now, from, data) } else { s.session.handle_rtp(now, from, data) };
        let (partner, events) = (s.relay, s.session.has_events());
        let st = &self.stats;
        match (r.verdict, is_rtcp) {
            (Verdict::Accepted, false) => inc(&st.packets_received),
            (Verdict::Accepted, true) => inc(&st.rtcp_received),
            (Verdict::Malformed, false) => inc(&st.bad_packets),
            (Verdict::Malformed, true) => inc(&st.rtcp_bad),
            (Verdict::WrongSsrc, _) => inc(&st.wrong_ssrc),
            (Verdict::Foreign, _) => inc(&st.rtp_foreign_dropped),
        }
        if r.relatched {
            inc(&st.relatched);
        }
        if r.wrong_payload_type {
            inc(&st.wrong_payload_type);
        }
        if r.bad_payload {
            inc(&st.bad_packets);
        }
        if events {
            self.drain_events(slot);
        }
        let Some(p) = partner.filter(|_| r.forward) else { return };
        let Some(Some(o)) = self.slots.get(p) else { return };
        let (sock, to) = if is_rtcp { (&o.rtcp, o.session.remote_rtcp()) } else { (&o.rtp, o.session.remote()) };
        if let Some(r) = ring {
            use std::os::fd::AsRawFd;
            if r.send(sock.as_raw_fd(), data, to, arrived) {
                // Counted now; a send that fails is taken back at its completion.
                inc(&self.stats.relayed);
                return;
            }
        }
        match sock.send_to(data, to) {
            Ok(_) => {
                inc(&self.stats.relayed);
                // Added latency: kernel arrival to forwarded.
                if let Some(at) = arrived {
                    self.stats.relay_delay.record(wall_clock().saturating_sub(at));
                }
            }
            Err(_) => inc(&self.stats.send_errors),
        }
    }

    fn on_ctl(&mut self, ctl: Ctl) {
        match ctl {
            Ctl::Cmd(_, cmd) => self.on_cmd(cmd),
            Ctl::Settings(s) => {
                self.settings = s;
                let moh = self.settings.moh.clone();
                for s in self.slots.iter_mut().flatten() {
                    if let Source::Loop { audio, pos } = s.session.source_mut() {
                        *audio = moh.clone();
                        *pos = 0;
                    }
                }
            }
            Ctl::Loaded { slot, gen, result } => {
                if self.gens.get(slot) != Some(&gen) {
                    return; // the stream stopped meanwhile
                }
                let Some(Some(s)) = self.slots.get_mut(slot) else { return };
                let id = s.id;
                match result {
                    Ok(pcm) => {
                        if let Source::Prompt { pcm: p @ None, .. } = s.session.source_mut() {
                            *p = Some(pcm);
                        }
                    }
                    Err(reason) => {
                        self.close(slot, true);
                        self.emit(MediaEvent::Failed { stream: id, reason });
                    }
                }
            }
        }
    }

    /// The open stream `id`, touched by a command (orphan rule).
    fn touched(&mut self, id: StreamId) -> Option<&mut Stream> {
        let now = self.time(Instant::now());
        let s = self.ids.get(&id).and_then(|&i| self.slots[i].as_mut())?;
        s.session.touch(now);
        Some(s)
    }

    fn on_cmd(&mut self, cmd: MediaCmd) {
        log::debug!("media: {cmd:?}");
        match cmd {
            MediaCmd::Play { stream, local_port, remote, codec, source } => self.play(stream, local_port, remote, codec, source),
            MediaCmd::SendDigits { stream, digits, dtmf_pt } => match self.touched(stream) {
                Some(s) => {
                    let taken = s.session.send_digits(&digits, dtmf_pt);
                    if taken < digits.chars().count() {
                        log::debug!("media: stream {}: {} of {:?} queued as DTMF", stream.0, taken, digits);
                    }
                }
                None => log::debug!("media: SendDigits on unknown stream {}", stream.0),
            },
            MediaCmd::CollectDigits { stream, dtmf_pt } => match self.touched(stream) {
                Some(s) => s.session.collect_digits(dtmf_pt),
                None => log::debug!("media: collect digits on unknown stream {}", stream.0),
            },
            MediaCmd::Stop { stream } => {
                if let Some(&slot) = self.ids.get(&stream) {
                    self.close(slot, true);
                }
            }
            MediaCmd::Relay { a, b } => self.relay(a, b),
        }
    }

    fn make_source(&mut self, source: &MediaSource, slot: usize, gen: u64) -> Result<Source, String> {
        Ok(match source {
            MediaSource::MusicOnHold => Source::Loop { audio: self.settings.moh.clone(), pos: 0 },
            MediaSource::Tone(kind) => Source::Tone(Box::new(ToneGen::for_plan(self.settings.country, *kind))),
            MediaSource::Silence => Source::Silence,
            MediaSource::Prompt(path) => {
                self.load_tx.try_send((slot, gen, path.clone())).map_err(|_| "prompt loader busy".to_string())?;
                Source::Prompt { pcm: None, pos: 0 }
            }
        })
    }

    fn play(&mut self, id: StreamId, local_port: u16, remote: SocketAddr, codec: crate::config::Codec, source: MediaSource) {
        let law = match codec {
            crate::config::Codec::Pcmu => Law::Ulaw,
            crate::config::Codec::Pcma => Law::Alaw,
        };
        // A Play on an open stream changes what it sends (same port) or moves it.
        if let Some(&slot) = self.ids.get(&id) {
            let same_port = self.slots[slot].as_ref().is_some_and(|s| s.local_port == local_port);
            if same_port {
                // A new generation, so a prompt still loading for the previous Play is
                // not taken for this one; the paced sends move to it (their deadlines
                // under the old one are skipped as stale). The sockets and their
                // receives keep `io_gen`.
                let gen = self.next_gen;
                self.next_gen += 1;
                self.gens[slot] = gen;
                let now = self.time(Instant::now());
                match self.make_source(&source, slot, gen) {
                    Ok(src) => {
                        if let Some(s) = self.slots[slot].as_mut() {
                            s.session.set_source(src);
                            s.session.set_law(law);
                            // A new remote is a renegotiation: it opens the latch window.
                            s.session.set_remote(now, remote);
                            if let Some(due) = s.session.next_send() {
                                self.heap.push(Reverse((due, slot, gen, s.tick_gen)));
                            }
                        }
                    }
                    Err(reason) => {
                        self.close(slot, true);
                        self.emit(MediaEvent::Failed { stream: id, reason });
                    }
                }
                return;
            }
            self.close(slot, true);
        }
        if self.ids.len() >= crate::limits::MEDIA_MAX_STREAMS {
            let reason = format!("capacity: {} streams open", self.ids.len());
            self.emit(MediaEvent::Failed { stream: id, reason });
            return;
        }
        let bind = |port: u16| -> std::io::Result<UdpSocket> {
            let s = UdpSocket::bind(SocketAddr::new(self.settings.bind_ip, port))?;
            s.set_nonblocking(true)?;
            Ok(s)
        };
        let sockets = match local_port.checked_add(1) {
            Some(rtcp_port) => bind(local_port).and_then(|r| Ok((r, bind(rtcp_port)?))),
            None => Err(std::io::Error::other("no port above for RTCP")),
        };
        let (rtp, rtcp) = match sockets {
            Ok(p) => p,
            Err(e) => {
                let reason = format!("cannot bind {}:{local_port}/{}: {e}", self.settings.bind_ip, local_port.wrapping_add(1));
                self.emit(MediaEvent::Failed { stream: id, reason });
                return;
            }
        };
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.gens.push(0);
            self.slots.len() - 1
        });
        let gen = self.next_gen;
        self.next_gen += 1;
        self.gens[slot] = gen;
        let src = match self.make_source(&source, slot, gen) {
            Ok(s) => s,
            Err(reason) => {
                self.free.push(slot);
                self.emit(MediaEvent::Failed { stream: id, reason });
                return;
            }
        };
        let reg = match self.uring.as_mut() {
            Some(u) => {
                use std::os::fd::AsRawFd;
                let r = u.arm_recv(rtp.as_raw_fd(), slot as u64 * 2, gen).and_then(|()| u.arm_recv(rtcp.as_raw_fd(), slot as u64 * 2 + 1, gen));
                if r.is_err() {
                    u.cancel_fds(&[rtp.as_raw_fd(), rtcp.as_raw_fd()]);
                }
                r.map_err(|e| format!("io_uring: {e}"))
            }
            None => {
                let flags = EpollFlags::EPOLLIN;
                self.epoll
                    .add(&rtp, EpollEvent::new(flags, slot as u64 * 2))
                    .and_then(|()| self.epoll.add(&rtcp, EpollEvent::new(flags, slot as u64 * 2 + 1)))
                    .map_err(|e| format!("epoll: {e}"))
            }
        };
        if let Err(reason) = reg {
            self.gens[slot] = 0;
            self.free.push(slot);
            self.emit(MediaEvent::Failed { stream: id, reason });
            return;
        }
        let start = grid(self.time(Instant::now()));
        let mut cfg = SessionConfig::new(remote, law, src, self.rng.next_u64(), self.wall_at_zero);
        cfg.rtp_timeout = self.settings.rtp_timeout;
        let session = Session::new(start, cfg);
        let s = Stream { id, session, rtp, rtcp, local_port, relay: None, tick_gen: 0, io_gen: gen };
        self.heap.push(Reverse((start, slot, gen, s.tick_gen)));
        self.slots[slot] = Some(s);
        self.ids.insert(id, slot);
        inc(&self.stats.streams_opened);
        self.stats.streams.store(self.ids.len() as u64, Relaxed);
    }

    fn close(&mut self, slot: usize, bye: bool) {
        let Some(mut s) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        if bye {
            let now = self.time(Instant::now());
            if let Some(t) = s.session.close(now, &mut self.txbuf) {
                match s.rtcp.send_to(&self.txbuf[..t.len], t.to) {
                    Ok(_) => inc(&self.stats.rtcp_sent),
                    Err(_) => inc(&self.stats.send_errors),
                }
            }
        }
        match self.uring.as_mut() {
            Some(u) => {
                use std::os::fd::AsRawFd;
                u.cancel_fds(&[s.rtp.as_raw_fd(), s.rtcp.as_raw_fd()]);
            }
            None => {
                let _ = self.epoll.delete(&s.rtp);
                let _ = self.epoll.delete(&s.rtcp);
            }
        }
        self.ids.remove(&s.id);
        self.gens[slot] = 0;
        self.free.push(slot);
        if let Some(p) = s.relay {
            self.unrelay(p);
        }
        self.stats.streams.store(self.ids.len() as u64, Relaxed);
    }

    /// Ends the relay of the stream in `slot`: it resumes its own source on its
    /// schedule's grid.
    fn unrelay(&mut self, slot: usize) {
        let now = self.time(Instant::now());
        let gen = self.gens.get(slot).copied().unwrap_or(0);
        if let Some(Some(s)) = self.slots.get_mut(slot) {
            s.relay = None;
            s.tick_gen += 1;
            s.session.set_relayed(now, false);
            if let Some(due) = s.session.next_send() {
                self.heap.push(Reverse((due, slot, gen, s.tick_gen)));
            }
        }
    }

    fn relay(&mut self, a: StreamId, b: StreamId) {
        let (Some(&sa), Some(&sb)) = (self.ids.get(&a), self.ids.get(&b)) else {
            log::debug!("media: relay of unknown stream {} / {}", a.0, b.0);
            return;
        };
        if sa == sb {
            return;
        }
        let now = self.time(Instant::now());
        for (x, y) in [(sa, sb), (sb, sa)] {
            if let Some(old) = self.slots[x].as_ref().and_then(|s| s.relay) {
                if old != y {
                    self.unrelay(old);
                }
            }
            if let Some(s) = self.slots[x].as_mut() {
                s.relay = Some(y);
                s.tick_gen += 1; // no more paced frames while relayed
                s.session.set_relayed(now, true);
                s.session.touch(now);
                // Kernel arrival times, to measure the latency the relay adds.
                if let Err(e) = nix::sys::socket::setsockopt(&s.rtp, nix::sys::socket::sockopt::ReceiveTimestampns, &true) {
                    log::debug!("media: stream {}: no receive timestamps: {e}", s.id.0);
                }
            }
        }
    }

    /// Sends what the due streams have to send (their frame, an RTCP report).
    fn send_due(&mut self) {
        loop {
            let now = self.time(Instant::now());
            let Some(&Reverse((due, slot, gen, tick))) = self.heap.peek() else {
                return;
            };
            if due > now {
                return;
            }
            self.heap.pop();
            if self.gens.get(slot) != Some(&gen) {
                continue;
            }
            let Some(Some(s)) = self.slots.get_mut(slot) else {
                continue;
            };
            if s.tick_gen != tick {
                continue;
            }
            while let Some(t) = s.session.poll_transmit(now, &mut self.txbuf) {
                let sock = match t.kind {
                    Kind::Rtp { due } => {
                        self.stats.record_lateness(now.since(due));
                        &s.rtp
                    }
                    Kind::Rtcp => &s.rtcp,
                };
                match sock.send_to(&self.txbuf[..t.len], t.to) {
                    Ok(_) => inc(if matches!(t.kind, Kind::Rtp { .. }) { &self.stats.packets_sent } else { &self.stats.rtcp_sent }),
                    Err(e) => {
                        inc(&self.stats.send_errors);
                        log::trace!("media: stream {}: send to {}: {e}", s.id.0, t.to);
                    }
                }
            }
            if let Some(next) = s.session.next_send() {
                self.heap.push(Reverse((next, slot, gen, tick)));
            }
            if s.session.has_events() {
                self.drain_events(slot);
            }
        }
    }

    /// Every `HOUSEKEEPING`: the sessions' slower timers (RFC 4733 event timeouts, RTP
    /// timeout, orphan rule) and the thread's CPU figure.
    fn housekeeping(&mut self) {
        let now = Instant::now();
        let time = self.time(now);
        for slot in 0..self.slots.len() {
            let Some(s) = self.slots[slot].as_mut() else { continue };
            s.session.handle_timeout(time);
            if s.session.has_events() {
                self.drain_events(slot);
            }
        }
        if let Ok(t) = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID) {
            let ns = t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64;
            self.stats.thread_cpu_ns.store(ns, Relaxed);
        }
        self.housekeeping_at = now + HOUSEKEEPING;
    }
}

/// The next point of the start grid at or after `t`.
fn grid(t: Time) -> Time {
    Time(t.as_micros().div_ceil(START_GRID_US).saturating_mul(START_GRID_US))
}

/// Time since the Unix epoch: the clock of the kernel's receive timestamps
/// (SO_TIMESTAMPNS), against which the relay's added latency is measured, and of
/// RTCP's NTP timestamps.
fn wall_clock() -> Duration {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
}

/// Receives one datagram with the kernel's arrival time (SO_TIMESTAMPNS, enabled on
/// relayed streams), as time since the Unix epoch.
fn recv_stamped(sock: &std::net::UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, std::net::SocketAddr, Option<std::time::Duration>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
    use std::os::fd::AsRawFd;
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT).map_err(std::io::Error::from)?;
    let mut at = None;
    for c in msg.cmsgs().into_iter().flatten() {
        if let ControlMessageOwned::ScmTimestampns(ts) = c {
            at = Some(std::time::Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32));
        }
    }
    let from = msg
        .address
        .and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| std::net::SocketAddr::from((v4.ip(), v4.port())))
                .or_else(|| a.as_sockaddr_in6().map(|v6| std::net::SocketAddr::from((v6.ip(), v6.port()))))
        })
        .ok_or_else(|| std::io::Error::other("datagram without a source address"))?;
    Ok((msg.bytes, from, at))
}

/// Real-time priority for the thread that paces RTP (SCHED_FIFO, priority
/// `limits::MEDIA_RT_PRIORITY`), so other work on the board cannot delay packets. Needs
/// CAP_SYS_NICE or an RLIMIT_RTPRIO (the systemd unit grants LimitRTPRIO=95); without
/// it the thread keeps the normal policy and says so once.
fn realtime_priority() {
    realtime_priority_for("media");
}

/// Real-time priority for the calling thread (the media thread, a port's audio
/// thread), logged under `who`.
pub(crate) fn realtime_priority_for(who: &str) {
    let param = nix::libc::sched_param { sched_priority: crate::limits::MEDIA_RT_PRIORITY };
    // SAFETY: sched_setscheduler only reads `param`; 0 means the calling thread.
    let rc = unsafe { nix::libc::sched_setscheduler(0, nix::libc::SCHED_FIFO, &param) };
    if rc == 0 {
        log::info!("{who}: real-time priority (SCHED_FIFO {})", crate::limits::MEDIA_RT_PRIORITY);
    } else {
        log::info!("{who}: no real-time priority ({}); running at normal priority", std::io::Error::last_os_error());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // the shell's own test
    use super::*;
    use crate::core::media::rtcp::{self, RtcpPacket};

    /// An RTP/RTCP pair of sockets on 127.0.0.1 (even port, RTCP above).
    fn pair() -> (UdpSocket, UdpSocket) {
        loop {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            let p = s.local_addr().unwrap().port();
            if p.is_multiple_of(2) && p < 65534 {
                if let Ok(r) = UdpSocket::bind(("127.0.0.1", p + 1)) {
                    return (s, r);
                }
            }
        }
    }

    /// A Stop sent while the command queue is full still arrives, and is applied after
    /// the Play queued before it (not overtaking it, which would leak the stream).
    #[test]
    fn a_stop_gets_through_a_full_command_queue_and_after_its_play() {
        let settings = MediaSettings {
            bind_ip: "127.0.0.1".parse().unwrap(),
            country: tone::Country::Us,
            moh: Arc::new(LoopAudio::new(vec![0; 160])),
            rtp_timeout: Duration::from_secs(30),
            io: MediaIo::Epoll,
        };
        let (tx, events) = mpsc::channel();
        let (h, threads) = start(settings, Box::new(move |e| tx.send(e).is_ok())).unwrap();
        let (peer, peer_rtcp) = pair();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        peer_rtcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (ours, ours_rtcp) = pair();
        let port = ours.local_addr().unwrap().port();
        drop((ours, ours_rtcp));
        let play = |id| MediaCmd::Play { stream: StreamId(id), local_port: port, remote: peer.local_addr().unwrap(), codec: crate::config::Codec::Pcmu, source: MediaSource::Silence };
        // The media thread is not running yet: the queue fills up.
        h.send(play(1)).unwrap();
        let mut queued = 1;
        while h.send(MediaCmd::CollectDigits { stream: StreamId(999), dtmf_pt: None }).is_ok() {
            queued += 1;
        }
        assert_eq!(queued, crate::limits::MEDIA_CMD_QUEUE);
        assert_eq!(MediaStats::get(&h.stats().commands_dropped), 1);
        assert!(h.send(MediaCmd::Stop { stream: StreamId(1) }).is_ok(), "a Stop is never refused for a full command queue");
        for (_, body) in threads {
            std::thread::spawn(move || body().unwrap());
        }
        // Stream 1 opened and closed in one pass: its BYE is the first RTCP, and it sent
        // no RTP (the Stop came right after the queue, in order).
        let mut b = [0u8; 1500];
        let n = peer_rtcp.recv(&mut b).expect("a BYE within 5 s");
        let p = rtcp::parse_compound(&b[..n]).unwrap();
        assert!(matches!(p.last(), Some(RtcpPacket::Bye { .. })), "{p:?}");
        // Its port is free again: a new stream on it plays (a leaked stream 1 would
        // make this Play fail with the port in use).
        h.send(play(2)).unwrap();
        let n = peer.recv(&mut b).expect("RTP from stream 2 within 5 s");
        assert!(crate::core::media::rtp::parse(&b[..n]).is_ok());
        assert!(events.try_recv().is_err(), "no Failed event");
        assert_eq!(MediaStats::get(&h.stats().streams), 1);
    }
}
