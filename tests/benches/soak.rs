//! Soak benchmark: does batond stay flat over time under constant churn?
//!
//! A 1000-node hw-sim rack (separate process, 20 ms latency, 1 s
//! transitions, half Redfish and half IPMI) where a seeded 5 % of the nodes
//! are `flapping` (their power changes out of band at random every 2 s),
//! and batond (separate process) with the power sync on policy `enforce`
//! every 10 s: every sweep finds flapped nodes and drives them back, so
//! operations, action records, BMC sessions and sync writes never stop.
//! `actions.retention` is short (a fifth of the run, at most 2 min) so the
//! run can show the action table bounded by it.
//!
//! Every 10 s the bench samples batond's RSS (`/proc/<pid>/status` VmRSS),
//! its open file descriptors (`/proc/<pid>/fd`) and the action table (rows,
//! event rows, the age of its oldest record), and prints them at the start,
//! after the warm-up (a fifth of the run: sessions opened, the first prune
//! done) and at the end, with the verdicts:
//! - RSS flat: the end within 10 % of the value after the warm-up;
//! - fds flat: the end within 10 % of the value after the warm-up;
//! - action table bounded: no record older than two retentions plus 30 s
//!   (one retention, one prune period, slack), and the import's records
//!   (older than the retention by the end) gone.
//!
//! Run with `cargo bench -p baton-tests --bench soak` (10 minutes); set
//! `BATON_SOAK_DURATION` (seconds, or with an `s`, `m` or `h` suffix) to
//! shorten or lengthen it.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use baton_tests::daemon::DaemonProcess;
use batond::api::types::ConductorStatus;
use batond::client::Client;
use common::{
    build, open_fds, rss_mb, sim_stats, start_batond, start_hwsim, verdict, BenchResult, RackTiming,
};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const FLEET: usize = 1000;
const FLAPPING: f64 = 0.05;
const RACK: RackTiming = RackTiming {
    nodes: FLEET,
    latency: Duration::from_millis(20),
    transition: Duration::from_secs(1),
};
const SWEEP_EVERY: Duration = Duration::from_secs(10);
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
const DEFAULT_DURATION: Duration = Duration::from_secs(600);
/// How much RSS and open fds may grow from the warm-up to the end.
const TOLERANCE: f64 = 0.10;
/// Slack of the action table's age bound (a prune's own duration, timers).
const AGE_SLACK: Duration = Duration::from_secs(30);

/// `BATON_SOAK_DURATION`: seconds, or a number with `s`, `m` or `h`.
fn duration() -> BenchResult<Duration> {
    let Ok(text) = std::env::var("BATON_SOAK_DURATION") else {
        return Ok(DEFAULT_DURATION);
    };
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((i, 's')) => (&text[..i], 1),
        Some((i, 'm')) => (&text[..i], 60),
        Some((i, 'h')) => (&text[..i], 3600),
        _ => (text, 1),
    };
    let n: u64 = number.trim().parse().map_err(|_| {
        format!("BATON_SOAK_DURATION={text:?}: expected seconds, or a number with s, m or h")
    })?;
    if n.saturating_mul(unit) < 60 {
        return Err(format!(
            "BATON_SOAK_DURATION={text:?}: at least 60 s, so the warm-up and a retention fit"
        ));
    }
    Ok(Duration::from_secs(n.saturating_mul(unit)))
}

/// One look at batond and its action table.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    rss_mb: f64,
    fds: usize,
    actions: i64,
    events: i64,
    /// Age of the record last updated longest ago.
    oldest: Duration,
    /// Records of the import at the start (action `create`) still there.
    creates: i64,
    db_mb: f64,
}

impl Sample {
    fn line(&self, label: &str) -> String {
        format!(
            "{label} (t = {} s): RSS {:.1} MB, {} open fds, action table {} rows ({} events, \
             {} import records, oldest {} s), database {:.1} MB",
            self.at.as_secs(),
            self.rss_mb,
            self.fds,
            self.actions,
            self.events,
            self.creates,
            self.oldest.as_secs(),
            self.db_mb
        )
    }
}

