//! The engine's API driven in process, with `Command`s and `Event`s only (no JSON, no
//! connection), the way built-in applications will drive it: a SIP phone's call to a
//! route point is offered, answered and dropped on the virtual clock.

use crate::core::api::{ApiError, ClientId, Command, CommandResult, ErrorCode, Event, EventKind, Grant, Media, EndReason};
use crate::core::digest::{self, Algorithm, Credentials};
use crate::core::rng::EngineRng;
use crate::core::sip::{self, HeaderName, Message, Response, SipHeaders};
use crate::core::{Engine, Input, Output, Restored, Time, Transport};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

const BOX: &str = "127.0.0.1:5060";
const CALLER: &str = "127.0.0.1:5061";
const PW: &str = "Zq7-test-secret-phone";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Phone 1001, a route point on 2000 and a port on 2001; no `[[app_user]]` at all.
fn engine() -> Engine {
    let toml = format!(
        "[sip]\nudp = \"{BOX}\"\nrealm = \"ctibox\"\n[cti]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [[partition]]\nname = \"p\"\n[[calling_search_space]]\nname = \"c\"\npartitions = [\"p\"]\n\
         [[line]]\ndn = \"1001\"\npartition = \"p\"\n[[line]]\ndn = \"2000\"\npartition = \"p\"\n[[line]]\ndn = \"2001\"\npartition = \"p\"\n\
         [[device]]\nname = \"phone-1001\"\ntype = \"sip_phone\"\nusername = \"1001\"\npassword = \"{PW}\"\nlines = [\"1001\"]\ncss = \"c\"\n\
         [[device]]\nname = \"rp\"\ntype = \"cti_route_point\"\nlines = [\"2000\"]\ncss = \"c\"\nanswer_timeout_s = 300\n\
         [[device]]\nname = \"port\"\ntype = \"cti_port\"\nlines = [\"2001\"]\ncss = \"c\"\n"
    );
    let cfg = crate::config::parse_str(&toml, "t.toml").unwrap();
    Engine::new(Arc::new(cfg), EngineRng::seed_from_u64(9), Time::ZERO, 0, Restored::default())
}

fn drain(e: &mut Engine) -> Vec<Output> {
    let out: Vec<Output> = std::iter::from_fn(|| e.poll_output()).collect();
    assert!(!out.iter().any(|o| matches!(o, Output::CtiSend { .. })), "an in-process client gets no JSON: {out:?}");
    out
}

fn sip_in(e: &mut Engine, now: Time, text: &str) -> Vec<Output> {
    e.handle_input(now, Input::Sip { transport: Transport::Udp, conn: None, from: addr(CALLER), local: addr(BOX), bytes: text.as_bytes().to_vec() });
    drain(e)
}

fn responses(out: &[Output]) -> Vec<Response> {
    out.iter()
        .filter_map(|o| match o {
            Output::Transmit { to, bytes, .. } if *to == addr(CALLER) => match sip::parse_message(bytes).expect("the box sends valid SIP") {
                Message::Response(r) => Some(r),
                Message::Request(_) => None,
            },
            _ => None,
        })
        .collect()
}

fn requests(out: &[Output]) -> Vec<sip::Request> {
    out.iter()
        .filter_map(|o| match o {
            Output::Transmit { to, bytes, .. } if *to == addr(CALLER) => match sip::parse_message(bytes).ok()? {
                Message::Request(r) => Some(r),
                Message::Response(_) => None,
            },
            _ => None,
        })
        .collect()
}

fn events(e: &mut Engine, c: ClientId) -> Vec<(u64, Event)> {
    std::iter::from_fn(|| e.api_poll_event(c)).collect()
}

