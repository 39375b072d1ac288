//! The rules of `PATCH /v1/nodes/{ident}` (RFC 6902 JSON Patch): which paths
//! an operator may change, and how a patch turns the current node into a new
//! spec.
//!
//! A patch applies to the node's operator-set fields only (the [`NodeSpec`]
//! document). Paths under fields the conductor owns (`/uuid`,
//! `/power_state`, `/target_power_state`, `/reservation`, …) are refused
//! before anything is applied, naming the path.
//!
//! The BMC password is write-only: it may be replaced, never read. A patch
//! may not copy, move or test it (or the whole `/bmc`), and the document the
//! patch runs on holds a one-time placeholder instead of the password, which
//! is put back afterwards if the patch left the placeholder in place.
//!
//! Patches are applied one operation at a time with the document's nesting
//! (iteratively, without recursion) and then its size checked after each, so
//! `copy` cannot blow a node up exponentially, nor nest it so deep that a
//! recursive pass (serializing, cloning, dropping) overflows the stack.
//!
//! In a patch, the mask `******` as the password (what a GET shows) means
//! "keep the current password", so a node read, edited and written back
//! keeps its credentials.

use baton_state::{Node, NodeSpec, MASK, MAX_EXTRA_DEPTH};
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

/// Most operations in one patch.
pub const MAX_OPERATIONS: usize = 100;
/// Largest the patched document may grow (the spec as JSON).
pub const MAX_DOCUMENT_BYTES: usize = 128 * 1024;
/// Deepest the patched document may nest: the node object itself, then
/// `extra` with the levels it may have (arrays and objects count, as in
/// `NodeSpec::validate`).
pub const MAX_DOCUMENT_DEPTH: usize = MAX_EXTRA_DEPTH + 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("the patch has {0} operations; send at most {MAX_OPERATIONS} per request")]
    TooManyOperations(usize),
    #[error("{path} is write-only: it can be replaced but not read, copied, moved or tested")]
    WriteOnly { path: String },
    #[error("operation {index} makes the node larger than {} KiB; keep extra small", MAX_DOCUMENT_BYTES / 1024)]
    TooLarge { index: usize },
    #[error("operation {index} nests the node more than {MAX_DOCUMENT_DEPTH} levels deep; extra may nest at most {MAX_EXTRA_DEPTH} levels")]
    TooDeep { index: usize },
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
    if patch.0.len() > MAX_OPERATIONS {
        return Err(PatchError::TooManyOperations(patch.0.len()));
    }
    for op in &patch.0 {
        check_path(op.path().as_str())?;
        let read_from = match op {
            PatchOperation::Move(m) => Some(m.from.as_str()),
            PatchOperation::Copy(c) => Some(c.from.as_str()),
            PatchOperation::Test(t) => Some(t.path.as_str()),
            _ => None,
        };
        if let Some(from) = read_from {
            check_path(from)?;
            check_readable(from)?;
        }
    }
    Ok(())
}

/// Paths whose value includes the password cannot be read by a patch.
fn check_readable(path: &str) -> Result<(), PatchError> {
    let reads_password =
        path == "/bmc" || path == "/bmc/password" || path.starts_with("/bmc/password/");
    if reads_password {
        Err(PatchError::WriteOnly {
            path: "/bmc/password".into(),
        })
    } else {
        Ok(())
    }
}

