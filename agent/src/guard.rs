//! Guarding every stop of the broker: `SafeToStop` (asked by the coordinator before it
//! restarts the broker) and the preStop wait (the kubelet's hook, for every other
//! disruption: `kubectl delete pod`, a node drain). Both read the cluster as the broker
//! sees it now and apply [`safety`]'s rules; anything that cannot be read makes the
//! answer unsafe, with what could not be read. The preStop check is made holding the
//! cluster's [stop lock](crate::stop_lock), so two brokers never pass it at once.

use std::time::Duration;

use crate::{
    safety::{self, StopDecision},
    state::{HeldLock, Running, Shared, error_chain},
    stop_lock::{self, Claim, StopLock},
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
    /// A fact the rules need could not be read at all (the metadata, the quorum, the
    /// stop lock): why.
    Unknown(String),
    /// Another broker is stopping (it holds the stop lock): who.
    Locked(String),
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
            Self::Quorum(why) | Self::Unknown(why) | Self::Locked(why) => why.clone(),
        }
    }

    /// What could not be read.
    pub fn unreadable(&self) -> Vec<String> {
        match self {
            Self::Decided(d) => d.unreadable.clone(),
            Self::Quorum(_) | Self::Locked(_) => Vec::new(),
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
/// most the shutdown timeout or until a second SIGTERM. With a stop lock, each check is
/// made holding it, and a safe answer keeps it while the broker stops. Returns what
/// happened, in words (the kubelet proceeds to SIGTERM in every case).
pub async fn prestop(shared: &Shared) -> String {
    shared.begin_shutdown("preStop hook");
    let Some(running) = shared.running().cloned() else {
        return "the broker never started; nothing to protect\n".into();
    };
    let lock = match shared.stop_lock.get() {
        None => None,
        Some(r) => Some(
            StopLock::in_cluster(&r.namespace, &r.name, &r.me)
                .await
                .map_err(|e| error_chain(&e)),
        ),
    };
    let started = tokio::time::Instant::now();
    let deadline = started + shared.shutdown_timeout;
    loop {
        let (answer, held) = check_holding(&running, lock.as_ref()).await;
        if answer.safe() {
            let waited = started.elapsed();
            if let Some(lock) = held {
                keep(shared, lock).await;
            }
            tracing::info!(
                waited_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                "Safe to stop; letting Kafka shut down"
            );
            return format!("safe to stop after {waited:?}\n");
        }
        if let Some(lock) = held
            && let Err(e) = lock.release().await
        {
            // It expires on its own; the next check takes it over then.
            tracing::warn!(error = %error_chain(&e), "Could not give the stop Lease back");
        }
        // A broker that no longer serves has nothing left to protect: its replicas
        // are already out of every ISR. Only a listener that refuses connections now
        // says so; a slow answer or an old observation does not (fail closed), and a
        // busy stop lock says nothing about this broker.
        if matches!(answer, StopAnswer::Unknown(_)) && !running.serving_now().await {
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

impl Running {
    /// Whether the broker's listener accepts connections right now: false only when
    /// the connection is refused (nothing listens); a time-out or any other error
    /// counts as serving.
    pub async fn serving_now(&self) -> bool {
        accepts_connections(self.client.addr()).await
    }
}

/// False only when a connection to `addr` is refused.
async fn accepts_connections(addr: &str) -> bool {
    match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await {
        Ok(Err(e)) => e.kind() != std::io::ErrorKind::ConnectionRefused,
        Ok(Ok(_)) | Err(_) => true,
    }
}

/// One check: takes the stop lock first when there is one (a lock that cannot be read
/// is an unsafe answer), then evaluates the rules. Returns the lock when it is held.
async fn check_holding(
    running: &Running,
    lock: Option<&Result<StopLock, String>>,
) -> (StopAnswer, Option<StopLock>) {
    let held = match lock {
        None => None,
        Some(Err(why)) => {
            return (
                StopAnswer::Unknown(format!("cannot use the cluster's stop Lease: {why}")),
                None,
            );
        }
        Some(Ok(lock)) => match lock.take().await {
            Ok(Claim::Free) => Some(lock.clone()),
            Ok(Claim::HeldBy { holder, until }) => {
                return (
                    StopAnswer::Locked(format!(
                        "broker Pod {holder} is stopping: it holds the stop Lease {} (until {until} unless renewed)",
                        lock.name()
                    )),
                    None,
                );
            }
            Err(e) => return (StopAnswer::Unknown(error_chain(&e)), None),
        },
    };
    (running.safe_to_stop(&[]).await, held)
}

/// Keeps `lock` while the broker stops: renewed in the background until released.
async fn keep(shared: &Shared, lock: StopLock) {
    let renewing = lock.clone();
    let renewal = tokio::spawn(async move {
        loop {
            tokio::time::sleep(stop_lock::RENEW_EVERY).await;
            if let Err(e) = renewing.take().await {
                tracing::warn!(error = %error_chain(&e), "Could not renew the stop Lease");
            }
        }
    });
    let mut held = shared.held_lock.lock().await;
    if let Some(old) = held.replace(HeldLock { lock, renewal }) {
        old.renewal.abort();
    }
}

/// Gives the stop lock back if this agent holds it (its broker has stopped).
pub async fn release_stop_lock(shared: &Shared) {
    let Some(held) = shared.held_lock.lock().await.take() else {
        return;
    };
    held.renewal.abort();
    match held.lock.release().await {
        Ok(()) => tracing::info!(lease = %held.lock.name(), "Gave the stop Lease back"),
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "Could not give the stop Lease back; it expires on its own")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_a_refused_connection_counts_as_not_serving() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let open = listener.local_addr().expect("address").to_string();
        assert!(accepts_connections(&open).await);
        drop(listener);
        assert!(
            !accepts_connections(&open).await,
            "nothing listens any more"
        );
        // An address nobody answers for is no proof of anything: serving, fail closed.
        assert!(accepts_connections("not-a-host.invalid:9092").await);
    }
}
