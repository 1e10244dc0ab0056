//! Running `stoker-agent` beside a test Kafka node: the desired-config document a
//! coordinator would write for the node, and the agent process with the Pod's
//! downward-API environment, its ports on the node's address.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    process::Command,
    time::Duration,
};

use stoker_proto::agent::v1::{BrokerRef, DesiredConfig, Listener};

use crate::{
    Error, ManagedProcess, WorkDir, http,
    kafka::{
        AGENT_ADMIN_PORT, AGENT_GRPC_PORT, AgentHandle, BROKER_PORT, CONTROLLER_PORT,
        JMX_EXPORTER_PORT, NodeRole, TLS_PORT,
    },
    wait_for,
};

/// The namespace test agents report.
pub const TEST_NAMESPACE: &str = "stoker-test";

/// What the desired config of one node is made from.
#[derive(Debug)]
pub struct NodeSpec<'a> {
    /// The KafkaCluster's name.
    pub cluster: &'a str,
    /// node.id.
    pub id: i32,
    /// Roles.
    pub role: NodeRole,
    /// The node's address (its Pod IP).
    pub addr: Ipv4Addr,
    /// KRaft cluster id.
    pub cluster_id: &'a str,
    /// controller.quorum.voters.
    pub voters: &'a str,
    /// The node's log dir.
    pub log_dir: &'a Path,
    /// Non-topology config.
    pub config: &'a BTreeMap<String, String>,
    /// The Secret-like folder of an SSL client listener (`CLIENT_TLS` on
    /// [`TLS_PORT`]), for brokers that have one.
    pub tls_dir: Option<&'a Path>,
}

/// The desired-config document for one node, as the coordinator writes it.
pub fn desired_config(spec: &NodeSpec<'_>) -> DesiredConfig {
    let mut process_roles = Vec::new();
    if spec.role.is_broker() {
        process_roles.push("broker".to_owned());
    }
    if spec.role.is_controller() {
        process_roles.push("controller".to_owned());
    }
    let mut listeners = Vec::new();
    if spec.role.is_broker() {
        listeners.push(Listener {
            name: "PLAINTEXT".into(),
            security_protocol: "PLAINTEXT".into(),
            container_port: u32::from(BROKER_PORT),
            advertised_host: String::new(),
            advertised_port: 0,
            tls_dir: String::new(),
            advertise_node_address: false,
        });
    }
    if let Some(dir) = spec.tls_dir.filter(|_| spec.role.is_broker()) {
        listeners.push(Listener {
            name: "CLIENT_TLS".into(),
            security_protocol: "SSL".into(),
            container_port: u32::from(TLS_PORT),
            advertised_host: String::new(),
            advertised_port: 0,
            tls_dir: dir.display().to_string(),
            advertise_node_address: false,
        });
    }
    listeners.push(Listener {
        name: "CONTROLLER".into(),
        security_protocol: "PLAINTEXT".into(),
        container_port: if spec.role.is_controller() {
            u32::from(CONTROLLER_PORT)
        } else {
            0
        },
        advertised_host: String::new(),
        advertised_port: 0,
        tls_dir: String::new(),
        advertise_node_address: false,
    });
    DesiredConfig {
        schema_version: 1,
        broker: Some(BrokerRef {
            cluster: spec.cluster.to_owned(),
            namespace: TEST_NAMESPACE.to_owned(),
            broker_id: spec.id,
        }),
        process_roles,
        cluster_id: spec.cluster_id.to_owned(),
        listeners,
        inter_broker_listener: if spec.role.is_broker() {
            "PLAINTEXT".into()
        } else {
            String::new()
        },
        controller_listeners: vec!["CONTROLLER".into()],
        controller_quorum_voters: spec.voters.to_owned(),
        log_dirs: vec![spec.log_dir.display().to_string()],
        read_only_config: spec.config.clone(),
        cluster_wide_config: BTreeMap::new(),
        broker_config: BTreeMap::new(),
        rack_labels: vec![],
        secret_files: vec![],
        log_level: String::new(),
    }
}

/// The document of broker `broker` alone (an `INTERNAL` listener on 29092, a
/// controller it does not bind, one log dir): for tests of the agent that need no
/// Kafka to reach.
pub fn broker_only_doc(broker: BrokerRef) -> DesiredConfig {
    DesiredConfig {
        schema_version: 1,
        broker: Some(broker),
        process_roles: vec!["broker".into()],
        cluster_id: "MkU3OEVBNTcwNTJENDM2Qk".into(),
        listeners: vec![
            Listener {
                name: "INTERNAL".into(),
                security_protocol: "PLAINTEXT".into(),
                container_port: 29092,
                ..Listener::default()
            },
            Listener {
                name: "CONTROLLER".into(),
                security_protocol: "PLAINTEXT".into(),
                ..Listener::default()
            },
        ],
        inter_broker_listener: "INTERNAL".into(),
        controller_listeners: vec!["CONTROLLER".into()],
        controller_quorum_voters: "100@kafka-100:29093".into(),
        log_dirs: vec!["/kafka-logs/kafka".into()],
        ..DesiredConfig::default()
    }
}

