//! Third-party BMC emulators for the driver conformance suite:
//! sushy-emulator (the OpenStack reference Redfish emulator, fake driver) and
//! OpenIPMI's `ipmi_sim` (an IPMI 2.0 LAN BMC). Each starts on a free
//! loopback port in its own temp dir, is waited for until it answers, and is
//! killed when dropped. A missing emulator is an error that says to run
//! `scripts/install-test-deps.sh` — the suite never skips silently.
//!
//! Their configuration lives in `tests/interop/`.

use std::io::Read;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long an emulator may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a peer could not be started.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The emulator is not installed.
    #[error("{what} not found at {path}; run scripts/install-test-deps.sh (or ./test.sh) first")]
    Missing {
        /// The emulator.
        what: &'static str,
        /// Where it was looked for.
        path: String,
    },
    /// It is installed but did not come up.
    #[error("{what} did not start: {detail}")]
    Start {
        /// The emulator.
        what: &'static str,
        /// What went wrong, with its output.
        detail: String,
    },
    /// Preparing its files failed.
    #[error("cannot prepare {what}: {source}")]
    Io {
        /// The emulator.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The Python venv with the interop peers: `$BATON_VENV`, else `<workspace>/.venv`.
pub fn venv() -> PathBuf {
    std::env::var_os("BATON_VENV").map_or_else(|| workspace_root().join(".venv"), PathBuf::from)
}

fn interop(file: &str) -> PathBuf {
    workspace_root().join("tests/interop").join(file)
}

/// A child process killed (and reaped) on drop, with its output in a file.
#[derive(Debug)]
struct Guard {
    what: &'static str,
    child: Child,
    log: PathBuf,
}

impl Guard {
    fn spawn(what: &'static str, mut command: Command, dir: &Path) -> Result<Self, PeerError> {
        let io = |source| PeerError::Io { what, source };
        let log = dir.join(format!("{what}.log"));
        let out = std::fs::File::create(&log).map_err(io)?;
        let err = out.try_clone().map_err(io)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io)?;
        Ok(Self { what, child, log })
    }

    /// An error carrying the tail of the output, when the child died.
    fn check_alive(&mut self) -> Result<(), PeerError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(PeerError::Start {
                what: self.what,
                detail: format!("exited with {status}: {}", self.output_tail()),
            }),
            Err(e) => Err(PeerError::Io {
                what: self.what,
                source: e,
            }),
        }
    }

    fn output_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        let start = text.len().saturating_sub(2000);
        text.get(start..).unwrap_or_default().to_owned()
    }

    /// Polls `ready` until it returns true, the child dies or time runs out.
    fn wait_until(&mut self, mut ready: impl FnMut() -> bool) -> Result<(), PeerError> {
        let start = Instant::now();
        while start.elapsed() < START_TIMEOUT {
            self.check_alive()?;
            if ready() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(PeerError::Start {
            what: self.what,
            detail: format!("no answer after {START_TIMEOUT:?}: {}", self.output_tail()),
        })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on loopback.
pub fn free_tcp_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A free UDP port on loopback.
pub fn free_udp_port() -> std::io::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// sushy-emulator with its fake driver, over HTTP with basic auth.
#[derive(Debug)]
pub struct SushyEmulator {
    guard: Guard,
    port: u16,
    _dir: TempDir,
}

impl SushyEmulator {
    /// The user in `tests/interop/sushy/htpasswd`.
    pub const USERNAME: &'static str = "admin";
    /// Its password.
    pub const PASSWORD: &'static str = "baton-sushy-pw1";

    /// Starts an emulator with one fake system.
    pub fn start() -> Result<Self, PeerError> {
        Self::start_with_systems(1)
    }

    /// Starts an emulator with `systems` fake systems.
    pub fn start_with_systems(systems: usize) -> Result<Self, PeerError> {
        const WHAT: &str = "sushy-emulator";
        let binary = venv().join("bin/sushy-emulator");
        if !binary.is_file() {
            return Err(PeerError::Missing {
                what: WHAT,
                path: binary.display().to_string(),
            });
        }
        let io = |source| PeerError::Io { what: WHAT, source };
        let dir = tempfile::tempdir().map_err(io)?;
        let port = free_tcp_port().map_err(io)?;
        let mut command = Command::new(&binary);
        command
            .arg("--config")
            .arg(interop("sushy/emulator.conf"))
            .arg("--port")
            .arg(port.to_string())
            .env("BATON_SUSHY_STATE_DIR", dir.path().join("state"))
            .env("BATON_SUSHY_AUTH_FILE", interop("sushy/htpasswd"))
            .env("BATON_SUSHY_SYSTEMS", systems.to_string());
        let mut guard = Guard::spawn(WHAT, command, dir.path())?;
        guard.wait_until(|| http_root_answers(port))?;
        Ok(Self {
            guard,
            port,
            _dir: dir,
        })
    }

    /// The HTTP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The emulator's output so far (for failure messages).
    pub fn output(&self) -> String {
        self.guard.output_tail()
    }

    /// Every `ResetType` the emulator carried out, in order, as it logged
    /// them (`System "…" power state set to "ForceRestart"`).
    pub fn resets(&self) -> Vec<String> {
        const MARK: &str = "power state set to \"";
        std::fs::read_to_string(&self.guard.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let (_, rest) = line.split_once(MARK)?;
                rest.split_once('"').map(|(reset, _)| reset.to_owned())
            })
            .collect()
    }
}

/// True when `GET /redfish/v1/` on the port answers 200.
fn http_root_answers(port: u16) -> bool {
    use std::io::Write;
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /redfish/v1/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.ends_with(b"200")
}

/// OpenIPMI `ipmi_sim` as a LAN BMC whose chassis-control program keeps the
/// power state in files (see `tests/interop/ipmi_sim/`).
#[derive(Debug)]
pub struct IpmiSim {
    guard: Guard,
    port: u16,
    state: PathBuf,
    _dir: TempDir,
}

impl IpmiSim {
    /// The administrator in `lan.conf.in`.
    pub const USERNAME: &'static str = "admin";
    /// Its password.
    pub const PASSWORD: &'static str = "baton-ipmi-pw1";

    /// Starts the simulator with the server off.
    pub fn start() -> Result<Self, PeerError> {
        const WHAT: &str = "ipmi_sim";
        let binary = find_in_path("ipmi_sim").ok_or_else(|| PeerError::Missing {
            what: WHAT,
            path: "$PATH (Debian package openipmi)".into(),
        })?;
        let io = |source| PeerError::Io { what: WHAT, source };
        let dir = tempfile::tempdir().map_err(io)?;
        let port = free_udp_port().map_err(io)?;
        let state = dir.path().join("chassis");
        let persist = dir.path().join("persist");
        std::fs::create_dir(&state).map_err(io)?;
        std::fs::create_dir(&persist).map_err(io)?;
        let template = std::fs::read_to_string(interop("ipmi_sim/lan.conf.in")).map_err(io)?;
        let conf = template
            .replace("@PORT@", &port.to_string())
            .replace(
                "@CHASSIS@",
                &interop("ipmi_sim/chassis-control.sh").display().to_string(),
            )
            .replace("@STATE@", &state.display().to_string());
        let conf_path = dir.path().join("lan.conf");
        std::fs::write(&conf_path, conf).map_err(io)?;
        let mut command = Command::new(binary);
        command
            .arg("-c")
            .arg(&conf_path)
            .arg("-f")
            .arg(interop("ipmi_sim/bmc.emu"))
            .arg("-s")
            .arg(&persist)
            .arg("-n");
        let mut guard = Guard::spawn(WHAT, command, dir.path())?;
        guard.wait_until(|| rmcp_ping(port))?;
        Ok(Self {
            guard,
            port,
            state,
            _dir: dir,
        })
    }

    /// The UDP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The power state the chassis-control program holds (ground truth).
    pub fn power_is_on(&self) -> bool {
        std::fs::read_to_string(self.state.join("power")).is_ok_and(|s| s.trim() == "1")
    }

    /// The boot device the chassis-control program was last given.
    pub fn boot_device(&self) -> Option<String> {
        std::fs::read_to_string(self.state.join("boot"))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// Every change the chassis-control program recorded, in order.
    pub fn command_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.state.join("log"))
            .map(|s| s.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// The simulator's output so far.
    pub fn output(&self) -> String {
        self.guard.output_tail()
    }
}

/// An executable named `name` in `$PATH`.
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// True when an ASF presence ping to the port gets a pong.
pub fn rmcp_ping(port: u16) -> bool {
    // RMCP header (version 6, seq 0xFF, class ASF) + ASF Presence Ping.
    const PING: [u8; 12] = [
        0x06, 0x00, 0xFF, 0x06, 0x00, 0x00, 0x11, 0xBE, 0x80, 0x42, 0x00, 0x00,
    ];
    let Ok(socket) = UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let _ = socket.set_read_timeout(Some(Duration::from_millis(300)));
    if socket.send_to(&PING, ("127.0.0.1", port)).is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(socket.recv(&mut buf), Ok(n) if n >= 12 && buf[8] == 0x40)
}
