//! The agent-injection webhook against a real API server, over TLS: the coordinator
//! issues its CA and serving certificate into a Secret and sets the webhook
//! configuration's `caBundle`; the API server then calls it for every Pod labelled for
//! injection. A labelled Pod is stored with the agent as a native sidecar in observe
//! mode, its preStop safety wait and readiness; a Pod with a bad annotation is refused
//! with what to fix; a Pod that did not ask is never sent. With the webhook down,
//! unrelated Pods are still created and a labelled one is refused (never stored
//! without its agent). A renewed serving certificate (the names changed) is served
//! with the same CA. The cert-manager path — a certificate from a mounted Secret's
//! files, `caBundle` set by its CA injector — is served too, and a renewal of the files
//! is picked up without a restart.

use std::time::Duration;

use k8s_openapi::api::{
    admissionregistration::v1::MutatingWebhookConfiguration,
    core::v1::{Pod, Secret},
};
use kube::{
    Api, Client,
    api::{DeleteParams, PostParams},
};
use stoker_coordinator::webhook::{
    self, WebhookConfig, certs::CertSource, review::Policy, server::MUTATE_PATH,
};
use stoker_testenv::{KubeEnv, net::free_port};
use tokio_util::sync::CancellationToken;

const NS: &str = "brokers";
const SYSTEM: &str = "stoker-system";
/// The chart's name for it (release `stoker`).
const CONFIGURATION: &str = "stoker-coordinator-agent-injector";
const SECRET: &str = "stoker-webhook-tls";

fn pod(name: &str, labelled: bool, annotations: &str) -> Pod {
    let labels = if labelled {
        "{kafka.stoker.io/agent: inject, app.kubernetes.io/instance: events}"
    } else {
        "{app: web}"
    };
    serde_yaml::from_str(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {labels}\n  annotations: {annotations}\nspec:\n  containers:\n  - {{name: kafka, image: apache/kafka:4.1.1}}\n"
    ))
    .expect("a Pod")
}

fn start(
    client: &Client,
    port: u16,
    names: &[&str],
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let token = CancellationToken::new();
    let config = WebhookConfig {
        addr: ([127, 0, 0, 1], port).into(),
        source: CertSource::Issued {
            client: client.clone(),
            namespace: SYSTEM.into(),
            secret: SECRET.into(),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            configuration: Some(CONFIGURATION.into()),
        },
        policy: Policy {
            agent_image: "stoker-agent:test".into(),
            forbidden_namespaces: ["kube-system".to_owned()].into(),
        },
        cert_check: webhook::CERT_CHECK,
    };
    let task = tokio::spawn(webhook::run(
        config,
        prometheus::Registry::new(),
        token.clone(),
    ));
    (token, task)
}

/// Creates `p` once the webhook answers (the first calls may race its startup).
async fn create_when_served(pods: &Api<Pod>, p: &Pod) -> Pod {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match pods.create(&PostParams::default(), p).await {
            Ok(created) => return created,
            Err(e)
                if tokio::time::Instant::now() < deadline
                    && e.to_string().contains("failed calling webhook") =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("creating {:?}: {e}", p.metadata.name),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_injects_the_agent_through_the_coordinators_webhook_over_tls() {
    let KubeEnv { plane, client } = KubeEnv::start(&[NS, SYSTEM]).await.expect("control plane");
    let port = free_port().expect("port");
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    configs
        .create(
            &PostParams::default(),
            &stoker_testenv::chart::webhook_configuration(
                SYSTEM,
                &format!("https://127.0.0.1:{port}{MUTATE_PATH}"),
            )
            .expect("the chart's webhook configuration"),
        )
        .await
        .expect("register the webhook");
    let (token, task) = start(&client, port, &["127.0.0.1"]);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);

    // A labelled Pod is stored with the agent.
    let injected = create_when_served(&pods, &pod("kafka-0", true, "{}")).await;
    let spec = injected.spec.expect("spec");
    let agent = spec
        .init_containers
        .as_ref()
        .and_then(|c| c.iter().find(|c| c.name == "stoker-agent"))
        .expect("the agent is injected");
    assert_eq!(agent.image.as_deref(), Some("stoker-agent:test"));
    assert_eq!(agent.args.as_deref(), Some(&["observe".to_owned()][..]));
    assert_eq!(
        agent.restart_policy.as_deref(),
        Some("Always"),
        "a native sidecar"
    );
    let kafka = &spec.containers[0];
    assert!(
        kafka
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .and_then(|h| h.exec.as_ref())
            .and_then(|e| e.command.as_ref())
            .is_some_and(|c| c
                .join(" ")
                .contains("/var/run/stoker-control/prestop.request")),
        "Kafka's preStop is the agent's safety wait"
    );
    assert!(
        kafka
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == "/var/run/stoker-control"),
        "Kafka shares the control folder with the agent"
    );
    assert!(kafka.readiness_probe.is_some());
    let configured = configs.get(CONFIGURATION).await.expect("configuration");
    let secret: Api<Secret> = Api::namespaced(client.clone(), SYSTEM);
    let stored = secret.get(SECRET).await.expect("the coordinator's Secret");
    let ca = stored
        .data
        .as_ref()
        .and_then(|d| d.get("ca.crt"))
        .cloned()
        .expect("ca.crt");
    assert_eq!(
        configured.webhooks.as_ref().expect("webhooks")[0]
            .client_config
            .ca_bundle
            .as_ref(),
        Some(&ca),
        "the caBundle is the coordinator's CA"
    );

    // A bad annotation: refused with what to fix.
    let err = pods
        .create(
            &PostParams::default(),
            &pod("kafka-1", true, "{kafka.stoker.io/roles: leader}"),
        )
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains("kafka.stoker.io/roles")
            && err.to_string().contains("must be broker, controller"),
        "{err}"
    );
    assert!(
        pods.get_opt("kafka-1").await.expect("get").is_none(),
        "nothing stored"
    );

    // A renewed certificate (another name) is served with no restart and the same CA.
    token.cancel();
    let _ = task.await;
    let (token, task) = start(&client, port, &["127.0.0.1", "localhost"]);
    let renewed = create_when_served(&pods, &pod("kafka-2", true, "{}")).await;
    assert!(renewed.spec.expect("spec").init_containers.is_some());
    let after = secret.get(SECRET).await.expect("Secret");
    assert_eq!(
        after.data.as_ref().and_then(|d| d.get("ca.crt")),
        Some(&ca),
        "the CA is kept"
    );
    assert_ne!(
        after.data.as_ref().and_then(|d| d.get("tls.crt")),
        stored.data.as_ref().and_then(|d| d.get("tls.crt")),
        "the serving certificate was renewed"
    );

    // With the webhook down, Pods that did not ask are created; one that asked is not
    // stored without its agent.
    token.cancel();
    let _ = task.await;
    let web = pods
        .create(&PostParams::default(), &pod("web-0", false, "{}"))
        .await
        .expect("an unrelated Pod is not held up by the webhook");
    assert!(web.spec.expect("spec").init_containers.is_none());
    let err = pods
        .create(&PostParams::default(), &pod("kafka-3", true, "{}"))
        .await
        .expect_err("a Pod that asked for the agent waits for the webhook");
    assert!(err.to_string().contains("failed calling webhook"), "{err}");

    for name in ["kafka-0", "kafka-2", "web-0"] {
        let _ = pods.delete(name, &DeleteParams::default()).await;
    }
    drop(plane);
}

