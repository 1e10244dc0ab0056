//! The admin HTTP server (default `0.0.0.0:8080`), what Kubernetes probes and
//! Prometheus scrapes:
//!
//! - `GET /livez`: the agent works (always 200 while it serves).
//! - `GET /startupz`: 200 once server.properties is rendered; the startup probe, so
//!   the Kafka container starts only on a good config.
//! - `GET /readyz`: 200 when the broker is up: reachable on its internal listener,
//!   registered, not recovering, not shutting down; 503 with the reasons otherwise.
//! - `GET /healthz`: every check, its result and why, as JSON.
//! - `GET /metrics`: Prometheus text: the agent's registry plus the JMX exporter's
//!   series, re-labelled.
//! - `GET /prestop`: the Kafka container's preStop hook: turns not-ready and waits,
//!   bounded, until stopping is safe.
//! - `POST /prepare-shutdown`: turns not-ready.

pub mod jmx;
pub mod metrics;

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::{get, post},
};

use crate::state::{Shared, error_chain};

/// Builds the router.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/startupz", get(startupz))
        .route("/readyz", get(readyz))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/prestop", get(prestop).post(prestop))
        .route("/prepare-shutdown", post(prepare_shutdown))
        .with_state(shared)
}

async fn startupz(State(shared): State<Arc<Shared>>) -> (StatusCode, String) {
    match shared.startup_error() {
        None => (StatusCode::OK, "started\n".into()),
        Some(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not started: {e}\n"),
        ),
    }
}

async fn readyz(State(shared): State<Arc<Shared>>) -> (StatusCode, String) {
    let health = shared.health();
    if health.ready() {
        (StatusCode::OK, "ready\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", health.reasons()),
        )
    }
}

async fn healthz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let health = shared.health();
    let code = if health.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(health))
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let Some(running) = shared.running() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain")],
            "not started\n".to_owned(),
        );
    };
    let mut text = running.metrics.encode();
    if let Some(url) = &shared.jmx_exporter_url {
        match jmx::fetch(url).await {
            Ok(jmx_text) => text.push_str(&metrics::relabel_exposition(
                &jmx_text,
                running.metrics.labels(),
            )),
            Err(e) => {
                running.metrics.jmx_scrape_failures.inc();
                tracing::debug!(error = %error_chain(&e), "JMX exporter not readable");
            }
        }
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
}

async fn prepare_shutdown(State(shared): State<Arc<Shared>>) -> &'static str {
    shared.begin_shutdown("prepare-shutdown requested");
    "not ready\n"
}

/// Turns not-ready, then waits until stopping the broker keeps every partition at or
/// above min ISR (and a controller majority caught up), at most the shutdown timeout
/// or until a second SIGTERM. Always answers 200 so the kubelet proceeds to SIGTERM;
/// the body and the log say whether the stop was safe.
async fn prestop(State(shared): State<Arc<Shared>>) -> String {
    shared.begin_shutdown("preStop hook");
    let Some(running) = shared.running().cloned() else {
        return "the broker never started; nothing to protect\n".into();
    };
    let started = tokio::time::Instant::now();
    let deadline = started + shared.shutdown_timeout;
    loop {
        let last = match running.safe_to_stop(&[]).await {
            Ok(decision) if decision.safe() => {
                let waited = started.elapsed();
                tracing::info!(
                    waited_ms = waited.as_millis() as u64,
                    "Safe to stop; letting Kafka shut down"
                );
                return format!("safe to stop after {waited:?}\n");
            }
            Ok(decision) => decision.reason(),
            Err(e) if running.observation().reachable.is_err() => {
                tracing::info!(reason = %e, "Broker unreachable; nothing left to protect");
                return "the broker is not serving; nothing to protect\n".into();
            }
            Err(e) => e,
        };
        if shared.force_stop_requested() {
            tracing::warn!(unsafe_because = %last, "Second SIGTERM: stopping although it is not safe");
            return format!("stopping on a second SIGTERM although: {last}\n");
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(timeout_s = shared.shutdown_timeout.as_secs(), unsafe_because = %last, "Shutdown timeout: stopping although it is not safe");
            return format!(
                "stopping after the {:?} timeout although: {last}\n",
                shared.shutdown_timeout
            );
        }
        tracing::info!(waiting_for = %last, "Not safe to stop yet");
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = shared.force_notify.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn get(shared: &Arc<Shared>, path: &str) -> (StatusCode, String) {
        let resp = router(shared.clone())
            .oneshot(
                axum::http::Request::get(path)
                    .body(axum::body::Body::empty())
                    .expect("request"),
            )
            .await
            .expect("the router answers");
        let status = resp.status();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_not_started_agent_is_live_but_neither_started_nor_ready() {
        let shared = Arc::new(Shared::new(Duration::from_secs(1), None));
        shared.set_startup_error(
            "invalid desired config: field `clusterId` must be a KRaft cluster id".into(),
        );
        assert_eq!(get(&shared, "/livez").await.0, StatusCode::OK);
        let (code, body) = get(&shared, "/startupz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("clusterId"), "{body}");
        let (code, body) = get(&shared, "/healthz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(json["status"], "not_started");
        assert_eq!(json["checks"][0]["name"], "config_rendered");
        assert_eq!(json["checks"][0]["ok"], false);
        assert_eq!(
            get(&shared, "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            get(&shared, "/metrics").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn prepare_shutdown_latches_not_ready() {
        let shared = Arc::new(Shared::new(Duration::from_secs(1), None));
        let resp = router(shared.clone())
            .oneshot(
                axum::http::Request::post("/prepare-shutdown")
                    .body(axum::body::Body::empty())
                    .expect("request"),
            )
            .await
            .expect("answers");
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(shared.shutting_down());
        let (_, body) = get(&shared, "/readyz").await;
        assert!(body.contains("shutting down"), "{body}");
    }
}
