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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_cluster_runs_serves_clients_and_survives_a_killed_and_a_deleted_broker() {
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

    // A client inside the cluster produces and consumes through the advertised listeners.
    let bootstrap = format!("{CLUSTER}-all-broker.{NS}.svc.cluster.local:9092");
    kafka_tool(
        &runtime,
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
    produce(&runtime, &bootstrap, "e2e", 1000);
    consume_all(&runtime, &bootstrap, "e2e", "e2e-1", 1000);

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
    wait_cluster_ready(&clusters, &pods, "after SIGKILL").await;
    consume_all(&runtime, &bootstrap, "e2e", "e2e-2", 1000);

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
    wait_cluster_ready(&clusters, &pods, "after deleting a Pod").await;
    consume_all(&runtime, &bootstrap, "e2e", "e2e-3", 1000);

    token.cancel();
    let _ = controller.await;
    drop(runtime);
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
