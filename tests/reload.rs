//! SIGHUP reloads the configuration file; a bad new configuration is refused with its
//! file, line, column and reason, and the box keeps serving with the old one.
// Tests of the real binary use sockets, files and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod common;
use common::*;
use nix::sys::signal::Signal;

fn default_config() -> String {
    let out = std::process::Command::new(bin()).arg("print-default-config").output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn renamed(cfg: &str, name: &str) -> String {
    let mut in_system = false;
    let mut done = false;
    let mut out = String::new();
    for line in cfg.lines() {
        if line.trim_start().starts_with('[') {
            in_system = line.trim() == "[system]";
        }
        if in_system && !done && line.trim_start().starts_with("name") {
            out.push_str(&format!("name = \"{name}\"\n"));
            done = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(done, "the default config has a [system] name to change");
    out
}

fn status(b: &BoxProc) -> serde_json::Value {
    let (code, body) = b.http_get("/status");
    assert_eq!(code, 200);
    serde_json::from_str(&body).unwrap()
}

#[test]
fn sighup_applies_a_good_config_and_refuses_a_bad_one() {
    let dir = TempDir::new("reload");
    let file = dir.path().join("ctibox.toml");
    let base = default_config();
    std::fs::write(&file, &base).unwrap();
    let mut b = BoxProc::start(Start { config: Some(&file), ..Default::default() });
    assert_eq!(status(&b)["config_generation"], 1);

    // A good change is applied.
    std::fs::write(&file, renamed(&base, "branch-7")).unwrap();
    b.signal(Signal::SIGHUP);
    b.wait_line(|l| l.text().contains("config: generation 2 applied"));
    let s = status(&b);
    assert_eq!((s["config_generation"].as_u64(), s["name"].as_str()), (Some(2), Some("branch-7")));

    // A broken file is refused, naming where and why; the old config keeps running.
    let broken = format!("{}\n[sip\n", renamed(&base, "never-applied"));
    let bad_line = broken.lines().count();
    std::fs::write(&file, &broken).unwrap();
    b.signal(Signal::SIGHUP);
    let refused = b.wait_line(|l| l.text().contains("configuration refused"));
    let expected = format!("{}:{}:", file.display(), bad_line);
    assert!(refused.text().contains(&expected), "{refused:?} should name {expected}");
    let s = status(&b);
    assert_eq!((s["config_generation"].as_u64(), s["name"].as_str()), (Some(2), Some("branch-7")));

    // And it still stops cleanly.
    b.signal(Signal::SIGTERM);
    assert_eq!(b.wait_exit(), Some(0));
}

#[test]
fn a_bad_config_at_start_is_refused_with_its_position() {
    let dir = TempDir::new("badstart");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[system]\nname = 7\n").unwrap();
    let out = std::process::Command::new(bin()).arg("run").arg("--config").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:2:", file.display())), "{err}");
}
