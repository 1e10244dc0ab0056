//! Keeping the webhook's serving certificate current, at the edge: issued by the
//! coordinator and kept in a Secret every replica shares (renewed before it expires, the
//! CA patched into the webhook configuration's `caBundle`), or read from files another
//! issuer keeps (cert-manager's Secret mounted into the Pod). The rules are in
//! [`super::tls`].

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use k8s_openapi::{
    ByteString, api::admissionregistration::v1::MutatingWebhookConfiguration, api::core::v1::Secret,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use rustls::sign::CertifiedKey;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::tls::{self, Material, Renewal, SwappableCert, TlsError};
use crate::secret_data::text;

const NAMES_ANNOTATION: &str = "kafka.stoker.io/webhook-names";
const NOT_AFTER_ANNOTATION: &str = "kafka.stoker.io/not-after";

/// Where the serving certificate comes from.
#[derive(Clone)]
pub enum CertSource {
    /// `tls.crt` and `tls.key` in a directory another issuer keeps current.
    Files(PathBuf),
    /// Issued by the coordinator and kept in a Secret.
    Issued {
        /// The API client.
        client: Client,
        /// The coordinator's namespace.
        namespace: String,
        /// The Secret's name.
        secret: String,
        /// The names the certificate is for (the webhook Service's DNS names, or an
        /// address).
        names: Vec<String>,
        /// The MutatingWebhookConfiguration whose `caBundle` is kept to the CA.
        configuration: Option<String>,
    },
}

impl std::fmt::Debug for CertSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Files(dir) => f.debug_tuple("Files").field(dir).finish(),
            Self::Issued {
                namespace,
                secret,
                names,
                configuration,
                ..
            } => f
                .debug_struct("Issued")
                .field("namespace", namespace)
                .field("secret", secret)
                .field("names", names)
                .field("configuration", configuration)
                .finish_non_exhaustive(),
        }
    }
}

/// Why the certificate could not be kept current.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be read.
    #[error("failed to read the webhook certificate file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A Kubernetes call failed.
    #[error("failed to {what}: {source}")]
    Kube {
        /// The operation.
        what: String,
        /// The cause.
        source: kube::Error,
    },
    /// Issuing or reading the material failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Other replicas kept winning the race to store a certificate.
    #[error(
        "failed to store the webhook certificate in Secret {0}: it kept changing under this replica"
    )]
    Contended(String),
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> CertError {
    let what = what.into();
    move |source| CertError::Kube { what, source }
}

/// The certificate to serve now (issuing it when the coordinator keeps none yet).
pub async fn current(source: &CertSource) -> Result<(Arc<CertifiedKey>, Vec<u8>), CertError> {
    match source {
        CertSource::Files(dir) => {
            let read = |name: &str| {
                let path = dir.join(name);
                std::fs::read(&path).map_err(|source| CertError::File { path, source })
            };
            let (cert, key) = (read("tls.crt")?, read("tls.key")?);
            let fingerprint = [cert.as_slice(), key.as_slice()].concat();
            Ok((tls::certified_key(&cert, &key)?, fingerprint))
        }
        CertSource::Issued {
            client,
            namespace,
            secret,
            names,
            configuration,
        } => {
            let m = ensure_issued(client, namespace, secret, names).await?;
            if let Some(name) = configuration {
                patch_ca_bundle(client, name, &m.ca_cert).await?;
            }
            let fingerprint = [m.cert.as_bytes(), m.key.as_bytes()].concat();
            Ok((
                tls::certified_key(m.cert.as_bytes(), m.key.as_bytes())?,
                fingerprint,
            ))
        }
    }
}

/// Re-reads (and renews) the certificate every `every`, swapping it into `serving`
/// when it changed, until `token` is cancelled. Each check also reads the webhook
/// configuration, so a `caBundle` something else reset (an upgrade re-applying the
/// chart's object) is put back within one period.
pub async fn keep_current(
    source: CertSource,
    serving: Arc<SwappableCert>,
    mut fingerprint: Vec<u8>,
    every: Duration,
    token: CancellationToken,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = token.cancelled() => return,
        }
        match current(&source).await {
            Ok((key, print)) if print != fingerprint => {
                serving.set(key);
                fingerprint = print;
                info!("Webhook serving certificate replaced; new connections get it");
            }
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e, "Webhook certificate could not be checked; serving the current one")
            }
        }
    }
}

