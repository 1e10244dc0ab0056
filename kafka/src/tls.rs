//! TLS for a [`crate::Connection`]: the CA a broker's certificate must chain to, the
//! name it must carry, and (for listeners that require client certificates) the
//! client's own certificate and key, all PEM. Built once per set of files; each
//! connection does its own handshake with it.

use std::sync::Arc;

use tokio_rustls::rustls::{
    self, ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
};

/// Why TLS settings could not be built from the PEM given.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM block could not be read.
    #[error("failed to read the {what} (PEM): {detail}")]
    Pem {
        /// Which part.
        what: &'static str,
        /// The parser's message.
        detail: String,
    },
    /// The name to verify is neither a DNS name nor an IP address.
    #[error("{0:?} is not a host name a certificate can be checked against")]
    Name(String),
    /// rustls refused the material (an unsupported key, a bad CA).
    #[error("failed to set up TLS: {0}")]
    Config(#[from] rustls::Error),
}

fn pem(what: &'static str) -> impl Fn(rustls::pki_types::pem::Error) -> TlsError {
    move |e| TlsError::Pem {
        what,
        detail: e.to_string(),
    }
}

/// How to speak TLS to the brokers of one cluster.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// A client certificate chain and its private key, PEM.
#[derive(Clone, Copy)]
pub struct ClientIdentity<'a> {
    /// The certificate chain, the client's certificate first.
    pub cert: &'a [u8],
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: &'a [u8],
}

impl TlsClient {
    /// Trusts only the CAs in `ca_pem`, expects every broker's certificate to name
    /// `server_name` (whatever address the connection goes to), and presents
    /// `identity` when the listener asks for a client certificate.
    pub fn new(
        ca_pem: &[u8],
        identity: Option<ClientIdentity<'_>>,
        server_name: &str,
    ) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(ca.map_err(pem("CA certificate"))?)?;
        }
        if roots.is_empty() {
            return Err(TlsError::Pem {
                what: "CA certificate",
                detail: "no CERTIFICATE block".into(),
            });
        }
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots);
        let config = match identity {
            Some(id) => {
                let chain = CertificateDer::pem_slice_iter(id.cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(pem("client certificate"))?;
                if chain.is_empty() {
                    return Err(TlsError::Pem {
                        what: "client certificate",
                        detail: "no CERTIFICATE block".into(),
                    });
                }
                let key = PrivateKeyDer::from_pem_slice(id.key).map_err(pem("client key"))?;
                builder.with_client_auth_cert(chain, key)?
            }
            None => builder.with_no_client_auth(),
        };
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| TlsError::Name(server_name.to_owned()))?;
        Ok(Self {
            config: Arc::new(config),
            server_name,
        })
    }

    /// The same settings, checking `server_name` instead (a broker reached by its own
    /// advertised name).
    pub fn for_name(&self, server_name: &str) -> Result<Self, TlsError> {
        Ok(Self {
            config: self.config.clone(),
            server_name: ServerName::try_from(server_name.to_owned())
                .map_err(|_| TlsError::Name(server_name.to_owned()))?,
        })
    }

    pub(crate) fn connector(&self) -> (tokio_rustls::TlsConnector, ServerName<'static>) {
        (
            tokio_rustls::TlsConnector::from(self.config.clone()),
            self.server_name.clone(),
        )
    }
}
