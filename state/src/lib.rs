//! baton's state store: the SQLite database that holds every node's desired
//! and last-known power state, and the action log with its events.
//!
//! Callers (the daemon's API and conductor) see the store only through
//! [`Store`] and the typed models in [`model`]; no SQL leaves this crate, so a
//! second backend can be added without touching them. Every method runs its
//! SQLite work off the async runtime and returns only after the transaction
//! has committed, so a caller may acknowledge a write as soon as the call
//! returns.

mod actions;
mod checkpoint;
mod dbfile;
mod error;
pub mod job;
mod jobs;
pub mod lockfile;
mod migrations;
pub mod model;
mod nodes;
mod operation;
mod prune;
mod store;
mod time_fmt;
mod writer;

pub use dbfile::Refusal;
pub use error::{DuplicateName, StoreError};
pub use job::*;
pub use jobs::JOB_FAILED_CODE;
pub use migrations::SCHEMA_VERSION;
pub use model::*;
pub use operation::*;
pub use store::{Store, StoreOptions, UpdateError, JOB_PRUNE_SCAN, PRUNE_SCAN};
