//! The agents' mTLS contract: which files an agent reads its identity from, the
//! name its certificate carries (the coordinator checks it on every connection), and
//! the identity the agent accepts commands from.
//!
//! Every cluster has its own agent CA, kept by the coordinator. It signs one serving
//! certificate per broker (for [`agent_name`]) and the coordinator's client
//! certificate (for [`COORDINATOR_NAME`]); an agent takes a command only from a peer
//! whose certificate chains to that CA **and** names the coordinator, so another
//! broker's certificate is no key to it.

/// The serving certificate's file in the agent's TLS folder (PEM, leaf first).
pub const CERT_FILE: &str = "tls.crt";
/// Its private key (PEM).
pub const KEY_FILE: &str = "tls.key";
/// The cluster's agent CA (PEM): the only issuer whose clients the agent accepts.
pub const CA_FILE: &str = "ca.crt";
/// The CA's private key, in the CA Secret only (never mounted into a Pod).
pub const CA_KEY_FILE: &str = "ca.key";

/// The DNS name in the coordinator's client certificate.
pub const COORDINATOR_NAME: &str = "coordinator.agents.stoker.io";

/// The common name of a cluster's agent CA: what every certificate it signs names as
/// its issuer (so it is fixed by the cluster, and the stored key alone signs again).
pub fn ca_common_name(cluster: &str, namespace: &str) -> String {
    format!("stoker-agent-ca.{cluster}.{namespace}")
}

/// The DNS name in broker `broker_id`'s agent certificate: the coordinator connects to
/// the Pod's address and expects exactly this name, so a certificate of another broker
/// (or another cluster) is refused even though the same CA signed it.
pub fn agent_name(cluster: &str, namespace: &str, broker_id: i32) -> String {
    format!("broker-{broker_id}.{cluster}.{namespace}.agents.stoker.io")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_differ_per_broker_cluster_and_namespace() {
        let a = agent_name("kafka", "ns", 1);
        assert_eq!(a, "broker-1.kafka.ns.agents.stoker.io");
        assert_ne!(a, agent_name("kafka", "ns", 2));
        assert_ne!(a, agent_name("kafka", "other", 1));
        assert_ne!(a, agent_name("other", "ns", 1));
    }
}
