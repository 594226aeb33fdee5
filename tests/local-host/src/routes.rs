//! The deployed HTTP API's routing, as API Gateway does it: a request reaches a function only
//! when a route of the template matches its method and path; anything else is answered by the
//! gateway itself with 404 `{"message":"Not Found"}`, before any function or authorizer runs.

/// One route of the template's HTTP API (or a SAM `HttpApi` / `Api` event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRoute {
    /// `GET`, `POST`, ... or `ANY`; `$default` routes have `ANY`.
    pub method: String,
    /// Path template (`/integrations/gitlab/{id}`), or `$default`.
    pub path: String,
    /// Logical id of the function the route invokes.
    pub function: String,
}

impl ApiRoute {
    /// Parses a route key (`POST /integrations/gitlab`, `ANY /{proxy+}`, `$default`).
    pub fn from_route_key(key: &str, function: impl Into<String>) -> Option<Self> {
        let function = function.into();
        if key.trim() == "$default" {
            return Some(Self { method: "ANY".into(), path: "$default".into(), function });
        }
        let (method, path) = key.trim().split_once(' ')?;
        let path = path.trim();
        if !path.starts_with('/') || method.is_empty() {
            return None;
        }
        Some(Self { method: method.to_ascii_uppercase(), path: path.to_owned(), function })
    }

    /// How well the route matches a request, lower is better; `None` when it does not match.
    /// Order: a literal or single-segment `{var}` match of path and method, then `ANY` on such
    /// a path, then a greedy `{var+}` path, then `$default`; among equals, fewer variables win.
    fn rank(&self, method: &str, path: &str) -> Option<(u8, u8, usize)> {
        let method_rank = match self.method.as_str() {
            "ANY" => 1,
            m if m.eq_ignore_ascii_case(method) => 0,
            _ => return None,
        };
        if self.path == "$default" {
            return Some((3, method_rank, 0));
        }
        let pattern: Vec<&str> = self.path.split('/').skip(1).collect();
        let actual: Vec<&str> = path.split('/').skip(1).collect();
        let mut variables = 0;
        for (i, want) in pattern.iter().enumerate() {
            let is_var = want.starts_with('{') && want.ends_with('}');
            if is_var && want.ends_with("+}") {
                // Greedy: at least one more segment, all of the rest.
                let rest = actual.get(i..).unwrap_or_default();
                return (!rest.is_empty() && rest.iter().all(|s| !s.is_empty())).then_some((
                    2,
                    method_rank,
                    variables + 1,
                ));
            }
            let got = actual.get(i)?;
            if is_var {
                if got.is_empty() {
                    return None;
                }
                variables += 1;
            } else if want != got {
                return None;
            }
        }
        (pattern.len() == actual.len()).then_some((0, method_rank, variables))
    }
}

/// The route API Gateway selects for a request, if any.
pub fn select<'a>(routes: &'a [ApiRoute], method: &str, path: &str) -> Option<&'a ApiRoute> {
    routes
        .iter()
        .filter_map(|r| r.rank(method, path).map(|rank| (rank, r)))
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, r)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(key: &str) -> ApiRoute {
        ApiRoute::from_route_key(key, key).expect("route key")
    }

    #[test]
    fn selects_like_api_gateway() {
        let routes = vec![
            route("POST /integrations/gitlab/preflight"),
            route("GET /integrations/gitlab"),
            route("GET /integrations/gitlab/{id}"),
            route("DELETE /integrations/gitlab/{id}"),
            route("GET /integrations/gitlab/{id}/sync"),
        ];
        let chosen = |m: &str, p: &str| select(&routes, m, p).map(|r| r.function.as_str());
        assert_eq!(chosen("POST", "/integrations/gitlab/preflight"), Some("POST /integrations/gitlab/preflight"));
        assert_eq!(chosen("GET", "/integrations/gitlab/abc"), Some("GET /integrations/gitlab/{id}"));
        // A literal segment is also a value of a variable: the method decides.
        assert_eq!(chosen("GET", "/integrations/gitlab/preflight"), Some("GET /integrations/gitlab/{id}"));
        assert_eq!(chosen("PATCH", "/integrations/gitlab"), None);
        assert_eq!(chosen("GET", "/integrations/gitlab/"), None);
        assert_eq!(chosen("GET", "/integrations/gitlab/abc/repositories"), None);
        assert_eq!(chosen("POST", "/integrations/gitlab/abc/sync"), None);
    }

    #[test]
    fn any_greedy_and_default_rank_below_exact_routes() {
        let routes =
            vec![route("GET /pets/{id}"), route("ANY /pets/{id}"), route("GET /pets/{proxy+}"), route("$default")];
        let chosen = |m: &str, p: &str| select(&routes, m, p).map(|r| r.function.as_str());
        assert_eq!(chosen("GET", "/pets/1"), Some("GET /pets/{id}"));
        assert_eq!(chosen("PUT", "/pets/1"), Some("ANY /pets/{id}"));
        assert_eq!(chosen("GET", "/pets/1/toys"), Some("GET /pets/{proxy+}"));
        assert_eq!(chosen("POST", "/elsewhere"), Some("$default"));
        assert_eq!(ApiRoute::from_route_key("nonsense", "F"), None);
    }
}
