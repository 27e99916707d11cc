//! The `ctibox` command: argument parsing and dispatch; the work lives in the library.
#![allow(clippy::disallowed_methods)]

use ctibox::io::run::{run, RunOptions};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: ctibox <command> [options]

commands:
  run [--config FILE] [--data-dir DIR] [--sip ADDR] [--cti ADDR] [--http ADDR] [--log LEVEL]
        run the appliance (with no --config: the embedded default on the simulated board)
  check-config FILE
        validate a configuration file; exit 1 naming file:line:column and the reason
        of every error found
  cti [--connect HOST:PORT] [--app NAME] [--secret-file FILE] <command>
        a command-line CTI application: watch, devices, answer, redirect, drop,
        make-call, raw (`ctibox cti help` for details)
  peer status|switchover|release [--force] [--wait-s N] [--config FILE] [--data-dir DIR]
        ask the running box (over its control socket in the data directory) for
        its pair role, or make the active box hand over to its standby; a
        switchover waits up to N s (10) for calls in setup, which a handover
        would lose; --force hands over at once; release takes the service
        address off the interface (after the box has stopped: ExecStopPost)
  analog [--config FILE] [--data-dir DIR] status|hook PORT off|on|flash PORT|
         dtmf PORT DIGITS|dial PORT DIGITS
        the simulated board's FXS ports: show them, or lift, hang up, flash and
        dial as a subscriber would (DTMF as the port's detector reports it, or
        rotary pulses at 10 pps)
  hash-secret
        read a CTI application secret from stdin (one line) and print its Argon2id
        PHC string for an [[app_user]] secret
  print-default-config
        print the embedded default configuration
  version
        print the version
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let level = std::env::var("CTIBOX_LOG").ok().and_then(|l| ctibox::logger::parse_level(&l));
    ctibox::logger::init(level.unwrap_or(log::LevelFilter::Info));
    let code = match dispatch(&args) {
        Ok(code) => ExitCode::from(code),
        Err(msg) => {
            eprintln!("ctibox: {msg}\n\n{USAGE}");
            ExitCode::from(2)
        }
    };
    // Log lines still queued for the writer thread go out before the process ends.
    log::logger().flush();
    code
}

fn dispatch(args: &[String]) -> Result<u8, String> {
    let Some((cmd, rest)) = args.split_first() else { return Err("no command given".into()) };
    match cmd.as_str() {
        "run" => Ok(run(parse_run(rest)?) as u8),
        "check-config" => {
            let [file] = rest else { return Err("check-config takes one FILE".into()) };
            match ctibox::config::check_file(&PathBuf::from(file)) {
                Ok(c) => {
                    println!("{}: ok (board {}, {} devices, {} lines)", file, c.board.name, c.devices.len(), c.lines.len());
                    Ok(0)
                }
                Err(errors) => {
                    for e in errors {
                        eprintln!("{e}");
                    }
                    Ok(1)
                }
            }
        }
        "cti" => cti(rest),
        "peer" => peer(rest),
        "analog" => analog(rest),
        "hash-secret" => {
            if !rest.is_empty() {
                return Err("hash-secret takes no arguments; it reads the secret from stdin".into());
            }
            hash_secret()
        }
        "print-default-config" => {
            print!("{}", ctibox::config::DEFAULT_TOML);
            Ok(0)
        }
        "version" | "--version" | "-V" => {
            println!("ctibox {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(0)
        }
        other => Err(format!("unknown command {other:?}")),
    }
}

fn cti(args: &[String]) -> Result<u8, String> {
    use ctibox::io::cti_client;
    if matches!(args, [h] if h == "help" || h == "--help" || h == "-h") {
        print!("{}", cti_client::USAGE);
        return Ok(0);
    }
    let opts = match cti_client::parse_args(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ctibox: {e}\n\n{}", cti_client::USAGE);
            return Ok(2);
        }
    };
    match cti_client::run(&opts) {
        Ok(code) => Ok(code),
        Err(msg) => {
            eprintln!("ctibox cti: {msg}");
            Ok(1)
        }
    }
}

fn hash_secret() -> Result<u8, String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| format!("hash-secret: cannot read stdin: {e}"))?;
    let secret = line.trim_end_matches(['\r', '\n']);
    if secret.len() < 12 {
        eprintln!("ctibox: hash-secret: refusing a secret shorter than 12 characters");
        return Ok(1);
    }
    let salt = argon2::password_hash::try_generate_salt().map_err(|e| format!("hash-secret: no randomness: {e}"))?;
    match ctibox::config::hash_secret(secret, &salt) {
        Ok(phc) => {
            println!("{phc}");
            Ok(0)
        }
        Err(e) => {
            eprintln!("ctibox: hash-secret: {e}");
            Ok(1)
        }
    }
}

