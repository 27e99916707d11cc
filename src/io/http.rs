//! The HTTP port: one request per connection, answered by the engine; and
//! `GET /cti` with `Upgrade: websocket`, which becomes a CTI connection over
//! WebSocket (RFC 6455). The opening handshake is done here; framing (masking,
//! fragmentation, ping/pong, close) is tokio-tungstenite's. Holds no CTI state.

use super::driver::Event;
use super::framing::{self, HttpHead};
use super::listeners::CtiSlot;
use super::writer::{attach, next_conn_id, read_loop};
use crate::core::{ConnId, CtiTransport, HttpRequest, Input};
use crate::limits;
use futures_util::{SinkExt, StreamExt};
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// RFC 6455 §1.3: appended to the client's key before hashing.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Accepts HTTP forever.
pub async fn http_loop(listener: TcpListener, inbox: mpsc::Sender<Event>) -> Result<(), String> {
    let open = Rc::new(Cell::new(0usize));
    loop {
        let (stream, peer) = listener.accept().await.map_err(|e| format!("HTTP accept: {e}"))?;
        if open.get() >= limits::HTTP_CONNECTIONS {
            log::warn!("http: refusing connection from {peer}: {} open", open.get());
            continue;
        }
        // One place among `HTTP_CONNECTIONS`, given back on drop (or on upgrade).
        let slot = super::writer::ConnSlot::take(&open);
        let inbox = inbox.clone();
        super::writer::spawn_conn(None, inbox.clone(), serve(stream, peer, inbox, slot));
    }
}

async fn serve(mut stream: TcpStream, peer: SocketAddr, inbox: mpsc::Sender<Event>, slot: super::writer::ConnSlot) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(1024);
    let wait = Duration::from_millis(limits::HTTP_REQUEST_TIMEOUT_MS);
    let head = match timeout(wait, read_head(&mut stream, &mut buf)).await {
        Ok(Ok(Some(h))) => h,
        Ok(Err(why)) => {
            log::debug!("http: {peer}: {why}");
            let _ = stream.write_all(&plain_response(400, why)).await;
            return;
        }
        Ok(Ok(None)) | Err(_) => return,
    };
    if is_upgrade(&head) {
        let reply = match handshake(&head) {
            Ok(accept) => accept,
            Err((status, why)) => {
                log::debug!("http: {peer}: websocket refused: {why}");
                let _ = stream.write_all(&refusal(status, why)).await;
                return;
            }
        };
        drop(slot);
        let Some(cti) = CtiSlot::take() else {
            log::warn!("cti: refusing websocket from {peer}: {} open", limits::CTI_CONNECTIONS);
            let _ = stream.write_all(&plain_response(503, "too many CTI connections")).await;
            return;
        };
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
        let leftover = buf.split_off(head.head_len);
        // Its own guarded task with its connection id, so a panic in it closes the
        // CTI session at once (ConnPanicked) rather than at its heartbeat deadline.
        let conn = next_conn_id();
        super::writer::spawn_conn(Some(conn), inbox.clone(), websocket(stream, peer, conn, leftover, inbox, cti));
        return;
    }
    // Plain HTTP: take the body, hand the request to the engine, and keep reading
    // (bounded, framed as before) until the client goes.
    let total = head.head_len + head.content_length;
    let body = timeout(wait, async {
        let mut chunk = [0u8; 4096];
        while buf.len() < total {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        true
    });
    if !matches!(body.await, Ok(true)) {
        return;
    }
    let conn = next_conn_id();
    let Some(rd) = attach(stream, conn, &inbox).await else { return };
    let request = HttpRequest { method: head.method, path: head.path, body: buf[head.head_len..total].to_vec() };
    if inbox.send(Event::Input(Input::Http { conn, request })).await.is_err() {
        return;
    }
    read_loop(rd, conn, limits::HTTP_MAX_REQUEST * 2, http_frame, |b| http_deliver(conn, b), inbox).await;
    drop(slot);
}

