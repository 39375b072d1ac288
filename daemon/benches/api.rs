//! API benchmark: prints the wall time of importing 10 000 nodes through the
//! socket, and the latency of `GET /v1/nodes/{ident}` (p50/p99/max) over one
//! keep-alive connection with those nodes enrolled, beside the targets.
//!
//! Run with `cargo bench -p batond --bench api` (optionally
//! `-- --nodes N --gets N`).

use std::time::{Duration, Instant};

use batond::client::Client;
use batond::config::Config;
use batond::daemon::Daemon;
use bytes::Bytes;
use http::{Method, StatusCode};

/// The README's targets (Benchmarks), which hold for 10 000 nodes.
const TARGET_NODES: usize = 10_000;
const IMPORT_TARGET: Duration = Duration::from_secs(1);
const P99_TARGET: Duration = Duration::from_millis(1);

struct Options {
    nodes: usize,
    gets: usize,
}

fn options() -> Options {
    let mut opts = Options {
        nodes: 10_000,
        gets: 20_000,
    };
    let args: Vec<String> = std::env::args().collect();
    for pair in args.windows(2) {
        match pair[0].as_str() {
            "--nodes" => opts.nodes = pair[1].parse().unwrap_or(opts.nodes),
            "--gets" => opts.gets = pair[1].parse().unwrap_or(opts.gets),
            _ => {}
        }
    }
    opts
}

fn inventory(count: usize) -> Bytes {
    let nodes: Vec<serde_json::Value> = (0..count)
        .map(|i| {
            serde_json::json!({
                "name": format!("bench-{i}"),
                "driver": if i % 2 == 0 { "redfish" } else { "ipmi" },
                "power_domain": format!("rack-{}", i / 40),
                "bmc": {"address": "10.0.0.1", "port": 8000 + (i % 1000), "username": "admin", "password": "bench-pw"}
            })
        })
        .collect();
    Bytes::from(serde_json::Value::Array(nodes).to_string())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// "ok" when a figure met its target, "MISSED" otherwise; not judged when
/// the run had another size than the targets are for.
fn verdict(opts: &Options, ok: bool) -> &'static str {
    match (opts.nodes == TARGET_NODES, ok) {
        (false, _) => "not judged (the target is for 10 000 nodes)",
        (true, true) => "ok",
        (true, false) => "MISSED",
    }
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() {
    let opts = options();
    let dir = tempfile::TempDir::new().expect("temp dir");
    let mut config = Config::default();
    config.api.socket = dir.path().join("baton.sock");
    config.state.database = dir.path().join("baton.db");
    let daemon = Daemon::start(config).await.expect("batond starts");
    let client = Client::new(daemon.socket_path());

    let body = inventory(opts.nodes);
    let started = Instant::now();
    let response = client
        .request(Method::POST, "/v1/nodes/import", Some(body))
        .await
        .expect("import answered");
    let import_time = started.elapsed();
    assert_eq!(response.status, StatusCode::OK, "{:?}", response.body);

    let mut connection = client.connect().await.expect("connect");
    let paths: Vec<String> = (0..opts.nodes)
        .map(|i| format!("/v1/nodes/bench-{i}"))
        .collect();
    for path in paths.iter().take(500) {
        connection
            .request(Method::GET, path, None)
            .await
            .expect("warm-up");
    }
    let mut latencies = Vec::with_capacity(opts.gets);
    let run = Instant::now();
    for i in 0..opts.gets {
        let path = &paths[(i * 7919) % paths.len()];
        let t = Instant::now();
        let r = connection
            .request(Method::GET, path, None)
            .await
            .expect("GET answered");
        latencies.push(t.elapsed());
        assert_eq!(r.status, StatusCode::OK);
    }
    let run_time = run.elapsed();
    latencies.sort();

    println!(
        "batond API benchmark ({} nodes, {} sequential GETs over one connection)",
        opts.nodes, opts.gets
    );
    println!(
        "  import {} nodes           {:>10.1} ms   (target < {} ms)  {}",
        opts.nodes,
        import_time.as_secs_f64() * 1e3,
        IMPORT_TARGET.as_millis(),
        verdict(&opts, import_time < IMPORT_TARGET)
    );
    println!(
        "  GET /v1/nodes/{{ident}} p50 {:>10}",
        micros(percentile(&latencies, 0.50))
    );
    let p99 = percentile(&latencies, 0.99);
    println!(
        "  GET /v1/nodes/{{ident}} p99 {:>10}   (target < {})  {}",
        micros(p99),
        micros(P99_TARGET),
        verdict(&opts, p99 < P99_TARGET)
    );
    println!(
        "  GET /v1/nodes/{{ident}} max {:>10}",
        micros(percentile(&latencies, 1.0))
    );
    println!(
        "  GETs per second           {:>10.0}",
        opts.gets as f64 / run_time.as_secs_f64()
    );
    println!("  process RSS (daemon + client) {:>6.1} MiB", rss_mib());
    drop(connection);
    daemon.shutdown().await.expect("clean shutdown");
}
