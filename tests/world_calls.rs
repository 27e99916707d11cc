//! Call control on the virtual clock: the real engine between simulated phones (10 ms
//! each way), every message and its time asserted. Calls start at 1.000 s, after
//! every phone has registered; `settle` then runs until every transaction has ended,
//! and nothing may be left in the engine.
mod world;

use std::time::Duration;
use world::*;

/// Phones 1001..=1006 registered; the clock at 1.000 s.
fn world(forwards: &[(&str, &str)]) -> World {
    let mut w = World::new(&config(forwards, ""), 1);
    w.register_all();
    w.drive_until(secs(1.0));
    w
}

fn check(actual: Vec<String>, expected: &[&str]) {
    let actual: Vec<String> = actual.into_iter().filter(|l| !l.contains("REGISTER")).collect();
    if actual != expected {
        panic!("trace differs\n--- actual:\n{}\n--- expected:\n{}", actual.join("\n"), expected.join("\n"));
    }
}

/// 1001 dials 1002: the 407 challenge, the authenticated INVITE, 100 and the INVITE
/// toward the called phone, which rings (180 relayed) at 1.050.
const DIAL: [&str; 8] = [
    "1.000 1001>box INVITE",
    "1.010 box>1001 407 INVITE",
    "1.020 1001>box ACK",
    "1.020 1001>box INVITE",
    "1.030 box>1001 100 INVITE",
    "1.030 box>1002 INVITE",
    "1.040 1002>box 180 INVITE",
    "1.050 box>1001 180 INVITE",
];

fn with(head: &[&'static str], tail: &[&'static str]) -> Vec<&'static str> {
    head.iter().chain(tail).copied().collect()
}

#[test]
fn basic_call_registers_with_digest_is_challenged_407_rings_answers_and_hangs_up() {
    let mut w = World::new(&config(&[], ""), 1);
    w.register_all();
    // REGISTER: 401 with a challenge, then 200 for the digest answer.
    assert_eq!(
        w.trace(&["1001"]),
        ["0.000 1001>box REGISTER", "0.010 box>1001 401 REGISTER", "0.020 1001>box REGISTER", "0.030 box>1001 200 REGISTER"]
    );
    assert!(w.log[1].text.contains("WWW-Authenticate: Digest realm=\"ctibox\""), "{}", w.log[1].text);
    assert!(w.log[2].text.contains("Authorization: Digest username=\"1001\""));
    assert!(w.phones.iter().all(|p| p.registered));
    assert_eq!(w.status()["registrations"], 6);
    w.drive_until(secs(1.0));
    w.dial("1001", "1002");
    w.drive_until(secs(2.0));
    w.answer("1002");
    w.drive_until(secs(3.0));
    w.hangup("1001");
    w.settle();
    check(
        w.sip_trace(&["1001", "1002"]),
        &with(
            &DIAL,
            &[
                "2.000 1002>box 200 INVITE",
                "2.010 box>1002 ACK",
                "2.010 box>1001 200 INVITE",
                "2.020 1001>box ACK",
                "3.000 1001>box BYE",
                "3.010 box>1001 200 BYE",
                "3.010 box>1002 BYE",
                "3.020 1002>box 200 BYE",
            ],
        ),
    );
    let challenge = &w.find("box", "1001", "407 INVITE")[0].text;
    assert!(challenge.contains("Proxy-Authenticate: Digest realm=\"ctibox\""), "{challenge}");
    assert!(w.find("1001", "box", "INVITE")[1].text.contains("Proxy-Authorization: Digest username=\"1001\""));
    // The called phone gets the caller's SDP, the caller the called phone's.
    assert!(w.find("box", "1002", "INVITE")[0].text.contains("c=IN IP4 127.0.0.11"));
    assert!(w.find("box", "1001", "200 INVITE")[0].text.contains("c=IN IP4 127.0.0.12"));
    assert_eq!(w.phone("1001").history, [(secs(2.02), "answered".to_string()), (secs(3.0), "hung up".to_string())]);
    let st = w.status();
    assert_eq!((st["calls"].as_u64(), st["calls_completed"].as_u64(), st["sip"]["calls_started"].as_u64()), (Some(0), Some(1), Some(1)));
    w.assert_nothing_leaked();
}

