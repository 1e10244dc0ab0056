//! A real Kubernetes control plane without nodes: etcd, kube-apiserver and (by
//! default) kube-controller-manager for garbage collection, namespace deletion, Deployments and
//! default ServiceAccounts. All bind 127.0.0.1 on free ports; certificates and a
//! static admin token are minted per control plane.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use base64::Engine as _;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{
    Api, Client,
    config::{KubeConfigOptions, Kubeconfig},
};

use crate::{Error, ManagedProcess, WorkDir, http, net::free_port, provisioned, wait_for};

/// How long a component may take to become ready on a loaded 2-core machine.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A running etcd + kube-apiserver (+ kube-controller-manager).
#[derive(Debug)]
pub struct ControlPlane {
    // Field order is drop order: controllers, then the API server, then etcd, then
    // the work dir they write into.
    controller_manager: Option<ManagedProcess>,
    apiserver: ManagedProcess,
    etcd: ManagedProcess,
    server: String,
    kubeconfig: PathBuf,
    work: WorkDir,
}

/// Options for [`ControlPlane::start_with`].
#[derive(Debug, Clone)]
pub struct ControlPlaneOptions {
    /// Run kube-controller-manager (garbage collection, namespaces, ServiceAccounts).
    pub controller_manager: bool,
}

impl Default for ControlPlaneOptions {
    fn default() -> Self {
        Self {
            controller_manager: true,
        }
    }
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and kube-controller-manager and waits until the API
    /// is ready.
    pub async fn start() -> Result<Self, Error> {
        Self::start_with(ControlPlaneOptions::default()).await
    }

