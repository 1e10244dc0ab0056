//! End to end on the local Pod runtime: the example KafkaCluster with a TLS client
//! listener (`type: ssl`, `sslSecrets.create: true`). The coordinator creates the
//! cluster's CA in the named Secret and issues every broker a certificate for its
//! advertised name and the bootstrap Service; clients that trust only that CA produce
//! and consume through the listener with hostname verification; a broker's certificate
//! issued again (its Secret deleted) is served by that broker within seconds with no
//! container restarted; switched to a CA the user brings (`create: false`), Stoker says
//! what it waits for, then every broker serves a certificate from that CA, again with
//! no restart; a spec asking for SASL between brokers is refused, and the cluster keeps
//! serving.
//!
//! And a cluster with no plaintext listener at all: mutual TLS between brokers and
//! controllers, Kafka's authorizer on; it becomes Ready, the coordinator manages its
//! topics through its own certificate, clients authenticate with certificates from the
//! cluster's CA (a super user produces and consumes, anyone else is refused), a
//! KafkaUser with `authentication.type: tls` gets a certificate and exactly its ACLs,
//! and every node's certificate issued again is served with no restart while a
//! producer runs.

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

/// A Kafka client config in `work` trusting `ca` (PEM), presenting `keystore` (Kafka's
/// PEM keystore: key, then certificate) when given; returns its path.
fn client_properties(work: &WorkDir, name: &str, ca: &[u8], keystore: Option<&[u8]>) -> String {
    let ca_file = work.write(&format!("{name}-ca.crt"), ca).expect("write CA");
    let mut props = format!(
        "security.protocol=SSL\nssl.truststore.type=PEM\nssl.truststore.location={}\n",
        ca_file.display()
    );
    if let Some(k) = keystore {
        let file = work
            .write(&format!("{name}.pem"), k)
            .expect("write keystore");
        props.push_str(&format!(
            "ssl.keystore.type=PEM\nssl.keystore.location={}\n",
            file.display()
        ));
    }
    work.write(&format!("{name}.properties"), props)
        .expect("write client config")
        .display()
        .to_string()
}

/// Produces `produce` records to `topic` (acks=all) and consumes `consume` from its
/// start as group `group`, both with the client config `props`; fails on any loss.
fn produce_and_consume(
    runtime: &stoker_testenv::PodRuntime,
    bootstrap: &str,
    props: &str,
    topic: &str,
    (produce, consume): (usize, u64),
    group: &str,
) {
    let (produce_n, consume_n) = (produce.to_string(), consume.to_string());
    let out = kafka_tool(
        runtime,
        "kafka-verifiable-producer.sh",
        &[
            "--bootstrap-server",
            bootstrap,
            "--producer.config",
            props,
            "--topic",
            topic,
            "--max-messages",
            &produce_n,
            "--acks",
            "-1",
        ],
    );
    assert_eq!(
        out.matches("\"producer_send_success\"").count(),
        produce,
        "every record acknowledged over TLS:\n{out}"
    );
    let out = kafka_tool(
        runtime,
        "kafka-verifiable-consumer.sh",
        &[
            "--bootstrap-server",
            bootstrap,
            "--consumer.config",
            props,
            "--topic",
            topic,
            "--group-id",
            group,
            "--max-messages",
            &consume_n,
            "--reset-policy",
            "earliest",
        ],
    );
    assert_eq!(sum_events(&out, "records_consumed", "count"), consume);
}

