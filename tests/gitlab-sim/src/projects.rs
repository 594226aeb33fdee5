//! The projects API: `GET /projects` with GitLab's pagination rules, rate limits and hostile
//! listing modes, `GET /projects/:id` and `GET /projects/:id/languages`. Which GitLab file each
//! rule comes from is listed in FIXTURES.md.

use std::collections::BTreeMap;

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::api::{
    API_WIDE, Scopes, authenticate_optional, date, host_name, json, json_no_cache, method_not_allowed, ok_json,
    timestamp,
};
use crate::config::{FOREIGN_ORIGIN, ListingMode, RateLimitStyle, SimProject};
use crate::faults::{Verdict, add_headers};
use crate::server::{ReqCtx, Shared, TokenEntry, fnv1a, percent_decode, set_header, with_body};

/// `Kaminari::ActiveRecordRelationMethods::MAX_COUNT_LIMIT`: above it GitLab stops counting.
const COUNT_LIMIT: usize = 10_000;
/// Kaminari's `max_per_page` in GitLab, and `Keyset::Page::MAXIMUM_PAGE_SIZE`.
const MAX_PER_PAGE: u64 = 100;
/// The access level every token has on every project here (Maintainer).
const ACCESS_LEVEL: i64 = 40;

/// `order_by` values `lib/api/projects.rb` accepts (`STATISTICS_SORT_PARAMS` included).
const ORDER_BY_VALUES: &[&str] = &[
    "id",
    "name",
    "path",
    "created_at",
    "updated_at",
    "last_activity_at",
    "similarity",
    "star_count",
    "storage_size",
    "repository_size",
    "wiki_size",
    "packages_size",
];

/// Query parameters: percent-decoded names with raw values, in request order.
struct Params<'a> {
    pairs: Vec<(String, &'a str)>,
}

impl<'a> Params<'a> {
    fn parse(query: &'a str) -> Self {
        let pairs = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .map(|(k, v)| (percent_decode(k), v))
            .collect();
        Params { pairs }
    }

    /// The last raw value (Rack keeps the last of repeated plain keys).
    fn raw(&self, name: &str) -> Option<&'a str> {
        self.pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| *v)
    }

    fn text(&self, name: &str) -> Option<String> {
        self.raw(name).map(percent_decode)
    }
}

/// dry-types `params.bool`, which Grape uses for `type: Boolean`.
fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "on" | "t" | "true" | "y" | "yes" => Some(true),
        "0" | "off" | "f" | "false" | "n" | "no" => Some(false),
        _ => None,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OrderBy {
    Id,
    CreatedAt,
    Name,
    Path,
    UpdatedAt,
    LastActivityAt,
    StarCount,
}

/// A validated `GET /projects` request.
struct ListQuery {
    simple: bool,
    keyset: bool,
    order_by: OrderBy,
    ascending: bool,
    page: u64,
    /// As sent (after Grape's default of 20): GitLab uses it for the offset limit and the links.
    per_page_raw: u64,
    per_page: usize,
    id_after: Option<u64>,
    id_before: Option<u64>,
    archived: Option<bool>,
    visibility: Option<String>,
    search: Option<String>,
    topics: Vec<String>,
    language: Option<String>,
    last_activity_after: Option<OffsetDateTime>,
    last_activity_before: Option<OffsetDateTime>,
    updated_after: Option<OffsetDateTime>,
    updated_before: Option<OffsetDateTime>,
    min_access_level: Option<i64>,
    public_only: bool,
    /// Set when some project has an explicit member list: then each project is checked with
    /// `SimProject::readable_by(viewer)`.
    restricted: Option<Option<crate::config::SimUser>>,
}

