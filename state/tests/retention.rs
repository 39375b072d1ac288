//! Retention through the store's public API: action records older than the
//! retention go with their events, in chunks, while those of an operation
//! or a batch job that has not ended stay; batch jobs that ended longer ago
//! go with their sub-jobs (a pass of their own), running ones stay.
#![allow(clippy::unwrap_used)] // Test helpers panic on failure by design.

use std::time::Duration;

use baton_state::*;
use tempfile::TempDir;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

const RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);

fn spec(name: &str) -> NodeSpec {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "driver": "ipmi",
        "bmc": {"address": "127.0.0.1", "port": 6230, "username": "admin", "password": "pw"}
    }))
    .unwrap()
}

fn action(node: Uuid, request_id: &str, sub_job_id: Option<&str>) -> NewAction {
    NewAction {
        request_id: request_id.into(),
        node_uuid: node,
        action: "stop".into(),
        user_id: Some("0".into()),
        user_name: None,
        message: None,
        project_id: None,
        sub_job_id: sub_job_id.map(str::to_owned),
    }
}

fn event(name: &str) -> ActionEvent {
    let now = OffsetDateTime::now_utc();
    ActionEvent {
        event: name.into(),
        start_time: now,
        finish_time: Some(now),
        result: Some(EventResult::Success),
        traceback: None,
        host: None,
    }
}

/// An `os-start` batch job as a POST would create it.
fn start_job(job_id: &str, request_id: &str) -> NewJob {
    NewJob {
        job_id: job_id.into(),
        operation: BatchOperation::Start,
        request_id: request_id.into(),
        project_id: None,
        user_id: None,
        schedule_id: None,
    }
}

fn db(store: &Store) -> rusqlite::Connection {
    rusqlite::Connection::open(store.path()).unwrap()
}

/// Dates actions back by `age` (start and last update), as if written then.
fn backdate(store: &Store, request_ids: &[&str], age: Duration) {
    let then = (OffsetDateTime::now_utc() - age).format(&Rfc3339).unwrap();
    let conn = db(store);
    for id in request_ids {
        conn.execute(
            "UPDATE actions SET start_time = ?1, updated_at = ?1 WHERE request_id = ?2",
            (&then, id),
        )
        .unwrap();
    }
}

fn count(store: &Store, sql: &str) -> i64 {
    db(store).query_row(sql, [], |r| r.get(0)).unwrap()
}

async fn kept(store: &Store, node: Uuid, request_id: &str) -> bool {
    match store.get_action(node, request_id.into()).await {
        Ok(_) => true,
        Err(StoreError::ActionNotFound { .. }) => false,
        Err(other) => panic!("{other}"),
    }
}

/// An operation on `node` whose action is `request_id`.
fn operation(node: Uuid, request_id: &str) -> NodeChange {
    NodeChange {
        update: NodeUpdate {
            operation: Some(Some(Operation {
                verb: PowerVerb::Off,
                request_id: request_id.into(),
                boot_first: None,
                timeout: None,
                phase: OpPhase::Queued,
                requested_at: OffsetDateTime::now_utc(),
                sub_job: None,
            })),
            ..NodeUpdate::default()
        },
        action: Some(action(node, request_id, None)),
        ..NodeChange::default()
    }
}

#[tokio::test]
async fn old_actions_go_with_their_events_unless_still_running() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path().join("baton.db"), StoreOptions::default())
        .await
        .unwrap();
    let node = store.create_node(spec("a")).await.unwrap().uuid;
    let busy = store.create_node(spec("busy")).await.unwrap().uuid;
    let batched = store.create_node(spec("batched")).await.unwrap().uuid;
    for id in ["old", "touched"] {
        store.record_action(action(node, id, None)).await.unwrap();
    }
    for e in ["bmc_power_off", "wait_power_state"] {
        store
            .add_action_event(node, "old".into(), event(e))
            .await
            .unwrap();
    }
    // An operation still running on `busy`.
    store
        .change_node(NodeIdent::Uuid(busy), move |_| {
            Ok::<_, ()>(operation(busy, "running"))
        })
        .await
        .unwrap();
    // A batch whose sub-job has not ended (its node holds no operation).
    store
        .create_batch(
            start_job("job-1", "batch"),
            vec!["batched".into()],
            move |_, sub_job| {
                let change = NodeChange {
                    action: Some(action(batched, "batch", Some(sub_job))),
                    ..NodeChange::default()
                };
                (change, None)
            },
        )
        .await
        .unwrap();
    // Last, as a record written now would be: ids follow start times.
    store
        .record_action(action(node, "new", None))
        .await
        .unwrap();
    let old = RETENTION + Duration::from_secs(3600);
    backdate(&store, &["old", "touched", "running", "batch"], old);
    // Started long ago, but a step was logged just now.
    store
        .add_action_event(node, "touched".into(), event("late_step"))
        .await
        .unwrap();

    assert_eq!(store.prune_actions(RETENTION).await.unwrap(), 1);
    assert!(!kept(&store, node, "old").await);
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM action_events"),
        1,
        "the pruned action's events went with it"
    );
    for (uuid, id) in [
        (node, "touched"),
        (node, "new"),
        (busy, "running"),
        (batched, "batch"),
    ] {
        assert!(kept(&store, uuid, id).await, "{id} must be kept");
    }

    // Once the operation has ended, its old record goes at the next prune.
    store
        .change_node(NodeIdent::Uuid(busy), |_| {
            Ok::<_, ()>(NodeChange {
                update: NodeUpdate {
                    operation: Some(None),
                    ..NodeUpdate::default()
                },
                ..NodeChange::default()
            })
        })
        .await
        .unwrap();
    // …and so does the batch's, once its job has ended; the job stays.
    let sub_jobs = store.unfinished_sub_jobs("job-1".into()).await.unwrap();
    let ids = sub_jobs.into_iter().map(|(id, _)| id).collect();
    store
        .cancel_sub_jobs(ids, Failure::new(FailCode::Cancelled, "cancelled"))
        .await
        .unwrap();
    backdate(&store, &["running", "batch"], old);
    assert_eq!(store.prune_actions(RETENTION).await.unwrap(), 2);
    assert!(!kept(&store, busy, "running").await);
    assert!(!kept(&store, batched, "batch").await);
    let job = store.get_job("job-1".into()).await.unwrap();
    assert_eq!(job.sub_jobs.len(), 1, "a finished job is kept whole");
    assert_eq!(count(&store, "SELECT COUNT(*) FROM actions"), 2);
}

