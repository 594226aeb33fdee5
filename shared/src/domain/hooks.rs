//! Project hooks the connector manages: what a hook must look like (URL, events, secret), what
//! GitLab says it looks like, and whether the two have drifted apart.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// What a managed hook must be: our delivery URL, the secret token GitLab sends back in
/// `X-Gitlab-Token`, and on 19.0+ a signing token (`whsec_...`).
pub struct HookSpec {
    /// The integration's webhook URL.
    pub url: String,
    /// The secret token.
    pub token: SecretString,
    /// The Standard Webhooks signing token, where the instance supports it.
    pub signing_token: Option<SecretString>,
}

impl HookSpec {
    /// The attributes of `POST`/`PUT /projects/:id/hooks` (every event flag explicit; TLS
    /// verification always on). Holds the secrets: never log it.
    pub fn attributes(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "url": self.url,
            "token": self.token.expose_secret(),
            "enable_ssl_verification": true,
            "name": "gitlab-connector",
        });
        for (flag, on) in MANAGED_EVENTS {
            body[*flag] = serde_json::Value::Bool(*on);
        }
        if let Some(signing) = &self.signing_token {
            body["signing_token"] = serde_json::Value::String(signing.expose_secret().to_owned());
        }
        body
    }
}

/// The hook settings the connector asks for, by GitLab's attribute names. Every flag is sent
/// explicitly (`push_events` defaults to true when omitted).
pub const MANAGED_EVENTS: &[(&str, bool)] = &[
    ("merge_requests_events", true),
    ("push_events", true),
    ("tag_push_events", false),
    ("note_events", true),
    ("confidential_note_events", false),
    ("issues_events", false),
    ("confidential_issues_events", false),
    ("job_events", false),
    ("pipeline_events", false),
    ("wiki_page_events", false),
    ("deployment_events", false),
    ("releases_events", false),
    ("vulnerability_events", true),
    ("resource_access_token_events", true),
];

/// A project hook as GitLab shows it (`GET /projects/:id/hooks/:hook_id`); only what the
/// connector reads. Tokens are never returned.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct GitlabHook {
    /// GitLab's hook id.
    pub id: u64,
    /// The delivery URL.
    pub url: String,
    /// `executable`, `temporarily_disabled` or `disabled` (auto-disabling).
    #[serde(default)]
    pub alert_status: Option<String>,
    /// End of a temporary disabling.
    #[serde(default)]
    pub disabled_until: Option<String>,
    /// Whether a secret token is set (newer GitLab only).
    #[serde(default)]
    pub token_present: Option<bool>,
    /// Whether a signing token is set (GitLab 19.0+ only).
    #[serde(default)]
    pub signing_token_present: Option<bool>,
    /// The event flags, by attribute name.
    #[serde(flatten)]
    pub flags: std::collections::BTreeMap<String, serde_json::Value>,
}

impl GitlabHook {
    /// Whether GitLab has stopped delivering to the hook.
    pub fn is_disabled(&self) -> bool {
        matches!(self.alert_status.as_deref(), Some("temporarily_disabled" | "disabled"))
    }

    /// What differs from the hook the connector wants at `url`: the URL, an event flag, or a
    /// missing secret token (when GitLab says so). Empty when nothing drifted.
    pub fn drift(&self, url: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.url != url {
            out.push("url".to_owned());
        }
        for (flag, wanted) in MANAGED_EVENTS {
            let actual = self.flags.get(*flag).and_then(serde_json::Value::as_bool).unwrap_or(false);
            if actual != *wanted {
                out.push((*flag).to_owned());
            }
        }
        if self.token_present == Some(false) {
            out.push("token".to_owned());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: serde_json::Value) -> GitlabHook {
        serde_json::from_value(json).expect("hook")
    }

    fn wanted_flags() -> serde_json::Map<String, serde_json::Value> {
        MANAGED_EVENTS.iter().map(|(k, v)| ((*k).to_owned(), serde_json::Value::Bool(*v))).collect()
    }

    #[test]
    fn a_hook_as_wanted_has_no_drift_and_each_difference_is_named() {
        let mut v = serde_json::Value::Object(wanted_flags());
        v["id"] = 3.into();
        v["url"] = "https://hooks.example/w/1".into();
        v["alert_status"] = "executable".into();
        v["token_present"] = true.into();
        assert!(hook(v.clone()).drift("https://hooks.example/w/1").is_empty());
        assert!(!hook(v.clone()).is_disabled());
        assert_eq!(hook(v.clone()).drift("https://hooks.example/w/2"), vec!["url"]);
        let mut flags = v.clone();
        flags["push_events"] = false.into();
        flags["pipeline_events"] = true.into();
        assert_eq!(hook(flags).drift("https://hooks.example/w/1"), vec!["push_events", "pipeline_events"]);
        let mut no_token = v.clone();
        no_token["token_present"] = false.into();
        assert_eq!(hook(no_token).drift("https://hooks.example/w/1"), vec!["token"]);
        let mut disabled = v;
        disabled["alert_status"] = "temporarily_disabled".into();
        assert!(hook(disabled).is_disabled());
    }
}
