//! The store through its public API, on a temp-dir database.
#![allow(clippy::unwrap_used)] // Test helpers panic on failure by design.

use std::os::unix::fs::PermissionsExt;

use baton_state::*;
use tempfile::TempDir;

fn spec(name: &str) -> NodeSpec {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "driver": "ipmi",
        "power_domain": "rack-1",
        "bmc": {"address": "127.0.0.1", "port": 6230, "username": "admin", "password": "s3cret"}
    }))
    .unwrap()
}

async fn open(dir: &TempDir) -> Store {
    Store::open(dir.path().join("sub/dir/baton.db"), StoreOptions::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn creates_a_private_database_and_reopens_it() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let node = store.create_node(spec("a")).await.unwrap();
    let mode = std::fs::metadata(store.path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    drop(store);
    let store = open(&dir).await;
    let again = store.get_node(NodeIdent::Name("a".into())).await.unwrap();
    assert_eq!(again.uuid, node.uuid);
    assert_eq!(again.spec.bmc.password.clone().unwrap().expose(), "s3cret");
    assert_eq!(again.power_state, None);
}

/// A node's password comes from the database, its file, or the default;
/// which one survives storing, updating and reopening.
#[tokio::test]
async fn where_the_password_comes_from_is_stored() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let mut from_file = spec("file");
    from_file.bmc.password = None;
    from_file.bmc.password_file = Some("/etc/baton/bmc/file".into());
    let mut default = spec("default");
    default.bmc.password = None;
    let mut empty = spec("empty");
    empty.bmc.password = Some(Secret::new(""));
    store
        .import_nodes(vec![from_file.clone(), default.clone(), empty])
        .await
        .unwrap();
    let stored = store.create_node(spec("stored")).await.unwrap();
    drop(store);
    let store = open(&dir).await;
    let get = |name: &'static str| {
        let store = store.clone();
        async move {
            store
                .get_node(NodeIdent::Name(name.into()))
                .await
                .unwrap()
                .spec
                .bmc
        }
    };
    assert_eq!(get("file").await, from_file.bmc);
    assert_eq!(get("default").await, default.bmc);
    let empty = get("empty").await;
    assert_eq!(empty.password.as_ref().map(Secret::expose), Some(""));
    let back = store
        .update_node(
            NodeIdent::Uuid(stored.uuid),
            |node| {
                let mut spec = node.spec.clone();
                spec.bmc.password = None;
                spec.bmc.password_file = Some("/run/pw".into());
                Ok::<_, std::convert::Infallible>(spec)
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(back.spec.bmc.password, None);
    assert_eq!(
        get("stored").await.password_file.as_deref(),
        Some("/run/pw")
    );
}

#[tokio::test]
async fn refuses_a_database_from_a_newer_version() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("new.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let err = Store::open(&path, StoreOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::SchemaTooNew { .. }), "{err}");
    assert!(
        err.to_string().contains("newer than this batond supports"),
        "{err}"
    );
}

#[tokio::test]
async fn import_is_all_or_nothing_and_names_every_duplicate() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    store.create_node(spec("taken")).await.unwrap();
    let batch = vec![spec("x"), spec("taken"), spec("y"), spec("x")];
    let err = store.import_nodes(batch).await.unwrap_err();
    let StoreError::DuplicateNames(dups) = &err else {
        panic!("{err}")
    };
    assert_eq!(dups.len(), 2);
    assert_eq!((dups[0].index, dups[0].already_enrolled), (1, true));
    assert_eq!((dups[1].index, dups[1].already_enrolled), (3, false));
    assert_eq!(store.count_by_power_state().await.unwrap().total(), 1);

    let uuids = store
        .import_nodes((0..50).map(|i| spec(&format!("n{i}"))).collect())
        .await
        .unwrap();
    assert_eq!(uuids.len(), 50);
}

#[tokio::test]
async fn pages_with_markers_and_filters() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let mut specs: Vec<NodeSpec> = (0..25).map(|i| spec(&format!("n{i}"))).collect();
    specs[3].driver = Driver::Redfish;
    store.import_nodes(specs).await.unwrap();

    let mut seen = Vec::new();
    let mut marker = None;
    loop {
        let page = store
            .list_nodes(NodeFilter::default(), 10, marker)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        marker = page.last().map(|n| n.uuid);
        seen.extend(page.into_iter().map(|n| n.spec.name.unwrap()));
    }
    assert_eq!(seen.len(), 25);
    assert_eq!(seen[0], "n0");
    assert_eq!(seen[24], "n24");

    let filter = NodeFilter {
        driver: Some(Driver::Redfish),
        ..NodeFilter::default()
    };
    let redfish = store.list_nodes(filter, 100, None).await.unwrap();
    assert_eq!(redfish.len(), 1);
    let never_read = NodeFilter {
        power_state: Some(None),
        ..NodeFilter::default()
    };
    assert_eq!(
        store.list_nodes(never_read, 100, None).await.unwrap().len(),
        25
    );

    let err = store
        .list_nodes(NodeFilter::default(), 10, Some(uuid::Uuid::new_v4()))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::MarkerNotFound { .. }));
}

