//! SQL for the `nodes` table: row mapping, insert (single and bulk), lookup by
//! uuid or name, filtered keyset paging, spec updates, deletion and counts.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::LazyLock;

use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Row};
use uuid::Uuid;

use std::time::Duration;

use crate::model::{
    Bmc, Driver, Node, NodeFilter, NodeIdent, NodeSpec, PowerState, PowerStateCounts, Secret,
};
use crate::operation::{ConductorState, NodeUpdate, OpPhase, Operation, PowerVerb, Transitions};
use crate::{time_fmt, DuplicateName, StoreError};

const COLUMNS: &str = "uuid, name, driver, bmc_address, bmc_port, bmc_username, bmc_password, \
     bmc_system_id, bmc_verify_tls, bmc_ca_file, power_domain, power_state, target_power_state, \
     boot_device, maintenance, maintenance_reason, fault, locked, lock_reason, locked_by, \
     last_error, reservation, reservation_expires_at, created_at, updated_at, extra, \
     op_verb, op_request_id, op_boot_first, op_timeout_ms, op_phase, op_requested_at, \
     sync_failures, power_on_ms, power_off_ms, power_state_unsure, op_sub_job, \
     bmc_password_file, bmc_password_stored";

fn corrupt(what: &str, value: &str) -> StoreError {
    let shown: String = value.chars().take(64).collect();
    let cut = if shown.len() < value.len() { "…" } else { "" };
    StoreError::Corrupt(format!("{what} {shown:?}{cut}"))
}

fn parse_power(value: Option<String>) -> Result<Option<PowerState>, StoreError> {
    value
        .map(|s| PowerState::parse(&s).ok_or_else(|| corrupt("power state", &s)))
        .transpose()
}

/// Raw column values; decoding happens after rusqlite is done with the row so
/// decoding errors stay typed.
struct RawNode {
    uuid: String,
    name: Option<String>,
    driver: String,
    bmc_address: String,
    bmc_port: Option<u16>,
    bmc_username: String,
    bmc_password: String,
    bmc_system_id: Option<String>,
    bmc_verify_tls: bool,
    bmc_ca_file: Option<String>,
    power_domain: Option<String>,
    power_state: Option<String>,
    target_power_state: Option<String>,
    boot_device: Option<String>,
    maintenance: bool,
    maintenance_reason: Option<String>,
    fault: Option<String>,
    locked: bool,
    lock_reason: Option<String>,
    locked_by: Option<String>,
    last_error: Option<String>,
    reservation: Option<String>,
    reservation_expires_at: Option<String>,
    created_at: String,
    updated_at: String,
    extra: String,
    op_verb: Option<String>,
    op_request_id: Option<String>,
    op_boot_first: Option<String>,
    op_timeout_ms: Option<i64>,
    op_phase: Option<String>,
    op_requested_at: Option<String>,
    sync_failures: u32,
    power_on_ms: Option<u32>,
    power_off_ms: Option<u32>,
    power_state_unsure: bool,
    op_sub_job: Option<String>,
    bmc_password_file: Option<String>,
    /// False when the node has no password of its own in the database
    /// (`bmc_password` is then empty and means nothing).
    bmc_password_stored: bool,
}

