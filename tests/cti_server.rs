//! The CTI server end to end: real SIP callers (SIPp) ring a CTI route point and a
//! CTI port on the real binary while a real TCP (and WebSocket) application controls
//! them: answer with dynamic media (the caller's SDP carries the application's
//! address), redirect to a registered phone, hold and unhold, drop, twenty calls at
//! once on one route point, the application killed (CFOF) and gone (CFNA), then its
//! return with a correct snapshot.
// Tests of the real binary use sockets, files and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;
use common::sipp::*;
use common::*;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

const SECRET: &str = "crm-Secret-123";


fn cti_config() -> String {
    sip_config(&format!(
        r#"
[[line]]
dn = "2000"
partition = "internal"
display_name = "Sales"
forward = {{ no_answer = "1002", on_failure = "1003", no_answer_timeout_s = 20 }}
[[line]]
dn = "2101"
partition = "internal"
forward = {{ no_answer = "1002", on_failure = "1003" }}
[[device]]
name = "rp-2000"
type = "cti_route_point"
lines = ["2000"]
css = "all"
max_calls = 30
answer_timeout_s = 30
[[device]]
name = "port-2101"
type = "cti_port"
lines = ["2101"]
css = "all"
[[app_user]]
name = "crm"
secret = "{}"
devices = ["rp-2000", "port-2101", "phone-1004"]
"#,
        hash_secret(SECRET)
    ))
}

/// How an application's messages travel: JSON lines over TCP, or WebSocket frames.
trait Wire {
    fn send_text(&mut self, text: &str);
    fn read_text(&mut self) -> String;
}

