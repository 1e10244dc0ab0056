//! The agent's one Prometheus registry and its `/metrics` text: the agent's own
//! footprint, its container's cgroup usage and limits, disk usage of every log dir,
//! broker facts from live metadata, and the JMX exporter's series from the Kafka
//! container re-labelled so one scrape per Pod gives everything.
//!
//! Every series carries `kafka_cr`, `namespace` and `broker_id`; JMX series also get
//! `brokerId`, the label Koperator's alert rules group by, so the seed's
//! `sum by(brokerId, kafka_cr, namespace)(rate(kafka_network_requestmetrics_requests_total[15m]))`
//! works unchanged.

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
};

use prometheus::{Encoder, Gauge, IntCounter, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::broker::kafka::Snapshot;

/// Labels every series carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityLabels {
    /// The KafkaCluster's name.
    pub kafka_cr: String,
    /// Its namespace.
    pub namespace: String,
    /// The broker's id.
    pub broker_id: String,
}

/// The registry and every metric the agent owns.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    rss: IntGauge,
    cpu_seconds: Gauge,
    container_memory: IntGauge,
    container_memory_limit: IntGauge,
    container_cpu_seconds: Gauge,
    container_cpu_limit: Gauge,
    log_dir_used: IntGaugeVec,
    log_dir_capacity: IntGaugeVec,
    /// Partitions this broker leads.
    pub partitions_led: IntGauge,
    /// Under-replicated partitions among those this broker replicates.
    pub under_replicated: IntGauge,
    /// Offline partitions among those this broker replicates.
    pub offline: IntGauge,
    /// The controller id clients are told.
    pub controller_id: IntGauge,
    /// Kafka's broker state (Kafka's numbering: 3 RUNNING, 2 RECOVERY, ...), -1 unknown.
    pub broker_state: IntGauge,
    /// Live brokers in the cluster.
    pub live_brokers: IntGauge,
    /// 1 when /readyz answers 200.
    pub ready: IntGauge,
    /// Samples of the JMX exporter that failed.
    pub jmx_scrape_failures: IntCounter,
    /// Age of the JMX sample /metrics serves (-1: none yet).
    jmx_sample_age: Gauge,
    /// How long the JMX exporter took to answer the served sample.
    jmx_sample_duration: Gauge,
    /// 1 after a shutdown that left Kafka's clean-shutdown marker, 0 after an unclean one, -1 before any.
    pub last_shutdown_clean: IntGauge,
    log_dirs: Vec<PathBuf>,
    labels: IdentityLabels,
    system: Mutex<Option<sysinfo::System>>,
}

