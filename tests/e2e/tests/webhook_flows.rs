//! GitLab webhook deliveries through the local host's function URL path, against moto: every
//! event kind GitLab documents, authentication failures, deduplication, signing, and a scan
//! queue outage replayed by the schedule.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use shared::adapters::secrets::SecretsManagerSigningKeys;
use shared::domain::ids::{IntegrationId, TeamId};
use shared::domain::webhook::SigningKey;
use shared::ports::SigningKeyVault;

use crate::support::{Env, Reply, demo, env};
use crate::sync_flows::wait_for_run;

const MR: &str = include_str!("../../fixtures/webhooks/merge_request.json");
const PUSH: &str = include_str!("../../fixtures/webhooks/push.json");
const TAG_PUSH: &str = include_str!("../../fixtures/webhooks/tag_push.json");
const NOTE: &str = include_str!("../../fixtures/webhooks/note_merge_request.json");
const VULNERABILITY: &str = include_str!("../../fixtures/webhooks/vulnerability.json");
const ACCESS_TOKEN: &str = include_str!("../../fixtures/webhooks/resource_access_token_project.json");
/// The demo API token's GitLab user.
const DEMO_USER: u64 = 101;

fn edit(fixture: &str, f: impl FnOnce(&mut Value)) -> String {
    let mut v: Value = serde_json::from_str(fixture).expect("fixture");
    f(&mut v);
    v.to_string()
}

/// Posts a delivery to `url` with GitLab's headers.
async fn deliver(env: &Env, url: &str, event: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = env
        .http
        .post(url)
        .header("content-type", "application/json")
        .header("user-agent", "GitLab/17.8.1")
        .header("x-gitlab-event", event)
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("local host answers");
    let status = resp.status().as_u16();
    let raw = resp.text().await.expect("body");
    let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
    Reply { status, body, raw }
}

/// Connects a read-only demo token (so hooks are added by hand: `manual`), waits for the first
/// sync and tracks demo project 1.
async fn connected(env: &Env) -> (String, String, String) {
    let created = env.connect("team-a", demo::READONLY).await;
    assert_eq!(created["webhook"]["mode"], "manual");
    let id = created["id"].as_str().expect("id").to_owned();
    let url = created["webhook"]["url"].as_str().expect("url").to_owned();
    let secret = created["webhook"]["secret"].as_str().expect("secret").to_owned();
    wait_for_run(env, "team-a", &id, None).await;
    let path = format!("/integrations/gitlab/{id}/repositories");
    let body = json!({ "track": [1] }).to_string().into_bytes();
    let tracked = env.request("PATCH", Some("team-a"), &path, Some(("application/json", body))).await;
    assert_eq!(tracked.status, 200, "{}", tracked.raw);
    (id, url, secret)
}

