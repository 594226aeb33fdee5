//! Request parameters as Grape sees them: the query string merged with a JSON, form or
//! multipart body (the body wins), Rack's nested keys (`position[base_sha]`, `actions[][action]`)
//! turned into objects and arrays; plus GitLab's offset pagination for in-memory lists.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::Response;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::api::{json_no_cache, ok_json};
use crate::server::{ReqCtx, percent_decode, set_header};

/// Kaminari's `max_per_page` in GitLab.
const MAX_PER_PAGE: usize = 100;

/// The request's parameters as one JSON object. `Err` carries GitLab's 400 answer for a body
/// that does not parse.
pub(crate) fn parse(ctx: &ReqCtx) -> Result<Value, Box<Response>> {
    let mut root = Value::Object(Map::new());
    for (k, v) in pairs(&ctx.query) {
        insert_nested(&mut root, &k, Value::String(v));
    }
    if ctx.body.is_empty() {
        return Ok(root);
    }
    let content_type = ctx.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    if content_type.starts_with("application/json") {
        let Ok(body) = serde_json::from_slice::<Value>(&ctx.body) else {
            // Grape's `InvalidMessageBody` (text UNCONFIRMED, see FIXTURES.md).
            return Err(Box::new(json_no_cache(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"error": "message body does not match declared format"}),
            )));
        };
        if let Value::Object(map) = body {
            for (k, v) in map {
                if let Value::Object(obj) = &mut root {
                    obj.insert(k, v);
                }
            }
        }
    } else if content_type.starts_with("multipart/form-data") {
        let boundary = content_type
            .split(';')
            .filter_map(|p| p.trim().strip_prefix("boundary="))
            .next()
            .map(|b| b.trim_matches('"').to_string());
        // The boundary is case-sensitive: take it from the original header.
        let original = ctx.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let boundary = original
            .split(';')
            .filter_map(|p| p.trim().strip_prefix("boundary="))
            .next()
            .map(|b| b.trim_matches('"').to_string())
            .or(boundary);
        if let Some(boundary) = boundary {
            for (k, v) in multipart(&ctx.body, &boundary) {
                insert_nested(&mut root, &k, Value::String(v));
            }
        }
    } else {
        // `application/x-www-form-urlencoded`, and what curl sends without a content type.
        let text = String::from_utf8_lossy(&ctx.body);
        for (k, v) in pairs(&text) {
            insert_nested(&mut root, &k, Value::String(v));
        }
    }
    Ok(root)
}

/// Decoded `key=value` pairs of a query or form body.
pub(crate) fn pairs(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

/// Rack's `normalize_params`: `a[b][c]=v` nests objects, `a[]=v` appends to an array and
/// `a[][b]=v` starts a new array element when the last one already has `b`.
fn insert_nested(root: &mut Value, key: &str, value: Value) {
    let (head, rest) = match key.find('[') {
        Some(i) if i > 0 => (&key[..i], &key[i..]),
        _ => (key, ""),
    };
    let mut segments: Vec<&str> = Vec::new();
    let mut tail = rest;
    while let Some(stripped) = tail.strip_prefix('[') {
        let Some(end) = stripped.find(']') else { break };
        segments.push(&stripped[..end]);
        tail = &stripped[end + 1..];
    }
    let Value::Object(map) = root else { return };
    let slot = map.entry(head.to_string()).or_insert(Value::Null);
    insert_segments(slot, &segments, value);
}

fn insert_segments(slot: &mut Value, segments: &[&str], value: Value) {
    let Some((first, rest)) = segments.split_first() else {
        *slot = value;
        return;
    };
    if first.is_empty() {
        if !slot.is_array() {
            *slot = Value::Array(Vec::new());
        }
        let Value::Array(items) = slot else { return };
        if rest.is_empty() {
            items.push(value);
            return;
        }
        // `a[][k]`: continue the last element unless it already has `k`.
        let needs_new = match items.last() {
            Some(Value::Object(obj)) => rest.first().is_some_and(|k| obj.contains_key(*k)),
            _ => true,
        };
        if needs_new {
            items.push(Value::Object(Map::new()));
        }
        if let Some(last) = items.last_mut() {
            insert_segments(last, rest, value);
        }
        return;
    }
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    if let Value::Object(map) = slot {
        let next = map.entry((*first).to_string()).or_insert(Value::Null);
        insert_segments(next, rest, value);
    }
}

/// The text fields of a `multipart/form-data` body (file parts are read as text too).
fn multipart(body: &[u8], boundary: &str) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    let delimiter = format!("--{boundary}");
    let mut out = Vec::new();
    for part in text.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let part = part.strip_prefix("\r\n").unwrap_or(part);
        let Some((head, content)) = part.split_once("\r\n\r\n") else { continue };
        let name = head.lines().find_map(|line| {
            let lower = line.to_ascii_lowercase();
            if !lower.starts_with("content-disposition:") {
                return None;
            }
            let at = lower.find("name=\"")?;
            let rest = &line[at + 6..];
            rest.find('"').map(|end| rest[..end].to_string())
        });
        if let Some(name) = name {
            let content = content.strip_suffix("\r\n").unwrap_or(content);
            out.push((name, content.to_string()));
        }
    }
    out
}

