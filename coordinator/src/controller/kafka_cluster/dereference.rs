//! Dereference: everything one pass needs, read once. Owned objects come from the
//! controller's reflector stores (no GET or LIST per pass), the agents' reports are
//! fetched concurrently with a bound timeout, and the status is the one this
//! coordinator last wrote (the cached object may predate that write).
//!
//! The only I/O here is reading; nothing is written.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::Mutex,
    time::Duration,
};

use futures::future::join_all;
use k8s_openapi::api::{
    apps::v1::Deployment,
    coordination::v1::Lease,
    core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount},
    policy::v1::PodDisruptionBudget,
    rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
};
use kube::{
    Resource, ResourceExt,
    runtime::reflector::{ObjectRef, Store},
};
use stoker_proto::agent::v1::{BrokerRef, BrokerStatus, DescribeReplicasResponse};

use super::{
    build::{
        AGENT_GRPC_PORT, ANNOTATION_SPEC_HASH, LABEL_BROKER_ID, LABEL_CLUSTER,
        certificates::{CertificateSet, CertificateView},
        external::{ExternalView, LABEL_LISTENER, ServiceView as ExternalServiceView},
    },
    claims::{ClaimView, Refusal},
    roll::{StopQuestion, Verdict},
    validate::ValidatedCluster,
};
use crate::{
    agents::AgentPool,
    controller::error_chain,
    crd::v1alpha1::{
        KafkaCluster, KafkaClusterStatus, KafkaRebalance, RebalanceMode, RebalanceState,
    },
    cruise_control::{self, Pool as CruiseControls},
};

/// How long a pass waits for one agent's status: an agent that does not answer in
/// time is reported unreachable, never a reason for the pass to hang.
pub const AGENT_STATUS_TIMEOUT: Duration = Duration::from_secs(3);
/// How old a Cruise Control `/state` shown in a cluster's status may be.
pub const CRUISE_CONTROL_STATE_MAX_AGE: Duration = Duration::from_secs(15);
/// How long a pass waits for one agent's `SafeToStop` answer (it reads the cluster's
/// metadata and every topic's min.insync.replicas).
pub const SAFE_TO_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The kinds of object the KafkaCluster controller writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// ServiceAccount.
    ServiceAccount,
    /// ClusterRole (cluster-scoped).
    ClusterRole,
    /// ClusterRoleBinding (cluster-scoped).
    ClusterRoleBinding,
    /// Role (the agents' stop Lease).
    Role,
    /// RoleBinding.
    RoleBinding,
    /// Lease (the cluster's stop lock).
    Lease,
    /// Service.
    Service,
    /// ConfigMap.
    ConfigMap,
    /// PersistentVolumeClaim.
    PersistentVolumeClaim,
    /// Pod.
    Pod,
    /// PodDisruptionBudget.
    PodDisruptionBudget,
    /// Deployment (Cruise Control's).
    Deployment,
    /// KafkaRebalance.
    KafkaRebalance,
}

impl Kind {
    /// The Kubernetes kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServiceAccount => "ServiceAccount",
            Self::ClusterRole => "ClusterRole",
            Self::ClusterRoleBinding => "ClusterRoleBinding",
            Self::Role => "Role",
            Self::RoleBinding => "RoleBinding",
            Self::Lease => "Lease",
            Self::Service => "Service",
            Self::ConfigMap => "ConfigMap",
            Self::PersistentVolumeClaim => "PersistentVolumeClaim",
            Self::Pod => "Pod",
            Self::PodDisruptionBudget => "PodDisruptionBudget",
            Self::Deployment => "Deployment",
            Self::KafkaRebalance => "KafkaRebalance",
        }
    }
}

/// One object, by kind and name (in the cluster's namespace, or cluster-scoped).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// Its kind.
    pub kind: Kind,
    /// Its name.
    pub name: String,
}

impl ObjectKey {
    /// The key of `kind` `name`.
    pub fn new(kind: Kind, name: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.name)
    }
}

