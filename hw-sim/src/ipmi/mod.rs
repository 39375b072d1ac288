//! IPMI over LAN (RMCP+) for every simulated BMC, written from the IPMI v2.0
//! specification (rev. 1.1 with errata): section 13 (LAN interface, RMCP,
//! RMCP+ sessions), 22 (App commands), 28 (chassis), 31 (SEL).
//!
//! Layers, from the wire inwards:
//!
//! - [`wire`]: RMCP, ASF ping/pong, IPMI v1.5 and v2.0 session headers and
//!   the IPMI LAN message with its checksums. Pure, never panics.
//! - [`crypto`]: cipher suites 3 and 17, HMACs, key derivation, AES-CBC-128.
//! - [`sealed`]: building and opening protected RMCP+ packets.
//! - [`session`]: the bounded session table, replay window, idle timeout.
//! - [`rakp`]: Open Session and RAKP 1–4.
//! - [`commands`] and [`boot`]: the IPMI commands and completion codes.
//! - [`chassis`]: the narrow interface to the power model.
//! - [`bmc`]: one datagram in, at most one out — the engine a UDP socket
//!   task drives.

pub mod bmc;
pub mod boot;
pub mod chassis;
pub mod client;
pub mod commands;
pub mod crypto;
pub mod rakp;
pub mod sealed;
pub mod server;
pub mod session;
pub mod wire;

pub use bmc::{Bmc, BmcConfig, Incoming, OsEntropy, Service};

#[cfg(test)]
mod tests;
