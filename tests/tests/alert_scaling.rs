//! Alert-driven scaling end to end, with every component real: the local Pod runtime
//! runs the example cluster (3 brokers, a controller, the Cruise Control the coordinator
//! deploys); the real Prometheus scrapes Kafka's JMX series from the brokers' agents
//! (the broker Pods listed from the API server into a file_sd file, as a PodMonitor
//! would select them); the seed's rule (threshold, `for:` and rate
//! window shortened) fires under a produced load; the real Alertmanager posts it with the
//! bearer token to the coordinator's alert receiver, which adds a broker, and Cruise
//! Control moves partitions onto it. Once the load stops, an under-load rule removes a
//! broker again: its replicas are moved off first, the coordinator is killed twice
//! along the way, and the broker's Pod goes only once metadata shows it holds nothing.
//! Kafka's verifiable producer (acks=all, idempotent) runs through all of it, and every
//! record it had acknowledged is consumed exactly once.
//!
//! The seed's `PrometheusRule` itself (`deploy/monitoring/seed-prometheusrule.yaml`,
//! from the slides) and the rules Stoker ships (`deploy/monitoring/kafka-alerts.yaml`)
//! are loaded too and must evaluate without error.

mod support;

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use kube::{Api, ResourceExt};
use stoker_coordinator::{
    alerts::receiver::{self, Auth, Receiver},
    crd::v1alpha1::{AlertManagerConfig, KafkaCluster, KafkaRebalance, RebalanceState},
};
use stoker_testenv::{
    Alertmanager, ManagedProcess, Prometheus, WorkDir, control_plane::random_hex,
};
use support::*;

const TOPIC: &str = "orders";
const LOAD_TOPIC: &str = "load";
/// Requests per second per node, averaged over the nodes, above which the cluster is
/// overloaded and under which it is idle. Measured here: with only the verifiable
/// producer (10 records/s, acks=all) the nodes answer about 15 requests/s — replica
/// fetches, the agents' and Cruise Control's metadata reads, its metrics reporter —
/// and the load below drives them above 150.
const OVERLOADED: u32 = 80;
const UNDERLOADED: u32 = 40;
/// How long a rule must hold before it fires (the seed's is 5m; its rate window, 15m,
/// is shortened to 30s alike).
const FOR: &str = "10s";
/// The cluster's cooldown after an alert acted.
const COOLDOWN_SECONDS: i64 = 60;

/// The seed's rule as the receiver needs it: Koperator's sample form, which keeps the
/// `kafka_cr` and `namespace` labels (`avg(...) by (kafka_cr, namespace)`), plus an
/// under-load twin with `downScale`.
fn rules() -> String {
    let load = "avg(sum by(brokerId, kafka_cr, namespace) (rate(kafka_network_requestmetrics_requests_total[30s]))) by (kafka_cr, namespace)";
    format!(
        r#"groups:
- name: KafkaAlerts
  rules:
  - alert: BrokerOverLoaded
    expr: {load} > {OVERLOADED}
    for: {FOR}
    labels:
      severity: alert
    annotations:
      description: 'broker {{{{ $labels.brokerId }}}} overloaded (current value is: {{{{ $value }}}})'
      summary: 'broker overloaded'
      brokerConfigGroup: 'default_group'
      command: 'upScale'
  - alert: BrokerUnderLoaded
    expr: {load} < {UNDERLOADED}
    for: {FOR}
    labels:
      severity: alert
    annotations:
      summary: 'brokers idle'
      command: 'downScale'
"#
    )
}

/// A `PrometheusRule`'s groups, as a Prometheus rule file.
fn rule_file(prometheus_rule: &str) -> String {
    let rule: serde_yaml::Value =
        serde_yaml::from_str(prometheus_rule).expect("the PrometheusRule parses");
    let mut groups = serde_yaml::Mapping::new();
    groups.insert("groups".into(), rule["spec"]["groups"].clone());
    serde_yaml::to_string(&groups).expect("rule file")
}