/// What exists of an object the pass may write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Existing {
    /// The hash of the content Stoker wrote (`kafka.stoker.io/spec-hash`); None for an
    /// object Stoker did not write (a ServiceAccount the user made).
    pub hash: Option<String>,
    /// Its resourceVersion, to tell an update from a no-op write.
    pub resource_version: Option<String>,
}

/// One broker Pod, as the pass needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodView {
    /// Its name.
    pub name: String,
    /// `status.phase`.
    pub phase: Option<String>,
    /// `status.podIP`.
    pub ip: Option<String>,
    /// `status.hostIP`: its Node's address.
    pub host_ip: Option<String>,
    /// Its Ready condition is True.
    pub ready: bool,
    /// It has a deletion timestamp.
    pub terminating: bool,
    /// The hash of the template it was created from.
    pub hash: Option<String>,
    /// Where its Kafka container mounts volumes.
    pub mount_paths: BTreeSet<String>,
}

impl PodView {
    fn of(p: &Pod) -> Self {
        let status = p.status.as_ref();
        Self {
            name: p.name_any(),
            phase: status.and_then(|s| s.phase.clone()),
            ip: status.and_then(|s| s.pod_ip.clone()),
            host_ip: status.and_then(|s| s.host_ip.clone()),
            ready: status
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
            terminating: p.metadata.deletion_timestamp.is_some(),
            hash: p.annotations().get(ANNOTATION_SPEC_HASH).cloned(),
            mount_paths: Self::mount_paths_of(p),
        }
    }

    /// Where `p`'s Kafka container mounts volumes.
    pub fn mount_paths_of(p: &Pod) -> BTreeSet<String> {
        p.spec
            .iter()
            .flat_map(|s| &s.containers)
            .filter(|c| c.name == "kafka")
            .flat_map(|c| c.volume_mounts.iter().flatten())
            .map(|m| m.mount_path.clone())
            .collect()
    }

    /// The Pod runs (phase Running) and is not being deleted.
    pub fn running(&self) -> bool {
        self.phase.as_deref() == Some("Running") && !self.terminating
    }

    /// The agent's gRPC address, when the Pod has an IP.
    pub fn agent_addr(&self) -> Option<String> {
        self.ip.as_ref().map(|ip| format!("{ip}:{AGENT_GRPC_PORT}"))
    }
}

/// What a broker's agent answered to `GetStatus`.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentReport {
    /// Its report.
    Status(BrokerStatus),
    /// It did not answer (in time); why.
    Unreachable(String),
}

/// A KafkaRebalance of the cluster, as the plan reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct RebalanceView {
    /// What it does.
    pub mode: RebalanceMode,
    /// Its brokers.
    pub brokers: Vec<i32>,
    /// Where it is.
    pub state: RebalanceState,
    /// Its message.
    pub message: String,
    /// The coordinator already marked its goal reached (it finishes it).
    pub goal_reached: bool,
}

/// What the pass saw of the cluster's Cruise Control.
#[derive(Debug, Clone, PartialEq)]
pub struct CruiseControlView {
    /// Where it answers, or why it is not there.
    pub endpoint: Result<String, String>,
    /// Its `/state`, or why it could not be read.
    pub state: Result<cruise_control::types::State, String>,
}

/// Who the cluster is, for the objects built for it.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The KafkaCluster's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Controller owner reference to it.
    pub owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    /// The agent image for its Pods.
    pub agent_image: String,
    /// Its generation.
    pub generation: Option<i64>,
}