impl RawNode {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            uuid: row.get(0)?,
            name: row.get(1)?,
            driver: row.get(2)?,
            bmc_address: row.get(3)?,
            bmc_port: row.get(4)?,
            bmc_username: row.get(5)?,
            bmc_password: row.get(6)?,
            bmc_system_id: row.get(7)?,
            bmc_verify_tls: row.get(8)?,
            bmc_ca_file: row.get(9)?,
            power_domain: row.get(10)?,
            power_state: row.get(11)?,
            target_power_state: row.get(12)?,
            boot_device: row.get(13)?,
            maintenance: row.get(14)?,
            maintenance_reason: row.get(15)?,
            fault: row.get(16)?,
            locked: row.get(17)?,
            lock_reason: row.get(18)?,
            locked_by: row.get(19)?,
            last_error: row.get(20)?,
            reservation: row.get(21)?,
            reservation_expires_at: row.get(22)?,
            created_at: row.get(23)?,
            updated_at: row.get(24)?,
            extra: row.get(25)?,
            op_verb: row.get(26)?,
            op_request_id: row.get(27)?,
            op_boot_first: row.get(28)?,
            op_timeout_ms: row.get(29)?,
            op_phase: row.get(30)?,
            op_requested_at: row.get(31)?,
            sync_failures: row.get(32)?,
            power_on_ms: row.get(33)?,
            power_off_ms: row.get(34)?,
            power_state_unsure: row.get(35)?,
            op_sub_job: row.get(36)?,
            bmc_password_file: row.get(37)?,
            bmc_password_stored: row.get(38)?,
        })
    }

    /// The operation behind the target, when the node has one. A target
    /// set by an older batond (no verb) is driven as a plain power on/off.
    fn operation(&self, target: Option<PowerState>) -> Result<Option<Operation>, StoreError> {
        let Some(target) = target else {
            return Ok(None);
        };
        let verb = match &self.op_verb {
            Some(v) => PowerVerb::parse(v).ok_or_else(|| corrupt("operation verb", v))?,
            None if target == PowerState::Off => PowerVerb::Off,
            None => PowerVerb::On,
        };
        let phase = match &self.op_phase {
            Some(p) => OpPhase::parse(p).ok_or_else(|| corrupt("operation phase", p))?,
            None => OpPhase::Queued,
        };
        Ok(Some(Operation {
            verb,
            request_id: self.op_request_id.clone().unwrap_or_default(),
            boot_first: self.op_boot_first.clone(),
            timeout: self
                .op_timeout_ms
                .and_then(|ms| u64::try_from(ms).ok())
                .map(Duration::from_millis),
            phase,
            requested_at: match &self.op_requested_at {
                Some(t) => time_fmt::decode(t)?,
                None => time_fmt::now(),
            },
            sub_job: self.op_sub_job.clone(),
        }))
    }

    fn decode(self) -> Result<Node, StoreError> {
        let conductor = ConductorState {
            operation: self.operation(parse_power(self.target_power_state.clone())?)?,
            sync_failures: self.sync_failures,
            transitions: Transitions {
                power_on_ms: self.power_on_ms,
                power_off_ms: self.power_off_ms,
            },
            power_state_unsure: self.power_state_unsure,
        };
        let uuid = Uuid::parse_str(&self.uuid).map_err(|_| corrupt("uuid", &self.uuid))?;
        let driver = Driver::parse(&self.driver).ok_or_else(|| corrupt("driver", &self.driver))?;
        let Ok(serde_json::Value::Object(extra)) = serde_json::from_str(&self.extra) else {
            return Err(corrupt("extra", &self.extra));
        };
        Ok(Node {
            uuid,
            spec: NodeSpec {
                name: self.name,
                driver,
                bmc: Bmc {
                    address: self.bmc_address,
                    port: self.bmc_port,
                    username: self.bmc_username,
                    password: self
                        .bmc_password_stored
                        .then(|| Secret::new(self.bmc_password)),
                    password_file: self.bmc_password_file,
                    system_id: self.bmc_system_id,
                    verify_tls: self.bmc_verify_tls,
                    ca_file: self.bmc_ca_file,
                },
                power_domain: self.power_domain,
                maintenance: self.maintenance,
                maintenance_reason: self.maintenance_reason,
                extra,
            },
            conductor,
            power_state: parse_power(self.power_state)?,
            target_power_state: parse_power(self.target_power_state)?,
            boot_device: self.boot_device,
            fault: self.fault,
            locked: self.locked,
            lock_reason: self.lock_reason,
            locked_by: self.locked_by,
            last_error: self.last_error,
            reservation: self.reservation,
            reservation_expires_at: self
                .reservation_expires_at
                .as_deref()
                .map(time_fmt::decode)
                .transpose()?,
            created_at: time_fmt::decode(&self.created_at)?,
            updated_at: time_fmt::decode(&self.updated_at)?,
        })
    }
}

