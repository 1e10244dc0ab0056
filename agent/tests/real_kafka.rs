//! The agent beside real brokers and a real controller: its rendered configs boot
//! the cluster; readiness follows the broker; safe-to-stop follows the ISR; live
//! reconfiguration changes a dynamic key without a restart and reports a static one;
//! /metrics is valid Prometheus text with the JMX exporter's series, and the seed's
//! alert expression groups it per broker; a stop through the preStop path leaves the
//! clean-shutdown marker while an idempotent acks=all producer loses nothing.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use rdkafka::{
    Message,
    admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication},
    client::DefaultClientContext,
    consumer::{Consumer, StreamConsumer},
    producer::{FutureProducer, FutureRecord},
};
use stoker_proto::agent::v1::{
    BrokerRef, DesiredConfig, GetStatusRequest, ReconfigureRequest, SafeToStopRequest,
    agent_client::AgentClient,
};
use stoker_testenv::{KafkaCluster, Prometheus, agent::TEST_NAMESPACE, http};

const TOPIC: &str = "guarded";

fn broker(id: i32) -> Option<BrokerRef> {
    Some(BrokerRef {
        cluster: "kafka".into(),
        namespace: TEST_NAMESPACE.into(),
        broker_id: id,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_render_probe_guard_reconfigure_and_stop_a_real_cluster() {
    let agent_bin = PathBuf::from(env!("CARGO_BIN_EXE_stoker-agent"));
    let mut kafka = KafkaCluster::builder()
        .brokers(3)
        .controllers(1)
        .with_jmx_exporter()
        .with_agents(agent_bin)
        .start()
        .await
        .expect("a cluster booted from agent-rendered configs");

    // Every agent (the controller's too) was not ready before its node ran, and
    // reports ready once it serves.
    for node in kafka.nodes() {
        let agent = node.agent().expect("agent");
        assert_eq!(
            agent.readyz_before_kafka,
            Some(503),
            "node {} was not ready before Kafka started",
            node.id
        );
        http::wait_status(agent.admin, "/readyz", 200, Duration::from_secs(60))
            .await
            .expect("the agent answers");
        let health: serde_json::Value = serde_json::from_str(
            &http::wait_status(agent.admin, "/healthz", 200, Duration::from_secs(5))
                .await
                .expect("the agent answers"),
        )
        .expect("JSON");
        assert_eq!(health["status"], "ready", "node {}: {health}", node.id);
        assert!(
            health["checks"]
                .as_array()
                .is_some_and(|c| c.len() == 5 && c.iter().all(|c| c["ok"] == true))
        );
    }
    let rendered = std::fs::read_to_string(kafka.node(1).expect("broker 1").properties.clone())
        .expect("rendered file");
    assert!(
        rendered.starts_with("# Rendered by stoker-agent"),
        "Kafka runs on the agent's file"
    );

    let admin: AdminClient<DefaultClientContext> = kafka.client_config().create().expect("admin");
    let topic = NewTopic::new(TOPIC, 3, TopicReplication::Fixed(3)).set("min.insync.replicas", "2");
    let created = admin
        .create_topics([&topic], &AdminOptions::new())
        .await
        .expect("CreateTopics answered");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    kafka.wait_isr(TOPIC, 3).await.expect("ISR");

    // /metrics: valid exposition (promtool), identity labels, JMX pass-through.
    let b1 = kafka
        .node(1)
        .expect("broker 1")
        .agent()
        .expect("agent")
        .admin;
    // The JMX exporter is sampled in the background (a cold one takes seconds to
    // answer): wait for the first sample to be served, never for a slow scrape.
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let m = http::get(b1, "/metrics").await.expect("metrics");
        assert_eq!(m.status, 200);
        if m.body
            .contains("kafka_network_requestmetrics_requests_total{")
            || Instant::now() >= deadline
        {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Every series carries the identity labels (in any order).
    for name in [
        "kafka_network_requestmetrics_requests_total",
        "kafka_server_replicamanager_underreplicatedpartitions",
        "stoker_broker_partitions_led",
        "stoker_agent_resident_memory_bytes",
        "stoker_broker_log_dir_used_bytes",
    ] {
        let line = metrics
            .body
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{")));
        let Some(line) = line else {
            std::fs::write("/tmp/stoker-metrics-dump.txt", &metrics.body).expect("dump");
            panic!("/metrics lacks {name} (dumped to /tmp/stoker-metrics-dump.txt)");
        };
        for label in [
            "kafka_cr=\"kafka\"",
            "namespace=\"stoker-test\"",
            "broker_id=\"1\"",
        ] {
            assert!(line.contains(label), "{name} lacks {label}: {line}");
        }
    }
    assert!(
        metrics.body.lines().any(
            |l| l.starts_with("kafka_network_requestmetrics_requests_total{")
                && l.contains("brokerId=\"1\"")
        ),
        "JMX series carry Koperator's brokerId label"
    );
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(metrics.body.as_bytes())?;
            child.wait_with_output()
        })
        .expect("promtool runs");
    let lint = String::from_utf8_lossy(&promtool.stdout).to_string()
        + &String::from_utf8_lossy(&promtool.stderr);
    assert!(
        !lint.contains("error while linting") && !lint.contains("text format parsing error"),
        "promtool: {lint}"
    );

    // Prometheus scrapes the three agents and the seed's alert expression groups by broker.
    let targets: Vec<String> = (1..=3)
        .map(|id| {
            kafka
                .node(id)
                .expect("broker")
                .agent()
                .expect("agent")
                .admin
                .to_string()
        })
        .collect();
    let prometheus = Prometheus::start(
        &format!(
            "global: {{scrape_interval: 3s, scrape_timeout: 3s, evaluation_interval: 1s}}\nscrape_configs:\n- job_name: stoker-agents\n  static_configs: [{{targets: {targets:?}}}]\n"
        ),
        &[],
    )
    .await
    .expect("prometheus");
    let seed_expr = "sum by(brokerId, kafka_cr, namespace)(rate(kafka_network_requestmetrics_requests_total[30s]))";
    // A rate needs two scrapes in its window after each agent served its first sample.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut brokers_seen = Vec::new();
    while Instant::now() < deadline {
        let answer = prometheus.query(seed_expr).await.expect("query");
        brokers_seen = answer["data"]["result"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|s| s["metric"]["brokerId"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        brokers_seen.sort();
        if brokers_seen.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let targets_health = prometheus
        .targets()
        .await
        .map(|t| t.to_string())
        .unwrap_or_default();
    assert_eq!(
        brokers_seen,
        ["1", "2", "3"],
        "the seed's rule sees every broker; targets: {targets_health}"
    );
    // Every scrape of every agent succeeds within Prometheus's 3 s timeout: serving
    // the JMX series never waits for the exporter.
    let targets = prometheus.targets().await.expect("targets");
    let health: Vec<String> = targets["data"]["activeTargets"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| t["health"].as_str().unwrap_or("?").to_owned())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(health, ["up", "up", "up"], "targets: {targets_health}");
    drop(prometheus);

    // Safe-to-stop follows the ISR (Strimzi's rule).
    let mut grpc1 = kafka
        .node(1)
        .expect("b1")
        .agent()
        .expect("agent")
        .grpc_client()
        .await
        .expect("gRPC over mTLS as the coordinator");
    let safe = grpc1
        .safe_to_stop(SafeToStopRequest {
            broker: broker(1),
            also_stopping: vec![],
        })
        .await
        .expect("answer")
        .into_inner();
    assert!(safe.safe, "a full ISR is safe: {}", safe.reason);
    // Together with broker 2 (a roll of two brokers at once), it is not: every guarded
    // partition would keep one in-sync replica of its min.insync.replicas 2.
    let together = grpc1
        .safe_to_stop(SafeToStopRequest {
            broker: broker(1),
            also_stopping: vec![2],
        })
        .await
        .expect("answer")
        .into_inner();
    assert!(
        !together.safe,
        "brokers 1 and 2 may not stop together: {}",
        together.reason
    );
    assert_eq!(together.blocking_partitions.len(), 3, "{}", together.reason);

    kafka.kill_node(3).expect("broker 3");
    kafka.wait_isr(TOPIC, 2).await.expect("ISR");
    let blocked = grpc1
        .safe_to_stop(SafeToStopRequest {
            broker: broker(1),
            also_stopping: vec![],
        })
        .await
        .expect("answer")
        .into_inner();
    assert!(
        !blocked.safe,
        "broker 1 is one of the last 2 in-sync replicas"
    );
    assert_eq!(blocked.blocking_partitions.len(), 3, "{}", blocked.reason);
    assert!(blocked.reason.contains("guarded-"), "{}", blocked.reason);
    let b3 = kafka.node(3).expect("b3").agent().expect("agent").admin;
    let not_ready = http::wait_status(b3, "/readyz", 503, Duration::from_secs(10))
        .await
        .expect("the agent answers");
    assert!(not_ready.contains("kafka_reachable"), "{not_ready}");
    assert_eq!(
        http::get(b3, "/livez").await.expect("livez").status,
        200,
        "the agent itself works"
    );

    kafka.restart_node(3).expect("restart broker 3");
    http::wait_status(b3, "/readyz", 200, Duration::from_secs(90))
        .await
        .expect("the agent answers");
    kafka.wait_isr(TOPIC, 3).await.expect("ISR");
    let safe = grpc1
        .safe_to_stop(SafeToStopRequest {
            broker: broker(1),
            also_stopping: vec![],
        })
        .await
        .expect("answer")
        .into_inner();
    assert!(
        safe.safe,
        "safe again once broker 3 caught up: {}",
        safe.reason
    );

    // Live reconfiguration: a dynamic key applies without a restart, a static one waits.
    let pid_before = kafka.node(1).expect("b1").process_id();
    let doc_path = kafka
        .node(1)
        .expect("b1")
        .agent()
        .expect("agent")
        .desired_config
        .clone();
    let mut doc: DesiredConfig =
        serde_json::from_slice(&std::fs::read(&doc_path).expect("doc")).expect("json");
    doc.broker_config
        .insert("log.retention.ms".into(), "3600000".into());
    doc.read_only_config
        .insert("auto.create.topics.enable".into(), "true".into());
    let hash = stoker_proto::config_hash(&doc);
    let out = grpc1
        .reconfigure(ReconfigureRequest {
            broker: broker(1),
            desired: Some(doc.clone()),
            config_hash: hash.clone(),
        })
        .await
        .expect("reconfigured")
        .into_inner();
    assert_eq!(out.applied_keys, ["log.retention.ms"]);
    assert_eq!(out.restart_needed_keys, ["auto.create.topics.enable"]);
    // The change is committed to the metadata log; the broker applies it when it
    // replays the record, a moment later.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut value = None;
    while Instant::now() < deadline {
        let described = admin
            .describe_configs([&ResourceSpecifier::Broker(1)], &AdminOptions::new())
            .await
            .expect("DescribeConfigs answered");
        value = described[0]
            .as_ref()
            .ok()
            .and_then(|c| c.get("log.retention.ms"))
            .and_then(|e| e.value.clone());
        if value.as_deref() == Some("3600000") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        value.as_deref(),
        Some("3600000"),
        "the broker runs with the new value"
    );
    assert_eq!(
        kafka.node(1).expect("b1").process_id(),
        pid_before,
        "no restart"
    );
    let status = grpc1
        .get_status(GetStatusRequest { broker: broker(1) })
        .await
        .expect("status")
        .into_inner();
    assert!(
        status.restart_needed && status.restart_needed_keys == ["auto.create.topics.enable"],
        "{status:?}"
    );
    assert_ne!(
        status.config_hash_in_force, hash,
        "the static change is not in force yet"
    );

    // Malformed requests name the field.
    let wrong = grpc1
        .get_status(GetStatusRequest { broker: broker(2) })
        .await
        .expect_err("wrong broker");
    assert_eq!(wrong.code(), tonic::Code::InvalidArgument);
    assert!(
        wrong.message().contains("broker.broker_id"),
        "{}",
        wrong.message()
    );
    let bad_hash = grpc1
        .reconfigure(ReconfigureRequest {
            broker: broker(1),
            desired: Some(doc),
            config_hash: "0".into(),
        })
        .await
        .expect_err("hash mismatch");
    assert!(
        bad_hash.message().contains("config_hash"),
        "{}",
        bad_hash.message()
    );

    // A stop through the preStop path while an idempotent acks=all producer runs.
    let producer: FutureProducer = kafka
        .client_config()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .set("delivery.timeout.ms", "120000")
        .create()
        .expect("producer");
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sender = {
        let (stop, failed, acked, producer) = (
            stop.clone(),
            failed.clone(),
            acked.clone(),
            producer.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let value = format!("v-{i}");
                let key = i.to_string();
                match producer
                    .send(
                        FutureRecord::to(TOPIC).key(&key).payload(&value),
                        Duration::from_secs(60),
                    )
                    .await
                {
                    Ok(_) => acked.lock().expect("lock").push(value),
                    Err(_) => {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    let agent2 = kafka.node(2).expect("b2").agent().expect("agent");
    let b2 = agent2.admin;
    let prestop = agent2.prestop().await.expect("the preStop hook runs");
    assert!(prestop.starts_with("safe to stop"), "{prestop}");
    let readyz = http::get(b2, "/readyz").await.expect("readyz");
    assert_eq!(
        readyz.status, 503,
        "not ready from the moment preStop begins"
    );
    assert!(readyz.body.contains("shutting down"), "{}", readyz.body);
    let clean = kafka
        .stop_node(2, Duration::from_secs(90))
        .expect("broker 2");
    assert!(clean, "Kafka stops by itself after SIGTERM");
    let agent2 = kafka.node_mut_agent(2).expect("agent 2");
    let (_, exited) = agent2
        .process()
        .terminate(Duration::from_secs(30))
        .expect("the agent was running");
    assert!(exited, "the agent exits after Kafka is gone");
    let agent_log = agent2.process().log_contents();
    assert!(agent_log.contains("Kafka shut down cleanly"), "{agent_log}");
    let marker = kafka
        .node(2)
        .expect("b2")
        .log_dir
        .join(".kafka_cleanshutdown");
    assert!(marker.exists());

    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    sender.await.expect("the sender ends");
    let acked = acked.lock().expect("lock").clone();
    assert_eq!(failed.load(Ordering::SeqCst), 0, "zero failed sends");
    assert!(
        acked.len() > 100,
        "the producer ran through the stop ({} records)",
        acked.len()
    );

    let consumer: StreamConsumer = kafka
        .client_config()
        .set("group.id", "verify")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    let mut seen = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < acked.len() && Instant::now() < deadline {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await {
            let v = m
                .payload_view::<str>()
                .and_then(Result::ok)
                .unwrap_or_default()
                .to_owned();
            *seen.entry(v).or_insert(0) += 1;
        }
    }
    let lost: Vec<_> = acked
        .iter()
        .filter(|v| !seen.contains_key(*v))
        .take(5)
        .collect();
    assert!(lost.is_empty(), "acknowledged records lost: {lost:?}");
    let dupes: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(
        dupes.is_empty(),
        "duplicates despite idempotence: {dupes:?}"
    );
}

/// An ACL of `User:ANONYMOUS` (the agents' and the test's principal on PLAINTEXT) on
/// topic `topic`: `operation` (2 All, 10 DescribeConfigs) allowed (3) or denied (2).
fn anonymous_acl(topic: &str, operation: i8, permission: i8) -> (String, i8, i8) {
    (topic.to_owned(), operation, permission)
}

async fn change_acls(
    kafka: &KafkaCluster,
    create: &[(String, i8, i8)],
    delete: &[(String, i8, i8)],
) {
    use stoker_kafka::kafka_protocol::{
        messages::{
            CreateAclsRequest, DeleteAclsRequest, create_acls_request::AclCreation,
            delete_acls_request::DeleteAclsFilter,
        },
        protocol::StrBytes,
    };
    let s = |v: &str| StrBytes::from_string(v.to_owned());
    let addr = kafka.bootstrap_servers();
    let addr = addr.split(',').next().expect("a broker");
    let mut conn = stoker_kafka::Connection::connect(addr, Duration::from_secs(10))
        .await
        .expect("a connection");
    if !create.is_empty() {
        let req = CreateAclsRequest::default().with_creations(
            create
                .iter()
                .map(|(topic, op, perm)| {
                    AclCreation::default()
                        .with_resource_type(2)
                        .with_resource_name(s(topic))
                        .with_resource_pattern_type(3)
                        .with_principal(s("User:ANONYMOUS"))
                        .with_host(s("*"))
                        .with_operation(*op)
                        .with_permission_type(*perm)
                })
                .collect(),
        );
        let resp = conn.send("CreateAcls", &req, 3).await.expect("CreateAcls");
        assert!(
            resp.results.iter().all(|r| r.error_code == 0),
            "ACLs created: {:?}",
            resp.results
        );
    }
    if !delete.is_empty() {
        let req = DeleteAclsRequest::default().with_filters(
            delete
                .iter()
                .map(|(topic, op, perm)| {
                    DeleteAclsFilter::default()
                        .with_resource_type_filter(2)
                        .with_resource_name_filter(Some(s(topic)))
                        .with_pattern_type_filter(3)
                        .with_principal_filter(Some(s("User:ANONYMOUS")))
                        .with_host_filter(Some(s("*")))
                        .with_operation(*op)
                        .with_permission_type(*perm)
                })
                .collect(),
        );
        let resp = conn.send("DeleteAcls", &req, 3).await.expect("DeleteAcls");
        assert!(
            resp.filter_results.iter().all(|r| r.error_code == 0),
            "ACLs deleted: {:?}",
            resp.filter_results
        );
    }
}

/// Fail closed, against a real broker: when the agent may not read one topic's
/// `min.insync.replicas` (an ACL denies it DescribeConfigs on that topic), SafeToStop
/// answers unsafe and names the topic, and the preStop wait holds the stop until the
/// agent can see again — it never assumes `min.insync.replicas=1` in the dark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safe_to_stop_is_unsafe_while_a_topic_config_cannot_be_read() {
    let agent_bin = PathBuf::from(env!("CARGO_BIN_EXE_stoker-agent"));
    let kafka = KafkaCluster::builder()
        .brokers(2)
        .controllers(1)
        .with_authorizer()
        .with_agents(agent_bin)
        .start()
        .await
        .expect("a cluster with an authorizer");
    for node in kafka.nodes() {
        http::wait_status(
            node.agent().expect("agent").admin,
            "/readyz",
            200,
            Duration::from_secs(60),
        )
        .await
        .expect("the agent answers");
    }
    let admin: AdminClient<DefaultClientContext> = kafka.client_config().create().expect("admin");
    let topics = [
        NewTopic::new("open", 2, TopicReplication::Fixed(2)).set("min.insync.replicas", "1"),
        NewTopic::new("hidden", 2, TopicReplication::Fixed(2)).set("min.insync.replicas", "1"),
    ];
    let created = admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .expect("CreateTopics answered");
    assert!(created.iter().all(Result::is_ok), "{created:?}");

    let b1 = kafka.node(1).expect("broker 1").agent().expect("agent");
    let mut grpc1 = b1.grpc_client().await.expect("gRPC over mTLS");
    let ask = |mut c: AgentClient<tonic::transport::Channel>| async move {
        c.safe_to_stop(SafeToStopRequest {
            broker: broker(1),
            also_stopping: vec![],
        })
        .await
        .expect("an answer")
        .into_inner()
    };
    // With every config readable, a full ISR is safe.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = ask(grpc1.clone()).await;
        if a.safe {
            break;
        }
        assert!(Instant::now() < deadline, "never safe: {}", a.reason);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The agent's principal loses DescribeConfigs on `hidden` (it may still see it).
    let allow_all = anonymous_acl("hidden", 2, 3);
    let deny_configs = anonymous_acl("hidden", 10, 2);
    change_acls(&kafka, &[allow_all, deny_configs.clone()], &[]).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let blind = loop {
        let a = ask(grpc1.clone()).await;
        if !a.safe {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "SafeToStop stayed safe although the agent cannot read hidden's config"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        blind.reason.contains("hidden") && blind.reason.contains("could not read"),
        "{}",
        blind.reason
    );
    assert!(
        blind
            .unreadable
            .iter()
            .any(|u| u.contains("min.insync.replicas of topic hidden")),
        "{:?}",
        blind.unreadable
    );
    assert!(
        !blind.reason.contains("topic open"),
        "only what could not be read is named: {}",
        blind.reason
    );

    // The preStop wait holds the stop while the agent is blind...
    let control = b1.control_dir.clone();
    let prestop = tokio::spawn(async move { stoker_testenv::agent::prestop_hook(&control).await });
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!prestop.is_finished(), "preStop let the broker stop blind");
    // ...and lets it go once the config is readable again.
    change_acls(&kafka, &[], &[deny_configs]).await;
    let answer = tokio::time::timeout(Duration::from_secs(45), prestop)
        .await
        .expect("preStop answers once it can see")
        .expect("the task ran")
        .expect("the hook ran");
    assert!(answer.starts_with("safe to stop after"), "{answer}");
    let _ = grpc1
        .get_status(GetStatusRequest { broker: broker(1) })
        .await
        .expect("the agent still answers");
}
