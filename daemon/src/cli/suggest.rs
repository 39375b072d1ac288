//! "Did you mean …?" for a node name that is not enrolled: the enrolled
//! names closest to the one typed, by edit distance.

/// At most this many names are suggested.
const MAX_SUGGESTIONS: usize = 3;

/// The enrolled names close enough to `typed` to be what was meant: those
/// at the smallest edit distance found, in name order.
pub fn similar<'a>(typed: &str, names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let typed_lower = typed.to_lowercase();
    // A typo is a few edits; allow more in longer names, never so many that
    // any short name matches.
    let budget = (typed.chars().count() / 4).clamp(1, 3);
    let mut scored: Vec<(usize, &str)> = names
        .into_iter()
        .filter(|name| *name != typed)
        .filter_map(|name| {
            let d = strsim::damerau_levenshtein(&typed_lower, &name.to_lowercase());
            (d <= budget).then_some((d, name))
        })
        .collect();
    scored.sort_unstable();
    // Only the closest tier: "node-001" means node-0001, not node-0002 too.
    let best = scored.first().map_or(0, |(d, _)| *d);
    scored
        .into_iter()
        .take_while(|(d, _)| *d == best)
        .take(MAX_SUGGESTIONS)
        .map(|(_, n)| n.to_owned())
        .collect()
}

/// `a`, `a or b`, `a, b or c`.
pub fn or_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_suggested_closest_first() {
        let names = ["node-0001", "node-0010", "node-0100", "web-1", "db-7"];
        assert_eq!(similar("node-001", names), ["node-0001", "node-0010"]);
        assert_eq!(similar("node-0102", names), ["node-0100"]);
        assert_eq!(similar("web1", names), ["web-1"]);
        assert_eq!(similar("WEB-1", names), ["web-1"]);
        assert!(similar("zzz", names).is_empty());
        assert!(similar("x", ["y"]).len() <= 1);
        let many: Vec<String> = (0..20).map(|i| format!("node-{i:04}")).collect();
        assert_eq!(
            similar("node-000", many.iter().map(String::as_str)).len(),
            3
        );
    }

    #[test]
    fn lists_read_naturally() {
        let s = |v: &[&str]| or_list(&v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>());
        assert_eq!(s(&["a"]), "a");
        assert_eq!(s(&["a", "b"]), "a or b");
        assert_eq!(s(&["a", "b", "c"]), "a, b or c");
    }
}
