//! Proof that the test environment runs real Prometheus and Alertmanager: Prometheus
//! scrapes a target served by the test, a rule fires, and Alertmanager posts the
//! webhook (payload version 4) to the test's receiver.

use std::time::Duration;

use axum::{Router, routing::get};
use stoker_testenv::{Alertmanager, Prometheus, WebhookReceiver};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scraped_metric_fires_a_rule_and_alertmanager_posts_the_webhook() {
    // The scrape target: one gauge, as an agent's /metrics would serve it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the target");
    let target = listener.local_addr().expect("target address");
    let app = Router::new().route(
        "/metrics",
        get(|| async {
            "# HELP stoker_proof_backlog A test gauge.\n# TYPE stoker_proof_backlog gauge\nstoker_proof_backlog{broker_id=\"1\"} 42\n"
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let receiver = WebhookReceiver::start().await.expect("the receiver starts");
    let alertmanager = Alertmanager::start(&format!(
        "route:\n  receiver: stoker\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n- name: stoker\n  webhook_configs:\n  - url: {}\n    send_resolved: true\n",
        receiver.url()
    ))
    .await
    .expect("alertmanager starts");

    let prometheus = Prometheus::start(
        &format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [rules.yml]\nalerting:\n  alertmanagers: [{{static_configs: [{{targets: ['{am}']}}]}}]\nscrape_configs:\n- job_name: proof\n  static_configs: [{{targets: ['{target}']}}]\n",
            am = alertmanager.addr()
        ),
        &[(
            "rules.yml",
            "groups:\n- name: proof\n  rules:\n  - alert: StokerProofBacklog\n    expr: stoker_proof_backlog > 10\n    for: 0s\n    labels: {severity: warning}\n    annotations: {summary: 'backlog on broker {{ $labels.broker_id }}'}\n",
        )],
    )
    .await
    .expect("prometheus starts");

    let webhook = receiver
        .wait_for(Duration::from_secs(60), |body| body["status"] == "firing")
        .await
        .expect("alertmanager posts a firing alert");
    assert_eq!(webhook["version"], "4");
    assert_eq!(webhook["receiver"], "stoker");
    let alert = &webhook["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "StokerProofBacklog");
    assert_eq!(alert["labels"]["broker_id"], "1");
    assert_eq!(alert["annotations"]["summary"], "backlog on broker 1");
    assert_eq!(
        alert["endsAt"], "0001-01-01T00:00:00Z",
        "firing alerts carry a zero endsAt"
    );

    // Prometheus really scraped the target.
    let result = prometheus
        .query("stoker_proof_backlog")
        .await
        .expect("query works");
    assert_eq!(result["data"]["result"][0]["value"][1], "42");
}
