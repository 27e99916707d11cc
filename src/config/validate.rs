//! From the raw file to a typed `Config`: scalar sections (system, sip, cti, http,
//! media, peer, board), listener clashes, and the shared checking context. The dial
//! plan and devices are in `validate_plan`. Collects every error it can find; no I/O
//! except reading a board file named by `[board] file` and the `[media] moh_file`.

use super::error::{ConfigError, Located, Reason};
use super::model::*;
use super::raw::*;
use crate::board::Board;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Errors found so far, with the text they point into.
pub(crate) struct Ctx<'a> {
    pub text: &'a str,
    pub file: &'a str,
    pub errs: Vec<ConfigError>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(text: &'a str, file: &'a str) -> Ctx<'a> {
        Ctx { text, file, errs: Vec::new() }
    }
    pub(crate) fn err(&mut self, span: Range<usize>, reason: Reason) {
        self.errs.push(Located::new(span, reason).into_error(self.text, self.file));
    }
    pub(crate) fn line_of(&self, span: &Range<usize>) -> usize {
        super::error::line_col(self.text, span.start).0
    }
    /// An integer key with default and inclusive range.
    pub(crate) fn int(&mut self, v: &OS<i64>, key: &'static str, default: i64, min: i64, max: i64) -> i64 {
        match v {
            None => default,
            Some(s) if (min..=max).contains(s.get_ref()) => *s.get_ref(),
            Some(s) => {
                self.err(s.span(), Reason::OutOfRange { key, value: *s.get_ref(), min, max });
                default
            }
        }
    }
    pub(crate) fn addr(&mut self, v: &S<String>, key: &'static str) -> Option<SocketAddr> {
        match v.get_ref().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                let example = if key.starts_with("sip") { "0.0.0.0:5060" } else { "192.0.2.1:2748" };
                self.err(v.span(), Reason::BadAddress { key, value: v.get_ref().clone(), example });
                None
            }
        }
    }
    /// A name: 1-64 of letters, digits, '-', '_', '.'.
    pub(crate) fn name(&mut self, v: &S<String>, what: &'static str) -> String {
        let s = v.get_ref();
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            self.err(v.span(), Reason::BadName { what, value: s.clone() });
        }
        s.clone()
    }
    /// Free text that will reach SIP headers or logs: no control characters or quotes.
    pub(crate) fn text_ok(&mut self, v: &S<String>, what: &'static str) -> String {
        if v.get_ref().chars().any(|c| c.is_control() || c == '"') {
            self.err(v.span(), Reason::BadText { what });
        }
        v.get_ref().clone()
    }
    pub(crate) fn choice<T>(
        &mut self,
        v: &S<String>,
        key: &'static str,
        allowed: &'static [&'static str],
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let r = parse(v.get_ref());
        if r.is_none() {
            self.err(v.span(), Reason::NotOneOf { key, value: v.get_ref().clone(), allowed });
        }
        r
    }
    pub(crate) fn codecs(&mut self, v: &[S<String>], key: &'static str) -> Vec<Codec> {
        let mut out: Vec<Codec> = Vec::new();
        for c in v {
            if let Some(k) = self.choice(c, key, Codec::NAMES, Codec::parse) {
                if out.contains(&k) {
                    self.err(c.span(), Reason::Duplicate { what: "codec", name: c.get_ref().clone(), first_line: self.line_of(&c.span()) });
                }
                out.push(k);
            }
        }
        out
    }
}

const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

fn log_level(s: &str) -> Option<log::LevelFilter> {
    match s {
        "error" => Some(log::LevelFilter::Error),
        "warn" => Some(log::LevelFilter::Warn),
        "info" => Some(log::LevelFilter::Info),
        "debug" => Some(log::LevelFilter::Debug),
        "trace" => Some(log::LevelFilter::Trace),
        _ => None,
    }
}

