//! End to end on the local Pod runtime: the example KafkaCluster becomes real broker
//! Pods (a `stoker-agent` native sidecar beside each Kafka), serves clients through
//! its advertised listeners, survives a SIGKILLed broker, and a broker Pod deleted by
//! hand goes through the agent's preStop safety wait.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api,
    api::{DeleteParams, PostParams},
};
use stoker_coordinator::{crd::v1alpha1::KafkaCluster, metrics::ControllerMetrics};
use stoker_testenv::{
    ControlPlane, PodRuntime, PodRuntimeOptions,
    pod_runtime::{DEFAULT_NODE_NAME, ImageMap},
    provisioned, workspace_binary,
};
use tokio_util::sync::CancellationToken;

const NS: &str = "alerting";
const CLUSTER: &str = "kf-kafka";
const AGENT_IMAGE: &str = "ghcr.io/stoker-operator/stoker-agent:dev";

fn kafka_home() -> PathBuf {
    provisioned("kafka", "kafka/bin/kafka-server-start.sh")
        .expect("kafka provisioned")
        .parent()
        .and_then(Path::parent)
        .expect("kafka home")
        .to_owned()
}

fn api_server(plane: &ControlPlane) -> (String, u16) {
    let hostport = plane
        .server()
        .trim_start_matches("https://")
        .trim_end_matches('/');
    let (host, port) = hostport.rsplit_once(':').expect("host:port");
    (host.to_owned(), port.parse().expect("port"))
}

fn ready(kc: &KafkaCluster) -> Option<(String, String)> {
    kc.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.message.clone()))
}

