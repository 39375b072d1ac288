//! `baton batch` and `baton job` end to end: the CLI binary through batond's
//! socket to simulated Redfish and IPMI BMCs — selecting servers by list,
//! file, filter and `--all`, following jobs with `--wait` (plain progress
//! lines without a terminal, the failures table and exit 1 when a server
//! failed), job listing, showing and cancelling, and usage errors.
#![allow(clippy::unwrap_used)]

use baton_tests::daemon::baton_with;
use baton_tests::fleet::Fleet;
use serde_json::Value;

async fn cli(fleet: &Fleet, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let socket = fleet.daemon.socket().to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let stdin = stdin.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        baton_with(&socket, &args, &[], stdin.as_deref())
    })
    .await
    .unwrap()
}

/// `--all --wait`: every node off, one command each, the job's summary on
/// stdout, progress lines on stderr; a second run needs no command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_all_waits_and_summarises() {
    let fleet = Fleet::start(6, |_| {}).await;
    let (code, out, err) = cli(
        &fleet,
        &["batch", "stop", "--type", "HARD", "--all", "--wait"],
        None,
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("status     SUCCESS"), "{out}");
    assert!(out.contains("6 total: 6 succeeded, 0 failed"), "{out}");
    assert!(err.contains("accepted: os-stop of 6 server(s)"), "{err}");
    assert!(err.contains("progress: 6/6 done, 0 failed"), "{err}");
    for i in 0..6 {
        assert!(!fleet.sim_power_on(&fleet.name(i)));
        assert_eq!(fleet.counters(&fleet.name(i)).power_commands, 1);
    }

    // Servers from a file (stdin), with comments; --json prints the job ids.
    let list = format!("{}  # first\n\n{}\n", fleet.name(0), fleet.name(1));
    let (code, out, err) = cli(
        &fleet,
        &["--json", "batch", "start", "--file", "-"],
        Some(&list),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let started: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(started["servers"], 2);
    let job = started["jobs"][0].as_str().unwrap().to_owned();
    fleet.finished_job(&job).await;
    assert!(fleet.sim_power_on(&fleet.name(0)) && fleet.sim_power_on(&fleet.name(1)));
    assert!(!fleet.sim_power_on(&fleet.name(2)));

    let (code, out, _) = cli(&fleet, &["job", "list"], None).await;
    assert_eq!(code, 0);
    assert!(out.starts_with("JOB "), "{out}");
    assert_eq!(out.lines().count(), 3, "two jobs: {out}");
    assert!(
        out.contains("os-stop HARD") && out.contains("os-start"),
        "{out}"
    );
    let (code, out, _) = cli(&fleet, &["job", "list", "--operation", "os-start"], None).await;
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 2, "{out}");
    let (code, out, _) = cli(&fleet, &["job", "show", &job], None).await;
    assert_eq!(code, 0);
    assert!(
        out.contains(&fleet.name(1)) && out.contains("reached power on"),
        "{out}"
    );
}

/// A locked server fails its sub-job: `--wait` prints it in the failure
/// table with its code and exits 1; `job show --failed` lists only it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_server_exits_1_with_the_failure_table() {
    let fleet = Fleet::start(4, |_| {}).await;
    let locked = fleet.name(2);
    let (code, _, err) = cli(
        &fleet,
        &["node", "lock", &locked, "--reason", "firmware"],
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let servers = format!("{},{},{}", fleet.name(0), fleet.name(1), locked);
    let (code, out, err) = cli(
        &fleet,
        &[
            "batch",
            "stop",
            "--servers",
            &servers,
            "--type",
            "HARD",
            "--wait",
        ],
        None,
    )
    .await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("FAILED SERVER"), "{out}");
    let row = out.lines().find(|l| l.starts_with(&locked)).unwrap();
    assert!(
        row.contains("BATON.0101") && row.contains("locked"),
        "{row}"
    );
    assert!(err.contains("1 of 3 servers failed"), "{err}");
    assert_eq!(fleet.counters(&locked).power_commands, 0);

    let (_, out, _) = cli(&fleet, &["--json", "job", "list", "--status", "FAIL"], None).await;
    let list: Value = serde_json::from_str(&out).unwrap();
    let job = list["jobs"][0]["job_id"].as_str().unwrap().to_owned();
    let (code, out, _) = cli(&fleet, &["job", "show", &job, "--failed"], None).await;
    assert_eq!(code, 0);
    assert!(
        out.contains(&locked) && !out.contains(&fleet.name(0)),
        "{out}"
    );
}

/// Usage errors exit 2 before anything is sent; an unknown job exits 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_send_nothing() {
    let fleet = Fleet::start(2, |_| {}).await;
    for (args, expect) in [
        (vec!["batch", "stop"], "required"),
        (
            vec!["batch", "start", "--all", "--type", "HARD"],
            "start has no type",
        ),
        (vec!["batch", "stop", "--filter", "rack=1"], "is unknown"),
        (
            vec!["batch", "stop", "--filter", "power_domain"],
            "not KEY=VALUE",
        ),
        (
            vec!["batch", "stop", "--file", "/nonexistent/list"],
            "cannot read",
        ),
        (
            vec!["batch", "stop", "--filter", "power_domain=nowhere"],
            "no server matches",
        ),
    ] {
        let (code, _, err) = cli(&fleet, &args, None).await;
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    let (code, _, err) = cli(&fleet, &["batch", "stop", "--servers", "ghost"], None).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("unknown server id") && err.contains("ghost"),
        "{err}"
    );
    let (code, _, err) = cli(&fleet, &["job", "cancel", "no-such-job"], None).await;
    assert_eq!(code, 1);
    assert!(err.contains("job no-such-job not found"), "{err}");
    for i in 0..2 {
        assert_eq!(fleet.counters(&fleet.name(i)).power_commands, 0);
    }
}
