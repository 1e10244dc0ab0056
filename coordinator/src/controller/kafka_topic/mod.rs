//! The `KafkaTopic` controller: the seed's semantics (create when missing; while the
//! cluster has fewer brokers than the replication factor, keep retrying and say so;
//! by default keep the Kafka topic when the resource goes) plus growing partitions,
//! correcting config drift key by key with incremental AlterConfigs, adopting an
//! existing topic only when annotated, refusing what Kafka cannot do, and marking the
//! later of two resources that name the same topic.

pub mod plan;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use super::{
    ReconcileError, cluster_ref,
    conditions::{READY, now, set_condition},
    error_chain, object_key, resource_status,
    resource_status::Note,
};
use futures::StreamExt;
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument, warn};

use crate::{
    context::Context,
    crd::v1alpha1::{
        ADOPT_ANNOTATION, KafkaCluster, KafkaTopic, KafkaTopicStatus, TopicDeletionPolicy,
    },
    kafka_admin::{AdminError, ConfigValue, NewTopicSpec, TopicState, batch::MAX_BATCH},
};

/// The controller's name.
pub const CONTROLLER_NAME: &str = "kafkatopic";
/// The annotation `kubectl apply` keeps a copy of the whole object in.
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// How often a ready topic is compared with Kafka again (drift is corrected within it).
const RESYNC: Duration = Duration::from_secs(300);
/// The finalizer that deletes the Kafka topic under `deletionPolicy: Delete`.
pub const KAFKA_TOPIC_FINALIZER: &str = "kafkatopics.kafka.stoker.io/cleanup";
/// What a topic reconcile reads besides the shared [`Context`].
pub struct State {
    /// What every controller shares.
    pub ctx: Arc<Context>,
    /// Every KafkaTopic (to find two naming the same topic).
    pub topics: Store<KafkaTopic>,
    /// Every KafkaCluster (a burst of topics reads its cluster from here, not with a
    /// GET each).
    pub clusters: Store<KafkaCluster>,
}

impl std::ops::Deref for State {
    type Target = Context;
    fn deref(&self) -> &Context {
        &self.ctx
    }
}

/// A failed reconcile (transient: it is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes call failed.
    #[error("failed to {0}")]
    Kube(&'static str, #[source] kube::Error),
    /// Kafka could not be reached or answered with a transient error.
    #[error("failed to talk to Kafka")]
    Kafka(#[source] AdminError),
}

impl ReconcileError for Error {
    fn category(&self) -> &'static str {
        match self {
            Self::Kube(..) => "kubernetes",
            Self::Kafka(_) => "kafka",
        }
    }
}

/// Runs the controller until `shutdown` is cancelled.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let topics: Api<KafkaTopic> = Api::all(client.clone());
    let (store, writer) = reflector::store();
    // The cache keeps what the controller reads: managed fields and kubectl's
    // last-applied copy of the whole object are dropped before they are stored.
    let trigger = watcher(topics, watcher::Config::default())
        .default_backoff()
        .modify(slim)
        .reflect(writer)
        .applied_objects();
    let (clusters, cluster_writer) = reflector::store();
    let cluster_watch = tokio::spawn(
        watcher(
            Api::<KafkaCluster>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .modify(|kc| kc.metadata.managed_fields = None)
        .reflect(cluster_writer)
        .for_each(|_| futures::future::ready(())),
    );
    // No topic is reconciled against an empty cluster cache (it would read as missing).
    tokio::select! {
        ready = clusters.wait_until_ready() => {
            if ready.is_err() {
                warn!("The KafkaCluster cache stopped before it was filled");
                return;
            }
        }
        () = shutdown.cancelled() => {
            cluster_watch.abort();
            return;
        }
    }
    let controller = Controller::for_stream(trigger, store.clone())
        .graceful_shutdown_on(shutdown.cancelled_owned());
    let state = Arc::new(State {
        ctx,
        topics: store,
        clusters,
    });
    controller
        // As many reconciles at once as one admin batch holds, so a burst of resources
        // fills whole batches.
        .with_config(
            kube::runtime::controller::Config::default()
                .concurrency(u16::try_from(MAX_BATCH).unwrap_or(u16::MAX)),
        )
        .run(reconcile, error_policy, state)
        .for_each(|res| async move {
            if let Err(e) = res {
                warn!(error = %e, "Topic reconcile failed");
            }
        })
        .await;
    cluster_watch.abort();
}

