//! Connect, list, verify, rotate and disconnect through the HTTP API, with each token kind.

use gitlab_sim::{SimConfig, SimToken, SimUser, TokenKind};
use serde_json::{Value, json};

use crate::support::{demo, env};

fn sim_with_extra_kinds() -> SimConfig {
    let mut sim = SimConfig::default();
    let expires = Some(time::OffsetDateTime::now_utc().date() + time::Duration::days(90));
    let user = |id, name: &str, bot| SimUser { id, username: name.into(), name: name.into(), bot, is_admin: false };
    sim.tokens.push(SimToken {
        token: "glpat-group-token-000000000001".into(),
        kind: TokenKind::Group,
        scopes: vec!["api".into()],
        expires_at: expires,
        expired: false,
        revoked: false,
        user: user(301, "group_7_bot_9e8d1c", true),
    });
    sim.tokens.push(SimToken {
        token: "glpat-service-account-0000001".into(),
        kind: TokenKind::ServiceAccount,
        scopes: vec!["read_api".into(), "read_repository".into()],
        expires_at: None,
        expired: false,
        revoked: false,
        user: user(401, "service_account_group_7_3f2a", true),
    });
    sim.tokens.push(SimToken {
        token: "glpat-other-user-000000000001".into(),
        kind: TokenKind::Personal,
        scopes: vec!["api".into()],
        expires_at: expires,
        expired: false,
        revoked: false,
        user: user(555, "someone-else", false),
    });
    sim
}

#[tokio::test]
async fn connect_stores_the_integration_the_token_secret_and_queues_the_first_sync() {
    let env = env("connect_happy").start().await;
    let body = env.connect("team-a", demo::API).await;

    let id = body["id"].as_str().expect("id").to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(body["instance_url"], env.sim.base_url());
    assert_eq!(body["api_url"], format!("{}/api/v4", env.sim.base_url()));
    assert_eq!(body["status"], "active");
    assert_eq!(body["token"]["kind"], "personal");
    assert_eq!(body["token"]["scopes"], json!(["api", "read_repository"]));
    assert!(body["token"]["expires_at"].as_str().expect("expiry").ends_with("T00:00:00Z"));
    assert_eq!(body["user"], json!({ "id": 101, "username": "demo-user", "bot": false }));
    assert_eq!(
        body["capabilities"],
        json!({ "sync": true, "clone": true, "comment": true, "open_merge_requests": true, "manage_webhooks": true })
    );
    assert_eq!(body["instance"]["version"], "17.8.1-ee");
    assert_eq!(body["instance"]["custom_ca"], true);
    let secret = body["webhook"]["secret"].as_str().expect("secret shown once");
    assert_eq!(secret.len(), 64);
    assert_eq!(body["webhook"]["url"], format!("{}/webhooks/gitlab/{id}", env.stack.url));

    // Shown once: later reads never carry the webhook secret.
    let got = env.get("team-a", &format!("/integrations/gitlab/{id}")).await;
    assert_eq!(got.status, 200);
    assert!(got.body["webhook"].get("secret").is_none());
    assert!(!got.raw.contains(secret));
    let list = env.get("team-a", "/integrations/gitlab").await;
    assert_eq!(list.body["items"].as_array().expect("items").len(), 1);

    // The token is in Secrets Manager, tagged, bound to the instance origin.
    let names = env.secret_names().await;
    assert_eq!(names, vec![format!("{}{id}", env.secret_prefix())]);
    let described = env.secrets().describe_secret().secret_id(&names[0]).send().await.expect("describe");
    let tags: Vec<(String, String)> = described
        .tags()
        .iter()
        .map(|t| (t.key().unwrap_or_default().to_owned(), t.value().unwrap_or_default().to_owned()))
        .collect();
    assert!(tags.contains(&("team_id".into(), "team-a".into())), "{tags:?}");
    assert!(tags.contains(&("integration_id".into(), id.clone())), "{tags:?}");
    let value = env.secrets().get_secret_value().secret_id(&names[0]).send().await.expect("get");
    let stored: Value = serde_json::from_str(value.secret_string().expect("string")).expect("json");
    assert_eq!(stored, json!({ "origin": env.sim.base_url(), "token": demo::API }));

    // One integration item, scoped by team, with only the webhook secret's digest.
    let items = env.items().await;
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item["pk"].as_s().expect("pk"), "TEAM#team-a");
    assert_eq!(item["sk"].as_s().expect("sk"), &format!("INTEGRATION#{id}"));
    assert_eq!(
        item["webhook_secret_sha256"].as_s().expect("digest"),
        &shared::domain::integration::webhook_secret_digest(secret)
    );

    let messages = env.sync_messages().await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["type"], "sync_requested");
    assert_eq!(messages[0]["integration_id"], id);
    assert_eq!(messages[0]["team_id"], "team-a");
    assert_eq!(messages[0]["reason"], "connected");
}