/// Fails unless every broker Pod of `before` is still there (same uid) and no container
/// restarted since.
async fn assert_nothing_restarted(pods: &Api<Pod>, before: &[Pod]) {
    let now = pods.list(&Default::default()).await.expect("pods").items;
    assert_eq!(broker_uids(&now), broker_uids(before), "no Pod replaced");
    assert_eq!(restarts(&now), restarts(before), "no container restarted");
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
    let props = client_properties(&work, "client", &ca, None);
    let plain = format!("{CLUSTER}-all-broker.{NS}.svc.cluster.local:9092");
    let over_tls = format!("{CLUSTER}-all-broker.{NS}.svc.cluster.local:{TLS_PORT}");
    create_topic(&env.runtime, &plain, "tls", 3, 3, 2);
    produce_and_consume(&env.runtime, &over_tls, &props, "tls", (500, 500), "tls-1");

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
    assert_nothing_restarted(&env.pods, &before).await;

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
    assert_nothing_restarted(&env.pods, &before).await;
    assert!(
        secrets.get("acme-ca").await.is_ok(),
        "the user's Secret is theirs: kept"
    );

    // SASL between brokers is refused naming the field; the brokers keep serving.
    let patch = serde_json::json!({"spec": {"listenersConfig": {"internalListeners": [
        {"type": "sasl_ssl", "name": "plaintext", "containerPort": 9092, "usedForInnerBrokerCommunication": true},
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
            "not SASL",
        ],
    )
    .await;
    println!("refused: {message}");
    served(&env.pods, 0, acme.cert.as_bytes())
        .await
        .expect("still serving TLS");
    env.stop().await;
}

const AUTHORIZER: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";
/// The bootstrap Service's name, which every node's certificate carries.
const SERVICE_NAME: &str = "kf-kafka-all-broker.alerting.svc.cluster.local";

/// The example cluster with no plaintext listener: the inter-broker and controller
/// listeners `ssl` (mutual TLS), Kafka's authorizer on, `CN=ops-admin,O=acme` a super
/// user of the user's own. Cruise Control goes: its TLS client settings are not built yet.
fn tls_only(mut kc: KafkaCluster) -> KafkaCluster {
    kc.spec.cruise_control_config = None;
    for l in &mut kc.spec.listeners_config.internal_listeners {
        l.type_ = "ssl".into();
    }
    kc.spec.listeners_config.ssl_secrets = Some(SslSecrets {
        tls_secret_name: CA_SECRET.into(),
        create: true,
    });
    kc.spec.read_only_config.push_str(&format!(
        "authorizer.class.name={AUTHORIZER}\nsuper.users=User:CN=ops-admin,O=acme\n"
    ));
    kc
}

/// A client certificate for `CN=<name>` (of `organization`) signed by `ca`.
fn client_leaf(
    ca: &stoker_proto::pki::Ca,
    name: &str,
    organization: Option<&str>,
) -> stoker_proto::pki::Leaf {
    stoker_proto::pki::issue_leaf_for(
        ca,
        stoker_proto::pki::Subject {
            common_name: name,
            organization,
        },
        &[],
        &[stoker_proto::pki::Usage::Client],
        time::OffsetDateTime::now_utc(),
        time::Duration::days(1),
    )
    .expect("a client certificate")
}

/// The error code Metadata of `topic` answers over mutual TLS as `leaf` (or with no
/// client certificate), at broker `addr`; `Err` when the connection is refused.
async fn metadata_as(
    addr: &str,
    ca: &[u8],
    leaf: Option<&stoker_proto::pki::Leaf>,
    topic: &str,
) -> Result<i16, String> {
    use stoker_kafka::kafka_protocol::messages::{
        MetadataRequest, TopicName, metadata_request::MetadataRequestTopic,
    };
    let tls = stoker_kafka::TlsClient::new(
        ca,
        leaf.map(|l| stoker_kafka::ClientIdentity {
            cert: l.cert.as_bytes(),
            key: l.key.as_bytes(),
        }),
        SERVICE_NAME,
    )
    .map_err(|e| e.to_string())?;
    let mut conn =
        stoker_kafka::Connection::connect_with(addr, Duration::from_secs(10), Some(&tls))
            .await
            .map_err(|e| format!("{e:#}"))?;
    let req = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(TopicName(topic.to_owned().into()))),
    ]));
    let md = conn
        .send("Metadata", &req, 12)
        .await
        .map_err(|e| format!("{e:#}"))?;
    md.topics
        .first()
        .map(|t| t.error_code)
        .ok_or_else(|| "no topic in the answer".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_only_cluster_is_managed_over_mutual_tls_and_refuses_other_identities() {
    let started = Instant::now();
    let env = Env::start_with(tls_only(example_cluster())).await;
    println!(
        "FIGURE tls_only_cluster_ready_s={:.1}",
        started.elapsed().as_secs_f64()
    );
    let client = env.clusters.clone().into_client();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let ca_secret = secrets.get(CA_SECRET).await.expect("the CA Secret");
    let ca_pem = data(&ca_secret, "ca.crt");
    let ca = stoker_proto::pki::Ca {
        common_name: "the cluster CA".into(),
        cert: String::from_utf8(ca_pem.clone()).expect("PEM"),
        key: String::from_utf8(data(&ca_secret, "ca.key")).expect("PEM"),
    };
    let before = env
        .pods
        .list(&Default::default())
        .await
        .expect("pods")
        .items;
    let ips: Vec<String> = (0..3)
        .map(|id| {
            before
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(&format!("{CLUSTER}-{id}")))
                .and_then(|p| p.status.as_ref()?.pod_ip.clone())
                .expect("a broker's Pod IP")
        })
        .collect();

    // The coordinator manages the cluster's topics over mutual TLS, as
    // CN=stoker-coordinator,O=stoker.io (a super user it added).
    let token = tokio_util::sync::CancellationToken::new();
    let ctx = stoker_coordinator::context::Context::new(
        client.clone(),
        AGENT_IMAGE.into(),
        &prometheus::Registry::new(),
    );
    let topics_controller = tokio::spawn(stoker_coordinator::controller::kafka_topic::run(
        ctx.clone(),
        token.clone(),
    ));
    let users_controller = tokio::spawn(stoker_coordinator::controller::kafka_user::run(
        ctx,
        token.clone(),
    ));
    let bootstrap = ips
        .iter()
        .map(|ip| format!("{ip}:9092"))
        .collect::<Vec<_>>()
        .join(",");
    env.clusters
        .patch(
            CLUSTER,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {
                "kafka.stoker.io/bootstrap-servers": bootstrap,
            }}})),
        )
        .await
        .expect("annotate");
    let topics: Api<stoker_coordinator::crd::v1alpha1::KafkaTopic> =
        Api::namespaced(client.clone(), NS);
    let kt: stoker_coordinator::crd::v1alpha1::KafkaTopic = serde_yaml::from_str(&format!(
        "apiVersion: kafka.stoker.io/v1alpha1\nkind: KafkaTopic\nmetadata: {{name: tls-only, namespace: {NS}}}\nspec: {{clusterRef: {{name: {CLUSTER}}}, name: tls-only, partitions: 3, replicationFactor: 3}}\n"
    ))
    .expect("topic yaml");
    topics
        .create(&Default::default(), &kt)
        .await
        .expect("create the KafkaTopic");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let st = topics.get("tls-only").await.expect("get").status;
        let ready = st
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
        if ready.is_some_and(|c| c.status == "True") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the KafkaTopic did not become Ready over mutual TLS: {:?}",
            ready.map(|c| &c.message)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // A client with a certificate for the user's super user produces and consumes
    // through the inter-broker listener (Kafka's default hostname verification on).
    let admin = client_leaf(&ca, "ops-admin", Some("acme"));
    let work = WorkDir::new("tls-only-clients").expect("work dir");
    let keystore = format!("{}{}", admin.key, admin.cert);
    let props = client_properties(&work, "ops-admin", &ca_pem, Some(keystore.as_bytes()));
    let over_tls = format!("{SERVICE_NAME}:9092");
    produce_and_consume(
        &env.runtime,
        &over_tls,
        &props,
        "tls-only",
        (300, 300),
        "tls-only-1",
    );

    // Anyone else is refused: another identity from the same CA is authenticated but
    // not authorized; no client certificate, an expired one, or one from another CA
    // (even for the super user's name) gets no session.
    let addr = format!("{}:9092", ips[0]);
    assert_eq!(
        metadata_as(&addr, &ca_pem, Some(&admin), "tls-only").await,
        Ok(0),
        "the super user sees the topic"
    );
    let stranger = client_leaf(&ca, "stranger", None);
    assert_eq!(
        metadata_as(&addr, &ca_pem, Some(&stranger), "tls-only").await,
        Ok(29),
        "TOPIC_AUTHORIZATION_FAILED for an identity without ACLs"
    );
    let no_cert = metadata_as(&addr, &ca_pem, None, "tls-only").await;
    assert!(no_cert.is_err(), "no client certificate: {no_cert:?}");
    let other_ca = stoker_proto::pki::issue_ca(
        "Other CA",
        time::OffsetDateTime::now_utc(),
        time::Duration::days(1),
    )
    .expect("another CA");
    let expired = stoker_proto::pki::issue_leaf_for(
        &ca,
        stoker_proto::pki::Subject {
            common_name: "ops-admin",
            organization: Some("acme"),
        },
        &[],
        &[stoker_proto::pki::Usage::Client],
        time::OffsetDateTime::now_utc() - time::Duration::days(3),
        time::Duration::days(1),
    )
    .expect("an expired certificate");
    let refused = metadata_as(&addr, &ca_pem, Some(&expired), "tls-only").await;
    assert!(refused.is_err(), "an expired certificate: {refused:?}");
    let forged = client_leaf(&other_ca, "ops-admin", Some("acme"));
    let refused = metadata_as(&addr, &ca_pem, Some(&forged), "tls-only").await;
    assert!(
        refused.is_err(),
        "a certificate from another CA: {refused:?}"
    );
    println!("refused without a certificate: {no_cert:?}");

    // A KafkaUser with `authentication.type: tls`: the coordinator issues its client
    // certificate from the cluster's CA into its Secret and grants exactly its ACLs on
    // User:CN=alice; a client mounting that Secret produces and consumes; deleting
    // the user revokes its ACLs.
    let users: Api<stoker_coordinator::crd::v1alpha1::KafkaUser> =
        Api::namespaced(client.clone(), NS);
    let ku: stoker_coordinator::crd::v1alpha1::KafkaUser = serde_yaml::from_str(&format!(
        "apiVersion: kafka.stoker.io/v1alpha1\nkind: KafkaUser\nmetadata: {{name: alice, namespace: {NS}}}\nspec: {{clusterRef: {{name: {CLUSTER}}}, authentication: {{type: tls}}, topicGrants: [{{topicName: tls-only, accessType: write}}, {{topicName: tls-only, accessType: read}}]}}\n"
    ))
    .expect("user yaml");
    users
        .create(&Default::default(), &ku)
        .await
        .expect("create the KafkaUser");
    let issued = Instant::now();
    let status = loop {
        let st = users.get("alice").await.expect("get").status;
        let ready = st
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
        if ready.is_some_and(|c| c.status == "True") {
            break st.expect("a status");
        }
        assert!(
            issued.elapsed() < Duration::from_secs(60),
            "the TLS KafkaUser did not become Ready: {:?}",
            ready.map(|c| &c.message)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!(
        "FIGURE tls_user_ready_s={:.1}",
        issued.elapsed().as_secs_f64()
    );
    assert_eq!(status.username.as_deref(), Some("CN=alice"));
    assert_eq!(status.acl_count, Some(5), "{:?}", status.acls);
    let alice = secrets.get("alice").await.expect("alice's Secret");
    assert_eq!(data(&alice, "ca.crt"), ca_pem, "signed by the cluster's CA");
    let alice_props = client_properties(
        &work,
        "alice",
        &data(&alice, "ca.crt"),
        Some(&data(&alice, "keystore.pem")),
    );
    // Her grants: write, and read (from the start: the 300 records before hers too).
    produce_and_consume(
        &env.runtime,
        &over_tls,
        &alice_props,
        "tls-only",
        (100, 400),
        "alice-1",
    );
    let alice_leaf = stoker_proto::pki::Leaf {
        cert: String::from_utf8(data(&alice, "tls.crt")).expect("PEM"),
        key: String::from_utf8(data(&alice, "tls.key")).expect("PEM"),
        not_after: 0,
    };
    users
        .delete("alice", &DeleteParams::default())
        .await
        .expect("delete the KafkaUser");
    let revoked = Instant::now();
    while metadata_as(&addr, &ca_pem, Some(&alice_leaf), "tls-only").await != Ok(29) {
        assert!(
            revoked.elapsed() < Duration::from_secs(60),
            "alice's ACLs were not revoked after her KafkaUser was deleted"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Every node's certificate issued again at once (their Secrets deleted) while a
    // producer sends: each inter-broker and controller listener serves its new one with
    // nothing restarted, and no record fails.
    let mut producer = kafka_tool_command(
        &env.runtime,
        "kafka-verifiable-producer.sh",
        &[
            "--bootstrap-server",
            &over_tls,
            "--producer.config",
            &props,
            "--topic",
            "tls-only",
            "--max-messages",
            "600",
            "--throughput",
            "20",
            "--acks",
            "-1",
        ],
    );
    let producer = tokio::task::spawn_blocking(move || producer.output());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let controller_ip = before
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(&format!("{CLUSTER}-100")))
        .and_then(|p| p.status.as_ref()?.pod_ip.clone())
        .expect("the controller's Pod IP");
    let endpoints: Vec<(i32, std::net::SocketAddr)> = ips
        .iter()
        .enumerate()
        .map(|(id, ip)| (id as i32, format!("{ip}:9092")))
        .chain(std::iter::once((100, format!("{controller_ip}:29093"))))
        .map(|(id, a)| (id, a.parse().expect("addr")))
        .collect();
    let mut old = std::collections::BTreeMap::new();
    for (id, addr) in &endpoints {
        let served = tls::served_certificate(*addr, SERVICE_NAME, &ca_pem).await;
        old.insert(*id, served.expect("served before"));
    }
    for (id, _) in &endpoints {
        secrets
            .delete(
                &format!("{CLUSTER}-broker-{id}-tls"),
                &DeleteParams::default(),
            )
            .await
            .expect("delete a node's certificate");
    }
    let rotated = Instant::now();
    for (id, addr) in &endpoints {
        loop {
            if let Ok(s) = secrets.get(&format!("{CLUSTER}-broker-{id}-tls")).await {
                let cert = tls::first_certificate(&data(&s, "tls.crt")).expect("PEM");
                let now = tls::served_certificate(*addr, SERVICE_NAME, &ca_pem).await;
                if now.as_ref().ok() == Some(&cert) && cert != old[id] {
                    break;
                }
            }
            assert!(
                rotated.elapsed() < Duration::from_secs(120),
                "node {id} did not serve its new certificate within 120 s"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    println!(
        "FIGURE tls_only_all_nodes_reissued_served_s={:.1}",
        rotated.elapsed().as_secs_f64()
    );
    let out = kafka_tool_output(
        "kafka-verifiable-producer.sh",
        producer.await.expect("the producer thread"),
    );
    assert_eq!(
        out.matches("\"producer_send_success\"").count(),
        600,
        "no record failed while every node's certificate changed:\n{out}"
    );
    let broker_1 = format!("{}:9092", ips[1]);
    assert_eq!(
        metadata_as(&broker_1, &ca_pem, Some(&admin), "tls-only").await,
        Ok(0),
        "broker 1 serves clients with its new certificate"
    );
    assert_nothing_restarted(&env.pods, &before).await;

    token.cancel();
    let _ = topics_controller.await;
    let _ = users_controller.await;
    env.stop().await;
}
