//! Validation: a `KafkaCluster` spec becomes a [`ValidatedCluster`] or one error that
//! says exactly what is wrong and how to fix it. Everything is checked before the
//! first write, so a bad spec never produces half-applied objects. Pure.

use std::collections::{BTreeMap, BTreeSet};

use stoker_proto::OPERATOR_OWNED_KEYS;

use k8s_openapi::api::core::v1::EnvVar;

use super::build::{
    cruise_control::{
        DEFAULT_IMAGE as DEFAULT_CC_IMAGE, OWNED_KEYS as CC_OWNED_KEYS, ValidatedCruiseControl,
    },
    jmx_exporter::{self, JarSource, ValidatedMonitoring},
};
use crate::crd::v1alpha1::{
    Broker, BrokerConfig, CruiseControlConfig, DisruptionBudget, ExternalListener,
    InternalListener, KafkaClusterSpec, ListenersConfig, MonitoringConfig, PvcDeletionPolicy,
    RollingUpgradeConfig, StorageConfig,
};

/// A spec that cannot be reconciled, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidSpec {
    /// A PascalCase reason for the condition and the Event.
    pub reason: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

fn invalid(reason: &'static str, message: impl Into<String>) -> InvalidSpec {
    InvalidSpec {
        reason,
        message: message.into(),
    }
}

/// Kafka 4's KRaft roles of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Serves clients, hosts partitions.
    pub broker: bool,
    /// Votes in the metadata quorum.
    pub controller: bool,
}

impl Roles {
    /// Kafka's `process.roles` values.
    pub fn names(self) -> Vec<String> {
        let mut v = Vec::new();
        if self.broker {
            v.push("broker".to_owned());
        }
        if self.controller {
            v.push("controller".to_owned());
        }
        v
    }
}

/// A listener, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Kafka's (upper-case) name.
    pub name: String,
    /// Security protocol (upper case).
    pub protocol: String,
    /// Container port.
    pub port: u16,
}

/// One broker with its group merged in and its config parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedBroker {
    /// node.id.
    pub id: i32,
    /// KRaft roles.
    pub roles: Roles,
    /// Settings after merging the group (the broker's own values win).
    pub config: BrokerConfig,
    /// Static config: the cluster's readOnlyConfig, then the broker's own.
    pub read_only_config: BTreeMap<String, String>,
    /// Per-broker dynamic config.
    pub dynamic_config: BTreeMap<String, String>,
    /// Data volumes.
    pub storage: Vec<StorageConfig>,
    /// The Kafka image.
    pub image: String,
    /// Removed from `spec.brokers`: it runs on (from its last reconciled entry) only
    /// until its replicas have moved off.
    pub draining: bool,
    /// Mount paths of disks gone from its `storageConfigs` that it still has (kept in
    /// `storage` until they are empty).
    pub removing_disks: std::collections::BTreeSet<String>,
    /// Its `spec.brokers` entry, as JSON (kept in status as `lastApplied`).
    pub entry: String,
}

/// A `KafkaCluster` that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedCluster {
    /// Brokers by id.
    pub brokers: BTreeMap<i32, ValidatedBroker>,
    /// Every internal listener.
    pub listeners: Vec<Listener>,
    /// The inter-broker listener's name.
    pub inter_broker_listener: String,
    /// The controller listener's name.
    pub controller_listener: String,
    /// Cluster-wide dynamic config.
    pub cluster_wide_config: BTreeMap<String, String>,
    /// Rack label names.
    pub rack_labels: Vec<String>,
    /// One headless Service (true) or a Service per broker plus an all-broker one.
    pub headless: bool,
    /// Keep broker Pods on distinct Nodes (an anti-affinity when the broker sets none).
    pub one_broker_per_node: bool,
    /// Environment of every broker's Kafka container.
    pub envs: Vec<EnvVar>,
    /// The PodDisruptionBudget to create, if asked for.
    pub disruption_budget: Option<DisruptionBudget>,
    /// What happens to a removed broker's PVCs.
    pub pvc_deletion_policy: PvcDeletionPolicy,
    /// How changes roll through the brokers.
    pub roll: RollingUpgradeConfig,
    /// Cruise Control, when the spec has `cruiseControlConfig`.
    pub cruise_control: Option<ValidatedCruiseControl>,
    /// The brokers' JMX exporter.
    pub monitoring: ValidatedMonitoring,
    /// TLS on client listeners, when a listener is `ssl` or `sasl_ssl`.
    pub listener_tls: Option<ListenerTls>,
    /// Listeners reachable from outside Kubernetes.
    pub external_listeners: Vec<External>,
    /// The proxy of `ingressController: haproxy`.
    pub haproxy: Option<ValidatedHaproxy>,
}

/// The HAProxy Deployment in front of the brokers (`ingressController: haproxy`).
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedHaproxy {
    /// Its image.
    pub image: String,
    /// Its replicas.
    pub replicas: i32,
    /// Its container's resources.
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
}

/// The HAProxy image when `haproxyConfig.image` is unset.
pub const DEFAULT_HAPROXY_IMAGE: &str = "haproxy:2.6";

/// How clients outside Kubernetes reach an external listener's brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessMethod {
    /// A `LoadBalancer` Service per broker; the broker advertises its address.
    LoadBalancer,
    /// A `NodePort` Service per broker; the broker advertises its Node's address.
    NodePort,
    /// One `LoadBalancer` Service in front of an HAProxy Deployment that routes
    /// `externalStartingPort + id` to broker `id`; every broker advertises its address.
    Proxy,
}

impl AccessMethod {
    /// The Service type.
    pub fn service_type(self) -> &'static str {
        match self {
            Self::LoadBalancer | Self::Proxy => "LoadBalancer",
            Self::NodePort => "NodePort",
        }
    }
}

/// An external listener, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct External {
    /// Kafka's (upper-case) name.
    pub name: String,
    /// Security protocol (upper case).
    pub protocol: String,
    /// The port the brokers bind.
    pub port: u16,
    /// Broker `id` is reached on `starting_port + id`.
    pub starting_port: u16,
    /// Per-broker Services of this type.
    pub access: AccessMethod,
    /// The host every broker advertises instead of its Service's (or Node's) address.
    pub hostname_override: Option<String>,
}

impl External {
    /// The port broker `id` is reached on from outside (checked to fit in validation).
    pub fn broker_port(&self, id: i32) -> u16 {
        u16::try_from(i32::from(self.starting_port) + id).unwrap_or(u16::MAX)
    }

    /// The name in Kubernetes objects (lower case, `-` for `_`).
    pub fn dns_name(&self) -> String {
        self.name.to_ascii_lowercase().replace('_', "-")
    }
}

/// TLS on the cluster's client listeners: Stoker keeps a CA in `ca_secret` and issues
/// every broker a certificate for its names from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// The Secret holding the cluster's listener CA (`sslSecrets.tlsSecretName`).
    pub ca_secret: String,
    /// Stoker creates the CA there when the Secret is missing (`sslSecrets.create`);
    /// otherwise the user brings it.
    pub create: bool,
}

