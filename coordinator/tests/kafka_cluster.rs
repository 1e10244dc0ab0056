//! The KafkaCluster controller against a real API server (etcd, kube-apiserver and
//! kube-controller-manager): the example becomes the expected objects with per-broker
//! differences preserved; the CRD's CEL rules and the controller's validation reject
//! bad specs with exact messages; a change to one broker touches only its objects; a
//! removed broker's Pod goes and its PVCs stay; an unchanged cluster reconciled
//! repeatedly makes no writes; a restarted controller converges with no duplicates.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
    runtime::watcher,
};
use stoker_coordinator::{
    context::Context,
    crd::v1alpha1::{BrokerState, KafkaCluster},
    metrics::ControllerMetrics,
};
use stoker_testenv::KubeEnv;
use tokio_util::sync::CancellationToken;

const NS: &str = "alerting";

fn example() -> KafkaCluster {
    serde_yaml::from_str(include_str!("../../deploy/examples/kafkacluster.yaml"))
        .expect("the example parses")
}

fn start_controller(
    client: Client,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<()>,
    ControllerMetrics,
) {
    let token = CancellationToken::new();
    let ctx = Context::new(
        client,
        "stoker-agent:test".into(),
        &prometheus::Registry::new(),
    );
    let metrics = ctx.metrics.kafka_cluster.clone();
    let handle = tokio::spawn(stoker_coordinator::controller::kafka_cluster::run(
        ctx,
        token.clone(),
    ));
    (token, handle, metrics)
}

