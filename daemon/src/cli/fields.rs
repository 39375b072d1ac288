//! Turning the CLI's `PATH=VALUE` and `KEY=VALUE` arguments into JSON with
//! the type each node field has, so `name=123`, `power_domain=2` and a
//! numeric password stay text, `bmc/port=623` is a number, and
//! `--extra k=7` on create stores what `set extra/k=7` stores.
//!
//! The BMC password is never taken from the command line (other users can
//! read it in `ps`): it comes from `BATON_BMC_PASSWORD` or stdin
//! (`--password-stdin`), and no error here repeats an argument that may hold it.

use std::io::Read;

use serde_json::Value;

use crate::messages::clip;

/// The path of the BMC password, the one write-only field.
pub const PASSWORD_PATH: &str = "bmc/password";
/// The path of the file batond reads the password from, the alternative to it.
pub const PASSWORD_FILE_PATH: &str = "bmc/password_file";
/// The environment variable the password is read from.
pub const PASSWORD_ENV: &str = "BATON_BMC_PASSWORD";

/// How a field's VALUE is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Always a JSON string, whatever it looks like.
    Text,
    /// A TCP/UDP port, 1–65535.
    Port,
    /// `true` or `false`.
    Bool,
    /// Free-form (`extra/*`, whole objects): JSON when it parses, else text.
    Json,
}

/// Node fields whose value is text (the model's `String` fields).
const TEXT_FIELDS: [&str; 10] = [
    "name",
    "driver",
    "power_domain",
    "maintenance_reason",
    "bmc/address",
    "bmc/username",
    PASSWORD_PATH,
    PASSWORD_FILE_PATH,
    "bmc/system_id",
    "bmc/ca_file",
];
const BOOL_FIELDS: [&str; 2] = ["maintenance", "bmc/verify_tls"];
const PORT_FIELDS: [&str; 1] = ["bmc/port"];

/// `bmc/port` or `/bmc/port` → `bmc/port`.
pub fn normalize(path: &str) -> &str {
    path.trim_start_matches('/')
}

/// The JSON Pointer of a CLI path: `bmc/port` → `/bmc/port`.
pub fn pointer(path: &str) -> String {
    format!("/{}", normalize(path))
}

pub fn field_kind(path: &str) -> FieldKind {
    let path = normalize(path);
    if TEXT_FIELDS.contains(&path) {
        FieldKind::Text
    } else if BOOL_FIELDS.contains(&path) {
        FieldKind::Bool
    } else if PORT_FIELDS.contains(&path) {
        FieldKind::Port
    } else {
        FieldKind::Json
    }
}

/// Reads `raw` as the value of the field at `path`.
pub fn typed_value(path: &str, raw: &str) -> Result<Value, String> {
    match field_kind(path) {
        FieldKind::Text => Ok(Value::String(raw.to_owned())),
        FieldKind::Port => raw
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .map(Value::from)
            .ok_or_else(|| {
                format!(
                    "{} must be a port number from 1 to 65535, got {:?}",
                    normalize(path),
                    clip(raw, 32)
                )
            }),
        FieldKind::Bool => match raw {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!(
                "{} must be true or false, got {:?}",
                normalize(path),
                clip(raw, 32)
            )),
        },
        FieldKind::Json => {
            Ok(serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned())))
        }
    }
}

/// An argument as it may be quoted in an error: never one that could hold
/// the password.
pub fn quote_arg(arg: &str) -> String {
    if arg.to_ascii_lowercase().contains("pass") {
        "an argument naming the password".to_owned()
    } else {
        format!("{:?}", clip(arg, 64))
    }
}

fn password_on_argv() -> String {
    format!(
        "the BMC password is not taken on the command line, where other users can read it; \
         set {PASSWORD_ENV} and name the bare path (`baton node set NODE {PASSWORD_PATH}`), \
         or pipe it to `baton node set NODE --password-stdin`"
    )
}

/// What one `PATH=VALUE` (or bare `bmc/password`) argument of `node set` asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Set the field at `path` to `value`.
    Set { path: String, value: Value },
    /// Set the BMC password from the environment or stdin.
    Password,
}

pub fn parse_change(arg: &str) -> Result<Change, String> {
    let Some((path, raw)) = arg.split_once('=') else {
        if normalize(arg) == PASSWORD_PATH {
            return Ok(Change::Password);
        }
        return Err(format!(
            "{} is not PATH=VALUE (e.g. power_domain=rack-2)",
            quote_arg(arg)
        ));
    };
    let path = normalize(path);
    if path.is_empty() {
        return Err(format!("{} has an empty PATH", quote_arg(arg)));
    }
    if path == PASSWORD_PATH {
        return Err(password_on_argv());
    }
    let value = typed_value(path, raw)?;
    if path == "bmc" && value.get("password").is_some() {
        return Err(password_on_argv());
    }
    Ok(Change::Set {
        path: path.to_owned(),
        value,
    })
}

/// `--extra KEY=VALUE` of `node create`: read as `set extra/KEY=VALUE` is.
pub fn parse_extra(arg: &str) -> Result<(String, Value), String> {
    let (key, raw) = arg
        .split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("--extra {} is not KEY=VALUE", quote_arg(arg)))?;
    Ok((key.to_owned(), typed_value(&format!("extra/{key}"), raw)?))
}

