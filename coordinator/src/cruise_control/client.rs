//! A client of Cruise Control's REST API (`/kafkacruisecontrol`), faithful to how it
//! behaves: every movement is asked with `dryrun=false` spelled out (CC's default is a
//! dry run); a request CC cannot finish within `webserver.request.maxBlockTimeMs`
//! answers 202 with a `User-Task-ID`, and is polled by re-issuing the same URL with
//! that header; CC's `errorMessage` is surfaced; `NotEnoughValidWindowsException`
//! means "still sampling, wait", never a failed request; the limit of active user
//! tasks is an error of its own, to wait on.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde::de::DeserializeOwned;

use super::types::{
    ErrorBody, InProgressBody, OptimizationResult, Progress, State, UserTask, UserTasks,
};

/// The header CC names a task with.
pub const USER_TASK_ID: &str = "User-Task-ID";
/// How long one request may take (CC answers 202 after its 10 s block time).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a GET that CC answered 202 is asked again with its task id.
const GET_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// A failed request to Cruise Control.
#[derive(Debug, thiserror::Error)]
pub enum CcError {
    /// The URL is not usable.
    #[error("invalid Cruise Control URL {0:?}: expected http://host:port/kafkacruisecontrol")]
    Url(String),
    /// No answer (not running, unreachable, or too slow).
    #[error("failed to reach Cruise Control at {url}: {message}")]
    Unreachable {
        /// What was asked.
        url: String,
        /// What failed.
        message: String,
    },
    /// CC has not sampled enough windows yet to propose anything: wait.
    #[error("Cruise Control is still sampling the cluster's load: {message}")]
    NotReady {
        /// CC's message.
        message: String,
    },
    /// CC already runs as many user tasks as it allows: wait.
    #[error("Cruise Control runs as many tasks as it allows: {message}")]
    Busy {
        /// CC's message.
        message: String,
    },
    /// Partitions are still being moved (by an execution Cruise Control lost when it
    /// restarted, or by another tool): it starts no execution until they finish. Wait.
    #[error("Cruise Control starts no task while partitions are still being moved: {message}")]
    Moving {
        /// CC's message.
        message: String,
    },
    /// CC refused the request.
    #[error("Cruise Control refused {what} (HTTP {status}): {message}")]
    Refused {
        /// What was asked.
        what: String,
        /// The HTTP status.
        status: u16,
        /// CC's `errorMessage`.
        message: String,
    },
    /// CC's answer could not be read.
    #[error("failed to read Cruise Control's answer to {what}: {message}")]
    Decode {
        /// What was asked.
        what: String,
        /// Why.
        message: String,
    },
}

impl CcError {
    /// True when the request may simply be asked again later (CC down, sampling,
    /// busy); false when CC refused it as it is.
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            Self::Refused { .. } | Self::Url(_) | Self::Decode { .. }
        )
    }
}

/// Whether Cruise Control's `message` says it refused to execute because partitions
/// are already being moved or its executor is busy (its `OngoingExecutionException`).
pub fn moving(message: &str) -> bool {
    [
        "OngoingExecutionException",
        "ongoing inter-broker partition movements",
        "ongoing intra-broker partition movements",
        "while there is an ongoing execution",
        "Cannot generate proposals while the executor is in",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// Whether Cruise Control's `message` says no proposal can meet its hard goals as the
/// cluster is (its `OptimizationFailureException`: too little capacity for the brokers
/// left, too few racks, ...). Asking again changes nothing until the cluster does.
pub fn unattainable(message: &str) -> bool {
    message.contains("OptimizationFailureException")
}

/// Whether Cruise Control's `message` says a broker it was asked about is not in its
/// metadata (`IllegalArgumentException: Broker [3] does not exist.`): for a broker just
/// added, its metadata has not caught up yet (it refreshes every `metadata.max.age.ms`).
pub fn unknown_broker(message: &str) -> bool {
    message.contains("IllegalArgumentException") && message.contains("does not exist")
}

/// A movement Cruise Control is asked to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Move replicas onto new brokers (`add_broker`).
    AddBrokers(Vec<i32>),
    /// Move every replica off brokers (`remove_broker`).
    RemoveBrokers(Vec<i32>),
    /// Move leadership off brokers (`demote_broker`).
    DemoteBrokers(Vec<i32>),
    /// Balance the whole cluster (`rebalance`), or the disks of each broker.
    Rebalance {
        /// Balance between the disks of each broker instead (`rebalance_disk`).
        disk: bool,
    },
    /// Move every replica off log dirs, within their brokers (`remove_disks`).
    RemoveDisks(Vec<(i32, String)>),
}

/// Settings common to movements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MoveOptions {
    /// Goals to optimize for (CC's defaults when empty).
    pub goals: Vec<String>,
    /// Skip the check that every hard goal is among `goals`.
    pub skip_hard_goal_check: bool,
    /// Replication throttle in bytes/s.
    pub replication_throttle: Option<i64>,
    /// Concurrent partition movements per broker.
    pub concurrent_partition_movements_per_broker: Option<i32>,
    /// The reason CC records.
    pub reason: String,
}

