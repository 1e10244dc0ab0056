//! Command-line flags. Every flag can also be set through its `STOKER_AGENT_*`
//! environment variable, which is how the Pod spec configures the sidecar.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};

/// Exit code for bad flags or configuration (`EX_USAGE` from sysexits.h).
pub const EXIT_USAGE: u8 = 64;

/// The Stoker agent: renders its broker's server.properties, serves health, metrics
/// and gRPC, and makes the broker's shutdown safe.
#[derive(Debug, Parser)]
#[command(name = "stoker-agent", version, about, long_about = None)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The agent's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run as the broker Pod's sidecar: render the config, then serve until SIGTERM.
    Run(RunArgs),
    /// Run beside a Kafka broker Stoker did not build (injected by the coordinator's
    /// admission webhook): render nothing, serve probes from live metadata, metrics and
    /// the preStop safety wait.
    Observe(ObserveArgs),
    /// Render server.properties offline from a desired-config document.
    Render(RenderArgs),
}

/// What every serving agent takes: its endpoints, the JMX exporter it samples, how it
/// stops.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Admin HTTP address (/livez, /readyz, /healthz, /metrics).
    #[arg(long, env = "STOKER_AGENT_ADMIN_ADDR", default_value = "0.0.0.0:8080")]
    pub admin_addr: SocketAddr,
    /// gRPC address (the coordinator's fast path; served only with `--tls-dir`).
    #[arg(long, env = "STOKER_AGENT_GRPC_ADDR", default_value = "0.0.0.0:8081")]
    pub grpc_addr: SocketAddr,
    /// Folder with the agent's certificate (`tls.crt`, `tls.key`) and its cluster's
    /// agent CA (`ca.crt`): gRPC is served over mTLS with them, re-read as they change;
    /// unset: no gRPC server.
    #[arg(long, env = "STOKER_AGENT_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// Folder only the Pod's containers share, where the Kafka container's preStop hook
    /// asks the agent to stop; unset: no preStop handshake.
    #[arg(long, env = "STOKER_AGENT_CONTROL_DIR")]
    pub control_dir: Option<PathBuf>,
    /// The JMX exporter's /metrics URL inside the Pod, re-exposed on the agent's
    /// /metrics; empty disables the pass-through.
    #[arg(long, env = "STOKER_AGENT_JMX_EXPORTER_URL", default_value = "")]
    pub jmx_exporter_url: String,
    /// The cluster's stop Lease (in the Pod's namespace): the preStop check is made
    /// holding it, so two brokers never pass their checks at once; empty: no lock (an
    /// agent outside Kubernetes).
    #[arg(long, env = "STOKER_AGENT_STOP_LEASE", default_value = "")]
    pub stop_lease: String,
    /// How often the JMX exporter is sampled (each sample is served by /metrics until
    /// the next; a scrape never waits for the exporter).
    #[arg(long, env = "STOKER_AGENT_JMX_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub jmx_interval: Duration,
    /// Longest wait for safe-to-stop in the preStop hook; keep it below the Pod's
    /// terminationGracePeriodSeconds.
    #[arg(long, env = "STOKER_AGENT_SHUTDOWN_TIMEOUT", default_value = "100s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Log format.
    #[arg(long, env = "STOKER_AGENT_LOG_FORMAT", default_value = "plain", value_parser = ["plain", "json"])]
    pub log_format: String,
}

/// Flags of `stoker-agent run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Endpoints and stopping.
    #[command(flatten)]
    pub serve: ServeArgs,
    /// The desired-config document the coordinator writes into the broker's ConfigMap.
    #[arg(
        long,
        env = "STOKER_AGENT_DESIRED_CONFIG",
        default_value = "/etc/stoker/desired/config.json"
    )]
    pub desired_config: PathBuf,
    /// Folder shared with the Kafka container that receives server.properties and
    /// log4j2.properties.
    #[arg(
        long,
        env = "STOKER_AGENT_OUTPUT_DIR",
        default_value = "/var/run/stoker/kafka"
    )]
    pub output_dir: PathBuf,
    /// The JMX exporter javaagent jar in the agent's image, copied into `--output-dir`
    /// (as `jmx_prometheus_javaagent.jar`) before Kafka starts, so Kafka's
    /// `-javaagent` finds it whatever its own image holds; unset: no copy.
    #[arg(long, env = "STOKER_AGENT_JMX_EXPORTER_JAR")]
    pub jmx_exporter_jar: Option<PathBuf>,
}

