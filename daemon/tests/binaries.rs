//! The two binaries start, print help and version, and report usage errors
//! with exit code 2. (This test also makes `cargo test` build them for the
//! end-to-end suite in `tests/`.)

use std::process::Command;

fn run(bin: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(bin).args(args).output().expect("binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn baton_help_version_and_usage_errors() {
    let bin = env!("CARGO_BIN_EXE_baton");
    let (code, out, _) = run(bin, &["--help"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("node") && out.contains("conductor") && out.contains("--socket"));
    let (code, out, _) = run(bin, &["--version"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("baton "));
    let (code, _, err) = run(bin, &["node", "create", "--driver", "ipmi"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--address"), "{err}");
}

#[test]
fn batond_help_and_usage_errors() {
    let bin = env!("CARGO_BIN_EXE_batond");
    let (code, out, _) = run(bin, &["--help"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("--check-config"));
    let (code, _, err) = run(bin, &["--config", "a.toml", "--check-config", "b.toml"]);
    assert_eq!(code, Some(2), "{err}");
}
