//! End to end on the local Pod runtime: the example KafkaCluster with a TLS client
//! listener (`type: ssl`, `sslSecrets.create: true`). The coordinator creates the
//! cluster's CA in the named Secret and issues every broker a certificate for its
//! advertised name and the bootstrap Service; clients that trust only that CA produce
//! and consume through the listener with hostname verification; a broker's certificate
//! issued again (its Secret deleted) is served by that broker within seconds with no
//! container restarted; switched to a CA the user brings (`create: false`), Stoker says
//! what it waits for, then every broker serves a certificate from that CA, again with
//! no restart; a spec asking for TLS between brokers is refused, and the cluster keeps
//! serving.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::{
    ByteString,
    api::core::v1::{Pod, Secret},
};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use stoker_coordinator::crd::v1alpha1::{InternalListener, KafkaCluster, SslSecrets};
use stoker_testenv::{WorkDir, tls};
use support::*;

const TLS_PORT: i32 = 29094;
const CA_SECRET: &str = "kf-kafka-tls-ca";

fn with_tls_listener(mut kc: KafkaCluster) -> KafkaCluster {
    kc.spec
        .listeners_config
        .internal_listeners
        .push(InternalListener {
            type_: "ssl".into(),
            name: "tls".into(),
            container_port: TLS_PORT,
            ..InternalListener::default()
        });
    kc.spec.listeners_config.ssl_secrets = Some(SslSecrets {
        tls_secret_name: CA_SECRET.into(),
        create: true,
    });
    kc
}

fn data(secret: &Secret, key: &str) -> Vec<u8> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .unwrap_or_default()
}