impl ListQuery {
    /// Grape's validation; the error is the text GitLab puts in `{"error": …}` with 400.
    fn parse(params: &Params<'_>, public_only: bool) -> Result<Self, String> {
        let int = |name: &str| -> Result<Option<i64>, String> {
            params.text(name).map(|v| v.trim().parse::<i64>().map_err(|_| format!("{name} is invalid"))).transpose()
        };
        let boolean = |name: &str| -> Result<Option<bool>, String> {
            params.text(name).map(|v| parse_bool(&v).ok_or_else(|| format!("{name} is invalid"))).transpose()
        };
        let datetime = |name: &str| -> Result<Option<OffsetDateTime>, String> {
            params
                .text(name)
                .map(|v| OffsetDateTime::parse(v.trim(), &Rfc3339).map_err(|_| format!("{name} is invalid")))
                .transpose()
        };
        for name in ["owned", "starred", "imported", "membership", "statistics", "with_issues_enabled"] {
            boolean(name)?;
        }
        let page = int("page")?.unwrap_or(1);
        let per_page = int("per_page")?.unwrap_or(20);
        if per_page == 0 {
            return Err("per_page has a value not allowed".into());
        }
        if page < 1 {
            return Err("page does not have a valid value".into());
        }
        if per_page < 1 {
            return Err("per_page does not have a valid value".into());
        }
        let order_by = params.text("order_by").unwrap_or_else(|| "created_at".into());
        if !ORDER_BY_VALUES.contains(&order_by.as_str()) {
            return Err("order_by does not have a valid value".into());
        }
        let sort = params.text("sort").unwrap_or_else(|| "desc".into());
        if sort != "asc" && sort != "desc" {
            return Err("sort does not have a valid value".into());
        }
        let visibility = params.text("visibility");
        if visibility.as_deref().is_some_and(|v| !matches!(v, "private" | "internal" | "public")) {
            return Err("visibility does not have a valid value".into());
        }
        let id = |name: &str| int(name).map(|v| v.map(|n| n.max(0) as u64));
        Ok(ListQuery {
            simple: public_only || boolean("simple")?.unwrap_or(false),
            keyset: params.text("pagination").as_deref() == Some("keyset"),
            order_by: match order_by.as_str() {
                "id" => OrderBy::Id,
                "name" => OrderBy::Name,
                "path" => OrderBy::Path,
                "updated_at" => OrderBy::UpdatedAt,
                "last_activity_at" => OrderBy::LastActivityAt,
                "star_count" => OrderBy::StarCount,
                // similarity needs a search, statistics need an admin; both fall back here.
                _ => OrderBy::CreatedAt,
            },
            ascending: sort == "asc",
            page: page as u64,
            per_page_raw: per_page as u64,
            per_page: (per_page as u64).min(MAX_PER_PAGE) as usize,
            id_after: id("id_after")?,
            id_before: id("id_before")?,
            archived: boolean("archived")?,
            visibility,
            search: params.text("search").filter(|s| !s.is_empty()).map(|s| s.to_lowercase()),
            topics: params
                .text("topic")
                .map(|t| t.split(',').map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty()).collect())
                .unwrap_or_default(),
            language: params.text("with_programming_language").map(|s| s.to_lowercase()),
            last_activity_after: datetime("last_activity_after")?,
            last_activity_before: datetime("last_activity_before")?,
            updated_after: datetime("updated_after")?,
            updated_before: datetime("updated_before")?,
            min_access_level: int("min_access_level")?,
            public_only,
            restricted: None,
        })
    }

    /// Whether anything besides the id range narrows the list (then a page needs a scan).
    fn has_filters(&self) -> bool {
        self.public_only
            || self.archived.is_some()
            || self.visibility.is_some()
            || self.search.is_some()
            || !self.topics.is_empty()
            || self.language.is_some()
            || self.last_activity_after.is_some()
            || self.last_activity_before.is_some()
            || self.updated_after.is_some()
            || self.updated_before.is_some()
            || self.min_access_level.is_some()
            || self.restricted.is_some()
    }

    fn matches(&self, p: &SimProject) -> bool {
        (!self.public_only || p.visibility == "public")
            && self.restricted.as_ref().is_none_or(|viewer| p.readable_by(viewer.as_ref()))
            && self.archived.is_none_or(|a| p.archived == a)
            && self.visibility.as_deref().is_none_or(|v| p.visibility == v)
            && self.search.as_deref().is_none_or(|s| {
                p.path_with_namespace.to_lowercase().contains(s)
                    || p.name.as_deref().is_some_and(|n| n.to_lowercase().contains(s))
                    || p.description.as_deref().is_some_and(|d| d.to_lowercase().contains(s))
            })
            && self.topics.iter().all(|t| p.topics.iter().any(|pt| pt.to_lowercase() == *t))
            && self.language.as_deref().is_none_or(|l| p.languages.iter().any(|(n, _)| n.to_lowercase() == l))
            && self.last_activity_after.is_none_or(|t| p.last_activity_at > t)
            && self.last_activity_before.is_none_or(|t| p.last_activity_at < t)
            && self.updated_after.is_none_or(|t| p.updated_at > t)
            && self.updated_before.is_none_or(|t| p.updated_at < t)
            && self.min_access_level.is_none_or(|l| l <= ACCESS_LEVEL)
    }
}

fn error_400(message: &str) -> Response {
    json_no_cache(StatusCode::BAD_REQUEST, &serde_json::json!({ "error": message }))
}

fn error_405(message: &str) -> Response {
    json_no_cache(StatusCode::METHOD_NOT_ALLOWED, &serde_json::json!({ "error": message }))
}

fn project_not_found() -> Response {
    json_no_cache(StatusCode::NOT_FOUND, &serde_json::json!({"message": "404 Project Not Found"}))
}

/// Counts the request against the budget when `stage` is the configured style's stage.
fn rate_limit(shared: &Shared, rack_stage: bool, authenticated: bool) -> Verdict {
    let mut state = shared.lock();
    let Some(limit) = state.rate_limit.clone() else { return Verdict::Allowed(Vec::new()) };
    if (limit.style == RateLimitStyle::RackAttack) != rack_stage {
        return Verdict::Allowed(Vec::new());
    }
    let name = if authenticated { "throttle_authenticated_api" } else { "throttle_unauthenticated_api" };
    state.limiter.hit(&limit, name)
}