/// Everything a pass observed.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Who the cluster is.
    pub identity: Identity,
    /// The status as last written.
    pub previous: KafkaClusterStatus,
    /// Every object of the cluster that exists, by kind and name.
    pub existing: BTreeMap<ObjectKey, Existing>,
    /// Broker Pods of the cluster, by broker id (brokers gone from the spec included).
    pub pods: BTreeMap<i32, PodView>,
    /// Broker ids that have a ConfigMap.
    pub config_maps: BTreeSet<i32>,
    /// PVC names of each broker id.
    pub pvcs: BTreeMap<i32, Vec<String>>,
    /// Every PVC of the cluster, by name.
    pub claims: BTreeMap<String, ClaimView>,
    /// Resizes the API server refused, by claim (asked again only for another size).
    pub refused_resizes: BTreeMap<String, Refusal>,
    /// What each asked agent answered.
    pub agents: BTreeMap<i32, AgentReport>,
    /// `SafeToStop` answers asked for this pass.
    pub verdicts: BTreeMap<StopQuestion, Verdict>,
    /// Brokers removed from `spec.brokers` that still exist (a Pod or a ConfigMap), or
    /// that the status records as removing.
    pub draining: BTreeSet<i32>,
    /// What each draining broker's agent (and that of each broker with a disk being
    /// removed) says it holds, or why it could not say.
    pub replicas: BTreeMap<i32, Result<DescribeReplicasResponse, String>>,
    /// The cluster's KafkaRebalances, by name.
    pub rebalances: BTreeMap<String, RebalanceView>,
    /// The cluster's Cruise Control, when the spec has one: where, and what it said.
    pub cruise_control: Option<CruiseControlView>,
    /// The agents' mTLS Secrets: the CA every call to an agent is made with.
    pub agent_tls: CertificateView,
    /// The client listeners' TLS Secrets (left-over brokers' Secrets only, when no
    /// listener uses TLS).
    pub listener_tls: CertificateView,
    /// The external listeners' Services and the brokers' Node addresses.
    pub external: ExternalView,
    /// A new KRaft cluster id, used only when status has none.
    pub fresh_cluster_id: String,
    /// Now, RFC 3339.
    pub now: String,
    /// Now, Unix seconds.
    pub now_unix: i64,
}

/// The brokers on their way out of the cluster, whose agents must show they hold
/// nothing before they go: those removed from the spec that still drain (their last
/// entry is in the status, so their Pod is kept or made again), those a past pass was
/// removing, and any Pod or ConfigMap of a broker the spec does not have. Once a removal
/// deleted a broker's Pod, ConfigMap and status entry, its terminating Pod is on its way
/// out: it never makes the broker draining again. Pure.
pub fn draining_brokers(
    cluster: &ValidatedCluster,
    pods: &BTreeMap<i32, PodView>,
    config_maps: &BTreeSet<i32>,
    previous: &KafkaClusterStatus,
) -> BTreeSet<i32> {
    let unknown = |id: &i32| !cluster.brokers.contains_key(id);
    let left_over =
        |id: &i32| pods.get(id).is_some_and(|p| !p.terminating) || config_maps.contains(id);
    let running_pods = pods
        .iter()
        .filter(|(_, p)| !p.terminating)
        .map(|(id, _)| *id);
    cluster
        .brokers
        .values()
        .filter(|b| b.draining)
        .map(|b| b.id)
        .chain(
            running_pods
                .chain(config_maps.iter().copied())
                .filter(unknown),
        )
        .chain(
            previous
                .scaling
                .iter()
                .flat_map(|s| s.removing.iter().map(|r| r.broker))
                .filter(|id| match cluster.brokers.get(id) {
                    Some(b) => b.draining,
                    None => left_over(id),
                }),
        )
        .collect()
}

/// The reflector stores of every kind the controller writes (filled by its watches).
#[derive(Clone)]
pub struct OwnedStores {
    /// Broker Pods.
    pub pods: Store<Pod>,
    /// Broker ConfigMaps.
    pub config_maps: Store<ConfigMap>,
    /// The clusters' Services.
    pub services: Store<Service>,
    /// Broker PVCs.
    pub pvcs: Store<PersistentVolumeClaim>,
    /// The agents' ServiceAccounts Stoker created.
    pub service_accounts: Store<ServiceAccount>,
    /// PodDisruptionBudgets.
    pub pdbs: Store<PodDisruptionBudget>,
    /// The agents' ClusterRoleBindings.
    pub bindings: Store<ClusterRoleBinding>,
    /// The agents' ClusterRole.
    pub roles: Store<ClusterRole>,
    /// The agents' per-cluster Roles (the stop Lease).
    pub namespaced_roles: Store<Role>,
    /// Their RoleBindings.
    pub role_bindings: Store<RoleBinding>,
    /// The clusters' stop Leases.
    pub leases: Store<Lease>,
    /// Cruise Control Deployments.
    pub deployments: Store<Deployment>,
    /// Cruise Control Pods (their addresses).
    pub cruise_control_pods: Store<Pod>,
    /// KafkaRebalances the controller created for scaling.
    pub rebalances: Store<KafkaRebalance>,
    /// The agents' mTLS Secrets (CA and per-broker certificates).
    pub certificates: Store<Secret>,
}

