//! Webhook state in the single table: delivery records (`DELIVERY#<key>` under the integration's
//! partition, expiring through the table's TTL), the outbox of deliveries whose messages could
//! not be queued (sparse `gsi1` partition `UNSENT_DELIVERIES`), GitLab's vulnerability states and
//! the status change an expiring-token event makes.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::dynamodb::{children_pk, integration_sk, team_pk};
use super::dynamodb_projects::project_sk;
use crate::domain::ids::{IntegrationId, TeamId};
use crate::domain::webhook::VulnerabilityChange;
use crate::messages::Message;
use crate::ports::{DeliveryRecord, DeliveryStore, PortError, Recorded, WebhookStateStore};

/// `gsi1` partition listing deliveries whose messages wait for the scheduled replay.
const UNSENT_GSI_PK: &str = "UNSENT_DELIVERIES";

fn delivery_sk(key: &str) -> String {
    format!("DELIVERY#{key}")
}

fn rfc3339(t: OffsetDateTime) -> Result<String, PortError> {
    t.format(&Rfc3339).map_err(|e| PortError::Corrupt(e.to_string()))
}

/// Webhook state on DynamoDB.
#[derive(Clone, Debug)]
pub struct DynamoWebhookStore {
    client: Client,
    table: String,
}

impl DynamoWebhookStore {
    /// Wraps a client and a table name.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    fn delivery_key(d: &DeliveryRecord) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), AttributeValue::S(children_pk(&d.team_id, &d.integration_id))),
            ("sk".to_owned(), AttributeValue::S(delivery_sk(&d.key))),
        ])
    }

    fn from_item(item: &HashMap<String, AttributeValue>) -> Result<DeliveryRecord, PortError> {
        let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        let corrupt = |what: &str| PortError::Corrupt(format!("delivery record without a valid {what}"));
        let team_id = text("team_id").and_then(|t| TeamId::parse(&t)).ok_or_else(|| corrupt("team_id"))?;
        let integration_id =
            text("integration_id").and_then(|t| IntegrationId::parse(&t)).ok_or_else(|| corrupt("integration_id"))?;
        let key = text("delivery_key").ok_or_else(|| corrupt("delivery_key"))?;
        let messages: Vec<Message> =
            serde_json::from_str(&text("messages").unwrap_or_else(|| "[]".into())).map_err(|_| corrupt("messages"))?;
        let recorded_at = text("recorded_at")
            .and_then(|t| OffsetDateTime::parse(&t, &Rfc3339).ok())
            .ok_or_else(|| corrupt("recorded_at"))?;
        Ok(DeliveryRecord {
            team_id,
            integration_id,
            key,
            event: text("event").unwrap_or_default(),
            messages,
            recorded_at,
            attempt: text("attempt").unwrap_or_default(),
        })
    }
}

#[async_trait]
impl DeliveryStore for DynamoWebhookStore {
    #[tracing::instrument(skip_all, fields(integration_id = %delivery.integration_id))]
    async fn record(&self, delivery: &DeliveryRecord, expires_at: OffsetDateTime) -> Result<Recorded, PortError> {
        let messages = serde_json::to_string(&delivery.messages).map_err(|e| PortError::Corrupt(e.to_string()))?;
        let mut item = Self::delivery_key(delivery);
        item.extend([
            ("type".to_owned(), AttributeValue::S("delivery".into())),
            ("team_id".to_owned(), AttributeValue::S(delivery.team_id.to_string())),
            ("integration_id".to_owned(), AttributeValue::S(delivery.integration_id.to_string())),
            ("delivery_key".to_owned(), AttributeValue::S(delivery.key.clone())),
            ("event".to_owned(), AttributeValue::S(delivery.event.clone())),
            ("messages".to_owned(), AttributeValue::S(messages)),
            ("recorded_at".to_owned(), AttributeValue::S(rfc3339(delivery.recorded_at)?)),
            ("attempt".to_owned(), AttributeValue::S(delivery.attempt.clone())),
            ("ttl".to_owned(), AttributeValue::N(expires_at.unix_timestamp().to_string())),
        ]);
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            // An expired record that TTL has not swept yet counts as gone.
            .condition_expression("attribute_not_exists(pk) OR #ttl < :now")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":now", AttributeValue::N(delivery.recorded_at.unix_timestamp().to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await
        {
            Ok(_) => Ok(Recorded::New),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                // The SDK retries an attempt that timed out; if the first attempt was written,
                // the retry finds this receipt's own record, which is no duplicate.
                let own = match e.err() {
                    PutItemError::ConditionalCheckFailedException(c) => c
                        .item
                        .as_ref()
                        .and_then(|old| old.get("attempt"))
                        .and_then(|v| v.as_s().ok())
                        .is_some_and(|a| *a == delivery.attempt),
                    _ => false,
                };
                Ok(if own { Recorded::New } else { Recorded::Duplicate })
            }
            Err(e) => Err(PortError::unavailable(e.into_service_error())),
        }
    }

