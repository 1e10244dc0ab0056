//! The coordinator drives real agents beside real brokers over gRPC: it reads each
//! agent's status into the KafkaCluster's status and pushes the desired config, whose
//! dynamic keys the agent applies to the running broker without a restart while the
//! static differences are reported as restart-needed.
//!
//! No kubelet runs here, so the test plays the kubelet's part for the Pods the
//! coordinator creates: it reports them Running with the address of the matching
//! test broker (whose agent listens there), as a kubelet would report the Pod IP.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};
use rdkafka::{
    admin::{AdminClient, AdminOptions, ResourceSpecifier},
    client::DefaultClientContext,
};
use stoker_coordinator::{context::Context, crd::v1alpha1::KafkaCluster as KafkaClusterResource};
use stoker_proto::{
    agent::v1::{BrokerRef, PrepareShutdownRequest},
    agent_tls::agent_name,
    pki::Ca,
};
use stoker_testenv::{
    KafkaCluster, KubeEnv,
    agent::TEST_NAMESPACE,
    agent_tls::{self, Caller},
    control_plane::ControlPlaneOptions,
    http, workspace_binary,
};
use tokio_util::sync::CancellationToken;

const SPEC: &str = r#"
apiVersion: kafka.stoker.io/v1alpha1
kind: KafkaCluster
metadata:
  name: kafka
spec:
  listenersConfig:
    internalListeners:
      - {type: plaintext, name: plaintext, containerPort: 9092, usedForInnerBrokerCommunication: true}
      - {type: plaintext, name: controller, containerPort: 9093, usedForControllerCommunication: true}
  brokerConfigGroups:
    default:
      storageConfigs: [{mountPath: /data, emptyDir: {}}]
  brokers:
    - {id: 1, brokerConfigGroup: default, brokerConfig: {config: "log.retention.ms=7200000"}}
    - {id: 2, brokerConfigGroup: default}
    - {id: 3, brokerConfigGroup: default}
    - {id: 100, brokerConfigGroup: default, brokerConfig: {processRoles: [controller]}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_reads_agent_status_and_applies_dynamic_config_live() {
    let KubeEnv {
        plane: _plane,
        client,
    } = KubeEnv::start_with(
        ControlPlaneOptions {
            controller_manager: false,
        },
        &[TEST_NAMESPACE],
    )
    .await
    .expect("control plane with CRDs");

    let kafka = KafkaCluster::builder()
        .brokers(3)
        .controllers(1)
        .with_agents(workspace_binary("stoker-agent").expect("the agent binary"))
        .start()
        .await
        .expect("brokers with agents");
    let pid_before = kafka.node(1).expect("broker 1").process_id();

    // The resource names the brokers the agents serve, with their KRaft cluster id.
    let clusters: Api<KafkaClusterResource> = Api::namespaced(client.clone(), TEST_NAMESPACE);
    let kc: KafkaClusterResource = serde_yaml::from_str(SPEC).expect("spec");
    clusters
        .create(&PostParams::default(), &kc)
        .await
        .expect("created");
    let status = serde_json::json!({"apiVersion": "kafka.stoker.io/v1alpha1", "kind": "KafkaCluster", "status": {"clusterId": kafka.cluster_id()}});
    clusters
        .patch_status(
            "kafka",
            &PatchParams::apply("test").force(),
            &Patch::Apply(&status),
        )
        .await
        .expect("cluster id");

    // The agents were given certificates by the cluster's agent CA; the coordinator finds
    // that CA in its Secret (it never replaces one it finds) and signs itself from it.
    let ca = agent_tls::ca_in(&kafka.work_dir().join("agent-ca"), "kafka", TEST_NAMESPACE)
        .expect("the agents' CA");
    Api::<Secret>::namespaced(client.clone(), TEST_NAMESPACE)
        .create(
            &PostParams::default(),
            &agent_tls::ca_secret(&ca, "kafka", TEST_NAMESPACE),
        )
        .await
        .expect("the CA Secret");

    let token = CancellationToken::new();
    let ctx = Context::new(
        client.clone(),
        "stoker-agent:test".into(),
        &prometheus::Registry::new(),
    );
    let controller = tokio::spawn(stoker_coordinator::controller::kafka_cluster::run(
        ctx,
        token.clone(),
    ));

    // Play the kubelet: report each Pod running at its broker's address.
    let pods: Api<Pod> = Api::namespaced(client.clone(), TEST_NAMESPACE);
    for node in kafka.nodes() {
        let name = format!("kafka-{}", node.id);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while pods.get_opt(&name).await.expect("get").is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the coordinator creates Pod {name}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let running = serde_json::json!({"status": {"phase": "Running", "podIP": node.addr.to_string(),
            "conditions": [{"type": "Ready", "status": "True"}]}});
        pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&running))
            .await
            .expect("pod status");
    }

    // Broker 1's dynamic key reaches the running broker through its agent.
    let admin: AdminClient<DefaultClientContext> = kafka.client_config().create().expect("admin");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let described = admin
            .describe_configs([&ResourceSpecifier::Broker(1)], &AdminOptions::new())
            .await
            .expect("DescribeConfigs");
        let value = described[0]
            .as_ref()
            .ok()
            .and_then(|c| c.get("log.retention.ms"))
            .and_then(|e| e.value.clone());
        if value.as_deref() == Some("7200000") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dynamic key was not applied (last {value:?})"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        kafka.node(1).expect("broker 1").process_id(),
        pid_before,
        "applied without a restart"
    );

    // Status carries what the agents report: the config in force and what waits for a restart.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let broker1 = loop {
        let kc = clusters.get("kafka").await.expect("get");
        let b = kc
            .status
            .as_ref()
            .and_then(|s| s.brokers_state.get("1").cloned());
        if let Some(b) = b.filter(|b| b.config_hash_in_force.is_some() && b.restart_needed) {
            break b;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "status never showed the agent's report: {:?}",
            kc.status
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let reason = broker1.restart_reason.unwrap_or_default();
    // The test brokers advertise their addresses and keep their data elsewhere, so the
    // coordinator's topology differs from theirs: exactly what needs a restart.
    assert!(
        reason.starts_with("static config changed:")
            && reason.contains("listeners")
            && reason.contains("log.dirs"),
        "{reason}"
    );
    assert_ne!(broker1.config_hash_in_force, broker1.desired_config_hash);
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), TEST_NAMESPACE);
    // Every broker whose dynamic config changed gets its own Event; broker 1's names the key.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let notes: Vec<String> = events
            .list(&Default::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("ConfigApplied"))
            .filter_map(|e| e.note)
            .collect();
        if notes
            .iter()
            .any(|n| n.starts_with("broker 1:") && n.contains("log.retention.ms"))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no ConfigApplied Event for broker 1 naming log.retention.ms: {notes:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = clusters.get("kafka").await.expect("get").name_any();

    // The coordinator issued the brokers' agent certificates from that CA.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), TEST_NAMESPACE);
    for id in [1, 2, 3, 100] {
        let s = secrets
            .get(&format!("kafka-agent-{id}-tls"))
            .await
            .expect("a broker's agent Secret");
        let data = s.data.expect("data");
        assert_eq!(
            data.get("ca.crt").map(|b| b.0.clone()),
            Some(ca.cert.clone().into_bytes())
        );
    }

    only_the_coordinator_commands_an_agent(&kafka, &ca).await;
    assert_eq!(
        kafka.node(1).expect("broker 1").process_id(),
        pid_before,
        "no broker restarted"
    );

    token.cancel();
    let _ = controller.await;
}

