//! Drives a running simulator over real HTTPS with reqwest, trusting only the generated CA.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use gitlab_sim::{
    AuthSeen, Behaviour, FOREIGN_ORIGIN, ListingMode, RateLimit, RateLimitStyle, RunningSim, SimConfig, SimProject,
    SimToken, SimUser, TokenKind, demo, start, start_dns,
};
use reqwest::{Certificate, Client, StatusCode};
use serde_json::Value;

#[path = "sim/git_http.rs"]
mod git_http;
#[path = "sim/merge_requests.rs"]
mod merge_requests;

const LOCAL: &str = "127.0.0.1:0";

async fn sim_with(config: SimConfig) -> RunningSim {
    start(config, LOCAL.parse().unwrap()).await.unwrap()
}

async fn sim() -> RunningSim {
    sim_with(SimConfig::default()).await
}

fn client(sim: &RunningSim) -> Client {
    client_builder(sim).build().unwrap()
}

fn client_builder(sim: &RunningSim) -> reqwest::ClientBuilder {
    Client::builder()
        .tls_certs_only([Certificate::from_pem(sim.ca_pem.as_bytes()).unwrap()])
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
}

async fn get(sim: &RunningSim, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = client(sim).get(format!("{}{path}", sim.base_url()));
    if let Some(token) = token {
        request = request.header("PRIVATE-TOKEN", token);
    }
    request.send().await.unwrap()
}

async fn get_bearer(sim: &RunningSim, path: &str, token: &str) -> reqwest::Response {
    client(sim).get(format!("{}{path}", sim.base_url())).bearer_auth(token).send().await.unwrap()
}

async fn json_of(response: reqwest::Response) -> Value {
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("application/json"), "content type {content_type}");
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

#[tokio::test]
async fn version_and_user_for_a_good_token() {
    let sim = sim().await;
    let response = get(&sim, "/api/v4/version", Some(demo::API)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!header(&response, "x-request-id").is_empty());
    let body = json_of(response).await;
    assert_eq!(body["version"], "17.8.1-ee");
    assert_eq!(body["revision"].as_str().unwrap().len(), 11);
    assert_eq!(body["enterprise"], true);

    let user = json_of(get(&sim, "/api/v4/user", Some(demo::API)).await).await;
    assert_eq!(user["id"], 101);
    assert_eq!(user["username"], "demo-user");
    assert_eq!(user["state"], "active");
    assert_eq!(user["bot"], false);
    assert!(user.get("is_admin").is_none(), "is_admin only for admins");
    assert_eq!(user["web_url"], format!("{}/demo-user", sim.base_url()));
    assert!(user["avatar_url"].as_str().unwrap().starts_with("https://"));
    assert!(user["created_at"].as_str().unwrap().ends_with('Z'));

    let admin = json_of(get(&sim, "/api/v4/user", Some(demo::SUDO)).await).await;
    assert_eq!(admin["is_admin"], true);
    assert_eq!(admin["username"], "root");

    let bot = json_of(get(&sim, "/api/v4/user", Some(demo::PROJECT_BOT)).await).await;
    assert_eq!(bot["bot"], true);
    assert_eq!(bot["username"], "project_1_bot_4c1a2f");
}

#[tokio::test]
async fn personal_access_token_self() {
    let sim = sim().await;
    let body = json_of(get(&sim, "/api/v4/personal_access_tokens/self", Some(demo::EXPIRING)).await).await;
    let today = time::OffsetDateTime::now_utc().date();
    let in_three = today + time::Duration::days(3);
    assert_eq!(body["expires_at"], in_three.to_string());
    assert_eq!(body["active"], true);
    assert_eq!(body["revoked"], false);
    assert_eq!(body["user_id"], 101);
    assert_eq!(body["scopes"], serde_json::json!(["api", "read_repository"]));
    assert_eq!(body["last_used_ips"], serde_json::json!(["127.0.0.1"]));
    assert!(body["last_used_at"].is_string());
    for key in ["id", "name", "created_at", "description", "scopes", "user_id", "expires_at"] {
        assert!(body.get(key).is_some(), "missing {key}");
    }

    // Any scope may read its own token, and project tokens are personal-access-token rows.
    let narrow = get(&sim, "/api/v4/personal_access_tokens/self", Some(demo::READ_REPO)).await;
    assert_eq!(narrow.status(), StatusCode::OK);
    let bot = get(&sim, "/api/v4/personal_access_tokens/self", Some(demo::PROJECT_BOT)).await;
    assert_eq!(bot.status(), StatusCode::OK);

    // Bearer works for personal access tokens too.
    let bearer = get_bearer(&sim, "/api/v4/personal_access_tokens/self", demo::API).await;
    assert_eq!(bearer.status(), StatusCode::OK);
}

#[tokio::test]
async fn bad_tokens_get_gitlabs_answers() {
    let sim = sim().await;
    for path in ["/api/v4/user", "/api/v4/version", "/api/v4/personal_access_tokens/self"] {
        let missing = get(&sim, path, None).await;
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(json_of(missing).await, serde_json::json!({"message": "401 Unauthorized"}));

        let unknown = get(&sim, path, Some("glpat-not-a-token")).await;
        assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(json_of(unknown).await, serde_json::json!({"message": "401 Unauthorized"}));

        let expired = get(&sim, path, Some(demo::EXPIRED)).await;
        assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
        assert!(header(&expired, "www-authenticate").contains("error=\"invalid_token\""));
        assert_eq!(
            json_of(expired).await,
            serde_json::json!({
                "error": "invalid_token",
                "error_description": "Token is expired. You can either do re-authorization or token refresh."
            })
        );

        let revoked = get(&sim, path, Some(demo::REVOKED)).await;
        assert_eq!(revoked.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            json_of(revoked).await,
            serde_json::json!({
                "error": "invalid_token",
                "error_description": "Token was revoked. You have to re-authorize from the user."
            })
        );
    }
}

#[tokio::test]
async fn expires_at_today_counts_as_expired() {
    let today = time::OffsetDateTime::now_utc().date();
    let user = SimUser { id: 5, username: "u".into(), name: "U".into(), bot: false, is_admin: false };
    let config = SimConfig {
        tokens: vec![SimToken {
            token: "glpat-today".into(),
            kind: TokenKind::Personal,
            scopes: vec!["api".into()],
            expires_at: Some(today),
            expired: false,
            revoked: false,
            user,
        }],
        ..SimConfig::default()
    };
    let sim = sim_with(config).await;
    let response = get(&sim, "/api/v4/user", Some("glpat-today")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(response).await["error"], "invalid_token");
}

#[tokio::test]
async fn wrong_scope_is_403_with_accepted_scopes() {
    let sim = sim().await;
    let cases = [
        ("/api/v4/user", "read_user api read_api"),
        ("/api/v4/version", "read_user ai_features api read_api"),
        ("/api/v4/projects", "api read_api"),
    ];
    for (path, scopes) in cases {
        let response = get(&sim, path, Some(demo::READ_REPO)).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(header(&response, "www-authenticate").is_empty());
        assert_eq!(
            json_of(response).await,
            serde_json::json!({
                "error": "insufficient_scope",
                "error_description": "The request requires higher privileges than provided by the access token.",
                "scope": scopes
            })
        );
    }
    // read_api covers GET /user and /version.
    let readonly = get(&sim, "/api/v4/user", Some(demo::READONLY)).await;
    assert_eq!(readonly.status(), StatusCode::OK);
    let readonly = get(&sim, "/api/v4/version", Some(demo::READONLY)).await;
    assert_eq!(readonly.status(), StatusCode::OK);
}

