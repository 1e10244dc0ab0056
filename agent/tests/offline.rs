//! The agent binary without Kafka: offline rendering is deterministic, and an invalid
//! desired config keeps the agent live but not started (so Kafka never starts on it)
//! until the document is fixed.

use std::{path::PathBuf, process::Command, time::Duration};

use stoker_proto::agent::v1::{BrokerRef, DesiredConfig};
use stoker_testenv::{ManagedProcess, WorkDir, http, net::free_port};

fn agent_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stoker-agent"))
}

fn doc() -> DesiredConfig {
    stoker_testenv::agent::broker_only_doc(BrokerRef {
        cluster: "kafka".into(),
        namespace: "default".into(),
        broker_id: 1,
    })
}

#[test]
fn offline_render_is_byte_identical_and_rejects_owned_keys_with_exit_65() {
    let work = WorkDir::new("agent-render").expect("work dir");
    let config = work
        .write("config.json", serde_json::to_vec(&doc()).expect("json"))
        .expect("write");
    let render = |out: &str| {
        Command::new(agent_bin())
            .args(["render", "--config"])
            .arg(&config)
            .arg("--out")
            .arg(work.path().join(out))
            .args(["--pod-ip", "10.1.2.3"])
            .output()
            .expect("the agent runs")
    };
    let a = render("a");
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(render("b").status.success());
    let read =
        |d: &str, f: &str| std::fs::read(work.path().join(d).join(f)).expect("rendered file");
    assert_eq!(
        read("a", "server.properties"),
        read("b", "server.properties")
    );
    assert_eq!(
        read("a", "log4j2.properties"),
        read("b", "log4j2.properties")
    );
    let props = String::from_utf8(read("a", "server.properties")).expect("utf-8");
    assert!(
        props.contains("listeners=INTERNAL://10.1.2.3:29092\n"),
        "{props}"
    );

    let mut bad = doc();
    bad.broker_config.insert("node.id".into(), "7".into());
    std::fs::write(&config, serde_json::to_vec(&bad).expect("json")).expect("write");
    let out = render("c");
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`node.id` in brokerConfig is managed by Stoker"),
        "{err}"
    );
    assert!(
        !work.path().join("c/server.properties").exists(),
        "nothing is written on a bad config"
    );
}

