//! Disks end to end, on the local Pod runtime with real brokers, real agents and the
//! real Cruise Control the coordinator deploys from `cruiseControlConfig`, under Kafka's
//! verifiable producer (acks=all, idempotent): a disk added to broker 1 is mounted by a
//! safe restart and balanced onto (a KafkaRebalance with `rebalanceDisk`); removed
//! again, it is emptied by `remove_disks` — Cruise Control's Pod force-deleted
//! mid-task, the lost task asked again of the new one — and unmounted only then; every
//! acknowledged record is consumed exactly once.
//!
//! Brokers added and removed (3 → 4 → 3, the coordinator killed twice mid-removal) are
//! tested end to end where alerts drive them: `alert_scaling.rs`.

mod support;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use kube::api::{Patch, PatchParams};
use stoker_coordinator::crd::v1alpha1::{KafkaCluster, KafkaRebalance, RebalanceState};
use support::*;

const TOPIC: &str = "orders";

/// A scaling test's closing checks: the claim `pvc` of what was removed is kept
/// (`pvcDeletionPolicy: Retain`), the producer ran through it all with no send failed,
/// and every record it had acknowledged is consumed exactly once.
async fn kept_and_nothing_lost(
    env: &Env,
    pvc: &str,
    mut producer: stoker_testenv::ManagedProcess,
    bootstrap: &str,
    phase: &impl Fn(&str),
) {
    let pvcs: kube::Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        kube::Api::namespaced(env.clusters.clone().into_client(), NS);
    assert!(
        pvcs.get_opt(pvc).await.expect("get").is_some(),
        "its PVC {pvc} is kept (pvcDeletionPolicy: Retain)"
    );
    let (acked, failed) = stop_producer(&mut producer);
    phase(&format!(
        "sends acknowledged {}, failed {failed}",
        acked.len()
    ));
    assert!(acked.len() > 10_000, "the producer ran through it all");
    assert_consumed_once(&env.runtime, bootstrap, TOPIC, &acked);
    assert_eq!(failed, 0, "no send failed");
}

/// `cruise_control_cluster()` with Cruise Control's capacity derived from the brokers' disks (the
/// example gives one DISK for every broker, which a broker with two disks cannot use).
fn jbod_cluster() -> KafkaCluster {
    let mut kc = cruise_control_cluster();
    if let Some(cc) = kc.spec.cruise_control_config.as_mut() {
        cc.capacity_config = None;
    }
    kc
}

