//! Cruise Control: its REST client ([`client`]), what its answers mean ([`types`]),
//! where a cluster's Cruise Control answers ([`endpoint`]) and one client per address
//! ([`Pool`]).

pub mod client;
pub mod types;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use tokio::sync::watch;

pub use client::{CcError, CruiseControl, MoveOptions, Operation, Submitted};
use types::State;

use crate::crd::v1alpha1::KafkaCluster;

/// Label naming the part of a cluster an object is (`app.kubernetes.io/component`).
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// Label naming the KafkaCluster a Cruise Control Pod serves (`app.kubernetes.io/instance`).
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
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
    if let Some(e) = cfg
        .cruise_control_endpoint
        .as_deref()
        .filter(|e| !e.is_empty())
    {
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
            p.labels().get(LABEL_INSTANCE) == Some(&name)
                && p.labels().get(LABEL_COMPONENT).map(String::as_str) == Some(COMPONENT)
        })
        .filter(|p| p.metadata.deletion_timestamp.is_none() && ready(p))
        .find_map(|p| p.status.as_ref()?.pod_ip.clone())
        .map(|ip| format!("http://{ip}:{PORT}{API_PREFIX}"))
        .ok_or_else(|| format!("the Cruise Control of KafkaCluster {name} is not ready yet"))
}

/// One client per Cruise Control address, shared by reconciles, and one shared
/// `/state` answer per address.
///
/// Every `/state` is a user task of Cruise Control's, and it runs at most a few at
/// once (`max.active.user.tasks`, 5): a request abandoned by a caller's timeout stays
/// active in CC until it is answered. So callers never ask CC themselves: they read
/// the latest sample, and at most one request per address is in flight, run to its
/// end in a task of its own whatever its callers' timeouts.
#[derive(Debug, Default)]
pub struct Pool {
    clients: Mutex<HashMap<String, CruiseControl>>,
    states: Mutex<HashMap<String, Arc<StateSampler>>>,
}

/// One `/state` answer and when it was asked.
#[derive(Debug, Clone)]
pub struct StateSample {
    /// When the request that answered was sent.
    pub asked: Instant,
    /// CC's answer, or why there is none.
    pub state: Result<State, String>,
}

#[derive(Debug)]
struct StateSampler {
    latest: watch::Sender<Option<StateSample>>,
    in_flight: AtomicBool,
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

    /// The state of the Cruise Control at `url` as asked no earlier than `since`:
    /// the latest sample when it is recent enough, else a new one (shared with every
    /// caller waiting meanwhile), waited for at most `wait`.
    pub async fn state(&self, url: &str, since: Instant, wait: Duration) -> Result<State, String> {
        let cc = self.get(url).map_err(|e| e.to_string())?;
        let sampler = {
            let mut states = self
                .states
                .lock()
                .expect("the Cruise Control pool lock is never poisoned");
            states
                .entry(url.to_owned())
                .or_insert_with(|| {
                    Arc::new(StateSampler {
                        latest: watch::channel(None).0,
                        in_flight: AtomicBool::new(false),
                    })
                })
                .clone()
        };
        let fresh = |s: &Option<StateSample>| s.as_ref().is_some_and(|s| s.asked >= since);
        let mut rx = sampler.latest.subscribe();
        if let Some(s) = rx.borrow().as_ref().filter(|s| s.asked >= since) {
            return s.state.clone();
        }
        if !sampler.in_flight.swap(true, Ordering::AcqRel) {
            let sampler = sampler.clone();
            tokio::spawn(async move {
                let asked = Instant::now();
                let state = cc.state().await.map_err(|e| e.to_string());
                sampler
                    .latest
                    .send_replace(Some(StateSample { asked, state }));
                sampler.in_flight.store(false, Ordering::Release);
            });
        }
        match tokio::time::timeout(wait, rx.wait_for(fresh)).await {
            Ok(Ok(s)) => s.as_ref().expect("a fresh sample is Some").state.clone(),
            Ok(Err(_)) | Err(_) => Err(format!(
                "Cruise Control at {url} did not answer /state within {wait:?} (it is still being asked)"
            )),
        }
    }
}