#[tokio::test]
async fn updates_check_names_and_deletes_remove() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    store.create_node(spec("a")).await.unwrap();
    store.create_node(spec("b")).await.unwrap();
    let err = store
        .update_node(
            NodeIdent::Name("a".into()),
            |n| {
                let mut s = n.spec.clone();
                s.name = Some("b".into());
                Ok::<_, String>(s)
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        UpdateError::Store(StoreError::DuplicateNames(_))
    ));

    let rejected = store
        .update_node(
            NodeIdent::Name("a".into()),
            |_| Err::<NodeSpec, _>("nope"),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(rejected, UpdateError::Rejected("nope")));

    let updated = store
        .update_node(
            NodeIdent::Name("a".into()),
            |n| {
                let mut s = n.spec.clone();
                s.power_domain = Some("rack-9".into());
                Ok::<_, String>(s)
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(updated.spec.power_domain.as_deref(), Some("rack-9"));
    assert!(updated.updated_at >= updated.created_at);
    let unchanged = store
        .update_node(
            NodeIdent::Name("a".into()),
            |n| Ok::<_, String>(n.spec.clone()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        unchanged.updated_at, updated.updated_at,
        "a no-op update writes nothing"
    );

    store
        .delete_node(NodeIdent::Name("a".into()), None)
        .await
        .unwrap();
    let err = store
        .get_node(NodeIdent::Name("a".into()))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NodeNotFound { .. }));
}

#[tokio::test]
async fn actions_keep_their_events_in_order() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let node = store.create_node(spec("a")).await.unwrap();
    for i in 0..3 {
        store
            .record_action(NewAction {
                request_id: format!("req-{i}"),
                node_uuid: node.uuid,
                action: "stop".into(),
                user_id: Some("0".into()),
                user_name: Some("root".into()),
                message: None,
                project_id: None,
                sub_job_id: None,
            })
            .await
            .unwrap();
    }
    let now = time::OffsetDateTime::now_utc();
    for event in ["bmc_power_off", "wait_power_state"] {
        store
            .add_action_event(
                node.uuid,
                "req-1".into(),
                ActionEvent {
                    event: event.into(),
                    start_time: now,
                    finish_time: Some(now),
                    result: Some(EventResult::Success),
                    traceback: None,
                    host: Some("conductor-1".into()),
                },
            )
            .await
            .unwrap();
    }
    let page = store
        .list_actions(node.uuid, 2, None, UpdatedWindow::default())
        .await
        .unwrap();
    assert_eq!(
        page.iter()
            .map(|a| a.request_id.as_str())
            .collect::<Vec<_>>(),
        ["req-2", "req-1"]
    );
    assert_eq!(page[1].events.len(), 2);
    assert_eq!(page[1].events[1].event, "wait_power_state");
    assert_eq!(
        (page[1].user_id.as_deref(), page[1].user_name.as_deref()),
        (Some("0"), Some("root"))
    );
    let rest = store
        .list_actions(node.uuid, 2, Some("req-1".into()), UpdatedWindow::default())
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].request_id, "req-0");
}

