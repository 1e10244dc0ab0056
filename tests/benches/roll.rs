//! A rolling restart on the local Pod runtime, against its naive baseline measured in
//! the same run, both under Kafka's verifiable producer (idempotent, acks=all, 200
//! records/s, RF 3, min ISR 2):
//!
//! - Stoker's roll: a static config change; the coordinator restarts the 3 brokers
//!   (and the controller) one at a time when safe. Per broker: how long the safety
//!   checks held it (the agent's preStop wait) versus Kafka's own shutdown and
//!   start-up until it was back and caught up.
//! - The naive roll: each broker's Kafka restarted by hand (SIGTERM; the runtime
//!   restarts the container) with a fixed 30 s pause, no checks.
//!
//! Run: `cargo bench -p stoker-tests --bench roll` (as root, after `scripts/provision`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event;
use kube::Api;
use support::*;

const RATE: u32 = 200;

fn event_time(e: &Event) -> Option<k8s_openapi::jiff::Timestamp> {
    e.event_time.as_ref().map(|t| t.0)
}

/// `waited_ms` of the last "Safe to stop" line of an agent log.
fn prestop_wait_ms(log: &str) -> Option<u64> {
    let line = log.lines().rev().find(|l| l.contains("Safe to stop"))?;
    let at = line.find("waited_ms")?;
    line[at..]
        .trim_start_matches("waited_ms")
        .trim_start_matches(['=', '"', ':'])
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let env = Env::start().await;
    let (runtime, clusters, pods) = (&env.runtime, &env.clusters, &env.pods);
    let bootstrap = format!("{CLUSTER}-all-broker.{NS}.svc.cluster.local:9092");
    create_topic(runtime, &bootstrap, "bench", 6, 3, 2);

    // Stoker's roll.
    let (_work, producer) =
        start_producer(runtime, &bootstrap, "bench", u64::from(RATE) * 150, RATE);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = pods.list(&Default::default()).await.expect("pods").items;
    let started = Instant::now();
    change_static_config(clusters).await;
    loop {
        let st = clusters
            .get(CLUSTER)
            .await
            .expect("get")
            .status
            .unwrap_or_default();
        let now = pods.list(&Default::default()).await.expect("pods").items;
        let replaced = now
            .iter()
            .filter(|p| !before.iter().any(|b| b.metadata.uid == p.metadata.uid))
            .count();
        if replaced == before.len() && st.rolling_upgrade.is_none() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the roll did not finish"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let stoker_roll = started.elapsed();
    let out = producer.await.expect("producer");
    let (acked, stoker_failed) = producer_results(&String::from_utf8_lossy(&out.stdout));

    // Per broker: from RestartingBroker to the new Pod's creation, and on to BrokerRestarted.
    let events: Api<Event> = Api::namespaced(env.clusters.clone().into_client(), NS);
    let events = events
        .list(&Default::default())
        .await
        .expect("events")
        .items;
    let at = |reason: &str, id: &str| {
        events
            .iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .filter(|e| {
                e.note
                    .as_deref()
                    .is_some_and(|n| n.contains(&format!("broker {id} ")))
            })
            .filter_map(event_time)
            .max()
    };
    let now = pods.list(&Default::default()).await.expect("pods").items;
    println!("\nRolling restart (local runtime, 3 brokers + 1 controller, producer at {RATE}/s)");
    println!("  node  safety wait   Kafka shutdown   start-up + catch-up   total");
    let mut broker_total = Duration::ZERO;
    for id in ["0", "1", "2", "100"] {
        let name = format!("{CLUSTER}-{id}");
        let (Some(t0), Some(t1)) = (at("RestartingBroker", id), at("BrokerRestarted", id)) else {
            println!("  {id:>4}  (no events)");
            continue;
        };
        let created = now
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name.as_str()))
            .and_then(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
            .unwrap_or(t1);
        let log = std::fs::read_to_string(runtime.container_log(NS, &name, "stoker-agent"))
            .unwrap_or_default();
        let wait = Duration::from_millis(prestop_wait_ms(&log).unwrap_or(0));
        let down = Duration::try_from(created.duration_since(t0)).unwrap_or_default();
        let up = Duration::try_from(t1.duration_since(created)).unwrap_or_default();
        let total = Duration::try_from(t1.duration_since(t0)).unwrap_or_default();
        if id != "100" {
            broker_total += total;
        }
        println!(
            "  {id:>4}  {:>9.1} s   {:>12.1} s   {:>17.1} s   {:>5.1} s",
            wait.as_secs_f64(),
            down.saturating_sub(wait).as_secs_f64(),
            up.as_secs_f64(),
            total.as_secs_f64()
        );
    }

    // The naive roll: SIGTERM each broker's Kafka, wait a fixed 30 s, next.
    let (_work, producer) =
        start_producer(runtime, &bootstrap, "bench", u64::from(RATE) * 110, RATE);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let naive_started = Instant::now();
    for id in ["0", "1", "2"] {
        let pid = runtime
            .container_pid(NS, &format!("{CLUSTER}-{id}"), "kafka")
            .expect("broker runs");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM");
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    let naive_roll = naive_started.elapsed();
    let out = producer.await.expect("producer");
    let (naive_acked, naive_failed) = producer_results(&String::from_utf8_lossy(&out.stdout));

    println!("\n  3 brokers rolled                    time      sends failed / acknowledged");
    println!(
        "  Stoker (safety-checked)         {:>7.1} s   {stoker_failed} / {}   (whole roll incl. controller {:.1} s)",
        broker_total.as_secs_f64(),
        acked.len(),
        stoker_roll.as_secs_f64()
    );
    println!(
        "  naive (SIGTERM + fixed 30 s)    {:>7.1} s   {naive_failed} / {}",
        naive_roll.as_secs_f64(),
        naive_acked.len()
    );
    println!(
        "  ratio Stoker / naive            {:>7.2}x",
        broker_total.as_secs_f64() / naive_roll.as_secs_f64()
    );
    env.stop().await;
}
