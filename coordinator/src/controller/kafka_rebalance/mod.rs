//! The `KafkaRebalance` controller: each resource is one Cruise Control task, driven
//! by the pure state machine in [`plan`]; this module asks Cruise Control and writes
//! what it answered into the status (Stoker's own record of the task).

pub mod plan;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Resource, ResourceExt,
    api::DeleteParams,
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument};

use self::plan::{Answer, Facts, Next};
use super::{ReconcileError, cluster_ref, object_key, resource_status};
use crate::{
    context::Context,
    crd::v1alpha1::{GOAL_REACHED_ANNOTATION, KafkaCluster, KafkaRebalance, STOP_ANNOTATION},
    cruise_control::{self, CcError, CruiseControl, types::TaskStatus},
};

/// The controller's name.
pub const CONTROLLER_NAME: &str = "kafkarebalance";
/// How long a poll waits for Cruise Control's executor state.
const STATE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What a rebalance reconcile reads besides the shared [`Context`].
pub struct State {
    /// What every controller shares.
    pub ctx: Arc<Context>,
    /// Every KafkaRebalance (one task per cluster runs at a time).
    pub rebalances: Store<KafkaRebalance>,
    /// Every KafkaCluster (where its Cruise Control is).
    pub clusters: Store<KafkaCluster>,
    /// Cruise Control Pods (their addresses).
    pub cruise_control_pods: Store<Pod>,
}

/// A failed reconcile (retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes call failed.
    #[error("failed to {0}")]
    Kube(&'static str, #[source] kube::Error),
}

impl ReconcileError for Error {
    fn category(&self) -> &'static str {
        "kubernetes"
    }
}

/// Runs the controller until `shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let (clusters, writer) = reflector::store();
    let cluster_events = watcher(
        Api::<KafkaCluster>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|kc| kc.metadata.managed_fields = None)
    .reflect(writer)
    .touched_objects();
    let (pods, writer) = reflector::store();
    let pod_events = watcher(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().labels(&format!(
            "{}={}",
            cruise_control::LABEL_COMPONENT,
            cruise_control::COMPONENT
        )),
    )
    .default_backoff()
    .modify(|p: &mut Pod| {
        p.metadata.managed_fields = None;
        p.spec = None;
    })
    .reflect(writer)
    .touched_objects();
    let controller = Controller::new(
        Api::<KafkaRebalance>::all(client),
        watcher::Config::default(),
    );
    let rebalances = controller.store();
    let by_cluster = {
        let rebalances = rebalances.clone();
        move |kc: KafkaCluster| -> Vec<ObjectRef<KafkaRebalance>> {
            let ns = kc.namespace();
            rebalances
                .state()
                .iter()
                .filter(|r| {
                    r.spec.cluster_ref.name == kc.name_any()
                        && cluster_ref::cluster_namespace(&r.spec.cluster_ref, r.namespace())
                            == ns.clone().unwrap_or_default()
                })
                .map(|r| ObjectRef::from_obj(r.as_ref()))
                .collect()
        }
    };
    let pod_rebalances = rebalances.clone();
    let state = Arc::new(State {
        ctx,
        rebalances: rebalances.clone(),
        clusters,
        cruise_control_pods: pods,
    });
    controller
        .watches_stream(cluster_events, by_cluster)
        .watches_stream(
            pod_events,
            move |p: Pod| -> Vec<ObjectRef<KafkaRebalance>> {
                let Some(cluster) = p.labels().get(cruise_control::LABEL_INSTANCE).cloned() else {
                    return Vec::new();
                };
                pod_rebalances
                    .state()
                    .iter()
                    .filter(|r| {
                        r.spec.cluster_ref.name == cluster && r.namespace() == p.namespace()
                    })
                    .map(|r| ObjectRef::from_obj(r.as_ref()))
                    .collect()
            },
        )
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, state)
        .for_each(|_| futures::future::ready(()))
        .await;
}

/// Retries transient failures with the resource's backoff.
pub fn error_policy(kr: Arc<KafkaRebalance>, error: &Error, state: Arc<State>) -> Action {
    super::retry_after(
        kr.as_ref(),
        error,
        &state.ctx.metrics.kafka_rebalance,
        &state.ctx.backoff,
    )
}

/// The first unfinished task of the same cluster that goes before `kr`: a running one,
/// else the oldest.
fn ahead(kr: &KafkaRebalance, all: &Store<KafkaRebalance>) -> Option<String> {
    let ns = cluster_ref::cluster_namespace(&kr.spec.cluster_ref, kr.namespace());
    let key = |r: &KafkaRebalance| {
        let running = r.status.as_ref().and_then(|s| s.state)
            == Some(crate::crd::v1alpha1::RebalanceState::Running);
        (
            !running,
            r.metadata.creation_timestamp.clone().map(|t| t.0),
            r.name_any(),
        )
    };
    all.state()
        .iter()
        .filter(|r| r.uid() != kr.uid())
        .filter(|r| r.spec.cluster_ref.name == kr.spec.cluster_ref.name)
        .filter(|r| cluster_ref::cluster_namespace(&r.spec.cluster_ref, r.namespace()) == ns)
        .filter(|r| {
            !r.status
                .as_ref()
                .and_then(|s| s.state)
                .unwrap_or_default()
                .finished()
        })
        .filter(|r| r.meta().deletion_timestamp.is_none())
        .filter(|r| key(r) < key(kr))
        .min_by_key(|r| key(r))
        .map(|r| r.name_any())
}