/// `GET /api/v4/projects`. Order of checks as in GitLab: Rack::Attack, authentication, Grape's
/// parameter validation, the `projects_api` application limit, then the pagination strategy.
pub(crate) fn list(shared: &Shared, ctx: &ReqCtx) -> Response {
    let sends_token = ctx.headers.contains_key("private-token") || ctx.headers.contains_key("authorization");
    let informational = match rate_limit(shared, true, sends_token) {
        Verdict::Allowed(headers) => headers,
        Verdict::Limited(response) => return response,
    };
    let mut response = list_checked(shared, ctx);
    add_headers(response.headers_mut(), &informational);
    response
}

fn list_checked(shared: &Shared, ctx: &ReqCtx) -> Response {
    let token = match authenticate_optional(shared, ctx, Scopes::Only(&API_WIDE)) {
        Ok(token) => token,
        Err(denied) => return denied.into_response(),
    };
    let params = Params::parse(&ctx.query);
    let mut query = match ListQuery::parse(&params, token.is_none()) {
        Ok(query) => query,
        Err(message) => return error_400(&message),
    };
    if shared.projects().has_members {
        query.restricted = Some(token.as_ref().map(|t| t.token.user.clone()));
    }
    if let Verdict::Limited(response) = rate_limit(shared, false, token.is_some()) {
        return response;
    }
    let mode = shared.lock().listing_mode.clone();
    let response = if query.keyset {
        // `Gitlab::Pagination::Keyset.available?`: projects, ordered by id only. Without an
        // explicit order_by Grape's default (created_at) applies, so that is refused too.
        if query.order_by != OrderBy::Id || params.text("order_by").as_deref() != Some("id") {
            return error_405("Keyset pagination is not yet available for this type of request");
        }
        keyset_page(shared, ctx, &params, &query, token.as_ref(), &mode)
    } else {
        let limit = shared.offset_pagination_limit;
        if limit > 0 && query.page.saturating_mul(query.per_page_raw) > limit {
            return error_405(&format!(
                "Offset pagination has a maximum allowed offset of {limit} for requests that return objects of \
                 type Project. Remaining records can be retrieved using keyset pagination."
            ));
        }
        offset_page(shared, ctx, &params, &query, token.as_ref(), &mode)
    };
    if let Some(entry) = &token {
        count_page_for_revocation(shared, &entry.token.token);
    }
    response
}

/// `revoke_token_after_project_pages`: one more page answered to this token.
fn count_page_for_revocation(shared: &Shared, token: &str) {
    let mut state = shared.lock();
    let Some(left) = state.revoke_after_pages.get_mut(token) else { return };
    *left = left.saturating_sub(1);
    if *left == 0 {
        state.revoke_after_pages.remove(token);
        if let Some(entry) = state.tokens.iter_mut().find(|e| e.token.token == token) {
            entry.token.revoked = true;
        }
    }
}

/// Builds a link to the listing with the request's parameters plus `overrides`, sorted by name
/// as Rails' `Hash#to_query` does.
fn link(ctx: &ReqCtx, params: &Params<'_>, overrides: &[(&str, String)], origin: &str) -> String {
    let mut all: BTreeMap<&str, String> = params.pairs.iter().map(|(k, v)| (k.as_str(), (*v).to_string())).collect();
    for (k, v) in overrides {
        all.insert(k, v.clone());
    }
    let query: Vec<String> = all.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{origin}{}/api/v4/projects?{}", ctx.base_path, query.join("&"))
}

/// The origin for `rel="next"` under the current listing mode.
fn next_origin(ctx: &ReqCtx, mode: &ListingMode) -> String {
    match mode {
        ListingMode::ForeignNextLink => FOREIGN_ORIGIN.to_string(),
        ListingMode::HttpNextLink => ctx.origin.replacen("https://", "http://", 1),
        _ => ctx.origin.clone(),
    }
}

/// The slice of projects inside `(id_after, id_before)`: two binary searches.
fn id_range<'s>(items: &'s [SimProject], query: &ListQuery) -> &'s [SimProject] {
    let lo = query.id_after.map_or(0, |a| items.partition_point(|p| p.id <= a));
    let hi = query.id_before.map_or(items.len(), |b| items.partition_point(|p| p.id < b)).max(lo);
    &items[lo..hi]
}