impl OwnedStores {
    /// Waits until every store holds its first complete list.
    pub async fn wait_until_ready(&self) -> bool {
        let ready = futures::join!(
            self.pods.wait_until_ready(),
            self.config_maps.wait_until_ready(),
            self.services.wait_until_ready(),
            self.pvcs.wait_until_ready(),
            self.service_accounts.wait_until_ready(),
            self.pdbs.wait_until_ready(),
            self.bindings.wait_until_ready(),
            self.roles.wait_until_ready(),
            self.deployments.wait_until_ready(),
            self.rebalances.wait_until_ready(),
            self.cruise_control_pods.wait_until_ready(),
            self.certificates.wait_until_ready(),
        );
        ready.0.is_ok()
            && ready.1.is_ok()
            && ready.2.is_ok()
            && ready.3.is_ok()
            && ready.4.is_ok()
            && ready.5.is_ok()
            && ready.6.is_ok()
            && ready.7.is_ok()
            && ready.8.is_ok()
            && ready.9.is_ok()
            && ready.10.is_ok()
            && ready.11.is_ok()
            && self.agent_rbac_ready().await
    }

    async fn agent_rbac_ready(&self) -> bool {
        let ready = futures::join!(
            self.namespaced_roles.wait_until_ready(),
            self.role_bindings.wait_until_ready(),
            self.leases.wait_until_ready(),
        );
        ready.0.is_ok() && ready.1.is_ok() && ready.2.is_ok()
    }
}

/// What this coordinator remembers between passes: the status it last wrote to each
/// cluster (by uid), ServiceAccounts that exist but were not made by Stoker (its
/// watch sees only its own), and the claim resizes the API server refused.
#[derive(Debug, Default)]
pub struct Memory {
    written: Mutex<HashMap<String, KafkaClusterStatus>>,
    foreign_accounts: Mutex<HashSet<(String, String)>>,
    refused_resizes: Mutex<HashMap<(String, String), Refusal>>,
}

impl Memory {
    /// Records the status written to the cluster with `uid`.
    pub fn wrote(&self, uid: &str, status: KafkaClusterStatus) {
        self.written
            .lock()
            .expect("the status memory lock is never poisoned")
            .insert(uid.to_owned(), status);
    }

    /// Forgets a deleted cluster.
    pub fn forget(&self, uid: &str) {
        self.written
            .lock()
            .expect("the status memory lock is never poisoned")
            .remove(uid);
    }

    /// Remembers that the API server refused to grow claim `namespace/name`.
    pub fn resize_refused(&self, namespace: &str, name: &str, refusal: Refusal) {
        self.refused_resizes
            .lock()
            .expect("the resize memory lock is never poisoned")
            .insert((namespace.to_owned(), name.to_owned()), refusal);
    }

    /// The refused resizes of claims in `namespace`, by claim.
    fn refused_resizes(&self, namespace: &str) -> BTreeMap<String, Refusal> {
        self.refused_resizes
            .lock()
            .expect("the resize memory lock is never poisoned")
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .map(|((_, name), r)| (name.clone(), r.clone()))
            .collect()
    }

    /// Remembers that ServiceAccount `namespace/name` exists (made by someone else).
    pub fn account_exists(&self, namespace: &str, name: &str) {
        self.foreign_accounts
            .lock()
            .expect("the account memory lock is never poisoned")
            .insert((namespace.to_owned(), name.to_owned()));
    }

