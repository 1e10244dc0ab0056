//! Guarding every stop of the broker: `SafeToStop` (asked by the coordinator before it
//! restarts the broker) and the preStop wait (the kubelet's hook, for every other
//! disruption: `kubectl delete pod`, a node drain). Both read the cluster as the broker
//! sees it now and apply [`safety`]'s rules; anything that cannot be read makes the
//! answer unsafe, with what could not be read.

use std::time::Duration;

use crate::{
    safety::{self, StopDecision},
    state::{Running, Shared, error_chain},
};

/// How often the preStop wait asks again.
const PRESTOP_POLL: Duration = Duration::from_secs(1);

/// The answer to "may this node stop now?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopAnswer {
    /// The partition rules were evaluated (safe or not, see the decision).
    Decided(StopDecision),
    /// A controller may not stop: too few other voters are caught up.
    Quorum(String),
    /// A fact the rules need could not be read at all (the metadata, the quorum): why.
    Unknown(String),
}

impl StopAnswer {
    /// True only for a decided, safe answer.
    pub fn safe(&self) -> bool {
        matches!(self, Self::Decided(d) if d.safe())
    }

    /// The reason, in words a person can act on.
    pub fn reason(&self) -> String {
        match self {
            Self::Decided(d) => d.reason(),
            Self::Quorum(why) | Self::Unknown(why) => why.clone(),
        }
    }

    /// What could not be read.
    pub fn unreadable(&self) -> Vec<String> {
        match self {
            Self::Decided(d) => d.unreadable.clone(),
            Self::Quorum(_) => Vec::new(),
            Self::Unknown(why) => vec![why.clone()],
        }
    }
}

impl Running {
    /// Whether stopping now, together with the brokers `also_stopping`, keeps every
    /// partition at or above min ISR (and, for a controller, a caught-up majority).
    pub async fn safe_to_stop(&self, also_stopping: &[i32]) -> StopAnswer {
        let mut decision = StopDecision::default();
        if self.roles.broker {
            let snap = match self.client.snapshot().await {
                Ok(s) => s,
                Err(e) => {
                    return StopAnswer::Unknown(format!(
                        "cannot read the cluster metadata from the broker: {}",
                        error_chain(&e)
                    ));
                }
            };
            let mut unreadable = snap.unreadable.clone();
            // Metadata lists only the topics the agent may describe: a topic this broker
            // hosts but the metadata does not show would be unprotected without a word.
            match self.client.log_dirs().await {
                Ok(dirs) => {
                    let hosted: std::collections::BTreeSet<&str> = dirs
                        .iter()
                        .flat_map(|d| d.partitions.iter().map(|(t, _)| t.as_str()))
                        .collect();
                    let seen: std::collections::BTreeSet<&str> =
                        snap.partitions.iter().map(|p| p.topic.as_str()).collect();
                    unreadable.extend(
                        hosted
                            .iter()
                            .filter(|t| !seen.contains(*t))
                            .map(|t| {
                                format!("the partitions of topic {t}, which this broker hosts but the metadata does not show")
                            }),
                    );
                }
                Err(e) => unreadable.push(format!(
                    "the replicas this broker hosts (DescribeLogDirs: {})",
                    error_chain(&e)
                )),
            }
            decision = safety::broker_stop_decision(
                self.broker.broker_id,
                also_stopping,
                &snap.partitions,
                &unreadable,
            );
        }
        if let Some(cc) = &self.controller_client {
            let q = match cc.quorum().await {
                Ok(q) => q,
                Err(e) => {
                    return StopAnswer::Unknown(format!(
                        "cannot read the metadata quorum: {}",
                        error_chain(&e)
                    ));
                }
            };
            if let Err(why) = safety::controller_stop_decision(
                self.broker.broker_id,
                q.leader,
                &q.voters,
                self.quorum_fetch_timeout_ms,
            ) {
                return StopAnswer::Quorum(why);
            }
        }
        StopAnswer::Decided(decision)
    }
}

/// The preStop wait: turns not-ready, then waits until stopping the broker is safe, at
/// most the shutdown timeout or until a second SIGTERM. Returns what happened, in
/// words (the kubelet proceeds to SIGTERM in every case).
pub async fn prestop(shared: &Shared) -> String {
    shared.begin_shutdown("preStop hook");
    let Some(running) = shared.running().cloned() else {
        return "the broker never started; nothing to protect\n".into();
    };
    let started = tokio::time::Instant::now();
    let deadline = started + shared.shutdown_timeout;
    loop {
        let answer = running.safe_to_stop(&[]).await;
        if answer.safe() {
            let waited = started.elapsed();
            tracing::info!(
                waited_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                "Safe to stop; letting Kafka shut down"
            );
            return format!("safe to stop after {waited:?}\n");
        }
        // A broker that no longer serves has nothing left to protect: its replicas
        // are already out of every ISR.
        if matches!(answer, StopAnswer::Unknown(_)) && running.observation().reachable.is_err() {
            tracing::info!(reason = %answer.reason(), "Broker unreachable; nothing left to protect");
            return "the broker is not serving; nothing to protect\n".into();
        }
        let last = answer.reason();
        if shared.force_stop_requested() {
            tracing::warn!(unsafe_because = %last, "Second SIGTERM: stopping although it is not safe");
            return format!("stopping on a second SIGTERM although: {last}\n");
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(timeout_s = shared.shutdown_timeout.as_secs(), unsafe_because = %last, "Shutdown timeout: stopping although it is not safe");
            return format!(
                "stopping after the {:?} timeout although: {last}\n",
                shared.shutdown_timeout
            );
        }
        tracing::info!(waiting_for = %last, "Not safe to stop yet");
        tokio::select! {
            () = tokio::time::sleep(PRESTOP_POLL) => {}
            () = shared.force_notify.notified() => {}
        }
    }
}
