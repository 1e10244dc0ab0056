//! Status: conditions, per-broker state and the summary `kubectl get` shows, computed
//! purely from the validated spec and what the pass observed of each broker.

use std::collections::BTreeMap;

use super::validate::{InvalidSpec, ValidatedCluster};
use crate::{
    controller::conditions::{DEGRADED, INVALID, READY, RECONCILING, set_condition},
    crd::v1alpha1::{
        BrokerState, BrokerStatus, ClusterState, KafkaClusterStatus, RestartCause, RestartCauseKind,
    },
};

/// The status of a spec that failed validation: only `Invalid` says why; the rest
/// of the status (cluster id, broker states) is kept.
pub fn invalid_status(
    previous: &KafkaClusterStatus,
    err: &InvalidSpec,
    generation: Option<i64>,
    now: &str,
) -> KafkaClusterStatus {
    let mut s = previous.clone();
    s.observed_generation = generation;
    s.state = Some(ClusterState::Invalid);
    set_condition(
        &mut s.conditions,
        INVALID,
        true,
        err.reason,
        &err.message,
        generation,
        now,
    );
    set_condition(
        &mut s.conditions,
        RECONCILING,
        false,
        "InvalidSpec",
        "fix the spec; nothing was changed",
        generation,
        now,
    );
    s
}

/// What the pass knows of one broker of the spec.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BrokerFacts {
    /// Its Pod's phase (`Missing` when it has none).
    pub pod_phase: String,
    /// Its Pod is being deleted.
    pub pod_terminating: bool,
    /// Its Pod's Ready condition.
    pub pod_ready: bool,
    /// What its agent reported: ready, and why not. None when it was not asked (no
    /// running Pod with an address).
    pub agent: Option<AgentFacts>,
    /// Hash of its desired config.
    pub desired_config_hash: String,
    /// Why it waits for a restart.
    pub causes: Vec<RestartCause>,
    /// Its restart is in progress in the roll.
    pub restarting: bool,
    /// It was removed from the spec and drains.
    pub draining: bool,
    /// Its `spec.brokers` entry, as JSON.
    pub last_applied: Option<String>,
    /// The disks it is built with, disks still being removed included.
    pub storage_configs: Vec<crate::crd::v1alpha1::StorageConfig>,
}

/// What a broker's agent said, or why it said nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentFacts {
    /// The agent answered.
    Reported {
        /// Its readiness.
        ready: bool,
        /// Why not ready.
        not_ready_reason: String,
        /// Hash of the config in force.
        config_hash_in_force: String,
        /// Replicas out of their ISR.
        out_of_sync: u32,
        /// broker.rack, empty if none.
        rack: String,
    },
    /// The agent did not answer.
    Unreachable(String),
}

/// `restartReason`: the causes in words.
pub fn restart_reason(causes: &[RestartCause]) -> Option<String> {
    let words: Vec<String> = causes
        .iter()
        .map(|c| match c.kind {
            RestartCauseKind::PodTemplate => {
                "the Pod's template changed (image, resources, JVM options, volumes or scheduling)"
                    .to_owned()
            }
            RestartCauseKind::StaticConfig => {
                format!("static config changed: {}", c.keys.join(", "))
            }
            RestartCauseKind::FilesystemResize => {
                format!("the filesystem of {} grows on restart", c.keys.join(", "))
            }
        })
        .collect();
    (!words.is_empty()).then(|| words.join("; "))
}

