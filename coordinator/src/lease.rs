//! Leader election with a `coordination.k8s.io/v1` Lease, for running more than one
//! coordinator replica: only the holder runs the controllers. A holder renews every
//! `renew` interval; a Lease not renewed for `duration` may be taken over. Updates use
//! the Lease's resourceVersion, so two candidates never both win. A leader that cannot
//! renew in time stops leading, and the process exits so it restarts as a follower.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::{SignedDuration, Timestamp},
};
use kube::{Api, Client, api::PostParams};
use tokio::sync::watch;
use tracing::{info, warn};

/// Settings of one candidate.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// The Lease's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// This candidate's identity (its Pod name).
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub duration: Duration,
    /// How often the holder renews.
    pub renew: Duration,
}

/// Why leading ended.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The Lease could not be renewed within its duration.
    #[error("lost the leader Lease {name}: not renewed within {duration:?}")]
    Lost {
        /// The Lease.
        name: String,
        /// Its duration.
        duration: Duration,
    },
}

/// Whether `lease` is held by someone else whose last renewal is recent enough.
pub fn held_by_other(lease: &Lease, me: &str, now: Timestamp) -> bool {
    let Some(spec) = lease.spec.as_ref() else {
        return false;
    };
    let Some(holder) = spec.holder_identity.as_deref() else {
        return false;
    };
    if holder == me || holder.is_empty() {
        return false;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    spec.renew_time
        .as_ref()
        .is_some_and(|t| t.0 + duration > now)
}

/// Runs the election until leadership is lost (an error) or the task is dropped.
/// `leader` is set true while this candidate holds the Lease.
pub async fn run(
    client: Client,
    cfg: LeaseConfig,
    leader: watch::Sender<bool>,
) -> Result<(), LeaseError> {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut last_renewed: Option<tokio::time::Instant> = None;
    loop {
        let now = Timestamp::now();
        let outcome = try_acquire_or_renew(&api, &cfg, now).await;
        match outcome {
            Ok(true) => {
                if last_renewed.is_none() {
                    info!(lease = %cfg.name, identity = %cfg.identity, "Became the leader");
                }
                last_renewed = Some(tokio::time::Instant::now());
                let _ = leader.send(true);
            }
            Ok(false) => {
                if last_renewed.is_some() {
                    warn!(lease = %cfg.name, "Another coordinator took the Lease");
                    let _ = leader.send(false);
                    return Err(LeaseError::Lost {
                        name: cfg.name.clone(),
                        duration: cfg.duration,
                    });
                }
            }
            Err(e) => warn!(lease = %cfg.name, error = %e, "Lease update failed; retrying"),
        }
        if let Some(t) = last_renewed
            && t.elapsed() >= cfg.duration
        {
            let _ = leader.send(false);
            return Err(LeaseError::Lost {
                name: cfg.name.clone(),
                duration: cfg.duration,
            });
        }
        tokio::time::sleep(cfg.renew).await;
    }
}

/// One round: true when this candidate holds the Lease afterwards.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    now: Timestamp,
) -> Result<bool, kube::Error> {
    let seconds = i32::try_from(cfg.duration.as_secs()).unwrap_or(i32::MAX);
    match api.get_opt(&cfg.name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            if held_by_other(&lease, &cfg.identity, now) {
                return Ok(false);
            }
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
                spec.holder_identity = Some(cfg.identity.clone());
                spec.acquire_time = Some(MicroTime(now));
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
            spec.renew_time = Some(MicroTime(now));
            spec.lease_duration_seconds = Some(seconds);
            // replace() sends the resourceVersion we read: a concurrent update makes it
            // fail with 409 and this round is lost, never both candidates winning.
            match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: Timestamp) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(renewed)),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn a_fresh_lease_of_another_blocks_an_expired_one_does_not() {
        let now = Timestamp::now();
        assert!(held_by_other(&lease("a", now), "b", now));
        assert!(!held_by_other(&lease("b", now), "b", now), "our own lease");
        let old = now - SignedDuration::from_secs(16);
        assert!(!held_by_other(&lease("a", old), "b", now), "expired");
    }
}
