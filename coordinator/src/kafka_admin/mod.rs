//! Kafka admin access for the controllers, in one place and exactly the operations
//! they need, all over the Kafka protocol through `stoker-kafka` (one client path, no
//! librdkafka in the coordinator): Metadata, CreateTopics and DescribeConfigs batched
//! across reconciles with topic ids and config sources ([`batch`]), CreatePartitions,
//! DeleteTopics, IncrementalAlterConfigs (never the non-incremental AlterConfigs, which
//! would wipe every key not named), ACLs ([`acls`]), SCRAM credentials and quotas
//! ([`users`]).

pub mod acls;
pub mod batch;
pub mod users;

pub use acls::AclBinding;
pub use batch::{CreatedTopic, NewTopicSpec};

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use stoker_kafka::{
    Connection, TlsClient, WireError,
    kafka_protocol::{
        ResponseError,
        messages::{
            CreatePartitionsRequest, DeleteTopicsRequest, IncrementalAlterConfigsRequest,
            TopicName,
            create_partitions_request::CreatePartitionsTopic,
            delete_topics_request::DeleteTopicState,
            incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig},
        },
        protocol::StrBytes,
    },
};

const TIMEOUT: Duration = Duration::from_secs(10);
/// How long the controller may take over a topic operation: under [`TIMEOUT`], so its
/// own `REQUEST_TIMED_OUT` (retriable) arrives before the connection gives up.
const OPERATION_TIMEOUT_MS: i32 = 8_000;
const RESOURCE_TOPIC: i8 = 2;
/// Kafka's `DEFAULT_CONFIG` config source.
const SOURCE_DEFAULT: i8 = 5;

/// A failed admin operation.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No broker of the bootstrap list answered.
    #[error("failed to reach any broker of {bootstrap}")]
    Unreachable {
        /// The bootstrap list.
        bootstrap: String,
        /// The last connection error.
        #[source]
        source: WireError,
    },
    /// An exchange failed.
    #[error("failed to {operation}")]
    Wire {
        /// What was being done.
        operation: &'static str,
        /// The cause.
        #[source]
        source: WireError,
    },
    /// Kafka refused the operation with one of its error codes (kept, so retriable
    /// ones are retried and permanent ones reported); the message is Kafka's.
    #[error("Kafka refused to {operation}: {error}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Refused {
        /// What was being done.
        operation: &'static str,
        /// Kafka's error code.
        error: ResponseError,
        /// Kafka's message.
        message: Option<String>,
    },
    /// Kafka answered without a result for the resource asked about.
    #[error("failed to {operation}: Kafka's answer did not mention the resource")]
    NoAnswer {
        /// What was being done.
        operation: &'static str,
    },
    /// The topic exists already (created meanwhile by someone else, or not yet visible
    /// in the metadata this coordinator read).
    #[error("the topic already exists")]
    TopicExists,
    /// A batched request failed as a whole (the cause, flattened: every request of the
    /// batch gets its own copy).
    #[error("failed to {operation}: {message}")]
    Failed {
        /// What was being done.
        operation: &'static str,
        /// The cause and its sources.
        message: String,
    },
    /// The coordinator's TLS client settings for the cluster could not be made.
    #[error("failed to set up TLS to the cluster: {message}")]
    Tls {
        /// What was wrong.
        message: String,
    },
    /// The system's random number generator failed (passwords and salts need it).
    #[error("failed to draw random bytes for a password or salt")]
    Random,
}

impl AdminError {
    /// Kafka's error code, when Kafka refused.
    pub fn kafka_error(&self) -> Option<ResponseError> {
        match self {
            Self::Refused { error, .. } => Some(*error),
            _ => None,
        }
    }

    /// True when trying again may succeed: every failure to reach or talk to Kafka, and
    /// the error codes the Kafka protocol marks retriable (`NOT_CONTROLLER`,
    /// `REQUEST_TIMED_OUT`, `LEADER_NOT_AVAILABLE`, ...). A refusal with any other code
    /// (an invalid config, a policy violation) will be refused again until the request
    /// changes.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Refused { error, .. } => error.is_retriable() || is_authorization(*error),
            _ => true,
        }
    }

    /// True when Kafka refused because the coordinator's principal lacks a permission:
    /// fixed outside the resource (an ACL), so it is retried, not parked.
    pub fn is_authorization(&self) -> bool {
        self.kafka_error().is_some_and(is_authorization)
    }
}