#[test]
fn busy_486_from_the_called_phone_is_acked_and_relayed_to_the_caller() {
    let mut w = world(&[]);
    w.phone_mut("1002").answer = Answer::Busy;
    w.dial("1001", "1002");
    w.settle();
    check(
        w.sip_trace(&["1001", "1002"]),
        &[
            "1.000 1001>box INVITE",
            "1.010 box>1001 407 INVITE",
            "1.020 1001>box ACK",
            "1.020 1001>box INVITE",
            "1.030 box>1001 100 INVITE",
            "1.030 box>1002 INVITE",
            "1.040 1002>box 486 INVITE",
            "1.050 box>1002 ACK",
            "1.050 box>1001 486 INVITE",
            "1.060 1001>box ACK",
        ],
    );
    assert_eq!(w.phone("1001").history, [(secs(1.06), "failed 486".to_string())]);
    assert_eq!(w.status()["calls_completed"], 0);
    w.assert_nothing_leaked();
}

#[test]
fn cancel_before_the_first_provisional_waits_for_it_then_cancels_the_called_leg() {
    let mut w = world(&[]);
    w.phone_mut("1002").answer = Answer::Silent;
    w.dial("1001", "1002");
    w.drive_until(secs(1.2));
    w.cancel("1001");
    w.drive_until(secs(2.0));
    // Nothing was sent toward 1002 but the INVITE and its Timer A retransmission.
    w.ring("1002");
    w.settle();
    check(
        w.sip_trace(&["1001", "1002"]),
        &[
            "1.000 1001>box INVITE",
            "1.010 box>1001 407 INVITE",
            "1.020 1001>box ACK",
            "1.020 1001>box INVITE",
            "1.030 box>1001 100 INVITE",
            "1.030 box>1002 INVITE",
            "1.200 1001>box CANCEL",
            "1.210 box>1001 200 CANCEL",
            "1.210 box>1001 487 INVITE",
            "1.220 1001>box ACK",
            "1.530 box>1002 INVITE",
            // §9.1: CANCEL only once the called leg has sent a provisional response.
            "2.000 1002>box 180 INVITE",
            "2.010 box>1002 CANCEL",
            "2.020 1002>box 200 CANCEL",
            "2.020 1002>box 487 INVITE",
            "2.030 box>1002 ACK",
        ],
    );
    // The call waited for the called leg's INVITE to end, and is gone with it.
    w.assert_nothing_leaked();
}

#[test]
fn cancel_after_ringing_is_answered_487_and_cancels_the_called_leg_at_once() {
    let mut w = world(&[]);
    w.dial("1001", "1002");
    w.drive_until(secs(2.0));
    w.cancel("1001");
    w.settle();
    check(
        w.sip_trace(&["1001", "1002"]),
        &with(
            &DIAL,
            &[
                "2.000 1001>box CANCEL",
                "2.010 box>1001 200 CANCEL",
                "2.010 box>1001 487 INVITE",
                "2.010 box>1002 CANCEL",
                "2.020 1001>box ACK",
                "2.020 1002>box 200 CANCEL",
                "2.020 1002>box 487 INVITE",
                "2.030 box>1002 ACK",
            ],
        ),
    );
    assert_eq!(w.phone("1002").history.last().unwrap(), &(secs(2.02), "cancelled".to_string()));
    w.assert_nothing_leaked();
}

#[test]
fn late_2xx_crossing_the_cancel_is_acked_and_hung_up_by_the_box() {
    let mut w = world(&[]);
    w.dial("1001", "1002");
    w.drive_until(secs(2.0));
    // Both at 2.000: the caller's CANCEL reaches the box first, then 1002's answer.
    w.cancel("1001");
    w.answer("1002");
    w.settle();
    check(
        w.sip_trace(&["1001", "1002"]),
        &with(
            &DIAL,
            &[
                "2.000 1001>box CANCEL",
                "2.000 1002>box 200 INVITE",
                "2.010 box>1001 200 CANCEL",
                "2.010 box>1001 487 INVITE",
                "2.010 box>1002 CANCEL",
                "2.010 box>1002 ACK",
                "2.010 box>1002 BYE",
                "2.020 1001>box ACK",
                // The INVITE was answered already: the CANCEL has no effect (§9.2).
                "2.020 1002>box 200 CANCEL",
                "2.020 1002>box 200 BYE",
            ],
        ),
    );
    let ack = &w.find("box", "1002", "ACK")[0].text;
    let answer = &w.find("1002", "box", "200 INVITE")[0].text;
    let to_tag = answer.lines().find(|l| l.starts_with("To:")).unwrap();
    assert!(ack.contains(to_tag), "the ACK is in the answered dialog:\n{ack}");
    assert!(ack.contains("CSeq: 1 ACK") && w.find("box", "1002", "BYE")[0].text.contains("CSeq: 2 BYE"));
    assert_eq!(w.phone("1001").history.last().unwrap(), &(secs(2.02), "failed 487".to_string()));
    assert_eq!(w.phone("1002").history.last().unwrap(), &(secs(2.02), "ended by the box".to_string()));
    w.assert_nothing_leaked();
}

