//! End to end on the local Pod runtime: the example KafkaCluster with two external
//! listeners, one reached through a `LoadBalancer` Service per broker and one through
//! `NodePort` Services. The runtime serves those Services as kube-proxy and a cloud's
//! load-balancer controller would. A client that does not see the cluster's DNS names
//! (this test process: no runtime hosts file) bootstraps from the address in the
//! KafkaCluster's status, sees every broker at its external address, and produces to
//! and consumes from every partition (so through every partition leader), for each
//! listener. A listener whose load balancer gets no address is reported as waiting
//! for it while the brokers keep serving, none restarted; removing a listener deletes
//! its Services; a listener whose port range would clash is refused with the field
//! named while the cluster keeps serving.
//!
//! The single-load-balancer model (`ingressController: haproxy`, the seed's Envoy
//! model with HAProxy): one load balancer in front of a real HAProxy that routes each
//! broker's port to it; a broker added is routed to (the proxy reloads, nothing else
//! restarts, an established connection through the proxy survives the reload) and a
//! broker removed is no longer.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams},
};
use rdkafka::{
    ClientConfig, Message,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    producer::{FutureProducer, FutureRecord},
};
use stoker_coordinator::crd::v1alpha1::KafkaCluster;
use support::*;

const PARTITIONS: i32 = 6;
const PER_PARTITION: usize = 50;

fn with_external_listeners(mut kc: KafkaCluster) -> KafkaCluster {
    kc.spec.listeners_config.external_listeners = Some(vec![
        external_listener("lb", 29095, 19090, Some("LoadBalancer")),
        external_listener("np", 29096, 31090, Some("NodePort")),
    ]);
    kc
}

/// The addresses the status gives for listener `name`, by entry name.
async fn addresses(clusters: &Api<KafkaCluster>, name: &str) -> BTreeMap<String, String> {
    let kc = clusters.get(CLUSTER).await.expect("the cluster");
    kc.status
        .and_then(|s| s.listener_statuses)
        .and_then(|l| l.external_listeners.get(name).cloned())
        .unwrap_or_default()
        .into_iter()
        .map(|a| (a.name, a.address))
        .collect()
}

fn config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4");
    c
}

