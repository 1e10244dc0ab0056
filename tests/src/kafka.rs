//! A real Apache Kafka cluster in KRaft mode: one JVM per node, each on its own
//! loopback address with Kafka's usual ports (9092 clients, 9093 controllers, 9404
//! the JMX exporter), started through the provisioned `/opt/kafka`-like folder's
//! `bin/kafka-storage.sh` and `bin/kafka-server-start.sh`.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use base64::Engine as _;
use rdkafka::{
    ClientConfig,
    consumer::{BaseConsumer, Consumer},
    metadata::Metadata,
};

use crate::{
    Error, ManagedProcess, WorkDir, control_plane::random_bytes, net::free_loopback_addr,
    provisioned, wait_for,
};

/// Port of the client listener on every broker.
pub const BROKER_PORT: u16 = 9092;
/// Port of the controller listener on every controller.
pub const CONTROLLER_PORT: u16 = 9093;
/// Port of the SASL_PLAINTEXT (SCRAM-SHA-512) client listener, when enabled.
pub const SCRAM_PORT: u16 = 9094;
/// Port of the SSL client listener the agents render, when enabled.
pub const TLS_PORT: u16 = 9095;
/// Port of the JMX exporter javaagent, when enabled.
pub const JMX_EXPORTER_PORT: u16 = 9404;
/// Port of a node's agent admin server, when agents run.
pub const AGENT_ADMIN_PORT: u16 = 8080;
/// Port of a node's agent gRPC server, when agents run.
pub const AGENT_GRPC_PORT: u16 = 8081;

/// How long a cluster may take to start on a loaded 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// The KRaft roles of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    /// `process.roles=broker`.
    Broker,
    /// `process.roles=controller`.
    Controller,
    /// `process.roles=broker,controller`.
    Combined,
}

impl NodeRole {
    /// The value of `process.roles`.
    pub fn process_roles(self) -> &'static str {
        match self {
            Self::Broker => "broker",
            Self::Controller => "controller",
            Self::Combined => "broker,controller",
        }
    }

    /// True for brokers and combined nodes.
    pub fn is_broker(self) -> bool {
        matches!(self, Self::Broker | Self::Combined)
    }

    /// True for controllers and combined nodes.
    pub fn is_controller(self) -> bool {
        matches!(self, Self::Controller | Self::Combined)
    }
}

/// A `stoker-agent` running beside one node, as the sidecar of its Pod would.
#[derive(Debug)]
pub struct AgentHandle {
    process: ManagedProcess,
    /// The desired-config document it renders from.
    pub desired_config: PathBuf,
    /// The folder it renders into.
    pub out_dir: PathBuf,
    /// Its admin HTTP address.
    pub admin: std::net::SocketAddr,
    /// Its gRPC address.
    pub grpc: std::net::SocketAddr,
    /// What its /readyz answered after it rendered, before Kafka was started.
    pub readyz_before_kafka: Option<u16>,
    /// Its mTLS files (`tls.crt`, `tls.key`, `ca.crt`).
    pub tls_dir: PathBuf,
    /// The folder its preStop handshake runs through.
    pub control_dir: PathBuf,
    /// The coordinator as it calls this agent.
    pub coordinator: crate::agent_tls::Caller,
}

impl AgentHandle {
    /// Wraps a started agent.
    pub fn new(
        process: ManagedProcess,
        desired_config: PathBuf,
        out_dir: PathBuf,
        (admin, grpc): (std::net::SocketAddr, std::net::SocketAddr),
        (tls_dir, control_dir): (PathBuf, PathBuf),
        coordinator: crate::agent_tls::Caller,
    ) -> Self {
        Self {
            process,
            desired_config,
            out_dir,
            admin,
            grpc,
            readyz_before_kafka: None,
            tls_dir,
            control_dir,
            coordinator,
        }
    }

    /// A gRPC client of the agent, connected as the coordinator (mTLS).
    pub async fn grpc_client(
        &self,
    ) -> Result<stoker_proto::agent::v1::agent_client::AgentClient<tonic::transport::Channel>, Error>
    {
        crate::agent_tls::client(self.grpc, &self.coordinator).await
    }

