//! Wording shared by every error message an operator reads: serde's messages
//! rewritten without Rust type names, and long user input clipped before it
//! is echoed back.

/// Rewrites serde's "expected <rust type>" phrases into plain words.
pub fn humanize(message: &str) -> String {
    const REPLACEMENTS: [(&str, &str); 11] = [
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u32", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected usize", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
        ("expected path string", "expected a path in quotes"),
        (
            "expected a duration",
            "expected a duration such as \"60s\" or \"2m 30s\"",
        ),
        ("expected a sequence", "expected a JSON array"),
        ("expected a map", "expected an object"),
        ("expected a string", "expected a string in quotes"),
    ];
    let mut text = message.lines().next().unwrap_or(message).trim().to_owned();
    if let Some(at) = text.find("expected struct ") {
        let rest = &text[at + "expected struct ".len()..];
        let end = rest
            .find(|c: char| !c.is_alphanumeric())
            .unwrap_or(rest.len());
        text = format!("{}expected an object{}", &text[..at], &rest[end..]);
    }
    for (from, to) in REPLACEMENTS {
        if let Some(at) = text.find(from) {
            let after = &text[at + from.len()..];
            // Only whole phrases: "expected u16" but not "expected u160".
            if !after.starts_with(|c: char| c.is_alphanumeric()) {
                text = format!("{}{to}{after}", &text[..at]);
            }
        }
    }
    text
}

/// A body that did not deserialize, as a person should read it: where
/// (`servers[2].id: `, left out at the top level) and what, without
/// serde_json's " at line 1 column 57".
pub fn json_error(error: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let reason = humanize(&error.inner().to_string());
    let reason = reason
        .rfind(" at line ")
        .map_or(reason.as_str(), |i| &reason[..i])
        .to_owned();
    match error.path().to_string().as_str() {
        "." => reason,
        at => format!("{at}: {reason}"),
    }
}

/// At most `max` characters of `input`, marked when cut.
pub fn clip(input: &str, max: usize) -> String {
    match input.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &input[..at]),
        None => input.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_type_names_become_words() {
        assert_eq!(
            humanize("invalid type: string \"x\", expected u16"),
            "invalid type: string \"x\", expected a whole number from 0 to 65535"
        );
        assert_eq!(
            humanize("invalid type: sequence, expected struct NodeSpec"),
            "invalid type: sequence, expected an object"
        );
        assert_eq!(
            humanize("invalid type: integer `60`, expected a duration\nin `sync`"),
            "invalid type: integer `60`, expected a duration such as \"60s\" or \"2m 30s\""
        );
        assert_eq!(humanize("unknown variant `x`"), "unknown variant `x`");
    }

    #[test]
    fn clipping_keeps_short_input() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("abcdef", 3), "abc…");
        assert_eq!(clip("日本語です", 2), "日本…");
    }
}
