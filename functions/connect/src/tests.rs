//! Handler tests: API Gateway v2 events through `handle` with in-memory fakes.

use std::sync::Arc;

use lambda_http::{Body, Request};
use secrecy::SecretString;
use serde_json::{Value, json};
use shared::domain::gitlab::GitlabError;
use shared::domain::integration::{GitlabUser, TokenKind, TokenReport};
use shared::domain::url_policy::{UrlPolicy, UrlReason};
use shared::messages::Message;
use shared::ports::{IntegrationStore, StoredToken, TokenVault};
use shared::testing::{FakeGitlab, InMemoryIntegrationStore, InMemoryVault, RecordingJobQueue};

use crate::{Deps, handle};

const FIXTURE: &str = include_str!("../tests/fixtures/apigw-v2-request.json");
const TOKEN: &str = "glpat-handler-test-000000001";
const URL: &str = "https://gitlab.example.com";

struct World {
    deps: Deps,
    store: Arc<InMemoryIntegrationStore>,
    vault: Arc<InMemoryVault>,
    queue: Arc<RecordingJobQueue>,
    gitlab: Arc<FakeGitlab>,
}

fn report(scopes: &[&str], user_id: u64) -> TokenReport {
    TokenReport {
        instance_version: Some("17.8.1".into()),
        kind: TokenKind::Personal,
        scopes: Some(scopes.iter().map(|s| (*s).to_owned()).collect()),
        expires_at: None,
        user: GitlabUser { id: user_id, username: "alice".into(), bot: false, is_admin: false },
    }
}

fn world() -> World {
    let store = Arc::new(InMemoryIntegrationStore::default());
    let vault = Arc::new(InMemoryVault::default());
    let queue = Arc::new(RecordingJobQueue::default());
    let gitlab = Arc::new(FakeGitlab::default());
    let projects = Arc::new(shared::testing::InMemoryProjectStore::default());
    gitlab.answer(TOKEN, Ok(report(&["api"], 7)));
    let deps = Deps {
        store: store.clone(),
        vault: vault.clone(),
        hook_secrets: Arc::new(shared::testing::InMemoryHookSecrets::default()),
        hooks: Arc::new(shared::testing::FakeHooks::default()),
        projects: projects.clone(),
        sync_state: projects,
        queue: queue.clone(),
        gitlab: gitlab.clone(),
        policy: UrlPolicy::default(),
        team_claim: "team_id".into(),
        webhook_base_url: "https://hooks.example.com".into(),
        connect_tests_per_minute: 100,
        max_integrations_per_team: 0,
        token_policy: shared::domain::integration::TokenPolicy::default(),
        webhook_secret_grace: time::Duration::hours(24),
    };
    World { deps, store, vault, queue, gitlab }
}

fn event(method: &str, path: &str, body: Option<Value>, team: Option<&str>) -> Request {
    let mut e: Value = serde_json::from_str(FIXTURE).expect("fixture");
    e["rawPath"] = json!(path);
    e["requestContext"]["http"]["method"] = json!(method);
    e["requestContext"]["http"]["path"] = json!(path);
    match body {
        Some(b) => e["body"] = json!(b.to_string()),
        None => e["body"] = Value::Null,
    }
    match team {
        Some(t) => e["requestContext"]["authorizer"]["jwt"]["claims"]["team_id"] = json!(t),
        None => {
            e["requestContext"]["authorizer"]["jwt"]["claims"].as_object_mut().expect("claims").remove("team_id");
        }
    }
    lambda_http::request::from_str(&e.to_string()).expect("event parses")
}

async fn call(w: &World, req: Request) -> (u16, Value) {
    let resp = handle(&w.deps, req).await.expect("handle never errs");
    let status = resp.status().as_u16();
    let body = match resp.body() {
        Body::Text(t) => serde_json::from_str(t).expect("json"),
        _ => Value::Null,
    };
    (status, body)
}

fn connect_body() -> Value {
    json!({ "instance_url": URL, "token": TOKEN })
}

