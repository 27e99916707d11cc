//! A small `log` backend: one line per record on stderr. Under systemd (JOURNAL_STREAM
//! set) each line carries a `<N>` syslog priority prefix so journald keeps levels.
#![allow(clippy::disallowed_methods)] // reads JOURNAL_STREAM and the level from the environment

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;

/// Bytes of line buffer kept between records.
const LINE_KEEP: usize = 4096;

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
        // The line is formatted first and written with one call: stderr is
        // unbuffered, so formatting straight into it costs one write(2) per piece.
        thread_local! {
            static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        LINE.with(|line| match line.try_borrow_mut() {
            Ok(mut buf) => {
                self.write_line(record, &mut buf);
                // A huge line once does not keep its buffer for ever.
                if buf.capacity() > LINE_KEEP {
                    *buf = Vec::new();
                }
            }
            // A record logged while formatting another one.
            Err(_) => self.write_line(record, &mut Vec::new()),
        });
    }

    fn flush(&self) {}
}

impl StderrLogger {
    fn write_line(&self, record: &Record, buf: &mut Vec<u8>) {
        buf.clear();
        let _ = if self.journal {
            let prio = match record.level() {
                Level::Error => 3,
                Level::Warn => 4,
                Level::Info => 6,
                Level::Debug | Level::Trace => 7,
            };
            writeln!(buf, "<{prio}>{}", record.args())
        } else {
            writeln!(buf, "{:<5} {}", record.level(), record.args())
        };
        let _ = std::io::stderr().lock().write_all(buf);
    }
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
