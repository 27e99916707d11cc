//! Media events and CTI box media on the engine's virtual clock: phones are SIP text
//! fed to the engine, the application is CTI messages, and every media command, SIP
//! message and event that comes out is checked.

use crate::config::Codec;
use crate::core::digest::{self, Algorithm, Credentials};
use crate::core::media::tone::ToneKind;
use crate::core::rng::EngineRng;
use crate::core::sip::{self, HeaderName, Message, Request, Response, SipHeaders};
use crate::core::{ConnId, CtiTransport, Engine, Input, MediaCmd, MediaEvent, MediaSource, Output, Restored, StreamId, Time, Transport};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

const BOX: &str = "127.0.0.1:5060";
const PW: &str = "Zq7-test-secret-phone";
const CALLER: &str = "127.0.0.1:5061";
const CALLEE: &str = "127.0.0.1:5062";
const APP: ConnId = ConnId(1);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn secret_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| crate::config::hash_secret("Test-secret-77", &[7; 16]).unwrap())
}

/// Two phones, a route point on 2000, an application for it; two RTP ports (20000, 20002).
/// One unit of a pair (`[peer]`): the tests also see what the standby is told.
fn config() -> crate::config::Config {
    let phone = |dn: &str| format!("[[device]]\nname = \"phone-{dn}\"\ntype = \"sip_phone\"\nusername = \"{dn}\"\npassword = \"{PW}\"\nlines = [\"{dn}\"]\ncss = \"c\"\n");
    let toml = format!(
        "[sip]\nudp = \"{BOX}\"\nrealm = \"ctibox\"\n[cti]\nlisten = \"127.0.0.1:0\"\nheartbeat_s = 3600\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [media]\nrtp_port_min = 20000\nrtp_port_max = 20004\n\
         [[partition]]\nname = \"p\"\n[[calling_search_space]]\nname = \"c\"\npartitions = [\"p\"]\n\
         [[line]]\ndn = \"1001\"\npartition = \"p\"\n[[line]]\ndn = \"1002\"\npartition = \"p\"\n[[line]]\ndn = \"2000\"\npartition = \"p\"\n\
         {}{}\
         [[device]]\nname = \"rp\"\ntype = \"cti_route_point\"\nlines = [\"2000\"]\ncss = \"c\"\nanswer_timeout_s = 300\n\
         [[app_user]]\nname = \"app\"\nsecret = \"{}\"\ndevices = [\"rp\"]\n\
         [peer]\naddress = \"127.0.0.1:7400\"\nlisten = \"127.0.0.1:7401\"\npriority = 10\nservice_address = \"192.0.2.10/24\"\ninterface = \"lo\"\nkey = \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\nwitness = \"192.0.2.1\"\n",
        phone("1001"),
        phone("1002"),
        secret_hash()
    );
    crate::config::parse_str(&toml, "t.toml").unwrap()
}

fn sdp(port: u16, dir: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na={dir}\r\n"
    )
}

/// The engine, the time, and the caller's dialog as far as the test knows it.
struct T {
    e: Engine,
    now: Time,
    /// The To of the box's answer to the caller (with the box's tag).
    a_to: String,
    a_cseq: u32,
    call_id: String,
    branch: u64,
}

impl T {
    fn new() -> T {
        let e = Engine::new(Arc::new(config()), EngineRng::seed_from_u64(5), Time::ZERO, 0, Restored::default());
        T { e, now: Time::ZERO, a_to: String::new(), a_cseq: 0, call_id: String::new(), branch: 0 }
    }

    fn input(&mut self, input: Input) -> Vec<Output> {
        self.e.handle_input(self.now, input);
        std::iter::from_fn(|| self.e.poll_output()).collect()
    }

    fn at(&mut self, ms: u64) -> &mut T {
        self.now = Time::from_millis(ms);
        self
    }

    fn sip(&mut self, from: &str, text: &str) -> Vec<Output> {
        self.input(Input::Sip { transport: Transport::Udp, conn: None, from: addr(from), local: addr(BOX), bytes: text.as_bytes().to_vec() })
    }

    fn cti(&mut self, text: &str) -> Vec<Output> {
        self.input(Input::CtiMessage { conn: APP, text: text.into() })
    }

    fn media(&mut self, ev: MediaEvent) -> Vec<Output> {
        self.input(Input::Media(ev))
    }

    fn tick(&mut self, ms: u64) -> Vec<Output> {
        self.at(ms);
        self.input(Input::Timeout)
    }

    fn next_branch(&mut self) -> String {
        self.branch += 1;
        format!("z9hG4bKt{}", self.branch)
    }

