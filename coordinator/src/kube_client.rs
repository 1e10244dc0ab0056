//! The Kubernetes client: kube's default stack with a bound on requests in flight.

use kube::{Client, Config, client::ClientBuilder};
use tower::limit::ConcurrencyLimitLayer;

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

/// A client from the inferred configuration, at most [`MAX_IN_FLIGHT`] requests at once.
pub async fn connect() -> Result<Client, Error> {
    let config = Config::infer().await.map_err(Error::Infer)?;
    let client = ClientBuilder::try_from(config)
        .map_err(Error::Build)?
        .with_layer(&ConcurrencyLimitLayer::new(MAX_IN_FLIGHT))
        .build();
    Ok(client)
}
