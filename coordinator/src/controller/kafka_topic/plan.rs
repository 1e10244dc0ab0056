//! What to do about a topic: pure decisions from the spec, what Kafka has, and what
//! this resource managed before. Every refusal is decided before any write, so a bad
//! change applies nothing.

use std::collections::BTreeMap;

use crate::{
    crd::v1alpha1::KafkaTopicSpec,
    kafka_admin::{ConfigValue, TopicState},
};

/// A refusal: the condition's reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// PascalCase reason.
    pub reason: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

fn refuse(reason: &'static str, message: String) -> Refusal {
    Refusal { reason, message }
}

/// Checks a spec on its own.
pub fn validate(spec: &KafkaTopicSpec) -> Result<(), Refusal> {
    let n = &spec.name;
    if n.is_empty()
        || n.len() > 249
        || n == "."
        || n == ".."
        || !n
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(refuse(
            "InvalidTopicName",
            format!(
                "spec.name {n:?} is not a legal topic name: 1-249 characters of letters, digits, '.', '_' and '-', and not \".\" or \"..\""
            ),
        ));
    }
    if spec.partitions == 0 || spec.partitions < -1 {
        return Err(refuse(
            "InvalidPartitions",
            format!(
                "spec.partitions is {}; use 1 or more (or -1 for the broker default)",
                spec.partitions
            ),
        ));
    }
    if spec.replication_factor == 0 || spec.replication_factor < -1 {
        return Err(refuse(
            "InvalidReplicationFactor",
            format!(
                "spec.replicationFactor is {}; use 1 or more (or -1 for the broker default)",
                spec.replication_factor
            ),
        ));
    }
    for (k, v) in &spec.config {
        if k.is_empty()
            || !k
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(refuse(
                "InvalidConfig",
                format!("spec.config key {k:?} is not a valid config key"),
            ));
        }
        if v.contains(['\n', '\r', '\0']) {
            return Err(refuse(
                "InvalidConfig",
                format!("spec.config `{k}` has a line break in its value"),
            ));
        }
    }
    Ok(())
}

/// Changes to an existing topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicChanges {
    /// New partition count, if it grows.
    pub partitions: Option<i32>,
    /// Configs to set.
    pub set: BTreeMap<String, String>,
    /// Configs to return to the broker default.
    pub delete: Vec<String>,
}

impl TopicChanges {
    /// True when nothing changes.
    pub fn is_empty(&self) -> bool {
        self.partitions.is_none() && self.set.is_empty() && self.delete.is_empty()
    }
}

/// Plans the changes to an existing topic. `managed_before` are the config keys this
/// resource managed so far (its status): a key removed from the spec returns to the
/// default; keys it never managed are left alone.
pub fn plan_changes(
    spec: &KafkaTopicSpec,
    topic: &TopicState,
    configs: &BTreeMap<String, ConfigValue>,
    managed_before: &[String],
) -> Result<TopicChanges, Refusal> {
    if spec.partitions != -1 && spec.partitions < topic.partitions {
        return Err(refuse(
            "PartitionDecrease",
            format!(
                "spec.partitions is {} but topic {} has {}: Kafka cannot remove partitions; set {} or more (or recreate the topic under another name)",
                spec.partitions, spec.name, topic.partitions, topic.partitions
            ),
        ));
    }
    if spec.replication_factor != -1 && spec.replication_factor != topic.replication_factor {
        return Err(refuse(
            "ReplicationFactorChange",
            format!(
                "spec.replicationFactor is {} but topic {} has {}: changing it needs a partition reassignment, which Stoker does not do for topics yet; set it back to {}",
                spec.replication_factor,
                spec.name,
                topic.replication_factor,
                topic.replication_factor
            ),
        ));
    }
    let mut c = TopicChanges {
        partitions: (spec.partitions > topic.partitions).then_some(spec.partitions),
        ..TopicChanges::default()
    };
    for (k, v) in &spec.config {
        let current = configs.get(k);
        let same =
            current.is_some_and(|cv| !cv.is_default && cv.value.as_deref() == Some(v.as_str()));
        if !same {
            c.set.insert(k.clone(), v.clone());
        }
    }
    for k in managed_before {
        if !spec.config.contains_key(k) && configs.get(k).is_some_and(|cv| !cv.is_default) {
            c.delete.push(k.clone());
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::v1alpha1::ClusterRef;

    fn spec(partitions: i32, rf: i32, config: &[(&str, &str)]) -> KafkaTopicSpec {
        KafkaTopicSpec {
            cluster_ref: ClusterRef {
                name: "kafka".into(),
                namespace: None,
            },
            name: "orders".into(),
            partitions,
            replication_factor: rf,
            config: config
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            deletion_policy: None,
        }
    }

    fn topic() -> TopicState {
        TopicState {
            id: "id".into(),
            partitions: 3,
            replication_factor: 3,
        }
    }

    fn cfg(entries: &[(&str, &str, bool)]) -> BTreeMap<String, ConfigValue> {
        entries
            .iter()
            .map(|(k, v, d)| {
                (
                    (*k).to_owned(),
                    ConfigValue {
                        value: Some((*v).to_owned()),
                        is_default: *d,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn bad_specs_are_refused_with_the_field_named() {
        assert_eq!(
            validate(&spec(0, 3, &[])).expect_err("zero").reason,
            "InvalidPartitions"
        );
        assert_eq!(
            validate(&spec(3, -2, &[])).expect_err("negative").reason,
            "InvalidReplicationFactor"
        );
        let mut s = spec(3, 3, &[]);
        s.name = "bad name!".into();
        assert_eq!(validate(&s).expect_err("name").reason, "InvalidTopicName");
        assert!(validate(&spec(-1, -1, &[("retention.ms", "1")])).is_ok());
    }

    #[test]
    fn partitions_only_grow_and_the_replication_factor_is_fixed() {
        assert_eq!(
            plan_changes(&spec(5, 3, &[]), &topic(), &cfg(&[]), &[])
                .expect("grows")
                .partitions,
            Some(5)
        );
        let r = plan_changes(&spec(2, 3, &[]), &topic(), &cfg(&[]), &[]).expect_err("shrink");
        assert_eq!(r.reason, "PartitionDecrease");
        assert!(r.message.contains("has 3"));
        assert_eq!(
            plan_changes(&spec(3, 2, &[]), &topic(), &cfg(&[]), &[])
                .expect_err("rf")
                .reason,
            "ReplicationFactorChange"
        );
    }

    #[test]
    fn config_drift_is_corrected_key_by_key_and_unmanaged_keys_are_left_alone() {
        let live = cfg(&[
            ("retention.ms", "1000", false),
            ("cleanup.policy", "delete", true),
            ("segment.ms", "5", false),
            ("max.message.bytes", "9", false),
        ]);
        let c = plan_changes(
            &spec(
                3,
                3,
                &[("retention.ms", "60000"), ("cleanup.policy", "delete")],
            ),
            &topic(),
            &live,
            &["segment.ms".into()],
        )
        .expect("plan");
        assert_eq!(
            c.set.keys().collect::<Vec<_>>(),
            ["cleanup.policy", "retention.ms"],
            "a default value is pinned explicitly"
        );
        assert_eq!(
            c.delete,
            ["segment.ms"],
            "a key no longer in the spec returns to the default"
        );
        assert!(
            !c.delete.contains(&"max.message.bytes".to_owned()),
            "a key never managed stays"
        );
    }
}
