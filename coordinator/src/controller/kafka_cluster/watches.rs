//! The controller's watches: the KafkaClusters, and every kind of object it writes,
//! each cached in a reflector store (what [`dereference`](super::dereference) reads
//! instead of asking the API server) and turned into triggers for the cluster the
//! object belongs to. Cached objects are slimmed to what a pass reads.

use k8s_openapi::api::{
    apps::v1::Deployment,
    coordination::v1::Lease,
    core::v1::{
        ConfigMap, Container, PersistentVolumeClaim, Pod, PodSpec, Secret, Service, ServiceAccount,
        ServicePort, ServiceSpec, ServiceStatus,
    },
    policy::v1::PodDisruptionBudget,
    rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{
        Controller, WatchStreamExt,
        reflector::{self, ObjectRef},
        watcher,
    },
};

use super::{
    build::{LABEL_CLUSTER, rbac::AGENT_CLUSTER_ROLE},
    dereference::OwnedStores,
};
use crate::crd::v1alpha1::{KafkaCluster, KafkaRebalance};

/// Drops what a cached object never needs (most of its bytes): its managed fields, and
/// for Pods, ConfigMaps and Services everything the controller does not read (it
/// compares content hashes, never contents).
fn slim<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
    if let Some(a) = obj.meta_mut().annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// The KafkaCluster controller with a watch of every kind it writes, and the stores
