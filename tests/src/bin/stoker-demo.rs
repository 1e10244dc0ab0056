//! `stoker-demo`: keeps a local Stoker environment running until SIGTERM: a real
//! Kubernetes control plane, a KRaft cluster (3 brokers, 1 controller) with a
//! `stoker-agent` beside every node, and the coordinator. `scripts/demo` starts it in
//! the background and prints how to reach everything; `scripts/demo down` stops it.
//!
//! Usage: stoker-demo STATE_DIR AGENT_BIN COORDINATOR_BIN
//! Writes STATE_DIR/env (shell variables) once everything is ready.
#![forbid(unsafe_code)]

use std::{fmt::Write as _, path::PathBuf, process::Command, time::Duration};

use stoker_testenv::{ControlPlane, KafkaCluster, ManagedProcess, http, net::free_port};

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
    let step = |what: &str| eprintln!("[stoker-demo] {what}");

    step("starting the control plane (etcd, kube-apiserver, kube-controller-manager)");
    let plane = ControlPlane::start().await?;
    step("installing Stoker's CRDs (deploy/crds)");
    let crds = std::fs::read_to_string(state.join("crds.yaml"))?;
    plane.apply_crds(&crds).await?;
    step("starting Kafka: 3 brokers and 1 controller, each with its stoker-agent");
    let kafka = KafkaCluster::builder()
        .brokers(3)
        .controllers(1)
        .with_jmx_exporter()
        .with_agents(PathBuf::from(agent_bin))
        .start()
        .await?;
    step("starting the coordinator");
    let coordinator_admin = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut cmd = Command::new(coordinator_bin);
    cmd.arg("run").env("KUBECONFIG", plane.kubeconfig()).env(
        "STOKER_COORDINATOR_ADMIN_ADDR",
        coordinator_admin.to_string(),
    );
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

    let mut env = String::new();
    writeln!(env, "KUBECONFIG={}", plane.kubeconfig().display())?;
    writeln!(env, "BOOTSTRAP_SERVERS={}", kafka.bootstrap_servers())?;
    writeln!(env, "KAFKA_HOME={}", kafka.home().display())?;
    writeln!(env, "COORDINATOR_ADMIN=http://{coordinator_admin}")?;
    for node in kafka.nodes() {
        if let Some(agent) = &node.agent {
            writeln!(env, "AGENT_{}_ADMIN=http://{}", node.id, agent.admin)?;
        }
    }
    writeln!(env, "KAFKA_WORK_DIR={}", kafka.work_dir().display())?;
    writeln!(env, "CONTROL_PLANE_DIR={}", plane.work_dir().display())?;
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
    drop(kafka);
    drop(plane);
    Ok(())
}
