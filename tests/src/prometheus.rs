//! Prometheus and Alertmanager from Debian's packages, each on a free 127.0.0.1 port
//! with a config the test gives, and a webhook receiver that records what
//! Alertmanager posts.

use std::{net::SocketAddr, process::Command, sync::Arc, time::Duration};

use axum::{Json, Router, extract::State, routing::post};
use tokio::sync::{Mutex, Notify};

use crate::{Error, ManagedProcess, WorkDir, http, net::free_port, system_program, wait_for};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running Prometheus server.
#[derive(Debug)]
pub struct Prometheus {
    process: ManagedProcess,
    addr: SocketAddr,
    work: WorkDir,
}

impl Prometheus {
    /// Starts Prometheus with `config` (prometheus.yml) and rule files written beside
    /// it as `rules` (name, content); `rule_files` entries in `config` may name them
    /// relatively. Both are checked with `promtool` first, so a bad config fails with
    /// promtool's message.
    pub async fn start(config: &str, rules: &[(&str, &str)]) -> Result<Self, Error> {
        let bin = system_program("prometheus", "prometheus")?;
        let promtool = system_program("prometheus (promtool)", "promtool")?;
        let work = WorkDir::new("prometheus")?;
        let config_path = work.write("prometheus.yml", config)?;
        for (name, content) in rules {
            work.write(name, content)?;
        }
        check(
            Command::new(promtool)
                .arg("check")
                .arg("config")
                .arg(&config_path),
            "promtool check config",
        )?;
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                work.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--web.enable-lifecycle")
            .arg("--log.level=warn");
        let mut process =
            ManagedProcess::spawn("prometheus", cmd, &work.path().join("prometheus.log"))?;
        wait_http_ready("prometheus", &mut process, addr, "/-/ready").await?;
        Ok(Self {
            process,
            addr,
            work,
        })
    }

    /// The address Prometheus listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs an instant query and returns the JSON response.
    pub async fn query(&self, promql: &str) -> Result<serde_json::Value, Error> {
        let path = format!("/api/v1/query?query={}", url_encode(promql));
        let resp = http::get(self.addr, &path)
            .await
            .map_err(|e| Error::Other(format!("query Prometheus: {e}")))?;
        serde_json::from_str(&resp.body)
            .map_err(|e| Error::Other(format!("parse Prometheus answer {:?}: {e}", resp.body)))
    }

    /// The health of every scrape target (`/api/v1/targets`).
    pub async fn targets(&self) -> Result<serde_json::Value, Error> {
        let resp = http::get(self.addr, "/api/v1/targets")
            .await
            .map_err(|e| Error::Other(format!("list Prometheus targets: {e}")))?;
        serde_json::from_str(&resp.body)
            .map_err(|e| Error::Other(format!("parse targets {:?}: {e}", resp.body)))
    }

    /// The work dir (config, rules, data, log).
    pub fn work_dir(&self) -> &std::path::Path {
        self.work.path()
    }

    /// The server's process.
    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }
}

/// A running Alertmanager, HA gossip off.
#[derive(Debug)]
pub struct Alertmanager {
    process: ManagedProcess,
    addr: SocketAddr,
    work: WorkDir,
}

impl Alertmanager {
    /// Starts Alertmanager with `config` (alertmanager.yml), checked by `amtool` first.
    pub async fn start(config: &str) -> Result<Self, Error> {
        let bin = system_program("alertmanager", "prometheus-alertmanager")?;
        let amtool = system_program("alertmanager (amtool)", "amtool")?;
        let work = WorkDir::new("alertmanager")?;
        let config_path = work.write("alertmanager.yml", config)?;
        check(
            Command::new(amtool).arg("check-config").arg(&config_path),
            "amtool check-config",
        )?;
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.path={}",
                work.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            // Empty disables HA gossip, which fails on hosts without a private address.
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn");
        let mut process =
            ManagedProcess::spawn("alertmanager", cmd, &work.path().join("alertmanager.log"))?;
        wait_http_ready("alertmanager", &mut process, addr, "/-/ready").await?;
        Ok(Self {
            process,
            addr,
            work,
        })
    }

    /// The address Alertmanager listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The work dir.
    pub fn work_dir(&self) -> &std::path::Path {
        self.work.path()
    }

    /// The server's process.
    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }
}

/// An HTTP server on 127.0.0.1 that records every JSON body POSTed to `/alerts`, as
/// an Alertmanager webhook receiver would.
#[derive(Debug, Clone)]
pub struct WebhookReceiver {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<serde_json::Value>>>,
    notify: Arc<Notify>,
}

impl WebhookReceiver {
    /// Binds a free port and serves until the runtime ends.
    pub async fn start() -> Result<Self, Error> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|source| Error::Io {
                what: "bind the webhook receiver".into(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Io {
            what: "read the webhook receiver's address".into(),
            source,
        })?;
        let this = Self {
            addr,
            received: Arc::default(),
            notify: Arc::default(),
        };
        let app = Router::new()
            .route("/alerts", post(record))
            .with_state(this.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("webhook receiver stopped: {e}");
            }
        });
        Ok(this)
    }

    /// The URL Alertmanager should post to.
    pub fn url(&self) -> String {
        format!("http://{}/alerts", self.addr)
    }

    /// Waits until a posted body satisfies `pred` and returns it.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            if let Some(found) = self.received.lock().await.iter().find(|v| pred(v)) {
                return Ok(found.clone());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let seen = self.received.lock().await.len();
                return Err(Error::NotReady {
                    name: "webhook".into(),
                    seconds: timeout.as_secs(),
                    last: format!("{seen} posts received, none matched"),
                });
            }
        }
    }
}

async fn record(
    State(rx): State<WebhookReceiver>,
    Json(body): Json<serde_json::Value>,
) -> &'static str {
    rx.received.lock().await.push(body);
    rx.notify.notify_waiters();
    "ok"
}

fn check(cmd: &mut Command, what: &str) -> Result<(), Error> {
    let out = cmd.output().map_err(|source| Error::Spawn {
        name: what.into(),
        program: cmd.get_program().to_string_lossy().into_owned(),
        source,
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "{what} rejected the config:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

async fn wait_http_ready(
    name: &str,
    process: &mut ManagedProcess,
    addr: SocketAddr,
    path: &str,
) -> Result<(), Error> {
    wait_for(name, READY_TIMEOUT, Duration::from_millis(100), || {
        let running = process.ensure_running();
        async move {
            running?;
            Ok(match http::get(addr, path).await {
                Ok(r) if r.status == 200 => Ok(()),
                Ok(r) => Err(format!("{path} answered {}", r.status)),
                Err(e) => Err(format!("{path}: {e}")),
            })
        }
    })
    .await
}

/// Percent-encodes a query-string value.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
