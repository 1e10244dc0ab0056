//! The `KafkaCluster` controller: validate the whole spec, then apply each broker's
//! ConfigMap (its agent's desired config), PVCs and Pod, the Services and the
//! PodDisruptionBudget; remove brokers gone from the spec (keeping their PVCs unless
//! asked); report status, conditions and an Event for every decision.
//!
//! Steps, one file each: [`validate`] (pure) → [`build`] (pure) → [`apply`] (I/O) →
//! [`status`] (pure). Only `reconcile` and `apply` talk to the API server.

pub mod apply;
pub mod build;
pub mod roll;
pub mod status;
#[cfg(test)]
pub(crate) mod test_support;
pub mod validate;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use super::error_chain;
use futures::StreamExt;
use k8s_openapi::api::{
    core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service, ServiceAccount},
    policy::v1::PodDisruptionBudget,
    rbac::v1::{ClusterRole, ClusterRoleBinding},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
    runtime::{
        Controller,
        controller::Action,
        events::{Event, EventType},
        finalizer::{Event as Finalizer, finalizer},
        watcher,
    },
};
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument, warn};

use self::{
    apply::Applied,
    build::{ClusterMeta, FIELD_MANAGER, LABEL_BROKER_ID, LABEL_CLUSTER},
};
use crate::{
    crd::v1alpha1::{
        BrokerRestart, KafkaCluster, KafkaClusterStatus, PvcDeletionPolicy, RollingUpgradeStatus,
    },
    metrics::ControllerMetrics,
};

/// The controller's name (Events, logs, metrics).
pub const CONTROLLER_NAME: &str = "kafkacluster";
/// The finalizer that cleans up what garbage collection would not (PVCs, when asked).
pub const KAFKA_CLUSTER_FINALIZER: &str = "kafkaclusters.kafka.stoker.io/cleanup";

/// What every reconcile shares.
#[derive(Clone)]
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The Event recorder.
    pub recorder: crate::events::Publisher,
    /// The agent's image for broker Pods.
    pub agent_image: String,
    /// Reconcile metrics.
    pub metrics: Arc<ControllerMetrics>,
    /// gRPC channels to the broker agents.
    pub agents: Arc<crate::agents::AgentPool>,
}

/// A failed reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes call failed.
    #[error("failed to {action} {kind} {name}")]
    Kube {
        /// The verb.
        action: &'static str,
        /// The object kind.
        kind: &'static str,
        /// The object name.
        name: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// The finalizer machinery failed.
    #[error("failed to run the cleanup finalizer")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// A stable label for metrics, logs and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Kube { action, .. } => match *action {
                "apply" => "apply",
                "delete" => "delete",
                "list" | "get" => "read",
                _ => "status",
            },
            Self::Finalizer(_) => "finalizer",
        }
    }
}

fn kube_err<'a>(
    action: &'static str,
    kind: &'static str,
    name: &'a str,
) -> impl FnOnce(kube::Error) -> Error + 'a {
    move |source| Error::Kube {
        action,
        kind,
        name: name.to_owned(),
        source,
    }
}

/// Runs the controller until `shutdown` is cancelled.
pub async fn run(
    client: Client,
    agent_image: String,
    metrics: Arc<ControllerMetrics>,
    shutdown: CancellationToken,
) {
    let clusters: Api<KafkaCluster> = Api::all(client.clone());
    let recorder = crate::events::Publisher::new(client.clone(), "stoker-coordinator");
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder,
        agent_image,
        metrics,
        agents: Arc::default(),
    });
    let owned = watcher::Config::default().labels(LABEL_CLUSTER);
    Controller::new(clusters, watcher::Config::default())
        .owns(Api::<Pod>::all(client.clone()), owned.clone())
        .owns(Api::<ConfigMap>::all(client.clone()), owned.clone())
        .owns(Api::<Service>::all(client), owned)
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                warn!(error = %e, "Reconcile failed");
            }
        })
        .await;
}

