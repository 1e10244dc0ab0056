//! Topic requests from many concurrent reconciles, gathered into batched admin requests
//! over one kept-open connection: a batch closes when it holds [`MAX_BATCH`] requests
//! or [`LINGER`] after its first one (the numbers Strimzi's topic operator uses), and
//! becomes one Metadata, one CreateTopics and one DescribeConfigs request. Kafka
//! answers each topic on its own, so one failing topic never holds back the others;
//! only a failed exchange fails the whole batch (and it is retried by the reconciles).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use stoker_kafka::{
    Connection,
    kafka_protocol::{
        ResponseError,
        messages::{
            CreateTopicsRequest, DescribeConfigsRequest, MetadataRequest, MetadataResponse,
            TopicName,
            create_topics_request::{CreatableTopic, CreatableTopicConfig},
            describe_configs_request::DescribeConfigsResource,
            metadata_request::MetadataRequestTopic,
        },
        protocol::StrBytes,
    },
};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::{
    AdminError, ConfigValue, RESOURCE_TOPIC, SOURCE_DEFAULT, TIMEOUT, Target, TopicState,
    connect_any, refused,
};
use crate::controller::error_chain;

/// Most requests in one batch.
pub const MAX_BATCH: usize = 100;
/// How long a batch waits for more requests after its first.
pub const LINGER: Duration = Duration::from_millis(100);

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopicSpec {
    /// Name.
    pub name: String,
    /// Partitions (-1: the broker default).
    pub partitions: i32,
    /// Replication factor (-1: the broker default).
    pub replication_factor: i16,
    /// Topic configs.
    pub config: BTreeMap<String, String>,
}

/// A topic Kafka just created: what the CreateTopics response says it is.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatedTopic {
    /// Id, partitions and replication factor.
    pub state: TopicState,
    /// Its configs with their sources.
    pub configs: BTreeMap<String, ConfigValue>,
}

type Reply<T> = oneshot::Sender<Result<T, AdminError>>;

enum Job {
    Describe {
        name: String,
        reply: Reply<(usize, Option<TopicState>)>,
    },
    Create {
        topic: NewTopicSpec,
        reply: Reply<CreatedTopic>,
    },
    Configs {
        name: String,
        reply: Reply<BTreeMap<String, ConfigValue>>,
    },
}

/// The handle reconciles send their requests through.
#[derive(Debug, Clone)]
pub(super) struct Batcher {
    tx: mpsc::Sender<Job>,
}

fn gone() -> AdminError {
    AdminError::Failed {
        operation: "batch topic requests",
        message: "the batcher stopped".into(),
    }
}

impl Batcher {
    /// Starts the batching task of the cluster at `bootstrap` (it ends when the last
    /// handle is dropped).
    pub(super) fn start(target: Arc<Target>) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(target, rx));
        Self { tx }
    }

    async fn ask<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, AdminError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(job(reply)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    pub(super) async fn describe(
        &self,
        name: &str,
    ) -> Result<(usize, Option<TopicState>), AdminError> {
        let name = name.to_owned();
        self.ask(|reply| Job::Describe { name, reply }).await
    }

    pub(super) async fn create(&self, topic: NewTopicSpec) -> Result<CreatedTopic, AdminError> {
        self.ask(|reply| Job::Create { topic, reply }).await
    }

    pub(super) async fn configs(
        &self,
        name: &str,
    ) -> Result<BTreeMap<String, ConfigValue>, AdminError> {
        let name = name.to_owned();
        self.ask(|reply| Job::Configs { name, reply }).await
    }
}

async fn run(target: Arc<Target>, mut rx: mpsc::Receiver<Job>) {
    let mut conn: Option<Connection> = None;
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let deadline = tokio::time::Instant::now() + LINGER;
        while jobs.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(j)) => jobs.push(j),
                Ok(None) | Err(_) => break,
            }
        }
        let mut describes = Vec::new();
        let mut creates = Vec::new();
        let mut configs = Vec::new();
        for j in jobs {
            match j {
                Job::Describe { name, reply } => describes.push((name, reply)),
                Job::Create { topic, reply } => creates.push((topic, reply)),
                Job::Configs { name, reply } => configs.push((name, reply)),
            }
        }
        debug!(
            describes = describes.len(),
            creates = creates.len(),
            configs = configs.len(),
            "Topic batch"
        );
        if !describes.is_empty() {
            with_connection(&target, &mut conn, describes, metadata).await;
        }
        if !creates.is_empty() {
            with_connection(&target, &mut conn, creates, create_topics).await;
        }
        if !configs.is_empty() {
            with_connection(&target, &mut conn, configs, describe_configs).await;
        }
    }
}

/// Runs one batched exchange on the kept connection (opening it when needed); a failed
/// exchange drops the connection and fails every request of the batch.
async fn with_connection<I, T>(
    target: &Target,
    conn: &mut Option<Connection>,
    batch: Vec<(I, Reply<T>)>,
    exchange: impl AsyncFnOnce(&mut Connection, &[I]) -> Result<Vec<Result<T, AdminError>>, AdminError>,
) {
    if conn.is_none() {
        match connect_any(target).await {
            Ok(c) => *conn = Some(c),
            Err(e) => return fail_all(batch, &e),
        }
    }
    let Some(c) = conn.as_mut() else { return };
    let (inputs, replies): (Vec<I>, Vec<Reply<T>>) = batch.into_iter().unzip();
    match exchange(c, &inputs).await {
        Ok(results) => {
            for (reply, r) in replies.into_iter().zip(results) {
                let _ = reply.send(r);
            }
        }
        Err(e) => {
            *conn = None;
            let message = error_chain(&e);
            for reply in replies {
                let _ = reply.send(Err(AdminError::Failed {
                    operation: "exchange a batch of topic requests",
                    message: message.clone(),
                }));
            }
        }
    }
}

