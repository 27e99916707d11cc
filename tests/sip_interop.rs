//! SIP call control against real peers nobody here wrote: SIPp scenarios (tests/sipp/)
//! register with digest authentication and call each other through the real binary
//! on loopback. Each test starts its own box with a config of known passwords.
// Tests of the real binary use sockets, files and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;
use common::sipp::*;
use common::*;

#[test]
fn register_with_digest_auth_then_unregister() {
    let tb = start();
    let c = sipp(&tb, "register.xml", "1002", Some("1002"), free_udp_port(), &[]);
    expect_success(&tb, c, "register and unregister");
    let s = status(&tb);
    assert_eq!(s["registrations"], 0, "unregister removed the binding: {s}");
    assert!(s["sip"]["registrations"].as_u64().unwrap() >= 2);
}

#[test]
fn wrong_password_is_refused_and_a_scanner_is_throttled() {
    let tb = start();
    let port = free_udp_port();
    // Wrong password: 403, three times; the third failure bans the source.
    for _ in 0..3 {
        let mut cmd = sipp(&tb, "register_badpass.xml", "1002", None, port, &["-au", "1002", "-ap", "not-the-password"]);
        let st = cmd.wait().unwrap();
        assert!(st.success(), "wrong password gets 403");
    }
    let s = status(&tb);
    assert_eq!(s["sip"]["auth_failures"], 3, "{s}");
    assert_eq!(s["registrations"], 0);
    // Now 127.0.0.1 is banned: a request from it is dropped unanswered. Proved without
    // waiting: a sentinel OPTIONS from 127.0.0.2 sent after it is answered, and the
    // box handles datagrams in order, so an answer to the banned one would be there first.
    let banned = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let other = std::net::UdpSocket::bind("127.0.0.2:0").unwrap();
    other.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let to = format!("127.0.0.1:{}", tb.b.sip.port());
    let probe = |s: &std::net::UdpSocket, id: &str| {
        OPTIONS.replace("PORT", &s.local_addr().unwrap().port().to_string()).replace("opt1", id).replace("opt-1", id).replace("Via: SIP/2.0/UDP 127.0.0.1:", &format!("Via: SIP/2.0/UDP {}:", s.local_addr().unwrap().ip()))
    };
    let before = status(&tb)["sip"]["banned_dropped"].as_u64().unwrap();
    banned.send_to(probe(&banned, "ban1").as_bytes(), &to).unwrap();
    other.send_to(probe(&other, "sentinel1").as_bytes(), &to).unwrap();
    let mut buf = [0u8; 4096];
    let n = other.recv(&mut buf).expect("the sentinel from an address that is not banned is answered");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("Call-ID: sentinel1"));
    banned.set_nonblocking(true).unwrap();
    assert!(banned.recv(&mut buf).is_err(), "a banned source is not answered");
    assert_eq!(status(&tb)["sip"]["banned_dropped"].as_u64().unwrap(), before + 1);
}

#[test]
fn call_answered_and_caller_hangs_up() {
    let tb = start();
    let c = callee(&tb, "callee_answer.xml", "1002");
    call(&tb, "caller_call.xml", "1002", vec![(c, "callee 1002")]);
    let s = status(&tb);
    assert_eq!((s["calls"].as_u64(), s["calls_completed"].as_u64()), (Some(0), Some(1)), "{s}");
}

#[test]
fn an_ack_for_the_407_on_a_new_branch_is_matched_by_dialog_and_the_407_is_not_resent() {
    let tb = start();
    let c = callee(&tb, "callee_answer.xml", "1002");
    call(&tb, "caller_call_ack_new_branch.xml", "1002", vec![(c, "callee 1002")]);
    let s = status(&tb);
    let stats = &s["transaction_layer"]["stats"];
    assert_eq!(stats["acks_matched_by_dialog"], 1, "{s}");
    assert_eq!(stats["ack_timeouts"], 0, "{s}");
    assert_eq!((s["calls"].as_u64(), s["calls_completed"].as_u64()), (Some(0), Some(1)), "{s}");
}

#[test]
fn call_answered_and_called_party_hangs_up() {
    let tb = start();
    let c = callee(&tb, "callee_answer_bye.xml", "1002");
    call(&tb, "caller_call_wait_bye.xml", "1002", vec![(c, "callee 1002")]);
}

