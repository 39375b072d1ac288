//! Fault-matrix benchmark: the full-size run of
//! `tests/tests/reliability_faults.rs`, with the daemon's responsiveness
//! during the batches printed beside its target.
//!
//! A 1000-node hw-sim rack (separate process, 20 ms latency, 1 s
//! transitions and shutdowns), half Redfish and half IPMI, gets the seeded
//! faults of [`baton_tests::faultmatrix`] through its control API; batond
//! (separate process, 100 workers) runs a soft stop, a start and a soft
//! reboot of all 1000 as batches. For each batch it prints the sub-jobs
//! that failed against those the matrix says must fail (and any sub-job
//! that differs from the matrix), the most requests one BMC served at
//! once (target ≤ 1), and the p99 of `GET /v1/nodes/{ident}` and
//! `GET /v1/jobs/{id}` asked by four clients while the batch runs (target
//! < 50 ms). Then batond is restarted with the power sync every 2 s: the
//! persistently unreadable nodes must go to maintenance with fault "power
//! failure" and come back once hw-sim's faults are cleared.
//!
//! Run with `cargo bench -p baton-tests --bench faults`.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_tests::faultmatrix::{judge, Injected, Matrix, Phase, Verdict};
use batond::api::types::{JobCreated, JobDocument};
use batond::client::Client;
use bytes::Bytes;
use common::{build, sim_stats, start_batond, verdict, BenchResult, HwSim, RackTiming};
use http::Method;
use serde_json::Value;

const FLEET: usize = 1000;
const SEED: u64 = 12;
const LATENCY: Duration = Duration::from_millis(20);
const TRANSITION: Duration = Duration::from_secs(1);
const READERS: usize = 4;
const P99_TARGET: Duration = Duration::from_millis(50);
/// Longest the bench waits for a job or a sweep.
const PATIENCE: Duration = Duration::from_secs(300);

const RACK: RackTiming = RackTiming {
    nodes: FLEET,
    latency: LATENCY,
    transition: TRANSITION,
};

const CONDUCTOR: &str = "[conductor]\nworkers = 100\nbmc_timeout = \"5s\"\nmax_retries = 3\n\
                         power_state_change_timeout = \"10s\"\nsoft_power_off_timeout = \"5s\"\n";

fn toml(sync_interval: &str) -> String {
    format!(
        "{CONDUCTOR}[sync]\ninterval = \"{sync_interval}\"\nrecovery_interval = \"{sync_interval}\"\n\
         max_failures = 2\nworkers = 32\n"
    )
}

fn http() -> BenchResult<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())
}

/// Gives each node its fault of the matrix through the control API.
async fn inject(sim: &HwSim, names: &[String], matrix: &Matrix) -> BenchResult<()> {
    let http = http()?;
    for (i, fault) in matrix.faulty() {
        let url = sim.control_url(&format!("/nodes/{}/faults", names[i]));
        let r = http
            .put(url)
            .json(&fault.faults())
            .send()
            .await
            .map_err(|e| format!("set faults: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("set faults of {}: {}", names[i], r.status()));
        }
    }
    Ok(())
}

/// Requests node `name`'s BMC has received.
async fn requests_seen(http: &reqwest::Client, sim: &HwSim, name: &str) -> Option<u64> {
    let node: Value = http
        .get(sim.control_url(&format!("/nodes/{name}")))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    node["counters"]["requests"].as_u64()
}

/// Makes every busy node busy again and clears it once it has refused a
/// request (a busy spell the conductor's retries must outlast).
async fn busy_spells(
    sim: &HwSim,
    names: &[String],
    matrix: &Matrix,
) -> BenchResult<Vec<(String, u64)>> {
    let http = http()?;
    let mut spells = Vec::new();
    for i in matrix.nodes_with(Injected::Busy) {
        let name = names[i].clone();
        http.put(sim.control_url(&format!("/nodes/{name}/faults")))
            .json(&Injected::Busy.faults())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let before = requests_seen(&http, sim, &name).await.unwrap_or(0);
        spells.push((name, before));
    }
    Ok(spells)
}

/// One round of ending the busy spells whose node refused a request.
async fn end_spells(http: &reqwest::Client, sim: &HwSim, spells: &mut Vec<(String, u64)>) {
    let mut still = Vec::new();
    for (name, before) in spells.drain(..) {
        let now = requests_seen(http, sim, &name).await.unwrap_or(before);
        if now > before {
            let _ = http
                .delete(sim.control_url(&format!("/nodes/{name}/faults")))
                .send()
                .await;
        } else {
            still.push((name, before));
        }
    }
    *spells = still;
}

/// Latencies of the readers' requests, in the order they finished.
#[derive(Default)]
struct Latencies {
    node: Vec<Duration>,
    job: Vec<Duration>,
}

fn p99(samples: &mut [Duration]) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = (samples.len() * 99).div_ceil(100).max(1);
    samples[rank - 1]
}

