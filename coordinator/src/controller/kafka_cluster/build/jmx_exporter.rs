//! Kafka's JMX metrics: the Prometheus JMX exporter runs as a javaagent in every
//! broker's JVM, bound to the Pod's address, and the agent samples it and serves the
//! series on its own `/metrics` with the cluster's labels. This module says where the
//! exporter's jar comes from, builds the cluster's rules ConfigMap, and the pieces of
//! the broker Pod that run it. Pure.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{ConfigMap, Container, EnvVar},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

use super::{ClusterMeta, RENDERED_DIR, cluster_labels};

/// The exporter's port in every broker Pod (Koperator's).
pub const JMX_EXPORTER_PORT: i32 = 9020;
/// Where the rules ConfigMap is mounted in the Kafka container.
pub const JMX_CONFIG_DIR: &str = "/etc/jmx-exporter";
/// The rules file's key in the ConfigMap.
pub const JMX_CONFIG_KEY: &str = "config.yaml";
/// Where Stoker's agent image carries the exporter (`Dockerfile.agent`).
pub const AGENT_IMAGE_JAR: &str = "/usr/share/stoker/jmx_prometheus_javaagent.jar";
/// The jar's path in a `jmxImage` when `pathToJar` is unset (Koperator's default).
pub const DEFAULT_IMAGE_JAR: &str = "/jmx_prometheus_javaagent.jar";
/// The volume (and folder) a `jmxImage`'s jar is copied into.
pub const COPIED_JAR_DIR: &str = "/opt/jmx-exporter";
/// The Kafka container's variable that carries the user's own `KAFKA_OPTS`, which the
/// javaagent option is put in front of.
pub const USER_KAFKA_OPTS: &str = "KAFKA_OPTS_USER";
/// The rules Stoker ships: Kafka 4 (KRaft) MBeans under the names the seed's and
/// Koperator's alert rules use (`kafka_network_requestmetrics_requests_total`, …).
pub const DEFAULT_RULES: &str = include_str!("../../../../assets/kafka-jmx-exporter.yml");

/// Where the exporter's jar comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JarSource {
    /// The agent copies the jar its own image carries into the folder it shares with
    /// Kafka before Kafka starts (the default: any Kafka image works).
    Agent,
    /// The Kafka image has it at this path (`pathToJar` alone).
    KafkaImage(String),
    /// An init container copies it out of `image` at `path` (`jmxImage`).
    Image {
        /// The image.
        image: String,
        /// The jar's path in it.
        path: String,
    },
}

/// The brokers' JMX exporter, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedMonitoring {
    /// The jar.
    pub jar: JarSource,
    /// The exporter's YAML config.
    pub config: String,
}

impl Default for ValidatedMonitoring {
    fn default() -> Self {
        Self {
            jar: JarSource::Agent,
            config: DEFAULT_RULES.to_owned(),
        }
    }
}

impl ValidatedMonitoring {
    /// The jar's path as the Kafka container sees it.
    pub fn jar_in_kafka(&self) -> String {
        match &self.jar {
            JarSource::Agent => format!("{RENDERED_DIR}/{}", stoker_proto::JMX_EXPORTER_JAR_FILE),
            JarSource::KafkaImage(path) => path.clone(),
            JarSource::Image { .. } => {
                format!("{COPIED_JAR_DIR}/{}", stoker_proto::JMX_EXPORTER_JAR_FILE)
            }
        }
    }

    /// The `-javaagent` option: the exporter on the Pod's address (never on every
    /// interface; the agent is its only reader), with the mounted rules.
    pub fn javaagent(&self) -> String {
        javaagent_option(
            &self.jar_in_kafka(),
            &format!("{JMX_CONFIG_DIR}/{JMX_CONFIG_KEY}"),
        )
    }

    /// The jar copied out of Stoker's agent image, which carries it for every JVM
    /// Stoker runs (brokers and Cruise Control).
    pub fn from_agent_image(agent_image: &str) -> Self {
        Self {
            jar: JarSource::Image {
                image: agent_image.to_owned(),
                path: AGENT_IMAGE_JAR.to_owned(),
            },
            config: DEFAULT_RULES.to_owned(),
        }
    }

