//! A local Pod runtime: the kubelet of one registered Node, running each container
//! of the Pods bound to it as local processes. Test and demo harness, not product.
//!
//! - **Scheduling**: Pods without a `nodeName` are bound to this Node (affinity and
//!   resources are not considered: there is one node).
//! - **Images** map to local installs ([`spec::map_image`]): `*/kafka:*` → the test
//!   environment's Kafka folder at `/opt/kafka`, `*/stoker-agent:*` → the built agent.
//!   Any other image leaves its container waiting with reason `ErrImagePull`.
//! - **Each container** runs in its own mount namespace (`unshare --mount`) in which
//!   every volume is bind-mounted at its `mountPath`, and so is a hosts file under
//!   `/etc/hosts`; with the command, args, env (downward API included) and working
//!   directory of its spec. emptyDir → a directory per Pod; PVC → a directory per claim
//!   that outlives the Pod; ConfigMap, Secret and downward-API volumes → files
//!   refreshed every two seconds.
//! - **Volume expansion**: a bound claim whose `storage` request grows past its capacity
//!   gets that capacity at once (a directory has no size; the resize is online), as a
//!   storage driver and kubelet would report it.
//! - **Each Pod** gets its own loopback address 127.x.y.z as `podIP`; Service and Pod
//!   DNS names go into the hosts file ([`PodRuntime::hosts_path`], also usable by
//!   clients outside the Pods, see [`PodRuntime::resolve`]).
//! - **NodePort and LoadBalancer Services** are served as kube-proxy and a cloud's
//!   load-balancer controller would (see [`service_proxy`]): node ports on the Node's
//!   address 127.0.0.1, each load balancer on a loopback address of its own, written
//!   to its status.
//! - **Lifecycle**: native sidecars (init containers with `restartPolicy: Always`)
//!   start first, each waiting for its startup probe, and stop last; startup, readiness
//!   and liveness probes (HTTP and exec); restarts per `restartPolicy` with back-off;
//!   Pod status (phase, `podIP`, conditions, container statuses with restart counts);
//!   deletion with the grace period: preStop hook, SIGTERM, wait, SIGKILL, then the Pod
//!   object is removed.
//!
//! Needs root (mount namespaces and bind mounts); it fails loudly otherwise.

pub mod spec;

mod pod;
mod probe;
pub mod service_proxy;

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::{
    api::core::v1::{Binding, Node, ObjectReference, PersistentVolumeClaim, Pod, Service},
    apimachinery::pkg::api::resource::Quantity,
};
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use tokio::{sync::mpsc, task::JoinHandle};
use tracing::{info, warn};

use crate::{Error, WorkDir};
pub use spec::ImageMap;

/// The Node this runtime registers and serves by default.
pub const DEFAULT_NODE_NAME: &str = "stoker-local-node";

/// What a runtime needs.
#[derive(Debug, Clone)]
pub struct PodRuntimeOptions {
    /// The Node's name.
    pub node_name: String,
    /// Where images' programs are.
    pub images: ImageMap,
    /// The kube-apiserver's address (`host:port`), given to containers as
    /// `KUBERNETES_SERVICE_HOST`/`_PORT`.
    pub api_server: Option<(String, u16)>,
    /// The CA of the API server's certificate, written as every container's
    /// `/var/run/secrets/kubernetes.io/serviceaccount/ca.crt`.
    pub api_ca: Option<PathBuf>,
    /// Extra Node labels (e.g. a zone, for rack awareness).
    pub node_labels: BTreeMap<String, String>,
}

/// State shared by the Pod supervisors.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Running Pods and their addresses (for DNS names).
    pods: BTreeMap<String, (Pod, Ipv4Addr)>,
    /// Services (for DNS names).
    services: BTreeMap<String, Service>,
    /// Main process of every running container, by `namespace/pod/container`.
    pids: BTreeMap<String, u32>,
    /// No new load balancer gets an address (a cloud that cannot provide one).
    hold_load_balancers: bool,
}

