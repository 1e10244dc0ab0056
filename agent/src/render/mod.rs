//! Rendering: a [`ValidatedConfig`] plus the Pod's facts become the broker's
//! `server.properties` and `log4j2.properties`. Pure and deterministic: the same input
//! gives byte-identical output (keys are sorted). Operator-owned keys are set last, so
//! nothing the user writes can change the topology; validation already refused such
//! keys, this ordering is the second line of defence.

mod properties;

use std::collections::BTreeMap;

pub use properties::escape_value;

use crate::{config::ValidatedConfig, tls_store};

/// The rendered files, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFileName {
    /// Kafka's main config.
    ServerProperties,
    /// The broker's logging config.
    Log4j2Properties,
}

impl ConfigFileName {
    /// The file name in the shared folder.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ServerProperties => "server.properties",
            Self::Log4j2Properties => "log4j2.properties",
        }
    }
}

/// What the agent knows about its Pod (downward API and the Node's labels).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodFacts {
    /// `POD_NAME`.
    pub pod_name: String,
    /// `POD_NAMESPACE`.
    pub namespace: String,
    /// `POD_IP`: listeners bind it and advertise it when no host is given.
    pub pod_ip: String,
    /// `NODE_NAME`.
    pub node_name: String,
    /// `HOST_IP` (the Node's address): advertised by listeners with
    /// `advertise_node_address`.
    pub host_ip: Option<String>,
    /// broker.rack from the Node's labels, when rack labels are configured.
    pub rack: Option<String>,
    /// The folder the agent renders into (server.properties, TLS listeners' stores).
    pub config_dir: std::path::PathBuf,
}

/// Values read from mounted Secret files, by config key. Their `Debug` form hides
/// the values so they cannot reach a log line by accident.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretValues(pub BTreeMap<String, String>);

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.keys().map(|k| format!("{k}=<redacted>")))
            .finish()
    }
}

/// The output of [`render`].
#[derive(Clone, PartialEq, Eq)]
pub struct Rendered {
    /// `server.properties`.
    pub server_properties: String,
    /// `log4j2.properties`.
    pub log4j2_properties: String,
}

impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // server.properties may hold secrets.
        f.debug_struct("Rendered").finish_non_exhaustive()
    }
}

/// The broker's effective properties as a sorted map (secrets included).
pub fn effective_properties(
    config: &ValidatedConfig,
    facts: &PodFacts,
    secrets: &SecretValues,
) -> BTreeMap<String, String> {
    let mut p = config.user_config.clone();
    for (k, v) in &secrets.0 {
        p.insert(k.clone(), v.clone());
    }
    for (k, v) in owned_properties(config, facts) {
        p.insert(k, v);
    }
    p
}

/// Renders both files.
pub fn render(
    config: &ValidatedConfig,
    facts: &PodFacts,
    secrets: &SecretValues,
    config_hash: &str,
) -> Rendered {
    let props = effective_properties(config, facts, secrets);
    let b = &config.broker;
    let mut server = format!(
        "# Rendered by stoker-agent for broker {} of KafkaCluster {}/{} (desired config {config_hash}).\n# Do not edit: the agent rewrites this file from the broker's ConfigMap at every start.\n",
        b.broker_id, b.namespace, b.cluster
    );
    for (k, v) in &props {
        server.push_str(k);
        server.push('=');
        server.push_str(&escape_value(v));
        server.push('\n');
    }
    Rendered {
        server_properties: server,
        log4j2_properties: log4j2(&config.log_level),
    }
}