/// The scrape targets the shipped PodMonitors give (`deploy/monitoring/podmonitor.yaml`):
/// each running broker Pod's agent (port `agent-admin`) and Cruise Control's exporter
/// (port `metrics`, labelled with its cluster).
async fn write_scrape_targets(pods: &Api<k8s_openapi::api::core::v1::Pod>, file: &std::path::Path) {
    let Ok(list) = pods
        .list(&kube::api::ListParams::default().labels("app.kubernetes.io/managed-by=stoker"))
        .await
    else {
        return;
    };
    // The port a Pod's container (or native sidecar) names `name`, by the Pod's address.
    let target = |p: &k8s_openapi::api::core::v1::Pod, name: &str| {
        let ip = p.status.as_ref()?.pod_ip.clone()?;
        let spec = p.spec.as_ref()?;
        let port = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .flat_map(|c| c.ports.iter().flatten())
            .find(|port| port.name.as_deref() == Some(name))?
            .container_port;
        Some(format!("{ip}:{port}"))
    };
    let live = || {
        list.items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
    };
    // Brokers: their agents (port agent-admin), as the shipped PodMonitor has it.
    let agents: Vec<String> = live()
        .filter(|p| p.labels().contains_key("brokerId"))
        .filter_map(|p| target(p, "agent-admin"))
        .collect();
    // Cruise Control: its JMX exporter (port metrics), labelled with the cluster as the
    // shipped PodMonitor relabels it.
    let cruise_control: Vec<String> = live()
        .filter(|p| {
            p.labels()
                .get("app.kubernetes.io/component")
                .map(String::as_str)
                == Some("cruise-control")
        })
        .filter_map(|p| target(p, "metrics"))
        .collect();
    let body = serde_json::json!([
        {"targets": agents},
        {"targets": cruise_control, "labels": {"kafka_cr": CLUSTER, "namespace": NS}},
    ])
    .to_string();
    // Written whole and renamed, so Prometheus never reads half a file.
    let tmp = file.with_extension("tmp");
    if std::fs::write(&tmp, body).is_ok() {
        let _ = std::fs::rename(&tmp, file);
    }
}

/// Load: many small produce requests (no batching) until stopped.
fn start_load(env: &Env, bootstrap: &str, work: &WorkDir) -> ManagedProcess {
    let mut cmd = env
        .runtime
        .client_command(kafka_home().join("bin/kafka-producer-perf-test.sh"));
    cmd.args([
        "--topic",
        LOAD_TOPIC,
        "--num-records",
        "100000000",
        "--record-size",
        "100",
        "--throughput",
        "400",
        "--producer-props",
        &format!("bootstrap.servers={bootstrap}"),
        "acks=1",
        "linger.ms=0",
    ])
    .env("KAFKA_HEAP_OPTS", "-Xmx256m")
    .env(
        "KAFKA_JVM_PERFORMANCE_OPTS",
        "-XX:+UseSerialGC -XX:TieredStopAtLevel=1",
    )
    .stdin(Stdio::null());
    ManagedProcess::spawn("load", cmd, &work.path().join("load.log")).expect("start the load")
}

/// The cluster's average request rate per broker, as the rules see it.
async fn load(prometheus: &Prometheus) -> Option<f64> {
    let v = prometheus
        .query("avg(sum by(brokerId, kafka_cr, namespace) (rate(kafka_network_requestmetrics_requests_total[30s]))) by (kafka_cr, namespace)")
        .await
        .ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// The left side of a rule's final comparison (`a > 5` → `a`): what it compares.
fn compared(expr: &str) -> &str {
    [" >= ", " <= ", " == ", " != ", " > ", " < "]
        .iter()
        .filter_map(|op| expr.rfind(op))
        .max()
        .map_or(expr, |i| expr[..i].trim())
}

/// A load to the nearest 10 (progress lines change only when it does).
/// A dashboard expression as Grafana sends it with every variable at "All".
fn grafana_expr(expr: &str) -> String {
    expr.replace("$namespace", ".+")
        .replace("$kafka_cr", ".+")
        .replace("$__rate_interval", "1m")
        .replace("$__range", "1h")
}

/// Serves `registry` at `/metrics` on a loopback port, with the coordinator's admin
/// server.
async fn serve_metrics(registry: prometheus::Registry) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the metrics server");
    let addr = listener.local_addr().expect("address");
    let state = std::sync::Arc::new(stoker_coordinator::admin::AdminState::with_registry(
        registry,
    ));
    tokio::spawn(
        async move { axum::serve(listener, stoker_coordinator::admin::router(state)).await },
    );
    addr
}

fn rounded(load: Option<f64>) -> f64 {
    load.map_or(-1.0, |l| (l / 10.0).round() * 10.0)
}

