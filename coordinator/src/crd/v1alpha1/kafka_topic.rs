//! `KafkaTopic`: a Kafka topic as a Kubernetes resource, with the seed's fields
//! (`clusterRef.name`, `name`, `partitions`, `replicationFactor`, `config`).

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::Condition;

/// Annotation that lets a `KafkaTopic` take over a topic that already exists in Kafka.
pub const ADOPT_ANNOTATION: &str = "kafka.stoker.io/adopt";

/// The desired state of a topic.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "kafka.stoker.io",
    version = "v1alpha1",
    kind = "KafkaTopic",
    plural = "kafkatopics",
    shortname = "kt",
    namespaced,
    status = "KafkaTopicStatus",
    printcolumn = r#"{"name":"Topic","type":"string","jsonPath":".spec.name"}"#,
    printcolumn = r#"{"name":"Partitions","type":"integer","jsonPath":".status.partitions"}"#,
    printcolumn = r#"{"name":"RF","type":"integer","jsonPath":".status.replicationFactor"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self.name == oldSelf.name").message("spec.name cannot change: a KafkaTopic manages one topic; create another KafkaTopic for another name"))]
#[serde(rename_all = "camelCase")]
pub struct KafkaTopicSpec {
    /// The KafkaCluster the topic lives in.
    pub cluster_ref: ClusterRef,
    /// The topic's name in Kafka.
    #[schemars(length(min = 1, max = 249), regex(pattern = r"^[a-zA-Z0-9._-]+$"))]
    pub name: String,
    /// Number of partitions (only ever increased); -1 takes the broker default.
    #[schemars(range(min = -1))]
    pub partitions: i32,
    /// Replication factor (fixed once created); -1 takes the broker default.
    #[schemars(range(min = -1, max = 32767))]
    pub replication_factor: i32,
    /// Topic configs managed by this resource. A key removed here returns to the
    /// broker default; keys never listed here are left alone.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// What deleting this resource does to the Kafka topic: `Retain` (default) or `Delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<TopicDeletionPolicy>,
}

/// Where a resource's cluster is.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ClusterRef {
    /// The KafkaCluster's name.
    pub name: String,
    /// Its namespace (default: the resource's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// What deleting a KafkaTopic does to the topic.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum TopicDeletionPolicy {
    /// Keep the topic in Kafka (the default, as in the seed).
    #[default]
    Retain,
    /// Delete the topic from Kafka.
    Delete,
}

/// The observed state of a topic.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTopicStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, with a reason and message when not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// True once this resource created or adopted the topic: it manages it from then
    /// on (recorded the moment CreateTopics succeeds, before Kafka's metadata shows it).
    #[serde(default)]
    pub managed: bool,
    /// Kafka's topic id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
    /// Partitions in Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// Replication factor in Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<i32>,
    /// The managed configs as Kafka has them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}
