//! The Kubernetes client: kube's default stack with a bound on requests in flight and a
//! count of every request by verb and resource (`stoker_kube_requests_total`), so what
//! a reconcile costs the API server is visible on `/metrics`.

use http::{Method, Request, Uri};
use kube::{Client, Config, client::ClientBuilder};
use prometheus::{IntCounterVec, Opts, Registry};
use tower::{limit::ConcurrencyLimitLayer, util::MapRequestLayer};

/// Requests to the API server in flight at once, per client (a watch counts only until its
/// response headers arrive). Every request in flight holds a pooled TLS connection, with
/// its buffers, and the pool keeps it for 90 s: a burst of 1,000 KafkaTopics ran 100
/// reconciles at once and opened over 100 connections, most of the coordinator's memory.
/// An API server does not answer a burst sooner for being asked more at once.
pub const MAX_IN_FLIGHT: usize = 16;

/// Building the client failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither an in-cluster service account nor a kubeconfig was usable.
    #[error("failed to find Kubernetes credentials (in-cluster or KUBECONFIG)")]
    Infer(#[source] kube::config::InferConfigError),
    /// The credentials were found but the client could not be built from them.
    #[error("failed to build a Kubernetes client")]
    Build(#[source] kube::Error),
}

/// `stoker_kube_requests_total{verb, resource}`: requests sent to the API server.
#[derive(Debug, Clone)]
pub struct RequestMetrics {
    requests: IntCounterVec,
}

impl RequestMetrics {
    /// Registers the counter in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let requests = IntCounterVec::new(
            Opts::new(
                "stoker_kube_requests_total",
                "Requests sent to the Kubernetes API server, by verb (get, list, watch, create, apply, patch, update, delete) and resource.",
            ),
            &["verb", "resource"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(requests.clone()))
            .expect("registers once");
        Self { requests }
    }

    fn observe(&self, method: &Method, uri: &Uri, content_type: Option<&str>) {
        let (verb, resource) = classify(method, uri, content_type);
        self.requests.with_label_values(&[verb, &resource]).inc();
    }

    /// Requests counted so far with this verb and resource.
    pub fn count(&self, verb: &str, resource: &str) -> u64 {
        self.requests.with_label_values(&[verb, resource]).get()
    }
}

/// The Kubernetes verb and resource (`pods`, `kafkaclusters/status`, …) of a request
/// to the API server. Paths outside `/api` and `/apis` (`/version`) are `other`.
pub fn classify(method: &Method, uri: &Uri, content_type: Option<&str>) -> (&'static str, String) {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => return ("other", "other".to_owned()),
    };
    // namespaces/<ns>/<resource>[/<name>[/<subresource>]], or <resource>[/<name>[/<sub>]].
    let rest = match rest {
        ["namespaces", _ns, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let (resource, named) = match rest {
        [] => ("", false),
        [resource] => (*resource, false),
        [resource, _name] => (*resource, true),
        [resource, _name, sub, ..] => {
            return (
                verb(method, uri, true, content_type),
                format!("{resource}/{sub}"),
            );
        }
    };
    (verb(method, uri, named, content_type), resource.to_owned())
}

fn verb(method: &Method, uri: &Uri, named: bool, content_type: Option<&str>) -> &'static str {
    let watching = uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    match *method {
        Method::GET if watching => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PATCH if content_type == Some("application/apply-patch+yaml") => "apply",
        Method::PATCH => "patch",
        Method::PUT => "update",
        Method::DELETE => "delete",
        _ => "other",
    }
}

/// A client from the inferred configuration, at most [`MAX_IN_FLIGHT`] requests at once,
/// each counted in `metrics`.
pub async fn connect(metrics: RequestMetrics) -> Result<Client, Error> {
    let config = Config::infer().await.map_err(Error::Infer)?;
    connect_with(config, metrics)
}

/// A client from `config`, at most [`MAX_IN_FLIGHT`] requests at once, each counted in
/// `metrics`.
pub fn connect_with(config: Config, metrics: RequestMetrics) -> Result<Client, Error> {
    let client = ClientBuilder::try_from(config)
        .map_err(Error::Build)?
        .with_layer(&ConcurrencyLimitLayer::new(MAX_IN_FLIGHT))
        .with_layer(&MapRequestLayer::new(
            move |req: Request<kube::client::Body>| {
                let content_type = req
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok());
                metrics.observe(req.method(), req.uri(), content_type);
                req
            },
        ))
        .build();
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(method: Method, uri: &str) -> (&'static str, String) {
        classify(&method, &uri.parse().expect("a URI"), None)
    }

    #[test]
    fn requests_are_named_by_verb_and_resource() {
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/ns/pods/kf-0"),
            ("get", "pods".into())
        );
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/ns/pods?labelSelector=a"),
            ("list", "pods".into())
        );
        assert_eq!(
            c(
                Method::GET,
                "/apis/kafka.stoker.io/v1alpha1/kafkaclusters?watch=true&resourceVersion=1"
            ),
            ("watch", "kafkaclusters".into())
        );
        assert_eq!(
            c(
                Method::PATCH,
                "/apis/kafka.stoker.io/v1alpha1/namespaces/ns/kafkaclusters/kf/status"
            ),
            ("patch", "kafkaclusters/status".into())
        );
        assert_eq!(
            classify(
                &Method::PATCH,
                &"/api/v1/namespaces/ns/configmaps/kf-0-config"
                    .parse()
                    .expect("a URI"),
                Some("application/apply-patch+yaml")
            ),
            ("apply", "configmaps".into())
        );
        assert_eq!(
            c(
                Method::POST,
                "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"
            ),
            ("create", "clusterrolebindings".into())
        );
        assert_eq!(
            c(Method::DELETE, "/api/v1/namespaces/ns/pods/kf-0"),
            ("delete", "pods".into())
        );
        assert_eq!(
            c(Method::GET, "/api/v1/namespaces/ns"),
            ("get", "namespaces".into())
        );
        assert_eq!(c(Method::GET, "/version"), ("other", "other".into()));
    }
}
