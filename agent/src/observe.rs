//! Watching the broker: every [`OBSERVE_INTERVAL`] the agent reads its broker's view of
//! the cluster (reachable, registered, replicas in sync; the quorum for controllers)
//! into the readiness checks and metrics; separately, every `--jmx-interval`, it samples
//! the Kafka container's JMX exporter and keeps the sample re-labelled and ready to
//! serve. A slow exporter (it walks every MBean; a cold one takes seconds) therefore
//! never costs a Prometheus scrape or a readiness answer: `/metrics` serves the last
//! sample at once, with its age.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::{
    admin::{jmx, metrics::relabel_exposition},
    broker::kafka::Snapshot,
    state::{JmxSample, Observation, Running, Shared, error_chain},
};

/// How often the agent looks at its broker.
pub const OBSERVE_INTERVAL: Duration = Duration::from_secs(2);

impl Running {
    /// Looks at the broker now and records what it saw (readiness and metrics); the
    /// broker state and logs to recover come from `jmx`, the last exporter sample.
    pub async fn observe(&self, jmx: Option<&JmxSample>) -> Option<Snapshot> {
        let id = self.broker.broker_id;
        let mut obs = Observation::default();
        let mut snapshot = None;
        if self.roles.broker {
            match self.client.snapshot().await {
                Ok(snap) => {
                    obs.reachable = Ok(());
                    obs.registered = if snap.brokers.contains(&id) {
                        Ok(())
                    } else {
                        Err(format!(
                            "broker {id} is not among the registered brokers {:?}",
                            snap.brokers
                        ))
                    };
                    self.metrics.observe_snapshot(id, &snap);
                    obs.out_of_sync = u64::try_from(snap.out_of_sync_of(id)).unwrap_or(u64::MAX);
                    snapshot = Some(snap);
                }
                Err(e) => {
                    let why = format!(
                        "{} (starting, recovering logs, or stopped): {}",
                        self.client.addr(),
                        error_chain(&e)
                    );
                    obs.reachable = Err(why.clone());
                    obs.registered = Err("unknown while the broker is unreachable".into());
                }
            }
        }
        if let Some(cc) = &self.controller_client {
            match cc.quorum().await {
                Ok(q) => {
                    let voting = q.voters.iter().any(|v| v.id == id);
                    let controller_ok = if q.leader < 0 {
                        Err("the metadata quorum has no leader".to_owned())
                    } else if !voting {
                        Err(format!(
                            "controller {id} is not a voter of the metadata quorum"
                        ))
                    } else {
                        Ok(())
                    };
                    if self.roles.broker {
                        // A combined node must be both a registered broker and a voter.
                        if obs.registered.is_ok() {
                            obs.registered = controller_ok;
                        }
                    } else {
                        obs.reachable = Ok(());
                        obs.registered = controller_ok;
                    }
                    self.metrics.controller_id.set(i64::from(q.leader));
                    obs.quorum_leader = q.leader;
                }
                Err(e) if !self.roles.broker => {
                    obs.reachable = Err(format!(
                        "{} (starting or stopped): {}",
                        cc.addr(),
                        error_chain(&e)
                    ));
                    obs.registered = Err("unknown while the controller is unreachable".into());
                }
                Err(e) => tracing::debug!(error = %error_chain(&e), "Quorum not readable"),
            }
        }
        if let Some(sample) = jmx {
            if let Some(s) = sample.broker_state {
                obs.broker_state = s;
                self.metrics.broker_state.set(s);
            }
            obs.remaining_logs = sample.remaining_logs;
        }
        if obs.broker_state == 2 || obs.remaining_logs > 0 {
            obs.not_recovering = Err(format!(
                "the broker is recovering its logs ({} left)",
                obs.remaining_logs
            ));
        }
        if let Ok(mut o) = self.observation.write() {
            *o = obs;
        }
        snapshot
    }
}

/// Reads the JMX exporter once and keeps the sample (a failed read keeps the previous
/// sample, which then ages, and counts the failure).
pub async fn sample_jmx(shared: &Shared, url: &str) {
    let Some(running) = shared.running() else {
        return;
    };
    let started = std::time::Instant::now();
    match jmx::fetch(url).await {
        Ok(text) => {
            let (broker_state, remaining_logs) = jmx::broker_state(&text);
            let sample = JmxSample {
                relabelled: relabel_exposition(&text, running.metrics.labels()),
                taken: std::time::Instant::now(),
                took: started.elapsed(),
                broker_state,
                remaining_logs,
            };
            if let Ok(mut s) = shared.jmx_sample.write() {
                *s = Some(sample);
            }
        }
        Err(e) => {
            running.metrics.jmx_scrape_failures.inc();
            tracing::debug!(error = %error_chain(&e), "JMX exporter not readable");
        }
    }
}

/// The observer task: samples the JMX exporter (when there is one) and observes the
/// broker, each on its own interval, until `token` is cancelled.
pub async fn run(shared: Arc<Shared>, token: CancellationToken) {
    let Some(running) = shared.running().cloned() else {
        return;
    };
    let sampler = shared.jmx.clone().map(|source| {
        let shared = shared.clone();
        let token = token.clone();
        async move {
            loop {
                sample_jmx(&shared, &source.url).await;
                tokio::select! {
                    () = tokio::time::sleep(source.interval) => {}
                    () = token.cancelled() => break,
                }
            }
        }
    });
    // A sample too old to describe the broker now (the exporter stopped answering) says
    // nothing about recovery.
    let fresh_for = shared.jmx.as_ref().map_or(Duration::ZERO, |s| {
        (s.interval * 3).max(Duration::from_secs(30))
    });
    let observer = async {
        loop {
            let sample = shared
                .jmx_sample()
                .filter(|s| s.taken.elapsed() < fresh_for);
            running.observe(sample.as_ref()).await;
            running
                .metrics
                .ready
                .set(i64::from(shared.health().ready()));
            tokio::select! {
                () = tokio::time::sleep(OBSERVE_INTERVAL) => {}
                () = token.cancelled() => break,
            }
        }
    };
    match sampler {
        Some(sampler) => {
            tokio::join!(sampler, observer);
        }
        None => observer.await,
    }
}
