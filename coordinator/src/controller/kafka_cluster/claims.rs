//! Changes to the brokers' PersistentVolumeClaims, pure: what a pass does about each
//! claim that exists and that the spec now describes otherwise. Rules:
//! - a claim that does not exist is created (the plan's writes; not here);
//! - a larger `storage` request for a bound claim is patched onto it, and Kubernetes
//!   and the storage class's driver grow the volume (Event `StorageResizing`); for a
//!   claim not bound yet it waits for the binding (Kubernetes resizes bound claims only);
//! - a smaller request, or a change to a field Kubernetes keeps as created
//!   (`storageClassName`, `accessModes`, `volumeMode`, `selector`, `dataSource`, ...), is
//!   refused: the claim is left as it is, condition `StorageChangeBlocked` names the
//!   claim, what it is, what the spec asks and what to do, and the rest of the pass goes
//!   on;
//! - a resize the API server refused (a class without `allowVolumeExpansion`, say) is not
//!   asked again for the same size; it is reported the same way, with the API's words;
//! - a claim whose new size waits for the broker's Pod to restart
//!   (`FileSystemResizePending`) is a restart cause of that broker, for the safe roll.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec};

use crate::{controller::resource_status::Note, quantity};

/// The PVC condition that says the volume grew but its filesystem grows only when a
/// Pod mounts it again.
pub const FILE_SYSTEM_RESIZE_PENDING: &str = "FileSystemResizePending";

/// What a pass needs of an existing claim.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClaimView {
    /// Its spec as stored.
    pub spec: PersistentVolumeClaimSpec,
    /// Whether it is bound to a volume.
    pub bound: bool,
    /// `status.capacity.storage`: the size of the volume it has.
    pub capacity: Option<String>,
    /// The types of its conditions that are `True` (`Resizing`,
    /// `FileSystemResizePending`, ...).
    pub conditions: Vec<String>,
}

impl ClaimView {
    /// The view of `pvc`.
    pub fn of(pvc: &PersistentVolumeClaim) -> Self {
        let status = pvc.status.as_ref();
        Self {
            spec: pvc.spec.clone().unwrap_or_default(),
            bound: status.and_then(|s| s.phase.as_deref()) == Some("Bound"),
            capacity: status
                .and_then(|s| s.capacity.as_ref())
                .and_then(|c| c.get("storage"))
                .map(|q| q.0.clone()),
            conditions: status
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .filter(|c| c.status == "True")
                .map(|c| c.type_.clone())
                .collect(),
        }
    }
}

/// A resize the API server refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The size that was asked.
    pub storage: String,
    /// The API server's message.
    pub message: String,
}

/// A claim to grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resize {
    /// The broker whose claim it is.
    pub broker: i32,
    /// The claim.
    pub pvc: String,
    /// The new `storage` request.
    pub storage: String,
}

/// What the pass does about the claims.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Claims to patch to a larger request.
    pub resizes: Vec<Resize>,
    /// Why a claim is not changed as the spec asks, one line per claim (the
    /// `StorageChangeBlocked` condition).
    pub blocked: Vec<String>,
    /// Claims still growing, one line each (said in the condition when nothing is
    /// blocked).
    pub growing: Vec<String>,
    /// Brokers whose claims wait for a restart to grow their filesystem, with them.
    pub restart_for: BTreeMap<i32, Vec<String>>,
    /// Events.
    pub notes: Vec<Note>,
}

/// Storage requested by `spec`.
fn storage(spec: &PersistentVolumeClaimSpec) -> Option<&str> {
    spec.resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.as_str())
}

/// The fields of `desired` that differ from `actual` and that Kubernetes never changes
/// on a claim (a field the spec leaves unset is one the API server may fill in).
fn immutable_differences(
    desired: &PersistentVolumeClaimSpec,
    actual: &PersistentVolumeClaimSpec,
) -> Vec<&'static str> {
    let mut out = Vec::new();
    let unset_or_same = |d: &Option<String>, a: &Option<String>| d.is_none() || d == a;
    if !unset_or_same(&desired.storage_class_name, &actual.storage_class_name) {
        out.push("storageClassName");
    }
    if desired.access_modes.is_some() && desired.access_modes != actual.access_modes {
        out.push("accessModes");
    }
    if !unset_or_same(&desired.volume_mode, &actual.volume_mode) {
        out.push("volumeMode");
    }
    if !unset_or_same(&desired.volume_name, &actual.volume_name) {
        out.push("volumeName");
    }
    if desired.selector.is_some() && desired.selector != actual.selector {
        out.push("selector");
    }
    if desired.data_source.is_some() && desired.data_source != actual.data_source {
        out.push("dataSource");
    }
    if desired.data_source_ref.is_some() && desired.data_source_ref != actual.data_source_ref {
        out.push("dataSourceRef");
    }
    let limits =
        |s: &PersistentVolumeClaimSpec| s.resources.as_ref().and_then(|r| r.limits.clone());
    if limits(desired).is_some() && limits(desired) != limits(actual) {
        out.push("resources.limits");
    }
    out
}

