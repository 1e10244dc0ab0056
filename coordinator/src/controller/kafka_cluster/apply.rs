//! Apply: carries a [`Plan`] out, in its order — writes (server-side apply under one
//! field manager, or create-only), removals, claim resizes, live reconfiguration of
//! agents, the roll's Pod deletions, the decisions' Events, then the status (its one
//! writer). Outcomes only apply can know become Events here: which objects were really
//! created or updated (`Applied`), which keys an agent applied live (`ConfigApplied`),
//! and which resizes the API server refused (`StorageResizeRefused`; remembered, so
//! the next pass reports it in `StorageChangeBlocked` and does not ask again).

use std::fmt::Debug;

use futures::future::join_all;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::{
    apps::v1::Deployment,
    coordination::v1::Lease,
    policy::v1::PodDisruptionBudget,
    rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde::{Serialize, de::DeserializeOwned};
use stoker_proto::{agent::v1::BrokerRef, pki::Ca};
use tracing::{info, warn};

use super::{
    Error, State,
    build::{
        FIELD_MANAGER,
        certificates::{self, CertificateView, TlsPlan},
    },
    dereference::{Kind, ObjectKey},
    plan::{Object, Plan, Write},
};
use crate::{
    controller::{
        error_chain,
        resource_status::{self, Note},
    },
    crd::v1alpha1::{KafkaCluster, KafkaRebalance},
};

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The object did not exist and was created.
    Created,
    /// The object existed with other content and was updated.
    Updated,
    /// The object already matched (or, for create-only kinds, existed).
    Unchanged,
}

fn kube_err<'a>(
    action: &'static str,
    key: &'a ObjectKey,
) -> impl FnOnce(kube::Error) -> Error + 'a {
    move |source| Error::Kube {
        action,
        kind: key.kind.as_str(),
        name: key.name.clone(),
        source,
    }
}

/// Carries out one certificate set of the plan (the agents' mTLS or the client
/// listeners' TLS): a CA when there is none (never one over another: a CA someone else
/// just made is read back), each broker certificate due, and the Secrets of brokers
/// gone. Returns the CA in force.
async fn certificates(state: &State, ns: &str, tls: &TlsPlan) -> Result<Option<Ca>, Error> {
    if tls.is_empty() {
        return Ok(tls.ca.clone());
    }
    let api: Api<Secret> = Api::namespaced(state.ctx.client.clone(), ns);
    let err = |action: &'static str, name: &str| {
        let name = name.to_owned();
        move |source| Error::Kube {
            action,
            kind: "Secret",
            name,
            source,
        }
    };
    let purpose = tls.set.purpose.component();
    let now = time::OffsetDateTime::now_utc();
    if tls.ca_missing {
        return Err(Error::CaSecret {
            name: tls.set.ca_secret.clone(),
            hint: "sslSecrets.create is false, so the CA is yours to bring: create the Secret in the cluster's namespace with the CA's certificate in ca.crt and its unencrypted key in ca.key, labelled app.kubernetes.io/component=listener-tls (or set create: true)",
        });
    }
    let ca = match (&tls.ca, tls.new_ca) {
        (Some(ca), _) => Some(ca.clone()),
        (None, None) => None,
        (None, Some(why)) => {
            let (ca, secret) =
                certificates::issue_ca(&tls.meta, &tls.set, now).map_err(Error::Issue)?;
            let name = &tls.set.ca_secret;
            match api.create(&PostParams::default(), &secret).await {
                Ok(_) => {
                    info!(secret = %name, purpose, why, "Issued the cluster's CA");
                    Some(ca)
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    let stored = api.get(name).await.map_err(err("get", name))?;
                    Some(
                        CertificateView::read(&tls.set, &tls.meta.name, [&stored])
                            .ca
                            .ok_or_else(|| Error::CaSecret {
                                name: name.clone(),
                                hint: "it exists but holds no ca.crt and ca.key; delete it and Stoker creates the CA there, or name another Secret in sslSecrets.tlsSecretName",
                            })?,
                    )
                }
                Err(e) => return Err(err("create", name)(e)),
            }
        }
    };
    if let Some(ca) = &ca {
        for (&id, why) in &tls.issue {
            let secret = certificates::issue_broker(&tls.meta, &tls.set, ca, id, now)
                .map_err(Error::Issue)?;
            let name = tls.set.broker_secret(&tls.meta.name, id);
            api.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&secret),
            )
            .await
            .map_err(err("apply", &name))?;
            info!(broker_id = id, secret = %name, purpose, why = %why, "Issued the broker's certificate");
        }
    }
    for &id in &tls.delete {
        let name = tls.set.broker_secret(&tls.meta.name, id);
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                info!(broker_id = id, secret = %name, purpose, "Deleted the certificate of a broker gone")
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(err("delete", &name)(e)),
        }
    }
    Ok(ca)
}

