//! `ctibox run`: loads the configuration, binds the sockets, prints the banner, tells
//! systemd READY=1, and runs the engine loop under the supervisor until a signal or
//! a death. SIGHUP reloads the configuration file; a bad one is refused and the
//! running configuration stays.

use super::driver::{Clock, Driver, Event, PersistQueue};
use super::listeners::{self, ListenPlan};
use super::media::{self, EventSink, MediaHandle, MediaSettings};
use super::notify::{self, Heartbeat, Notifier};
use super::supervisor;
use crate::board::Board;
use crate::config::{self, Config};
use crate::core::rng::EngineRng;
use crate::core::Engine;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// What `ctibox run` was asked on the command line.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub sip: Option<SocketAddr>,
    pub cti: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
}

impl RunOptions {
    fn plan(&self, c: &Config) -> ListenPlan {
        ListenPlan {
            sip_udp: self.sip.or(c.sip.udp),
            sip_tcp: self.sip.or(c.sip.tcp),
            cti: self.cti.unwrap_or(c.cti.listen),
            http: self.http.unwrap_or(c.http.listen),
        }
    }

    pub fn load(&self) -> Result<Config, config::ConfigError> {
        match &self.config {
            Some(p) => config::load_file(p),
            None => Ok(config::embedded_default()),
        }
    }
}

/// Where state lives: --data-dir, else the config's, else /var/lib/ctibox for root and
/// $XDG_STATE_HOME/ctibox (or ~/.local/state/ctibox) for anyone else.
pub fn data_dir(opts: &RunOptions, c: &Config) -> PathBuf {
    if let Some(d) = opts.data_dir.clone().or_else(|| c.system.data_dir.clone()) {
        return d;
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/ctibox");
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(x).join("ctibox");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/state/ctibox")
}

fn seed() -> [u8; 32] {
    use std::io::Read;
    let mut s = [0u8; 32];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        if f.read_exact(&mut s).is_ok() {
            return s;
        }
    }
    // Last resort: time and pid. Never reached on Linux with /dev/urandom.
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    s[..16].copy_from_slice(&t.as_nanos().to_le_bytes());
    s[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    s
}

/// The address media streams bind: the SIP listener's IP (UDP, else TCP); the
/// wildcard when SIP listens on the wildcard or not at all.
fn media_bind_ip(addrs: &ListenPlan) -> IpAddr {
    addrs.sip_udp.or(addrs.sip_tcp).map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip())
}

fn show(a: Option<SocketAddr>) -> String {
    a.map_or("off".to_string(), |a| a.to_string())
}

/// Runs the appliance; returns the process exit code.
pub fn run(opts: RunOptions) -> i32 {
    let started = Instant::now();
    super::trim::configure_allocator();
    let mut cfg = match opts.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ctibox: configuration refused: {e}");
            return 2;
        }
    };
    let board = cfg.board.def.clone();
    let dir = data_dir(&opts, &cfg);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("ctibox: cannot create data directory {}: {e}", dir.display());
        return 2;
    }
    let secrets = match resolve_secrets(&mut cfg, &dir) {
        Ok(lines) => lines,
        Err(e) => {
            eprintln!("ctibox: {e}");
            return 2;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ctibox: cannot start runtime: {e}");
            return 1;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, serve(opts, cfg, board, dir, secrets, started))
}

/// Fills in credentials marked "generate" from (or into) the data directory.
fn resolve_secrets(cfg: &mut Config, dir: &Path) -> Result<Vec<String>, String> {
    use std::io::Read;
    let mut urandom = std::fs::File::open("/dev/urandom").map_err(|e| format!("cannot open /dev/urandom: {e}"))?;
    let mut fill = |buf: &mut [u8]| {
        if urandom.read_exact(buf).is_err() {
            buf.copy_from_slice(&seed()[..buf.len().min(32)]);
        }
    };
    config::resolve_generated(cfg, dir, &mut fill)
}

/// The highest pair term an earlier run saw (0 if none or unreadable: the peer's frames
/// then carry it).
fn load_term(dir: &Path) -> u64 {
    let path = dir.join(super::pair::TERM_FILE);
    let Ok(bytes) = std::fs::read(&path) else { return 0 };
    match crate::persist::unseal(&bytes).map(<[u8; 8]>::try_from) {
        Ok(Ok(b)) => u64::from_le_bytes(b),
        _ => {
            log::warn!("pair: {} is damaged; starting from term 0", path.display());
            0
        }
    }
}

/// Registrations saved by an earlier run, if the file is there and whole.
fn load_registrations(dir: &Path) -> Option<crate::core::endpoint::SavedRegistrations> {
    let path = dir.join("registrations");
    let bytes = std::fs::read(&path).ok()?;
    let result = crate::persist::unseal(&bytes)
        .map_err(|e| e.to_string())
        .and_then(|p| postcard::from_bytes::<crate::core::endpoint::SavedRegistrations>(p).map_err(|e| e.to_string()));
    match result {
        Ok(r) if r.version == 1 => Some(r),
        Ok(r) => {
            log::warn!("{}: unknown version {}; starting without saved registrations", path.display(), r.version);
            None
        }
        Err(e) => {
            log::warn!("{}: {e}; starting without saved registrations", path.display());
            None
        }
    }
}

