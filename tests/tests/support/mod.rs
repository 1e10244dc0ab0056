//! What the end-to-end tests and the roll benchmark share: the example cluster on the
//! local Pod runtime with the coordinator's KafkaCluster controller, and clients run
//! inside the cluster (Kafka's own tools).
#![allow(dead_code, unreachable_pub)]

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, api::PostParams};
use stoker_coordinator::{context::Context, crd::v1alpha1::KafkaCluster};
use stoker_testenv::{
    ControlPlane, KubeEnv, PodRuntime, PodRuntimeOptions,
    pod_runtime::{DEFAULT_NODE_NAME, ImageMap},
    provisioned, workspace_binary,
};
use tokio_util::sync::CancellationToken;

pub const NS: &str = "alerting";
pub const CLUSTER: &str = "kf-kafka";
pub const AGENT_IMAGE: &str = "ghcr.io/stoker-operator/stoker-agent:dev";

pub fn kafka_home() -> PathBuf {
    provisioned("kafka", "kafka/bin/kafka-server-start.sh")
        .expect("kafka provisioned")
        .parent()
        .and_then(Path::parent)
        .expect("kafka home")
        .to_owned()
}

/// The images the local Pod runtime maps: the provisioned Kafka and Cruise Control,
/// the built agent and, with `coordinator`, the built coordinator.
pub fn local_images(coordinator: bool) -> ImageMap {
    ImageMap {
        kafka_home: kafka_home(),
        agent_bin: workspace_binary("stoker-agent").expect("agent binary"),
        agent_jmx_exporter_jar: kafka_home().join("agents/jmx_prometheus_javaagent.jar"),
        cruise_control_home: stoker_testenv::CruiseControl::home()
            .expect("cruise control provisioned"),
        coordinator_bin: coordinator
            .then(|| workspace_binary("stoker-coordinator").expect("coordinator binary")),
    }
}

