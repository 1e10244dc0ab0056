//! The gRPC server's mutual TLS: the agent serves with its broker's certificate,
//! accepts only clients whose certificate its cluster's agent CA signed, and takes a
//! command only from the one naming the coordinator
//! ([`stoker_proto::agent_tls::COORDINATOR_NAME`]). The files are read again every
//! few seconds and a changed set serves the next connection: rotation needs no
//! restart. Until a good set is read, every connection is refused (fail closed).

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
    server::{ParsedCertificate, WebPkiClientVerifier},
};
use sha2::{Digest, Sha256};
use stoker_proto::agent_tls::{CA_FILE, CERT_FILE, COORDINATOR_NAME, KEY_FILE};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Status};
use tracing::{debug, info, warn};

/// How often the certificate files are read again.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);
/// How long a client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the TLS files could not serve.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("failed to read the agent's TLS file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file does not hold what it should.
    #[error("failed to load the agent's TLS {what} from {path}: {detail}")]
    Pem {
        /// What was being read.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        detail: String,
    },
}

/// The three files, read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Files {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Vec<u8>,
}

impl Files {
    fn read(dir: &Path) -> Result<Self, TlsError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| TlsError::Read { path, source })
        };
        Ok(Self {
            cert: read(CERT_FILE)?,
            key: read(KEY_FILE)?,
            ca: read(CA_FILE)?,
        })
    }

    fn digest(&self) -> Vec<u8> {
        let mut h = Sha256::new();
        for part in [&self.cert, &self.key, &self.ca] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize().to_vec()
    }
}

/// A rustls server config from PEM files in `dir`: this certificate and key, client
/// certificates required and verified against the CA file alone, HTTP/2 (gRPC).
fn server_config(dir: &Path, files: &Files) -> Result<ServerConfig, TlsError> {
    let pem = |what, name: &str, detail: String| TlsError::Pem {
        what,
        path: dir.join(name),
        detail,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&files.cert)
        .collect::<Result<_, _>>()
        .map_err(|e| pem("certificate", CERT_FILE, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem("certificate", CERT_FILE, "no certificate in it".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&files.key)
        .map_err(|e| pem("key", KEY_FILE, e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&files.ca) {
        let ca = ca.map_err(|e| pem("CA", CA_FILE, e.to_string()))?;
        roots
            .add(ca)
            .map_err(|e| pem("CA", CA_FILE, e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(pem("CA", CA_FILE, "no certificate in it".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| pem("CA", CA_FILE, e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| pem("certificate", CERT_FILE, e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| pem("certificate and key", CERT_FILE, e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The config the next connection is served with, kept current from the files.
#[derive(Debug)]
pub struct Reloading {
    dir: PathBuf,
    current: RwLock<Option<(Vec<u8>, Arc<ServerConfig>)>>,
    last_error: RwLock<Option<String>>,
}

impl Reloading {
    /// Nothing loaded yet from `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            current: RwLock::new(None),
            last_error: RwLock::new(None),
        }
    }

    /// The config to serve with, if a good set of files was read.
    pub fn current(&self) -> Option<Arc<ServerConfig>> {
        self.current
            .read()
            .ok()
            .and_then(|c| c.as_ref().map(|(_, cfg)| cfg.clone()))
    }

    /// Reads the files; a changed, good set replaces the config. A bad set keeps the
    /// one serving (if any) and is logged once per distinct error.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let result = Files::read(&self.dir).and_then(|files| {
            let digest = files.digest();
            let same = self
                .current
                .read()
                .ok()
                .and_then(|c| c.as_ref().map(|(d, _)| *d == digest))
                .unwrap_or(false);
            if same {
                return Ok(false);
            }
            let config = server_config(&self.dir, &files)?;
            if let Ok(mut c) = self.current.write() {
                *c = Some((digest, Arc::new(config)));
            }
            Ok(true)
        });
        let message = result.as_ref().err().map(ToString::to_string);
        if let Ok(mut last) = self.last_error.write() {
            match (&message, last.as_ref()) {
                (Some(m), Some(l)) if m == l => {}
                (Some(m), _) => {
                    warn!(error = %m, "Agent TLS files not usable; gRPC keeps the last good certificate (or refuses every connection)")
                }
                (None, Some(_)) => info!("Agent TLS files usable again"),
                (None, None) => {}
            }
            *last = message;
        }
        result
    }

    /// Reads the files every [`RELOAD_INTERVAL`] until `token` is cancelled.
    pub async fn keep_current(self: Arc<Self>, token: CancellationToken) {
        loop {
            if let Ok(true) = self.reload() {
                info!(dir = %self.dir.display(), "Agent TLS certificate loaded");
            }
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(RELOAD_INTERVAL) => {}
            }
        }
    }
}

/// Accepts TCP connections on `listener` and hands each one that completes the mTLS
/// handshake to `tx`; the rest are logged and closed.
pub async fn accept(
    listener: TcpListener,
    tls: Arc<Reloading>,
    tx: tokio::sync::mpsc::Sender<Result<TlsStream<TcpStream>, std::io::Error>>,
    token: CancellationToken,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            () = token.cancelled() => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "gRPC accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // gRPC's small frames would otherwise wait for delayed ACKs (40 ms a round).
        if let Err(e) = tcp.set_nodelay(true) {
            debug!(%peer, error = %e, "Could not set TCP_NODELAY");
        }
        let Some(config) = tls.current() else {
            warn!(%peer, "gRPC connection refused: no usable agent TLS certificate loaded yet");
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(tcp))
                .await
            {
                Ok(Ok(stream)) => {
                    let _ = tx.send(Ok(stream)).await;
                }
                Ok(Err(e)) => {
                    warn!(%peer, error = %e, "gRPC connection refused in the TLS handshake")
                }
                Err(_) => debug!(%peer, "gRPC TLS handshake timed out"),
            }
        });
    }
}

/// The interceptor on every call: the peer's certificate (already verified against the
/// cluster's agent CA in the handshake) must name the coordinator.
pub fn require_coordinator(req: Request<()>) -> Result<Request<()>, Status> {
    let certs = req.peer_certs().ok_or_else(|| {
        Status::unauthenticated(
            "no client certificate: the agent takes commands only from the coordinator over mTLS",
        )
    })?;
    let leaf = certs.first().ok_or_else(|| {
        Status::unauthenticated(
            "an empty client certificate chain: the coordinator's certificate is required",
        )
    })?;
    let parsed = ParsedCertificate::try_from(leaf)
        .map_err(|e| Status::unauthenticated(format!("unreadable client certificate: {e}")))?;
    let name =
        ServerName::try_from(COORDINATOR_NAME).map_err(|e| Status::internal(e.to_string()))?;
    rustls::client::verify_server_name(&parsed, &name).map_err(|_| {
        Status::permission_denied(format!(
            "the client certificate does not name {COORDINATOR_NAME}: this agent takes commands only from the coordinator"
        ))
    })?;
    Ok(req)
}