/// Checks everything; on success the typed configuration (secrets still "generate").
pub(crate) fn validate(raw: &RawConfig, text: &str, file: &str) -> Result<Config, Vec<ConfigError>> {
    let mut c = Ctx::new(text, file);
    let system = system(&mut c, &raw.system);
    let sip = sip(&mut c, &raw.sip, &system.name);
    let cti = CtiConfig {
        listen: raw.cti.listen.as_ref().and_then(|a| c.addr(a, "cti.listen")).unwrap_or(SocketAddr::from(([0, 0, 0, 0], 2748))),
        heartbeat_s: c.int(&raw.cti.heartbeat_s, "cti.heartbeat_s", 30, 5, 3600) as u32,
        max_apps: c.int(&raw.cti.max_apps, "cti.max_apps", 16, 1, crate::limits::CTI_CONNECTIONS as i64) as u32,
        throttle: Throttle {
            auth_failures: c.int(&raw.cti.throttle.auth_failures, "cti.throttle.auth_failures", 5, 1, 1000) as u32,
            window_s: c.int(&raw.cti.throttle.window_s, "cti.throttle.window_s", 60, 1, 86_400) as u32,
            ban_s: c.int(&raw.cti.throttle.ban_s, "cti.throttle.ban_s", 300, 1, 604_800) as u32,
        },
    };
    let http = HttpConfig {
        listen: raw.http.listen.as_ref().and_then(|a| c.addr(a, "http.listen")).unwrap_or(SocketAddr::from(([0, 0, 0, 0], 8080))),
    };
    let media = media(&mut c, &raw.media);
    let peer = raw.peer.as_ref().and_then(|p| peer(&mut c, p));
    listeners(&mut c, raw, &sip, &media, peer.as_ref());
    let (board, board_ok) = board(&mut c, &raw.board);
    let plan = super::validate_plan::plan(&mut c, raw, &system, &media, board_ok.then_some(&board.def));
    if !c.errs.is_empty() {
        let mut errs = c.errs;
        errs.sort_by_key(|e| (e.file != file, e.line, e.column));
        return Err(errs);
    }
    let mut cfg = Config {
        source: file.to_string(),
        system,
        sip,
        cti,
        http,
        media,
        partitions: plan.partitions,
        calling_search_spaces: plan.css,
        lines: plan.lines,
        devices: plan.devices,
        device_pools: plan.pools,
        route_patterns: plan.patterns,
        trunks: plan.trunks,
        app_users: plan.app_users,
        peer,
        board,
        index: Default::default(),
    };
    cfg.reindex();
    Ok(cfg)
}

fn system(c: &mut Ctx, r: &RawSystem) -> SystemConfig {
    SystemConfig {
        name: r.name.as_ref().map_or_else(|| "ctibox".to_string(), |n| c.name(n, "system name")),
        data_dir: r.data_dir.as_ref().map(|d| PathBuf::from(d.get_ref())),
        log_level: r.log_level.as_ref().and_then(|l| c.choice(l, "log_level", LOG_LEVELS, log_level)).unwrap_or(log::LevelFilter::Info),
        country: r.country.as_ref().and_then(|v| c.choice(v, "country", Country::NAMES, Country::parse)).unwrap_or(Country::Us),
    }
}