#[test]
fn missing_ack_2xx_retransmitted_t1_doubling_capped_at_t2_then_bye_at_64_t1() {
    let mut w = world(&[]);
    w.phone_mut("1001").sends_ack = false;
    w.dial("1001", "1002");
    w.drive_until(secs(2.0));
    w.answer("1002");
    w.settle();
    check(
        w.sip_trace(&["1001", "1002"]),
        &with(
            &DIAL,
            &[
                "2.000 1002>box 200 INVITE",
                "2.010 box>1002 ACK",
                "2.010 box>1001 200 INVITE",
                // +0.5, +1, +2, then every T2 = 4 s.
                "2.510 box>1001 200 INVITE",
                "3.510 box>1001 200 INVITE",
                "5.510 box>1001 200 INVITE",
                "9.510 box>1001 200 INVITE",
                "13.510 box>1001 200 INVITE",
                "17.510 box>1001 200 INVITE",
                "21.510 box>1001 200 INVITE",
                "25.510 box>1001 200 INVITE",
                "29.510 box>1001 200 INVITE",
                "33.510 box>1001 200 INVITE",
                // 64*T1 = 32 s after the first 2xx: both parties get a BYE.
                "34.010 box>1001 BYE",
                "34.010 box>1002 BYE",
                "34.020 1001>box 200 BYE",
                "34.020 1002>box 200 BYE",
            ],
        ),
    );
    w.assert_nothing_leaked();
}

#[test]
fn a_lost_ack_to_the_called_phone_is_sent_again_the_same_when_its_2xx_is_retransmitted() {
    let mut w = world(&[]);
    w.dial("1001", "1002");
    w.drive_until(secs(2.0));
    w.answer("1002");
    // The 200 reaches the box at 2.010; its ACK, sent then, is lost.
    w.drive_until(secs(2.005));
    w.set_link("1002", Link { loss: 1.0, ..Link::default() });
    w.drive_until(secs(2.015));
    w.set_link("1002", Link::default());
    w.drive_until(secs(3.0));
    check(
        w.sip_trace(&["1002"]),
        &[
            "1.030 box>1002 INVITE",
            "1.040 1002>box 180 INVITE",
            "2.000 1002>box 200 INVITE",
            "2.010 box>1002 ACK (lost)",
            // The phone resends its 2xx after T1; the box ACKs it again.
            "2.500 1002>box 200 INVITE",
            "2.510 box>1002 ACK",
        ],
    );
    let acks = w.find("box", "1002", "ACK");
    assert_eq!(acks[0].text, acks[1].text, "the same ACK: branch, CSeq and all");
    assert!(acks[1].text.contains("CSeq: 1 ACK"), "{}", acks[1].text);
    w.hangup("1001");
    w.settle();
    w.assert_nothing_leaked();
}

