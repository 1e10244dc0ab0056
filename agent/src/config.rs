//! The desired-config document: read from the file the coordinator writes into the
//! broker's ConfigMap, then validated once into a [`ValidatedConfig`] that rendering
//! consumes. Every rejection names the key or field at fault and never prints a value,
//! since values may be secrets.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use stoker_proto::agent::v1::{BrokerRef, DesiredConfig};

/// The schema version this agent renders.
pub const SCHEMA_VERSION: u32 = 1;

/// Keys Stoker owns (shared with the coordinator).
pub use stoker_proto::OPERATOR_OWNED_KEYS;

const SECURITY_PROTOCOLS: &[&str] = &["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

/// Why a desired-config document cannot be rendered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("failed to read the desired config {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// The file is not a valid document.
    #[error("failed to parse the desired config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (positions only; serde_json never echoes values).
        message: String,
    },
    /// A field is missing or wrong.
    #[error("invalid desired config: field `{field}` {problem}")]
    Field {
        /// The field, as named in the document.
        field: String,
        /// What is wrong and what to do.
        problem: String,
    },
    /// A config key is reserved for the operator.
    #[error(
        "invalid desired config: `{key}` in {section} is managed by Stoker and cannot be set; remove it (Stoker derives it from the cluster's topology)"
    )]
    OwnedKey {
        /// The key.
        key: String,
        /// Which map held it.
        section: &'static str,
    },
    /// A key or value would corrupt server.properties.
    #[error("invalid desired config: `{key}` in {section} {problem}")]
    BadEntry {
        /// The key (sanitised when the key itself is the problem).
        key: String,
        /// Which map held it.
        section: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
}

/// Reads and parses the document at `path` (no validation).
pub fn read_document(path: &Path) -> Result<DesiredConfig, ConfigError> {
    let raw = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    serde_json::from_str(&raw).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Which role a node plays in KRaft.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Serves clients and hosts partitions.
    pub broker: bool,
    /// Votes in the metadata quorum.
    pub controller: bool,
}

/// One listener, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedListener {
    /// Upper-case name.
    pub name: String,
    /// Security protocol.
    pub protocol: String,
    /// Bound port, or `None` when this node only needs the protocol.
    pub port: Option<u16>,
    /// Advertised host; `None` means the Pod IP (or the Node's address, with
    /// `advertise_node_address`).
    pub advertised_host: Option<String>,
    /// Advertise the address of the Node the Pod runs on (a NodePort listener).
    pub advertise_node_address: bool,
    /// Advertised port.
    pub advertised_port: u16,
    /// For SSL and SASL_SSL listeners: the mounted Secret folder the PEM stores are
    /// rendered from.
    pub tls_dir: Option<PathBuf>,
}

/// A desired config that passed every check; rendering needs nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedConfig {
    /// Which broker.
    pub broker: BrokerRef,
    /// KRaft roles.
    pub roles: Roles,
    /// KRaft cluster id.
    pub cluster_id: String,
    /// Listeners in document order.
    pub listeners: Vec<ValidatedListener>,
    /// Inter-broker listener (brokers only).
    pub inter_broker_listener: Option<String>,
    /// Controller listener names.
    pub controller_listeners: Vec<String>,
    /// controller.quorum.voters.
    pub quorum_voters: String,
    /// Absolute log dirs.
    pub log_dirs: Vec<PathBuf>,
    /// User config, merged in order: readOnlyConfig, clusterWideConfig, broker config.
    pub user_config: BTreeMap<String, String>,
    /// Node label names for broker.rack.
    pub rack_labels: Vec<String>,
    /// Keys whose values come from files.
    pub secret_files: BTreeMap<String, PathBuf>,
    /// log4j2 root level.
    pub log_level: String,
}