/// The cert-manager path (`injection.certManager.issuerRef`): the serving certificate
/// comes from files of a mounted Secret (`tls.crt`, `tls.key`, as cert-manager writes
/// them) and `caBundle` is set by cert-manager's CA injector (here, the test). The
/// real API server calls the webhook over TLS with that certificate, and a renewed
/// pair of files is served without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_mounted_files_is_served_and_its_renewal_picked_up() {
    let KubeEnv {
        plane: _plane,
        client,
    } = KubeEnv::start(&[NS, SYSTEM]).await.expect("control plane");
    let now = time::OffsetDateTime::now_utc();
    let names = vec!["127.0.0.1".to_owned()];
    let first = stoker_coordinator::webhook::tls::issue_all(&names, now).expect("a certificate");
    let dir = stoker_testenv::WorkDir::new("webhook-files").expect("work dir");
    dir.write("tls.crt", &first.cert).expect("tls.crt");
    dir.write("tls.key", &first.key).expect("tls.key");

    let port = free_port().expect("port");
    let mut configuration = stoker_testenv::chart::webhook_configuration(
        SYSTEM,
        &format!("https://127.0.0.1:{port}{MUTATE_PATH}"),
    )
    .expect("the chart's webhook configuration");
    for w in configuration.webhooks.iter_mut().flatten() {
        w.client_config.ca_bundle =
            Some(k8s_openapi::ByteString(first.ca_cert.clone().into_bytes()));
    }
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &configuration)
        .await
        .expect("register the webhook");
    let token = CancellationToken::new();
    let task = tokio::spawn(webhook::run(
        WebhookConfig {
            addr: ([127, 0, 0, 1], port).into(),
            source: CertSource::Files(dir.path().to_owned()),
            policy: Policy {
                agent_image: "stoker-agent:test".into(),
                forbidden_namespaces: ["kube-system".to_owned()].into(),
            },
            cert_check: Duration::from_secs(1),
        },
        prometheus::Registry::new(),
        token.clone(),
    ));
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let injected = create_when_served(&pods, &pod("kafka-0", true, "{}")).await;
    assert!(
        injected
            .spec
            .and_then(|s| s.init_containers)
            .is_some_and(|c| c.iter().any(|c| c.name == "stoker-agent")),
        "injected with the certificate from files"
    );

    // cert-manager renews: a new pair from the same CA is written over the files; once
    // the webhook has re-read them it serves the new certificate.
    let renewed =
        stoker_coordinator::webhook::tls::issue_leaf(&first.ca_cert, &first.ca_key, &names, now)
            .expect("a renewed certificate");
    assert_ne!(renewed.cert, first.cert);
    dir.write("tls.crt", &renewed.cert).expect("tls.crt");
    dir.write("tls.key", &renewed.key).expect("tls.key");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if served_certificate(port, &first.ca_cert).await == pem_der(&renewed.cert) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the renewed certificate is not served"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let again = create_when_served(&pods, &pod("kafka-1", true, "{}")).await;
    assert!(again.spec.and_then(|s| s.init_containers).is_some());
    token.cancel();
    let _ = task.await;
}

/// The DER of the first certificate in `pem`.
fn pem_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("a PEM certificate")
        .to_vec()
}

/// The certificate the webhook on `port` serves now, from a TLS handshake that
/// trusts `ca_pem` only.
async fn served_certificate(port: u16, ca_pem: &str) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(pem_der(ca_pem)))
        .expect("the CA");
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("a name");
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, stream)
        .await
        .expect("a TLS handshake the CA vouches for");
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("a served certificate")
        .to_vec()
}
