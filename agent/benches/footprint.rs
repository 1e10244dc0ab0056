//! The agent's footprint beside a real broker, measured against baselines taken in
//! the same run (these machines are noisy, so ratios matter more than absolutes):
//!
//! - RSS idle, and peak RSS while `/metrics` is scraped 20 times a second;
//! - `/metrics` latency (p50/p99) without the JMX pass-through, with it, and the JMX
//!   exporter's own latency (the baseline the pass-through is held to);
//! - CPU at a 15 s scrape interval, projected from the idle CPU rate plus the CPU
//!   cost of one scrape (both measured from /proc).
//!
//! Run: `cargo bench -p stoker-agent --bench footprint` (after `scripts/provision`).

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use stoker_testenv::{
    KafkaCluster, ManagedProcess, WorkDir, http,
    kafka::JMX_EXPORTER_PORT,
    net::free_port,
    proc_stats::{cpu_seconds, peak_rss_mib, rss_mib},
    stats::{ms, percentile as pct},
};

async fn latencies(addr: SocketAddr, path: &str, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = http::get(addr, path).await.expect("scrape answers");
        assert_eq!(r.status, 200, "{addr}{path}: {}", r.body);
        out.push(t.elapsed());
    }
    out.sort();
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let agent_bin = PathBuf::from(env!("CARGO_BIN_EXE_stoker-agent"));
    let kafka = KafkaCluster::builder()
        .combined(1)
        .with_jmx_exporter()
        .with_agents(agent_bin.clone())
        .start()
        .await
        .expect("a one-node cluster starts");
    // Partitions make the agent's metadata polling and the JMX exporter do real work.
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        kafka.client_config().create().expect("admin");
    let topic =
        rdkafka::admin::NewTopic::new("bench", 300, rdkafka::admin::TopicReplication::Fixed(1));
    let created = admin
        .create_topics([&topic], &rdkafka::admin::AdminOptions::new())
        .await
        .expect("CreateTopics answered");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let node = &kafka.nodes()[0];
    let with_jmx = node.agent().expect("agent");
    let jmx_addr = SocketAddr::from((node.addr, JMX_EXPORTER_PORT));

    // A second agent on the same broker without the JMX pass-through.
    let work = WorkDir::new("bench-agent").expect("work dir");
    let plain_admin = SocketAddr::from(([127, 0, 0, 1], free_port().expect("port")));
    let mut cmd = Command::new(&agent_bin);
    cmd.arg("run")
        .env("STOKER_AGENT_ADMIN_ADDR", plain_admin.to_string())
        .env(
            "STOKER_AGENT_GRPC_ADDR",
            format!("127.0.0.1:{}", free_port().expect("port")),
        )
        .env("STOKER_AGENT_DESIRED_CONFIG", &with_jmx.desired_config)
        .env("STOKER_AGENT_OUTPUT_DIR", work.path().join("out"))
        .env("POD_NAME", "bench")
        .env("POD_NAMESPACE", "bench")
        .env("POD_IP", node.addr.to_string())
        .env("RUST_LOG", "warn");
    let plain = ManagedProcess::spawn("agent-plain", cmd, &work.path().join("agent.log"))
        .expect("agent starts");
    let pid = plain.pid().expect("pid");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http::get(plain_admin, "/readyz")
        .await
        .is_ok_and(|r| r.status == 200)
    {
        assert!(Instant::now() < deadline, "the plain agent becomes ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Idle: the agent only polls its broker every 2 s.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_rss = rss_mib(pid);
    let cpu0 = cpu_seconds(pid);
    let idle_window = Duration::from_secs(30);
    tokio::time::sleep(idle_window).await;
    let idle_cpu_rate = (cpu_seconds(pid) - cpu0) / idle_window.as_secs_f64();

    // Latencies, interleaved rounds so drift hits every series alike.
    let (mut plain_l, mut jmx_l, mut pass_l) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..5 {
        plain_l.extend(latencies(plain_admin, "/metrics", 100).await);
        // The JMX exporter takes seconds per scrape at this size: few samples each.
        jmx_l.extend(latencies(jmx_addr, "/metrics", 4).await);
        pass_l.extend(latencies(with_jmx.admin, "/metrics", 4).await);
    }
    for v in [&mut plain_l, &mut jmx_l, &mut pass_l] {
        v.sort();
    }

    // CPU per scrape (no JMX), then 20 scrapes/s for 15 s for the peak RSS.
    let cpu1 = cpu_seconds(pid);
    let n = 300;
    latencies(plain_admin, "/metrics", n).await;
    let cpu_per_scrape = (cpu_seconds(pid) - cpu1) / n as f64;
    let load_start = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(50));
    while load_start.elapsed() < Duration::from_secs(15) {
        ticker.tick().await;
        let r = http::get(plain_admin, "/metrics").await.expect("scrape");
        assert_eq!(r.status, 200);
    }
    let loaded_rss = rss_mib(pid);
    let peak_rss = peak_rss_mib(pid);
    let projected_cpu = idle_cpu_rate + cpu_per_scrape / 15.0;

    println!(
        "\nstoker-agent footprint (release build, one KRaft node, {} partitions)",
        kafka
            .metadata(None)
            .await
            .map(|m| m
                .topics()
                .iter()
                .map(|t| t.partitions().len())
                .sum::<usize>())
            .unwrap_or(0)
    );
    println!(
        "  RSS idle                              {:>8.1} MiB   (goal <= 10 MiB)",
        idle_rss
    );
    println!(
        "  RSS after 15 s at 20 scrapes/s        {:>8.1} MiB   peak {:.1} MiB (goal <= 10 MiB)",
        loaded_rss, peak_rss
    );
    println!(
        "  /metrics without JMX   p50 {:>7.2} ms  p99 {:>7.2} ms   (goal p99 <= 5 ms)",
        ms(pct(&plain_l, 0.5)),
        ms(pct(&plain_l, 0.99))
    );
    println!(
        "  JMX exporter itself    p50 {:>7.2} ms  p99 {:>7.2} ms   (baseline, same run)",
        ms(pct(&jmx_l, 0.5)),
        ms(pct(&jmx_l, 0.99))
    );
    println!(
        "  /metrics with JMX      p50 {:>7.2} ms  p99 {:>7.2} ms",
        ms(pct(&pass_l, 0.5)),
        ms(pct(&pass_l, 0.99))
    );
    println!(
        "  pass-through / JMX exporter          p50 {:.2}x   p99 {:.2}x   (goal p99 <= 1.2x)",
        ms(pct(&pass_l, 0.5)) / ms(pct(&jmx_l, 0.5)),
        ms(pct(&pass_l, 0.99)) / ms(pct(&jmx_l, 0.99))
    );
    println!(
        "  CPU idle {:.3}% of a core; {:.3} ms CPU per scrape",
        idle_cpu_rate * 100.0,
        cpu_per_scrape * 1000.0
    );
    println!(
        "  CPU at a 15 s scrape interval        {:>8.3}% of a core (goal <= 1%)",
        projected_cpu * 100.0
    );
    drop(plain);
}
