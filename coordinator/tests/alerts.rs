//! The alert receiver against a real API server and a real Alertmanager: an alert that
//! carries `upScale` adds one broker to a cluster that opted in, once; every request
//! that must not act — replayed, in cooldown, resolved, unauthenticated, malformed,
//! too big, for an unknown command or cluster — gets its reply code and reason, and
//! nothing changes. Two replicas' worth of concurrent alerts act once.

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use stoker_coordinator::{
    alerts::receiver::{self, Auth, Receiver},
    crd::v1alpha1::{AlertManagerConfig, KafkaCluster},
};
use stoker_testenv::{Alertmanager, KubeEnv, WorkDir, http};

const NS: &str = "alerting";
const TOKEN: &str = "t0ken-for-the-test";

/// The example cluster as `name`, with `guards`, reported Running (no controller runs
/// here: the receiver's decisions are under test, and they read the status).
async fn cluster(
    clusters: &Api<KafkaCluster>,
    name: &str,
    guards: Option<AlertManagerConfig>,
) -> KafkaCluster {
    let mut kc: KafkaCluster =
        serde_yaml::from_str(include_str!("../../deploy/examples/kafkacluster.yaml"))
            .expect("the example parses");
    kc.metadata = kube::api::ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NS.into()),
        ..Default::default()
    };
    kc.spec.alert_manager_config = guards;
    clusters
        .create(&PostParams::default(), &kc)
        .await
        .expect("create the cluster");
    clusters
        .patch_status(
            name,
            &PatchParams::apply("test-controller").force(),
            &Patch::Apply(serde_json::json!({
                "apiVersion": "kafka.stoker.io/v1alpha1",
                "kind": "KafkaCluster",
                "status": {"state": "Running", "readyBrokers": "4/4"},
            })),
        )
        .await
        .expect("report it running")
}

fn guards(cooldown: i64) -> Option<AlertManagerConfig> {
    Some(AlertManagerConfig {
        cooldown_seconds: Some(cooldown),
        down_scale_limit: Some(2),
        up_scale_limit: Some(10),
        ..AlertManagerConfig::default()
    })
}

fn webhook(alerts: serde_json::Value) -> String {
    serde_json::json!({"version": "4", "status": "firing", "receiver": "stoker", "alerts": alerts})
        .to_string()
}

fn alert(
    name: &str,
    cluster: &str,
    annotations: serde_json::Value,
    starts_at: &str,
) -> serde_json::Value {
    serde_json::json!({
        "status": "firing",
        "labels": {"alertname": name, "kafka_cr": cluster, "namespace": NS},
        "annotations": annotations,
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z",
    })
}

fn up() -> serde_json::Value {
    serde_json::json!({"command": "upScale", "brokerConfigGroup": "default_group"})
}

async fn post(
    addr: std::net::SocketAddr,
    token: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    let r = http::request_with(addr, "POST", "/alerts", &headers, Some(body))
        .await
        .expect("the receiver answers");
    let json = serde_json::from_str(&r.body).unwrap_or(serde_json::Value::String(r.body));
    (r.status, json)
}

fn only_outcome(reply: &serde_json::Value) -> (&str, &str) {
    let o = &reply["outcomes"][0];
    (
        o["outcome"].as_str().unwrap_or_default(),
        o["reason"].as_str().unwrap_or_default(),
    )
}

async fn brokers(clusters: &Api<KafkaCluster>, name: &str) -> Vec<i32> {
    clusters
        .get(name)
        .await
        .expect("get")
        .spec
        .brokers
        .iter()
        .map(|b| b.id)
        .collect()
}

