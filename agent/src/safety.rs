//! The rules that decide whether this node may stop now. Pure functions over a
//! snapshot of the cluster, so every rule is unit-tested without a broker.
//!
//! Brokers (Strimzi's `KafkaAvailability` rule): for every partition this broker
//! replicates, stopping must not take the in-sync replicas below
//! `min.insync.replicas`. A partition already below it blocks as well (this broker
//! may be the first to catch up). Partitions whose replication factor is at or below
//! their min ISR can never be protected; they are reported but do not block, or such
//! a topic would block every roll forever.
//!
//! Fail closed: a fact the rule needs that could not be read (a topic's
//! `min.insync.replicas`, a topic's partitions, the replicas this broker hosts) makes
//! the answer unsafe, and the answer says what could not be read. Not seeing is never
//! read as "nothing to protect".
//!
//! Controllers (Strimzi's `KafkaQuorumCheck`): excluding this node, a majority of the
//! voters must be caught up with the leader. A quorum of one voter is the exception:
//! no moment is safer than another (metadata changes pause while it restarts,
//! whenever that is), so waiting would only block every roll forever.

/// A topic's effective `min.insync.replicas`, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MinIsr {
    /// Read from the broker.
    Known(i32),
    /// Not readable (an authorization error, a missing or malformed answer): why.
    Unknown(String),
}

impl MinIsr {
    /// The value, or -1 when unknown (for the gRPC answer).
    pub fn or_unknown(&self) -> i32 {
        match self {
            Self::Known(n) => *n,
            Self::Unknown(_) => -1,
        }
    }
}

impl std::fmt::Display for MinIsr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Known(n) => write!(f, "{n}"),
            Self::Unknown(_) => f.write_str("unknown"),
        }
    }
}

/// One partition as the safety rule sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// Assigned replicas.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// The topic's effective min.insync.replicas.
    pub min_isr: MinIsr,
}

/// A partition that blocks the stop, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocking {
    /// The partition.
    pub partition: PartitionView,
    /// Why, in words.
    pub why: &'static str,
}

/// The decision for a broker.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StopDecision {
    /// Partitions that would fall (or are) below min ISR.
    pub blocking: Vec<Blocking>,
    /// Partitions with RF ≤ min ISR that this broker replicates: never protectable.
    pub unprotectable: Vec<String>,
    /// Facts the rule needs that could not be read, in words.
    pub unreadable: Vec<String>,
}

impl StopDecision {
    /// True when nothing blocks and nothing the rule needs was unreadable.
    pub fn safe(&self) -> bool {
        self.blocking.is_empty() && self.unreadable.is_empty()
    }

    /// A one-line reason a person can act on.
    pub fn reason(&self) -> String {
        if !self.unreadable.is_empty() {
            let shown: Vec<&str> = self.unreadable.iter().take(5).map(String::as_str).collect();
            let more = self.unreadable.len().saturating_sub(shown.len());
            let tail = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            return format!(
                "cannot tell whether stopping is safe, so it is not: could not read {}{tail}; give the agent's principal Describe and DescribeConfigs on every topic and Describe on the cluster, or wait while the broker starts",
                shown.join("; ")
            );
        }
        if self.blocking.is_empty() {
            return "no partition would fall below min.insync.replicas".into();
        }
        let shown: Vec<String> = self
            .blocking
            .iter()
            .take(5)
            .map(|b| {
                format!(
                    "{}-{} (isr {:?}, min.insync.replicas {}: {})",
                    b.partition.topic,
                    b.partition.partition,
                    b.partition.isr,
                    b.partition.min_isr,
                    b.why
                )
            })
            .collect();
        let more = self.blocking.len().saturating_sub(shown.len());
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        format!(
            "stopping now would leave {} partition(s) below min.insync.replicas: {}{tail}; wait for the other replicas to catch up",
            self.blocking.len(),
            shown.join(", ")
        )
    }
}

