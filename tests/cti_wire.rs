//! CTI protocol 1 on the wire, against the real binary: a TCP client and a WebSocket
//! client each get the hello, get an error reply naming the problem for bad JSON, an
//! unknown request and a missing field, and stay usable; WebSocket framing rules
//! (fragments, ping, binary, oversize, unmasked frames) close with the right codes;
//! and `ctibox cti raw` round-trips against the running box.
// Tests of the real binary use sockets, files and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::Message;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn check_hello(v: &Value) {
    assert_eq!(v["type"], "hello", "{v}");
    assert_eq!(v["server"], "ctibox");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["protocol"], 1);
}

/// The error replies every transport must give: (request, id, code, words the message must hold).
fn bad_cases() -> Vec<(&'static str, Value, &'static str, &'static str)> {
    vec![
        (r#"{"type":"open","id":1,"device":"#, Value::Null, "bad_json", "not valid JSON"),
        (r#"{"type":"dance","id":2}"#, Value::from(2), "unknown_request", "\"dance\""),
        (r#"{"type":"open","id":"three"}"#, Value::from("three"), "missing_field", "\"device\""),
        (
            r#"{"type":"answer","id":4,"call":"c1","media":{"ip":"192.0.2.1","port":99999}}"#,
            Value::from(4),
            "bad_field",
            "\"media.port\"",
        ),
    ]
}

fn check_error(reply: &Value, id: &Value, code: &str, words: &str) {
    assert_eq!(reply["type"], "reply", "{reply}");
    assert_eq!(&reply["id"], id, "{reply}");
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["error"]["code"], code, "{reply}");
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(words), "message {message:?} should name {words}");
}

/// A valid request is answered with its id (whatever the session layer decides).
fn check_answered(reply: &Value, id: &Value) {
    assert_eq!(reply["type"], "reply", "{reply}");
    assert_eq!(&reply["id"], id, "{reply}");
    assert!(reply["ok"].is_boolean(), "{reply}");
}

struct Tcp {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Tcp {
    fn connect(b: &BoxProc) -> Tcp {
        let s = TcpStream::connect(b.cti).unwrap();
        s.set_read_timeout(Some(GUARD)).unwrap();
        Tcp { w: s.try_clone().unwrap(), r: BufReader::new(s) }
    }
    fn send(&mut self, line: &str) {
        self.w.write_all(format!("{line}\n").as_bytes()).unwrap();
    }
    fn recv(&mut self) -> Value {
        let mut line = String::new();
        let n = self.r.read_line(&mut line).expect("a line within the guard");
        assert!(n > 0, "connection closed");
        assert!(line.ends_with('\n'));
        json(&line)
    }
    /// True when the box closes the connection (EOF or a reset); false when it is
    /// still open at the guard time.
    fn closed(&mut self) -> bool {
        let mut buf = [0u8; 256];
        loop {
            match self.r.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return false,
                Err(_) => return true,
            }
        }
    }
}

#[test]
fn tcp_client_gets_hello_errors_naming_the_problem_and_stays_usable() {
    let b = BoxProc::start(Start::default());
    let mut c = Tcp::connect(&b);
    check_hello(&c.recv());
    for (req, id, code, words) in bad_cases() {
        c.send(req);
        check_error(&c.recv(), &id, code, words);
    }
    // Blank lines are not requests; CRLF line ends are accepted.
    c.w.write_all(b"\n\r\n{\"type\":\"heartbeat\",\"id\":5}\r\n").unwrap();
    check_answered(&c.recv(), &Value::from(5));
    // Pipelined requests are answered in order.
    c.w.write_all(b"{\"type\":\"heartbeat\",\"id\":6}\n{\"type\":\"nope\",\"id\":7}\n{\"type\":\"list_devices\",\"id\":8}\n").unwrap();
    check_answered(&c.recv(), &Value::from(6));
    check_error(&c.recv(), &Value::from(7), "unknown_request", "\"nope\"");
    check_answered(&c.recv(), &Value::from(8));
    // A second connection has its own hello.
    let mut d = Tcp::connect(&b);
    check_hello(&d.recv());
}

#[test]
fn tcp_line_over_the_limit_closes_the_connection() {
    let b = BoxProc::start(Start::default());
    let mut c = Tcp::connect(&b);
    check_hello(&c.recv());
    let long = vec![b'x'; 70 * 1024];
    let _ = c.w.write_all(&long);
    let _ = c.w.write_all(b"\n");
    assert!(c.closed());
}

fn ws_connect(b: &BoxProc) -> tungstenite::WebSocket<TcpStream> {
    let s = TcpStream::connect(b.http).unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    let (ws, resp) = tungstenite::client(format!("ws://{}/cti", b.http), s).expect("websocket handshake");
    assert_eq!(resp.status(), 101);
    ws
}

fn ws_recv(ws: &mut tungstenite::WebSocket<TcpStream>) -> Value {
    loop {
        match ws.read().expect("a message within the guard") {
            Message::Text(t) => return json(t.as_str()),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Reads until the server's close frame; returns its code.
fn ws_close_code(ws: &mut tungstenite::WebSocket<TcpStream>) -> CloseCode {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(f))) => return f.code,
            Ok(Message::Close(None)) => panic!("close without a code"),
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    }
}

#[test]
fn websocket_client_gets_hello_errors_naming_the_problem_and_stays_usable() {
    let b = BoxProc::start(Start::default());
    let mut ws = ws_connect(&b);
    check_hello(&ws_recv(&mut ws));
    for (req, id, code, words) in bad_cases() {
        ws.send(Message::text(req)).unwrap();
        check_error(&ws_recv(&mut ws), &id, code, words);
    }
    ws.send(Message::text(r#"{"type":"heartbeat","id":5}"#)).unwrap();
    check_answered(&ws_recv(&mut ws), &Value::from(5));

    // A message in fragments is one request.
    ws.write(Message::Frame(Frame::message(&br#"{"type":"heart"#[..], OpCode::Data(Data::Text), false))).unwrap();
    ws.write(Message::Frame(Frame::message(&br#"beat","id":6}"#[..], OpCode::Data(Data::Continue), true))).unwrap();
    ws.flush().unwrap();
    check_answered(&ws_recv(&mut ws), &Value::from(6));

    // Pings are answered.
    ws.send(Message::Ping(b"are you there".to_vec().into())).unwrap();
    match ws.read().unwrap() {
        Message::Pong(p) => assert_eq!(&p[..], b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }
    // Still usable; then a clean close is acknowledged.
    ws.send(Message::text(r#"{"type":"heartbeat","id":"last"}"#)).unwrap();
    check_answered(&ws_recv(&mut ws), &Value::from("last"));
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("close not acknowledged: {e}"),
        }
    }
}

#[test]
fn websocket_binary_and_oversized_messages_close_with_their_codes() {
    let b = BoxProc::start(Start::default());
    let mut ws = ws_connect(&b);
    check_hello(&ws_recv(&mut ws));
    ws.send(Message::binary(b"{}".to_vec())).unwrap();
    assert_eq!(ws_close_code(&mut ws), CloseCode::Unsupported);

    let mut ws = ws_connect(&b);
    check_hello(&ws_recv(&mut ws));
    let big = format!(r#"{{"type":"heartbeat","id":1,"pad":"{}"}}"#, "x".repeat(70 * 1024));
    ws.send(Message::text(big)).unwrap();
    assert_eq!(ws_close_code(&mut ws), CloseCode::Size);

    // Over-long in fragments that are each small is refused the same way.
    let mut ws = ws_connect(&b);
    check_hello(&ws_recv(&mut ws));
    let piece = vec![b' '; 16 * 1024];
    ws.write(Message::Frame(Frame::message(piece.clone(), OpCode::Data(Data::Text), false))).unwrap();
    for _ in 0..5 {
        ws.write(Message::Frame(Frame::message(piece.clone(), OpCode::Data(Data::Continue), false))).unwrap();
    }
    ws.flush().unwrap();
    assert_eq!(ws_close_code(&mut ws), CloseCode::Size);
}

/// Opens a WebSocket by hand, so frames can break the rules a library would keep.
fn raw_ws(b: &BoxProc, request: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(b.http).unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "response head cut short: {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    (s, String::from_utf8(head).unwrap())
}

fn upgrade(path: &str, version: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: box\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {version}\r\n\r\n"
    )
}

/// Reads one unfragmented server frame: (opcode, payload).
fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).unwrap();
    assert_eq!(h[1] & 0x80, 0, "server frames are never masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).unwrap();
            u16::from_be_bytes(l) as usize
        }
        127 => panic!("unexpectedly long frame"),
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
    (h[0], payload)
}

#[test]
fn websocket_unmasked_client_frame_is_a_protocol_error() {
    let b = BoxProc::start(Start::default());
    let (mut s, head) = raw_ws(&b, &upgrade("/cti", "13"));
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{head}");
    let (op, hello) = read_frame(&mut s);
    assert_eq!(op, 0x81, "hello is one final text frame");
    check_hello(&json(std::str::from_utf8(&hello).unwrap()));
    // A text frame without a mask (RFC 6455 §5.1: the server must close).
    let body = br#"{"type":"heartbeat","id":1}"#;
    let mut frame = vec![0x81, body.len() as u8];
    frame.extend_from_slice(body);
    s.write_all(&frame).unwrap();
    let (op, payload) = read_frame(&mut s);
    assert_eq!(op, 0x88, "a close frame");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1002);
}

#[test]
fn ws_upgrade_elsewhere_gets_404_a_wrong_version_426_naming_13_and_http_still_answers() {
    let b = BoxProc::start(Start::default());
    let (_, head) = raw_ws(&b, &upgrade("/elsewhere", "13"));
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
    let (_, head) = raw_ws(&b, &upgrade("/cti", "8"));
    assert!(head.starts_with("HTTP/1.1 426 "), "{head}");
    assert!(head.contains("Sec-WebSocket-Version: 13\r\n"), "{head}");
    // Plain HTTP on the same port still works.
    assert_eq!(b.http_get("/status").0, 200);
}

/// Runs `ctibox cti` with `stdin`; returns (exit code, stdout lines, stderr).
fn cli(args: &[&str], env: &[(&str, &str)], stdin: &str) -> (Option<i32>, Vec<String>, String) {
    let mut cmd = Command::new(bin());
    cmd.arg("cti").args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.env_remove("CTIBOX_CTI_SECRET").env_remove("CTIBOX_CTI_APP");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let (mut o, mut e) = (String::new(), String::new());
        let _ = out.read_to_string(&mut o);
        let _ = err.read_to_string(&mut e);
        let _ = tx.send((o, e));
    });
    let Ok((o, e)) = rx.recv_timeout(GUARD) else {
        let _ = child.kill();
        panic!("ctibox cti did not finish within the guard");
    };
    let code = child.wait().unwrap().code();
    (code, o.lines().map(str::to_string).collect(), e)
}

#[test]
fn cli_raw_round_trips_against_the_box() {
    let b = BoxProc::start(Start::default());
    let addr = b.cti.to_string();
    let input = "{\"type\":\"heartbeat\",\"id\":1}\n\n{oops\n{\"type\":\"open\",\"id\":\"o\"}\n";
    let (code, out, err) = cli(&["--connect", &addr, "raw"], &[], input);
    assert_eq!(code, Some(0), "stderr: {err}");
    assert_eq!(out.len(), 4, "{out:?}");
    check_hello(&json(&out[0]));
    check_answered(&json(&out[1]), &Value::from(1));
    check_error(&json(&out[2]), &Value::Null, "bad_json", "not valid JSON");
    check_error(&json(&out[3]), &Value::from("o"), "missing_field", "\"device\"");
}

#[test]
fn cli_prints_the_servers_error_and_fails() {
    let b = BoxProc::start(Start::default());
    let addr = b.cti.to_string();
    let (code, out, err) = cli(&["--connect", &addr, "--app", "nobody", "devices"], &[("CTIBOX_CTI_SECRET", "wrong secret")], "");
    assert_eq!(code, Some(1), "stdout {out:?}");
    assert!(err.starts_with("ctibox cti: login: "), "{err}");
    // No secret at all is named before anything is sent.
    let (code, _, err) = cli(&["--connect", &addr, "--app", "nobody", "devices"], &[], "");
    assert_eq!(code, Some(1));
    assert!(err.contains("CTIBOX_CTI_SECRET"), "{err}");
    // Nothing listening: the connection error is named.
    drop(b);
    let (code, _, err) = cli(&["--connect", &addr, "raw"], &[], "");
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot connect"), "{err}");
    // A usage error is exit 2 with the usage.
    let (code, _, err) = cli(&["drop", "rp1"], &[], "");
    assert_eq!(code, Some(2));
    assert!(err.contains("drop DEVICE CALL"), "{err}");
}