/// Inserts every spec, or none: name collisions (with enrolled nodes or
/// within the list) are all collected and reported together.
pub(crate) fn insert_all(conn: &Connection, specs: &[NodeSpec]) -> Result<Vec<Uuid>, StoreError> {
    let names = specs
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.name.as_deref().map(|n| (i, n)));
    let duplicates = find_duplicate_names(conn, names)?;
    if !duplicates.is_empty() {
        return Err(StoreError::DuplicateNames(duplicates));
    }
    let now = time_fmt::encode(time_fmt::now());
    let mut insert = conn.prepare_cached(
        "INSERT INTO nodes (uuid, name, driver, bmc_address, bmc_port, bmc_username, bmc_password,
             bmc_system_id, bmc_verify_tls, bmc_ca_file, power_domain, maintenance,
             maintenance_reason, extra, created_at, updated_at, bmc_password_file,
             bmc_password_stored)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15, ?16, ?17)",
    )?;
    let mut created = Vec::with_capacity(specs.len());
    for spec in specs {
        let uuid = Uuid::new_v4();
        execute_with_spec(&mut insert, uuid, spec, &now)?;
        created.push(uuid);
    }
    Ok(created)
}

/// Names (with their positions) that are enrolled already or repeated.
pub(crate) fn find_duplicate_names<'a>(
    conn: &Connection,
    names: impl Iterator<Item = (usize, &'a str)>,
) -> Result<Vec<DuplicateName>, StoreError> {
    let mut exists = conn.prepare_cached("SELECT 1 FROM nodes WHERE name = ?1")?;
    let mut first_seen: HashMap<&str, usize> = HashMap::new();
    let mut duplicates = Vec::new();
    for (index, name) in names {
        if exists.exists([name])? {
            duplicates.push(DuplicateName {
                index,
                name: name.to_owned(),
                already_enrolled: true,
            });
        } else if first_seen.insert(name, index).is_some() {
            duplicates.push(DuplicateName {
                index,
                name: name.to_owned(),
                already_enrolled: false,
            });
        }
    }
    Ok(duplicates)
}

pub(crate) fn get(conn: &Connection, ident: &NodeIdent) -> Result<Node, StoreError> {
    // Built once: a batch looks up a thousand nodes in the transaction its
    // caller waits on.
    static BY_UUID: LazyLock<String> =
        LazyLock::new(|| format!("SELECT {COLUMNS} FROM nodes WHERE uuid = ?1"));
    static BY_NAME: LazyLock<String> =
        LazyLock::new(|| format!("SELECT {COLUMNS} FROM nodes WHERE name = ?1"));
    let (sql, key) = match ident {
        NodeIdent::Uuid(u) => (&*BY_UUID, u.to_string()),
        NodeIdent::Name(n) => (&*BY_NAME, n.clone()),
    };
    let raw = conn
        .prepare_cached(sql)?
        .query_row([key], RawNode::from_row)
        .optional()?;
    match raw {
        Some(raw) => raw.decode(),
        None => Err(StoreError::NodeNotFound {
            ident: ident.to_string(),
        }),
    }
}

