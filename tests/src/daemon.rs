//! Harness for batond end-to-end tests: a daemon in a temp dir, either
//! in-process ([`TestDaemon`]) or as the real `batond` binary
//! ([`DaemonProcess`]), plus the paths of the built `baton`/`batond`
//! binaries and a polling helper instead of sleeps.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use batond::client::{Client, RawResponse};
use batond::config::Config;
use batond::daemon::Daemon;
use bytes::Bytes;
use http::Method;
use tempfile::TempDir;

/// Polls `check` until it returns `Some`, or panics with `what` after
/// `timeout`.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A config whose socket and database live in `dir`.
pub fn temp_config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.api.socket = dir.join("baton.sock");
    config.state.database = dir.join("state/baton.db");
    config
}

/// batond running inside the test process.
#[derive(Debug)]
pub struct TestDaemon {
    pub dir: TempDir,
    pub client: Client,
    daemon: Option<Daemon>,
}

impl TestDaemon {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts batond on the temp-dir config after `adjust` changed it.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = TempDir::new().expect("temp dir");
        let mut config = temp_config(dir.path());
        adjust(&mut config);
        let daemon = Daemon::start(config).await.expect("batond starts");
        let client = Client::new(daemon.socket_path());
        Self {
            dir,
            client,
            daemon: Some(daemon),
        }
    }

    pub fn socket(&self) -> &Path {
        self.client.socket()
    }

    /// One request with an optional JSON body, as raw bytes.
    pub async fn call(&self, method: Method, path: &str, body: Option<&str>) -> RawResponse {
        self.client
            .request(method, path, body.map(|b| Bytes::from(b.to_owned())))
            .await
            .expect("batond answers")
    }

    /// The node as stored, password included, read beside the running
    /// daemon (which holds the database's exclusive lock).
    pub async fn stored_node(&self, ident: &str) -> baton_state::Node {
        let options = baton_state::StoreOptions {
            exclusive: false,
            ..Default::default()
        };
        let store = baton_state::Store::open(self.dir.path().join("state/baton.db"), options)
            .await
            .expect("open the store read-only");
        store
            .get_node(baton_state::NodeIdent::parse(ident))
            .await
            .expect("the node is stored")
    }

    /// Stops batond cleanly and starts it again on the same directory, with
    /// the temp-dir config changed by `adjust`.
    pub async fn restart_with(&mut self, adjust: impl FnOnce(&mut Config)) {
        if let Some(daemon) = self.daemon.take() {
            daemon.shutdown().await.expect("clean shutdown");
        }
        let mut config = temp_config(self.dir.path());
        adjust(&mut config);
        let daemon = Daemon::start(config).await.expect("batond starts again");
        self.client = Client::new(daemon.socket_path());
        self.daemon = Some(daemon);
    }

    pub async fn stop(mut self) {
        if let Some(daemon) = self.daemon.take() {
            daemon.shutdown().await.expect("clean shutdown");
        }
    }
}

/// The directory cargo puts this workspace's binaries in (the test
/// executable lives in its `deps/` subdirectory).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_owned()
}

/// Path of a workspace binary, which `cargo test --workspace` builds (batond
/// has integration tests, so cargo builds its binaries).
pub fn workspace_bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing; build it with `cargo build -p batond` (cargo test --workspace does)",
        path.display()
    );
    path
}

/// The real `batond` binary running on a config file in a temp dir, its
/// stderr captured to `batond.log`. Killed on drop.
#[derive(Debug)]
pub struct DaemonProcess {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl DaemonProcess {
    /// Starts batond with `extra_toml` appended to a config pointing into
    /// `dir`, and waits until its socket answers.
    pub async fn start(dir: &Path, extra_toml: &str) -> Self {
        Self::start_with_env(dir, extra_toml, &[]).await
    }

    /// Like [`DaemonProcess::start`], with `env` added to batond's
    /// environment (e.g. `CREDENTIALS_DIRECTORY`).
    pub async fn start_with_env(dir: &Path, extra_toml: &str, env: &[(&str, &Path)]) -> Self {
        let process = Self::spawn_with_api(dir, "", extra_toml, env);
        let client = Client::new(&process.socket);
        wait_until(
            "batond to answer on its socket",
            Duration::from_secs(20),
            || async { client.get::<serde_json::Value>("/v1").await.ok() },
        )
        .await;
        process
    }

