//! The agents' mTLS material, pure: the cluster's agent CA and one serving certificate
//! per broker, kept in Secrets; the rule that says what to issue again; and the Pod
//! pieces that mount a broker's Secret into its agent. The coordinator signs its own
//! client certificate from the same CA in memory ([`crate::agents`]).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::{
    ByteString,
    api::core::v1::{Secret, SecretVolumeSource, Volume, VolumeMount},
};
use kube::api::ObjectMeta;
use stoker_proto::{
    agent_tls::{CA_FILE, CA_KEY_FILE, CERT_FILE, KEY_FILE, agent_name, ca_common_name},
    pki::{self, Ca, IssueError, Leaf, Usage},
};
use time::{Duration, OffsetDateTime};

use super::{ClusterMeta, LABEL_BROKER_ID, cluster_labels};

/// Label on the agent TLS Secrets (the coordinator's cache watches only these).
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// Its value.
pub const COMPONENT: &str = "agent-tls";
/// Annotation: the name a broker's certificate is for.
const NAME_ANNOTATION: &str = "kafka.stoker.io/agent-name";
/// Annotation: when it expires (Unix seconds).
const NOT_AFTER_ANNOTATION: &str = "kafka.stoker.io/not-after";
/// How long a cluster's agent CA is valid.
pub const CA_VALIDITY: Duration = Duration::days(3650);
/// How long an agent's certificate is valid.
pub const LEAF_VALIDITY: Duration = Duration::days(90);
/// An agent's certificate is issued again this long before it expires.
pub const RENEW_BEFORE: Duration = Duration::days(30);
/// Where the agent container mounts its broker's Secret.
pub const MOUNT_DIR: &str = "/etc/stoker/agent-tls";
/// The Pod volume of that Secret.
pub const VOLUME: &str = "agent-tls";

/// `<cluster>-agent-ca`: the CA and its key (never mounted into a Pod).
pub fn ca_secret_name(cluster: &str) -> String {
    format!("{cluster}-agent-ca")
}

/// `<cluster>-agent-<id>-tls`: broker `id`'s agent certificate, key and the CA.
pub fn broker_secret_name(cluster: &str, id: i32) -> String {
    format!("{cluster}-agent-{id}-tls")
}

/// A broker's stored certificate, as the plan needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLeaf {
    /// The name it is for.
    pub name: String,
    /// When it expires (Unix seconds; 0 when unreadable).
    pub not_after: i64,
    /// The CA stored beside it (to tell one signed by a replaced CA).
    pub ca_cert: String,
}

/// The agent TLS Secrets of one cluster, read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentTlsView {
    /// The CA, when its Secret exists and holds a certificate and key.
    pub ca: Option<Ca>,
    /// Each broker's certificate, by broker id.
    pub brokers: BTreeMap<i32, StoredLeaf>,
}

fn text(secret: &Secret, key: &str) -> String {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .unwrap_or_default()
}

impl AgentTlsView {
    /// Reads `secrets` (those of cluster `cluster` in `namespace` that carry the
    /// component label).
    pub fn read<'a>(
        cluster: &str,
        namespace: &str,
        secrets: impl IntoIterator<Item = &'a Secret>,
    ) -> Self {
        let ca_name = ca_secret_name(cluster);
        let mut view = Self::default();
        for s in secrets {
            let name = s.metadata.name.as_deref().unwrap_or_default();
            if name == ca_name {
                let (cert, key) = (text(s, CA_FILE), text(s, CA_KEY_FILE));
                if !cert.is_empty() && !key.is_empty() {
                    view.ca = Some(Ca {
                        common_name: ca_common_name(cluster, namespace),
                        cert,
                        key,
                    });
                }
                continue;
            }
            let annotations = s.metadata.annotations.clone().unwrap_or_default();
            let id = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_BROKER_ID))
                .and_then(|v| v.parse::<i32>().ok());
            if let Some(id) = id
                && name == broker_secret_name(cluster, id)
                && !text(s, CERT_FILE).is_empty()
                && !text(s, KEY_FILE).is_empty()
            {
                view.brokers.insert(
                    id,
                    StoredLeaf {
                        name: annotations
                            .get(NAME_ANNOTATION)
                            .cloned()
                            .unwrap_or_default(),
                        not_after: annotations
                            .get(NOT_AFTER_ANNOTATION)
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0),
                        ca_cert: text(s, CA_FILE),
                    },
                );
            }
        }
        view
    }
}