fn is_authorization(error: ResponseError) -> bool {
    matches!(
        error,
        ResponseError::TopicAuthorizationFailed
            | ResponseError::GroupAuthorizationFailed
            | ResponseError::ClusterAuthorizationFailed
            | ResponseError::TransactionalIdAuthorizationFailed
            | ResponseError::DelegationTokenAuthorizationFailed
            | ResponseError::SaslAuthenticationFailed
    )
}

/// A topic as Kafka has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicState {
    /// Kafka's topic id.
    pub id: String,
    /// Partitions.
    pub partitions: i32,
    /// Replication factor (of partition 0).
    pub replication_factor: i32,
}

/// A topic config as Kafka reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigValue {
    /// The value (None when sensitive).
    pub value: Option<String>,
    /// True when it is the broker's default, not set on the topic.
    pub is_default: bool,
}

/// Where a cluster is reached, and how.
#[derive(Debug, Clone)]
pub struct Target {
    /// The bootstrap list (host:port,...).
    pub bootstrap: String,
    /// TLS settings, when the listener speaks TLS.
    pub tls: Option<TlsClient>,
}

/// The admin client of one Kafka cluster.
pub struct KafkaAdmin {
    target: Arc<Target>,
    batcher: batch::Batcher,
}

impl std::fmt::Debug for KafkaAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaAdmin")
            .field("bootstrap", &self.target.bootstrap)
            .field("tls", &self.target.tls.is_some())
            .finish_non_exhaustive()
    }
}

fn refused(operation: &'static str, code: i16, message: Option<StrBytes>) -> Option<AdminError> {
    ResponseError::try_from_code(code).map(|error| AdminError::Refused {
        operation,
        error,
        message: message.map(|m| m.to_string()),
    })
}

/// A connection to the first broker of the target's bootstrap list that answers.
async fn connect_any(target: &Target) -> Result<Connection, AdminError> {
    let bootstrap = target.bootstrap.as_str();
    let mut last = None;
    for addr in bootstrap
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        match Connection::connect_with(addr, TIMEOUT, target.tls.as_ref()).await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
    }
    Err(AdminError::Unreachable {
        bootstrap: bootstrap.to_owned(),
        source: last.unwrap_or_else(|| WireError::Connect {
            addr: bootstrap.to_owned(),
            source: std::io::Error::other("empty bootstrap list"),
        }),
    })
}

impl KafkaAdmin {
    /// A client of the cluster reachable at `bootstrap` (host:port,...) in plaintext;
    /// starts its batching task, so it must be called inside a Tokio runtime.
    pub fn new(bootstrap: &str) -> Self {
        Self::with_target(Target {
            bootstrap: bootstrap.to_owned(),
            tls: None,
        })
    }

    /// A client of the cluster at `target`; starts its batching task.
    pub fn with_target(target: Target) -> Self {
        let target = Arc::new(target);
        Self {
            batcher: batch::Batcher::start(target.clone()),
            target,
        }
    }

    async fn connect(&self) -> Result<Connection, AdminError> {
        connect_any(&self.target).await
    }

    /// Live brokers, and the topic if it exists (batched with other reconciles').
    pub async fn describe_topic(
        &self,
        name: &str,
    ) -> Result<(usize, Option<TopicState>), AdminError> {
        self.batcher.describe(name).await
    }

    /// The topic's configs with their sources (batched with other reconciles').
    pub async fn topic_configs(
        &self,
        name: &str,
    ) -> Result<BTreeMap<String, ConfigValue>, AdminError> {
        self.batcher.configs(name).await
    }