/// A client asking for a node and the job in turn until `stop`.
async fn reader(
    client: Client,
    names: Arc<Vec<String>>,
    job_id: String,
    seed: usize,
    stop: Arc<AtomicBool>,
) -> BenchResult<Latencies> {
    let mut conn = client.connect().await.map_err(|e| e.to_string())?;
    let mut latencies = Latencies::default();
    let mut k = seed;
    while !stop.load(Ordering::Relaxed) {
        k = k.wrapping_mul(7919).wrapping_add(13) % names.len();
        let started = Instant::now();
        let r = conn
            .request(Method::GET, &format!("/v1/nodes/{}", names[k]), None)
            .await
            .map_err(|e| format!("GET node: {e}"))?;
        latencies.node.push(started.elapsed());
        if r.status.as_u16() != 200 {
            return Err(format!("GET node: {}", r.status));
        }
        let started = Instant::now();
        let r = conn
            .request(Method::GET, &format!("/v1/jobs/{job_id}"), None)
            .await
            .map_err(|e| format!("GET job: {e}"))?;
        latencies.job.push(started.elapsed());
        if r.status.as_u16() != 200 {
            return Err(format!("GET job: {}", r.status));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(latencies)
}

/// One batch as measured.
struct Row {
    phase: Phase,
    wall: Duration,
    verdict: Verdict,
    concurrent: u64,
    node_p99: Duration,
    job_p99: Duration,
    samples: usize,
}

impl Row {
    fn ok(&self) -> bool {
        self.verdict.mismatches.is_empty()
            && self.concurrent <= 1
            && self.node_p99 < P99_TARGET
            && self.job_p99 < P99_TARGET
    }

    fn print(&self) {
        let v = &self.verdict;
        println!(
            "| {:<12} | {:>6.1} | {:>4} | {:>6} | {:>9} | {:>8} | {:>10} | {:>3} | {:>9.2} | {:>9.2} | {:>6} | {}",
            self.phase.name(),
            self.wall.as_secs_f64(),
            v.succeeded,
            v.failed,
            v.must_fail,
            v.flapping_failed,
            v.mismatches.len(),
            self.concurrent,
            self.node_p99.as_secs_f64() * 1e3,
            self.job_p99.as_secs_f64() * 1e3,
            self.samples,
            verdict(self.ok()),
        );
        for line in v.mismatches.iter().take(10) {
            println!("    differs: {line}");
        }
    }
}

/// The job with its sub-jobs.
async fn job(client: &Client, job_id: &str) -> BenchResult<JobDocument> {
    client
        .get(&format!("/v1/jobs/{job_id}"))
        .await
        .map_err(|e| format!("GET job: {e}"))
}

async fn run_phase(
    client: &Client,
    sim: &HwSim,
    names: &Arc<Vec<String>>,
    matrix: &Matrix,
    phase: Phase,
) -> BenchResult<Row> {
    let index: HashMap<String, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), i))
        .collect();
    // Counters first: a spell ends when its node's request count rises.
    sim_stats(sim, true).await?;
    let mut spells = busy_spells(sim, names, matrix).await?;
    let started = Instant::now();
    let r = client
        .request(
            Method::POST,
            "/v1/baremetalservers/action",
            Some(Bytes::from(phase.body(names).to_string())),
        )
        .await
        .map_err(|e| format!("POST batch: {e}"))?;
    if r.status.as_u16() != 200 {
        return Err(format!("POST batch: {}", r.status));
    }
    let created: JobCreated = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..READERS)
        .map(|seed| {
            tokio::spawn(reader(
                client.clone(),
                Arc::clone(names),
                created.job_id.clone(),
                seed * 251 + 1,
                Arc::clone(&stop),
            ))
        })
        .collect();
    let http = http()?;
    let finished = loop {
        end_spells(&http, sim, &mut spells).await;
        let list: Value = client
            .get("/v1/jobs?limit=1")
            .await
            .map_err(|e| format!("GET /v1/jobs: {e}"))?;
        let status = list["jobs"][0]["status"].as_str().unwrap_or_default();
        if matches!(status, "SUCCESS" | "FAIL") {
            break started.elapsed();
        }
        if started.elapsed() > PATIENCE {
            return Err(format!("{} not finished within {PATIENCE:?}", phase.name()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.store(true, Ordering::Relaxed);
    // A node the batch sent nothing (IPMI asked for a soft reboot) is
    // still in its spell: it ends with the batch.
    for (name, _) in spells {
        let _ = http
            .delete(sim.control_url(&format!("/nodes/{name}/faults")))
            .send()
            .await;
    }
    let mut all = Latencies::default();
    for r in readers {
        let l = r.await.map_err(|e| e.to_string())??;
        all.node.extend(l.node);
        all.job.extend(l.job);
    }
    let (_, _, concurrent) = sim_stats(sim, false).await?;
    let job = job(client, &created.job_id).await?;
    Ok(Row {
        phase,
        wall: finished,
        verdict: judge(&job, matrix, phase, &index),
        concurrent,
        samples: all.node.len(),
        node_p99: p99(&mut all.node),
        job_p99: p99(&mut all.job),
    })
}

/// Names of the nodes in maintenance, each checked for its fault.
async fn in_maintenance(client: &Client) -> BenchResult<BTreeSet<String>> {
    let list: Value = client
        .get(&format!("/v1/nodes/detail?maintenance=true&limit={FLEET}"))
        .await
        .map_err(|e| format!("list nodes: {e}"))?;
    let mut names = BTreeSet::new();
    for node in list["nodes"].as_array().into_iter().flatten() {
        let name = node["name"].as_str().unwrap_or_default().to_owned();
        if node["fault"] != "power failure" {
            return Err(format!(
                "{name} in maintenance with fault {}",
                node["fault"]
            ));
        }
        names.insert(name);
    }
    Ok(names)
}

/// When the newest sync sweep started, from `GET /v1/conductor`.
async fn last_sync_sweep(client: &Client) -> BenchResult<Option<String>> {
    let doc: Value = client
        .get("/v1/conductor")
        .await
        .map_err(|e| format!("GET /v1/conductor: {e}"))?;
    Ok(doc["last_sweeps"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["kind"] == "sync")
        .and_then(|s| s["started_at"].as_str().map(str::to_owned)))
}

/// Polls `check` every 200 ms until it yields `Some`.
async fn poll<T, F, Fut>(what: &str, mut check: F) -> BenchResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = BenchResult<Option<T>>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if started.elapsed() > PATIENCE {
            return Err(format!("{what}: not within {PATIENCE:?}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The sweeps: `(seconds until the unreadable nodes were in maintenance,
/// whether exactly they were after three more sweeps, seconds until all
/// were back after the faults were cleared)`.
async fn sweeps(
    client: &Client,
    sim: &HwSim,
    names: &[String],
    matrix: &Matrix,
) -> BenchResult<(f64, bool, f64)> {
    let want: BTreeSet<String> = matrix
        .faulty()
        .filter(|(_, f)| f.unreadable())
        .map(|(i, _)| names[i].clone())
        .collect();
    let started = Instant::now();
    poll("the unreadable nodes in maintenance", || async {
        Ok((in_maintenance(client).await?.len() >= want.len()).then_some(()))
    })
    .await?;
    let faulted_after = started.elapsed().as_secs_f64();
    // Three more sweeps: a node failing every read would have joined them.
    for _ in 0..3 {
        let seen = last_sync_sweep(client).await?;
        poll("a sync sweep", || async {
            Ok((last_sync_sweep(client).await? != seen).then_some(()))
        })
        .await?;
    }
    let faulted = in_maintenance(client).await?;
    let exact = faulted == want;
    if !exact {
        println!(
            "  in maintenance: {} nodes, want {}; extra: {:?}; missing: {:?}",
            faulted.len(),
            want.len(),
            faulted.difference(&want).collect::<Vec<_>>(),
            want.difference(&faulted).collect::<Vec<_>>()
        );
    }
    let cleared = http()?
        .delete(sim.control_url("/faults"))
        .send()
        .await
        .map_err(|e| format!("clear faults: {e}"))?;
    if !cleared.status().is_success() {
        return Err(format!("clear faults: {}", cleared.status()));
    }
    let started = Instant::now();
    poll("every node out of maintenance", || async {
        Ok(in_maintenance(client).await?.is_empty().then_some(()))
    })
    .await?;
    Ok((faulted_after, exact, started.elapsed().as_secs_f64()))
}

async fn bench(hwsim: &std::path::Path) -> BenchResult<bool> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let sim = common::start_hwsim(
        hwsim,
        dir.path(),
        RACK,
        &["--export-driver", "mixed", "--shutdown-delay", "1s"],
    )?;
    let mut batond = start_batond(dir.path(), &sim, &toml("1h")).await?;
    let client = batond.client();
    let names: Vec<String> = (0..FLEET).map(|i| format!("node-{i:04}")).collect();
    let names = Arc::new(names);
    let matrix = Matrix::new(FLEET, SEED);
    println!("faults (seed {SEED}): {}", matrix.summary());
    inject(&sim, &names, &matrix).await?;
    println!(
        "| {:<12} | {:>6} | {:>4} | {:>6} | {:>9} | {:>8} | {:>10} | {:>3} | {:>9} | {:>9} | {:>6} | verdict",
        "batch", "wall s", "ok", "failed", "must fail", "flap lost", "mismatches", "cc", "node p99", "job p99", "reads"
    );
    let mut ok = true;
    for phase in Phase::ALL {
        let row = run_phase(&client, &sim, &names, &matrix, phase).await?;
        row.print();
        ok &= row.ok();
    }

    let status = batond.stop_with(nix::sys::signal::Signal::SIGTERM);
    if !status.success() {
        return Err(format!("batond did not stop cleanly: {status}"));
    }
    let batond = baton_tests::daemon::DaemonProcess::start(dir.path(), &toml("2s")).await;
    let (faulted, exact, recovered) = sweeps(&batond.client(), &sim, &names, &matrix).await?;
    println!(
        "sync every 2 s, max_failures 2: the {} unreadable nodes in maintenance (\"power failure\") \
         after {faulted:.1} s, exactly they: {exact} — {}; all back {recovered:.1} s after \
         their faults were cleared",
        matrix.faulty().filter(|(_, f)| f.unreadable()).count(),
        verdict(exact)
    );
    Ok(ok && exact)
}

fn main() -> BenchResult<()> {
    let hwsim = build()?;
    println!(
        "fault bench on {} CPUs: {FLEET} hw-sim nodes (half Redfish, half IPMI; {} ms latency, \
         {} s transitions; separate process), batond (separate process); targets: every sub-job \
         as the matrix says, at most one request at once per BMC (cc), p99 of GET node / GET job \
         during the batch < {} ms ({READERS} clients)",
        std::thread::available_parallelism().map_or(1, usize::from),
        LATENCY.as_millis(),
        TRANSITION.as_secs(),
        P99_TARGET.as_millis(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let ok = runtime.block_on(bench(&hwsim))?;
    println!(
        "fault bench: {}",
        if ok {
            "every figure within its target"
        } else {
            "some figures MISSED their targets (see above)"
        }
    );
    Ok(())
}