fn http_frame(b: &[u8]) -> framing::Frame {
    match framing::http_head(b) {
        Ok(Some(h)) if b.len() >= h.head_len + h.content_length => framing::Frame::Message(h.head_len + h.content_length),
        Ok(_) => framing::Frame::Incomplete,
        Err(why) => framing::Frame::Broken(why),
    }
}

fn http_deliver(conn: ConnId, b: &[u8]) -> Option<Input> {
    let h = framing::http_head(b).ok()??;
    let request = HttpRequest { method: h.method, path: h.path, body: b[h.head_len..].to_vec() };
    Some(Input::Http { conn, request })
}

/// Reads until a whole request head is in `buf`: Ok(None) on EOF first.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Option<HttpHead>, &'static str> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(h) = framing::http_head(buf)? {
            return Ok(Some(h));
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Whether a header holds `token` in its comma-separated list (case-insensitive).
fn has_token(head: &HttpHead, name: &str, token: &str) -> bool {
    head.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The client asks to switch to WebSocket.
pub fn is_upgrade(head: &HttpHead) -> bool {
    has_token(head, "upgrade", "websocket")
}

/// RFC 6455 §4.2.2: `Sec-WebSocket-Accept` for a client's key.
pub fn accept_key(key: &str) -> String {
    use base64ct::Encoding;
    use sha1::Digest;
    let digest = sha1::Sha1::new().chain_update(key.trim().as_bytes()).chain_update(WS_GUID.as_bytes()).finalize();
    let mut out = [0u8; 28];
    base64ct::Base64::encode(&digest, &mut out).map(str::to_string).unwrap_or_default()
}

/// Checks an upgrade request (RFC 6455 §4.2.1) and returns the 101 response, or the
/// status and reason to refuse it with.
pub fn handshake(head: &HttpHead) -> Result<String, (u16, &'static str)> {
    use base64ct::Encoding;
    if head.method != "GET" {
        return Err((405, "a WebSocket handshake must be a GET"));
    }
    let path = head.path.split(['?', '#']).next().unwrap_or("");
    if path != "/cti" {
        return Err((404, "WebSocket is served at /cti only"));
    }
    if !has_token(head, "connection", "upgrade") {
        return Err((400, "Connection: Upgrade is missing"));
    }
    if head.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err((426, "only WebSocket version 13 is supported"));
    }
    let Some(key) = head.header("sec-websocket-key") else { return Err((400, "Sec-WebSocket-Key is missing")) };
    let mut raw = [0u8; 18];
    if base64ct::Base64::decode(key.trim(), &mut raw).map(|k| k.len()) != Ok(16) {
        return Err((400, "Sec-WebSocket-Key is not 16 bytes in base64"));
    }
    Ok(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key)
    ))
}

fn plain_response(status: u16, why: &str) -> Vec<u8> {
    let reason = match status {
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        _ => "Service Unavailable",
    };
    let body = format!("{why}\n");
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn refusal(status: u16, why: &str) -> Vec<u8> {
    let mut r = plain_response(status, why);
    if status == 426 {
        // RFC 6455 §4.4: name the versions the server speaks.
        let at = r.windows(2).position(|w| w == b"\r\n").map_or(0, |i| i + 2);
        r.splice(at..at, b"Sec-WebSocket-Version: 13\r\n".iter().copied());
    }
    r
}

/// The tungstenite limits: one CTI message per text message, bounded like a TCP line.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(limits::CTI_MAX_LINE))
        .max_frame_size(Some(limits::CTI_MAX_LINE))
        .max_write_buffer_size(limits::CTI_WS_WRITE_BUFFER)
}

/// How a read error ends the connection: the close code to send, if any.
fn close_for(e: &WsError) -> Option<(CloseCode, &'static str)> {
    match e {
        WsError::Capacity(_) => Some((CloseCode::Size, "message too big")),
        WsError::Utf8(_) => Some((CloseCode::Invalid, "text is not UTF-8")),
        WsError::Protocol(_) => Some((CloseCode::Protocol, "protocol violation")),
        _ => None,
    }
}

