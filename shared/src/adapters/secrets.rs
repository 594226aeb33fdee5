//! Secrets Manager adapter: one secret per integration holding `{origin, token}`, tagged with
//! team and integration id so IAM conditions can scope access by tag.

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::SdkError;
use aws_sdk_secretsmanager::types::Tag;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::domain::ids::{IntegrationId, TeamId};
use crate::ports::{PortError, StoredToken, TokenVault};

/// Token vault on Secrets Manager.
#[derive(Clone, Debug)]
pub struct SecretsManagerVault {
    client: Client,
    prefix: String,
    kms_key_id: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretValue {
    origin: String,
    token: String,
}

impl SecretsManagerVault {
    /// `prefix` starts every secret name (the template's policy grants exactly that prefix);
    /// `kms_key_id` names the customer-managed key, if any.
    pub fn new(client: Client, prefix: impl Into<String>, kms_key_id: Option<String>) -> Self {
        Self { client, prefix: prefix.into(), kms_key_id }
    }

    fn encode(value: &StoredToken) -> Result<String, PortError> {
        serde_json::to_string(&SecretValue {
            origin: value.origin.clone(),
            token: value.token.expose_secret().to_owned(),
        })
        .map_err(|e| PortError::Corrupt(e.to_string()))
    }
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

/// Creates a secret tagged with team and integration id (for IAM conditions); returns its ARN.
async fn create_tagged(
    client: &Client,
    name: String,
    description: &str,
    value: String,
    kms_key_id: Option<String>,
    team: &TeamId,
    id: &IntegrationId,
) -> Result<String, PortError> {
    let out = client
        .create_secret()
        .name(name)
        .description(description)
        .secret_string(value)
        .set_kms_key_id(kms_key_id)
        .tags(tag("team_id", team.as_str()))
        .tags(tag("integration_id", id.as_str()))
        .tags(tag("app", "gitlab-connector"))
        .send()
        .await
        .map_err(|e| PortError::unavailable(e.into_service_error()))?;
    out.arn.ok_or_else(|| PortError::Corrupt("CreateSecret returned no ARN".into()))
}

/// The current string value of a secret; `NotFound` when it does not exist.
async fn read_string(client: &Client, secret_ref: &str) -> Result<String, PortError> {
    let out = match client.get_secret_value().secret_id(secret_ref).send().await {
        Ok(out) => out,
        Err(SdkError::ServiceError(e)) if e.err().is_resource_not_found_exception() => {
            return Err(PortError::NotFound);
        }
        Err(e) => return Err(PortError::unavailable(e.into_service_error())),
    };
    out.secret_string.ok_or_else(|| PortError::Corrupt("secret has no string value".into()))
}

/// Deletes a secret at once, without a recovery window; a missing one is not an error.
async fn delete_now(client: &Client, secret_ref: &str) -> Result<(), PortError> {
    match client.delete_secret().secret_id(secret_ref).force_delete_without_recovery(true).send().await {
        Ok(_) => Ok(()),
        Err(SdkError::ServiceError(e)) if e.err().is_resource_not_found_exception() => Ok(()),
        Err(e) => Err(PortError::unavailable(e.into_service_error())),
    }
}

#[async_trait]
impl TokenVault for SecretsManagerVault {
    #[tracing::instrument(skip_all, fields(integration_id = %id))]
    async fn create(&self, team: &TeamId, id: &IntegrationId, value: &StoredToken) -> Result<String, PortError> {
        let name = format!("{}{}", self.prefix, id);
        let description = "GitLab token of a gitlab-connector integration";
        create_tagged(&self.client, name, description, Self::encode(value)?, self.kms_key_id.clone(), team, id).await
    }

    #[tracing::instrument(skip_all)]
    async fn read(&self, secret_ref: &str) -> Result<StoredToken, PortError> {
        let raw = read_string(&self.client, secret_ref).await?;
        let value: SecretValue = serde_json::from_str(&raw)
            .map_err(|_| PortError::Corrupt("secret value is not the expected JSON".into()))?;
        Ok(StoredToken { origin: value.origin, token: SecretString::from(value.token) })
    }