/// Reconciles one `KafkaCluster`.
#[instrument(skip(kc, ctx), fields(name = %kc.name_any(), namespace = kc.namespace().unwrap_or_default()))]
pub async fn reconcile(kc: Arc<KafkaCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started();
    let ns = kc.namespace().unwrap_or_else(|| "default".into());
    let api: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, KAFKA_CLUSTER_FINALIZER, kc, |event| async {
        match event {
            Finalizer::Apply(kc) => apply_cluster(&kc, &ctx).await,
            Finalizer::Cleanup(kc) => cleanup(&kc, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Requeue on transient failures with a short backoff.
pub fn error_policy(kc: Arc<KafkaCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(error.category());
    warn!(name = %kc.name_any(), category = error.category(), error = %error_chain(error), "Reconcile failed; retrying");
    Action::requeue(Duration::from_secs(10))
}

async fn event(
    ctx: &Context,
    kc: &KafkaCluster,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    broker_event(ctx, kc, None, type_, reason, action, note).await;
}

/// An Event about one broker: its Pod is the Event's related object. The recorder
/// folds Events with the same reason and objects into one series (keeping the first
/// note), so without it every broker's step would read as the first broker's.
async fn broker_event(
    ctx: &Context,
    kc: &KafkaCluster,
    broker: Option<(&ClusterMeta, i32)>,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let secondary = broker.map(|(meta, id)| k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(build::broker_name(meta, id)),
        namespace: Some(meta.namespace.clone()),
        ..Default::default()
    });
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &kc.object_ref(&())).await {
        warn!(error = %e, reason, "Failed to publish an Event");
    }
}

async fn patch_status(
    ctx: &Context,
    kc: &KafkaCluster,
    status: &KafkaClusterStatus,
) -> Result<(), Error> {
    if kc.status.as_ref() == Some(status) {
        return Ok(());
    }
    let ns = kc.namespace().unwrap_or_default();
    let name = kc.name_any();
    let api: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let body = serde_json::json!({ "apiVersion": "kafka.stoker.io/v1alpha1", "kind": "KafkaCluster", "status": status });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(kube_err("patch status of", "KafkaCluster", &name))?;
    Ok(())
}

async fn apply_cluster(kc: &KafkaCluster, ctx: &Context) -> Result<Action, Error> {
    let ns = kc.namespace().unwrap_or_default();
    let name = kc.name_any();
    let generation = kc.metadata.generation;
    let previous = kc.status.clone().unwrap_or_default();
    let now = status::now();

    let cluster = match validate::validate(&kc.spec) {
        Ok(c) => c,
        Err(invalid) => {
            let already = previous.conditions.iter().any(|c| {
                c.type_ == status::INVALID && c.status == "True" && c.message == invalid.message
            });
            patch_status(
                ctx,
                kc,
                &status::invalid_status(&previous, &invalid, generation, &now),
            )
            .await?;
            if !already {
                warn!(reason = invalid.reason, message = %invalid.message, "Spec is invalid; nothing applied");
                event(
                    ctx,
                    kc,
                    EventType::Warning,
                    invalid.reason,
                    "Validating",
                    invalid.message.clone(),
                )
                .await;
            }
            // Permanent until the spec changes.
            return Ok(Action::await_change());
        }
    };

    // The KRaft cluster id is generated once and kept in status before anything uses it.
    let cluster_id = match previous.cluster_id.clone() {
        Some(id) => id,
        None => {
            let id = new_cluster_id();
            let mut s = previous.clone();
            s.cluster_id = Some(id.clone());
            patch_status(ctx, kc, &s).await?;
            event(
                ctx,
                kc,
                EventType::Normal,
                "ClusterIdGenerated",
                "Initializing",
                format!("KRaft cluster id {id}"),
            )
            .await;
            id
        }
    };

    let meta = ClusterMeta {
        name: name.clone(),
        namespace: ns.clone(),
        owner: kc
            .controller_owner_ref(&())
            .expect("a stored KafkaCluster has a uid"),
        cluster_id: cluster_id.clone(),
        headless: kc.spec.headless_service_enabled,
        agent_image: ctx.agent_image.clone(),
    };

    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let svcs: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &ns);

    let mut w = Writer::default();

    // What the agents may read (their Node, for the rack).
    let sas: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &ns);
    for sa in build::service_accounts(&meta, &cluster) {
        w.write(&sas, sa, Mode::CreateOnly).await?;
    }
    let roles: Api<ClusterRole> = Api::all(ctx.client.clone());
    w.write(&roles, build::agent_cluster_role(), Mode::Apply)
        .await?;
    let bindings: Api<ClusterRoleBinding> = Api::all(ctx.client.clone());
    w.write(
        &bindings,
        build::agent_cluster_role_binding(&meta, &cluster),
        Mode::Apply,
    )
    .await?;

    // Services first: brokers advertise and find voters through their names.
    if meta.headless {
        w.write(&svcs, build::headless_service(&meta, &cluster), Mode::Apply)
            .await?;
    } else {
        w.write(
            &svcs,
            build::all_broker_service(&meta, &cluster),
            Mode::Apply,
        )
        .await?;
        for id in cluster.brokers.keys() {
            w.write(
                &svcs,
                build::broker_service(&meta, &cluster, *id),
                Mode::Apply,
            )
            .await?;
        }
    }

    let mut desired_hashes = BTreeMap::new();
    let mut desired_docs = BTreeMap::new();
    let mut restart_needed = BTreeMap::new();
    for b in cluster.brokers.values() {
        let doc = build::desired_config(&meta, &cluster, b);
        desired_hashes.insert(b.id, stoker_proto::config_hash(&doc));
        w.write(&cms, build::desired_config_map(&meta, &doc), Mode::Apply)
            .await?;
        desired_docs.insert(b.id, doc);
        for pvc in build::broker_pvcs(&meta, b) {
            w.write(&pvcs, pvc, Mode::CreateOnly).await?;
        }
        let pod = build::broker_pod(
            &meta,
            &cluster,
            b,
            kc.spec.one_broker_per_node,
            &kc.spec.envs,
        );
        if w.write(&pods, pod, Mode::CreateOnly).await? == Applied::Differs {
            restart_needed.insert(
                b.id,
                "the Pod's template changed (image, resources, JVM options, volumes or scheduling)"
                    .to_owned(),
            );
        }
    }

    if let Some(budget) = kc.spec.disruption_budget.as_ref().filter(|b| b.create) {
        w.write(
            &pdbs,
            build::pod_disruption_budget(&meta, budget),
            Mode::Apply,
        )
        .await?;
    }
    let changes = w.changes;

    // Brokers removed from the spec: their Pod, ConfigMap and Service go; PVCs stay
    // unless the spec asks for deletion.
    let selector = format!("{LABEL_CLUSTER}={name},{LABEL_BROKER_ID}");
    let lp = ListParams::default().labels(&selector);
    let existing_pods = pods
        .list(&lp)
        .await
        .map_err(kube_err("list", "Pod", &name))?;
    let mut live_pods = BTreeMap::new();
    let mut removed = Vec::new();
    for p in existing_pods {
        let Some(id) = p
            .labels()
            .get(LABEL_BROKER_ID)
            .and_then(|v| v.parse::<i32>().ok())
        else {
            continue;
        };
        if cluster.brokers.contains_key(&id) {
            live_pods.insert(id, p);
        } else {
            removed.push(id);
        }
    }
    for cm in cms
        .list(&lp)
        .await
        .map_err(kube_err("list", "ConfigMap", &name))?
    {
        if let Some(id) = cm
            .labels()
            .get(LABEL_BROKER_ID)
            .and_then(|v| v.parse::<i32>().ok())
            && !cluster.brokers.contains_key(&id)
            && !removed.contains(&id)
        {
            removed.push(id);
        }
    }
    for id in removed {
        let base = build::broker_name(&meta, id);
        delete_if_exists(&pods, &base, "Pod").await?;
        delete_if_exists(&cms, &format!("{base}-config"), "ConfigMap").await?;
        if !meta.headless {
            delete_if_exists(&svcs, &base, "Service").await?;
        }
        let keep_pvcs =
            kc.spec.pvc_deletion_policy.unwrap_or_default() == PvcDeletionPolicy::Retain;
        if !keep_pvcs {
            for pvc in pvcs
                .list(
                    &ListParams::default()
                        .labels(&format!("{LABEL_CLUSTER}={name},{LABEL_BROKER_ID}={id}")),
                )
                .await
                .map_err(kube_err("list", "PersistentVolumeClaim", &base))?
            {
                delete_if_exists(&pvcs, &pvc.name_any(), "PersistentVolumeClaim").await?;
            }
        }
        let kept = if keep_pvcs {
            "; its PersistentVolumeClaims are kept (pvcDeletionPolicy: Retain)"
        } else {
            "; its PersistentVolumeClaims were deleted (pvcDeletionPolicy: Delete)"
        };
        info!(broker_id = id, "Removed a broker gone from the spec");
        event(
            ctx,
            kc,
            EventType::Normal,
            "BrokerRemoved",
            "Removing",
            format!(
                "broker {id} is no longer in spec.brokers: its Pod and ConfigMap were deleted{kept}"
            ),
        )
        .await;
    }

    if !changes.is_empty() {
        info!(changes = ?changes, "Applied");
        event(
            ctx,
            kc,
            EventType::Normal,
            "Applied",
            "Reconciling",
            changes.join(", "),
        )
        .await;
    }

    let mut st = status::observed_status(
        &previous,
        &cluster,
        &cluster_id,
        &desired_hashes,
        &live_pods,
        generation,
        &now,
    );
    for (id, why) in &restart_needed {
        if let Some(b) = st.brokers_state.get_mut(&id.to_string()) {
            b.restart_needed = true;
            b.restart_reason = Some(why.clone());
        }
    }
    for (id, b) in st.brokers_state.iter_mut() {
        if !restart_needed.contains_key(&id.parse().unwrap_or(-1))
            && b.restart_reason
                .as_deref()
                .is_some_and(|r| r.starts_with("the Pod's template"))
        {
            b.restart_needed = false;
            b.restart_reason = None;
        }
    }
    let reports = sync_agents(ctx, kc, &meta, &desired_docs, &live_pods, &mut st).await;
    let newly_restart_needed: Vec<i32> = restart_needed
        .keys()
        .copied()
        .filter(|id| {
            !previous
                .brokers_state
                .get(&id.to_string())
                .is_some_and(|b| b.restart_needed)
        })
        .collect();
    if !newly_restart_needed.is_empty() {
        event(ctx, kc, EventType::Normal, "RestartNeeded", "Planning", format!("broker(s) {newly_restart_needed:?} need a restart: the Pod's template changed; they keep running until a safe rolling restart replaces them")).await;
    }
    let rolling = roll_step(ctx, kc, &meta, &cluster, &live_pods, &reports, &mut st).await?;
    patch_status(ctx, kc, &st).await?;
    Ok(Action::requeue(Duration::from_secs(if rolling {
        3
    } else {
        300
    })))
}