impl ValidatedConfig {
    /// Reads and validates the document at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::validate(read_document(path)?)
    }

    /// Checks a parsed document.
    pub fn validate(doc: DesiredConfig) -> Result<Self, ConfigError> {
        let field = |field: &str, problem: String| ConfigError::Field {
            field: field.to_owned(),
            problem,
        };
        if doc.schema_version != SCHEMA_VERSION {
            return Err(field(
                "schemaVersion",
                format!(
                    "is {}, this agent renders version {SCHEMA_VERSION}; run an agent as new as the coordinator",
                    doc.schema_version
                ),
            ));
        }
        let broker = doc.broker.clone().ok_or_else(|| {
            field(
                "broker",
                "is missing; it names the cluster, namespace and broker id".into(),
            )
        })?;
        if broker.broker_id < 0 {
            return Err(field("broker.brokerId", "must be 0 or more".into()));
        }
        if broker.cluster.is_empty() || broker.namespace.is_empty() {
            return Err(field(
                "broker",
                "must name both `cluster` and `namespace`".into(),
            ));
        }

        let mut roles = Roles {
            broker: false,
            controller: false,
        };
        for role in &doc.process_roles {
            match role.as_str() {
                "broker" => roles.broker = true,
                "controller" => roles.controller = true,
                _ => {
                    return Err(field(
                        "processRoles",
                        format!("contains {role:?}; use \"broker\" and/or \"controller\""),
                    ));
                }
            }
        }
        if !roles.broker && !roles.controller {
            return Err(field(
                "processRoles",
                "is empty; a node is a broker, a controller or both".into(),
            ));
        }

        if !is_cluster_id(&doc.cluster_id) {
            return Err(field(
                "clusterId",
                "must be a KRaft cluster id: 22 base64url characters (a random UUID)".into(),
            ));
        }

        let mut names = BTreeSet::new();
        let mut ports = BTreeSet::new();
        let mut listeners = Vec::new();
        for (i, l) in doc.listeners.iter().enumerate() {
            let at = format!("listeners[{i}]");
            if l.name.is_empty()
                || !l
                    .name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(field(
                    &format!("{at}.name"),
                    "must be upper-case letters, digits and '_' (e.g. INTERNAL)".into(),
                ));
            }
            if !names.insert(l.name.clone()) {
                return Err(field(
                    &format!("{at}.name"),
                    format!(
                        "{:?} is used by two listeners; listener names must be unique",
                        l.name
                    ),
                ));
            }
            if !SECURITY_PROTOCOLS.contains(&l.security_protocol.as_str()) {
                return Err(field(
                    &format!("{at}.securityProtocol"),
                    format!(
                        "is {:?}; use one of {}",
                        l.security_protocol,
                        SECURITY_PROTOCOLS.join(", ")
                    ),
                ));
            }
            let port = match l.container_port {
                0 => None,
                p => Some(u16::try_from(p).map_err(|_| {
                    field(
                        &format!("{at}.containerPort"),
                        "must be at most 65535".into(),
                    )
                })?),
            };
            if let Some(p) = port
                && !ports.insert(p)
            {
                return Err(field(
                    &format!("{at}.containerPort"),
                    format!("{p} is used by two listeners"),
                ));
            }
            let advertised_port = match l.advertised_port {
                0 => port.unwrap_or(0),
                p => u16::try_from(p).map_err(|_| {
                    field(
                        &format!("{at}.advertisedPort"),
                        "must be at most 65535".into(),
                    )
                })?,
            };
            if l.advertised_host
                .contains(|c: char| c.is_whitespace() || c == ',' || c == '/')
            {
                return Err(field(
                    &format!("{at}.advertisedHost"),
                    "must be a host name or address".into(),
                ));
            }
            if l.advertise_node_address && !l.advertised_host.is_empty() {
                return Err(field(
                    &format!("{at}.advertisedHost"),
                    "is set together with advertiseNodeAddress; a listener advertises one host, so set only one of them".into(),
                ));
            }
            let tls = matches!(l.security_protocol.as_str(), "SSL" | "SASL_SSL");
            let tls_dir = match (tls, l.tls_dir.as_str()) {
                (false, "") => None,
                (false, _) => {
                    return Err(field(
                        &format!("{at}.tlsDir"),
                        format!(
                            "is set on a {} listener; only SSL and SASL_SSL listeners use TLS files",
                            l.security_protocol
                        ),
                    ));
                }
                (true, "") if port.is_some() => {
                    return Err(field(
                        &format!("{at}.tlsDir"),
                        format!(
                            "is empty; a bound {} listener needs the folder of its mounted Secret (tls.crt, tls.key, ca.crt)",
                            l.security_protocol
                        ),
                    ));
                }
                (true, "") => None,
                (true, dir) if !Path::new(dir).is_absolute() || dir.contains(['\n', '\r']) => {
                    return Err(field(
                        &format!("{at}.tlsDir"),
                        "must be an absolute path".into(),
                    ));
                }
                (true, dir) => Some(PathBuf::from(dir)),
            };
            listeners.push(ValidatedListener {
                name: l.name.clone(),
                protocol: l.security_protocol.clone(),
                port,
                advertised_host: (!l.advertised_host.is_empty()).then(|| l.advertised_host.clone()),
                advertised_port,
                advertise_node_address: l.advertise_node_address,
                tls_dir,
            });
        }
        let bound = |name: &str| listeners.iter().any(|l| l.name == name && l.port.is_some());
        let known = |name: &str| listeners.iter().any(|l| l.name == name);

        if doc.controller_listeners.is_empty() {
            return Err(field(
                "controllerListeners",
                "is empty; name the listener controllers use (e.g. CONTROLLER)".into(),
            ));
        }
        for c in &doc.controller_listeners {
            if !known(c) {
                return Err(field(
                    "controllerListeners",
                    format!("names {c:?}, which is not among `listeners`"),
                ));
            }
            if roles.controller && !bound(c) {
                return Err(field(
                    "controllerListeners",
                    format!("names {c:?}, which a controller must bind: give it a containerPort"),
                ));
            }
        }
        let inter_broker_listener = if roles.broker {
            if doc.inter_broker_listener.is_empty() {
                return Err(field(
                    "interBrokerListener",
                    "is empty; name the listener brokers replicate over".into(),
                ));
            }
            if !bound(&doc.inter_broker_listener) {
                return Err(field(
                    "interBrokerListener",
                    format!(
                        "names {:?}, which is not a bound listener of this broker",
                        doc.inter_broker_listener
                    ),
                ));
            }
            if doc
                .controller_listeners
                .contains(&doc.inter_broker_listener)
            {
                return Err(field(
                    "interBrokerListener",
                    "must differ from the controller listeners".into(),
                ));
            }
            Some(doc.inter_broker_listener.clone())
        } else {
            None
        };

        // The agent reads its broker (and controller) over these listeners with
        // certificates only: plaintext, or SSL with the broker's Secret mounted (its own
        // certificate is its client identity there); never SASL.
        for name in doc
            .controller_listeners
            .iter()
            .chain(inter_broker_listener.as_ref())
        {
            let Some(l) = listeners.iter().find(|l| &l.name == name) else {
                continue;
            };
            if l.protocol.starts_with("SASL") {
                return Err(field(
                    "listeners",
                    format!(
                        "{name:?} carries traffic between nodes and uses SASL, but the agent and the nodes authenticate there with certificates only; make it SSL or PLAINTEXT"
                    ),
                ));
            }
        }

        if !is_voters(&doc.controller_quorum_voters) {
            return Err(field(
                "controllerQuorumVoters",
                "must be a list of id@host:port separated by commas (e.g. 100@kafka-100.kafka:9093)".into(),
            ));
        }

        if doc.log_dirs.is_empty() {
            return Err(field(
                "logDirs",
                "is empty; give at least one data volume's mount path".into(),
            ));
        }
        let mut log_dirs = Vec::new();
        for (i, d) in doc.log_dirs.iter().enumerate() {
            let p = PathBuf::from(d);
            if !p.is_absolute() || d.contains(',') || d.contains(['\n', '\r']) {
                return Err(field(
                    &format!("logDirs[{i}]"),
                    "must be an absolute path without commas".into(),
                ));
            }
            log_dirs.push(p);
        }

        let mut user_config = BTreeMap::new();
        for (section, map) in [
            ("readOnlyConfig", &doc.read_only_config),
            ("clusterWideConfig", &doc.cluster_wide_config),
            ("brokerConfig", &doc.broker_config),
        ] {
            for (k, v) in map {
                check_entry(section, k, v, !doc.rack_labels.is_empty())?;
                user_config.insert(k.clone(), v.clone());
            }
        }

        // A TLS listener's store keys are rendered from its Secret folder.
        for l in listeners.iter().filter(|l| l.tls_dir.is_some()) {
            let prefix = format!("listener.name.{}.ssl.", l.name.to_ascii_lowercase());
            if let Some(key) = user_config.keys().find(|k| {
                k.strip_prefix(&prefix).is_some_and(|rest| {
                    rest.starts_with("keystore.")
                        || rest.starts_with("truststore.")
                        || rest == "key.password"
                })
            }) {
                return Err(field(
                    key,
                    format!(
                        "sets a store of listener {}, whose stores Stoker renders from its tlsDir; remove the key",
                        l.name
                    ),
                ));
            }
        }

        for (i, label) in doc.rack_labels.iter().enumerate() {
            if label.is_empty() || label.contains(char::is_whitespace) {
                return Err(field(
                    &format!("rackLabels[{i}]"),
                    "must be a Node label name".into(),
                ));
            }
        }

        let mut secret_files = BTreeMap::new();
        for (i, s) in doc.secret_files.iter().enumerate() {
            if !is_key(&s.key) {
                return Err(field(
                    &format!("secretFiles[{i}].key"),
                    "must be a Kafka config key".into(),
                ));
            }
            if OPERATOR_OWNED_KEYS.contains(&s.key.as_str()) {
                return Err(ConfigError::OwnedKey {
                    key: s.key.clone(),
                    section: "secretFiles",
                });
            }
            if !Path::new(&s.path).is_absolute() {
                return Err(field(
                    &format!("secretFiles[{i}].path"),
                    "must be an absolute path to a mounted Secret file".into(),
                ));
            }
            if user_config.contains_key(&s.key)
                || secret_files
                    .insert(s.key.clone(), PathBuf::from(&s.path))
                    .is_some()
            {
                return Err(field(
                    &format!("secretFiles[{i}].key"),
                    format!("`{}` is set twice; set it once", s.key),
                ));
            }
        }

        let log_level = match doc.log_level.as_str() {
            "" => "INFO".to_owned(),
            l @ ("ERROR" | "WARN" | "INFO" | "DEBUG" | "TRACE") => l.to_owned(),
            other => {
                return Err(field(
                    "logLevel",
                    format!("is {other:?}; use ERROR, WARN, INFO, DEBUG or TRACE"),
                ));
            }
        };

        Ok(Self {
            broker,
            roles,
            cluster_id: doc.cluster_id,
            listeners,
            inter_broker_listener,
            controller_listeners: doc.controller_listeners,
            quorum_voters: doc.controller_quorum_voters,
            log_dirs,
            user_config,
            rack_labels: doc.rack_labels,
            secret_files,
            log_level,
        })
    }

    /// Whether listener `name` carries traffic between nodes (it is the inter-broker or
    /// a controller listener).
    pub fn carries_node_traffic(&self, name: &str) -> bool {
        self.inter_broker_listener.as_deref() == Some(name)
            || self.controller_listeners.iter().any(|c| c == name)
    }

    /// The controller listener, when this node is a controller.
    pub fn controller_listener(&self) -> Option<&ValidatedListener> {
        let name = self.controller_listeners.first()?;
        self.listeners.iter().find(|l| &l.name == name)
    }

    /// The listener this agent uses to reach its own broker: the inter-broker one for
    /// brokers, the first controller listener otherwise.
    pub fn internal_listener(&self) -> Option<&ValidatedListener> {
        let name = self
            .inter_broker_listener
            .as_ref()
            .or_else(|| self.controller_listeners.first())?;
        self.listeners.iter().find(|l| &l.name == name)
    }
}

