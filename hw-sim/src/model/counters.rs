//! Per-node request and command counters, and the in-flight guard that makes
//! `max_concurrent` measure real overlap.
//!
//! A front end takes a [`RequestGuard`] (through `Node::begin_request`) the
//! moment a request arrives and holds it until the reply is sent (or, for
//! `no_answer`, until the connection is given up). The guard counts the request,
//! raises `in_flight`, records the highest `in_flight` ever seen, and lowers it
//! on drop. Latency is paid while the guard is held, so two requests that
//! overlap on the wire are counted as concurrent.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use serde::Serialize;

/// Live counters of one node (atomics; shared by all front ends).
#[derive(Debug, Default)]
pub struct Counters {
    requests: AtomicU64,
    power_commands: AtomicU64,
    in_flight: AtomicU32,
    max_concurrent: AtomicU32,
    boots: AtomicU64,
    power_offs: AtomicU64,
    crash_dumps: AtomicU64,
    boot_flags_expired: AtomicU64,
    connections: AtomicU64,
    ipmi_sessions: AtomicU32,
}

/// A point-in-time copy of a node's counters, as the control API shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CounterSnapshot {
    /// Requests received (every protocol, including refused ones).
    pub requests: u64,
    /// Power commands received (including ignored and refused ones).
    pub power_commands: u64,
    /// Highest number of requests this BMC served at once.
    pub max_concurrent: u32,
    /// Requests being served now.
    pub in_flight: u32,
    /// Boots started (power-ons, including those of restarts and cycles).
    pub boots: u64,
    /// Times the node reached off.
    pub power_offs: u64,
    /// Crash dumps recorded by NMIs.
    pub crash_dumps: u64,
    /// Times boot flags set over IPMI lost their valid bit because no
    /// Chassis Control command came within the valid-flag timeout.
    pub boot_flags_expired: u64,
    /// TCP connections the Redfish endpoint accepted (a client that keeps
    /// its connections alive opens few; a BMC that closes them makes more).
    pub connections: u64,
    /// RMCP+ sessions the BMC holds (any handshake stage), as of the last
    /// datagram it handled — a gauge, not zeroed by a reset: a client that
    /// never closes its sessions leaves them here until they expire.
    pub ipmi_sessions: u32,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            power_commands: self.power_commands.load(Ordering::Relaxed),
            max_concurrent: self.max_concurrent.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            boots: self.boots.load(Ordering::Relaxed),
            power_offs: self.power_offs.load(Ordering::Relaxed),
            crash_dumps: self.crash_dumps.load(Ordering::Relaxed),
            boot_flags_expired: self.boot_flags_expired.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
            ipmi_sessions: self.ipmi_sessions.load(Ordering::Relaxed),
        }
    }

    /// Zeroes every counter; `max_concurrent` restarts from what is in flight now.
    pub(crate) fn reset(&self) {
        self.requests.store(0, Ordering::Relaxed);
        self.power_commands.store(0, Ordering::Relaxed);
        self.boots.store(0, Ordering::Relaxed);
        self.power_offs.store(0, Ordering::Relaxed);
        self.crash_dumps.store(0, Ordering::Relaxed);
        self.boot_flags_expired.store(0, Ordering::Relaxed);
        self.connections.store(0, Ordering::Relaxed);
        let now = self.in_flight.load(Ordering::Relaxed);
        self.max_concurrent.store(now, Ordering::Relaxed);
    }

    pub(crate) fn enter(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let now = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        self.max_concurrent.fetch_max(now, Ordering::AcqRel);
    }

    pub(crate) fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    pub(crate) fn power_command(&self) {
        self.power_commands.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn power_command_count(&self) -> u64 {
        self.power_commands.load(Ordering::Relaxed)
    }

    pub(crate) fn add_boots(&self, n: u32) {
        self.boots.fetch_add(u64::from(n), Ordering::Relaxed);
    }

    pub(crate) fn add_power_offs(&self, n: u32) {
        self.power_offs.fetch_add(u64::from(n), Ordering::Relaxed);
    }

    pub(crate) fn crash_dump(&self) {
        self.crash_dumps.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_ipmi_sessions(&self, n: u32) {
        self.ipmi_sessions.store(n, Ordering::Relaxed);
    }

    pub(crate) fn boot_flags_expired(&self) {
        self.boot_flags_expired.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_concurrent_tracks_overlap() {
        let c = Counters::default();
        c.enter();
        c.enter();
        c.leave();
        c.enter();
        c.leave();
        c.leave();
        let s = c.snapshot();
        assert_eq!((s.requests, s.max_concurrent, s.in_flight), (3, 2, 0));
        c.enter();
        c.reset();
        let s = c.snapshot();
        assert_eq!((s.requests, s.max_concurrent, s.in_flight), (0, 1, 1));
    }
}
