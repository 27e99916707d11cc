//! A small `log` backend: one line per record on stderr. Under systemd (JOURNAL_STREAM
//! set) each line carries a `<N>` syslog priority prefix so journald keeps levels.
//! A line is formatted into a buffer first and written with one system call (stderr
//! is unbuffered: formatting into it directly costs a write per piece).
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
        thread_local! {
            static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        LINE.with(|line| {
            let Ok(mut line) = line.try_borrow_mut() else { return };
            line.clear();
            let _ = if self.journal {
                let prio = match record.level() {
                    Level::Error => 3,
                    Level::Warn => 4,
                    Level::Info => 6,
                    Level::Debug | Level::Trace => 7,
                };
                writeln!(line, "<{prio}>{}", record.args())
            } else {
                writeln!(line, "{:<5} {}", record.level(), record.args())
            };
            let _ = std::io::stderr().lock().write_all(&line);
            if line.capacity() > 4096 {
                *line = Vec::new();
            }
        });
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