/// The Kafka image used when neither the broker nor the cluster names one.
pub const DEFAULT_KAFKA_IMAGE: &str = "apache/kafka:4.1.1";

/// Parses `key=value` lines (Koperator's config strings); `#` comments and blank lines
/// are skipped. `field` names the spec field in errors.
pub fn parse_properties(field: &str, text: &str) -> Result<BTreeMap<String, String>, InvalidSpec> {
    parse_owned(
        field,
        text,
        OPERATOR_OWNED_KEYS,
        "which Stoker manages from the cluster's topology; remove it (log dirs come from storageConfigs, listeners from listenersConfig)",
    )
}

/// Parses `key=value` lines, refusing the keys in `owned` (`why` says who sets them).
fn parse_owned(
    field: &str,
    text: &str,
    owned: &[&str],
    why: &str,
) -> Result<BTreeMap<String, String>, InvalidSpec> {
    let mut out = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(invalid(
                "InvalidConfig",
                format!(
                    "{field} line {}: expected key=value, found {:?}",
                    i + 1,
                    truncate(line)
                ),
            ));
        };
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty()
            || !k
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(invalid(
                "InvalidConfig",
                format!(
                    "{field} line {}: {:?} is not a valid config key (letters, digits, '.', '_', '-')",
                    i + 1,
                    truncate(k)
                ),
            ));
        }
        if owned.contains(&k) {
            return Err(invalid(
                "OwnedConfigKey",
                format!("{field} sets `{k}`, {why}"),
            ));
        }
        out.insert(k.to_owned(), v.to_owned());
    }
    Ok(out)
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Validates the whole spec.
pub fn validate(spec: &KafkaClusterSpec) -> Result<ValidatedCluster, InvalidSpec> {
    if !spec.zk_addresses.is_empty() || spec.zk_path.is_some() {
        return Err(invalid(
            "ZooKeeperNotSupported",
            "spec.zkAddresses/zkPath are set, but Kafka 4 runs in KRaft mode without ZooKeeper. Remove them and declare controllers: give three brokers entries `brokerConfig.processRoles: [controller]` (or [broker, controller] for combined nodes)",
        ));
    }

    let listeners = validate_listeners(&spec.listeners_config.internal_listeners)?;
    let listener_tls = validate_listener_tls(&spec.listeners_config)?;
    let inner: Vec<_> = spec
        .listeners_config
        .internal_listeners
        .iter()
        .filter(|l| l.used_for_inner_broker_communication)
        .collect();
    let ctrl: Vec<_> = spec
        .listeners_config
        .internal_listeners
        .iter()
        .filter(|l| l.used_for_controller_communication)
        .collect();
    if inner.len() != 1 {
        return Err(invalid(
            "InvalidListeners",
            format!(
                "exactly one internal listener needs usedForInnerBrokerCommunication: true; found {}",
                inner.len()
            ),
        ));
    }
    if ctrl.len() != 1 {
        return Err(invalid(
            "InvalidListeners",
            format!(
                "exactly one internal listener needs usedForControllerCommunication: true (the KRaft controller listener); found {}",
                ctrl.len()
            ),
        ));
    }
    if inner[0].name == ctrl[0].name {
        return Err(invalid(
            "InvalidListeners",
            format!(
                "listener {:?} cannot serve both brokers and controllers; add a separate controller listener (e.g. name: controller, containerPort: 29093)",
                inner[0].name
            ),
        ));
    }

    if let Some(budget) = spec
        .disruption_budget
        .as_ref()
        .and_then(|d| d.budget.as_deref())
    {
        let ok = match budget.strip_suffix('%') {
            Some(p) => p.parse::<u8>().is_ok_and(|p| p <= 100),
            None => budget.parse::<u32>().is_ok(),
        };
        if !ok {
            return Err(invalid(
                "InvalidDisruptionBudget",
                format!(
                    "spec.disruptionBudget.budget {budget:?} must be a number of brokers (e.g. \"1\") or a percentage (e.g. \"20%\")"
                ),
            ));
        }
    }

    let read_only = parse_properties("spec.readOnlyConfig", &spec.read_only_config)?;
    let cluster_wide_config =
        parse_properties("spec.clusterWideConfig", &spec.cluster_wide_config)?;

    let mut seen = BTreeSet::new();
    let mut brokers = BTreeMap::new();
    for (i, b) in spec.brokers.iter().enumerate() {
        if !seen.insert(b.id) {
            return Err(invalid(
                "DuplicateBrokerId",
                format!(
                    "spec.brokers[{i}].id {} is used by another broker; broker ids must be unique",
                    b.id
                ),
            ));
        }
        let vb = validate_broker(spec, i, b, &read_only)?;
        brokers.insert(b.id, vb);
    }
    if !brokers.values().any(|b| b.roles.controller) {
        return Err(invalid(
            "NoController",
            "no broker has the controller role: KRaft needs at least one controller (three for production); set brokerConfig.processRoles: [controller] on them",
        ));
    }
    if !brokers.values().any(|b| b.roles.broker) {
        return Err(invalid(
            "NoBroker",
            "every node is a controller only; at least one needs processRoles including broker",
        ));
    }

    let cruise_control = spec
        .cruise_control_config
        .as_ref()
        .map(validate_cruise_control)
        .transpose()?;
    if let Some(l) = inner
        .first()
        .filter(|l| cruise_control.is_some() && l.type_.eq_ignore_ascii_case("ssl"))
    {
        return Err(invalid(
            "ListenerNotSupported",
            format!(
                "spec.cruiseControlConfig is set and the inter-broker listener {:?} is ssl: Cruise Control and the brokers' metrics reporter reach Kafka on that listener, and their TLS client settings are not built yet; keep the inter-broker listener plaintext while the cluster runs Cruise Control",
                l.name
            ),
        ));
    }
    if let Some(capacity) = cruise_control.as_ref().and_then(|c| c.capacity.as_deref()) {
        disks_in_capacity(capacity, &brokers)?;
    }
    if let Some(a) = spec.alert_manager_config.as_ref() {
        validate_alert_manager(a)?;
    }
    let monitoring = validate_monitoring(spec.monitoring_config.as_ref())?;
    let haproxy = validate_ingress_controller(spec)?;
    let mut external_listeners = validate_external_listeners(
        spec.listeners_config
            .external_listeners
            .as_deref()
            .unwrap_or_default(),
        &listeners,
        // Controller-only nodes serve no clients: they get no external port.
        brokers.values().filter(|b| b.roles.broker).map(|b| b.id),
    )?;
    if haproxy.is_some() {
        let mut proxied = 0;
        for e in external_listeners
            .iter_mut()
            .filter(|e| e.access == AccessMethod::LoadBalancer)
        {
            e.access = AccessMethod::Proxy;
            proxied += 1;
        }
        if proxied == 0 {
            return Err(invalid(
                "InvalidExternalListeners",
                "spec.ingressController is haproxy, but no external listener has accessMethod LoadBalancer for it to serve; add one or remove ingressController",
            ));
        }
    }
    refuse_tls_store_keys(
        &listeners,
        &[inner[0].name.as_str(), ctrl[0].name.as_str()],
        std::iter::once(("spec.clusterWideConfig", &cluster_wide_config)).chain(
            brokers.values().flat_map(|b| {
                [
                    (
                        "spec.readOnlyConfig or the broker's readOnlyConfig",
                        &b.read_only_config,
                    ),
                    ("the broker's config", &b.dynamic_config),
                ]
            }),
        ),
    )?;

    Ok(ValidatedCluster {
        brokers,
        listeners,
        inter_broker_listener: inner[0].name.to_ascii_uppercase(),
        controller_listener: ctrl[0].name.to_ascii_uppercase(),
        cluster_wide_config,
        rack_labels: spec
            .rack_awareness
            .as_ref()
            .map(|r| r.labels.clone())
            .unwrap_or_default(),
        headless: spec.headless_service_enabled,
        one_broker_per_node: spec.one_broker_per_node,
        envs: spec.envs.clone(),
        disruption_budget: spec.disruption_budget.clone().filter(|b| b.create),
        pvc_deletion_policy: spec.pvc_deletion_policy.unwrap_or_default(),
        roll: spec.rolling_upgrade_config.clone(),
        cruise_control,
        monitoring,
        listener_tls,
        external_listeners,
        haproxy,
    })
}

