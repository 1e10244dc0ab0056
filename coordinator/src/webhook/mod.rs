//! The mutating admission webhook that injects the agent into Kafka Pods Stoker did not
//! build: [`inject`] decides the patch (with the same agent container the coordinator's
//! own broker Pods get), [`review`] answers an AdmissionReview, [`tls`] and [`certs`]
//! keep its serving certificate, [`server`] serves it over HTTPS.
//!
//! Brokers the coordinator builds never depend on it: their Pods carry the agent
//! already, and the webhook configuration selects only Pods labelled for injection.

pub mod certs;
pub mod inject;
pub mod review;
pub mod server;
pub mod tls;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use prometheus::Registry;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span};

use certs::CertSource;
use review::Policy;

/// How often the certificate is re-read (files) or checked for renewal (issued), by
/// default.
pub const CERT_CHECK: Duration = Duration::from_secs(60);
/// How long to wait before trying again to get the first certificate.
const FIRST_CERT_RETRY: Duration = Duration::from_secs(5);
/// How long to wait before trying again to bind (a previous server may still hold the
/// port for a moment).
const BIND_RETRY: Duration = Duration::from_secs(1);

/// How the webhook runs.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its serving certificate.
    pub source: CertSource,
    /// What it injects, and where not.
    pub policy: Policy,
    /// How often the certificate is re-read or checked for renewal ([`CERT_CHECK`]).
    pub cert_check: Duration,
}

/// Runs the webhook until `token` is cancelled: gets its first certificate (retrying,
/// so an API server that is briefly away delays only the webhook), then serves and
/// keeps the certificate current.
pub async fn run(config: WebhookConfig, registry: Registry, token: CancellationToken) {
    // The port may still be held for a moment (a previous server shutting down):
    // retry rather than leave labelled Pods refused for good.
    let listener = loop {
        match tokio::net::TcpListener::bind(config.addr).await {
            Ok(l) => break l,
            Err(e) => {
                error!(addr = %config.addr, error = %e, "Webhook cannot bind yet; Pods labelled for injection are refused (failurePolicy Fail) until it can; retrying");
                tokio::select! {
                    () = tokio::time::sleep(BIND_RETRY) => {}
                    () = token.cancelled() => return,
                }
            }
        }
    };
    let (key, fingerprint) = loop {
        match certs::current(&config.source).await {
            Ok(c) => break c,
            Err(e) => {
                error!(error = %e, "Webhook has no serving certificate yet; retrying");
                tokio::select! {
                    () = tokio::time::sleep(FIRST_CERT_RETRY) => {}
                    () = token.cancelled() => return,
                }
            }
        }
    };
    let serving = Arc::new(tls::SwappableCert::new(key));
    let keeper = tokio::spawn(
        certs::keep_current(
            config.source.clone(),
            serving.clone(),
            fingerprint,
            config.cert_check,
            token.clone(),
        )
        .instrument(info_span!("webhook_certs")),
    );
    let (tls, acceptor) = match server::TlsListener::new(listener, serving, token.clone()) {
        Ok(l) => l,
        Err(e) => {
            error!(error = %e, "Webhook listener failed");
            return;
        }
    };
    info!(addr = %config.addr, path = server::MUTATE_PATH, image = %config.policy.agent_image, "Agent injection webhook listening");
    let app = server::router(server::Webhook::new(config.policy, &registry));
    if let Err(e) = axum::serve(tls, app)
        .with_graceful_shutdown(token.cancelled_owned())
        .await
    {
        error!(error = %e, "Webhook server failed");
    }
    // Returns only once the port is free again.
    let _ = acceptor.await;
    let _ = keeper.await;
}
