//! baresip, a real softphone nobody here wrote, against the real binary on loopback:
//! it registers with digest authentication and calls through the box, to another
//! baresip and to and from SIPp (tests/sipp/*_baresip.xml).
//!
//! Each baresip instance gets its own configuration directory (tests/baresip/config,
//! plus an `accounts` line written here), runs with `-s` (SIP trace) and is driven
//! through its stdin, which must be a pipe: the stdio module reads commands such as
//! `/dial 1002`, `/hangup` and `/quit` there. The tests wait on baresip's output lines,
//! the box's log lines and SIPp's exit codes, never on the clock.
//!
//! baresip 1.0.0 (Debian, libre 1.1.0) gives up on a 401 as soon as any challenge in
//! it is not MD5 ("Register: Function not implemented"), even when an MD5 challenge
//! is offered alongside; so these boxes offer `digest_algorithms = ["md5"]`
//! (see `sha_256_challenge_with_this_baresip`).
// Tests of the real binary use sockets, files and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;
use common::sipp::{expect_success, free_udp_port, password, sip_config_digest, sipp, start_config, TestBox};
use common::baresip::Phone;
use std::process::Command;

impl Phone {
    /// baresip for `dn` on loopback, registering at the test box.
    fn start(tb: &TestBox, dn: &str, pass: &str) -> Phone {
        Phone::start_with(Command::new("stdbuf"), &tb.b.sip.to_string(), "127.0.0.1", dn, pass)
    }

    /// The same with `dn`'s right password, once it says it registered.
    fn registered(tb: &TestBox, dn: &str) -> Phone {
        Phone::start(tb, dn, &password(dn)).await_registered()
    }
}

/// baresip 1.0.0 answers only an all-MD5 challenge.
const MD5_ONLY: &str = r#"digest_algorithms = ["md5"]"#;

fn config(algorithms: &str) -> String {
    sip_config_digest(algorithms, "")
}

fn start(algorithms: &str) -> TestBox {
    start_config(&config(algorithms), &[])
}

impl TestBox {
    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.b.http_get("/status").1).unwrap()
    }

    /// Waits for the box to log `text` (e.g. "phone-1001: registered").
    fn log(&mut self, text: &str) {
        self.b.wait_line(|l| l.text().contains(text));
    }

    /// Waits for the box to log the end of a call; returns the line.
    fn call_ended(&mut self) -> String {
        let l = self.b.wait_line(|l| l.text().contains("call ") && l.text().contains(": ended by "));
        l.text().to_string()
    }

    /// Asserts the box holds no call and has completed `n`.
    fn assert_calls(&self, active: u64, completed: u64) {
        let s = self.status();
        assert_eq!((s["calls"].as_u64(), s["calls_completed"].as_u64()), (Some(active), Some(completed)), "{s}");
    }
}

