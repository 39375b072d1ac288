//! `baton-hwsim`: runs a simulated rack of BMCs until SIGINT/SIGTERM.
//!
//! Reads the command line into a [`RackConfig`] (every problem reported at
//! once, exit code 2), starts the rack, writes the inventory (and the CA with
//! `--tls`) once every endpoint is bound, prints where things listen, and
//! shuts down cleanly on a signal.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use baton_hwsim::{
    AlreadyInStateReply, BootPatchQuirk, Credentials, Delays, EtagQuirk, ExportDriver, FaultPlan,
    FaultSetting, InitialPower, MidTransition, NodeFault, NodeResetTypes, PowerAction,
    PowerStateStyle, Quirks, Rack, RackConfig, ResetReply, SessionLimitReply,
};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// A simulated rack of Redfish BMCs with a shared power model, faults and a
/// control API.
#[derive(Debug, Parser)]
#[command(name = "baton-hwsim", version)]
struct Cli {
    /// Number of simulated servers (one BMC each).
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Control API port (0 = a free port).
    #[arg(long, default_value_t = 0)]
    control_port: u16,
    /// Write the inventory (the JSON `POST /v1/nodes/import` takes) to FILE.
    #[arg(long, value_name = "FILE")]
    export_inventory: Option<PathBuf>,
    /// Driver of the exported entries: redfish, ipmi or mixed (alternating).
    #[arg(long, default_value = "redfish")]
    export_driver: ExportDriver,
    /// Latency every BMC request pays.
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    latency: Duration,
    /// Time from power-on to on.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    power_on_delay: Duration,
    /// Time a hard power-off takes.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    power_off_delay: Duration,
    /// How long a power cycle holds the power off (IPMI asks at least 1s).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    power_cycle_off: Duration,
    /// Time the OS takes for a graceful shutdown.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    shutdown_delay: Duration,
    /// Power state of every node at start.
    #[arg(long, default_value = "on", value_parser = parse_initial_power)]
    initial_power: InitialPower,
    /// Address every endpoint binds to, or an IPv4 range ADDR/PREFIX (e.g.
    /// 127.1.0.0/16): node i then listens on ADDR + i, every node on the same
    /// ports (443 and 623 unless the base ports are given).
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR[/PREFIX]", value_parser = parse_bind)]
    bind: (std::net::IpAddr, Option<u8>),
    /// Redfish port of node 0 (node i gets base + i; with a --bind range,
    /// every node's port); default: free ports (443 with a range).
    #[arg(long)]
    redfish_base_port: Option<u16>,
    /// IPMI (RMCP+, UDP) port of node 0 (node i gets base + i; with a --bind
    /// range, every node's port); default: free ports (623 with a range).
    #[arg(long, conflicts_with = "no_ipmi")]
    ipmi_base_port: Option<u16>,
    /// Serve Redfish only: no IPMI UDP endpoints (halves the sockets per node).
    #[arg(long)]
    no_ipmi: bool,
    /// BMC user name.
    #[arg(long, default_value = "admin")]
    username: String,
    /// BMC password.
    #[arg(long, default_value = "password", env = "BATON_HWSIM_PASSWORD")]
    password: String,
    /// Serve Redfish over HTTPS with a certificate generated at start; the CA
    /// is written beside the inventory as <stem>-ca.pem.
    #[arg(long)]
    tls: bool,
    /// Seed for UUIDs and random choices.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fraction of nodes (seeded) that get each --fault.
    #[arg(long, default_value_t = 1.0, requires = "fault")]
    fault_fraction: f64,
    /// A fault for --fault-fraction of the nodes: no_answer, http_500, busy,
    /// slow=<duration>, wrong_credentials, stuck, hung_os, flapping,
    /// packet_loss=<fraction>, link_flap_on_power=<duration>,
    /// min_interval=<duration>, garbage=<variant> (drop_sessions and bmc_reboot=<duration> are
    /// events: play them through the control API). Repeatable.
    #[arg(long, value_name = "NAME[=VALUE]")]
    fault: Vec<FaultSetting>,
    /// A fault for one node, as NODE:NAME[=VALUE] (e.g. node-0003:slow=2s). Repeatable.
    #[arg(long, value_name = "NODE:NAME[=VALUE]", value_parser = parse_node_fault)]
    node_fault: Vec<NodeFault>,
    /// ResetType values the BMCs allow (comma-separated), to mimic BMCs that lack some.
    #[arg(long, value_delimiter = ',', value_parser = parse_reset_type)]
    reset_types: Vec<PowerAction>,
    /// ResetType values one node allows, as NODE:LIST (e.g.
    /// node-0003:On,ForceOff). Repeatable.
    #[arg(long, value_name = "NODE:LIST", value_parser = parse_node_reset_types)]
    node_reset_types: Vec<NodeResetTypes>,
    /// Answer to a reset to the present state: ok, 409 or 400.
    #[arg(long, default_value = "ok", value_parser = parse_already)]
    already_in_state: AlreadyInStateReply,
    /// Answer to an accepted reset: 204, or 202 with a task monitor.
    #[arg(long, default_value = "204", value_parser = parse_reset_reply)]
    reset_reply: ResetReply,
    /// Accept Redfish POST/PATCH bodies without Content-Type: application/json
    /// (by default they are refused with 400, as bmcweb does).
    #[arg(long)]
    lenient_content_type: bool,
    /// How the power state reads while it changes: ideal (PoweringOn and
    /// PoweringOff), binary (On until power drops, Off until power is good,
    /// as OpenBMC) or stale=<duration> (the old state for that long after a change).
    #[arg(long, default_value = "ideal", value_name = "STYLE")]
    power_state_style: PowerStateStyle,
    /// Give a graceful shutdown the OS has not finished up after this long,
    /// leaving the server on (OpenBMC: 300s); default: wait forever.
    #[arg(long, value_parser = humantime::parse_duration)]
    shutdown_timeout: Option<Duration>,
    /// Answer to a power command the transition under way does not allow:
    /// refuse (Redfish 409, IPMI D5h) or ignore (success, and nothing done,
    /// as x86-power-control).
    #[arg(long, default_value = "refuse", value_parser = parse_mid_transition)]
    mid_transition: MidTransition,
    /// What the boot override PATCH insists on (comma-separated):
    /// refuse_in_post, all_required, no_repeat_enabled, enabled_required,
    /// no_continuous.
    #[arg(long, value_delimiter = ',', value_parser = parse_word::<BootPatchQuirk>)]
    boot_patch: Vec<BootPatchQuirk>,
    /// How entity tags deviate (comma-separated): weak, body_only,
    /// if_match_required, racy. Default: strong tags, checked atomically.
    #[arg(long, value_delimiter = ',', value_parser = parse_word::<EtagQuirk>)]
    etag: Vec<EtagQuirk>,
    /// The message of a full Redfish session table: base
    /// (SessionLimitExceeded) or vendor (iDRAC's RAC0218).
    #[arg(long, default_value = "base", value_parser = parse_word::<SessionLimitReply>)]
    session_limit_reply: SessionLimitReply,
    /// Close a kept-alive Redfish connection after this many requests (the
    /// last answer says Connection: close).
    #[arg(long, value_name = "N")]
    keep_alive_requests: Option<u32>,
    /// Close a kept-alive Redfish connection idle this long, without notice.
    #[arg(long, value_parser = humantime::parse_duration)]
    keep_alive_idle: Option<Duration>,
    /// Idle time after which a Redfish session expires.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    session_timeout: Duration,
    /// How long boot flags set over IPMI stay valid without a Chassis
    /// Control command (IPMI v2.0: 60s), unless boot options parameter 3
    /// bit 3 says to keep them. Shorten it for tests.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    boot_flag_valid_timeout: Duration,
    /// Live Redfish sessions one BMC holds at most (real BMCs go as low as 10).
    #[arg(long, default_value_t = baton_hwsim::REDFISH_MAX_SESSIONS)]
    redfish_max_sessions: usize,
    /// IPMI sessions one BMC holds at most, 1-63 (real BMCs go as low as 4).
    #[arg(long, default_value_t = baton_hwsim::ipmi::server::SESSIONS_PER_BMC)]
    ipmi_max_sessions: usize,
    /// How often a flapping node may change power.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    flap_interval: Duration,
    /// Node names are <prefix>-NNNN.
    #[arg(long, default_value = "node")]
    name_prefix: String,
    /// Nodes per power domain (domains are named rack-1, rack-2, …).
    #[arg(long, default_value_t = 40)]
    nodes_per_domain: usize,
}