async fn serve(opts: RunOptions, cfg: Config, board: Board, dir: PathBuf, secrets: Vec<String>, started: Instant) -> i32 {
    // Handlers first: a SIGTERM that arrives right after READY=1 must be a clean stop.
    let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            eprintln!("ctibox: cannot install signal handlers");
            return 1;
        }
    };
    let plan = opts.plan(&cfg);
    let bound = match listeners::bind(&plan) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("ctibox: {e}");
            return 1;
        }
    };
    let addrs = bound.addrs();
    let (sup, mut deaths) = supervisor::new();
    let (inbox_tx, inbox_rx) = mpsc::channel::<Event>(crate::limits::ENGINE_INBOX);

    let clock = Clock::new();
    let unix_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let restored = crate::core::Restored { registrations: load_registrations(&dir) };
    let engine = Engine::new(Arc::new(cfg.clone()), EngineRng::from_seed(seed()), clock.now(), unix_ms, restored);
    let heartbeat = Heartbeat::default();
    let persist = PersistQueue::new();
    let persist_flush = persist.clone();
    let driver = Driver {
        engine,
        clock,
        udp: bound.sip_udp.clone(),
        conns: Default::default(),
        heartbeat: heartbeat.clone(),
        persist: persist.clone(),
        dialed: Default::default(),
        inbox: inbox_tx.clone(),
        media: None,
        verifier: None,
        udp_in: None,
        load: Default::default(),
        udp_out: Vec::new(),
        busy: Vec::new(),
        pair: None,
        analog: Some(super::analog::AnalogShell::new(
            &cfg.board.def,
            super::port_audio::AudioSettings { bind_ip: media_bind_ip(&addrs), country: super::media::tone_country(cfg.system.country) },
            clock,
            inbox_tx.clone(),
        )),
    };
    let mut driver = driver;
    if let Some(peer) = &cfg.peer {
        let Some(key) = peer.key.bytes().copied() else {
            eprintln!("ctibox: the pair key was not resolved");
            return 2;
        };
        let s = seed();
        let nonce_seed = u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]);
        let term = load_term(&dir);
        match super::pair::PairShell::start(peer, key, clock.now(), term, nonce_seed, inbox_tx.clone(), persist.clone()).await {
            Ok(p) => driver.pair = Some(p),
            Err(e) => {
                eprintln!("ctibox: {e}");
                return 1;
            }
        }
    }
    match super::control::bind(&dir) {
        Ok(l) => sup.spawn("control", super::control::serve(l, inbox_tx.clone())),
        Err(e) => log::warn!("control socket: {e}; `ctibox peer` commands will not reach this box"),
    }
    {
        let dir = dir.clone();
        if let Err(e) = sup.spawn_thread("persist", move || persist.run(dir)) {
            eprintln!("ctibox: cannot start persist thread: {e}");
            return 1;
        }
    }
    // The media path: RTP on the SIP listener's address (the wildcard on a wildcard bind).
    let media_ip = media_bind_ip(&addrs);
    let media = {
        let tx = inbox_tx.clone();
        let sink: EventSink = Box::new(move |ev| tx.try_send(Event::Input(crate::core::Input::Media(ev))).is_ok());
        match media::start(MediaSettings::from_config(&cfg, media_ip), sink) {
            Ok((handle, threads)) => {
                for (name, body) in threads {
                    if let Err(e) = sup.spawn_thread(name, body) {
                        eprintln!("ctibox: cannot start {name} thread: {e}");
                        return 1;
                    }
                }
                handle
            }
            Err(e) => {
                eprintln!("ctibox: cannot start the media path: {e}");
                return 1;
            }
        }
    };
    driver.media = Some(media.clone());
    match super::verifier::Verifier::start(&sup, inbox_tx.clone()) {
        Ok(v) => driver.verifier = Some(v),
        Err(e) => {
            eprintln!("ctibox: cannot start the secret verifier: {e}");
            return 1;
        }
    }
    if let Err(e) = sup.spawn_thread("heap-trim", super::trim::trim_thread) {
        eprintln!("ctibox: cannot start the heap trimmer: {e}");
        return 1;
    }
    if let Some(s) = bound.sip_udp {
        match listeners::UdpIn::new(s) {
            Ok(u) => driver.udp_in = Some(u),
            Err(e) => {
                eprintln!("ctibox: {e}");
                return 1;
            }
        }
    }
    sup.spawn("engine", driver.run(inbox_rx));
    if let Some(l) = bound.sip_tcp {
        sup.spawn("sip-tcp", listeners::sip_tcp_loop(l, inbox_tx.clone()));
    }
    sup.spawn("cti", listeners::cti_loop(bound.cti, inbox_tx.clone()));
    sup.spawn("http", listeners::http_loop(bound.http, inbox_tx.clone()));
    if std::env::var("CTIBOX_FAULT").as_deref() == Ok("stall-on-usr2") {
        let tx = inbox_tx.clone();
        let Ok(mut usr2) = signal(SignalKind::user_defined2()) else { return 1 };
        sup.spawn("fault", async move {
            usr2.recv().await;
            tx.send(Event::Stall).await.map_err(|_| "inbox closed".to_string())
        });
    }
    {
        let tx = inbox_tx.clone();
        let opts = opts.clone();
        let Ok(hup) = signal(SignalKind::hangup()) else {
            eprintln!("ctibox: cannot install the SIGHUP handler");
            return 1;
        };
        sup.spawn("reload", reload_loop(hup, opts, plan.clone(), addrs.clone(), tx, media, media_ip));
    }

    let notifier = Notifier::from_env();
    println!(
        "ctibox {} on board {}{}\n  config  {}\n  sip     udp {}  tcp {}\n  cti     tcp {}  (WebSocket ws://{}/cti)\n  http    http://{}/status\n  data    {}",
        env!("CARGO_PKG_VERSION"),
        board.name,
        match (board.simulated, board.ports.iter().all(|p| p.playback.starts_with("sim:"))) {
            (true, true) => " (simulated ALSA and GPIO)",
            (true, false) => " (simulated GPIO, real ALSA)",
            (false, _) => "",
        },
        cfg.source,
        show(addrs.sip_udp),
        show(addrs.sip_tcp),
        addrs.cti,
        addrs.http,
        addrs.http,
        dir.display()
    );
    for line in &secrets {
        println!("  {line}");
    }
    if let Some(n) = &notifier {
        n.notify("READY=1\nSTATUS=serving");
    }
    println!("ready in {} ms", started.elapsed().as_millis());
    log::info!("ready: {} on board {}", cfg.system.name, board.name);

    if let (Some(n), Some(interval)) = (Notifier::from_env(), notify::watchdog_interval()) {
        let tick = Duration::from_millis(crate::limits::ENGINE_TICK_MS);
        let stall = (interval / 2).max(tick * 3);
        let hb = heartbeat.clone();
        if let Err(e) = sup.spawn_thread("watchdog", move || notify::watchdog_thread(n, hb, interval, stall)) {
            eprintln!("ctibox: cannot start watchdog thread: {e}");
            return 1;
        }
    }

    let code = tokio::select! {
        _ = term.recv() => { log::info!("SIGTERM: stopping"); 0 }
        _ = int.recv() => { log::info!("SIGINT: stopping"); 0 }
        d = deaths.next() => { log::error!("{} died: {}; exiting", d.name, d.reason); 1 }
    };
    if let Some(n) = &notifier {
        n.notify("STOPPING=1");
    }
    // The engine's held-back saves (registration refreshes), then anything the writer
    // has not reached yet. A loop that does not answer in time is not waited for.
    if code == 0 {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        if inbox_tx.try_send(Event::Stop(done_tx)).is_ok() && tokio::time::timeout(Duration::from_secs(2), done_rx).await.is_err() {
            log::warn!("stop: the engine loop did not answer; saving what is queued");
        }
    }
    persist_flush.flush(&dir);
    code
}

