//! Human output of the CLI: aligned tables and key/value blocks.

use std::fmt::Write as _;

use crate::api::types::{
    power_state_key, ActionAccepted, ConductorStatus, InstanceAction, JobDocument, NodeStates,
    NodeSummary, NodeView, SubJobDocument,
};
use crate::cli::progress::{rate_and_eta, Progress};

/// Renders rows under a header, each column as wide as its widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}

pub fn node_table(nodes: &[NodeSummary]) -> String {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.uuid.to_string(),
                or_dash(n.name.as_deref()),
                n.driver.to_string(),
                or_dash(n.power_domain.as_deref()),
                power_state_key(n.power_state).to_owned(),
                n.target_power_state.map_or("-".into(), |t| t.to_string()),
                n.maintenance.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "UUID",
            "NAME",
            "DRIVER",
            "POWER DOMAIN",
            "POWER",
            "TARGET",
            "MAINTENANCE",
        ],
        &rows,
    )
}

pub fn node_table_long(nodes: &[NodeView]) -> String {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.uuid.to_string(),
                or_dash(n.name.as_deref()),
                n.driver.to_string(),
                bmc_endpoint(n),
                or_dash(n.power_domain.as_deref()),
                power_state_key(n.power_state).to_owned(),
                n.target_power_state.map_or("-".into(), |t| t.to_string()),
                n.maintenance.to_string(),
                n.locked.to_string(),
                or_dash(n.last_error.as_deref()),
            ]
        })
        .collect();
    table(
        &[
            "UUID",
            "NAME",
            "DRIVER",
            "BMC",
            "POWER DOMAIN",
            "POWER",
            "TARGET",
            "MAINTENANCE",
            "LOCKED",
            "LAST ERROR",
        ],
        &rows,
    )
}

/// `address:port`, with the driver's default port when none is set.
fn bmc_endpoint(n: &NodeView) -> String {
    let port = n.bmc.port.unwrap_or_else(|| default_port(n));
    let bare_ipv6 = n.bmc.address.contains(':') && !n.bmc.address.contains("://");
    if bare_ipv6 {
        format!("[{}]:{port}", n.bmc.address)
    } else {
        format!("{}:{port}", n.bmc.address)
    }
}

fn default_port(n: &NodeView) -> u16 {
    if n.bmc.address.starts_with("http://") {
        80
    } else {
        n.driver.default_port()
    }
}

fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}

/// Where a node's BMC password comes from (never the password itself).
fn password_source(bmc: &baton_state::Bmc) -> String {
    match (&bmc.password, &bmc.password_file) {
        (Some(masked), _) => masked.to_string(),
        (None, Some(file)) => format!("from file {file}"),
        (None, None) => "batond's default".to_owned(),
    }
}

pub fn node_detail(n: &NodeView) -> String {
    fields(&[
        ("uuid", n.uuid.to_string()),
        ("name", or_dash(n.name.as_deref())),
        ("driver", n.driver.to_string()),
        ("bmc", bmc_endpoint(n)),
        ("bmc username", n.bmc.username.clone()),
        ("bmc password", password_source(&n.bmc)),
        ("bmc system id", or_dash(n.bmc.system_id.as_deref())),
        ("verify tls", n.bmc.verify_tls.to_string()),
        ("ca file", or_dash(n.bmc.ca_file.as_deref())),
        ("power domain", or_dash(n.power_domain.as_deref())),
        ("power state", power_state_key(n.power_state).to_owned()),
        (
            "target power state",
            n.target_power_state.map_or("-".into(), |t| t.to_string()),
        ),
        ("boot device", or_dash(n.boot_device.as_deref())),
        ("maintenance", n.maintenance.to_string()),
        (
            "maintenance reason",
            or_dash(n.maintenance_reason.as_deref()),
        ),
        ("fault", or_dash(n.fault.as_deref())),
        ("locked", n.locked.to_string()),
        ("lock reason", or_dash(n.lock_reason.as_deref())),
        ("last error", or_dash(n.last_error.as_deref())),
        ("reservation", or_dash(n.reservation.as_deref())),
        ("operation", operation(n)),
        (
            "learned power on",
            seconds(n.learned_transitions.power_on_seconds),
        ),
        (
            "learned power off",
            seconds(n.learned_transitions.power_off_seconds),
        ),
        ("sync failures", n.sync_failures.to_string()),
        ("created at", n.created_at.clone()),
        ("updated at", n.updated_at.clone()),
        (
            "extra",
            serde_json::Value::Object(n.extra.clone()).to_string(),
        ),
    ])
}