#[test]
fn reinvite_glare_both_get_491_and_each_retry_succeeds() {
    let mut w = world(&[]);
    // §14.1: the Call-ID owner (1001 toward the box) waits 2.1-4 s, the other 0-2 s.
    w.phone_mut("1001").glare_retry = Duration::from_millis(2500);
    w.phone_mut("1002").glare_retry = Duration::from_millis(1000);
    w.dial("1001", "1002");
    w.drive_until(secs(2.0));
    w.answer("1002");
    w.drive_until(secs(3.0));
    w.reinvite("1001", "sendrecv");
    w.reinvite("1002", "sendrecv");
    w.drive_until(secs(10.0));
    w.hangup("1002");
    w.settle();
    check(
        w.sip_trace(&["1001", "1002"]),
        &with(
            &DIAL,
            &[
                "2.000 1002>box 200 INVITE",
                "2.010 box>1002 ACK",
                "2.010 box>1001 200 INVITE",
                "2.020 1001>box ACK",
                "3.000 1001>box INVITE",
                "3.000 1002>box INVITE",
                // 1001's reaches the box first and is relayed; 1002's meets it: 491.
                "3.010 box>1001 100 INVITE",
                "3.010 box>1002 INVITE",
                "3.010 box>1002 491 INVITE",
                // 1002 has its own re-INVITE out: 491 too (§14.2), relayed to 1001.
                "3.020 1002>box 491 INVITE",
                "3.020 1002>box ACK",
                "3.030 box>1002 ACK",
                "3.030 box>1001 491 INVITE",
                "3.040 1001>box ACK",
                "4.020 1002>box INVITE",
                "4.030 box>1002 100 INVITE",
                "4.030 box>1001 INVITE",
                "4.040 1001>box 200 INVITE",
                "4.050 box>1001 ACK",
                "4.050 box>1002 200 INVITE",
                "4.060 1002>box ACK",
                "5.540 1001>box INVITE",
                "5.550 box>1001 100 INVITE",
                "5.550 box>1002 INVITE",
                "5.560 1002>box 200 INVITE",
                "5.570 box>1002 ACK",
                "5.570 box>1001 200 INVITE",
                "5.580 1001>box ACK",
                "10.000 1002>box BYE",
                "10.010 box>1002 200 BYE",
                "10.010 box>1001 BYE",
                "10.020 1001>box 200 BYE",
            ],
        ),
    );
    assert_eq!(w.phone("1001").reinvite_results, [(secs(3.04), 491), (secs(5.58), 200)]);
    assert_eq!(w.phone("1002").reinvite_results, [(secs(3.02), 491), (secs(4.06), 200)]);
    w.assert_nothing_leaked();
}

#[test]
fn forward_all_rings_the_target_and_never_the_forwarding_line() {
    let mut w = world(&[("1002", "all = \"1003\"")]);
    w.dial("1001", "1002");
    w.drive_until(secs(2.0));
    w.answer("1003");
    w.drive_until(secs(3.0));
    w.hangup("1003");
    w.settle();
    assert!(w.trace(&["1002"]).iter().all(|l| l.contains("REGISTER")), "1002 is never rung");
    check(
        w.sip_trace(&["1001", "1003"]),
        &[
            "1.000 1001>box INVITE",
            "1.010 box>1001 407 INVITE",
            "1.020 1001>box ACK",
            "1.020 1001>box INVITE",
            "1.030 box>1001 100 INVITE",
            "1.030 box>1003 INVITE",
            "1.040 1003>box 180 INVITE",
            "1.050 box>1001 180 INVITE",
            "2.000 1003>box 200 INVITE",
            "2.010 box>1003 ACK",
            "2.010 box>1001 200 INVITE",
            "2.020 1001>box ACK",
            "3.000 1003>box BYE",
            "3.010 box>1003 200 BYE",
            "3.010 box>1001 BYE",
            "3.020 1001>box 200 BYE",
        ],
    );
    w.assert_nothing_leaked();
}

#[test]
fn forward_busy_after_486_rings_the_busy_target() {
    let mut w = world(&[("1002", "busy = \"1003\"")]);
    w.phone_mut("1002").answer = Answer::Busy;
    w.dial("1001", "1002");
    w.drive_until(secs(2.0));
    w.answer("1003");
    w.drive_until(secs(3.0));
    w.hangup("1001");
    w.settle();
    check(
        w.sip_trace(&["1001", "1002", "1003"]),
        &[
            "1.000 1001>box INVITE",
            "1.010 box>1001 407 INVITE",
            "1.020 1001>box ACK",
            "1.020 1001>box INVITE",
            "1.030 box>1001 100 INVITE",
            "1.030 box>1002 INVITE",
            "1.040 1002>box 486 INVITE",
            "1.050 box>1002 ACK",
            "1.050 box>1003 INVITE",
            "1.060 1003>box 180 INVITE",
            "1.070 box>1001 180 INVITE",
            "2.000 1003>box 200 INVITE",
            "2.010 box>1003 ACK",
            "2.010 box>1001 200 INVITE",
            "2.020 1001>box ACK",
            "3.000 1001>box BYE",
            "3.010 box>1001 200 BYE",
            "3.010 box>1003 BYE",
            "3.020 1003>box 200 BYE",
        ],
    );
    w.assert_nothing_leaked();
}

