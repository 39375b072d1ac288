//! The fault matrix shared by the end-to-end test
//! (`tests/tests/reliability_faults.rs`) and the full-size bench
//! (`tests/benches/faults.rs`): which node gets which hw-sim fault, what
//! each batch must then make of every node, and the judgement of a finished
//! job against that.
//!
//! Nodes alternate Redfish (even index) and IPMI (odd), as hw-sim's
//! `mixed` inventory enrolls them. Each protocol's nodes get disjoint,
//! seeded random fractions of the faults (so a node carries one fault and
//! its expected outcome is unambiguous); `packet_loss` goes to IPMI nodes
//! only, since it drops datagrams.

use std::collections::{BTreeMap, HashMap};

use baton_hwsim::Faults;
use baton_state::FailCode;
use batond::api::types::JobDocument;
use serde_json::{json, Value};

/// How a node is enrolled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Redfish,
    Ipmi,
}

impl Protocol {
    /// The protocol of node `index` in a `mixed` inventory.
    pub fn of(index: usize) -> Self {
        if index % 2 == 0 {
            Protocol::Redfish
        } else {
            Protocol::Ipmi
        }
    }
}

/// One fault of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Injected {
    NoAnswer,
    Http500,
    /// A busy spell: the BMC answers busy until it has refused a request
    /// of the batch, then serves again (the test clears it).
    Busy,
    WrongCredentials,
    Stuck,
    PacketLoss,
    HungOs,
    Flapping,
}

impl Injected {
    pub const ALL: [Injected; 8] = [
        Injected::NoAnswer,
        Injected::Http500,
        Injected::Busy,
        Injected::WrongCredentials,
        Injected::Stuck,
        Injected::PacketLoss,
        Injected::HungOs,
        Injected::Flapping,
    ];

    /// hw-sim's name, with its value.
    pub fn name(self) -> &'static str {
        match self {
            Injected::NoAnswer => "no_answer",
            Injected::Http500 => "http_500",
            Injected::Busy => "busy",
            Injected::WrongCredentials => "wrong_credentials",
            Injected::Stuck => "stuck",
            Injected::PacketLoss => "packet_loss=0.3",
            Injected::HungOs => "hung_os",
            Injected::Flapping => "flapping",
        }
    }

    /// The fault as hw-sim's node takes it.
    pub fn faults(self) -> Faults {
        let mut faults = Faults::default();
        match self {
            Injected::NoAnswer => faults.no_answer = true,
            Injected::Http500 => faults.http_500 = true,
            Injected::Busy => faults.busy = true,
            Injected::WrongCredentials => faults.wrong_credentials = true,
            Injected::Stuck => faults.stuck = true,
            Injected::PacketLoss => faults.packet_loss = 0.3,
            Injected::HungOs => faults.hung_os = true,
            Injected::Flapping => faults.flapping = true,
        }
        faults
    }

    /// The share of a protocol's nodes that get it: 10 % `no_answer`, 5 %
    /// `http_500`/`busy` (half each), 2 % `wrong_credentials`, `stuck` and
    /// `hung_os`, 5 % `packet_loss` (IPMI), 1 % `flapping`.
    fn fraction(self, protocol: Protocol) -> f64 {
        match (self, protocol) {
            (Injected::NoAnswer, _) => 0.10,
            (Injected::Http500 | Injected::Busy, _) => 0.025,
            (Injected::WrongCredentials | Injected::Stuck | Injected::HungOs, _) => 0.02,
            (Injected::PacketLoss, Protocol::Ipmi) => 0.05,
            (Injected::PacketLoss, Protocol::Redfish) => 0.0,
            (Injected::Flapping, _) => 0.01,
        }
    }

    /// Whether no read of the BMC can succeed while the fault lasts: the
    /// power sync puts such nodes in maintenance.
    pub fn unreadable(self) -> bool {
        matches!(
            self,
            Injected::NoAnswer | Injected::Http500 | Injected::WrongCredentials
        )
    }
}

/// Which node carries which fault.
#[derive(Debug, Clone)]
pub struct Matrix {
    assigned: Vec<Option<Injected>>,
}

