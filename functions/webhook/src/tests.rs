//! Handler tests: function URL events through `handle` with in-memory fakes.

use std::sync::Arc;
use std::time::Duration;

use lambda_http::{Body, Request};
use serde_json::{Value, json};
use shared::domain::ids::{IntegrationId, TeamId};
use shared::domain::integration::{GitlabUser, Integration, webhook_secret_digest};
use shared::domain::scan::{CommitSha, ScanTarget, ScanTrigger};
use shared::domain::webhook::{CancelReason, SigningKey};
use shared::messages::Message;
use shared::ports::{IntegrationStore, SigningKeyVault};
use shared::testing::{InMemoryIntegrationStore, InMemorySigningKeys, InMemoryWebhookStore, RecordingJobQueue};
use time::OffsetDateTime;

use crate::{Cache, Deps, handle};

const FIXTURE: &str = include_str!("../tests/fixtures/function-url-request.json");
const MR: &str = include_str!("../../../tests/fixtures/webhooks/merge_request.json");
const PUSH: &str = include_str!("../../../tests/fixtures/webhooks/push.json");
const NOTE: &str = include_str!("../../../tests/fixtures/webhooks/note_merge_request.json");
const TOKEN_EVENT: &str = include_str!("../../../tests/fixtures/webhooks/resource_access_token_project.json");
const SECRET: &str = "5f0c1d2e3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f";
const BOT_USER: u64 = 90;

struct World {
    deps: Deps,
    integrations: Arc<InMemoryIntegrationStore>,
    webhooks: Arc<InMemoryWebhookStore>,
    keys: Arc<InMemorySigningKeys>,
    queue: Arc<RecordingJobQueue>,
    id: IntegrationId,
}

fn integration(id: &IntegrationId) -> Integration {
    let mut i = shared::testing::sample_integration(&TeamId::parse("team-a").expect("team"), id);
    i.user = GitlabUser { id: BOT_USER, username: "project_1_bot_abc".into(), bot: true, is_admin: false };
    i.webhook_secret_sha256 = webhook_secret_digest(SECRET);
    i
}

async fn world() -> World {
    let integrations = Arc::new(InMemoryIntegrationStore::default());
    let webhooks = Arc::new(InMemoryWebhookStore::default());
    let keys = Arc::new(InMemorySigningKeys::default());
    let queue = Arc::new(RecordingJobQueue::default());
    let id = IntegrationId::generate();
    integrations.insert(&integration(&id)).await.expect("insert");
    // The doc's merge request is on project 1, its push on project 15.
    webhooks.set_tracked(&id, 1, true);
    webhooks.set_tracked(&id, 15, true);
    let deps = Deps {
        directory: integrations.clone(),
        deliveries: webhooks.clone(),
        state: webhooks.clone(),
        keys: keys.clone(),
        queue: queue.clone(),
        cache: Arc::new(Cache::new(Duration::from_secs(30))),
        max_body_bytes: 64 * 1024,
        dedup_ttl: Duration::from_secs(96 * 3600),
    };
    World { deps, integrations, webhooks, keys, queue, id }
}

fn delivery(id: &str, event: &str, body: &str, headers: &[(&str, &str)]) -> Request {
    let mut e: Value = serde_json::from_str(FIXTURE).expect("fixture");
    let path = format!("/webhooks/gitlab/{id}");
    e["rawPath"] = json!(path);
    e["requestContext"]["http"]["path"] = json!(path);
    e["headers"]["x-gitlab-event"] = json!(event);
    e["headers"]["x-gitlab-token"] = json!(SECRET);
    for (k, v) in headers {
        if v.is_empty() {
            e["headers"].as_object_mut().expect("headers").remove(*k);
        } else {
            e["headers"][*k] = json!(v);
        }
    }
    e["body"] = json!(body);
    lambda_http::request::from_str(&e.to_string()).expect("event parses")
}

async fn call(w: &World, req: Request) -> (u16, Value) {
    let resp = handle(&w.deps, req).await.expect("handle never errs");
    let status = resp.status().as_u16();
    let body = match resp.body() {
        Body::Text(t) => serde_json::from_str(t).expect("json"),
        Body::Binary(b) => serde_json::from_slice(b).expect("json"),
        _ => Value::Null,
    };
    (status, body)
}

fn edit(fixture: &str, f: impl FnOnce(&mut Value)) -> String {
    let mut v: Value = serde_json::from_str(fixture).expect("fixture");
    f(&mut v);
    v.to_string()
}

#[tokio::test]
async fn a_merge_request_opened_queues_one_scan_of_its_head() {
    let w = world().await;
    let (status, body) = call(&w, delivery(w.id.as_str(), "Merge Request Hook", MR, &[])).await;
    assert_eq!((status, &body), (200, &json!({ "status": "queued" })));
    let sent = w.queue.sent_messages();
    let [Message::ScanRequested(scan)] = sent.as_slice() else { panic!("{sent:?}") };
    assert_eq!(scan.project_id, 1);
    assert_eq!(scan.target, ScanTarget::MergeRequest { iid: 1, target_branch: "master".into() });
    assert_eq!(scan.head_sha.as_ref().map(CommitSha::as_str), Some("da1560886d4f094c3e6c9ef40349f7d38b5d27d7"));
    assert_eq!(scan.trigger, ScanTrigger::MergeRequest);
    assert_eq!(scan.delivery_id.as_deref(), Some("idem:f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9"));
    assert_eq!(scan.team_id.as_str(), "team-a");
}