#[test]
fn forward_no_answer_cancels_the_line_at_its_timeout_and_rings_the_target() {
    let mut w = world(&[("1002", "no_answer = \"1003\", no_answer_timeout_s = 5")]);
    w.dial("1001", "1002");
    w.drive_until(secs(7.0));
    w.answer("1003");
    w.drive_until(secs(8.0));
    w.hangup("1001");
    w.settle();
    check(
        w.sip_trace(&["1001", "1002", "1003"]),
        &with(
            &DIAL,
            &[
                // 5 s after the INVITE to 1002 went out at 1.030.
                "6.030 box>1002 CANCEL",
                "6.030 box>1003 INVITE",
                "6.040 1002>box 200 CANCEL",
                "6.040 1002>box 487 INVITE",
                "6.040 1003>box 180 INVITE",
                "6.050 box>1002 ACK",
                "6.050 box>1001 180 INVITE",
                "7.000 1003>box 200 INVITE",
                "7.010 box>1003 ACK",
                "7.010 box>1001 200 INVITE",
                "7.020 1001>box ACK",
                "8.000 1001>box BYE",
                "8.010 box>1001 200 BYE",
                "8.010 box>1003 BYE",
                "8.020 1003>box 200 BYE",
            ],
        ),
    );
    w.assert_nothing_leaked();
}

#[test]
fn forward_no_answer_late_2xx_from_the_first_line_is_hung_up_on_that_line() {
    let mut w = world(&[("1002", "no_answer = \"1003\", no_answer_timeout_s = 5")]);
    w.dial("1001", "1002");
    w.drive_until(secs(6.03));
    // 1002 answers as the box's CANCEL leaves for it.
    w.answer("1002");
    w.drive_until(secs(7.0));
    w.answer("1003");
    w.drive_until(secs(8.0));
    w.hangup("1001");
    w.settle();
    check(
        w.sip_trace(&["1002"]),
        &[
            "1.030 box>1002 INVITE",
            "1.040 1002>box 180 INVITE",
            "6.030 box>1002 CANCEL",
            "6.030 1002>box 200 INVITE",
            "6.040 1002>box 200 CANCEL",
            "6.040 box>1002 ACK",
            "6.040 box>1002 BYE",
            "6.050 1002>box 200 BYE",
        ],
    );
    // The BYE went to 1002 in 1002's dialog; 1003's call went on.
    let bye = &w.find("box", "1002", "BYE")[0].text;
    assert!(bye.starts_with("BYE sip:1002@127.0.0.12:5060 "), "{bye}");
    assert_eq!(w.phone("1003").history.iter().map(|h| h.1.as_str()).collect::<Vec<_>>(), ["offered", "answered", "ended by the box"]);
    w.assert_nothing_leaked();
}

#[test]
fn forward_unregistered_rings_the_target_at_once() {
    let mut w = World::new(&config(&[("1002", "unregistered = \"1003\"")], ""), 1);
    for p in ["1001", "1003"] {
        w.register(p);
        w.drive();
    }
    w.drive_until(secs(1.0));
    w.dial("1001", "1002");
    w.drive_until(secs(2.0));
    w.answer("1003");
    w.drive_until(secs(3.0));
    w.hangup("1001");
    w.settle();
    check(
        w.sip_trace(&["1001", "1002", "1003"]),
        &[
            "1.000 1001>box INVITE",
            "1.010 box>1001 407 INVITE",
            "1.020 1001>box ACK",
            "1.020 1001>box INVITE",
            "1.030 box>1001 100 INVITE",
            "1.030 box>1003 INVITE",
            "1.040 1003>box 180 INVITE",
            "1.050 box>1001 180 INVITE",
            "2.000 1003>box 200 INVITE",
            "2.010 box>1003 ACK",
            "2.010 box>1001 200 INVITE",
            "2.020 1001>box ACK",
            "3.000 1001>box BYE",
            "3.010 box>1001 200 BYE",
            "3.010 box>1003 BYE",
            "3.020 1003>box 200 BYE",
        ],
    );
    w.assert_nothing_leaked();
}

