//! The real binary's ALSA code path with real SIPp phones: a board file whose FXS port
//! `fxs1` has the twin's GPIO lines (hook by the control socket) but real ALSA PCMs,
//! alsa-lib's file plugin over the null device (`type file`, `slave.pcm "null"`,
//! `infile` for what the port captures, `file` for what it plays), defined in the
//! box's own ~/.asoundrc. Audio made by sox: DTMF 1002 dialled in-band from the
//! off-hook port becomes an INVITE to a SIPp phone; an incoming SIPp call rings the
//! port and the caller ID the box wrote into its playback decodes, by spandsp's
//! receiver, as 1001 "Caller"; the dial tone it played is the country's. A call out
//! of an FXO port on the same plugin waits for the dial tone in the line's audio and
//! plays the route pattern's digits to the line in DTMF.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // the test runs the real binary, sox and SIPp

mod common;

use common::sipp::*;
use common::{BoxProc, Start, TempDir};
use ctibox::core::media::dtmf::{DtmfConfig, DtmfDetector, DtmfEvent};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

const BOARD: &str = r#"
name = "alsa-file"
description = "One FXS port on alsa-lib's file plugin, GPIO simulated"
driver = "sim"

[[port]]
name = "fxs1"
kind = "fxs"
playback = "ctibox_fxs1_play"
capture = "ctibox_fxs1_cap"
hook = { line = "T_FXS1_HOOK" }
ring_mode = { line = "T_FXS1_RM" }
fwd_rev = { line = "T_FXS1_FR" }
"#;

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

/// Raw 16-bit 8 kHz mono audio from sox: `effects` after `-n`.
fn sox(out: &Path, effects: &[&str]) {
    let st = Command::new("sox")
        .args(["-n", "-r", "8000", "-b", "16", "-e", "signed", "-c", "1", "-t", "raw"])
        .arg(out)
        .args(effects)
        .status()
        .expect("sox is installed (scripts/deps)");
    assert!(st.success(), "sox {effects:?}");
}

/// DTMF digits as a phone sends them: 100 ms tones, 100 ms apart, after `lead` s
/// of silence; each group of digits is followed by its pause (s).
fn dtmf_file(dir: &TempDir, groups: &[(&str, &str)], lead: &str) -> std::path::PathBuf {
    const FREQS: [(char, u32, u32); 4] = [('0', 941, 1336), ('1', 697, 1209), ('2', 697, 1336), ('5', 770, 1336)];
    let mut all = Vec::new();
    let gap = dir.file("gap.raw");
    sox(&gap, &["trim", "0", "0.1"]);
    let first = dir.file("lead.raw");
    sox(&first, &["trim", "0", lead]);
    all.extend(std::fs::read(&first).unwrap());
    for (g, (digits, pause)) in groups.iter().enumerate() {
        for (i, d) in digits.chars().enumerate() {
            let (_, lo, hi) = FREQS.iter().find(|f| f.0 == d).copied().expect("a digit the test knows");
            let f = dir.file(&format!("digit{g}-{i}.raw"));
            sox(&f, &["synth", "0.1", "sine", &lo.to_string(), "sine", &hi.to_string(), "channels", "1", "vol", "0.5"]);
            all.extend(std::fs::read(&f).unwrap());
            all.extend(std::fs::read(&gap).unwrap());
        }
        if *pause != "0" {
            let p = dir.file(&format!("pause{g}.raw"));
            sox(&p, &["trim", "0", pause]);
            all.extend(std::fs::read(&p).unwrap());
        }
    }
    let out = dir.file("capture.raw");
    std::fs::write(&out, all).unwrap();
    out
}

