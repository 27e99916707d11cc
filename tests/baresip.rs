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
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};

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

/// One baresip instance with its own configuration directory.
struct Phone {
    dn: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
    _dir: TempDir,
}

/// Removes colour escapes (ESC [ ... letter).
fn plain(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\x1b' && it.peek() == Some(&'[') {
            for c in it.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Forwards a stream's lines (split at CR as well as LF: baresip redraws some
/// lines with CR) until the stream ends.
fn pump<R: Read + Send + 'static>(r: R, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            for part in String::from_utf8_lossy(&buf).split(['\r', '\n']) {
                let part = plain(part);
                if !part.trim().is_empty() && tx.send(part).is_err() {
                    return;
                }
            }
        }
    });
}

impl Phone {
    /// Starts baresip for line `dn` with password `pass`, auto-answering.
    fn start(tb: &TestBox, dn: &str, pass: &str) -> Phone {
        let dir = TempDir::new(&format!("baresip-{dn}"));
        std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/baresip/config"), dir.path().join("config")).unwrap();
        std::fs::write(dir.path().join("accounts"), format!("<sip:{dn}@{}>;auth_pass={pass};regint=600;answermode=auto\n", tb.b.sip)).unwrap();
        // One pipe for stdout and stderr, so lines arrive in the order baresip wrote
        // them; and baresip writes through C stdio: line-buffer it, or its last
        // lines wait in the buffer until it exits.
        let (out, err) = std::io::pipe().unwrap();
        let mut child = Command::new("stdbuf")
            .args(["-oL", "-eL", "baresip", "-f"])
            .arg(dir.path())
            .arg("-s")
            .stdin(Stdio::piped())
            .stdout(err.try_clone().unwrap())
            .stderr(err)
            .spawn()
            .expect("stdbuf (coreutils) is installed");
        let (tx, rx) = mpsc::channel();
        pump(out, tx);
        let stdin = child.stdin.take();
        Phone { dn: dn.to_string(), child, stdin, lines: rx, seen: vec![], _dir: dir }
    }

    /// Starts baresip for `dn` with its right password and waits until it says it
    /// registered.
    fn registered(tb: &TestBox, dn: &str) -> Phone {
        let mut p = Phone::start(tb, dn, &password(dn));
        // "reg: AOR: reason" is how baresip reports a failed registration.
        let l = p.wait_any(&["useragent registered successfully", "reg: sip:"]);
        if !l.contains("registered successfully") {
            p.fail("registration failed");
        }
        p
    }

    fn fail(&self, why: &str) -> ! {
        let tail = self.seen.len().saturating_sub(150);
        panic!("baresip {}: {why}; its last lines:\n{}", self.dn, self.seen[tail..].join("\n"));
    }

    /// Waits for an output line for which `pred` holds; returns that line.
    fn wait_until(&mut self, what: &str, mut pred: impl FnMut(&str) -> bool) -> String {
        loop {
            match self.lines.recv_timeout(GUARD) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if pred(&l) {
                        return l;
                    }
                }
                Err(RecvTimeoutError::Timeout) => self.fail(&format!("nothing matched ({what}) within {GUARD:?}")),
                Err(RecvTimeoutError::Disconnected) => {
                    let code = self.child.try_wait();
                    self.fail(&format!("exited ({code:?}) before {what}"))
                }
            }
        }
    }

    /// Waits for an output line containing any of `texts`; returns that line.
    fn wait_any(&mut self, texts: &[&str]) -> String {
        self.wait_until(&format!("any of {texts:?}"), |l| texts.iter().any(|t| l.contains(t)))
    }

    fn wait(&mut self, text: &str) -> String {
        self.wait_any(&[text])
    }

    /// Whether a line seen so far contains `text`.
    fn saw(&self, text: &str) -> bool {
        self.seen.iter().any(|l| l.contains(text))
    }

    /// Types a command on baresip's stdin.
    fn send(&mut self, cmd: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(format!("{cmd}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// `/quit`, then waits (bounded by the guard) for baresip to exit.
    fn quit(mut self) -> ExitStatus {
        self.send("/quit");
        loop {
            match self.lines.recv_timeout(GUARD) {
                Ok(l) => self.seen.push(l),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => self.fail("did not exit after /quit"),
            }
        }
        self.child.wait().unwrap()
    }

    /// Waits in the SIP trace for a response `status` (e.g. "SIP/2.0 200") to a
    /// `method` request.
    fn wait_response(&mut self, status: &str, method: &str) {
        let mut start = String::new();
        self.wait_until(&format!("{status} to {method}"), |l| {
            if l.starts_with("SIP/2.0 ") || l.ends_with(" SIP/2.0") {
                start = l.to_string();
            }
            start.starts_with(status) && l.starts_with("CSeq:") && l.ends_with(&format!(" {method}"))
        });
    }

    /// `/hangup`: baresip ends the call at once and sends BYE, which the box answers.
    fn hang_up(&mut self) {
        self.send("/hangup");
        self.wait("call: terminate call");
        self.wait_response("SIP/2.0 200", "BYE");
    }

    /// The far end hung up: a BYE came and baresip closed the call.
    fn hung_up_on(&mut self) {
        self.wait("session closed: Connection reset by peer");
        assert!(self.saw("BYE sip:"), "closed by a BYE");
    }

    /// After "Call established", waits for RTP from the far end: the box relayed
    /// each side's SDP, so media flows directly between the phones.
    fn established(&mut self) {
        self.wait("Call established");
        self.wait("incoming rtp for 'audio' established");
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        // BARESIP_TRACE=1 cargo test --test baresip -- --nocapture: everything it said.
        if std::env::var_os("BARESIP_TRACE").is_some() {
            while let Ok(l) = self.lines.try_recv() {
                self.seen.push(l);
            }
            eprintln!("==== baresip {}\n{}", self.dn, self.seen.join("\n"));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
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
