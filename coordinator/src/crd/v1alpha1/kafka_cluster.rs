//! `KafkaCluster`: a superset of Koperator's `KafkaCluster` (`kafka.banzaicloud.io/v1beta1`)
//! with the same field names and meanings, so a Koperator user migrates by changing
//! `apiVersion`. KRaft only: controllers are brokers entries whose `processRoles`
//! include `controller`; `zkAddresses` and `zkPath` are accepted by the schema only so
//! that validation can say what to do instead.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EmptyDirVolumeSource, EnvVar, LocalObjectReference, PersistentVolumeClaimSpec,
    PodSecurityContext, ResourceRequirements, SecurityContext, Toleration,
};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// The desired state of a Kafka cluster.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "kafka.stoker.io",
    version = "v1alpha1",
    kind = "KafkaCluster",
    plural = "kafkaclusters",
    shortname = "kc",
    namespaced,
    status = "KafkaClusterStatus",
    printcolumn = r#"{"name":"Ready","type":"string","description":"Ready brokers / desired brokers","jsonPath":".status.readyBrokers"}"#,
    printcolumn = r#"{"name":"State","type":"string","description":"Cluster state","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("self.brokers.all(b, self.brokers.exists_one(c, c.id == b.id))").message("broker ids must be unique: two entries of spec.brokers have the same id"),
    validation = Rule::new("self.brokers.all(b, !has(b.brokerConfigGroup) || (has(self.brokerConfigGroups) && b.brokerConfigGroup in self.brokerConfigGroups))").message("every spec.brokers[].brokerConfigGroup must name a group defined in spec.brokerConfigGroups"),
    validation = Rule::new("self.listenersConfig.internalListeners.all(l, self.listenersConfig.internalListeners.exists_one(m, m.name == l.name))").message("listener names must be unique in spec.listenersConfig.internalListeners"),
    validation = Rule::new("!has(self.listenersConfig.externalListeners) || self.listenersConfig.externalListeners.all(e, !self.listenersConfig.internalListeners.exists(i, i.name == e.name))").message("an external listener may not reuse the name of an internal listener")
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterSpec {
    /// One headless Service for all brokers (true) or one Service per broker plus an
    /// all-broker Service (false).
    #[serde(default)]
    pub headless_service_enabled: bool,
    /// Not supported: Kafka 4 runs KRaft only. Declare controllers with
    /// `brokerConfig.processRoles: [controller]` instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zk_addresses: Vec<String>,
    /// Not supported: Kafka 4 runs KRaft only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zk_path: Option<String>,
    /// The brokers' listeners.
    pub listeners_config: ListenersConfig,
    /// Every broker and controller, each managed individually.
    #[schemars(length(min = 1, max = 256))]
    pub brokers: Vec<Broker>,
    /// Named templates of broker settings; a broker's own `brokerConfig` overrides its group.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub broker_config_groups: BTreeMap<String, BrokerConfig>,
    /// Static server.properties lines shared by every broker (a change restarts brokers).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub read_only_config: String,
    /// Dynamic cluster-wide config lines, applied without restarts.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_wide_config: String,
    /// Node label names whose values form each broker's `broker.rack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack_awareness: Option<RackAwareness>,
    /// At most one broker per Kubernetes node (pod anti-affinity on the hostname).
    #[serde(default)]
    pub one_broker_per_node: bool,
    /// The Kafka image for brokers that set none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_image: Option<String>,
    /// How changes roll through the brokers.
    #[serde(default)]
    pub rolling_upgrade_config: RollingUpgradeConfig,
    /// Cruise Control settings (used by rebalancing and scaling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cruise_control_config: Option<CruiseControlConfig>,
    /// The PodDisruptionBudget of the brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disruption_budget: Option<DisruptionBudget>,
    /// Environment variables of every broker's Kafka container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub envs: Vec<EnvVar>,
    /// What happens to a removed broker's volumes: `Retain` (default) keeps its PVCs,
    /// `Delete` deletes them once the broker is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc_deletion_policy: Option<PvcDeletionPolicy>,
    /// Whether and how far alerts may scale this cluster (the alert receiver's guards);
    /// unset: alerts never change it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_manager_config: Option<AlertManagerConfig>,
    /// Kafka's JMX metrics: every broker runs the Prometheus JMX exporter, and its agent
    /// serves the series on its own `/metrics` with the labels `kafka_cr`, `namespace`
    /// and `brokerId`. Unset: the exporter from the agent's image with Stoker's rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring_config: Option<MonitoringConfig>,
    /// How `LoadBalancer` external listeners are exposed. Unset: a load balancer per
    /// broker. `haproxy`: one load balancer per listener in front of an HAProxy
    /// Deployment that routes `externalStartingPort + id` to broker `id` (TCP
    /// passthrough) — the seed's single-load-balancer model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_controller: Option<String>,
    /// The HAProxy Deployment of `ingressController: haproxy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub haproxy_config: Option<HaproxyConfig>,
}

