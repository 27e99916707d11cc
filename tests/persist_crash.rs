//! A writer killed with SIGKILL in the middle of saving state always leaves the
//! previous file or the new one, whole — never a torn one. The writer is this test
//! binary re-executed as a child; the parent kills it at a point chosen from the
//! child's own "saving N" announcements, so no timing is guessed.

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
#[test]
fn persist_child_writer() {
    let Some(file) = std::env::var_os(CHILD_ENV) else { return };
    let path = PathBuf::from(file);
    let mut gen = read_gen(&path).unwrap_or(0);
    loop {
        gen += 1;
        println!("saving {gen}");
        write_atomic(&path, &seal(&payload(gen))).unwrap();
        println!("saved {gen}");
    }
}

#[test]
fn sigkill_mid_save_never_tears_the_file() {
    let dir = std::env::temp_dir().join(format!("ctibox-persist-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("state.bin");
    let exe = std::env::current_exe().unwrap();
    let mut rng: u64 = 0x1234_5678;
    let rounds = 150;
    let mut kills_mid_save = 0;
    for round in 0..rounds {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let announcements = 1 + (rng >> 33) % 12;
        let mut child = Command::new(&exe)
            .args(["--exact", "persist_child_writer", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut last_saving = None;
        let mut last_saved = None;
        let mut seen = 0;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("saving ") {
                last_saving = Some(n.parse::<u64>().unwrap());
                seen += 1;
                if seen == announcements {
                    child.kill().unwrap(); // SIGKILL, as in a crash or power cut
                    break;
                }
            } else if let Some(n) = line.strip_prefix("saved ") {
                last_saved = Some(n.parse::<u64>().unwrap());
            }
        }
        child.wait().unwrap();
        let on_disk = read_gen(&path);
        let saving = last_saving.expect("child announced a save");
        // Whole, and either the save that was under way or the one before it.
        let ok = on_disk == Some(saving) || on_disk == last_saved || (on_disk.is_none() && saving == 1);
        assert!(ok, "round {round}: file holds {on_disk:?}, saving {saving}, last saved {last_saved:?}");
        if on_disk != Some(saving) {
            kills_mid_save += 1;
        }
    }
    // Leftover temp files of killed writers are allowed; the real file is what counts.
    eprintln!("{rounds} kills, {kills_mid_save} landed before the rename of the save under way");
    let _ = std::fs::remove_dir_all(&dir);
}
