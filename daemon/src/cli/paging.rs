//! Paged listings (`GET /v1/nodes`, a node's action log): following `next`
//! links, or keeping the first page's link so the caller can say how to get
//! the rest.

use http::Method;
use serde::de::DeserializeOwned;

use super::CliError;
use crate::api::types::{InstanceAction, InstanceActionList, NodeList};
use crate::client::Client;

/// A page of a listing: its items and the link to the next page.
pub trait Page: DeserializeOwned {
    type Item;
    fn into_parts(self) -> (Vec<Self::Item>, Option<String>);
    fn from_parts(items: Vec<Self::Item>, next: Option<String>) -> Self;
}

impl<T: DeserializeOwned> Page for NodeList<T> {
    type Item = T;
    fn into_parts(self) -> (Vec<T>, Option<String>) {
        (self.nodes, self.next)
    }
    fn from_parts(nodes: Vec<T>, next: Option<String>) -> Self {
        NodeList { nodes, next }
    }
}

impl Page for InstanceActionList {
    type Item = InstanceAction;
    fn into_parts(self) -> (Vec<InstanceAction>, Option<String>) {
        (self.instance_actions, self.next)
    }
    fn from_parts(instance_actions: Vec<InstanceAction>, next: Option<String>) -> Self {
        InstanceActionList {
            instance_actions,
            next,
        }
    }
}

/// Follows `next` links from `first` until the listing ends, or returns
/// only the first page, with its `next` link, when `single_page`.
pub async fn fetch<P: Page>(
    client: &Client,
    first: String,
    single_page: bool,
) -> Result<P, CliError> {
    let mut connection = client.connect().await?;
    let mut items = Vec::new();
    let mut url = Some(first);
    while let Some(current) = url.take() {
        let page: P = connection
            .request(Method::GET, &current, None)
            .await?
            .into_json()?;
        let (page_items, next) = page.into_parts();
        items.extend(page_items);
        if single_page {
            return Ok(P::from_parts(items, next));
        }
        url = next;
    }
    Ok(P::from_parts(items, None))
}

/// The `marker` of a `next` link.
pub fn marker_of(next: &str) -> Option<String> {
    let query = next.split_once('?')?.1;
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find_map(|(k, v)| (k == "marker").then_some(v))
}

/// `value` quoted for a POSIX shell when it needs to be.
pub fn shell_word(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+".contains(c));
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_come_from_next_links() {
        assert_eq!(
            marker_of("/v1/nodes?limit=2&marker=abc").as_deref(),
            Some("abc")
        );
        assert_eq!(marker_of("/v1/nodes?limit=2"), None);
        assert_eq!(marker_of("/v1/nodes"), None);
    }

    #[test]
    fn shell_words_are_quoted_when_needed() {
        assert_eq!(shell_word("rack-1"), "rack-1");
        assert_eq!(shell_word("rack 1"), "'rack 1'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