/// The proxy in front of the brokers with `ingressController: haproxy`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HaproxyConfig {
    /// Its image (default `haproxy:2.6`): any whose `haproxy` is on `PATH` and that
    /// has `/bin/sh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Proxies behind the load balancer (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16))]
    pub replicas: Option<i32>,
    /// Its container's resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_requirements: Option<ResourceRequirements>,
}

/// Where the brokers' JMX exporter comes from and what it exports (Koperator's field
/// names). With neither `jmxImage` nor `pathToJar`, the agent copies the exporter its
/// own image carries into the Pod, so any Kafka image works.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringConfig {
    /// An image holding the JMX exporter javaagent jar at `pathToJar`: an init
    /// container copies it into the Pod (Koperator's way; the image needs `cp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jmx_image: Option<String>,
    /// The jar's path: in `jmxImage` when that is set (default
    /// `/jmx_prometheus_javaagent.jar`), otherwise in the Kafka image itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_to_jar: Option<String>,
    /// The exporter's YAML config (its `rules`), replacing Stoker's. Changes are
    /// picked up by the running exporter: no broker restarts.
    #[serde(
        default,
        rename = "kafkaJMXExporterConfig",
        skip_serializing_if = "Option::is_none"
    )]
    pub kafka_jmx_exporter_config: Option<String>,
    /// Not supported: Cruise Control's own JMX metrics are not exported yet. The
    /// schema accepts it only so validation can say so.
    #[serde(
        default,
        rename = "cCJMXExporterConfig",
        skip_serializing_if = "Option::is_none"
    )]
    pub cc_jmx_exporter_config: Option<String>,
}

/// The guards of alert-driven scaling. An alert acts only on a cluster that has this,
/// only while the cluster runs with nothing else under way, and never beyond its limits.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertManagerConfig {
    /// `downScale` is refused when the cluster has this many brokers or fewer (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub down_scale_limit: Option<i32>,
    /// `upScale` is refused when the cluster has this many brokers or more; unset: no
    /// limit below the schema's 256 entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub up_scale_limit: Option<i32>,
    /// The largest disk `addPvc` creates or `resizePvc` grows to (a quantity, e.g.
    /// `500Gi`); unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_disk_size: Option<String>,
    /// Seconds after an action during which no alert acts on this cluster (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub cooldown_seconds: Option<i64>,
    /// Decide and report (Events, metrics) but change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// What happens to a removed broker's PVCs.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum PvcDeletionPolicy {
    /// Keep them (the default): data is never deleted unless asked for.
    #[default]
    Retain,
    /// Delete them when the broker is removed from the spec.
    Delete,
}

/// One broker (or controller) of the cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Broker {
    /// Kafka `node.id`, 0..=65535.
    #[schemars(range(min = 0, max = 65535))]
    pub id: i32,
    /// The `brokerConfigGroups` entry this broker starts from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_config_group: Option<String>,
    /// This broker's own static server.properties lines.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub read_only_config: String,
    /// This broker's settings; they override its group's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_config: Option<BrokerConfig>,
}

