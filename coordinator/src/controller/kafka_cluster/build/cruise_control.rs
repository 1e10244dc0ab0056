//! Cruise Control for a cluster, from `cruiseControlConfig`: its ConfigMap
//! (`cruisecontrol.properties` — Stoker's defaults, then the user's lines —,
//! `capacity.json`, `clusterConfigs.json`), its Deployment and its Service
//! (`<cluster>-cruisecontrol-svc`, Koperator's name), and the metrics reporter every
//! broker runs. Cruise Control's own metrics are served by the Prometheus JMX exporter
//! as a javaagent in its JVM (the jar copied from the agent image by an init
//! container, the rules in its ConfigMap), on port `metrics` of its Pod. Pure.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy},
        core::v1::{
            ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
            EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec, PodTemplateSpec, Probe, Service,
            ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
        },
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};

use super::{
    ClusterMeta, advertised_host, cluster_labels,
    jmx_exporter::{
        COPIED_JAR_DIR, COPIED_JAR_VOLUME, JMX_EXPORTER_PORT, ValidatedMonitoring, javaagent_option,
    },
};
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
/// Where Cruise Control keeps the files it writes (its failed-brokers list), an
/// emptyDir: never its working directory, which may be read-only or shared.
pub const STATE_DIR: &str = "/var/lib/cruise-control";
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
/// The JMX exporter's rules for Cruise Control's MBeans (key `jmx-exporter.yaml` of its
/// ConfigMap).
pub const JMX_EXPORTER_RULES: &str =
    include_str!("../../../../assets/cruise-control-jmx-exporter.yml");
/// The ConfigMap key of those rules.
const JMX_EXPORTER_KEY: &str = "jmx-exporter.yaml";

/// A `capacity.json` for every broker: 100 GB of disk, 100% of a CPU and 1 Gbit/s
/// each way (Cruise Control's own sample values).
pub const DEFAULT_CAPACITY: &str = r#"{"brokerCapacities":[{"brokerId":"-1","capacity":{"DISK":"100000","CPU":"100","NW_IN":"125000","NW_OUT":"125000"},"doc":"Stoker's default for every broker"}]}"#;

/// A disk's capacity, in MB, when neither its `pvcSpec` nor its `emptyDir` says.
pub const DEFAULT_DISK_MB: u64 = 100_000;

/// MB in a Kubernetes quantity of bytes (`10Gi`, `500M`, `1e9`); None when unparsable.
pub fn megabytes(quantity: &str) -> Option<u64> {
    // Whole MB, at least 1: Cruise Control takes a disk of 0 MB for a broken one.
    crate::quantity::bytes(quantity).map(|b| ((b / 1e6).floor() as u64).max(1))
}

/// A disk's capacity in MB, from its claim's request (or its emptyDir's limit).
fn disk_mb(s: &crate::crd::v1alpha1::StorageConfig) -> u64 {
    let from_pvc = s
        .pvc_spec
        .as_ref()
        .and_then(|p| p.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.as_str());
    let from_empty_dir = s
        .empty_dir
        .as_ref()
        .and_then(|e| e.size_limit.as_ref())
        .map(|q| q.0.as_str());
    from_pvc
        .or(from_empty_dir)
        .and_then(megabytes)
        .unwrap_or(DEFAULT_DISK_MB)
}

