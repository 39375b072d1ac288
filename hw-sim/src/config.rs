//! What a simulated rack is started from ([`RackConfig`]), with defaults and
//! whole-config validation (every problem reported at once, before anything binds).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::model::{
    check_fraction, Credentials, Delays, FaultError, FaultSetting, PowerAction, Quirks,
    BOOT_FLAG_VALID_TIMEOUT, MAX_DURATION,
};

/// The Redfish port of every node when each has its own address (HTTPS's).
pub const RANGE_REDFISH_PORT: u16 = 443;
/// The IPMI port of every node when each has its own address (RMCP's).
pub const RANGE_IPMI_PORT: u16 = 623;

/// Power state of every node at start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InitialPower {
    /// Nodes start powered on.
    #[default]
    On,
    /// Nodes start powered off.
    Off,
}

/// A fault given to a seeded random fraction of the nodes at start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaultPlan {
    /// Fraction of nodes (0.0–1.0), rounded to a whole number of nodes.
    pub fraction: f64,
    /// The fault.
    pub setting: FaultSetting,
    /// Seed of the choice (same seed, same nodes).
    pub seed: u64,
}

/// A fault given to one named node at start.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeFault {
    /// Node name (`node-0003`).
    pub node: String,
    /// The fault.
    pub setting: FaultSetting,
}

/// The reset types one named node allows (narrower than the rack's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeResetTypes {
    /// Node name (`node-0003`).
    pub node: String,
    /// The `ResetType` values it allows.
    pub reset_types: Vec<PowerAction>,
}

/// Everything a rack is started from. `RackConfig::default()` is a 1-node
/// rack on 127.0.0.1 with free ports, no latency and short delays — good for tests.
#[derive(Clone, Debug)]
pub struct RackConfig {
    /// Number of nodes (servers, one BMC each).
    pub nodes: usize,
    /// Address every endpoint binds to; with `bind_prefix`, the first
    /// address of the range (node 0's, and the control API's).
    pub bind: IpAddr,
    /// One address per BMC: node i listens on `bind` + i, which must stay
    /// inside `bind/prefix` (IPv4; all of 127.0.0.0/8 is loopback on Linux),
    /// every node on the same Redfish and IPMI ports ([`RANGE_REDFISH_PORT`]
    /// and [`RANGE_IPMI_PORT`] unless the base ports are given). `None`:
    /// every node on `bind`, one port each.
    pub bind_prefix: Option<u8>,
    /// Node names are `<prefix>-<index>` (zero-padded to at least 4 digits).
    pub name_prefix: String,
    /// Nodes per power domain; domains are named like racks: `rack-1`, `rack-2`, …
    pub nodes_per_domain: usize,
    /// Redfish port of node 0 (node i gets base + i); `None` = free ports.
    pub redfish_base_port: Option<u16>,
    /// Whether each node also serves IPMI over LAN (RMCP+, one UDP port each).
    pub ipmi: bool,
    /// IPMI port of node 0 (node i gets base + i); `None` = free ports.
    pub ipmi_base_port: Option<u16>,
    /// Control API port: `None` = no control API, `Some(0)` = a free port.
    pub control_port: Option<u16>,
    /// The account every BMC accepts.
    pub credentials: Credentials,
    /// Latency every request pays.
    pub latency: Duration,
    /// Power transition times.
    pub delays: Delays,
    /// How long a power cycle holds the power off before powering on
    /// (IPMI asks at least 1 s; the command line's default is 1 s).
    pub power_cycle_off: Duration,
    /// Power state at start.
    pub initial_power: InitialPower,
    /// Serve Redfish over HTTPS with a certificate generated at start.
    pub tls: bool,
    /// Seed for UUIDs and random choices.
    pub seed: u64,
    /// Faults for random fractions of nodes, applied at start in order.
    pub fault_plans: Vec<FaultPlan>,
    /// Faults for named nodes, applied at start after the plans.
    pub node_faults: Vec<NodeFault>,
    /// Behaviour choices every node starts with.
    pub quirks: Quirks,
    /// Per-node reset types, applied at start over `quirks.reset_types`.
    pub node_reset_types: Vec<NodeResetTypes>,
    /// Idle time after which a Redfish session expires.
    pub session_timeout: Duration,
    /// Live Redfish sessions one BMC holds at most (real BMCs: as few as 10).
    pub redfish_max_sessions: usize,
    /// IPMI sessions one BMC holds at most (real BMCs: as few as 4; at most 63).
    pub ipmi_max_sessions: usize,
    /// How often a `flapping` node may change power out of band.
    pub flap_interval: Duration,
    /// How long boot flags set over IPMI stay valid without a Chassis
    /// Control command (the specification's 60 s; shorter for tests).
    pub boot_flag_valid_timeout: Duration,
}

