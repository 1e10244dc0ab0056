//! The single-load-balancer model (`ingressController: haproxy`): per `LoadBalancer`
//! external listener, one `LoadBalancer` Service in front of an HAProxy Deployment
//! whose configuration routes the listener's port to any broker (bootstrap) and
//! `externalStartingPort + id` to broker `id`, TCP passthrough (so TLS, when a
//! listener has it, stays end to end). Pure.
//!
//! The configuration names the brokers by Pod IP, so it changes when a broker is
//! added, removed or moved; the proxy's container reloads HAProxy (master-worker,
//! `SIGUSR2`) when the mounted file changes: new connections take the new routes,
//! established ones stay on the old worker until they close (at most
//! [`HARD_STOP_AFTER`]).

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec},
        core::v1::{
            ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, PodSpec, PodTemplateSpec,
            Probe, Service, ServicePort, TCPSocketAction, Volume, VolumeMount,
        },
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};

use super::{
    ClusterMeta,
    agent::field_env,
    cluster_labels,
    external::{LABEL_LISTENER, bootstrap_service_name, broker_ids, external_service},
    security,
};
use crate::{
    controller::kafka_cluster::validate::{External, ValidatedCluster, ValidatedHaproxy},
    cruise_control::{LABEL_COMPONENT, LABEL_INSTANCE},
};

/// The proxy's component label.
pub const COMPONENT: &str = "external-proxy";
/// Where the configuration is mounted (the `haproxy` image's default folder).
pub const CONFIG_DIR: &str = "/usr/local/etc/haproxy";
/// The configuration's file name.
pub const CONFIG_KEY: &str = "haproxy.cfg";
/// How long an old worker keeps connections established before a reload.
pub const HARD_STOP_AFTER: &str = "10m";
/// The `haproxy` image's user.
pub const HAPROXY_UID: i64 = 99;

/// `<cluster>-<listener>-haproxy`: the listener's proxy Deployment and ConfigMap.
pub fn name(meta: &ClusterMeta, e: &External) -> String {
    format!("{}-{}-haproxy", meta.name, e.dns_name())
}

/// Whether `name` is one of the cluster's proxy objects (of any listener).
pub fn is_proxy_object(meta: &ClusterMeta, name: &str) -> bool {
    name.starts_with(&format!("{}-", meta.name)) && name.ends_with("-haproxy")
}

/// Labels of the proxy's Pods: not `kafka_cr`, which selects the cluster's brokers.
fn selector(meta: &ClusterMeta, e: &External) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_INSTANCE.to_owned(), meta.name.clone()),
        (LABEL_COMPONENT.to_owned(), COMPONENT.to_owned()),
        (LABEL_LISTENER.to_owned(), e.dns_name()),
    ])
}

/// The listener's one `LoadBalancer` Service: its port to bootstrap, and
/// `externalStartingPort + id` per broker, to the same ports of the proxy.
pub fn service(meta: &ClusterMeta, cluster: &ValidatedCluster, e: &External) -> Service {
    let port = |name: String, port: u16| ServicePort {
        name: Some(name),
        port: i32::from(port),
        target_port: Some(IntOrString::Int(i32::from(port))),
        ..ServicePort::default()
    };
    let mut svc = external_service(
        meta,
        e,
        bootstrap_service_name(meta, e),
        cluster_labels(meta),
        selector(meta, e),
        port("bootstrap".into(), e.port),
    );
    if let Some(ports) = svc.spec.as_mut().and_then(|s| s.ports.as_mut()) {
        ports.extend(broker_ids(cluster).map(|id| port(format!("broker-{id}"), e.broker_port(id))));
    }
    svc
}