/// Drops what a cached KafkaTopic never needs (they are most of a small object's bytes).
pub fn slim(kt: &mut KafkaTopic) {
    kt.metadata.managed_fields = None;
    if let Some(a) = kt.metadata.annotations.as_mut() {
        a.remove(LAST_APPLIED_ANNOTATION);
    }
}

/// Reconciles one KafkaTopic. Only a topic with `deletionPolicy: Delete` carries the
/// finalizer (deleting the resource must wait for the Kafka topic to go); under the
/// default `Retain` nothing has to happen on delete, so no finalizer can ever hold a
/// resource up, and a burst of new topics costs one API write fewer each.
#[instrument(skip(kt, ctx), fields(name = %kt.name_any(), namespace = kt.namespace().unwrap_or_default()))]
pub async fn reconcile(kt: Arc<KafkaTopic>, ctx: Arc<State>) -> Result<Action, Error> {
    let _timer = ctx.metrics.kafka_topic.reconcile_started();
    let result = reconcile_topic(&kt, &ctx).await;
    match &result {
        Ok(_) => ctx.backoff.succeeded(&object_key(kt.as_ref())),
        // A failure Kafka reported is also said in the status, so `kubectl get` shows
        // why the topic waits; the reconcile is retried with backoff.
        Err(Error::Kafka(e)) => {
            let message = format!("failed to talk to Kafka: {}; retrying", error_chain(e));
            let reason = if e.is_authorization() {
                "NotAuthorized"
            } else {
                "KafkaUnavailable"
            };
            if let Err(e) =
                resource_status::not_ready(&ctx.client, &ctx.recorder, kt.as_ref(), reason, message)
                    .await
            {
                warn!(error = %error_chain(&e), "Failed to record the Kafka error in status");
            }
        }
        Err(Error::Kube(..)) => {}
    }
    result
}

async fn reconcile_topic(kt: &Arc<KafkaTopic>, ctx: &State) -> Result<Action, Error> {
    let api: Api<KafkaTopic> =
        Api::namespaced(ctx.client.clone(), &kt.namespace().unwrap_or_default());
    let has_finalizer = kt.finalizers().iter().any(|f| f == KAFKA_TOPIC_FINALIZER);
    if kt.meta().deletion_timestamp.is_some() {
        if has_finalizer {
            cleanup(kt, ctx).await?;
            set_finalizer(&api, kt, false).await?;
        }
        return Ok(Action::await_change());
    }
    let wants_finalizer = kt.spec.deletion_policy == Some(TopicDeletionPolicy::Delete);
    if wants_finalizer != has_finalizer {
        // The patch is a change of the object: its watch event brings the next pass.
        set_finalizer(&api, kt, wants_finalizer).await?;
        return Ok(Action::await_change());
    }
    apply(kt, ctx).await
}

/// Adds or removes the finalizer, conditional on the resource version read (a
/// concurrent change makes it fail and the reconcile run again on fresh data).
async fn set_finalizer(api: &Api<KafkaTopic>, kt: &KafkaTopic, present: bool) -> Result<(), Error> {
    let mut finalizers: Vec<String> = kt
        .finalizers()
        .iter()
        .filter(|f| *f != KAFKA_TOPIC_FINALIZER)
        .cloned()
        .collect();
    if present {
        finalizers.push(KAFKA_TOPIC_FINALIZER.to_owned());
    }
    let patch = serde_json::json!({"metadata": {
        "resourceVersion": kt.resource_version(),
        "finalizers": finalizers,
    }});
    api.patch(
        &kt.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|e| Error::Kube("update the topic's finalizer", e))?;
    Ok(())
}