/// Settings of a broker, or of a group of brokers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BrokerConfig {
    /// KRaft roles: `broker`, `controller` or both (default: broker).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub process_roles: Vec<String>,
    /// The Kafka image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Per-broker dynamic config lines, applied without restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// Data volumes: one PVC (or emptyDir) per entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage_configs: Vec<StorageConfig>,
    /// Resources of the Kafka container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_requirements: Option<ResourceRequirements>,
    /// Node selector of the broker Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Affinity of the broker Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Tolerations of the broker Pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Annotations of the broker Pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub broker_annotations: BTreeMap<String, String>,
    /// Labels of the broker Pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub broker_labels: BTreeMap<String, String>,
    /// Environment variables of the Kafka container (after the cluster's `envs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub envs: Vec<EnvVar>,
    /// KAFKA_HEAP_OPTS (default `-Xmx2G -Xms2G`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_heap_opts: Option<String>,
    /// KAFKA_JVM_PERFORMANCE_OPTS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_jvm_perf_opts: Option<String>,
    /// ServiceAccount of the broker Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Pull secrets of the broker Pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// The broker Pod's security context (Koperator's field). Unset: Pod Security
    /// Standard `restricted` — non-root (uid and gid 1000, the `apache/kafka` image's
    /// user), `fsGroup` 1000 so the user can write its volumes, seccomp `RuntimeDefault`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security_context: Option<PodSecurityContext>,
    /// The Kafka container's security context (Koperator's field). Unset: no privilege
    /// escalation, every capability dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// Grace period of the broker Pod (default 120 s, room for the agent's safety wait).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
}

/// One data volume of a broker.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageConfig {
    /// Where the volume is mounted; Kafka's log dir is `<mountPath>/kafka`.
    pub mount_path: String,
    /// The PVC to create for this volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc_spec: Option<PersistentVolumeClaimSpec>,
    /// An emptyDir instead of a PVC (data is lost with the Pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirVolumeSource>,
}

/// The brokers' listeners.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ListenersConfig {
    /// Listeners inside the Kubernetes cluster.
    #[schemars(length(min = 1, max = 16))]
    pub internal_listeners: Vec<InternalListener>,
    /// Listeners reachable from outside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub external_listeners: Option<Vec<ExternalListener>>,
    /// The CA of the TLS listeners, client listeners and those between nodes (required
    /// with an `ssl`/`sasl_ssl` listener); it also signs TLS KafkaUsers' certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_secrets: Option<SslSecrets>,
}

/// A listener inside the Kubernetes cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InternalListener {
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Listener name (lower case in the spec; upper case in Kafka).
    #[schemars(length(min = 1, max = 32))]
    pub name: String,
    /// Port the brokers bind.
    #[schemars(range(min = 1, max = 65535))]
    pub container_port: i32,
    /// Brokers replicate over this listener.
    #[serde(default)]
    pub used_for_inner_broker_communication: bool,
    /// Controllers talk over this listener.
    #[serde(default)]
    pub used_for_controller_communication: bool,
}

/// A listener reachable from outside the Kubernetes cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalListener {
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Listener name.
    #[schemars(length(min = 1, max = 32))]
    pub name: String,
    /// Port the brokers bind.
    #[schemars(range(min = 1, max = 65535))]
    pub container_port: i32,
    /// Broker N is reached and advertised on `externalStartingPort + N`.
    pub external_starting_port: i32,
    /// `LoadBalancer` (the default: one per broker, plus one to bootstrap) or
    /// `NodePort` (broker N on node port `externalStartingPort + N`, advertised on the
    /// address of the Node it runs on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_method: Option<String>,
    /// Host every broker advertises instead of its Service's (or Node's) address,
    /// e.g. a DNS name over the load balancers or the Nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname_override: Option<String>,
}

/// The CA of the `ssl`/`sasl_ssl` client listeners: it signs every broker's certificate.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SslSecrets {
    /// Secret in the cluster's namespace holding the CA: `ca.crt` and `ca.key`.
    pub tls_secret_name: String,
    /// Stoker creates the CA in that Secret when it is missing. With false the CA is
    /// yours to bring (label the Secret app.kubernetes.io/component=listener-tls).
    #[serde(default)]
    pub create: bool,
}