/// One step of the rolling restart (see [`roll`]): restart the next broker that needs
/// it when that is safe, or record what the roll waits for. Progress lives in status,
/// so a restarted coordinator resumes. Returns true while a roll is under way.
async fn roll_step(
    ctx: &Context,
    kc: &KafkaCluster,
    meta: &ClusterMeta,
    cluster: &validate::ValidatedCluster,
    pods: &BTreeMap<i32, Pod>,
    reports: &BTreeMap<i32, stoker_proto::agent::v1::BrokerStatus>,
    st: &mut KafkaClusterStatus,
) -> Result<bool, Error> {
    let views: Vec<roll::BrokerView> = cluster
        .brokers
        .values()
        .map(|b| {
            let pod = pods.get(&b.id);
            let state = match pod {
                None => roll::PodState::Missing,
                Some(p) if p.metadata.deletion_timestamp.is_some() => roll::PodState::Terminating,
                Some(p)
                    if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") =>
                {
                    roll::PodState::Running
                }
                Some(_) => roll::PodState::Pending,
            };
            let report = reports.get(&b.id);
            let entry = st.brokers_state.get(&b.id.to_string());
            roll::BrokerView {
                id: b.id,
                broker: b.roles.broker,
                controller: b.roles.controller,
                pod: state,
                ready: entry.is_some_and(|e| e.ready),
                not_ready_reason: report
                    .map(|r| r.not_ready_reason.clone())
                    .unwrap_or_default(),
                restart_needed: entry.is_some_and(|e| e.restart_needed),
                out_of_sync: report.map_or(0, |r| r.out_of_sync_partitions),
                // The last rack reported stays known while the broker is down.
                rack: entry.and_then(|e| e.rack.clone()),
            }
        })
        .collect();
    let active_controller = reports.values().map(|r| r.quorum_leader).find(|l| *l >= 0);
    let limits = roll::Limits {
        failure_threshold: kc.spec.rolling_upgrade_config.failure_threshold,
        per_rack: kc
            .spec
            .rolling_upgrade_config
            .concurrent_broker_restart_count_per_rack,
    };
    let now = status::now();
    // Nothing recorded, nothing to restart, nothing down: no roll to read or plan (the
    // common pass of a healthy cluster costs no extra API read).
    let quiet = kc
        .status
        .as_ref()
        .is_none_or(|s| s.rolling_upgrade.is_none())
        && views
            .iter()
            .all(|v| !v.restart_needed && v.failing().is_none());
    if quiet {
        return Ok(false);
    }
    // The roll's state is read fresh: the cached object may predate this coordinator's
    // own last status write (a Pod event can trigger the next pass first), and a stale
    // copy would forget the broker in progress.
    let clusters: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), &meta.namespace);
    st.rolling_upgrade = clusters
        .get_status(&meta.name)
        .await
        .map_err(kube_err("get", "KafkaCluster", &meta.name))?
        .status
        .and_then(|s| s.rolling_upgrade);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &meta.namespace);
    // Brokers finished, then the next one started: bounded by the brokers there are.
    for _ in 0..=views.len() {
        let in_progress: Vec<i32> = st
            .rolling_upgrade
            .as_ref()
            .map(|r| r.in_progress.iter().map(|b| b.broker).collect())
            .unwrap_or_default();
        match roll::plan(&views, &in_progress, limits, active_controller) {
            roll::Plan::Idle => {
                if let Some(done) = st.rolling_upgrade.take() {
                    info!(restarted = ?done.restarted, "Rolling restart complete");
                    event(ctx, kc, EventType::Normal, "RollCompleted", "Rolling", format!("rolling restart complete: broker(s) {:?} restarted, in that order (started {})", done.restarted, done.started_at)).await;
                }
                return Ok(false);
            }
            roll::Plan::Finished(id) => {
                let ru = st.rolling_upgrade.get_or_insert_with(Default::default);
                let since = ru
                    .in_progress
                    .iter()
                    .find(|b| b.broker == id)
                    .map(|b| b.started_at.clone())
                    .unwrap_or_default();
                ru.in_progress.retain(|b| b.broker != id);
                ru.restarted.push(id);
                ru.waiting_for = None;
                info!(broker_id = id, since = %since, "Broker restarted and caught up");
                broker_event(
                    ctx,
                    kc,
                    Some((meta, id)),
                    EventType::Normal,
                    "BrokerRestarted",
                    "Rolling",
                    format!("broker {id} is back, ready and caught up (restart began {since})"),
                )
                .await;
            }
            roll::Plan::Wait { reason, blocked } => {
                let ru = st
                    .rolling_upgrade
                    .get_or_insert_with(|| RollingUpgradeStatus {
                        started_at: now.clone(),
                        ..Default::default()
                    });
                roll_waits(ctx, kc, ru, reason, blocked).await;
                st.state = Some("RollingUpgrading".into());
                return Ok(true);
            }
            roll::Plan::Restart { broker: id, with } => {
                let ru = st
                    .rolling_upgrade
                    .get_or_insert_with(|| RollingUpgradeStatus {
                        started_at: now.clone(),
                        ..Default::default()
                    });
                st.state = Some("RollingUpgrading".into());
                let Some(ip) = pods
                    .get(&id)
                    .and_then(|p| p.status.as_ref()?.pod_ip.clone())
                else {
                    ru.waiting_for = Some(format!("broker {id}: its Pod has no address yet"));
                    return Ok(true);
                };
                let broker = stoker_proto::agent::v1::BrokerRef {
                    cluster: meta.name.clone(),
                    namespace: meta.namespace.clone(),
                    broker_id: id,
                };
                let addr = format!("{ip}:{}", build::AGENT_GRPC_PORT);
                let verdict = ctx.agents.safe_to_stop(&addr, &broker, &with).await;
                let unsafe_because = match verdict {
                    Ok(v) if v.safe => None,
                    Ok(v) => Some(v.reason),
                    Err(e) => Some(format!(
                        "its agent did not answer SafeToStop: {}",
                        error_chain(&e)
                    )),
                };
                if let Some(why) = unsafe_because {
                    if with.is_empty() {
                        let reason =
                            format!("broker {id} is next, but stopping it now is not safe: {why}");
                        roll_waits(ctx, kc, ru, reason, true).await;
                    } else {
                        // Not with the others: it waits its turn instead (not blocked,
                        // only less concurrent).
                        info!(broker_id = id, with = ?with, reason = %why, "Broker may not restart together with its rack");
                        let reason = format!(
                            "restarting broker(s) {with:?}; broker {id} of the same rack may not stop with them: {why}"
                        );
                        roll_waits(ctx, kc, ru, reason, false).await;
                    }
                    return Ok(true);
                }
                let name = build::broker_name(meta, id);
                let reason = st
                    .brokers_state
                    .get(&id.to_string())
                    .and_then(|b| b.restart_reason.clone())
                    .unwrap_or_default();
                match pods_api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(kube_err("delete", "Pod", &name)(e)),
                }
                info!(broker_id = id, reason = %reason, "Restarting broker");
                broker_event(
                    ctx,
                    kc,
                    Some((meta, id)),
                    EventType::Normal,
                    "RestartingBroker",
                    "Rolling",
                    if with.is_empty() {
                        format!(
                            "restarting broker {id} ({reason}); its agent said stopping it is safe"
                        )
                    } else {
                        format!(
                            "restarting broker {id} ({reason}) together with broker(s) {with:?} of its rack; its agent said stopping them together is safe"
                        )
                    },
                )
                .await;
                ru.in_progress.push(BrokerRestart {
                    broker: id,
                    started_at: now.clone(),
                });
                ru.waiting_for = Some(format!("restarting broker {id}: its Pod is stopping"));
                if with.is_empty() {
                    return Ok(true);
                }
            }
        }
    }
    Ok(true)
}

