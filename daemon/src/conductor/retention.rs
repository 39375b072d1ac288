//! Action retention: a background task that deletes action records (with
//! their events) older than `actions.retention`, and batch jobs (with their
//! sub-jobs) that ended longer ago than that, so the log stays bounded
//! however long batond runs. It prunes once at start, then every hour —
//! or every `retention`, when that is shorter, so that a record never
//! outlives the retention by more than one period — and at once when a
//! reload changes the setting. The store works through the log in small
//! transactions, so a prune never keeps other writes waiting long, and
//! never takes the record of an operation or batch job still running.

use std::time::Duration;

use baton_state::Store;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Longest time between two prunes.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);

/// Prunes until `stop`, with the retention `settings` holds at each prune.
pub async fn run(store: Store, mut settings: watch::Receiver<Duration>, stop: CancellationToken) {
    loop {
        let retention = *settings.borrow_and_update();
        tokio::select! {
            () = stop.cancelled() => return,
            () = prune(&store, retention) => {}
        }
        tokio::select! {
            () = stop.cancelled() => return,
            changed = settings.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep(retention.min(PRUNE_EVERY)) => {}
        }
    }
}

async fn prune(store: &Store, retention: Duration) {
    let actions = store.prune_actions(retention).await;
    report(actions, retention, "action records");
    let jobs = store.prune_jobs(retention).await;
    report(jobs, retention, "batch jobs");
}

fn report(pruned: Result<usize, baton_state::StoreError>, retention: Duration, what: &str) {
    match pruned {
        Ok(0) => {}
        Ok(deleted) => tracing::info!(
            deleted,
            retention = %humantime::format_duration(retention),
            "pruned {what} older than the retention"
        ),
        // The next period tries again; a store that refuses writes says so
        // in its health report.
        Err(error) => tracing::warn!(%error, "cannot prune old {what}"),
    }
}