/// Server-side applies `obj`: an update only when the API server's resourceVersion
/// moved (an identical apply is a no-op and keeps it).
async fn apply_one<K>(api: Api<K>, obj: K, before: Option<String>) -> Result<Applied, kube::Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    let stored = api
        .patch(
            &obj.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&obj),
        )
        .await?;
    Ok(match before {
        None => Applied::Created,
        Some(rv) if stored.resource_version().as_deref() != Some(rv.as_str()) => Applied::Updated,
        Some(_) => Applied::Unchanged,
    })
}

/// Creates `obj`; an object that exists already (created meanwhile, or one the store
/// does not show) is left as it is.
async fn create_one<K>(api: Api<K>, obj: K) -> Result<Applied, kube::Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    match api.create(&pp, &obj).await {
        Ok(_) => Ok(Applied::Created),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Applied::Unchanged),
        Err(e) => Err(e),
    }
}

async fn write(state: &State, ns: &str, w: Write) -> Result<(ObjectKey, Applied), Error> {
    let key = w.object.key();
    let client = state.ctx.client.clone();
    let rv = w.existing.and_then(|e| e.resource_version);
    let applied = match w.object {
        Object::ServiceAccount(o) => {
            let applied = create_one(Api::<ServiceAccount>::namespaced(client, ns), o).await;
            if let Ok(Applied::Unchanged) = applied {
                // It exists but the store (which sees only Stoker's accounts) does not
                // show it: a user's account, never to be changed.
                state.memory.account_exists(ns, &key.name);
            }
            applied
        }
        Object::ClusterRole(o) => apply_one(Api::<ClusterRole>::all(client), o, rv).await,
        Object::ClusterRoleBinding(o) => {
            apply_one(Api::<ClusterRoleBinding>::all(client), o, rv).await
        }
        Object::Role(o) => apply_one(Api::<Role>::namespaced(client, ns), o, rv).await,
        Object::RoleBinding(o) => {
            apply_one(Api::<RoleBinding>::namespaced(client, ns), o, rv).await
        }
        Object::Lease(o) => create_one(Api::<Lease>::namespaced(client, ns), o).await,
        Object::Service(o) => apply_one(Api::<Service>::namespaced(client, ns), o, rv).await,
        Object::ConfigMap(o) => apply_one(Api::<ConfigMap>::namespaced(client, ns), o, rv).await,
        Object::PersistentVolumeClaim(o) => {
            create_one(Api::<PersistentVolumeClaim>::namespaced(client, ns), o).await
        }
        Object::Pod(o) => create_one(Api::<Pod>::namespaced(client, ns), *o).await,
        Object::PodDisruptionBudget(o) => {
            apply_one(Api::<PodDisruptionBudget>::namespaced(client, ns), o, rv).await
        }
        Object::Deployment(o) => apply_one(Api::<Deployment>::namespaced(client, ns), *o, rv).await,
        Object::KafkaRebalance(o) => {
            create_one(Api::<KafkaRebalance>::namespaced(client, ns), *o).await
        }
    }
    .map_err(kube_err("apply", &key))?;
    Ok((key, applied))
}

/// Deletes `key`; true when it existed.
async fn delete(state: &State, ns: &str, key: &ObjectKey) -> Result<bool, Error> {
    async fn one<K>(api: Api<K>, name: &str) -> Result<bool, kube::Error>
    where
        K: Resource + Clone + DeserializeOwned + Debug,
    {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(e),
        }
    }
    let c = state.ctx.client.clone();
    let name = key.name.as_str();
    match key.kind {
        Kind::ServiceAccount => one(Api::<ServiceAccount>::namespaced(c, ns), name).await,
        Kind::ClusterRole => one(Api::<ClusterRole>::all(c), name).await,
        Kind::ClusterRoleBinding => one(Api::<ClusterRoleBinding>::all(c), name).await,
        Kind::Role => one(Api::<Role>::namespaced(c, ns), name).await,
        Kind::RoleBinding => one(Api::<RoleBinding>::namespaced(c, ns), name).await,
        Kind::Lease => one(Api::<Lease>::namespaced(c, ns), name).await,
        Kind::Service => one(Api::<Service>::namespaced(c, ns), name).await,
        Kind::ConfigMap => one(Api::<ConfigMap>::namespaced(c, ns), name).await,
        Kind::PersistentVolumeClaim => {
            one(Api::<PersistentVolumeClaim>::namespaced(c, ns), name).await
        }
        Kind::Pod => one(Api::<Pod>::namespaced(c, ns), name).await,
        Kind::PodDisruptionBudget => one(Api::<PodDisruptionBudget>::namespaced(c, ns), name).await,
        Kind::Deployment => one(Api::<Deployment>::namespaced(c, ns), name).await,
        Kind::KafkaRebalance => one(Api::<KafkaRebalance>::namespaced(c, ns), name).await,
    }
    .map_err(kube_err("delete", key))
}

