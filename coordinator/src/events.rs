//! Kubernetes Events (`events.k8s.io/v1`) as a person reading `kubectl describe` needs
//! them: every distinct note is its own Event, and only an exact repeat (same object,
//! reason, note and related object within six minutes) becomes a series. (kube's
//! `Recorder` folds Events by reason alone and keeps the first note, so "broker 1
//! restarted" would read as "broker 0 restarted".)

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::{
        core::v1::ObjectReference,
        events::v1::{Event as K8sEvent, EventSeries},
    },
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
    runtime::events::{Event, EventType},
};

/// How long an Event may be continued as a series.
const SERIES_WINDOW: Duration = Duration::from_secs(360);

/// The most bytes the API server takes in an Event's note.
pub const MAX_NOTE_BYTES: usize = 1024;

/// `note` cut to [`MAX_NOTE_BYTES`] at a character boundary, ending in "…" when cut
/// (a longer note makes the API server refuse the whole Event).
pub fn fitted(note: &str) -> String {
    if note.len() <= MAX_NOTE_BYTES {
        return note.to_owned();
    }
    const MORE: &str = "…";
    let mut end = MAX_NOTE_BYTES - MORE.len();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MORE}", &note[..end])
}

/// Publishes Events for one controller (clones share their series cache).
#[derive(Clone)]
pub struct Publisher {
    client: Client,
    controller: String,
    instance: String,
    recent: Arc<Mutex<HashMap<String, Recent>>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("controller", &self.controller)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
struct Recent {
    name: String,
    count: i32,
    at: Instant,
}

fn key(ev: &Event, regarding: &ObjectReference) -> String {
    let related = ev
        .secondary
        .as_ref()
        .map(|r| format!("{:?}/{:?}", r.kind, r.name))
        .unwrap_or_default();
    format!(
        "{:?}|{:?}|{}|{}|{:?}|{}",
        regarding.uid, regarding.name, ev.reason, ev.action, ev.note, related
    )
}

impl Publisher {
    /// A publisher reporting as `controller` (the pod name, if known, is the instance).
    pub fn new(client: Client, controller: &str) -> Self {
        Self {
            client,
            controller: controller.to_owned(),
            instance: std::env::var("POD_NAME").unwrap_or_else(|_| controller.to_owned()),
            recent: Arc::default(),
        }
    }

    /// Publishes `ev` about `regarding` (in its namespace).
    pub async fn publish(
        &self,
        ev: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        let now = k8s_openapi::jiff::Timestamp::now();
        let k = key(ev, regarding);
        let repeat = {
            let mut recent = self
                .recent
                .lock()
                .expect("the event cache lock is never poisoned");
            recent.retain(|_, r| r.at.elapsed() < SERIES_WINDOW);
            recent.get_mut(&k).map(|r| {
                r.count += 1;
                r.at = Instant::now();
                r.clone()
            })
        };
        if let Some(r) = repeat {
            let series = EventSeries {
                count: r.count,
                last_observed_time: MicroTime(now),
            };
            let patch = serde_json::json!({ "series": series });
            api.patch(&r.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            return Ok(());
        }
        let base = regarding.name.clone().unwrap_or_else(|| "object".into());
        let event = K8sEvent {
            metadata: ObjectMeta {
                name: Some(format!("{base}.{:x}", now.as_nanosecond())),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            note: ev.note.as_deref().map(fitted),
            type_: Some(
                match ev.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            regarding: Some(regarding.clone()),
            related: ev.secondary.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..K8sEvent::default()
        };
        let created = api.create(&PostParams::default(), &event).await?;
        self.recent
            .lock()
            .expect("the event cache lock is never poisoned")
            .insert(
                k,
                Recent {
                    name: created.metadata.name.unwrap_or_default(),
                    count: 1,
                    at: Instant::now(),
                },
            );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_notes_are_cut_to_what_the_api_server_takes() {
        assert_eq!(fitted("short"), "short");
        let long = "é".repeat(700);
        let cut = fitted(&long);
        assert!(cut.len() <= MAX_NOTE_BYTES, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert!(cut.starts_with("éé"));
    }
}
