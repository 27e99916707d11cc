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
                Frame::Message(len) => {
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
    tokio::task::spawn_local(async move {
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