/// Whether broker `broker` may stop, given every partition of the cluster, when the
/// brokers `also_stopping` stop with it (they count as out of the ISR already).
/// `unreadable` lists what the snapshot could not read at all (a topic's partitions,
/// the replicas this broker hosts); any of it makes the answer unsafe.
pub fn broker_stop_decision(
    broker: i32,
    also_stopping: &[i32],
    partitions: &[PartitionView],
    unreadable: &[String],
) -> StopDecision {
    let mut decision = StopDecision {
        unreadable: unreadable.to_vec(),
        ..StopDecision::default()
    };
    for p in partitions.iter().filter(|p| p.replicas.contains(&broker)) {
        let min_isr = match &p.min_isr {
            MinIsr::Known(n) => *n,
            MinIsr::Unknown(why) => {
                let what = format!("min.insync.replicas of topic {} ({why})", p.topic);
                if !decision.unreadable.contains(&what) {
                    decision.unreadable.push(what);
                }
                continue;
            }
        };
        let rf = i32::try_from(p.replicas.len()).unwrap_or(i32::MAX);
        let isr = i32::try_from(p.isr.len()).unwrap_or(i32::MAX);
        if rf <= min_isr {
            decision
                .unprotectable
                .push(format!("{}-{}", p.topic, p.partition));
            continue;
        }
        let staying = i32::try_from(p.isr.iter().filter(|r| !also_stopping.contains(r)).count())
            .unwrap_or(i32::MAX);
        let why = if isr < min_isr {
            Some("already under min.insync.replicas")
        } else if staying < min_isr {
            Some("the brokers stopping with it already take it to min.insync.replicas")
        } else if staying == min_isr && p.isr.contains(&broker) {
            Some("this broker is one of the last min.insync.replicas in-sync replicas")
        } else {
            None
        };
        if let Some(why) = why {
            decision.blocking.push(Blocking {
                partition: p.clone(),
                why,
            });
        }
    }
    decision
}

/// One voter of the KRaft quorum, as DescribeQuorum reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterView {
    /// Node id.
    pub id: i32,
    /// Leader-clock time the voter was last caught up (ms), or -1 if unknown.
    pub last_caught_up_ms: i64,
}