/// What to issue this pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsPlan {
    /// The cluster (what issued Secrets carry).
    pub meta: ClusterMeta,
    /// The CA in force (signs what is issued; `None` with `new_ca`).
    pub ca: Option<Ca>,
    /// Issue a new CA, and why (none is stored). Every broker's certificate follows.
    pub new_ca: Option<&'static str>,
    /// Brokers whose certificate to issue, and why.
    pub issue: BTreeMap<i32, &'static str>,
    /// Brokers gone whose Secret to delete.
    pub delete: BTreeSet<i32>,
}

impl TlsPlan {
    /// Whether nothing is to be done.
    pub fn is_empty(&self) -> bool {
        self.new_ca.is_none() && self.issue.is_empty() && self.delete.is_empty()
    }
}

/// The renewal rule for the brokers `ids` at `now`.
pub fn plan(meta: &ClusterMeta, ids: &BTreeSet<i32>, view: &AgentTlsView, now: i64) -> TlsPlan {
    let mut out = TlsPlan {
        meta: meta.clone(),
        ca: view.ca.clone(),
        ..TlsPlan::default()
    };
    let ca_cert = match &view.ca {
        Some(ca) => Some(ca.cert.as_str()),
        None => {
            out.new_ca = Some("the cluster has no agent CA yet");
            None
        }
    };
    for &id in ids {
        let why = match (view.brokers.get(&id), ca_cert) {
            (_, None) => Some("a new agent CA was issued"),
            (None, _) => Some("the broker has no agent certificate yet"),
            (Some(s), Some(ca)) if s.ca_cert != ca => {
                Some("the agent certificate was signed by another CA")
            }
            (Some(s), _) if s.name != agent_name(&meta.name, &meta.namespace, id) => {
                Some("the agent certificate is for another name")
            }
            (Some(s), _) if s.not_after - now < RENEW_BEFORE.whole_seconds() => {
                Some("the agent certificate expires within 30 days")
            }
            _ => None,
        };
        if let Some(why) = why {
            out.issue.insert(id, why);
        }
    }
    out.delete = view
        .brokers
        .keys()
        .filter(|id| !ids.contains(id))
        .copied()
        .collect();
    out
}

fn secret(
    meta: &ClusterMeta,
    name: String,
    broker: Option<i32>,
    data: Vec<(&str, String)>,
    annotations: BTreeMap<String, String>,
) -> Secret {
    let mut labels = cluster_labels(meta);
    labels.insert(LABEL_COMPONENT.to_owned(), COMPONENT.to_owned());
    if let Some(id) = broker {
        labels.insert(LABEL_BROKER_ID.to_owned(), id.to_string());
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(meta.namespace.clone()),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![meta.owner.clone()]),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()).filter(|_| broker.is_some()),
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// A new CA for the cluster, and its Secret.
pub fn issue_ca(meta: &ClusterMeta, now: OffsetDateTime) -> Result<(Ca, Secret), IssueError> {
    let ca = pki::issue_ca(
        &ca_common_name(&meta.name, &meta.namespace),
        now,
        CA_VALIDITY,
    )?;
    let s = secret(
        meta,
        ca_secret_name(&meta.name),
        None,
        vec![(CA_FILE, ca.cert.clone()), (CA_KEY_FILE, ca.key.clone())],
        BTreeMap::new(),
    );
    Ok((ca, s))
}

/// Broker `id`'s agent certificate signed by `ca`, as its Secret.
pub fn issue_broker(
    meta: &ClusterMeta,
    ca: &Ca,
    id: i32,
    now: OffsetDateTime,
) -> Result<Secret, IssueError> {
    let name = agent_name(&meta.name, &meta.namespace, id);
    let Leaf {
        cert,
        key,
        not_after,
    } = pki::issue_leaf(
        ca,
        std::slice::from_ref(&name),
        Usage::Server,
        now,
        LEAF_VALIDITY,
    )?;
    Ok(secret(
        meta,
        broker_secret_name(&meta.name, id),
        Some(id),
        vec![
            (CERT_FILE, cert),
            (KEY_FILE, key),
            (CA_FILE, ca.cert.clone()),
        ],
        BTreeMap::from([
            (NAME_ANNOTATION.to_owned(), name),
            (NOT_AFTER_ANNOTATION.to_owned(), not_after.to_string()),
        ]),
    ))
}

