//! Scale bench of the simulated rack: start-up time, resident memory, and
//! aggregate Redfish GET throughput with `latency = 0`, for 1000 and 10 000
//! nodes, each figure printed beside its target.
//!
//! Run with `cargo bench -p baton-hwsim --bench rack` (add `-- --seconds N`
//! to change the load phase, default 5 s). The load generator runs in the
//! same process on the same cores: `CONNECTIONS` keep-alive HTTP/1.1
//! connections spread over the nodes, each sending `GET /redfish/v1/Systems/1`
//! with basic auth back to back.

use std::time::{Duration, Instant};

use baton_hwsim::{Rack, RackConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Concurrent client connections of the load phase.
const CONNECTIONS: usize = 64;
/// Targets from the issue.
const START_TARGET: Duration = Duration::from_secs(5);
const RSS_TARGET_MB: f64 = 200.0;
const GETS_TARGET: f64 = 10_000.0;

#[derive(Debug)]
struct Figures {
    nodes: usize,
    ipmi: bool,
    start: Duration,
    rss_started_mb: f64,
    gets_per_sec: f64,
    p50: Duration,
    p99: Duration,
    rss_loaded_mb: f64,
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

async fn client_loop(
    addr: std::net::SocketAddr,
    auth: String,
    until: Instant,
) -> Result<Vec<Duration>, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut latencies = Vec::new();
    while Instant::now() < until {
        let request = hyper::Request::get("/redfish/v1/Systems/1")
            .header("host", addr.to_string())
            .header("authorization", auth.as_str())
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let sent = Instant::now();
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        if response.status() != 200 {
            return Err(format!("GET answered {}", response.status()));
        }
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        latencies.push(sent.elapsed());
    }
    Ok(latencies)
}

async fn measure(nodes: usize, ipmi: bool, seconds: u64) -> Result<Figures, String> {
    let config = RackConfig {
        nodes,
        ipmi,
        control_port: None,
        latency: Duration::ZERO,
        ..RackConfig::default()
    };
    let auth = {
        use base64::Engine;
        let creds = format!(
            "{}:{}",
            config.credentials.username, config.credentials.password
        );
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(creds)
        )
    };
    let started = Instant::now();
    let rack = Rack::start(config).await.map_err(|e| e.to_string())?;
    let start = started.elapsed();
    let rss_started_mb = rss_mb();

    let until = Instant::now() + Duration::from_secs(seconds);
    let stride = (nodes / CONNECTIONS).max(1);
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let addr = rack.nodes()[(i * stride) % nodes].redfish_addr();
            tokio::spawn(client_loop(addr, auth.clone(), until))
        })
        .collect();
    let load_started = Instant::now();
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(client.await.map_err(|e| e.to_string())??);
    }
    let elapsed = load_started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pick = |q: f64| {
        // Index of the q-quantile; latencies is non-empty after a load phase.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(i).copied().unwrap_or_default()
    };
    let figures = Figures {
        nodes,
        ipmi,
        start,
        rss_started_mb,
        gets_per_sec: latencies.len() as f64 / elapsed,
        p50: pick(0.50),
        p99: pick(0.99),
        rss_loaded_mb: rss_mb(),
    };
    let stats = rack.stats();
    if stats.total_requests < latencies.len() as u64 {
        return Err(format!(
            "rack counted {} requests, clients {}",
            stats.total_requests,
            latencies.len()
        ));
    }
    rack.shutdown().await;
    Ok(figures)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}

fn print(f: &Figures) {
    println!(
        "{:>6} nodes ({}):",
        f.nodes,
        if f.ipmi {
            "Redfish + IPMI"
        } else {
            "Redfish only"
        }
    );
    println!(
        "  start-up            {:>9.2} s      target < {} s      {}",
        f.start.as_secs_f64(),
        START_TARGET.as_secs(),
        verdict(f.start < START_TARGET)
    );
    println!(
        "  RSS after start     {:>9.1} MB     target < {RSS_TARGET_MB} MB (at 1000 nodes)  {}",
        f.rss_started_mb,
        verdict(f.nodes > 1000 || f.rss_started_mb < RSS_TARGET_MB)
    );
    println!(
        "  Redfish GET/s       {:>9.0}        target >= {GETS_TARGET}   {}   ({CONNECTIONS} connections, latency 0, p50 {:.2} ms, p99 {:.2} ms)",
        f.gets_per_sec,
        verdict(f.gets_per_sec >= GETS_TARGET),
        f.p50.as_secs_f64() * 1000.0,
        f.p99.as_secs_f64() * 1000.0
    );
    println!(
        "  RSS after load      {:>9.1} MB     (includes the in-process load generator)",
        f.rss_loaded_mb
    );
}

/// Runs one configuration in this process (`--one NODES ipmi|redfish`), or
/// every configuration, each in a fresh child process so that RSS figures do
/// not carry memory over from an earlier run.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(5u64);
    if let Some(i) = args.iter().position(|a| a == "--one") {
        let nodes = args.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(1000);
        let ipmi = args.get(i + 2).is_some_and(|s| s == "ipmi");
        std::process::exit(run_one(nodes, ipmi, seconds));
    }
    println!(
        "hw-sim rack bench: {} cores, load phase {seconds} s",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    let Ok(me) = std::env::current_exe() else {
        eprintln!("rack bench: cannot find its own executable");
        std::process::exit(1);
    };
    let mut failed = false;
    for (nodes, kind) in [(1000, "ipmi"), (1000, "redfish"), (10_000, "redfish")] {
        let status = std::process::Command::new(&me)
            .args([
                "--one",
                &nodes.to_string(),
                kind,
                "--seconds",
                &seconds.to_string(),
            ])
            .status();
        failed |= !status.is_ok_and(|s| s.success());
    }
    if failed {
        std::process::exit(1);
    }
}

fn run_one(nodes: usize, ipmi: bool, seconds: u64) -> i32 {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rack bench: cannot start tokio: {e}");
            return 1;
        }
    };
    match runtime.block_on(measure(nodes, ipmi, seconds)) {
        Ok(figures) => {
            print(&figures);
            0
        }
        Err(error) => {
            eprintln!("{nodes} nodes (ipmi {ipmi}): {error}");
            1
        }
    }
}