/// Counts in the action table, read beside batond on its database (WAL
/// lets a reader in without holding its writer).
fn table(db: &Path) -> BenchResult<(i64, i64, i64, Duration)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| format!("open {}: {e}", db.display()))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let count = |sql: &str| -> BenchResult<i64> {
        conn.query_row(sql, [], |r| r.get(0))
            .map_err(|e| format!("{sql}: {e}"))
    };
    let actions = count("SELECT COUNT(*) FROM actions")?;
    let events = count("SELECT COUNT(*) FROM action_events")?;
    let creates = count("SELECT COUNT(*) FROM actions WHERE action = 'create'")?;
    let mut stmt = conn
        .prepare("SELECT updated_at FROM actions")
        .map_err(|e| e.to_string())?;
    let stamps: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    // Decoded, not compared as text: the fraction has a varying length.
    let now = OffsetDateTime::now_utc();
    let oldest = stamps
        .iter()
        .filter_map(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
        .map(|t| Duration::try_from(now - t).unwrap_or(Duration::ZERO))
        .max()
        .unwrap_or(Duration::ZERO);
    Ok((actions, events, creates, oldest))
}

fn sample(batond: &DaemonProcess, db: &Path, started: Instant) -> BenchResult<Sample> {
    let (actions, events, creates, oldest) = table(db)?;
    let wal = db.with_extension("db-wal");
    let db_bytes: u64 = [db, wal.as_path()]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    Ok(Sample {
        at: started.elapsed(),
        rss_mb: rss_mb(batond.pid()),
        fds: open_fds(batond.pid()),
        actions,
        events,
        oldest,
        creates,
        db_mb: db_bytes as f64 / 1e6,
    })
}

/// What the sweeps did over the run, from `GET /v1/conductor` (which keeps
/// the last sweep of each kind).
#[derive(Debug, Default)]
struct Sweeps {
    last: Option<String>,
    count: u64,
    changed: u64,
    failed: u64,
    longest_ms: u64,
}

impl Sweeps {
    fn note(&mut self, status: &ConductorStatus) {
        let Some(sweep) = status.last_sweeps.iter().find(|s| s.kind == "sync") else {
            return;
        };
        if self.last.as_deref() == Some(sweep.started_at.as_str()) {
            return;
        }
        self.last = Some(sweep.started_at.clone());
        self.count += 1;
        self.changed += sweep.changed;
        self.failed += sweep.failed;
        self.longest_ms = self.longest_ms.max(sweep.duration_ms);
    }
}

async fn status(client: &Client) -> BenchResult<ConductorStatus> {
    client
        .get("/v1/conductor")
        .await
        .map_err(|e| format!("GET /v1/conductor: {e}"))
}

/// "within 10 % of the warm-up": the growth from `from` to `to`.
fn flat(what: &str, from: f64, to: f64, unit: &str) -> bool {
    let growth = (to - from) / from.max(f64::MIN_POSITIVE);
    let ok = growth <= TOLERANCE;
    println!(
        "{what}: {from:.1}{unit} after the warm-up, {to:.1}{unit} at the end ({:+.1} %; \
         flat = at most +{:.0} %) {}",
        growth * 100.0,
        TOLERANCE * 100.0,
        verdict(ok)
    );
    ok
}