#[tokio::test]
async fn a_repeated_idempotency_key_is_queued_once() {
    let w = world().await;
    let first = call(&w, delivery(w.id.as_str(), "Merge Request Hook", MR, &[])).await;
    let second = call(&w, delivery(w.id.as_str(), "Merge Request Hook", MR, &[])).await;
    assert_eq!(first.1["status"], "queued");
    assert_eq!((second.0, &second.1), (200, &json!({ "status": "duplicate" })));
    assert_eq!(w.queue.sent_messages().len(), 1);
}

#[tokio::test]
async fn every_authentication_failure_gets_the_same_answer() {
    let w = world().await;
    let unknown = IntegrationId::generate();
    let cases = [
        delivery(unknown.as_str(), "Merge Request Hook", MR, &[]),
        delivery("not-an-id", "Merge Request Hook", MR, &[]),
        delivery(w.id.as_str(), "Merge Request Hook", MR, &[("x-gitlab-token", "wrong")]),
        delivery(w.id.as_str(), "Merge Request Hook", MR, &[("x-gitlab-token", "")]),
        delivery(w.id.as_str(), "Merge Request Hook", MR, &[("x-gitlab-token", &format!("{SECRET},{SECRET}"))]),
    ];
    let mut answers = Vec::new();
    for req in cases {
        answers.push(call(&w, req).await);
    }
    assert_eq!(answers[0].0, 401);
    assert_eq!(answers[0].1["error"]["code"], "unauthorized");
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert!(w.queue.sent_messages().is_empty());
    assert!(w.webhooks.deliveries().is_empty());
}

#[tokio::test]
async fn a_signing_integration_accepts_only_fresh_valid_signatures() {
    let w = world().await;
    let key = SigningKey::generate();
    let key_ref = w.keys.create(&TeamId::parse("team-a").expect("team"), &w.id, &key).await.expect("key");
    let mut i = integration(&w.id);
    i.id = IntegrationId::generate();
    i.webhook.signing_key_ref = Some(key_ref);
    w.integrations.insert(&i).await.expect("insert");
    w.webhooks.set_tracked(&i.id, 1, true);
    let now = OffsetDateTime::now_utc().unix_timestamp().to_string();
    let id = "msg_2Lh9BfZrsBhHkB2N1cNM5Hi3Xzr";
    let sig = key.sign(id, &now, MR.as_bytes());
    let signed = [("webhook-id", id), ("webhook-timestamp", now.as_str()), ("webhook-signature", sig.as_str())];
    let (status, body) = call(&w, delivery(i.id.as_str(), "Merge Request Hook", MR, &signed)).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("queued")));
    // The plain token, although correct for the first integration's secret, is never enough here.
    let (status, _) = call(&w, delivery(i.id.as_str(), "Merge Request Hook", MR, &[])).await;
    assert_eq!(status, 401);
    let stale = (OffsetDateTime::now_utc().unix_timestamp() - 301).to_string();
    let stale_sig = key.sign(id, &stale, MR.as_bytes());
    let old = [("webhook-id", id), ("webhook-timestamp", stale.as_str()), ("webhook-signature", stale_sig.as_str())];
    assert_eq!(call(&w, delivery(i.id.as_str(), "Merge Request Hook", MR, &old)).await.0, 401);
    let tampered = MR.replacen("master", "main", 1);
    assert_eq!(call(&w, delivery(i.id.as_str(), "Merge Request Hook", &tampered, &signed)).await.0, 401);
    // The key was read once and then served from the cache.
    assert_eq!(w.keys.reads(), 1);
}

