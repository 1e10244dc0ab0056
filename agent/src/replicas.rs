//! What this broker holds, for the coordinator's decision to remove it: the partitions
//! the cluster metadata assigns to it, and the replicas in each of its log dirs. Fail
//! closed: what could not be read is listed, and an answer with anything unreadable is
//! never taken for "empty".

use crate::{
    broker::kafka::{LogDir, Snapshot},
    state::{Running, error_chain},
};

/// How many partition names an answer lists (the counts are always complete).
pub const LISTED: usize = 20;

/// What the broker holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replicas {
    /// Partitions the metadata assigns to it.
    pub assigned: Vec<String>,
    /// The replicas of each log dir: (path, partitions).
    pub log_dirs: Vec<(String, Vec<String>)>,
    /// The largest replication factor of any topic, and a topic that has it.
    pub max_replication_factor: (i32, String),
    /// What could not be read.
    pub unreadable: Vec<String>,
}

impl Replicas {
    /// True only when the broker provably holds nothing.
    pub fn empty(&self) -> bool {
        self.unreadable.is_empty()
            && self.assigned.is_empty()
            && self.log_dirs.iter().all(|(_, p)| p.is_empty())
    }
}

/// Summarizes what `broker` holds from the metadata and its log dirs. Pure.
pub fn summarize(
    broker: i32,
    snapshot: Option<&Snapshot>,
    dirs: Option<&[LogDir]>,
    unreadable: Vec<String>,
) -> Replicas {
    let mut out = Replicas {
        unreadable,
        ..Replicas::default()
    };
    if let Some(snap) = snapshot {
        out.unreadable.extend(snap.unreadable.iter().cloned());
        let mut max = (0, String::new());
        let mut topic_rf = std::collections::BTreeMap::<&str, usize>::new();
        for p in &snap.partitions {
            let rf = topic_rf.entry(&p.topic).or_default();
            *rf = (*rf).max(p.replicas.len());
            if p.replicas.contains(&broker) {
                out.assigned.push(format!("{}-{}", p.topic, p.partition));
            }
        }
        for (topic, rf) in topic_rf {
            let rf = i32::try_from(rf).unwrap_or(i32::MAX);
            if rf > max.0 {
                max = (rf, topic.to_owned());
            }
        }
        out.max_replication_factor = max;
    }
    if let Some(dirs) = dirs {
        out.log_dirs = dirs
            .iter()
            .map(|d| {
                (
                    d.path.clone(),
                    d.partitions
                        .iter()
                        .map(|(t, p)| format!("{t}-{p}"))
                        .collect(),
                )
            })
            .collect();
    }
    out
}

impl Running {
    /// What this broker holds now.
    pub async fn describe_replicas(&self) -> Replicas {
        let mut unreadable = Vec::new();
        let snapshot = match self.client.snapshot().await {
            Ok(s) => Some(s),
            Err(e) => {
                unreadable.push(format!("the cluster metadata ({})", error_chain(&e)));
                None
            }
        };
        let dirs = match self.client.log_dirs().await {
            Ok(d) => Some(d),
            Err(e) => {
                unreadable.push(format!("the broker's log dirs ({})", error_chain(&e)));
                None
            }
        };
        summarize(
            self.broker.broker_id,
            snapshot.as_ref(),
            dirs.as_deref(),
            unreadable,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safety::{MinIsr, PartitionView};

    fn part(topic: &str, partition: i32, replicas: &[i32]) -> PartitionView {
        PartitionView {
            topic: topic.into(),
            partition,
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
            min_isr: MinIsr::Known(1),
        }
    }

    #[test]
    fn a_broker_is_empty_only_when_metadata_and_log_dirs_say_so_and_nothing_was_unreadable() {
        let snap = Snapshot {
            partitions: vec![
                part("orders", 0, &[1, 2, 3]),
                part("__consumer_offsets", 4, &[2, 3]),
            ],
            ..Snapshot::default()
        };
        let dirs = [LogDir {
            path: "/kafka-logs/kafka".into(),
            partitions: vec![],
        }];
        let r = summarize(3, Some(&snap), Some(&dirs), vec![]);
        assert_eq!(
            r.assigned,
            ["orders-0", "__consumer_offsets-4"],
            "internal topics count"
        );
        assert!(!r.empty());
        assert_eq!(r.max_replication_factor, (3, "orders".into()));
        let r = summarize(4, Some(&snap), Some(&dirs), vec![]);
        assert!(r.empty());
        // A replica left in a log dir (metadata moved it, the data is still there).
        let full = [LogDir {
            path: "/kafka-logs/kafka".into(),
            partitions: vec![("orders".into(), 0)],
        }];
        assert!(!summarize(4, Some(&snap), Some(&full), vec![]).empty());
        // Blind is never empty.
        assert!(!summarize(4, None, Some(&dirs), vec!["the cluster metadata".into()]).empty());
        let mut hidden = snap.clone();
        hidden.unreadable.push("the partitions of topic x".into());
        assert!(!summarize(4, Some(&hidden), Some(&dirs), vec![]).empty());
    }
}
