//! Batch jobs: stop, start or reboot up to 1000 servers as one job, each
//! server a sub-job carried out as that node's power operation on the same
//! pool, under the same per-BMC rules, as a single-node request.
//!
//! A batch is validated as a whole (body, count, repeated and unknown ids)
//! and accepted in one transaction — the job, its sub-jobs and every node's
//! target — so either all of it is on disk when the caller hears 200, or
//! none of it. A node that cannot take the operation (locked, in
//! maintenance, busy) fails only its own sub-job, at once. The reconcile
//! loop ends each sub-job with its node's last write, and the job settles
//! with its last sub-job.
//!
//! Cancelling ends the sub-jobs whose command has not gone out. Whether it
//! has is decided at one point, [`SubJobGates`]: a sub-job's first command
//! passes its gate only after the pool granted it a worker, and a cancel
//! closes the gate of each sub-job not past it — so a cancelled sub-job
//! never sends anything, and one already sent finishes.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use baton_state::{
    BatchOperation, FailCode, Failure, Job, JobFilter, NewAction, NewJob, NodeChange, NodeUpdate,
    OpPhase, Operation, StopType, MAX_BATCH,
};
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::actions::{blocker, Caller};
use super::{Conductor, ConductorError};
use crate::messages;

/// A parsed batch request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRequest {
    pub operation: BatchOperation,
    /// Node uuids or names, as given.
    pub servers: Vec<String>,
}

/// The body's shape: exactly one of the three actions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    #[serde(rename = "os-stop")]
    stop: Option<Typed>,
    #[serde(rename = "os-start")]
    start: Option<Untyped>,
    reboot: Option<Typed>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Typed {
    #[serde(rename = "type", default)]
    stop_type: Option<String>,
    servers: Vec<Server>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Untyped {
    servers: Vec<Server>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Server {
    id: String,
}

const EXAMPLE: &str = r#"{"os-stop": {"type": "SOFT", "servers": [{"id": "node-1"}]}}"#;

/// Parses and checks a batch body: the one path for the API and for
/// schedules. Every problem found is in the message.
pub fn parse_batch(raw: &str) -> Result<BatchRequest, ConductorError> {
    let invalid = |m: String| ConductorError::InvalidBatch(m);
    let mut de = serde_json::Deserializer::from_str(raw);
    let body: Body = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        invalid(format!(
            "{}; expected e.g. {EXAMPLE}",
            messages::json_error(&e)
        ))
    })?;
    let given = [
        body.stop.as_ref().map(|_| "os-stop"),
        body.start.as_ref().map(|_| "os-start"),
        body.reboot.as_ref().map(|_| "reboot"),
    ];
    let given: Vec<&str> = given.into_iter().flatten().collect();
    let (operation, servers) = match (body.stop, body.start, body.reboot) {
        (Some(t), None, None) => (
            BatchOperation::Stop(stop_type(t.stop_type.as_deref())?),
            t.servers,
        ),
        (None, Some(u), None) => (BatchOperation::Start, u.servers),
        (None, None, Some(t)) => (
            BatchOperation::Reboot(stop_type(t.stop_type.as_deref())?),
            t.servers,
        ),
        _ if given.is_empty() => {
            return Err(invalid(format!(
                "the body names no action; give one of os-stop, os-start, reboot, e.g. {EXAMPLE}"
            )))
        }
        _ => {
            return Err(invalid(format!(
                "the body names {} actions ({}); give exactly one",
                given.len(),
                given.join(", ")
            )))
        }
    };
    let servers: Vec<String> = servers.into_iter().map(|s| s.id).collect();
    check_servers(&servers)?;
    Ok(BatchRequest { operation, servers })
}

fn stop_type(given: Option<&str>) -> Result<StopType, ConductorError> {
    match given {
        None => Ok(StopType::Soft),
        Some(t) => StopType::parse(t).ok_or_else(|| {
            ConductorError::InvalidBatch(format!(
                "type {:?} is not SOFT or HARD",
                messages::clip(t, 32)
            ))
        }),
    }
}

