//! Command-line flags, each also settable through a `STOKER_COORDINATOR_*` variable.

use std::{net::SocketAddr, process::ExitCode};

use clap::{Parser, Subcommand};

/// Exit code for bad flags or configuration (`EX_USAGE` from sysexits.h).
pub const EXIT_USAGE: u8 = 64;

/// The Stoker coordinator: reconciles KafkaCluster, KafkaTopic and KafkaUser
/// resources, drives the broker agents and scales clusters on alerts.
#[derive(Debug, Parser)]
#[command(name = "stoker-coordinator", version, about, long_about = None)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The coordinator's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the coordinator until SIGTERM.
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions (what `deploy/crds/` holds).
    Crd,
}

/// Flags of `stoker-coordinator run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Admin HTTP address (/livez, /readyz, /metrics).
    #[arg(
        long,
        env = "STOKER_COORDINATOR_ADMIN_ADDR",
        default_value = "0.0.0.0:8080"
    )]
    pub admin_addr: SocketAddr,
    /// The agent image injected into broker Pods.
    #[arg(long, env = "STOKER_COORDINATOR_AGENT_IMAGE", default_value = concat!("stoker-agent:", env!("CARGO_PKG_VERSION")))]
    pub agent_image: String,
    /// Elect a leader through a Lease (`stoker-coordinator` in POD_NAMESPACE); turn on
    /// when more than one replica runs.
    #[arg(long, env = "STOKER_COORDINATOR_LEADER_ELECTION")]
    pub leader_election: bool,
    /// The alert receiver's address (Alertmanager's webhook, Prometheus's alert push).
    /// It starts only with a token file or `--alerts-unauthenticated`.
    #[arg(
        long,
        env = "STOKER_COORDINATOR_ALERTS_ADDR",
        default_value = "0.0.0.0:9001"
    )]
    pub alerts_addr: SocketAddr,
    /// A file holding the bearer token alert senders must present (re-read on every
    /// request, so a rotated Secret needs no restart).
    #[arg(
        long,
        env = "STOKER_COORDINATOR_ALERTS_TOKEN_FILE",
        conflicts_with = "alerts_unauthenticated"
    )]
    pub alerts_token_file: Option<std::path::PathBuf>,
    /// Run the alert receiver without authentication (anyone who reaches the port can
    /// scale clusters that opted in; for a private test setup only).
    #[arg(long, env = "STOKER_COORDINATOR_ALERTS_UNAUTHENTICATED")]
    pub alerts_unauthenticated: bool,
    /// The agent-injection webhook's HTTPS address. It starts only with a certificate
    /// source: `--webhook-secret` or `--webhook-cert-dir`.
    #[arg(
        long,
        env = "STOKER_COORDINATOR_WEBHOOK_ADDR",
        default_value = "0.0.0.0:9443"
    )]
    pub webhook_addr: SocketAddr,
    /// A directory holding `tls.crt` and `tls.key` that another issuer keeps current
    /// (cert-manager); re-read every minute.
    #[arg(
        long,
        env = "STOKER_COORDINATOR_WEBHOOK_CERT_DIR",
        conflicts_with = "webhook_secret"
    )]
    pub webhook_cert_dir: Option<std::path::PathBuf>,
    /// The Secret (in POD_NAMESPACE) in which the coordinator keeps the webhook's CA and
    /// serving certificate it issues itself, renewed 30 days before expiry.
    #[arg(
        long,
        env = "STOKER_COORDINATOR_WEBHOOK_SECRET",
        requires = "webhook_names"
    )]
    pub webhook_secret: Option<String>,
    /// The names the issued certificate is for: the webhook Service's DNS names (or an
    /// address), comma-separated.
    #[arg(long, env = "STOKER_COORDINATOR_WEBHOOK_NAMES", value_delimiter = ',')]
    pub webhook_names: Vec<String>,
    /// The MutatingWebhookConfiguration whose `caBundle` the coordinator sets to the CA
    /// it issued.
    #[arg(long, env = "STOKER_COORDINATOR_WEBHOOK_CONFIGURATION")]
    pub webhook_configuration: Option<String>,
    /// Namespaces whose Pods are never given the agent, comma-separated.
    #[arg(
        long,
        env = "STOKER_COORDINATOR_WEBHOOK_FORBIDDEN_NAMESPACES",
        value_delimiter = ',',
        default_value = "kube-system,kube-public,kube-node-lease"
    )]
    pub webhook_forbidden_namespaces: Vec<String>,
    /// Log format.
    #[arg(long, env = "STOKER_COORDINATOR_LOG_FORMAT", default_value = "plain", value_parser = ["plain", "json"])]
    pub log_format: String,
}

impl Args {
    /// Parses the process's arguments: `--help`/`--version` exit 0, bad flags print
    /// clap's message and exit 64 before anything starts.
    pub fn parse_or_exit() -> Self {
        match Self::try_parse() {
            Ok(args) => args,
            Err(e) => {
                let _ = e.print();
                std::process::exit(if e.use_stderr() {
                    i32::from(EXIT_USAGE)
                } else {
                    0
                });
            }
        }
    }

    /// Runs the chosen subcommand.
    pub fn run(self) -> ExitCode {
        crate::run(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_flags_are_usage_errors() {
        let err = Args::try_parse_from(["stoker-coordinator", "run", "--log-format", "xml"])
            .expect_err("rejected");
        assert!(err.use_stderr());
        assert!(err.to_string().contains("--log-format"));
    }

    #[test]
    fn the_receiver_is_either_authenticated_or_explicitly_not() {
        let err = Args::try_parse_from([
            "stoker-coordinator",
            "run",
            "--alerts-token-file",
            "/t",
            "--alerts-unauthenticated",
        ])
        .expect_err("rejected");
        assert!(
            err.to_string().contains("--alerts-unauthenticated"),
            "{err}"
        );
    }
}
