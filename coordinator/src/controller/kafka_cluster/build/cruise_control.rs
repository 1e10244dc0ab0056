//! Cruise Control for a cluster, from `cruiseControlConfig`: its ConfigMap
//! (`cruisecontrol.properties` — Stoker's defaults, then the user's lines —,
//! `capacity.json`, `clusterConfigs.json`), its Deployment and its Service
//! (`<cluster>-cruisecontrol-svc`, Koperator's name), and the metrics reporter every
//! broker runs. Pure.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy},
        core::v1::{
            ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, PodSpec,
            PodTemplateSpec, Probe, Service, ServicePort, ServiceSpec, TCPSocketAction, Volume,
            VolumeMount,
        },
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};

use super::{ClusterMeta, advertised_host, cluster_labels};
use crate::{
    controller::kafka_cluster::validate::ValidatedCluster,
    cruise_control::{API_PREFIX, COMPONENT, LABEL_COMPONENT, LABEL_INSTANCE, PORT},
};

/// The image Stoker runs Cruise Control from when `cruiseControlConfig.image` is unset.
pub const DEFAULT_IMAGE: &str = "ghcr.io/stoker-operator/cruise-control:2.5.146";
/// Where the image has Cruise Control.
pub const HOME_IN_IMAGE: &str = "/opt/cruise-control";
/// Where the ConfigMap is mounted.
pub const CONFIG_DIR: &str = "/etc/cruise-control";
/// The metrics reporter class (its jar is in the Kafka image's `libs/`).
pub const REPORTER_CLASS: &str =
    "com.linkedin.kafka.cruisecontrol.metricsreporter.CruiseControlMetricsReporter";
/// `cruisecontrol.properties` keys Stoker sets from the cluster and the Pod.
pub const OWNED_KEYS: &[&str] = &[
    "bootstrap.servers",
    "cruise.control.metrics.reporter.metrics.reporting.interval.ms",
    "capacity.config.file",
    "cluster.configs.file",
    "webserver.http.port",
    "webserver.http.address",
    "webserver.api.urlprefix",
];
/// `capacity.json` when the spec gives none: 100 GB of disk, 100% of a CPU and
/// 1 Gbit/s each way per broker (Cruise Control's own sample values).
pub const DEFAULT_CAPACITY: &str = r#"{"brokerCapacities":[{"brokerId":"-1","capacity":{"DISK":"100000","CPU":"100","NW_IN":"125000","NW_OUT":"125000"},"doc":"Stoker's default for every broker"}]}"#;

/// What the validated spec says about Cruise Control.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedCruiseControl {
    /// Deploy it (false: `cruiseControlEndpoint` names one).
    pub deploy: bool,
    /// Its image.
    pub image: String,
    /// Its ServiceAccount.
    pub service_account_name: Option<String>,
    /// The user's `cruisecontrol.properties` lines, parsed.
    pub config: BTreeMap<String, String>,
    /// `capacity.json`.
    pub capacity: String,
    /// `clusterConfigs.json`.
    pub cluster_configs: String,
    /// Resources of its container.
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    /// Partitions of `__CruiseControlMetrics`.
    pub topic_partitions: i32,
    /// Its replication factor (None: 3, or fewer brokers).
    pub topic_replication_factor: Option<i32>,
}

/// `<cluster>-cruisecontrol-svc`.
pub fn service_name(meta: &ClusterMeta) -> String {
    format!("{}-cruisecontrol-svc", meta.name)
}

/// `<cluster>-cruisecontrol`: the Deployment and its ConfigMap.
pub fn name(meta: &ClusterMeta) -> String {
    format!("{}-cruisecontrol", meta.name)
}

fn labels(meta: &ClusterMeta) -> BTreeMap<String, String> {
    let mut l = cluster_labels(meta);
    l.insert(LABEL_COMPONENT.to_owned(), COMPONENT.to_owned());
    l
}

/// Labels of Cruise Control's Pod: not `kafka_cr`, which selects the cluster's brokers.
fn selector(meta: &ClusterMeta) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_INSTANCE.to_owned(), meta.name.clone()),
        (LABEL_COMPONENT.to_owned(), COMPONENT.to_owned()),
    ])
}

/// The brokers Cruise Control connects to: every broker on the inner-broker listener.
fn bootstrap(meta: &ClusterMeta, cluster: &ValidatedCluster) -> String {
    let port = cluster
        .listeners
        .iter()
        .find(|l| l.name == cluster.inter_broker_listener)
        .map_or(9092, |l| l.port);
    cluster
        .brokers
        .values()
        .filter(|b| b.roles.broker)
        .map(|b| format!("{}:{port}", advertised_host(meta, b.id)))
        .collect::<Vec<_>>()
        .join(",")
}

fn broker_count(cluster: &ValidatedCluster) -> i32 {
    i32::try_from(cluster.brokers.values().filter(|b| b.roles.broker).count()).unwrap_or(i32::MAX)
}

