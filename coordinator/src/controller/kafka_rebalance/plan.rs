//! The KafkaRebalance state machine, pure: [`next`] says what to ask Cruise Control
//! now, [`outcome`] turns its answer into the new status, the Events and when to look
//! again. Rules:
//! - one task runs per cluster at a time, in the order the resources were created;
//! - a task is asked with `dryrun=false`; while Cruise Control samples, is busy or
//!   cannot be reached, the task waits and says so — that costs no attempt;
//! - a refused or failed attempt is retried after a backoff (30 s doubling, at most
//!   10 min), until `maxAttempts`, then the task is `Failed` with Cruise Control's message;
//!   one whose proposal cannot meet Cruise Control's hard goals (too little capacity
//!   left, say) fails at once: nothing moved, and asking again cannot help;
//! - a task Cruise Control no longer knows (it restarted) is lost, said in a Warning
//!   Event, and asked again; it is never taken for done;
//! - `Completed` from `user_tasks` counts only once the executor shows no task in
//!   progress (a completed task can flip back);
//! - a stop (spec or annotation) stops the execution and ends the task `Stopped`.

use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::{
    controller::{
        conditions::{INVALID, READY, set_condition},
        resource_status::Note,
    },
    crd::v1alpha1::{
        KafkaRebalanceSpec, KafkaRebalanceStatus, ProposalSummary, RebalanceMode,
        RebalanceProgress, RebalanceState,
    },
    cruise_control::{
        CcError, MoveOptions, Operation, Submitted,
        types::{ExecutorState, State, TaskStatus, UserTask},
    },
};

/// Attempts before a task fails, unless the spec says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 5;
/// How soon a running task is looked at again.
pub const POLL: Duration = Duration::from_secs(5);
/// How soon a waiting task tries again.
pub const WAIT: Duration = Duration::from_secs(15);
const RETRY_BASE: Duration = Duration::from_secs(30);
const RETRY_CAP: Duration = Duration::from_secs(600);

/// What the reconcile knows besides the resource itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// Now.
    pub now: Timestamp,
    /// Whether a Cruise Control serves the cluster; why not when it does not.
    pub cruise_control: Result<(), String>,
    /// Another unfinished task of the cluster that goes first, if any.
    pub ahead: Option<String>,
    /// A stop was asked for (spec or annotation).
    pub stop: bool,
    /// The coordinator has shown the goal reached (its annotation): what it saw.
    pub goal_reached: Option<String>,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Submit the task (a new attempt).
    Submit(Operation, MoveOptions),
    /// Ask Cruise Control about the task in progress.
    Poll(String),
    /// Stop the execution.
    Stop,
    /// Nothing to ask; record `status` and look again after `requeue` (None: on change).
    Settle {
        /// The new status.
        status: Box<KafkaRebalanceStatus>,
        /// Events.
        events: Vec<Note>,
        /// When to look again.
        requeue: Option<Duration>,
    },
    /// The task finished longer ago than its TTL: delete the resource.
    Delete,
}

/// What Cruise Control answered to [`Next`].
#[derive(Debug)]
pub enum Answer {
    /// To a submission.
    Submitted(Result<Submitted, CcError>),
    /// To a poll: the task as `user_tasks` knows it, and the executor.
    Polled(Result<(Option<UserTask>, State), CcError>),
    /// To a stop.
    Stopped(Result<(), CcError>),
}

/// The operation a spec asks for.
pub fn operation(spec: &KafkaRebalanceSpec) -> Operation {
    match spec.mode {
        RebalanceMode::AddBrokers => Operation::AddBrokers(spec.brokers.clone()),
        RebalanceMode::RemoveBrokers => Operation::RemoveBrokers(spec.brokers.clone()),
        RebalanceMode::RemoveDisks => Operation::RemoveDisks(
            spec.disks
                .iter()
                .map(|d| {
                    (
                        d.broker,
                        format!("{}/kafka", d.mount_path.trim_end_matches('/')),
                    )
                })
                .collect(),
        ),
        RebalanceMode::Rebalance => Operation::Rebalance {
            disk: spec.rebalance_disk,
        },
    }
}

fn options(spec: &KafkaRebalanceSpec, name: &str) -> MoveOptions {
    MoveOptions {
        goals: spec.goals.clone(),
        skip_hard_goal_check: spec.skip_hard_goal_check,
        replication_throttle: spec.replication_throttle,
        concurrent_partition_movements_per_broker: spec.concurrent_partition_movements_per_broker,
        reason: format!("KafkaRebalance {name}"),
    }
}

fn parse(ts: Option<&String>) -> Option<Timestamp> {
    ts.and_then(|t| t.parse().ok())
}

/// The delay before attempt `attempts + 1` after a failed one.
pub fn retry_delay(attempts: i32) -> Duration {
    let n = u32::try_from(attempts.max(1) - 1).unwrap_or(0).min(16);
    RETRY_BASE
        .saturating_mul(2u32.saturating_pow(n))
        .min(RETRY_CAP)
}

fn settle(status: KafkaRebalanceStatus, events: Vec<Note>, requeue: Option<Duration>) -> Next {
    Next::Settle {
        status: Box::new(status),
        events,
        requeue,
    }
}

fn waiting(mut st: KafkaRebalanceStatus, why: String, events: Vec<Note>) -> Next {
    st.state = Some(RebalanceState::Waiting);
    st.message = Some(why);
    settle(st, events, Some(WAIT))
}

/// Cruise Control could not take the task now (sampling, busy, moving, unreachable):
/// it is asked again no sooner than [`WAIT`] from `now`, however often the resource is
/// reconciled meanwhile (its own status write is a change that wakes it).
fn wait_to_ask(mut st: KafkaRebalanceStatus, why: String, now: Timestamp) -> Next {
    st.next_attempt_at =
        Some((now + SignedDuration::try_from(WAIT).unwrap_or_default()).to_string());
    waiting(st, why, Vec::new())
}

