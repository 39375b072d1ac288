//! Batch benchmark: the "Speed" figures of batches, printed in one table
//! beside their bounds, with an ok/MISSED verdict.
//!
//! For a 1000-node hw-sim rack (20 ms latency, 1 s transitions) enrolled
//! all through Redfish, then one enrolled all through IPMI, batond (100
//! workers) runs `POST /v1/baremetalservers/action`:
//!
//! 1. a warm-up `os-start` of nodes already on (one read each, no command;
//!    it opens every BMC session, as a running conductor's sync sweeps
//!    would have) — shown, not judged;
//! 2. `os-stop` HARD of all 1000, then `os-start` of all 1000: the accept
//!    latency (POST to 200; target < 20 ms) and the wall time from the
//!    POST until the job is `SUCCESS`, beside the bound T + 2L + N·2L/W
//!    (one transition, one command and one read for the last node, every
//!    node's command and read through W workers: 1.44 s), target ratio
//!    ≤ 1.15;
//! 3. batond restarted with `power_on.max_per_domain = 10`, warmed up and
//!    stopped again, then `os-start` of all 1000 beside that schedule's
//!    own bound (see [`staggered_bound`]).
//!
//! Every judged batch must also show exactly one power command per node
//! at hw-sim and never two requests at once on one BMC. hw-sim and batond
//! run as separate release-built processes. Run with `cargo bench -p
//! baton-tests --bench batch`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use batond::api::types::{JobCreated, JobDocument};
use batond::client::{Client, Connection};
use bytes::Bytes;
use common::{build, sim_stats, start_batond, verdict, BenchResult, HwSim, RackTiming};
use http::Method;
use serde_json::{json, Value};

const FLEET: usize = 1000;
const LATENCY: Duration = Duration::from_millis(20);
const TRANSITION: Duration = Duration::from_secs(1);
const WORKERS: usize = 100;
/// hw-sim's default: domains `rack-1` … `rack-25` of 40 nodes each.
const NODES_PER_DOMAIN: usize = 40;
const MAX_PER_DOMAIN: usize = 10;
/// Longest the bench waits for a job.
const PATIENCE: Duration = Duration::from_secs(120);

const ACCEPT_TARGET: Duration = Duration::from_millis(20);
const RATIO_TARGET: f64 = 1.15;

const RACK: RackTiming = RackTiming {
    nodes: FLEET,
    latency: LATENCY,
    transition: TRANSITION,
};

/// T + 2L + N·2L/W: the last node's command, transition and read, after
/// every node's command and read went through W workers.
fn bound() -> Duration {
    let l = LATENCY.as_secs_f64();
    TRANSITION + Duration::from_secs_f64(2.0 * l + FLEET as f64 * 2.0 * l / WORKERS as f64)
}

/// The bound of a start with at most M of a domain's D nodes powering on
/// at once. A node holds its domain's slot from its power-on command until
/// a read sees it on: at least one command (L), the transition (T) and one
/// read (L). So each domain powers on in ⌈D/M⌉ waves of at least T + 2L
/// each, and the domains go side by side (25 domains × 10 = 250 nodes
/// powering on at once ask the 100 workers for 2L of each node's 2L + T,
/// well within them). Nor can it beat the unlimited bound. An IPMI BMC
/// reports "on" as soon as power is applied (no transitional state), so
/// there a slot is held only until the conductor's first read, timed by
/// its learned transition estimate: an IPMI start may come in under this.
fn staggered_bound() -> Duration {
    let waves = NODES_PER_DOMAIN.div_ceil(MAX_PER_DOMAIN) as u32;
    let wave = TRANSITION + 2 * LATENCY;
    (wave * waves).max(bound())
}

/// The warm-up's bound: one read per node through W workers.
fn read_bound() -> Duration {
    LATENCY + Duration::from_secs_f64(FLEET as f64 * LATENCY.as_secs_f64() / WORKERS as f64)
}

/// One batch as measured.
struct Row {
    rack: &'static str,
    what: String,
    accept: Duration,
    wall: Duration,
    bound: Duration,
    /// Whether it is judged against the targets.
    judged: bool,
    commands: u64,
    want_commands: u64,
    concurrent: u64,
    status: String,
}

impl Row {
    fn ratio(&self) -> f64 {
        self.wall.as_secs_f64() / self.bound.as_secs_f64()
    }

