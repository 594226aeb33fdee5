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

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SigningKeyValue {
    signing_key: String,
    /// Present when the key belongs to an integration with managed hooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
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
        let value = serde_json::to_string(&SigningKeyValue { signing_key: key.to_whsec(), token: None })
            .map_err(|e| PortError::Corrupt(e.to_string()))?;
        let name = format!("{}{}", self.prefix, id);
        let description = "Webhook signing key of a gitlab-connector integration";
        create_tagged(&self.client, name, description, value, self.kms_key_id.clone(), team, id).await
    }

    #[tracing::instrument(skip_all)]
    async fn read(&self, key_ref: &str) -> Result<crate::domain::webhook::SigningKey, PortError> {
        let raw = read_string(&self.client, key_ref).await?;
        let value: SigningKeyValue = serde_json::from_str(&raw)
            .map_err(|_| PortError::Corrupt("signing key secret is not the expected JSON".into()))?;
        crate::domain::webhook::SigningKey::parse(&value.signing_key)
            .ok_or_else(|| PortError::Corrupt("signing key secret holds no whsec_ key".into()))
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

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HookSecretValue {
    token: String,
    /// Read by the webhook function too (as a signing key secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signing_key: Option<String>,
}

impl SecretsManagerHookSecrets {
    /// `prefix` starts every secret name (`<stack>/webhook-keys/`).
    pub fn new(client: Client, prefix: impl Into<String>, kms_key_id: Option<String>) -> Self {
        Self { client, prefix: prefix.into(), kms_key_id }
    }

    fn encode(secret: &SecretString, signing_key: Option<String>) -> Result<String, PortError> {
        serde_json::to_string(&HookSecretValue { token: secret.expose_secret().to_owned(), signing_key })
            .map_err(|e| PortError::Corrupt(e.to_string()))
    }

    async fn value(&self, secret_ref: &str) -> Result<HookSecretValue, PortError> {
        let raw = read_string(&self.client, secret_ref).await?;
        serde_json::from_str(&raw).map_err(|_| PortError::Corrupt("webhook secret is not the expected JSON".into()))
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
        let value = Self::encode(secret, signing_key.map(crate::domain::webhook::SigningKey::to_whsec))?;
        create_tagged(&self.client, name, description, value, self.kms_key_id.clone(), team, id).await
    }

    #[tracing::instrument(skip_all)]
    async fn read(&self, secret_ref: &str) -> Result<crate::ports::HookSecrets, PortError> {
        let value = self.value(secret_ref).await?;
        let signing_key = match value.signing_key {
            Some(text) => Some(
                crate::domain::webhook::SigningKey::parse(&text)
                    .ok_or_else(|| PortError::Corrupt("webhook secret holds a bad signing key".into()))?,
            ),
            None => None,
        };
        Ok(crate::ports::HookSecrets { token: SecretString::from(value.token), signing_key })
    }

    #[tracing::instrument(skip_all)]
    async fn replace(&self, secret_ref: &str, secret: &SecretString) -> Result<(), PortError> {
        let signing_key = self.value(secret_ref).await?.signing_key;
        let encoded = Self::encode(secret, signing_key)?;
        match self.client.put_secret_value().secret_id(secret_ref).secret_string(encoded).send().await {
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