    #[tracing::instrument(skip_all)]
    async fn replace(&self, secret_ref: &str, value: &StoredToken) -> Result<(), PortError> {
        // PutSecretValue moves AWSCURRENT to the new version and AWSPREVIOUS to the old one, so
        // work in flight can still read the previous token.
        match self.client.put_secret_value().secret_id(secret_ref).secret_string(Self::encode(value)?).send().await {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_resource_not_found_exception() => Err(PortError::NotFound),
            Err(e) => Err(PortError::unavailable(e.into_service_error())),
        }
    }

    #[tracing::instrument(skip_all)]
    async fn delete(&self, secret_ref: &str) -> Result<(), PortError> {
        delete_now(&self.client, secret_ref).await
    }
}

/// Webhook signing keys on Secrets Manager: one secret per integration under their own prefix,
/// so IAM can let the webhook function read them without reaching any GitLab token.
#[derive(Clone, Debug)]
pub struct SecretsManagerSigningKeys {
    client: Client,
    prefix: String,
    kms_key_id: Option<String>,
}

/// The JSON of a secret under `<stack>/webhook-keys/`: the signing key (and the one it
/// replaced, until its grace period ends) and, for managed hooks, the webhook secret token.
#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WebhookKeys {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signing_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous_signing_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    previous_valid_until: Option<time::OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

impl WebhookKeys {
    async fn read(client: &Client, secret_ref: &str) -> Result<Self, PortError> {
        let raw = read_string(client, secret_ref).await?;
        serde_json::from_str(&raw).map_err(|_| PortError::Corrupt("webhook key secret is not the expected JSON".into()))
    }

    fn encode(&self) -> Result<String, PortError> {
        serde_json::to_string(self).map_err(|e| PortError::Corrupt(e.to_string()))
    }

    /// The signing keys accepted at `now`: the current one, then the previous one in its grace.
    fn accepted(&self, now: time::OffsetDateTime) -> Result<Vec<crate::domain::webhook::SigningKey>, PortError> {
        let parse = |text: &str| {
            crate::domain::webhook::SigningKey::parse(text)
                .ok_or_else(|| PortError::Corrupt("webhook key secret holds a bad signing key".into()))
        };
        let mut keys = Vec::new();
        if let Some(k) = &self.signing_key {
            keys.push(parse(k)?);
        }
        if let (Some(k), Some(until)) = (&self.previous_signing_key, self.previous_valid_until)
            && now < until
        {
            keys.push(parse(k)?);
        }
        Ok(keys)
    }
}

impl SecretsManagerSigningKeys {
    /// `prefix` starts every key's secret name (`<stack>/webhook-keys/`).
    pub fn new(client: Client, prefix: impl Into<String>, kms_key_id: Option<String>) -> Self {
        Self { client, prefix: prefix.into(), kms_key_id }
    }
}

#[async_trait]
impl crate::ports::SigningKeyVault for SecretsManagerSigningKeys {
    #[tracing::instrument(skip_all, fields(integration_id = %id))]
    async fn create(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        key: &crate::domain::webhook::SigningKey,
    ) -> Result<String, PortError> {
        let value = WebhookKeys { signing_key: Some(key.to_whsec()), ..WebhookKeys::default() }.encode()?;
        let name = format!("{}{}", self.prefix, id);
        let description = "Webhook signing key of a gitlab-connector integration";
        create_tagged(&self.client, name, description, value, self.kms_key_id.clone(), team, id).await
    }

    #[tracing::instrument(skip_all)]
    async fn read(&self, key_ref: &str) -> Result<Vec<crate::domain::webhook::SigningKey>, PortError> {
        WebhookKeys::read(&self.client, key_ref).await?.accepted(time::OffsetDateTime::now_utc())
    }