#[test]
fn baresip_registers_with_digest_auth_and_unregisters_on_quit() {
    let mut tb = start(MD5_ONLY);
    let p = Phone::registered(&tb, "1001");
    // From baresip's side: challenged with 401, answered with credentials, 200.
    assert!(p.saw("SIP/2.0 401 Unauthorized"), "the box challenged");
    assert!(p.saw(r#"Authorization: Digest username="1001", realm="ctibox""#), "baresip answered the challenge");
    assert!(p.saw("1001@127.0.0.1: {0/UDP/v4} 200 OK"), "baresip got 200 for its REGISTER");
    // From the box's side.
    tb.log("phone-1001: registered");
    let s = tb.status();
    assert_eq!(s["registrations"], 1, "{s}");
    assert_eq!(s["sip"]["auth_failures"], 0, "{s}");
    // /quit unregisters (Expires 0, challenged and authenticated again).
    assert!(p.quit().success());
    tb.log("phone-1001: unregistered");
    assert_eq!(tb.status()["registrations"], 0);
}

#[test]
fn baresip_with_a_wrong_password_is_refused() {
    let mut tb = start(MD5_ONLY);
    let mut p = Phone::start(&tb, "1001", "not-the-password");
    p.wait("403 Forbidden");
    assert!(!p.saw("registered successfully"));
    tb.log("authentication failed");
    let s = tb.status();
    assert_eq!((s["registrations"].as_u64(), s["sip"]["auth_failures"].as_u64()), (Some(0), Some(1)), "{s}");
    // The right password still works from another instance.
    let _ok = Phone::registered(&tb, "1001");
    tb.log("phone-1001: registered");
    assert_eq!(tb.status()["registrations"], 1);
}

/// With the default `["sha-256", "md5"]`, Debian's baresip 1.0.0 refuses the 401
/// outright (libre 1.1.0 knows only MD5 and fails on the first other algorithm);
/// a baresip that knows SHA-256 must then pick it. Either way the box's side must
/// agree with what baresip says.
#[test]
fn a_sha_256_challenge_is_answered_with_sha_256_or_refused_by_an_md5_only_baresip() {
    let mut tb = start("");
    let mut p = Phone::start(&tb, "1001", &password("1001"));
    let l = p.wait_any(&["useragent registered successfully", "Register: Function not implemented"]);
    assert!(p.saw("algorithm=SHA-256"), "the box offered SHA-256");
    if l.contains("Function not implemented") {
        // baresip never sent credentials: nothing registered, nothing failed.
        assert!(!p.saw("Authorization: Digest"));
        let s = tb.status();
        assert_eq!((s["registrations"].as_u64(), s["sip"]["auth_failures"].as_u64()), (Some(0), Some(0)), "{s}");
    } else {
        let auth = p.seen.iter().find(|l| l.starts_with("Authorization: Digest")).cloned().unwrap_or_default();
        assert!(auth.contains("algorithm=SHA-256"), "the preferred algorithm is used: {auth}");
        tb.log("phone-1001: registered");
        assert_eq!(tb.status()["registrations"], 1);
    }
}

#[test]
fn baresip_calls_baresip_and_the_caller_hangs_up() {
    let mut tb = start(MD5_ONLY);
    let mut callee = Phone::registered(&tb, "1002");
    let mut caller = Phone::registered(&tb, "1001");
    tb.log("phone-1002: registered");
    tb.log("phone-1001: registered");
    caller.send("/dial 1002");
    // The caller authenticates its INVITE (407) and hears ringing; the callee answers
    // automatically.
    caller.wait("180 Ringing");
    assert!(caller.saw("407 Proxy Authentication Required"), "the box challenged the INVITE");
    callee.wait("answering call on line 1 from sip:1001@");
    caller.established();
    callee.established();
    tb.assert_calls(1, 0);
    caller.hang_up();
    callee.hung_up_on();
    tb.call_ended();
    tb.assert_calls(0, 1);
    assert!(caller.quit().success() && callee.quit().success());
}

#[test]
fn baresip_calls_baresip_and_the_called_party_hangs_up() {
    let mut tb = start(MD5_ONLY);
    let mut callee = Phone::registered(&tb, "1002");
    let mut caller = Phone::registered(&tb, "1001");
    tb.log("phone-1002: registered");
    tb.log("phone-1001: registered");
    caller.send("/dial 1002");
    caller.established();
    callee.established();
    callee.hang_up();
    caller.hung_up_on();
    let ended = tb.call_ended();
    assert!(ended.ends_with("ended by the called party"), "{ended}");
    tb.assert_calls(0, 1);
}

#[test]
fn baresip_calls_a_sipp_phone() {
    let mut tb = start(MD5_ONLY);
    let port = free_udp_port();
    let reg = sipp(&tb, "reg_only.xml", "1002", Some("1002"), port, &[]);
    expect_success(&tb, reg, "register 1002");
    let callee = sipp(&tb, "callee_answer_baresip.xml", "1002", None, port, &[]);
    let mut caller = Phone::registered(&tb, "1001");
    caller.send("/dial 1002");
    caller.wait("Call established");
    tb.assert_calls(1, 0);
    caller.hang_up();
    // SIPp checked that the offer it got was baresip's and received the BYE.
    expect_success(&tb, callee, "SIPp callee 1002");
    tb.call_ended();
    tb.assert_calls(0, 1);
}

#[test]
fn a_sipp_phone_calls_baresip() {
    let mut tb = start(MD5_ONLY);
    let mut callee = Phone::registered(&tb, "1002");
    tb.log("phone-1002: registered");
    let caller = sipp(&tb, "caller_call_baresip.xml", "1002", Some("1001"), free_udp_port(), &["-key", "caller", "1001"]);
    // SIPp checked that the answer it got was baresip's, and hung up.
    expect_success(&tb, caller, "SIPp caller 1001");
    callee.wait("Call established");
    callee.hung_up_on();
    tb.call_ended();
    tb.assert_calls(0, 1);
}

/// `holder` puts `other` on hold and back; `far` is the number `holder` talks to.
fn hold_and_resume(holder: &mut Phone, other: &mut Phone, far: &str) {
    // Hold: a re-INVITE offering sendonly, relayed to the other phone and answered.
    holder.send("/hold");
    other.wait("a=sendonly");
    holder.wait_response("SIP/2.0 200", "INVITE");
    holder.send("/resume");
    let line = holder.wait_until("a re-INVITE", |l| l.starts_with("INVITE sip:"));
    assert!(line.starts_with(&format!("INVITE sip:{far}@")), "baresip {}: resume sent as {line:?}", holder.dn);
    other.wait("a=sendrecv");
    holder.wait_response("SIP/2.0 200", "INVITE");
}

/// Hold and resume by re-INVITE, from each side in turn. baresip takes the Contact
/// of each 2xx to its re-INVITE as the new remote target (RFC 3261 §12.2.1.2), so
/// its next re-INVITE shows whom the box named there: it must be the far party, as
/// in the answer to the first INVITE, not the phone's own number.
#[test]
fn baresip_holds_and_resumes_through_the_box() {
    let mut tb = start(MD5_ONLY);
    let mut callee = Phone::registered(&tb, "1002");
    let mut caller = Phone::registered(&tb, "1001");
    tb.log("phone-1002: registered");
    caller.send("/dial 1002");
    caller.established();
    callee.established();
    hold_and_resume(&mut caller, &mut callee, "1002");
    hold_and_resume(&mut callee, &mut caller, "1001");
    tb.assert_calls(1, 0);
    caller.hang_up();
    callee.hung_up_on();
    tb.call_ended();
    tb.assert_calls(0, 1);
}
