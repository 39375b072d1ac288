//! The rules of `PATCH /v1/nodes/{ident}` (RFC 6902 JSON Patch): which paths
//! an operator may change, and how a patch turns the current node into a new
//! spec.
//!
//! A patch applies to the node's operator-set fields only (the [`NodeSpec`]
//! document). Paths under fields the conductor owns (`/uuid`,
//! `/power_state`, `/target_power_state`, `/reservation`, …) are refused
//! before anything is applied, naming the path.

use baton_state::{Node, NodeSpec};
use json_patch::{Patch, PatchOperation};

/// Top-level fields a patch may touch.
pub const WRITABLE: [&str; 7] = [
    "name",
    "driver",
    "bmc",
    "power_domain",
    "maintenance",
    "maintenance_reason",
    "extra",
];

/// Top-level fields of a node that only the conductor changes.
pub const READ_ONLY: [&str; 14] = [
    "uuid",
    "power_state",
    "target_power_state",
    "boot_device",
    "fault",
    "locked",
    "lock_reason",
    "locked_by",
    "last_error",
    "reservation",
    "reservation_expires_at",
    "created_at",
    "updated_at",
    "links",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("the patch is empty; send a JSON array of operations such as [{{\"op\": \"replace\", \"path\": \"/power_domain\", \"value\": \"rack-2\"}}]")]
    Empty,
    #[error("{path} is read-only{hint}")]
    ReadOnly { path: String, hint: &'static str },
    #[error("{path} is not a node field; writable fields are /{}", WRITABLE.join(", /"))]
    UnknownField { path: String },
    #[error("cannot apply operation {index} ({op} {path}): {reason}")]
    Apply {
        index: usize,
        op: &'static str,
        path: String,
        reason: String,
    },
    #[error("the patched node is not valid: {0}")]
    Invalid(String),
}

/// Refuses a patch that touches any path outside [`WRITABLE`].
pub fn check_paths(patch: &Patch) -> Result<(), PatchError> {
    if patch.0.is_empty() {
        return Err(PatchError::Empty);
    }
    for op in &patch.0 {
        check_path(op.path().as_str())?;
        if let PatchOperation::Move(m) = op {
            check_path(m.from.as_str())?;
        }
        if let PatchOperation::Copy(c) = op {
            check_path(c.from.as_str())?;
        }
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), PatchError> {
    let field = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if WRITABLE.contains(&field) {
        return Ok(());
    }
    if READ_ONLY.contains(&field) {
        let hint = match field {
            "power_state" | "target_power_state" => {
                "; change power with PUT /v1/nodes/{ident}/states/power"
            }
            "reservation" => "; the conductor sets it while an operation runs",
            _ => "",
        };
        return Err(PatchError::ReadOnly {
            path: path.to_owned(),
            hint,
        });
    }
    Err(PatchError::UnknownField {
        path: if path.is_empty() {
            "/".into()
        } else {
            path.to_owned()
        },
    })
}

/// Applies `patch` to the node's spec and returns the new spec, validated.
pub fn apply(node: &Node, patch: &Patch) -> Result<NodeSpec, PatchError> {
    check_paths(patch)?;
    let mut doc = spec_document(&node.spec);
    json_patch::patch(&mut doc, &patch.0).map_err(|e| {
        let op = &patch.0[e.operation.min(patch.0.len().saturating_sub(1))];
        PatchError::Apply {
            index: e.operation,
            op: op_name(op),
            path: e.path.to_string(),
            reason: e.kind.to_string(),
        }
    })?;
    let spec: NodeSpec = serde_path_to_error::deserialize(doc)
        .map_err(|e| PatchError::Invalid(format!("at `{}`: {}", e.path(), e.inner())))?;
    let problems = spec.validate();
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(PatchError::Invalid(list.join("; ")));
    }
    Ok(spec)
}

/// The spec as a JSON document with the real password, so that a patch that
/// does not touch `/bmc/password` keeps it.
fn spec_document(spec: &NodeSpec) -> serde_json::Value {
    let mut doc = serde_json::to_value(spec).unwrap_or_default();
    if let Some(bmc) = doc
        .get_mut("bmc")
        .and_then(serde_json::Value::as_object_mut)
    {
        bmc.insert(
            "password".into(),
            serde_json::Value::String(spec.bmc.password.expose().to_owned()),
        );
    }
    doc
}

