//! The real binary on the simulated board with real SIPp phones: the sim board's FXS
//! port `fxs1` serves line 4001 (device `fxs-4001`), and the test plays the
//! subscriber through the control socket (`analog hook|dtmf|status`), as
//! `ctibox analog ...` does. An incoming call from SIPp rings the port, the caller
//! ID the box sends decodes as 1001 "Caller", lifting the handset answers, and the
//! caller's BYE leaves busy tone; lifting the handset gives dial tone, DTMF digits
//! call a SIPp phone, the port joins the call's RTP, and hanging up sends BYE. The
//! signalling and the box's own line logic are real; the port's audio is the twin's
//! (docs/analog.md).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // the test runs the real binary and its peers

mod common;

use common::sipp::*;
use std::io::{Read, Write};

const EXTRA: &str = "
[[line]]
dn = \"4001\"
partition = \"internal\"
[[device]]
name = \"fxs-4001\"
type = \"analog_fxs\"
port = \"fxs1\"
lines = [\"4001\"]
css = \"all\"
";

fn control(tb: &TestBox, command: &str) -> String {
    let mut s = std::os::unix::net::UnixStream::connect(tb.b.data.path().join("control.sock")).expect("the control socket");
    s.write_all(format!("{command}\n").as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

/// The status line of `fxs1`.
fn port_status(tb: &TestBox) -> String {
    let all = control(tb, "analog status");
    all.lines().find(|l| l.starts_with("fxs1 ")).unwrap_or_else(|| panic!("no fxs1 in {all:?}")).to_string()
}

/// Waits for the box to log `needle` (bounded by the harness's guard).
fn log_line(tb: &mut TestBox, needle: &str) {
    tb.b.wait_line(|l| l.text().contains(needle));
}

/// The port comes into service as the box starts, maybe before its banner.
fn in_service(tb: &mut TestBox) {
    let needle = "analog: port fxs1 in service for fxs-4001";
    if !tb.b.seen.iter().any(|l| l.text().contains(needle)) {
        log_line(tb, needle);
    }
}

#[test]
fn a_sipp_call_rings_the_sim_port_with_caller_id_and_lifting_the_handset_answers() {
    let mut tb = start_config(&sip_config(EXTRA), &[]);
    in_service(&mut tb);
    assert!(port_status(&tb).contains("line=idle hook=on"), "{}", port_status(&tb));
    let caller = sipp(&tb, "caller_box_answer.xml", "4001", Some("1001"), free_udp_port(), &["-key", "caller", "1001"]);
    log_line(&mut tb, "analog: port fxs1 rings for");
    // Caller ID goes after the first ring (the US cadence: 2 s on), as a set decodes it.
    log_line(&mut tb, "analog: port fxs1: caller ID bell202:number=1001,name=Caller");
    let st = port_status(&tb);
    assert!(st.contains("line=ringing") && st.contains("rings=1"), "{st}");
    // 79 F/R flips per 2-s ring at 20 Hz, and more as it goes on.
    let flips: u64 = st.split("fr_flips=").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(flips >= 79, "{st}");
    assert!(control(&tb, "analog hook fxs1 off").starts_with("ok:"));
    log_line(&mut tb, "analog: port fxs1 joined to RTP");
    // SIPp was answered, talked 200 ms and hung up: the port plays busy tone.
    expect_success(&tb, caller, "the caller");
    log_line(&mut tb, "analog: port fxs1 left the call's RTP");
    let st = port_status(&tb);
    assert!(st.contains("line=parked") && st.contains("sound=busy") && st.contains("media=-") && st.contains("ringing=no"), "{st}");
    assert_eq!(status(&tb)["calls"], 0);
    assert!(control(&tb, "analog hook fxs1 on").starts_with("ok:"));
}

#[test]
fn dtmf_from_the_off_hook_sim_port_calls_a_sipp_phone_and_hanging_up_sends_bye() {
    let mut tb = start_config(&sip_config(EXTRA), &[]);
    in_service(&mut tb);
    let callee = callee(&tb, "callee_answer_box.xml", "1002");
    assert!(control(&tb, "analog hook fxs1 off").starts_with("ok:"));
    // Bad input gets a clear answer.
    assert!(control(&tb, "analog dtmf fxs9 1002").starts_with("error: no simulated FXS port \"fxs9\""));
    assert!(control(&tb, "analog dtmf fxs1 10x2").starts_with("error: digits must be"));
    assert!(control(&tb, "analog dtmf fxs1 1002").starts_with("ok:"));
    log_line(&mut tb, "analog: port fxs1 (fxs-4001) calls 1002");
    log_line(&mut tb, "analog: port fxs1 joined to RTP");
    let st = port_status(&tb);
    assert!(st.contains("line=talking") && st.contains("<->127.0.0.1:"), "{st}");
    // The status page shows each port's hook and line state.
    let ports = status(&tb)["analog_ports"].clone();
    let fxs1 = ports.as_array().and_then(|a| a.iter().find(|p| p["port"] == "fxs1")).unwrap_or_else(|| panic!("no fxs1 in {ports}")).clone();
    assert_eq!((fxs1["device"].as_str(), fxs1["line"].as_str(), fxs1["hook"].as_str()), (Some("fxs-4001"), Some("talking"), Some("off")), "{fxs1}");
    assert!(control(&tb, "analog hook fxs1 on").starts_with("ok:"));
    expect_success(&tb, callee, "the callee (BYE from the box)");
    log_line(&mut tb, "analog: port fxs1 left the call's RTP");
    assert!(port_status(&tb).contains("line=idle"));
}

#[test]
fn the_pstn_ringing_the_sim_fxo_port_calls_the_inbound_phone_and_the_pstn_hanging_up_ends_it() {
    let extra = format!("{EXTRA}[[device]]\nname = \"fxo-1\"\ntype = \"analog_fxo\"\nport = \"fxo1\"\ninbound_dn = \"1002\"\ncss = \"all\"\n");
    let mut tb = start_config(&sip_config(&extra), &[]);
    let needle = "analog: port fxo1 in service for fxo-1";
    if !tb.b.seen.iter().any(|l| l.text().contains(needle)) {
        log_line(&mut tb, needle);
    }
    let callee = callee(&tb, "callee_answer_box.xml", "1002");
    assert!(control(&tb, "analog ring fxo1 12ab").starts_with("error: the caller's number"));
    assert!(control(&tb, "analog ring fxs1").starts_with("error: no simulated FXO port \"fxs1\""));
    assert!(control(&tb, "analog ring fxo1 5551234 PSTN Caller").starts_with("ok:"));
    // Caller ID comes after the first ring; the call to 1002 carries it.
    log_line(&mut tb, "analog: port fxo1 (fxo-1) rings: a call from 5551234 to 1002");
    log_line(&mut tb, "analog: port fxo1: line seized");
    log_line(&mut tb, "analog: port fxo1 joined to RTP");
    let st = control(&tb, "analog status");
    let fxo = st.lines().find(|l| l.starts_with("fxo1 ")).unwrap_or_else(|| panic!("{st}"));
    assert!(fxo.contains("line=seized") && fxo.contains("seized=yes") && fxo.contains("pstn_ringing=no"), "{fxo}");
    assert!(control(&tb, "analog hangup fxo1").starts_with("ok:"));
    log_line(&mut tb, "analog: port fxo1: line released");
    expect_success(&tb, callee, "the callee (BYE from the box)");
    assert_eq!(status(&tb)["calls"], 0);
}