#[tokio::test]
async fn connect_writes_secret_integration_and_one_sync_message() {
    let w = world();
    let (status, body) = call(&w, event("POST", "/integrations/gitlab", Some(connect_body()), Some("team-a"))).await;
    assert_eq!(status, 201, "{body}");
    let secret_ref = &w.store.all()[0].secret_ref;
    assert_eq!(w.vault.current(secret_ref).as_deref(), Some(TOKEN));
    assert_eq!(body["name"], "gitlab.example.com");
    assert_eq!(
        body["webhook"]["url"],
        format!("https://hooks.example.com/webhooks/gitlab/{}", body["id"].as_str().expect("id"))
    );
    let sent = w.queue.sent_messages();
    assert_eq!(sent.len(), 1);
    let Message::SyncRequested(m) = &sent[0] else { panic!("{:?}", sent[0]) };
    assert_eq!(m.team_id.as_str(), "team-a");
    assert_eq!(w.gitlab.inspected(), vec![URL.to_owned()]);
}

#[tokio::test]
async fn a_failed_store_write_removes_the_new_secret() {
    let w = world();
    w.store.set_unavailable(true);
    let (status, body) = call(&w, event("POST", "/integrations/gitlab", Some(connect_body()), Some("team-a"))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("service_unavailable")));
    assert!(w.vault.is_empty(), "orphaned secret left behind");
    assert!(w.queue.sent_messages().is_empty());
}

#[tokio::test]
async fn an_unavailable_queue_still_connects_and_says_the_sync_is_delayed() {
    let w = world();
    w.queue.set_failing(true);
    let (status, body) = call(&w, event("POST", "/integrations/gitlab", Some(connect_body()), Some("team-a"))).await;
    assert_eq!(status, 201);
    assert!(body["warnings"].as_array().expect("warnings").iter().any(|x| x["code"] == "first_sync_delayed"));
    assert_eq!(w.store.all().len(), 1);
}

#[tokio::test]
async fn gitlab_and_dns_failures_map_to_the_contract() {
    let w = world();
    for (answer, status, code) in [
        (Err(GitlabError::TokenExpired), 422, "token_expired"),
        (Err(GitlabError::Timeout), 504, "instance_timeout"),
        (Err(GitlabError::Tls), 502, "tls_error"),
        (Err(GitlabError::NotGitlab { why: "html" }), 502, "not_gitlab"),
        (
            Err(GitlabError::RateLimited { retry_after: Some(std::time::Duration::from_secs(30)) }),
            429,
            "instance_rate_limited",
        ),
        (Ok(report(&["api", "sudo"], 7)), 422, "token_too_privileged"),
        (Ok(report(&["read_api"], 7)), 422, "insufficient_scope"),
    ] {
        w.gitlab.answer(TOKEN, answer);
        let (s, body) = call(&w, event("POST", "/integrations/gitlab", Some(connect_body()), Some("team-a"))).await;
        assert_eq!((s, body["error"]["code"].as_str()), (status, Some(code)), "{body}");
    }
    w.gitlab.dns("gitlab.example.com", Err(UrlReason::DnsFailure));
    let (s, body) =
        call(&w, event("POST", "/integrations/gitlab/preflight", Some(json!({ "instance_url": URL })), Some("team-a")))
            .await;
    assert_eq!((s, body["error"]["details"]["reason"].as_str()), (400, Some("dns_failure")));
    assert!(w.store.all().is_empty() && w.vault.is_empty() && w.queue.sent_messages().is_empty());
}

#[tokio::test]
async fn verify_never_sends_a_token_to_another_origin() {
    let w = world();
    let (_, body) = call(&w, event("POST", "/integrations/gitlab", Some(connect_body()), Some("team-a"))).await;
    let id = body["id"].as_str().expect("id").to_owned();
    let secret_ref = w.store.all()[0].secret_ref.clone();
    // Tamper: the secret now claims another origin.
    let moved = StoredToken { origin: "https://evil.example.net".into(), token: SecretString::from(TOKEN.to_owned()) };
    w.vault.replace(&secret_ref, &moved).await.expect("replace");
    let before = w.gitlab.inspected().len();
    let (status, body) =
        call(&w, event("POST", &format!("/integrations/gitlab/{id}/verify"), None, Some("team-a"))).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("token_invalid")), "{body}");
    assert_eq!(w.gitlab.inspected().len(), before, "token was sent despite the origin mismatch");
}

