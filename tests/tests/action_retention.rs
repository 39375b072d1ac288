//! `actions.retention` end to end: with a retention of seconds, a finished
//! power action's record disappears from the API by itself, while the
//! record of an operation still running (a BMC that ignores the command)
//! stays until the operation has ended; a batch job that has ended goes
//! the same way, with its sub-jobs; a reload (SIGHUP) that shortens the
//! retention prunes at once.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use baton_hwsim::Faults;
use baton_tests::daemon::{node_json, wait_until, DaemonProcess};
use baton_tests::fleet::Fleet;
use batond::api::types::{ActionAccepted, InstanceActionList};
use batond::client::Client;
use http::Method;

const RETENTION: Duration = Duration::from_secs(2);
/// The stuck node's own timeout: long enough for several prunes to pass
/// over its record while it runs.
const STUCK_TIMEOUT_S: u64 = 8;
const PATIENCE: Duration = Duration::from_secs(30);

/// The HTTP status of `GET /v1/nodes/{name}/os-instance-actions/{id}`.
async fn record_status(fleet: &Fleet, name: &str, request_id: &str) -> u16 {
    fleet
        .call(
            Method::GET,
            &format!("/v1/nodes/{name}/os-instance-actions/{request_id}"),
            None,
        )
        .await
        .status
        .as_u16()
}

async fn pruned(fleet: &Fleet, name: &str, request_id: &str) {
    wait_until(
        &format!("the record {request_id} of {name} to be pruned"),
        PATIENCE,
        || async { (record_status(fleet, name, request_id).await == 404).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_records_are_pruned_but_not_while_their_operation_runs() {
    let fleet = Fleet::start(2, |config| {
        config.actions.retention = RETENTION;
    })
    .await;
    let (done, stuck) = (fleet.name(0), fleet.name(1));
    fleet
        .rack
        .node(&stuck)
        .unwrap()
        .set_faults(Faults {
            stuck: true,
            ..Faults::default()
        })
        .unwrap();
    let body = serde_json::json!({ "target": "power off", "timeout": STUCK_TIMEOUT_S });
    let r = fleet
        .call(
            Method::PUT,
            &format!("/v1/nodes/{stuck}/states/power"),
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(r.status.as_u16(), 202, "{:?}", r.body);
    let running: ActionAccepted = serde_json::from_slice(&r.body).unwrap();
    let started = Instant::now();

    let finished = fleet.power(&done, "power off").await;
    assert_eq!(fleet.settled(&done).await.last_error, None);
    assert_eq!(
        record_status(&fleet, &done, &finished.request_id).await,
        200
    );
    pruned(&fleet, &done, &finished.request_id).await;

    // Prunes have passed over the running operation's record (older than
    // the retention by now) without taking it.
    let states = fleet.states(&stuck).await;
    assert!(
        started.elapsed() < Duration::from_secs(STUCK_TIMEOUT_S),
        "the stuck operation must still run here; the test machine is too slow"
    );
    assert!(states.target_power_state.is_some(), "{states:?}");
    assert_eq!(
        record_status(&fleet, &stuck, &running.request_id).await,
        200
    );

    // Once it has failed, its record ages out like any other.
    let states = fleet.settled(&stuck).await;
    assert!(states.last_error.is_some(), "{states:?}");
    pruned(&fleet, &stuck, &running.request_id).await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_batch_job_is_pruned() {
    let fleet = Fleet::start(2, |config| {
        config.actions.retention = RETENTION;
    })
    .await;
    let servers: Vec<_> = (0..2)
        .map(|i| serde_json::json!({ "id": fleet.name(i) }))
        .collect();
    let job_id = fleet
        .batch(&serde_json::json!({ "os-stop": { "type": "HARD", "servers": servers } }))
        .await;
    let job = fleet.finished_job(&job_id).await;
    assert_eq!(job.status, "SUCCESS", "{job:?}");
    wait_until("the finished job to be pruned", PATIENCE, || async {
        let r = fleet
            .call(Method::GET, &format!("/v1/jobs/{job_id}"), None)
            .await;
        (r.status.as_u16() == 404).then_some(())
    })
    .await;
    fleet.stop().await;
}

/// The request ids of `node`'s action log.
async fn log_of(client: &Client, node: &str) -> Vec<String> {
    let list: InstanceActionList = client
        .get(&format!("/v1/nodes/{node}/os-instance-actions"))
        .await
        .unwrap();
    list.instance_actions
        .into_iter()
        .map(|a| a.request_id)
        .collect()
}

#[tokio::test]
async fn a_reload_that_shortens_the_retention_prunes_at_once() {
    let dir = tempfile::TempDir::new().unwrap();
    let no_sweeps = "[sync]\ninterval = \"1h\"\nrecovery_interval = \"1h\"\n";
    let daemon = DaemonProcess::start(dir.path(), no_sweeps).await;
    let client = daemon.client();
    let r = client
        .request(
            Method::POST,
            "/v1/nodes",
            Some(node_json("kept", "pw").to_string().into()),
        )
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 201, "{:?}", r.body);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        log_of(&client, "kept").await.len(),
        1,
        "the default retention keeps the enrollment record"
    );

    let config = dir.path().join("batond.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}[actions]\nretention = \"1s\"\n")).unwrap();
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    wait_until("the reload to prune the record", PATIENCE, || async {
        log_of(&client, "kept").await.is_empty().then_some(())
    })
    .await;
    assert!(
        daemon.log_text().contains("pruned action records"),
        "{}",
        daemon.log_text()
    );
}