/// Retries transient failures with the topic's backoff.
pub fn error_policy(kt: Arc<KafkaTopic>, error: &Error, ctx: Arc<State>) -> Action {
    super::retry_after(kt.as_ref(), error, &ctx.metrics.kafka_topic, &ctx.backoff)
}

async fn event(ctx: &Context, kt: &KafkaTopic, reason: &str, note: String) {
    resource_status::publish(&ctx.recorder, kt, Note::normal(reason, "Reconciling", note)).await;
}

async fn patch_status(
    ctx: &Context,
    kt: &KafkaTopic,
    status: KafkaTopicStatus,
) -> Result<(), Error> {
    resource_status::patch(&ctx.client, kt, status)
        .await
        .map_err(|e| Error::Kube("patch the topic's status", e))
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
    resource_status::not_ready(&ctx.client, &ctx.recorder, kt, reason, message)
        .await
        .map_err(|e| Error::Kube("patch the topic's status", e))?;
    Ok(retry.map_or_else(Action::await_change, Action::requeue))
}

/// True when `other` claimed the same cluster and topic name before `kt` did (the earlier
/// resource keeps the topic; the later one is marked with the conflict).
fn claimed_earlier(kt: &KafkaTopic, other: &KafkaTopic) -> bool {
    let key = |t: &KafkaTopic| (t.metadata.creation_timestamp.clone().map(|c| c.0), t.uid());
    other.uid() != kt.uid()
        && other.meta().deletion_timestamp.is_none()
        && other.spec.name == kt.spec.name
        && other.spec.cluster_ref.name == kt.spec.cluster_ref.name
        && cluster_ref::cluster_namespace(&other.spec.cluster_ref, other.namespace())
            == cluster_ref::cluster_namespace(&kt.spec.cluster_ref, kt.namespace())
        && key(other) < key(kt)
}

/// The earlier KafkaTopic for the same cluster and topic name, if this one is later.
/// Searched in place: a copy of the whole cache per reconcile (100 at once in a burst)
/// was most of the coordinator's heap with 10,000 topics.
fn conflicting(kt: &KafkaTopic, all: &Store<KafkaTopic>) -> Option<String> {
    all.find(|o| claimed_earlier(kt, o))
        .map(|o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()))
}

/// The namespace of the topic's `clusterRef` and the KafkaCluster there, if it exists:
/// from the cache, or, when the cache has none (a cluster created a moment ago may not
/// be in it yet), from the API server.
async fn referenced_cluster(
    kt: &KafkaTopic,
    ctx: &State,
) -> Result<(String, Option<Arc<KafkaCluster>>), Error> {
    let ns = cluster_ref::cluster_namespace(&kt.spec.cluster_ref, kt.namespace());
    if let Some(cluster) = ctx
        .clusters
        .get(&ObjectRef::new(&kt.spec.cluster_ref.name).within(&ns))
    {
        return Ok((ns, Some(cluster)));
    }
    let (ns, cluster) =
        cluster_ref::referenced_cluster(&ctx.client, &kt.spec.cluster_ref, kt.namespace())
            .await
            .map_err(|e| Error::Kube("get the KafkaCluster", e))?;
    Ok((ns, cluster.map(Arc::new)))
}

