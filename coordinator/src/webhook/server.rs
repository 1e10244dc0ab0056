//! The webhook's HTTPS server: a TLS listener whose handshakes run beside the accept
//! loop (a slow client never holds up the API server's next call), and the route that
//! answers AdmissionReviews.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use rustls::ServerConfig;
use tokio::{net::TcpStream, sync::mpsc};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::review::{self, Policy};
use super::tls::SwappableCert;

/// The path the webhook configuration calls.
pub const MUTATE_PATH: &str = "/mutate-pods";
/// Largest AdmissionReview accepted (the API server's own request limit is 3 MiB).
const BODY_LIMIT: usize = 4 * 1024 * 1024;
/// A TLS handshake that takes longer is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the route needs: the policy and its metrics.
#[derive(Clone)]
pub struct Webhook {
    policy: Arc<Policy>,
    reviews: IntCounterVec,
    latency: HistogramVec,
}

impl Webhook {
    /// A webhook answering with `policy`, its metrics in `registry`.
    pub fn new(policy: Policy, registry: &Registry) -> Self {
        let reviews = IntCounterVec::new(
            Opts::new(
                "stoker_webhook_reviews_total",
                "AdmissionReviews answered, by outcome (injected, unchanged, denied, malformed)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "stoker_webhook_review_seconds",
                "Time to decide an AdmissionReview, from its body read to its answer encoded",
            )
            .buckets(vec![0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05]),
            &["outcome"],
        )
        .expect("valid metric");
        // Registered once per process; a second webhook (tests) keeps its own counters.
        let _ = registry.register(Box::new(reviews.clone()));
        let _ = registry.register(Box::new(latency.clone()));
        Self {
            policy: Arc::new(policy),
            reviews,
            latency,
        }
    }
}

/// The webhook's routes.
pub fn router(webhook: Webhook) -> Router {
    Router::new()
        .route(MUTATE_PATH, post(mutate))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(webhook)
}

async fn mutate(State(w): State<Webhook>, body: Bytes) -> Response {
    let started = Instant::now();
    match review::review(&body, &w.policy) {
        Ok((answer, outcome)) => {
            let response = match serde_json::to_vec(&answer) {
                Ok(json) => (
                    StatusCode::OK,
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    json,
                )
                    .into_response(),
                Err(e) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("failed to encode the answer: {e}"),
                )
                    .into_response(),
            };
            w.reviews.with_label_values(&[outcome.as_str()]).inc();
            w.latency
                .with_label_values(&[outcome.as_str()])
                .observe(started.elapsed().as_secs_f64());
            if let Some(r) = answer.response.as_ref().filter(|r| !r.allowed) {
                info!(uid = %r.uid, reason = %r.result.message, "Pod refused the agent");
            } else {
                debug!(outcome = outcome.as_str(), "AdmissionReview answered");
            }
            response
        }
        Err(e) => {
            w.reviews.with_label_values(&["malformed"]).inc();
            warn!(error = %e, "Malformed AdmissionReview");
            (StatusCode::BAD_REQUEST, e.to_string()).into_response()
        }
    }
}

/// A TLS listener for `axum::serve`: TCP accepts in one task, each handshake in its own.
pub struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Serves `cert` (swappable while it runs) on `listener` until `token` is
    /// cancelled. The returned task owns the TCP listener: once it has ended, the port
    /// is free again.
    pub fn new(
        listener: tokio::net::TcpListener,
        cert: Arc<SwappableCert>,
        token: CancellationToken,
    ) -> std::io::Result<(Self, tokio::task::JoinHandle<()>)> {
        let local = listener.local_addr()?;
        let mut config = ServerConfig::builder()
            .with_no_client_auth()
            .with_cert_resolver(cert);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tls = TlsAcceptor::from(Arc::new(config));
        let (tx, accepted) = mpsc::channel(64);
        let acceptor = tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    () = token.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(c) => c,
                        Err(e) => {
                            warn!(error = %e, "Webhook accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let (tls, tx) = (tls.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "Webhook TLS handshake failed"),
                        Err(_) => debug!(%peer, "Webhook TLS handshake timed out"),
                    }
                });
            }
        });
        Ok((Self { accepted, local }, acceptor))
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(c) => c,
            // The accept task ended (shutting down): nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
