//! The coordinator's gRPC client of the broker agents (`stoker.agent.v1.Agent`): one
//! lazily connected channel per agent address, short timeouts, so an unreachable
//! agent costs a reconcile seconds, never a hang. The fast path for status and live
//! config changes; brokers never depend on it to start.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use stoker_proto::agent::v1::{
    BrokerRef, BrokerStatus, DescribeReplicasRequest, DescribeReplicasResponse, DesiredConfig,
    GetStatusRequest, ReconfigureRequest, ReconfigureResponse, SafeToStopRequest,
    SafeToStopResponse, agent_client::AgentClient,
};
use tonic::transport::{Channel, Endpoint};

/// How long connecting to an agent may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one call may take (Reconfigure talks to Kafka key by key).
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// A failed call to an agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The address is not usable.
    #[error("invalid agent address {0}")]
    Address(String),
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

/// Channels to every agent, by address.
#[derive(Debug, Default)]
pub struct AgentPool {
    channels: Mutex<HashMap<String, Channel>>,
}

impl AgentPool {
    fn client(&self, addr: &str) -> Result<AgentClient<Channel>, AgentError> {
        let mut channels = self
            .channels
            .lock()
            .map_err(|_| AgentError::Address(addr.to_owned()))?;
        if let Some(ch) = channels.get(addr) {
            return Ok(AgentClient::new(ch.clone()));
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|_| AgentError::Address(addr.to_owned()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        let ch = endpoint.connect_lazy();
        channels.insert(addr.to_owned(), ch.clone());
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
    pub async fn status(&self, addr: &str, broker: &BrokerRef) -> Result<BrokerStatus, AgentError> {
        let mut c = self.client(addr)?;
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
        addr: &str,
        broker: &BrokerRef,
        also_stopping: &[i32],
    ) -> Result<SafeToStopResponse, AgentError> {
        let mut c = self.client(addr)?;
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
        addr: &str,
        broker: &BrokerRef,
        desired: &DesiredConfig,
    ) -> Result<ReconfigureResponse, AgentError> {
        let mut c = self.client(addr)?;
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
        addr: &str,
        broker: &BrokerRef,
    ) -> Result<DescribeReplicasResponse, AgentError> {
        let mut c = self.client(addr)?;
        c.describe_replicas(DescribeReplicasRequest {
            broker: Some(broker.clone()),
        })
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| Self::failed(addr, s))
    }
}
