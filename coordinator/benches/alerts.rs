//! The alert receiver against a real API server, over 1,000 alerts posted one at a
//! time:
//!
//! - **acted**: alternating `upScale` and `downScale` (with `brokerId`) on a cluster with
//!   no cooldown, so every alert acts: read the cluster, record the decision in its
//!   status, change its spec (the reply is sent then; the Event after it). Two figures:
//!   receipt → decision recorded (the receiver's own `stoker_alert_record_seconds`
//!   histogram, read from its registry), and receipt → reply (the client's clock; it
//!   also waits for the spec write);
//! - **held**: the same alerts while the cluster is in its cooldown: read, decide, reply;
//! - **floor** (the baseline, same run, same client): one GET of the cluster and one
//!   status write, made directly — what any receiver that records its decisions in the
//!   resource must at least do.
//!
//! Goal: receipt → decision recorded, p99 ≤ 50 ms (at least 99 % of the acted alerts
//! in the histogram's buckets up to 50 ms). Run:
//! `cargo bench -p stoker-coordinator --bench alerts` (after `scripts/provision`).

use std::time::{Duration, Instant};

use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use stoker_coordinator::{
    alerts::receiver::{self, Auth, Receiver},
    crd::v1alpha1::{AlertManagerConfig, KafkaCluster},
};
use stoker_testenv::{KubeEnv, WorkDir, control_plane::ControlPlaneOptions, http};

const NS: &str = "bench";
const ALERTS: usize = 1_000;
const TOKEN: &str = "bench-token";

async fn cluster(api: &Api<KafkaCluster>, name: &str, cooldown: i64) {
    let mut kc: KafkaCluster =
        serde_yaml::from_str(include_str!("../../deploy/examples/kafkacluster.yaml"))
            .expect("example");
    kc.metadata = kube::api::ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NS.into()),
        ..Default::default()
    };
    kc.spec.alert_manager_config = Some(AlertManagerConfig {
        down_scale_limit: Some(1),
        cooldown_seconds: Some(cooldown),
        ..AlertManagerConfig::default()
    });
    api.create(&PostParams::default(), &kc)
        .await
        .expect("create the cluster");
    api.patch_status(
        name,
        &PatchParams::apply("bench-controller").force(),
        &Patch::Apply(serde_json::json!({
            "apiVersion": "kafka.stoker.io/v1alpha1",
            "kind": "KafkaCluster",
            "status": {"state": "Running", "readyBrokers": "4/4"},
        })),
    )
    .await
    .expect("report it running");
}

/// Alert `i` for `cluster`: even ones add a broker, odd ones remove broker 101 again.
fn alert(cluster: &str, i: usize) -> String {
    let (labels, annotations) = if i.is_multiple_of(2) {
        (
            serde_json::json!({"alertname": "BenchUp", "kafka_cr": cluster, "namespace": NS, "n": i.to_string()}),
            serde_json::json!({"command": "upScale", "brokerConfigGroup": "default_group"}),
        )
    } else {
        (
            serde_json::json!({"alertname": "BenchDown", "kafka_cr": cluster, "namespace": NS, "brokerId": "101", "n": i.to_string()}),
            serde_json::json!({"command": "downScale"}),
        )
    };
    serde_json::json!({
        "version": "4",
        "status": "firing",
        "receiver": "stoker",
        "alerts": [{
            "status": "firing",
            "labels": labels,
            "annotations": annotations,
            "startsAt": format!("2026-01-01T00:{:02}:{:02}Z", (i / 60) % 60, i % 60),
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": format!("{i:016x}"),
        }],
    })
    .to_string()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn report(what: &str, mut took: Vec<Duration>, floor_p99: Option<Duration>) -> Duration {
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p50 = percentile(&took, 0.50);
    let p99 = percentile(&took, 0.99);
    let ratio = floor_p99.map_or(String::new(), |f| {
        format!("   p99 {:.2}x the floor", ms(p99) / ms(f))
    });
    println!(
        "  {what:<44} p50 {:>6.2} ms   p99 {:>6.2} ms   max {:>6.2} ms{ratio}",
        ms(p50),
        ms(p99),
        ms(*took.last().expect("samples")),
    );
    p99
}

/// The cumulative counts of `stoker_alert_record_seconds`, by upper bound.
fn recorded(registry: &prometheus::Registry) -> Vec<(f64, u64)> {
    registry
        .gather()
        .iter()
        .find(|f| f.name() == "stoker_alert_record_seconds")
        .and_then(|f| f.get_metric().first())
        .map(|m| {
            m.get_histogram()
                .get_bucket()
                .iter()
                .map(|b| (b.upper_bound(), b.cumulative_count()))
                .collect()
        })
        .expect("the receiver registers stoker_alert_record_seconds")
}

/// The bucket bound below which fraction `p` of the samples between `before` and
/// `after` fell (None: above the last bucket).
fn bucket_percentile(before: &[(f64, u64)], after: &[(f64, u64)], p: f64) -> Option<f64> {
    let counts: Vec<(f64, u64)> = after
        .iter()
        .zip(before)
        .map(|((bound, a), (_, b))| (*bound, a - b))
        .collect();
    let total = ALERTS as f64;
    counts
        .iter()
        .find(|(_, n)| *n as f64 >= total * p)
        .map(|(bound, _)| *bound)
}

async fn post_all(addr: std::net::SocketAddr, cluster: &str, expect: &str) -> Vec<Duration> {
    let auth = format!("Bearer {TOKEN}");
    let headers = [("Authorization", auth.as_str())];
    let mut took = Vec::with_capacity(ALERTS);
    for i in 0..ALERTS {
        let body = alert(cluster, i);
        let t = Instant::now();
        let r = http::request_with(addr, "POST", "/alerts", &headers, Some(&body))
            .await
            .expect("the receiver answers");
        took.push(t.elapsed());
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            r.body.contains(&format!("\"outcome\":\"{expect}\"")),
            "alert {i} was not {expect}: {}",
            r.body
        );
    }
    took
}