/// Keyset pagination (`Gitlab::Pagination::Keyset::Pager`): `per_page` projects after the
/// cursor, and a `rel="next"` link whenever the page is not empty, even when it is the last.
fn keyset_page(
    shared: &Shared,
    ctx: &ReqCtx,
    params: &Params<'_>,
    query: &ListQuery,
    token: Option<&TokenEntry>,
    mode: &ListingMode,
) -> Response {
    let size = match mode {
        ListingMode::HugePage(n) => *n,
        _ => query.per_page,
    };
    let mut page: Vec<SimProject> = {
        let store = shared.projects();
        let range = id_range(&store.items, query);
        if query.ascending {
            range.iter().filter(|p| query.matches(p)).take(size).cloned().collect()
        } else {
            range.iter().rev().filter(|p| query.matches(p)).take(size).cloned().collect()
        }
    };
    match (mode, query.ascending) {
        (ListingMode::HugeTopId(id), false) => page.iter_mut().take(1).for_each(|p| p.id = *id),
        (ListingMode::HugeIdInPage(id), true) => page.iter_mut().last().into_iter().for_each(|p| p.id = *id),
        _ => {}
    }
    let mut response = projects_response(shared, ctx, &page, query.simple, token);
    if let Some(last) = page.last() {
        let (cursor, value) = match (query.ascending, mode) {
            (true, ListingMode::StuckCursor) => ("id_after", query.id_after.unwrap_or(0)),
            (false, ListingMode::StuckCursor) => ("id_before", query.id_before.unwrap_or(page[0].id + 1)),
            (true, _) => ("id_after", last.id),
            (false, _) => ("id_before", last.id),
        };
        let overrides = [(cursor, value.to_string()), ("per_page", query.per_page_raw.to_string())];
        let href = link(ctx, params, &overrides, &next_origin(ctx, mode));
        set_header(response.headers_mut(), "link", &format!("<{href}>; rel=\"next\""));
    }
    response
}

/// One page of the ordered, filtered list plus what GitLab's counting knows about the rest.
struct OffsetResult {
    items: Vec<SimProject>,
    /// Exact total when it is at most [`COUNT_LIMIT`].
    total: Option<usize>,
    has_next: bool,
}

/// Walks `iter` (already ordered) keeping the page, counting no further than GitLab's
/// `total_count_with_limit` does.
fn scan<'a>(iter: impl Iterator<Item = &'a SimProject>, skip: usize, size: usize) -> OffsetResult {
    let end = skip.saturating_add(size);
    let stop = end.max(COUNT_LIMIT).saturating_add(1);
    let mut items = Vec::with_capacity(size.min(1000));
    let mut count = 0usize;
    for p in iter {
        if count >= skip && count < end {
            items.push(p.clone());
        }
        count += 1;
        if count >= stop {
            return OffsetResult { items, total: None, has_next: true };
        }
    }
    OffsetResult { items, total: (count <= COUNT_LIMIT).then_some(count), has_next: count > end }
}

fn select_offset(shared: &Shared, query: &ListQuery, skip: usize, size: usize) -> OffsetResult {
    let store = shared.projects();
    let range = id_range(&store.items, query);
    let id_order = query.order_by == OrderBy::Id || (query.order_by == OrderBy::CreatedAt && store.created_follows_id);
    if id_order && !query.has_filters() {
        // No scan: the range is the list, so the page is a sub-slice.
        let total = range.len();
        let end = skip.saturating_add(size).min(total);
        let start = skip.min(total);
        let items = if query.ascending {
            range[start..end].to_vec()
        } else {
            range[total - end..total - start].iter().rev().cloned().collect()
        };
        return OffsetResult { items, total: (total <= COUNT_LIMIT).then_some(total), has_next: total > end };
    }
    if id_order {
        return if query.ascending {
            scan(range.iter().filter(|p| query.matches(p)), skip, size)
        } else {
            scan(range.iter().rev().filter(|p| query.matches(p)), skip, size)
        };
    }
    // Other orders need a sort of the matching projects (GitLab adds the id as tie-breaker).
    let mut matching: Vec<&SimProject> = range.iter().filter(|p| query.matches(p)).collect();
    matching.sort_by(|a, b| {
        let by = match query.order_by {
            OrderBy::Name => a.name.as_deref().unwrap_or(a.path()).cmp(b.name.as_deref().unwrap_or(b.path())),
            OrderBy::Path => a.path().cmp(b.path()),
            OrderBy::UpdatedAt => a.updated_at.cmp(&b.updated_at),
            OrderBy::LastActivityAt => a.last_activity_at.cmp(&b.last_activity_at),
            OrderBy::StarCount => a.star_count.cmp(&b.star_count),
            OrderBy::CreatedAt | OrderBy::Id => a.created_at.cmp(&b.created_at),
        };
        let ordered = by.then(a.id.cmp(&b.id));
        if query.ascending { ordered } else { ordered.reverse() }
    });
    scan(matching.into_iter(), skip, size)
}

