//! DynamoDB single-table adapter. Keys start with the team (`TEAM#<team>`), so every read is
//! scoped by tenant; a GSI on the integration id serves the callers that only know the id.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, ReturnValue, ReturnValuesOnConditionCheckFailure, WriteRequest,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain::ids::{IntegrationId, TeamId};
use crate::domain::integration::Integration;
use crate::ports::{IntegrationStore, PortError};

/// Item type tag stored with integration items.
const INTEGRATION_TYPE: &str = "integration";
/// GSI partition holding every integration.
const INTEGRATIONS_GSI_PK: &str = "INTEGRATIONS";
/// DynamoDB allows at most 25 requests per `BatchWriteItem`.
const BATCH_LIMIT: usize = 25;

/// Partition key of a team's integrations.
pub fn team_pk(team: &TeamId) -> String {
    format!("TEAM#{team}")
}

/// Sort key of an integration item.
pub fn integration_sk(id: &IntegrationId) -> String {
    format!("INTEGRATION#{id}")
}

/// Partition key of the items that belong to one integration (projects, sync state, ...).
pub fn children_pk(team: &TeamId, id: &IntegrationId) -> String {
    format!("TEAM#{team}#INTEGRATION#{id}")
}

/// The integration store on a DynamoDB table.
#[derive(Clone, Debug)]
pub struct DynamoIntegrationStore {
    client: Client,
    table: String,
}

impl DynamoIntegrationStore {
    /// The SDK client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Wraps a client and a table name.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    fn to_item(integration: &Integration) -> Result<HashMap<String, AttributeValue>, PortError> {
        let mut item: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(integration).map_err(|e| PortError::Corrupt(e.to_string()))?;
        item.insert("pk".into(), AttributeValue::S(team_pk(&integration.team_id)));
        item.insert("sk".into(), AttributeValue::S(integration_sk(&integration.id)));
        // All integrations share one GSI partition: the scheduled fan-out reads them without a
        // table scan (a few thousand small keys at most).
        item.insert("gsi1pk".into(), AttributeValue::S(INTEGRATIONS_GSI_PK.into()));
        item.insert("gsi1sk".into(), AttributeValue::S(integration.id.to_string()));
        item.insert("type".into(), AttributeValue::S(INTEGRATION_TYPE.into()));
        Ok(item)
    }

    fn from_item(mut item: HashMap<String, AttributeValue>) -> Result<Integration, PortError> {
        for key in ["pk", "sk", "gsi1pk", "gsi1sk", "type"] {
            item.remove(key);
        }
        serde_dynamo::from_item(item).map_err(|e| PortError::Corrupt(e.to_string()))
    }

    /// The `(pk, sk)` of every item of a partition.
    async fn partition_keys(&self, pk: String) -> Result<Vec<(String, String)>, PortError> {
        Ok(query_partition(&self.client, &self.table, pk, None, Some("pk, sk"))
            .await?
            .into_iter()
            .filter_map(|item| match (item.get("pk"), item.get("sk")) {
                (Some(AttributeValue::S(p)), Some(AttributeValue::S(s))) => Some((p.clone(), s.clone())),
                _ => None,
            })
            .collect())
    }

    pub(crate) async fn batch_delete(&self, keys: Vec<(String, String)>) -> Result<(), PortError> {
        let mut requests = Vec::with_capacity(keys.len());
        for (pk, sk) in keys {
            let delete = DeleteRequest::builder()
                .key("pk", AttributeValue::S(pk))
                .key("sk", AttributeValue::S(sk))
                .build()
                .map_err(PortError::unavailable)?;
            requests.push(WriteRequest::builder().delete_request(delete).build());
        }
        batch_write(&self.client, &self.table, requests).await.map(|_| ())
    }
}

/// Every item of one partition (optionally under a sort-key prefix and with a projection),
/// following pagination; strongly consistent, as callers act on what they read.
pub(crate) async fn query_partition(
    client: &Client,
    table: &str,
    pk: String,
    sk_prefix: Option<&str>,
    projection: Option<&str>,
) -> Result<Vec<HashMap<String, AttributeValue>>, PortError> {
    let mut items = Vec::new();
    query_partition_each(client, table, pk, sk_prefix, projection, &mut |item| items.push(item)).await?;
    Ok(items)
}

