//! The cluster's stop lock: one broker at a time passes its preStop check and stops.
//!
//! Each agent's safety check is right on its own: it reads the ISRs as they are now. Two
//! checks at the same moment are not: when two broker Pods are deleted together (a
//! `kubectl delete pod` while a roll restarts another broker, a node drain), each agent
//! sees the other broker still in every ISR, both pass, and the partitions they share
//! fall below `min.insync.replicas`. So the check is made under a lock: a
//! `coordination.k8s.io` Lease per cluster (the coordinator creates it; the agents may
//! only read and update that one Lease). An agent takes it, checks, and keeps it while
//! its broker stops — until its broker has stopped and left every ISR, so the next
//! agent's check sees that; an unsafe answer gives it back at once. A holder renews it;
//! a Lease not renewed for its duration (an agent killed mid-stop) may be taken over.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::Lease,
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::{SignedDuration, Timestamp},
};
use kube::{Api, api::PostParams};

/// How long the Lease stays held without a renewal.
pub const LEASE_SECONDS: i32 = 20;
/// How often a holder renews it.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);

/// Why the lock could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// No Kubernetes client could be made (not in a Pod, no token).
    #[error("failed to make a Kubernetes client for the stop Lease")]
    Client(#[source] kube::Error),
    /// The Lease could not be read.
    #[error("failed to read the stop Lease {name}")]
    Read {
        /// The Lease.
        name: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// The Lease does not exist (the coordinator creates it with the cluster).
    #[error("the stop Lease {name} does not exist; the coordinator creates it with the cluster")]
    Missing {
        /// The Lease.
        name: String,
    },
    /// The Lease could not be written.
    #[error("failed to write the stop Lease {name}")]
    Write {
        /// The Lease.
        name: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
}

/// Who may take the Lease now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Free, expired, or already ours.
    Free,
    /// Another broker's agent holds it.
    HeldBy {
        /// Its identity (the broker's Pod).
        holder: String,
        /// Until when, unless renewed.
        until: Timestamp,
    },
}

/// Whether `me` may take `lease` at `now`. Pure.
pub fn claim(lease: &Lease, me: &str, now: Timestamp) -> Claim {
    let Some(spec) = lease.spec.as_ref() else {
        return Claim::Free;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() || holder == me {
        return Claim::Free;
    }
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS));
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    match renewed.map(|t| t + SignedDuration::from_secs(seconds)) {
        Some(until) if until > now => Claim::HeldBy {
            holder: holder.to_owned(),
            until,
        },
        // Expired (its holder died mid-stop), or never renewed: free to take over.
        _ => Claim::Free,
    }
}

/// The stop Lease of one cluster, as one agent uses it.
#[derive(Clone)]
pub struct StopLock {
    api: Api<Lease>,
    name: String,
    me: String,
}

impl std::fmt::Debug for StopLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopLock")
            .field("name", &self.name)
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl StopLock {
    /// The Lease `name` in `namespace`, taken as `me` (the broker's Pod name), through
    /// the Pod's own credentials.
    pub async fn in_cluster(namespace: &str, name: &str, me: &str) -> Result<Self, LockError> {
        let client = kube::Client::try_default()
            .await
            .map_err(LockError::Client)?;
        Ok(Self::new(Api::namespaced(client, namespace), name, me))
    }

    /// The Lease `name` through `api`, taken as `me`.
    pub fn new(api: Api<Lease>, name: &str, me: &str) -> Self {
        Self {
            api,
            name: name.to_owned(),
            me: me.to_owned(),
        }
    }

    /// The Lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes (or renews) the Lease: `Ok(Claim::Free)` means this agent holds it now;
    /// `HeldBy` names the broker that does. Updates carry the resourceVersion read, so
    /// two agents never both take it.
    pub async fn take(&self) -> Result<Claim, LockError> {
        let now = Timestamp::now();
        let mut lease = self.read().await?;
        let now_held = claim(&lease, &self.me, now);
        if now_held != Claim::Free {
            return Ok(now_held);
        }
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.me.as_str()) {
            spec.holder_identity = Some(self.me.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(LEASE_SECONDS);
        spec.renew_time = Some(MicroTime(now));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Claim::Free),
            // Someone else wrote it since we read it: read again and tell who holds it.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let lease = self.read().await?;
                Ok(match claim(&lease, &self.me, Timestamp::now()) {
                    Claim::Free => Claim::HeldBy {
                        holder: "another broker (it changed while we took it)".into(),
                        until: now,
                    },
                    held => held,
                })
            }
            Err(source) => Err(LockError::Write {
                name: self.name.clone(),
                source,
            }),
        }
    }

    /// Gives the Lease back if this agent holds it.
    pub async fn release(&self) -> Result<(), LockError> {
        let mut lease = self.read().await?;
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.me.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
            .map_err(|source| LockError::Write {
                name: self.name.clone(),
                source,
            })
    }

    async fn read(&self) -> Result<Lease, LockError> {
        self.api
            .get_opt(&self.name)
            .await
            .map_err(|source| LockError::Read {
                name: self.name.clone(),
                source,
            })?
            .ok_or_else(|| LockError::Missing {
                name: self.name.clone(),
            })
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::coordination::v1::LeaseSpec;

    use super::*;

    fn lease(holder: Option<&str>, renewed_secs_ago: i64) -> Lease {
        let now = Timestamp::now();
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                lease_duration_seconds: Some(LEASE_SECONDS),
                renew_time: Some(MicroTime(now - SignedDuration::from_secs(renewed_secs_ago))),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn a_lease_held_and_renewed_by_another_broker_is_not_free() {
        let now = Timestamp::now();
        assert_eq!(claim(&Lease::default(), "kf-1", now), Claim::Free);
        assert_eq!(claim(&lease(None, 0), "kf-1", now), Claim::Free);
        assert_eq!(claim(&lease(Some(""), 0), "kf-1", now), Claim::Free);
        assert_eq!(
            claim(&lease(Some("kf-1"), 0), "kf-1", now),
            Claim::Free,
            "ours: renewed, not waited for"
        );
        match claim(&lease(Some("kf-2"), 5), "kf-1", now) {
            Claim::HeldBy { holder, until } => {
                assert_eq!(holder, "kf-2");
                assert!(until > now);
            }
            Claim::Free => panic!("kf-2 holds it"),
        }
    }

    #[test]
    fn a_lease_its_holder_stopped_renewing_may_be_taken_over() {
        let now = Timestamp::now();
        assert_eq!(
            claim(
                &lease(Some("kf-2"), i64::from(LEASE_SECONDS) + 1),
                "kf-1",
                now
            ),
            Claim::Free
        );
        let mut never = lease(Some("kf-2"), 0);
        if let Some(s) = never.spec.as_mut() {
            s.renew_time = None;
        }
        assert_eq!(claim(&never, "kf-1", now), Claim::Free);
    }
}
