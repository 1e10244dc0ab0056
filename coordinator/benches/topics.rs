//! KafkaTopic throughput against a real API server and a real Kafka cluster, with its
//! baseline measured in the same run:
//!
//! - 1,000 topics created with one batched CreateTopics call from a native client
//!   (rdkafka) — the baseline;
//! - 1,000 KafkaTopic resources applied at once → all Ready, through the coordinator
//!   (release build, its own process);
//! - the API server's floor for the same: 1,000 resources created and given a Ready
//!   status by eight writers, no operator and no Kafka (no operator can be faster);
//! - the coordinator's RSS with 10,000 more KafkaTopics cached (they name a missing
//!   cluster, so Kafka is not loaded with 10,000 more topics; the cache is what is
//!   measured), once every one of them has been reconciled and the coordinator is idle.
//!
//! Run: `cargo bench -p stoker-coordinator --bench topics` (after `scripts/provision`).

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use kube::{
    Api,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
};
use stoker_coordinator::{
    controller::cluster_ref::BOOTSTRAP_ANNOTATION,
    crd::v1alpha1::{ClusterRef, KafkaCluster, KafkaTopic, KafkaTopicSpec},
};
use stoker_testenv::{
    ControlPlane, KafkaCluster as TestKafka, ManagedProcess, WorkDir,
    control_plane::ControlPlaneOptions,
    net::free_port,
    proc_stats::{peak_rss_mib, rss_mib},
};

const N: usize = 1000;

fn kt(name: &str, cluster: &str) -> KafkaTopic {
    KafkaTopic::new(
        name,
        KafkaTopicSpec {
            cluster_ref: ClusterRef {
                name: cluster.into(),
                namespace: None,
            },
            name: name.into(),
            partitions: 1,
            replication_factor: 1,
            config: BTreeMap::new(),
            deletion_policy: None,
        },
    )
}

