//! CTI on the virtual clock: a route point's offered call left unanswered follows Call
//! Forward No Answer at the device's timeout; an application that fails sends its
//! offered calls to Call Forward On Failure; a call answered with box media ends when
//! its stream reports an RTP timeout. Phones and the application are 10 ms from the
//! box.
mod world;

use world::*;

/// Phones registered, `ivr` logged in with `rp-2000` open; the clock at 1.000 s.
fn world() -> World {
    let mut w = World::new(&config(&[], ""), 1);
    w.register_all();
    w.app_login("ivr", &["rp-2000"]);
    w.drive_until(secs(1.0));
    w
}

fn check(actual: Vec<String>, expected: &[&str]) {
    let actual: Vec<String> = actual.into_iter().filter(|l| !l.contains("REGISTER")).collect();
    if actual != expected {
        panic!("trace differs\n--- actual:\n{}\n--- expected:\n{}", actual.join("\n"), expected.join("\n"));
    }
}

/// The caller's side up to the offer: challenged, then 100 and 180 at once while the
/// application is offered the call at 1.030.
const OFFER: [&str; 7] = [
    "1.000 1001>box INVITE",
    "1.010 box>1001 407 INVITE",
    "1.020 1001>box ACK",
    "1.020 1001>box INVITE",
    "1.030 box>1001 100 INVITE",
    "1.030 box>1001 180 INVITE",
    "1.030 box>ivr cti event call_offered",
];

fn events(w: &World) -> Vec<String> {
    w.app("ivr").received.iter().filter(|(_, v)| v["type"] == "event").map(|(t, v)| format!("{} {v}", fmt_t(*t))).collect()
}

#[test]
fn route_point_call_unanswered_for_the_device_timeout_follows_cfna_at_that_time() {
    let mut w = world();
    w.dial("1001", "2000");
    w.drive_until(secs(12.0));
    w.answer("1003");
    w.drive_until(secs(13.0));
    w.hangup("1001");
    w.settle();
    let expected: Vec<&str> = OFFER
        .iter()
        .copied()
        .chain([
            // answer_timeout_s = 10 after the offer: call_ended no_answer, CFNA to 1003.
            "11.030 box>1003 INVITE",
            "11.030 box>ivr cti event call_ended",
            "11.040 1003>box 180 INVITE",
            "11.050 box>1001 180 INVITE",
            "12.000 1003>box 200 INVITE",
            "12.010 box>1003 ACK",
            "12.010 box>1001 200 INVITE",
            "12.020 1001>box ACK",
            "13.000 1001>box BYE",
            "13.010 box>1001 200 BYE",
            "13.010 box>1003 BYE",
            "13.020 1003>box 200 BYE",
        ])
        .collect();
    let trace: Vec<String> = w.trace(&["1001", "1003", "ivr"]).into_iter().filter(|l| l.starts_with(|c: char| c != '0')).collect();
    check(trace, &expected);
    assert_eq!(
        events(&w),
        [
            r#"0.280 {"device":"rp-2000","event":"device_in_service","seq":1,"type":"event"}"#,
            r#"1.040 {"call":"c1","device":"rp-2000","event":"call_offered","from":"1001","seq":2,"to":"2000","type":"event"}"#,
            r#"11.040 {"call":"c1","device":"rp-2000","event":"call_ended","reason":"no_answer","seq":3,"type":"event"}"#,
        ]
    );
    // The forwarded call still comes from 1001.
    assert!(w.find("box", "1003", "INVITE")[0].text.contains("From: <sip:1001@127.0.0.1:5060>;tag="));
    assert_eq!(w.status()["calls_completed"], 1);
    w.assert_nothing_leaked();
}

