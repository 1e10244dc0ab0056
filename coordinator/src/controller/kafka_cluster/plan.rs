//! Plan: one pure function from the validated spec and what the pass observed to
//! everything the pass will do — the objects to write and delete, the agents to
//! reconfigure, the Pods the roll restarts, the Events, the whole status and when to
//! look again. When the roll needs an agent's `SafeToStop` answer to decide, the plan
//! carries that question instead; the reconcile asks and plans again with the answer.
//!
//! Rules (each has a test below, and `docs/kafkacluster.md` says them in prose):
//! - the KRaft cluster id is recorded in status before anything uses it;
//! - every object is built, stamped with the hash of its content, and written only when
//!   the live object's hash differs; Pods are only created, never changed; PVCs are
//!   created, and then only grown, following [`claims::step`] (a claim whose filesystem
//!   grows on restart marks its broker with restart cause `FilesystemResize`);
//! - a Pod whose template differs marks its broker with restart cause `PodTemplate`;
//! - an agent whose config in force is not the desired one is sent `Reconfigure`,
//!   unless it already waits for a restart with exactly that config (its static keys
//!   are then the broker's restart cause `StaticConfig`);
//! - a broker gone from the spec loses its Pod, ConfigMap and Service, and its PVCs
//!   only under `pvcDeletionPolicy: Delete` (scaling follows [`scaling::step`]);
//! - a broker's disks follow [`disks::step`]: one removed from the spec is built in
//!   until proven empty;
//! - the roll follows [`roll::step`].

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use k8s_openapi::api::{
    apps::v1::Deployment,
    coordination::v1::Lease,
    core::v1::{ConfigMap, ObjectReference, PersistentVolumeClaim, Pod, Service, ServiceAccount},
    policy::v1::PodDisruptionBudget,
    rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
};
use kube::ResourceExt;
use stoker_proto::agent::v1::DesiredConfig;

use super::{
    build::{self, ClusterMeta},
    claims,
    dereference::{AgentReport, CruiseControlView, Existing, Kind, ObjectKey, Observed},
    disks,
    roll::{self, BrokerView, PodState, StopQuestion},
    scaling,
    status::{self, AgentFacts, BrokerFacts},
    validate::{AccessMethod, InvalidSpec, ValidatedCluster},
};
use crate::{
    controller::resource_status::Note,
    crd::v1alpha1::{
        CruiseControlStatus, KafkaClusterStatus, KafkaRebalance, PvcDeletionPolicy, RestartCause,
        RestartCauseKind,
    },
};

/// How soon a pass looks again while a roll is under way.
pub const ROLL_REQUEUE: Duration = Duration::from_secs(3);
/// How soon a pass looks again after reconfiguring agents (to read what waits for a
/// restart).
pub const RECONFIGURE_REQUEUE: Duration = Duration::from_secs(2);
/// How soon a pass looks again after recording a new cluster id.
pub const INIT_REQUEUE: Duration = Duration::from_secs(1);
/// How often a settled cluster is looked at again (agents' reports, drift).
pub const RESYNC: Duration = Duration::from_secs(300);
/// How soon a pass looks again while brokers join or leave.
pub const SCALING_REQUEUE: Duration = Duration::from_secs(10);
/// Condition type: a broker removed from the spec cannot be removed as things are.
pub const SCALE_DOWN_BLOCKED: &str = "ScaleDownBlocked";
/// Condition type: a disk removed from a broker's storage cannot be removed as things are.
pub const DISK_CHANGE_BLOCKED: &str = "DiskChangeBlocked";
/// Condition type: a broker's claim cannot be changed as the spec asks.
pub const STORAGE_CHANGE_BLOCKED: &str = "StorageChangeBlocked";
/// Condition: a broker waits for an external address (a load balancer has none yet).
pub const EXTERNAL_ACCESS_PENDING: &str = "ExternalAccessPending";

/// An object to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// A ServiceAccount (created only when missing: a user may own it).
    ServiceAccount(ServiceAccount),
    /// The agents' ClusterRole.
    ClusterRole(ClusterRole),
    /// The cluster's ClusterRoleBinding.
    ClusterRoleBinding(ClusterRoleBinding),
    /// The agents' Role in the cluster's namespace (its stop Lease).
    Role(Role),
    /// Its RoleBinding.
    RoleBinding(RoleBinding),
    /// The cluster's stop Lease (created only: the agents hold and renew it).
    Lease(Lease),
    /// A Service.
    Service(Service),
    /// A broker's ConfigMap.
    ConfigMap(ConfigMap),
    /// A broker's PVC (created only: it holds data).
    PersistentVolumeClaim(PersistentVolumeClaim),
    /// A broker's Pod (created only: a changed template waits for a restart).
    Pod(Box<Pod>),
    /// The PodDisruptionBudget.
    PodDisruptionBudget(PodDisruptionBudget),
    /// Cruise Control's Deployment.
    Deployment(Box<Deployment>),
    /// A KafkaRebalance for scaling (created only: it is a record of one task).
    KafkaRebalance(Box<KafkaRebalance>),
}

impl Object {
    /// Its kind and name.
    pub fn key(&self) -> ObjectKey {
        let (kind, name) = match self {
            Self::ServiceAccount(o) => (Kind::ServiceAccount, o.name_any()),
            Self::ClusterRole(o) => (Kind::ClusterRole, o.name_any()),
            Self::ClusterRoleBinding(o) => (Kind::ClusterRoleBinding, o.name_any()),
            Self::Role(o) => (Kind::Role, o.name_any()),
            Self::RoleBinding(o) => (Kind::RoleBinding, o.name_any()),
            Self::Lease(o) => (Kind::Lease, o.name_any()),
            Self::Service(o) => (Kind::Service, o.name_any()),
            Self::ConfigMap(o) => (Kind::ConfigMap, o.name_any()),
            Self::PersistentVolumeClaim(o) => (Kind::PersistentVolumeClaim, o.name_any()),
            Self::Pod(o) => (Kind::Pod, o.name_any()),
            Self::PodDisruptionBudget(o) => (Kind::PodDisruptionBudget, o.name_any()),
            Self::Deployment(o) => (Kind::Deployment, o.name_any()),
            Self::KafkaRebalance(o) => (Kind::KafkaRebalance, o.name_any()),
        };
        ObjectKey::new(kind, name)
    }

    /// True for kinds only ever created, never changed.
    pub fn create_only(&self) -> bool {
        matches!(
            self,
            Self::ServiceAccount(_)
                | Self::Lease(_)
                | Self::PersistentVolumeClaim(_)
                | Self::Pod(_)
                | Self::KafkaRebalance(_)
        )
    }
}

/// One write: the object, stamped with its hash, and what exists of it now.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// The object.
    pub object: Object,
    /// The live object, if the store has one.
    pub existing: Option<Existing>,
}

/// A broker gone from the spec: what to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// Its id.
    pub broker: i32,
    /// Its objects that exist.
    pub delete: Vec<ObjectKey>,
    /// True when its PVCs are kept (`pvcDeletionPolicy: Retain`).
    pub pvcs_kept: bool,
}

/// A desired config to send to a broker's agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconfigure {
    /// The broker.
    pub broker: i32,
    /// Its agent's gRPC address.
    pub addr: String,
    /// The desired config.
    pub desired: DesiredConfig,
    /// The broker's Pod (the related object of its Events).
    pub pod: ObjectReference,
}

/// A broker Pod the roll deletes now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    /// The broker.
    pub broker: i32,
    /// Its Pod.
    pub pod: String,
}

/// Everything one pass does.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The status to record (written only when it differs from the previous one).
    pub status: KafkaClusterStatus,
    /// The agents' mTLS material to issue (before any Pod that mounts it).
    pub agent_tls: build::certificates::TlsPlan,
    /// The client listeners' TLS material to issue (likewise).
    pub listener_tls: build::certificates::TlsPlan,
    /// Objects to write, in order: accounts and RBAC, Services (brokers advertise and
    /// find the voters through their names), then each broker's ConfigMap, PVCs and
    /// Pod, then the PodDisruptionBudget.
    pub writes: Vec<Write>,
    /// Brokers to remove.
    pub removals: Vec<Removal>,
    /// Other objects to delete (finished KafkaRebalances to be asked again).
    pub deletes: Vec<ObjectKey>,
    /// Unfinished KafkaRebalances whose broker or disk was shown empty by its agent:
    /// marked done (name, what was shown).
    pub goals_reached: Vec<(String, String)>,
    /// Claims to grow.
    pub resizes: Vec<claims::Resize>,
    /// Agents to send their broker's desired config.
    pub reconfigure: Vec<Reconfigure>,
    /// Pods to delete for the roll (after their agents said stopping is safe).
    pub restarts: Vec<Restart>,
    /// Events of the decisions, in order.
    pub events: Vec<Note>,
    /// A `SafeToStop` question to answer before this plan may be carried out.
    pub question: Option<StopQuestion>,
    /// When to look again.
    pub requeue: Duration,
}

impl Plan {
    fn only_status(status: KafkaClusterStatus, events: Vec<Note>, requeue: Duration) -> Self {
        Self {
            status,
            agent_tls: build::certificates::TlsPlan::default(),
            listener_tls: build::certificates::TlsPlan::default(),
            writes: Vec::new(),
            removals: Vec::new(),
            deletes: Vec::new(),
            goals_reached: Vec::new(),
            resizes: Vec::new(),
            reconfigure: Vec::new(),
            restarts: Vec::new(),
            events,
            question: None,
            requeue,
        }
    }
}

/// The plan for a spec that failed validation: only the `Invalid` condition (and a
/// Warning Event the first time this message is seen); nothing is written or deleted.
pub fn invalid(
    err: &InvalidSpec,
    previous: &KafkaClusterStatus,
    generation: Option<i64>,
    now: &str,
) -> Plan {
    let already = previous.conditions.iter().any(|c| {
        c.type_ == crate::controller::conditions::INVALID
            && c.status == "True"
            && c.message == err.message
    });
    let events = if already {
        Vec::new()
    } else {
        vec![Note::warning(err.reason, "Validating", err.message.clone())]
    };
    Plan::only_status(
        status::invalid_status(previous, err, generation, now),
        events,
        RESYNC,
    )
}