fn check_path(path: &str) -> Result<(), PatchError> {
    let field = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if WRITABLE.contains(&field) {
        return Ok(());
    }
    if READ_ONLY.contains(&field) {
        let hint = match field {
            "power_state" | "target_power_state" => "; the conductor sets it from the BMC",
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

/// Applies `patch` to the node's spec and returns the new spec, validated;
/// a node left without a password needs `default_password`.
pub fn apply(node: &Node, patch: &Patch, default_password: bool) -> Result<NodeSpec, PatchError> {
    check_paths(patch)?;
    let placeholder = format!("{MASK}{}", uuid::Uuid::new_v4().simple());
    let mut doc = spec_document(&node.spec, &placeholder);
    for (index, op) in patch.0.iter().enumerate() {
        json_patch::patch(&mut doc, std::slice::from_ref(op)).map_err(|e| PatchError::Apply {
            index,
            op: op_name(op),
            path: e.path.to_string(),
            reason: e.kind.to_string(),
        })?;
        // Depth first: serializing to measure the size recurses.
        if nests_deeper_than(&doc, MAX_DOCUMENT_DEPTH) {
            return Err(PatchError::TooDeep { index });
        }
        let size = serde_json::to_vec(&doc).map_or(usize::MAX, |v| v.len());
        if size > MAX_DOCUMENT_BYTES {
            return Err(PatchError::TooLarge { index });
        }
    }
    let mut spec: NodeSpec = serde_path_to_error::deserialize(doc).map_err(|e| {
        PatchError::Invalid(format!(
            "at `{}`: {}",
            e.path(),
            crate::messages::humanize(&e.inner().to_string())
        ))
    })?;
    if spec
        .bmc
        .password
        .as_ref()
        .is_some_and(|p| [placeholder.as_str(), MASK].contains(&p.expose()))
    {
        spec.bmc.password.clone_from(&node.spec.bmc.password);
    }
    if !spec.maintenance
        && node.spec.maintenance_reason.is_some()
        && spec.maintenance_reason == node.spec.maintenance_reason
    {
        // Leaving maintenance drops the reason it was entered for.
        spec.maintenance_reason = None;
    }
    let mut problems = spec.validate();
    if !default_password {
        problems.extend(spec.require_password());
    }
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(PatchError::Invalid(list.join("; ")));
    }
    Ok(spec)
}

/// Whether `value` nests more than `limit` arrays and objects deep; walks
/// with its own stack, so any depth is safe to measure.
fn nests_deeper_than(value: &serde_json::Value, limit: usize) -> bool {
    let mut stack = vec![(value, 1)];
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &serde_json::Value>> = match value {
            serde_json::Value::Array(items) => Box::new(items.iter()),
            serde_json::Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth > limit {
            return true;
        }
        stack.extend(children.map(|child| (child, depth + 1)));
    }
    false
}

/// The spec as a JSON document, with `placeholder` where the password goes
/// (when the node has one stored).
fn spec_document(spec: &NodeSpec, placeholder: &str) -> serde_json::Value {
    let mut doc = serde_json::to_value(spec).unwrap_or_default();
    if spec.bmc.password.is_none() {
        return doc;
    }
    if let Some(bmc) = doc
        .get_mut("bmc")
        .and_then(serde_json::Value::as_object_mut)
    {
        bmc.insert(
            "password".into(),
            serde_json::Value::String(placeholder.to_owned()),
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

    /// Applies with no default BMC password.
    fn apply(node: &Node, patch: &Patch) -> Result<NodeSpec, PatchError> {
        super::apply(node, patch, false)
    }

    fn stored(spec: &NodeSpec) -> &str {
        spec.bmc
            .password
            .as_ref()
            .map_or("<none>", baton_state::Secret::expose)
    }

    fn node() -> Node {
        let spec: NodeSpec = serde_json::from_value(serde_json::json!({
            "name": "n1", "driver": "redfish",
            "bmc": {"address": "10.0.0.1", "username": "root", "password": "hunter2"}
        }))
        .unwrap();
        Node {
            power_state: Some(PowerState::On),
            ..Node::enrolled(spec)
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
        assert_eq!(stored(&spec), "hunter2");

        let spec = apply(
            &node(),
            &patch(serde_json::json!([{"op": "replace", "path": "/bmc/password", "value": "new"}])),
        )
        .unwrap();
        assert_eq!(stored(&spec), "new");
    }

    #[test]
    fn the_password_cannot_be_read_by_a_patch() {
        for ops in [
            serde_json::json!([{"op": "copy", "from": "/bmc", "path": "/extra/b"}]),
            serde_json::json!([{"op": "copy", "from": "/bmc/password", "path": "/name"}]),
            serde_json::json!([{"op": "move", "from": "/bmc/password", "path": "/power_domain"}]),
            serde_json::json!([{"op": "test", "path": "/bmc/password", "value": "hunter2"}]),
            serde_json::json!([{"op": "test", "path": "/bmc", "value": {}}]),
        ] {
            let err = apply(&node(), &patch(ops.clone())).unwrap_err();
            assert!(matches!(err, PatchError::WriteOnly { .. }), "{ops}: {err}");
        }
        // Copying other BMC fields is fine and never exposes the password.
        let spec = apply(
            &node(),
            &patch(
                serde_json::json!([{"op": "copy", "from": "/bmc/username", "path": "/extra/u"}]),
            ),
        )
        .unwrap();
        assert_eq!(spec.extra["u"], "root");
        assert_eq!(stored(&spec), "hunter2");
    }

    #[test]
    fn patches_cannot_grow_a_node_without_bound() {
        let ops: Vec<serde_json::Value> = (0..30)
            .map(|i| serde_json::json!({"op": "copy", "from": "/extra", "path": format!("/extra/c{i}")}))
            .collect();
        let mut first =
            vec![serde_json::json!({"op": "add", "path": "/extra/pad", "value": "x".repeat(200)})];
        first.extend(ops);
        let err = apply(&node(), &patch(serde_json::Value::Array(first))).unwrap_err();
        assert!(matches!(err, PatchError::TooLarge { .. }), "{err}");
        let many: Vec<serde_json::Value> = (0..=MAX_OPERATIONS)
            .map(|_| serde_json::json!({"op": "test", "path": "/name", "value": "n1"}))
            .collect();
        let err = apply(&node(), &patch(serde_json::Value::Array(many))).unwrap_err();
        assert_eq!(err, PatchError::TooManyOperations(MAX_OPERATIONS + 1));
    }

    /// Each `copy` of `/extra/a` into the innermost object of its own chain
    /// doubles the nesting: from 10 levels, ten copies reach 10 240.
    fn doubling_copies() -> Patch {
        let mut chain = serde_json::json!({});
        for _ in 0..10 {
            chain = serde_json::json!({ "a": chain });
        }
        let mut ops = vec![serde_json::json!({"op": "add", "path": "/extra/a", "value": chain})];
        let mut depth = 10;
        for _ in 0..10 {
            let inside = "/a".repeat(depth);
            ops.push(serde_json::json!({"op": "copy", "from": "/extra/a", "path": format!("/extra/a{inside}")}));
            depth *= 2;
        }
        patch(serde_json::Value::Array(ops))
    }

    #[test]
    fn copies_cannot_nest_a_node_without_bound() {
        let err = apply(&node(), &doubling_copies()).unwrap_err();
        assert_eq!(err, PatchError::TooDeep { index: 1 });
        let mut deep = serde_json::json!(1);
        for _ in 0..200 {
            deep = serde_json::json!([deep]);
        }
        assert!(nests_deeper_than(&deep, 199));
        assert!(!nests_deeper_than(&deep, 200));
        assert!(!nests_deeper_than(&serde_json::json!({"a": [1, {}]}), 3));
        assert!(nests_deeper_than(
            &serde_json::json!({"a": [1, {"b": []}]}),
            3
        ));
    }

    #[test]
    fn the_mask_as_password_keeps_the_current_one() {
        let mut bmc = serde_json::to_value(&node().spec.bmc).unwrap();
        assert_eq!(bmc["password"], MASK, "what a GET shows");
        bmc["port"] = 8443.into();
        let spec = apply(
            &node(),
            &patch(serde_json::json!([{"op": "replace", "path": "/bmc", "value": bmc}])),
        )
        .unwrap();
        assert_eq!(spec.bmc.port, Some(8443));
        assert_eq!(stored(&spec), "hunter2");
        let spec = apply(
            &node(),
            &patch(serde_json::json!([{"op": "replace", "path": "/bmc/password", "value": MASK}])),
        )
        .unwrap();
        assert_eq!(stored(&spec), "hunter2");
    }

    #[test]
    fn a_bad_password_value_is_not_echoed() {
        for value in [serde_json::json!(31_415_926), serde_json::json!(2.718_5)] {
            let err = apply(
                &node(),
                &patch(
                    serde_json::json!([{"op": "replace", "path": "/bmc/password", "value": value}]),
                ),
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("bmc.password"), "{err}");
            assert!(!err.contains("31415926") && !err.contains("2.718"), "{err}");
        }
    }

    #[test]
    fn leaving_maintenance_drops_its_reason() {
        let mut n = node();
        n.spec.maintenance = true;
        n.spec.maintenance_reason = Some("disk swap".into());
        let spec = apply(
            &n,
            &patch(serde_json::json!([{"op": "replace", "path": "/maintenance", "value": false}])),
        )
        .unwrap();
        assert_eq!(spec.maintenance_reason, None);
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