/// Like [`query_partition`], handing each item to `each` as its page arrives, so a large
/// partition is never held twice (raw items and what they become).
pub(crate) async fn query_partition_each(
    client: &Client,
    table: &str,
    pk: String,
    sk_prefix: Option<&str>,
    projection: Option<&str>,
    each: &mut (dyn FnMut(HashMap<String, AttributeValue>) + Send),
) -> Result<(), PortError> {
    let mut start: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let mut query = client
            .query()
            .table_name(table)
            .consistent_read(true)
            .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
            .set_projection_expression(projection.map(str::to_owned))
            .set_exclusive_start_key(start);
        query = match sk_prefix {
            Some(prefix) => query
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_owned())),
            None => query.key_condition_expression("pk = :pk"),
        };
        let out = query.send().await.map_err(|e| PortError::unavailable(e.into_service_error()))?;
        out.items.unwrap_or_default().into_iter().for_each(&mut *each);
        start = out.last_evaluated_key;
        if start.is_none() {
            return Ok(());
        }
    }
}

/// First wait before retrying items a batch call left unprocessed; doubled each time.
pub(crate) const UNPROCESSED_BASE_WAIT: std::time::Duration = std::time::Duration::from_millis(25);
/// Longest wait between two batch calls.
pub(crate) const UNPROCESSED_MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// How long to wait before retrying unprocessed batch items, after `attempt` calls (0-based):
/// exponential with jitter, as AWS advises for `BatchWriteItem` / `BatchGetItem`, so that
/// writers throttled together do not come back together.
pub(crate) fn unprocessed_retry_wait(attempt: u32) -> std::time::Duration {
    super::backoff::exponential(UNPROCESSED_BASE_WAIT, attempt, UNPROCESSED_MAX_WAIT)
}

/// Sends write requests in `BatchWriteItem` calls of 25, retrying unprocessed items with
/// jittered backoff (DynamoDB leaves some unprocessed under throttling); returns the calls made.
pub(crate) async fn batch_write(client: &Client, table: &str, requests: Vec<WriteRequest>) -> Result<u64, PortError> {
    let mut calls = 0;
    for chunk in requests.chunks(BATCH_LIMIT) {
        let mut pending = HashMap::from([(table.to_owned(), chunk.to_vec())]);
        for attempt in 0..8u32 {
            calls += 1;
            let out = client
                .batch_write_item()
                .set_request_items(Some(pending))
                .send()
                .await
                .map_err(|e| PortError::unavailable(e.into_service_error()))?;
            pending = out.unprocessed_items.unwrap_or_default();
            if pending.values().all(Vec::is_empty) {
                break;
            }
            tokio::time::sleep(unprocessed_retry_wait(attempt)).await;
        }
        if !pending.values().all(Vec::is_empty) {
            return Err(PortError::Corrupt("items left unprocessed after retries".into()));
        }
    }
    Ok(calls)
}