/// The certificate broker `id`'s TLS listener serves, verified for its advertised name.
async fn served(pods: &Api<Pod>, id: i32, ca: &[u8]) -> Result<Vec<u8>, String> {
    let pod = pods
        .get(&format!("{CLUSTER}-{id}"))
        .await
        .map_err(|e| e.to_string())?;
    let ip: std::net::IpAddr = pod
        .status
        .and_then(|s| s.pod_ip)
        .ok_or("no Pod IP")?
        .parse()
        .map_err(|e: std::net::AddrParseError| e.to_string())?;
    let name = format!("{CLUSTER}-{id}.{NS}.svc.cluster.local");
    tls::served_certificate((ip, TLS_PORT as u16).into(), &name, ca)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_listener_serves_certificates_the_coordinator_issues_and_renews() {
    let env = Env::start_with(with_tls_listener(example_cluster())).await;
    let secrets: Api<Secret> = Api::namespaced(env.clusters.clone().into_client(), NS);
    let ca_secret = secrets
        .get(CA_SECRET)
        .await
        .expect("the CA Secret was created");
    let ca = data(&ca_secret, "ca.crt");
    assert!(
        !data(&ca_secret, "ca.key").is_empty(),
        "the CA keeps its key"
    );
    for id in [0, 1, 2] {
        let s = secrets
            .get(&format!("{CLUSTER}-broker-{id}-tls"))
            .await
            .expect("a broker certificate");
        assert_eq!(
            data(&s, "ca.crt"),
            ca,
            "broker {id}'s certificate is from the CA"
        );
        let served = served(&env.pods, id, &ca).await.expect("a TLS handshake");
        assert_eq!(
            served,
            tls::first_certificate(&data(&s, "tls.crt")).expect("PEM"),
            "broker {id} serves its Secret's certificate"
        );
    }

    // Clients that trust only the cluster's CA, with hostname verification (Kafka's
    // default), produce and consume through the TLS listener.
    let work = WorkDir::new("tls-clients").expect("work dir");
    let ca_file = work.write("ca.crt", &ca).expect("write CA");
    let props = work
        .write(
            "client.properties",
            format!(
                "security.protocol=SSL\nssl.truststore.type=PEM\nssl.truststore.location={}\n",
                ca_file.display()
            ),
        )
        .expect("write client config");
    let plain = format!("{CLUSTER}-all-broker.{NS}.svc.cluster.local:9092");
    let over_tls = format!("{CLUSTER}-all-broker.{NS}.svc.cluster.local:{TLS_PORT}");
    create_topic(&env.runtime, &plain, "tls", 3, 3, 2);
    let props = props.display().to_string();
    let out = kafka_tool(
        &env.runtime,
        "kafka-verifiable-producer.sh",
        &[
            "--bootstrap-server",
            &over_tls,
            "--producer.config",
            &props,
            "--topic",
            "tls",
            "--max-messages",
            "500",
            "--acks",
            "-1",
        ],
    );
    assert_eq!(
        out.matches("\"producer_send_success\"").count(),
        500,
        "every record acknowledged over TLS:\n{out}"
    );
    let out = kafka_tool(
        &env.runtime,
        "kafka-verifiable-consumer.sh",
        &[
            "--bootstrap-server",
            &over_tls,
            "--consumer.config",
            &props,
            "--topic",
            "tls",
            "--group-id",
            "tls-1",
            "--max-messages",
            "500",
            "--reset-policy",
            "earliest",
        ],
    );
    assert_eq!(sum_events(&out, "records_consumed", "count"), 500);

    // Broker 1's certificate issued again (its Secret deleted): served within seconds,
    // nothing restarted.
    let before = env
        .pods
        .list(&Default::default())
        .await
        .expect("pods")
        .items;
    let old = served(&env.pods, 1, &ca).await.expect("served");
    secrets
        .delete(&format!("{CLUSTER}-broker-1-tls"), &DeleteParams::default())
        .await
        .expect("delete broker 1's certificate");
    let started = Instant::now();
    let renewed = loop {
        if let Ok(s) = secrets.get(&format!("{CLUSTER}-broker-1-tls")).await {
            let cert = tls::first_certificate(&data(&s, "tls.crt")).expect("PEM");
            if cert != old && served(&env.pods, 1, &ca).await.as_ref() == Ok(&cert) {
                break cert;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "broker 1 did not serve a new certificate within 90 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    println!(
        "FIGURE tls_reissued_served_s={:.1}",
        started.elapsed().as_secs_f64()
    );
    assert_ne!(renewed, old);
    let after = env
        .pods
        .list(&Default::default())
        .await
        .expect("pods")
        .items;
    assert_eq!(broker_uids(&after), broker_uids(&before), "no Pod replaced");
    assert_eq!(
        restarts(&after),
        restarts(&before),
        "no container restarted"
    );

    // A CA the user brings (create: false): until its Secret is there Stoker says what
    // it waits for; then every broker gets a certificate from it, served without a
    // restart.
    let patch = serde_json::json!({"spec": {"listenersConfig": {"sslSecrets": {
        "tlsSecretName": "acme-ca", "create": false,
    }}}});
    env.clusters
        .patch(CLUSTER, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let notes = event_notes(&env, "CaSecretUnusable").await;
        if let Some(n) = notes.iter().find(|n| n.contains("acme-ca")) {
            assert!(n.contains("yours to bring") && n.contains("ca.key"), "{n}");
            break;
        }
        assert!(Instant::now() < deadline, "no Warning about the missing CA");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let acme = stoker_proto::pki::issue_ca(
        "Acme Root CA",
        time::OffsetDateTime::now_utc(),
        time::Duration::days(365),
    )
    .expect("the user's CA");
    let user_secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("acme-ca".into()),
            labels: Some(
                [(
                    "app.kubernetes.io/component".to_owned(),
                    "listener-tls".to_owned(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        data: Some(
            [
                (
                    "ca.crt".to_owned(),
                    ByteString(acme.cert.clone().into_bytes()),
                ),
                (
                    "ca.key".to_owned(),
                    ByteString(acme.key.clone().into_bytes()),
                ),
            ]
            .into(),
        ),
        ..Default::default()
    };
    secrets
        .create(&Default::default(), &user_secret)
        .await
        .expect("create the user's CA Secret");
    let started = Instant::now();
    for id in [0, 1, 2] {
        while served(&env.pods, id, acme.cert.as_bytes()).await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "broker {id} does not serve a certificate from the user's CA"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    println!(
        "FIGURE tls_user_ca_all_brokers_s={:.1}",
        started.elapsed().as_secs_f64()
    );
    let now = env
        .pods
        .list(&Default::default())
        .await
        .expect("pods")
        .items;
    assert_eq!(broker_uids(&now), broker_uids(&before), "no Pod replaced");
    assert_eq!(restarts(&now), restarts(&before), "no container restarted");
    assert!(
        secrets.get("acme-ca").await.is_ok(),
        "the user's Secret is theirs: kept"
    );

    // TLS between brokers is refused naming the field; the brokers keep serving.
    let patch = serde_json::json!({"spec": {"listenersConfig": {"internalListeners": [
        {"type": "ssl", "name": "plaintext", "containerPort": 9092, "usedForInnerBrokerCommunication": true},
        {"type": "plaintext", "name": "controller", "containerPort": 29093, "usedForControllerCommunication": true},
        {"type": "ssl", "name": "tls", "containerPort": TLS_PORT},
    ]}}});
    env.clusters
        .patch(CLUSTER, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    let message = wait_condition(
        &env.clusters,
        "Invalid",
        &[
            "internalListeners[0] is the inter-broker listener",
            "not built yet",
        ],
    )
    .await;
    println!("refused: {message}");
    served(&env.pods, 0, acme.cert.as_bytes())
        .await
        .expect("still serving TLS");
    env.stop().await;
}
