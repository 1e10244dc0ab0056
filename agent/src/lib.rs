//! The Stoker agent: the sidecar beside every Kafka broker.
//!
//! It renders the broker's `server.properties` from the desired config the
//! coordinator writes into the broker's ConfigMap (so the broker starts without the
//! coordinator), serves the probes and metrics of the Pod, answers the coordinator
//! over gRPC (status, safe-to-stop, live reconfiguration, prepare-shutdown), and makes
//! every stop of its broker safe through the preStop hook.
//!
//! Modules, in the order a start-up uses them: [`args`] → [`config`] (validate) →
//! [`facts`] (Pod, secrets, rack) → [`render`] (pure) → [`output`] (atomic write) →
//! [`state`] (data) with [`readiness`] (latches, checks) → [`admin`] + [`grpc`]
//! (serve) with [`broker`] (talk to Kafka), [`observe`] (the broker and its JMX
//! exporter, in the background), [`guard`] (safe-to-stop, preStop) over [`safety`]
//! (pure rules), [`reconfigure`] (pure plan, then apply) → [`shutdown`] (signals, drain).
#![forbid(unsafe_code)]

pub mod admin;
pub mod args;
pub mod broker;
pub mod config;
pub mod control;
pub mod facts;
pub mod grpc;
pub mod guard;
pub mod observe;
pub mod observed;
pub mod output;
pub mod readiness;
pub mod reconfigure;
pub mod render;
pub mod replicas;
pub mod safety;
pub mod shutdown;
pub mod state;
pub mod stop_lock;
pub mod telemetry;
pub mod tls_store;

use std::{process::ExitCode, sync::Arc, time::Duration};

pub use args::Args;
use args::{Command, ObserveArgs, RenderArgs, RunArgs, ServeArgs};
use stoker_proto::agent::v1::DesiredConfig;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::{
    config::ValidatedConfig,
    render::{ConfigFileName, PodFacts},
    shutdown::Signals,
    state::{JmxSource, Running, Shared, error_chain},
};

/// How often a failed start-up is retried (the ConfigMap may be fixed meanwhile).
const START_RETRY_INTERVAL: Duration = Duration::from_secs(5);

fn run(args: Args) -> ExitCode {
    match args.command {
        Command::Render(a) => render_offline(&a),
        Command::Run(RunArgs {
            serve,
            desired_config,
            output_dir,
            jmx_exporter_jar,
        }) => block_on(
            serve,
            Start::Render {
                desired_config,
                output_dir,
                jmx_exporter_jar,
            },
        ),
        Command::Observe(a) => {
            let ObserveArgs { serve, .. } = a;
            let start = Start::Observe {
                cluster: a.cluster,
                broker_id: a.broker_id,
                roles: a.roles,
                broker_port: a.broker_port,
                controller_port: a.controller_port,
                log_dirs: a.log_dirs,
            };
            block_on(serve, start)
        }
    }
}

/// How a serving agent starts: by rendering its broker's config, or beside a broker it
/// only observes.
enum Start {
    Render {
        desired_config: std::path::PathBuf,
        output_dir: std::path::PathBuf,
        jmx_exporter_jar: Option<std::path::PathBuf>,
    },
    Observe {
        cluster: String,
        broker_id: String,
        roles: String,
        broker_port: u16,
        controller_port: u16,
        log_dirs: Vec<std::path::PathBuf>,
    },
}

fn block_on(serve: ServeArgs, start: Start) -> ExitCode {
    telemetry::init(&serve.log_format);
    // One thread: a sidecar has little to do, and a small footprint matters more.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "Failed to start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_agent(serve, start)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %format!("{e:#}"), "Agent failed");
            ExitCode::FAILURE
        }
    }
}