/// A box on the file-plugin board `board` with `extra` configuration; port `port`
/// captures `capture` and what it plays lands in the returned file.
fn start_port(board: &str, extra: &str, port: &str, device: &str, capture: &Path) -> (TestBox, std::path::PathBuf) {
    let dir = TempDir::new("alsa");
    let played = dir.file("played.raw");
    let asoundrc = format!(
        "pcm.ctibox_{port}_play {{ type file; slave.pcm \"null\"; file \"{}\"; format \"raw\" }}\n\
         pcm.ctibox_{port}_cap {{ type file; slave.pcm \"null\"; file \"/dev/null\"; infile \"{}\"; format \"raw\" }}\n",
        played.display(),
        capture.display()
    );
    std::fs::write(dir.file(".asoundrc"), asoundrc).unwrap();
    std::fs::write(dir.file("board.toml"), board).unwrap();
    let config = sip_config(extra).replace("[board]\nname = \"sim\"", "[board]\nfile = \"board.toml\"");
    assert!(config.contains("file = \"board.toml\""));
    let file = dir.file("ctibox.toml");
    std::fs::write(&file, config).unwrap();
    let b = BoxProc::start(Start { config: Some(&file), env: vec![("HOME", dir.path().display().to_string())], ..Default::default() });
    let mut tb = TestBox { b, dir };
    let needle = format!("analog: port {port} in service for {device}");
    if !tb.b.seen.iter().any(|l| l.text().contains(&needle)) {
        tb.b.wait_line(|l| l.text().contains(&needle));
    }
    (tb, played)
}

/// The FXS board and line 4001 on it.
fn start(capture: &Path) -> (TestBox, std::path::PathBuf) {
    start_port(BOARD, EXTRA, "fxs1", "fxs-4001", capture)
}

