//! What the benches share: release builds of `baton-hwsim` and `batond`,
//! a hw-sim rack as a separate process (killed on drop) with its stats
//! from the control API, batond started on it with the rack imported, and
//! the ok/MISSED verdict every printed figure carries.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baton_tests::daemon::DaemonProcess;
use bytes::Bytes;
use http::Method;

/// The password of every simulated BMC.
pub const PASSWORD: &str = "bench-password";

pub type BenchResult<T> = Result<T, String>;

fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Builds the release `baton-hwsim` and `batond` binaries the bench runs
/// (the bench itself lives in `target/release/deps`, so the harness finds
/// `batond` beside it); returns hw-sim's path.
pub fn build() -> BenchResult<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "baton-hwsim",
            "-p",
            "batond",
            "--bins",
        ])
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("cargo build: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build --release failed: {status}"));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from);
    Ok(target.join("release/baton-hwsim"))
}

/// A hw-sim process, killed on drop.
pub struct HwSim {
    child: Child,
    control: String,
    pub inventory: PathBuf,
}

impl Drop for HwSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> BenchResult<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// A rack's size and timing.
#[derive(Debug, Clone, Copy)]
pub struct RackTiming {
    pub nodes: usize,
    /// Every BMC request's latency.
    pub latency: Duration,
    /// Power-on and power-off transition time.
    pub transition: Duration,
}

/// Starts hw-sim, every node on, with `extra` arguments; waits for its
/// inventory.
pub fn start_hwsim(
    binary: &Path,
    dir: &Path,
    rack: RackTiming,
    extra: &[&str],
) -> BenchResult<HwSim> {
    let inventory = dir.join("inventory.json");
    let control_port = free_port()?;
    let transition = format!("{}ms", rack.transition.as_millis());
    let child = Command::new(binary)
        .args(["--nodes", &rack.nodes.to_string()])
        .args(["--latency", &format!("{}ms", rack.latency.as_millis())])
        .args(["--power-on-delay", &transition])
        .args(["--power-off-delay", &transition])
        .args(["--control-port", &control_port.to_string()])
        .args(["--initial-power", "on"])
        .arg("--export-inventory")
        .arg(&inventory)
        .args(extra)
        .env("BATON_HWSIM_PASSWORD", PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start {}: {e}", binary.display()))?;
    let mut sim = HwSim {
        child,
        control: format!("http://127.0.0.1:{control_port}"),
        inventory,
    };
    let start = Instant::now();
    while !sim.inventory.exists() {
        if let Ok(Some(status)) = sim.child.try_wait() {
            return Err(format!("hw-sim exited: {status}"));
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err("hw-sim did not start within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The file is written whole once every endpoint is bound; give the
    // writer a moment to finish it.
    std::thread::sleep(Duration::from_millis(200));
    Ok(sim)
}

// Not every bench drives the control API.
#[allow(dead_code)]
impl HwSim {
    /// The URL of `path` on hw-sim's control API.
    pub fn control_url(&self, path: &str) -> String {
        format!("{}{path}", self.control)
    }
}

/// What hw-sim's BMCs saw: `(requests, power commands, most concurrent on
/// one BMC)`; `reset` starts the counts again.
pub async fn sim_stats(sim: &HwSim, reset: bool) -> BenchResult<(u64, u64, u64)> {
    // Bounded: a simulator out of file descriptors accepts no connection,
    // and the bench must not wait on it forever.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("hw-sim stats: {e}"))?;
    let request = if reset {
        http.post(format!("{}/stats/reset", sim.control))
    } else {
        http.get(format!("{}/stats", sim.control))
    };
    let stats: serde_json::Value = request
        .send()
        .await
        .map_err(|e| format!("hw-sim stats: {e}"))?
        .json()
        .await
        .map_err(|e| format!("hw-sim stats: {e}"))?;
    let field = |k: &str| stats[k].as_u64().unwrap_or(0);
    Ok((
        field("total_requests"),
        field("power_commands"),
        field("max_concurrent_per_bmc"),
    ))
}

/// Starts batond on a temp config with `toml` added, and imports the rack.
pub async fn start_batond(dir: &Path, sim: &HwSim, toml: &str) -> BenchResult<DaemonProcess> {
    let batond = DaemonProcess::start(dir, toml).await;
    let body = std::fs::read_to_string(&sim.inventory).map_err(|e| e.to_string())?;
    let r = batond
        .client()
        .request(Method::POST, "/v1/nodes/import", Some(Bytes::from(body)))
        .await
        .map_err(|e| format!("import: {e}"))?;
    if r.status.as_u16() != 200 {
        return Err(format!(
            "import: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ));
    }
    Ok(batond)
}

/// Resident set size of process `pid`, in MB (10^6 bytes).
#[allow(dead_code)] // Not every bench watches memory.
pub fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb * 1024.0 / 1e6)
}

/// File descriptors process `pid` has open.
#[allow(dead_code)] // Not every bench watches descriptors.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}