/// HAProxy's configuration for listener `e`: a frontend on the listener's port that
/// spreads connections over every broker with an address, and one per broker on
/// `externalStartingPort + id` to that broker alone. Brokers without a Pod IP yet
/// have no server (their port refuses connections until they have one).
pub fn config(
    meta: &ClusterMeta,
    cluster: &ValidatedCluster,
    e: &External,
    ips: &BTreeMap<i32, String>,
) -> String {
    let mut s = format!(
        "# Rendered by Stoker for KafkaCluster {}/{}, external listener {}. Do not edit:\n\
         # the coordinator rewrites it, and the proxy reloads it without dropping connections.\n\
         global\n    master-worker\n    hard-stop-after {HARD_STOP_AFTER}\n    maxconn 4096\n\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 15m\n    timeout server 15m\n\n\
         frontend bootstrap\n    bind \"${{POD_IP}}:{}\"\n    default_backend any-broker\n\n\
         backend any-broker\n    balance roundrobin\n",
        meta.namespace,
        meta.name,
        e.dns_name(),
        e.port
    );
    let ids: Vec<i32> = broker_ids(cluster).collect();
    for id in &ids {
        if let Some(ip) = ips.get(id) {
            s.push_str(&format!(
                "    server broker-{id} {ip}:{} check inter 2s\n",
                e.port
            ));
        }
    }
    for id in &ids {
        s.push_str(&format!(
            "\nfrontend broker-{id}\n    bind \"${{POD_IP}}:{}\"\n    default_backend broker-{id}\n\nbackend broker-{id}\n",
            e.broker_port(*id)
        ));
        if let Some(ip) = ips.get(id) {
            s.push_str(&format!("    server broker-{id} {ip}:{}\n", e.port));
        }
    }
    s
}

/// The ConfigMap holding [`config`].
pub fn config_map(meta: &ClusterMeta, e: &External, config: String) -> ConfigMap {
    let mut labels = cluster_labels(meta);
    labels.insert(LABEL_LISTENER.to_owned(), e.dns_name());
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name(meta, e)),
            namespace: Some(meta.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![meta.owner.clone()]),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(CONFIG_KEY.to_owned(), config)])),
        ..ConfigMap::default()
    }
}

/// The proxy's command: HAProxy in master-worker mode, reloaded (`SIGUSR2`) when the
/// mounted configuration changes; `SIGTERM` stops it gracefully (`SIGUSR1`: no new
/// connections, established ones finish within the grace period).
fn command() -> String {
    format!(
        "cfg={CONFIG_DIR}/{CONFIG_KEY}\n\
         haproxy -W -db -f \"$cfg\" & pid=$!\n\
         trap 'kill -USR1 $pid; wait $pid; exit 0' TERM INT\n\
         last=$(cksum < \"$cfg\")\n\
         while kill -0 $pid 2>/dev/null; do\n\
         \x20   sleep 2\n\
         \x20   now=$(cksum < \"$cfg\")\n\
         \x20   if [ \"$now\" != \"$last\" ]; then last=$now; echo 'configuration changed: reloading'; kill -USR2 $pid; fi\n\
         done\n\
         wait $pid\n"
    )
}

