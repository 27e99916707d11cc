//! A call always ends, and load is refused early: on the virtual clock, the real
//! engine between simulated phones. A BYE the called phone answers 503, loses or
//! never answers still ends the call on both legs; an ACK for the 407 that carries a
//! new branch is absorbed and the 407 is not sent again; past `max_calls` or
//! `max_transactions` new INVITEs get 503 with Retry-After before any challenge,
//! while BYEs and CANCELs of calls in progress are served; a call whose party lost it
//! is found by the idle probe and ended, and a call whose parties answer it stays up.
mod world;

use std::time::Duration;
use world::*;

/// Phones 1001..=1006 registered, `sip` added to `[sip]`; the clock at 1.000 s.
fn world(sip: &str) -> World {
    let toml = config(&[], "").replacen("realm = \"ctibox\"\n", &format!("realm = \"ctibox\"\n{sip}"), 1);
    let mut w = World::new(&toml, 1);
    w.register_all();
    w.drive_until(secs(1.0));
    w
}

/// 1001 calls 1002, which answers at 2.000; the call is up at 2.020.
fn answered_call(w: &mut World) {
    w.dial("1001", "1002");
    w.drive_until(secs(2.0));
    w.answer("1002");
    w.drive_until(secs(3.0));
    assert_eq!(w.status()["calls"], 1);
}

fn sip_only(trace: Vec<String>) -> Vec<String> {
    trace.into_iter().filter(|l| !l.contains("REGISTER")).collect()
}

#[test]
fn a_bye_the_called_phone_answers_503_still_ends_the_call_on_both_legs() {
    let mut w = world("");
    answered_call(&mut w);
    w.phone_mut("1002").bye_answer = Some(503);
    w.hangup("1001");
    w.drive_until(secs(3.1));
    let t = sip_only(w.sip_trace(&["1001", "1002"]));
    let tail: Vec<&str> = t.iter().map(String::as_str).skip_while(|l| !l.contains("1001>box BYE")).collect();
    assert_eq!(tail, ["3.000 1001>box BYE", "3.010 box>1001 200 BYE", "3.010 box>1002 BYE", "3.020 1002>box 503 BYE"]);
    assert_eq!(w.status()["calls"], 0, "the call ended when the box sent its BYE (RFC 3261 §15.1.1)");
    // The refusing phone still thinks it has a call; its own BYE now finds no dialog.
    w.hangup("1002");
    w.drive_until(secs(4.0));
    assert_eq!(w.find("box", "1002", "481 BYE").len(), 1);
    w.settle();
    w.assert_nothing_leaked();
}

#[test]
fn a_bye_lost_on_the_way_ends_the_call_and_its_transaction_times_out_at_64_t1() {
    let mut w = world("");
    answered_call(&mut w);
    w.set_link("1002", Link { loss: 1.0, ..Link::default() });
    w.hangup("1001");
    w.drive_until(secs(3.1));
    assert_eq!(w.status()["calls"], 0, "ended at once on the box");
    assert_eq!(w.find("box", "1001", "200 BYE").len(), 1, "the caller is answered");
    w.drive_until(secs(3.0 + 33.0));
    let byes = w.find("box", "1002", "BYE");
    assert!(byes.len() >= 10 && byes.iter().all(|e| e.lost), "Timer E retransmissions, all lost: {}", byes.len());
    let last = byes.last().unwrap().sent;
    assert!(last < secs(3.01 + 32.0), "none after Timer F: last at {}", fmt_t(last));
    assert_eq!(w.status()["transaction_layer"]["live"], 0);
    w.set_link("1002", Link::default());
    // 1002 never heard the BYE: its own BYE later finds no dialog, and nothing is left.
    w.hangup("1002");
    w.settle();
    assert_eq!(w.find("box", "1002", "481 BYE").len(), 1);
    w.assert_nothing_leaked();
}

#[test]
fn a_bye_never_answered_ends_the_call_and_nothing_is_left_after_timer_f() {
    let mut w = world("");
    answered_call(&mut w);
    w.phone_mut("1002").bye_answer = None;
    w.hangup("1001");
    w.drive_until(secs(3.1));
    assert_eq!(w.status()["calls"], 0);
    w.settle();
    assert!(w.find("1002", "box", "200 BYE").is_empty(), "it never answered");
    assert!(w.find("box", "1002", "BYE").len() >= 10, "the box retransmitted until Timer F");
    w.assert_nothing_leaked();
}