/// The power operation in flight: verb, phase and action record.
fn operation(n: &NodeView) -> String {
    n.power_operation.as_ref().map_or("-".into(), |op| {
        format!("{} ({}, {})", op.verb, op.phase, op.request_id)
    })
}

fn seconds(value: Option<f64>) -> String {
    value.map_or("-".into(), |s| format!("{s:.2}s"))
}

fn last_sweeps(s: &ConductorStatus) -> String {
    if s.last_sweeps.is_empty() {
        return "-".into();
    }
    s.last_sweeps
        .iter()
        .map(|w| {
            format!(
                "{} at {} took {:.1}s ({} read, {} failed, {} changed)",
                w.kind,
                w.started_at,
                w.duration_ms as f64 / 1000.0,
                w.read,
                w.failed,
                w.changed
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub fn conductor_status(s: &ConductorStatus) -> String {
    let counts: Vec<String> = s
        .nodes
        .by_power_state
        .iter()
        .map(|(state, n)| format!("{state}: {n}"))
        .collect();
    fields(&[
        ("version", s.version.clone()),
        ("hostname", s.hostname.clone()),
        ("started at", s.started_at.clone()),
        (
            "uptime",
            humantime::format_duration(std::time::Duration::from_secs(s.uptime_seconds))
                .to_string(),
        ),
        (
            "workers",
            format!(
                "{} busy of {} ({} waiting)",
                s.workers.busy, s.workers.max, s.workers.waiting
            ),
        ),
        (
            "operations",
            format!(
                "{} in flight, {} succeeded, {} failed",
                s.operations.in_flight, s.operations.succeeded, s.operations.failed
            ),
        ),
        ("last sweeps", last_sweeps(s)),
        (
            "nodes",
            format!("{} ({})", s.nodes.total, counts.join(", ")),
        ),
        (
            "rss",
            format!("{:.1} MiB", s.process.rss_bytes as f64 / 1_048_576.0),
        ),
        (
            "cpu",
            format!(
                "{:.1}% ({:.2}s total)",
                s.process.cpu_percent, s.process.cpu_seconds
            ),
        ),
        ("database", s.database.path.clone()),
        (
            "database size",
            format!("{:.1} MiB", s.database.size_bytes as f64 / 1_048_576.0),
        ),
        ("schema version", s.database.schema_version.to_string()),
        (
            "database writes",
            s.database
                .writes_refused
                .clone()
                .unwrap_or_else(|| "ok".to_owned()),
        ),
    ])
}

/// A node's states after a change done while the caller waited.
pub fn node_states(node: &str, s: &NodeStates) -> String {
    fields(&[
        ("node", node.to_owned()),
        ("power state", power_state_key(s.power_state).to_owned()),
        (
            "target power state",
            s.target_power_state.map_or("-".into(), |t| t.to_string()),
        ),
        ("boot device", or_dash(s.boot_device.as_deref())),
        ("maintenance", s.maintenance.to_string()),
        (
            "maintenance reason",
            or_dash(s.maintenance_reason.as_deref()),
        ),
        ("fault", or_dash(s.fault.as_deref())),
        ("locked", s.locked.to_string()),
        ("last error", or_dash(s.last_error.as_deref())),
    ])
}

/// A change batond accepted and carries out on its own.
pub fn accepted(node: &str, a: &ActionAccepted) -> String {
    match a.target_power_state {
        Some(target) => format!(
            "{node}: {} accepted, going to {target} (request {id})\n\
             follow it with `baton node actions {node} {id}`\n",
            a.action,
            id = a.request_id
        ),
        None => format!("{node}: {} done (request {})\n", a.action, a.request_id),
    }
}

/// The result of an action: its last event's (`Success` or `Error`), or
/// `None` while it has none.
pub fn action_result(a: &InstanceAction) -> Option<&str> {
    a.events.last().and_then(|e| e.result.as_deref())
}

/// The end of an operation followed with `--wait`, when it succeeded.
pub fn outcome(node: &str, view: &NodeView, a: &InstanceAction) -> String {
    if action_result(a) != Some("Success") {
        return String::new();
    }
    format!(
        "{node}: {} ({})\n",
        power_state_key(view.power_state),
        a.message.as_deref().unwrap_or(&a.action)
    )
}

/// Who asked for an action: `alice (1001)`, or the uid alone when it did
/// not resolve to a name.
fn action_user(a: &InstanceAction) -> String {
    match (&a.user_name, &a.user_id) {
        (Some(name), Some(uid)) => format!("{name} ({uid})"),
        (Some(name), None) => name.clone(),
        (None, uid) => or_dash(uid.as_deref()),
    }
}

pub fn action_table(actions: &[InstanceAction]) -> String {
    let rows: Vec<Vec<String>> = actions
        .iter()
        .map(|a| {
            vec![
                a.request_id.clone(),
                a.action.clone(),
                a.start_time.clone(),
                action_user(a),
                or_dash(action_result(a)),
                or_dash(a.message.as_deref()),
            ]
        })
        .collect();
    table(
        &[
            "REQUEST ID",
            "ACTION",
            "STARTED",
            "USER",
            "RESULT",
            "MESSAGE",
        ],
        &rows,
    )
}

pub fn action_detail(a: &InstanceAction) -> String {
    let mut out = fields(&[
        ("request id", a.request_id.clone()),
        ("action", a.action.clone()),
        ("node", a.instance_uuid.to_string()),
        ("user", action_user(a)),
        ("started", a.start_time.clone()),
        ("updated", a.updated_at.clone()),
        ("result", or_dash(action_result(a))),
        ("message", or_dash(a.message.as_deref())),
    ]);
    if !a.events.is_empty() {
        let rows: Vec<Vec<String>> = a
            .events
            .iter()
            .map(|e| {
                vec![
                    e.event.clone(),
                    e.start_time.clone(),
                    or_dash(e.finish_time.as_deref()),
                    or_dash(e.result.as_deref()),
                    or_dash(e.traceback.as_deref()),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(
            &["EVENT", "STARTED", "FINISHED", "RESULT", "DETAIL"],
            &rows,
        ));
    }
    out
}

/// The operation as the CLI names it: `os-stop HARD`.
fn job_operation(j: &JobDocument) -> String {
    match &j.stop_type {
        Some(t) => format!("{} {t}", j.operation),
        None => j.operation.clone(),
    }
}

fn counts(j: &JobDocument) -> String {
    let c = &j.entities.sub_jobs_status;
    format!(
        "{} total: {} succeeded, {} failed, {} running, {} waiting",
        j.entities.sub_jobs_total, c.success, c.fail, c.running, c.init
    )
}

/// One job in a few lines: id, operation, status, counts, reason.
pub fn job_summary(j: &JobDocument) -> String {
    let mut pairs = vec![
        ("job", j.job_id.clone()),
        ("operation", job_operation(j)),
        ("status", j.status.clone()),
        ("sub-jobs", counts(j)),
    ];
    if let Some(reason) = &j.fail_reason {
        pairs.push(("fail reason", reason.clone()));
    }
    fields(&pairs)
}

pub fn job_detail(j: &JobDocument) -> String {
    let mut out = fields(&[
        ("job", j.job_id.clone()),
        ("operation", job_operation(j)),
        ("status", j.status.clone()),
        ("sub-jobs", counts(j)),
        ("error code", or_dash(j.error_code.as_deref())),
        ("fail reason", or_dash(j.fail_reason.as_deref())),
        ("created at", j.created_at.clone()),
        ("begin time", or_dash(j.begin_time.as_deref())),
        ("end time", or_dash(j.end_time.as_deref())),
        ("request", j.request_id.clone()),
        ("project", or_dash(j.project_id.as_deref())),
        ("user", or_dash(j.user_id.as_deref())),
        ("schedule", or_dash(j.schedule_id.as_deref())),
    ]);
    let subs = j.entities.sub_jobs.as_deref().unwrap_or_default();
    if !subs.is_empty() {
        let rows: Vec<Vec<String>> = subs.iter().map(sub_job_row).collect();
        out.push('\n');
        out.push_str(&table(&["SERVER", "STATUS", "CODE", "DETAIL"], &rows));
    }
    out
}

fn server(s: &SubJobDocument) -> String {
    s.entities
        .server_name
        .clone()
        .unwrap_or_else(|| s.entities.server_id.to_string())
}

fn sub_job_row(s: &SubJobDocument) -> Vec<String> {
    let detail = s
        .fail_reason
        .as_deref()
        .or(s.message.as_deref())
        .unwrap_or("-");
    vec![
        server(s),
        s.status.clone(),
        or_dash(s.error_code.as_deref()),
        detail.to_owned(),
    ]
}

pub fn job_table(jobs: &[JobDocument]) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            let c = &j.entities.sub_jobs_status;
            vec![
                j.job_id.clone(),
                job_operation(j),
                j.status.clone(),
                format!("{}/{}", c.success + c.fail, j.entities.sub_jobs_total),
                c.fail.to_string(),
                j.created_at.clone(),
            ]
        })
        .collect();
    table(
        &["JOB", "OPERATION", "STATUS", "ENDED", "FAILED", "CREATED"],
        &rows,
    )
}

/// Every failed sub-job of these jobs, in one table (empty when none).
pub fn failure_table(jobs: &[JobDocument]) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .flat_map(|j| j.entities.sub_jobs.as_deref().unwrap_or_default())
        .filter(|s| s.status == "FAIL")
        .map(|s| {
            vec![
                server(s),
                or_dash(s.error_code.as_deref()),
                or_dash(s.fail_reason.as_deref()),
            ]
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    table(&["FAILED SERVER", "CODE", "REASON"], &rows)
}

/// Where a set of jobs stands, summed.
pub fn job_progress(jobs: &[JobDocument]) -> Progress {
    jobs.iter().fold(Progress::default(), |p, j| Progress {
        succeeded: p.succeeded + j.entities.sub_jobs_status.success,
        failed: p.failed + j.entities.sub_jobs_status.fail,
        total: p.total + j.entities.sub_jobs_total,
    })
}

/// A progress line for logs (stderr not a terminal).
pub fn progress_line(p: &Progress, elapsed: std::time::Duration) -> String {
    format!("progress: {}", rate_and_eta(p, elapsed))
}

pub fn schedule_table(schedules: &[crate::api::types::ScheduleDocument]) -> String {
    let rows: Vec<Vec<String>> = schedules
        .iter()
        .map(|s| {
            let (operation, count) = s.batch.as_object().and_then(|o| o.iter().next()).map_or(
                ("-".to_owned(), 0),
                |(op, body)| {
                    let kind = body.get("type").and_then(|t| t.as_str());
                    let n = body
                        .get("servers")
                        .and_then(|v| v.as_array())
                        .map_or(0, Vec::len);
                    (kind.map_or(op.clone(), |k| format!("{op} {k}")), n)
                },
            );
            vec![
                s.schedule_id.clone(),
                s.cron.clone(),
                s.time_zone.clone(),
                operation,
                count.to_string(),
                or_dash(s.next_fire.as_deref()),
                or_dash(s.last_job_id.as_deref()),
            ]
        })
        .collect();
    table(
        &[
            "SCHEDULE",
            "CRON",
            "ZONE",
            "OPERATION",
            "SERVERS",
            "NEXT",
            "LAST JOB",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let out = table(
            &["A", "LONGER"],
            &[
                vec!["wide-cell".into(), "x".into()],
                vec!["b".into(), "y".into()],
            ],
        );
        assert_eq!(out, "A          LONGER\nwide-cell  x\nb          y\n");
    }
}
