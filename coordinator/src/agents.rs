//! The coordinator's gRPC client of the broker agents (`stoker.agent.v1.Agent`): one
//! lazily connected channel per agent address, short timeouts, so an unreachable
//! agent costs a reconcile seconds, never a hang. The fast path for status and live
//! config changes; brokers never depend on it to start.
//!
//! Every call is mutual TLS: the coordinator presents a client certificate it signs
//! for itself with the cluster's agent CA ([`stoker_proto::agent_tls::COORDINATOR_NAME`]),
//! and accepts only the certificate issued to the very broker it asked
//! ([`stoker_proto::agent_tls::agent_name`]).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use stoker_proto::agent::v1::{
    BrokerRef, BrokerStatus, DescribeReplicasRequest, DescribeReplicasResponse, DesiredConfig,
    GetStatusRequest, ReconfigureRequest, ReconfigureResponse, SafeToStopRequest,
    SafeToStopResponse, agent_client::AgentClient,
};
use stoker_proto::{
    agent_tls::{COORDINATOR_NAME, agent_name},
    pki::{self, Ca, Usage},
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// How long connecting to an agent may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one call may take (Reconfigure talks to Kafka key by key).
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// How long the coordinator's own client certificate is valid.
const CLIENT_VALIDITY: time::Duration = time::Duration::days(7);
/// It is signed again after this long (connections made before keep theirs).
const CLIENT_RENEW_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Channels kept at most (a Pod's new address makes a new one).
const MAX_CHANNELS: usize = 4096;

/// A failed call to an agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The address is not usable.
    #[error("invalid agent address {0}")]
    Address(String),
    /// The cluster has no agent CA yet, so no call can be authenticated.
    #[error(
        "no agent CA for cluster {cluster} (its Secret is not there yet): calls to its agents need mTLS"
    )]
    NoCa {
        /// The cluster.
        cluster: String,
    },
    /// The coordinator could not sign its client certificate or set up TLS.
    #[error("failed to set up mTLS to agent {addr}: {detail}")]
    Tls {
        /// The agent's address.
        addr: String,
        /// The cause.
        detail: String,
    },
    /// The call failed (unreachable, timed out, or refused with a status).
    #[error("agent {addr} answered {code:?}: {message}")]
    Call {
        /// The agent's address.
        addr: String,
        /// The gRPC code.
        code: tonic::Code,
        /// The agent's message.
        message: String,
    },
}

/// The coordinator's client certificate for one CA.
#[derive(Debug, Clone)]
struct Signed {
    identity: Identity,
    at: Instant,
    generation: u64,
}

/// Channels to every agent, by address, name and credentials.
#[derive(Debug, Default)]
pub struct AgentPool {
    channels: Mutex<HashMap<(String, String, u64), Channel>>,
    identities: Mutex<HashMap<String, Signed>>,
    generations: std::sync::atomic::AtomicU64,
}

