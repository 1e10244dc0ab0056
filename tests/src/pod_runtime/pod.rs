//! One Pod's supervisor: address, volumes, containers in kubelet order, probes,
//! restarts, status, and deletion with the grace period.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::authentication::v1::{TokenRequest, TokenRequestSpec},
    api::core::v1::{
        ConfigMap, Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
        ContainerStateWaiting, ContainerStatus, LifecycleHandler, PersistentVolumeClaim, Pod,
        PodCondition, PodIP, PodStatus, Secret, ServiceAccount,
    },
    apimachinery::pkg::apis::meta::v1::Time,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions},
};
use nix::sys::signal::{Signal, killpg};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{
    PodEvent, PodRuntimeOptions, Shared,
    probe::{self, ProbeState, Target, Verdict},
    spec::{self, EnvSources, Mount},
    write_hosts,
};
use crate::{ManagedProcess, net::free_loopback_addr};

/// What every supervisor shares.
pub(crate) struct Context {
    pub client: Client,
    pub options: PodRuntimeOptions,
    pub root: PathBuf,
    pub hosts: PathBuf,
    pub shared: Arc<Mutex<Shared>>,
}

const TICK: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Where a container's output goes.
pub(crate) fn log_path(root: &Path, namespace: &str, pod: &str, container: &str) -> PathBuf {
    root.join("logs")
        .join(format!("{namespace}_{pod}"))
        .join(format!("{container}.log"))
}

fn now_time() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// One container of the Pod and what happened to it.
struct Run {
    c: Container,
    /// A regular init container (runs to completion).
    init: bool,
    /// A native sidecar (init container with `restartPolicy: Always`).
    sidecar: bool,
    process: Option<ManagedProcess>,
    started_at: Option<(Instant, Time)>,
    restart_count: i32,
    started: bool,
    ready: bool,
    completed: bool,
    waiting: Option<(String, String)>,
    last_exit: Option<(i32, String, Time)>,
    restart_at: Option<Instant>,
    backoff: Duration,
    env: BTreeMap<String, String>,
    startup: ProbeState,
    liveness: ProbeState,
    readiness: ProbeState,
}

impl Run {
    fn new(c: Container, init: bool) -> Self {
        let sidecar = init && c.restart_policy.as_deref() == Some("Always");
        Self {
            c,
            init: init && !sidecar,
            sidecar,
            process: None,
            started_at: None,
            restart_count: 0,
            started: false,
            ready: false,
            completed: false,
            waiting: Some(("ContainerCreating".into(), String::new())),
            last_exit: None,
            restart_at: None,
            backoff: Duration::from_secs(1),
            env: BTreeMap::new(),
            startup: ProbeState::default(),
            liveness: ProbeState::default(),
            readiness: ProbeState::default(),
        }
    }

    fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(ManagedProcess::pid)
    }

    fn running(&mut self) -> bool {
        self.process
            .as_mut()
            .is_some_and(ManagedProcess::is_running)
    }

    fn signal(&self, s: Signal) {
        if let Some(pid) = self.pid().and_then(|p| i32::try_from(p).ok()) {
            let _ = killpg(nix::unistd::Pid::from_raw(pid), s);
        }
    }

    fn status(&self, image_id: &str) -> ContainerStatus {
        let state = if let Some((_, t)) =
            self.started_at.as_ref().filter(|_| self.process.is_some())
        {
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(t.clone()),
                }),
                ..Default::default()
            }
        } else if let Some((code, reason, t)) = self.last_exit.as_ref().filter(|_| self.completed) {
            ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: *code,
                    reason: Some(reason.clone()),
                    finished_at: Some(t.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            }
        } else {
            let (reason, message) = self
                .waiting
                .clone()
                .unwrap_or_else(|| ("ContainerCreating".into(), String::new()));
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason),
                    message: (!message.is_empty()).then_some(message),
                }),
                ..Default::default()
            }
        };
        let last_state = self
            .last_exit
            .as_ref()
            .map(|(code, reason, t)| ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: *code,
                    reason: Some(reason.clone()),
                    finished_at: Some(t.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            });
        ContainerStatus {
            name: self.c.name.clone(),
            image: self.c.image.clone().unwrap_or_default(),
            image_id: image_id.to_owned(),
            container_id: self.pid().map(|p| format!("local://{p}")),
            ready: self.ready,
            started: Some(self.started),
            restart_count: self.restart_count,
            state: Some(state),
            last_state,
            ..Default::default()
        }
    }
}