/// A prune longer than one chunk still takes every old record, and stops
/// at the first young one.
#[tokio::test]
async fn a_long_log_is_pruned_in_chunks() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path().join("baton.db"), StoreOptions::default())
        .await
        .unwrap();
    let node = store.create_node(spec("a")).await.unwrap().uuid;
    let total = PRUNE_SCAN * 2 + 7;
    for i in 0..total {
        store
            .record_action(action(node, &format!("r{i}"), None))
            .await
            .unwrap();
    }
    db(&store)
        .execute(
            "UPDATE actions SET start_time = ?1, updated_at = ?1 WHERE request_id LIKE 'r%'",
            [(OffsetDateTime::now_utc() - Duration::from_secs(120))
                .format(&Rfc3339)
                .unwrap()],
        )
        .unwrap();
    store
        .record_action(action(node, "young", None))
        .await
        .unwrap();
    let pruned = store.prune_actions(Duration::from_secs(60)).await.unwrap();
    assert_eq!(pruned, total);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM actions"), 1);
    assert!(kept(&store, node, "young").await);
    assert_eq!(
        store.prune_actions(Duration::from_secs(60)).await.unwrap(),
        0
    );
}

/// A one-server batch job on `node`, still running (its sub-job not ended).
async fn running_job(store: &Store, job_id: &str, node: &str) {
    store
        .create_batch(
            start_job(job_id, &format!("req-{job_id}")),
            vec![node.into()],
            |_, _| (NodeChange::default(), None),
        )
        .await
        .unwrap();
}

/// The same, ended (its one sub-job cancelled).
async fn finished_job(store: &Store, job_id: &str, node: &str) {
    running_job(store, job_id, node).await;
    let ids = store
        .unfinished_sub_jobs(job_id.into())
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    store
        .cancel_sub_jobs(ids, Failure::new(FailCode::Cancelled, "cancelled"))
        .await
        .unwrap();
    assert!(store
        .get_job(job_id.into())
        .await
        .unwrap()
        .status
        .is_finished());
}

/// Dates jobs back by `age`: created then, and (if ended) ended then.
fn backdate_jobs(store: &Store, job_ids: &[&str], age: Duration) {
    let then = (OffsetDateTime::now_utc() - age).format(&Rfc3339).unwrap();
    let conn = db(store);
    for id in job_ids {
        conn.execute(
            "UPDATE jobs SET created_at = ?1, begin_time = ?1,
                 end_time = CASE WHEN end_time IS NULL THEN NULL ELSE ?1 END
             WHERE job_id = ?2",
            (&then, id),
        )
        .unwrap();
    }
}

async fn job_kept(store: &Store, job_id: &str) -> bool {
    match store.get_job(job_id.into()).await {
        Ok(_) => true,
        Err(StoreError::JobNotFound { .. }) => false,
        Err(other) => panic!("{other}"),
    }
}

#[tokio::test]
async fn jobs_that_ended_long_ago_go_with_their_sub_jobs() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path().join("baton.db"), StoreOptions::default())
        .await
        .unwrap();
    store.create_node(spec("a")).await.unwrap();
    store.create_node(spec("b")).await.unwrap();
    // More old finished jobs than one transaction takes.
    let old: Vec<String> = (0..JOB_PRUNE_SCAN * 2 + 1)
        .map(|i| format!("old-{i}"))
        .collect();
    for id in &old {
        finished_job(&store, id, "a").await;
    }
    running_job(&store, "old-running", "b").await;
    finished_job(&store, "young", "a").await;
    let age = RETENTION + Duration::from_secs(3600);
    let mut backdated: Vec<&str> = old.iter().map(String::as_str).collect();
    backdated.push("old-running");
    backdate_jobs(&store, &backdated, age);

    assert_eq!(store.prune_jobs(RETENTION).await.unwrap(), old.len());
    for id in &old {
        assert!(!job_kept(&store, id).await, "{id} ended long ago");
    }
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM sub_jobs"),
        2,
        "the pruned jobs' sub-jobs went with them"
    );
    assert!(job_kept(&store, "old-running").await, "a running job stays");
    assert!(job_kept(&store, "young").await);
    assert_eq!(store.prune_jobs(RETENTION).await.unwrap(), 0);
}