#[test]
fn an_ack_for_the_407_with_a_new_branch_is_absorbed_and_the_407_is_never_sent_again() {
    let mut w = world("");
    w.phone_mut("1001").ack_new_branch = true;
    w.dial("1001", "1002");
    w.drive_until(secs(2.0));
    assert_eq!(w.find("box", "1001", "407 INVITE").len(), 1, "one 407, no Timer G retransmission");
    let acks = w.find("1001", "box", "ACK");
    let inv = &w.find("1001", "box", "INVITE")[0].text;
    let branch = |t: &str| t.lines().find(|l| l.starts_with("Via:")).and_then(|l| l.split("branch=").nth(1)).map(|b| b.split(';').next().unwrap().to_string());
    assert_ne!(branch(&acks[0].text), branch(inv), "the ACK's branch is new");
    let st = w.status();
    assert_eq!(st["transaction_layer"]["stats"]["acks_matched_by_dialog"], 1);
    w.answer("1002");
    w.drive_until(secs(3.0));
    w.hangup("1001");
    w.settle();
    assert_eq!(w.find("box", "1001", "407 INVITE").len(), 1);
    assert_eq!(w.status()["transaction_layer"]["stats"]["ack_timeouts"], 0);
    w.assert_nothing_leaked();
}

#[test]
fn past_max_calls_a_new_invite_gets_503_with_retry_after_before_any_challenge_and_byes_are_served() {
    let mut w = world("max_calls = 1\n");
    answered_call(&mut w);
    let kept = w.status()["transactions"].clone();
    w.dial("1003", "1004");
    w.drive_until(secs(3.5));
    let t = sip_only(w.sip_trace(&["1003"]));
    assert_eq!(t, ["3.000 1003>box INVITE", "3.010 box>1003 503 INVITE", "3.020 1003>box ACK"], "refused before the 407");
    let refusal = &w.find("box", "1003", "503 INVITE")[0].text;
    assert!(refusal.contains("Retry-After: 5"), "{refusal}");
    assert_eq!(w.status()["sip"]["refused_overload"], 1);
    assert_eq!(w.status()["transactions"], kept, "the refusal kept no state");
    // The call in progress ends as usual, and then there is room again.
    w.hangup("1001");
    w.drive_until(secs(4.0));
    assert_eq!(w.find("box", "1001", "200 BYE").len(), 1);
    assert_eq!(w.status()["calls"], 0);
    w.dial("1003", "1004");
    w.drive_until(secs(5.0));
    w.answer("1004");
    w.drive_until(secs(6.0));
    assert!(w.phone("1003").history.iter().any(|(_, h)| h == "answered"), "{:?}", w.phone("1003").history);
    w.hangup("1003");
    w.settle();
    w.assert_nothing_leaked();
}

#[test]
fn past_max_transactions_new_invites_are_refused_while_bye_and_cancel_go_through() {
    let mut w = world("max_transactions = 4\n");
    // An answered call holds no live transaction; two ringing calls hold four (each
    // the caller's INVITE and the box's INVITE to the called phone): the limit.
    w.dial("1003", "1004");
    w.drive_until(secs(1.5));
    w.answer("1004");
    w.drive_until(secs(2.0));
    w.dial("1001", "1002");
    w.dial("1005", "1006");
    w.drive_until(secs(2.5));
    assert_eq!(w.status()["transaction_layer"]["live"], 4);
    // The answered call ends: its BYE (and the box's BYE onward) are admitted.
    w.hangup("1003");
    w.drive_until(secs(3.0));
    assert_eq!(w.find("box", "1003", "200 BYE").len(), 1);
    assert_eq!(w.find("1004", "box", "200 BYE").len(), 1);
    // A new call is refused at once, with the time to wait.
    w.dial("1004", "1003");
    w.drive_until(secs(3.5));
    let t = sip_only(w.sip_trace(&["1004"]));
    assert_eq!(&t[t.len() - 3..], ["3.000 1004>box INVITE", "3.010 box>1004 503 INVITE", "3.020 1004>box ACK"]);
    assert!(w.find("box", "1004", "503 INVITE")[0].text.contains("Retry-After: 5"));
    assert_eq!(w.status()["transaction_layer"]["stats"]["refused_overload"], 1);
    // The ringing calls can still be cancelled.
    w.cancel("1001");
    w.cancel("1005");
    w.drive_until(secs(4.0));
    assert_eq!(w.find("box", "1001", "487 INVITE").len(), 1);
    assert_eq!(w.find("box", "1005", "487 INVITE").len(), 1);
    w.settle();
    w.assert_nothing_leaked();
}