#[test]
fn bad_flags_exit_64() {
    let out = Command::new(agent_bin())
        .args(["run", "--shutdown-timeout", "soon"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--shutdown-timeout"));
}

#[tokio::test]
async fn an_invalid_desired_config_keeps_the_agent_unstarted_until_fixed() {
    let work = WorkDir::new("agent-invalid").expect("work dir");
    let mut bad = doc();
    bad.broker_config
        .insert("log.dirs".into(), "/elsewhere".into());
    let config = work
        .write(
            "desired/config.json",
            serde_json::to_vec(&bad).expect("json"),
        )
        .expect("write");
    let out_dir = work.path().join("rendered");
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], free_port().expect("port")));
    let grpc = std::net::SocketAddr::from(([127, 0, 0, 1], free_port().expect("port")));
    let mut cmd = Command::new(agent_bin());
    cmd.arg("run")
        .env("STOKER_AGENT_ADMIN_ADDR", admin.to_string())
        .env("STOKER_AGENT_GRPC_ADDR", grpc.to_string())
        .env("STOKER_AGENT_DESIRED_CONFIG", &config)
        .env("STOKER_AGENT_OUTPUT_DIR", &out_dir)
        .env("POD_NAME", "kafka-1")
        .env("POD_NAMESPACE", "default")
        .env("POD_IP", "127.0.0.1");
    let mut agent =
        ManagedProcess::spawn("agent", cmd, &work.path().join("agent.log")).expect("spawns");

    let mut startupz = None;
    for _ in 0..100 {
        if let Ok(r) = http::get(admin, "/startupz").await {
            startupz = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let startupz = startupz.expect("the admin server answers");
    assert_eq!(startupz.status, 503);
    assert!(
        startupz
            .body
            .contains("`log.dirs` in brokerConfig is managed by Stoker"),
        "{}",
        startupz.body
    );
    assert_eq!(http::get(admin, "/livez").await.expect("livez").status, 200);
    let healthz = http::get(admin, "/healthz").await.expect("healthz");
    let json: serde_json::Value = serde_json::from_str(&healthz.body).expect("JSON");
    assert_eq!(json["status"], "not_started");
    assert!(
        json["checks"][0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("log.dirs")
    );
    assert!(
        !out_dir.join("server.properties").exists(),
        "Kafka gets no config to start on"
    );
    assert!(
        agent
            .log_contents()
            .contains("Cannot render the broker config"),
        "the log says why"
    );

    // The ConfigMap is fixed: the agent renders without a restart.
    std::fs::write(&config, serde_json::to_vec(&doc()).expect("json")).expect("write");
    let mut started = false;
    for _ in 0..40 {
        if http::get(admin, "/startupz")
            .await
            .is_ok_and(|r| r.status == 200)
        {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(started, "the agent starts once the document is valid");
    assert!(out_dir.join("server.properties").exists());
    let readyz = http::get(admin, "/readyz").await.expect("readyz");
    assert_eq!(
        readyz.status, 503,
        "no Kafka runs, so the broker is not ready"
    );
    assert!(readyz.body.contains("kafka_reachable"), "{}", readyz.body);
    agent.ensure_running().expect("the agent keeps running");
}

/// The rack comes from the Node's labels, read through a real Kubernetes API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rack_is_read_from_the_node_labels_through_the_api() {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::{ObjectMeta, PostParams};

    let plane = stoker_testenv::ControlPlane::start_with(
        stoker_testenv::control_plane::ControlPlaneOptions {
            controller_manager: false,
        },
    )
    .await
    .expect("control plane");
    let nodes: kube::Api<Node> = kube::Api::all(plane.client().await.expect("client"));
    let node = Node {
        metadata: ObjectMeta {
            name: Some("worker-1".into()),
            labels: Some(
                [
                    (
                        "topology.kubernetes.io/region".to_owned(),
                        "eu-west".to_owned(),
                    ),
                    (
                        "topology.kubernetes.io/zone".to_owned(),
                        "eu-west-1b".to_owned(),
                    ),
                ]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        ..Node::default()
    };
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("Node created");

    let work = WorkDir::new("agent-rack").expect("work dir");
    let mut racked = doc();
    racked.rack_labels = vec![
        "topology.kubernetes.io/region".into(),
        "topology.kubernetes.io/zone".into(),
    ];
    let config = work
        .write(
            "desired/config.json",
            serde_json::to_vec(&racked).expect("json"),
        )
        .expect("write");
    let out_dir = work.path().join("rendered");
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], free_port().expect("port")));
    let mut cmd = Command::new(agent_bin());
    cmd.arg("run")
        .env("STOKER_AGENT_ADMIN_ADDR", admin.to_string())
        .env(
            "STOKER_AGENT_GRPC_ADDR",
            format!("127.0.0.1:{}", free_port().expect("port")),
        )
        .env("STOKER_AGENT_DESIRED_CONFIG", &config)
        .env("STOKER_AGENT_OUTPUT_DIR", &out_dir)
        .env("KUBECONFIG", plane.kubeconfig())
        .env("POD_NAME", "kafka-1")
        .env("POD_NAMESPACE", "default")
        .env("POD_IP", "127.0.0.1")
        .env("NODE_NAME", "worker-1");
    let _agent =
        ManagedProcess::spawn("agent", cmd, &work.path().join("agent.log")).expect("spawns");
    let mut started = false;
    for _ in 0..100 {
        if http::get(admin, "/startupz")
            .await
            .is_ok_and(|r| r.status == 200)
        {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(started, "the agent renders once it has read the Node");
    let props = std::fs::read_to_string(out_dir.join("server.properties")).expect("rendered");
    assert!(
        props.contains("broker.rack=eu-west,eu-west-1b\n"),
        "{props}"
    );
}