pub(crate) fn list(
    conn: &Connection,
    filter: &NodeFilter,
    limit: usize,
    marker: Option<Uuid>,
) -> Result<Vec<Node>, StoreError> {
    let mut clauses: Vec<&str> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    if let Some(marker) = marker {
        let id: Option<i64> = conn
            .prepare_cached(
                "SELECT id FROM nodes WHERE uuid = ?1 UNION ALL SELECT id FROM deleted_nodes WHERE uuid = ?1",
            )?
            .query_row([marker.to_string()], |r| r.get(0))
            .optional()?;
        let id = id.ok_or_else(|| StoreError::MarkerNotFound {
            marker: marker.to_string(),
        })?;
        clauses.push("id > ?");
        values.push(Value::Integer(id));
    }
    match filter.power_state {
        Some(Some(state)) => {
            clauses.push("power_state = ?");
            values.push(Value::Text(state.as_str().to_owned()));
        }
        Some(None) => clauses.push("power_state IS NULL"),
        None => {}
    }
    if let Some(maintenance) = filter.maintenance {
        clauses.push("maintenance = ?");
        values.push(Value::Integer(i64::from(maintenance)));
    }
    if let Some(driver) = filter.driver {
        clauses.push("driver = ?");
        values.push(Value::Text(driver.as_str().to_owned()));
    }
    if let Some(domain) = &filter.power_domain {
        clauses.push("power_domain = ?");
        values.push(Value::Text(domain.clone()));
    }
    let mut sql = format!("SELECT {COLUMNS} FROM nodes");
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(" ORDER BY id LIMIT ?");
    values.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));

    let mut stmt = conn.prepare_cached(&sql)?;
    let raws = stmt
        .query_map(rusqlite::params_from_iter(values), RawNode::from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    raws.into_iter().map(RawNode::decode).collect()
}

pub(crate) fn update_spec(
    conn: &Connection,
    uuid: Uuid,
    spec: &NodeSpec,
) -> Result<(), StoreError> {
    if let Some(name) = &spec.name {
        let holder: Option<String> = conn
            .prepare_cached("SELECT uuid FROM nodes WHERE name = ?1")?
            .query_row([name], |r| r.get(0))
            .optional()?;
        if holder.is_some_and(|h| h != uuid.to_string()) {
            return Err(StoreError::DuplicateNames(vec![DuplicateName {
                index: 0,
                name: name.clone(),
                already_enrolled: true,
            }]));
        }
    }
    let mut update = conn.prepare_cached(
        "UPDATE nodes SET name = ?2, driver = ?3, bmc_address = ?4, bmc_port = ?5,
             bmc_username = ?6, bmc_password = ?7, bmc_system_id = ?8, bmc_verify_tls = ?9,
             bmc_ca_file = ?10, power_domain = ?11, maintenance = ?12, maintenance_reason = ?13,
             extra = ?14, updated_at = ?15, bmc_password_file = ?16, bmc_password_stored = ?17
         WHERE uuid = ?1",
    )?;
    execute_with_spec(&mut update, uuid, spec, &time_fmt::encode(time_fmt::now()))?;
    Ok(())
}

/// Runs an insert or update whose parameters are laid out as: ?1 uuid,
/// ?2..?14 the spec's columns in table order, ?15 the timestamp, ?16 and
/// ?17 the password file and whether a password is stored.
fn execute_with_spec(
    stmt: &mut rusqlite::CachedStatement<'_>,
    uuid: Uuid,
    spec: &NodeSpec,
    now: &str,
) -> rusqlite::Result<usize> {
    stmt.execute(params![
        uuid.to_string(),
        spec.name,
        spec.driver.as_str(),
        spec.bmc.address,
        spec.bmc.port,
        spec.bmc.username,
        spec.bmc.password.as_ref().map_or("", Secret::expose),
        spec.bmc.system_id,
        spec.bmc.verify_tls,
        spec.bmc.ca_file,
        spec.power_domain,
        spec.maintenance,
        spec.maintenance_reason,
        serde_json::Value::Object(spec.extra.clone()).to_string(),
        now,
        spec.bmc.password_file,
        spec.bmc.password.is_some(),
    ])
}

