//! The KafkaUser controller against a real API server and a real Kafka whose brokers
//! have a SASL/SCRAM-SHA-512 listener and Kafka's StandardAuthorizer: the credentials
//! the controller sets let a real client in, its ACLs allow exactly what the spec
//! grants, and taking a grant away revokes it.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    producer::{FutureProducer, FutureRecord, Producer},
};
use stoker_coordinator::{
    controller::cluster_ref::BOOTSTRAP_ANNOTATION,
    crd::v1alpha1::{KafkaCluster, KafkaUser, KafkaUserStatus},
    kafka_admin::{KafkaAdmin, users::SCRAM_SHA_512},
};
use stoker_testenv::{KafkaCluster as TestKafka, KubeEnv, control_plane::ControlPlaneOptions};
use tokio_util::sync::CancellationToken;

use support::{ready, status_where};

const NS: &str = "users";

fn user(yaml_spec: &str, name: &str) -> KafkaUser {
    let yaml = format!(
        "apiVersion: kafka.stoker.io/v1alpha1\nkind: KafkaUser\nmetadata: {{name: {name}}}\nspec: {yaml_spec}\n"
    );
    serde_yaml::from_str(&yaml).expect("user yaml")
}

fn is_ready(st: &KafkaUserStatus) -> bool {
    ready(st).is_some_and(|r| r.0 == "True")
}

fn scram_config(bootstrap: &str, user: &str, password: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", user)
        .set("sasl.password", password)
        .set("message.timeout.ms", "8000")
        .set("socket.timeout.ms", "5000");
    c
}

/// True when a metadata request over the SCRAM listener succeeds (SASL let the client in).
fn authenticates(bootstrap: &str, user: &str, password: &str) -> bool {
    let consumer: BaseConsumer = scram_config(bootstrap, user, password)
        .create()
        .expect("consumer");
    consumer
        .fetch_metadata(None, Duration::from_secs(6))
        .is_ok()
}

/// Produces one record as `user`; the error is Kafka's (e.g. topic authorization failed).
async fn produce(bootstrap: &str, user: &str, password: &str, topic: &str) -> Result<(), String> {
    let producer: FutureProducer = scram_config(bootstrap, user, password)
        .create()
        .expect("producer");
    let res = producer
        .send(
            FutureRecord::to(topic).key("k").payload("v"),
            Duration::from_secs(8),
        )
        .await
        .map(|_| ())
        .map_err(|(e, _)| e.to_string());
    let _ = producer.flush(Duration::from_secs(2));
    res
}

/// Reads the first record of partition 0 as `user` (no group: assignment, no commits).
fn consume_one(bootstrap: &str, user: &str, password: &str, topic: &str) -> Result<(), String> {
    let consumer: BaseConsumer = scram_config(bootstrap, user, password)
        .set("group.id", format!("{user}-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition");
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) if m.payload().is_some() => return Ok(()),
            Some(Err(e)) => return Err(e.to_string()),
            _ => {}
        }
    }
    Err("no record within 10 s".into())
}

