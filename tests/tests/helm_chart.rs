//! The coordinator's Helm chart: it lints, its CRDs are the generated ones, it renders
//! objects a real API server accepts, and the RBAC it grants is enough: the controller
//! and the leader election run as the chart's ServiceAccount and reconcile the example.

use std::time::Duration;

use k8s_openapi::api::{
    apps::v1::Deployment,
    authentication::v1::{TokenRequest, TokenRequestSpec},
    core::v1::{Namespace, Pod, ServiceAccount},
};
use kube::{
    Api, Client, ResourceExt,
    api::{DynamicObject, Patch, PatchParams, PostParams},
    core::GroupVersionKind,
    discovery::{self, Scope},
};
use stoker_coordinator::{context::Context, crd::v1alpha1::KafkaCluster};
use stoker_testenv::{
    ControlPlane,
    control_plane::{ControlPlaneOptions, client_from_kubeconfig},
};
use tokio_util::sync::CancellationToken;

mod support;
use support::{AGENT_IMAGE, NS, bare_runtime, example_cluster, local_images, wait_cluster_ready};

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/helm/stoker");
const RELEASE_NS: &str = "stoker-system";

fn helm(args: &[&str]) -> String {
    stoker_testenv::chart::helm(args).unwrap_or_else(|e| panic!("{e}"))
}

/// `helm template` of release `stoker` in the release namespace, with `extra` flags.
fn template(extra: &[&str]) -> String {
    let mut args = vec!["template", "stoker", CHART, "--namespace", RELEASE_NS];
    args.extend_from_slice(extra);
    helm(&args)
}

async fn apply_all(client: &Client, yaml: &str) {
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_yaml::Value::deserialize(doc).expect("a YAML document");
        if value.is_null() {
            continue;
        }
        let obj: DynamicObject = serde_yaml::from_value(value).expect("a Kubernetes object");
        let types = obj.types.clone().expect("apiVersion and kind");
        let gvk = GroupVersionKind::try_from(&types).expect("a GVK");
        let (resource, caps) = discovery::pinned_kind(client, &gvk)
            .await
            .expect("the API server serves the kind");
        let api: Api<DynamicObject> = if caps.scope == Scope::Namespaced {
            Api::namespaced_with(
                client.clone(),
                obj.namespace().as_deref().unwrap_or(RELEASE_NS),
                &resource,
            )
        } else {
            Api::all_with(client.clone(), &resource)
        };
        api.patch(
            &obj.name_any(),
            &PatchParams::apply("helm-test").force(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the API server refused {} {}: {e}",
                types.kind,
                obj.name_any()
            )
        });
    }
}

use serde::Deserialize as _;