pub(crate) fn delete(conn: &Connection, uuid: Uuid) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT OR REPLACE INTO deleted_nodes (uuid, id, deleted_at) SELECT uuid, id, ?2 FROM nodes WHERE uuid = ?1")?
        .execute(params![uuid.to_string(), time_fmt::now().unix_timestamp()])?;
    conn.prepare_cached("DELETE FROM nodes WHERE uuid = ?1")?
        .execute([uuid.to_string()])?;
    Ok(())
}

/// Forgets where nodes deleted more than `retention` ago stood: a marker
/// naming one of them is then refused, and `deleted_nodes` stays bounded by
/// the deletions of one retention period.
pub(crate) fn prune_deleted(conn: &Connection, retention: Duration) -> Result<usize, StoreError> {
    let retention = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
    let cutoff = time_fmt::now().unix_timestamp().saturating_sub(retention);
    Ok(conn
        .prepare_cached("DELETE FROM deleted_nodes WHERE deleted_at < ?1")?
        .execute([cutoff])?)
}

pub(crate) fn count_by_power_state(conn: &Connection) -> Result<PowerStateCounts, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT power_state, COUNT(*) FROM nodes GROUP BY power_state")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let counts = rows
        .into_iter()
        .map(|(state, n)| Ok((parse_power(state)?, u64::try_from(n).unwrap_or(0))))
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(PowerStateCounts { counts })
}

/// Writes the columns `update` names (and `updated_at`); others stay.
pub(crate) fn apply_update(
    conn: &Connection,
    uuid: Uuid,
    update: &NodeUpdate,
) -> Result<(), StoreError> {
    let mut columns: Vec<(&str, Value)> = Vec::new();
    let mut set = |column: &'static str, value: Value| columns.push((column, value));
    let text = |s: Option<&str>| s.map_or(Value::Null, |s| Value::Text(s.to_owned()));
    if let Some(state) = update.power_state {
        set("power_state", text(state.map(PowerState::as_str)));
    }
    if let Some(operation) = &update.operation {
        let op = operation.as_ref();
        set(
            "target_power_state",
            text(op.map(|o| o.verb.end_state().as_str())),
        );
        set("op_verb", text(op.map(|o| o.verb.as_str())));
        set("op_request_id", text(op.map(|o| o.request_id.as_str())));
        set(
            "op_boot_first",
            text(op.and_then(|o| o.boot_first.as_deref())),
        );
        set(
            "op_timeout_ms",
            op.and_then(|o| o.timeout).map_or(Value::Null, |t| {
                Value::Integer(i64::try_from(t.as_millis()).unwrap_or(i64::MAX))
            }),
        );
        set("op_phase", text(op.map(|o| o.phase.as_str())));
        set("op_sub_job", text(op.and_then(|o| o.sub_job.as_deref())));
        set(
            "op_requested_at",
            op.map_or(Value::Null, |o| {
                Value::Text(time_fmt::encode(o.requested_at))
            }),
        );
    }
    if let Some(phase) = update.phase {
        set("op_phase", Value::Text(phase.as_str().to_owned()));
    }
    if let Some(reservation) = &update.reservation {
        let r = reservation.as_ref();
        set("reservation", text(r.map(|r| r.holder.as_str())));
        set(
            "reservation_expires_at",
            r.map_or(Value::Null, |r| Value::Text(time_fmt::encode(r.expires_at))),
        );
    }
    if let Some(error) = &update.last_error {
        set("last_error", text(error.as_deref()));
    }
    if let Some(device) = &update.boot_device {
        set("boot_device", text(device.as_deref()));
    }
    if let Some(m) = &update.maintenance {
        set("maintenance", Value::Integer(i64::from(m.on)));
        set("maintenance_reason", text(m.reason.as_deref()));
        set("fault", text(m.fault.as_deref()));
    }
    if let Some(lock) = &update.lock {
        set("locked", Value::Integer(i64::from(lock.locked)));
        set("lock_reason", text(lock.reason.as_deref()));
        set("locked_by", text(lock.by.as_deref()));
    }
    if let Some(n) = update.sync_failures {
        set("sync_failures", Value::Integer(i64::from(n)));
    }
    if let Some(t) = update.transitions {
        set(
            "power_on_ms",
            t.power_on_ms
                .map_or(Value::Null, |v| Value::Integer(v.into())),
        );
        set(
            "power_off_ms",
            t.power_off_ms
                .map_or(Value::Null, |v| Value::Integer(v.into())),
        );
    }
    if let Some(unsure) = update.power_state_unsure {
        set("power_state_unsure", Value::Integer(i64::from(unsure)));
    }
    if columns.is_empty() {
        return Ok(());
    }
    columns.push(("updated_at", Value::Text(time_fmt::encode(time_fmt::now()))));
    // Built in one buffer: a batch runs this a thousand times in the
    // transaction its caller waits on.
    let mut sql = String::with_capacity(64 + 24 * columns.len());
    sql.push_str("UPDATE nodes SET ");
    for (i, (column, _)) in columns.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(column);
        let _ = write!(sql, " = ?{}", i + 2);
    }
    sql.push_str(" WHERE uuid = ?1");
    let mut params = Vec::with_capacity(columns.len() + 1);
    params.push(Value::Text(uuid.to_string()));
    params.extend(columns.into_iter().map(|(_, v)| v));
    conn.prepare_cached(&sql)?
        .execute(rusqlite::params_from_iter(params))?;
    Ok(())
}

