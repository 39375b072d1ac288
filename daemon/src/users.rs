//! User names for uids, for the action log: looked up in the user database
//! (NSS, blocking) off the runtime, and remembered, so a busy caller costs
//! one lookup, not one per connection.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};

/// Most names remembered; past that the cache starts over (uids on one
/// management node are few, this only bounds a flood of made-up ones).
const MAX_CACHED: usize = 4096;

fn cache() -> &'static Mutex<HashMap<u32, String>> {
    static CACHE: OnceLock<Mutex<HashMap<u32, String>>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// The name of `uid`, when the user database has one.
pub async fn name_of(uid: u32) -> Option<String> {
    if let Some(name) = cache()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&uid)
    {
        return Some(name.clone());
    }
    let name = tokio::task::spawn_blocking(move || lookup(uid))
        .await
        .ok()
        .flatten()?;
    remember(uid, &name);
    Some(name)
}

/// Looks `uid` up in the user database (blocking).
pub fn lookup(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|user| user.name)
}

/// Remembers a name found elsewhere (a connection's own lookup).
pub fn remember(uid: u32, name: &str) {
    let mut cache = cache().lock().unwrap_or_else(PoisonError::into_inner);
    if cache.len() >= MAX_CACHED {
        cache.clear();
    }
    cache.insert(uid, name.to_owned());
}

/// The name of a uid given as text (as action records keep it).
pub async fn name_of_text(uid: Option<&str>) -> Option<String> {
    name_of(uid?.parse().ok()?).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn root_resolves_and_unknown_uids_do_not() {
        assert_eq!(name_of(0).await.as_deref(), Some("root"));
        assert_eq!(name_of_text(Some("0")).await.as_deref(), Some("root"));
        assert_eq!(name_of(u32::MAX - 7).await, None);
        assert_eq!(name_of_text(Some("not-a-uid")).await, None);
        assert_eq!(name_of_text(None).await, None);
    }
}