    /// A login on `conn`, playing the shell's secret verifier for the Argon2 check.
    fn login(&mut self, conn: ConnId) -> Vec<Output> {
        let text = r#"{"type":"login","id":1,"app":"app","secret":"Test-secret-77"}"#;
        let out = self.input(Input::CtiMessage { conn, text: text.into() });
        let Some(Output::VerifySecret(job)) = out.first() else { panic!("expected a secret check: {out:?}") };
        let verdict = if crate::config::verify_phc(&job.phc, &job.presented) { crate::core::Verdict::Match } else { crate::core::Verdict::Mismatch };
        let ticket = job.ticket;
        self.input(Input::SecretVerified { ticket, verdict })
    }

    /// The application logs in and opens the route point.
    fn app(&mut self) {
        self.input(Input::CtiOpened { conn: APP, peer: addr("127.0.0.1:9"), transport: CtiTransport::Tcp });
        let r = cti_out(&self.login(APP));
        assert_eq!(r[0]["ok"], true, "{r:?}");
        let r = cti_out(&self.cti(r#"{"type":"open","id":2,"device":"rp"}"#));
        assert_eq!(r[0]["ok"], true, "{r:?}");
    }

    /// Phone 1002 registers from CALLEE.
    fn register_callee(&mut self) {
        let reg = |b: &str, cseq: u32, auth: &str| {
            format!(
                "REGISTER sip:{BOX} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLEE};branch={b};rport\r\nFrom: <sip:1002@127.0.0.1>;tag=r1\r\nTo: <sip:1002@127.0.0.1>\r\n\
                 Call-ID: reg-1002\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:1002@{CALLEE}>\r\nExpires: 3600\r\nMax-Forwards: 70\r\n{auth}Content-Length: 0\r\n\r\n"
            )
        };
        let b = self.next_branch();
        let out = self.sip(CALLEE, &reg(&b, 1, ""));
        let ch = response_to(&out, CALLEE, 401);
        let auth = authorization(&ch, HeaderName::WwwAuthenticate, "Authorization", "1002", "REGISTER", &format!("sip:{BOX}"));
        let b = self.next_branch();
        let out = self.sip(CALLEE, &reg(&b, 2, &auth));
        response_to(&out, CALLEE, 200);
    }

    /// Phone 1001 calls `to` from CALLER (media at `rtp`), through the digest challenge.
    fn call(&mut self, to: &str, call_id: &str, rtp: u16) -> Vec<Output> {
        self.call_id = call_id.to_string();
        let uri = format!("sip:{to}@{BOX}");
        let inv = |b: &str, cseq: u32, auth: &str| {
            let body = sdp(rtp, "sendrecv");
            format!(
                "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch={b};rport\r\nFrom: <sip:1001@127.0.0.1>;tag=a1\r\nTo: <{uri}>\r\nCall-ID: {call_id}\r\n\
                 CSeq: {cseq} INVITE\r\nContact: <sip:1001@{CALLER}>\r\nMax-Forwards: 70\r\n{auth}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let b = self.next_branch();
        let out = self.sip(CALLER, &inv(&b, 1, ""));
        let ch = response_to(&out, CALLER, 407);
        let to_407 = ch.to().unwrap().to_string();
        let ack = format!(
            "ACK {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch={b};rport\r\nFrom: <sip:1001@127.0.0.1>;tag=a1\r\nTo: {to_407}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        self.sip(CALLER, &ack);
        let auth = authorization(&ch, HeaderName::ProxyAuthenticate, "Proxy-Authorization", "1001", "INVITE", &uri);
        let b = self.next_branch();
        self.a_cseq = 2;
        self.sip(CALLER, &inv(&b, 2, &auth))
    }

    /// The caller's in-dialog request (`method`, a new CSeq unless ACK).
    fn a_request(&mut self, method: &str, body: Option<String>) -> Vec<Output> {
        if method != "ACK" {
            self.a_cseq += 1;
        }
        let b = self.next_branch();
        let (ct, body) = match body {
            Some(s) => ("Content-Type: application/sdp\r\n".to_string(), s),
            None => (String::new(), String::new()),
        };
        let text = format!(
            "{method} sip:2000@{BOX} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch={b};rport\r\nFrom: <sip:1001@127.0.0.1>;tag=a1\r\nTo: {}\r\nCall-ID: {}\r\n\
             CSeq: {} {method}\r\nContact: <sip:1001@{CALLER}>\r\nMax-Forwards: 70\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            self.a_to,
            self.call_id,
            self.a_cseq,
            body.len()
        );
        self.sip(CALLER, &text)
    }

    /// The caller got the box's 200 to its INVITE: remember the dialog, ACK it.
    fn ack_answer(&mut self, out: &[Output]) -> Response {
        let ok = response_to(out, CALLER, 200);
        self.a_to = ok.to().unwrap().to_string();
        self.a_request("ACK", None);
        ok
    }

    /// A call from 1001 to the route point, offered to the application; returns "c<n>".
    fn offered(&mut self, call_id: &str) -> String {
        let out = self.call("2000", call_id, 40000);
        let ev = cti_out(&out);
        let offered = ev.iter().find(|v| v["event"] == "call_offered").unwrap_or_else(|| panic!("{ev:?}"));
        offered["call"].as_str().unwrap().to_string()
    }

    /// A call answered with box media, ACKed by the caller.
    fn answered_box(&mut self, call_id: &str) -> (String, Vec<Output>) {
        let call = self.offered(call_id);
        let out = self.cti(&format!(r#"{{"type":"answer","id":10,"call":"{call}","media":"box"}}"#));
        self.ack_answer(&out);
        (call, out)
    }

    /// A phone-to-phone call 1001 -> 1002, answered, then held by the caller: music
    /// on hold plays to 1002. Returns the callee's dialog (its To, for requests the
    /// box sends it) and the outputs of the hold.
    fn moh_call(&mut self, call_id: &str) -> Vec<Output> {
        let out = self.call("1002", call_id, 40000);
        let inv = request_to(&out, CALLEE, "INVITE");
        let mut ok = Response::to_request(&inv, 200, Some(&format!("b-{call_id}")));
        ok.headers.add(HeaderName::Contact, format!("<sip:1002@{CALLEE}>"));
        ok.set_body("application/sdp", sdp(40002, "sendrecv").into_bytes());
        let out = self.sip(CALLEE, &String::from_utf8(ok.to_bytes()).unwrap());
        self.ack_answer(&out);
        // The caller holds: the box re-INVITEs 1002 toward its own port.
        let out = self.a_request("INVITE", Some(sdp(40000, "sendonly")));
        let re = request_to(&out, CALLEE, "INVITE");
        let offer = crate::core::sdp::parse_audio(&re.body).unwrap();
        assert_eq!((offer.port, offer.direction), (20000, crate::core::sdp::Direction::SendOnly));
        let mut ok = Response::to_request(&re, 200, None);
        ok.headers.add(HeaderName::Contact, format!("<sip:1002@{CALLEE}>"));
        ok.set_body("application/sdp", sdp(40002, "recvonly").into_bytes());
        let out = self.sip(CALLEE, &String::from_utf8(ok.to_bytes()).unwrap());
        response_to(&out, CALLER, 200);
        self.a_request("ACK", None);
        out
    }

    fn ports_in_use(&self) -> Vec<u16> {
        self.e.sip().b2bua.media_ports.iter().copied().collect()
    }
}

/// The Authorization (or Proxy-Authorization) header line answering a challenge.
fn authorization(ch: &Response, header: HeaderName, name: &str, user: &str, method: &str, uri: &str) -> String {
    let v = ch.headers.get_all(&header).find(|v| v.contains("MD5")).expect("an MD5 challenge");
    let p = sip::AuthParams::parse(v).unwrap();
    let mut c = Credentials {
        username: user.into(),
        realm: p.get("realm").unwrap(),
        nonce: p.get("nonce").unwrap(),
        uri: uri.into(),
        algorithm: Some("MD5".into()),
        cnonce: Some("c0ffee".into()),
        nc: Some("00000001".into()),
        qop: Some("auth".into()),
        ..Default::default()
    };
    c.response = digest::expected_response(Algorithm::Md5, &digest::ha1(Algorithm::Md5, user, &c.realm, PW), method, &c);
    format!(
        "{name}: Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0ffee\"\r\n",
        c.realm, c.nonce, c.response
    )
}

fn sip_out(out: &[Output]) -> Vec<(SocketAddr, Message)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Transmit { to, bytes, .. } => Some((*to, sip::parse_message(bytes).expect("the box sends valid SIP"))),
            _ => None,
        })
        .collect()
}

fn response_to(out: &[Output], to: &str, status: u16) -> Response {
    sip_out(out)
        .into_iter()
        .find_map(|(a, m)| match m {
            Message::Response(r) if a == addr(to) && r.status == status => Some(r),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {status} to {to} in {out:?}"))
}

fn requests_to(out: &[Output], to: &str, method: &str) -> Vec<Request> {
    sip_out(out)
        .into_iter()
        .filter_map(|(a, m)| match m {
            Message::Request(r) if a == addr(to) && r.method.as_str() == method => Some(r),
            _ => None,
        })
        .collect()
}

fn request_to(out: &[Output], to: &str, method: &str) -> Request {
    let mut r = requests_to(out, to, method);
    assert_eq!(r.len(), 1, "one {method} to {to} in {out:?}");
    r.remove(0)
}

fn media_out(out: &[Output]) -> Vec<MediaCmd> {
    out.iter().filter_map(|o| if let Output::Media(m) = o { Some(m.clone()) } else { None }).collect()
}

fn cti_out(out: &[Output]) -> Vec<Value> {
    out.iter().filter_map(|o| if let Output::CtiSend { text, .. } = o { Some(serde_json::from_str(text).unwrap()) } else { None }).collect()
}

fn events(out: &[Output]) -> Vec<Value> {
    cti_out(out).into_iter().filter(|v| v["type"] == "event").collect()
}

fn event_names(out: &[Output]) -> Vec<String> {
    events(out).iter().map(|v| v["event"].as_str().unwrap().to_string()).collect()
}

fn error_code(out: &[Output]) -> String {
    let r = cti_out(out);
    assert_eq!(r[0]["ok"], false, "{r:?}");
    r[0]["error"]["code"].as_str().unwrap().to_string()
}

fn play(stream: u64, source: MediaSource) -> MediaCmd {
    MediaCmd::Play { stream: StreamId(stream), local_port: 20000, remote: addr("127.0.0.1:40000"), codec: Codec::Pcmu, source }
}

fn status(t: &mut T) -> Value {
    let out = t.input(Input::Http { conn: ConnId(99), request: crate::core::HttpRequest { method: "GET".into(), path: "/status".into(), body: vec![] } });
    match &out[0] {
        Output::HttpResponse { body, .. } => serde_json::from_slice(body).unwrap(),
        o => panic!("{o:?}"),
    }
}

#[test]
fn rtp_timeout_on_music_on_hold_ends_the_call_both_ways_and_frees_the_port() {
    let mut t = T::new();
    t.register_callee();
    let out = t.moh_call("moh-1");
    assert_eq!(
        media_out(&out),
        [MediaCmd::Play { stream: StreamId(1), local_port: 20000, remote: addr("127.0.0.1:40002"), codec: Codec::Pcmu, source: MediaSource::MusicOnHold }]
    );
    assert_eq!(status(&mut t)["call_media"]["calls_ended_rtp_timeout"], 0);
    let out = t.at(40_000).media(MediaEvent::RtpTimeout { stream: StreamId(1) });
    assert_eq!(media_out(&out), [MediaCmd::Stop { stream: StreamId(1) }]);
    assert_eq!(requests_to(&out, CALLER, "BYE").len(), 1, "{out:?}");
    assert_eq!(requests_to(&out, CALLEE, "BYE").len(), 1, "{out:?}");
    assert_eq!(sip_out(&out).len(), 2, "nothing else: {out:?}");
    assert_eq!(t.e.sip().b2bua.calls(), 0);
    assert_eq!(t.ports_in_use(), Vec::<u16>::new());
    let s = status(&mut t);
    assert_eq!(s["call_media"]["calls_ended_rtp_timeout"], 1);
    assert_eq!(s["calls_completed"], 1);
    // The same event again (a late duplicate) finds no call and does nothing.
    assert!(t.media(MediaEvent::RtpTimeout { stream: StreamId(1) }).is_empty());
    // A new call's music gets the same port: it was freed.
    t.at(41_000);
    let out = t.moh_call("moh-2");
    assert_eq!(
        media_out(&out),
        [MediaCmd::Play { stream: StreamId(2), local_port: 20000, remote: addr("127.0.0.1:40002"), codec: Codec::Pcmu, source: MediaSource::MusicOnHold }]
    );
}

#[test]
fn failed_music_on_hold_frees_the_port_and_the_hold_stands() {
    let mut t = T::new();
    t.register_callee();
    t.moh_call("moh-f");
    assert_eq!(t.ports_in_use(), [20000]);
    let out = t.at(1_000).media(MediaEvent::Failed { stream: StreamId(1), reason: "cannot bind".into() });
    // No BYE, no Stop (the media path closed it); the standby learns the music is gone.
    assert!(
        matches!(out.as_slice(), [Output::Replicate(crate::core::snapshot::Delta::CallChanged(c))] if c.moh.is_none()),
        "{out:?}"
    );
    assert_eq!(t.ports_in_use(), Vec::<u16>::new());
    assert_eq!(t.e.sip().b2bua.calls(), 1, "the hold stands");
    assert_eq!(status(&mut t)["call_media"]["media_failed"], 1);
    // A later RTP timeout on the failed stream is not this call's any more.
    assert!(t.media(MediaEvent::RtpTimeout { stream: StreamId(1) }).is_empty());
    assert_eq!(t.e.sip().b2bua.calls(), 1);
    // Hanging up sends no Stop for the stream that is gone.
    let out = t.a_request("BYE", None);
    assert_eq!(media_out(&out), []);
}

#[test]
fn answer_with_box_media_points_the_caller_at_the_box_and_play_reaches_the_media_path() {
    let mut t = T::new();
    t.app();
    let (call, out) = t.answered_box("cti-1");
    let r = cti_out(&out);
    assert_eq!(r[0]["ok"], true, "{r:?}");
    assert_eq!((r[0]["media"]["local_port"].as_u64(), r[0]["media"]["remote_port"].as_u64()), (Some(20000), Some(40000)));
    let ok = response_to(&out, CALLER, 200);
    let a = crate::core::sdp::parse_audio(&ok.body).unwrap();
    assert_eq!((a.ip.to_string().as_str(), a.port, a.dtmf), ("127.0.0.1", 20000, Some(101)));
    // The stream opens at once: silence, and digit detection with the caller's payload type.
    assert_eq!(media_out(&out), [play(1, MediaSource::Silence), MediaCmd::CollectDigits { stream: StreamId(1), dtmf_pt: Some(101) }]);
    assert_eq!(event_names(&out), ["call_answered", "media_started"]);
    // play: a tone, then a prompt file on the same stream.
    let out = t.at(1_000).cti(&format!(r#"{{"type":"play","id":11,"call":"{call}","prompt":"busy"}}"#));
    assert_eq!(cti_out(&out)[0]["ok"], true);
    // Each play changes the open stream in place (no Stop, the same id, its digit
    // collection goes on).
    assert_eq!(media_out(&out), [play(1, MediaSource::Tone(ToneKind::Busy))]);
    let out = t.cti(&format!(r#"{{"type":"play","id":12,"call":"{call}","prompt":"welcome.wav"}}"#));
    assert_eq!(media_out(&out), [play(1, MediaSource::Prompt("/usr/share/ctibox/prompts/welcome.wav".into()))]);
    let out = t.cti(&format!(r#"{{"type":"play","id":13,"call":"{call}","prompt":"congestion"}}"#));
    assert_eq!(media_out(&out), [play(1, MediaSource::Tone(ToneKind::Reorder))]);
    // The end of the prompt is an event for the application.
    let out = t.at(5_000).media(MediaEvent::PlayoutDone { stream: StreamId(1) });
    let ev = events(&out);
    assert_eq!((ev.len(), &ev[0]["event"], &ev[0]["call"]), (1, &Value::from("play_done"), &Value::from(call.as_str())));
    assert!(media_out(&out).is_empty());
    // send_digits goes out on the stream with the caller's telephone-event type.
    let out = t.cti(&format!(r#"{{"type":"send_digits","id":14,"call":"{call}","digits":"12#"}}"#));
    assert_eq!(media_out(&out), [MediaCmd::SendDigits { stream: StreamId(1), digits: "12#".into(), dtmf_pt: 101 }]);
}

#[test]
fn collect_digits_ends_on_max() {
    let mut t = T::new();
    t.app();
    let (call, _) = t.answered_box("cd-max");
    let out = t.at(10_000).cti(&format!(r#"{{"type":"collect_digits","id":20,"call":"{call}","max":3,"inter_digit_timeout_ms":2000}}"#));
    assert_eq!(cti_out(&out)[0]["ok"], true);
    assert!(media_out(&out).is_empty(), "the open stream already reports digits");
    for (ms, d) in [(11_000, '1'), (12_500, '2')] {
        let out = t.at(ms).media(MediaEvent::Digit { stream: StreamId(1), digit: d });
        assert_eq!(event_names(&out), ["digit"]);
        assert_eq!(events(&out)[0]["digit"], d.to_string());
    }
    let out = t.at(14_000).media(MediaEvent::Digit { stream: StreamId(1), digit: '3' });
    let ev = events(&out);
    assert_eq!(event_names(&out), ["digit", "digits_collected"]);
    assert_eq!((&ev[1]["digits"], &ev[1]["reason"]), (&Value::from("123"), &Value::from("max")));
    // Its timer is gone: nothing more when the inter-digit timeout would have run out.
    assert!(events(&t.tick(16_000)).is_empty());
    // Digits still come as digit events, without a collection.
    assert_eq!(event_names(&t.at(17_000).media(MediaEvent::Digit { stream: StreamId(1), digit: '9' })), ["digit"]);
}

#[test]
fn collect_digits_ends_on_the_terminator_which_is_not_a_digit_collected() {
    let mut t = T::new();
    t.app();
    let (call, _) = t.answered_box("cd-term");
    t.at(10_000).cti(&format!(r##"{{"type":"collect_digits","id":20,"call":"{call}","max":10,"terminator":"#","inter_digit_timeout_ms":2000}}"##));
    t.at(10_500).media(MediaEvent::Digit { stream: StreamId(1), digit: '4' });
    t.at(11_000).media(MediaEvent::Digit { stream: StreamId(1), digit: '2' });
    let out = t.at(11_500).media(MediaEvent::Digit { stream: StreamId(1), digit: '#' });
    let ev = events(&out);
    assert_eq!(event_names(&out), ["digit", "digits_collected"]);
    assert_eq!((&ev[1]["digits"], &ev[1]["reason"]), (&Value::from("42"), &Value::from("terminator")));
}

#[test]
fn collect_digits_times_out_after_the_first_digit_timeout_then_the_inter_digit_one() {
    let mut t = T::new();
    t.app();
    let (call, _) = t.answered_box("cd-time");
    // No digit at all: the first-digit timeout (5 s).
    t.at(10_000).cti(&format!(r#"{{"type":"collect_digits","id":20,"call":"{call}","max":5,"inter_digit_timeout_ms":2000,"first_digit_timeout_ms":5000}}"#));
    assert!(events(&t.tick(14_999)).is_empty());
    let out = t.tick(15_000);
    let ev = events(&out);
    assert_eq!(event_names(&out), ["digits_collected"]);
    assert_eq!((&ev[0]["digits"], &ev[0]["reason"]), (&Value::from(""), &Value::from("timeout")));
    // Again; a digit at 21 s restarts the clock with the inter-digit timeout (2 s).
    t.at(20_000).cti(&format!(r#"{{"type":"collect_digits","id":21,"call":"{call}","max":5,"inter_digit_timeout_ms":2000,"first_digit_timeout_ms":5000}}"#));
    t.at(21_000).media(MediaEvent::Digit { stream: StreamId(1), digit: '7' });
    assert!(event_names(&t.tick(22_999)).is_empty());
    let out = t.tick(23_000);
    let ev = events(&out);
    assert_eq!(event_names(&out), ["digits_collected"]);
    assert_eq!((&ev[0]["digits"], &ev[0]["reason"]), (&Value::from("7"), &Value::from("timeout")));
    // Without first_digit_timeout_ms the inter-digit timeout applies from the start.
    t.at(30_000).cti(&format!(r#"{{"type":"collect_digits","id":22,"call":"{call}","max":5,"inter_digit_timeout_ms":2000}}"#));
    assert!(event_names(&t.tick(31_999)).is_empty());
    assert_eq!(event_names(&t.tick(32_000)), ["digits_collected"]);
}

#[test]
fn stop_media_stops_the_stream_and_play_reopens_it_on_the_same_port() {
    let mut t = T::new();
    t.app();
    let (call, _) = t.answered_box("stop-1");
    t.at(1_000).cti(&format!(r#"{{"type":"play","id":11,"call":"{call}","prompt":"dial"}}"#));
    t.cti(&format!(r#"{{"type":"collect_digits","id":12,"call":"{call}","max":4,"inter_digit_timeout_ms":3000}}"#));
    let out = t.cti(&format!(r#"{{"type":"stop_media","id":13,"call":"{call}"}}"#));
    assert_eq!(cti_out(&out)[0]["ok"], true);
    assert_eq!(media_out(&out), [MediaCmd::Stop { stream: StreamId(1) }]);
    assert!(events(&out).is_empty());
    assert_eq!(t.ports_in_use(), [20000], "the port stays the call's");
    // The collection ended with it: no timeout event later; the old stream's events are ignored.
    assert!(events(&t.tick(10_000)).is_empty());
    assert!(t.media(MediaEvent::Digit { stream: StreamId(1), digit: '5' }).is_empty());
    // play opens a new stream on the same port.
    let out = t.cti(&format!(r#"{{"type":"play","id":14,"call":"{call}","prompt":"moh"}}"#));
    assert_eq!(media_out(&out), [play(2, MediaSource::MusicOnHold), MediaCmd::CollectDigits { stream: StreamId(2), dtmf_pt: Some(101) }]);
}

#[test]
fn the_call_ending_stops_the_box_stream_and_frees_its_port() {
    let mut t = T::new();
    t.app();
    let (_call, _) = t.answered_box("end-1");
    assert_eq!(t.ports_in_use(), [20000]);
    let out = t.at(2_000).a_request("BYE", None);
    response_to(&out, CALLER, 200);
    assert_eq!(media_out(&out), [MediaCmd::Stop { stream: StreamId(1) }]);
    assert_eq!(event_names(&out), ["media_stopped", "call_ended"]);
    assert_eq!(t.ports_in_use(), Vec::<u16>::new());
    // The next call gets the same port.
    let (_, out) = t.at(3_000).answered_box("end-2");
    assert_eq!(media_out(&out)[0], play(2, MediaSource::Silence));
}

#[test]
fn rtp_timeout_on_box_media_hangs_up_and_tells_the_application() {
    let mut t = T::new();
    t.app();
    let (call, _) = t.answered_box("to-1");
    let out = t.at(40_000).media(MediaEvent::RtpTimeout { stream: StreamId(1) });
    assert_eq!(requests_to(&out, CALLER, "BYE").len(), 1);
    assert_eq!(media_out(&out), [MediaCmd::Stop { stream: StreamId(1) }]);
    let ev = events(&out);
    assert_eq!(event_names(&out), ["media_stopped", "call_ended"]);
    assert_eq!((&ev[1]["call"], &ev[1]["reason"]), (&Value::from(call.as_str()), &Value::from("failed")));
    assert_eq!(t.ports_in_use(), Vec::<u16>::new());
    assert_eq!(status(&mut t)["call_media"]["calls_ended_rtp_timeout"], 1);
}

#[test]
fn a_failed_box_stream_frees_the_port_and_tells_the_application() {
    let mut t = T::new();
    t.app();
    let (call, _) = t.answered_box("fail-1");
    let out = t.at(1_000).media(MediaEvent::Failed { stream: StreamId(1), reason: "prompt unreadable".into() });
    let ev = events(&out);
    assert_eq!(event_names(&out), ["media_failed"]);
    assert_eq!((&ev[0]["call"], &ev[0]["reason"]), (&Value::from(call.as_str()), &Value::from("prompt unreadable")));
    assert!(media_out(&out).is_empty() && sip_out(&out).is_empty(), "{out:?}");
    assert_eq!(t.ports_in_use(), Vec::<u16>::new());
    assert_eq!(t.e.sip().b2bua.calls(), 1, "the call stays up");
}

#[test]
fn play_on_a_call_with_application_media_moves_the_callers_media_to_the_box() {
    let mut t = T::new();
    t.app();
    let call = t.offered("app-1");
    let out = t.cti(&format!(r#"{{"type":"answer","id":10,"call":"{call}","media":{{"ip":"192.0.2.10","port":4000}}}}"#));
    assert!(media_out(&out).is_empty());
    t.ack_answer(&out);
    // stop_media has nothing to stop yet.
    assert_eq!(error_code(&t.cti(&format!(r#"{{"type":"stop_media","id":11,"call":"{call}"}}"#))), "invalid_state");
    let out = t.at(1_000).cti(&format!(r#"{{"type":"play","id":12,"call":"{call}","prompt":"ringback"}}"#));
    assert_eq!(cti_out(&out)[0]["ok"], true);
    assert!(media_out(&out).is_empty(), "nothing plays until the caller agrees");
    let re = request_to(&out, CALLER, "INVITE");
    let offer = crate::core::sdp::parse_audio(&re.body).unwrap();
    assert_eq!((offer.ip.to_string().as_str(), offer.port, offer.direction), ("127.0.0.1", 20000, crate::core::sdp::Direction::SendRecv));
    // A second request while the re-INVITE is out waits for nothing: it is refused.
    assert_eq!(error_code(&t.cti(&format!(r#"{{"type":"hold","id":13,"call":"{call}"}}"#))), "invalid_state");
    let mut ok = Response::to_request(&re, 200, None);
    ok.headers.add(HeaderName::Contact, format!("<sip:1001@{CALLER}>"));
    ok.set_body("application/sdp", sdp(40000, "sendrecv").into_bytes());
    let out = t.at(1_100).sip(CALLER, &String::from_utf8(ok.to_bytes()).unwrap());
    assert_eq!(requests_to(&out, CALLER, "ACK").len(), 1, "{out:?}");
    assert_eq!(media_out(&out), [play(1, MediaSource::Tone(ToneKind::Ringback)), MediaCmd::CollectDigits { stream: StreamId(1), dtmf_pt: Some(101) }]);
    let ev = events(&out);
    assert_eq!(event_names(&out), ["media_stopped", "media_started"]);
    assert_eq!(ev[1]["local_port"], 20000);
}

#[test]
fn a_refused_move_to_box_media_frees_the_port_and_reports_media_failed() {
    let mut t = T::new();
    t.app();
    let call = t.offered("app-2");
    let out = t.cti(&format!(r#"{{"type":"answer","id":10,"call":"{call}","media":{{"ip":"192.0.2.10","port":4000}}}}"#));
    t.ack_answer(&out);
    let out = t.at(1_000).cti(&format!(r#"{{"type":"collect_digits","id":12,"call":"{call}","max":2,"inter_digit_timeout_ms":2000}}"#));
    let re = request_to(&out, CALLER, "INVITE");
    assert_eq!(t.ports_in_use(), [20000]);
    let out = t.sip(CALLER, &String::from_utf8(Response::to_request(&re, 488, None).to_bytes()).unwrap());
    assert_eq!(event_names(&out), ["media_failed"]);
    assert!(media_out(&out).is_empty());
    assert_eq!(t.ports_in_use(), Vec::<u16>::new());
    assert!(events(&t.tick(5_000)).is_empty(), "no digit timeout for a collection that never started");
}

#[test]
fn bad_media_requests_are_refused_with_the_problem_named() {
    let mut t = T::new();
    t.app();
    let call = t.offered("err-1");
    let req = |ty: &str, extra: &str| format!(r#"{{"type":"{ty}","id":30,"call":"{call}"{extra}}}"#);
    // Before the answer.
    let out = t.cti(&req("play", r#","prompt":"busy""#));
    assert_eq!(error_code(&out), "invalid_state");
    assert!(cti_out(&out)[0]["error"]["message"].as_str().unwrap().contains("not answered"));
    t.cti(&format!(r#"{{"type":"answer","id":10,"call":"{call}","media":"box"}}"#));
    // A second answer.
    assert_eq!(error_code(&t.cti(&format!(r#"{{"type":"answer","id":10,"call":"{call}","media":"box"}}"#))), "invalid_state");
    assert_eq!(t.ports_in_use(), [20000], "the refused answer booked no port");
    // Prompt names that would leave the prompts directory, or name nothing known.
    for p in ["../secret.wav", "a/b.wav", ".hidden.wav", "..", "a\\\\b.wav", "song.mp3", "beep"] {
        let out = t.cti(&req("play", &format!(r#","prompt":"{p}""#)));
        assert_eq!(error_code(&out), "bad_field", "{p}");
        if p == "../secret.wav" {
            let m = &cti_out(&out)[0]["error"]["message"];
            assert_eq!(m, r#"prompt "../secret.wav" must be a file name inside the prompts directory (no '/', '\', or leading '.')"#);
        }
        assert!(media_out(&out).is_empty());
    }
    // Unknown calls, and a call of a device this application does not have open.
    assert_eq!(error_code(&t.cti(r#"{"type":"play","id":31,"call":"c99","prompt":"busy"}"#)), "unknown_call");
    assert_eq!(error_code(&t.cti(r#"{"type":"stop_media","id":32,"call":"nonsense"}"#)), "unknown_call");
    let other = ConnId(2);
    t.input(Input::CtiOpened { conn: other, peer: addr("127.0.0.1:9"), transport: CtiTransport::Tcp });
    let r = cti_out(&t.login(other));
    assert_eq!(r[0]["ok"], true);
    // (The same application logging in again replaces the first connection: the call is
    // no longer at a device the new connection has open.)
    let out = t.input(Input::CtiMessage { conn: other, text: req("play", r#","prompt":"busy""#) });
    assert_eq!(cti_out(&out)[0]["error"]["code"], "unknown_call");
    // Requests that parse but are out of range never reach the call.
    let out = t.input(Input::CtiMessage { conn: other, text: req("collect_digits", r#","max":99,"inter_digit_timeout_ms":2000"#) });
    assert_eq!(cti_out(&out)[0]["error"]["code"], "bad_field");
}

#[test]
fn a_second_collect_digits_is_refused_while_one_runs() {
    let mut t = T::new();
    t.app();
    let (call, _) = t.answered_box("twice");
    let c = format!(r#"{{"type":"collect_digits","id":20,"call":"{call}","max":3,"inter_digit_timeout_ms":2000}}"#);
    assert_eq!(cti_out(&t.cti(&c))[0]["ok"], true);
    assert_eq!(error_code(&t.cti(&c)), "invalid_state");
}

#[test]
fn prompt_names_stay_inside_the_prompts_directory() {
    let cfg = config();
    assert_eq!(super::prompt_source(&cfg, "hello.WAV").unwrap(), MediaSource::Prompt(cfg.media.prompts_dir.join("hello.WAV")));
    assert_eq!(super::prompt_source(&cfg, "moh").unwrap(), MediaSource::MusicOnHold);
    assert_eq!(super::prompt_source(&cfg, "call_waiting").unwrap(), MediaSource::Tone(ToneKind::CallWaiting));
    for bad in ["../x.wav", "/etc/x.wav", "x/../../y.wav", "..wav", ".wav", "a\\b.wav", "a\u{0}.wav", "x.wav/", "é"] {
        assert_eq!(super::prompt_source(&cfg, bad).unwrap_err().0, crate::core::cti::ErrorCode::BadField, "{bad:?}");
    }
}