#[test]
fn a_cancel_while_ringing_reaches_the_callee_the_caller_gets_487_and_no_call_remains() {
    let tb = start();
    let c = callee(&tb, "callee_ring_cancel.xml", "1002");
    call(&tb, "caller_cancel.xml", "1002", vec![(c, "callee 1002")]);
    assert_eq!(status(&tb)["calls"], 0);
}

#[test]
fn busy_is_passed_back() {
    let tb = start();
    let c = callee(&tb, "callee_busy.xml", "1003");
    call(&tb, "caller_busy.xml", "1003", vec![(c, "callee 1003")]);
}

#[test]
fn busy_forwards_to_the_busy_target() {
    let tb = start();
    let busy = callee(&tb, "callee_busy.xml", "1004");
    let target = callee(&tb, "callee_answer.xml", "1006");
    call(&tb, "caller_call.xml", "1004", vec![(busy, "busy 1004"), (target, "forward target 1006")]);
}

#[test]
fn no_answer_forwards_after_the_line_timeout() {
    let tb = start();
    let ringing = callee(&tb, "callee_ring_cancel.xml", "1005");
    let target = callee(&tb, "callee_answer.xml", "1006");
    call(&tb, "caller_call.xml", "1005", vec![(ringing, "unanswered 1005"), (target, "forward target 1006")]);
}

#[test]
fn forward_all_and_forward_unregistered_lines_ring_their_target_which_answers() {
    let tb = start();
    let c = callee(&tb, "callee_answer.xml", "1002");
    call(&tb, "caller_call.xml", "1007", vec![(c, "1002 via forward all from 1007")]);
    // 1008 never registers; its calls go to 1002 (registered again from a new port:
    // the newest contact is rung first).
    let c = callee(&tb, "callee_answer.xml", "1002");
    call(&tb, "caller_call.xml", "1008", vec![(c, "1002 via forward unregistered from 1008")]);
}

#[test]
fn hold_and_unhold_reinvites_are_relayed_to_the_other_phone_and_answered() {
    let tb = start();
    let c = callee(&tb, "callee_hold.xml", "1002");
    call(&tb, "caller_hold.xml", "1002", vec![(c, "callee 1002")]);
}

#[test]
fn a_number_nobody_can_reach_gets_404() {
    let tb = start();
    call(&tb, "caller_unreachable.xml", "5555", vec![]);
}

#[test]
fn on_the_wildcard_address_the_box_gives_each_phone_the_address_it_reached() {
    // Listening on 0.0.0.0, the INVITE toward the called phone must carry 127.0.0.1
    // (the address that phone registered to) in Via and Contact, or its BYE goes nowhere.
    let tb = start_with(&["--sip", "0.0.0.0:0"]);
    let c = callee(&tb, "callee_answer_bye.xml", "1002");
    call(&tb, "caller_call_wait_bye.xml", "1002", vec![(c, "callee 1002 hangs up")]);
    assert_eq!(status(&tb)["calls_completed"], 1);
}

#[test]
fn calls_over_tcp_reconnect_to_a_phone_whose_connection_closed() {
    // The called phone registers over TCP and hangs up that connection; the box opens
    // a new one to the Contact address to deliver the INVITE (RFC 3261 §18.1.1).
    let tb = start();
    let port = free_udp_port();
    let reg = sipp(&tb, "reg_only.xml", "1002", Some("1002"), port, &["-t", "t1"]);
    expect_success(&tb, reg, "register 1002 over tcp");
    let callee = sipp(&tb, "callee_answer.xml", "1002", None, port, &["-t", "t1"]);
    let caller = sipp(&tb, "caller_call.xml", "1002", Some("1001"), free_udp_port(), &["-t", "t1", "-key", "caller", "1001"]);
    expect_success(&tb, caller, "caller over tcp");
    expect_success(&tb, callee, "callee over tcp");
    assert_eq!(status(&tb)["calls_completed"], 1);
}