    fn knows_account(&self, namespace: &str, name: &str) -> bool {
        self.foreign_accounts
            .lock()
            .expect("the account memory lock is never poisoned")
            .contains(&(namespace.to_owned(), name.to_owned()))
    }
}

/// The status as last written: this coordinator is the only writer of a cluster's
/// status (its alert receiver writes `alerting` alone, which the reconcile never
/// writes), so what it wrote last is newer than a cached copy that predates the write
/// (a Pod event can bring the next pass first, and a stale status would forget the
/// broker a roll restarts).
pub fn previous_status(kc: &KafkaCluster, memory: &Memory) -> KafkaClusterStatus {
    kc.uid()
        .and_then(|uid| {
            memory
                .written
                .lock()
                .expect("the status memory lock is never poisoned")
                .get(&uid)
                .cloned()
        })
        .or_else(|| kc.status.clone())
        .unwrap_or_default()
}

fn existing<K: Resource>(obj: &K) -> Existing {
    Existing {
        hash: obj.annotations().get(ANNOTATION_SPEC_HASH).cloned(),
        resource_version: obj.resource_version(),
    }
}

fn broker_id<K: Resource>(obj: &K) -> Option<i32> {
    obj.labels().get(LABEL_BROKER_ID)?.parse().ok()
}

