//! Cron schedules of batches end to end: a bad cron, zone or batch is
//! refused naming its field; a schedule fires, each firing a job that names
//! it; a deleted schedule fires no more; and a schedule stored before a
//! restart of the real `batond` binary fires again after it.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use baton_hwsim::ExportDriver;
use baton_tests::daemon::{wait_until, DaemonProcess};
use baton_tests::fleet::Fleet;
use batond::api::types::{JobList, ScheduleDocument, ScheduleList};
use batond::client::Client;
use bytes::Bytes;
use http::Method;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

const EVERY_SECOND: &str = "* * * * * *";

fn stop_body(servers: &[String]) -> Value {
    let ids: Vec<Value> = servers.iter().map(|s| json!({"id": s})).collect();
    json!({"os-stop": {"type": "HARD", "servers": ids}})
}

async fn post(client: &Client, path: &str, body: &Value) -> (u16, Value) {
    let r = client
        .request(Method::POST, path, Some(Bytes::from(body.to_string())))
        .await
        .unwrap();
    let value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status.as_u16(), value)
}

/// Jobs a schedule created.
async fn jobs_of(client: &Client, schedule_id: &str) -> usize {
    let list: JobList = client.get("/v1/jobs?limit=1000").await.unwrap();
    list.jobs
        .iter()
        .filter(|j| j.schedule_id.as_deref() == Some(schedule_id))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_schedules_are_refused_naming_the_field() {
    let fleet = Fleet::start(2, |_| {}).await;
    let client = &fleet.daemon.client;
    let good = stop_body(&[fleet.name(0)]);
    for (body, expect) in [
        (
            json!({"cron": "every day", "batch": good}),
            "cron \"every day\"",
        ),
        (
            json!({"cron": "0 2 * * *", "time_zone": "Mars/Olympus", "batch": good}),
            "time_zone \"Mars/Olympus\"",
        ),
        (
            json!({"cron": "0 2 * * *", "batch": {"os-halt": {}}}),
            "batch: ",
        ),
        (
            json!({"cron": "0 2 * * *", "batch": stop_body(&["ghost".into()])}),
            "unknown server id",
        ),
        (
            json!({"cron": "0 2 * * *", "batch": good, "when": 1}),
            "unknown field",
        ),
        (json!({"batch": good}), "missing field `cron`"),
    ] {
        let (status, value) = post(client, "/v1/schedules", &body).await;
        assert_eq!(status, 400, "{body}: {value}");
        let message = value["error"]["message"].as_str().unwrap();
        assert!(message.contains(expect), "{body}: {message}");
    }
    let list: ScheduleList = client.get("/v1/schedules").await.unwrap();
    assert!(list.schedules.is_empty());
    let r = fleet.call(Method::DELETE, "/v1/schedules/nope", None).await;
    assert_eq!(r.status.as_u16(), 404);
    fleet.stop().await;
}

/// Every firing starts a job that names the schedule; after the delete no
/// further job comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_until_deleted() {
    let fleet = Fleet::start(2, |_| {}).await;
    let client = &fleet.daemon.client;
    let body = json!({"cron": EVERY_SECOND, "time_zone": "Europe/Berlin", "batch": stop_body(&[fleet.name(0)])});
    let (status, added) = post(client, "/v1/schedules", &body).await;
    assert_eq!(status, 201, "{added}");
    let added: ScheduleDocument = serde_json::from_value(added).unwrap();
    assert!(added.next_fire.is_some());
    let id = added.schedule_id.clone();
    wait_until("two firings", Duration::from_secs(10), || async {
        (jobs_of(client, &id).await >= 2).then_some(())
    })
    .await;
    assert!(
        !fleet.sim_power_on(&fleet.name(0)),
        "the first firing stopped it"
    );
    assert_eq!(
        fleet.counters(&fleet.name(0)).power_commands,
        1,
        "later firings needed none"
    );
    let list: ScheduleList = client.get("/v1/schedules").await.unwrap();
    assert_eq!(list.schedules[0].schedule_id, id);
    assert!(list.schedules[0].last_job_id.is_some());

    let r = fleet
        .call(Method::DELETE, &format!("/v1/schedules/{id}"), None)
        .await;
    assert_eq!(r.status.as_u16(), 204);
    let fired = jobs_of(client, &id).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        jobs_of(client, &id).await <= fired + 1,
        "no firing after the delete"
    );
    fleet.stop().await;
}

/// A schedule is stored: after `kill -9` and a new start it fires again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_survives_a_restart() {
    let rack = baton_tests::hwsim::start(baton_hwsim::RackConfig {
        ipmi: true,
        ..baton_tests::hwsim::config(1)
    })
    .await;
    let dir = tempfile::TempDir::new().unwrap();
    let config = "[sync]\ninterval = \"1h\"\nrecovery_interval = \"1h\"\n";
    let mut daemon = DaemonProcess::start(dir.path(), config).await;
    let client = daemon.client();
    let inventory = dir.path().join("inventory.json");
    rack.write_inventory(&inventory, ExportDriver::Mixed)
        .unwrap();
    let r = client
        .request(
            Method::POST,
            "/v1/nodes/import",
            Some(Bytes::from(std::fs::read_to_string(&inventory).unwrap())),
        )
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 200);
    let name = rack.nodes()[0].name().to_owned();
    let body = json!({"cron": EVERY_SECOND, "batch": stop_body(&[name])});
    let (status, added) = post(&client, "/v1/schedules", &body).await;
    assert_eq!(status, 201, "{added}");
    let id = added["schedule_id"].as_str().unwrap().to_owned();
    wait_until("a firing", Duration::from_secs(10), || async {
        (jobs_of(&client, &id).await >= 1).then_some(())
    })
    .await;
    daemon.stop_with(Signal::SIGKILL);

    let _daemon = DaemonProcess::start(dir.path(), config).await;
    let before = jobs_of(&client, &id).await;
    wait_until(
        "a firing after the restart",
        Duration::from_secs(10),
        || async { (jobs_of(&client, &id).await > before).then_some(()) },
    )
    .await;
    let list: ScheduleList = client.get("/v1/schedules").await.unwrap();
    assert_eq!(list.schedules.len(), 1);
    assert!(list.schedules[0].next_fire.is_some(), "armed again");
    rack.shutdown().await;
}
