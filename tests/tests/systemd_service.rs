//! batond under systemd's protocols, through the real binary: the notify
//! sequence on a fake `NOTIFY_SOCKET` (READY=1 only once the socket serves,
//! WATCHDOG=1 at half `WATCHDOG_USEC`, STOPPING=1 on SIGTERM), SIGHUP
//! reloads (a valid change applied, an invalid file changing nothing), and
//! socket activation through `systemd-socket-activate` (from Debian's
//! `systemd` package).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baton_tests::daemon::{wait_until, workspace_bin};
use batond::client::Client;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::net::UnixDatagram;

/// Longest any single step may take on a loaded CI machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// A batond child process with a fake systemd notify socket.
struct Service {
    dir: tempfile::TempDir,
    child: Child,
    notify: UnixDatagram,
}

fn config_path(dir: &Path) -> PathBuf {
    dir.join("batond.toml")
}

fn write_config(dir: &Path, extra: &str) {
    let text = format!(
        "[api]\nsocket = {:?}\n[state]\ndatabase = {:?}\n{extra}",
        dir.join("baton.sock").display().to_string(),
        dir.join("baton.db").display().to_string(),
    );
    std::fs::write(config_path(dir), text).unwrap();
}

impl Service {
    /// Starts `batond` (through `launcher` when given) on a config with
    /// `extra`, with `NOTIFY_SOCKET` and `env` set.
    fn start(extra: &str, env: &[(&str, &str)], launcher: &[&str]) -> Self {
        let dir = tempfile::TempDir::new().unwrap();
        write_config(dir.path(), extra);
        let notify_path = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        let log = std::fs::File::create(dir.path().join("batond.log")).unwrap();
        let batond = workspace_bin("batond");
        let config = config_path(dir.path());
        let mut argv: Vec<&std::ffi::OsStr> = launcher.iter().map(AsRef::as_ref).collect();
        argv.extend([batond.as_os_str(), "--config".as_ref(), config.as_os_str()]);
        let child = Command::new(argv[0])
            .args(&argv[1..])
            .env("NOTIFY_SOCKET", &notify_path)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Self { dir, child, notify }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn client(&self) -> Client {
        Client::new(self.path("baton.sock"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("batond.log")).unwrap_or_default()
    }

    fn signal(&self, signal: Signal) {
        kill(
            Pid::from_raw(i32::try_from(self.child.id()).unwrap()),
            signal,
        )
        .unwrap();
    }

    /// The next notify message.
    async fn next(&self) -> String {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(PATIENCE, self.notify.recv(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no notify message in {PATIENCE:?}; log:\n{}", self.log()))
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Messages until one containing `line`, which is returned last.
    async fn until(&self, line: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let message = self.next().await;
            let done = message.lines().any(|l| l == line);
            seen.push(message);
            if done {
                return seen;
            }
        }
    }

    /// SIGTERM, then the notify messages up to STOPPING=1 and a clean exit.
    async fn stop(mut self) {
        self.signal(Signal::SIGTERM);
        self.until("STOPPING=1").await;
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "batond exited with {status}; log:\n{}",
            self.log()
        );
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_of(message: &str) -> &str {
    message
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or("")
}

#[tokio::test]
async fn ready_after_the_socket_serves_then_watchdog_pings_then_stopping() {
    let watchdog = Duration::from_secs(2);
    let usec = watchdog.as_micros().to_string();
    let service = Service::start("", &[("WATCHDOG_USEC", &usec)], &[]);
    let ready = service.next().await;
    assert!(
        ready.lines().any(|l| l == "READY=1"),
        "first message: {ready:?}"
    );
    assert!(
        status_of(&ready).starts_with("0 nodes, 0/100 workers busy"),
        "{ready:?}"
    );
    // READY=1 means serving: the socket answers and the database exists
    // without any waiting.
    let version: serde_json::Value = service.client().get("/v1").await.unwrap();
    assert_eq!(version["id"], "v1");
    assert!(service.path("baton.db").exists());

    let mut pings = Vec::new();
    while pings.len() < 4 {
        if service.next().await.lines().any(|l| l == "WATCHDOG=1") {
            pings.push(Instant::now());
        }
    }
    for pair in pings.windows(2) {
        let gap = pair[1] - pair[0];
        // Half the timeout is the interval; well inside the timeout, and
        // no flood.
        assert!(gap < watchdog && gap > watchdog / 8, "pings {gap:?} apart");
    }
    service.stop().await;
}

#[tokio::test]
async fn no_watchdog_pings_unless_asked_and_not_for_another_pid() {
    let service = Service::start(
        "",
        &[("WATCHDOG_USEC", "200000"), ("WATCHDOG_PID", "1")],
        &[],
    );
    assert!(service.next().await.contains("READY=1"));
    service.signal(Signal::SIGTERM);
    let messages = service.until("STOPPING=1").await;
    assert!(
        messages.iter().all(|m| !m.contains("WATCHDOG=1")),
        "{messages:?}"
    );
}

async fn workers_max(client: &Client) -> u64 {
    let status: serde_json::Value = client.get("/v1/conductor").await.unwrap();
    status["workers"]["max"].as_u64().unwrap()
}

/// Asks for a missing resource (logged at info, not at warn) and says
/// whether the log shows it.
async fn info_is_logged(service: &Service, marker: &str) -> bool {
    let client = service.client();
    let _ = client
        .get::<serde_json::Value>(&format!("/v1/{marker}"))
        .await;
    // The access log line is written before the response is sent.
    service.log().contains(marker)
}

#[tokio::test]
async fn sighup_applies_a_valid_change_and_keeps_the_config_on_an_invalid_file() {
    let service = Service::start(
        "[conductor]\nworkers = 3\n[log]\nlevel = \"warn\"\n",
        &[],
        &[],
    );
    assert!(service.next().await.contains("READY=1"));
    let client = service.client();
    assert_eq!(workers_max(&client).await, 3);
    assert!(!info_is_logged(&service, "before-reload").await);

    // Two reloadable keys and one that needs a restart.
    write_config(
        service.dir.path(),
        "[conductor]\nworkers = 5\n[log]\nlevel = \"info\"\n",
    );
    let text = std::fs::read_to_string(config_path(service.dir.path())).unwrap();
    let text = text.replacen("[state]", "max_connections = 64\n[state]", 1);
    std::fs::write(config_path(service.dir.path()), text).unwrap();
    service.signal(Signal::SIGHUP);
    let reloading = service.until("RELOADING=1").await.pop().unwrap();
    let usec = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(usec.is_some_and(|u| u > 0), "{reloading:?}");
    let ready = service.until("READY=1").await.pop().unwrap();
    let status = status_of(&ready);
    assert!(
        status.starts_with(
            "config reloaded, 2 key(s) applied, 1 need a restart: api.max_connections"
        ),
        "{status}"
    );
    assert_eq!(workers_max(&client).await, 5);
    assert!(info_is_logged(&service, "after-reload").await);

    // An invalid file: every problem logged, nothing changed.
    std::fs::write(
        config_path(service.dir.path()),
        "[conductor]\nworkers = 0\n[log]\nlevel = \"lots\"\n",
    )
    .unwrap();
    service.signal(Signal::SIGHUP);
    service.until("RELOADING=1").await;
    let ready = service.until("READY=1").await.pop().unwrap();
    assert!(
        status_of(&ready).starts_with("reload failed, previous config kept: 2 problem(s)"),
        "{ready:?}"
    );
    let log = service.log();
    assert!(
        log.contains("conductor.workers") && log.contains("log.level"),
        "{log}"
    );
    assert_eq!(workers_max(&client).await, 5);
    assert!(info_is_logged(&service, "after-bad-reload").await);
    service.stop().await;
}

/// The sync's period is reloadable: a sweep an hour away happens within
/// seconds once a reload shortens it.
#[tokio::test]
async fn sighup_applies_a_new_sync_interval() {
    let service = Service::start(
        "[sync]\ninterval = \"1h\"\nrecovery_interval = \"1h\"\n",
        &[],
        &[],
    );
    assert!(service.next().await.contains("READY=1"));
    let client = service.client();
    let sweeps = |client: Client| async move {
        let status: serde_json::Value = client.get("/v1/conductor").await.unwrap();
        status["last_sweeps"].as_array().map_or(0, Vec::len)
    };
    assert_eq!(sweeps(service.client()).await, 0);
    write_config(
        service.dir.path(),
        "[sync]\ninterval = \"1s\"\nrecovery_interval = \"1h\"\n",
    );
    service.signal(Signal::SIGHUP);
    let ready = service.until("READY=1").await.pop().unwrap();
    assert!(
        status_of(&ready).starts_with("config reloaded, 1 key(s) applied"),
        "{ready:?}"
    );
    wait_until(
        "a sync sweep after the reload",
        Duration::from_secs(10),
        || async { (sweeps(client.clone()).await > 0).then_some(()) },
    )
    .await;
    service.stop().await;
}

#[tokio::test]
async fn serves_on_the_socket_systemd_passes_and_leaves_it_in_place() {
    let dir = tempfile::TempDir::new().unwrap();
    let activated = dir.path().join("activated.sock");
    let listen = format!("--listen={}", activated.display());
    let service = Service::start(
        "",
        &[],
        &["systemd-socket-activate", &listen, "--setenv=NOTIFY_SOCKET"],
    );
    // systemd-socket-activate binds at once and starts batond on the first
    // connection, handing it the listening socket as fd 3.
    let client = Client::new(&activated);
    // Each try is bounded: a connection nobody serves would hang forever.
    let version: serde_json::Value =
        wait_until("batond on the passed socket", PATIENCE, || async {
            let answer = tokio::time::timeout(
                Duration::from_secs(5),
                client.get::<serde_json::Value>("/v1"),
            );
            answer.await.ok().and_then(Result::ok)
        })
        .await;
    assert_eq!(version["id"], "v1");
    assert!(service.next().await.contains("READY=1"));
    assert!(
        !service.path("baton.sock").exists(),
        "batond bound api.socket instead of serving on the passed socket"
    );
    // The log line is written by batond's own thread; wait for it rather
    // than race it.
    let logged = tokio::time::timeout(PATIENCE, async {
        while !service.log().contains("systemd_socket=true") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(logged.is_ok(), "{}", service.log());
    service.stop().await;
    // The socket is systemd's: batond never removes it.
    assert!(activated.exists());
}

#[tokio::test]
async fn listen_fds_for_another_process_are_ignored() {
    let service = Service::start("", &[("LISTEN_FDS", "1"), ("LISTEN_PID", "1")], &[]);
    assert!(service.next().await.contains("READY=1"));
    let version: serde_json::Value = service.client().get("/v1").await.unwrap();
    assert_eq!(version["id"], "v1");
    service.stop().await;
}
