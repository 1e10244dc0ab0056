//! `stoker.agent.v1.Agent` served from the agent's shared state.

use std::sync::Arc;

use stoker_proto::agent::v1::{
    BlockingPartition, BrokerRef, BrokerState, BrokerStatus, DescribeReplicasRequest,
    DescribeReplicasResponse, GetStatusRequest, LogDirReplicas, PrepareShutdownRequest,
    PrepareShutdownResponse, ReconfigureRequest, ReconfigureResponse, SafeToStopRequest,
    SafeToStopResponse,
    agent_server::{Agent, AgentServer},
};
use tonic::{Request, Response, Status};

use crate::{
    guard::StopAnswer,
    reconfigure::apply::ReconfigureError,
    state::{Running, Shared, error_chain},
};

/// The service implementation.
#[derive(Debug, Clone)]
pub struct AgentService {
    shared: Arc<Shared>,
}

impl AgentService {
    /// A service over `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The tonic server wrapper.
    pub fn into_server(self) -> AgentServer<Self> {
        AgentServer::new(self)
    }

    /// The running state, after checking that `broker` names this agent's broker.
    fn running_for(&self, broker: Option<&BrokerRef>) -> Result<Arc<Running>, Status> {
        let broker = broker.ok_or_else(|| {
            Status::invalid_argument(
                "field `broker` is required: name the cluster, namespace and broker id",
            )
        })?;
        let running = self.shared.running().cloned().ok_or_else(|| {
            Status::unavailable(format!(
                "the agent has not started: {}",
                self.shared.startup_error().unwrap_or_default()
            ))
        })?;
        check_broker(&running.broker, broker)?;
        Ok(running)
    }
}

/// `InvalidArgument` naming the first field of `asked` that differs from `own`.
pub fn check_broker(own: &BrokerRef, asked: &BrokerRef) -> Result<(), Status> {
    if asked.broker_id != own.broker_id {
        return Err(Status::invalid_argument(format!(
            "field `broker.broker_id` is {}, but this agent serves broker {}",
            asked.broker_id, own.broker_id
        )));
    }
    if asked.cluster != own.cluster {
        return Err(Status::invalid_argument(format!(
            "field `broker.cluster` is {:?}, but this agent serves cluster {:?}",
            asked.cluster, own.cluster
        )));
    }
    if asked.namespace != own.namespace {
        return Err(Status::invalid_argument(format!(
            "field `broker.namespace` is {:?}, but this agent serves namespace {:?}",
            asked.namespace, own.namespace
        )));
    }
    Ok(())
}

fn proto_state(kafka_state: i64) -> BrokerState {
    match kafka_state {
        0 => BrokerState::NotRunning,
        1 => BrokerState::Starting,
        2 => BrokerState::Recovery,
        3 => BrokerState::Running,
        6 => BrokerState::PendingControlledShutdown,
        7 => BrokerState::ShuttingDown,
        _ => BrokerState::Unspecified,
    }
}

#[tonic::async_trait]
impl Agent for AgentService {
    async fn get_status(
        &self,
        request: Request<GetStatusRequest>,
    ) -> Result<Response<BrokerStatus>, Status> {
        let running = self.running_for(request.get_ref().broker.as_ref())?;
        let health = self.shared.health();
        let obs = running.observation();
        let state = if obs.broker_state >= 0 {
            proto_state(obs.broker_state)
        } else if self.shared.shutting_down() {
            BrokerState::ShuttingDown
        } else if health.ready() {
            BrokerState::Running
        } else {
            BrokerState::Unspecified
        };
        let in_force = running.in_force();
        Ok(Response::new(BrokerStatus {
            broker: Some(running.broker.clone()),
            state: state.into(),
            ready: health.ready(),
            not_ready_reason: health.reasons(),
            config_hash_in_force: in_force.hash,
            restart_needed: !in_force.restart_needed.is_empty(),
            restart_needed_keys: in_force.restart_needed,
            remaining_logs_to_recover: obs.remaining_logs,
            out_of_sync_partitions: u32::try_from(obs.out_of_sync).unwrap_or(u32::MAX),
            quorum_leader: obs.quorum_leader,
            rack: running.rack.clone(),
            pending_config_hash: in_force.pending_hash,
        }))
    }

