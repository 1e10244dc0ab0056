//! Observe mode: the agent beside a Kafka broker Stoker did not build (a StatefulSet of
//! another chart, labelled for injection). It renders nothing and owns no config: it
//! learns from its flags which broker it sits beside and serves the same probes,
//! metrics, `SafeToStop` answers and preStop safety wait as beside a broker the
//! coordinator built. Pure: flags and the Pod's name in, the broker's description out.

use std::{collections::BTreeMap, path::PathBuf};

use stoker_proto::agent::v1::BrokerRef;

use crate::config::{Roles, ValidatedConfig, ValidatedListener};

/// The listener name the agent gives the broker's listener it talks to.
const BROKER_LISTENER: &str = "BROKER";
/// The listener name it gives the controller listener.
const CONTROLLER_LISTENER: &str = "CONTROLLER";

/// Why the flags do not describe a broker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObserveError {
    /// `--broker-id` is neither a number nor `ordinal`.
    #[error(
        "--broker-id {0:?} is not a node id; give a number, or `ordinal` for the number that ends the Pod's name"
    )]
    BrokerId(String),
    /// `--broker-id ordinal`, but the Pod's name does not end in a number.
    #[error(
        "--broker-id is `ordinal`, but the Pod's name {0:?} does not end in -<number>; give the node id as a number"
    )]
    Ordinal(String),
    /// `--roles` names something other than broker and controller.
    #[error("--roles {0:?} must be broker, controller or broker,controller")]
    Roles(String),
    /// `--cluster` is empty.
    #[error("--cluster is empty; name the Kafka cluster (the kafka_cr label of the metrics)")]
    Cluster,
}

/// The broker an observing agent sits beside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The cluster's name.
    pub cluster: String,
    /// The Pod's namespace.
    pub namespace: String,
    /// Its node id.
    pub broker_id: i32,
    /// Its roles.
    pub roles: Roles,
    /// Its broker listener's port.
    pub broker_port: u16,
    /// Its controller listener's port.
    pub controller_port: u16,
    /// Its log dirs, when mounted in the agent.
    pub log_dirs: Vec<PathBuf>,
}

/// Which broker the flags describe; `pod_name` resolves `--broker-id ordinal`.
#[allow(clippy::too_many_arguments)]
pub fn target(
    cluster: &str,
    namespace: &str,
    pod_name: &str,
    broker_id: &str,
    roles: &str,
    broker_port: u16,
    controller_port: u16,
    log_dirs: &[PathBuf],
) -> Result<Target, ObserveError> {
    if cluster.trim().is_empty() {
        return Err(ObserveError::Cluster);
    }
    let broker_id = if broker_id == "ordinal" {
        pod_name
            .rsplit_once('-')
            .and_then(|(_, n)| n.parse::<i32>().ok())
            .filter(|n| *n >= 0)
            .ok_or_else(|| ObserveError::Ordinal(pod_name.to_owned()))?
    } else {
        broker_id
            .parse::<i32>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ObserveError::BrokerId(broker_id.to_owned()))?
    };
    let mut parsed = Roles {
        broker: false,
        controller: false,
    };
    for r in roles.split(',').map(str::trim) {
        match r {
            "broker" => parsed.broker = true,
            "controller" => parsed.controller = true,
            _ => return Err(ObserveError::Roles(roles.to_owned())),
        }
    }
    if !parsed.broker && !parsed.controller {
        return Err(ObserveError::Roles(roles.to_owned()));
    }
    Ok(Target {
        cluster: cluster.to_owned(),
        namespace: namespace.to_owned(),
        broker_id,
        roles: parsed,
        broker_port,
        controller_port,
        log_dirs: log_dirs
            .iter()
            .filter(|d| !d.as_os_str().is_empty())
            .cloned()
            .collect(),
    })
}

impl Target {
    /// The config the agent's checks read, as a rendered broker's would be: the
    /// listeners it talks to and nothing it would render.
    pub fn config(&self) -> ValidatedConfig {
        let listener = |name: &str, port: u16| ValidatedListener {
            name: name.to_owned(),
            protocol: "PLAINTEXT".into(),
            port: Some(port),
            advertised_host: None,
            advertised_port: port,
            advertise_node_address: false,
            tls_dir: None,
        };
        let mut listeners = Vec::new();
        if self.roles.broker {
            listeners.push(listener(BROKER_LISTENER, self.broker_port));
        }
        if self.roles.controller {
            listeners.push(listener(CONTROLLER_LISTENER, self.controller_port));
        }
        ValidatedConfig {
            broker: BrokerRef {
                cluster: self.cluster.clone(),
                namespace: self.namespace.clone(),
                broker_id: self.broker_id,
            },
            roles: self.roles,
            cluster_id: String::new(),
            listeners,
            inter_broker_listener: self.roles.broker.then(|| BROKER_LISTENER.to_owned()),
            controller_listeners: if self.roles.controller {
                vec![CONTROLLER_LISTENER.to_owned()]
            } else {
                Vec::new()
            },
            quorum_voters: String::new(),
            log_dirs: self.log_dirs.clone(),
            user_config: BTreeMap::new(),
            rack_labels: Vec::new(),
            secret_files: BTreeMap::new(),
            log_level: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(pod: &str, id: &str, roles: &str) -> Result<Target, ObserveError> {
        target("kafka", "data", pod, id, roles, 9092, 9093, &[])
    }

    #[test]
    fn a_statefulset_pod_is_the_node_its_ordinal_names() {
        let b = t("kafka-2", "ordinal", "broker,controller").expect("a broker");
        assert_eq!(b.broker_id, 2);
        assert!(b.roles.broker && b.roles.controller);
        let c = b.config();
        assert_eq!(c.internal_listener().and_then(|l| l.port), Some(9092));
        assert_eq!(c.controller_listeners, ["CONTROLLER"]);
        assert_eq!(t("kafka-0", "7", "broker").expect("given").broker_id, 7);
        let controller = t("kraft-1", "ordinal", "controller").expect("a controller");
        assert_eq!(
            controller.config().internal_listener().and_then(|l| l.port),
            Some(9093),
            "a controller is reached on its controller listener"
        );
    }

    #[test]
    fn flags_that_name_no_broker_are_refused_in_words() {
        assert_eq!(
            t("kafka", "ordinal", "broker"),
            Err(ObserveError::Ordinal("kafka".into()))
        );
        assert_eq!(
            t("kafka-0", "x", "broker"),
            Err(ObserveError::BrokerId("x".into()))
        );
        assert_eq!(
            t("kafka-0", "-1", "broker"),
            Err(ObserveError::BrokerId("-1".into()))
        );
        assert_eq!(
            t("kafka-0", "0", "leader"),
            Err(ObserveError::Roles("leader".into()))
        );
        assert_eq!(
            target("", "data", "kafka-0", "0", "broker", 9092, 9093, &[]),
            Err(ObserveError::Cluster)
        );
    }
}
