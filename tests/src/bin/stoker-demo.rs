//! `stoker-demo`: keeps a local Stoker environment running until SIGTERM: a real
//! Kubernetes control plane, the local Pod runtime as its one Node, and the
//! coordinator; then applies `deploy/examples/` (a 3-broker KRaft cluster and two
//! topics) and reports progress until they are Ready. `scripts/demo` starts it in the
//! background and prints how to reach everything; `scripts/demo down` stops it.
//!
//! Usage: stoker-demo STATE_DIR AGENT_BIN COORDINATOR_BIN
//! Reads STATE_DIR/crds.yaml and STATE_DIR/examples/*.yaml; writes STATE_DIR/env
//! (shell variables) once everything is ready.
#![forbid(unsafe_code)]

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams},
};
use stoker_testenv::{
    ControlPlane, ManagedProcess, PodRuntime, PodRuntimeOptions, http,
    net::free_port,
    pod_runtime::{DEFAULT_NODE_NAME, ImageMap},
    provisioned,
};

/// The agent image the coordinator puts in broker Pods (the runtime maps it to the
/// built binary).
const AGENT_IMAGE: &str = "ghcr.io/stoker-operator/stoker-agent:dev";

fn step(what: &str) {
    eprintln!("[stoker-demo] {what}");
}

/// Server-side applies every document of `yaml` (like `kubectl apply --server-side`)
/// and returns (kind, namespace, name) of each.
async fn apply(client: &Client, yaml: &str) -> anyhow::Result<Vec<(ApiResource, String, String)>> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = <serde_json::Value as serde::Deserialize>::deserialize(doc)?;
        if value.is_null() {
            continue;
        }
        let obj: DynamicObject = serde_json::from_value(value)?;
        let types = obj
            .types
            .clone()
            .ok_or_else(|| anyhow::anyhow!("a document has no apiVersion/kind"))?;
        let (group, version) = types
            .api_version
            .split_once('/')
            .unwrap_or(("", &types.api_version));
        let gvk = GroupVersionKind::gvk(group, version, &types.kind);
        let ar =
            ApiResource::from_gvk_with_plural(&gvk, &format!("{}s", types.kind.to_lowercase()));
        let ns = obj
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = obj
            .metadata
            .name
            .clone()
            .ok_or_else(|| anyhow::anyhow!("a {} has no name", types.kind))?;
        Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &ar)
            .patch(
                &name,
                &PatchParams::apply("stoker-demo").force(),
                &Patch::Apply(&obj),
            )
            .await?;
        out.push((ar, ns, name));
    }
    Ok(out)
}

/// The Ready condition's status and message.
fn ready(obj: &DynamicObject) -> (bool, String) {
    let cond = obj.data["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    (
        cond["status"] == "True",
        cond["message"]
            .as_str()
            .unwrap_or("not reconciled yet")
            .to_owned(),
    )
}

async fn wait_ready(
    client: &Client,
    objects: &[(ApiResource, String, String)],
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let mut all = true;
        let mut lines = Vec::new();
        for (ar, ns, name) in objects {
            let obj = Api::<DynamicObject>::namespaced_with(client.clone(), ns, ar)
                .get(name)
                .await?;
            let (ok, message) = ready(&obj);
            all &= ok;
            lines.push(format!(
                "{} {name}: {}",
                ar.kind,
                if ok { "Ready".to_owned() } else { message }
            ));
        }
        let now = lines.join("; ");
        if now != last {
            step(&format!("[{:>4}s] {now}", start.elapsed().as_secs()));
            last = now;
        }
        if all {
            return Ok(());
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(600),
            "the examples did not become Ready in 10 minutes: {last}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn kafka_home() -> anyhow::Result<PathBuf> {
    Ok(provisioned("kafka", "kafka/bin/kafka-server-start.sh")?
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow::anyhow!("the Kafka folder has no parent"))?
        .to_owned())
}