#[tokio::test]
async fn oauth_tokens() {
    let sim = sim().await;
    let user = get_bearer(&sim, "/api/v4/user", demo::OAUTH).await;
    assert_eq!(user.status(), StatusCode::OK);
    assert_eq!(json_of(user).await["username"], "demo-user");

    // OAuth tokens are not personal access tokens, so PRIVATE-TOKEN cannot carry them.
    let as_private = get(&sim, "/api/v4/user", Some(demo::OAUTH)).await;
    assert_eq!(as_private.status(), StatusCode::UNAUTHORIZED);

    let own = get_bearer(&sim, "/api/v4/personal_access_tokens/self", demo::OAUTH).await;
    assert_eq!(own.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        json_of(own).await,
        serde_json::json!({
            "message": "400 Bad request - This endpoint requires token type to be a personal access token"
        })
    );

    let info = get_bearer(&sim, "/oauth/token/info", demo::OAUTH).await;
    assert_eq!(info.status(), StatusCode::OK);
    let info = json_of(info).await;
    assert_eq!(info["resource_owner_id"], 101);
    assert_eq!(info["scope"], serde_json::json!(["api"]));
    assert_eq!(info["scopes"], info["scope"]);
    let expires_in = info["expires_in"].as_i64().unwrap();
    assert!((7100..=7200).contains(&expires_in), "{expires_in}");
    assert_eq!(info["expires_in_seconds"], info["expires_in"]);
    assert_eq!(info["application"]["uid"].as_str().unwrap().len(), 64);
    assert!(info["created_at"].as_i64().unwrap() > 1_700_000_000);

    for token in [demo::API, "gloas-unknown"] {
        let rejected = get_bearer(&sim, "/oauth/token/info", token).await;
        assert_eq!(rejected.status(), StatusCode::UNAUTHORIZED);
        assert!(header(&rejected, "www-authenticate").starts_with("Bearer realm=\"Doorkeeper\""));
        assert_eq!(
            json_of(rejected).await,
            serde_json::json!({"error": "invalid_token", "error_description": "The access token is invalid"})
        );
    }
}

