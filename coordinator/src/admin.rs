//! The admin HTTP server: `GET /livez` (the process works), `GET /readyz` (the
//! Kubernetes API answered the last check), `GET /metrics` (Prometheus text).

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use prometheus::{Encoder, IntCounter, IntGauge, Opts, Registry, TextEncoder};

/// State the admin endpoints read.
#[derive(Debug)]
pub struct AdminState {
    /// True once the API server answered.
    pub api_reachable: AtomicBool,
    /// The process's one registry.
    pub registry: Registry,
    /// Checks of the API server that failed.
    pub api_check_failures: IntCounter,
    /// 1 while the API server answers.
    pub api_up: IntGauge,
}

impl Default for AdminState {
    fn default() -> Self {
        Self::with_registry(Registry::new())
    }
}

impl AdminState {
    /// The admin state serving `registry` (its own series registered there too).
    pub fn with_registry(registry: Registry) -> Self {
        let api_check_failures = IntCounter::with_opts(Opts::new(
            "stoker_coordinator_api_check_failures_total",
            "Checks of the Kubernetes API server that failed.",
        ))
        .expect("valid metric");
        let api_up = IntGauge::with_opts(Opts::new(
            "stoker_coordinator_api_up",
            "1 while the Kubernetes API server answers.",
        ))
        .expect("valid metric");
        registry
            .register(Box::new(api_check_failures.clone()))
            .expect("registers once");
        registry
            .register(Box::new(api_up.clone()))
            .expect("registers once");
        Self {
            api_reachable: AtomicBool::new(false),
            registry,
            api_check_failures,
            api_up,
        }
    }
}

/// Builds the router.
pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AdminState>>) -> (StatusCode, &'static str) {
    if state.api_reachable.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the Kubernetes API server has not answered\n",
        )
    }
}

async fn metrics(State(state): State<Arc<AdminState>>) -> String {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&state.registry.gather(), &mut out)
        .expect("encoding into a Vec cannot fail");
    String::from_utf8(out).expect("the text format is UTF-8")
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn readiness_follows_the_api_check() {
        let state = Arc::new(AdminState::default());
        let call = |path: &'static str| {
            let state = state.clone();
            async move {
                let resp = router(state)
                    .oneshot(
                        axum::http::Request::get(path)
                            .body(axum::body::Body::empty())
                            .expect("request"),
                    )
                    .await
                    .expect("answers");
                let code = resp.status();
                let body = resp.into_body().collect().await.expect("body").to_bytes();
                (code, String::from_utf8_lossy(&body).into_owned())
            }
        };
        assert_eq!(call("/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
        state.api_reachable.store(true, Ordering::SeqCst);
        state.api_up.set(1);
        assert_eq!(call("/readyz").await.0, StatusCode::OK);
        assert!(
            call("/metrics")
                .await
                .1
                .contains("stoker_coordinator_api_up 1")
        );
    }
}
