//! The agent's gRPC service (`stoker.agent.v1.Agent`, default `0.0.0.0:8081`): the
//! coordinator's fast path for status, safe-to-stop, live reconfiguration and
//! prepare-shutdown. Never a start-up dependency: brokers start from the ConfigMap.

pub mod server;
pub mod tls;