/// What to do about `desired` (broker `broker`'s claims as the spec describes them),
/// given the claims that exist and the resizes the API server refused.
pub fn step(
    desired: &[(i32, PersistentVolumeClaim)],
    claims: &BTreeMap<String, ClaimView>,
    refused: &BTreeMap<String, Refusal>,
    blocked_before: &str,
) -> Outcome {
    let mut out = Outcome::default();
    let mut restart: BTreeMap<i32, BTreeSet<String>> = BTreeMap::new();
    for (broker, pvc) in desired {
        let name = pvc.metadata.name.clone().unwrap_or_default();
        let Some(actual) = claims.get(&name) else {
            continue;
        };
        let Some(wanted) = pvc.spec.as_ref() else {
            continue;
        };
        let mut block = |why: String| {
            let line = format!("PVC {name} (broker {broker}): {why}");
            if !blocked_before.contains(&line) {
                out.notes.push(Note::warning(
                    "StorageChangeBlocked",
                    "Resizing",
                    line.clone(),
                ));
            }
            out.blocked.push(line);
        };
        let fixed = immutable_differences(wanted, &actual.spec);
        if !fixed.is_empty() {
            block(format!(
                "{} cannot change on an existing claim; the claim is left as it is. Set {} back, or add a disk with the new settings at another mountPath and remove this one (its replicas are moved first)",
                fixed.join(", "),
                if fixed.len() == 1 { "it" } else { "them" },
            ));
            continue;
        }
        let (want, have) = (storage(wanted), storage(&actual.spec));
        let (Some(want), Some(have)) = (want, have) else {
            continue;
        };
        let (Some(want_b), Some(have_b)) = (quantity::bytes(want), quantity::bytes(have)) else {
            block(format!(
                "cannot compare the sizes {want:?} (spec) and {have:?} (claim): neither is changed"
            ));
            continue;
        };
        if want_b < have_b {
            block(format!(
                "the spec asks {want} but the claim has {have}: a claim cannot shrink. Set it to {have} or more, or add a smaller disk at another mountPath and remove this one (its replicas are moved first)"
            ));
            continue;
        }
        if want_b > have_b {
            if let Some(r) = refused.get(&name).filter(|r| r.storage == want) {
                block(format!(
                    "Kubernetes refused to grow it from {have} to {want}: {}. Use a storage class with allowVolumeExpansion: true, or set the size back to {have}",
                    r.message
                ));
            } else if !actual.bound {
                out.growing.push(format!(
                    "PVC {name} (broker {broker}) grows to {want} once it is bound"
                ));
            } else {
                out.notes.push(Note::normal(
                    "StorageResizing",
                    "Resizing",
                    format!("PVC {name} (broker {broker}): growing from {have} to {want}"),
                ));
                out.resizes.push(Resize {
                    broker: *broker,
                    pvc: name.clone(),
                    storage: want.to_owned(),
                });
                out.growing
                    .push(format!("PVC {name} (broker {broker}) grows to {want}"));
            }
            continue;
        }
        // Asked as the spec says: has the volume caught up?
        if actual
            .conditions
            .iter()
            .any(|c| c == FILE_SYSTEM_RESIZE_PENDING)
        {
            restart.entry(*broker).or_default().insert(name.clone());
            out.growing.push(format!(
                "PVC {name} (broker {broker}) grew to {want}; its filesystem grows when broker {broker} restarts"
            ));
        } else if let Some(cap) = actual.capacity.as_deref()
            && quantity::bytes(cap).is_some_and(|c| c < want_b)
        {
            out.growing.push(format!(
                "PVC {name} (broker {broker}) grows to {want} (the volume has {cap})"
            ));
        }
    }
    out.restart_for = restart
        .into_iter()
        .map(|(b, names)| (b, names.into_iter().collect()))
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::core::v1::VolumeResourceRequirements, apimachinery::pkg::api::resource::Quantity,
    };

    use super::*;

    fn spec(size: &str, class: &str) -> PersistentVolumeClaimSpec {
        PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: Some(class.into()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(size.into()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }
    }

    fn desired(size: &str, class: &str) -> Vec<(i32, PersistentVolumeClaim)> {
        vec![(
            1,
            PersistentVolumeClaim {
                metadata: kube::api::ObjectMeta {
                    name: Some("kf-1-storage-kafka-logs".into()),
                    ..Default::default()
                },
                spec: Some(spec(size, class)),
                ..PersistentVolumeClaim::default()
            },
        )]
    }

    fn claims(size: &str, class: &str, capacity: &str) -> BTreeMap<String, ClaimView> {
        BTreeMap::from([(
            "kf-1-storage-kafka-logs".to_owned(),
            ClaimView {
                spec: spec(size, class),
                bound: true,
                capacity: Some(capacity.into()),
                conditions: Vec::new(),
            },
        )])
    }

    fn step_of(d: &[(i32, PersistentVolumeClaim)], c: &BTreeMap<String, ClaimView>) -> Outcome {
        step(d, c, &BTreeMap::new(), "")
    }

    #[test]
    fn a_larger_request_on_a_bound_claim_is_patched() {
        let out = step_of(&desired("20Gi", "fast"), &claims("10Gi", "fast", "10Gi"));
        assert_eq!(
            out.resizes,
            vec![Resize {
                broker: 1,
                pvc: "kf-1-storage-kafka-logs".into(),
                storage: "20Gi".into()
            }]
        );
        assert!(out.blocked.is_empty());
        assert!(out.notes.iter().any(|n| n.reason == "StorageResizing"));
    }

    #[test]
    fn an_unbound_claim_waits_for_its_binding() {
        let mut c = claims("10Gi", "fast", "10Gi");
        c.values_mut().for_each(|v| v.bound = false);
        let out = step_of(&desired("20Gi", "fast"), &c);
        assert!(out.resizes.is_empty() && out.blocked.is_empty());
        assert!(out.growing[0].contains("once it is bound"), "{out:?}");
    }

    #[test]
    fn a_smaller_request_is_refused_and_says_what_to_do() {
        let out = step_of(&desired("5Gi", "fast"), &claims("10Gi", "fast", "10Gi"));
        assert!(out.resizes.is_empty());
        assert!(out.blocked[0].contains("cannot shrink"), "{out:?}");
        assert!(out.blocked[0].contains("10Gi or more"), "{out:?}");
        // Said once in an Event; the condition keeps saying it.
        let again = step(
            &desired("5Gi", "fast"),
            &claims("10Gi", "fast", "10Gi"),
            &BTreeMap::new(),
            &out.blocked.join("; "),
        );
        assert_eq!(again.blocked, out.blocked);
        assert!(again.notes.is_empty());
    }

    #[test]
    fn an_immutable_field_changed_is_refused_and_a_grow_with_it_is_not_half_applied() {
        let out = step_of(&desired("20Gi", "slow"), &claims("10Gi", "fast", "10Gi"));
        assert!(out.resizes.is_empty(), "nothing half-applied: {out:?}");
        assert!(out.blocked[0].contains("storageClassName"), "{out:?}");
    }

    #[test]
    fn fields_the_api_server_fills_in_are_no_change() {
        let mut d = desired("10Gi", "fast");
        d[0].1.spec.as_mut().expect("a spec").storage_class_name = None;
        let mut c = claims("10Gi", "fast", "10Gi");
        c.values_mut().for_each(|v| {
            v.spec.volume_name = Some("pv-1".into());
            v.spec.volume_mode = Some("Filesystem".into());
        });
        let out = step_of(&d, &c);
        assert_eq!(out, Outcome::default());
    }

    #[test]
    fn a_resize_the_api_server_refused_is_not_asked_again_for_that_size() {
        let refused = BTreeMap::from([(
            "kf-1-storage-kafka-logs".to_owned(),
            Refusal {
                storage: "20Gi".into(),
                message: "only dynamically provisioned pvc can be resized".into(),
            },
        )]);
        let out = step(
            &desired("20Gi", "fast"),
            &claims("10Gi", "fast", "10Gi"),
            &refused,
            "",
        );
        assert!(out.resizes.is_empty());
        assert!(
            out.blocked[0].contains("dynamically provisioned"),
            "{out:?}"
        );
        // Another size is asked.
        let out = step(
            &desired("30Gi", "fast"),
            &claims("10Gi", "fast", "10Gi"),
            &refused,
            "",
        );
        assert_eq!(out.resizes.len(), 1);
    }

    #[test]
    fn a_volume_still_growing_is_said_and_a_pending_filesystem_restarts_its_broker() {
        let out = step_of(&desired("20Gi", "fast"), &claims("20Gi", "fast", "10Gi"));
        assert!(out.resizes.is_empty() && out.restart_for.is_empty());
        assert!(out.growing[0].contains("the volume has 10Gi"), "{out:?}");
        let mut c = claims("20Gi", "fast", "20Gi");
        c.values_mut()
            .for_each(|v| v.conditions = vec![FILE_SYSTEM_RESIZE_PENDING.into()]);
        let out = step_of(&desired("20Gi", "fast"), &c);
        assert_eq!(
            out.restart_for,
            BTreeMap::from([(1, vec!["kf-1-storage-kafka-logs".to_owned()])])
        );
        let done = step_of(&desired("20Gi", "fast"), &claims("20Gi", "fast", "20Gi"));
        assert_eq!(done, Outcome::default());
    }
}
