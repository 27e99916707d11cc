//! Failover on the virtual clock: a live call's state taken from one engine
//! (`Engine::snapshot`), put into a fresh engine whose clock starts elsewhere
//! (`Engine::restore`), and carried on there end to end; the deltas a call produces;
//! a standby that follows the deltas ends up with the primary's snapshot.
mod world;

use ctibox::core::call::snapshot::CallSnapshot;
use ctibox::core::snapshot::{Delta, EngineSnapshot};
use ctibox::core::{MediaCmd, MediaSource, StreamId, Time};
use std::time::Duration;
use world::*;

/// 1001 calls 1002, which answers at 2.000 (the ACK reaches the box at 2.030).
fn call_up() -> World {
    call_up_on(PAIRED)
}

/// `call_up` on a box with `extra` configuration.
fn call_up_on(extra: &str) -> World {
    let mut w = World::new(&config(&[], extra), 1);
    w.register_all();
    w.drive_until(secs(1.0));
    w.dial("1001", "1002");
    w.drive_until(secs(2.0));
    w.answer("1002");
    w.drive_until(secs(3.0));
    w
}

/// The snapshot, after a postcard round trip (what the peer link will carry).
fn snapshot(w: &World) -> EngineSnapshot {
    let snap = w.engine.snapshot();
    let bytes = postcard::to_allocvec(&snap).expect("encodes");
    let back: EngineSnapshot = postcard::from_bytes(&bytes).expect("decodes");
    assert_eq!(back, snap, "postcard round trip");
    back
}

/// Failover at world time 500 s (engine time 500 s) into an engine whose clock starts
/// at 7 s, 2 s of wall time later.
fn fail_over(w: World) -> World {
    let snap = snapshot(&w);
    assert_eq!(snap.calls.len(), 1, "{snap:?}");
    assert_eq!(snap.bindings.len(), 6);
    w.restore_from(snap, secs(7.0), Duration::from_secs(2), 2)
}

fn cseq_of(text: &str) -> String {
    text.lines().find_map(|l| l.strip_prefix("CSeq: ")).unwrap_or_default().to_string()
}

fn header<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines().find_map(|l| l.strip_prefix(name)).unwrap_or_default()
}


/// A box of a redundant pair: only then does the engine replicate calls.
const PAIRED: &str = "[peer]\naddress = \"127.0.0.1:7400\"\nlisten = \"127.0.0.1:7401\"\npriority = 10\nservice_address = \"192.0.2.10/24\"\ninterface = \"lo\"\nkey = \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\nwitness = \"192.0.2.1\"\n";

/// Alone (no `[peer]`), the box keeps no replication state and reports no call: the
/// same call as `call_up` on a paired box reports `CallUp` and `CallEnded`.
#[test]
fn a_box_without_a_peer_replicates_no_call() {
    for (extra, paired) in [("", false), (PAIRED, true)] {
        let mut w = call_up_on(extra);
        w.drive_until(secs(5.0));
        w.hangup("1001");
        w.settle();
        let calls: Vec<&Delta> =
            w.replicated.iter().map(|(_, d)| d).filter(|d| matches!(d, Delta::CallUp(_) | Delta::CallChanged(_) | Delta::CallEnded { .. })).collect();
        if paired {
            assert!(matches!(calls.first(), Some(Delta::CallUp(_))) && calls.last() == Some(&&Delta::CallEnded { id: 1 }), "{calls:?}");
        } else {
            assert!(calls.is_empty(), "{calls:?}");
        }
        assert_eq!(w.status()["calls_completed"], 1);
        w.assert_nothing_leaked();
    }
}