#[tokio::test]
async fn every_event_kind_is_routed_and_a_resend_is_queued_once() {
    let env = env("webhook_routes").with_workers().start().await;
    let (id, url, secret) = connected(&env).await;
    // The URL shown is this host's function URL path, derived when the integration is read.
    assert_eq!(url, format!("{}/webhooks/gitlab/{id}", env.stack.url));
    let shown = env.get("team-a", &format!("/integrations/gitlab/{id}")).await;
    assert_eq!(shown.body["webhook"]["url"], url.as_str());
    assert!(shown.body["webhook"].get("secret").is_none());
    let auth = |key: &'static str| [("x-gitlab-token", secret.clone()), ("idempotency-key", key.to_owned())];
    let send = |event: &'static str, body: String, key: &'static str| {
        let headers = auth(key);
        let env = &env;
        let url = url.clone();
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            deliver(env, &url, event, &body, &h).await
        }
    };

    let opened = send("Merge Request Hook", MR.to_owned(), "k-open").await;
    assert_eq!((opened.status, &opened.body), (200, &json!({ "status": "queued" })), "{}", opened.raw);
    // GitLab's manual resend reuses the Idempotency-Key.
    let resent = send("Merge Request Hook", MR.to_owned(), "k-open").await;
    assert_eq!((resent.status, &resent.body), (200, &json!({ "status": "duplicate" })));

    let outcomes = [
        (
            "Merge Request Hook",
            edit(MR, |v| {
                v["object_attributes"]["action"] = json!("update");
                v["object_attributes"]["oldrev"] = json!("95790bf891e76fee5e1747ab589903a6a1f80f22");
                v["object_attributes"]["last_commit"]["id"] = json!("b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327");
            }),
            "k-update",
            json!({ "status": "queued" }),
        ),
        (
            "Merge Request Hook",
            edit(MR, |v| {
                v["object_attributes"]["action"] = json!("update");
                v["changes"] = json!({ "title": { "previous": "a", "current": "b" } });
            }),
            "k-title",
            json!({ "status": "ignored", "reason": "no_new_commits" }),
        ),
        (
            "Merge Request Hook",
            edit(MR, |v| v["object_attributes"]["action"] = json!("approved")),
            "k-approved",
            json!({ "status": "ignored", "reason": "not_a_code_change" }),
        ),
        (
            "Merge Request Hook",
            edit(MR, |v| v["object_attributes"]["action"] = json!("merge")),
            "k-merge",
            json!({ "status": "queued" }),
        ),
        (
            "Merge Request Hook",
            edit(MR, |v| v["object_attributes"]["action"] = json!("close")),
            "k-close",
            json!({ "status": "queued" }),
        ),
        (
            "Merge Request Hook",
            edit(MR, |v| v["project"]["id"] = json!(2)),
            "k-untracked",
            json!({ "status": "ignored", "reason": "untracked_project" }),
        ),
        (
            "Push Hook",
            edit(PUSH, |v| {
                v["project"]["id"] = json!(1);
                v["project"]["default_branch"] = json!("main");
                v["ref"] = json!("refs/heads/main");
            }),
            "k-push",
            json!({ "status": "queued" }),
        ),
        (
            "Push Hook",
            edit(PUSH, |v| {
                v["project"]["id"] = json!(1);
                v["project"]["default_branch"] = json!("main");
                v["ref"] = json!("refs/heads/main");
                v["after"] = json!("0000000000000000000000000000000000000000");
                v["checkout_sha"] = Value::Null;
            }),
            "k-delete",
            json!({ "status": "ignored", "reason": "branch_deleted" }),
        ),
        ("Tag Push Hook", TAG_PUSH.to_owned(), "k-tag", json!({ "status": "ignored", "reason": "tag_push" })),
        (
            "Note Hook",
            edit(NOTE, |v| v["object_attributes"]["author_id"] = json!(DEMO_USER)),
            "k-own-note",
            json!({ "status": "ignored", "reason": "own_note" }),
        ),
        (
            "Pipeline Hook",
            r#"{"object_kind":"pipeline"}"#.to_owned(),
            "k-pipeline",
            json!({ "status": "ignored", "reason": "unknown_event" }),
        ),
        (
            "Vulnerability Hook",
            edit(VULNERABILITY, |v| v["object_attributes"]["project_id"] = json!(1)),
            "k-vuln",
            json!({ "status": "recorded" }),
        ),
        (
            "Resource Access Token Hook",
            edit(ACCESS_TOKEN, |v| v["object_attributes"]["user_id"] = json!(DEMO_USER)),
            "k-token",
            json!({ "status": "recorded" }),
        ),
    ];
    for (event, body, key, expected) in outcomes {
        let reply = send(event, body, key).await;
        assert_eq!((reply.status, &reply.body), (200, &expected), "{event} {key}: {}", reply.raw);
    }

    let messages = env.scan_messages().await;
    let kinds: Vec<(&str, &str)> =
        messages.iter().map(|m| (m["type"].as_str().unwrap_or(""), m["delivery_id"].as_str().unwrap_or(""))).collect();
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![
            ("scan_cancelled", "idem:k-close"),
            ("scan_cancelled", "idem:k-merge"),
            ("scan_requested", "idem:k-open"),
            ("scan_requested", "idem:k-push"),
            ("scan_requested", "idem:k-update"),
        ],
        "each delivery queued exactly once: {messages:?}"
    );
    let open = messages.iter().find(|m| m["delivery_id"] == "idem:k-open").expect("open");
    assert_eq!(open["integration_id"], id.as_str());
    assert_eq!(open["team_id"], "team-a");
    assert_eq!(open["project_id"], 1);
    assert_eq!(open["target"], json!({ "kind": "merge_request", "iid": 1, "target_branch": "master" }));
    assert_eq!(open["head_sha"], "da1560886d4f094c3e6c9ef40349f7d38b5d27d7");
    let push = messages.iter().find(|m| m["delivery_id"] == "idem:k-push").expect("push");
    assert_eq!(push["target"], json!({ "kind": "branch", "branch": "main" }));

    // GitLab's vulnerability state is kept; the expiring token shows on the integration.
    let items = env.items().await;
    let vuln = items
        .iter()
        .find(|i| i.get("sk").and_then(|v| v.as_s().ok()).is_some_and(|sk| sk.starts_with("VULNERABILITY#")))
        .expect("vulnerability item");
    assert_eq!(vuln.get("state").and_then(|v| v.as_s().ok()).map(String::as_str), Some("confirmed"));
    let shown = env.get("team-a", &format!("/integrations/gitlab/{id}")).await;
    assert_eq!(shown.body["status"], "token_expiring");
    // The tracked repository shows when its webhook last delivered.
    let repos = env.get("team-a", &format!("/integrations/gitlab/{id}/repositories?tracked=true")).await;
    let hook = &repos.body["items"][0]["webhook"];
    assert_eq!(hook["mode"], "manual");
    assert!(hook["last_delivery_at"].as_str().is_some_and(|t| t.starts_with("20")), "{}", repos.raw);
    // The secret reached no log line, item or message.
    assert!(!env.logs.text().contains(&secret));
    assert!(!format!("{items:?}").contains(&secret));
    assert!(!format!("{messages:?}").contains(&secret));
}