/// Resolves every volume to a host path, writing ConfigMap, Secret and downward-API
/// files; an unsupported volume is an error naming it.
async fn prepare_volumes(ctx: &Context, pod: &Pod) -> Result<BTreeMap<String, PathBuf>, String> {
    let ns = pod.namespace().unwrap_or_default();
    let uid = pod.uid().unwrap_or_default();
    let mut out = BTreeMap::new();
    for v in pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
    {
        let dir = spec::pod_volume_dir(&ctx.root, &uid, &v.name);
        let path = if v.empty_dir.is_some() {
            dir
        } else if let Some(c) = &v.persistent_volume_claim {
            let d = spec::claim_dir(&ctx.root, &ns, &c.claim_name);
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
            let claim = claims
                .get_opt(&c.claim_name)
                .await
                .map_err(|e| format!("volume {}: reading PVC {}: {e}", v.name, c.claim_name))?
                .ok_or_else(|| {
                    format!(
                        "volume {}: PersistentVolumeClaim {:?} not found",
                        v.name, c.claim_name
                    )
                })?;
            bind_claim(&claims, &claim).await;
            d
        } else if let Some(h) = &v.host_path {
            PathBuf::from(&h.path)
        } else if v.config_map.is_some() || v.secret.is_some() || v.downward_api.is_some() {
            dir
        } else {
            return Err(format!(
                "volume {}: this volume type is not supported by the local Pod runtime (emptyDir, persistentVolumeClaim, hostPath, configMap, secret and downwardAPI are)",
                v.name
            ));
        };
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("volume {}: {}: {e}", v.name, path.display()))?;
        out.insert(v.name.clone(), path);
    }
    refresh_files(ctx, pod).await?;
    let automount = pod
        .spec
        .as_ref()
        .and_then(|s| s.automount_service_account_token)
        != Some(false);
    if automount && ctx.options.api_server.is_some() {
        let dir = spec::pod_volume_dir(&ctx.root, &uid, SERVICE_ACCOUNT_VOLUME);
        write_service_account(ctx, pod, &dir).await?;
        out.insert(SERVICE_ACCOUNT_VOLUME.to_owned(), dir);
    }
    Ok(out)
}

