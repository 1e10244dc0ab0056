//! What the agent asks its own broker: the cluster snapshot behind readiness,
//! safe-to-stop and the broker-fact metrics; the broker's configs and their
//! dynamic-ness; incremental config changes; the KRaft quorum's state.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use kafka_protocol::{
    ResponseError,
    messages::{
        DescribeClusterRequest, DescribeConfigsRequest, DescribeLogDirsRequest,
        DescribeQuorumRequest, IncrementalAlterConfigsRequest, MetadataRequest, TopicName,
        describe_configs_request::DescribeConfigsResource,
        describe_quorum_request::{PartitionData, TopicData},
        incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig},
    },
    protocol::StrBytes,
};

use super::wire::{Connection, WireError};
use crate::safety::{MinIsr, PartitionView, VoterView};

const METADATA_VERSION: i16 = 12;
const DESCRIBE_CONFIGS_VERSION: i16 = 4;
const INCREMENTAL_ALTER_CONFIGS_VERSION: i16 = 1;
const DESCRIBE_QUORUM_VERSION: i16 = 1;
/// DescribeCluster v1 takes an endpoint type: 2 asks a controller for the controllers.
const DESCRIBE_CLUSTER_VERSION: i16 = 1;
const ENDPOINT_CONTROLLERS: i8 = 2;
const DESCRIBE_LOG_DIRS_VERSION: i16 = 4;
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

/// A failed admin call.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The exchange itself failed.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The TLS settings for the broker could not be made from the mounted Secret.
    #[error("failed to set up TLS to the broker from {dir}: {message}")]
    Tls {
        /// The Secret's folder.
        dir: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The broker answered with an error.
    #[error("the broker refused {api}: {error}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Refused {
        /// The API.
        api: &'static str,
        /// Kafka's error.
        error: ResponseError,
        /// Kafka's message, if any.
        message: Option<String>,
    },
}

/// The cluster as this broker sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Ids of the live (registered, unfenced) brokers.
    pub brokers: Vec<i32>,
    /// The controller id clients are told.
    pub controller_id: i32,
    /// Every partition, with its topic's min.insync.replicas.
    pub partitions: Vec<PartitionView>,
    /// Leader of each partition, in the order of `partitions`.
    pub leaders: Vec<i32>,
    /// Offline replicas of each partition, in the order of `partitions`.
    pub offline_replicas: Vec<Vec<i32>>,
    /// What the snapshot could not read (a topic whose metadata carried an error), in
    /// words: the safety rule treats any of it as unsafe.
    pub unreadable: Vec<String>,
}

impl Snapshot {
    /// Partitions whose leader is `broker`.
    pub fn partitions_led_by(&self, broker: i32) -> usize {
        self.leaders.iter().filter(|l| **l == broker).count()
    }

    /// Partitions `broker` replicates whose ISR is smaller than their replica set.
    pub fn under_replicated_of(&self, broker: i32) -> usize {
        self.partitions
            .iter()
            .filter(|p| p.replicas.contains(&broker) && p.isr.len() < p.replicas.len())
            .count()
    }

    /// Replicas `broker` hosts that are not in their partition's ISR.
    pub fn out_of_sync_of(&self, broker: i32) -> usize {
        self.partitions
            .iter()
            .filter(|p| p.replicas.contains(&broker) && !p.isr.contains(&broker))
            .count()
    }

    /// Partitions `broker` replicates that have no leader.
    pub fn offline_of(&self, broker: i32) -> usize {
        self.partitions
            .iter()
            .zip(&self.leaders)
            .filter(|(p, leader)| p.replicas.contains(&broker) && **leader < 0)
            .count()
    }
}

/// One log dir of the broker and the replicas in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDir {
    /// Its path.
    pub path: String,
    /// Its replicas, as (topic, partition).
    pub partitions: Vec<(String, i32)>,
}

/// One entry of a broker's config, as DescribeConfigs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The value (None for sensitive or unset).
    pub value: Option<String>,
    /// True when the key cannot be changed without a restart.
    pub read_only: bool,
}

/// The KRaft quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quorum {
    /// Current leader id.
    pub leader: i32,
    /// Every voter.
    pub voters: Vec<VoterView>,
}

/// How the agent reaches a listener that speaks TLS between nodes: it presents its
/// broker's own certificate (the node's identity) and trusts the cluster's CA, both
/// read from the mounted Secret at every connection, so a renewed certificate is used
/// at once.
#[derive(Debug, Clone)]
pub struct NodeTls {
    /// The mounted Secret's folder (`tls.crt`, `tls.key`, `ca.crt`).
    pub dir: PathBuf,
    /// The name the broker's certificate carries (its advertised host).
    pub server_name: String,
}