fn op_name(op: &PatchOperation) -> &'static str {
    match op {
        PatchOperation::Add(_) => "add",
        PatchOperation::Remove(_) => "remove",
        PatchOperation::Replace(_) => "replace",
        PatchOperation::Move(_) => "move",
        PatchOperation::Copy(_) => "copy",
        PatchOperation::Test(_) => "test",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_state::{Driver, PowerState};

    fn node() -> Node {
        let spec: NodeSpec = serde_json::from_value(serde_json::json!({
            "name": "n1", "driver": "redfish",
            "bmc": {"address": "10.0.0.1", "username": "root", "password": "hunter2"}
        }))
        .unwrap();
        let now = time::OffsetDateTime::now_utc();
        Node {
            uuid: uuid::Uuid::new_v4(),
            spec,
            power_state: Some(PowerState::On),
            target_power_state: None,
            boot_device: None,
            fault: None,
            locked: false,
            lock_reason: None,
            locked_by: None,
            last_error: None,
            reservation: None,
            reservation_expires_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    fn patch(ops: serde_json::Value) -> Patch {
        serde_json::from_value(ops).unwrap()
    }

    #[test]
    fn read_only_paths_are_named() {
        for path in [
            "/uuid",
            "/power_state",
            "/target_power_state",
            "/reservation",
        ] {
            let err = apply(
                &node(),
                &patch(serde_json::json!([{"op": "replace", "path": path, "value": 1}])),
            )
            .unwrap_err();
            assert!(
                matches!(&err, PatchError::ReadOnly { path: p, .. } if p == path),
                "{err}"
            );
            assert!(err.to_string().starts_with(&format!("{path} is read-only")));
        }
        let err = apply(
            &node(),
            &patch(serde_json::json!([{"op": "move", "from": "/uuid", "path": "/name"}])),
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::ReadOnly { .. }));
        let err = apply(
            &node(),
            &patch(serde_json::json!([{"op": "add", "path": "/colour", "value": 1}])),
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::UnknownField { .. }));
        assert_eq!(
            apply(&node(), &Patch(vec![])).unwrap_err(),
            PatchError::Empty
        );
    }

    #[test]
    fn patches_keep_the_password_unless_they_change_it() {
        let spec = apply(
            &node(),
            &patch(serde_json::json!([
                {"op": "replace", "path": "/driver", "value": "ipmi"},
                {"op": "add", "path": "/extra/rack", "value": "r1"},
                {"op": "remove", "path": "/name"}
            ])),
        )
        .unwrap();
        assert_eq!(spec.driver, Driver::Ipmi);
        assert_eq!(spec.name, None);
        assert_eq!(spec.extra["rack"], "r1");
        assert_eq!(spec.bmc.password.expose(), "hunter2");

        let spec = apply(
            &node(),
            &patch(serde_json::json!([{"op": "replace", "path": "/bmc/password", "value": "new"}])),
        )
        .unwrap();
        assert_eq!(spec.bmc.password.expose(), "new");
    }

    #[test]
    fn invalid_results_and_failed_ops_are_explained() {
        let err = apply(
            &node(),
            &patch(serde_json::json!([{"op": "replace", "path": "/driver", "value": "telnet"}])),
        )
        .unwrap_err();
        assert!(
            matches!(err, PatchError::Invalid(ref m) if m.contains("driver")),
            "{err}"
        );
        let err = apply(
            &node(),
            &patch(serde_json::json!([{"op": "remove", "path": "/bmc/nothing"}])),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                PatchError::Apply {
                    index: 0,
                    op: "remove",
                    ..
                }
            ),
            "{err}"
        );
        let err = apply(
            &node(),
            &patch(serde_json::json!([{"op": "replace", "path": "/name", "value": "bad name"}])),
        )
        .unwrap_err();
        assert!(err.to_string().contains("name:"), "{err}");
        let err = apply(
            &node(),
            &patch(serde_json::json!([{"op": "test", "path": "/name", "value": "other"}])),
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::Apply { op: "test", .. }), "{err}");
    }
}