#[test]
fn registrations_survive_a_restart() {
    let dir = TempDir::new("restart");
    let file = dir.path().join("ctibox.toml");
    std::fs::write(&file, config()).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let first = BoxProc::start(Start { config: Some(&file), data_dir: Some(&data), ..Default::default() });
    let tb = TestBox { b: first, dir: TempDir::new("restart-logs") };
    let port = free_udp_port();
    register(&tb, "1002", port);
    // The save is written off the engine loop; stop cleanly, then start again.
    let mut tb = tb;
    tb.b.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(tb.b.wait_exit(), Some(0));
    let saved = std::fs::read(data.join("registrations")).expect("registrations saved");
    assert!(ctibox::persist::unseal(&saved).is_ok());
    let second = BoxProc::start(Start { config: Some(&file), data_dir: Some(&data), ..Default::default() });
    let restored = second.seen.iter().any(|l| l.text().contains("restored 1 registrations"));
    let tb = TestBox { b: second, dir: tb.dir };
    assert!(restored || status(&tb)["registrations"] == 1, "{:?}", tb.b.seen);
    assert_eq!(status(&tb)["registrations"], 1);
    // 1002 is called at its saved contact without registering again.
    let callee = sipp(&tb, "callee_answer.xml", "1002", None, port, &[]);
    call(&tb, "caller_call.xml", "1002", vec![(callee, "callee 1002 after restart")]);
}

/// Sends one datagram and returns the first answer, if any comes within `wait`.
fn exchange(tb: &TestBox, msg: &str, wait: std::time::Duration) -> Option<String> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    let to = format!("127.0.0.1:{}", tb.b.sip.port());
    s.send_to(msg.replace("PORT", &s.local_addr().unwrap().port().to_string()).as_bytes(), &to).unwrap();
    let mut buf = [0u8; 4096];
    s.recv(&mut buf).ok().map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
}

const OPTIONS: &str = "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:PORT;branch=z9hG4bK-opt1;rport\r\nMax-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=a1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: opt-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

#[test]
fn options_unknown_methods_and_malformed_messages_get_answers_not_crashes() {
    let tb = start();
    let guard = std::time::Duration::from_secs(5);
    let ok = exchange(&tb, OPTIONS, guard).expect("OPTIONS answered");
    assert!(ok.starts_with("SIP/2.0 200 OK\r\n") && ok.contains("Allow: INVITE"), "{ok}");
    // A method nobody knows: 501.
    let frob = OPTIONS.replace("OPTIONS sip", "FROBNICATE sip").replace("1 OPTIONS", "1 FROBNICATE").replace("opt1", "frob1");
    let r = exchange(&tb, &frob, guard).expect("unknown method answered");
    assert!(r.starts_with("SIP/2.0 501 "), "{r}");
    // A broken Content-Length: 400 with a reason phrase naming it.
    let bad = OPTIONS.replace("Content-Length: 0", "Content-Length: -9").replace("opt1", "bad1");
    let r = exchange(&tb, &bad, guard).expect("malformed request answered");
    assert!(r.starts_with("SIP/2.0 400 ") && r.lines().next().unwrap().len() > "SIP/2.0 400 ".len(), "{r}");
    // Garbage is dropped and counted; the box keeps serving. No waiting for an answer
    // that must not come: the first answer on the socket is the one to the sentinel
    // OPTIONS sent after the garbage (the box handles datagrams in order).
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(guard)).unwrap();
    let to = format!("127.0.0.1:{}", tb.b.sip.port());
    s.send_to(b"\x01\x02garbage\r\n\r\n", &to).unwrap();
    let sentinel = OPTIONS.replace("PORT", &s.local_addr().unwrap().port().to_string()).replace("opt-1", "after-garbage").replace("opt1", "optg");
    s.send_to(sentinel.as_bytes(), &to).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.recv(&mut buf).expect("the sentinel is answered");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("Call-ID: after-garbage"), "the garbage got no answer");
    let s = status(&tb);
    assert!(s["sip"]["malformed_dropped"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["sip"]["malformed_answered"].as_u64().unwrap() >= 1, "{s}");
    assert!(exchange(&tb, &OPTIONS.replace("opt1", "opt2"), guard).is_some(), "still serving");
    // The RFC 4475 torture messages, all of them, do not take it down.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/rfc4475");
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "dat") {
            sock.send_to(&std::fs::read(e.path()).unwrap(), format!("127.0.0.1:{}", tb.b.sip.port())).unwrap();
        }
    }
    assert!(exchange(&tb, &OPTIONS.replace("opt1", "opt3"), guard).is_some(), "still serving after the torture corpus");
}