/// 1 to 1000 servers, each named once, no empty id.
fn check_servers(servers: &[String]) -> Result<(), ConductorError> {
    let invalid = |m: String| Err(ConductorError::InvalidBatch(m));
    if servers.is_empty() {
        return invalid("servers is empty; name 1 to 1000 servers".into());
    }
    if servers.len() > MAX_BATCH {
        return invalid(format!(
            "servers has {} entries; a batch holds at most {MAX_BATCH}, split it into several",
            servers.len()
        ));
    }
    if let Some(i) = servers.iter().position(|s| s.trim().is_empty()) {
        return invalid(format!(
            "servers[{i}].id is empty; give a node uuid or name"
        ));
    }
    let mut seen = HashSet::with_capacity(servers.len());
    let mut repeated: Vec<String> = Vec::new();
    for id in servers {
        if !seen.insert(id.as_str()) && !repeated.contains(id) {
            repeated.push(messages::clip(id, 64));
        }
    }
    if !repeated.is_empty() {
        return Err(ConductorError::Store(
            baton_state::StoreError::DuplicateServers(repeated),
        ));
    }
    Ok(())
}

/// Where each batch sub-job stands with respect to sending its command.
#[derive(Debug, Default)]
pub struct SubJobGates {
    gates: Mutex<HashMap<Uuid, (String, Gate)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// Its command went out (or is going out now).
    Passed,
    /// Cancelled before that.
    Closed,
}

impl SubJobGates {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (String, Gate)>> {
        self.gates.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called with a worker in hand, right before a command: true when the
    /// sub-job may send it (and from now on counts as started).
    pub fn pass(&self, node: Uuid, sub_job: &str) -> bool {
        let mut gates = self.lock();
        match gates.get(&node) {
            Some((id, Gate::Closed)) if id == sub_job => false,
            _ => {
                gates.insert(node, (sub_job.to_owned(), Gate::Passed));
                true
            }
        }
    }

    /// Closes a sub-job's gate unless its command went out: true when it
    /// did close (the sub-job can be cancelled).
    pub fn close(&self, node: Uuid, sub_job: &str) -> bool {
        let mut gates = self.lock();
        match gates.get(&node) {
            Some((id, Gate::Passed)) if id == sub_job => false,
            _ => {
                gates.insert(node, (sub_job.to_owned(), Gate::Closed));
                true
            }
        }
    }

    /// Drops a node's gate once its operation is gone.
    pub fn forget(&self, node: Uuid) {
        self.lock().remove(&node);
    }
}

impl Conductor {
    /// Accepts a batch: one transaction writes the job, its sub-jobs and
    /// every node's operation; then the nodes are handed to the reconcile
    /// loop. Returns the job id.
    pub async fn start_batch(
        &self,
        request: BatchRequest,
        caller: &Caller,
        project_id: Option<String>,
        schedule_id: Option<String>,
    ) -> Result<String, ConductorError> {
        let job = NewJob {
            job_id: Uuid::now_v7().to_string(),
            operation: request.operation,
            request_id: caller.request_id.clone(),
            project_id,
            user_id: caller.user_id.clone(),
            schedule_id,
        };
        let job_id = job.job_id.clone();
        let verb = request.operation.verb();
        let lease = self.reconciler.shared().lease(verb, None);
        let action = super::actions::NodeAction::Power {
            verb,
            timeout: None,
        };
        let name = action.name().to_owned();
        let template = NewAction {
            request_id: caller.request_id.clone(),
            node_uuid: Uuid::nil(),
            action: name,
            user_id: caller.user_id.clone(),
            user_name: caller.user_name.clone(),
            message: None,
            project_id: job.project_id.clone(),
            sub_job_id: None,
        };
        let plan = move |node: &baton_state::Node, sub_job: &str| {
            let now = OffsetDateTime::now_utc();
            let failure = blocker(node, now);
            let record = NewAction {
                node_uuid: node.uuid,
                sub_job_id: Some(sub_job.to_owned()),
                message: failure.as_ref().map(|f| f.reason.clone()),
                ..template.clone()
            };
            let update = match failure {
                Some(_) => NodeUpdate::default(),
                None => NodeUpdate {
                    operation: Some(Some(Operation {
                        verb,
                        request_id: template.request_id.clone(),
                        boot_first: None,
                        timeout: None,
                        phase: OpPhase::Queued,
                        requested_at: now,
                        sub_job: Some(sub_job.to_owned()),
                    })),
                    reservation: Some(Some(lease.clone())),
                    last_error: Some(None),
                    ..NodeUpdate::default()
                },
            };
            let change = NodeChange {
                update,
                action: Some(record),
                ..NodeChange::default()
            };
            (change, failure)
        };
        let started = self.store.create_batch(job, request.servers, plan).await?;
        for uuid in started {
            self.reconciler.submit(uuid);
        }
        Ok(job_id)
    }