/// Offset pagination (`Gitlab::Pagination::OffsetPagination` and `OffsetHeaderBuilder`).
fn offset_page(
    shared: &Shared,
    ctx: &ReqCtx,
    params: &Params<'_>,
    query: &ListQuery,
    token: Option<&TokenEntry>,
    mode: &ListingMode,
) -> Response {
    let size = match mode {
        ListingMode::HugePage(n) => *n,
        _ => query.per_page,
    };
    let page = usize::try_from(query.page).unwrap_or(usize::MAX);
    let skip = (page - 1).saturating_mul(size);
    let mut result = select_offset(shared, query, skip, size);
    if let (ListingMode::HugeTopId(id), false, OrderBy::Id) = (mode, query.ascending, query.order_by) {
        result.items.iter_mut().take(1).for_each(|p| p.id = *id);
    }
    let total_pages = result.total.map(|t| t.div_ceil(size.max(1)).max(1));
    let out_of_range = total_pages.map_or(result.items.is_empty() && page > 1, |pages| page > pages);
    let next = (result.has_next && !out_of_range).then(|| page + 1);
    let prev = (page > 1 && !out_of_range).then(|| page - 1);

    let mut response = projects_response(shared, ctx, &result.items, query.simple, token);
    let per_page = query.per_page_raw.to_string();
    let at =
        |n: usize, origin: &str| link(ctx, params, &[("page", n.to_string()), ("per_page", per_page.clone())], origin);
    let mut links = Vec::new();
    if let Some(prev) = prev {
        links.push(format!("<{}>; rel=\"prev\"", at(prev, &ctx.origin)));
    }
    if let Some(next) = next {
        let target = if *mode == ListingMode::StuckCursor { page } else { next };
        links.push(format!("<{}>; rel=\"next\"", at(target, &next_origin(ctx, mode))));
    }
    links.push(format!("<{}>; rel=\"first\"", at(1, &ctx.origin)));
    if let Some(pages) = total_pages {
        links.push(format!("<{}>; rel=\"last\"", at(pages, &ctx.origin)));
    }
    let show = |n: Option<usize>| n.map(|n| n.to_string()).unwrap_or_default();
    let headers = response.headers_mut();
    set_header(headers, "x-per-page", &query.per_page.to_string());
    set_header(headers, "x-page", &page.to_string());
    set_header(headers, "x-next-page", &show(next));
    set_header(headers, "x-prev-page", &show(prev));
    set_header(headers, "link", &links.join(", "));
    if let (Some(total), Some(pages)) = (result.total, total_pages) {
        set_header(headers, "x-total", &total.to_string());
        set_header(headers, "x-total-pages", &pages.to_string());
    }
    response
}

fn projects_response(
    shared: &Shared,
    ctx: &ReqCtx,
    page: &[SimProject],
    simple: bool,
    token: Option<&TokenEntry>,
) -> Response {
    let admin = token.is_some_and(|t| t.token.user.is_admin);
    let body: Vec<ProjectJson> = page.iter().map(|p| project_json(shared, ctx, p, simple, admin)).collect();
    ok_json(&body)
}

/// `GET /projects/:id`, `GET /projects/:id/languages` and
/// `GET /projects/:id/repository/branches/:branch`; `:id` is a number or a URL-encoded full path.
pub(crate) fn by_id(shared: &Shared, ctx: &ReqCtx, rest: &str) -> Response {
    let (id_part, sub) = rest.split_once('/').unwrap_or((rest, ""));
    let branch = sub.strip_prefix("repository/branches/").map(percent_decode);
    if (!matches!(sub, "" | "languages") && branch.is_none()) || id_part.is_empty() {
        return json(StatusCode::NOT_FOUND, &serde_json::json!({"error": "404 Not Found"}));
    }
    if ctx.method != Method::GET && ctx.method != Method::HEAD {
        return method_not_allowed(if sub.is_empty() {
            "OPTIONS, GET, HEAD, PUT, DELETE"
        } else {
            "OPTIONS, GET, HEAD"
        });
    }
    let token = match authenticate_optional(shared, ctx, Scopes::Only(&API_WIDE)) {
        Ok(token) => token,
        Err(denied) => return denied.into_response(),
    };
    let Some(project) = lookup(shared, id_part, token.as_ref().map(|t| &t.token.user)) else {
        return project_not_found();
    };
    if sub == "languages" {
        return languages(&project);
    }
    if let Some(branch) = branch {
        return branch_json(&project, &branch);
    }
    let admin = token.as_ref().is_some_and(|t| t.token.user.is_admin);
    ok_json(&project_json(shared, ctx, &project, token.is_none(), admin))
}

/// The project `id_part` names (a number or a URL-encoded full path) if `user` may read it.
pub(crate) fn lookup(shared: &Shared, id_part: &str, user: Option<&crate::config::SimUser>) -> Option<SimProject> {
    let wanted = percent_decode(id_part);
    let store = shared.projects();
    let project = match wanted.parse::<u64>() {
        Ok(id) => store.get(id),
        // GitLab finds projects by full path case-insensitively.
        Err(_) => store.items.iter().find(|p| p.path_with_namespace.eq_ignore_ascii_case(&wanted)),
    };
    project.filter(|p| p.readable_by(user)).cloned()
}

