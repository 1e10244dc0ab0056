//! Proof that the test environment runs a real KRaft cluster: replication, acks=all
//! produce and consume, a broker killed and restarted, a clean SIGTERM stop, and the
//! JMX exporter's metric names.

use std::time::{Duration, Instant};

use rdkafka::{
    Message,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{Consumer, StreamConsumer},
    producer::{FutureProducer, FutureRecord},
};
use stoker_testenv::{KafkaCluster, http, kafka::JMX_EXPORTER_PORT};

const TOPIC: &str = "proof";
const RECORDS: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_replicate_survive_a_kill_and_stop_cleanly() {
    let mut kafka = KafkaCluster::builder()
        .brokers(3)
        .controllers(1)
        .with_jmx_exporter()
        .start()
        .await
        .expect("the cluster starts");

    let admin: AdminClient<DefaultClientContext> =
        kafka.client_config().create().expect("admin client");
    let topic = NewTopic::new(TOPIC, 3, TopicReplication::Fixed(3)).set("min.insync.replicas", "2");
    let created = admin
        .create_topics(
            [&topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("CreateTopics is answered");
    assert!(
        created.iter().all(Result::is_ok),
        "topic creation failed: {created:?}"
    );
    wait_isr(&kafka, 3, None).await;

    // 10,000 records with acks=all and idempotence; every send must be acknowledged.
    let producer: FutureProducer = kafka
        .client_config()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let sends = (0..RECORDS).map(|i| {
        let producer = producer.clone();
        async move {
            let payload = format!("record-{i}");
            let key = i.to_string();
            producer
                .send(
                    FutureRecord::to(TOPIC).key(&key).payload(&payload),
                    Duration::from_secs(30),
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| e)
        }
    });
    let results = futures::future::join_all(sends).await;
    let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {RECORDS} sends failed: {:?}",
        failed.len(),
        failed.first()
    );

    let consumer: StreamConsumer = kafka
        .client_config()
        .set("group.id", "proof")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    let mut seen = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while seen.len() < RECORDS && Instant::now() < deadline {
        if let Ok(Ok(msg)) = tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await {
            let payload = msg
                .payload_view::<str>()
                .and_then(Result::ok)
                .unwrap_or_default()
                .to_owned();
            assert!(
                seen.insert(payload.clone()),
                "record {payload} consumed twice"
            );
        }
    }
    assert_eq!(
        seen.len(),
        RECORDS,
        "every acknowledged record is consumed exactly once"
    );

    // The JMX exporter serves the usual Kafka metric names.
    let broker1 = kafka.node(1).expect("broker 1").addr;
    let metrics = http::get((broker1, JMX_EXPORTER_PORT).into(), "/metrics")
        .await
        .expect("the JMX exporter answers");
    assert_eq!(metrics.status, 200);
    for name in [
        "kafka_network_requestmetrics_requests_total{",
        "kafka_server_replicamanager_underreplicatedpartitions ",
        "kafka_server_brokertopicmetrics_messagesin_total",
    ] {
        assert!(
            metrics.body.contains(name),
            "JMX exporter output lacks {name}"
        );
    }

    // SIGKILL broker 3: the controller fences it and the ISRs shrink to the other two.
    kafka.kill_node(3).expect("broker 3 exists");
    wait_isr(&kafka, 2, Some(3)).await;
    // Restarted on its old log dir, it catches up and rejoins every ISR.
    kafka.restart_node(3).expect("broker 3 restarts");
    wait_isr(&kafka, 3, None).await;
    let log = kafka.node(3).expect("broker 3").log();
    assert!(
        log.contains("since no clean shutdown file was found"),
        "a killed broker recovers its logs on restart"
    );

    // SIGTERM is a controlled shutdown that leaves Kafka's clean-shutdown marker.
    let clean = kafka
        .stop_node(2, Duration::from_secs(60))
        .expect("broker 2 exists");
    assert!(clean, "broker 2 stops by itself within the grace period");
    let marker = kafka
        .node(2)
        .expect("broker 2")
        .log_dir
        .join(".kafka_cleanshutdown");
    assert!(
        marker.exists(),
        "{} exists after a clean stop",
        marker.display()
    );
    kafka.ensure_running().expect("the other nodes still run");
}

/// Waits until every partition of the proof topic has `size` in-sync replicas (and
/// none of them is `without`).
async fn wait_isr(kafka: &KafkaCluster, size: usize, without: Option<i32>) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = String::new();
    while Instant::now() < deadline {
        match kafka.metadata(Some(TOPIC)).await {
            Ok(md) => {
                let isrs: Vec<Vec<i32>> = md
                    .topics()
                    .iter()
                    .flat_map(|t| t.partitions().iter().map(|p| p.isr().to_vec()))
                    .collect();
                let ok = !isrs.is_empty()
                    && isrs
                        .iter()
                        .all(|isr| isr.len() == size && without.is_none_or(|w| !isr.contains(&w)));
                if ok {
                    return;
                }
                last = format!("{isrs:?}");
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("ISRs did not reach size {size} without {without:?}; last seen {last}");
}

/// Combined nodes form a three-voter quorum that survives losing one voter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_combined_nodes_keep_a_quorum_without_one_voter() {
    let mut kafka = KafkaCluster::builder()
        .combined(3)
        .start()
        .await
        .expect("three combined nodes start");
    let admin: AdminClient<DefaultClientContext> =
        kafka.client_config().create().expect("admin client");
    let topic = NewTopic::new("combined", 1, TopicReplication::Fixed(3));
    let created = admin
        .create_topics([&topic], &AdminOptions::new())
        .await
        .expect("CreateTopics is answered");
    assert!(created.iter().all(Result::is_ok), "{created:?}");

    // With one voter gone, the other two keep the quorum and accept metadata changes.
    kafka.kill_node(3).expect("node 3");
    let deadline = Instant::now() + Duration::from_secs(60);
    while kafka
        .metadata(None)
        .await
        .map(|m| m.brokers().len())
        .unwrap_or(3)
        > 2
    {
        assert!(
            Instant::now() < deadline,
            "the killed node was never fenced"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A fresh client each attempt: a client from before the kill may keep sending its
    // admin requests to the dead node it learned as the controller.
    let topic = NewTopic::new("after-loss", 1, TopicReplication::Fixed(2));
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let admin: AdminClient<DefaultClientContext> =
            kafka.client_config().create().expect("admin client");
        let options = AdminOptions::new()
            .operation_timeout(Some(Duration::from_secs(10)))
            .request_timeout(Some(Duration::from_secs(15)));
        match admin.create_topics([&topic], &options).await {
            Ok(res)
                if res.iter().all(|r| {
                    r.as_ref().is_ok()
                        || r.as_ref().is_err_and(|(_, code)| {
                            *code == rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists
                        })
                }) =>
            {
                break;
            }
            other => assert!(
                Instant::now() < deadline,
                "the remaining quorum did not accept a new topic: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Brokers learn of the topic as they replay the metadata log: wait until one serves it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let md = kafka.metadata(Some("after-loss")).await.expect("metadata");
        let replicas = md
            .topics()
            .first()
            .and_then(|t| t.partitions().first())
            .map(|p| p.replicas().len());
        if replicas == Some(2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new topic never appeared with 2 replicas: {replicas:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