/// Runs one CTI connection over WebSocket until either side ends it.
async fn websocket(stream: TcpStream, peer: SocketAddr, conn: ConnId, leftover: Vec<u8>, inbox: mpsc::Sender<Event>, _slot: CtiSlot) {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(limits::CTI_SEND_QUEUE);
    if inbox.send(Event::WebSocket { conn, writer: tx }).await.is_err() {
        return;
    }
    let opened = Input::CtiOpened { conn, peer, transport: CtiTransport::WebSocket };
    if inbox.send(Event::Input(opened)).await.is_err() {
        return;
    }
    log::debug!("cti: conn {}: websocket from {peer}", conn.0);
    let mut ws = WebSocketStream::from_partially_read(stream, leftover, Role::Server, Some(ws_config())).await;
    let send_wait = Duration::from_millis(limits::CTI_SEND_TIMEOUT_MS);
    let close: Option<(CloseCode, &'static str)> = loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(bytes) => {
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    match timeout(send_wait, ws.send(Message::text(text))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break None,
                        Err(_) => {
                            log::warn!("cti: conn {}: peer not reading; closing", conn.0);
                            break None;
                        }
                    }
                }
                // The engine closed it, or the driver dropped a peer that fell behind.
                None => break Some((CloseCode::Normal, "")),
            },
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    if t.trim().is_empty() {
                        continue;
                    }
                    super::writer::fault_check(t.as_bytes());
                    let input = Input::CtiMessage { conn, text: t.as_str().to_string() };
                    if inbox.send(Event::Input(input)).await.is_err() {
                        break Some((CloseCode::Away, "server stopping"));
                    }
                }
                Some(Ok(Message::Binary(_))) => break Some((CloseCode::Unsupported, "CTI messages are text frames")),
                // Pings are answered by tungstenite; a peer's close is acknowledged by it too.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_) | Message::Close(_))) => {}
                Some(Err(e)) => {
                    log::debug!("cti: conn {}: websocket: {e}", conn.0);
                    break close_for(&e);
                }
                None => break None,
            },
        }
    };
    if let Some((code, reason)) = close {
        let frame = CloseFrame { code, reason: reason.into() };
        let wait = Duration::from_millis(limits::CTI_WS_CLOSE_TIMEOUT_MS);
        // Send our close, then give the peer a bounded time to answer it.
        let _ = timeout(wait, async {
            if ws.close(Some(frame)).await.is_ok() {
                while let Some(Ok(_)) = ws.next().await {}
            }
        })
        .await;
    }
    let _ = inbox.send(Event::Input(Input::ConnClosed { conn })).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> HttpHead {
        framing::http_head(text.as_bytes()).unwrap().unwrap()
    }

    const GOOD: &str = "GET /cti HTTP/1.1\r\nHost: box\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn accept_key_matches_rfc6455_example() {
        // RFC 6455 §1.3.
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn handshake_accepts_a_proper_upgrade() {
        let h = head(GOOD);
        assert!(is_upgrade(&h));
        let r = handshake(&h).unwrap();
        assert!(r.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{r}");
        assert!(r.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\n"));
        // A query string is allowed.
        assert!(handshake(&head(&GOOD.replace("/cti ", "/cti?app=crm "))).is_ok());
    }

    #[test]
    fn handshake_refusals_name_the_problem() {
        assert!(!is_upgrade(&head("GET /status HTTP/1.1\r\nHost: x\r\n\r\n")));
        assert_eq!(handshake(&head(&GOOD.replace("/cti ", "/other "))), Err((404, "WebSocket is served at /cti only")));
        assert_eq!(handshake(&head(&GOOD.replace("GET ", "POST "))).unwrap_err().0, 405);
        assert_eq!(handshake(&head(&GOOD.replace("Version: 13", "Version: 8"))).unwrap_err().0, 426);
        assert_eq!(handshake(&head(&GOOD.replace("keep-alive, Upgrade", "keep-alive"))).unwrap_err().0, 400);
        assert_eq!(handshake(&head(&GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="))).unwrap_err(), (400, "Sec-WebSocket-Key is not 16 bytes in base64"));
        let r = String::from_utf8(refusal(426, "only WebSocket version 13 is supported")).unwrap();
        assert!(r.starts_with("HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n"), "{r}");
    }
}
