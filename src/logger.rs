//! A small `log` backend: one line per record on stderr. Under systemd (JOURNAL_STREAM
//! set) each line carries a `<N>` syslog priority prefix so journald keeps levels.
#![allow(clippy::disallowed_methods)] // reads JOURNAL_STREAM and the level from the environment

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;

struct StderrLogger {
    journal: bool,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = if self.journal {
            let prio = match record.level() {
                Level::Error => 3,
                Level::Warn => 4,
                Level::Info => 6,
                Level::Debug | Level::Trace => 7,
            };
            writeln!(err, "<{prio}>{}", record.args())
        } else {
            writeln!(err, "{:<5} {}", record.level(), record.args())
        };
    }

    fn flush(&self) {}
}

/// Parses a level name as used by `--log` and `CTIBOX_LOG`.
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    s.parse().ok()
}

/// Installs the logger once; later calls only change the level.
pub fn init(level: LevelFilter) {
    static LOGGER: std::sync::OnceLock<StderrLogger> = std::sync::OnceLock::new();
    let logger = LOGGER.get_or_init(|| StderrLogger { journal: std::env::var_os("JOURNAL_STREAM").is_some() });
    let _ = log::set_logger(logger);
    log::set_max_level(level);
}
