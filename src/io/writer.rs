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
