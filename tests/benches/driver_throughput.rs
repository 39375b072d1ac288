//! Driver benchmark: `power_state()` calls per second against 1000 hw-sim
//! nodes with 20 ms latency at 100 concurrent calls, for Redfish and IPMI,
//! beside the ideal 100 / 20 ms = 5000 calls/s; and the memory one open
//! Redfish or IPMI session costs the client.
//!
//! hw-sim runs as its own process (built here with `cargo build --release
//! -p baton-hwsim`), and each protocol is measured in a fresh child process
//! of this bench, so the memory figure is the driver's alone: the growth of
//! that process's RSS while opening one session per node, divided by the
//! node count. Run with `cargo bench -p baton-tests --bench driver_throughput`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_drivers::{DriverConfig, DriverFactory, DriverKind, PowerDriver};

const NODES: usize = 1000;
const LATENCY_MS: u64 = 20;
const CONCURRENCY: usize = 100;
const MEASURE: Duration = Duration::from_secs(10);
const PASSWORD: &str = "bench-password";
/// The README's target (Benchmarks): calls per second per protocol.
const TARGET_CALLS_PER_SEC: f64 = 4500.0;

type BenchResult<T> = Result<T, String>;

/// Set in the child processes: which protocol to measure, and the ports.
const CHILD_ENV: &str = "BATON_BENCH_PROTOCOL";
const PORTS_ENV: &str = "BATON_BENCH_PORTS";

/// Where the simulated BMCs listen.
#[derive(Debug, Clone)]
struct Ports {
    redfish_base: u16,
    ipmi_base: u16,
    /// The hw-sim process id, for its CPU time.
    pid: String,
}

/// The hw-sim process, killed on drop.
struct HwSim {
    child: Child,
    ports: Ports,
    _dir: tempfile::TempDir,
}

impl Drop for HwSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn build_hwsim() -> BenchResult<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "baton-hwsim",
            "--bin",
            "baton-hwsim",
        ])
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("cargo build: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build -p baton-hwsim failed: {status}"));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from);
    Ok(target.join("release/baton-hwsim"))
}

/// A base port with `NODES` free TCP and UDP ports above it.
fn free_range(start: u16) -> Option<u16> {
    let n = u16::try_from(NODES).ok()?;
    (start..start.checked_add(20 * n)?)
        .step_by(NODES)
        .find(|&base| {
            (base..base + n).all(|p| {
                std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
                    && std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok()
            })
        })
}