/// Nodes with a power target, in enrollment order: the work to resume.
pub(crate) fn pending(conn: &Connection) -> Result<Vec<Node>, StoreError> {
    let sql =
        format!("SELECT {COLUMNS} FROM nodes WHERE target_power_state IS NOT NULL ORDER BY id");
    let raws = conn
        .prepare_cached(&sql)?
        .query_map([], RawNode::from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    raws.into_iter().map(RawNode::decode).collect()
}

fn sync_filter(faulted: bool) -> &'static str {
    if faulted {
        "maintenance = 1 AND fault IS NOT NULL"
    } else {
        "maintenance = 0 AND target_power_state IS NULL"
    }
}

/// The row ids of the nodes for a power-sync sweep: idle ones (`faulted =
/// false`: not in maintenance, no target), nodes that failed last time
/// first; or the nodes the sync itself put in maintenance (`faulted =
/// true`). Ids only, so a sweep of a large fleet holds a few bytes per node
/// rather than every node's record.
pub(crate) fn sync_candidate_ids(conn: &Connection, faulted: bool) -> Result<Vec<i64>, StoreError> {
    let filter = sync_filter(faulted);
    let sql = format!("SELECT id FROM nodes WHERE {filter} ORDER BY sync_failures DESC, id");
    let ids = conn
        .prepare_cached(&sql)?
        .query_map([], |row| row.get(0))?
        .collect::<Result<Vec<i64>, _>>()?;
    Ok(ids)
}

/// The nodes of `ids` that are still sync candidates (the filter is applied
/// again: a node may have gained a target since its id was listed), in the
/// order of `ids`.
pub(crate) fn sync_candidates_among(
    conn: &Connection,
    ids: &[i64],
    faulted: bool,
) -> Result<Vec<Node>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let filter = sync_filter(faulted);
    let marks = vec!["?"; ids.len()].join(", ");
    // The id follows the usual columns, so the row mapping is the usual one.
    let sql = format!("SELECT {COLUMNS}, id FROM nodes WHERE id IN ({marks}) AND {filter}");
    let id_column = COLUMNS.split(',').count();
    let mut rows = conn
        .prepare_cached(&sql)?
        .query_map(rusqlite::params_from_iter(ids), |row| {
            Ok((row.get::<_, i64>(id_column)?, RawNode::from_row(row)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let position: HashMap<i64, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    rows.sort_by_key(|(id, _)| position.get(id).copied().unwrap_or(usize::MAX));
    rows.into_iter().map(|(_, raw)| raw.decode()).collect()
}
