//! Leader election against a real API server: of two candidates exactly one leads;
//! when the leader stops renewing, the other takes over after the Lease expires.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use stoker_coordinator::lease::{self, LeaseConfig};
use stoker_testenv::{ControlPlane, control_plane::ControlPlaneOptions};
use tokio::sync::watch;

fn config(identity: &str) -> LeaseConfig {
    LeaseConfig {
        name: "stoker-coordinator".into(),
        namespace: "default".into(),
        identity: identity.into(),
        duration: Duration::from_secs(4),
        renew: Duration::from_millis(500),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_candidate_leads_and_the_other_takes_over_when_it_stops() {
    let plane = ControlPlane::start_with(ControlPlaneOptions {
        controller_manager: false,
    })
    .await
    .expect("control plane");
    let client = plane.client().await.expect("client");
    let (a_tx, mut a_rx) = watch::channel(false);
    let (b_tx, b_rx) = watch::channel(false);
    let a = tokio::spawn(lease::run(client.clone(), config("a"), a_tx));
    tokio::time::timeout(Duration::from_secs(10), a_rx.wait_for(|l| *l))
        .await
        .expect("a leads")
        .expect("a runs");
    let b = tokio::spawn(lease::run(client.clone(), config("b"), b_tx));

    // While a renews, b never leads.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!*b_rx.borrow(), "two leaders at once");
        assert!(*a_rx.borrow());
    }
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let held = leases.get("stoker-coordinator").await.expect("the Lease");
    assert_eq!(
        held.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("a")
    );

    // a stops (its process died): b takes over once the Lease expires.
    a.abort();
    let mut b_rx = b_rx;
    tokio::time::timeout(Duration::from_secs(15), b_rx.wait_for(|l| *l))
        .await
        .expect("b takes over")
        .expect("b runs");
    let held = leases.get("stoker-coordinator").await.expect("the Lease");
    let spec = held.spec.expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));
    b.abort();
}