/// Carries `plan` out for `kc`.
pub async fn run(kc: &KafkaCluster, state: &State, plan: Plan) -> Result<(), Error> {
    let ns = kc.namespace().unwrap_or_default();
    let publish = |note: Note| resource_status::publish(&state.ctx.recorder, kc, note);

    // A CA Secret Stoker cannot sign with stops the pass (no Pod would find its
    // certificate); the Warning Event says which Secret and what to do.
    let mut agent_ca = None;
    for (tls, agents) in [(&plan.agent_tls, true), (&plan.listener_tls, false)] {
        match certificates(state, &ns, tls).await {
            Ok(ca) if agents => agent_ca = ca,
            Ok(_) => {}
            Err(e @ Error::CaSecret { .. }) => {
                publish(Note::warning("CaSecretUnusable", "Issuing", e.to_string())).await;
                return Err(e);
            }
            Err(e) => return Err(e),
        }
    }
    let mut changes = Vec::new();
    for w in plan.writes {
        match write(state, &ns, w).await? {
            (key, Applied::Created) => changes.push(format!("{key} created")),
            (key, Applied::Updated) => changes.push(format!("{key} updated")),
            (_, Applied::Unchanged) => {}
        }
    }
    for r in &plan.removals {
        for key in &r.delete {
            delete(state, &ns, key).await?;
        }
        info!(broker_id = r.broker, deleted = ?r.delete, pvcs_kept = r.pvcs_kept, "Removed a broker gone from the spec");
    }
    for key in &plan.deletes {
        delete(state, &ns, key).await?;
    }
    for (name, seen) in &plan.goals_reached {
        let patch = serde_json::json!({"metadata": {"annotations": {
            crate::crd::v1alpha1::GOAL_REACHED_ANNOTATION: seen,
        }}});
        Api::<KafkaRebalance>::namespaced(state.ctx.client.clone(), &ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(kube_err(
                "annotate",
                &ObjectKey::new(Kind::KafkaRebalance, name.clone()),
            ))?;
        info!(rebalance = %name, seen = %seen, "Marked a KafkaRebalance's goal reached");
    }
    for r in &plan.resizes {
        resize(kc, state, &ns, r).await?;
    }

    // Live reconfiguration, every agent at once: dynamic keys apply without a restart,
    // the rest waits for one (the next pass reads it from the agents' reports).
    let name = kc.name_any();
    let agent_ca = agent_ca.as_ref();
    let outcomes = join_all(plan.reconfigure.iter().map(|r| {
        let broker = BrokerRef {
            cluster: name.clone(),
            namespace: ns.clone(),
            broker_id: r.broker,
        };
        async move {
            (
                r,
                state
                    .ctx
                    .agents
                    .reconfigure(agent_ca, &r.addr, &broker, &r.desired)
                    .await,
            )
        }
    }))
    .await;
    for (broker, outcome) in outcomes {
        match outcome {
            Ok(r) if !r.applied_keys.is_empty() => {
                info!(broker_id = broker.broker, keys = ?r.applied_keys, "Applied dynamic config live");
                publish(
                    Note::normal(
                        "ConfigApplied",
                        "Reconfiguring",
                        format!(
                            "broker {}: {} applied without a restart",
                            broker.broker,
                            r.applied_keys.join(", ")
                        ),
                    )
                    .about(broker.pod.clone()),
                )
                .await;
            }
            Ok(_) => {}
            Err(e) => {
                warn!(broker_id = broker.broker, error = %error_chain(&e), "Agent refused the new config");
            }
        }
    }

    for r in &plan.restarts {
        let key = ObjectKey::new(Kind::Pod, r.pod.clone());
        delete(state, &ns, &key).await?;
        info!(broker_id = r.broker, pod = %r.pod, "Restarting broker");
    }
    for note in plan.events {
        if note.warning {
            warn!(reason = %note.reason, note = %note.note, "Warning");
        }
        publish(note).await;
    }
    if !changes.is_empty() {
        info!(changes = ?changes, "Applied");
        publish(Note::normal("Applied", "Reconciling", changes.join(", "))).await;
    }
    write_status(kc, state, &plan.status).await
}

/// Grows claim `r.pvc` to `r.storage`. A refusal by the API server (the storage class
/// does not allow expansion, the claim is not bound, ...) is no failure of the pass: it
/// is said in an Event and remembered for the next plan.
async fn resize(
    kc: &KafkaCluster,
    state: &State,
    ns: &str,
    r: &super::claims::Resize,
) -> Result<(), Error> {
    let api = Api::<PersistentVolumeClaim>::namespaced(state.ctx.client.clone(), ns);
    let patch = serde_json::json!({"spec": {"resources": {"requests": {"storage": r.storage}}}});
    match api
        .patch(&r.pvc, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            info!(broker_id = r.broker, pvc = %r.pvc, storage = %r.storage, "Asked Kubernetes to grow a claim");
            Ok(())
        }
        Err(kube::Error::Api(s)) if matches!(s.code, 400 | 403 | 422) => {
            warn!(broker_id = r.broker, pvc = %r.pvc, storage = %r.storage, error = %s.message, "Kubernetes refused to grow a claim");
            state.memory.resize_refused(
                ns,
                &r.pvc,
                super::claims::Refusal {
                    storage: r.storage.clone(),
                    message: s.message.clone(),
                },
            );
            resource_status::publish(
                &state.ctx.recorder,
                kc,
                Note::warning(
                    "StorageResizeRefused",
                    "Resizing",
                    format!(
                        "PVC {} (broker {}) was not grown to {}: {}",
                        r.pvc, r.broker, r.storage, s.message
                    ),
                ),
            )
            .await;
            Ok(())
        }
        Err(e) => Err(kube_err(
            "resize",
            &ObjectKey::new(Kind::PersistentVolumeClaim, r.pvc.clone()),
        )(e)),
    }
}