/// Every key of `values`, dotted, down to the leaves (a map whose keys are free-form, like
/// `resources` or `nodeSelector`, counts as one leaf when its default is empty or it is
/// documented whole).
fn value_keys(prefix: &str, values: &serde_yaml::Value, out: &mut Vec<String>) {
    match values.as_mapping() {
        Some(m) if !m.is_empty() && !["resources"].contains(&prefix) => {
            for (k, v) in m {
                let key = k.as_str().expect("string keys");
                let path = if prefix.is_empty() {
                    key.to_owned()
                } else {
                    format!("{prefix}.{key}")
                };
                value_keys(&path, v, out);
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

#[test]
fn the_charts_readme_documents_every_value() {
    let values: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(format!("{CHART}/values.yaml")).expect("values.yaml"),
    )
    .expect("values.yaml parses");
    let readme = std::fs::read_to_string(format!("{CHART}/README.md")).expect("the chart's README");
    let mut keys = Vec::new();
    value_keys("", &values, &mut keys);
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !readme.contains(&format!("| `{k}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "deploy/helm/stoker/README.md's table lacks {missing:?}"
    );
    assert!(keys.len() > 10, "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_installs_and_its_rbac_runs_the_coordinator() {
    helm(&["lint", CHART]);
    let chart_crds =
        std::fs::read_to_string(format!("{CHART}/crds/kafka.stoker.io.yaml")).expect("chart CRDs");
    assert!(
        chart_crds == include_str!("../../deploy/crds/kafka.stoker.io.yaml"),
        "deploy/helm/stoker/crds is out of date; copy deploy/crds/kafka.stoker.io.yaml into it"
    );
    let rendered = template(&["--include-crds", "--set", "replicaCount=2"]);

    let plane = ControlPlane::start_with(ControlPlaneOptions {
        controller_manager: false,
    })
    .await
    .expect("control plane");
    let admin = plane.client().await.expect("admin client");
    let _namespaces: Api<Namespace> = Api::all(admin.clone());
    for ns in [RELEASE_NS, "alerting"] {
        plane.create_namespace(ns).await.expect("namespace");
    }
    apply_all(&admin, &rendered).await;
    let deploy = Api::<Deployment>::namespaced(admin.clone(), RELEASE_NS)
        .get("stoker-coordinator")
        .await
        .expect("the Deployment");
    let env = deploy
        .spec
        .and_then(|s| s.template.spec)
        .map(|s| s.containers[0].env.clone().unwrap_or_default())
        .unwrap_or_default();
    let leader = env
        .iter()
        .find(|e| e.name == "STOKER_COORDINATOR_LEADER_ELECTION")
        .and_then(|e| e.value.clone());
    assert_eq!(
        leader.as_deref(),
        Some("true"),
        "two replicas elect a leader"
    );
    // The alert receiver is on, authenticated by a generated token in a Secret.
    let token_file = env
        .iter()
        .find(|e| e.name == "STOKER_COORDINATOR_ALERTS_TOKEN_FILE")
        .and_then(|e| e.value.clone())
        .expect("the receiver's token file is set");
    assert!(token_file.starts_with("/var/run/stoker/alert-receiver/"));
    let secret = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(admin.clone(), RELEASE_NS)
        .get("stoker-coordinator-alert-receiver")
        .await
        .expect("the token Secret");
    let token = secret
        .data
        .and_then(|d| d.get("token").cloned())
        .expect("a token");
    assert_eq!(token.0.len(), 48, "a long random token");
    let service = Api::<k8s_openapi::api::core::v1::Service>::namespaced(admin.clone(), RELEASE_NS)
        .get("stoker-coordinator-alert-receiver")
        .await
        .expect("the receiver's Service");
    let port = service
        .spec
        .and_then(|s| s.ports)
        .and_then(|p| p.first().map(|p| p.port));
    assert_eq!(port, Some(9001));

    // Act as the chart's ServiceAccount.
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), RELEASE_NS);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let token: TokenRequest = sas
        .create_subresource(
            "token",
            "stoker-coordinator",
            &PostParams::default(),
            &request,
        )
        .await
        .expect("a token for the chart's ServiceAccount");
    let token = token.status.expect("issued").token;
    let kubeconfig = std::fs::read_to_string(plane.kubeconfig()).expect("kubeconfig");
    let admin_token = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .expect("admin token")
        .to_owned();
    let sa_kubeconfig = plane.work_dir().join("coordinator-kubeconfig");
    std::fs::write(&sa_kubeconfig, kubeconfig.replace(&admin_token, &token))
        .expect("write kubeconfig");
    let as_coordinator = client_from_kubeconfig(&sa_kubeconfig)
        .await
        .expect("client");

    // Leader election in the release namespace works with the chart's Role.
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let cfg = stoker_coordinator::lease::LeaseConfig {
        name: "stoker-coordinator".into(),
        namespace: RELEASE_NS.into(),
        identity: "test".into(),
        duration: Duration::from_secs(15),
        renew: Duration::from_secs(1),
    };
    let lease = tokio::spawn(stoker_coordinator::lease::run(
        as_coordinator.clone(),
        cfg,
        tx,
    ));
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|l| *l))
        .await
        .expect("leads in time")
        .expect("lease runs");
    lease.abort();

    // The webhook's certificate, issued as the chart's ServiceAccount: its Secret is
    // created, then kept (read) on the next check, and the chart's webhook
    // configuration gets the CA as caBundle.
    let env_value = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
            .unwrap_or_else(|| panic!("{name} is set by the chart"))
    };
    let source = stoker_coordinator::webhook::certs::CertSource::Issued {
        client: as_coordinator.clone(),
        namespace: RELEASE_NS.into(),
        secret: env_value("STOKER_COORDINATOR_WEBHOOK_SECRET"),
        names: env_value("STOKER_COORDINATOR_WEBHOOK_NAMES")
            .split(',')
            .map(str::to_owned)
            .collect(),
        configuration: Some(env_value("STOKER_COORDINATOR_WEBHOOK_CONFIGURATION")),
    };
    let (_, first) = stoker_coordinator::webhook::certs::current(&source)
        .await
        .expect("the chart's RBAC lets the coordinator issue the webhook certificate");
    let (_, again) = stoker_coordinator::webhook::certs::current(&source)
        .await
        .expect("and read it back");
    assert_eq!(first, again, "a valid certificate is kept");
    let injector =
        Api::<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration>::all(
            admin.clone(),
        )
        .get("stoker-coordinator-agent-injector")
        .await
        .expect("the chart's webhook configuration");
    assert!(
        injector.webhooks.as_ref().expect("webhooks")[0]
            .client_config
            .ca_bundle
            .is_some(),
        "caBundle set"
    );

    // The controller, as the chart's ServiceAccount, reconciles the example fully: its
    // broker Pods are created though the registered webhook has no endpoint (they are
    // not labelled for injection, so they are never sent to it).
    let token = CancellationToken::new();
    let ctx = Context::new(
        as_coordinator,
        "stoker-agent:test".into(),
        &prometheus::Registry::new(),
    );
    let controller = tokio::spawn(stoker_coordinator::controller::kafka_cluster::run(
        ctx,
        token.clone(),
    ));
    let example: KafkaCluster =
        serde_yaml::from_str(include_str!("../../deploy/examples/kafkacluster.yaml"))
            .expect("example");
    let clusters: Api<KafkaCluster> = Api::namespaced(admin.clone(), "alerting");
    clusters
        .create(&PostParams::default(), &example)
        .await
        .expect("the example");
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "alerting");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let kc = clusters.get("kf-kafka").await.expect("get");
        let done = kc
            .status
            .as_ref()
            .is_some_and(|s| s.ready_brokers.as_deref() == Some("0/4"));
        if done
            && pods
                .list(&Default::default())
                .await
                .expect("pods")
                .items
                .len()
                == 4
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the controller could not reconcile with the chart's RBAC; failures by category show in its log"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    token.cancel();
    let _ = controller.await;
}

