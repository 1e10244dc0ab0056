//! The webhook's serving certificate, pure: issuing a CA and a leaf for the webhook's
//! names, the rule that says when to renew, and a rustls resolver whose certificate
//! can be swapped while it serves (rotation needs no restart).

use std::sync::{Arc, RwLock};

use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use stoker_proto::pki;
use time::{Duration, OffsetDateTime};

/// The webhook CA's common name (fixed, so the stored CA key alone re-signs).
const CA_NAME: &str = "stoker-webhook-ca";

/// How long the CA the coordinator issues is valid.
pub const CA_VALIDITY: Duration = Duration::days(3650);
/// How long a serving certificate is valid.
pub const LEAF_VALIDITY: Duration = Duration::days(365);
/// A serving certificate is renewed this long before it expires.
pub const RENEW_BEFORE: Duration = Duration::days(30);

/// Why certificate material could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The webhook's CA or serving certificate could not be issued.
    #[error("failed to issue the webhook's certificate")]
    Issue(#[from] pki::IssueError),
    /// PEM that does not hold what it should.
    #[error("failed to read the webhook's {what} PEM: {detail}")]
    Pem {
        /// What was being read.
        what: &'static str,
        /// The cause.
        detail: String,
    },
}

/// A CA and the serving certificate it signed, PEM-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    /// The CA certificate (the webhook configuration's `caBundle`).
    pub ca_cert: String,
    /// The CA's key (kept to re-sign the serving certificate).
    pub ca_key: String,
    /// The serving certificate.
    pub cert: String,
    /// Its key.
    pub key: String,
    /// The names (DNS names or IP addresses) the serving certificate is for.
    pub names: Vec<String>,
    /// When the serving certificate expires (Unix seconds).
    pub not_after: i64,
}

/// What to do with the stored material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// It serves as it is.
    Keep,
    /// Sign a new serving certificate with the stored CA (it expires soon, or the names
    /// changed).
    Leaf(&'static str),
    /// Issue a new CA and serving certificate (none stored, or unreadable).
    All(&'static str),
}

/// The renewal rule: `stored` against the wanted `names` at `now`.
pub fn renewal(stored: Option<&Material>, names: &[String], now: OffsetDateTime) -> Renewal {
    let Some(m) = stored else {
        return Renewal::All("no certificate is stored yet");
    };
    if m.ca_cert.is_empty() || m.ca_key.is_empty() {
        return Renewal::All("the stored CA is incomplete");
    }
    if m.cert.is_empty() || m.key.is_empty() {
        return Renewal::Leaf("the stored serving certificate is incomplete");
    }
    if m.names != names {
        return Renewal::Leaf("the webhook's names changed");
    }
    if m.not_after - now.unix_timestamp() < RENEW_BEFORE.whole_seconds() {
        return Renewal::Leaf("the serving certificate expires within 30 days");
    }
    Renewal::Keep
}

/// A new CA, and a serving certificate for `names` signed by it.
pub fn issue_all(names: &[String], now: OffsetDateTime) -> Result<Material, TlsError> {
    let ca = pki::issue_ca(CA_NAME, now, CA_VALIDITY)?;
    issue_leaf(&ca.cert, &ca.key, names, now)
}

/// A serving certificate for `names`, signed by the CA in `ca_cert`/`ca_key`.
pub fn issue_leaf(
    ca_cert: &str,
    ca_key: &str,
    names: &[String],
    now: OffsetDateTime,
) -> Result<Material, TlsError> {
    let ca = pki::Ca {
        common_name: CA_NAME.to_owned(),
        cert: ca_cert.to_owned(),
        key: ca_key.to_owned(),
    };
    let leaf = pki::issue_leaf(&ca, names, pki::Usage::Server, now, LEAF_VALIDITY)?;
    Ok(Material {
        ca_cert: ca.cert,
        ca_key: ca.key,
        cert: leaf.cert,
        key: leaf.key,
        names: names.to_vec(),
        not_after: leaf.not_after,
    })
}

/// A certificate chain and key, ready to serve.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, TlsError> {
    let pem = |what, e: rustls::pki_types::pem::Error| TlsError::Pem {
        what,
        detail: e.to_string(),
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem("certificate", e))?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            what: "certificate",
            detail: "no CERTIFICATE block".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| pem("key", e))?;
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| TlsError::Pem {
            what: "key",
            detail: e.to_string(),
        })?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

/// Serves the current certificate; [`SwappableCert::set`] replaces it for the next
/// handshakes while connections already open go on.
#[derive(Debug)]
pub struct SwappableCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl SwappableCert {
    /// Starts with `key`.
    pub fn new(key: Arc<CertifiedKey>) -> Self {
        Self {
            current: RwLock::new(key),
        }
    }

    /// Serves `key` from the next handshake on.
    pub fn set(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = key;
    }

    /// The certificate being served.
    pub fn get(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for SwappableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["stoker-webhook.stoker.svc".into(), "127.0.0.1".into()]
    }

    #[test]
    fn issued_material_serves_and_is_kept_until_it_nears_expiry() {
        let now = OffsetDateTime::now_utc();
        let m = issue_all(&names(), now).expect("issued");
        certified_key(m.cert.as_bytes(), m.key.as_bytes()).expect("serves");
        assert_eq!(renewal(Some(&m), &names(), now), Renewal::Keep);
        assert!(matches!(
            renewal(Some(&m), &names(), now + LEAF_VALIDITY - Duration::days(29)),
            Renewal::Leaf(_)
        ));
        assert!(matches!(
            renewal(Some(&m), &names()[..1], now),
            Renewal::Leaf(why) if why.contains("names")
        ));
        assert!(matches!(renewal(None, &names(), now), Renewal::All(_)));

        // Renewed with the same CA: the caBundle the API server holds stays valid.
        let renewed = issue_leaf(&m.ca_cert, &m.ca_key, &names(), now).expect("renewed");
        assert_eq!(renewed.ca_cert, m.ca_cert);
        assert_ne!(renewed.cert, m.cert);
    }

    #[test]
    fn unreadable_pem_says_what_it_was() {
        let err = certified_key(b"not pem", b"not pem").expect_err("refused");
        assert!(err.to_string().contains("certificate"), "{err}");
    }
}
