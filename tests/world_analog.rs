//! Analog (FXS) ports on the virtual clock: the engine's hook switch, ringer and line
//! machine tied to calls. Port `fxs1` of the simulated board serves device
//! `fxs-4001` on line 4001 (CFNA to 1003 after 12 s); the test plays the hardware:
//! it feeds hook edges and detected DTMF digits as the shell would and reads what the
//! engine asks of the port (GPIO levels, sounds, caller ID, the audio bridge).
mod world;

use ctibox::codec::callerid::{self, Field, Fsk};
use ctibox::config::Codec;
use ctibox::core::analog::engine::{AnalogInput, AnalogOutput, CidSignal, InSignal, OutSignal};
use ctibox::core::analog::fxs::Sound;
use ctibox::core::media::tone::ToneKind;
use ctibox::core::{Input, Time};
use std::net::SocketAddr;
use std::time::Duration;
use world::*;

const PORT: &str = "fxs1";

fn analog_config(extra: &str) -> String {
    let lines = "[[line]]\ndn = \"4001\"\npartition = \"internal\"\nforward = { no_answer = \"1003\", no_answer_timeout_s = 12 }\n\
                 [[device]]\nname = \"fxs-4001\"\ntype = \"analog_fxs\"\nport = \"fxs1\"\nlines = [\"4001\"]\ncss = \"all\"\n";
    config(&[], &format!("{lines}{extra}"))
}

/// Phones registered; the clock at 1.000 s.
fn world() -> World {
    let mut w = World::new(&analog_config(""), 7);
    w.register_all();
    port_up(&mut w);
    w.drive_until(secs(1.0));
    w
}

/// The shell reports the port driven.
fn port_up(w: &mut World) {
    w.feed(Input::Analog(AnalogInput::Up { port: PORT.into() }));
}

fn hook(w: &mut World, off_hook: bool) {
    let at = w.engine_time(w.now);
    w.feed(Input::Analog(AnalogInput::Edge { port: PORT.into(), signal: InSignal::Hook, active: off_hook, at }));
}

/// Lifts the handset and waits out the debounce.
fn lift(w: &mut World) {
    hook(w, true);
    w.drive_for(Duration::from_millis(50));
}

/// Hangs up: on hook for longer than a flash.
fn hang_up(w: &mut World) {
    hook(w, false);
    w.drive_for(Duration::from_millis(1000));
}

/// DTMF digits from the port's capture, 200 ms apart.
fn dtmf(w: &mut World, digits: &str) {
    for d in digits.chars() {
        w.feed(Input::Analog(AnalogInput::Digit { port: PORT.into(), digit: d }));
        w.drive_for(Duration::from_millis(200));
    }
}

/// A rotary digit at `pps` pulses per second with `break_pct` % of each pulse on hook,
/// then the pause before the next digit.
fn pulse(w: &mut World, digit: u32, pps: u64, break_pct: u64) {
    let period = 1_000_000 / pps;
    let brk = Duration::from_micros(period * break_pct / 100);
    let make = Duration::from_micros(period) - brk;
    for _ in 0..(if digit == 0 { 10 } else { digit }) {
        hook(w, false);
        w.drive_for(brk);
        hook(w, true);
        w.drive_for(make);
    }
    w.drive_for(Duration::from_millis(600));
}

fn outputs_since(w: &World, t: Time) -> Vec<AnalogOutput> {
    w.analog.iter().filter(|(at, _)| *at >= t).map(|(_, a)| a.clone()).collect()
}

fn sounds_since(w: &World, t: Time) -> Vec<Sound> {
    outputs_since(w, t)
        .into_iter()
        .filter_map(|a| match a {
            AnalogOutput::Play { sound, .. } => Some(sound),
            _ => None,
        })
        .collect()
}

fn gpio(w: &World, signal: OutSignal) -> Vec<(Time, bool)> {
    w.analog
        .iter()
        .filter_map(|(t, a)| match a {
            AnalogOutput::Gpio { signal: s, active, .. } if *s == signal => Some((*t, *active)),
            _ => None,
        })
        .collect()
}

fn connects(w: &World) -> Vec<(u16, SocketAddr, Codec)> {
    w.analog
        .iter()
        .filter_map(|(_, a)| match a {
            AnalogOutput::Connect { local_port, remote, codec, .. } => Some((*local_port, *remote, *codec)),
            _ => None,
        })
        .collect()
}

/// The audio port in the SDP of a message's text.
fn sdp_port(text: &str) -> u16 {
    let m = text.lines().find(|l| l.starts_with("m=audio ")).unwrap_or_else(|| panic!("no m=audio in:\n{text}"));
    m.split(' ').nth(1).unwrap().parse().unwrap()
}

fn sdp_ip(text: &str) -> String {
    text.lines().find_map(|l| l.strip_prefix("c=IN IP4 ")).unwrap_or_else(|| panic!("no c= in:\n{text}")).trim().to_string()
}

fn phone_addr(w: &World, dn: &str) -> SocketAddr {
    SocketAddr::new(w.phone(dn).addr.ip(), PHONE_RTP)
}

