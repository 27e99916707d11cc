//! The real binary against hostile peers, as an attacker would try it with no login:
//! a 30-byte SIP/TCP request whose Content-Length is near 2^64 (it once made the
//! framer's sum wrap to a zero-length frame and the reader spin forever); a task that
//! panics on its connection (fault injection, as a bug would); and CTI logins with
//! wrong secrets for an Argon2-hashed application, from one address and from many
//! connections at once, while SIP is asked OPTIONS. Each waits on replies and the
//! box's own lines, never on the clock.
// Tests of the real binary use sockets, files and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};

const SECRET: &str = "Flood-Secret-551";


fn config(dir: &TempDir) -> std::path::PathBuf {
    let text = format!(
        r#"[system]
name = "hostile"
[sip]
udp = "127.0.0.1:0"
tcp = "127.0.0.1:0"
[cti]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[[partition]]
name = "p"
[[calling_search_space]]
name = "c"
partitions = ["p"]
[[line]]
dn = "2000"
partition = "p"
[[device]]
name = "rp"
type = "cti_route_point"
lines = ["2000"]
css = "c"
[[app_user]]
name = "crm"
secret = "{}"
devices = ["rp"]
"#,
        hash_secret(SECRET)
    );
    let path = dir.file("hostile.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn options(n: u32, port: u16) -> String {
    format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-h{n}\r\nMax-Forwards: 70\r\n\
         From: <sip:probe@127.0.0.1>;tag=h{n}\r\nTo: <sip:127.0.0.1>\r\nCall-ID: hostile-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// One OPTIONS over UDP; returns the status line of the answer.
fn udp_options(sock: &UdpSocket, to: SocketAddr, n: u32) -> String {
    let port = sock.local_addr().unwrap().port();
    sock.send_to(options(n, port).as_bytes(), to).unwrap();
    let mut buf = [0u8; 4096];
    let (len, _) = sock.recv_from(&mut buf).expect("OPTIONS answered within the guard");
    String::from_utf8_lossy(&buf[..len]).lines().next().unwrap_or_default().to_string()
}

fn udp_probe() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    s
}

/// Reads until the box closes the connection; fails if it stays open past the guard.
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(GUARD)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("the box did not close the connection: {e}"),
        }
    }
}

fn status(b: &BoxProc) -> Value {
    let (code, body) = b.http_get("/status");
    assert_eq!(code, 200);
    serde_json::from_str(&body).unwrap()
}

