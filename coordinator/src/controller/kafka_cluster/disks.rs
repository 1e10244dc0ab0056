//! Disks, pure: a disk added to a broker's `storageConfigs` is mounted by a safe
//! rolling restart and then balanced onto (a `KafkaRebalance` with `rebalanceDisk`);
//! a disk removed from it stays mounted, and in the broker's `log.dirs`, until its own
//! agent reports that its log dir holds no replica, and only then is the broker
//! restarted without it. Rules:
//! - the disks a broker was last built with are recorded in its status
//!   (`brokersState[].storageConfigs`); one recorded but gone from the spec is being
//!   removed, one in the spec but not recorded is being added;
//! - a removed disk leaves the broker's desired Pod and config only in a pass whose
//!   fresh report shows its log dir empty: if replicas land on it again before the
//!   restart, it goes back in and is emptied again;
//! - with Cruise Control, `remove_disks` (a `KafkaRebalance` in mode `RemoveDisks`)
//!   moves its replicas to the broker's other disks; without it, the removal is
//!   blocked and the partitions it holds are named;
//! - a removed disk is forgotten once the broker's Pod no longer mounts it; its PVC is
//!   deleted then only under `pvcDeletionPolicy: Delete`;
//! - what cannot be read (the agent does not answer, its Pod is down, the log dir is
//!   missing from its report) keeps the disk: nothing is unmounted on a guess.

use std::{
    borrow::Cow,
    collections::{BTreeMap, BTreeSet},
};

use super::{
    build::{self, ClusterMeta},
    dereference::{Kind, ObjectKey, Observed},
    scaling::{owned_rebalance, rebalance_spec},
    validate::{ValidatedBroker, ValidatedCluster},
};
use crate::{
    controller::resource_status::Note,
    crd::v1alpha1::{
        BrokerDisk, DiskChange, DiskChangeKind, DiskState, KafkaClusterStatus, KafkaRebalance,
        PvcDeletionPolicy, RebalanceMode, RebalanceState, StorageConfig,
    },
};

/// What the disk step decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Disks proven empty, by broker: left out of the broker's desired Pod and config.
    pub unmount: BTreeMap<i32, BTreeSet<String>>,
    /// Disks the broker's Pod no longer mounts, by broker: out of its record.
    pub forget: BTreeMap<i32, BTreeSet<String>>,
    /// KafkaRebalances to create.
    pub rebalances: Vec<KafkaRebalance>,
    /// Objects to delete: finished KafkaRebalances to be asked again, PVCs of forgotten
    /// disks under `pvcDeletionPolicy: Delete`.
    pub delete: Vec<ObjectKey>,
    /// Unfinished KafkaRebalances whose every disk was shown empty: done (name, what
    /// was shown).
    pub goals_reached: Vec<(String, String)>,
    /// Disk changes still under way (the `scaling.disks` status).
    pub changes: Vec<DiskChange>,
    /// Events.
    pub notes: Vec<Note>,
    /// Why disk changes are blocked, one line per disk (the `DiskChangeBlocked`
    /// condition).
    pub blocked: Vec<String>,
}

impl Outcome {
    fn leaves(&self, id: i32, mount_path: &str, of: &BTreeMap<i32, BTreeSet<String>>) -> bool {
        of.get(&id).is_some_and(|m| m.contains(mount_path))
    }

    /// Broker `b` as this pass builds it: without the disks proven empty or forgotten.
    pub fn as_built<'a>(&self, b: &'a ValidatedBroker) -> Cow<'a, ValidatedBroker> {
        let gone =
            |m: &str| self.leaves(b.id, m, &self.unmount) || self.leaves(b.id, m, &self.forget);
        if !b.storage.iter().any(|s| gone(&s.mount_path)) {
            return Cow::Borrowed(b);
        }
        let mut without = b.clone();
        without.storage.retain(|s| !gone(&s.mount_path));
        Cow::Owned(without)
    }

    /// The disks to record for broker `b` (its status `storageConfigs`): all it has
    /// but the forgotten ones.
    pub fn record(&self, b: &ValidatedBroker) -> Vec<StorageConfig> {
        b.storage
            .iter()
            .filter(|s| !self.leaves(b.id, &s.mount_path, &self.forget))
            .cloned()
            .collect()
    }
}

/// Kafka's log dir on the disk mounted at `mount_path`.
pub fn log_dir(mount_path: &str) -> String {
    format!("{}/kafka", mount_path.trim_end_matches('/'))
}

/// `<cluster>-remove-disks-<id>`: empties broker `id`'s removed disks.
pub fn remove_disks_name(meta: &ClusterMeta, id: i32) -> String {
    format!("{}-remove-disks-{id}", meta.name)
}

