//! Simulated rack of BMCs (Redfish and IPMI) sharing one protocol-neutral
//! power model, with faults and a control API.
//!
//! - [`model`]: one server and its BMC — power state machine, boot override,
//!   faults, quirks, counters — and the steps every protocol front end follows.
//! - [`config`]: [`RackConfig`], what a rack is started from.
//! - [`rack`]: [`Rack::start`] binds and serves a rack in-process; accessors
//!   for nodes, stats and the inventory; [`Rack::shutdown`].
//! - `redfish`: the Redfish front end (one HTTP(S) port per node).
//! - [`ipmi`]: the IPMI-over-LAN (RMCP+) front end (one UDP port per node).
//! - `control`: the control API (HTTP/JSON on its own port).
//! - [`inventory`]: the export `POST /v1/nodes/import` takes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), baton_hwsim::Error> {
//! use baton_hwsim::{PowerAction, PowerState, Rack, RackConfig};
//! let rack = Rack::start(RackConfig { nodes: 4, ..RackConfig::default() }).await?;
//! let node = &rack.nodes()[0];
//! let url = rack.redfish_url(node); // http://127.0.0.1:PORT
//! node.power_command(PowerAction::ForceOff).ok();
//! assert_eq!(node.power_state(), PowerState::ShuttingDown);
//! rack.shutdown().await;
//! # Ok(()) }
//! ```

pub mod config;
mod control;
mod error;
pub mod inventory;
pub mod ipmi;
mod limits;
pub mod model;
pub mod ports;
pub mod rack;
mod redfish;
mod tls;

pub use config::{ConfigProblem, FaultPlan, InitialPower, NodeFault, NodeResetTypes, RackConfig};
pub use error::Error;
pub use inventory::{ExportDriver, InventoryEntry};
pub use model::{
    Admission, AlreadyInStateReply, BootEnabled, BootMode, BootOverride, BootPatchQuirk,
    BootTarget, CommandOutcome, CounterSnapshot, Credentials, Delays, EtagQuirk, FaultSetting,
    Faults, Garbage, MidTransition, Node, NodeStatus, PowerAction, PowerState, PowerStateStyle,
    Quirks, RequestSpan, ResetReply, SessionLimitReply, ValidBitClearing, BOOT_FLAG_VALID_TIMEOUT,
};
pub use rack::{Rack, RackState, RackStats};
pub use redfish::MAX_SESSIONS as REDFISH_MAX_SESSIONS;
