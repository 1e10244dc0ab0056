//! `stoker-agent observe` beside a real broker it did not render (a Kafka node started
//! on its own, as another chart's StatefulSet would run it): from its flags and the
//! Pod's facts alone it becomes ready from live metadata (and not ready the moment its
//! broker is killed), serves the broker's JMX
//! series labelled for the seed's rule on its one `/metrics`, and its preStop wait
//! holds a stop that would take partitions below `min.insync.replicas` (another broker
//! is down) until that broker is back in sync.

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
};
use stoker_testenv::{
    KafkaCluster, ManagedProcess, http,
    kafka::{AGENT_ADMIN_PORT, AGENT_GRPC_PORT, JMX_EXPORTER_PORT},
};

const TOPIC: &str = "orders";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observing_agent_probes_exports_and_guards_a_broker_it_did_not_build() {
    let mut kafka = KafkaCluster::builder()
        .brokers(3)
        .controllers(1)
        .with_jmx_exporter()
        .start()
        .await
        .expect("a Kafka cluster without agents");
    let ip = kafka.node(2).expect("broker 2").addr;
    let admin_addr = std::net::SocketAddr::from((ip, AGENT_ADMIN_PORT));
    // The Pod's control folder, shared with the Kafka container's preStop hook.
    let control_dir = kafka.work_dir().join("observer-control");
    std::fs::create_dir_all(&control_dir).expect("the control folder");
    let mut cmd = Command::new(PathBuf::from(env!("CARGO_BIN_EXE_stoker-agent")));
    cmd.arg("observe")
        .env("POD_NAME", "events-2")
        .env("POD_NAMESPACE", "streaming")
        .env("POD_IP", ip.to_string())
        .env("STOKER_AGENT_ADMIN_ADDR", admin_addr.to_string())
        .env("STOKER_AGENT_GRPC_ADDR", format!("{ip}:{AGENT_GRPC_PORT}"))
        .env("STOKER_AGENT_CONTROL_DIR", &control_dir)
        .env("STOKER_AGENT_CLUSTER", "events")
        .env(
            "STOKER_AGENT_JMX_EXPORTER_URL",
            format!("http://{ip}:{JMX_EXPORTER_PORT}/metrics"),
        )
        .env("STOKER_AGENT_SHUTDOWN_TIMEOUT", "90s");
    let log = kafka.work_dir().join("observer.log");
    let _agent = ManagedProcess::spawn("observer", cmd, &log).expect("the agent starts");

    // Ready from live metadata: node 2 (from the Pod's name) is registered and serving.
    http::wait_status(admin_addr, "/readyz", 200, Duration::from_secs(90))
        .await
        .expect("the agent answers");
    let healthz = http::wait_status(admin_addr, "/healthz", 200, Duration::from_secs(90))
        .await
        .expect("the agent answers");
    assert!(healthz.contains("\"status\""), "{healthz}");

    // One /metrics: the agent's series and the broker's, labelled for the seed's rule.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = http::wait_status(admin_addr, "/metrics", 200, Duration::from_secs(90))
            .await
            .expect("the agent answers");
        let labelled = metrics.lines().any(|l| {
            l.starts_with("kafka_")
                && l.contains("kafka_cr=\"events\"")
                && l.contains("namespace=\"streaming\"")
                && l.contains("brokerId=\"2\"")
        });
        if labelled {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no kafka_* series labelled kafka_cr/namespace/brokerId on the observer's /metrics"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Broker 2 SIGKILLed: not ready at once, before the next observation, and ready
    // again once it is back.
    kafka.kill_node(2).expect("SIGKILL broker 2");
    let r = http::get(admin_addr, "/readyz").await.expect("readyz");
    assert_eq!(r.status, 503, "ready while nothing listens: {}", r.body);
    kafka.restart_node(2).expect("broker 2 restarts");
    http::wait_status(admin_addr, "/readyz", 200, Duration::from_secs(90))
        .await
        .expect("the agent answers");

    // Broker 1 is down, so every partition has two replicas in sync, its minimum:
    // stopping broker 2 now is not safe, and preStop holds the stop.
    let admin: AdminClient<DefaultClientContext> = kafka.client_config().create().expect("admin");
    let topic = NewTopic::new(TOPIC, 3, TopicReplication::Fixed(3)).set("min.insync.replicas", "2");
    for r in admin
        .create_topics([&topic], &AdminOptions::new())
        .await
        .expect("create topic")
    {
        r.expect("topic created");
    }
    kafka.wait_isr(TOPIC, 3).await.expect("ISR");
    kafka
        .stop_node(1, Duration::from_secs(60))
        .expect("broker 1 stops");
    kafka.wait_isr(TOPIC, 2).await.expect("ISR");
    let hook_dir = control_dir.clone();
    let prestop = tokio::spawn(async move { stoker_testenv::agent::prestop_hook(&hook_dir).await });
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        !prestop.is_finished(),
        "preStop let broker 2 stop while its partitions were at their minimum in sync"
    );

    // Broker 1 back in sync: the wait ends and says so.
    kafka.restart_node(1).expect("broker 1 restarts");
    let answer = tokio::time::timeout(Duration::from_secs(90), prestop)
        .await
        .expect("preStop answers once stopping is safe")
        .expect("the task ran")
        .expect("the hook ran");
    assert!(answer.starts_with("safe to stop after"), "{answer}");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Safe to stop"),
        "the agent's log says when it let the stop go"
    );
}