    /// The init container that copies a `jmxImage`'s jar, when that is the source.
    pub fn copy_container(&self) -> Option<Container> {
        let JarSource::Image { image, path } = &self.jar else {
            return None;
        };
        Some(Container {
            name: "jmx-exporter".into(),
            image: Some(image.clone()),
            command: Some(vec!["cp".into(), path.clone(), self.jar_in_kafka()]),
            security_context: Some(super::security::restricted_container(None, true)),
            volume_mounts: Some(vec![k8s_openapi::api::core::v1::VolumeMount {
                name: COPIED_JAR_VOLUME.into(),
                mount_path: COPIED_JAR_DIR.into(),
                ..Default::default()
            }]),
            ..Container::default()
        })
    }
}

/// The `-javaagent` option for the exporter at `jar`, serving on the Pod's address (never
/// on every interface) with the rules at `rules`.
pub fn javaagent_option(jar: &str, rules: &str) -> String {
    format!("-javaagent:{jar}=$(POD_IP):{JMX_EXPORTER_PORT}:{rules}")
}

/// The Pod volume holding a copied jar.
pub const COPIED_JAR_VOLUME: &str = "jmx-exporter-jar";
/// The Pod volume holding the rules.
pub const CONFIG_VOLUME: &str = "jmx-exporter-config";

/// `<cluster>-jmx-exporter`: the rules every broker's exporter reads.
pub fn config_map_name(meta: &ClusterMeta) -> String {
    format!("{}-jmx-exporter", meta.name)
}

/// The cluster's rules ConfigMap. The exporter re-reads its config file when it
/// changes, so a change of the rules restarts nothing.
pub fn config_map(meta: &ClusterMeta, monitoring: &ValidatedMonitoring) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(config_map_name(meta)),
            namespace: Some(meta.namespace.clone()),
            labels: Some(cluster_labels(meta)),
            owner_references: Some(vec![meta.owner.clone()]),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            JMX_CONFIG_KEY.to_owned(),
            monitoring.config.clone(),
        )])),
        ..ConfigMap::default()
    }
}

/// The Kafka container's environment with the javaagent in `KAFKA_OPTS`: a
/// `KAFKA_OPTS` of the user's (the last one, as Kubernetes would use it) is kept,
/// renamed to [`USER_KAFKA_OPTS`] and expanded after the javaagent, so neither hides
/// the other whether it is a value or a reference.
pub fn with_javaagent(mut env: Vec<EnvVar>, monitoring: &ValidatedMonitoring) -> Vec<EnvVar> {
    let user = env.iter().rposition(|e| e.name == "KAFKA_OPTS");
    let mut opts = monitoring.javaagent();
    if let Some(i) = user {
        let mut theirs = env.remove(i);
        theirs.name = USER_KAFKA_OPTS.to_owned();
        env.retain(|e| e.name != "KAFKA_OPTS");
        env.push(theirs);
        opts.push_str(&format!(" $({USER_KAFKA_OPTS})"));
    }
    env.push(EnvVar {
        name: "KAFKA_OPTS".into(),
        value: Some(opts),
        ..EnvVar::default()
    });
    env
}