#[test]
fn established_call_survives_failover_and_the_callers_bye_ends_it_with_the_next_cseq_on_the_called_leg() {
    let mut w = call_up();
    // A re-INVITE (no hold) is relayed: the box's CSeq on 1002's dialog goes to 2.
    w.reinvite("1001", "sendrecv");
    w.drive_until(secs(500.0));
    assert_eq!(cseq_of(&w.find("box", "1002", "INVITE")[1].text), "2 INVITE");
    let invite_b = w.find("box", "1002", "INVITE")[0].text.clone();
    let mut w = fail_over(w);
    assert_eq!(w.now, secs(502.0));
    assert_eq!(w.engine_time(w.now), secs(7.0));
    assert!(w.media.is_empty(), "no media to re-create: {:?}", w.media);
    w.hangup("1001");
    w.settle();
    let after: Vec<String> = w.sip_trace(&["1001", "1002"]).into_iter().filter(|l| l.as_str() >= "502").collect();
    assert_eq!(after, ["502.000 1001>box BYE", "502.010 box>1001 200 BYE", "502.010 box>1002 BYE", "502.020 1002>box 200 BYE"]);
    let bye = &w.find("box", "1002", "BYE")[0].text;
    assert_eq!(cseq_of(bye), "3 BYE", "{bye}");
    // The called leg's dialog: its Call-ID, the box's From tag, the phone's To tag.
    assert_eq!(header(bye, "Call-ID: "), header(&invite_b, "Call-ID: "));
    assert_eq!(header(bye, "From: "), header(&invite_b, "From: "));
    assert!(header(bye, "To: ").contains(";tag="), "{bye}");
    assert_eq!(w.phone("1002").history.last().map(|h| h.1.as_str()), Some("ended by the box"));
    assert!(w.replicated.iter().any(|(_, d)| *d == Delta::CallEnded { id: 1 }), "{:?}", w.replicated);
    assert_eq!(w.status()["calls_completed"], 1, "the call completed on the restored engine");
    w.assert_nothing_leaked();
}

#[test]
fn established_call_survives_failover_and_the_called_partys_bye_ends_it_with_the_next_cseq_on_the_callers_leg() {
    let mut w = call_up();
    // 1002 re-INVITEs: relayed to 1001 with the box's CSeq 1 on the caller's dialog.
    w.reinvite("1002", "sendrecv");
    w.drive_until(secs(500.0));
    assert_eq!(cseq_of(&w.find("box", "1001", "INVITE")[0].text), "1 INVITE");
    let mut w = fail_over(w);
    w.hangup("1002");
    w.settle();
    let after: Vec<String> = w.sip_trace(&["1001", "1002"]).into_iter().filter(|l| l.as_str() >= "502").collect();
    assert_eq!(after, ["502.000 1002>box BYE", "502.010 box>1002 200 BYE", "502.010 box>1001 BYE", "502.020 1001>box 200 BYE"]);
    let bye = &w.find("box", "1001", "BYE")[0].text;
    assert_eq!(cseq_of(bye), "2 BYE", "{bye}");
    assert_eq!(w.phone("1001").history.last().map(|h| h.1.as_str()), Some("ended by the box"));
    w.assert_nothing_leaked();
}

#[test]
fn music_on_hold_is_re_created_on_the_restored_engine_and_resume_stops_it() {
    let mut w = call_up();
    w.reinvite("1001", "sendonly");
    w.drive_until(secs(500.0));
    let codec = ctibox::config::Codec::Pcmu;
    let play = MediaCmd::Play { stream: StreamId(1), local_port: 16384, remote: "127.0.0.12:4000".parse().unwrap(), codec, source: MediaSource::MusicOnHold };
    assert_eq!(w.media, [(secs(3.03), play.clone())]);
    let mut w = fail_over(w);
    // The restored engine's first output: the same stream again, on the same port.
    assert_eq!(w.media, [(secs(502.0), play)]);
    assert_eq!(w.engine.sip().b2bua.table_sizes().iter().find(|t| t.0 == "media_ports").unwrap().1, 1);
    w.reinvite("1001", "sendrecv");
    w.drive_until(secs(503.0));
    let resumed = w.phone("1002").dialog.as_ref().unwrap().remote_sdp.clone();
    assert!(resumed.contains("c=IN IP4 127.0.0.11") && resumed.contains("a=sendrecv"), "media phone to phone again: {resumed}");
    assert_eq!(w.media[1], (secs(502.03), MediaCmd::Stop { stream: StreamId(1) }));
    // The resume went to 1002 with the CSeq after the box's music-on-hold re-INVITE.
    assert_eq!(cseq_of(&w.find("box", "1002", "INVITE").last().unwrap().text), "3 INVITE");
    w.hangup("1001");
    w.settle();
    assert_eq!(w.media.len(), 2, "{:?}", w.media);
    w.assert_nothing_leaked();
}