// One thread: every child is spawned from the main thread, which lives as long as the
// process, so children die with it (PR_SET_PDEATHSIG is per thread).
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(state), Some(agent_bin), Some(coordinator_bin)) =
        (args.next(), args.next(), args.next())
    else {
        eprintln!("usage: stoker-demo STATE_DIR AGENT_BIN COORDINATOR_BIN");
        std::process::exit(64);
    };
    let state = PathBuf::from(state);
    std::fs::create_dir_all(&state)?;

    step("starting the control plane (etcd, kube-apiserver, kube-controller-manager)");
    let plane = ControlPlane::start().await?;
    let client = plane.client().await?;
    step("installing Stoker's CRDs (deploy/crds)");
    plane
        .apply_crds(&std::fs::read_to_string(state.join("crds.yaml"))?)
        .await?;

    step("starting the local Pod runtime (the cluster's one Node)");
    let (host, port) = plane
        .server()
        .trim_start_matches("https://")
        .rsplit_once(':')
        .map(|(h, p)| (h.to_owned(), p.trim_end_matches('/').parse::<u16>()))
        .ok_or_else(|| anyhow::anyhow!("unexpected API server address {}", plane.server()))?;
    let runtime = PodRuntime::start(
        client.clone(),
        PodRuntimeOptions {
            node_name: DEFAULT_NODE_NAME.into(),
            images: ImageMap {
                kafka_home: kafka_home()?,
                agent_bin: PathBuf::from(agent_bin),
                agent_jmx_exporter_jar: kafka_home()?.join("agents/jmx_prometheus_javaagent.jar"),
                cruise_control_home: stoker_testenv::CruiseControl::home()?,
                coordinator_bin: None,
            },
            api_server: Some((host, port?)),
            api_ca: Some(plane.ca_cert()),
            node_labels: [
                ("topology.kubernetes.io/region", "local"),
                ("topology.kubernetes.io/zone", "local-a"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        },
    )
    .await?;

    step("starting the coordinator");
    let coordinator_admin = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let alert_receiver = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let alert_token = state.join("alert-receiver-token");
    std::fs::write(&alert_token, stoker_testenv::control_plane::random_hex(24)?)?;
    // Run where Service names resolve (the runtime's hosts file), as in a cluster.
    let mut cmd = runtime.client_command(coordinator_bin);
    cmd.args(["run", "--agent-image", AGENT_IMAGE])
        .env("KUBECONFIG", plane.kubeconfig())
        .env(
            "STOKER_COORDINATOR_ADMIN_ADDR",
            coordinator_admin.to_string(),
        )
        .env("STOKER_COORDINATOR_ALERTS_ADDR", alert_receiver.to_string())
        .env("STOKER_COORDINATOR_ALERTS_TOKEN_FILE", &alert_token);
    let mut coordinator =
        ManagedProcess::spawn("coordinator", cmd, &state.join("coordinator.log"))?;
    for _ in 0..100 {
        if http::get(coordinator_admin, "/readyz")
            .await
            .is_ok_and(|r| r.status == 200)
        {
            break;
        }
        coordinator.ensure_running()?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    step("applying deploy/examples (kafkacluster.yaml, kafkatopics.yaml)");
    let started = Instant::now();
    let mut objects = Vec::new();
    let mut examples: Vec<PathBuf> = std::fs::read_dir(state.join("examples"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    examples.sort();
    let yamls: Vec<String> = examples
        .iter()
        .map(std::fs::read_to_string)
        .collect::<Result<_, _>>()?;
    let namespaces: std::collections::BTreeSet<String> = yamls
        .iter()
        .flat_map(|y| serde_yaml::Deserializer::from_str(y))
        .filter_map(|d| <serde_json::Value as serde::Deserialize>::deserialize(d).ok())
        .filter_map(|v| v["metadata"]["namespace"].as_str().map(str::to_owned))
        .filter(|ns| ns != "default")
        .collect();
    for ns in namespaces {
        plane.create_namespace(&ns).await?;
    }
    for yaml in &yamls {
        objects.extend(apply(&client, yaml).await?);
    }
    wait_ready(&client, &objects).await?;
    let to_ready = started.elapsed();
    step(&format!(
        "examples Ready {:.1}s after they were applied",
        to_ready.as_secs_f64()
    ));

    let cluster = objects
        .iter()
        .find(|(ar, _, _)| ar.kind == "KafkaCluster")
        .map(|(_, ns, name)| (ns.clone(), name.clone()))
        .unwrap_or_default();
    let mut env = String::new();
    writeln!(env, "KUBECONFIG={}", plane.kubeconfig().display())?;
    writeln!(
        env,
        "BOOTSTRAP_SERVERS={}-all-broker.{}.svc.cluster.local:9092",
        cluster.1, cluster.0
    )?;
    writeln!(env, "CLUSTER_NAMESPACE={}", cluster.0)?;
    writeln!(env, "HOSTS_FILE={}", runtime.hosts_path().display())?;
    writeln!(env, "KAFKA_HOME={}", kafka_home()?.display())?;
    writeln!(env, "COORDINATOR_ADMIN=http://{coordinator_admin}")?;
    writeln!(env, "ALERT_RECEIVER=http://{alert_receiver}/alerts")?;
    writeln!(env, "ALERT_TOKEN_FILE={}", alert_token.display())?;
    writeln!(env, "RUNTIME_DIR={}", runtime.root().display())?;
    writeln!(env, "CONTROL_PLANE_DIR={}", plane.work_dir().display())?;
    writeln!(env, "READY_SECONDS={:.1}", to_ready.as_secs_f64())?;
    let tmp = state.join("env.tmp");
    std::fs::write(&tmp, env)?;
    std::fs::rename(tmp, state.join("env"))?;
    step("ready");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    step("stopping");
    let _ = std::fs::remove_file(state.join("env"));
    drop(coordinator);
    drop(runtime);
    drop(plane);
    Ok(())
}