impl Default for RackConfig {
    fn default() -> Self {
        RackConfig {
            nodes: 1,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            bind_prefix: None,
            name_prefix: "node".into(),
            nodes_per_domain: 40,
            redfish_base_port: None,
            ipmi: true,
            ipmi_base_port: None,
            control_port: Some(0),
            credentials: Credentials {
                username: "admin".into(),
                password: "password".into(),
            },
            latency: Duration::ZERO,
            delays: Delays {
                power_on: Duration::from_millis(200),
                power_off: Duration::from_millis(100),
                shutdown: Duration::from_millis(300),
            },
            power_cycle_off: Duration::from_millis(100),
            initial_power: InitialPower::On,
            tls: false,
            seed: 0,
            fault_plans: Vec::new(),
            node_faults: Vec::new(),
            quirks: Quirks::default(),
            node_reset_types: Vec::new(),
            session_timeout: Duration::from_secs(1800),
            redfish_max_sessions: crate::redfish::MAX_SESSIONS,
            ipmi_max_sessions: crate::ipmi::server::SESSIONS_PER_BMC,
            flap_interval: Duration::from_secs(2),
            boot_flag_valid_timeout: BOOT_FLAG_VALID_TIMEOUT,
        }
    }
}

/// One thing wrong with a [`RackConfig`].
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ConfigProblem {
    /// Zero nodes.
    #[error("nodes must be at least 1")]
    NoNodes,
    /// A base port that leaves no room for every node.
    #[error(
        "{what} {base} + {nodes} nodes goes past port 65535; use a lower base port or fewer nodes"
    )]
    PortRange {
        /// Which base port.
        what: &'static str,
        /// The base port.
        base: u16,
        /// Node count.
        nodes: usize,
    },
    /// Bad name prefix.
    #[error("name prefix {0:?} must be 1-32 characters of letters, digits and '-'")]
    NamePrefix(String),
    /// Zero nodes per domain.
    #[error("nodes per power domain must be at least 1")]
    DomainSize,
    /// Empty user name.
    #[error("username must not be empty")]
    EmptyUsername,
    /// A fault plan with a bad fraction.
    #[error("fault plan {setting}: {source}")]
    Fraction {
        /// The fault.
        setting: FaultSetting,
        /// What is wrong.
        #[source]
        source: FaultError,
    },
    /// A per-node setting for a node that does not exist.
    #[error("{what} is for node {node:?}, which is not in the rack (names are {first}..{last})")]
    UnknownNode {
        /// The name given.
        node: String,
        /// The setting (`fault busy`, `reset types`).
        what: String,
        /// First node name.
        first: String,
        /// Last node name.
        last: String,
    },
    /// A reset-type list that is empty.
    #[error("reset types must list at least one of: {0}")]
    NoResetTypes(String),
    /// A zero flap interval.
    #[error("flap interval must be more than 0")]
    FlapInterval,
    /// An address range that is not IPv4, has a bad prefix, or is too small.
    #[error("bind range {bind}/{prefix}: {why}")]
    AddressRange {
        /// The first address.
        bind: IpAddr,
        /// The prefix length.
        prefix: u8,
        /// What is wrong and what to do.
        why: String,
    },
    /// A session limit out of its range.
    #[error("{what} must be {min} to {max}, got {value}")]
    SessionLimit {
        /// Which limit.
        what: &'static str,
        /// The value given.
        value: usize,
        /// Lowest allowed.
        min: usize,
        /// Highest allowed.
        max: usize,
    },
    /// A quirk value out of its range.
    #[error("{0}")]
    Quirks(String),
    /// A zero boot flag valid timeout.
    #[error("boot flag valid timeout must be more than 0 (the IPMI specification's is 60s)")]
    BootFlagValidTimeout,
    /// A latency, transition time or `slow` fault longer than [`MAX_DURATION`].
    #[error("{what} {} is too long; use at most {}", humantime::format_duration(*.value), humantime::format_duration(MAX_DURATION))]
    TooLong {
        /// Which setting.
        what: String,
        /// The value given.
        value: Duration,
    },
}