#[test]
fn registration_expiries_are_rebased_onto_the_restored_clock_and_fire_at_the_same_wall_time() {
    let mut w = World::new(&config(&[], PAIRED), 1);
    w.register_all();
    w.drive_until(secs(500.0));
    let expiry = w.engine.sip().registrar.contacts("phone-1003")[0].expires_at;
    assert!(expiry > secs(3600.0) && expiry < secs(3601.0), "{expiry}");
    let snap = snapshot(&w);
    let mut w = w.restore_from(snap, secs(7.0), Duration::from_secs(2), 2);
    // 500 s on the old clock is 7 s on the new one, 2 s later: 495 s apart.
    let rebased = w.engine.sip().registrar.contacts("phone-1003")[0].expires_at;
    assert_eq!(rebased, Time(expiry.0 - 495_000_000));
    assert_eq!(w.engine.sip().registrar.contacts("phone-1003")[0].conn, None);
    w.drive_until(Time(expiry.0 - 1000));
    assert_eq!(w.engine.sip().registrar.contacts("phone-1003").len(), 1, "not before its time");
    w.drive_until(expiry);
    assert!(w.engine.sip().registrar.contacts("phone-1003").is_empty(), "expired at the same wall-clock moment");
    let removed: Vec<Time> = w
        .replicated
        .iter()
        .filter(|(_, d)| matches!(d, Delta::BindingRemoved { device, .. } if device == "phone-1003"))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(removed, [expiry]);
}

#[test]
fn a_basic_call_replicates_call_up_at_the_ack_and_call_ended_at_the_bye_and_nothing_else() {
    let mut w = World::new(&config(&[], PAIRED), 1);
    w.register_all();
    // Each registration is one fact.
    let regs: Vec<&str> = w
        .replicated
        .iter()
        .map(|(_, d)| match d {
            Delta::Binding { device, .. } => device.as_str(),
            other => panic!("only bindings while registering: {other:?}"),
        })
        .collect();
    assert_eq!(regs, ["phone-1001", "phone-1002", "phone-1003", "phone-1004", "phone-1005", "phone-1006"]);
    let from = w.replicated.len();
    w.drive_until(secs(1.0));
    w.dial("1001", "1002");
    w.drive_until(secs(2.0));
    w.answer("1002");
    w.drive_until(secs(3.0));
    w.hangup("1001");
    w.settle();
    let deltas = &w.replicated[from..];
    assert_eq!(deltas.len(), 2, "{deltas:?}");
    let (t, Delta::CallUp(c)) = &deltas[0] else { panic!("{deltas:?}") };
    assert_eq!(*t, secs(2.03), "established when the caller's ACK (sent at 2.020) arrives");
    let CallSnapshot { id, a, b, caller_dn, dialled, moh, .. } = &**c;
    let b = b.as_ref().expect("the called leg");
    assert_eq!((*id, caller_dn.as_str(), dialled.as_str(), moh), (1, "1001", "1002", &None));
    assert_eq!((a.local_cseq, a.remote_cseq, b.local_cseq, b.remote_cseq), (0, 2, 1, 0));
    assert!(a.confirmed && b.confirmed && b.remote_tag.is_some());
    assert_eq!(deltas[1], (secs(3.01), Delta::CallEnded { id: 1 }), "ended when the BYE arrives");
}

