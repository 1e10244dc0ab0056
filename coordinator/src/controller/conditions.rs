//! Kubernetes-style conditions, as every resource's status carries them: the types
//! Stoker uses and how one is set (its transition time changes only with its status).

use crate::crd::v1alpha1::Condition;

/// The resource does what its spec asks.
pub const READY: &str = "Ready";
/// Work toward the spec is under way.
pub const RECONCILING: &str = "Reconciling";
/// A part that was ready went down.
pub const DEGRADED: &str = "Degraded";
/// The spec cannot be reconciled as it is.
pub const INVALID: &str = "Invalid";

/// Now, RFC 3339.
pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// Sets condition `type_` in `conds`, keeping its transition time when its status
/// did not change.
pub fn set_condition(
    conds: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &str,
) {
    let status = if status { "True" } else { "False" };
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status {
            c.last_transition_time = now.to_owned();
        }
        c.status = status.to_owned();
        c.reason = reason.to_owned();
        c.message = message.to_owned();
        c.observed_generation = generation;
    } else {
        conds.push(Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            last_transition_time: now.to_owned(),
            observed_generation: generation,
        });
    }
}

/// The condition of `type_`, if set.
pub fn find<'a>(conds: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conds.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_keeps_its_transition_time_while_its_status_holds() {
        let mut c = Vec::new();
        set_condition(&mut c, READY, false, "A", "a", Some(1), "t1");
        set_condition(&mut c, READY, false, "B", "b", Some(2), "t2");
        assert_eq!(c[0].last_transition_time, "t1");
        assert_eq!(c[0].reason, "B");
        set_condition(&mut c, READY, true, "C", "c", Some(3), "t3");
        assert_eq!(c[0].last_transition_time, "t3");
        assert_eq!(find(&c, READY).map(|c| c.status.as_str()), Some("True"));
    }
}