/// `Entities::Branch` (doc/api/branches.md), read from the project's repository with `git`.
fn branch_json(project: &SimProject, branch: &str) -> Response {
    let not_found = || json(StatusCode::NOT_FOUND, &serde_json::json!({"message": "404 Branch Not Found"}));
    let safe = !branch.is_empty()
        && !branch.starts_with('-')
        && !branch.contains("..")
        && !branch.chars().any(|c| c.is_control() || matches!(c, '*' | '?' | '[' | '\\' | ' ' | '~' | '^' | ':'));
    let Some(repo) = project.repo.as_ref().filter(|_| safe) else { return not_found() };
    let Some(sha) = ref_sha(repo, &format!("refs/heads/{branch}")) else { return not_found() };
    ok_json(&serde_json::json!({
        "name": branch,
        "commit": { "id": sha, "short_id": &sha[..8], "title": "commit", "message": "commit\n" },
        "merged": false,
        "protected": project.default_branch.as_deref() == Some(branch),
        "default": project.default_branch.as_deref() == Some(branch),
        "developers_can_push": false,
        "developers_can_merge": false,
        "can_push": false,
        "web_url": format!("https://gitlab.example.com/{}/-/tree/{branch}", project.path_with_namespace),
    }))
}

/// The commit a full ref name points at in a bare repository (`git for-each-ref`, which takes
/// the name as a pattern argument, never as an option).
pub(crate) fn ref_sha(repo: &std::path::Path, full_ref: &str) -> Option<String> {
    let out = std::process::Command::new("git")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .arg("--git-dir")
        .arg(repo)
        .args(["for-each-ref", "--format=%(objectname)"])
        .arg(full_ref)
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let sha = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit())).then_some(sha)
}

/// `{"Ruby": 66.69, "JavaScript": 22.98}`, largest share first (RepositoryLanguagesService).
fn languages(project: &SimProject) -> Response {
    let entries: Vec<String> = project
        .languages
        .iter()
        .map(|(name, share)| {
            let name = serde_json::to_string(name).unwrap_or_default();
            format!("{name}:{}", serde_json::Value::from(f64::from(*share) / 100.0))
        })
        .collect();
    let mut response = with_body(StatusCode::OK, "application/json", format!("{{{}}}", entries.join(",")).into());
    set_header(response.headers_mut(), "cache-control", "max-age=0, private, must-revalidate");
    response
}

// ---------------------------------------------------------------------------------------------
// Entities

/// `Entities::NamespaceBasic`.
#[derive(Serialize)]
struct NamespaceJson {
    id: u64,
    name: String,
    path: String,
    kind: &'static str,
    full_path: String,
    parent_id: Option<u64>,
    avatar_url: Option<String>,
    web_url: String,
}

#[derive(Serialize)]
struct AccessJson {
    access_level: i64,
    notification_level: u64,
}

#[derive(Serialize)]
struct PermissionsJson {
    project_access: Option<AccessJson>,
    group_access: Option<AccessJson>,
}

#[derive(Serialize)]
struct LinksJson {
    #[serde(rename = "self")]
    self_: String,
    issues: String,
    merge_requests: String,
    repo_branches: String,
    labels: String,
    events: String,
    members: String,
    cluster_agents: String,
}

/// What `Entities::ProjectWithAccess` adds to `BasicProjectDetails` (via `ProjectDetails` and
/// `Project`), in GitLab's order; CI settings shown to maintainers are a representative subset.
#[derive(Serialize)]
struct FullJson {
    container_registry_image_prefix: String,
    _links: LinksJson,
    packages_enabled: bool,
    empty_repo: bool,
    archived: bool,
    visibility: String,
    resolve_outdated_diff_discussions: bool,
    repository_object_format: &'static str,
    issues_enabled: bool,
    merge_requests_enabled: bool,
    wiki_enabled: bool,
    jobs_enabled: bool,
    snippets_enabled: bool,
    container_registry_enabled: bool,
    service_desk_enabled: bool,
    can_create_merge_request_in: bool,
    issues_access_level: &'static str,
    repository_access_level: &'static str,
    merge_requests_access_level: &'static str,
    forking_access_level: &'static str,
    wiki_access_level: &'static str,
    builds_access_level: &'static str,
    snippets_access_level: &'static str,
    pages_access_level: &'static str,
    analytics_access_level: &'static str,
    container_registry_access_level: &'static str,
    security_and_compliance_access_level: &'static str,
    releases_access_level: &'static str,
    environments_access_level: &'static str,
    feature_flags_access_level: &'static str,
    infrastructure_access_level: &'static str,
    monitor_access_level: &'static str,
    model_experiments_access_level: &'static str,
    model_registry_access_level: &'static str,
    emails_disabled: bool,
    emails_enabled: bool,
    shared_runners_enabled: bool,
    lfs_enabled: bool,
    creator_id: u64,
    import_url: Option<String>,
    import_type: Option<String>,
    import_status: &'static str,
    open_issues_count: u64,
    description_html: String,
    updated_at: String,
    ci_default_git_depth: u64,
    ci_forward_deployment_enabled: bool,
    ci_job_token_scope_enabled: bool,
    ci_separated_caches: bool,
    build_git_strategy: &'static str,
    keep_latest_artifact: bool,
    restrict_user_defined_variables: bool,
    group_runners_enabled: bool,
    auto_cancel_pending_pipelines: &'static str,
    build_timeout: u64,
    auto_devops_enabled: bool,
    auto_devops_deploy_strategy: &'static str,
    ci_config_path: Option<String>,
    public_jobs: bool,
    shared_with_groups: Vec<()>,
    only_allow_merge_if_pipeline_succeeds: bool,
    allow_merge_on_skipped_pipeline: Option<bool>,
    request_access_enabled: bool,
    only_allow_merge_if_all_discussions_are_resolved: bool,
    remove_source_branch_after_merge: bool,
    printing_merge_request_link_enabled: bool,
    merge_method: &'static str,
    squash_option: &'static str,
    enforce_auth_checks_on_uploads: bool,
    suggestion_commit_message: Option<String>,
    merge_commit_template: Option<String>,
    squash_commit_template: Option<String>,
    issue_branch_template: Option<String>,
    warn_about_potentially_unwanted_characters: bool,
    autoclose_referenced_issues: bool,
    max_artifacts_size: Option<u64>,
    marked_for_deletion_at: Option<String>,
    marked_for_deletion_on: Option<String>,
    permissions: PermissionsJson,
}