/// The proxy Deployment of listener `e`.
pub fn deployment(meta: &ClusterMeta, e: &External, hp: &ValidatedHaproxy) -> Deployment {
    // Only the bootstrap port is declared: the brokers' ports change with the brokers,
    // and a changed Pod template would replace the proxy (and cut its connections)
    // where a reload keeps them. The Service targets the ports by number.
    let ports = vec![ContainerPort {
        name: Some("bootstrap".into()),
        container_port: i32::from(e.port),
        ..ContainerPort::default()
    }];
    let container = Container {
        name: "haproxy".into(),
        image: Some(hp.image.clone()),
        command: Some(vec!["/bin/sh".into(), "-c".into(), command()]),
        env: Some(vec![field_env("POD_IP", "status.podIP")]),
        ports: Some(ports),
        resources: hp.resources.clone(),
        security_context: Some(security::restricted_container(None, true)),
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(i32::from(e.port)),
                ..TCPSocketAction::default()
            }),
            period_seconds: Some(5),
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
    let mut labels = cluster_labels(meta);
    labels.insert(LABEL_LISTENER.to_owned(), e.dns_name());
    labels.insert(LABEL_COMPONENT.to_owned(), COMPONENT.to_owned());
    let mut pod_labels = selector(meta, e);
    pod_labels.insert("app.kubernetes.io/name".into(), "haproxy".into());
    pod_labels.insert("app.kubernetes.io/managed-by".into(), "stoker".into());
    Deployment {
        metadata: ObjectMeta {
            name: Some(name(meta, e)),
            namespace: Some(meta.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![meta.owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(hp.replicas),
            selector: LabelSelector {
                match_labels: Some(selector(meta, e)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    security_context: Some(security::restricted_pod(HAPROXY_UID)),
                    termination_grace_period_seconds: Some(30),
                    volumes: Some(vec![Volume {
                        name: "config".into(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: name(meta, e),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::kafka_cluster::{test_support::example_spec, validate::validate};
    use crate::crd::v1alpha1::ExternalListener;

    fn cluster() -> ValidatedCluster {
        let mut spec = example_spec();
        spec.ingress_controller = Some("haproxy".into());
        spec.listeners_config.external_listeners = Some(vec![ExternalListener {
            type_: "plaintext".into(),
            name: "outside".into(),
            container_port: 9094,
            external_starting_port: 19090,
            ..Default::default()
        }]);
        validate(&spec).expect("valid")
    }

    fn meta() -> ClusterMeta {
        ClusterMeta {
            name: "kafka".into(),
            namespace: "default".into(),
            ..ClusterMeta::default()
        }
    }

    #[test]
    fn every_broker_port_routes_to_its_broker_and_the_bootstrap_to_any() {
        let c = cluster();
        let e = &c.external_listeners[0];
        let ips = BTreeMap::from([(0, "10.0.0.10".to_owned()), (2, "10.0.0.12".to_owned())]);
        let cfg = config(&meta(), &c, e, &ips);
        assert!(
            cfg.contains("frontend bootstrap\n    bind \"${POD_IP}:9094\""),
            "{cfg}"
        );
        assert!(cfg.contains("    server broker-0 10.0.0.10:9094 check inter 2s\n"));
        assert!(cfg.contains("frontend broker-2\n    bind \"${POD_IP}:19092\"\n    default_backend broker-2\n\nbackend broker-2\n    server broker-2 10.0.0.12:9094\n"), "{cfg}");
        assert!(
            cfg.contains("backend broker-1\n") && !cfg.contains("server broker-1"),
            "no address, no server"
        );
        assert!(!cfg.contains("broker-100"), "a controller-only node");

        let svc = service(&meta(), &c, e);
        let spec = svc.spec.expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        let ports: Vec<i32> = spec.ports.expect("ports").iter().map(|p| p.port).collect();
        assert_eq!(ports, [9094, 19090, 19091, 19092]);
        let sel = spec.selector.expect("selector");
        assert!(
            !sel.contains_key(super::super::LABEL_CLUSTER),
            "selects the proxy, not brokers"
        );
        assert_eq!(sel[LABEL_COMPONENT], COMPONENT);
    }

    #[test]
    fn the_proxy_reloads_on_a_changed_file_and_meets_the_restricted_standard() {
        let c = cluster();
        let d = deployment(
            &meta(),
            &c.external_listeners[0],
            c.haproxy.as_ref().expect("hp"),
        );
        let pod = d.spec.expect("spec").template.spec.expect("pod");
        let script = &pod.containers[0].command.as_ref().expect("command")[2];
        assert!(script.contains("haproxy -W -db -f") && script.contains("kill -USR2 $pid"));
        assert_eq!(
            pod.security_context.and_then(|s| s.run_as_non_root),
            Some(true)
        );
        assert!(is_proxy_object(&meta(), "kafka-outside-haproxy"));
        assert!(!is_proxy_object(&meta(), "kafka-cruisecontrol"));
    }
}
