//! `ctibox cti`: a command-line CTI application over TCP, for operators and scripts.
//! Blocking std sockets and one reader thread; it speaks the same wire types as the
//! server (core::cti::wire) and holds no state beyond one connection.

use crate::core::cti::wire::{Media, Request, RequestId};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

pub const USAGE: &str = "\
usage: ctibox cti [--server HOST:PORT[,HOST:PORT]] [--app NAME] [--secret-file FILE] <command>

  The secret is the first line of --secret-file, else $CTIBOX_CTI_SECRET.
  --server (or --connect) defaults to 127.0.0.1:2748; --app defaults to $CTIBOX_CTI_APP.
  With two servers (the two boxes of a pair, primary first) the client uses the one
  that is active: a standby's hello says so, and it goes on to the other. `watch`
  moves to the other server when its server is lost, logs in again, re-opens its
  devices and asks for a snapshot of their calls; it stays there (no fail-back).

commands:
  watch [DEVICE...]            open the devices (all the application may open when
                               none are named) and print every event as one JSON line
  devices                      list the devices the application may open
  answer DEVICE CALL [--media IP:PORT]
  redirect DEVICE CALL TO
  drop DEVICE CALL
  make-call DEVICE TO [--media IP:PORT]
  raw                          send each JSON request line of stdin as it is; print
                               everything the server sends (hello, replies, events);
                               logs in first only when --app is given
";

/// Longest wait for the box to answer anything; a guard, not a protocol timer.
const REPLY_WAIT: Duration = Duration::from_secs(30);
const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// How long `watch` tries to get back to a server after losing its own, and how
/// often.
const RECONNECT_FOR: Duration = Duration::from_secs(60);
const RECONNECT_GAP: Duration = Duration::from_millis(100);
/// A server being failed over from may be gone with its host: a connection attempt
/// that takes longer than this is given up for the other server.
const RECONNECT_WAIT: Duration = Duration::from_secs(1);
/// The client sends a heartbeat at least this often, and takes a server that has
/// answered nothing for `SILENCE` for lost (frozen, or its network cut).
const BEAT_AT_LEAST: Duration = Duration::from_secs(1);
const SILENCE: Duration = Duration::from_secs(3);
/// Heartbeat period when the login reply does not name the server's timeout.
const DEFAULT_HEARTBEAT_S: u64 = 30;

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The servers in order of preference (primary, backup).
    pub servers: Vec<String>,
    pub app: Option<String>,
    pub secret_file: Option<String>,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Watch { devices: Vec<String> },
    Devices,
    Answer { device: String, call: String, media: Option<SocketAddr> },
    Redirect { device: String, call: String, to: String },
    Drop { device: String, call: String },
    MakeCall { device: String, to: String, media: Option<SocketAddr> },
    Raw,
}

/// Parses `ctibox cti ...` arguments (after `cti`).
pub fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut servers = vec!["127.0.0.1:2748".to_string()];
    let mut app = std::env::var("CTIBOX_CTI_APP").ok().filter(|a| !a.is_empty());
    let mut secret_file = None;
    let mut media = None;
    let mut words = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--connect" | "--server" => {
                let v = value()?;
                servers = v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
                if servers.is_empty() || servers.len() > 2 {
                    return Err(format!("{a}: {v:?} is not one or two HOST:PORT separated by a comma"));
                }
            }
            "--app" => app = Some(value()?),
            "--secret-file" => secret_file = Some(value()?),
            "--media" => {
                let v = value()?;
                media = Some(v.parse::<SocketAddr>().map_err(|_| format!("--media: {v:?} is not IP:PORT like 192.0.2.10:4000"))?);
            }
            s if s.starts_with("--") => return Err(format!("cti: unknown option {s:?}")),
            _ => words.push(a.clone()),
        }
    }
    let Some((cmd, rest)) = words.split_first() else { return Err("cti: no command given".into()) };
    let n = |k: usize, shape: &str| if rest.len() == k { Ok(()) } else { Err(format!("cti: usage: {shape}")) };
    let command = match cmd.as_str() {
        "watch" => Command::Watch { devices: rest.to_vec() },
        "devices" => n(0, "devices").map(|_| Command::Devices)?,
        "answer" => n(2, "answer DEVICE CALL [--media IP:PORT]")
            .map(|_| Command::Answer { device: rest[0].clone(), call: rest[1].clone(), media })?,
        "redirect" => n(3, "redirect DEVICE CALL TO")
            .map(|_| Command::Redirect { device: rest[0].clone(), call: rest[1].clone(), to: rest[2].clone() })?,
        "drop" => n(2, "drop DEVICE CALL").map(|_| Command::Drop { device: rest[0].clone(), call: rest[1].clone() })?,
        "make-call" => n(2, "make-call DEVICE TO [--media IP:PORT]")
            .map(|_| Command::MakeCall { device: rest[0].clone(), to: rest[1].clone(), media })?,
        "raw" => n(0, "raw").map(|_| Command::Raw)?,
        other => return Err(format!("cti: unknown command {other:?}")),
    };
    if media.is_some() && !matches!(command, Command::Answer { .. } | Command::MakeCall { .. }) {
        return Err("cti: --media goes with answer or make-call".into());
    }
    Ok(Options { servers, app, secret_file, command })
}