/// `ingressController` and `haproxyConfig`: unset, or HAProxy with its settings.
fn validate_ingress_controller(
    spec: &KafkaClusterSpec,
) -> Result<Option<ValidatedHaproxy>, InvalidSpec> {
    let bad = |message: String| invalid("InvalidExternalListeners", message);
    match spec.ingress_controller.as_deref() {
        None | Some("") => {
            if spec.haproxy_config.is_some() {
                return Err(bad(
                    "spec.haproxyConfig is set, but spec.ingressController is not haproxy; set ingressController: haproxy or remove haproxyConfig".into(),
                ));
            }
            Ok(None)
        }
        Some("haproxy") => {
            let c = spec.haproxy_config.clone().unwrap_or_default();
            let image = c
                .image
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| DEFAULT_HAPROXY_IMAGE.to_owned());
            Ok(Some(ValidatedHaproxy {
                image,
                replicas: c.replicas.unwrap_or(1),
                resources: c.resource_requirements,
            }))
        }
        Some("envoy") => Err(bad(
            "spec.ingressController envoy is not built (Stoker's single load balancer is HAProxy); use ingressController: haproxy".into(),
        )),
        Some(other) => Err(bad(format!(
            "spec.ingressController {other:?} is not haproxy; remove it for a load balancer per broker"
        ))),
    }
}

/// Where the JMX exporter comes from and its rules. Paths go into Kafka's `-javaagent`
/// option, so they must be absolute and free of its separators.
fn validate_monitoring(m: Option<&MonitoringConfig>) -> Result<ValidatedMonitoring, InvalidSpec> {
    let Some(m) = m else {
        return Ok(ValidatedMonitoring::default());
    };
    let bad = |message: String| invalid("InvalidMonitoringConfig", message);
    if m.cc_jmx_exporter_config.is_some() {
        return Err(bad(
            "spec.monitoringConfig.cCJMXExporterConfig is set, but Stoker does not export Cruise Control's JMX metrics yet; remove it (Cruise Control's state is in the KafkaCluster's status.cruiseControl)".into(),
        ));
    }
    let path = match m.path_to_jar.as_deref() {
        None => None,
        Some(p) if p.starts_with('/') && !p.contains(['=', ':', ' ', '\t', '\n', '$']) => {
            Some(p.to_owned())
        }
        Some(p) => {
            return Err(bad(format!(
                "spec.monitoringConfig.pathToJar {:?} must be an absolute path without spaces, '=', ':' or '$' (it goes into Kafka's -javaagent option)",
                truncate(p)
            )));
        }
    };
    let jar = match (m.jmx_image.as_deref(), path) {
        (Some(image), _) if image.trim().is_empty() || image.contains(char::is_whitespace) => {
            return Err(bad(format!(
                "spec.monitoringConfig.jmxImage {:?} is not an image reference; name the image that holds the JMX exporter jar, or remove jmxImage to use the one in Stoker's agent image",
                truncate(image)
            )));
        }
        (Some(image), path) => JarSource::Image {
            image: image.to_owned(),
            path: path.unwrap_or_else(|| jmx_exporter::DEFAULT_IMAGE_JAR.to_owned()),
        },
        (None, Some(path)) => JarSource::KafkaImage(path),
        (None, None) => JarSource::Agent,
    };
    let config = match m.kafka_jmx_exporter_config.as_deref() {
        Some(text) => {
            jmx_exporter::check_config("spec.monitoringConfig.kafkaJMXExporterConfig", text)
                .map_err(bad)?;
            text.to_owned()
        }
        None => jmx_exporter::DEFAULT_RULES.to_owned(),
    };
    Ok(ValidatedMonitoring { jar, config })
}

/// The alert guards must be readable: a limit that cannot be read would be no limit.
fn validate_alert_manager(a: &crate::crd::v1alpha1::AlertManagerConfig) -> Result<(), InvalidSpec> {
    if let Some(size) = a.max_disk_size.as_deref()
        && crate::quantity::bytes(size).is_none_or(|b| b <= 0.0)
    {
        return Err(invalid(
            "InvalidAlertManagerConfig",
            format!(
                "spec.alertManagerConfig.maxDiskSize {size:?} is not a size; write a quantity such as 500Gi"
            ),
        ));
    }
    if let (Some(down), Some(up)) = (a.down_scale_limit, a.up_scale_limit)
        && up < down
    {
        return Err(invalid(
            "InvalidAlertManagerConfig",
            format!(
                "spec.alertManagerConfig.upScaleLimit {up} is below downScaleLimit {down}; the upper limit must be at least the lower one"
            ),
        ));
    }
    Ok(())
}