fn sip(c: &mut Ctx, r: &RawSip, system_name: &str) -> SipConfig {
    let t1 = c.int(&r.t1_ms, "sip.t1_ms", 500, 50, 10_000);
    let t2 = c.int(&r.t2_ms, "sip.t2_ms", 4000, 500, 64_000);
    if t2 < t1 {
        if let Some(s) = r.t2_ms.as_ref().or(r.t1_ms.as_ref()) {
            c.err(s.span(), Reason::Order { low_key: "sip.t1_ms", low: t1, high_key: "sip.t2_ms", high: t2 });
        }
    }
    let min = c.int(&r.min_expires_s, "sip.min_expires_s", 60, 10, 86_400);
    let max = c.int(&r.max_expires_s, "sip.max_expires_s", 3600, 10, 86_400);
    let def = c.int(&r.default_expires_s, "sip.default_expires_s", 600, 10, 86_400);
    if min > max {
        let s = r.min_expires_s.as_ref().or(r.max_expires_s.as_ref()).map_or(0..0, |s| s.span());
        c.err(s, Reason::Order { low_key: "sip.min_expires_s", low: min, high_key: "sip.max_expires_s", high: max });
    } else if !(min..=max).contains(&def) {
        let s = r.default_expires_s.as_ref().map_or(0..0, |s| s.span());
        c.err(s, Reason::OutOfRange { key: "sip.default_expires_s", value: def, min, max });
    }
    use super::model::DigestAlgorithm as Algorithm;
    const ALGS: &[&str] = &["sha-256", "md5"];
    let parse_alg = |v: &str| match v {
        "sha-256" => Some(Algorithm::Sha256),
        "md5" => Some(Algorithm::Md5),
        _ => None,
    };
    let mut digest_algorithms = Vec::new();
    match &r.digest_algorithms {
        None => digest_algorithms = vec![Algorithm::Sha256, Algorithm::Md5],
        Some(list) if list.get_ref().is_empty() => {
            c.err(list.span(), Reason::NotOneOf { key: "sip.digest_algorithms", value: String::new(), allowed: ALGS });
        }
        Some(list) => {
            for v in list.get_ref() {
                if let Some(a) = c.choice(v, "sip.digest_algorithms", ALGS, parse_alg) {
                    if !digest_algorithms.contains(&a) {
                        digest_algorithms.push(a);
                    }
                }
            }
        }
    }
    let t = &r.throttle;
    SipConfig {
        digest_algorithms,
        udp: r.udp.as_ref().and_then(|a| c.addr(a, "sip.udp")),
        tcp: r.tcp.as_ref().and_then(|a| c.addr(a, "sip.tcp")),
        realm: r.realm.as_ref().map_or_else(|| system_name.to_string(), |v| c.text_ok(v, "sip.realm")),
        domain: r.domain.as_ref().map(|v| c.text_ok(v, "sip.domain")),
        t1_ms: t1 as u32,
        t2_ms: t2 as u32,
        t4_ms: c.int(&r.t4_ms, "sip.t4_ms", 5000, 500, 64_000) as u32,
        min_expires_s: min as u32,
        max_expires_s: max as u32,
        default_expires_s: def as u32,
        max_calls: c.int(&r.max_calls, "sip.max_calls", 8192, 1, 65_536) as u32,
        max_transactions: c.int(&r.max_transactions, "sip.max_transactions", crate::limits::SIP_MAX_TRANSACTIONS as i64, 4, 1_048_576) as u32,
        call_idle_s: c.int(&r.call_idle_s, "sip.call_idle_s", 600, 30, 86_400) as u32,
        throttle: Throttle {
            auth_failures: c.int(&t.auth_failures, "sip.throttle.auth_failures", 10, 1, 1000) as u32,
            window_s: c.int(&t.window_s, "sip.throttle.window_s", 60, 1, 86_400) as u32,
            ban_s: c.int(&t.ban_s, "sip.throttle.ban_s", 300, 1, 604_800) as u32,
        },
    }
}

/// `[media] prompts_dir` when unset.
pub const DEFAULT_PROMPTS_DIR: &str = "/usr/share/ctibox/prompts";

#[allow(clippy::disallowed_methods)] // checks prompts_dir exists: configuration loading runs in the shell
fn media(c: &mut Ctx, r: &RawMedia) -> MediaConfig {
    let min = c.int(&r.rtp_port_min, "media.rtp_port_min", 16384, 1024, 65534);
    let max = c.int(&r.rtp_port_max, "media.rtp_port_max", 32767, 1025, 65535);
    if min % 2 != 0 {
        if let Some(s) = &r.rtp_port_min {
            c.err(s.span(), Reason::MustBeEven { key: "media.rtp_port_min", value: min });
        }
    }
    if min >= max {
        let s = r.rtp_port_max.as_ref().or(r.rtp_port_min.as_ref()).map_or(0..0, |s| s.span());
        c.err(s, Reason::Order { low_key: "media.rtp_port_min", low: min, high_key: "media.rtp_port_max", high: max });
    }
    let codecs = match &r.codecs {
        Some(v) if v.get_ref().is_empty() => {
            c.err(v.span(), Reason::NotOneOf { key: "media.codecs", value: String::new(), allowed: Codec::NAMES });
            vec![Codec::Pcmu, Codec::Pcma]
        }
        Some(v) => c.codecs(v.get_ref(), "media.codecs"),
        None => vec![Codec::Pcmu, Codec::Pcma],
    };
    let moh_file = r.moh_file.as_ref().and_then(|f| {
        let base = Path::new(c.file).parent().unwrap_or(Path::new(""));
        let path = base.join(f.get_ref());
        match read_audio(&path) {
            Ok(_) => Some(path),
            Err(detail) => {
                c.err(f.span(), Reason::BadAudioFile { key: "media.moh_file", path: path.display().to_string(), detail });
                None
            }
        }
    });
    // Explicitly set: it must be a directory now. The default may be absent (no prompts).
    let prompts_dir = match &r.prompts_dir {
        None => PathBuf::from(DEFAULT_PROMPTS_DIR),
        Some(d) => {
            let base = Path::new(c.file).parent().unwrap_or(Path::new(""));
            let path = base.join(d.get_ref());
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => c.err(d.span(), Reason::BadDirectory { key: "media.prompts_dir", path: path.display().to_string(), detail: "not a directory".into() }),
                Err(e) => c.err(d.span(), Reason::BadDirectory { key: "media.prompts_dir", path: path.display().to_string(), detail: format!("cannot read: {e}") }),
            }
            path
        }
    };
    MediaConfig { rtp_port_min: min as u16, rtp_port_max: max as u16, codecs, moh_file, prompts_dir }
}

