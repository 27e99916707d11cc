//! baresip, a real softphone, driven for the tests: its own configuration directory
//! (tests/baresip/config, bound to the address given, plus an `accounts` line), `-s`
//! (SIP trace), and commands on its stdin, which must be a pipe (`/dial 1002`,
//! `/hangup`, `/quit`). Waits are on its output lines, never on the clock.

use super::{TempDir, GUARD};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};

/// One baresip instance with its own configuration directory.
pub struct Phone {
    pub dn: String,
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    pub seen: Vec<String>,
    _dir: TempDir,
}

/// Removes colour escapes (ESC [ ... letter).
pub fn plain(s: &str) -> String {
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
pub fn pump<R: Read + Send + 'static>(r: R, tx: mpsc::Sender<String>) {
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
    /// Starts baresip for line `dn` with password `pass`, auto-answering, registering
    /// at `registrar` (host:port) from `local_ip`. `stdbuf` is the command that runs it
    /// (`Command::new("stdbuf")`, or one that enters a network namespace first).
    pub fn start_with(mut stdbuf: Command, registrar: &str, local_ip: &str, dn: &str, pass: &str) -> Phone {
        let dir = TempDir::new(&format!("baresip-{dn}"));
        let config = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/baresip/config")).unwrap();
        let config: String = config
            .lines()
            .map(|l| if l.starts_with("sip_listen") || l.starts_with("net_interface") { l.replace("127.0.0.1", local_ip) } else { l.to_string() })
            .map(|l| l + "\n")
            .collect();
        std::fs::write(dir.path().join("config"), config).unwrap();
        std::fs::write(dir.path().join("accounts"), format!("<sip:{dn}@{registrar}>;auth_pass={pass};regint=600;answermode=auto\n")).unwrap();
        // One pipe for stdout and stderr, so lines arrive in the order baresip wrote
        // them; and baresip writes through C stdio: line-buffer it, or its last
        // lines wait in the buffer until it exits.
        let (out, err) = std::io::pipe().unwrap();
        let mut child = stdbuf
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

    /// Waits until baresip says it registered (or fails the test with its output).
    pub fn await_registered(mut self) -> Phone {
        // "reg: AOR: reason" is how baresip reports a failed registration.
        let l = self.wait_any(&["useragent registered successfully", "reg: sip:"]);
        if !l.contains("registered successfully") {
            self.fail("registration failed");
        }
        self
    }

    pub fn fail(&self, why: &str) -> ! {
        let tail = self.seen.len().saturating_sub(150);
        panic!("baresip {}: {why}; its last lines:\n{}", self.dn, self.seen[tail..].join("\n"));
    }

    /// Waits for an output line for which `pred` holds; returns that line.
    pub fn wait_until(&mut self, what: &str, mut pred: impl FnMut(&str) -> bool) -> String {
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
    pub fn wait_any(&mut self, texts: &[&str]) -> String {
        self.wait_until(&format!("any of {texts:?}"), |l| texts.iter().any(|t| l.contains(t)))
    }

    pub fn wait(&mut self, text: &str) -> String {
        self.wait_any(&[text])
    }

    /// Whether a line seen so far contains `text`.
    pub fn saw(&self, text: &str) -> bool {
        self.seen.iter().any(|l| l.contains(text))
    }

    /// Types a command on baresip's stdin.
    pub fn send(&mut self, cmd: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(format!("{cmd}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// `/quit`, then waits (bounded by the guard) for baresip to exit.
    pub fn quit(mut self) -> ExitStatus {
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
    pub fn wait_response(&mut self, status: &str, method: &str) {
        let mut start = String::new();
        self.wait_until(&format!("{status} to {method}"), |l| {
            if l.starts_with("SIP/2.0 ") || l.ends_with(" SIP/2.0") {
                start = l.to_string();
            }
            start.starts_with(status) && l.starts_with("CSeq:") && l.ends_with(&format!(" {method}"))
        });
    }

    /// `/hangup`: baresip ends the call at once and sends BYE, which the box answers.
    pub fn hang_up(&mut self) {
        self.send("/hangup");
        self.wait("call: terminate call");
        self.wait_response("SIP/2.0 200", "BYE");
    }

    /// The far end hung up: a BYE came and baresip closed the call.
    pub fn hung_up_on(&mut self) {
        self.wait("session closed: Connection reset by peer");
        assert!(self.saw("BYE sip:"), "closed by a BYE");
    }

    /// After "Call established", waits for RTP from the far end: the box relayed
    /// each side's SDP, so media flows directly between the phones.
    pub fn established(&mut self) {
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