#[test]
fn application_failure_sends_its_offered_call_to_cfof_at_once() {
    let mut w = world();
    w.dial("1001", "2000");
    w.drive_until(secs(3.0));
    // The connection drops without logout: a failure.
    w.app_crash("ivr");
    w.drive_until(secs(4.0));
    w.answer("1004");
    w.drive_until(secs(5.0));
    w.hangup("1001");
    w.settle();
    let expected: Vec<&str> = OFFER
        .iter()
        .copied()
        .chain([
            "3.000 ivr>box cti closed",
            // forward.on_failure = 1004 (not no_answer's 1003), when the box sees the close.
            "3.010 box>1004 INVITE",
            "3.020 1004>box 180 INVITE",
            "3.030 box>1001 180 INVITE",
            "4.000 1004>box 200 INVITE",
            "4.010 box>1004 ACK",
            "4.010 box>1001 200 INVITE",
            "4.020 1001>box ACK",
            "5.000 1001>box BYE",
            "5.010 box>1001 200 BYE",
            "5.010 box>1004 BYE",
            "5.020 1004>box 200 BYE",
        ])
        .collect();
    let trace: Vec<String> = w.trace(&["1001", "1003", "1004", "ivr"]).into_iter().filter(|l| l.starts_with(|c: char| c != '0')).collect();
    check(trace, &expected);
    // Nothing more went to the application after its offer (it is gone), and no
    // timeout fired later for the call it had been offered.
    assert_eq!(events(&w).len(), 2);
    assert!(w.find("box", "1003", "INVITE").is_empty());
    assert_eq!(w.status()["cti_apps"], 0);
    w.assert_nothing_leaked();
}

#[test]
fn rtp_timeout_on_box_media_of_an_answered_route_point_call_ends_it_and_tells_the_application() {
    use ctibox::core::{MediaCmd, MediaEvent, MediaSource, StreamId};
    let mut w = world();
    w.dial("1001", "2000");
    w.drive_until(secs(2.0));
    w.app_send("ivr", serde_json::json!({"type":"answer","call":"c1","media":"box"}));
    w.drive_until(secs(3.0));
    // The caller sends its media to the box's port.
    let sdp = w.phone("1001").dialog.as_ref().expect("connected").remote_sdp.clone();
    assert!(sdp.contains("c=IN IP4 127.0.0.1\r\n") && sdp.contains("m=audio 16384 "), "{sdp}");
    w.media_event_at(secs(20.0), MediaEvent::RtpTimeout { stream: StreamId(1) });
    w.settle();
    let expected: Vec<&str> = OFFER
        .iter()
        .copied()
        .chain([
            "2.000 ivr>box cti answer",
            "2.010 box>ivr cti reply ok",
            "2.010 box>1001 200 INVITE",
            "2.010 box>ivr cti event call_answered",
            "2.010 box>ivr cti event media_started",
            "2.020 1001>box ACK",
            "2.030 box>ivr cti event call_connected",
            // No RTP from the caller: the box hangs up at the timeout, and says why.
            "20.000 media>box media RtpTimeout { stream: StreamId(1) }",
            "20.000 box>1001 BYE",
            "20.000 box>ivr cti event media_stopped",
            "20.000 box>ivr cti event call_ended",
            "20.010 1001>box 200 BYE",
        ])
        .collect();
    let trace: Vec<String> = w.trace(&["1001", "ivr", "media"]).into_iter().filter(|l| l.starts_with(|c: char| c != '0')).collect();
    check(trace, &expected);
    let ended = w.app("ivr").last_event("call_ended").unwrap();
    assert_eq!((&ended["call"], &ended["reason"]), (&serde_json::json!("c1"), &serde_json::json!("failed")));
    let codec = ctibox::config::Codec::Pcmu;
    assert_eq!(
        w.media,
        [
            (secs(2.01), MediaCmd::Play { stream: StreamId(1), local_port: 16384, remote: "127.0.0.11:4000".parse().unwrap(), codec, source: MediaSource::Silence }),
            (secs(2.01), MediaCmd::CollectDigits { stream: StreamId(1), dtmf_pt: None }),
            (secs(20.0), MediaCmd::Stop { stream: StreamId(1) }),
        ]
    );
    assert_eq!(w.phone("1001").history.last(), Some(&(secs(20.01), "ended by the box".to_string())));
    let st = w.status();
    assert_eq!(st["call_media"]["calls_ended_rtp_timeout"], 1);
    w.assert_nothing_leaked();
}
