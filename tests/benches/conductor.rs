//! Conductor benchmark: the "Speed" figures of the conductor, each printed
//! beside its bound, the ratio and an ok/missed verdict, in one run.
//!
//! 1. **Fleet power**: 1000 single-node `PUT /v1/nodes/{n}/states/power`
//!    "power off", then "power on", against a 1000-node hw-sim rack (20 ms
//!    latency, 1 s transitions, half Redfish half IPMI) with 100 workers:
//!    wall time from the first PUT to the last node settled, beside the
//!    bound T + 2L + N·2L/W (one transition, one command and one read for
//!    the last node, and every node's command and read through W workers).
//! 2. `GET /v1/nodes/{ident}` latency (p50, p99) while (1) runs.
//! 3. **Power sync**: sweeps of 10 000 Redfish-only hw-sim nodes at 20 ms,
//!    as the conductor reports them in `GET /v1/conductor`, beside
//!    N·k·L/W_sync for k requests per node: the first sweep after a start
//!    makes first contact with every BMC (k = 4: service root, login,
//!    Systems, the system), later ones read with the session they opened
//!    (k = 1, the bound N·L/W_sync).
//! 4. batond's RSS with 10 000 nodes, highest seen during the sweeps.
//!
//! hw-sim and batond run as separate release-built processes (built here
//! with `cargo build --release`); the bench talks to batond over its socket
//! with many concurrent clients, as callers would. Run with `cargo bench -p
//! baton-tests --bench conductor`; add `-- fleet` or `-- sync` for one part.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_tests::daemon::DaemonProcess;
use batond::api::types::{ConductorStatus, NodeList, NodeSummary, SweepReport};
use batond::client::{Client, Connection};
use bytes::Bytes;
use common::{
    build, rss_mb, sim_stats, start_batond, start_hwsim, verdict, BenchResult, HwSim, RackTiming,
};
use http::Method;

const LATENCY: Duration = Duration::from_millis(20);
const TRANSITION: Duration = Duration::from_secs(1);
const FLEET: usize = 1000;
const WORKERS: usize = 100;
/// Concurrent API clients sending the PUTs, each on its own connection.
const CLIENTS: usize = 100;
/// Concurrent readers of `GET /v1/nodes/{ident}` during the fleet run.
const READERS: usize = 4;
const SYNC_NODES: usize = 10_000;
const SYNC_WORKERS: usize = 100;
/// Sweeps measured: the first opens the sessions, the rest reuse them.
const SWEEPS: usize = 3;
/// HTTP requests of a first contact with a Redfish BMC.
const FIRST_CONTACT_REQUESTS: f64 = 4.0;
/// Longest the bench waits for any one thing.
const PATIENCE: Duration = Duration::from_secs(180);

const RATIO_TARGET: f64 = 1.2;
const GET_P99_TARGET: Duration = Duration::from_millis(10);
const RSS_TARGET_MB: f64 = 40.0;

/// A rack of `nodes` with the bench's latency and transitions.
fn rack(nodes: usize) -> RackTiming {
    RackTiming {
        nodes,
        latency: LATENCY,
        transition: TRANSITION,
    }
}

async fn status(client: &Client) -> BenchResult<ConductorStatus> {
    client
        .get("/v1/conductor")
        .await
        .map_err(|e| format!("GET /v1/conductor: {e}"))
}

/// Every node's name, in enrollment order.
async fn node_names(client: &Client) -> BenchResult<Vec<String>> {
    let list: NodeList<NodeSummary> = client
        .get(&format!("/v1/nodes?limit={FLEET}"))
        .await
        .map_err(|e| format!("list nodes: {e}"))?;
    Ok(list.nodes.into_iter().filter_map(|n| n.name).collect())
}

/// Prints one figure beside its bound and target ratio.
/// Prints a figure beside its bound; `judged` ones get a verdict against
/// the target (and return whether they met it), the others are shown only.
fn report_ratio(what: &str, figure: Duration, bound: Duration, judged: bool, detail: &str) -> bool {
    let ratio = figure.as_secs_f64() / bound.as_secs_f64();
    let ok = ratio <= RATIO_TARGET;
    let verdict = if judged {
        format!("(target ≤ {RATIO_TARGET}) {}", verdict(ok))
    } else {
        "(shown, not judged)".to_owned()
    };
    println!(
        "{what}: {:.3} s, bound {:.3} s, ratio {ratio:.2} {verdict} — {detail}",
        figure.as_secs_f64(),
        bound.as_secs_f64(),
    );
    ok || !judged
}

