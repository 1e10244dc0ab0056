//! The monitoring assets Stoker ships (`deploy/monitoring/`) against the real schemas
//! and tools: the Prometheus Operator's CustomResourceDefinitions (provisioned from its
//! Go module) installed on a real API server accept every object, unknown fields
//! refused (strict field validation); `promtool` accepts every rule group. That every
//! rule's expression finds series on a real cluster is checked where a real Prometheus
//! scrapes one (`alert_scaling.rs`).

use std::process::Command;

use kube::{
    Api,
    api::{DynamicObject, GroupVersionKind, Patch, PatchParams, ValidationDirective},
    core::ApiResource,
};
use serde::Deserialize;
use stoker_testenv::{
    KubeEnv, WorkDir, control_plane::ControlPlaneOptions, provisioned, system_program,
};

const NS: &str = "monitoring";
const ASSETS: [(&str, &str); 3] = [
    (
        "kafka-alerts.yaml",
        include_str!("../../deploy/monitoring/kafka-alerts.yaml"),
    ),
    (
        "seed-prometheusrule.yaml",
        include_str!("../../deploy/monitoring/seed-prometheusrule.yaml"),
    ),
    (
        "podmonitor.yaml",
        include_str!("../../deploy/monitoring/podmonitor.yaml"),
    ),
];

fn documents(yaml: &str) -> Vec<serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde_yaml::Value::deserialize(d).expect("a YAML document"))
        .filter(|d| !d.is_null())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitoring_assets_are_accepted_by_the_prometheus_operator_crds_and_promtool() {
    let KubeEnv { plane, client } = KubeEnv::start_with(
        ControlPlaneOptions {
            controller_manager: false,
        },
        &[NS],
    )
    .await
    .expect("control plane");
    for kind in ["podmonitors", "servicemonitors", "prometheusrules"] {
        let path = provisioned(
            "prometheus-operator CRDs",
            &format!("monitoring-crds/monitoring.coreos.com_{kind}.yaml"),
        )
        .expect("the Prometheus Operator's CRDs are provisioned");
        plane
            .apply_crds(&std::fs::read_to_string(path).expect("read the CRD"))
            .await
            .expect("install the CRD");
    }

    let promtool = system_program("prometheus (promtool)", "promtool").expect("promtool");
    let work = WorkDir::new("monitoring-assets").expect("work dir");
    let mut applied = Vec::new();
    for (file, yaml) in ASSETS {
        for doc in documents(yaml) {
            let obj: DynamicObject = serde_yaml::from_value(doc.clone()).expect("an object");
            let types = obj.types.clone().expect("apiVersion and kind");
            let gvk = GroupVersionKind::try_from(&types).expect("a group, version and kind");
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), NS, &ApiResource::from_gvk(&gvk));
            let name = obj.metadata.name.clone().expect("a name");
            let mut params = PatchParams::apply("stoker-test").force();
            params.field_validation = Some(ValidationDirective::Strict);
            api.patch(&name, &params, &Patch::Apply(&obj))
                .await
                .unwrap_or_else(|e| panic!("{file}: {} {name} refused: {e}", types.kind));
            applied.push(format!("{} {name}", types.kind));

            if types.kind == "PrometheusRule" {
                let mut groups = serde_yaml::Mapping::new();
                groups.insert("groups".into(), doc["spec"]["groups"].clone());
                let rules = work
                    .write(
                        &format!("{name}.rules.yml"),
                        serde_yaml::to_string(&groups).expect("rules"),
                    )
                    .expect("write the rules");
                let out = Command::new(&promtool)
                    .arg("check")
                    .arg("rules")
                    .arg(&rules)
                    .output()
                    .expect("run promtool");
                assert!(
                    out.status.success(),
                    "promtool check rules {file}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
    println!("accepted: {applied:?}");
    for kind in ["PodMonitor", "ServiceMonitor", "PrometheusRule"] {
        assert!(
            applied.iter().any(|a| a.starts_with(kind)),
            "deploy/monitoring/ ships a {kind}: {applied:?}"
        );
    }
}
