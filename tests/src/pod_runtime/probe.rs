//! Container probes as the kubelet runs them: HTTP GET (2xx/3xx is success), TCP
//! connect, and exec (run inside the container's mount namespace; exit 0 is success),
//! each bounded by `timeoutSeconds`, with the thresholds and periods of the spec.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::core::v1::{Container, Probe},
    apimachinery::pkg::util::intstr::IntOrString,
};
use tokio::task::JoinHandle;

/// The port a probe or hook names, resolving a named container port.
pub(crate) fn port(c: &Container, p: &IntOrString) -> Result<u16, String> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("port {n} is out of range")),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|cp| cp.name.as_deref() == Some(name.as_str()))
            .and_then(|cp| u16::try_from(cp.container_port).ok())
            .ok_or_else(|| format!("container {} has no port named {name:?}", c.name)),
    }
}

/// What one probe (or hook) needs to run.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The Pod's address.
    pub ip: Ipv4Addr,
    /// The container's main process (for exec).
    pub pid: Option<u32>,
    /// The container's environment (for exec).
    pub env: BTreeMap<String, String>,
}

/// Runs an HTTP GET against the Pod.
pub(crate) async fn http_get(ip: Ipv4Addr, port: u16, path: &str) -> Result<(), String> {
    let addr = SocketAddr::from((ip, port));
    let r = crate::http::get(addr, path)
        .await
        .map_err(|e| format!("HTTP probe failed: Get \"http://{addr}{path}\": {e}"))?;
    if (200..400).contains(&r.status) {
        Ok(())
    } else {
        Err(format!(
            "HTTP probe failed with statuscode: {} ({})",
            r.status,
            r.body.trim()
        ))
    }
}

/// Runs `command` in the container's mount namespace.
pub(crate) async fn exec(target: &Target, command: &[String]) -> Result<(), String> {
    let Some(pid) = target.pid else {
        return Err("the container is not running".into());
    };
    let out = tokio::process::Command::new("nsenter")
        .arg(format!("--target={pid}"))
        .arg("--mount")
        .arg("--")
        .args(command)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&target.env)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("exec {command:?} failed to start: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "exec {command:?} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}

/// Runs one probe once.
pub(crate) async fn run(c: Container, probe: Probe, target: Target) -> Result<(), String> {
    let timeout =
        Duration::from_secs(u64::try_from(probe.timeout_seconds.unwrap_or(1).max(1)).unwrap_or(1));
    let attempt = async {
        if let Some(h) = &probe.http_get {
            let p = port(&c, &h.port)?;
            return http_get(target.ip, p, h.path.as_deref().unwrap_or("/")).await;
        }
        if let Some(t) = &probe.tcp_socket {
            let p = port(&c, &t.port)?;
            return tokio::net::TcpStream::connect((target.ip, p))
                .await
                .map(|_| ())
                .map_err(|e| format!("TCP probe failed: dial {}:{p}: {e}", target.ip));
        }
        if let Some(e) = &probe.exec {
            return exec(&target, e.command.as_deref().unwrap_or_default()).await;
        }
        Err("probe type not supported by the local Pod runtime (HTTP GET, TCP and exec are)".into())
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("probe timed out after {timeout:?}")))
}

/// The state of one probe of one container.
#[derive(Debug, Default)]
pub(crate) struct ProbeState {
    last_run: Option<Instant>,
    running: Option<JoinHandle<Result<(), String>>>,
    successes: i32,
    failures: i32,
    /// The last failure's message.
    pub(crate) last_error: Option<String>,
}

/// What a probe concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// `successThreshold` successes in a row.
    Passed,
    /// `failureThreshold` failures in a row (with the last message).
    Failed(String),
}

impl ProbeState {
    /// Forgets everything (the container restarted).
    pub(crate) fn reset(&mut self) {
        if let Some(t) = self.running.take() {
            t.abort();
        }
        *self = Self::default();
    }

    /// Starts the probe when it is due, collects a finished run, and returns a verdict
    /// when a threshold is reached.
    pub(crate) fn poll(
        &mut self,
        c: &Container,
        probe: &Probe,
        target: &Target,
        started_at: Instant,
    ) -> Option<Verdict> {
        let now = Instant::now();
        let mut verdict = None;
        if self.running.as_ref().is_some_and(JoinHandle::is_finished) {
            let res = self
                .running
                .take()
                .and_then(|t| futures::FutureExt::now_or_never(t).and_then(Result::ok))
                .unwrap_or_else(|| Err("the probe task failed".into()));
            match res {
                Ok(()) => {
                    self.failures = 0;
                    self.successes += 1;
                    if self.successes >= probe.success_threshold.unwrap_or(1) {
                        verdict = Some(Verdict::Passed);
                    }
                }
                Err(e) => {
                    self.successes = 0;
                    self.failures += 1;
                    self.last_error = Some(e.clone());
                    if self.failures >= probe.failure_threshold.unwrap_or(3) {
                        self.failures = 0;
                        verdict = Some(Verdict::Failed(e));
                    }
                }
            }
        }
        let delay = Duration::from_secs(
            u64::try_from(probe.initial_delay_seconds.unwrap_or(0)).unwrap_or(0),
        );
        let period = Duration::from_secs(
            u64::try_from(probe.period_seconds.unwrap_or(10).max(1)).unwrap_or(10),
        );
        let due = now >= started_at + delay && self.last_run.is_none_or(|t| now >= t + period);
        if self.running.is_none() && due {
            self.last_run = Some(now);
            self.running = Some(tokio::spawn(run(c.clone(), probe.clone(), target.clone())));
        }
        verdict
    }
}