/// Phone 1001 calls 2000 (its RTP at 127.0.0.1:40000), through the digest challenge.
fn call_route_point(e: &mut Engine, now: Time) -> Vec<Output> {
    let uri = format!("sip:2000@{BOX}");
    let body = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";
    let inv = |b: &str, cseq: u32, auth: &str| {
        format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch={b};rport\r\nFrom: <sip:1001@127.0.0.1>;tag=a1\r\nTo: <{uri}>\r\nCall-ID: api-1\r\n\
             CSeq: {cseq} INVITE\r\nContact: <sip:1001@{CALLER}>\r\nMax-Forwards: 70\r\n{auth}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let out = sip_in(e, now, &inv("z9hG4bKapi1", 1, ""));
    let ch = responses(&out).into_iter().find(|r| r.status == 407).unwrap_or_else(|| panic!("a 407 challenge: {out:?}"));
    let ack = format!(
        "ACK {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch=z9hG4bKapi1;rport\r\nFrom: <sip:1001@127.0.0.1>;tag=a1\r\nTo: {}\r\nCall-ID: api-1\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        ch.to().unwrap()
    );
    sip_in(e, now, &ack);
    let v = ch.headers.get_all(&HeaderName::ProxyAuthenticate).find(|v| v.contains("MD5")).expect("an MD5 challenge");
    let p = sip::AuthParams::parse(v).unwrap();
    let mut c = Credentials {
        username: "1001".into(),
        realm: p.get("realm").unwrap(),
        nonce: p.get("nonce").unwrap(),
        uri: uri.clone(),
        algorithm: Some("MD5".into()),
        cnonce: Some("c0ffee".into()),
        nc: Some("00000001".into()),
        qop: Some("auth".into()),
        ..Default::default()
    };
    c.response = digest::expected_response(Algorithm::Md5, &digest::ha1(Algorithm::Md5, "1001", &c.realm, PW), "INVITE", &c);
    let auth = format!(
        "Proxy-Authorization: Digest username=\"1001\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0ffee\"\r\n",
        c.realm, c.nonce, c.response
    );
    sip_in(e, now, &inv("z9hG4bKapi2", 2, &auth))
}

fn rp_only() -> Grant {
    Grant::Devices(BTreeSet::from(["rp".to_string()]))
}

#[test]
fn an_in_process_client_answers_and_drops_a_sip_call_with_commands_only() {
    let mut e = engine();
    let t = Time::from_millis;
    let c = e.api_connect("auto-attendant", rp_only());
    let r = e.api_command(t(0), c, Command::Open { device: "rp".into(), media: None });
    assert_eq!(r, Ok(CommandResult::Opened { device: "rp".into(), kind: "cti_route_point".into() }));
    assert_eq!(events(&mut e, c), vec![(1, Event::new("rp", None, EventKind::DeviceInService))]);
    drain(&mut e);

    // The phone calls the route point: it hears ringing, the client is offered the call.
    let out = call_route_point(&mut e, t(10));
    assert!(responses(&out).iter().any(|r| r.status == 180), "{out:?}");
    let ev = events(&mut e, c);
    let [(2, Event { device, call: Some(call), kind: EventKind::CallOffered { from, to, .. } })] = ev.as_slice() else {
        panic!("one call_offered, event 2: {ev:?}")
    };
    assert_eq!((device.as_str(), from.as_str(), to.as_str()), ("rp", "1001", "2000"));
    let call = call.clone();

    // Answer with the client's RTP at 127.0.0.1:30000: the caller gets a 200 whose SDP
    // points there, and the result says where the caller's RTP comes from.
    let media = Media { ip: "127.0.0.1".parse().unwrap(), port: 30000, codec: None };
    let r = e.api_command(t(20), c, Command::Answer { call: call.clone(), media: Some(media), box_media: false });
    let Ok(CommandResult::Answered { media: m }) = r else { panic!("{r:?}") };
    assert_eq!((m.remote_port, m.local_port), (40000, 30000));
    let out = drain(&mut e);
    let ok = responses(&out).into_iter().find(|r| r.status == 200).unwrap_or_else(|| panic!("a 200 to the caller: {out:?}"));
    assert!(String::from_utf8_lossy(&ok.body).contains("m=audio 30000 "), "{ok:?}");
    let kinds: Vec<&str> = events(&mut e, c).iter().map(|(_, ev)| ev.kind.name()).collect();
    assert_eq!(kinds, ["call_answered", "media_started"]);

    // Drop: the caller gets a BYE, the client call_ended (dropped), and the call is gone.
    assert_eq!(e.api_command(t(30), c, Command::Drop { call: call.clone() }), Ok(CommandResult::Done));
    let out = drain(&mut e);
    assert_eq!(requests(&out).iter().filter(|r| r.method.as_str() == "BYE").count(), 1, "{out:?}");
    let ev = events(&mut e, c);
    assert!(ev.iter().any(|(_, ev)| ev.call.as_deref() == Some(call.as_str()) && ev.kind == EventKind::CallEnded { reason: EndReason::Dropped }), "{ev:?}");
    let seqs: Vec<u64> = ev.iter().map(|(s, _)| *s).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "sequence numbers count up: {seqs:?}");
    let r = e.api_command(t(40), c, Command::Drop { call });
    assert!(matches!(r, Err(ApiError { code: ErrorCode::UnknownCall, .. })), "{r:?}");
}

