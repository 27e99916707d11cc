//! The validated configuration: plain typed data the engine reads. Every reference
//! (a device's lines, a CSS's partitions, a route pattern's target) has been checked to
//! exist, so consumers may look names up without handling "missing". No I/O here.

use crate::board::Board;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

pub use super::dialplan::Pattern;
pub use super::secrets::{AppSecret, Password};

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the configuration came from (a path, or "<embedded default>").
    pub source: String,
    pub system: SystemConfig,
    pub sip: SipConfig,
    pub cti: CtiConfig,
    pub http: HttpConfig,
    pub media: MediaConfig,
    pub partitions: Vec<Partition>,
    pub calling_search_spaces: Vec<CallingSearchSpace>,
    pub lines: Vec<Line>,
    pub devices: Vec<Device>,
    /// Always holds a pool named "default" (declared or implied).
    pub device_pools: Vec<DevicePool>,
    pub route_patterns: Vec<RoutePattern>,
    pub trunks: Vec<Trunk>,
    pub app_users: Vec<AppUser>,
    pub peer: Option<PeerConfig>,
    pub board: BoardRef,
    /// Lookups by name (`Config::index`); built once after validation. Each hit is
    /// checked against the entry it names, so a hand-edited `Config` (tests) still
    /// answers right, by a scan.
    pub index: ConfigIndex,
}

/// Positions of devices and lines by what calls look them up by: a box with a
/// thousand phones answers each call's lookups in constant time, not by scans.
#[derive(Debug, Clone, Default)]
pub struct ConfigIndex {
    device_by_name: std::collections::HashMap<String, usize>,
    phone_by_username: std::collections::HashMap<String, usize>,
    /// Lines by directory number (one per partition it is in): looked up by `&str`,
    /// with no key to build per call.
    lines_by_dn: std::collections::HashMap<String, Vec<usize>>,
    devices_of_line: std::collections::HashMap<LineKey, Vec<usize>>,
}

impl Config {
    /// Builds `index` from the devices and lines (after validation, or after a change).
    pub fn reindex(&mut self) {
        let mut ix = ConfigIndex::default();
        for (i, d) in self.devices.iter().enumerate() {
            ix.device_by_name.entry(d.name.clone()).or_insert(i);
            if let DeviceKind::SipPhone { username, .. } = &d.kind {
                ix.phone_by_username.entry(username.clone()).or_insert(i);
            }
            for l in &d.lines {
                ix.devices_of_line.entry(l.clone()).or_default().push(i);
            }
        }
        for (i, l) in self.lines.iter().enumerate() {
            ix.lines_by_dn.entry(l.dn.clone()).or_default().push(i);
        }
        self.index = ix;
    }