/// Runs `sql` on the database beside the store, as another conductor (or a
/// test standing in for a future one) would.
fn execute(store: &Store, sql: &str, params: impl rusqlite::Params) {
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    conn.execute(sql, params).unwrap();
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[tokio::test]
async fn an_expired_reservation_does_not_block_changes() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    for name in ["stale", "live"] {
        store.create_node(spec(name)).await.unwrap();
    }
    let reserve = |name: &str, expires: time::OffsetDateTime| {
        let at = expires
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        execute(
            &store,
            "UPDATE nodes SET reservation = 'crashed-conductor', reservation_expires_at = ?1 WHERE name = ?2",
            (at, name),
        );
    };
    let now = time::OffsetDateTime::now_utc();
    reserve("stale", now - time::Duration::minutes(5));
    reserve("live", now + time::Duration::hours(1));

    let rename = |to: &'static str| {
        move |n: &Node| {
            let mut s = n.spec.clone();
            s.power_domain = Some(to.into());
            Ok::<_, String>(s)
        }
    };
    let err = store
        .update_node(NodeIdent::Name("live".into()), rename("rack-2"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, UpdateError::Store(StoreError::NodeBusy { reason, .. }) if reason.contains("crashed-conductor")),
        "{err}"
    );
    let err = store
        .delete_node(NodeIdent::Name("live".into()), None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NodeBusy { .. }), "{err}");

    let updated = store
        .update_node(NodeIdent::Name("stale".into()), rename("rack-2"), None)
        .await
        .unwrap();
    assert_eq!(updated.spec.power_domain.as_deref(), Some("rack-2"));
    store
        .delete_node(NodeIdent::Name("stale".into()), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn deletion_markers_are_pruned_after_the_retention() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let specs: Vec<NodeSpec> = (0..4).map(|i| spec(&format!("n{i}"))).collect();
    let uuids = store.import_nodes(specs).await.unwrap();
    let page_after = |marker| store.list_nodes(NodeFilter::default(), 10, Some(marker));

    store
        .delete_node(NodeIdent::Uuid(uuids[0]), None)
        .await
        .unwrap();
    // Just deleted: the marker still says where the next page starts.
    let page = page_after(uuids[0]).await.unwrap();
    assert_eq!(page.first().map(|n| n.uuid), Some(uuids[1]));

    // Once it is older than the retention, the next deletion prunes it.
    let retention =
        i64::try_from(StoreOptions::default().deleted_marker_retention.as_secs()).unwrap();
    execute(
        &store,
        "UPDATE deleted_nodes SET deleted_at = ?1 WHERE uuid = ?2",
        (unix_now() - retention - 1, uuids[0].to_string()),
    );
    store
        .delete_node(NodeIdent::Uuid(uuids[1]), None)
        .await
        .unwrap();
    let err = page_after(uuids[0]).await.unwrap_err();
    assert!(matches!(err, StoreError::MarkerNotFound { .. }), "{err}");
    let page = page_after(uuids[1]).await.unwrap();
    assert_eq!(page.first().map(|n| n.uuid), Some(uuids[2]));

    let conn = rusqlite::Connection::open(store.path()).unwrap();
    let kept: i64 = conn
        .query_row("SELECT COUNT(*) FROM deleted_nodes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(kept, 1, "only the recent deletion is kept");
}

#[tokio::test]
async fn reads_beyond_the_reader_pool_wait_instead_of_failing() {
    let dir = TempDir::new().unwrap();
    let options = StoreOptions {
        max_readers: 1,
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path().join("baton.db"), options)
        .await
        .unwrap();
    store.create_node(spec("a")).await.unwrap();
    let reads: Vec<_> = (0..64)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.get_node(NodeIdent::Name("a".into())).await })
        })
        .collect();
    for read in reads {
        assert_eq!(read.await.unwrap().unwrap().spec.name.as_deref(), Some("a"));
    }
}

/// An operation, its phase, a lease and learned timings survive a restart
/// exactly as written, and clearing the operation clears the target.
#[tokio::test]
async fn operations_round_trip_through_the_database() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let node = store.create_node(spec("op")).await.unwrap();
    let requested_at = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    let operation = Operation {
        verb: PowerVerb::Reboot,
        request_id: "req-1".into(),
        boot_first: Some("pxe".into()),
        timeout: Some(std::time::Duration::from_millis(90_500)),
        phase: OpPhase::Queued,
        requested_at,
        sub_job: Some("sub-1".into()),
    };
    let change = NodeChange {
        update: NodeUpdate {
            operation: Some(Some(operation.clone())),
            reservation: Some(Some(Reservation {
                holder: "host-a".into(),
                expires_at: requested_at,
            })),
            transitions: Some(Transitions {
                power_on_ms: Some(1200),
                power_off_ms: None,
            }),
            ..NodeUpdate::default()
        },
        action: Some(NewAction {
            request_id: "req-1".into(),
            node_uuid: node.uuid,
            action: "reboot".into(),
            user_id: Some("0".into()),
            user_name: None,
            message: None,
            project_id: None,
            sub_job_id: None,
        }),
        ..NodeChange::default()
    };
    let changed = store
        .change_node(NodeIdent::Uuid(node.uuid), move |_| Ok::<_, ()>(change))
        .await
        .unwrap();
    assert_eq!(changed.target_power_state, Some(PowerState::On));
    assert_eq!(changed.conductor.operation.as_ref(), Some(&operation));
    drop(store);

    let store = open(&dir).await;
    let pending = store.pending_operations().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].conductor.operation, Some(operation));
    assert_eq!(pending[0].conductor.transitions.power_on_ms, Some(1200));
    assert_eq!(pending[0].reservation.as_deref(), Some("host-a"));

    let cleared = store
        .change_node(NodeIdent::Uuid(node.uuid), |_| {
            Ok::<_, ()>(NodeChange {
                update: NodeUpdate {
                    operation: Some(None),
                    phase: None,
                    power_state: Some(Some(PowerState::On)),
                    ..NodeUpdate::default()
                },
                action_message: Some(("req-1".into(), "done".into())),
                ..NodeChange::default()
            })
        })
        .await
        .unwrap();
    assert_eq!(cleared.target_power_state, None);
    assert_eq!(cleared.conductor.operation, None);
    assert!(store.pending_operations().await.unwrap().is_empty());
    let action = store.get_action(node.uuid, "req-1".into()).await.unwrap();
    assert_eq!(action.message.as_deref(), Some("done"));
}