fn parse_bind(s: &str) -> Result<(std::net::IpAddr, Option<u8>), String> {
    let (address, prefix) = match s.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (s, None),
    };
    let address = address.parse().map_err(|_| {
        format!("{address:?} is not an IP address (e.g. 127.0.0.1 or 127.1.0.0/16)")
    })?;
    let prefix = prefix
        .map(|p| {
            p.parse::<u8>()
                .map_err(|_| format!("{p:?} is not a prefix length (e.g. /16)"))
        })
        .transpose()?;
    Ok((address, prefix))
}

fn parse_initial_power(s: &str) -> Result<InitialPower, String> {
    match s {
        "on" => Ok(InitialPower::On),
        "off" => Ok(InitialPower::Off),
        other => Err(format!("{other:?} is not on or off")),
    }
}

fn parse_node_fault(s: &str) -> Result<NodeFault, String> {
    let (node, fault) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not NODE:NAME[=VALUE] (e.g. node-0003:busy)"))?;
    let setting = fault.parse::<FaultSetting>().map_err(|e| e.to_string())?;
    Ok(NodeFault {
        node: node.to_owned(),
        setting,
    })
}

fn parse_reset_type(s: &str) -> Result<PowerAction, String> {
    PowerAction::parse(s).ok_or_else(|| {
        let all: Vec<_> = PowerAction::ALL.iter().map(|a| a.as_str()).collect();
        format!("{s:?} is not a ResetType; valid: {}", all.join(", "))
    })
}

