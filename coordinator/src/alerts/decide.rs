//! Whether an alert's command acts on its cluster, and the spec it leaves: the guards
//! (opt-in, limits, cooldown, replay, one operation at a time) and the change. Pure:
//! the cluster as read, the alert and the time in; a decision out.

use k8s_openapi::{
    api::core::v1::{PersistentVolumeClaimSpec, VolumeResourceRequirements},
    apimachinery::pkg::api::resource::Quantity,
    jiff::{SignedDuration, Timestamp},
};

use super::payload::Alert;
use crate::{
    controller::kafka_cluster::validate::{self, merge},
    crd::v1alpha1::{
        AlertAction, AlertingStatus, Broker, BrokerConfig, ClusterState, KafkaCluster,
        KafkaClusterSpec, StorageConfig,
    },
    quantity,
};

/// `downScaleLimit` when unset.
pub const DEFAULT_DOWN_SCALE_LIMIT: i32 = 3;
/// `cooldownSeconds` when unset.
pub const DEFAULT_COOLDOWN_SECONDS: i64 = 600;
/// Acted alerts kept in the status.
const HANDLED_KEPT: usize = 20;
/// How long an acted alert is kept in the status.
const HANDLED_FOR: SignedDuration = SignedDuration::from_hours(24 * 7);

/// A command with every fact it needs read (which broker, which disk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Add a broker to `group`.
    UpScale {
        /// The group.
        group: String,
    },
    /// Remove `broker`.
    DownScale {
        /// The broker.
        broker: i32,
        /// How it was picked, in words.
        why: String,
    },
    /// Add a disk to `broker`.
    AddPvc {
        /// The broker.
        broker: i32,
        /// The mount path asked for.
        mount_path: String,
        /// Its size.
        size: String,
        /// Its storage class, if given.
        storage_class: Option<String>,
    },
    /// Grow the disk at `mount_path` of `broker`.
    ResizePvc {
        /// The broker.
        broker: i32,
        /// The disk.
        mount_path: String,
        /// By how much.
        increment_by: String,
    },
}

/// What the receiver does with one alert.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Change the spec to `spec`; `change` says what, in words.
    Act {
        /// The new spec.
        spec: Box<KafkaClusterSpec>,
        /// What changes.
        change: String,
    },
    /// Nothing now, by a guard (answered 2xx): cooldown, replay, limit, busy, resolved.
    Hold(String),
    /// Never as written (answered 4xx): the alert or the cluster must change.
    Refuse(String),
}

