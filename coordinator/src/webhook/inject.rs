//! Sidecar injection, pure: a Pod labelled `kafka.stoker.io/agent: inject` becomes the
//! JSON Patch that gives it the agent — as a native sidecar in observe mode (Stoker did
//! not build the broker, so the agent renders nothing), with the Kafka container's
//! readiness from the agent and its preStop safety wait. The agent container comes
//! from the builder the coordinator's own broker Pods use.
//!
//! Annotations say what differs from the defaults; an unknown `kafka.stoker.io/`
//! annotation, a value that cannot work, or a Kafka container whose own preStop hook
//! would race the agent's, is a denial that says what to fix. Never a half-injected Pod:
//! either the whole patch, or none.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Value, json};

use crate::controller::kafka_cluster::build::agent::{
    AGENT_CONTAINER, agent_container, control_mount, control_volume, env, kafka_prestop,
    kafka_readiness_probe,
};

/// The label a Pod asks for the agent with.
pub const INJECT_LABEL: &str = "kafka.stoker.io/agent";
/// Its value.
pub const INJECT_VALUE: &str = "inject";
/// The prefix of the annotations injection reads.
const PREFIX: &str = "kafka.stoker.io/";
/// Annotation: the Kafka cluster's name (default: the `app.kubernetes.io/instance` label).
pub const CLUSTER: &str = "kafka.stoker.io/cluster";
/// Annotation: the broker's `node.id`, or `ordinal` (default).
pub const BROKER_ID: &str = "kafka.stoker.io/broker-id";
/// Annotation: `broker`, `controller` or `broker,controller` (default `broker`).
pub const ROLES: &str = "kafka.stoker.io/roles";
/// Annotation: the Kafka container's name (default `kafka`, or the Pod's only container).
pub const CONTAINER: &str = "kafka.stoker.io/container";
/// Annotation: the broker listener's port, plaintext (default 9092).
pub const BROKER_PORT: &str = "kafka.stoker.io/broker-port";
/// Annotation: the controller listener's port (default 9093).
pub const CONTROLLER_PORT: &str = "kafka.stoker.io/controller-port";
/// Annotation: the port of a JMX exporter in the Kafka container, passed through on the
/// agent's /metrics (default: none).
pub const JMX_EXPORTER_PORT: &str = "kafka.stoker.io/jmx-exporter-port";
/// Every annotation injection reads.
pub const ANNOTATIONS: [&str; 7] = [
    CLUSTER,
    BROKER_ID,
    ROLES,
    CONTAINER,
    BROKER_PORT,
    CONTROLLER_PORT,
    JMX_EXPORTER_PORT,
];

/// What injection decided for a Pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Injection {
    /// Not asked for (no label), or already injected: the Pod as it is.
    Unchanged,
    /// The JSON Patch operations that inject the agent.
    Patch(Vec<Value>),
    /// Refused: what to fix.
    Denied(String),
}

fn port(annotations: &BTreeMap<String, String>, key: &str, default: u16) -> Result<u16, String> {
    match annotations.get(key) {
        None => Ok(default),
        Some(v) => v.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
            format!("annotation {key} is {v:?}; it must be a port number (1-65535)")
        }),
    }
}

/// The patch that gives `pod` the agent `image`.
pub fn inject(pod: &Pod, image: &str) -> Injection {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    if labels.get(INJECT_LABEL).map(String::as_str) != Some(INJECT_VALUE) {
        return Injection::Unchanged;
    }
    let Some(spec) = pod.spec.as_ref() else {
        return Injection::Denied("the Pod has no spec".into());
    };
    if spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .any(|c| c.name == AGENT_CONTAINER)
    {
        return Injection::Unchanged;
    }
    match patch(pod, image, &labels) {
        Ok(ops) => Injection::Patch(ops),
        Err(why) => Injection::Denied(format!(
            "stoker-agent cannot be injected: {why} (label {INJECT_LABEL}: {INJECT_VALUE}; annotations {})",
            ANNOTATIONS.join(", ")
        )),
    }
}

