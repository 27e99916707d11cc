//! Golden JSON for every request, reply, event and error code of CTI protocol 1.

use super::*;
use serde_json::json;

fn ok(text: &str) -> (RequestId, Request) {
    parse_request(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn err(text: &str) -> WireError {
    match parse_request(text) {
        Ok(r) => panic!("{text}: parsed as {r:?}"),
        Err(e) => e,
    }
}

fn media(ip: &str, port: u16, codec: Option<Codec>) -> Media {
    Media { ip: ip.parse().unwrap(), port, codec }
}

#[test]
fn hello_is_golden() {
    let v = format!(r#"{{"type":"hello","server":"ctibox","version":"{}","protocol":1}}"#, env!("CARGO_PKG_VERSION"));
    assert_eq!(hello(None), v);
    let standby = crate::core::PairView { role: "standby", term: 4, active: Some("192.0.2.11".into()) };
    let v = format!(
        r#"{{"type":"hello","server":"ctibox","version":"{}","protocol":1,"role":"standby","active":"192.0.2.11"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(hello(Some(&standby)), v);
}

/// Each request: its JSON, the typed value, and back to the same JSON.
#[test]
fn every_request_parses_and_prints_golden() {
    let cases: Vec<(&str, Request)> = vec![
        (
            r#"{"type":"login","id":1,"app":"crm","secret":"s3cret pass","protocol":1}"#,
            Request::Login { app: "crm".into(), secret: "s3cret pass".into(), protocol: Some(1) },
        ),
        (r#"{"type":"logout","id":1}"#, Request::Logout),
        (r#"{"type":"heartbeat","id":1}"#, Request::Heartbeat),
        (r#"{"type":"list_devices","id":1}"#, Request::ListDevices),
        (r#"{"type":"open","id":1,"device":"rp1"}"#, Request::Open { device: "rp1".into(), media: None }),
        (
            r#"{"type":"open","id":1,"device":"port1","media":{"ip":"192.0.2.10","port":4000,"codec":"pcma"}}"#,
            Request::Open { device: "port1".into(), media: Some(media("192.0.2.10", 4000, Some(Codec::Pcma))) },
        ),
        (r#"{"type":"close","id":1,"device":"rp1"}"#, Request::Close { device: "rp1".into() }),
        (r#"{"type":"answer","id":1,"call":"c7"}"#, Request::Answer { call: "c7".into(), media: None, box_media: false }),
        (r#"{"type":"answer","id":1,"call":"c7","media":"box"}"#, Request::Answer { call: "c7".into(), media: None, box_media: true }),
        (
            r#"{"type":"answer","id":1,"call":"c7","media":{"ip":"2001:db8::10","port":5004}}"#,
            Request::Answer { call: "c7".into(), media: Some(media("2001:db8::10", 5004, None)), box_media: false },
        ),
        (
            r#"{"type":"set_media","id":1,"call":"c7","ip":"192.0.2.10","port":4002,"codec":"pcmu"}"#,
            Request::SetMedia { call: "c7".into(), media: media("192.0.2.10", 4002, Some(Codec::Pcmu)) },
        ),
        (r#"{"type":"redirect","id":1,"call":"c7","to":"2001"}"#, Request::Redirect { call: "c7".into(), to: "2001".into() }),
        (r#"{"type":"hold","id":1,"call":"c7"}"#, Request::Hold { call: "c7".into() }),
        (r#"{"type":"unhold","id":1,"call":"c7"}"#, Request::Unhold { call: "c7".into() }),
        (r#"{"type":"drop","id":1,"call":"c7"}"#, Request::Drop { call: "c7".into() }),
        (
            r#"{"type":"make_call","id":1,"device":"port1","to":"1001"}"#,
            Request::MakeCall { device: "port1".into(), to: "1001".into(), media: None },
        ),
        (
            r#"{"type":"make_call","id":1,"device":"port1","to":"1001","media":{"ip":"192.0.2.10","port":4004}}"#,
            Request::MakeCall { device: "port1".into(), to: "1001".into(), media: Some(media("192.0.2.10", 4004, None)) },
        ),
        (r#"{"type":"snapshot","id":1}"#, Request::Snapshot { device: None }),
        (r#"{"type":"snapshot","id":1,"device":"rp1"}"#, Request::Snapshot { device: Some("rp1".into()) }),
        (r#"{"type":"play","id":1,"call":"c7","prompt":"welcome.wav"}"#, Request::Play { call: "c7".into(), prompt: "welcome.wav".into() }),
        (
            r##"{"type":"collect_digits","id":1,"call":"c7","max":4,"terminator":"#","inter_digit_timeout_ms":3000,"first_digit_timeout_ms":8000}"##,
            Request::CollectDigits { call: "c7".into(), max: 4, terminator: Some('#'), inter_digit_timeout_ms: 3000, first_digit_timeout_ms: Some(8000) },
        ),
        (
            r#"{"type":"collect_digits","id":1,"call":"c7","max":1,"inter_digit_timeout_ms":100}"#,
            Request::CollectDigits { call: "c7".into(), max: 1, terminator: None, inter_digit_timeout_ms: 100, first_digit_timeout_ms: None },
        ),
        (r#"{"type":"stop_media","id":1,"call":"c7"}"#, Request::StopMedia { call: "c7".into() }),
        (r#"{"type":"send_digits","id":1,"call":"c7","digits":"12#"}"#, Request::SendDigits { call: "c7".into(), digits: "12#".into() }),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (text, want) in cases {
        let (id, got) = ok(text);
        assert_eq!(id, RequestId::Num(1));
        assert_eq!(got, want, "{text}");
        assert_eq!(got.to_json(&id), text, "printing {got:?}");
        seen.insert(got.name());
    }
    assert_eq!(seen.len(), Request::NAMES.len(), "a request kind has no golden case");
}

#[test]
fn ids_are_integers_or_strings_and_echoed() {
    assert_eq!(ok(r#"{"id":"a-1","type":"heartbeat"}"#).0, RequestId::Str("a-1".into()));
    assert_eq!(ok(r#"{"id":-5,"type":"heartbeat"}"#).0, RequestId::Num(-5));
    let r = Reply::ok(RequestId::Str("a-1".into()));
    assert_eq!(r.to_json(), r#"{"type":"reply","id":"a-1","ok":true}"#);
    let e = err(r#"{"id":1.5,"type":"heartbeat"}"#);
    assert_eq!((e.id, e.code), (None, ErrorCode::BadField));
    assert_eq!(e.message, "Field \"id\" must be an integer or a string, found 1.5.");
    let e = err(r#"{"id":[1],"type":"heartbeat"}"#);
    assert_eq!(e.message, "Field \"id\" must be an integer or a string, found an array.");
    let e = err(r#"{"type":"heartbeat"}"#);
    assert_eq!((e.id, e.code), (None, ErrorCode::MissingField));
    let long = "x".repeat(MAX_STRING + 1);
    assert_eq!(err(&format!(r#"{{"id":"{long}","type":"heartbeat"}}"#)).code, ErrorCode::BadField);
}

#[test]
fn unknown_fields_are_ignored() {
    assert_eq!(ok(r#"{"type":"hold","id":2,"call":"c1","x-trace":"abc"}"#).1, Request::Hold { call: "c1".into() });
    // null is the same as absent.
    assert_eq!(ok(r#"{"type":"snapshot","id":2,"device":null}"#).1, Request::Snapshot { device: None });
}

/// The error replies a malformed request gets: code, id and the exact sentence.
#[test]
fn malformed_requests_are_named() {
    let cases: &[(&str, Option<RequestId>, ErrorCode, &str)] = &[
        ("{nope", None, ErrorCode::BadJson, "The message is not valid JSON: key must be a string at line 1 column 2."),
        ("[1,2]", None, ErrorCode::BadJson, "A request must be a JSON object, not an array."),
        ("\"hi\"", None, ErrorCode::BadJson, "A request must be a JSON object, not a string."),
        (r#"{"id":3}"#, Some(RequestId::Num(3)), ErrorCode::MissingField, "Every request needs a \"type\"."),
        (r#"{"id":3,"type":7}"#, Some(3.into()), ErrorCode::BadField, "Field \"type\" must be a string naming the request, found a number."),
        (
            r#"{"id":3,"type":"dance"}"#,
            Some(3.into()),
            ErrorCode::UnknownRequest,
            "Unknown request type \"dance\"; known types are login, logout, heartbeat, list_devices, open, close, answer, set_media, redirect, hold, unhold, drop, make_call, snapshot, play, collect_digits, stop_media, send_digits.",
        ),
        (r#"{"id":3,"type":"open"}"#, Some(3.into()), ErrorCode::MissingField, "Request \"open\" needs field \"device\" (a string)."),
        (r#"{"id":3,"type":"open","device":12}"#, Some(3.into()), ErrorCode::BadField, "Field \"device\" of \"open\" must be a string, found a number."),
        (
            r#"{"id":3,"type":"open","device":""}"#,
            Some(3.into()),
            ErrorCode::BadField,
            "Field \"device\" of \"open\" must be a non-empty string of at most 256 bytes without control characters, found an empty string.",
        ),
        (
            r#"{"id":3,"type":"redirect","call":"c1","to":"1001\r\nVia: x"}"#,
            Some(3.into()),
            ErrorCode::BadField,
            "Field \"to\" of \"redirect\" must be a non-empty string of at most 256 bytes without control characters, found a control character.",
        ),
        (
            r#"{"id":3,"type":"open","device":"p","media":{"ip":"300.1.1.1","port":4000}}"#,
            Some(3.into()),
            ErrorCode::BadField,
            "Field \"media.ip\" of \"open\" must be an IP address like \"192.0.2.10\" or \"2001:db8::10\", found \"300.1.1.1\".",
        ),
        (
            r#"{"id":3,"type":"open","device":"p","media":{"ip":"0.0.0.0","port":4000}}"#,
            Some(3.into()),
            ErrorCode::BadField,
            "Field \"media.ip\" of \"open\" must be a unicast IP address, found \"0.0.0.0\".",
        ),
        (
            r#"{"id":3,"type":"answer","call":"c","media":{"ip":"192.0.2.1","port":70000}}"#,
            Some(3.into()),
            ErrorCode::BadField,
            "Field \"media.port\" of \"answer\" must be an integer from 1 to 65535, found 70000.",
        ),
        (
            r#"{"id":3,"type":"answer","call":"c","media":{"ip":"192.0.2.1","port":0}}"#,
            Some(3.into()),
            ErrorCode::BadField,
            "Field \"media.port\" of \"answer\" must be an integer from 1 to 65535, found 0.",
        ),
        (
            r#"{"id":3,"type":"answer","call":"c","media":{"ip":"192.0.2.1"}}"#,
            Some(3.into()),
            ErrorCode::MissingField,
            "Request \"answer\" needs field \"media.port\" (the UDP port RTP goes to).",
        ),
        (
            r#"{"id":3,"type":"answer","call":"c","media":"192.0.2.1:4000"}"#,
            Some(3.into()),
            ErrorCode::BadField,
            "Field \"media\" of \"answer\" must be \"box\" or an object with ip, port and optional codec, found \"192.0.2.1:4000\".",
        ),
        (
            r#"{"id":3,"type":"set_media","call":"c","ip":"192.0.2.1","port":4000,"codec":"g729"}"#,
            Some(3.into()),
            ErrorCode::BadField,
            "Field \"codec\" of \"set_media\" must be one of \"pcmu\", \"pcma\", found \"g729\".",
        ),
        (
            r#"{"id":3,"type":"set_media","call":"c","port":4000}"#,
            Some(3.into()),
            ErrorCode::MissingField,
            "Request \"set_media\" needs field \"ip\" (the IP address RTP goes to).",
        ),
        (
            r#"{"id":3,"type":"login","app":"crm","secret":"x","protocol":2}"#,
            Some(3.into()),
            ErrorCode::UnsupportedProtocol,
            "This server speaks CTI protocol version 1; the login asked for version 2.",
        ),
        (
            r#"{"id":3,"type":"login","app":"crm","secret":"x","protocol":"1"}"#,
            Some(3.into()),
            ErrorCode::BadField,
            "Field \"protocol\" of \"login\" must be a non-negative integer, found a string.",
        ),
        (r#"{"id":3,"type":"login","app":"crm"}"#, Some(3.into()), ErrorCode::MissingField, "Request \"login\" needs field \"secret\" (a string)."),
        (r#"{"id":3,"type":"play","call":"c1"}"#, Some(3.into()), ErrorCode::MissingField, "Request \"play\" needs field \"prompt\" (a string)."),
        (
            r#"{"id":3,"type":"collect_digits","call":"c1","inter_digit_timeout_ms":3000}"#,
            Some(3.into()),
            ErrorCode::MissingField,
            "Request \"collect_digits\" needs field \"max\" (how many digits to collect).",
        ),
        (
            r#"{"id":3,"type":"collect_digits","call":"c1","max":0,"inter_digit_timeout_ms":3000}"#,
            Some(3.into()),
            ErrorCode::BadField,
            "Field \"max\" of \"collect_digits\" must be an integer from 1 to 32, found 0.",
        ),
        (
            r###"{"id":3,"type":"collect_digits","call":"c1","max":4,"terminator":"##","inter_digit_timeout_ms":3000}"###,
            Some(3.into()),
            ErrorCode::BadField,
            "Field \"terminator\" of \"collect_digits\" must be one DTMF digit (0-9, *, #, A-D), found \"##\".",
        ),
        (
            r#"{"id":3,"type":"collect_digits","call":"c1","max":4,"inter_digit_timeout_ms":50}"#,
            Some(3.into()),
            ErrorCode::BadField,
            "Field \"inter_digit_timeout_ms\" of \"collect_digits\" must be an integer from 100 to 600000 (milliseconds), found 50.",
        ),
        (
            r#"{"id":3,"type":"collect_digits","call":"c1","max":4}"#,
            Some(3.into()),
            ErrorCode::MissingField,
            "Request \"collect_digits\" needs field \"inter_digit_timeout_ms\" (milliseconds to wait after each digit).",
        ),
        (
            r#"{"id":3,"type":"send_digits","call":"c1","digits":"12x"}"#,
            Some(3.into()),
            ErrorCode::BadField,
            "Field \"digits\" of \"send_digits\" must be 1 to 32 DTMF digits (0-9, *, #, A-D), found \"12x\".",
        ),
    ];
    for (text, id, code, message) in cases {
        let e = err(text);
        assert_eq!((&e.id, e.code, e.message.as_str()), (id, *code, *message), "{text}");
    }
}

#[test]
fn oversized_and_hostile_input_is_an_error_not_a_panic() {
    let big = format!(r#"{{"id":1,"type":"heartbeat","pad":"{}"}}"#, "x".repeat(MAX_MESSAGE));
    assert_eq!(err(&big).code, ErrorCode::BadJson);
    let deep = "[".repeat(10_000);
    assert_eq!(err(&deep).code, ErrorCode::BadJson);
    let long_type = format!(r#"{{"id":1,"type":"{}"}}"#, "é".repeat(1000));
    assert!(err(&long_type).message.len() < 400);
    for text in ["", " ", "null", "{}", "{\"id\":null}", "{\"id\":1e400}", "\u{0}", "{\"id\":18446744073709551615,\"type\":\"x\"}"] {
        let _ = parse_request(text);
    }
    // Secrets may hold any character; they are bounded like the rest.
    assert!(parse_request("{\"id\":1,\"type\":\"login\",\"app\":\"a\",\"secret\":\"tab\\there\"}").is_ok());
}

#[test]
fn every_error_code_has_a_wire_name_and_a_sentence() {
    let golden = [
        ("bad_json", "The message is not a JSON object."),
        ("missing_field", "A field the request needs is missing."),
        ("bad_field", "A field has the wrong type or value."),
        ("unknown_request", "This server knows no request of that type."),
        ("not_logged_in", "Log in first: this request needs a session."),
        ("already_logged_in", "This connection is already logged in."),
        ("auth_failed", "The application name or secret is wrong."),
        ("unknown_device", "No device has that name."),
        ("device_not_allowed", "This application may not control that device."),
        ("device_in_use", "Another application has that device open."),
        ("device_not_open", "This application has not opened that device."),
        ("unknown_call", "No call with that id is at a device this application has open."),
        ("invalid_state", "The call or device is not in a state that allows this request."),
        ("media_required", "This call has no media termination yet: send set_media or answer with media."),
        ("capacity", "A capacity limit was reached; try again later."),
        ("unsupported_protocol", "This server speaks CTI protocol version 1 only."),
        ("throttled", "Too many failed logins from this address: wait, then try again."),
        ("not_active", "This box is the standby of its pair: use the active one."),
        ("internal", "The server failed to handle the request."),
    ];
    assert_eq!(golden.len(), ErrorCode::ALL.len());
    for (code, (name, sentence)) in ErrorCode::ALL.into_iter().zip(golden) {
        assert_eq!(code.as_str(), name);
        assert_eq!(code.to_string(), sentence);
        assert_eq!(ErrorCode::parse(name), Some(code));
        let reply = Reply::from_code(Some(RequestId::Num(9)), code).to_json();
        assert_eq!(reply, format!(r#"{{"type":"reply","id":9,"ok":false,"error":{{"code":"{name}","message":"{sentence}"}}}}"#));
    }
}

#[test]
fn replies_are_golden() {
    assert_eq!(Reply::ok(RequestId::Num(1)).to_json(), r#"{"type":"reply","id":1,"ok":true}"#);
    let r = Reply::ok(RequestId::Num(2)).with("call", "c9").with("heartbeat_s", 30).with("ok", false);
    assert_eq!(r.to_json(), r#"{"type":"reply","id":2,"ok":true,"call":"c9","heartbeat_s":30}"#);
    let d = DeviceInfo { name: "rp1".into(), kind: "cti_route_point".into(), lines: vec!["5000@internal".into()], open: true, in_use: false };
    let r = Reply::ok(RequestId::Num(3)).with("devices", vec![d.to_value()]);
    assert_eq!(
        r.to_json(),
        r#"{"type":"reply","id":3,"ok":true,"devices":[{"in_use":false,"kind":"cti_route_point","lines":["5000@internal"],"name":"rp1","open":true}]}"#
    );
    let e = Reply::from(err("{"));
    assert_eq!(
        e.to_json(),
        r#"{"type":"reply","id":null,"ok":false,"error":{"code":"bad_json","message":"The message is not valid JSON: EOF while parsing an object at line 1 column 1."}}"#
    );
    // Errors ignore result fields.
    let e = Reply::error(Some("x".into()), ErrorCode::UnknownCall, "No call \"c1\" at your devices.").with("call", "c1");
    assert_eq!(
        e.to_json(),
        r#"{"type":"reply","id":"x","ok":false,"error":{"code":"unknown_call","message":"No call \"c1\" at your devices."}}"#
    );
}

fn mi() -> MediaInfo {
    MediaInfo {
        remote_ip: "192.0.2.50".parse().unwrap(),
        remote_port: 20000,
        codec: Codec::Pcmu,
        local_ip: "192.0.2.10".parse().unwrap(),
        local_port: 4000,
    }
}

#[test]
fn every_event_is_golden() {
    let offered = EventKind::CallOffered { from: "1001".into(), from_name: Some("Ann".into()), to: "5000".into(), redirected_from: None };
    let snapshot = EventKind::Snapshot {
        calls: vec![CallInfo {
            call: "c1".into(),
            state: CallState::Connected,
            from: "1001".into(),
            from_name: None,
            to: "5000".into(),
            redirected_from: Some("5001".into()),
            media: Some(mi()),
        }],
    };
    let cases: Vec<(Option<&str>, EventKind, &str)> = vec![
        (None, EventKind::DeviceInService, r#""event":"device_in_service","device":"rp1"}"#),
        (None, EventKind::DeviceOutOfService, r#""event":"device_out_of_service","device":"rp1"}"#),
        (Some("c1"), offered, r#""event":"call_offered","device":"rp1","call":"c1","from":"1001","from_name":"Ann","to":"5000"}"#),
        (
            Some("c1"),
            EventKind::CallOffered { from: "1001".into(), from_name: None, to: "5000".into(), redirected_from: Some("5001".into()) },
            r#""event":"call_offered","device":"rp1","call":"c1","from":"1001","to":"5000","redirected_from":"5001"}"#,
        ),
        (Some("c1"), EventKind::CallRinging, r#""event":"call_ringing","device":"rp1","call":"c1"}"#),
        (Some("c1"), EventKind::CallAnswered, r#""event":"call_answered","device":"rp1","call":"c1"}"#),
        (Some("c1"), EventKind::CallConnected, r#""event":"call_connected","device":"rp1","call":"c1"}"#),
        (Some("c1"), EventKind::CallHeld, r#""event":"call_held","device":"rp1","call":"c1"}"#),
        (Some("c1"), EventKind::CallResumed, r#""event":"call_resumed","device":"rp1","call":"c1"}"#),
        (Some("c1"), EventKind::CallRedirected { to: "2001".into() }, r#""event":"call_redirected","device":"rp1","call":"c1","to":"2001"}"#),
        (Some("c1"), EventKind::CallEnded { reason: EndReason::Hangup }, r#""event":"call_ended","device":"rp1","call":"c1","reason":"hangup"}"#),
        (
            Some("c1"),
            EventKind::MediaStarted(mi()),
            r#""event":"media_started","device":"rp1","call":"c1","remote_ip":"192.0.2.50","remote_port":20000,"codec":"pcmu","local_ip":"192.0.2.10","local_port":4000}"#,
        ),
        (Some("c1"), EventKind::MediaStopped, r#""event":"media_stopped","device":"rp1","call":"c1"}"#),
        (Some("c1"), EventKind::PlayDone, r#""event":"play_done","device":"rp1","call":"c1"}"#),
        (Some("c1"), EventKind::MediaFailed { reason: "no RTP".into() }, r#""event":"media_failed","device":"rp1","call":"c1","reason":"no RTP"}"#),
        (Some("c1"), EventKind::Digit { digit: '#' }, r##""event":"digit","device":"rp1","call":"c1","digit":"#"}"##),
        (
            Some("c1"),
            EventKind::DigitsCollected { digits: "123".into(), reason: CollectEnd::Terminator },
            r#""event":"digits_collected","device":"rp1","call":"c1","digits":"123","reason":"terminator"}"#,
        ),
        (
            None,
            snapshot,
            r#""event":"snapshot","device":"rp1","calls":[{"call":"c1","state":"connected","from":"1001","to":"5000","redirected_from":"5001","media":{"remote_ip":"192.0.2.50","remote_port":20000,"codec":"pcmu","local_ip":"192.0.2.10","local_port":4000}}]}"#,
        ),
    ];
    let mut names = std::collections::BTreeSet::new();
    for (seq, (call, kind, tail)) in (1u64..).zip(cases) {
        names.insert(kind.name());
        let e = Event::new("rp1", call, kind);
        let text = e.to_json(seq);
        assert_eq!(text, format!(r#"{{"type":"event","seq":{seq},{tail}"#));
        serde_json::from_str::<serde_json::Value>(&text).expect("valid JSON");
    }
    assert_eq!(names.len(), 17, "an event kind has no golden case");
}

#[test]
fn end_reasons_and_states_have_wire_names() {
    let reasons = [
        EndReason::Hangup,
        EndReason::Dropped,
        EndReason::Redirected,
        EndReason::Busy,
        EndReason::NoAnswer,
        EndReason::Rejected,
        EndReason::ForwardedOnFailure,
        EndReason::Failed,
    ];
    let names: Vec<_> = reasons.iter().map(|r| r.as_str()).collect();
    assert_eq!(names, ["hangup", "dropped", "redirected", "busy", "no_answer", "rejected", "forwarded_on_failure", "failed"]);
    let states: Vec<_> =
        [CallState::Offered, CallState::Dialing, CallState::Ringing, CallState::Connected, CallState::Held].iter().map(|s| s.as_str()).collect();
    assert_eq!(states, ["offered", "dialing", "ringing", "connected", "held"]);
    assert_eq!(json!(CallInfo { call: "c".into(), state: CallState::Held, from: "1".into(), from_name: None, to: "2".into(), redirected_from: None, media: None }.to_value()), json!({"call":"c","state":"held","from":"1","to":"2"}));
}

/// The engine greets a new connection and answers unreadable requests itself.
#[test]
fn engine_greets_and_answers_errors() {
    use crate::core::{rng::EngineRng, ConnId, CtiTransport, Engine, Input, Output, Restored, Time};
    use std::sync::Arc;
    let mut e = Engine::new(Arc::new(crate::config::embedded_default()), EngineRng::seed_from_u64(1), Time::ZERO, 0, Restored::default());
    let conn = ConnId(7);
    e.handle_input(Time::ZERO, Input::CtiOpened { conn, peer: "127.0.0.1:9".parse().unwrap(), transport: CtiTransport::Tcp });
    assert_eq!(e.poll_output(), Some(Output::CtiSend { conn, text: hello(None) }));
    e.handle_input(Time::ZERO, Input::CtiMessage { conn, text: r#"{"id":4,"type":"open"}"#.into() });
    match e.poll_output() {
        Some(Output::CtiSend { conn: c, text }) => {
            assert_eq!(c, conn);
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!((v["id"].as_i64(), v["ok"].as_bool(), v["error"]["code"].as_str()), (Some(4), Some(false), Some("missing_field")));
        }
        other => panic!("unexpected {other:?}"),
    }
    // A readable request reaches the session layer, which answers with the same id.
    e.handle_input(Time::ZERO, Input::CtiMessage { conn, text: r#"{"id":"h","type":"heartbeat"}"#.into() });
    match e.poll_output() {
        Some(Output::CtiSend { text, .. }) => assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap()["id"], "h"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(e.stats().cti_messages, 2);
}

/// Mutated golden requests never panic the parser, and whatever parses prints back
/// to JSON that parses to the same request (a cheap, deterministic fuzz pass).
#[test]
fn mutations_never_panic_and_round_trip() {
    let seeds = [
        r#"{"type":"login","id":1,"app":"crm","secret":"s","protocol":1}"#,
        r#"{"type":"open","id":"x","device":"port1","media":{"ip":"192.0.2.10","port":4000,"codec":"pcma"}}"#,
        r#"{"type":"set_media","id":3,"call":"c7","ip":"2001:db8::1","port":4002}"#,
        r#"{"type":"make_call","id":4,"device":"p","to":"1001","media":{"ip":"192.0.2.10","port":1}}"#,
        r#"{"type":"snapshot","id":5}"#,
    ];
    let alphabet = b"{}[]\":,0123456789-.eE \\u\x00\xff\xc3abcnull";
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for seed in seeds {
        for _ in 0..2000 {
            let mut b = seed.as_bytes().to_vec();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % b.len();
                match next() % 3 {
                    0 => b[at] = alphabet[(next() as usize) % alphabet.len()],
                    1 => {
                        b.remove(at);
                    }
                    _ => b.insert(at, alphabet[(next() as usize) % alphabet.len()]),
                }
                if b.is_empty() {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&b);
            if let Ok((id, req)) = parse_request(&text) {
                assert_eq!(parse_request(&req.to_json(&id)), Ok((id, req)), "{text}");
            }
        }
    }
}
