//! Signals and the ordered stop. SIGTERM and SIGINT are handled once, here: the first
//! one starts the drain (not-ready at once, then wait — bounded — for Kafka to stop,
//! then record whether it left its clean-shutdown marker); a second one ends every
//! wait at once.

use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::{info, warn};

use crate::{
    broker,
    state::{Running, Shared},
};

/// How long the agent waits for Kafka's clean-shutdown marker once Kafka stopped.
const MARKER_WAIT: Duration = Duration::from_secs(10);

/// The process's termination signals.
#[derive(Debug)]
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Installs the handlers (before anything else can be asked to stop).
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next SIGTERM or SIGINT and names it.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// The drain after the first signal: not-ready at once; Kafka stops first (a native
/// sidecar is terminated after the main containers), so wait for it, at most
/// `timeout`, then record whether it left its clean-shutdown marker. A second signal
/// ends the wait.
pub async fn drain(shared: &Shared, running: &Running, signals: &mut Signals, timeout: Duration) {
    shared.begin_shutdown("SIGTERM");
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        running.observe(None).await;
        if running.observation().reachable.is_err() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            warn!(
                timeout_s = timeout.as_secs(),
                "Kafka still answers after the shutdown timeout; exiting anyway"
            );
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
            which = signals.recv() => {
                shared.force_stop();
                warn!(signal = which, "Second signal: exiting without waiting for Kafka");
                return;
            }
        }
    }
    record_clean_shutdown(running).await;
}

/// Waits briefly for Kafka's clean-shutdown marker (LogManager writes it after the
/// listeners close) and records the outcome in the log and the metrics.
async fn record_clean_shutdown(running: &Running) {
    let deadline = tokio::time::Instant::now() + MARKER_WAIT;
    loop {
        if broker::clean_shutdown_marked(&running.log_dirs) {
            running.metrics.last_shutdown_clean.set(1);
            info!(log_dirs = ?running.log_dirs, "Kafka shut down cleanly (clean-shutdown marker present)");
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            running.metrics.last_shutdown_clean.set(0);
            warn!(log_dirs = ?running.log_dirs, "Kafka stopped without its clean-shutdown marker; it will recover its logs at the next start");
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