/// A fresh engine of the same configuration, to follow `w`'s engine as its standby.
fn standby_of(w: &World) -> ctibox::core::Engine {
    let cfg = w.engine.config().clone();
    ctibox::core::Engine::new(cfg, ctibox::core::rng::EngineRng::seed_from_u64(9), Time::ZERO, 0, Default::default())
}

/// Asserts that `standby` holds `w`'s engine's state (the snapshots, less when taken).
fn assert_follows(w: &World, standby: &ctibox::core::Engine, what: &str) {
    let (mut a, mut b) = (w.engine.snapshot(), standby.snapshot());
    a.taken_unix_ms = 0;
    b.taken_unix_ms = 0;
    assert_eq!(b, a, "{what}");
}

/// Applies every delta of `w` from index `from` to `standby`, and compares snapshots.
fn follow(w: &World, standby: &mut ctibox::core::Engine, from: usize) -> usize {
    for (_, d) in &w.replicated[from..] {
        standby.apply_delta(d.clone());
    }
    assert_follows(w, standby, "the standby follows the primary");
    w.replicated.len()
}

#[test]
fn a_standby_applying_the_deltas_holds_the_primarys_snapshot_through_a_call_hold_resume_and_hang_up() {
    let mut w = World::new(&config(&[], PAIRED), 1);
    let mut standby = standby_of(&w);
    w.register_all();
    let mut n = follow(&w, &mut standby, 0);
    w.drive_until(secs(1.0));
    w.dial("1001", "1002");
    w.drive_until(secs(2.0));
    w.answer("1002");
    w.drive_until(secs(3.0));
    n = follow(&w, &mut standby, n);
    assert_eq!(standby.snapshot().calls.len(), 1);
    w.reinvite("1001", "sendonly");
    w.drive_until(secs(4.0));
    assert!(matches!(w.replicated.last(), Some((_, Delta::CallChanged(c))) if c.moh.is_some()), "{:?}", w.replicated.last());
    n = follow(&w, &mut standby, n);
    w.reinvite("1001", "sendrecv");
    w.drive_until(secs(5.0));
    n = follow(&w, &mut standby, n);
    w.hangup("1002");
    w.settle();
    follow(&w, &mut standby, n);
    assert!(standby.snapshot().calls.is_empty());
    let out: Vec<_> = std::iter::from_fn(|| standby.poll_output()).collect();
    assert!(out.is_empty(), "a standby sends nothing while it follows: {out:?}");
}

/// The last reply `app` received.
fn last_reply(w: &World, app: &str) -> serde_json::Value {
    w.app(app).received.iter().rev().find(|(_, v)| v["type"] == "reply").map(|(_, v)| v.clone()).expect("a reply")
}