#[test]
fn content_length_near_2_pow_64_on_sip_tcp_closes_the_connection_and_sip_keeps_serving() {
    let mut b = BoxProc::start(Start::default());
    let mut s = TcpStream::connect(b.sip).unwrap();
    let attack = b"A\r\nl: 18446744073709551586\r\n\r\n";
    assert_eq!(attack.len(), 30);
    s.write_all(attack).unwrap();
    let got = read_to_close(&mut s);
    assert!(got.is_empty(), "nothing is answered on a stream that cannot be framed: {got:?}");
    b.wait_line(|l| l.text().contains("Content-Length over the message limit; closing"));
    // A Content-Length just past the cap is refused the same way.
    let mut s = TcpStream::connect(b.sip).unwrap();
    s.write_all(b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 65536\r\n\r\n").unwrap();
    assert!(read_to_close(&mut s).is_empty());
    // The box still serves SIP on both transports.
    let probe = udp_probe();
    assert_eq!(udp_options(&probe, b.sip, 1), "SIP/2.0 200 OK");
    let mut t = TcpStream::connect(b.sip).unwrap();
    t.set_read_timeout(Some(GUARD)).unwrap();
    t.write_all(options(2, 5060).replace("SIP/2.0/UDP", "SIP/2.0/TCP").as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(&t).read_line(&mut line).unwrap();
    assert_eq!(line.trim_end(), "SIP/2.0 200 OK");
}

#[test]
fn a_panicking_connection_task_closes_only_its_connection_and_never_leaks_a_slot() {
    // (No backtraces: 1100 of them would only slow the box's stderr down.)
    let env = vec![("CTIBOX_FAULT", "panic-on-marker".into()), ("RUST_BACKTRACE", "0".into())];
    let mut b = BoxProc::start(Start { env, ..Default::default() });
    // More panics than there are SIP/TCP connection slots (1024): a leaked slot per
    // panic would refuse the last ones.
    let rounds: u64 = 1100;
    for n in 0..rounds {
        let mut s = TcpStream::connect(b.sip).unwrap();
        let msg = options(n as u32, 5060).replace("Content-Length: 0", "Subject: ctibox-fault: panic\r\nContent-Length: 0");
        s.write_all(msg.as_bytes()).unwrap();
        let got = read_to_close(&mut s);
        assert!(got.is_empty(), "round {n}: {got:?}");
    }
    // A CTI connection's task too.
    let mut c = TcpStream::connect(b.cti).unwrap();
    c.write_all(b"{\"type\":\"heartbeat\",\"id\":\"ctibox-fault: panic\"}\n").unwrap();
    let got = read_to_close(&mut c);
    assert!(String::from_utf8_lossy(&got).contains("\"hello\""), "the hello came before: {got:?}");
    b.wait_line(|l| l.text().contains("task panicked (fault injection: marker in a frame); connection closed"));
    // And a CTI WebSocket's.
    let (mut ws, _) = tungstenite::client(format!("ws://{}/cti", b.http), TcpStream::connect(b.http).unwrap()).unwrap();
    assert!(ws.read().unwrap().to_text().unwrap().contains("\"hello\""));
    ws.send(tungstenite::Message::text("{\"type\":\"heartbeat\",\"id\":\"ctibox-fault: panic\"}")).unwrap();
    // Read until the box closes it; nothing answers the frame that panicked.
    while let Ok(m) = ws.read() {
        assert!(!m.is_text(), "no reply to the frame that panicked: {m:?}");
    }
    // Still serving, on a fresh SIP/TCP connection too.
    let mut t = TcpStream::connect(b.sip).unwrap();
    t.set_read_timeout(Some(GUARD)).unwrap();
    t.write_all(options(9999, 5060).replace("SIP/2.0/UDP", "SIP/2.0/TCP").as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(&t).read_line(&mut line).unwrap();
    assert_eq!(line.trim_end(), "SIP/2.0 200 OK");
    assert_eq!(status(&b)["stats"]["conn_task_panics"], rounds + 2);
}

struct Cti {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Cti {
    /// Connects from `source` (any 127.0.0.0/8 address) and reads the hello.
    fn connect(to: SocketAddr, source: [u8; 4]) -> Cti {
        let sock = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Inet,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::empty(),
            None,
        )
        .unwrap();
        let from = nix::sys::socket::SockaddrIn::new(source[0], source[1], source[2], source[3], 0);
        nix::sys::socket::bind(std::os::fd::AsRawFd::as_raw_fd(&sock), &from).unwrap();
        let SocketAddr::V4(v4) = to else { panic!("loopback v4 expected") };
        nix::sys::socket::connect(std::os::fd::AsRawFd::as_raw_fd(&sock), &nix::sys::socket::SockaddrIn::from(v4)).unwrap();
        let s = TcpStream::from(sock);
        s.set_read_timeout(Some(GUARD)).unwrap();
        let mut c = Cti { w: s.try_clone().unwrap(), r: BufReader::new(s) };
        assert_eq!(c.recv()["type"], "hello");
        c
    }
    fn recv(&mut self) -> Value {
        let mut line = String::new();
        let n = self.r.read_line(&mut line).expect("a line within the guard");
        assert!(n > 0, "connection closed");
        serde_json::from_str(&line).unwrap()
    }
    fn closed(&mut self) -> bool {
        let mut line = String::new();
        matches!(self.r.read_line(&mut line), Ok(0))
    }
    /// A login; returns the error code, or "ok".
    fn login(&mut self, secret: &str) -> String {
        self.w.write_all(format!("{{\"type\":\"login\",\"id\":1,\"app\":\"crm\",\"secret\":\"{secret}\"}}\n").as_bytes()).unwrap();
        let r = self.recv();
        assert_eq!(r["type"], "reply", "{r}");
        if r["ok"] == true {
            "ok".into()
        } else {
            r["error"]["code"].as_str().unwrap().to_string()
        }
    }
}

#[test]
fn wrong_cti_secrets_ban_their_source_address_and_others_still_log_in() {
    let dir = TempDir::new("hostile-cfg");
    let cfg = config(&dir);
    let b = BoxProc::start(Start { config: Some(&cfg), ..Default::default() });
    let mut a = Cti::connect(b.cti, [127, 0, 0, 1]);
    // The default policy: the fifth failure bans the address.
    for i in 0..5 {
        assert_eq!(a.login("wrong-secret"), "auth_failed", "attempt {i}");
    }
    assert_eq!(a.login("wrong-secret"), "throttled");
    assert!(a.closed(), "a banned address's connection is closed after the refusal");
    // A fresh connection from the same address is refused too, even with the right
    // secret; another address is not.
    assert_eq!(Cti::connect(b.cti, [127, 0, 0, 1]).login(SECRET), "throttled");
    assert_eq!(Cti::connect(b.cti, [127, 0, 0, 2]).login(SECRET), "ok");
    let s = status(&b);
    assert_eq!((s["cti"]["login_failures"].as_u64(), s["cti"]["bans"].as_u64(), s["cti"]["logins"].as_u64()), (Some(5), Some(1), Some(1)), "{s}");
    assert_eq!(s["cti"]["logins_throttled"], 2);
}

#[test]
fn a_login_flood_from_forty_connections_gets_every_login_answered_and_every_options_answered() {
    let dir = TempDir::new("hostile-cfg");
    let cfg = config(&dir);
    let b = BoxProc::start(Start { config: Some(&cfg), ..Default::default() });
    let cti = b.cti;
    // Forty connections from forty addresses, so no ban cuts the flood short before
    // each address has had its five real checks.
    let flood: Vec<_> = (0..40u8)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Cti::connect(cti, [127, 0, 1, 1 + i]);
                let mut codes = Vec::new();
                for _ in 0..8 {
                    let code = c.login("wrong-secret");
                    if code == "throttled" {
                        assert!(c.closed());
                        c = Cti::connect(cti, [127, 0, 1, 1 + i]);
                    }
                    codes.push(code);
                }
                codes
            })
        })
        .collect();
    // SIP is answered all along (how fast is measured by scripts/bench/cti-login).
    let probe = udp_probe();
    for n in 0..200 {
        assert_eq!(udp_options(&probe, b.sip, n), "SIP/2.0 200 OK");
    }
    let mut failed = 0;
    for t in flood {
        let codes = t.join().unwrap();
        for c in &codes {
            assert!(["auth_failed", "throttled"].contains(&c.as_str()), "every login is checked in turn, none refused for capacity: {codes:?}");
        }
        // Each address: five real checks (its logins are sequential), then the ban.
        let n = codes.iter().filter(|c| *c == "auth_failed").count();
        assert_eq!(n, 5, "{codes:?}");
        if let Some(fifth) = codes.iter().enumerate().filter(|(_, c)| *c == "auth_failed").nth(4).map(|(i, _)| i) {
            assert!(codes[fifth + 1..].iter().all(|c| c == "throttled"), "banned after the fifth: {codes:?}");
        }
        failed += n as u64;
    }
    let s = status(&b);
    assert_eq!(s["cti"]["login_failures"].as_u64(), Some(failed), "{s}");
    assert_eq!(s["cti"]["logins"], 0);
    // After the flood, the right secret from a clean address logs in.
    assert_eq!(Cti::connect(cti, [127, 0, 0, 9]).login(SECRET), "ok");
}
