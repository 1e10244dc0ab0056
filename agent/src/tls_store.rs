//! Kafka's PEM key and trust stores for SSL listeners, rendered from a mounted Secret
//! (`tls.crt`, `tls.key`, `ca.crt`), and a renewed certificate served without a restart.
//!
//! Each TLS listener has two store pairs in `<config dir>/tls/`: the *static* pair that
//! server.properties names, and a *hop* pair. When the Secret's files change, the agent
//! writes the new material into both pairs, points the listener at the hop pair with a
//! per-broker dynamic config (a changed value: Kafka reloads the listener's SSL engine,
//! new connections get the new certificate, open ones keep theirs), waits until the
//! broker reports that value, then deletes the dynamic config: the listener reloads from
//! the static pair, now also new. Nothing stays in the cluster's metadata that a fresh
//! Pod could not satisfy — and a start writes both pairs anyway.
//!
//! Kafka refuses a new keystore whose subject or SANs differ from the old one unless
//! the broker allows it (`ssl.allow.dn.changes`, `ssl.allow.san.changes`); a renewal of
//! the same identity needs neither.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{config::ValidatedConfig, output};

/// The Secret's certificate chain file (the broker's certificate first).
pub const CERT_FILE: &str = "tls.crt";
/// The Secret's private key file (PKCS#8 PEM, unencrypted).
pub const KEY_FILE: &str = "tls.key";
/// The Secret's trusted CAs file.
pub const CA_FILE: &str = "ca.crt";
/// Sub-folder of the config dir the stores are written into.
pub const STORES_DIR: &str = "tls";
/// How often the mounted files are compared with the stores in force.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// How long the broker may take to report the hop stores in force.
const HOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a listener's stores cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsStoreError {
    /// A file of the Secret could not be read.
    #[error("failed to read {path} for listener {listener}: {message}")]
    Read {
        /// The listener.
        listener: String,
        /// The file.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// A file does not hold what Kafka's PEM stores need.
    #[error("{path} for listener {listener} {problem}")]
    Content {
        /// The listener.
        listener: String,
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        problem: &'static str,
    },
    /// A store could not be written.
    #[error(transparent)]
    Write(#[from] output::WriteError),
}

/// One listener's PEM material as read from its Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Material {
    /// Private key (PKCS#8) followed by the certificate chain: Kafka's PEM keystore.
    pub keystore: String,
    /// The trusted CAs: Kafka's PEM truststore.
    pub truststore: String,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("digest", &self.digest())
            .finish_non_exhaustive()
    }
}

impl Material {
    /// Builds the stores from the three files' contents, checking each holds the PEM
    /// blocks Kafka needs (never printing them).
    pub fn from_pem(
        listener: &str,
        dir: &Path,
        cert: &str,
        key: &str,
        ca: &str,
    ) -> Result<Self, TlsStoreError> {
        let bad = |file: &str, problem| TlsStoreError::Content {
            listener: listener.to_owned(),
            path: dir.join(file),
            problem,
        };
        if !cert.contains("-----BEGIN CERTIFICATE-----") {
            return Err(bad(
                CERT_FILE,
                "holds no PEM certificate; it must hold the broker's certificate, then its chain",
            ));
        }
        if key.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Err(bad(
                KEY_FILE,
                "holds an encrypted key; give the key unencrypted (the Secret is the protection)",
            ));
        }
        if key.contains("-----BEGIN RSA PRIVATE KEY-----")
            || key.contains("-----BEGIN EC PRIVATE KEY-----")
        {
            return Err(bad(
                KEY_FILE,
                "holds a PKCS#1/SEC1 key; Kafka reads PKCS#8 only: convert it with `openssl pkcs8 -topk8 -nocrypt`",
            ));
        }
        if !key.contains("-----BEGIN PRIVATE KEY-----") {
            return Err(bad(KEY_FILE, "holds no PEM private key (PKCS#8)"));
        }
        if !ca.contains("-----BEGIN CERTIFICATE-----") {
            return Err(bad(CA_FILE, "holds no PEM certificate of a CA"));
        }
        let mut keystore = String::with_capacity(key.len() + cert.len() + 1);
        keystore.push_str(key.trim_end());
        keystore.push('\n');
        keystore.push_str(cert.trim_end());
        keystore.push('\n');
        let mut truststore = ca.trim_end().to_owned();
        truststore.push('\n');
        Ok(Self {
            keystore,
            truststore,
        })
    }

    /// Reads the listener's Secret folder.
    pub fn read(listener: &str, dir: &Path) -> Result<Self, TlsStoreError> {
        let read = |file: &str| {
            let path = dir.join(file);
            std::fs::read_to_string(&path).map_err(|e| TlsStoreError::Read {
                listener: listener.to_owned(),
                path,
                message: e.kind().to_string(),
            })
        };
        Self::from_pem(
            listener,
            dir,
            &read(CERT_FILE)?,
            &read(KEY_FILE)?,
            &read(CA_FILE)?,
        )
    }

    /// A short digest of both stores (for logs: which material is in force).
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.keystore.as_bytes());
        h.update([0]);
        h.update(self.truststore.as_bytes());
        h.finalize()
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Which of a listener's two store pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pair {
    /// The pair server.properties names.
    Static,
    /// The pair a renewal passes through.
    Hop,
}

