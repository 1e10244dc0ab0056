//! The agent beside Kafka: its container (a native sidecar) and the hooks it gives the
//! Kafka container (readiness, the preStop safety wait). One code path for the broker
//! Pods the coordinator builds and for the Pods its admission webhook injects the agent
//! into. Pure.

use k8s_openapi::{
    api::core::v1::{
        Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction,
        HTTPGetAction, Lifecycle, LifecycleHandler, ObjectFieldSelector, Probe, Volume,
        VolumeMount,
    },
    apimachinery::pkg::{api::resource::Quantity, util::intstr::IntOrString},
};

use super::{AGENT_ADMIN_PORT, AGENT_GRPC_PORT, security};

/// The agent container's name.
pub const AGENT_CONTAINER: &str = "stoker-agent";
/// Default grace period: room for the agent's safety wait and Kafka's controlled shutdown.
pub const DEFAULT_GRACE_SECONDS: i64 = 120;
/// The agent waits for safe-to-stop this long less than the grace period, leaving the
/// rest to Kafka.
const AGENT_SHUTDOWN_MARGIN_SECONDS: i64 = 30;

/// An environment variable with a value.
pub fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

/// An environment variable from the downward API.
pub fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The Pod's facts the agent (and Kafka) read: name, namespace, address, node.
pub fn downward_env() -> Vec<EnvVar> {
    vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        field_env("POD_IP", "status.podIP"),
        field_env("NODE_NAME", "spec.nodeName"),
    ]
}

fn http_probe(path: &str, period: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(AGENT_ADMIN_PORT),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failure_threshold),
        timeout_seconds: Some(5),
        ..Probe::default()
    }
}

/// The Kafka container's readiness: the agent's `/readyz` (from live metadata).
pub fn kafka_readiness_probe() -> Probe {
    http_probe("/readyz", 5, 3)
}

/// Where the agent and the Kafka container share their control folder.
pub const CONTROL_DIR: &str = "/var/run/stoker-control";
/// The Pod volume of that folder (an `emptyDir`: only the Pod's containers see it).
pub const CONTROL_VOLUME: &str = "stoker-control";

/// The control folder's volume.
pub fn control_volume() -> Volume {
    Volume {
        name: CONTROL_VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".into()),
            size_limit: Some(Quantity("1Mi".into())),
        }),
        ..Volume::default()
    }
}

/// A container's mount of the control folder.
pub fn control_mount() -> VolumeMount {
    VolumeMount {
        name: CONTROL_VOLUME.into(),
        mount_path: CONTROL_DIR.into(),
        ..VolumeMount::default()
    }
}

/// The Kafka container's preStop hook: it asks the agent through the Pod's control
/// folder ([`stoker_proto::prestop`]) and waits while the agent holds the stop until no
/// partition would fall below `min.insync.replicas`, at most the Pod's grace period.
/// An exec hook, so no port of the Pod can ask a broker to stop.
pub fn kafka_prestop(grace_seconds: i64) -> Lifecycle {
    let max = u32::try_from(grace_seconds.max(1)).unwrap_or(u32::MAX);
    Lifecycle {
        pre_stop: Some(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(stoker_proto::prestop::hook_command(CONTROL_DIR, max)),
            }),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    }
}