/// Flags of `stoker-agent observe`: which broker it sits beside.
#[derive(Debug, clap::Args)]
pub struct ObserveArgs {
    /// Endpoints and stopping.
    #[command(flatten)]
    pub serve: ServeArgs,
    /// The Kafka cluster's name (the `kafka_cr` label of the metrics).
    #[arg(long, env = "STOKER_AGENT_CLUSTER")]
    pub cluster: String,
    /// The broker's `node.id`: a number, or `ordinal` for the number that ends the Pod's
    /// name (a StatefulSet's Pod `kafka-2` is node 2).
    #[arg(long, env = "STOKER_AGENT_BROKER_ID", default_value = "ordinal")]
    pub broker_id: String,
    /// Its KRaft roles: `broker`, `controller` or `broker,controller`.
    #[arg(long, env = "STOKER_AGENT_ROLES", default_value = "broker")]
    pub roles: String,
    /// The port of the broker's listener the agent talks to (plaintext, on the Pod's
    /// address).
    #[arg(long, env = "STOKER_AGENT_BROKER_PORT", default_value = "9092")]
    pub broker_port: u16,
    /// The port of its controller listener (controllers).
    #[arg(long, env = "STOKER_AGENT_CONTROLLER_PORT", default_value = "9093")]
    pub controller_port: u16,
    /// Its log dirs, comma-separated, if they are mounted in the agent (for the
    /// clean-shutdown record and disk metrics); unset: none.
    #[arg(long, env = "STOKER_AGENT_LOG_DIRS", value_delimiter = ',')]
    pub log_dirs: Vec<PathBuf>,
}

/// Flags of `stoker-agent render`.
#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// The desired-config document (JSON).
    #[arg(long)]
    pub config: PathBuf,
    /// Output folder.
    #[arg(long)]
    pub out: PathBuf,
    /// The Pod IP listeners bind and advertise when no host is given.
    #[arg(long, env = "POD_IP", default_value = "127.0.0.1")]
    pub pod_ip: String,
    /// The Node's address, advertised by listeners asked to advertise it.
    #[arg(long, env = "HOST_IP", default_value = "127.0.0.1")]
    pub host_ip: String,
    /// broker.rack to render (offline renders cannot read the Node's labels).
    #[arg(long)]
    pub rack: Option<String>,
}

impl Args {
    /// Parses the process's arguments. `--help` and `--version` print and exit 0;
    /// bad flags print clap's message and exit 64 before anything starts.
    pub fn parse_or_exit() -> Self {
        match Self::try_parse() {
            Ok(args) => args,
            Err(e) => {
                let _ = e.print();
                let code = if e.use_stderr() {
                    i32::from(EXIT_USAGE)
                } else {
                    0
                };
                std::process::exit(code);
            }
        }
    }

    /// Runs the chosen subcommand and turns its outcome into the exit code.
    pub fn run(self) -> ExitCode {
        crate::run(self)
    }
}

/// Parses `90s`, `2m`, `1500ms` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 90s, 2m or 1500ms"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("invalid duration unit in {s:?}: use ms, s or m")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("7h").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        let err = Args::try_parse_from(["stoker-agent", "run", "--admin-addr", "nowhere"])
            .expect_err("an invalid address is rejected");
        assert!(err.use_stderr());
        assert!(err.to_string().contains("--admin-addr"));
    }

    #[test]
    fn every_command_starts_with_its_defaults_alone() {
        // Run with the environment the agent's own tests run in: no STOKER_* set.
        for command in [&["run"][..], &["observe", "--cluster", "kafka"][..]] {
            let argv = std::iter::once("stoker-agent").chain(command.iter().copied());
            let args = Args::try_parse_from(argv)
                .unwrap_or_else(|e| panic!("{command:?} with defaults: {e}"));
            if let Command::Run(run) = args.command {
                assert_eq!(run.jmx_exporter_jar, None, "no jar: no copy");
            }
        }
    }
}
