//! The crash matrix: the real `batond` binary is killed with SIGKILL at
//! each point where a crash could lose or repeat something, then started
//! again on the same database, against an in-process hw-sim rack (half
//! Redfish, half IPMI; short latencies, so the file runs in well under a
//! minute):
//!
//! - (a) right after a batch and single power requests are acknowledged;
//! - (b) with 500 sub-jobs running against slow BMCs;
//! - (c) while a power-sync sweep writes (`record` and `enforce`);
//! - (d) during the SIGTERM drain, with BMC requests on the wire;
//! - (e) during a 10 000-node import.
//!
//! After each restart: the database passes `PRAGMA integrity_check` (as
//! the crash left it and at the end), every acknowledged operation
//! completes (targets reached, the job SUCCESS, every sub-job ended), no
//! node that had reached its target gets another power command (hw-sim's
//! per-node `power_commands`), and an import is there whole — every node
//! with its enrollment record — or not at all.
//!
//! Then the database failing under a running batond — its file deleted,
//! its file system turned read-only, its disk full (an ext4 image on a
//! loop device; skipped with a message where the test cannot mount one)
//! — must give 503s with the error envelope and never a write reported as
//! done that is not on disk; and a corrupt database at start must stop
//! batond with a non-zero exit and a message naming the file and what to
//! do, the file untouched.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use baton_hwsim::{Delays, FaultSetting, Faults, PowerState, Rack, RackConfig};
use baton_tests::crash::{
    at_kill, finished_job, hard_power_problems, import, integrity, post_batch, reached, request_ok,
    run_batch, servers,
};
use baton_tests::daemon::{inventory, wait_until, DaemonProcess};
use batond::client::{Client, RawResponse};
use bytes::Bytes;
use http::Method;
use nix::sys::signal::Signal;
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(60);

/// The daemon's config: `workers`, long operation timeouts, no sweeps
/// unless `sync` says otherwise.
fn config(workers: usize, extra: &str) -> String {
    format!(
        "[conductor]\nworkers = {workers}\npower_state_change_timeout = \"30s\"\n\
         bmc_timeout = \"5s\"\nshutdown_timeout = \"30s\"\n{extra}\n"
    )
}

const NO_SWEEPS: &str = "[sync]\ninterval = \"1h\"\nrecovery_interval = \"1h\"\n";

async fn rack(nodes: usize, latency: Duration, transition: Duration) -> Rack {
    baton_tests::hwsim::start(RackConfig {
        ipmi: true,
        latency,
        delays: Delays {
            power_on: transition,
            power_off: transition,
            shutdown: transition,
        },
        ..baton_tests::hwsim::config(nodes)
    })
    .await
}

fn db(dir: &Path) -> PathBuf {
    dir.join("baton.db")
}

/// Kills batond, waits until every request it had sent has landed at
/// hw-sim, and checks the database as the crash left it.
async fn kill(daemon: &mut DaemonProcess, rack: Option<&Rack>) {
    daemon.stop_with(Signal::SIGKILL);
    if let Some(rack) = rack {
        wait_until("the dead batond's requests to land", PATIENCE, || async {
            let busy = rack.nodes().iter().any(|n| n.counters().in_flight > 0);
            (!busy).then_some(())
        })
        .await;
    }
    assert_eq!(
        integrity(&db(&daemon.dir)),
        "ok",
        "the database as the crash left it"
    );
}

/// Stops batond cleanly and checks the database once more.
fn finish(mut daemon: DaemonProcess) {
    let status = daemon.stop_with(Signal::SIGTERM);
    assert!(status.success(), "{status:?}");
    assert_eq!(integrity(&db(&daemon.dir)), "ok", "the database at the end");
}

/// Reads every node's state into the database (the nodes are on, so this
/// sends no command): the batch that follows then commands without a read
/// first, and only the restart's reads keep a node from a repeated command.
async fn warm_up(rack: &Rack, daemon: &DaemonProcess) {
    let warm = run_batch(
        daemon,
        &json!({"os-start": {"servers": servers(rack)}}),
        PATIENCE,
    )
    .await;
    assert_eq!(warm.status, "SUCCESS", "{:?}", warm.fail_reason);
    assert_eq!(rack.stats().power_commands, 0);
}

