//! The analog ports on the real Linux drivers: a guest kernel (scripts/test-kernel)
//! under QEMU with gpio-sim (GPIO lines the test drives from sysfs) and snd-aloop
//! (sound devices looped playback to capture), because the host's kernel may have
//! neither (docs/analog.md, "The kernel test").
//!
//! The first test proves the harness: a gpio-sim chip made from configfs is listed
//! with its line names by libgpiod's tools, pulling an input line changes what they
//! read, and a tone played into one end of a loopback substream comes out of the
//! other with its level and frequency. The other two run the box itself inside the
//! guest on those drivers, with SIPp on the guest's loopback for the SIP side: an
//! off-hook FXS port gets dial tone and DTMF calls a SIPp phone; a SIPp call rings
//! the port (RM up, F/R toggling) with caller ID judged by spandsp, and lifting the
//! handset answers.
// The test builds an initramfs (sox, cpio, strip), boots QEMU and runs the judge.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use common::judge::judged;
use common::qemu::{boot, host_tool, Console, Initramfs};
use common::sipp::{password, scenario, sip_config};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A failure bound on one guest's whole run (boot, the box, SIPp, captures), not a
/// speed assertion.
const GUARD: Duration = Duration::from_secs(600);

/// The gpio-sim bank's lines, by offset.
const LINES: [&str; 6] = ["QEMU_FXS1_HOOK", "QEMU_FXS1_RM", "QEMU_FXS1_FR", "QEMU_FXO1_RD", "QEMU_FXO1_SEIZE", "QEMU_FXO1_POL"];

/// Makes the gpio-sim chip (bank label `ctibox-qemu`, the lines above) and sets
/// `$chip` (gpiochipN) and `$sim` (its sysfs directory, with sim_gpioN/{pull,value}).
fn gpio_setup() -> String {
    let mut s = String::from(
        "cfg=/sys/kernel/config/gpio-sim/ctibox\n\
         mkdir $cfg $cfg/bank0\n\
         echo ctibox-qemu > $cfg/bank0/label\n",
    );
    s.push_str(&format!("echo {} > $cfg/bank0/num_lines\n", LINES.len()));
    for (i, name) in LINES.iter().enumerate() {
        s.push_str(&format!("mkdir $cfg/bank0/line{i}\necho {name} > $cfg/bank0/line{i}/name\n"));
    }
    s.push_str(
        "echo 1 > $cfg/live\n\
         chip=$(cat $cfg/bank0/chip_name)\n\
         sim=/sys/devices/platform/$(cat $cfg/dev_name)/$chip\n\
         echo \"gpio-sim: $chip at $sim\"\n",
    );
    s
}

/// A WAV (16-bit mono 8 kHz) made by sox from `effects` (e.g. `synth 1 sine 1000`).
fn sox_wav(out: &Path, effects: &str) {
    let sox = host_tool("sox");
    let st = Command::new(sox).args(["-n", "-r", "8000", "-c", "1", "-b", "16"]).arg(out).args(effects.split_whitespace()).status().unwrap();
    assert!(st.success(), "sox {effects}");
}

/// Samples from raw 16-bit little-endian audio.
fn samples(raw: &[u8]) -> Vec<f64> {
    raw.chunks_exact(2).map(|b| f64::from(i16::from_le_bytes([b[0], b[1]]))).collect()
}