/// Why an exporter config cannot be used.
pub fn check_config(field: &str, text: &str) -> Result<(), String> {
    const LIMIT: usize = 512 * 1024;
    if text.len() > LIMIT {
        return Err(format!(
            "{field} is {} bytes; keep it under {LIMIT} (it is stored in a ConfigMap)",
            text.len()
        ));
    }
    let value: serde_yaml::Value = serde_yaml::from_str(text)
        .map_err(|e| format!("{field} is not valid YAML ({e}); it must be the JMX exporter's config, a mapping with `rules`"))?;
    let Some(map) = value.as_mapping() else {
        return Err(format!(
            "{field} must be a YAML mapping (the JMX exporter's config, with `rules`)"
        ));
    };
    for remote in ["hostPort", "jmxUrl"] {
        if map.contains_key(remote) {
            return Err(format!(
                "{field} sets `{remote}`, which makes the exporter read another JVM over remote JMX; the javaagent reads its own broker, remove it"
            ));
        }
    }
    if let Some(rules) = map.get("rules")
        && !rules.is_sequence()
    {
        return Err(format!("{field}: `rules` must be a list of rules"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            ..EnvVar::default()
        }
    }

    #[test]
    fn the_shipped_rules_are_a_valid_config() {
        check_config("rules", DEFAULT_RULES).expect("Stoker's own rules pass its check");
    }

    #[test]
    fn the_javaagent_binds_the_pod_address_and_reads_the_mounted_rules() {
        let m = ValidatedMonitoring::default();
        assert_eq!(
            m.javaagent(),
            "-javaagent:/var/run/stoker/kafka/jmx_prometheus_javaagent.jar=$(POD_IP):9020:/etc/jmx-exporter/config.yaml"
        );
        assert!(m.copy_container().is_none());
        let own = ValidatedMonitoring {
            jar: JarSource::KafkaImage("/opt/kafka/libs/jmx.jar".into()),
            ..ValidatedMonitoring::default()
        };
        assert!(
            own.javaagent()
                .starts_with("-javaagent:/opt/kafka/libs/jmx.jar=")
        );
        let image = ValidatedMonitoring {
            jar: JarSource::Image {
                image: "example/jmx-javaagent:1".into(),
                path: "/jmx_prometheus_javaagent.jar".into(),
            },
            ..ValidatedMonitoring::default()
        };
        let copy = image.copy_container().expect("an init container copies it");
        assert_eq!(
            copy.command.expect("cp"),
            [
                "cp",
                "/jmx_prometheus_javaagent.jar",
                "/opt/jmx-exporter/jmx_prometheus_javaagent.jar"
            ]
        );
        assert!(
            image
                .javaagent()
                .starts_with("-javaagent:/opt/jmx-exporter/")
        );
    }

    #[test]
    fn a_users_kafka_opts_is_kept_after_the_javaagent() {
        let m = ValidatedMonitoring::default();
        let none = with_javaagent(vec![env("A", "1")], &m);
        assert_eq!(none.len(), 2);
        assert_eq!(none[1].value.as_deref(), Some(m.javaagent().as_str()));

        // Two of the user's (cluster, then broker): the last one is the one in force.
        let both = with_javaagent(
            vec![env("KAFKA_OPTS", "-Dfirst"), env("KAFKA_OPTS", "-Dsecond")],
            &m,
        );
        let names: Vec<_> = both.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, [USER_KAFKA_OPTS, "KAFKA_OPTS"]);
        assert_eq!(both[0].value.as_deref(), Some("-Dsecond"));
        assert_eq!(
            both[1].value.as_deref(),
            Some(format!("{} $(KAFKA_OPTS_USER)", m.javaagent()).as_str())
        );
    }

    #[test]
    fn configs_that_cannot_work_are_refused_with_the_field_named() {
        for (text, says) in [
            ("rules: [", "not valid YAML"),
            ("- a\n- b\n", "must be a YAML mapping"),
            ("hostPort: 127.0.0.1:9999\nrules: []\n", "`hostPort`"),
            ("jmxUrl: service:jmx:rmi:///x\n", "`jmxUrl`"),
            ("rules: {a: 1}\n", "must be a list"),
        ] {
            let e =
                check_config("spec.monitoringConfig.kafkaJMXExporterConfig", text).expect_err(text);
            assert!(
                e.contains("spec.monitoringConfig.kafkaJMXExporterConfig"),
                "{e}"
            );
            assert!(e.contains(says), "{text}: {e}");
        }
        check_config("f", "lowercaseOutputName: true\nrules:\n- pattern: '.*'\n").expect("valid");
    }
}
