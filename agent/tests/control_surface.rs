//! The agent's control surface, on the binary without Kafka: nothing on its HTTP port
//! changes the broker; gRPC is mTLS, served with the broker's certificate and taking
//! commands only from the coordinator's; a new certificate in its folder serves the
//! next connection without a restart; and the preStop hook asks through the Pod's
//! control folder.

use std::{net::SocketAddr, path::PathBuf, process::Command, time::Duration};

use stoker_proto::{
    agent::v1::{BrokerRef, DesiredConfig, GetStatusRequest, PrepareShutdownRequest},
    agent_tls::{COORDINATOR_NAME, agent_name},
    pki::{self, Ca, Usage},
};
use stoker_testenv::{
    ManagedProcess, WorkDir,
    agent_tls::{self, Caller},
    http,
    net::free_port,
};
use time::OffsetDateTime;
use tonic::{Code, Status};

const CLUSTER: &str = "kafka";
const NAMESPACE: &str = "default";

fn doc() -> DesiredConfig {
    stoker_testenv::agent::broker_only_doc(broker(1))
}

fn broker(id: i32) -> BrokerRef {
    BrokerRef {
        cluster: CLUSTER.into(),
        namespace: NAMESPACE.into(),
        broker_id: id,
    }
}

/// What a call from `caller` gets: a refusal, which must come.
async fn refused(addr: SocketAddr, caller: &Caller) -> Status {
    let mut client = match agent_tls::client(addr, caller).await {
        Ok(c) => c,
        Err(e) => return Status::unavailable(e.to_string()),
    };
    match client
        .prepare_shutdown(PrepareShutdownRequest {
            broker: Some(broker(1)),
        })
        .await
    {
        Ok(_) => panic!("{caller:?} was allowed to shut the broker down"),
        Err(s) => s,
    }
}