/// `ctibox peer release`: takes the service address off the interface, for when the
/// box's process is gone (the unit's ExecStopPost): the host's kernel would otherwise
/// go on answering ARP for it after a crash, pulling phones away from the peer that
/// took over, until the box restarts and removes it.
fn release(cfg: &ctibox::config::Config) -> Result<u8, String> {
    let Some(p) = &cfg.peer else {
        println!("no [peer]: nothing to release");
        return Ok(0);
    };
    let sa = p.service_address;
    match ctibox::io::pairnet::remove_address(&p.interface, sa.addr, sa.prefix) {
        Ok(true) => println!("released {}/{} from {}", sa.addr, sa.prefix, p.interface),
        Ok(false) => println!("{}/{} was not on {}", sa.addr, sa.prefix, p.interface),
        Err(e) => {
            eprintln!("ctibox: cannot remove {}/{} from {}: {e}", sa.addr, sa.prefix, p.interface);
            return Ok(1);
        }
    }
    Ok(0)
}

/// `ctibox peer status|switchover`: one command to the running box's control socket.
fn peer(args: &[String]) -> Result<u8, String> {
    let Some((what, rest)) = args.split_first() else { return Err("peer needs status, switchover or release".into()) };
    if !matches!(what.as_str(), "status" | "switchover" | "release") {
        return Err(format!("peer: unknown command {what:?} (status, switchover, release)"));
    }
    let mut o = RunOptions::default();
    let (mut force, mut wait_s) = (false, 10u64);
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        if flag == "--force" && what == "switchover" {
            force = true;
            continue;
        }
        let value = it.next().cloned().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--config" | "-c" => o.config = Some(PathBuf::from(value)),
            "--data-dir" => o.data_dir = Some(PathBuf::from(value)),
            "--wait-s" if what == "switchover" => wait_s = value.parse().map_err(|_| format!("--wait-s {value:?}: not a number of seconds"))?,
            other => return Err(format!("peer: unknown option {other:?}")),
        }
    }
    let cfg = o.load().map_err(|e| format!("configuration refused: {e}"))?;
    if what == "release" {
        return release(&cfg);
    }
    let dir = ctibox::io::run::data_dir(&o, &cfg);
    let command = if force { format!("peer {what} --force") } else { format!("peer {what}") };
    // A switchover waits (up to --wait-s) for the calls in setup to be answered or
    // ended: the standby holds established calls only.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(wait_s);
    let answer = loop {
        match ctibox::io::control::request(&dir, &command) {
            Ok(a) if a.starts_with("busy:") && std::time::Instant::now() < until => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Ok(a) if a.starts_with("busy:") => {
                break Ok(format!("error: no switchover: {} after {wait_s} s (--force hands over anyway)\n", a["busy: ".len()..].trim_end()));
            }
            other => break other,
        }
    };
    match answer {
        Ok(answer) => {
            print!("{answer}");
            Ok(if answer.starts_with("error:") { 1 } else { 0 })
        }
        Err(e) => {
            eprintln!("ctibox: {e}");
            Ok(1)
        }
    }
}

/// `ctibox analog ...`: one command to the running box's control socket.
fn analog(args: &[String]) -> Result<u8, String> {
    let mut o = RunOptions::default();
    let mut words = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" | "-c" => o.config = Some(PathBuf::from(it.next().ok_or("--config needs a value")?)),
            "--data-dir" => o.data_dir = Some(PathBuf::from(it.next().ok_or("--data-dir needs a value")?)),
            w => words.push(w.to_string()),
        }
    }
    if words.is_empty() {
        return Err("analog needs a command: status, hook, flash, dtmf, dial".into());
    }
    let cfg = o.load().map_err(|e| format!("configuration refused: {e}"))?;
    let dir = ctibox::io::run::data_dir(&o, &cfg);
    match ctibox::io::control::request(&dir, &format!("analog {}", words.join(" "))) {
        Ok(answer) => {
            print!("{answer}");
            Ok(if answer.starts_with("error:") { 1 } else { 0 })
        }
        Err(e) => {
            eprintln!("ctibox: {e}");
            Ok(1)
        }
    }
}

fn parse_run(args: &[String]) -> Result<RunOptions, String> {
    let mut o = RunOptions::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{flag} needs a value"));
        let addr = |v: String| v.parse().map_err(|_| format!("{flag}: {v:?} is not an address like 127.0.0.1:5060"));
        match flag.as_str() {
            "--config" | "-c" => o.config = Some(PathBuf::from(value()?)),
            "--data-dir" => o.data_dir = Some(PathBuf::from(value()?)),
            "--sip" => o.sip = Some(addr(value()?)?),
            "--cti" => o.cti = Some(addr(value()?)?),
            "--http" => o.http = Some(addr(value()?)?),
            "--log" => {
                let v = value()?;
                let l = ctibox::logger::parse_level(&v).ok_or_else(|| format!("--log: unknown level {v:?}"))?;
                log::set_max_level(l);
            }
            other => return Err(format!("run: unknown option {other:?}")),
        }
    }
    Ok(o)
}