#[test]
fn a_call_whose_caller_lost_it_is_found_by_the_idle_probe_and_ended() {
    let mut w = world("call_idle_s = 60\n");
    answered_call(&mut w);
    // The caller hangs up but its BYE never reaches the box.
    w.set_link("1001", Link { loss: 1.0, ..Link::default() });
    w.hangup("1001");
    w.drive_until(secs(3.0 + 33.0));
    w.set_link("1001", Link::default());
    assert_eq!(w.status()["calls"], 1, "the box still has the call");
    // 60 s after the last request (the ACK at 2.020) the box asks both parties.
    w.drive_until(secs(70.0));
    let probes = w.find("box", "1001", "OPTIONS");
    assert_eq!(probes.len(), 1);
    assert!(probes[0].sent >= secs(62.02) && probes[0].sent < secs(63.1), "probed at {}", fmt_t(probes[0].sent));
    assert_eq!(w.find("1001", "box", "481 OPTIONS").len(), 1, "the caller has no such dialog");
    assert_eq!(w.find("box", "1002", "OPTIONS").len(), 1);
    assert_eq!(w.status()["calls"], 0, "ended");
    assert_eq!(w.status()["call_media"]["calls_ended_idle"], 1);
    assert_eq!(w.find("box", "1002", "BYE").len(), 1, "the called party is hung up");
    assert!(w.find("box", "1001", "BYE").is_empty(), "the lost party gets no BYE");
    w.idle_ends_expected = 1;
    w.settle();
    w.assert_nothing_leaked();
}

#[test]
fn a_call_whose_called_party_never_answers_the_probe_ends_after_its_transaction_times_out() {
    let mut w = world("call_idle_s = 30\n");
    answered_call(&mut w);
    w.set_link("1002", Link { loss: 1.0, ..Link::default() });
    w.drive_until(secs(33.0));
    assert_eq!(w.find("box", "1002", "OPTIONS").len(), 1);
    assert_eq!(w.status()["calls"], 1, "still up while the probe runs");
    w.drive_until(secs(33.0 + 32.5));
    assert_eq!(w.status()["calls"], 0, "ended at Timer F of the probe");
    assert_eq!(w.find("box", "1001", "BYE").len(), 1, "the caller is hung up");
    w.set_link("1002", Link::default());
    w.idle_ends_expected = 1;
    // 1002 still thinks it is in the call: its BYE finds none.
    w.hangup("1002");
    w.settle();
    w.assert_nothing_leaked();
}

#[test]
fn an_idle_call_whose_parties_answer_the_probe_stays_up_and_is_asked_again_later() {
    let mut w = world("call_idle_s = 30\n");
    answered_call(&mut w);
    w.drive_until(secs(100.0));
    // Probes at about 32, 64 and 96 s (each 30 s after the last answers came).
    let probes = w.find("box", "1001", "OPTIONS");
    assert_eq!(probes.len(), 3, "{:?}", probes.iter().map(|e| fmt_t(e.sent)).collect::<Vec<_>>());
    assert_eq!(w.find("1002", "box", "200 OPTIONS").len(), 3);
    assert_eq!(w.status()["calls"], 1, "a long call is not cut");
    assert_eq!(w.status()["call_media"]["calls_ended_idle"], 0);
    // A request from a party restarts the clock: no probe 30 s after a re-INVITE.
    w.reinvite("1001", "sendonly");
    let at = w.now;
    w.drive_until(at + Duration::from_secs(25));
    assert_eq!(w.find("box", "1001", "OPTIONS").len(), 3);
    w.hangup("1001");
    w.settle();
    w.assert_nothing_leaked();
}

#[test]
fn while_the_shell_reports_the_engine_loop_saturated_new_calls_get_503_and_calls_in_progress_end() {
    let mut w = world("");
    answered_call(&mut w);
    let t = w.engine_time(w.now);
    w.engine.handle_input(t, ctibox::core::Input::Load { busy: true });
    w.dial("1003", "1004");
    w.drive_until(secs(3.5));
    let refusal = w.find("box", "1003", "503 INVITE");
    assert_eq!(refusal.len(), 1, "refused before the 407");
    assert!(refusal[0].text.contains("Service Unavailable (overloaded)") && refusal[0].text.contains("Retry-After: 5"), "{}", refusal[0].text);
    assert!(w.find("box", "1003", "407 INVITE").is_empty());
    // The call in progress still ends.
    w.hangup("1001");
    w.drive_until(secs(4.0));
    assert_eq!(w.find("box", "1001", "200 BYE").len(), 1);
    assert_eq!(w.find("1002", "box", "200 BYE").len(), 1);
    // Once the loop has room, calls are taken again.
    let t = w.engine_time(w.now);
    w.engine.handle_input(t, ctibox::core::Input::Load { busy: false });
    w.dial("1003", "1004");
    w.drive_until(secs(5.0));
    w.answer("1004");
    w.drive_until(secs(6.0));
    assert!(w.phone("1003").history.iter().any(|(_, h)| h == "answered"));
    w.hangup("1003");
    w.settle();
    w.assert_nothing_leaked();
}