async fn apply(kt: &KafkaTopic, ctx: &State) -> Result<Action, Error> {
    if let Err(r) = plan::validate(&kt.spec) {
        return not_ready(ctx, kt, r.reason, r.message, None).await;
    }
    if let Some(owner) = conflicting(kt, &ctx.topics) {
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
    let admin = match cluster_ref::admin(&ctx.client, &ctx.admins, &cluster)
        .await
        .map_err(|e| Error::Kube("read the KafkaCluster's CA Secret", e))?
    {
        cluster_ref::Access::Admin(a) => a,
        cluster_ref::Access::NotYet(message) => {
            return not_ready(
                ctx,
                kt,
                "ClusterNotReady",
                message,
                Some(Duration::from_secs(30)),
            )
            .await;
        }
    };
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
            let Ok(replication_factor) = i16::try_from(rf) else {
                return not_ready(
                    ctx,
                    kt,
                    "InvalidTopic",
                    format!("replicationFactor {rf} is larger than Kafka allows (32767)"),
                    None,
                )
                .await;
            };
            let spec = NewTopicSpec {
                name: name.clone(),
                partitions: kt.spec.partitions,
                replication_factor,
                config: kt.spec.config.clone(),
            };
            // Kafka checks the name, the counts and every config value of each topic
            // before creating it; a refused topic leaves nothing behind.
            let created = match admin.create_topic(spec).await {
                Ok(c) => c,
                // Created meanwhile, or not yet in the metadata we read: look again.
                Err(AdminError::TopicExists) => {
                    return Ok(Action::requeue(Duration::from_secs(1)));
                }
                Err(e) if !e.is_retriable() => {
                    return not_ready(ctx, kt, "InvalidTopic", e.to_string(), None).await;
                }
                Err(e) => return Err(Error::Kafka(e)),
            };
            info!(topic = %name, "Created topic");
            // The CreateTopics answer says what Kafka made: the topic is recorded as
            // managed and Ready in one write, before brokers replaying the metadata log
            // may even show it.
            ready(kt, &mut st, &created.state, &created.configs);
            patch_status(ctx, kt, st).await?;
            event(ctx, kt, "Created", format!("created topic {name}")).await;
            return Ok(Action::requeue(RESYNC));
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
                if !e.is_retriable() {
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
    ready(kt, &mut st, &topic, &configs);
    patch_status(ctx, kt, st).await?;
    Ok(Action::requeue(RESYNC))
}

/// Records what Kafka has and sets Ready=True.
fn ready(
    kt: &KafkaTopic,
    st: &mut KafkaTopicStatus,
    topic: &TopicState,
    configs: &BTreeMap<String, ConfigValue>,
) {
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
        READY,
        true,
        "TopicReady",
        &format!("topic {} matches the spec", kt.spec.name),
        kt.metadata.generation,
        &now(),
    );
}

async fn cleanup(kt: &KafkaTopic, ctx: &State) -> Result<Action, Error> {
    let name = &kt.spec.name;
    let managed = kt
        .status
        .as_ref()
        .is_some_and(|s| s.managed || s.topic_id.is_some());
    if kt.spec.deletion_policy != Some(TopicDeletionPolicy::Delete) || !managed {
        info!(topic = %name, "Resource deleted; the Kafka topic is kept");
        return Ok(Action::await_change());
    }
    let Some(cluster) = referenced_cluster(kt, ctx).await?.1 else {
        warn!(topic = %name, "The KafkaCluster is gone; nothing to delete the topic from");
        return Ok(Action::await_change());
    };
    let admin = match cluster_ref::admin(&ctx.client, &ctx.admins, &cluster)
        .await
        .map_err(|e| Error::Kube("read the KafkaCluster's CA Secret", e))?
    {
        cluster_ref::Access::Admin(a) => a,
        cluster_ref::Access::NotYet(message) => {
            warn!(topic = %name, %message, "Cannot reach the cluster to delete the topic yet");
            return Ok(Action::requeue(Duration::from_secs(30)));
        }
    };
    admin.delete_topic(name).await.map_err(Error::Kafka)?;
    info!(topic = %name, "Deleted the Kafka topic (deletionPolicy: Delete)");
    Ok(Action::await_change())
}