/// those watches fill.
pub fn controller(client: Client) -> (Controller<KafkaCluster>, OwnedStores) {
    let labelled = watcher::Config::default().labels(LABEL_CLUSTER);

    let (pods, writer) = reflector::store();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), labelled.clone())
        .default_backoff()
        .modify(|p: &mut Pod| {
            slim(p);
            // Of the spec, a pass reads only where Kafka mounts its volumes (its disks).
            p.spec = p.spec.take().map(|s| PodSpec {
                containers: s
                    .containers
                    .into_iter()
                    .filter(|c| c.name == "kafka")
                    .map(|c| Container {
                        name: c.name,
                        volume_mounts: c.volume_mounts,
                        ..Container::default()
                    })
                    .collect(),
                ..PodSpec::default()
            });
            // Phase, address and conditions are all a pass reads of a Pod's status.
            if let Some(st) = p.status.as_mut() {
                st.container_statuses = None;
                st.init_container_statuses = None;
                st.ephemeral_container_statuses = None;
                st.host_ips = None;
                st.pod_ips = None;
            }
        })
        .reflect(writer)
        .touched_objects();
    let (config_maps, writer) = reflector::store();
    let cm_events = watcher(Api::<ConfigMap>::all(client.clone()), labelled.clone())
        .default_backoff()
        .modify(|c: &mut ConfigMap| {
            slim(c);
            c.data = None;
        })
        .reflect(writer)
        .touched_objects();
    let (services, writer) = reflector::store();
    let svc_events = watcher(Api::<Service>::all(client.clone()), labelled.clone())
        .default_backoff()
        .modify(|s: &mut Service| {
            slim(s);
            // An external Service's node ports and load-balancer address are read;
            // nothing else of a Service is.
            s.spec = s.spec.take().map(|sp| ServiceSpec {
                ports: sp.ports.map(|ports| {
                    ports
                        .into_iter()
                        .map(|p| ServicePort {
                            node_port: p.node_port,
                            port: p.port,
                            ..ServicePort::default()
                        })
                        .collect()
                }),
                ..ServiceSpec::default()
            });
            s.status = s.status.take().map(|st| ServiceStatus {
                load_balancer: st.load_balancer,
                ..ServiceStatus::default()
            });
        })
        .reflect(writer)
        .touched_objects();
    let (service_accounts, writer) = reflector::store();
    let sa_events = watcher(Api::<ServiceAccount>::all(client.clone()), labelled.clone())
        .default_backoff()
        .modify(slim)
        .reflect(writer)
        .touched_objects();
    let (pdbs, writer) = reflector::store();
    let pdb_events = watcher(
        Api::<PodDisruptionBudget>::all(client.clone()),
        labelled.clone(),
    )
    .default_backoff()
    .modify(|p: &mut PodDisruptionBudget| {
        slim(p);
        p.status = None;
    })
    .reflect(writer)
    .touched_objects();
    // PVCs and the cluster-scoped binding carry no owner reference: they map to their
    // cluster by label.
    let (pvcs, writer) = reflector::store();
    let pvc_events = watcher(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        labelled.clone(),
    )
    .default_backoff()
    // Spec and status stay: a pass compares the claim with the spec (resizes) and
    // reads how far a resize got.
    .modify(|p: &mut PersistentVolumeClaim| slim(p))
    .reflect(writer)
    .touched_objects();
    let (bindings, writer) = reflector::store();
    let binding_events = watcher(
        Api::<ClusterRoleBinding>::all(client.clone()),
        labelled.clone(),
    )
    .default_backoff()
    .modify(slim)
    .reflect(writer)
    .touched_objects();
    let (roles, writer) = reflector::store();
    let role_events = watcher(
        Api::<ClusterRole>::all(client.clone()),
        watcher::Config::default().fields(&format!("metadata.name={AGENT_CLUSTER_ROLE}")),
    )
    .default_backoff()
    .modify(slim)
    .reflect(writer)
    .touched_objects();
    let (namespaced_roles, writer) = reflector::store();
    let ns_role_events = watcher(Api::<Role>::all(client.clone()), labelled.clone())
        .default_backoff()
        .modify(slim)
        .reflect(writer)
        .touched_objects();
    let (role_bindings, writer) = reflector::store();
    let role_binding_events = watcher(Api::<RoleBinding>::all(client.clone()), labelled.clone())
        .default_backoff()
        .modify(slim)
        .reflect(writer)
        .touched_objects();
    // The agents renew their cluster's stop Lease every few seconds while a broker
    // stops; only its existence matters to a pass, so its spec is dropped and its
    // changes wake nothing (it is not `owns`: renewals would trigger passes).
    let (leases, writer) = reflector::store();
    let lease_events = watcher(Api::<Lease>::all(client.clone()), labelled.clone())
        .default_backoff()
        .modify(|l: &mut Lease| {
            slim(l);
            l.spec = None;
        })
        .reflect(writer)
        .touched_objects();

    let (deployments, writer) = reflector::store();
    let deployment_events = watcher(Api::<Deployment>::all(client.clone()), labelled.clone())
        .default_backoff()
        .modify(slim)
        .reflect(writer)
        .touched_objects();
    let (cruise_control_pods, writer) = reflector::store();
    let cc_pod_events = watcher(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().labels(&format!(
            "{}={}",
            crate::cruise_control::LABEL_COMPONENT,
            crate::cruise_control::COMPONENT
        )),
    )
    .default_backoff()
    .modify(|p: &mut Pod| {
        slim(p);
        p.spec = None;
    })
    .reflect(writer)
    .touched_objects();
    // The certificate Secrets only (by their component label: the agents' mTLS and the
    // client listeners' TLS): a deleted one is issued again at once.
    let (certificates, writer) = reflector::store();
    let components = super::build::certificates::Purpose::ALL
        .map(super::build::certificates::Purpose::component)
        .join(",");
    let secret_events = watcher(
        Api::<Secret>::all(client.clone()),
        watcher::Config::default().labels(&format!(
            "{} in ({components})",
            super::build::certificates::LABEL_COMPONENT,
        )),
    )
    .default_backoff()
    .modify(slim)
    .reflect(writer)
    .touched_objects();
    let (rebalances, writer) = reflector::store();
    let rebalance_events = watcher(Api::<KafkaRebalance>::all(client.clone()), labelled.clone())
        .default_backoff()
        .modify(slim)
        .reflect(writer)
        .touched_objects();

    let stores = OwnedStores {
        pods,
        config_maps,
        services,
        pvcs,
        service_accounts,
        pdbs,
        bindings,
        roles,
        namespaced_roles,
        role_bindings,
        leases,
        deployments,
        rebalances,
        cruise_control_pods,
        certificates,
    };
    let controller = Controller::new(Api::<KafkaCluster>::all(client), watcher::Config::default())
        .owns_stream(pod_events)
        .owns_stream(deployment_events)
        .owns_stream(rebalance_events)
        .owns_stream(cm_events)
        .owns_stream(secret_events)
        .owns_stream(svc_events)
        .owns_stream(sa_events)
        .owns_stream(pdb_events)
        .owns_stream(ns_role_events)
        .owns_stream(role_binding_events)
        .watches_stream(pvc_events, |pvc: PersistentVolumeClaim| {
            let name = pvc.labels().get(LABEL_CLUSTER)?.clone();
            Some(ObjectRef::new(&name).within(&pvc.namespace()?))
        })
        .watches_stream(binding_events, |b: ClusterRoleBinding| {
            let name = b.labels().get(LABEL_CLUSTER)?.clone();
            let ns = b.subjects.as_ref()?.first()?.namespace.clone()?;
            Some(ObjectRef::new(&name).within(&ns))
        })
        .watches_stream(cc_pod_events, |p: Pod| {
            let name = p
                .labels()
                .get(crate::cruise_control::LABEL_INSTANCE)?
                .clone();
            Some(ObjectRef::new(&name).within(&p.namespace()?))
        })
        // The shared ClusterRole triggers nothing; it is watched to be cached.
        .watches_stream(role_events, |_: ClusterRole| None)
        .watches_stream(lease_events, |_: Lease| None);
    (controller, stores)
}
