//! How a resource that lives in a KafkaCluster (a topic, a user) finds it and
//! connects to it.

use kube::{Api, Client, ResourceExt};

use crate::crd::v1alpha1::{ClusterRef, KafkaCluster};

/// Annotation on a KafkaCluster naming its bootstrap servers explicitly, for
/// coordinators that cannot resolve the cluster's Services (outside the cluster, tests).
pub const BOOTSTRAP_ANNOTATION: &str = "kafka.stoker.io/bootstrap-servers";

/// Where a KafkaCluster's clients connect: the bootstrap annotation if set, else its
/// all-broker (or headless) Service on the inner-broker listener's port.
pub fn bootstrap_servers(kc: &KafkaCluster) -> Option<String> {
    if let Some(b) = kc.annotations().get(BOOTSTRAP_ANNOTATION) {
        return Some(b.clone());
    }
    let port = kc
        .spec
        .listeners_config
        .internal_listeners
        .iter()
        .find(|l| l.used_for_inner_broker_communication)?
        .container_port;
    let ns = kc.namespace()?;
    let svc = if kc.spec.headless_service_enabled {
        format!("{}-headless", kc.name_any())
    } else {
        format!("{}-all-broker", kc.name_any())
    };
    Some(format!("{svc}.{ns}.svc.cluster.local:{port}"))
}

/// The namespace `cluster_ref` points into (its own, else the referring resource's).
pub fn cluster_namespace(cluster_ref: &ClusterRef, own_namespace: Option<String>) -> String {
    cluster_ref
        .namespace
        .clone()
        .or(own_namespace)
        .unwrap_or_default()
}

/// The namespace of `cluster_ref` and the KafkaCluster there, if it exists.
pub async fn referenced_cluster(
    client: &Client,
    cluster_ref: &ClusterRef,
    own_namespace: Option<String>,
) -> Result<(String, Option<KafkaCluster>), kube::Error> {
    let ns = cluster_namespace(cluster_ref, own_namespace);
    let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), &ns);
    let cluster = clusters.get_opt(&cluster_ref.name).await?;
    Ok((ns, cluster))
}

/// The condition message for a `clusterRef` to a KafkaCluster that does not exist.
pub fn missing_cluster_message(ns: &str, cluster_ref: &ClusterRef) -> String {
    format!(
        "spec.clusterRef names KafkaCluster {ns}/{}, which does not exist; create it or fix clusterRef",
        cluster_ref.name
    )
}
