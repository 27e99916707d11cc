//! Fuzz target: the CTI wire (src/core/cti/wire.rs) on any UTF-8. Never panics; a
//! request that parses prints as JSON that parses back to the same request and id;
//! every reply and every event built from the request's strings is one line of valid
//! JSON (the stream is line-framed) echoing the id.
#![no_main]

use ctibox::core::cti::wire::{CallInfo, CallState, EndReason, Event, EventKind};
use ctibox::core::cti::{parse_request, Reply, Request, RequestId};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// `text` is one line of JSON; returns the value.
fn one_json_line(text: &str) -> Value {
    assert!(!text.contains('\n') && !text.contains('\r'), "a message must be one line: {text:?}");
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

fn strings(r: &Request) -> Vec<&str> {
    match r {
        Request::Login { app, secret, .. } => vec![app, secret],
        Request::Open { device, .. } | Request::Close { device } => vec![device],
        Request::Answer { call, .. }
        | Request::SetMedia { call, .. }
        | Request::Hold { call }
        | Request::Unhold { call }
        | Request::Drop { call }
        | Request::CollectDigits { call, .. }
        | Request::StopMedia { call } => vec![call],
        Request::Play { call, prompt } => vec![call, prompt],
        Request::SendDigits { call, digits } => vec![call, digits],
        Request::Redirect { call, to } => vec![call, to],
        Request::MakeCall { device, to, .. } => vec![device, to],
        Request::Snapshot { device } => device.iter().map(String::as_str).collect(),
        Request::Logout | Request::Heartbeat | Request::ListDevices => vec![],
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse_request(text) {
        Ok((id, req)) => {
            let json = req.to_json(&id);
            one_json_line(&json);
            let (id2, req2) = parse_request(&json).unwrap_or_else(|e| panic!("printed request must re-parse: {e}: {json}"));
            assert_eq!((&id2, &req2), (&id, &req), "round trip: {json}");
            let reply = Reply::ok(id.clone()).with("name", req.name()).with("echo", strings(&req).join(" ")).to_json();
            assert_eq!(one_json_line(&reply)["id"], id.to_value());
            let s = strings(&req);
            let (a, b) = (s.first().copied().unwrap_or("d"), s.last().copied().unwrap_or("c"));
            let kinds = [
                EventKind::CallOffered { from: a.into(), from_name: Some(b.into()), to: b.into(), redirected_from: Some(a.into()) },
                EventKind::CallRedirected { to: b.into() },
                EventKind::CallEnded { reason: EndReason::Hangup },
                EventKind::Snapshot {
                    calls: vec![CallInfo {
                        call: b.into(),
                        state: CallState::Offered,
                        from: a.into(),
                        from_name: Some(b.into()),
                        to: a.into(),
                        redirected_from: None,
                        media: None,
                    }],
                },
            ];
            for kind in kinds {
                let ev = Event::new(a, Some(b), kind).to_json(u64::MAX);
                let v = one_json_line(&ev);
                assert_eq!((v["device"].as_str(), v["call"].as_str()), (Some(a), Some(b)));
            }
        }
        Err(e) => {
            let id = e.id.clone();
            let reply = Reply::from(e).to_json();
            let v = one_json_line(&reply);
            assert_eq!(v["id"], id.map_or(Value::Null, |i: RequestId| i.to_value()));
            assert_eq!(v["ok"], Value::Bool(false));
        }
    }
});