fn broker_status(prev: Option<&BrokerStatus>, f: &BrokerFacts) -> BrokerStatus {
    let (ready, not_ready_reason, in_force, out_of_sync, rack) = match &f.agent {
        Some(AgentFacts::Reported {
            ready,
            not_ready_reason,
            config_hash_in_force,
            out_of_sync,
            rack,
        }) => (
            f.pod_ready && *ready,
            (!ready).then(|| not_ready_reason.clone()),
            Some(config_hash_in_force.clone()),
            Some(*out_of_sync),
            (!rack.is_empty()).then(|| rack.clone()),
        ),
        Some(AgentFacts::Unreachable(why)) => (
            false,
            Some(format!("its agent does not answer: {why}")),
            prev.and_then(|p| p.config_hash_in_force.clone()),
            None,
            prev.and_then(|p| p.rack.clone()),
        ),
        // Not asked: the Pod is not running; what the agent said last stays known (a
        // roll needs the rack of a broker that is down).
        None => (
            f.pod_ready,
            None,
            prev.and_then(|p| p.config_hash_in_force.clone()),
            None,
            prev.and_then(|p| p.rack.clone()),
        ),
    };
    let state = if f.draining {
        BrokerState::Draining
    } else if f.restarting {
        BrokerState::Restarting
    } else if f.pod_terminating {
        BrokerState::Stopping
    } else if f.pod_phase != "Running" {
        BrokerState::Pending
    } else if ready {
        BrokerState::Ready
    } else {
        BrokerState::NotReady
    };
    BrokerStatus {
        state: Some(state),
        pod_phase: Some(f.pod_phase.clone()),
        ready,
        not_ready_reason,
        desired_config_hash: Some(f.desired_config_hash.clone()),
        config_hash_in_force: in_force,
        restart_needed: !f.causes.is_empty(),
        restart_reason: restart_reason(&f.causes),
        restart_causes: f.causes.clone(),
        out_of_sync_partitions: out_of_sync,
        rack,
        last_applied: f
            .last_applied
            .clone()
            .or_else(|| prev.and_then(|p| p.last_applied.clone())),
        storage_configs: f.storage_configs.clone(),
    }
}

