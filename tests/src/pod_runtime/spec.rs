//! Pure rules of the local Pod runtime: which local install an image maps to, a
//! container's environment and argv as Kubernetes defines them (downward API fields,
//! `$(VAR)` expansion), the script that bind-mounts its volumes in its own mount
//! namespace, and the hosts file that makes Service and Pod names resolve.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};

/// Where each image's programs are on this machine.
#[derive(Debug, Clone)]
pub struct ImageMap {
    /// The Kafka folder laid out like the `apache/kafka` image's `/opt/kafka`.
    pub kafka_home: PathBuf,
    /// The built `stoker-agent` binary.
    pub agent_bin: PathBuf,
    /// The JMX exporter javaagent jar the agent's image carries.
    pub agent_jmx_exporter_jar: PathBuf,
    /// Cruise Control laid out like an image's `/opt/cruise-control`.
    pub cruise_control_home: PathBuf,
    /// The built `stoker-coordinator` binary, for a runtime that runs the coordinator's
    /// own Deployment (None: its image is refused like any unknown one).
    pub coordinator_bin: Option<PathBuf>,
}

/// Where Kafka lives in the `apache/kafka` image.
pub const KAFKA_HOME_IN_IMAGE: &str = "/opt/kafka";
/// Where Cruise Control lives in its image.
pub const CRUISE_CONTROL_HOME_IN_IMAGE: &str = "/opt/cruise-control";
/// Where the agent's binary lives in its image (`Dockerfile.agent`).
pub const AGENT_BIN_IN_IMAGE: &str = "/usr/local/bin/stoker-agent";
/// Where the coordinator's binary lives in its image (`Dockerfile.coordinator`).
pub const COORDINATOR_BIN_IN_IMAGE: &str = "/usr/local/bin/stoker-coordinator";
/// Where the agent's image carries the JMX exporter javaagent (`Dockerfile.agent`).
pub const AGENT_JMX_JAR_IN_IMAGE: &str = "/usr/share/stoker/jmx_prometheus_javaagent.jar";

/// An image as local files: what to bind-mount into the container, and its entrypoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedImage {
    /// (host path, path in the container).
    pub mounts: Vec<(PathBuf, String)>,
    /// The image's ENTRYPOINT (used when the container sets no `command`).
    pub entrypoint: Vec<String>,
    /// The image's CMD (used when the container sets neither `command` nor `args`).
    pub cmd: Vec<String>,
}

/// The repository of an image reference, without registry host, tag or digest.
fn repository(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last)
}

/// Maps `image` to a local install, or says why it cannot (a kubelet's image-pull
/// failure, in the runtime's words).
pub fn map_image(image: &str, images: &ImageMap) -> Result<MappedImage, String> {
    match repository(image) {
        "kafka" => Ok(MappedImage {
            mounts: vec![(images.kafka_home.clone(), KAFKA_HOME_IN_IMAGE.to_owned())],
            entrypoint: vec![],
            cmd: vec![],
        }),
        "cruise-control" | "kafka-cruise-control" => Ok(MappedImage {
            mounts: vec![(
                images.cruise_control_home.clone(),
                CRUISE_CONTROL_HOME_IN_IMAGE.to_owned(),
            )],
            entrypoint: vec![format!(
                "{CRUISE_CONTROL_HOME_IN_IMAGE}/bin/kafka-cruise-control-start.sh"
            )],
            cmd: vec![],
        }),
        "stoker-agent" => Ok(MappedImage {
            mounts: vec![
                (images.agent_bin.clone(), AGENT_BIN_IN_IMAGE.to_owned()),
                (
                    images.agent_jmx_exporter_jar.clone(),
                    AGENT_JMX_JAR_IN_IMAGE.to_owned(),
                ),
            ],
            entrypoint: vec![AGENT_BIN_IN_IMAGE.to_owned()],
            cmd: vec!["run".to_owned()],
        }),
        "stoker-coordinator" if images.coordinator_bin.is_some() => Ok(MappedImage {
            mounts: images
                .coordinator_bin
                .iter()
                .map(|bin| (bin.clone(), COORDINATOR_BIN_IN_IMAGE.to_owned()))
                .collect(),
            entrypoint: vec![COORDINATOR_BIN_IN_IMAGE.to_owned()],
            cmd: vec!["run".to_owned()],
        }),
        // Debian's haproxy package (scripts/provision/daemons.sh), on PATH as in the image.
        "haproxy" => Ok(MappedImage {
            mounts: vec![],
            entrypoint: vec!["haproxy".to_owned()],
            cmd: vec![
                "-f".to_owned(),
                "/usr/local/etc/haproxy/haproxy.cfg".to_owned(),
            ],
        }),
        _ => Err(format!(
            "image {image:?} has no local install: the local Pod runtime runs */kafka:* (the test environment's Kafka at {KAFKA_HOME_IN_IMAGE}), */cruise-control:* (the provisioned Cruise Control at {CRUISE_CONTROL_HOME_IN_IMAGE}), */stoker-agent:* (the built agent), haproxy:* (the installed HAProxy) and, when given one, */stoker-coordinator:* (the built coordinator)"
        )),
    }
}