impl Metrics {
    /// Registers every metric with the identity labels as constant labels.
    pub fn new(labels: IdentityLabels, log_dirs: Vec<PathBuf>) -> Self {
        let registry = Registry::new_custom(
            None,
            Some(
                [
                    ("kafka_cr".to_owned(), labels.kafka_cr.clone()),
                    ("namespace".to_owned(), labels.namespace.clone()),
                    ("broker_id".to_owned(), labels.broker_id.clone()),
                ]
                .into(),
            ),
        )
        .expect("constant label names are valid");
        let int = |name: &str, help: &str| {
            let g = IntGauge::with_opts(Opts::new(name, help)).expect("metric names are valid");
            registry
                .register(Box::new(g.clone()))
                .expect("each metric registers once");
            g
        };
        let float = |name: &str, help: &str| {
            let g = Gauge::with_opts(Opts::new(name, help)).expect("metric names are valid");
            registry
                .register(Box::new(g.clone()))
                .expect("each metric registers once");
            g
        };
        let per_dir = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &["log_dir"])
                .expect("metric names are valid");
            registry
                .register(Box::new(g.clone()))
                .expect("each metric registers once");
            g
        };
        let jmx_scrape_failures = IntCounter::with_opts(Opts::new(
            "stoker_agent_jmx_scrape_failures_total",
            "Samples of the Kafka container's JMX exporter that failed.",
        ))
        .expect("metric names are valid");
        registry
            .register(Box::new(jmx_scrape_failures.clone()))
            .expect("each metric registers once");
        let m = Self {
            rss: int(
                "stoker_agent_resident_memory_bytes",
                "Resident memory of the agent process.",
            ),
            cpu_seconds: float(
                "stoker_agent_cpu_seconds_total",
                "CPU time used by the agent process.",
            ),
            container_memory: int(
                "stoker_agent_container_memory_bytes",
                "Memory charged to the agent's cgroup.",
            ),
            container_memory_limit: int(
                "stoker_agent_container_memory_limit_bytes",
                "Memory limit of the agent's cgroup (0: none).",
            ),
            container_cpu_seconds: float(
                "stoker_agent_container_cpu_seconds_total",
                "CPU time charged to the agent's cgroup.",
            ),
            container_cpu_limit: float(
                "stoker_agent_container_cpu_limit_cores",
                "CPU limit of the agent's cgroup in cores (0: none).",
            ),
            log_dir_used: per_dir(
                "stoker_broker_log_dir_used_bytes",
                "Bytes used on the volume of each log dir.",
            ),
            log_dir_capacity: per_dir(
                "stoker_broker_log_dir_capacity_bytes",
                "Size of the volume of each log dir.",
            ),
            partitions_led: int(
                "stoker_broker_partitions_led",
                "Partitions this broker leads.",
            ),
            under_replicated: int(
                "stoker_broker_under_replicated_partitions",
                "Partitions this broker replicates whose ISR is smaller than their replicas.",
            ),
            offline: int(
                "stoker_broker_offline_partitions",
                "Partitions this broker replicates that have no leader.",
            ),
            controller_id: int(
                "stoker_broker_controller_id",
                "The controller id the broker reports to clients.",
            ),
            broker_state: int(
                "stoker_broker_state",
                "Kafka's broker state (3 RUNNING, 2 RECOVERY, 6 PENDING_CONTROLLED_SHUTDOWN, 7 SHUTTING_DOWN; -1 unknown).",
            ),
            live_brokers: int(
                "stoker_broker_live_brokers",
                "Registered, unfenced brokers in the cluster.",
            ),
            ready: int(
                "stoker_broker_ready",
                "1 when the agent reports the broker ready.",
            ),
            last_shutdown_clean: int(
                "stoker_broker_last_shutdown_clean",
                "1 clean, 0 unclean, -1 no shutdown seen by this agent.",
            ),
            jmx_sample_age: float(
                "stoker_agent_jmx_sample_age_seconds",
                "Age of the JMX exporter sample whose series this scrape carries (-1: none yet).",
            ),
            jmx_sample_duration: float(
                "stoker_agent_jmx_sample_duration_seconds",
                "How long the JMX exporter took to answer for that sample.",
            ),
            jmx_scrape_failures,
            registry,
            log_dirs,
            labels,
            system: Mutex::new(sysinfo::System::new().ok()),
        };
        m.broker_state.set(-1);
        m.controller_id.set(-1);
        m.last_shutdown_clean.set(-1);
        m.jmx_sample_age.set(-1.0);
        m
    }

    /// Records the age and cost of the JMX sample about to be served.
    pub fn observe_jmx_sample(&self, sample: Option<&crate::state::JmxSample>) {
        match sample {
            Some(s) => {
                self.jmx_sample_age.set(s.taken.elapsed().as_secs_f64());
                self.jmx_sample_duration.set(s.took.as_secs_f64());
            }
            None => self.jmx_sample_age.set(-1.0),
        }
    }

    /// The identity labels.
    pub fn labels(&self) -> &IdentityLabels {
        &self.labels
    }

    /// Records broker facts from a metadata snapshot.
    pub fn observe_snapshot(&self, broker: i32, snap: &Snapshot) {
        self.partitions_led
            .set(to_i64(snap.partitions_led_by(broker)));
        self.under_replicated
            .set(to_i64(snap.under_replicated_of(broker)));
        self.offline.set(to_i64(snap.offline_of(broker)));
        self.controller_id.set(i64::from(snap.controller_id));
        self.live_brokers.set(to_i64(snap.brokers.len()));
    }

    /// Refreshes the values read at scrape time and encodes the registry.
    pub fn encode(&self) -> String {
        self.refresh_host();
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }

    fn refresh_host(&self) {
        if let Ok(mut guard) = self.system.lock()
            && let Some(system) = guard.as_mut()
        {
            let pid = sysinfo::Pid::from_u32(std::process::id());
            system.refresh_processes_specifics(
                sysinfo::ProcessesToUpdate::Some(&[pid]),
                false,
                sysinfo::ProcessRefreshKind::nothing()
                    .with_memory()
                    .with_cpu(),
            );
            if let Some(p) = system.process(pid) {
                self.rss.set(i64::try_from(p.memory()).unwrap_or(i64::MAX));
                self.cpu_seconds
                    .set(p.accumulated_cpu_time() as f64 / 1000.0);
            }
            if let Some(limits) = system.cgroup_limits() {
                self.container_memory
                    .set(i64::try_from(limits.rss).unwrap_or(i64::MAX));
            }
        }
        let cg = read_cgroup(Path::new("/sys/fs/cgroup"));
        if let Some(v) = cg.memory_current {
            self.container_memory.set(v);
        }
        self.container_memory_limit.set(cg.memory_max.unwrap_or(0));
        self.container_cpu_seconds
            .set(cg.cpu_usage_seconds.unwrap_or(0.0));
        self.container_cpu_limit
            .set(cg.cpu_limit_cores.unwrap_or(0.0));
        for dir in &self.log_dirs {
            if let Ok(st) = nix::sys::statvfs::statvfs(dir.as_path()) {
                let frag = st.fragment_size();
                let total = st.blocks().saturating_mul(frag);
                let free = st.blocks_free().saturating_mul(frag);
                let name = dir.display().to_string();
                self.log_dir_capacity
                    .with_label_values(&[name.as_str()])
                    .set(i64::try_from(total).unwrap_or(i64::MAX));
                self.log_dir_used
                    .with_label_values(&[name.as_str()])
                    .set(i64::try_from(total.saturating_sub(free)).unwrap_or(i64::MAX));
            }
        }
    }
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What cgroup v2 says about the agent's container.
#[derive(Debug, Default, PartialEq)]
pub struct CgroupUsage {
    /// memory.current.
    pub memory_current: Option<i64>,
    /// memory.max (None when "max").
    pub memory_max: Option<i64>,
    /// cpu.stat usage_usec, in seconds.
    pub cpu_usage_seconds: Option<f64>,
    /// cpu.max quota/period, in cores (None when "max").
    pub cpu_limit_cores: Option<f64>,
}