    /// Runs the Kafka container's preStop hook as the kubelet would (the same command)
    /// and returns what the agent answered.
    pub async fn prestop(&self) -> Result<String, Error> {
        crate::agent::prestop_hook(&self.control_dir).await
    }

    /// The agent's process.
    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }
}

/// One Kafka node of a [`KafkaCluster`].
#[derive(Debug)]
pub struct KafkaNode {
    process: ManagedProcess,
    /// The agent beside the node, when the cluster runs with agents.
    pub agent: Option<AgentHandle>,
    /// Kafka `node.id`.
    pub id: i32,
    /// Its roles.
    pub role: NodeRole,
    /// Its own loopback address.
    pub addr: Ipv4Addr,
    /// Its `server.properties`.
    pub properties: PathBuf,
    /// Its single log dir.
    pub log_dir: PathBuf,
}

impl KafkaNode {
    /// `addr:9092`, for brokers.
    pub fn broker_endpoint(&self) -> String {
        format!("{}:{BROKER_PORT}", self.addr)
    }

    /// The Kafka process id while it runs.
    pub fn process_id(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The node's process.
    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }

    /// Everything the node has logged so far.
    pub fn log(&self) -> String {
        self.process.log_contents()
    }

    /// The node's agent.
    pub fn agent(&self) -> Result<&AgentHandle, Error> {
        self.agent
            .as_ref()
            .ok_or_else(|| Error::Other(format!("node {} runs without an agent", self.id)))
    }

    /// The node's agent, mutably.
    pub fn agent_mut(&mut self) -> Result<&mut AgentHandle, Error> {
        let id = self.id;
        self.agent
            .as_mut()
            .ok_or_else(|| Error::Other(format!("node {id} runs without an agent")))
    }
}

/// Builds a [`KafkaCluster`].
#[derive(Debug, Clone)]
pub struct KafkaClusterBuilder {
    brokers: usize,
    controllers: usize,
    combined: usize,
    jmx_exporter: bool,
    config: BTreeMap<String, String>,
    node_config: BTreeMap<String, String>,
    broker_heap: String,
    full_jit: bool,
    agent_bin: Option<PathBuf>,
    cluster_name: String,
    scram: bool,
    tls: bool,
    cruise_control_reporter: bool,
}

impl Default for KafkaClusterBuilder {
    fn default() -> Self {
        Self {
            brokers: 3,
            controllers: 1,
            combined: 0,
            jmx_exporter: false,
            config: BTreeMap::new(),
            node_config: BTreeMap::new(),
            broker_heap: "-Xms128m -Xmx320m".into(),
            full_jit: false,
            agent_bin: None,
            cluster_name: "kafka".into(),
            scram: false,
            tls: false,
            cruise_control_reporter: false,
        }
    }
}

impl KafkaClusterBuilder {
    /// Dedicated brokers (node ids 1..=n).
    pub fn brokers(mut self, n: usize) -> Self {
        self.brokers = n;
        self
    }

    /// Dedicated controllers (node ids 100..), 1 or 3.
    pub fn controllers(mut self, n: usize) -> Self {
        self.controllers = n;
        self
    }

    /// Combined broker+controller nodes (node ids 1..=n) instead of dedicated ones.
    pub fn combined(mut self, n: usize) -> Self {
        self.combined = n;
        self.brokers = 0;
        self.controllers = 0;
        self
    }

    /// Runs the Prometheus JMX exporter javaagent on every node at port 9404.
    pub fn with_jmx_exporter(mut self) -> Self {
        self.jmx_exporter = true;
        self
    }

    /// Runs `stoker-agent` (the binary at `agent_bin`) beside every node: the agent
    /// renders the node's server.properties from a desired-config document before
    /// Kafka starts, exactly as in a broker Pod, and serves its admin and gRPC ports
    /// on the node's address.
    pub fn with_agents(mut self, agent_bin: PathBuf) -> Self {
        self.agent_bin = Some(agent_bin);
        self
    }

    /// Runs the nodes with the JVM's optimising compiler (C2) as production does, for
    /// benchmarks: by default the nodes stop at C1, which starts faster and costs less
    /// CPU on two cores but leaves, for one, TLS crypto unoptimised.
    pub fn with_full_jit(mut self) -> Self {
        self.full_jit = true;
        self
    }

