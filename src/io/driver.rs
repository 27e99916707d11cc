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
    /// A clean stop: the engine saves what it holds back (`Input::Stop`), its outputs
    /// are drained into the persist queue, then the sender is told.
    Stop(tokio::sync::oneshot::Sender<()>),
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
}

impl Driver {
    /// Runs forever; returns only if every input source is gone.
    pub async fn run(mut self, mut inbox: mpsc::Receiver<Event>) -> Result<(), String> {
        let tick = Duration::from_millis(crate::limits::ENGINE_TICK_MS);
        loop {
            self.heartbeat.beat();
            let idle = Instant::now() + tick;
            let deadline = self.engine.poll_timeout().map_or(idle, |t| self.clock.instant(t).min(idle));
            tokio::select! {
                ev = inbox.recv() => match ev {
                    Some(Event::Input(input)) => {
                        if let Input::ConnClosed { conn } | Input::ConnPanicked { conn: Some(conn) } = &input {
                            self.conns.remove(conn);
                            self.dialed.retain(|_, c| c != conn);
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
                    Some(Event::Stall) => {
                        log::warn!("fault injection: stalling the engine loop");
                        loop { std::thread::sleep(Duration::from_secs(3600)); }
                    }
                    None => return Err("all input sources closed".into()),
                },
                _ = tokio::time::sleep_until(deadline) => {
                    if self.engine.poll_timeout().is_some_and(|t| t <= self.clock.now()) {
                        self.engine.handle_input(self.clock.now(), Input::Timeout);
                    }
                }
            }
            self.drain().await;
        }
    }

    async fn drain(&mut self) {
        // Checks the verifier had no room for, answered once the outputs are drained.
        let mut busy: Vec<u64> = Vec::new();
        loop {
            self.drain_once(&mut busy).await;
            if busy.is_empty() {
                return;
            }
            let now = self.clock.now();
            for ticket in busy.drain(..) {
                self.engine.handle_input(now, Input::SecretVerified { ticket, verdict: crate::core::Verdict::Busy });
            }
        }
    }

    async fn drain_once(&mut self, busy: &mut Vec<u64>) {
        while let Some(out) = self.engine.poll_output() {
            match out {
                Output::VerifySecret(job) => {
                    let rejected = match &self.verifier {
                        Some(v) => v.submit(job).err(),
                        None => Some(job),
                    };
                    if let Some(job) = rejected {
                        busy.push(job.ticket);
                    }
                }
                Output::Transmit { transport: Transport::Udp, to, bytes, .. } => {
                    if let Some(sock) = &self.udp {
                        if let Err(e) = sock.try_send_to(&bytes, to) {
                            if e.kind() == std::io::ErrorKind::WouldBlock {
                                let _ = sock.send_to(&bytes, to).await;
                            } else {
                                log::debug!("sip: send to {to}: {e}");
                            }
                        }
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
                // The peer link is not there yet: replicated facts are only logged.
                Output::Replicate(delta) => log::trace!("replicate: {delta:?}"),
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