/// `stoker-agent render`: validate and render offline, print where the files went.
fn render_offline(a: &RenderArgs) -> ExitCode {
    let result = (|| -> anyhow::Result<String> {
        let (config, doc) = load(&a.config)?;
        let facts = PodFacts {
            pod_name: "offline".into(),
            namespace: config.broker.namespace.clone(),
            pod_ip: a.pod_ip.clone(),
            node_name: String::new(),
            host_ip: Some(a.host_ip.clone()),
            rack: a.rack.clone(),
            config_dir: a.out.clone(),
        };
        let secrets = facts::read_secrets(&config)?;
        write_rendered(&config, &doc, &facts, &secrets, &a.out).map(|(hash, _)| hash)
    })();
    match result {
        Ok(hash) => {
            println!(
                "rendered {} and {} into {} (desired config {hash})",
                ConfigFileName::ServerProperties.as_str(),
                ConfigFileName::Log4j2Properties.as_str(),
                a.out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("stoker-agent render: {e:#}");
            ExitCode::from(65)
        }
    }
}

fn load(path: &std::path::Path) -> Result<(ValidatedConfig, DesiredConfig), config::ConfigError> {
    // Read once: the hash must describe exactly the document that is rendered, even
    // when the kubelet updates the ConfigMap file meanwhile.
    let doc = config::read_document(path)?;
    Ok((ValidatedConfig::validate(doc.clone())?, doc))
}

fn write_rendered(
    config: &ValidatedConfig,
    doc: &DesiredConfig,
    facts: &PodFacts,
    secrets: &render::SecretValues,
    out: &std::path::Path,
) -> anyhow::Result<(String, Vec<tls_store::ListenerStores>)> {
    // The stores first: server.properties names them.
    let tls = tls_store::write_all(config, out)?;
    let hash = stoker_proto::config_hash(doc);
    let rendered = render::render(config, facts, secrets, &hash);
    // With secrets inside, keep the file from other users (the Pod's fsGroup reads it).
    let mode = if secrets.0.is_empty() { 0o644 } else { 0o640 };
    output::write_atomically(
        out,
        ConfigFileName::Log4j2Properties.as_str(),
        &rendered.log4j2_properties,
        0o644,
    )?;
    output::write_atomically(
        out,
        ConfigFileName::ServerProperties.as_str(),
        &rendered.server_properties,
        mode,
    )?;
    Ok((hash, tls))
}

/// Starts once (renders, or reads what it observes); on success the agent serves.
async fn try_start(start: &Start) -> anyhow::Result<Arc<Running>> {
    match start {
        Start::Render {
            desired_config,
            output_dir,
            jmx_exporter_jar,
        } => render_and_start(desired_config, output_dir, jmx_exporter_jar.as_deref()).await,
        Start::Observe {
            cluster,
            broker_id,
            roles,
            broker_port,
            controller_port,
            log_dirs,
        } => {
            let facts = facts::pod_facts_from_env(|k| std::env::var(k).ok())?;
            let target = observed::target(
                cluster,
                &facts.namespace,
                &facts.pod_name,
                broker_id,
                roles,
                *broker_port,
                *controller_port,
                log_dirs,
            )?;
            let config = target.config();
            let doc = DesiredConfig {
                broker: Some(config.broker.clone()),
                ..DesiredConfig::default()
            };
            info!(
                broker_id = target.broker_id,
                cluster = %target.cluster,
                namespace = %target.namespace,
                "Observing a broker Stoker did not build; nothing rendered"
            );
            let mut running = Running::new(config, &doc, &facts.pod_ip, None);
            running.observe_only = true;
            Ok(Arc::new(running))
        }
    }
}

/// Renders once; on success the agent is started.
async fn render_and_start(
    desired_config: &std::path::Path,
    output_dir: &std::path::Path,
    jmx_exporter_jar: Option<&std::path::Path>,
) -> anyhow::Result<Arc<Running>> {
    let (config, doc) = load(desired_config)?;
    let mut facts = facts::pod_facts_from_env(|k| std::env::var(k).ok())?;
    facts.config_dir = output_dir.to_owned();
    facts::check_advertised(&config, &facts)?;
    if !config.rack_labels.is_empty() {
        let labels = facts::node_labels(&facts.node_name).await?;
        facts.rack = Some(facts::rack_from_labels(
            &facts.node_name,
            &labels,
            &config.rack_labels,
        )?);
    }
    let secrets = facts::read_secrets(&config)?;
    if let Some(jar) = jmx_exporter_jar {
        output::copy_atomically(jar, output_dir, stoker_proto::JMX_EXPORTER_JAR_FILE)?;
    }
    let (hash, tls) = write_rendered(&config, &doc, &facts, &secrets, output_dir)?;
    info!(
        broker_id = config.broker.broker_id,
        cluster = %config.broker.cluster,
        namespace = %config.broker.namespace,
        hash = %hash,
        out = %output_dir.display(),
        rack = facts.rack.as_deref().unwrap_or(""),
        "Rendered server.properties"
    );
    let mut running = Running::new(config, &doc, &facts.pod_ip, facts.rack);
    running.tls_stores = (output_dir.to_owned(), tls);
    Ok(Arc::new(running))
}

/// The agent's own broker as a TLS renewal drives it: its per-broker dynamic configs.
struct OwnBroker {
    client: broker::kafka::BrokerClient,
    id: i32,
}

impl tls_store::BrokerConfigs for OwnBroker {
    async fn alter(
        &self,
        set: &std::collections::BTreeMap<String, String>,
        delete: &[String],
    ) -> anyhow::Result<()> {
        Ok(self
            .client
            .incremental_alter(self.id, set, delete, false)
            .await?)
    }

    async fn value_of(&self, key: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .client
            .broker_configs(self.id)
            .await?
            .remove(key)
            .and_then(|e| e.value))
    }
}