    /// Adds an SSL client listener (`CLIENT_TLS`) on port [`TLS_PORT`] of every broker,
    /// rendered by its agent from a folder laid out as a mounted Secret (`tls.crt`,
    /// `tls.key`, `ca.crt`) holding a certificate for the broker's address signed by
    /// the cluster's test CA ([`KafkaCluster::tls_ca_file`]). Needs
    /// [`with_agents`](Self::with_agents).
    pub fn with_tls_listener(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Adds a SASL_PLAINTEXT listener with SCRAM-SHA-512 on port [`SCRAM_PORT`] of
    /// every broker and turns on Kafka's `StandardAuthorizer` on every node: clients of
    /// that listener are held to their ACLs, while the PLAINTEXT listeners (the
    /// coordinator's and the brokers' own) stay super users.
    pub fn with_scram_listener(mut self) -> Self {
        self.scram = true;
        self
    }

    /// Sets a config key on every broker-capable node (applied last).
    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.config.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Sets a config key on every node, controllers included (applied last): what a
    /// cluster-wide setting such as the authorizer needs.
    pub fn node_config(mut self, key: &str, value: &str) -> Self {
        self.node_config.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Turns on Kafka's `StandardAuthorizer` on every node with
    /// `allow.everyone.if.no.acl.found=true`: every principal may do anything until a
    /// test adds ACLs for a resource, which then hold for it.
    pub fn with_authorizer(self) -> Self {
        self.node_config(
            "authorizer.class.name",
            "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        )
        .node_config("allow.everyone.if.no.acl.found", "true")
    }

    /// Runs Cruise Control's metrics reporter in every broker (its jar is in the Kafka
    /// layout's libs/), reporting every 10 s into `__CruiseControlMetrics`.
    pub fn with_cruise_control_reporter(mut self) -> Self {
        self.cruise_control_reporter = true;
        self
    }

    /// Formats the storage of every node, starts them and waits until every broker is
    /// registered and unfenced in the cluster metadata.
    pub async fn start(self) -> Result<KafkaCluster, Error> {
        let home = provisioned("kafka", "kafka/bin/kafka-server-start.sh")?
            .parent()
            .and_then(Path::parent)
            .map(Path::to_owned)
            .ok_or_else(|| Error::Other("the kafka folder has no parent".into()))?;
        let work = WorkDir::new("kafka")?;
        let cluster_id = new_cluster_id()?;

        let mut layout: Vec<(i32, NodeRole)> = Vec::new();
        if self.combined > 0 {
            layout.extend((1..=self.combined).map(|i| (node_id(i), NodeRole::Combined)));
        } else {
            layout.extend((0..self.controllers).map(|i| (100 + node_id(i), NodeRole::Controller)));
            layout.extend((1..=self.brokers).map(|i| (node_id(i), NodeRole::Broker)));
        }
        if !layout.iter().any(|(_, r)| r.is_controller()) {
            return Err(Error::Other(
                "a KRaft cluster needs at least one controller".into(),
            ));
        }
        let ports = [
            BROKER_PORT,
            CONTROLLER_PORT,
            SCRAM_PORT,
            TLS_PORT,
            JMX_EXPORTER_PORT,
            AGENT_ADMIN_PORT,
            AGENT_GRPC_PORT,
        ];
        let mut addrs = Vec::new();
        for _ in &layout {
            addrs.push(free_loopback_addr(&ports)?);
        }
        let voters = layout
            .iter()
            .zip(&addrs)
            .filter(|((_, role), _)| role.is_controller())
            .map(|((id, _), addr)| format!("{id}@{addr}:{CONTROLLER_PORT}"))
            .collect::<Vec<_>>()
            .join(",");
        let broker_count = layout.iter().filter(|(_, r)| r.is_broker()).count();

        // Render and format every node; formatting starts a JVM each, so run them side
        // by side.
        if self.scram && self.agent_bin.is_some() {
            return Err(Error::Other(
                "with_scram_listener() renders its own server.properties and cannot be combined with with_agents()".into(),
            ));
        }
        if self.tls && self.agent_bin.is_none() {
            return Err(Error::Other(
                "with_tls_listener() is rendered by the agents: add with_agents()".into(),
            ));
        }
        let tls_ca = if self.tls {
            Some(crate::agent_tls::ca_in(
                &work.path().join("kafka-ca"),
                &format!("kafka-tls-{}", self.cluster_name),
                crate::agent::TEST_NAMESPACE,
            )?)
        } else {
            None
        };
        let mut prepared = Vec::new();
        let mut agents = BTreeMap::new();
        for (&(id, role), &addr) in layout.iter().zip(&addrs) {
            let log_dir = work.subdir(&format!("node-{id}/data"))?;
            let properties = if let Some(agent_bin) = &self.agent_bin {
                let tls_dir = match &tls_ca {
                    Some(ca) if role.is_broker() => {
                        let dir = work.path().join(format!("node-{id}/kafka-tls"));
                        write_broker_tls(ca, &dir, addr)?;
                        Some(dir)
                    }
                    _ => None,
                };
                let doc = crate::agent::desired_config(&crate::agent::NodeSpec {
                    tls_dir: tls_dir.as_deref(),
                    cluster: &self.cluster_name,
                    id,
                    role,
                    addr,
                    cluster_id: &cluster_id,
                    voters: &voters,
                    log_dir: &log_dir,
                    config: &{
                        let mut c = small_box_config(role, broker_count, &self.config);
                        c.extend(self.node_config.clone());
                        if self.cruise_control_reporter && role.is_broker() {
                            c.extend(cruise_control_reporter_config(addr, broker_count));
                        }
                        c
                    },
                });
                let agent =
                    crate::agent::spawn(agent_bin, &work, id, addr, &doc, self.jmx_exporter)
                        .await?;
                let props = agent.out_dir.join("server.properties");
                agents.insert(id, agent);
                props
            } else {
                let mut props = render_properties(
                    &NodePlan {
                        id,
                        role,
                        addr,
                        voters: &voters,
                        log_dir: &log_dir,
                        broker_count,
                        scram: self.scram,
                    },
                    &self.config,
                );
                for (k, v) in &self.node_config {
                    props.push_str(&format!("{k}={v}\n"));
                }
                if self.cruise_control_reporter && role.is_broker() {
                    for (k, v) in cruise_control_reporter_config(addr, broker_count) {
                        props.push_str(&format!("{k}={v}\n"));
                    }
                }
                work.write(&format!("node-{id}/server.properties"), props)?
            };
            prepared.push((id, role, addr, properties, log_dir));
        }
        let mut formats = Vec::new();
        for (id, _, _, properties, _) in &prepared {
            let mut cmd = std::process::Command::new(home.join("bin/kafka-storage.sh"));
            cmd.args(["format", "-t", &cluster_id, "-c"])
                .arg(properties);
            let log = work.path().join(format!("node-{id}/format.log"));
            formats.push((
                *id,
                log.clone(),
                tokio::task::spawn_blocking(move || run_to_log(cmd, &log)),
            ));
        }
        for (id, log, task) in formats {
            let ok = task
                .await
                .map_err(|e| Error::Other(format!("format task of node {id} panicked: {e}")))??;
            if !ok {
                return Err(Error::Other(format!(
                    "kafka-storage.sh format failed for node {id}:\n{}",
                    crate::process::read_tail(&log, 4000)
                )));
            }
        }

        let mut nodes = Vec::new();
        for (id, role, addr, properties, log_dir) in prepared {
            let mut cmd = Command::new(home.join("bin/kafka-server-start.sh"));
            cmd.arg(&properties);
            let heap = if role == NodeRole::Controller {
                "-Xms64m -Xmx192m".to_owned()
            } else {
                self.broker_heap.clone()
            };
            cmd.env("KAFKA_HEAP_OPTS", heap).env(
                "KAFKA_JVM_PERFORMANCE_OPTS",
                // Small, fast-starting JVMs: serial GC and C1 only keep four nodes within
                // a few hundred MiB each and their start-up CPU low on two cores.
                if self.full_jit {
                    "-XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true"
                } else {
                    "-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true"
                },
            );
            if let Some(agent) = agents.get(&id) {
                cmd.env(
                    "KAFKA_LOG4J_OPTS",
                    format!(
                        "-Dlog4j2.configurationFile=file:{}",
                        agent.out_dir.join("log4j2.properties").display()
                    ),
                );
            }
            if self.jmx_exporter {
                cmd.env(
                    "KAFKA_OPTS",
                    format!(
                        "-javaagent:{}={addr}:{JMX_EXPORTER_PORT}:{}",
                        home.join("agents/jmx_prometheus_javaagent.jar").display(),
                        home.join("config/kafka-metrics.yml").display()
                    ),
                );
            }
            let process = ManagedProcess::spawn(
                format!("kafka-node-{id}"),
                cmd,
                &work.path().join(format!("node-{id}/kafka.log")),
            )?;
            nodes.push(KafkaNode {
                process,
                agent: agents.remove(&id),
                id,
                role,
                addr,
                properties,
                log_dir,
            });
        }
        let cluster = KafkaCluster {
            nodes,
            cluster_id,
            home,
            tls_ca,
            work,
        };
        cluster.wait_brokers_registered(broker_count).await?;
        Ok(cluster)
    }
}

/// A running KRaft cluster.
#[derive(Debug)]
pub struct KafkaCluster {
    // Dropped first, so JVMs die before their work dir goes.
    nodes: Vec<KafkaNode>,
    cluster_id: String,
    home: PathBuf,
    tls_ca: Option<stoker_proto::pki::Ca>,
    work: WorkDir,
}

/// Writes broker certificate material for `addr` (valid a day, from now) into `dir`
/// as a mounted Secret holds it.
fn write_broker_tls(
    ca: &stoker_proto::pki::Ca,
    dir: &Path,
    addr: std::net::Ipv4Addr,
) -> Result<(), Error> {
    crate::agent_tls::write_agent_files(
        ca,
        dir,
        &addr.to_string(),
        time::OffsetDateTime::now_utc(),
        time::Duration::days(1),
    )
}

impl KafkaCluster {
    /// A builder: by default 3 brokers and 1 controller.
    pub fn builder() -> KafkaClusterBuilder {
        KafkaClusterBuilder::default()
    }

    /// `host:port,...` of every broker.
    pub fn bootstrap_servers(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| n.role.is_broker())
            .map(KafkaNode::broker_endpoint)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `host:port,...` of every broker's SSL listener (see
    /// [`KafkaClusterBuilder::with_tls_listener`]).
    pub fn tls_bootstrap_servers(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| n.role.is_broker())
            .map(|n| format!("{}:{TLS_PORT}", n.addr))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The PEM file of the CA the SSL listeners' certificates chain to.
    pub fn tls_ca_file(&self) -> PathBuf {
        self.work
            .path()
            .join("kafka-ca")
            .join(stoker_proto::agent_tls::CA_FILE)
    }

    /// The folder broker `id`'s agent renders its SSL listener's stores from.
    pub fn tls_dir(&self, id: i32) -> PathBuf {
        self.work.path().join(format!("node-{id}/kafka-tls"))
    }

    /// Replaces broker `id`'s SSL certificate with a fresh one from the same CA, as a
    /// renewed Secret reaches a running Pod.
    pub fn renew_tls_certificate(&self, id: i32) -> Result<(), Error> {
        let ca = self
            .tls_ca
            .as_ref()
            .ok_or_else(|| Error::Other("the cluster has no TLS listener".into()))?;
        let node = self.node(id)?;
        write_broker_tls(ca, &self.tls_dir(id), node.addr)
    }

    /// `host:port,...` of every broker's SCRAM listener (see
    /// [`KafkaClusterBuilder::with_scram_listener`]).
    pub fn scram_bootstrap_servers(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| n.role.is_broker())
            .map(|n| format!("{}:{SCRAM_PORT}", n.addr))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// An rdkafka config with `bootstrap.servers` set.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.bootstrap_servers());
        config
    }

    /// An rdkafka config for the SSL listeners
    /// ([`KafkaClusterBuilder::with_tls_listener`]), trusting only the cluster's CA.
    pub fn tls_client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", self.tls_bootstrap_servers())
            .set("security.protocol", "SSL")
            .set("ssl.ca.location", self.tls_ca_file().display().to_string());
        config
    }

    /// The KRaft cluster id.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The provisioned Kafka folder (what the image mounts at `/opt/kafka`).
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The cluster's work dir.
    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// Every node.
    pub fn nodes(&self) -> &[KafkaNode] {
        &self.nodes
    }

    /// The node with `node.id == id`.
    pub fn node(&self, id: i32) -> Result<&KafkaNode, Error> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .ok_or_else(|| Error::Other(format!("no Kafka node with id {id}")))
    }

