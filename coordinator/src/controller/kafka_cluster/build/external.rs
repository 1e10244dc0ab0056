//! External access: for each external listener a Service per broker (`LoadBalancer`
//! or `NodePort`) and a bootstrap Service, and the address each broker advertises on
//! that listener — its Service's load-balancer address, its Node's address, or the
//! `hostnameOverride` — with `externalStartingPort + id` as its port. Pure.
//!
//! Kafka (KRaft) takes `advertised.listeners` only at start, so a broker Pod is
//! created once its addresses are known, and a running broker keeps the last address
//! recorded in the status while a load balancer has none.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::{
    api::core::v1::{Service, ServicePort, ServiceSpec},
    apimachinery::pkg::util::intstr::IntOrString,
};
use stoker_proto::agent::v1::Listener;

use super::{ClusterMeta, LABEL_BROKER_ID, LABEL_CLUSTER, broker_labels, cluster_labels};
use crate::{
    controller::kafka_cluster::validate::{AccessMethod, External, ValidatedCluster},
    crd::v1alpha1::{ListenerAddress, ListenerStatuses},
};

/// Label on every external Service: the listener it serves (lower-case name).
pub const LABEL_LISTENER: &str = "kafka.stoker.io/listener";
/// The status entry of the bootstrap Service.
pub const ANY_BROKER: &str = "any-broker";

/// `<cluster>-<id>-<listener>`: broker `id`'s Service on listener `e`.
pub fn broker_service_name(meta: &ClusterMeta, e: &External, id: i32) -> String {
    format!("{}-{id}-{}", meta.name, e.dns_name())
}

/// `<cluster>-<listener>-bootstrap`: every broker of listener `e`.
pub fn bootstrap_service_name(meta: &ClusterMeta, e: &External) -> String {
    format!("{}-{}-bootstrap", meta.name, e.dns_name())
}

/// The ids of the nodes that serve clients (controller-only nodes bind no client
/// listener, so they get no external Service).
pub(super) fn broker_ids(cluster: &ValidatedCluster) -> impl Iterator<Item = i32> + '_ {
    cluster
        .brokers
        .values()
        .filter(|b| b.roles.broker)
        .map(|b| b.id)
}

pub(super) fn external_service(
    meta: &ClusterMeta,
    e: &External,
    name: String,
    mut labels: BTreeMap<String, String>,
    selector: BTreeMap<String, String>,
    port: ServicePort,
) -> Service {
    labels.insert(LABEL_LISTENER.to_owned(), e.dns_name());
    super::services::service(
        meta,
        name,
        labels,
        selector,
        ServiceSpec {
            type_: Some(e.access.service_type().to_owned()),
            ports: Some(vec![port]),
            ..ServiceSpec::default()
        },
    )
}

/// Every external Service of the cluster: per listener, its bootstrap Service (port
/// = the listener's container port) and one per broker (port `externalStartingPort +
/// id`; for NodePort also the node port). They target the brokers' named container
/// port, which only nodes with the broker role declare.
pub fn services(meta: &ClusterMeta, cluster: &ValidatedCluster) -> Vec<Service> {
    let mut out = Vec::new();
    for e in &cluster.external_listeners {
        if e.access == AccessMethod::Proxy {
            out.push(super::haproxy::service(meta, cluster, e));
            continue;
        }
        let target = Some(IntOrString::String(e.dns_name()));
        out.push(external_service(
            meta,
            e,
            bootstrap_service_name(meta, e),
            cluster_labels(meta),
            BTreeMap::from([(LABEL_CLUSTER.to_owned(), meta.name.clone())]),
            ServicePort {
                name: Some(e.dns_name()),
                port: i32::from(e.port),
                target_port: target.clone(),
                ..ServicePort::default()
            },
        ));
        for id in broker_ids(cluster) {
            let port = i32::from(e.broker_port(id));
            out.push(external_service(
                meta,
                e,
                broker_service_name(meta, e, id),
                broker_labels(meta, id),
                BTreeMap::from([
                    (LABEL_CLUSTER.to_owned(), meta.name.clone()),
                    (LABEL_BROKER_ID.to_owned(), id.to_string()),
                ]),
                ServicePort {
                    name: Some(e.dns_name()),
                    port,
                    target_port: target.clone(),
                    node_port: (e.access == AccessMethod::NodePort).then_some(port),
                    ..ServicePort::default()
                },
            ));
        }
    }
    out
}

