//! The gRPC contract between the Stoker coordinator and the agent beside every broker.
//!
//! The `.proto` files under `proto/` are the source of truth. The Rust code in
//! `src/gen/` is generated from them and checked in, so building needs no `protoc`;
//! `tests/bootstrap.rs` regenerates it and fails when the two drift.
#![forbid(unsafe_code)]

/// Version 1 of the agent's service and of the per-broker desired-config document.
pub mod agent {
    /// `stoker.agent.v1`.
    #[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
    pub mod v1 {
        include!("gen/stoker.agent.v1.rs");
    }
}

pub mod agent_tls;
#[cfg(feature = "pki")]
pub mod pki;
pub mod prestop;

use sha2::{Digest, Sha256};

/// Broker config keys Stoker owns: they follow from the cluster's topology, so both
/// the coordinator (validating a `KafkaCluster`) and the agent (validating a desired
/// config) refuse a user value for them, naming the key.
pub const OPERATOR_OWNED_KEYS: &[&str] = &[
    "node.id",
    "broker.id",
    "process.roles",
    "listeners",
    "advertised.listeners",
    "listener.security.protocol.map",
    "inter.broker.listener.name",
    "controller.listener.names",
    "controller.quorum.voters",
    "controller.quorum.bootstrap.servers",
    "log.dirs",
    "log.dir",
    "metadata.log.dir",
];

/// The file name under which the agent copies the JMX exporter javaagent its image
/// carries into the folder it shares with Kafka; the coordinator points Kafka's
/// `-javaagent` there.
pub const JMX_EXPORTER_JAR_FILE: &str = "jmx_prometheus_javaagent.jar";

/// The hash of a desired-config document that both sides compare: the first 16 hex
/// digits of SHA-256 over its JSON form (maps are `BTreeMap`s, so the form is
/// canonical). Secret values never enter it: the document only names their files.
pub fn config_hash(doc: &agent::v1::DesiredConfig) -> String {
    let json = serde_json::to_vec(doc).expect("a DesiredConfig always serialises");
    let digest = Sha256::digest(&json);
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_hash_is_stable_and_sensitive() {
        let mut doc = agent::v1::DesiredConfig {
            schema_version: 1,
            ..Default::default()
        };
        doc.broker_config.insert("b".into(), "1".into());
        doc.broker_config.insert("a".into(), "1".into());
        let h = config_hash(&doc);
        assert_eq!(h.len(), 16);
        assert_eq!(h, config_hash(&doc.clone()));
        doc.broker_config.insert("a".into(), "2".into());
        assert_ne!(h, config_hash(&doc));
    }
}