/// Writes `status` when it differs from the one last written, and remembers it.
pub async fn write_status(
    kc: &KafkaCluster,
    state: &State,
    status: &crate::crd::v1alpha1::KafkaClusterStatus,
) -> Result<(), Error> {
    let previous = super::dereference::previous_status(kc, &state.memory);
    if &previous == status {
        return Ok(());
    }
    // `alerting` is the alert receiver's: never sent, so never owned and never reverted.
    let mut body = status.clone();
    body.alerting = None;
    let stored = resource_status::write(&state.ctx.client, kc, &body)
        .await
        .map_err(|source| Error::Kube {
            action: "patch status of",
            kind: "KafkaCluster",
            name: kc.name_any(),
            source,
        })?;
    if let (Some(uid), Some(st)) = (kc.uid(), stored.status) {
        state.memory.wrote(&uid, st);
    }
    Ok(())
}

/// The finalizer's cleanup: the cluster-scoped ClusterRoleBinding (garbage collection
/// cannot remove it) and, only under `pvcDeletionPolicy: Delete`, the PVCs. Owned
/// objects go with the garbage collector.
pub async fn cleanup(
    kc: &KafkaCluster,
    state: &State,
    pvcs: &[String],
    delete_pvcs: bool,
) -> Result<(), Error> {
    let ns = kc.namespace().unwrap_or_default();
    let name = kc.name_any();
    delete(
        state,
        &ns,
        &ObjectKey::new(
            Kind::ClusterRoleBinding,
            super::build::rbac::binding_name_for(&ns, &name),
        ),
    )
    .await?;
    let note = if delete_pvcs {
        for pvc in pvcs {
            delete(
                state,
                &ns,
                &ObjectKey::new(Kind::PersistentVolumeClaim, pvc.clone()),
            )
            .await?;
        }
        "cluster deleted with its PersistentVolumeClaims (pvcDeletionPolicy: Delete)"
    } else {
        "cluster deleted; its PersistentVolumeClaims are kept (pvcDeletionPolicy: Retain)"
    };
    resource_status::publish(
        &state.ctx.recorder,
        kc,
        Note::normal("Deleted", "Deleting", note),
    )
    .await;
    if let Some(uid) = kc.uid() {
        state.memory.forget(&uid);
    }
    Ok(())
}
