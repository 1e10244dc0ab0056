//! A scale-up of 3 → 4 brokers through the real Cruise Control on the local Pod runtime,
//! measured in one run: 12 partitions (replication factor 2) holding ~100 MB, then
//! broker 3 added to `spec.brokers`.
//!
//! - time from the spec change to broker 3 Ready, and to its `AddBrokers` rebalance
//!   done; how much of that Cruise Control spent executing the task (the rest is the
//!   coordinator, Cruise Control sampling the new broker, and computing the proposal);
//! - the data moved onto broker 3 (its log dirs, from Kafka) against Cruise Control's
//!   estimate (`proposal.dataToMoveMB`), and the rate it moved at;
//! - the API requests the coordinator sent for the whole operation
//!   (`stoker_kube_requests_total`, counted by the same client layer as in production);
//! - Cruise Control's RSS.
//!
//! By default the scaling rebalances carry no `replicationThrottle`, so the rate is the
//! machine's (and Cruise Control's batch cadence's). With `STOKER_BENCH_THROTTLE=<bytes/s>`
//! the cluster's `cruiseControlConfig.replicationThrottle` is set, and the bench also
//! prints the throttle-limited ideal (bytes moved / throttle) and the time against it.
//!
//! Run: `cargo bench -p stoker-tests --bench scale_up` (as root, after `scripts/provision`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use kube::{Api, api::ListParams};
use stoker_coordinator::crd::v1alpha1::{BrokerState, KafkaRebalance, RebalanceState};
use support::*;

const TOPIC: &str = "bench";
const RECORDS: &str = "100000";
const RECORD_BYTES: &str = "1000";

/// Bytes of broker `id`'s replicas, from Kafka's `LogDirsCommand`.
fn bytes_on(env: &Env, bootstrap: &str, id: i32) -> u64 {
    let out = kafka_tool(
        &env.runtime,
        "kafka-run-class.sh",
        &[
            "org.apache.kafka.tools.LogDirsCommand",
            "--bootstrap-server",
            bootstrap,
            "--describe",
            "--broker-list",
            &id.to_string(),
        ],
    );
    let json = out
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("LogDirsCommand printed no JSON: {out}"));
    let v: serde_json::Value = serde_json::from_str(json).expect("LogDirsCommand's JSON");
    v["brokers"][0]["logDirs"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|d| d["partitions"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["size"].as_u64())
        .sum()
}

/// RSS of `pid` and every process under it, MiB.
fn tree_rss_mib(pid: u32) -> f64 {
    let mut total = stoker_testenv::proc_stats::rss_mib(pid);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        // pid (comm) state ppid ...
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            total += tree_rss_mib(child);
        }
    }
    total
}

fn requests(registry: &prometheus::Registry) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "stoker_kube_requests_total")
        .flat_map(|f| f.get_metric().iter().map(|m| m.get_counter().get_value()))
        .sum()
}