/// The agent container: `args` (`run` or `observe`), the mode's own environment
/// (`env`), its mounts, and the Pod's grace period (its safety wait ends that much
/// earlier than the Pod's, leaving the rest to Kafka). The gRPC port is declared only
/// when the mode's environment gives the agent its mTLS folder (it serves gRPC only
/// over mTLS).
pub fn agent_container(
    image: &str,
    args: &[&str],
    mode_env: Vec<EnvVar>,
    mounts: Vec<VolumeMount>,
    grace_seconds: i64,
) -> Container {
    let grpc = mode_env.iter().any(|e| e.name == "STOKER_AGENT_TLS_DIR");
    let mut agent_env = downward_env();
    agent_env.push(env(
        "STOKER_AGENT_ADMIN_ADDR",
        format!("$(POD_IP):{AGENT_ADMIN_PORT}"),
    ));
    if grpc {
        agent_env.push(env(
            "STOKER_AGENT_GRPC_ADDR",
            format!("$(POD_IP):{AGENT_GRPC_PORT}"),
        ));
    }
    agent_env.extend([
        env("STOKER_AGENT_CONTROL_DIR", CONTROL_DIR),
        env(
            "STOKER_AGENT_SHUTDOWN_TIMEOUT",
            format!(
                "{}s",
                (grace_seconds - AGENT_SHUTDOWN_MARGIN_SECONDS).max(10)
            ),
        ),
    ]);
    agent_env.extend(mode_env);
    Container {
        name: AGENT_CONTAINER.into(),
        image: Some(image.to_owned()),
        args: Some(args.iter().map(|a| (*a).to_owned()).collect()),
        env: Some(agent_env),
        // A native sidecar: starts first (Kafka waits on its startup probe) and stops
        // last.
        restart_policy: Some("Always".into()),
        startup_probe: Some(http_probe("/startupz", 1, 600)),
        liveness_probe: Some(http_probe("/livez", 10, 3)),
        ports: Some(
            std::iter::once(ContainerPort {
                name: Some("agent-admin".into()),
                container_port: AGENT_ADMIN_PORT,
                ..ContainerPort::default()
            })
            .chain(grpc.then(|| ContainerPort {
                name: Some("agent-grpc".into()),
                container_port: AGENT_GRPC_PORT,
                ..ContainerPort::default()
            }))
            .collect(),
        ),
        volume_mounts: Some(std::iter::once(control_mount()).chain(mounts).collect()),
        // It writes only to volumes.
        security_context: Some(security::restricted_container(
            Some(security::AGENT_UID),
            true,
        )),
        ..Container::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_stops_its_safety_wait_before_the_pods_grace_period_ends() {
        let c = agent_container("a:1", &["run"], Vec::new(), Vec::new(), 120);
        let timeout = c
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "STOKER_AGENT_SHUTDOWN_TIMEOUT")
            .and_then(|e| e.value.clone());
        assert_eq!(timeout.as_deref(), Some("90s"));
        let short = agent_container("a:1", &["run"], Vec::new(), Vec::new(), 20);
        assert!(
            short
                .env
                .iter()
                .flatten()
                .any(|e| e.value.as_deref() == Some("10s")),
            "never below 10 s"
        );
        assert_eq!(
            c.restart_policy.as_deref(),
            Some("Always"),
            "a native sidecar"
        );
        assert_eq!(
            c.volume_mounts,
            Some(vec![control_mount()]),
            "only the control folder, unless asked"
        );
    }

    #[test]
    fn the_grpc_port_is_declared_only_where_the_agent_serves_it() {
        let ports = |c: &Container| -> Vec<String> {
            c.ports
                .iter()
                .flatten()
                .filter_map(|p| p.name.clone())
                .collect()
        };
        let observe = agent_container("a:1", &["observe"], Vec::new(), Vec::new(), 60);
        assert_eq!(ports(&observe), ["agent-admin"]);
        assert!(
            !observe
                .env
                .iter()
                .flatten()
                .any(|e| e.name == "STOKER_AGENT_GRPC_ADDR")
        );
        let run = agent_container(
            "a:1",
            &["run"],
            vec![env("STOKER_AGENT_TLS_DIR", "/tls")],
            Vec::new(),
            60,
        );
        assert_eq!(ports(&run), ["agent-admin", "agent-grpc"]);
    }

    #[test]
    fn the_prestop_hook_is_an_exec_bounded_by_the_grace_period() {
        let hook = kafka_prestop(45).pre_stop.expect("a preStop hook");
        assert!(hook.http_get.is_none(), "no port asks a broker to stop");
        let cmd = hook.exec.and_then(|e| e.command).expect("a command");
        assert!(cmd[2].contains(CONTROL_DIR), "{cmd:?}");
        assert!(cmd[2].contains("-lt 225 ]"), "45 s in 0.2 s ticks: {cmd:?}");
    }
}
