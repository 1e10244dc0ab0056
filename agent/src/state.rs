//! The agent's shared state: whether the config is rendered (the startup latch),
//! the config in force, the last observation of the broker (the readiness checks),
//! the shutdown latch, and the operations the admin and gRPC servers share
//! (observe, safe-to-stop, reconfigure).

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc, OnceLock, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde::Serialize;
use stoker_proto::agent::v1::{BrokerRef, DesiredConfig};
use tokio::sync::Notify;

use crate::{
    admin::metrics::{IdentityLabels, Metrics},
    broker::kafka::{BrokerClient, Snapshot},
    config::{Roles, ValidatedConfig},
    reconfigure,
    safety::{self, StopDecision},
};

/// How long one admin call to the broker may take.
pub const BROKER_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Kafka's default `controller.quorum.fetch.timeout.ms`.
const DEFAULT_QUORUM_FETCH_TIMEOUT_MS: i64 = 2000;

/// State shared by every task of the agent.
#[derive(Debug)]
pub struct Shared {
    startup_error: RwLock<Option<String>>,
    running: OnceLock<Arc<Running>>,
    shutting_down: AtomicBool,
    force_stop: AtomicBool,
    /// Woken when the shutdown latch is set.
    pub shutdown_notify: Notify,
    /// Woken when a second SIGTERM asks to stop waiting.
    pub force_notify: Notify,
    /// Longest wait for safe-to-stop on preStop.
    pub shutdown_timeout: Duration,
    /// The JMX exporter URL to pass through, if any.
    pub jmx_exporter_url: Option<String>,
}

impl Shared {
    /// A not-yet-started agent.
    pub fn new(shutdown_timeout: Duration, jmx_exporter_url: Option<String>) -> Self {
        Self {
            startup_error: RwLock::new(Some("the desired config has not been rendered yet".into())),
            running: OnceLock::new(),
            shutting_down: AtomicBool::new(false),
            force_stop: AtomicBool::new(false),
            shutdown_notify: Notify::new(),
            force_notify: Notify::new(),
            shutdown_timeout,
            jmx_exporter_url,
        }
    }

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

