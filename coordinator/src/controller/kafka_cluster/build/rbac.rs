//! What the agents need from the Kubernetes API: reading their Node (for
//! `broker.rack`), and taking their cluster's stop Lease (one broker at a time passes
//! its preStop check). A ServiceAccount per cluster for brokers that name none, one
//! ClusterRole shared by every cluster with a ClusterRoleBinding per cluster (cluster
//! scoped, so no owner reference: the finalizer deletes it), and per cluster the stop
//! Lease with a Role that may read and update that one Lease and nothing else.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::{
    api::{
        coordination::v1::Lease,
        core::v1::ServiceAccount,
        rbac::v1::{
            ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
        },
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

use super::{ClusterMeta, cluster_labels};
use crate::controller::kafka_cluster::validate::ValidatedCluster;

/// The ClusterRole every agent is bound to.
pub const AGENT_CLUSTER_ROLE: &str = "stoker-agent";

/// The ServiceAccount of brokers that name none.
pub fn default_service_account_name(meta: &ClusterMeta) -> String {
    format!("{}-stoker-agent", meta.name)
}

/// Every ServiceAccount the broker Pods run as: the default one, and those the spec
/// names (created only when missing; an existing account is left as it is).
pub fn service_accounts(meta: &ClusterMeta, cluster: &ValidatedCluster) -> Vec<ServiceAccount> {
    accounts(meta, cluster)
        .into_iter()
        .map(|name| service_account(meta, name))
        .collect()
}

fn accounts(meta: &ClusterMeta, cluster: &ValidatedCluster) -> BTreeSet<String> {
    cluster
        .brokers
        .values()
        .map(|b| {
            b.config
                .service_account_name
                .clone()
                .unwrap_or_else(|| default_service_account_name(meta))
        })
        .collect()
}

fn service_account(meta: &ClusterMeta, name: String) -> ServiceAccount {
    ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(meta.namespace.clone()),
            labels: Some(cluster_labels(meta)),
            owner_references: Some(vec![meta.owner.clone()]),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    }
}

/// `stoker-agent`: get Nodes.
pub fn agent_cluster_role() -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(AGENT_CLUSTER_ROLE.into()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                "stoker".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["nodes".into()]),
            verbs: vec!["get".into()],
            ..PolicyRule::default()
        }]),
        ..ClusterRole::default()
    }
}

/// `stoker-agent-<namespace>-<cluster>`: binds every ServiceAccount the cluster's
/// broker Pods run as.
pub fn agent_cluster_role_binding(
    meta: &ClusterMeta,
    cluster: &ValidatedCluster,
) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(binding_name(meta)),
            labels: Some(cluster_labels(meta)),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: AGENT_CLUSTER_ROLE.into(),
        },
        subjects: Some(subjects(meta, cluster)),
    }
}

/// `<cluster>-broker-stop`: the Lease an agent holds while its broker stops.
pub fn stop_lease_name(meta: &ClusterMeta) -> String {
    format!("{}-broker-stop", meta.name)
}

/// The cluster's stop Lease, free. The agents take and renew it; Stoker only creates it.
pub fn stop_lease(meta: &ClusterMeta) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(stop_lease_name(meta)),
            namespace: Some(meta.namespace.clone()),
            labels: Some(cluster_labels(meta)),
            owner_references: Some(vec![meta.owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: None,
    }
}

/// `<cluster>-stoker-agent`: the Role and RoleBinding of the cluster's agents.
pub fn agent_role_name(meta: &ClusterMeta) -> String {
    format!("{}-stoker-agent", meta.name)
}

/// Read and update the cluster's stop Lease, and only it.
pub fn agent_role(meta: &ClusterMeta) -> Role {
    Role {
        metadata: ObjectMeta {
            name: Some(agent_role_name(meta)),
            namespace: Some(meta.namespace.clone()),
            labels: Some(cluster_labels(meta)),
            owner_references: Some(vec![meta.owner.clone()]),
            ..ObjectMeta::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["coordination.k8s.io".into()]),
            resources: Some(vec!["leases".into()]),
            resource_names: Some(vec![stop_lease_name(meta)]),
            verbs: vec!["get".into(), "update".into()],
            ..PolicyRule::default()
        }]),
    }
}

/// Binds every ServiceAccount the cluster's broker Pods run as to [`agent_role`].
pub fn agent_role_binding(meta: &ClusterMeta, cluster: &ValidatedCluster) -> RoleBinding {
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(agent_role_name(meta)),
            namespace: Some(meta.namespace.clone()),
            labels: Some(cluster_labels(meta)),
            owner_references: Some(vec![meta.owner.clone()]),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: agent_role_name(meta),
        },
        subjects: Some(subjects(meta, cluster)),
    }
}

fn subjects(meta: &ClusterMeta, cluster: &ValidatedCluster) -> Vec<Subject> {
    accounts(meta, cluster)
        .into_iter()
        .map(|name| Subject {
            kind: "ServiceAccount".into(),
            name,
            namespace: Some(meta.namespace.clone()),
            ..Subject::default()
        })
        .collect()
}

/// The ClusterRoleBinding's name.
pub fn binding_name(meta: &ClusterMeta) -> String {
    binding_name_for(&meta.namespace, &meta.name)
}

/// `stoker-agent-<namespace>-<cluster>`: the ClusterRoleBinding of cluster `name`.
pub fn binding_name_for(namespace: &str, name: &str) -> String {
    format!("stoker-agent-{namespace}-{name}")
}
