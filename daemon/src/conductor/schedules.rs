//! Cron schedules of batches: `POST /v1/schedules` stores a cron
//! expression, an IANA time zone and a batch body; each time the
//! expression matches (in that zone) the batch is started as if it had been
//! posted, and the job records the schedule. Schedules live in the
//! database and are armed again at start; a firing missed while batond was
//! down is not made up (as cron does).
//!
//! The next firing is computed with `croner` in the schedule's own zone
//! (`chrono-tz`) after every firing, so daylight-saving changes move it
//! the way the zone's clocks move. (tokio-cron-scheduler, which also parses
//! with croner, fixes a zone's UTC offset when a job is created, so a
//! schedule would be an hour off after each change; it is not used here.)

use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use baton_state::Schedule;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use serde::Deserialize;
use serde_json::value::RawValue;
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::actions::Caller;
use super::batch::parse_batch;
use super::{Conductor, ConductorError};
use crate::messages;

/// A schedule as `POST /v1/schedules` takes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    cron: String,
    #[serde(default = "utc")]
    time_zone: String,
    batch: Box<RawValue>,
}

fn utc() -> String {
    "UTC".into()
}

/// A cron expression, read in its zone.
#[derive(Debug, Clone)]
pub struct CronSpec {
    cron: Cron,
    zone: Tz,
}

impl CronSpec {
    /// Parses `cron` (5 fields, or 6 with seconds first) in IANA `zone`;
    /// the error names the field that is wrong.
    pub fn parse(cron: &str, zone: &str) -> Result<Self, ConductorError> {
        let invalid = |m: String| ConductorError::InvalidSchedule(m);
        let parsed = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(cron)
            .map_err(|e| {
                invalid(format!(
                    "cron {:?} is not a cron expression ({e}); use 5 fields (minute hour day month weekday), \
                     or 6 with seconds first, e.g. \"0 2 * * *\"",
                    messages::clip(cron, 64)
                ))
            })?;
        let zone = Tz::from_str(zone).map_err(|_| {
            invalid(format!(
                "time_zone {:?} is not a known time zone; use an IANA name such as \"UTC\" or \"Europe/Berlin\"",
                messages::clip(zone, 64)
            ))
        })?;
        Ok(Self { cron: parsed, zone })
    }

    /// The first firing after `after`, in UTC.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&after.with_timezone(&self.zone), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// The armed schedules and when each fires next.
#[derive(Debug, Default)]
pub struct Schedules {
    armed: Mutex<Vec<Armed>>,
    changed: Notify,
}

#[derive(Debug, Clone)]
struct Armed {
    schedule: Schedule,
    spec: CronSpec,
    next: Option<DateTime<Utc>>,
}

impl Schedules {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Armed>> {
        self.armed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Arms a stored schedule (one whose expression no longer parses is
    /// logged and left out).
    fn arm(&self, schedule: Schedule) {
        match CronSpec::parse(&schedule.cron, &schedule.time_zone) {
            Ok(spec) => {
                let next = spec.next_after(Utc::now());
                self.lock().push(Armed {
                    schedule,
                    spec,
                    next,
                });
                self.changed.notify_one();
            }
            Err(error) => {
                tracing::warn!(schedule = %schedule.schedule_id, %error, "cannot arm a stored schedule");
            }
        }
    }

    fn disarm(&self, schedule_id: &str) {
        self.lock()
            .retain(|a| a.schedule.schedule_id != schedule_id);
        self.changed.notify_one();
    }

    /// When a schedule fires next, if it is armed.
    pub fn next_fire(&self, schedule_id: &str) -> Option<DateTime<Utc>> {
        self.lock()
            .iter()
            .find(|a| a.schedule.schedule_id == schedule_id)
            .and_then(|a| a.next)
    }

    /// The schedules due at `now`, each moved on to its next firing.
    fn take_due(&self, now: DateTime<Utc>) -> Vec<Schedule> {
        let mut armed = self.lock();
        let mut due = Vec::new();
        for a in armed.iter_mut() {
            if a.next.is_some_and(|next| next <= now) {
                due.push(a.schedule.clone());
                a.next = a.spec.next_after(now);
            }
        }
        due
    }

    fn earliest(&self) -> Option<DateTime<Utc>> {
        self.lock().iter().filter_map(|a| a.next).min()
    }
}

/// The schedule timer: fires what is due, sleeps until the next firing or
/// a change, until `stop`.
pub(super) async fn run(conductor: Conductor, stop: CancellationToken) {
    let schedules = Arc::clone(&conductor.schedules);
    loop {
        let wait = schedules
            .earliest()
            .map(|next| (next - Utc::now()).to_std().unwrap_or(Duration::ZERO));
        tokio::select! {
            () = stop.cancelled() => return,
            () = schedules.changed.notified() => continue,
            () = sleep_opt(wait) => {}
        }
        for schedule in schedules.take_due(Utc::now()) {
            conductor.fire(schedule).await;
        }
    }
}

async fn sleep_opt(wait: Option<Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}

impl Conductor {
    /// Arms every stored schedule; at start.
    pub(super) async fn arm_schedules(&self) -> Result<usize, ConductorError> {
        let stored = self.store.schedules().await?;
        let count = stored.len();
        for schedule in stored {
            self.schedules.arm(schedule);
        }
        Ok(count)
    }