fn parse_node_reset_types(s: &str) -> Result<NodeResetTypes, String> {
    let (node, list) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not NODE:LIST (e.g. node-0003:On,ForceOff)"))?;
    let reset_types = list
        .split(',')
        .map(|t| parse_reset_type(t.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NodeResetTypes {
        node: node.to_owned(),
        reset_types,
    })
}

fn parse_already(s: &str) -> Result<AlreadyInStateReply, String> {
    match s {
        "ok" | "200" | "204" => Ok(AlreadyInStateReply::Ok),
        "409" => Ok(AlreadyInStateReply::Conflict),
        "400" => Ok(AlreadyInStateReply::BadRequest),
        other => Err(format!("{other:?} is not ok, 409 or 400")),
    }
}

/// A quirk value by its control API name (`refuse_in_post`, `weak`, …).
fn parse_word<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.trim().to_owned()))
        .map_err(|e| e.to_string())
}

fn parse_mid_transition(s: &str) -> Result<MidTransition, String> {
    match s {
        "refuse" => Ok(MidTransition::Refuse),
        "ignore" => Ok(MidTransition::Ignore),
        other => Err(format!("{other:?} is not refuse or ignore")),
    }
}

fn parse_reset_reply(s: &str) -> Result<ResetReply, String> {
    match s {
        "204" => Ok(ResetReply::NoContent),
        "202" => Ok(ResetReply::Task),
        other => Err(format!("{other:?} is not 204 or 202")),
    }
}