/// `helm install` as a user runs it, with the coordinator's Deployment run by the local
/// Pod runtime (its image mapped to the built binary, in-cluster credentials from its
/// ServiceAccount token): the installed coordinator — not one the test starts — brings
/// the example KafkaCluster to Ready, and serves its metrics and the authenticated
/// alert receiver. Prints the time from `helm install` to the coordinator Ready and to
/// the cluster Ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_runs_a_coordinator_that_brings_the_example_to_ready() {
    let (plane, client, runtime) = bare_runtime(&[NS], true, local_images(true)).await;
    let (agent_repository, agent_tag) = AGENT_IMAGE.rsplit_once(':').expect("a tag");
    let kubeconfig = plane.kubeconfig().display().to_string();
    let start = std::time::Instant::now();
    helm(&[
        "install",
        "stoker",
        CHART,
        "--kubeconfig",
        &kubeconfig,
        "--namespace",
        RELEASE_NS,
        "--create-namespace",
        "--set",
        "image.repository=ghcr.io/stoker-operator/stoker-coordinator",
        "--set",
        "image.tag=dev",
        "--set",
        &format!("agentImage.repository={agent_repository}"),
        "--set",
        &format!("agentImage.tag={agent_tag}"),
        // Loopback addresses only on this machine: each Pod binds its own.
        "--set",
        "bindAddress=$(POD_IP)",
        "--set",
        "logFormat=plain",
    ]);
    let installed = start.elapsed();

    // The Deployment's Pod (made by the real controller manager) runs and is Ready.
    let system_pods: Api<Pod> = Api::namespaced(client.clone(), RELEASE_NS);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let coordinator = loop {
        let list = system_pods
            .list(
                &kube::api::ListParams::default()
                    .labels("app.kubernetes.io/name=stoker-coordinator"),
            )
            .await
            .expect("pods");
        let ready = list.items.iter().find(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        });
        if let Some(pod) = ready {
            break pod.clone();
        }
        if std::time::Instant::now() > deadline {
            let logs: Vec<String> = list
                .items
                .iter()
                .map(|p| {
                    let log = runtime.container_log(RELEASE_NS, &p.name_any(), "coordinator");
                    format!(
                        "{}: {:?}\n{}",
                        p.name_any(),
                        p.status,
                        std::fs::read_to_string(&log).unwrap_or_default()
                    )
                })
                .collect();
            panic!(
                "the installed coordinator is not Ready after 120 s:\n{}",
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let coordinator_ready = start.elapsed();

    // The installed coordinator reconciles the example to Ready.
    let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    clusters
        .create(&PostParams::default(), &example_cluster())
        .await
        .expect("the example");
    wait_cluster_ready(
        &clusters,
        &pods,
        "the example, through the installed coordinator",
    )
    .await;
    let cluster_ready = start.elapsed();

    // Its admin server serves its metrics; its alert receiver refuses a request without
    // the chart's token.
    let ip: std::net::IpAddr = coordinator
        .status
        .and_then(|s| s.pod_ip)
        .expect("a Pod IP")
        .parse()
        .expect("an IP");
    let metrics = stoker_testenv::http::get((ip, 8080).into(), "/metrics")
        .await
        .expect("the coordinator's /metrics");
    assert!(
        metrics
            .body
            .contains("stoker_reconcile_runs_total{controller=\"kafkacluster\"}"),
        "{}",
        metrics.body
    );
    let refused = stoker_testenv::http::request((ip, 9001).into(), "POST", "/alerts", Some("[]"))
        .await
        .expect("the alert receiver answers");
    assert_eq!(refused.status, 401, "{}", refused.body);

    println!(
        "helm install took {:.1} s; coordinator Ready {:.1} s and the example KafkaCluster Ready {:.1} s after it started",
        installed.as_secs_f64(),
        coordinator_ready.as_secs_f64(),
        cluster_ready.as_secs_f64()
    );
    drop(runtime);
}

/// With `injection.certManager.issuerRef`, the chart asks cert-manager for the webhook's
/// certificate and the coordinator reads it from files: a Certificate for the webhook
/// Service's names into the Secret the Deployment mounts at the directory the
/// coordinator reads (`tls.crt`, `tls.key`), the webhook configuration annotated for
/// cert-manager's CA injector, and no Secret of the coordinator's own issuing.
/// (cert-manager itself is not run here; `coordinator/tests/webhook.rs` serves a
/// certificate from such files to the real API server.)
#[test]
fn the_cert_manager_path_renders_a_certificate_the_coordinator_reads() {
    let rendered = template(&[
        "--set",
        "injection.certManager.issuerRef.kind=Issuer",
        "--set",
        "injection.certManager.issuerRef.name=ca",
    ]);
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&rendered)
        .map(|d| serde_yaml::Value::deserialize(d).expect("YAML"))
        .filter(|d| !d.is_null())
        .collect();
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"] == k)
            .unwrap_or_else(|| panic!("the chart renders a {k}"))
            .clone()
    };
    let certificate = kind("Certificate");
    let secret = certificate["spec"]["secretName"]
        .as_str()
        .expect("a secretName")
        .to_owned();
    assert_eq!(certificate["spec"]["issuerRef"]["name"], "ca");
    let names: Vec<&str> = certificate["spec"]["dnsNames"]
        .as_sequence()
        .expect("dnsNames")
        .iter()
        .filter_map(|n| n.as_str())
        .collect();
    assert!(
        names.contains(&"stoker-coordinator-webhook.stoker-system.svc"),
        "{names:?}"
    );
    let webhook = kind("MutatingWebhookConfiguration");
    assert_eq!(
        webhook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "stoker-system/stoker-coordinator-webhook"
    );
    let deployment = kind("Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let env = |name: &str| {
        container["env"]
            .as_sequence()
            .expect("env")
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].as_str().unwrap_or_default().to_owned())
    };
    let dir = env("STOKER_COORDINATOR_WEBHOOK_CERT_DIR").expect("the coordinator reads files");
    assert!(
        env("STOKER_COORDINATOR_WEBHOOK_SECRET").is_none(),
        "the coordinator issues nothing of its own"
    );
    let mount = container["volumeMounts"]
        .as_sequence()
        .expect("mounts")
        .iter()
        .find(|m| m["mountPath"] == dir.as_str())
        .expect("the certificate's directory is mounted");
    let volume = pod["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("its volume");
    assert_eq!(
        volume["secret"]["secretName"].as_str(),
        Some(secret.as_str()),
        "the mounted Secret is the one cert-manager writes"
    );
}
