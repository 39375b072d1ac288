//! Simulated rack of BMCs (Redfish and IPMI) sharing one protocol-neutral
//! power model, with faults and a control API.
//!
//! - [`model`]: one server and its BMC — power state machine, boot override,
//!   faults, quirks, counters — and the steps every protocol front end follows.
//! - [`config`]: [`RackConfig`], what a rack is started from.

pub mod config;
pub mod ipmi;
pub mod model;

pub use config::{ConfigProblem, FaultPlan, InitialPower, NodeFault, RackConfig};
pub use model::{
    Admission, BootEnabled, BootMode, BootOverride, BootTarget, CommandOutcome, Credentials,
    FaultSetting, Faults, Node, NodeStatus, PowerAction, PowerState, Quirks,
};