    fn node_mut(&mut self, id: i32) -> Result<&mut KafkaNode, Error> {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .ok_or_else(|| Error::Other(format!("no Kafka node with id {id}")))
    }

    /// The node's agent, mutably.
    pub fn node_mut_agent(&mut self, id: i32) -> Result<&mut AgentHandle, Error> {
        self.node_mut(id)?.agent_mut()
    }

    /// Stops a node with SIGTERM (Kafka's controlled shutdown) and waits up to
    /// `grace`; returns true when it exited by itself within it.
    pub fn stop_node(&mut self, id: i32, grace: Duration) -> Result<bool, Error> {
        let node = self.node_mut(id)?;
        Ok(node
            .process
            .terminate(grace)
            .is_some_and(|(_, clean)| clean))
    }

    /// Kills a node with SIGKILL.
    pub fn kill_node(&mut self, id: i32) -> Result<(), Error> {
        self.node_mut(id)?.process.kill();
        Ok(())
    }

    /// Starts a stopped or killed node again on its existing log dir.
    pub fn restart_node(&mut self, id: i32) -> Result<(), Error> {
        self.node_mut(id)?.process.restart()
    }

    /// Fails when any node that should run has exited.
    pub fn ensure_running(&mut self) -> Result<(), Error> {
        for node in &mut self.nodes {
            if node.process.pid().is_some() {
                node.process.ensure_running()?;
            }
        }
        Ok(())
    }

