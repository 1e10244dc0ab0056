//! One broker's Pod (the Kafka container and the agent as a native sidecar) and its
//! PVCs (one per storage config; no owner reference, so deleting the cluster never
//! deletes data).

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{
        Affinity, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
        PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodAffinityTerm,
        PodAntiAffinity, PodSpec, Volume, VolumeMount,
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
};

use super::{
    ANNOTATION_MOUNT_PATH, ClusterMeta, DESIRED_CONFIG_DIR, KAFKA_HOME, LABEL_CLUSTER,
    RENDERED_DIR,
    agent::{
        agent_container, control_mount, control_volume, downward_env, env, kafka_prestop,
        kafka_readiness_probe,
    },
    broker_labels, broker_name,
    certificates::{self, CertificateSet, Purpose},
    config::DESIRED_CONFIG_KEY,
    jmx_exporter::{self, JMX_EXPORTER_PORT, JarSource},
    security,
};
use crate::controller::kafka_cluster::validate::{ValidatedBroker, ValidatedCluster};
use stoker_proto::agent::v1::Listener;

pub use super::agent::DEFAULT_GRACE_SECONDS;

/// A disk's name part, from its mount path: `/kafka-logs` → `kafka-logs`,
/// `/var/lib/kafka` → `var.lib.kafka` (one DNS label per path component). A path that
/// does not map one-to-one that way (upper case, `_`, `.`, over 40 characters) gets a
/// hash of the whole path instead, so two paths never share a name.
pub fn disk_slug(mount_path: &str) -> String {
    let trimmed = mount_path.trim_end_matches('/').trim_start_matches('/');
    let label = |c: &str| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !c.starts_with('-')
            && !c.ends_with('-')
    };
    if trimmed.len() <= 40 && trimmed.split('/').all(label) {
        trimmed.replace('/', ".")
    } else {
        format!("d{}", &super::spec_hash(&mount_path)[..10])
    }
}

/// `<cluster>-<id>-storage-<disk>`: named after the mount path, so a disk keeps its
/// claim whatever else is added to or removed from `storageConfigs`.
pub fn pvc_name(meta: &ClusterMeta, id: i32, mount_path: &str) -> String {
    format!(
        "{}-storage-{}",
        broker_name(meta, id),
        disk_slug(mount_path)
    )
}

/// The Pod volume of the disk at `mount_path`.
pub fn disk_volume_name(mount_path: &str) -> String {
    format!("storage-{}", &super::spec_hash(&mount_path)[..10])
}

/// The PVCs of broker `b`, one per storage config with a `pvcSpec`.
pub fn broker_pvcs(meta: &ClusterMeta, b: &ValidatedBroker) -> Vec<PersistentVolumeClaim> {
    b.storage
        .iter()
        .filter_map(|s| {
            let spec = s.pvc_spec.clone()?;
            Some(PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(pvc_name(meta, b.id, &s.mount_path)),
                    namespace: Some(meta.namespace.clone()),
                    labels: Some(broker_labels(meta, b.id)),
                    annotations: Some(BTreeMap::from([(
                        ANNOTATION_MOUNT_PATH.to_owned(),
                        s.mount_path.clone(),
                    )])),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
                ..PersistentVolumeClaim::default()
            })
        })
        .collect()
}