/// A value as text: strings as they are, numbers and booleans as Ruby would print them.
pub(crate) fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Grape's `type: Integer`: `Ok(None)` when absent, `Err(())` when not an integer.
pub(crate) fn integer(v: &Value, key: &str) -> Result<Option<i64>, ()> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or(()),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(|_| ()),
        Some(_) => Err(()),
    }
}

/// Grape's `type: Boolean` (dry-types `params.bool`).
pub(crate) fn boolean(v: &Value, key: &str) -> Result<Option<bool>, ()> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(1) => Ok(Some(true)),
            Some(0) => Ok(Some(false)),
            _ => Err(()),
        },
        Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "1" | "on" | "t" | "true" | "y" | "yes" => Ok(Some(true)),
            "0" | "off" | "f" | "false" | "n" | "no" => Ok(Some(false)),
            _ => Err(()),
        },
        Some(_) => Err(()),
    }
}

/// Grape's 400 for a parameter: `{"error":"<message>"}`.
pub(crate) fn grape_error(message: &str) -> Response {
    json_no_cache(StatusCode::BAD_REQUEST, &serde_json::json!({ "error": message }))
}

/// `page` and `per_page` after Grape's validation (`lib/api/pagination_params.rb`).
#[derive(Clone, Copy)]
pub(crate) struct Page {
    pub(crate) page: usize,
    pub(crate) per_page: usize,
    /// As sent: the links repeat it.
    per_page_raw: i64,
}

pub(crate) fn page(v: &Value) -> Result<Page, Box<Response>> {
    let refuse = |message: &str| Box::new(grape_error(message));
    let page = integer(v, "page").map_err(|()| refuse("page is invalid"))?.unwrap_or(1);
    let per_page = integer(v, "per_page").map_err(|()| refuse("per_page is invalid"))?.unwrap_or(20);
    if per_page == 0 {
        return Err(refuse("per_page has a value not allowed"));
    }
    if page < 1 {
        return Err(refuse("page does not have a valid value"));
    }
    if per_page < 1 {
        return Err(refuse("per_page does not have a valid value"));
    }
    Ok(Page {
        page: usize::try_from(page).unwrap_or(usize::MAX),
        per_page: usize::try_from(per_page).unwrap_or(usize::MAX).min(MAX_PER_PAGE),
        per_page_raw: per_page,
    })
}

