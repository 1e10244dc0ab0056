//! Producing over an agent-rendered SSL listener against producing over plaintext, on
//! the same Kafka node in the same run (rounds interleaved, since these machines are
//! noisy, so the ratios are what counts):
//!
//! - throughput: `RECORDS` records of `RECORD_BYTES`, pipelined (acks=all, idempotent);
//! - latency: `PROBES` records sent one at a time, each awaited (p50, p99).
//!
//! The node runs with the JVM's optimising compiler, as in production (the test
//! harness's C1-only JVMs leave TLS crypto unoptimised: ~0.1x the plaintext rate).
//!
//! Run: `cargo bench -p stoker-agent --bench tls_produce` (after `scripts/provision`).

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    producer::{FutureProducer, FutureRecord},
};
use stoker_testenv::{
    KafkaCluster,
    stats::{ms, percentile},
};

const TOPIC: &str = "bench";
const RECORDS: usize = 20_000;
const RECORD_BYTES: usize = 1024;
const PROBES: usize = 500;
const ROUNDS: usize = 3;

fn producer(mut config: ClientConfig) -> FutureProducer {
    config
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("a producer")
}

/// Records per second over `RECORDS` pipelined sends.
async fn throughput(p: &FutureProducer, payload: &[u8]) -> f64 {
    let started = Instant::now();
    let sends: Vec<_> = (0..RECORDS)
        .map(|i| async move {
            let key = (i % 64).to_string();
            p.send(
                FutureRecord::to(TOPIC).key(&key).payload(payload),
                Duration::from_secs(60),
            )
            .await
        })
        .collect();
    for r in futures::future::join_all(sends).await {
        r.expect("acknowledged");
    }
    RECORDS as f64 / started.elapsed().as_secs_f64()
}

/// Latency of `PROBES` sends, one at a time, sorted.
async fn latencies(p: &FutureProducer, payload: &[u8]) -> Vec<Duration> {
    let mut out = Vec::with_capacity(PROBES);
    for _ in 0..PROBES {
        let t = Instant::now();
        p.send(
            FutureRecord::to(TOPIC).key("probe").payload(payload),
            Duration::from_secs(30),
        )
        .await
        .expect("acknowledged");
        out.push(t.elapsed());
    }
    out.sort();
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let agent_bin = PathBuf::from(env!("CARGO_BIN_EXE_stoker-agent"));
    let kafka = KafkaCluster::builder()
        .combined(1)
        .with_agents(agent_bin)
        .with_tls_listener()
        .with_full_jit()
        .start()
        .await
        .expect("a node with an SSL listener");
    let admin: AdminClient<DefaultClientContext> = kafka.client_config().create().expect("admin");
    admin
        .create_topics(
            [&NewTopic::new(TOPIC, 6, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create topic")
        .into_iter()
        .for_each(|r| {
            r.expect("topic created");
        });

    let plain = producer(kafka.client_config());
    let tls = producer(kafka.tls_client_config());
    let payload = vec![b'x'; RECORD_BYTES];
    // Warm both paths (connections, JIT) before measuring.
    throughput(&plain, &payload).await;
    throughput(&tls, &payload).await;

    let (mut plain_rate, mut tls_rate) = (Vec::new(), Vec::new());
    let (mut plain_lat, mut tls_lat) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        plain_rate.push(throughput(&plain, &payload).await);
        tls_rate.push(throughput(&tls, &payload).await);
        plain_lat.extend(latencies(&plain, &payload).await);
        tls_lat.extend(latencies(&tls, &payload).await);
    }
    plain_lat.sort();
    tls_lat.sort();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (plain_rate, tls_rate) = (median(&mut plain_rate), median(&mut tls_rate));
    let mib = |rate: f64| rate * RECORD_BYTES as f64 / (1024.0 * 1024.0);
    println!(
        "produce, {RECORDS} records of {RECORD_BYTES} B pipelined (median of {ROUNDS}), {PROBES}x{ROUNDS} awaited one by one; acks=all"
    );
    println!(
        "plaintext: {plain_rate:.0} records/s ({:.1} MiB/s), latency p50 {:.2} ms p99 {:.2} ms",
        mib(plain_rate),
        ms(percentile(&plain_lat, 0.5)),
        ms(percentile(&plain_lat, 0.99))
    );
    println!(
        "TLS:       {tls_rate:.0} records/s ({:.1} MiB/s), latency p50 {:.2} ms p99 {:.2} ms",
        mib(tls_rate),
        ms(percentile(&tls_lat, 0.5)),
        ms(percentile(&tls_lat, 0.99))
    );
    println!(
        "ratio TLS / plaintext: throughput {:.2}x, latency p50 {:.2}x, p99 {:.2}x",
        tls_rate / plain_rate,
        ms(percentile(&tls_lat, 0.5)) / ms(percentile(&plain_lat, 0.5)),
        ms(percentile(&tls_lat, 0.99)) / ms(percentile(&plain_lat, 0.99))
    );
}
