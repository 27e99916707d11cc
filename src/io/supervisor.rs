//! The supervisor: every long-lived task and thread is registered here. If one ends
//! (returns, fails or panics), the process exits non-zero so systemd restarts it; a
//! half-alive appliance is worse than a restarted one.

use std::future::Future;
use tokio::sync::mpsc;

/// Why a supervised task or thread ended.
#[derive(Debug)]
pub struct Death {
    pub name: String,
    pub reason: String,
}

#[derive(Clone)]
pub struct Supervisor {
    tx: mpsc::Sender<Death>,
}

pub struct Deaths {
    rx: mpsc::Receiver<Death>,
}

impl Deaths {
    /// Waits for the first death.
    pub async fn next(&mut self) -> Death {
        match self.rx.recv().await {
            Some(d) => d,
            None => Death { name: "supervisor".into(), reason: "all senders gone".into() },
        }
    }
}

pub fn new() -> (Supervisor, Deaths) {
    let (tx, rx) = mpsc::channel(16);
    (Supervisor { tx }, Deaths { rx })
}

impl Supervisor {
    /// Spawns a supervised task on the current runtime.
    pub fn spawn<F>(&self, name: &str, fut: F)
    where
        F: Future<Output = Result<(), String>> + 'static,
    {
        let tx = self.tx.clone();
        let name = name.to_string();
        let handle = tokio::task::spawn_local(fut);
        tokio::task::spawn_local(async move {
            let reason = match handle.await {
                Ok(Ok(())) => "ended".to_string(),
                Ok(Err(e)) => e,
                Err(e) if e.is_panic() => format!("panicked: {}", panic_text(e.into_panic())),
                Err(e) => format!("cancelled: {e}"),
            };
            let _ = tx.send(Death { name, reason }).await;
        });
    }

    /// Spawns a supervised OS thread (real-time audio, the watchdog pinger).
    pub fn spawn_thread<F>(&self, name: &str, f: F) -> std::io::Result<()>
    where
        F: FnOnce() -> Result<(), String> + Send + 'static,
    {
        let tx = self.tx.clone();
        let tname = name.to_string();
        std::thread::Builder::new().name(name.to_string()).spawn(move || {
            let reason = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                Ok(Ok(())) => "ended".to_string(),
                Ok(Err(e)) => e,
                Err(p) => format!("panicked: {}", panic_text(p)),
            };
            let _ = tx.blocking_send(Death { name: tname, reason });
        })?;
        Ok(())
    }
}

pub(crate) fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

/// Nice 10 for the calling thread only (the secret verifier, the heap trimmer): their
/// work waits for calls, not the other way round.
pub fn lower_thread_priority(what: &str) {
    // SAFETY: plain system calls on the calling thread, no pointers.
    let r = unsafe {
        let tid = nix::libc::syscall(nix::libc::SYS_gettid) as nix::libc::id_t;
        nix::libc::setpriority(nix::libc::PRIO_PROCESS, tid, 10)
    };
    if r != 0 {
        log::debug!("{what}: cannot lower priority: {}", std::io::Error::last_os_error());
    }
}
