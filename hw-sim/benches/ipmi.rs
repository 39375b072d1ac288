//! IPMI bench: complete `chassis status` round trips per second over
//! established RMCP+ sessions, against a 1000-node rack (IPMI and Redfish
//! endpoints in one process) with `--latency 0`, and the process RSS.
//!
//! The client is hw-sim's own sans-IO RMCP+ client (suite 3, encrypted and
//! authenticated, as ipmitool uses it); it runs in the same process and on
//! the same cores, so the figure is a lower bound for the server alone.
//!
//! Run: `cargo bench -p baton-hwsim --bench ipmi` (env `BENCH_NODES`,
//! `BENCH_SECONDS`, `BENCH_CLIENTS` override 1000 nodes, 5 s, 4 client sockets).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use baton_hwsim::config::RackConfig;
use baton_hwsim::ipmi::client::{Handshake, Session};
use baton_hwsim::ipmi::crypto::CipherSuite;
use baton_hwsim::rack::Rack;
use tokio::net::UdpSocket;

const NETFN_CHASSIS: u8 = 0x00;
const GET_CHASSIS_STATUS: u8 = 0x01;
/// The README's target (Benchmarks): round trips per second.
const TARGET_PER_SEC: f64 = 20_000.0;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// One request/response exchange on an unconnected socket, with retries.
async fn exchange(socket: &UdpSocket, peer: SocketAddr, request: &[u8]) -> BenchResult<Vec<u8>> {
    let mut buf = vec![0u8; 1024];
    for _ in 0..5 {
        socket.send_to(request, peer).await?;
        let deadline = tokio::time::sleep(Duration::from_millis(500));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                () = &mut deadline => break,
                r = socket.recv_from(&mut buf) => {
                    let (n, from) = r?;
                    if from == peer {
                        return Ok(buf[..n].to_vec());
                    }
                }
            }
        }
    }
    Err(format!("no answer from {peer}").into())
}

async fn open_session(
    socket: &UdpSocket,
    peer: SocketAddr,
    password: &str,
) -> BenchResult<Session> {
    let mut hs = Handshake::new(CipherSuite::Suite3, "admin", password);
    let rsp = exchange(socket, peer, &hs.open_session_request()).await?;
    let rakp1 = hs.on_open_session_response(&rsp)?;
    let rakp2 = exchange(socket, peer, &rakp1).await?;
    let rakp3 = hs.on_rakp2(&rakp2)?;
    let rakp4 = exchange(socket, peer, &rakp3).await?;
    Ok(hs.on_rakp4(&rakp4)?)
}

struct Lane {
    peer: SocketAddr,
    session: Session,
    sent_at: Instant,
}

/// Keeps one request in flight per session until `until`; returns the
/// number of verified responses with completion code 00h.
async fn drive(socket: UdpSocket, mut lanes: Vec<Lane>, until: Instant) -> BenchResult<u64> {
    let index: HashMap<SocketAddr, usize> =
        lanes.iter().enumerate().map(|(i, l)| (l.peer, i)).collect();
    let mut out = Vec::with_capacity(128);
    for lane in &mut lanes {
        lane.session
            .request(NETFN_CHASSIS, GET_CHASSIS_STATUS, &[], &mut out);
        socket.send_to(&out, lane.peer).await?;
        lane.sent_at = Instant::now();
    }
    let mut buf = vec![0u8; 1024];
    let mut done = 0u64;
    while Instant::now() < until {
        let received =
            tokio::time::timeout(Duration::from_millis(100), socket.recv_from(&mut buf)).await;
        let Ok(received) = received else {
            resend_stale(&socket, &mut lanes, &mut out).await?;
            continue;
        };
        let (n, from) = received?;
        let Some(&i) = index.get(&from) else { continue };
        let lane = &mut lanes[i];
        if let Ok(rsp) = lane.session.response(&buf[..n]) {
            if rsp.cc == 0 && rsp.cmd == GET_CHASSIS_STATUS {
                done += 1;
            }
        }
        lane.session
            .request(NETFN_CHASSIS, GET_CHASSIS_STATUS, &[], &mut out);
        socket.send_to(&out, lane.peer).await?;
        lane.sent_at = Instant::now();
    }
    Ok(done)
}

async fn resend_stale(
    socket: &UdpSocket,
    lanes: &mut [Lane],
    out: &mut Vec<u8>,
) -> BenchResult<()> {
    for lane in lanes
        .iter_mut()
        .filter(|l| l.sent_at.elapsed() > Duration::from_millis(200))
    {
        lane.session
            .request(NETFN_CHASSIS, GET_CHASSIS_STATUS, &[], out);
        socket.send_to(out, lane.peer).await?;
        lane.sent_at = Instant::now();
    }
    Ok(())
}

/// "ok" when a figure met its target, "MISSED" otherwise.
fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}

async fn run() -> BenchResult<()> {
    let nodes = env("BENCH_NODES", 1000) as usize;
    let seconds = env("BENCH_SECONDS", 5);
    let clients = env("BENCH_CLIENTS", 4).max(1) as usize;
    let config = RackConfig {
        nodes,
        ipmi: true,
        control_port: None,
        ..RackConfig::default()
    };
    let password = config.credentials.password.clone();
    let started = Instant::now();
    let rack = Rack::start(config).await?;
    println!(
        "rack: {nodes} nodes (Redfish + IPMI) up in {:.2?}, RSS {:.1} MiB",
        started.elapsed(),
        rss_mib()
    );

    let peers: Vec<SocketAddr> = rack.nodes().iter().filter_map(|n| n.ipmi_addr()).collect();
    let started = Instant::now();
    let mut groups = Vec::new();
    for chunk in peers.chunks(peers.len().div_ceil(clients)) {
        let chunk = chunk.to_vec();
        let password = password.clone();
        groups.push(tokio::spawn(async move {
            let socket = UdpSocket::bind("127.0.0.1:0").await?;
            let mut lanes = Vec::with_capacity(chunk.len());
            for peer in chunk {
                let session = open_session(&socket, peer, &password).await?;
                lanes.push(Lane {
                    peer,
                    session,
                    sent_at: Instant::now(),
                });
            }
            BenchResult::Ok((socket, lanes))
        }));
    }
    let mut ready = Vec::new();
    for g in groups {
        ready.push(g.await??);
    }
    println!(
        "sessions: {} opened in {:.2?}",
        peers.len(),
        started.elapsed()
    );

    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let runs: Vec<_> = ready
        .into_iter()
        .map(|(s, l)| tokio::spawn(drive(s, l, until)))
        .collect();
    let mut total = 0;
    for r in runs {
        total += r.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rate = total as f64 / elapsed;
    println!(
        "chassis status: {total} round trips in {elapsed:.2} s = {rate:.0}/s over {} sessions ({clients} client sockets), RSS {:.1} MiB",
        peers.len(),
        rss_mib()
    );
    println!(
        "chassis status: target >= {TARGET_PER_SEC:.0}/s  {}",
        verdict(rate >= TARGET_PER_SEC)
    );
    rack.shutdown().await;
    Ok(())
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(run()),
        Err(e) => Err(e.into()),
    };
    if let Err(e) = result {
        eprintln!("ipmi bench failed: {e}");
        std::process::exit(1);
    }
}