/// Everything the pass needs of `kc`, from the stores and the agents.
pub async fn observe(
    kc: &KafkaCluster,
    cluster: &ValidatedCluster,
    stores: &OwnedStores,
    memory: &Memory,
    agents: &AgentPool,
    cruise_controls: &CruiseControls,
    agent_image: &str,
) -> Observed {
    let name = kc.name_any();
    let namespace = kc.namespace().unwrap_or_default();
    let ours = |labels: &BTreeMap<String, String>| labels.get(LABEL_CLUSTER) == Some(&name);
    let in_ns = |ns: Option<String>| ns.as_deref() == Some(namespace.as_str());

    let mut existing = BTreeMap::new();
    let mut pods = BTreeMap::new();
    for p in stores.pods.state() {
        if in_ns(p.namespace()) && ours(p.labels()) {
            existing.insert(ObjectKey::new(Kind::Pod, p.name_any()), existing_of(&p));
            if let Some(id) = broker_id(p.as_ref()) {
                pods.insert(id, PodView::of(&p));
            }
        }
    }
    let mut config_maps = BTreeSet::new();
    for c in stores.config_maps.state() {
        if in_ns(c.namespace()) && ours(c.labels()) {
            existing.insert(
                ObjectKey::new(Kind::ConfigMap, c.name_any()),
                existing_of(&c),
            );
            if let Some(id) = broker_id(c.as_ref()) {
                config_maps.insert(id);
            }
        }
    }
    let mut pvcs: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut claims = BTreeMap::new();
    let refused_resizes = memory.refused_resizes(&namespace);
    for p in stores.pvcs.state() {
        if in_ns(p.namespace()) && ours(p.labels()) {
            existing.insert(
                ObjectKey::new(Kind::PersistentVolumeClaim, p.name_any()),
                existing_of(&p),
            );
            if let Some(id) = broker_id(p.as_ref()) {
                pvcs.entry(id).or_default().push(p.name_any());
            }
            claims.insert(p.name_any(), ClaimView::of(&p));
        }
    }
    let mut external = ExternalView::default();
    for s in stores.services.state() {
        if in_ns(s.namespace()) && ours(s.labels()) {
            existing.insert(ObjectKey::new(Kind::Service, s.name_any()), existing_of(&s));
            if s.labels().contains_key(LABEL_LISTENER) {
                external
                    .services
                    .insert(s.name_any(), ExternalServiceView::of(&s));
            }
        }
    }
    external.host_ips = pods
        .iter()
        .filter_map(|(id, p): (&i32, &PodView)| p.host_ip.clone().map(|h| (*id, h)))
        .collect();
    for b in stores.pdbs.state() {
        if in_ns(b.namespace()) && ours(b.labels()) {
            existing.insert(
                ObjectKey::new(Kind::PodDisruptionBudget, b.name_any()),
                existing_of(&b),
            );
        }
    }
    for b in stores.bindings.state() {
        existing.insert(
            ObjectKey::new(Kind::ClusterRoleBinding, b.name_any()),
            existing_of(&b),
        );
    }
    for d in stores.deployments.state() {
        if in_ns(d.namespace()) && ours(d.labels()) {
            existing.insert(
                ObjectKey::new(Kind::Deployment, d.name_any()),
                existing_of(&d),
            );
        }
    }
    for r in stores.rebalances.state() {
        if in_ns(r.namespace()) && ours(r.labels()) {
            existing.insert(
                ObjectKey::new(Kind::KafkaRebalance, r.name_any()),
                existing_of(&r),
            );
        }
    }
    for r in stores.roles.state() {
        existing.insert(
            ObjectKey::new(Kind::ClusterRole, r.name_any()),
            existing_of(&r),
        );
    }
    for r in stores.namespaced_roles.state() {
        if in_ns(r.namespace()) && ours(r.labels()) {
            existing.insert(ObjectKey::new(Kind::Role, r.name_any()), existing_of(&r));
        }
    }
    for b in stores.role_bindings.state() {
        if in_ns(b.namespace()) && ours(b.labels()) {
            existing.insert(
                ObjectKey::new(Kind::RoleBinding, b.name_any()),
                existing_of(&b),
            );
        }
    }
    for l in stores.leases.state() {
        if in_ns(l.namespace()) && ours(l.labels()) {
            existing.insert(ObjectKey::new(Kind::Lease, l.name_any()), existing_of(&l));
        }
    }
    for a in stores.service_accounts.state() {
        if in_ns(a.namespace()) {
            existing.insert(
                ObjectKey::new(Kind::ServiceAccount, a.name_any()),
                existing_of(&a),
            );
        }
    }
    // Accounts the spec names that someone else made: they exist, Stoker never changes them.
    for b in cluster.brokers.values() {
        if let Some(sa) = &b.config.service_account_name
            && memory.knows_account(&namespace, sa)
        {
            existing
                .entry(ObjectKey::new(Kind::ServiceAccount, sa.clone()))
                .or_default();
        }
    }

    let certificate_secrets = stores.certificates.state();
    let ours_certificates = || {
        certificate_secrets
            .iter()
            .filter(|s| in_ns(s.namespace()) && ours(s.labels()))
            .map(AsRef::as_ref)
    };
    let agent_tls = CertificateView::read(
        &CertificateSet::agents(&name, &namespace),
        &name,
        ours_certificates(),
    );
    // A CA the user brings carries the component label but not the cluster's.
    let listener_set =
        CertificateSet::of_listeners(&name, &namespace, cluster.listener_tls.as_ref());
    let listener_tls = CertificateView::read(
        &listener_set,
        &name,
        certificate_secrets
            .iter()
            .filter(|s| {
                in_ns(s.namespace())
                    && (ours(s.labels())
                        || (!listener_set.ca_secret.is_empty()
                            && s.metadata.name.as_deref() == Some(&listener_set.ca_secret)))
            })
            .map(AsRef::as_ref),
    );
    let ca = agent_tls.ca.as_ref();
    let reports = join_all(cluster.brokers.keys().filter_map(|id| {
        let pod = pods.get(id).filter(|p| p.running())?;
        let addr = pod.agent_addr()?;
        let broker = BrokerRef {
            cluster: name.clone(),
            namespace: namespace.clone(),
            broker_id: *id,
        };
        Some(async move {
            let report =
                match tokio::time::timeout(AGENT_STATUS_TIMEOUT, agents.status(ca, &addr, &broker))
                    .await
                {
                    Ok(Ok(s)) => AgentReport::Status(s),
                    Ok(Err(e)) => AgentReport::Unreachable(error_chain(&e)),
                    Err(_) => AgentReport::Unreachable(format!(
                        "agent {addr} did not answer GetStatus within {AGENT_STATUS_TIMEOUT:?}"
                    )),
                };
            (broker.broker_id, report)
        })
    }))
    .await;

    let previous = previous_status(kc, memory);
    let draining = draining_brokers(cluster, &pods, &config_maps, &previous);
    // What each draining broker, and each broker with a disk on its way out, holds,
    // from its own agent (never guessed).
    let asked: BTreeSet<i32> = draining
        .iter()
        .copied()
        .chain(
            cluster
                .brokers
                .values()
                .filter(|b| !b.removing_disks.is_empty())
                .map(|b| b.id),
        )
        .collect();
    let replicas = join_all(asked.iter().map(|&id| {
        let addr = pods
            .get(&id)
            .filter(|p| p.running())
            .and_then(PodView::agent_addr);
        let broker = BrokerRef {
            cluster: name.clone(),
            namespace: namespace.clone(),
            broker_id: id,
        };
        async move {
            let answer = match addr {
                None => Err("its Pod is not running".to_owned()),
                Some(addr) => match tokio::time::timeout(
                    SAFE_TO_STOP_TIMEOUT,
                    agents.describe_replicas(ca, &addr, &broker),
                )
                .await
                {
                    Ok(Ok(r)) => Ok(r),
                    Ok(Err(e)) => Err(format!("its agent did not answer: {}", error_chain(&e))),
                    Err(_) => Err(format!(
                        "its agent did not answer DescribeReplicas within {SAFE_TO_STOP_TIMEOUT:?}"
                    )),
                },
            };
            (broker.broker_id, answer)
        }
    }))
    .await
    .into_iter()
    .collect();
    let rebalances = stores
        .rebalances
        .state()
        .iter()
        .filter(|r| in_ns(r.namespace()) && ours(r.labels()))
        .map(|r| {
            let st = r.status.clone().unwrap_or_default();
            (
                r.name_any(),
                RebalanceView {
                    goal_reached: r
                        .annotations()
                        .contains_key(crate::crd::v1alpha1::GOAL_REACHED_ANNOTATION),
                    mode: r.spec.mode,
                    brokers: r.spec.brokers.clone(),
                    state: st.state.unwrap_or_default(),
                    message: st.message.unwrap_or_default(),
                },
            )
        })
        .collect();
    let cruise_control = if cluster.cruise_control.is_some() {
        let all_pods = stores.cruise_control_pods.state();
        let endpoint = cruise_control::endpoint(kc, all_pods.iter().map(AsRef::as_ref));
        let state = match &endpoint {
            Err(why) => Err(why.clone()),
            Ok(url) => {
                let since = std::time::Instant::now()
                    .checked_sub(CRUISE_CONTROL_STATE_MAX_AGE)
                    .unwrap_or_else(std::time::Instant::now);
                cruise_controls
                    .state(url, since, AGENT_STATUS_TIMEOUT)
                    .await
            }
        };
        Some(CruiseControlView { endpoint, state })
    } else {
        None
    };

    Observed {
        identity: Identity {
            name,
            namespace,
            owner: kc
                .controller_owner_ref(&())
                .expect("a stored KafkaCluster has a uid"),
            agent_image: agent_image.to_owned(),
            generation: kc.metadata.generation,
        },
        previous,
        draining,
        existing,
        pods,
        config_maps,
        pvcs,
        claims,
        refused_resizes,
        agents: reports.into_iter().collect(),
        verdicts: BTreeMap::new(),
        replicas,
        rebalances,
        cruise_control,
        agent_tls,
        listener_tls,
        external,
        fresh_cluster_id: super::new_cluster_id(),
        now: crate::controller::conditions::now(),
        now_unix: time::OffsetDateTime::now_utc().unix_timestamp(),
    }
}

