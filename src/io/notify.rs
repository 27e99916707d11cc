//! sd_notify and the software watchdog. READY=1 once sockets are bound; WATCHDOG=1
//! from a dedicated thread, but only while the engine loop keeps beating: a stalled
//! loop stops the pings, and systemd (WatchdogSec=) kills and restarts the unit.

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A connection to $NOTIFY_SOCKET, if systemd (or a test) gave one.
pub struct Notifier {
    sock: UnixDatagram,
    addr: std::os::unix::net::SocketAddr,
}

impl Notifier {
    /// Reads NOTIFY_SOCKET; `None` when not running under a notify-aware supervisor.
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let path = path.to_string_lossy().into_owned();
        let addr = if let Some(abs) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(abs.as_bytes()).ok()?
        } else {
            std::os::unix::net::SocketAddr::from_pathname(&path).ok()?
        };
        let sock = UnixDatagram::unbound().ok()?;
        Some(Notifier { sock, addr })
    }

    pub fn notify(&self, state: &str) {
        if let Err(e) = self.sock.send_to_addr(state.as_bytes(), &self.addr) {
            log::warn!("sd_notify: {e}");
        }
    }
}

/// The engine loop's heartbeat: milliseconds since `origin` of its last iteration.
#[derive(Clone)]
pub struct Heartbeat {
    origin: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat { origin: Instant::now(), last_ms: Arc::new(AtomicU64::new(0)) }
    }
}

impl Heartbeat {
    /// Called by the engine loop on every iteration.
    pub fn beat(&self) {
        self.last_ms.store(self.origin.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    /// How long since the last beat.
    pub fn age(&self) -> Duration {
        let now = self.origin.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// The watchdog interval systemd asked for (WATCHDOG_USEC), if it is meant for us.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Pings WATCHDOG=1 every `interval / 2` while the loop's heartbeat is fresher than
/// `stall`. Runs forever on its own thread.
pub fn watchdog_thread(notifier: Notifier, heartbeat: Heartbeat, interval: Duration, stall: Duration) -> ! {
    let period = interval / 2;
    let mut was_stalled = false;
    loop {
        let age = heartbeat.age();
        if age <= stall {
            notifier.notify("WATCHDOG=1");
            if was_stalled {
                log::warn!("watchdog: engine loop beating again");
                was_stalled = false;
            }
        } else if !was_stalled {
            log::error!("watchdog: engine loop stalled for {} ms; withholding WATCHDOG=1", age.as_millis());
            was_stalled = true;
        }
        std::thread::sleep(period);
    }
}
