//! What every controller shares about status and Events: each resource keeps
//! `conditions` and `observedGeneration`, writes its status by server-side apply under
//! one field manager (only when it changed), and publishes an Event for every decision.

use k8s_openapi::{NamespaceResourceScope, api::core::v1::ObjectReference};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::events::{Event, EventType},
};
use serde::Serialize;
use tracing::warn;

use super::conditions::{READY, now, set_condition};
use crate::{
    crd::v1alpha1::{
        Condition, KafkaCluster, KafkaClusterStatus, KafkaRebalance, KafkaRebalanceStatus,
        KafkaTopic, KafkaTopicStatus, KafkaUser, KafkaUserStatus,
    },
    events::Publisher,
};

/// The field manager of every object and status Stoker writes.
pub const FIELD_MANAGER: &str = "stoker-coordinator";

/// A status with conditions and the generation they describe.
pub trait StatusConditions: Clone + Default + PartialEq + Serialize + std::fmt::Debug {
    /// Its conditions.
    fn conditions(&self) -> &[Condition];
    /// Its conditions, to change.
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    /// Records the generation the status describes.
    fn set_observed_generation(&mut self, generation: Option<i64>);
}

/// A resource whose status carries conditions.
pub trait WithConditions:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
{
    /// Its status type.
    type Status: StatusConditions;
    /// The status, if it has one.
    fn status(&self) -> Option<&Self::Status>;
}

macro_rules! with_conditions {
    ($kind:ty, $status:ty) => {
        impl StatusConditions for $status {
            fn conditions(&self) -> &[Condition] {
                &self.conditions
            }
            fn conditions_mut(&mut self) -> &mut Vec<Condition> {
                &mut self.conditions
            }
            fn set_observed_generation(&mut self, generation: Option<i64>) {
                self.observed_generation = generation;
            }
        }

        impl WithConditions for $kind {
            type Status = $status;
            fn status(&self) -> Option<&$status> {
                self.status.as_ref()
            }
        }
    };
}

with_conditions!(KafkaCluster, KafkaClusterStatus);
with_conditions!(KafkaTopic, KafkaTopicStatus);
with_conditions!(KafkaUser, KafkaUserStatus);
with_conditions!(KafkaRebalance, KafkaRebalanceStatus);

/// The Ready condition's status, reason and message, if there is one.
pub fn ready<S: StatusConditions>(status: &S) -> Option<(&str, &str, &str)> {
    status
        .conditions()
        .iter()
        .find(|c| c.type_ == READY)
        .map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_str()))
}

/// An Event about a resource: its type, reason, the action taken, and what a person
/// should know; `related` names a second object (a broker's Pod).
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    /// Normal or Warning.
    pub warning: bool,
    /// PascalCase reason.
    pub reason: String,
    /// What was being done, a verb (`Rolling`, `Reconciling`).
    pub action: String,
    /// The message.
    pub note: String,
    /// A related object (for broker Events, the broker's Pod).
    pub related: Option<ObjectReference>,
}

impl Note {
    /// A Normal Event.
    pub fn normal(reason: &str, action: &str, note: impl Into<String>) -> Self {
        Self {
            warning: false,
            reason: reason.to_owned(),
            action: action.to_owned(),
            note: note.into(),
            related: None,
        }
    }

    /// A Warning Event.
    pub fn warning(reason: &str, action: &str, note: impl Into<String>) -> Self {
        Self {
            warning: true,
            ..Self::normal(reason, action, note)
        }
    }

    /// The same Event, related to `object`.
    #[must_use]
    pub fn about(mut self, object: ObjectReference) -> Self {
        self.related = Some(object);
        self
    }
}

/// Publishes `note` about `obj` (a failure to publish is logged, never an error: an
/// Event is a report, not a step of the reconcile).
pub async fn publish<K: Resource<DynamicType = ()>>(recorder: &Publisher, obj: &K, note: Note) {
    let ev = Event {
        type_: if note.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: note.reason,
        note: Some(note.note),
        action: note.action,
        secondary: note.related,
    };
    if let Err(e) = recorder.publish(&ev, &obj.object_ref(&())).await {
        warn!(error = %e, reason = %ev.reason, "Failed to publish an Event");
    }
}

/// Writes `status` by server-side apply (whatever the object already has) and returns
/// the object as the API server stored it.
pub async fn write<K: WithConditions>(
    client: &kube::Client,
    obj: &K,
    status: &K::Status,
) -> Result<K, kube::Error> {
    let api: Api<K> = Api::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
}

/// Writes `status` by server-side apply, unless it is what `obj` already has.
pub async fn patch<K: WithConditions>(
    client: &kube::Client,
    obj: &K,
    status: K::Status,
) -> Result<(), kube::Error> {
    if obj.status() == Some(&status) {
        return Ok(());
    }
    write(client, obj, &status).await?;
    Ok(())
}

/// Sets Ready=False with `reason` and `message` for the current generation, and
/// publishes a Warning Event when that reason and message are new.
pub async fn not_ready<K: WithConditions>(
    client: &kube::Client,
    recorder: &Publisher,
    obj: &K,
    reason: &str,
    message: String,
) -> Result<(), kube::Error> {
    let mut st = obj.status().cloned().unwrap_or_default();
    let is_new = ready(&st).is_none_or(|(_, r, m)| r != reason || m != message);
    st.set_observed_generation(obj.meta().generation);
    set_condition(
        st.conditions_mut(),
        READY,
        false,
        reason,
        &message,
        obj.meta().generation,
        &now(),
    );
    patch(client, obj, st).await?;
    if is_new {
        warn!(kind = %K::kind(&()), reason, message = %message, "Not ready");
        publish(recorder, obj, Note::warning(reason, "Reconciling", message)).await;
    }
    Ok(())
}