/// splitmix64: a seeded order of the nodes without a random number crate.
fn mix(seed: u64, index: usize) -> u64 {
    let mut z = seed
        .wrapping_add(index as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Matrix {
    /// The faults of a `nodes`-node rack, the same for the same seed.
    pub fn new(nodes: usize, seed: u64) -> Self {
        let mut assigned = vec![None; nodes];
        for protocol in [Protocol::Redfish, Protocol::Ipmi] {
            let mut order: Vec<usize> = (0..nodes)
                .filter(|&i| Protocol::of(i) == protocol)
                .collect();
            order.sort_by_key(|&i| mix(seed, i));
            let total = order.len();
            let mut rest = order.into_iter();
            for fault in Injected::ALL {
                // A share of a node count: small and non-negative.
                #[allow(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    clippy::cast_precision_loss
                )]
                let count = (total as f64 * fault.fraction(protocol)).round() as usize;
                for index in rest.by_ref().take(count) {
                    assigned[index] = Some(fault);
                }
            }
        }
        Self { assigned }
    }

    pub fn len(&self) -> usize {
        self.assigned.len()
    }

    pub fn is_empty(&self) -> bool {
        self.assigned.is_empty()
    }

    /// The fault of node `index`.
    pub fn fault(&self, index: usize) -> Option<Injected> {
        self.assigned.get(index).copied().flatten()
    }

    /// The nodes carrying `fault`.
    pub fn nodes_with(&self, fault: Injected) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| self.fault(i) == Some(fault))
            .collect()
    }

    /// Every faulty node with its fault.
    pub fn faulty(&self) -> impl Iterator<Item = (usize, Injected)> + '_ {
        (0..self.len()).filter_map(|i| self.fault(i).map(|f| (i, f)))
    }

    /// `fault: Redfish nodes + IPMI nodes` for each fault, for reports.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for fault in Injected::ALL {
            let nodes = self.nodes_with(fault);
            let ipmi = nodes
                .iter()
                .filter(|&&i| Protocol::of(i) == Protocol::Ipmi)
                .count();
            parts.push(format!(
                "{} {} ({} Redfish, {ipmi} IPMI)",
                fault.name(),
                nodes.len(),
                nodes.len() - ipmi
            ));
        }
        parts.join(", ")
    }
}

/// The three batches of the matrix, run in this order on a rack that
/// starts powered on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// `os-stop` SOFT.
    SoftStop,
    /// `os-start`.
    Start,
    /// `reboot` SOFT.
    SoftReboot,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::SoftStop, Phase::Start, Phase::SoftReboot];

    pub fn name(self) -> &'static str {
        match self {
            Phase::SoftStop => "os-stop SOFT",
            Phase::Start => "os-start",
            Phase::SoftReboot => "reboot SOFT",
        }
    }

    /// The batch body for the servers `names`.
    pub fn body(self, names: &[String]) -> Value {
        let servers: Vec<Value> = names.iter().map(|n| json!({ "id": n })).collect();
        match self {
            Phase::SoftStop => json!({"os-stop": {"type": "SOFT", "servers": servers}}),
            Phase::Start => json!({"os-start": {"servers": servers}}),
            Phase::SoftReboot => json!({"reboot": {"type": "SOFT", "servers": servers}}),
        }
    }
}

/// How a sub-job must end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Success,
    Fail(FailCode),
    /// A flapping node: its power may flip back out of band after the
    /// command and stay there past the timeout, or not.
    SuccessOrFail(FailCode),
}

/// What `phase` must make of a node enrolled through `protocol` with
/// `fault`.
pub fn expect(phase: Phase, protocol: Protocol, fault: Option<Injected>) -> Expect {
    let unreadable = match fault {
        Some(Injected::NoAnswer) => Some(FailCode::Unreachable),
        Some(Injected::Http500) => Some(FailCode::BmcError),
        Some(Injected::WrongCredentials) => Some(FailCode::Auth),
        _ => None,
    };
    if let Some(code) = unreadable {
        return Expect::Fail(code);
    }
    // IPMI has no soft reboot (Chassis Control has no graceful restart).
    if phase == Phase::SoftReboot && protocol == Protocol::Ipmi {
        return Expect::Fail(FailCode::Unsupported);
    }
    match (phase, fault) {
        // A stuck BMC ignores the stop and, after the soft timeout, the
        // hard one; the server stays on (so the start needs no command).
        (Phase::SoftStop, Some(Injected::Stuck)) => Expect::Fail(FailCode::Timeout),
        // A soft reboot whose OS never shuts down falls back to a hard
        // reset, which the BMC refuses while the shutdown is under way: the
        // node stays "powering off" past the timeout.
        (Phase::SoftReboot, Some(Injected::HungOs)) => Expect::Fail(FailCode::Timeout),
        // A stuck BMC takes the restart and ignores it; the server stays
        // on, which is also how a done restart reads (a warm reset never
        // leaves "on"), so the sub-job succeeds: the BMC's word is all
        // there is to go on.
        (Phase::SoftReboot, Some(Injected::Stuck)) => Expect::Success,
        (_, Some(Injected::Flapping)) => Expect::SuccessOrFail(FailCode::Timeout),
        _ => Expect::Success,
    }
}

/// Words a sub-job's `fail_reason` must contain for its code: the cause,
/// named (any one of them).
pub fn cause_words(code: FailCode) -> &'static [&'static str] {
    match code {
        FailCode::Unreachable => &["did not answer", "unreachable"],
        FailCode::Auth => &["credentials"],
        FailCode::BmcError => &["BMC error"],
        FailCode::Timeout => &["did not reach"],
        FailCode::Unsupported => &["does not support"],
        _ => &[],
    }
}