    /// Like [`DaemonProcess::start`], with `api_toml` (keys of `[api]`
    /// besides the socket) added to the `[api]` table.
    pub async fn start_with_api(dir: &Path, api_toml: &str, extra_toml: &str) -> Self {
        let process = Self::spawn_with_api(dir, api_toml, extra_toml, &[]);
        let client = Client::new(&process.socket);
        wait_until(
            "batond to answer on its socket",
            Duration::from_secs(20),
            || async { client.get::<serde_json::Value>("/v1").await.ok() },
        )
        .await;
        process
    }

    /// Starts batond without waiting for it.
    pub fn spawn(dir: &Path, extra_toml: &str) -> Self {
        Self::spawn_with_api(dir, "", extra_toml, &[])
    }

    /// Starts batond with `env` added to its environment, without waiting.
    pub fn spawn_with_env(dir: &Path, extra_toml: &str, env: &[(&str, &Path)]) -> Self {
        Self::spawn_with_api(dir, "", extra_toml, env)
    }

    fn spawn_with_api(dir: &Path, api_toml: &str, extra_toml: &str, env: &[(&str, &Path)]) -> Self {
        let socket = dir.join("baton.sock");
        let config_path = dir.join("batond.toml");
        let config = format!(
            "[api]\nsocket = {:?}\n{api_toml}\n[state]\ndatabase = {:?}\n{extra_toml}",
            socket.display().to_string(),
            dir.join("baton.db").display().to_string()
        );
        std::fs::write(&config_path, config).expect("write config");
        let log = dir.join("batond.log");
        let stderr = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let child = Command::new(workspace_bin("batond"))
            .arg("--config")
            .arg(&config_path)
            .env_remove("CREDENTIALS_DIRECTORY")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn batond");
        Self {
            dir: dir.to_owned(),
            socket,
            log,
            child: Some(child),
        }
    }

    pub fn client(&self) -> Client {
        Client::new(&self.socket)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends `signal` and waits for the process to exit; returns its status.
    pub fn stop_with(&mut self, signal: nix::sys::signal::Signal) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("batond is running");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid fits"));
        let _ = nix::sys::signal::kill(pid, signal);
        child.wait().expect("wait for batond")
    }

    /// Sends `signal` without waiting for the process to exit.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid()).expect("pid fits"));
        let _ = nix::sys::signal::kill(pid, signal);
    }

    /// Whether the process has not exited yet.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Waits for the process to exit by itself (e.g. refused to start).
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("batond was started");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("poll batond") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("batond did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the `baton` CLI against `socket`; returns (exit code, stdout, stderr).
pub fn baton(socket: &Path, args: &[&str]) -> (i32, String, String) {
    baton_with(socket, args, &[], None)
}

/// Runs the `baton` CLI with extra environment variables and, when given,
/// `stdin` as its standard input (else none). Variables the CLI reads are
/// cleared first, so the caller's environment cannot leak in.
pub fn baton_with(
    socket: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> (i32, String, String) {
    use std::io::Write as _;
    let mut child = Command::new(workspace_bin("baton"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("BATON_SOCKET")
        .env_remove("BATON_BMC_PASSWORD")
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run baton");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .expect("write baton's stdin");
    }
    let output = child.wait_with_output().expect("wait for baton");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A node as `POST /v1/nodes` takes it.
pub fn node_json(name: &str, password: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "driver": "redfish",
        "power_domain": "rack-1",
        "bmc": {"address": "127.0.0.1", "port": 8443, "username": "admin", "password": password}
    })
}

/// An inventory of `count` nodes named `{prefix}{i}`.
pub fn inventory(prefix: &str, count: usize, password: &str) -> serde_json::Value {
    serde_json::Value::Array(
        (0..count)
            .map(|i| node_json(&format!("{prefix}{i}"), password))
            .collect(),
    )
}