#[tokio::test]
async fn every_authentication_failure_is_one_answer_and_bad_requests_their_own() {
    let env = env("webhook_auth").with_workers().start().await;
    let (_, url, secret) = connected(&env).await;
    let unknown = format!("{}/webhooks/gitlab/{}", env.stack.url, IntegrationId::generate());
    let cases = [
        deliver(&env, &url, "Merge Request Hook", MR, &[("x-gitlab-token", "wrong")]).await,
        deliver(&env, &url, "Merge Request Hook", MR, &[]).await,
        deliver(&env, &unknown, "Merge Request Hook", MR, &[("x-gitlab-token", &secret)]).await,
        deliver(
            &env,
            &format!("{}/webhooks/gitlab/nothex", env.stack.url),
            "Merge Request Hook",
            MR,
            &[("x-gitlab-token", &secret)],
        )
        .await,
    ];
    for reply in &cases {
        assert_eq!((reply.status, &reply.raw), (401, &cases[0].raw));
    }
    assert_eq!(cases[0].body["error"]["code"], "unauthorized");
    let not_json = deliver(&env, &url, "Merge Request Hook", "{nope", &[("x-gitlab-token", &secret)]).await;
    assert_eq!(not_json.status, 400);
    let text = env
        .http
        .post(&url)
        .header("content-type", "text/plain")
        .header("x-gitlab-token", &secret)
        .body(MR)
        .send()
        .await
        .expect("answer");
    assert_eq!(text.status().as_u16(), 415);
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(2 * 1024 * 1024));
    assert_eq!(deliver(&env, &url, "Merge Request Hook", &huge, &[("x-gitlab-token", &secret)]).await.status, 413);
    assert!(env.scan_messages().await.is_empty());
}

#[tokio::test]
async fn a_signing_integration_accepts_only_valid_fresh_signatures() {
    let env = env("webhook_signed").with_workers().var("WEBHOOK_CACHE_SECONDS", "0").start().await;
    let (id, url, secret) = connected(&env).await;
    // Give the integration a signing key, as managed hooks on GitLab 19.0+ will.
    let prefix = format!("{}webhook-keys/", env.secret_prefix().trim_end_matches("integrations/"));
    let keys = SecretsManagerSigningKeys::new(env.secrets(), prefix, None);
    let key = SigningKey::generate();
    let team = TeamId::parse("team-a").expect("team");
    let key_ref = keys.create(&team, &IntegrationId::parse(&id).expect("id"), &key).await.expect("key secret");
    env.dynamo()
        .update_item()
        .table_name(env.table())
        .key("pk", AttributeValue::S("TEAM#team-a".into()))
        .key("sk", AttributeValue::S(format!("INTEGRATION#{id}")))
        .update_expression("SET #w.#k = :r")
        .expression_attribute_names("#w", "webhook")
        .expression_attribute_names("#k", "signing_key_ref")
        .expression_attribute_values(":r", AttributeValue::S(key_ref))
        .send()
        .await
        .expect("set signing key");

    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let ts = now.to_string();
    let msg = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
    let good = key.sign(msg, &ts, MR.as_bytes());
    let other = SigningKey::generate().sign(msg, &ts, MR.as_bytes());
    let several = format!("{other} {good}");
    let ok = deliver(
        &env,
        &url,
        "Merge Request Hook",
        MR,
        &[("webhook-id", msg), ("webhook-timestamp", &ts), ("webhook-signature", &several), ("idempotency-key", msg)],
    )
    .await;
    assert_eq!((ok.status, &ok.body), (200, &json!({ "status": "queued" })), "{}", ok.raw);

    let stale_ts = (now - 301).to_string();
    let stale = key.sign(msg, &stale_ts, MR.as_bytes());
    let tampered = MR.replacen("master", "mister", 1);
    let refused = [
        deliver(
            &env,
            &url,
            "Merge Request Hook",
            &tampered,
            &[("webhook-id", msg), ("webhook-timestamp", &ts), ("webhook-signature", &good)],
        )
        .await,
        deliver(
            &env,
            &url,
            "Merge Request Hook",
            MR,
            &[("webhook-id", msg), ("webhook-timestamp", &ts), ("webhook-signature", &other)],
        )
        .await,
        deliver(
            &env,
            &url,
            "Merge Request Hook",
            MR,
            &[("webhook-id", msg), ("webhook-timestamp", &stale_ts), ("webhook-signature", &stale)],
        )
        .await,
        // The plain token is never a fallback for a signing integration.
        deliver(&env, &url, "Merge Request Hook", MR, &[("x-gitlab-token", &secret)]).await,
    ];
    for reply in &refused {
        assert_eq!((reply.status, &reply.raw), (401, &refused[0].raw));
    }
    assert_eq!(env.scan_messages().await.len(), 1);
    assert!(!env.logs.text().contains(&key.to_whsec()));
}