/// Why `spec` cannot be asked of Cruise Control as it is, naming the field and what
/// to do; Ok when it can.
pub fn validate(spec: &KafkaRebalanceSpec) -> Result<(), String> {
    let mode = spec.mode;
    match mode {
        RebalanceMode::AddBrokers | RebalanceMode::RemoveBrokers if spec.brokers.is_empty() => {
            return Err(format!(
                "spec.brokers is empty: mode {mode:?} needs the ids of the brokers to act on"
            ));
        }
        RebalanceMode::AddBrokers | RebalanceMode::RemoveBrokers
            if spec.brokers.iter().any(|&b| b < 0) =>
        {
            return Err(format!(
                "spec.brokers has a negative id ({:?}): broker ids are 0 or more",
                spec.brokers
            ));
        }
        RebalanceMode::RemoveDisks if spec.disks.is_empty() => {
            return Err(
                "spec.disks is empty: mode RemoveDisks needs the broker and mountPath of each disk to empty".into(),
            );
        }
        RebalanceMode::RemoveDisks => {
            if let Some(d) = spec.disks.iter().find(|d| !d.mount_path.starts_with('/')) {
                return Err(format!(
                    "spec.disks: broker {}'s mountPath {:?} is not absolute; give the disk's storageConfigs[].mountPath",
                    d.broker, d.mount_path
                ));
            }
        }
        _ => {}
    }
    if mode != RebalanceMode::RemoveDisks && !spec.disks.is_empty() {
        return Err(format!(
            "spec.disks is set, but mode {mode:?} takes no disks; use mode RemoveDisks or remove spec.disks"
        ));
    }
    if matches!(mode, RebalanceMode::Rebalance | RebalanceMode::RemoveDisks)
        && !spec.brokers.is_empty()
    {
        return Err(format!(
            "spec.brokers is set, but mode {mode:?} acts on the whole cluster (or on spec.disks); remove spec.brokers"
        ));
    }
    if spec.rebalance_disk && mode != RebalanceMode::Rebalance {
        return Err(format!(
            "spec.rebalanceDisk applies to mode Rebalance only, not {mode:?}"
        ));
    }
    if mode == RebalanceMode::RemoveDisks
        && (!spec.goals.is_empty()
            || spec.skip_hard_goal_check
            || spec.replication_throttle.is_some()
            || spec.concurrent_partition_movements_per_broker.is_some())
    {
        return Err("mode RemoveDisks takes no goals, skipHardGoalCheck, replicationThrottle or concurrentPartitionMovementsPerBroker (Cruise Control's remove_disks has none); remove them".into());
    }
    if spec.replication_throttle.is_some_and(|t| t <= 0) {
        return Err("spec.replicationThrottle must be a positive number of bytes/s".into());
    }
    if spec
        .concurrent_partition_movements_per_broker
        .is_some_and(|c| c <= 0)
    {
        return Err("spec.concurrentPartitionMovementsPerBroker must be 1 or more".into());
    }
    if spec.max_attempts.is_some_and(|m| m < 1) {
        return Err("spec.maxAttempts must be 1 or more".into());
    }
    if spec.ttl_seconds_after_finished.is_some_and(|t| t < 0) {
        return Err("spec.ttlSecondsAfterFinished must be 0 or more".into());
    }
    Ok(())
}