fn fail_all<I, T>(batch: Vec<(I, Reply<T>)>, e: &AdminError) {
    let message = error_chain(e);
    for (_, reply) in batch {
        let _ = reply.send(Err(AdminError::Failed {
            operation: "connect to Kafka",
            message: message.clone(),
        }));
    }
}

fn wire(operation: &'static str) -> impl FnOnce(stoker_kafka::WireError) -> AdminError {
    move |source| AdminError::Wire { operation, source }
}

fn topic_state(md: &MetadataResponse, name: &str) -> Result<Option<TopicState>, AdminError> {
    let Some(t) = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == name))
    else {
        return Ok(None);
    };
    if ResponseError::try_from_code(t.error_code) == Some(ResponseError::UnknownTopicOrPartition) {
        return Ok(None);
    }
    if let Some(e) = refused("read topic metadata", t.error_code, None) {
        return Err(e);
    }
    let rf = t
        .partitions
        .iter()
        .find(|p| p.partition_index == 0)
        .map_or(0, |p| p.replica_nodes.len());
    Ok(Some(TopicState {
        id: t.topic_id.to_string(),
        partitions: i32::try_from(t.partitions.len()).unwrap_or(i32::MAX),
        replication_factor: i32::try_from(rf).unwrap_or(i32::MAX),
    }))
}

async fn metadata(
    conn: &mut Connection,
    names: &[String],
) -> Result<Vec<Result<(usize, Option<TopicState>), AdminError>>, AdminError> {
    let req = MetadataRequest::default().with_topics(Some(
        names
            .iter()
            .map(|n| {
                MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(n.clone()))))
            })
            .collect(),
    ));
    let md = conn
        .send("Metadata", &req, 12)
        .await
        .map_err(wire("read topic metadata"))?;
    let brokers = md.brokers.len();
    Ok(names
        .iter()
        .map(|n| topic_state(&md, n).map(|t| (brokers, t)))
        .collect())
}

async fn create_topics(
    conn: &mut Connection,
    topics: &[NewTopicSpec],
) -> Result<Vec<Result<CreatedTopic, AdminError>>, AdminError> {
    let req = CreateTopicsRequest::default()
        .with_topics(
            topics
                .iter()
                .map(|t| {
                    CreatableTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t.name.clone())))
                        .with_num_partitions(t.partitions)
                        .with_replication_factor(t.replication_factor)
                        .with_configs(
                            t.config
                                .iter()
                                .map(|(k, v)| {
                                    CreatableTopicConfig::default()
                                        .with_name(StrBytes::from_string(k.clone()))
                                        .with_value(Some(StrBytes::from_string(v.clone())))
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
        .with_timeout_ms(i32::try_from(TIMEOUT.as_millis()).unwrap_or(i32::MAX))
        .with_validate_only(false);
    let resp = conn
        .send("CreateTopics", &req, 7)
        .await
        .map_err(wire("create topics"))?;
    Ok(topics
        .iter()
        .map(|t| {
            let r = resp
                .topics
                .iter()
                .find(|r| r.name.as_str() == t.name)
                .ok_or(AdminError::NoAnswer {
                    operation: "create the topic",
                })?;
            if ResponseError::try_from_code(r.error_code) == Some(ResponseError::TopicAlreadyExists)
            {
                return Err(AdminError::TopicExists);
            }
            if let Some(e) = refused("create the topic", r.error_code, r.error_message.clone()) {
                return Err(e);
            }
            Ok(CreatedTopic {
                state: TopicState {
                    id: r.topic_id.to_string(),
                    partitions: r.num_partitions,
                    replication_factor: i32::from(r.replication_factor),
                },
                configs: r
                    .configs
                    .iter()
                    .flatten()
                    .map(|c| {
                        (
                            c.name.to_string(),
                            ConfigValue {
                                value: c.value.as_ref().map(ToString::to_string),
                                is_default: c.config_source == SOURCE_DEFAULT,
                            },
                        )
                    })
                    .collect(),
            })
        })
        .collect())
}

async fn describe_configs(
    conn: &mut Connection,
    names: &[String],
) -> Result<Vec<Result<BTreeMap<String, ConfigValue>, AdminError>>, AdminError> {
    let req = DescribeConfigsRequest::default().with_resources(
        names
            .iter()
            .map(|n| {
                DescribeConfigsResource::default()
                    .with_resource_type(RESOURCE_TOPIC)
                    .with_resource_name(StrBytes::from_string(n.clone()))
                    .with_configuration_keys(None)
            })
            .collect(),
    );
    let resp = conn
        .send("DescribeConfigs", &req, 4)
        .await
        .map_err(wire("describe topic configs"))?;
    Ok(names
        .iter()
        .map(|n| {
            let r = resp
                .results
                .iter()
                .find(|r| r.resource_name.as_str() == n)
                .ok_or(AdminError::NoAnswer {
                    operation: "describe topic configs",
                })?;
            if let Some(e) = refused(
                "describe topic configs",
                r.error_code,
                r.error_message.clone(),
            ) {
                return Err(e);
            }
            Ok(r.configs
                .iter()
                .map(|c| {
                    (
                        c.name.to_string(),
                        ConfigValue {
                            value: c.value.as_ref().map(ToString::to_string),
                            is_default: c.config_source == SOURCE_DEFAULT,
                        },
                    )
                })
                .collect())
        })
        .collect())
}
