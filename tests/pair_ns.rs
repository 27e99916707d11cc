//! The peer pair, for real: two boxes, a witness, a phone host (SIPp and baresip) and
//! an application host (a CTI client) on one bridge, each in a
//! network namespace this test makes (root, as CI runs; addresses from 192.0.2.0/24
//! only), and a peer link of its own between the boxes. Each test fails the active box
//! one way and checks what a site would notice: the service address answers from the
//! other box, phones registered before keep receiving calls, a call made before goes
//! on (hold and hang-up after the fault get their 200s), and when the old box returns
//! exactly one box holds the address and the phone's ARP entry points at it.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use common::baresip::Phone;
use common::netns::Lan;
use common::sipp::{password, scenario};
use common::{bin, http_get, BoxProc, Line, TempDir, GUARD};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};

const KEY: &str = "6a1c3e5f7b9d0f2a4c6e8a0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f";
const SERVICE: &str = "192.0.2.10";
const WITNESS: &str = "192.0.2.1";
const PHONE: &str = "192.0.2.21";
/// The CTI application's host.
const APP: &str = "192.0.2.31";

struct Unit {
    name: &'static str,
    lan_ip: &'static str,
    link_ip: &'static str,
}

const A: Unit = Unit { name: "a", lan_ip: "192.0.2.11", link_ip: "192.0.2.129" };
const B: Unit = Unit { name: "b", lan_ip: "192.0.2.12", link_ip: "192.0.2.130" };

const CTI_SECRET: &str = "pair-test-application-secret";

fn config(me: &Unit, peer: &Unit, priority: u8) -> String {
    // baresip answers only an all-MD5 challenge (see tests/baresip.rs).
    let base = common::sipp::sip_config_digest(r#"digest_algorithms = ["md5"]"#, "")
        .replace("name = \"sip-test\"", &format!("name = \"box-{}\"", me.name))
        .replace("udp = \"127.0.0.1:0\"", "udp = \"0.0.0.0:5060\"")
        .replace("tcp = \"127.0.0.1:0\"", "tcp = \"0.0.0.0:5060\"")
        .replace("[cti]\nlisten = \"127.0.0.1:0\"", "[cti]\nlisten = \"0.0.0.0:2748\"")
        .replace("[http]\nlisten = \"127.0.0.1:0\"", "[http]\nlisten = \"0.0.0.0:8080\"");
    let app = format!("\n[[app_user]]\nname = \"crm\"\nsecret = \"{}\"\ndevices = [\"phone-1002\"]\n", app_secret_hash());
    format!(
        "{base}{app}\n[peer]\naddress = \"{}:7400\"\nlisten = \"0.0.0.0:7400\"\npeer_lan_address = \"{}\"\npriority = {priority}\nservice_address = \"{SERVICE}/25\"\ninterface = \"eth0\"\nkey = \"{KEY}\"\nwitness = \"{WITNESS}\"\nheartbeat_ms = 50\ndead_after_ms = 150\n",
        peer.link_ip, peer.lan_ip
    )
}

/// The application's Argon2 hash, made once for every box of the test binary.
fn app_secret_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| common::hash_secret(CTI_SECRET))
}

/// `ctibox cti watch` on the application host, given both boxes' own CTI addresses.
struct Watcher {
    child: Child,
    lines: std::sync::mpsc::Receiver<Line>,
    seen: Vec<String>,
}

