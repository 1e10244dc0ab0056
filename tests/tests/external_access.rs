//! End to end on the local Pod runtime: the example KafkaCluster with two external
//! listeners, one reached through a `LoadBalancer` Service per broker and one through
//! `NodePort` Services. The runtime serves those Services as kube-proxy and a cloud's
//! load-balancer controller would. A client that does not see the cluster's DNS names
//! (this test process: no runtime hosts file) bootstraps from the address in the
//! KafkaCluster's status, sees every broker at its external address, and produces to
//! and consumes from every partition (so through every partition leader), for each
//! listener. Removing a listener deletes its Services; a listener whose port range
//! would clash is refused with the field named while the cluster keeps serving.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Service;
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
use stoker_coordinator::crd::v1alpha1::{ExternalListener, KafkaCluster};
use support::*;

const PARTITIONS: i32 = 6;
const PER_PARTITION: usize = 50;

fn with_external_listeners(mut kc: KafkaCluster) -> KafkaCluster {
    kc.spec.listeners_config.external_listeners = Some(vec![
        ExternalListener {
            type_: "plaintext".into(),
            name: "lb".into(),
            container_port: 29095,
            external_starting_port: 19090,
            access_method: Some("LoadBalancer".into()),
            hostname_override: None,
        },
        ExternalListener {
            type_: "plaintext".into(),
            name: "np".into(),
            container_port: 29096,
            external_starting_port: 31090,
            access_method: Some("NodePort".into()),
            hostname_override: None,
        },
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
        if names.iter().all(|n| !n.contains("-np")) {
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