/// One page of `items` with GitLab's offset pagination headers
/// (`Gitlab::Pagination::OffsetHeaderBuilder`): `x-per-page`, `x-page`, `x-next-page`,
/// `x-prev-page`, `link` (`prev`, `next`, `first`, `last`), `x-total`, `x-total-pages`.
pub(crate) fn paginated<T: Serialize>(ctx: &ReqCtx, page: Page, items: &[T]) -> Response {
    let total = items.len();
    let skip = (page.page - 1).saturating_mul(page.per_page);
    let slice = &items[skip.min(total)..skip.saturating_add(page.per_page).min(total)];
    let total_pages = total.div_ceil(page.per_page).max(1);
    let next = (page.page < total_pages).then(|| page.page + 1);
    let prev = (page.page > 1 && page.page <= total_pages).then(|| page.page - 1);
    let mut response = ok_json(&slice);
    let at = |n: usize| link(ctx, &[("page", n.to_string()), ("per_page", page.per_page_raw.to_string())]);
    let mut links = Vec::new();
    if let Some(prev) = prev {
        links.push(format!("<{}>; rel=\"prev\"", at(prev)));
    }
    if let Some(next) = next {
        links.push(format!("<{}>; rel=\"next\"", at(next)));
    }
    links.push(format!("<{}>; rel=\"first\"", at(1)));
    links.push(format!("<{}>; rel=\"last\"", at(total_pages)));
    let show = |n: Option<usize>| n.map(|n| n.to_string()).unwrap_or_default();
    let headers = response.headers_mut();
    set_header(headers, "x-per-page", &page.per_page.to_string());
    set_header(headers, "x-page", &page.page.to_string());
    set_header(headers, "x-next-page", &show(next));
    set_header(headers, "x-prev-page", &show(prev));
    set_header(headers, "link", &links.join(", "));
    set_header(headers, "x-total", &total.to_string());
    set_header(headers, "x-total-pages", &total_pages.to_string());
    response
}

/// The request URL with its query parameters plus `overrides`, sorted by name as Rails'
/// `Hash#to_query` does.
fn link(ctx: &ReqCtx, overrides: &[(&str, String)]) -> String {
    let mut all: BTreeMap<String, String> = ctx
        .query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .map(|(k, v)| (percent_decode(k), v.to_string()))
        .collect();
    for (k, v) in overrides {
        all.insert((*k).to_string(), v.clone());
    }
    let query: Vec<String> = all.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{}{}{}?{}", ctx.origin, ctx.base_path, ctx.rest, query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(pairs: &[(&str, &str)]) -> Value {
        let mut root = Value::Object(Map::new());
        for (k, v) in pairs {
            insert_nested(&mut root, k, Value::String((*v).to_string()));
        }
        root
    }

    #[test]
    fn rack_nested_keys() {
        let v = nested(&[("body", "x"), ("position[base_sha]", "a"), ("position[new_line]", "3")]);
        assert_eq!(v, serde_json::json!({"body": "x", "position": {"base_sha": "a", "new_line": "3"}}));
        let v = nested(&[
            ("actions[][action]", "create"),
            ("actions[][file_path]", "a"),
            ("actions[][action]", "delete"),
            ("actions[][file_path]", "b"),
        ]);
        assert_eq!(
            v,
            serde_json::json!({"actions": [{"action": "create", "file_path": "a"}, {"action": "delete", "file_path": "b"}]})
        );
        assert_eq!(nested(&[("iids[]", "1"), ("iids[]", "2")]), serde_json::json!({"iids": ["1", "2"]}));
    }

    #[test]
    fn multipart_fields() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"body\"\r\n\r\nhello\r\nworld\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"position[new_line]\"\r\n\r\n7\r\n--XyZ--\r\n";
        assert_eq!(
            multipart(body, "XyZ"),
            vec![
                ("body".to_string(), "hello\r\nworld".to_string()),
                ("position[new_line]".to_string(), "7".to_string())
            ]
        );
    }

    #[test]
    fn typed_values() {
        let v = serde_json::json!({"a": "12", "b": 3, "c": "x", "t": "true", "f": false});
        assert_eq!(integer(&v, "a"), Ok(Some(12)));
        assert_eq!(integer(&v, "b"), Ok(Some(3)));
        assert_eq!(integer(&v, "c"), Err(()));
        assert_eq!(integer(&v, "z"), Ok(None));
        assert_eq!(boolean(&v, "t"), Ok(Some(true)));
        assert_eq!(boolean(&v, "f"), Ok(Some(false)));
        assert_eq!(boolean(&v, "c"), Err(()));
    }
}
