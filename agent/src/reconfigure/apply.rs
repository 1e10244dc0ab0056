//! Carrying a reconfiguration out: the broker's own DescribeConfigs says which keys are
//! dynamic, each dynamic key is applied with its own IncrementalAlterConfigs (never the
//! non-incremental AlterConfigs, which would wipe every key not named), and what needs
//! a restart is recorded with the hash of the config it comes from.

use std::collections::BTreeMap;

use stoker_proto::agent::v1::DesiredConfig;

use crate::{
    config::ValidatedConfig,
    state::{InForce, Running, error_chain},
};

/// Why a reconfiguration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReconfigureError {
    /// The new document is invalid.
    #[error(transparent)]
    Invalid(#[from] crate::config::ConfigError),
    /// The broker could not describe its configs.
    #[error("failed to describe the broker's configs")]
    Describe(#[source] crate::broker::kafka::KafkaError),
}

/// The outcome of a reconfiguration.
#[derive(Debug, Clone, Default)]
pub struct Reconfigured {
    /// Keys applied live.
    pub applied: Vec<String>,
    /// Keys waiting for a restart (with the broker's reason for refused ones).
    pub restart_needed: Vec<String>,
    /// The hash now in force.
    pub hash_in_force: String,
}

impl Running {
    /// Applies the dynamic keys of `new_doc` key by key and records what needs a restart.
    pub async fn reconfigure(
        &self,
        new_doc: DesiredConfig,
    ) -> Result<Reconfigured, ReconfigureError> {
        let new_hash = stoker_proto::config_hash(&new_doc);
        let new = ValidatedConfig::validate(new_doc)?;
        let old = self.in_force();
        let id = self.broker.broker_id;
        let described = self
            .client
            .broker_configs(id)
            .await
            .map_err(ReconfigureError::Describe)?;
        let plan = super::plan(&old.config, &new, &described);
        let mut out = Reconfigured {
            restart_needed: plan.restart_needed.clone(),
            ..Reconfigured::default()
        };
        for (key, value) in &plan.set {
            let one = BTreeMap::from([(key.clone(), value.clone())]);
            match self.client.incremental_alter(id, &one, &[], false).await {
                Ok(()) => out.applied.push(key.clone()),
                Err(e) => {
                    tracing::warn!(key = %key, error = %error_chain(&e), "Broker refused a dynamic config change; it waits for a restart");
                    out.restart_needed.push(key.clone());
                }
            }
        }
        for key in &plan.delete {
            match self
                .client
                .incremental_alter(id, &BTreeMap::new(), std::slice::from_ref(key), false)
                .await
            {
                Ok(()) => out.applied.push(key.clone()),
                Err(e) => {
                    tracing::warn!(key = %key, error = %error_chain(&e), "Broker refused to delete a dynamic config; it waits for a restart");
                    out.restart_needed.push(key.clone());
                }
            }
        }
        out.restart_needed.sort();
        out.restart_needed.dedup();
        let mut in_force = self
            .in_force
            .write()
            .expect("the in-force lock is never poisoned");
        if out.restart_needed.is_empty() {
            *in_force = InForce {
                config: new,
                hash: new_hash.clone(),
                restart_needed: Vec::new(),
                pending_hash: String::new(),
            };
        } else {
            // What is live changed, but the config in force is not the new one until a
            // restart: keep the old hash so the coordinator sees the difference, and
            // the new one as pending so it does not send the same config again.
            in_force.restart_needed = out.restart_needed.clone();
            in_force.pending_hash = new_hash;
        }
        out.hash_in_force = in_force.hash.clone();
        tracing::info!(applied = ?out.applied, restart_needed = ?out.restart_needed, hash = %out.hash_in_force, "Reconfigured");
        Ok(out)
    }
}