/// `capacity.json` from the brokers' own disks, when the spec gives none: each log dir
/// with its claim's size (Cruise Control's JBOD form once any broker has more than
/// one), 100% of a CPU and 1 Gbit/s each way. The layout most brokers share is the
/// default (`brokerId` `-1`); a broker with other disks gets an entry of its own, so
/// adding a broker like the others leaves the file, and Cruise Control, untouched.
pub fn capacity_of(cluster: &ValidatedCluster) -> String {
    use serde_json::{Value, json};
    let layouts: BTreeMap<i32, BTreeMap<String, u64>> = cluster
        .brokers
        .values()
        .filter(|b| b.roles.broker)
        .map(|b| {
            let dirs = b
                .storage
                .iter()
                .map(|s| {
                    (
                        crate::controller::kafka_cluster::disks::log_dir(&s.mount_path),
                        disk_mb(s),
                    )
                })
                .collect();
            (b.id, dirs)
        })
        .collect();
    let jbod = layouts.values().any(|l| l.len() > 1);
    let disk = |l: &BTreeMap<String, u64>| -> Value {
        if jbod {
            Value::Object(
                l.iter()
                    .map(|(dir, mb)| (dir.clone(), Value::String(mb.to_string())))
                    .collect(),
            )
        } else {
            Value::String(l.values().sum::<u64>().to_string())
        }
    };
    let mut counts: BTreeMap<&BTreeMap<String, u64>, usize> = BTreeMap::new();
    for l in layouts.values() {
        *counts.entry(l).or_default() += 1;
    }
    let common = counts
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(l, _)| (*l).clone())
        .unwrap_or_else(|| BTreeMap::from([(String::from("/kafka-logs/kafka"), DEFAULT_DISK_MB)]));
    let entry = |id: &str, l: &BTreeMap<String, u64>, doc: &str| {
        json!({
            "brokerId": id,
            "capacity": {"DISK": disk(l), "CPU": "100", "NW_IN": "125000", "NW_OUT": "125000"},
            "doc": doc,
        })
    };
    let mut entries = vec![entry("-1", &common, "from the disks most brokers have")];
    for (id, l) in &layouts {
        if *l != common {
            entries.push(entry(&id.to_string(), l, "from this broker's own disks"));
        }
    }
    json!({ "brokerCapacities": entries }).to_string()
}

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
    /// `capacity.json` as the spec gives it (None: from the brokers' disks, see
    /// [`capacity_of`]).
    pub capacity: Option<String>,
    /// `clusterConfigs.json`.
    pub cluster_configs: String,
    /// Resources of its container.
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    /// Partitions of `__CruiseControlMetrics`.
    pub topic_partitions: i32,
    /// Its replication factor (None: 3, or fewer brokers).
    pub topic_replication_factor: Option<i32>,
    /// The throttle of the coordinator's own KafkaRebalances, bytes/s.
    pub replication_throttle: Option<i64>,
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