/// Reads and decodes an audio file the media path plays (music on hold, prompts):
/// an 8 kHz mono PCM16, mu-law or A-law WAV, at most `MEDIA_MAX_FILE_BYTES`.
#[allow(clippy::disallowed_methods)] // reads an audio file: configuration loading runs in the shell
pub fn read_audio(path: &Path) -> Result<Vec<i16>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let max = crate::limits::MEDIA_MAX_FILE_BYTES;
    if meta.len() > max {
        return Err(format!("file is {} bytes, larger than the {max} allowed", meta.len()));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let wav = crate::codec::wav::parse(&bytes).map_err(|e| e.to_string())?;
    if wav.samples.is_empty() {
        return Err("WAV file holds no samples".into());
    }
    Ok(wav.samples)
}

fn cidr(s: &str) -> Option<Cidr> {
    let (a, p) = s.split_once('/')?;
    let addr: IpAddr = a.parse().ok()?;
    let prefix: u8 = p.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some(Cidr { addr, prefix })
}

fn peer(c: &mut Ctx, r: &RawPeer) -> Option<PeerConfig> {
    let address = c.addr(&r.address, "peer.address");
    let listen = c.addr(&r.listen, "peer.listen");
    let pr = c.int(&Some(r.priority.clone()), "peer.priority", 1, 1, 255);
    let service_address = cidr(r.service_address.get_ref());
    if service_address.is_none() {
        c.err(
            r.service_address.span(),
            Reason::BadAddress { key: "peer.service_address", value: r.service_address.get_ref().clone(), example: "192.0.2.10/24" },
        );
    }
    let iface = r.interface.get_ref();
    if iface.is_empty() || iface.len() > 15 || iface.contains(['/', ' ']) {
        c.err(r.interface.span(), Reason::BadName { what: "peer.interface", value: iface.clone() });
    }
    let hb = c.int(&r.heartbeat_ms, "peer.heartbeat_ms", 200, 20, 1000);
    let dead = c.int(&r.dead_after_ms, "peer.dead_after_ms", 1000, 30, 60_000);
    // A heartbeat lost or late must leave room for a probe that the live peer answers
    // before `dead_after`: at least a quarter heartbeat (core::pair::probe_window).
    let least = (3 * hb + 1) / 2;
    if dead < least {
        let s = r.dead_after_ms.as_ref().or(r.heartbeat_ms.as_ref()).map_or(0..0, |s| s.span());
        c.err(s, Reason::Order { low_key: "1.5 * peer.heartbeat_ms", low: least, high_key: "peer.dead_after_ms", high: dead });
    }
    let key = super::secrets::PairKey::parse(r.key.get_ref());
    if key.is_none() {
        c.err(r.key.span(), Reason::BadPairKey);
    }
    let witness = r.witness.get_ref().parse::<std::net::IpAddr>().ok();
    if witness.is_none() {
        c.err(r.witness.span(), Reason::BadAddress { key: "peer.witness", value: r.witness.get_ref().clone(), example: "192.0.2.1" });
    }
    let lan = match &r.peer_lan_address {
        None => address.map(|a| a.ip()),
        Some(v) => {
            let ip = v.get_ref().parse::<std::net::IpAddr>().ok();
            if ip.is_none() {
                c.err(v.span(), Reason::BadAddress { key: "peer.peer_lan_address", value: v.get_ref().clone(), example: "192.0.2.2" });
            }
            ip
        }
    };
    Some(PeerConfig {
        peer_lan_address: lan?,
        key: key?,
        witness: witness?,
        address: address?,
        listen: listen?,
        priority: pr as u8,
        service_address: service_address?,
        interface: iface.clone(),
        heartbeat_ms: hb as u32,
        dead_after_ms: dead as u32,
    })
}