    /// Checks and stores a schedule, then arms it.
    pub async fn add_schedule(
        &self,
        raw: &str,
        caller: &Caller,
        project_id: Option<String>,
    ) -> Result<Schedule, ConductorError> {
        let invalid = |m: String| ConductorError::InvalidSchedule(m);
        let mut de = serde_json::Deserializer::from_str(raw);
        let body: Body = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            invalid(format!(
                "{}; send {{\"cron\": \"0 2 * * *\", \"time_zone\": \"UTC\", \"batch\": {{\"os-stop\": {{\"servers\": [...]}}}}}}",
                messages::json_error(&e)
            ))
        })?;
        CronSpec::parse(&body.cron, &body.time_zone)?;
        let request = parse_batch(body.batch.get()).map_err(|e| match e {
            ConductorError::InvalidBatch(m) => invalid(format!("batch: {m}")),
            other => other,
        })?;
        self.store.check_servers(request.servers).await?;
        let schedule = Schedule {
            schedule_id: Uuid::new_v4().to_string(),
            cron: body.cron.trim().to_owned(),
            time_zone: body.time_zone,
            body: body.batch.get().to_owned(),
            project_id,
            user_id: caller.user_id.clone(),
            created_at: OffsetDateTime::now_utc(),
            last_fired: None,
            last_job_id: None,
        };
        let stored = self.store.add_schedule(schedule).await?;
        self.schedules.arm(stored.clone());
        Ok(stored)
    }

    pub async fn list_schedules(&self) -> Result<Vec<Schedule>, ConductorError> {
        Ok(self.store.schedules().await?)
    }

    pub async fn delete_schedule(&self, id: &str) -> Result<Schedule, ConductorError> {
        let removed = self.store.delete_schedule(id.to_owned()).await?;
        self.schedules.disarm(id);
        Ok(removed)
    }

    /// When a schedule fires next.
    pub fn next_fire(&self, schedule_id: &str) -> Option<DateTime<Utc>> {
        self.schedules.next_fire(schedule_id)
    }

    /// One firing: the batch starts as if posted by the schedule's owner.
    async fn fire(&self, schedule: Schedule) {
        let caller = Caller {
            request_id: format!("req-{}", Uuid::new_v4()),
            user_id: schedule.user_id.clone(),
            user_name: crate::users::name_of_text(schedule.user_id.as_deref()).await,
        };
        let started = match parse_batch(&schedule.body) {
            Ok(request) => {
                self.start_batch(
                    request,
                    &caller,
                    schedule.project_id.clone(),
                    Some(schedule.schedule_id.clone()),
                )
                .await
            }
            Err(error) => Err(error),
        };
        let job_id = match started {
            Ok(job_id) => {
                tracing::info!(schedule = %schedule.schedule_id, job = %job_id, request_id = %caller.request_id, "schedule fired");
                Some(job_id)
            }
            Err(error) => {
                tracing::warn!(schedule = %schedule.schedule_id, %error, "schedule fired but its batch was refused");
                None
            }
        };
        let at = OffsetDateTime::now_utc();
        if let Err(error) = self
            .store
            .schedule_fired(schedule.schedule_id.clone(), at, job_id)
            .await
        {
            tracing::warn!(schedule = %schedule.schedule_id, %error, "cannot record a schedule's firing");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn five_and_six_field_expressions_fire_in_their_zone() {
        let spec = CronSpec::parse("0 2 * * *", "Europe/Berlin").unwrap();
        let after = Utc.with_ymd_and_hms(2026, 1, 10, 12, 0, 0).unwrap();
        // 02:00 in Berlin in winter is 01:00 UTC.
        assert_eq!(
            spec.next_after(after).unwrap(),
            Utc.with_ymd_and_hms(2026, 1, 11, 1, 0, 0).unwrap()
        );
        let every_5s = CronSpec::parse("*/5 * * * * *", "UTC").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 1).unwrap();
        assert_eq!(
            every_5s.next_after(t).unwrap(),
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 5).unwrap()
        );
    }

    /// Across the spring change a daily 03:30 schedule keeps local time:
    /// 02:30 UTC before it, 01:30 UTC after (no fixed offset).
    #[test]
    fn daylight_saving_moves_the_firing_with_the_clocks() {
        let spec = CronSpec::parse("30 3 * * *", "Europe/Berlin").unwrap();
        let before = Utc.with_ymd_and_hms(2026, 3, 27, 12, 0, 0).unwrap();
        assert_eq!(
            spec.next_after(before).unwrap(),
            Utc.with_ymd_and_hms(2026, 3, 28, 2, 30, 0).unwrap()
        );
        let after = Utc.with_ymd_and_hms(2026, 3, 30, 12, 0, 0).unwrap();
        assert_eq!(
            spec.next_after(after).unwrap(),
            Utc.with_ymd_and_hms(2026, 3, 31, 1, 30, 0).unwrap()
        );
    }

    #[test]
    fn bad_expressions_and_zones_name_their_field() {
        let e = CronSpec::parse("every day", "UTC").unwrap_err().to_string();
        assert!(e.contains("cron \"every day\""), "{e}");
        let e = CronSpec::parse("0 2 * * *", "Mars/Olympus")
            .unwrap_err()
            .to_string();
        assert!(e.contains("time_zone \"Mars/Olympus\""), "{e}");
        assert!(CronSpec::parse("61 * * * *", "UTC").is_err());
    }
}
