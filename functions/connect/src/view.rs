//! Response shapes of the connect routes (openapi.yaml `Integration`). Built from the stored
//! integration; the token never appears, the webhook secret only in the 201 answer.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use shared::domain::integration::{Integration, webhook_url};
use shared::domain::webhook::SigningKey;
use time::format_description::well_known::Rfc3339;

fn ts(t: time::OffsetDateTime) -> Value {
    t.format(&Rfc3339).map(Value::String).unwrap_or(Value::Null)
}

/// One integration; `webhook_base` is the deployment's webhook base URL, so the URL shown is
/// always the one that serves deliveries now.
pub(crate) fn integration(i: &Integration, webhook_base: &str) -> Value {
    json!({
        "id": i.id,
        "name": i.name,
        "instance_url": i.instance_url,
        "api_url": i.api_url,
        "status": i.status,
        "instance": { "version": i.instance.version, "custom_ca": i.instance.ca_certificate.is_some() },
        "token": {
            "kind": i.token.kind,
            "scopes": i.token.scopes,
            "expires_at": i.token.expires_at.map(ts),
            "last_verified_at": ts(i.token.last_verified_at),
        },
        "user": { "id": i.user.id, "username": i.user.username, "bot": i.user.bot },
        "capabilities": i.capabilities,
        "webhook": {
            "url": webhook_url(webhook_base, &i.id),
            "mode": i.webhook.mode,
            "events": i.webhook.events,
            "signed": i.webhook.signing_key_ref.is_some(),
        },
        "warnings": i.warnings,
        "report": i.report,
        "created_at": ts(i.created_at),
        "updated_at": ts(i.updated_at),
    })
}

/// The connect answer: the integration plus the webhook secret, shown this once.
pub(crate) fn created(
    i: &Integration,
    webhook_base: &str,
    secret: &SecretString,
    signing_key: Option<&SigningKey>,
) -> Value {
    let mut v = integration(i, webhook_base);
    v["webhook"]["secret"] = Value::String(secret.expose_secret().to_owned());
    if let Some(key) = signing_key {
        // For hooks a person adds by hand (projects where the token's user is no Maintainer).
        v["webhook"]["signing_token"] = Value::String(key.to_whsec());
    }
    v
}

/// A team's integrations.
pub(crate) fn list(items: &[Integration], webhook_base: &str) -> Value {
    json!({ "items": items.iter().map(|i| integration(i, webhook_base)).collect::<Vec<_>>() })
}

/// A new webhook secret, shown this once, and until when the previous one still works.
pub(crate) fn rotated_secret(
    i: &Integration,
    webhook_base: &str,
    secret: &SecretString,
    signing_key: Option<&SigningKey>,
) -> Value {
    let mut v = json!({
        "webhook": {
            "url": webhook_url(webhook_base, &i.id),
            "secret": secret.expose_secret(),
            "grace_until": i.webhook.previous_valid_until.map(ts),
        }
    });
    if let Some(key) = signing_key {
        v["webhook"]["signing_token"] = Value::String(key.to_whsec());
    }
    v
}