fn patch(pod: &Pod, image: &str, labels: &BTreeMap<String, String>) -> Result<Vec<Value>, String> {
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    if let Some(unknown) = annotations
        .keys()
        .filter(|k| k.starts_with(PREFIX) && !ANNOTATIONS.contains(&k.as_str()))
        .find(|k| k.as_str() != "kafka.stoker.io/config-hash")
    {
        return Err(format!("annotation {unknown} is not one injection knows"));
    }
    let spec = pod.spec.as_ref().ok_or("the Pod has no spec")?;
    let cluster = annotations
        .get(CLUSTER)
        .or_else(|| labels.get("app.kubernetes.io/instance"))
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| {
            format!("the Pod names no Kafka cluster: set annotation {CLUSTER} (or label app.kubernetes.io/instance)")
        })?;
    let broker_id = annotations.get(BROKER_ID).map_or("ordinal", String::as_str);
    if broker_id != "ordinal" && broker_id.parse::<u32>().is_err() {
        return Err(format!(
            "annotation {BROKER_ID} is {broker_id:?}; it must be a node id or `ordinal`"
        ));
    }
    let roles = annotations.get(ROLES).map_or("broker", String::as_str);
    if !matches!(
        roles,
        "broker" | "controller" | "broker,controller" | "controller,broker"
    ) {
        return Err(format!(
            "annotation {ROLES} is {roles:?}; it must be broker, controller or broker,controller"
        ));
    }
    let broker_port = port(&annotations, BROKER_PORT, 9092)?;
    let controller_port = port(&annotations, CONTROLLER_PORT, 9093)?;
    let (index, kafka) = kafka_container(spec.containers.as_slice(), annotations.get(CONTAINER))?;
    if kafka
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .is_some()
    {
        return Err(format!(
            "container {} has its own preStop hook, which would run instead of the agent's safety wait; remove it",
            kafka.name
        ));
    }

    let mut mode = vec![
        env("STOKER_AGENT_CLUSTER", cluster.clone()),
        env("STOKER_AGENT_BROKER_ID", broker_id),
        env("STOKER_AGENT_ROLES", roles),
        env("STOKER_AGENT_BROKER_PORT", broker_port.to_string()),
        env("STOKER_AGENT_CONTROLLER_PORT", controller_port.to_string()),
    ];
    if annotations.contains_key(JMX_EXPORTER_PORT) {
        let jmx = port(&annotations, JMX_EXPORTER_PORT, 0)?;
        mode.push(env(
            "STOKER_AGENT_JMX_EXPORTER_URL",
            format!("http://$(POD_IP):{jmx}/metrics"),
        ));
    }
    // Kubernetes' default is 30 s; the agent's safety wait ends 30 s before the grace
    // period does, so a Pod that wants a long wait sets a long grace period.
    let grace = spec.termination_grace_period_seconds.unwrap_or(30);
    let agent = agent_container(image, &["observe"], mode, Vec::new(), grace);

    let mut ops = Vec::new();
    // The agent first, so it runs before Kafka and stops after it.
    if spec.init_containers.as_ref().is_none_or(Vec::is_empty) {
        ops.push(json!({"op": "add", "path": "/spec/initContainers", "value": [agent]}));
    } else {
        ops.push(json!({"op": "add", "path": "/spec/initContainers/0", "value": agent}));
    }
    // The control folder the preStop hook asks the agent through, in both containers.
    if spec.volumes.is_none() {
        ops.push(json!({"op": "add", "path": "/spec/volumes", "value": [control_volume()]}));
    } else {
        ops.push(json!({"op": "add", "path": "/spec/volumes/-", "value": control_volume()}));
    }
    if kafka.volume_mounts.is_none() {
        ops.push(json!({
            "op": "add",
            "path": format!("/spec/containers/{index}/volumeMounts"),
            "value": [control_mount()],
        }));
    } else {
        ops.push(json!({
            "op": "add",
            "path": format!("/spec/containers/{index}/volumeMounts/-"),
            "value": control_mount(),
        }));
    }
    let pre_stop = kafka_prestop(grace).pre_stop;
    if kafka.lifecycle.is_some() {
        // Beside what else its lifecycle has (a postStart hook).
        ops.push(json!({
            "op": "add",
            "path": format!("/spec/containers/{index}/lifecycle/preStop"),
            "value": pre_stop,
        }));
    } else {
        ops.push(json!({
            "op": "add",
            "path": format!("/spec/containers/{index}/lifecycle"),
            "value": {"preStop": pre_stop},
        }));
    }
    if kafka.readiness_probe.is_none() {
        ops.push(json!({
            "op": "add",
            "path": format!("/spec/containers/{index}/readinessProbe"),
            "value": kafka_readiness_probe(),
        }));
    }
    Ok(ops)
}