    /// Sets and deletes topic configs with one IncrementalAlterConfigs request;
    /// `validate_only` asks Kafka to check them without applying.
    pub async fn alter_topic_config(
        &self,
        name: &str,
        set: &BTreeMap<String, String>,
        delete: &[String],
        validate_only: bool,
    ) -> Result<(), AdminError> {
        if set.is_empty() && delete.is_empty() {
            return Ok(());
        }
        let mut configs: Vec<AlterableConfig> = set
            .iter()
            .map(|(k, v)| {
                AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_string(v.clone())))
            })
            .collect();
        configs.extend(delete.iter().map(|k| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(k.clone()))
                .with_config_operation(1)
                .with_value(None)
        }));
        let req = IncrementalAlterConfigsRequest::default()
            .with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(RESOURCE_TOPIC)
                    .with_resource_name(StrBytes::from_string(name.to_owned()))
                    .with_configs(configs),
            ])
            .with_validate_only(validate_only);
        let mut conn = self.connect().await?;
        let resp = conn
            .send("IncrementalAlterConfigs", &req, 1)
            .await
            .map_err(|source| AdminError::Wire {
                operation: "change topic configs",
                source,
            })?;
        for r in resp.responses {
            if let Some(e) = refused("change topic configs", r.error_code, r.error_message) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Creates the topic (batched with other reconciles'). Kafka checks and creates
    /// each topic of a request on its own and atomically: a refused topic (bad name,
    /// count or config value) leaves nothing behind. The answer says what Kafka made.
    pub async fn create_topic(&self, topic: NewTopicSpec) -> Result<CreatedTopic, AdminError> {
        self.batcher.create(topic).await
    }

    /// Raises the partition count to `total` (Kafka spreads the new partitions' replicas
    /// itself).
    pub async fn create_partitions(&self, name: &str, total: i32) -> Result<(), AdminError> {
        const OPERATION: &str = "add partitions";
        let req = CreatePartitionsRequest::default()
            .with_topics(vec![
                CreatePartitionsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name.to_owned())))
                    .with_count(total)
                    .with_assignments(None),
            ])
            .with_timeout_ms(OPERATION_TIMEOUT_MS);
        let mut conn = self.connect().await?;
        let resp = conn
            .send("CreatePartitions", &req, 3)
            .await
            .map_err(|source| AdminError::Wire {
                operation: OPERATION,
                source,
            })?;
        let result = resp
            .results
            .into_iter()
            .find(|r| r.name.0.as_str() == name)
            .ok_or(AdminError::NoAnswer {
                operation: OPERATION,
            })?;
        match refused(OPERATION, result.error_code, result.error_message) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Deletes the topic; a topic that is already gone counts as deleted.
    pub async fn delete_topic(&self, name: &str) -> Result<(), AdminError> {
        const OPERATION: &str = "delete the topic";
        let req = DeleteTopicsRequest::default()
            .with_topics(vec![
                DeleteTopicState::default()
                    .with_name(Some(TopicName(StrBytes::from_string(name.to_owned())))),
            ])
            .with_timeout_ms(OPERATION_TIMEOUT_MS);
        let mut conn = self.connect().await?;
        let resp = conn
            .send("DeleteTopics", &req, 6)
            .await
            .map_err(|source| AdminError::Wire {
                operation: OPERATION,
                source,
            })?;
        let result = resp
            .responses
            .into_iter()
            .find(|r| r.name.as_ref().is_some_and(|n| n.0.as_str() == name))
            .ok_or(AdminError::NoAnswer {
                operation: OPERATION,
            })?;
        match refused(OPERATION, result.error_code, result.error_message) {
            Some(AdminError::Refused {
                error: ResponseError::UnknownTopicOrPartition,
                ..
            })
            | None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

/// How long the coordinator's Kafka client certificate is valid.
const CLIENT_VALIDITY: time::Duration = time::Duration::days(7);
/// It is signed again after this long (clients made before keep theirs until then).
const CLIENT_RENEW_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A cluster whose brokers speak TLS to the coordinator: the CA that signs their
/// certificates (and, with its key, the coordinator's own), and the name every
/// broker's certificate carries.
#[derive(Debug, Clone)]
pub struct ClusterTls {
    /// The cluster's listener CA.
    pub ca: stoker_proto::pki::Ca,
    /// The name checked in the brokers' certificates (the bootstrap Service's).
    pub server_name: String,
}

/// An admin client, and when its client certificate was signed (plaintext: never).
#[derive(Debug)]
struct Pooled {
    admin: Arc<KafkaAdmin>,
    ca_cert: Option<String>,
    signed: std::time::Instant,
    /// When its CA was last compared with the cluster's.
    checked: std::time::Instant,
}

/// One admin client per bootstrap list, shared by reconciles.
#[derive(Debug, Default)]
pub struct AdminPool {
    clients: Mutex<HashMap<String, Pooled>>,
}

impl AdminPool {
    /// The plaintext client of the cluster at `bootstrap`.
    pub fn get(&self, bootstrap: &str) -> Arc<KafkaAdmin> {
        let mut clients = self
            .clients
            .lock()
            .expect("the admin pool lock is never poisoned");
        match clients.get(bootstrap).filter(|p| p.ca_cert.is_none()) {
            Some(p) => p.admin.clone(),
            None => {
                let admin = Arc::new(KafkaAdmin::new(bootstrap));
                clients.insert(
                    bootstrap.to_owned(),
                    Pooled {
                        admin: admin.clone(),
                        ca_cert: None,
                        signed: std::time::Instant::now(),
                        checked: std::time::Instant::now(),
                    },
                );
                admin
            }
        }
    }

    /// The mutual-TLS client of the cluster at `bootstrap`: the coordinator presents a
    /// certificate it signs for itself with the cluster's CA (`CN=stoker-coordinator,
    /// O=stoker.io`, 7 days, signed again daily or when the CA changes).
    pub fn get_tls(
        &self,
        bootstrap: &str,
        tls: &ClusterTls,
    ) -> Result<Arc<KafkaAdmin>, AdminError> {
        use stoker_proto::pki::{self, Subject, Usage};
        let mut clients = self
            .clients
            .lock()
            .expect("the admin pool lock is never poisoned");
        if let Some(p) = clients.get_mut(bootstrap).filter(|p| {
            p.ca_cert.as_deref() == Some(tls.ca.cert.as_str())
                && p.signed.elapsed() < CLIENT_RENEW_AFTER
        }) {
            p.checked = std::time::Instant::now();
            return Ok(p.admin.clone());
        }
        let failed = |message: String| AdminError::Tls { message };
        let leaf = pki::issue_leaf_for(
            &tls.ca,
            Subject {
                common_name:
                    crate::controller::kafka_cluster::build::certificates::COORDINATOR_COMMON_NAME,
                organization: Some(
                    crate::controller::kafka_cluster::build::certificates::IDENTITY_ORGANIZATION,
                ),
            },
            &[],
            &[Usage::Client],
            time::OffsetDateTime::now_utc(),
            CLIENT_VALIDITY,
        )
        .map_err(|e| failed(crate::controller::error_chain(&e)))?;
        let client = TlsClient::new(
            tls.ca.cert.as_bytes(),
            Some(stoker_kafka::ClientIdentity {
                cert: leaf.cert.as_bytes(),
                key: leaf.key.as_bytes(),
            }),
            &tls.server_name,
        )
        .map_err(|e| failed(e.to_string()))?;
        let admin = Arc::new(KafkaAdmin::with_target(Target {
            bootstrap: bootstrap.to_owned(),
            tls: Some(client),
        }));
        clients.insert(
            bootstrap.to_owned(),
            Pooled {
                admin: admin.clone(),
                ca_cert: Some(tls.ca.cert.clone()),
                signed: std::time::Instant::now(),
                checked: std::time::Instant::now(),
            },
        );
        Ok(admin)
    }

    /// The mutual-TLS client of the cluster at `bootstrap` if its CA was compared with
    /// the cluster's within `within` (a burst of reconciles reads the CA once) and its
    /// certificate needs no renewal.
    pub fn recent_tls(&self, bootstrap: &str, within: Duration) -> Option<Arc<KafkaAdmin>> {
        let clients = self
            .clients
            .lock()
            .expect("the admin pool lock is never poisoned");
        clients
            .get(bootstrap)
            .filter(|p| {
                p.ca_cert.is_some()
                    && p.checked.elapsed() < within
                    && p.signed.elapsed() < CLIENT_RENEW_AFTER
            })
            .map(|p| p.admin.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(error: ResponseError) -> AdminError {
        AdminError::Refused {
            operation: "create the topic",
            error,
            message: None,
        }
    }

    #[test]
    fn kafka_errors_keep_their_code_and_say_whether_to_retry() {
        // A controller moving or a slow broker: retried, never parked.
        for e in [
            ResponseError::NotController,
            ResponseError::RequestTimedOut,
            ResponseError::LeaderNotAvailable,
        ] {
            assert!(refusal(e).is_retriable(), "{e:?} is retried");
        }
        // A request Kafka will refuse again until it changes: reported and parked.
        for e in [
            ResponseError::InvalidConfig,
            ResponseError::PolicyViolation,
            ResponseError::InvalidReplicationFactor,
        ] {
            assert!(!refusal(e).is_retriable(), "{e:?} waits for a change");
        }
        // A missing permission is fixed outside the resource: retried, and named.
        let denied = refusal(ResponseError::TopicAuthorizationFailed);
        assert!(denied.is_retriable() && denied.is_authorization());
        assert_eq!(
            denied.kafka_error(),
            Some(ResponseError::TopicAuthorizationFailed)
        );
        // Failing to reach Kafka at all is always worth another try.
        assert!(
            AdminError::NoAnswer {
                operation: "describe topic configs"
            }
            .is_retriable()
        );
    }
}