async fn reload_loop(
    mut hup: tokio::signal::unix::Signal,
    opts: RunOptions,
    plan: ListenPlan,
    bound: ListenPlan,
    tx: mpsc::Sender<Event>,
    media: MediaHandle,
    media_ip: IpAddr,
) -> Result<(), String> {
    loop {
        hup.recv().await;
        let Some(path) = opts.config.as_deref() else {
            log::warn!("SIGHUP: running the embedded default; no configuration file to reload");
            continue;
        };
        match reload_one(path, &opts, &plan, &bound) {
            Ok(cfg) => {
                // Music on hold is read here, off the engine loop and the media thread.
                if !media.reconfigure(MediaSettings::from_config(&cfg, media_ip)) {
                    log::warn!("SIGHUP: media queue full; music on hold and tones unchanged");
                }
                let input = crate::core::Input::Reload(Arc::new(cfg));
                tx.send(Event::Input(input)).await.map_err(|_| "inbox closed".to_string())?;
            }
            Err(e) => log::error!("SIGHUP: configuration refused, keeping the running one: {e}"),
        }
    }
}

fn reload_one(path: &Path, opts: &RunOptions, plan: &ListenPlan, bound: &ListenPlan) -> Result<Config, String> {
    let mut cfg = config::load_file(path).map_err(|e| e.to_string())?;
    if opts.plan(&cfg) != *plan {
        log::warn!("SIGHUP: listener addresses changed; they take effect at the next restart (still on {bound:?})");
    }
    let dir = data_dir(opts, &cfg);
    resolve_secrets(&mut cfg, &dir)?;
    Ok(cfg)
}