/// The caller's whole trace when the box refuses the call with `code` at once.
fn refused(w: &World, code: u16) {
    check(
        w.sip_trace(&["1001", "1002", "1003", "1004"]),
        &[
            "1.000 1001>box INVITE",
            "1.010 box>1001 407 INVITE",
            "1.020 1001>box ACK",
            "1.020 1001>box INVITE",
            "1.030 box>1001 100 INVITE",
            &format!("1.030 box>1001 {code} INVITE"),
            "1.040 1001>box ACK",
        ],
    );
}

#[test]
fn forward_loop_is_refused_482_loop_detected() {
    let mut w = world(&[("1002", "all = \"1003\""), ("1003", "all = \"1002\"")]);
    w.dial("1001", "1002");
    w.settle();
    refused(&w, 482);
    let r = &w.find("box", "1001", "482 INVITE")[0].text;
    assert!(r.starts_with("SIP/2.0 482 Loop Detected (forwarding returns to a line already tried)\r\n"), "{r}");
    w.assert_nothing_leaked();
}

#[test]
fn forward_hop_limit_five_forwards_ring_six_are_refused_482() {
    let chain = |last: &'static str| {
        vec![
            ("1002", "all = \"3001\""),
            ("3001", "all = \"3002\", css = \"all\""),
            ("3002", "all = \"3003\", css = \"all\""),
            ("3003", "all = \"3004\", css = \"all\""),
            ("3004", last),
        ]
    };
    // 1002 -> 3001 -> 3002 -> 3003 -> 3004 -> 1004: five forwards, 1004 rings.
    let mut w = world(&chain("all = \"1004\", css = \"all\""));
    w.dial("1001", "1002");
    w.drive();
    assert_eq!(w.phone("1004").history, [(secs(1.04), "offered".to_string())]);
    w.cancel("1001");
    w.settle();
    w.assert_nothing_leaked();
    // One more (3004 -> 3005 -> 1004): six, refused.
    let mut fwd = chain("all = \"3005\", css = \"all\"");
    fwd.push(("3005", "all = \"1004\", css = \"all\""));
    let mut w = world(&fwd);
    w.dial("1001", "1002");
    w.settle();
    refused(&w, 482);
    let r = &w.find("box", "1001", "482 INVITE")[0].text;
    assert!(r.starts_with("SIP/2.0 482 Loop Detected (too many forwards)\r\n"), "{r}");
    w.assert_nothing_leaked();
}

#[test]
fn music_on_hold_reinvites_the_held_party_to_the_box_and_plays_then_resume_stops_it() {
    let mut w = world(&[]);
    w.dial("1001", "1002");
    w.drive_until(secs(2.0));
    w.answer("1002");
    w.drive_until(secs(3.0));
    w.reinvite("1001", "sendonly");
    w.drive_until(secs(4.0));
    let held = w.phone("1002").dialog.as_ref().unwrap().remote_sdp.clone();
    assert!(held.contains("c=IN IP4 127.0.0.1\r\n") && held.contains("m=audio 16384 RTP/AVP 0\r\n") && held.contains("a=sendonly"), "{held}");
    let holder = w.phone("1001").dialog.as_ref().unwrap().remote_sdp.clone();
    assert!(holder.contains("c=IN IP4 127.0.0.12") && holder.contains("a=recvonly"), "the holder gets the held party's session, recvonly: {holder}");
    assert_eq!(w.engine.sip().b2bua.table_sizes().iter().find(|t| t.0 == "media_ports").unwrap().1, 1);
    w.reinvite("1001", "sendrecv");
    w.drive_until(secs(5.0));
    let resumed = w.phone("1002").dialog.as_ref().unwrap().remote_sdp.clone();
    assert!(resumed.contains("c=IN IP4 127.0.0.11") && resumed.contains("a=sendrecv"), "media phone to phone again: {resumed}");
    w.hangup("1001");
    w.settle();
    check(
        w.sip_trace(&["1001", "1002"]),
        &with(
            &DIAL,
            &[
                "2.000 1002>box 200 INVITE",
                "2.010 box>1002 ACK",
                "2.010 box>1001 200 INVITE",
                "2.020 1001>box ACK",
                "3.000 1001>box INVITE",
                "3.010 box>1001 100 INVITE",
                "3.010 box>1002 INVITE",
                "3.020 1002>box 200 INVITE",
                "3.030 box>1002 ACK",
                "3.030 box>1001 200 INVITE",
                "3.040 1001>box ACK",
                "4.000 1001>box INVITE",
                "4.010 box>1001 100 INVITE",
                "4.010 box>1002 INVITE",
                "4.020 1002>box 200 INVITE",
                "4.030 box>1002 ACK",
                "4.030 box>1001 200 INVITE",
                "4.040 1001>box ACK",
                "5.000 1001>box BYE",
                "5.010 box>1001 200 BYE",
                "5.010 box>1002 BYE",
                "5.020 1002>box 200 BYE",
            ],
        ),
    );
    use ctibox::core::{MediaCmd, MediaSource, StreamId};
    let codec = ctibox::config::Codec::Pcmu;
    assert_eq!(
        w.media,
        [
            (secs(3.03), MediaCmd::Play { stream: StreamId(1), local_port: 16384, remote: "127.0.0.12:4000".parse().unwrap(), codec, source: MediaSource::MusicOnHold }),
            (secs(4.03), MediaCmd::Stop { stream: StreamId(1) }),
        ]
    );
    w.assert_nothing_leaked();
}

