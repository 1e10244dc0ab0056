//! The agent-injection webhook's decision, in process, over 1,000 AdmissionReviews of
//! a StatefulSet's Kafka Pod (a realistic Pod: three containers' worth of env,
//! volumes and probes):
//!
//! - **review**: body bytes → decision → response bytes, as the HTTPS route does it;
//! - **floor** (the baseline, same run, same bodies): only decoding the review and
//!   encoding an allow-everything answer — what any webhook must at least do.
//!
//! Goal: review p99 ≤ 5 ms. Run: `cargo bench -p stoker-coordinator --bench webhook`.

use std::{
    collections::BTreeSet,
    hint::black_box,
    time::{Duration, Instant},
};

use kube::core::{
    DynamicObject,
    admission::{AdmissionRequest, AdmissionResponse, AdmissionReview},
};
use serde_json::json;
use stoker_coordinator::webhook::review::{self, Outcome, Policy};

const REVIEWS: usize = 1_000;

fn body(i: usize) -> Vec<u8> {
    let env: Vec<_> = (0..40)
        .map(|n| json!({"name": format!("KAFKA_SETTING_{n}"), "value": format!("value-{n}-{i}")}))
        .collect();
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": "kafka-",
            "name": format!("kafka-{i}"),
            "labels": {"kafka.stoker.io/agent": "inject", "app.kubernetes.io/instance": "events",
                       "statefulset.kubernetes.io/pod-name": format!("kafka-{i}")},
            "annotations": {"kafka.stoker.io/jmx-exporter-port": "9404"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "kafka", "uid": "5d1c", "controller": true}],
        },
        "spec": {
            "terminationGracePeriodSeconds": 120,
            "containers": [
                {"name": "kafka", "image": "apache/kafka:4.1.1", "env": env,
                 "ports": [{"containerPort": 9092}, {"containerPort": 9093}],
                 "volumeMounts": [{"name": "data", "mountPath": "/var/lib/kafka"}],
                 "resources": {"requests": {"cpu": "1", "memory": "4Gi"}}},
                {"name": "log-shipper", "image": "fluent-bit:3", "env": env.clone()[..10]},
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": format!("data-kafka-{i}")}}],
        },
    });
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": format!("uid-{i}"),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "kafka", "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:statefulset-controller"},
            "object": pod, "dryRun": false,
        }
    }))
    .expect("json")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn report(what: &str, mut took: Vec<Duration>, floor_p99: Option<Duration>) -> Duration {
    took.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let p99 = percentile(&took, 0.99);
    let ratio = floor_p99.map_or(String::new(), |f| {
        format!("   p99 {:.2}x the floor", us(p99) / us(f))
    });
    println!(
        "  {what:<10} p50 {:>7.1} µs   p99 {:>7.1} µs   max {:>7.1} µs{ratio}",
        us(percentile(&took, 0.5)),
        us(p99),
        us(took[took.len() - 1]),
    );
    p99
}

fn main() {
    let bodies: Vec<Vec<u8>> = (0..REVIEWS).map(body).collect();
    let policy = Policy {
        agent_image: "stoker-agent:0.1.0".into(),
        forbidden_namespaces: BTreeSet::from(["kube-system".to_owned()]),
    };
    println!(
        "webhook: {REVIEWS} AdmissionReviews of a {} KiB Pod, in process",
        bodies[0].len() / 1024
    );
    // Warm both paths, then alternate them so the machine's noise falls on both.
    for b in bodies.iter().take(50) {
        black_box(review::review(b, &policy).expect("review"));
    }
    let (mut floor, mut reviewed) = (Vec::new(), Vec::new());
    for b in &bodies {
        let t = Instant::now();
        let parsed: AdmissionReview<DynamicObject> = serde_json::from_slice(b).expect("review");
        let req: AdmissionRequest<DynamicObject> = parsed.try_into().expect("request");
        black_box(serde_json::to_vec(&AdmissionResponse::from(&req).into_review()).expect("json"));
        floor.push(t.elapsed());

        let t = Instant::now();
        let (answer, outcome) = review::review(b, &policy).expect("review");
        black_box(serde_json::to_vec(&answer).expect("json"));
        reviewed.push(t.elapsed());
        assert_eq!(outcome, Outcome::Injected, "every Pod gets the agent");
    }
    let f = report("floor", floor, None);
    let p99 = report("review", reviewed, Some(f));
    println!(
        "  goal: review p99 <= 5 ms: {}",
        if p99 <= Duration::from_millis(5) {
            "met"
        } else {
            "NOT met"
        }
    );
}