#[test]
fn off_hook_gives_dial_tone_dtmf_digits_call_a_phone_and_on_hook_hangs_up() {
    let mut w = world();
    let t0 = w.now;
    lift(&mut w);
    assert_eq!(sounds_since(&w, t0), vec![Sound::Tone(ToneKind::Dial)]);
    dtmf(&mut w, "1002");
    // Dial tone stops at the first digit; "1002" is complete (nothing longer matches),
    // so the INVITE goes at the last digit, not after an inter-digit timeout.
    assert_eq!(sounds_since(&w, t0)[..2], [Sound::Tone(ToneKind::Dial), Sound::Silence]);
    let invites = w.find("box", "1002", "INVITE");
    assert_eq!(invites.len(), 1, "{:?}", w.trace(&["1002"]));
    let invite = invites[0];
    assert_eq!(invite.sent, secs(1.650), "sent at the fourth digit");
    let offer_port = sdp_port(&invite.text);
    assert!((16384..=16420).contains(&offer_port), "{offer_port}");
    assert_eq!(sdp_ip(&invite.text), "127.0.0.1", "the box's own address toward the phone, not 0.0.0.0");
    assert!(invite.text.contains("From: <sip:4001@"), "{}", invite.text);
    w.ring("1002");
    w.drive();
    assert_eq!(sounds_since(&w, t0).last(), Some(&Sound::Tone(ToneKind::Ringback)));
    w.answer("1002");
    w.drive();
    assert_eq!(connects(&w), vec![(offer_port, phone_addr(&w, "1002"), Codec::Pcmu)]);
    let t1 = w.now;
    hang_up(&mut w);
    assert_eq!(w.find("box", "1002", "BYE").len(), 1);
    let after = outputs_since(&w, t1);
    assert!(after.contains(&AnalogOutput::Disconnect { port: PORT.into() }), "{after:?}");
    w.settle();
    w.assert_nothing_leaked();
}

#[test]
fn rotary_digits_at_8_10_and_12_pulses_per_second_dial_like_dtmf() {
    for (pps, break_pct) in [(8, 70), (10, 60), (12, 55)] {
        let mut w = world();
        lift(&mut w);
        w.drive_for(Duration::from_millis(500));
        for d in [1, 0, 0, 3] {
            pulse(&mut w, d, pps, break_pct);
        }
        let invites = w.find("box", "1003", "INVITE");
        assert_eq!(invites.len(), 1, "{pps} pps: {:?}", w.trace(&["1003"]));
        hang_up(&mut w);
        w.settle();
        w.assert_nothing_leaked();
    }
}