/// Through listener `name` from outside: the brokers it advertises, then a topic with
/// a record batch on every partition, produced and consumed back.
async fn round_trip(bootstrap: &str, name: &str, brokers: &BTreeSet<String>) -> Duration {
    let started = Instant::now();
    let admin: AdminClient<DefaultClientContext> =
        config(bootstrap).create().expect("admin client");
    let topic = format!("outside-{name}");
    let created = admin
        .create_topics(
            [&NewTopic::new(
                &topic,
                PARTITIONS,
                TopicReplication::Fixed(3),
            )],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create topic through the external listener");
    assert!(created.iter().all(Result::is_ok), "{created:?}");

    // Every broker is seen at its external address, and nothing else.
    let probe: BaseConsumer = config(bootstrap).create().expect("metadata client");
    let md = probe
        .fetch_metadata(Some(&topic), Duration::from_secs(30))
        .expect("metadata through the external listener");
    let seen: BTreeSet<String> = md
        .brokers()
        .iter()
        .map(|b| format!("{}:{}", b.host(), b.port()))
        .collect();
    assert_eq!(
        &seen, brokers,
        "listener {name} advertises its external addresses"
    );

    let producer: FutureProducer = config(bootstrap)
        .set("acks", "all")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    for p in 0..PARTITIONS {
        for i in 0..PER_PARTITION {
            let payload = format!("{name}-{p}-{i}");
            producer
                .send(
                    FutureRecord::<(), _>::to(&topic)
                        .partition(p)
                        .payload(&payload),
                    Duration::from_secs(60),
                )
                .await
                .unwrap_or_else(|(e, _)| panic!("send to partition {p} via {name}: {e}"));
        }
    }

    let consumer: BaseConsumer = config(bootstrap)
        .set("group.id", format!("outside-{name}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut per_partition: BTreeMap<i32, usize> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while per_partition.values().sum::<usize>() < PER_PARTITION * PARTITIONS as usize {
        assert!(
            Instant::now() < deadline,
            "consumed via {name} only {per_partition:?} within 120 s"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(500)) {
            let m = m.expect("a record");
            *per_partition.entry(m.partition()).or_default() += 1;
        }
    }
    assert_eq!(
        per_partition,
        (0..PARTITIONS).map(|p| (p, PER_PARTITION)).collect(),
        "every record of every partition, once, via {name}"
    );
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_outside_reach_every_broker_through_load_balancers_and_node_ports() {
    let env = Env::start_with(with_external_listeners(example_cluster())).await;
    let services: Api<Service> = Api::namespaced(env.clusters.clone().into_client(), NS);

    for (name, kind) in [("lb", "LoadBalancer"), ("np", "NodePort")] {
        let addrs = addresses(&env.clusters, name).await;
        let bootstrap = addrs
            .get("any-broker")
            .unwrap_or_else(|| panic!("listener {name} has a bootstrap address: {addrs:?}"))
            .clone();
        let brokers: BTreeSet<String> = addrs
            .iter()
            .filter(|(k, _)| k.starts_with("broker-"))
            .map(|(_, v)| v.clone())
            .collect();
        assert_eq!(
            addrs.keys().filter(|k| k.starts_with("broker-")).count(),
            3,
            "brokers 0-2 (node 100 is a controller only): {addrs:?}"
        );
        for id in [0, 1, 2] {
            let svc = services
                .get(&format!("{CLUSTER}-{id}-{name}"))
                .await
                .expect("a Service per broker");
            assert_eq!(
                svc.spec.and_then(|s| s.type_).as_deref(),
                Some(kind),
                "broker {id}'s {name} Service"
            );
        }
        let took = round_trip(&bootstrap, name, &brokers).await;
        println!(
            "FIGURE external_{name}_round_trip_s={:.1} ({} records, {PARTITIONS} partitions)",
            took.as_secs_f64(),
            PER_PARTITION * PARTITIONS as usize
        );
    }
    let kc = env.clusters.get(CLUSTER).await.expect("cluster");
    let cond = kc
        .status
        .as_ref()
        .and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == "ExternalAccessPending")
        })
        .expect("the ExternalAccessPending condition");
    assert_eq!(cond.status, "False", "{}", cond.message);

    // A load balancer that gets no address (the cloud has none to give): the status
    // says which Service each broker waits for; running brokers keep serving as they
    // are (no restart), since Kafka takes advertised addresses only at start.
    let pods_before = broker_uids(
        &env.pods
            .list(&Default::default())
            .await
            .expect("pods")
            .items,
    );
    env.runtime.hold_load_balancers(true);
    let late = serde_json::json!({"spec": {"listenersConfig": {"externalListeners": [
        {"type": "plaintext", "name": "lb", "containerPort": 29095, "externalStartingPort": 19090},
        {"type": "plaintext", "name": "np", "containerPort": 29096, "externalStartingPort": 31090,
         "accessMethod": "NodePort"},
        {"type": "plaintext", "name": "late", "containerPort": 29097, "externalStartingPort": 19190},
    ]}}});
    env.clusters
        .patch(CLUSTER, &PatchParams::default(), &Patch::Merge(&late))
        .await
        .expect("patch");
    let waiting = wait_condition(
        &env.clusters,
        "ExternalAccessPending",
        &["Service kf-kafka-0-late (listener late) has no load-balancer address yet"],
    )
    .await;
    println!("waiting: {waiting}");
    let probe: BaseConsumer = config(&addresses(&env.clusters, "lb").await["any-broker"])
        .create()
        .expect("client");
    probe
        .fetch_metadata(None, Duration::from_secs(30))
        .expect("the brokers keep serving their other listeners");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        broker_uids(
            &env.pods
                .list(&Default::default())
                .await
                .expect("pods")
                .items
        ),
        pods_before,
        "no broker restarted for a listener without an address"
    );

    // A listener whose ports would clash with the other's is refused, naming the
    // field; the cluster keeps serving.
    let clash = serde_json::json!({"spec": {"listenersConfig": {"externalListeners": [
        {"type": "plaintext", "name": "lb", "containerPort": 29095, "externalStartingPort": 19090},
        {"type": "plaintext", "name": "np", "containerPort": 29096, "externalStartingPort": 19091,
         "accessMethod": "NodePort"},
    ]}}});
    env.clusters
        .patch(CLUSTER, &PatchParams::default(), &Patch::Merge(&clash))
        .await
        .expect("patch");
    let message = wait_condition(&env.clusters, "Invalid", &["externalStartingPort 19091"]).await;
    assert!(message.contains("externalListeners[1]"), "{message}");

    // Node ports outside the API server's range: the API server refuses the Service,
    // and the condition quotes it.
    let low = serde_json::json!({"spec": {"listenersConfig": {"externalListeners": [
        {"type": "plaintext", "name": "lb", "containerPort": 29095, "externalStartingPort": 19090},
        {"type": "plaintext", "name": "np", "containerPort": 29096, "externalStartingPort": 1090,
         "accessMethod": "NodePort"},
    ]}}});
    env.clusters
        .patch(CLUSTER, &PatchParams::default(), &Patch::Merge(&low))
        .await
        .expect("patch");
    let message = wait_condition(&env.clusters, "Invalid", &["-np", "1090"]).await;
    println!("refused: {message}");
    let lb = addresses(&env.clusters, "lb").await;
    let probe: BaseConsumer = config(&lb["any-broker"]).create().expect("client");
    probe
        .fetch_metadata(None, Duration::from_secs(30))
        .expect("the cluster still serves its external listener");

    // The NodePort listener removed: its Services go, the load balancers stay.
    let only_lb = serde_json::json!({"spec": {"listenersConfig": {"externalListeners": [
        {"type": "plaintext", "name": "lb", "containerPort": 29095, "externalStartingPort": 19090},
    ]}}});
    env.clusters
        .patch(CLUSTER, &PatchParams::default(), &Patch::Merge(&only_lb))
        .await
        .expect("patch");
    let started = Instant::now();
    loop {
        let names: BTreeSet<String> = services
            .list(&ListParams::default().labels("kafka.stoker.io/listener"))
            .await
            .expect("list")
            .items
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .collect();
        if names
            .iter()
            .all(|n| !n.contains("-np") && !n.contains("-late"))
        {
            assert_eq!(names.len(), 4, "the lb listener's Services stay: {names:?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the np listener's Services are still there: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    env.stop().await;
}

/// Waits until `check` holds (polling every 500 ms), failing after `limit` with `what`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(()) => return,
            Err(last) => assert!(
                started.elapsed() < limit,
                "{what} not within {limit:?}: {last}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Kafka's ApiVersions request (v0) on an open connection: the answer carries the
/// correlation id, so it proves this very connection still reaches a broker.
fn api_versions(conn: &mut std::net::TcpStream, correlation: i32) -> Result<(), String> {
    use std::io::{Read, Write};
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut request = vec![0, 0, 0, 10, 0, 18, 0, 0];
    request.extend(correlation.to_be_bytes());
    request.extend([0xff, 0xff]);
    conn.write_all(&request).map_err(|e| e.to_string())?;
    let mut head = [0u8; 8];
    conn.read_exact(&mut head).map_err(|e| e.to_string())?;
    let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let mut rest = vec![0u8; size.saturating_sub(4)];
    conn.read_exact(&mut rest).map_err(|e| e.to_string())?;
    let got = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    if got == correlation {
        Ok(())
    } else {
        Err(format!(
            "answer for correlation id {got}, asked {correlation}"
        ))
    }
}

/// The proxy's configuration as the coordinator last wrote it.
async fn proxy_config(config_maps: &Api<ConfigMap>) -> String {
    config_maps
        .get(&format!("{CLUSTER}-edge-haproxy"))
        .await
        .ok()
        .and_then(|c| c.data)
        .and_then(|d| d.get("haproxy.cfg").cloned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_load_balancer_in_front_of_haproxy_routes_every_broker_and_follows_scaling() {
    let mut kc = example_cluster();
    kc.spec.cruise_control_config = None;
    kc.spec.ingress_controller = Some("haproxy".into());
    kc.spec.listeners_config.external_listeners =
        Some(vec![external_listener("edge", 29097, 19190, None)]);
    let env = Env::start_with(kc).await;
    let client = env.clusters.clone().into_client();
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);

    // One load balancer, no per-broker Service.
    let svc = services
        .get(&format!("{CLUSTER}-edge-bootstrap"))
        .await
        .expect("the listener's load balancer");
    let lb_ip = svc
        .status
        .and_then(|s| s.load_balancer)
        .and_then(|l| l.ingress)
        .and_then(|i| i.first().and_then(|i| i.ip.clone()))
        .expect("the load balancer has an address");
    for id in [0, 1, 2] {
        assert!(
            services.get(&format!("{CLUSTER}-{id}-edge")).await.is_err(),
            "no per-broker Service behind the proxy"
        );
    }
    eventually(Duration::from_secs(60), "the proxy serving", || {
        let clusters = env.clusters.clone();
        async move {
            let addrs = addresses(&clusters, "edge").await;
            let bootstrap = addrs.get("any-broker").ok_or("no bootstrap address")?;
            std::net::TcpStream::connect(bootstrap)
                .map(|_| ())
                .map_err(|e| format!("{bootstrap}: {e}"))
        }
    })
    .await;
    let addrs = addresses(&env.clusters, "edge").await;
    let brokers: BTreeSet<String> = [0, 1, 2]
        .iter()
        .map(|id| format!("{lb_ip}:{}", 19190 + id))
        .collect();
    let bootstrap = addrs["any-broker"].clone();
    assert_eq!(bootstrap, format!("{lb_ip}:29097"));
    let took = round_trip(&bootstrap, "edge", &brokers).await;
    println!(
        "FIGURE external_proxy_round_trip_s={:.1} ({} records, {PARTITIONS} partitions)",
        took.as_secs_f64(),
        PER_PARTITION * PARTITIONS as usize
    );

    // Broker 3 added: routed to once the proxy reloads; no other Pod restarted; a
    // connection established through the proxy before the reload still works after.
    let before = broker_uids(&pods.list(&Default::default()).await.expect("pods").items);
    let mut held = std::net::TcpStream::connect(format!("{lb_ip}:19190"))
        .expect("a connection to broker 0 through the proxy");
    api_versions(&mut held, 1).expect("broker 0 answers before the reload");
    let current = env.clusters.get(CLUSTER).await.expect("cluster");
    let mut entries = current.spec.brokers.clone();
    let mut added = entries[0].clone();
    added.id = 3;
    entries.push(added);
    env.clusters
        .patch(
            CLUSTER,
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"spec": {"brokers": entries}})),
        )
        .await
        .expect("add broker 3");
    let started = Instant::now();
    let with_3: BTreeSet<String> = brokers
        .iter()
        .cloned()
        .chain([format!("{lb_ip}:19193")])
        .collect();
    eventually(
        Duration::from_secs(180),
        "broker 3 reachable through the proxy",
        || {
            let with_3 = &with_3;
            let bootstrap = &bootstrap;
            async move {
                let probe: BaseConsumer = config(bootstrap).create().map_err(|e| e.to_string())?;
                let md = probe
                    .fetch_metadata(None, Duration::from_secs(5))
                    .map_err(|e| e.to_string())?;
                let seen: BTreeSet<String> = md
                    .brokers()
                    .iter()
                    .map(|b| format!("{}:{}", b.host(), b.port()))
                    .collect();
                if &seen != with_3 {
                    return Err(format!("brokers seen: {seen:?}"));
                }
                std::net::TcpStream::connect(format!(
                    "{}:19193",
                    bootstrap.split(':').next().unwrap_or_default()
                ))
                .map(|_| ())
                .map_err(|e| format!("broker 3's port: {e}"))
            }
        },
    )
    .await;
    println!(
        "FIGURE external_proxy_broker_added_reachable_s={:.1}",
        started.elapsed().as_secs_f64()
    );
    let proxies = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=external-proxy"))
        .await
        .expect("proxy Pods")
        .items;
    assert_eq!(proxies.len(), 1, "one proxy, never replaced");
    let proxy = proxies[0].metadata.name.clone().unwrap_or_default();
    let log = std::fs::read_to_string(env.runtime.container_log(NS, &proxy, "haproxy"))
        .unwrap_or_default();
    assert!(
        log.contains("configuration changed: reloading"),
        "the proxy reloaded its configuration:\n{log}"
    );
    api_versions(&mut held, 2).expect("the connection established before the reload still answers");
    let admin: AdminClient<DefaultClientContext> = config(&bootstrap).create().expect("admin");
    let on_3 = NewTopic::new("on-broker-3", 1, TopicReplication::Variable(&[&[3]]));
    let created = admin
        .create_topics([&on_3], &AdminOptions::new())
        .await
        .expect("create a topic on broker 3");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let producer: FutureProducer = config(&bootstrap)
        .set("acks", "all")
        .create()
        .expect("producer");
    producer
        .send(
            FutureRecord::<(), _>::to("on-broker-3").payload("through the proxy to broker 3"),
            Duration::from_secs(60),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("a record to broker 3's partition, through the proxy");
    let after = broker_uids(&pods.list(&Default::default()).await.expect("pods").items);
    for (pod, uid) in &before {
        assert_eq!(after.get(pod), Some(uid), "{pod} was not restarted");
    }

    // Broker 3 removed (its topic deleted first, so it holds nothing): no longer routed.
    let deleted = admin
        .delete_topics(&["on-broker-3"], &AdminOptions::new())
        .await
        .expect("delete the topic");
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    keep_brokers(&env.clusters, &[0, 1, 2, 100]).await;
    eventually(
        Duration::from_secs(180),
        "broker 3 gone from the proxy",
        || {
            let config_maps = config_maps.clone();
            let services = services.clone();
            async move {
                let cfg = proxy_config(&config_maps).await;
                if cfg.contains("broker-3") {
                    return Err("the proxy configuration still routes broker 3".into());
                }
                let ports: Vec<i32> = services
                    .get(&format!("{CLUSTER}-edge-bootstrap"))
                    .await
                    .map_err(|e| e.to_string())?
                    .spec
                    .and_then(|s| s.ports)
                    .unwrap_or_default()
                    .iter()
                    .map(|p| p.port)
                    .collect();
                if ports.contains(&19193) {
                    return Err(format!(
                        "the load balancer still has broker 3's port: {ports:?}"
                    ));
                }
                Ok(())
            }
        },
    )
    .await;
    env.stop().await;
}