/// The local node's labels: a region and a zone, as the example's `rackAwareness`
/// reads them.
pub fn node_labels() -> std::collections::BTreeMap<String, String> {
    [
        ("topology.kubernetes.io/region", "local"),
        ("topology.kubernetes.io/zone", "local-a"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A control plane (with the controller manager when asked), the namespaces `ns`, and
/// the local Pod runtime (its node labelled as [`node_labels`]) running whatever Pods
/// appear — no coordinator.
pub async fn bare_runtime(
    ns: &[&str],
    controller_manager: bool,
    images: ImageMap,
) -> (ControlPlane, kube::Client, PodRuntime) {
    let plane = ControlPlane::start_with(stoker_testenv::control_plane::ControlPlaneOptions {
        controller_manager,
    })
    .await
    .expect("control plane");
    let client = plane.client().await.expect("client");
    for ns in ns {
        plane.create_namespace(ns).await.expect("namespace");
    }
    let runtime = PodRuntime::start(
        client.clone(),
        PodRuntimeOptions {
            node_name: DEFAULT_NODE_NAME.into(),
            images,
            api_server: Some(api_server(&plane)),
            api_ca: Some(plane.ca_cert()),
            node_labels: node_labels(),
        },
    )
    .await
    .expect("runtime");
    (plane, client, runtime)
}

pub fn api_server(plane: &ControlPlane) -> (String, u16) {
    let hostport = plane
        .server()
        .trim_start_matches("https://")
        .trim_end_matches('/');
    let (host, port) = hostport.rsplit_once(':').expect("host:port");
    (host.to_owned(), port.parse().expect("port"))
}

pub fn ready(kc: &KafkaCluster) -> Option<(String, String)> {
    kc.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.message.clone()))
}

pub async fn wait_cluster_ready(clusters: &Api<KafkaCluster>, pods: &Api<Pod>, what: &str) {
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
pub fn kafka_tool(runtime: &PodRuntime, tool: &str, args: &[&str]) -> String {
    kafka_tool_output(tool, kafka_tool_command(runtime, tool, args).output())
}

/// The command [`kafka_tool`] runs, to run it in the background.
pub fn kafka_tool_command(
    runtime: &PodRuntime,
    tool: &str,
    args: &[&str],
) -> std::process::Command {
    let mut cmd = runtime.client_command(kafka_home().join("bin").join(tool));
    cmd.args(args)
        .env("KAFKA_HEAP_OPTS", "-Xmx256m")
        .env(
            "KAFKA_JVM_PERFORMANCE_OPTS",
            "-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true",
        )
        .stdin(Stdio::null());
    cmd
}

/// The stdout of a Kafka tool that ran, failing the test when it failed.
pub fn kafka_tool_output(tool: &str, out: std::io::Result<std::process::Output>) -> String {
    let out = out.expect("run the Kafka tool");
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
pub fn sum_events(out: &str, name: &str, field: &str) -> u64 {
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["name"] == name)
        .map(|v| v[field].as_u64().unwrap_or(1))
        .sum()
}

pub fn produce(runtime: &PodRuntime, bootstrap: &str, topic: &str, n: u64) {
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

pub fn consume_all(runtime: &PodRuntime, bootstrap: &str, topic: &str, group: &str, n: u64) {
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

/// The coordinator's KafkaCluster and KafkaRebalance controllers, running until the
/// token is cancelled.
pub fn start_coordinator(
    client: &kube::Client,
    registry: &prometheus::Registry,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let token = CancellationToken::new();
    let ctx = Context::new(client.clone(), AGENT_IMAGE.into(), registry);
    let controller = tokio::spawn({
        let token = token.clone();
        async move {
            tokio::join!(
                stoker_coordinator::controller::kafka_cluster::run(ctx.clone(), token.clone()),
                stoker_coordinator::controller::kafka_rebalance::run(ctx, token),
            );
        }
    });
    (token, controller)
}

/// A control plane, the runtime, the coordinator's KafkaCluster controller, and the
/// example cluster applied and Ready.
pub struct Env {
    pub runtime: PodRuntime,
    pub token: CancellationToken,
    pub controller: tokio::task::JoinHandle<()>,
    pub clusters: Api<KafkaCluster>,
    pub pods: Api<Pod>,
    /// The coordinator's metrics, as its `/metrics` serves them: its controllers'
    /// reconciles and, unless counted elsewhere ([`Env::start_counted`]), its API
    /// requests. A restarted coordinator reports into a registry of its own.
    pub registry: prometheus::Registry,
    /// The coordinator's own client (always counted, as in production).
    coordinator_client: kube::Client,
    // Dropped last.
    plane: ControlPlane,
}

/// The KafkaCluster of `deploy/examples/kafkacluster.yaml`.
pub fn example_cluster() -> KafkaCluster {
    serde_yaml::from_str(include_str!("../../../deploy/examples/kafkacluster.yaml"))
        .expect("example")
}

impl Env {
    /// The example cluster (`kubectl apply -f deploy/examples/kafkacluster.yaml`), Ready.
    pub async fn start() -> Self {
        Self::start_with(example_cluster()).await
    }

    /// `kc`, applied and Ready.
    pub async fn start_with(kc: KafkaCluster) -> Self {
        Self::start_counted(kc, None).await
    }

    /// `kc`, applied and Ready; with `requests`, every request the coordinator sends the
    /// API server is counted there (`stoker_kube_requests_total`, as in production).
    pub async fn start_counted(
        kc: KafkaCluster,
        requests: Option<stoker_coordinator::kube_client::RequestMetrics>,
    ) -> Self {
        let KubeEnv { plane, client } = KubeEnv::start(&[NS])
            .await
            .expect("control plane with CRDs");
        // Every Pod the coordinator makes must meet Pod Security Standard `restricted`:
        // the API server's PodSecurity admission refuses any that does not.
        Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
            .patch(
                NS,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(serde_json::json!({"metadata": {"labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                }}})),
            )
            .await
            .expect("enforce the restricted Pod Security Standard");
        let registry = prometheus::Registry::new();
        let requests = requests
            .unwrap_or_else(|| stoker_coordinator::kube_client::RequestMetrics::new(&registry));
        let coordinator_client = {
            let kubeconfig =
                kube::config::Kubeconfig::read_from(plane.kubeconfig()).expect("kubeconfig");
            let config = kube::Config::from_custom_kubeconfig(
                kubeconfig,
                &kube::config::KubeConfigOptions::default(),
            )
            .await
            .expect("config");
            stoker_coordinator::kube_client::connect_with(config, requests)
                .expect("a counted client")
        };

        let runtime = PodRuntime::start(
            client.clone(),
            PodRuntimeOptions {
                node_name: DEFAULT_NODE_NAME.into(),
                images: local_images(false),
                api_server: Some(api_server(&plane)),
                api_ca: Some(plane.ca_cert()),
                node_labels: node_labels(),
            },
        )
        .await
        .expect("runtime");

        let (token, controller) = start_coordinator(&coordinator_client, &registry);

        let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), NS);
        let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
        clusters
            .create(&PostParams::default(), &kc)
            .await
            .expect("apply the cluster");
        wait_cluster_ready(&clusters, &pods, "cluster applied").await;
        Self {
            runtime,
            token,
            controller,
            clusters,
            pods,
            registry,
            coordinator_client,
            plane,
        }
    }

    /// A kubeconfig of a cluster admin (for clients outside the test, e.g. Prometheus's
    /// Kubernetes service discovery).
    pub fn kubeconfig(&self) -> &Path {
        self.plane.kubeconfig()
    }

    /// Stops the coordinator's controller and starts a new one (a coordinator restart:
    /// whatever it knew in memory is gone).
    pub async fn restart_coordinator(&mut self) {
        self.token.cancel();
        let old = std::mem::replace(&mut self.controller, tokio::spawn(async {}));
        let _ = old.await;
        let (token, controller) =
            start_coordinator(&self.coordinator_client, &prometheus::Registry::new());
        self.token = token;
        self.controller = controller;
    }

    /// Kills the coordinator's controller mid-pass (its task is dropped at whatever
    /// point it is, as SIGKILL would) and starts a new one with nothing in memory.
    pub async fn kill_coordinator(&mut self) {
        self.controller.abort();
        let old = std::mem::replace(&mut self.controller, tokio::spawn(async {}));
        let _ = old.await;
        let (token, controller) =
            start_coordinator(&self.coordinator_client, &prometheus::Registry::new());
        self.token = token;
        self.controller = controller;
    }

    pub async fn stop(self) {
        self.token.cancel();
        let _ = self.controller.await;
        drop(self.runtime);
    }
}

/// The smallest ISR any partition of `topic` has, read from the cluster metadata of the
/// first broker that answers (None when none does).
pub async fn min_isr(pods: &Api<Pod>, topic: &str) -> Option<usize> {
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

pub fn broker_uids(list: &[Pod]) -> std::collections::BTreeMap<String, String> {
    list.iter()
        // Broker Pods only (the cluster's Cruise Control runs beside them).
        .filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key("brokerId"))
        })
        .map(|p| {
            (
                p.metadata.name.clone().unwrap_or_default(),
                p.metadata.uid.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// The restart counts of every Pod's containers.
pub fn restarts(list: &[Pod]) -> i32 {
    list.iter()
        .flat_map(|p| {
            p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum()
}

/// Kafka's verifiable producer (idempotent, acks=all) sending `n` records to `topic`
/// at `per_second`, as a client inside the cluster; `props` is a scratch file path.
pub fn verifiable_producer(
    runtime: &PodRuntime,
    bootstrap: &str,
    topic: &str,
    n: u64,
    per_second: u32,
    props: &Path,
) -> std::process::Command {
    std::fs::write(
        props,
        "enable.idempotence=true\nretries=2147483647\ndelivery.timeout.ms=300000\nrequest.timeout.ms=15000\n",
    )
    .expect("producer config");
    let mut cmd = runtime.client_command(kafka_home().join("bin/kafka-verifiable-producer.sh"));
    cmd.args([
        "--bootstrap-server",
        bootstrap,
        "--topic",
        topic,
        "--acks",
        "-1",
        "--throughput",
        &per_second.to_string(),
        "--max-messages",
        &n.to_string(),
    ])
    .arg("--producer.config")
    .arg(props)
    .env("KAFKA_HEAP_OPTS", "-Xmx256m")
    .env(
        "KAFKA_JVM_PERFORMANCE_OPTS",
        "-XX:+UseSerialGC -XX:TieredStopAtLevel=1",
    )
    .stdin(Stdio::null());
    cmd
}

/// The values the verifiable producer had acknowledged, and how many sends failed.
pub fn producer_results(out: &str) -> (std::collections::BTreeSet<String>, usize) {
    let events: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let acked = events
        .iter()
        .filter(|e| e["name"] == "producer_send_success")
        .filter_map(|e| e["value"].as_str().map(str::to_owned))
        .collect();
    let failed = events
        .iter()
        .filter(|e| e["name"] == "producer_send_error")
        .count();
    (acked, failed)
}

/// Every acknowledged record of `topic` is consumed, and none twice (Kafka's own system
/// tests' rule for a producer that ran through a disruption).
pub fn assert_consumed_once(
    runtime: &PodRuntime,
    bootstrap: &str,
    topic: &str,
    acked: &std::collections::BTreeSet<String>,
) {
    let consumed_out = kafka_tool(
        runtime,
        "kafka-console-consumer.sh",
        &[
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--from-beginning",
            // An idle limit, not a budget: the consumer stops as soon as it has every
            // record. A JVM joining a group on a loaded 2-core machine (brokers, agents,
            // Cruise Control) can take longer than 20 s to its first fetch.
            "--timeout-ms",
            "60000",
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
    assert!(
        missing.is_empty(),
        "acknowledged records lost: {} of {} consumed, first missing {missing:?}",
        distinct.len(),
        acked.len()
    );
}

/// The notes of the Events with `reason` in the test namespace.
pub async fn event_notes(env: &Env, reason: &str) -> Vec<String> {
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(env.clusters.clone().into_client(), NS);
    events
        .list(&Default::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.note)
        .collect()
}

/// The brokers of [`two_rack_cluster`] and their racks.
pub const RACKS: [(i32, &str); 4] = [(0, "a"), (1, "a"), (2, "b"), (3, "b")];

/// The example cluster with four brokers in two racks ([`RACKS`], `broker.rack` in each
/// broker's own config) and `concurrentBrokerRestartCountPerRack: per_rack`.
pub fn two_rack_cluster(per_rack: i32) -> KafkaCluster {
    let mut kc = example_cluster();
    kc.spec.rack_awareness = None;
    kc.spec
        .rolling_upgrade_config
        .concurrent_broker_restart_count_per_rack = per_rack;
    with_brokers(
        &mut kc,
        RACKS
            .into_iter()
            .map(|(id, rack)| (id, format!("broker.rack={rack}\n"))),
    );
    kc
}

/// `kc`'s brokers become one per `(id, readOnlyConfig)`, each like its first broker, and
/// controller 100 after them.
pub fn with_brokers(kc: &mut KafkaCluster, brokers: impl IntoIterator<Item = (i32, String)>) {
    let template = kc.spec.brokers[0].clone();
    let controller = kc
        .spec
        .brokers
        .iter()
        .find(|b| b.id == 100)
        .cloned()
        .expect("controller 100");
    kc.spec.brokers = brokers
        .into_iter()
        .map(|(id, read_only_config)| {
            let mut b = template.clone();
            b.id = id;
            b.read_only_config = read_only_config;
            b
        })
        .chain([controller])
        .collect();
}

/// Changes a static key of every broker (`queued.max.requests`, in the example's
/// `readOnlyConfig`): every broker needs a restart, and a roll begins.
pub async fn change_static_config(clusters: &Api<KafkaCluster>) {
    let patch = serde_json::json!({"spec": {"readOnlyConfig": "offsets.topic.replication.factor=2\ndefault.replication.factor=2\ntransaction.state.log.min.isr=1\ndelete.topic.enable=true\nnum.partitions=32\nauto.create.topics.enable=false\ntransaction.state.log.replication.factor=2\nqueued.max.requests=600\n"}});
    clusters
        .patch(
            CLUSTER,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("static change");
}

/// Creates `topic` with Kafka's own tool, from inside the cluster.
pub fn create_topic(
    runtime: &PodRuntime,
    bootstrap: &str,
    topic: &str,
    partitions: u32,
    replication_factor: u32,
    min_isr: u32,
) {
    kafka_tool(
        runtime,
        "kafka-topics.sh",
        &[
            "--bootstrap-server",
            bootstrap,
            "--create",
            "--topic",
            topic,
            "--partitions",
            &partitions.to_string(),
            "--replication-factor",
            &replication_factor.to_string(),
            "--config",
            &format!("min.insync.replicas={min_isr}"),
        ],
    );
}

/// Kafka's verifiable producer in the background: `n` records to `topic` at
/// `per_second`; the task yields its output once it ends. The directory holds its
/// config and must live as long as the producer runs.
pub fn start_producer(
    runtime: &PodRuntime,
    bootstrap: &str,
    topic: &str,
    n: u64,
    per_second: u32,
) -> (
    tempfile::TempDir,
    tokio::task::JoinHandle<std::process::Output>,
) {
    let work = tempfile::tempdir().expect("temp dir");
    let mut cmd = verifiable_producer(
        runtime,
        bootstrap,
        topic,
        n,
        per_second,
        &work.path().join("producer.properties"),
    );
    let producer = tokio::task::spawn_blocking(move || cmd.output().expect("run the producer"));
    (work, producer)
}

/// Kafka's verifiable producer (idempotent, acks=all) sending to `topic` at
/// `per_second` until stopped with [`stop_producer`]; its output (one JSON event per
/// send) goes to a log in `work`.
pub fn spawn_producer(
    runtime: &PodRuntime,
    bootstrap: &str,
    topic: &str,
    per_second: u32,
    work: &Path,
) -> stoker_testenv::ManagedProcess {
    let mut cmd = verifiable_producer(
        runtime,
        bootstrap,
        topic,
        100_000_000,
        per_second,
        &work.join("producer.properties"),
    );
    cmd.stderr(Stdio::null());
    stoker_testenv::ManagedProcess::spawn("verifiable-producer", cmd, &work.join("producer.log"))
        .expect("start the verifiable producer")
}

/// Stops a producer from [`spawn_producer`] (SIGTERM: it closes the producer, so every
/// send in flight is acknowledged or failed in its output first) and returns the values
/// it had acknowledged and how many sends failed.
pub fn stop_producer(
    producer: &mut stoker_testenv::ManagedProcess,
) -> (std::collections::BTreeSet<String>, usize) {
    producer.terminate(Duration::from_secs(30));
    producer_results(&producer.log_contents())
}

/// The example with Cruise Control sampling in 10 s windows (the example's 30 s ones
/// would only make a test slower).
pub fn cruise_control_cluster() -> KafkaCluster {
    let mut kc = example_cluster();
    let cc = kc
        .spec
        .cruise_control_config
        .as_mut()
        .expect("the example has cruiseControlConfig");
    cc.config = Some(
        [
            "metric.sampling.interval.ms=10000",
            "partition.metrics.window.ms=10000",
            "num.partition.metrics.windows=2",
            "min.samples.per.partition.metrics.window=1",
            "broker.metrics.window.ms=10000",
            "num.broker.metrics.windows=2",
            "min.samples.per.broker.metrics.window=1",
            "metadata.max.age.ms=10000",
            "execution.progress.check.interval.ms=5000",
        ]
        .join("\n"),
    );
    kc
}

/// Sets `spec.brokers` of the cluster to `ids` (each like the example's first broker)
/// and controller 100.
pub async fn set_brokers(clusters: &Api<KafkaCluster>, ids: &[i32]) {
    let mut kc = cruise_control_cluster();
    let read_only_config = kc.spec.brokers[0].read_only_config.clone();
    with_brokers(
        &mut kc,
        ids.iter().map(|&id| (id, read_only_config.clone())),
    );
    let patch = serde_json::json!({"spec": {"brokers": kc.spec.brokers}});
    clusters
        .patch(
            CLUSTER,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("patch spec.brokers");
}

/// Sets `spec.brokers` of the running cluster to its current entries whose id is in
/// `ids` (controllers included only if named), as a person editing the spec would.
pub async fn keep_brokers(clusters: &Api<KafkaCluster>, ids: &[i32]) {
    let kc = clusters.get(CLUSTER).await.expect("get");
    let brokers: Vec<_> = kc
        .spec
        .brokers
        .into_iter()
        .filter(|b| ids.contains(&b.id))
        .collect();
    let patch = serde_json::json!({"spec": {"brokers": brokers}});
    clusters
        .patch(
            CLUSTER,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("patch spec.brokers");
}

/// Waits until the cluster's condition `type_` is True with a message that contains
/// every one of `words`; returns the message.
pub async fn wait_condition(clusters: &Api<KafkaCluster>, type_: &str, words: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let kc = clusters.get(CLUSTER).await.expect("get");
        let found = kc
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_).cloned());
        if let Some(c) = &found
            && c.status == "True"
            && words.iter().all(|w| c.message.contains(w))
        {
            return c.message.clone();
        }
        assert!(
            Instant::now() < deadline,
            "condition {type_} never became True saying {words:?}: {found:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Replicas per broker of every topic (internal ones included), from Kafka's own tool.
pub fn replicas_per_broker(env: &Env, bootstrap: &str) -> std::collections::BTreeMap<i32, usize> {
    let out = kafka_tool(
        &env.runtime,
        "kafka-topics.sh",
        &["--bootstrap-server", bootstrap, "--describe"],
    );
    let mut per = std::collections::BTreeMap::new();
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

/// A plaintext external listener `name`: brokers bind `container_port`, broker N is
/// reached on `start + N`, through `access` (`LoadBalancer`, `NodePort`; None: the
/// default).
pub fn external_listener(
    name: &str,
    container_port: i32,
    start: i32,
    access: Option<&str>,
) -> stoker_coordinator::crd::v1alpha1::ExternalListener {
    stoker_coordinator::crd::v1alpha1::ExternalListener {
        type_: "plaintext".into(),
        name: name.into(),
        container_port,
        external_starting_port: start,
        access_method: access.map(Into::into),
        hostname_override: None,
    }
}
