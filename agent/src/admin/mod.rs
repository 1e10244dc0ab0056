//! The admin HTTP server (default `0.0.0.0:8080`), what Kubernetes probes and
//! Prometheus scrapes:
//!
//! - `GET /livez`: the agent works (always 200 while it serves).
//! - `GET /startupz`: 200 once server.properties is rendered; the startup probe, so
//!   the Kafka container starts only on a good config.
//! - `GET /readyz`: 200 when the broker is up: reachable on its internal listener,
//!   registered, not recovering, not shutting down; 503 with the reasons otherwise.
//! - `GET /healthz`: every check, its result and why, as JSON.
//! - `GET /metrics`: Prometheus text: the agent's registry plus the last sample of the
//!   JMX exporter's series, re-labelled (sampled in the background, never on a scrape).
//!
//! Nothing here changes the broker: stopping is asked from inside the Pod
//! ([`crate::control`]) or by the coordinator over mTLS ([`crate::grpc`]).

pub mod jmx;
pub mod metrics;

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};

use crate::state::Shared;

/// Builds the router.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/startupz", get(startupz))
        .route("/readyz", get(readyz))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
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
        // The last observation can be up to two seconds old: a broker that was killed
        // and restarted inside that window must not be reported ready while nothing
        // listens yet. A refused connection now is the fresh word.
        if let Some(running) = shared.running().filter(|r| r.roles.broker)
            && !running.serving_now().await
        {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: kafka_reachable: the broker's listener refuses connections now (it restarted since the last observation)\n".into(),
            );
        }
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
    // The JMX exporter's series come from the last background sample: a scrape never
    // waits for the exporter, and the sample's age says how fresh they are.
    let sample = shared.jmx_sample();
    running.metrics.observe_jmx_sample(sample.as_ref());
    let mut text = running.metrics.encode();
    if let Some(sample) = sample {
        text.push_str(&sample.relabelled);
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
    async fn nothing_on_the_network_stops_the_broker() {
        let shared = Arc::new(Shared::new(Duration::from_secs(1), None));
        for (method, path) in [
            ("POST", "/prepare-shutdown"),
            ("GET", "/prestop"),
            ("POST", "/prestop"),
        ] {
            let resp = router(shared.clone())
                .oneshot(
                    axum::http::Request::builder()
                        .method(method)
                        .uri(path)
                        .body(axum::body::Body::empty())
                        .expect("request"),
                )
                .await
                .expect("answers");
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{method} {path}");
        }
        assert!(!shared.shutting_down());
    }
}