#[test]
fn an_incoming_call_rings_with_the_cadence_sends_bell_caller_id_and_ring_trip_answers() {
    let mut w = world();
    w.dial("1001", "4001");
    w.drive();
    let rm = gpio(&w, OutSignal::RingMode);
    let Some(&(on_at, true)) = rm.first() else { panic!("the ringer never started: {rm:?}") };
    assert!(w.find("box", "1001", "180 INVITE").len() == 1);
    // F/R toggles every 25 ms (20 Hz) while RM is up.
    w.drive_until(on_at + Duration::from_millis(2100));
    let fr: Vec<(Time, bool)> = gpio(&w, OutSignal::FwdRev).into_iter().filter(|(t, _)| *t < on_at + Duration::from_millis(2000)).collect();
    assert_eq!(fr.len(), 79, "80 half periods in 2 s, the last one ends the ring");
    for pair in fr.windows(2) {
        assert_eq!(pair[1].0.since(pair[0].0), Duration::from_millis(25));
        assert_ne!(pair[0].1, pair[1].1);
    }
    // The first ring ends at 2 s (US cadence); caller ID goes then, Bell 202 MDMF.
    assert_eq!(gpio(&w, OutSignal::RingMode)[1], (on_at + Duration::from_secs(2), false));
    let cid: Vec<(Time, CidSignal)> = w
        .analog
        .iter()
        .filter_map(|(t, a)| match a {
            AnalogOutput::CallerId { signal, .. } => Some((*t, signal.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(cid.len(), 1, "{cid:?}");
    assert_eq!(cid[0].0, on_at + Duration::from_secs(2));
    let CidSignal::Fsk { fsk: Fsk::Bell202, message } = &cid[0].1 else { panic!("{:?}", cid[0].1) };
    let m = callerid::parse(message).expect("a valid MDMF message");
    assert_eq!(m.number, Field::Value("1001".into()));
    // Lifted in the silence after the first ring: the ringer stays off and the call
    // is answered with the box's address and a port of the media range.
    w.drive_until(on_at + Duration::from_millis(3000));
    lift(&mut w);
    w.drive();
    let ok = w.find("box", "1001", "200 INVITE");
    assert_eq!(ok.len(), 1, "{:?}", w.trace(&["1001"]));
    let port = sdp_port(&ok[0].text);
    assert!((16384..=16420).contains(&port));
    assert_eq!(sdp_ip(&ok[0].text), "127.0.0.1");
    assert_eq!(connects(&w), vec![(port, phone_addr(&w, "1001"), Codec::Pcmu)]);
    assert_eq!(gpio(&w, OutSignal::RingMode).last().map(|r| r.1), Some(false));
    // The caller hangs up: the port leaves the call and plays busy tone.
    let t = w.now;
    w.hangup("1001");
    w.drive();
    let after = outputs_since(&w, t);
    assert!(after.contains(&AnalogOutput::Disconnect { port: PORT.into() }), "{after:?}");
    assert_eq!(sounds_since(&w, t), vec![Sound::Tone(ToneKind::Busy)]);
    hang_up(&mut w);
    w.settle();
    w.assert_nothing_leaked();
}

#[test]
fn ring_trip_during_a_ring_stops_the_ringer_at_once() {
    let mut w = world();
    w.dial("1001", "4001");
    w.drive();
    let (on_at, _) = gpio(&w, OutSignal::RingMode)[0];
    w.drive_until(on_at + Duration::from_millis(1000));
    hook(&mut w, true);
    let lifted = w.now;
    w.drive_for(Duration::from_millis(50));
    let rm = gpio(&w, OutSignal::RingMode);
    assert_eq!(rm.len(), 2, "{rm:?}");
    // Debounced: RM drops 10 ms after the edge, not at the end of the ring.
    assert_eq!(rm[1], (lifted + Duration::from_millis(10), false));
    w.drive();
    assert_eq!(w.find("box", "1001", "200 INVITE").len(), 1);
    w.hangup("1001");
    w.drive();
    hang_up(&mut w);
    w.settle();
    w.assert_nothing_leaked();
}

#[test]
fn an_off_hook_port_is_busy_and_an_unanswered_one_follows_cfna() {
    let mut w = world();
    lift(&mut w);
    w.dial("1001", "4001");
    w.drive();
    assert_eq!(w.find("box", "1001", "486 INVITE").len(), 1, "{:?}", w.trace(&["1001"]));
    hang_up(&mut w);
    w.settle();
    // On hook, unanswered: the line's no-answer timeout (12 s) sends it to 1003 and
    // the ringer stops.
    let t = w.now;
    w.dial("1002", "4001");
    w.drive();
    assert!(gpio(&w, OutSignal::RingMode).iter().any(|(at, on)| *at >= t && *on));
    w.drive_for(Duration::from_secs(13));
    assert_eq!(w.find("box", "1003", "INVITE").len(), 1, "{:?}", w.trace(&["1003"]));
    assert_eq!(gpio(&w, OutSignal::RingMode).last().map(|r| r.1), Some(false));
    w.reject("1003", 486);
    w.settle();
    w.assert_nothing_leaked();
}

#[test]
fn busy_far_end_gives_busy_tone_a_wrong_number_reorder_and_then_the_howler() {
    let mut w = world();
    let t0 = w.now;
    lift(&mut w);
    dtmf(&mut w, "1002");
    w.drive();
    w.reject("1002", 486);
    w.drive();
    assert_eq!(sounds_since(&w, t0).last(), Some(&Sound::Tone(ToneKind::Busy)));
    hang_up(&mut w);
    // A number nothing in the calling search space can match: reorder at once.
    let t1 = w.now;
    lift(&mut w);
    dtmf(&mut w, "5");
    assert_eq!(sounds_since(&w, t1), vec![Sound::Tone(ToneKind::Dial), Sound::Silence, Sound::Tone(ToneKind::Reorder)]);
    // Left off hook: the howler after 30 s, silence after a minute more.
    w.drive_for(Duration::from_secs(31));
    assert_eq!(sounds_since(&w, t1).last(), Some(&Sound::Howler));
    w.drive_for(Duration::from_secs(61));
    assert_eq!(sounds_since(&w, t1).last(), Some(&Sound::Silence));
    hang_up(&mut w);
    w.settle();
    w.assert_nothing_leaked();
}

#[test]
fn an_open_number_waits_for_the_inter_digit_timeout_and_hash_sends_it_at_once() {
    // An outside line: 9, then four digits starting with 1, out of the FXO port.
    // "91" could go on, so the box waits.
    let extra = "[[device]]\nname = \"fxo-1\"\ntype = \"analog_fxo\"\nport = \"fxo1\"\ninbound_dn = \"4001\"\ncss = \"all\"\n\
                 [[route_pattern]]\npattern = \"9.1XXX\"\npartition = \"internal\"\ntarget = \"device:fxo-1\"\n";
    let mut w = World::new(&analog_config(extra), 7);
    w.register_all();
    port_up(&mut w);
    w.drive_until(secs(1.0));
    lift(&mut w);
    dtmf(&mut w, "91");
    let typed = w.now;
    w.drive_for(Duration::from_secs(3));
    assert!(w.log.iter().all(|e| e.label != "INVITE" || e.from != "box"), "nothing dialled before the timeout");
    dtmf(&mut w, "#");
    assert!(w.now < typed + Duration::from_secs(4));
    // "91" matches nothing (the pattern needs four digits after the 9), and FXO
    // the call fails and the port plays reorder.
    w.drive();
    assert_eq!(sounds_since(&w, typed).last(), Some(&Sound::Tone(ToneKind::Reorder)), "{:?}", w.analog);
    hang_up(&mut w);
    w.settle();
    w.assert_nothing_leaked();
}

#[test]
fn a_port_not_driven_is_not_in_service_and_a_port_that_fails_ends_its_call() {
    let mut w = World::new(&analog_config(""), 7);
    w.register_all();
    w.drive_until(secs(1.0));
    // No Up from the shell: the line's device is out of service, CFNA at once.
    w.dial("1001", "4001");
    w.drive();
    assert_eq!(w.find("box", "1003", "INVITE").len(), 1, "{:?}", w.trace(&["1001", "1003"]));
    assert!(w.analog.is_empty(), "nothing asked of a port not driven: {:?}", w.analog);
    w.cancel("1001");
    w.settle();
    // Up, in a call, then the hardware goes: the call ends on the phone's side.
    port_up(&mut w);
    w.dial("1002", "4001");
    w.drive();
    w.drive_for(Duration::from_millis(500));
    lift(&mut w);
    w.drive();
    assert_eq!(w.find("box", "1002", "200 INVITE").len(), 1);
    w.feed(Input::Analog(AnalogInput::Down { port: PORT.into(), reason: "sound device gone".into() }));
    w.drive();
    assert_eq!(w.find("box", "1002", "BYE").len(), 1, "{:?}", w.trace(&["1002"]));
    // Edges from a port that is down do nothing.
    hang_up(&mut w);
    w.settle();
    w.assert_nothing_leaked();
}


// ---- FXO: a PSTN line on port fxo1 of the sim board (its ring detector gives
// pulses at twice the ring frequency), inbound calls to 1002 ----

const FXO: &str = "[[device]]\nname = \"fxo-1\"\ntype = \"analog_fxo\"\nport = \"fxo1\"\ninbound_dn = \"1002\"\ncss = \"all\"\n";

fn fxo_world() -> World {
    let mut w = World::new(&analog_config(FXO), 11);
    w.register_all();
    w.feed(Input::Analog(AnalogInput::Up { port: "fxo1".into() }));
    w.drive_until(secs(1.0));
    w
}

fn fxo_edge(w: &mut World, signal: InSignal, active: bool) {
    let at = w.engine_time(w.now);
    w.feed(Input::Analog(AnalogInput::Edge { port: "fxo1".into(), signal, active, at }));
}

/// One ring of `ms` from a 20 Hz ring voltage: a 10 ms pulse every 25 ms.
fn pstn_ring(w: &mut World, ms: u64) {
    for _ in 0..ms / 25 {
        fxo_edge(w, InSignal::RingDetect, true);
        w.drive_for(Duration::from_millis(10));
        fxo_edge(w, InSignal::RingDetect, false);
        w.drive_for(Duration::from_millis(15));
    }
}

fn seize_levels(w: &World) -> Vec<bool> {
    gpio(w, OutSignal::Seize).into_iter().map(|(_, on)| on).collect()
}

#[test]
fn a_pstn_call_with_bell_caller_id_rings_the_inbound_line_and_its_answer_seizes_the_line() {
    let mut w = fxo_world();
    pstn_ring(&mut w, 2000);
    assert!(w.find("box", "1002", "INVITE").is_empty(), "the box waits for caller ID after the first ring");
    w.drive_for(Duration::from_millis(500));
    w.feed(Input::Analog(AnalogInput::CallerId { port: "fxo1".into(), number: Field::Value("5551234".into()), name: Field::Value("PSTN Caller".into()) }));
    w.drive();
    let inv: Vec<String> = w.find("box", "1002", "INVITE").iter().map(|e| e.text.clone()).collect();
    assert_eq!(inv.len(), 1, "{:?}", w.trace(&["1002"]));
    assert!(inv[0].contains("From: \"PSTN Caller\" <sip:5551234@"), "{}", inv[0]);
    assert!(seize_levels(&w).is_empty(), "not seized while the phone rings");
    // The PSTN keeps ringing; the phone answers in the silence after the second ring.
    w.drive_for(Duration::from_millis(3500));
    pstn_ring(&mut w, 2000);
    w.drive_for(Duration::from_millis(200));
    w.answer("1002");
    w.drive();
    assert_eq!(seize_levels(&w), vec![true]);
    let port = sdp_port(&inv[0]);
    assert_eq!(connects(&w), vec![(port, phone_addr(&w, "1002"), Codec::Pcmu)]);
    // Ringing over while seized is no hang-up; the far end going (loop current gone
    // for 150 ms) is: BYE, and the line is released. A 100 ms glitch is not.
    w.drive_for(Duration::from_secs(8));
    assert!(w.find("box", "1002", "BYE").is_empty());
    fxo_edge(&mut w, InSignal::LoopCurrent, false);
    w.drive_for(Duration::from_millis(100));
    fxo_edge(&mut w, InSignal::LoopCurrent, true);
    w.drive_for(Duration::from_millis(500));
    assert!(w.find("box", "1002", "BYE").is_empty(), "a glitch is not a disconnect");
    fxo_edge(&mut w, InSignal::LoopCurrent, false);
    w.drive_for(Duration::from_millis(200));
    assert_eq!(w.find("box", "1002", "BYE").len(), 1);
    assert_eq!(seize_levels(&w), vec![true, false]);
    assert!(w.analog.iter().any(|(_, a)| *a == AnalogOutput::Disconnect { port: "fxo1".into() }));
    w.settle();
    w.assert_nothing_leaked();
}

#[test]
fn a_pstn_call_without_caller_id_goes_at_the_second_ring_and_a_caller_who_gives_up_cancels_it() {
    let mut w = fxo_world();
    pstn_ring(&mut w, 2000);
    w.drive_for(Duration::from_millis(4000));
    pstn_ring(&mut w, 2000);
    let inv: Vec<String> = w.find("box", "1002", "INVITE").iter().map(|e| e.text.clone()).collect();
    assert_eq!(inv.len(), 1);
    assert!(inv[0].contains("From: <sip:unavailable@"), "{}", inv[0]);
    // No more rings: 6.5 s after the last one the caller is gone; the phone's INVITE
    // is cancelled and the line was never seized.
    w.drive_for(Duration::from_secs(7));
    assert_eq!(w.find("box", "1002", "CANCEL").len(), 1, "{:?}", w.trace(&["1002"]));
    assert!(seize_levels(&w).is_empty());
    w.settle();
    w.assert_nothing_leaked();
}

#[test]
fn a_seized_pstn_call_ends_on_busy_tone_or_polarity_and_the_phone_hanging_up_releases_the_line() {
    for how in ["busy", "polarity", "phone"] {
        let mut w = fxo_world();
        w.feed(Input::Analog(AnalogInput::CallerId { port: "fxo1".into(), number: Field::Private, name: Field::Absent }));
        w.drive_for(Duration::from_millis(500));
        // ETSI: caller ID before the first ring; the call goes at the ring.
        pstn_ring(&mut w, 400);
        w.drive();
        let inv: Vec<String> = w.find("box", "1002", "INVITE").iter().map(|e| e.text.clone()).collect();
        assert_eq!(inv.len(), 1, "{how}");
        assert!(inv[0].contains("From: <sip:anonymous@"), "{}", inv[0]);
        w.answer("1002");
        w.drive();
        assert_eq!(seize_levels(&w), vec![true], "{how}");
        match how {
            "busy" => w.feed(Input::Analog(AnalogInput::ToneHeard { port: "fxo1".into(), tone: ToneKind::Busy })),
            "polarity" => fxo_edge(&mut w, InSignal::Polarity, true),
            _ => w.hangup("1002"),
        }
        w.drive();
        assert_eq!(seize_levels(&w), vec![true, false], "{how}");
        if how != "phone" {
            assert_eq!(w.find("box", "1002", "BYE").len(), 1, "{how}");
        }
        w.settle();
        w.assert_nothing_leaked();
    }
}

// ---- FXO outbound: a route pattern (9, then seven digits; the 9 stripped, 0 put in
// front) sends calls out of the PSTN line on fxo1 ----

const FXO_OUT: &str = "[[route_pattern]]\npattern = \"9.XXXXXXX\"\npartition = \"internal\"\ntarget = \"device:fxo-1\"\nprefix = \"0\"\n";

fn fxo_out_world(board: &str) -> World {
    let mut w = World::new(&analog_config(&format!("{FXO}{FXO_OUT}{board}")), 11);
    w.register_all();
    w.feed(Input::Analog(AnalogInput::Up { port: "fxo1".into() }));
    w.drive_until(secs(1.0));
    w
}

fn dialled(w: &World) -> Vec<(Time, String)> {
    w.analog
        .iter()
        .filter_map(|(t, a)| match a {
            AnalogOutput::Dial { port, digits } if port == "fxo1" => Some((*t, digits.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_call_out_of_the_fxo_line_seizes_dials_at_dial_tone_and_is_answered_by_the_polarity_reversal() {
    // The sim board's fxo1 has a polarity input: answer supervision by reversal.
    let mut w = fxo_out_world("");
    w.dial("1001", "95551234");
    w.drive();
    assert_eq!(w.find("box", "1001", "180 INVITE").len(), 1, "{:?}", w.trace(&["1001"]));
    assert_eq!(seize_levels(&w), vec![true], "seized at once");
    assert!(dialled(&w).is_empty(), "waits for dial tone");
    w.drive_for(Duration::from_millis(400));
    let heard = w.now;
    w.feed(Input::Analog(AnalogInput::ToneHeard { port: "fxo1".into(), tone: ToneKind::Dial }));
    w.drive();
    assert_eq!(dialled(&w), vec![(w.engine_time(heard), "05551234".to_string())], "the pattern's digits: 9 stripped, 0 in front");
    // Dialled, the far end rings: no answer to the caller without the reversal, however long.
    w.drive_for(Duration::from_secs(20));
    assert!(w.find("box", "1001", "200 INVITE").is_empty());
    fxo_edge(&mut w, InSignal::Polarity, true);
    w.drive();
    let ok = w.find("box", "1001", "200 INVITE");
    assert_eq!(ok.len(), 1, "{:?}", w.trace(&["1001"]));
    let port = sdp_port(&ok[0].text);
    assert!((16384..=16420).contains(&port));
    assert_eq!(sdp_ip(&ok[0].text), "127.0.0.1");
    assert_eq!(connects(&w), vec![(port, phone_addr(&w, "1001"), Codec::Pcmu)]);
    // A second call out while the line is in use: 486.
    w.dial("1002", "95550000");
    w.drive();
    assert_eq!(w.find("box", "1002", "486 INVITE").len(), 1, "{:?}", w.trace(&["1002"]));
    assert_eq!(dialled(&w).len(), 1);
    // The far end hangs up: the polarity goes back; BYE to the caller, the line released.
    fxo_edge(&mut w, InSignal::Polarity, false);
    w.drive();
    assert_eq!(w.find("box", "1001", "BYE").len(), 1, "{:?}", w.trace(&["1001"]));
    assert_eq!(seize_levels(&w), vec![true, false]);
    assert!(w.analog.iter().any(|(_, a)| *a == AnalogOutput::Disconnect { port: "fxo1".into() }));
    w.settle();
    w.assert_nothing_leaked();
}

#[test]
fn without_a_polarity_input_the_fxo_line_dials_blind_and_counts_the_call_answered_after_the_last_digit() {
    // The rpi4 board's fxo1 has loop current but no polarity input: 2 s by default.
    // On the sim board, whose port has one, the device can turn polarity answer off.
    for (board, delay_ms) in [("[board]\nname = \"rpi4\"\n", 2000), ("", 1000)] {
        let mut w = if board.is_empty() {
            let fxo = FXO.replace("css = \"all\"\n", "css = \"all\"\npolarity_answer = false\nanswer_delay_s = 1\n");
            let mut w = World::new(&analog_config(&format!("{fxo}{FXO_OUT}")), 11);
            w.register_all();
            w.feed(Input::Analog(AnalogInput::Up { port: "fxo1".into() }));
            w.drive_until(secs(1.0));
            w
        } else {
            fxo_out_world(board)
        };
        w.dial("1001", "95551234");
        w.drive();
        let seized = gpio(&w, OutSignal::Seize);
        assert_eq!(seized.len(), 1);
        // No dial tone heard: the number goes 3 s after the seizure.
        w.drive_for(Duration::from_secs(7));
        assert_eq!(dialled(&w), vec![(seized[0].0 + Duration::from_secs(3), "05551234".to_string())]);
        // Eight digits take 1.6 s; the answer comes the delay after that.
        let ok = w.find("box", "1001", "200 INVITE");
        assert_eq!(ok.len(), 1, "{:?}", w.trace(&["1001"]));
        assert_eq!(w.engine_time(ok[0].sent), seized[0].0 + Duration::from_millis(3000 + 1600 + delay_ms));
        assert_eq!(connects(&w).len(), 1);
        // The caller hangs up: the line is released.
        w.hangup("1001");
        w.drive();
        assert_eq!(seize_levels(&w), vec![true, false]);
        w.settle();
        w.assert_nothing_leaked();
    }
}

#[test]
fn a_busy_pstn_number_refuses_the_call_with_486_and_a_caller_giving_up_releases_the_line() {
    let mut w = fxo_out_world("");
    w.dial("1001", "95551234");
    w.drive();
    w.feed(Input::Analog(AnalogInput::ToneHeard { port: "fxo1".into(), tone: ToneKind::Dial }));
    w.drive_for(Duration::from_secs(3));
    w.feed(Input::Analog(AnalogInput::ToneHeard { port: "fxo1".into(), tone: ToneKind::Busy }));
    w.drive();
    assert_eq!(w.find("box", "1001", "486 INVITE").len(), 1, "{:?}", w.trace(&["1001"]));
    assert_eq!(seize_levels(&w), vec![true, false]);
    w.settle();
    // The caller gives up while the PSTN rings: CANCEL releases the line.
    w.dial("1002", "95550000");
    w.drive_for(Duration::from_secs(8));
    assert_eq!(seize_levels(&w), vec![true, false, true]);
    w.cancel("1002");
    w.drive();
    assert_eq!(seize_levels(&w), vec![true, false, true, false], "{:?}", w.trace(&["1002"]));
    assert!(w.find("box", "1002", "200 INVITE").is_empty());
    w.settle();
    w.assert_nothing_leaked();
}

#[test]
fn an_fxs_port_cannot_call_out_of_the_fxo_line_yet_and_hears_reorder() {
    // Both ends would be the box's own terminations, which it cannot join yet: the
    // call is refused before the line is seized.
    let mut w = fxo_out_world("");
    port_up(&mut w);
    let t = w.now;
    lift(&mut w);
    dtmf(&mut w, "95551234");
    w.drive();
    assert!(seize_levels(&w).is_empty());
    assert_eq!(sounds_since(&w, t).last(), Some(&Sound::Tone(ToneKind::Reorder)));
    hang_up(&mut w);
    w.settle();
    w.assert_nothing_leaked();
}

// ---- FXS call waiting ----

/// A hook flash: on hook for 400 ms, then the handset up again.
fn flash(w: &mut World) {
    hook(w, false);
    w.drive_for(Duration::from_millis(400));
    hook(w, true);
    w.drive_for(Duration::from_millis(100));
}

/// The box's re-INVITEs to a phone, by the direction they offer.
fn reinvites(w: &World, dn: &str, dir: &str) -> usize {
    w.find("box", dn, "INVITE").iter().filter(|e| e.text.contains(&format!("a={dir}"))).count()
}

/// A call from `dn` to the port, answered by lifting the handset.
fn talking_with(w: &mut World, dn: &str) {
    w.dial(dn, "4001");
    w.drive();
    w.drive_for(Duration::from_millis(500));
    lift(w);
    w.drive();
    assert_eq!(w.find("box", dn, "200 INVITE").len(), 1, "{:?}", w.trace(&[dn]));
}

#[test]
fn a_second_call_waits_with_the_tone_and_off_hook_caller_id_and_hook_flash_answers_swaps_and_recalls() {
    let mut w = world();
    talking_with(&mut w, "1001");
    let t = w.now;
    w.dial("1002", "4001");
    w.drive();
    assert!(w.find("box", "1002", "486 INVITE").is_empty(), "a talking line with call waiting is not busy");
    assert_eq!(w.find("box", "1002", "180 INVITE").len(), 1, "{:?}", w.trace(&["1002"]));
    let after = outputs_since(&w, t);
    assert!(after.contains(&AnalogOutput::CallWaitingTone { port: PORT.into(), cas: true }), "{after:?}");
    assert!(!gpio(&w, OutSignal::RingMode).iter().any(|(at, on)| *at >= t && *on), "the ringer stays off");
    // The set acknowledges the alert with DTMF D: caller ID goes with the off-hook preamble.
    w.drive_for(Duration::from_millis(450));
    w.feed(Input::Analog(AnalogInput::Digit { port: PORT.into(), digit: 'D' }));
    w.drive();
    let cid: Vec<CidSignal> = outputs_since(&w, t)
        .into_iter()
        .filter_map(|a| match a {
            AnalogOutput::CallerId { signal, .. } => Some(signal),
            _ => None,
        })
        .collect();
    assert_eq!(cid.len(), 1, "{cid:?}");
    let CidSignal::FskCallWaiting { fsk: Fsk::Bell202, message } = &cid[0] else { panic!("{:?}", cid[0]) };
    assert_eq!(callerid::parse(message).expect("MDMF").number, Field::Value("1002".into()));
    // A second D (or one after the window) sends nothing more.
    w.feed(Input::Analog(AnalogInput::Digit { port: PORT.into(), digit: 'D' }));
    w.drive();
    assert_eq!(outputs_since(&w, t).iter().filter(|a| matches!(a, AnalogOutput::CallerId { .. })).count(), 1);
    // The tone again 10 s later, without the alerting signal.
    w.drive_for(Duration::from_secs(10));
    assert!(outputs_since(&w, t).contains(&AnalogOutput::CallWaitingTone { port: PORT.into(), cas: false }));
    // Flash: 1001 is held (sendonly re-INVITE), 1002 answered on a port of its own.
    flash(&mut w);
    w.drive();
    assert_eq!(reinvites(&w, "1001", "sendonly"), 1, "{:?}", w.trace(&["1001"]));
    let ok = w.find("box", "1002", "200 INVITE");
    assert_eq!(ok.len(), 1, "{:?}", w.trace(&["1002"]));
    let c = connects(&w);
    assert_eq!(c.len(), 2, "{c:?}");
    assert_eq!(c[1], (sdp_port(&ok[0].text), phone_addr(&w, "1002"), Codec::Pcmu));
    assert_ne!(c[0].0, c[1].0, "each call its own RTP port");
    // Flash again: swapped back.
    flash(&mut w);
    w.drive();
    assert_eq!(reinvites(&w, "1002", "sendonly"), 1, "{:?}", w.trace(&["1002"]));
    assert_eq!(reinvites(&w, "1001", "sendrecv"), 1, "{:?}", w.trace(&["1001"]));
    assert_eq!(connects(&w).last(), Some(&c[0]));
    // Hanging up ends the call in progress and rings the line back for the held one.
    let t2 = w.now;
    hang_up(&mut w);
    assert_eq!(w.find("box", "1001", "BYE").len(), 1);
    assert!(gpio(&w, OutSignal::RingMode).iter().any(|(at, on)| *at >= t2 && *on), "recall rings");
    lift(&mut w);
    w.drive();
    assert_eq!(reinvites(&w, "1002", "sendrecv"), 1, "{:?}", w.trace(&["1002"]));
    assert_eq!(connects(&w).last(), Some(&c[1]));
    hang_up(&mut w);
    assert_eq!(w.find("box", "1002", "BYE").len(), 1);
    w.settle();
    w.assert_nothing_leaked();
}

#[test]
fn an_unanswered_waiting_call_follows_cfna_and_without_call_waiting_the_line_is_busy() {
    let mut w = world();
    talking_with(&mut w, "1001");
    w.dial("1002", "4001");
    w.drive();
    assert_eq!(w.find("box", "1002", "180 INVITE").len(), 1);
    // The line's no-answer timeout (12 s): the waiting call goes to 1003.
    w.drive_for(Duration::from_secs(13));
    assert_eq!(w.find("box", "1003", "INVITE").len(), 1, "{:?}", w.trace(&["1003"]));
    // A flash now has no waiting call to take: it holds 1001 for a consultation
    // (dial tone), and a second flash returns to it.
    let t = w.now;
    flash(&mut w);
    w.drive();
    assert_eq!(reinvites(&w, "1001", "sendonly"), 1);
    assert_eq!(sounds_since(&w, t), vec![Sound::Tone(ToneKind::Dial)]);
    flash(&mut w);
    w.drive();
    assert_eq!(reinvites(&w, "1001", "sendrecv"), 1, "{:?}", w.trace(&["1001"]));
    w.reject("1003", 486);
    hang_up(&mut w);
    w.settle();
    w.assert_nothing_leaked();

    let cfg = analog_config("").replace("port = \"fxs1\"\n", "port = \"fxs1\"\ncall_waiting = false\n");
    let mut w = World::new(&cfg, 7);
    w.register_all();
    port_up(&mut w);
    w.drive_until(secs(1.0));
    talking_with(&mut w, "1001");
    w.dial("1002", "4001");
    w.drive();
    assert_eq!(w.find("box", "1002", "486 INVITE").len(), 1, "{:?}", w.trace(&["1002"]));
    hang_up(&mut w);
    w.settle();
    w.assert_nothing_leaked();
}

#[test]
fn hanging_up_with_a_call_waiting_rings_the_line_for_it() {
    let mut w = world();
    talking_with(&mut w, "1001");
    w.dial("1002", "4001");
    w.drive();
    let t = w.now;
    hang_up(&mut w);
    assert_eq!(w.find("box", "1001", "BYE").len(), 1);
    assert!(gpio(&w, OutSignal::RingMode).iter().any(|(at, on)| *at >= t && *on));
    lift(&mut w);
    w.drive();
    let ok = w.find("box", "1002", "200 INVITE");
    assert_eq!(ok.len(), 1, "{:?}", w.trace(&["1002"]));
    assert_eq!(connects(&w).last().map(|c| c.1), Some(phone_addr(&w, "1002")));
    hang_up(&mut w);
    w.settle();
    w.assert_nothing_leaked();
}

// ---- CTI applications sharing analog devices with the ports' client ----

fn last_reply(w: &World, app: &str) -> serde_json::Value {
    w.app(app).received.iter().rev().map(|(_, v)| v).find(|v| v["type"] == "reply").cloned().expect("a reply")
}

#[test]
fn an_application_opens_an_fxs_port_sees_its_calls_holds_and_drops_them_but_cannot_answer_for_it() {
    let extra = "[[app_user]]\nname = \"crm\"\nsecret = \"generate\"\ndevices = [\"fxs-4001\"]\n";
    let mut w = World::new(&analog_config(extra), 7);
    w.register_all();
    port_up(&mut w);
    w.drive_until(secs(1.0));
    w.app_login("crm", &["fxs-4001"]);
    w.app_send("crm", serde_json::json!({"type":"list_devices"}));
    w.drive();
    let r = last_reply(&w, "crm");
    assert!(r["devices"].as_array().unwrap().iter().any(|d| d["name"] == "fxs-4001" && d["kind"] == "analog_fxs" && d["open"] == true && d["in_use"] == false), "{r}");
    w.dial("1001", "4001");
    w.drive();
    assert!(gpio(&w, OutSignal::RingMode).iter().any(|(_, on)| *on), "the port rings as before");
    let offered = w.app("crm").last_event("call_offered").cloned().unwrap_or_else(|| panic!("{:?}", w.app("crm").events()));
    assert_eq!(offered["device"], "fxs-4001");
    let call = offered["call"].as_str().unwrap().to_string();
    w.app_send("crm", serde_json::json!({"type":"answer","call":call}));
    w.drive();
    let r = last_reply(&w, "crm");
    assert_eq!(r["error"]["code"], "invalid_state", "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("lifting the handset"), "{r}");
    // make_call needs the handset off hook (the port is ringing here).
    w.app_send("crm", serde_json::json!({"type":"make_call","device":"fxs-4001","to":"1002"}));
    w.drive();
    let r = last_reply(&w, "crm");
    assert_eq!(r["error"]["code"], "invalid_state", "{r}");
    w.drive_for(Duration::from_millis(500));
    lift(&mut w);
    w.drive();
    assert_eq!(w.find("box", "1001", "200 INVITE").len(), 1);
    // Hold from the application: the caller gets a sendonly re-INVITE.
    w.app_send("crm", serde_json::json!({"type":"hold","call":call}));
    w.drive();
    assert_eq!(last_reply(&w, "crm")["ok"], true, "{}", last_reply(&w, "crm"));
    assert_eq!(reinvites(&w, "1001", "sendonly"), 1, "{:?}", w.trace(&["1001"]));
    w.app_send("crm", serde_json::json!({"type":"unhold","call":call}));
    w.drive();
    // Drop from the application: BYE to the caller, the port leaves the call and plays busy.
    let t = w.now;
    w.app_send("crm", serde_json::json!({"type":"drop","call":call}));
    w.drive();
    assert_eq!(last_reply(&w, "crm")["ok"], true, "{}", last_reply(&w, "crm"));
    assert_eq!(w.find("box", "1001", "BYE").len(), 1, "{:?}", w.trace(&["1001"]));
    assert!(outputs_since(&w, t).contains(&AnalogOutput::Disconnect { port: PORT.into() }));
    assert_eq!(sounds_since(&w, t), vec![Sound::Tone(ToneKind::Busy)]);
    assert!(w.app("crm").last_event("call_ended").is_some());
    hang_up(&mut w);
    // Off hook at dial tone, make_call dials for the subscriber.
    lift(&mut w);
    w.app_send("crm", serde_json::json!({"type":"make_call","device":"fxs-4001","to":"1002"}));
    w.drive();
    let r = last_reply(&w, "crm");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(w.find("box", "1002", "INVITE").len(), 1, "{:?}", w.trace(&["1002"]));
    w.answer("1002");
    w.drive();
    assert_eq!(connects(&w).last().map(|c| c.1), Some(phone_addr(&w, "1002")));
    let call2 = r["call"].as_str().unwrap().to_string();
    assert!(w.app("crm").received.iter().any(|(_, v)| v["type"] == "event" && v["call"] == call2.as_str()), "the application sees its call");
    hang_up(&mut w);
    assert_eq!(w.find("box", "1002", "BYE").len(), 1);
    // Closing it leaves the port in service for its own calls.
    w.app_send("crm", serde_json::json!({"type":"close","device":"fxs-4001"}));
    w.drive();
    assert_eq!(last_reply(&w, "crm")["ok"], true);
    let t = w.now;
    lift(&mut w);
    assert_eq!(sounds_since(&w, t), vec![Sound::Tone(ToneKind::Dial)]);
    hang_up(&mut w);
    w.settle();
    w.assert_nothing_leaked();
}

// ---- FXS hook flash: consultation and transfer ----

#[test]
fn a_flash_holds_the_call_for_a_consultation_and_hanging_up_puts_the_held_party_through() {
    let mut w = world();
    talking_with(&mut w, "1001");
    let first = connects(&w)[0];
    let t = w.now;
    flash(&mut w);
    w.drive();
    assert_eq!(reinvites(&w, "1001", "sendonly"), 1, "{:?}", w.trace(&["1001"]));
    assert_eq!(sounds_since(&w, t), vec![Sound::Tone(ToneKind::Dial)]);
    dtmf(&mut w, "1002");
    w.drive();
    let inv = w.find("box", "1002", "INVITE");
    assert_eq!(inv.len(), 1, "{:?}", w.trace(&["1002"]));
    let consult_port = sdp_port(&inv[0].text);
    assert_ne!(consult_port, first.0, "the consultation has its own RTP port");
    w.answer("1002");
    w.drive();
    assert_eq!(connects(&w).last(), Some(&(consult_port, phone_addr(&w, "1002"), Codec::Pcmu)));
    // Hang up: 1001 and 1002 are re-INVITEd with each other's media, the port leaves.
    hang_up(&mut w);
    w.drive();
    let to_1001: Vec<String> = w.find("box", "1001", "INVITE").iter().map(|e| e.text.clone()).collect();
    let to_1002: Vec<String> = w.find("box", "1002", "INVITE").iter().map(|e| e.text.clone()).collect();
    assert_eq!(to_1001.len(), 2, "held, then put through: {:?}", w.trace(&["1001"]));
    assert_eq!(to_1002.len(), 2, "{:?}", w.trace(&["1002"]));
    assert_eq!(sdp_port(&to_1001[1]), PHONE_RTP, "1001 now sends to 1002's media");
    assert_eq!(sdp_ip(&to_1001[1]), w.phone("1002").addr.ip().to_string());
    assert!(to_1001[1].contains("a=sendrecv"), "{}", to_1001[1]);
    assert_eq!(sdp_ip(&to_1002[1]), w.phone("1001").addr.ip().to_string());
    assert!(w.find("box", "1001", "BYE").is_empty() && w.find("box", "1002", "BYE").is_empty(), "nobody is hung up");
    assert!(!gpio(&w, OutSignal::RingMode).iter().any(|(at, on)| *at >= t && *on), "no recall after a transfer");
    // The port is free again, and the two talk until one hangs up.
    let t = w.now;
    lift(&mut w);
    assert_eq!(sounds_since(&w, t), vec![Sound::Tone(ToneKind::Dial)]);
    hang_up(&mut w);
    w.hangup("1001");
    w.drive();
    assert_eq!(w.find("box", "1002", "BYE").len(), 1, "{:?}", w.trace(&["1002"]));
    w.settle();
    w.assert_nothing_leaked();
}
