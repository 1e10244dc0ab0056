//! The coordinator against a real API server (release build, its own process):
//!
//! - time and number of API writes to reconcile a 3-broker and a 30-broker cluster
//!   from empty (writes counted from watch events on every object kind it writes,
//!   plus the cluster's status updates);
//! - for an unchanged cluster (3 and 30 brokers), the API requests and the time of one
//!   reconcile pass, read from the coordinator's own `/metrics`
//!   (`stoker_kube_requests_total`, `stoker_reconcile_duration_seconds`) over passes
//!   triggered by touching an annotation;
//! - RSS with 30 clusters of 3 brokers cached, against the same process idle with
//!   none (the baseline measured in the same run);
//! - CPU over 30 s when nothing changes.
//!
//! Run: `cargo bench -p stoker-coordinator --bench reconcile` (after `scripts/provision`).

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::{
    api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams, PostParams},
    runtime::{conditions, wait::await_condition, watcher},
};
use stoker_coordinator::crd::v1alpha1::KafkaCluster;
use stoker_testenv::{
    ControlPlane, ManagedProcess, WorkDir,
    net::free_port,
    proc_stats::{cpu_seconds, rss_mib},
};

fn cluster(name: &str, ns: &str, brokers: usize) -> KafkaCluster {
    let mut kc: KafkaCluster =
        serde_yaml::from_str(include_str!("../../deploy/examples/kafkacluster.yaml"))
            .expect("example");
    kc.metadata.name = Some(name.into());
    kc.metadata.namespace = Some(ns.into());
    let template = kc.spec.brokers[0].clone();
    let controller = kc
        .spec
        .brokers
        .iter()
        .find(|b| b.id == 100)
        .cloned()
        .expect("controller");
    kc.spec.brokers = (0..brokers)
        .map(|i| stoker_coordinator::crd::v1alpha1::Broker {
            id: i32::try_from(i).expect("small"),
            ..template.clone()
        })
        .collect();
    kc.spec
        .brokers
        .push(stoker_coordinator::crd::v1alpha1::Broker {
            id: 1000,
            ..controller
        });
    kc
}