#[tokio::test]
async fn each_token_kind_is_recognised_with_its_capabilities() {
    let env = env("token_kinds").sim(sim_with_extra_kinds()).start().await;
    let cases = [
        (demo::API, "personal", true, "active"),
        (demo::READONLY, "personal", false, "active"),
        (demo::PROJECT_BOT, "project", true, "active"),
        ("glpat-group-token-000000000001", "group", true, "active"),
        ("glpat-service-account-0000001", "service_account", false, "active"),
        (demo::OAUTH, "oauth", true, "token_expiring"),
        (demo::EXPIRING, "personal", true, "token_expiring"),
    ];
    for (token, kind, api, status) in cases {
        let body = env.connect("team-kinds", token).await;
        assert_eq!(body["token"]["kind"], kind, "{token}");
        assert_eq!(body["status"], status, "{token}");
        assert_eq!(body["capabilities"]["comment"], api, "{token}");
        assert_eq!(body["capabilities"]["sync"], true, "{token}");
        assert_eq!(body["capabilities"]["clone"], true, "{token}");
        let warnings: Vec<&str> =
            body["warnings"].as_array().expect("warnings").iter().filter_map(|w| w["code"].as_str()).collect();
        assert_eq!(warnings.contains(&"api_scope_missing"), !api, "{token}: {warnings:?}");
        if kind == "oauth" {
            assert!(warnings.contains(&"oauth_token_short_lived"), "{warnings:?}");
        }
    }
    let bot = env.connect("team-kinds", demo::PROJECT_BOT).await;
    assert_eq!(bot["user"]["bot"], true);
    // OAuth tokens use /oauth/token/info after /self refuses them.
    assert!(env.sim.requests().iter().any(|r| r.path.ends_with("/oauth/token/info")));
    assert_eq!(env.items().await.len(), cases.len() + 1);
}

#[tokio::test]
async fn refused_tokens_get_precise_errors_and_nothing_is_written() {
    let env = env("refused_tokens").start().await;
    let cases = [
        (demo::EXPIRED.to_owned(), 422, "token_expired"),
        (demo::REVOKED.to_owned(), 422, "token_revoked"),
        ("glpat-not-a-known-token-0000".to_owned(), 422, "token_invalid"),
        (demo::READ_REPO.to_owned(), 422, "insufficient_scope"),
        (demo::SUDO.to_owned(), 422, "token_too_privileged"),
    ];
    for (token, status, code) in &cases {
        let reply = env.post("team-a", "/integrations/gitlab", &env.connect_body(token)).await;
        assert_eq!((reply.status, reply.code()), (*status, *code), "{token}: {}", reply.raw);
        assert!(reply.body["error"]["hint"].as_str().is_some_and(|h| !h.is_empty()), "{}", reply.raw);
    }
    let scope = env.post("team-a", "/integrations/gitlab", &env.connect_body(demo::READ_REPO)).await;
    assert_eq!(scope.body["error"]["details"]["missing_scopes"], json!(["read_api"]));
    assert_eq!(scope.body["error"]["details"]["granted_scopes"], json!(["read_repository"]));
    assert!(env.items().await.is_empty());
    assert!(env.secret_names().await.is_empty());
    assert!(env.sync_messages().await.is_empty());
}