/// From another address, nothing on an agent's HTTP port stops its broker (the old
/// shutdown endpoints are gone), and a serving broker stays ready; its gRPC port does
/// not take the call of a client that is not the coordinator. (Every refusal and the
/// live rotation are in the agent's `control_surface` test.)
async fn only_the_coordinator_commands_an_agent(kafka: &KafkaCluster, ca: &Ca) {
    let agent1 = kafka.node(1).expect("broker 1").agent().expect("agent 1");
    for (method, path) in [("POST", "/prepare-shutdown"), ("GET", "/prestop")] {
        let r = http::request(agent1.admin, method, path, None)
            .await
            .expect("the admin port answers");
        assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
    }
    let stranger = Caller {
        trusts: ca.cert.clone(),
        identity: None,
        expects: agent_name("kafka", TEST_NAMESPACE, 1),
    };
    let call = async {
        let mut c = agent_tls::client(agent1.grpc, &stranger).await?;
        c.prepare_shutdown(PrepareShutdownRequest {
            broker: Some(BrokerRef {
                cluster: "kafka".into(),
                namespace: TEST_NAMESPACE.into(),
                broker_id: 1,
            }),
        })
        .await
        .map_err(|s| stoker_testenv::Error::Other(s.to_string()))
    };
    assert!(
        call.await.is_err(),
        "a client without a certificate was served"
    );
    let ready = http::get(agent1.admin, "/readyz").await.expect("readyz");
    assert_eq!(
        ready.status, 200,
        "broker 1 stays in service: {}",
        ready.body
    );
}