/// The object reference of broker `id`'s Pod (the related object of its Events).
pub fn broker_pod_ref(meta: &ClusterMeta, id: i32) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(build::broker_name(meta, id)),
        namespace: Some(meta.namespace.clone()),
        ..ObjectReference::default()
    }
}

/// Collects writes in order, each only when the live object differs.
struct Writes<'a> {
    observed: &'a Observed,
    out: Vec<Write>,
}

impl Writes<'_> {
    /// Adds `object` unless the live one has its hash (or, for create-only kinds,
    /// exists at all). Returns whether a create-only object exists with other content.
    fn add(&mut self, object: Object, hash: &str) -> bool {
        let existing = self.observed.existing.get(&object.key()).cloned();
        let differs = match &existing {
            None => true,
            Some(e) if object.create_only() => {
                return e.hash.is_some() && e.hash.as_deref() != Some(hash);
            }
            Some(e) => e.hash.as_deref() != Some(hash),
        };
        if differs {
            self.out.push(Write { object, existing });
        }
        false
    }
}

macro_rules! stamp {
    ($writes:expr, $variant:ident, $obj:expr) => {{
        let (obj, hash) = build::stamped($obj);
        $writes.add(Object::$variant(obj), &hash)
    }};
}

/// What causes broker `id` to wait for a restart.
fn restart_causes(
    observed: &Observed,
    id: i32,
    desired_hash: &str,
    template_differs: bool,
    growing_filesystems: Option<&Vec<String>>,
) -> Vec<RestartCause> {
    let mut causes = Vec::new();
    let pending_keys = match observed.agents.get(&id) {
        Some(AgentReport::Status(s)) => (s.config_hash_in_force != desired_hash
            && s.pending_config_hash == desired_hash
            && !s.restart_needed_keys.is_empty())
        .then(|| s.restart_needed_keys.clone()),
        // No fresh report: what the agent said last about this same desired config
        // holds until the broker runs it.
        _ => observed
            .previous
            .brokers_state
            .get(&id.to_string())
            .filter(|b| b.desired_config_hash.as_deref() == Some(desired_hash))
            .and_then(|b| {
                b.restart_causes
                    .iter()
                    .find(|c| c.kind == RestartCauseKind::StaticConfig)
                    .map(|c| c.keys.clone())
            }),
    };
    if let Some(keys) = pending_keys {
        causes.push(RestartCause {
            kind: RestartCauseKind::StaticConfig,
            keys,
        });
    }
    if template_differs {
        causes.push(RestartCause {
            kind: RestartCauseKind::PodTemplate,
            keys: Vec::new(),
        });
    }
    if let Some(claims) = growing_filesystems {
        causes.push(RestartCause {
            kind: RestartCauseKind::FilesystemResize,
            keys: claims.clone(),
        });
    }
    causes
}

fn agent_facts(report: &AgentReport) -> AgentFacts {
    match report {
        AgentReport::Status(s) => AgentFacts::Reported {
            ready: s.ready,
            not_ready_reason: s.not_ready_reason.clone(),
            config_hash_in_force: s.config_hash_in_force.clone(),
            out_of_sync: s.out_of_sync_partitions,
            rack: s.rack.clone(),
        },
        AgentReport::Unreachable(why) => AgentFacts::Unreachable(why.clone()),
    }
}