/// Broker 1's own `storageConfigs`: the group's disk at each of `mounts`, 100 MiB each
/// (small, so the few MB the test writes are a share Cruise Control balances).
async fn set_broker_one_disks(env: &Env, mounts: &[&str]) {
    let disks: Vec<serde_json::Value> = mounts
        .iter()
        .map(|m| {
            serde_json::json!({
                "mountPath": m,
                "pvcSpec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "100Mi"}}}
            })
        })
        .collect();
    let mut kc = env.clusters.get(CLUSTER).await.expect("get");
    let b = kc
        .spec
        .brokers
        .iter_mut()
        .find(|b| b.id == 1)
        .expect("broker 1");
    let mut config = b.broker_config.clone().unwrap_or_default();
    config.storage_configs =
        serde_json::from_value(serde_json::Value::Array(disks)).expect("disks");
    b.broker_config = Some(config);
    let patch = serde_json::json!({"spec": {"brokers": kc.spec.brokers}});
    env.clusters
        .patch(CLUSTER, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch broker 1's storageConfigs");
}

/// Force-deletes Cruise Control's Pod (as a node failure would take it): its Deployment
/// makes a new one, which knows none of the old one's tasks.
async fn kill_cruise_control(env: &Env) {
    let selector = format!(
        "{}={CLUSTER},{}={}",
        stoker_coordinator::cruise_control::LABEL_INSTANCE,
        stoker_coordinator::cruise_control::LABEL_COMPONENT,
        stoker_coordinator::cruise_control::COMPONENT
    );
    let pods = env
        .pods
        .list(&kube::api::ListParams::default().labels(&selector))
        .await
        .expect("list Cruise Control's Pods")
        .items;
    assert!(!pods.is_empty(), "Cruise Control runs");
    for p in pods {
        env.pods
            .delete(
                &p.metadata.name.expect("a name"),
                &kube::api::DeleteParams::default().grace_period(0),
            )
            .await
            .expect("force-delete Cruise Control's Pod");
    }
}

/// Partitions in each of broker 1's log dirs, from Kafka's own tool.
fn log_dirs_of_broker_one(env: &Env, bootstrap: &str) -> BTreeMap<String, usize> {
    let out = kafka_tool(
        &env.runtime,
        "kafka-run-class.sh",
        &[
            "org.apache.kafka.tools.LogDirsCommand",
            "--bootstrap-server",
            bootstrap,
            "--describe",
            "--broker-list",
            "1",
        ],
    );
    let json = out
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("LogDirsCommand printed no JSON: {out}"));
    let v: serde_json::Value = serde_json::from_str(json).expect("LogDirsCommand's JSON");
    v["brokers"][0]["logDirs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (
                d["logDir"].as_str().unwrap_or_default().to_owned(),
                d["partitions"].as_array().map_or(0, Vec::len),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_added_gets_replicas_and_a_disk_removed_loses_none() {
    let t0 = Instant::now();
    let phase = |what: &str| println!("[{:>6.1}s] {what}", t0.elapsed().as_secs_f64());
    let env = Env::start_with(jbod_cluster()).await;
    phase("3 brokers and a controller Ready");
    let bootstrap = format!("{CLUSTER}-all-broker.{NS}.svc.cluster.local:9092");
    create_topic(&env.runtime, &bootstrap, TOPIC, 6, 3, 2);
    let rebalances: kube::Api<KafkaRebalance> =
        kube::Api::namespaced(env.clusters.clone().into_client(), NS);
    let work = tempfile::tempdir().expect("temp dir");
    let producer = spawn_producer(&env.runtime, &bootstrap, TOPIC, 150, work.path());
    let second = "/kafka-logs-2/kafka";

    // A second disk for broker 1: mounted by a safe restart, then balanced onto.
    set_broker_one_disks(&env, &["/kafka-logs", "/kafka-logs-2"]).await;
    let name = format!("{CLUSTER}-rebalance-disks-1");
    let deadline = Instant::now() + Duration::from_secs(480);
    let mut last = String::new();
    loop {
        let st = env
            .clusters
            .get(CLUSTER)
            .await
            .expect("get")
            .status
            .unwrap_or_default();
        let op = rebalances.get_opt(&name).await.expect("get");
        let state = op.as_ref().and_then(|o| o.status.as_ref()?.state);
        let line = format!(
            "disks {:?}; {name} {state:?} {:?}; cruise control {:?}",
            st.scaling.as_ref().map(|s| s
                .disks
                .iter()
                .map(|d| (d.state, d.message.clone()))
                .collect::<Vec<_>>()),
            op.as_ref().and_then(|o| o.status.as_ref()?.message.clone()),
            st.cruise_control
                .as_ref()
                .and_then(|c| c.message.clone().or(c.monitor_state.clone())),
        );
        if line != last {
            phase(&line);
            last = line;
        }
        if state == Some(RebalanceState::Completed) && st.scaling.is_none() {
            break;
        }
        assert!(
            state != Some(RebalanceState::Failed),
            "the disk rebalance failed: {last}"
        );
        assert!(
            Instant::now() < deadline,
            "the added disk was not balanced onto: {last}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let dirs = log_dirs_of_broker_one(&env, &bootstrap);
    phase(&format!("disk added; broker 1's log dirs {dirs:?}"));
    assert!(
        dirs.get(second).copied().unwrap_or(0) > 0,
        "Cruise Control moved replicas onto the new disk: {dirs:?}"
    );
    assert!(!event_notes(&env, "DiskBalanced").await.is_empty());

    // Removed again: emptied by remove_disks first, and unmounted only once empty.
    // Cruise Control's Pod is force-deleted while the task runs: the task is lost (CC
    // keeps none), the KafkaRebalance says so and asks the new Cruise Control again.
    set_broker_one_disks(&env, &["/kafka-logs"]).await;
    let name = format!("{CLUSTER}-remove-disks-1");
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut cc_killed = false;
    loop {
        let st = env
            .clusters
            .get(CLUSTER)
            .await
            .expect("get")
            .status
            .unwrap_or_default();
        let op = rebalances.get_opt(&name).await.expect("get");
        let state = op.as_ref().and_then(|o| o.status.as_ref()?.state);
        let pod = env
            .pods
            .get_opt(&format!("{CLUSTER}-1"))
            .await
            .expect("get");
        let mounted = pod.as_ref().is_some_and(|p| {
            p.spec.iter().flat_map(|s| &s.containers).any(|c| {
                c.volume_mounts
                    .iter()
                    .flatten()
                    .any(|m| m.mount_path == "/kafka-logs-2")
            })
        });
        let line = format!(
            "disks {:?}; {name} {state:?} {:?}; mounted {mounted}",
            st.scaling.as_ref().map(|s| s
                .disks
                .iter()
                .map(|d| (d.state, d.message.clone()))
                .collect::<Vec<_>>()),
            op.as_ref().and_then(|o| o.status.as_ref()?.message.clone()),
        );
        if line != last {
            phase(&line);
            last = line;
        }
        if !cc_killed && state == Some(RebalanceState::Running) {
            kill_cruise_control(&env).await;
            cc_killed = true;
            phase("Cruise Control's Pod force-deleted mid-task");
        }
        let back = st.brokers_state.get("1").is_some_and(|b| b.ready);
        if !mounted && pod.is_some() && st.scaling.is_none() && back {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the removed disk was not emptied: {last}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(cc_killed, "Cruise Control was killed while the task ran");
    // Done: by Cruise Control's confirmation, or — its task lost again when the disk
    // change restarted it — by the agent's proof that the disk is empty.
    let deadline = Instant::now() + Duration::from_secs(120);
    let st = loop {
        let st = rebalances
            .get(&name)
            .await
            .expect("get")
            .status
            .unwrap_or_default();
        if st.state.is_some_and(RebalanceState::finished) {
            break st;
        }
        assert!(Instant::now() < deadline, "{name} never finished: {st:?}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    phase(&format!("{name}: {:?} {:?}", st.state, st.message));
    assert_eq!(st.state, Some(RebalanceState::Completed), "{st:?}");
    assert!(
        st.lost_tasks >= 1,
        "the task Cruise Control lost was noticed, not taken for done: {st:?}"
    );
    assert!(!event_notes(&env, "TaskLost").await.is_empty());
    let dirs = log_dirs_of_broker_one(&env, &bootstrap);
    phase(&format!("disk removed; broker 1's log dirs {dirs:?}"));
    assert!(!dirs.contains_key(second), "{dirs:?}");
    assert!(
        dirs.get("/kafka-logs/kafka").copied().unwrap_or(0) > 0,
        "{dirs:?}"
    );
    let removed = event_notes(&env, "DiskRemoved").await;
    assert!(
        removed.iter().any(|n| n.contains("/kafka-logs-2")),
        "{removed:?}"
    );
    let unavailable = kafka_tool(
        &env.runtime,
        "kafka-topics.sh",
        &[
            "--bootstrap-server",
            &bootstrap,
            "--describe",
            "--unavailable-partitions",
        ],
    );
    assert!(
        unavailable.trim().is_empty(),
        "partitions offline: {unavailable}"
    );
    kept_and_nothing_lost(
        &env,
        &format!("{CLUSTER}-1-storage-kafka-logs-2"),
        producer,
        &bootstrap,
        &phase,
    )
    .await;
    env.stop().await;
}