/// Paths of one store pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorePaths {
    /// The PEM keystore.
    pub keystore: PathBuf,
    /// The PEM truststore.
    pub truststore: PathBuf,
}

/// Where `listener`'s `pair` lives under the config dir.
pub fn store_paths(config_dir: &Path, listener: &str, pair: Pair) -> StorePaths {
    let dir = config_dir.join(STORES_DIR);
    let name = listener.to_ascii_lowercase();
    let suffix = match pair {
        Pair::Static => "",
        Pair::Hop => ".hop",
    };
    StorePaths {
        keystore: dir.join(format!("{name}.keystore{suffix}.pem")),
        truststore: dir.join(format!("{name}.truststore{suffix}.pem")),
    }
}

/// The listener-prefixed keys that point Kafka at `paths` (the prefix is Kafka's
/// `listener.name.<lower-case name>.`).
pub fn location_properties(listener: &str, paths: &StorePaths) -> [(String, String); 4] {
    let prefix = format!("listener.name.{}.", listener.to_ascii_lowercase());
    [
        (format!("{prefix}ssl.keystore.type"), "PEM".to_owned()),
        (
            format!("{prefix}ssl.keystore.location"),
            paths.keystore.display().to_string(),
        ),
        (format!("{prefix}ssl.truststore.type"), "PEM".to_owned()),
        (
            format!("{prefix}ssl.truststore.location"),
            paths.truststore.display().to_string(),
        ),
    ]
}

/// The keys a renewal sets (and then deletes): the two locations.
fn location_keys(listener: &str) -> [String; 2] {
    let prefix = format!("listener.name.{}.", listener.to_ascii_lowercase());
    [
        format!("{prefix}ssl.keystore.location"),
        format!("{prefix}ssl.truststore.location"),
    ]
}

/// Writes `material` into `pair` of the listener (keys readable by the owner and the
/// Pod's group only).
pub fn write_pair(
    config_dir: &Path,
    listener: &str,
    pair: Pair,
    material: &Material,
) -> Result<(), TlsStoreError> {
    let paths = store_paths(config_dir, listener, pair);
    let dir = config_dir.join(STORES_DIR);
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    output::write_atomically(&dir, &name(&paths.keystore), &material.keystore, 0o640)?;
    output::write_atomically(&dir, &name(&paths.truststore), &material.truststore, 0o644)?;
    Ok(())
}

/// A TLS listener and the material its stores hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerStores {
    /// The listener's name.
    pub listener: String,
    /// Its mounted Secret folder.
    pub secret_dir: PathBuf,
    /// The material in force.
    pub material: Material,
}

/// Reads every TLS listener's Secret and writes both store pairs; the material each
/// listener starts with.
pub fn write_all(
    config: &ValidatedConfig,
    config_dir: &Path,
) -> Result<Vec<ListenerStores>, TlsStoreError> {
    let mut out = Vec::new();
    for l in &config.listeners {
        let Some(dir) = &l.tls_dir else { continue };
        let material = Material::read(&l.name, dir)?;
        write_pair(config_dir, &l.name, Pair::Static, &material)?;
        write_pair(config_dir, &l.name, Pair::Hop, &material)?;
        out.push(ListenerStores {
            listener: l.name.clone(),
            secret_dir: dir.clone(),
            material,
        });
    }
    Ok(out)
}

/// What a renewal needs from the broker: set or delete its own per-broker configs and
/// read them back.
pub trait BrokerConfigs: Send + Sync {
    /// Sets and deletes per-broker dynamic configs.
    fn alter(
        &self,
        set: &std::collections::BTreeMap<String, String>,
        delete: &[String],
    ) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
    /// The value the broker reports in force for `key`.
    fn value_of(
        &self,
        key: &str,
    ) -> impl std::future::Future<Output = anyhow::Result<Option<String>>> + Send;
}

