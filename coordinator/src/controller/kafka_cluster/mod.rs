//! The `KafkaCluster` controller. Each pass is three steps, one module each:
//!
//! 1. [`dereference`] reads everything the pass needs once: the owned objects from the
//!    controller's reflector stores, the agents' reports (concurrently, with a timeout),
//!    the status this coordinator last wrote;
//! 2. [`plan`] (pure) decides everything: objects to write and delete, agents to
//!    reconfigure, the roll's next restart ([`roll`]), the Events and the whole status
//!    ([`status`]), from the spec [`validate`]d once and built by [`build`];
//! 3. [`apply`] carries the plan out, and is the one writer of the status.
//!
//! When the roll needs an agent's `SafeToStop` answer, the plan says so; this module
//! asks and plans again, so no decision is taken on a guess. [`watches`] sets up the
//! caches and triggers.

pub mod apply;
pub mod build;
pub mod claims;
pub mod cluster_id;
pub mod dereference;
pub mod disks;
pub mod plan;
pub mod roll;
pub mod scaling;
pub mod status;
#[cfg(test)]
pub(crate) mod test_support;
pub mod validate;
pub mod watches;

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use kube::{
    Api, ResourceExt,
    runtime::{
        controller::Action,
        finalizer::{Event as Finalizer, finalizer},
    },
};
use tokio_util::sync::CancellationToken;
use tracing::{instrument, warn};

pub use self::cluster_id::new_cluster_id;
use self::{
    build::LABEL_CLUSTER,
    dereference::{Memory, OwnedStores},
    validate::InvalidSpec,
};
use super::{ReconcileError, object_key};
use crate::{
    context::Context,
    crd::v1alpha1::{KafkaCluster, PvcDeletionPolicy},
};

/// The controller's name (Events, logs, metrics).
pub const CONTROLLER_NAME: &str = "kafkacluster";
/// The finalizer that cleans up what garbage collection would not (PVCs, when asked).
pub const KAFKA_CLUSTER_FINALIZER: &str = "kafkaclusters.kafka.stoker.io/cleanup";
/// How long a pass waits for the owned-object caches to fill after a start.
const CACHE_WAIT: Duration = Duration::from_secs(30);

/// What a KafkaCluster reconcile reads and remembers besides the shared [`Context`].
pub struct State {
    /// What every controller shares.
    pub ctx: Arc<Context>,
    /// The caches of every kind the controller writes.
    pub owned: OwnedStores,
    /// What this coordinator wrote and learnt.
    pub memory: Memory,
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
    /// A CA or broker certificate could not be issued.
    #[error("failed to issue TLS material")]
    Issue(#[source] stoker_proto::pki::IssueError),
    /// A CA Secret holds no CA Stoker can sign with.
    #[error("failed to use Secret {name} as the cluster's CA: {hint}")]
    CaSecret {
        /// The Secret.
        name: String,
        /// What is wrong and what to do.
        hint: &'static str,
    },
    /// The caches of owned objects were not filled in time.
    #[error("failed to fill the caches of owned objects within {0:?}")]
    Caches(Duration),
    /// The finalizer machinery failed.
    #[error("failed to run the cleanup finalizer")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl ReconcileError for Error {
    fn category(&self) -> &'static str {
        match self {
            Self::Kube { action, .. } => match *action {
                "apply" => "apply",
                "delete" => "delete",
                "list" | "get" => "read",
                _ => "status",
            },
            Self::Caches(_) => "cache",
            Self::Issue(_) | Self::CaSecret { .. } => "tls",
            Self::Finalizer(_) => "finalizer",
        }
    }
}

impl Error {
    /// The API server refused an object built from the spec as invalid (400, 422): it
    /// will refuse it again until the spec changes.
    fn rejected_object(&self) -> Option<String> {
        match self {
            Self::Kube {
                action: "apply",
                kind,
                name,
                source: kube::Error::Api(s),
            } if s.code == 400 || s.code == 422 => Some(format!(
                "the API server refused {kind} {name} built from the spec: {}; fix the spec",
                s.message
            )),
            _ => None,
        }
    }
}

/// Runs the controller until `shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let (controller, owned) = watches::controller(ctx.client.clone());
    let state = Arc::new(State {
        ctx,
        owned,
        memory: Memory::default(),
    });
    controller
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, state)
        .for_each(|res| async move {
            if let Err(e) = res {
                warn!(error = %e, "Reconcile failed");
            }
        })
        .await;
}