fn kafka_container<'a>(
    containers: &'a [Container],
    named: Option<&String>,
) -> Result<(usize, &'a Container), String> {
    let want = named.map_or("kafka", String::as_str);
    if let Some(found) = containers.iter().enumerate().find(|(_, c)| c.name == want) {
        return Ok(found);
    }
    if named.is_none()
        && let [only] = containers
    {
        return Ok((0, only));
    }
    Err(format!(
        "the Pod has no container {want:?} (it has {}); name the Kafka container with annotation {CONTAINER}",
        containers
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).expect("a Pod")
    }

    const KAFKA: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kafka-1\n  labels: {kafka.stoker.io/agent: inject, app.kubernetes.io/instance: events}\nspec:\n  containers:\n  - {name: kafka, image: apache/kafka:4.1.1}\n";

    fn apply(p: &Pod, ops: &[Value]) -> Pod {
        let mut doc = serde_json::to_value(p).expect("json");
        let patch: json_patch::Patch =
            serde_json::from_value(Value::Array(ops.to_vec())).expect("a patch");
        json_patch::patch(&mut doc, &patch).expect("the patch applies");
        serde_json::from_value(doc).expect("still a Pod")
    }

    #[test]
    fn a_labelled_kafka_pod_gets_the_agent_its_readiness_and_its_safety_wait() {
        let p = pod(KAFKA);
        let Injection::Patch(ops) = inject(&p, "stoker-agent:1") else {
            panic!("injected");
        };
        let out = apply(&p, &ops);
        let spec = out.spec.expect("spec");
        let agent = &spec.init_containers.as_ref().expect("init containers")[0];
        assert_eq!(agent.name, AGENT_CONTAINER);
        assert_eq!(agent.args.as_deref(), Some(&["observe".to_owned()][..]));
        assert_eq!(agent.restart_policy.as_deref(), Some("Always"));
        let envs: BTreeMap<_, _> = agent
            .env
            .iter()
            .flatten()
            .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
            .collect();
        assert_eq!(envs["STOKER_AGENT_CLUSTER"], "events");
        assert_eq!(envs["STOKER_AGENT_BROKER_ID"], "ordinal");
        let kafka = &spec.containers[0];
        assert!(kafka.readiness_probe.is_some());
        assert!(
            kafka
                .lifecycle
                .as_ref()
                .and_then(|l| l.pre_stop.as_ref())
                .is_some()
        );
        // Injected once: asked again, nothing changes.
        assert_eq!(
            inject(&pod_from(&spec), "stoker-agent:1"),
            Injection::Unchanged
        );
    }

    fn pod_from(spec: &k8s_openapi::api::core::v1::PodSpec) -> Pod {
        let mut p = pod(KAFKA);
        p.spec = Some(spec.clone());
        p
    }

    #[test]
    fn pods_that_did_not_ask_are_left_alone() {
        let mut p = pod(KAFKA);
        p.metadata.labels = None;
        assert_eq!(inject(&p, "a"), Injection::Unchanged);
    }

    #[test]
    fn annotations_that_cannot_work_are_denied_with_what_to_fix() {
        let with = |annotations: &str| {
            let mut p = pod(KAFKA);
            p.metadata.annotations = Some(serde_yaml::from_str(annotations).expect("map"));
            inject(&p, "a")
        };
        for (annotations, says) in [
            (
                "{kafka.stoker.io/brokerid: '1'}",
                "kafka.stoker.io/brokerid is not one",
            ),
            ("{kafka.stoker.io/broker-id: one}", "must be a node id"),
            (
                "{kafka.stoker.io/roles: leader}",
                "must be broker, controller",
            ),
            (
                "{kafka.stoker.io/broker-port: '99999'}",
                "must be a port number",
            ),
            (
                "{kafka.stoker.io/container: broker}",
                "has no container \"broker\"",
            ),
        ] {
            match with(annotations) {
                Injection::Denied(why) => assert!(why.contains(says), "{annotations}: {why}"),
                other => panic!("{annotations}: {other:?}"),
            }
        }
        let mut own_hook = pod(KAFKA);
        own_hook.spec.as_mut().expect("spec").containers[0].lifecycle = Some(kafka_prestop(30));
        assert!(
            matches!(inject(&own_hook, "a"), Injection::Denied(w) if w.contains("its own preStop hook"))
        );
        let mut anonymous = pod(KAFKA);
        anonymous.metadata.labels = Some(BTreeMap::from([(
            INJECT_LABEL.to_owned(),
            INJECT_VALUE.to_owned(),
        )]));
        assert!(
            matches!(inject(&anonymous, "a"), Injection::Denied(w) if w.contains("names no Kafka cluster"))
        );
    }
}