/// Records what the roll waits for; a blocked roll (the cluster's health holds it, not
/// its own progress) is logged and gets a Warning Event once per reason.
async fn roll_waits(
    ctx: &Context,
    kc: &KafkaCluster,
    ru: &mut RollingUpgradeStatus,
    reason: String,
    blocked: bool,
) {
    if blocked && ru.waiting_for.as_deref() != Some(reason.as_str()) {
        warn!(reason = %reason, "Rolling restart blocked");
        event(
            ctx,
            kc,
            EventType::Warning,
            "RollBlocked",
            "Rolling",
            format!("rolling restart waits: {reason}"),
        )
        .await;
    }
    ru.waiting_for = Some(reason);
}

/// Asks every running broker's agent for its status, and pushes the desired config to
/// agents whose config in force differs (dynamic keys apply live; the rest is
/// reported as restart-needed). An unreachable agent is noted in status, never an error:
/// brokers run without the coordinator.
async fn sync_agents(
    ctx: &Context,
    kc: &KafkaCluster,
    meta: &ClusterMeta,
    docs: &BTreeMap<i32, stoker_proto::agent::v1::DesiredConfig>,
    pods: &BTreeMap<i32, Pod>,
    st: &mut KafkaClusterStatus,
) -> BTreeMap<i32, stoker_proto::agent::v1::BrokerStatus> {
    let mut reports = BTreeMap::new();
    for (id, doc) in docs {
        let Some(ip) = pods.get(id).and_then(|p| p.status.as_ref()?.pod_ip.clone()) else {
            continue;
        };
        let addr = format!("{ip}:{}", build::AGENT_GRPC_PORT);
        let broker = stoker_proto::agent::v1::BrokerRef {
            cluster: meta.name.clone(),
            namespace: meta.namespace.clone(),
            broker_id: *id,
        };
        let Some(entry) = st.brokers_state.get_mut(&id.to_string()) else {
            continue;
        };
        let desired_hash = stoker_proto::config_hash(doc);
        let status = match ctx.agents.status(&addr, &broker).await {
            Ok(s) => s,
            Err(e) => {
                entry.ready = false;
                tracing::debug!(broker_id = id, error = %e, "Agent not reachable");
                continue;
            }
        };
        entry.ready = entry.ready && status.ready;
        entry.config_hash_in_force = Some(status.config_hash_in_force.clone());
        entry.out_of_sync_partitions = Some(status.out_of_sync_partitions);
        entry.rack = (!status.rack.is_empty()).then(|| status.rack.clone());
        reports.insert(*id, status.clone());
        if status.config_hash_in_force == desired_hash {
            // The broker runs the desired config: nothing of the config waits for a restart.
            if entry
                .restart_reason
                .as_deref()
                .is_some_and(|r| r.starts_with("static config changed"))
            {
                entry.restart_needed = false;
                entry.restart_reason = None;
            }
            continue;
        }
        let already_told = status.restart_needed
            && entry.desired_config_hash.as_deref() == Some(desired_hash.as_str());
        let outcome = if already_told {
            None
        } else {
            Some(ctx.agents.reconfigure(&addr, &broker, doc).await)
        };
        match outcome {
            Some(Ok(r)) => {
                entry.config_hash_in_force = Some(r.config_hash_in_force.clone());
                if !r.applied_keys.is_empty() {
                    info!(broker_id = id, keys = ?r.applied_keys, "Applied dynamic config live");
                    broker_event(
                        ctx,
                        kc,
                        Some((meta, *id)),
                        EventType::Normal,
                        "ConfigApplied",
                        "Reconfiguring",
                        format!(
                            "broker {id}: {} applied without a restart",
                            r.applied_keys.join(", ")
                        ),
                    )
                    .await;
                }
                if !r.restart_needed_keys.is_empty() {
                    entry.restart_needed = true;
                    entry.restart_reason = Some(format!(
                        "static config changed: {}",
                        r.restart_needed_keys.join(", ")
                    ));
                }
            }
            Some(Err(e)) => warn!(broker_id = id, error = %e, "Agent refused the new config"),
            None => {
                entry.restart_needed = true;
                entry.restart_reason = Some(format!(
                    "static config changed: {}",
                    status.restart_needed_keys.join(", ")
                ));
            }
        }
    }
    reports
}