/// The status of a reconciled spec, from what the pass observed of every broker.
pub fn observed_status(
    previous: &KafkaClusterStatus,
    cluster: &ValidatedCluster,
    cluster_id: &str,
    brokers: &BTreeMap<i32, BrokerFacts>,
    rolling: bool,
    generation: Option<i64>,
    now: &str,
) -> KafkaClusterStatus {
    let mut s = previous.clone();
    s.observed_generation = generation;
    s.cluster_id = Some(cluster_id.to_owned());
    s.brokers_state = cluster
        .brokers
        .keys()
        .map(|id| {
            let facts = brokers.get(id).cloned().unwrap_or_else(|| BrokerFacts {
                pod_phase: "Missing".into(),
                ..BrokerFacts::default()
            });
            let key = id.to_string();
            let status = broker_status(previous.brokers_state.get(&key), &facts);
            (key, status)
        })
        .collect();
    // Ready counts Pods the kubelet reports ready (their readiness probe is the agent's
    // /readyz).
    let pod_ready = |id: &i32| brokers.get(id).is_some_and(|f| f.pod_ready);
    let total = cluster.brokers.len();
    let ready = cluster.brokers.keys().filter(|id| pod_ready(id)).count();
    s.ready_brokers = Some(format!("{ready}/{total}"));
    let all_ready = ready == total;
    s.state = Some(if rolling {
        ClusterState::RollingUpgrading
    } else if all_ready {
        ClusterState::Running
    } else {
        ClusterState::Reconciling
    });
    set_condition(
        &mut s.conditions,
        INVALID,
        false,
        "SpecValid",
        "the spec passed validation",
        generation,
        now,
    );
    let not_ready: Vec<String> = cluster
        .brokers
        .keys()
        .filter(|id| !pod_ready(id))
        .map(ToString::to_string)
        .collect();
    if all_ready {
        set_condition(
            &mut s.conditions,
            READY,
            true,
            "AllBrokersReady",
            &format!("{total} of {total} brokers ready"),
            generation,
            now,
        );
        set_condition(
            &mut s.conditions,
            RECONCILING,
            false,
            "Reconciled",
            "every object matches the spec",
            generation,
            now,
        );
        set_condition(
            &mut s.conditions,
            DEGRADED,
            false,
            "AllBrokersReady",
            "no broker is down",
            generation,
            now,
        );
        return s;
    }
    let msg = format!(
        "{ready} of {total} brokers ready; waiting for broker(s) {}",
        not_ready.join(", ")
    );
    set_condition(
        &mut s.conditions,
        READY,
        false,
        "BrokersNotReady",
        &msg,
        generation,
        now,
    );
    set_condition(
        &mut s.conditions,
        RECONCILING,
        true,
        "WaitingForBrokers",
        &msg,
        generation,
        now,
    );
    // A broker that was ready and is not any more degrades the cluster.
    let lost: Vec<&str> = not_ready
        .iter()
        .filter(|id| previous.brokers_state.get(*id).is_some_and(|b| b.ready))
        .map(String::as_str)
        .collect();
    if lost.is_empty() {
        set_condition(
            &mut s.conditions,
            DEGRADED,
            false,
            "NoBrokerLost",
            "no ready broker went down",
            generation,
            now,
        );
    } else {
        set_condition(
            &mut s.conditions,
            DEGRADED,
            true,
            "BrokerNotReady",
            &format!("broker(s) {} went from ready to not ready", lost.join(", ")),
            generation,
            now,
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::kafka_cluster::{test_support::example_spec, validate::validate};

    fn facts(phase: &str, pod_ready: bool) -> BrokerFacts {
        BrokerFacts {
            pod_phase: phase.into(),
            pod_ready,
            desired_config_hash: "h1".into(),
            ..BrokerFacts::default()
        }
    }

    fn reported(ready: bool, why: &str) -> Option<AgentFacts> {
        Some(AgentFacts::Reported {
            ready,
            not_ready_reason: why.into(),
            config_hash_in_force: "h0".into(),
            out_of_sync: 2,
            rack: "a".into(),
        })
    }

    #[test]
    fn broker_states_follow_the_pod_and_the_agent() {
        let cluster = validate(&example_spec()).expect("valid");
        let mut brokers = BTreeMap::new();
        brokers.insert(
            0,
            BrokerFacts {
                agent: reported(true, ""),
                ..facts("Running", true)
            },
        );
        brokers.insert(
            1,
            BrokerFacts {
                agent: reported(false, "registered: not yet"),
                ..facts("Running", true)
            },
        );
        brokers.insert(
            2,
            BrokerFacts {
                pod_terminating: true,
                ..facts("Running", false)
            },
        );
        brokers.insert(
            100,
            BrokerFacts {
                restarting: true,
                ..facts("Pending", false)
            },
        );
        let s = observed_status(
            &KafkaClusterStatus::default(),
            &cluster,
            "id",
            &brokers,
            true,
            Some(1),
            "t",
        );
        let state = |id: &str| s.brokers_state[id].state;
        assert_eq!(state("0"), Some(BrokerState::Ready));
        assert_eq!(state("1"), Some(BrokerState::NotReady));
        assert_eq!(
            s.brokers_state["1"].not_ready_reason.as_deref(),
            Some("registered: not yet")
        );
        assert_eq!(state("2"), Some(BrokerState::Stopping));
        assert_eq!(state("100"), Some(BrokerState::Restarting));
        assert_eq!(s.state, Some(ClusterState::RollingUpgrading));
        assert_eq!(s.ready_brokers.as_deref(), Some("2/4"));
        assert_eq!(s.brokers_state["0"].rack.as_deref(), Some("a"));
        assert_eq!(s.brokers_state["0"].out_of_sync_partitions, Some(2));
    }

    #[test]
    fn an_unreachable_agent_keeps_what_it_said_last_and_says_why() {
        let cluster = validate(&example_spec()).expect("valid");
        let mut previous = KafkaClusterStatus::default();
        previous.brokers_state.insert(
            "0".into(),
            BrokerStatus {
                ready: true,
                rack: Some("b".into()),
                config_hash_in_force: Some("h0".into()),
                ..BrokerStatus::default()
            },
        );
        let brokers = BTreeMap::from([(
            0,
            BrokerFacts {
                agent: Some(AgentFacts::Unreachable("connection refused".into())),
                ..facts("Running", false)
            },
        )]);
        let s = observed_status(&previous, &cluster, "id", &brokers, false, None, "t");
        let b = &s.brokers_state["0"];
        assert!(!b.ready);
        assert_eq!(b.rack.as_deref(), Some("b"));
        assert_eq!(b.config_hash_in_force.as_deref(), Some("h0"));
        assert!(
            b.not_ready_reason
                .as_deref()
                .is_some_and(|r| r.contains("connection refused"))
        );
        let degraded = s
            .conditions
            .iter()
            .find(|c| c.type_ == DEGRADED)
            .expect("Degraded");
        assert_eq!(degraded.status, "True", "broker 0 was ready");
        assert_eq!(s.brokers_state["1"].pod_phase.as_deref(), Some("Missing"));
        assert_eq!(s.state, Some(ClusterState::Reconciling));
    }

    #[test]
    fn restart_reasons_name_every_cause() {
        let causes = [
            RestartCause {
                kind: RestartCauseKind::PodTemplate,
                keys: vec![],
            },
            RestartCause {
                kind: RestartCauseKind::StaticConfig,
                keys: vec!["listeners".into(), "log.dirs".into()],
            },
        ];
        let reason = restart_reason(&causes).expect("a reason");
        assert!(reason.starts_with("the Pod's template changed"), "{reason}");
        assert!(
            reason.ends_with("static config changed: listeners, log.dirs"),
            "{reason}"
        );
        assert_eq!(restart_reason(&[]), None);
    }
}