#[tokio::test]
async fn a_scan_queue_outage_keeps_the_delivery_and_the_schedule_sends_it() {
    let env = env("webhook_outage").schedule_every(Duration::from_millis(700)).start().await;
    let (_, url, secret) = connected(&env).await;
    let sqs = aws_sdk_sqs::Client::new(&env.stack.sdk);
    let queue_url = env.stack.queue_url("ScanQueue").expect("queue").to_owned();
    let queue_name = queue_url.rsplit('/').next().expect("name").to_owned();
    sqs.delete_queue().queue_url(&queue_url).send().await.expect("delete queue");

    let reply =
        deliver(&env, &url, "Merge Request Hook", MR, &[("x-gitlab-token", &secret), ("idempotency-key", "k-outage")])
            .await;
    assert_eq!((reply.status, &reply.body), (200, &json!({ "status": "queued" })), "{}", reply.raw);
    let unsent = |items: &[std::collections::HashMap<String, AttributeValue>]| {
        items
            .iter()
            .filter(|i| i.get("gsi1pk").and_then(|v| v.as_s().ok()).is_some_and(|p| p == "UNSENT_DELIVERIES"))
            .count()
    };
    assert_eq!(unsent(&env.items().await), 1, "the delivery is kept, marked unsent");

    let recreated = sqs.create_queue().queue_name(&queue_name).send().await.expect("recreate queue");
    assert_eq!(recreated.queue_url(), Some(queue_url.as_str()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut messages = Vec::new();
    while messages.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the schedule never replayed the delivery");
        tokio::time::sleep(Duration::from_millis(300)).await;
        messages = env.scan_messages().await;
    }
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["delivery_id"], "idem:k-outage");
    assert_eq!(unsent(&env.items().await), 0, "the mark is cleared once sent");
}

#[tokio::test]
async fn a_rotated_secret_is_accepted_and_the_old_one_still_during_the_grace_period() {
    let env = env("webhook_rotate").with_workers().start().await;
    let (id, url, old) = connected(&env).await;
    // Cache the settings (old secret only) on the webhook side first.
    let first =
        deliver(&env, &url, "Merge Request Hook", MR, &[("x-gitlab-token", &old), ("idempotency-key", "r-1")]).await;
    assert_eq!(first.status, 200, "{}", first.raw);

    let rotated = env.post("team-a", &format!("/integrations/gitlab/{id}/webhook/secret"), &json!({})).await;
    assert_eq!(rotated.status, 200, "{}", rotated.raw);
    let new = rotated.body["webhook"]["secret"].as_str().expect("secret").to_owned();
    assert_ne!(new, old);
    assert_eq!(rotated.body["webhook"]["url"], url.as_str());
    let grace_until = rotated.body["webhook"]["grace_until"].as_str().expect("grace_until");
    let until =
        time::OffsetDateTime::parse(grace_until, &time::format_description::well_known::Rfc3339).expect("rfc3339");
    let hours = (until - time::OffsetDateTime::now_utc()).whole_minutes() as f64 / 60.0;
    assert!((23.9..=24.0).contains(&hours), "default grace is 24 h, got {hours}");
    // The secret is shown once: reading the integration does not reveal it.
    let shown = env.get("team-a", &format!("/integrations/gitlab/{id}")).await;
    assert!(!shown.raw.contains(&new));
    // Another team cannot rotate it.
    let foreign = env.post("team-b", &format!("/integrations/gitlab/{id}/webhook/secret"), &json!({})).await;
    assert_eq!(foreign.status, 404);

    // Wait out the refresh floor: the webhook re-reads its cached settings after a failure.
    tokio::time::sleep(Duration::from_millis(5200)).await;
    let with_new =
        deliver(&env, &url, "Merge Request Hook", MR, &[("x-gitlab-token", &new), ("idempotency-key", "r-2")]).await;
    assert_eq!((with_new.status, &with_new.body), (200, &json!({ "status": "queued" })), "{}", with_new.raw);
    let with_old =
        deliver(&env, &url, "Merge Request Hook", MR, &[("x-gitlab-token", &old), ("idempotency-key", "r-3")]).await;
    assert_eq!((with_old.status, &with_old.body), (200, &json!({ "status": "queued" })), "{}", with_old.raw);
    let wrong = deliver(
        &env,
        &url,
        "Merge Request Hook",
        MR,
        &[("x-gitlab-token", "not-the-secret"), ("idempotency-key", "r-4")],
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert!(!env.logs.text().contains(&new) && !env.logs.text().contains(&old));
}

/// Calls the simulator's GitLab API with the demo token, trusting its CA.
async fn sim_api(env: &Env, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(env.sim.ca_pem.as_bytes()).expect("ca")])
        .build()
        .expect("client");
    let resp = client
        .request(method.parse().expect("method"), format!("{}/api/v4{path}", env.sim.base_url()))
        .header("PRIVATE-TOKEN", demo::API)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("simulator answers");
    let status = resp.status().as_u16();
    (status, serde_json::from_slice(&resp.bytes().await.expect("body")).unwrap_or(Value::Null))
}