/// `Entities::BasicProjectDetails` (`simple=true`, or no token), plus [`FullJson`] otherwise.
#[derive(Serialize)]
struct ProjectJson {
    id: u64,
    description: Option<String>,
    name: String,
    name_with_namespace: String,
    path: String,
    path_with_namespace: String,
    created_at: String,
    default_branch: Option<String>,
    tag_list: Vec<String>,
    topics: Vec<String>,
    ssh_url_to_repo: String,
    http_url_to_repo: String,
    web_url: String,
    readme_url: Option<String>,
    forks_count: u64,
    avatar_url: Option<String>,
    star_count: u64,
    last_activity_at: String,
    namespace: NamespaceJson,
    /// Only for administrators (`change_repository_storage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    repository_storage: Option<&'static str>,
    #[serde(flatten)]
    full: Option<Box<FullJson>>,
}

/// Namespace ids only need to be stable and distinct per path.
fn namespace_id(path: &str) -> u64 {
    10 + fnv1a(path.as_bytes()) % 100_000_000
}

fn project_json(shared: &Shared, ctx: &ReqCtx, project: &SimProject, simple: bool, admin: bool) -> ProjectJson {
    let namespace_path = project.namespace_path();
    let path = project.path();
    let name = project.name.clone().unwrap_or_else(|| path.to_string());
    let namespace_name = namespace_path.rsplit('/').next().unwrap_or(namespace_path);
    let parent_id = namespace_path.rsplit_once('/').map(|(parent, _)| namespace_id(parent));
    let root = format!("{}{}", ctx.origin, ctx.base_path);
    let web_url = format!("{root}/{}", project.path_with_namespace);
    let host = host_name(&ctx.origin);
    let api = format!("{root}/api/v4/projects/{}", project.id);
    let name_with_namespace = {
        let mut parts: Vec<&str> = namespace_path.split('/').filter(|s| !s.is_empty()).collect();
        parts.push(&name);
        parts.join(" / ")
    };
    let full = (!simple).then(|| {
        Box::new(FullJson {
            container_registry_image_prefix: format!("registry.{host}/{}", project.path_with_namespace),
            _links: LinksJson {
                self_: api.clone(),
                issues: format!("{api}/issues"),
                merge_requests: format!("{api}/merge_requests"),
                repo_branches: format!("{api}/repository/branches"),
                labels: format!("{api}/labels"),
                events: format!("{api}/events"),
                members: format!("{api}/members"),
                cluster_agents: format!("{api}/cluster_agents"),
            },
            packages_enabled: true,
            empty_repo: project.empty_repo,
            archived: project.archived,
            visibility: project.visibility.clone(),
            resolve_outdated_diff_discussions: false,
            repository_object_format: "sha1",
            issues_enabled: true,
            merge_requests_enabled: true,
            wiki_enabled: true,
            jobs_enabled: true,
            snippets_enabled: true,
            container_registry_enabled: true,
            service_desk_enabled: false,
            can_create_merge_request_in: true,
            issues_access_level: "enabled",
            repository_access_level: "enabled",
            merge_requests_access_level: "enabled",
            forking_access_level: "enabled",
            wiki_access_level: "enabled",
            builds_access_level: "enabled",
            snippets_access_level: "enabled",
            pages_access_level: "private",
            analytics_access_level: "enabled",
            container_registry_access_level: "enabled",
            security_and_compliance_access_level: "private",
            releases_access_level: "enabled",
            environments_access_level: "enabled",
            feature_flags_access_level: "enabled",
            infrastructure_access_level: "enabled",
            monitor_access_level: "enabled",
            model_experiments_access_level: "enabled",
            model_registry_access_level: "enabled",
            emails_disabled: false,
            emails_enabled: true,
            shared_runners_enabled: true,
            lfs_enabled: true,
            creator_id: 101,
            import_url: None,
            import_type: None,
            import_status: "none",
            open_issues_count: project.open_issues_count,
            description_html: project
                .description
                .as_deref()
                .map(|d| format!("<p data-sourcepos=\"1:1-1:{}\" dir=\"auto\">{}</p>", d.len(), html_escape(d)))
                .unwrap_or_default(),
            updated_at: timestamp(project.updated_at),
            ci_default_git_depth: 20,
            ci_forward_deployment_enabled: true,
            ci_job_token_scope_enabled: false,
            ci_separated_caches: true,
            build_git_strategy: "fetch",
            keep_latest_artifact: true,
            restrict_user_defined_variables: false,
            group_runners_enabled: true,
            auto_cancel_pending_pipelines: "enabled",
            build_timeout: 3600,
            auto_devops_enabled: false,
            auto_devops_deploy_strategy: "continuous",
            ci_config_path: None,
            public_jobs: true,
            shared_with_groups: Vec::new(),
            only_allow_merge_if_pipeline_succeeds: false,
            allow_merge_on_skipped_pipeline: None,
            request_access_enabled: true,
            only_allow_merge_if_all_discussions_are_resolved: false,
            remove_source_branch_after_merge: true,
            printing_merge_request_link_enabled: true,
            merge_method: "merge",
            squash_option: "default_off",
            enforce_auth_checks_on_uploads: true,
            suggestion_commit_message: None,
            merge_commit_template: None,
            squash_commit_template: None,
            issue_branch_template: None,
            warn_about_potentially_unwanted_characters: true,
            autoclose_referenced_issues: true,
            max_artifacts_size: None,
            marked_for_deletion_at: project.marked_for_deletion_on.map(date),
            marked_for_deletion_on: project.marked_for_deletion_on.map(date),
            permissions: PermissionsJson {
                project_access: Some(AccessJson { access_level: ACCESS_LEVEL, notification_level: 3 }),
                group_access: None,
            },
        })
    });
    ProjectJson {
        id: project.id,
        description: project.description.clone(),
        name,
        name_with_namespace,
        path: path.to_string(),
        path_with_namespace: project.path_with_namespace.clone(),
        created_at: timestamp(project.created_at),
        // `default_branch_or_main`, when the instance is set to expose it.
        default_branch: project.default_branch.clone().or_else(|| shared.empty_repo_default_branch.clone()),
        tag_list: project.topics.clone(),
        topics: project.topics.clone(),
        ssh_url_to_repo: format!("git@{host}:{}.git", project.path_with_namespace),
        http_url_to_repo: format!("{web_url}.git"),
        readme_url: project.default_branch.as_ref().map(|b| format!("{web_url}/-/blob/{b}/README.md")),
        web_url,
        forks_count: project.forks_count,
        avatar_url: None,
        star_count: project.star_count,
        last_activity_at: timestamp(project.last_activity_at),
        namespace: NamespaceJson {
            id: namespace_id(namespace_path),
            name: namespace_name.to_string(),
            path: namespace_name.to_string(),
            kind: "group",
            full_path: namespace_path.to_string(),
            parent_id,
            avatar_url: None,
            web_url: format!("{root}/groups/{namespace_path}"),
        },
        repository_storage: admin.then_some("default"),
        full,
    }
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(id: u64) -> SimProject {
        SimProject::new(id, &format!("g/p{id}"))
    }

    #[test]
    fn scan_counts_no_further_than_gitlab() {
        let items: Vec<SimProject> = (1..=12_000).map(project).collect();
        let r = scan(items.iter(), 0, 100);
        assert_eq!(r.items.len(), 100);
        assert_eq!(r.total, None);
        assert!(r.has_next);
        let r = scan(items[..10_000].iter(), 9_950, 100);
        assert_eq!(r.items.len(), 50);
        assert_eq!(r.total, Some(10_000));
        assert!(!r.has_next);
        let r = scan(items[..10_001].iter(), 0, 20);
        assert_eq!(r.total, None);
    }

    #[test]
    fn params_are_validated_like_grape() {
        let check = |q: &str| ListQuery::parse(&Params::parse(q), false).err();
        assert_eq!(check("per_page=0").as_deref(), Some("per_page has a value not allowed"));
        assert_eq!(check("per_page=-1").as_deref(), Some("per_page does not have a valid value"));
        assert_eq!(check("page=x").as_deref(), Some("page is invalid"));
        assert_eq!(check("order_by=stars").as_deref(), Some("order_by does not have a valid value"));
        assert_eq!(check("archived=maybe").as_deref(), Some("archived is invalid"));
        assert_eq!(check("visibility=secret").as_deref(), Some("visibility does not have a valid value"));
        assert_eq!(check("per_page=1000&archived=false&simple=1&topic=a,b"), None);
        let q =
            ListQuery::parse(&Params::parse("per_page=1000&search=Foo%20bar"), false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(q.per_page, 100);
        assert_eq!(q.per_page_raw, 1000);
        assert_eq!(q.search.as_deref(), Some("foo bar"));
    }
}
