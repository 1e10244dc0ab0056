//! Proof that the test environment runs a real Kubernetes API: a CRD is installed and
//! served, a custom resource is created, watched and given a status by server-side
//! apply, and kube-controller-manager garbage-collects what it owned.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::{
    api::core::v1::ConfigMap,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, CustomResource, CustomResourceExt, Resource, ResourceExt,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
    runtime::{
        conditions,
        wait::await_condition,
        watcher::{self, Event},
    },
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use stoker_testenv::ControlPlane;

/// A throwaway resource for proving the API server works.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "proof.stoker.io",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
struct WidgetSpec {
    size: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
struct WidgetStatus {
    observed_size: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_watch_server_side_apply_status_and_garbage_collection() {
    let mut plane = ControlPlane::start()
        .await
        .expect("the control plane starts");
    let client = plane.client().await.expect("a client");

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Widget::crd())
        .await
        .expect("the CRD is created");
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(
            crds,
            "widgets.proof.stoker.io",
            conditions::is_crd_established(),
        ),
    )
    .await
    .expect("the CRD is established in time")
    .expect("the CRD can be watched");

    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    let events = watcher::watcher(widgets.clone(), watcher::Config::default())
        .try_filter_map(|e| async move {
            Ok(match e {
                Event::Apply(w) | Event::InitApply(w) => Some(w),
                _ => None,
            })
        })
        .boxed();

    let created = widgets
        .create(
            &PostParams::default(),
            &Widget::new("w1", WidgetSpec { size: 3 }),
        )
        .await
        .expect("the widget is created");

    let status = serde_json::json!({
        "apiVersion": "proof.stoker.io/v1",
        "kind": "Widget",
        "status": { "observed_size": 3 }
    });
    let ssa = PatchParams::apply("stoker-proof").force();
    widgets
        .patch_status("w1", &ssa, &Patch::Apply(&status))
        .await
        .expect("status is applied server-side");

    // The watch sees the object with its status.
    let mut events = events;
    let seen = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(w) = events.try_next().await.expect("the watch stream works") {
            if w.status.as_ref().is_some_and(|s| s.observed_size == 3) {
                return w;
            }
        }
        panic!("the watch ended");
    })
    .await
    .expect("the watch delivers the status update");
    assert_eq!(seen.spec.size, 3);
    let managers: Vec<String> = seen
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.contains(&"stoker-proof".to_owned()),
        "field manager recorded: {managers:?}"
    );

    // A ConfigMap owned by the widget goes when the widget goes (garbage collector).
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let owner = created
        .controller_owner_ref(&())
        .expect("the widget has a uid");
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("w1-config".into()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("the owned ConfigMap is created");
    widgets
        .delete("w1", &Default::default())
        .await
        .expect("the widget is deleted");
    let uid = cms
        .get("w1-config")
        .await
        .expect("still there right after")
        .uid();
    tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(
            cms,
            "w1-config",
            conditions::is_deleted(&uid.unwrap_or_default()),
        ),
    )
    .await
    .expect("the garbage collector deletes the owned ConfigMap")
    .expect("the ConfigMap can be watched");

    plane.ensure_running().expect("every component still runs");
    assert!(Widget::api_version(&()) == "proof.stoker.io/v1");
}