#[tokio::test]
async fn verify_rederives_the_status_from_gitlab() {
    let env = env("verify").start().await;
    let id = env.connect("team-a", demo::API).await["id"].as_str().expect("id").to_owned();
    let path = format!("/integrations/gitlab/{id}/verify");

    let ok = env.request("POST", Some("team-a"), &path, None).await;
    assert_eq!((ok.status, ok.body["status"].as_str()), (200, Some("active")), "{}", ok.raw);

    let mut token =
        gitlab_sim::SimConfig::default().tokens.into_iter().find(|t| t.token == demo::API).expect("demo token");
    token.revoked = true;
    env.sim.upsert_token(token.clone());
    let revoked = env.request("POST", Some("team-a"), &path, None).await;
    assert_eq!(revoked.body["status"], "token_revoked", "{}", revoked.raw);
    // The stored integration carries the new status.
    assert_eq!(env.get("team-a", &format!("/integrations/gitlab/{id}")).await.body["status"], "token_revoked");

    token.revoked = false;
    token.expired = true;
    env.sim.upsert_token(token);
    assert_eq!(env.request("POST", Some("team-a"), &path, None).await.body["status"], "token_expired");

    env.sim.set_behaviour(gitlab_sim::Behaviour::NotFound);
    assert_eq!(env.request("POST", Some("team-a"), &path, None).await.body["status"], "unreachable");
}

#[tokio::test]
async fn rotation_validates_the_new_token_and_keeps_the_old_one_as_previous() {
    let env = env("rotate").sim(sim_with_extra_kinds()).start().await;
    let id = env.connect("team-a", demo::API).await["id"].as_str().expect("id").to_owned();
    let secret_name = format!("{}{id}", env.secret_prefix());
    let path = format!("/integrations/gitlab/{id}/token");

    // A token of another user, an expired one and a malformed one are refused; nothing changes.
    let other = env.put("team-a", &path, &json!({ "token": "glpat-other-user-000000000001" })).await;
    assert_eq!((other.status, other.code()), (422, "token_user_mismatch"), "{}", other.raw);
    let expired = env.put("team-a", &path, &json!({ "token": demo::EXPIRED })).await;
    assert_eq!((expired.status, expired.code()), (422, "token_expired"));
    let bad = env.put("team-a", &path, &json!({ "token": "has space in it 0123456789" })).await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_request"));
    let current = env.secrets().get_secret_value().secret_id(&secret_name).send().await.expect("get");
    assert!(current.secret_string().expect("value").contains(demo::API));

    let rotated = env.put("team-a", &path, &json!({ "token": demo::READONLY })).await;
    assert_eq!(rotated.status, 200, "{}", rotated.raw);
    assert_eq!(rotated.body["token"]["scopes"], json!(["read_api", "read_repository"]));
    assert_eq!(rotated.body["capabilities"]["comment"], false);

    let current = env.secrets().get_secret_value().secret_id(&secret_name).send().await.expect("current");
    assert!(current.secret_string().expect("value").contains(demo::READONLY));
    let previous = env
        .secrets()
        .get_secret_value()
        .secret_id(&secret_name)
        .version_stage("AWSPREVIOUS")
        .send()
        .await
        .expect("previous version kept");
    assert!(previous.secret_string().expect("value").contains(demo::API));
}

#[tokio::test]
async fn disconnect_deletes_the_secret_and_every_item() {
    let env = env("disconnect").start().await;
    let keep = env.connect("team-a", demo::API).await["id"].as_str().expect("id").to_owned();
    let id = env.connect("team-a", demo::READONLY).await["id"].as_str().expect("id").to_owned();
    // A child item (as the sync will write) must go with the integration.
    env.dynamo()
        .put_item()
        .table_name(env.table())
        .item("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("TEAM#team-a#INTEGRATION#{id}")))
        .item("sk", aws_sdk_dynamodb::types::AttributeValue::S("PROJECT#42".into()))
        .send()
        .await
        .expect("child item");
    assert_eq!(env.items().await.len(), 3);

    let gone = env.delete("team-a", &format!("/integrations/gitlab/{id}")).await;
    assert_eq!(gone.status, 204, "{}", gone.raw);
    assert!(gone.raw.is_empty());
    assert_eq!(env.get("team-a", &format!("/integrations/gitlab/{id}")).await.status, 404);
    assert_eq!(env.delete("team-a", &format!("/integrations/gitlab/{id}")).await.status, 404);
    let items = env.items().await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["sk"].as_s().expect("sk"), &format!("INTEGRATION#{keep}"));
    assert_eq!(env.secret_names().await, vec![format!("{}{keep}", env.secret_prefix())]);
    // Nothing of the deleted integration is left, its sync record included.
    let leftovers: Vec<_> = env.all_items().await.into_iter().filter(|i| format!("{i:?}").contains(&id)).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let err = env.secrets().get_secret_value().secret_id(format!("{}{id}", env.secret_prefix())).send().await;
    assert!(err.is_err(), "secret still readable");
}