fn owned_properties(config: &ValidatedConfig, facts: &PodFacts) -> BTreeMap<String, String> {
    let mut p = BTreeMap::new();
    let roles = match (config.roles.broker, config.roles.controller) {
        (true, true) => "broker,controller",
        (false, true) => "controller",
        _ => "broker",
    };
    p.insert("process.roles".into(), roles.into());
    p.insert("node.id".into(), config.broker.broker_id.to_string());
    p.insert(
        "controller.quorum.voters".into(),
        config.quorum_voters.clone(),
    );
    p.insert(
        "controller.listener.names".into(),
        config.controller_listeners.join(","),
    );
    let bound: Vec<_> = config
        .listeners
        .iter()
        .filter_map(|l| l.port.map(|port| (l, port)))
        .collect();
    p.insert(
        "listeners".into(),
        bound
            .iter()
            .map(|(l, port)| format!("{}://{}:{port}", l.name, facts.pod_ip))
            .collect::<Vec<_>>()
            .join(","),
    );
    p.insert(
        "advertised.listeners".into(),
        bound
            .iter()
            .map(|(l, _)| {
                let host = match (&l.advertised_host, &facts.host_ip) {
                    (Some(host), _) => host.as_str(),
                    (None, Some(node)) if l.advertise_node_address => node.as_str(),
                    _ => &facts.pod_ip,
                };
                format!("{}://{host}:{}", l.name, l.advertised_port)
            })
            .collect::<Vec<_>>()
            .join(","),
    );
    p.insert(
        "listener.security.protocol.map".into(),
        config
            .listeners
            .iter()
            .map(|l| format!("{}:{}", l.name, l.protocol))
            .collect::<Vec<_>>()
            .join(","),
    );
    for l in config.listeners.iter().filter(|l| l.tls_dir.is_some()) {
        let paths = tls_store::store_paths(&facts.config_dir, &l.name, tls_store::Pair::Static);
        p.extend(tls_store::location_properties(&l.name, &paths));
        // Between nodes TLS is mutual: a node, an agent or the coordinator connects
        // there only with a certificate from the cluster's CA.
        if config.carries_node_traffic(&l.name) {
            p.insert(
                format!(
                    "listener.name.{}.ssl.client.auth",
                    l.name.to_ascii_lowercase()
                ),
                "required".into(),
            );
        }
    }
    if let Some(ibl) = &config.inter_broker_listener {
        p.insert("inter.broker.listener.name".into(), ibl.clone());
    }
    p.insert(
        "log.dirs".into(),
        config
            .log_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(","),
    );
    if let Some(rack) = &facts.rack {
        p.insert("broker.rack".into(), rack.clone());
    }
    p
}