/// The Pod of broker `b`, serving the external listeners `external` (those whose
/// address is known, as [`super::external::addresses`] made them).
pub fn broker_pod(
    meta: &ClusterMeta,
    cluster: &ValidatedCluster,
    b: &ValidatedBroker,
    external: &[Listener],
) -> Pod {
    let name = broker_name(meta, b.id);
    let mut labels = b.config.broker_labels.clone();
    labels.extend(broker_labels(meta, b.id));
    let mut annotations = b.config.broker_annotations.clone();
    // The hash of the desired document: a change of it is visible on the Pod without
    // restarting anything (the agent applies dynamic keys live).
    annotations.remove("kafka.stoker.io/config-hash");

    let mut volumes = vec![
        Volume {
            name: "desired-config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: format!("{name}-config"),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "rendered".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
        // The preStop handshake, and the agent's mTLS certificate.
        control_volume(),
        certificates::volume(
            &CertificateSet::agents(&meta.name, &meta.namespace),
            &meta.name,
            b.id,
        ),
    ];
    let mut kafka_mounts = vec![
        VolumeMount {
            name: "rendered".into(),
            mount_path: RENDERED_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        control_mount(),
    ];
    // The JMX exporter: its rules (a folder mount, so an edit reaches the running
    // exporter), and the jar copied out of a `jmxImage` when that is its source.
    let monitoring = &cluster.monitoring;
    volumes.push(Volume {
        name: jmx_exporter::CONFIG_VOLUME.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: jmx_exporter::config_map_name(meta),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    });
    kafka_mounts.push(VolumeMount {
        name: jmx_exporter::CONFIG_VOLUME.into(),
        mount_path: jmx_exporter::JMX_CONFIG_DIR.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    });
    let copy_jar = monitoring.copy_container();
    if copy_jar.is_some() {
        volumes.push(Volume {
            name: jmx_exporter::COPIED_JAR_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
        kafka_mounts.push(VolumeMount {
            name: jmx_exporter::COPIED_JAR_VOLUME.into(),
            mount_path: jmx_exporter::COPIED_JAR_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    let mut agent_mounts = vec![
        VolumeMount {
            name: "desired-config".into(),
            mount_path: DESIRED_CONFIG_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "rendered".into(),
            mount_path: RENDERED_DIR.into(),
            ..VolumeMount::default()
        },
        certificates::mount(Purpose::Agents),
    ];
    // The client listeners' certificate, which the agent renders Kafka's stores from.
    if let Some(tls) = &cluster.listener_tls {
        volumes.push(certificates::volume(
            &CertificateSet::of_listeners(&meta.name, &meta.namespace, Some(tls)),
            &meta.name,
            b.id,
        ));
        agent_mounts.push(certificates::mount(Purpose::Listeners));
    }
    for s in &b.storage {
        let vol = disk_volume_name(&s.mount_path);
        volumes.push(Volume {
            name: vol.clone(),
            persistent_volume_claim: s.pvc_spec.as_ref().map(|_| {
                PersistentVolumeClaimVolumeSource {
                    claim_name: pvc_name(meta, b.id, &s.mount_path),
                    ..Default::default()
                }
            }),
            empty_dir: s.empty_dir.clone(),
            ..Volume::default()
        });
        kafka_mounts.push(VolumeMount {
            name: vol.clone(),
            mount_path: s.mount_path.clone(),
            ..VolumeMount::default()
        });
        // The agent reads disk usage and the clean-shutdown marker, never writes.
        agent_mounts.push(VolumeMount {
            name: vol,
            mount_path: s.mount_path.clone(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }

    let grace = b
        .config
        .termination_grace_period_seconds
        .unwrap_or(DEFAULT_GRACE_SECONDS);
    let mut agent_env = vec![
        env(
            "STOKER_AGENT_DESIRED_CONFIG",
            format!("{DESIRED_CONFIG_DIR}/{DESIRED_CONFIG_KEY}"),
        ),
        env("STOKER_AGENT_OUTPUT_DIR", RENDERED_DIR),
        env("STOKER_AGENT_TLS_DIR", Purpose::Agents.mount_dir()),
        env("STOKER_AGENT_STOP_LEASE", super::stop_lease_name(meta)),
        env(
            "STOKER_AGENT_JMX_EXPORTER_URL",
            format!("http://$(POD_IP):{JMX_EXPORTER_PORT}/metrics"),
        ),
    ];
    if monitoring.jar == JarSource::Agent {
        agent_env.push(env(
            "STOKER_AGENT_JMX_EXPORTER_JAR",
            jmx_exporter::AGENT_IMAGE_JAR,
        ));
    }
    // A NodePort listener advertises the address of the Node the Pod runs on.
    if b.roles.broker && external.iter().any(|l| l.advertise_node_address) {
        agent_env.push(super::agent::field_env("HOST_IP", "status.hostIP"));
    }
    let agent = agent_container(&meta.agent_image, &["run"], agent_env, agent_mounts, grace);

    let mut kafka_env = downward_env();
    kafka_env.extend(cluster.envs.iter().cloned());
    kafka_env.extend(b.config.envs.iter().cloned());
    kafka_env.push(env(
        "KAFKA_HEAP_OPTS",
        b.config
            .kafka_heap_opts
            .clone()
            .unwrap_or_else(|| "-Xmx2G -Xms2G".into()),
    ));
    if let Some(perf) = &b.config.kafka_jvm_perf_opts {
        kafka_env.push(env("KAFKA_JVM_PERFORMANCE_OPTS", perf.clone()));
    }
    kafka_env.push(env(
        "KAFKA_LOG4J_OPTS",
        format!("-Dlog4j2.configurationFile=file:{RENDERED_DIR}/log4j2.properties"),
    ));
    kafka_env.push(env("CLUSTER_ID", meta.cluster_id.clone()));
    let kafka_env = jmx_exporter::with_javaagent(kafka_env, monitoring);
    let start = format!(
        "set -e\n{KAFKA_HOME}/bin/kafka-storage.sh format --ignore-formatted -t \"$CLUSTER_ID\" -c {RENDERED_DIR}/server.properties\nexec {KAFKA_HOME}/bin/kafka-server-start.sh {RENDERED_DIR}/server.properties\n"
    );
    let kafka = Container {
        security_context: Some(
            b.config
                .security_context
                .clone()
                .unwrap_or_else(|| security::restricted_container(None, false)),
        ),
        name: "kafka".into(),
        image: Some(b.image.clone()),
        command: Some(vec!["/bin/bash".into(), "-c".into(), start]),
        env: Some(kafka_env),
        ports: Some(
            cluster
                .listeners
                .iter()
                .filter(|l| {
                    if l.name == cluster.controller_listener {
                        b.roles.controller
                    } else {
                        b.roles.broker
                    }
                })
                .map(|l| ContainerPort {
                    name: Some(l.name.to_ascii_lowercase().replace('_', "-")),
                    container_port: i32::from(l.port),
                    ..ContainerPort::default()
                })
                // External listeners: their Services target this named port, so only
                // nodes that serve clients receive their traffic. One still waiting for
                // its address is not served yet, so not declared (no restart for it).
                .chain(
                    external
                        .iter()
                        .filter(|_| b.roles.broker)
                        .map(|l| ContainerPort {
                            name: Some(l.name.to_ascii_lowercase().replace('_', "-")),
                            container_port: i32::try_from(l.container_port).unwrap_or(0),
                            ..ContainerPort::default()
                        }),
                )
                .collect(),
        ),
        resources: b.config.resource_requirements.clone(),
        readiness_probe: Some(kafka_readiness_probe()),
        lifecycle: Some(kafka_prestop(grace)),
        volume_mounts: Some(kafka_mounts),
        ..Container::default()
    };

    let mut affinity = b.config.affinity.clone();
    if cluster.one_broker_per_node && affinity.is_none() {
        affinity = Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                    label_selector: Some(LabelSelector {
                        match_labels: Some(BTreeMap::from([(
                            LABEL_CLUSTER.to_owned(),
                            meta.name.clone(),
                        )])),
                        ..LabelSelector::default()
                    }),
                    topology_key: "kubernetes.io/hostname".into(),
                    ..PodAffinityTerm::default()
                }]),
                ..PodAntiAffinity::default()
            }),
            ..Affinity::default()
        });
    }

    Pod {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(meta.namespace.clone()),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![meta.owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            hostname: meta.headless.then(|| name.clone()),
            subdomain: meta.headless.then(|| format!("{}-headless", meta.name)),
            // The jar copy (a plain init container) runs after the agent has started:
            // both are done before Kafka starts.
            init_containers: Some([Some(agent), copy_jar].into_iter().flatten().collect()),
            containers: vec![kafka],
            volumes: Some(volumes),
            restart_policy: Some("Always".into()),
            security_context: Some(
                b.config
                    .pod_security_context
                    .clone()
                    .unwrap_or_else(|| security::restricted_pod(security::KAFKA_UID)),
            ),
            termination_grace_period_seconds: Some(grace),
            service_account_name: Some(
                b.config
                    .service_account_name
                    .clone()
                    .unwrap_or_else(|| super::rbac::default_service_account_name(meta)),
            ),
            image_pull_secrets: (!b.config.image_pull_secrets.is_empty())
                .then(|| b.config.image_pull_secrets.clone()),
            node_selector: b.config.node_selector.clone(),
            tolerations: (!b.config.tolerations.is_empty()).then(|| b.config.tolerations.clone()),
            affinity,
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::kafka_cluster::{
        build::jmx_exporter::ValidatedMonitoring, test_support::example_spec, validate::validate,
    };

    fn meta() -> ClusterMeta {
        ClusterMeta {
            name: "kf-kafka".into(),
            namespace: "kafka".into(),
            owner: Default::default(),
            cluster_id: "id".into(),
            headless: false,
            agent_image: "stoker-agent:dev".into(),
        }
    }

    fn env_of<'a>(c: &'a Container, name: &str) -> Option<&'a str> {
        c.env
            .iter()
            .flatten()
            .rfind(|e| e.name == name)
            .and_then(|e| e.value.as_deref())
    }

    #[test]
    fn every_broker_runs_the_jmx_exporter_and_its_agent_samples_it() {
        let cluster = validate(&example_spec()).expect("valid");
        let pod = broker_pod(&meta(), &cluster, &cluster.brokers[&0], &[]);
        let spec = pod.spec.expect("spec");
        let kafka = &spec.containers[0];
        assert_eq!(
            env_of(kafka, "KAFKA_OPTS"),
            Some(cluster.monitoring.javaagent().as_str())
        );
        assert!(
            kafka
                .volume_mounts
                .iter()
                .flatten()
                .any(|m| m.mount_path == "/etc/jmx-exporter"),
            "the rules are mounted"
        );
        let agent = &spec.init_containers.as_ref().expect("agent")[0];
        assert_eq!(
            env_of(agent, "STOKER_AGENT_JMX_EXPORTER_URL"),
            Some("http://$(POD_IP):9020/metrics")
        );
        assert_eq!(
            env_of(agent, "STOKER_AGENT_JMX_EXPORTER_JAR"),
            Some("/usr/share/stoker/jmx_prometheus_javaagent.jar"),
            "the agent copies the jar its image carries"
        );
        assert_eq!(spec.init_containers.as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn broker_pods_meet_the_restricted_standard_unless_the_spec_says_otherwise() {
        let cluster = validate(&example_spec()).expect("valid");
        let spec = broker_pod(&meta(), &cluster, &cluster.brokers[&0], &[])
            .spec
            .expect("spec");
        let pod = spec
            .security_context
            .clone()
            .expect("a Pod security context");
        assert_eq!(pod.run_as_non_root, Some(true));
        assert_eq!(pod.run_as_user, Some(security::KAFKA_UID));
        assert_eq!(pod.fs_group, Some(security::KAFKA_UID));
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            let sc = c
                .security_context
                .clone()
                .expect("a container security context");
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
            assert_eq!(
                sc.capabilities.and_then(|c| c.drop),
                Some(vec!["ALL".to_owned()]),
                "{}",
                c.name
            );
        }
        // Koperator's fields replace the defaults.
        let mut spec = example_spec();
        spec.broker_config_groups
            .get_mut("default_group")
            .expect("the example's group")
            .pod_security_context = Some(k8s_openapi::api::core::v1::PodSecurityContext {
            run_as_user: Some(1001),
            ..Default::default()
        });
        let cluster = validate(&spec).expect("valid");
        let pod = broker_pod(&meta(), &cluster, &cluster.brokers[&0], &[])
            .spec
            .and_then(|s| s.security_context)
            .expect("the spec's");
        assert_eq!(pod.run_as_user, Some(1001));
    }

    #[test]
    fn a_jmx_image_is_copied_by_an_init_container_and_the_agent_copies_nothing() {
        let mut cluster = validate(&example_spec()).expect("valid");
        cluster.monitoring = ValidatedMonitoring {
            jar: JarSource::Image {
                image: "example/jmx-javaagent:1".into(),
                path: "/jmx_prometheus_javaagent.jar".into(),
            },
            ..ValidatedMonitoring::default()
        };
        let spec = broker_pod(&meta(), &cluster, &cluster.brokers[&0], &[])
            .spec
            .expect("spec");
        let inits = spec.init_containers.expect("init containers");
        assert_eq!(inits.len(), 2);
        assert_eq!(inits[0].name, "stoker-agent");
        assert_eq!(inits[1].name, "jmx-exporter");
        assert_eq!(env_of(&inits[0], "STOKER_AGENT_JMX_EXPORTER_JAR"), None);
        assert!(
            spec.containers[0]
                .volume_mounts
                .iter()
                .flatten()
                .any(|m| m.mount_path == "/opt/jmx-exporter" && m.read_only == Some(true))
        );
    }

    #[test]
    fn a_disk_is_named_after_its_mount_path_and_two_paths_never_share_a_name() {
        assert_eq!(disk_slug("/kafka-logs"), "kafka-logs");
        assert_eq!(disk_slug("/var/lib/kafka/"), "var.lib.kafka");
        // Not one-to-one onto a DNS label: hashed, and distinct.
        let upper = disk_slug("/Data");
        let under = disk_slug("/da_ta");
        assert!(upper.starts_with('d') && upper.len() == 11, "{upper}");
        assert_ne!(upper, disk_slug("/data"));
        assert_ne!(under, disk_slug("/da-ta"));
        assert_ne!(disk_slug("/a/b"), disk_slug("/a-b/"), "a/b and a-b differ");
        assert_ne!(disk_volume_name("/a"), disk_volume_name("/b"));
    }
}
