//! How a resource that lives in a KafkaCluster (a topic, a user) finds it and
//! connects to it.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};
use stoker_proto::{
    agent_tls::{CA_FILE, CA_KEY_FILE},
    pki::Ca,
};

use crate::{
    controller::kafka_cluster::build::CLUSTER_DOMAIN,
    crd::v1alpha1::{ClusterRef, KafkaCluster},
    kafka_admin::{AdminPool, ClusterTls, KafkaAdmin},
    secret_data::text,
};

/// Annotation on a KafkaCluster naming its bootstrap servers explicitly, for
/// coordinators that cannot resolve the cluster's Services (outside the cluster, tests).
pub const BOOTSTRAP_ANNOTATION: &str = "kafka.stoker.io/bootstrap-servers";

/// Where a KafkaCluster's clients connect: the bootstrap annotation if set, else its
/// all-broker (or headless) Service on the inner-broker listener's port.
pub fn bootstrap_servers(kc: &KafkaCluster) -> Option<String> {
    if let Some(b) = kc.annotations().get(BOOTSTRAP_ANNOTATION) {
        return Some(b.clone());
    }
    let port = kc
        .spec
        .listeners_config
        .internal_listeners
        .iter()
        .find(|l| l.used_for_inner_broker_communication)?
        .container_port;
    let ns = kc.namespace()?;
    let svc = if kc.spec.headless_service_enabled {
        format!("{}-headless", kc.name_any())
    } else {
        format!("{}-all-broker", kc.name_any())
    };
    Some(format!("{svc}.{ns}.svc.cluster.local:{port}"))
}

/// How long the CA a TLS cluster's admin client was made with is trusted without
/// reading its Secret again.
const CA_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// How the coordinator reaches a KafkaCluster's brokers, or why it cannot yet.
#[derive(Debug)]
pub enum Access {
    /// An admin client of the cluster.
    Admin(Arc<KafkaAdmin>),
    /// Not yet: the condition message says what is missing.
    NotYet(String),
}

/// The admin client of `kc`: plaintext, or mutual TLS when its inter-broker listener
/// is `ssl` (the coordinator signs its own certificate with the cluster's CA, read from
/// `sslSecrets.tlsSecretName`, and checks that each broker's certificate names the
/// bootstrap Service).
pub async fn admin(
    client: &Client,
    admins: &AdminPool,
    kc: &KafkaCluster,
) -> Result<Access, kube::Error> {
    let Some(bootstrap) = bootstrap_servers(kc) else {
        return Ok(Access::NotYet(
            "the KafkaCluster has no inner-broker listener to connect to".into(),
        ));
    };
    let listeners = &kc.spec.listeners_config;
    let tls = listeners
        .internal_listeners
        .iter()
        .any(|l| l.used_for_inner_broker_communication && l.type_.eq_ignore_ascii_case("ssl"));
    if !tls {
        return Ok(Access::Admin(admins.get(&bootstrap)));
    }
    if let Some(a) = admins.recent_tls(&bootstrap, CA_RECHECK) {
        return Ok(Access::Admin(a));
    }
    let ca = match cluster_ca(client, kc).await? {
        Ok(ca) => ca,
        Err(message) => {
            return Ok(Access::NotYet(format!(
                "the KafkaCluster's inter-broker listener is ssl, and the coordinator connects with a certificate from {message}"
            )));
        }
    };
    let ns = kc.namespace().unwrap_or_default();
    let service = if kc.spec.headless_service_enabled {
        format!("{}-headless", kc.name_any())
    } else {
        format!("{}-all-broker", kc.name_any())
    };
    let tls = ClusterTls {
        ca,
        server_name: format!("{service}.{ns}.svc.{CLUSTER_DOMAIN}"),
    };
    Ok(match admins.get_tls(&bootstrap, &tls) {
        Ok(a) => Access::Admin(a),
        Err(e) => Access::NotYet(crate::controller::error_chain(&e)),
    })
}

/// The CA of `kc`'s TLS listeners (`sslSecrets.tlsSecretName`, with its key), or, in
/// words, why there is none: "<what is missing>" completing "a certificate from ...".
pub async fn cluster_ca(
    client: &Client,
    kc: &KafkaCluster,
) -> Result<Result<Ca, String>, kube::Error> {
    let ns = kc.namespace().unwrap_or_default();
    let Some(secret_name) = kc
        .spec
        .listeners_config
        .ssl_secrets
        .as_ref()
        .map(|s| &s.tls_secret_name)
    else {
        return Ok(Err(
            "the cluster's CA, which it does not have: spec.listenersConfig.sslSecrets is not set"
                .into(),
        ));
    };
    let secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get_opt(secret_name)
        .await?;
    let ca = secret.map(|s| (text(&s, CA_FILE), text(&s, CA_KEY_FILE)));
    let Some((cert, key)) = ca.filter(|(c, k)| !c.is_empty() && !k.is_empty()) else {
        return Ok(Err(format!(
            "the cluster CA in Secret {ns}/{secret_name}, which holds no ca.crt and ca.key yet"
        )));
    };
    Ok(Ok(Ca {
        common_name: format!("the CA in Secret {ns}/{secret_name}"),
        cert,
        key,
    }))
}

/// The namespace `cluster_ref` points into (its own, else the referring resource's).
pub fn cluster_namespace(cluster_ref: &ClusterRef, own_namespace: Option<String>) -> String {
    cluster_ref
        .namespace
        .clone()
        .or(own_namespace)
        .unwrap_or_default()
}

/// The namespace of `cluster_ref` and the KafkaCluster there, if it exists.
pub async fn referenced_cluster(
    client: &Client,
    cluster_ref: &ClusterRef,
    own_namespace: Option<String>,
) -> Result<(String, Option<KafkaCluster>), kube::Error> {
    let ns = cluster_namespace(cluster_ref, own_namespace);
    let clusters: Api<KafkaCluster> = Api::namespaced(client.clone(), &ns);
    let cluster = clusters.get_opt(&cluster_ref.name).await?;
    Ok((ns, cluster))
}

/// The condition message for a `clusterRef` to a KafkaCluster that does not exist.
pub fn missing_cluster_message(ns: &str, cluster_ref: &ClusterRef) -> String {
    format!(
        "spec.clusterRef names KafkaCluster {ns}/{}, which does not exist; create it or fix clusterRef",
        cluster_ref.name
    )
}