/// Reads cgroup v2 files under `root`; missing files give `None`.
pub fn read_cgroup(root: &Path) -> CgroupUsage {
    let read = |f: &str| std::fs::read_to_string(root.join(f)).ok();
    let memory_current = read("memory.current").and_then(|s| s.trim().parse().ok());
    let memory_max = read("memory.max").and_then(|s| s.trim().parse().ok());
    let cpu_usage_seconds = read("cpu.stat").and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|us| us / 1e6)
    });
    let cpu_limit_cores = read("cpu.max").and_then(|s| {
        let mut it = s.split_whitespace();
        let quota = it.next()?.parse::<f64>().ok()?;
        let period = it.next()?.parse::<f64>().ok()?;
        (period > 0.0).then(|| quota / period)
    });
    CgroupUsage {
        memory_current,
        memory_max,
        cpu_usage_seconds,
        cpu_limit_cores,
    }
}

/// Adds the identity labels (plus Koperator's `brokerId`) to every sample of a
/// Prometheus text exposition, leaving comments and labels already present alone.
pub fn relabel_exposition(text: &str, labels: &IdentityLabels) -> String {
    let ours = [
        ("kafka_cr", labels.kafka_cr.as_str()),
        ("namespace", labels.namespace.as_str()),
        ("broker_id", labels.broker_id.as_str()),
        ("brokerId", labels.broker_id.as_str()),
    ];
    let mut out = String::with_capacity(text.len() + text.len() / 2);
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let (name, rest) = line.split_at(name_end);
        let (existing, tail) = match rest.strip_prefix('{') {
            Some(r) => match r.find('}') {
                Some(close) => (&r[..close], &r[close + 1..]),
                None => ("", rest),
            },
            None => ("", rest),
        };
        out.push_str(name);
        out.push('{');
        let mut first = true;
        for (k, v) in ours {
            if has_label(existing, k) {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(k);
            out.push_str("=\"");
            out.push_str(&escape_label(v));
            out.push('"');
        }
        let existing = existing.trim_end_matches(',');
        if !existing.is_empty() {
            if !first {
                out.push(',');
            }
            out.push_str(existing);
        }
        out.push('}');
        out.push_str(tail);
        out.push('\n');
    }
    out
}

