//! The cluster's Services (one headless, or one per broker plus an all-broker one,
//! per `headlessServiceEnabled`) and its PodDisruptionBudget.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        core::v1::{Service, ServicePort, ServiceSpec},
        policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};

use super::{
    CLUSTER_DOMAIN, ClusterMeta, LABEL_BROKER_ID, LABEL_CLUSTER, broker_labels, broker_name,
    cluster_labels,
};
use crate::{
    controller::kafka_cluster::validate::ValidatedCluster, crd::v1alpha1::DisruptionBudget,
};

/// The host a broker advertises and voters name: its Pod's DNS name under the
/// headless Service, or its own Service's name.
pub fn advertised_host(meta: &ClusterMeta, id: i32) -> String {
    let name = broker_name(meta, id);
    if meta.headless {
        format!(
            "{name}.{}-headless.{}.svc.{CLUSTER_DOMAIN}",
            meta.name, meta.namespace
        )
    } else {
        format!("{name}.{}.svc.{CLUSTER_DOMAIN}", meta.namespace)
    }
}

fn ports(cluster: &ValidatedCluster) -> Vec<ServicePort> {
    cluster
        .listeners
        .iter()
        .map(|l| ServicePort {
            name: Some(l.name.to_ascii_lowercase().replace('_', "-")),
            port: i32::from(l.port),
            target_port: Some(IntOrString::Int(i32::from(l.port))),
            ..ServicePort::default()
        })
        .collect()
}

pub(super) fn service(
    meta: &ClusterMeta,
    name: String,
    labels: BTreeMap<String, String>,
    selector: BTreeMap<String, String>,
    spec: ServiceSpec,
) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(meta.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![meta.owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(selector),
            ..spec
        }),
        ..Service::default()
    }
}

/// `<cluster>-headless`: every broker, not-ready addresses published so that a
/// stopping broker stays reachable while its leaders move away.
pub fn headless_service(meta: &ClusterMeta, cluster: &ValidatedCluster) -> Service {
    service(
        meta,
        format!("{}-headless", meta.name),
        cluster_labels(meta),
        BTreeMap::from([(LABEL_CLUSTER.to_owned(), meta.name.clone())]),
        ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            ports: Some(ports(cluster)),
            ..ServiceSpec::default()
        },
    )
}

/// `<cluster>-all-broker`: clients' bootstrap.
pub fn all_broker_service(meta: &ClusterMeta, cluster: &ValidatedCluster) -> Service {
    service(
        meta,
        format!("{}-all-broker", meta.name),
        cluster_labels(meta),
        BTreeMap::from([(LABEL_CLUSTER.to_owned(), meta.name.clone())]),
        ServiceSpec {
            ports: Some(ports(cluster)),
            ..ServiceSpec::default()
        },
    )
}

/// `<cluster>-<id>`: one broker.
pub fn broker_service(meta: &ClusterMeta, cluster: &ValidatedCluster, id: i32) -> Service {
    service(
        meta,
        broker_name(meta, id),
        broker_labels(meta, id),
        BTreeMap::from([
            (LABEL_CLUSTER.to_owned(), meta.name.clone()),
            (LABEL_BROKER_ID.to_owned(), id.to_string()),
        ]),
        ServiceSpec {
            ports: Some(ports(cluster)),
            publish_not_ready_addresses: Some(true),
            ..ServiceSpec::default()
        },
    )
}

/// `<cluster>-pdb`: `maxUnavailable` = the budget (default 1).
pub fn pod_disruption_budget(meta: &ClusterMeta, budget: &DisruptionBudget) -> PodDisruptionBudget {
    let max_unavailable = match budget.budget.as_deref() {
        Some(b) if b.ends_with('%') => IntOrString::String(b.to_owned()),
        Some(b) => IntOrString::Int(b.parse().unwrap_or(1)),
        None => IntOrString::Int(1),
    };
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some(format!("{}-pdb", meta.name)),
            namespace: Some(meta.namespace.clone()),
            labels: Some(cluster_labels(meta)),
            owner_references: Some(vec![meta.owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(max_unavailable),
            selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    LABEL_CLUSTER.to_owned(),
                    meta.name.clone(),
                )])),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}
