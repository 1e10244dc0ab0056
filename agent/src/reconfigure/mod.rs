//! A live config change. [`plan`] (pure) says which keys of a new desired config can
//! be applied to the running broker (dynamic keys, by incremental AlterConfigs) and
//! which need a restart (static keys, and everything about the node's topology);
//! [`apply`] carries it out against the broker, key by key.

pub mod apply;

use std::collections::BTreeMap;

use crate::{broker::kafka::ConfigEntry, config::ValidatedConfig};

/// What to do about a new desired config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Dynamic keys to set.
    pub set: BTreeMap<String, String>,
    /// Dynamic keys to delete (they return to the broker's static or default value).
    pub delete: Vec<String>,
    /// Keys or fields that changed and need a restart.
    pub restart_needed: Vec<String>,
}

impl Plan {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.delete.is_empty() && self.restart_needed.is_empty()
    }
}

/// Compares the config in force with a new one. `broker_configs` is the broker's
/// own DescribeConfigs answer: a key it reports as not read-only is dynamic.
pub fn plan(
    old: &ValidatedConfig,
    new: &ValidatedConfig,
    broker_configs: &BTreeMap<String, ConfigEntry>,
) -> Plan {
    let mut p = Plan::default();
    let mut topology = |name: &str, changed: bool| {
        if changed {
            p.restart_needed.push(name.to_owned());
        }
    };
    topology("process.roles", old.roles != new.roles);
    topology("cluster.id", old.cluster_id != new.cluster_id);
    topology("listeners", old.listeners != new.listeners);
    topology(
        "inter.broker.listener.name",
        old.inter_broker_listener != new.inter_broker_listener,
    );
    topology(
        "controller.listener.names",
        old.controller_listeners != new.controller_listeners,
    );
    topology(
        "controller.quorum.voters",
        old.quorum_voters != new.quorum_voters,
    );
    topology("log.dirs", old.log_dirs != new.log_dirs);
    topology("broker.rack", old.rack_labels != new.rack_labels);
    topology("log4j2.rootLogger.level", old.log_level != new.log_level);
    for (key, path) in &new.secret_files {
        if old.secret_files.get(key) != Some(path) {
            p.restart_needed.push(key.clone());
        }
    }
    for key in old.secret_files.keys() {
        if !new.secret_files.contains_key(key) {
            p.restart_needed.push(key.clone());
        }
    }

    let dynamic = |key: &str| broker_configs.get(key).is_some_and(|e| !e.read_only);
    for (key, value) in &new.user_config {
        if old.user_config.get(key) == Some(value) {
            continue;
        }
        if dynamic(key) {
            p.set.insert(key.clone(), value.clone());
        } else {
            p.restart_needed.push(key.clone());
        }
    }
    for key in old.user_config.keys() {
        if new.user_config.contains_key(key) {
            continue;
        }
        if dynamic(key) {
            p.delete.push(key.clone());
        } else {
            p.restart_needed.push(key.clone());
        }
    }
    p.restart_needed.sort();
    p.restart_needed.dedup();
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::broker_doc;

    fn entries() -> BTreeMap<String, ConfigEntry> {
        BTreeMap::from([
            (
                "log.retention.ms".into(),
                ConfigEntry {
                    value: None,
                    read_only: false,
                },
            ),
            (
                "background.threads".into(),
                ConfigEntry {
                    value: Some("4".into()),
                    read_only: false,
                },
            ),
            (
                "num.network.threads".into(),
                ConfigEntry {
                    value: None,
                    read_only: false,
                },
            ),
            (
                "auto.create.topics.enable".into(),
                ConfigEntry {
                    value: Some("false".into()),
                    read_only: true,
                },
            ),
        ])
    }

    fn validated(doc: stoker_proto::agent::v1::DesiredConfig) -> ValidatedConfig {
        ValidatedConfig::validate(doc).expect("valid")
    }

    #[test]
    fn dynamic_keys_are_set_and_deleted_static_keys_need_a_restart() {
        let old = validated(broker_doc());
        let mut doc = broker_doc();
        doc.broker_config
            .insert("log.retention.ms".into(), "60000".into());
        doc.broker_config.remove("background.threads");
        doc.cluster_wide_config.remove("background.threads");
        doc.read_only_config
            .insert("auto.create.topics.enable".into(), "true".into());
        let p = plan(&old, &validated(doc), &entries());
        assert_eq!(
            p.set,
            BTreeMap::from([("log.retention.ms".to_owned(), "60000".to_owned())])
        );
        assert_eq!(p.delete, vec!["background.threads".to_owned()]);
        assert_eq!(
            p.restart_needed,
            vec!["auto.create.topics.enable".to_owned()]
        );
    }

    #[test]
    fn unknown_keys_and_topology_changes_need_a_restart() {
        let old = validated(broker_doc());
        let mut doc = broker_doc();
        doc.broker_config
            .insert("some.plugin.key".into(), "x".into());
        doc.log_dirs = vec!["/kafka-logs/a".into(), "/kafka-logs/b".into()];
        let p = plan(&old, &validated(doc), &entries());
        assert_eq!(
            p.restart_needed,
            vec!["log.dirs".to_owned(), "some.plugin.key".to_owned()]
        );
        assert!(p.set.is_empty());
    }

    #[test]
    fn an_unchanged_config_plans_nothing() {
        let old = validated(broker_doc());
        assert!(plan(&old, &validated(broker_doc()), &entries()).is_empty());
    }
}