async fn wait_cluster_ready(clusters: &Api<KafkaCluster>, pods: &Api<Pod>, what: &str) {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let kc = clusters.get(CLUSTER).await.expect("get cluster");
        if ready(&kc).is_some_and(|r| r.0 == "True") {
            println!("{what}: Ready after {:?}", start.elapsed());
            return;
        }
        let summary: Vec<String> = pods
            .list(&Default::default())
            .await
            .expect("pods")
            .items
            .iter()
            .map(|p| {
                let st = p.status.clone().unwrap_or_default();
                let ready = st
                    .conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                format!(
                    "{}={}{}",
                    p.metadata.name.clone().unwrap_or_default(),
                    st.phase.unwrap_or_default(),
                    if ready { "/ready" } else { "" }
                )
            })
            .collect();
        let now = format!("{:?} pods: {}", ready(&kc), summary.join(" "));
        if now != last {
            println!("[{:>5.1}s] {now}", start.elapsed().as_secs_f64());
            last = now;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "{what}: the cluster never became Ready: {last}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Runs one of Kafka's tools as a client inside the cluster (names resolve through the
/// runtime's hosts file) and returns its stdout.
fn kafka_tool(runtime: &PodRuntime, tool: &str, args: &[&str]) -> String {
    let out = runtime
        .client_command(kafka_home().join("bin").join(tool))
        .args(args)
        .env("KAFKA_HEAP_OPTS", "-Xmx256m")
        .env(
            "KAFKA_JVM_PERFORMANCE_OPTS",
            "-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true",
        )
        .stdin(Stdio::null())
        .output()
        .expect("run the Kafka tool");
    assert!(
        out.status.success(),
        "{tool} failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Counts the JSON events named `name` in a verifiable tool's output and sums `field`.
fn sum_events(out: &str, name: &str, field: &str) -> u64 {
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["name"] == name)
        .map(|v| v[field].as_u64().unwrap_or(1))
        .sum()
}

fn produce(runtime: &PodRuntime, bootstrap: &str, topic: &str, n: u64) {
    let out = kafka_tool(
        runtime,
        "kafka-verifiable-producer.sh",
        &[
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--max-messages",
            &n.to_string(),
            "--acks",
            "-1",
        ],
    );
    let acked = out
        .lines()
        .filter(|l| l.contains("\"producer_send_success\""))
        .count() as u64;
    assert_eq!(acked, n, "every record acknowledged:\n{out}");
}

fn consume_all(runtime: &PodRuntime, bootstrap: &str, topic: &str, group: &str, n: u64) {
    let out = kafka_tool(
        runtime,
        "kafka-verifiable-consumer.sh",
        &[
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--group-id",
            group,
            "--max-messages",
            &n.to_string(),
            "--reset-policy",
            "earliest",
        ],
    );
    assert_eq!(
        sum_events(&out, "records_consumed", "count"),
        n,
        "every record consumed once:\n{}",
        out.lines().rev().take(5).collect::<Vec<_>>().join("\n")
    );
}

/// A control plane, the runtime, the coordinator's KafkaCluster controller, and the
/// example cluster applied and Ready.
struct Env {
    runtime: PodRuntime,
    token: CancellationToken,
    controller: tokio::task::JoinHandle<()>,
    clusters: Api<KafkaCluster>,
    pods: Api<Pod>,
    // Dropped last.
    _plane: ControlPlane,
}

impl Env {
    async fn start() -> Self {
        let plane = ControlPlane::start().await.expect("control plane");
        plane
            .apply_crds(include_str!("../../deploy/crds/kafka.stoker.io.yaml"))
            .await
            .expect("CRDs");
        let client = plane.client().await.expect("client");
        plane.create_namespace(NS).await.expect("namespace");

        let runtime = PodRuntime::start(
            client.clone(),
            PodRuntimeOptions {
                node_name: DEFAULT_NODE_NAME.into(),
                images: ImageMap {
                    kafka_home: kafka_home(),
                    agent_bin: workspace_binary("stoker-agent").expect("agent binary"),
                },
                api_server: Some(api_server(&plane)),
                api_ca: Some(plane.ca_cert()),
                node_labels: [
                    ("topology.kubernetes.io/region", "local"),
                    ("topology.kubernetes.io/zone", "local-a"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            },
        )
        .await
        .expect("runtime");

        let token = CancellationToken::new();
        let metrics = Arc::new(ControllerMetrics::new(
            &prometheus::Registry::new(),
            "kafkacluster",
        ));
        let controller = tokio::spawn(stoker_coordinator::controller::kafka_cluster::run(
            client.clone(),
            AGENT_IMAGE.into(),
            metrics,
            token.clone(),
        ));

        // kubectl apply -f deploy/examples/kafkacluster.yaml
        let kc: KafkaCluster =
            serde_yaml::from_str(include_str!("../../deploy/examples/kafkacluster.yaml"))
                .expect("example");
        let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), NS);
        let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
        clusters
            .create(&PostParams::default(), &kc)
            .await
            .expect("apply the example");
        wait_cluster_ready(&clusters, &pods, "example applied").await;
        Self {
            runtime,
            token,
            controller,
            clusters,
            pods,
            _plane: plane,
        }
    }

    async fn stop(self) {
        self.token.cancel();
        let _ = self.controller.await;
        drop(self.runtime);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_cluster_runs_serves_clients_and_survives_a_killed_and_a_deleted_broker() {
    let env = Env::start().await;
    let (runtime, clusters, pods) = (&env.runtime, &env.clusters, &env.pods);

    // A client inside the cluster produces and consumes through the advertised listeners.
    let bootstrap = format!("{CLUSTER}-all-broker.{NS}.svc.cluster.local:9092");
    kafka_tool(
        runtime,
        "kafka-topics.sh",
        &[
            "--bootstrap-server",
            &bootstrap,
            "--create",
            "--topic",
            "e2e",
            "--partitions",
            "3",
            "--replication-factor",
            "3",
            "--config",
            "min.insync.replicas=2",
        ],
    );
    produce(runtime, &bootstrap, "e2e", 1000);
    consume_all(runtime, &bootstrap, "e2e", "e2e-1", 1000);

    // A broker's Kafka process SIGKILLed: the runtime restarts it (restartPolicy Always),
    // it rejoins, and nothing acknowledged is lost.
    let pod = format!("{CLUSTER}-1");
    let pid = runtime
        .container_pid(NS, &pod, "kafka")
        .expect("broker 1 runs");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let p = pods.get(&pod).await.expect("pod");
        let st = p.status.unwrap_or_default();
        let restarts = st
            .container_statuses
            .iter()
            .flatten()
            .find(|c| c.name == "kafka")
            .map_or(0, |c| c.restart_count);
        let ready = st
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if restarts >= 1 && ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "broker 1 was not restarted and ready again (restarts {restarts})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    wait_cluster_ready(clusters, pods, "after SIGKILL").await;
    consume_all(runtime, &bootstrap, "e2e", "e2e-2", 1000);

    // A broker Pod deleted by hand: the preStop hook waits until stopping is safe, the
    // Pod goes, and the coordinator brings it back with its data (the claim outlives it).
    let pod = format!("{CLUSTER}-2");
    let uid = pods.get(&pod).await.expect("pod").metadata.uid;
    pods.delete(&pod, &DeleteParams::default())
        .await
        .expect("delete the Pod");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(p) = pods.get_opt(&pod).await.expect("get")
            && p.metadata.uid != uid
        {
            break;
        }
        assert!(Instant::now() < deadline, "the deleted Pod never came back");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let agent_log = std::fs::read_to_string(runtime.container_log(NS, &pod, "stoker-agent"))
        .expect("agent log");
    assert!(
        agent_log.contains("Safe to stop; letting Kafka shut down"),
        "the preStop hook went through the agent's safety wait:\n{}",
        agent_log
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    wait_cluster_ready(clusters, pods, "after deleting a Pod").await;
    consume_all(runtime, &bootstrap, "e2e", "e2e-3", 1000);

    env.stop().await;
}

/// What a kubelet would say about a Pod it cannot run: a waiting reason and a message
/// per container, never a silent hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_the_runtime_cannot_run_say_why() {
    let plane = ControlPlane::start_with(stoker_testenv::control_plane::ControlPlaneOptions {
        controller_manager: false,
    })
    .await
    .expect("control plane");
    let client = plane.client().await.expect("client");
    plane.create_namespace("bad").await.expect("namespace");
    let _runtime = PodRuntime::start(
        client.clone(),
        PodRuntimeOptions {
            node_name: DEFAULT_NODE_NAME.into(),
            images: ImageMap {
                kafka_home: kafka_home(),
                agent_bin: workspace_binary("stoker-agent").expect("agent binary"),
            },
            api_server: Some(api_server(&plane)),
            api_ca: Some(plane.ca_cert()),
            node_labels: Default::default(),
        },
    )
    .await
    .expect("runtime");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bad");
    let pod = |name: &str, extra: &str| -> Pod {
        serde_yaml::from_str(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  automountServiceAccountToken: false\n{extra}"
        ))
        .expect("pod yaml")
    };
    let cases = [
        (
            pod(
                "unknown-image",
                "  containers: [{name: web, image: \"nginx:1.27\"}]\n",
            ),
            "ErrImagePull",
            "\"nginx:1.27\" has no local install",
        ),
        (
            pod(
                "nfs-volume",
                "  containers: [{name: agent, image: \"stoker-agent:dev\", volumeMounts: [{name: data, mountPath: /data}]}]\n  volumes: [{name: data, nfs: {server: nfs.example, path: /exports}}]\n",
            ),
            "CreateContainerConfigError",
            "volume data: this volume type is not supported",
        ),
        (
            pod(
                "grpc-probe",
                "  containers: [{name: agent, image: \"stoker-agent:dev\", readinessProbe: {grpc: {port: 8081}}}]\n",
            ),
            "CreateContainerConfigError",
            "readinessProbe uses a probe type the local Pod runtime does not support",
        ),
    ];
    for (p, _, _) in &cases {
        pods.create(&PostParams::default(), p)
            .await
            .expect("create");
    }
    for (p, reason, message) in &cases {
        let name = p.metadata.name.clone().expect("name");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let waiting = pods
                .get(&name)
                .await
                .expect("get")
                .status
                .and_then(|s| s.container_statuses)
                .and_then(|cs| cs.into_iter().next())
                .and_then(|c| c.state?.waiting);
            if let Some(w) = &waiting
                && w.reason.as_deref() == Some(*reason)
                && w.message.as_deref().is_some_and(|m| m.contains(message))
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: expected {reason} with {message:?}, got {waiting:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The smallest ISR any partition of `topic` has, read from the cluster metadata of the
/// first broker that answers (None when none does).
async fn min_isr(pods: &Api<Pod>, topic: &str) -> Option<usize> {
    use stoker_kafka::kafka_protocol::messages::{
        MetadataRequest, TopicName, metadata_request::MetadataRequestTopic,
    };
    let ips: Vec<String> = pods
        .list(&Default::default())
        .await
        .ok()?
        .items
        .into_iter()
        .filter_map(|p| p.status?.pod_ip)
        .collect();
    for ip in ips {
        let Ok(mut conn) =
            stoker_kafka::Connection::connect(&format!("{ip}:9092"), Duration::from_secs(2)).await
        else {
            continue;
        };
        let req = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(TopicName(topic.to_owned().into()))),
        ]));
        if let Ok(md) = conn.send("Metadata", &req, 12).await
            && let Some(t) = md.topics.first()
            && t.error_code == 0
        {
            return t.partitions.iter().map(|p| p.isr_nodes.len()).min();
        }
    }
    None
}

fn broker_uids(list: &[Pod]) -> std::collections::BTreeMap<String, String> {
    list.iter()
        .map(|p| {
            (
                p.metadata.name.clone().unwrap_or_default(),
                p.metadata.uid.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// The restart counts of every Pod's containers.
fn restarts(list: &[Pod]) -> i32 {
    list.iter()
        .flat_map(|p| {
            p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_change_rolls_the_brokers_one_at_a_time_without_losing_a_record() {
    let env = Env::start().await;
    let (runtime, clusters, pods) = (&env.runtime, &env.clusters, &env.pods);
    let bootstrap = format!("{CLUSTER}-all-broker.{NS}.svc.cluster.local:9092");
    kafka_tool(
        runtime,
        "kafka-topics.sh",
        &[
            "--bootstrap-server",
            &bootstrap,
            "--create",
            "--topic",
            "roll",
            "--partitions",
            "3",
            "--replication-factor",
            "3",
            "--config",
            "min.insync.replicas=2",
        ],
    );
    let before = pods.list(&Default::default()).await.expect("pods").items;

    // A dynamic key on every broker: applied live, nothing restarts.
    let patch = serde_json::json!({"spec": {"brokerConfigGroups": {"default_group": {"config": "log.retention.ms=7200000"}}}});
    clusters
        .patch(
            CLUSTER,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("dynamic change");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let kc = clusters.get(CLUSTER).await.expect("get");
        let st = kc.status.clone().unwrap_or_default();
        let applied = ["0", "1", "2"].iter().all(|id| {
            st.brokers_state.get(*id).is_some_and(|b| {
                b.config_hash_in_force.is_some() && b.config_hash_in_force == b.desired_config_hash
            })
        });
        if applied && st.observed_generation == kc.metadata.generation {
            assert!(
                st.rolling_upgrade.is_none(),
                "a dynamic change never rolls: {st:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dynamic key was not applied: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let now = pods.list(&Default::default()).await.expect("pods").items;
    assert_eq!(
        broker_uids(&now),
        broker_uids(&before),
        "no Pod was replaced"
    );
    assert_eq!(restarts(&now), restarts(&before), "no container restarted");

    // A verifiable producer (idempotent, acks=all) runs through everything below.
    let work = tempfile::tempdir().expect("temp dir");
    let props = work.path().join("producer.properties");
    std::fs::write(
        &props,
        "enable.idempotence=true\nretries=2147483647\ndelivery.timeout.ms=300000\nrequest.timeout.ms=15000\n",
    )
    .expect("producer config");
    // 200 records/s for 150 s: long enough to span the blocked phase and the roll.
    let mut cmd = runtime.client_command(kafka_home().join("bin/kafka-verifiable-producer.sh"));
    cmd.args([
        "--bootstrap-server",
        &bootstrap,
        "--topic",
        "roll",
        "--acks",
        "-1",
        "--throughput",
        "200",
        "--max-messages",
        "30000",
    ])
    .arg("--producer.config")
    .arg(&props)
    .env("KAFKA_HEAP_OPTS", "-Xmx256m")
    .env(
        "KAFKA_JVM_PERFORMANCE_OPTS",
        "-XX:+UseSerialGC -XX:TieredStopAtLevel=1",
    )
    .stdin(Stdio::null());
    let producer = tokio::task::spawn_blocking(move || cmd.output().expect("run the producer"));
    tokio::time::sleep(Duration::from_secs(8)).await;

    // Broker 2 freezes: the roll that a static change starts waits, and says why.
    let frozen = runtime
        .container_pid(NS, &format!("{CLUSTER}-2"), "kafka")
        .expect("broker 2 runs");
    let frozen = nix::unistd::Pid::from_raw(i32::try_from(frozen).expect("pid"));
    nix::sys::signal::kill(frozen, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    let deadline = Instant::now() + Duration::from_secs(60);
    while clusters
        .get(CLUSTER)
        .await
        .expect("get")
        .status
        .and_then(|s| s.brokers_state.get("2").map(|b| b.ready))
        .unwrap_or(true)
    {
        assert!(
            Instant::now() < deadline,
            "the frozen broker was never noticed"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let roll_started = Instant::now();
    let patch = serde_json::json!({"spec": {"readOnlyConfig": "offsets.topic.replication.factor=2\ndefault.replication.factor=2\ntransaction.state.log.min.isr=1\ndelete.topic.enable=true\nnum.partitions=32\nauto.create.topics.enable=false\ntransaction.state.log.replication.factor=2\nqueued.max.requests=600\n"}});
    clusters
        .patch(
            CLUSTER,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("static change");
    let mut lowest_isr = usize::MAX;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let st = clusters
            .get(CLUSTER)
            .await
            .expect("get")
            .status
            .unwrap_or_default();
        if let Some(w) = st
            .rolling_upgrade
            .as_ref()
            .and_then(|r| r.waiting_for.clone())
            && w.contains("failing broker")
            && w.contains("broker 2")
        {
            assert!(
                st.rolling_upgrade
                    .as_ref()
                    .is_some_and(|r| r.restarted.is_empty() && r.broker_in_progress.is_none()),
                "nothing restarts while a broker fails: {st:?}"
            );
            println!("roll blocked, as it should: {w}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the roll never said it was blocked: {st:?}"
        );
        if let Some(m) = min_isr(pods, "roll").await {
            lowest_isr = lowest_isr.min(m);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    nix::sys::signal::kill(frozen, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");

    // The roll resumes by itself and restarts every node, one at a time.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last = String::new();
    loop {
        let kc = clusters.get(CLUSTER).await.expect("get");
        let st = kc.status.clone().unwrap_or_default();
        let now = pods.list(&Default::default()).await.expect("pods").items;
        let replaced = broker_uids(&now)
            .iter()
            .filter(|(name, uid)| broker_uids(&before).get(*name) != Some(uid))
            .count();
        let down = now
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some())
            .count();
        assert!(down <= 1, "more than one broker down at once");
        if let Some(m) = min_isr(pods, "roll").await {
            lowest_isr = lowest_isr.min(m);
        }
        let line = format!(
            "{:?} replaced={replaced}",
            st.rolling_upgrade
                .as_ref()
                .map(|r| (&r.restarted, &r.waiting_for))
        );
        if line != last {
            println!("[{:>5.1}s] {line}", roll_started.elapsed().as_secs_f64());
            last = line.clone();
        }
        if replaced == now.len()
            && st.rolling_upgrade.is_none()
            && ready(&kc).is_some_and(|r| r.0 == "True")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the roll did not finish: {line}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let roll_time = roll_started.elapsed();
    println!(
        "roll of {} nodes: {roll_time:?}; lowest ISR seen {lowest_isr}",
        before.len()
    );

    // The producer finishes; every acknowledged record is consumed exactly once.
    let output = producer.await.expect("producer task");
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    let events: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let acked: std::collections::BTreeSet<String> = events
        .iter()
        .filter(|e| e["name"] == "producer_send_success")
        .filter_map(|e| e["value"].as_str().map(str::to_owned))
        .collect();
    let failed = events
        .iter()
        .filter(|e| e["name"] == "producer_send_error")
        .count();
    println!("sends acknowledged {}, failed {failed}", acked.len());
    assert!(
        acked.len() > 1000,
        "the producer ran through the roll ({} acked)",
        acked.len()
    );
    let consumed_out = kafka_tool(
        runtime,
        "kafka-console-consumer.sh",
        &[
            "--bootstrap-server",
            &bootstrap,
            "--topic",
            "roll",
            "--from-beginning",
            "--timeout-ms",
            "20000",
            "--max-messages",
            &acked.len().to_string(),
        ],
    );
    let consumed: Vec<&str> = consumed_out.lines().collect();
    let distinct: std::collections::BTreeSet<&str> = consumed.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        consumed.len(),
        "a record was consumed twice"
    );
    let missing: Vec<&String> = acked
        .iter()
        .filter(|v| !distinct.contains(v.as_str()))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "acknowledged records lost: {missing:?}");
    assert_eq!(failed, 0, "no send failed");
    assert!(
        lowest_isr >= 2,
        "a partition fell below min ISR: {lowest_isr}"
    );
    env.stop().await;
}
