//! `KafkaRebalance`: one Cruise Control task a person can follow with `kubectl get` —
//! brokers added (`AddBrokers`), brokers drained before removal (`RemoveBrokers`),
//! disks drained (`RemoveDisks`), or a rebalance someone asks for (`Rebalance`). The
//! coordinator creates them when a KafkaCluster scales; anyone may create one. The
//! status is Stoker's own record of the task, so a task Cruise Control lost (it keeps
//! none across its own restart) is noticed and asked again, never read as done.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{ClusterRef, Condition};

/// Annotation that stops a running rebalance (`kafka.stoker.io/stop: "true"`), as
/// `spec.stop` does.
pub const STOP_ANNOTATION: &str = "kafka.stoker.io/stop";
/// Annotation the coordinator sets on a KafkaRebalance it created once the broker or
/// disk it was emptying has been shown empty by that broker's own agent: the
/// operation is done, whatever Cruise Control's task (lost, restarted) says. Its
/// value says what was shown.
pub const GOAL_REACHED_ANNOTATION: &str = "kafka.stoker.io/goal-reached";

/// The task.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kafka.stoker.io",
    version = "v1alpha1",
    kind = "KafkaRebalance",
    plural = "kafkarebalances",
    shortname = "krb",
    namespaced,
    status = "KafkaRebalanceStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.clusterRef.name"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Brokers","type":"string","jsonPath":".spec.brokers"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"Progress","type":"string","jsonPath":".status.progress.summary"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("self.mode == oldSelf.mode && self.brokers == oldSelf.brokers && self.disks == oldSelf.disks").message("spec.mode, spec.brokers and spec.disks cannot change; create another KafkaRebalance"),
    validation = Rule::new("!(self.mode == 'AddBrokers' || self.mode == 'RemoveBrokers') || size(self.brokers) > 0").message("spec.brokers must name the brokers to add or remove"),
    validation = Rule::new("self.mode != 'RemoveDisks' || size(self.disks) > 0").message("spec.disks must name the disks to remove")
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaRebalanceSpec {
    /// The KafkaCluster to balance.
    pub cluster_ref: ClusterRef,
    /// What Cruise Control does.
    pub mode: RebalanceMode,
    /// For `AddBrokers` and `RemoveBrokers`: the broker ids.
    #[serde(default)]
    pub brokers: Vec<i32>,
    /// For `RemoveDisks`: the disks to empty.
    #[serde(default)]
    pub disks: Vec<BrokerDisk>,
    /// For `Rebalance`: balance between the disks of each broker instead of between
    /// brokers.
    #[serde(default)]
    pub rebalance_disk: bool,
    /// Goals to optimize for (Cruise Control's defaults when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub goals: Vec<String>,
    /// Skip Cruise Control's check that every hard goal is among `goals`.
    #[serde(default)]
    pub skip_hard_goal_check: bool,
    /// Replication throttle while data moves, in bytes/s (Cruise Control's default when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub replication_throttle: Option<i64>,
    /// Partitions moving at once per broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub concurrent_partition_movements_per_broker: Option<i32>,
    /// Stop the task (Cruise Control finishes the batch in flight).
    #[serde(default)]
    pub stop: bool,
    /// Attempts before the task is `Failed` (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_attempts: Option<i32>,
    /// Delete this resource this long after it finished (kept when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i64>,
}

/// What a KafkaRebalance asks of Cruise Control.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RebalanceMode {
    /// Move replicas onto new brokers (`add_broker`).
    AddBrokers,
    /// Move every replica off brokers about to be removed (`remove_broker`).
    RemoveBrokers,
    /// Move every replica off disks about to be removed (`remove_disks`).
    RemoveDisks,
    /// Balance the cluster (`rebalance`).
    Rebalance,
}

/// One disk of one broker.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BrokerDisk {
    /// The broker.
    pub broker: i32,
    /// The disk's `storageConfigs[].mountPath` (its log dir is `<mountPath>/kafka`).
    pub mount_path: String,
}

/// Where a KafkaRebalance is.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum RebalanceState {
    /// Not started yet.
    #[default]
    Pending,
    /// Waiting for something it needs, named in `message` (Cruise Control sampling or
    /// unreachable, another task of the cluster running, a retry's backoff).
    Waiting,
    /// Cruise Control computes or executes the task.
    Running,
    /// Done: Cruise Control's executor confirmed it finished.
    Completed,
    /// Given up after `maxAttempts`; `message` says why.
    Failed,
    /// Stopped on request.
    Stopped,
}

impl RebalanceState {
    /// True once nothing more happens.
    pub fn finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Stopped)
    }
}

/// What Cruise Control proposed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProposalSummary {
    /// Replicas moved between brokers.
    pub replica_movements: i64,
    /// Leaders moved.
    pub leader_movements: i64,
    /// Data moved between brokers, MB.
    #[serde(rename = "dataToMoveMB")]
    pub data_to_move_mb: f64,
    /// Replicas moved between disks.
    pub intra_broker_replica_movements: i64,
}

/// How far the execution is.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RebalanceProgress {
    /// Partition movements of the execution.
    pub partition_movements: i64,
    /// Of which finished.
    pub finished_partition_movements: i64,
    /// Data to move, MB.
    #[serde(rename = "dataToMoveMB")]
    pub data_to_move_mb: f64,
    /// Data moved so far, MB.
    #[serde(rename = "movedMB")]
    pub moved_mb: f64,
    /// Estimated seconds left, from the rate so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<i64>,
    /// "moved/total MB (percent)", for `kubectl get`.
    pub summary: String,
}

/// Stoker's record of the task.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaRebalanceStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (True once Completed) and `Invalid`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Where the task is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<RebalanceState>,
    /// What it waits for or why it failed, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Cruise Control's `User-Task-ID` of the current attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// The request sent (`remove_broker?brokerid=3&dryrun=false&...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// Attempts so far.
    #[serde(default)]
    pub attempts: i32,
    /// Times Cruise Control lost the task (it restarted) and it was asked again.
    #[serde(default)]
    pub lost_tasks: i32,
    /// Not before this time is Cruise Control asked again: the next attempt, or the next
    /// look at the running task (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// When the current attempt started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When it finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// What Cruise Control proposed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<ProposalSummary>,
    /// How far the execution is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<RebalanceProgress>,
}