/// Serves `material` on `listener` without a restart: both pairs rewritten, the
/// listener moved to the hop pair and back (see the module docs).
pub async fn renew(
    broker: &impl BrokerConfigs,
    config_dir: &Path,
    listener: &str,
    material: &Material,
) -> anyhow::Result<()> {
    write_pair(config_dir, listener, Pair::Hop, material)?;
    write_pair(config_dir, listener, Pair::Static, material)?;
    let hop = store_paths(config_dir, listener, Pair::Hop);
    let [keystore_key, truststore_key] = location_keys(listener);
    let set = std::collections::BTreeMap::from([
        (keystore_key.clone(), hop.keystore.display().to_string()),
        (truststore_key.clone(), hop.truststore.display().to_string()),
    ]);
    broker.alter(&set, &[]).await.map_err(|e| {
        e.context(format!(
            "failed to point listener {listener} at its hop stores"
        ))
    })?;
    let want = hop.keystore.display().to_string();
    let deadline = tokio::time::Instant::now() + HOP_TIMEOUT;
    loop {
        match broker.value_of(&keystore_key).await {
            Ok(Some(v)) if v == want => break,
            Ok(_) | Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Ok(v) => anyhow::bail!(
                "the broker did not report listener {listener}'s hop keystore within {HOP_TIMEOUT:?} (it reports {v:?})"
            ),
            Err(e) => {
                return Err(e.context(format!(
                    "failed to read back listener {listener}'s keystore location"
                )));
            }
        }
    }
    broker
        .alter(&Default::default(), &[keystore_key, truststore_key])
        .await
        .map_err(|e| {
            e.context(format!(
                "failed to return listener {listener} to its static stores"
            ))
        })
}

/// Every [`CHECK_INTERVAL`], compares each TLS listener's Secret files with the material
/// in force and renews the listener when they changed. A failed renewal is logged and
/// tried again at the next check; the listener keeps serving what it has.
pub async fn keep_current(
    broker: Arc<impl BrokerConfigs + 'static>,
    config_dir: PathBuf,
    mut listeners: Vec<ListenerStores>,
    token: CancellationToken,
) {
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(CHECK_INTERVAL) => {}
        }
        for ListenerStores {
            listener,
            secret_dir,
            material: in_force,
        } in &mut listeners
        {
            let fresh = match Material::read(listener, secret_dir) {
                Ok(m) => m,
                Err(e) => {
                    warn!(listener = %listener, error = %e, "Cannot read the listener's TLS files; it keeps serving its current certificate");
                    continue;
                }
            };
            if fresh == *in_force {
                continue;
            }
            match renew(broker.as_ref(), &config_dir, listener, &fresh).await {
                Ok(()) => {
                    info!(listener = %listener, from = %in_force.digest(), to = %fresh.digest(), "Listener serves its renewed TLS material; no restart");
                    *in_force = fresh;
                }
                Err(e) => {
                    warn!(listener = %listener, error = %format!("{e:#}"), "Renewing the listener's TLS material failed; trying again");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

    #[test]
    fn stores_are_key_then_chain_and_the_cas() {
        let m = Material::from_pem("CLIENT", Path::new("/tls"), CERT, KEY, CERT).expect("ok");
        assert_eq!(m.keystore, format!("{}\n{}", KEY.trim_end(), CERT));
        assert_eq!(m.truststore, CERT);
        assert!(!format!("{m:?}").contains("MIIE"), "no key in Debug");
    }

    #[test]
    fn keys_kafka_cannot_read_are_refused_with_what_to_do() {
        let cases = [
            (
                CERT,
                "-----BEGIN RSA PRIVATE KEY-----\n",
                CERT,
                "openssl pkcs8",
            ),
            (
                CERT,
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\n",
                CERT,
                "unencrypted",
            ),
            ("garbage", KEY, CERT, "tls.crt"),
            (CERT, KEY, "", "ca.crt"),
        ];
        for (cert, key, ca, want) in cases {
            let e = Material::from_pem("CLIENT", Path::new("/tls"), cert, key, ca)
                .expect_err("refused")
                .to_string();
            assert!(e.contains(want) && e.contains("CLIENT"), "{e}");
            assert!(!e.contains("MIIE"), "{e}");
        }
    }

    #[test]
    fn pairs_and_properties_name_the_listener_in_kafkas_prefix() {
        let p = store_paths(Path::new("/etc/kafka"), "CLIENT_TLS", Pair::Hop);
        assert_eq!(
            p.keystore,
            Path::new("/etc/kafka/tls/client_tls.keystore.hop.pem")
        );
        let props = location_properties("CLIENT_TLS", &p);
        assert_eq!(
            props[1],
            (
                "listener.name.client_tls.ssl.keystore.location".to_owned(),
                "/etc/kafka/tls/client_tls.keystore.hop.pem".to_owned()
            )
        );
        assert_ne!(
            store_paths(Path::new("/x"), "A", Pair::Static),
            store_paths(Path::new("/x"), "A", Pair::Hop)
        );
    }
}