impl AgentPool {
    /// The coordinator's client certificate signed by `ca`, signed again once a day.
    fn identity(&self, addr: &str, ca: &Ca) -> Result<Signed, AgentError> {
        let tls = |detail: String| AgentError::Tls {
            addr: addr.to_owned(),
            detail,
        };
        let mut ids = self.identities.lock().map_err(|e| tls(e.to_string()))?;
        if let Some(s) = ids
            .get(&ca.cert)
            .filter(|s| s.at.elapsed() < CLIENT_RENEW_AFTER)
        {
            return Ok(s.clone());
        }
        let leaf = pki::issue_leaf(
            ca,
            &[COORDINATOR_NAME.to_owned()],
            Usage::Client,
            time::OffsetDateTime::now_utc(),
            CLIENT_VALIDITY,
        )
        .map_err(|e| tls(crate::controller::error_chain(&e)))?;
        let signed = Signed {
            identity: Identity::from_pem(leaf.cert, leaf.key),
            at: Instant::now(),
            generation: self
                .generations
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        if ids.len() > MAX_CHANNELS {
            ids.clear();
        }
        ids.insert(ca.cert.clone(), signed.clone());
        Ok(signed)
    }

    fn client(
        &self,
        addr: &str,
        broker: &BrokerRef,
        ca: Option<&Ca>,
    ) -> Result<AgentClient<Channel>, AgentError> {
        let ca = ca.ok_or_else(|| AgentError::NoCa {
            cluster: format!("{}/{}", broker.namespace, broker.cluster),
        })?;
        let signed = self.identity(addr, ca)?;
        let name = agent_name(&broker.cluster, &broker.namespace, broker.broker_id);
        let key = (addr.to_owned(), name.clone(), signed.generation);
        let mut channels = self
            .channels
            .lock()
            .map_err(|_| AgentError::Address(addr.to_owned()))?;
        if let Some(ch) = channels.get(&key) {
            return Ok(AgentClient::new(ch.clone()));
        }
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&ca.cert))
            .identity(signed.identity)
            .domain_name(name);
        let endpoint = Endpoint::from_shared(format!("https://{addr}"))
            .map_err(|_| AgentError::Address(addr.to_owned()))?
            .tls_config(tls)
            .map_err(|e| AgentError::Tls {
                addr: addr.to_owned(),
                detail: crate::controller::error_chain(&e),
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        let ch = endpoint.connect_lazy();
        if channels.len() > MAX_CHANNELS {
            channels.clear();
        }
        channels.insert(key, ch.clone());
        Ok(AgentClient::new(ch))
    }

    fn failed(addr: &str, s: tonic::Status) -> AgentError {
        AgentError::Call {
            addr: addr.to_owned(),
            code: s.code(),
            message: s.message().to_owned(),
        }
    }

    /// The broker's status as its agent reports it.
    pub async fn status(
        &self,
        ca: Option<&Ca>,
        addr: &str,
        broker: &BrokerRef,
    ) -> Result<BrokerStatus, AgentError> {
        let mut c = self.client(addr, broker, ca)?;
        c.get_status(GetStatusRequest {
            broker: Some(broker.clone()),
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| Self::failed(addr, s))
    }

    /// Whether stopping the broker now keeps every partition at or above min ISR.
    pub async fn safe_to_stop(
        &self,
        ca: Option<&Ca>,
        addr: &str,
        broker: &BrokerRef,
        also_stopping: &[i32],
    ) -> Result<SafeToStopResponse, AgentError> {
        let mut c = self.client(addr, broker, ca)?;
        c.safe_to_stop(SafeToStopRequest {
            broker: Some(broker.clone()),
            also_stopping: also_stopping.to_vec(),
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| Self::failed(addr, s))
    }

    /// Pushes a new desired config: the agent applies its dynamic keys and reports the
    /// keys that need a restart.
    pub async fn reconfigure(
        &self,
        ca: Option<&Ca>,
        addr: &str,
        broker: &BrokerRef,
        desired: &DesiredConfig,
    ) -> Result<ReconfigureResponse, AgentError> {
        let mut c = self.client(addr, broker, ca)?;
        c.reconfigure(ReconfigureRequest {
            broker: Some(broker.clone()),
            desired: Some(desired.clone()),
            config_hash: stoker_proto::config_hash(desired),
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| Self::failed(addr, s))
    }

    /// What the broker holds: the partitions the metadata assigns to it and the
    /// replicas in its log dirs.
    pub async fn describe_replicas(
        &self,
        ca: Option<&Ca>,
        addr: &str,
        broker: &BrokerRef,
    ) -> Result<DescribeReplicasResponse, AgentError> {
        let mut c = self.client(addr, broker, ca)?;
        c.describe_replicas(DescribeReplicasRequest {
            broker: Some(broker.clone()),
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| Self::failed(addr, s))
    }
}