#[tokio::test]
async fn rotation_to_another_users_token_changes_nothing() {
    let w = world();
    let (_, body) = call(&w, event("POST", "/integrations/gitlab", Some(connect_body()), Some("team-a"))).await;
    let id = body["id"].as_str().expect("id").to_owned();
    let other = "glpat-handler-test-000000002";
    w.gitlab.answer(other, Ok(report(&["api"], 8)));
    let (status, body) = call(
        &w,
        event("PUT", &format!("/integrations/gitlab/{id}/token"), Some(json!({ "token": other })), Some("team-a")),
    )
    .await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("token_user_mismatch")));
    let stored = w.store.all()[0].clone();
    assert_eq!(w.vault.current(&stored.secret_ref).as_deref(), Some(TOKEN));
    assert_eq!(w.vault.previous(&stored.secret_ref), None);
}

#[tokio::test]
async fn the_team_comes_only_from_the_configured_claim() {
    let mut w = world();
    let (status, _) = call(&w, event("GET", "/integrations/gitlab", None, None)).await;
    assert_eq!(status, 401);
    w.deps.team_claim = "org".into();
    let (status, _) = call(&w, event("GET", "/integrations/gitlab", None, Some("team-a"))).await;
    assert_eq!(status, 401, "team_id must not be read when the claim is org");
    let mut e: Value = serde_json::from_str(FIXTURE).expect("fixture");
    e["rawPath"] = json!("/integrations/gitlab");
    e["requestContext"]["http"]["method"] = json!("GET");
    e["requestContext"]["authorizer"]["jwt"]["claims"]["org"] = json!("team-b");
    e["body"] = Value::Null;
    let (status, body) = call(&w, lambda_http::request::from_str(&e.to_string()).expect("event")).await;
    assert_eq!((status, body), (200, json!({ "items": [] })));
    assert!(w.store.list(&shared::domain::ids::TeamId::parse("team-b").expect("team")).await.expect("list").is_empty());
}

#[tokio::test]
async fn connection_tests_are_limited_per_team() {
    let mut w = world();
    w.deps.connect_tests_per_minute = 5;
    let preflight =
        || event("POST", "/integrations/gitlab/preflight", Some(json!({ "instance_url": URL })), Some("team-a"));
    for _ in 0..5 {
        assert_eq!(call(&w, preflight()).await.0, 200);
    }
    // Six more: even if a minute boundary falls in between, one window sees more than five.
    let mut refused = None;
    for _ in 0..6 {
        let (status, body) = call(&w, preflight()).await;
        if status == 429 {
            refused = Some(body);
            break;
        }
    }
    let body = refused.expect("the limit was never applied");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    let wait = body["error"]["details"]["retry_after_seconds"].as_u64().expect("retry after");
    assert!((1..=60).contains(&wait));
    // Another team has its own budget; a malformed URL does not count.
    let other = event("POST", "/integrations/gitlab/preflight", Some(json!({ "instance_url": URL })), Some("team-b"));
    assert_eq!(call(&w, other).await.0, 200);
}

#[tokio::test]
async fn a_concurrent_change_is_a_conflict_and_rotation_restores_the_old_token() {
    let w = world();
    let (_, body) = call(&w, event("POST", "/integrations/gitlab", Some(connect_body()), Some("team-a"))).await;
    let id = body["id"].as_str().expect("id").to_owned();
    let stored = w.store.all()[0].clone();
    // Another request updates the integration between our read and our write.
    let mut changed = stored.clone();
    changed.updated_at += time::Duration::seconds(1);
    w.store.update(&changed, stored.updated_at).await.expect("concurrent update");
    let newer = "glpat-handler-test-000000003";
    w.gitlab.answer(newer, Ok(report(&["api"], 7)));
    // Rotation reads the changed record, so it succeeds; a stale write is what conflicts.
    let (status, _) = call(
        &w,
        event("PUT", &format!("/integrations/gitlab/{id}/token"), Some(json!({ "token": newer })), Some("team-a")),
    )
    .await;
    assert_eq!(status, 200);
    let err = w.store.update(&stored, stored.updated_at).await.expect_err("stale write");
    assert!(matches!(err, shared::ports::PortError::Conflict));

    // A store failure after the secret was replaced puts the previous token back.
    let newest = "glpat-handler-test-000000004";
    w.gitlab.answer(newest, Ok(report(&["api"], 7)));
    let current = w.vault.current(&stored.secret_ref);
    w.store.set_failing_updates(true);
    let (status, _) = call(
        &w,
        event("PUT", &format!("/integrations/gitlab/{id}/token"), Some(json!({ "token": newest })), Some("team-a")),
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(w.vault.current(&stored.secret_ref), current);
}