/// The goals Stoker asks Cruise Control to optimize for: its defaults, with the
/// rack-aware *distribution* goal instead of the strict rack-aware goal, which fails
/// outright when a topic has more replicas than the cluster has racks (a one-zone
/// cluster, or none set).
const GOALS: &[&str] = &[
    "RackAwareDistributionGoal",
    "ReplicaCapacityGoal",
    "DiskCapacityGoal",
    "NetworkInboundCapacityGoal",
    "NetworkOutboundCapacityGoal",
    "CpuCapacityGoal",
    "ReplicaDistributionGoal",
    "PotentialNwOutGoal",
    "DiskUsageDistributionGoal",
    "NetworkInboundUsageDistributionGoal",
    "NetworkOutboundUsageDistributionGoal",
    "CpuUsageDistributionGoal",
    "TopicReplicaDistributionGoal",
    "LeaderReplicaDistributionGoal",
    "LeaderBytesInDistributionGoal",
];
/// Goals a proposal must satisfy.
const HARD_GOALS: &[&str] = &[
    "RackAwareDistributionGoal",
    "ReplicaCapacityGoal",
    "DiskCapacityGoal",
];

fn goal_list(goals: &[&str]) -> String {
    goals
        .iter()
        .map(|g| format!("com.linkedin.kafka.cruisecontrol.analyzer.goals.{g}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Stoker's defaults of `cruisecontrol.properties` for a cluster of `brokers` brokers.
pub fn default_properties(brokers: i32) -> BTreeMap<String, String> {
    let rf = brokers.clamp(1, 2).to_string();
    let goals = goal_list(GOALS);
    let hard = goal_list(HARD_GOALS);
    [
        ("goals", goals.as_str()),
        ("default.goals", goals.as_str()),
        ("hard.goals", hard.as_str()),
        ("anomaly.detection.goals", hard.as_str()),
        (
            "metric.sampler.class",
            "com.linkedin.kafka.cruisecontrol.monitor.sampling.CruiseControlMetricsReporterSampler",
        ),
        ("metric.reporter.topic", "__CruiseControlMetrics"),
        (
            "sample.store.class",
            "com.linkedin.kafka.cruisecontrol.monitor.sampling.KafkaSampleStore",
        ),
        (
            "partition.metric.sample.store.topic",
            "__KafkaCruiseControlPartitionMetricSamples",
        ),
        (
            "broker.metric.sample.store.topic",
            "__KafkaCruiseControlModelTrainingSamples",
        ),
        ("sample.store.topic.replication.factor", rf.as_str()),
        ("num.sample.loading.threads", "2"),
        ("num.proposal.precompute.threads", "1"),
        ("sampling.allow.cpu.capacity.estimation", "true"),
        (
            "topic.config.provider.class",
            "com.linkedin.kafka.cruisecontrol.config.KafkaAdminTopicConfigProvider",
        ),
        ("webserver.request.maxBlockTimeMs", "10000"),
        ("webserver.http.cors.enabled", "false"),
        ("webserver.accesslog.enabled", "false"),
        ("max.active.user.tasks", "5"),
        ("self.healing.enabled", "false"),
        ("vertx.enabled", "false"),
        ("two.step.verification.enabled", "false"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// How often the brokers' reporters report: Cruise Control's default (60 s), or its
/// sampling interval when that is shorter (Cruise Control refuses to start otherwise).
pub fn reporting_interval_ms(cc: &ValidatedCruiseControl) -> u64 {
    cc.config
        .get("metric.sampling.interval.ms")
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(60_000, |s| s.min(60_000))
}

/// `cruisecontrol.properties`: Stoker's defaults, the user's lines over them, then the
/// keys Stoker owns.
pub fn properties(
    meta: &ClusterMeta,
    cluster: &ValidatedCluster,
    cc: &ValidatedCruiseControl,
) -> String {
    let mut p = default_properties(broker_count(cluster));
    p.extend(cc.config.clone());
    p.insert("bootstrap.servers".into(), bootstrap(meta, cluster));
    p.insert(
        "cruise.control.metrics.reporter.metrics.reporting.interval.ms".into(),
        reporting_interval_ms(cc).to_string(),
    );
    p.insert(
        "capacity.config.file".into(),
        format!("{CONFIG_DIR}/capacity.json"),
    );
    p.insert(
        "cluster.configs.file".into(),
        format!("{CONFIG_DIR}/clusterConfigs.json"),
    );
    p.insert("webserver.http.port".into(), PORT.to_string());
    p.insert("webserver.http.address".into(), "0.0.0.0".into());
    p.insert("webserver.api.urlprefix".into(), format!("{API_PREFIX}/*"));
    let mut out = String::from("# Rendered by stoker-coordinator from spec.cruiseControlConfig\n");
    for (k, v) in p {
        out.push_str(&format!("{k}={v}\n"));
    }
    out
}

/// The metrics reporter's settings in broker `id`'s config: it reports to the
/// brokers through the broker's own inner-broker address.
pub fn reporter_config(
    meta: &ClusterMeta,
    cluster: &ValidatedCluster,
    cc: &ValidatedCruiseControl,
    id: i32,
) -> BTreeMap<String, String> {
    let port = cluster
        .listeners
        .iter()
        .find(|l| l.name == cluster.inter_broker_listener)
        .map_or(9092, |l| l.port);
    let rf = cc
        .topic_replication_factor
        .unwrap_or_else(|| broker_count(cluster).clamp(1, 3));
    [
        (
            "cruise.control.metrics.reporter.bootstrap.servers".to_owned(),
            format!("{}:{port}", advertised_host(meta, id)),
        ),
        (
            "cruise.control.metrics.topic.auto.create".to_owned(),
            "true".to_owned(),
        ),
        (
            "cruise.control.metrics.topic.num.partitions".to_owned(),
            cc.topic_partitions.to_string(),
        ),
        (
            "cruise.control.metrics.topic.replication.factor".to_owned(),
            rf.to_string(),
        ),
        (
            "cruise.control.metrics.reporter.metrics.reporting.interval.ms".to_owned(),
            reporting_interval_ms(cc).to_string(),
        ),
    ]
    .into_iter()
    .collect()
}

/// `metric.reporters` with Cruise Control's reporter added to what the user set.
pub fn with_reporter(existing: Option<&String>) -> String {
    match existing.map(|s| s.trim()).filter(|s| !s.is_empty()) {
        Some(e) if e.split(',').any(|r| r.trim() == REPORTER_CLASS) => e.to_owned(),
        Some(e) => format!("{e},{REPORTER_CLASS}"),
        None => REPORTER_CLASS.to_owned(),
    }
}

/// The ConfigMap `<cluster>-cruisecontrol`.
pub fn config_map(
    meta: &ClusterMeta,
    cluster: &ValidatedCluster,
    cc: &ValidatedCruiseControl,
) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name(meta)),
            namespace: Some(meta.namespace.clone()),
            labels: Some(labels(meta)),
            owner_references: Some(vec![meta.owner.clone()]),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([
            (
                "cruisecontrol.properties".to_owned(),
                properties(meta, cluster, cc),
            ),
            ("capacity.json".to_owned(), cc.capacity.clone()),
            ("clusterConfigs.json".to_owned(), cc.cluster_configs.clone()),
        ])),
        ..ConfigMap::default()
    }
}

/// The Deployment `<cluster>-cruisecontrol`: one replica, recreated (never two at once:
/// each would execute its own tasks), with the ConfigMap's hash on its Pod so a config
/// change restarts it.
pub fn deployment(
    meta: &ClusterMeta,
    cc: &ValidatedCruiseControl,
    config_hash: &str,
) -> Deployment {
    let container = Container {
        name: "cruise-control".into(),
        image: Some(cc.image.clone()),
        command: Some(vec![
            format!("{HOME_IN_IMAGE}/bin/kafka-cruise-control-start.sh"),
            format!("{CONFIG_DIR}/cruisecontrol.properties"),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: i32::from(PORT),
            ..ContainerPort::default()
        }]),
        env: Some(vec![EnvVar {
            name: "CRUISE_CONTROL_HEAP_OPTS".into(),
            value: Some("-Xms128m -Xmx512m".into()),
            ..EnvVar::default()
        }]),
        resources: cc.resources.clone(),
        // A TCP probe: every HTTP request is a user task of Cruise Control's, and it
        // allows only a few at once.
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(i32::from(PORT)),
                ..TCPSocketAction::default()
            }),
            period_seconds: Some(10),
            timeout_seconds: Some(5),
            failure_threshold: Some(3),
            ..Probe::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    let mut pod_labels = selector(meta);
    pod_labels.insert("app.kubernetes.io/name".into(), "cruise-control".into());
    pod_labels.insert("app.kubernetes.io/managed-by".into(), "stoker".into());
    Deployment {
        metadata: ObjectMeta {
            name: Some(name(meta)),
            namespace: Some(meta.namespace.clone()),
            labels: Some(labels(meta)),
            owner_references: Some(vec![meta.owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(selector(meta)),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                ..DeploymentStrategy::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(BTreeMap::from([(
                        "kafka.stoker.io/config-hash".to_owned(),
                        config_hash.to_owned(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    service_account_name: cc.service_account_name.clone(),
                    volumes: Some(vec![Volume {
                        name: "config".into(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: name(meta),
                            ..ConfigMapVolumeSource::default()
                        }),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The Service `<cluster>-cruisecontrol-svc` on port 8090.
pub fn service(meta: &ClusterMeta) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(service_name(meta)),
            namespace: Some(meta.namespace.clone()),
            labels: Some(labels(meta)),
            owner_references: Some(vec![meta.owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(selector(meta)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: i32::from(PORT),
                target_port: Some(IntOrString::Int(i32::from(PORT))),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reporter_is_added_once_to_what_the_user_set() {
        assert_eq!(with_reporter(None), REPORTER_CLASS);
        assert_eq!(
            with_reporter(Some(&"com.example.Mine".to_owned())),
            format!("com.example.Mine,{REPORTER_CLASS}")
        );
        let both = format!("com.example.Mine,{REPORTER_CLASS}");
        assert_eq!(with_reporter(Some(&both)), both);
    }
}
