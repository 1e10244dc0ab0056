//! The coordinator's controllers, and what they share: how a failed reconcile is
//! retried ([`Backoff`], [`retry_after`]), the error contract ([`ReconcileError`]),
//! conditions ([`conditions`]) and status and Event writing ([`resource_status`]).

pub mod cluster_ref;
pub mod conditions;
pub mod kafka_cluster;
pub mod kafka_rebalance;
pub mod kafka_topic;
pub mod kafka_user;
pub mod resource_status;

use std::{collections::HashMap, sync::Mutex, time::Duration};

use kube::{Resource, ResourceExt, runtime::controller::Action};
use tracing::warn;

use crate::metrics::ControllerMetrics;

/// An error and its sources on one line, for logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src.source();
    }
    s
}

/// What every controller's error tells the retry policy, the metrics and the logs.
pub trait ReconcileError: std::error::Error {
    /// A stable label for metrics, logs and Event reasons.
    fn category(&self) -> &'static str;
}

/// The first retry delay after a failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// The longest retry delay.
pub const BACKOFF_CAP: Duration = Duration::from_secs(120);

/// Exponential backoff per object: the n-th failure in a row waits
/// `BACKOFF_BASE · 2^(n-1)`, at most [`BACKOFF_CAP`]; a successful reconcile resets it.
/// (A fixed delay either hammers a struggling API server or Kafka, or leaves a
/// quickly fixed problem unnoticed for long.)
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(BACKOFF_BASE, BACKOFF_CAP)
    }
}

impl Backoff {
    /// A backoff from `base`, doubling up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            failures: Mutex::default(),
        }
    }

    /// Records one more failure of `key` and returns how long to wait before retrying.
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = self
            .failures
            .lock()
            .expect("the backoff lock is never poisoned");
        let n = failures.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        let factor = 2u32.saturating_pow(n.saturating_sub(1).min(31));
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Forgets the failures of `key` (it reconciled).
    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .expect("the backoff lock is never poisoned")
            .remove(key);
    }
}

/// `kind/namespace/name`: the backoff key of an object.
pub fn object_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// The shared `error_policy`: counts and logs the failure, and retries after the
/// object's backoff. Permanent problems (an invalid spec, a request Kafka will never
/// accept) never reach it: reconciles report them in a condition and an Event and wait
/// for a change of the spec.
pub fn retry_after<K, E>(
    obj: &K,
    error: &E,
    metrics: &ControllerMetrics,
    backoff: &Backoff,
) -> Action
where
    K: Resource<DynamicType = ()>,
    E: ReconcileError,
{
    let category = error.category();
    metrics.reconcile_failed(category);
    let delay = backoff.failed(&object_key(obj));
    warn!(
        kind = %K::kind(&()),
        name = %obj.name_any(),
        namespace = obj.namespace().unwrap_or_default(),
        category,
        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        error = %error_chain(error),
        "Reconcile failed; retrying"
    );
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets_on_success() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let waits: Vec<u64> = (0..6).map(|_| b.failed("a").as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        assert_eq!(b.failed("b").as_secs(), 1, "per object");
        b.succeeded("a");
        assert_eq!(b.failed("a").as_secs(), 1);
        // Thousands of failures in a row never overflow.
        for _ in 0..5000 {
            b.failed("c");
        }
        assert_eq!(b.failed("c").as_secs(), 10);
    }
}
