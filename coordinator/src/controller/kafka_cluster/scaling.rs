//! Scaling, pure: brokers added to `spec.brokers` get partitions moved onto them
//! (a `KafkaRebalance` in mode `AddBrokers`, once they are ready), and brokers removed
//! from it are drained first and deleted only once their own agent reports, from live
//! metadata and their log dirs, that they hold no replica of any topic (internal ones
//! included). Rules:
//! - a removal that would leave fewer brokers than a topic's replication factor (or
//!   than its min.insync.replicas + 1, where that is 2 or more), or that removes a
//!   controller, is refused before anything moves;
//! - without Cruise Control, a broker that holds replicas is never removed: the
//!   refusal names its partitions;
//! - with Cruise Control, a `KafkaRebalance` in mode `RemoveBrokers` moves them; one
//!   that completed while the broker still holds replicas is asked again; one that
//!   failed blocks the removal and says why;
//! - what the agent cannot tell (it does not answer, its Pod is down, a fact is
//!   unreadable) keeps the broker: nothing is deleted on a guess.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use stoker_proto::agent::v1::DescribeReplicasResponse;

use super::{
    build::{ClusterMeta, cluster_labels},
    dereference::{Kind, ObjectKey, Observed, RebalanceView},
    validate::ValidatedCluster,
};
use crate::{
    controller::resource_status::Note,
    crd::v1alpha1::{
        BrokerRemoval, ClusterRef, KafkaRebalance, KafkaRebalanceSpec, RebalanceMode,
        RebalanceState, RemovalState, ScalingStatus,
    },
};

/// How long a finished scaling KafkaRebalance is kept.
pub const REBALANCE_TTL_SECONDS: i64 = 86_400;

/// What the scaling step decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// The scaling status to record (None: nothing scales).
    pub status: Option<ScalingStatus>,
    /// KafkaRebalances to create.
    pub rebalances: Vec<KafkaRebalance>,
    /// KafkaRebalances to delete (finished ones to be asked again).
    pub delete: Vec<ObjectKey>,
    /// Draining brokers proven empty: remove them now.
    pub remove: Vec<i32>,
    /// Their unfinished KafkaRebalances: done (name, what was shown).
    pub goals_reached: Vec<(String, String)>,
    /// Events.
    pub notes: Vec<Note>,
    /// Why removals are blocked, one line per broker (the `ScaleDownBlocked` condition).
    pub blocked: Vec<String>,
}

/// `<cluster>-add-<id>` / `<cluster>-remove-<id>`.
pub fn rebalance_name(meta: &ClusterMeta, mode: RebalanceMode, id: i32) -> String {
    let verb = match mode {
        RebalanceMode::AddBrokers => "add",
        RebalanceMode::RemoveBrokers => "remove",
        RebalanceMode::RemoveDisks => "remove-disks",
        RebalanceMode::Rebalance => "rebalance",
    };
    format!("{}-{verb}-{id}", meta.name)
}

