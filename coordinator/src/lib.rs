//! The Stoker coordinator: the one writer of Kubernetes objects for Kafka clusters.
//! It reconciles `KafkaCluster`, `KafkaTopic` and `KafkaUser` resources, talks to the
//! agent beside every broker over gRPC, drives Cruise Control and reacts to
//! Alertmanager webhooks.
//!
//! Modules: [`crd`] (resource types), [`controller`] (reconcilers: validate → build →
//! apply → status), [`admin`] and [`metrics`] (operations).
#![forbid(unsafe_code)]

pub mod admin;
pub mod agents;
pub mod alerts;
pub mod args;
pub mod context;
pub mod controller;
pub mod crd;
pub mod cruise_control;
pub mod events;
pub mod kafka_admin;
pub mod kube_client;
pub mod lease;
pub mod metrics;
pub mod quantity;
pub mod secret_data;
pub mod webhook;

use std::{process::ExitCode, sync::Arc, sync::atomic::Ordering, time::Duration};

pub use args::Args;
use args::{Command, RunArgs};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

fn run(args: Args) -> ExitCode {
    match args.command {
        Command::Crd => {
            print!("{}", crd::all_crds_yaml());
            ExitCode::SUCCESS
        }
        Command::Run(a) => {
            init_tracing(&a.log_format);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    error!(error = %e, "Failed to start the async runtime");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run_coordinator(*a)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error!(error = %format!("{e:#}"), "Coordinator failed");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_tracing(format: &str) {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

async fn run_coordinator(a: RunArgs) -> anyhow::Result<()> {
    let token = CancellationToken::new();
    let state = Arc::new(admin::AdminState::default());
    let listener = tokio::net::TcpListener::bind(a.admin_addr)
        .await
        .map_err(|e| anyhow::anyhow!("failed to bind the admin server to {}: {e}", a.admin_addr))?;
    info!(addr = %a.admin_addr, version = env!("CARGO_PKG_VERSION"), "Admin server listening");
    let admin_task = tokio::spawn(
        axum::serve(listener, admin::router(state.clone()))
            .with_graceful_shutdown(token.clone().cancelled_owned())
            .into_future()
            .instrument(info_span!("admin")),
    );

    let requests = kube_client::RequestMetrics::new(&state.registry);
    let client = kube_client::connect(requests.clone()).await?;
    let alerts_task = match alerts::receiver::auth_from(
        a.alerts_token_file.clone(),
        a.alerts_unauthenticated,
    ) {
        Some(auth) => {
            let receiver = alerts::receiver::Receiver::new(client.clone(), auth, &state.registry);
            let listener = tokio::net::TcpListener::bind(a.alerts_addr)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "failed to bind the alert receiver to {}: {e}",
                        a.alerts_addr
                    )
                })?;
            info!(addr = %a.alerts_addr, authenticated = !a.alerts_unauthenticated, "Alert receiver listening");
            Some(tokio::spawn(
                axum::serve(listener, alerts::receiver::router(receiver))
                    .with_graceful_shutdown(token.clone().cancelled_owned())
                    .into_future()
                    .instrument(info_span!("alerts")),
            ))
        }
        None => {
            info!(
                "Alert receiver off: give --alerts-token-file (or --alerts-unauthenticated) to turn it on"
            );
            None
        }
    };
    let webhook_task = webhook_config(&a, &client).map(|config| {
        tokio::spawn(
            webhook::run(config, state.registry.clone(), token.clone())
                .instrument(info_span!("webhook")),
        )
    });
    if webhook_task.is_none() {
        info!(
            "Agent injection webhook off: give --webhook-secret (or --webhook-cert-dir) to turn it on"
        );
    }
    let check_token = token.clone();
    let check_state = state.clone();
    let checker = tokio::spawn(
        async move {
            loop {
                match client.apiserver_version().await {
                    Ok(v) => {
                        if !check_state.api_reachable.swap(true, Ordering::SeqCst) {
                            info!(version = %v.git_version, "Kubernetes API server reachable");
                        }
                        check_state.api_up.set(1);
                    }
                    Err(e) => {
                        if check_state.api_reachable.swap(false, Ordering::SeqCst) {
                            warn!(error = %e, "Kubernetes API server unreachable");
                        }
                        check_state.api_up.set(0);
                        check_state.api_check_failures.inc();
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(10)) => {}
                    () = check_token.cancelled() => break,
                }
            }
        }
        .instrument(info_span!("api_check")),
    );

    let controller_client = kube_client::connect(requests).await?;
    let ctx = context::Context::new(
        controller_client.clone(),
        a.agent_image.clone(),
        &state.registry,
    );
    // With leader election, the controllers run only while this replica holds the Lease.
    let (leader_tx, mut leader_rx) = tokio::sync::watch::channel(!a.leader_election);
    let mut lease_task = if a.leader_election {
        let identity = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("stoker-coordinator-{}", std::process::id()));
        let namespace = std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into());
        let cfg = lease::LeaseConfig {
            name: "stoker-coordinator".into(),
            namespace,
            identity,
            duration: Duration::from_secs(15),
            renew: Duration::from_secs(5),
        };
        info!(lease = %cfg.name, namespace = %cfg.namespace, identity = %cfg.identity, "Waiting for the leader Lease");
        Some(tokio::spawn(
            lease::run(controller_client.clone(), cfg, leader_tx).instrument(info_span!("lease")),
        ))
    } else {
        None
    };
    let controller_token = token.clone();
    let controller_task = tokio::spawn(
        async move {
            if leader_rx.wait_for(|l| *l).await.is_err() {
                return;
            }
            info!(agent_image = %ctx.agent_image, "KafkaCluster, KafkaTopic and KafkaUser controllers started");
            tokio::join!(
                controller::kafka_cluster::run(ctx.clone(), controller_token.clone()),
                controller::kafka_topic::run(ctx.clone(), controller_token.clone()),
                controller::kafka_user::run(ctx.clone(), controller_token.clone()),
                controller::kafka_rebalance::run(ctx, controller_token),
            );
        }
        .instrument(info_span!(
            "controller",
            name = controller::kafka_cluster::CONTROLLER_NAME
        )),
    );

    let mut sigterm = signal(SignalKind::terminate())?;
    let lease_lost = async {
        match lease_task.as_mut() {
            Some(t) => t.await,
            None => std::future::pending().await,
        }
    };
    let mut failed = None;
    tokio::select! {
        _ = sigterm.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        res = lease_lost => {
            let msg = match res { Ok(Err(e)) => e.to_string(), Ok(Ok(())) => "the lease task ended".into(), Err(e) => format!("the lease task failed: {e}") };
            error!(error = %msg, "Leadership lost; exiting so that this replica restarts as a follower");
            failed = Some(msg);
        }
    }
    info!("Shutting down");
    token.cancel();
    let _ = controller_task.await;
    let _ = checker.await;
    let _ = admin_task.await;
    if let Some(t) = alerts_task {
        let _ = t.await;
    }
    if let Some(t) = webhook_task {
        let _ = t.await;
    }
    match failed {
        Some(msg) => Err(anyhow::anyhow!(msg)),
        None => Ok(()),
    }
}

/// The webhook's configuration from the flags; `None` when no certificate source is
/// given.
fn webhook_config(a: &RunArgs, client: &kube::Client) -> Option<webhook::WebhookConfig> {
    let source = match (&a.webhook_cert_dir, &a.webhook_secret) {
        (Some(dir), _) => webhook::certs::CertSource::Files(dir.clone()),
        (None, Some(secret)) => webhook::certs::CertSource::Issued {
            client: client.clone(),
            namespace: std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into()),
            secret: secret.clone(),
            names: a.webhook_names.clone(),
            configuration: a.webhook_configuration.clone(),
        },
        (None, None) => return None,
    };
    Some(webhook::WebhookConfig {
        addr: a.webhook_addr,
        source,
        policy: webhook::review::Policy {
            agent_image: a.agent_image.clone(),
            forbidden_namespaces: a
                .webhook_forbidden_namespaces
                .iter()
                .filter(|n| !n.is_empty())
                .cloned()
                .collect(),
        },
        cert_check: webhook::CERT_CHECK,
    })
}
