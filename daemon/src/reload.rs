//! SIGHUP (`systemctl reload batond`): re-read the config file and apply
//! the keys that can change while batond runs — [`RELOADABLE`]. A file
//! with any problem changes nothing: every problem is logged and batond
//! goes on with the config it had. Other keys that changed are reported as
//! needing a restart, and stay as they were.

use crate::config::Config;

/// Keys a reload applies; every other key needs a restart.
pub const RELOADABLE: [&str; 12] = [
    "log.level",
    "conductor.workers",
    "sync.interval",
    "sync.policy",
    "sync.workers",
    "sync.max_failures",
    "sync.recovery_interval",
    "actions.retention",
    "auth.admin_groups",
    "auth.operator_groups",
    "auth.reader_groups",
    "bmc.default_password_credential",
];

/// The config in effect after a reload from `current` to `new`: the
/// reloadable keys from `new`, the rest from `current`.
pub fn effective(current: &Config, new: &Config) -> Config {
    let mut next = current.clone();
    next.log.level.clone_from(&new.log.level);
    next.conductor.workers = new.conductor.workers;
    next.sync.clone_from(&new.sync);
    next.actions.clone_from(&new.actions);
    next.auth.clone_from(&new.auth);
    next.bmc.clone_from(&new.bmc);
    next
}

/// The dotted keys whose values differ between two configs, sorted.
pub fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let (Ok(old), Ok(new)) = (toml::Value::try_from(old), toml::Value::try_from(new)) else {
        return Vec::new();
    };
    let mut changed = Vec::new();
    diff("", &old, &new, &mut changed);
    changed
}

fn diff(prefix: &str, old: &toml::Value, new: &toml::Value, changed: &mut Vec<String>) {
    match (old, new) {
        (toml::Value::Table(old), toml::Value::Table(new)) => {
            let keys = old
                .keys()
                .chain(new.keys().filter(|k| !old.contains_key(*k)));
            for key in keys {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                match (old.get(key), new.get(key)) {
                    (Some(a), Some(b)) => diff(&path, a, b, changed),
                    _ => changed.push(path),
                }
            }
        }
        _ if old != new => changed.push(prefix.to_owned()),
        _ => {}
    }
}

/// The keys of `changed` a reload cannot apply.
pub fn needing_restart(changed: &[String]) -> Vec<String> {
    changed
        .iter()
        .filter(|key| !RELOADABLE.contains(&key.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_are_dotted_and_only_reloadable_ones_apply() {
        let old = Config::default();
        let new = Config::parse(
            "[log]\nlevel = \"debug\"\n[conductor]\nworkers = 7\n[conductor.min_command_interval]\nipmi = \"1s\"\n[api]\nsocket = \"/x.sock\"\n",
        )
        .unwrap();
        let changed = changed_keys(&old, &new);
        assert_eq!(
            changed,
            [
                "api.socket",
                "conductor.min_command_interval.ipmi",
                "conductor.workers",
                "log.level"
            ]
        );
        assert_eq!(
            needing_restart(&changed),
            ["api.socket", "conductor.min_command_interval.ipmi"]
        );
        let next = effective(&old, &new);
        assert_eq!(
            (next.log.level.as_str(), next.conductor.workers),
            ("debug", 7)
        );
        assert_eq!(next.api.socket, old.api.socket);
        assert_eq!(
            next.conductor.min_command_interval,
            old.conductor.min_command_interval
        );
        assert!(changed_keys(&old, &old).is_empty());
    }

    #[test]
    fn action_retention_is_reloadable() {
        let old = Config::default();
        let new = Config::parse("[actions]\nretention = \"7days\"\n").unwrap();
        let changed = changed_keys(&old, &new);
        assert_eq!(changed, ["actions.retention"]);
        assert!(needing_restart(&changed).is_empty());
        assert_eq!(effective(&old, &new).actions, new.actions);
    }
}
