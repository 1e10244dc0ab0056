//! A roll of four brokers in two racks (RF 2, one replica per rack) under Kafka's
//! verifiable producer (idempotent, acks=all, 200 records/s), measured twice in the same
//! run: with `concurrentBrokerRestartCountPerRack: 2` (each rack's brokers restart
//! together) and with 1 (one broker at a time, the baseline). Each run starts a fresh
//! cluster on the local Pod runtime; the time is from the static change until every node
//! (the controller too) was restarted and the cluster is Ready again.
//!
//! Run: `cargo bench -p stoker-tests --bench rack_roll` (as root, after `scripts/provision`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::*;

/// One roll: its time, the sends that failed and those acknowledged.
struct Rolled {
    time: Duration,
    failed: usize,
    acked: usize,
}

async fn roll(per_rack: i32) -> Rolled {
    let env = Env::start_with(two_rack_cluster(per_rack)).await;
    let (clusters, pods) = (&env.clusters, &env.pods);
    let bootstrap = format!("{CLUSTER}-all-broker.{NS}.svc.cluster.local:9092");
    create_topic(&env.runtime, &bootstrap, "bench", 4, 2, 1);
    let (_work, producer) = start_producer(&env.runtime, &bootstrap, "bench", 24_000, 200);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = broker_uids(&pods.list(&Default::default()).await.expect("pods").items);
    let started = Instant::now();
    change_static_config(clusters).await;
    loop {
        let kc = clusters.get(CLUSTER).await.expect("get");
        let now = broker_uids(&pods.list(&Default::default()).await.expect("pods").items);
        let replaced = now
            .iter()
            .filter(|(name, uid)| before.get(*name) != Some(uid))
            .count();
        if replaced == now.len()
            && kc
                .status
                .as_ref()
                .is_some_and(|s| s.rolling_upgrade.is_none())
            && ready(&kc).is_some_and(|r| r.0 == "True")
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the roll did not finish"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let time = started.elapsed();
    let out = producer.await.expect("producer");
    let (acked, failed) = producer_results(&String::from_utf8_lossy(&out.stdout));
    env.stop().await;
    Rolled {
        time,
        failed,
        acked: acked.len(),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let together = roll(2).await;
    let alone = roll(1).await;
    println!(
        "\n  4 brokers in 2 racks + controller rolled      time      sends failed / acknowledged"
    );
    for (what, r) in [
        ("concurrentBrokerRestartCountPerRack: 2", &together),
        ("one broker at a time (baseline)       ", &alone),
    ] {
        println!(
            "  {what}  {:>7.1} s   {} / {}",
            r.time.as_secs_f64(),
            r.failed,
            r.acked
        );
    }
    println!(
        "  ratio per-rack / one at a time            {:>7.2}x",
        together.time.as_secs_f64() / alone.time.as_secs_f64()
    );
}