/// Rack awareness.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct RackAwareness {
    /// Node label names; their values, joined with commas, become `broker.rack`.
    pub labels: Vec<String>,
}

/// How changes roll through the brokers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RollingUpgradeConfig {
    /// A roll waits while this many brokers (or more) are failing: Pod missing or not
    /// running, agent not ready, or replicas out of their partitions' ISR.
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1))]
    pub failure_threshold: i32,
    /// Brokers of one rack restarted at once (default 1).
    #[serde(default = "default_concurrent_restarts")]
    #[schemars(range(min = 1))]
    pub concurrent_broker_restart_count_per_rack: i32,
}

const fn default_failure_threshold() -> i32 {
    1
}

const fn default_concurrent_restarts() -> i32 {
    1
}

impl Default for RollingUpgradeConfig {
    fn default() -> Self {
        Self {
            failure_threshold: default_failure_threshold(),
            concurrent_broker_restart_count_per_rack: default_concurrent_restarts(),
        }
    }
}

/// Cruise Control: the balancer that moves partitions when brokers or disks are added
/// or removed. Stoker deploys it (Deployment, Service, ConfigMap) and runs its metrics
/// reporter in every broker, unless `cruiseControlEndpoint` names one that runs already.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CruiseControlConfig {
    /// Cruise Control's image (`/opt/cruise-control` with `bin/kafka-cruise-control-start.sh`
    /// and `libs/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// ServiceAccount of the Cruise Control Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// `cruisecontrol.properties` lines, over Stoker's defaults (the connection, file and
    /// web server keys are Stoker's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    /// `capacity.json`: each broker's disk (MB), CPU (%) and network (KB/s) capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_config: Option<String>,
    /// `clusterConfigs.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_configs: Option<String>,
    /// An existing Cruise Control to use instead of deploying one (host:port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cruise_control_endpoint: Option<String>,
    /// Resources of the Cruise Control container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_requirements: Option<ResourceRequirements>,
    /// The `__CruiseControlMetrics` topic the brokers' reporters create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_config: Option<CruiseControlTopicConfig>,
    /// Replication throttle, in bytes/s, for the KafkaRebalances the coordinator creates
    /// itself (brokers added or removed, disks balanced); unset: none. Cruise Control
    /// spends about 10 s per broker after each batch confirming the throttle's removal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub replication_throttle: Option<i64>,
}

/// The `__CruiseControlMetrics` topic.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CruiseControlTopicConfig {
    /// Partitions (default 12).
    #[schemars(range(min = 1))]
    pub partitions: i32,
    /// Replication factor (default: 3, or the number of brokers when fewer).
    #[schemars(range(min = 1))]
    pub replication_factor: i32,
}

/// The brokers' PodDisruptionBudget.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct DisruptionBudget {
    /// Create the budget.
    #[serde(default)]
    pub create: bool,
    /// How many brokers (or what percentage, e.g. "20%") may be down at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<String>,
}

/// The observed state of a Kafka cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The cluster's state (the `State` column of `kubectl get`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ClusterState>,
    /// "ready/desired", for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_brokers: Option<String>,
    /// The KRaft cluster id, generated once and kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Kubernetes-style conditions: Ready, Reconciling, Degraded, Invalid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Per-broker state, by broker id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub brokers_state: BTreeMap<String, BrokerStatus>,
    /// The rolling restart in progress, if any (kept here, not in memory, so a
    /// restarted coordinator resumes where it was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_upgrade: Option<RollingUpgradeStatus>,
    /// Brokers being added or removed (kept here, so a restarted coordinator resumes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ScalingStatus>,
    /// The cluster's Cruise Control, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cruise_control: Option<CruiseControlStatus>,
    /// What alerts did to the cluster (written by the alert receiver, so that dedup and
    /// cooldown survive coordinator restarts and hold across replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerting: Option<AlertingStatus>,
    /// Where clients outside Kubernetes reach the cluster (Koperator's shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_statuses: Option<ListenerStatuses>,
}