fn sim_event(v: Value) -> gitlab_sim::SimEvent {
    serde_json::from_value(v).expect("event")
}

#[tokio::test]
async fn gitlab_deliveries_from_a_hook_added_by_hand_are_queued_and_a_wrong_secret_disables_it() {
    let env = env("webhook_sim").with_workers().start().await;
    let (_, url, secret) = connected(&env).await;
    // What a person pastes into GitLab's hook form for a manual integration.
    let hook = json!({
        "url": url, "token": secret, "merge_requests_events": true, "push_events": true, "tag_push_events": true,
        "note_events": true, "vulnerability_events": true, "resource_access_token_events": true,
    });
    let (status, created) = sim_api(&env, "POST", "/projects/1/hooks", &hook).await;
    assert_eq!(status, 201, "{created}");

    let opened = env.sim.deliver(1, &sim_event(json!({ "kind": "merge_request", "iid": 7, "action": "open" }))).await;
    assert_eq!(opened[0].status, Some(200));
    assert_eq!(serde_json::from_str::<Value>(&opened[0].body).expect("json"), json!({ "status": "queued" }));
    let retitled =
        env.sim.deliver(1, &sim_event(json!({ "kind": "merge_request", "iid": 7, "action": "update" }))).await;
    assert_eq!(serde_json::from_str::<Value>(&retitled[0].body).expect("json")["reason"], "no_new_commits");
    let pushed = env
        .sim
        .deliver(1, &sim_event(json!({ "kind": "push", "after": "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327" })))
        .await;
    assert_eq!(serde_json::from_str::<Value>(&pushed[0].body).expect("json"), json!({ "status": "queued" }));
    let tagged = env.sim.deliver(1, &sim_event(json!({ "kind": "tag_push", "tag": "v2.0.0" }))).await;
    assert_eq!(serde_json::from_str::<Value>(&tagged[0].body).expect("json")["reason"], "tag_push");
    let own_note = env.sim.deliver(1, &sim_event(json!({ "kind": "note", "author_id": DEMO_USER, "iid": 7 }))).await;
    assert_eq!(serde_json::from_str::<Value>(&own_note[0].body).expect("json")["reason"], "own_note");

    let messages = env.scan_messages().await;
    let mut heads: Vec<(String, String)> = messages
        .iter()
        .map(|m| {
            (m["target"]["kind"].as_str().unwrap_or("").to_owned(), m["head_sha"].as_str().unwrap_or("").to_owned())
        })
        .collect();
    heads.sort();
    assert_eq!(
        heads,
        vec![
            ("branch".to_owned(), "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327".to_owned()),
            ("merge_request".to_owned(), "da1560886d4f094c3e6c9ef40349f7d38b5d27d7".to_owned()),
        ]
    );

    // A hook with a mistyped secret: four 401s and GitLab disables it for a while.
    let wrong = json!({ "url": url, "token": "mistyped", "merge_requests_events": true, "push_events": false });
    let (_, bad_hook) = sim_api(&env, "POST", "/projects/2/hooks", &wrong).await;
    let bad_id = bad_hook["id"].as_u64().expect("id");
    for _ in 0..4 {
        let d = env.sim.deliver(2, &sim_event(json!({ "kind": "merge_request", "iid": 1, "action": "open" }))).await;
        assert_eq!(d[0].status, Some(401));
    }
    let (_, state) = sim_api(&env, "GET", &format!("/projects/2/hooks/{bad_id}"), &json!({})).await;
    assert_eq!(state["alert_status"], "temporarily_disabled");
    // Fixing the secret and sending a test delivery re-enables it (project 2 is untracked: 200 ignored).
    let (status, _) = sim_api(&env, "PUT", &format!("/projects/2/hooks/{bad_id}"), &json!({ "token": secret })).await;
    assert_eq!(status, 200);
    let (status, _) = sim_api(&env, "POST", &format!("/projects/2/hooks/{bad_id}/test/push_events"), &json!({})).await;
    assert_eq!(status, 201);
    let (_, state) = sim_api(&env, "GET", &format!("/projects/2/hooks/{bad_id}"), &json!({})).await;
    assert_eq!(state["alert_status"], "executable");
}

