//! The agents' mTLS material for tests: a cluster's agent CA kept in a folder, each
//! agent's certificate written as the coordinator's Secret would hold it, and gRPC
//! channels made as the coordinator makes them — or as someone else would, for the
//! tests that show such a caller refused.

use std::path::{Path, PathBuf};

use stoker_proto::{
    agent::v1::agent_client::AgentClient,
    agent_tls::{
        CA_FILE, CA_KEY_FILE, CERT_FILE, COORDINATOR_NAME, KEY_FILE, agent_name, ca_common_name,
    },
    pki::{self, Ca, Usage},
};
use time::{Duration, OffsetDateTime};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::Error;

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let what = format!("{what} {}", path.display());
    move |e| Error::Other(format!("failed to {what}: {e}"))
}

fn issue(e: pki::IssueError) -> Error {
    Error::Other(e.to_string())
}

/// Cluster `cluster`'s agent CA, kept in `dir` (made on first use, read after).
pub fn ca_in(dir: &Path, cluster: &str, namespace: &str) -> Result<Ca, Error> {
    let common_name = ca_common_name(cluster, namespace);
    let (cert, key) = (dir.join(CA_FILE), dir.join(CA_KEY_FILE));
    if cert.exists() && key.exists() {
        return Ok(Ca {
            common_name,
            cert: std::fs::read_to_string(&cert).map_err(io("read", &cert))?,
            key: std::fs::read_to_string(&key).map_err(io("read", &key))?,
        });
    }
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let ca = pki::issue_ca(&common_name, OffsetDateTime::now_utc(), Duration::days(30))
        .map_err(issue)?;
    std::fs::write(&cert, &ca.cert).map_err(io("write", &cert))?;
    std::fs::write(&key, &ca.key).map_err(io("write", &key))?;
    Ok(ca)
}

/// Writes broker `id`'s agent certificate (for `name`, valid for `validity` from
/// `now`) into `dir` as the agent reads it: `tls.crt`, `tls.key`, `ca.crt`. Written to
/// a side folder and renamed in, as the kubelet updates a Secret volume.
pub fn write_agent_files(
    ca: &Ca,
    dir: &Path,
    name: &str,
    now: OffsetDateTime,
    validity: Duration,
) -> Result<(), Error> {
    let leaf =
        pki::issue_leaf(ca, &[name.to_owned()], Usage::Server, now, validity).map_err(issue)?;
    let side = dir.with_extension("next");
    std::fs::create_dir_all(&side).map_err(io("create", &side))?;
    for (file, text) in [
        (CERT_FILE, &leaf.cert),
        (KEY_FILE, &leaf.key),
        (CA_FILE, &ca.cert),
    ] {
        let path = side.join(file);
        std::fs::write(&path, text).map_err(io("write", &path))?;
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io("remove", dir))?;
    }
    std::fs::rename(&side, dir).map_err(io("rename into", dir))
}

/// Who calls an agent, for [`client`].
#[derive(Debug, Clone)]
pub struct Caller {
    /// The CA the caller trusts for the agent's certificate.
    pub trusts: String,
    /// The client certificate and key it presents, if any.
    pub identity: Option<(String, String)>,
    /// The name it expects in the agent's certificate.
    pub expects: String,
}

impl Caller {
    /// The coordinator of `ca`'s cluster calling broker `id` of `cluster`.
    pub fn coordinator(ca: &Ca, cluster: &str, namespace: &str, id: i32) -> Result<Self, Error> {
        let leaf = pki::issue_leaf(
            ca,
            &[COORDINATOR_NAME.to_owned()],
            Usage::Client,
            OffsetDateTime::now_utc(),
            Duration::days(1),
        )
        .map_err(issue)?;
        Ok(Self {
            trusts: ca.cert.clone(),
            identity: Some((leaf.cert, leaf.key)),
            expects: agent_name(cluster, namespace, id),
        })
    }
}

/// A gRPC client of the agent at `addr`, connected now as `caller`.
pub async fn client(
    addr: std::net::SocketAddr,
    caller: &Caller,
) -> Result<AgentClient<Channel>, Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&caller.trusts))
        .domain_name(caller.expects.clone());
    if let Some((cert, key)) = &caller.identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .map_err(|e| Error::Other(e.to_string()))?
        .tls_config(tls)
        .map_err(|e| Error::Other(format!("TLS config: {e}")))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| Error::Other(format!("connect to agent {addr}: {}", chain(&e))))?;
    Ok(AgentClient::new(channel))
}

/// An error and its causes, one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A folder path for broker `id`'s agent files under `root`.
pub fn agent_dir(root: &Path, id: i32) -> PathBuf {
    root.join(format!("agent-{id}-tls"))
}

/// The CA Secret the coordinator keeps for `cluster` (`<cluster>-agent-ca`), holding
/// `ca`: made by a test before the coordinator runs, so the coordinator uses the CA the
/// test's agents were given (it never replaces a CA it finds).
pub fn ca_secret(ca: &Ca, cluster: &str, namespace: &str) -> k8s_openapi::api::core::v1::Secret {
    use k8s_openapi::ByteString;
    let mut s = k8s_openapi::api::core::v1::Secret::default();
    s.metadata.name = Some(format!("{cluster}-agent-ca"));
    s.metadata.namespace = Some(namespace.to_owned());
    s.metadata.labels = Some(
        [
            ("kafka_cr", cluster),
            ("app.kubernetes.io/component", "agent-tls"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    );
    s.data = Some(
        [
            (CA_FILE, ByteString(ca.cert.clone().into_bytes())),
            (CA_KEY_FILE, ByteString(ca.key.clone().into_bytes())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
    );
    s
}