fn has_label(existing: &str, key: &str) -> bool {
    existing
        .split(',')
        .any(|kv| kv.split_once('=').is_some_and(|(k, _)| k.trim() == key))
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> IdentityLabels {
        IdentityLabels {
            kafka_cr: "kf-kafka".into(),
            namespace: "alerting".into(),
            broker_id: "1".into(),
        }
    }

    #[test]
    fn relabels_samples_and_keeps_comments() {
        let jmx = "# HELP kafka_x help\n# TYPE kafka_x counter\nkafka_network_requestmetrics_requests_total{request=\"Produce\",version=\"11\",} 5.0\nkafka_server_replicamanager_underreplicatedpartitions 0.0\n";
        let out = relabel_exposition(jmx, &labels());
        assert!(out.contains("# TYPE kafka_x counter\n"));
        assert!(out.contains(
            "kafka_network_requestmetrics_requests_total{kafka_cr=\"kf-kafka\",namespace=\"alerting\",broker_id=\"1\",brokerId=\"1\",request=\"Produce\",version=\"11\"} 5.0\n"
        ), "{out}");
        assert!(out.contains(
            "kafka_server_replicamanager_underreplicatedpartitions{kafka_cr=\"kf-kafka\",namespace=\"alerting\",broker_id=\"1\",brokerId=\"1\"} 0.0\n"
        ), "{out}");
    }

    #[test]
    fn labels_already_present_are_not_duplicated() {
        let out = relabel_exposition("m{namespace=\"x\"} 1\n", &labels());
        assert_eq!(out.matches("namespace=").count(), 1, "{out}");
        assert!(out.contains("namespace=\"x\""));
    }

    #[test]
    fn registry_output_carries_identity_labels() {
        let m = Metrics::new(labels(), vec![]);
        m.partitions_led.set(4);
        let text = m.encode();
        // Constant labels come out in hash order; check each one.
        let line = text
            .lines()
            .find(|l| l.starts_with("stoker_broker_partitions_led{"))
            .expect("the gauge is exposed");
        for label in [
            "broker_id=\"1\"",
            "kafka_cr=\"kf-kafka\"",
            "namespace=\"alerting\"",
        ] {
            assert!(line.contains(label), "{line}");
        }
        assert!(line.ends_with("} 4"), "{line}");
        assert!(text.contains("stoker_agent_resident_memory_bytes"));
    }

    #[test]
    fn cgroup_files_are_parsed_and_max_means_no_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("memory.current"), "1048576\n").expect("write");
        std::fs::write(dir.path().join("memory.max"), "max\n").expect("write");
        std::fs::write(
            dir.path().join("cpu.stat"),
            "usage_usec 2500000\nuser_usec 1\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("cpu.max"), "50000 100000\n").expect("write");
        let cg = read_cgroup(dir.path());
        assert_eq!(
            cg,
            CgroupUsage {
                memory_current: Some(1_048_576),
                memory_max: None,
                cpu_usage_seconds: Some(2.5),
                cpu_limit_cores: Some(0.5)
            }
        );
    }
}