/// Whether controller `me` may stop: excluding it, at least a majority of all voters
/// must have been caught up within `fetch_timeout_ms` of the leader (a single-voter
/// quorum may always stop). Returns the reason when not.
pub fn controller_stop_decision(
    me: i32,
    leader: i32,
    voters: &[VoterView],
    fetch_timeout_ms: i64,
) -> Result<(), String> {
    let Some(reference) = voters
        .iter()
        .find(|v| v.id == leader)
        .map(|v| v.last_caught_up_ms)
    else {
        return Err(format!(
            "the quorum has no leader among its voters (leader {leader}); wait for an election"
        ));
    };
    let total = voters.len();
    if total == 1 && voters[0].id == me {
        return Ok(());
    }
    let majority = total / 2 + 1;
    let caught_up = voters
        .iter()
        .filter(|v| v.id != me)
        .filter(|v| v.last_caught_up_ms >= 0 && reference - v.last_caught_up_ms < fetch_timeout_ms)
        .count();
    if caught_up >= majority {
        Ok(())
    } else {
        Err(format!(
            "only {caught_up} of the other {} voters are caught up and {majority} of {total} are needed for a majority; wait for the lagging controllers to catch up",
            total - 1,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(replicas: &[i32], isr: &[i32], min_isr: i32) -> PartitionView {
        PartitionView {
            topic: "t".into(),
            partition: 0,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            min_isr: MinIsr::Known(min_isr),
        }
    }

    #[test]
    fn a_broker_in_a_partition_at_min_isr_may_not_stop() {
        let d = broker_stop_decision(1, &[], &[p(&[1, 2, 3], &[1, 2], 2)], &[]);
        assert!(!d.safe());
        assert!(d.reason().contains("t-0"), "{}", d.reason());
    }

    #[test]
    fn a_broker_outside_the_isr_may_stop_when_the_partition_is_at_min_isr() {
        assert!(broker_stop_decision(3, &[], &[p(&[1, 2, 3], &[1, 2], 2)], &[]).safe());
    }

    #[test]
    fn a_full_isr_is_safe() {
        assert!(broker_stop_decision(1, &[], &[p(&[1, 2, 3], &[1, 2, 3], 2)], &[]).safe());
    }

    #[test]
    fn a_partition_already_below_min_isr_blocks_every_replica() {
        let d = broker_stop_decision(3, &[], &[p(&[1, 2, 3], &[1], 2)], &[]);
        assert!(!d.safe());
        assert_eq!(d.blocking[0].why, "already under min.insync.replicas");
    }

    #[test]
    fn brokers_stopping_together_count_as_out_of_the_isr() {
        // Rack-aware replicas: brokers 1 and 4 share no partition, so they may stop together.
        let parts = [p(&[1, 2, 3], &[1, 2, 3], 2), p(&[4, 5, 6], &[4, 5, 6], 2)];
        assert!(broker_stop_decision(1, &[4], &parts, &[]).safe());
        // Brokers 1 and 2 share one: together they would leave it one in-sync replica.
        let d = broker_stop_decision(1, &[2], &parts, &[]);
        assert!(!d.safe());
        assert!(
            d.blocking[0].why.contains("last min.insync.replicas"),
            "{:?}",
            d.blocking
        );
        let d = broker_stop_decision(1, &[2, 3], &parts, &[]);
        assert_eq!(
            d.blocking[0].why,
            "the brokers stopping with it already take it to min.insync.replicas"
        );
    }

    #[test]
    fn partitions_of_other_brokers_are_ignored() {
        assert!(broker_stop_decision(4, &[], &[p(&[1, 2, 3], &[1], 2)], &[]).safe());
    }

    #[test]
    fn rf_at_or_below_min_isr_never_blocks_but_is_reported() {
        let d = broker_stop_decision(1, &[], &[p(&[1, 2], &[1, 2], 2), p(&[1], &[1], 1)], &[]);
        assert!(d.safe());
        assert_eq!(d.unprotectable.len(), 2);
    }

    #[test]
    fn an_unreadable_min_isr_of_a_hosted_partition_is_unsafe_and_named() {
        let mut hidden = p(&[1, 2, 3], &[1, 2, 3], 2);
        hidden.topic = "payments".into();
        hidden.min_isr = MinIsr::Unknown("TopicAuthorizationFailed".into());
        let d = broker_stop_decision(1, &[], &[hidden.clone(), hidden.clone()], &[]);
        assert!(!d.safe(), "a full ISR is no excuse when min ISR is unknown");
        assert_eq!(
            d.unreadable.len(),
            1,
            "named once per topic: {:?}",
            d.unreadable
        );
        let reason = d.reason();
        assert!(
            reason.contains("payments") && reason.contains("TopicAuthorizationFailed"),
            "{reason}"
        );
        // A broker that does not host the topic is not held by it.
        assert!(broker_stop_decision(4, &[], &[hidden], &[]).safe());
    }

    #[test]
    fn what_the_snapshot_could_not_read_makes_every_answer_unsafe() {
        let d = broker_stop_decision(
            1,
            &[],
            &[p(&[1, 2, 3], &[1, 2, 3], 2)],
            &["the partitions of topic orders (LeaderNotAvailable)".into()],
        );
        assert!(!d.safe());
        assert!(d.reason().contains("topic orders"), "{}", d.reason());
    }

    #[test]
    fn a_controller_needs_a_caught_up_majority_without_itself() {
        let v = |id, ts| VoterView {
            id,
            last_caught_up_ms: ts,
        };
        let voters = [v(1, 10_000), v(2, 9_500), v(3, 9_900)];
        assert!(controller_stop_decision(3, 1, &voters, 2_000).is_ok());
        let lagging = [v(1, 10_000), v(2, 1_000), v(3, 9_900)];
        let err = controller_stop_decision(3, 1, &lagging, 2_000).expect_err("2 lags");
        assert!(err.contains("only 1 of the other 2"), "{err}");
        // Alone, no later moment is safer: a single voter may always stop.
        let single = [v(1, 10_000)];
        assert!(controller_stop_decision(1, 1, &single, 2_000).is_ok());
    }
}
