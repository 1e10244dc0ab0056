//! Stoker's test environment: real components, started from tests.
//!
//! Every component runs as a real process built or downloaded by `scripts/provision`
//! into the cache (`$STOKER_CACHE`, default `~/.cache/stoker`):
//!
//! - [`ControlPlane`]: etcd + kube-apiserver + kube-controller-manager → a
//!   [`kube::Client`] and a kubeconfig file;
//! - [`KafkaCluster`]: a KRaft cluster of real JVMs, each node on its own 127.x.y.z
//!   address, with stop (SIGTERM), kill (SIGKILL) and restart of one node;
//! - [`Prometheus`], [`Alertmanager`] and a [`WebhookReceiver`] for alert webhooks.
//!
//! Each test gets free ports and its own temp dir; each process logs to a file in it,
//! and a failing test prints the tail of every log. Processes are killed when their
//! handle drops, when the test panics, and when the test process dies.
//!
//! A missing component is an error that says how to provision it: these tests fail
//! loudly, they never skip.

pub mod agent;
pub mod agent_tls;
pub mod chart;
pub mod control_plane;
pub mod cruise_control;
pub mod http;
pub mod kafka;
pub mod kube_env;
pub mod net;
pub mod pod_runtime;
pub mod proc_stats;
pub mod process;
pub mod prometheus;
pub mod stats;
pub mod tls;
pub mod workdir;

use std::path::PathBuf;

pub use control_plane::ControlPlane;
pub use cruise_control::{CruiseControl, CruiseControlFiles};
pub use kafka::{KafkaCluster, KafkaClusterBuilder, NodeRole};
pub use kube_env::KubeEnv;
pub use pod_runtime::{PodRuntime, PodRuntimeOptions};
pub use process::ManagedProcess;
pub use prometheus::{Alertmanager, Prometheus, WebhookReceiver};
pub use workdir::WorkDir;

/// What went wrong while starting or driving a component.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A component is not in the cache.
    #[error(
        "{component} is not provisioned: {path} is missing; run `scripts/provision` (or `scripts/test`) first"
    )]
    NotProvisioned {
        /// The component.
        component: &'static str,
        /// The path that was expected.
        path: PathBuf,
    },
    /// A process could not be started.
    #[error("failed to start {name} ({program})")]
    Spawn {
        /// The component's name.
        name: String,
        /// The program.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A process exited while it should run.
    #[error("{name} exited ({status}); log {log}:\n{tail}")]
    Exited {
        /// The component's name.
        name: String,
        /// Its exit status.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// A component did not become ready in time.
    #[error("{name} was not ready after {seconds}s: {last}")]
    NotReady {
        /// The component's name.
        name: String,
        /// How long we waited.
        seconds: u64,
        /// The last observation.
        last: String,
    },
    /// A file operation failed.
    #[error("failed to {what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Certificates could not be generated.
    #[error("failed to generate {what}")]
    Certificate {
        /// Which certificate.
        what: &'static str,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// The kubeconfig could not be turned into a client.
    #[error("failed to build a Kubernetes client from {path}")]
    KubeClient {
        /// The kubeconfig.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A Kafka client operation failed.
    #[error("failed to {what}")]
    Kafka {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Anything else, described.
    #[error("{0}")]
    Other(String),
}

/// The cache folder `scripts/provision` fills: `$STOKER_CACHE`, else
/// `$XDG_CACHE_HOME/stoker`, else `~/.cache/stoker`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STOKER_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    base.join("stoker")
}

/// A provisioned executable or folder, or [`Error::NotProvisioned`].
pub fn provisioned(component: &'static str, relative: &str) -> Result<PathBuf, Error> {
    let path = cache_dir().join(relative);
    if path.exists() {
        Ok(path)
    } else {
        Err(Error::NotProvisioned { component, path })
    }
}

/// A program installed on the system PATH (Debian packages), or
/// [`Error::NotProvisioned`].
pub fn system_program(component: &'static str, name: &str) -> Result<PathBuf, Error> {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or(Error::NotProvisioned {
            component,
            path: PathBuf::from(name),
        })
}

/// Polls `probe` every `interval` until it returns `Ok(Some(t))`, failing with the
/// last observation after `timeout`. `probe` returns `Err` for fatal conditions
/// (a crashed process), which end the wait at once.
pub async fn wait_for<T, F, Fut>(
    name: &str,
    timeout: std::time::Duration,
    interval: std::time::Duration,
    mut probe: F,
) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Result<T, String>, Error>>,
{
    let start = std::time::Instant::now();
    loop {
        let last = match probe().await? {
            Ok(value) => return Ok(value),
            Err(observation) => observation,
        };
        if start.elapsed() >= timeout {
            return Err(Error::NotReady {
                name: name.to_owned(),
                seconds: timeout.as_secs(),
                last,
            });
        }
        tokio::time::sleep(interval).await;
    }
}

/// A binary of this workspace (e.g. `stoker-agent`) from the target dir the tests run
/// from, brought up to date with cargo first (once per process): a binary left from an
/// older build would otherwise run in place of the code under test.
pub fn workspace_binary(name: &str) -> Result<PathBuf, Error> {
    static BUILT: std::sync::Mutex<std::collections::BTreeSet<String>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let exe = std::env::current_exe().map_err(|source| Error::Io {
        what: "locate the test binary".into(),
        source,
    })?;
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .ok_or_else(|| Error::Other(format!("{} has no target dir", exe.display())))?;
    let bin = dir.join(name);
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !built.contains(name) {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let release = dir.file_name().is_some_and(|d| d == "release");
        let status = std::process::Command::new(cargo)
            .args(["build", "--quiet", "-p", name, "--bin", name])
            .args(release.then_some("--release"))
            .status()
            .map_err(|source| Error::Spawn {
                name: "cargo build".into(),
                program: "cargo".into(),
                source,
            })?;
        if !status.success() || !bin.exists() {
            return Err(Error::Other(format!(
                "cargo build -p {name} did not produce {}",
                bin.display()
            )));
        }
        built.insert(name.to_owned());
    }
    Ok(bin)
}
