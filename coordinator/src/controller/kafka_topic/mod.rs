//! The `KafkaTopic` controller: the seed's semantics (create when missing; while the
//! cluster has fewer brokers than the replication factor, keep retrying and say so;
//! by default keep the Kafka topic when the resource goes) plus growing partitions,
//! correcting config drift key by key with incremental AlterConfigs, adopting an
//! existing topic only when annotated, refusing what Kafka cannot do, and marking the
//! later of two resources that name the same topic.

pub mod plan;

use std::{sync::Arc, time::Duration};

use super::{
    cluster_ref::{self, bootstrap_servers},
    error_chain,
};
use futures::StreamExt;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        Controller,
        controller::Action,
        events::{Event, EventType, Recorder, Reporter},
        finalizer::{Event as Finalizer, finalizer},
        reflector::Store,
        watcher,
    },
};
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument, warn};

use super::kafka_cluster::{
    build::FIELD_MANAGER,
    status::{now, set_condition},
};
use crate::{
    crd::v1alpha1::{
        ADOPT_ANNOTATION, KafkaCluster, KafkaTopic, KafkaTopicStatus, TopicDeletionPolicy,
    },
    kafka_admin::{AdminError, AdminPool},
    metrics::ControllerMetrics,
};

/// The controller's name.
pub const CONTROLLER_NAME: &str = "kafkatopic";
/// The finalizer that deletes the Kafka topic under `deletionPolicy: Delete`.
pub const KAFKA_TOPIC_FINALIZER: &str = "kafkatopics.kafka.stoker.io/cleanup";
/// What every reconcile shares.
#[derive(Clone)]
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Events.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<ControllerMetrics>,
    /// Kafka admin clients by cluster.
    pub admins: Arc<AdminPool>,
    /// Every KafkaTopic (to find two naming the same topic).
    pub topics: Store<KafkaTopic>,
}

/// A failed reconcile (transient: it is retried).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes call failed.
    #[error("failed to {0}")]
    Kube(&'static str, #[source] kube::Error),
    /// Kafka could not be reached or answered with a transient error.
    #[error("failed to talk to Kafka")]
    Kafka(#[source] AdminError),
    /// The finalizer machinery failed.
    #[error("failed to run the topic finalizer")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// A stable label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Kube(..) => "kubernetes",
            Self::Kafka(_) => "kafka",
            Self::Finalizer(_) => "finalizer",
        }
    }
}

/// Runs the controller until `shutdown` is cancelled.
pub async fn run(client: Client, metrics: Arc<ControllerMetrics>, shutdown: CancellationToken) {
    let topics: Api<KafkaTopic> = Api::all(client.clone());
    let controller = Controller::new(topics, watcher::Config::default())
        .graceful_shutdown_on(shutdown.cancelled_owned());
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client, Reporter::from("stoker-coordinator")),
        metrics,
        admins: Arc::default(),
        topics: controller.store(),
    });
    controller
        .with_config(kube::runtime::controller::Config::default().concurrency(16))
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                warn!(error = %e, "Topic reconcile failed");
            }
        })
        .await;
}