/// What to do now for the task `name`.
pub fn next(
    name: &str,
    spec: &KafkaRebalanceSpec,
    status: &KafkaRebalanceStatus,
    generation: Option<i64>,
    facts: &Facts,
) -> Next {
    let mut st = status.clone();
    st.observed_generation = generation;
    let state = st.state.unwrap_or_default();
    if state.finished() {
        let expired = spec
            .ttl_seconds_after_finished
            .zip(parse(st.finished_at.as_ref()))
            .is_some_and(|(ttl, at)| facts.now >= at + SignedDuration::from_secs(ttl));
        return if expired {
            Next::Delete
        } else {
            let left = spec
                .ttl_seconds_after_finished
                .zip(parse(st.finished_at.as_ref()))
                .map(|(ttl, at)| {
                    let until = at + SignedDuration::from_secs(ttl);
                    Duration::try_from(until.duration_since(facts.now)).unwrap_or(Duration::ZERO)
                });
            settle(st, Vec::new(), left)
        };
    }
    // A spec that cannot be asked waits for a change, unless its task already runs
    // (then only a stop applies).
    if state != RebalanceState::Running {
        let now = facts.now.to_string();
        match validate(spec) {
            Err(why) => {
                let already = st
                    .conditions
                    .iter()
                    .any(|c| c.type_ == INVALID && c.status == "True" && c.message == why);
                set_condition(
                    &mut st.conditions,
                    INVALID,
                    true,
                    "InvalidSpec",
                    &why,
                    generation,
                    &now,
                );
                st.message = Some(why.clone());
                let events = if already {
                    Vec::new()
                } else {
                    vec![Note::warning(
                        "Invalid",
                        "Validating",
                        format!("{name} is not asked of Cruise Control: {why}"),
                    )]
                };
                return settle(st, events, None);
            }
            Ok(()) if st.conditions.iter().any(|c| c.type_ == INVALID) => {
                set_condition(
                    &mut st.conditions,
                    INVALID,
                    false,
                    "Valid",
                    "the spec is valid",
                    generation,
                    &now,
                );
            }
            Ok(()) => {}
        }
    }
    // The broker or disk this task was emptying has been shown empty by its own agent:
    // the operation is done. Never inferred from Cruise Control (a lost or restarted
    // task says nothing); Cruise Control's batch in flight is left to finish.
    if let Some(seen) = &facts.goal_reached {
        st.state = Some(RebalanceState::Completed);
        st.finished_at = Some(facts.now.to_string());
        st.next_attempt_at = None;
        st.message = Some(match st.task_id.as_deref() {
            Some(id) => format!("{seen}; Cruise Control's task {id} is no longer followed"),
            None => seen.clone(),
        });
        let note = Note::normal(
            "Completed",
            "Rebalancing",
            format!("{name}: {}", st.message.clone().unwrap_or_default()),
        );
        return settle(
            st,
            vec![note],
            spec.ttl_seconds_after_finished
                .map(|t| Duration::from_secs(u64::try_from(t).unwrap_or(0))),
        );
    }
    if facts.stop {
        if state == RebalanceState::Running {
            return Next::Stop;
        }
        st.state = Some(RebalanceState::Stopped);
        st.message = Some("stopped before it started".into());
        st.finished_at = Some(facts.now.to_string());
        return settle(
            st,
            vec![Note::normal(
                "Stopped",
                "Rebalancing",
                format!("{name} stopped before it started"),
            )],
            None,
        );
    }
    if state == RebalanceState::Running
        && let Some(id) = st.task_id.clone()
    {
        if let Some(at) = parse(st.next_attempt_at.as_ref())
            && facts.now < at
        {
            let left = Duration::try_from(at.duration_since(facts.now)).unwrap_or(POLL);
            return settle(st, Vec::new(), Some(left.max(Duration::from_secs(1))));
        }
        return Next::Poll(id);
    }
    if let Err(why) = &facts.cruise_control {
        return waiting(st, why.clone(), Vec::new());
    }
    if let Some(first) = &facts.ahead {
        return waiting(
            st,
            format!(
                "waiting for KafkaRebalance {first} of the same cluster: one task runs at a time"
            ),
            Vec::new(),
        );
    }
    if let Some(at) = parse(st.next_attempt_at.as_ref())
        && facts.now < at
    {
        let left = Duration::try_from(at.duration_since(facts.now)).unwrap_or(WAIT);
        st.state = Some(RebalanceState::Waiting);
        return settle(st, Vec::new(), Some(left.max(Duration::from_secs(1))));
    }
    Next::Submit(operation(spec), options(spec, name))
}

fn proposal(s: &crate::cruise_control::types::OptimizationSummary) -> ProposalSummary {
    ProposalSummary {
        replica_movements: s.num_replica_movements,
        leader_movements: s.num_leader_movements,
        data_to_move_mb: s.data_to_move_mb,
        intra_broker_replica_movements: s.num_intra_broker_replica_movements,
    }
}

/// The execution's progress from the executor, when it executes `task`.
pub fn progress(
    executor: &ExecutorState,
    task: &str,
    started: Option<Timestamp>,
    now: Timestamp,
) -> Option<RebalanceProgress> {
    // Only a movement in progress carries numbers (not the executor's start).
    if executor.triggered_user_task_id.as_deref() != Some(task)
        || (executor.total_data_to_move.is_none()
            && executor.total_intra_broker_data_to_move.is_none()
            && executor.num_total_partition_movements.is_none())
    {
        return None;
    }
    let total = executor.total_data_to_move.unwrap_or(0.0)
        + executor.total_intra_broker_data_to_move.unwrap_or(0.0);
    let moved = executor.finished_data_movement.unwrap_or(0.0)
        + executor.finished_intra_broker_data_movement.unwrap_or(0.0);
    let partitions = executor.num_total_partition_movements.unwrap_or(0);
    let finished = executor.num_finished_partition_movements.unwrap_or(0);
    let share = if total > 0.0 {
        moved / total
    } else if partitions > 0 {
        finished as f64 / partitions as f64
    } else {
        0.0
    };
    let eta_seconds = started.and_then(|s| {
        let elapsed = now.duration_since(s).as_secs_f64();
        (share > 0.0 && share < 1.0 && elapsed > 0.0)
            .then(|| (elapsed * (1.0 - share) / share).round() as i64)
    });
    Some(RebalanceProgress {
        partition_movements: partitions,
        finished_partition_movements: finished,
        data_to_move_mb: total,
        moved_mb: moved,
        eta_seconds,
        summary: format!(
            "{moved:.0}/{total:.0} MB, {finished}/{partitions} partitions ({:.0}%)",
            share * 100.0
        ),
    })
}

/// An attempt failed with `why`: retried after a backoff, or failed for good.
fn attempt_failed(
    name: &str,
    spec: &KafkaRebalanceSpec,
    mut st: KafkaRebalanceStatus,
    why: String,
    now: Timestamp,
) -> Next {
    let max = spec.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
    st.task_id = None;
    if crate::cruise_control::client::unattainable(&why) {
        // Nothing was moved, and asking again cannot help while the cluster is as it is.
        st.state = Some(RebalanceState::Failed);
        st.message = Some(format!(
            "Cruise Control finds no proposal that meets its hard goals, so nothing was moved: {why}. Add capacity (brokers, disks) or correct capacityConfig, or ask for less (fewer brokers to remove); then delete this KafkaRebalance to have it asked again"
        ));
        st.finished_at = Some(now.to_string());
        st.next_attempt_at = None;
        let note = Note::warning(
            "Failed",
            "Rebalancing",
            format!("{name}: {}", st.message.clone().unwrap_or_default()),
        );
        return settle(st, vec![note], None);
    }
    if st.attempts >= max {
        st.state = Some(RebalanceState::Failed);
        st.message = Some(format!("gave up after {} attempt(s): {why}", st.attempts));
        st.finished_at = Some(now.to_string());
        st.next_attempt_at = None;
        let note = Note::warning(
            "Failed",
            "Rebalancing",
            format!("{name} failed after {} attempt(s): {why}", st.attempts),
        );
        return settle(st, vec![note], None);
    }
    let delay = retry_delay(st.attempts);
    st.state = Some(RebalanceState::Waiting);
    st.next_attempt_at =
        Some((now + SignedDuration::try_from(delay).unwrap_or(SignedDuration::ZERO)).to_string());
    st.message = Some(format!(
        "attempt {} of {max} failed: {why}; trying again in {}s",
        st.attempts,
        delay.as_secs()
    ));
    let note = Note::warning(
        "AttemptFailed",
        "Rebalancing",
        format!("{name}: attempt {} of {max} failed: {why}", st.attempts),
    );
    settle(st, vec![note], Some(delay))
}