/// Reconciles one `KafkaCluster`.
#[instrument(skip(kc, state), fields(name = %kc.name_any(), namespace = kc.namespace().unwrap_or_default()))]
pub async fn reconcile(kc: Arc<KafkaCluster>, state: Arc<State>) -> Result<Action, Error> {
    let _timer = state.ctx.metrics.kafka_cluster.reconcile_started();
    if !tokio::time::timeout(CACHE_WAIT, state.owned.wait_until_ready())
        .await
        .unwrap_or(false)
    {
        return Err(Error::Caches(CACHE_WAIT));
    }
    let key = object_key(kc.as_ref());
    let ns = kc.namespace().unwrap_or_else(|| "default".into());
    let api: Api<KafkaCluster> = Api::namespaced(state.ctx.client.clone(), &ns);
    let action = finalizer(&api, KAFKA_CLUSTER_FINALIZER, kc, |event| async {
        match event {
            Finalizer::Apply(kc) => pass(&kc, &state).await,
            Finalizer::Cleanup(kc) => cleanup(&kc, &state).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    state.ctx.backoff.succeeded(&key);
    Ok(action)
}

/// Retries transient failures with the cluster's backoff.
pub fn error_policy(kc: Arc<KafkaCluster>, error: &Error, state: Arc<State>) -> Action {
    super::retry_after(
        kc.as_ref(),
        error,
        &state.ctx.metrics.kafka_cluster,
        &state.ctx.backoff,
    )
}

/// One pass: dereference → plan → apply.
async fn pass(kc: &KafkaCluster, state: &State) -> Result<Action, Error> {
    let cluster = match validate::validate(&kc.spec) {
        Ok(c) => c,
        Err(invalid) => return refuse(kc, state, &invalid).await,
    };
    let previous = dereference::previous_status(kc, &state.memory);
    let cluster = with_draining(&kc.spec, cluster, &previous);
    let cluster = disks::in_force(cluster, &previous);
    let ctx = &state.ctx;
    let mut observed = dereference::observe(
        kc,
        &cluster,
        &state.owned,
        &state.memory,
        &ctx.agents,
        &ctx.cruise_controls,
        &ctx.agent_image,
    )
    .await;
    // Each question is about another broker, asked once: bounded by the brokers there
    // are. (A plan whose question is still open restarts only brokers whose agents
    // already said yes, so it is safe to carry out as it stands.)
    let mut plan = plan::plan(&cluster, &observed);
    for _ in 0..=cluster.brokers.len() {
        let Some(question) = plan.question.take() else {
            break;
        };
        let verdict = dereference::ask_safe_to_stop(&observed, &ctx.agents, &question).await;
        observed.verdicts.insert(question, verdict);
        plan = plan::plan(&cluster, &observed);
    }
    let requeue = plan.requeue;
    match apply::run(kc, state, plan).await {
        Ok(()) => Ok(Action::requeue(requeue)),
        Err(e) => match e.rejected_object() {
            Some(message) => {
                refuse(
                    kc,
                    state,
                    &InvalidSpec {
                        reason: "ObjectRejected",
                        message,
                    },
                )
                .await
            }
            None => Err(e),
        },
    }
}

/// The validated spec plus the brokers removed from it that still drain: their last
/// reconciled entries (kept in status) are validated with the spec, so their Pods keep
/// running, and are recreated if they die, until they hold no replica. An entry that
/// no longer validates with the spec (its group is gone, say) is left out: its broker
/// still drains, but nothing is rebuilt for it.
fn with_draining(
    spec: &crate::crd::v1alpha1::KafkaClusterSpec,
    cluster: validate::ValidatedCluster,
    previous: &crate::crd::v1alpha1::KafkaClusterStatus,
) -> validate::ValidatedCluster {
    let gone: Vec<crate::crd::v1alpha1::Broker> = previous
        .brokers_state
        .iter()
        .filter(|(id, _)| {
            id.parse::<i32>()
                .is_ok_and(|id| !cluster.brokers.contains_key(&id))
        })
        .filter_map(|(_, b)| serde_json::from_str(b.last_applied.as_deref()?).ok())
        .collect();
    let mut out = cluster;
    for entry in gone {
        let mut with = spec.clone();
        let id = entry.id;
        with.brokers.push(entry);
        if let Ok(mut v) = validate::validate(&with)
            && let Some(mut b) = v.brokers.remove(&id)
        {
            b.draining = true;
            out.brokers.insert(id, b);
        }
    }
    out
}

/// Records a spec that cannot be reconciled (condition `Invalid`, a Warning Event the
/// first time) and waits for the spec to change.
async fn refuse(kc: &KafkaCluster, state: &State, invalid: &InvalidSpec) -> Result<Action, Error> {
    let previous = dereference::previous_status(kc, &state.memory);
    let plan = plan::invalid(
        invalid,
        &previous,
        kc.metadata.generation,
        &super::conditions::now(),
    );
    for note in &plan.events {
        warn!(reason = %note.reason, message = %note.note, "Spec cannot be reconciled; nothing more applied");
    }
    for note in plan.events.clone() {
        super::resource_status::publish(&state.ctx.recorder, kc, note).await;
    }
    apply::write_status(kc, state, &plan.status).await?;
    // Permanent until the spec changes.
    Ok(Action::await_change())
}

async fn cleanup(kc: &KafkaCluster, state: &State) -> Result<Action, Error> {
    let name = kc.name_any();
    let ns = kc.namespace().unwrap_or_default();
    let pvcs: Vec<String> = state
        .owned
        .pvcs
        .state()
        .iter()
        .filter(|p| {
            p.namespace().as_deref() == Some(ns.as_str())
                && p.labels().get(LABEL_CLUSTER) == Some(&name)
        })
        .map(|p| p.name_any())
        .collect();
    let delete = kc.spec.pvc_deletion_policy == Some(PvcDeletionPolicy::Delete);
    apply::cleanup(kc, state, &pvcs, delete).await?;
    Ok(Action::await_change())
}