/// Port 0 asks the kernel for a free port, so it never clashes.
fn overlaps(a: &SocketAddr, b: &SocketAddr) -> bool {
    a.port() != 0 && a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Two TCP listeners on one port clash; SIP UDP may share its port with SIP TCP but not
/// sit inside the RTP range.
fn listeners(c: &mut Ctx, raw: &RawConfig, sip: &SipConfig, media: &MediaConfig, peer: Option<&PeerConfig>) {
    let mut tcp: Vec<(&'static str, SocketAddr, Range<usize>)> = Vec::new();
    let span = |v: &OS<String>| v.as_ref().map_or(0..0, |s| s.span());
    if let Some(a) = sip.tcp {
        tcp.push(("sip.tcp", a, span(&raw.sip.tcp)));
    }
    if let Ok(a) = raw.cti.listen.as_ref().map_or(Ok(SocketAddr::from(([0, 0, 0, 0], 2748))), |s| s.get_ref().parse()) {
        tcp.push(("cti.listen", a, span(&raw.cti.listen)));
    }
    if let Ok(a) = raw.http.listen.as_ref().map_or(Ok(SocketAddr::from(([0, 0, 0, 0], 8080))), |s| s.get_ref().parse()) {
        tcp.push(("http.listen", a, span(&raw.http.listen)));
    }
    if let (Some(p), Some(r)) = (peer, &raw.peer) {
        tcp.push(("peer.listen", p.listen, r.listen.span()));
    }
    for i in 1..tcp.len() {
        if let Some(j) = (0..i).find(|&j| overlaps(&tcp[i].1, &tcp[j].1)) {
            let at = if tcp[i].2.is_empty() { tcp[j].2.clone() } else { tcp[i].2.clone() };
            c.err(at, Reason::PortClash { key: tcp[i].0, other: tcp[j].0, addr: tcp[i].1 });
        }
    }
    if let Some(a) = sip.udp {
        if (media.rtp_port_min..=media.rtp_port_max).contains(&a.port()) {
            let s = raw.media.rtp_port_min.as_ref().map_or(span(&raw.sip.udp), |s| s.span());
            c.err(s, Reason::RtpClash { min: media.rtp_port_min, max: media.rtp_port_max, key: "sip.udp", port: a.port() });
        }
    }
}

/// The board, and whether it loaded (if not, analog ports are not checked against it).
fn board(c: &mut Ctx, r: &RawBoardRef) -> (BoardRef, bool) {
    let sim = || Board::by_name("sim").unwrap_or_else(Board::empty_sim);
    let fallback = |name: String, file: Option<PathBuf>| (BoardRef { name, file, def: sim() }, false);
    match (&r.name, &r.file) {
        (Some(n), Some(f)) => {
            c.err(f.span(), Reason::Exclusive { a: "board.name", b: "board.file" });
            fallback(n.get_ref().clone(), None)
        }
        (Some(n), None) => match Board::by_name(n.get_ref()) {
            Some(b) => (BoardRef { name: b.name.clone(), file: None, def: b }, true),
            None => {
                c.err(n.span(), Reason::UnknownBoard { name: n.get_ref().clone() });
                fallback(n.get_ref().clone(), None)
            }
        },
        (None, Some(f)) => {
            let base = Path::new(c.file).parent().unwrap_or(Path::new(""));
            let path = base.join(f.get_ref());
            match Board::load_file(&path) {
                Ok(b) => (BoardRef { name: b.name.clone(), file: Some(path), def: b }, true),
                Err(e) => {
                    if e.line == 0 {
                        c.err(f.span(), e.reason);
                    } else {
                        c.errs.push(e);
                    }
                    fallback("sim".into(), Some(path))
                }
            }
        }
        (None, None) => {
            let b = sim();
            (BoardRef { name: b.name.clone(), file: None, def: b }, true)
        }
    }
}