    /// Starts the control plane with `options`.
    pub async fn start_with(options: ControlPlaneOptions) -> Result<Self, Error> {
        let etcd_bin = provisioned("etcd", "bin/etcd")?;
        let apiserver_bin = provisioned("kube-apiserver", "bin/kube-apiserver")?;
        let kcm_bin = if options.controller_manager {
            Some(provisioned(
                "kube-controller-manager",
                "bin/kube-controller-manager",
            )?)
        } else {
            None
        };
        let work = WorkDir::new("control-plane")?;
        let pki = Pki::mint(&work)?;

        let etcd_port = free_port()?;
        let peer_port = free_port()?;
        let mut etcd_cmd = Command::new(&etcd_bin);
        etcd_cmd
            .arg("--name=stoker")
            .arg(format!("--data-dir={}", work.path().join("etcd").display()))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{etcd_port}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
            ))
            .arg(format!(
                "--initial-cluster=stoker=http://127.0.0.1:{peer_port}"
            ))
            .arg("--unsafe-no-fsync")
            .arg("--log-level=warn");
        let mut etcd = ManagedProcess::spawn("etcd", etcd_cmd, &work.path().join("etcd.log"))?;
        let etcd_addr = ([127, 0, 0, 1], etcd_port).into();
        wait_for("etcd", READY_TIMEOUT, Duration::from_millis(100), || {
            let running = etcd.ensure_running();
            async move {
                running?;
                Ok(match http::get(etcd_addr, "/readyz").await {
                    Ok(r) if r.status == 200 => Ok(()),
                    Ok(r) => Err(format!("/readyz answered {}: {}", r.status, r.body)),
                    Err(e) => Err(format!("/readyz: {e}")),
                })
            }
        })
        .await?;

        let api_port = free_port()?;
        let server = format!("https://127.0.0.1:{api_port}");
        let mut api_cmd = Command::new(&apiserver_bin);
        api_cmd
            .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_port}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={api_port}"))
            .arg(format!(
                "--cert-dir={}",
                work.path().join("apiserver-certs").display()
            ))
            .arg(format!("--tls-cert-file={}", pki.serving_cert.display()))
            .arg(format!(
                "--tls-private-key-file={}",
                pki.serving_key.display()
            ))
            .arg(format!("--client-ca-file={}", pki.ca_cert.display()))
            .arg(format!("--token-auth-file={}", pki.tokens.display()))
            .arg("--authorization-mode=RBAC")
            .arg(format!("--service-account-issuer={server}"))
            .arg(format!(
                "--service-account-key-file={}",
                pki.sa_pub.display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                pki.sa_key.display()
            ))
            .arg("--service-cluster-ip-range=10.96.0.0/16")
            // No token controller mounts ServiceAccount tokens into Pods here; the
            // admission plugin would reject every Pod for want of one.
            .arg("--disable-admission-plugins=ServiceAccount")
            .arg("--allow-privileged=true")
            .arg("--enable-priority-and-fairness=false")
            .arg("--profiling=false")
            .arg("--endpoint-reconciler-type=none");
        let apiserver = ManagedProcess::spawn(
            "kube-apiserver",
            api_cmd,
            &work.path().join("kube-apiserver.log"),
        )?;

        let kubeconfig = work.write("kubeconfig", pki.kubeconfig(&server))?;
        let mut plane = Self {
            controller_manager: None,
            apiserver,
            etcd,
            server,
            kubeconfig,
            work,
        };
        plane.wait_api_ready().await?;

        if let Some(kcm_bin) = kcm_bin {
            let kcm_port = free_port()?;
            let mut kcm_cmd = Command::new(kcm_bin);
            kcm_cmd
                .arg(format!("--kubeconfig={}", plane.kubeconfig.display()))
                .arg("--leader-elect=false")
                .arg("--controllers=garbage-collector-controller,namespace-controller,serviceaccount-controller,deployment-controller,replicaset-controller,statefulset-controller")
                .arg(format!("--service-account-private-key-file={}", pki.sa_key.display()))
                .arg(format!("--root-ca-file={}", pki.ca_cert.display()))
                .arg("--use-service-account-credentials=false")
                .arg("--bind-address=127.0.0.1")
                .arg(format!("--secure-port={kcm_port}"))
                .arg(format!("--cert-dir={}", plane.work.path().join("kcm-certs").display()));
            plane.controller_manager = Some(ManagedProcess::spawn(
                "kube-controller-manager",
                kcm_cmd,
                &plane.work.path().join("kube-controller-manager.log"),
            )?);
            plane.wait_controllers_ready().await?;
        }
        Ok(plane)
    }

    /// A new client of the API server, authenticated as a cluster admin.
    pub async fn client(&self) -> Result<Client, Error> {
        client_from_kubeconfig(&self.kubeconfig).await
    }

    /// The kubeconfig file (admin token, CA data); usable with `kubectl --kubeconfig`.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The CA certificate that signed the API server's serving certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.work.path().join("pki/ca.crt")
    }

    /// The control plane's work dir (logs, certificates, etcd data).
    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// Installs every CustomResourceDefinition of a multi-document YAML stream with
    /// server-side apply and waits until each is established.
    pub async fn apply_crds(&self, yaml: &str) -> Result<(), Error> {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        use kube::{
            ResourceExt,
            api::{Patch, PatchParams},
            runtime::{conditions, wait::await_condition},
        };
        use serde::Deserialize as _;
        let crds: Api<CustomResourceDefinition> = Api::all(self.client().await?);
        for doc in serde_yaml::Deserializer::from_str(yaml) {
            let crd = CustomResourceDefinition::deserialize(doc)
                .map_err(|e| Error::Other(format!("parse a CRD: {e}")))?;
            let name = crd.name_any();
            crds.patch(
                &name,
                &PatchParams::apply("stoker-testenv").force(),
                &Patch::Apply(&crd),
            )
            .await
            .map_err(|e| Error::Other(format!("install CRD {name}: {e}")))?;
            tokio::time::timeout(
                READY_TIMEOUT,
                await_condition(crds.clone(), &name, conditions::is_crd_established()),
            )
            .await
            .map_err(|_| Error::Other(format!("CRD {name} was not established in time")))?
            .map_err(|e| Error::Other(format!("watch CRD {name}: {e}")))?;
        }
        Ok(())
    }

    /// Creates a namespace.
    pub async fn create_namespace(&self, name: &str) -> Result<(), Error> {
        use k8s_openapi::api::core::v1::Namespace;
        use kube::api::{ObjectMeta, PostParams};
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(self.client().await?)
            .create(&PostParams::default(), &ns)
            .await
            .map_err(|e| Error::Other(format!("create namespace {name}: {e}")))?;
        Ok(())
    }

    /// Fails with the log of the first component that has exited.
    pub fn ensure_running(&mut self) -> Result<(), Error> {
        self.etcd.ensure_running()?;
        self.apiserver.ensure_running()?;
        if let Some(kcm) = self.controller_manager.as_mut() {
            kcm.ensure_running()?;
        }
        Ok(())
    }

    /// Stops the API server with SIGTERM and starts it again on the same port and
    /// etcd, as an API server upgrade would.
    pub async fn restart_apiserver(&mut self) -> Result<(), Error> {
        self.apiserver.terminate(Duration::from_secs(20));
        self.apiserver.restart()?;
        self.wait_api_ready().await
    }

    async fn wait_api_ready(&mut self) -> Result<(), Error> {
        let client = self.client().await?;
        let apiserver = &mut self.apiserver;
        wait_for(
            "kube-apiserver",
            READY_TIMEOUT,
            Duration::from_millis(250),
            || {
                let running = apiserver.ensure_running();
                let client = client.clone();
                async move {
                    running?;
                    let req = http_types::Request::get("/readyz")
                        .body(Vec::new())
                        .map_err(|e| Error::Other(format!("build /readyz request: {e}")))?;
                    Ok(match client.request_text(req).await {
                        Ok(body) if body.trim() == "ok" => Ok(()),
                        Ok(body) => Err(format!("/readyz: {body}")),
                        Err(e) => Err(format!("/readyz: {e}")),
                    })
                }
            },
        )
        .await
    }

    async fn wait_controllers_ready(&mut self) -> Result<(), Error> {
        let client = self.client().await?;
        let Some(kcm) = self.controller_manager.as_mut() else {
            return Ok(());
        };
        // The ServiceAccount controller creates `default` in every namespace; seeing it
        // proves the controller manager is connected and running its controllers.
        let sas: Api<ServiceAccount> = Api::namespaced(client, "default");
        wait_for(
            "kube-controller-manager",
            READY_TIMEOUT,
            Duration::from_millis(250),
            || {
                let running = kcm.ensure_running();
                let sas = sas.clone();
                async move {
                    running?;
                    Ok(match sas.get_opt("default").await {
                        Ok(Some(_)) => Ok(()),
                        Ok(None) => Err("ServiceAccount default/default not created yet".into()),
                        Err(e) => Err(format!("get ServiceAccount default/default: {e}")),
                    })
                }
            },
        )
        .await
    }
}