async fn secret_password(secrets: &Api<Secret>, name: &str) -> String {
    let s = secrets.get(name).await.expect("secret");
    let v = s
        .data
        .and_then(|d| d.get("password").cloned())
        .expect("password key");
    String::from_utf8(v.0).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_get_scram_credentials_exact_acls_and_quotas_against_real_kafka() {
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
    let kafka = TestKafka::builder()
        .brokers(1)
        .controllers(1)
        .with_scram_listener()
        .start()
        .await
        .expect("kafka");
    let sasl = kafka.scram_bootstrap_servers();

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

    // Two topics, with a record in `orders`.
    let rd_admin: AdminClient<DefaultClientContext> =
        kafka.client_config().create().expect("admin");
    let topics = ["orders", "payments"].map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1)));
    for r in rd_admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .expect("create topics")
    {
        r.expect("topic created");
    }

    let token = CancellationToken::new();
    let controller = tokio::spawn(stoker_coordinator::controller::kafka_user::run(
        support::context(client.clone()),
        token.clone(),
    ));
    let users: Api<KafkaUser> = Api::namespaced(client.clone(), NS);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let admin = KafkaAdmin::new(&kafka.bootstrap_servers());

    // alice: a generated password, read+write on orders, a produce quota.
    users
        .create(
            &PostParams::default(),
            &user(
                "{clusterRef: {name: kafka}, topicGrants: [{topicName: orders, accessType: write}, {topicName: orders, accessType: read}], quotas: {producerByteRate: 1048576}}",
                "alice",
            ),
        )
        .await
        .expect("create alice");
    let st = status_where(&users, "alice", "Ready", is_ready).await;
    assert_eq!(st.secret.as_deref(), Some("alice"));
    // Describe on orders is granted by both grants, once.
    assert_eq!(st.acl_count, Some(5), "{:?}", st.acls);
    let password = secret_password(&secrets, "alice").await;
    assert_eq!(password.len(), 32);
    assert_eq!(
        admin.scram_mechanisms("alice").await.expect("describe"),
        vec![SCRAM_SHA_512]
    );
    assert_eq!(
        admin
            .user_quotas("alice")
            .await
            .expect("quotas")
            .get("producer_byte_rate"),
        Some(&1_048_576.0)
    );

    // The credentials let a real client in; a wrong password does not.
    assert!(authenticates(&sasl, "alice", &password));
    assert!(!authenticates(&sasl, "alice", "not-the-password"));
    // The ACLs allow exactly the grants: write and read orders, nothing on payments.
    produce(&sasl, "alice", &password, "orders")
        .await
        .expect("alice may write orders");
    consume_one(&sasl, "alice", &password, "orders").expect("alice may read orders");
    let denied = produce(&sasl, "alice", &password, "payments")
        .await
        .expect_err("alice may not write payments");
    assert!(denied.contains("Authorization"), "{denied}");

    // An ACL added by hand for alice is not in the spec: the next pass removes it.
    let mut stray = admin.acls("User:alice").await.expect("acls")[0].clone();
    stray.resource_name = "payments".into();
    admin
        .create_acls(&[stray.clone()])
        .await
        .expect("stray ACL");
    users
        .patch(
            "alice",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"poke": "1"}}})),
        )
        .await
        .expect("poke");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while admin
        .acls("User:alice")
        .await
        .expect("acls")
        .contains(&stray)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hand-made ACL stayed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Removing the write grant revokes it; reading still works; the quota goes too.
    users
        .patch(
            "alice",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"topicGrants": [{"topicName": "orders", "accessType": "read"}], "quotas": null}})),
        )
        .await
        .expect("patch");
    status_where(&users, "alice", "3 ACLs", |s| {
        s.acl_count == Some(3) && s.quotas.is_none()
    })
    .await;
    let denied = produce(&sasl, "alice", &password, "orders")
        .await
        .expect_err("the write grant was removed");
    assert!(denied.contains("Authorization"), "{denied}");
    consume_one(&sasl, "alice", &password, "orders").expect("alice may still read orders");
    assert!(admin.user_quotas("alice").await.expect("quotas").is_empty());

    // Rotation: a new password in alice's Secret replaces the old one in Kafka at once.
    let before = users
        .get("alice")
        .await
        .expect("get")
        .status
        .and_then(|s| s.credentials_version);
    secrets
        .patch(
            "alice",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"stringData": {"password": "rotated-password-0123456789"}}),
            ),
        )
        .await
        .expect("rotate");
    status_where(&users, "alice", "rotated credentials", |s| {
        s.credentials_version != before
    })
    .await;
    assert!(authenticates(&sasl, "alice", "rotated-password-0123456789"));
    assert!(!authenticates(&sasl, "alice", &password));

    // bob: the password comes from a Secret the user made.
    let mut pw = Secret::default();
    pw.metadata.name = Some("bob-password".into());
    pw.string_data = Some([("pw".to_owned(), "bob-secret-password-42".to_owned())].into());
    secrets
        .create(&PostParams::default(), &pw)
        .await
        .expect("bob's secret");
    users
        .create(
            &PostParams::default(),
            &user(
                "{clusterRef: {name: kafka}, authentication: {type: scram-sha-512, passwordSecretRef: {name: bob-password, key: pw}}, acls: [{resource: {type: topic, name: pay, patternType: prefixed}, operations: [Describe, Write]}]}",
                "bob",
            ),
        )
        .await
        .expect("create bob");
    let st = status_where(&users, "bob", "Ready", is_ready).await;
    assert_eq!(st.secret.as_deref(), Some("bob-password"));
    assert!(
        st.acls
            .contains(&"allow Write on topic:pay (prefixed) from *".to_owned()),
        "{:?}",
        st.acls
    );
    produce(&sasl, "bob", "bob-secret-password-42", "payments")
        .await
        .expect("bob may write pay*");
    consume_one(&sasl, "bob", "bob-secret-password-42", "orders")
        .expect_err("bob may not read orders");

    // Bad input: a clear condition, nothing applied.
    users
        .create(
            &PostParams::default(),
            &user(
                "{clusterRef: {name: kafka}, acls: [{resource: {type: group, name: g}, operations: [Write]}]}",
                "carol",
            ),
        )
        .await
        .expect("create carol");
    let st = status_where(&users, "carol", "InvalidUser", |s| {
        ready(s).is_some_and(|r| r.1 == "InvalidUser")
    })
    .await;
    assert!(
        ready(&st).is_some_and(|r| r
            .2
            .starts_with("spec.acls[0]: Write is not an operation on a group")),
        "{st:?}"
    );
    assert!(
        admin
            .scram_mechanisms("carol")
            .await
            .expect("describe")
            .is_empty()
    );
    users
        .create(
            &PostParams::default(),
            &user("{clusterRef: {name: nowhere}}", "dave"),
        )
        .await
        .expect("create dave");
    status_where(&users, "dave", "ClusterNotFound", |s| {
        ready(s).is_some_and(|r| r.1 == "ClusterNotFound" && r.2.contains("users/nowhere"))
    })
    .await;
    // A Secret that exists already and is not the user's is never overwritten.
    let mut foreign = Secret::default();
    foreign.metadata.name = Some("erin".into());
    foreign.string_data = Some([("password".to_owned(), "someone-elses".to_owned())].into());
    secrets
        .create(&PostParams::default(), &foreign)
        .await
        .expect("foreign secret");
    users
        .create(
            &PostParams::default(),
            &user("{clusterRef: {name: kafka}}", "erin"),
        )
        .await
        .expect("create erin");
    status_where(&users, "erin", "SecretConflict", |s| {
        ready(s).is_some_and(|r| r.1 == "SecretConflict")
    })
    .await;
    assert_eq!(secret_password(&secrets, "erin").await, "someone-elses");

    // The examples are accepted by the API server and become ready users.
    for doc in
        serde_yaml::Deserializer::from_str(include_str!("../../deploy/examples/kafkausers.yaml"))
    {
        let mut ku: KafkaUser = serde::Deserialize::deserialize(doc).expect("example user");
        ku.metadata.namespace = Some(NS.into());
        ku.spec.cluster_ref.name = "kafka".into();
        let name = ku.metadata.name.clone().expect("name");
        users
            .create(&PostParams::default(), &ku)
            .await
            .expect("example accepted");
        let st = status_where(&users, &name, "Ready", is_ready).await;
        assert!(
            st.acl_count.unwrap_or_default() > 0 && st.quotas.is_some(),
            "{st:?}"
        );
    }

    // Deleting a user takes its credentials, ACLs and quotas out of Kafka.
    users
        .delete("bob", &DeleteParams::default())
        .await
        .expect("delete bob");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while users.get_opt("bob").await.expect("get").is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob was never deleted"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(admin.acls("User:bob").await.expect("acls").is_empty());
    assert!(
        admin
            .scram_mechanisms("bob")
            .await
            .expect("describe")
            .is_empty()
    );
    assert!(!authenticates(&sasl, "bob", "bob-secret-password-42"));
    // The user's own Secret stays: it was never Stoker's.
    assert!(
        secrets
            .get_opt("bob-password")
            .await
            .expect("get")
            .is_some()
    );

    token.cancel();
    let _ = controller.await;
}
