//! The README's examples work as written on the demo: `./demo.sh` (the real
//! script, run in a temp copy of the files it needs, with the binaries this
//! build made standing in for `target/release`), then the commands of its
//! banner, of the README's CLI section and of its API section, taken from the
//! README itself so the test breaks when the README drifts. Also: demo.sh
//! builds exactly what `cargo build --release --workspace` builds.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use baton_tests::daemon::{bin_dir, wait_until};
use batond::api::types::{NodeList, NodeSummary};
use batond::client::Client;
use tempfile::TempDir;

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn readme() -> String {
    std::fs::read_to_string(repo_file("README.md")).unwrap()
}

/// The first ```sh block after the line `heading`.
fn sh_block(text: &str, heading: &str) -> String {
    let after = text
        .split_once(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README has no {heading:?} section"))
        .1;
    let block = after
        .split_once("```sh\n")
        .unwrap_or_else(|| panic!("{heading}: no sh block"))
        .1;
    block.split_once("```").unwrap().0.to_owned()
}

/// Shell commands of a block: continuation lines joined, blank and comment
/// lines dropped.
fn commands(block: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        let line = line.trim();
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

/// `export A=1 B=2`, `S=x` or `cd DIR`: lines that set up the shell for the
/// commands after them rather than run one.
fn is_setup(command: &str) -> bool {
    if command.starts_with("cd ") {
        return true;
    }
    let words = command.strip_prefix("export ").unwrap_or(command);
    words.split_whitespace().all(|w| {
        w.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    })
}

/// `./demo.sh` running in a temp directory; stopped (SIGTERM, as Ctrl-C
/// would) on drop.
struct Demo {
    root: TempDir,
    child: Child,
    banner: String,
}

impl Demo {
    fn start() -> Self {
        let root = TempDir::new().unwrap();
        std::fs::copy(repo_file("demo.sh"), root.path().join("demo.sh")).unwrap();
        std::fs::create_dir(root.path().join("config")).unwrap();
        std::fs::copy(
            repo_file("config/demo.toml"),
            root.path().join("config/demo.toml"),
        )
        .unwrap();
        std::fs::create_dir(root.path().join("target")).unwrap();
        std::os::unix::fs::symlink(bin_dir(), root.path().join("target/release")).unwrap();
        let control_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("bash")
            .arg(root.path().join("demo.sh"))
            .current_dir(root.path())
            .env("DEMO_BIN", "target/release")
            .env("DEMO_CONTROL_PORT", control_port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut demo = Demo {
            root,
            child,
            banner: String::new(),
        };
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.starts_with("Press Ctrl-C") => return demo,
                Ok(line) => {
                    demo.banner.push_str(&line);
                    demo.banner.push('\n');
                }
                Err(e) => panic!("demo.sh did not start ({e}):\n{}", demo.logs()),
            }
        }
    }

    fn logs(&self) -> String {
        let dir = self.root.path().join("demo");
        ["batond.log", "hwsim.log", "hwsim-spare.log"]
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
                format!("--- {f}\n{text}")
            })
            .collect()
    }

    /// Runs `command` in bash after `setup`, from the demo's root, as a
    /// user's shell would; returns (exit code, stdout, stderr).
    fn run(&self, setup: &[String], command: &str) -> (i32, String, String) {
        // curl reports its HTTP status last, so a 4xx is seen as a failure.
        let script = format!(
            "curl() {{ command curl --silent --show-error --write-out '\\nHTTP %{{http_code}}\\n' \"$@\"; }}\n\
             {}\n{command}\n",
            setup.join("\n")
        );
        let output = Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(self.root.path())
            .env_remove("BATON_SOCKET")
            .env_remove("BATON_BMC_PASSWORD")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Runs every command, in order, checking that each did its job.
    fn run_all(&self, what: &str, commands: &[String]) -> usize {
        let mut setup = Vec::new();
        let mut ran = 0;
        for command in commands {
            if is_setup(command) {
                setup.push(command.clone());
                continue;
            }
            let (code, out, err) = self.run(&setup, command);
            let context = format!("{what}: `{command}` exited {code}\n{out}\n{err}");
            assert_eq!(code, 0, "{context}");
            if command.contains("curl ") {
                let status = out.lines().last().unwrap_or_default();
                assert!(status.starts_with("HTTP 2"), "{context}");
            }
            if command.starts_with("baton node list") {
                assert!(out.lines().count() >= 2, "lists no node: {context}");
            }
            ran += 1;
        }
        ran
    }
}

