//! End to end on the local Pod runtime: the example KafkaCluster becomes real broker
//! Pods (a `stoker-agent` native sidecar beside each Kafka), serves clients through
//! its advertised listeners, survives a SIGKILLed broker, and two broker Pods deleted by
//! hand at once go through the agents' preStop safety wait one after the other (the
//! cluster's stop Lease) with no partition below min ISR; a removal the topics cannot take
//! (replication factor, min.insync.replicas, no Cruise Control) is refused naming why;
//! a claim a Pod uses is bound and grows with its request; a Pod whose port another
//! process holds on every address waits for it, and a force-deleted Pod of a
//! Deployment is replaced and runs; the agents' CA replaced is served by every agent
//! without a restart.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use kube::{
    Api,
    api::{DeleteParams, PostParams},
};
use stoker_proto::{
    agent::v1::{BrokerRef, GetStatusRequest},
    agent_tls::ca_common_name,
    pki::Ca,
};
use stoker_testenv::agent_tls::{self, Caller};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_cluster_runs_serves_clients_and_survives_a_killed_and_a_deleted_broker() {
    let env = Env::start().await;
    let (runtime, clusters, pods) = (&env.runtime, &env.clusters, &env.pods);

    // A client inside the cluster produces and consumes through the advertised listeners.
    let bootstrap = format!("{CLUSTER}-all-broker.{NS}.svc.cluster.local:9092");
    create_topic(runtime, &bootstrap, "e2e", 3, 3, 2);
    produce(runtime, &bootstrap, "e2e", 1000);
    consume_all(runtime, &bootstrap, "e2e", "e2e-1", 1000);

    // A broker's Kafka process SIGKILLed: the runtime restarts it (restartPolicy Always),
    // it rejoins, and nothing acknowledged is lost.
    let pod = format!("{CLUSTER}-1");
    let pid = runtime
        .container_pid(NS, &pod, "kafka")
        .expect("broker 1 runs");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let p = pods.get(&pod).await.expect("pod");
        let st = p.status.unwrap_or_default();
        let restarts = st
            .container_statuses
            .iter()
            .flatten()
            .find(|c| c.name == "kafka")
            .map_or(0, |c| c.restart_count);
        let ready = st
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if restarts >= 1 && ready {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "broker 1 was not restarted and ready again (restarts {restarts})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    wait_cluster_ready(clusters, pods, "after SIGKILL").await;
    consume_all(runtime, &bootstrap, "e2e", "e2e-2", 1000);
    // Rejoined means back in every ISR: the next step needs both brokers serving.
    let deadline = Instant::now() + Duration::from_secs(120);
    while min_isr(pods, "e2e").await != Some(3) {
        assert!(
            Instant::now() < deadline,
            "broker 1 did not rejoin the ISRs of e2e after its restart"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Two broker Pods deleted by hand at the same instant (`e2e` has RF 3, min ISR 2:
    // the two may not be down together). Each agent's preStop check is right alone, but
    // made at the same moment both would pass; under the cluster's stop Lease one goes
    // first and the other waits until it is back in the ISR. Both come back with their
    // data (their claims outlive them), and no partition falls below min ISR.
    let both = [format!("{CLUSTER}-1"), format!("{CLUSTER}-2")];
    let mut uids = Vec::new();
    for pod in &both {
        uids.push(pods.get(pod).await.expect("pod").metadata.uid);
    }
    let dp = DeleteParams::default();
    let (a, b) = tokio::join!(pods.delete(&both[0], &dp), pods.delete(&both[1], &dp));
    a.expect("delete broker 1's Pod");
    b.expect("delete broker 2's Pod");
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut lowest_isr = usize::MAX;
    loop {
        if let Some(m) = min_isr(pods, "e2e").await {
            lowest_isr = lowest_isr.min(m);
        }
        let mut back = 0;
        for (pod, uid) in both.iter().zip(&uids) {
            if let Some(p) = pods.get_opt(pod).await.expect("get")
                && p.metadata.uid != *uid
            {
                back += 1;
            }
        }
        if back == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the deleted Pods never came back"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let logs: Vec<String> = both
        .iter()
        .map(|pod| {
            std::fs::read_to_string(runtime.container_log(NS, pod, "stoker-agent"))
                .expect("agent log")
        })
        .collect();
    for (pod, log) in both.iter().zip(&logs) {
        assert!(
            log.contains("Safe to stop; letting Kafka shut down"),
            "{pod}'s preStop hook went through the agent's safety wait:\n{}",
            log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
        );
    }
    assert!(
        logs.iter().any(|l| l.contains("holds the stop Lease")),
        "one agent waited for the other's stop"
    );
    wait_cluster_ready(clusters, pods, "after deleting two Pods").await;
    assert!(
        lowest_isr >= 2,
        "a partition of e2e fell below min ISR 2 while two brokers were deleted: {lowest_isr}"
    );
    consume_all(runtime, &bootstrap, "e2e", "e2e-3", 1000);

    // A removal the topics cannot take is refused before anything moves, and says
    // which topic needs the broker: first a replication factor of 3 (of 3 brokers),
    // then — once `strict` exists, min.insync.replicas 3 — that it needs 4 brokers to
    // take acks=all writes while one restarts.
    keep_brokers(clusters, &[0, 1, 100]).await;
    let why = wait_condition(
        clusters,
        "ScaleDownBlocked",
        &["broker 2", "replication factor 3"],
    )
    .await;
    println!("removal refused: {why}");
    create_topic(runtime, &bootstrap, "strict", 3, 3, 3);
    let why = wait_condition(
        clusters,
        "ScaleDownBlocked",
        &["broker 2", "strict", "min.insync.replicas 3"],
    )
    .await;
    println!("removal refused: {why}");
    let rebalances: Api<stoker_coordinator::crd::v1alpha1::KafkaRebalance> =
        Api::namespaced(clusters.clone().into_client(), NS);
    assert!(
        rebalances
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .is_empty(),
        "nothing was asked to move"
    );
    assert!(
        pods.get_opt(&format!("{CLUSTER}-2"))
            .await
            .expect("get")
            .is_some(),
        "broker 2 runs on"
    );
    assert!(!event_notes(&env, "ScaleDownBlocked").await.is_empty());

    agent_ca_replaced_live(&env).await;
    env.stop().await;
}

/// The agents' CA Secret deleted: the coordinator issues a new CA and every broker's
/// certificate, the runtime updates the mounted Secrets, each agent serves its new
/// certificate, and the coordinator reaches every agent again — no Pod restarted.
async fn agent_ca_replaced_live(env: &Env) {
    let pods = &env.pods;
    let secrets: Api<Secret> = Api::namespaced(pods.clone().into_client(), NS);
    let ca_name = format!("{CLUSTER}-agent-ca");
    let listed = pods
        .list(&kube::api::ListParams::default().labels(&format!("kafka_cr={CLUSTER}")))
        .await
        .expect("broker Pods")
        .items;
    let before: Vec<(String, Option<String>, i32)> = listed
        .iter()
        .map(|p| {
            let restarts = p
                .status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
                .map(|c| c.restart_count)
                .sum();
            (
                p.metadata.name.clone().unwrap_or_default(),
                p.metadata.uid.clone(),
                restarts,
            )
        })
        .collect();
    let text = |s: &Secret, key: &str| {
        s.data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .unwrap_or_default()
    };
    let old = text(
        &secrets.get(&ca_name).await.expect("the agents' CA"),
        "ca.crt",
    );
    let started = Instant::now();
    secrets
        .delete(&ca_name, &DeleteParams::default())
        .await
        .expect("delete the CA Secret");
    let deadline = started + Duration::from_secs(120);
    let ca = loop {
        if let Some(s) = secrets.get_opt(&ca_name).await.expect("get")
            && text(&s, "ca.crt") != old
            && !text(&s, "ca.key").is_empty()
        {
            break Ca {
                common_name: ca_common_name(CLUSTER, NS),
                cert: text(&s, "ca.crt"),
                key: text(&s, "ca.key"),
            };
        }
        assert!(Instant::now() < deadline, "no new agent CA was issued");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    for p in &listed {
        let name = p.metadata.name.clone().unwrap_or_default();
        let id: i32 = p
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("brokerId"))
            .and_then(|v| v.parse().ok())
            .expect("a broker id label");
        let ip = p
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .expect("a Pod IP");
        let addr = std::net::SocketAddr::new(ip.parse().expect("an IP"), 8081);
        let caller = Caller::coordinator(&ca, CLUSTER, NS, id).expect("identity");
        loop {
            let served = match agent_tls::client(addr, &caller).await {
                Ok(mut c) => c
                    .get_status(GetStatusRequest {
                        broker: Some(BrokerRef {
                            cluster: CLUSTER.into(),
                            namespace: NS.into(),
                            broker_id: id,
                        }),
                    })
                    .await
                    .map_err(|s| s.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match served {
                Ok(_) => break,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "{name}'s agent never served a certificate of the new CA: {e}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    println!(
        "agent CA replaced: {} agents served certificates of the new CA {:.1} s after the old CA's Secret was deleted",
        listed.len(),
        started.elapsed().as_secs_f64()
    );
    for (name, uid, restarts) in before {
        let p = pods.get(&name).await.expect("the Pod is still there");
        let now: i32 = p
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
            .map(|c| c.restart_count)
            .sum();
        assert_eq!(p.metadata.uid, uid, "{name} was not replaced");
        assert_eq!(now, restarts, "no container of {name} restarted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_in_use_is_bound_and_grows_when_its_request_does() {
    let (_plane, client, _runtime) = bare_runtime(&["disks"], false, local_images(false)).await;
    let classes: Api<k8s_openapi::api::storage::v1::StorageClass> = Api::all(client.clone());
    classes
        .create(
            &PostParams::default(),
            &serde_yaml::from_str(
                "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: expandable}\nprovisioner: stoker.test/none\nallowVolumeExpansion: true\n",
            )
            .expect("class"),
        )
        .await
        .expect("class created");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "disks");
    claims
        .create(
            &PostParams::default(),
            &serde_yaml::from_str(
                "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec: {storageClassName: expandable, accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n",
            )
            .expect("claim"),
        )
        .await
        .expect("claim created");
    Api::<Pod>::namespaced(client.clone(), "disks")
        .create(
            &PostParams::default(),
            &serde_yaml::from_str(
                "apiVersion: v1\nkind: Pod\nmetadata: {name: user}\nspec:\n  automountServiceAccountToken: false\n  containers: [{name: main, image: \"kafka:4.1.1\", command: [sleep, \"300\"], volumeMounts: [{name: data, mountPath: /data}]}]\n  volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]\n",
            )
            .expect("pod"),
        )
        .await
        .expect("pod created");
    let capacity = |c: PersistentVolumeClaim| {
        c.status
            .and_then(|s| s.capacity)
            .and_then(|c| c.get("storage").map(|q| q.0.clone()))
    };
    let wait_for = |size: &'static str| {
        let claims = claims.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let c = claims.get("data").await.expect("claim");
                let bound = c.status.as_ref().and_then(|s| s.phase.clone());
                let have = capacity(c);
                if bound.as_deref() == Some("Bound") && have.as_deref() == Some(size) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "expected a bound claim of {size}, got {bound:?} {have:?}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    wait_for("1Gi").await;
    let grow = serde_json::json!({"spec": {"resources": {"requests": {"storage": "3Gi"}}}});
    claims
        .patch(
            "data",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&grow),
        )
        .await
        .expect("the class allows expansion");
    wait_for("3Gi").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_deleted_pod_of_a_deployment_is_replaced_and_runs() {
    let (_plane, client, _runtime) = bare_runtime(&["apps"], true, local_images(false)).await;
    // A process bound to the port on every address (as Cruise Control's web server is,
    // on 0.0.0.0) keeps the Pod from an address until it lets go: the runtime waits
    // and retries, as a kubelet retries a sandbox, and the Pod then runs.
    let holder = std::net::TcpListener::bind("0.0.0.0:0").expect("bind a port");
    let port = holder.local_addr().expect("address").port();
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), "apps");
    deployments
        .create(
            &PostParams::default(),
            &serde_yaml::from_str(&format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      automountServiceAccountToken: false\n      containers: [{{name: main, image: \"kafka:4.1.1\", command: [sleep, \"300\"], ports: [{{containerPort: {port}}}]}}]\n",
            ))
            .expect("deployment"),
        )
        .await
        .expect("deployment created");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "apps");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let waiting = pods.list(&Default::default()).await.expect("pods").items;
    assert!(
        !waiting.is_empty()
            && waiting
                .iter()
                .all(|p| p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_none()),
        "no Pod got an address while its port was held on every address: {:?}",
        waiting
            .iter()
            .map(|p| p.status.as_ref().and_then(|s| s.pod_ip.clone()))
            .collect::<Vec<_>>()
    );
    drop(holder);
    let running = |not: Option<String>| {
        let pods = pods.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let list = pods.list(&Default::default()).await.expect("pods").items;
                if let Some(p) = list.iter().find(|p| {
                    p.metadata.name != not
                        && p.metadata.deletion_timestamp.is_none()
                        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                }) {
                    return p.metadata.name.clone().expect("a name");
                }
                let phases: Vec<_> = list
                    .iter()
                    .map(|p| {
                        (
                            p.metadata.name.clone(),
                            p.status.as_ref().and_then(|s| s.phase.clone()),
                            p.spec.as_ref().and_then(|s| s.node_name.clone()),
                        )
                    })
                    .collect();
                assert!(
                    Instant::now() < deadline,
                    "no running Pod but {not:?}: {phases:?}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    let first = running(None).await;
    pods.delete(&first, &DeleteParams::default().grace_period(0))
        .await
        .expect("force delete");
    let second = running(Some(first.clone())).await;
    assert_ne!(first, second);
}

/// What a kubelet would say about a Pod it cannot run: a waiting reason and a message
/// per container, never a silent hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_the_runtime_cannot_run_say_why() {
    let (_plane, client, _runtime) = bare_runtime(&["bad"], false, local_images(false)).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bad");
    let pod = |name: &str, extra: &str| -> Pod {
        serde_yaml::from_str(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  automountServiceAccountToken: false\n{extra}"
        ))
        .expect("pod yaml")
    };
    let cases = [
        (
            pod(
                "unknown-image",
                "  containers: [{name: web, image: \"nginx:1.27\"}]\n",
            ),
            "ErrImagePull",
            "\"nginx:1.27\" has no local install",
        ),
        (
            pod(
                "nfs-volume",
                "  containers: [{name: agent, image: \"stoker-agent:dev\", volumeMounts: [{name: data, mountPath: /data}]}]\n  volumes: [{name: data, nfs: {server: nfs.example, path: /exports}}]\n",
            ),
            "CreateContainerConfigError",
            "volume data: this volume type is not supported",
        ),
        (
            pod(
                "grpc-probe",
                "  containers: [{name: agent, image: \"stoker-agent:dev\", readinessProbe: {grpc: {port: 8081}}}]\n",
            ),
            "CreateContainerConfigError",
            "readinessProbe uses a probe type the local Pod runtime does not support",
        ),
    ];
    for (p, _, _) in &cases {
        pods.create(&PostParams::default(), p)
            .await
            .expect("create");
    }
    for (p, reason, message) in &cases {
        let name = p.metadata.name.clone().expect("name");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let waiting = pods
                .get(&name)
                .await
                .expect("get")
                .status
                .and_then(|s| s.container_statuses)
                .and_then(|cs| cs.into_iter().next())
                .and_then(|c| c.state?.waiting);
            if let Some(w) = &waiting
                && w.reason.as_deref() == Some(*reason)
                && w.message.as_deref().is_some_and(|m| m.contains(message))
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: expected {reason} with {message:?}, got {waiting:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_change_rolls_the_brokers_one_at_a_time_without_losing_a_record() {
    let mut env = Env::start().await;
    let (clusters, pods) = (&env.clusters.clone(), &env.pods.clone());
    let bootstrap = format!("{CLUSTER}-all-broker.{NS}.svc.cluster.local:9092");
    create_topic(&env.runtime, &bootstrap, "roll", 3, 3, 2);
    let before = pods.list(&Default::default()).await.expect("pods").items;

    // A dynamic key on every broker: applied live, nothing restarts.
    let patch = serde_json::json!({"spec": {"brokerConfigGroups": {"default_group": {"config": "log.retention.ms=7200000"}}}});
    clusters
        .patch(
            CLUSTER,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("dynamic change");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let kc = clusters.get(CLUSTER).await.expect("get");
        let st = kc.status.clone().unwrap_or_default();
        let applied = ["0", "1", "2"].iter().all(|id| {
            st.brokers_state.get(*id).is_some_and(|b| {
                b.config_hash_in_force.is_some() && b.config_hash_in_force == b.desired_config_hash
            })
        });
        if applied && st.observed_generation == kc.metadata.generation {
            assert!(
                st.rolling_upgrade.is_none(),
                "a dynamic change never rolls: {st:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dynamic key was not applied: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let now = pods.list(&Default::default()).await.expect("pods").items;
    assert_eq!(
        broker_uids(&now),
        broker_uids(&before),
        "no Pod was replaced"
    );
    assert_eq!(restarts(&now), restarts(&before), "no container restarted");

    // A verifiable producer (idempotent, acks=all) runs through everything below:
    // 200 records/s for 150 s, long enough to span the blocked phase and the roll.
    let (_work, producer) = start_producer(&env.runtime, &bootstrap, "roll", 30_000, 200);
    tokio::time::sleep(Duration::from_secs(8)).await;

    // Broker 2 freezes: the roll that a static change starts waits, and says why.
    let frozen = env
        .runtime
        .container_pid(NS, &format!("{CLUSTER}-2"), "kafka")
        .expect("broker 2 runs");
    let frozen = nix::unistd::Pid::from_raw(i32::try_from(frozen).expect("pid"));
    nix::sys::signal::kill(frozen, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    let deadline = Instant::now() + Duration::from_secs(60);
    while clusters
        .get(CLUSTER)
        .await
        .expect("get")
        .status
        .and_then(|s| s.brokers_state.get("2").map(|b| b.ready))
        .unwrap_or(true)
    {
        assert!(
            Instant::now() < deadline,
            "the frozen broker was never noticed"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let roll_started = Instant::now();
    change_static_config(clusters).await;
    let mut lowest_isr = usize::MAX;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let st = clusters
            .get(CLUSTER)
            .await
            .expect("get")
            .status
            .unwrap_or_default();
        if let Some(w) = st
            .rolling_upgrade
            .as_ref()
            .and_then(|r| r.waiting_for.clone())
            && w.contains("failing broker")
            && w.contains("broker 2")
        {
            assert!(
                st.rolling_upgrade
                    .as_ref()
                    .is_some_and(|r| r.restarted.is_empty() && r.in_progress.is_empty()),
                "nothing restarts while a broker fails: {st:?}"
            );
            println!("roll blocked, as it should: {w}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the roll never said it was blocked: {st:?}"
        );
        if let Some(m) = min_isr(pods, "roll").await {
            lowest_isr = lowest_isr.min(m);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    nix::sys::signal::kill(frozen, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");

    // The roll resumes by itself and restarts every node, one at a time.
    // Mid-roll, the coordinator restarts: it resumes from status and restarts no node twice.
    // Then, while broker 1 restarts, someone deletes broker 2's Pod by hand: its agent's
    // preStop hook holds it until stopping is safe, the roll waits for it, counts it as
    // done (it comes back with the new config) and never restarts it a second time.
    let hand_deleted = format!("{CLUSTER}-2");
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last = String::new();
    let mut coordinator_restarted = false;
    let mut deleted_by_hand = false;
    loop {
        let kc = clusters.get(CLUSTER).await.expect("get");
        let st = kc.status.clone().unwrap_or_default();
        let done = st.rolling_upgrade.as_ref().map_or(0, |r| r.restarted.len());
        if done >= 1 && !coordinator_restarted {
            env.restart_coordinator().await;
            coordinator_restarted = true;
            println!(
                "[{:>5.1}s] coordinator restarted",
                roll_started.elapsed().as_secs_f64()
            );
        }
        if coordinator_restarted
            && !deleted_by_hand
            && st
                .rolling_upgrade
                .as_ref()
                .is_some_and(|r| r.in_progress.iter().any(|b| b.broker == 1))
        {
            pods.delete(&hand_deleted, &Default::default())
                .await
                .expect("delete a broker Pod by hand");
            deleted_by_hand = true;
            println!(
                "[{:>5.1}s] {hand_deleted} deleted by hand while broker 1 restarts",
                roll_started.elapsed().as_secs_f64()
            );
        }
        let now = pods.list(&Default::default()).await.expect("pods").items;
        let replaced = broker_uids(&now)
            .iter()
            .filter(|(name, uid)| broker_uids(&before).get(*name) != Some(uid))
            .count();
        // Pods the roll deleted (the one deleted by hand may wait in its preStop hook
        // meanwhile: the ISR samples below show it never stopped too early).
        let down = now
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some())
            .filter(|p| p.metadata.name.as_deref() != Some(hand_deleted.as_str()))
            .count();
        assert!(down <= 1, "the roll stopped more than one broker at once");
        if let Some(m) = min_isr(pods, "roll").await {
            lowest_isr = lowest_isr.min(m);
        }
        let line = format!(
            "{:?} replaced={replaced}",
            st.rolling_upgrade
                .as_ref()
                .map(|r| (&r.restarted, &r.waiting_for))
        );
        if line != last {
            println!("[{:>5.1}s] {line}", roll_started.elapsed().as_secs_f64());
            last = line.clone();
        }
        if replaced == broker_uids(&now).len()
            && st.rolling_upgrade.is_none()
            && ready(&kc).is_some_and(|r| r.0 == "True")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the roll did not finish: {line}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let roll_time = roll_started.elapsed();
    assert!(
        coordinator_restarted,
        "the roll finished before the coordinator restarted"
    );
    assert!(
        deleted_by_hand,
        "broker 1's restart passed before {hand_deleted} could be deleted by hand"
    );
    let steps = event_notes(&env, "RestartingBroker").await;
    for id in ["0", "1", "2", "100"] {
        let n = steps
            .iter()
            .filter(|n| n.starts_with(&format!("restarting broker {id} ")))
            .count();
        assert!(n <= 1, "broker {id} restarted {n} times: {steps:?}");
    }
    assert!(
        !steps.iter().any(|n| n.starts_with("restarting broker 2 ")),
        "the roll restarted broker 2 although its Pod was deleted by hand and came back with the new config: {steps:?}"
    );
    assert!(
        steps.len() >= 3,
        "every other node's restart is an Event: {steps:?}"
    );
    println!(
        "roll of {} nodes: {roll_time:?}; lowest ISR seen {lowest_isr}",
        before.len()
    );

    // The producer finishes; every acknowledged record is consumed exactly once.
    let output = producer.await.expect("producer task");
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    let (acked, failed) = producer_results(&out);
    println!("sends acknowledged {}, failed {failed}", acked.len());
    assert!(
        acked.len() > 1000,
        "the producer ran through the roll ({} acked)",
        acked.len()
    );
    assert_consumed_once(&env.runtime, &bootstrap, "roll", &acked);
    assert_eq!(failed, 0, "no send failed");
    assert!(
        lowest_isr >= 2,
        "a partition fell below min ISR: {lowest_isr}"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_of_one_rack_restart_together_when_the_roll_allows_it() {
    // Four brokers in two racks (a: 0, 1; b: 2, 3), up to two restarts per rack; no
    // Cruise Control.
    let mut kc = two_rack_cluster(2);
    kc.spec.cruise_control_config = None;
    let env = Env::start_with(kc).await;
    let (clusters, pods) = (&env.clusters.clone(), &env.pods.clone());
    let racks = RACKS;
    let st = clusters
        .get(CLUSTER)
        .await
        .expect("get")
        .status
        .expect("status");
    for (id, rack) in racks {
        assert_eq!(
            st.brokers_state
                .get(&id.to_string())
                .and_then(|b| b.rack.as_deref()),
            Some(rack),
            "broker {id}'s agent reports its rack: {st:?}"
        );
    }

    // RF 2: Kafka places one replica in each rack, so a whole rack may stop at once.
    let bootstrap = format!("{CLUSTER}-all-broker.{NS}.svc.cluster.local:9092");
    create_topic(&env.runtime, &bootstrap, "racks", 4, 2, 1);
    let (_work, producer) = start_producer(&env.runtime, &bootstrap, "racks", 16_000, 200);
    tokio::time::sleep(Duration::from_secs(5)).await;

    let before = pods.list(&Default::default()).await.expect("pods").items;
    let roll_started = Instant::now();
    change_static_config(clusters).await;
    let mut together: Vec<Vec<i32>> = Vec::new();
    let mut lowest_isr = usize::MAX;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let kc = clusters.get(CLUSTER).await.expect("get");
        let st = kc.status.clone().unwrap_or_default();
        let mut now: Vec<i32> = st
            .rolling_upgrade
            .as_ref()
            .map(|r| r.in_progress.iter().map(|b| b.broker).collect())
            .unwrap_or_default();
        now.sort_unstable();
        if now.len() > 1 && !together.contains(&now) {
            println!(
                "[{:>5.1}s] restarting together: {now:?}",
                roll_started.elapsed().as_secs_f64()
            );
            together.push(now);
        }
        if let Some(m) = min_isr(pods, "racks").await {
            lowest_isr = lowest_isr.min(m);
        }
        let current = pods.list(&Default::default()).await.expect("pods").items;
        let replaced = broker_uids(&current)
            .iter()
            .filter(|(name, uid)| broker_uids(&before).get(*name) != Some(uid))
            .count();
        if replaced == broker_uids(&current).len()
            && st.rolling_upgrade.is_none()
            && ready(&kc).is_some_and(|r| r.0 == "True")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the roll did not finish: {:?}",
            st.rolling_upgrade
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let roll_time = roll_started.elapsed();
    println!(
        "roll of 4 brokers in 2 racks and a controller: {roll_time:?}; together {together:?}; lowest ISR {lowest_isr}"
    );
    for pair in &together {
        let rack = |id: &i32| racks.iter().find(|(b, _)| b == id).map(|(_, r)| *r);
        assert!(
            pair.iter()
                .all(|id| rack(id).is_some() && rack(id) == rack(&pair[0])),
            "only brokers of one rack restart together: {pair:?}"
        );
    }
    assert!(
        together.contains(&vec![0, 1]) || together.contains(&vec![2, 3]),
        "a rack's two brokers restarted together: {together:?}"
    );
    let steps = event_notes(&env, "RestartingBroker").await;
    for id in ["0", "1", "2", "3", "100"] {
        let n = steps
            .iter()
            .filter(|n| n.starts_with(&format!("restarting broker {id} ")))
            .count();
        assert_eq!(n, 1, "broker {id} restarted once: {steps:?}");
    }
    assert!(
        steps.iter().any(|n| n.contains("together with broker(s)")),
        "the Event says which brokers restart together: {steps:?}"
    );

    let output = producer.await.expect("producer task");
    let (acked, failed) = producer_results(&String::from_utf8_lossy(&output.stdout));
    println!("sends acknowledged {}, failed {failed}", acked.len());
    assert!(acked.len() > 1000, "the producer ran through the roll");
    assert_consumed_once(&env.runtime, &bootstrap, "racks", &acked);
    assert_eq!(failed, 0, "no send failed");
    assert!(lowest_isr >= 1, "a partition went offline: {lowest_isr}");

    // Without Cruise Control a broker that holds replicas is never removed: the removal
    // is refused, naming what it holds, and the broker runs on.
    keep_brokers(clusters, &[0, 1, 2, 100]).await;
    let why = wait_condition(
        clusters,
        "ScaleDownBlocked",
        &[
            "broker 3",
            "partition(s) assigned",
            "without Cruise Control",
        ],
    )
    .await;
    println!("removal refused: {why}");
    assert!(
        pods.get_opt(&format!("{CLUSTER}-3"))
            .await
            .expect("get")
            .is_some(),
        "broker 3 runs on"
    );
    env.stop().await;
}
