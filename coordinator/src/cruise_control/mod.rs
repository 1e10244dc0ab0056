//! Cruise Control: its REST client ([`client`]), what its answers mean ([`types`]),
//! where a cluster's Cruise Control answers ([`endpoint`]) and one client per address
//! ([`Pool`]).

pub mod client;
pub mod types;

use std::{collections::HashMap, sync::Mutex};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

pub use client::{CcError, CruiseControl, MoveOptions, Operation, Submitted};

use crate::crd::v1alpha1::KafkaCluster;

/// Label naming the part of a cluster an object is (`app.kubernetes.io/component`).
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// Its value on Cruise Control's objects.
pub const COMPONENT: &str = "cruise-control";
/// The port Cruise Control serves its REST API on (Koperator's).
pub const PORT: u16 = 8090;
/// The prefix of its REST API.
pub const API_PREFIX: &str = "/kafkacruisecontrol";

/// Where the Cruise Control of `kc` answers: `cruiseControlConfig.cruiseControlEndpoint`
/// when set, else a ready Pod of the Cruise Control Stoker deployed for it (among `pods`);
/// or why there is none.
pub fn endpoint<'a>(
    kc: &KafkaCluster,
    pods: impl Iterator<Item = &'a Pod>,
) -> Result<String, String> {
    let name = kc.name_any();
    let Some(cfg) = kc.spec.cruise_control_config.as_ref() else {
        return Err(format!(
            "KafkaCluster {name} has no spec.cruiseControlConfig: no Cruise Control serves it"
        ));
    };
    if let Some(e) = cfg.cruise_control_endpoint.as_deref().filter(|e| !e.is_empty()) {
        let base = e.trim_end_matches('/');
        let base = if base.starts_with("http://") {
            base.to_owned()
        } else {
            format!("http://{base}")
        };
        return Ok(if base.ends_with(API_PREFIX) {
            base
        } else {
            format!("{base}{API_PREFIX}")
        });
    }
    let ns = kc.namespace();
    let ready = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    pods.filter(|p| p.namespace() == ns)
        .filter(|p| {
            p.labels().get(crate::controller::kafka_cluster::build::LABEL_CLUSTER) == Some(&name)
                && p.labels().get(LABEL_COMPONENT).map(String::as_str) == Some(COMPONENT)
        })
        .filter(|p| p.metadata.deletion_timestamp.is_none() && ready(p))
        .find_map(|p| p.status.as_ref()?.pod_ip.clone())
        .map(|ip| format!("http://{ip}:{PORT}{API_PREFIX}"))
        .ok_or_else(|| format!("the Cruise Control of KafkaCluster {name} is not ready yet"))
}

/// One client per Cruise Control address, shared by reconciles.
#[derive(Debug, Default)]
pub struct Pool {
    clients: Mutex<HashMap<String, CruiseControl>>,
}

impl Pool {
    /// The client of the Cruise Control at `url`.
    pub fn get(&self, url: &str) -> Result<CruiseControl, CcError> {
        let mut clients = self
            .clients
            .lock()
            .expect("the Cruise Control pool lock is never poisoned");
        if let Some(c) = clients.get(url) {
            return Ok(c.clone());
        }
        let c = CruiseControl::new(url)?;
        clients.insert(url.to_owned(), c.clone());
        Ok(c)
    }
}
