//! A guest Linux for tests that need real kernel drivers the host may not have
//! (gpio-sim, snd-aloop): the small kernel `scripts/test-kernel` builds, booted under
//! QEMU (TCG, one CPU, serial console) with an initramfs the test puts together:
//! busybox with its applet links, the binaries it names with every library `ldd`
//! lists for them, ALSA's configuration, extra files, and a test script that the
//! guest's /init runs once the kernel's file systems and loopback are up.
//!
//! The console is the only channel back: /init prints `CTIBOX-GUEST-BEGIN`, runs the
//! script, prints `CTIBOX-GUEST-EXIT <status>` and reboots, and QEMU (`-no-reboot`)
//! then exits. A script sends files back as base64 between `=== BEGIN name` and
//! `=== END name` lines (the `send` shell function /init defines), and text
//! between the same markers with `section` (`Console::section` reads either).
//! The guard on a boot is only a failure bound: when it runs out, QEMU is killed and
//! the test fails with what the console showed.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // runs scripts, QEMU, cpio, strip

use super::TempDir;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const BEGIN: &str = "CTIBOX-GUEST-BEGIN";
pub const EXIT: &str = "CTIBOX-GUEST-EXIT ";

/// The test kernel's bzImage: `scripts/test-kernel` builds it once (cached outside the
/// checkout, shared by concurrent callers) and prints its path last.
pub fn kernel() -> &'static Path {
    static KERNEL: OnceLock<PathBuf> = OnceLock::new();
    KERNEL.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/test-kernel");
        let out = Command::new(script).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{script} failed ({}):\n{}\n{}", out.status, stdout, String::from_utf8_lossy(&out.stderr));
        let path = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
        assert!(path.is_file(), "{script} printed no bzImage path: {stdout:?}");
        path
    })
}

/// Fails with a clear message when a host tool the guest needs is missing.
pub fn host_tool(name: &str) -> PathBuf {
    let out = Command::new("sh").arg("-c").arg(format!("command -v {name}")).output().unwrap();
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(out.status.success() && !path.is_empty(), "{name} is not installed (scripts/deps --kernel installs it)");
    PathBuf::from(path)
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
}

/// An initramfs being put together in a private directory.
pub struct Initramfs {
    dir: TempDir,
    root: PathBuf,
}