/// A running local Pod runtime; dropping it kills every container.
#[derive(Debug)]
pub struct PodRuntime {
    node_name: String,
    hosts: PathBuf,
    shared: Arc<Mutex<Shared>>,
    tasks: Vec<JoinHandle<()>>,
    // Dropped last: Pods' volumes and logs live here.
    work: WorkDir,
}

impl Drop for PodRuntime {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        // Every container dies now, not when its supervisor next runs, so nothing
        // writes into the work dir while it is removed.
        let pids: Vec<u32> = self
            .shared
            .lock()
            .map(|s| s.pids.values().copied().collect())
            .unwrap_or_default();
        for pid in pids.into_iter().filter_map(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// What a Pod supervisor is told.
#[derive(Debug)]
pub(crate) enum PodEvent {
    /// The Pod object changed (deletion requested when its `deletionTimestamp` is set).
    Changed(Box<Pod>),
    /// The Pod object is gone (force-deleted): stop everything now.
    Gone,
}

fn uid_of(p: &Pod) -> String {
    p.uid().unwrap_or_default()
}

impl PodRuntime {
    /// Registers the Node and starts serving it.
    pub async fn start(client: Client, options: PodRuntimeOptions) -> Result<Self, Error> {
        if !nix::unistd::geteuid().is_root() {
            return Err(Error::Other(
                "the local Pod runtime needs root: containers run in their own mount namespaces with bind-mounted volumes".into(),
            ));
        }
        for tool in ["unshare", "mount", "nsenter"] {
            if which(tool).is_none() {
                return Err(Error::Other(format!(
                    "the local Pod runtime needs `{tool}` (util-linux) on PATH"
                )));
            }
        }
        let work = WorkDir::new("pod-runtime")?;
        let hosts = work.write("hosts", spec::hosts_file(&BTreeMap::new()))?;
        register_node(&client, &options).await?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let ctx = Arc::new(pod::Context {
            client: client.clone(),
            options: options.clone(),
            root: work.path().to_owned(),
            hosts: hosts.clone(),
            shared: shared.clone(),
        });
        let proxy = Arc::new(Mutex::new(service_proxy::ServiceProxy::default()));
        let tasks = vec![
            tokio::spawn(heartbeat(client.clone(), options.node_name.clone())),
            tokio::spawn(watch_services(ctx.clone(), proxy)),
            tokio::spawn(watch_claims(client.clone())),
            tokio::spawn(watch_pods(ctx)),
        ];
        info!(node = %options.node_name, root = %work.path().display(), "Local Pod runtime started");
        Ok(Self {
            node_name: options.node_name,
            hosts,
            shared,
            tasks,
            work,
        })
    }

    /// The Node's name.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// The hosts file every container sees as `/etc/hosts`.
    pub fn hosts_path(&self) -> &Path {
        &self.hosts
    }

    /// The runtime's directory (Pod volumes, claims, container logs).
    pub fn root(&self) -> &Path {
        self.work.path()
    }

    /// The address a Service or Pod DNS name resolves to here, if any.
    pub fn resolve(&self, host: &str) -> Option<Ipv4Addr> {
        let shared = self.shared.lock().expect("runtime state lock");
        let pods: Vec<(Pod, Ipv4Addr)> = shared.pods.values().cloned().collect();
        let services: Vec<Service> = shared.services.values().cloned().collect();
        spec::dns_names(&pods, &services).get(host).copied()
    }

    /// From now on, a `LoadBalancer` Service without an address gets none (as in a
    /// cloud out of load balancers), until released.
    pub fn hold_load_balancers(&self, hold: bool) {
        self.shared
            .lock()
            .expect("runtime state lock")
            .hold_load_balancers = hold;
    }

    /// The main process of a running container.
    pub fn container_pid(&self, namespace: &str, pod: &str, container: &str) -> Option<u32> {
        self.shared
            .lock()
            .expect("runtime state lock")
            .pids
            .get(&format!("{namespace}/{pod}/{container}"))
            .copied()
    }

    /// A command that runs `program` on this machine but sees the runtime's hosts file
    /// as `/etc/hosts` (its own mount namespace), so Service and Pod names resolve: how
    /// a client "inside the cluster" is run (e.g. Kafka's verifiable producer).
    pub fn client_command(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        let mut cmd = std::process::Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
            .arg(format!(
                "mount --bind '{}' /etc/hosts && exec \"$@\"",
                self.hosts.display()
            ))
            .arg("sh")
            .arg(program);
        cmd
    }

    /// The log file of one container of one Pod.
    pub fn container_log(&self, namespace: &str, pod: &str, container: &str) -> PathBuf {
        pod::log_path(self.work.path(), namespace, pod, container)
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Rewrites the hosts file in place (containers bind-mount its inode, so it is never
/// replaced by a rename).
pub(crate) fn write_hosts(ctx: &pod::Context) {
    let text = {
        let shared = ctx.shared.lock().expect("runtime state lock");
        let pods: Vec<(Pod, Ipv4Addr)> = shared.pods.values().cloned().collect();
        let services: Vec<Service> = shared.services.values().cloned().collect();
        spec::hosts_file(&spec::dns_names(&pods, &services))
    };
    if let Err(e) = std::fs::write(&ctx.hosts, text) {
        warn!(error = %e, "Failed to write the hosts file");
    }
}

fn node_status(name: &str) -> serde_json::Value {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    serde_json::json!({"status": {
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "the local Pod runtime is serving this node",
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        }],
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": name},
        ],
        "capacity": {"cpu": "2", "memory": "24Gi", "pods": "110"},
        "allocatable": {"cpu": "2", "memory": "24Gi", "pods": "110"},
        "nodeInfo": {
            "architecture": std::env::consts::ARCH, "bootID": "", "containerRuntimeVersion": "stoker-local://1",
            "kernelVersion": "", "kubeProxyVersion": "", "kubeletVersion": "v1.34.0-stoker-local",
            "machineID": "", "operatingSystem": "linux", "osImage": "local processes", "systemUUID": "",
        },
    }})
}

async fn register_node(client: &Client, options: &PodRuntimeOptions) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut labels = BTreeMap::from([
        (
            "kubernetes.io/hostname".to_owned(),
            options.node_name.clone(),
        ),
        ("kubernetes.io/os".to_owned(), "linux".to_owned()),
        (
            "kubernetes.io/arch".to_owned(),
            std::env::consts::ARCH.to_owned(),
        ),
    ]);
    labels.extend(options.node_labels.clone());
    let node = serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": options.node_name, "labels": labels},
    });
    nodes
        .patch(
            &options.node_name,
            &PatchParams::apply("stoker-local-kubelet").force(),
            &Patch::Apply(&node),
        )
        .await
        .map_err(|e| {
            Error::Other(format!(
                "failed to register Node {}: {e}",
                options.node_name
            ))
        })?;
    nodes
        .patch_status(
            &options.node_name,
            &PatchParams::default(),
            &Patch::Merge(&node_status(&options.node_name)),
        )
        .await
        .map_err(|e| {
            Error::Other(format!(
                "failed to report Node {} Ready: {e}",
                options.node_name
            ))
        })?;
    Ok(())
}

