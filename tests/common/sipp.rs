//! SIPp plumbing shared by the SIP and CTI tests: a box with a config of known
//! passwords, SIPp runs against it, registrations and calls.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // the harness runs the real binary and its peers

use super::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// SIPp answers the first challenge and knows only MD5.
pub const MD5_FIRST: &str = r#"digest_algorithms = ["md5", "sha-256"]"#;

/// Lines 1001-1008 as SIP phones with known passwords, plus `extra` configuration.
pub fn sip_config(extra: &str) -> String {
    sip_config_digest(MD5_FIRST, extra)
}

/// The same, with `digest` as the `[sip]` digest_algorithms line.
pub fn sip_config_digest(digest: &str, extra: &str) -> String {
    let mut c = CONFIG.replace("DIGEST_ALGORITHMS", digest);
    c.push_str(extra);
    for dn in 1001..=1008 {
        c.push_str(&format!(
            "\n[[device]]\nname = \"phone-{dn}\"\ntype = \"sip_phone\"\nusername = \"{dn}\"\npassword = \"{}\"\nlines = [\"{dn}\"]\ncss = \"all\"\n",
            password(&dn.to_string())
        ));
    }
    c
}

pub const CONFIG: &str = r#"
[system]
name = "sip-test"
[sip]
udp = "127.0.0.1:0"
tcp = "127.0.0.1:0"
realm = "ctibox"
DIGEST_ALGORITHMS
[sip.throttle]
auth_failures = 3
window_s = 60
ban_s = 600
[cti]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[board]
name = "sim"

[[partition]]
name = "internal"
[[calling_search_space]]
name = "all"
partitions = ["internal"]

[[line]]
dn = "1001"
partition = "internal"
display_name = "Caller"
[[line]]
dn = "1002"
partition = "internal"
[[line]]
dn = "1003"
partition = "internal"
[[line]]
dn = "1004"
partition = "internal"
forward = { busy = "1006" }
[[line]]
dn = "1005"
partition = "internal"
forward = { no_answer = "1006", no_answer_timeout_s = 1 }
[[line]]
dn = "1006"
partition = "internal"
[[line]]
dn = "1007"
partition = "internal"
forward = { all = "1002" }
[[line]]
dn = "1008"
partition = "internal"
forward = { unregistered = "1002" }
"#;

/// A per-line password that does not contain the number (the config refuses that).
pub fn password(dn: &str) -> String {
    let letters: String = dn.bytes().map(|b| (b'k' + (b - b'0')) as char).collect();
    format!("Zq7-test-secret-{letters}")
}

pub fn config() -> String {
    sip_config("")
}

pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp").join(name)
}

pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct TestBox {
    pub b: BoxProc,
    pub dir: TempDir,
}

pub fn start() -> TestBox {
    start_with(&[])
}

pub fn start_with(args: &[&str]) -> TestBox {
    start_config(&config(), args)
}

/// A box running `config`, with extra command-line arguments.
pub fn start_config(config: &str, args: &[&str]) -> TestBox {
    let dir = TempDir::new("sip");
    let file = dir.path().join("ctibox.toml");
    std::fs::write(&file, config).unwrap();
    let extra_args = args.iter().map(|s| s.to_string()).collect();
    let b = BoxProc::start(Start { config: Some(&file), extra_args, ..Default::default() });
    TestBox { b, dir }
}

/// One SIPp run: `scenario` as `service`, authenticating as `auth` when given.
pub fn sipp(tb: &TestBox, scen: &str, service: &str, auth: Option<&str>, port: u16, extra: &[&str]) -> Child {
    let err = tb.dir.path().join(format!("{scen}-{port}-errors.log"));
    let mut cmd = Command::new("sipp");
    // Always aim at loopback, even when the box listens on the wildcard address.
    cmd.arg(format!("127.0.0.1:{}", tb.b.sip.port()))
        .args(["-sf"])
        .arg(scenario(scen))
        .args(["-s", service, "-m", "1", "-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-mp", &free_udp_port().to_string(), "-timeout", "30s", "-timeout_error", "-nostdin"])
        .arg("-trace_err")
        .arg("-error_file")
        .arg(&err)
        .args(extra);
    if let Some(user) = auth {
        cmd.args(["-au", user, "-ap", &password(user)]);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    cmd.spawn().expect("sipp is installed (scripts/deps)")
}

/// Waits for a SIPp run and asserts it succeeded, showing its error log if not.
pub fn expect_success(tb: &TestBox, mut child: Child, what: &str) {
    let status = child.wait().unwrap();
    if !status.success() {
        let mut logs = String::new();
        for e in std::fs::read_dir(tb.dir.path()).unwrap().flatten() {
            if e.file_name().to_string_lossy().ends_with("errors.log") {
                logs.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        panic!("{what}: sipp exited {status}\n{logs}");
    }
}

/// Registers `dn` from `port` (the callee then listens there).
pub fn register(tb: &TestBox, dn: &str, port: u16) {
    let c = sipp(tb, "reg_only.xml", dn, Some(dn), port, &[]);
    expect_success(tb, c, &format!("register {dn}"));
}

pub fn status(tb: &TestBox) -> serde_json::Value {
    serde_json::from_str(&tb.b.http_get("/status").1).unwrap()
}

/// A caller (1001) dials `dialled`, with callees already registered and running.
pub fn call(tb: &TestBox, caller_scen: &str, dialled: &str, callees: Vec<(Child, &str)>) {
    let caller = sipp(tb, caller_scen, dialled, Some("1001"), free_udp_port(), &["-key", "caller", "1001"]);
    expect_success(tb, caller, caller_scen);
    for (c, what) in callees {
        expect_success(tb, c, what);
    }
}

pub fn callee(tb: &TestBox, scen: &str, dn: &str) -> Child {
    let port = free_udp_port();
    register(tb, dn, port);
    sipp(tb, scen, dn, None, port, &[])
}