/// The new status after Cruise Control answered. A task still running is asked about
/// again no sooner than its requeue (`nextAttemptAt`), however often the resource is
/// woken meanwhile: every progress it records is a status write that wakes it.
pub fn outcome(
    name: &str,
    spec: &KafkaRebalanceSpec,
    status: &KafkaRebalanceStatus,
    generation: Option<i64>,
    answer: Answer,
    now: Timestamp,
) -> Next {
    let mut next = answered(name, spec, status, generation, answer, now);
    if let Next::Settle {
        status,
        requeue: Some(after),
        ..
    } = &mut next
        && status.state == Some(RebalanceState::Running)
    {
        status.next_attempt_at =
            Some((now + SignedDuration::try_from(*after).unwrap_or_default()).to_string());
    }
    next
}

fn answered(
    name: &str,
    spec: &KafkaRebalanceSpec,
    status: &KafkaRebalanceStatus,
    generation: Option<i64>,
    answer: Answer,
    now: Timestamp,
) -> Next {
    let mut st = status.clone();
    st.observed_generation = generation;
    // Asked at all: the spec is valid (again).
    if st
        .conditions
        .iter()
        .any(|c| c.type_ == INVALID && c.status == "True")
    {
        set_condition(
            &mut st.conditions,
            INVALID,
            false,
            "Valid",
            "the spec is valid",
            generation,
            &now.to_string(),
        );
    }
    let request = operation(spec).path_and_query(&options(spec, name));
    match answer {
        Answer::Submitted(Ok(Submitted::Started { task_id, result })) => {
            st.attempts += 1;
            st.state = Some(RebalanceState::Running);
            st.task_id = Some(task_id.clone());
            st.request = Some(request);
            st.started_at = Some(now.to_string());
            st.next_attempt_at = None;
            st.proposal = Some(proposal(&result.summary));
            st.message = Some(format!(
                "Cruise Control executes task {task_id}: {} replica and {} leader movement(s), {:.0} MB",
                result.summary.num_replica_movements,
                result.summary.num_leader_movements,
                result.summary.data_to_move_mb
            ));
            let note = Note::normal(
                "Started",
                "Rebalancing",
                format!("{name}: {}", st.message.clone().unwrap_or_default()),
            );
            settle(st, vec![note], Some(POLL))
        }
        Answer::Submitted(Ok(Submitted::Pending { task_id, progress })) => {
            st.attempts += 1;
            st.state = Some(RebalanceState::Running);
            st.task_id = Some(task_id.clone());
            st.request = Some(request);
            st.started_at = Some(now.to_string());
            st.next_attempt_at = None;
            let step = progress
                .iter()
                .flat_map(|p| p.steps.last())
                .map(|s| s.step.clone())
                .next_back()
                .unwrap_or_else(|| "PENDING".into());
            st.message = Some(format!("Cruise Control computes task {task_id} ({step})"));
            let note = Note::normal(
                "Started",
                "Rebalancing",
                format!("{name}: Cruise Control accepted it as task {task_id}"),
            );
            settle(st, vec![note], Some(POLL))
        }
        Answer::Submitted(Err(e)) if e.is_transient() => wait_to_ask(st, e.to_string(), now),
        // A broker added a moment ago that Cruise Control's metadata does not show yet:
        // it will, within its metadata refresh; not a failed attempt.
        Answer::Submitted(Err(CcError::Refused { message, .. }))
            if spec.mode == RebalanceMode::AddBrokers
                && crate::cruise_control::client::unknown_broker(&message) =>
        {
            wait_to_ask(
                st,
                format!(
                    "Cruise Control does not know broker(s) {:?} yet (its metadata refreshes every metadata.max.age.ms): {message}",
                    spec.brokers
                ),
                now,
            )
        }
        Answer::Submitted(Err(e)) => {
            st.attempts += 1;
            attempt_failed(name, spec, st, e.to_string(), now)
        }
        Answer::Polled(Err(e)) => {
            st.message = Some(format!(
                "{e}; task {} is not assumed done, asking again",
                st.task_id.clone().unwrap_or_default()
            ));
            settle(st, Vec::new(), Some(WAIT))
        }
        Answer::Polled(Ok((None, _))) => {
            let id = st.task_id.take().unwrap_or_default();
            st.lost_tasks += 1;
            st.state = Some(RebalanceState::Waiting);
            st.message = Some(format!(
                "Cruise Control no longer knows task {id} (it restarted and keeps no task); asking again"
            ));
            let note = Note::warning(
                "TaskLost",
                "Rebalancing",
                format!(
                    "{name}: Cruise Control lost task {id}; it is asked again, never taken for done"
                ),
            );
            settle(st, vec![note], Some(Duration::from_secs(1)))
        }
        Answer::Polled(Ok((Some(task), state))) => {
            let started = parse(st.started_at.as_ref());
            match task.status {
                TaskStatus::Active => {
                    st.message = Some(format!("Cruise Control computes task {}", task.id));
                    settle(st, Vec::new(), Some(POLL))
                }
                TaskStatus::InExecution => {
                    if let Some(p) = progress(&state.executor, &task.id, started, now) {
                        st.message = Some(format!("moving data: {}", p.summary));
                        st.progress = Some(p);
                    } else {
                        st.message = Some(format!("Cruise Control executes task {}", task.id));
                    }
                    settle(st, Vec::new(), Some(POLL))
                }
                TaskStatus::Completed if !state.executor.idle() => {
                    st.message = Some(format!(
                        "Cruise Control reports task {} completed but its executor is {}; confirming",
                        task.id, state.executor.state
                    ));
                    settle(st, Vec::new(), Some(POLL))
                }
                TaskStatus::Completed => {
                    st.state = Some(RebalanceState::Completed);
                    st.finished_at = Some(now.to_string());
                    st.message = Some(format!("task {} completed", task.id));
                    // What moved: the last progress, else what Cruise Control proposed.
                    if st.progress.is_none()
                        && let Some(plan) = &st.proposal
                    {
                        st.progress = Some(RebalanceProgress {
                            partition_movements: plan.replica_movements
                                + plan.intra_broker_replica_movements,
                            data_to_move_mb: plan.data_to_move_mb,
                            ..RebalanceProgress::default()
                        });
                    }
                    if let Some(p) = st.progress.as_mut() {
                        p.moved_mb = p.data_to_move_mb;
                        p.finished_partition_movements = p.partition_movements;
                        p.eta_seconds = None;
                        p.summary = format!(
                            "{:.0}/{:.0} MB, {}/{} partitions (100%)",
                            p.data_to_move_mb,
                            p.data_to_move_mb,
                            p.partition_movements,
                            p.partition_movements
                        );
                    }
                    set_condition(
                        &mut st.conditions,
                        READY,
                        true,
                        "Completed",
                        &format!("Cruise Control completed task {}", task.id),
                        generation,
                        &now.to_string(),
                    );
                    let took = started
                        .map(|s| format!(" in {}s", now.duration_since(s).as_secs()))
                        .unwrap_or_default();
                    let note = Note::normal(
                        "Completed",
                        "Rebalancing",
                        format!("{name}: Cruise Control completed task {}{took}", task.id),
                    );
                    settle(st, vec![note], None)
                }
                TaskStatus::CompletedWithError => {
                    let why = task
                        .original_response
                        .as_deref()
                        .and_then(|r| {
                            serde_json::from_str::<crate::cruise_control::types::ErrorBody>(r).ok()
                        })
                        .map(|b| b.error_message)
                        .filter(|m| !m.is_empty())
                        .unwrap_or_else(|| {
                            format!("Cruise Control ended task {} with an error", task.id)
                        });
                    if crate::cruise_control::client::moving(&why) {
                        // Never executed: partitions were still moving. Not an attempt.
                        st.attempts = (st.attempts - 1).max(0);
                        st.task_id = None;
                        let why = CcError::Moving { message: why }.to_string();
                        return wait_to_ask(st, why, now);
                    }
                    attempt_failed(name, spec, st, why, now)
                }
            }
        }
        Answer::Stopped(Ok(())) => {
            st.state = Some(RebalanceState::Stopped);
            st.finished_at = Some(now.to_string());
            st.message =
                Some("stopped on request; Cruise Control finished the batch in flight".into());
            let note = Note::normal(
                "Stopped",
                "Rebalancing",
                format!("{name} stopped on request"),
            );
            settle(st, vec![note], None)
        }
        Answer::Stopped(Err(e)) => {
            st.message = Some(format!("failed to stop: {e}; trying again"));
            settle(st, Vec::new(), Some(WAIT))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        crd::v1alpha1::ClusterRef,
        cruise_control::types::{OptimizationResult, OptimizationSummary},
    };

    fn spec(mode: RebalanceMode, brokers: &[i32]) -> KafkaRebalanceSpec {
        KafkaRebalanceSpec {
            cluster_ref: ClusterRef {
                name: "kf".into(),
                namespace: None,
            },
            mode,
            brokers: brokers.to_vec(),
            disks: vec![],
            rebalance_disk: false,
            goals: vec![],
            skip_hard_goal_check: false,
            replication_throttle: None,
            concurrent_partition_movements_per_broker: None,
            stop: false,
            max_attempts: Some(2),
            ttl_seconds_after_finished: Some(60),
        }
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).expect("a time")
    }

    #[test]
    fn a_spec_that_cannot_be_asked_waits_for_a_change_and_says_which_field() {
        let cases = [
            (
                spec(RebalanceMode::AddBrokers, &[]),
                "spec.brokers is empty",
            ),
            (spec(RebalanceMode::RemoveDisks, &[]), "spec.disks is empty"),
            (spec(RebalanceMode::Rebalance, &[1]), "spec.brokers is set"),
            (
                KafkaRebalanceSpec {
                    rebalance_disk: true,
                    ..spec(RebalanceMode::AddBrokers, &[3])
                },
                "spec.rebalanceDisk",
            ),
            (
                KafkaRebalanceSpec {
                    replication_throttle: Some(0),
                    ..spec(RebalanceMode::Rebalance, &[])
                },
                "spec.replicationThrottle",
            ),
        ];
        for (bad, field) in cases {
            let Next::Settle {
                status,
                events,
                requeue,
            } = next(
                "r",
                &bad,
                &KafkaRebalanceStatus::default(),
                Some(1),
                &facts(0),
            )
            else {
                panic!("{field}: an invalid spec is never sent to Cruise Control");
            };
            let invalid = status
                .conditions
                .iter()
                .find(|c| c.type_ == INVALID)
                .expect("an Invalid condition");
            assert_eq!(invalid.status, "True");
            assert!(invalid.message.starts_with(field), "{}", invalid.message);
            assert_eq!(requeue, None, "it waits for a change of the spec");
            assert_eq!(events.len(), 1);
            assert!(events[0].warning);
            // Said once: the next pass over the same spec publishes nothing new.
            let Next::Settle { events, .. } = next("r", &bad, &status, Some(1), &facts(5)) else {
                panic!("still invalid");
            };
            assert!(events.is_empty());
            // Fixed: it is submitted, and the condition clears.
            let fixed = spec(RebalanceMode::Rebalance, &[]);
            assert!(matches!(
                next("r", &fixed, &status, Some(2), &facts(10)),
                Next::Submit(..)
            ));
            let Next::Settle { status, .. } = outcome(
                "r",
                &fixed,
                &status,
                Some(2),
                Answer::Submitted(Err(CcError::NotReady {
                    message: "sampling".into(),
                })),
                t(10),
            ) else {
                panic!("an answer settles");
            };
            let invalid = status.conditions.iter().find(|c| c.type_ == INVALID);
            assert_eq!(invalid.map(|c| c.status.as_str()), Some("False"));
        }
    }

    fn facts(s: i64) -> Facts {
        Facts {
            now: t(s),
            cruise_control: Ok(()),
            ahead: None,
            stop: false,
            goal_reached: None,
        }
    }

    fn status_of(n: Next) -> KafkaRebalanceStatus {
        match n {
            Next::Settle { status, .. } => *status,
            other => panic!("expected a status, got {other:?}"),
        }
    }

    fn task(status: TaskStatus) -> UserTask {
        UserTask {
            id: "task-1".into(),
            request_url: String::new(),
            status,
            original_response: None,
        }
    }

    fn executor(state: &str) -> State {
        State {
            executor: ExecutorState {
                state: state.into(),
                triggered_user_task_id: Some("task-1".into()),
                total_data_to_move: Some(100.0),
                finished_data_movement: Some(25.0),
                num_total_partition_movements: Some(8),
                num_finished_partition_movements: Some(2),
                ..ExecutorState::default()
            },
            ..State::default()
        }
    }

    fn running() -> KafkaRebalanceStatus {
        let s = spec(RebalanceMode::RemoveBrokers, &[3]);
        status_of(outcome(
            "kf-remove-3",
            &s,
            &KafkaRebalanceStatus::default(),
            Some(1),
            Answer::Submitted(Ok(Submitted::Started {
                task_id: "task-1".into(),
                result: OptimizationResult {
                    summary: OptimizationSummary {
                        num_replica_movements: 8,
                        data_to_move_mb: 100.0,
                        ..OptimizationSummary::default()
                    },
                },
            })),
            t(0),
        ))
    }

    #[test]
    fn a_pending_task_is_submitted_for_real_once_cruise_control_serves_and_none_is_ahead() {
        let s = spec(RebalanceMode::RemoveBrokers, &[3]);
        let st = KafkaRebalanceStatus::default();
        match next("kf-remove-3", &s, &st, Some(1), &facts(0)) {
            Next::Submit(op, _) => assert_eq!(op, Operation::RemoveBrokers(vec![3])),
            other => panic!("submits: {other:?}"),
        }
        let mut no_cc = facts(0);
        no_cc.cruise_control = Err("the cluster has no Cruise Control".into());
        let w = status_of(next("kf-remove-3", &s, &st, Some(1), &no_cc));
        assert_eq!(w.state, Some(RebalanceState::Waiting));
        let mut queued = facts(0);
        queued.ahead = Some("kf-add-4".into());
        let w = status_of(next("kf-remove-3", &s, &st, Some(1), &queued));
        assert!(w.message.is_some_and(|m| m.contains("kf-add-4")));
    }

    #[test]
    fn sampling_busy_or_unreachable_cruise_control_waits_without_spending_an_attempt() {
        let s = spec(RebalanceMode::AddBrokers, &[4]);
        for e in [
            CcError::NotReady {
                message: "NotEnoughValidWindowsException".into(),
            },
            CcError::Busy {
                message: "5 active user tasks".into(),
            },
            CcError::Unreachable {
                url: "u".into(),
                message: "refused".into(),
            },
            CcError::Moving {
                message: "There are ongoing inter-broker partition movements".into(),
            },
        ] {
            let st = status_of(outcome(
                "kf-add-4",
                &s,
                &KafkaRebalanceStatus::default(),
                None,
                Answer::Submitted(Err(e)),
                t(0),
            ));
            assert_eq!(st.state, Some(RebalanceState::Waiting));
            assert_eq!(st.attempts, 0);
            // Its own status write wakes it at once: it is not asked again yet.
            let again = status_of(next("kf-add-4", &s, &st, None, &facts(1)));
            assert_eq!(again.message, st.message, "nothing new to say");
            assert!(matches!(
                next("kf-add-4", &s, &st, None, &facts(WAIT.as_secs() as i64)),
                Next::Submit(..)
            ));
        }
    }

    #[test]
    fn a_running_task_is_polled_no_sooner_than_its_requeue_however_often_it_is_woken() {
        let s = spec(RebalanceMode::AddBrokers, &[3]);
        let running = KafkaRebalanceStatus {
            state: Some(RebalanceState::Running),
            task_id: Some("task-1".into()),
            attempts: 1,
            ..KafkaRebalanceStatus::default()
        };
        for answer in [
            Answer::Polled(Ok((
                Some(task(TaskStatus::InExecution)),
                executor("INTER_BROKER_REPLICA_MOVEMENT_TASK_IN_PROGRESS"),
            ))),
            Answer::Polled(Err(CcError::Busy {
                message: "There are already 5 active user tasks".into(),
            })),
        ] {
            let st = status_of(outcome("kf-add-3", &s, &running, None, answer, t(0)));
            assert_eq!(st.state, Some(RebalanceState::Running));
            // Woken by its own status write a moment later: not asked yet.
            assert!(
                matches!(
                    next("kf-add-3", &s, &st, None, &facts(1)),
                    Next::Settle { .. }
                ),
                "{st:?}"
            );
            assert!(matches!(
                next("kf-add-3", &s, &st, None, &facts(WAIT.as_secs() as i64)),
                Next::Poll(_)
            ));
        }
        // A stop is not held back.
        let st = status_of(outcome(
            "kf-add-3",
            &s,
            &running,
            None,
            Answer::Polled(Ok((
                Some(task(TaskStatus::InExecution)),
                executor("INTER_BROKER_REPLICA_MOVEMENT_TASK_IN_PROGRESS"),
            ))),
            t(0),
        ));
        let mut stop = facts(1);
        stop.stop = true;
        assert_eq!(next("kf-add-3", &s, &st, None, &stop), Next::Stop);
    }

    #[test]
    fn a_task_cruise_control_ended_because_partitions_were_moving_waits_and_is_asked_again() {
        let s = spec(RebalanceMode::AddBrokers, &[3]);
        let running = KafkaRebalanceStatus {
            state: Some(RebalanceState::Running),
            task_id: Some("task-1".into()),
            attempts: 1,
            ..KafkaRebalanceStatus::default()
        };
        let mut ended = task(TaskStatus::CompletedWithError);
        ended.original_response = Some(
            r#"{"errorMessage":"com.linkedin.kafka.cruisecontrol.exception.OngoingExecutionException: There are ongoing inter-broker partition movements: {orders-1=...}"}"#.into(),
        );
        let st = status_of(outcome(
            "kf-add-3",
            &s,
            &running,
            None,
            Answer::Polled(Ok((Some(ended), executor("NO_TASK_IN_PROGRESS")))),
            t(0),
        ));
        assert_eq!(st.state, Some(RebalanceState::Waiting));
        assert_eq!(st.attempts, 0, "it never executed: {st:?}");
        assert_eq!(st.task_id, None);
        assert!(
            st.message
                .as_deref()
                .is_some_and(|m| m.contains("still being moved")),
            "{st:?}"
        );
        assert!(matches!(
            next("kf-add-3", &s, &st, None, &facts(WAIT.as_secs() as i64)),
            Next::Submit(..)
        ));
    }

    #[test]
    fn a_proposal_cruise_control_cannot_make_fails_at_once_and_says_what_to_do() {
        let s = spec(RebalanceMode::RemoveBrokers, &[2, 3]);
        let st = status_of(outcome(
            "kf-remove-2",
            &s,
            &KafkaRebalanceStatus::default(),
            None,
            Answer::Submitted(Err(CcError::Refused {
                what: "remove_broker [2, 3]".into(),
                status: 500,
                message: "com.linkedin.kafka.cruisecontrol.exception.OptimizationFailureException: [DiskCapacityGoal] Insufficient capacity for disk (Utilization 1200.00, Allowed Capacity 800.00, Threshold: 0.80).".into(),
            })),
            t(0),
        ));
        assert_eq!(st.state, Some(RebalanceState::Failed), "no retry: {st:?}");
        let m = st.message.unwrap_or_default();
        assert!(
            m.contains("Insufficient capacity") && m.contains("nothing was moved"),
            "{m}"
        );
        assert!(m.contains("fewer brokers to remove"), "{m}");
    }

    #[test]
    fn a_goal_the_coordinator_saw_reached_completes_the_task_whatever_cruise_control_says() {
        let s = spec(RebalanceMode::RemoveDisks, &[1]);
        let running = KafkaRebalanceStatus {
            state: Some(RebalanceState::Running),
            task_id: Some("t-1".into()),
            lost_tasks: 1,
            ..KafkaRebalanceStatus::default()
        };
        let mut f = facts(0);
        f.goal_reached = Some("every disk it empties shows no replica".into());
        let st = status_of(next("kf-remove-disks-1", &s, &running, None, &f));
        assert_eq!(st.state, Some(RebalanceState::Completed));
        assert_eq!(
            st.message.as_deref(),
            Some(
                "every disk it empties shows no replica; Cruise Control's task t-1 is no longer followed"
            )
        );
        // Without the coordinator's word, a task Cruise Control lost is asked about.
        assert!(matches!(
            next("kf-remove-disks-1", &s, &running, None, &facts(0)),
            Next::Poll(_)
        ));
    }

    #[test]
    fn a_new_broker_cruise_control_does_not_know_yet_is_waited_for_not_failed() {
        let s = spec(RebalanceMode::AddBrokers, &[101]);
        let st = status_of(outcome(
            "kf-add-101",
            &s,
            &KafkaRebalanceStatus::default(),
            None,
            Answer::Submitted(Err(CcError::Refused {
                what: "add_broker [101]".into(),
                status: 500,
                message: "com.linkedin.kafka.cruisecontrol.exception.KafkaCruiseControlException: java.lang.IllegalArgumentException: Broker [101] does not exist.".into(),
            })),
            t(0),
        ));
        assert_eq!(st.state, Some(RebalanceState::Waiting));
        assert_eq!(st.attempts, 0, "not an attempt: {st:?}");
        assert_eq!(st.next_attempt_at, Some(t(15).to_string()));
        assert!(
            st.message
                .is_some_and(|m| m.contains("does not know broker(s) [101] yet")),
        );
    }

    #[test]
    fn a_refused_attempt_backs_off_then_fails_with_cruise_controls_message() {
        let s = spec(RebalanceMode::RemoveBrokers, &[9]);
        let refused = || {
            Answer::Submitted(Err(CcError::Refused {
                what: "remove_broker [9]".into(),
                status: 400,
                message: "Broker 9 does not exist.".into(),
            }))
        };
        let first = status_of(outcome(
            "r",
            &s,
            &KafkaRebalanceStatus::default(),
            None,
            refused(),
            t(0),
        ));
        assert_eq!(first.state, Some(RebalanceState::Waiting));
        assert_eq!(first.attempts, 1);
        assert_eq!(first.next_attempt_at, Some(t(30).to_string()));
        // Not before the backoff ends.
        assert!(matches!(
            next("r", &s, &first, None, &facts(10)),
            Next::Settle { .. }
        ));
        assert!(matches!(
            next("r", &s, &first, None, &facts(31)),
            Next::Submit(..)
        ));
        let second = status_of(outcome("r", &s, &first, None, refused(), t(31)));
        assert_eq!(second.state, Some(RebalanceState::Failed));
        assert!(
            second
                .message
                .is_some_and(|m| m.contains("Broker 9 does not exist"))
        );
        assert_eq!(retry_delay(1), Duration::from_secs(30));
        assert_eq!(retry_delay(2), Duration::from_secs(60));
        assert_eq!(retry_delay(30), Duration::from_secs(600));
    }

    #[test]
    fn a_running_task_reports_progress_and_completes_only_when_the_executor_is_idle() {
        let s = spec(RebalanceMode::RemoveBrokers, &[3]);
        let st = running();
        assert_eq!(st.state, Some(RebalanceState::Running));
        assert_eq!(st.proposal.as_ref().map(|p| p.replica_movements), Some(8));
        assert!(
            st.request
                .as_deref()
                .is_some_and(|r| r.contains("dryrun=false"))
        );
        // Followed every POLL, not sooner.
        assert!(matches!(
            next("r", &s, &st, None, &facts(1)),
            Next::Settle { .. }
        ));
        assert_eq!(
            next("r", &s, &st, None, &facts(POLL.as_secs() as i64)),
            Next::Poll("task-1".into())
        );
        let moving = status_of(outcome(
            "r",
            &s,
            &st,
            None,
            Answer::Polled(Ok((
                Some(task(TaskStatus::InExecution)),
                executor("INTER_BROKER_REPLICA_MOVEMENT_TASK_IN_PROGRESS"),
            ))),
            t(10),
        ));
        let p = moving.progress.clone().expect("progress");
        assert_eq!((p.moved_mb, p.data_to_move_mb), (25.0, 100.0));
        assert_eq!(p.eta_seconds, Some(30), "a quarter in 10 s: 30 s to go");
        // Completed in user_tasks, but the executor still moves: not done yet.
        let flipping = status_of(outcome(
            "r",
            &s,
            &moving,
            None,
            Answer::Polled(Ok((
                Some(task(TaskStatus::Completed)),
                executor("INTER_BROKER_REPLICA_MOVEMENT_TASK_IN_PROGRESS"),
            ))),
            t(20),
        ));
        assert_eq!(flipping.state, Some(RebalanceState::Running));
        let done = status_of(outcome(
            "r",
            &s,
            &flipping,
            None,
            Answer::Polled(Ok((
                Some(task(TaskStatus::Completed)),
                executor("NO_TASK_IN_PROGRESS"),
            ))),
            t(40),
        ));
        assert_eq!(done.state, Some(RebalanceState::Completed));
        assert_eq!(done.progress.as_ref().map(|p| p.moved_mb), Some(100.0));
        // Deleted once its TTL has passed.
        assert!(matches!(
            next("r", &s, &done, None, &facts(60)),
            Next::Settle { .. }
        ));
        assert_eq!(next("r", &s, &done, None, &facts(101)), Next::Delete);
    }

    #[test]
    fn a_task_cruise_control_lost_is_asked_again_never_taken_for_done() {
        let s = spec(RebalanceMode::RemoveBrokers, &[3]);
        let lost = outcome(
            "r",
            &s,
            &running(),
            None,
            Answer::Polled(Ok((None, State::default()))),
            t(5),
        );
        let Next::Settle { status, events, .. } = lost else {
            panic!("settles")
        };
        assert_eq!(status.state, Some(RebalanceState::Waiting));
        assert_eq!(status.lost_tasks, 1);
        assert_eq!(status.task_id, None);
        assert_eq!(events[0].reason, "TaskLost");
        assert!(matches!(
            next("r", &s, &status, None, &facts(6)),
            Next::Submit(..)
        ));
        // Unreachable while running: still running, not done.
        let blind = status_of(outcome(
            "r",
            &s,
            &running(),
            None,
            Answer::Polled(Err(CcError::Unreachable {
                url: "u".into(),
                message: "refused".into(),
            })),
            t(5),
        ));
        assert_eq!(blind.state, Some(RebalanceState::Running));
        assert!(
            blind
                .message
                .is_some_and(|m| m.contains("not assumed done"))
        );
    }

    #[test]
    fn a_stop_stops_a_running_task_and_ends_a_pending_one() {
        let s = spec(RebalanceMode::Rebalance, &[]);
        let mut f = facts(0);
        f.stop = true;
        assert_eq!(next("r", &s, &running(), None, &f), Next::Stop);
        let st = status_of(next("r", &s, &KafkaRebalanceStatus::default(), None, &f));
        assert_eq!(st.state, Some(RebalanceState::Stopped));
        let stopped = status_of(outcome(
            "r",
            &s,
            &running(),
            None,
            Answer::Stopped(Ok(())),
            t(1),
        ));
        assert_eq!(stopped.state, Some(RebalanceState::Stopped));
    }
}