fn existing_of<K: Resource>(obj: &std::sync::Arc<K>) -> Existing {
    existing(obj.as_ref())
}

/// Asks the agent of `question.broker` whether it may stop (together with
/// `question.with`). Anything but a clear "safe" is unsafe, with the reason.
pub async fn ask_safe_to_stop(
    observed: &Observed,
    agents: &AgentPool,
    question: &StopQuestion,
) -> Verdict {
    let Some(addr) = observed
        .pods
        .get(&question.broker)
        .and_then(PodView::agent_addr)
    else {
        return Verdict::Unsafe("its Pod has no address".into());
    };
    let broker = BrokerRef {
        cluster: observed.identity.name.clone(),
        namespace: observed.identity.namespace.clone(),
        broker_id: question.broker,
    };
    match tokio::time::timeout(
        SAFE_TO_STOP_TIMEOUT,
        agents.safe_to_stop(
            observed.agent_tls.ca.as_ref(),
            &addr,
            &broker,
            &question.with,
        ),
    )
    .await
    {
        Ok(Ok(v)) if v.safe => Verdict::Safe,
        Ok(Ok(v)) => Verdict::Unsafe(v.reason),
        Ok(Err(e)) => Verdict::Unsafe(format!(
            "its agent did not answer SafeToStop: {}",
            error_chain(&e)
        )),
        Err(_) => Verdict::Unsafe(format!(
            "its agent did not answer SafeToStop within {SAFE_TO_STOP_TIMEOUT:?}"
        )),
    }
}