async fn soak(hwsim: &Path, run: Duration) -> BenchResult<bool> {
    let warm_up = run / 5;
    let retention = warm_up.clamp(Duration::from_secs(10), Duration::from_secs(120));
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let fraction = FLAPPING.to_string();
    let sim = start_hwsim(
        hwsim,
        dir.path(),
        RACK,
        &[
            "--export-driver",
            "mixed",
            "--fault",
            "flapping",
            "--fault-fraction",
            &fraction,
            "--seed",
            "12",
        ],
    )?;
    let toml = format!(
        "[conductor]\nworkers = 100\nbmc_timeout = \"5s\"\nmax_retries = 3\n\
         power_state_change_timeout = \"10s\"\n\
         [sync]\npolicy = \"enforce\"\ninterval = \"{}s\"\nworkers = 32\n\
         [actions]\nretention = \"{}s\"\n",
        SWEEP_EVERY.as_secs(),
        retention.as_secs()
    );
    let batond = start_batond(dir.path(), &sim, &toml).await?;
    let db = dir.path().join("baton.db");
    let client = batond.client();
    println!(
        "soak: {FLEET} hw-sim nodes (half Redfish, half IPMI; separate process), {} ms latency, \
         {} s transitions, {:.0} % flapping (out-of-band power changes every 2 s); batond \
         (separate process) with sync.policy = enforce every {} s, actions.retention = {} s; \
         {} s run, {} s warm-up",
        RACK.latency.as_millis(),
        RACK.transition.as_secs(),
        FLAPPING * 100.0,
        SWEEP_EVERY.as_secs(),
        retention.as_secs(),
        run.as_secs(),
        warm_up.as_secs()
    );
    let started = Instant::now();
    let first = sample(&batond, &db, started)?;
    println!("{}", first.line("start, after the import"));
    let mut sweeps = Sweeps::default();
    let mut after_warm_up: Option<Sample> = None;
    let mut peak_rss: f64 = 0.0;
    let mut last = first;
    while started.elapsed() < run {
        tokio::time::sleep(SAMPLE_EVERY.min(run.saturating_sub(started.elapsed()))).await;
        sweeps.note(&status(&client).await?);
        last = sample(&batond, &db, started)?;
        match after_warm_up {
            None if last.at >= warm_up => {
                println!("{}", last.line("after the warm-up"));
                after_warm_up = Some(last);
            }
            Some(_) => peak_rss = peak_rss.max(last.rss_mb),
            None => {}
        }
        if last.at.as_secs() % 60 < SAMPLE_EVERY.as_secs() {
            println!("{}", last.line("  progress"));
        }
    }
    println!("{}", last.line("end"));
    let end_status = status(&client).await?;
    let (requests, power_commands, concurrent) = sim_stats(&sim, false).await?;
    println!(
        "load: {} sync sweeps ({} nodes found changed and driven back, {} failed reads, longest \
         sweep {} ms); operations {} succeeded, {} failed; hw-sim saw {requests} requests, \
         {power_commands} power commands, at most {concurrent} at once per BMC",
        sweeps.count,
        sweeps.changed,
        sweeps.failed,
        sweeps.longest_ms,
        end_status.operations.succeeded,
        end_status.operations.failed
    );
    let warm = after_warm_up.ok_or("the run ended before its warm-up")?;
    println!("RSS peak after the warm-up: {peak_rss:.1} MB");
    let rss_ok = flat("RSS", warm.rss_mb, last.rss_mb, " MB");
    let fds_ok = flat("open fds", warm.fds as f64, last.fds as f64, "");
    let bound = retention * 2 + AGE_SLACK;
    let table_ok = last.oldest <= bound && last.creates == 0;
    println!(
        "action table: {} rows at the start, {} after the warm-up, {} at the end; oldest record \
         {} s (bound 2 × retention + {} s = {} s), {} of the import's {} records left (want 0) {}",
        first.actions,
        warm.actions,
        last.actions,
        last.oldest.as_secs(),
        AGE_SLACK.as_secs(),
        bound.as_secs(),
        last.creates,
        first.creates,
        verdict(table_ok)
    );
    Ok(rss_ok && fds_ok && table_ok)
}

fn main() -> BenchResult<()> {
    let run = duration()?;
    let hwsim = build()?;
    println!(
        "soak bench on {} CPUs",
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let ok = runtime.block_on(soak(&hwsim, run))?;
    println!(
        "soak verdict: {}",
        if ok {
            "RSS and fds flat, action table bounded — ok"
        } else {
            "MISSED (see above)"
        }
    );
    Ok(())
}