/// The addresses of the cluster's listeners.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatuses {
    /// By external listener name: `any-broker` (the bootstrap Service) and
    /// `broker-<id>`, each with the address clients connect to. An address not known
    /// yet is absent; the `ExternalAccessPending` condition says what it waits for.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external_listeners: BTreeMap<String, Vec<ListenerAddress>>,
}

/// One address of a listener.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ListenerAddress {
    /// `any-broker` or `broker-<id>`.
    pub name: String,
    /// `host:port`.
    pub address: String,
}

/// The alert receiver's record of a cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertingStatus {
    /// The latest action an alert took; the cooldown runs from its `at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_action: Option<AlertAction>,
    /// The alerts that acted, newest last (at most 20, none older than a week): a
    /// notification of one of them again is a replay and does not act again within
    /// the cooldown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handled: Vec<AlertAction>,
}

/// One change an alert made.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertAction {
    /// The alert's name (`alertname`).
    pub alert: String,
    /// The alert's fingerprint (its labels' hash).
    pub fingerprint: String,
    /// When the alert started firing (its `startsAt`).
    pub starts_at: String,
    /// The command (`upScale`, `downScale`, `addPvc`, `resizePvc`).
    pub command: String,
    /// What changed, in words.
    pub change: String,
    /// When (RFC 3339).
    pub at: String,
}

/// Brokers joining or leaving.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScalingStatus {
    /// Brokers added to `spec.brokers` whose partitions are still to be moved onto them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<i32>,
    /// Brokers removed from `spec.brokers` that still run: they are drained first and
    /// deleted only once they hold no replica.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<BrokerRemoval>,
    /// Disks added to or removed from a broker's `storageConfigs` that are still being
    /// balanced onto or emptied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<DiskChange>,
}

/// One disk joining or leaving a broker.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DiskChange {
    /// The broker.
    pub broker: i32,
    /// The disk's `storageConfigs[].mountPath`.
    pub mount_path: String,
    /// Added or removed.
    pub change: DiskChangeKind,
    /// Where the change is.
    pub state: DiskState,
    /// What it waits for, in words.
    pub message: String,
    /// The KafkaRebalance balancing onto or emptying the disk, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebalance: Option<String>,
    /// When the change began (RFC 3339).
    pub since: String,
}

/// Whether a disk joins or leaves.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum DiskChangeKind {
    /// Added to `storageConfigs`: mounted by a safe restart, then balanced onto.
    #[default]
    Adding,
    /// Removed from `storageConfigs`: emptied first, then unmounted by a safe restart.
    Removing,
}

/// Where a disk change is.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum DiskState {
    /// Waiting for the broker to run with the disk mounted (an added disk).
    #[default]
    Mounting,
    /// Cruise Control moves replicas between the broker's disks.
    Balancing,
    /// Replicas are moved off the disk (a removed disk).
    Draining,
    /// The disk holds nothing; the broker restarts safely without it.
    Unmounting,
    /// It cannot go on as things are; `message` says why and what to do.
    Blocked,
}

/// One broker on its way out.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BrokerRemoval {
    /// Its id.
    pub broker: i32,
    /// Where its removal is.
    pub state: RemovalState,
    /// What it waits for, in words.
    pub message: String,
    /// The KafkaRebalance moving its replicas off, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebalance: Option<String>,
    /// When its removal began (RFC 3339).
    pub since: String,
}

/// Where a broker's removal is.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum RemovalState {
    /// Its replicas are being moved off.
    #[default]
    Draining,
    /// It cannot be removed as things are; `message` says why and what to do.
    Blocked,
}