impl Cli {
    fn into_config(self) -> (RackConfig, Option<PathBuf>, ExportDriver) {
        let quirks = Quirks {
            reset_types: if self.reset_types.is_empty() {
                PowerAction::ALL.to_vec()
            } else {
                self.reset_types
            },
            already_in_state: self.already_in_state,
            reset_reply: self.reset_reply,
            lenient_content_type: self.lenient_content_type,
            power_state_style: self.power_state_style,
            shutdown_timeout: self.shutdown_timeout,
            mid_transition: self.mid_transition,
            boot_patch: self.boot_patch,
            etag: self.etag,
            session_limit_reply: self.session_limit_reply,
            keep_alive_requests: self.keep_alive_requests,
            keep_alive_idle: self.keep_alive_idle,
        };
        let fault_plans = self
            .fault
            .iter()
            .map(|&setting| FaultPlan {
                fraction: self.fault_fraction,
                setting,
                seed: self.seed,
            })
            .collect();
        let config = RackConfig {
            nodes: self.nodes,
            bind: self.bind.0,
            bind_prefix: self.bind.1,
            name_prefix: self.name_prefix,
            nodes_per_domain: self.nodes_per_domain,
            redfish_base_port: self.redfish_base_port,
            ipmi: !self.no_ipmi,
            ipmi_base_port: self.ipmi_base_port,
            control_port: Some(self.control_port),
            credentials: Credentials {
                username: self.username,
                password: self.password,
            },
            latency: self.latency,
            delays: Delays {
                power_on: self.power_on_delay,
                power_off: self.power_off_delay,
                shutdown: self.shutdown_delay,
            },
            power_cycle_off: self.power_cycle_off,
            initial_power: self.initial_power,
            tls: self.tls,
            seed: self.seed,
            fault_plans,
            node_faults: self.node_fault,
            quirks,
            node_reset_types: self.node_reset_types,
            session_timeout: self.session_timeout,
            redfish_max_sessions: self.redfish_max_sessions,
            ipmi_max_sessions: self.ipmi_max_sessions,
            flap_interval: self.flap_interval,
            boot_flag_valid_timeout: self.boot_flag_valid_timeout,
        };
        (config, self.export_inventory, self.export_driver)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let (config, inventory, driver) = Cli::parse().into_config();
    let mut problems: Vec<String> = config.problems().iter().map(ToString::to_string).collect();
    // An impossible export is a flag problem too: refuse it before binding anything.
    if inventory.is_some() && driver != ExportDriver::Redfish && !config.ipmi {
        problems.push(
            baton_hwsim::Error::NoIpmi {
                driver: driver.as_str(),
            }
            .to_string(),
        );
    }
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("baton-hwsim: {problem}");
        }
        return ExitCode::from(2);
    }
    match run(config, inventory, driver).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("baton-hwsim: {}", chain(&error));
            ExitCode::FAILURE
        }
    }
}

async fn run(
    config: RackConfig,
    inventory: Option<PathBuf>,
    driver: ExportDriver,
) -> Result<(), baton_hwsim::Error> {
    let started = std::time::Instant::now();
    // Before anything is served: a client that sees the banner or the
    // control API and sends SIGTERM must find the handler in place, not
    // the default action that kills the process.
    let stop = ShutdownSignal::install();
    let rack = Rack::start(config).await?;
    if let Some(path) = &inventory {
        if let Err(error) = rack.write_inventory(path, driver) {
            rack.shutdown().await;
            return Err(error);
        }
    }
    print_banner(&rack, inventory.as_deref(), started.elapsed());
    stop.received().await;
    rack.shutdown().await;
    Ok(())
}

fn print_banner(rack: &Rack, inventory: Option<&std::path::Path>, took: Duration) {
    let nodes = rack.nodes();
    let ports: Vec<u16> = nodes.iter().map(|n| n.endpoints().redfish_port).collect();
    let (low, high) = (
        ports.iter().min().copied().unwrap_or(0),
        ports.iter().max().copied().unwrap_or(0),
    );
    let address = |n: Option<&std::sync::Arc<baton_hwsim::Node>>| {
        n.map(|n| n.redfish_addr().ip().to_string())
            .unwrap_or_default()
    };
    let (first, last) = (address(nodes.first()), address(nodes.last()));
    let addresses = if first == last {
        first
    } else {
        format!("{first}-{last}")
    };
    println!(
        "baton-hwsim: {} nodes up in {:.2}s; Redfish on {addresses} ports {low}-{high}{}",
        nodes.len(),
        took.as_secs_f64(),
        if rack.ca_certificate_pem().is_some() {
            " (HTTPS)"
        } else {
            ""
        },
    );
    if let Some(url) = rack.control_url() {
        println!("baton-hwsim: control API {url}");
    }
    if let Some(path) = inventory {
        println!("baton-hwsim: inventory written to {}", path.display());
    }
}

/// SIGINT and SIGTERM, handled from [`ShutdownSignal::install`] on.
struct ShutdownSignal {
    term: Option<tokio::signal::unix::Signal>,
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignal {
    fn install() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        let handler = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(handler) => Some(handler),
            Err(error) => {
                tracing::warn!(%error, "cannot handle {name}; it will end baton-hwsim uncleanly");
                None
            }
        };
        Self {
            term: handler(SignalKind::terminate(), "SIGTERM"),
            interrupt: handler(SignalKind::interrupt(), "SIGINT"),
        }
    }

    /// Resolves on the first of the two.
    async fn received(mut self) {
        tokio::select! {
            () = next(self.term.as_mut()) => {}
            () = next(self.interrupt.as_mut()) => {}
        }
    }
}

/// The next delivery of `signal`; never, for a signal not handled.
async fn next(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            let _ = signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