const FAILED_BROKERS_FILE: &str = "/var/lib/cruise-control/failedBrokers.txt";

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
        ("failed.brokers.file.path", FAILED_BROKERS_FILE),
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
            (
                "capacity.json".to_owned(),
                cc.capacity.clone().unwrap_or_else(|| capacity_of(cluster)),
            ),
            ("clusterConfigs.json".to_owned(), cc.cluster_configs.clone()),
            (JMX_EXPORTER_KEY.to_owned(), JMX_EXPORTER_RULES.to_owned()),
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
    // The exporter's jar, from the agent image (which carries it for the brokers too).
    let exporter = ValidatedMonitoring::from_agent_image(&meta.agent_image);
    let container = Container {
        name: "cruise-control".into(),
        image: Some(cc.image.clone()),
        command: Some(vec![
            format!("{HOME_IN_IMAGE}/bin/kafka-cruise-control-start.sh"),
            format!("{CONFIG_DIR}/cruisecontrol.properties"),
        ]),
        ports: Some(vec![
            ContainerPort {
                name: Some("http".into()),
                container_port: i32::from(PORT),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("metrics".into()),
                container_port: JMX_EXPORTER_PORT,
                ..ContainerPort::default()
            },
        ]),
        // The variables Cruise Control's launcher reads (its images' and Stoker's).
        env: Some(vec![
            EnvVar {
                name: "POD_IP".into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "status.podIP".into(),
                        ..ObjectFieldSelector::default()
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            },
            EnvVar {
                name: "KAFKA_HEAP_OPTS".into(),
                value: Some("-Xms128m -Xmx512m".into()),
                ..EnvVar::default()
            },
            EnvVar {
                name: "KAFKA_OPTS".into(),
                value: Some(javaagent_option(
                    &exporter.jar_in_kafka(),
                    &format!("{CONFIG_DIR}/{JMX_EXPORTER_KEY}"),
                )),
                ..EnvVar::default()
            },
        ]),
        resources: cc.resources.clone(),
        security_context: Some(super::security::restricted_container(None, false)),
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
        volume_mounts: Some(vec![
            VolumeMount {
                name: "config".into(),
                mount_path: CONFIG_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "state".into(),
                mount_path: STATE_DIR.into(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: COPIED_JAR_VOLUME.into(),
                mount_path: COPIED_JAR_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
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
                    init_containers: exporter.copy_container().map(|c| vec![c]),
                    containers: vec![container],
                    // It writes only into its state volume (and the JVM's /tmp).
                    security_context: Some(super::security::restricted_pod(
                        super::security::KAFKA_UID,
                    )),
                    service_account_name: cc.service_account_name.clone(),
                    volumes: Some(vec![
                        Volume {
                            name: "config".into(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: name(meta),
                                ..ConfigMapVolumeSource::default()
                            }),
                            ..Volume::default()
                        },
                        Volume {
                            name: "state".into(),
                            empty_dir: Some(EmptyDirVolumeSource::default()),
                            ..Volume::default()
                        },
                        Volume {
                            name: COPIED_JAR_VOLUME.into(),
                            empty_dir: Some(EmptyDirVolumeSource::default()),
                            ..Volume::default()
                        },
                    ]),
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
    fn cruise_controls_metrics_come_from_the_exporter_in_its_jvm() {
        super::super::jmx_exporter::check_config("rules", JMX_EXPORTER_RULES)
            .expect("valid exporter rules");
        let meta = ClusterMeta {
            name: "kf".into(),
            namespace: "ns".into(),
            owner: Default::default(),
            cluster_id: "id".into(),
            headless: false,
            agent_image: "stoker-agent:1".into(),
        };
        let cc = ValidatedCruiseControl {
            deploy: true,
            image: DEFAULT_IMAGE.into(),
            service_account_name: None,
            config: BTreeMap::new(),
            capacity: None,
            cluster_configs: "{}".into(),
            resources: None,
            topic_partitions: 1,
            topic_replication_factor: None,
            replication_throttle: None,
        };
        let d = deployment(&meta, &cc, "hash");
        let pod = d.spec.and_then(|s| s.template.spec).expect("a Pod spec");
        let copy = &pod.init_containers.as_ref().expect("an init container")[0];
        assert_eq!(copy.image.as_deref(), Some("stoker-agent:1"));
        assert_eq!(
            copy.command.as_deref().map(|c| c[1].as_str()),
            Some(super::super::jmx_exporter::AGENT_IMAGE_JAR)
        );
        let env = pod.containers[0].env.clone().expect("env");
        let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            ["POD_IP", "KAFKA_HEAP_OPTS", "KAFKA_OPTS"],
            "POD_IP before its use"
        );
        let opts = env[2].value.as_deref().expect("KAFKA_OPTS");
        assert_eq!(
            opts,
            "-javaagent:/opt/jmx-exporter/jmx_prometheus_javaagent.jar=$(POD_IP):9020:/etc/cruise-control/jmx-exporter.yaml"
        );
        assert!(
            pod.containers[0]
                .ports
                .iter()
                .flatten()
                .any(|p| p.name.as_deref() == Some("metrics")
                    && p.container_port == JMX_EXPORTER_PORT)
        );
    }

    #[test]
    fn cruise_control_writes_only_into_its_state_volume() {
        assert!(FAILED_BROKERS_FILE.starts_with(STATE_DIR));
        assert_eq!(
            default_properties(3)["failed.brokers.file.path"],
            FAILED_BROKERS_FILE
        );
    }

    #[test]
    fn quantities_read_as_megabytes() {
        assert_eq!(megabytes("1Gi"), Some(1073));
        assert_eq!(megabytes("10G"), Some(10_000));
        assert_eq!(megabytes("500Mi"), Some(524));
        assert_eq!(megabytes("2e9"), Some(2000));
        assert_eq!(megabytes("1024"), Some(1), "never a 0 MB disk");
        assert_eq!(megabytes("lots"), None);
    }

    #[test]
    fn capacity_follows_the_brokers_disks() {
        use crate::controller::kafka_cluster::{test_support::example_spec, validate::validate};
        let mut spec = example_spec();
        spec.cruise_control_config = None;
        let single = capacity_of(&validate(&spec).expect("valid"));
        let v: serde_json::Value = serde_json::from_str(&single).expect("json");
        assert_eq!(v["brokerCapacities"].as_array().map(Vec::len), Some(1));
        assert_eq!(v["brokerCapacities"][0]["capacity"]["DISK"], "1073");
        // One broker with two disks: the JBOD form, that broker on its own.
        let mut with_two = validate(&spec).expect("valid");
        let b = with_two.brokers.get_mut(&1).expect("broker 1");
        let mut second = b.storage[0].clone();
        second.mount_path = "/kafka-logs-2".into();
        b.storage.push(second);
        let v: serde_json::Value = serde_json::from_str(&capacity_of(&with_two)).expect("json");
        let entries = v["brokerCapacities"].as_array().expect("entries");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["brokerId"], "-1");
        assert_eq!(entries[0]["capacity"]["DISK"]["/kafka-logs/kafka"], "1073");
        assert_eq!(entries[1]["brokerId"], "1");
        assert_eq!(
            entries[1]["capacity"]["DISK"]["/kafka-logs-2/kafka"],
            "1073"
        );
    }

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