    /// Cluster metadata as the brokers report it.
    pub async fn metadata(&self, topic: Option<&str>) -> Result<Metadata, Error> {
        fetch_metadata(self.client_config(), topic.map(str::to_owned)).await
    }

    /// Waits until every partition of `topic` has `size` replicas in sync.
    pub async fn wait_isr(&self, topic: &str, size: usize) -> Result<(), Error> {
        let config = self.client_config();
        wait_for(
            "in-sync replicas",
            START_TIMEOUT,
            Duration::from_millis(300),
            || {
                let config = config.clone();
                async move {
                    Ok(match fetch_metadata(config, Some(topic.to_owned())).await {
                        Ok(md) => {
                            let partitions: Vec<usize> = md
                                .topics()
                                .iter()
                                .flat_map(|t| t.partitions().iter().map(|p| p.isr().len()))
                                .collect();
                            if !partitions.is_empty() && partitions.iter().all(|n| *n == size) {
                                Ok(())
                            } else {
                                Err(format!(
                                    "ISR sizes of {topic}'s partitions are {partitions:?}, not all {size}"
                                ))
                            }
                        }
                        Err(e) => Err(e.to_string()),
                    })
                }
            },
        )
        .await
    }

    /// Waits until `count` brokers are registered (unfenced brokers appear in
    /// Metadata responses).
    pub async fn wait_brokers_registered(&self, count: usize) -> Result<(), Error> {
        let config = self.client_config();
        let mut watched: Vec<(String, PathBuf)> = self
            .nodes
            .iter()
            .map(|n| (n.process.name().to_owned(), n.process.log_path().to_owned()))
            .collect();
        watched.sort();
        wait_for(
            "kafka brokers",
            START_TIMEOUT,
            Duration::from_millis(500),
            || {
                let config = config.clone();
                async move {
                    Ok(match fetch_metadata(config, None).await {
                        Ok(md) if md.brokers().len() >= count => Ok(()),
                        Ok(md) => Err(format!(
                            "{} of {count} brokers registered",
                            md.brokers().len()
                        )),
                        Err(e) => Err(e.to_string()),
                    })
                }
            },
        )
        .await
    }
}

