//! Receiving one delivery: find the integration (cached), authenticate on the raw bytes, route,
//! check the project is tracked (cached), record the delivery once and queue its messages. On
//! the warm path that is one conditional write and one queue send.

use std::sync::Arc;

use lambda_http::http::{HeaderMap, StatusCode};
use lambda_http::{Body, Response};
use serde_json::json;
use shared::domain::ids::IntegrationId;
use shared::domain::webhook::{
    Action, Credentials, DeliveryHeaders, IgnoreReason, Routed, authenticate, dedup_key, route,
};
use shared::http::{ApiError, json_response};
use shared::messages::{MESSAGE_VERSION, Message, ScanCancelled, ScanRequested};
use shared::ports::{DeliveryRecord, PortError, Recorded};
use time::OffsetDateTime;

use crate::Deps;
use crate::cache::{Cached, Target};

/// How often a project's last delivery time is written, at most (per process).
const DELIVERY_SEEN_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// Shortest time between two reads of an integration's settings prompted by failed deliveries.
const RELOAD_AFTER_FAILURE: std::time::Duration = std::time::Duration::from_secs(5);

/// The one answer to every authentication failure, whatever its cause.
fn unauthorized() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "The delivery could not be authenticated.")
        .with_hint("Use the webhook URL and secret token the connector showed for this integration.")
}

fn unavailable(e: PortError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
        "The delivery could not be accepted right now.",
    )
    .with_source(e)
}

fn answer(status: &str, reason: Option<IgnoreReason>) -> Response<Body> {
    let mut body = json!({ "status": status });
    if let Some(r) = reason {
        body["reason"] = json!(r.as_str());
    }
    json_response(StatusCode::OK, &body)
}

/// A header's value when it appears exactly once; `Err` when repeated (a comma-joined or
/// duplicated secret is never compared).
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ()> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(());
    }
    Ok(first.and_then(|v| v.to_str().ok()))
}

fn delivery_headers(headers: &HeaderMap) -> Result<DeliveryHeaders<'_>, ()> {
    Ok(DeliveryHeaders {
        event: single(headers, "x-gitlab-event")?,
        token: single(headers, "x-gitlab-token")?,
        idempotency_key: single(headers, "idempotency-key")?,
        event_uuid: single(headers, "x-gitlab-event-uuid")?,
        webhook_id: single(headers, "webhook-id")?,
        webhook_timestamp: single(headers, "webhook-timestamp")?,
        webhook_signature: single(headers, "webhook-signature")?,
    })
}

async fn load_target(deps: &Deps, id: &IntegrationId) -> Result<Option<Target>, PortError> {
    let Some(integration) = deps.directory.find(id).await? else {
        return Ok(None);
    };
    let mut credentials = Credentials::default();
    match &integration.webhook.signing_key_ref {
        // A signing integration accepts signatures only; without its key it accepts nothing.
        Some(key_ref) => match deps.keys.read(key_ref).await {
            Ok(keys) => credentials.signing_keys.extend(keys),
            Err(PortError::NotFound) => {
                tracing::error!(integration_id = %id, "signing key secret is missing; deliveries are refused");
            }
            Err(e) => return Err(e),
        },
        None => {
            for digest in integration.accepted_secret_digests(OffsetDateTime::now_utc()) {
                credentials = credentials.with_token_digest_hex(digest);
            }
        }
    }
    Ok(Some(Target { team: integration.team_id, id: integration.id, own_user_id: integration.user.id, credentials }))
}