impl NodeTls {
    async fn client(&self, server_name: &str) -> Result<stoker_kafka::TlsClient, KafkaError> {
        use crate::tls_store::{CA_FILE, CERT_FILE, KEY_FILE};
        let failed = |message: String| KafkaError::Tls {
            dir: self.dir.clone(),
            message,
        };
        let read = |file: &'static str| {
            let path = self.dir.join(file);
            async move {
                tokio::fs::read(&path)
                    .await
                    .map_err(|e| format!("failed to read {}: {e}", path.display()))
            }
        };
        let (cert, key, ca) = (
            read(CERT_FILE).await.map_err(failed)?,
            read(KEY_FILE).await.map_err(failed)?,
            read(CA_FILE).await.map_err(failed)?,
        );
        stoker_kafka::TlsClient::new(
            &ca,
            Some(stoker_kafka::ClientIdentity {
                cert: &cert,
                key: &key,
            }),
            server_name,
        )
        .map_err(|e| failed(e.to_string()))
    }
}

/// A client of the agent's own broker (or controller).
#[derive(Debug, Clone)]
pub struct BrokerClient {
    addr: String,
    timeout: Duration,
    tls: Option<NodeTls>,
}

impl BrokerClient {
    /// A client of the broker at `addr` (host:port of its internal listener), over TLS
    /// when `tls` is given.
    pub fn new(addr: String, timeout: Duration, tls: Option<NodeTls>) -> Self {
        Self { addr, timeout, tls }
    }

