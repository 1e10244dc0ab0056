//! What a TLS listener serves, seen as a client sees it.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
};

use crate::Error;

/// The certificate (DER) the TLS server at `addr` serves a new connection, verified
/// for `server_name` (a DNS name or an IP address) against the CAs in `ca_pem`.
pub async fn served_certificate(
    addr: SocketAddr,
    server_name: &str,
    ca_pem: &[u8],
) -> Result<Vec<u8>, Error> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        Error::Other(format!("TLS to {addr} as {server_name}: {what}: {e}"))
    };
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem) {
        let ca = ca.map_err(|e| fail("read the CA", &e))?;
        roots.add(ca).map_err(|e| fail("trust the CA", &e))?;
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| fail("protocol versions", &e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_owned()).map_err(|e| fail("name", &e))?;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| fail("connect", &e))?;
    let tls = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .map_err(|_| fail("handshake", &"timed out after 10 s"))?
    .map_err(|e| fail("handshake", &e))?;
    let (_, session) = tls.get_ref();
    session
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .ok_or_else(|| fail("handshake", &"no certificate served"))
}

/// The first certificate (DER) in `pem`.
pub fn first_certificate(pem: &[u8]) -> Result<Vec<u8>, Error> {
    CertificateDer::pem_slice_iter(pem)
        .next()
        .ok_or_else(|| Error::Other("no PEM certificate".into()))?
        .map(|c| c.to_vec())
        .map_err(|e| Error::Other(format!("PEM certificate: {e}")))
}