/// The volume every container gets its ServiceAccount's credentials from (what the
/// ServiceAccount admission plugin and the kubelet provide in a cluster).
const SERVICE_ACCOUNT_VOLUME: &str = "kube-api-access";
/// Where in-cluster clients look for them.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Writes `token` (a TokenRequest for the Pod's ServiceAccount), `ca.crt` and
/// `namespace`.
async fn write_service_account(ctx: &Context, pod: &Pod, dir: &Path) -> Result<(), String> {
    let ns = pod.namespace().unwrap_or_default();
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let accounts: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &ns);
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(24 * 3600),
            bound_object_ref: None,
        },
        ..TokenRequest::default()
    };
    let token: TokenRequest = accounts
        .create_subresource("token", &sa, &PostParams::default(), &req)
        .await
        .map_err(|e| format!("ServiceAccount {ns}/{sa}: requesting a token: {e}"))?;
    let token = token.status.map(|s| s.token).unwrap_or_default();
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    write_if_changed(&dir.join("token"), token.as_bytes()).map_err(|e| e.to_string())?;
    write_if_changed(&dir.join("namespace"), ns.as_bytes()).map_err(|e| e.to_string())?;
    if let Some(ca) = &ctx.options.api_ca {
        let bytes = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        write_if_changed(&dir.join("ca.crt"), &bytes).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A claim is "bound" as soon as a Pod here uses it (its directory is its volume).
async fn bind_claim(claims: &Api<PersistentVolumeClaim>, claim: &PersistentVolumeClaim) {
    if claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound") {
        return;
    }
    let spec = claim.spec.clone().unwrap_or_default();
    let status = serde_json::json!({"status": {
        "phase": "Bound",
        "accessModes": spec.access_modes,
        "capacity": spec.resources.and_then(|r| r.requests),
    }});
    if let Err(e) = claims
        .patch_status(
            &claim.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
    {
        warn!(claim = %claim.name_any(), error = %e, "Failed to mark the claim Bound");
    }
}

fn write_if_changed(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if std::fs::read(path).ok().as_deref() == Some(bytes) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // Rename inside the bind-mounted directory: readers see the old or the new file.
    let tmp = path.with_extension("stoker-tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Writes (again) the files of the Pod's ConfigMap, Secret and downward-API volumes.
async fn refresh_files(ctx: &Context, pod: &Pod) -> Result<(), String> {
    let ns = pod.namespace().unwrap_or_default();
    let uid = pod.uid().unwrap_or_default();
    for v in pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
    {
        let dir = spec::pod_volume_dir(&ctx.root, &uid, &v.name);
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        if let Some(src) = &v.config_map {
            let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
            match cms.get_opt(&src.name).await.map_err(|e| e.to_string())? {
                Some(cm) => {
                    let data = cm.data.unwrap_or_default();
                    match &src.items {
                        Some(items) => {
                            for i in items {
                                if let Some(v) = data.get(&i.key) {
                                    files.push((i.path.clone(), v.clone().into_bytes()));
                                }
                            }
                        }
                        None => files.extend(data.into_iter().map(|(k, v)| (k, v.into_bytes()))),
                    }
                }
                None if src.optional == Some(true) => {}
                None => {
                    return Err(format!(
                        "volume {}: ConfigMap {:?} not found",
                        v.name, src.name
                    ));
                }
            }
        }
        if let Some(src) = &v.secret {
            let name = src.secret_name.clone().unwrap_or_default();
            let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
            match secrets.get_opt(&name).await.map_err(|e| e.to_string())? {
                Some(s) => {
                    let data = s.data.unwrap_or_default();
                    match &src.items {
                        Some(items) => {
                            for i in items {
                                if let Some(v) = data.get(&i.key) {
                                    files.push((i.path.clone(), v.0.clone()));
                                }
                            }
                        }
                        None => files.extend(data.into_iter().map(|(k, v)| (k, v.0))),
                    }
                }
                None if src.optional == Some(true) => {}
                None => return Err(format!("volume {}: Secret {name:?} not found", v.name)),
            }
        }
        if let Some(src) = &v.downward_api {
            for i in src.items.iter().flatten() {
                let Some(f) = &i.field_ref else {
                    return Err(format!(
                        "volume {}: resourceFieldRef is not supported by the local Pod runtime",
                        v.name
                    ));
                };
                files.push((
                    i.path.clone(),
                    spec::field_value(pod, &f.field_path)?.into_bytes(),
                ));
            }
        }
        for (rel, bytes) in files {
            if rel.contains("..") {
                return Err(format!("volume {}: path {rel:?} leaves the volume", v.name));
            }
            write_if_changed(&dir.join(&rel), &bytes)
                .map_err(|e| format!("volume {}: writing {rel}: {e}", v.name))?;
        }
    }
    Ok(())
}

/// The ConfigMaps and Secrets a container's environment names.
async fn env_sources(ctx: &Context, ns: &str, c: &Container) -> EnvSources {
    let mut out = EnvSources::default();
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let mut cm_names: Vec<String> = Vec::new();
    let mut secret_names: Vec<String> = Vec::new();
    for f in c.env_from.iter().flatten() {
        cm_names.extend(f.config_map_ref.as_ref().map(|r| r.name.clone()));
        secret_names.extend(f.secret_ref.as_ref().map(|r| r.name.clone()));
    }
    for e in c.env.iter().flatten() {
        if let Some(from) = &e.value_from {
            cm_names.extend(from.config_map_key_ref.as_ref().map(|r| r.name.clone()));
            secret_names.extend(from.secret_key_ref.as_ref().map(|r| r.name.clone()));
        }
    }
    for n in cm_names {
        if let Ok(Some(cm)) = cms.get_opt(&n).await {
            out.config_maps.insert(n, cm);
        }
    }
    for n in secret_names {
        if let Ok(Some(s)) = secrets.get_opt(&n).await {
            out.secrets.insert(n, s);
        }
    }
    out
}

/// The image's files, its mounts and the container's argv and environment, or the
/// waiting reason and message that say why the container cannot start.
async fn prepare_container(
    ctx: &Context,
    pod: &Pod,
    volumes: &BTreeMap<String, PathBuf>,
    c: &Container,
) -> Result<(Vec<String>, BTreeMap<String, String>, Vec<Mount>), (String, String)> {
    let image = c.image.clone().unwrap_or_default();
    let mapped =
        spec::map_image(&image, &ctx.options.images).map_err(|m| ("ErrImagePull".to_owned(), m))?;
    let config_err = |m: String| ("CreateContainerConfigError".to_owned(), m);
    spec::check_handlers(c).map_err(config_err)?;
    let ns = pod.namespace().unwrap_or_default();
    let mut env =
        spec::container_env(c, pod, &env_sources(ctx, &ns, c).await).map_err(config_err)?;
    if let Some((host, port)) = &ctx.options.api_server {
        env.entry("KUBERNETES_SERVICE_HOST".into())
            .or_insert_with(|| host.clone());
        env.entry("KUBERNETES_SERVICE_PORT".into())
            .or_insert_with(|| port.to_string());
    }
    let argv = spec::container_argv(c, &mapped, &env).map_err(config_err)?;
    let mut mounts = Vec::new();
    for (src, target) in &mapped.mounts {
        if src.is_dir() {
            mounts.push(Mount {
                source: src.clone(),
                target: target.clone(),
                read_only: true,
            });
        } else {
            // A single program: its directory is mounted (never an empty file made on the host).
            let dir = ctx.root.join("images").join(spec::sanitize(&image));
            let name = Path::new(target)
                .file_name()
                .map(|n| n.to_owned())
                .unwrap_or_default();
            std::fs::create_dir_all(&dir).map_err(|e| config_err(format!("image dir: {e}")))?;
            let link = dir.join(&name);
            if !link.exists() {
                std::os::unix::fs::symlink(src, &link)
                    .map_err(|e| config_err(format!("image link: {e}")))?;
            }
            mounts.push(Mount {
                source: dir,
                target: Path::new(target)
                    .parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                read_only: true,
            });
        }
    }
    for vm in c.volume_mounts.iter().flatten() {
        let Some(src) = volumes.get(&vm.name) else {
            return Err(config_err(format!(
                "volumeMount {:?}: the Pod has no volume of that name",
                vm.name
            )));
        };
        let src = match vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                let p = src.join(sub);
                std::fs::create_dir_all(&p)
                    .map_err(|e| config_err(format!("subPath {sub}: {e}")))?;
                p
            }
            None => src.clone(),
        };
        mounts.push(Mount {
            source: src,
            target: vm.mount_path.clone(),
            read_only: vm.read_only == Some(true),
        });
    }
    if let Some(dir) = volumes.get(SERVICE_ACCOUNT_VOLUME) {
        mounts.push(Mount {
            source: dir.clone(),
            target: SERVICE_ACCOUNT_DIR.into(),
            read_only: true,
        });
    }
    mounts.push(Mount {
        source: ctx.hosts.clone(),
        target: "/etc/hosts".into(),
        read_only: true,
    });
    Ok((argv, env, mounts))
}

fn spawn(
    ctx: &Context,
    pod: &Pod,
    c: &Container,
    argv: &[String],
    env: &BTreeMap<String, String>,
    mounts: &[Mount],
) -> Result<ManagedProcess, String> {
    let script = spec::mount_script(mounts, c.working_dir.as_deref());
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        &script,
        "sh",
    ])
    .args(argv)
    .env_clear();
    for k in ["PATH", "JAVA_HOME", "LANG", "HOME"] {
        if let Ok(v) = std::env::var(k) {
            cmd.env(k, v);
        }
    }
    cmd.envs(env);
    let ns = pod.namespace().unwrap_or_default();
    let log = log_path(&ctx.root, &ns, &pod.name_any(), &c.name);
    if let Some(parent) = log.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    ManagedProcess::spawn(format!("{ns}/{}/{}", pod.name_any(), c.name), cmd, &log)
        .map_err(|e| e.to_string())
}

