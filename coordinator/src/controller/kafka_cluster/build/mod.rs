//! Builders: pure functions from a [`ValidatedCluster`] to the Kubernetes objects of
//! each broker (ConfigMap with the agent's desired config, PVCs, Pod) and of the
//! cluster (Services, PodDisruptionBudget, the JMX exporter's rules, Cruise Control). No I/O; `apply` writes what they return.

pub mod agent;
pub mod certificates;
pub mod config;
pub mod cruise_control;
pub mod external;
pub mod haproxy;
pub mod jmx_exporter;
pub mod pod;
pub mod rbac;
pub mod security;
pub mod services;

use std::collections::BTreeMap;

pub use config::{desired_config, desired_config_map};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
pub use pod::{broker_pod, broker_pvcs, pvc_name};
pub use rbac::{
    agent_cluster_role, agent_cluster_role_binding, agent_role, agent_role_binding, binding_name,
    default_service_account_name, service_accounts, stop_lease, stop_lease_name,
};
pub use services::{
    advertised_host, all_broker_service, broker_service, headless_service, pod_disruption_budget,
};

use super::validate::ValidatedCluster;

/// The field manager of every object Stoker writes.
pub use crate::controller::resource_status::FIELD_MANAGER;
/// Label: the KafkaCluster an object belongs to (Koperator's label, kept for migrations).
pub const LABEL_CLUSTER: &str = "kafka_cr";
/// Label: the broker id of a per-broker object (Koperator's label).
pub const LABEL_BROKER_ID: &str = "brokerId";
/// Annotation: hash of the object as built, to skip writes when nothing changed.
pub const ANNOTATION_SPEC_HASH: &str = "kafka.stoker.io/spec-hash";
/// Annotation on PVCs: the mount path they serve.
pub const ANNOTATION_MOUNT_PATH: &str = "kafka.stoker.io/mount-path";
/// Port of the agent's admin server in every broker Pod.
pub const AGENT_ADMIN_PORT: i32 = 8080;
/// Port of the agent's gRPC server in every broker Pod.
pub const AGENT_GRPC_PORT: i32 = 8081;
/// Where the agent reads the desired config (the broker's ConfigMap).
pub const DESIRED_CONFIG_DIR: &str = "/etc/stoker/desired";
/// The volume shared by the agent and Kafka with the rendered files.
pub const RENDERED_DIR: &str = "/var/run/stoker/kafka";
/// Kafka's installation in the broker image.
pub const KAFKA_HOME: &str = "/opt/kafka";
/// The Kubernetes cluster domain used in advertised host names.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// What every builder needs to know about the cluster resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterMeta {
    /// The KafkaCluster's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Owner reference to it (controller).
    pub owner: OwnerReference,
    /// The KRaft cluster id.
    pub cluster_id: String,
    /// Whether one headless Service is used.
    pub headless: bool,
    /// The agent's image.
    pub agent_image: String,
}

/// Labels of every object of the cluster.
pub fn cluster_labels(meta: &ClusterMeta) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "kafka".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), meta.name.clone()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "stoker".to_owned(),
        ),
        (LABEL_CLUSTER.to_owned(), meta.name.clone()),
    ])
}

/// Labels of one broker's objects.
pub fn broker_labels(meta: &ClusterMeta, id: i32) -> BTreeMap<String, String> {
    let mut l = cluster_labels(meta);
    l.insert(LABEL_BROKER_ID.to_owned(), id.to_string());
    l
}

/// `<cluster>-<id>`: the broker's Pod, Service and ConfigMap prefix.
pub fn broker_name(meta: &ClusterMeta, id: i32) -> String {
    format!("{}-{id}", meta.name)
}

/// The KRaft voters: `id@host:port` for every controller, sorted by id.
pub fn quorum_voters(meta: &ClusterMeta, cluster: &ValidatedCluster) -> String {
    let port = cluster
        .listeners
        .iter()
        .find(|l| l.name == cluster.controller_listener)
        .map_or(0, |l| l.port);
    cluster
        .brokers
        .values()
        .filter(|b| b.roles.controller)
        .map(|b| format!("{}@{}:{port}", b.id, advertised_host(meta, b.id)))
        .collect::<Vec<_>>()
        .join(",")
}

/// A stable hash of any serialisable object (16 hex digits).
pub fn spec_hash<T: serde::Serialize>(obj: &T) -> String {
    let json = serde_json::to_string(obj).expect("Kubernetes objects always serialise");
    // FNV-1a: stable across processes and releases, unlike std's SipHash keys.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in json.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// `obj` with the hash of its content (without the hash) in [`ANNOTATION_SPEC_HASH`],
/// and that hash: a live object carrying the same hash needs no write.
pub fn stamped<K: kube::Resource + serde::Serialize>(mut obj: K) -> (K, String) {
    use kube::ResourceExt;
    obj.annotations_mut().remove(ANNOTATION_SPEC_HASH);
    let hash = spec_hash(&obj);
    obj.annotations_mut()
        .insert(ANNOTATION_SPEC_HASH.to_owned(), hash.clone());
    (obj, hash)
}