async fn event_reasons(client: &Client, name: &str) -> Vec<String> {
    Api::<Event>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .expect("list Events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reason)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_scales_an_opted_in_cluster_once_and_what_must_not_act_is_told_why() {
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
    let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), NS);
    let work = WorkDir::new("alert-receiver").expect("work dir");
    let token_file = work
        .write("token", format!("{TOKEN}\n"))
        .expect("token file");

    let registry = prometheus::Registry::new();
    let receiver = Receiver::new(
        client.clone(),
        Auth::BearerFile(token_file.clone()),
        &registry,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the receiver");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, receiver::router(receiver)).await });

    // The real Alertmanager posts with the token from a file, as the chart sets it up.
    let alertmanager = Alertmanager::start(&format!(
        "route:\n  receiver: stoker\n  group_by: [alertname, kafka_cr]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n- name: stoker\n  webhook_configs:\n  - url: http://{addr}/alerts\n    http_config:\n      authorization:\n        credentials_file: {}\n",
        token_file.display()
    ))
    .await
    .expect("alertmanager starts");
    let kc = cluster(&clusters, "kafka", guards(600)).await;
    let before: Vec<i32> = kc.spec.brokers.iter().map(|b| b.id).collect();
    let pushed = http::request(
        alertmanager.addr(),
        "POST",
        "/api/v2/alerts",
        Some(
            &serde_json::json!([{
                "labels": {"alertname": "BrokerOverLoaded", "kafka_cr": "kafka", "namespace": NS},
                "annotations": up(),
            }])
            .to_string(),
        ),
    )
    .await
    .expect("alertmanager takes the alert");
    assert_eq!(pushed.status, 200, "{}", pushed.body);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let after = loop {
        let now = brokers(&clusters, "kafka").await;
        if now.len() > before.len() {
            break now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Alertmanager's notification never added a broker: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let next = before.iter().max().expect("brokers") + 1;
    assert_eq!(
        after,
        [before.clone(), vec![next]].concat(),
        "one broker, the next free id"
    );
    let kc = clusters.get("kafka").await.expect("get");
    let last = kc
        .status
        .as_ref()
        .and_then(|s| s.alerting.as_ref())
        .and_then(|a| a.last_action.clone())
        .expect("the decision is recorded in the status");
    assert_eq!(last.alert, "BrokerOverLoaded");
    assert_eq!(last.command, "upScale");
    assert_eq!(
        last.change,
        format!("added broker {next} to group default_group")
    );
    assert!(
        kc.managed_fields()
            .iter()
            .any(|m| m.manager.as_deref() == Some("stoker-alert-BrokerOverLoaded")),
        "the spec change names the alert as its field manager"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !event_reasons(&client, "kafka")
        .await
        .iter()
        .any(|r| r == "AlertScaled")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no AlertScaled Event"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The same alert again (a replay, or Alertmanager's repeat): held, nothing changes.
    let same = webhook(serde_json::json!([{
        "status": "firing",
        "labels": {"alertname": "BrokerOverLoaded", "kafka_cr": "kafka", "namespace": NS},
        "annotations": up(),
        "startsAt": last.starts_at,
        "fingerprint": last.fingerprint,
    }]));
    let (code, reply) = post(addr, Some(TOKEN), &same).await;
    assert_eq!(code, 200, "{reply}");
    let (outcome, reason) = only_outcome(&reply);
    assert_eq!(outcome, "held");
    assert!(reason.starts_with("replayed"), "{reason}");
    // Another alert within the cooldown: held, saying until when.
    let other = webhook(serde_json::json!([alert(
        "PartitionCountHigh",
        "kafka",
        up(),
        "2026-12-03T10:00:00Z"
    )]));
    let (code, reply) = post(addr, Some(TOKEN), &other).await;
    assert_eq!(code, 200, "{reply}");
    let (outcome, reason) = only_outcome(&reply);
    assert_eq!(outcome, "held");
    assert!(reason.contains("in cooldown until"), "{reason}");
    // A resolved alert never acts.
    let mut resolved = alert("PartitionCountHigh", "kafka", up(), "2026-12-03T10:00:00Z");
    resolved["status"] = "resolved".into();
    let (code, reply) = post(addr, Some(TOKEN), &webhook(serde_json::json!([resolved]))).await;
    assert_eq!((code, only_outcome(&reply).0), (200, "held"), "{reply}");

    // What will never work: 4xx (Alertmanager does not retry it), with the reason.
    let (code, reply) = post(addr, None, &other).await;
    assert_eq!(code, 401, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap_or_default()
            .contains("bearer token")
    );
    let (code, _) = post(addr, Some("not-the-token"), &other).await;
    assert_eq!(code, 401);
    let (code, reply) = post(addr, Some(TOKEN), "{not json").await;
    assert_eq!(code, 400, "{reply}");
    let (code, reply) = post(addr, Some(TOKEN), r#"{"version":"3","alerts":[]}"#).await;
    assert_eq!(code, 400, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap_or_default()
            .contains("version \"3\"")
    );
    let big = format!("[{}]", "0,".repeat(600_000) + "0");
    let (code, _) = post(addr, Some(TOKEN), &big).await;
    assert_eq!(code, 413, "a body over the limit is refused unread");
    let cases = [
        (
            alert(
                "X",
                "kafka",
                serde_json::json!({"command": "scaleSideways"}),
                "2026-12-03T10:00:00Z",
            ),
            "unknown command \"scaleSideways\"",
        ),
        (
            alert("X", "nowhere", up(), "2026-12-03T10:00:00Z"),
            "KafkaCluster alerting/nowhere does not exist",
        ),
        (
            serde_json::json!({"status": "firing", "labels": {"alertname": "X"}, "annotations": up()}),
            "kafka_cr and namespace",
        ),
    ];
    for (a, expected) in cases {
        let (code, reply) = post(addr, Some(TOKEN), &webhook(serde_json::json!([a]))).await;
        assert_eq!(code, 422, "{reply}");
        let (outcome, reason) = only_outcome(&reply);
        assert_eq!(outcome, "refused");
        assert!(reason.contains(expected), "{reason} should say {expected}");
    }
    assert_eq!(
        brokers(&clusters, "kafka").await,
        after,
        "nothing above changed the spec"
    );

    // A cluster that did not opt in is never changed, and says how to opt in.
    cluster(&clusters, "manual", None).await;
    let (code, reply) = post(
        addr,
        Some(TOKEN),
        &webhook(serde_json::json!([alert(
            "A",
            "manual",
            up(),
            "2026-12-03T10:00:00Z"
        )])),
    )
    .await;
    assert_eq!(code, 422, "{reply}");
    assert!(only_outcome(&reply).1.contains("spec.alertManagerConfig"));
    // Dry run: decided and reported, not done.
    let mut dry = guards(0);
    if let Some(g) = dry.as_mut() {
        g.dry_run = true;
    }
    let kc = cluster(&clusters, "dry", dry).await;
    let (code, reply) = post(
        addr,
        Some(TOKEN),
        &webhook(serde_json::json!([alert(
            "A",
            "dry",
            up(),
            "2026-12-03T10:00:00Z"
        )])),
    )
    .await;
    assert_eq!(code, 200, "{reply}");
    assert_eq!(only_outcome(&reply).0, "dry_run");
    assert_eq!(brokers(&clusters, "dry").await.len(), kc.spec.brokers.len());

    // Two alerts at once (as two replicas would take them): one acts, the other holds.
    let kc = cluster(&clusters, "race", guards(600)).await;
    let a = webhook(serde_json::json!([alert(
        "One",
        "race",
        up(),
        "2026-12-03T10:00:00Z"
    )]));
    let b = webhook(serde_json::json!([alert(
        "Two",
        "race",
        up(),
        "2026-12-03T10:00:00Z"
    )]));
    let ((_, ra), (_, rb)) = tokio::join!(post(addr, Some(TOKEN), &a), post(addr, Some(TOKEN), &b));
    let mut outcomes = [only_outcome(&ra).0, only_outcome(&rb).0];
    outcomes.sort_unstable();
    assert_eq!(outcomes, ["acted", "held"], "{ra} {rb}");
    assert_eq!(
        brokers(&clusters, "race").await.len(),
        kc.spec.brokers.len() + 1
    );

    // downScale with the broker named: removed from the spec (the graceful machinery
    // drains it before anything is deleted).
    cluster(&clusters, "down", guards(0)).await;
    let mut d = alert(
        "PartitionCountLow",
        "down",
        serde_json::json!({"command": "downScale"}),
        "2026-12-03T10:00:00Z",
    );
    d["labels"]["brokerId"] = "2".into();
    let (code, reply) = post(addr, Some(TOKEN), &webhook(serde_json::json!([d]))).await;
    assert_eq!((code, only_outcome(&reply).0), (200, "acted"), "{reply}");
    assert!(!brokers(&clusters, "down").await.contains(&2));

    let acted = registry
        .gather()
        .into_iter()
        .find(|f| f.name() == "stoker_alert_decisions_total")
        .expect("the decisions metric")
        .get_metric()
        .iter()
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "outcome" && l.value() == "acted")
        })
        .map(|m| m.get_counter().get_value())
        .sum::<f64>();
    assert_eq!(acted, 3.0, "kafka, race and down acted once each");
}