    #[tracing::instrument(skip_all)]
    async fn delete(&self, key_ref: &str) -> Result<(), PortError> {
        delete_now(&self.client, key_ref).await
    }
}

/// Webhook secrets (and signing keys) of managed integrations on Secrets Manager
/// (`<stack>/webhook-keys/<id>`), where the webhook function may read them and no GitLab token is.
/// The same secret serves the webhook as the integration's signing key secret.
#[derive(Clone, Debug)]
pub struct SecretsManagerHookSecrets {
    client: Client,
    prefix: String,
    kms_key_id: Option<String>,
}

impl SecretsManagerHookSecrets {
    /// `prefix` starts every secret name (`<stack>/webhook-keys/`).
    pub fn new(client: Client, prefix: impl Into<String>, kms_key_id: Option<String>) -> Self {
        Self { client, prefix: prefix.into(), kms_key_id }
    }

    async fn put(&self, secret_ref: &str, value: &WebhookKeys) -> Result<(), PortError> {
        match self.client.put_secret_value().secret_id(secret_ref).secret_string(value.encode()?).send().await {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_resource_not_found_exception() => Err(PortError::NotFound),
            Err(e) => Err(PortError::unavailable(e.into_service_error())),
        }
    }
}

#[async_trait]
impl crate::ports::HookSecretVault for SecretsManagerHookSecrets {
    #[tracing::instrument(skip_all, fields(integration_id = %id))]
    async fn create(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        secret: &SecretString,
        signing_key: Option<&crate::domain::webhook::SigningKey>,
    ) -> Result<String, PortError> {
        let name = format!("{}{}", self.prefix, id);
        let description = "Webhook secret of a gitlab-connector integration with managed hooks";
        let value = WebhookKeys {
            token: Some(secret.expose_secret().to_owned()),
            signing_key: signing_key.map(crate::domain::webhook::SigningKey::to_whsec),
            ..WebhookKeys::default()
        };
        create_tagged(&self.client, name, description, value.encode()?, self.kms_key_id.clone(), team, id).await
    }

    #[tracing::instrument(skip_all)]
    async fn read(&self, secret_ref: &str) -> Result<crate::ports::HookSecrets, PortError> {
        let value = WebhookKeys::read(&self.client, secret_ref).await?;
        let token = value.token.clone().ok_or_else(|| PortError::Corrupt("webhook secret without a token".into()))?;
        let signing_key = value.accepted(time::OffsetDateTime::now_utc())?.into_iter().next();
        Ok(crate::ports::HookSecrets { token: SecretString::from(token), signing_key })
    }

    #[tracing::instrument(skip_all)]
    async fn rotate(
        &self,
        secret_ref: &str,
        secret: &SecretString,
        grace_until: time::OffsetDateTime,
    ) -> Result<Option<crate::domain::webhook::SigningKey>, PortError> {
        let mut value = WebhookKeys::read(&self.client, secret_ref).await?;
        value.token = Some(secret.expose_secret().to_owned());
        let new_key = value.signing_key.is_some().then(crate::domain::webhook::SigningKey::generate);
        if let Some(key) = &new_key {
            value.previous_signing_key = value.signing_key.replace(key.to_whsec());
            value.previous_valid_until = Some(grace_until);
        }
        self.put(secret_ref, &value).await?;
        Ok(new_key)
    }

    #[tracing::instrument(skip_all)]
    async fn delete(&self, secret_ref: &str) -> Result<(), PortError> {
        delete_now(&self.client, secret_ref).await
    }
}

/// Reads a deployment secret's plain string value (the scan digest key); never logged.
pub async fn read_plain(client: &Client, arn: &str) -> Result<SecretString, PortError> {
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| PortError::unavailable(e.into_service_error()))?;
    out.secret_string.map(SecretString::from).ok_or(PortError::NotFound)
}