/// Counts watch events (creations and modifications) of one kind in one namespace.
fn count_writes<K>(api: Api<K>, counter: Arc<AtomicU64>) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    tokio::spawn(async move {
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
        while let Some(Ok(ev)) = stream.next().await {
            if let watcher::Event::Apply(o) = ev {
                let rv = o.resource_version().unwrap_or_default();
                if seen.insert(o.name_any(), rv.clone()).as_deref() != Some(rv.as_str()) {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    })
}

/// The coordinator's `/metrics` text.
async fn scrape(admin: std::net::SocketAddr) -> String {
    stoker_testenv::http::get(admin, "/metrics")
        .await
        .expect("the coordinator's /metrics answers")
        .body
}

/// The sum of every sample of `name` whose labels contain all of `labels`.
fn sample_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What one reconcile pass of an unchanged cluster costs.
struct PassCost {
    passes: f64,
    seconds: f64,
    reads: f64,
    writes: f64,
    by_verb: Vec<(&'static str, f64)>,
}

const VERBS: [&str; 8] = [
    "get", "list", "create", "apply", "patch", "update", "delete", "watch",
];

/// Touches an annotation of `name` `pokes` times and reads from the coordinator's
/// metrics how many passes ran, how long they took and what they asked the API server.
async fn unchanged_passes(
    client: &Client,
    admin: std::net::SocketAddr,
    ns: &str,
    name: &str,
    pokes: usize,
) -> PassCost {
    let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), ns);
    let controller = "controller=\"kafkacluster\"";
    let before = scrape(admin).await;
    for i in 0..pokes {
        let patch = serde_json::json!({"metadata": {"annotations": {"bench/poke": i.to_string()}}});
        clusters
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("poke");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = scrape(admin).await;
    let delta = |metric: &str, labels: &[&str]| {
        sample_sum(&after, metric, labels) - sample_sum(&before, metric, labels)
    };
    let passes = delta("stoker_reconcile_runs_total", &[controller]).max(1.0);
    let seconds = delta("stoker_reconcile_duration_seconds_sum", &[controller]) / passes;
    let by_verb: Vec<(&'static str, f64)> = VERBS
        .iter()
        .map(|verb| {
            let v = format!("verb=\"{verb}\"");
            // Every request but the liveness check of the API server (`/version`).
            let all = delta("stoker_kube_requests_total", &[&v]);
            let other = delta("stoker_kube_requests_total", &[&v, "resource=\"other\""]);
            (*verb, (all - other) / passes)
        })
        .collect();
    let reads = by_verb
        .iter()
        .filter(|(v, _)| matches!(*v, "get" | "list"))
        .map(|(_, n)| n)
        .sum();
    let writes = by_verb
        .iter()
        .filter(|(v, _)| !matches!(*v, "get" | "list" | "watch"))
        .map(|(_, n)| n)
        .sum();
    PassCost {
        passes,
        seconds,
        reads,
        writes,
        by_verb,
    }
}

fn print_pass(what: &str, c: &PassCost) {
    let verbs: Vec<String> = c
        .by_verb
        .iter()
        .filter(|(_, n)| *n > 0.0)
        .map(|(v, n)| format!("{v} {n:.1}"))
        .collect();
    println!(
        "  {what:<46} {:>8.1} ms/pass   {:.1} reads + {:.1} writes per pass ({}) over {} passes",
        c.seconds * 1000.0,
        c.reads,
        c.writes,
        if verbs.is_empty() {
            "none".to_owned()
        } else {
            verbs.join(", ")
        },
        c.passes
    );
}

async fn reconcile_from_empty(
    plane: &ControlPlane,
    client: &Client,
    ns: &str,
    brokers: usize,
) -> (Duration, u64) {
    plane.create_namespace(ns).await.expect("namespace");
    let writes = Arc::new(AtomicU64::new(0));
    let tasks = vec![
        count_writes(Api::<Pod>::namespaced(client.clone(), ns), writes.clone()),
        count_writes(
            Api::<ConfigMap>::namespaced(client.clone(), ns),
            writes.clone(),
        ),
        count_writes(
            Api::<Service>::namespaced(client.clone(), ns),
            writes.clone(),
        ),
        count_writes(
            Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns),
            writes.clone(),
        ),
        count_writes(
            Api::<KafkaCluster>::namespaced(client.clone(), ns),
            writes.clone(),
        ),
    ];
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = writes.load(Ordering::SeqCst);
    let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), ns);
    let start = Instant::now();
    clusters
        .create(&PostParams::default(), &cluster("bench", ns, brokers))
        .await
        .expect("create");
    let want = format!("0/{}", brokers + 1);
    loop {
        let kc = clusters.get("bench").await.expect("get");
        let done = kc
            .status
            .as_ref()
            .is_some_and(|s| s.ready_brokers.as_deref() == Some(want.as_str()));
        if done {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "reconcile did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = start.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for t in tasks {
        t.abort();
    }
    // The user's create is one of the KafkaCluster events; everything else is the coordinator.
    (elapsed, writes.load(Ordering::SeqCst) - baseline - 1)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let plane = ControlPlane::start().await.expect("control plane");
    let client = plane.client().await.expect("client");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for doc in
        serde_yaml::Deserializer::from_str(include_str!("../../deploy/crds/kafka.stoker.io.yaml"))
    {
        let crd: CustomResourceDefinition = serde::Deserialize::deserialize(doc).expect("CRD");
        let name = crd.name_any();
        crds.patch(
            &name,
            &PatchParams::apply("bench").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("install");
        await_condition(crds.clone(), &name, conditions::is_crd_established())
            .await
            .expect("established");
    }

    let work = WorkDir::new("bench-coordinator").expect("work dir");
    let mut cmd = Command::new(PathBuf::from(env!("CARGO_BIN_EXE_stoker-coordinator")));
    let admin: std::net::SocketAddr = format!("127.0.0.1:{}", free_port().expect("port"))
        .parse()
        .expect("an address");
    cmd.arg("run")
        .env("KUBECONFIG", plane.kubeconfig())
        .env("STOKER_COORDINATOR_ADMIN_ADDR", admin.to_string())
        .env("RUST_LOG", "warn");
    let coordinator =
        ManagedProcess::spawn("coordinator", cmd, &work.path().join("coordinator.log"))
            .expect("coordinator");
    let pid = coordinator.pid().expect("pid");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_rss = rss_mib(pid);

    let (t3, w3) = reconcile_from_empty(&plane, &client, "bench-3", 3).await;
    let (t30, w30) = reconcile_from_empty(&plane, &client, "bench-30", 30).await;
    let pass3 = unchanged_passes(&client, admin, "bench-3", "bench", 30).await;
    let pass30 = unchanged_passes(&client, admin, "bench-30", "bench", 30).await;

    // 30 clusters of 3 brokers (+1 controller each), all cached by the coordinator.
    plane.create_namespace("fleet").await.expect("namespace");
    let fleet: Api<KafkaCluster> = Api::namespaced(client.clone(), "fleet");
    let start = Instant::now();
    for i in 0..30 {
        fleet
            .create(
                &PostParams::default(),
                &cluster(&format!("c{i}"), "fleet", 3),
            )
            .await
            .expect("create");
    }
    loop {
        let list = fleet.list(&Default::default()).await.expect("list");
        if list
            .items
            .iter()
            .all(|k| k.status.as_ref().is_some_and(|s| s.ready_brokers.is_some()))
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the fleet did not reconcile"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fleet_time = start.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let fleet_rss = rss_mib(pid);
    let cpu0 = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let idle_cpu = (cpu_seconds(pid) - cpu0) / 30.0;

    println!("\nstoker-coordinator against a real API server (release build)");
    println!(
        "  3-broker cluster (+1 controller) from empty   {:>8.2} s   {w3} API writes",
        t3.as_secs_f64()
    );
    println!(
        "  30-broker cluster (+1 controller) from empty  {:>8.2} s   {w30} API writes",
        t30.as_secs_f64()
    );
    print_pass("unchanged 3-broker cluster (+1 controller)", &pass3);
    print_pass("unchanged 30-broker cluster (+1 controller)", &pass30);
    println!(
        "  30 clusters of 3 brokers (+1 controller) reconciled in {:.1} s",
        fleet_time.as_secs_f64()
    );
    println!(
        "  RSS idle with no cluster                 {idle_rss:>8.1} MiB   (baseline, same run)"
    );
    println!(
        "  RSS with 32 clusters cached              {fleet_rss:>8.1} MiB   ({:.2}x the baseline; goal <= 48 MiB)",
        fleet_rss / idle_rss
    );
    println!(
        "  CPU while nothing changes                {:>8.3}% of a core",
        idle_cpu * 100.0
    );
    drop(coordinator);
}