#[tokio::test]
async fn another_team_sees_nothing_and_a_missing_team_is_unauthorized() {
    let env = env("tenancy").start().await;
    let id = env.connect("team-a", demo::API).await["id"].as_str().expect("id").to_owned();
    let item = format!("/integrations/gitlab/{id}");
    let missing = format!("/integrations/gitlab/{}", "0".repeat(32));

    let b_get = env.get("team-b", &item).await;
    let b_missing = env.get("team-b", &missing).await;
    assert_eq!((b_get.status, b_get.raw.clone()), (404, b_missing.raw.clone()), "foreign must look missing");
    assert_eq!(env.request("POST", Some("team-b"), &format!("{item}/verify"), None).await.status, 404);
    assert_eq!(env.put("team-b", &format!("{item}/token"), &json!({ "token": demo::API })).await.status, 404);
    assert_eq!(env.delete("team-b", &item).await.status, 404);
    assert_eq!(env.get("team-b", "/integrations/gitlab").await.body, json!({ "items": [] }));
    // Team A still has it, untouched.
    assert_eq!(env.get("team-a", &item).await.status, 200);
    assert_eq!(env.secret_names().await.len(), 1);

    for (method, path) in [("GET", "/integrations/gitlab"), ("GET", item.as_str()), ("DELETE", item.as_str())] {
        let reply = env.request(method, None, path, None).await;
        assert_eq!((reply.status, reply.code()), (401, "unauthorized"), "{method} {path}");
    }
    let bad_team = env.get("team#a", "/integrations/gitlab").await;
    assert_eq!(bad_team.status, 401);
}

#[tokio::test]
async fn the_token_stays_out_of_logs_at_the_most_verbose_level() {
    let logs = crate::support::logs_at("trace");
    let env = env("no_leak_trace").start().await;
    let id = env.connect("team-a", demo::API).await["id"].as_str().expect("id").to_owned();
    let rotated =
        env.put("team-a", &format!("/integrations/gitlab/{id}/token"), &json!({ "token": demo::READONLY })).await;
    assert_eq!(rotated.status, 200, "{}", rotated.raw);
    let text = logs.text();
    // The level really is TRACE: the functions' own trace and debug lines are there, and the
    // SDK's INFO-and-above lines still pass.
    assert!(text.contains("TRACE") || text.contains("DEBUG"), "verbose lines captured");
    assert!(text.contains("integration connected"), "log capture works");
    for token in [demo::API, demo::READONLY] {
        assert!(!text.contains(token), "token found in TRACE logs");
    }
}

#[tokio::test]
async fn the_token_never_reaches_dynamodb_sqs_responses_or_logs() {
    let env = env("no_leak").start().await;
    let id = env.connect("team-a", demo::API).await["id"].as_str().expect("id").to_owned();
    env.request("POST", Some("team-a"), &format!("/integrations/gitlab/{id}/verify"), None).await;
    env.put("team-a", &format!("/integrations/gitlab/{id}/token"), &json!({ "token": demo::READONLY })).await;
    env.post("team-a", "/integrations/gitlab", &env.connect_body(demo::EXPIRED)).await;
    env.post("team-a", "/integrations/gitlab", &env.connect_body("glpat-unknown-token-leak-0001")).await;

    let items = format!("{:?}", env.all_items().await);
    let messages = format!("{:?}", env.sync_messages().await);
    let replies = env.all_replies();
    let logs = env.logs.text();
    assert!(logs.contains("integration connected"), "log capture works");
    // Positive control: the scan would see the token if it were there.
    let secret =
        env.secrets().get_secret_value().secret_id(format!("{}{id}", env.secret_prefix())).send().await.expect("get");
    assert!(secret.secret_string().expect("value").contains(demo::READONLY));
    for token in [demo::API, demo::READONLY, demo::EXPIRED, "glpat-unknown-token-leak-0001"] {
        for (place, text) in [("DynamoDB", &items), ("SQS", &messages), ("responses", &replies), ("logs", &logs)] {
            assert!(!text.contains(token), "token found in {place}");
        }
    }
}
