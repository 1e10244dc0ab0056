//! What the KafkaTopic and KafkaUser controllers share about status and Events: both
//! keep `conditions` and `observedGeneration`, write their status by server-side apply
//! (only when it changed), and publish an Event for every new reason.

use k8s_openapi::NamespaceResourceScope;
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::events::{Event, EventType},
};
use serde::Serialize;
use tracing::warn;

use super::kafka_cluster::{
    build::FIELD_MANAGER,
    status::{now, set_condition},
};
use crate::{
    crd::v1alpha1::{Condition, KafkaTopic, KafkaTopicStatus, KafkaUser, KafkaUserStatus},
    events::Publisher,
};

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

with_conditions!(KafkaTopic, KafkaTopicStatus);
with_conditions!(KafkaUser, KafkaUserStatus);

/// The Ready condition's status, reason and message, if there is one.
pub fn ready<S: StatusConditions>(status: &S) -> Option<(&str, &str, &str)> {
    status
        .conditions()
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_str()))
}

/// Publishes an Event about `obj` (a failure to publish is logged, never an error).
pub async fn publish<K: Resource<DynamicType = ()>>(
    recorder: &Publisher,
    obj: &K,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconciling".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, &obj.object_ref(&())).await {
        warn!(error = %e, "Failed to publish an Event");
    }
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
    .await?;
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
        "Ready",
        false,
        reason,
        &message,
        obj.meta().generation,
        &now(),
    );
    patch(client, obj, st).await?;
    if is_new {
        warn!(kind = %K::kind(&()), reason, message = %message, "Not ready");
        publish(recorder, obj, EventType::Warning, reason, message).await;
    }
    Ok(())
}