fn start_hwsim(binary: &Path) -> BenchResult<HwSim> {
    let redfish_base = free_range(21000).ok_or("no free Redfish port range")?;
    let ipmi_base = free_range(redfish_base + 1000).ok_or("no free IPMI port range")?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let inventory = dir.path().join("inventory.json");
    let child = Command::new(binary)
        .args(["--nodes", &NODES.to_string()])
        .args(["--latency", &format!("{LATENCY_MS}ms")])
        .args(["--redfish-base-port", &redfish_base.to_string()])
        .args(["--ipmi-base-port", &ipmi_base.to_string()])
        .args(["--initial-power", "on"])
        .arg("--export-inventory")
        .arg(&inventory)
        .env("BATON_HWSIM_PASSWORD", PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start {}: {e}", binary.display()))?;
    let pid = child.id().to_string();
    let mut sim = HwSim {
        child,
        ports: Ports {
            redfish_base,
            ipmi_base,
            pid,
        },
        _dir: dir,
    };
    let start = Instant::now();
    while !inventory.exists() {
        if let Ok(Some(status)) = sim.child.try_wait() {
            return Err(format!("hw-sim exited: {status}"));
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err("hw-sim did not start within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(sim)
}

fn drivers(sim: &Ports, kind: DriverKind) -> BenchResult<Vec<Arc<dyn PowerDriver>>> {
    let factory = DriverFactory::new();
    (0..NODES)
        .map(|i| {
            let offset = u16::try_from(i).map_err(|e| e.to_string())?;
            let (address, base) = match kind {
                DriverKind::Redfish => ("http://127.0.0.1", sim.redfish_base),
                DriverKind::Ipmi => ("127.0.0.1", sim.ipmi_base),
            };
            let config = DriverConfig::new(kind, address, Some(base + offset), "admin", PASSWORD);
            factory.build(&config).map_err(|e| e.to_string())
        })
        .collect()
}

/// Resident set size of this process, in bytes.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// CPU time (user + system) of process `pid` ("self" for this one).
fn cpu_time(pid: &str) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces): utime is the
    // 12th, stime the 13th; clock ticks are 100 Hz on Linux.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let ticks = fields.get(10).copied().unwrap_or(0) + fields.get(11).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Calls `power_state()` with `CONCURRENCY` workers over every driver, each
/// driver once per round, for `duration` (or once over all when `None`).
async fn hammer(
    drivers: &Arc<Vec<Arc<dyn PowerDriver>>>,
    duration: Option<Duration>,
) -> (usize, usize, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (drivers, next, errors) = (drivers.clone(), next.clone(), errors.clone());
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let done = match duration {
                    Some(d) => start.elapsed() >= d,
                    None => i >= drivers.len(),
                };
                if done {
                    break;
                }
                if drivers[i % drivers.len()].power_state().await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let calls = next.load(Ordering::Relaxed).saturating_sub(CONCURRENCY);
    let calls = match duration {
        Some(_) => calls,
        None => drivers.len(),
    };
    (calls, errors.load(Ordering::Relaxed), start.elapsed())
}

async fn bench(sim: &Ports, kind: DriverKind) -> BenchResult<()> {
    let before = rss();
    let drivers = Arc::new(drivers(sim, kind)?);
    let built = rss();
    // The first call per node opens its session (Redfish login, RMCP+ RAKP).
    let (_, open_errors, open_time) = hammer(&drivers, None).await;
    let opened = rss();
    let cpu_before = cpu_time("self");
    let sim_before = cpu_time(&sim.pid);
    let (calls, errors, elapsed) = hammer(&drivers, Some(MEASURE)).await;
    let client_cpu = cpu_time("self").saturating_sub(cpu_before);
    let sim_cpu = cpu_time(&sim.pid).saturating_sub(sim_before);
    let rate = calls as f64 / elapsed.as_secs_f64();
    let ideal = CONCURRENCY as f64 * 1000.0 / LATENCY_MS as f64;
    println!(
        "{kind:<7} power_state(): {rate:>6.0} calls/s at {CONCURRENCY} concurrent over {NODES} nodes \
         ({calls} calls in {:.1} s, {errors} errors) — ideal {CONCURRENCY} / {LATENCY_MS} ms = {ideal:.0}/s, {:.0}% of it",
        elapsed.as_secs_f64(),
        100.0 * rate / ideal
    );
    println!(
        "{kind:<7} target >= {TARGET_CALLS_PER_SEC:.0} calls/s: {}",
        verdict(rate >= TARGET_CALLS_PER_SEC && errors == 0)
    );
    println!(
        "{kind:<7} memory: {:.1} KiB per driver, {:.1} KiB per open session \
         ({NODES} sessions opened in {:.1} s, {open_errors} errors)",
        built.saturating_sub(before) as f64 / 1024.0 / NODES as f64,
        opened.saturating_sub(built) as f64 / 1024.0 / NODES as f64,
        open_time.as_secs_f64()
    );
    println!(
        "{kind:<7} CPU per call: driver {:.0} µs, hw-sim {:.0} µs",
        client_cpu.as_secs_f64() * 1e6 / calls.max(1) as f64,
        sim_cpu.as_secs_f64() * 1e6 / calls.max(1) as f64,
    );
    for driver in drivers.iter() {
        driver.close().await;
    }
    Ok(())
}

/// "ok" when a figure met its target, "MISSED" otherwise.
fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}

/// Measures one protocol in this (child) process.
fn child(protocol: &str) -> BenchResult<()> {
    let kind: DriverKind = protocol.parse().map_err(|e| format!("{e}"))?;
    let ports = std::env::var(PORTS_ENV).map_err(|_| format!("{PORTS_ENV} not set"))?;
    let parts: Vec<&str> = ports.split(',').collect();
    let [redfish, ipmi, pid] = parts.as_slice() else {
        return Err(format!("{PORTS_ENV}={ports}: want redfish,ipmi,pid"));
    };
    let ports = Ports {
        redfish_base: redfish.parse().map_err(|_| "bad Redfish port")?,
        ipmi_base: ipmi.parse().map_err(|_| "bad IPMI port")?,
        pid: (*pid).to_owned(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(bench(&ports, kind))
}

fn main() -> BenchResult<()> {
    if let Ok(protocol) = std::env::var(CHILD_ENV) {
        return child(&protocol);
    }
    let binary = build_hwsim()?;
    let sim = start_hwsim(&binary)?;
    println!(
        "driver bench: {NODES} hw-sim nodes (separate process), {LATENCY_MS} ms latency, \
         {CONCURRENCY} concurrent calls, {} s per protocol, {} CPUs",
        MEASURE.as_secs(),
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    for protocol in ["redfish", "ipmi"] {
        let status = Command::new(&me)
            .env(CHILD_ENV, protocol)
            .env(
                PORTS_ENV,
                format!(
                    "{},{},{}",
                    sim.ports.redfish_base, sim.ports.ipmi_base, sim.ports.pid
                ),
            )
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("{protocol} bench failed: {status}"));
        }
    }
    Ok(())
}
