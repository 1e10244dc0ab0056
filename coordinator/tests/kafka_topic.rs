//! The KafkaTopic controller against a real API server and a real Kafka cluster.

mod support;

use std::{collections::BTreeMap, time::Duration};

use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use stoker_coordinator::{
    controller::cluster_ref::BOOTSTRAP_ANNOTATION,
    crd::v1alpha1::{KafkaCluster, KafkaTopic},
    kafka_admin::{KafkaAdmin, NewTopicSpec},
};
use stoker_testenv::{KafkaCluster as TestKafka, KubeEnv, control_plane::ControlPlaneOptions};
use tokio_util::sync::CancellationToken;

use support::{ready, status_where};

const NS: &str = "topics";

fn topic(name: &str, topic: &str, partitions: i32, rf: i32, config: &[(&str, &str)]) -> KafkaTopic {
    let yaml = format!(
        "apiVersion: kafka.stoker.io/v1alpha1\nkind: KafkaTopic\nmetadata: {{name: {name}}}\nspec: {{clusterRef: {{name: kafka}}, name: {topic}, partitions: {partitions}, replicationFactor: {rf}}}\n"
    );
    let mut kt: KafkaTopic = serde_yaml::from_str(&yaml).expect("topic yaml");
    kt.spec.config = config
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect::<BTreeMap<_, _>>();
    kt
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_grown_corrected_adopted_and_refused_against_real_kafka() {
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
    let mut kafka = TestKafka::builder()
        .brokers(3)
        .controllers(1)
        .start()
        .await
        .expect("kafka");

    // The KafkaCluster resource points at the test brokers (no kubelet runs Pods here).
    let mut kc: KafkaCluster =
        serde_yaml::from_str(include_str!("../../deploy/examples/kafkacluster.yaml"))
            .expect("example");
    kc.metadata.name = Some("kafka".into());
    kc.metadata.namespace = Some(NS.into());
    kc.metadata.annotations =
        Some([(BOOTSTRAP_ANNOTATION.to_owned(), kafka.bootstrap_servers())].into());
    Api::<KafkaCluster>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &kc)
        .await
        .expect("cluster");

    let token = CancellationToken::new();
    let controller = tokio::spawn(stoker_coordinator::controller::kafka_topic::run(
        support::context(client.clone()),
        token.clone(),
    ));
    let topics: Api<KafkaTopic> = Api::namespaced(client.clone(), NS);
    let admin = KafkaAdmin::new(&kafka.bootstrap_servers());

    // Created with the spec's partitions, RF and config; status says what Kafka has.
    topics
        .create(
            &PostParams::default(),
            &topic("orders", "orders", 3, 3, &[("retention.ms", "3600000")]),
        )
        .await
        .expect("create");
    let st = status_where(&topics, "orders", "Ready", |s| {
        ready(s).is_some_and(|r| r.0 == "True")
    })
    .await;
    assert_eq!((st.partitions, st.replication_factor), (Some(3), Some(3)));
    assert!(st.topic_id.as_ref().is_some_and(|id| id.len() > 10));
    assert_eq!(
        st.config.get("retention.ms").map(String::as_str),
        Some("3600000")
    );

    // More partitions; config drift made outside is corrected; a removed key returns to the default.
    let patch = serde_json::json!({"spec": {"partitions": 5, "config": {"retention.ms": "3600000", "segment.ms": "600000"}}});
    topics
        .patch("orders", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    status_where(&topics, "orders", "5 partitions", |s| {
        s.partitions == Some(5) && s.config.contains_key("segment.ms")
    })
    .await;
    admin
        .alter_topic_config(
            "orders",
            &[("retention.ms".to_owned(), "1000".to_owned())].into(),
            &[],
            false,
        )
        .await
        .expect("drift");
    admin
        .alter_topic_config(
            "orders",
            &[("max.message.bytes".to_owned(), "2000000".to_owned())].into(),
            &[],
            false,
        )
        .await
        .expect("unmanaged key");
    let patch =
        serde_json::json!({"spec": {"config": {"retention.ms": "3600000", "segment.ms": null}}});
    topics
        .patch("orders", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let live = admin.topic_configs("orders").await.expect("configs");
        let ok = live["retention.ms"].value.as_deref() == Some("3600000")
            && live["segment.ms"].is_default
            && live["max.message.bytes"].value.as_deref() == Some("2000000");
        if ok {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "drift not corrected: {live:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Refusals change nothing and say why.
    let patch = serde_json::json!({"spec": {"partitions": 2}});
    topics
        .patch("orders", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    let st = status_where(&topics, "orders", "PartitionDecrease", |s| {
        ready(s).is_some_and(|r| r.1 == "PartitionDecrease")
    })
    .await;
    assert!(
        ready(&st)
            .expect("Ready")
            .2
            .contains("cannot remove partitions")
    );
    assert_eq!(
        admin
            .describe_topic("orders")
            .await
            .expect("describe")
            .1
            .expect("topic")
            .partitions,
        5
    );
    let patch = serde_json::json!({"spec": {"partitions": 5, "replicationFactor": 2}});
    topics
        .patch("orders", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    status_where(&topics, "orders", "ReplicationFactorChange", |s| {
        ready(s).is_some_and(|r| r.1 == "ReplicationFactorChange")
    })
    .await;

    // Created together (one admin batch), an invalid config value fails its own topic
    // only: Kafka checks each topic before creating it, so nothing of it is created,
    // and the others are created beside it.
    let batch = [
        topic("batch-a", "batch-a", 1, 1, &[]),
        topic(
            "bad-config",
            "bad-config",
            1,
            1,
            &[("cleanup.policy", "sometimes")],
        ),
        topic("batch-b", "batch-b", 2, 1, &[]),
    ];
    let pp = PostParams::default();
    futures::future::join_all(batch.iter().map(|t| topics.create(&pp, t)))
        .await
        .into_iter()
        .for_each(|r| {
            r.expect("create");
        });
    for name in ["batch-a", "batch-b"] {
        status_where(&topics, name, "Ready beside a bad topic", |s| {
            ready(s).is_some_and(|r| r.0 == "True")
        })
        .await;
    }
    let st = status_where(&topics, "bad-config", "InvalidTopic", |s| {
        ready(s).is_some_and(|r| r.1 == "InvalidTopic")
    })
    .await;
    assert!(
        ready(&st).expect("Ready").2.contains("Kafka refused"),
        "{:?}",
        ready(&st)
    );
    assert!(
        admin
            .describe_topic("bad-config")
            .await
            .expect("describe")
            .1
            .is_none()
    );

    // A topic created outside Stoker: a conflict until the resource asks to adopt it.
    admin
        .create_topic(NewTopicSpec {
            name: "legacy".into(),
            partitions: 2,
            replication_factor: 3,
            config: BTreeMap::new(),
        })
        .await
        .expect("external topic");
    topics
        .create(
            &PostParams::default(),
            &topic("legacy", "legacy", 2, 3, &[]),
        )
        .await
        .expect("create");
    status_where(&topics, "legacy", "TopicExists", |s| {
        ready(s).is_some_and(|r| r.1 == "TopicExists")
    })
    .await;
    let patch = serde_json::json!({"metadata": {"annotations": {"kafka.stoker.io/adopt": "true"}}});
    topics
        .patch("legacy", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate");
    status_where(&topics, "legacy", "adopted", |s| {
        ready(s).is_some_and(|r| r.0 == "True")
    })
    .await;

    // Two resources for one topic: the later one is marked.
    tokio::time::sleep(Duration::from_secs(1)).await;
    topics
        .create(
            &PostParams::default(),
            &topic("orders-again", "orders", 5, 3, &[]),
        )
        .await
        .expect("create");
    let st = status_where(&topics, "orders-again", "TopicConflict", |s| {
        ready(s).is_some_and(|r| r.1 == "TopicConflict")
    })
    .await;
    assert!(
        ready(&st).expect("Ready").2.contains("topics/orders"),
        "{:?}",
        ready(&st)
    );

    // A missing cluster is named.
    let mut lost = topic("lost", "lost", 1, 1, &[]);
    lost.spec.cluster_ref.name = "nowhere".into();
    topics
        .create(&PostParams::default(), &lost)
        .await
        .expect("create");
    status_where(&topics, "lost", "ClusterNotFound", |s| {
        ready(s).is_some_and(|r| r.1 == "ClusterNotFound" && r.2.contains("nowhere"))
    })
    .await;

    // Fewer live brokers than the RF: it waits and says so, then is created once they are back.
    kafka
        .stop_node(3, Duration::from_secs(60))
        .expect("stop broker 3");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while admin
        .describe_topic("probe")
        .await
        .map(|(b, _)| b)
        .unwrap_or(3)
        > 2
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "broker 3 never left the metadata"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    topics
        .create(&PostParams::default(), &topic("wide", "wide", 1, 3, &[]))
        .await
        .expect("create");
    let st = status_where(&topics, "wide", "NotEnoughBrokers", |s| {
        ready(s).is_some_and(|r| r.1 == "NotEnoughBrokers")
    })
    .await;
    assert!(
        ready(&st).expect("Ready").2.contains("2 live broker(s)"),
        "{:?}",
        ready(&st)
    );
    kafka.restart_node(3).expect("restart broker 3");
    status_where(&topics, "wide", "created once brokers are back", |s| {
        ready(s).is_some_and(|r| r.0 == "True")
    })
    .await;

    // Deletion: Retain keeps the Kafka topic (the default), Delete removes it.
    topics
        .delete("legacy", &Default::default())
        .await
        .expect("delete");
    let patch = serde_json::json!({"spec": {"deletionPolicy": "Delete", "replicationFactor": 3, "partitions": 5}});
    topics
        .patch("orders", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    // The Delete policy brings the finalizer before the new generation is reconciled.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let t = topics.get("orders").await.expect("get");
        let observed = t.status.as_ref().and_then(|s| s.observed_generation);
        if observed == t.metadata.generation
            && t.status
                .as_ref()
                .and_then(ready)
                .is_some_and(|r| r.0 == "True")
        {
            assert!(
                t.metadata
                    .finalizers
                    .unwrap_or_default()
                    .contains(&"kafkatopics.kafka.stoker.io/cleanup".to_owned()),
                "a Delete topic carries the finalizer"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "orders never reconciled its Delete policy"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    topics
        .delete("orders", &Default::default())
        .await
        .expect("delete");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while admin
        .describe_topic("orders")
        .await
        .expect("describe")
        .1
        .is_some()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "orders was not deleted from Kafka"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        admin
            .describe_topic("legacy")
            .await
            .expect("describe")
            .1
            .is_some(),
        "Retain keeps the topic"
    );

    // The admin calls themselves: a topic already gone counts as deleted; fewer
    // partitions are refused with Kafka's code and message, and nothing changes.
    admin
        .delete_topic("orders")
        .await
        .expect("deleting a topic that is gone is not an error");
    let refusal = admin
        .create_partitions("legacy", 1)
        .await
        .expect_err("fewer partitions are refused");
    assert_eq!(
        refusal.kafka_error(),
        Some(stoker_kafka::kafka_protocol::ResponseError::InvalidPartitions),
        "{refusal}"
    );
    assert!(!refusal.is_retriable(), "{refusal}");
    assert_eq!(
        admin
            .describe_topic("legacy")
            .await
            .expect("describe")
            .1
            .expect("legacy")
            .partitions,
        2
    );

    token.cancel();
    let _ = controller.await;
}