/// JSON lines over TCP.
struct Tcp {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Wire for Tcp {
    fn send_text(&mut self, text: &str) {
        writeln!(self.w, "{text}").unwrap();
    }
    fn read_text(&mut self) -> String {
        let mut line = String::new();
        let n = self.r.read_line(&mut line).expect("the server answers within the guard");
        assert!(n > 0, "the server closed the connection");
        line
    }
}

/// One message per WebSocket text frame.
struct Ws(tungstenite::WebSocket<TcpStream>);

impl Wire for Ws {
    fn send_text(&mut self, text: &str) {
        self.0.send(tungstenite::Message::text(text)).unwrap();
    }
    fn read_text(&mut self) -> String {
        loop {
            match self.0.read().expect("a message within the guard") {
                tungstenite::Message::Text(t) => return t.as_str().to_string(),
                tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

/// A CTI application: requests with ids, replies matched in order, events kept.
struct App<W: Wire = Tcp> {
    wire: W,
    events: VecDeque<Value>,
    next_id: i64,
}

impl App<Tcp> {
    fn connect(tb: &TestBox) -> App<Tcp> {
        let w = TcpStream::connect(tb.b.cti).unwrap();
        w.set_read_timeout(Some(GUARD)).unwrap();
        let r = BufReader::new(w.try_clone().unwrap());
        App::greeted(Tcp { w, r })
    }

    fn login_and_open(tb: &TestBox, devices: &[&str]) -> App<Tcp> {
        let mut app = App::connect(tb);
        app.login_and_open_all(devices);
        app
    }
}

impl App<Ws> {
    fn connect_ws(tb: &TestBox) -> App<Ws> {
        let s = TcpStream::connect(tb.b.http).unwrap();
        s.set_read_timeout(Some(GUARD)).unwrap();
        let (ws, _) = tungstenite::client(format!("ws://{}/cti", tb.b.http), s).expect("websocket handshake");
        App::greeted(Ws(ws))
    }
}

impl<W: Wire> App<W> {
    fn greeted(wire: W) -> App<W> {
        let mut app = App { wire, events: VecDeque::new(), next_id: 0 };
        assert_eq!(app.read()["type"], "hello");
        app
    }

    fn read(&mut self) -> Value {
        let text = self.wire.read_text();
        if std::env::var_os("CTI_TRACE").is_some() {
            eprintln!("<- {}", text.trim_end());
        }
        serde_json::from_str(&text).unwrap()
    }

    /// Sends a request and returns its reply; events that arrive meanwhile are kept.
    fn request(&mut self, mut req: Value) -> Value {
        self.next_id += 1;
        req["id"] = json!(self.next_id);
        self.wire.send_text(&req.to_string());
        loop {
            let v = self.read();
            if v["type"] == "reply" {
                assert_eq!(v["id"], json!(self.next_id), "replies come in order: {v}");
                return v;
            }
            self.events.push_back(v);
        }
    }

    fn ok(&mut self, req: Value) -> Value {
        let r = self.request(req.clone());
        assert_eq!(r["ok"], true, "{req} -> {r}");
        r
    }

    /// The next event named `name` (earlier ones are kept in order for later waits).
    fn event(&mut self, name: &str) -> Value {
        if let Some(i) = self.events.iter().position(|e| e["event"] == name) {
            return self.events.remove(i).unwrap();
        }
        loop {
            let v = self.read();
            if v["event"] == name {
                return v;
            }
            self.events.push_back(v);
        }
    }

    fn login_and_open_all(&mut self, devices: &[&str]) {
        let r = self.ok(json!({"type":"login","app":"crm","secret":SECRET}));
        assert_eq!(r["app"], "crm");
        for d in devices {
            self.ok(json!({"type":"open","device":d}));
            let ev = self.event("device_in_service");
            assert_eq!(ev["device"], *d);
        }
    }
}

fn caller(tb: &TestBox, scen: &str, dialled: &str, extra: &[&str]) -> std::process::Child {
    let mut args = vec!["-key", "caller", "1001"];
    args.extend_from_slice(extra);
    sipp(tb, scen, dialled, Some("1001"), free_udp_port(), &args)
}

fn start() -> TestBox {
    start_config(&cti_config(), &[])
}

#[test]
fn a_route_point_answers_only_with_media_and_the_caller_gets_that_media_in_its_sdp() {
    let tb = start();
    let mut app = App::login_and_open(&tb, &["rp-2000"]);
    let c = caller(&tb, "caller_cti_answer.xml", "2000", &["-d", "200"]);
    let offered = app.event("call_offered");
    assert_eq!((offered["device"].as_str(), offered["from"].as_str(), offered["to"].as_str()), (Some("rp-2000"), Some("1001"), Some("2000")), "{offered}");
    let call = offered["call"].as_str().unwrap().to_string();
    // A route point takes media per call: answering without it is refused, naming why.
    let r = app.request(json!({"type":"answer","call":call}));
    assert_eq!(r["error"]["code"], "media_required", "{r}");
    let r = app.ok(json!({"type":"answer","call":call,"media":{"ip":"127.0.0.1","port":40000,"codec":"pcmu"}}));
    assert_eq!(r["media"]["local_port"], 40000);
    app.event("call_answered");
    let m = app.event("media_started");
    assert_eq!((m["local_ip"].as_str(), m["local_port"].as_u64(), m["codec"].as_str()), (Some("127.0.0.1"), Some(40000), Some("pcmu")));
    assert_eq!(m["remote_ip"], "127.0.0.1", "the caller's RTP address from its SDP: {m}");
    app.event("call_connected"); // the caller's ACK confirmed the answer
    // The caller's scenario checked the SDP it got carries 127.0.0.1:40000, then hung up.
    expect_success(&tb, c, "caller answered by the application");
    let ended = app.event("call_ended");
    assert_eq!((ended["call"].as_str(), ended["reason"].as_str()), (Some(call.as_str()), Some("hangup")));
}

#[test]
fn redirect_to_a_registered_phone_uses_the_route_point_css() {
    let tb = start();
    let mut app = App::login_and_open(&tb, &["rp-2000"]);
    let phone = callee(&tb, "callee_answer.xml", "1002");
    let c = caller(&tb, "caller_call.xml", "2000", &[]);
    let call = app.event("call_offered")["call"].as_str().unwrap().to_string();
    let r = app.request(json!({"type":"redirect","call":call,"to":"9999"}));
    assert_eq!(r["error"]["code"], "invalid_state", "unreachable target named: {r}");
    app.ok(json!({"type":"redirect","call":call,"to":"1002"}));
    assert_eq!(app.event("call_redirected")["to"], "1002");
    assert_eq!(app.event("call_ended")["reason"], "redirected");
    expect_success(&tb, c, "caller redirected to 1002");
    expect_success(&tb, phone, "1002 answers the redirected call");
}

#[test]
fn the_application_holds_resumes_and_drops_answered_calls_but_cannot_hold_offered_ones() {
    let tb = start();
    let mut app = App::login_and_open(&tb, &["rp-2000"]);
    let c = caller(&tb, "caller_cti_hold.xml", "2000", &[]);
    let call = app.event("call_offered")["call"].as_str().unwrap().to_string();
    let r = app.request(json!({"type":"hold","call":call}));
    assert_eq!(r["error"]["code"], "invalid_state", "an offered call cannot be held: {r}");
    app.ok(json!({"type":"answer","call":call,"media":{"ip":"127.0.0.1","port":40000}}));
    app.event("media_started");
    app.ok(json!({"type":"hold","call":call}));
    app.event("call_held");
    app.event("media_stopped");
    app.ok(json!({"type":"unhold","call":call}));
    app.event("call_resumed");
    app.event("media_started");
    expect_success(&tb, c, "caller held and resumed by re-INVITE");
    let ended = app.event("call_ended");
    assert_eq!((ended["call"].as_str(), ended["reason"].as_str()), (Some(call.as_str()), Some("hangup")));

    // Drop: the application hangs up an answered call; the caller gets a BYE.
    let c = caller(&tb, "caller_cti_dropped.xml", "2000", &[]);
    let call = app.event("call_offered")["call"].as_str().unwrap().to_string();
    app.ok(json!({"type":"answer","call":call,"media":{"ip":"127.0.0.1","port":40000}}));
    app.event("call_answered");
    app.ok(json!({"type":"drop","call":call}));
    let ended = app.event("call_ended");
    assert_eq!((ended["call"].as_str(), ended["reason"].as_str()), (Some(call.as_str()), Some("dropped")));
    expect_success(&tb, c, "caller gets BYE when the application drops");
}

#[test]
fn twenty_simultaneous_calls_on_one_route_point() {
    let tb = start();
    let mut app = App::login_and_open(&tb, &["rp-2000"]);
    let c = caller(&tb, "caller_cti_answer.xml", "2000", &["-d", "300", "-m", "20", "-l", "20", "-r", "40"]);
    // All twenty are offered before any is answered: they are up at once.
    let calls: Vec<String> = (0..20).map(|_| app.event("call_offered")["call"].as_str().unwrap().to_string()).collect();
    let distinct: std::collections::BTreeSet<&String> = calls.iter().collect();
    assert_eq!(distinct.len(), 20);
    assert_eq!(status(&tb)["calls"], 20);
    for call in &calls {
        app.ok(json!({"type":"answer","call":call,"media":{"ip":"127.0.0.1","port":40000}}));
    }
    expect_success(&tb, c, "twenty callers answered by the application");
    for _ in 0..20 {
        app.event("call_ended");
    }
    assert_eq!(status(&tb)["calls_completed"], 20);
}

#[test]
fn application_failure_cfof_then_cfna_then_return_with_snapshot() {
    let tb = start();
    let mut app = App::login_and_open(&tb, &["rp-2000", "port-2101"]);
    // A call answered at the CTI port stays up through the failure.
    // (-timeout is a guard: the caller waits for the box's BYE when the call is dropped.)
    let kept = caller(&tb, "caller_cti_answer_wait_bye.xml", "2101", &["-timeout", "30s"]);
    let kept_call = app.event("call_offered")["call"].as_str().unwrap().to_string();
    app.ok(json!({"type":"answer","call":kept_call,"media":{"ip":"127.0.0.1","port":40000}}));
    app.event("media_started");
    // A call offered at the route point when the application dies goes to CFOF (1003).
    let cfof_phone = callee(&tb, "callee_answer.xml", "1003");
    let c = caller(&tb, "caller_call.xml", "2000", &[]);
    app.event("call_offered");
    drop(app); // killed: the connection closes without logout
    expect_success(&tb, c, "caller forwarded on failure");
    expect_success(&tb, cfof_phone, "CFOF target 1003 answers");
    // While no application has the route point open, new calls go to CFNA (1002).
    let cfna_phone = callee(&tb, "callee_answer.xml", "1002");
    let c = caller(&tb, "caller_call.xml", "2000", &[]);
    expect_success(&tb, c, "caller forwarded on no answer while the application is gone");
    expect_success(&tb, cfna_phone, "CFNA target 1002 answers");
    // The application comes back, opens its devices and gets a snapshot of live calls.
    let mut app = App::login_and_open(&tb, &["rp-2000", "port-2101"]);
    let r = app.ok(json!({"type":"snapshot"}));
    let calls = r["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "only the call kept at the port is live: {r}");
    assert_eq!((calls[0]["call"].as_str(), calls[0]["state"].as_str(), calls[0]["device"].as_str()), (Some(kept_call.as_str()), Some("connected"), Some("port-2101")));
    assert_eq!(calls[0]["media"]["local_port"], 40000);
    let snap = app.event("snapshot");
    let at_port = if snap["device"] == "port-2101" { snap } else { app.event("snapshot") };
    assert_eq!(at_port["calls"][0]["call"], kept_call.as_str());
    // And it can control that call again: drop it.
    app.ok(json!({"type":"drop","call":kept_call}));
    expect_success(&tb, kept, "the caller of the dropped call gets the box's BYE");
}

#[test]
fn bad_requests_name_the_problem_and_the_connection_stays_usable() {
    let tb = start();
    let mut app = App::connect(&tb);
    let r = app.request(json!({"type":"open","device":"rp-2000"}));
    assert_eq!(r["error"]["code"], "not_logged_in", "{r}");
    let r = app.request(json!({"type":"login","app":"crm","secret":"wrong"}));
    assert_eq!(r["error"]["code"], "auth_failed", "{r}");
    app.ok(json!({"type":"login","app":"crm","secret":SECRET}));
    let r = app.request(json!({"type":"open","device":"nope"}));
    assert_eq!(r["error"]["code"], "unknown_device", "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("nope"));
    let r = app.request(json!({"type":"open","device":"phone-1001"}));
    assert_eq!(r["error"]["code"], "device_not_allowed", "{r}");
    let r = app.request(json!({"type":"answer","call":"c999"}));
    assert_eq!(r["error"]["code"], "unknown_call", "{r}");
    app.wire.send_text("{not json");
    let v = app.read();
    assert_eq!(v["error"]["code"], "bad_json", "{v}");
    app.wire.send_text(r#"{"type":"redirect","id":77,"call":"c1"}"#);
    let v = app.read();
    assert_eq!((v["id"].as_i64(), v["error"]["code"].as_str()), (Some(77), Some("missing_field")), "{v}");
    // Still usable; a second application cannot take a device that is open.
    app.ok(json!({"type":"open","device":"rp-2000"}));
    let devices = app.ok(json!({"type":"list_devices"}));
    assert!(devices["devices"].as_array().unwrap().iter().any(|d| d["name"] == "rp-2000" && d["open"] == true), "{devices}");
}

#[test]
fn a_websocket_application_answers_a_route_point_call() {
    let tb = start();
    let mut app = App::connect_ws(&tb);
    app.login_and_open_all(&["rp-2000"]);
    let c = caller(&tb, "caller_cti_answer.xml", "2000", &["-d", "200"]);
    let call = app.event("call_offered")["call"].as_str().unwrap().to_string();
    app.ok(json!({"type":"answer","call":call,"media":{"ip":"127.0.0.1","port":40000}}));
    let m = app.event("media_started");
    assert_eq!(m["local_port"], 40000);
    expect_success(&tb, c, "caller answered by a WebSocket application");
    assert_eq!(app.event("call_ended")["reason"], "hangup");
}

#[test]
fn a_cti_port_answers_with_media_set_per_call_or_given_at_open_which_route_points_refuse() {
    let tb = start();
    // Dynamic: opened without media, the port refuses to answer until media is set.
    let mut app = App::login_and_open(&tb, &["port-2101"]);
    let c = caller(&tb, "caller_cti_answer.xml", "2101", &["-d", "100"]);
    let call = app.event("call_offered")["call"].as_str().unwrap().to_string();
    let r = app.request(json!({"type":"answer","call":call}));
    assert_eq!(r["error"]["code"], "media_required", "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("set_media"), "{r}");
    app.ok(json!({"type":"set_media","call":call,"ip":"127.0.0.1","port":40000}));
    app.ok(json!({"type":"answer","call":call}));
    expect_success(&tb, c, "dynamic media answer at the port");
    app.event("call_ended");
    // Static: media given at open is used for every call at the port.
    app.ok(json!({"type":"close","device":"port-2101"}));
    app.event("device_out_of_service");
    app.ok(json!({"type":"open","device":"port-2101","media":{"ip":"127.0.0.1","port":40000}}));
    app.event("device_in_service");
    let c = caller(&tb, "caller_cti_answer.xml", "2101", &["-d", "100"]);
    let call = app.event("call_offered")["call"].as_str().unwrap().to_string();
    let r = app.ok(json!({"type":"answer","call":call}));
    assert_eq!(r["media"]["local_port"], 40000);
    expect_success(&tb, c, "static media answer at the port");
    // A route point refuses static media at open.
    let r = app.request(json!({"type":"open","device":"rp-2000","media":{"ip":"127.0.0.1","port":40000}}));
    assert_eq!(r["error"]["code"], "bad_field", "{r}");
}

#[test]
fn a_controlled_phone_line_is_watched_held_resumed_and_dropped() {
    let tb = start();
    let mut app = App::login_and_open(&tb, &["phone-1004"]);
    let phone = callee(&tb, "callee_hold.xml", "1004");
    let c = caller(&tb, "caller_call_wait_bye.xml", "1004", &[]);
    let offered = app.event("call_offered");
    assert_eq!((offered["device"].as_str(), offered["from"].as_str()), (Some("phone-1004"), Some("1001")), "{offered}");
    let call = offered["call"].as_str().unwrap().to_string();
    app.event("call_connected");
    // Hold and resume by re-INVITE toward the phone (it checks a=sendonly, then a=sendrecv).
    app.ok(json!({"type":"hold","call":call}));
    app.event("call_held");
    app.ok(json!({"type":"unhold","call":call}));
    app.event("call_resumed");
    // Drop: both parties get a BYE.
    app.ok(json!({"type":"drop","call":call}));
    assert_eq!(app.event("call_ended")["reason"], "dropped");
    expect_success(&tb, c, "caller hung up by the application");
    expect_success(&tb, phone, "phone held, resumed and hung up by the application");
    assert_eq!(status(&tb)["calls"], 0);
}

#[test]
fn a_cti_port_calls_out_with_its_static_media_and_bad_targets_or_closed_devices_are_refused() {
    let tb = start();
    let mut app = App::login_and_open(&tb, &[]);
    app.ok(json!({"type":"open","device":"port-2101","media":{"ip":"127.0.0.1","port":40000}}));
    app.event("device_in_service");
    let r = app.request(json!({"type":"make_call","device":"port-2101","to":"9999"}));
    assert_eq!(r["error"]["code"], "invalid_state", "unreachable number named: {r}");
    let r = app.request(json!({"type":"make_call","device":"rp-2000","to":"1002"}));
    assert_eq!(r["error"]["code"], "device_not_open", "{r}");
    // The called phone checks that the offer carries the port's media.
    let phone = callee(&tb, "callee_answer_cti.xml", "1002");
    let r = app.ok(json!({"type":"make_call","device":"port-2101","to":"1002"}));
    let call = r["call"].as_str().unwrap().to_string();
    app.event("call_ringing");
    app.event("call_connected");
    let m = app.event("media_started");
    assert_eq!((m["local_port"].as_u64(), m["codec"].as_str()), (Some(40000), Some("pcmu")), "{m}");
    let snap = app.ok(json!({"type":"snapshot","device":"port-2101"}));
    assert_eq!((snap["calls"][0]["call"].as_str(), snap["calls"][0]["state"].as_str()), (Some(call.as_str()), Some("connected")), "{snap}");
    app.ok(json!({"type":"drop","call":call}));
    assert_eq!(app.event("call_ended")["reason"], "dropped");
    expect_success(&tb, phone, "phone called by the application, then hung up");
    assert_eq!(status(&tb)["calls"], 0);
}

#[test]
fn make_call_on_a_controlled_phone_connects_it_to_the_target_by_third_party_call_control() {
    let tb = start();
    let mut app = App::login_and_open(&tb, &["phone-1004"]);
    // The phone answers the box's offerless INVITE with its offer and must get the
    // called party's answer in the ACK; the called phone must get the phone's offer.
    let phone = callee(&tb, "phone_click_to_dial.xml", "1004");
    let target = callee(&tb, "callee_answer.xml", "1002");
    let r = app.ok(json!({"type":"make_call","device":"phone-1004","to":"1002"}));
    let call = r["call"].as_str().unwrap().to_string();
    let connected = app.event("call_connected");
    assert_eq!(connected["call"], call.as_str());
    app.ok(json!({"type":"drop","call":call}));
    assert_eq!(app.event("call_ended")["reason"], "dropped");
    expect_success(&tb, phone, "the phone placing the call");
    expect_success(&tb, target, "the called phone");
    assert_eq!(status(&tb)["calls"], 0);
}

#[test]
fn an_application_answers_with_box_media_and_the_caller_hears_the_box_play_a_tone() {
    use ctibox::core::media::{g711, goertzel::Goertzel, rtp};
    let tb = start();
    let mut app = App::login_and_open(&tb, &["rp-2000"]);
    // Where the caller receives RTP.
    let media = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    media.set_read_timeout(Some(GUARD)).unwrap();
    let rtp_port = media.local_addr().unwrap().port().to_string();
    let c = caller(&tb, "caller_box_media.xml", "2000", &["-key", "rtp_port", &rtp_port]);
    let call = app.event("call_offered")["call"].as_str().unwrap().to_string();
    let r = app.ok(json!({"type":"answer","call":call,"media":"box"}));
    let box_port = r["media"]["local_port"].as_u64().unwrap();
    assert_eq!(r["media"]["remote_port"].as_u64().unwrap().to_string(), rtp_port, "{r}");
    app.event("call_connected");
    // Bad prompt names are refused; a tone plays.
    let r = app.request(json!({"type":"play","call":call,"prompt":"../x.wav"}));
    assert_eq!(r["error"]["code"], "bad_field", "{r}");
    app.ok(json!({"type":"play","call":call,"prompt":"busy"}));
    // Silence first (the stream opened at the answer), then the tone, from the box's port.
    let mut buf = [0u8; 2048];
    let mut tone = Vec::new();
    while tone.len() < 10 * 160 {
        let (n, from) = media.recv_from(&mut buf).expect("RTP from the box reaches the caller");
        assert_eq!((from.ip().to_string().as_str(), u64::from(from.port())), ("127.0.0.1", box_port));
        let p = rtp::parse(&buf[..n]).expect("a valid RTP packet");
        assert_eq!((p.header.payload_type, p.payload.len()), (0, 160), "PCMU, 20 ms");
        let pcm: Vec<i16> = p.payload.iter().map(|b| g711::ulaw_decode(*b)).collect();
        if !tone.is_empty() || pcm.iter().any(|s| s.unsigned_abs() > 1000) {
            tone.extend(pcm);
        }
    }
    // US busy: 480 + 620 Hz, each far above a frequency that is not in it.
    let a = |f: f32| Goertzel::new(f).amplitude(&tone);
    assert!(a(480.0) > 10.0 * a(1000.0) && a(620.0) > 10.0 * a(1000.0), "480 {} 620 {} 1000 {}", a(480.0), a(620.0), a(1000.0));
    app.ok(json!({"type":"stop_media","call":call}));
    app.ok(json!({"type":"drop","call":call}));
    assert_eq!(app.event("call_ended")["reason"], "dropped");
    expect_success(&tb, c, "caller answered with box media, then hung up by the box");
}
