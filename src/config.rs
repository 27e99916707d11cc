//! STUB — replaced by the full configuration model. Owns parsing and validation of
//! the TOML configuration; knows nothing of sockets or the engine.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The embedded default configuration (simulated board, no config file needed).
pub const DEFAULT_TOML: &str = include_str!("default.toml");

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the configuration came from (a path, or "<embedded default>").
    pub source: String,
    pub sip: SipConfig,
    pub cti: CtiConfig,
    pub http: HttpConfig,
    pub board: BoardRef,
    pub system: SystemConfig,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SystemConfig {
    pub name: String,
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SipConfig {
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CtiConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BoardRef {
    pub name: String,
}

#[derive(Deserialize)]
struct Raw {
    system: SystemConfig,
    sip: SipConfig,
    cti: CtiConfig,
    http: HttpConfig,
    board: BoardRef,
}

/// A configuration refused at load: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub reason: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.reason)
    }
}
impl std::error::Error for ConfigError {}

pub fn parse_str(text: &str, file: &str) -> Result<Config, ConfigError> {
    let raw: Raw = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        ConfigError { file: file.to_string(), line, column, reason: e.message().to_string() }
    })?;
    Ok(Config { source: file.to_string(), sip: raw.sip, cti: raw.cti, http: raw.http, board: raw.board, system: raw.system })
}

pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError { file: name.clone(), line: 0, column: 0, reason: format!("cannot read: {e}") })?;
    parse_str(&text, &name)
}

pub fn embedded_default() -> Config {
    parse_str(DEFAULT_TOML, "<embedded default>").expect("embedded default config is valid")
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
