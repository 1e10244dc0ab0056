//! Graceful scaling end to end, on the local Pod runtime with real brokers, real agents
//! and the real Cruise Control the coordinator deploys from `cruiseControlConfig`,
//! under Kafka's verifiable producer (acks=all, idempotent):
//! - 3 → 4 brokers: the new broker is Ready, a KafkaRebalance `AddBrokers` moves
//!   partitions onto it, and it ends up holding replicas;
//! - 4 → 3: the removed broker is drained first (a KafkaRebalance `RemoveBrokers`), the
//!   coordinator is killed twice mid-removal and resumes from status, and the broker's
//!   Pod goes only once the metadata shows it holds no replica of any topic;
//! - a disk added to broker 1 is mounted by a safe restart and balanced onto (a
//!   KafkaRebalance with `rebalanceDisk`); removed again, it is emptied by
//!   `remove_disks` and unmounted only then;
//! - every acknowledged record is consumed exactly once.

mod support;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use kube::api::{Patch, PatchParams};
use stoker_coordinator::crd::v1alpha1::{KafkaCluster, KafkaRebalance, RebalanceState};
use support::*;

const TOPIC: &str = "orders";

/// Replicas per broker of every topic (internal ones included), from Kafka's own tool.
fn replicas_per_broker(env: &Env, bootstrap: &str) -> BTreeMap<i32, usize> {
    let out = kafka_tool(
        &env.runtime,
        "kafka-topics.sh",
        &["--bootstrap-server", bootstrap, "--describe"],
    );
    let mut per = BTreeMap::new();
    for line in out.lines() {
        let Some(replicas) = line
            .split('\t')
            .find_map(|f| f.trim().strip_prefix("Replicas: "))
        else {
            continue;
        };
        for r in replicas
            .split(',')
            .filter_map(|r| r.trim().parse::<i32>().ok())
        {
            *per.entry(r).or_default() += 1;
        }
    }
    per
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_scale_up_and_down_through_cruise_control_without_losing_a_record() {
    let t0 = Instant::now();
    let phase = |what: &str| println!("[{:>6.1}s] {what}", t0.elapsed().as_secs_f64());
    let mut env = Env::start_with(cruise_control_cluster()).await;
    phase("3 brokers and a controller Ready");
    let bootstrap = format!("{CLUSTER}-all-broker.{NS}.svc.cluster.local:9092");
    create_topic(&env.runtime, &bootstrap, TOPIC, 6, 3, 2);
    let rebalances: kube::Api<KafkaRebalance> =
        kube::Api::namespaced(env.clusters.clone().into_client(), NS);
    // 150 records/s for 400 s: through the scale-up and the scale-down.
    let (_work, producer) = start_producer(&env.runtime, &bootstrap, TOPIC, 60_000, 150);

    // 3 → 4.
    set_brokers(&env.clusters, &[0, 1, 2, 3]).await;
    let deadline = Instant::now() + Duration::from_secs(420);
    let mut last = String::new();
    loop {
        let st = env
            .clusters
            .get(CLUSTER)
            .await
            .expect("get")
            .status
            .unwrap_or_default();
        let op = rebalances
            .get_opt(&format!("{CLUSTER}-add-3"))
            .await
            .expect("get");
        let line = format!(
            "scaling {:?}; add-3 {:?} {:?}; cruise control {:?}",
            st.scaling.as_ref().map(|s| &s.adding),
            op.as_ref().and_then(|o| o.status.as_ref()?.state),
            op.as_ref().and_then(|o| o.status.as_ref()?.message.clone()),
            st.cruise_control
                .as_ref()
                .and_then(|c| c.message.clone().or(c.monitor_state.clone())),
        );
        if line != last {
            phase(&line);
            last = line;
        }
        let done =
            op.as_ref().and_then(|o| o.status.as_ref()?.state) == Some(RebalanceState::Completed);
        if done && st.scaling.is_none() {
            break;
        }
        assert!(
            op.as_ref().and_then(|o| o.status.as_ref()?.state) != Some(RebalanceState::Failed),
            "the scale-up failed: {last}"
        );
        assert!(
            Instant::now() < deadline,
            "the scale-up did not finish: {last}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let after_up = replicas_per_broker(&env, &bootstrap);
    phase(&format!("scaled up; replicas per broker {after_up:?}"));
    assert!(
        after_up.get(&3).copied().unwrap_or(0) > 0,
        "the new broker holds replicas: {after_up:?}"
    );
    assert!(
        !event_notes(&env, "BrokerAdded").await.is_empty(),
        "a BrokerAdded Event says so"
    );

    // 4 → 3, with the coordinator killed twice along the way.
    set_brokers(&env.clusters, &[0, 1, 2]).await;
    let broker3 = format!("{CLUSTER}-3");
    let deadline = Instant::now() + Duration::from_secs(420);
    let mut kills = 0;
    loop {
        let st = env
            .clusters
            .get(CLUSTER)
            .await
            .expect("get")
            .status
            .unwrap_or_default();
        let removing = st
            .scaling
            .as_ref()
            .and_then(|s| s.removing.iter().find(|r| r.broker == 3).cloned());
        let pod = env.pods.get_opt(&broker3).await.expect("get");
        let line = format!(
            "removing {:?}; pod {}",
            removing.as_ref().map(|r| (r.state, r.message.clone())),
            if pod.is_some() { "present" } else { "gone" }
        );
        if line != last {
            phase(&line);
            last = line;
        }
        // Killed once right after the spec change is seen, once mid-drain.
        if kills == 0 && removing.is_some() {
            env.kill_coordinator().await;
            kills += 1;
            phase("coordinator killed while the removal began");
        }
        let draining = rebalances
            .get_opt(&format!("{CLUSTER}-remove-3"))
            .await
            .expect("get")
            .and_then(|o| o.status?.state)
            == Some(RebalanceState::Running);
        if kills == 1 && draining {
            env.kill_coordinator().await;
            kills += 1;
            phase("coordinator killed mid-drain");
        }
        if pod.is_none() {
            // Deleted: the metadata must show it holds nothing, internal topics included.
            let now = replicas_per_broker(&env, &bootstrap);
            assert_eq!(
                now.get(&3),
                None,
                "broker 3 was deleted while it held replicas: {now:?}"
            );
            phase(&format!("broker 3 removed; replicas per broker {now:?}"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the scale-down did not finish: {last}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert_eq!(kills, 2, "the coordinator was killed at both steps");
    let st = env
        .clusters
        .get(CLUSTER)
        .await
        .expect("get")
        .status
        .unwrap_or_default();
    assert!(!st.brokers_state.contains_key("3"));
    let removed = event_notes(&env, "BrokerRemoved").await;
    assert!(
        removed
            .iter()
            .any(|n| n.starts_with("broker 3 holds no replica")),
        "{removed:?}"
    );
    assert!(
        env.pods
            .get_opt(&format!("{CLUSTER}-3"))
            .await
            .expect("get")
            .is_none()
    );
    // Its PVC kept, and nothing acknowledged was lost or duplicated.
    kept_and_nothing_lost(
        &env,
        &format!("{CLUSTER}-3-storage-kafka-logs"),
        producer,
        &bootstrap,
        &phase,
    )
    .await;
    env.stop().await;
}

/// A scaling test's closing checks: the claim `pvc` of what was removed is kept
/// (`pvcDeletionPolicy: Retain`), the producer ran through it all with no send failed,
/// and every record it had acknowledged is consumed exactly once.
async fn kept_and_nothing_lost(
    env: &Env,
    pvc: &str,
    producer: tokio::task::JoinHandle<std::process::Output>,
    bootstrap: &str,
    phase: &impl Fn(&str),
) {
    let pvcs: kube::Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        kube::Api::namespaced(env.clusters.clone().into_client(), NS);
    assert!(
        pvcs.get_opt(pvc).await.expect("get").is_some(),
        "its PVC {pvc} is kept (pvcDeletionPolicy: Retain)"
    );
    let output = producer.await.expect("producer task");
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    let (acked, failed) = producer_results(&out);
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
    let (_work, producer) = start_producer(&env.runtime, &bootstrap, TOPIC, 60_000, 150);
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
    set_broker_one_disks(&env, &["/kafka-logs"]).await;
    let name = format!("{CLUSTER}-remove-disks-1");
    let deadline = Instant::now() + Duration::from_secs(600);
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
