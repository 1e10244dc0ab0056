//! The broker's desired-config document (what its agent renders from) and the
//! ConfigMap that carries it.

use std::collections::BTreeMap;

use k8s_openapi::{api::core::v1::ConfigMap, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use stoker_proto::agent::v1::{BrokerRef, DesiredConfig, Listener};

use super::{ClusterMeta, advertised_host, broker_labels, broker_name, quorum_voters};
use crate::controller::kafka_cluster::validate::{ValidatedBroker, ValidatedCluster};

/// The file name of the document in the ConfigMap.
pub const DESIRED_CONFIG_KEY: &str = "config.json";

/// The desired config of broker `b`, with its external listeners as
/// [`super::external::addresses`] made them.
pub fn desired_config(
    meta: &ClusterMeta,
    cluster: &ValidatedCluster,
    b: &ValidatedBroker,
    external: &[Listener],
) -> DesiredConfig {
    let host = advertised_host(meta, b.id);
    let listeners = cluster
        .listeners
        .iter()
        .map(|l| {
            let is_controller = l.name == cluster.controller_listener;
            // A broker-only node knows the controller listener's protocol but does not
            // bind it; a controller-only node binds only the controller listener.
            let bound = if is_controller {
                b.roles.controller
            } else {
                b.roles.broker
            };
            Listener {
                name: l.name.clone(),
                security_protocol: l.protocol.clone(),
                container_port: if bound { u32::from(l.port) } else { 0 },
                advertised_host: host.clone(),
                advertised_port: 0,
                // The agent renders a TLS listener's stores from the broker's Secret.
                tls_dir: if l.protocol.ends_with("SSL") {
                    super::certificates::Purpose::Listeners
                        .mount_dir()
                        .to_owned()
                } else {
                    String::new()
                },
                advertise_node_address: false,
            }
        })
        .filter(|l| l.container_port != 0 || l.name == cluster.controller_listener)
        // External listeners are bound by nodes that serve clients.
        .chain(external.iter().filter(|_| b.roles.broker).cloned())
        .collect();
    DesiredConfig {
        schema_version: 1,
        broker: Some(BrokerRef {
            cluster: meta.name.clone(),
            namespace: meta.namespace.clone(),
            broker_id: b.id,
        }),
        process_roles: b.roles.names(),
        cluster_id: meta.cluster_id.clone(),
        listeners,
        inter_broker_listener: if b.roles.broker {
            cluster.inter_broker_listener.clone()
        } else {
            String::new()
        },
        controller_listeners: vec![cluster.controller_listener.clone()],
        controller_quorum_voters: quorum_voters(meta, cluster),
        log_dirs: b
            .storage
            .iter()
            .map(|s| format!("{}/kafka", s.mount_path.trim_end_matches('/')))
            .collect(),
        read_only_config: {
            let mut c = b.read_only_config.clone();
            // With mutual TLS between nodes, the nodes and the coordinator authenticate
            // as Stoker's identities; an authorizer must let them do everything.
            if nodes_use_tls(cluster) {
                let own = super::certificates::own_principals(&meta.name);
                let users = match c.get("super.users").map(|u| u.trim()) {
                    Some(u) if !u.is_empty() => format!("{u};{own}"),
                    _ => own,
                };
                c.insert("super.users".into(), users);
            }
            // Every broker reports its load to Cruise Control when the cluster has one.
            if let Some(cc) = cluster.cruise_control.as_ref().filter(|_| b.roles.broker) {
                let reporters = super::cruise_control::with_reporter(c.get("metric.reporters"));
                c.insert("metric.reporters".into(), reporters);
                for (k, v) in super::cruise_control::reporter_config(meta, cluster, cc, b.id) {
                    c.entry(k).or_insert(v);
                }
            }
            c
        },
        cluster_wide_config: cluster.cluster_wide_config.clone(),
        broker_config: b.dynamic_config.clone(),
        rack_labels: cluster.rack_labels.clone(),
        secret_files: vec![],
        log_level: String::new(),
    }
}

/// Whether brokers and controllers talk to each other over TLS (the inter-broker or the
/// controller listener is `ssl`): then they, the agents and the coordinator present
/// certificates from the cluster's listener CA.
pub fn nodes_use_tls(cluster: &ValidatedCluster) -> bool {
    cluster.listeners.iter().any(|l| {
        (l.name == cluster.inter_broker_listener || l.name == cluster.controller_listener)
            && l.protocol == "SSL"
    })
}

/// The ConfigMap `<cluster>-<id>-config` holding the document as `config.json`.
pub fn desired_config_map(meta: &ClusterMeta, doc: &DesiredConfig) -> ConfigMap {
    let id = doc.broker.as_ref().map_or(0, |b| b.broker_id);
    let json = serde_json::to_string_pretty(doc).expect("a DesiredConfig always serialises");
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(format!("{}-config", broker_name(meta, id))),
            namespace: Some(meta.namespace.clone()),
            labels: Some(broker_labels(meta, id)),
            annotations: Some(BTreeMap::from([(
                "kafka.stoker.io/config-hash".to_owned(),
                stoker_proto::config_hash(doc),
            )])),
            owner_references: Some(vec![meta.owner.clone()]),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(DESIRED_CONFIG_KEY.to_owned(), json)])),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::kafka_cluster::{test_support::example_spec, validate::validate};

    fn meta() -> ClusterMeta {
        ClusterMeta {
            name: "kf".into(),
            namespace: "ns".into(),
            ..ClusterMeta::default()
        }
    }

    #[test]
    fn with_tls_between_nodes_the_own_identities_are_super_users_beside_the_users_own() {
        let mut spec = example_spec();
        spec.cruise_control_config = None;
        let plain = validate(&spec).expect("valid");
        let doc = desired_config(&meta(), &plain, &plain.brokers[&0], &[]);
        assert!(!nodes_use_tls(&plain));
        assert_eq!(doc.read_only_config.get("super.users"), None);

        for l in &mut spec.listeners_config.internal_listeners {
            l.type_ = "ssl".into();
        }
        spec.listeners_config.ssl_secrets = Some(crate::crd::v1alpha1::SslSecrets {
            tls_secret_name: "kf-ca".into(),
            create: true,
        });
        spec.read_only_config = "super.users=User:admin\n".into();
        let tls = validate(&spec).expect("valid");
        assert!(nodes_use_tls(&tls));
        for b in tls.brokers.values() {
            let doc = desired_config(&meta(), &tls, b, &[]);
            assert_eq!(
                doc.read_only_config.get("super.users").map(String::as_str),
                Some("User:admin;User:CN=kf,O=stoker.io;User:CN=stoker-coordinator,O=stoker.io"),
                "node {}",
                b.id
            );
        }
    }
}