/// The plan of one pass over a valid spec.
pub fn plan(cluster: &ValidatedCluster, observed: &Observed) -> Plan {
    let id = &observed.identity;
    let previous = &observed.previous;
    // The KRaft cluster id is recorded before any object carries it: a pass that failed
    // after writing ConfigMaps must never lead to a second id for the same storage.
    let Some(cluster_id) = previous.cluster_id.clone() else {
        let mut status = previous.clone();
        status.cluster_id = Some(observed.fresh_cluster_id.clone());
        return Plan::only_status(
            status,
            vec![Note::normal(
                "ClusterIdGenerated",
                "Initializing",
                format!("KRaft cluster id {}", observed.fresh_cluster_id),
            )],
            INIT_REQUEUE,
        );
    };
    let meta = ClusterMeta {
        name: id.name.clone(),
        namespace: id.namespace.clone(),
        owner: id.owner.clone(),
        cluster_id: cluster_id.clone(),
        headless: cluster.headless,
        agent_image: id.agent_image.clone(),
    };

    let mut w = Writes {
        observed,
        out: Vec::new(),
    };
    for sa in build::service_accounts(&meta, cluster) {
        stamp!(w, ServiceAccount, sa);
    }
    stamp!(w, ClusterRole, build::agent_cluster_role());
    stamp!(
        w,
        ClusterRoleBinding,
        build::agent_cluster_role_binding(&meta, cluster)
    );
    // The stop lock, and the agents' right to it, before any Pod that takes it.
    stamp!(w, Lease, build::stop_lease(&meta));
    stamp!(w, Role, build::agent_role(&meta));
    stamp!(w, RoleBinding, build::agent_role_binding(&meta, cluster));
    if meta.headless {
        stamp!(w, Service, build::headless_service(&meta, cluster));
    } else {
        stamp!(w, Service, build::all_broker_service(&meta, cluster));
        for broker in cluster.brokers.keys() {
            stamp!(w, Service, build::broker_service(&meta, cluster, *broker));
        }
    }
    // External access: its Services, and where each broker is reached through them.
    for svc in build::external::services(&meta, cluster) {
        stamp!(w, Service, svc);
    }
    // The single load balancer's proxies, routing to the brokers' Pod IPs.
    let broker_ips: BTreeMap<i32, String> = observed
        .pods
        .iter()
        .filter(|(_, p)| !p.terminating)
        .filter_map(|(id, p)| p.ip.clone().map(|ip| (*id, ip)))
        .collect();
    let mut proxies = BTreeSet::new();
    if let Some(hp) = &cluster.haproxy {
        for e in cluster
            .external_listeners
            .iter()
            .filter(|e| e.access == AccessMethod::Proxy)
        {
            let config = build::haproxy::config(&meta, cluster, e, &broker_ips);
            stamp!(w, ConfigMap, build::haproxy::config_map(&meta, e, config));
            let (d, hash) = build::stamped(build::haproxy::deployment(&meta, e, hp));
            w.add(Object::Deployment(Box::new(d)), &hash);
            proxies.insert(build::haproxy::name(&meta, e));
        }
    }
    let external = build::external::addresses(
        &meta,
        cluster,
        &observed.external,
        previous.listener_statuses.as_ref(),
    );

    stamp!(
        w,
        ConfigMap,
        build::jmx_exporter::config_map(&meta, &cluster.monitoring)
    );
    if let Some(cc) = cluster.cruise_control.as_ref().filter(|cc| cc.deploy) {
        let (cm, cm_hash) = build::stamped(build::cruise_control::config_map(&meta, cluster, cc));
        w.add(Object::ConfigMap(cm), &cm_hash);
        stamp!(w, Service, build::cruise_control::service(&meta));
        let (d, d_hash) = build::stamped(build::cruise_control::deployment(&meta, cc, &cm_hash));
        w.add(Object::Deployment(Box::new(d)), &d_hash);
    }

    // Disks: a removed one stays until it is proven empty.
    let disked = disks::step(&meta, cluster, observed);
    // Claims that exist and that the spec now sizes otherwise.
    let claimed = {
        let desired: Vec<(i32, PersistentVolumeClaim)> = cluster
            .brokers
            .values()
            .flat_map(|b| {
                build::broker_pvcs(&meta, &disked.as_built(b))
                    .into_iter()
                    .map(|p| (b.id, p))
                    .collect::<Vec<_>>()
            })
            .collect();
        let before =
            crate::controller::conditions::find(&previous.conditions, STORAGE_CHANGE_BLOCKED)
                .filter(|c| c.status == "True")
                .map(|c| c.message.as_str())
                .unwrap_or_default();
        claims::step(
            &desired,
            &observed.claims,
            &observed.refused_resizes,
            before,
        )
    };
    let mut events = disked.notes.clone();
    events.extend(claimed.notes.iter().cloned());
    let mut reconfigure = Vec::new();
    let mut facts = BTreeMap::new();
    let mut new_template = Vec::new();
    let mut new_static = Vec::new();
    for b in cluster.brokers.values() {
        let record = disked.record(b);
        let b = &*disked.as_built(b);
        let served = external.listeners.get(&b.id).map_or(&[][..], Vec::as_slice);
        let doc = build::desired_config(&meta, cluster, b, served);
        let desired_hash = stoker_proto::config_hash(&doc);
        let pod = observed.pods.get(&b.id);
        // Kafka takes its advertised addresses only at start: a broker without a Pod
        // waits for its external addresses (a running one keeps what it advertises).
        let waiting = pod.is_none() && external.waiting_for(b.id).is_some();
        if !waiting {
            stamp!(w, ConfigMap, build::desired_config_map(&meta, &doc));
        }
        for pvc in build::broker_pvcs(&meta, b) {
            stamp!(w, PersistentVolumeClaim, pvc);
        }
        // A Pod being deleted is replaced from the current template; it is no cause.
        let (desired_pod, pod_hash) = build::stamped(build::broker_pod(&meta, cluster, b, served));
        let template_differs = !waiting
            && w.add(Object::Pod(Box::new(desired_pod)), &pod_hash)
            && !pod.is_some_and(|p| p.terminating);

        let report = observed.agents.get(&b.id);
        if let (Some(AgentReport::Status(s)), Some(addr)) =
            (report, pod.and_then(|p| p.agent_addr()))
            && s.config_hash_in_force != desired_hash
            && s.pending_config_hash != desired_hash
        {
            reconfigure.push(Reconfigure {
                broker: b.id,
                addr,
                desired: doc.clone(),
                pod: broker_pod_ref(&meta, b.id),
            });
        }
        let causes = restart_causes(
            observed,
            b.id,
            &desired_hash,
            template_differs,
            claimed.restart_for.get(&b.id),
        );
        let before: Vec<RestartCauseKind> = previous
            .brokers_state
            .get(&b.id.to_string())
            .map(|s| s.restart_causes.iter().map(|c| c.kind).collect())
            .unwrap_or_default();
        for c in &causes {
            if !before.contains(&c.kind) {
                match c.kind {
                    RestartCauseKind::PodTemplate => new_template.push(b.id),
                    RestartCauseKind::StaticConfig => {
                        new_static.push((
                            b.id,
                            format!("static config changed ({})", c.keys.join(", ")),
                        ));
                    }
                    RestartCauseKind::FilesystemResize => new_static.push((
                        b.id,
                        format!(
                            "the filesystem of {} grows when its Pod restarts",
                            c.keys.join(", ")
                        ),
                    )),
                }
            }
        }
        facts.insert(
            b.id,
            BrokerFacts {
                pod_phase: pod
                    .and_then(|p| p.phase.clone())
                    .unwrap_or_else(|| if pod.is_some() { "Pending" } else { "Missing" }.into()),
                pod_terminating: pod.is_some_and(|p| p.terminating),
                pod_ready: pod.is_some_and(|p| p.ready),
                agent: report.map(agent_facts),
                desired_config_hash: desired_hash,
                causes,
                restarting: false,
                draining: b.draining,
                last_applied: Some(b.entry.clone()),
                storage_configs: record,
            },
        );
    }
    if let Some(budget) = &cluster.disruption_budget {
        stamp!(
            w,
            PodDisruptionBudget,
            build::pod_disruption_budget(&meta, budget)
        );
    }
    if !new_template.is_empty() {
        events.push(Note::normal(
            "RestartNeeded",
            "Planning",
            format!("broker(s) {new_template:?} need a restart: the Pod's template changed; they keep running until a safe rolling restart replaces them"),
        ));
    }
    for (broker, why) in new_static {
        events.push(
            Note::normal(
                "RestartNeeded",
                "Planning",
                format!("broker {broker} needs a restart: {why}; it keeps running until a safe rolling restart replaces it"),
            )
            .about(broker_pod_ref(&meta, broker)),
        );
    }

    // Scaling: brokers joining get partitions; brokers leaving drain first.
    let ready: BTreeMap<i32, bool> = cluster
        .brokers
        .keys()
        .map(|id| {
            let agent_ready =
                matches!(observed.agents.get(id), Some(AgentReport::Status(s)) if s.ready);
            (
                *id,
                facts.get(id).is_some_and(|f| f.pod_ready) && agent_ready,
            )
        })
        .collect();
    let scaled = scaling::step(
        &meta,
        cluster,
        observed,
        &ready,
        previous.brokers_state.is_empty(),
    );
    for kr in scaled.rebalances.iter().chain(&disked.rebalances) {
        let (kr, hash) = build::stamped(kr.clone());
        w.add(Object::KafkaRebalance(Box::new(kr)), &hash);
    }
    events.extend(scaled.notes.iter().cloned());
    let removals = removals(&meta, cluster, observed, &scaled.remove);

    // The roll.
    let views: Vec<BrokerView> = cluster
        .brokers
        .values()
        .map(|b| {
            let pod = observed.pods.get(&b.id);
            let f = &facts[&b.id];
            let report = match observed.agents.get(&b.id) {
                Some(AgentReport::Status(s)) => Some(s),
                _ => None,
            };
            BrokerView {
                id: b.id,
                broker: b.roles.broker,
                controller: b.roles.controller,
                pod: match pod {
                    None => PodState::Missing,
                    Some(p) if p.terminating => PodState::Terminating,
                    Some(p) if p.phase.as_deref() == Some("Running") => PodState::Running,
                    Some(_) => PodState::Pending,
                },
                ready: f.pod_ready && report.is_some_and(|r| r.ready),
                not_ready_reason: report
                    .map(|r| r.not_ready_reason.clone())
                    .unwrap_or_default(),
                restart_needed: !f.causes.is_empty(),
                out_of_sync: report.map_or(0, |r| r.out_of_sync_partitions),
                // The last rack reported stays known while the broker is down.
                rack: report
                    .map(|r| r.rack.clone())
                    .filter(|r| !r.is_empty())
                    .or_else(|| {
                        previous
                            .brokers_state
                            .get(&b.id.to_string())
                            .and_then(|s| s.rack.clone())
                    }),
                addressable: pod.is_some_and(|p| p.ip.is_some()),
                restart_reason: status::restart_reason(&f.causes).unwrap_or_default(),
            }
        })
        .collect();
    let active_controller = observed
        .agents
        .values()
        .filter_map(|r| match r {
            AgentReport::Status(s) => Some(s.quorum_leader),
            AgentReport::Unreachable(_) => None,
        })
        .find(|l| *l >= 0);
    let limits = roll::Limits {
        failure_threshold: cluster.roll.failure_threshold,
        per_rack: cluster.roll.concurrent_broker_restart_count_per_rack,
    };
    let rolled = roll::step(
        &views,
        previous.rolling_upgrade.as_ref(),
        limits,
        active_controller,
        &observed.verdicts,
        &observed.now,
    );
    if let Some(ru) = &rolled.progress {
        for b in &ru.in_progress {
            if let Some(f) = facts.get_mut(&b.broker) {
                f.restarting = true;
            }
        }
    }
    events.extend(rolled.notes.iter().map(|(broker, note)| match broker {
        Some(b) => note.clone().about(broker_pod_ref(&meta, *b)),
        None => note.clone(),
    }));

    let mut status = status::observed_status(
        previous,
        cluster,
        &cluster_id,
        &facts,
        rolled.rolling,
        id.generation,
        &observed.now,
    );
    status.rolling_upgrade = rolled.progress.clone();
    for id in &scaled.remove {
        status.brokers_state.remove(&id.to_string());
    }
    status.scaling = scaled.status.clone();
    if !disked.changes.is_empty() {
        status
            .scaling
            .get_or_insert_with(Default::default)
            .disks
            .clone_from(&disked.changes);
    }
    status.cruise_control = observed.cruise_control.as_ref().map(cruise_control_status);
    status.listener_statuses = external.status.clone();
    if !cluster.external_listeners.is_empty()
        || crate::controller::conditions::find(&previous.conditions, EXTERNAL_ACCESS_PENDING)
            .is_some()
    {
        let waiting: Vec<String> = external
            .waiting
            .iter()
            .map(|(id, why)| format!("broker {id}: {}", why.join("; ")))
            .collect();
        let (reason, message) = if !waiting.is_empty() {
            (
                "WaitingForAddresses",
                format!(
                    "{}; a broker without a Pod starts once its addresses are known, a running one keeps advertising what it has",
                    waiting.join("; ")
                ),
            )
        } else if cluster.external_listeners.is_empty() {
            ("NoExternalListeners", "no external listener".to_owned())
        } else {
            (
                "AddressesKnown",
                "every broker's external addresses are known (status.listenerStatuses)".to_owned(),
            )
        };
        crate::controller::conditions::set_condition(
            &mut status.conditions,
            EXTERNAL_ACCESS_PENDING,
            !waiting.is_empty(),
            reason,
            &message,
            id.generation,
            &observed.now,
        );
    }
    if !rolled.rolling && status.scaling.is_some() {
        status.state = Some(crate::crd::v1alpha1::ClusterState::Scaling);
    }
    let storage_as_specified = if claimed.growing.is_empty() {
        "every claim is as the spec asks".to_owned()
    } else {
        claimed.growing.join("; ")
    };
    for (type_, reason, nothing, blocked) in [
        (
            SCALE_DOWN_BLOCKED,
            "BrokersHoldReplicas",
            "no removal is blocked",
            &scaled.blocked,
        ),
        (
            DISK_CHANGE_BLOCKED,
            "DisksHoldReplicas",
            "no disk change is blocked",
            &disked.blocked,
        ),
        (
            STORAGE_CHANGE_BLOCKED,
            "ClaimCannotChange",
            storage_as_specified.as_str(),
            &claimed.blocked,
        ),
    ] {
        crate::controller::conditions::set_condition(
            &mut status.conditions,
            type_,
            !blocked.is_empty(),
            if blocked.is_empty() {
                "NothingBlocked"
            } else {
                reason
            },
            &if blocked.is_empty() {
                nothing.to_owned()
            } else {
                blocked.join("; ")
            },
            id.generation,
            &observed.now,
        );
    }
    let requeue = if rolled.rolling {
        ROLL_REQUEUE
    } else if !reconfigure.is_empty() {
        RECONFIGURE_REQUEUE
    } else if status.scaling.is_some() || !scaled.remove.is_empty() || !claimed.growing.is_empty() {
        SCALING_REQUEUE
    } else {
        RESYNC
    };
    let ids: std::collections::BTreeSet<i32> = cluster.brokers.keys().copied().collect();
    Plan {
        status,
        agent_tls: build::certificates::plan(
            &meta,
            &build::certificates::CertificateSet::agents(&meta.name, &meta.namespace),
            &ids,
            &observed.agent_tls,
            observed.now_unix,
        ),
        listener_tls: build::certificates::plan(
            &meta,
            &build::certificates::CertificateSet::of_listeners(
                &meta.name,
                &meta.namespace,
                cluster.listener_tls.as_ref(),
            ),
            // Certificates only for a cluster with TLS listeners; without, those left
            // over are deleted.
            &if cluster.listener_tls.is_some() {
                ids.clone()
            } else {
                Default::default()
            },
            &observed.listener_tls,
            observed.now_unix,
        ),
        writes: w.out,
        removals,
        deletes: scaled
            .delete
            .into_iter()
            .chain(disked.delete)
            .chain(
                build::external::unwanted(&meta, cluster, &observed.external)
                    .into_iter()
                    .map(|n| ObjectKey::new(Kind::Service, n)),
            )
            .chain(
                observed
                    .existing
                    .keys()
                    .filter(|k| matches!(k.kind, Kind::Deployment | Kind::ConfigMap))
                    .filter(|k| {
                        build::haproxy::is_proxy_object(&meta, &k.name)
                            && !proxies.contains(&k.name)
                    })
                    .cloned(),
            )
            .collect(),
        goals_reached: scaled
            .goals_reached
            .into_iter()
            .chain(disked.goals_reached)
            .collect(),
        resizes: claimed.resizes,
        reconfigure,
        restarts: rolled
            .restarts
            .iter()
            .map(|b| Restart {
                broker: *b,
                pod: build::broker_name(&meta, *b),
            })
            .collect(),
        events,
        question: rolled.question,
        requeue,
    }
}