#[test]
fn cti_devices_are_held_for_their_application_by_name_which_reopens_them_after_failover_and_its_answered_call_stays_up() {
    let other = format!("[[app_user]]\nname = \"other\"\nsecret = \"generate\"\ndevices = [\"rp-2000\"]\n{PAIRED}");
    let mut w = World::new(&config(&[], &other), 1);
    w.register_all();
    w.app_login("ivr", &["rp-2000"]);
    w.drive_until(secs(1.0));
    w.dial("1001", "2000");
    w.drive_until(secs(2.0));
    w.app_send("ivr", serde_json::json!({"type":"answer","call":"c1","media":{"ip":"127.0.0.50","port":4000,"codec":"pcmu"}}));
    w.drive_until(secs(500.0));
    assert_eq!(last_reply(&w, "ivr")["ok"], true);
    let snap = snapshot(&w);
    let owners: Vec<(&str, &str)> = snap.devices.iter().map(|d| (d.device.as_str(), d.app.as_str())).collect();
    assert_eq!(owners, [("rp-2000", "ivr")], "ownership by application name, no connection");
    assert_eq!(snap.calls.len(), 1);
    let mut w = fail_over(w);
    // No application has the device open here yet: a new call follows CFNA (1003).
    w.phone_mut("1003").answer = Answer::Busy;
    w.dial("1004", "2000");
    w.drive_until(secs(503.0));
    assert_eq!(w.find("box", "1003", "INVITE").len(), 1, "CFNA while the application is away");
    // Another application may not take the device held for ivr.
    w.app_login("other", &[]);
    w.app_send("other", serde_json::json!({"type":"open","device":"rp-2000"}));
    w.drive();
    let r = last_reply(&w, "other");
    assert_eq!(r["error"]["code"], "device_in_use", "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("held for application ivr"), "{r}");
    // ivr logs in again on the restored engine and reopens its device: the answered
    // call is still there, and it can drop it.
    w.app_login("ivr", &["rp-2000"]);
    w.app_send("ivr", serde_json::json!({"type":"snapshot","device":"rp-2000"}));
    w.drive();
    let r = last_reply(&w, "ivr");
    assert_eq!((r["calls"][0]["call"].as_str(), r["calls"][0]["state"].as_str()), (Some("c1"), Some("connected")), "{r}");
    w.app_send("ivr", serde_json::json!({"type":"drop","call":"c1"}));
    w.settle();
    let bye = &w.find("box", "1001", "BYE")[0].text;
    assert_eq!(cseq_of(bye), "1 BYE", "{bye}");
    assert_eq!(w.phone("1001").history.last().map(|h| h.1.as_str()), Some("ended by the box"));
    w.assert_nothing_leaked();
}

#[test]
fn registration_refreshes_are_saved_at_most_every_five_minutes_new_bindings_at_once_and_the_rest_at_a_clean_stop() {
    let mut w = World::new(&config(&[], PAIRED), 1);
    w.register_all();
    // Each new binding is saved at once.
    assert_eq!(w.persisted.len(), 6, "{:?}", w.persisted);
    let last = w.persisted[5].0;
    // Refreshes (same contacts, new expiries) are replicated but not written...
    for (i, dn) in ["1003", "1004", "1003"].iter().enumerate() {
        w.drive_until(secs(10.0 * (i as f64 + 1.0)));
        let deltas = w.replicated.len();
        w.register(dn);
        w.drive();
        assert!(w.replicated.len() > deltas, "a refresh is a replicated fact");
    }
    assert_eq!(w.persisted.len(), 6, "refreshes wait: {:?}", w.persisted);
    // ...until five minutes after the last save, when one write takes all of them.
    w.drive_until(last + Duration::from_millis(299_999));
    assert_eq!(w.persisted.len(), 6);
    w.drive_until(last + Duration::from_secs(300));
    assert_eq!(w.persisted.iter().map(|p| p.0).collect::<Vec<_>>()[6..], [last + Duration::from_secs(300)]);
    // A refresh now waits again; a clean stop writes it.
    w.drive_until(secs(400.0));
    w.register("1005");
    w.drive();
    assert_eq!(w.persisted.len(), 7);
    w.stop();
    assert_eq!(w.persisted.len(), 8, "written at the clean stop");
    w.stop();
    assert_eq!(w.persisted.len(), 8, "nothing held back any more");
}

/// The standby's side of the replication stream, as the shell runs it: deltas are
/// applied in order; when one is lost (the stream's numbered MACs refuse what follows
/// it), the standby reconnects and gets a whole new snapshot, applied in place with
/// `Engine::follow`. For every seed (which deltas are lost), after every step of a call
/// with a hold and a resume, the standby holds exactly the primary's state.
#[test]
fn a_standby_that_loses_deltas_catches_up_with_a_new_snapshot_whatever_is_lost() {
    let mut total_lost = 0;
    for seed in 0..64u64 {
        let mut w = World::new(&config(&[], PAIRED), 1);
        let mut standby = standby_of(&w);
        standby.set_pair(ctibox::core::PairView { role: "standby", term: 1, active: Some("192.0.2.11".into()) });
        let mut lcg = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let mut lost = 0;
        let mut applied = 0;
        let mut sync = |w: &World, standby: &mut ctibox::core::Engine, applied: &mut usize| {
            for (_, d) in &w.replicated[*applied..] {
                lcg = lcg.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                if (lcg >> 33) % 4 == 0 {
                    // Lost: the rest of the stream is refused; a new snapshot replaces it.
                    lost += 1;
                    assert!(standby.follow(snapshot(w)));
                    break;
                }
                standby.apply_delta(d.clone());
            }
            *applied = w.replicated.len();
            assert_follows(w, standby, &format!("seed {seed}: the standby holds the primary's state"));
        };
        w.register_all();
        sync(&w, &mut standby, &mut applied);
        w.drive_until(secs(1.0));
        w.dial("1001", "1002");
        w.drive_until(secs(2.0));
        w.answer("1002");
        w.drive_until(secs(3.0));
        sync(&w, &mut standby, &mut applied);
        w.reinvite("1001", "sendonly");
        w.drive_until(secs(4.0));
        sync(&w, &mut standby, &mut applied);
        w.reinvite("1001", "sendrecv");
        w.drive_until(secs(5.0));
        sync(&w, &mut standby, &mut applied);
        w.hangup("1002");
        w.settle();
        sync(&w, &mut standby, &mut applied);
        let out: Vec<_> = std::iter::from_fn(|| standby.poll_output()).collect();
        assert!(out.iter().all(|o| !matches!(o, ctibox::core::Output::Transmit { .. })), "seed {seed}: a standby sends no SIP: {out:?}");
        total_lost += lost;
    }
    assert!(total_lost >= 32, "the seeds lose deltas ({total_lost} lost)");
}

/// A standby that takes over (`Engine::serve`) starts the music on hold of a call held
/// at that moment, as a restore does, and serves the call's next request.
#[test]
fn a_standby_taking_over_a_held_call_starts_its_music_on_hold() {
    let mut w = World::new(&config(&[], PAIRED), 1);
    let mut standby = standby_of(&w);
    w.register_all();
    w.drive_until(secs(1.0));
    w.dial("1001", "1002");
    w.drive_until(secs(2.0));
    w.answer("1002");
    w.drive_until(secs(3.0));
    w.reinvite("1001", "sendonly");
    w.drive_until(secs(4.0));
    assert!(standby.follow(snapshot(&w)));
    assert!(std::iter::from_fn(|| standby.poll_output()).next().is_none(), "following starts no media");
    standby.serve();
    let out: Vec<_> = std::iter::from_fn(|| standby.poll_output()).collect();
    assert!(out.iter().any(|o| matches!(o, ctibox::core::Output::Media(MediaCmd::Play { .. }))), "music on hold restarted: {out:?}");
}

/// CFOF and CFNA around a takeover, as the seed's CTI redundancy has them: an
/// application that fails on the active has its offered call forwarded on failure
/// (1004); on the unit that takes over, its route point is still out of service, so a
/// new call follows CFNA (1003) until the application logs in there and opens it
/// again, when calls reach it once more. The call CFOF made carries on across the
/// takeover and ends with a BYE answered on both legs.
#[test]
fn cfof_and_cfna_of_a_failed_application_carry_on_across_the_takeover_until_it_returns() {
    let offered = |w: &World| w.app("ivr").events().iter().filter(|(_, e)| e == "call_offered").count();
    let mut w = World::new(&config(&[], PAIRED), 1);
    w.register_all();
    w.app_login("ivr", &["rp-2000"]);
    w.drive_until(secs(1.0));
    w.dial("1001", "2000");
    w.drive_until(secs(2.0));
    assert_eq!(offered(&w), 1);
    w.app_crash("ivr");
    w.drive_until(secs(3.0));
    assert_eq!(w.find("box", "1004", "INVITE").len(), 1, "CFOF when the application fails");
    w.answer("1004");
    w.drive_until(secs(20.0));
    assert!(snapshot(&w).devices.is_empty(), "the failed application's device is not held for it");
    let mut w = fail_over(w);
    // The route point is out of service on the new active too: CFNA.
    w.phone_mut("1003").answer = Answer::Busy;
    w.dial("1005", "2000");
    w.drive_until(secs(25.0));
    assert_eq!(w.find("box", "1003", "INVITE").len(), 1, "CFNA while the application is away");
    // The application returns, on the new active, and takes calls again.
    w.app_login("ivr", &["rp-2000"]);
    w.dial("1006", "2000");
    w.drive_until(secs(27.0));
    assert_eq!(offered(&w), 2, "the next call is offered to the application");
    assert_eq!(w.find("box", "1003", "INVITE").len(), 1, "no CFNA once it is back");
    // The call CFOF set up before the takeover ends cleanly on the new active.
    w.hangup("1004");
    w.drive_until(secs(28.0));
    assert_eq!(w.find("box", "1001", "BYE").len(), 1, "the caller's leg gets the BYE");
    assert_eq!(w.phone("1001").history.last().map(|h| h.1.as_str()), Some("ended by the box"));
    assert_eq!(w.phone("1004").history.last().map(|h| h.1.as_str()), Some("hung up"));
    assert_eq!(w.find("box", "1004", "200 BYE").len(), 1, "the box answers the BYE of the leg CFOF made");
    assert_eq!(w.find("1001", "box", "200 BYE").len(), 1, "the caller answers the box's BYE");
}

/// The standby holds the active's configuration stamp: its generation, and the digest
/// of its dial plan, which the standby compares with its own (a pair whose dial plans
/// differ would route calls differently after a takeover: it says so on /status).
#[test]
fn the_standby_holds_the_actives_configuration_generation_and_knows_when_its_dial_plan_differs() {
    let mut w = World::new(&config(&[], PAIRED), 1);
    let mut standby = standby_of(&w);
    assert!(standby.follow(snapshot(&w)));
    let stamp = w.engine.config_stamp();
    assert_eq!((stamp.generation, stamp.digest.len()), (1, 16));
    assert_eq!(standby.active_config(), Some(&stamp), "same file: same stamp");
    // The active reloads a configuration that forwards 1001: the standby hears of it.
    let before = w.replicated.len();
    let mut changed = ctibox::config::parse_str(&config(&[("1001", "all = \"1002\"")], PAIRED), "world.toml").unwrap();
    changed.app_users = w.engine.config().app_users.clone();
    w.feed(ctibox::core::Input::Reload(std::sync::Arc::new(changed)));
    w.drive();
    let deltas: Vec<_> = w.replicated[before..].iter().map(|(_, d)| d.clone()).collect();
    assert!(matches!(deltas.as_slice(), [Delta::Config(s)] if s.generation == 2 && s.digest != stamp.digest), "{deltas:?}");
    for d in deltas {
        standby.apply_delta(d);
    }
    let a = standby.active_config().expect("the active's stamp");
    assert_eq!(a, &w.engine.config_stamp());
    assert_ne!(a.digest, standby.config_stamp().digest, "the standby's own dial plan is the old one");
    let status = standby_status(&mut standby);
    assert_eq!(status["active_config"]["generation"], 2, "{status}");
    assert_ne!(status["active_config"]["digest"], status["dial_plan"], "{status}");
}

/// A standalone engine's /status.
fn standby_status(e: &mut ctibox::core::Engine) -> serde_json::Value {
    use ctibox::core::{ConnId, HttpRequest, Input, Output};
    let conn = ConnId(77);
    e.handle_input(Time::ZERO, Input::Http { conn, request: HttpRequest { method: "GET".into(), path: "/status".into(), body: vec![] } });
    let body = std::iter::from_fn(|| e.poll_output()).find_map(|o| match o {
        Output::HttpResponse { body, .. } => Some(body),
        _ => None,
    });
    serde_json::from_slice(&body.expect("a /status answer")).expect("JSON")
}