#[test]
fn a_client_lists_and_opens_only_what_it_was_granted() {
    let mut e = engine();
    let c = e.api_connect("auto-attendant", rp_only());
    let Ok(CommandResult::Devices { devices }) = e.api_command(Time::ZERO, c, Command::ListDevices) else { panic!() };
    assert_eq!(devices.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["rp"]);
    let r = e.api_command(Time::ZERO, c, Command::Open { device: "port".into(), media: None });
    assert_eq!(r, Err(ApiError::new(ErrorCode::DeviceNotAllowed, "application auto-attendant may not open \"port\"")));
    // Another client may not take the device the first one has open.
    let other = e.api_connect("other", rp_only());
    assert!(e.api_command(Time::ZERO, c, Command::Open { device: "rp".into(), media: None }).is_ok());
    let r = e.api_command(Time::ZERO, other, Command::Open { device: "rp".into(), media: None });
    assert!(matches!(r, Err(ApiError { code: ErrorCode::DeviceInUse, .. })), "{r:?}");
    // Disconnecting frees it.
    e.api_disconnect(c, false);
    assert_eq!(e.api().owner("rp"), None);
    assert!(e.api_command(Time::ZERO, other, Command::Open { device: "rp".into(), media: None }).is_ok());
    assert_eq!(e.api().owner("rp"), Some(other));
}

#[test]
fn a_client_that_lets_its_event_queue_fill_is_closed_as_failed() {
    let mut e = engine();
    let c = e.api_connect("slow", rp_only());
    let open = || Command::Open { device: "rp".into(), media: None };
    let close = || Command::Close { device: "rp".into() };
    // Each open and close queues one event; nobody polls.
    for _ in 0..crate::limits::API_EVENT_QUEUE / 2 {
        assert!(e.api_command(Time::ZERO, c, open()).is_ok());
        assert!(e.api_command(Time::ZERO, c, close()).is_ok());
    }
    assert_eq!(e.api().get(c).map(|s| s.pending_events()), Some(crate::limits::API_EVENT_QUEUE));
    // The queue is full: the next event closes the client and frees its device.
    assert!(e.api_command(Time::ZERO, c, open()).is_ok());
    assert!(e.api().get(c).is_none(), "closed");
    assert_eq!(e.api().owner("rp"), None);
    assert!(!e.sip().cti_open.contains("rp"));
    let r = e.api_command(Time::ZERO, c, Command::ListDevices);
    assert!(matches!(r, Err(ApiError { code: ErrorCode::NotLoggedIn, .. })), "{r:?}");
    assert_eq!(e.api_poll_event(c), None);
}
