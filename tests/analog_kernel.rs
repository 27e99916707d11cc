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