#[tokio::test]
async fn runtime_token_changes() {
    let sim = sim().await;
    assert_eq!(get(&sim, "/api/v4/user", Some(demo::API)).await.status(), StatusCode::OK);
    let mut token = SimConfig::default().tokens.into_iter().find(|t| t.token == demo::API).unwrap();
    token.revoked = true;
    sim.upsert_token(token);
    let response = get(&sim, "/api/v4/user", Some(demo::API)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        json_of(response).await["error_description"],
        "Token was revoked. You have to re-authorize from the user."
    );

    // Self-revocation through the API.
    let response = client(&sim)
        .delete(format!("{}/api/v4/personal_access_tokens/self", sim.base_url()))
        .header("PRIVATE-TOKEN", demo::READONLY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = get(&sim, "/api/v4/user", Some(demo::READONLY)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn projects_are_paginated() {
    let sim = sim().await;
    let response = get(&sim, "/api/v4/projects?membership=true&per_page=2", Some(demo::READONLY)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-total"), "3");
    assert_eq!(header(&response, "x-total-pages"), "2");
    assert_eq!(header(&response, "x-page"), "1");
    assert_eq!(header(&response, "x-per-page"), "2");
    assert_eq!(header(&response, "x-next-page"), "2");
    assert_eq!(header(&response, "x-prev-page"), "");
    let link = header(&response, "link");
    assert!(link.contains("membership=true&page=2&per_page=2>; rel=\"next\""), "{link}");
    assert!(link.contains("rel=\"last\""));
    let page1 = json_of(response).await;
    assert_eq!(page1.as_array().unwrap().len(), 2);
    assert_eq!(page1[0]["path_with_namespace"], "demo/docs");
    assert_eq!(page1[0]["default_branch"], Value::Null);
    assert_eq!(page1[0]["empty_repo"], true);
    assert_eq!(page1[0]["namespace"]["full_path"], "demo");

    let response = get(&sim, "/api/v4/projects?membership=true&per_page=2&page=2", Some(demo::READONLY)).await;
    assert_eq!(header(&response, "x-next-page"), "");
    assert_eq!(header(&response, "x-prev-page"), "1");
    let page2 = json_of(response).await;
    assert_eq!(page2.as_array().unwrap().len(), 1);
    assert_eq!(page2[0]["path_with_namespace"], "demo/backend");
    assert_eq!(page2[0]["visibility"], "private");

    // Keyset pagination follows the Link header only.
    let response =
        get(&sim, "/api/v4/projects?pagination=keyset&order_by=id&sort=asc&per_page=2", Some(demo::API)).await;
    let link = header(&response, "link");
    assert!(link.contains("id_after=2"), "{link}");
    assert_eq!(json_of(response).await[0]["id"], 1);

    // Without a token GitLab lists public projects in the simple form.
    let anonymous = json_of(get(&sim, "/api/v4/projects", None).await).await;
    assert_eq!(anonymous.as_array().unwrap().len(), 1);
    assert!(anonymous[0].get("visibility").is_none());
}

#[tokio::test]
async fn base_path_is_honoured() {
    let sim = sim_with(SimConfig { base_path: "/gitlab/".into(), ..SimConfig::default() }).await;
    assert!(sim.base_url().ends_with("/gitlab"));
    let inside = get(&sim, "/api/v4/version", Some(demo::API)).await;
    assert_eq!(inside.status(), StatusCode::OK);

    let root = format!("https://127.0.0.1:{}", sim.addr.port());
    let outside =
        client(&sim).get(format!("{root}/api/v4/version")).header("PRIVATE-TOKEN", demo::API).send().await.unwrap();
    assert_eq!(outside.status(), StatusCode::NOT_FOUND);
    assert!(header(&outside, "content-type").starts_with("text/html"));
    assert!(outside.text().await.unwrap().contains("nginx"));

    let info = get_bearer(&sim, "/oauth/token/info", demo::OAUTH).await;
    assert_eq!(info.status(), StatusCode::OK);
    let outside_info =
        client(&sim).get(format!("{root}/oauth/token/info")).bearer_auth(demo::OAUTH).send().await.unwrap();
    assert_eq!(outside_info.status(), StatusCode::NOT_FOUND);

    let user = json_of(get(&sim, "/api/v4/user", Some(demo::API)).await).await;
    assert_eq!(user["web_url"], format!("{}/demo-user", sim.base_url()));

    let unknown_api = get(&sim, "/api/v4/nothing-here", None).await;
    assert_eq!(unknown_api.status(), StatusCode::NOT_FOUND);
    assert_eq!(json_of(unknown_api).await, serde_json::json!({"error": "404 Not Found"}));

    let requests = sim.requests();
    assert!(requests.iter().any(|r| r.path == "/api/v4/version"));
    assert!(requests.iter().any(|r| r.path == "/gitlab/api/v4/version"));
}

#[tokio::test]
async fn tls_needs_the_ca_and_covers_the_names() {
    let sim = sim_with(SimConfig { cert_names: vec!["gitlab.sim.test".into()], ..SimConfig::default() }).await;
    let untrusting = Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let error = untrusting.get(format!("{}/api/v4/version", sim.base_url())).send().await.unwrap_err();
    assert!(error.is_connect(), "{error:?}");

    for host in ["localhost", "gitlab.sim.test", "127.0.0.1"] {
        let client = client_builder(&sim)
            .resolve(host, SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), sim.addr.port()))
            .build()
            .unwrap();
        let response = client
            .get(format!("{}/api/v4/version", sim.base_url_for(host)))
            .header("PRIVATE-TOKEN", demo::API)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{host}");
    }
    assert_eq!(sim.base_url_for("::1"), format!("https://[::1]:{}", sim.addr.port()));
}

#[tokio::test]
async fn requests_are_recorded_without_tokens() {
    let sim = sim().await;
    get(&sim, "/api/v4/user?x=1", Some(demo::API)).await;
    get_bearer(&sim, "/api/v4/version", demo::OAUTH).await;
    get(&sim, "/api/v4/version", None).await;
    let requests = sim.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, "/api/v4/user");
    assert_eq!(requests[0].query, "x=1");
    assert_eq!(requests[0].auth, AuthSeen::PrivateToken);
    assert_eq!(requests[1].auth, AuthSeen::Bearer);
    assert_eq!(requests[2].auth, AuthSeen::None);
    let dump = format!("{requests:?}");
    assert!(!dump.contains(demo::API) && !dump.contains(demo::OAUTH));
}

#[tokio::test]
async fn slow_headers() {
    let sim =
        sim_with(SimConfig { behaviour: Behaviour::SlowHeaders(Duration::from_millis(400)), ..SimConfig::default() })
            .await;
    let started = Instant::now();
    let response = get(&sim, "/api/v4/version", Some(demo::API)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(400));

    let impatient = client_builder(&sim).timeout(Duration::from_millis(150)).build().unwrap();
    let error = impatient.get(format!("{}/api/v4/version", sim.base_url())).send().await.unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
}

#[tokio::test]
async fn endless_body() {
    let sim = sim().await;
    sim.set_behaviour(Behaviour::EndlessBody);
    let mut response = get(&sim, "/api/v4/version", Some(demo::API)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(header(&response, "content-type").starts_with("application/json"));
    assert!(response.content_length().is_none());
    let mut received = 0usize;
    while received < 4 * 1024 * 1024 {
        let chunk = response.chunk().await.unwrap().expect("the body never ends");
        received += chunk.len();
    }
    drop(response);
    sim.shutdown().await;
}

#[tokio::test]
async fn huge_body() {
    let sim = sim().await;
    sim.set_behaviour(Behaviour::HugeBody(3_000_000));
    let response = get(&sim, "/api/v4/version", Some(demo::API)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.content_length(), Some(3_000_000));
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len(), 3_000_000);
    assert!(body.starts_with(b"{\"version\":\""));
}

#[tokio::test]
async fn redirect_html_and_not_found() {
    let sim = sim().await;
    sim.set_behaviour(Behaviour::Redirect("https://sso.example.test/login".into()));
    let response = get(&sim, "/api/v4/version", Some(demo::API)).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(header(&response, "location"), "https://sso.example.test/login");

    sim.set_behaviour(Behaviour::Html);
    let response = get(&sim, "/api/v4/user", Some(demo::API)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(header(&response, "content-type").starts_with("text/html"));
    assert!(response.text().await.unwrap().contains("Sign in"));

    sim.set_behaviour(Behaviour::NotFound);
    let response = get(&sim, "/oauth/token/info", None).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(header(&response, "content-type").starts_with("text/html"));

    sim.set_behaviour(Behaviour::Normal);
    let response = get(&sim, "/api/v4/version", Some(demo::API)).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn dns_stub_with_a_real_resolver() {
    use hickory_resolver::Resolver;
    use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
    use hickory_resolver::name_server::TokioConnectionProvider;

    let mut records = HashMap::new();
    records.insert(
        "GitLab.Sim.Test".to_string(),
        vec![IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)), IpAddr::V6("fd00::7".parse().unwrap())],
    );
    records.insert("v6only.sim.test.".to_string(), vec![IpAddr::V6(Ipv6Addr::LOCALHOST)]);
    let dns = start_dns(records, LOCAL.parse().unwrap()).await.unwrap();

    let servers = NameServerConfigGroup::from_ips_clear(&[dns.addr.ip()], dns.addr.port(), true);
    let mut builder = Resolver::builder_with_config(
        ResolverConfig::from_parts(None, vec![], servers),
        TokioConnectionProvider::default(),
    );
    builder.options_mut().ip_strategy = hickory_resolver::config::LookupIpStrategy::Ipv4AndIpv6;
    builder.options_mut().cache_size = 0;
    let resolver = builder.build();

    let found: Vec<IpAddr> = resolver.lookup_ip("gitlab.sim.test.").await.unwrap().iter().collect();
    assert!(found.contains(&IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))), "{found:?}");
    assert!(found.contains(&IpAddr::V6("fd00::7".parse().unwrap())), "{found:?}");

    let v4 = resolver.ipv4_lookup("v6only.sim.test.").await.unwrap_err();
    assert!(v4.is_no_records_found() && !v4.is_nx_domain(), "{v4:?}");
    let v6: Vec<_> = resolver.ipv6_lookup("V6ONLY.sim.test.").await.unwrap().iter().map(|r| r.0).collect();
    assert_eq!(v6, vec![Ipv6Addr::LOCALHOST]);

    let missing = resolver.lookup_ip("nowhere.sim.test.").await.unwrap_err();
    assert!(missing.is_nx_domain(), "{missing:?}");
    dns.shutdown();
}

// ---------------------------------------------------------------------------------------------
// Projects at scale

async fn get_url(sim: &RunningSim, url: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = client_builder(sim).timeout(Duration::from_secs(30)).build().unwrap().get(url);
    if let Some(token) = token {
        request = request.header("PRIVATE-TOKEN", token);
    }
    request.send().await.unwrap()
}

/// The URL of `rel="<rel>"` in a Link header.
fn rel(link: &str, rel: &str) -> Option<String> {
    link.split(", ").find(|part| part.ends_with(&format!("; rel=\"{rel}\""))).map(|part| {
        let start = part.find('<').unwrap() + 1;
        let end = part.find('>').unwrap();
        part[start..end].to_string()
    })
}

fn ids(body: &Value) -> Vec<u64> {
    body.as_array().unwrap().iter().map(|p| p["id"].as_u64().unwrap()).collect()
}

