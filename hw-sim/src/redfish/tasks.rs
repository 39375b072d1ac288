//! Tasks behind `202 Accepted` reset replies (the `reset_reply = "202"`
//! quirk). A task is created per accepted reset; its monitor
//! (`TaskService/TaskMonitors/{id}`) answers 202 with `Retry-After` while the
//! node's power is in transition and 204 once it has settled; its `Task`
//! resource shows `Running` / `Completed`. Only the newest [`MAX_TASKS`] are kept.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use crate::model::PowerAction;

/// Tasks kept per BMC; older ones are dropped.
pub(crate) const MAX_TASKS: usize = 32;

/// One reset task.
#[derive(Clone, Debug)]
pub(crate) struct Task {
    pub id: String,
    pub action: PowerAction,
    pub started: SystemTime,
    pub ended: Option<SystemTime>,
}

/// The tasks of one BMC.
#[derive(Debug, Default)]
pub(crate) struct Tasks {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    tasks: VecDeque<Task>,
    next_id: u64,
}

impl Tasks {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a new running task; returns its id.
    pub(crate) fn create(&self, action: PowerAction) -> String {
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id.to_string();
        if inner.tasks.len() >= MAX_TASKS {
            inner.tasks.pop_front();
        }
        inner.tasks.push_back(Task {
            id: id.clone(),
            action,
            started: SystemTime::now(),
            ended: None,
        });
        id
    }

    /// Task `id`, marked completed first if `settled` says the power is stable.
    pub(crate) fn get(&self, id: &str, settled: bool) -> Option<Task> {
        let mut inner = self.lock();
        let task = inner.tasks.iter_mut().find(|t| t.id == id)?;
        if settled && task.ended.is_none() {
            task.ended = Some(SystemTime::now());
        }
        Some(task.clone())
    }

    /// Ids of the kept tasks, oldest first.
    pub(crate) fn ids(&self) -> Vec<String> {
        self.lock().tasks.iter().map(|t| t.id.clone()).collect()
    }
}
