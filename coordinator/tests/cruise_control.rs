//! The Cruise Control client and the KafkaRebalance controller against the real Cruise
//! Control 2.5.146 and real brokers (with its metrics reporter): until CC has sampled
//! enough it answers "not ready" (never a failure); `remove_broker` moves every replica
//! off a broker for real (`dryrun=false`); the task is followed through `user_tasks`
//! and the executor; a KafkaRebalance with a replication throttle moves them back.
//! (A task Cruise Control loses when it is killed mid-task is tested end to end, on the
//! local Pod runtime: `tests/tests/scaling.rs`.)

mod support;

use std::{collections::BTreeMap, time::Duration};

use kube::{Api, api::PostParams};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    producer::{FutureProducer, FutureRecord},
};
use stoker_coordinator::{
    controller::kafka_cluster::build::cruise_control::default_properties,
    crd::v1alpha1::{KafkaCluster, KafkaRebalance, RebalanceState},
    cruise_control::{
        CcError, CruiseControl as Client, MoveOptions, Operation, Pool, Submitted,
        types::TaskStatus,
    },
};
use stoker_testenv::{
    CruiseControl, CruiseControlFiles, KafkaCluster as TestKafka, KubeEnv,
    control_plane::ControlPlaneOptions,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const NS: &str = "balancing";

/// Fast windows for a test: 10 s samples, two windows (Cruise Control's README: the
/// metadata refresh and the reporters' interval must not be longer).
fn fast_properties(bootstrap: &str) -> String {
    let mut p = default_properties(3);
    for (k, v) in [
        ("bootstrap.servers", bootstrap),
        ("metric.sampling.interval.ms", "10000"),
        ("partition.metrics.window.ms", "10000"),
        ("num.partition.metrics.windows", "2"),
        ("min.samples.per.partition.metrics.window", "1"),
        ("broker.metrics.window.ms", "10000"),
        ("num.broker.metrics.windows", "2"),
        ("min.samples.per.broker.metrics.window", "1"),
        ("metadata.max.age.ms", "10000"),
        (
            "cruise.control.metrics.reporter.metrics.reporting.interval.ms",
            "10000",
        ),
        ("execution.progress.check.interval.ms", "5000"),
        ("anomaly.detection.interval.ms", "60000"),
    ] {
        p.insert(k.to_owned(), v.to_owned());
    }
    p.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

/// Replica counts per broker, from the brokers' metadata.
async fn replicas_per_broker(kafka: &TestKafka) -> BTreeMap<i32, usize> {
    let md = kafka.metadata(None).await.expect("metadata");
    let mut out = BTreeMap::new();
    for t in md.topics() {
        for p in t.partitions() {
            for r in p.replicas() {
                *out.entry(*r).or_default() += 1;
            }
        }
    }
    out
}

/// Submits `op` until Cruise Control takes it; every refusal on the way must be a
/// "wait" (still sampling, busy), never a failure of the request.
async fn submit_when_ready(cc: &Client, op: &Operation) -> String {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        match cc.submit(op, &MoveOptions::default(), None).await {
            Ok(Submitted::Started { task_id, .. } | Submitted::Pending { task_id, .. }) => {
                return task_id;
            }
            Err(e @ (CcError::NotReady { .. } | CcError::Busy { .. })) => {
                assert!(
                    Instant::now() < deadline,
                    "Cruise Control never got ready: {e}"
                );
            }
            Err(e) => panic!("{} was refused: {e}", op.describe()),
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cruise_control_drains_a_broker_and_a_throttled_rebalance_moves_replicas_back() {
    let t0 = Instant::now();
    let phase = |what: &str| println!("[{:>6.1}s] {what}", t0.elapsed().as_secs_f64());
    let kafka = TestKafka::builder()
        .brokers(3)
        .controllers(1)
        .with_cruise_control_reporter()
        .start()
        .await
        .expect("kafka");
    let admin: AdminClient<DefaultClientContext> = kafka.client_config().create().expect("admin");
    let topics = [NewTopic::new("orders", 6, TopicReplication::Fixed(2))];
    for r in admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .expect("create topics")
    {
        r.expect("topic created");
    }
    // 16 MB, so that moving replicas under a throttle takes a while.
    let producer: FutureProducer = kafka
        .client_config()
        .set("linger.ms", "20")
        .create()
        .expect("producer");
    let value = vec![b'x'; 1024];
    let sends: Vec<_> = (0..16_000)
        .map(|i| {
            let key = i.to_string();
            let value = value.clone();
            let producer = producer.clone();
            async move {
                producer
                    .send(
                        FutureRecord::to("orders").key(&key).payload(&value),
                        Duration::from_secs(30),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| e)
            }
        })
        .collect();
    for r in futures::future::join_all(sends).await {
        r.expect("record sent");
    }
    let cc = CruiseControl::start(&CruiseControlFiles {
        properties: fast_properties(&kafka.bootstrap_servers()),
        capacity:
            stoker_coordinator::controller::kafka_cluster::build::cruise_control::DEFAULT_CAPACITY
                .into(),
        cluster_configs: "{}".into(),
    })
    .await
    .expect("cruise control");
    phase("cruise control answers");
    let client = Client::new(&cc.url()).expect("a client");
    let state = client.state().await.expect("state");
    assert!(!state.monitor.state.is_empty(), "{state:?}");

    // Callers share one /state request (each is a user task of CC's, which runs few).
    let state_tasks = |tasks: Vec<stoker_coordinator::cruise_control::types::UserTask>| {
        tasks
            .iter()
            .filter(|t| t.request_url.contains("/state"))
            .count()
    };
    let before = state_tasks(client.user_tasks().await.expect("user_tasks"));
    let pool = Pool::default();
    let since = std::time::Instant::now();
    let url = cc.url();
    let answers =
        futures::future::join_all((0..8).map(|_| pool.state(&url, since, Duration::from_secs(30))))
            .await;
    for a in answers {
        let s = a.expect("a shared /state answer");
        assert!(!s.executor.state.is_empty(), "{s:?}");
    }
    pool.state(&url, since, Duration::from_secs(30))
        .await
        .expect("a recent enough answer is reused");
    let after = state_tasks(client.user_tasks().await.expect("user_tasks"));
    assert_eq!(
        after - before,
        1,
        "nine callers asked Cruise Control for /state once"
    );

    // remove_broker for real: every replica leaves broker 3.
    assert!(
        replicas_per_broker(&kafka)
            .await
            .get(&3)
            .copied()
            .unwrap_or(0)
            > 0
    );
    let task = submit_when_ready(&client, &Operation::RemoveBrokers(vec![3])).await;
    phase("remove_broker accepted");
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let t = client.user_task(&task).await.expect("user_tasks");
        let t = t.expect("Cruise Control knows its task while it runs");
        assert_ne!(t.status, TaskStatus::CompletedWithError, "{t:?}");
        // A completed task counts once the executor is idle (it can flip back).
        if t.status == TaskStatus::Completed {
            match client.state().await {
                Ok(s) if s.executor.idle() => break,
                Ok(_) | Err(CcError::Busy { .. } | CcError::NotReady { .. }) => {}
                Err(e) => panic!("state: {e}"),
            }
        }
        assert!(
            Instant::now() < deadline,
            "remove_broker never finished: {t:?}\n{}",
            cc.log_tail()
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    phase("remove_broker completed");
    let after = replicas_per_broker(&kafka).await;
    assert_eq!(after.get(&3), None, "broker 3 holds no replica: {after:?}");

    // The KafkaRebalance controller moves them back, under a replication throttle.
    let KubeEnv {
        plane: _plane,
        client: kube,
    } = KubeEnv::start_with(
        ControlPlaneOptions {
            controller_manager: false,
        },
        &[NS],
    )
    .await
    .expect("control plane with CRDs");
    let mut kc: KafkaCluster =
        serde_yaml::from_str(include_str!("../../deploy/examples/kafkacluster.yaml"))
            .expect("example");
    kc.metadata.name = Some("kafka".into());
    kc.metadata.namespace = Some(NS.into());
    kc.spec.cruise_control_config = Some(stoker_coordinator::crd::v1alpha1::CruiseControlConfig {
        cruise_control_endpoint: Some(cc.addr().to_string()),
        ..Default::default()
    });
    Api::<KafkaCluster>::namespaced(kube.clone(), NS)
        .create(&PostParams::default(), &kc)
        .await
        .expect("cluster");
    let token = CancellationToken::new();
    let controller = tokio::spawn(stoker_coordinator::controller::kafka_rebalance::run(
        support::context(kube.clone()),
        token.clone(),
    ));
    let rebalances: Api<KafkaRebalance> = Api::namespaced(kube.clone(), NS);
    // One batch: under a throttle Cruise Control spends about 10 s per broker after
    // every batch confirming the throttle's removal, so 5 movements a batch (its
    // default) would take the ~45 moves here past five minutes.
    let kr: KafkaRebalance = serde_yaml::from_str(
        "apiVersion: kafka.stoker.io/v1alpha1\nkind: KafkaRebalance\nmetadata: {name: add-3}\nspec: {clusterRef: {name: kafka}, mode: AddBrokers, brokers: [3], replicationThrottle: 400000, concurrentPartitionMovementsPerBroker: 60}\n",
    )
    .expect("yaml");
    rebalances
        .create(&PostParams::default(), &kr)
        .await
        .expect("rebalance");
    let running = support::status_within(
        &rebalances,
        "add-3",
        "Running with a task",
        Duration::from_secs(240),
        |s| s.state == Some(RebalanceState::Running) && s.task_id.is_some(),
    )
    .await;
    let first_task = running.task_id.clone().expect("a task id");
    assert!(
        running
            .request
            .as_deref()
            .is_some_and(|r| r.contains("dryrun=false")),
        "{running:?}"
    );
    assert!(
        running
            .request
            .as_deref()
            .is_some_and(|r| r.contains("replication_throttle=400000")),
        "the throttle is asked of Cruise Control: {running:?}"
    );
    phase("the rebalance runs");
    let done = support::status_within(
        &rebalances,
        "add-3",
        "Completed",
        Duration::from_secs(300),
        |s| s.state == Some(RebalanceState::Completed),
    )
    .await;
    phase("the rebalance completed");
    assert_eq!(done.task_id.as_deref(), Some(first_task.as_str()));
    assert!(
        done.progress.is_some() || done.proposal.is_some(),
        "what moved is recorded: {done:?}"
    );
    let back = replicas_per_broker(&kafka).await;
    assert!(
        back.get(&3).copied().unwrap_or(0) > 0,
        "replicas moved onto broker 3: {back:?}"
    );
    token.cancel();
    let _ = controller.await;
}