/// Runs a lifecycle hook (HTTP GET or exec) to completion or `deadline`.
async fn run_hook(
    c: &Container,
    h: &LifecycleHandler,
    target: &Target,
    deadline: Instant,
) -> Result<(), String> {
    let hook = async {
        if let Some(g) = &h.http_get {
            let p = probe::port(c, &g.port)?;
            return probe::http_get(target.ip, p, g.path.as_deref().unwrap_or("/")).await;
        }
        if let Some(e) = &h.exec {
            return probe::exec(target, e.command.as_deref().unwrap_or_default()).await;
        }
        if let Some(s) = &h.sleep {
            tokio::time::sleep(Duration::from_secs(u64::try_from(s.seconds).unwrap_or(0))).await;
            return Ok(());
        }
        Err("hook type not supported by the local Pod runtime".into())
    };
    tokio::time::timeout_at(deadline.into(), hook)
        .await
        .unwrap_or_else(|_| Err("the hook did not finish within the grace period".into()))
}

struct Supervisor {
    ctx: Arc<Context>,
    pod: Pod,
    ip: Ipv4Addr,
    runs: Vec<Run>,
    volumes: BTreeMap<String, PathBuf>,
    start_time: Time,
    last_status: Option<serde_json::Value>,
}

impl Supervisor {
    fn restart_policy(&self) -> String {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into())
    }

    fn container_key(&self, container: &str) -> String {
        format!(
            "{}/{}/{container}",
            self.pod.namespace().unwrap_or_default(),
            self.pod.name_any()
        )
    }

    fn forget_pid(&self, container: &str) {
        self.ctx
            .shared
            .lock()
            .expect("runtime state lock")
            .pids
            .remove(&self.container_key(container));
    }

    fn target(&self, r: &Run) -> Target {
        Target {
            ip: self.ip,
            pid: r.pid(),
            env: r.env.clone(),
        }
    }

    async fn start(&mut self, i: usize) {
        let c = self.runs[i].c.clone();
        match prepare_container(&self.ctx, &self.pod, &self.volumes, &c).await {
            Err((reason, message)) => {
                let r = &mut self.runs[i];
                if r.waiting.as_ref() != Some(&(reason.clone(), message.clone())) {
                    warn!(pod = %self.pod.name_any(), container = %c.name, %reason, %message, "Container cannot start");
                }
                r.waiting = Some((reason, message));
                r.restart_at = Some(Instant::now() + Duration::from_secs(5));
            }
            Ok((argv, env, mounts)) => {
                match spawn(&self.ctx, &self.pod, &c, &argv, &env, &mounts) {
                    Ok(p) => {
                        info!(pod = %self.pod.name_any(), container = %c.name, pid = p.pid(), "Started container");
                        if let Some(pid) = p.pid() {
                            let key = self.container_key(&c.name);
                            self.ctx
                                .shared
                                .lock()
                                .expect("runtime state lock")
                                .pids
                                .insert(key, pid);
                        }
                        let r = &mut self.runs[i];
                        r.process = Some(p);
                        r.env = env;
                        r.started_at = Some((Instant::now(), now_time()));
                        r.waiting = None;
                        r.restart_at = None;
                        r.started = false;
                        r.ready = false;
                        r.startup.reset();
                        r.liveness.reset();
                        r.readiness.reset();
                    }
                    Err(m) => {
                        let r = &mut self.runs[i];
                        r.waiting = Some(("RunContainerError".into(), m));
                        r.restart_at = Some(Instant::now() + Duration::from_secs(5));
                    }
                }
            }
        }
    }

    /// Kills a container now (SIGTERM, then SIGKILL after `grace`) without waiting here
    /// longer than needed.
    async fn stop(&mut self, i: usize, grace: Duration) {
        self.forget_pid(&self.runs[i].c.name.clone());
        let r = &mut self.runs[i];
        let Some(mut p) = r.process.take() else {
            return;
        };
        let status = tokio::task::spawn_blocking(move || p.terminate(grace))
            .await
            .ok()
            .flatten();
        let code = status.as_ref().and_then(|(s, _)| s.code()).unwrap_or(137);
        r.last_exit = Some((
            code,
            if code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            },
            now_time(),
        ));
        r.started = false;
        r.ready = false;
    }

    fn restart_later(&mut self, i: usize) {
        let r = &mut self.runs[i];
        r.restart_at = Some(Instant::now() + r.backoff);
        r.waiting = Some((
            "CrashLoopBackOff".into(),
            format!(
                "back-off {:?} restarting failed container {}",
                r.backoff, r.c.name
            ),
        ));
        r.backoff = (r.backoff * 2).min(MAX_BACKOFF);
    }

    /// One pass: start what is due, notice exits, run probes.
    async fn step(&mut self) {
        // Init containers in order; main containers once they are all done or started.
        let mut gate_open = true;
        for i in 0..self.runs.len() {
            if !gate_open {
                break;
            }
            let due = self.runs[i].restart_at.is_none_or(|t| Instant::now() >= t);
            let needs_start = self.runs[i].process.is_none() && !self.runs[i].completed;
            if needs_start && due {
                if self.runs[i].last_exit.is_some() && self.runs[i].restart_at.is_some() {
                    self.runs[i].restart_count += 1;
                }
                self.start(i).await;
            }
            if self.runs[i].init && !self.runs[i].completed {
                gate_open = false;
            }
            if self.runs[i].sidecar && !self.runs[i].started {
                gate_open = false;
            }
        }
        let policy = self.restart_policy();
        for i in 0..self.runs.len() {
            if self.runs[i].process.is_none() {
                continue;
            }
            if !self.runs[i].running() {
                let status = self.runs[i]
                    .process
                    .as_mut()
                    .and_then(ManagedProcess::try_wait);
                let code = status.and_then(|s| s.code()).unwrap_or(137);
                self.forget_pid(&self.runs[i].c.name.clone());
                let r = &mut self.runs[i];
                r.process = None;
                r.started = false;
                r.ready = false;
                r.last_exit = Some((
                    code,
                    if code == 0 {
                        "Completed".into()
                    } else {
                        "Error".into()
                    },
                    now_time(),
                ));
                info!(pod = %self.pod.name_any(), container = %r.c.name, code, "Container exited");
                let restart = if r.sidecar {
                    true
                } else if r.init {
                    if code == 0 {
                        r.completed = true;
                        false
                    } else {
                        policy != "Never"
                    }
                } else {
                    policy == "Always" || (policy == "OnFailure" && code != 0)
                };
                if restart {
                    self.restart_later(i);
                } else if !r.init {
                    r.completed = true;
                }
                continue;
            }
            // Probes: startup gates liveness and readiness.
            let c = self.runs[i].c.clone();
            let target = self.target(&self.runs[i]);
            let Some((started_at, _)) = self.runs[i].started_at.clone() else {
                continue;
            };
            let r = &mut self.runs[i];
            if !r.started {
                match &c.startup_probe {
                    None => r.started = true,
                    Some(p) => match r.startup.poll(&c, p, &target, started_at) {
                        Some(Verdict::Passed) => r.started = true,
                        Some(Verdict::Failed(m)) => {
                            warn!(pod = %self.pod.name_any(), container = %c.name, message = %m, "Startup probe failed; restarting");
                            self.stop(i, Duration::from_secs(10)).await;
                            self.restart_later(i);
                            continue;
                        }
                        None => {}
                    },
                }
            }
            let r = &mut self.runs[i];
            if !r.started {
                continue;
            }
            if let Some(p) = &c.liveness_probe
                && let Some(Verdict::Failed(m)) = r.liveness.poll(&c, p, &target, started_at)
            {
                warn!(pod = %self.pod.name_any(), container = %c.name, message = %m, "Liveness probe failed; restarting");
                self.stop(i, Duration::from_secs(10)).await;
                self.restart_later(i);
                continue;
            }
            let r = &mut self.runs[i];
            match &c.readiness_probe {
                None => r.ready = true,
                Some(p) => match r.readiness.poll(&c, p, &target, started_at) {
                    Some(Verdict::Passed) => r.ready = true,
                    Some(Verdict::Failed(_)) => r.ready = false,
                    None => {}
                },
            }
            // A running container that has stayed up resets its back-off.
            if started_at.elapsed() > Duration::from_secs(30) {
                r.backoff = Duration::from_secs(1);
            }
        }
    }

    fn status(&self, terminating: bool) -> serde_json::Value {
        let image_id = |r: &Run| format!("local://{}", r.c.image.clone().unwrap_or_default());
        let init_done = self.runs.iter().filter(|r| r.init).all(|r| r.completed)
            && self.runs.iter().filter(|r| r.sidecar).all(|r| r.started);
        let mains: Vec<&Run> = self.runs.iter().filter(|r| !r.init && !r.sidecar).collect();
        let containers_ready = !terminating
            && mains.iter().all(|r| r.ready)
            && self.runs.iter().filter(|r| r.sidecar).all(|r| r.ready);
        let any_running = mains.iter().any(|r| r.process.is_some());
        let policy = self.restart_policy();
        let phase = if mains.iter().all(|r| r.completed) && policy != "Always" {
            if mains
                .iter()
                .all(|r| r.last_exit.as_ref().is_some_and(|e| e.0 == 0))
            {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if any_running || mains.iter().any(|r| r.last_exit.is_some()) {
            "Running"
        } else {
            "Pending"
        };
        let cond = |t: &str, ok: bool| PodCondition {
            type_: t.into(),
            status: if ok { "True" } else { "False" }.into(),
            ..Default::default()
        };
        let status = PodStatus {
            phase: Some(phase.into()),
            host_ip: Some("127.0.0.1".into()),
            pod_ip: Some(self.ip.to_string()),
            pod_ips: Some(vec![PodIP {
                ip: self.ip.to_string(),
            }]),
            start_time: Some(self.start_time.clone()),
            conditions: Some(vec![
                cond("PodScheduled", true),
                cond("Initialized", init_done),
                cond("ContainersReady", containers_ready),
                cond("Ready", containers_ready),
            ]),
            init_container_statuses: Some(
                self.runs
                    .iter()
                    .filter(|r| r.init || r.sidecar)
                    .map(|r| r.status(&image_id(r)))
                    .collect(),
            ),
            container_statuses: Some(mains.iter().map(|r| r.status(&image_id(r))).collect()),
            ..Default::default()
        };
        serde_json::json!({ "status": status })
    }

    async fn report(&mut self, terminating: bool) {
        let mut status = self.status(terminating);
        if self.last_status.as_ref() == Some(&status) {
            return;
        }
        let api: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            &self.pod.namespace().unwrap_or_default(),
        );
        match api
            .patch_status(
                &self.pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&status),
            )
            .await
        {
            Ok(p) => {
                self.pod.status = p.status;
                self.last_status = Some(status.take());
                self.publish();
            }
            Err(e) => warn!(pod = %self.pod.name_any(), error = %e, "Failed to write Pod status"),
        }
    }

    /// Makes this Pod's address and names known to the hosts file.
    fn publish(&self) {
        let key = self.pod.uid().unwrap_or_default();
        self.ctx
            .shared
            .lock()
            .expect("runtime state lock")
            .pods
            .insert(key, (self.pod.clone(), self.ip));
        write_hosts(&self.ctx);
    }

    fn unpublish(&self) {
        let key = self.pod.uid().unwrap_or_default();
        self.ctx
            .shared
            .lock()
            .expect("runtime state lock")
            .pods
            .remove(&key);
        write_hosts(&self.ctx);
    }

    /// Deletion: preStop hooks and SIGTERM for the main containers, SIGKILL at the end
    /// of the grace period, then the sidecars in reverse order; then the Pod object goes.
    async fn terminate(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        info!(pod = %self.pod.name_any(), ?grace, "Stopping Pod");
        self.report(true).await;
        let mains: Vec<usize> = (0..self.runs.len())
            .filter(|&i| {
                !self.runs[i].init && !self.runs[i].sidecar && self.runs[i].process.is_some()
            })
            .collect();
        let mut hooks = Vec::new();
        for &i in &mains {
            let r = &self.runs[i];
            let c = r.c.clone();
            let target = self.target(r);
            let hook = c.lifecycle.as_ref().and_then(|l| l.pre_stop.clone());
            let name = self.pod.name_any();
            hooks.push(tokio::spawn(async move {
                if let Some(h) = hook {
                    let started = Instant::now();
                    match run_hook(&c, &h, &target, deadline).await {
                        Ok(()) => info!(pod = %name, container = %c.name, took = ?started.elapsed(), "preStop hook finished"),
                        Err(e) => warn!(pod = %name, container = %c.name, error = %e, "preStop hook failed"),
                    }
                }
            }));
        }
        for (h, &i) in hooks.into_iter().zip(&mains) {
            let _ = h.await;
            self.runs[i].signal(Signal::SIGTERM);
        }
        for &i in &mains {
            let left = deadline.saturating_duration_since(Instant::now());
            self.stop(i, left).await;
            self.runs[i].completed = true;
        }
        let sidecars: Vec<usize> = (0..self.runs.len())
            .rev()
            .filter(|&i| self.runs[i].sidecar || self.runs[i].init)
            .collect();
        for i in sidecars {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(2));
            self.stop(i, left).await;
            self.runs[i].completed = true;
        }
        self.unpublish();
        let api: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            &self.pod.namespace().unwrap_or_default(),
        );
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: self.pod.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        if let Err(e) = api.delete(&self.pod.name_any(), &dp).await {
            warn!(pod = %self.pod.name_any(), error = %e, "Failed to remove the Pod object");
        }
        self.cleanup();
        info!(pod = %self.pod.name_any(), "Pod stopped and removed");
    }

    fn kill_all(&mut self) {
        let names: Vec<String> = self.runs.iter().map(|r| r.c.name.clone()).collect();
        for n in names {
            self.forget_pid(&n);
        }
        for r in &mut self.runs {
            if let Some(mut p) = r.process.take() {
                p.kill();
            }
        }
        self.unpublish();
        self.cleanup();
    }

    /// Removes the Pod's own directories; claims stay.
    fn cleanup(&self) {
        let dir = self
            .ctx
            .root
            .join("pods")
            .join(self.pod.uid().unwrap_or_default());
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn grace_of(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    Duration::from_secs(u64::try_from(secs).unwrap_or(30))
}

/// Runs one Pod until it is deleted.
pub(crate) async fn supervise(
    ctx: Arc<Context>,
    pod: Pod,
    mut rx: mpsc::UnboundedReceiver<PodEvent>,
) {
    let spec = pod.spec.clone().unwrap_or_default();
    let ports: Vec<u16> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| u16::try_from(p.container_port).ok())
        .collect();
    // A kubelet retries a sandbox it cannot make. Here that is an address whose ports
    // are free: a process bound to 0.0.0.0 (Cruise Control's web server) holds its
    // port on every address until it has died, and the replacement of a force-deleted
    // Pod can come before that.
    let ip = loop {
        match free_loopback_addr(&ports) {
            Ok(ip) => break ip,
            Err(e) => {
                warn!(pod = %pod.name_any(), error = %e, "No address for the Pod yet; retrying");
                match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
                    Ok(Some(PodEvent::Gone) | None) => return,
                    Ok(Some(PodEvent::Changed(p))) if p.metadata.deletion_timestamp.is_some() => {
                        // Nothing of it ever ran: finish the deletion, as a kubelet would.
                        let api: kube::Api<Pod> = kube::Api::namespaced(
                            ctx.client.clone(),
                            &p.namespace().unwrap_or_default(),
                        );
                        let _ = api
                            .delete(
                                &p.name_any(),
                                &kube::api::DeleteParams::default().grace_period(0),
                            )
                            .await;
                        return;
                    }
                    _ => {}
                }
            }
        }
    };
    let mut pod = pod;
    let st = pod.status.get_or_insert_with(Default::default);
    st.pod_ip = Some(ip.to_string());
    st.host_ip = Some("127.0.0.1".into());
    let mut runs: Vec<Run> = spec
        .init_containers
        .iter()
        .flatten()
        .cloned()
        .map(|c| Run::new(c, true))
        .collect();
    runs.extend(spec.containers.iter().cloned().map(|c| Run::new(c, false)));
    let mut sup = Supervisor {
        ctx: ctx.clone(),
        pod,
        ip,
        runs,
        volumes: BTreeMap::new(),
        start_time: now_time(),
        last_status: None,
    };
    sup.report(false).await;
    loop {
        match prepare_volumes(&ctx, &sup.pod).await {
            Ok(v) => {
                sup.volumes = v;
                break;
            }
            Err(m) => {
                for r in &mut sup.runs {
                    r.waiting = Some(("CreateContainerConfigError".into(), m.clone()));
                }
                sup.report(false).await;
                match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                    Ok(Some(PodEvent::Gone) | None) => return sup.kill_all(),
                    Ok(Some(PodEvent::Changed(p))) if p.metadata.deletion_timestamp.is_some() => {
                        return sup.terminate(Duration::ZERO).await;
                    }
                    _ => {}
                }
            }
        }
    }
    let mut last_refresh = Instant::now();
    loop {
        while let Ok(ev) = rx.try_recv() {
            match ev {
                PodEvent::Gone => return sup.kill_all(),
                PodEvent::Changed(p) => {
                    if p.metadata.deletion_timestamp.is_some() {
                        let grace = grace_of(&p);
                        return sup.terminate(grace).await;
                    }
                    sup.pod.metadata = p.metadata;
                }
            }
        }
        if rx.is_closed() {
            return sup.kill_all();
        }
        sup.step().await;
        sup.report(false).await;
        if last_refresh.elapsed() > Duration::from_secs(2) {
            last_refresh = Instant::now();
            if let Err(e) = refresh_files(&ctx, &sup.pod).await {
                warn!(pod = %sup.pod.name_any(), error = %e, "Volume refresh failed");
            }
        }
        tokio::time::sleep(TICK).await;
    }
}