async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_builds_changes_and_removes_brokers_on_a_real_api_server() {
    let KubeEnv {
        plane: _plane,
        client,
    } = KubeEnv::start(&[NS])
        .await
        .expect("control plane with CRDs");

    let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), NS);
    // The API server's own checks (schema and CEL) reject what they can.
    let mut dup = example();
    dup.spec.brokers[1].id = 0;
    let err = clusters
        .create(&PostParams::default(), &dup)
        .await
        .expect_err("duplicate ids are refused");
    assert!(
        err.to_string().contains("broker ids must be unique"),
        "{err}"
    );
    let mut unknown = example();
    unknown.spec.brokers[0].broker_config_group = Some("nope".into());
    let err = clusters
        .create(&PostParams::default(), &unknown)
        .await
        .expect_err("unknown group is refused");
    assert!(
        err.to_string()
            .contains("must name a group defined in spec.brokerConfigGroups"),
        "{err}"
    );

    let (token, controller, metrics) = start_controller(client.clone());
    clusters
        .create(&PostParams::default(), &example())
        .await
        .expect("the example is accepted");

    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let svcs: Api<Service> = Api::namespaced(client.clone(), NS);
    let lp = ListParams::default().labels("kafka_cr=kf-kafka");
    eventually("4 Pods", || async {
        (pods.list(&lp).await.ok()?.items.len() == 4).then_some(())
    })
    .await;

    // Per-broker objects with per-broker differences preserved.
    let pod0 = pods.get("kf-kafka-0").await.expect("broker 0's Pod");
    let spec0 = pod0.spec.clone().expect("spec");
    let kafka0 = &spec0.containers[0];
    assert_eq!(
        kafka0
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get("memory"))
            .map(|q| q.0.as_str()),
        Some("1Gi")
    );
    let agent0 = &spec0.init_containers.as_ref().expect("the agent")[0];
    assert_eq!(
        agent0.restart_policy.as_deref(),
        Some("Always"),
        "the agent is a native sidecar"
    );
    assert_eq!(
        agent0
            .startup_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.as_deref()),
        Some("/startupz")
    );
    assert!(
        kafka0
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .and_then(|p| p.exec.as_ref())
            .and_then(|e| e.command.as_ref())
            .is_some_and(|c| c
                .join(" ")
                .contains("/var/run/stoker-control/prestop.request")),
        "Kafka's preStop asks the agent through the Pod's control folder"
    );
    assert_eq!(
        spec0.service_account_name.as_deref(),
        Some("kf-kafka"),
        "from the broker's group"
    );
    let pod100 = pods
        .get("kf-kafka-100")
        .await
        .expect("the controller's Pod");
    assert!(
        pod100.spec.as_ref().expect("spec").containers[0]
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .is_none(),
        "the controller keeps its own (empty) resources, not the brokers'"
    );
    assert!(
        pvcs.get_opt("kf-kafka-0-storage-kafka-logs")
            .await
            .expect("get")
            .is_some()
    );
    let meta_pvc = pvcs
        .get("kf-kafka-100-storage-kafka-meta")
        .await
        .expect("the controller's PVC");
    assert_eq!(
        meta_pvc
            .spec
            .and_then(|s| s.resources)
            .and_then(|r| r.requests)
            .and_then(|r| r.get("storage").cloned())
            .map(|q| q.0),
        Some("256Mi".into())
    );
    assert!(
        meta_pvc.metadata.owner_references.is_none(),
        "PVCs are never garbage-collected with the cluster"
    );
    let cm0 = cms
        .get("kf-kafka-0-config")
        .await
        .expect("broker 0's ConfigMap");
    let doc: stoker_proto::agent::v1::DesiredConfig =
        serde_json::from_str(&cm0.data.expect("data")["config.json"])
            .expect("the agent's document");
    assert_eq!(doc.process_roles, ["broker"]);
    assert_eq!(doc.log_dirs, ["/kafka-logs/kafka"]);
    assert!(
        doc.controller_quorum_voters
            .starts_with("100@kf-kafka-100.alerting.svc.cluster.local:29093"),
        "{}",
        doc.controller_quorum_voters
    );
    assert_eq!(doc.read_only_config["num.partitions"], "32");
    // The agents may read their Node: the ServiceAccounts the Pods use exist and are bound.
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), NS);
    assert!(
        sas.get_opt("kf-kafka").await.expect("get").is_some(),
        "the group's account is created"
    );
    assert!(
        sas.get_opt("kf-kafka-stoker-agent")
            .await
            .expect("get")
            .is_some(),
        "the default account for the controller"
    );
    let crbs: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> = Api::all(client.clone());
    let crb = crbs
        .get("stoker-agent-alerting-kf-kafka")
        .await
        .expect("the binding");
    let subjects: Vec<String> = crb
        .subjects
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(subjects, ["kf-kafka", "kf-kafka-stoker-agent"]);
    assert_eq!(crb.role_ref.name, "stoker-agent");
    for name in [
        "kf-kafka-all-broker",
        "kf-kafka-0",
        "kf-kafka-1",
        "kf-kafka-2",
        "kf-kafka-100",
    ] {
        assert!(
            svcs.get_opt(name).await.expect("get").is_some(),
            "Service {name}"
        );
    }

    // Status: the cluster id is generated once and kept; conditions say what runs.
    let kc = eventually("status", || async {
        let kc = clusters.get("kf-kafka").await.ok()?;
        kc.status.as_ref()?.ready_brokers.is_some().then_some(kc)
    })
    .await;
    let status = kc.status.clone().expect("status");
    let cluster_id = status.cluster_id.clone().expect("a cluster id");
    assert_eq!(cluster_id.len(), 22);
    assert_eq!(doc.cluster_id, cluster_id);
    assert_eq!(
        status.ready_brokers.as_deref(),
        Some("0/4"),
        "no kubelet runs these Pods"
    );
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert_eq!(ready.status, "False");
    assert!(
        ready.message.contains("waiting for broker(s) 0, 1, 2, 100"),
        "{}",
        ready.message
    );

    // An unchanged cluster makes no writes: count watch events over many reconciles.
    let mut events = watcher::watcher(
        cms.clone(),
        watcher::Config::default().labels("kafka_cr=kf-kafka"),
    )
    .boxed();
    let mut initial = 0;
    while let Some(Ok(ev)) = events.next().await {
        match ev {
            watcher::Event::InitDone => break,
            _ => initial += 1,
        }
    }
    assert!(initial > 0);
    let mut all_objects = watcher::watcher(
        pods.clone(),
        watcher::Config::default().labels("kafka_cr=kf-kafka"),
    )
    .boxed();
    while let Some(Ok(ev)) = all_objects.next().await {
        if matches!(ev, watcher::Event::InitDone) {
            break;
        }
    }
    let runs_before = metrics.runs();
    for i in 0..100 {
        // Touching an annotation triggers a reconcile without changing the spec.
        let patch = serde_json::json!({"metadata": {"annotations": {"test/poke": i.to_string()}}});
        clusters
            .patch("kf-kafka", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("poke");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let reconciles = metrics.runs() - runs_before;
    assert!(
        reconciles >= 5,
        "the pokes caused reconciles ({reconciles})"
    );
    let quiet_cms = tokio::time::timeout(Duration::from_millis(500), events.next()).await;
    assert!(
        quiet_cms.is_err(),
        "no ConfigMap changed in {reconciles} reconciles of an unchanged spec: {quiet_cms:?}"
    );
    let quiet_pods = tokio::time::timeout(Duration::from_millis(500), all_objects.next()).await;
    assert!(
        quiet_pods.is_err(),
        "no Pod changed in {reconciles} reconciles of an unchanged spec: {quiet_pods:?}"
    );
    let status_before = clusters.get("kf-kafka").await.expect("get").status;
    assert_eq!(
        status_before
            .as_ref()
            .and_then(|s| s.ready_brokers.clone())
            .as_deref(),
        Some("0/4")
    );

    // Change one broker's config: only its ConfigMap changes.
    let rv_before: Vec<(String, String)> = cms
        .list(&lp)
        .await
        .expect("list")
        .items
        .iter()
        .map(|c| (c.name_any(), c.resource_version().unwrap_or_default()))
        .collect();
    let patch = serde_json::json!({"spec": {"brokers": [
        {"id": 0, "brokerConfigGroup": "default_group", "brokerConfig": {"config": "log.retention.ms=3600000", "resourceRequirements": {"limits": {"memory": "1Gi"}, "requests": {"cpu": "0.3", "memory": "512Mi"}}}},
        {"id": 1, "brokerConfigGroup": "default_group", "brokerConfig": {"resourceRequirements": {"limits": {"memory": "1Gi"}, "requests": {"cpu": "0.3", "memory": "512Mi"}}}},
        {"id": 2, "brokerConfigGroup": "default_group", "brokerConfig": {"resourceRequirements": {"limits": {"memory": "1Gi"}, "requests": {"cpu": "0.3", "memory": "512Mi"}}}},
        {"id": 100, "brokerConfigGroup": "controller_group"}
    ]}});
    clusters
        .patch("kf-kafka", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    eventually("broker 0's ConfigMap to change", || async {
        let cm = cms.get("kf-kafka-0-config").await.ok()?;
        cm.data?
            .get("config.json")?
            .contains("log.retention.ms")
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rv_after: Vec<(String, String)> = cms
        .list(&lp)
        .await
        .expect("list")
        .items
        .iter()
        .map(|c| (c.name_any(), c.resource_version().unwrap_or_default()))
        .collect();
    let changed: Vec<&String> = rv_after
        .iter()
        .filter(|a| !rv_before.contains(a))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        changed,
        ["kf-kafka-0-config"],
        "only broker 0's ConfigMap changed"
    );

    // Remove broker 2 from the spec: it is not deleted on a guess. No kubelet runs it
    // here, so no agent can show that it holds no replica: it stays, draining, and the
    // status says why. (The end-to-end scaling test drains and removes one for real.)
    let patch = serde_json::json!({"spec": {"brokers": [
        {"id": 0, "brokerConfigGroup": "default_group", "brokerConfig": {"config": "log.retention.ms=3600000"}},
        {"id": 1, "brokerConfigGroup": "default_group"},
        {"id": 100, "brokerConfigGroup": "controller_group"}
    ]}});
    clusters
        .patch("kf-kafka", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    let removing = eventually("broker 2 draining in status", || async {
        let kc = clusters.get("kf-kafka").await.ok()?;
        let st = kc.status?;
        let r = st.scaling?.removing.into_iter().find(|r| r.broker == 2)?;
        (st.brokers_state.get("2")?.state == Some(BrokerState::Draining)).then_some(r)
    })
    .await;
    assert!(
        removing
            .message
            .contains("cannot confirm that it holds no replica"),
        "{}",
        removing.message
    );
    assert!(
        pods.get_opt("kf-kafka-2").await.expect("get").is_some(),
        "its Pod is kept while it may hold data"
    );
    assert!(
        cms.get_opt("kf-kafka-2-config")
            .await
            .expect("get")
            .is_some()
    );
    assert!(
        pvcs.get_opt("kf-kafka-2-storage-kafka-logs")
            .await
            .expect("get")
            .is_some(),
        "data is kept"
    );

    // Changing broker 0's resources changes its Pod template: restart needed, in status.
    let kc = eventually("restart-needed for broker 0", || async {
        let kc = clusters.get("kf-kafka").await.ok()?;
        kc.status
            .as_ref()?
            .brokers_state
            .get("0")?
            .restart_needed
            .then_some(kc)
    })
    .await;
    assert!(
        kc.status
            .as_ref()
            .and_then(|s| s.brokers_state.get("0"))
            .and_then(|b| b.restart_reason.clone())
            .is_some_and(|r| r.contains("template"))
    );

    // A restarted controller converges to the same objects, with no duplicates.
    token.cancel();
    let _ = controller.await;
    let (token, controller, _) = start_controller(client.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Brokers 0, 1, 100 and the draining 2; their ConfigMaps, Cruise Control's and the
    // JMX exporter's rules.
    assert_eq!(pods.list(&lp).await.expect("list").items.len(), 4);
    assert_eq!(cms.list(&lp).await.expect("list").items.len(), 6);
    let kc = clusters.get("kf-kafka").await.expect("get");
    assert_eq!(
        kc.status.and_then(|s| s.cluster_id),
        Some(cluster_id),
        "the cluster id is kept"
    );

    // An invalid spec is marked Invalid with the exact message; nothing else changes.
    let patch = serde_json::json!({"spec": {"zkAddresses": ["zk-zookeeper:2181"]}});
    clusters
        .patch("kf-kafka", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("the schema accepts zkAddresses");
    let kc = eventually("Invalid", || async {
        let kc = clusters.get("kf-kafka").await.ok()?;
        kc.status
            .as_ref()?
            .conditions
            .iter()
            .any(|c| c.type_ == "Invalid" && c.status == "True")
            .then_some(kc)
    })
    .await;
    let invalid = kc
        .status
        .expect("status")
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Invalid")
        .expect("Invalid");
    assert_eq!(invalid.reason, "ZooKeeperNotSupported");
    assert!(invalid.message.contains("KRaft"), "{}", invalid.message);
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), NS);
    let warned = eventually("a Warning Event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("ZooKeeperNotSupported"))
    })
    .await;
    assert_eq!(warned.type_.as_deref(), Some("Warning"));

    // Deleting the cluster: the finalizer removes the cluster-scoped binding, the
    // garbage collector the owned objects, and the PVCs stay.
    let patch = serde_json::json!({"spec": {"zkAddresses": null}});
    clusters
        .patch("kf-kafka", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("valid again");
    clusters
        .delete("kf-kafka", &Default::default())
        .await
        .expect("delete");
    eventually("the cluster to go", || async {
        clusters
            .get_opt("kf-kafka")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        crbs.get_opt("stoker-agent-alerting-kf-kafka")
            .await
            .expect("get")
            .is_none(),
        "the finalizer deleted the binding"
    );
    eventually("owned Pods to be garbage-collected", || async {
        pods.list(&lp).await.ok()?.items.is_empty().then_some(())
    })
    .await;
    assert_eq!(
        pvcs.list(&lp).await.expect("list").items.len(),
        4,
        "every PVC is kept"
    );

    token.cancel();
    let _ = controller.await;
}

/// `headlessServiceEnabled: true`: one headless Service that publishes not-ready
/// addresses, Pods with hostname and subdomain, voters named through it; and a
/// PodDisruptionBudget from `disruptionBudget`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_headless_cluster_gets_one_service_stable_pod_names_and_its_budget() {
    let KubeEnv {
        plane: _plane,
        client,
    } = KubeEnv::start_with(
        stoker_testenv::control_plane::ControlPlaneOptions {
            controller_manager: false,
        },
        &[NS],
    )
    .await
    .expect("control plane with CRDs");
    let mut kc = example();
    kc.spec.headless_service_enabled = true;
    kc.spec.disruption_budget = Some(stoker_coordinator::crd::v1alpha1::DisruptionBudget {
        create: true,
        budget: Some("1".into()),
    });
    let (token, controller, _) = start_controller(client.clone());
    Api::<KafkaCluster>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &kc)
        .await
        .expect("created");

    let svcs: Api<Service> = Api::namespaced(client.clone(), NS);
    let svc = eventually("the headless Service", || async {
        svcs.get_opt("kf-kafka-headless").await.ok()?
    })
    .await;
    let spec = svc.spec.expect("spec");
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(spec.publish_not_ready_addresses, Some(true));
    assert!(
        svcs.get_opt("kf-kafka-all-broker")
            .await
            .expect("get")
            .is_none(),
        "no per-broker Services when headless"
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let pod = eventually("broker 1's Pod", || async {
        pods.get_opt("kf-kafka-1").await.ok()?
    })
    .await;
    let pod_spec = pod.spec.expect("spec");
    assert_eq!(pod_spec.hostname.as_deref(), Some("kf-kafka-1"));
    assert_eq!(pod_spec.subdomain.as_deref(), Some("kf-kafka-headless"));
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let cm = eventually("broker 1's ConfigMap", || async {
        cms.get_opt("kf-kafka-1-config").await.ok()?
    })
    .await;
    assert!(
        cm.data.expect("data")["config.json"]
            .contains("100@kf-kafka-100.kf-kafka-headless.alerting.svc.cluster.local:29093")
    );
    let pdbs: Api<k8s_openapi::api::policy::v1::PodDisruptionBudget> =
        Api::namespaced(client.clone(), NS);
    let pdb = eventually("the PodDisruptionBudget", || async {
        pdbs.get_opt("kf-kafka-pdb").await.ok()?
    })
    .await;
    assert_eq!(
        pdb.spec.and_then(|s| s.max_unavailable),
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    token.cancel();
    let _ = controller.await;
}

/// Broker `id`'s one data disk, `size` of class `class`.
fn sized(kc: &mut KafkaCluster, id: i32, class: &str, size: &str) {
    let disk: stoker_coordinator::crd::v1alpha1::StorageConfig = serde_yaml::from_str(&format!(
        "{{mountPath: /kafka-logs, pvcSpec: {{storageClassName: {class}, accessModes: [ReadWriteOnce], resources: {{requests: {{storage: {size}}}}}}}}}"
    ))
    .expect("a disk");
    let b = kc
        .spec
        .brokers
        .iter_mut()
        .find(|b| b.id == id)
        .expect("the broker");
    b.broker_config
        .get_or_insert_with(Default::default)
        .storage_configs = vec![disk];
}

fn storage_of(pvc: &PersistentVolumeClaim) -> Option<String> {
    pvc.spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .map(|q| q.0.clone())
}

/// The test stands in for the storage driver (there is none here): it binds a claim,
/// or reports its volume grown, at `size`.
async fn volume_has(pvcs: &Api<PersistentVolumeClaim>, name: &str, size: &str) {
    let status = serde_json::json!({"status": {
        "phase": "Bound",
        "accessModes": ["ReadWriteOnce"],
        "capacity": {"storage": size},
    }});
    pvcs.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("claim status");
}

async fn storage_condition(clusters: &Api<KafkaCluster>) -> Option<(String, String)> {
    let kc = clusters.get("kf-kafka").await.ok()?;
    let c = kc
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "StorageChangeBlocked")?;
    Some((c.status, c.message))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grown_claim_is_resized_and_what_kubernetes_cannot_do_is_refused_in_words() {
    let KubeEnv {
        plane: _plane,
        client,
    } = KubeEnv::start_with(
        stoker_testenv::control_plane::ControlPlaneOptions {
            controller_manager: false,
        },
        &[NS],
    )
    .await
    .expect("control plane with CRDs");
    let classes: Api<k8s_openapi::api::storage::v1::StorageClass> = Api::all(client.clone());
    for (name, expands) in [("expandable", true), ("fixed", false)] {
        let sc = serde_yaml::from_str(&format!(
            "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {{name: {name}}}\nprovisioner: stoker.test/none\nallowVolumeExpansion: {expands}\n"
        ))
        .expect("a class");
        classes
            .create(&PostParams::default(), &sc)
            .await
            .expect("class created");
    }
    let mut kc = example();
    sized(&mut kc, 0, "expandable", "1Gi");
    sized(&mut kc, 1, "fixed", "1Gi");
    let (token, controller, _) = start_controller(client.clone());
    let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), NS);
    clusters
        .create(&PostParams::default(), &kc)
        .await
        .expect("created");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let (pvc0, pvc1) = (
        "kf-kafka-0-storage-kafka-logs",
        "kf-kafka-1-storage-kafka-logs",
    );
    for name in [pvc0, pvc1] {
        eventually(name, || async { pvcs.get_opt(name).await.ok()? }).await;
        volume_has(&pvcs, name, "1Gi").await;
    }

    // Grown: the expandable claim is patched; the API server refuses the other, and
    // the refusal is said in its own words, not retried, and holds nothing else up.
    sized(&mut kc, 0, "expandable", "2Gi");
    sized(&mut kc, 1, "fixed", "2Gi");
    let patch = serde_json::json!({"spec": {"brokers": kc.spec.brokers}});
    clusters
        .patch("kf-kafka", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("grown");
    eventually("claim 0 asked for 2Gi", || async {
        (storage_of(&pvcs.get(pvc0).await.ok()?).as_deref() == Some("2Gi")).then_some(())
    })
    .await;
    let (status, message) = eventually("the refusal in the condition", || async {
        storage_condition(&clusters)
            .await
            .filter(|(s, m)| s == "True" && m.contains(pvc1))
    })
    .await;
    assert_eq!(status, "True");
    assert!(
        message.contains("must support resize") && message.contains("allowVolumeExpansion"),
        "{message}"
    );
    assert_eq!(
        storage_of(&pvcs.get(pvc1).await.expect("claim 1")).as_deref(),
        Some("1Gi")
    );
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), NS);
    let refused = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("StorageResizeRefused"))
        .count();
    assert_eq!(refused, 1, "asked once, refused once");

    // Smaller than the claim: refused before Kubernetes is asked; the claim keeps its size.
    volume_has(&pvcs, pvc0, "2Gi").await;
    sized(&mut kc, 0, "expandable", "512Mi");
    sized(&mut kc, 1, "fixed", "1Gi");
    let patch = serde_json::json!({"spec": {"brokers": kc.spec.brokers}});
    clusters
        .patch("kf-kafka", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("shrunk");
    let (_, message) = eventually("the shrink refused", || async {
        storage_condition(&clusters)
            .await
            .filter(|(s, m)| s == "True" && m.contains("cannot shrink"))
    })
    .await;
    assert!(
        message.contains(pvc0) && message.contains("2Gi or more"),
        "{message}"
    );
    assert!(
        !message.contains(pvc1),
        "claim 1 is as asked again: {message}"
    );
    assert_eq!(
        storage_of(&pvcs.get(pvc0).await.expect("claim 0")).as_deref(),
        Some("2Gi")
    );

    // As the claims are: nothing blocked.
    sized(&mut kc, 0, "expandable", "2Gi");
    let patch = serde_json::json!({"spec": {"brokers": kc.spec.brokers}});
    clusters
        .patch("kf-kafka", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("back");
    let (_, message) = eventually("nothing blocked", || async {
        storage_condition(&clusters)
            .await
            .filter(|(s, _)| s == "False")
    })
    .await;
    assert_eq!(message, "every claim is as the spec asks");
    token.cancel();
    let _ = controller.await;
}
