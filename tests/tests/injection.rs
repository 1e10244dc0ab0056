//! Agent injection end to end: a plain StatefulSet of Kafka (three combined
//! broker+controller nodes that configure themselves, as another chart's would), whose
//! Pods kube-controller-manager creates, gets the agent from the coordinator's
//! admission webhook — the real API server calls it over TLS — and runs on the local
//! Pod runtime: every broker becomes ready through its injected agent, and a
//! `kubectl delete pod` of one broker while another is frozen out of the ISRs waits in
//! the agent's preStop until the frozen one is back in sync, so no partition falls below
//! `min.insync.replicas`. The recreated Pod is injected again.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::{
    admissionregistration::v1::MutatingWebhookConfiguration,
    apps::v1::StatefulSet,
    core::v1::{Pod, Service},
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, PostParams},
};
use stoker_coordinator::webhook::{
    self, WebhookConfig, certs::CertSource, review::Policy, server::MUTATE_PATH,
};
use stoker_testenv::net::free_port;
use support::*;
use tokio_util::sync::CancellationToken;

const STS_NS: &str = "streaming";
const SYSTEM: &str = "stoker-system";

/// Kafka configuring itself from its Pod's name and address, in combined mode.
const KAFKA_SCRIPT: &str = r#"set -e
id="${POD_NAME##*-}"
dns=svc.cluster.local
mkdir -p /var/lib/kafka/data
cat > /var/lib/kafka/server.properties <<PROPS
process.roles=broker,controller
node.id=$id
controller.quorum.voters=0@kafka-0.kafka.streaming.$dns:9093,1@kafka-1.kafka.streaming.$dns:9093,2@kafka-2.kafka.streaming.$dns:9093
listeners=PLAINTEXT://$POD_IP:9092,CONTROLLER://$POD_IP:9093
advertised.listeners=PLAINTEXT://kafka-$id.kafka.streaming.$dns:9092
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=/var/lib/kafka/data
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
group.initial.rebalance.delay.ms=0
PROPS
/opt/kafka/bin/kafka-storage.sh format --ignore-formatted -t 5rZi1n4LTxmyBYHGBWy3tw -c /var/lib/kafka/server.properties
exec /opt/kafka/bin/kafka-server-start.sh /var/lib/kafka/server.properties
"#;

fn statefulset() -> StatefulSet {
    let script = serde_json::to_string(KAFKA_SCRIPT).expect("json string");
    serde_yaml::from_str(&format!(
        r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: kafka}}
spec:
  serviceName: kafka
  replicas: 3
  podManagementPolicy: Parallel
  selector: {{matchLabels: {{app: kafka}}}}
  template:
    metadata:
      labels: {{app: kafka, kafka.stoker.io/agent: inject, app.kubernetes.io/instance: events}}
      annotations: {{kafka.stoker.io/roles: "broker,controller"}}
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 150
      containers:
      - name: kafka
        image: apache/kafka:4.1.1
        command: [bash, -c, {script}]
        env:
        - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
        - {{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
        - {{name: KAFKA_HEAP_OPTS, value: "-Xms128m -Xmx320m"}}
        - {{name: KAFKA_JVM_PERFORMANCE_OPTS, value: "-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true"}}
        ports: [{{containerPort: 9092}}, {{containerPort: 9093}}]
        volumeMounts: [{{name: data, mountPath: /var/lib/kafka}}]
      volumes: [{{name: data, emptyDir: {{}}}}]
"#
    ))
    .expect("a StatefulSet")
}

/// A log line without its terminal colour codes (`ESC [ ... m`).
fn without_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn injected(p: &Pod) -> bool {
    p.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.name == "stoker-agent"))
}

