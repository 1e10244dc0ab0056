//! The agent's latches and readiness checks. The startup latch opens once, when the
//! broker's config is rendered (and never closes); the shutdown latch closes once, on
//! SIGTERM, preStop or PrepareShutdown (and never opens again). Readiness is every
//! check passing: config rendered, broker reachable and registered, not recovering
//! logs, not shutting down.

use std::sync::{Arc, atomic::Ordering};

use serde::Serialize;

use crate::state::{Running, Shared};

impl Shared {
    /// Records why the agent cannot start (shown by /healthz and /startupz).
    pub fn set_startup_error(&self, error: String) {
        if let Ok(mut e) = self.startup_error.write() {
            *e = Some(error);
        }
    }

    /// Marks the config rendered: the startup latch opens for good.
    pub fn set_running(&self, running: Arc<Running>) {
        let _ = self.running.set(running);
        if let Ok(mut e) = self.startup_error.write() {
            *e = None;
        }
    }

    /// Why the agent is not started, if it is not.
    pub fn startup_error(&self) -> Option<String> {
        if self.running.get().is_some() {
            return None;
        }
        self.startup_error.read().ok().and_then(|e| e.clone())
    }

    /// Sets the shutdown latch: readiness turns false at once and stays false.
    pub fn begin_shutdown(&self, why: &str) {
        if !self.shutting_down.swap(true, Ordering::SeqCst) {
            tracing::info!(why, "Shutdown begun; reporting not ready");
            if let Some(r) = self.running() {
                r.metrics.ready.set(0);
            }
            self.shutdown_notify.notify_waiters();
        }
    }

    /// Ends every safe-to-stop wait (a second SIGTERM).
    pub fn force_stop(&self) {
        self.force_stop.store(true, Ordering::SeqCst);
        self.force_notify.notify_waiters();
    }

    /// True after [`Shared::force_stop`].
    pub fn force_stop_requested(&self) -> bool {
        self.force_stop.load(Ordering::SeqCst)
    }

    /// True once shutdown has begun.
    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Every readiness check with its result.
    pub fn health(&self) -> Health {
        let mut checks = Vec::new();
        let startup = self.startup_error();
        checks.push(Check::new(
            "config_rendered",
            startup.clone().map_or(Ok(()), Err),
            "server.properties is rendered",
        ));
        let (hash, restart_needed) = match self.running() {
            Some(r) => {
                let obs = r.observation();
                checks.push(Check::new(
                    "kafka_reachable",
                    obs.reachable.clone(),
                    "the broker answers on its internal listener",
                ));
                checks.push(Check::new(
                    "registered",
                    obs.registered.clone(),
                    "the broker is registered in the cluster metadata",
                ));
                checks.push(Check::new(
                    "not_recovering",
                    obs.not_recovering.clone(),
                    "the broker is not recovering logs",
                ));
                let in_force = r.in_force();
                (in_force.hash, in_force.restart_needed)
            }
            None => (String::new(), Vec::new()),
        };
        checks.push(Check::new(
            "not_shutting_down",
            if self.shutting_down() {
                Err("the broker is shutting down".into())
            } else {
                Ok(())
            },
            "the broker is not shutting down",
        ));
        let ready = checks.iter().all(|c| c.ok);
        let status = if startup.is_some() {
            "not_started"
        } else if ready {
            "ready"
        } else {
            "not_ready"
        };
        Health {
            status,
            checks,
            config_hash_in_force: hash,
            restart_needed,
        }
    }
}

/// One readiness check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Its name.
    pub name: &'static str,
    /// Whether it passes.
    pub ok: bool,
    /// Why (what passes, or what fails).
    pub detail: String,
}

impl Check {
    fn new(name: &'static str, result: Result<(), String>, ok_detail: &str) -> Self {
        match result {
            Ok(()) => Self {
                name,
                ok: true,
                detail: ok_detail.to_owned(),
            },
            Err(detail) => Self {
                name,
                ok: false,
                detail,
            },
        }
    }
}

/// What /healthz answers.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// not_started, not_ready or ready.
    pub status: &'static str,
    /// Every check.
    pub checks: Vec<Check>,
    /// Hash of the desired config in force.
    pub config_hash_in_force: String,
    /// Keys waiting for a restart.
    pub restart_needed: Vec<String>,
}

impl Health {
    /// True when every check passes.
    pub fn ready(&self) -> bool {
        self.status == "ready"
    }

    /// The failing checks, joined.
    pub fn reasons(&self) -> String {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_shutdown_latch_closes_once_and_stays_closed() {
        let shared = Shared::new(Duration::from_secs(1), None);
        assert_eq!(shared.health().status, "not_started");
        shared.begin_shutdown("test");
        shared.begin_shutdown("again");
        assert!(shared.shutting_down());
        let health = shared.health();
        assert!(!health.ready());
        assert!(
            health.reasons().contains("shutting down"),
            "{}",
            health.reasons()
        );
    }
}