#[tokio::test]
async fn ignored_events_answer_200_with_the_reason() {
    let w = world().await;
    w.webhooks.set_tracked(&w.id, 1, false);
    let cases = [
        ("Merge Request Hook", MR.to_owned(), "untracked_project"),
        ("Note Hook", edit(NOTE, |v| v["object_attributes"]["author_id"] = json!(BOT_USER)), "own_note"),
        ("Note Hook", NOTE.to_owned(), "note"),
        ("Pipeline Hook", r#"{"object_kind":"pipeline"}"#.to_owned(), "unknown_event"),
        ("Push Hook", edit(PUSH, |v| v["ref"] = json!("refs/heads/topic")), "not_default_branch"),
    ];
    for (event, body, reason) in cases {
        let key = format!("{reason}-key");
        let (status, answer) = call(&w, delivery(w.id.as_str(), event, &body, &[("idempotency-key", &key)])).await;
        assert_eq!((status, answer), (200, json!({ "status": "ignored", "reason": reason })), "{event}");
    }
    assert!(w.queue.sent_messages().is_empty());
}

#[tokio::test]
async fn merge_and_close_queue_a_cancel() {
    let w = world().await;
    let merged = edit(MR, |v| v["object_attributes"]["action"] = json!("merge"));
    call(&w, delivery(w.id.as_str(), "Merge Request Hook", &merged, &[])).await;
    let sent = w.queue.sent_messages();
    let [Message::ScanCancelled(c)] = sent.as_slice() else { panic!("{sent:?}") };
    assert_eq!((c.project_id, c.merge_request_iid, c.reason), (1, 1, CancelReason::Merged));
}

#[tokio::test]
async fn the_integrations_expiring_token_sets_its_status() {
    let w = world().await;
    let (status, body) = call(&w, delivery(w.id.as_str(), "Resource Access Token Hook", TOKEN_EVENT, &[])).await;
    assert_eq!((status, body), (200, json!({ "status": "recorded" })));
    assert_eq!(w.webhooks.expiring(), vec![w.id.clone()]);
    assert!(w.queue.sent_messages().is_empty());
}

#[tokio::test]
async fn a_queue_outage_keeps_the_delivery_for_replay_and_still_answers_200() {
    let w = world().await;
    w.queue.set_failing(true);
    let (status, body) = call(&w, delivery(w.id.as_str(), "Push Hook", PUSH, &[])).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("queued")));
    let kept = w.webhooks.deliveries();
    assert_eq!(kept.len(), 1);
    assert!(kept[0].1, "the record is marked unsent");
    assert!(matches!(kept[0].0.messages.as_slice(), [Message::ScanRequested(_)]));
}

#[tokio::test]
async fn a_record_that_failed_is_written_after_the_send_so_a_resend_stays_a_duplicate() {
    let w = world().await;
    w.webhooks.fail_records(1);
    let (status, body) = call(&w, delivery(w.id.as_str(), "Merge Request Hook", MR, &[])).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("queued")));
    assert_eq!(w.queue.sent_messages().len(), 1);
    let kept = w.webhooks.deliveries();
    assert_eq!(kept.len(), 1, "recorded after the send");
    assert!(!kept[0].1, "sent, so not waiting for the replay");
    let (status, body) = call(&w, delivery(w.id.as_str(), "Merge Request Hook", MR, &[])).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("duplicate")));
    assert_eq!(w.queue.sent_messages().len(), 1);
    // Both writes failing still queues the delivery once and answers 200.
    w.webhooks.fail_records(2);
    let other = delivery(w.id.as_str(), "Merge Request Hook", MR, &[("idempotency-key", "k-other")]);
    assert_eq!(call(&w, other).await.1["status"], "queued");
    assert_eq!(w.queue.sent_messages().len(), 2);
    assert_eq!(w.webhooks.deliveries().len(), 1);
}

#[tokio::test]
async fn the_only_5xx_is_an_unreadable_integration_with_nothing_cached() {
    let w = world().await;
    w.integrations.set_unavailable(true);
    let (status, body) = call(&w, delivery(w.id.as_str(), "Merge Request Hook", MR, &[])).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("service_unavailable")));
    // Once cached, the store going down changes nothing on the warm path.
    w.integrations.set_unavailable(false);
    assert_eq!(call(&w, delivery(w.id.as_str(), "Merge Request Hook", MR, &[])).await.0, 200);
    w.integrations.set_unavailable(true);
    let calls_before = w.webhooks.calls();
    let push = delivery(w.id.as_str(), "Push Hook", PUSH, &[("idempotency-key", "k2")]);
    assert_eq!(call(&w, push).await.0, 200);
    // One conditional write (the record); the integration and the tracking flag came from the cache.
    let again = delivery(w.id.as_str(), "Push Hook", PUSH, &[("idempotency-key", "k3")]);
    assert_eq!(call(&w, again).await.0, 200);
    assert_eq!(
        w.webhooks.calls() - calls_before,
        4,
        "for project 15 the tracking flag and the delivery time once, then one record per delivery"
    );
    assert_eq!(w.webhooks.seen(), vec![(w.id.clone(), 1), (w.id.clone(), 15)]);
}

#[tokio::test]
async fn malformed_requests_get_their_own_4xx() {
    let w = world().await;
    let not_json = delivery(w.id.as_str(), "Merge Request Hook", "{not json", &[]);
    let (status, body) = call(&w, not_json).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_request")));
    let text = delivery(w.id.as_str(), "Merge Request Hook", MR, &[("content-type", "text/plain")]);
    assert_eq!(call(&w, text).await.0, 415);
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(70 * 1024));
    assert_eq!(call(&w, delivery(w.id.as_str(), "Merge Request Hook", &big, &[])).await.0, 413);
    let mut other = delivery(w.id.as_str(), "Merge Request Hook", MR, &[]);
    *other.uri_mut() = "/integrations/gitlab".parse().expect("uri");
    assert_eq!(call(&w, other).await.0, 404);
    let mut get = delivery(w.id.as_str(), "Merge Request Hook", MR, &[]);
    *get.method_mut() = lambda_http::http::Method::GET;
    assert_eq!(call(&w, get).await.0, 405);
    // A bad request is refused before the body is authenticated or anything is recorded.
    assert!(w.webhooks.deliveries().is_empty());
}