/// `<cluster>-rebalance-disks-<id>`: balances onto broker `id`'s added disks.
pub fn rebalance_disks_name(meta: &ClusterMeta, id: i32) -> String {
    format!("{}-rebalance-disks-{id}", meta.name)
}

/// The cluster with every disk a broker still has but its spec no longer names put
/// back into its storage (and listed in `removing_disks`), from the record in status.
pub fn in_force(mut cluster: ValidatedCluster, previous: &KafkaClusterStatus) -> ValidatedCluster {
    for b in cluster.brokers.values_mut().filter(|b| !b.draining) {
        let Some(record) = previous.brokers_state.get(&b.id.to_string()) else {
            continue;
        };
        for s in &record.storage_configs {
            if !b.storage.iter().any(|d| d.mount_path == s.mount_path) {
                b.storage.push(s.clone());
                b.removing_disks.insert(s.mount_path.clone());
            }
        }
    }
    cluster
}

fn previous_change<'a>(
    observed: &'a Observed,
    broker: i32,
    mount_path: &str,
    change: DiskChangeKind,
) -> Option<&'a DiskChange> {
    observed.previous.scaling.as_ref().and_then(|s| {
        s.disks
            .iter()
            .find(|d| d.broker == broker && d.mount_path == mount_path && d.change == change)
    })
}

fn finished(state: RebalanceState) -> bool {
    matches!(
        state,
        RebalanceState::Completed | RebalanceState::Failed | RebalanceState::Stopped
    )
}