    fn ok(&self) -> bool {
        !self.judged
            || (self.accept < ACCEPT_TARGET
                && self.ratio() <= RATIO_TARGET
                && self.commands == self.want_commands
                && self.concurrent <= 1
                && self.status == "SUCCESS")
    }

    fn print(&self) {
        let verdict = if self.judged {
            verdict(self.ok())
        } else {
            "(not judged)"
        };
        println!(
            "| {:<7} | {:<42} | {:>9.2} | {:>7.3} | {:>7.3} | {:>5.2} | {:>5}/{:<5} | {:>3} | {:<7} | {verdict}",
            self.rack,
            self.what,
            self.accept.as_secs_f64() * 1e3,
            self.wall.as_secs_f64(),
            self.bound.as_secs_f64(),
            self.ratio(),
            self.commands,
            self.want_commands,
            self.concurrent,
            self.status,
        );
    }
}

fn print_header() {
    println!(
        "| {:<7} | {:<42} | {:>9} | {:>7} | {:>7} | {:>5} | {:>11} | {:>3} | {:<7} | verdict",
        "rack", "batch", "accept ms", "wall s", "bound s", "ratio", "cmds/want", "cc", "job"
    );
}

/// `{"<action>": {"servers": [...]}}` for every node in `names`.
fn body(action: &str, stop_type: Option<&str>, names: &[String]) -> Bytes {
    let servers: Vec<Value> = names.iter().map(|n| json!({ "id": n })).collect();
    let mut inner = json!({ "servers": servers });
    if let Some(t) = stop_type {
        inner["type"] = json!(t);
    }
    Bytes::from(json!({ action: inner }).to_string())
}

