//! Per-connection plumbing for stream sockets: one reader task that frames bytes into
//! engine inputs, one writer task fed by a bounded queue. A peer that will not read
//! (its queue fills) is disconnected rather than buffered without bound.

use super::driver::Event;
use super::framing::Frame;
use crate::core::{ConnId, Input};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Spawns one connection's task. A panic inside it (a bug, never input: parsers do
/// not panic) ends only that task: the panic is logged, the engine is told
/// (`ConnPanicked`, counted on /status) and drops the connection, and whatever the
/// task owned, its connection slot included, is dropped with it.
pub fn spawn_conn<F>(conn: Option<ConnId>, inbox: mpsc::Sender<Event>, fut: F)
where
    F: std::future::Future<Output = ()> + 'static,
{
    use futures_util::FutureExt;
    tokio::task::spawn_local(async move {
        let result = std::panic::AssertUnwindSafe(fut).catch_unwind().await;
        if let Err(p) = result {
            let what = conn.map_or_else(|| "http request".to_string(), |c| format!("conn {}", c.0));
            log::error!("{what}: task panicked ({}); connection closed", super::supervisor::panic_text(p));
            let _ = inbox.send(Event::Input(Input::ConnPanicked { conn })).await;
        }
    });
}

/// One place among a listener's connections (`open` counts them), given back on drop:
/// when the connection's task ends, and also when it panics.
pub struct ConnSlot(std::rc::Rc<std::cell::Cell<usize>>);

impl ConnSlot {
    pub fn take(open: &std::rc::Rc<std::cell::Cell<usize>>) -> ConnSlot {
        open.set(open.get() + 1);
        ConnSlot(open.clone())
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// Fault injection for tests (CTIBOX_FAULT=panic-on-marker): a connection task that
/// reads a frame holding this marker panics, as a bug would.
const FAULT_MARKER: &[u8] = b"ctibox-fault: panic";

fn fault_panics() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("CTIBOX_FAULT").as_deref() == Ok("panic-on-marker"))
}

/// Panics when fault injection is on and `frame` holds the marker.
pub(super) fn fault_check(frame: &[u8]) {
    if fault_panics() && frame.windows(FAULT_MARKER.len()).any(|w| w == FAULT_MARKER) {
        panic!("fault injection: marker in a frame");
    }
}

pub fn next_conn_id() -> ConnId {
    ConnId(NEXT_CONN.fetch_add(1, Ordering::Relaxed))
}

/// Splits a stream, starts its writer, and registers the writer with the driver.
/// Returns the read half for the protocol's reader loop.
pub async fn attach(stream: TcpStream, conn: ConnId, inbox: &mpsc::Sender<Event>) -> Option<OwnedReadHalf> {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel(crate::limits::CONN_SEND_QUEUE);
    tokio::task::spawn_local(write_loop(wr, rx));
    inbox.send(Event::Stream { conn, writer: tx }).await.ok()?;
    Some(rd)
}

async fn write_loop(mut wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(bytes) = rx.recv().await {
        if wr.write_all(&bytes).await.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

/// Reads `rd`, cutting frames with `frame` and handing each to `deliver`, until EOF,
/// an error, or a framing failure. Always reports `ConnClosed` at the end.
pub async fn read_loop<F, D>(mut rd: OwnedReadHalf, conn: ConnId, cap: usize, frame: F, mut deliver: D, inbox: mpsc::Sender<Event>)
where
    F: Fn(&[u8]) -> Frame,
    D: FnMut(&[u8]) -> Option<Input>,
{
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    'outer: loop {
        let n = match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if buf.len() + n > cap {
            log::warn!("conn {}: input buffer over {} bytes; closing", conn.0, cap);
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match frame(&buf) {
                // A framer that makes no progress would spin this loop forever.
                Frame::Message(0) | Frame::KeepAlive(0) => {
                    log::warn!("conn {}: empty frame; closing", conn.0);
                    break 'outer;
                }
                Frame::Message(len) => {
                    fault_check(&buf[..len]);
                    let input = deliver(&buf[..len]);
                    buf.drain(..len);
                    if let Some(input) = input {
                        if inbox.send(Event::Input(input)).await.is_err() {
                            break 'outer;
                        }
                    }
                }
                Frame::KeepAlive(len) => {
                    buf.drain(..len);
                }
                Frame::Incomplete => break,
                Frame::Broken(why) => {
                    log::warn!("conn {}: {why}; closing", conn.0);
                    break 'outer;
                }
            }
        }
    }
    let _ = inbox.send(Event::Input(Input::ConnClosed { conn })).await;
}

/// Opens an outbound SIP connection to `to` (RFC 3261 §18.1.1) for messages already
/// queued on `rx`; reads it like an accepted one. A failed connect reports the
/// connection closed, so the engine's transactions time out as for a lost datagram.
pub fn dial_sip(to: std::net::SocketAddr, conn: ConnId, rx: mpsc::Receiver<Vec<u8>>, inbox: mpsc::Sender<Event>) {
    spawn_conn(Some(conn), inbox.clone(), async move {
        let connect = tokio::time::timeout(std::time::Duration::from_secs(5), TcpStream::connect(to)).await;
        let stream = match connect {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                log::info!("sip: cannot connect to {to}: {e}");
                let _ = inbox.send(Event::Input(Input::ConnClosed { conn })).await;
                return;
            }
            Err(_) => {
                log::info!("sip: connecting to {to} timed out");
                let _ = inbox.send(Event::Input(Input::ConnClosed { conn })).await;
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(local) = stream.local_addr() else { return };
        let (rd, wr) = stream.into_split();
        tokio::task::spawn_local(write_loop(wr, rx));
        let deliver = |msg: &[u8]| {
            Some(Input::Sip { transport: crate::core::Transport::Tcp, conn: Some(conn), from: to, local, bytes: msg.to_vec() })
        };
        read_loop(rd, conn, crate::limits::SIP_TCP_BUFFER, super::framing::sip_frame, deliver, inbox).await;
    });
}
