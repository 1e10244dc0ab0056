//! What every test of a controller starts from: a real control plane with Stoker's
//! CRDs (the committed `deploy/crds/`) installed and established, the test's
//! namespaces created, and an admin client.

use kube::Client;

use crate::{ControlPlane, Error, control_plane::ControlPlaneOptions};

/// Stoker's CustomResourceDefinitions, as committed.
pub const CRDS: &str = include_str!("../../deploy/crds/kafka.stoker.io.yaml");

/// A control plane with the CRDs and namespaces in place.
#[allow(missing_debug_implementations)]
pub struct KubeEnv {
    /// The control plane.
    pub plane: ControlPlane,
    /// An admin client of its API server.
    pub client: Client,
}

impl KubeEnv {
    /// etcd, kube-apiserver and kube-controller-manager, the CRDs and `namespaces`.
    pub async fn start(namespaces: &[&str]) -> Result<Self, Error> {
        Self::start_with(ControlPlaneOptions::default(), namespaces).await
    }

    /// As [`KubeEnv::start`], with `options` for the control plane.
    pub async fn start_with(
        options: ControlPlaneOptions,
        namespaces: &[&str],
    ) -> Result<Self, Error> {
        let plane = ControlPlane::start_with(options).await?;
        plane.apply_crds(CRDS).await?;
        for ns in namespaces {
            plane.create_namespace(ns).await?;
        }
        let client = plane.client().await?;
        Ok(Self { plane, client })
    }
}
