//! Malformed bodies, bad tokens and URL tricks: a precise 4xx and nothing written.

use serde_json::json;

use crate::support::{Env, demo, env};

async fn assert_nothing_written(env: &Env) {
    assert!(env.items().await.is_empty(), "DynamoDB written");
    assert!(env.secret_names().await.is_empty(), "secret created");
    assert!(env.sync_messages().await.is_empty(), "message queued");
}

#[tokio::test]
async fn malformed_bodies_get_precise_errors() {
    let env = env("bad_bodies").start().await;
    let url = env.sim.base_url();
    let ca = env.sim.ca_pem.clone();
    let raw = |body: String| Some(("application/json", body.into_bytes()));
    type Case<'a> = (&'a str, Option<(&'a str, Vec<u8>)>, u16, &'a str, Option<&'a str>);
    let cases: Vec<Case<'_>> = vec![
        (
            "oversized",
            raw(format!(r#"{{"instance_url":"{url}","token":"{}","name":"{}"}}"#, demo::API, "x".repeat(70_000))),
            413,
            "payload_too_large",
            None,
        ),
        ("not json", raw("{\"instance_url\":".into()), 400, "invalid_request", Some("body")),
        ("array", raw("[]".into()), 400, "invalid_request", Some("body")),
        (
            "wrong type",
            raw(json!({"instance_url": 42, "token": demo::API}).to_string()),
            400,
            "invalid_request",
            Some("instance_url"),
        ),
        (
            "token number",
            raw(json!({"instance_url": url, "token": 123}).to_string()),
            400,
            "invalid_request",
            Some("token"),
        ),
        (
            "unknown field",
            raw(json!({"instance_url": url, "token": demo::API, "admin": true}).to_string()),
            400,
            "invalid_request",
            None,
        ),
        ("missing token", raw(json!({"instance_url": url}).to_string()), 400, "invalid_request", None),
        (
            "duplicate key",
            raw(format!(r#"{{"instance_url":"{url}","token":"{}","token":"{}"}}"#, demo::API, demo::API)),
            400,
            "invalid_request",
            None,
        ),
        (
            "trailing garbage",
            raw(format!(r#"{{"instance_url":"{url}","token":"{}"}} x"#, demo::API)),
            400,
            "invalid_request",
            Some("body"),
        ),
        (
            "token with space",
            raw(json!({"instance_url": url, "token": "glpat-abc defghijklmnopqrst"}).to_string()),
            400,
            "invalid_request",
            Some("token"),
        ),
        (
            "token with newline",
            raw(json!({"instance_url": url, "token": "glpat-abcdefghij\r\nX-Evil: 1"}).to_string()),
            400,
            "invalid_request",
            Some("token"),
        ),
        (
            "token with NUL",
            raw(json!({"instance_url": url, "token": "glpat-abcdefghijklmnop\u{0}q"}).to_string()),
            400,
            "invalid_request",
            Some("token"),
        ),
        (
            "token too short",
            raw(json!({"instance_url": url, "token": "short"}).to_string()),
            400,
            "invalid_request",
            Some("token"),
        ),
        (
            "token too long",
            raw(json!({"instance_url": url, "token": "a".repeat(600)}).to_string()),
            400,
            "invalid_request",
            Some("token"),
        ),
        (
            "non-ascii token",
            raw(json!({"instance_url": url, "token": "glpat-ünïcödé-0123456789"}).to_string()),
            400,
            "invalid_request",
            Some("token"),
        ),
        (
            "empty name",
            raw(json!({"instance_url": url, "token": demo::API, "name": "  "}).to_string()),
            400,
            "invalid_request",
            Some("name"),
        ),
        (
            "right-to-left override in the name",
            raw(json!({"instance_url": url, "token": demo::API, "name": "prod\u{202E}gnp.exe"}).to_string()),
            400,
            "invalid_request",
            Some("name"),
        ),
        (
            "zero-width space in the name",
            raw(json!({"instance_url": url, "token": demo::API, "name": "ad\u{200B}min"}).to_string()),
            400,
            "invalid_request",
            Some("name"),
        ),
        (
            "bad CA",
            raw(json!({"instance_url": url, "token": demo::API, "ca_certificate": "not a pem"}).to_string()),
            400,
            "invalid_request",
            Some("ca_certificate"),
        ),
        (
            "text/plain",
            Some((
                "text/plain",
                json!({"instance_url": url, "token": demo::API, "ca_certificate": ca}).to_string().into_bytes(),
            )),
            415,
            "unsupported_media_type",
            None,
        ),
        ("no body", None, 415, "unsupported_media_type", None),
    ];
    for (name, body, status, code, field) in cases {
        let reply = env.request("POST", Some("team-a"), "/integrations/gitlab", body).await;
        assert_eq!((reply.status, reply.code()), (status, code), "{name}: {}", reply.raw);
        if let Some(field) = field {
            assert_eq!(reply.body["error"]["details"]["field"], field, "{name}: {}", reply.raw);
        }
        assert!(!reply.raw.contains("glpat-"), "{name}: token echoed: {}", reply.raw);
    }
    // None of these reached GitLab, nor even the rate counter.
    assert!(env.sim.requests().is_empty(), "{:?}", env.sim.requests());
    assert!(env.all_items().await.is_empty());
    assert_nothing_written(&env).await;
}

#[tokio::test]
async fn url_tricks_are_refused_with_their_reason_before_any_network_call() {
    let env = env("url_tricks").start().await;
    let port = env.sim.addr.port();
    let cases: Vec<(String, &str)> = vec![
        (format!("http://127.0.0.1:{port}"), "not_https"),
        ("gitlab.example.com".into(), "not_https"),
        ("https:gitlab.example.com".into(), "not_https"),
        ("ftp://gitlab.example.com".into(), "not_https"),
        (format!("https://127.0.0.1:{port}/api/v4"), "has_api_path"),
        (format!("https://127.0.0.1:{port}/gitlab/api/v4/"), "has_api_path"),
        (format!("https://user:pw@127.0.0.1:{port}"), "has_credentials"),
        ("https://evil.test\\@gitlab.example.com".into(), "has_credentials"),
        ("https://gitlab.example.com/?x=1".into(), "has_query_or_fragment"),
        ("https://gitlab.example.com/#frag".into(), "has_query_or_fragment"),
        ("https://127.1".into(), "bad_host"),
        ("https://0x7f.0.0.1".into(), "bad_host"),
        ("https://2130706433".into(), "bad_host"),
        ("https://0177.0.0.1".into(), "bad_host"),
        ("https://gitlab.example.com.".into(), "bad_host"),
        ("https://gitlab".into(), "bad_host"),
        ("https://169.254.169.254".into(), "ip_literal_not_public"),
        ("https://10.0.0.1".into(), "ip_literal_not_public"),
        ("https://[::1]".into(), "ip_literal_not_public"),
        ("https://[::ffff:10.0.0.1]".into(), "ip_literal_not_public"),
        ("https://[fd00:ec2::254]".into(), "ip_literal_not_public"),
        ("https://100.64.0.1".into(), "ip_literal_not_public"),
        ("https://localhost".into(), "denied_name"),
        ("https://metadata.google.internal".into(), "denied_name"),
        ("https://printer.local".into(), "denied_name"),
        ("https://gitlab.example.com:22".into(), "bad_port"),
        ("https://gitlab.example.com:0".into(), "bad_port"),
        ("https://gitlab.example.com:99999".into(), "bad_port"),
        ("https://example.com/gitlab/../admin".into(), "bad_path"),
        ("https://example.com/group/project.git".into(), "bad_path"),
        ("https://example.com/-/profile".into(), "bad_path"),
        ("https://127%2e0%2e0%2e1".into(), "bad_characters"),
        ("https://gitlab.exa\tmple.com".into(), "bad_characters"),
        (" https://gitlab.example.com".into(), "bad_characters"),
        ("https://gitlаb.com".into(), "bad_characters"),
        (format!("https://{}.com", "a".repeat(2100)), "too_long"),
    ];
    for (url, reason) in &cases {
        for route in ["/integrations/gitlab/preflight", "/integrations/gitlab"] {
            let body = if route.ends_with("preflight") {
                json!({ "instance_url": url })
            } else {
                json!({ "instance_url": url, "token": demo::API })
            };
            let reply = env.post("team-a", route, &body).await;
            assert_eq!(
                (reply.status, reply.code(), reply.body["error"]["details"]["reason"].as_str()),
                (400, "invalid_instance_url", Some(*reason)),
                "{route} {url:?}: {}",
                reply.raw
            );
            let hint_or_message = reply.body["error"]["message"].as_str().unwrap_or("");
            assert!(!hint_or_message.is_empty());
        }
    }
    let api_path = env
        .post(
            "team-a",
            "/integrations/gitlab/preflight",
            &json!({ "instance_url": format!("https://127.0.0.1:{port}/api/v4") }),
        )
        .await;
    assert!(api_path.body["error"]["hint"].as_str().expect("hint").contains("without /api/v4"), "{}", api_path.raw);
    assert!(env.sim.requests().is_empty());
    assert!(env.all_items().await.is_empty());
    assert_nothing_written(&env).await;
}

#[tokio::test]
async fn preflight_normalises_without_calling_gitlab() {
    let env = env("preflight").start().await;
    let port = env.sim.addr.port();
    let reply = env
        .post(
            "team-a",
            "/integrations/gitlab/preflight",
            &json!({ "instance_url": format!("HTTPS://127.0.0.1:{port}/GitLab/") }),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.raw);
    assert_eq!(
        reply.body,
        json!({ "instance_url": format!("https://127.0.0.1:{port}/GitLab"), "api_url": format!("https://127.0.0.1:{port}/GitLab/api/v4") })
    );
    assert!(env.sim.requests().is_empty(), "preflight must not call GitLab");
    assert_nothing_written(&env).await;
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let env = env("routes").start().await;
    assert_eq!(env.get("team-a", "/integrations/gitlab/not-an-id").await.status, 404);
    assert_eq!(env.get("team-a", "/integrations/github").await.status, 404);
    // No route for this method: the deployed HTTP API answers itself, not with the error envelope.
    let reply = env.request("PATCH", Some("team-a"), "/integrations/gitlab", None).await;
    assert_eq!((reply.status, reply.body), (404, json!({ "message": "Not Found" })));
}

#[tokio::test]
async fn connection_tests_are_rate_limited_per_team_in_dynamodb() {
    let env = env("rate_limit").var("CONNECT_TESTS_PER_MINUTE", "2").start().await;
    let body = json!({ "instance_url": env.sim.base_url() });
    let mut statuses = Vec::new();
    // Five attempts: two windows at most, so at least one window passes two.
    for _ in 0..5 {
        let reply = env.post("team-a", "/integrations/gitlab/preflight", &body).await;
        statuses.push(reply.status);
        if reply.status == 429 {
            assert_eq!(reply.code(), "rate_limited");
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert_eq!(env.post("team-b", "/integrations/gitlab/preflight", &body).await.status, 200);
    // The counter is the only item written, and it is not an integration.
    assert_eq!(env.get("team-a", "/integrations/gitlab").await.body, json!({ "items": [] }));
}

#[tokio::test]
async fn verify_counts_as_a_connection_test() {
    let env = env("verify_limit").var("CONNECT_TESTS_PER_MINUTE", "3").start().await;
    let id = env.connect("team-a", demo::API).await["id"].as_str().expect("id").to_owned();
    let path = format!("/integrations/gitlab/{id}/verify");
    // Within one minute's window at most three tests pass; the connect above was one of them.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let reply = env.request("POST", Some("team-a"), &path, None).await;
        statuses.push(reply.status);
        if reply.status == 429 {
            assert_eq!(reply.code(), "rate_limited", "{}", reply.raw);
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
}

#[tokio::test]
async fn a_team_holds_at_most_the_configured_number_of_integrations() {
    let env = env("integration_quota").var("MAX_INTEGRATIONS_PER_TEAM", "2").start().await;
    for _ in 0..2 {
        env.connect("team-a", demo::API).await;
    }
    let refused = env.post("team-a", "/integrations/gitlab", &env.connect_body(demo::API)).await;
    assert_eq!((refused.status, refused.code()), (409, "quota_exceeded"), "{}", refused.raw);
    assert_eq!(refused.body["error"]["details"], json!({ "limit": "integrations_per_team", "max": 2 }));
    assert!(refused.body["error"]["hint"].as_str().is_some_and(|h| h.contains("MAX_INTEGRATIONS_PER_TEAM")));
    assert_eq!(env.get("team-a", "/integrations/gitlab").await.body["items"].as_array().map(Vec::len), Some(2));
    // Another team has its own quota; a disconnect frees a place.
    assert_eq!(env.post("team-b", "/integrations/gitlab", &env.connect_body(demo::API)).await.status, 201);
    let first = env.get("team-a", "/integrations/gitlab").await.body["items"][0]["id"].as_str().expect("id").to_owned();
    assert_eq!(env.delete("team-a", &format!("/integrations/gitlab/{first}")).await.status, 204);
    assert_eq!(env.post("team-a", "/integrations/gitlab", &env.connect_body(demo::API)).await.status, 201);
}

#[tokio::test]
async fn an_administrators_token_is_refused_unless_the_operator_allows_it() {
    let env = env("admin_refused").start().await;
    let refused = env.post("team-a", "/integrations/gitlab", &env.connect_body(demo::ADMIN)).await;
    assert_eq!((refused.status, refused.code()), (422, "token_too_privileged"), "{}", refused.raw);
    assert_eq!(refused.body["error"]["details"]["reason"], "instance_administrator");
    let hint = refused.body["error"]["hint"].as_str().expect("hint");
    assert!(hint.contains("project, group or service-account token"), "{hint}");
    assert_nothing_written(&env).await;
    // Rotating an existing integration to an administrator's token is refused the same way.
    let id = env.connect("team-a", demo::API).await["id"].as_str().expect("id").to_owned();
    let rotated =
        env.put("team-a", &format!("/integrations/gitlab/{id}/token"), &json!({ "token": demo::ADMIN })).await;
    assert_eq!(rotated.code(), "token_too_privileged", "{}", rotated.raw);

    let allowed = crate::support::env("admin_allowed").var("ALLOW_ADMIN_TOKENS", "true").start().await;
    let connected = allowed.connect("team-a", demo::ADMIN).await;
    let warnings: Vec<&str> =
        connected["warnings"].as_array().expect("warnings").iter().filter_map(|w| w["code"].as_str()).collect();
    assert!(warnings.contains(&"admin_token_allowed"), "{connected}");
}
