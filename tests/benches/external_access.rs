//! Produce through each way into the cluster, measured in the same run on the local
//! Pod runtime (interleaved rounds, medians, ratios against the in-cluster baseline):
//!
//! - in-cluster: the internal listener, as a client inside Kubernetes reaches it;
//! - per-broker Services: a `NodePort` external listener (one Service per broker; the
//!   runtime forwards node ports as kube-proxy would);
//! - single load balancer: a `LoadBalancer` external listener behind HAProxy
//!   (`ingressController: haproxy`): load balancer → proxy → broker.
//!
//! Each round runs Kafka's `kafka-producer-perf-test.sh` (acks=all, 1 KiB records, RF 3,
//! min ISR 2) twice per path: unthrottled for throughput, and at a fixed rate for
//! latency (p99). Also prints the proxy's memory (HAProxy master and workers, RSS).
//! Every path's extra hop on this machine is a userspace forwarder (the runtime's
//! stand-in for kube-proxy and the cloud's load balancer), so the ratios bound what a
//! cluster with kernel forwarding would see.
//!
//! Run: `cargo bench -p stoker-tests --bench external_access` (as root, after
//! `scripts/provision`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::{Api, api::ListParams};
use stoker_testenv::proc_stats;
use support::*;

const ROUNDS: usize = 5;
const RECORDS: u32 = 30_000;
const LATENCY_RECORDS: u32 = 3_000;
const LATENCY_RATE: u32 = 500;

/// `(MB/s, p99 ms)` from the perf tool's summary line.
fn summary(out: &str) -> (f64, f64) {
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains("records sent"))
        .unwrap_or_else(|| panic!("no summary in:\n{out}"));
    let number_before = |suffix: &str| -> f64 {
        let end = line
            .find(suffix)
            .unwrap_or_else(|| panic!("{suffix} in {line}"));
        line[..end]
            .rsplit([' ', '('])
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("a number before {suffix} in {line}"))
    };
    (number_before(" MB/sec"), number_before(" ms 99th"))
}

fn perf(env: &Env, bootstrap: &str, records: u32, rate: Option<u32>) -> (f64, f64) {
    let records = records.to_string();
    let throughput = rate.map_or("-1".to_owned(), |r| r.to_string());
    let servers = format!("bootstrap.servers={bootstrap}");
    let out = kafka_tool(
        &env.runtime,
        "kafka-producer-perf-test.sh",
        &[
            "--topic",
            "paths",
            "--num-records",
            &records,
            "--record-size",
            "1024",
            "--throughput",
            &throughput,
            "--producer-props",
            &servers,
            "acks=all",
            "linger.ms=5",
        ],
    );
    let (mbs, p99) = summary(&out);
    assert!(
        mbs > 0.0,
        "nothing produced through {bootstrap}:\n{}",
        out.lines().rev().take(30).collect::<Vec<_>>().join("\n")
    );
    (mbs, p99)
}

/// Resident memory of `pid` and every process below it.
fn tree_rss_mib(pid: u32) -> f64 {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    proc_stats::rss_mib(pid)
        + children
            .split_whitespace()
            .filter_map(|c| c.parse().ok())
            .map(tree_rss_mib)
            .sum::<f64>()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut kc = example_cluster();
    kc.spec.cruise_control_config = None;
    kc.spec.ingress_controller = Some("haproxy".into());
    kc.spec.listeners_config.external_listeners = Some(vec![
        external_listener("edge", 29097, 19190, None),
        external_listener("np", 29096, 31090, Some("NodePort")),
    ]);
    let env = Env::start_with(kc).await;
    let internal = format!("{CLUSTER}-all-broker.{NS}.svc.cluster.local:9092");
    create_topic(&env.runtime, &internal, "paths", 6, 3, 2);
    let status = env.clusters.get(CLUSTER).await.expect("cluster").status;
    let bootstrap = |name: &str| -> String {
        status
            .as_ref()
            .and_then(|s| s.listener_statuses.as_ref())
            .and_then(|l| l.external_listeners.get(name))
            .and_then(|a| a.iter().find(|a| a.name == "any-broker"))
            .map(|a| a.address.clone())
            .unwrap_or_else(|| panic!("listener {name} has a bootstrap address"))
    };
    let paths = [
        ("in-cluster", internal.clone()),
        ("per-broker Services", bootstrap("np")),
        ("single load balancer + HAProxy", bootstrap("edge")),
    ];
    // Until the proxy answers (it becomes ready beside the brokers).
    for _ in 0..60 {
        if std::net::TcpStream::connect(&paths[2].1).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Warm-up (the brokers' JIT, connections, metadata), and each path works.
    for _ in 0..2 {
        for (_, bootstrap) in &paths {
            perf(&env, bootstrap, 10_000, None);
        }
    }

    let mut throughput: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    let mut p99: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    for round in 0..ROUNDS {
        for (i, (name, bootstrap)) in paths.iter().enumerate() {
            let (mbs, _) = perf(&env, bootstrap, RECORDS, None);
            let (_, p) = perf(&env, bootstrap, LATENCY_RECORDS, Some(LATENCY_RATE));
            println!(
                "round {round} {name}: {mbs:.1} MB/s, p99 {p:.0} ms at {LATENCY_RATE} records/s"
            );
            throughput[i].push(mbs);
            p99[i].push(p);
        }
    }
    let base_t = median(throughput[0].clone());
    let base_p = median(p99[0].clone());
    for (i, (name, _)) in paths.iter().enumerate() {
        let t = median(throughput[i].clone());
        let p = median(p99[i].clone());
        println!(
            "FIGURE {name}: throughput {t:.1} MB/s ({:.2}x in-cluster), p99 {p:.0} ms ({:.2}x in-cluster)",
            t / base_t,
            if base_p > 0.0 { p / base_p } else { f64::NAN },
        );
    }

    let pods: Api<Pod> = Api::namespaced(env.clusters.clone().into_client(), NS);
    let proxy = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=external-proxy"))
        .await
        .expect("proxy Pods")
        .items;
    for p in &proxy {
        let name = p.metadata.name.clone().unwrap_or_default();
        if let Some(pid) = env.runtime.container_pid(NS, &name, "haproxy") {
            println!(
                "FIGURE proxy memory ({name}): {:.1} MiB RSS (shell, HAProxy master and workers)",
                tree_rss_mib(pid)
            );
        }
    }
    env.stop().await;
}
