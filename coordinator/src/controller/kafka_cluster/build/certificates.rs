//! Certificates the coordinator issues and keeps in Secrets, pure: per cluster a CA and
//! one serving certificate per broker, for two purposes — the agents' mTLS
//! ([`Purpose::Agents`]; the coordinator signs its own client certificate from the same
//! CA in memory, [`crate::agents`]) and the brokers' TLS client listeners
//! ([`Purpose::Listeners`]); the rule that says what to issue again; and the Pod pieces
//! that mount a broker's Secret into its agent.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::{
    ByteString,
    api::core::v1::{Secret, SecretVolumeSource, Volume, VolumeMount},
};
use kube::api::ObjectMeta;
use stoker_proto::{
    agent_tls::{CA_FILE, CA_KEY_FILE, CERT_FILE, KEY_FILE, agent_name, ca_common_name},
    pki::{self, Ca, IssueError, Leaf, Subject, Usage},
};
use time::{Duration, OffsetDateTime};

use super::{CLUSTER_DOMAIN, ClusterMeta, LABEL_BROKER_ID, advertised_host, cluster_labels};
use crate::secret_data::text;

/// Label on the certificate Secrets (the coordinator's cache watches only these).
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// Annotation: the names a broker's certificate is for, joined with commas.
const NAMES_ANNOTATION: &str = "kafka.stoker.io/certificate-names";
/// Annotation: when it expires (Unix seconds).
const NOT_AFTER_ANNOTATION: &str = "kafka.stoker.io/not-after";
/// How long a cluster's CA is valid.
pub const CA_VALIDITY: Duration = Duration::days(3650);
/// How long a broker's certificate is valid.
pub const LEAF_VALIDITY: Duration = Duration::days(90);
/// A broker's certificate is issued again this long before it expires.
pub const RENEW_BEFORE: Duration = Duration::days(30);

/// The organization of the identities Stoker issues from a cluster's listener CA for
/// its own parts (the nodes, the coordinator). A KafkaUser's certificate names no
/// organization, so no user can hold one of these principals.
pub const IDENTITY_ORGANIZATION: &str = "stoker.io";
/// The common name of the coordinator's Kafka client certificate.
pub const COORDINATOR_COMMON_NAME: &str = "stoker-coordinator";

/// The common name every node of cluster `cluster` presents, the cluster's name (its
/// Kafka principal is `User:CN=<cluster>,O=stoker.io`): one principal for all nodes,
/// so adding a node changes no ACL and no `super.users`.
pub fn node_common_name(cluster: &str) -> String {
    cluster.to_owned()
}

/// The Kafka principals of cluster `cluster`'s nodes and of the coordinator, as
/// `super.users` lists them (`;`-separated): with mutual TLS between nodes and an
/// authorizer, they must be allowed everything the cluster itself does.
pub fn own_principals(cluster: &str) -> String {
    format!(
        "User:CN={},O={IDENTITY_ORGANIZATION};User:CN={COORDINATOR_COMMON_NAME},O={IDENTITY_ORGANIZATION}",
        node_common_name(cluster)
    )
}

/// What a set of certificates is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Purpose {
    /// The agents' gRPC server (mTLS with the coordinator).
    #[default]
    Agents,
    /// The brokers' `ssl` and `sasl_ssl` client listeners.
    Listeners,
}

impl Purpose {
    /// Both purposes.
    pub const ALL: [Self; 2] = [Self::Agents, Self::Listeners];

    /// The component label value of its Secrets.
    pub const fn component(self) -> &'static str {
        match self {
            Self::Agents => "agent-tls",
            Self::Listeners => "listener-tls",
        }
    }

    /// Where the agent container mounts a broker's Secret.
    pub const fn mount_dir(self) -> &'static str {
        match self {
            Self::Agents => "/etc/stoker/agent-tls",
            Self::Listeners => "/etc/stoker/listener-tls",
        }
    }

    /// The Pod volume of that Secret.
    pub const fn volume(self) -> &'static str {
        self.component()
    }
}

/// One cluster's certificates for one purpose: where its CA is kept and what each
/// broker's certificate is called and names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateSet {
    /// What for.
    pub purpose: Purpose,
    /// The CA's Secret.
    pub ca_secret: String,
    /// The CA's subject common name (a name in messages for a CA the user brings).
    pub ca_common_name: String,
    /// Stoker makes the CA when its Secret holds none; otherwise the user brings it.
    pub create_ca: bool,
}