fn join(ids: &[i32]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b',' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Operation {
    /// The endpoint, with `dryrun=false` and `json=true` always spelled out.
    pub fn path_and_query(&self, opts: &MoveOptions) -> String {
        let (endpoint, mut params) = match self {
            Self::AddBrokers(ids) => ("add_broker", vec![format!("brokerid={}", join(ids))]),
            Self::RemoveBrokers(ids) => ("remove_broker", vec![format!("brokerid={}", join(ids))]),
            Self::DemoteBrokers(ids) => ("demote_broker", vec![format!("brokerid={}", join(ids))]),
            Self::Rebalance { disk } => (
                "rebalance",
                if *disk {
                    vec!["rebalance_disk=true".to_owned()]
                } else {
                    vec![]
                },
            ),
            Self::RemoveDisks(dirs) => (
                "remove_disks",
                vec![format!(
                    "brokerid_and_logdirs={}",
                    dirs.iter()
                        .map(|(b, d)| encode(&format!("{b}-{d}")))
                        .collect::<Vec<_>>()
                        .join(",")
                )],
            ),
        };
        params.push("dryrun=false".to_owned());
        // remove_disks takes only its own parameters.
        if !matches!(self, Self::RemoveDisks(_) | Self::DemoteBrokers(_)) {
            if !opts.goals.is_empty() {
                params.push(format!("goals={}", encode(&opts.goals.join(","))));
            }
            if opts.skip_hard_goal_check {
                params.push("skip_hard_goal_check=true".to_owned());
            }
            if let Some(t) = opts.replication_throttle {
                params.push(format!("replication_throttle={t}"));
            }
            if let Some(c) = opts.concurrent_partition_movements_per_broker {
                params.push(format!("concurrent_partition_movements_per_broker={c}"));
            }
        }
        if !opts.reason.is_empty() {
            params.push(format!("reason={}", encode(&opts.reason)));
        }
        params.push("json=true".to_owned());
        format!("/{endpoint}?{}", params.join("&"))
    }

    /// The operation in words.
    pub fn describe(&self) -> String {
        match self {
            Self::AddBrokers(ids) => format!("add_broker {ids:?}"),
            Self::RemoveBrokers(ids) => format!("remove_broker {ids:?}"),
            Self::DemoteBrokers(ids) => format!("demote_broker {ids:?}"),
            Self::Rebalance { disk: false } => "rebalance".into(),
            Self::Rebalance { disk: true } => "rebalance of the disks".into(),
            Self::RemoveDisks(d) => format!("remove_disks {d:?}"),
        }
    }
}

/// What a movement request answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    /// CC computed the proposals and started executing them.
    Started {
        /// The task id.
        task_id: String,
        /// What CC proposed.
        result: OptimizationResult,
    },
    /// CC is still computing (202); poll with the task id.
    Pending {
        /// The task id.
        task_id: String,
        /// Its progress.
        progress: Vec<Progress>,
    },
}

/// A client of one Cruise Control.
#[derive(Debug, Clone)]
pub struct CruiseControl {
    base: String,
    http: Client<HttpConnector, Empty<Bytes>>,
}

