//! Test harness for the real binary: starts `ctibox run` on loopback with port-0
//! listeners and a private data directory, reads its banner for the bound addresses,
//! and waits on its output lines (never on the clock) for what a test expects.
#![allow(dead_code, clippy::disallowed_methods, clippy::disallowed_types)]

pub mod baresip;
pub mod judge;
pub mod netns;
pub mod qemu;
pub mod sipp;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

/// Upper bound on how long any awaited line may take; a guard against a hung test,
/// not a speed assertion.
pub const GUARD: Duration = Duration::from_secs(20);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ctibox")
}

/// A fresh private directory under the target dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A path for `name` inside the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("ctibox-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Which stream a line came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Out(String),
    Err(String),
}

impl Line {
    pub fn text(&self) -> &str {
        match self {
            Line::Out(s) | Line::Err(s) => s,
        }
    }
}

/// A running box.
pub struct BoxProc {
    pub child: Child,
    pub lines: Receiver<Line>,
    pub seen: Vec<Line>,
    pub sip: SocketAddr,
    pub cti: SocketAddr,
    pub http: SocketAddr,
    pub data: TempDir,
}

fn pump<R: Read + Send + 'static>(r: R, tx: mpsc::Sender<Line>, out: bool) {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(if out { Line::Out(line) } else { Line::Err(line) }).is_err() {
                break;
            }
        }
    });
}

fn field(banner: &[Line], key: &str, nth: usize) -> SocketAddr {
    let line = banner.iter().map(Line::text).find(|l| l.starts_with("  ") && l.split_whitespace().next() == Some(key)).unwrap_or_else(|| panic!("no {key} line in banner {banner:?}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let w = words[nth].trim_start_matches("http://").trim_end_matches("/status");
    w.parse().unwrap_or_else(|_| panic!("bad address {w:?} in {line:?}"))
}

/// Options for starting a box.
#[derive(Default)]
pub struct Start<'a> {
    pub config: Option<&'a Path>,
    /// Reuse this data directory (a restart) instead of a fresh one.
    pub data_dir: Option<&'a Path>,
    pub env: Vec<(&'a str, String)>,
    pub extra_args: Vec<String>,
}

impl BoxProc {
    pub fn start(opts: Start) -> BoxProc {
        let data = TempDir::new("data");
        let mut cmd = Command::new(bin());
        cmd.arg("run").arg("--data-dir").arg(opts.data_dir.unwrap_or(data.path()));
        cmd.args(["--sip", "127.0.0.1:0", "--cti", "127.0.0.1:0", "--http", "127.0.0.1:0"]);
        if let Some(c) = opts.config {
            cmd.arg("--config").arg(c);
        }
        cmd.args(&opts.extra_args);
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        cmd.env_remove("NOTIFY_SOCKET").env_remove("WATCHDOG_USEC");
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        BoxProc::start_cmd(cmd, data)
    }

    /// Starts `cmd` (a `ctibox run` however it is wrapped, e.g. in a network
    /// namespace) and waits for its banner; `data` is removed with the box.
    pub fn start_cmd(cmd: Command, data: TempDir) -> BoxProc {
        let mut b = BoxProc::spawn_cmd(cmd, data);
        b.read_banner();
        b
    }

    /// Starts `cmd` without waiting for anything (then `read_banner`).
    pub fn spawn_cmd(mut cmd: Command, data: TempDir) -> BoxProc {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start ctibox");
        let (tx, rx) = mpsc::channel();
        pump(child.stdout.take().unwrap(), tx.clone(), true);
        pump(child.stderr.take().unwrap(), tx, false);
        BoxProc { child, lines: rx, seen: vec![], sip: "0.0.0.0:0".parse().unwrap(), cti: "0.0.0.0:0".parse().unwrap(), http: "0.0.0.0:0".parse().unwrap(), data }
    }

    /// Waits for the banner and takes the bound addresses from it.
    pub fn read_banner(&mut self) {
        self.wait_line(|l| matches!(l, Line::Out(s) if s.starts_with("ready in")));
        let banner = self.seen.clone();
        self.sip = field(&banner, "sip", 2);
        self.cti = field(&banner, "cti", 2);
        self.http = field(&banner, "http", 1);
    }

    /// Waits for a line matching `pred` and returns it; fails the test if the box
    /// exits or nothing matches within the guard.
    pub fn wait_line(&mut self, pred: impl Fn(&Line) -> bool) -> Line {
        loop {
            match self.lines.recv_timeout(GUARD) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if pred(&l) {
                        return l;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!("no matching line within {GUARD:?}; saw {:#?}", self.seen),
                Err(RecvTimeoutError::Disconnected) => panic!("ctibox exited ({:?}); saw {:#?}", self.child.try_wait(), self.seen),
            }
        }
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// Waits (bounded by the guard) for the process to exit; returns its code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        // The pumps end when the process closes its pipes, which happens at exit.
        while let Ok(l) = self.lines.recv_timeout(GUARD) {
            self.seen.push(l);
        }
        self.child.wait().ok().and_then(|s| s.code())
    }

    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.http, path)
    }
}

impl Drop for BoxProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // A failing test shows what the box said (its banner names its config).
            let rest: Vec<Line> = self.lines.try_iter().collect();
            let text: Vec<&str> = self.seen.iter().chain(rest.iter()).map(|l| l.text()).collect();
            eprintln!("--- output of the box (pid {}):\n{}", self.child.id(), text.join("\n"));
        }
    }
}

/// A one-shot HTTP/1.1 GET; returns status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect http");
    s.set_read_timeout(Some(GUARD)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// Fails the test unless an external tool (sox, espeak-ng) is installed: a missing
/// tool is a broken test machine, never a pass.
pub fn require(tool: &str) {
    let ok = Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(ok, "`{tool}` is not installed; scripts/deps (run by scripts/test) installs it");
}

/// Fails the test unless iproute2's `ip` is installed.
pub fn require_ip() {
    let ok = Command::new("ip").arg("-V").output().is_ok_and(|o| o.status.success());
    assert!(ok, "`ip` (iproute2) is not installed; scripts/deps (run by scripts/test) installs it");
}

/// Runs a tool and asserts it succeeded.
pub fn run_tool(tool: &str, args: &[&str]) {
    let out = Command::new(tool).args(args).output().unwrap();
    assert!(out.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The Argon2id PHC string `ctibox hash-secret` makes of `secret`.
pub fn hash_secret(secret: &str) -> String {
    let mut c = Command::new(bin()).arg("hash-secret").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    c.stdin.take().unwrap().write_all(secret.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "ctibox hash-secret failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