/// The KafkaRebalance `name` of the cluster for `spec` (owned by the cluster, kept for
/// [`REBALANCE_TTL_SECONDS`] after it ends).
pub fn owned_rebalance(
    meta: &ClusterMeta,
    name: String,
    spec: KafkaRebalanceSpec,
) -> KafkaRebalance {
    KafkaRebalance {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(meta.namespace.clone()),
            labels: Some(cluster_labels(meta)),
            owner_references: Some(vec![meta.owner.clone()]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

/// A spec for `mode` with nothing else set but the cluster and the TTL.
pub fn rebalance_spec(
    meta: &ClusterMeta,
    cluster: &ValidatedCluster,
    mode: RebalanceMode,
) -> KafkaRebalanceSpec {
    // Cruise Control's remove_disks moves within a broker and takes no throttle.
    let replication_throttle = cluster
        .cruise_control
        .as_ref()
        .and_then(|cc| cc.replication_throttle)
        .filter(|_| mode != RebalanceMode::RemoveDisks);
    KafkaRebalanceSpec {
        cluster_ref: ClusterRef {
            name: meta.name.clone(),
            namespace: None,
        },
        mode,
        brokers: Vec::new(),
        disks: Vec::new(),
        rebalance_disk: false,
        goals: Vec::new(),
        skip_hard_goal_check: false,
        replication_throttle,
        concurrent_partition_movements_per_broker: None,
        stop: false,
        max_attempts: None,
        ttl_seconds_after_finished: Some(REBALANCE_TTL_SECONDS),
    }
}

fn rebalance(
    meta: &ClusterMeta,
    cluster: &ValidatedCluster,
    mode: RebalanceMode,
    id: i32,
) -> KafkaRebalance {
    let mut spec = rebalance_spec(meta, cluster, mode);
    spec.brokers = vec![id];
    owned_rebalance(meta, rebalance_name(meta, mode, id), spec)
}

/// The partitions a report says the broker holds, in words; None when it holds none.
fn holdings(r: &DescribeReplicasResponse) -> Option<String> {
    let hosted: u32 = r.log_dirs.iter().map(|d| d.partitions).sum();
    if r.assigned_count == 0 && hosted == 0 {
        return None;
    }
    let mut named: Vec<String> = r.assigned.clone();
    for d in &r.log_dirs {
        for p in &d.listed {
            if !named.contains(p) {
                named.push(p.clone());
            }
        }
    }
    let shown: Vec<&str> = named.iter().take(5).map(String::as_str).collect();
    let more = named.len().saturating_sub(shown.len());
    Some(format!(
        "{} partition(s) assigned and {hosted} replica(s) on disk ({}{})",
        r.assigned_count,
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    ))
}

/// Why a draining broker stays, for now.
struct Keep {
    state: RemovalState,
    message: String,
    rebalance: Option<String>,
}

impl Keep {
    fn blocked(message: String) -> Option<Self> {
        Some(Self {
            state: RemovalState::Blocked,
            message,
            rebalance: None,
        })
    }

    fn draining(message: String) -> Self {
        Self {
            state: RemovalState::Draining,
            message,
            rebalance: None,
        }
    }

    fn with(mut self, rebalance: String) -> Self {
        self.rebalance = Some(rebalance);
        self
    }
}

/// The fewest brokers the cluster's topics need, and why, from an agent's report (an
/// agent that does not say gives the largest replication factor alone).
fn needed(report: &DescribeReplicasResponse) -> (usize, String) {
    let rf = (
        usize::try_from(report.max_replication_factor).unwrap_or(0),
        format!(
            "topic {} has replication factor {}",
            report.max_replication_factor_topic, report.max_replication_factor
        ),
    );
    let stated = (
        usize::try_from(report.brokers_needed).unwrap_or(0),
        report.brokers_needed_reason.clone(),
    );
    if stated.0 > rf.0 { stated } else { rf }
}

/// A draining broker's next step from what its agent reported: None when it is empty
/// and may go.
#[allow(clippy::too_many_arguments)]
fn drain(
    meta: &ClusterMeta,
    cluster: &ValidatedCluster,
    id: i32,
    report: &DescribeReplicasResponse,
    brokers_after: usize,
    observed: &Observed,
    new: bool,
    out: &mut Outcome,
) -> Option<Keep> {
    if !report.unreadable.is_empty() {
        return Some(Keep::draining(format!(
            "cannot confirm that it holds no replica: its agent could not read {}",
            report.unreadable.join("; ")
        )));
    }
    let held = holdings(report)?;
    let (needed, why) = needed(report);
    if needed > brokers_after {
        return Keep::blocked(format!(
            "removing it leaves {brokers_after} broker(s), but {why}; put the broker back in spec.brokers, or lower that topic's replication factor or min.insync.replicas"
        ));
    }
    if cluster.cruise_control.is_none() {
        return Keep::blocked(format!(
            "it still holds {held}, and without Cruise Control (spec.cruiseControlConfig) Stoker cannot move them; configure Cruise Control, or put broker {id} back in spec.brokers"
        ));
    }
    let name = rebalance_name(meta, RebalanceMode::RemoveBrokers, id);
    Some(match observed.rebalances.get(&name) {
        None => {
            out.rebalances
                .push(rebalance(meta, cluster, RebalanceMode::RemoveBrokers, id));
            if new {
                out.notes.push(Note::normal(
                    "DrainingBroker",
                    "Scaling",
                    format!("broker {id} was removed from spec.brokers; it holds {held}: KafkaRebalance {name} moves them off before it goes"),
                ));
            }
            Keep::draining(format!(
                "it holds {held}; KafkaRebalance {name} moves them off"
            ))
            .with(name)
        }
        Some(v) if v.state == RebalanceState::Completed => {
            // Done, yet replicas remain (created meanwhile, or the metadata lags): ask again.
            out.delete
                .push(ObjectKey::new(Kind::KafkaRebalance, name.clone()));
            Keep::draining(format!(
                "KafkaRebalance {name} completed but it still holds {held}; asking Cruise Control again"
            ))
            .with(name)
        }
        Some(v) if matches!(v.state, RebalanceState::Failed | RebalanceState::Stopped) => {
            let mut keep = Keep::blocked(format!(
                "KafkaRebalance {name} ended {:?}: {}; it still holds {held}. Delete {name} to try again, or put broker {id} back in spec.brokers",
                v.state, v.message
            ))
            .expect("blocked is Some");
            keep.rebalance = Some(name);
            keep
        }
        Some(v) => Keep::draining(format!(
            "it holds {held}; KafkaRebalance {name} is {:?}{}",
            v.state,
            if v.message.is_empty() {
                String::new()
            } else {
                format!(": {}", v.message)
            }
        ))
        .with(name),
    })
}

/// The scaling step of one pass. `ready` says which brokers are ready (Pod and agent).
pub fn step(
    meta: &ClusterMeta,
    cluster: &ValidatedCluster,
    observed: &Observed,
    ready: &BTreeMap<i32, bool>,
    first_pass: bool,
) -> Outcome {
    let mut out = Outcome::default();
    let previous = observed.previous.scaling.clone().unwrap_or_default();
    let now = &observed.now;
    let has_cc = cluster.cruise_control.is_some();
    let rebalance_of = |mode: RebalanceMode, id: i32| -> (String, Option<&RebalanceView>) {
        let name = rebalance_name(meta, mode, id);
        let view = observed.rebalances.get(&name);
        (name, view)
    };

    // Brokers joining: new ids of a cluster that already ran.
    let mut adding: BTreeSet<i32> = previous.adding.iter().copied().collect();
    if !first_pass {
        adding.extend(
            cluster
                .brokers
                .values()
                .filter(|b| b.roles.broker && !b.draining)
                .filter(|b| {
                    !observed
                        .previous
                        .brokers_state
                        .contains_key(&b.id.to_string())
                })
                .map(|b| b.id),
        );
    }
    adding.retain(|id| cluster.brokers.get(id).is_some_and(|b| !b.draining));
    let mut still_adding = Vec::new();
    for id in adding {
        if !has_cc {
            out.notes.push(Note::normal(
                "BrokerAdded",
                "Scaling",
                format!("broker {id} joined; without Cruise Control (spec.cruiseControlConfig) no partitions move onto it, new topics use it"),
            ));
            continue;
        }
        let (name, view) = rebalance_of(RebalanceMode::AddBrokers, id);
        match view.map(|v| v.state) {
            None if ready.get(&id).copied().unwrap_or(false) => {
                out.rebalances
                    .push(rebalance(meta, cluster, RebalanceMode::AddBrokers, id));
                still_adding.push(id);
            }
            None => still_adding.push(id),
            Some(RebalanceState::Completed) => out.notes.push(Note::normal(
                "BrokerAdded",
                "Scaling",
                format!("broker {id} joined and KafkaRebalance {name} moved partitions onto it"),
            )),
            Some(s @ (RebalanceState::Failed | RebalanceState::Stopped)) => {
                out.notes.push(Note::warning(
                    "BrokerAdded",
                    "Scaling",
                    format!(
                        "broker {id} joined but KafkaRebalance {name} ended {s:?}: {}; it holds only new partitions until a rebalance",
                        view.map(|v| v.message.clone()).unwrap_or_default()
                    ),
                ));
            }
            Some(_) => still_adding.push(id),
        }
    }

    // Brokers leaving.
    let brokers_after: usize = cluster
        .brokers
        .values()
        .filter(|b| b.roles.broker && !b.draining)
        .count();
    let mut removing = Vec::new();
    for &id in &observed.draining {
        let before = previous.removing.iter().find(|r| r.broker == id);
        let controller = cluster.brokers.get(&id).is_some_and(|b| b.roles.controller);
        let decision = if controller {
            Keep::blocked(format!(
                "it is a KRaft controller, and Stoker does not change the quorum's voters; put broker {id} back in spec.brokers"
            ))
        } else {
            match observed.replicas.get(&id) {
                Some(Ok(report)) => drain(
                    meta,
                    cluster,
                    id,
                    report,
                    brokers_after,
                    observed,
                    before.is_none(),
                    &mut out,
                ),
                Some(Err(why)) => Some(Keep::draining(format!(
                    "cannot confirm that it holds no replica: {why}; it is kept until its agent can tell"
                ))),
                None => Some(Keep::draining(
                    "cannot confirm that it holds no replica: its agent was not asked".into(),
                )),
            }
        };
        let Some(keep) = decision else {
            out.remove.push(id);
            let (name, view) = rebalance_of(RebalanceMode::RemoveBrokers, id);
            if view.is_some_and(|v| !v.state.finished() && !v.goal_reached) {
                out.goals_reached.push((
                    name,
                    format!("broker {id} holds no replica of any topic (its agent read the metadata and its log dirs)"),
                ));
            }
            continue;
        };
        if keep.state == RemovalState::Blocked {
            out.blocked.push(format!("broker {id}: {}", keep.message));
            if before.is_none_or(|b| b.message != keep.message) {
                out.notes.push(Note::warning(
                    "ScaleDownBlocked",
                    "Scaling",
                    format!("broker {id} is not removed: {}", keep.message),
                ));
            }
        }
        removing.push(BrokerRemoval {
            broker: id,
            state: keep.state,
            message: keep.message,
            rebalance: keep.rebalance,
            since: before.map_or_else(|| now.clone(), |r| r.since.clone()),
        });
    }
    for id in &out.remove {
        out.notes.push(Note::normal(
            "BrokerRemoved",
            "Removing",
            format!(
                "broker {id} holds no replica of any topic (its agent read the metadata and its log dirs): its Pod, ConfigMap and Service are deleted; {}",
                if cluster.pvc_deletion_policy == crate::crd::v1alpha1::PvcDeletionPolicy::Retain {
                    "its PersistentVolumeClaims are kept (pvcDeletionPolicy: Retain)"
                } else {
                    "its PersistentVolumeClaims are deleted (pvcDeletionPolicy: Delete)"
                }
            ),
        ));
    }
    let status = ScalingStatus {
        adding: still_adding,
        removing,
        disks: Vec::new(),
    };
    out.status = (!status.adding.is_empty() || !status.removing.is_empty()).then_some(status);
    out
}
