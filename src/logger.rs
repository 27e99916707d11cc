//! A small `log` backend: one line per record on stderr. Under systemd (JOURNAL_STREAM
//! set) each line carries a `<N>` syslog priority prefix so journald keeps levels.
//!
//! Lines are formatted by the thread that logs and written by a thread of their own,
//! many at a time: the engine loop never waits on stderr (a pipe to journald that
//! stalls would stall calls). The queue is bounded (`limits::LOG_QUEUE_BYTES`); lines
//! that find it full are dropped and the writer says how many. `flush` (called before
//! the process exits) waits for the queue to empty.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // reads JOURNAL_STREAM and the level; the writer thread is the shell's

use crate::limits::{LOG_GATHER_MS, LOG_QUEUE_BYTES};
use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Bytes of line buffer kept between records.
const LINE_KEEP: usize = 4096;
/// How long `flush` waits for the writer at most.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Queue {
    bytes: Vec<u8>,
    dropped: u64,
    /// The writer holds a batch it has not finished writing.
    writing: bool,
    /// The writer thread runs (else lines are written by the thread that logs).
    writer: bool,
}

struct StderrLogger {
    journal: bool,
    queue: Mutex<Queue>,
    /// Signalled when the queue stops being empty.
    ready: Condvar,
    /// Signalled when the writer has written a batch.
    written: Condvar,
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
        LINE.with(|line| match line.try_borrow_mut() {
            Ok(mut buf) => {
                self.format(record, &mut buf);
                self.enqueue(&buf);
                // A huge line once does not keep its buffer for ever.
                if buf.capacity() > LINE_KEEP {
                    *buf = Vec::new();
                }
            }
            // A record logged while formatting another one.
            Err(_) => {
                let mut buf = Vec::new();
                self.format(record, &mut buf);
                self.enqueue(&buf);
            }
        });
    }

    fn flush(&self) {
        let deadline = Instant::now() + FLUSH_WAIT;
        let mut q = self.lock();
        while q.writer && (!q.bytes.is_empty() || q.writing) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            q = match self.written.wait_timeout(q, left) {
                Ok((q, _)) => q,
                Err(e) => e.into_inner().0,
            };
        }
    }
}

impl StderrLogger {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn format(&self, record: &Record, buf: &mut Vec<u8>) {
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
    }

    fn enqueue(&self, line: &[u8]) {
        let mut q = self.lock();
        if !q.writer {
            drop(q);
            let _ = std::io::stderr().lock().write_all(line);
            return;
        }
        if q.bytes.len().saturating_add(line.len()) > LOG_QUEUE_BYTES {
            q.dropped = q.dropped.saturating_add(1);
            return;
        }
        let wake = q.bytes.is_empty() && !q.writing;
        q.bytes.extend_from_slice(line);
        drop(q);
        if wake {
            self.ready.notify_one();
        }
    }

    /// The writer thread: waits for lines, lets more gather briefly, writes them with
    /// one call, and reports lines dropped meanwhile.
    fn write_forever(&self) {
        let mut batch = Vec::new();
        loop {
            {
                let mut q = self.lock();
                while q.bytes.is_empty() {
                    q = self.ready.wait(q).unwrap_or_else(|e| e.into_inner());
                }
                q.writing = true;
            }
            std::thread::sleep(Duration::from_millis(LOG_GATHER_MS));
            let dropped = {
                let mut q = self.lock();
                std::mem::swap(&mut batch, &mut q.bytes);
                std::mem::take(&mut q.dropped)
            };
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(&batch);
            if dropped > 0 {
                let prefix = if self.journal { "<4>" } else { "WARN  " };
                let _ = writeln!(err, "{prefix}log: {dropped} lines dropped (stderr did not keep up)");
            }
            drop(err);
            batch.clear();
            if batch.capacity() > LOG_QUEUE_BYTES {
                batch = Vec::new();
            }
            let mut q = self.lock();
            q.writing = false;
            drop(q);
            self.written.notify_all();
        }
    }
}

/// Parses a level name as used by `--log` and `CTIBOX_LOG`.
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    s.parse().ok()
}

/// Installs the logger once (and its writer thread); later calls only change the level.
pub fn init(level: LevelFilter) {
    static LOGGER: std::sync::OnceLock<StderrLogger> = std::sync::OnceLock::new();
    let mut first = false;
    let logger = LOGGER.get_or_init(|| {
        first = true;
        StderrLogger {
            journal: std::env::var_os("JOURNAL_STREAM").is_some(),
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            written: Condvar::new(),
        }
    });
    if first {
        let started = std::thread::Builder::new().name("log".into()).spawn(|| {
            if let Some(l) = LOGGER.get() {
                l.write_forever();
            }
        });
        logger.lock().writer = started.is_ok();
    }
    let _ = log::set_logger(logger);
    log::set_max_level(level);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logger() -> StderrLogger {
        StderrLogger { journal: false, queue: Mutex::new(Queue { writer: true, ..Queue::default() }), ready: Condvar::new(), written: Condvar::new() }
    }

    #[test]
    fn lines_that_find_the_queue_full_are_dropped_and_counted_not_waited_for() {
        let l = logger();
        let line = vec![b'x'; 1000];
        let fit = LOG_QUEUE_BYTES / line.len();
        for _ in 0..fit + 7 {
            l.enqueue(&line);
        }
        let q = l.lock();
        assert_eq!((q.bytes.len(), q.dropped), (fit * line.len(), 7));
    }
}