/// Writes `doc` and starts the agent for node `id`, then waits until it has
/// rendered (its /startupz answers 200), as a kubelet waits on a native sidecar's
/// startup probe before starting the Kafka container.
pub async fn spawn(
    agent_bin: &Path,
    work: &WorkDir,
    id: i32,
    addr: Ipv4Addr,
    doc: &DesiredConfig,
    jmx: bool,
) -> Result<AgentHandle, Error> {
    let desired = work.write(
        &format!("node-{id}/desired/config.json"),
        serde_json::to_vec_pretty(doc)
            .map_err(|e| Error::Other(format!("serialise desired config: {e}")))?,
    )?;
    let out_dir = work.subdir(&format!("node-{id}/rendered"))?;
    let control_dir = work.subdir(&format!("node-{id}/control"))?;
    // The cluster's agent CA (one per work folder), and this agent's certificate.
    let broker = doc.broker.clone().unwrap_or_default();
    let ca = crate::agent_tls::ca_in(
        &work.path().join("agent-ca"),
        &broker.cluster,
        &broker.namespace,
    )?;
    let tls_dir = crate::agent_tls::agent_dir(&work.path().join(format!("node-{id}")), id);
    crate::agent_tls::write_agent_files(
        &ca,
        &tls_dir,
        &stoker_proto::agent_tls::agent_name(&broker.cluster, &broker.namespace, id),
        time::OffsetDateTime::now_utc(),
        time::Duration::days(1),
    )?;
    let coordinator =
        crate::agent_tls::Caller::coordinator(&ca, &broker.cluster, &broker.namespace, id)?;
    let admin = SocketAddr::from((addr, AGENT_ADMIN_PORT));
    let grpc = SocketAddr::from((addr, AGENT_GRPC_PORT));
    let mut cmd = Command::new(agent_bin);
    cmd.arg("run")
        .env("STOKER_AGENT_ADMIN_ADDR", admin.to_string())
        .env("STOKER_AGENT_GRPC_ADDR", grpc.to_string())
        .env("STOKER_AGENT_DESIRED_CONFIG", &desired)
        .env("STOKER_AGENT_OUTPUT_DIR", &out_dir)
        .env("STOKER_AGENT_TLS_DIR", &tls_dir)
        .env("STOKER_AGENT_CONTROL_DIR", &control_dir)
        .env("STOKER_AGENT_SHUTDOWN_TIMEOUT", "60s")
        .env("POD_NAME", format!("kafka-{id}"))
        .env("POD_NAMESPACE", TEST_NAMESPACE)
        .env("POD_IP", addr.to_string())
        .env("NODE_NAME", "local")
        .env("RUST_LOG", "info");
    if jmx {
        cmd.env(
            "STOKER_AGENT_JMX_EXPORTER_URL",
            format!("http://{addr}:{JMX_EXPORTER_PORT}/metrics"),
        );
    }
    let mut process = ManagedProcess::spawn(
        format!("agent-{id}"),
        cmd,
        &work.path().join(format!("node-{id}/agent.log")),
    )?;
    wait_for(
        &format!("agent {id} startup"),
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            let running = process.ensure_running();
            async move {
                running?;
                Ok(match http::get(admin, "/startupz").await {
                    Ok(r) if r.status == 200 => Ok(()),
                    Ok(r) => Err(r.body),
                    Err(e) => Err(e.to_string()),
                })
            }
        },
    )
    .await?;
    let readyz = http::get(admin, "/readyz").await.ok().map(|r| r.status);
    let mut handle = AgentHandle::new(
        process,
        desired,
        out_dir,
        (admin, grpc),
        (tls_dir, control_dir),
        coordinator,
    );
    handle.readyz_before_kafka = readyz;
    Ok(handle)
}

/// Runs the Kafka container's preStop hook on `control_dir` as the kubelet would (the
/// very command the coordinator puts in the Pod) and returns what the agent answered.
pub async fn prestop_hook(control_dir: &Path) -> Result<String, Error> {
    let dir = control_dir.display().to_string();
    let cmd = stoker_proto::prestop::hook_command(&dir, 120);
    let out = tokio::process::Command::new(&cmd[0])
        .args(&cmd[1..])
        .output()
        .await
        .map_err(|e| Error::Other(format!("failed to run the preStop hook: {e}")))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