/// Reads `GET /v1/nodes/{ident}` in a loop on `READERS` keep-alive
/// connections until `stop`; returns every answer's latency.
fn start_readers(
    client: &Client,
    names: &Arc<Vec<String>>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<BenchResult<Vec<Duration>>>> {
    (0..READERS)
        .map(|r| {
            let (client, names, stop) = (client.clone(), Arc::clone(names), Arc::clone(stop));
            tokio::spawn(async move {
                let mut conn = client.connect().await.map_err(|e| e.to_string())?;
                let mut latencies = Vec::new();
                let mut i = r * 7919;
                while !stop.load(Ordering::Relaxed) {
                    let name = &names[i % names.len()];
                    i += 131;
                    let started = Instant::now();
                    let answer = conn
                        .request(Method::GET, &format!("/v1/nodes/{name}"), None)
                        .await
                        .map_err(|e| format!("GET {name}: {e}"))?;
                    latencies.push(started.elapsed());
                    if answer.status.as_u16() != 200 {
                        return Err(format!("GET {name}: {}", answer.status));
                    }
                }
                Ok(latencies)
            })
        })
        .collect()
}

/// Sends `PUT states/power` for every node in `names`, from `CLIENTS`
/// connections at once.
async fn put_all(client: &Client, names: &Arc<Vec<String>>, target: &str) -> BenchResult<()> {
    let body = Bytes::from(serde_json::json!({ "target": target }).to_string());
    let mut conns: Vec<Connection> = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        conns.push(client.connect().await.map_err(|e| e.to_string())?);
    }
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(c, mut conn)| {
            let (names, body) = (Arc::clone(names), body.clone());
            tokio::spawn(async move {
                for name in names.iter().skip(c).step_by(CLIENTS) {
                    let path = format!("/v1/nodes/{name}/states/power");
                    let r = conn
                        .request(Method::PUT, &path, Some(body.clone()))
                        .await
                        .map_err(|e| format!("PUT {path}: {e}"))?;
                    if r.status.as_u16() != 202 {
                        return Err(format!(
                            "PUT {path}: {} {}",
                            r.status,
                            String::from_utf8_lossy(&r.body)
                        ));
                    }
                }
                Ok::<_, String>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// Waits until no operation is in flight and every node shows `state` with
/// no target and no error; returns when the conductor was first seen idle.
async fn settled(client: &Client, state: &str) -> BenchResult<Instant> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let seen = Instant::now();
        if status(client).await?.operations.in_flight == 0 {
            let list: serde_json::Value = client
                .get(&format!("/v1/nodes/detail?limit={FLEET}"))
                .await
                .map_err(|e| format!("list nodes: {e}"))?;
            let nodes = list["nodes"].as_array().cloned().unwrap_or_default();
            let stragglers: Vec<&serde_json::Value> = nodes
                .iter()
                .filter(|n| !n["target_power_state"].is_null() || n["power_state"] != state)
                .collect();
            if let Some(failed) = nodes.iter().find(|n| !n["last_error"].is_null()) {
                return Err(format!("a node failed: {failed}"));
            }
            if stragglers.is_empty() && nodes.len() == FLEET {
                return Ok(seen);
            }
        }
        if Instant::now() > deadline {
            return Err(format!("nodes did not reach {state} within {PATIENCE:?}"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// BMC requests batond counted so far.
fn bmc_requests(status: &ConductorStatus) -> u64 {
    status.bmc_requests.iter().map(|r| r.count).sum()
}

/// How a phase of the fleet run is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nodes already in the target: one read each, no command; this first
    /// contact opens every BMC session and records every power state, as
    /// a running conductor's sync sweeps would have.
    WarmUp,
    /// Every node changes state.
    Change,
}

/// One phase of the fleet run: every node to `target`.
async fn fleet_phase(
    batond: &DaemonProcess,
    sim: &HwSim,
    names: &Arc<Vec<String>>,
    target: &str,
    phase: Phase,
) -> BenchResult<bool> {
    let client = batond.client();
    sim_stats(sim, true).await?;
    let requests_before = bmc_requests(&status(&client).await?);
    let stop = Arc::new(AtomicBool::new(false));
    let readers = start_readers(&client, names, &stop);
    let started = Instant::now();
    put_all(&client, names, target).await?;
    let accepted = started.elapsed();
    let done = settled(&client, target).await?;
    stop.store(true, Ordering::Relaxed);
    let wall = done.duration_since(started);
    let mut latencies = Vec::new();
    for reader in readers {
        latencies.extend(reader.await.map_err(|e| e.to_string())??);
    }
    latencies.sort();
    let (sim_requests, commands, concurrent) = sim_stats(sim, false).await?;
    let after = status(&client).await?;
    let requests = bmc_requests(&after) - requests_before;

    let l = LATENCY.as_secs_f64();
    let n = FLEET as f64;
    let w = WORKERS as f64;
    let (label, bound, formula, ideal, want_commands) = match phase {
        Phase::WarmUp => (
            format!("fleet warm-up ({target}, already there; first contact opens every session)"),
            Duration::from_secs_f64(l + n * l / w),
            "L + N·L/W",
            FLEET,
            0,
        ),
        Phase::Change => (
            format!("fleet {target}"),
            TRANSITION + Duration::from_secs_f64(2.0 * l + n * 2.0 * l / w),
            "T + 2L + N·2L/W",
            2 * FLEET,
            FLEET as u64,
        ),
    };
    let mut ok = report_ratio(
        &label,
        wall,
        bound,
        phase == Phase::Change,
        &format!(
            "{formula} with N = {FLEET}, L = {} ms, T = {} s, W = {WORKERS}; \
             {FLEET} PUTs accepted in {:.3} s from {CLIENTS} clients; \
             {requests} BMC requests (ideal {ideal}), {commands} power commands seen by hw-sim \
             ({sim_requests} requests), at most {concurrent} at once per BMC",
            LATENCY.as_millis(),
            TRANSITION.as_secs(),
            accepted.as_secs_f64(),
        ),
    );
    if commands != want_commands || concurrent > 1 {
        println!(
            "  MISSED: want exactly {want_commands} power commands and at most 1 request at once per BMC"
        );
        ok = false;
    }
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    let get_ok = p99 < GET_P99_TARGET;
    println!(
        "GET /v1/nodes/{{ident}} during fleet {target}: p50 {:.2} ms, p99 {:.2} ms (target p99 < {} ms) {} \
         — {} reads from {READERS} clients, max {:.2} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        GET_P99_TARGET.as_millis(),
        verdict(get_ok),
        latencies.len(),
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
    );
    Ok(ok && get_ok)
}

async fn fleet_bench(hwsim: &Path) -> BenchResult<bool> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let sim = start_hwsim(
        hwsim,
        dir.path(),
        rack(FLEET),
        &["--export-driver", "mixed"],
    )?;
    let toml = format!(
        "[conductor]\nworkers = {WORKERS}\n[sync]\ninterval = \"1h\"\nrecovery_interval = \"1h\"\n"
    );
    let batond = start_batond(dir.path(), &sim, &toml).await?;
    let names = Arc::new(node_names(&batond.client()).await?);
    if names.len() != FLEET {
        return Err(format!("{} nodes enrolled, want {FLEET}", names.len()));
    }
    println!(
        "fleet: {FLEET} hw-sim nodes (half Redfish, half IPMI; separate process), {} ms latency, \
         {} s transitions; batond (separate process) with {WORKERS} workers",
        LATENCY.as_millis(),
        TRANSITION.as_secs()
    );
    // The warm-up is shown but not judged: sessions are opened once in a
    // conductor's life, not per operation.
    let _ = fleet_phase(&batond, &sim, &names, "power on", Phase::WarmUp).await?;
    let mut ok = true;
    for target in ["power off", "power on"] {
        ok &= fleet_phase(&batond, &sim, &names, target, Phase::Change).await?;
    }
    println!(
        "batond RSS after the fleet run: {:.1} MB",
        rss_mb(batond.pid())
    );
    Ok(ok)
}

/// Waits for the next sync sweep that started after `after`, sampling
/// batond's RSS meanwhile; returns the sweep and the highest RSS seen.
async fn next_sweep(
    batond: &DaemonProcess,
    after: Option<&str>,
) -> BenchResult<(SweepReport, f64)> {
    let client = batond.client();
    let deadline = Instant::now() + PATIENCE;
    let mut peak: f64 = 0.0;
    loop {
        peak = peak.max(rss_mb(batond.pid()));
        let sweep = status(&client)
            .await?
            .last_sweeps
            .into_iter()
            .find(|s| s.kind == "sync" && Some(s.started_at.as_str()) != after);
        if let Some(sweep) = sweep {
            return Ok((sweep, peak));
        }
        if Instant::now() > deadline {
            return Err(format!("no sync sweep within {PATIENCE:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sync_bench(hwsim: &Path) -> BenchResult<bool> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let sim = start_hwsim(hwsim, dir.path(), rack(SYNC_NODES), &["--no-ipmi"])?;
    let toml = format!(
        "[conductor]\nworkers = {WORKERS}\n[sync]\nworkers = {SYNC_WORKERS}\ninterval = \"5s\"\n\
         recovery_interval = \"1h\"\n"
    );
    let batond = start_batond(dir.path(), &sim, &toml).await?;
    let idle = rss_mb(batond.pid());
    println!(
        "sync: {SYNC_NODES} hw-sim nodes (Redfish only; separate process), {} ms latency; \
         batond with sync.workers = {SYNC_WORKERS}, sweeps every 5 s; RSS before the first sweep {idle:.1} MB",
        LATENCY.as_millis()
    );
    let bound =
        Duration::from_secs_f64(SYNC_NODES as f64 * LATENCY.as_secs_f64() / SYNC_WORKERS as f64);
    let mut ok = true;
    let mut last: Option<String> = None;
    let mut peak_rss: f64 = 0.0;
    for n in 1..=SWEEPS {
        // hw-sim may be out of file descriptors for its control API once
        // batond holds a connection to each of its 10 000 BMCs: its
        // figures are a bonus here, not a condition.
        let _ = sim_stats(&sim, true).await;
        let (sweep, peak) = next_sweep(&batond, last.as_deref()).await?;
        let stats = sim_stats(&sim, false).await;
        let concurrent = stats
            .as_ref()
            .map_or_else(|e| format!("? ({e})"), |(_, _, c)| c.to_string());
        peak_rss = peak_rss.max(peak);
        let (what, k) = if n == 1 {
            ("sync sweep 1 (first contact)", FIRST_CONTACT_REQUESTS)
        } else {
            ("sync sweep (sessions open)", 1.0)
        };
        let wall = Duration::from_millis(sweep.duration_ms);
        ok &= report_ratio(
            what,
            wall,
            bound.mul_f64(k),
            true,
            &format!(
                "N·{k}·L/W_sync with N = {SYNC_NODES}, L = {} ms, W_sync = {SYNC_WORKERS}; \
                 {} read, {} failed, {} changed; at most {concurrent} request at once per BMC",
                LATENCY.as_millis(),
                sweep.read,
                sweep.failed,
                sweep.changed
            ),
        );
        if let Ok((requests, _, _)) = stats {
            println!(
                "  {requests} HTTP requests seen by hw-sim ({:.2} per node)",
                requests as f64 / SYNC_NODES as f64
            );
        }
        if sweep.read != SYNC_NODES as u64 {
            println!(
                "  MISSED: the sweep read {} of {SYNC_NODES} nodes",
                sweep.read
            );
            ok = false;
        }
        last = Some(sweep.started_at);
    }
    let rss_ok = peak_rss < RSS_TARGET_MB;
    println!(
        "batond RSS with {SYNC_NODES} nodes during the sweeps: {peak_rss:.1} MB (target < {RSS_TARGET_MB} MB) {}",
        verdict(rss_ok)
    );
    Ok(ok && rss_ok)
}

fn main() -> BenchResult<()> {
    let hwsim = build()?;
    println!(
        "conductor bench on {} CPUs",
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    // `cargo bench … -- sync` runs only the parts whose name contains an
    // argument (cargo itself passes `--bench`).
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted =
        |part: &str| filters.is_empty() || filters.iter().any(|f| part.contains(f.as_str()));
    let fleet_ok = !wanted("fleet") || runtime.block_on(fleet_bench(&hwsim))?;
    let sync_ok = !wanted("sync") || runtime.block_on(sync_bench(&hwsim))?;
    println!(
        "conductor bench: {}",
        if fleet_ok && sync_ok {
            "every figure within its target"
        } else {
            "some figures MISSED their targets (see above)"
        }
    );
    Ok(())
}