#[test]
fn rtp_timeout_on_music_on_hold_ends_the_call_with_bye_to_both_phones_at_that_instant() {
    use ctibox::core::{MediaCmd, MediaEvent, MediaSource, StreamId};
    let mut w = world(&[]);
    w.dial("1001", "1002");
    w.drive_until(secs(2.0));
    w.answer("1002");
    w.drive_until(secs(3.0));
    w.reinvite("1001", "sendonly");
    w.drive_until(secs(4.0));
    assert_eq!(w.status()["call_media"]["calls_ended_rtp_timeout"], 0);
    // The held phone stopped sending to the box's music on hold: at 9.5 s the media
    // path says so.
    w.media_event_at(secs(9.5), MediaEvent::RtpTimeout { stream: StreamId(1) });
    w.settle();
    check(
        w.sip_trace(&["1001", "1002"]),
        &with(
            &DIAL,
            &[
                "2.000 1002>box 200 INVITE",
                "2.010 box>1002 ACK",
                "2.010 box>1001 200 INVITE",
                "2.020 1001>box ACK",
                "3.000 1001>box INVITE",
                "3.010 box>1001 100 INVITE",
                "3.010 box>1002 INVITE",
                "3.020 1002>box 200 INVITE",
                "3.030 box>1002 ACK",
                "3.030 box>1001 200 INVITE",
                "3.040 1001>box ACK",
                // The timeout at 9.500: BYE both ways at once, each answered.
                "9.500 box>1001 BYE",
                "9.500 box>1002 BYE",
                "9.510 1001>box 200 BYE",
                "9.510 1002>box 200 BYE",
            ],
        ),
    );
    assert_eq!(w.trace(&["media"]), ["9.500 media>box media RtpTimeout { stream: StreamId(1) }"]);
    let codec = ctibox::config::Codec::Pcmu;
    assert_eq!(
        w.media,
        [
            (secs(3.03), MediaCmd::Play { stream: StreamId(1), local_port: 16384, remote: "127.0.0.12:4000".parse().unwrap(), codec, source: MediaSource::MusicOnHold }),
            (secs(9.5), MediaCmd::Stop { stream: StreamId(1) }),
        ]
    );
    // Each phone has the BYE 10 ms later, and no call any more.
    for dn in ["1001", "1002"] {
        assert_eq!(w.phone(dn).history.last(), Some(&(secs(9.51), "ended by the box".to_string())), "{dn}");
        assert!(w.phone(dn).dialog.is_none(), "{dn}");
    }
    assert_eq!(w.engine.sip().b2bua.table_sizes().iter().find(|t| t.0 == "media_ports").unwrap().1, 0, "the port is free");
    let st = w.status();
    assert_eq!((st["call_media"]["calls_ended_rtp_timeout"].as_u64(), st["calls_completed"].as_u64()), (Some(1), Some(1)));
    w.assert_nothing_leaked();
}