/// A client from a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Result<Client, Error> {
    let wrap = |source: Box<dyn std::error::Error + Send + Sync>| Error::KubeClient {
        path: path.to_owned(),
        source,
    };
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| wrap(Box::new(e)))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| wrap(Box::new(e)))?;
    Client::try_from(config).map_err(|e| wrap(Box::new(e)))
}

/// Certificates, keys and the token file of one control plane.
struct Pki {
    ca_pem: String,
    ca_cert: PathBuf,
    serving_cert: PathBuf,
    serving_key: PathBuf,
    sa_key: PathBuf,
    sa_pub: PathBuf,
    tokens: PathBuf,
    admin_token: String,
}

impl Pki {
    fn mint(work: &WorkDir) -> Result<Self, Error> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let cert_err = |what| move |source| Error::Certificate { what, source };

        let ca_key = KeyPair::generate().map_err(cert_err("CA key"))?;
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).map_err(cert_err("CA params"))?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "stoker-test-ca");
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .map_err(cert_err("CA certificate"))?;
        let issuer = Issuer::new(ca_params, ca_key);

        let serving_key = KeyPair::generate().map_err(cert_err("serving key"))?;
        let mut serving_params = CertificateParams::new(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
            "kubernetes.default.svc".to_owned(),
        ])
        .map_err(cert_err("serving params"))?;
        serving_params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        let serving_cert = serving_params
            .signed_by(&serving_key, &issuer)
            .map_err(cert_err("serving certificate"))?;

        let sa_key = KeyPair::generate().map_err(cert_err("service-account key"))?;
        let admin_token = random_hex(16)?;

        let ca_pem = ca_cert.pem();
        Ok(Self {
            ca_cert: work.write("pki/ca.crt", &ca_pem)?,
            serving_cert: work.write("pki/apiserver.crt", serving_cert.pem())?,
            serving_key: work.write("pki/apiserver.key", serving_key.serialize_pem())?,
            sa_key: work.write("pki/sa.key", sa_key.serialize_pem())?,
            sa_pub: work.write("pki/sa.pub", sa_key.public_key_pem())?,
            tokens: work.write(
                "pki/tokens.csv",
                format!("{admin_token},stoker-admin,uid-stoker-admin,\"system:masters\"\n"),
            )?,
            ca_pem,
            admin_token,
        })
    }

    fn kubeconfig(&self, server: &str) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: stoker-test\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: stoker-admin\n  user:\n    token: {token}\ncontexts:\n- name: stoker-test\n  context:\n    cluster: stoker-test\n    user: stoker-admin\n    namespace: default\ncurrent-context: stoker-test\n",
            token = self.admin_token
        )
    }
}

/// `bytes` random bytes from the kernel, hex-encoded.
pub fn random_hex(bytes: usize) -> Result<String, Error> {
    let raw = random_bytes(bytes)?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

/// `n` random bytes from `/dev/urandom`.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let mut buf = vec![0; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|source| Error::Io {
            what: "read /dev/urandom".into(),
            source,
        })?;
    Ok(buf)
}
