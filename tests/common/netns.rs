//! Network namespaces a test makes itself (root, as CI runs): hosts on one bridge,
//! addresses from 192.0.2.0/24 only, everything deleted when the topology is dropped.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::process::{Command, Output};

/// Fails (never skips) a test that needs root.
pub fn require_root() {
    assert!(nix::unistd::geteuid().is_root(), "this test makes network namespaces: run it as root (CI does)");
    super::require_ip();
}

/// Runs `ip args...` and asserts it succeeded.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip (iproute2) is installed");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// Runs `ip args...`; its output, whether it succeeded or not.
pub fn ip_try(args: &[&str]) -> Output {
    Command::new("ip").args(args).output().expect("ip (iproute2) is installed")
}

/// A bridge in a namespace of its own, and hosts plugged into it.
pub struct Lan {
    pub prefix: String,
    pub bridge_ns: String,
    pub hosts: std::cell::RefCell<Vec<String>>,
}

impl Lan {
    /// A new LAN; namespace names start with `ct<pid><n>`.
    pub fn new() -> Lan {
        require_root();
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let prefix = format!("ct{}{n}", std::process::id() % 100_000);
        let bridge_ns = format!("{prefix}-lan");
        ip(&["netns", "add", &bridge_ns]);
        let lan = Lan { prefix, bridge_ns, hosts: Default::default() };
        lan.run(&lan.bridge_ns, &["ip", "link", "add", "br0", "type", "bridge"]);
        lan.run(&lan.bridge_ns, &["ip", "link", "set", "br0", "up"]);
        lan.run(&lan.bridge_ns, &["ip", "link", "set", "lo", "up"]);
        lan
    }

    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// A host `name` with `eth0` on the bridge at `addr` (e.g. "192.0.2.11/25").
    pub fn host(&self, name: &str, addr: &str) -> String {
        let ns = self.ns(name);
        ip(&["netns", "add", &ns]);
        self.hosts.borrow_mut().push(ns.clone());
        let (h, b) = (format!("{}{name}", self.prefix), format!("{}{name}b", self.prefix));
        assert!(b.len() <= 15, "interface name {b} too long");
        ip(&["link", "add", &h, "type", "veth", "peer", "name", &b]);
        ip(&["link", "set", &h, "netns", &ns]);
        ip(&["link", "set", &b, "netns", &self.bridge_ns]);
        self.run(&ns, &["ip", "link", "set", &h, "name", "eth0"]);
        self.run(&ns, &["ip", "addr", "add", addr, "dev", "eth0"]);
        self.run(&ns, &["ip", "link", "set", "eth0", "up"]);
        self.run(&ns, &["ip", "link", "set", "lo", "up"]);
        self.run(&self.bridge_ns, &["ip", "link", "set", &b, "master", "br0"]);
        self.run(&self.bridge_ns, &["ip", "link", "set", &b, "up"]);
        ns
    }

    /// A direct link `link0` between two hosts, at `a_addr` and `b_addr`.
    pub fn link(&self, a: &str, a_addr: &str, b: &str, b_addr: &str) {
        let (x, y) = (format!("{}{a}{b}", self.prefix), format!("{}{b}{a}", self.prefix));
        assert!(x.len() <= 15 && y.len() <= 15, "interface names {x} {y} too long");
        ip(&["link", "add", &x, "type", "veth", "peer", "name", &y]);
        for (dev, host, addr) in [(&x, a, a_addr), (&y, b, b_addr)] {
            let ns = self.ns(host);
            ip(&["link", "set", dev, "netns", &ns]);
            self.run(&ns, &["ip", "link", "set", dev, "name", "link0"]);
            self.run(&ns, &["ip", "addr", "add", addr, "dev", "link0"]);
            self.run(&ns, &["ip", "link", "set", "link0", "up"]);
        }
    }

    /// Runs a command inside namespace `ns` and asserts it succeeded.
    pub fn run(&self, ns: &str, args: &[&str]) -> String {
        let out = self.try_run(ns, args);
        assert!(out.status.success(), "in {ns}: {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn try_run(&self, ns: &str, args: &[&str]) -> Output {
        Command::new("ip").args(["netns", "exec", ns]).args(args).output().expect("ip netns exec")
    }

    /// A command to run inside `ns` (spawned by the caller).
    pub fn command(&self, ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }

    /// Runs `f` on a thread inside namespace `ns` (sockets it opens live there).
    pub fn within<T: Send + 'static>(&self, ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{ns}");
        std::thread::spawn(move || {
            let fd = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("thread in namespace")
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let hosts = self.hosts.borrow().clone();
        for ns in hosts.iter().chain(std::iter::once(&self.bridge_ns)) {
            // Whatever still runs in it goes first.
            if let Ok(o) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    if let Ok(p) = pid.parse::<i32>() {
                        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
                    }
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