/// Kubernetes' `$(VAR)` expansion: a defined variable is replaced, an undefined one
/// is left as written, and `$$` escapes a `$`.
pub fn expand(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// What an environment variable may refer to besides the Pod itself.
#[derive(Debug, Default)]
pub struct EnvSources {
    /// ConfigMaps of the Pod's namespace, by name.
    pub config_maps: BTreeMap<String, ConfigMap>,
    /// Secrets of the Pod's namespace, by name.
    pub secrets: BTreeMap<String, Secret>,
}

/// The value of a downward-API `fieldPath` of `pod`.
pub fn field_value(pod: &Pod, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    let v = match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()),
        _ => keyed("metadata.labels['", meta.labels.as_ref())
            .or_else(|| keyed("metadata.annotations['", meta.annotations.as_ref())),
    };
    v.ok_or_else(|| {
        format!("the downward API field {path:?} is not supported by the local Pod runtime")
    })
}

fn config_map_value(cm: &ConfigMap, key: &str) -> Option<String> {
    cm.data.as_ref()?.get(key).cloned()
}

fn secret_value(s: &Secret, key: &str) -> Option<String> {
    if let Some(v) = s.string_data.as_ref().and_then(|d| d.get(key)) {
        return Some(v.clone());
    }
    String::from_utf8(s.data.as_ref()?.get(key)?.0.clone()).ok()
}

