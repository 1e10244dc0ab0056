//! An SSL client listener rendered by the agent from a Secret-like folder, against a
//! real Kafka node: clients produce and consume over TLS with the cluster CA; a
//! renewed certificate written into the folder is served to new connections within
//! seconds while a producer keeps running — no failed send, the same Kafka process;
//! a key Kafka cannot read is refused and the listener keeps its certificate.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use rdkafka::{
    Message,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{Consumer, StreamConsumer},
    producer::{FutureProducer, FutureRecord},
};
use stoker_testenv::{KafkaCluster, kafka::TLS_PORT};

const TOPIC: &str = "over-tls";

/// The certificate the listener at `addr` serves to a new connection (its DER).
async fn served_certificate(addr: std::net::Ipv4Addr, ca_file: &Path) -> Result<Vec<u8>, String> {
    let ca = std::fs::read(ca_file).map_err(|e| e.to_string())?;
    stoker_testenv::tls::served_certificate((addr, TLS_PORT).into(), &addr.to_string(), &ca)
        .await
        .map_err(|e| e.to_string())
}

/// The certificate in the folder's `tls.crt` (its DER).
fn certificate_in(dir: &Path) -> Vec<u8> {
    stoker_testenv::tls::first_certificate(&std::fs::read(dir.join("tls.crt")).expect("tls.crt"))
        .expect("a certificate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssl_listener_serves_a_renewed_certificate_without_a_restart() {
    let agent_bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_stoker-agent"));
    let mut kafka = KafkaCluster::builder()
        .combined(1)
        .with_agents(agent_bin)
        .with_tls_listener()
        .start()
        .await
        .expect("a node with an SSL listener booted from the agent's stores");
    let node = kafka.node(1).expect("node 1");
    let addr = node.addr;
    let rendered = std::fs::read_to_string(&node.properties).expect("server.properties");
    assert!(
        rendered.contains("listener.name.client_tls.ssl.keystore.type=PEM"),
        "{rendered}"
    );
    let pid = node.process_id().expect("Kafka's pid");

    // The listener serves the folder's certificate, chained to the cluster CA.
    let first = served_certificate(addr, &kafka.tls_ca_file())
        .await
        .expect("a TLS handshake with the cluster CA");
    assert_eq!(first, certificate_in(&kafka.tls_dir(1)));

    // A client produces and consumes over TLS only.
    let admin: AdminClient<DefaultClientContext> =
        kafka.tls_client_config().create().expect("admin over TLS");
    admin
        .create_topics(
            [&NewTopic::new(TOPIC, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create topic over TLS")
        .into_iter()
        .for_each(|r| {
            r.expect("topic created");
        });
    let producer: FutureProducer = kafka
        .tls_client_config()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "0")
        .create()
        .expect("producer over TLS");

    // Producing the whole time, through the renewal.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let pumping = {
        let (producer, stop, sent, failed) =
            (producer.clone(), stop.clone(), sent.clone(), failed.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = i.to_string();
                match producer
                    .send(
                        FutureRecord::to(TOPIC).key(&key).payload("payload"),
                        Duration::from_secs(10),
                    )
                    .await
                {
                    Ok(_) => sent.fetch_add(1, Ordering::Relaxed),
                    Err((e, _)) => {
                        eprintln!("send {i} failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A renewed certificate, written as the kubelet updates a Secret volume.
    kafka.renew_tls_certificate(1).expect("renew");
    let renewed = certificate_in(&kafka.tls_dir(1));
    assert_ne!(renewed, first, "a new certificate");
    let started = Instant::now();
    loop {
        if served_certificate(addr, &kafka.tls_ca_file())
            .await
            .ok()
            .as_ref()
            == Some(&renewed)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the renewed certificate was not served within a minute"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = started.elapsed();
    println!("FIGURE tls_renewal_served_s={:.1}", took.as_secs_f64());
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    pumping.await.expect("producer task");
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("FIGURE tls_renewal_sends_ok={sent} failed={failed}");
    assert_eq!(failed, 0, "no send failed during the renewal");
    assert!(sent > 50, "the producer kept sending ({sent})");
    assert_eq!(
        kafka.node(1).expect("node 1").process_id(),
        Some(pid),
        "the same Kafka process serves the renewed certificate"
    );

    // Everything produced is read back over TLS, by a client that connects after the
    // renewal.
    let consumer: StreamConsumer = kafka
        .tls_client_config()
        .set("group.id", "tls-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer over TLS");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    let mut read = 0u64;
    while read < sent {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("records within 30 s")
            .expect("a record");
        assert_eq!(m.payload(), Some(&b"payload"[..]));
        read += 1;
    }

    // A key Kafka cannot read (PKCS#1) is refused by the agent; the listener keeps
    // serving the certificate it has.
    let dir = kafka.tls_dir(1);
    let pkcs1 = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
    std::fs::write(dir.join("tls.key"), pkcs1).expect("write a bad key");
    tokio::time::sleep(stoker_agent::tls_store::CHECK_INTERVAL * 2).await;
    assert_eq!(
        served_certificate(addr, &kafka.tls_ca_file())
            .await
            .expect("still serving"),
        renewed
    );
    let log =
        std::fs::read_to_string(kafka.work_dir().join("node-1/agent.log")).expect("agent log");
    assert!(
        log.contains("PKCS#1/SEC1") && log.contains("keeps serving its current certificate"),
        "the agent says why: {log}"
    );
    kafka.ensure_running().expect("the node still runs");
}