fn log4j2(level: &str) -> String {
    format!(
        "# Rendered by stoker-agent. Console only: the container runtime keeps the log.\n\
status = warn\n\
appender.stdout.type = Console\n\
appender.stdout.name = STDOUT\n\
appender.stdout.layout.type = PatternLayout\n\
appender.stdout.layout.pattern = [%d] %p %m (%c)%n\n\
rootLogger.level = {level}\n\
rootLogger.appenderRef.stdout.ref = STDOUT\n\
logger.request.name = kafka.request.logger\n\
logger.request.level = WARN\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::broker_doc;

    fn facts() -> PodFacts {
        PodFacts {
            pod_name: "kafka-1".into(),
            namespace: "default".into(),
            pod_ip: "10.0.0.7".into(),
            node_name: "node-a".into(),
            host_ip: Some("192.0.2.10".into()),
            rack: None,
            config_dir: "/etc/kafka".into(),
        }
    }

    #[test]
    fn a_node_port_listener_advertises_the_node_address_and_its_own_port() {
        let mut doc = broker_doc();
        doc.listeners.push(stoker_proto::agent::v1::Listener {
            name: "EXTERNAL".into(),
            security_protocol: "PLAINTEXT".into(),
            container_port: 9094,
            advertised_port: 31001,
            advertise_node_address: true,
            ..Default::default()
        });
        let out = rendered(doc, &facts(), &SecretValues::default());
        let advertised = out
            .lines()
            .find_map(|l| l.strip_prefix("advertised.listeners="))
            .expect("advertised.listeners is rendered");
        assert!(
            advertised.ends_with(",EXTERNAL://192.0.2.10:31001"),
            "{advertised}"
        );
        assert!(out.contains("EXTERNAL://10.0.0.7:9094"), "binds the Pod IP");
        assert!(out.contains("EXTERNAL:PLAINTEXT"));
    }

    fn rendered(
        doc: stoker_proto::agent::v1::DesiredConfig,
        facts: &PodFacts,
        secrets: &SecretValues,
    ) -> String {
        let hash = stoker_proto::config_hash(&doc);
        let v = ValidatedConfig::validate(doc).expect("valid");
        render(&v, facts, secrets, &hash).server_properties
    }

    #[test]
    fn renders_topology_and_user_config() {
        let out = rendered(broker_doc(), &facts(), &SecretValues::default());
        for line in [
            "process.roles=broker\n",
            "node.id=1\n",
            "listeners=INTERNAL://10.0.0.7:29092\n",
            "advertised.listeners=INTERNAL://kafka-1.kafka-headless.default.svc:29092\n",
            "listener.security.protocol.map=INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT\n",
            "controller.listener.names=CONTROLLER\n",
            "inter.broker.listener.name=INTERNAL\n",
            "controller.quorum.voters=100@kafka-100.kafka-headless.default.svc:29093\n",
            "log.dirs=/kafka-logs/kafka\n",
            "background.threads=4\n",
            "auto.create.topics.enable=false\n",
        ] {
            assert!(out.contains(line), "missing {line:?} in\n{out}");
        }
    }

    #[test]
    fn output_is_byte_identical_for_the_same_input() {
        let a = rendered(broker_doc(), &facts(), &SecretValues::default());
        let b = rendered(broker_doc(), &facts(), &SecretValues::default());
        assert_eq!(a, b);
        let keys: Vec<&str> = a
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split('=').next().unwrap_or(""))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted, "keys are sorted");
    }

    #[test]
    fn rack_and_secrets_are_rendered_and_secrets_hidden_from_debug() {
        let mut doc = broker_doc();
        doc.rack_labels = vec!["topology.kubernetes.io/zone".into()];
        let facts = PodFacts {
            rack: Some("zone-a".into()),
            ..facts()
        };
        let secrets = SecretValues(BTreeMap::from([(
            "ssl.key.password".to_owned(),
            "s3cr\\t".to_owned(),
        )]));
        let out = rendered(doc, &facts, &secrets);
        assert!(out.contains("broker.rack=zone-a\n"));
        assert!(
            out.contains("ssl.key.password=s3cr\\\\t\n"),
            "backslashes are escaped: {out}"
        );
        assert!(!format!("{secrets:?}").contains("s3cr"));
    }

    #[test]
    fn a_controller_advertises_and_binds_its_controller_listener() {
        let mut doc = broker_doc();
        doc.process_roles = vec!["controller".into()];
        doc.listeners[1].container_port = 29093;
        doc.listeners[1].advertised_host = "kafka-100.kafka-headless.default.svc".into();
        doc.listeners.remove(0);
        doc.inter_broker_listener = String::new();
        let out = rendered(doc, &facts(), &SecretValues::default());
        assert!(out.contains("process.roles=controller\n"));
        assert!(out.contains("listeners=CONTROLLER://10.0.0.7:29093\n"));
        assert!(!out.contains("inter.broker.listener.name"));
    }

    #[test]
    fn file_names_are_pinned() {
        assert_eq!(
            ConfigFileName::ServerProperties.as_str(),
            "server.properties"
        );
        assert_eq!(
            ConfigFileName::Log4j2Properties.as_str(),
            "log4j2.properties"
        );
    }

    #[test]
    fn tls_listeners_point_kafka_at_the_rendered_pem_stores() {
        let mut doc = broker_doc();
        doc.listeners.push(stoker_proto::agent::v1::Listener {
            advertise_node_address: false,
            name: "CLIENT_TLS".into(),
            security_protocol: "SSL".into(),
            container_port: 9094,
            advertised_host: String::new(),
            advertised_port: 0,
            tls_dir: "/etc/kafka-tls/client".into(),
        });
        let out = rendered(doc, &facts(), &SecretValues::default());
        for line in [
            "listener.name.client_tls.ssl.keystore.type=PEM\n",
            "listener.name.client_tls.ssl.keystore.location=/etc/kafka/tls/client_tls.keystore.pem\n",
            "listener.name.client_tls.ssl.truststore.location=/etc/kafka/tls/client_tls.truststore.pem\n",
            "CLIENT_TLS:SSL",
        ] {
            assert!(out.contains(line), "{line} in {out}");
        }
        assert!(!out.contains("listener.name.internal.ssl"));
        assert!(
            !out.contains("client_tls.ssl.client.auth"),
            "a client listener asks for no client certificate"
        );
    }

    #[test]
    fn tls_between_nodes_requires_client_certificates() {
        let mut doc = broker_doc();
        for l in &mut doc.listeners {
            l.security_protocol = "SSL".into();
            l.tls_dir = "/etc/stoker/listener-tls".into();
        }
        let out = rendered(doc.clone(), &facts(), &SecretValues::default());
        for l in &doc.listeners {
            let line = format!(
                "listener.name.{}.ssl.client.auth=required\n",
                l.name.to_ascii_lowercase()
            );
            assert!(out.contains(&line), "{line} in {out}");
        }
    }
}