#[tokio::test]
async fn the_hooks_adapter_creates_checks_repairs_tests_and_deletes_hooks_on_gitlab() {
    use secrecy::SecretString;
    use shared::adapters::gitlab::{GitlabSettings, ReqwestGitlab};
    use shared::domain::address::Allowlist;
    use shared::domain::gitlab::GitlabError;
    use shared::domain::hooks::HookSpec;
    use shared::domain::url_policy::{InstanceUrl, UrlPolicy};
    use shared::ports::{GitlabGateway, GitlabHooks};

    let env = env("webhook_hooks_api").with_workers().start().await;
    let (_, url, secret) = connected(&env).await;
    let policy = UrlPolicy { allowlist: Allowlist::parse("127.0.0.1/32").expect("allowlist"), denied_hosts: vec![] };
    let gitlab = ReqwestGitlab::new(GitlabSettings { policy: policy.clone(), ..GitlabSettings::default() });
    let instance = gitlab.resolve(&InstanceUrl::parse(&env.sim.base_url(), &policy).expect("url")).await.expect("dns");
    let ca = Some(env.sim.ca_pem.as_str());
    let token = SecretString::from(demo::API.to_owned());
    let spec = HookSpec { url: url.clone(), token: SecretString::from(secret.clone()), signing_token: None };

    let created = gitlab.create_hook(&instance, ca, &token, 1, &spec).await.expect("create");
    assert!(created.drift(&url).is_empty(), "{:?}", created.drift(&url));
    assert_eq!(created.signing_token_present, None, "17.x has no signing tokens");
    // GitLab delivers to the connector with the secret the hook was given.
    let delivered =
        env.sim.deliver(1, &sim_event(json!({ "kind": "merge_request", "iid": 9, "action": "open" }))).await;
    assert_eq!(delivered[0].status, Some(200));

    // Someone edits the hook in GitLab: the URL moves (GitLab drops the token) and an event is unticked.
    let (status, _) = sim_api(
        &env,
        "PUT",
        &format!("/projects/1/hooks/{}", created.id),
        &json!({ "url": format!("{url}x"), "merge_requests_events": false }),
    )
    .await;
    assert_eq!(status, 200);
    let seen = gitlab.get_hook(&instance, ca, &token, 1, created.id).await.expect("get");
    assert_eq!(seen.drift(&url), vec!["url", "merge_requests_events", "token"]);
    let repaired = gitlab.update_hook(&instance, ca, &token, 1, created.id, &spec).await.expect("update");
    assert!(repaired.drift(&url).is_empty());
    assert_eq!(env.sim.hooks()[0].token.as_deref(), Some(secret.as_str()));

    // Deliveries that fail (a wrong secret here) get the hook disabled; the test call tells
    // whether deliveries work again and, if so, GitLab enables the hook.
    let wrong = HookSpec { url: url.clone(), token: SecretString::from("wrong".to_owned()), signing_token: None };
    gitlab.update_hook(&instance, ca, &token, 1, created.id, &wrong).await.expect("update");
    for _ in 0..4 {
        env.sim.deliver(1, &sim_event(json!({ "kind": "merge_request", "iid": 9, "action": "reopen" }))).await;
    }
    assert!(gitlab.get_hook(&instance, ca, &token, 1, created.id).await.expect("get").is_disabled());
    assert!(!gitlab.test_hook(&instance, ca, &token, 1, created.id).await.expect("test"));
    gitlab.update_hook(&instance, ca, &token, 1, created.id, &spec).await.expect("update");
    assert!(gitlab.test_hook(&instance, ca, &token, 1, created.id).await.expect("test"));
    assert!(!gitlab.get_hook(&instance, ca, &token, 1, created.id).await.expect("get").is_disabled());

    gitlab.delete_hook(&instance, ca, &token, 1, created.id).await.expect("delete");
    gitlab.delete_hook(&instance, ca, &token, 1, created.id).await.expect("a second delete is not an error");
    assert_eq!(gitlab.get_hook(&instance, ca, &token, 1, created.id).await, Err(GitlabError::NotFound));
    // A read-only token cannot manage hooks.
    let readonly = SecretString::from(demo::READONLY.to_owned());
    assert!(matches!(
        gitlab.create_hook(&instance, ca, &readonly, 1, &spec).await,
        Err(GitlabError::InsufficientScope { .. })
    ));
}