fn secs(from: Instant, to: Option<Instant>) -> f64 {
    to.map_or(f64::NAN, |t| t.duration_since(from).as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let registry = prometheus::Registry::new();
    let counted = stoker_coordinator::kube_client::RequestMetrics::new(&registry);
    let throttle: Option<i64> = std::env::var("STOKER_BENCH_THROTTLE").ok().map(|v| {
        v.parse()
            .expect("STOKER_BENCH_THROTTLE is bytes per second")
    });
    let mut kc = cruise_control_cluster();
    if let Some(cc) = kc.spec.cruise_control_config.as_mut() {
        cc.replication_throttle = throttle;
    }
    let env = Env::start_counted(kc, Some(counted)).await;
    let bootstrap = format!("{CLUSTER}-all-broker.{NS}.svc.cluster.local:9092");
    create_topic(&env.runtime, &bootstrap, TOPIC, 12, 2, 1);
    kafka_tool(
        &env.runtime,
        "kafka-producer-perf-test.sh",
        &[
            "--topic",
            TOPIC,
            "--num-records",
            RECORDS,
            "--record-size",
            RECORD_BYTES,
            "--throughput",
            "-1",
            "--producer-props",
            &format!("bootstrap.servers={bootstrap}"),
            "acks=all",
        ],
    );
    let stored: u64 = (0..3).map(|id| bytes_on(&env, &bootstrap, id)).sum();
    // Cruise Control has sampled the cluster before the change (as a cluster in use has).
    let sampled = Instant::now() + Duration::from_secs(300);
    loop {
        let st = env.clusters.get(CLUSTER).await.expect("get").status;
        if st.and_then(|s| s.cruise_control).is_some_and(|c| c.ready) {
            break;
        }
        assert!(Instant::now() < sampled, "Cruise Control never got ready");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    let rebalances: Api<KafkaRebalance> = Api::namespaced(env.clusters.clone().into_client(), NS);
    let name = format!("{CLUSTER}-add-3");
    let requests_before = requests(&registry);
    let t0 = Instant::now();
    set_brokers(&env.clusters, &[0, 1, 2, 3]).await;
    let (mut ready, mut started, mut done) = (None, None, None);
    let mut last = None;
    while done.is_none() {
        let st = env
            .clusters
            .get(CLUSTER)
            .await
            .expect("get")
            .status
            .unwrap_or_default();
        if ready.is_none()
            && st
                .brokers_state
                .get("3")
                .is_some_and(|b| b.state == Some(BrokerState::Ready))
        {
            ready = Some(Instant::now());
        }
        let op = rebalances.get_opt(&name).await.expect("get");
        let op_status = op.and_then(|o| o.status);
        let state = op_status.as_ref().and_then(|s| s.state);
        if started.is_none() && state == Some(RebalanceState::Running) {
            started = Some(Instant::now());
        }
        assert_ne!(state, Some(RebalanceState::Failed), "{op_status:?}");
        if state == Some(RebalanceState::Completed) && st.scaling.is_none() {
            done = Some(Instant::now());
        }
        last = op_status;
        assert!(
            t0.elapsed() < Duration::from_secs(900),
            "the scale-up did not finish: {last:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let requests_used = requests(&registry) - requests_before;
    let last = last.expect("the rebalance's status");
    let estimate_mb = last.proposal.as_ref().map_or(0.0, |p| p.data_to_move_mb);
    let moved_mb = bytes_on(&env, &bootstrap, 3) as f64 / 1e6;
    let executing = secs(started.unwrap_or(t0), done);
    let cc_pod = env
        .pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=cruise-control"))
        .await
        .expect("pods")
        .items
        .into_iter()
        .next()
        .and_then(|p| p.metadata.name)
        .expect("Cruise Control's Pod");
    let cc_rss = env
        .runtime
        .container_pid(NS, &cc_pod, "cruise-control")
        .map_or(f64::NAN, tree_rss_mib);

    println!(
        "\nScale-up 3 → 4 (local runtime, {TOPIC}: 12 partitions, RF 2, {:.0} MB stored)",
        stored as f64 / 1e6
    );
    println!(
        "  spec change → broker 3 Ready         {:>7.1} s",
        secs(t0, ready)
    );
    println!(
        "  spec change → rebalance done         {:>7.1} s",
        secs(t0, done)
    );
    println!(
        "    of which Cruise Control executing  {executing:>7.1} s ({:.0}% of the total)",
        100.0 * executing / secs(t0, done)
    );
    println!(
        "  data moved onto broker 3             {moved_mb:>7.1} MB, Cruise Control's estimate {estimate_mb:.1} MB (ratio {:.2})",
        moved_mb / estimate_mb.max(f64::MIN_POSITIVE)
    );
    println!(
        "  movement rate while executing        {:>7.1} MB/s ({} partition movements)",
        moved_mb / executing,
        last.proposal.as_ref().map_or(0, |p| p.replica_movements)
    );
    if let Some(t) = throttle {
        let ideal = moved_mb * 1e6 / t as f64;
        println!(
            "  throttle {:.2} MB/s: ideal (moved / throttle) {ideal:>7.1} s; executing took {:.2}x that",
            t as f64 / 1e6,
            executing / ideal
        );
    }
    println!("  coordinator API requests             {requests_used:>7.0} for the whole operation");
    println!("  Cruise Control RSS                   {cc_rss:>7.0} MiB");
    env.stop().await;
}