impl CruiseControl {
    /// A client of the Cruise Control whose API is at `base`
    /// (`http://host:port/kafkacruisecontrol`).
    pub fn new(base: &str) -> Result<Self, CcError> {
        if !base.starts_with("http://") {
            return Err(CcError::Url(base.to_owned()));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// Its API's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        task: Option<&str>,
    ) -> Result<(StatusCode, Option<String>, Bytes), CcError> {
        let url = format!("{}{path}", self.base);
        let mut req = Request::builder().method(method).uri(&url);
        if let Some(id) = task {
            req = req.header(USER_TASK_ID, id);
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|_| CcError::Url(url.clone()))?;
        let unreachable = |message: String| CcError::Unreachable {
            url: url.clone(),
            message,
        };
        let work = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| unreachable(crate::controller::error_chain(&e)))?;
            let status = resp.status();
            let task_id = resp
                .headers()
                .get(USER_TASK_ID)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            Ok((status, task_id, body))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, work)
            .await
            .map_err(|_| unreachable(format!("no answer within {REQUEST_TIMEOUT:?}")))?
    }

    fn error(what: &str, status: StatusCode, body: &[u8]) -> CcError {
        let message = serde_json::from_slice::<ErrorBody>(body)
            .map(|b| b.error_message)
            .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned());
        // CC puts the exception's class into its message.
        if message.contains("NotEnoughValidWindowsException") {
            CcError::NotReady { message }
        } else if message.contains("active user tasks") {
            CcError::Busy { message }
        } else if moving(&message) {
            CcError::Moving { message }
        } else {
            CcError::Refused {
                what: what.to_owned(),
                status: status.as_u16(),
                message,
            }
        }
    }

    fn decode<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, CcError> {
        serde_json::from_slice(body).map_err(|e| CcError::Decode {
            what: what.to_owned(),
            message: e.to_string(),
        })
    }

    /// A GET answered with JSON. One CC did not finish within its block time (202) is
    /// asked again with its `User-Task-ID`, so the same task is read rather than a new
    /// one started (CC allows only a few active tasks), until [`REQUEST_TIMEOUT`].
    async fn get<T: DeserializeOwned>(&self, what: &str, path: &str) -> Result<T, CcError> {
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        let mut task: Option<String> = None;
        loop {
            let (status, id, body) = self.send(Method::GET, path, task.as_deref()).await?;
            match status {
                StatusCode::OK => return Self::decode(what, &body),
                StatusCode::ACCEPTED if tokio::time::Instant::now() < deadline => {
                    task = id.or(task);
                    if task.is_none() {
                        return Err(CcError::Decode {
                            what: what.to_owned(),
                            message: format!("HTTP 202 without a {USER_TASK_ID} header"),
                        });
                    }
                    tokio::time::sleep(GET_POLL_INTERVAL).await;
                }
                // Still not answered: CC is loading or busy; ask later.
                StatusCode::ACCEPTED => {
                    return Err(CcError::NotReady {
                        message: format!("{what} is still being computed"),
                    });
                }
                s => return Err(Self::error(what, s, &body)),
            }
        }
    }

    /// The monitor's and the executor's state. Each call is a user task of its own in
    /// Cruise Control and counts toward its limit of active tasks until answered:
    /// share one answer through [`super::Pool::state`] rather than asking per caller.
    pub async fn state(&self) -> Result<State, CcError> {
        self.get("state", "/state?substates=monitor,executor&json=true")
            .await
    }

    /// The cluster's load per broker, as CC models it (JSON as CC gives it).
    pub async fn load(&self) -> Result<serde_json::Value, CcError> {
        self.get("load", "/load?json=true").await
    }

    /// The cluster's replica placement and state as CC sees it.
    pub async fn kafka_cluster_state(&self) -> Result<serde_json::Value, CcError> {
        self.get("kafka_cluster_state", "/kafka_cluster_state?json=true")
            .await
    }

    /// The task `id`, if CC knows it (it forgets every task when it restarts). Answered
    /// synchronously, without a user task of its own.
    pub async fn user_task(&self, id: &str) -> Result<Option<UserTask>, CcError> {
        let tasks = self
            .user_tasks_query(&format!("user_task_ids={}&", encode(id)))
            .await?;
        Ok(tasks.into_iter().find(|t| t.id == id))
    }

    /// Every task CC remembers (active and recently completed ones, any client's).
    pub async fn user_tasks(&self) -> Result<Vec<UserTask>, CcError> {
        self.user_tasks_query("").await
    }

    async fn user_tasks_query(&self, filter: &str) -> Result<Vec<UserTask>, CcError> {
        let tasks: UserTasks = self
            .get("user_tasks", &format!("/user_tasks?{filter}json=true"))
            .await?;
        Ok(tasks.tasks)
    }

    /// Submits `op` (never a dry run), or, with `task_id`, asks again about the same
    /// request still being computed.
    pub async fn submit(
        &self,
        op: &Operation,
        opts: &MoveOptions,
        task_id: Option<&str>,
    ) -> Result<Submitted, CcError> {
        let what = op.describe();
        let (status, id, body) = self
            .send(Method::POST, &op.path_and_query(opts), task_id)
            .await?;
        let task_id = id.or_else(|| task_id.map(str::to_owned));
        match status {
            StatusCode::OK => Ok(Submitted::Started {
                task_id: task_id.unwrap_or_default(),
                result: Self::decode(&what, &body)?,
            }),
            StatusCode::ACCEPTED => Ok(Submitted::Pending {
                task_id: task_id.ok_or_else(|| CcError::Decode {
                    what: what.clone(),
                    message: format!("HTTP 202 without a {USER_TASK_ID} header"),
                })?,
                progress: Self::decode::<InProgressBody>(&what, &body)
                    .map(|b| b.progress)
                    .unwrap_or_default(),
            }),
            s => Err(Self::error(&what, s, &body)),
        }
    }

    /// Stops the execution in progress (CC finishes the batch in flight).
    pub async fn stop_execution(&self) -> Result<(), CcError> {
        let (status, _, body) = self
            .send(Method::POST, "/stop_proposal_execution?json=true", None)
            .await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(Self::error("stop_proposal_execution", status, &body))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_movement_is_asked_for_real_with_its_parameters() {
        let opts = MoveOptions {
            replication_throttle: Some(10_000_000),
            reason: "scale down broker 3".into(),
            ..MoveOptions::default()
        };
        assert_eq!(
            Operation::RemoveBrokers(vec![3, 4]).path_and_query(&opts),
            "/remove_broker?brokerid=3,4&dryrun=false&replication_throttle=10000000&reason=scale%20down%20broker%203&json=true"
        );
        assert_eq!(
            Operation::AddBrokers(vec![4]).path_and_query(&MoveOptions::default()),
            "/add_broker?brokerid=4&dryrun=false&json=true"
        );
        assert_eq!(
            Operation::Rebalance { disk: true }.path_and_query(&MoveOptions::default()),
            "/rebalance?rebalance_disk=true&dryrun=false&json=true"
        );
        assert_eq!(
            Operation::RemoveDisks(vec![(1, "/kafka-logs-1/kafka".into())]).path_and_query(&opts),
            "/remove_disks?brokerid_and_logdirs=1-%2Fkafka-logs-1%2Fkafka&dryrun=false&reason=scale%20down%20broker%203&json=true"
        );
        for op in [
            Operation::AddBrokers(vec![1]),
            Operation::DemoteBrokers(vec![1]),
            Operation::Rebalance { disk: false },
        ] {
            assert!(op.path_and_query(&opts).contains("dryrun=false"), "{op:?}");
        }
    }

    #[test]
    fn cruise_control_errors_tell_waiting_from_refusal() {
        let body = br#"{"version":1,"errorMessage":"com.linkedin.cruisecontrol.exception.NotEnoughValidWindowsException: There is no window available in range","stackTrace":"..."}"#;
        let e = CruiseControl::error("rebalance", StatusCode::INTERNAL_SERVER_ERROR, body);
        assert!(matches!(e, CcError::NotReady { .. }) && e.is_transient());
        let busy = br#"{"version":1,"errorMessage":"There are already 5 active user tasks, which has reached the servlet capacity."}"#;
        assert!(matches!(
            CruiseControl::error("rebalance", StatusCode::INTERNAL_SERVER_ERROR, busy),
            CcError::Busy { .. }
        ));
        // What a restarted Cruise Control answers while the reassignments of the
        // execution it lost still run in Kafka.
        let moving = br#"{"version":1,"errorMessage":"java.util.concurrent.ExecutionException: com.linkedin.kafka.cruisecontrol.exception.OngoingExecutionException: There are ongoing inter-broker partition movements: {orders-1=PartitionReassignment(replicas=1,3, addingReplicas=3, removingReplicas=)}"}"#;
        let e = CruiseControl::error("add_broker [3]", StatusCode::INTERNAL_SERVER_ERROR, moving);
        assert!(
            matches!(e, CcError::Moving { .. }) && e.is_transient(),
            "{e}"
        );
        let bad = br#"{"version":1,"errorMessage":"java.lang.IllegalArgumentException: Broker 9 does not exist."}"#;
        let e = CruiseControl::error("remove_broker [9]", StatusCode::BAD_REQUEST, bad);
        assert!(!e.is_transient());
        assert!(e.to_string().contains("Broker 9 does not exist"), "{e}");
    }
}