/// The integration's webhook settings: cached, else read; a stale entry serves while the store
/// is down. `Err` only when nothing can be read and nothing is cached.
async fn target(deps: &Deps, raw_id: &str, reload: bool) -> Result<Option<Arc<Target>>, ApiError> {
    // A malformed id is an unknown integration, answered like any other.
    let Some(id) = IntegrationId::parse(raw_id) else {
        return Ok(None);
    };
    let stale = match deps.cache.target(raw_id) {
        Cached::Fresh(t) if !reload => return Ok(t),
        Cached::Fresh(t) | Cached::Stale(t) => Some(t),
        Cached::Missing => None,
    };
    match load_target(deps, &id).await {
        Ok(t) => {
            let t = t.map(Arc::new);
            deps.cache.put_target(raw_id, t.clone());
            Ok(t)
        }
        Err(e) => match stale {
            Some(t) => {
                tracing::warn!(error.message = %e, "integration store unavailable; using cached webhook settings");
                Ok(t)
            }
            None => Err(unavailable(e)),
        },
    }
}

async fn is_tracked(deps: &Deps, target: &Target, project_id: u64) -> bool {
    if let Some(t) = deps.cache.tracked(&target.id, project_id) {
        return t;
    }
    match deps.state.is_tracked(&target.team, &target.id, project_id).await {
        Ok(t) => {
            deps.cache.put_tracked(&target.id, project_id, t);
            t
        }
        Err(e) => {
            // Better one needless message than a lost one: the scan worker checks again.
            tracing::warn!(error.message = %e, project_id, "tracking flag unreadable; treating the project as tracked");
            true
        }
    }
}

fn messages_for(target: &Target, action: &Action, key: &str, now: OffsetDateTime) -> Vec<Message> {
    match action {
        Action::Scan { project_id, target: scan_target, sha, trigger } => {
            vec![Message::ScanRequested(ScanRequested {
                version: MESSAGE_VERSION,
                team_id: target.team.clone(),
                integration_id: target.id.clone(),
                project_id: *project_id,
                target: scan_target.clone(),
                head_sha: Some(sha.clone()),
                scan_id: None,
                trigger: *trigger,
                delivery_id: Some(key.to_owned()),
                requested_at: now,
            })]
        }
        Action::Cancel { project_id, iid, reason } => vec![Message::ScanCancelled(ScanCancelled {
            version: MESSAGE_VERSION,
            team_id: target.team.clone(),
            integration_id: target.id.clone(),
            project_id: *project_id,
            merge_request_iid: *iid,
            reason: *reason,
            delivery_id: Some(key.to_owned()),
            requested_at: now,
        })],
        Action::Vulnerability(_) | Action::TokenExpiring { .. } => Vec::new(),
    }
}

/// State changes are idempotent writes, made before the delivery is recorded so that a failure
/// leaves nothing recorded and a resend can still apply them.
async fn apply_state(deps: &Deps, target: &Target, action: &Action, now: OffsetDateTime) -> Result<(), PortError> {
    match action {
        Action::TokenExpiring { .. } => deps.state.set_token_expiring(&target.team, &target.id, now).await,
        Action::Vulnerability(change) => deps.state.record_vulnerability(&target.team, &target.id, change, now).await,
        Action::Scan { .. } | Action::Cancel { .. } => Ok(()),
    }
}