/// A log dir's replicas in words: `3 partition(s) (t-0, t-1, t-2)`.
fn in_words(partitions: u32, listed: &[String]) -> String {
    let shown: Vec<&str> = listed.iter().take(5).map(String::as_str).collect();
    let more = (partitions as usize).saturating_sub(shown.len());
    format!(
        "{partitions} partition(s) ({}{})",
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}

/// Where one removed disk is.
enum Removal {
    /// The Pod no longer mounts it: done.
    Gone,
    /// Its log dir holds nothing: leave it out of the desired Pod and config.
    Empty,
    /// Its log dir holds replicas: move them.
    Holds(String),
    /// Cannot tell: keep it, saying why.
    Unknown(String),
}

fn removal(observed: &Observed, id: i32, mount_path: &str, before: Option<&DiskChange>) -> Removal {
    // Proven empty and its broker since stopped for the restart without it: a stopped
    // broker takes no new replica, so the decision stands until its Pod is back.
    let unmounting = before.is_some_and(|b| b.state == DiskState::Unmounting);
    if unmounting && observed.pods.get(&id).is_none_or(|p| !p.running()) {
        return Removal::Empty;
    }
    let Some(pod) = observed.pods.get(&id) else {
        return Removal::Unknown(
            "cannot confirm that it is empty: the broker's Pod does not exist (it is recreated with the disk)".into(),
        );
    };
    if !pod.mount_paths.contains(mount_path) && !pod.terminating {
        return Removal::Gone;
    }
    let dir = log_dir(mount_path);
    match observed.replicas.get(&id) {
        None => Removal::Unknown("cannot confirm that it is empty: its agent was not asked".into()),
        Some(Err(why)) => Removal::Unknown(format!("cannot confirm that it is empty: {why}")),
        Some(Ok(r)) if !r.unreadable.is_empty() => Removal::Unknown(format!(
            "cannot confirm that it is empty: its agent could not read {}",
            r.unreadable.join("; ")
        )),
        Some(Ok(r)) => match r.log_dirs.iter().find(|d| d.path == dir) {
            None => Removal::Unknown(format!(
                "cannot confirm that it is empty: the broker does not report log dir {dir} (offline?)"
            )),
            Some(d) if d.partitions == 0 => Removal::Empty,
            Some(d) => Removal::Holds(in_words(d.partitions, &d.listed)),
        },
    }
}

/// The disk step of one pass.
pub fn step(meta: &ClusterMeta, cluster: &ValidatedCluster, observed: &Observed) -> Outcome {
    let mut out = Outcome::default();
    let has_cc = cluster.cruise_control.is_some();
    let now = &observed.now;
    for b in cluster.brokers.values().filter(|b| !b.draining) {
        removing(
            meta,
            cluster,
            observed,
            b.id,
            &b.removing_disks,
            has_cc,
            &mut out,
        );
        let recorded: Option<BTreeSet<&str>> = observed
            .previous
            .brokers_state
            .get(&b.id.to_string())
            .filter(|r| !r.storage_configs.is_empty())
            .map(|r| {
                r.storage_configs
                    .iter()
                    .map(|s| s.mount_path.as_str())
                    .collect()
            });
        let adding: Vec<&str> = b
            .storage
            .iter()
            .map(|s| s.mount_path.as_str())
            .filter(|m| !b.removing_disks.contains(*m))
            .filter(|m| {
                recorded.as_ref().is_some_and(|r| !r.contains(m))
                    || previous_change(observed, b.id, m, DiskChangeKind::Adding).is_some()
            })
            .collect();
        for m in adding {
            adding_disk(meta, cluster, observed, b.id, m, now, &mut out);
        }
    }
    out
}

/// Broker `id`'s removed disks.
fn removing(
    meta: &ClusterMeta,
    cluster: &ValidatedCluster,
    observed: &Observed,
    id: i32,
    disks: &BTreeSet<String>,
    has_cc: bool,
    out: &mut Outcome,
) {
    let mut holding = Vec::new();
    let mut kept = Vec::new();
    for m in disks {
        let before = previous_change(observed, id, m, DiskChangeKind::Removing);
        match removal(observed, id, m, before) {
            Removal::Gone => {
                out.forget.entry(id).or_default().insert(m.clone());
                let pvc = ObjectKey::new(Kind::PersistentVolumeClaim, build::pvc_name(meta, id, m));
                let delete = cluster.pvc_deletion_policy == PvcDeletionPolicy::Delete
                    && observed.existing.contains_key(&pvc);
                out.notes.push(Note::normal(
                    "DiskRemoved",
                    "Scaling",
                    format!(
                        "broker {id} runs without the disk at {m}; {}",
                        if delete {
                            format!(
                                "its PVC {} is deleted (pvcDeletionPolicy: Delete)",
                                pvc.name
                            )
                        } else {
                            "its PVC, if any, is kept (pvcDeletionPolicy: Retain)".to_owned()
                        }
                    ),
                ));
                if delete {
                    out.delete.push(pvc);
                }
            }
            Removal::Empty => {
                out.unmount.entry(id).or_default().insert(m.clone());
                kept.push((
                    m.clone(),
                    DiskState::Unmounting,
                    format!("log dir {} holds no replica; the broker restarts without it (safe rolling restart)", log_dir(m)),
                    before,
                ));
            }
            Removal::Holds(what) => holding.push((m.clone(), what, before)),
            Removal::Unknown(why) => kept.push((m.clone(), DiskState::Draining, why, before)),
        }
    }
    let mut rebalance = None;
    let to_empty: Vec<String> = holding.iter().map(|(m, ..)| m.clone()).collect();
    if holding.is_empty() {
        // Every disk it was emptying shows no replica: its task is done, whatever
        // Cruise Control (lost, restarted) says of it.
        let name = remove_disks_name(meta, id);
        if observed
            .rebalances
            .get(&name)
            .is_some_and(|v| !finished(v.state) && !v.goal_reached)
        {
            out.goals_reached.push((
                name,
                format!(
                    "broker {id}'s agent shows the log dirs of its removed disks hold no replica"
                ),
            ));
        }
    }
    if !holding.is_empty() {
        let name = remove_disks_name(meta, id);
        let view = observed.rebalances.get(&name);
        for (m, what, before) in holding {
            let (state, message) = if !has_cc {
                (
                    DiskState::Blocked,
                    format!(
                        "log dir {} still holds {what}, and without Cruise Control (spec.cruiseControlConfig) Stoker cannot move them; configure Cruise Control, or put {m} back in the broker's storageConfigs",
                        log_dir(&m)
                    ),
                )
            } else {
                rebalance = Some(name.clone());
                match view {
                    None => {
                        if before.is_none() {
                            out.notes.push(Note::normal(
                                "DrainingDisk",
                                "Scaling",
                                format!("the disk at {m} was removed from broker {id}'s storageConfigs; its log dir holds {what}: KafkaRebalance {name} moves them to the broker's other disks before it is unmounted"),
                            ));
                        }
                        (
                            DiskState::Draining,
                            format!(
                                "it holds {what}; KafkaRebalance {name} moves them to the broker's other disks"
                            ),
                        )
                    }
                    Some(v) if v.state == RebalanceState::Completed => {
                        out.delete
                            .push(ObjectKey::new(Kind::KafkaRebalance, name.clone()));
                        (
                            DiskState::Draining,
                            format!(
                                "KafkaRebalance {name} completed but the disk still holds {what}; asking Cruise Control again"
                            ),
                        )
                    }
                    Some(v) if finished(v.state) => (
                        DiskState::Blocked,
                        format!(
                            "KafkaRebalance {name} ended {:?}: {}; the disk still holds {what}. Delete {name} to try again, or put {m} back in the broker's storageConfigs",
                            v.state, v.message
                        ),
                    ),
                    Some(v) => (
                        DiskState::Draining,
                        format!(
                            "it holds {what}; KafkaRebalance {name} is {:?}{}",
                            v.state,
                            if v.message.is_empty() {
                                String::new()
                            } else {
                                format!(": {}", v.message)
                            }
                        ),
                    ),
                }
            };
            kept.push((m, state, message, before));
        }
        if has_cc && view.is_none() {
            let mut spec = rebalance_spec(meta, cluster, RebalanceMode::RemoveDisks);
            spec.disks = to_empty
                .into_iter()
                .map(|mount_path| BrokerDisk {
                    broker: id,
                    mount_path,
                })
                .collect();
            out.rebalances.push(owned_rebalance(meta, name, spec));
        }
    }
    for (m, state, message, before) in kept {
        if state == DiskState::Blocked {
            out.blocked.push(format!("broker {id} disk {m}: {message}"));
            if before.is_none_or(|b| b.message != message) {
                out.notes.push(Note::warning(
                    "DiskChangeBlocked",
                    "Scaling",
                    format!("the disk at {m} of broker {id} is not removed: {message}"),
                ));
            }
        }
        out.changes.push(DiskChange {
            broker: id,
            mount_path: m.clone(),
            change: DiskChangeKind::Removing,
            state,
            message,
            rebalance: (state == DiskState::Draining || state == DiskState::Blocked)
                .then(|| rebalance.clone())
                .flatten(),
            since: before.map_or_else(|| observed.now.clone(), |b| b.since.clone()),
        });
    }
}

/// One added disk of broker `id`.
fn adding_disk(
    meta: &ClusterMeta,
    cluster: &ValidatedCluster,
    observed: &Observed,
    id: i32,
    m: &str,
    now: &str,
    out: &mut Outcome,
) {
    let before = previous_change(observed, id, m, DiskChangeKind::Adding);
    if cluster.cruise_control.is_none() {
        out.notes.push(Note::normal(
            "DiskAdded",
            "Scaling",
            format!("broker {id} gets the disk at {m} by a safe rolling restart; without Cruise Control (spec.cruiseControlConfig) no replicas move onto it, new partitions use it"),
        ));
        return;
    }
    let name = rebalance_disks_name(meta, id);
    let view = observed.rebalances.get(&name);
    let ours = before.is_some_and(|b| b.rebalance.is_some());
    if before.is_none() {
        out.notes.push(Note::normal(
            "DiskAdded",
            "Scaling",
            format!("broker {id} gets the disk at {m} by a safe rolling restart; then KafkaRebalance {name} balances its replicas across its disks"),
        ));
    }
    // A finished KafkaRebalance of an earlier disk is no answer for this one.
    if !ours && view.is_some_and(|v| finished(v.state)) {
        out.delete
            .push(ObjectKey::new(Kind::KafkaRebalance, name.clone()));
    }
    let mounted = observed
        .pods
        .get(&id)
        .is_some_and(|p| p.ready && !p.terminating && p.mount_paths.contains(m));
    let (state, message, rebalance) = match view {
        // Once asked, the KafkaRebalance is followed whatever the Pod does meanwhile.
        _ if !mounted && !ours => (
            DiskState::Mounting,
            "waits for the broker to run with it mounted (safe rolling restart)".to_owned(),
            None,
        ),
        Some(v) if !ours && finished(v.state) => (
            DiskState::Mounting,
            format!("waits for the earlier KafkaRebalance {name} to be gone"),
            None,
        ),
        None => {
            let mut spec = rebalance_spec(meta, cluster, RebalanceMode::Rebalance);
            spec.rebalance_disk = true;
            out.rebalances
                .push(owned_rebalance(meta, name.clone(), spec));
            (
                DiskState::Balancing,
                format!("KafkaRebalance {name} balances replicas onto it"),
                Some(name),
            )
        }
        Some(v) if v.state == RebalanceState::Completed => {
            out.notes.push(Note::normal(
                "DiskBalanced",
                "Scaling",
                format!("the disk at {m} of broker {id} is in use: KafkaRebalance {name} balanced replicas onto it"),
            ));
            return;
        }
        Some(v) if finished(v.state) => {
            out.notes.push(Note::warning(
                "DiskBalanced",
                "Scaling",
                format!("the disk at {m} of broker {id} is mounted, but KafkaRebalance {name} ended {:?}: {}; it holds only new partitions until a rebalance", v.state, v.message),
            ));
            return;
        }
        Some(v) => (
            DiskState::Balancing,
            format!("KafkaRebalance {name} is {:?}", v.state),
            Some(name),
        ),
    };
    out.changes.push(DiskChange {
        broker: id,
        mount_path: m.to_owned(),
        change: DiskChangeKind::Adding,
        state,
        message,
        rebalance,
        since: before.map_or_else(|| now.to_owned(), |b| b.since.clone()),
    });
}