    /// The address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    async fn connect(&self) -> Result<Connection, KafkaError> {
        let name = self.tls.as_ref().map(|t| t.server_name.clone());
        self.connect_to(&self.addr, name.as_deref()).await
    }

    /// A connection to `addr`, over TLS checking `server_name` when this client speaks
    /// TLS.
    async fn connect_to(
        &self,
        addr: &str,
        server_name: Option<&str>,
    ) -> Result<Connection, KafkaError> {
        let tls = match &self.tls {
            Some(t) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                Some(t.client(server_name.unwrap_or(host)).await?)
            }
            None => None,
        };
        Ok(Connection::connect_with(addr, self.timeout, tls.as_ref()).await?)
    }

    /// Metadata of every topic, plus each topic's effective min.insync.replicas.
    pub async fn snapshot(&self) -> Result<Snapshot, KafkaError> {
        let mut conn = self.connect().await?;
        let md = conn
            .send(
                "Metadata",
                &MetadataRequest::default().with_topics(None),
                METADATA_VERSION,
            )
            .await?;
        let mut snap = Snapshot {
            brokers: md.brokers.iter().map(|b| b.node_id.0).collect(),
            controller_id: md.controller_id.0,
            ..Snapshot::default()
        };
        snap.brokers.sort_unstable();
        let topics: Vec<String> = md
            .topics
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
            .collect();
        let min_isr = self.topic_min_isr(&mut conn, &topics).await?;
        for t in &md.topics {
            let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else {
                continue;
            };
            // A topic-level error means its partitions are not known for sure.
            if let Some(error) = ResponseError::try_from_code(t.error_code) {
                snap.unreadable
                    .push(format!("the partitions of topic {name} ({error})"));
                continue;
            }
            let topic_min_isr = min_isr.get(&name).cloned().unwrap_or_else(|| {
                MinIsr::Unknown("not in the broker's DescribeConfigs answer".into())
            });
            for p in &t.partitions {
                snap.partitions.push(PartitionView {
                    topic: name.clone(),
                    partition: p.partition_index,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    min_isr: topic_min_isr.clone(),
                });
                snap.leaders.push(p.leader_id.0);
                snap.offline_replicas
                    .push(p.offline_replicas.iter().map(|b| b.0).collect());
            }
        }
        Ok(snap)
    }

    /// Each topic's effective min.insync.replicas, or why it could not be read (never
    /// a default in its place: an unreadable config is an unknown, not a 1).
    async fn topic_min_isr(
        &self,
        conn: &mut Connection,
        topics: &[String],
    ) -> Result<BTreeMap<String, MinIsr>, KafkaError> {
        let mut out = BTreeMap::new();
        // One request per 500 topics keeps each response small.
        for chunk in topics.chunks(500) {
            let resources = chunk
                .iter()
                .map(|t| {
                    DescribeConfigsResource::default()
                        .with_resource_type(RESOURCE_TOPIC)
                        .with_resource_name(StrBytes::from_string(t.clone()))
                        .with_configuration_keys(Some(vec![StrBytes::from_static_str(
                            "min.insync.replicas",
                        )]))
                })
                .collect();
            let resp = conn
                .send(
                    "DescribeConfigs",
                    &DescribeConfigsRequest::default().with_resources(resources),
                    DESCRIBE_CONFIGS_VERSION,
                )
                .await?;
            for r in resp.results {
                let value = if let Some(error) = ResponseError::try_from_code(r.error_code) {
                    MinIsr::Unknown(match r.error_message {
                        Some(m) => format!("{error}: {m}"),
                        None => error.to_string(),
                    })
                } else {
                    match r
                        .configs
                        .iter()
                        .find(|c| c.name.as_str() == "min.insync.replicas")
                        .map(|c| c.value.as_ref().map(|v| v.as_str().parse::<i32>()))
                    {
                        Some(Some(Ok(n))) => MinIsr::Known(n),
                        Some(Some(Err(_))) => MinIsr::Unknown("its value is not a number".into()),
                        Some(None) => MinIsr::Unknown("the broker gave no value".into()),
                        None => MinIsr::Unknown("the broker did not return it".into()),
                    }
                };
                out.insert(r.resource_name.to_string(), value);
            }
        }
        Ok(out)
    }

    /// The replicas in each of the broker's log dirs (DescribeLogDirs on the broker
    /// itself). A log dir the broker reports offline is an error: what it holds cannot
    /// be listed.
    pub async fn log_dirs(&self) -> Result<Vec<LogDir>, KafkaError> {
        let mut conn = self.connect().await?;
        let resp = conn
            .send(
                "DescribeLogDirs",
                &DescribeLogDirsRequest::default().with_topics(None),
                DESCRIBE_LOG_DIRS_VERSION,
            )
            .await?;
        if let Some(error) = ResponseError::try_from_code(resp.error_code) {
            return Err(KafkaError::Refused {
                api: "DescribeLogDirs",
                error,
                message: None,
            });
        }
        let mut dirs = Vec::new();
        for dir in resp.results {
            if let Some(error) = ResponseError::try_from_code(dir.error_code) {
                return Err(KafkaError::Refused {
                    api: "DescribeLogDirs",
                    error,
                    message: Some(format!("log dir {}", dir.log_dir.as_str())),
                });
            }
            let mut partitions = Vec::new();
            for t in dir.topics {
                let topic = t.name.0.to_string();
                partitions.extend(
                    t.partitions
                        .iter()
                        .map(|p| (topic.clone(), p.partition_index)),
                );
            }
            dirs.push(LogDir {
                path: dir.log_dir.to_string(),
                partitions,
            });
        }
        Ok(dirs)
    }

    /// Every config of broker `id` with whether it is read-only (static).
    pub async fn broker_configs(
        &self,
        id: i32,
    ) -> Result<BTreeMap<String, ConfigEntry>, KafkaError> {
        let mut conn = self.connect().await?;
        let resource = DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_BROKER)
            .with_resource_name(StrBytes::from_string(id.to_string()))
            .with_configuration_keys(None);
        let resp = conn
            .send(
                "DescribeConfigs",
                &DescribeConfigsRequest::default().with_resources(vec![resource]),
                DESCRIBE_CONFIGS_VERSION,
            )
            .await?;
        let mut out = BTreeMap::new();
        for r in resp.results {
            if let Some(error) = ResponseError::try_from_code(r.error_code) {
                return Err(KafkaError::Refused {
                    api: "DescribeConfigs",
                    error,
                    message: r.error_message.map(|m| m.to_string()),
                });
            }
            for c in r.configs {
                out.insert(
                    c.name.to_string(),
                    ConfigEntry {
                        value: c.value.map(|v| v.to_string()),
                        read_only: c.read_only,
                    },
                );
            }
        }
        Ok(out)
    }

    /// Sets and deletes per-broker dynamic configs of broker `id` with one
    /// IncrementalAlterConfigs request (never the non-incremental AlterConfigs, which
    /// would wipe every key not named). `validate_only` asks the broker to check only.
    pub async fn incremental_alter(
        &self,
        id: i32,
        set: &BTreeMap<String, String>,
        delete: &[String],
        validate_only: bool,
    ) -> Result<(), KafkaError> {
        let mut configs: Vec<AlterableConfig> = set
            .iter()
            .map(|(k, v)| {
                AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_config_operation(OP_SET)
                    .with_value(Some(StrBytes::from_string(v.clone())))
            })
            .collect();
        configs.extend(delete.iter().map(|k| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(k.clone()))
                .with_config_operation(OP_DELETE)
                .with_value(None)
        }));
        let resource = AlterConfigsResource::default()
            .with_resource_type(RESOURCE_BROKER)
            .with_resource_name(StrBytes::from_string(id.to_string()))
            .with_configs(configs);
        let mut conn = self.connect().await?;
        let resp = conn
            .send(
                "IncrementalAlterConfigs",
                &IncrementalAlterConfigsRequest::default()
                    .with_resources(vec![resource])
                    .with_validate_only(validate_only),
                INCREMENTAL_ALTER_CONFIGS_VERSION,
            )
            .await?;
        for r in resp.responses {
            if let Some(error) = ResponseError::try_from_code(r.error_code) {
                return Err(KafkaError::Refused {
                    api: "IncrementalAlterConfigs",
                    error,
                    message: r.error_message.map(|m| m.to_string()),
                });
            }
        }
        Ok(())
    }

    /// The metadata quorum's leader and voters (sent to a controller listener). Only the
    /// quorum's leader describes it; a controller that is not the leader says so, and
    /// the question goes to the active controller it names (DescribeCluster).
    pub async fn quorum(&self) -> Result<Quorum, KafkaError> {
        let mut conn = self.connect().await?;
        match describe_quorum(&mut conn).await? {
            Some(q) => Ok(q),
            None => {
                let leader = active_controller(&mut conn).await?;
                // The active controller is reached by its advertised name, which its
                // certificate carries.
                let mut conn = self.connect_to(&leader, None).await?;
                describe_quorum(&mut conn).await?.ok_or(KafkaError::Refused {
                    api: "DescribeQuorum",
                    error: ResponseError::NotLeaderOrFollower,
                    message: Some(format!(
                        "{leader}, named the active controller, is not the quorum's leader either"
                    )),
                })
            }
        }
    }
}

