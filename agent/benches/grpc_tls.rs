//! The cost of mTLS on the agent's gRPC port, against a baseline measured in the same
//! run: the same service (`stoker.agent.v1.Agent` over the agent's shared state) served
//! in this process twice — plaintext, and the way the agent serves it (mTLS with the
//! certificate reloader and the coordinator check). The broker is not running, so
//! `GetStatus` answers `Unavailable` from the agent's state: the call measures the
//! transport and the service's entry, nothing of Kafka.
//!
//! - per call on a kept connection (what the coordinator pays per status poll);
//! - per new connection plus one call (what a new channel pays: TCP + TLS 1.3
//!   handshake with both certificates verified).
//!
//! Run: `cargo bench -p stoker-agent --bench grpc_tls`.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use stoker_agent::{
    grpc::{server::AgentService, tls},
    state::Shared,
};
use stoker_proto::agent::v1::{
    BrokerRef, GetStatusRequest, agent_client::AgentClient, agent_server::AgentServer,
};
use stoker_testenv::{
    WorkDir,
    agent_tls::{self, Caller},
    stats::percentile as pct,
};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

const CALLS: usize = 2000;
const CONNECTIONS: usize = 200;

fn request() -> GetStatusRequest {
    GetStatusRequest {
        broker: Some(BrokerRef {
            cluster: "kafka".into(),
            namespace: "default".into(),
            broker_id: 1,
        }),
    }
}

async fn call(c: &mut AgentClient<Channel>) {
    let s = c
        .get_status(request())
        .await
        .expect_err("the broker is not running");
    assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}");
}

/// `CALLS` calls on one kept connection, sorted.
async fn kept(mut c: AgentClient<Channel>) -> Vec<Duration> {
    for _ in 0..200 {
        call(&mut c).await;
    }
    let mut out = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let t = Instant::now();
        call(&mut c).await;
        out.push(t.elapsed());
    }
    out.sort();
    out
}

fn print(what: &str, v: &[Duration]) {
    println!(
        "{what:<44} p50 {:>8.3} ms   p99 {:>8.3} ms",
        pct(v, 0.5).as_secs_f64() * 1e3,
        pct(v, 0.99).as_secs_f64() * 1e3
    );
}

fn ratio(what: &str, tls: &[Duration], plain: &[Duration]) {
    println!(
        "{what:<44} p50 {:.2}x   p99 {:.2}x",
        pct(tls, 0.5).as_secs_f64() / pct(plain, 0.5).as_secs_f64(),
        pct(tls, 0.99).as_secs_f64() / pct(plain, 0.99).as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let work = WorkDir::new("grpc-tls-bench").expect("work dir");
    let ca = agent_tls::ca_in(&work.path().join("ca"), "kafka", "default").expect("CA");
    let dir = work.path().join("tls");
    agent_tls::write_agent_files(
        &ca,
        &dir,
        &stoker_proto::agent_tls::agent_name("kafka", "default", 1),
        time::OffsetDateTime::now_utc(),
        time::Duration::days(1),
    )
    .expect("agent files");
    let shared = Arc::new(Shared::new(Duration::from_secs(1), None));
    let token = CancellationToken::new();

    // Plaintext: the service alone.
    let plain_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let plain_addr: SocketAddr = plain_listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AgentServer::new(AgentService::new(shared.clone())))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(plain_listener)
                    .with_nodelay(Some(true)),
                token.clone().cancelled_owned(),
            ),
    );
    // mTLS: as the agent serves it.
    let tls_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let tls_addr = tls_listener.local_addr().expect("addr");
    let reloading = Arc::new(tls::Reloading::new(dir));
    reloading.reload().expect("the certificate loads");
    let (tx, rx) = tokio::sync::mpsc::channel(32);
    tokio::spawn(tls::accept(tls_listener, reloading, tx, token.clone()));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AgentServer::with_interceptor(
                AgentService::new(shared),
                tls::require_coordinator,
            ))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::ReceiverStream::new(rx),
                token.clone().cancelled_owned(),
            ),
    );
    let coordinator = Caller::coordinator(&ca, "kafka", "default", 1).expect("identity");
    let plain_client = || async {
        AgentClient::new(
            Endpoint::from_shared(format!("http://{plain_addr}"))
                .expect("endpoint")
                .connect()
                .await
                .expect("plaintext connects"),
        )
    };

    let plain = kept(plain_client().await).await;
    let mtls = kept(
        agent_tls::client(tls_addr, &coordinator)
            .await
            .expect("mTLS connects"),
    )
    .await;

    let mut plain_new = Vec::with_capacity(CONNECTIONS);
    let mut mtls_new = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let t = Instant::now();
        call(&mut plain_client().await).await;
        plain_new.push(t.elapsed());
        let t = Instant::now();
        call(
            &mut agent_tls::client(tls_addr, &coordinator)
                .await
                .expect("mTLS connects"),
        )
        .await;
        mtls_new.push(t.elapsed());
    }
    plain_new.sort();
    mtls_new.sort();

    println!("agent gRPC, {CALLS} calls per kept connection, {CONNECTIONS} new connections");
    print("plaintext, kept connection", &plain);
    print("mTLS, kept connection", &mtls);
    ratio("mTLS / plaintext, kept connection", &mtls, &plain);
    print("plaintext, new connection + call", &plain_new);
    print("mTLS, new connection + call (handshake)", &mtls_new);
    ratio("mTLS / plaintext, new connection", &mtls_new, &plain_new);
    token.cancel();
}