/// The BMC password from stdin (when `from_stdin`) or `BATON_BMC_PASSWORD`.
pub fn read_password(from_stdin: bool) -> Result<String, String> {
    if from_stdin {
        return password_from_stdin();
    }
    match std::env::var(PASSWORD_ENV) {
        Ok(pw) if !pw.is_empty() => Ok(pw),
        Ok(_) | Err(std::env::VarError::NotPresent) => Err(format!(
            "no BMC password: set {PASSWORD_ENV}, or pipe it in with --password-stdin"
        )),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{PASSWORD_ENV} is not valid UTF-8")),
    }
}

/// Longest password read from stdin.
const MAX_PASSWORD_BYTES: u64 = 4096;

fn password_from_stdin() -> Result<String, String> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .take(MAX_PASSWORD_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the BMC password from stdin: {e}"))?;
    if bytes.len() as u64 > MAX_PASSWORD_BYTES {
        return Err(format!(
            "the password on stdin is longer than {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| "the password on stdin is not valid UTF-8".to_owned())?;
    let password = strip_line_end(&text);
    if password.is_empty() {
        return Err("stdin held no password (--password-stdin reads it from stdin)".to_owned());
    }
    Ok(password.to_owned())
}

/// Drops one trailing newline, as `echo` and `pass` add one.
fn strip_line_end(text: &str) -> &str {
    text.strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_state::NodeSpec;

    fn set(arg: &str) -> Value {
        match parse_change(arg).unwrap() {
            Change::Set { value, .. } => value,
            Change::Password => panic!("{arg} asked for the password"),
        }
    }

    #[test]
    fn text_fields_stay_text() {
        assert_eq!(set("name=123"), "123");
        assert_eq!(set("power_domain=2"), "2");
        assert_eq!(set("bmc/username=true"), "true");
        assert_eq!(set("/maintenance_reason=null"), "null");
        assert_eq!(set("bmc/port=623"), 623);
        assert_eq!(set("maintenance=true"), true);
        assert_eq!(set("extra/slot=7"), 7);
        assert_eq!(set("extra/tags=[\"a\"]"), serde_json::json!(["a"]));
        assert_eq!(set("extra/owner=ops"), "ops");
        assert_eq!(set("extra/a="), "");
    }

    #[test]
    fn extra_on_create_is_typed_like_set() {
        for raw in ["7", "true", "ops", "\"7\"", "{\"a\":1}", ""] {
            let (k, v) = parse_extra(&format!("k={raw}")).unwrap();
            assert_eq!(k, "k");
            assert_eq!(v, set(&format!("extra/k={raw}")), "{raw}");
        }
        assert!(parse_extra("=7").is_err());
        assert!(parse_extra("k").is_err());
    }

    #[test]
    fn bad_values_are_named() {
        for bad in [
            "bmc/port=0",
            "bmc/port=70000",
            "bmc/port=x",
            "maintenance=yes",
        ] {
            assert!(parse_change(bad).is_err(), "{bad}");
        }
        assert!(parse_change("power_domain").is_err());
        assert!(parse_change("=x").is_err());
    }

    #[test]
    fn the_password_never_comes_from_argv_or_shows_in_errors() {
        assert_eq!(parse_change("bmc/password").unwrap(), Change::Password);
        assert_eq!(parse_change("/bmc/password").unwrap(), Change::Password);
        for arg in [
            "bmc/password=31415926",
            "/bmc/password=s3cr3t",
            "bmc={\"address\":\"h\",\"username\":\"u\",\"password\":\"s3cr3t\"}",
        ] {
            let err = parse_change(arg).unwrap_err();
            assert!(err.contains(PASSWORD_ENV), "{err}");
            assert!(
                !err.contains("31415926") && !err.contains("s3cr3t"),
                "{err}"
            );
        }
        let err = parse_change("bmc/password:s3cr3t").unwrap_err();
        assert!(!err.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn line_ends_are_dropped_once() {
        assert_eq!(strip_line_end("pw\n"), "pw");
        assert_eq!(strip_line_end("pw\r\n"), "pw");
        assert_eq!(strip_line_end("pw\n\n"), "pw\n");
        assert_eq!(strip_line_end("pw"), "pw");
    }

    /// Every leaf of a node spec is read with the kind its model type has, so
    /// a new text field cannot silently become JSON-if-it-parses.
    #[test]
    fn kinds_match_the_node_model() {
        let spec: NodeSpec = serde_json::from_value(serde_json::json!({
            "name": "n", "driver": "redfish", "power_domain": "p",
            "maintenance": false, "maintenance_reason": "r",
            "bmc": {"address": "a", "port": 1, "username": "u", "password": "p",
                    "system_id": "s", "verify_tls": true, "ca_file": "c"},
            "extra": {}
        }))
        .unwrap();
        let mut doc = serde_json::to_value(&spec).unwrap();
        // The model masks the password on output; it is a string either way.
        doc["bmc"]["password"] = Value::String("p".into());
        let mut leaves = Vec::new();
        collect_leaves("", &doc, &mut leaves);
        assert!(leaves.len() >= 12, "{leaves:?}");
        for (path, value) in leaves {
            let expected = match value {
                Value::String(_) => FieldKind::Text,
                Value::Bool(_) => FieldKind::Bool,
                Value::Number(_) => FieldKind::Port,
                _ => FieldKind::Json,
            };
            assert_eq!(field_kind(&path), expected, "{path}");
        }
    }

    fn collect_leaves(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
        match value {
            Value::Object(map) if prefix != "extra" => {
                for (k, v) in map {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}/{k}")
                    };
                    collect_leaves(&path, v, out);
                }
            }
            _ => out.push((prefix.to_owned(), value.clone())),
        }
    }
}
