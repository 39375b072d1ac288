//! Prometheus text exposition for `GET /metrics`: API requests by route,
//! method and status, a request-duration histogram per route, node counts
//! by power state (read from the store at scrape time), and the conductor's
//! activity: workers busy and max, requests waiting, operations in flight
//! and finished, BMC requests by protocol and result, the last sweeps.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use baton_state::{PowerState, PowerStateCounts};

use super::types::power_state_key;
use crate::conductor::Activity;

/// Upper bounds (seconds) of the duration histogram's buckets.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    durations: BTreeMap<String, Histogram>,
}

/// Counters the request middleware feeds.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    pub fn observe(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        *inner
            .requests
            .entry((route.to_owned(), method.to_owned(), status))
            .or_default() += 1;
        let histogram = inner.durations.entry(route.to_owned()).or_default();
        for (bound, count) in BUCKETS.iter().zip(histogram.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    pub fn render(&self, nodes: &PowerStateCounts, activity: &Activity) -> String {
        let mut out = String::new();
        out.push_str("# HELP baton_build_info batond version.\n# TYPE baton_build_info gauge\n");
        let _ = writeln!(
            out,
            "baton_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );

        out.push_str("# HELP baton_nodes Enrolled nodes by last known power state.\n# TYPE baton_nodes gauge\n");
        for state in PowerState::ALL.into_iter().map(Some).chain([None]) {
            let _ = writeln!(
                out,
                "baton_nodes{{power_state=\"{}\"}} {}",
                power_state_key(state),
                nodes.get(state)
            );
        }

        render_activity(&mut out, activity);

        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        out.push_str("# HELP baton_api_requests_total API requests served.\n# TYPE baton_api_requests_total counter\n");
        for ((route, method, status), n) in &inner.requests {
            let _ = writeln!(
                out,
                "baton_api_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        out.push_str(
            "# HELP baton_api_request_duration_seconds Time to answer an API request.\n\
             # TYPE baton_api_request_duration_seconds histogram\n",
        );
        for (route, h) in &inner.durations {
            let route = escape(route);
            for (bound, count) in BUCKETS.iter().zip(h.counts.iter()) {
                let _ = writeln!(
                    out,
                    "baton_api_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "baton_api_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "baton_api_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "baton_api_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        out
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

fn render_activity(out: &mut String, activity: &Activity) {
    let (workers, ops) = (&activity.workers, &activity.operations);
    gauge(
        out,
        "baton_conductor_workers_max",
        "Most BMC requests in flight at once (conductor.workers).",
        u64::from(workers.max),
    );
    gauge(
        out,
        "baton_conductor_workers_busy",
        "BMC requests in flight now.",
        workers.busy,
    );
    gauge(
        out,
        "baton_conductor_requests_waiting",
        "BMC requests waiting for their BMC's turn or a free worker.",
        workers.waiting,
    );
    gauge(
        out,
        "baton_conductor_operations_in_flight",
        "Power operations being driven now (nodes in transition).",
        ops.in_flight,
    );
    out.push_str(
        "# HELP baton_conductor_operations_total Power operations finished, by outcome.\n\
         # TYPE baton_conductor_operations_total counter\n",
    );
    for (outcome, n) in [("succeeded", ops.succeeded), ("failed", ops.failed)] {
        let _ = writeln!(
            out,
            "baton_conductor_operations_total{{outcome=\"{outcome}\"}} {n}"
        );
    }
    out.push_str(
        "# HELP baton_bmc_requests_total BMC requests, by protocol and result.\n\
         # TYPE baton_bmc_requests_total counter\n",
    );
    for r in &activity.bmc_requests {
        let _ = writeln!(
            out,
            "baton_bmc_requests_total{{protocol=\"{}\",result=\"{}\"}} {}",
            escape(&r.protocol),
            escape(&r.result),
            r.count
        );
    }
    out.push_str(
        "# HELP baton_sync_last_sweep_seconds Duration of the last sweep, by kind.\n\
         # TYPE baton_sync_last_sweep_seconds gauge\n",
    );
    for sweep in &activity.last_sweeps {
        let _ = writeln!(
            out,
            "baton_sync_last_sweep_seconds{{kind=\"{}\"}} {}",
            escape(&sweep.kind),
            sweep.duration_ms as f64 / 1000.0
        );
    }
    out.push_str(
        "# HELP baton_sync_last_sweep_nodes Nodes of the last sweep, by kind and result.\n\
         # TYPE baton_sync_last_sweep_nodes gauge\n",
    );
    for sweep in &activity.last_sweeps {
        let kind = escape(&sweep.kind);
        for (result, n) in [
            ("read", sweep.read),
            ("failed", sweep.failed),
            ("changed", sweep.changed),
        ] {
            let _ = writeln!(
                out,
                "baton_sync_last_sweep_nodes{{kind=\"{kind}\",result=\"{result}\"}} {n}"
            );
        }
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.observe("/v1/nodes/{ident}", "GET", 200, Duration::from_micros(300));
        m.observe("/v1/nodes/{ident}", "GET", 404, Duration::from_millis(20));
        let counts = PowerStateCounts {
            counts: vec![(Some(PowerState::On), 3), (None, 2)],
        };
        let activity = Activity {
            workers: crate::api::types::WorkerStatus {
                max: 100,
                busy: 7,
                waiting: 2,
            },
            operations: crate::api::types::OperationStatus {
                in_flight: 9,
                succeeded: 4,
                failed: 1,
            },
            bmc_requests: vec![crate::api::types::BmcRequestCount {
                protocol: "ipmi".into(),
                result: "ok".into(),
                count: 12,
            }],
            last_sweeps: vec![crate::api::types::SweepReport {
                kind: "sync".into(),
                duration_ms: 2500,
                read: 10,
                ..Default::default()
            }],
        };
        let text = m.render(&counts, &activity);
        for line in [
            "baton_conductor_workers_busy 7",
            "baton_conductor_workers_max 100",
            "baton_conductor_requests_waiting 2",
            "baton_conductor_operations_in_flight 9",
            "baton_conductor_operations_total{outcome=\"failed\"} 1",
            "baton_bmc_requests_total{protocol=\"ipmi\",result=\"ok\"} 12",
            "baton_sync_last_sweep_seconds{kind=\"sync\"} 2.5",
            "baton_sync_last_sweep_nodes{kind=\"sync\",result=\"read\"} 10",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
        assert!(
            text.contains("baton_nodes{power_state=\"power on\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("baton_nodes{power_state=\"power off\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("baton_nodes{power_state=\"null\"} 2"),
            "{text}"
        );
        assert!(text.contains(
            "baton_api_requests_total{route=\"/v1/nodes/{ident}\",method=\"GET\",status=\"404\"} 1"
        ));
        assert!(
            text.contains("_bucket{route=\"/v1/nodes/{ident}\",le=\"0.0005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("_bucket{route=\"/v1/nodes/{ident}\",le=\"0.025\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("_count{route=\"/v1/nodes/{ident}\"} 2"),
            "{text}"
        );
    }
}