/// The quorum as the controller at `conn` describes it; `None` when it is not the
/// leader.
async fn describe_quorum(conn: &mut Connection) -> Result<Option<Quorum>, KafkaError> {
    let req = DescribeQuorumRequest::default().with_topics(vec![
        TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)]),
    ]);
    let resp = conn
        .send("DescribeQuorum", &req, DESCRIBE_QUORUM_VERSION)
        .await?;
    if let Some(error) = ResponseError::try_from_code(resp.error_code) {
        return Err(KafkaError::Refused {
            api: "DescribeQuorum",
            error,
            message: resp.error_message.map(|m| m.to_string()),
        });
    }
    let p = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or(KafkaError::Refused {
            api: "DescribeQuorum",
            error: ResponseError::UnknownServerError,
            message: Some("no partition data".into()),
        })?;
    match ResponseError::try_from_code(p.error_code) {
        None => {}
        Some(ResponseError::NotLeaderOrFollower) => return Ok(None),
        Some(error) => {
            return Err(KafkaError::Refused {
                api: "DescribeQuorum",
                error,
                message: p.error_message.as_ref().map(|m| m.to_string()),
            });
        }
    }
    Ok(Some(Quorum {
        leader: p.leader_id.0,
        voters: p
            .current_voters
            .iter()
            .map(|v| VoterView {
                id: v.replica_id.0,
                last_caught_up_ms: v.last_caught_up_timestamp,
            })
            .collect(),
    }))
}

/// The active controller's address, as the controller at `conn` knows it.
async fn active_controller(conn: &mut Connection) -> Result<String, KafkaError> {
    let resp = conn
        .send(
            "DescribeCluster",
            &DescribeClusterRequest::default().with_endpoint_type(ENDPOINT_CONTROLLERS),
            DESCRIBE_CLUSTER_VERSION,
        )
        .await?;
    if let Some(error) = ResponseError::try_from_code(resp.error_code) {
        return Err(KafkaError::Refused {
            api: "DescribeCluster",
            error,
            message: resp.error_message.map(|m| m.to_string()),
        });
    }
    resp.brokers
        .iter()
        .find(|c| c.broker_id == resp.controller_id)
        .map(|c| format!("{}:{}", c.host, c.port))
        .ok_or_else(|| KafkaError::Refused {
            api: "DescribeCluster",
            error: ResponseError::NotController,
            message: Some(format!(
                "the active controller {} is not among the controllers listed",
                resp.controller_id.0
            )),
        })
}