/// Fetches metadata with a short-lived client (blocking rdkafka call on the blocking pool).
pub async fn fetch_metadata(
    config: ClientConfig,
    topic: Option<String>,
) -> Result<Metadata, Error> {
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create().map_err(|source| Error::Kafka {
            what: "create a metadata client".into(),
            source,
        })?;
        consumer
            .fetch_metadata(topic.as_deref(), Duration::from_secs(5))
            .map_err(|source| Error::Kafka {
                what: "fetch metadata".into(),
                source,
            })
    })
    .await
    .map_err(|e| Error::Other(format!("metadata task panicked: {e}")))?
}

fn node_id(i: usize) -> i32 {
    i32::try_from(i).expect("node counts are small")
}

/// A new KRaft cluster id: a random UUID in Kafka's base64url form (22 characters,
/// never starting with '-', as Kafka's own `Uuid.randomUuid` guarantees).
pub fn new_cluster_id() -> Result<String, Error> {
    loop {
        let mut bytes = random_bytes(16)?;
        // RFC 4122 version 4, variant 1, like java.util.UUID.randomUUID.
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        if !id.starts_with('-') {
            return Ok(id);
        }
    }
}

fn run_to_log(mut cmd: Command, log: &Path) -> Result<bool, Error> {
    let file = std::fs::File::create(log).map_err(|source| Error::Io {
        what: format!("create {}", log.display()),
        source,
    })?;
    let err = file.try_clone().map_err(|source| Error::Io {
        what: format!("open {}", log.display()),
        source,
    })?;
    let status = cmd
        .stdout(file)
        .stderr(err)
        .status()
        .map_err(|source| Error::Spawn {
            name: "kafka-storage".into(),
            program: cmd.get_program().to_string_lossy().into_owned(),
            source,
        })?;
    Ok(status.success())
}