fn stored(secret: &Secret) -> Material {
    let annotations = secret.metadata.annotations.clone().unwrap_or_default();
    Material {
        ca_cert: text(secret, "ca.crt"),
        ca_key: text(secret, "ca.key"),
        cert: text(secret, "tls.crt"),
        key: text(secret, "tls.key"),
        names: annotations
            .get(NAMES_ANNOTATION)
            .map(|n| n.split(',').map(str::to_owned).collect())
            .unwrap_or_default(),
        not_after: annotations
            .get(NOT_AFTER_ANNOTATION)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
    }
}

fn secret_of(name: &str, m: &Material, resource_version: Option<String>) -> Secret {
    let data = [
        ("ca.crt", &m.ca_cert),
        ("ca.key", &m.ca_key),
        ("tls.crt", &m.cert),
        ("tls.key", &m.key),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.clone().into_bytes())))
    .collect();
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            resource_version,
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                "stoker".to_owned(),
            )])),
            annotations: Some(BTreeMap::from([
                (NAMES_ANNOTATION.to_owned(), m.names.join(",")),
                (NOT_AFTER_ANNOTATION.to_owned(), m.not_after.to_string()),
            ])),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Secret::default()
    }
}

/// The material in Secret `name`, issued or renewed first when the rule says so. Two
/// replicas racing: the write carries the version read, the loser re-reads.
async fn ensure_issued(
    client: &Client,
    namespace: &str,
    name: &str,
    names: &[String],
) -> Result<Material, CertError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for _ in 0..3 {
        let existing = api
            .get_opt(name)
            .await
            .map_err(kube_err(format!("read Secret {namespace}/{name}")))?;
        let current = existing.as_ref().map(stored);
        let now = OffsetDateTime::now_utc();
        let m = match (tls::renewal(current.as_ref(), names, now), current) {
            (Renewal::Keep, Some(kept)) => return Ok(kept),
            (Renewal::Leaf(why), Some(c)) => {
                info!(
                    secret = name,
                    reason = why,
                    "Renewing the webhook serving certificate"
                );
                tls::issue_leaf(&c.ca_cert, &c.ca_key, names, now)?
            }
            (why, _) => {
                info!(secret = name, reason = ?why, "Issuing the webhook's CA and serving certificate");
                tls::issue_all(names, now)?
            }
        };
        let written = match existing {
            Some(s) => {
                api.replace(
                    name,
                    &PostParams::default(),
                    &secret_of(name, &m, s.metadata.resource_version),
                )
                .await
            }
            None => {
                api.create(&PostParams::default(), &secret_of(name, &m, None))
                    .await
            }
        };
        match written {
            Ok(_) => return Ok(m),
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => return Err(kube_err(format!("write Secret {namespace}/{name}"))(e)),
        }
    }
    Err(CertError::Contended(format!("{namespace}/{name}")))
}

/// Sets every webhook's `caBundle` in configuration `name` to `ca_pem` (unchanged: no
/// write).
async fn patch_ca_bundle(client: &Client, name: &str, ca_pem: &str) -> Result<(), CertError> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let mut config = api.get(name).await.map_err(kube_err(format!(
        "read MutatingWebhookConfiguration {name}"
    )))?;
    let bundle = ByteString(ca_pem.as_bytes().to_vec());
    let mut changed = false;
    for w in config.webhooks.iter_mut().flatten() {
        if w.client_config.ca_bundle.as_ref() != Some(&bundle) {
            w.client_config.ca_bundle = Some(bundle.clone());
            changed = true;
        }
    }
    if changed {
        api.replace(name, &PostParams::default(), &config)
            .await
            .map_err(kube_err(format!(
                "write the caBundle of MutatingWebhookConfiguration {name}"
            )))?;
        info!(
            configuration = name,
            "Webhook caBundle set to the coordinator's CA"
        );
    }
    Ok(())
}