#[tokio::test]
async fn a_record_write_retried_after_a_timeout_is_not_taken_for_a_duplicate() {
    use shared::adapters::dynamodb_webhooks::DynamoWebhookStore;
    use shared::ports::{DeliveryRecord, DeliveryStore, Recorded};

    let env = env("webhook_record_retry").start().await;
    let store = DynamoWebhookStore::new(env.dynamo(), env.table());
    let now = time::OffsetDateTime::now_utc();
    let record = DeliveryRecord {
        team_id: TeamId::parse("team-a").expect("team"),
        integration_id: IntegrationId::generate(),
        key: "idem:k1".into(),
        event: "Merge Request Hook".into(),
        messages: vec![],
        recorded_at: now,
        attempt: "attempt-1".into(),
    };
    let expires = now + time::Duration::days(4);
    assert_eq!(store.record(&record, expires).await.expect("write"), Recorded::New);
    // The SDK's retry of the same request finds its own record.
    assert_eq!(store.record(&record, expires).await.expect("write"), Recorded::New);
    // Another receipt of the same delivery (a resend) is the duplicate.
    let resend = DeliveryRecord { attempt: "attempt-2".into(), ..record.clone() };
    assert_eq!(store.record(&resend, expires).await.expect("write"), Recorded::Duplicate);
}