/// Waits for a job to end and checks that it and every sub-job succeeded.
async fn all_succeeded(client: &Client, job_id: &str, servers: usize) {
    let job = finished_job(client, job_id, PATIENCE).await;
    let subs = job.entities.sub_jobs.clone().unwrap_or_default();
    assert_eq!(subs.len(), servers);
    let failed: Vec<_> = subs.iter().filter(|s| s.status != "SUCCESS").collect();
    assert!(failed.is_empty(), "sub-jobs not SUCCESS: {failed:?}");
    assert_eq!(job.status, "SUCCESS", "{:?}", job.fail_reason);
}

/// Waits until no node has a power target left.
async fn all_settled(client: &Client) {
    wait_until("every node to settle", PATIENCE, || async {
        let body = request_ok(client, Method::GET, "/v1/nodes/detail?limit=1000", None).await;
        let nodes: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let pending = nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| !n["target_power_state"].is_null());
        (!pending).then_some(())
    })
    .await;
}

fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}: {} node(s) wrong:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// (a) A 80-server HARD stop and 20 single `power off` requests are all
/// acknowledged, and batond dies at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_right_after_acknowledging() {
    const NODES: usize = 100;
    let rack = rack(NODES, Duration::from_millis(20), Duration::from_millis(400)).await;
    let dir = tempfile::TempDir::new().unwrap();
    let conf = config(8, NO_SWEEPS);
    let mut daemon = DaemonProcess::start(dir.path(), &conf).await;
    import(&rack, &daemon).await;
    warm_up(&rack, &daemon).await;
    let all = servers(&rack);
    let client = daemon.client();
    let job_id = post_batch(
        &client,
        &json!({"os-stop": {"type": "HARD", "servers": all[..80]}}),
    )
    .await;
    for node in &rack.nodes()[80..] {
        let r = client
            .request(
                Method::PUT,
                &format!("/v1/nodes/{}/states/power", node.name()),
                Some(Bytes::from(r#"{"target": "power off"}"#)),
            )
            .await
            .unwrap();
        assert_eq!(r.status.as_u16(), 202, "{:?}", r.body);
    }
    kill(&mut daemon, Some(&rack)).await;
    let kills = at_kill(&rack, PowerState::Off);
    assert!(
        reached(&rack, PowerState::Off) < NODES,
        "every node was off before the kill; nothing was tested"
    );

    let daemon = DaemonProcess::start(dir.path(), &conf).await;
    let client = daemon.client();
    all_succeeded(&client, &job_id, 80).await;
    all_settled(&client).await;
    assert_no_problems(
        "killed right after acknowledging",
        &hard_power_problems(&rack, PowerState::Off, &kills, true),
    );
    assert!(rack.stats().max_concurrent_per_bmc <= 1);
    finish(daemon);
    rack.shutdown().await;
}

/// (b) A 500-server HARD stop against slow BMCs, killed once a fifth of
/// the nodes are off: every other sub-job is running (its command on the
/// wire or the node on its way down) or waiting for a worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_killed_with_500_sub_jobs_running() {
    const NODES: usize = 500;
    let rack = rack(
        NODES,
        Duration::from_millis(50),
        Duration::from_millis(1500),
    )
    .await;
    let dir = tempfile::TempDir::new().unwrap();
    let conf = config(50, NO_SWEEPS);
    let mut daemon = DaemonProcess::start(dir.path(), &conf).await;
    import(&rack, &daemon).await;
    warm_up(&rack, &daemon).await;
    let client = daemon.client();
    let job_id = post_batch(
        &client,
        &json!({"os-stop": {"type": "HARD", "servers": servers(&rack)}}),
    )
    .await;
    let deadline = Instant::now() + PATIENCE;
    while reached(&rack, PowerState::Off) < NODES / 5 {
        assert!(Instant::now() < deadline, "the batch never got under way");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let running = job(&client, &job_id).await;
    kill(&mut daemon, Some(&rack)).await;
    let kills = at_kill(&rack, PowerState::Off);
    let done = kills.iter().filter(|k| k.reached).count();
    assert!(done < NODES, "the whole batch was done before the kill");
    let unfinished = running
        .entities
        .sub_jobs
        .unwrap_or_default()
        .iter()
        .filter(|s| !matches!(s.status.as_str(), "SUCCESS" | "FAIL"))
        .count();
    assert!(
        unfinished >= NODES / 2,
        "only {unfinished} sub-jobs were unfinished at the kill"
    );

    let daemon = DaemonProcess::start(dir.path(), &conf).await;
    all_succeeded(&daemon.client(), &job_id, NODES).await;
    assert_no_problems(
        "killed with 500 sub-jobs running",
        &hard_power_problems(&rack, PowerState::Off, &kills, true),
    );
    assert!(rack.stats().max_concurrent_per_bmc <= 1);
    finish(daemon);
    rack.shutdown().await;
}

async fn job(client: &Client, job_id: &str) -> batond::api::types::JobDocument {
    baton_tests::crash::job(client, job_id).await
}

/// Counts rows of the database beside the running (or dead) batond.
fn count(db: &Path, sql: &str) -> i64 {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// (c) Half of 200 nodes are switched off behind batond's back; a sync
/// sweep finds them and writes (`record`: the new state and a `power-sync`
/// action; `enforce`: a target to drive each back on), and batond is killed
/// when about half of those writes are in. The next sweeps after the
/// restart finish the job: every change recorded (or every node back on,
/// each with one power-on command), no command to any other node.
async fn sweep_killed_while_writing(policy: &str) {
    const NODES: usize = 200;
    let rack = rack(NODES, Duration::from_millis(20), Duration::from_millis(300)).await;
    let dir = tempfile::TempDir::new().unwrap();
    let quiet = config(8, NO_SWEEPS);
    let mut daemon = DaemonProcess::start(dir.path(), &quiet).await;
    import(&rack, &daemon).await;
    warm_up(&rack, &daemon).await;
    daemon.stop_with(Signal::SIGTERM);
    let flipped: Vec<usize> = (0..NODES).step_by(2).chain((1..NODES).step_by(4)).collect();
    for &i in &flipped {
        rack.nodes()[i].set_power_out_of_band(false);
    }
    let sweeping = config(
        8,
        &format!(
            "[sync]\ninterval = \"1s\"\nrecovery_interval = \"1h\"\npolicy = \"{policy}\"\nworkers = 4\n"
        ),
    );
    let mut daemon = DaemonProcess::start(dir.path(), &sweeping).await;
    let db = db(dir.path());
    let half = i64::try_from(flipped.len() / 2).unwrap();
    let written = || match policy {
        "record" => count(
            &db,
            "SELECT count(*) FROM actions WHERE action = 'power-sync'",
        ),
        _ => i64::try_from(rack.stats().power_commands).unwrap(),
    };
    let deadline = Instant::now() + PATIENCE;
    while written() < half {
        assert!(Instant::now() < deadline, "the sweep never wrote");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    kill(&mut daemon, Some(&rack)).await;
    let target = if policy == "record" {
        PowerState::Off
    } else {
        PowerState::On
    };
    let kills = at_kill(&rack, target);
    assert!(
        written() < i64::try_from(flipped.len()).unwrap(),
        "the sweep was over before the kill"
    );

    let daemon = DaemonProcess::start(dir.path(), &sweeping).await;
    let client = daemon.client();
    let want = i64::try_from(flipped.len()).unwrap();
    wait_until("the sweeps to catch up", PATIENCE, || async {
        let recorded_off = count(
            &db,
            "SELECT count(*) FROM nodes WHERE power_state = 'power off'",
        );
        let done = match policy {
            "record" => recorded_off == want,
            _ => recorded_off == 0 && reached(&rack, PowerState::On) == NODES,
        };
        done.then_some(())
    })
    .await;
    all_settled(&client).await;
    if policy == "record" {
        assert_eq!(rack.stats().power_commands, 0, "record never commands");
        // One `power-sync` action per changed node, none lost or doubled.
        assert_eq!(
            count(
                &db,
                "SELECT count(DISTINCT node_uuid) FROM actions WHERE action = 'power-sync'"
            ),
            want
        );
    } else {
        let problems: Vec<String> = (0..NODES)
            .filter_map(|i| {
                let commanded = flipped.contains(&i);
                baton_tests::crash::hard_power_problem(&rack, i, target, kills[i], commanded)
            })
            .collect();
        assert_no_problems("sweep killed while enforcing", &problems);
    }
    finish(daemon);
    rack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_killed_while_a_record_sweep_writes() {
    sweep_killed_while_writing("record").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_killed_while_an_enforce_sweep_writes() {
    sweep_killed_while_writing("enforce").await;
}

/// (d) SIGTERM while BMC requests are on the wire (the BMCs answer after
/// 1 to 4 s): batond drains, and is killed while it does — once the
/// quickest commands have landed and their nodes are off (a drain sends
/// no further step, so the database still has them on their way), while
/// the others are still on the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d_killed_during_the_sigterm_drain() {
    const NODES: usize = 40;
    let rack = rack(NODES, Duration::from_millis(10), Duration::from_millis(300)).await;
    let dir = tempfile::TempDir::new().unwrap();
    let conf = config(20, NO_SWEEPS);
    let mut daemon = DaemonProcess::start(dir.path(), &conf).await;
    import(&rack, &daemon).await;
    warm_up(&rack, &daemon).await;
    for (i, node) in rack.nodes().iter().enumerate() {
        let seconds = 1 + u64::try_from(i % 4).unwrap();
        node.apply_fault(FaultSetting::Slow(Duration::from_secs(seconds)));
    }
    let job_id = post_batch(
        &daemon.client(),
        &json!({"os-stop": {"type": "HARD", "servers": servers(&rack)}}),
    )
    .await;
    wait_until("BMC requests on the wire", PATIENCE, || async {
        let busy = rack.nodes().iter().any(|n| n.counters().in_flight > 0);
        busy.then_some(())
    })
    .await;
    daemon.signal(Signal::SIGTERM);
    wait_until(
        "the quickest nodes off during the drain",
        PATIENCE,
        || async { (reached(&rack, PowerState::Off) > 0).then_some(()) },
    )
    .await;
    assert!(
        daemon.log_text().contains("shutting down"),
        "batond was not draining"
    );
    assert!(daemon.running(), "batond exited before the kill");
    kill(&mut daemon, Some(&rack)).await;
    for node in rack.nodes() {
        node.set_faults(Faults::default()).unwrap();
    }
    let kills = at_kill(&rack, PowerState::Off);

    let daemon = DaemonProcess::start(dir.path(), &conf).await;
    all_succeeded(&daemon.client(), &job_id, NODES).await;
    assert_no_problems(
        "killed during the drain",
        &hard_power_problems(&rack, PowerState::Off, &kills, true),
    );
    finish(daemon);
    rack.shutdown().await;
}

/// Nodes named `{prefix}…`, and how many of them have their enrollment
/// (`create`) action.
fn imported(db: &Path, prefix: &str) -> (i64, i64) {
    let nodes = count(
        db,
        &format!("SELECT count(*) FROM nodes WHERE name LIKE '{prefix}%'"),
    );
    let recorded = count(
        db,
        &format!(
            "SELECT count(*) FROM actions a JOIN nodes n ON n.uuid = a.node_uuid \
             WHERE a.action = 'create' AND n.name LIKE '{prefix}%'"
        ),
    );
    (nodes, recorded)
}

/// (e) A 10 000-node import, killed as soon as its nodes show in the
/// database (the commit is done, the answer not yet sent), then killed a
/// few milliseconds into the request: each time all of it or none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_killed_during_a_10000_node_import() {
    const NODES: i64 = 10_000;
    let dir = tempfile::TempDir::new().unwrap();
    let db = db(dir.path());
    let conf = config(8, NO_SWEEPS);
    for (round, delay) in [
        None,
        Some(Duration::from_millis(5)),
        Some(Duration::from_millis(40)),
    ]
    .into_iter()
    .enumerate()
    {
        let prefix = format!("r{round}-");
        let mut daemon = DaemonProcess::start(dir.path(), &conf).await;
        let body = inventory(&prefix, 10_000, "secret").to_string();
        let client = daemon.client();
        let sent = tokio::spawn(async move {
            client
                .request(Method::POST, "/v1/nodes/import", Some(Bytes::from(body)))
                .await
        });
        match delay {
            Some(delay) => tokio::time::sleep(delay).await,
            None => {
                wait_until("the import's nodes in the database", PATIENCE, || async {
                    (imported(&db, &prefix).0 > 0).then_some(())
                })
                .await;
            }
        }
        kill(&mut daemon, None).await;
        let answer = sent.await.unwrap();
        let (nodes, recorded) = imported(&db, &prefix);
        assert!(
            nodes == 0 || nodes == NODES,
            "round {round}: {nodes} of {NODES} nodes imported"
        );
        assert_eq!(
            recorded, nodes,
            "round {round}: {nodes} nodes imported, {recorded} with their enrollment record"
        );
        if matches!(answer, Ok(RawResponse { status, .. }) if status == 200) {
            assert_eq!(
                nodes, NODES,
                "round {round}: acknowledged, yet not all there"
            );
        }
        // The restarted batond sees the same: all, or none and the import
        // can be sent again.
        let daemon = DaemonProcess::start(dir.path(), &conf).await;
        if nodes == 0 {
            let body = inventory(&prefix, 10_000, "secret").to_string();
            request_ok(
                &daemon.client(),
                Method::POST,
                "/v1/nodes/import",
                Some(body),
            )
            .await;
        }
        assert_eq!(imported(&db, &prefix), (NODES, NODES), "round {round}");
        finish(daemon);
    }
}
/// Nodes edited by the PATCHes of [`e_killed_during_edits`], and how many of
/// their `update` actions are stored.
fn edited(db: &Path) -> (i64, i64) {
    let nodes = count(
        db,
        "SELECT count(*) FROM nodes WHERE power_domain = 'rack-9'",
    );
    let recorded = count(db, "SELECT count(*) FROM actions WHERE action = 'update'");
    (nodes, recorded)
}

/// (e) continued: 200 concurrent edits (JSON Patch), killed as soon as the
/// first is committed; each node's change and its `update` action are
/// both there, or neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e_killed_during_edits() {
    const NODES: usize = 200;
    let dir = tempfile::TempDir::new().unwrap();
    let db = db(dir.path());
    let conf = config(8, NO_SWEEPS);
    let mut daemon = DaemonProcess::start(dir.path(), &conf).await;
    let body = inventory("edit-", NODES, "secret").to_string();
    request_ok(
        &daemon.client(),
        Method::POST,
        "/v1/nodes/import",
        Some(body),
    )
    .await;
    let patch = Bytes::from(r#"[{"op": "replace", "path": "/power_domain", "value": "rack-9"}]"#);
    let edits: Vec<_> = (0..NODES)
        .map(|i| {
            let (client, patch) = (daemon.client(), patch.clone());
            tokio::spawn(async move {
                client
                    .request(Method::PATCH, &format!("/v1/nodes/edit-{i}"), Some(patch))
                    .await
            })
        })
        .collect();
    wait_until("the first edit in the database", PATIENCE, || async {
        (edited(&db).0 > 0).then_some(())
    })
    .await;
    kill(&mut daemon, None).await;
    let mut acknowledged = 0;
    for edit in edits {
        if matches!(edit.await.unwrap(), Ok(RawResponse { status, .. }) if status == 200) {
            acknowledged += 1;
        }
    }
    let (nodes, recorded) = edited(&db);
    assert!(
        nodes >= acknowledged,
        "{acknowledged} edits acknowledged, {nodes} there"
    );
    assert_eq!(
        recorded, nodes,
        "{nodes} nodes edited, {recorded} with their record"
    );
    let daemon = DaemonProcess::start(dir.path(), &conf).await;
    finish(daemon);
}

/// `POST /v1/nodes` of a node named `name`; returns the answer.
async fn enroll(client: &Client, name: &str) -> RawResponse {
    let body = baton_tests::daemon::node_json(name, "secret").to_string();
    client
        .request(Method::POST, "/v1/nodes", Some(Bytes::from(body)))
        .await
        .unwrap()
}

/// Checks that a write was refused with 503 and the error envelope, and
/// returns its message.
fn refused(answer: &RawResponse) -> String {
    assert_eq!(answer.status.as_u16(), 503, "{:?}", answer.body);
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(body["error"]["code"], "serviceUnavailable", "{body}");
    assert!(body["error"]["request_id"].is_string(), "{body}");
    body["error"]["message"].as_str().unwrap().to_owned()
}

/// What `GET /v1/conductor` says about refused database writes.
async fn writes_refused(client: &Client) -> Option<String> {
    let status: batond::api::types::ConductorStatus = client.get("/v1/conductor").await.unwrap();
    status.database.writes_refused
}

/// Names enrolled, as the API lists them.
async fn names(client: &Client) -> Vec<String> {
    let body = request_ok(client, Method::GET, "/v1/nodes?limit=1000", None).await;
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    list["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The database file removed under a running batond: SQLite would go on
/// writing to the unlinked file, and every write would vanish at the next
/// start. batond refuses writes instead (503, naming the file), keeps
/// answering reads from what it has, and says so in its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_deleted_under_batond_refuses_writes() {
    let dir = tempfile::TempDir::new().unwrap();
    let mut daemon = DaemonProcess::start(dir.path(), &config(8, NO_SWEEPS)).await;
    let client = daemon.client();
    assert_eq!(enroll(&client, "before").await.status.as_u16(), 201);
    std::fs::remove_file(db(dir.path())).unwrap();

    let message = refused(&enroll(&client, "after").await);
    assert!(
        message.contains(&db(dir.path()).display().to_string()),
        "{message}"
    );
    assert!(message.contains("restart"), "says what to do: {message}");
    assert_eq!(names(&client).await, ["before"], "reads still answer");
    let health = writes_refused(&client).await.unwrap_or_default();
    assert!(health.contains("deleted or replaced"), "{health:?}");
    let log = daemon.log_text();
    assert!(log.contains("baton.db"), "the log names the file:\n{log}");
    daemon.stop_with(Signal::SIGKILL);
}

/// A file system batond can mount for a test: an ext4 image on a loop
/// device (so that it can be filled, and turned read-only with open files
/// the way the kernel does on an I/O error). `None`, with a message, where
/// the test cannot mount one (not root, no loop devices).
struct LoopFs {
    dir: tempfile::TempDir,
}

impl LoopFs {
    fn mount(size_mb: u32) -> Option<Self> {
        let dir = tempfile::TempDir::new().unwrap();
        let image = dir.path().join("fs.img").display().to_string();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let mnt = mnt.display().to_string();
        let size = format!("{size_mb}M");
        let steps: [(&str, &[&str]); 3] = [
            ("truncate", &["-s", &size, &image]),
            ("mkfs.ext4", &["-q", "-F", "-m", "0", &image]),
            ("mount", &["-o", "loop,errors=remount-ro", &image, &mnt]),
        ];
        for (program, args) in steps {
            if let Err(why) = run(program, args) {
                eprintln!(
                    "SKIPPED: cannot mount a test file system ({program} failed: {why}); \
                     this case needs root and loop devices"
                );
                return None;
            }
        }
        Some(Self { dir })
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    /// The kernel's reaction to a file system error with
    /// `errors=remount-ro`: read-only at once, files open or not.
    fn fail_read_only(&self) {
        let source = std::process::Command::new("findmnt")
            .args(["-no", "SOURCE"])
            .arg(self.path())
            .output()
            .unwrap();
        let device = String::from_utf8_lossy(&source.stdout).trim().to_owned();
        let name = Path::new(&device).file_name().unwrap().to_owned();
        std::fs::write(
            Path::new("/sys/fs/ext4")
                .join(name)
                .join("trigger_fs_error"),
            "reliability_crash test",
        )
        .unwrap();
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.path())
            .status();
    }
}

/// Runs a command; its stderr when it fails.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// A batond whose database lives on `fs` (its socket, config and log stay
/// in a plain temp dir).
async fn daemon_on(fs: &LoopFs) -> (tempfile::TempDir, DaemonProcess) {
    let dir = tempfile::TempDir::new().unwrap();
    std::os::unix::fs::symlink(fs.path().join("baton.db"), db(dir.path())).unwrap();
    let daemon = DaemonProcess::start(dir.path(), &config(8, NO_SWEEPS)).await;
    (dir, daemon)
}

/// The database's file system turns read-only under batond (as the kernel
/// does on an I/O error): writes are refused with 503, reads answer, and
/// nothing refused shows up later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_read_only_under_batond_refuses_writes() {
    let Some(fs) = LoopFs::mount(16) else { return };
    let (_dir, mut daemon) = daemon_on(&fs).await;
    let client = daemon.client();
    assert_eq!(enroll(&client, "before").await.status.as_u16(), 201);
    fs.fail_read_only();
    for name in ["after-1", "after-2"] {
        let message = refused(&enroll(&client, name).await);
        assert!(message.contains("baton.db"), "{message}");
    }
    assert_eq!(names(&client).await, ["before"]);
    let health = writes_refused(&client).await.unwrap_or_default();
    assert!(health.contains("read-only"), "{health:?}");
    daemon.stop_with(Signal::SIGKILL);
    assert_eq!(integrity(&fs.path().join("baton.db")), "ok");
}

/// The database's disk fills up: an import that does not fit is refused
/// with 503 and leaves nothing behind; once space is freed, batond takes
/// writes again without a restart, and a restart finds exactly what was
/// acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_disk_full_refuses_writes_then_recovers() {
    let Some(fs) = LoopFs::mount(16) else { return };
    let (dir, mut daemon) = daemon_on(&fs).await;
    let client = daemon.client();
    assert_eq!(enroll(&client, "before").await.status.as_u16(), 201);
    let filler = fs.path().join("filler");
    fill(&filler);
    let body = inventory("full-", 2000, "secret").to_string();
    let answer = client
        .request(
            Method::POST,
            "/v1/nodes/import",
            Some(Bytes::from(body.clone())),
        )
        .await
        .unwrap();
    let message = refused(&answer);
    assert!(message.contains("baton.db"), "{message}");
    assert_eq!(names(&client).await, ["before"], "nothing of the import");
    let health = writes_refused(&client).await.unwrap_or_default();
    assert!(health.contains("free space"), "{health:?}");

    std::fs::remove_file(&filler).unwrap();
    request_ok(&client, Method::POST, "/v1/nodes/import", Some(body)).await;
    let stored = fs.path().join("baton.db");
    assert_eq!(count(&stored, "SELECT count(*) FROM nodes"), 2001);
    assert_eq!(writes_refused(&client).await, None);
    daemon.stop_with(Signal::SIGKILL);
    assert_eq!(integrity(&stored), "ok");
    let daemon = DaemonProcess::start(dir.path(), &config(8, NO_SWEEPS)).await;
    assert_eq!(count(&stored, "SELECT count(*) FROM nodes"), 2001);
    finish(daemon);
}

/// Writes `path` until the file system is full.
fn fill(path: &Path) {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0xa5_u8; 64 * 1024];
    loop {
        match file.write_all(&block) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    let _ = file.sync_all();
}

/// A database with a few nodes, written by batond and closed cleanly.
async fn good_database(dir: &Path) -> Vec<u8> {
    let daemon = DaemonProcess::start(dir, &config(8, NO_SWEEPS)).await;
    for i in 0..50 {
        assert_eq!(
            enroll(&daemon.client(), &format!("n{i}"))
                .await
                .status
                .as_u16(),
            201
        );
    }
    finish(daemon);
    std::fs::read(db(dir)).unwrap()
}

/// A corrupt database at start: batond exits non-zero with a message that
/// names the file and says what to do, and leaves the file as it was —
/// never replaced by an empty one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_database_at_start_is_refused_and_kept() {
    let source = tempfile::TempDir::new().unwrap();
    let good = good_database(source.path()).await;
    let page = 4096;
    let mut header = good.clone();
    header[..100].fill(0x5a);
    let mut torn = good.clone();
    let middle = good.len() / 2 / page * page;
    torn[middle..middle + page].fill(0x5a);
    let truncated = good[..good.len() / 2 / page * page].to_vec();
    for (what, bytes) in [("header", header), ("page", torn), ("truncated", truncated)] {
        let dir = tempfile::TempDir::new().unwrap();
        private_file(&db(dir.path()), &bytes);
        let mut daemon = DaemonProcess::spawn(dir.path(), &config(8, NO_SWEEPS));
        let status = daemon.wait_exit(Duration::from_secs(20));
        let log = daemon.log_text();
        assert_eq!(status.code(), Some(1), "{what}: {status:?}\n{log}");
        assert!(
            log.contains(&db(dir.path()).display().to_string()),
            "{what}: the message names the file:\n{log}"
        );
        assert!(log.contains("backup"), "{what}: says what to do:\n{log}");
        assert_eq!(
            std::fs::read(db(dir.path())).unwrap(),
            bytes,
            "{what}: the file was changed"
        );
    }
}

/// Writes `bytes` to a new file of mode 0600, as batond keeps its database.
fn private_file(path: &Path, bytes: &[u8]) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(bytes).unwrap();
}
