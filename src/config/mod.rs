//! The configuration: the TOML model (`model`), its parsing and validation with
//! file:line:column errors (`error`, `validate*`), dial plan syntax (`dialplan`) and
//! credentials (`secrets`). Owns no sockets and never reads the clock; the only files
//! it reads are the configuration, a board file it names, the music-on-hold WAV it
//! names, and secrets.toml.
//!
//! Errors: validation collects every error it finds, sorted by position; `parse_str`
//! and `load_file` return the first, `check_str` and `check_file` all of them (later
//! ones may follow from earlier ones).

mod board_file;
pub mod dialplan;
mod error;
pub mod model;
mod raw;
pub mod secrets;
mod validate;
mod validate_devices;
mod validate_plan;

pub use error::{ConfigError, Reason, Unreachable};
pub use model::*;
pub use secrets::{hash_secret, resolve_generated, verify_phc};

pub(crate) use error::from_toml;
pub(crate) use validate::Ctx;
pub use validate::read_audio;

use std::path::Path;

/// The embedded default configuration (simulated board, no config file needed).
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// The name the embedded default is reported under.
pub const EMBEDDED: &str = "<embedded default>";

/// Parses and validates a configuration text; `file` names it in errors and in
/// `Config::source`, and is the base for a relative `[board] file`.
pub fn parse_str(text: &str, file: &str) -> Result<Config, ConfigError> {
    check_str(text, file).map_err(|mut v| v.swap_remove(0))
}

/// Like `parse_str`, with every error found (never an empty list).
pub fn check_str(text: &str, file: &str) -> Result<Config, Vec<ConfigError>> {
    if let Err(e) = toml::de::DeTable::parse(text) {
        return Err(vec![from_toml(&e, text, true).into_error(text, file)]);
    }
    let raw: raw::RawConfig = toml::from_str(text).map_err(|e| vec![from_toml(&e, text, false).into_error(text, file)])?;
    validate::validate(&raw, text, file)
}

/// Reads, parses and validates a configuration file (first error).
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    check_file(path).map_err(|mut v| v.swap_remove(0))
}

/// Reads, parses and validates a configuration file (every error).
pub fn check_file(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let name = path.display().to_string();
    let text = read_text(path).map_err(|reason| vec![ConfigError { file: name.clone(), line: 0, column: 0, reason }])?;
    check_str(&text, &name)
}

/// Reads a bounded UTF-8 text file (the configuration's one file read besides the
/// board file, audio files and secrets.toml, all for the shell before the engine runs).
#[allow(clippy::disallowed_methods)]
pub(crate) fn read_text(path: &Path) -> Result<String, Reason> {
    let meta = std::fs::metadata(path).map_err(|e| Reason::Read { detail: e.to_string() })?;
    let max = crate::limits::CONFIG_MAX_BYTES;
    if meta.len() > max as u64 {
        return Err(Reason::TooLarge { bytes: meta.len() as usize, max });
    }
    let bytes = std::fs::read(path).map_err(|e| Reason::Read { detail: e.to_string() })?;
    String::from_utf8(bytes).map_err(|e| Reason::Read { detail: format!("not UTF-8 at byte {}", e.utf8_error().valid_up_to()) })
}

/// The embedded default, validated (a unit test proves it is valid).
pub fn embedded_default() -> Config {
    match parse_str(DEFAULT_TOML, EMBEDDED) {
        Ok(c) => c,
        Err(e) => unreachable!("embedded default config is invalid: {e}"),
    }
}

#[cfg(test)]
mod tests;
