//! The systemd units and the installer: `systemd-analyze verify` accepts
//! the units without a warning, `systemd-analyze security --offline=yes`
//! rates batond.service at most 2.0, and `scripts/install.sh` stages every
//! file with the installed paths and never overwrites an edited config.
//! `systemd-analyze` comes from Debian's `systemd` package, which
//! `scripts/install-test-deps.sh` installs.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use baton_tests::daemon::{bin_dir, workspace_bin};

/// Highest exposure the service may have (systemd calls ≤ 2.0 "OK").
const MAX_EXPOSURE: f64 = 2.0;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn analyze(args: &[&str]) -> Output {
    Command::new("systemd-analyze").args(args).output().expect(
        "systemd-analyze runs (Debian package systemd; scripts/install-test-deps.sh installs it)",
    )
}

/// The units in a temp dir, the service starting the batond just built.
fn units_with_built_batond(dir: &Path) -> (PathBuf, PathBuf) {
    let service = std::fs::read_to_string(repo().join("systemd/batond.service")).unwrap();
    assert!(service.contains("ExecStart=/usr/bin/batond "), "{service}");
    let service = service.replace(
        "ExecStart=/usr/bin/batond ",
        &format!("ExecStart={} ", workspace_bin("batond").display()),
    );
    let service_path = dir.join("batond.service");
    std::fs::write(&service_path, service).unwrap();
    let socket_path = dir.join("batond.socket");
    std::fs::copy(repo().join("systemd/batond.socket"), &socket_path).unwrap();
    (service_path, socket_path)
}

#[test]
fn units_verify_without_warnings() {
    let dir = tempfile::TempDir::new().unwrap();
    let (service, socket) = units_with_built_batond(dir.path());
    let out = analyze(&[
        "verify",
        service.to_str().unwrap(),
        socket.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    // Unknown keys and bad values are only warnings (exit 0): none allowed.
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warned:\n{stderr}"
    );
}

/// The default BMC password's credential: loaded from a root-only file, with
/// a lone-newline fallback (which batond reads as "no default") so the
/// service starts without the file, under the name batond reads by
/// default. `units_verify_without_warnings` checks the syntax.
#[test]
fn the_service_passes_the_bmc_password_credential_optionally() {
    let service = std::fs::read_to_string(repo().join("systemd/batond.service")).unwrap();
    let id = batond::config::Config::default()
        .bmc
        .default_password_credential;
    assert!(
        service.contains(&format!("\nLoadCredential={id}:/etc/baton/{id}\n")),
        "{service}"
    );
    assert!(
        service.contains(&format!("\nSetCredential={id}:\\n\n")),
        "{service}"
    );
}

#[test]
fn service_exposure_is_at_most_two() {
    let service = repo().join("systemd/batond.service");
    let out = analyze(&["security", "--offline=yes", service.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no exposure level in:\n{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    println!("batond.service exposure {score} (target ≤ {MAX_EXPOSURE})");
    assert!(score <= MAX_EXPOSURE, "{line}\n{stdout}");
}

#[test]
fn sysusers_and_tmpfiles_create_the_user_groups_and_directories() {
    // Both tools work on a scratch root, never on the host.
    let root = tempfile::TempDir::new().unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    let run = |tool: &str, snippet: &str| {
        let out = Command::new(tool)
            .arg(format!("--root={}", root.path().display()))
            .args(if tool == "systemd-tmpfiles" {
                &["--create"][..]
            } else {
                &[]
            })
            .arg(repo().join(snippet))
            .output()
            .unwrap_or_else(|e| panic!("{tool} runs: {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{tool} failed:\n{stderr}");
        assert!(
            !stderr.contains("ignoring") && !stderr.contains("Failed"),
            "{stderr}"
        );
    };
    run("systemd-sysusers", "systemd/sysusers.d/baton.conf");
    let groups = std::fs::read_to_string(root.path().join("etc/group")).unwrap();
    let gid = |name: &str| {
        groups
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:x:")))
            .and_then(|rest| rest.split(':').next())
            .and_then(|g| g.parse::<u32>().ok())
            .unwrap_or_else(|| panic!("group {name} missing:\n{groups}"))
    };
    for group in ["baton-admins", "baton-operators", "baton-readers"] {
        gid(group);
    }
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("baton:") && l.ends_with(":/usr/sbin/nologin")),
        "{passwd}"
    );

    run("systemd-tmpfiles", "systemd/tmpfiles.d/baton.conf");
    let owned = |p: &str| {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(root.path().join(p)).unwrap();
        (meta.permissions().mode() & 0o7777, meta.gid())
    };
    let baton = gid("baton");
    assert_eq!(owned("run/baton"), (0o750, baton));
    assert_eq!(owned("var/lib/baton"), (0o700, baton));
    assert_eq!(owned("etc/baton"), (0o750, baton));
}

fn install(destdir: &Path, prefix: &str) -> Output {
    let out = Command::new("bash")
        .arg(repo().join("scripts/install.sh"))
        .args(["--prefix", prefix, "--no-build", "--destdir"])
        .arg(destdir)
        .arg("--bindir-from")
        .arg(bin_dir())
        .env_remove("DESTDIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "install.sh failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn install_stages_every_file_and_keeps_an_edited_config() {
    let dest = tempfile::TempDir::new().unwrap();
    install(dest.path(), "/opt/baton");
    let at = |p: &str| dest.path().join(p.trim_start_matches('/'));
    let mode = |p: &str| std::fs::metadata(at(p)).unwrap().permissions().mode() & 0o7777;
    for bin in ["batond", "baton"] {
        assert_eq!(mode(&format!("/opt/baton/bin/{bin}")), 0o755);
    }
    let service =
        std::fs::read_to_string(at("/opt/baton/lib/systemd/system/batond.service")).unwrap();
    assert!(
        service.contains("ExecStart=/opt/baton/bin/batond --config /etc/baton/batond.toml"),
        "{service}"
    );
    for file in [
        "/opt/baton/lib/systemd/system/batond.socket",
        "/opt/baton/lib/sysusers.d/baton.conf",
        "/opt/baton/lib/tmpfiles.d/baton.conf",
        "/opt/baton/share/doc/baton/README.md",
        "/opt/baton/share/bash-completion/completions/baton",
        "/opt/baton/share/zsh/vendor-completions/_baton",
        "/opt/baton/share/fish/vendor_completions.d/baton.fish",
    ] {
        assert_eq!(mode(file), 0o644, "{file}");
    }
    let shipped = std::fs::read_to_string(repo().join("config/batond.toml")).unwrap();
    let config = at("/etc/baton/batond.toml");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), shipped);
    assert_eq!(mode("/etc/baton/batond.toml"), 0o640);
    assert_eq!(mode("/etc/baton"), 0o750);

    // An operator's edit survives a reinstall; the defaults go beside it.
    let edited = format!("{shipped}\n# edited\n");
    std::fs::write(&config, &edited).unwrap();
    let out = install(dest.path(), "/opt/baton");
    assert!(String::from_utf8_lossy(&out.stdout).contains("kept your"));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), edited);
    assert_eq!(
        std::fs::read_to_string(at("/etc/baton/batond.toml.dist")).unwrap(),
        shipped
    );
}