#[async_trait]
impl IntegrationStore for DynamoIntegrationStore {
    #[tracing::instrument(skip_all, fields(integration_id = %integration.id))]
    async fn insert(&self, integration: &Integration) -> Result<(), PortError> {
        let item = Self::to_item(integration)?;
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Err(PortError::Conflict)
            }
            Err(e) => Err(PortError::unavailable(e.into_service_error())),
        }
    }

    #[tracing::instrument(skip_all, fields(integration_id = %id))]
    async fn get(&self, team: &TeamId, id: &IntegrationId) -> Result<Option<Integration>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(team_pk(team)))
            .key("sk", AttributeValue::S(integration_sk(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| PortError::unavailable(e.into_service_error()))?;
        out.item.map(Self::from_item).transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn list(&self, team: &TeamId) -> Result<Vec<Integration>, PortError> {
        let mut items = Vec::new();
        for item in query_partition(&self.client, &self.table, team_pk(team), Some("INTEGRATION#"), None).await? {
            items.push(Self::from_item(item)?);
        }
        items.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.as_str().cmp(b.id.as_str())));
        Ok(items)
    }

    #[tracing::instrument(skip_all, fields(integration_id = %integration.id))]
    async fn update(&self, integration: &Integration, expected_updated_at: OffsetDateTime) -> Result<(), PortError> {
        let item = Self::to_item(integration)?;
        let expected = expected_updated_at.format(&Rfc3339).map_err(|e| PortError::Corrupt(e.to_string()))?;
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_exists(pk) AND updated_at = :expected")
            .expression_attribute_values(":expected", AttributeValue::S(expected))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                // With ALL_OLD the failure tells a concurrent change from a deletion.
                let existed = match e.err() {
                    PutItemError::ConditionalCheckFailedException(c) => c.item.is_some(),
                    _ => false,
                };
                Err(if existed { PortError::Conflict } else { PortError::NotFound })
            }
            Err(e) => Err(PortError::unavailable(e.into_service_error())),
        }
    }

    #[tracing::instrument(skip_all, fields(integration_id = %id))]
    async fn delete(&self, team: &TeamId, id: &IntegrationId) -> Result<(), PortError> {
        // Children first: if this fails half-way the integration item still exists and the
        // delete can be repeated; the reverse order could strand orphaned items.
        let keys = self.partition_keys(children_pk(team, id)).await?;
        // Each scan's findings live in their own partition (`<pk>#SCAN#<scan_id>`): purged first,
        // while the scan items that name them still exist.
        for (pk, sk) in keys.iter().filter(|(_, sk)| sk.starts_with("SCAN#")) {
            let findings = self.partition_keys(format!("{pk}#{sk}")).await?;
            self.batch_delete(findings).await?;
        }
        self.batch_delete(keys).await?;
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(team_pk(team)))
            .key("sk", AttributeValue::S(integration_sk(id)))
            .send()
            .await
            .map_err(|e| PortError::unavailable(e.into_service_error()))?;
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn count_in_window(&self, team: &TeamId, window: &str, expires_at: OffsetDateTime) -> Result<u64, PortError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(team_pk(team)))
            .key("sk", AttributeValue::S(format!("RATE#{window}")))
            .update_expression("ADD hits :one SET #ttl = if_not_exists(#ttl, :ttl)")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":ttl", AttributeValue::N(expires_at.unix_timestamp().to_string()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| PortError::unavailable(e.into_service_error()))?;
        out.attributes
            .and_then(|a| a.get("hits").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()))
            .ok_or_else(|| PortError::Corrupt("rate counter without hits".into()))
    }
}

#[async_trait]
impl crate::ports::IntegrationDirectory for DynamoIntegrationStore {
    #[tracing::instrument(skip_all)]
    async fn all_integrations(
        &self,
    ) -> Result<Vec<(TeamId, IntegrationId, crate::domain::integration::IntegrationStatus)>, PortError> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("gsi1")
                .key_condition_expression("gsi1pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(INTEGRATIONS_GSI_PK.into()))
                .projection_expression("team_id, id, #status")
                .expression_attribute_names("#status", "status")
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| PortError::unavailable(e.into_service_error()))?;
            for item in page.items.unwrap_or_default() {
                let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
                let (Some(team), Some(id), Some(status)) = (text("team_id"), text("id"), text("status")) else {
                    continue;
                };
                let parsed = (
                    TeamId::parse(&team),
                    IntegrationId::parse(&id),
                    serde_json::from_value(serde_json::Value::String(status)).ok(),
                );
                if let (Some(t), Some(i), Some(st)) = parsed {
                    out.push((t, i, st));
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    #[tracing::instrument(skip_all, fields(integration_id = %id))]
    async fn find(&self, id: &IntegrationId) -> Result<Option<Integration>, PortError> {
        // The GSI keys every integration by its id; the item carries its team.
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("gsi1")
            .key_condition_expression("gsi1pk = :pk AND gsi1sk = :id")
            .expression_attribute_values(":pk", AttributeValue::S(INTEGRATIONS_GSI_PK.into()))
            .expression_attribute_values(":id", AttributeValue::S(id.to_string()))
            .limit(1)
            .send()
            .await
            .map_err(|e| PortError::unavailable(e.into_service_error()))?;
        let Some(item) = page.items.unwrap_or_default().into_iter().next() else {
            return Ok(None);
        };
        let integration = Self::from_item(item)?;
        Ok((integration.id == *id).then_some(integration))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unprocessed_items_wait_a_jittered_doubling_time() {
        let waits: Vec<std::time::Duration> = (0..50).map(|_| unprocessed_retry_wait(3)).collect();
        let step = UNPROCESSED_BASE_WAIT * 8;
        assert!(waits.iter().all(|w| *w >= step / 2 && *w <= step), "{waits:?}");
        assert!(waits.iter().any(|w| *w != waits[0]), "every wait was {:?}: no jitter", waits[0]);
        assert!(unprocessed_retry_wait(30) <= UNPROCESSED_MAX_WAIT);
    }
}