async fn heartbeat(client: Client, name: String) {
    let nodes: Api<Node> = Api::all(client);
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        if let Err(e) = nodes
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&node_status(&name)),
            )
            .await
        {
            warn!(error = %e, "Node heartbeat failed");
        }
    }
}

async fn watch_services(ctx: Arc<pod::Context>, proxy: Arc<Mutex<service_proxy::ServiceProxy>>) {
    let api: Api<Service> = Api::all(ctx.client.clone());
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = stream.next().await {
        let changed = match ev {
            Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => {
                let key = format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any());
                ctx.shared
                    .lock()
                    .expect("runtime state lock")
                    .services
                    .insert(key, s);
                true
            }
            Ok(watcher::Event::Delete(s)) => {
                let key = format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any());
                ctx.shared
                    .lock()
                    .expect("runtime state lock")
                    .services
                    .remove(&key);
                true
            }
            Ok(_) => false,
            Err(e) => {
                warn!(error = %e, "Service watch failed");
                false
            }
        };
        if changed {
            write_hosts(&ctx);
            service_proxy::sync(&ctx, &proxy).await;
        }
    }
}

/// Grows the capacity of bound claims whose request grew (see the module's docs).
async fn watch_claims(client: Client) {
    let api: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(ev) = stream.next().await {
        let claim = match ev {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "PersistentVolumeClaim watch failed");
                continue;
            }
        };
        let status = claim.status.clone().unwrap_or_default();
        if status.phase.as_deref() != Some("Bound") {
            continue;
        }
        let size = |q: Option<&Quantity>| q.map(|q| q.0.clone());
        let requested = size(
            claim
                .spec
                .as_ref()
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage")),
        );
        let capacity = size(status.capacity.as_ref().and_then(|c| c.get("storage")));
        let (Some(requested), Some(capacity)) = (requested, capacity) else {
            continue;
        };
        if requested == capacity {
            continue;
        }
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(client.clone(), &claim.namespace().unwrap_or_default());
        let patch = serde_json::json!({"status": {"capacity": {"storage": requested}}});
        match api
            .patch_status(
                &claim.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {
                info!(claim = %claim.name_any(), from = %capacity, to = %requested, "Claim resized")
            }
            Err(e) => warn!(claim = %claim.name_any(), error = %e, "Failed to resize the claim"),
        }
    }
}