/// One external Service as it exists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceView {
    /// The broker it serves (none for a bootstrap Service).
    pub broker: Option<i32>,
    /// Its load balancer's first address (IP or host name), once it has one.
    pub ingress: Option<String>,
    /// Its first port's node port, once allocated.
    pub node_port: Option<u16>,
}

impl ServiceView {
    /// What `s` says of itself.
    pub fn of(s: &Service) -> Self {
        let ingress = s
            .status
            .as_ref()
            .and_then(|st| st.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .and_then(|i| i.first())
            .and_then(|i| i.ip.clone().or_else(|| i.hostname.clone()))
            .filter(|a| !a.is_empty());
        let node_port = s
            .spec
            .as_ref()
            .and_then(|sp| sp.ports.as_ref())
            .and_then(|p| p.first())
            .and_then(|p| p.node_port)
            .and_then(|p| u16::try_from(p).ok());
        Self {
            broker: s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_BROKER_ID))
                .and_then(|v| v.parse().ok()),
            ingress,
            node_port,
        }
    }
}

/// What the external addresses depend on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExternalView {
    /// The cluster's external Services, by name.
    pub services: BTreeMap<String, ServiceView>,
    /// Each broker Pod's Node address (`status.hostIP`), by broker id.
    pub host_ips: BTreeMap<i32, String>,
}

/// Where every broker is reached from outside, and what is not known yet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Addresses {
    /// The external listeners of each broker's desired config; a listener whose
    /// address is not known yet is left out.
    pub listeners: BTreeMap<i32, Vec<Listener>>,
    /// Brokers missing an address, with what each waits for.
    pub waiting: BTreeMap<i32, Vec<String>>,
    /// The addresses for the status.
    pub status: Option<ListenerStatuses>,
}

impl Addresses {
    /// Why broker `id` cannot start yet, if it cannot.
    pub fn waiting_for(&self, id: i32) -> Option<String> {
        self.waiting.get(&id).map(|w| w.join("; "))
    }
}

/// The address broker `id` advertised on listener `name` according to `previous`.
fn recorded(previous: Option<&ListenerStatuses>, name: &str, id: i32) -> Option<String> {
    let entry = format!("broker-{id}");
    previous?
        .external_listeners
        .get(name)?
        .iter()
        .find(|a| a.name == entry)
        .and_then(|a| a.address.rsplit_once(':'))
        .map(|(host, _)| host.to_owned())
}