/// Where the cluster's Cruise Control answers, or why there is none.
fn cruise_control_url(kr: &KafkaRebalance, state: &State) -> Result<String, String> {
    let ns = cluster_ref::cluster_namespace(&kr.spec.cluster_ref, kr.namespace());
    let Some(kc) = state
        .clusters
        .get(&ObjectRef::new(&kr.spec.cluster_ref.name).within(&ns))
    else {
        return Err(cluster_ref::missing_cluster_message(
            &ns,
            &kr.spec.cluster_ref,
        ));
    };
    let pods: Vec<Arc<Pod>> = state.cruise_control_pods.state();
    cruise_control::endpoint(&kc, pods.iter().map(AsRef::as_ref))
}

/// Reconciles one KafkaRebalance.
#[instrument(skip(kr, state), fields(name = %kr.name_any(), namespace = kr.namespace().unwrap_or_default()))]
pub async fn reconcile(kr: Arc<KafkaRebalance>, state: Arc<State>) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let _timer = ctx.metrics.kafka_rebalance.reconcile_started();
    if kr.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = kr.name_any();
    let status = kr.status.clone().unwrap_or_default();
    let url = cruise_control_url(&kr, &state);
    let facts = Facts {
        now: k8s_openapi::jiff::Timestamp::now(),
        cruise_control: url.clone().map(|_| ()),
        ahead: ahead(&kr, &state.rebalances),
        stop: kr.spec.stop
            || kr
                .annotations()
                .get(STOP_ANNOTATION)
                .is_some_and(|v| v == "true"),
        goal_reached: kr.annotations().get(GOAL_REACHED_ANNOTATION).cloned(),
    };
    let generation = kr.metadata.generation;
    let mut step = plan::next(&name, &kr.spec, &status, generation, &facts);
    // Ask Cruise Control what the step needs, then decide on its answer.
    if matches!(step, Next::Submit(..) | Next::Poll(_) | Next::Stop) {
        let cc = url
            .map_err(|why| CcError::Unreachable {
                url: format!(
                    "the Cruise Control of KafkaCluster {}",
                    kr.spec.cluster_ref.name
                ),
                message: why,
            })
            .and_then(|url| ctx.cruise_controls.get(&url));
        let answer = match (step, cc) {
            (Next::Submit(op, opts), Ok(cc)) => {
                Answer::Submitted(cc.submit(&op, &opts, None).await)
            }
            (Next::Submit(..), Err(e)) => Answer::Submitted(Err(e)),
            (Next::Poll(id), Ok(cc)) => Answer::Polled(poll(&ctx.cruise_controls, &cc, &id).await),
            (Next::Poll(_), Err(e)) => Answer::Polled(Err(e)),
            (_, Ok(cc)) => Answer::Stopped(cc.stop_execution().await),
            (_, Err(e)) => Answer::Stopped(Err(e)),
        };
        step = plan::outcome(&name, &kr.spec, &status, generation, answer, facts.now);
    }
    let action = match step {
        Next::Settle {
            status: new,
            events,
            requeue,
        } => {
            if new.state != status.state {
                info!(from = ?status.state, to = ?new.state, message = new.message.as_deref().unwrap_or(""), "Rebalance state changed");
            }
            resource_status::patch(&ctx.client, kr.as_ref(), *new)
                .await
                .map_err(|e| Error::Kube("patch the rebalance's status", e))?;
            for note in events {
                resource_status::publish(&ctx.recorder, kr.as_ref(), note).await;
            }
            requeue.map_or_else(Action::await_change, Action::requeue)
        }
        Next::Delete => {
            info!("Deleting a finished rebalance past its TTL");
            let api: Api<KafkaRebalance> =
                Api::namespaced(ctx.client.clone(), &kr.namespace().unwrap_or_default());
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(Error::Kube("delete the rebalance", e)),
            }
            Action::await_change()
        }
        // `outcome` always settles; a step left unasked waits for the next pass.
        Next::Submit(..) | Next::Poll(_) | Next::Stop => Action::requeue(plan::WAIT),
    };
    ctx.backoff.succeeded(&object_key(kr.as_ref()));
    Ok(action)
}

async fn poll(
    pool: &crate::cruise_control::Pool,
    cc: &CruiseControl,
    id: &str,
) -> Result<
    (
        Option<crate::cruise_control::types::UserTask>,
        crate::cruise_control::types::State,
    ),
    crate::cruise_control::CcError,
> {
    let asked = std::time::Instant::now();
    let task = cc.user_task(id).await?;
    // The executor's state is asked only when it says something new: how far an
    // execution is, and whether a completed task really finished. (Each /state is a
    // user task of Cruise Control's, which allows only a few at once.)
    let wanted = task
        .as_ref()
        .is_some_and(|t| matches!(t.status, TaskStatus::InExecution | TaskStatus::Completed));
    let state = if wanted {
        // Asked after the task's own status, so a completion is confirmed by an
        // executor state no older than it.
        match pool.state(cc.base(), asked, STATE_WAIT).await {
            Ok(s) => s,
            // No fresh progress this time; a completion is confirmed only with a
            // fresh executor state.
            Err(_)
                if task
                    .as_ref()
                    .is_some_and(|t| t.status == TaskStatus::InExecution) =>
            {
                crate::cruise_control::types::State::default()
            }
            Err(message) => return Err(CcError::NotReady { message }),
        }
    } else {
        crate::cruise_control::types::State::default()
    };
    Ok((task, state))
}