/// How an object is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Server-side apply, skipped when unchanged.
    Apply,
    /// Create when missing, never change (Pods, PVCs, ServiceAccounts a user may own).
    CreateOnly,
}

/// Writes objects and remembers which it created or updated, for the reconcile's Event.
#[derive(Debug, Default)]
struct Writer {
    changes: Vec<String>,
}

impl Writer {
    async fn write<K>(&mut self, api: &Api<K>, obj: K, mode: Mode) -> Result<Applied, Error>
    where
        K: Resource<DynamicType = ()>
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let kind: &'static str = match K::kind(&()) {
            std::borrow::Cow::Borrowed(k) => k,
            std::borrow::Cow::Owned(_) => "object",
        };
        let name = obj.name_any();
        let applied = match mode {
            Mode::Apply => apply::apply(api, obj).await,
            Mode::CreateOnly => apply::create_only(api, obj).await,
        }
        .map_err(kube_err("apply", kind, &name))?;
        match applied {
            Applied::Created => self.changes.push(format!("{kind} {name} created")),
            Applied::Updated => self.changes.push(format!("{kind} {name} updated")),
            Applied::Unchanged | Applied::Differs => {}
        }
        Ok(applied)
    }
}

async fn delete_if_exists<K>(api: &Api<K>, name: &str, kind: &'static str) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::Kube {
            action: "delete",
            kind,
            name: name.to_owned(),
            source: e,
        }),
    }
}