/// Every broker's external listeners and the status' addresses, from the Services'
/// state; a load balancer without an address falls back to the address recorded in
/// `previous` (a running broker keeps advertising it) or leaves the broker waiting.
pub fn addresses(
    meta: &ClusterMeta,
    cluster: &ValidatedCluster,
    view: &ExternalView,
    previous: Option<&ListenerStatuses>,
) -> Addresses {
    let mut out = Addresses::default();
    let mut status = ListenerStatuses::default();
    for e in &cluster.external_listeners {
        let name = e.dns_name();
        let mut entries = Vec::new();
        let bootstrap = bootstrap_service_name(meta, e);
        let bootstrap_view = view.services.get(&bootstrap);
        let any_host_ip = view.host_ips.values().next();
        let bootstrap_address = match e.access {
            AccessMethod::LoadBalancer | AccessMethod::Proxy => e
                .hostname_override
                .clone()
                .or_else(|| bootstrap_view.and_then(|v| v.ingress.clone()))
                .map(|h| format!("{h}:{}", e.port)),
            AccessMethod::NodePort => {
                let host = e.hostname_override.as_ref().or(any_host_ip);
                host.zip(bootstrap_view.and_then(|v| v.node_port))
                    .map(|(h, p)| format!("{h}:{p}"))
            }
        };
        if let Some(address) = bootstrap_address {
            entries.push(ListenerAddress {
                name: ANY_BROKER.to_owned(),
                address,
            });
        }
        for id in broker_ids(cluster) {
            let port = e.broker_port(id);
            let mut listener = Listener {
                name: e.name.clone(),
                security_protocol: e.protocol.clone(),
                container_port: u32::from(e.port),
                advertised_port: u32::from(port),
                ..Listener::default()
            };
            let service = broker_service_name(meta, e, id);
            let host = match (&e.hostname_override, e.access) {
                (Some(h), _) => Some(h.clone()),
                (None, AccessMethod::NodePort) => {
                    listener.advertise_node_address = true;
                    view.host_ips.get(&id).cloned()
                }
                (None, AccessMethod::LoadBalancer | AccessMethod::Proxy) => {
                    // Behind the proxy every broker is reached on the one load balancer.
                    let service = if e.access == AccessMethod::Proxy {
                        bootstrap.clone()
                    } else {
                        service
                    };
                    match view
                        .services
                        .get(&service)
                        .and_then(|v| v.ingress.clone())
                        .or_else(|| recorded(previous, &name, id))
                    {
                        Some(h) => Some(h),
                        None => {
                            out.waiting.entry(id).or_default().push(format!(
                                "Service {service} (listener {name}) has no load-balancer address yet"
                            ));
                            continue;
                        }
                    }
                }
            };
            if let Some(h) = &host {
                entries.push(ListenerAddress {
                    name: format!("broker-{id}"),
                    address: format!("{h}:{port}"),
                });
            }
            if !listener.advertise_node_address {
                listener.advertised_host = host.unwrap_or_default();
            }
            out.listeners.entry(id).or_default().push(listener);
        }
        status.external_listeners.insert(name, entries);
    }
    out.status = (!status.external_listeners.is_empty()).then_some(status);
    out
}

