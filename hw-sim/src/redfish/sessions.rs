//! Redfish sessions of one BMC (`SessionService/Sessions`): creation with a
//! random `X-Auth-Token`, lookup by token (which refreshes the idle timer),
//! expiry after the session timeout, deletion, and a cap on live sessions as
//! real BMCs have.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// Live sessions a BMC holds at most unless configured otherwise; more are
/// refused (`SessionLimitExceeded`).
pub const MAX_SESSIONS: usize = 64;

/// One live session.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    pub id: String,
    pub username: String,
    token: String,
    last_used: Instant,
}

/// The sessions of one BMC.
#[derive(Debug)]
pub(crate) struct Sessions {
    timeout: Duration,
    limit: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_id: HashMap<String, Session>,
    next_id: u64,
    /// The node's session epoch these sessions were made in.
    epoch: u64,
}

/// A created session: its id and the token to hand out once.
#[derive(Debug)]
pub(crate) struct Created {
    pub id: String,
    pub token: String,
}

impl Sessions {
    pub(crate) fn new(timeout: Duration, limit: usize) -> Sessions {
        Sessions {
            timeout,
            limit,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn expire(&self, inner: &mut Inner, now: Instant) {
        let timeout = self.timeout;
        inner
            .by_id
            .retain(|_, s| now.duration_since(s.last_used) < timeout);
    }

    /// Creates a session for `username`, or `None` when the cap is reached.
    pub(crate) fn create(&self, username: &str) -> Option<Created> {
        let now = Instant::now();
        let mut inner = self.lock();
        self.expire(&mut inner, now);
        if inner.by_id.len() >= self.limit {
            return None;
        }
        inner.next_id += 1;
        let id = inner.next_id.to_string();
        let token = format!("{:032x}", rand::rng().random::<u128>());
        inner.by_id.insert(
            id.clone(),
            Session {
                id: id.clone(),
                username: username.to_owned(),
                token: token.clone(),
                last_used: now,
            },
        );
        Some(Created { id, token })
    }

    /// Drops every session when the node's session epoch moved past the
    /// one they were made in (`drop_sessions`, `bmc_reboot`).
    pub(crate) fn drop_before(&self, epoch: u64) {
        let mut inner = self.lock();
        if inner.epoch != epoch {
            inner.by_id.clear();
            inner.epoch = epoch;
        }
    }

    /// The live session holding `token`, refreshed; `None` if unknown or expired.
    pub(crate) fn authenticate(&self, token: &str) -> Option<Session> {
        let now = Instant::now();
        let mut inner = self.lock();
        self.expire(&mut inner, now);
        let session = inner.by_id.values_mut().find(|s| s.token == token)?;
        session.last_used = now;
        Some(session.clone())
    }

    /// The live session `id`.
    pub(crate) fn get(&self, id: &str) -> Option<Session> {
        let mut inner = self.lock();
        self.expire(&mut inner, Instant::now());
        inner.by_id.get(id).cloned()
    }

    /// Ids of the live sessions, in creation order.
    pub(crate) fn ids(&self) -> Vec<String> {
        let mut inner = self.lock();
        self.expire(&mut inner, Instant::now());
        let mut ids: Vec<(u64, String)> = inner
            .by_id
            .keys()
            .map(|k| (k.parse().unwrap_or(u64::MAX), k.clone()))
            .collect();
        ids.sort();
        ids.into_iter().map(|(_, k)| k).collect()
    }

    /// Ends session `id`; whether it existed.
    pub(crate) fn delete(&self, id: &str) -> bool {
        self.lock().by_id.remove(id).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sessions_expire_when_idle() {
        let s = Sessions::new(Duration::from_secs(10), MAX_SESSIONS);
        let Some(created) = s.create("admin") else {
            panic!("first session must be created");
        };
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(s.authenticate(&created.token).is_some());
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(s.authenticate(&created.token).is_some(), "use refreshes");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(s.authenticate(&created.token).is_none());
        assert!(s.ids().is_empty());
    }

    #[test]
    fn cap_and_delete() {
        let s = Sessions::new(Duration::from_secs(60), MAX_SESSIONS);
        let ids: Vec<String> = (0..MAX_SESSIONS)
            .filter_map(|_| s.create("admin").map(|c| c.id))
            .collect();
        assert_eq!(ids.len(), MAX_SESSIONS);
        assert!(s.create("admin").is_none());
        assert!(s.delete(&ids[0]));
        assert!(!s.delete(&ids[0]));
        assert!(s.create("admin").is_some());
    }
}