/// Reconciles one KafkaTopic.
#[instrument(skip(kt, ctx), fields(name = %kt.name_any(), namespace = kt.namespace().unwrap_or_default()))]
pub async fn reconcile(kt: Arc<KafkaTopic>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_started();
    let api: Api<KafkaTopic> =
        Api::namespaced(ctx.client.clone(), &kt.namespace().unwrap_or_default());
    finalizer(&api, KAFKA_TOPIC_FINALIZER, kt, |event| async {
        match event {
            Finalizer::Apply(kt) => apply(&kt, &ctx).await,
            Finalizer::Cleanup(kt) => cleanup(&kt, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Retries transient failures.
pub fn error_policy(kt: Arc<KafkaTopic>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.reconcile_failed(error.category());
    warn!(name = %kt.name_any(), category = error.category(), error = %error_chain(error), "Topic reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

async fn event(ctx: &Context, kt: &KafkaTopic, type_: EventType, reason: &str, note: String) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconciling".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &kt.object_ref(&())).await {
        warn!(error = %e, "Failed to publish an Event");
    }
}

async fn patch_status(
    ctx: &Context,
    kt: &KafkaTopic,
    status: KafkaTopicStatus,
) -> Result<(), Error> {
    if kt.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<KafkaTopic> =
        Api::namespaced(ctx.client.clone(), &kt.namespace().unwrap_or_default());
    let body = serde_json::json!({"apiVersion": "kafka.stoker.io/v1alpha1", "kind": "KafkaTopic", "status": status});
    api.patch_status(
        &kt.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|e| Error::Kube("patch the topic's status", e))?;
    Ok(())
}

/// Sets Ready=False with `reason`/`message` (a Warning Event when it is new) and
/// returns how long to wait.
async fn not_ready(
    ctx: &Context,
    kt: &KafkaTopic,
    reason: &str,
    message: String,
    retry: Option<Duration>,
) -> Result<Action, Error> {
    let mut st = kt.status.clone().unwrap_or_default();
    let is_new = !st
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.reason == reason && c.message == message);
    st.observed_generation = kt.metadata.generation;
    set_condition(
        &mut st.conditions,
        "Ready",
        false,
        reason,
        &message,
        kt.metadata.generation,
        &now(),
    );
    patch_status(ctx, kt, st).await?;
    if is_new {
        warn!(reason, message = %message, "Topic not ready");
        event(ctx, kt, EventType::Warning, reason, message).await;
    }
    Ok(retry.map_or_else(Action::await_change, Action::requeue))
}

/// The earlier KafkaTopic for the same cluster and topic name, if this one is later.
fn conflicting(kt: &KafkaTopic, all: &[Arc<KafkaTopic>]) -> Option<String> {
    let cluster_ns = cluster_ref::cluster_namespace(&kt.spec.cluster_ref, kt.namespace());
    let key = |t: &KafkaTopic| (t.metadata.creation_timestamp.clone().map(|c| c.0), t.uid());
    all.iter()
        .filter(|o| o.uid() != kt.uid() && o.meta().deletion_timestamp.is_none())
        .filter(|o| {
            o.spec.name == kt.spec.name && o.spec.cluster_ref.name == kt.spec.cluster_ref.name
        })
        .filter(|o| {
            cluster_ref::cluster_namespace(&o.spec.cluster_ref, o.namespace()) == cluster_ns
        })
        .filter(|o| key(o) < key(kt))
        .map(|o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()))
        .next()
}

/// The namespace of the topic's `clusterRef` and the KafkaCluster there, if it exists.
async fn referenced_cluster(
    kt: &KafkaTopic,
    ctx: &Context,
) -> Result<(String, Option<KafkaCluster>), Error> {
    cluster_ref::referenced_cluster(&ctx.client, &kt.spec.cluster_ref, kt.namespace())
        .await
        .map_err(|e| Error::Kube("get the KafkaCluster", e))
}

async fn apply(kt: &KafkaTopic, ctx: &Context) -> Result<Action, Error> {
    if let Err(r) = plan::validate(&kt.spec) {
        return not_ready(ctx, kt, r.reason, r.message, None).await;
    }
    let all = ctx.topics.state();
    if let Some(owner) = conflicting(kt, &all) {
        return not_ready(
            ctx,
            kt,
            "TopicConflict",
            format!("topic {} is already managed by KafkaTopic {owner}; delete one of the two resources", kt.spec.name),
            Some(Duration::from_secs(60)),
        )
        .await;
    }
    let (cluster_ns, cluster) = referenced_cluster(kt, ctx).await?;
    let Some(cluster) = cluster else {
        return not_ready(
            ctx,
            kt,
            "ClusterNotFound",
            cluster_ref::missing_cluster_message(&cluster_ns, &kt.spec.cluster_ref),
            Some(Duration::from_secs(30)),
        )
        .await;
    };
    let Some(bootstrap) = bootstrap_servers(&cluster) else {
        return not_ready(
            ctx,
            kt,
            "ClusterNotReady",
            "the KafkaCluster has no inner-broker listener to connect to".into(),
            Some(Duration::from_secs(30)),
        )
        .await;
    };
    let admin = ctx.admins.get(&bootstrap).map_err(Error::Kafka)?;
    let (brokers, topic) = admin
        .describe_topic(&kt.spec.name)
        .await
        .map_err(Error::Kafka)?;
    let mut st = kt.status.clone().unwrap_or_default();
    let name = &kt.spec.name;

    let topic = match topic {
        None => {
            let rf = kt.spec.replication_factor;
            if rf > 0 && usize::try_from(rf).unwrap_or(usize::MAX) > brokers {
                return not_ready(
                    ctx,
                    kt,
                    "NotEnoughBrokers",
                    format!("the cluster has {brokers} live broker(s) and the topic needs {rf} replicas; retrying until enough brokers run"),
                    Some(Duration::from_secs(10)),
                )
                .await;
            }
            // Kafka checks names, counts and every config value first; nothing is created on a refusal.
            for validate_only in [true, false] {
                match admin
                    .create_topic(name, kt.spec.partitions, rf, &kt.spec.config, validate_only)
                    .await
                {
                    Ok(()) => {}
                    // Created meanwhile, or not yet in the metadata we read: look again.
                    Err(AdminError::TopicExists) => {
                        return Ok(Action::requeue(Duration::from_secs(1)));
                    }
                    Err(e) if e.is_refusal() => {
                        return not_ready(ctx, kt, "InvalidTopic", e.to_string(), None).await;
                    }
                    Err(e) => return Err(Error::Kafka(e)),
                }
            }
            info!(topic = %name, "Created topic");
            // Record ownership now: brokers learn of the topic as they replay the
            // metadata log, so the next read may not show it yet, and an unrecorded
            // topic would look like someone else's on the next pass.
            st.managed = true;
            st.config = kt.spec.config.clone();
            st.observed_generation = kt.metadata.generation;
            set_condition(
                &mut st.conditions,
                "Ready",
                false,
                "Creating",
                &format!("created topic {name}; waiting for the brokers to report it"),
                kt.metadata.generation,
                &now(),
            );
            patch_status(ctx, kt, st.clone()).await?;
            event(
                ctx,
                kt,
                EventType::Normal,
                "Created",
                format!("created topic {name}"),
            )
            .await;
            let (_, created) = admin.describe_topic(name).await.map_err(Error::Kafka)?;
            let Some(t) = created else {
                return Ok(Action::requeue(Duration::from_secs(1)));
            };
            st.config = kt.spec.config.clone();
            t
        }
        Some(t) => {
            let managed = st.managed || st.topic_id.is_some();
            let adopt = kt
                .annotations()
                .get(ADOPT_ANNOTATION)
                .is_some_and(|v| v == "true");
            if !managed && !adopt {
                return not_ready(
                    ctx,
                    kt,
                    "TopicExists",
                    format!("topic {name} already exists in Kafka and was not created by this resource; annotate it with {ADOPT_ANNOTATION}=true to manage the existing topic"),
                    None,
                )
                .await;
            }
            if !managed {
                info!(topic = %name, "Adopting an existing topic");
                event(
                    ctx,
                    kt,
                    EventType::Normal,
                    "Adopted",
                    format!("adopted the existing topic {name}"),
                )
                .await;
            }
            let configs = admin.topic_configs(name).await.map_err(Error::Kafka)?;
            let managed_before: Vec<String> = st.config.keys().cloned().collect();
            let changes = match plan::plan_changes(&kt.spec, &t, &configs, &managed_before) {
                Ok(c) => c,
                Err(r) => return not_ready(ctx, kt, r.reason, r.message, None).await,
            };
            if (!changes.set.is_empty() || !changes.delete.is_empty())
                && let Err(e) = admin
                    .alter_topic_config(name, &changes.set, &changes.delete, true)
                    .await
            {
                if e.is_refusal() {
                    return not_ready(ctx, kt, "InvalidConfig", e.to_string(), None).await;
                }
                return Err(Error::Kafka(e));
            }
            if let Some(p) = changes.partitions {
                admin
                    .create_partitions(name, p)
                    .await
                    .map_err(Error::Kafka)?;
                event(
                    ctx,
                    kt,
                    EventType::Normal,
                    "PartitionsIncreased",
                    format!("topic {name}: {} → {p} partitions", t.partitions),
                )
                .await;
            }
            if !changes.set.is_empty() || !changes.delete.is_empty() {
                admin
                    .alter_topic_config(name, &changes.set, &changes.delete, false)
                    .await
                    .map_err(Error::Kafka)?;
                let mut what: Vec<String> =
                    changes.set.keys().map(|k| format!("{k} set")).collect();
                what.extend(
                    changes
                        .delete
                        .iter()
                        .map(|k| format!("{k} back to the default")),
                );
                event(
                    ctx,
                    kt,
                    EventType::Normal,
                    "ConfigUpdated",
                    format!("topic {name}: {}", what.join(", ")),
                )
                .await;
            }
            if changes.is_empty() {
                t
            } else {
                admin
                    .describe_topic(name)
                    .await
                    .map_err(Error::Kafka)?
                    .1
                    .unwrap_or(t)
            }
        }
    };

    let configs = admin.topic_configs(name).await.map_err(Error::Kafka)?;
    st.observed_generation = kt.metadata.generation;
    st.managed = true;
    st.topic_id = Some(topic.id.clone());
    st.partitions = Some(topic.partitions);
    st.replication_factor = Some(topic.replication_factor);
    st.config = kt
        .spec
        .config
        .keys()
        .filter_map(|k| Some((k.clone(), configs.get(k)?.value.clone()?)))
        .collect();
    set_condition(
        &mut st.conditions,
        "Ready",
        true,
        "TopicReady",
        &format!("topic {name} matches the spec"),
        kt.metadata.generation,
        &now(),
    );
    patch_status(ctx, kt, st).await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

async fn cleanup(kt: &KafkaTopic, ctx: &Context) -> Result<Action, Error> {
    let name = &kt.spec.name;
    let managed = kt
        .status
        .as_ref()
        .is_some_and(|s| s.managed || s.topic_id.is_some());
    if kt.spec.deletion_policy != Some(TopicDeletionPolicy::Delete) || !managed {
        info!(topic = %name, "Resource deleted; the Kafka topic is kept");
        return Ok(Action::await_change());
    }
    let Some(bootstrap) = referenced_cluster(kt, ctx)
        .await?
        .1
        .as_ref()
        .and_then(bootstrap_servers)
    else {
        warn!(topic = %name, "The KafkaCluster is gone; nothing to delete the topic from");
        return Ok(Action::await_change());
    };
    let admin = ctx.admins.get(&bootstrap).map_err(Error::Kafka)?;
    admin.delete_topic(name).await.map_err(Error::Kafka)?;
    info!(topic = %name, "Deleted the Kafka topic (deletionPolicy: Delete)");
    Ok(Action::await_change())
}