/// External Services that exist but are no longer wanted (a listener or a broker
/// gone from the spec).
pub fn unwanted(
    meta: &ClusterMeta,
    cluster: &ValidatedCluster,
    view: &ExternalView,
) -> BTreeSet<String> {
    let wanted: BTreeSet<String> = services(meta, cluster)
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    view.services
        .keys()
        .filter(|n| !wanted.contains(*n))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::kafka_cluster::{test_support::example_spec, validate::validate};
    use crate::crd::v1alpha1::ExternalListener;

    fn meta() -> ClusterMeta {
        ClusterMeta {
            name: "kafka".into(),
            namespace: "default".into(),
            ..ClusterMeta::default()
        }
    }

    fn cluster(access: &str, hostname_override: Option<&str>) -> ValidatedCluster {
        let mut spec = example_spec();
        spec.listeners_config.external_listeners = Some(vec![ExternalListener {
            type_: "plaintext".into(),
            name: "outside".into(),
            container_port: 9094,
            external_starting_port: 31000,
            access_method: Some(access.into()),
            hostname_override: hostname_override.map(Into::into),
        }]);
        validate(&spec).expect("valid")
    }

    fn lb(ingress: Option<&str>, broker: Option<i32>) -> ServiceView {
        ServiceView {
            broker,
            ingress: ingress.map(Into::into),
            node_port: None,
        }
    }

    #[test]
    fn every_broker_gets_a_service_on_its_own_port_and_the_listener_a_bootstrap() {
        let c = cluster("NodePort", None);
        let svcs = services(&meta(), &c);
        let names: Vec<_> = svcs
            .iter()
            .filter_map(|s| s.metadata.name.clone())
            .collect();
        assert_eq!(
            names,
            [
                "kafka-outside-bootstrap",
                "kafka-0-outside",
                "kafka-1-outside",
                "kafka-2-outside",
            ],
            "controller-only node 100 serves no clients"
        );
        let b2 = svcs[3].spec.as_ref().expect("spec");
        assert_eq!(b2.type_.as_deref(), Some("NodePort"));
        let port = &b2.ports.as_ref().expect("ports")[0];
        assert_eq!((port.port, port.node_port), (31002, Some(31002)));
        assert_eq!(
            port.target_port,
            Some(IntOrString::String("outside".into()))
        );
        assert_eq!(
            b2.selector.as_ref().expect("selector")[LABEL_BROKER_ID],
            "2"
        );
        let boot = svcs[0].spec.as_ref().expect("spec");
        assert_eq!(boot.ports.as_ref().expect("ports")[0].node_port, None);
        assert!(
            !boot
                .selector
                .as_ref()
                .expect("selector")
                .contains_key(LABEL_BROKER_ID)
        );
    }

    #[test]
    fn a_load_balancer_without_an_address_keeps_its_broker_waiting_unless_one_was_recorded() {
        let c = cluster("LoadBalancer", None);
        let mut view = ExternalView::default();
        view.services
            .insert("kafka-0-outside".into(), lb(Some("192.0.2.1"), Some(0)));
        view.services
            .insert("kafka-1-outside".into(), lb(None, Some(1)));
        view.services.insert(
            "kafka-outside-bootstrap".into(),
            lb(Some("192.0.2.9"), None),
        );
        let previous = ListenerStatuses {
            external_listeners: BTreeMap::from([(
                "outside".to_owned(),
                vec![ListenerAddress {
                    name: "broker-2".into(),
                    address: "192.0.2.3:31002".into(),
                }],
            )]),
        };
        let a = addresses(&meta(), &c, &view, Some(&previous));
        let l0 = &a.listeners[&0][0];
        assert_eq!(
            (
                l0.advertised_host.as_str(),
                l0.advertised_port,
                l0.container_port
            ),
            ("192.0.2.1", 31000, 9094)
        );
        assert!(!a.listeners.contains_key(&1), "no address, left out");
        assert!(
            a.waiting_for(1).expect("waiting").contains(
                "Service kafka-1-outside (listener outside) has no load-balancer address"
            )
        );
        assert_eq!(a.listeners[&2][0].advertised_host, "192.0.2.3", "recorded");
        assert!(a.waiting_for(2).is_none());
        let st = &a.status.expect("status").external_listeners["outside"];
        assert_eq!(st[0].name, ANY_BROKER);
        assert_eq!(st[0].address, "192.0.2.9:9094");
        assert!(st.iter().all(|e| e.name != "broker-1"));
    }

    #[test]
    fn node_port_brokers_advertise_their_node_and_an_override_wins_everywhere() {
        let c = cluster("NodePort", None);
        let mut view = ExternalView::default();
        view.host_ips.insert(0, "10.0.0.5".into());
        view.services.insert(
            "kafka-outside-bootstrap".into(),
            ServiceView {
                node_port: Some(30123),
                ..ServiceView::default()
            },
        );
        let a = addresses(&meta(), &c, &view, None);
        assert!(a.waiting.is_empty(), "a Node always has an address");
        let l0 = &a.listeners[&0][0];
        assert!(l0.advertise_node_address && l0.advertised_host.is_empty());
        let st = &a.status.expect("status").external_listeners["outside"];
        assert!(st.contains(&ListenerAddress {
            name: ANY_BROKER.into(),
            address: "10.0.0.5:30123".into()
        }));
        assert!(st.contains(&ListenerAddress {
            name: "broker-0".into(),
            address: "10.0.0.5:31000".into()
        }));

        let c = cluster("LoadBalancer", Some("kafka.example.com"));
        let a = addresses(&meta(), &c, &ExternalView::default(), None);
        assert!(a.waiting.is_empty());
        assert_eq!(a.listeners[&2][0].advertised_host, "kafka.example.com");
        assert_eq!(a.listeners[&2][0].advertised_port, 31002);
        assert!(!a.listeners.contains_key(&100), "a controller-only node");
    }

    #[test]
    fn services_of_a_removed_listener_or_broker_are_unwanted() {
        let c = cluster("NodePort", None);
        let mut view = ExternalView::default();
        for n in ["kafka-0-outside", "kafka-7-outside", "kafka-old-bootstrap"] {
            view.services.insert(n.into(), ServiceView::default());
        }
        let gone = unwanted(&meta(), &c, &view);
        assert_eq!(
            gone.into_iter().collect::<Vec<_>>(),
            ["kafka-7-outside", "kafka-old-bootstrap"]
        );
    }
}
