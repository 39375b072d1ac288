//! Errors of starting and running a simulated rack (not of serving a request:
//! a bad request is answered, never an error here).

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::ConfigProblem;

/// Why a rack could not start, or an export could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration has problems; all of them are listed.
    #[error("Invalid rack configuration: {}", list(.0))]
    Config(Vec<ConfigProblem>),
    /// A port could not be bound.
    #[error("Cannot bind the {what} on {addr}")]
    Bind {
        /// Which endpoint.
        what: String,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The open-file limit is too low for this many nodes and cannot be raised.
    #[error("Open-file limit {limit} is too low for {nodes} nodes (needs about {needed}); raise the hard limit (ulimit -Hn), run fewer nodes, or serve Redfish only (--no-ipmi: one socket per node instead of two)")]
    FileLimit {
        /// Limit in force.
        limit: u64,
        /// Wanted limit.
        needed: u64,
        /// Node count.
        nodes: usize,
    },
    /// Generating the TLS certificate failed.
    #[error("Cannot generate the TLS certificate")]
    Certificate(#[source] rcgen::Error),
    /// Building the TLS server configuration failed.
    #[error("Cannot build the TLS server configuration")]
    Tls(#[source] rustls::Error),
    /// An inventory export asked for IPMI entries from a rack that serves no IPMI.
    #[error("Cannot export {driver} inventory: this rack serves no IPMI endpoints; export with driver redfish, or start the rack without --no-ipmi")]
    NoIpmi {
        /// The driver asked for.
        driver: &'static str,
    },
    /// Writing a file failed.
    #[error("Cannot write {}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Serialising the inventory failed.
    #[error("Cannot serialise the inventory")]
    Json(#[from] serde_json::Error),
}

fn list(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