/// `changes-before` pages through the log: a full page of matching actions
/// comes back even when newer ones that do not match come first.
#[tokio::test]
async fn action_windows_fill_whole_pages() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    let node = store.create_node(spec("w")).await.unwrap();
    let mut times = Vec::new();
    for i in 0..6 {
        let action = store
            .record_action(NewAction {
                request_id: format!("req-{i}"),
                node_uuid: node.uuid,
                action: "stop".into(),
                user_id: None,
                user_name: None,
                message: None,
                project_id: None,
                sub_job_id: None,
            })
            .await
            .unwrap();
        times.push(action.updated_at);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let window = UpdatedWindow {
        since: None,
        before: Some(times[2]),
    };
    let page = store
        .list_actions(node.uuid, 2, None, window)
        .await
        .unwrap();
    let ids: Vec<_> = page.iter().map(|a| a.request_id.as_str()).collect();
    assert_eq!(ids, ["req-2", "req-1"]);
    let since = UpdatedWindow {
        since: Some(times[4]),
        before: None,
    };
    let page = store
        .list_actions(node.uuid, 10, None, since)
        .await
        .unwrap();
    let ids: Vec<_> = page.iter().map(|a| a.request_id.as_str()).collect();
    assert_eq!(ids, ["req-5", "req-4"]);
}

async fn change(store: &Store, name: &str, update: NodeUpdate) {
    store
        .change_node(NodeIdent::Name(name.into()), move |_| {
            Ok::<_, ()>(NodeChange::from(update))
        })
        .await
        .unwrap();
}

fn names(nodes: &[Node]) -> Vec<&str> {
    nodes
        .iter()
        .filter_map(|n| n.spec.name.as_deref())
        .collect()
}

/// A sweep lists ids (failing nodes first) and loads them a few at a time:
/// each load keeps the listing's order and drops a node that stopped being
/// a candidate in between.
#[tokio::test]
async fn sync_candidates_load_in_chunks_failing_first() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir).await;
    for name in ["a", "b", "c", "d", "e"] {
        store.create_node(spec(name)).await.unwrap();
    }
    let failing = NodeUpdate {
        sync_failures: Some(2),
        ..NodeUpdate::default()
    };
    change(&store, "d", failing).await;
    let faulted = NodeUpdate {
        maintenance: Some(Maintenance {
            on: true,
            reason: Some("no answer".into()),
            fault: Some("power failure".into()),
        }),
        ..NodeUpdate::default()
    };
    change(&store, "b", faulted).await;

    let ids = store.sync_candidate_ids(false).await.unwrap();
    assert_eq!(ids.len(), 4);
    let first = store
        .sync_candidates_among(ids[..2].to_vec(), false)
        .await
        .unwrap();
    assert_eq!(names(&first), ["d", "a"], "failing first, then in order");

    let target = NodeUpdate {
        operation: Some(Some(Operation {
            verb: PowerVerb::Off,
            request_id: "req-c".into(),
            sub_job: None,
            boot_first: None,
            timeout: None,
            phase: OpPhase::Queued,
            requested_at: time::OffsetDateTime::now_utc(),
        })),
        ..NodeUpdate::default()
    };
    change(&store, "c", target).await;
    let rest = store
        .sync_candidates_among(ids[2..].to_vec(), false)
        .await
        .unwrap();
    assert_eq!(names(&rest), ["e"], "c gained a target after the listing");

    let faulted_ids = store.sync_candidate_ids(true).await.unwrap();
    let faulted = store
        .sync_candidates_among(faulted_ids, true)
        .await
        .unwrap();
    assert_eq!(names(&faulted), ["b"]);
    assert!(store
        .sync_candidates_among(Vec::new(), false)
        .await
        .unwrap()
        .is_empty());
}