/// What the coordinator last saw of the cluster's Cruise Control.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CruiseControlStatus {
    /// It answers and has sampled every partition: it can propose movements.
    pub ready: bool,
    /// Where it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Its load monitor's state (`RUNNING`, `SAMPLING`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_state: Option<String>,
    /// Share of partitions with enough samples, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring_coverage_pct: Option<f64>,
    /// Its executor's state (`NO_TASK_IN_PROGRESS`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_state: Option<String>,
    /// Why it is not ready, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What the cluster is doing, as a whole.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum ClusterState {
    /// Objects are being created or brokers are not all ready yet.
    #[default]
    Reconciling,
    /// Every broker is ready and nothing waits.
    Running,
    /// A rolling restart is under way (see `rollingUpgrade`).
    RollingUpgrading,
    /// Brokers are being added or drained for removal (see `scaling`).
    Scaling,
    /// The spec cannot be reconciled (see the `Invalid` condition); nothing is changed.
    Invalid,
}

/// What one broker is doing.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum BrokerState {
    /// Its Pod is not running yet (missing, or created and starting).
    #[default]
    Pending,
    /// Its Pod runs and its agent reports the broker ready.
    Ready,
    /// Its Pod runs but the broker is not ready (see `notReadyReason`).
    NotReady,
    /// Its Pod is stopping.
    Stopping,
    /// A rolling restart replaces its Pod now.
    Restarting,
    /// It was removed from `spec.brokers`; its replicas move off before it goes.
    Draining,
}

/// Why a broker waits for a restart.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord,
)]
pub enum RestartCauseKind {
    /// The Pod's template changed (image, resources, JVM options, volumes or scheduling):
    /// Pods are never changed in place.
    PodTemplate,
    /// Static (read-only) broker config keys changed; they apply at the next start.
    StaticConfig,
    /// A claim grew but its filesystem grows only when the Pod mounts it again
    /// (`FileSystemResizePending`); `keys` are the claims.
    FilesystemResize,
}

/// One reason a broker waits for a restart.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct RestartCause {
    /// What changed.
    pub kind: RestartCauseKind,
    /// For `StaticConfig`: the keys, as the broker's agent reports them; for
    /// `FilesystemResize`: the claims.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
}

/// Progress of a rolling restart.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RollingUpgradeStatus {
    /// When the roll began (RFC 3339).
    pub started_at: String,
    /// The brokers being restarted (one, or several of one rack with
    /// `concurrentBrokerRestartCountPerRack`): their Pods were deleted and the roll waits
    /// for them to be back, ready and caught up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_progress: Vec<BrokerRestart>,
    /// Brokers restarted so far in this roll, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restarted: Vec<i32>,
    /// What the roll waits for now, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
}

/// One broker restart of a roll.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BrokerRestart {
    /// Node id.
    pub broker: i32,
    /// When its restart began (RFC 3339).
    pub started_at: String,
}

/// A condition (the shape of `metav1.Condition`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Ready, Reconciling, Degraded or Invalid.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// A PascalCase reason.
    pub reason: String,
    /// What a person should know.
    pub message: String,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
    /// The generation the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The state of one broker.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BrokerStatus {
    /// What the broker is doing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<BrokerState>,
    /// The Pod's phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_phase: Option<String>,
    /// The agent's readiness.
    #[serde(default)]
    pub ready: bool,
    /// Why the broker is not ready, as its agent says (or why its agent cannot say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_ready_reason: Option<String>,
    /// Hash of the desired config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_config_hash: Option<String>,
    /// Hash of the config in force, as the agent reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash_in_force: Option<String>,
    /// True when a change waits for a restart.
    #[serde(default)]
    pub restart_needed: bool,
    /// Why a restart is needed, in words (from `restartCauses`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_reason: Option<String>,
    /// Why a restart is needed: each change that waits for one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restart_causes: Vec<RestartCause>,
    /// Partitions with a replica on this broker that is not in their ISR (the broker
    /// has not caught up), as the agent reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_of_sync_partitions: Option<u32>,
    /// The broker.rack it runs with, as its agent last reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    /// Its `spec.brokers` entry as last reconciled (JSON): what keeps it running, and
    /// its Pod recreated, while it drains after being removed from the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied: Option<String>,
    /// The disks the broker was last built with, disks still being emptied included:
    /// what tells a disk removed from `storageConfigs` from one it never had.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage_configs: Vec<StorageConfig>,
}