/// The broker ids of the spec, controllers left out.
fn brokers(kc: &KafkaCluster) -> Vec<i32> {
    kc.spec
        .brokers
        .iter()
        .filter(|b| b.id != 100)
        .map(|b| b.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_scale_the_cluster_up_and_down_through_cruise_control_without_losing_a_record() {
    let t0 = Instant::now();
    let phase = |what: &str| println!("[{:>6.1}s] {what}", t0.elapsed().as_secs_f64());
    let mut kc = cruise_control_cluster();
    kc.spec.alert_manager_config = Some(AlertManagerConfig {
        down_scale_limit: Some(3),
        up_scale_limit: Some(4),
        cooldown_seconds: Some(COOLDOWN_SECONDS),
        ..AlertManagerConfig::default()
    });
    let mut env = Env::start_with(kc).await;
    phase("3 brokers and a controller Ready");
    let client = env.clusters.clone().into_client();
    let rebalances: Api<KafkaRebalance> = Api::namespaced(client.clone(), NS);
    let bootstrap = format!("{CLUSTER}-all-broker.{NS}.svc.cluster.local:9092");
    create_topic(&env.runtime, &bootstrap, TOPIC, 6, 3, 2);
    create_topic(&env.runtime, &bootstrap, LOAD_TOPIC, 6, 2, 1);

    // The coordinator's alert receiver, with a bearer token from a file.
    let work = WorkDir::new("alert-scaling").expect("work dir");
    let token_file = work
        .write("token", random_hex(16).expect("a token"))
        .expect("token file");
    let receiver = Receiver::new(
        client.clone(),
        Auth::BearerFile(token_file.clone()),
        &env.registry,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the receiver");
    let receiver_addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, receiver::router(receiver)).await });

    // Alertmanager posts to it with the token, as the chart sets it up.
    let alertmanager = Alertmanager::start(&format!(
        "route:\n  receiver: stoker\n  group_by: [alertname, kafka_cr, namespace]\n  group_wait: 1s\n  group_interval: 5s\n  repeat_interval: 30s\nreceivers:\n- name: stoker\n  webhook_configs:\n  - url: http://{receiver_addr}/alerts\n    send_resolved: true\n    http_config:\n      authorization:\n        credentials_file: {}\n",
        token_file.display()
    ))
    .await
    .expect("alertmanager starts");

    // The coordinator's /metrics (its controllers, API requests and this receiver), as
    // its admin server serves them.
    let coordinator_metrics = serve_metrics(env.registry.clone()).await;

    // Prometheus scrapes every broker Pod's agent (port agent-admin), as the shipped
    // PodMonitor has it. Debian's Prometheus is built without Kubernetes service
    // discovery, so the test lists the Pods and writes them into a file_sd file.
    let sd = WorkDir::new("alert-scaling-sd").expect("work dir");
    let targets = sd.path().join("agents.json");
    write_scrape_targets(&env.pods, &targets).await;
    let discovery = tokio::spawn({
        let pods = env.pods.clone();
        let targets = targets.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                write_scrape_targets(&pods, &targets).await;
            }
        }
    });
    let prometheus = Prometheus::start(
        &format!(
            r#"global: {{scrape_interval: 5s, evaluation_interval: 5s}}
rule_files: [rules.yml, seed.yml, stoker.yml]
alerting:
  alertmanagers: [{{static_configs: [{{targets: ['{am}']}}]}}]
scrape_configs:
- job_name: stoker-agents
  file_sd_configs:
  - files: ['{targets}']
    refresh_interval: 5s
- job_name: stoker-coordinator
  static_configs: [{{targets: ['{coordinator_metrics}']}}]
"#,
            am = alertmanager.addr(),
            targets = targets.display(),
        ),
        &[
            ("rules.yml", &rules()),
            (
                "seed.yml",
                &rule_file(include_str!(
                    "../../deploy/monitoring/seed-prometheusrule.yaml"
                )),
            ),
            (
                "stoker.yml",
                &rule_file(include_str!("../../deploy/monitoring/kafka-alerts.yaml")),
            ),
        ],
    )
    .await
    .expect("prometheus starts");

    // Every broker's agent serves Kafka's JMX series with the labels the rules group by.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let v = prometheus
            .query("count by (brokerId, kafka_cr, namespace) (kafka_network_requestmetrics_requests_total)")
            .await
            .expect("query");
        let seen: Vec<String> = v["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["metric"]["brokerId"].as_str().map(str::to_owned))
            .collect();
        if seen.len() >= 4 {
            phase(&format!(
                "Prometheus scrapes Kafka's series of nodes {seen:?}"
            ));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has no kafka_network_requestmetrics_requests_total from every node: {seen:?}; targets {}",
            prometheus.targets().await.expect("targets")
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    let producer_work = WorkDir::new("alert-scaling-producer").expect("work dir");
    let mut producer = spawn_producer(&env.runtime, &bootstrap, TOPIC, 10, producer_work.path());
    tokio::time::sleep(Duration::from_secs(15)).await;
    phase(&format!(
        "idle: {:?} requests/s per broker",
        load(&prometheus).await
    ));

    // Load: BrokerOverLoaded fires, Alertmanager posts it, a broker is added and Cruise
    // Control moves partitions onto it.
    let mut load_producer = start_load(&env, &bootstrap, &producer_work);
    let loaded_at = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut last = String::new();
    let mut decided_at = None;
    let mut ready_at = None;
    let added = loop {
        let kc = env.clusters.get(CLUSTER).await.expect("get");
        let st = kc.status.clone().unwrap_or_default();
        let ids = brokers(&kc);
        let new = ids.iter().copied().find(|id| ![0, 1, 2].contains(id));
        if new.is_some() && decided_at.is_none() {
            decided_at = Some(Instant::now());
        }
        if let Some(id) = new
            && ready_at.is_none()
            && st
                .brokers_state
                .get(&id.to_string())
                .is_some_and(|b| b.ready)
        {
            ready_at = Some(Instant::now());
        }
        let op = match new {
            Some(id) => rebalances
                .get_opt(&format!("{CLUSTER}-add-{id}"))
                .await
                .expect("get"),
            None => None,
        };
        let state = op.as_ref().and_then(|o| o.status.as_ref()?.state);
        let line = format!(
            "load ~{:.0}/s; brokers {ids:?}; last alert action {:?}; add {state:?} {:?}",
            rounded(load(&prometheus).await),
            st.alerting
                .as_ref()
                .and_then(|a| a.last_action.as_ref())
                .map(|a| (&a.alert, &a.change)),
            op.as_ref().and_then(|o| o.status.as_ref()?.message.clone()),
        );
        if line != last {
            phase(&line);
            last = line;
        }
        if let Some(id) = new
            && state == Some(RebalanceState::Completed)
            && st.scaling.is_none()
        {
            break id;
        }
        assert!(
            state != Some(RebalanceState::Failed),
            "the scale-up failed: {last}"
        );
        assert!(
            Instant::now() < deadline,
            "no alert scaled the cluster up: {last}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let done_at = Instant::now();
    load_producer.terminate(Duration::from_secs(10));
    let per = replicas_per_broker(&env, &bootstrap);
    phase(&format!(
        "scaled up to broker {added}; replicas per broker {per:?}"
    ));
    assert!(
        per.get(&added).copied().unwrap_or(0) > 0,
        "the new broker holds replicas: {per:?}"
    );
    let kc = env.clusters.get(CLUSTER).await.expect("get");
    let action = kc
        .status
        .as_ref()
        .and_then(|s| s.alerting.as_ref()?.last_action.clone())
        .expect("the receiver recorded its action");
    assert_eq!(action.alert, "BrokerOverLoaded");
    assert_eq!(action.command, "upScale");
    let scaled = event_notes(&env, "AlertScaled").await;
    assert!(
        scaled.iter().any(|n| n.contains("BrokerOverLoaded")),
        "{scaled:?}"
    );
    let secs = |a: Instant, b: Instant| b.duration_since(a).as_secs_f64();
    let decided = decided_at.expect("decided");
    println!(
        "figures: load started -> alert acted {:.1} s (rule `for: {FOR}`); acted -> broker {added} Ready {:.1} s; -> rebalance done {:.1} s",
        secs(loaded_at, decided),
        secs(decided, ready_at.expect("ready")),
        secs(decided, done_at),
    );

    // Idle again: BrokerUnderLoaded fires once the cooldown is over, and a broker —
    // Cruise Control's least loaded — is drained and removed. The coordinator is killed
    // as the removal begins and again mid-drain.
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut kills = 0;
    let mut first_kill = None;
    let removed = loop {
        let kc = env.clusters.get(CLUSTER).await.expect("get");
        let st = kc.status.clone().unwrap_or_default();
        let ids = brokers(&kc);
        let gone = [0, 1, 2, added].into_iter().find(|id| !ids.contains(id));
        let removing = st
            .scaling
            .as_ref()
            .and_then(|s| s.removing.first().cloned());
        let pod = match gone {
            Some(id) => env
                .pods
                .get_opt(&format!("{CLUSTER}-{id}"))
                .await
                .expect("get"),
            None => None,
        };
        let line = format!(
            "load ~{:.0}/s; brokers {ids:?}; removing {:?}; pod {}",
            rounded(load(&prometheus).await),
            removing
                .as_ref()
                .map(|r| (r.broker, r.state, r.message.clone())),
            if pod.is_some() { "present" } else { "gone" }
        );
        if line != last {
            phase(&line);
            last = line;
        }
        if kills == 0 && removing.is_some() {
            env.kill_coordinator().await;
            kills += 1;
            first_kill = Some(Instant::now());
            phase("coordinator killed while the removal began");
        }
        if let Some(id) = gone {
            // Mid-drain: its KafkaRebalance is under way, at least 5 s after the first kill.
            let rebalance = rebalances
                .get_opt(&format!("{CLUSTER}-remove-{id}"))
                .await
                .expect("get")
                .and_then(|o| o.status?.state);
            if kills == 1
                && removing.is_some()
                && rebalance.is_some_and(|s| !s.finished())
                && first_kill.is_some_and(|t: Instant| t.elapsed() > Duration::from_secs(5))
            {
                env.kill_coordinator().await;
                kills += 1;
                phase(&format!(
                    "coordinator killed mid-drain (its KafkaRebalance {rebalance:?})"
                ));
            }
            if pod.is_none() && removing.is_none() {
                let now = replicas_per_broker(&env, &bootstrap);
                assert_eq!(
                    now.get(&id),
                    None,
                    "broker {id} was deleted while it held replicas: {now:?}"
                );
                phase(&format!("broker {id} removed; replicas per broker {now:?}"));
                break id;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no alert scaled the cluster down: {last}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    assert_eq!(kills, 2, "the coordinator was killed at both steps");
    let kc = env.clusters.get(CLUSTER).await.expect("get");
    let action = kc
        .status
        .as_ref()
        .and_then(|s| s.alerting.as_ref()?.last_action.clone())
        .expect("recorded");
    assert_eq!(action.alert, "BrokerUnderLoaded");
    assert_eq!(action.command, "downScale");
    let removed_notes = event_notes(&env, "BrokerRemoved").await;
    assert!(
        removed_notes
            .iter()
            .any(|n| n.starts_with(&format!("broker {removed} holds no replica"))),
        "{removed_notes:?}"
    );

    // The seed's own rule and the rules Stoker ships loaded and evaluate without error
    // against what the agents serve (the seed's lacks the `by (kafka_cr, namespace)` the
    // receiver needs; docs/alerts.md says so).
    let rules = stoker_testenv::http::get(prometheus.addr(), "/api/v1/rules")
        .await
        .expect("rules");
    let rules: serde_json::Value = serde_json::from_str(&rules.body).expect("rules JSON");
    for file in ["seed.yml", "stoker.yml"] {
        let loaded = rules["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| g["file"].as_str().is_some_and(|f| f.ends_with(file)))
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect::<Vec<_>>();
        assert!(!loaded.is_empty(), "{file} is loaded");
        for r in &loaded {
            assert_eq!(r["health"], "ok", "{file}: {r}");
            // What each rule compares exists: its series are there on a real cluster.
            let query = r["query"].as_str().expect("a rule's query");
            let compared = compared(query);
            let found = prometheus.query(compared).await.expect("query");
            assert!(
                found["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty()),
                "{file}: rule {} finds no series for {compared}",
                r["name"]
            );
        }
    }

    // Every panel of the shipped Grafana dashboard finds series (its variables set to
    // "All", as Grafana substitutes them).
    let dashboard: serde_json::Value = serde_json::from_str(include_str!(
        "../../deploy/monitoring/grafana-dashboard.json"
    ))
    .expect("the dashboard is JSON");
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = grafana_expr(target["expr"].as_str().expect("an expression"));
            let found = prometheus.query(&expr).await.expect("query");
            assert!(
                found["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty()),
                "dashboard panel {:?} finds no series for {expr}: {found}",
                panel["title"]
            );
            checked += 1;
        }
    }
    phase(&format!(
        "every dashboard expression ({checked}) finds series"
    ));

    // Nothing acknowledged was lost or duplicated, no send failed, and the removed
    // broker's claim is kept.
    let (acked, failed) = stop_producer(&mut producer);
    phase(&format!(
        "sends acknowledged {}, failed {failed}",
        acked.len()
    ));
    assert!(acked.len() > 2_000, "the producer ran through it all");
    assert_consumed_once(&env.runtime, &bootstrap, TOPIC, &acked);
    assert_eq!(failed, 0, "no send failed");
    let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = Api::namespaced(client, NS);
    assert!(
        pvcs.get_opt(&format!("{CLUSTER}-{removed}-storage-kafka-logs"))
            .await
            .expect("get")
            .is_some(),
        "the removed broker's PVC is kept (pvcDeletionPolicy: Retain)"
    );
    discovery.abort();
    env.stop().await;
}