impl RackConfig {
    /// The name of node `index`.
    pub fn node_name(&self, index: usize) -> String {
        let width = digits(self.nodes.saturating_sub(1)).max(4);
        format!("{}-{index:0width$}", self.name_prefix)
    }

    /// The power domain of node `index`: `rack-1` for the first
    /// `nodes_per_domain` nodes, then `rack-2`, … (named the way operators
    /// name them, so `baton node list --power-domain rack-1` reads naturally).
    pub fn power_domain(&self, index: usize) -> String {
        let domain = index / self.nodes_per_domain.max(1);
        format!("rack-{}", domain + 1)
    }

    /// The address node `index` listens on.
    pub fn node_address(&self, index: usize) -> IpAddr {
        match (self.bind, self.bind_prefix) {
            (IpAddr::V4(first), Some(_)) => {
                let offset = u32::try_from(index).unwrap_or(u32::MAX);
                IpAddr::V4(Ipv4Addr::from(u32::from(first).saturating_add(offset)))
            }
            _ => self.bind,
        }
    }

    /// Where each node's Redfish endpoint binds (port 0 = a free port).
    pub fn redfish_addrs(&self) -> Option<Vec<SocketAddr>> {
        self.range_addrs(self.redfish_base_port.unwrap_or(RANGE_REDFISH_PORT))
    }

    /// Where each node's IPMI endpoint binds, in range mode.
    pub fn ipmi_addrs(&self) -> Option<Vec<SocketAddr>> {
        self.range_addrs(self.ipmi_base_port.unwrap_or(RANGE_IPMI_PORT))
    }

    /// In range mode, one address per node on `port`; `None` otherwise.
    fn range_addrs(&self, port: u16) -> Option<Vec<SocketAddr>> {
        self.bind_prefix?;
        Some(
            (0..self.nodes)
                .map(|i| SocketAddr::new(self.node_address(i), port))
                .collect(),
        )
    }

    fn check_range(&self, out: &mut Vec<ConfigProblem>) {
        let Some(prefix) = self.bind_prefix else {
            return;
        };
        let problem = |why: String| ConfigProblem::AddressRange {
            bind: self.bind,
            prefix,
            why,
        };
        let IpAddr::V4(first) = self.bind else {
            out.push(problem("address ranges are IPv4 only".into()));
            return;
        };
        if !(8..=32).contains(&prefix) {
            out.push(problem("the prefix must be 8 to 32".into()));
            return;
        }
        let size = 1u64 << (32 - u32::from(prefix));
        let start = u64::from(u32::from(first));
        let end = (start & !(size - 1)) + size; // one past the range
        let room = end - start;
        if (self.nodes as u64) > room {
            out.push(problem(format!(
                "{} nodes from {first} do not fit: {room} addresses are left in the range; use a shorter prefix or fewer nodes",
                self.nodes
            )));
        }
    }

