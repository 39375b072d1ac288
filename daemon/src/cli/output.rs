//! Human output of the CLI: aligned tables and key/value blocks.

use std::fmt::Write as _;

use crate::api::types::{power_state_key, ConductorStatus, NodeSummary, NodeView};

/// Renders rows under a header, each column as wide as its widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}

pub fn node_table(nodes: &[NodeSummary]) -> String {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.uuid.to_string(),
                or_dash(n.name.as_deref()),
                n.driver.to_string(),
                or_dash(n.power_domain.as_deref()),
                power_state_key(n.power_state).to_owned(),
                n.target_power_state.map_or("-".into(), |t| t.to_string()),
                n.maintenance.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "UUID",
            "NAME",
            "DRIVER",
            "POWER DOMAIN",
            "POWER",
            "TARGET",
            "MAINTENANCE",
        ],
        &rows,
    )
}

pub fn node_table_long(nodes: &[NodeView]) -> String {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.uuid.to_string(),
                or_dash(n.name.as_deref()),
                n.driver.to_string(),
                bmc_endpoint(n),
                or_dash(n.power_domain.as_deref()),
                power_state_key(n.power_state).to_owned(),
                n.target_power_state.map_or("-".into(), |t| t.to_string()),
                n.maintenance.to_string(),
                n.locked.to_string(),
                or_dash(n.last_error.as_deref()),
            ]
        })
        .collect();
    table(
        &[
            "UUID",
            "NAME",
            "DRIVER",
            "BMC",
            "POWER DOMAIN",
            "POWER",
            "TARGET",
            "MAINTENANCE",
            "LOCKED",
            "LAST ERROR",
        ],
        &rows,
    )
}

/// `address:port`, with the driver's default port when none is set.
fn bmc_endpoint(n: &NodeView) -> String {
    let port = n.bmc.port.unwrap_or_else(|| default_port(n));
    let bare_ipv6 = n.bmc.address.contains(':') && !n.bmc.address.contains("://");
    if bare_ipv6 {
        format!("[{}]:{port}", n.bmc.address)
    } else {
        format!("{}:{port}", n.bmc.address)
    }
}

fn default_port(n: &NodeView) -> u16 {
    if n.bmc.address.starts_with("http://") {
        80
    } else {
        n.driver.default_port()
    }
}

fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}

pub fn node_detail(n: &NodeView) -> String {
    fields(&[
        ("uuid", n.uuid.to_string()),
        ("name", or_dash(n.name.as_deref())),
        ("driver", n.driver.to_string()),
        ("bmc", bmc_endpoint(n)),
        ("bmc username", n.bmc.username.clone()),
        ("bmc password", n.bmc.password.to_string()),
        ("bmc system id", or_dash(n.bmc.system_id.as_deref())),
        ("verify tls", n.bmc.verify_tls.to_string()),
        ("ca file", or_dash(n.bmc.ca_file.as_deref())),
        ("power domain", or_dash(n.power_domain.as_deref())),
        ("power state", power_state_key(n.power_state).to_owned()),
        (
            "target power state",
            n.target_power_state.map_or("-".into(), |t| t.to_string()),
        ),
        ("boot device", or_dash(n.boot_device.as_deref())),
        ("maintenance", n.maintenance.to_string()),
        (
            "maintenance reason",
            or_dash(n.maintenance_reason.as_deref()),
        ),
        ("fault", or_dash(n.fault.as_deref())),
        ("locked", n.locked.to_string()),
        ("lock reason", or_dash(n.lock_reason.as_deref())),
        ("last error", or_dash(n.last_error.as_deref())),
        ("reservation", or_dash(n.reservation.as_deref())),
        ("created at", n.created_at.clone()),
        ("updated at", n.updated_at.clone()),
        (
            "extra",
            serde_json::Value::Object(n.extra.clone()).to_string(),
        ),
    ])
}

pub fn conductor_status(s: &ConductorStatus) -> String {
    let counts: Vec<String> = s
        .nodes
        .by_power_state
        .iter()
        .map(|(state, n)| format!("{state}: {n}"))
        .collect();
    fields(&[
        ("version", s.version.clone()),
        ("hostname", s.hostname.clone()),
        ("started at", s.started_at.clone()),
        (
            "uptime",
            humantime::format_duration(std::time::Duration::from_secs(s.uptime_seconds))
                .to_string(),
        ),
        ("workers", s.workers.max.to_string()),
        (
            "nodes",
            format!("{} ({})", s.nodes.total, counts.join(", ")),
        ),
        (
            "rss",
            format!("{:.1} MiB", s.process.rss_bytes as f64 / 1_048_576.0),
        ),
        (
            "cpu",
            format!(
                "{:.1}% ({:.2}s total)",
                s.process.cpu_percent, s.process.cpu_seconds
            ),
        ),
        ("database", s.database.path.clone()),
        (
            "database size",
            format!("{:.1} MiB", s.database.size_bytes as f64 / 1_048_576.0),
        ),
        ("schema version", s.database.schema_version.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let out = table(
            &["A", "LONGER"],
            &[
                vec!["wide-cell".into(), "x".into()],
                vec!["b".into(), "y".into()],
            ],
        );
        assert_eq!(out, "A          LONGER\nwide-cell  x\nb          y\n");
    }
}