impl Watcher {
    fn start(site: &Site) -> Watcher {
        let mut cmd = site.lan.command(&site.lan.ns("c"), bin());
        cmd.args(["cti", "--server", &format!("{}:2748,{}:2748", A.lan_ip, B.lan_ip), "--app", "crm", "watch", "phone-1002"]);
        cmd.env("CTIBOX_CTI_SECRET", CTI_SECRET).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("ctibox cti");
        let (tx, rx) = std::sync::mpsc::channel();
        for (r, out) in [(Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>, true), (Box::new(child.stderr.take().unwrap()), false)] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for l in std::io::BufReader::new(r).lines().map_while(Result::ok) {
                    if tx.send(if out { Line::Out(l) } else { Line::Err(l) }).is_err() {
                        break;
                    }
                }
            });
        }
        Watcher { child, lines: rx, seen: vec![] }
    }

    fn wait(&mut self, pred: impl Fn(&Line) -> bool) -> String {
        loop {
            match self.lines.recv_timeout(GUARD) {
                Ok(l) => {
                    self.seen.push(l.text().to_string());
                    if pred(&l) {
                        return l.text().to_string();
                    }
                }
                Err(_) => panic!("the CTI application never saw what was awaited; saw {:#?} ({:?})", self.seen, self.child.try_wait()),
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Site {
    lan: Lan,
    dir: TempDir,
}

impl Site {
    fn new() -> Site {
        let site = Site::without_peer_link();
        site.lan.link(A.name, &format!("{}/30", A.link_ip), B.name, &format!("{}/30", B.link_ip));
        site
    }

    /// The hosts on the LAN, but no peer link between the boxes yet.
    fn without_peer_link() -> Site {
        assert!(Command::new("sipp").arg("-v").output().is_ok(), "sipp is not installed; scripts/deps (run by scripts/test) installs it");
        let lan = Lan::new();
        lan.host("w", &format!("{WITNESS}/25"));
        lan.host(A.name, &format!("{}/25", A.lan_ip));
        lan.host(B.name, &format!("{}/25", B.lan_ip));
        lan.host("p", &format!("{PHONE}/25"));
        lan.host("c", &format!("{APP}/25"));
        Site { lan, dir: TempDir::new("pair") }
    }

    /// Starts a unit on `data` (a fresh directory, or the one it ran on before).
    fn start(&self, me: &Unit, peer: &Unit, priority: u8, data: Option<TempDir>) -> BoxProc {
        let mut b = self.spawn(me, peer, priority, data);
        b.read_banner();
        b
    }

    /// As `start`, without waiting for the banner.
    fn spawn(&self, me: &Unit, peer: &Unit, priority: u8, data: Option<TempDir>) -> BoxProc {
        let file = self.dir.file(&format!("box-{}.toml", me.name));
        std::fs::write(&file, config(me, peer, priority)).unwrap();
        let data = data.unwrap_or_else(|| TempDir::new(&format!("pair-{}", me.name)));
        let mut cmd = self.lan.command(&self.lan.ns(me.name), bin());
        cmd.arg("run").arg("--config").arg(&file).arg("--data-dir").arg(data.path());
        cmd.env_remove("NOTIFY_SOCKET").env_remove("WATCHDOG_USEC");
        BoxProc::spawn_cmd(cmd, data)
    }

    /// /status of a unit, asked on its own LAN address.
    fn status(&self, u: &Unit) -> serde_json::Value {
        let addr = format!("{}:8080", u.lan_ip).parse().unwrap();
        let body = self.lan.within(&self.lan.ns(u.name), move || http_get(addr, "/status").1);
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    /// Asks a unit's /status until `pred` holds (each ask is a round trip through its
    /// engine loop; bounded, and the failure shows the last answer).
    fn until(&self, u: &Unit, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
        let mut last = serde_json::Value::Null;
        for _ in 0..3000 {
            last = self.status(u);
            if pred(&last) {
                return;
            }
        }
        panic!("box-{} never {what}: {last}", u.name);
    }

    /// SIPp on the phone host against the service address.
    fn sipp(&self, scen: &str, service: &str, auth: Option<&str>, port: u16, extra: &[&str]) -> Child {
        let err = self.dir.file(&format!("{scen}-{port}-errors.log"));
        let mut cmd = self.lan.command(&self.lan.ns("p"), "sipp");
        cmd.arg(format!("{SERVICE}:5060"))
            .arg("-sf")
            .arg(scenario(scen))
            .args(["-s", service, "-m", "1", "-i", PHONE, "-p", &port.to_string()])
            .args(["-mp", &(20_000 + (port - 5000) * 10).to_string(), "-timeout", "30s", "-timeout_error", "-nostdin", "-trace_err", "-error_file"])
            .arg(&err)
            .args(extra);
        if let Some(user) = auth {
            cmd.args(["-au", user, "-ap", &password(user)]);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        cmd.spawn().expect("sipp")
    }

    fn expect(&self, mut c: Child, what: &str) {
        let st = c.wait().unwrap();
        if !st.success() {

            let mut logs = String::new();
            for e in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
                if e.file_name().to_string_lossy().ends_with("errors.log") {
                    logs.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
            panic!("{what}: sipp exited {st}\n{logs}");
        }
    }

    fn register(&self, dn: &str, port: u16) {
        let c = self.sipp("reg_only.xml", dn, Some(dn), port, &[]);
        self.expect(c, &format!("register {dn}"));
    }

    /// An OPTIONS from the phone host to the service address: the answer's status.
    /// Sent as a UA sends it over UDP, again at Timer E's intervals (500 ms, doubling
    /// to 4 s) until answered: the first copy may still reach the old box's MAC
    /// before the new one's announcement has.
    fn options(&self) -> String {
        self.lan.within(&self.lan.ns("p"), || {
            let s = UdpSocket::bind(format!("{PHONE}:0")).unwrap();
            let port = s.local_addr().unwrap().port();
            let m = format!(
                "OPTIONS sip:{SERVICE}:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE}:{port};branch=z9hG4bK-opt-{port};rport\r\nFrom: <sip:probe@{PHONE}>;tag=p{port}\r\nTo: <sip:{SERVICE}:5060>\r\nCall-ID: opt-{port}@{PHONE}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            );
            let (mut wait, mut waited) = (std::time::Duration::from_millis(500), std::time::Duration::ZERO);
            let mut buf = [0u8; 4096];
            loop {
                s.send_to(m.as_bytes(), format!("{SERVICE}:5060")).unwrap();
                s.set_read_timeout(Some(wait)).unwrap();
                match s.recv(&mut buf) {
                    Ok(n) => return String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_string(),
                    Err(e) => assert!(waited < GUARD, "no answer to OPTIONS on the service address: {e}"),
                }
                waited += wait;
                wait = (wait * 2).min(std::time::Duration::from_secs(4));
            }
        })
    }

    fn holds(&self, u: &Unit) -> bool {
        let out = self.lan.run(&self.lan.ns(u.name), &["ip", "-o", "addr", "show", "dev", "eth0"]);
        out.contains(&format!("inet {SERVICE}/25"))
    }

    fn mac(&self, u: &Unit) -> String {
        let out = self.lan.run(&self.lan.ns(u.name), &["cat", "/sys/class/net/eth0/address"]);
        out.trim().to_string()
    }

    /// The phone host's ARP entry for the service address.
    fn phone_arp(&self) -> String {
        self.lan.run(&self.lan.ns("p"), &["ip", "neigh", "show", SERVICE])
    }
}

fn has(text: &'static str) -> impl Fn(&Line) -> bool {
    move |l: &Line| l.text().contains(text)
}

/// The common course of every fault: A active with B following, 1002 and 1003
/// registered, a call 1001 -> 1002 up; then `fault` fails A; then B must serve all of
/// it; then `heal` brings A back (or a new A) and only B holds the address.
fn course(fault: impl FnOnce(&Site, &mut BoxProc), heal: impl FnOnce(&Site, BoxProc) -> BoxProc) {
    let site = Site::new();
    let mut a = site.start(&A, &B, 200, None);
    a.wait_line(has("pair: now active"));
    let mut b = site.start(&B, &A, 100, None);
    b.wait_line(has("pair: following the active unit"));
    assert!(site.holds(&A) && !site.holds(&B));

    site.register("1002", 5062);
    // 1003 is baresip, registered to the service address from the phone host.
    let stdbuf = site.lan.command(&site.lan.ns("p"), "stdbuf");
    let mut phone = Phone::start_with(stdbuf, &format!("{SERVICE}:5060"), PHONE, "1003", &password("1003")).await_registered();
    let registers = |p: &Phone| p.seen.iter().filter(|l| l.starts_with("REGISTER sip:")).count();
    let registered = registers(&phone);
    site.register("1004", 5064);
    site.until(&B, "had the registrations", |s| s["registrations"] == 3);
    let mut app = Watcher::start(&site);
    app.wait(|l| l.text().contains(&format!("watching phone-1002 on {}:2748", A.lan_ip)));
    site.until(&B, "knew the application's device", |s| s["pair_stats"]["deltas_applied"].as_u64().unwrap_or(0) >= 3);
    // The standby says so in its hello, and refuses the application's commands,
    // naming the active unit.
    let refused = site.lan.within(&site.lan.ns("c"), || {
        use std::io::{BufRead, Write};
        let s = std::net::TcpStream::connect(format!("{}:2748", B.lan_ip)).unwrap();
        s.set_read_timeout(Some(GUARD)).unwrap();
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        let mut hello = String::new();
        r.read_line(&mut hello).unwrap();
        writeln!(w, r#"{{"type":"login","id":1,"app":"crm","secret":"{CTI_SECRET}"}}"#).unwrap();
        let mut login = String::new();
        r.read_line(&mut login).unwrap();
        writeln!(w, r#"{{"type":"open","id":2,"device":"phone-1002"}}"#).unwrap();
        let mut open = String::new();
        r.read_line(&mut open).unwrap();
        (hello, login, open)
    });
    assert!(refused.0.contains(r#""role":"standby""#) && refused.0.contains(&format!(r#""active":"{}""#, A.lan_ip)), "{}", refused.0);
    assert!(refused.1.contains(r#""ok":true"#), "{}", refused.1);
    assert!(refused.2.contains(r#""code":"not_active""#) && refused.2.contains(A.lan_ip), "{}", refused.2);
    let callee = site.sipp("callee_hold.xml", "1002", None, 5062, &[]);
    let caller = site.sipp("caller_pause_hold.xml", "1002", Some("1001"), 5061, &["-key", "caller", "1001"]);
    site.until(&B, "had the call", |s| s["calls"] == 1);
    app.wait(|l| l.text().contains(r#""event":"call_connected""#) || l.text().contains(r#""event":"call_answered""#));
    // And a call still ringing at the fault: lost, and counted by the new active.
    let ringing = [
        site.sipp("callee_ring_cancel.xml", "1004", None, 5064, &[]),
        site.sipp("caller_call.xml", "1004", Some("1001"), 5065, &["-key", "caller", "1001"]),
    ];
    site.until(&B, "heard of the call in setup", |s| s["pair_stats"]["peer_calls"] == 2);

    fault(&site, &mut a);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| after_fault(&site, &mut b, &mut app, &mut phone, caller, callee)));
    for mut c in ringing {
        let _ = c.kill();
        let _ = c.wait();
    }
    if let Err(e) = r {
        std::panic::resume_unwind(e); // the boxes show their output as they drop
    }
    assert_eq!(registers(&phone), registered, "baresip did not register again after the fault");

    let a = heal(&site, a);
    assert!(site.holds(&B) && !site.holds(&A), "exactly one box holds the service address");
    let arp = site.phone_arp();
    assert!(arp.contains(&site.mac(&B)), "the phone's ARP entry points at box-b ({}): {arp}", site.mac(&B));
    drop(a);
    drop(b);
}

fn after_fault(site: &Site, b: &mut BoxProc, app: &mut Watcher, phone: &mut Phone, caller: Child, callee: Child) {
    b.wait_line(has("pair: now active"));
    assert_eq!(site.options(), "SIP/2.0 200 OK", "the service address answers from box-b");
    let st = site.status(&B);
    assert_eq!(st["pair_stats"]["calls_lost_in_setup"], 1, "the ringing call is counted as lost: {st}");
    assert!(site.holds(&B), "box-b holds the service address");
    // The application is back on box-b, with a snapshot naming the live call.
    let snap = app.wait(|l| l.text().contains(r#""event":"snapshot""#));
    assert!(snap.contains(r#""calls":[{"call":"c1","state":"connected""#), "the snapshot names the live call: {snap}");
    let on_b = format!("watching phone-1002 on {}:2748", B.lan_ip);
    if !app.seen.iter().any(|l| l.contains(&on_b)) {
        app.wait(|l| l.text().contains(&on_b));
    }

    // A phone registered before the fault (baresip) receives a new call, without
    // registering again; SIPp checks the answer is baresip's and hangs up.
    let caller2 = site.sipp("caller_call_baresip.xml", "1003", Some("1001"), 5071, &["-key", "caller", "1001"]);
    site.expect(caller2, "a new call to baresip (1003) after the takeover");
    phone.wait("Call established");
    phone.hung_up_on();

    // The call made before the fault: hold, resume and hang-up after it, all 200.
    site.expect(caller, "hold, resume and BYE of the call made before the fault");
    site.expect(callee, "the held call's other end");
    site.until(&B, "ended both calls", |s| s["calls"] == 0);
}

#[test]
fn kill_9_of_the_active_box_moves_address_registrations_and_calls_to_the_standby() {
    course(
        |_, a| a.signal(nix::sys::signal::Signal::SIGKILL),
        |site, mut a| {
            let _ = a.child.wait();
            // The dead box's host still has the address (its kernel would answer ARP
            // for it): `ctibox peer release`, the unit's ExecStopPost, takes it off.
            assert!(site.holds(&A), "kill -9 leaves the address on the interface");
            let file = site.dir.file("box-a.toml");
            let out = site.lan.run(&site.lan.ns("a"), &[bin(), "peer", "release", "--config", file.to_str().unwrap(), "--data-dir", a.data.path().to_str().unwrap()]);
            assert!(out.starts_with(&format!("released {SERVICE}/25 from eth0")), "{out}");
            assert!(!site.holds(&A));
            let data = std::mem::replace(&mut a.data, TempDir::new("pair-spare"));
            drop(a);
            let mut again = site.start(&A, &B, 200, Some(data));
            again.wait_line(has("pair: following the active unit"));
            again
        },
    );
}

#[test]
fn a_frozen_active_box_steps_down_when_it_resumes_and_takes_nothing_back() {
    course(
        |_, a| a.signal(nix::sys::signal::Signal::SIGSTOP),
        |_, mut a| {
            a.signal(nix::sys::signal::Signal::SIGCONT);
            a.wait_line(has("pair: following the active unit"));
            a
        },
    );
}

#[test]
fn the_active_box_cut_off_from_the_lan_is_replaced_and_never_takes_back() {
    course(
        |site, _| {
            site.lan.run(&site.lan.ns("a"), &["ip", "link", "set", "eth0", "down"]);
            site.lan.run(&site.lan.ns("a"), &["ip", "link", "set", "link0", "down"]);
        },
        |site, mut a| {
            site.lan.run(&site.lan.ns("a"), &["ip", "link", "set", "link0", "up"]);
            site.lan.run(&site.lan.ns("a"), &["ip", "link", "set", "eth0", "up"]);
            a.wait_line(has("pair: following the active unit"));
            a
        },
    );
}

#[test]
fn a_cut_peer_link_alone_moves_nothing_and_makes_no_second_active() {
    let site = Site::new();
    let mut a = site.start(&A, &B, 200, None);
    a.wait_line(has("pair: now active"));
    let mut b = site.start(&B, &A, 100, None);
    b.wait_line(has("pair: following the active unit"));
    // A SIP request to the standby's own address changes nothing there: it is dropped
    // unread and counted (its engine is a copy of the active's).
    site.lan.within(&site.lan.ns("p"), || {
        let s = UdpSocket::bind(format!("{PHONE}:0")).unwrap();
        let m = format!("OPTIONS sip:{}:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE}:9;branch=z9hG4bK-sb\r\nFrom: <sip:p@{PHONE}>;tag=1\r\nTo: <sip:b@{}>\r\nCall-ID: sb@{PHONE}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", B.lan_ip, B.lan_ip);
        s.send_to(m.as_bytes(), format!("{}:5060", B.lan_ip)).unwrap();
    });
    site.until(&B, "dropped the request to its own address", |s| s["pair_stats"]["sip_dropped"].as_u64().unwrap_or(0) >= 1);
    assert_eq!(site.status(&B)["sip"]["received"], 0, "the standby's engine never saw it");
    site.lan.run(&site.lan.ns("a"), &["ip", "link", "set", "link0", "down"]);
    // B's probes over the LAN find A serving: B stays standby through many dead_afters.
    site.until(&B, "probed the peer over the LAN ten times", |s| s["pair_stats"]["probes"].as_u64().unwrap_or(0) >= 10);
    let s = site.status(&B);
    assert_eq!(s["pair"]["role"], "standby", "{s}");
    assert_eq!(s["pair_stats"]["takeovers"], 0, "{s}");
    assert!(site.holds(&A) && !site.holds(&B));
    assert_eq!(site.options(), "SIP/2.0 200 OK");
    site.lan.run(&site.lan.ns("a"), &["ip", "link", "set", "link0", "up"]);
    drop(b);
    drop(a);
}

#[test]
fn forged_and_replayed_peer_frames_are_refused_and_counted() {
    let site = Site::new();
    let mut a = site.start(&A, &B, 200, None);
    a.wait_line(has("pair: now active"));
    // A frame signed with another key, and garbage, sent to A's peer-link port.
    site.lan.within(&site.lan.ns("b"), || {
        let s = UdpSocket::bind("192.0.2.130:0").unwrap();
        let mut forged = vec![ctibox::core::pair::wire::VERSION, 0, 4, 0, 1, 2, 3];
        forged.extend_from_slice(&[0u8; 32]);
        s.send_to(&forged, "192.0.2.129:7400").unwrap();
        s.send_to(b"hello", "192.0.2.129:7400").unwrap();
        // An authentic heartbeat (signed with the pair key), then the same bytes again:
        // the second is a replay.
        use ctibox::core::pair::wire::{encode, Body, Frame};
        use ctibox::core::pair::{Role, Status};
        let key: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&KEY[2 * i..2 * i + 2], 16).unwrap()).collect();
        let status = Status { term: 0, role: Role::Starting, priority: 1, unit: 1, handover: false };
        let frame = encode(&key, &Frame { boot: 1, seq: 1, body: Body::Heartbeat { status, calls: 0 } }).unwrap();
        s.send_to(&frame, "192.0.2.129:7400").unwrap();
        s.send_to(&frame, "192.0.2.129:7400").unwrap();
    });
    site.until(&A, "counted the forged, short and replayed frames", |s| {
        let r = &s["pair_stats"]["refused"];
        r["forged"].as_u64() == Some(1) && r["short"].as_u64() == Some(1) && r["replayed"].as_u64() == Some(1)
    });
    let s = site.status(&A);
    assert_eq!(s["pair"]["role"], "active", "{s}");
    drop(a);
}

#[test]
fn a_switchover_hands_the_calls_over_and_the_old_active_follows() {
    course(
        |site, a| {
            let status = site.lan.run(&site.lan.ns("a"), &[bin(), "peer", "status", "--data-dir", a.data.path().to_str().unwrap()]);
            assert!(status.contains("role: active") && status.contains("held here"), "{status}");
            // The call ringing to 1004 would be lost: the switchover waits for it, and
            // with no wait refuses, naming it; --force hands over all the same.
            let dir = a.data.path().to_str().unwrap();
            let out = site.lan.try_run(&site.lan.ns("a"), &[bin(), "peer", "switchover", "--wait-s", "0", "--data-dir", dir]);
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(!out.status.success() && text.starts_with("error: no switchover: 1 call(s) in setup"), "{text}");
            assert_eq!(site.status(&A)["pair"]["role"], "active", "still active");
            let out = site.lan.run(&site.lan.ns("a"), &[bin(), "peer", "switchover", "--force", "--data-dir", dir]);
            assert!(out.starts_with("ok:"), "{out}");
        },
        |site, mut a| {
            a.wait_line(has("pair: following the active unit"));
            let status = site.lan.run(&site.lan.ns("a"), &[bin(), "peer", "status", "--data-dir", a.data.path().to_str().unwrap()]);
            assert!(!status.contains("role: active") && status.contains("not held here"), "{status}");
            a
        },
    );
}


#[test]
fn the_active_box_vanishing_with_its_namespace_is_replaced_and_a_new_box_joins_as_standby() {
    course(
        |site, a| {
            // The host is gone: its process, its interfaces (the bridge port and the
            // peer link with them) and the namespace.
            a.signal(nix::sys::signal::Signal::SIGKILL);
            let _ = a.child.wait();
            common::netns::ip(&["netns", "del", &site.lan.ns("a")]);
        },
        |site, a| {
            drop(a);
            // A new host in its place, on the same addresses, with an empty data dir.
            site.lan.host(A.name, &format!("{}/25", A.lan_ip));
            site.lan.link(A.name, &format!("{}/30", A.link_ip), B.name, &format!("{}/30", B.link_ip));
            let mut again = site.start(&A, &B, 200, None);
            again.wait_line(has("pair: following the active unit"));
            again
        },
    );
}

#[test]
fn a_box_that_restarts_never_takes_a_term_it_held_before() {
    let site = Site::new();
    // A alone (its peer never starts): it takes over at term 2, unit 0's first.
    let mut a = site.start(&A, &B, 200, None);
    let first = a.wait_line(has("pair: now active")).text().to_string();
    assert!(first.contains("(term 2)"), "{first}");
    // A clean stop, and a crash, each with the same data directory: every start takes
    // a term past the last, though no peer is there to tell it.
    let mut a = restart_a(&site, a, nix::sys::signal::Signal::SIGTERM);
    let second = a.wait_line(has("pair: now active")).text().to_string();
    assert!(second.contains("(term 4)"), "{second}");
    let st = site.status(&A);
    assert_eq!(st["pair"]["term"], 4, "{st}");
    // The persist thread writes the term off the engine loop: kill only once it has.
    let file = a.data.path().join("pair-term");
    let start = std::time::Instant::now();
    while saved_term(&file) != Some(4) {
        assert!(start.elapsed() < GUARD, "pair-term never held term 4: {:?}", saved_term(&file));
        std::thread::yield_now();
    }
    let mut a = restart_a(&site, a, nix::sys::signal::Signal::SIGKILL);
    let third = a.wait_line(has("pair: now active")).text().to_string();
    assert!(third.contains("(term 6)"), "{third}");
}

/// The term in a unit's `pair-term` file, if it is there and whole.
fn saved_term(file: &std::path::Path) -> Option<u64> {
    let bytes = std::fs::read(file).ok()?;
    let payload = ctibox::persist::unseal(&bytes).ok()?;
    Some(u64::from_le_bytes(payload.try_into().ok()?))
}

#[test]
fn a_box_whose_peer_link_has_no_route_yet_waits_for_it_serving_nothing_then_starts() {
    let site = Site::without_peer_link();
    let mut a = site.spawn(&A, &B, 200, None);
    a.wait_line(has("pair: no route to the peer 192.0.2.130:7400 yet"));
    assert!(!site.holds(&A), "nothing served while the peer link has no route");
    // The link comes up (as at boot, once the network is configured): A starts and,
    // with no peer there, takes over after dead_after and a probe.
    site.lan.link(A.name, &format!("{}/30", A.link_ip), B.name, &format!("{}/30", B.link_ip));
    a.wait_line(has("pair: the peer link has a route to 192.0.2.130:7400 now"));
    a.read_banner();
    a.wait_line(has("pair: now active (term 2)"));
    assert_eq!(site.options(), "SIP/2.0 200 OK");
    assert!(site.holds(&A));
}

/// Ends box A with `sig` and starts it again on the same data directory.
fn restart_a(site: &Site, mut a: BoxProc, sig: nix::sys::signal::Signal) -> BoxProc {
    a.signal(sig);
    let _ = a.child.wait();
    let data = std::mem::replace(&mut a.data, TempDir::new("pair-spare"));
    drop(a);
    site.start(&A, &B, 200, Some(data))
}
