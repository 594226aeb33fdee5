//! Drives a running simulator over real HTTPS with reqwest, trusting only the generated CA.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use gitlab_sim::{AuthSeen, Behaviour, RunningSim, SimConfig, SimToken, SimUser, TokenKind, demo, start, start_dns};
use reqwest::{Certificate, Client, StatusCode};
use serde_json::Value;

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