fn check_entry(
    section: &'static str,
    key: &str,
    value: &str,
    rack_from_labels: bool,
) -> Result<(), ConfigError> {
    if !is_key(key) {
        return Err(ConfigError::BadEntry {
            key: key.escape_debug().to_string(),
            section,
            problem: "is not a valid config key: use letters, digits, '.', '_' and '-' only",
        });
    }
    if OPERATOR_OWNED_KEYS.contains(&key) || (rack_from_labels && key == "broker.rack") {
        return Err(ConfigError::OwnedKey {
            key: key.to_owned(),
            section,
        });
    }
    if value.contains(['\n', '\r', '\0']) {
        return Err(ConfigError::BadEntry {
            key: key.to_owned(),
            section,
            problem: "has a value with a line break or NUL, which would corrupt server.properties; put it on one line",
        });
    }
    Ok(())
}

/// A Kafka config key: non-empty ASCII letters, digits, '.', '_', '-'.
pub fn is_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn is_cluster_id(id: &str) -> bool {
    id.len() == 22
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_voters(voters: &str) -> bool {
    !voters.is_empty()
        && voters.split(',').all(|v| {
            let Some((id, addr)) = v.split_once('@') else {
                return false;
            };
            let Some((host, port)) = addr.rsplit_once(':') else {
                return false;
            };
            id.parse::<u32>().is_ok()
                && !host.is_empty()
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        })
}

#[cfg(test)]
pub(crate) mod tests {
    use stoker_proto::agent::v1::{Listener, SecretFileRef};

    use super::*;

    /// A valid broker document, as the coordinator writes it.
    pub(crate) fn broker_doc() -> DesiredConfig {
        DesiredConfig {
            schema_version: 1,
            broker: Some(BrokerRef {
                cluster: "kafka".into(),
                namespace: "default".into(),
                broker_id: 1,
            }),
            process_roles: vec!["broker".into()],
            cluster_id: "MkU3OEVBNTcwNTJENDM2Qk".into(),
            listeners: vec![
                Listener {
                    name: "INTERNAL".into(),
                    security_protocol: "PLAINTEXT".into(),
                    container_port: 29092,
                    advertised_host: "kafka-1.kafka-headless.default.svc".into(),
                    advertised_port: 0,
                    tls_dir: String::new(),
                    advertise_node_address: false,
                },
                Listener {
                    name: "CONTROLLER".into(),
                    security_protocol: "PLAINTEXT".into(),
                    container_port: 0,
                    advertised_host: String::new(),
                    advertised_port: 0,
                    tls_dir: String::new(),
                    advertise_node_address: false,
                },
            ],
            inter_broker_listener: "INTERNAL".into(),
            controller_listeners: vec!["CONTROLLER".into()],
            controller_quorum_voters: "100@kafka-100.kafka-headless.default.svc:29093".into(),
            log_dirs: vec!["/kafka-logs/kafka".into()],
            read_only_config: BTreeMap::from([(
                "auto.create.topics.enable".into(),
                "false".into(),
            )]),
            cluster_wide_config: BTreeMap::from([("background.threads".into(), "2".into())]),
            broker_config: BTreeMap::from([("background.threads".into(), "4".into())]),
            rack_labels: vec![],
            secret_files: vec![],
            log_level: String::new(),
        }
    }

    fn rejects(doc: DesiredConfig) -> String {
        ValidatedConfig::validate(doc)
            .expect_err("the document is rejected")
            .to_string()
    }

    #[test]
    fn a_valid_broker_document_is_accepted_and_merged_in_order() {
        let v = ValidatedConfig::validate(broker_doc()).expect("valid");
        assert_eq!(
            v.user_config["background.threads"], "4",
            "broker config wins"
        );
        assert_eq!(
            v.internal_listener().map(|l| l.name.as_str()),
            Some("INTERNAL")
        );
        assert_eq!(v.listeners[1].port, None);
    }

    #[test]
    fn an_owned_key_is_rejected_with_its_name() {
        let mut doc = broker_doc();
        doc.broker_config.insert("log.dirs".into(), "/tmp".into());
        let msg = rejects(doc);
        assert!(
            msg.contains("`log.dirs` in brokerConfig is managed by Stoker"),
            "{msg}"
        );
    }

    #[test]
    fn line_breaks_and_bad_keys_are_rejected_without_echoing_values() {
        let mut doc = broker_doc();
        doc.broker_config
            .insert("ssl.key.password".into(), "hunter2\nnode.id=7".into());
        let msg = rejects(doc);
        assert!(
            msg.contains("`ssl.key.password`") && msg.contains("line break"),
            "{msg}"
        );
        assert!(
            !msg.contains("hunter2"),
            "values never appear in errors: {msg}"
        );

        let mut doc = broker_doc();
        doc.read_only_config.insert("bad key=".into(), "x".into());
        assert!(rejects(doc).contains("not a valid config key"));
    }

    #[test]
    fn topology_mistakes_name_the_field() {
        let mut doc = broker_doc();
        doc.inter_broker_listener = "EXTERNAL".into();
        assert!(rejects(doc).contains("`interBrokerListener`"));

        let mut doc = broker_doc();
        doc.process_roles = vec!["zookeeper".into()];
        assert!(rejects(doc).contains("`processRoles`"));

        let mut doc = broker_doc();
        doc.controller_quorum_voters = "kafka-100:9093".into();
        assert!(rejects(doc).contains("`controllerQuorumVoters`"));

        let mut doc = broker_doc();
        doc.process_roles = vec!["broker".into(), "controller".into()];
        assert!(
            rejects(doc).contains("a controller must bind"),
            "the controller listener needs a port"
        );

        let mut doc = broker_doc();
        doc.listeners[1].name = "INTERNAL".into();
        assert!(rejects(doc).contains("unique"));

        let mut doc = broker_doc();
        doc.schema_version = 2;
        assert!(rejects(doc).contains("`schemaVersion`"));
    }

    #[test]
    fn secret_files_must_not_shadow_or_repeat_keys() {
        let mut doc = broker_doc();
        doc.secret_files = vec![SecretFileRef {
            key: "node.id".into(),
            path: "/s".into(),
        }];
        assert!(rejects(doc).contains("managed by Stoker"));

        let mut doc = broker_doc();
        doc.secret_files = vec![SecretFileRef {
            key: "auto.create.topics.enable".into(),
            path: "/s".into(),
        }];
        assert!(rejects(doc).contains("set twice"));
    }

    #[test]
    fn broker_rack_is_owned_only_when_rack_labels_are_given() {
        let mut doc = broker_doc();
        doc.broker_config.insert("broker.rack".into(), "a".into());
        assert!(ValidatedConfig::validate(doc.clone()).is_ok());
        doc.rack_labels = vec!["topology.kubernetes.io/zone".into()];
        assert!(rejects(doc).contains("`broker.rack`"));
    }

    #[test]
    fn unreadable_and_malformed_files_say_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.json");
        assert!(
            ValidatedConfig::load(&missing)
                .expect_err("missing")
                .to_string()
                .contains("failed to read")
        );
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{ not json").expect("write");
        assert!(
            ValidatedConfig::load(&bad)
                .expect_err("bad")
                .to_string()
                .contains("failed to parse")
        );
    }

    #[test]
    fn a_listener_advertises_one_host() {
        let mut doc = broker_doc();
        doc.listeners[0].advertise_node_address = true;
        let err = ValidatedConfig::validate(doc).expect_err("two hosts");
        assert!(err.to_string().contains("advertisedHost"), "{err}");
    }

    fn with_client_tls(tls_dir: &str) -> DesiredConfig {
        let mut doc = broker_doc();
        doc.listeners.push(Listener {
            name: "CLIENT_TLS".into(),
            security_protocol: "SSL".into(),
            container_port: 9094,
            advertised_host: String::new(),
            advertised_port: 0,
            tls_dir: tls_dir.into(),
            advertise_node_address: false,
        });
        doc
    }

    #[test]
    fn tls_listeners_need_a_secret_folder_and_only_they_take_one() {
        let v = ValidatedConfig::validate(with_client_tls("/etc/kafka-tls/client")).expect("ok");
        assert_eq!(
            v.listeners[2].tls_dir.as_deref(),
            Some(Path::new("/etc/kafka-tls/client"))
        );
        assert!(rejects(with_client_tls("")).contains("listeners[2].tlsDir"));
        assert!(rejects(with_client_tls("relative")).contains("absolute"));
        let mut plain = broker_doc();
        plain.listeners[0].tls_dir = "/etc/tls".into();
        assert!(rejects(plain).contains("only SSL and SASL_SSL"));
    }

    #[test]
    fn sasl_between_nodes_and_user_set_stores_are_refused_with_the_reason() {
        let mut doc = with_client_tls("/tls");
        doc.listeners[0].security_protocol = "SSL".into();
        doc.listeners[0].tls_dir = "/tls-internal".into();
        let v = ValidatedConfig::validate(doc.clone()).expect("mutual TLS between nodes");
        assert!(v.carries_node_traffic("INTERNAL"));
        doc.listeners[0].security_protocol = "SASL_SSL".into();
        let e = rejects(doc);
        assert!(e.contains("\"INTERNAL\"") && e.contains("SASL"), "{e}");
        let mut doc = with_client_tls("/tls");
        doc.broker_config.insert(
            "listener.name.client_tls.ssl.keystore.location".into(),
            "/elsewhere".into(),
        );
        assert!(rejects(doc).contains("renders from its tlsDir"));
    }
}