fn rms(x: &[f64]) -> f64 {
    (x.iter().map(|s| s * s).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

/// The share of `x`'s power in a sine at `f` Hz (8 kHz sampling): 1.0 for a pure tone.
fn power_share(x: &[f64], f: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * f / 8000.0;
    let (mut c, mut s) = (0.0, 0.0);
    for (i, v) in x.iter().enumerate() {
        c += v * (w * i as f64).cos();
        s += v * (w * i as f64).sin();
    }
    let n = x.len().max(1) as f64;
    // A sine of amplitude A gives (c² + s²)·4/n² = A², whose power is A²/2.
    let tone = (c * c + s * s) * 2.0 / (n * n);
    let total = rms(x).powi(2);
    if total == 0.0 {
        0.0
    } else {
        tone / total
    }
}

/// The audio from the first sample louder than `floor` on, at most `len` samples.
fn from_onset(x: &[f64], floor: f64, len: usize) -> &[f64] {
    let start = x.iter().position(|s| s.abs() > floor).unwrap_or(x.len());
    &x[start..(start + len).min(x.len())]
}

#[test]
fn the_guest_kernel_has_gpio_sim_lines_that_pull_and_read_and_an_aloop_that_carries_a_tone() {
    let mut fs = Initramfs::new("smoke");
    for tool in ["gpiodetect", "gpioinfo", "gpioget", "aplay", "arecord"] {
        fs.tool(tool);
    }
    let tone = fs.scratch("tone.wav");
    sox_wav(&tone, "synth 3 sine 1000 vol 0.5");
    fs.file(&tone, "/tone.wav");
    let script = format!(
        "set -e\n{}\
         gpiodetect | section gpiodetect\n\
         gpioinfo $chip | section gpioinfo\n\
         {{ echo pull-up > $sim/sim_gpio0/pull; echo \"up $(gpioget $chip 0)\"\n\
            echo pull-down > $sim/sim_gpio0/pull; echo \"down $(gpioget $chip 0)\"\n\
            echo pull-up > $sim/sim_gpio3/pull; echo \"rd $(gpioget $chip 3)\"; }} | section pull\n\
         section cards < /proc/asound/cards\n\
         arecord -q -D plughw:Loopback,0,1 -f S16_LE -r 8000 -c 1 -d 2 -t raw /tmp/capture.raw &\n\
         rec=$!\n\
         aplay -q -D plughw:Loopback,1,1 /tone.wav\n\
         wait $rec\n\
         send capture /tmp/capture.raw\n",
        gpio_setup()
    );
    let initrd = fs.build(&script);
    let console = boot(&initrd, GUARD);
    console.expect_success("the smoke test");
    let show = |c: &Console| c.guest().to_string();

    let detect = console.section("gpiodetect").unwrap_or_default();
    assert!(detect.contains("[ctibox-qemu]") && detect.contains("(6 lines)"), "gpiodetect: {detect}\n{}", show(&console));
    let info = console.section("gpioinfo").unwrap_or_default();
    for (i, name) in LINES.iter().enumerate() {
        let listed = info.lines().any(|l| {
            let l = l.trim();
            l.strip_prefix("line").and_then(|r| r.split_once(':')).is_some_and(|(n, rest)| n.trim() == i.to_string() && rest.trim_start().starts_with(&format!("\"{name}\"")))
        });
        assert!(listed, "line {i} {name} in gpioinfo:\n{info}");
    }
    let pull = console.section("pull").unwrap_or_default();
    assert_eq!(pull.lines().collect::<Vec<_>>(), ["up 1", "down 0", "rd 1"], "{}", show(&console));
    let cards = console.section("cards").unwrap_or_default();
    assert!(cards.contains("Loopback") && cards.contains("Dummy"), "{cards}");

    let x = samples(&console.file("capture"));
    assert!(x.len() >= 15_000, "{} samples captured", x.len());
    let tone = from_onset(&x, 2000.0, 8000);
    assert_eq!(tone.len(), 8000, "less than a second of the tone came back ({} samples from its onset, {} in all)", tone.len(), x.len());
    let level = rms(tone);
    let want = 0.5 * 32767.0 / std::f64::consts::SQRT_2;
    assert!((level - want).abs() < want * 0.05, "RMS {level:.0}, want {want:.0}");
    let share = power_share(tone, 1000.0);
    assert!(share > 0.98, "1000 Hz carries {share:.3} of the power");
    assert!(power_share(tone, 1100.0) < 0.01);
}

/// Line 4001 on the FXS port, as tests/analog_sim.rs has it on the simulated board.
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

/// The box's configuration inside the guest: the SIP test configuration (lines
/// 1001-1008 as SIPp phones with known passwords) plus line 4001 on `fxs1`, the
/// board file tests/analog_kernel/board.toml, fixed loopback ports.
fn box_config() -> String {
    let c = sip_config(EXTRA);
    let fixed = [
        ("[board]\nname = \"sim\"", "[board]\nfile = \"board.toml\""),
        ("udp = \"127.0.0.1:0\"", "udp = \"127.0.0.1:5060\""),
        ("tcp = \"127.0.0.1:0\"", "tcp = \"127.0.0.1:5060\""),
        ("[cti]\nlisten = \"127.0.0.1:0\"", "[cti]\nlisten = \"127.0.0.1:5070\""),
        ("[http]\nlisten = \"127.0.0.1:0\"", "[http]\nlisten = \"127.0.0.1:8080\""),
    ];
    fixed.iter().fold(c, |c, (from, to)| {
        assert!(c.contains(from), "the SIP test configuration has no {from:?}");
        c.replacen(from, to, 1)
    })
}

/// What every box test's script starts with, after the GPIO set-up: `fail` (shows
/// the box's log and SIPp's errors, then exits 1), `wait_log TEXT SECONDS` (reads the
/// box's output as it comes, through a FIFO, until a line contains TEXT; fails at once
/// if the box exits, and when the guard, a failure bound, runs out), `sipp_run NAME
/// SCENARIO SERVICE PORT ARGS...`, and the box started and in service.
const BOX_PRELUDE: &str = r#"
: > /tmp/box.log
fail() {
  echo "FAIL: $*"
  [ -s /tmp/guard ] && cat /tmp/guard
  kill $box 2>/dev/null
  cat <&3 >> /tmp/box.log
  section box-log < /tmp/box.log
  for f in /tmp/*-errors.log; do [ -s "$f" ] && section "$(basename "$f")" < "$f"; done
  exit 1
}
wait_log() {
  ( sleep "$2"; echo "guard: the box did not log \"$1\" within $2 s" > /tmp/guard; kill $box ) 2>/dev/null &
  guard=$!
  while IFS= read -r line <&3; do
    echo "$line" >> /tmp/box.log
    case "$line" in *"$1"*) kill $guard 2>/dev/null; return 0 ;; esac
  done
  kill $guard 2>/dev/null
  fail "the box did not log \"$1\" (it exited, or the guard ran out)"
}
sipp_run() {
  name=$1; scen=$2; service=$3; port=$4; shift 4
  sipp 127.0.0.1:5060 -sf /sipp/$scen -s $service -m 1 -i 127.0.0.1 -p $port -mp $((port + 2000)) \
    -timeout 30s -timeout_error -nostdin -trace_err -error_file /tmp/$name-errors.log "$@" > /tmp/$name.out 2>&1
}
hook=$sim/sim_gpio0/pull
mkdir -p /tmp/data
mkfifo /tmp/box.fifo
ctibox run --config /etc/ctibox/ctibox.toml --data-dir /tmp/data > /tmp/box.fifo 2>&1 &
box=$!
exec 3< /tmp/box.fifo
wait_log "analog: port fxs1 in service for fxs-4001" 120
"#;

/// Stops the box and shows its whole log.
const BOX_EPILOGUE: &str = r#"
kill $box
cat <&3 >> /tmp/box.log
section box-log < /tmp/box.log
"#;

/// The log line the box writes when a port's line comes into service.
const IN_SERVICE: &str = "analog: port fxs1 in service for fxs-4001";

/// Runs `body` in a guest with the box (tests/analog_kernel/board.toml, the
/// configuration above), SIPp and its scenarios, the ALSA tools and `files` (host
/// path, guest path).
fn box_guest(tag: &str, body: &str, files: &[(&Path, &str)]) -> Console {
    let mut fs = Initramfs::new(tag);
    for tool in ["aplay", "arecord", "sipp"] {
        fs.tool(tool);
    }
    fs.binary(Path::new(common::bin()), "/usr/bin/ctibox");
    let config = fs.scratch("ctibox.toml");
    let board = fs.scratch("board.toml");
    std::fs::write(&config, box_config()).unwrap();
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/analog_kernel/board.toml"), &board).unwrap();
    let check = Command::new(common::bin()).arg("check-config").arg(&config).output().unwrap();
    assert!(check.status.success(), "the guest's configuration is refused: {}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    fs.file(&config, "/etc/ctibox/ctibox.toml").file(&board, "/etc/ctibox/board.toml");
    for scen in ["reg_only.xml", "callee_answer_box.xml", "caller_box_answer.xml"] {
        fs.file(&scenario(scen), &format!("/sipp/{scen}"));
    }
    for (host, guest) in files {
        fs.file(host, guest);
    }
    let script = format!("{}{BOX_PRELUDE}{body}{BOX_EPILOGUE}", gpio_setup());
    let initrd = fs.build(&script);
    boot(&initrd, GUARD)
}

/// The box's log as the guest sent it (whether or not its script succeeded).
fn box_log(console: &Console) -> String {
    console.section("box-log").unwrap_or_else(|| panic!("the guest sent no box log; its console:\n{}", console.guest()))
}

/// DTMF digits as a WAV: 120 ms of each digit's two tones (each -9 dBFS), 120 ms
/// apart, after 300 ms of silence.
fn dtmf_wav(dir: &Path, digits: &str) -> std::path::PathBuf {
    let low = |d: char| match d {
        '1' | '2' | '3' => 697,
        '4' | '5' | '6' => 770,
        '7' | '8' | '9' => 852,
        _ => 941,
    };
    let high = |d: char| match d {
        '1' | '4' | '7' => 1209,
        '3' | '6' | '9' => 1477,
        _ => 1336,
    };
    let gap = dir.join("gap.wav");
    sox_wav(&gap, "trim 0 0.12");
    let lead = dir.join("lead.wav");
    sox_wav(&lead, "trim 0 0.3");
    let mut parts = vec![lead];
    for (i, d) in digits.chars().enumerate() {
        let f = dir.join(format!("digit{i}.wav"));
        sox_wav(&f, &format!("synth 0.12 sine {} sine {} channels 1", low(d), high(d)));
        parts.push(f);
        parts.push(gap.clone());
    }
    let out = dir.join(format!("dtmf-{digits}.wav"));
    let st = Command::new(host_tool("sox")).args(&parts).arg(&out).status().unwrap();
    assert!(st.success(), "sox: joining the digits");
    out
}

#[test]
fn off_hook_on_gpio_sim_gives_dial_tone_on_aloop_and_dtmf_calls_a_sipp_phone_until_on_hook() {
    let scratch = common::TempDir::new("analog-kernel-a");
    let dtmf = dtmf_wav(scratch.path(), "1002");
    let body = format!(
        r#"
sipp_run reg reg_only.xml 1002 5072 -au 1002 -ap '{pw}' || fail "sipp could not register 1002"
sipp_run callee callee_answer_box.xml 1002 5072 &
callee=$!
echo pull-up > $hook
arecord -q -D plughw:Loopback,1,0 -f S16_LE -r 8000 -c 1 -d 3 -t raw /tmp/dialtone.raw || fail "cannot capture the port's playback"
send dialtone /tmp/dialtone.raw
aplay -q -D plughw:Loopback,1,1 /dtmf-1002.wav || fail "cannot play into the port's capture"
wait_log "analog: port fxs1 (fxs-4001) calls 1002" 60
wait_log "analog: port fxs1 joined to RTP" 60
echo pull-down > $hook
wait $callee || fail "the SIPp callee 1002 did not get its call and the box's BYE (sipp exited $?)"
echo "the callee succeeded" | section callee
"#,
        pw = password("1002")
    );
    let console = box_guest("a", &body, &[(&dtmf, "/dtmf-1002.wav")]);
    if console.section("dialtone").is_some() {
        let x = samples(&console.file("dialtone"));
        let tone = from_onset(&x, 1000.0, 8000);
        assert_eq!(tone.len(), 8000, "less than a second of dial tone after lifting the handset ({} samples from its onset, {} in all); the guest:\n{}", tone.len(), x.len(), console.guest());
        let (a, b) = (power_share(tone, 350.0), power_share(tone, 440.0));
        assert!(a > 0.35 && b > 0.35 && a + b > 0.9, "US dial tone is 350 + 440 Hz: their shares of the power are {a:.3} and {b:.3}; RMS {:.0}", rms(tone));
    }
    console.expect_success("FXS outgoing on the real drivers");
    let log = box_log(&console);
    for want in [IN_SERVICE, "analog: port fxs1 (fxs-4001) calls 1002", "analog: port fxs1 joined to RTP"] {
        assert!(log.contains(want), "the box did not log {want:?}:\n{log}");
    }
    assert!(console.section("callee").is_some());
}

#[test]
fn a_sipp_call_rings_the_gpio_sim_port_with_caller_id_on_aloop_and_off_hook_answers() {
    let body = format!(
        r#"
sipp_run caller caller_box_answer.xml 4001 5080 -au 1001 -ap '{pw}' -key caller 1001 &
caller=$!
wait_log "analog: port fxs1 rings for" 60
fr=$sim/sim_gpio2/value
rm=$sim/sim_gpio1/value
read last < $fr
flips=0
n=0
while [ $flips -lt 6 ] && [ $n -lt 3000 ]; do
  read v < $fr
  n=$((n + 1))
  if [ "$v" != "$last" ]; then flips=$((flips + 1)); last=$v; fi
done
read ringing < $rm
{{ echo "fr_flips $flips"; echo "samples $n"; echo "rm $ringing"; }} | section ring
arecord -q -D plughw:Loopback,1,0 -f S16_LE -r 8000 -c 1 -d 6 -t raw /tmp/callerid.raw || fail "cannot capture the port's playback"
send callerid /tmp/callerid.raw
echo pull-up > $hook
wait $caller || fail "the SIPp caller 1001 was not answered and hung up cleanly (sipp exited $?)"
read after < $rm
echo pull-down > $hook
echo "rm $after" | section answered
"#,
        pw = password("1001")
    );
    let console = box_guest("b", &body, &[]);
    if let Some(ring) = console.section("ring") {
        let flips: u32 = ring.lines().find_map(|l| l.strip_prefix("fr_flips ")).and_then(|v| v.parse().ok()).unwrap_or(0);
        assert!(flips >= 6, "F/R did not toggle while ringing: {ring}\nthe guest:\n{}", console.guest());
        assert!(ring.contains("rm 1"), "RM was not up while F/R toggled: {ring}");
    }
    if console.section("callerid").is_some() {
        let raw = console.file("callerid");
        let audio: Vec<i16> = raw.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
        let msgs = judged("class", &audio, "analog-kernel");
        let ok = msgs.iter().any(|m| m.iter().any(|l| l == "field 02 1001") && m.iter().any(|l| l == "field 07 Caller"));
        assert!(ok, "spandsp decoded no caller ID 1001 \"Caller\" between the rings: {msgs:?}; the guest:\n{}", console.guest());
        // Bell 202: the mark bits after the 300 seizure bits are 1200 Hz (V.23's are 1300).
        let x = samples(&raw);
        let start = x.iter().position(|s| s.abs() > 1000.0).unwrap_or(0);
        let marks = &x[(start + 2080).min(x.len())..(start + 3040).min(x.len())];
        let share = power_share(marks, 1200.0);
        assert!(share > 0.7, "the mark tone is not Bell 202's 1200 Hz (share {share:.3}, V.23's 1300 Hz {:.3})", power_share(marks, 1300.0));
    }
    console.expect_success("FXS incoming on the real drivers");
    let log = box_log(&console);
    for want in [IN_SERVICE, "analog: port fxs1 rings for"] {
        assert!(log.contains(want), "the box did not log {want:?}:\n{log}");
    }
    assert_eq!(console.section("answered").as_deref(), Some("rm 0\n"), "the ringer was still on after the answer");
}