/// A broker with several disks needs its DISK capacity per log dir (Cruise Control's
/// JBOD form), or Cruise Control cannot move replicas between its disks.
fn disks_in_capacity(
    capacity: &str,
    brokers: &BTreeMap<i32, ValidatedBroker>,
) -> Result<(), InvalidSpec> {
    let parsed: serde_json::Value = serde_json::from_str(capacity).unwrap_or_default();
    let entries = parsed
        .get("brokerCapacities")
        .and_then(serde_json::Value::as_array)
        .cloned()
        .unwrap_or_default();
    let entry_of = |id: &str| {
        entries
            .iter()
            .find(|e| e.get("brokerId").and_then(serde_json::Value::as_str) == Some(id))
    };
    for b in brokers
        .values()
        .filter(|b| b.roles.broker && b.storage.len() > 1)
    {
        let Some(entry) = entry_of(&b.id.to_string()).or_else(|| entry_of("-1")) else {
            continue;
        };
        let disk = entry.pointer("/capacity/DISK");
        if !disk.is_some_and(serde_json::Value::is_object) {
            return Err(invalid(
                "InvalidCruiseControlConfig",
                format!(
                    "spec.cruiseControlConfig.capacityConfig gives broker {} one DISK capacity, but it has {} disks: give DISK per log dir ({{{}}}), or remove capacityConfig and Stoker derives it from the disks' sizes",
                    b.id,
                    b.storage.len(),
                    b.storage
                        .iter()
                        .map(|s| format!(
                            "\"{}/kafka\": \"<MB>\"",
                            s.mount_path.trim_end_matches('/')
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn validate_json(field: &str, text: &str, want: &str) -> Result<serde_json::Value, InvalidSpec> {
    serde_json::from_str(text).map_err(|e| {
        invalid(
            "InvalidCruiseControlConfig",
            format!("{field} is not valid JSON ({e}); it must be {want}"),
        )
    })
}

fn validate_cruise_control(
    cc: &CruiseControlConfig,
) -> Result<ValidatedCruiseControl, InvalidSpec> {
    let config = parse_owned(
        "spec.cruiseControlConfig.config",
        cc.config.as_deref().unwrap_or_default(),
        CC_OWNED_KEYS,
        "which Stoker sets (the brokers to connect to, the config files and the web server); remove it",
    )?;
    let capacity = cc.capacity_config.clone().filter(|c| !c.trim().is_empty());
    if let Some(capacity) = &capacity {
        let parsed = validate_json(
            "spec.cruiseControlConfig.capacityConfig",
            capacity,
            r#"an object with "brokerCapacities" (see the example)"#,
        )?;
        if !parsed
            .get("brokerCapacities")
            .is_some_and(serde_json::Value::is_array)
        {
            return Err(invalid(
                "InvalidCruiseControlConfig",
                r#"spec.cruiseControlConfig.capacityConfig has no "brokerCapacities" array; give each broker's (or brokerId "-1" for all) DISK, CPU, NW_IN and NW_OUT"#,
            ));
        }
    }
    let cluster_configs = cc
        .cluster_configs
        .clone()
        .filter(|c| !c.trim().is_empty())
        .unwrap_or_else(|| "{}".to_owned());
    if !validate_json(
        "spec.cruiseControlConfig.clusterConfigs",
        &cluster_configs,
        "a JSON object of cluster configs",
    )?
    .is_object()
    {
        return Err(invalid(
            "InvalidCruiseControlConfig",
            "spec.cruiseControlConfig.clusterConfigs must be a JSON object, e.g. {\"min.insync.replicas\": 2}",
        ));
    }
    let endpoint = cc
        .cruise_control_endpoint
        .as_deref()
        .unwrap_or_default()
        .trim();
    if !endpoint.is_empty()
        && endpoint
            .trim_start_matches("http://")
            .rsplit_once(':')
            .is_none_or(|(_, p)| {
                p.split('/')
                    .next()
                    .and_then(|p| p.parse::<u16>().ok())
                    .is_none()
            })
    {
        return Err(invalid(
            "InvalidCruiseControlConfig",
            format!(
                "spec.cruiseControlConfig.cruiseControlEndpoint {endpoint:?} must be host:port"
            ),
        ));
    }
    Ok(ValidatedCruiseControl {
        deploy: endpoint.is_empty(),
        image: cc
            .image
            .clone()
            .unwrap_or_else(|| DEFAULT_CC_IMAGE.to_owned()),
        service_account_name: cc.service_account_name.clone(),
        config,
        capacity,
        cluster_configs,
        resources: cc.resource_requirements.clone(),
        topic_partitions: cc.topic_config.as_ref().map_or(12, |t| t.partitions),
        topic_replication_factor: cc.topic_config.as_ref().map(|t| t.replication_factor),
        replication_throttle: cc.replication_throttle,
    })
}

/// TLS listeners: which listeners may have it, and the CA Secret that issues their
/// certificates (made by Stoker with `create: true`, brought by the user otherwise).
/// The inter-broker and controller listeners carry the agents' and the coordinator's
/// admin calls too, which authenticate with certificates only: there they may be
/// `plaintext` or `ssl` (mutual TLS), never SASL.
fn validate_listener_tls(config: &ListenersConfig) -> Result<Option<ListenerTls>, InvalidSpec> {
    let tls: Vec<(usize, &InternalListener)> = config
        .internal_listeners
        .iter()
        .enumerate()
        .filter(|(_, l)| matches!(l.type_.to_ascii_lowercase().as_str(), "ssl" | "sasl_ssl"))
        .collect();
    for (i, l) in config.internal_listeners.iter().enumerate() {
        let role = if l.used_for_inner_broker_communication {
            "the inter-broker listener"
        } else if l.used_for_controller_communication {
            "the controller listener"
        } else {
            continue;
        };
        if l.type_.to_ascii_lowercase().starts_with("sasl") {
            return Err(invalid(
                "ListenerNotSupported",
                format!(
                    "spec.listenersConfig.internalListeners[{i}] is {role} and its type is {:?}, but the brokers, the agents and the coordinator authenticate there with certificates, not SASL; make it ssl (mutual TLS from the cluster CA) or plaintext, and put SASL on a client listener",
                    l.type_
                ),
            ));
        }
    }
    match (tls.first(), &config.ssl_secrets) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(invalid(
            "InvalidListeners",
            "spec.listenersConfig.sslSecrets is set, but no internal listener is ssl or sasl_ssl; remove sslSecrets or give a listener type: ssl",
        )),
        (Some((i, l)), None) => Err(invalid(
            "InvalidListeners",
            format!(
                "spec.listenersConfig.internalListeners[{i}].type is {:?}, but spec.listenersConfig.sslSecrets is not set; set sslSecrets: {{tlsSecretName: <name>, create: true}} and Stoker issues every broker's certificate from a CA it keeps in that Secret",
                l.type_
            ),
        )),
        (Some(_), Some(s)) if !is_dns_subdomain(&s.tls_secret_name) => Err(invalid(
            "InvalidListeners",
            format!(
                "spec.listenersConfig.sslSecrets.tlsSecretName {:?} is not a Secret name (lower-case letters, digits, '-' and '.', at most 253)",
                s.tls_secret_name
            ),
        )),
        (Some(_), Some(s)) => Ok(Some(ListenerTls {
            ca_secret: s.tls_secret_name.clone(),
            create: s.create,
        })),
    }
}

/// A TLS listener's key and trust stores are rendered by its agent from the broker's
/// certificate Secret, and the listeners between nodes (`node_listeners`) always ask
/// for a client certificate: config may not point the stores elsewhere or change that.
fn refuse_tls_store_keys<'a>(
    listeners: &[Listener],
    node_listeners: &[&str],
    maps: impl Iterator<Item = (&'a str, &'a BTreeMap<String, String>)>,
) -> Result<(), InvalidSpec> {
    let prefixes: Vec<(String, bool)> = listeners
        .iter()
        .filter(|l| l.protocol.ends_with("SSL"))
        .map(|l| {
            let lower = l.name.to_ascii_lowercase();
            let node = node_listeners
                .iter()
                .any(|n| n.to_ascii_lowercase().replace('-', "_") == lower);
            (format!("listener.name.{lower}.ssl."), node)
        })
        .collect();
    if prefixes.is_empty() {
        return Ok(());
    }
    for (field, map) in maps {
        for key in map.keys() {
            let store = prefixes.iter().any(|(p, node)| {
                key.strip_prefix(p.as_str()).is_some_and(|rest| {
                    rest.starts_with("keystore.")
                        || rest.starts_with("truststore.")
                        || rest == "key.password"
                        || (*node && rest == "client.auth")
                })
            });
            if store {
                return Err(invalid(
                    "OwnedConfigKey",
                    format!(
                        "{field} sets `{key}`, which Stoker owns on a TLS listener (its stores come from the broker's certificate Secret; between nodes it always requires client certificates); remove it"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// The external listeners: names and container ports distinct from every other
/// listener's, a protocol that needs no TLS material (brokers' certificates name only
/// in-cluster hosts), an access method a Service provides, and for every node with the
/// broker role a port `externalStartingPort + id` that exists and no other external
/// listener uses.
fn validate_external_listeners(
    externals: &[ExternalListener],
    internal: &[Listener],
    ids: impl Iterator<Item = i32> + Clone,
) -> Result<Vec<External>, InvalidSpec> {
    let bad = |message: String| invalid("InvalidExternalListeners", message);
    let mut names: BTreeSet<String> = internal.iter().map(|l| l.name.clone()).collect();
    let mut ports: BTreeSet<u16> = internal.iter().map(|l| l.port).collect();
    let mut taken: BTreeMap<u16, String> = BTreeMap::new();
    let mut out = Vec::new();
    for (i, e) in externals.iter().enumerate() {
        let at = format!("spec.listenersConfig.externalListeners[{i}]");
        if e.name.is_empty()
            || !e
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            || e.name.starts_with('-')
            || e.name.ends_with('-')
            || e.name.len() > 15
            || !e.name.bytes().any(|b| b.is_ascii_lowercase())
        {
            return Err(bad(format!(
                "{at}.name {:?} must be at most 15 lower-case letters, digits and '-', with a letter (it names the listener's Services and the brokers' container port)",
                e.name
            )));
        }
        let upper = e.name.to_ascii_uppercase().replace('-', "_");
        if !names.insert(upper.clone()) {
            return Err(bad(format!(
                "{at}.name {:?} clashes with another listener's name",
                e.name
            )));
        }
        let protocol = match e.type_.to_ascii_lowercase().as_str() {
            "plaintext" => "PLAINTEXT",
            "sasl_plaintext" => "SASL_PLAINTEXT",
            "ssl" | "sasl_ssl" => {
                return Err(bad(format!(
                    "{at}.type {:?}: TLS on an external listener is not built yet (the brokers' certificates name only their in-cluster hosts, so clients outside would fail hostname verification); use plaintext or sasl_plaintext, or reach the TLS listeners inside the cluster",
                    e.type_
                )));
            }
            other => {
                return Err(bad(format!(
                    "{at}.type {other:?} is not one of plaintext, ssl, sasl_plaintext, sasl_ssl"
                )));
            }
        };
        let port = u16::try_from(e.container_port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                bad(format!(
                    "{at}.containerPort {} is not a port",
                    e.container_port
                ))
            })?;
        if !ports.insert(port) {
            return Err(bad(format!(
                "{at}.containerPort {port} is used by another listener"
            )));
        }
        let access = match e.access_method.as_deref() {
            None | Some("LoadBalancer") => AccessMethod::LoadBalancer,
            Some("NodePort") => AccessMethod::NodePort,
            Some("ClusterIP") => {
                return Err(bad(format!(
                    "{at}.accessMethod ClusterIP is not reachable from outside Kubernetes; use LoadBalancer (one per broker) or NodePort"
                )));
            }
            Some(other) => {
                return Err(bad(format!(
                    "{at}.accessMethod {other:?} is not LoadBalancer or NodePort"
                )));
            }
        };
        let starting_port = u16::try_from(e.external_starting_port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                bad(format!(
                    "{at}.externalStartingPort {} is not a port",
                    e.external_starting_port
                ))
            })?;
        for id in ids.clone() {
            let p = i64::from(starting_port) + i64::from(id);
            let Ok(p) = u16::try_from(p) else {
                return Err(bad(format!(
                    "{at}.externalStartingPort {starting_port} + broker id {id} = {p} is not a port (at most 65535); lower externalStartingPort"
                )));
            };
            if let Some(other) = taken.insert(p, e.name.clone()) {
                return Err(bad(format!(
                    "{at}.externalStartingPort {starting_port}: broker {id} would be reached on port {p}, which external listener {other:?} also uses; give the listeners port ranges that do not overlap"
                )));
            }
        }
        let hostname_override = match e.hostname_override.as_deref() {
            None | Some("") => None,
            Some(h) if is_dns_subdomain(h) || h.parse::<std::net::IpAddr>().is_ok() => {
                Some(h.to_owned())
            }
            Some(h) => {
                return Err(bad(format!(
                    "{at}.hostnameOverride {h:?} is not a DNS name or an IP address"
                )));
            }
        };
        out.push(External {
            name: upper,
            protocol: protocol.to_owned(),
            port,
            starting_port,
            access,
            hostname_override,
        });
    }
    Ok(out)
}

fn validate_listeners(listeners: &[InternalListener]) -> Result<Vec<Listener>, InvalidSpec> {
    let mut names = BTreeSet::new();
    let mut ports = BTreeSet::new();
    let mut out = Vec::new();
    for (i, l) in listeners.iter().enumerate() {
        let at = format!("spec.listenersConfig.internalListeners[{i}]");
        if l.name.is_empty()
            || !l
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(invalid(
                "InvalidListeners",
                format!("{at}.name {:?} must be letters, digits, '-' or '_'", l.name),
            ));
        }
        let upper = l.name.to_ascii_uppercase().replace('-', "_");
        if !names.insert(upper.clone()) {
            return Err(invalid(
                "InvalidListeners",
                format!(
                    "{at}.name {:?} clashes with another listener's name",
                    l.name
                ),
            ));
        }
        let protocol = match l.type_.to_ascii_lowercase().as_str() {
            "plaintext" => "PLAINTEXT",
            "ssl" => "SSL",
            "sasl_plaintext" => "SASL_PLAINTEXT",
            "sasl_ssl" => "SASL_SSL",
            other => {
                return Err(invalid(
                    "InvalidListeners",
                    format!(
                        "{at}.type {other:?} is not one of plaintext, ssl, sasl_plaintext, sasl_ssl"
                    ),
                ));
            }
        };
        let port = u16::try_from(l.container_port)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                invalid(
                    "InvalidListeners",
                    format!("{at}.containerPort {} is not a port", l.container_port),
                )
            })?;
        if !ports.insert(port) {
            return Err(invalid(
                "InvalidListeners",
                format!("{at}.containerPort {port} is used by another listener"),
            ));
        }
        out.push(Listener {
            name: upper,
            protocol: protocol.to_owned(),
            port,
        });
    }
    Ok(out)
}

fn validate_broker(
    spec: &KafkaClusterSpec,
    i: usize,
    b: &Broker,
    cluster_read_only: &BTreeMap<String, String>,
) -> Result<ValidatedBroker, InvalidSpec> {
    let at = format!("spec.brokers[{i}] (id {})", b.id);
    let group = match &b.broker_config_group {
        Some(name) => Some(spec.broker_config_groups.get(name).ok_or_else(|| {
            invalid(
                "UnknownBrokerConfigGroup",
                format!(
                    "{at} uses brokerConfigGroup {name:?}, which spec.brokerConfigGroups does not define (defined: {:?})",
                    spec.broker_config_groups.keys().collect::<Vec<_>>()
                ),
            )
        })?),
        None => None,
    };
    let config = merge(group, b.broker_config.as_ref());
    let mut roles = Roles {
        broker: false,
        controller: false,
    };
    for r in &config.process_roles {
        match r.as_str() {
            "broker" => roles.broker = true,
            "controller" => roles.controller = true,
            other => {
                return Err(invalid(
                    "InvalidProcessRoles",
                    format!("{at} has processRoles entry {other:?}; use broker and/or controller"),
                ));
            }
        }
    }
    if config.process_roles.is_empty() {
        roles.broker = true;
    }
    if config.storage_configs.is_empty() {
        return Err(invalid(
            "NoStorage",
            format!(
                "{at} has no storageConfigs; give it (or its group) at least one, e.g. mountPath: /kafka-logs with a pvcSpec"
            ),
        ));
    }
    let mut mounts = BTreeSet::new();
    for (j, s) in config.storage_configs.iter().enumerate() {
        if !s.mount_path.starts_with('/') || s.mount_path.contains(',') {
            return Err(invalid(
                "InvalidStorage",
                format!(
                    "{at} storageConfigs[{j}].mountPath {:?} must be an absolute path without commas",
                    s.mount_path
                ),
            ));
        }
        if !mounts.insert(s.mount_path.trim_end_matches('/').to_owned()) {
            return Err(invalid(
                "InvalidStorage",
                format!("{at} mounts {:?} twice", s.mount_path),
            ));
        }
        if s.pvc_spec.is_some() == s.empty_dir.is_some() {
            return Err(invalid(
                "InvalidStorage",
                format!("{at} storageConfigs[{j}] needs exactly one of pvcSpec or emptyDir"),
            ));
        }
    }
    let mut read_only_config = cluster_read_only.clone();
    read_only_config.extend(parse_properties(
        &format!("{at} readOnlyConfig"),
        &b.read_only_config,
    )?);
    let dynamic_config = parse_properties(
        &format!("{at} brokerConfig.config"),
        config.config.as_deref().unwrap_or(""),
    )?;
    let image = config
        .image
        .clone()
        .or_else(|| spec.cluster_image.clone())
        .unwrap_or_else(|| DEFAULT_KAFKA_IMAGE.to_owned());
    Ok(ValidatedBroker {
        id: b.id,
        roles,
        storage: config.storage_configs.clone(),
        config,
        read_only_config,
        dynamic_config,
        image,
        draining: false,
        removing_disks: std::collections::BTreeSet::new(),
        entry: serde_json::to_string(b).expect("a Broker always serialises"),
    })
}

fn pick_vec<T>(group: Vec<T>, own: Vec<T>) -> Vec<T> {
    if own.is_empty() { group } else { own }
}

/// A broker's settings: its group's, overridden field by field by its own; lists and
/// maps from the broker replace the group's, except envs, labels and annotations,
/// which are merged (the broker's entry wins on a clash).
pub fn merge(group: Option<&BrokerConfig>, own: Option<&BrokerConfig>) -> BrokerConfig {
    let (g, o) = (
        group.cloned().unwrap_or_default(),
        own.cloned().unwrap_or_default(),
    );
    let mut envs = g.envs.clone();
    for e in o.envs {
        envs.retain(|x| x.name != e.name);
        envs.push(e);
    }
    let mut labels = g.broker_labels.clone();
    labels.extend(o.broker_labels);
    let mut annotations = g.broker_annotations.clone();
    annotations.extend(o.broker_annotations);
    BrokerConfig {
        process_roles: pick_vec(g.process_roles, o.process_roles),
        image: o.image.or(g.image),
        config: o.config.or(g.config),
        storage_configs: pick_vec(g.storage_configs, o.storage_configs),
        resource_requirements: o.resource_requirements.or(g.resource_requirements),
        node_selector: o.node_selector.or(g.node_selector),
        affinity: o.affinity.or(g.affinity),
        tolerations: pick_vec(g.tolerations, o.tolerations),
        broker_annotations: annotations,
        broker_labels: labels,
        envs,
        kafka_heap_opts: o.kafka_heap_opts.or(g.kafka_heap_opts),
        kafka_jvm_perf_opts: o.kafka_jvm_perf_opts.or(g.kafka_jvm_perf_opts),
        service_account_name: o.service_account_name.or(g.service_account_name),
        image_pull_secrets: pick_vec(g.image_pull_secrets, o.image_pull_secrets),
        termination_grace_period_seconds: o
            .termination_grace_period_seconds
            .or(g.termination_grace_period_seconds),
        pod_security_context: o.pod_security_context.or(g.pod_security_context),
        security_context: o.security_context.or(g.security_context),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::kafka_cluster::test_support::example_spec;

    #[test]
    fn the_example_is_valid_and_groups_merge_with_broker_values_winning() {
        let v = validate(&example_spec()).expect("the example validates");
        assert_eq!(v.brokers.len(), 4);
        assert_eq!(v.inter_broker_listener, "PLAINTEXT");
        assert_eq!(v.controller_listener, "CONTROLLER");
        let b0 = &v.brokers[&0];
        assert!(b0.roles.broker && !b0.roles.controller);
        assert_eq!(
            b0.config.service_account_name.as_deref(),
            Some("kf-kafka"),
            "from the group"
        );
        assert!(
            b0.config.resource_requirements.is_some(),
            "the broker's own"
        );
        assert!(v.brokers[&100].roles.controller);
        assert_eq!(b0.read_only_config["num.partitions"], "32");
    }

    #[test]
    fn a_tls_client_listener_takes_its_certificates_from_a_ca_stoker_creates() {
        let tls_listener = crate::crd::v1alpha1::InternalListener {
            type_: "ssl".into(),
            name: "tls".into(),
            container_port: 29094,
            ..Default::default()
        };
        let mut spec = example_spec();
        spec.listeners_config
            .internal_listeners
            .push(tls_listener.clone());
        let e = validate(&spec).expect_err("no CA Secret named");
        assert!(
            e.message.contains("internalListeners[2].type") && e.message.contains("sslSecrets"),
            "{}",
            e.message
        );
        spec.listeners_config.ssl_secrets = Some(crate::crd::v1alpha1::SslSecrets {
            tls_secret_name: "kafka-tls-ca".into(),
            create: false,
        });
        assert!(
            validate(&spec)
                .expect("a CA brought by the user")
                .listener_tls
                .is_some_and(|t| !t.create)
        );
        spec.listeners_config.ssl_secrets = Some(crate::crd::v1alpha1::SslSecrets {
            tls_secret_name: "Not_A_Name".into(),
            create: true,
        });
        assert!(
            validate(&spec)
                .expect_err("bad name")
                .message
                .contains("tlsSecretName")
        );
        spec.listeners_config.ssl_secrets = Some(crate::crd::v1alpha1::SslSecrets {
            tls_secret_name: "kafka-tls-ca".into(),
            create: true,
        });
        let v = validate(&spec).expect("valid");
        assert_eq!(
            v.listener_tls,
            Some(ListenerTls {
                ca_secret: "kafka-tls-ca".into(),
                create: true,
            })
        );
        assert_eq!(v.listeners[2].protocol, "SSL");

        spec.read_only_config =
            "listener.name.tls.ssl.keystore.location=/somewhere/else.p12\n".into();
        let e = validate(&spec).expect_err("a store pointed elsewhere");
        assert_eq!(e.reason, "OwnedConfigKey");
        assert!(
            e.message
                .contains("listener.name.tls.ssl.keystore.location"),
            "{}",
            e.message
        );
    }

    #[test]
    fn tls_between_nodes_is_mutual_tls_without_cruise_control_for_now() {
        let mut spec = example_spec();
        for l in &mut spec.listeners_config.internal_listeners {
            l.type_ = "ssl".into();
        }
        spec.listeners_config.ssl_secrets = Some(crate::crd::v1alpha1::SslSecrets {
            tls_secret_name: "kafka-tls-ca".into(),
            create: true,
        });
        let e = validate(&spec).expect_err("Cruise Control has no TLS client settings yet");
        assert_eq!(e.reason, "ListenerNotSupported");
        assert!(
            e.message.contains("spec.cruiseControlConfig"),
            "{}",
            e.message
        );

        spec.cruise_control_config = None;
        let v = validate(&spec).expect("a TLS-only cluster");
        assert!(v.listeners.iter().all(|l| l.protocol == "SSL"));
        assert!(v.listener_tls.is_some());

        let mut loose = spec.clone();
        loose.read_only_config = "listener.name.plaintext.ssl.client.auth=none\n".into();
        let e = validate(&loose).expect_err("client certificates between nodes are owned");
        assert_eq!(e.reason, "OwnedConfigKey");
        assert!(e.message.contains("ssl.client.auth"), "{}", e.message);

        spec.listeners_config.internal_listeners[1].type_ = "sasl_plaintext".into();
        let e = validate(&spec).expect_err("no SASL between controllers");
        assert!(
            e.message
                .contains("internalListeners[1] is the controller listener"),
            "{}",
            e.message
        );
    }

    #[test]
    fn listeners_not_built_yet_are_refused_naming_the_field() {
        let mut spec = example_spec();
        spec.listeners_config.internal_listeners[0].type_ = "sasl_ssl".into();
        let e = validate(&spec).expect_err("no SASL between brokers");
        assert_eq!(e.reason, "ListenerNotSupported");
        assert!(
            e.message
                .contains("internalListeners[0] is the inter-broker listener"),
            "{}",
            e.message
        );

        let mut spec = example_spec();
        spec.listeners_config.ssl_secrets = Some(crate::crd::v1alpha1::SslSecrets {
            tls_secret_name: "tls".into(),
            create: true,
        });
        let e = validate(&spec).expect_err("sslSecrets without a TLS listener");
        assert!(
            e.message
                .contains("sslSecrets is set, but no internal listener"),
            "{}",
            e.message
        );

        let mut spec = example_spec();
        spec.listeners_config.external_listeners =
            Some(vec![crate::crd::v1alpha1::ExternalListener {
                type_: "plaintext".into(),
                name: "external".into(),
                container_port: 9094,
                external_starting_port: 19090,
                ..Default::default()
            }]);
        validate(&spec).expect("a plaintext external listener is built");
    }

    fn external(name: &str, port: i32, start: i32) -> crate::crd::v1alpha1::ExternalListener {
        crate::crd::v1alpha1::ExternalListener {
            type_: "plaintext".into(),
            name: name.into(),
            container_port: port,
            external_starting_port: start,
            ..Default::default()
        }
    }

    #[test]
    fn external_listeners_are_validated_with_the_field_named() {
        let with = |e: Vec<crate::crd::v1alpha1::ExternalListener>| {
            let mut spec = example_spec();
            spec.listeners_config.external_listeners = Some(e);
            validate(&spec)
        };
        let ok = with(vec![
            external("lb", 9094, 19090),
            crate::crd::v1alpha1::ExternalListener {
                access_method: Some("NodePort".into()),
                hostname_override: Some("kafka.example.com".into()),
                ..external("np", 9095, 31000)
            },
        ])
        .expect("valid");
        assert_eq!(ok.external_listeners[0].access, AccessMethod::LoadBalancer);
        assert_eq!(ok.external_listeners[0].name, "LB");
        assert_eq!(ok.external_listeners[1].access, AccessMethod::NodePort);
        assert_eq!(ok.external_listeners[1].broker_port(2), 31002);
        with(vec![external("a", 9094, 19090), external("b", 9095, 19190)])
            .expect("node 100 is a controller only: 19190 is not a port of listener a");

        let mut spec = example_spec();
        spec.listeners_config.external_listeners = Some(vec![external("lb", 9094, 19090)]);
        spec.ingress_controller = Some("haproxy".into());
        let v = validate(&spec).expect("haproxy");
        assert_eq!(v.external_listeners[0].access, AccessMethod::Proxy);
        assert_eq!(v.haproxy.expect("proxy").image, DEFAULT_HAPROXY_IMAGE);
        for (controller, listeners, want) in [
            (
                Some("envoy"),
                vec![external("lb", 9094, 19090)],
                "ingressController envoy is not built",
            ),
            (
                Some("haproxy"),
                vec![crate::crd::v1alpha1::ExternalListener {
                    access_method: Some("NodePort".into()),
                    ..external("np", 9094, 31000)
                }],
                "no external listener has accessMethod LoadBalancer",
            ),
            (
                None,
                vec![],
                "spec.haproxyConfig is set, but spec.ingressController is not haproxy",
            ),
        ] {
            let mut spec = example_spec();
            spec.listeners_config.external_listeners = Some(listeners);
            spec.ingress_controller = controller.map(Into::into);
            if controller.is_none() {
                spec.haproxy_config = Some(Default::default());
            }
            let e = validate(&spec).expect_err(want);
            assert!(e.message.contains(want), "{}", e.message);
        }

        for (listeners, want) in [
            (
                vec![external("a", 9094, 19090), external("b", 9095, 19091)],
                "externalListeners[1].externalStartingPort 19091: broker 0 would be reached on port 19091, which external listener \"a\" also uses",
            ),
            (
                vec![external("a", 9094, 65534)],
                "externalListeners[0].externalStartingPort 65534 + broker id 2 = 65536 is not a port",
            ),
            (
                vec![external("a", 9092, 19090)],
                "externalListeners[0].containerPort 9092 is used by another listener",
            ),
            (
                vec![external("plaintext", 9094, 19090)],
                "clashes with another listener's name",
            ),
            (
                vec![crate::crd::v1alpha1::ExternalListener {
                    type_: "ssl".into(),
                    ..external("a", 9094, 19090)
                }],
                "externalListeners[0].type \"ssl\": TLS on an external listener is not built yet",
            ),
            (
                vec![crate::crd::v1alpha1::ExternalListener {
                    access_method: Some("ClusterIP".into()),
                    ..external("a", 9094, 19090)
                }],
                "externalListeners[0].accessMethod ClusterIP is not reachable from outside",
            ),
            (
                vec![crate::crd::v1alpha1::ExternalListener {
                    hostname_override: Some("not a host".into()),
                    ..external("a", 9094, 19090)
                }],
                "externalListeners[0].hostnameOverride \"not a host\" is not a DNS name",
            ),
        ] {
            let e = with(listeners).expect_err(want);
            assert!(e.message.contains(want), "{}\nwanted: {want}", e.message);
            assert_eq!(e.reason, "InvalidExternalListeners");
        }
    }

    #[test]
    fn zookeeper_is_rejected_with_directions() {
        let mut spec = example_spec();
        spec.zk_addresses = vec!["zk-zookeeper:2181".into()];
        let e = validate(&spec).expect_err("ZooKeeper is gone");
        assert_eq!(e.reason, "ZooKeeperNotSupported");
        assert!(e.message.contains("KRaft") && e.message.contains("processRoles: [controller]"));
    }

    #[test]
    fn duplicate_ids_unknown_groups_and_no_controller_are_rejected() {
        let mut spec = example_spec();
        spec.brokers[1].id = spec.brokers[0].id;
        assert_eq!(
            validate(&spec).expect_err("dup").reason,
            "DuplicateBrokerId"
        );

        let mut spec = example_spec();
        spec.brokers[0].broker_config_group = Some("missing".into());
        let e = validate(&spec).expect_err("unknown group");
        assert_eq!(e.reason, "UnknownBrokerConfigGroup");
        assert!(e.message.contains("\"missing\""));

        let mut spec = example_spec();
        spec.brokers.retain(|b| b.id < 100);
        assert_eq!(
            validate(&spec).expect_err("no controller").reason,
            "NoController"
        );
    }

    #[test]
    fn owned_keys_and_malformed_lines_in_config_strings_are_rejected() {
        let mut spec = example_spec();
        spec.read_only_config
            .push_str("\nlog.dirs=/kafka-logs/data\n");
        let e = validate(&spec).expect_err("owned key");
        assert_eq!(e.reason, "OwnedConfigKey");
        assert!(e.message.contains("`log.dirs`"));

        let mut spec = example_spec();
        spec.cluster_wide_config = "background.threads 2".into();
        let e = validate(&spec).expect_err("malformed");
        assert!(
            e.message.contains("spec.clusterWideConfig line 1"),
            "{}",
            e.message
        );
    }

    #[test]
    fn listener_mistakes_are_named() {
        let mut spec = example_spec();
        spec.listeners_config.internal_listeners[1].used_for_controller_communication = false;
        assert!(
            validate(&spec)
                .expect_err("no controller listener")
                .message
                .contains("usedForControllerCommunication")
        );

        let mut spec = example_spec();
        spec.listeners_config.internal_listeners[1].container_port =
            spec.listeners_config.internal_listeners[0].container_port;
        assert!(
            validate(&spec)
                .expect_err("port clash")
                .message
                .contains("used by another listener")
        );
    }

    #[test]
    fn a_disruption_budget_must_be_a_count_or_a_percentage() {
        let mut spec = example_spec();
        spec.disruption_budget = Some(crate::crd::v1alpha1::DisruptionBudget {
            create: true,
            budget: Some("a few".into()),
        });
        assert_eq!(
            validate(&spec).expect_err("bad budget").reason,
            "InvalidDisruptionBudget"
        );
        for ok in ["1", "20%"] {
            spec.disruption_budget = Some(crate::crd::v1alpha1::DisruptionBudget {
                create: true,
                budget: Some(ok.into()),
            });
            assert!(validate(&spec).is_ok(), "{ok}");
        }
    }

    #[test]
    fn monitoring_says_where_the_exporter_comes_from_and_refuses_what_cannot_work() {
        let mut spec = example_spec();
        assert_eq!(
            validate(&spec).expect("valid").monitoring,
            ValidatedMonitoring::default(),
            "unset: the agent's jar and Stoker's rules"
        );
        let with = |m: MonitoringConfig| {
            let mut spec = example_spec();
            spec.monitoring_config = Some(m);
            validate(&spec)
        };
        let koperator = with(MonitoringConfig {
            jmx_image: Some("example/jmx-javaagent:1.5.0".into()),
            ..MonitoringConfig::default()
        })
        .expect("Koperator's jmxImage");
        assert_eq!(
            koperator.monitoring.jar,
            JarSource::Image {
                image: "example/jmx-javaagent:1.5.0".into(),
                path: "/jmx_prometheus_javaagent.jar".into()
            }
        );
        let in_kafka = with(MonitoringConfig {
            path_to_jar: Some("/opt/kafka/libs/jmx_prometheus_javaagent.jar".into()),
            kafka_jmx_exporter_config: Some("rules:\n- pattern: '.*'\n".into()),
            ..MonitoringConfig::default()
        })
        .expect("a jar in the Kafka image, own rules");
        assert_eq!(
            in_kafka.monitoring.jar,
            JarSource::KafkaImage("/opt/kafka/libs/jmx_prometheus_javaagent.jar".into())
        );
        assert_eq!(in_kafka.monitoring.config, "rules:\n- pattern: '.*'\n");

        for (m, says) in [
            (
                MonitoringConfig {
                    cc_jmx_exporter_config: Some("rules: []".into()),
                    ..MonitoringConfig::default()
                },
                "cCJMXExporterConfig",
            ),
            (
                MonitoringConfig {
                    path_to_jar: Some("relative.jar".into()),
                    ..MonitoringConfig::default()
                },
                "pathToJar",
            ),
            (
                MonitoringConfig {
                    path_to_jar: Some("/a.jar=9999".into()),
                    ..MonitoringConfig::default()
                },
                "pathToJar",
            ),
            (
                MonitoringConfig {
                    jmx_image: Some(" ".into()),
                    ..MonitoringConfig::default()
                },
                "jmxImage",
            ),
            (
                MonitoringConfig {
                    kafka_jmx_exporter_config: Some("hostPort: x:1\n".into()),
                    ..MonitoringConfig::default()
                },
                "hostPort",
            ),
        ] {
            let e = with(m).expect_err(says);
            assert_eq!(e.reason, "InvalidMonitoringConfig");
            assert!(e.message.contains(says), "{says}: {}", e.message);
        }
        spec.monitoring_config = Some(MonitoringConfig::default());
        assert!(
            validate(&spec).is_ok(),
            "an empty monitoringConfig is the default"
        );
    }

    #[test]
    fn properties_parse_with_comments() {
        let p = parse_properties("x", "# c\n\na=1\n b = two \n").expect("parses");
        assert_eq!(
            p,
            BTreeMap::from([
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "two".to_owned())
            ])
        );
    }
}
