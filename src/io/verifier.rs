//! The secret verifier: Argon2 checks of CTI logins run here, off the engine loop, on
//! `CTI_VERIFY_WORKERS` low-priority threads fed by a queue of `CTI_VERIFY_QUEUE`
//! jobs. A job that finds the queue full is answered `Busy` at once, so a login flood
//! costs a fixed amount of CPU and memory and never delays SIP.

use super::driver::Event;
use super::supervisor::Supervisor;
use crate::core::{Input, Verdict, VerifyJob};
use crate::limits;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc as tmpsc;

/// Where the engine loop submits verification jobs.
#[derive(Clone)]
pub struct Verifier {
    tx: SyncSender<VerifyJob>,
}

impl Verifier {
    /// Starts the worker threads under the supervisor.
    pub fn start(sup: &Supervisor, inbox: tmpsc::Sender<Event>) -> std::io::Result<Verifier> {
        let (tx, rx) = mpsc::sync_channel::<VerifyJob>(limits::CTI_VERIFY_QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..limits::CTI_VERIFY_WORKERS {
            let rx = rx.clone();
            let inbox = inbox.clone();
            sup.spawn_thread(&format!("verify-{i}"), move || work(&rx, &inbox))?;
        }
        Ok(Verifier { tx })
    }

    /// Queues a job; gives it back when the queue is full (the caller answers `Busy`).
    pub fn submit(&self, job: VerifyJob) -> Result<(), VerifyJob> {
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(j) | TrySendError::Disconnected(j)) => Err(j),
        }
    }
}

fn work(rx: &Mutex<Receiver<VerifyJob>>, inbox: &tmpsc::Sender<Event>) -> Result<(), String> {
    super::supervisor::lower_thread_priority("verifier");
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            rx.recv().map_err(|_| "verifier queue closed".to_string())?
        };
        let verdict = if crate::config::verify_phc(&job.phc, &job.presented) { Verdict::Match } else { Verdict::Mismatch };
        let input = Input::SecretVerified { ticket: job.ticket, verdict };
        inbox.blocking_send(Event::Input(input)).map_err(|_| "engine inbox closed".to_string())?;
    }
}