impl Demo {
    /// Waits until no node has a power change pending.
    async fn settle(&self) {
        let client = Client::new(self.root.path().join("demo/baton.sock"));
        wait_until(
            "the demo's nodes to settle",
            Duration::from_secs(60),
            || async {
                let page: NodeList<NodeSummary> = client.get("/v1/nodes").await.ok()?;
                page.nodes
                    .iter()
                    .all(|n| n.target_power_state.is_none())
                    .then_some(())
            },
        )
        .await;
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_readme_examples_work_as_written_on_the_demo() {
    let demo = Demo::start();
    let Some((_, tried)) = demo.banner.split_once("Try, in another terminal") else {
        panic!("demo.sh printed no commands to try:\n{}", demo.banner);
    };
    // The commands start on the next line and end at the first blank one.
    let tried = tried.split_once('\n').map_or("", |(_, rest)| rest);
    let banner = tried.split("\n\n").next().unwrap_or(tried);
    let text = readme();
    let blocks = [
        ("demo.sh's banner", commands(banner)),
        ("README, CLI", commands(&sh_block(&text, "## CLI"))),
        ("README, API", commands(&sh_block(&text, "## API"))),
    ];
    for (what, commands) in &blocks {
        let ran = demo.run_all(what, commands);
        assert!(ran >= 4, "{what}: only {ran} commands found: {commands:#?}");
        // A reader takes a moment between sections; power changes a
        // section started without waiting end meanwhile.
        demo.settle().await;
    }
    // What the examples did is what they say: the spare servers were
    // imported by the API example after the CLI example deleted them.
    let (code, out, err) = demo.run(
        &blocks[1].1[..1],
        "baton --json node list --power-domain rack-1 | grep -c '\"name\": \"spare-'",
    );
    assert_eq!((code, out.trim()), (0, "4"), "{err}\n{}", demo.logs());
}

#[test]
fn block_parsing_joins_lines_and_spots_setup() {
    let block = "# comment\nexport A=1 B=$PWD/x\nbaton a \\\n    --b c   # note\n\nS=x\n";
    assert_eq!(
        commands(block),
        ["export A=1 B=$PWD/x", "baton a --b c   # note", "S=x"]
    );
    assert!(is_setup("export A=1 B=$PWD/x") && is_setup("S=x") && is_setup("cd /tmp"));
    assert!(!is_setup("BATON_BMC_PASSWORD=... baton node create"));
    assert!(!is_setup("baton node list"));
}

/// `./demo.sh` must not rebuild what `cargo build --release --workspace`
/// built: with the same package selection and features, cargo finds every
/// unit fresh. Another selection (`-p batond -p baton-hwsim`) unifies
/// features differently and rebuilds dependencies.
#[test]
fn demo_builds_exactly_the_release_workspace() {
    let script = std::fs::read_to_string(repo_file("demo.sh")).unwrap();
    let builds: Vec<&str> = script
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("cargo "))
        .collect();
    assert_eq!(builds.len(), 1, "{builds:?}");
    let mut words: Vec<&str> = builds[0].split_whitespace().collect();
    // Flags that change output, not what is built.
    words.retain(|w| !matches!(*w, "--quiet" | "-q" | "--locked" | "--offline"));
    assert_eq!(words, ["cargo", "build", "--release", "--workspace"]);
}