    async fn safe_to_stop(
        &self,
        request: Request<SafeToStopRequest>,
    ) -> Result<Response<SafeToStopResponse>, Status> {
        let running = self.running_for(request.get_ref().broker.as_ref())?;
        let answer = running.safe_to_stop(&request.get_ref().also_stopping).await;
        let blocking_partitions = match &answer {
            StopAnswer::Decided(d) => d
                .blocking
                .iter()
                .map(|b| BlockingPartition {
                    topic: b.partition.topic.clone(),
                    partition: b.partition.partition,
                    isr: b.partition.isr.clone(),
                    min_insync_replicas: b.partition.min_isr.or_unknown(),
                })
                .collect(),
            StopAnswer::Quorum(_) | StopAnswer::Unknown(_) | StopAnswer::Locked(_) => Vec::new(),
        };
        let response = SafeToStopResponse {
            broker: Some(running.broker.clone()),
            safe: answer.safe(),
            reason: answer.reason(),
            blocking_partitions,
            unreadable: answer.unreadable(),
        };
        Ok(Response::new(response))
    }

    async fn reconfigure(
        &self,
        request: Request<ReconfigureRequest>,
    ) -> Result<Response<ReconfigureResponse>, Status> {
        let req = request.into_inner();
        let running = self.running_for(req.broker.as_ref())?;
        if running.observe_only {
            return Err(Status::failed_precondition(
                "this agent observes a broker Stoker did not build (stoker-agent observe): it owns no config to change; change the broker's own configuration",
            ));
        }
        let desired = req.desired.ok_or_else(|| {
            Status::invalid_argument("field `desired` is required: the new desired config")
        })?;
        if let Some(doc_broker) = desired.broker.as_ref() {
            check_broker(&running.broker, doc_broker)
                .map_err(|s| Status::invalid_argument(format!("in `desired`: {}", s.message())))?;
        }
        let hash = stoker_proto::config_hash(&desired);
        if !req.config_hash.is_empty() && req.config_hash != hash {
            return Err(Status::invalid_argument(format!(
                "field `config_hash` is {:?} but the desired config hashes to {hash:?}; send the hash of the document you send",
                req.config_hash
            )));
        }
        let out = running.reconfigure(desired).await.map_err(|e| match e {
            ReconfigureError::Invalid(e) => Status::invalid_argument(e.to_string()),
            other @ ReconfigureError::Describe(_) => Status::unavailable(error_chain(&other)),
        })?;
        Ok(Response::new(ReconfigureResponse {
            broker: Some(running.broker.clone()),
            applied_keys: out.applied,
            restart_needed_keys: out.restart_needed,
            config_hash_in_force: out.hash_in_force,
        }))
    }

    async fn describe_replicas(
        &self,
        request: Request<DescribeReplicasRequest>,
    ) -> Result<Response<DescribeReplicasResponse>, Status> {
        let running = self.running_for(request.get_ref().broker.as_ref())?;
        let r = running.describe_replicas().await;
        let listed = |v: &[String]| v.iter().take(crate::replicas::LISTED).cloned().collect();
        Ok(Response::new(DescribeReplicasResponse {
            broker: Some(running.broker.clone()),
            assigned_count: u32::try_from(r.assigned.len()).unwrap_or(u32::MAX),
            assigned: listed(&r.assigned),
            log_dirs: r
                .log_dirs
                .iter()
                .map(|(path, parts)| LogDirReplicas {
                    path: path.clone(),
                    partitions: u32::try_from(parts.len()).unwrap_or(u32::MAX),
                    listed: listed(parts),
                })
                .collect(),
            max_replication_factor: r.max_replication_factor.0,
            max_replication_factor_topic: r.max_replication_factor.1,
            brokers_needed: r.brokers_needed.0,
            brokers_needed_reason: r.brokers_needed.1,
            unreadable: r.unreadable,
        }))
    }

    async fn prepare_shutdown(
        &self,
        request: Request<PrepareShutdownRequest>,
    ) -> Result<Response<PrepareShutdownResponse>, Status> {
        let running = self.running_for(request.get_ref().broker.as_ref())?;
        self.shared.begin_shutdown("PrepareShutdown over gRPC");
        Ok(Response::new(PrepareShutdownResponse {
            broker: Some(running.broker.clone()),
            accepted: true,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mismatched_broker_names_the_field() {
        let own = BrokerRef {
            cluster: "kafka".into(),
            namespace: "ns".into(),
            broker_id: 1,
        };
        let err = check_broker(
            &own,
            &BrokerRef {
                broker_id: 2,
                ..own.clone()
            },
        )
        .expect_err("differs");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("broker.broker_id"));
        let err = check_broker(
            &own,
            &BrokerRef {
                cluster: "other".into(),
                ..own.clone()
            },
        )
        .expect_err("differs");
        assert!(err.message().contains("broker.cluster"));
        assert!(check_broker(&own, &own).is_ok());
    }

    #[tokio::test]
    async fn requests_without_a_broker_are_invalid() {
        let svc = AgentService::new(Arc::new(Shared::new(
            std::time::Duration::from_secs(1),
            None,
        )));
        let err = svc
            .get_status(Request::new(GetStatusRequest { broker: None }))
            .await
            .expect_err("no broker");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("`broker`"));
    }
}
