//! sd_notify: READY=1 once the sockets are bound, then WATCHDOG=1 pings while the
//! engine loop is healthy; a stalled loop (fault injected with SIGUSR2) stops them.
// Tests of the real binary use sockets, files and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;
use common::*;
use nix::sys::signal::Signal;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

fn recv(sock: &UnixDatagram) -> Option<String> {
    let mut buf = [0u8; 512];
    sock.recv(&mut buf).ok().map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn ready_then_pings_and_pings_stop_when_the_loop_stalls() {
    let dir = TempDir::new("notify");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    // Interval 400 ms: pings every 200 ms while healthy.
    let interval = Duration::from_millis(400);
    sock.set_read_timeout(Some(GUARD)).unwrap();
    let b = BoxProc::start(Start {
        env: vec![
            ("NOTIFY_SOCKET", path.display().to_string()),
            ("WATCHDOG_USEC", (interval.as_micros()).to_string()),
            ("CTIBOX_FAULT", "stall-on-usr2".into()),
        ],
        ..Default::default()
    });

    let first = recv(&sock).expect("READY=1");
    assert!(first.starts_with("READY=1"), "first notification was {first:?}");
    for i in 0..5 {
        let m = recv(&sock).unwrap_or_else(|| panic!("ping {i} missing"));
        assert_eq!(m, "WATCHDOG=1");
    }

    b.signal(Signal::SIGUSR2);
    // After the stall a ping or two may already be on their way; then silence for
    // many intervals. The stall threshold is 3 engine ticks (750 ms), so at most
    // four pings (at 200 ms spacing) can follow the stall before they stop.
    sock.set_read_timeout(Some(interval * 6)).unwrap();
    let mut after = 0;
    while let Some(m) = recv(&sock) {
        assert_eq!(m, "WATCHDOG=1");
        after += 1;
        assert!(after <= 5, "pings kept coming after the engine loop stalled");
    }
    // recv timed out: no ping for six whole intervals — systemd would have fired.
}

#[test]
fn without_notify_socket_the_box_runs_and_answers_http() {
    let b = BoxProc::start(Start::default());
    assert_eq!(b.http_get("/status").0, 200);
}