/// The store key of a namespaced object.
pub fn key_in<K: Resource<DynamicType = ()>>(name: &str, namespace: &str) -> ObjectRef<K> {
    ObjectRef::new(name).within(namespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        controller::kafka_cluster::{test_support::example_spec, validate::validate},
        crd::v1alpha1::{BrokerRemoval, RemovalState, ScalingStatus},
    };

    fn pod(terminating: bool) -> PodView {
        PodView {
            name: "p".into(),
            phase: Some("Running".into()),
            ip: None,
            host_ip: None,
            ready: !terminating,
            terminating,
            hash: None,
            mount_paths: BTreeSet::new(),
        }
    }

    fn was_removing(id: i32) -> KafkaClusterStatus {
        KafkaClusterStatus {
            scaling: Some(ScalingStatus {
                removing: vec![BrokerRemoval {
                    broker: id,
                    state: RemovalState::Draining,
                    ..BrokerRemoval::default()
                }],
                ..ScalingStatus::default()
            }),
            ..KafkaClusterStatus::default()
        }
    }

    #[test]
    fn a_removed_brokers_terminating_pod_does_not_make_it_draining_again() {
        // Broker 7 is in no spec; a pass removed it: Pod terminating, ConfigMap gone.
        let cluster = validate(&example_spec()).expect("valid");
        let pods = BTreeMap::from([(7, pod(true))]);
        let none = BTreeSet::new();
        assert!(draining_brokers(&cluster, &pods, &none, &was_removing(7)).is_empty());
        assert!(
            draining_brokers(&cluster, &BTreeMap::new(), &none, &was_removing(7)).is_empty(),
            "nothing left of it: the removal is over"
        );
    }

    #[test]
    fn anything_left_of_a_broker_the_spec_lacks_keeps_it_draining() {
        let cluster = validate(&example_spec()).expect("valid");
        let none = BTreeSet::new();
        // A running Pod of an unknown broker, or its ConfigMap (its Pod died mid-drain).
        let running = BTreeMap::from([(7, pod(false))]);
        assert_eq!(
            draining_brokers(&cluster, &running, &none, &KafkaClusterStatus::default()),
            BTreeSet::from([7])
        );
        let config = BTreeSet::from([7]);
        assert_eq!(
            draining_brokers(&cluster, &BTreeMap::new(), &config, &was_removing(7)),
            BTreeSet::from([7])
        );
        // A broker back in the spec is not draining, whatever a past pass thought.
        assert!(draining_brokers(&cluster, &BTreeMap::new(), &none, &was_removing(0)).is_empty());
        // One re-added from its last entry (still draining) stays so with no Pod at all:
        // its Pod is made again.
        let mut with_draining = cluster.clone();
        if let Some(b) = with_draining.brokers.get_mut(&2) {
            b.draining = true;
        }
        assert_eq!(
            draining_brokers(&with_draining, &BTreeMap::new(), &none, &was_removing(2)),
            BTreeSet::from([2])
        );
    }
}