/// A finished job held against the matrix.
#[derive(Debug, Default)]
pub struct Verdict {
    pub sub_jobs: usize,
    pub succeeded: usize,
    pub failed: usize,
    /// Sub-jobs the matrix says must fail.
    pub must_fail: usize,
    /// Flapping nodes that lost the race (allowed).
    pub flapping_failed: usize,
    /// Failures per error code.
    pub failed_by_code: BTreeMap<String, usize>,
    /// Everything that differs from the matrix, one line each.
    pub mismatches: Vec<String>,
}

impl Verdict {
    /// `failed N (must fail M, flapping K) by code {...}`.
    pub fn line(&self) -> String {
        let codes: Vec<String> = self
            .failed_by_code
            .iter()
            .map(|(code, n)| format!("{n} × {code}"))
            .collect();
        format!(
            "{} sub-jobs: {} succeeded, {} failed (must fail: {}; flapping that lost the race: {}): {}",
            self.sub_jobs,
            self.succeeded,
            self.failed,
            self.must_fail,
            self.flapping_failed,
            codes.join(", ")
        )
    }
}

/// Holds `job` (with its sub-jobs) against the matrix for `phase`; `index`
/// maps a node name to its rack index.
pub fn judge(
    job: &JobDocument,
    matrix: &Matrix,
    phase: Phase,
    index: &HashMap<String, usize>,
) -> Verdict {
    let mut verdict = Verdict::default();
    let sub_jobs = job.entities.sub_jobs.as_deref().unwrap_or_default();
    verdict.sub_jobs = sub_jobs.len();
    if sub_jobs.len() != matrix.len() {
        verdict.mismatches.push(format!(
            "{} sub-jobs, want {}",
            sub_jobs.len(),
            matrix.len()
        ));
    }
    for sub in sub_jobs {
        let name = sub.entities.server_name.clone().unwrap_or_default();
        let Some(&i) = index.get(&name) else {
            verdict
                .mismatches
                .push(format!("sub-job for unknown server {name:?}"));
            continue;
        };
        let fault = matrix.fault(i);
        let want = expect(phase, Protocol::of(i), fault);
        let got_code = sub.error_code.as_deref();
        let reason = sub.fail_reason.as_deref().unwrap_or_default();
        let label = format!(
            "{name} ({:?}, {})",
            Protocol::of(i),
            fault.map_or("healthy", Injected::name)
        );
        match sub.status.as_str() {
            "SUCCESS" => verdict.succeeded += 1,
            "FAIL" => {
                verdict.failed += 1;
                *verdict
                    .failed_by_code
                    .entry(got_code.unwrap_or("none").to_owned())
                    .or_default() += 1;
            }
            other => verdict
                .mismatches
                .push(format!("{label}: sub-job still {other}")),
        }
        let wanted_code = match want {
            Expect::Success => None,
            Expect::Fail(code) => {
                verdict.must_fail += 1;
                Some(code)
            }
            Expect::SuccessOrFail(code) => {
                if sub.status == "FAIL" {
                    verdict.flapping_failed += 1;
                    Some(code)
                } else {
                    None
                }
            }
        };
        match (wanted_code, sub.status.as_str()) {
            (None, "SUCCESS") => {}
            (None, _) => verdict.mismatches.push(format!(
                "{label}: want SUCCESS, got {} {got_code:?}: {reason}",
                sub.status
            )),
            (Some(code), "FAIL") if got_code == Some(code.as_str()) => {
                let words = cause_words(code);
                if !words.iter().any(|w| reason.contains(w)) {
                    verdict.mismatches.push(format!(
                        "{label}: {} fail_reason does not name the cause ({words:?}): {reason}",
                        code.as_str()
                    ));
                }
            }
            (Some(code), _) => verdict.mismatches.push(format!(
                "{label}: want FAIL {}, got {} {got_code:?}: {reason}",
                code.as_str(),
                sub.status
            )),
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix_is_seeded_disjoint_and_sized() {
        let a = Matrix::new(1000, 7);
        assert_eq!(a.assigned, Matrix::new(1000, 7).assigned);
        assert_ne!(a.assigned, Matrix::new(1000, 8).assigned);
        let count = |f| a.nodes_with(f).len();
        assert_eq!(count(Injected::NoAnswer), 100);
        assert_eq!(count(Injected::WrongCredentials), 20);
        assert_eq!(count(Injected::Flapping), 10);
        assert_eq!(count(Injected::PacketLoss), 25);
        assert!(a
            .nodes_with(Injected::PacketLoss)
            .iter()
            .all(|&i| Protocol::of(i) == Protocol::Ipmi));
    }
}