async fn floor(client: &Client, name: &str) -> Vec<Duration> {
    let api: Api<KafkaCluster> = Api::namespaced(client.clone(), NS);
    let mut took = Vec::with_capacity(ALERTS);
    for i in 0..ALERTS {
        let t = Instant::now();
        let kc = api.get(name).await.expect("get");
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": kc.metadata.resource_version},
            "status": {"readyBrokers": format!("{}/4", i % 5)},
        });
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("status write");
        took.push(t.elapsed());
    }
    took
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let KubeEnv {
        plane: _plane,
        client,
    } = KubeEnv::start_with(
        ControlPlaneOptions {
            controller_manager: false,
        },
        &[NS],
    )
    .await
    .expect("control plane with CRDs");
    let api: Api<KafkaCluster> = Api::namespaced(client.clone(), NS);
    cluster(&api, "floor", 0).await;
    cluster(&api, "acting", 0).await;
    cluster(&api, "cooling", 3600).await;

    let work = WorkDir::new("alerts-bench").expect("work dir");
    let token = work.write("token", TOKEN).expect("token file");
    let registry = prometheus::Registry::new();
    let receiver = Receiver::new(client.clone(), Auth::BearerFile(token), &registry);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, receiver::router(receiver)).await });

    // One action puts "cooling" in its cooldown for the held run.
    let first = alert("cooling", 0);
    let r = http::request_with(
        addr,
        "POST",
        "/alerts",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        Some(&first),
    )
    .await
    .expect("answer");
    assert!(r.body.contains("\"outcome\":\"acted\""), "{}", r.body);

    println!(
        "alert receipt -> decision recorded, {ALERTS} alerts one at a time (real API server):"
    );
    let base = report(
        "floor: GET + one status write (baseline)",
        floor(&client, "floor").await,
        None,
    );
    let before = recorded(&registry);
    report(
        "acted, reply: record + spec change",
        post_all(addr, "acting", "acted").await,
        Some(base),
    );
    let after = recorded(&registry);
    let within = |bound: f64| {
        let n = |c: &[(f64, u64)]| c.iter().find(|(b, _)| *b >= bound).map_or(0, |(_, n)| *n);
        n(&after) - n(&before)
    };
    let shown = |p: f64| {
        bucket_percentile(&before, &after, p)
            .map_or("> 2.5 s".to_owned(), |b| format!("<= {:.0} ms", b * 1000.0))
    };
    println!(
        "  acted, receipt -> decision recorded (receiver's histogram): p50 {}   p99 {}   within 50 ms: {} of {ALERTS}",
        shown(0.50),
        shown(0.99),
        within(0.05),
    );
    report(
        "held (cooldown): decide, reply",
        post_all(addr, "cooling", "held").await,
        Some(base),
    );
    let kc = api.get("acting").await.expect("get");
    let brokers: Vec<i32> = kc.spec.brokers.iter().map(|b| b.id).collect();
    println!("  after {ALERTS} acted alerts the cluster's brokers are {brokers:?} (up, down, ...)");
    println!(
        "  goal: decision recorded, p99 <= 50 ms -> {}",
        if within(0.05) as f64 >= ALERTS as f64 * 0.99 {
            "met"
        } else {
            "NOT met"
        }
    );
}
