//! A writer killed with SIGKILL in the middle of saving state always leaves the
//! previous file or the new one, whole — never a torn one. The writer is this test
//! binary re-executed as a child (the test has its own `main`, `harness = false` in
//! Cargo.toml, so the child is not a test); the parent kills it at a point chosen
//! from the child's own "saving N" announcements, so no timing is guessed, and checks
//! that kills did land inside saves: the save's temporary file was on disk (created,
//! not yet renamed) when the child died.
// Files and a child process; the clock only for a guard against a hung child.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use ctibox::persist::{seal, unseal, write_atomic};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const CHILD_ENV: &str = "CTIBOX_PERSIST_CHILD_FILE";

/// Deterministic payload for generation `gen`: its number, then bytes derived from it.
fn payload(gen: u64) -> Vec<u8> {
    let len = 40_000 + (gen % 7) as usize * 20_000;
    let mut v = gen.to_le_bytes().to_vec();
    let mut x = gen.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    v
}

fn read_gen(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let body = unseal(&bytes).unwrap_or_else(|e| panic!("torn or damaged state file: {e}"));
    let gen = u64::from_le_bytes(body[..8].try_into().unwrap());
    assert_eq!(body, payload(gen).as_slice(), "generation {gen} content is not whole");
    Some(gen)
}

/// The child: saves generation after generation until it is killed.
fn child_writer(file: std::ffi::OsString) {
    let path = PathBuf::from(file);
    let mut gen = read_gen(&path).unwrap_or(0);
    loop {
        gen += 1;
        println!("saving {gen}");
        write_atomic(&path, &seal(&payload(gen))).unwrap();
        println!("saved {gen}");
    }
}

fn main() {
    if let Some(file) = std::env::var_os(CHILD_ENV) {
        child_writer(file);
        return;
    }
    // Run the one test; a panic fails the process (non-zero exit) as the harness would.
    sigkill_mid_save_never_tears_the_file();
    println!("test sigkill_mid_save_never_tears_the_file ... ok");
    println!("1 passed, 0 failed");
}

fn sigkill_mid_save_never_tears_the_file() {
    let dir = std::env::temp_dir().join(format!("ctibox-persist-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.bin");
    let exe = std::env::current_exe().unwrap();
    let mut rng: u64 = 0x1234_5678;
    let rounds = 150;
    let mut kills_mid_save = 0;
    let mut inside_save = 0;
    for round in 0..rounds {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let announcements = 1 + (rng >> 33) % 12;
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Where in the save to kill: at its announcement (before the temporary file
        // exists), once the temporary file exists, or once it holds the whole blob
        // (written, being synced, not yet renamed).
        let moment = (rng >> 20) % 3;
        let pid = child.id();
        let tmp = dir.join(format!(".state.bin.tmp.{pid}"));
        let mut last_saving = None;
        let mut last_saved = None;
        let mut seen = 0;
        let mut killed = false;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("saving ") {
                let gen = n.parse::<u64>().unwrap();
                last_saving = Some(gen);
                seen += 1;
                // After the kill, the lines still in the pipe say how far it got.
                if seen == announcements && !killed {
                    let whole = seal(&payload(gen)).len() as u64;
                    if moment > 0 {
                        // Watch the save (no sleep: spin, bounded) until its moment
                        // comes or the child has moved past it.
                        let t0 = std::time::Instant::now();
                        let mut saw = false;
                        loop {
                            match std::fs::metadata(&tmp) {
                                Ok(m) if moment == 1 || m.len() == whole => break,
                                Ok(_) => saw = true,
                                Err(_) if saw => break, // renamed: the save is over
                                Err(_) => {}
                            }
                            assert!(t0.elapsed() < std::time::Duration::from_secs(20), "round {round}: the save never came");
                            std::thread::yield_now();
                        }
                    }
                    child.kill().unwrap(); // SIGKILL, as in a crash or power cut
                    killed = true;
                }
            } else if let Some(n) = line.strip_prefix("saved ") {
                last_saved = Some(n.parse::<u64>().unwrap());
            }
        }
        child.wait().unwrap();
        // The save under way had created its temporary file and not renamed it yet.
        if tmp.exists() {
            inside_save += 1;
            let _ = std::fs::remove_file(&tmp);
        }
        let on_disk = read_gen(&path);
        let saving = last_saving.expect("child announced a save");
        // Whole, and either the save that was under way or the one before it.
        let before = saving.checked_sub(1).filter(|&g| g > 0);
        // In order: the last save it finished is the one before, or (killed between
        // finishing a save and announcing the next) the last one announced.
        assert!(last_saved.is_none() || last_saved == before || last_saved == Some(saving), "the child saves in order: saving {saving}, saved {last_saved:?}");
        // A finished save is on disk, whole.
        let ok = if last_saved == Some(saving) { on_disk == Some(saving) } else { on_disk == Some(saving) || on_disk == before };
        assert!(ok, "round {round}: file holds {on_disk:?}, saving {saving}, last saved {last_saved:?}");
        if on_disk != Some(saving) {
            kills_mid_save += 1;
        }
    }
    eprintln!("{rounds} kills: {inside_save} inside a save (its temporary file on disk), {kills_mid_save} before the rename of the save under way");
    // Without kills inside saves the test would prove nothing about torn files.
    assert!(inside_save >= rounds / 3, "only {inside_save} of {rounds} kills landed inside a save");
    assert!(kills_mid_save >= inside_save);
    let _ = std::fs::remove_dir_all(&dir);
}