/// 64 random bits, hex: tells this receipt's record from an earlier one with the same key.
fn hex_nonce() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Authenticates, routes, records and queues one delivery.
pub async fn receive(deps: &Deps, raw_id: &str, headers: &HeaderMap, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let now = OffsetDateTime::now_utc();
    let parsed = delivery_headers(headers);
    let check = |target: &Option<Arc<Target>>| match &parsed {
        Ok(h) => authenticate(target.as_ref().map(|t| &t.credentials), h, body, now.unix_timestamp()),
        Err(()) => Err(shared::domain::webhook::AuthFailure::WrongToken),
    };
    let mut target = target(deps, raw_id, false).await?;
    let mut checked = check(&target);
    // A secret rotated since the settings were cached: read them again, at most every few
    // seconds per integration, so wrong secrets cannot turn into a stream of store reads.
    let cached_a_while = deps.cache.target_age(raw_id).is_some_and(|age| age >= RELOAD_AFTER_FAILURE);
    if checked.is_err() && target.is_some() && cached_a_while {
        target = self::target(deps, raw_id, true).await?;
        checked = check(&target);
    }
    let (Some(target), Ok(()), Ok(h)) = (target, checked, parsed) else {
        tracing::info!(reason = checked.err().map_or("repeated_header", |f| f.as_str()), "delivery refused");
        return Err(unauthorized());
    };
    let routed = route(h.event, body, target.own_user_id)
        .map_err(|e| ApiError::invalid_request("body", "The delivery body is not JSON.").with_source(e))?;
    let event =
        h.event.unwrap_or("").chars().filter(|c| c.is_ascii_graphic() || *c == ' ').take(64).collect::<String>();
    let action = match routed {
        Routed::Ignore(reason) => {
            tracing::info!(integration_id = %target.id, gitlab_event = %event, reason = reason.as_str(), "delivery ignored");
            return Ok(answer("ignored", Some(reason)));
        }
        Routed::Act(action) => action,
    };
    if let Some(project_id) = action.project_id() {
        if !is_tracked(deps, &target, project_id).await {
            tracing::info!(integration_id = %target.id, project_id, "delivery for an untracked project ignored");
            return Ok(answer("ignored", Some(IgnoreReason::UntrackedProject)));
        }
        if deps.cache.due_delivery_record(&target.id, project_id, DELIVERY_SEEN_EVERY) {
            // Webhook health for the repository view; losing one of these loses nothing else.
            if let Err(e) = deps.state.record_delivery_seen(&target.team, &target.id, project_id, now).await {
                tracing::warn!(error.message = %e, project_id, "could not record the delivery time");
            }
        }
    }
    apply_state(deps, &target, &action, now).await.map_err(unavailable)?;
    let key = dedup_key(&h, body);
    let record = DeliveryRecord {
        team_id: target.team.clone(),
        integration_id: target.id.clone(),
        messages: messages_for(&target, &action, &key, now),
        key,
        event,
        recorded_at: now,
        attempt: hex_nonce(),
    };
    let expires_at = now + deps.dedup_ttl;
    match deps.deliveries.record(&record, expires_at).await {
        Ok(Recorded::Duplicate) => {
            tracing::info!(integration_id = %target.id, "duplicate delivery");
            return Ok(answer("duplicate", None));
        }
        Ok(Recorded::New) => {}
        Err(e) => {
            // Without a record there is no deduplication, but the message still goes out: its
            // consumer deduplicates on the scan key.
            tracing::warn!(error.message = %e, "delivery record not written; queueing without deduplication");
            if record.messages.is_empty() {
                return Ok(answer("recorded", None));
            }
            deps.queue.send_all(&record.messages).await.map_err(unavailable)?;
            // Sent: try the record once more, so that a later resend of this delivery (GitLab's
            // manual resend reuses the key) is still answered `duplicate`. The attempt nonce
            // tells a first write that landed late from another receipt's.
            if let Err(e) = deps.deliveries.record(&record, expires_at).await {
                tracing::warn!(error.message = %e, "delivery record not written after sending; a resend would queue again");
            }
            return Ok(answer("queued", None));
        }
    }
    if record.messages.is_empty() {
        tracing::info!(integration_id = %target.id, gitlab_event = %record.event, "delivery recorded");
        return Ok(answer("recorded", None));
    }
    if let Err(e) = deps.queue.send_all(&record.messages).await {
        // Recorded but not sent: keep it for the scheduled replay rather than lose it.
        tracing::warn!(error.message = %e, integration_id = %target.id, "scan queue unavailable; delivery kept for replay");
        deps.deliveries.mark_unsent(&record).await.map_err(unavailable)?;
    }
    tracing::info!(integration_id = %target.id, gitlab_event = %record.event, messages = record.messages.len(), "delivery queued");
    Ok(answer("queued", None))
}