/// Serves `stoker.agent.v1.Agent` on `addr` over mTLS with the files in `dir`
/// ([`grpc::tls`]), every call checked to come from the coordinator.
async fn serve_grpc(
    addr: std::net::SocketAddr,
    dir: std::path::PathBuf,
    shared: Arc<Shared>,
    token: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("failed to bind the gRPC server to {addr}: {e}"))?;
    let tls = Arc::new(grpc::tls::Reloading::new(dir));
    tokio::spawn(tls.clone().keep_current(token.clone()));
    let (tx, rx) = tokio::sync::mpsc::channel(32);
    tokio::spawn(
        grpc::tls::accept(listener, tls, tx, token.clone()).instrument(info_span!("grpc")),
    );
    let service = stoker_proto::agent::v1::agent_server::AgentServer::with_interceptor(
        grpc::server::AgentService::new(shared),
        grpc::tls::require_coordinator,
    );
    info!(%addr, "gRPC server listening (mTLS; commands only from the coordinator)");
    Ok(tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::ReceiverStream::new(rx),
                token.cancelled_owned(),
            )
            .instrument(info_span!("grpc")),
    ))
}

async fn run_agent(a: ServeArgs, start: Start) -> anyhow::Result<()> {
    let jmx = (!a.jmx_exporter_url.is_empty()).then(|| JmxSource {
        url: a.jmx_exporter_url.clone(),
        interval: a.jmx_interval,
    });
    let shared = Arc::new(Shared::new(a.shutdown_timeout, jmx));
    let token = CancellationToken::new();
    let mut signals = Signals::install()?;

    let admin = tokio::net::TcpListener::bind(a.admin_addr)
        .await
        .map_err(|e| anyhow::anyhow!("failed to bind the admin server to {}: {e}", a.admin_addr))?;
    info!(addr = %a.admin_addr, version = env!("CARGO_PKG_VERSION"), "Admin server listening");
    let admin_task = tokio::spawn(
        axum::serve(admin, admin::router(shared.clone()))
            .with_graceful_shutdown(token.clone().cancelled_owned())
            .into_future()
            .instrument(info_span!("admin")),
    );

    // Render, retrying until the desired config is good; Kafka waits on /startupz.
    let running = loop {
        match try_start(&start).await {
            Ok(r) => break r,
            Err(e) => {
                let msg = format!("{e:#}");
                match start {
                    Start::Render { .. } => {
                        error!(error = %msg, "Cannot render the broker config; Kafka will not start until it is fixed")
                    }
                    Start::Observe { .. } => {
                        error!(error = %msg, "Cannot name the observed broker; the agent reports not started until it is fixed")
                    }
                }
                shared.set_startup_error(msg);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(START_RETRY_INTERVAL) => {}
            _ = signals.recv() => { token.cancel(); let _ = admin_task.await; return Ok(()); }
        }
    };
    shared.set_running(running.clone());
    if !a.stop_lease.is_empty() {
        // try_start read these already; they are there.
        let facts = facts::pod_facts_from_env(|k| std::env::var(k).ok())?;
        info!(lease = %a.stop_lease, namespace = %facts.namespace, "Stops are checked under the cluster's stop Lease");
        shared.set_stop_lock(state::StopLockRef {
            namespace: facts.namespace,
            name: a.stop_lease.clone(),
            me: facts.pod_name,
        });
    }

    let grpc_task = match &a.tls_dir {
        Some(dir) => {
            Some(serve_grpc(a.grpc_addr, dir.clone(), shared.clone(), token.clone()).await?)
        }
        None => {
            warn!(
                "No --tls-dir: the gRPC server is off (it serves only over mTLS), so the coordinator's fast path to this broker is closed"
            );
            None
        }
    };
    if let Some(dir) = a.control_dir.clone() {
        info!(dir = %dir.display(), "preStop requests are taken from the Pod's control folder");
        tokio::spawn(
            control::serve(dir, shared.clone(), token.clone()).instrument(info_span!("control")),
        );
    }
    let (stores_dir, tls_listeners) = running.tls_stores.clone();
    // A controller-only node renews its controller listener through that listener
    // (its client is the controller's).
    if !tls_listeners.is_empty() {
        info!(
            listeners = tls_listeners.len(),
            "TLS listeners' certificates are renewed from their Secrets without a restart"
        );
        let broker = Arc::new(OwnBroker {
            client: running.client.clone(),
            id: running.broker.broker_id,
        });
        tokio::spawn(
            tls_store::keep_current(broker, stores_dir, tls_listeners, token.clone())
                .instrument(info_span!("tls")),
        );
    }
    let observer = tokio::spawn(
        observe::run(shared.clone(), token.clone()).instrument(info_span!("observer")),
    );

    let first = signals.recv().await;
    info!(signal = first, "Stopping");
    shutdown::drain(&shared, &running, &mut signals, a.shutdown_timeout).await;
    // Kafka has stopped: its replicas are out of every ISR, which the next broker's
    // check will see, so the stop lock can go.
    guard::release_stop_lock(&shared).await;
    token.cancel();
    observer.abort();
    if let Some(task) = grpc_task
        && let Ok(Err(e)) = task.await
    {
        warn!(error = %error_chain(&e), "gRPC server ended with an error");
    }
    let _ = admin_task.await;
    info!("Agent stopped");
    Ok(())
}