impl Initramfs {
    /// Busybox (static) with its applet links, /usr/share/alsa, and the usual
    /// directories.
    pub fn new(tag: &str) -> Initramfs {
        let dir = TempDir::new(&format!("initramfs-{tag}"));
        let root = dir.path().join("root");
        for d in ["bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "run", "root", "usr/share"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let busybox = host_tool("busybox");
        let probe = Command::new(&busybox).arg("--list-full").output().expect("busybox");
        let ldd = Command::new("ldd").arg(&busybox).output().expect("ldd");
        assert!(!ldd.status.success() || String::from_utf8_lossy(&ldd.stdout).contains("not a dynamic"), "{} is not static: install busybox-static (scripts/deps --kernel)", busybox.display());
        std::fs::copy(&busybox, root.join("bin/busybox")).unwrap();
        for applet in String::from_utf8_lossy(&probe.stdout).lines().map(str::trim).filter(|l| !l.is_empty()) {
            let link = root.join(applet);
            if link.symlink_metadata().is_err() {
                std::os::unix::fs::symlink("/bin/busybox", &link).unwrap();
            }
        }
        assert!(Path::new("/usr/share/alsa/alsa.conf").is_file(), "ALSA's configuration is missing (alsa-utils, scripts/deps)");
        run(Command::new("cp").args(["-a", "/usr/share/alsa"]).arg(root.join("usr/share/")), "copying /usr/share/alsa");
        let mut me = Initramfs { dir, root };
        me.text("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
        me.text("etc/group", "root:x:0:\n");
        me.text("etc/hosts", "127.0.0.1 localhost\n");
        me
    }

    /// A host path beside the tree (for files the test makes before adding them).
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The host's binary `host` at `guest` (an absolute path inside the guest), with
    /// its debug information left out, and every library `ldd` lists for it.
    pub fn binary(&mut self, host: &Path, guest: &str) -> &mut Self {
        assert!(host.is_file(), "{} is missing", host.display());
        let dest = self.path(guest);
        run(Command::new("strip").arg("--strip-debug").arg("-o").arg(&dest).arg(host), &format!("strip {}", host.display()));
        let ldd = Command::new("ldd").arg(host).output().expect("ldd (libc-bin)");
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let lib = match words.as_slice() {
                [_, "=>", path, ..] if path.starts_with('/') => path,
                [path, ..] if path.starts_with('/') => path,
                _ => continue,
            };
            assert!(!line.contains("not found"), "{}: {line}", host.display());
            let lib_dest = self.path(lib);
            if !lib_dest.exists() {
                std::fs::copy(lib, &lib_dest).unwrap_or_else(|e| panic!("copying {lib}: {e}"));
            }
        }
        self
    }

    /// A host tool (found on PATH) at the same path inside the guest.
    pub fn tool(&mut self, name: &str) -> &mut Self {
        let host = host_tool(name);
        let guest = host.to_string_lossy().into_owned();
        // Debian's merged /usr: a tool found as /bin/x lives in /usr/bin/x too.
        let guest = if guest.starts_with("/bin/") || guest.starts_with("/sbin/") { format!("/usr{guest}") } else { guest };
        self.binary(&host, &guest)
    }

    /// The host file `host` at `guest`.
    pub fn file(&mut self, host: &Path, guest: &str) -> &mut Self {
        std::fs::copy(host, self.path(guest)).unwrap_or_else(|e| panic!("copying {}: {e}", host.display()));
        self
    }

    /// A file of `contents` at `guest`.
    pub fn text(&mut self, guest: &str, contents: &str) -> &mut Self {
        std::fs::write(self.path(guest), contents).unwrap();
        self
    }

    /// A path inside the guest's root, its directories made.
    fn path(&self, guest: &str) -> PathBuf {
        let p = self.root.join(guest.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        if p.symlink_metadata().map(|m| m.file_type().is_symlink()).unwrap_or(false) {
            // A busybox applet link the real tool replaces.
            std::fs::remove_file(&p).unwrap();
        }
        p
    }

    /// Writes /init and the test script, and packs the tree (cpio newc, gzip).
    pub fn build(&mut self, script: &str) -> PathBuf {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        self.text("init", &INIT.replace("EPOCH", &now.to_string()));
        self.text("test.sh", script);
        for f in ["init", "test.sh"] {
            run(Command::new("chmod").arg("755").arg(self.root.join(f)), "chmod");
        }
        let out = self.dir.path().join("initrd.gz");
        let pack = format!("cd '{}' && find . | cpio -o -H newc -R 0:0 --quiet | gzip -1 > '{}'", self.root.display(), out.display());
        run(Command::new("sh").arg("-c").arg(pack), "packing the initramfs (cpio, gzip)");
        out
    }
}

/// The guest's /init: the kernel's file systems, loopback, the host's time, then the
/// test script between the markers, then a reboot (QEMU exits).
const INIT: &str = r#"#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t configfs configfs /sys/kernel/config
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /dev/shm
dmesg -n 1
ip link set lo up
date -s @EPOCH >/dev/null
echo CTIBOX-GUEST-BEGIN
cd /tmp
/bin/sh -c '
# send NAME FILE: the file, base64, between markers the host reads.
send() { echo "=== BEGIN $1"; base64 "$2"; echo "=== END $1"; }
# section NAME: what follows on stdin, between the same markers.
section() { echo "=== BEGIN $1"; cat; echo "=== END $1"; }
. /test.sh'
rc=$?
echo "CTIBOX-GUEST-EXIT $rc"
reboot -f
"#;

/// What the guest's console showed.
pub struct Console {
    /// The console output, `\r` removed.
    pub text: String,
    /// The test script's exit status, when the guest got as far as printing it.
    pub status: Option<i32>,
}

impl Console {
    /// The guest's output from the start marker on (the kernel's boot lines left out).
    pub fn guest(&self) -> &str {
        self.text.split_once(BEGIN).map_or(self.text.as_str(), |(_, g)| g)
    }

    /// The lines between `=== BEGIN name` and `=== END name`, if the guest sent them.
    pub fn section(&self, name: &str) -> Option<String> {
        let begin = format!("=== BEGIN {name}\n");
        let start = self.text.find(&begin)? + begin.len();
        let len = self.text[start..].find(&format!("=== END {name}\n"))?;
        Some(self.text[start..start + len].to_string())
    }

    /// The file the guest sent as `name` (base64), decoded; fails the test if absent.
    pub fn file(&self, name: &str) -> Vec<u8> {
        let Some(b64) = self.section(name) else { panic!("the guest sent no {name:?}; its console:\n{}", self.guest()) };
        decode_base64(&b64).unwrap_or_else(|e| panic!("{name:?} is not base64 ({e}); its console:\n{}", self.guest()))
    }

    /// Fails the test, showing the console, unless the guest's script exited 0.
    pub fn expect_success(&self, what: &str) {
        assert_eq!(self.status, Some(0), "{what}: the guest's script did not succeed; its console:\n{}", self.guest());
    }
}

/// Standard base64 (busybox's), lines of any length; whitespace ignored.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return Err(format!("unexpected byte {c:#04x}")),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// One guest at a time: the guests' timing (rings, tones) is real time under TCG on a
/// shared machine, and a second emulator alongside would only slow the first.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Boots the test kernel with `initrd` and returns the console once QEMU exits.
/// `guard` bounds the whole run: past it, QEMU is killed and the test fails.
pub fn boot(initrd: &Path, guard: Duration) -> Console {
    let kernel = kernel();
    let qemu = host_tool("qemu-system-x86_64");
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut child = Command::new(qemu)
        .args(["-accel", "tcg", "-m", "512", "-smp", "1", "-nographic", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 (scripts/deps --kernel)");
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    for stream in [Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>, Box::new(child.stderr.take().unwrap())] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut stream = stream;
            let mut buf = [0u8; 8192];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let deadline = Instant::now() + guard;
    let mut raw = Vec::new();
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(chunk) => raw.extend(chunk),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the guest did not finish within {guard:?} (QEMU killed); its console:\n{}", String::from_utf8_lossy(&raw).replace('\r', ""));
            }
        }
    }
    let exit = child.wait().unwrap();
    let text = String::from_utf8_lossy(&raw).replace('\r', "");
    assert!(exit.success(), "QEMU exited {exit}; console:\n{text}");
    let status = text.lines().rev().find_map(|l| l.strip_prefix(EXIT)).and_then(|s| s.trim().parse().ok());
    if status.is_none() {
        panic!("the guest ended without its exit marker (a kernel panic or /init failure?); console:\n{text}");
    }
    Console { text, status }
}