/// The broker Pod's volume of its agent Secret.
pub fn volume(cluster: &str, id: i32) -> Volume {
    Volume {
        name: VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(broker_secret_name(cluster, id)),
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// The agent container's mount of it.
pub fn mount() -> VolumeMount {
    VolumeMount {
        name: VOLUME.into(),
        mount_path: MOUNT_DIR.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ClusterMeta {
        ClusterMeta {
            name: "kf".into(),
            namespace: "ns".into(),
            owner: Default::default(),
            cluster_id: "id".into(),
            headless: false,
            agent_image: "agent".into(),
        }
    }

    #[test]
    fn a_new_cluster_gets_a_ca_and_a_certificate_per_broker() {
        let ids = BTreeSet::from([0, 1]);
        let p = plan(&meta(), &ids, &AgentTlsView::default(), 0);
        assert!(p.new_ca.is_some());
        assert_eq!(p.issue.keys().copied().collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn issued_material_is_kept_until_it_nears_expiry_or_its_ca_changes() {
        let m = meta();
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("a time");
        let (ca, ca_secret) = issue_ca(&m, now).expect("a CA");
        let b0 = issue_broker(&m, &ca, 0, now).expect("a certificate");
        let b7 = issue_broker(&m, &ca, 7, now).expect("a certificate");
        let view = AgentTlsView::read("kf", "ns", [&ca_secret, &b0, &b7]);
        assert_eq!(view.ca.as_ref(), Some(&ca));
        let ids = BTreeSet::from([0]);
        let p = plan(&m, &ids, &view, now.unix_timestamp());
        assert_eq!(p.new_ca, None);
        assert!(p.issue.is_empty(), "{p:?}");
        assert_eq!(p.delete, BTreeSet::from([7]), "a gone broker's Secret goes");

        let later = (now + LEAF_VALIDITY - RENEW_BEFORE + Duration::hours(1)).unix_timestamp();
        let p = plan(&m, &ids, &view, later);
        assert_eq!(
            p.issue.get(&0),
            Some(&"the agent certificate expires within 30 days")
        );

        let (other, _) = issue_ca(&m, now).expect("another CA");
        let replaced = AgentTlsView {
            ca: Some(other),
            ..view
        };
        let p = plan(&m, &ids, &replaced, now.unix_timestamp());
        assert_eq!(
            p.issue.get(&0),
            Some(&"the agent certificate was signed by another CA")
        );
    }

    #[test]
    fn a_ca_secret_without_a_key_is_no_ca() {
        let m = meta();
        let (_, mut s) = issue_ca(&m, OffsetDateTime::now_utc()).expect("a CA");
        s.data.as_mut().expect("data").remove(CA_KEY_FILE);
        assert_eq!(AgentTlsView::read("kf", "ns", [&s]).ca, None);
    }
}

#[cfg(test)]
mod chain_tests {
    use std::sync::Arc;

    use rustls::{
        RootCertStore,
        pki_types::{CertificateDer, UnixTime, pem::PemObject},
        server::WebPkiClientVerifier,
    };
    use stoker_proto::agent_tls::COORDINATOR_NAME;

    use super::*;

    #[test]
    fn a_client_certificate_signed_from_the_stored_ca_verifies_against_it() {
        let m = ClusterMeta {
            name: "kafka".into(),
            namespace: "ns".into(),
            ..ClusterMeta::default()
        };
        let now = OffsetDateTime::now_utc();
        let (_, secret) = issue_ca(&m, now).expect("a CA");
        let stored = AgentTlsView::read("kafka", "ns", [&secret])
            .ca
            .expect("read back");
        let leaf = pki::issue_leaf(
            &stored,
            &[COORDINATOR_NAME.to_owned()],
            Usage::Client,
            now,
            Duration::days(1),
        )
        .expect("a client certificate");
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(stored.cert.as_bytes()).expect("CA PEM"))
            .expect("a root");
        let verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .expect("a verifier");
        let der = CertificateDer::from_pem_slice(leaf.cert.as_bytes()).expect("leaf PEM");
        verifier
            .verify_client_cert(&der, &[], UnixTime::now())
            .expect("the coordinator's certificate chains to the stored CA");
    }
}