/// The container's environment, in Kubernetes' order (`envFrom`, then `env`, each
/// value expanded against the variables before it).
pub fn container_env(
    c: &Container,
    pod: &Pod,
    sources: &EnvSources,
) -> Result<BTreeMap<String, String>, String> {
    let mut env = BTreeMap::new();
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            let cm = sources.config_maps.get(&r.name);
            match cm {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        env.insert(format!("{prefix}{k}"), v.clone());
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(format!("ConfigMap {:?} (envFrom) not found", r.name)),
            }
        }
        if let Some(r) = &from.secret_ref {
            match sources.secrets.get(&r.name) {
                Some(s) => {
                    for k in s.data.iter().flatten().map(|(k, _)| k) {
                        if let Some(v) = secret_value(s, k) {
                            env.insert(format!("{prefix}{k}"), v);
                        }
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(format!("Secret {:?} (envFrom) not found", r.name)),
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            expand(v, &env)
        } else if let Some(from) = &e.value_from {
            if let Some(f) = &from.field_ref {
                field_value(pod, &f.field_path)?
            } else if let Some(r) = &from.config_map_key_ref {
                match sources
                    .config_maps
                    .get(&r.name)
                    .and_then(|cm| config_map_value(cm, &r.key))
                {
                    Some(v) => v,
                    None if r.optional == Some(true) => continue,
                    None => {
                        return Err(format!(
                            "env {}: key {:?} of ConfigMap {:?} not found",
                            e.name, r.key, r.name
                        ));
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                match sources
                    .secrets
                    .get(&r.name)
                    .and_then(|s| secret_value(s, &r.key))
                {
                    Some(v) => v,
                    None if r.optional == Some(true) => continue,
                    None => {
                        return Err(format!(
                            "env {}: key {:?} of Secret {:?} not found",
                            e.name, r.key, r.name
                        ));
                    }
                }
            } else {
                return Err(format!(
                    "env {}: resourceFieldRef is not supported by the local Pod runtime",
                    e.name
                ));
            }
        } else {
            String::new()
        };
        env.insert(e.name.clone(), value);
    }
    Ok(env)
}

/// The argv Kubernetes runs: `command` replaces the image's entrypoint and `args` its
/// cmd, both `$(VAR)`-expanded.
pub fn container_argv(
    c: &Container,
    image: &MappedImage,
    env: &BTreeMap<String, String>,
) -> Result<Vec<String>, String> {
    let command = c
        .command
        .clone()
        .unwrap_or_else(|| image.entrypoint.clone());
    let args = match (&c.command, &c.args) {
        (_, Some(a)) => a.clone(),
        (Some(_), None) => vec![],
        (None, None) => image.cmd.clone(),
    };
    let argv: Vec<String> = command
        .iter()
        .chain(args.iter())
        .map(|a| expand(a, env))
        .collect();
    if argv.is_empty() {
        return Err(format!(
            "container {:?} has no command and its image no entrypoint",
            c.name
        ));
    }
    Ok(argv)
}

/// Refuses probes and hooks the runtime cannot run, naming them (a kubelet would run
/// them; silently never running one would hide a broken Pod).
pub fn check_handlers(c: &Container) -> Result<(), String> {
    let probes = [
        ("startupProbe", &c.startup_probe),
        ("readinessProbe", &c.readiness_probe),
        ("livenessProbe", &c.liveness_probe),
    ];
    for (what, p) in probes {
        if let Some(p) = p
            && p.http_get.is_none()
            && p.tcp_socket.is_none()
            && p.exec.is_none()
        {
            return Err(format!(
                "container {}: {what} uses a probe type the local Pod runtime does not support (it runs httpGet, tcpSocket and exec)",
                c.name
            ));
        }
    }
    if let Some(l) = &c.lifecycle {
        if l.post_start.is_some() {
            return Err(format!(
                "container {}: postStart hooks are not run by the local Pod runtime",
                c.name
            ));
        }
        if let Some(h) = &l.pre_stop
            && h.http_get.is_none()
            && h.exec.is_none()
            && h.sleep.is_none()
        {
            return Err(format!(
                "container {}: the preStop hook uses a handler the local Pod runtime does not support (it runs httpGet, exec and sleep)",
                c.name
            ));
        }
    }
    Ok(())
}

/// One bind mount of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The host file or directory.
    pub source: PathBuf,
    /// Where it appears in the container.
    pub target: String,
    /// Read-only.
    pub read_only: bool,
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The shell script run inside the container's fresh mount namespace (`unshare
/// --mount`): bind every mount at its target (creating the mount point), remount the
/// read-only ones, change to the working directory and exec the container's argv
/// (passed as the script's arguments).
pub fn mount_script(mounts: &[Mount], working_dir: Option<&str>) -> String {
    let mut s = String::from("set -e\n");
    for m in mounts {
        let src = quote(&m.source.display().to_string());
        let dst = quote(&m.target);
        if m.source.is_dir() {
            s.push_str(&format!("mkdir -p {dst}\n"));
        } else {
            s.push_str(&format!(
                "[ -e {dst} ] || {{ mkdir -p \"$(dirname {dst})\"; : > {dst}; }}\n"
            ));
        }
        s.push_str(&format!("mount --bind {src} {dst}\n"));
        if m.read_only {
            s.push_str(&format!("mount -o remount,bind,ro {dst}\n"));
        }
    }
    if let Some(w) = working_dir {
        s.push_str(&format!("mkdir -p {q}\ncd {q}\n", q = quote(w)));
    }
    s.push_str("exec \"$@\"\n");
    s
}

/// Which Pods a Service's selector picks (none for a Service without a selector).
pub(crate) fn selected<'a>(svc: &Service, pods: &'a [(Pod, Ipv4Addr)]) -> Vec<&'a (Pod, Ipv4Addr)> {
    let Some(sel) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return vec![];
    };
    if sel.is_empty() {
        return vec![];
    }
    pods.iter()
        .filter(|(p, _)| p.metadata.namespace == svc.metadata.namespace)
        .filter(|(p, _)| {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            sel.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .collect()
}

/// The names cluster DNS would answer, for the Pods running here: each Service's
/// names resolve to the first Pod (by name) it selects, and a Pod with `hostname` and
/// `subdomain` gets its own name under the subdomain.
pub fn dns_names(pods: &[(Pod, Ipv4Addr)], services: &[Service]) -> BTreeMap<String, Ipv4Addr> {
    let mut out = BTreeMap::new();
    let names = |base: String| {
        [
            format!("{base}.svc.cluster.local"),
            format!("{base}.svc"),
            base,
        ]
    };
    for svc in services {
        let (Some(name), Some(ns)) = (&svc.metadata.name, &svc.metadata.namespace) else {
            continue;
        };
        let mut picked = selected(svc, pods);
        picked.sort_by(|a, b| a.0.metadata.name.cmp(&b.0.metadata.name));
        if let Some((_, ip)) = picked.first() {
            for n in names(format!("{name}.{ns}")) {
                out.insert(n, *ip);
            }
        }
    }
    for (p, ip) in pods {
        let spec = p.spec.as_ref();
        if let (Some(h), Some(sub), Some(ns)) = (
            spec.and_then(|s| s.hostname.as_ref()),
            spec.and_then(|s| s.subdomain.as_ref()),
            &p.metadata.namespace,
        ) {
            for n in names(format!("{h}.{sub}.{ns}")) {
                out.insert(n, *ip);
            }
        }
    }
    out
}

/// `/etc/hosts` for the containers (and clients) of this runtime.
pub fn hosts_file(names: &BTreeMap<String, Ipv4Addr>) -> String {
    let mut s = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (name, ip) in names {
        s.push_str(&format!("{ip}\t{name}\n"));
    }
    s
}

/// `s` as a file name: every character other than `[A-Za-z0-9._-]` becomes `-`.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The directory of one volume of one Pod under the runtime's root.
pub fn pod_volume_dir(root: &Path, pod_uid: &str, volume: &str) -> PathBuf {
    root.join("pods").join(pod_uid).join("volumes").join(volume)
}

/// The directory of a PersistentVolumeClaim: it outlives every Pod that mounts it.
pub fn claim_dir(root: &Path, namespace: &str, claim: &str) -> PathBuf {
    root.join("claims").join(namespace).join(claim)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec, PodStatus, ServiceSpec,
    };

    fn images() -> ImageMap {
        ImageMap {
            kafka_home: "/cache/kafka".into(),
            agent_bin: "/target/stoker-agent".into(),
            agent_jmx_exporter_jar: "/cache/kafka/agents/jmx_prometheus_javaagent.jar".into(),
            cruise_control_home: "/cache/cruise-control".into(),
            coordinator_bin: None,
        }
    }

    #[test]
    fn images_map_by_repository_and_anything_else_is_refused() {
        let k = map_image("apache/kafka:4.1.1", &images()).expect("kafka");
        assert_eq!(
            k.mounts,
            vec![(PathBuf::from("/cache/kafka"), "/opt/kafka".to_owned())]
        );
        let a =
            map_image("ghcr.io/stoker/stoker-agent:0.1.0@sha256:abc", &images()).expect("agent");
        assert_eq!(a.entrypoint, vec![AGENT_BIN_IN_IMAGE.to_owned()]);
        let e = map_image("nginx:1.27", &images()).expect_err("nginx");
        assert!(e.contains("\"nginx:1.27\" has no local install"), "{e}");
        // The coordinator's image only where its binary is given.
        let image = "ghcr.io/stoker-operator/stoker-coordinator:0.1.0";
        map_image(image, &images()).expect_err("no coordinator binary given");
        let with = ImageMap {
            coordinator_bin: Some("/target/stoker-coordinator".into()),
            ..images()
        };
        let c = map_image(image, &with).expect("coordinator");
        assert_eq!(c.entrypoint, vec![COORDINATOR_BIN_IN_IMAGE.to_owned()]);
        assert_eq!(c.cmd, vec!["run".to_owned()]);
    }

    #[test]
    fn expansion_follows_kubernetes() {
        let env = BTreeMap::from([("POD_IP".to_owned(), "127.1.0.2".to_owned())]);
        assert_eq!(expand("$(POD_IP):8080", &env), "127.1.0.2:8080");
        assert_eq!(
            expand("$(MISSING)-$$(POD_IP)-$x", &env),
            "$(MISSING)-$(POD_IP)-$x"
        );
    }

    #[test]
    fn env_resolves_downward_fields_then_expands_later_values() {
        let field = |name: &str, path: &str| EnvVar {
            name: name.into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: path.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = Container {
            name: "agent".into(),
            env: Some(vec![
                field("POD_IP", "status.podIP"),
                field("NODE", "spec.nodeName"),
                EnvVar {
                    name: "ADDR".into(),
                    value: Some("$(POD_IP):8080".into()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let pod = Pod {
            spec: Some(PodSpec {
                node_name: Some("local".into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                pod_ip: Some("127.1.0.2".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let env = container_env(&c, &pod, &EnvSources::default()).expect("env");
        assert_eq!(env["ADDR"], "127.1.0.2:8080");
        assert_eq!(env["NODE"], "local");
        let bad = Container {
            env: Some(vec![field("X", "status.phase")]),
            ..c
        };
        assert!(
            container_env(&bad, &pod, &EnvSources::default())
                .expect_err("unsupported")
                .contains("status.phase")
        );
    }

    #[test]
    fn argv_uses_command_else_entrypoint_and_args_else_cmd() {
        let agent = map_image("stoker-agent:dev", &images()).expect("agent");
        let env = BTreeMap::new();
        let c = Container::default();
        assert_eq!(
            container_argv(&c, &agent, &env).expect("argv"),
            [AGENT_BIN_IN_IMAGE, "run"]
        );
        let c = Container {
            args: Some(vec!["render".into()]),
            ..Default::default()
        };
        assert_eq!(
            container_argv(&c, &agent, &env).expect("argv"),
            [AGENT_BIN_IN_IMAGE, "render"]
        );
        let kafka = map_image("apache/kafka:4", &images()).expect("kafka");
        assert!(container_argv(&Container::default(), &kafka, &env).is_err());
    }

    #[test]
    fn the_mount_script_binds_remounts_read_only_and_execs() {
        let s = mount_script(
            &[Mount {
                source: "/tmp".into(),
                target: "/etc/stoker/desired".into(),
                read_only: true,
            }],
            Some("/opt/kafka"),
        );
        assert!(s.contains("mkdir -p '/etc/stoker/desired'\nmount --bind '/tmp' '/etc/stoker/desired'\nmount -o remount,bind,ro '/etc/stoker/desired'\n"), "{s}");
        assert!(s.ends_with("cd '/opt/kafka'\nexec \"$@\"\n"), "{s}");
    }

    #[test]
    fn services_resolve_to_the_pods_they_select_and_pods_to_their_subdomain_names() {
        let pod = |name: &str, broker: &str| Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                labels: Some(BTreeMap::from([("brokerId".to_owned(), broker.to_owned())])),
                ..Default::default()
            },
            spec: Some(PodSpec {
                hostname: Some(name.into()),
                subdomain: Some("kafka-headless".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let svc = |name: &str, sel: &[(&str, &str)]| Service {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(
                    sel.iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pods = vec![
            (pod("kafka-1", "1"), Ipv4Addr::new(127, 1, 0, 1)),
            (pod("kafka-2", "2"), Ipv4Addr::new(127, 1, 0, 2)),
        ];
        let names = dns_names(
            &pods,
            &[
                svc("kafka-2", &[("brokerId", "2")]),
                svc("kafka-all-broker", &[]),
            ],
        );
        assert_eq!(
            names["kafka-2.ns.svc.cluster.local"],
            Ipv4Addr::new(127, 1, 0, 2)
        );
        assert_eq!(
            names["kafka-1.kafka-headless.ns.svc.cluster.local"],
            Ipv4Addr::new(127, 1, 0, 1)
        );
        assert!(!names.contains_key("kafka-all-broker.ns.svc.cluster.local"));
        assert!(hosts_file(&names).contains("127.1.0.2\tkafka-2.ns.svc\n"));
    }
}