    pub async fn job(&self, job_id: &str) -> Result<Job, ConductorError> {
        Ok(self.store.get_job(job_id.to_owned()).await?)
    }

    pub async fn jobs(
        &self,
        filter: JobFilter,
        limit: usize,
        marker: Option<String>,
    ) -> Result<Vec<Job>, ConductorError> {
        Ok(self.store.list_jobs(filter, limit, marker).await?)
    }

    /// Cancels the sub-jobs of a job whose command has not gone out; the
    /// others finish. Returns the job as it is then.
    pub async fn cancel_job(&self, job_id: &str) -> Result<Job, ConductorError> {
        let unfinished = self.store.unfinished_sub_jobs(job_id.to_owned()).await?;
        let gates = &self.reconciler.shared().gates;
        let cancellable: Vec<String> = unfinished
            .into_iter()
            .filter(|(sub_job, node)| gates.close(*node, sub_job))
            .map(|(sub_job, _)| sub_job)
            .collect();
        let cleared = self
            .store
            .cancel_sub_jobs(cancellable, Failure::new(FailCode::Cancelled, "cancelled"))
            .await?;
        for uuid in cleared {
            self.reconciler.cancel(uuid);
        }
        self.job(job_id).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn err(raw: &str) -> String {
        parse_batch(raw).unwrap_err().to_string()
    }

    #[test]
    fn parses_the_three_actions_with_soft_by_default() {
        let r = parse_batch(r#"{"os-stop": {"servers": [{"id": "a"}, {"id": "b"}]}}"#).unwrap();
        assert_eq!(r.operation, BatchOperation::Stop(StopType::Soft));
        assert_eq!(r.servers, ["a", "b"]);
        let r = parse_batch(r#"{"os-start": {"servers": [{"id": "a"}]}}"#).unwrap();
        assert_eq!(r.operation, BatchOperation::Start);
        let r = parse_batch(r#"{"reboot": {"type": "HARD", "servers": [{"id": "a"}]}}"#).unwrap();
        assert_eq!(r.operation, BatchOperation::Reboot(StopType::Hard));
    }

    #[test]
    fn refuses_bad_bodies_saying_what_is_wrong() {
        assert!(err("{").contains("expected e.g."));
        assert!(err(r#"{"os-stop": {"servers": [], "x": 1}}"#).contains("unknown field"));
        assert!(
            err(r#"{"os-start": {"type": "HARD", "servers": [{"id": "a"}]}}"#)
                .contains("unknown field")
        );
        assert!(err("{}").contains("names no action"));
        assert!(err(
            r#"{"os-stop": {"servers": [{"id": "a"}]}, "os-start": {"servers": [{"id": "a"}]}}"#
        )
        .contains("exactly one"));
        assert!(
            err(r#"{"os-stop": {"type": "soft", "servers": [{"id": "a"}]}}"#)
                .contains("not SOFT or HARD")
        );
        assert!(err(r#"{"os-stop": {"servers": []}}"#).contains("servers is empty"));
        assert!(err(r#"{"os-stop": {"servers": [{"id": " "}]}}"#).contains("servers[0].id"));
        assert!(err(r#"{"os-stop": {"servers": [{"id": 5}]}}"#).contains("servers[0].id"));
    }

    #[test]
    fn counts_and_repeats_are_checked_and_listed() {
        let many: Vec<String> = (0..=MAX_BATCH)
            .map(|i| format!(r#"{{"id": "n{i}"}}"#))
            .collect();
        let body = format!(r#"{{"os-start": {{"servers": [{}]}}}}"#, many.join(","));
        assert!(err(&body).contains("1001 entries"));
        let e = err(
            r#"{"os-start": {"servers": [{"id": "a"}, {"id": "b"}, {"id": "a"}, {"id": "b"}, {"id": "a"}]}}"#,
        );
        assert!(e.contains("2 server(s) named more than once"), "{e}");
        assert!(e.contains("a, b"), "{e}");
    }

    #[test]
    fn a_gate_decides_once_between_sending_and_cancelling() {
        let gates = SubJobGates::default();
        let (n1, n2) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(gates.pass(n1, "s1"));
        assert!(!gates.close(n1, "s1"), "sent: cannot be cancelled");
        assert!(gates.close(n2, "s2"));
        assert!(!gates.pass(n2, "s2"), "cancelled: must not send");
        // A later sub-job of the same node is not held by an old gate.
        assert!(gates.pass(n2, "s3"));
        gates.forget(n1);
        assert!(gates.close(n1, "s1"));
    }
}