async fn cleanup(kc: &KafkaCluster, ctx: &Context) -> Result<Action, Error> {
    let ns = kc.namespace().unwrap_or_default();
    let name = kc.name_any();
    // The ClusterRoleBinding is cluster-scoped and cannot be owned by a namespaced
    // resource: garbage collection would never remove it.
    let bindings: Api<ClusterRoleBinding> = Api::all(ctx.client.clone());
    delete_if_exists(
        &bindings,
        &format!("stoker-agent-{ns}-{name}"),
        "ClusterRoleBinding",
    )
    .await?;
    // Owned objects go with the garbage collector; PVCs carry no owner reference, so
    // only an explicit Delete policy removes them.
    if kc.spec.pvc_deletion_policy == Some(PvcDeletionPolicy::Delete) {
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
        for pvc in pvcs
            .list(&ListParams::default().labels(&format!("{LABEL_CLUSTER}={name}")))
            .await
            .map_err(kube_err("list", "PersistentVolumeClaim", &name))?
        {
            delete_if_exists(&pvcs, &pvc.name_any(), "PersistentVolumeClaim").await?;
        }
        event(
            ctx,
            kc,
            EventType::Normal,
            "Deleted",
            "Deleting",
            "cluster deleted with its PersistentVolumeClaims (pvcDeletionPolicy: Delete)".into(),
        )
        .await;
    } else {
        event(
            ctx,
            kc,
            EventType::Normal,
            "Deleted",
            "Deleting",
            "cluster deleted; its PersistentVolumeClaims are kept (pvcDeletionPolicy: Retain)"
                .into(),
        )
        .await;
    }
    Ok(Action::await_change())
}

/// A new KRaft cluster id: a random v4 UUID in Kafka's base64url form (22
/// characters, never starting with '-').
pub fn new_cluster_id() -> String {
    use std::io::Read;
    loop {
        let mut b = [0u8; 16];
        if std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut b))
            .is_err()
        {
            // Fall back on the clock and pid; uniqueness per cluster is all that matters.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            b = (t ^ (u128::from(std::process::id()) << 64)).to_le_bytes();
        }
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let id = base64url(&b);
        if !id.starts_with('-') {
            return id;
        }
    }
}

fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_kafka_shaped() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(!id.starts_with('-'));
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }
}