impl CertificateSet {
    /// The agents' mTLS of cluster `cluster` in `namespace`: CA in `<cluster>-agent-ca`.
    pub fn agents(cluster: &str, namespace: &str) -> Self {
        Self {
            purpose: Purpose::Agents,
            ca_secret: format!("{cluster}-agent-ca"),
            ca_common_name: ca_common_name(cluster, namespace),
            create_ca: true,
        }
    }

    /// The client listeners' TLS of cluster `cluster` in `namespace`: CA in
    /// `ca_secret` (`sslSecrets.tlsSecretName`; empty when the cluster has no TLS
    /// listener, which still finds brokers' Secrets left over), made by Stoker when
    /// `create_ca`.
    pub fn listeners(cluster: &str, namespace: &str, ca_secret: &str, create_ca: bool) -> Self {
        Self {
            purpose: Purpose::Listeners,
            ca_secret: ca_secret.to_owned(),
            ca_common_name: if create_ca {
                format!("stoker-cluster-ca.{cluster}.{namespace}")
            } else {
                format!("the CA in Secret {ca_secret}")
            },
            create_ca,
        }
    }

    /// The client listeners' set of a validated cluster (`tls`: its `listener_tls`).
    pub fn of_listeners(
        cluster: &str,
        namespace: &str,
        tls: Option<&crate::controller::kafka_cluster::validate::ListenerTls>,
    ) -> Self {
        match tls {
            Some(t) => Self::listeners(cluster, namespace, &t.ca_secret, t.create),
            None => Self::listeners(cluster, namespace, "", false),
        }
    }

    /// Broker `id`'s Secret: `<cluster>-agent-<id>-tls` or `<cluster>-broker-<id>-tls`.
    pub fn broker_secret(&self, cluster: &str, id: i32) -> String {
        match self.purpose {
            Purpose::Agents => format!("{cluster}-agent-{id}-tls"),
            Purpose::Listeners => format!("{cluster}-broker-{id}-tls"),
        }
    }

    /// The names broker `id`'s certificate is for: the agent's name, or the broker's
    /// advertised host and the bootstrap Service's names (short and fully qualified).
    pub fn names(&self, meta: &ClusterMeta, id: i32) -> Vec<String> {
        match self.purpose {
            Purpose::Agents => vec![agent_name(&meta.name, &meta.namespace, id)],
            Purpose::Listeners => {
                let service = if meta.headless {
                    format!("{}-headless", meta.name)
                } else {
                    format!("{}-all-broker", meta.name)
                };
                vec![
                    advertised_host(meta, id),
                    format!("{service}.{}.svc", meta.namespace),
                    format!("{service}.{}.svc.{CLUSTER_DOMAIN}", meta.namespace),
                ]
            }
        }
    }
}

/// A broker's stored certificate, as the plan needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLeaf {
    /// The names it is for, joined with commas.
    pub names: String,
    /// When it expires (Unix seconds; 0 when unreadable).
    pub not_after: i64,
    /// The CA stored beside it (to tell one signed by a replaced CA).
    pub ca_cert: String,
}

/// One set's Secrets of one cluster, read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateView {
    /// The CA, when its Secret exists and holds a certificate and key.
    pub ca: Option<Ca>,
    /// Each broker's certificate, by broker id.
    pub brokers: BTreeMap<i32, StoredLeaf>,
}