/// Waits until `check` holds for the simulator's hooks (the sync works through the queue).
async fn wait_for_hooks(
    env: &Env,
    what: &str,
    check: impl Fn(&[gitlab_sim::SimHook]) -> bool,
) -> Vec<gitlab_sim::SimHook> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let hooks = env.sim.hooks();
        if check(&hooks) {
            return hooks;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}; hooks: {hooks:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn managed_hooks_follow_tracking_are_repaired_re_enabled_and_removed_on_disconnect() {
    let env = env("webhook_managed").schedule_every(Duration::from_secs(2)).start().await;
    let created = env.connect("team-a", demo::API).await;
    assert_eq!(created["webhook"]["mode"], "managed");
    let id = created["id"].as_str().expect("id").to_owned();
    let url = created["webhook"]["url"].as_str().expect("url").to_owned();
    let secret = created["webhook"]["secret"].as_str().expect("secret").to_owned();
    wait_for_run(&env, "team-a", &id, None).await;
    let repos = format!("/integrations/gitlab/{id}/repositories");
    let track = |body: Value| {
        env.request("PATCH", Some("team-a"), &repos, Some(("application/json", body.to_string().into_bytes())))
    };
    assert_eq!(track(json!({ "track": [1, 2] })).await.status, 200);

    // Tracking creates each project's hook with the connector's URL, secret and events.
    let hooks = wait_for_hooks(&env, "hooks on projects 1 and 2", |h| h.len() == 2).await;
    for hook in &hooks {
        assert_eq!(hook.url, url);
        assert_eq!(hook.token.as_deref(), Some(secret.as_str()));
        assert!(hook.events.contains(&"merge_requests_events") && hook.events.contains(&"push_events"));
        assert!(!hook.events.contains(&"tag_push_events"));
    }
    let opened = env.sim.deliver(1, &sim_event(json!({ "kind": "merge_request", "iid": 3, "action": "open" }))).await;
    assert_eq!(opened.len(), 1);
    assert_eq!(serde_json::from_str::<Value>(&opened[0].body).expect("json"), json!({ "status": "queued" }));
    let listed = env.get("team-a", &format!("{repos}?tracked=true")).await;
    let first = &listed.body["items"][0]["webhook"];
    assert_eq!(first["mode"], "managed", "{}", listed.raw);
    assert!(first["hook_id"].as_u64().is_some());
    assert_eq!(first["alert_status"], "executable");

    // Someone moves the hook's URL in GitLab (which drops its secret): the hourly check puts it back.
    let hook1 = hooks.iter().find(|h| h.project_id == 1).expect("hook on 1").id;
    let (status, _) =
        sim_api(&env, "PUT", &format!("/projects/1/hooks/{hook1}"), &json!({ "url": "https://elsewhere.example/x" }))
            .await;
    assert_eq!(status, 200);
    wait_for_hooks(&env, "hook on 1 repaired", |h| {
        h.iter().any(|x| x.id == hook1 && x.url == url && x.token.as_deref() == Some(secret.as_str()))
    })
    .await;

    // A wrong secret set in GitLab: deliveries fail until GitLab disables the hook; the check
    // gives it the secret again and a test delivery, and GitLab enables it.
    let (status, _) = sim_api(&env, "PUT", &format!("/projects/1/hooks/{hook1}"), &json!({ "token": "typo" })).await;
    assert_eq!(status, 200);
    for _ in 0..4 {
        let d = env.sim.deliver(1, &sim_event(json!({ "kind": "merge_request", "iid": 3, "action": "reopen" }))).await;
        if d.is_empty() {
            break;
        }
    }
    let now = time::OffsetDateTime::now_utc();
    assert!(env.sim.hooks().iter().any(|h| h.id == hook1 && h.alert_status(now) == "temporarily_disabled"));
    wait_for_hooks(&env, "hook on 1 re-enabled", |h| {
        h.iter().any(|x| x.id == hook1 && x.alert_status(time::OffsetDateTime::now_utc()) == "executable")
    })
    .await;
    assert_eq!(
        env.sim.deliver(1, &sim_event(json!({ "kind": "merge_request", "iid": 4, "action": "open" }))).await[0].status,
        Some(200)
    );

    // Untracking removes the hook; disconnecting removes the rest.
    assert_eq!(track(json!({ "untrack": [2] })).await.status, 200);
    wait_for_hooks(&env, "hook on 2 removed", |h| h.iter().all(|x| x.project_id != 2)).await;
    let gone = env.delete("team-a", &format!("/integrations/gitlab/{id}")).await;
    assert_eq!(gone.status, 204);
    // A check already in flight removes a hook it creates once it sees the disconnect.
    wait_for_hooks(&env, "every hook removed", <[gitlab_sim::SimHook]>::is_empty).await;
    assert!(!env.logs.text().contains(&secret));
}

#[tokio::test]
async fn on_gitlab_19_managed_hooks_are_signed_and_only_signed_deliveries_are_accepted() {
    let sim = gitlab_sim::SimConfig { version: "19.0.1-ee".into(), ..gitlab_sim::SimConfig::default() };
    let env = env("webhook_managed_signed").sim(sim).with_workers().var("WEBHOOK_CACHE_SECONDS", "0").start().await;
    let created = env.connect("team-a", demo::API).await;
    assert_eq!(created["webhook"]["mode"], "managed");
    assert_eq!(created["webhook"]["signed"], true);
    let signing = created["webhook"]["signing_token"].as_str().expect("signing token shown once").to_owned();
    assert!(signing.starts_with("whsec_"));
    let id = created["id"].as_str().expect("id").to_owned();
    let url = created["webhook"]["url"].as_str().expect("url").to_owned();
    let secret = created["webhook"]["secret"].as_str().expect("secret").to_owned();
    let shown = env.get("team-a", &format!("/integrations/gitlab/{id}")).await;
    assert!(shown.body["webhook"].get("signing_token").is_none() && !shown.raw.contains(&signing));
    wait_for_run(&env, "team-a", &id, None).await;
    let path = format!("/integrations/gitlab/{id}/repositories");
    let body = json!({ "track": [1] }).to_string().into_bytes();
    assert_eq!(env.request("PATCH", Some("team-a"), &path, Some(("application/json", body))).await.status, 200);

    let hooks = wait_for_hooks(&env, "signed hook on project 1", |h| h.len() == 1).await;
    assert_eq!(hooks[0].signing_token.as_deref(), Some(signing.as_str()));
    let delivered =
        env.sim.deliver(1, &sim_event(json!({ "kind": "merge_request", "iid": 2, "action": "open" }))).await;
    assert_eq!(serde_json::from_str::<Value>(&delivered[0].body).expect("json"), json!({ "status": "queued" }));
    // The plain token alone is refused: this integration accepts signed deliveries only.
    let unsigned = deliver(&env, &url, "Merge Request Hook", MR, &[("x-gitlab-token", &secret)]).await;
    assert_eq!(unsigned.status, 401);

    // Rotation issues a new secret and signing key; the hook gets both, and the old key still
    // verifies during the grace period.
    let rotated = env.post("team-a", &format!("/integrations/gitlab/{id}/webhook/secret"), &json!({})).await;
    assert_eq!(rotated.status, 200, "{}", rotated.raw);
    let new_signing = rotated.body["webhook"]["signing_token"].as_str().expect("new signing token").to_owned();
    assert_ne!(new_signing, signing);
    wait_for_hooks(&env, "hook with the new signing token", |h| {
        h[0].signing_token.as_deref() == Some(new_signing.as_str())
    })
    .await;
    let fresh = env.sim.deliver(1, &sim_event(json!({ "kind": "merge_request", "iid": 2, "action": "reopen" }))).await;
    assert_eq!(serde_json::from_str::<Value>(&fresh[0].body).expect("json"), json!({ "status": "queued" }));
    let old_key = shared::domain::webhook::SigningKey::parse(&signing).expect("whsec");
    let ts = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
    let sig = old_key.sign("msg_old", &ts, MR.as_bytes());
    let with_old = deliver(
        &env,
        &url,
        "Merge Request Hook",
        MR,
        &[("webhook-id", "msg_old"), ("webhook-timestamp", &ts), ("webhook-signature", &sig)],
    )
    .await;
    assert_eq!(with_old.status, 200, "{}", with_old.raw);
    assert!(!env.logs.text().contains(&signing) && !env.logs.text().contains(&new_signing));
}
