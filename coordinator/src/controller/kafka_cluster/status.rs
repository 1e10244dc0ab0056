//! Status: conditions, per-broker state and the summary `kubectl get` shows, computed
//! purely from the validated spec and the observed Pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use super::validate::{InvalidSpec, ValidatedCluster};
use crate::crd::v1alpha1::{BrokerStatus, Condition, KafkaClusterStatus};

/// Condition types.
pub const READY: &str = "Ready";
/// Condition types.
pub const RECONCILING: &str = "Reconciling";
/// Condition types.
pub const DEGRADED: &str = "Degraded";
/// Condition types.
pub const INVALID: &str = "Invalid";

/// Now, RFC 3339.
pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// Sets condition `type_` in `conds`, keeping its transition time when its status
/// did not change.
pub fn set_condition(
    conds: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &str,
) {
    let status = if status { "True" } else { "False" };
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status {
            c.last_transition_time = now.to_owned();
        }
        c.status = status.to_owned();
        c.reason = reason.to_owned();
        c.message = message.to_owned();
        c.observed_generation = generation;
    } else {
        conds.push(Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            last_transition_time: now.to_owned(),
            observed_generation: generation,
        });
    }
}

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
    s.state = Some("Invalid".into());
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

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The status after a successful apply, from the Pods observed now (by broker id).
pub fn observed_status(
    previous: &KafkaClusterStatus,
    cluster: &ValidatedCluster,
    cluster_id: &str,
    desired_hashes: &BTreeMap<i32, String>,
    pods: &BTreeMap<i32, Pod>,
    generation: Option<i64>,
    now: &str,
) -> KafkaClusterStatus {
    let mut s = previous.clone();
    s.observed_generation = generation;
    s.cluster_id = Some(cluster_id.to_owned());
    let mut brokers = BTreeMap::new();
    let mut ready = 0;
    for id in cluster.brokers.keys() {
        let pod = pods.get(id);
        let is_ready = pod.is_some_and(pod_ready);
        ready += usize::from(is_ready);
        let prev = previous.brokers_state.get(&id.to_string());
        brokers.insert(
            id.to_string(),
            BrokerStatus {
                pod_phase: Some(
                    pod.and_then(|p| p.status.as_ref()?.phase.clone())
                        .unwrap_or_else(|| "Missing".into()),
                ),
                ready: is_ready,
                desired_config_hash: desired_hashes.get(id).cloned(),
                config_hash_in_force: prev.and_then(|p| p.config_hash_in_force.clone()),
                restart_needed: prev.is_some_and(|p| p.restart_needed),
                restart_reason: prev.and_then(|p| p.restart_reason.clone()),
                out_of_sync_partitions: None,
                // Kept while the broker is down: a roll needs to know its rack.
                rack: prev.and_then(|p| p.rack.clone()),
            },
        );
    }
    s.brokers_state = brokers;
    let total = cluster.brokers.len();
    s.ready_brokers = Some(format!("{ready}/{total}"));
    let all_ready = ready == total;
    s.state = Some(if all_ready { "Running" } else { "Reconciling" }.into());
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
        .filter(|id| !pods.get(id).is_some_and(pod_ready))
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
    } else {
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
        let lost: Vec<&String> = not_ready
            .iter()
            .filter(|id| previous.brokers_state.get(*id).is_some_and(|b| b.ready))
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
            let lost: Vec<&str> = lost.iter().map(|s| s.as_str()).collect();
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
    }
    s
}

/// Two statuses equal up to transition times (which change only with statuses).
pub fn same_status(a: &KafkaClusterStatus, b: &KafkaClusterStatus) -> bool {
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_keeps_its_transition_time_while_its_status_holds() {
        let mut c = Vec::new();
        set_condition(&mut c, READY, false, "A", "a", Some(1), "t1");
        set_condition(&mut c, READY, false, "B", "b", Some(2), "t2");
        assert_eq!(c[0].last_transition_time, "t1");
        assert_eq!(c[0].reason, "B");
        set_condition(&mut c, READY, true, "C", "c", Some(3), "t3");
        assert_eq!(c[0].last_transition_time, "t3");
    }
}