/// The decision on `cmd` from `alert` for `kc` at `now`.
pub fn decide(kc: &KafkaCluster, alert: &Alert, cmd: &Resolved, now: Timestamp) -> Decision {
    if !alert.firing {
        return Decision::Hold(format!(
            "alert {} is resolved; resolved alerts never act",
            alert.name
        ));
    }
    let Some(guards) = kc.spec.alert_manager_config.as_ref() else {
        return Decision::Refuse(
            "alert-driven scaling is off for this cluster: it has no spec.alertManagerConfig (set it, with the limits alerts may scale within, to turn it on)".into(),
        );
    };
    let cluster = match validate::validate(&kc.spec) {
        Ok(c) => c,
        Err(e) => {
            return Decision::Refuse(format!(
                "the KafkaCluster's spec is invalid ({e}); fix it before alerts may change it"
            ));
        }
    };
    let status = kc.status.clone().unwrap_or_default();
    let cooldown =
        SignedDuration::from_secs(guards.cooldown_seconds.unwrap_or(DEFAULT_COOLDOWN_SECONDS));
    let alerting = status.alerting.clone().unwrap_or_default();
    if let Some(h) = alerting
        .handled
        .iter()
        .rev()
        .find(|h| h.fingerprint == alert.fingerprint && h.starts_at == alert.starts_at)
        && let Some(until) = after(&h.at, cooldown)
        && now < until
    {
        return Decision::Hold(format!(
            "replayed: alert {} (fingerprint {}, firing since {}) already acted at {} ({}); if it still fires after {until} it may act again",
            alert.name, alert.fingerprint, alert.starts_at, h.at, h.change
        ));
    }
    if let Some(last) = alerting.last_action.as_ref() {
        match after(&last.at, cooldown) {
            Some(until) if now < until => {
                return Decision::Hold(format!(
                    "in cooldown until {until}: alert {} acted at {} ({})",
                    last.alert, last.at, last.change
                ));
            }
            Some(_) => {}
            None => {
                return Decision::Hold(format!(
                    "status.alerting.lastAction.at {:?} cannot be read, so the cooldown cannot be checked; no action",
                    last.at
                ));
            }
        }
    }
    if let Some(busy) = busy(&status) {
        return Decision::Hold(busy);
    }
    let brokers = cluster.brokers.values().filter(|b| b.roles.broker).count();
    let brokers = i32::try_from(brokers).unwrap_or(i32::MAX);
    let mut spec = kc.spec.clone();
    match cmd {
        Resolved::UpScale { group } => {
            if !spec.broker_config_groups.contains_key(group) {
                return Decision::Refuse(format!(
                    "brokerConfigGroup {group:?} is not in spec.brokerConfigGroups (it has {}); fix the rule's annotation",
                    spec.broker_config_groups
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if let Some(limit) = guards.up_scale_limit
                && brokers >= limit
            {
                return Decision::Hold(format!(
                    "the cluster has {brokers} brokers, at spec.alertManagerConfig.upScaleLimit {limit}; no broker added"
                ));
            }
            let id = spec.brokers.iter().map(|b| b.id).max().map_or(0, |m| m + 1);
            if id > 65535 || spec.brokers.len() >= 256 {
                return Decision::Hold(
                    "no broker id is free (ids go to 65535, entries to 256); no broker added"
                        .into(),
                );
            }
            spec.brokers.push(Broker {
                id,
                broker_config_group: Some(group.clone()),
                ..Broker::default()
            });
            act(spec, format!("added broker {id} to group {group}"))
        }
        Resolved::DownScale { broker, why } => {
            let Some(b) = cluster.brokers.get(broker) else {
                return Decision::Refuse(format!(
                    "broker {broker} is not in spec.brokers; nothing to remove"
                ));
            };
            if b.roles.controller {
                return Decision::Refuse(format!(
                    "broker {broker} is a KRaft controller; alerts never remove controllers (change the quorum by hand)"
                ));
            }
            let limit = guards.down_scale_limit.unwrap_or(DEFAULT_DOWN_SCALE_LIMIT);
            if brokers <= limit {
                return Decision::Hold(format!(
                    "the cluster has {brokers} brokers, at spec.alertManagerConfig.downScaleLimit {limit}; no broker removed"
                ));
            }
            spec.brokers.retain(|b| b.id != *broker);
            act(
                spec,
                format!("removed broker {broker} ({why}); its replicas move off before it goes"),
            )
        }
        Resolved::AddPvc {
            broker,
            mount_path,
            size,
            storage_class,
        } => {
            if let Some(refusal) = over_max(guards.max_disk_size.as_deref(), size) {
                return Decision::Refuse(format!("addPvc diskSize {size}: {refusal}"));
            }
            let Some((entry, mut storage)) = storage_of(&mut spec, *broker) else {
                return Decision::Refuse(format!(
                    "broker {broker} is not in spec.brokers; no disk added"
                ));
            };
            let taken = |p: &str| {
                storage
                    .iter()
                    .any(|s| s.mount_path.trim_end_matches('/') == p)
            };
            let path = (1..)
                .map(|n| {
                    if n == 1 {
                        mount_path.clone()
                    } else {
                        format!("{mount_path}-{n}")
                    }
                })
                .find(|p| !taken(p))
                .expect("some suffix is free");
            let class = storage_class.clone().or_else(|| {
                storage
                    .iter()
                    .find_map(|s| s.pvc_spec.as_ref()?.storage_class_name.clone())
            });
            storage.push(StorageConfig {
                mount_path: path.clone(),
                pvc_spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: class,
                    resources: Some(VolumeResourceRequirements {
                        requests: Some([("storage".to_owned(), Quantity(size.clone()))].into()),
                        ..VolumeResourceRequirements::default()
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                empty_dir: None,
            });
            own_config(entry).storage_configs = storage;
            act(
                spec,
                format!("added a {size} disk at {path} to broker {broker}"),
            )
        }
        Resolved::ResizePvc {
            broker,
            mount_path,
            increment_by,
        } => {
            let Some((entry, mut storage)) = storage_of(&mut spec, *broker) else {
                return Decision::Refuse(format!(
                    "broker {broker} is not in spec.brokers; no disk resized"
                ));
            };
            let wanted = mount_path.trim_end_matches('/');
            let Some(disk) = storage
                .iter_mut()
                .find(|s| s.mount_path.trim_end_matches('/') == wanted)
            else {
                return Decision::Refuse(format!(
                    "broker {broker} has no disk at {mount_path}; nothing to resize"
                ));
            };
            let Some(requests) = disk
                .pvc_spec
                .as_mut()
                .and_then(|p| p.resources.as_mut())
                .and_then(|r| r.requests.as_mut())
            else {
                return Decision::Refuse(format!(
                    "broker {broker}'s disk at {mount_path} is not a claim with a storage request; it cannot grow"
                ));
            };
            let current = requests
                .get("storage")
                .map(|q| q.0.clone())
                .unwrap_or_default();
            let (Some(from), Some(by)) = (quantity::bytes(&current), quantity::bytes(increment_by))
            else {
                return Decision::Refuse(format!(
                    "broker {broker}'s disk at {mount_path} asks for {current:?}, which cannot be read as a size"
                ));
            };
            let to = quantity::format(from + by);
            if let Some(refusal) = over_max(guards.max_disk_size.as_deref(), &to) {
                return Decision::Hold(format!(
                    "broker {broker}'s disk at {mount_path} would grow from {current} to {to}: {refusal}; not resized"
                ));
            }
            requests.insert("storage".into(), Quantity(to.clone()));
            own_config(entry).storage_configs = storage;
            act(
                spec,
                format!("grew broker {broker}'s disk at {mount_path} from {current} to {to}"),
            )
        }
    }
}

/// The change, unless it would leave a spec the controller refuses (then nothing is
/// written and the refusal says what stands in the way).
fn act(spec: KafkaClusterSpec, change: String) -> Decision {
    if let Err(e) = validate::validate(&spec) {
        return Decision::Refuse(format!(
            "the change ({change}) would leave the spec invalid: {e}"
        ));
    }
    Decision::Act {
        spec: Box::new(spec),
        change,
    }
}

/// RFC 3339 `at` plus `by`; None when `at` cannot be read.
fn after(at: &str, by: SignedDuration) -> Option<Timestamp> {
    at.parse::<Timestamp>().ok()?.checked_add(by).ok()
}

/// Why the cluster is not free for a scaling change, if it is not.
fn busy(status: &crate::crd::v1alpha1::KafkaClusterStatus) -> Option<String> {
    if let Some(s) = status.scaling.as_ref() {
        let mut what = Vec::new();
        what.extend(
            s.adding
                .iter()
                .map(|b| format!("broker {b} is being added")),
        );
        what.extend(
            s.removing
                .iter()
                .map(|r| format!("broker {} is being removed", r.broker)),
        );
        what.extend(
            s.disks
                .iter()
                .map(|d| format!("disk {} of broker {} is changing", d.mount_path, d.broker)),
        );
        if !what.is_empty() {
            return Some(format!(
                "a scaling operation runs ({}); one at a time",
                what.join(", ")
            ));
        }
    }
    if status.rolling_upgrade.is_some() {
        return Some("a rolling restart runs; alerts act once it is done".into());
    }
    match status.state {
        Some(ClusterState::Running) => None,
        other => Some(format!(
            "the cluster is not Running (state {other:?}, {} brokers ready); alerts act only on a running cluster",
            status.ready_brokers.as_deref().unwrap_or("?")
        )),
    }
}

/// Why `size` is over `max`, if it is.
fn over_max(max: Option<&str>, size: &str) -> Option<String> {
    let max = max?;
    match (quantity::bytes(max), quantity::bytes(size)) {
        (Some(m), Some(s)) if s <= m => None,
        (Some(_), Some(_)) => Some(format!(
            "more than spec.alertManagerConfig.maxDiskSize {max}"
        )),
        _ => Some(format!(
            "cannot be compared with spec.alertManagerConfig.maxDiskSize {max}"
        )),
    }
}

/// Broker `id`'s entry and its effective disks (its own, else its group's).
fn storage_of(spec: &mut KafkaClusterSpec, id: i32) -> Option<(&mut Broker, Vec<StorageConfig>)> {
    let groups = spec.broker_config_groups.clone();
    let entry = spec.brokers.iter_mut().find(|b| b.id == id)?;
    let group = entry
        .broker_config_group
        .as_ref()
        .and_then(|g| groups.get(g));
    let storage = merge(group, entry.broker_config.as_ref()).storage_configs;
    Some((entry, storage))
}

fn own_config(entry: &mut Broker) -> &mut BrokerConfig {
    entry
        .broker_config
        .get_or_insert_with(BrokerConfig::default)
}

/// The status record after `alert` made `change` at `now`: it becomes the last
/// action, and joins the handled alerts (the oldest beyond 20 or a week dropped).
pub fn record(
    previous: Option<&AlertingStatus>,
    alert: &Alert,
    command: &str,
    change: &str,
    now: Timestamp,
) -> AlertingStatus {
    let action = AlertAction {
        alert: alert.name.clone(),
        fingerprint: alert.fingerprint.clone(),
        starts_at: alert.starts_at.clone(),
        command: command.to_owned(),
        change: change.to_owned(),
        at: now.to_string(),
    };
    let mut handled: Vec<AlertAction> = previous
        .map(|p| p.handled.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|h| after(&h.at, HANDLED_FOR).is_some_and(|until| now < until))
        .collect();
    handled.push(action.clone());
    let excess = handled.len().saturating_sub(HANDLED_KEPT);
    handled.drain(..excess);
    AlertingStatus {
        last_action: Some(action),
        handled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        controller::kafka_cluster::test_support::example,
        crd::v1alpha1::{AlertManagerConfig, BrokerRemoval, KafkaClusterStatus, ScalingStatus},
    };

    fn now() -> Timestamp {
        "2026-12-03T12:00:00Z".parse().expect("a time")
    }

    fn running() -> KafkaCluster {
        let mut kc = example();
        kc.spec.alert_manager_config = Some(AlertManagerConfig::default());
        kc.status = Some(KafkaClusterStatus {
            state: Some(ClusterState::Running),
            ..KafkaClusterStatus::default()
        });
        kc
    }

    fn alert() -> Alert {
        Alert {
            name: "BrokerOverLoaded".into(),
            labels: [("alertname".to_owned(), "BrokerOverLoaded".to_owned())].into(),
            annotations: Default::default(),
            starts_at: "2026-12-03T11:50:00Z".into(),
            firing: true,
            fingerprint: "f1".into(),
        }
    }

    fn up() -> Resolved {
        Resolved::UpScale {
            group: "default_group".into(),
        }
    }

    fn acted(d: Decision) -> (KafkaClusterSpec, String) {
        match d {
            Decision::Act { spec, change } => (*spec, change),
            other => panic!("expected an action, got {other:?}"),
        }
    }

    fn held(d: Decision) -> String {
        match d {
            Decision::Hold(why) => why,
            other => panic!("expected a hold, got {other:?}"),
        }
    }

    fn refused(d: Decision) -> String {
        match d {
            Decision::Refuse(why) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn upscale_adds_the_next_free_id_in_the_group() {
        let kc = running();
        let max = kc.spec.brokers.iter().map(|b| b.id).max().expect("brokers");
        let (spec, change) = acted(decide(&kc, &alert(), &up(), now()));
        let added = spec.brokers.last().expect("a broker");
        assert_eq!(added.id, max + 1);
        assert_eq!(added.broker_config_group.as_deref(), Some("default_group"));
        assert_eq!(spec.brokers.len(), kc.spec.brokers.len() + 1);
        assert!(change.contains(&format!("broker {}", max + 1)), "{change}");
        validate::validate(&spec).expect("the new spec is valid");
    }

    #[test]
    fn a_cluster_that_did_not_opt_in_is_never_changed() {
        let mut kc = running();
        kc.spec.alert_manager_config = None;
        assert!(refused(decide(&kc, &alert(), &up(), now())).contains("spec.alertManagerConfig"));
    }

    #[test]
    fn resolved_replayed_cooling_and_busy_alerts_hold() {
        let kc = running();
        let mut resolved = alert();
        resolved.firing = false;
        assert!(held(decide(&kc, &resolved, &up(), now())).contains("resolved"));

        let mut cooling = running();
        let status = cooling.status.as_mut().expect("status");
        let at: Timestamp = "2026-12-03T11:55:00Z".parse().expect("time");
        status.alerting = Some(record(None, &alert(), "upScale", "added broker 9", at));
        assert!(held(decide(&cooling, &alert(), &up(), now())).starts_with("replayed"));
        let mut other = alert();
        other.fingerprint = "f2".into();
        let why = held(decide(&cooling, &other, &up(), now()));
        assert!(why.contains("cooldown until 2026-12-03T12:05:00Z"), "{why}");
        // After the cooldown, the same alert still firing acts again (Koperator #628).
        let later: Timestamp = "2026-12-03T12:06:00Z".parse().expect("time");
        acted(decide(&cooling, &alert(), &up(), later));

        let mut busy = running();
        busy.status.as_mut().expect("status").scaling = Some(ScalingStatus {
            removing: vec![BrokerRemoval {
                broker: 2,
                ..BrokerRemoval::default()
            }],
            ..ScalingStatus::default()
        });
        assert!(held(decide(&busy, &alert(), &up(), now())).contains("broker 2 is being removed"));
        let mut reconciling = running();
        reconciling.status.as_mut().expect("status").state = Some(ClusterState::Reconciling);
        assert!(held(decide(&reconciling, &alert(), &up(), now())).contains("not Running"));
    }

    #[test]
    fn limits_hold_and_wrong_targets_are_refused() {
        let mut kc = running();
        let brokers = i32::try_from(
            validate::validate(&kc.spec)
                .expect("valid")
                .brokers
                .values()
                .filter(|b| b.roles.broker)
                .count(),
        )
        .expect("small");
        kc.spec.alert_manager_config = Some(AlertManagerConfig {
            up_scale_limit: Some(brokers),
            down_scale_limit: Some(brokers),
            ..AlertManagerConfig::default()
        });
        assert!(held(decide(&kc, &alert(), &up(), now())).contains("upScaleLimit"));
        let down = |broker| Resolved::DownScale {
            broker,
            why: "its brokerId label".into(),
        };
        assert!(held(decide(&kc, &alert(), &down(0), now())).contains("downScaleLimit"));
        assert!(refused(decide(&kc, &alert(), &down(77), now())).contains("not in spec.brokers"));
        let controller = validate::validate(&kc.spec)
            .expect("valid")
            .brokers
            .values()
            .find(|b| b.roles.controller)
            .map(|b| b.id)
            .expect("a controller");
        assert!(refused(decide(&kc, &alert(), &down(controller), now())).contains("controller"));
        let unknown = Resolved::UpScale {
            group: "nope".into(),
        };
        assert!(refused(decide(&kc, &alert(), &unknown, now())).contains("default_group"));
    }

    #[test]
    fn downscale_removes_the_broker_above_the_limit() {
        let mut kc = running();
        kc.spec.alert_manager_config = Some(AlertManagerConfig {
            down_scale_limit: Some(1),
            ..AlertManagerConfig::default()
        });
        let cmd = Resolved::DownScale {
            broker: 2,
            why: "fewest replicas".into(),
        };
        let (spec, change) = acted(decide(&kc, &alert(), &cmd, now()));
        assert!(spec.brokers.iter().all(|b| b.id != 2));
        assert_eq!(spec.brokers.len(), kc.spec.brokers.len() - 1);
        assert!(change.contains("fewest replicas"), "{change}");
    }

    #[test]
    fn addpvc_gives_one_broker_its_groups_disks_plus_a_new_one() {
        let mut kc = running();
        let cmd = Resolved::AddPvc {
            broker: 1,
            mount_path: "/kafka-logs".into(),
            size: "2Gi".into(),
            storage_class: None,
        };
        assert!(
            kc.spec.cruise_control_config.is_some(),
            "the example has Cruise Control"
        );
        let capacity = |kc: &mut KafkaCluster, c: Option<&str>| {
            kc.spec
                .cruise_control_config
                .as_mut()
                .expect("Cruise Control")
                .capacity_config = c.map(str::to_owned);
        };
        capacity(
            &mut kc,
            Some(
                r#"{"brokerCapacities":[{"brokerId":"-1","capacity":{"DISK":"1000","CPU":"100","NW_IN":"10000","NW_OUT":"10000"}}]}"#,
            ),
        );
        let why = refused(decide(&kc, &alert(), &cmd, now()));
        assert!(
            why.contains("would leave the spec invalid") && why.contains("DISK per log dir"),
            "{why}"
        );
        capacity(&mut kc, None);
        let (spec, change) = acted(decide(&kc, &alert(), &cmd, now()));
        let own = spec.brokers[1]
            .broker_config
            .as_ref()
            .expect("own config")
            .storage_configs
            .clone();
        let paths: Vec<&str> = own.iter().map(|s| s.mount_path.as_str()).collect();
        assert_eq!(
            paths,
            ["/kafka-logs", "/kafka-logs-2"],
            "the taken path gets a suffix"
        );
        assert!(change.contains("/kafka-logs-2"), "{change}");
        assert!(
            spec.brokers[0]
                .broker_config
                .as_ref()
                .is_none_or(|c| c.storage_configs.is_empty()),
            "other brokers keep their group's"
        );
        validate::validate(&spec).expect("the new spec is valid");

        let mut capped = kc.clone();
        capped.spec.alert_manager_config = Some(AlertManagerConfig {
            max_disk_size: Some("1Gi".into()),
            ..AlertManagerConfig::default()
        });
        assert!(refused(decide(&capped, &alert(), &cmd, now())).contains("maxDiskSize 1Gi"));
    }

    #[test]
    fn resizepvc_grows_one_brokers_disk_up_to_the_cap() {
        let kc = running();
        let cmd = Resolved::ResizePvc {
            broker: 1,
            mount_path: "/kafka-logs".into(),
            increment_by: "1Gi".into(),
        };
        let (spec, change) = acted(decide(&kc, &alert(), &cmd, now()));
        let own = &spec.brokers[1]
            .broker_config
            .as_ref()
            .expect("own")
            .storage_configs[0];
        let storage = &own
            .pvc_spec
            .as_ref()
            .expect("pvc")
            .resources
            .as_ref()
            .expect("r")
            .requests
            .as_ref()
            .expect("q")["storage"];
        assert_eq!(storage.0, "2Gi");
        assert_eq!(
            change,
            "grew broker 1's disk at /kafka-logs from 1Gi to 2Gi"
        );

        let mut capped = running();
        capped.spec.alert_manager_config = Some(AlertManagerConfig {
            max_disk_size: Some("1500Mi".into()),
            ..AlertManagerConfig::default()
        });
        assert!(held(decide(&capped, &alert(), &cmd, now())).contains("maxDiskSize 1500Mi"));
        let missing = Resolved::ResizePvc {
            broker: 1,
            mount_path: "/elsewhere".into(),
            increment_by: "1Gi".into(),
        };
        assert!(refused(decide(&kc, &alert(), &missing, now())).contains("no disk at /elsewhere"));
    }

    #[test]
    fn the_record_keeps_the_newest_twenty_of_the_last_week() {
        let mut status = None;
        let start: Timestamp = "2026-11-20T00:00:00Z".parse().expect("time");
        for i in 0..30 {
            let mut a = alert();
            a.fingerprint = format!("f{i}");
            let at = start + SignedDuration::from_hours(i);
            status = Some(record(status.as_ref(), &a, "upScale", "x", at));
        }
        let s = status.expect("a record");
        assert_eq!(s.handled.len(), 20);
        assert_eq!(s.handled.last().expect("newest").fingerprint, "f29");
        assert_eq!(s.last_action.as_ref().expect("last").fingerprint, "f29");
        let much_later = start + SignedDuration::from_hours(24 * 30);
        let s = record(Some(&s), &alert(), "upScale", "y", much_later);
        assert_eq!(s.handled.len(), 1, "week-old entries are dropped");
    }
}
