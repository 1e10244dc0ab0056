//! What every controller of the coordinator shares: the Kubernetes client, the Event
//! publisher, the agents' gRPC channels, the Kafka admin clients, the per-object retry
//! backoff and each controller's metrics. Controller-specific caches (reflector stores)
//! live with their controller.

use std::sync::Arc;

use kube::Client;
use prometheus::Registry;

use crate::{
    agents::AgentPool, controller::Backoff, events::Publisher, kafka_admin::AdminPool,
    metrics::ControllerMetrics,
};

/// The name the coordinator reports Events as.
pub const REPORTING_CONTROLLER: &str = "stoker-coordinator";

/// The metrics of each controller.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The KafkaCluster controller's.
    pub kafka_cluster: ControllerMetrics,
    /// The KafkaTopic controller's.
    pub kafka_topic: ControllerMetrics,
    /// The KafkaUser controller's.
    pub kafka_user: ControllerMetrics,
    /// The KafkaRebalance controller's.
    pub kafka_rebalance: ControllerMetrics,
}

impl Metrics {
    /// Registers every controller's metrics in `registry`.
    pub fn new(registry: &Registry) -> Self {
        use crate::controller::{kafka_cluster, kafka_rebalance, kafka_topic, kafka_user};
        Self {
            kafka_cluster: ControllerMetrics::new(registry, kafka_cluster::CONTROLLER_NAME),
            kafka_topic: ControllerMetrics::new(registry, kafka_topic::CONTROLLER_NAME),
            kafka_user: ControllerMetrics::new(registry, kafka_user::CONTROLLER_NAME),
            kafka_rebalance: ControllerMetrics::new(registry, kafka_rebalance::CONTROLLER_NAME),
        }
    }
}

/// What every reconcile of every controller shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Events.
    pub recorder: Publisher,
    /// gRPC channels to the broker agents.
    pub agents: AgentPool,
    /// Kafka admin clients, one per cluster.
    pub admins: AdminPool,
    /// Cruise Control clients, one per address.
    pub cruise_controls: crate::cruise_control::Pool,
    /// The agent's image for broker Pods.
    pub agent_image: String,
    /// Per-object retry delays after failures.
    pub backoff: Backoff,
    /// Reconcile metrics of each controller.
    pub metrics: Metrics,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("agent_image", &self.agent_image)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context over `client`, registering the controllers' metrics in `registry`.
    pub fn new(client: Client, agent_image: String, registry: &Registry) -> Arc<Self> {
        Arc::new(Self {
            recorder: Publisher::new(client.clone(), REPORTING_CONTROLLER),
            client,
            agents: AgentPool::default(),
            admins: AdminPool::default(),
            cruise_controls: crate::cruise_control::Pool::default(),
            agent_image,
            backoff: Backoff::default(),
            metrics: Metrics::new(registry),
        })
    }
}