    pub fn device(&self, name: &str) -> Option<&Device> {
        match self.index.device_by_name.get(name).and_then(|&i| self.devices.get(i)) {
            Some(d) if d.name == name => Some(d),
            _ => self.devices.iter().find(|d| d.name == name),
        }
    }
    pub fn line(&self, key: &LineKey) -> Option<&Line> {
        self.line_in(&key.dn, &key.partition)
    }
    /// The line `dn` in `partition`.
    pub fn line_in(&self, dn: &str, partition: &str) -> Option<&Line> {
        let is = |l: &&Line| l.dn == dn && l.partition == partition;
        let ix = self.index.lines_by_dn.get(dn).map_or(&[][..], Vec::as_slice);
        ix.iter().filter_map(|&i| self.lines.get(i)).find(is).or_else(|| self.lines.iter().find(is))
    }
    /// The sip_phone device whose digest username is `user`.
    pub fn phone_by_username(&self, user: &str) -> Option<&Device> {
        let is = |d: &Device| matches!(&d.kind, DeviceKind::SipPhone { username, .. } if username == user);
        match self.index.phone_by_username.get(user).and_then(|&i| self.devices.get(i)) {
            Some(d) if is(d) => Some(d),
            _ => self.devices.iter().find(|d| is(d)),
        }
    }
    /// The devices a line appears on, in configuration order.
    pub fn devices_of_line<'c>(&'c self, line: &'c LineKey) -> impl Iterator<Item = &'c Device> + 'c {
        let ix = self.index.devices_of_line.get(line).map_or(&[][..], Vec::as_slice);
        let indexed = ix.iter().filter_map(|&i| self.devices.get(i)).filter(move |d| d.lines.contains(line));
        // Entries moved since indexing: a miss falls back to a scan.
        let hit = indexed.clone().next().is_some();
        let scan = self.devices.iter().filter(move |d| !hit && d.lines.contains(line));
        indexed.filter(move |_| hit).chain(scan)
    }
    pub fn css(&self, name: &str) -> Option<&CallingSearchSpace> {
        self.calling_search_spaces.iter().find(|c| c.name == name)
    }
    pub fn pool(&self, name: &str) -> Option<&DevicePool> {
        self.device_pools.iter().find(|p| p.name == name)
    }
    pub fn trunk(&self, name: &str) -> Option<&Trunk> {
        self.trunks.iter().find(|t| t.name == name)
    }
    pub fn app_user(&self, name: &str) -> Option<&AppUser> {
        self.app_users.iter().find(|a| a.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct SystemConfig {
    pub name: String,
    pub data_dir: Option<PathBuf>,
    pub log_level: log::LevelFilter,
    pub country: Country,
}

/// Tone plan and ring cadence (dial tone, busy, ringback, ring cadence, caller-ID flavour).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Country {
    Us,
    Ca,
    Uk,
    De,
    Fr,
    It,
    Es,
    Nl,
    Au,
}

impl Country {
    pub const NAMES: &'static [&'static str] = &["us", "ca", "uk", "de", "fr", "it", "es", "nl", "au"];
    const ALL: [Country; 9] =
        [Country::Us, Country::Ca, Country::Uk, Country::De, Country::Fr, Country::It, Country::Es, Country::Nl, Country::Au];
    pub fn parse(s: &str) -> Option<Country> {
        Self::NAMES.iter().position(|n| *n == s).map(|i| Self::ALL[i])
    }
    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

#[derive(Debug, Clone)]
pub struct SipConfig {
    /// None: SIP over UDP is off.
    pub udp: Option<SocketAddr>,
    /// None: SIP over TCP is off.
    pub tcp: Option<SocketAddr>,
    /// Digest realm (default: system.name).
    pub realm: String,
    /// The SIP domain phones register in; None accepts any host part.
    pub domain: Option<String>,
    /// RFC 3261 §17.1.1.1 T1, RTT estimate (default 500 ms).
    pub t1_ms: u32,
    /// RFC 3261 T2, maximum retransmit interval for non-INVITE (default 4000 ms).
    pub t2_ms: u32,
    /// RFC 3261 T4, maximum duration a message stays in the network (default 5000 ms).
    pub t4_ms: u32,
    pub min_expires_s: u32,
    pub max_expires_s: u32,
    pub default_expires_s: u32,
    /// Digest challenges offered, most preferred first (RFC 8760 §2.4): clients use the
    /// first they support. Default SHA-256 then MD5.
    pub digest_algorithms: Vec<DigestAlgorithm>,
    pub throttle: Throttle,
    /// Calls up at once; past it new calls get 503 with Retry-After (default 8192).
    pub max_calls: u32,
    /// Live SIP transactions; past it new calls and dialogs get 503 with Retry-After,
    /// while requests inside dialogs may use up to twice it (default 131072).
    pub max_transactions: u32,
    /// An answered call with no request from either party for this long is probed
    /// with an in-dialog OPTIONS to each SIP leg; a leg that answers 481 or 408, or
    /// not at all, ends the call (default 600 s).
    pub call_idle_s: u32,
}

/// A SIP digest algorithm (RFC 8760); `core::digest` hashes with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DigestAlgorithm {
    Md5,
    Sha256,
}

/// Digest authentication failure throttling, per source address.
#[derive(Debug, Clone)]
pub struct Throttle {
    pub auth_failures: u32,
    pub window_s: u32,
    pub ban_s: u32,
}

#[derive(Debug, Clone)]
pub struct CtiConfig {
    pub listen: SocketAddr,
    pub heartbeat_s: u32,
    pub max_apps: u32,
    /// Failed logins per source address before it is refused for a while.
    pub throttle: Throttle,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Codec {
    Pcmu,
    Pcma,
}

impl Codec {
    pub const NAMES: &'static [&'static str] = &["pcmu", "pcma"];
    pub fn parse(s: &str) -> Option<Codec> {
        match s {
            "pcmu" => Some(Codec::Pcmu),
            "pcma" => Some(Codec::Pcma),
            _ => None,
        }
    }
    /// RTP static payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }
}

#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// First RTP port (even); RTCP uses the odd port above each RTP port.
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    /// Preference order, never empty.
    pub codecs: Vec<Codec>,
    /// Music on hold: an 8 kHz mono PCM16 / G.711 WAV file (checked at load), else
    /// the built-in melody. Relative paths are resolved against the config file.
    pub moh_file: Option<PathBuf>,
    /// Where the prompts a CTI application plays (`play`) are read from; a prompt
    /// name is one file name in it. Relative paths are resolved against the config file.
    pub prompts_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Partition {
    pub name: String,
    pub description: String,
}

#[derive(Debug, Clone)]
pub struct CallingSearchSpace {
    pub name: String,
    /// Searched in this order; the first partition with a match wins ties.
    pub partitions: Vec<String>,
    pub description: String,
}

/// A directory number in a partition: what identifies a line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct LineKey {
    pub dn: String,
    pub partition: String,
}

impl std::fmt::Display for LineKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.dn, self.partition)
    }
}

#[derive(Debug, Clone)]
pub struct Line {
    pub dn: String,
    pub partition: String,
    pub display_name: Option<String>,
    pub forward: Forward,
}

