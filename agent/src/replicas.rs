//! What this broker holds, for the coordinator's decision to remove it: the partitions
//! the cluster metadata assigns to it, and the replicas in each of its log dirs. Fail
//! closed: what could not be read is listed, and an answer with anything unreadable is
//! never taken for "empty".

use crate::{
    broker::kafka::{LogDir, Snapshot},
    safety::MinIsr,
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
    /// The fewest brokers the topics need (replication factor, or min.insync.replicas
    /// + 1 where that is 2 or more), and why in words.
    pub brokers_needed: (i32, String),
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
        let mut topic_rf = std::collections::BTreeMap::<&str, (usize, &MinIsr)>::new();
        for p in &snap.partitions {
            let rf = topic_rf.entry(&p.topic).or_insert((0, &p.min_isr));
            rf.0 = rf.0.max(p.replicas.len());
            if p.replicas.contains(&broker) {
                out.assigned.push(format!("{}-{}", p.topic, p.partition));
            }
        }
        let mut needed = (0, String::new());
        for (topic, (rf, min_isr)) in topic_rf {
            let rf = i32::try_from(rf).unwrap_or(i32::MAX);
            if rf > max.0 {
                max = (rf, topic.to_owned());
            }
            if rf > needed.0 {
                needed = (rf, format!("topic {topic} has replication factor {rf}"));
            }
            match min_isr {
                MinIsr::Known(m) if *m >= 2 && m.saturating_add(1) > needed.0 => {
                    needed = (
                        m.saturating_add(1),
                        format!(
                            "topic {topic} has min.insync.replicas {m}, so it needs {} brokers to take acks=all writes while one restarts",
                            m.saturating_add(1)
                        ),
                    );
                }
                MinIsr::Known(_) => {}
                MinIsr::Unknown(why) => out
                    .unreadable
                    .push(format!("min.insync.replicas of topic {topic} ({why})")),
            }
        }
        out.max_replication_factor = max;
        out.brokers_needed = needed;
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
    use crate::safety::PartitionView;

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

    #[test]
    fn the_brokers_needed_count_min_insync_replicas_plus_one_and_an_unknown_one_is_unreadable() {
        let mut strict = part("payments", 0, &[1, 2]);
        strict.min_isr = MinIsr::Known(3);
        let snap = Snapshot {
            partitions: vec![part("orders", 0, &[1, 2, 3]), strict],
            ..Snapshot::default()
        };
        let r = summarize(4, Some(&snap), Some(&[]), vec![]);
        assert_eq!(r.max_replication_factor, (3, "orders".into()));
        assert_eq!(r.brokers_needed.0, 4);
        assert!(
            r.brokers_needed
                .1
                .contains("payments has min.insync.replicas 3"),
            "{:?}",
            r.brokers_needed
        );
        assert!(r.empty());
        // min.insync.replicas 1 asks nothing beyond the replication factor.
        let plain = Snapshot {
            partitions: vec![part("orders", 0, &[1, 2, 3])],
            ..Snapshot::default()
        };
        let r = summarize(4, Some(&plain), Some(&[]), vec![]);
        assert_eq!(
            r.brokers_needed,
            (3, "topic orders has replication factor 3".into())
        );
        // Unknown: the answer is incomplete, never "empty".
        let mut blind = part("audit", 0, &[1, 2]);
        blind.min_isr = MinIsr::Unknown("not authorized".into());
        let snap = Snapshot {
            partitions: vec![blind],
            ..Snapshot::default()
        };
        let r = summarize(4, Some(&snap), Some(&[]), vec![]);
        assert!(!r.empty());
        assert!(r.unreadable[0].contains("audit"), "{:?}", r.unreadable);
    }
}