    #[tracing::instrument(skip_all, fields(integration_id = %delivery.integration_id))]
    async fn mark_unsent(&self, delivery: &DeliveryRecord) -> Result<(), PortError> {
        let order = format!("{}#{}#{}", rfc3339(delivery.recorded_at)?, delivery.integration_id, delivery.key);
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::delivery_key(delivery)))
            .update_expression("SET gsi1pk = :pk, gsi1sk = :order")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":pk", AttributeValue::S(UNSENT_GSI_PK.into()))
            .expression_attribute_values(":order", AttributeValue::S(order))
            .send()
            .await
            .map_err(|e| PortError::unavailable(e.into_service_error()))?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn unsent(&self, limit: usize) -> Result<Vec<DeliveryRecord>, PortError> {
        let mut out = Vec::new();
        let mut start = None;
        while out.len() < limit {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("gsi1")
                .key_condition_expression("gsi1pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(UNSENT_GSI_PK.into()))
                .limit(i32::try_from(limit - out.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| PortError::unavailable(e.into_service_error()))?;
            for item in page.items.unwrap_or_default() {
                match Self::from_item(&item) {
                    Ok(d) => out.push(d),
                    Err(e) => tracing::error!(error.message = %e, "unreadable unsent delivery left in place"),
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        Ok(out)
    }

    #[tracing::instrument(skip_all, fields(integration_id = %delivery.integration_id))]
    async fn mark_sent(&self, delivery: &DeliveryRecord) -> Result<(), PortError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::delivery_key(delivery)))
            .update_expression("REMOVE gsi1pk, gsi1sk SET sent_at = :now")
            .expression_attribute_values(":now", AttributeValue::S(rfc3339(OffsetDateTime::now_utc())?))
            .send()
            .await
            .map_err(|e| PortError::unavailable(e.into_service_error()))?;
        Ok(())
    }
}

#[async_trait]
impl WebhookStateStore for DynamoWebhookStore {
    #[tracing::instrument(skip_all, fields(integration_id = %id, project_id))]
    async fn is_tracked(&self, team: &TeamId, id: &IntegrationId, project_id: u64) -> Result<bool, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(children_pk(team, id)))
            .key("sk", AttributeValue::S(project_sk(project_id)))
            .projection_expression("tracked, removed_at")
            .send()
            .await
            .map_err(|e| PortError::unavailable(e.into_service_error()))?;
        Ok(out.item.is_some_and(|item| {
            item.get("tracked").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false)
                && item.get("removed_at").is_none_or(|v| v.is_null())
        }))
    }

    #[tracing::instrument(skip_all, fields(integration_id = %id, project_id))]
    async fn record_delivery_seen(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        project_id: u64,
        at: OffsetDateTime,
    ) -> Result<(), PortError> {
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(children_pk(team, id)))
            .key("sk", AttributeValue::S(project_sk(project_id)))
            .update_expression("SET last_delivery_at = :at")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":at", AttributeValue::S(rfc3339(at)?))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(()),
            Err(e) => Err(PortError::unavailable(e.into_service_error())),
        }
    }

    #[tracing::instrument(skip_all, fields(integration_id = %id))]
    async fn set_token_expiring(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        now: OffsetDateTime,
    ) -> Result<(), PortError> {
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(team_pk(team)))
            .key("sk", AttributeValue::S(integration_sk(id)))
            .update_expression("SET #status = :expiring, updated_at = :now")
            .condition_expression("#status = :active")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":expiring", AttributeValue::S("token_expiring".into()))
            .expression_attribute_values(":active", AttributeValue::S("active".into()))
            .expression_attribute_values(":now", AttributeValue::S(rfc3339(now)?))
            .send()
            .await
        {
            // Already expiring, expired or otherwise unhealthy: leave the stronger status.
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(()),
            Err(e) => Err(PortError::unavailable(e.into_service_error())),
        }
    }

    #[tracing::instrument(skip_all, fields(integration_id = %id, project_id = change.project_id))]
    async fn record_vulnerability(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        change: &VulnerabilityChange,
        now: OffsetDateTime,
    ) -> Result<(), PortError> {
        // Without GitLab's id the identifiers name the vulnerability.
        let name = match change.vulnerability_id {
            Some(v) => format!("{v:020}"),
            None => {
                use sha2::Digest;
                let joined = change.identifiers.join("\n");
                format!("ids-{}", &hex::encode(sha2::Sha256::digest(joined.as_bytes()))[..32])
            }
        };
        let mut item: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(change).map_err(|e| PortError::Corrupt(e.to_string()))?;
        item.extend([
            ("pk".to_owned(), AttributeValue::S(children_pk(team, id))),
            ("sk".to_owned(), AttributeValue::S(format!("VULNERABILITY#{:020}#{name}", change.project_id))),
            ("type".to_owned(), AttributeValue::S("gitlab_vulnerability".into())),
            ("updated_at".to_owned(), AttributeValue::S(rfc3339(now)?)),
        ]);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| PortError::unavailable(e.into_service_error()))?;
        // A vulnerability the connector exported names its finding: GitLab's state becomes the
        // finding's triage (only for a finding of this integration and project).
        let Some(triage) = crate::domain::findings::Triage::from_gitlab_state(&change.state) else {
            return Ok(());
        };
        let value = serde_json::to_value(triage).map_err(|e| PortError::Corrupt(e.to_string()))?;
        for fingerprint in crate::domain::findings::linked_fingerprints(&change.identifiers) {
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", AttributeValue::S(children_pk(team, id)))
                .key("sk", AttributeValue::S(format!("FINDING#{fingerprint}")))
                .update_expression("SET triage = :t, triaged_at = :now, triage_source = :gitlab")
                .condition_expression("attribute_exists(pk) AND project_id = :p")
                .expression_attribute_values(":t", AttributeValue::S(value.as_str().unwrap_or("open").to_owned()))
                .expression_attribute_values(":now", AttributeValue::S(rfc3339(now)?))
                .expression_attribute_values(":gitlab", AttributeValue::S("gitlab".into()))
                .expression_attribute_values(":p", AttributeValue::N(change.project_id.to_string()))
                .send()
                .await;
            match result {
                Ok(_) => {}
                Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {}
                Err(e) => return Err(PortError::unavailable(e.into_service_error())),
            }
        }
        Ok(())
    }
}