/// The resident memory of `pod`'s agent in MiB, as its `/metrics` reports it.
async fn agent_rss_mib(pod: &Pod) -> f64 {
    let ip: std::net::IpAddr = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .expect("a Pod IP")
        .parse()
        .expect("an IP");
    let port = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some("agent-admin"))
        .expect("the injected agent's admin port")
        .container_port;
    let metrics = stoker_testenv::http::get(
        (ip, u16::try_from(port).expect("a port")).into(),
        "/metrics",
    )
    .await
    .expect("the agent's /metrics");
    let bytes: f64 = metrics
        .body
        .lines()
        .find(|l| l.starts_with("stoker_agent_resident_memory_bytes"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{}: no stoker_agent_resident_memory_bytes", pod.name_any()));
    bytes / 1024.0 / 1024.0
}

async fn wait_all_ready(pods: &Api<Pod>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let list = pods.list(&Default::default()).await.expect("pods").items;
        if list.len() == 3 && list.iter().all(ready) {
            assert!(list.iter().all(injected), "every Pod carries the agent");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the StatefulSet's Pods did not all become ready: {:?}",
            list.iter()
                .map(|p| (p.metadata.name.clone(), ready(p), injected(p)))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_statefulset_gets_the_agent_and_its_deleted_broker_waits_for_isr_safety() {
    let (plane, client, runtime) = bare_runtime(&[STS_NS, SYSTEM], true, local_images(false)).await;

    // The coordinator's webhook, with its own certificate, registered with the API
    // server.
    let port = free_port().expect("port");
    let configuration = stoker_testenv::chart::webhook_configuration(
        SYSTEM,
        &format!("https://127.0.0.1:{port}{MUTATE_PATH}"),
    )
    .expect("the chart's webhook configuration");
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &configuration)
        .await
        .expect("register the webhook");
    let token = CancellationToken::new();
    let webhook_task = tokio::spawn(webhook::run(
        WebhookConfig {
            addr: ([127, 0, 0, 1], port).into(),
            source: CertSource::Issued {
                client: client.clone(),
                namespace: SYSTEM.into(),
                secret: "stoker-webhook-tls".into(),
                names: vec!["127.0.0.1".into()],
                configuration: Some(configuration.name_any()),
            },
            policy: Policy {
                agent_image: AGENT_IMAGE.into(),
                forbidden_namespaces: ["kube-system".to_owned()].into(),
            },
            cert_check: webhook::CERT_CHECK,
        },
        prometheus::Registry::new(),
        token.clone(),
    ));

    // A headless Service and the StatefulSet, as another chart would install them.
    let services: Api<Service> = Api::namespaced(client.clone(), STS_NS);
    services
        .create(
            &PostParams::default(),
            &serde_yaml::from_str(
                "apiVersion: v1\nkind: Service\nmetadata: {name: kafka}\nspec:\n  clusterIP: None\n  publishNotReadyAddresses: true\n  selector: {app: kafka}\n  ports: [{name: broker, port: 9092}, {name: controller, port: 9093}]\n",
            )
            .expect("service"),
        )
        .await
        .expect("headless service");
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), STS_NS);
    sets.create(&PostParams::default(), &statefulset())
        .await
        .expect("statefulset");
    let pods: Api<Pod> = Api::namespaced(client.clone(), STS_NS);
    let started = Instant::now();
    wait_all_ready(&pods, "first start").await;
    println!(
        "StatefulSet of 3 injected brokers ready in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let bootstrap = format!("kafka-0.kafka.{STS_NS}.svc.cluster.local:9092");
    create_topic(&runtime, &bootstrap, "guarded", 3, 3, 2);
    produce(&runtime, &bootstrap, "guarded", 500);
    // What an observing agent costs: its own resident memory, from its /metrics.
    let mut rss = Vec::new();
    for pod in pods.list(&Default::default()).await.expect("pods").items {
        rss.push(agent_rss_mib(&pod).await);
    }
    println!("observe-mode agents' RSS: {rss:.1?} MiB");
    let deadline = Instant::now() + Duration::from_secs(90);
    while min_isr(&pods, "guarded").await != Some(3) {
        assert!(Instant::now() < deadline, "guarded never fully in sync");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Broker 0's Kafka frozen (SIGSTOP): fenced, it leaves every ISR. Broker 1's Pod is
    // then deleted: stopping 1 while 0 is out would leave one replica of
    // min.insync.replicas 2, so its agent holds the stop for as long as 0 stays frozen.
    let frozen = nix::unistd::Pid::from_raw(
        i32::try_from(
            runtime
                .container_pid(STS_NS, "kafka-0", "kafka")
                .expect("broker 0 runs"),
        )
        .expect("pid"),
    );
    nix::sys::signal::kill(frozen, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    let deadline = Instant::now() + Duration::from_secs(90);
    while min_isr(&pods, "guarded").await != Some(2) {
        assert!(
            Instant::now() < deadline,
            "frozen broker 0 never left the ISRs"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let old_uid = pods.get("kafka-1").await.expect("kafka-1").metadata.uid;
    pods.delete("kafka-1", &DeleteParams::default())
        .await
        .expect("delete kafka-1");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        runtime.container_pid(STS_NS, "kafka-1", "kafka").is_some(),
        "kafka-1's Kafka was stopped while broker 0 was out of every ISR"
    );
    nix::sys::signal::kill(frozen, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
    let mut lowest = usize::MAX;
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        if let Some(m) = min_isr(&pods, "guarded").await {
            lowest = lowest.min(m);
        }
        let back = pods
            .get_opt("kafka-1")
            .await
            .expect("get")
            .filter(|p| p.metadata.uid != old_uid && ready(p));
        if back.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "kafka-1 did not come back");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let log = std::fs::read_to_string(runtime.container_log(STS_NS, "kafka-1", "stoker-agent"))
        .expect("agent log");
    assert!(
        log.contains("Safe to stop; letting Kafka shut down"),
        "kafka-1's stop went through the injected agent's safety wait:\n{}",
        log.lines().rev().take(15).collect::<Vec<_>>().join("\n")
    );
    let waited_ms: u64 = log
        .lines()
        .find(|l| l.contains("Safe to stop"))
        .map(without_colours)
        .and_then(|l| l.split("waited_ms").nth(1).map(str::to_owned))
        .map(|rest| {
            rest.split('=')
                .nth(1)
                .unwrap_or_default()
                .trim_start_matches(|c: char| !c.is_ascii_digit())
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|n| n.parse().ok())
        .expect("the wait is logged with waited_ms");
    println!("kafka-1's preStop held the stop {waited_ms} ms, until broker 0 was back in sync");
    assert!(
        waited_ms >= 10_000,
        "the stop was let go after {waited_ms} ms, while broker 0 was frozen for 10 s"
    );
    assert!(lowest >= 2, "a partition fell to {lowest} in-sync replicas");
    wait_all_ready(&pods, "after the delete").await;

    token.cancel();
    let _ = webhook_task.await;
    drop(runtime);
    drop(plane);
}