/// Every node's name.
async fn node_names(client: &Client) -> BenchResult<Vec<String>> {
    let list: Value = client
        .get(&format!("/v1/nodes?limit={FLEET}"))
        .await
        .map_err(|e| format!("list nodes: {e}"))?;
    Ok(list["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .filter_map(|n| n["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// Posts a batch on `conn` and waits until its job is finished: `(accept
/// latency, wall time from the POST until the job was seen finished, the
/// job)`. The job is watched through the listing (newest first, no
/// sub-jobs), which is light enough to poll every few milliseconds.
async fn run_batch(
    conn: &mut Connection,
    body: Bytes,
) -> BenchResult<(Duration, Duration, JobDocument)> {
    let started = Instant::now();
    let r = conn
        .request(Method::POST, "/v1/baremetalservers/action", Some(body))
        .await
        .map_err(|e| format!("POST batch: {e}"))?;
    let accept = started.elapsed();
    if r.status.as_u16() != 200 {
        return Err(format!(
            "POST batch: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ));
    }
    let created: JobCreated = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
    loop {
        let r = conn
            .request(Method::GET, "/v1/jobs?limit=1", None)
            .await
            .map_err(|e| format!("GET /v1/jobs: {e}"))?;
        let seen = started.elapsed();
        let list: Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
        let job: JobDocument = serde_json::from_value(list["jobs"][0].clone())
            .map_err(|e| format!("GET /v1/jobs: {e}: {list}"))?;
        if job.job_id != created.job_id {
            return Err(format!("the newest job is {}, not ours", job.job_id));
        }
        if matches!(job.status.as_str(), "SUCCESS" | "FAIL") {
            return Ok((accept, seen, job));
        }
        if seen > PATIENCE {
            return Err(format!(
                "job {} not finished within {PATIENCE:?}",
                job.job_id
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// What one batch is and how it is judged.
struct Plan {
    what: String,
    action: &'static str,
    stop_type: Option<&'static str>,
    bound: Duration,
    judged: bool,
    want_commands: u64,
}

async fn measure(
    rack: &'static str,
    conn: &mut Connection,
    sim: &HwSim,
    names: &[String],
    plan: Plan,
) -> BenchResult<Row> {
    sim_stats(sim, true).await?;
    let (accept, wall, job) = run_batch(conn, body(plan.action, plan.stop_type, names)).await?;
    let (_, commands, concurrent) = sim_stats(sim, false).await?;
    if job.status != "SUCCESS" {
        println!(
            "  {rack} {}: job {}: {:?}",
            plan.what, job.status, job.fail_reason
        );
    }
    let row = Row {
        rack,
        what: plan.what,
        accept,
        wall,
        bound: plan.bound,
        judged: plan.judged,
        commands,
        want_commands: plan.want_commands,
        concurrent,
        status: job.status,
    };
    row.print();
    Ok(row)
}

fn warm_up(what: &str) -> Plan {
    Plan {
        what: format!("warm-up: os-start, already on{what}"),
        action: "os-start",
        stop_type: None,
        bound: read_bound(),
        judged: false,
        want_commands: 0,
    }
}

fn change(
    what: &str,
    action: &'static str,
    stop_type: Option<&'static str>,
    bound: Duration,
    judged: bool,
) -> Plan {
    Plan {
        what: what.to_owned(),
        action,
        stop_type,
        bound,
        judged,
        want_commands: FLEET as u64,
    }
}

fn batond_toml(extra: &str) -> String {
    format!(
        "[conductor]\nworkers = {WORKERS}\n[sync]\ninterval = \"1h\"\nrecovery_interval = \"1h\"\n{extra}"
    )
}

/// Every batch on one rack, enrolled through `driver`.
async fn rack_bench(hwsim: &Path, rack: &'static str) -> BenchResult<Vec<Row>> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let sim = common::start_hwsim(hwsim, dir.path(), RACK, &["--export-driver", rack])?;
    let mut batond = start_batond(dir.path(), &sim, &batond_toml("")).await?;
    let client = batond.client();
    let names = node_names(&client).await?;
    if names.len() != FLEET {
        return Err(format!("{} nodes enrolled, want {FLEET}", names.len()));
    }
    let mut conn = client.connect().await.map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for plan in [
        warm_up(""),
        change("os-stop HARD", "os-stop", Some("HARD"), bound(), true),
        change("os-start", "os-start", None, bound(), true),
    ] {
        rows.push(measure(rack, &mut conn, &sim, &names, plan).await?);
    }

    // The same database, with staggered power-on.
    drop(conn);
    let status = batond.stop_with(nix::sys::signal::Signal::SIGTERM);
    if !status.success() {
        return Err(format!("batond did not stop cleanly: {status}"));
    }
    let limit = format!("[power_on]\nmax_per_domain = {MAX_PER_DOMAIN}\n");
    let batond = baton_tests::daemon::DaemonProcess::start(dir.path(), &batond_toml(&limit)).await;
    let mut conn = batond.client().connect().await.map_err(|e| e.to_string())?;
    let staggered = format!("os-start, max_per_domain = {MAX_PER_DOMAIN}");
    for plan in [
        warm_up(" (restarted)"),
        change(
            "os-stop HARD (restarted)",
            "os-stop",
            Some("HARD"),
            bound(),
            false,
        ),
        change(&staggered, "os-start", None, staggered_bound(), true),
    ] {
        rows.push(measure(rack, &mut conn, &sim, &names, plan).await?);
    }
    Ok(rows)
}

fn main() -> BenchResult<()> {
    let hwsim = build()?;
    println!(
        "batch bench on {} CPUs: {FLEET} hw-sim nodes ({} ms latency, {} s transitions, \
         {NODES_PER_DOMAIN} per power domain; separate process), batond (separate process) \
         with {WORKERS} workers; targets: accept < {} ms, wall ≤ {RATIO_TARGET} × bound, \
         one power command per node, at most one request at once per BMC (cc)",
        std::thread::available_parallelism().map_or(1, usize::from),
        LATENCY.as_millis(),
        TRANSITION.as_secs(),
        ACCEPT_TARGET.as_millis(),
    );
    println!(
        "bounds: T + 2L + N·2L/W = {:.3} s; with max_per_domain = {MAX_PER_DOMAIN}: \
         ⌈D/M⌉·(T + 2L) = {:.3} s; warm-up L + N·L/W = {:.3} s",
        bound().as_secs_f64(),
        staggered_bound().as_secs_f64(),
        read_bound().as_secs_f64()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    print_header();
    let mut ok = true;
    for rack in ["redfish", "ipmi"] {
        for row in runtime.block_on(rack_bench(&hwsim, rack))? {
            ok &= row.ok();
        }
    }
    println!(
        "batch bench: {}",
        if ok {
            "every figure within its target"
        } else {
            "some figures MISSED their targets (see above)"
        }
    );
    Ok(())
}