/// Where one test node sits in its cluster.
#[derive(Debug)]
struct NodePlan<'a> {
    id: i32,
    role: NodeRole,
    addr: Ipv4Addr,
    voters: &'a str,
    log_dir: &'a Path,
    broker_count: usize,
    scram: bool,
}

/// The `server.properties` of one test node, sorted by key.
fn render_properties(node: &NodePlan<'_>, overrides: &BTreeMap<String, String>) -> String {
    let &NodePlan {
        id,
        role,
        addr,
        voters,
        log_dir,
        broker_count,
        scram,
    } = node;
    let mut p = BTreeMap::<String, String>::new();
    let mut set = |k: &str, v: String| {
        p.insert(k.to_owned(), v);
    };
    set("process.roles", role.process_roles().into());
    set("node.id", id.to_string());
    set("controller.quorum.voters", voters.into());
    set("controller.listener.names", "CONTROLLER".into());
    set(
        "listener.security.protocol.map",
        "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT".into(),
    );
    set("log.dirs", log_dir.display().to_string());
    let controller = format!("CONTROLLER://{addr}:{CONTROLLER_PORT}");
    let broker = format!("PLAINTEXT://{addr}:{BROKER_PORT}");
    let (listeners, advertised) = match role {
        NodeRole::Controller => (controller.clone(), controller),
        NodeRole::Broker => (broker.clone(), broker),
        NodeRole::Combined => (
            format!("{broker},{controller}"),
            format!("{broker},{controller}"),
        ),
    };
    let (listeners, advertised) = if scram && role.is_broker() {
        let sasl = format!("SASL://{addr}:{SCRAM_PORT}");
        (
            format!("{listeners},{sasl}"),
            format!("{advertised},{sasl}"),
        )
    } else {
        (listeners, advertised)
    };
    set("listeners", listeners);
    set("advertised.listeners", advertised);
    if scram {
        set(
            "listener.security.protocol.map",
            "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL:SASL_PLAINTEXT".into(),
        );
        set("sasl.enabled.mechanisms", "SCRAM-SHA-512".into());
        set(
            "listener.name.sasl.scram-sha-512.sasl.jaas.config",
            "org.apache.kafka.common.security.scram.ScramLoginModule required;".into(),
        );
        set(
            "authorizer.class.name",
            "org.apache.kafka.metadata.authorizer.StandardAuthorizer".into(),
        );
        set("allow.everyone.if.no.acl.found", "false".into());
        // PLAINTEXT clients (the brokers, the controllers, the coordinator) are ANONYMOUS.
        set("super.users", "User:ANONYMOUS".into());
    }
    if role.is_broker() {
        set("inter.broker.listener.name", "PLAINTEXT".into());
    }
    for (k, v) in small_box_config(role, broker_count, overrides) {
        set(&k, v);
    }
    p.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

/// Cruise Control's metrics reporter in a broker at `addr`, reporting every 10 s.
pub fn cruise_control_reporter_config(
    addr: Ipv4Addr,
    broker_count: usize,
) -> BTreeMap<String, String> {
    let rf = broker_count.clamp(1, 2).to_string();
    [
        (
            "metric.reporters",
            "com.linkedin.kafka.cruisecontrol.metricsreporter.CruiseControlMetricsReporter"
                .to_owned(),
        ),
        (
            "cruise.control.metrics.reporter.bootstrap.servers",
            format!("{addr}:{BROKER_PORT}"),
        ),
        (
            "cruise.control.metrics.topic.auto.create",
            "true".to_owned(),
        ),
        (
            "cruise.control.metrics.topic.num.partitions",
            "1".to_owned(),
        ),
        (
            "cruise.control.metrics.topic.replication.factor",
            rf.clone(),
        ),
        (
            "cruise.control.metrics.topic.min.insync.replicas",
            "1".to_owned(),
        ),
        (
            "cruise.control.metrics.reporter.metrics.reporting.interval.ms",
            "10000".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The non-topology settings of a test node: sized for a 2-core machine running
/// several nodes, with fast fencing, plus the builder's overrides (applied last).
pub fn small_box_config(
    role: NodeRole,
    broker_count: usize,
    overrides: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut p = BTreeMap::<String, String>::new();
    let mut set = |k: &str, v: String| {
        p.insert(k.to_owned(), v);
    };
    set("num.network.threads", "1".into());
    set("num.io.threads", "2".into());
    set("background.threads", "2".into());
    set("num.replica.fetchers", "1".into());
    set("num.recovery.threads.per.data.dir", "1".into());
    set("log.cleaner.threads", "1".into());
    set("log.cleaner.dedupe.buffer.size", "8388608".into());
    if role.is_broker() {
        let rf = broker_count.clamp(1, 3);
        let min_isr = rf.saturating_sub(1).max(1);
        set("group.initial.rebalance.delay.ms", "0".into());
        set("auto.create.topics.enable", "false".into());
        set("offsets.topic.num.partitions", "3".into());
        set("offsets.topic.replication.factor", rf.to_string());
        set("transaction.state.log.num.partitions", "3".into());
        set("transaction.state.log.replication.factor", rf.to_string());
        set("transaction.state.log.min.isr", min_isr.to_string());
        set(
            "share.coordinator.state.topic.replication.factor",
            rf.to_string(),
        );
        set("share.coordinator.state.topic.min.isr", min_isr.to_string());
        // A killed broker is fenced (and leaves the ISRs) within seconds.
        set("broker.heartbeat.interval.ms", "1000".into());
        set("broker.session.timeout.ms", "4000".into());
        for (k, v) in overrides {
            set(k, v.clone());
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_look_like_kafkas() {
        let id = new_cluster_id().expect("urandom works");
        assert_eq!(id.len(), 22);
        assert!(!id.starts_with('-'));
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn brokers_get_quorum_and_small_box_settings_and_overrides_last() {
        let overrides = BTreeMap::from([("num.io.threads".to_owned(), "4".to_owned())]);
        let props = render_properties(
            &NodePlan {
                id: 1,
                role: NodeRole::Broker,
                addr: Ipv4Addr::new(127, 20, 0, 2),
                voters: "100@127.20.0.1:9093",
                log_dir: Path::new("/data"),
                broker_count: 3,
                scram: false,
            },
            &overrides,
        );
        assert!(props.contains("controller.quorum.voters=100@127.20.0.1:9093\n"));
        assert!(props.contains("listeners=PLAINTEXT://127.20.0.2:9092\n"));
        assert!(props.contains("num.io.threads=4\n"));
        assert!(props.contains("transaction.state.log.min.isr=2\n"));
    }
}