async fn bind(client: &Client, pod: &Pod, node: &str) -> Result<(), kube::Error> {
    let ns = pod.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let binding = Binding {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(pod.name_any()),
            namespace: Some(ns),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_owned()),
            ..Default::default()
        },
    };
    api.create_subresource::<Binding, serde_json::Value>(
        "binding",
        &pod.name_any(),
        &PostParams::default(),
        &binding,
    )
    .await?;
    Ok(())
}

async fn watch_pods(ctx: Arc<pod::Context>) {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let node = ctx.options.node_name.clone();
    let mut supervisors: BTreeMap<String, mpsc::UnboundedSender<PodEvent>> = BTreeMap::new();
    while let Some(ev) = stream.next().await {
        let (pod, deleted) = match ev {
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => (p, false),
            Ok(watcher::Event::Delete(p)) => (p, true),
            Ok(_) => continue,
            Err(e) => {
                warn!(error = %e, "Pod watch failed");
                continue;
            }
        };
        let uid = uid_of(&pod);
        supervisors.retain(|_, tx| !tx.is_closed());
        if deleted {
            if let Some(tx) = supervisors.remove(&uid) {
                let _ = tx.send(PodEvent::Gone);
            }
            continue;
        }
        let spec = pod.spec.clone().unwrap_or_default();
        match spec.node_name.as_deref() {
            None | Some("") => {
                let ours = spec
                    .scheduler_name
                    .as_deref()
                    .is_none_or(|s| s == "default-scheduler");
                if ours && pod.metadata.deletion_timestamp.is_none() {
                    if let Err(e) = bind(&ctx.client, &pod, &node).await {
                        warn!(pod = %pod.name_any(), error = %e, "Binding failed");
                    } else {
                        info!(pod = %pod.name_any(), node = %node, "Bound");
                    }
                }
            }
            Some(n) if n == node => {
                if let Some(tx) = supervisors.get(&uid) {
                    let _ = tx.send(PodEvent::Changed(Box::new(pod)));
                } else if pod.metadata.deletion_timestamp.is_none()
                    && !matches!(
                        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                        Some("Succeeded" | "Failed")
                    )
                {
                    let (tx, rx) = mpsc::unbounded_channel();
                    supervisors.insert(uid, tx);
                    tokio::spawn(pod::supervise(ctx.clone(), pod, rx));
                } else if pod.metadata.deletion_timestamp.is_some() {
                    // Nothing of it runs here (e.g. a runtime restarted): finish the deletion.
                    let api: Api<Pod> =
                        Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
                    let _ = api
                        .delete(
                            &pod.name_any(),
                            &kube::api::DeleteParams::default().grace_period(0),
                        )
                        .await;
                }
            }
            Some(_) => {}
        }
    }
}
