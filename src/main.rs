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
  peer status|switchover [--config FILE] [--data-dir DIR]
        ask the running box (over its control socket in the data directory) for
        its pair role, or make the active box hand over to its standby
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

/// `ctibox peer status|switchover`: one command to the running box's control socket.
fn peer(args: &[String]) -> Result<u8, String> {
    let Some((what, rest)) = args.split_first() else { return Err("peer needs status or switchover".into()) };
    if !matches!(what.as_str(), "status" | "switchover") {
        return Err(format!("peer: unknown command {what:?} (status, switchover)"));
    }
    let mut o = RunOptions::default();
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let value = it.next().cloned().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--config" | "-c" => o.config = Some(PathBuf::from(value)),
            "--data-dir" => o.data_dir = Some(PathBuf::from(value)),
            other => return Err(format!("peer: unknown option {other:?}")),
        }
    }
    let cfg = o.load().map_err(|e| format!("configuration refused: {e}"))?;
    let dir = ctibox::io::run::data_dir(&o, &cfg);
    match ctibox::io::control::request(&dir, &format!("peer {what}")) {
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