impl Line {
    pub fn key(&self) -> LineKey {
        LineKey { dn: self.dn.clone(), partition: self.partition.clone() }
    }
}

/// Call forwarding of a line. Targets are dialled numbers routed through `css`.
#[derive(Debug, Clone, Default)]
pub struct Forward {
    pub all: Option<String>,
    pub busy: Option<String>,
    pub no_answer: Option<String>,
    pub no_answer_timeout_s: u32,
    pub on_failure: Option<String>,
    pub unregistered: Option<String>,
    /// None: the calling search space of the device the line is on.
    pub css: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Device {
    pub name: String,
    pub kind: DeviceKind,
    /// Resolved lines (a "dn" alone was unique across partitions).
    pub lines: Vec<LineKey>,
    /// None: the device can reach no one (inbound calls still arrive).
    pub css: Option<String>,
    pub pool: String,
    pub description: String,
}

#[derive(Debug, Clone)]
pub enum DeviceKind {
    SipPhone { username: String, password: Password },
    CtiPort { media: Option<SocketAddr>, codec: Option<Codec> },
    CtiRoutePoint { max_calls: u32, answer_timeout_s: u32 },
    /// `call_waiting`: a second call to a line in a call is offered as call waiting.
    AnalogFxs { port: String, call_waiting: bool },
    /// `polarity_answer`: a call out of the line is answered on its polarity reversal
    /// (where the board has a polarity input); otherwise, or without the input,
    /// `answer_delay_s` after the last digit.
    AnalogFxo { port: String, inbound: LineKey, polarity_answer: bool, answer_delay_s: u32 },
}

impl DeviceKind {
    pub const NAMES: &'static [&'static str] = &["sip_phone", "cti_port", "cti_route_point", "analog_fxs", "analog_fxo"];
    pub fn type_name(&self) -> &'static str {
        match self {
            DeviceKind::SipPhone { .. } => "sip_phone",
            DeviceKind::CtiPort { .. } => "cti_port",
            DeviceKind::CtiRoutePoint { .. } => "cti_route_point",
            DeviceKind::AnalogFxs { .. } => "analog_fxs",
            DeviceKind::AnalogFxo { .. } => "analog_fxo",
        }
    }
}

#[derive(Debug, Clone)]
pub struct DevicePool {
    pub name: String,
    pub codecs: Vec<Codec>,
    pub country: Country,
    pub description: String,
}

#[derive(Debug, Clone)]
pub struct RoutePattern {
    pub pattern: Pattern,
    pub partition: String,
    pub target: RouteTarget,
    /// Drop the digits before the `.` of the pattern (CUCM "PreDot").
    pub strip_prefix: bool,
    /// Digits put in front after stripping.
    pub prefix: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    Trunk(String),
    /// An analog_fxo device.
    Device(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

#[derive(Debug, Clone)]
pub struct Trunk {
    pub name: String,
    /// Host name or IP literal.
    pub host: String,
    pub port: u16,
    pub transport: Transport,
    pub register: bool,
    pub username: Option<String>,
    pub password: Option<Password>,
    /// Routes inbound calls by their number; None and no inbound_dn: inbound refused.
    pub css: Option<String>,
    /// Every inbound call goes here (before css routing).
    pub inbound: Option<LineKey>,
    pub description: String,
}

#[derive(Debug, Clone)]
pub struct AppUser {
    pub name: String,
    pub secret: AppSecret,
    pub devices: DeviceSet,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSet {
    All,
    Only(Vec<String>),
}

impl DeviceSet {
    pub fn contains(&self, device: &str) -> bool {
        match self {
            DeviceSet::All => true,
            DeviceSet::Only(v) => v.iter().any(|d| d == device),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The other unit of a redundant pair.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The peer's link address.
    pub address: SocketAddr,
    /// Where this unit listens for the peer link (TCP).
    pub listen: SocketAddr,
    /// 1-255. Only breaks the tie when both units start together: the higher one
    /// becomes active. Never causes a fail-back to a running active unit.
    pub priority: u8,
    pub service_address: Cidr,
    pub interface: String,
    pub heartbeat_ms: u32,
    pub dead_after_ms: u32,
    /// The pair key authenticating every frame of the peer link (HMAC-SHA256).
    pub key: super::secrets::PairKey,
    /// An address both boxes can reach (the site's gateway): a box takes over only
    /// while it answers.
    pub witness: IpAddr,
    /// Where a probe asks the peer for its status over the LAN when the peer link is
    /// silent (the peer's LAN address; default: `address`'s IP). With a peer link of
    /// its own (a second interface), a cut link then causes no takeover.
    pub peer_lan_address: IpAddr,
}

#[derive(Debug, Clone)]
pub struct BoardRef {
    /// The board's name (from `[board] name`, or the `name` in the board file).
    pub name: String,
    /// Set when the board came from `[board] file`.
    pub file: Option<PathBuf>,
    /// The loaded and validated board description.
    pub def: Board,
}