async fn create_many(api: &Api<KafkaTopic>, names: impl Iterator<Item = String>, cluster: &str) {
    // Eight writers at a time, as `kubectl apply` of a big manifest would pace itself.
    let names: Vec<String> = names.collect();
    for chunk in names.chunks(8) {
        let creates = chunk.iter().map(|n| {
            let api = api.clone();
            let obj = kt(n, cluster);
            async move {
                api.create(&PostParams::default(), &obj)
                    .await
                    .expect("create KafkaTopic")
            }
        });
        futures::future::join_all(creates).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let plane = ControlPlane::start_with(ControlPlaneOptions {
        controller_manager: false,
    })
    .await
    .expect("control plane");
    plane
        .apply_crds(include_str!("../../deploy/crds/kafka.stoker.io.yaml"))
        .await
        .expect("CRDs");
    let client = plane.client().await.expect("client");
    let kafka = TestKafka::builder()
        .brokers(3)
        .controllers(1)
        .start()
        .await
        .expect("kafka");
    for ns in ["topics", "cache", "floor"] {
        plane.create_namespace(ns).await.expect("namespace");
    }
    let mut kc: KafkaCluster =
        serde_yaml::from_str(include_str!("../../deploy/examples/kafkacluster.yaml"))
            .expect("example");
    kc.metadata.name = Some("kafka".into());
    kc.metadata.namespace = Some("topics".into());
    kc.metadata.annotations =
        Some([(BOOTSTRAP_ANNOTATION.to_owned(), kafka.bootstrap_servers())].into());
    Api::<KafkaCluster>::namespaced(client.clone(), "topics")
        .create(&PostParams::default(), &kc)
        .await
        .expect("cluster");

    // Baseline: one batched CreateTopics.
    let admin: AdminClient<DefaultClientContext> = kafka.client_config().create().expect("admin");
    let batch: Vec<NewTopic<'_>> = Vec::new();
    let names: Vec<String> = (0..N).map(|i| format!("base-{i}")).collect();
    let mut batch = batch;
    for n in &names {
        batch.push(NewTopic::new(n, 1, TopicReplication::Fixed(1)));
    }
    let start = Instant::now();
    let res = admin
        .create_topics(
            batch.iter(),
            &AdminOptions::new()
                .operation_timeout(Some(Duration::from_secs(120)))
                .request_timeout(Some(Duration::from_secs(150))),
        )
        .await
        .expect("CreateTopics answered");
    let baseline = start.elapsed();
    assert!(res.iter().all(Result::is_ok), "baseline creation failed");

    // The API server's floor, before the coordinator runs: the same 1,000 resources
    // created, and each given a Ready status (the least any operator writes), no Kafka.
    let floor_api: Api<KafkaTopic> = Api::namespaced(client.clone(), "floor");
    let start = Instant::now();
    create_many(&floor_api, (0..N).map(|i| format!("floor-{i}")), "kafka").await;
    let names: Vec<String> = (0..N).map(|i| format!("floor-{i}")).collect();
    for chunk in names.chunks(8) {
        let writes = chunk.iter().map(|n| {
            let api = floor_api.clone();
            let status = serde_json::json!({"status": {"conditions": [{
                "type": "Ready", "status": "True", "reason": "Created",
                "message": "created", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
            async move {
                api.patch_status(n, &PatchParams::default(), &Patch::Merge(&status))
                    .await
                    .expect("status write")
            }
        });
        futures::future::join_all(writes).await;
    }
    let floor = start.elapsed();
    floor_api
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .expect("delete the floor's resources");

    let work = WorkDir::new("bench-topics").expect("work dir");
    let mut cmd = Command::new(PathBuf::from(env!("CARGO_BIN_EXE_stoker-coordinator")));
    cmd.arg("run")
        .env("KUBECONFIG", plane.kubeconfig())
        .env(
            "STOKER_COORDINATOR_ADMIN_ADDR",
            format!("127.0.0.1:{}", free_port().expect("port")),
        )
        .env("RUST_LOG", "warn");
    let coordinator =
        ManagedProcess::spawn("coordinator", cmd, &work.path().join("coordinator.log"))
            .expect("coordinator");
    let pid = coordinator.pid().expect("pid");
    tokio::time::sleep(Duration::from_secs(2)).await;

    let topics: Api<KafkaTopic> = Api::namespaced(client.clone(), "topics");
    let start = Instant::now();
    create_many(&topics, (0..N).map(|i| format!("op-{i}")), "kafka").await;
    let applied = start.elapsed();
    loop {
        let list = topics.list(&ListParams::default()).await.expect("list");
        let ready = list
            .items
            .iter()
            .filter(|t| {
                t.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
            })
            .count();
        if ready == N {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(900),
            "only {ready} of {N} topics became Ready"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let operator = start.elapsed();

    // 10,000 cached resources (a missing cluster: each is reconciled once to ClusterNotFound).
    let cache: Api<KafkaTopic> = Api::namespaced(client.clone(), "cache");
    create_many(&cache, (0..10_000).map(|i| format!("c-{i}")), "missing").await;
    // Measured once every resource has been reconciled (its status says the cluster is
    // missing) and the coordinator is idle again: the cost of holding the cache.
    let settle = Instant::now();
    loop {
        let list = cache.list(&ListParams::default()).await.expect("list");
        let done = list.items.iter().filter(|t| t.status.is_some()).count();
        if done == 10_000 {
            break;
        }
        assert!(
            settle.elapsed() < Duration::from_secs(600),
            "only {done} of 10,000 topics were reconciled"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let reconciled_10k = settle.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_10k = rss_mib(pid);
    let peak_rss = peak_rss_mib(pid);

    println!("\nKafkaTopic throughput (release coordinator, real API server, 3 real brokers)");
    println!(
        "  1,000 topics, one batched CreateTopics (baseline)   {:>8.2} s",
        baseline.as_secs_f64()
    );
    println!(
        "  1,000 KafkaTopics applied -> all Ready              {:>8.2} s   ({:.2} s of which applying the resources)",
        operator.as_secs_f64(),
        applied.as_secs_f64()
    );
    println!(
        "  ratio                                               {:>8.2}x  (goal <= 1.5x)",
        operator.as_secs_f64() / baseline.as_secs_f64()
    );
    println!(
        "  API-server floor: 1,000 creates + 1,000 status writes {:>6.2} s   ({:.2}x the baseline; the coordinator takes {:.2}x the floor)",
        floor.as_secs_f64(),
        floor.as_secs_f64() / baseline.as_secs_f64(),
        operator.as_secs_f64() / floor.as_secs_f64()
    );
    println!(
        "  all Ready after the last resource was applied       {:>8.2} s   ({:.2}x the baseline)",
        (operator - applied).as_secs_f64(),
        (operator - applied).as_secs_f64() / baseline.as_secs_f64()
    );
    println!(
        "  topic events per second                             {:>8.1}",
        N as f64 / operator.as_secs_f64()
    );
    println!(
        "  10,000 more KafkaTopics reconciled (missing cluster) {:>7.2} s after they were applied",
        reconciled_10k.as_secs_f64()
    );
    println!(
        "  coordinator RSS with 11,000 KafkaTopics cached      {rss_10k:>8.1} MiB  (goal <= 64 MiB; peak {peak_rss:.1} MiB)"
    );
    drop(coordinator);
}