/// Runs a parsed command; returns the exit code, or a sentence for stderr (exit 1).
/// Connects to the first server that answers and is not a standby (starting from
/// `from`); returns the connection and which server it is.
fn connect_active(o: &Options, from: usize, wait: Duration) -> Result<(Conn, usize), String> {
    let mut why = Vec::new();
    for k in 0..o.servers.len() {
        let i = (from + k) % o.servers.len();
        match Conn::connect(&o.servers[i], wait) {
            Ok(c) => {
                let v: Value = serde_json::from_str(&c.hello).unwrap_or(Value::Null);
                if v["role"].as_str().is_some_and(|r| r != "active") && o.servers.len() > 1 {
                    why.push(format!("{} is {} of its pair", o.servers[i], v["role"].as_str().unwrap_or("?")));
                    continue;
                }
                return Ok((c, i));
            }
            Err(e) => why.push(e),
        }
    }
    Err(why.join("; "))
}

pub fn run(o: &Options) -> Result<u8, String> {
    if let Command::Watch { devices } = &o.command {
        return watch_with_failover(o, devices);
    }
    let (mut c, _) = connect_active(o, 0, CONNECT_WAIT)?;
    if o.command == Command::Raw {
        if o.app.is_some() {
            c.login(o)?;
        }
        return c.raw();
    }
    c.login(o)?;
    match &o.command {
        Command::Watch { .. } => unreachable!("handled above"),
        Command::Devices => {
            let reply = c.request(&Request::ListDevices)?;
            for d in reply["devices"].as_array().map(Vec::as_slice).unwrap_or_default() {
                let lines: Vec<&str> = d["lines"].as_array().map(|l| l.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
                let state = if d["open"] == true {
                    "open"
                } else if d["in_use"] == true {
                    "in use"
                } else {
                    "free"
                };
                println!("{:<20} {:<16} {:<8} {}", d["name"].as_str().unwrap_or("?"), d["kind"].as_str().unwrap_or("?"), state, lines.join(" "));
            }
            Ok(0)
        }
        Command::Answer { device, call, media } => {
            c.open(device)?;
            c.request(&Request::Answer { call: call.clone(), media: media.map(to_media), box_media: false })?;
            println!("answered {call} at {device}");
            Ok(0)
        }
        Command::Redirect { device, call, to } => {
            c.open(device)?;
            c.request(&Request::Redirect { call: call.clone(), to: to.clone() })?;
            println!("redirected {call} at {device} to {to}");
            Ok(0)
        }
        Command::Drop { device, call } => {
            c.open(device)?;
            c.request(&Request::Drop { call: call.clone() })?;
            println!("dropped {call} at {device}");
            Ok(0)
        }
        Command::MakeCall { device, to, media } => {
            c.open(device)?;
            let r = c.request(&Request::MakeCall { device: device.clone(), to: to.clone(), media: media.map(to_media) })?;
            println!("{}", r["call"].as_str().unwrap_or("call placed"));
            Ok(0)
        }
        Command::Raw => unreachable!("handled above"),
    }
}

/// `watch`: open the devices and print every event; when the server is lost, go to
/// the other server of the pair (or the same one, alone), log in, re-open the devices
/// and ask for a snapshot of their calls, and go on there.
fn watch_with_failover(o: &Options, asked: &[String]) -> Result<u8, String> {
    let (mut c, mut at) = connect_active(o, 0, CONNECT_WAIT)?;
    c.login(o)?;
    let devices = if asked.is_empty() { c.openable()? } else { asked.to_vec() };
    if devices.is_empty() {
        return Err("this application may open no device that is free".into());
    }
    for d in &devices {
        c.open(d)?;
    }
    eprintln!("ctibox cti: watching {} on {}", devices.join(", "), o.servers[at]);
    loop {
        let why = match c.watch() {
            Ok(code) => return Ok(code),
            Err(why) => why,
        };
        eprintln!("ctibox cti: {}: {why}", o.servers[at]);
        // The other server first (the lost one may be gone for good); then both, for
        // a while: a takeover takes a fraction of a second, a restart a few.
        let deadline = Instant::now() + RECONNECT_FOR;
        let next = (at + 1) % o.servers.len();
        loop {
            match connect_active(o, next, RECONNECT_WAIT).and_then(|(mut c2, i)| {
                c2.login(o)?;
                for d in &devices {
                    c2.open(d)?;
                }
                for d in &devices {
                    c2.request(&Request::Snapshot { device: Some(d.clone()) })?;
                }
                Ok((c2, i))
            }) {
                Ok((c2, i)) => {
                    c = c2;
                    at = i;
                    eprintln!("ctibox cti: watching {} on {}", devices.join(", "), o.servers[at]);
                    break;
                }
                Err(e) if Instant::now() < deadline => {
                    log::debug!("cti: reconnect: {e}");
                    std::thread::sleep(RECONNECT_GAP);
                }
                Err(e) => return Err(format!("no server took the application back: {e}")),
            }
        }
    }
}

fn to_media(a: SocketAddr) -> Media {
    Media { ip: a.ip(), port: a.port(), codec: None }
}

fn secret(o: &Options) -> Result<String, String> {
    if let Some(f) = &o.secret_file {
        let text = std::fs::read_to_string(f).map_err(|e| format!("--secret-file {f}: {e}"))?;
        return Ok(text.lines().next().unwrap_or("").to_string());
    }
    std::env::var("CTIBOX_CTI_SECRET").map_err(|_| "no secret: give --secret-file FILE or set CTIBOX_CTI_SECRET".to_string())
}

enum Msg {
    Net(String),
    NetClosed(String),
    Stdin(String),
    StdinEof,
}

/// One connection to the box.
struct Conn {
    w: TcpStream,
    rx: Receiver<Msg>,
    tx: Sender<Msg>,
    next_id: i64,
    heartbeats: u64,
    every: Duration,
    last_sent: Instant,
    /// When the server last sent anything (a heartbeat's reply at least every `every`).
    last_heard: Instant,
    /// The server's greeting, as sent.
    hello: String,
}

impl Conn {
    fn connect(target: &str, wait: Duration) -> Result<Conn, String> {
        let addrs: Vec<SocketAddr> =
            target.to_socket_addrs().map_err(|e| format!("cannot resolve {target}: {e}"))?.collect();
        let mut last = format!("{target} resolves to no address");
        let mut stream = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, wait) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = format!("cannot connect to {a}: {e}"),
            }
        }
        let stream = stream.ok_or(last)?;
        let _ = stream.set_nodelay(true);
        let r = stream.try_clone().map_err(|e| e.to_string())?;
        let (tx, rx) = mpsc::channel();
        let net = tx.clone();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(r);
            let mut line = String::new();
            loop {
                line.clear();
                match lines.read_line(&mut line) {
                    Ok(0) => break,
                    Ok(_) => {
                        if net.send(Msg::Net(line.trim_end().to_string())).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = net.send(Msg::NetClosed(format!("connection lost: {e}")));
                        return;
                    }
                }
            }
            let _ = net.send(Msg::NetClosed("the box closed the connection".into()));
        });
        let every = Duration::from_secs(DEFAULT_HEARTBEAT_S / 3);
        let hello = match rx.recv_timeout(wait) {
            Ok(Msg::Net(l)) => l,
            Ok(Msg::NetClosed(why)) => return Err(why),
            _ => return Err(format!("{target} sent no hello within {wait:?}")),
        };
        let v: Value = serde_json::from_str(&hello).map_err(|_| format!("{target} is not a CTI server (it sent {hello:?})"))?;
        if v["type"] != "hello" || v["protocol"] != crate::core::cti::wire::PROTOCOL {
            return Err(format!("{target} greeted with {hello}; this client speaks protocol {}", crate::core::cti::wire::PROTOCOL));
        }
        Ok(Conn { w: stream, rx, tx, next_id: 1, heartbeats: 0, every, last_sent: Instant::now(), last_heard: Instant::now(), hello })
    }

    fn send_line(&mut self, text: &str) -> Result<(), String> {
        self.last_sent = Instant::now();
        self.w.write_all(format!("{text}\n").as_bytes()).map_err(|e| format!("connection lost: {e}"))
    }

    /// Sends a heartbeat if nothing went out for a while.
    fn beat(&mut self) -> Result<(), String> {
        if self.last_sent.elapsed() >= self.every {
            self.heartbeats += 1;
            let id = RequestId::Str(format!("hb-{}", self.heartbeats));
            self.send_line(&Request::Heartbeat.to_json(&id))?;
        }
        Ok(())
    }

    /// The next message, sending heartbeats meanwhile; Err after `wait` of silence.
    fn next(&mut self, wait: Option<Duration>) -> Result<Msg, String> {
        let start = Instant::now();
        loop {
            self.beat()?;
            if self.last_heard.elapsed() > SILENCE {
                // A frozen server or a lost network: a TCP connection may not say so
                // for minutes. Heartbeats are answered; silence this long is a failure.
                return Err(format!("the server said nothing for {SILENCE:?}"));
            }
            let slice = self.every.saturating_sub(self.last_sent.elapsed()).max(Duration::from_millis(10));
            let slice = wait.map_or(slice, |w| slice.min(w.saturating_sub(start.elapsed())));
            match self.rx.recv_timeout(slice) {
                Ok(m) => {
                    if matches!(m, Msg::Net(_)) {
                        self.last_heard = Instant::now();
                    }
                    return Ok(m);
                }
                Err(RecvTimeoutError::Disconnected) => return Err("connection lost".into()),
                Err(RecvTimeoutError::Timeout) => {
                    if wait.is_some_and(|w| start.elapsed() >= w) {
                        return Err(format!("the box did not answer within {:?}", wait.unwrap_or_default()));
                    }
                }
            }
        }
    }

    /// Sends `req`, waits for its reply, prints events that arrive meanwhile, and
    /// turns an error reply into the server's sentence.
    fn request(&mut self, req: &Request) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        self.send_line(&req.to_json(&RequestId::Num(id)))?;
        loop {
            match self.next(Some(REPLY_WAIT))? {
                Msg::Net(line) => {
                    let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
                    if v["type"] == "event" {
                        println!("{line}");
                    } else if v["type"] == "reply" && v["id"] == id {
                        if v["ok"] == true {
                            return Ok(v);
                        }
                        return Err(format!(
                            "{}: {}: {}",
                            req.name(),
                            v["error"]["code"].as_str().unwrap_or("error"),
                            v["error"]["message"].as_str().unwrap_or("the box gave no reason")
                        ));
                    }
                }
                Msg::NetClosed(why) => return Err(why),
                Msg::Stdin(_) | Msg::StdinEof => {}
            }
        }
    }

    fn login(&mut self, o: &Options) -> Result<(), String> {
        let app = o.app.clone().ok_or("no application name: give --app NAME or set CTIBOX_CTI_APP")?;
        let secret = secret(o)?;
        let reply = self.request(&Request::Login { app, secret, protocol: Some(crate::core::cti::wire::PROTOCOL) })?;
        let hb = reply["heartbeat_s"].as_u64().unwrap_or(DEFAULT_HEARTBEAT_S).max(1);
        self.every = Duration::from_millis(hb * 1000 / 3).min(BEAT_AT_LEAST);
        Ok(())
    }

    fn open(&mut self, device: &str) -> Result<(), String> {
        self.request(&Request::Open { device: device.to_string(), media: None }).map(|_| ())
    }

    /// Devices the application may open that no one else has.
    fn openable(&mut self) -> Result<Vec<String>, String> {
        let reply = self.request(&Request::ListDevices)?;
        let list = reply["devices"].as_array().cloned().unwrap_or_default();
        Ok(list.iter().filter(|d| d["in_use"] != true).filter_map(|d| d["name"].as_str().map(str::to_string)).collect())
    }

    fn watch(&mut self) -> Result<u8, String> {
        loop {
            match self.next(None)? {
                Msg::Net(line) => {
                    if serde_json::from_str::<Value>(&line).is_ok_and(|v| v["type"] == "event") {
                        println!("{line}");
                    }
                }
                Msg::NetClosed(why) => return Err(why),
                Msg::Stdin(_) | Msg::StdinEof => {}
            }
        }
    }

    fn raw(&mut self) -> Result<u8, String> {
        println!("{}", self.hello);
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(Msg::Stdin(line)).is_err() {
                    return;
                }
            }
            let _ = tx.send(Msg::StdinEof);
        });
        // Every request gets exactly one reply: count them to know when to stop.
        let mut waiting = 0usize;
        let mut eof = false;
        loop {
            if eof && waiting == 0 {
                return Ok(0);
            }
            let wait = eof.then_some(REPLY_WAIT);
            match self.next(wait)? {
                Msg::Stdin(line) => {
                    if !line.trim().is_empty() {
                        self.send_line(&line)?;
                        waiting += 1;
                    }
                }
                Msg::StdinEof => eof = true,
                Msg::Net(line) => {
                    let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                    if v["type"] == "reply" {
                        if v["id"].as_str().is_some_and(|i| i.starts_with("hb-")) {
                            continue;
                        }
                        waiting = waiting.saturating_sub(1);
                    }
                    println!("{line}");
                }
                Msg::NetClosed(why) => {
                    return if eof && waiting == 0 { Ok(0) } else { Err(why) };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn commands_parse_with_their_arguments_and_bad_ones_are_refused_with_usage() {
        let o = parse_args(&args("--connect box:2748 --app ivr answer rp1 c7 --media 192.0.2.10:4000")).unwrap();
        assert_eq!(o.servers, vec!["box:2748".to_string()]);
        assert_eq!(o.app.as_deref(), Some("ivr"));
        assert_eq!(o.command, Command::Answer { device: "rp1".into(), call: "c7".into(), media: Some("192.0.2.10:4000".parse().unwrap()) });
        assert_eq!(parse_args(&args("watch a b")).unwrap().command, Command::Watch { devices: vec!["a".into(), "b".into()] });
        assert_eq!(parse_args(&args("raw")).unwrap().command, Command::Raw);
        assert_eq!(parse_args(&args("redirect rp1 c1 2001")).unwrap().command, Command::Redirect { device: "rp1".into(), call: "c1".into(), to: "2001".into() });
        assert!(parse_args(&args("drop rp1")).unwrap_err().contains("drop DEVICE CALL"));
        assert!(parse_args(&args("dance")).unwrap_err().contains("unknown command"));
        assert!(parse_args(&args("drop rp1 c1 --media 1.2.3.4:5")).is_err());
        assert!(parse_args(&args("answer rp1 c1 --media nowhere")).unwrap_err().contains("IP:PORT"));
        assert!(parse_args(&[]).is_err());
    }
}
