//! The agent's shared state, data only: the latches ([`readiness`](crate::readiness)
//! sets and reads them), the config in force, the last observation of the broker
//! ([`observe`](crate::observe) writes it), the last JMX exporter sample. The
//! operations on it live in their own modules: [`readiness`](crate::readiness),
//! [`observe`](crate::observe), [`guard`](crate::guard) (safe-to-stop and the preStop
//! wait), [`reconfigure`](crate::reconfigure).

use std::{
    path::PathBuf,
    sync::{Arc, OnceLock, RwLock, atomic::AtomicBool},
    time::{Duration, Instant},
};

use stoker_proto::agent::v1::{BrokerRef, DesiredConfig};
use tokio::sync::Notify;

use crate::{
    admin::metrics::{IdentityLabels, Metrics},
    broker::kafka::BrokerClient,
    config::{Roles, ValidatedConfig},
};

/// How long one admin call to the broker may take.
pub const BROKER_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Kafka's default `controller.quorum.fetch.timeout.ms`.
const DEFAULT_QUORUM_FETCH_TIMEOUT_MS: i64 = 2000;

/// Where and how often the Kafka container's JMX exporter is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JmxSource {
    /// Its URL (`http://host:port/path`).
    pub url: String,
    /// Time between samples.
    pub interval: Duration,
}

/// The last sample of the JMX exporter, ready to serve.
#[derive(Debug, Clone)]
pub struct JmxSample {
    /// Its series, re-labelled with the agent's identity labels.
    pub relabelled: String,
    /// When it was taken.
    pub taken: Instant,
    /// How long the exporter took to answer.
    pub took: Duration,
    /// Kafka's broker state number from it, if present.
    pub broker_state: Option<i64>,
    /// Logs left to recover, from it.
    pub remaining_logs: u64,
}

/// State shared by every task of the agent.
#[derive(Debug)]
pub struct Shared {
    pub(crate) startup_error: RwLock<Option<String>>,
    pub(crate) running: OnceLock<Arc<Running>>,
    pub(crate) shutting_down: AtomicBool,
    pub(crate) force_stop: AtomicBool,
    /// Woken when the shutdown latch is set.
    pub shutdown_notify: Notify,
    /// Woken when a second SIGTERM asks to stop waiting.
    pub force_notify: Notify,
    /// Longest wait for safe-to-stop on preStop.
    pub shutdown_timeout: Duration,
    /// The JMX exporter to sample, if any.
    pub jmx: Option<JmxSource>,
    /// Its last sample.
    pub(crate) jmx_sample: RwLock<Option<JmxSample>>,
    /// The cluster's stop lock, when the agent runs in Kubernetes with one.
    pub(crate) stop_lock: OnceLock<StopLockRef>,
    /// The stop lock while this agent holds it (its broker is stopping), and the task
    /// that renews it.
    pub(crate) held_lock: tokio::sync::Mutex<Option<HeldLock>>,
}

/// Which Lease is the cluster's stop lock, and who this agent is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopLockRef {
    /// The Lease's namespace (the Pod's).
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// This agent's identity: its Pod's name.
    pub me: String,
}

/// The stop lock while held.
#[derive(Debug)]
pub struct HeldLock {
    /// The lock.
    pub lock: crate::stop_lock::StopLock,
    /// Renews it until aborted.
    pub renewal: tokio::task::JoinHandle<()>,
}

impl Shared {
    /// A not-yet-started agent.
    pub fn new(shutdown_timeout: Duration, jmx: Option<JmxSource>) -> Self {
        Self {
            startup_error: RwLock::new(Some("the desired config has not been rendered yet".into())),
            running: OnceLock::new(),
            shutting_down: AtomicBool::new(false),
            force_stop: AtomicBool::new(false),
            shutdown_notify: Notify::new(),
            force_notify: Notify::new(),
            shutdown_timeout,
            jmx,
            jmx_sample: RwLock::new(None),
            stop_lock: OnceLock::new(),
            held_lock: tokio::sync::Mutex::new(None),
        }
    }

    /// Makes the preStop check take `lock` first (set once, at start-up).
    pub fn set_stop_lock(&self, lock: StopLockRef) {
        let _ = self.stop_lock.set(lock);
    }

    /// The running state, once the config is rendered.
    pub fn running(&self) -> Option<&Arc<Running>> {
        self.running.get()
    }

    /// The last JMX sample, if one was taken.
    pub fn jmx_sample(&self) -> Option<JmxSample> {
        self.jmx_sample.read().ok().and_then(|s| s.clone())
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
    /// Hash of the desired config those keys come from (empty when none wait).
    pub pending_hash: String,
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
    pub(crate) in_force: RwLock<InForce>,
    pub(crate) observation: RwLock<Observation>,
    pub(crate) quorum_fetch_timeout_ms: i64,
    /// Beside a broker Stoker did not build (`stoker-agent observe`): it owns no config,
    /// so it refuses to reconfigure.
    pub observe_only: bool,
    /// The folder the stores were rendered into and each TLS listener's material in
    /// force; empty without TLS listeners.
    pub tls_stores: (PathBuf, Vec<crate::tls_store::ListenerStores>),
}

/// A client of listener `l` of the broker at `pod_ip` (port `default_port` when the
/// listener is unknown): over mutual TLS with the broker's own certificate when the
/// listener is `SSL`, checking the broker's advertised name.
fn client_of(
    l: Option<&crate::config::ValidatedListener>,
    pod_ip: &str,
    default_port: u16,
) -> BrokerClient {
    let port = l.and_then(|l| l.port).unwrap_or(default_port);
    let tls = l.filter(|l| l.protocol == "SSL").and_then(|l| {
        l.tls_dir.clone().map(|dir| crate::broker::kafka::NodeTls {
            dir,
            server_name: l
                .advertised_host
                .clone()
                .unwrap_or_else(|| pod_ip.to_owned()),
        })
    });
    BrokerClient::new(format!("{pod_ip}:{port}"), BROKER_CALL_TIMEOUT, tls)
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
        let client = client_of(config.internal_listener(), pod_ip, 9092);
        let controller_client = config
            .roles
            .controller
            .then(|| client_of(config.controller_listener(), pod_ip, 9093));
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
                pending_hash: String::new(),
            }),
            observation: RwLock::new(Observation::default()),
            quorum_fetch_timeout_ms,
            observe_only: false,
            tls_stores: (PathBuf::new(), Vec::new()),
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