    /// Every problem with this config, or none.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        if self.nodes == 0 {
            out.push(ConfigProblem::NoNodes);
        }
        self.check_range(&mut out);
        // In range mode every node uses the same ports: nothing to overflow.
        let per_node_ports = self.bind_prefix.is_none();
        let ports = [
            (
                "redfish base port",
                self.redfish_base_port.filter(|_| per_node_ports),
            ),
            (
                "ipmi base port",
                self.ipmi_base_port.filter(|_| self.ipmi && per_node_ports),
            ),
        ];
        for (what, base) in ports {
            if let Some(base) = base {
                if usize::from(base) + self.nodes > 65536 || base == 0 {
                    out.push(ConfigProblem::PortRange {
                        what,
                        base,
                        nodes: self.nodes,
                    });
                }
            }
        }
        let prefix_ok = !self.name_prefix.is_empty()
            && self.name_prefix.len() <= 32
            && self
                .name_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !prefix_ok {
            out.push(ConfigProblem::NamePrefix(self.name_prefix.clone()));
        }
        if self.nodes_per_domain == 0 {
            out.push(ConfigProblem::DomainSize);
        }
        if self.credentials.username.is_empty() {
            out.push(ConfigProblem::EmptyUsername);
        }
        for plan in &self.fault_plans {
            if let Err(source) = check_fraction("fraction", plan.fraction) {
                out.push(ConfigProblem::Fraction {
                    setting: plan.setting,
                    source,
                });
            }
        }
        self.check_node_settings(&mut out);
        let empty_node_list = self
            .node_reset_types
            .iter()
            .any(|n| n.reset_types.is_empty());
        if let Some(problem) = self
            .quirks
            .problem()
            .filter(|_| !self.quirks.reset_types.is_empty())
        {
            out.push(ConfigProblem::Quirks(problem));
        }
        if self.quirks.reset_types.is_empty() || empty_node_list {
            let all: Vec<_> = PowerAction::ALL.iter().map(|a| a.as_str()).collect();
            out.push(ConfigProblem::NoResetTypes(all.join(", ")));
        }
        if self.flap_interval.is_zero() {
            out.push(ConfigProblem::FlapInterval);
        }
        let limits = [
            ("redfish max sessions", self.redfish_max_sessions, 1_000_000),
            (
                "ipmi max sessions",
                self.ipmi_max_sessions,
                crate::ipmi::server::MAX_SESSIONS_PER_BMC,
            ),
        ];
        for (what, value, max) in limits {
            if !(1..=max).contains(&value) {
                out.push(ConfigProblem::SessionLimit {
                    what,
                    value,
                    min: 1,
                    max,
                });
            }
        }
        if self.boot_flag_valid_timeout.is_zero() {
            out.push(ConfigProblem::BootFlagValidTimeout);
        }
        self.check_durations(&mut out);
        out
    }

    /// Every duration a request or a transition adds to the clock must be
    /// at most [`MAX_DURATION`], so that no arithmetic on it can overflow.
    fn check_durations(&self, out: &mut Vec<ConfigProblem>) {
        let slow_faults = self
            .fault_plans
            .iter()
            .map(|p| p.setting)
            .chain(self.node_faults.iter().map(|f| f.setting))
            .filter_map(|s| match s {
                FaultSetting::Slow(d) => Some(("slow fault".to_owned(), d)),
                _ => None,
            });
        let durations = [
            ("latency", self.latency),
            ("power-on delay", self.delays.power_on),
            ("power-off delay", self.delays.power_off),
            ("shutdown delay", self.delays.shutdown),
            ("power cycle off time", self.power_cycle_off),
            ("boot flag valid timeout", self.boot_flag_valid_timeout),
        ]
        .into_iter()
        .map(|(what, d)| (what.to_owned(), d))
        .chain(slow_faults);
        for (what, value) in durations {
            if value > MAX_DURATION {
                out.push(ConfigProblem::TooLong { what, value });
            }
        }
    }

    fn check_node_settings(&self, out: &mut Vec<ConfigProblem>) {
        if self.nodes == 0 {
            return;
        }
        let wanted = self
            .node_faults
            .iter()
            .map(|f| (&f.node, format!("fault {}", f.setting)))
            .chain(
                self.node_reset_types
                    .iter()
                    .map(|r| (&r.node, "reset types".to_owned())),
            );
        let mut names: Option<HashSet<String>> = None;
        for (node, what) in wanted {
            let names =
                names.get_or_insert_with(|| (0..self.nodes).map(|i| self.node_name(i)).collect());
            if !names.contains(node) {
                out.push(ConfigProblem::UnknownNode {
                    node: node.clone(),
                    what,
                    first: self.node_name(0),
                    last: self.node_name(self.nodes - 1),
                });
            }
        }
    }
}

fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_domains_are_padded() {
        let c = RackConfig {
            nodes: 100,
            nodes_per_domain: 40,
            ..RackConfig::default()
        };
        assert_eq!(c.node_name(7), "node-0007");
        assert_eq!(c.power_domain(0), "rack-1");
        assert_eq!(c.power_domain(39), "rack-1");
        assert_eq!(c.power_domain(85), "rack-3");
        let big = RackConfig {
            nodes: 20_000,
            ..RackConfig::default()
        };
        assert_eq!(big.node_name(7), "node-00007");
    }

    #[test]
    fn every_problem_is_reported() {
        let c = RackConfig {
            nodes: 10,
            redfish_base_port: Some(65530),
            name_prefix: "bad prefix".into(),
            node_faults: vec![NodeFault {
                node: "node-0099".into(),
                setting: FaultSetting::Busy,
            }],
            ..RackConfig::default()
        };
        let problems = c.problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(RackConfig::default().problems().is_empty());
    }

    #[test]
    fn address_ranges_give_each_node_its_own_address() {
        let c = RackConfig {
            nodes: 300,
            bind: IpAddr::from([127, 1, 0, 0]),
            bind_prefix: Some(16),
            ..RackConfig::default()
        };
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        assert_eq!(c.node_address(0), IpAddr::from([127, 1, 0, 0]));
        assert_eq!(c.node_address(257), IpAddr::from([127, 1, 1, 1]));
        let addrs = c.redfish_addrs().unwrap_or_default();
        assert_eq!(addrs[299], SocketAddr::from(([127, 1, 1, 43], 443)));
        assert_eq!(c.ipmi_addrs().map(|a| a[0].port()), Some(623));
        let single = RackConfig::default();
        assert_eq!(single.redfish_addrs(), None);

        let too_small = RackConfig {
            bind: IpAddr::from([127, 1, 255, 250]),
            nodes: 10,
            ..c.clone()
        };
        let problems: Vec<String> = too_small
            .problems()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("6 addresses are left"), "{problems:?}");
        let v6 = RackConfig {
            bind: IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ..c
        };
        assert!(v6.problems()[0].to_string().contains("IPv4 only"));
    }

    #[test]
    fn durations_that_would_overflow_the_clock_are_refused() {
        let endless = Duration::from_secs(u64::MAX);
        let c = RackConfig {
            latency: endless,
            delays: Delays {
                power_on: endless,
                power_off: MAX_DURATION,
                shutdown: endless,
            },
            node_faults: vec![NodeFault {
                node: "node-0000".into(),
                setting: FaultSetting::Slow(endless),
            }],
            ..RackConfig::default()
        };
        let problems: Vec<String> = c.problems().iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(
            problems[1].starts_with("power-on delay ") && problems[1].ends_with("use at most 1day"),
            "{problems:?}"
        );
        assert!(problems[3].starts_with("slow fault "), "{problems:?}");
    }
}