impl CertificateView {
    /// Reads `secrets` (those of cluster `cluster` that carry a component label) as
    /// `set` names them.
    pub fn read<'a>(
        set: &CertificateSet,
        cluster: &str,
        secrets: impl IntoIterator<Item = &'a Secret>,
    ) -> Self {
        let mut view = Self::default();
        for s in secrets {
            let name = s.metadata.name.as_deref().unwrap_or_default();
            if name == set.ca_secret {
                let (cert, key) = (text(s, CA_FILE), text(s, CA_KEY_FILE));
                if !cert.is_empty() && !key.is_empty() {
                    view.ca = Some(Ca {
                        common_name: set.ca_common_name.clone(),
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
                && name == set.broker_secret(cluster, id)
                && !text(s, CERT_FILE).is_empty()
                && !text(s, KEY_FILE).is_empty()
            {
                view.brokers.insert(
                    id,
                    StoredLeaf {
                        names: annotations
                            .get(NAMES_ANNOTATION)
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

/// What to issue this pass, for one set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsPlan {
    /// The cluster (what issued Secrets carry).
    pub meta: ClusterMeta,
    /// Which certificates.
    pub set: CertificateSet,
    /// The CA in force (signs what is issued; `None` with `new_ca`).
    pub ca: Option<Ca>,
    /// Issue a new CA, and why (none is stored). Every broker's certificate follows.
    pub new_ca: Option<&'static str>,
    /// The CA the user brings is not there (its Secret is missing, unlabelled, or
    /// holds no `ca.crt` and `ca.key`): nothing can be issued.
    pub ca_missing: bool,
    /// Brokers whose certificate to issue, and why.
    pub issue: BTreeMap<i32, &'static str>,
    /// Brokers gone whose Secret to delete.
    pub delete: BTreeSet<i32>,
}

impl TlsPlan {
    /// Whether nothing is to be done.
    pub fn is_empty(&self) -> bool {
        self.new_ca.is_none() && !self.ca_missing && self.issue.is_empty() && self.delete.is_empty()
    }
}

/// The renewal rule of `set` for the brokers `ids` at `now`. With no broker to serve,
/// no CA is made (and brokers' Secrets left over are deleted).
pub fn plan(
    meta: &ClusterMeta,
    set: &CertificateSet,
    ids: &BTreeSet<i32>,
    view: &CertificateView,
    now: i64,
) -> TlsPlan {
    let mut out = TlsPlan {
        meta: meta.clone(),
        set: set.clone(),
        ca: view.ca.clone(),
        ..TlsPlan::default()
    };
    let ca_cert = match &view.ca {
        Some(ca) => Some(ca.cert.as_str()),
        None if ids.is_empty() => None,
        None if !set.create_ca => {
            out.ca_missing = true;
            None
        }
        None => {
            out.new_ca = Some("the cluster has no CA for these certificates yet");
            None
        }
    };
    for &id in ids {
        let why = match (view.brokers.get(&id), ca_cert) {
            (_, None) => Some("a new CA was issued"),
            (None, _) => Some("the broker has no certificate yet"),
            (Some(s), Some(ca)) if s.ca_cert != ca => {
                Some("the certificate was signed by another CA")
            }
            (Some(s), _) if s.names != set.names(meta, id).join(",") => {
                Some("the certificate is for other names")
            }
            (Some(s), _) if s.not_after - now < RENEW_BEFORE.whole_seconds() => {
                Some("the certificate expires within 30 days")
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
    purpose: Purpose,
    name: String,
    broker: Option<i32>,
    data: Vec<(&str, String)>,
    annotations: BTreeMap<String, String>,
) -> Secret {
    let mut labels = cluster_labels(meta);
    labels.insert(LABEL_COMPONENT.to_owned(), purpose.component().to_owned());
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

/// A new CA for `set`, and its Secret.
pub fn issue_ca(
    meta: &ClusterMeta,
    set: &CertificateSet,
    now: OffsetDateTime,
) -> Result<(Ca, Secret), IssueError> {
    let ca = pki::issue_ca(&set.ca_common_name, now, CA_VALIDITY)?;
    let s = secret(
        meta,
        set.purpose,
        set.ca_secret.clone(),
        None,
        vec![(CA_FILE, ca.cert.clone()), (CA_KEY_FILE, ca.key.clone())],
        BTreeMap::new(),
    );
    Ok((ca, s))
}

/// Broker `id`'s certificate of `set` signed by `ca`, as its Secret.
pub fn issue_broker(
    meta: &ClusterMeta,
    set: &CertificateSet,
    ca: &Ca,
    id: i32,
    now: OffsetDateTime,
) -> Result<Secret, IssueError> {
    let names = set.names(meta, id);
    let Leaf {
        cert,
        key,
        not_after,
    } = match set.purpose {
        Purpose::Agents => pki::issue_leaf(ca, &names, Usage::Server, now, LEAF_VALIDITY)?,
        // A node serves its listeners with it and presents it to the nodes it connects
        // to (mutual TLS between brokers and controllers).
        Purpose::Listeners => pki::issue_leaf_for(
            ca,
            Subject {
                common_name: &node_common_name(&meta.name),
                organization: Some(IDENTITY_ORGANIZATION),
            },
            &names,
            &[Usage::Server, Usage::Client],
            now,
            LEAF_VALIDITY,
        )?,
    };
    Ok(secret(
        meta,
        set.purpose,
        set.broker_secret(&meta.name, id),
        Some(id),
        vec![
            (CERT_FILE, cert),
            (KEY_FILE, key),
            (CA_FILE, ca.cert.clone()),
        ],
        BTreeMap::from([
            (NAMES_ANNOTATION.to_owned(), names.join(",")),
            (NOT_AFTER_ANNOTATION.to_owned(), not_after.to_string()),
        ]),
    ))
}

/// The broker Pod's volume of its Secret of `set`.
pub fn volume(set: &CertificateSet, cluster: &str, id: i32) -> Volume {
    Volume {
        name: set.purpose.volume().into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(set.broker_secret(cluster, id)),
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// The agent container's mount of it.
pub fn mount(purpose: Purpose) -> VolumeMount {
    VolumeMount {
        name: purpose.volume().into(),
        mount_path: purpose.mount_dir().into(),
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
        let set = CertificateSet::agents("kf", "ns");
        let p = plan(&meta(), &set, &ids, &CertificateView::default(), 0);
        assert!(p.new_ca.is_some());
        assert_eq!(p.issue.keys().copied().collect::<Vec<_>>(), [0, 1]);
        let none = plan(
            &meta(),
            &set,
            &BTreeSet::new(),
            &CertificateView::default(),
            0,
        );
        assert!(none.is_empty(), "no broker, no CA: {none:?}");
    }

    #[test]
    fn listener_certificates_name_the_broker_and_the_bootstrap_service() {
        let m = meta();
        let set = CertificateSet::listeners("kf", "ns", "kf-tls-ca", true);
        assert_eq!(
            set.names(&m, 3),
            [
                "kf-3.ns.svc.cluster.local",
                "kf-all-broker.ns.svc",
                "kf-all-broker.ns.svc.cluster.local"
            ]
        );
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("a time");
        let (ca, ca_secret) = issue_ca(&m, &set, now).expect("a CA");
        assert_eq!(ca_secret.metadata.name.as_deref(), Some("kf-tls-ca"));
        let b3 = issue_broker(&m, &set, &ca, 3, now).expect("a certificate");
        assert_eq!(b3.metadata.name.as_deref(), Some("kf-broker-3-tls"));
        // The agents' set does not read the listeners' Secrets, nor the other way.
        let agents = CertificateSet::agents(&m.name, &m.namespace);
        assert_eq!(
            CertificateView::read(&agents, "kf", [&ca_secret, &b3]),
            CertificateView::default()
        );
        let view = CertificateView::read(&set, "kf", [&ca_secret, &b3]);
        let ids = BTreeSet::from([3]);
        assert!(plan(&m, &set, &ids, &view, now.unix_timestamp()).is_empty());
        let headless = ClusterMeta {
            headless: true,
            ..m.clone()
        };
        assert_eq!(
            plan(&headless, &set, &ids, &view, now.unix_timestamp())
                .issue
                .get(&3),
            Some(&"the certificate is for other names"),
            "a Service layout change renames the broker"
        );
    }

    #[test]
    fn issued_material_is_kept_until_it_nears_expiry_or_its_ca_changes() {
        let m = meta();
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("a time");
        let set = CertificateSet::agents(&m.name, &m.namespace);
        let (ca, ca_secret) = issue_ca(&m, &set, now).expect("a CA");
        let b0 = issue_broker(&m, &set, &ca, 0, now).expect("a certificate");
        let b7 = issue_broker(&m, &set, &ca, 7, now).expect("a certificate");
        let view = CertificateView::read(&set, "kf", [&ca_secret, &b0, &b7]);
        assert_eq!(view.ca.as_ref(), Some(&ca));
        let ids = BTreeSet::from([0]);
        let p = plan(&m, &set, &ids, &view, now.unix_timestamp());
        assert_eq!(p.new_ca, None);
        assert!(p.issue.is_empty(), "{p:?}");
        assert_eq!(p.delete, BTreeSet::from([7]), "a gone broker's Secret goes");

        let later = (now + LEAF_VALIDITY - RENEW_BEFORE + Duration::hours(1)).unix_timestamp();
        let p = plan(&m, &set, &ids, &view, later);
        assert_eq!(
            p.issue.get(&0),
            Some(&"the certificate expires within 30 days")
        );

        let (other, _) = issue_ca(&m, &set, now).expect("another CA");
        let replaced = CertificateView {
            ca: Some(other),
            ..view
        };
        let p = plan(&m, &set, &ids, &replaced, now.unix_timestamp());
        assert_eq!(
            p.issue.get(&0),
            Some(&"the certificate was signed by another CA")
        );
    }

    #[test]
    fn a_ca_secret_without_a_key_is_no_ca() {
        let m = meta();
        let set = CertificateSet::agents(&m.name, &m.namespace);
        let (_, mut s) = issue_ca(&m, &set, OffsetDateTime::now_utc()).expect("a CA");
        s.data.as_mut().expect("data").remove(CA_KEY_FILE);
        assert_eq!(CertificateView::read(&set, "kf", [&s]).ca, None);
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
        let set = CertificateSet::agents(&m.name, &m.namespace);
        let (_, secret) = issue_ca(&m, &set, now).expect("a CA");
        let stored = CertificateView::read(&set, "kafka", [&secret])
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

    #[test]
    fn a_node_certificate_names_the_clusters_identity_as_kafka_prints_it() {
        let m = ClusterMeta {
            name: "kafka".into(),
            namespace: "ns".into(),
            ..ClusterMeta::default()
        };
        let now = OffsetDateTime::now_utc();
        let set = CertificateSet::listeners("kafka", "ns", "kafka-ca", true);
        let (ca, _) = issue_ca(&m, &set, now).expect("a CA");
        let secret = issue_broker(&m, &set, &ca, 0, now).expect("a certificate");
        let der = CertificateDer::from_pem_slice(&secret.data.as_ref().expect("data")[CERT_FILE].0)
            .expect("leaf PEM");
        let find = |needle: &[u8], from: usize| {
            der[from..]
                .windows(needle.len())
                .position(|w| w == needle)
                .map(|p| p + from)
        };
        // The subject follows the issuer (whose only attribute is its common name):
        // O=stoker.io encoded before CN=kafka, which Kafka prints `CN=kafka,O=stoker.io`
        // (most specific first), the principal `own_principals` lists.
        let issuer_cn = find(&[0x55, 0x04, 0x03], 0).expect("the issuer's CN");
        let org = find(&[0x55, 0x04, 0x0a], issuer_cn).expect("the subject's O");
        let cn = find(&[0x55, 0x04, 0x03], org).expect("the subject's CN after its O");
        assert!(der[org..].starts_with(&[0x55, 0x04, 0x0a, 0x0c, 9]));
        assert_eq!(&der[org + 5..org + 14], b"stoker.io");
        assert_eq!(&der[cn + 5..cn + 10], b"kafka");
        assert!(own_principals("kafka").starts_with("User:CN=kafka,O=stoker.io;"));
    }

    #[test]
    fn a_listener_certificate_from_a_ca_the_user_brings_verifies_against_it() {
        let m = ClusterMeta {
            name: "kafka".into(),
            namespace: "ns".into(),
            ..ClusterMeta::default()
        };
        let now = OffsetDateTime::now_utc();
        let set = CertificateSet::listeners("kafka", "ns", "acme-ca", false);
        let missing = plan(
            &m,
            &set,
            &BTreeSet::from([0]),
            &CertificateView::default(),
            0,
        );
        assert!(
            missing.ca_missing && missing.new_ca.is_none() && !missing.is_empty(),
            "a CA the user brings is never made by Stoker: {missing:?}"
        );

        // A CA of the user's own naming, in a Secret the user made.
        let theirs = pki::issue_ca("Acme Root CA", now, Duration::days(365)).expect("a CA");
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some("acme-ca".into()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([
                (
                    CA_FILE.to_owned(),
                    ByteString(theirs.cert.clone().into_bytes()),
                ),
                (
                    CA_KEY_FILE.to_owned(),
                    ByteString(theirs.key.clone().into_bytes()),
                ),
            ])),
            ..Secret::default()
        };
        let ca = CertificateView::read(&set, "kafka", [&secret])
            .ca
            .expect("the user's CA is read");
        let leaf = issue_broker(&m, &set, &ca, 0, now).expect("a certificate");
        let roots = {
            let mut r = RootCertStore::empty();
            r.add(CertificateDer::from_pem_slice(theirs.cert.as_bytes()).expect("CA PEM"))
                .expect("a root");
            Arc::new(r)
        };
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots.clone(),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .expect("a verifier");
        let cert = CertificateDer::from_pem_slice(&leaf.data.as_ref().expect("data")[CERT_FILE].0)
            .expect("leaf PEM");
        let name =
            rustls::pki_types::ServerName::try_from(set.names(&m, 0)[0].clone()).expect("a name");
        rustls::client::danger::ServerCertVerifier::verify_server_cert(
            verifier.as_ref(),
            &cert,
            &[],
            &name,
            &[],
            UnixTime::now(),
        )
        .expect("the broker's certificate chains to the user's CA, for its advertised name");
        // The same certificate is the node's client identity towards the other nodes.
        WebPkiClientVerifier::builder_with_provider(
            roots,
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .expect("a client verifier")
        .verify_client_cert(&cert, &[], UnixTime::now())
        .expect("a node's certificate also authenticates it as a client");
    }
}