/// What Cruise Control's status says, for the cluster's status.
fn cruise_control_status(cc: &CruiseControlView) -> CruiseControlStatus {
    let mut st = CruiseControlStatus {
        endpoint: cc.endpoint.as_ref().ok().cloned(),
        ..CruiseControlStatus::default()
    };
    match &cc.state {
        Ok(s) => {
            st.monitor_state = Some(s.monitor.state.clone());
            st.monitoring_coverage_pct = Some(s.monitor.monitoring_coverage_pct);
            st.executor_state = Some(s.executor.state.clone());
            st.ready = s.monitor.monitoring_coverage_pct >= 100.0;
            if !st.ready {
                st.message = Some(format!(
                    "still sampling the cluster's load ({:.0}% of partitions covered)",
                    s.monitor.monitoring_coverage_pct
                ));
            }
        }
        Err(why) => st.message = Some(why.clone()),
    }
    st
}

/// The objects of the brokers in `ids` (drained and proven empty) to delete.
fn removals(
    meta: &ClusterMeta,
    cluster: &ValidatedCluster,
    observed: &Observed,
    ids: &[i32],
) -> Vec<Removal> {
    let keep_pvcs = cluster.pvc_deletion_policy == PvcDeletionPolicy::Retain;
    ids.iter()
        .map(|&id| {
            let base = build::broker_name(meta, id);
            let mut delete = Vec::new();
            // A Pod already being deleted is on its way out.
            if observed.pods.get(&id).is_some_and(|p| !p.terminating) {
                delete.push(ObjectKey::new(Kind::Pod, base.clone()));
            }
            let cm = ObjectKey::new(Kind::ConfigMap, format!("{base}-config"));
            if observed.existing.contains_key(&cm) {
                delete.push(cm);
            }
            let svc = ObjectKey::new(Kind::Service, base);
            if !meta.headless && observed.existing.contains_key(&svc) {
                delete.push(svc);
            }
            if !keep_pvcs {
                delete.extend(
                    observed
                        .pvcs
                        .get(&id)
                        .into_iter()
                        .flatten()
                        .map(|n| ObjectKey::new(Kind::PersistentVolumeClaim, n.clone())),
                );
            }
            Removal {
                broker: id,
                delete,
                pvcs_kept: keep_pvcs,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use kube::ResourceExt;
    use stoker_proto::agent::v1::BrokerStatus as AgentStatus;

    use super::*;
    use crate::{
        controller::kafka_cluster::{
            dereference::{Identity, PodView},
            roll::Verdict,
            test_support::example,
            validate::validate,
        },
        crd::v1alpha1::{BrokerState, ClusterState, RollingUpgradeStatus},
    };

    const CLUSTER_ID: &str = "AAAAAAAAAAAAAAAAAAAAAA";

    /// The example without Cruise Control (scaling has tests of its own).
    fn base_spec() -> crate::crd::v1alpha1::KafkaClusterSpec {
        let mut spec = example().spec;
        spec.cruise_control_config = None;
        spec
    }

    fn cluster() -> ValidatedCluster {
        validate(&base_spec()).expect("the example is valid")
    }

    /// What a pass of the example sees before anything exists (its id recorded).
    fn empty() -> Observed {
        let mut kc = example();
        kc.metadata.uid = Some("uid-1".into());
        let previous = KafkaClusterStatus {
            cluster_id: Some(CLUSTER_ID.into()),
            ..KafkaClusterStatus::default()
        };
        Observed {
            identity: Identity {
                name: kc.name_any(),
                namespace: "alerting".into(),
                owner: kube::Resource::controller_owner_ref(&kc, &()).expect("a uid"),
                agent_image: "stoker-agent:test".into(),
                generation: Some(1),
            },
            previous,
            existing: BTreeMap::new(),
            pods: BTreeMap::new(),
            config_maps: BTreeSet::new(),
            pvcs: BTreeMap::new(),
            claims: BTreeMap::new(),
            refused_resizes: BTreeMap::new(),
            agents: BTreeMap::new(),
            verdicts: BTreeMap::new(),
            draining: BTreeSet::new(),
            replicas: BTreeMap::new(),
            rebalances: BTreeMap::new(),
            cruise_control: None,
            fresh_cluster_id: "BBBBBBBBBBBBBBBBBBBBBB".into(),
            now: "2026-12-02T00:00:00Z".into(),
            now_unix: 1_796_169_600,
            agent_tls: Default::default(),
            listener_tls: Default::default(),
            external: Default::default(),
        }
    }

    fn hash_of(object: &Object) -> Option<String> {
        let annotations = match object {
            Object::ServiceAccount(o) => o.annotations(),
            Object::ClusterRole(o) => o.annotations(),
            Object::ClusterRoleBinding(o) => o.annotations(),
            Object::Role(o) => o.annotations(),
            Object::RoleBinding(o) => o.annotations(),
            Object::Lease(o) => o.annotations(),
            Object::Service(o) => o.annotations(),
            Object::ConfigMap(o) => o.annotations(),
            Object::PersistentVolumeClaim(o) => o.annotations(),
            Object::Pod(o) => o.annotations(),
            Object::PodDisruptionBudget(o) => o.annotations(),
            Object::Deployment(o) => o.annotations(),
            Object::KafkaRebalance(o) => o.annotations(),
        };
        annotations.get(build::ANNOTATION_SPEC_HASH).cloned()
    }

    /// `observed` after `plan`'s writes landed: every object exists with its hash, and
    /// each broker's Pod runs (ready) at 10.0.0.<id>, its agent in sync and ready.
    fn converged(mut observed: Observed, plan: &Plan) -> Observed {
        for w in &plan.writes {
            let key = w.object.key();
            observed.existing.insert(
                key.clone(),
                Existing {
                    hash: hash_of(&w.object),
                    resource_version: Some("1".into()),
                },
            );
            if let Object::Pod(p) = &w.object {
                let id: i32 = p.labels()[build::LABEL_BROKER_ID].parse().expect("an id");
                observed.pods.insert(
                    id,
                    PodView {
                        name: key.name.clone(),
                        phase: Some("Running".into()),
                        ip: Some(format!("10.0.0.{id}")),
                        host_ip: Some("192.0.2.1".into()),
                        ready: true,
                        terminating: false,
                        hash: hash_of(&w.object),
                        mount_paths: PodView::mount_paths_of(p),
                    },
                );
            }
            if let Object::ConfigMap(c) = &w.object
                && let Some(id) = c.labels().get(build::LABEL_BROKER_ID)
            {
                observed.config_maps.insert(id.parse().expect("an id"));
            }
            // Bound at the size asked.
            if let Object::PersistentVolumeClaim(c) = &w.object {
                let mut view = claims::ClaimView::of(c);
                view.bound = true;
                view.capacity = view
                    .spec
                    .resources
                    .as_ref()
                    .and_then(|r| r.requests.as_ref())
                    .and_then(|r| r.get("storage"))
                    .map(|q| q.0.clone());
                observed.claims.insert(key.name.clone(), view);
            }
        }
        for (id, s) in &plan.status.brokers_state {
            let id: i32 = id.parse().expect("an id");
            observed.agents.insert(
                id,
                AgentReport::Status(AgentStatus {
                    ready: true,
                    config_hash_in_force: s.desired_config_hash.clone().unwrap_or_default(),
                    quorum_leader: 100,
                    ..AgentStatus::default()
                }),
            );
        }
        observed.previous = plan.status.clone();
        observed
    }

    fn steady() -> (ValidatedCluster, Observed) {
        let c = cluster();
        let first = plan(&c, &empty());
        let mut observed = converged(empty(), &first);
        let second = plan(&c, &observed);
        observed.previous = second.status;
        (c, observed)
    }

    fn reasons(p: &Plan) -> Vec<&str> {
        p.events.iter().map(|e| e.reason.as_str()).collect()
    }

    #[test]
    fn the_cluster_id_is_recorded_before_any_object_carries_it() {
        let mut observed = empty();
        observed.previous.cluster_id = None;
        let p = plan(&cluster(), &observed);
        assert!(p.writes.is_empty() && p.removals.is_empty() && p.reconfigure.is_empty());
        assert_eq!(
            p.status.cluster_id.as_deref(),
            Some("BBBBBBBBBBBBBBBBBBBBBB")
        );
        assert_eq!(reasons(&p), ["ClusterIdGenerated"]);
        assert_eq!(p.requeue, INIT_REQUEUE);
    }

    #[test]
    fn a_new_cluster_gets_every_object_in_order() {
        let p = plan(&cluster(), &empty());
        let kinds: Vec<Kind> = p.writes.iter().map(|w| w.object.key().kind).collect();
        let first_pod = kinds.iter().position(|k| *k == Kind::Pod).expect("Pods");
        let last_service = kinds
            .iter()
            .rposition(|k| *k == Kind::Service)
            .expect("Services");
        assert!(last_service < first_pod, "Services before Pods: {kinds:?}");
        assert_eq!(kinds.iter().filter(|k| **k == Kind::Pod).count(), 4);
        // One per broker, and the JMX exporter's rules before any Pod mounts them.
        let config_maps: Vec<String> = p
            .writes
            .iter()
            .map(|w| w.object.key())
            .filter(|k| k.kind == Kind::ConfigMap)
            .map(|k| k.name)
            .collect();
        assert_eq!(config_maps.len(), 5, "{config_maps:?}");
        let rules = p
            .writes
            .iter()
            .position(|w| w.object.key().name == "kf-kafka-jmx-exporter")
            .expect("the JMX exporter's rules");
        assert!(rules < first_pod, "rules before Pods: {kinds:?}");
        assert_eq!(kinds[0], Kind::ServiceAccount);
        assert_eq!(p.status.ready_brokers.as_deref(), Some("0/4"));
        assert_eq!(p.status.state, Some(ClusterState::Reconciling));
    }

    #[test]
    fn a_broker_waits_for_its_load_balancer_address_and_then_advertises_it() {
        let mut spec = base_spec();
        spec.listeners_config.external_listeners =
            Some(vec![crate::crd::v1alpha1::ExternalListener {
                type_: "plaintext".into(),
                name: "outside".into(),
                container_port: 9094,
                external_starting_port: 19090,
                ..Default::default()
            }]);
        let c = validate(&spec).expect("valid");
        let p = plan(&c, &empty());
        let written: Vec<String> = p
            .writes
            .iter()
            .map(|w| w.object.key().to_string())
            .collect();
        assert!(
            written.contains(&"Service kf-kafka-1-outside".to_owned()),
            "{written:?}"
        );
        assert!(written.contains(&"Service kf-kafka-outside-bootstrap".to_owned()));
        assert!(
            !written.contains(&"Pod kf-kafka-1".to_owned())
                && !written.contains(&"ConfigMap kf-kafka-1-config".to_owned()),
            "no address, no broker: {written:?}"
        );
        assert!(
            written.contains(&"Pod kf-kafka-100".to_owned()),
            "controller-only"
        );
        let cond =
            crate::controller::conditions::find(&p.status.conditions, EXTERNAL_ACCESS_PENDING)
                .expect("the condition");
        assert_eq!(cond.status, "True");
        assert!(
            cond.message.contains(
                "Service kf-kafka-1-outside (listener outside) has no load-balancer address yet"
            ),
            "{}",
            cond.message
        );

        let mut observed = empty();
        for id in [0, 1, 2] {
            observed.external.services.insert(
                format!("kf-kafka-{id}-outside"),
                build::external::ServiceView {
                    broker: Some(id),
                    ingress: Some(format!("192.0.2.{id}")),
                    node_port: None,
                },
            );
        }
        let p = plan(&c, &observed);
        let cm = p
            .writes
            .iter()
            .find_map(|w| match &w.object {
                Object::ConfigMap(cm) if cm.name_any() == "kf-kafka-1-config" => Some(cm.clone()),
                _ => None,
            })
            .expect("broker 1's config");
        let doc = &cm.data.as_ref().expect("data")[build::config::DESIRED_CONFIG_KEY];
        assert!(doc.contains("192.0.2.1") && doc.contains("19091"), "{doc}");
        assert_eq!(
            crate::controller::conditions::find(&p.status.conditions, EXTERNAL_ACCESS_PENDING)
                .expect("the condition")
                .status,
            "False"
        );
        let addresses = &p
            .status
            .listener_statuses
            .expect("addresses")
            .external_listeners["outside"];
        assert!(
            addresses
                .iter()
                .any(|a| a.name == "broker-1" && a.address == "192.0.2.1:19091")
        );
    }

    #[test]
    fn a_listener_added_without_an_address_changes_no_running_broker() {
        let (_, observed) = steady();
        let mut spec = base_spec();
        spec.listeners_config.external_listeners =
            Some(vec![crate::crd::v1alpha1::ExternalListener {
                type_: "plaintext".into(),
                name: "late".into(),
                container_port: 9094,
                external_starting_port: 19090,
                ..Default::default()
            }]);
        let c = validate(&spec).expect("valid");
        let p = plan(&c, &observed);
        let written: Vec<String> = p
            .writes
            .iter()
            .map(|w| w.object.key().to_string())
            .collect();
        assert!(
            written.iter().all(|k| k.starts_with("Service ")),
            "only the listener's Services: {written:?}"
        );
        assert!(p.restarts.is_empty() && p.reconfigure.is_empty());
        assert!(
            p.status
                .brokers_state
                .values()
                .all(|b| b.restart_causes.is_empty()),
            "no restart needed for a listener not served yet"
        );
    }

    #[test]
    fn an_unchanged_cluster_plans_no_write_no_call_and_no_event() {
        let (c, observed) = steady();
        let p = plan(&c, &observed);
        assert!(
            p.writes.is_empty(),
            "{:?}",
            p.writes.iter().map(|w| w.object.key()).collect::<Vec<_>>()
        );
        assert!(p.removals.is_empty() && p.reconfigure.is_empty() && p.restarts.is_empty());
        assert!(p.events.is_empty(), "{:?}", reasons(&p));
        assert_eq!(p.question, None);
        assert_eq!(
            p.status, observed.previous,
            "nothing to write to status either"
        );
        assert_eq!(p.status.state, Some(ClusterState::Running));
        assert_eq!(p.requeue, RESYNC);
    }

    #[test]
    fn a_changed_config_map_is_written_and_a_changed_pod_template_waits_for_a_restart() {
        let (_, observed) = steady();
        let mut spec = base_spec();
        spec.brokers[0]
            .broker_config
            .as_mut()
            .expect("config")
            .config = Some("log.retention.ms=3600000".into());
        spec.brokers[1]
            .broker_config
            .as_mut()
            .expect("config")
            .kafka_heap_opts = Some("-Xmx600m".into());
        let c = validate(&spec).expect("valid");
        let p = plan(&c, &observed);
        let written: Vec<String> = p
            .writes
            .iter()
            .map(|w| w.object.key().to_string())
            .collect();
        assert_eq!(
            written,
            ["ConfigMap kf-kafka-0-config"],
            "a Pod is never changed in place"
        );
        let b1 = &p.status.brokers_state["1"];
        assert!(b1.restart_needed);
        assert_eq!(b1.restart_causes[0].kind, RestartCauseKind::PodTemplate);
        assert!(
            b1.restart_reason
                .as_deref()
                .is_some_and(|r| r.contains("template"))
        );
        assert!(reasons(&p).contains(&"RestartNeeded"));
        // Said once: the next pass, with the cause recorded, says nothing new.
        let mut again = observed.clone();
        again.previous = p.status.clone();
        let p2 = plan(&c, &again);
        assert!(
            !reasons(&p2).contains(&"RestartNeeded"),
            "{:?}",
            reasons(&p2)
        );
    }

    fn sized(storage: &str) -> ValidatedCluster {
        let mut spec = base_spec();
        let disk = &mut spec
            .broker_config_groups
            .get_mut("default_group")
            .expect("the example's group")
            .storage_configs[0];
        disk.pvc_spec
            .as_mut()
            .and_then(|p| p.resources.as_mut())
            .and_then(|r| r.requests.as_mut())
            .expect("a request")
            .insert(
                "storage".into(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity(storage.into()),
            );
        validate(&spec).expect("valid")
    }

    #[test]
    fn a_grown_claim_is_patched_and_a_shrunk_one_is_refused_while_the_rest_goes_on() {
        let (c, observed) = steady();
        let brokers: Vec<i32> = c
            .brokers
            .values()
            .filter(|b| b.storage.iter().any(|s| s.mount_path == "/kafka-logs"))
            .map(|b| b.id)
            .collect();
        assert!(!brokers.is_empty());
        let p = plan(&sized("2Gi"), &observed);
        assert_eq!(
            p.resizes.iter().map(|r| r.broker).collect::<Vec<_>>(),
            brokers
        );
        assert!(p.resizes.iter().all(|r| r.storage == "2Gi"));
        assert!(reasons(&p).contains(&"StorageResizing"));
        assert!(p.restarts.is_empty(), "a resize is online");
        let cond =
            crate::controller::conditions::find(&p.status.conditions, STORAGE_CHANGE_BLOCKED)
                .expect("condition");
        assert_eq!(cond.status, "False");
        assert!(cond.message.contains("grows to 2Gi"), "{cond:?}");

        // Smaller: refused, said, and nothing else is held up (the config still goes out).
        let mut shrunk = sized("512Mi");
        for b in shrunk.brokers.values_mut() {
            b.read_only_config
                .insert("log.retention.ms".into(), "3600000".into());
        }
        let p = plan(&shrunk, &observed);
        assert!(p.resizes.is_empty());
        let cond =
            crate::controller::conditions::find(&p.status.conditions, STORAGE_CHANGE_BLOCKED)
                .expect("condition");
        assert_eq!(cond.status, "True");
        assert!(cond.message.contains("cannot shrink"), "{cond:?}");
        assert!(reasons(&p).contains(&"StorageChangeBlocked"));
        assert!(
            p.writes
                .iter()
                .any(|w| w.object.key().kind == Kind::ConfigMap),
            "the rest of the pass goes on"
        );
    }

    #[test]
    fn an_agent_behind_the_desired_config_is_reconfigured_once() {
        let (_, mut observed) = steady();
        let mut spec = base_spec();
        spec.brokers[0]
            .broker_config
            .as_mut()
            .expect("config")
            .config = Some("log.retention.ms=3600000".into());
        let c = validate(&spec).expect("valid");
        let p = plan(&c, &observed);
        assert_eq!(p.reconfigure.len(), 1);
        let r = &p.reconfigure[0];
        assert_eq!((r.broker, r.addr.as_str()), (0, "10.0.0.0:8081"));
        assert_eq!(r.desired.broker_config["log.retention.ms"], "3600000");
        assert_eq!(p.requeue, RECONFIGURE_REQUEUE);
        // The agent applied what it could; a static key waits for a restart of exactly
        // this config, so it is not sent again, and the key is the restart cause.
        let desired = stoker_proto::config_hash(&r.desired);
        let Some(AgentReport::Status(s)) = observed.agents.get_mut(&0) else {
            panic!("a report")
        };
        s.pending_config_hash = desired;
        s.restart_needed_keys = vec!["num.io.threads".into()];
        let p = plan(&c, &observed);
        assert!(p.reconfigure.is_empty());
        let b0 = &p.status.brokers_state["0"];
        assert_eq!(b0.restart_causes[0].kind, RestartCauseKind::StaticConfig);
        assert_eq!(b0.restart_causes[0].keys, ["num.io.threads"]);
        assert_eq!(
            b0.restart_reason.as_deref(),
            Some("static config changed: num.io.threads")
        );
    }

    #[test]
    fn a_static_cause_outlives_an_unreachable_agent_only_for_the_same_config() {
        let (c, mut observed) = steady();
        let hash = observed.previous.brokers_state["2"]
            .desired_config_hash
            .clone()
            .expect("a hash");
        let b2 = observed
            .previous
            .brokers_state
            .get_mut("2")
            .expect("broker 2");
        b2.restart_causes = vec![RestartCause {
            kind: RestartCauseKind::StaticConfig,
            keys: vec!["num.io.threads".into()],
        }];
        b2.restart_needed = true;
        observed
            .agents
            .insert(2, AgentReport::Unreachable("connection refused".into()));
        let p = plan(&c, &observed);
        let b2 = &p.status.brokers_state["2"];
        assert!(b2.restart_needed, "still waits while its agent is silent");
        assert_eq!(b2.desired_config_hash.as_deref(), Some(hash.as_str()));
        assert!(
            b2.not_ready_reason
                .as_deref()
                .is_some_and(|r| r.contains("connection refused"))
        );
        // A new desired config replaces what the agent said about the old one.
        observed
            .previous
            .brokers_state
            .get_mut("2")
            .expect("broker 2")
            .desired_config_hash = Some("another".into());
        let p = plan(&c, &observed);
        assert!(!p.status.brokers_state["2"].restart_needed);
    }

    fn replicas(
        assigned: &[&str],
        on_disk: u32,
    ) -> stoker_proto::agent::v1::DescribeReplicasResponse {
        stoker_proto::agent::v1::DescribeReplicasResponse {
            assigned_count: u32::try_from(assigned.len()).expect("few"),
            assigned: assigned.iter().map(|s| (*s).to_owned()).collect(),
            log_dirs: vec![stoker_proto::agent::v1::LogDirReplicas {
                path: "/kafka-logs/kafka".into(),
                partitions: on_disk,
                listed: vec![],
            }],
            max_replication_factor: 2,
            max_replication_factor_topic: "orders".into(),
            ..Default::default()
        }
    }

    /// The steady cluster with broker 2 removed from the spec, its agent reporting `r`.
    fn removing_two(
        r: Result<stoker_proto::agent::v1::DescribeReplicasResponse, String>,
        with_cc: bool,
    ) -> (ValidatedCluster, Observed) {
        let (_, mut observed) = steady();
        observed
            .pvcs
            .insert(2, vec!["kf-kafka-2-storage-kafka-logs".into()]);
        observed.draining.insert(2);
        observed.replicas.insert(2, r);
        let mut spec = base_spec();
        spec.brokers.retain(|b| b.id != 2);
        if with_cc {
            spec.cruise_control_config = example().spec.cruise_control_config;
        }
        (validate(&spec).expect("valid"), observed)
    }

    #[test]
    fn a_removed_broker_goes_only_once_its_agent_shows_it_holds_nothing() {
        let (c, observed) = removing_two(Ok(replicas(&[], 0)), false);
        let p = plan(&c, &observed);
        assert_eq!(p.removals.len(), 1);
        let deleted: Vec<String> = p.removals[0]
            .delete
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            deleted,
            [
                "Pod kf-kafka-2",
                "ConfigMap kf-kafka-2-config",
                "Service kf-kafka-2"
            ]
        );
        assert!(p.removals[0].pvcs_kept, "PVCs stay under Retain");
        assert!(reasons(&p).contains(&"BrokerRemoved"));
        assert!(!p.status.brokers_state.contains_key("2"));
        assert_eq!(p.status.scaling, None);
        // Under pvcDeletionPolicy: Delete the PVCs go too.
        let mut spec = base_spec();
        spec.brokers.retain(|b| b.id != 2);
        spec.pvc_deletion_policy = Some(PvcDeletionPolicy::Delete);
        let p = plan(&validate(&spec).expect("valid"), &observed);
        assert!(p.removals[0].delete.contains(&ObjectKey::new(
            Kind::PersistentVolumeClaim,
            "kf-kafka-2-storage-kafka-logs"
        )));
        assert!(p.goals_reached.is_empty(), "no KafkaRebalance to settle");
    }

    #[test]
    fn a_drain_whose_broker_is_shown_empty_settles_its_unfinished_rebalance() {
        let (c, mut observed) = removing_two(Ok(replicas(&[], 0)), true);
        let view =
            |state, goal_reached| crate::controller::kafka_cluster::dereference::RebalanceView {
                goal_reached,
                mode: crate::crd::v1alpha1::RebalanceMode::RemoveBrokers,
                brokers: vec![2],
                state,
                message: String::new(),
            };
        // Cruise Control lost the task (it restarted); the agent shows broker 2 empty.
        observed.rebalances.insert(
            "kf-kafka-remove-2".into(),
            view(crate::crd::v1alpha1::RebalanceState::Running, false),
        );
        let p = plan(&c, &observed);
        assert_eq!(p.removals.len(), 1);
        assert_eq!(p.goals_reached.len(), 1);
        assert_eq!(p.goals_reached[0].0, "kf-kafka-remove-2");
        assert!(
            p.goals_reached[0].1.contains("holds no replica"),
            "{:?}",
            p.goals_reached
        );
        // Marked once; a finished one is left alone.
        for (state, marked) in [
            (crate::crd::v1alpha1::RebalanceState::Running, true),
            (crate::crd::v1alpha1::RebalanceState::Completed, false),
        ] {
            observed
                .rebalances
                .insert("kf-kafka-remove-2".into(), view(state, marked));
            assert!(plan(&c, &observed).goals_reached.is_empty());
        }
    }

    #[test]
    fn a_removed_broker_that_holds_replicas_is_kept_and_without_cruise_control_the_refusal_names_them()
     {
        let (c, observed) = removing_two(
            Ok(replicas(&["orders-0", "__consumer_offsets-3"], 2)),
            false,
        );
        let p = plan(&c, &observed);
        assert!(
            p.removals.is_empty(),
            "never deleted while it holds replicas"
        );
        let removing = &p.status.scaling.as_ref().expect("scaling").removing[0];
        assert_eq!(removing.state, crate::crd::v1alpha1::RemovalState::Blocked);
        assert!(
            removing.message.contains("orders-0")
                && removing.message.contains("__consumer_offsets-3")
                && removing.message.contains("without Cruise Control"),
            "{}",
            removing.message
        );
        let blocked = crate::controller::conditions::find(&p.status.conditions, SCALE_DOWN_BLOCKED)
            .expect("a condition");
        assert_eq!(blocked.status, "True");
        assert!(reasons(&p).contains(&"ScaleDownBlocked"));
        assert_eq!(
            p.status.state,
            Some(crate::crd::v1alpha1::ClusterState::Scaling)
        );
    }

    #[test]
    fn a_removed_broker_whose_agent_cannot_tell_is_kept() {
        for r in [
            Err("its Pod is not running".to_owned()),
            Ok(stoker_proto::agent::v1::DescribeReplicasResponse {
                unreadable: vec!["the broker's log dirs (KAFKA_STORAGE_ERROR)".into()],
                ..replicas(&[], 0)
            }),
        ] {
            let (c, observed) = removing_two(r, true);
            let p = plan(&c, &observed);
            assert!(p.removals.is_empty(), "nothing is deleted on a guess");
            let removing = &p.status.scaling.as_ref().expect("scaling").removing[0];
            assert!(
                removing.message.contains("cannot confirm"),
                "{}",
                removing.message
            );
        }
    }

    #[test]
    fn with_cruise_control_a_removed_broker_is_drained_by_a_rebalance_and_asked_again_if_needed() {
        let (c, mut observed) = removing_two(Ok(replicas(&["orders-0"], 1)), true);
        let p = plan(&c, &observed);
        let created: Vec<String> = p
            .writes
            .iter()
            .filter(|w| w.object.key().kind == Kind::KafkaRebalance)
            .map(|w| w.object.key().name)
            .collect();
        assert_eq!(created, ["kf-kafka-remove-2"]);
        assert!(reasons(&p).contains(&"DrainingBroker"));
        // Completed, yet the broker still holds a replica: asked again.
        observed.rebalances.insert(
            "kf-kafka-remove-2".into(),
            crate::controller::kafka_cluster::dereference::RebalanceView {
                goal_reached: false,
                mode: crate::crd::v1alpha1::RebalanceMode::RemoveBrokers,
                brokers: vec![2],
                state: crate::crd::v1alpha1::RebalanceState::Completed,
                message: String::new(),
            },
        );
        let p = plan(&c, &observed);
        assert!(p.removals.is_empty());
        assert_eq!(
            p.deletes,
            [ObjectKey::new(Kind::KafkaRebalance, "kf-kafka-remove-2")]
        );
        // Failed: the removal is blocked and says what to do.
        if let Some(v) = observed.rebalances.get_mut("kf-kafka-remove-2") {
            v.state = crate::crd::v1alpha1::RebalanceState::Failed;
            v.message = "gave up after 5 attempt(s)".into();
        }
        let p = plan(&c, &observed);
        let removing = &p.status.scaling.as_ref().expect("scaling").removing[0];
        assert_eq!(removing.state, crate::crd::v1alpha1::RemovalState::Blocked);
        assert!(
            removing.message.contains("Delete kf-kafka-remove-2"),
            "{}",
            removing.message
        );
        // Once empty it goes.
        observed.replicas.insert(2, Ok(replicas(&[], 0)));
        assert_eq!(plan(&c, &observed).removals.len(), 1);
    }

    /// The example's spec with broker 1 on the disks at `mounts` (and Cruise Control
    /// when asked).
    fn disks_spec(mounts: &[&str], with_cc: bool) -> crate::crd::v1alpha1::KafkaClusterSpec {
        let mut spec = base_spec();
        let group = spec.broker_config_groups["default_group"].clone();
        let disk = group.storage_configs[0].clone();
        let b = spec
            .brokers
            .iter_mut()
            .find(|b| b.id == 1)
            .expect("broker 1");
        b.broker_config = Some(crate::crd::v1alpha1::BrokerConfig {
            storage_configs: mounts
                .iter()
                .map(|m| crate::crd::v1alpha1::StorageConfig {
                    mount_path: (*m).to_owned(),
                    ..disk.clone()
                })
                .collect(),
            ..Default::default()
        });
        if with_cc {
            spec.cruise_control_config = example().spec.cruise_control_config;
            // Derived from the disks: the example's gives one DISK for every broker.
            if let Some(cc) = spec.cruise_control_config.as_mut() {
                cc.capacity_config = None;
            }
        }
        spec
    }

    /// What a pass validates for `spec`: the disks broker 1 still has put back.
    fn in_force(
        spec: &crate::crd::v1alpha1::KafkaClusterSpec,
        observed: &Observed,
    ) -> ValidatedCluster {
        disks::in_force(validate(spec).expect("valid"), &observed.previous)
    }

    /// A steady cluster whose broker 1 has two disks.
    fn steady_two_disks() -> Observed {
        let c = validate(&disks_spec(&["/kafka-logs", "/kafka-logs-2"], false)).expect("valid");
        let first = plan(&c, &empty());
        let mut observed = converged(empty(), &first);
        observed.previous = plan(&c, &observed).status;
        observed
    }

    fn dir_report(on_second: u32) -> stoker_proto::agent::v1::DescribeReplicasResponse {
        let mut r = replicas(&["orders-0", "orders-1"], 1);
        r.log_dirs.push(stoker_proto::agent::v1::LogDirReplicas {
            path: "/kafka-logs-2/kafka".into(),
            partitions: on_second,
            listed: (0..on_second).map(|p| format!("orders-{p}")).collect(),
        });
        r
    }

    fn broker_one_restarts(p: &Plan) -> bool {
        p.status.brokers_state["1"].restart_needed
    }

    #[test]
    fn a_removed_disk_is_unmounted_only_once_its_agent_shows_it_empty() {
        let mut observed = steady_two_disks();
        let record: Vec<&str> = observed.previous.brokers_state["1"]
            .storage_configs
            .iter()
            .map(|s| s.mount_path.as_str())
            .collect();
        assert_eq!(record, ["/kafka-logs", "/kafka-logs-2"]);
        let spec = disks_spec(&["/kafka-logs"], false);
        let c = in_force(&spec, &observed);
        assert!(c.brokers[&1].removing_disks.contains("/kafka-logs-2"));

        // Its agent cannot tell: the disk stays mounted.
        observed
            .replicas
            .insert(1, Err("its agent did not answer".into()));
        let p = plan(&c, &observed);
        assert!(!broker_one_restarts(&p), "nothing changes on a guess");
        let d = &p.status.scaling.as_ref().expect("scaling").disks[0];
        assert_eq!(
            (d.change, d.state),
            (
                crate::crd::v1alpha1::DiskChangeKind::Removing,
                crate::crd::v1alpha1::DiskState::Draining
            )
        );

        // It holds replicas and there is no Cruise Control: blocked, partitions named.
        observed.replicas.insert(1, Ok(dir_report(2)));
        let p = plan(&c, &observed);
        assert!(!broker_one_restarts(&p));
        let d = &p.status.scaling.as_ref().expect("scaling").disks[0];
        assert_eq!(d.state, crate::crd::v1alpha1::DiskState::Blocked);
        assert!(d.message.contains("orders-0, orders-1"), "{}", d.message);
        assert!(reasons(&p).contains(&"DiskChangeBlocked"));
        assert!(
            p.status
                .conditions
                .iter()
                .any(|c| c.type_ == DISK_CHANGE_BLOCKED && c.status == "True")
        );

        // Empty: the broker restarts without it, and it stays on record until then.
        observed.replicas.insert(1, Ok(dir_report(0)));
        let p = plan(&c, &observed);
        assert!(broker_one_restarts(&p));
        let d = &p.status.scaling.as_ref().expect("scaling").disks[0];
        assert_eq!(d.state, crate::crd::v1alpha1::DiskState::Unmounting);
        assert_eq!(p.status.brokers_state["1"].storage_configs.len(), 2);

        // Its Pod stopped for that restart: the decision stands (a stopped broker takes
        // no replica), and the Pod comes back without the disk.
        let unmounting = p.status.clone();
        let mut stopped = observed.clone();
        stopped.previous = unmounting.clone();
        stopped.pods.remove(&1);
        stopped
            .existing
            .remove(&ObjectKey::new(Kind::Pod, "kf-kafka-1"));
        stopped
            .replicas
            .insert(1, Err("its Pod is not running".into()));
        let p = plan(&c, &stopped);
        let pod = p
            .writes
            .iter()
            .find_map(|w| match &w.object {
                Object::Pod(pod) if pod.name_any() == "kf-kafka-1" => Some(pod),
                _ => None,
            })
            .expect("broker 1's Pod is recreated");
        assert!(
            !PodView::mount_paths_of(pod).contains("/kafka-logs-2"),
            "recreated without the disk"
        );

        // Replicas landed on it again before the restart: it goes back in.
        observed.previous = unmounting;
        observed.replicas.insert(1, Ok(dir_report(1)));
        assert!(!broker_one_restarts(&plan(&c, &observed)));

        // The Pod runs without it: forgotten; its PVC kept under Retain, deleted under Delete.
        if let Some(pod) = observed.pods.get_mut(&1) {
            pod.mount_paths.remove("/kafka-logs-2");
        }
        let pvc = ObjectKey::new(
            Kind::PersistentVolumeClaim,
            "kf-kafka-1-storage-kafka-logs-2",
        );
        assert!(
            observed.existing.contains_key(&pvc),
            "the disk's PVC is named after its mount path"
        );
        let p = plan(&c, &observed);
        assert!(reasons(&p).contains(&"DiskRemoved"));
        assert_eq!(p.status.brokers_state["1"].storage_configs.len(), 1);
        assert_eq!(p.status.scaling, None);
        assert!(!p.deletes.contains(&pvc));
        let mut delete = spec.clone();
        delete.pvc_deletion_policy = Some(PvcDeletionPolicy::Delete);
        assert!(
            plan(&in_force(&delete, &observed), &observed)
                .deletes
                .contains(&pvc)
        );
    }

    #[test]
    fn with_cruise_control_a_removed_disk_is_emptied_by_remove_disks() {
        let mut observed = steady_two_disks();
        let c = in_force(&disks_spec(&["/kafka-logs"], true), &observed);
        observed.replicas.insert(1, Ok(dir_report(2)));
        let p = plan(&c, &observed);
        let kr = p
            .writes
            .iter()
            .find_map(|w| match &w.object {
                Object::KafkaRebalance(kr) => Some(kr),
                _ => None,
            })
            .expect("a KafkaRebalance");
        assert_eq!(kr.name_any(), "kf-kafka-remove-disks-1");
        assert_eq!(
            kr.spec.mode,
            crate::crd::v1alpha1::RebalanceMode::RemoveDisks
        );
        assert_eq!(
            kr.spec.disks,
            [crate::crd::v1alpha1::BrokerDisk {
                broker: 1,
                mount_path: "/kafka-logs-2".into()
            }]
        );
        assert!(
            crate::controller::kafka_rebalance::plan::validate(&kr.spec).is_ok(),
            "the KafkaRebalance controller takes it"
        );
        assert!(reasons(&p).contains(&"DrainingDisk"));
        assert!(!broker_one_restarts(&p));
        // Completed, yet the disk still holds replicas: asked again.
        observed.previous = p.status;
        observed.rebalances.insert(
            "kf-kafka-remove-disks-1".into(),
            crate::controller::kafka_cluster::dereference::RebalanceView {
                goal_reached: false,
                mode: crate::crd::v1alpha1::RebalanceMode::RemoveDisks,
                brokers: vec![],
                state: crate::crd::v1alpha1::RebalanceState::Completed,
                message: String::new(),
            },
        );
        let p = plan(&c, &observed);
        assert_eq!(
            p.deletes,
            [ObjectKey::new(
                Kind::KafkaRebalance,
                "kf-kafka-remove-disks-1"
            )]
        );
        // Still running (Cruise Control lost it, say), and the agent shows the disk
        // empty: the disk is unmounted and the task marked done.
        if let Some(v) = observed.rebalances.get_mut("kf-kafka-remove-disks-1") {
            v.state = crate::crd::v1alpha1::RebalanceState::Running;
        }
        observed.replicas.insert(1, Ok(dir_report(0)));
        let p = plan(&c, &observed);
        assert!(broker_one_restarts(&p), "unmounted by a restart");
        assert_eq!(
            p.goals_reached
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            ["kf-kafka-remove-disks-1"]
        );
    }

    #[test]
    fn a_capacity_config_with_one_disk_for_a_broker_with_several_is_refused() {
        let mut spec = disks_spec(&["/kafka-logs", "/kafka-logs-2"], false);
        spec.cruise_control_config = example().spec.cruise_control_config;
        let e = validate(&spec).expect_err("one DISK for two disks");
        assert!(
            e.message
                .contains("broker 1 one DISK capacity, but it has 2 disks"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains(r#""/kafka-logs-2/kafka": "<MB>""#),
            "{}",
            e.message
        );
    }

    #[test]
    fn an_added_disk_is_mounted_by_a_restart_then_balanced_onto() {
        let spec_one = disks_spec(&["/kafka-logs"], true);
        let c = validate(&spec_one).expect("valid");
        let mut observed = converged(empty(), &plan(&c, &empty()));
        observed.previous = plan(&c, &observed).status;
        let c = in_force(
            &disks_spec(&["/kafka-logs", "/kafka-logs-2"], true),
            &observed,
        );
        let p = plan(&c, &observed);
        assert!(reasons(&p).contains(&"DiskAdded"));
        assert!(broker_one_restarts(&p), "a new volume needs a new Pod");
        assert!(
            p.writes.iter().any(|w| w.object.key()
                == ObjectKey::new(
                    Kind::PersistentVolumeClaim,
                    "kf-kafka-1-storage-kafka-logs-2"
                )),
            "its PVC is created"
        );
        let d = &p.status.scaling.as_ref().expect("scaling").disks[0];
        assert_eq!(d.state, crate::crd::v1alpha1::DiskState::Mounting);
        assert!(
            !p.writes
                .iter()
                .any(|w| w.object.key().kind == Kind::KafkaRebalance),
            "nothing is balanced onto a disk the broker does not have yet"
        );
        // Cruise Control's capacity lists both log dirs of broker 1.
        let cc = p
            .writes
            .iter()
            .find_map(|w| match &w.object {
                Object::ConfigMap(cm) if cm.name_any() == "kf-kafka-cruisecontrol" => Some(cm),
                _ => None,
            })
            .expect("Cruise Control's ConfigMap changes");
        let capacity = &cc.data.as_ref().expect("data")["capacity.json"];
        assert!(capacity.contains("/kafka-logs-2/kafka"), "{capacity}");

        // The broker runs with it: KafkaRebalance with rebalanceDisk.
        observed.previous = p.status;
        if let Some(pod) = observed.pods.get_mut(&1) {
            pod.mount_paths.insert("/kafka-logs-2".into());
        }
        let p = plan(&c, &observed);
        let kr = p
            .writes
            .iter()
            .find_map(|w| match &w.object {
                Object::KafkaRebalance(kr) => Some(kr),
                _ => None,
            })
            .expect("a KafkaRebalance");
        assert_eq!(kr.name_any(), "kf-kafka-rebalance-disks-1");
        assert!(kr.spec.rebalance_disk);
        assert!(crate::controller::kafka_rebalance::plan::validate(&kr.spec).is_ok());
        observed.previous = p.status;
        observed.rebalances.insert(
            "kf-kafka-rebalance-disks-1".into(),
            crate::controller::kafka_cluster::dereference::RebalanceView {
                goal_reached: false,
                mode: crate::crd::v1alpha1::RebalanceMode::Rebalance,
                brokers: vec![],
                state: crate::crd::v1alpha1::RebalanceState::Completed,
                message: String::new(),
            },
        );
        let p = plan(&c, &observed);
        assert!(reasons(&p).contains(&"DiskBalanced"));
        assert_eq!(
            p.status
                .scaling
                .as_ref()
                .map(|s| s.disks.len())
                .unwrap_or(0),
            0
        );
    }

    #[test]
    fn a_removal_that_would_leave_too_few_brokers_or_a_controller_is_refused() {
        let (c, observed) = removing_two(
            Ok(stoker_proto::agent::v1::DescribeReplicasResponse {
                max_replication_factor: 3,
                ..replicas(&["orders-0"], 1)
            }),
            true,
        );
        let p = plan(&c, &observed);
        let removing = &p.status.scaling.as_ref().expect("scaling").removing[0];
        assert_eq!(removing.state, crate::crd::v1alpha1::RemovalState::Blocked);
        assert!(
            removing.message.contains("replication factor 3"),
            "{}",
            removing.message
        );
        assert!(
            !p.writes
                .iter()
                .any(|w| w.object.key().kind == Kind::KafkaRebalance),
            "nothing moves"
        );
        // Enough brokers for every replication factor, not for a topic's
        // min.insync.replicas + 1.
        let (c, observed) = removing_two(
            Ok(stoker_proto::agent::v1::DescribeReplicasResponse {
                max_replication_factor: 2,
                brokers_needed: 3,
                brokers_needed_reason: "topic payments has min.insync.replicas 2, so it needs 3 brokers to take acks=all writes while one restarts".into(),
                ..replicas(&["orders-0"], 1)
            }),
            true,
        );
        let p = plan(&c, &observed);
        let removing = &p.status.scaling.as_ref().expect("scaling").removing[0];
        assert_eq!(removing.state, crate::crd::v1alpha1::RemovalState::Blocked);
        assert!(
            removing
                .message
                .contains("payments has min.insync.replicas 2")
                && removing.message.contains("min.insync.replicas"),
            "{}",
            removing.message
        );
    }

    #[test]
    fn an_added_broker_gets_partitions_once_ready_with_cruise_control() {
        let (_, mut observed) = steady();
        let mut spec = example().spec;
        let mut new = spec.brokers[0].clone();
        new.id = 3;
        spec.brokers.push(new);
        if let Some(cc) = spec.cruise_control_config.as_mut() {
            cc.replication_throttle = Some(5_000_000);
        }
        let c = validate(&spec).expect("valid");
        let p = plan(&c, &observed);
        assert_eq!(
            p.status.scaling.as_ref().map(|s| s.adding.clone()),
            Some(vec![3])
        );
        assert!(
            !p.writes
                .iter()
                .any(|w| w.object.key().kind == Kind::KafkaRebalance),
            "not before it is ready"
        );
        observed = converged(observed, &p);
        let p = plan(&c, &observed);
        let created: Vec<String> = p
            .writes
            .iter()
            .filter(|w| w.object.key().kind == Kind::KafkaRebalance)
            .map(|w| w.object.key().name)
            .collect();
        assert_eq!(created, ["kf-kafka-add-3"]);
        let throttle = p.writes.iter().find_map(|w| match &w.object {
            Object::KafkaRebalance(r) => r.spec.replication_throttle,
            _ => None,
        });
        assert_eq!(throttle, Some(5_000_000), "the cluster's throttle is asked");
        // Without Cruise Control it simply joins.
        let mut plain = spec.clone();
        plain.cruise_control_config = None;
        let (_, fresh) = steady();
        let p = plan(&validate(&plain).expect("valid"), &fresh);
        assert_eq!(p.status.scaling, None);
        assert!(reasons(&p).contains(&"BrokerAdded"));
    }

    /// The steady cluster with broker 0's Pod template changed.
    fn needs_roll() -> (ValidatedCluster, Observed) {
        let (_, mut observed) = steady();
        observed.pods.get_mut(&0).expect("pod 0").hash = Some("older".into());
        observed.existing.insert(
            ObjectKey::new(Kind::Pod, "kf-kafka-0"),
            Existing {
                hash: Some("older".into()),
                resource_version: Some("1".into()),
            },
        );
        (cluster(), observed)
    }

    #[test]
    fn the_roll_asks_the_agent_before_it_deletes_a_pod() {
        let (c, mut observed) = needs_roll();
        let p = plan(&c, &observed);
        assert!(p.restarts.is_empty(), "nothing is restarted on a guess");
        let q = p.question.clone().expect("a question");
        assert_eq!(
            q,
            StopQuestion {
                broker: 0,
                with: vec![]
            }
        );
        observed.verdicts.insert(q, Verdict::Safe);
        let p = plan(&c, &observed);
        assert_eq!(p.question, None);
        assert_eq!(
            p.restarts,
            [Restart {
                broker: 0,
                pod: "kf-kafka-0".into()
            }]
        );
        let ru = p
            .status
            .rolling_upgrade
            .as_ref()
            .expect("progress recorded");
        assert_eq!(ru.in_progress[0].broker, 0);
        assert_eq!(p.status.state, Some(ClusterState::RollingUpgrading));
        assert_eq!(
            p.status.brokers_state["0"].state,
            Some(BrokerState::Restarting)
        );
        assert!(reasons(&p).contains(&"RestartingBroker"));
        assert_eq!(p.requeue, ROLL_REQUEUE);
        let related = p
            .events
            .iter()
            .find(|e| e.reason == "RestartingBroker")
            .and_then(|e| e.related.as_ref())
            .and_then(|r| r.name.clone());
        assert_eq!(
            related.as_deref(),
            Some("kf-kafka-0"),
            "the Event names the broker's Pod"
        );
    }

    #[test]
    fn an_unsafe_answer_blocks_the_roll_with_one_warning_per_reason() {
        let (c, mut observed) = needs_roll();
        observed.verdicts.insert(
            StopQuestion {
                broker: 0,
                with: vec![],
            },
            Verdict::Unsafe("t-0 would fall below min.insync.replicas".into()),
        );
        let p = plan(&c, &observed);
        assert!(p.restarts.is_empty());
        assert_eq!(reasons(&p), ["RestartNeeded", "RollBlocked"]);
        let waiting = p
            .status
            .rolling_upgrade
            .as_ref()
            .and_then(|r| r.waiting_for.clone())
            .expect("says what it waits for");
        assert!(waiting.contains("min.insync.replicas"), "{waiting}");
        observed.previous = p.status;
        let p = plan(&c, &observed);
        assert!(!reasons(&p).contains(&"RollBlocked"), "once per reason");
    }

    #[test]
    fn a_restarted_broker_back_and_caught_up_completes_the_roll() {
        let (c, mut observed) = steady();
        observed.previous.rolling_upgrade = Some(RollingUpgradeStatus {
            started_at: "t0".into(),
            in_progress: vec![crate::crd::v1alpha1::BrokerRestart {
                broker: 0,
                started_at: "t1".into(),
            }],
            ..RollingUpgradeStatus::default()
        });
        // Broker 0 still catching up: the roll waits for it.
        if let Some(AgentReport::Status(s)) = observed.agents.get_mut(&0) {
            s.out_of_sync_partitions = 3;
        }
        let p = plan(&c, &observed);
        assert!(p.status.rolling_upgrade.is_some());
        assert!(
            reasons(&p).is_empty(),
            "waiting for its own progress is no warning"
        );
        if let Some(AgentReport::Status(s)) = observed.agents.get_mut(&0) {
            s.out_of_sync_partitions = 0;
        }
        let p = plan(&c, &observed);
        assert_eq!(reasons(&p), ["BrokerRestarted", "RollCompleted"]);
        assert_eq!(p.status.rolling_upgrade, None);
        assert_eq!(p.status.state, Some(ClusterState::Running));
    }

    #[test]
    fn an_invalid_spec_changes_nothing_and_warns_once() {
        let err = InvalidSpec {
            reason: "ZooKeeperNotSupported",
            message: "no ZooKeeper".into(),
        };
        let (_, observed) = steady();
        let p = invalid(&err, &observed.previous, Some(2), "t");
        assert!(p.writes.is_empty() && p.removals.is_empty() && p.restarts.is_empty());
        assert_eq!(p.status.state, Some(ClusterState::Invalid));
        assert_eq!(p.events.len(), 1);
        assert!(p.events[0].warning);
        let p2 = invalid(&err, &p.status, Some(2), "t");
        assert!(p2.events.is_empty(), "the same message is not warned again");
        assert_eq!(
            p2.status.cluster_id, observed.previous.cluster_id,
            "status is kept"
        );
    }
}