    /// The running state, once the config is rendered.
    pub fn running(&self) -> Option<&Arc<Running>> {
        self.running.get()
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

/// The last observation of the broker.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Reachable on the internal listener.
    pub reachable: Result<(), String>,
    /// Registered (brokers) or voting with a leader (controllers).
    pub registered: Result<(), String>,
    /// Not in log recovery.
    pub not_recovering: Result<(), String>,
    /// Kafka's broker state number, -1 unknown.
    pub broker_state: i64,
    /// Logs left to recover.
    pub remaining_logs: u64,
    /// Replicas of this broker not in their partition's ISR.
    pub out_of_sync: u64,
    /// The quorum leader this node sees (controllers), -1 unknown.
    pub quorum_leader: i32,
}

impl Default for Observation {
    fn default() -> Self {
        let unseen = || Err("not observed yet".to_owned());
        Self {
            reachable: unseen(),
            registered: unseen(),
            not_recovering: Ok(()),
            broker_state: -1,
            remaining_logs: 0,
            out_of_sync: 0,
            quorum_leader: -1,
        }
    }
}

/// The config in force.
#[derive(Debug, Clone)]
pub struct InForce {
    /// The document rendered at start, updated by live reconfigurations.
    pub config: ValidatedConfig,
    /// Its hash.
    pub hash: String,
    /// Keys that changed but wait for a restart.
    pub restart_needed: Vec<String>,
}

/// The state of a started agent.
#[derive(Debug)]
pub struct Running {
    /// The broker this agent serves.
    pub broker: BrokerRef,
    /// Its roles.
    pub roles: Roles,
    /// Client of the broker listener (brokers) or controller listener (controllers).
    pub client: BrokerClient,
    /// Client of the controller listener, for controllers.
    pub controller_client: Option<BrokerClient>,
    /// The log dirs (mounted read-only in the agent).
    pub log_dirs: Vec<PathBuf>,
    /// Metrics.
    pub metrics: Metrics,
    /// The broker.rack it runs with (from its Node's labels or its config); empty if none.
    pub rack: String,
    in_force: RwLock<InForce>,
    observation: RwLock<Observation>,
    quorum_fetch_timeout_ms: i64,
}

/// Why a reconfiguration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReconfigureError {
    /// The new document is invalid.
    #[error(transparent)]
    Invalid(#[from] crate::config::ConfigError),
    /// The broker could not describe its configs.
    #[error("failed to describe the broker's configs")]
    Describe(#[source] crate::broker::kafka::KafkaError),
}

/// The outcome of a reconfiguration.
#[derive(Debug, Clone, Default)]
pub struct Reconfigured {
    /// Keys applied live.
    pub applied: Vec<String>,
    /// Keys waiting for a restart (with the broker's reason for refused ones).
    pub restart_needed: Vec<String>,
    /// The hash now in force.
    pub hash_in_force: String,
}

impl Running {
    /// The state of a freshly rendered broker; `rack` is the broker.rack rendered from its
    /// Node's labels, if any (otherwise the one in its config counts).
    pub fn new(
        config: ValidatedConfig,
        doc: &DesiredConfig,
        pod_ip: &str,
        rack: Option<String>,
    ) -> Self {
        let rack = rack
            .or_else(|| config.user_config.get("broker.rack").cloned())
            .unwrap_or_default();
        let internal = config
            .internal_listener()
            .and_then(|l| l.port)
            .unwrap_or(9092);
        let client = BrokerClient::new(format!("{pod_ip}:{internal}"), BROKER_CALL_TIMEOUT);
        let controller_client = config.roles.controller.then(|| {
            let port = config
                .controller_listeners
                .first()
                .and_then(|n| config.listeners.iter().find(|l| &l.name == n))
                .and_then(|l| l.port)
                .unwrap_or(9093);
            BrokerClient::new(format!("{pod_ip}:{port}"), BROKER_CALL_TIMEOUT)
        });
        let labels = IdentityLabels {
            kafka_cr: config.broker.cluster.clone(),
            namespace: config.broker.namespace.clone(),
            broker_id: config.broker.broker_id.to_string(),
        };
        let quorum_fetch_timeout_ms = config
            .user_config
            .get("controller.quorum.fetch.timeout.ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_QUORUM_FETCH_TIMEOUT_MS);
        Self {
            broker: config.broker.clone(),
            roles: config.roles,
            client,
            controller_client,
            log_dirs: config.log_dirs.clone(),
            metrics: Metrics::new(labels, config.log_dirs.clone()),
            rack,
            in_force: RwLock::new(InForce {
                hash: stoker_proto::config_hash(doc),
                config,
                restart_needed: Vec::new(),
            }),
            observation: RwLock::new(Observation::default()),
            quorum_fetch_timeout_ms,
        }
    }

    /// The config in force.
    pub fn in_force(&self) -> InForce {
        self.in_force
            .read()
            .map(|g| g.clone())
            .expect("the in-force lock is never poisoned")
    }

    /// The last observation.
    pub fn observation(&self) -> Observation {
        self.observation
            .read()
            .map(|g| g.clone())
            .unwrap_or_default()
    }

    /// Looks at the broker now and records what it saw (readiness and metrics).
    pub async fn observe(&self, jmx: Option<&str>) -> Option<Snapshot> {
        let id = self.broker.broker_id;
        let mut obs = Observation::default();
        let mut snapshot = None;
        if self.roles.broker {
            match self.client.snapshot().await {
                Ok(snap) => {
                    obs.reachable = Ok(());
                    obs.registered = if snap.brokers.contains(&id) {
                        Ok(())
                    } else {
                        Err(format!(
                            "broker {id} is not among the registered brokers {:?}",
                            snap.brokers
                        ))
                    };
                    self.metrics.observe_snapshot(id, &snap);
                    obs.out_of_sync = u64::try_from(snap.out_of_sync_of(id)).unwrap_or(u64::MAX);
                    snapshot = Some(snap);
                }
                Err(e) => {
                    let why = format!(
                        "{} (starting, recovering logs, or stopped): {}",
                        self.client.addr(),
                        error_chain(&e)
                    );
                    obs.reachable = Err(why.clone());
                    obs.registered = Err("unknown while the broker is unreachable".into());
                }
            }
        }
        if let Some(cc) = &self.controller_client {
            match cc.quorum().await {
                Ok(q) => {
                    let voting = q.voters.iter().any(|v| v.id == id);
                    let controller_ok = if q.leader < 0 {
                        Err("the metadata quorum has no leader".to_owned())
                    } else if !voting {
                        Err(format!(
                            "controller {id} is not a voter of the metadata quorum"
                        ))
                    } else {
                        Ok(())
                    };
                    if self.roles.broker {
                        // A combined node must be both a registered broker and a voter.
                        if obs.registered.is_ok() {
                            obs.registered = controller_ok;
                        }
                    } else {
                        obs.reachable = Ok(());
                        obs.registered = controller_ok;
                    }
                    self.metrics.controller_id.set(i64::from(q.leader));
                    obs.quorum_leader = q.leader;
                }
                Err(e) if !self.roles.broker => {
                    obs.reachable = Err(format!(
                        "{} (starting or stopped): {}",
                        cc.addr(),
                        error_chain(&e)
                    ));
                    obs.registered = Err("unknown while the controller is unreachable".into());
                }
                Err(e) => tracing::debug!(error = %error_chain(&e), "Quorum not readable"),
            }
        }
        if let Some(url) = jmx
            && let Ok(text) = crate::admin::jmx::fetch(url).await
        {
            let (state, remaining) = crate::admin::jmx::broker_state(&text);
            if let Some(s) = state {
                obs.broker_state = s;
                self.metrics.broker_state.set(s);
            }
            obs.remaining_logs = remaining;
        }
        if obs.broker_state == 2 || obs.remaining_logs > 0 {
            obs.not_recovering = Err(format!(
                "the broker is recovering its logs ({} left)",
                obs.remaining_logs
            ));
        }
        if let Ok(mut o) = self.observation.write() {
            *o = obs;
        }
        snapshot
    }

    /// Whether stopping now, together with the brokers `also_stopping`, is safe; `Err`
    /// carries the reason and the blocking partitions.
    pub async fn safe_to_stop(&self, also_stopping: &[i32]) -> Result<StopDecision, String> {
        let mut decision = StopDecision::default();
        if self.roles.broker {
            let snap = self.client.snapshot().await.map_err(|e| {
                format!(
                    "cannot read the cluster metadata from the broker: {}",
                    error_chain(&e)
                )
            })?;
            decision = safety::broker_stop_decision(
                self.broker.broker_id,
                also_stopping,
                &snap.partitions,
            );
        }
        if let Some(cc) = &self.controller_client {
            let q = cc
                .quorum()
                .await
                .map_err(|e| format!("cannot read the metadata quorum: {}", error_chain(&e)))?;
            safety::controller_stop_decision(
                self.broker.broker_id,
                q.leader,
                &q.voters,
                self.quorum_fetch_timeout_ms,
            )?;
        }
        Ok(decision)
    }

    /// Applies the dynamic keys of `new` key by key with incremental AlterConfigs and
    /// records what needs a restart.
    pub async fn reconfigure(
        &self,
        new_doc: DesiredConfig,
    ) -> Result<Reconfigured, ReconfigureError> {
        let new_hash = stoker_proto::config_hash(&new_doc);
        let new = ValidatedConfig::validate(new_doc)?;
        let old = self.in_force();
        let id = self.broker.broker_id;
        let described = self
            .client
            .broker_configs(id)
            .await
            .map_err(ReconfigureError::Describe)?;
        let plan = reconfigure::plan(&old.config, &new, &described);
        let mut out = Reconfigured {
            restart_needed: plan.restart_needed.clone(),
            ..Reconfigured::default()
        };
        for (key, value) in &plan.set {
            let one = BTreeMap::from([(key.clone(), value.clone())]);
            match self.client.incremental_alter(id, &one, &[], false).await {
                Ok(()) => out.applied.push(key.clone()),
                Err(e) => {
                    tracing::warn!(key = %key, error = %error_chain(&e), "Broker refused a dynamic config change; it waits for a restart");
                    out.restart_needed.push(key.clone());
                }
            }
        }
        for key in &plan.delete {
            match self
                .client
                .incremental_alter(id, &BTreeMap::new(), std::slice::from_ref(key), false)
                .await
            {
                Ok(()) => out.applied.push(key.clone()),
                Err(e) => {
                    tracing::warn!(key = %key, error = %error_chain(&e), "Broker refused to delete a dynamic config; it waits for a restart");
                    out.restart_needed.push(key.clone());
                }
            }
        }
        out.restart_needed.sort();
        out.restart_needed.dedup();
        let mut in_force = self
            .in_force
            .write()
            .expect("the in-force lock is never poisoned");
        if out.restart_needed.is_empty() {
            *in_force = InForce {
                config: new,
                hash: new_hash.clone(),
                restart_needed: Vec::new(),
            };
        } else {
            // What is live changed, but the config in force is not the new one until a
            // restart: keep the old hash so the coordinator sees the difference.
            in_force.restart_needed = out.restart_needed.clone();
        }
        out.hash_in_force = in_force.hash.clone();
        tracing::info!(applied = ?out.applied, restart_needed = ?out.restart_needed, hash = %out.hash_in_force, "Reconfigured");
        Ok(out)
    }
}

/// An error and its sources on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src.source();
    }
    s
}
