//! The caller ID judge: spandsp's ADSI receiver (Debian's libspandsp-dev, installed by
//! scripts/deps), a decoder the project did not write, in a small C program built
//! once per test binary from tests/judge/cid_judge.c.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // builds and runs the judge, writes its audio files

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The judge's executable, built on first use.
pub fn judge() -> &'static PathBuf {
    static JUDGE: OnceLock<PathBuf> = OnceLock::new();
    JUDGE.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cid_judge-{}", std::process::id()));
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/judge/cid_judge.c");
        let flags = Command::new("pkg-config").args(["--cflags", "--libs", "spandsp"]).output().expect("pkg-config (scripts/deps installs it)");
        assert!(flags.status.success(), "spandsp is not installed; scripts/deps installs libspandsp-dev: {}", String::from_utf8_lossy(&flags.stderr));
        let flags = String::from_utf8(flags.stdout).unwrap();
        let st = Command::new("cc").arg("-O2").arg("-o").arg(&out).arg(src).args(flags.split_whitespace()).status().expect("cc (scripts/deps installs build-essential)");
        assert!(st.success(), "the judge did not build");
        out
    })
}

/// What the judge printed for `audio` (16-bit 8 kHz) under `standard` (`class`: Bell
/// 202, `clip`: ETSI V.23, `dtmf`: DTMF CLIP): one Vec of lines per message it
/// accepted ("msg TYPE", then "field TYPE TEXT" per field).
pub fn judged(standard: &str, audio: &[i16], name: &str) -> Vec<Vec<String>> {
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cid-{name}-{}.raw", std::process::id()));
    let bytes: Vec<u8> = audio.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(&file, bytes).unwrap();
    let msgs = judge_file(standard, &file);
    let _ = std::fs::remove_file(&file);
    msgs
}

/// What the judge decoded from a file of 16-bit little-endian 8 kHz audio, as
/// `judged` gives it.
pub fn judge_file(standard: &str, file: &Path) -> Vec<Vec<String>> {
    let out = Command::new(judge()).arg(standard).arg(file).output().unwrap();
    assert!(out.status.success(), "the judge failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut msgs = vec![];
    let mut cur = vec![];
    for l in text.lines() {
        if l == "end" {
            msgs.push(std::mem::take(&mut cur));
        } else {
            cur.push(l.to_string());
        }
    }
    msgs
}
