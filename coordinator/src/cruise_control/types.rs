//! What Cruise Control's REST API answers, as far as Stoker reads it (field names as
//! CC 2.5.146 writes them). Unknown fields are ignored: CC adds fields between releases.

use serde::Deserialize;

/// `GET /state?substates=monitor,executor`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct State {
    /// The load monitor.
    #[serde(rename = "MonitorState", default)]
    pub monitor: MonitorState,
    /// The executor.
    #[serde(rename = "ExecutorState", default)]
    pub executor: ExecutorState,
}

/// The load monitor: whether CC has sampled enough to propose anything.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MonitorState {
    /// `RUNNING`, `SAMPLING`, `PAUSED`, `BOOTSTRAPPING`, `TRAINING`, `LOADING`, `NOT_STARTED`.
    #[serde(default)]
    pub state: String,
    /// Share of partitions with enough valid windows, in percent.
    #[serde(default)]
    pub monitoring_coverage_pct: f64,
    /// Windows sampled.
    #[serde(default)]
    pub num_monitored_windows: i64,
    /// Partitions CC knows.
    #[serde(default)]
    pub num_total_partitions: i64,
}

/// The executor: what CC is moving now.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExecutorState {
    /// `NO_TASK_IN_PROGRESS`, `STARTING_EXECUTION`,
    /// `INTER_BROKER_REPLICA_MOVEMENT_TASK_IN_PROGRESS`, … .
    #[serde(default)]
    pub state: String,
    /// The user task whose proposals are executing.
    #[serde(default)]
    pub triggered_user_task_id: Option<String>,
    /// Partition movements of the execution.
    #[serde(default)]
    pub num_total_partition_movements: Option<i64>,
    /// Partition movements finished.
    #[serde(default)]
    pub num_finished_partition_movements: Option<i64>,
    /// Data to move between brokers (MB).
    #[serde(default)]
    pub total_data_to_move: Option<f64>,
    /// Data moved between brokers so far (MB).
    #[serde(default)]
    pub finished_data_movement: Option<f64>,
    /// Data to move between the disks of brokers (MB).
    #[serde(default)]
    pub total_intra_broker_data_to_move: Option<f64>,
    /// Data moved between disks so far (MB).
    #[serde(default)]
    pub finished_intra_broker_data_movement: Option<f64>,
    /// Brokers removed recently.
    #[serde(default)]
    pub recently_removed_brokers: Vec<i32>,
}

impl ExecutorState {
    /// True when nothing executes.
    pub fn idle(&self) -> bool {
        self.state == "NO_TASK_IN_PROGRESS"
    }
}

/// The summary of an optimization (`rebalance`, `add_broker`, `remove_broker`, ...).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OptimizationSummary {
    /// Replicas to move between brokers.
    #[serde(default)]
    pub num_replica_movements: i64,
    /// Data to move between brokers (MB).
    #[serde(default, rename = "dataToMoveMB")]
    pub data_to_move_mb: f64,
    /// Replicas to move between disks.
    #[serde(default)]
    pub num_intra_broker_replica_movements: i64,
    /// Data to move between disks (MB).
    #[serde(default, rename = "intraBrokerDataToMoveMB")]
    pub intra_broker_data_to_move_mb: f64,
    /// Leaders to move.
    #[serde(default)]
    pub num_leader_movements: i64,
    /// Share of partitions monitored when it was computed.
    #[serde(default)]
    pub monitored_partitions_percentage: f64,
    /// `UNDER_PROVISIONED`, `RIGHT_SIZED`, `OVER_PROVISIONED`, `UNDECIDED`.
    #[serde(default)]
    pub provision_status: Option<String>,
}

/// An optimization's answer.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct OptimizationResult {
    /// Its summary.
    #[serde(default)]
    pub summary: OptimizationSummary,
}

/// One step of a request in progress (a 202 answer).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Progress {
    /// The operation (`Rebalance`, `Remove brokers`, ...).
    #[serde(default)]
    pub operation: String,
    /// Its steps so far.
    #[serde(default, rename = "operationProgress")]
    pub steps: Vec<ProgressStep>,
}

/// One step of an operation in progress.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ProgressStep {
    /// `WAITING_FOR_CLUSTER_MODEL`, `OPTIMIZING <goal>`, ...
    #[serde(default)]
    pub step: String,
    /// How far, in percent.
    #[serde(default, rename = "completionPercentage")]
    pub completion_percentage: f64,
}

/// A 202 answer's body.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct InProgressBody {
    /// The operations in progress.
    #[serde(default)]
    pub progress: Vec<Progress>,
}

/// A task's state in `user_tasks`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub enum TaskStatus {
    /// Computing its proposals.
    Active,
    /// Its proposals are executing.
    InExecution,
    /// Done (confirm with the executor's state: `Completed` can flip back).
    Completed,
    /// Ended with an error.
    CompletedWithError,
}

/// One entry of `GET /user_tasks`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct UserTask {
    /// Its id.
    #[serde(rename = "UserTaskId")]
    pub id: String,
    /// `POST /kafkacruisecontrol/rebalance?...`.
    #[serde(rename = "RequestURL", default)]
    pub request_url: String,
    /// Its state.
    #[serde(rename = "Status")]
    pub status: TaskStatus,
    /// The original response (with `fetch_completed_task=true`).
    #[serde(rename = "originalResponse", default)]
    pub original_response: Option<String>,
}

/// `GET /user_tasks`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct UserTasks {
    /// The tasks.
    #[serde(rename = "userTasks", default)]
    pub tasks: Vec<UserTask>,
}

/// Any non-2xx answer.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ErrorBody {
    /// CC's message.
    #[serde(rename = "errorMessage", default)]
    pub error_message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_user_tasks_and_errors_parse_as_cruise_control_writes_them() {
        let state: State = serde_json::from_str(
            r#"{"version":1,"MonitorState":{"state":"RUNNING","trained":false,"numMonitoredWindows":2,"monitoringCoveragePct":100.0,"numTotalPartitions":8},
                "ExecutorState":{"state":"INTER_BROKER_REPLICA_MOVEMENT_TASK_IN_PROGRESS","triggeredUserTaskId":"abc","numTotalPartitionMovements":10,"numFinishedPartitionMovements":4,"totalDataToMove":100,"finishedDataMovement":40.5,"recentlyRemovedBrokers":[3]}}"#,
        )
        .expect("state");
        assert_eq!(state.monitor.monitoring_coverage_pct, 100.0);
        assert!(!state.executor.idle());
        assert_eq!(state.executor.finished_data_movement, Some(40.5));
        assert_eq!(state.executor.recently_removed_brokers, [3]);
        let tasks: UserTasks = serde_json::from_str(
            r#"{"userTasks":[{"UserTaskId":"5ce7","RequestURL":"POST /kafkacruisecontrol/remove_broker?brokerid=3&dryrun=false&json=true","ClientIdentity":"127.0.0.1","StartMs":"1700000000000","Status":"InExecution"}],"version":1}"#,
        )
        .expect("user tasks");
        assert_eq!(tasks.tasks[0].status, TaskStatus::InExecution);
        let result: OptimizationResult = serde_json::from_str(
            r#"{"version":1,"summary":{"numReplicaMovements":12,"dataToMoveMB":3,"numLeaderMovements":2,"monitoredPartitionsPercentage":100.0,"provisionStatus":"RIGHT_SIZED"},"goalSummary":[]}"#,
        )
        .expect("result");
        assert_eq!(result.summary.num_replica_movements, 12);
        assert_eq!(result.summary.data_to_move_mb, 3.0);
    }
}
