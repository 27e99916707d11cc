//! The appliance boots on its embedded default: the banner names what listens where,
//! every listed port really answers, and SIGINT/SIGTERM stop it cleanly.
// Tests of the real binary use sockets, files and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;
use common::*;
use nix::sys::signal::Signal;
use std::io::Read;
use std::net::{TcpStream, UdpSocket};

fn status(b: &BoxProc) -> serde_json::Value {
    let (code, body) = b.http_get("/status");
    assert_eq!(code, 200, "body {body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn boots_on_embedded_default_and_every_listed_port_answers() {
    let mut b = BoxProc::start(Start::default());
    // Only stdout: log lines on stderr may arrive interleaved.
    let banner: Vec<String> = b.seen.iter().filter_map(|l| match l {
        Line::Out(s) => Some(s.clone()),
        Line::Err(_) => None,
    }).collect();
    assert!(banner[0].starts_with(&format!("ctibox {} on board sim", env!("CARGO_PKG_VERSION"))), "{banner:?}");
    assert!(banner.iter().any(|l| l.contains("<embedded default>")), "{banner:?}");
    assert!(banner.iter().any(|l| l.contains(&b.data.path().display().to_string())), "{banner:?}");

    // HTTP answers with the box's status.
    let s = status(&b);
    assert_eq!(s["board"], "sim");
    assert_eq!(s["config_generation"], 1);

    // SIP over UDP reaches the engine: the receive counter moves.
    let before = s["sip"]["received"].as_u64().unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(b"OPTIONS sip:box SIP/2.0\r\nContent-Length: 0\r\n\r\n", b.sip).unwrap();
    // The datagram and the HTTP request go through one engine loop in order of
    // arrival; ask until the count moved (bounded by the harness guard).
    let mut moved = false;
    for _ in 0..200 {
        if status(&b)["sip"]["received"].as_u64().unwrap() > before {
            moved = true;
            break;
        }
    }
    assert!(moved, "SIP datagram never reached the engine");

    // SIP over TCP and CTI accept connections on the listed ports.
    TcpStream::connect(b.sip).expect("SIP TCP listens on the SIP port");
    TcpStream::connect(b.cti).expect("CTI listens");

    b.signal(Signal::SIGINT);
    assert_eq!(b.wait_exit(), Some(0), "SIGINT is a clean stop: {:#?}", b.seen);
}

#[test]
fn sigterm_is_a_clean_stop_and_closes_listeners() {
    let mut b = BoxProc::start(Start::default());
    let mut c = TcpStream::connect(b.cti).unwrap();
    b.signal(Signal::SIGTERM);
    assert_eq!(b.wait_exit(), Some(0));
    // The connection is closed by the exit: after the CTI hello, reads see EOF (or a reset).
    c.set_read_timeout(Some(GUARD)).unwrap();
    let mut buf = [0u8; 256];
    let mut got = 0;
    let closed = loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break true,
            Ok(n) if got + n <= 256 => got += n,
            Ok(_) => break false,
        }
    };
    assert!(closed, "CTI connection still open after exit");
    assert!(TcpStream::connect(b.cti).is_err(), "CTI port still open after exit");
}

#[test]
fn a_port_in_use_is_refused_with_its_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let data = TempDir::new("inuse");
    let out = std::process::Command::new(bin())
        .args(["run", "--sip", "127.0.0.1:0", "--http", "127.0.0.1:0", "--cti", &addr.to_string(), "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen for CTI on tcp {addr}")), "{err}");
}

#[test]
fn unknown_command_and_bad_flag_are_usage_errors() {
    let out = std::process::Command::new(bin()).arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown command \"frobnicate\""));
    let out = std::process::Command::new(bin()).args(["run", "--sip", "nowhere"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sip: \"nowhere\" is not an address"));
}