fn control(tb: &TestBox, command: &str) -> String {
    let mut s = std::os::unix::net::UnixStream::connect(tb.b.data.path().join("control.sock")).expect("the control socket");
    s.write_all(format!("{command}\n").as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

fn log_line(tb: &mut TestBox, needle: &str) {
    tb.b.wait_line(|l| l.text().contains(needle));
}

fn samples(path: &Path) -> Vec<i16> {
    std::fs::read(path).unwrap().chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
}

/// The amplitude of `hz` in `x` (a Goertzel filter).
fn amplitude(x: &[i16], hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / 8000.0;
    let (mut s1, mut s2) = (0.0, 0.0);
    for &v in x {
        let s0 = f64::from(v) + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let (re, im) = (s1 - s2 * w.cos(), s2 * w.sin());
    2.0 * (re * re + im * im).sqrt() / x.len() as f64
}

#[test]
fn in_band_dtmf_captured_from_the_alsa_port_calls_a_sipp_phone_after_the_dial_tone() {
    let dir = TempDir::new("alsa-audio");
    // The subscriber keys 10, waits 3 s (longer than a silent port keeps its sound
    // device open, shorter than the 4 s inter-digit timeout), then 02.
    let capture = dtmf_file(&dir, &[("10", "3"), ("02", "0")], "0.5");
    let (mut tb, played) = start(&capture);
    let callee = callee(&tb, "callee_answer_box.xml", "1002");
    // Lifting the handset: dial tone opens the sound device, whose capture carries
    // the DTMF the subscriber keys.
    assert!(control(&tb, "analog hook fxs1 off").starts_with("ok:"));
    log_line(&mut tb, "analog: port fxs1: sound device open");
    log_line(&mut tb, "analog: port fxs1 (fxs-4001) calls 1002");
    log_line(&mut tb, "analog: port fxs1 joined to RTP");
    assert!(control(&tb, "analog hook fxs1 on").starts_with("ok:"));
    expect_success(&tb, callee, "the callee (INVITE from the port's digits, BYE on hang-up)");
    log_line(&mut tb, "analog: port fxs1: sound device closed");
    // What the port played first: the US dial tone, 350 + 440 Hz at -13 dBm0 each
    // (a peak near 5000), and neither busy nor ringback frequencies.
    let x = samples(&played);
    assert!(x.len() >= 8 * 400, "{} samples played", x.len());
    let first = &x[2 * 160..2 * 160 + 8 * 200];
    let (a350, a440, a480, a620) = (amplitude(first, 350.0), amplitude(first, 440.0), amplitude(first, 480.0), amplitude(first, 620.0));
    assert!(a350 > 3000.0 && a440 > 3000.0, "dial tone: 350 Hz {a350:.0}, 440 Hz {a440:.0}");
    assert!(a480 < a350 / 4.0 && a620 < a350 / 10.0, "not dial tone: 480 Hz {a480:.0}, 620 Hz {a620:.0}");
}

#[test]
fn an_incoming_sipp_call_rings_the_alsa_port_and_its_playback_carries_caller_id_spandsp_decodes() {
    let dir = TempDir::new("alsa-audio");
    // The handset is on hook: the port hears silence.
    let capture = dir.file("silence.raw");
    sox(&capture, &["trim", "0", "1"]);
    let (mut tb, played) = start(&capture);
    let caller = sipp(&tb, "caller_box_answer.xml", "4001", Some("1001"), free_udp_port(), &["-key", "caller", "1001"]);
    log_line(&mut tb, "analog: port fxs1 rings for");
    log_line(&mut tb, "analog: port fxs1: caller ID to the line: Bell202 FSK");
    log_line(&mut tb, "analog: port fxs1: caller ID played");
    assert!(control(&tb, "analog hook fxs1 off").starts_with("ok:"));
    log_line(&mut tb, "analog: port fxs1 joined to RTP");
    expect_success(&tb, caller, "the caller (answered by lifting the handset)");
    log_line(&mut tb, "analog: port fxs1 left the call's RTP");
    assert!(control(&tb, "analog hook fxs1 on").starts_with("ok:"));
    log_line(&mut tb, "analog: port fxs1: sound device closed");
    let msgs = common::judge::judge_file("class", &played);
    assert_eq!(msgs.len(), 1, "one caller-ID message in what the port played: {msgs:?}");
    let m = &msgs[0];
    assert_eq!(m[0], "msg 80", "an MDMF call setup message: {m:?}");
    assert!(m.contains(&"field 02 1001".to_string()), "the number: {m:?}");
    assert!(m.contains(&"field 07 Caller".to_string()), "the name: {m:?}");
    // Bell 202: mark 1200 Hz and space 2200 Hz, not V.23's 1300/2100 Hz, measured
    // over the burst's first 400 ms (channel seizure and marks).
    let x = samples(&played);
    let start = x.iter().position(|s| s.unsigned_abs() > 3500).expect("an FSK burst in the playback");
    let burst = &x[start..(start + 8 * 400).min(x.len())];
    let (bell, v23) = (amplitude(burst, 1200.0) + amplitude(burst, 2200.0), amplitude(burst, 1300.0) + amplitude(burst, 2100.0));
    assert!(bell > 4.0 * v23, "Bell 202 tones {bell:.0} vs V.23 tones {v23:.0}");
}

const FXO_BOARD: &str = r#"
name = "alsa-file-fxo"
description = "One FXO port on alsa-lib's file plugin, GPIO simulated"
driver = "sim"

[[port]]
name = "fxo1"
kind = "fxo"
playback = "ctibox_fxo1_play"
capture = "ctibox_fxo1_cap"
ring_detect = { line = "T_FXO1_RD" }
ring_signal = "level"
seize = { line = "T_FXO1_SEIZE" }
"#;

const FXO_EXTRA: &str = "
[[device]]
name = \"fxo-1\"
type = \"analog_fxo\"
port = \"fxo1\"
inbound_dn = \"1002\"
css = \"all\"
answer_delay_s = 1
[[route_pattern]]
pattern = \"9.XXXXXXX\"
partition = \"internal\"
target = \"device:fxo-1\"
prefix = \"0\"
";

#[test]
fn a_call_out_of_the_alsa_fxo_line_dials_its_digits_in_dtmf_once_the_line_gives_dial_tone() {
    let dir = TempDir::new("alsa-audio");
    // The exchange: 300 ms after the seizure, dial tone (US: 350 + 440 Hz) for 2.5 s.
    let capture = dir.file("exchange.raw");
    sox(&capture, &["synth", "2.8", "sine", "350", "sine", "440", "channels", "1", "vol", "0.25", "trim", "0", "2.8", "pad", "0.3", "0"]);
    let (mut tb, played) = start_port(FXO_BOARD, FXO_EXTRA, "fxo1", "fxo-1", &capture);
    let caller = sipp(&tb, "caller_box_answer.xml", "95551234", Some("1001"), free_udp_port(), &["-key", "caller", "1001"]);
    log_line(&mut tb, "analog: port fxo1: line seized");
    log_line(&mut tb, "analog: port fxo1: sound device open");
    // Dial tone heard on the line's audio: the pattern's digits go out.
    log_line(&mut tb, "analog: port fxo1 dials 05551234");
    log_line(&mut tb, "analog: port fxo1: dialled digits played");
    log_line(&mut tb, "analog: port fxo1 joined to RTP");
    expect_success(&tb, caller, "the caller (answered 1 s after the last digit, then hanging up)");
    log_line(&mut tb, "analog: port fxo1: line released");
    log_line(&mut tb, "analog: port fxo1: sound device closed");
    // What the port played to the line: DTMF 0 5 5 5 1 2 3 4, one detection each.
    let mut det = DtmfDetector::new(DtmfConfig::default());
    det.process(&samples(&played));
    let mut digits = String::new();
    while let Some(ev) = det.poll_event() {
        if let DtmfEvent::Start { digit, .. } = ev {
            digits.push(digit.to_char());
        }
    }
    assert_eq!(digits, "05551234");
}

#[test]
fn the_pstn_ringing_the_alsa_fxo_port_sends_the_caller_id_heard_on_the_line_to_the_inbound_phone() {
    use ctibox::codec::callerid::{encode_mdmf, modulate, CallerId, Field, Fsk, Preamble};
    let dir = TempDir::new("alsa-audio");
    // What the line carries once the port listens (from the first ring): 2.5 s of
    // ringing's silence, then Bell 202 MDMF at -13 dBm0 (the exchange's caller ID,
    // made by the project's own modulator), then silence.
    let m = CallerId { when: None, number: Field::Value("5551234".into()), name: Field::Value("PSTN Caller".into()) };
    let mut line = vec![0i16; 8 * 2500];
    modulate(Fsk::Bell202, Preamble::ON_HOOK, &encode_mdmf(&m).unwrap(), 5000, &mut line);
    line.extend(vec![0i16; 8 * 1000]);
    let capture = dir.file("line.raw");
    std::fs::write(&capture, line.iter().flat_map(|s| s.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let (mut tb, _played) = start_port(FXO_BOARD, FXO_EXTRA, "fxo1", "fxo-1", &capture);
    let callee = callee(&tb, "callee_answer_box.xml", "1002");
    assert!(control(&tb, "analog ring fxo1").starts_with("ok:"));
    log_line(&mut tb, "analog: port fxo1: sound device open");
    log_line(&mut tb, "analog: port fxo1: caller ID from the line: Value(\"5551234\") Value(\"PSTN Caller\")");
    log_line(&mut tb, "analog: port fxo1 (fxo-1) rings: a call from 5551234 to 1002");
    log_line(&mut tb, "analog: port fxo1: line seized");
    log_line(&mut tb, "analog: port fxo1 joined to RTP");
    assert!(control(&tb, "analog hangup fxo1").starts_with("ok:"));
    log_line(&mut tb, "analog: port fxo1: line released");
    expect_success(&tb, callee, "the callee 1002 (the PSTN call, BYE when the PSTN caller hung up)");
}