/// A call as `caller` that the agent serves (`GetStatus`; the broker is not running,
/// so the agent answers from what it knows).
async fn served(addr: SocketAddr, caller: &Caller) -> Result<(), String> {
    let mut c = agent_tls::client(addr, caller)
        .await
        .map_err(|e| e.to_string())?;
    c.get_status(GetStatusRequest {
        broker: Some(broker(1)),
    })
    .await
    .map(|_| ())
    .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

#[tokio::test]
async fn only_the_coordinator_commands_the_agent_and_certificates_rotate_live() {
    let work = WorkDir::new("agent-control").expect("work dir");
    let ca = agent_tls::ca_in(&work.path().join("ca"), CLUSTER, NAMESPACE).expect("a CA");
    let tls_dir = work.path().join("tls");
    let name1 = agent_name(CLUSTER, NAMESPACE, 1);
    let rotate = |name: &str| {
        agent_tls::write_agent_files(
            &ca,
            &tls_dir,
            name,
            OffsetDateTime::now_utc(),
            time::Duration::days(1),
        )
        .expect("the agent's files");
    };
    rotate(&name1);
    let control_dir = work.path().join("control");
    std::fs::create_dir_all(&control_dir).expect("control folder");
    let config = work
        .write(
            "desired/config.json",
            serde_json::to_vec(&doc()).expect("json"),
        )
        .expect("write");
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port().expect("port")));
    let grpc = SocketAddr::from(([127, 0, 0, 1], free_port().expect("port")));
    let mut cmd = Command::new(PathBuf::from(env!("CARGO_BIN_EXE_stoker-agent")));
    cmd.arg("run")
        .env("STOKER_AGENT_ADMIN_ADDR", admin.to_string())
        .env("STOKER_AGENT_GRPC_ADDR", grpc.to_string())
        .env("STOKER_AGENT_DESIRED_CONFIG", &config)
        .env("STOKER_AGENT_OUTPUT_DIR", work.path().join("rendered"))
        .env("STOKER_AGENT_TLS_DIR", &tls_dir)
        .env("STOKER_AGENT_CONTROL_DIR", &control_dir)
        .env("POD_NAME", "kafka-1")
        .env("POD_NAMESPACE", NAMESPACE)
        .env("POD_IP", "127.0.0.1");
    let mut agent =
        ManagedProcess::spawn("agent", cmd, &work.path().join("agent.log")).expect("spawns");
    http::wait_status(admin, "/startupz", 200, Duration::from_secs(30))
        .await
        .expect("the agent renders");

    let coordinator = Caller::coordinator(&ca, CLUSTER, NAMESPACE, 1).expect("identity");
    let started = tokio::time::Instant::now();
    while let Err(e) = served(grpc, &coordinator).await {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the coordinator is never served: {e}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Nothing on the admin port stops the broker.
    for (method, path) in [("POST", "/prepare-shutdown"), ("GET", "/prestop")] {
        let r = http::request(admin, method, path, None)
            .await
            .expect("the admin port answers");
        assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
    }

    let now = OffsetDateTime::now_utc();
    let cert = |ca: &Ca, name: &str, usage, at: OffsetDateTime, days| {
        let leaf = pki::issue_leaf(
            ca,
            &[name.to_owned()],
            usage,
            at,
            time::Duration::days(days),
        )
        .expect("a certificate");
        Some((leaf.cert, leaf.key))
    };
    let other_ca = pki::issue_ca("someone-else", now, time::Duration::days(1)).expect("a CA");
    let as_caller = |identity| Caller {
        trusts: ca.cert.clone(),
        identity,
        expects: name1.clone(),
    };
    for (what, caller) in [
        ("no client certificate", as_caller(None)),
        (
            "a coordinator certificate from another CA",
            as_caller(cert(&other_ca, COORDINATOR_NAME, Usage::Client, now, 1)),
        ),
        (
            "an expired coordinator certificate",
            as_caller(cert(
                &ca,
                COORDINATOR_NAME,
                Usage::Client,
                now - time::Duration::days(10),
                1,
            )),
        ),
        (
            "a broker's serving certificate",
            as_caller(cert(
                &ca,
                &agent_name(CLUSTER, NAMESPACE, 2),
                Usage::Server,
                now,
                1,
            )),
        ),
    ] {
        let s = refused(grpc, &caller).await;
        eprintln!("refused, {what}: {:?} {}", s.code(), s.message());
    }
    // Signed by the cluster's CA for clients, but not the coordinator: refused by name.
    let s = refused(
        grpc,
        &as_caller(cert(&ca, "intruder.example", Usage::Client, now, 1)),
    )
    .await;
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    assert!(s.message().contains(COORDINATOR_NAME), "{}", s.message());
    // The coordinator expecting another broker's certificate refuses this one.
    let wrong_broker = Caller::coordinator(&ca, CLUSTER, NAMESPACE, 2).expect("identity");
    let e = served(grpc, &wrong_broker)
        .await
        .expect_err("a certificate for broker 1 is not broker 2's");
    eprintln!("refused, the agent of another broker: {e}");
    let health = http::get(admin, "/healthz").await.expect("healthz");
    assert!(
        health
            .body
            .contains(r#"{"name":"not_shutting_down","ok":true"#),
        "every refused call left the broker in service: {}",
        health.body
    );

    // Rotation: a certificate for another name first (the coordinator stops accepting
    // it), then its own again (served again), with one agent process throughout.
    let started = tokio::time::Instant::now();
    rotate(&agent_name(CLUSTER, NAMESPACE, 9));
    while served(grpc, &coordinator).await.is_ok() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the agent never served its new certificate"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let swapped = started.elapsed();
    rotate(&name1);
    while let Err(e) = served(grpc, &coordinator).await {
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "the rotated certificate never served: {e}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "certificate swapped in {swapped:?}, swapped back by {:?}, no restart",
        started.elapsed()
    );
    agent
        .ensure_running()
        .expect("the same agent process throughout");

    // The preStop hook asks through the control folder and gets the agent's answer.
    let answer = stoker_testenv::agent::prestop_hook(&control_dir)
        .await
        .expect("the hook runs");
    assert!(
        answer.contains("never started") || answer.contains("not serving"),
        "{answer}"
    );
    let ready = http::get(admin, "/readyz").await.expect("readyz");
    assert!(ready.body.contains("shutting down"), "{}", ready.body);
}