/// `Entities::BasicProjectDetails` for a non-admin who can read the code.
const SIMPLE_FIELDS: &[&str] = &[
    "id",
    "description",
    "name",
    "name_with_namespace",
    "path",
    "path_with_namespace",
    "created_at",
    "default_branch",
    "tag_list",
    "topics",
    "ssh_url_to_repo",
    "http_url_to_repo",
    "web_url",
    "readme_url",
    "forks_count",
    "avatar_url",
    "star_count",
    "last_activity_at",
    "namespace",
];

#[tokio::test]
async fn keyset_listing_walks_every_generated_project() {
    let sim = sim_with(SimConfig::with_generated_projects(15_000)).await;
    let expected: Vec<u64> = sim.projects().iter().map(|p| p.id).collect();
    assert_eq!(expected.len(), 15_000);
    let mut url = Some(format!(
        "{}/api/v4/projects?membership=true&simple=true&pagination=keyset&order_by=id&sort=asc&per_page=100",
        sim.base_url()
    ));
    let mut seen = Vec::new();
    let mut last_body = Value::Null;
    let started = Instant::now();
    while let Some(next) = url {
        assert!(next.starts_with(&sim.base_url()), "{next}");
        let response = get_url(&sim, &next, Some(demo::READONLY)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(header(&response, "x-total").is_empty() && header(&response, "x-page").is_empty());
        url = rel(&header(&response, "link"), "next");
        last_body = json_of(response).await;
        seen.extend(ids(&last_body));
    }
    assert_eq!(seen, expected);
    // GitLab links every non-empty page, so the walk ends with an empty page without a Link.
    assert_eq!(last_body, serde_json::json!([]));
    let calls = sim.requests_to("/api/v4/projects");
    assert_eq!(calls.len(), 151);
    assert_eq!(calls[1].param("id_after"), Some(expected[99].to_string()));
    assert!(calls.iter().all(|r| r.param("simple").as_deref() == Some("true")));
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
}

#[tokio::test]
async fn simple_entity_has_gitlabs_field_set() {
    let sim = sim_with(SimConfig::with_generated_projects(300)).await;
    let body = json_of(get(&sim, "/api/v4/projects?simple=true&per_page=100", Some(demo::API)).await).await;
    for project in body.as_array().unwrap() {
        let keys: Vec<&str> = project.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = SIMPLE_FIELDS.to_vec();
        expected.sort_unstable();
        let mut got = keys.clone();
        got.sort_unstable();
        assert_eq!(got, expected);
        for absent in ["archived", "empty_repo", "visibility", "updated_at", "permissions"] {
            assert!(project.get(absent).is_none(), "{absent}");
        }
        let namespace: Vec<&str> = project["namespace"].as_object().unwrap().keys().map(String::as_str).collect();
        for key in ["id", "name", "path", "kind", "full_path", "parent_id", "avatar_url", "web_url"] {
            assert!(namespace.contains(&key), "{key}");
        }
    }
    // Administrators also see repository_storage.
    let admin = json_of(get(&sim, "/api/v4/projects?simple=true&per_page=1", Some(demo::SUDO)).await).await;
    assert_eq!(admin[0]["repository_storage"], "default");
}

#[tokio::test]
async fn full_entity_and_empty_repositories() {
    let mut config = SimConfig::with_generated_projects(2000);
    let empty_id = config.projects.iter().find(|p| p.empty_repo).unwrap().id;
    let archived_id = config.projects.iter().find(|p| p.archived).unwrap().id;
    config.projects.push(SimProject { description: Some("x".into()), ..SimProject::new(1_000_000, "a/b/c/deep") });
    let sim = sim_with(config).await;
    let one = |id: u64| format!("/api/v4/projects?id_after={}&id_before={}", id - 1, id + 1);

    let body = json_of(get(&sim, &one(empty_id), Some(demo::API)).await).await;
    let project = &body[0];
    assert_eq!(project["id"], empty_id);
    assert_eq!(project["empty_repo"], true);
    assert_eq!(project["default_branch"], Value::Null);
    assert_eq!(project["readme_url"], Value::Null);
    for key in ["archived", "visibility", "updated_at", "repository_access_level", "merge_requests_access_level"] {
        assert!(project.get(key).is_some(), "{key}");
    }
    assert_eq!(project["permissions"]["project_access"]["access_level"], 40);
    assert_eq!(project["namespace"]["kind"], "group");
    assert!(project.get("marked_for_deletion_on").is_some());
    let archived = json_of(get(&sim, &one(archived_id), Some(demo::API)).await).await;
    assert_eq!(archived[0]["archived"], true);

    let deep = json_of(get(&sim, &one(1_000_000), Some(demo::API)).await).await;
    assert_eq!(deep[0]["namespace"]["full_path"], "a/b/c");
    assert_eq!(deep[0]["namespace"]["name"], "c");
    assert!(deep[0]["namespace"]["parent_id"].is_u64());
    assert_eq!(deep[0]["name_with_namespace"], "a / b / c / deep");
    assert_eq!(deep[0]["web_url"], format!("{}/a/b/c/deep", sim.base_url()));

    // GitLab 14+ exposes default_branch_or_main: an empty repository shows the instance default.
    let modern = sim_with(SimConfig { empty_repo_default_branch: Some("main".into()), ..SimConfig::default() }).await;
    let docs = json_of(get(&modern, "/api/v4/projects?search=docs&simple=true", Some(demo::API)).await).await;
    assert_eq!(docs[0]["default_branch"], "main");
    assert_eq!(docs[0]["readme_url"], Value::Null);
}

#[tokio::test]
async fn offset_pagination_headers_totals_and_limits() {
    let sim = sim_with(SimConfig::with_generated_projects(15_000)).await;
    let all = sim.projects();

    // Above 10,000 records: no x-total, no x-total-pages, no rel="last".
    let response =
        get(&sim, "/api/v4/projects?membership=true&per_page=100&order_by=id&sort=asc", Some(demo::API)).await;
    assert_eq!(header(&response, "x-page"), "1");
    assert_eq!(header(&response, "x-per-page"), "100");
    assert_eq!(header(&response, "x-next-page"), "2");
    assert_eq!(header(&response, "x-prev-page"), "");
    assert!(response.headers().get("x-total").is_none() && response.headers().get("x-total-pages").is_none());
    let link = header(&response, "link");
    assert!(rel(&link, "last").is_none(), "{link}");
    assert_eq!(
        rel(&link, "next").unwrap(),
        format!("{}/api/v4/projects?membership=true&order_by=id&page=2&per_page=100&sort=asc", sim.base_url())
    );
    assert!(rel(&link, "first").unwrap().contains("page=1&"));
    assert_eq!(ids(&json_of(response).await), all[..100].iter().map(|p| p.id).collect::<Vec<_>>());

    // Default order: created_at desc, newest first; default per_page 20.
    let response = get(&sim, "/api/v4/projects", Some(demo::API)).await;
    assert_eq!(header(&response, "x-per-page"), "20");
    assert_eq!(json_of(response).await[0]["id"], all.last().unwrap().id);

    // At most 10,000: totals and rel="last" are there.
    let archived = all.iter().filter(|p| p.archived).count();
    let response = get(&sim, "/api/v4/projects?archived=true&per_page=100", Some(demo::API)).await;
    assert_eq!(header(&response, "x-total"), archived.to_string());
    assert_eq!(header(&response, "x-total-pages"), archived.div_ceil(100).to_string());
    assert!(rel(&header(&response, "link"), "last").is_some());
    let body = json_of(response).await;
    assert!(body.as_array().unwrap().iter().all(|p| p["archived"] == true));
    let response = get(&sim, "/api/v4/projects?archived=false&per_page=100&page=3", Some(demo::API)).await;
    assert!(json_of(response).await.as_array().unwrap().iter().all(|p| p["archived"] == false));

    // per_page above 100 is clamped; the links keep what was asked for.
    let response = get(&sim, "/api/v4/projects?per_page=500&archived=true", Some(demo::API)).await;
    assert_eq!(header(&response, "x-per-page"), "100");
    assert!(rel(&header(&response, "link"), "next").unwrap().contains("per_page=500"));
    assert_eq!(json_of(response).await.as_array().unwrap().len(), 100);

    // id_after / id_before in offset mode.
    let (lo, hi) = (all[200].id, all[260].id);
    let response =
        get(&sim, &format!("/api/v4/projects?id_after={lo}&id_before={hi}&per_page=100"), Some(demo::API)).await;
    assert_eq!(header(&response, "x-total"), "59");
    let got = ids(&json_of(response).await);
    assert_eq!(got.len(), 59);
    assert!(got.iter().all(|id| *id > lo && *id < hi));

    // Past the end: empty page, no next and no prev.
    let response = get(&sim, "/api/v4/projects?archived=true&per_page=100&page=100", Some(demo::API)).await;
    assert_eq!(header(&response, "x-next-page"), "");
    assert_eq!(header(&response, "x-prev-page"), "");
    assert_eq!(json_of(response).await, serde_json::json!([]));

    // page * per_page above 50,000 (per_page as sent, unclamped) is refused with 405.
    let expected = serde_json::json!({"error": "Offset pagination has a maximum allowed offset of 50000 for requests that return objects of type Project. Remaining records can be retrieved using keyset pagination."});
    for query in ["page=501&per_page=100", "page=51&per_page=1000", "page=2501"] {
        let response = get(&sim, &format!("/api/v4/projects?{query}"), Some(demo::API)).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{query}");
        assert_eq!(json_of(response).await, expected);
    }
    let ok = get(&sim, "/api/v4/projects?page=500&per_page=100", Some(demo::API)).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let unlimited = sim_with(SimConfig { offset_pagination_limit: 0, ..SimConfig::default() }).await;
    let ok = get(&unlimited, "/api/v4/projects?page=501&per_page=100", Some(demo::API)).await;
    assert_eq!(ok.status(), StatusCode::OK);

    // Grape's parameter validation.
    for (query, error) in [
        ("per_page=0", "per_page has a value not allowed"),
        ("page=0", "page does not have a valid value"),
        ("order_by=stars", "order_by does not have a valid value"),
        ("archived=perhaps", "archived is invalid"),
    ] {
        let response = get(&sim, &format!("/api/v4/projects?{query}"), Some(demo::API)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(json_of(response).await, serde_json::json!({ "error": error }));
    }
}

#[tokio::test]
async fn keyset_rules() {
    let sim = sim_with(SimConfig::with_generated_projects(250)).await;
    let all: Vec<u64> = sim.projects().iter().map(|p| p.id).collect();
    let not_available = serde_json::json!({"error": "Keyset pagination is not yet available for this type of request"});
    for query in
        ["pagination=keyset", "pagination=keyset&order_by=created_at&sort=asc", "pagination=keyset&order_by=name"]
    {
        let response = get(&sim, &format!("/api/v4/projects?{query}"), Some(demo::API)).await;
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{query}");
        assert_eq!(json_of(response).await, not_available);
    }
    let bad = get(&sim, "/api/v4/projects?pagination=keyset&order_by=idx", Some(demo::API)).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(bad).await, serde_json::json!({"error": "order_by does not have a valid value"}));

    // Descending: id_before cursors; no x-* headers.
    let response =
        get(&sim, "/api/v4/projects?pagination=keyset&order_by=id&sort=desc&per_page=100", Some(demo::API)).await;
    let next = rel(&header(&response, "link"), "next").unwrap();
    let body = ids(&json_of(response).await);
    assert_eq!(body[0], *all.last().unwrap());
    assert!(next.contains(&format!("id_before={}", body[99])), "{next}");
    assert!(next.contains("pagination=keyset") && next.contains("per_page=100"));

    // A range (the sync's shards): id_before stays in every link; the last non-empty page still links.
    let (lo, hi) = (all[10], all[160]);
    let mut url = Some(format!(
        "{}/api/v4/projects?pagination=keyset&order_by=id&sort=asc&per_page=100&id_after={lo}&id_before={hi}",
        sim.base_url()
    ));
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    while let Some(next) = url {
        let response = get_url(&sim, &next, Some(demo::API)).await;
        let link = header(&response, "link");
        url = rel(&link, "next");
        if let Some(u) = &url {
            assert!(u.contains(&format!("id_before={hi}")), "{u}");
        }
        let page = ids(&json_of(response).await);
        pages.push((page.len(), !link.is_empty()));
        seen.extend(page);
    }
    assert_eq!(seen, all[11..160].to_vec());
    assert_eq!(pages, vec![(100, true), (49, true), (0, false)]);
}

#[tokio::test]
async fn languages_and_single_projects() {
    let sim = sim().await;
    let response = get(&sim, "/api/v4/projects/1/languages", Some(demo::READONLY)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), r#"{"Rust":81.2,"Shell":18.8}"#);
    let empty = json_of(get(&sim, "/api/v4/projects/3/languages", Some(demo::API)).await).await;
    assert_eq!(empty, serde_json::json!({}));
    for path in ["/api/v4/projects/999/languages", "/api/v4/projects/999", "/api/v4/projects/nope%2Fnone"] {
        let missing = get(&sim, path, Some(demo::API)).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(json_of(missing).await, serde_json::json!({"message": "404 Project Not Found"}));
    }
    // Private projects do not exist for anonymous callers; public ones do.
    assert_eq!(get(&sim, "/api/v4/projects/1/languages", None).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(get(&sim, "/api/v4/projects/3/languages", None).await.status(), StatusCode::OK);
    assert_eq!(get(&sim, "/api/v4/projects/1/languages", Some(demo::READ_REPO)).await.status(), StatusCode::FORBIDDEN);

    let by_path = json_of(get(&sim, "/api/v4/projects/demo%2Fbackend", Some(demo::API)).await).await;
    assert_eq!(by_path["id"], 1);
    assert_eq!(by_path["visibility"], "private");

    let generated = sim_with(SimConfig::with_generated_projects(100)).await;
    let project = generated.projects().into_iter().find(|p| p.languages.len() > 1).unwrap();
    let body =
        json_of(get(&generated, &format!("/api/v4/projects/{}/languages", project.id), Some(demo::API)).await).await;
    let total: f64 = body.as_object().unwrap().values().map(|v| v.as_f64().unwrap()).sum();
    assert!((total - 100.0).abs() < 0.001, "{body}");
}

#[tokio::test]
async fn latency_applies_to_api_routes() {
    let sim = sim_with(SimConfig { latency: Duration::from_millis(300), ..SimConfig::default() }).await;
    let started = Instant::now();
    assert_eq!(get(&sim, "/api/v4/projects", Some(demo::API)).await.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(get(&sim, "/users/sign_in", None).await.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(300));
    sim.set_latency(Duration::ZERO);
    let started = Instant::now();
    get(&sim, "/api/v4/version", Some(demo::API)).await;
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn rack_attack_rate_limit() {
    let limit = RateLimit { requests: 3, window: Duration::from_secs(3600), style: RateLimitStyle::RackAttack };
    let sim = sim_with(SimConfig { rate_limit: Some(limit), ..SimConfig::default() }).await;
    for remaining in ["2", "1", "0"] {
        let response = get(&sim, "/api/v4/projects", Some(demo::API)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "ratelimit-remaining"), remaining);
        assert_eq!(header(&response, "ratelimit-name"), "throttle_authenticated_api");
        // 3 per hour is 0.05 per minute, rounded up.
        assert_eq!(header(&response, "ratelimit-limit"), "1");
        assert!(header(&response, "ratelimit-reset").parse::<u64>().unwrap() > 1_700_000_000);
        assert!(response.headers().get("retry-after").is_none());
    }
    // Other endpoints do not count.
    assert_eq!(get(&sim, "/api/v4/user", Some(demo::API)).await.status(), StatusCode::OK);
    let limited = get(&sim, "/api/v4/projects", Some(demo::API)).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&limited, "content-type"), "text/plain");
    let retry_after: u64 = header(&limited, "retry-after").parse().unwrap();
    assert!((1..=3600).contains(&retry_after));
    assert_eq!(header(&limited, "ratelimit-observed"), "4");
    assert_eq!(header(&limited, "ratelimit-remaining"), "0");
    assert!(header(&limited, "ratelimit-resettime").ends_with(" GMT"));
    assert_eq!(limited.text().await.unwrap(), "Retry later\n");

    sim.reset_rate_limit();
    assert_eq!(get(&sim, "/api/v4/projects", Some(demo::API)).await.status(), StatusCode::OK);
    sim.set_rate_limit(None);
    let free = get(&sim, "/api/v4/projects", Some(demo::API)).await;
    assert!(free.headers().get("ratelimit-limit").is_none());
}

#[tokio::test]
async fn application_rate_limit_styles() {
    let sim = sim().await;
    let body =
        serde_json::json!({"message": {"error": "This endpoint has been requested too many times. Try again later."}});
    for (style, retry_after) in [(RateLimitStyle::RetryAfterOnly, Some("60")), (RateLimitStyle::NoHeaders, None)] {
        sim.set_rate_limit(Some(RateLimit { requests: 2, window: Duration::from_secs(60), style }));
        for _ in 0..2 {
            let ok = get(&sim, "/api/v4/projects", Some(demo::API)).await;
            assert_eq!(ok.status(), StatusCode::OK);
            assert!(ok.headers().keys().all(|k| !k.as_str().starts_with("ratelimit")));
        }
        let limited = get(&sim, "/api/v4/projects", Some(demo::API)).await;
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers().get("retry-after").map(|v| v.to_str().unwrap()), retry_after);
        assert!(limited.headers().keys().all(|k| !k.as_str().starts_with("ratelimit")));
        assert_eq!(json_of(limited).await, body);
    }
    // The application limit's window starts with the first request and then runs out.
    sim.set_rate_limit(Some(RateLimit {
        requests: 1,
        window: Duration::from_millis(300),
        style: RateLimitStyle::RetryAfterOnly,
    }));
    assert_eq!(get(&sim, "/api/v4/projects", Some(demo::API)).await.status(), StatusCode::OK);
    let limited = get(&sim, "/api/v4/projects", Some(demo::API)).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&limited, "retry-after"), "1");
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(get(&sim, "/api/v4/projects", Some(demo::API)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn injected_failures() {
    let sim = sim().await;
    sim.fail_next(3, 502);
    for _ in 0..3 {
        let response = get(&sim, "/api/v4/projects", Some(demo::API)).await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert!(header(&response, "content-type").starts_with("text/html"));
    }
    assert_eq!(get(&sim, "/api/v4/projects", Some(demo::API)).await.status(), StatusCode::OK);

    sim.fail_next(1, 500);
    let response = get(&sim, "/api/v4/user", Some(demo::API)).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(json_of(response).await, serde_json::json!({"message": "500 Internal Server Error"}));

    sim.set_failure_rate(1.0, 503);
    assert_eq!(get(&sim, "/api/v4/projects", Some(demo::API)).await.status(), StatusCode::SERVICE_UNAVAILABLE);
    sim.set_failure_rate(0.5, 503);
    let mut failed = 0;
    for _ in 0..40 {
        if get(&sim, "/api/v4/version", Some(demo::API)).await.status() == StatusCode::SERVICE_UNAVAILABLE {
            failed += 1;
        }
    }
    assert!((5..=35).contains(&failed), "{failed}");
    sim.clear_failures();
    assert_eq!(get(&sim, "/api/v4/projects", Some(demo::API)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn token_is_revoked_in_the_middle_of_a_listing() {
    let sim = sim_with(SimConfig::with_generated_projects(1000)).await;
    sim.revoke_token_after_project_pages(demo::API, 2);
    let mut url = format!("{}/api/v4/projects?pagination=keyset&order_by=id&sort=asc&per_page=100", sim.base_url());
    for _ in 0..2 {
        let response = get_url(&sim, &url, Some(demo::API)).await;
        assert_eq!(response.status(), StatusCode::OK);
        url = rel(&header(&response, "link"), "next").unwrap();
    }
    let response = get_url(&sim, &url, Some(demo::API)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        json_of(response).await,
        serde_json::json!({
            "error": "invalid_token",
            "error_description": "Token was revoked. You have to re-authorize from the user."
        })
    );
    // Other tokens go on.
    assert_eq!(get_url(&sim, &url, Some(demo::READONLY)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn hostile_listing_modes() {
    let sim = sim_with(SimConfig::with_generated_projects(6000)).await;
    let keyset = "/api/v4/projects?pagination=keyset&order_by=id&sort=asc&per_page=20&id_after=5";

    sim.set_listing_mode(ListingMode::ForeignNextLink);
    let next = rel(&header(&get(&sim, keyset, Some(demo::API)).await, "link"), "next").unwrap();
    assert!(next.starts_with(&format!("{FOREIGN_ORIGIN}/api/v4/projects?")), "{next}");
    let offset = get(&sim, "/api/v4/projects?per_page=20", Some(demo::API)).await;
    let link = header(&offset, "link");
    assert!(rel(&link, "next").unwrap().starts_with(FOREIGN_ORIGIN));
    assert!(rel(&link, "first").unwrap().starts_with(&sim.base_url()));

    sim.set_listing_mode(ListingMode::HttpNextLink);
    let next = rel(&header(&get(&sim, keyset, Some(demo::API)).await, "link"), "next").unwrap();
    assert!(next.starts_with(&format!("http://127.0.0.1:{}/api/v4/projects?", sim.addr.port())), "{next}");

    sim.set_listing_mode(ListingMode::StuckCursor);
    let first = get(&sim, keyset, Some(demo::API)).await;
    let next = rel(&header(&first, "link"), "next").unwrap();
    assert!(next.contains("id_after=5&"), "{next}");
    let again = get_url(&sim, &next, Some(demo::API)).await;
    assert_eq!(ids(&json_of(first).await), ids(&json_of(again).await));

    sim.set_listing_mode(ListingMode::HugePage(5000));
    let huge = get(&sim, "/api/v4/projects?pagination=keyset&order_by=id&sort=asc&per_page=20", Some(demo::API)).await;
    assert_eq!(huge.status(), StatusCode::OK);
    let bytes = huge.bytes().await.unwrap();
    assert!(bytes.len() > 5_000_000, "{}", bytes.len());
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body.as_array().unwrap().len(), 5000);

    sim.set_listing_mode(ListingMode::Normal);
    let normal = json_of(get(&sim, keyset, Some(demo::API)).await).await;
    assert_eq!(normal.as_array().unwrap().len(), 20);
}

#[tokio::test]
async fn projects_change_between_syncs() {
    let sim = sim_with(SimConfig::with_generated_projects(500)).await;
    let before = sim.projects();
    let (a, b, c) = (before[10].clone(), before[20].clone(), before[30].clone());
    let fresh_id = before.last().unwrap().id + 7;
    let one = |id: u64| {
        let sim = &sim;
        async move {
            let response = get(sim, &format!("/api/v4/projects/{id}"), Some(demo::API)).await;
            (response.status(), json_of(response).await)
        }
    };

    assert!(sim.rename_project(a.id, "renamed-one"));
    assert!(sim.transfer_project(b.id, "new-group/sub"));
    assert!(sim.delete_project(c.id));
    assert!(!sim.delete_project(c.id));
    let later = time::OffsetDateTime::now_utc() + time::Duration::minutes(5);
    assert!(sim.touch_project(before[0].id, later));
    sim.add_projects(vec![
        SimProject::new(fresh_id, "fresh/new-project"),
        SimProject::new(before[1].id, "replaced/one"),
    ]);

    let (_, renamed) = one(a.id).await;
    assert_eq!(renamed["path"], "renamed-one");
    assert_eq!(renamed["path_with_namespace"], format!("{}/renamed-one", a.namespace_path()));
    let (_, moved) = one(b.id).await;
    assert_eq!(moved["path_with_namespace"], format!("new-group/sub/{}", b.path()));
    assert_eq!(moved["namespace"]["full_path"], "new-group/sub");
    assert_eq!(one(c.id).await.0, StatusCode::NOT_FOUND);
    assert_eq!(one(fresh_id).await.1["path_with_namespace"], "fresh/new-project");
    assert_eq!(one(before[1].id).await.1["path_with_namespace"], "replaced/one");
    assert_eq!(sim.project_count(), 500);
    let listed = json_of(
        get(&sim, "/api/v4/projects?pagination=keyset&order_by=id&sort=desc&per_page=1", Some(demo::API)).await,
    )
    .await;
    assert_eq!(ids(&listed), vec![fresh_id]);

    // Incremental re-sync: only the touched project was active after now.
    let since = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap();
    let active =
        json_of(get(&sim, &format!("/api/v4/projects?last_activity_after={since}"), Some(demo::API)).await).await;
    assert_eq!(ids(&active), vec![before[0].id]);
    assert!(sim.update_project(before[0].id, |p| p.archived = true));
    assert!(sim.project(before[0].id).unwrap().archived);
}

#[tokio::test]
async fn listing_requests_are_recorded_with_their_parameters() {
    let sim = sim().await;
    get(&sim, "/api/v4/projects?membership=true&simple=true&per_page=100&search=a%20b", Some(demo::API)).await;
    get(&sim, "/api/v4/user?private_token=glpat-secret-value&x=1", None).await;
    get(&sim, "/api/v4/version", Some(demo::API)).await;
    let listing = sim.requests_to("/api/v4/projects");
    assert_eq!(listing.len(), 1);
    assert_eq!(listing[0].param("per_page").as_deref(), Some("100"));
    assert_eq!(listing[0].param("search").as_deref(), Some("a b"));
    assert!(listing[0].is_to("/api/v4/projects"));
    let user = &sim.requests_to("/api/v4/user")[0];
    assert_eq!(user.query, "private_token=[FILTERED]&x=1");
    assert!(!format!("{:?}", sim.requests()).contains("glpat-secret-value"));
    sim.clear_requests();
    assert!(sim.requests().is_empty());
}

/// 100,000 projects: generation, start and a few deep pages stay cheap. Run with `--ignored`.
#[tokio::test]
#[ignore = "scale check, about a second in release"]
async fn scale_100k() {
    let started = Instant::now();
    let config = SimConfig::with_generated_projects(100_000);
    let generated = started.elapsed();
    let sim = sim_with(config).await;
    let all = sim.projects();
    let mut timings = Vec::new();
    for after in [0, all[50_000].id, all[99_800].id] {
        let t = Instant::now();
        let response = get(
            &sim,
            &format!(
                "/api/v4/projects?pagination=keyset&order_by=id&sort=asc&per_page=100&simple=true&id_after={after}"
            ),
            Some(demo::API),
        )
        .await;
        assert_eq!(json_of(response).await.as_array().unwrap().len(), 100);
        timings.push(t.elapsed());
    }
    println!("generated 100k in {generated:?}; pages {timings:?}");
}

// ---------------------------------------------------------------------------------------------
// Project hooks and deliveries
// ---------------------------------------------------------------------------------------------

/// Headers, parsed body and raw body of one delivery.
type Seen = (HashMap<String, String>, Value, String);

/// A webhook receiver on loopback that records what it gets and answers `status`.
struct Receiver {
    url: String,
    status: std::sync::Arc<std::sync::atomic::AtomicU16>,
    /// Headers, parsed body and raw body of every delivery.
    seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
}

async fn receiver() -> Receiver {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU16, Ordering};
    let status = Arc::new(AtomicU16::new(200));
    let seen: Arc<std::sync::Mutex<Vec<Seen>>> = Arc::default();
    let (s, r) = (Arc::clone(&status), Arc::clone(&seen));
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
        let (s, r) = (Arc::clone(&s), Arc::clone(&r));
        async move {
            let h = headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
            let raw = String::from_utf8_lossy(&body).into_owned();
            r.lock().unwrap().push((h, serde_json::from_slice(&body).unwrap_or(Value::Null), raw));
            axum::http::StatusCode::from_u16(s.load(Ordering::SeqCst)).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind(LOCAL).await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, status, seen }
}

async fn send_json(
    sim: &RunningSim,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Value,
) -> reqwest::Response {
    client(sim)
        .request(method, format!("{}{path}", sim.base_url()))
        .header("PRIVATE-TOKEN", token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

fn mr_open() -> gitlab_sim::SimEvent {
    serde_json::from_value(serde_json::json!({ "kind": "merge_request", "iid": 4, "action": "open" })).unwrap()
}

#[tokio::test]
async fn hooks_are_created_read_without_their_token_and_refused_to_read_only_tokens() {
    let sim = sim().await;
    let body = serde_json::json!({ "url": "https://hooks.example.com/x", "token": "s3cret", "merge_requests_events": true, "push_events": false });
    let created = send_json(&sim, reqwest::Method::POST, "/api/v4/projects/1/hooks", demo::API, body.clone()).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let hook = json_of(created).await;
    assert_eq!(hook["merge_requests_events"], true);
    assert_eq!(hook["push_events"], false);
    assert_eq!(hook["alert_status"], "executable");
    assert_eq!(hook["token_present"], true);
    assert!(hook.get("token").is_none() && !hook.to_string().contains("s3cret"));
    // 17.x knows no signing tokens.
    assert!(hook.get("signing_token_present").is_none());
    let id = hook["id"].as_u64().unwrap();
    let listed = json_of(get(&sim, "/api/v4/projects/1/hooks", Some(demo::API)).await).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let refused = send_json(&sim, reqwest::Method::POST, "/api/v4/projects/1/hooks", demo::READONLY, body).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    // A new URL without a token resets the token, as GitLab does.
    let moved = send_json(
        &sim,
        reqwest::Method::PUT,
        &format!("/api/v4/projects/1/hooks/{id}"),
        demo::API,
        serde_json::json!({ "url": "https://hooks.example.com/y" }),
    )
    .await;
    assert_eq!(json_of(moved).await["token_present"], false);
    let gone = client(&sim)
        .delete(format!("{}/api/v4/projects/1/hooks/{id}", sim.base_url()))
        .header("PRIVATE-TOKEN", demo::API)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        get(&sim, &format!("/api/v4/projects/1/hooks/{id}"), Some(demo::API)).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn deliveries_carry_gitlabs_headers_and_failing_receivers_get_the_hook_disabled() {
    let sim = sim().await;
    let rx = receiver().await;
    let body =
        serde_json::json!({ "url": rx.url, "token": "s3cret", "merge_requests_events": true, "push_events": false });
    let hook = json_of(send_json(&sim, reqwest::Method::POST, "/api/v4/projects/1/hooks", demo::API, body).await).await;
    let id = hook["id"].as_u64().unwrap();

    let delivered = sim.deliver(1, &mr_open()).await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].status, Some(200));
    let (headers, payload, _) = rx.seen.lock().unwrap()[0].clone();
    assert_eq!(headers["x-gitlab-event"], "Merge Request Hook");
    assert_eq!(headers["x-gitlab-token"], "s3cret");
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers["user-agent"].starts_with("GitLab/17."));
    assert_eq!(headers["idempotency-key"], delivered[0].idempotency_key);
    assert!(headers.contains_key("x-gitlab-event-uuid") && headers.contains_key("x-gitlab-webhook-uuid"));
    assert!(!headers.contains_key("webhook-signature"));
    assert_eq!(payload["object_kind"], "merge_request");
    assert_eq!(payload["project"]["id"], 1);
    assert_eq!(payload["project"]["path_with_namespace"], "demo/backend");
    assert_eq!(payload["object_attributes"]["iid"], 4);
    // Not subscribed (push events are on unless turned off, as in GitLab): they go nowhere.
    let push: gitlab_sim::SimEvent = serde_json::from_value(serde_json::json!({ "kind": "push" })).unwrap();
    assert!(sim.deliver(1, &push).await.is_empty());

    // Four consecutive failures disable the hook for a while; then nothing is delivered.
    rx.status.store(500, std::sync::atomic::Ordering::SeqCst);
    for _ in 0..4 {
        assert_eq!(sim.deliver(1, &mr_open()).await[0].status, Some(500));
    }
    let state = json_of(get(&sim, &format!("/api/v4/projects/1/hooks/{id}"), Some(demo::API)).await).await;
    assert_eq!(state["alert_status"], "temporarily_disabled");
    assert!(state["disabled_until"].is_string());
    assert!(sim.deliver(1, &mr_open()).await.is_empty(), "a disabled hook receives nothing");

    // A test delivery that succeeds re-enables it; one that fails answers 422.
    let test = format!("/api/v4/projects/1/hooks/{id}/test/merge_requests_events");
    assert_eq!(
        send_json(&sim, reqwest::Method::POST, &test, demo::API, serde_json::json!({})).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    rx.status.store(200, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        send_json(&sim, reqwest::Method::POST, &test, demo::API, serde_json::json!({})).await.status(),
        StatusCode::CREATED
    );
    let state = json_of(get(&sim, &format!("/api/v4/projects/1/hooks/{id}"), Some(demo::API)).await).await;
    assert_eq!(state["alert_status"], "executable");
    assert_eq!(sim.deliver(1, &mr_open()).await.len(), 1);
}

#[tokio::test]
async fn forty_failures_disable_a_hook_for_good() {
    let sim = sim().await;
    let body = serde_json::json!({ "url": "http://127.0.0.1:9/unreachable", "merge_requests_events": true });
    send_json(&sim, reqwest::Method::POST, "/api/v4/projects/1/hooks", demo::API, body).await;
    // Each temporary disabling is waited out by moving its end into the past.
    for _ in 0..40 {
        sim.expire_hook_backoff();
        assert_eq!(sim.deliver(1, &mr_open()).await[0].status, None);
    }
    let hooks = sim.hooks();
    assert_eq!(hooks[0].recent_failures, 40);
    assert_eq!(hooks[0].alert_status(time::OffsetDateTime::now_utc()), "disabled");
}

#[tokio::test]
async fn a_19_instance_signs_deliveries_with_the_signing_token() {
    use base64::Engine;
    use hmac::{KeyInit, Mac};
    let sim = sim_with(SimConfig { version: "19.0.1-ee".into(), ..SimConfig::default() }).await;
    let rx = receiver().await;
    let key = [7u8; 32];
    let signing = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(key));
    let body = serde_json::json!({ "url": rx.url, "signing_token": signing, "merge_requests_events": true });
    let hook = json_of(send_json(&sim, reqwest::Method::POST, "/api/v4/projects/1/hooks", demo::API, body).await).await;
    assert_eq!(hook["signing_token_present"], true);
    assert!(!hook.to_string().contains("whsec_"));
    sim.deliver(1, &mr_open()).await;
    let (headers, _, raw) = rx.seen.lock().unwrap()[0].clone();
    assert_eq!(headers["webhook-id"], headers["idempotency-key"]);
    let signed = format!("{}.{}.{}", headers["webhook-id"], headers["webhook-timestamp"], raw);
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(signed.as_bytes());
    let expected = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
    assert_eq!(headers["webhook-signature"], expected);
    assert!(!headers.contains_key("x-gitlab-token"));
    // The control endpoint raises the same events over HTTP (make run's walkthrough uses it).
    let raised = client(&sim)
        .post(format!("{}/-/sim/projects/1/events", sim.base_url()))
        .body(r#"{"kind":"merge_request","iid":5,"action":"reopen"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(raised).await["deliveries"][0]["status"], 200);
    assert_eq!(rx.seen.lock().unwrap().len(), 2);
}
