//! Scans in the single table, all under the integration's partition (`children_pk`):
//!
//! | item | sort key | holds |
//! |---|---|---|
//! | scan | `SCAN#<scan_id>` | the record as JSON; `gsi1` `SCANS#<pk>#<project>` lists a project's scans |
//! | claim | `SCANKEY#<scan key>` | the scan that owns a (project, target, commit) |
//! | target | `TARGET#<project>#<target>` | newest request, cancellation time, last succeeded scan |
//! | finding view | `FINDING#<fingerprint>` | the latest sighting of a finding and its triage |
//!
//! A scan's findings are their own items in the partition `<pk>#SCAN#<scan_id>` (sort key
//! `F#<position>#<fingerprint>`), read a page at a time: no item comes near the 400 KB limit
//! however many findings a scan has.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, PutRequest, ReturnValue, WriteRequest};
use time::OffsetDateTime;

use super::dynamodb::{batch_write, children_pk, unprocessed_retry_wait};
use super::dynamodb_projects::{project_sk, rfc3339};
use crate::domain::findings::{Finding, ScanRecord, Triage};
use crate::domain::ids::{IntegrationId, TeamId};
use crate::domain::project::Project;
use crate::ports::{Page, PortError, ScanStore, TargetCheck};

/// Claims outlive any redelivery (SQS keeps messages 14 days at most).
const CLAIM_RETENTION_DAYS: i64 = 30;
/// `BatchGetItem` reads at most 100 keys per call.
const BATCH_GET_LIMIT: usize = 100;

fn scan_sk(scan_id: &str) -> String {
    format!("SCAN#{scan_id}")
}

fn scans_gsi_pk(pk: &str, project_id: u64) -> String {
    format!("SCANS#{pk}#{project_id:020}")
}

fn target_sk(project_id: u64, target_key: &str) -> String {
    format!("TARGET#{project_id:020}#{target_key}")
}

fn findings_pk(pk: &str, scan_id: &str) -> String {
    format!("{pk}#SCAN#{scan_id}")
}

fn finding_sk(fingerprint: &str) -> String {
    format!("FINDING#{fingerprint}")
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl Into<i128>) -> AttributeValue {
    AttributeValue::N(v.into().to_string())
}

fn text(item: &HashMap<String, AttributeValue>, key: &str) -> Option<String> {
    item.get(key).and_then(|v| v.as_s().ok()).cloned()
}

fn json<T: serde::de::DeserializeOwned>(item: &HashMap<String, AttributeValue>, key: &str) -> Result<T, PortError> {
    let raw = text(item, key).ok_or_else(|| PortError::Corrupt(format!("item without {key}")))?;
    serde_json::from_str(&raw).map_err(|e| PortError::Corrupt(format!("{key}: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, PortError> {
    serde_json::to_string(value).map_err(|e| PortError::Corrupt(e.to_string()))
}

fn is_conditional<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    matches!(e, SdkError::ServiceError(se) if se.err().code() == Some("ConditionalCheckFailedException"))
}

/// Cursors are sort keys of this connector's own items; anything else is refused.
fn checked_cursor(cursor: Option<&str>, prefix: &str) -> Result<Option<String>, PortError> {
    match cursor {
        None => Ok(None),
        Some(c) if c.len() <= 200 && c.is_ascii() && !c.contains('#') => Ok(Some(format!("{prefix}{c}"))),
        Some(_) => Err(PortError::NotFound),
    }
}

/// Scan state on DynamoDB.
#[derive(Clone, Debug)]
pub struct DynamoScanStore {
    client: Client,
    table: String,
}

impl DynamoScanStore {
    /// Wraps a client and a table name.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    async fn target_item(&self, pk: String, sk: String) -> Result<Option<HashMap<String, AttributeValue>>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| PortError::unavailable(e.into_service_error()))?;
        Ok(out.item)
    }

    fn scan_item(
        team: &TeamId,
        id: &IntegrationId,
        scan: &ScanRecord,
    ) -> Result<HashMap<String, AttributeValue>, PortError> {
        let pk = children_pk(team, id);
        Ok(HashMap::from([
            ("gsi1pk".to_owned(), s(scans_gsi_pk(&pk, scan.project_id))),
            ("gsi1sk".to_owned(), s(scan_sk(&scan.scan_id))),
            ("pk".to_owned(), s(pk)),
            ("sk".to_owned(), s(scan_sk(&scan.scan_id))),
            ("type".to_owned(), s("scan")),
            ("team_id".to_owned(), s(team.to_string())),
            ("project_id".to_owned(), n(scan.project_id)),
            ("state".to_owned(), s(to_json(&scan.state)?.trim_matches('"'))),
            ("scan".to_owned(), s(to_json(scan)?)),
        ]))
    }

    /// Reads the finding views of these fingerprints (100 per call, unprocessed keys retried).
    async fn finding_views(
        &self,
        pk: &str,
        fingerprints: &[String],
    ) -> Result<Vec<HashMap<String, AttributeValue>>, PortError> {
        let mut out = Vec::new();
        let mut unique: Vec<&String> = fingerprints.iter().collect();
        unique.sort();
        unique.dedup();
        for chunk in unique.chunks(BATCH_GET_LIMIT) {
            let keys: Vec<HashMap<String, AttributeValue>> = chunk
                .iter()
                .map(|fp| HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(finding_sk(fp)))]))
                .collect();
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(PortError::unavailable)?,
            );
            let mut attempt = 0;
            while let Some(request) = pending.take() {
                let result = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| PortError::unavailable(e.into_service_error()))?;
                if let Some(mut responses) = result.responses {
                    out.extend(responses.remove(&self.table).unwrap_or_default());
                }
                pending = result.unprocessed_keys.and_then(|mut u| u.remove(&self.table));
                if pending.as_ref().is_some_and(|p| !p.keys().is_empty()) {
                    tokio::time::sleep(unprocessed_retry_wait(attempt)).await;
                    attempt += 1;
                } else {
                    pending = None;
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl ScanStore for DynamoScanStore {
    async fn project(&self, team: &TeamId, id: &IntegrationId, project_id: u64) -> Result<Option<Project>, PortError> {
        let item = self.target_item(children_pk(team, id), project_sk(project_id)).await?;
        Ok(item.as_ref().and_then(super::dynamodb_projects::project_from_item))
    }

    async fn save_scan(&self, team: &TeamId, id: &IntegrationId, scan: &ScanRecord) -> Result<(), PortError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::scan_item(team, id, scan)?))
            .send()
            .await
            .map_err(|e| PortError::unavailable(e.into_service_error()))?;
        Ok(())
    }

    async fn scan(&self, team: &TeamId, id: &IntegrationId, scan_id: &str) -> Result<Option<ScanRecord>, PortError> {
        match self.target_item(children_pk(team, id), scan_sk(scan_id)).await? {
            Some(item) => json(&item, "scan").map(Some),
            None => Ok(None),
        }
    }

    async fn list_scans(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        project_id: Option<u64>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<ScanRecord>, PortError> {
        let pk = children_pk(team, id);
        let start_sk = checked_cursor(cursor, "SCAN#")?;
        let mut query = self.client.query().table_name(&self.table).scan_index_forward(false).limit(limit as i32);
        query = match project_id {
            Some(p) => {
                let gsi_pk = scans_gsi_pk(&pk, p);
                query
                    .index_name("gsi1")
                    .key_condition_expression("gsi1pk = :pk AND begins_with(gsi1sk, :prefix)")
                    .expression_attribute_values(":pk", s(gsi_pk.clone()))
                    .expression_attribute_values(":prefix", s("SCAN#"))
                    .set_exclusive_start_key(start_sk.map(|sk| {
                        HashMap::from([
                            ("pk".to_owned(), s(pk.clone())),
                            ("sk".to_owned(), s(sk.clone())),
                            ("gsi1pk".to_owned(), s(gsi_pk)),
                            ("gsi1sk".to_owned(), s(sk)),
                        ])
                    }))
            }
            None => query
                .consistent_read(true)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(pk.clone()))
                .expression_attribute_values(":prefix", s("SCAN#"))
                .set_exclusive_start_key(
                    start_sk.map(|sk| HashMap::from([("pk".to_owned(), s(pk.clone())), ("sk".to_owned(), s(sk))])),
                ),
        };
        let out = query.send().await.map_err(|e| PortError::unavailable(e.into_service_error()))?;
        let items =
            out.items.unwrap_or_default().iter().map(|i| json(i, "scan")).collect::<Result<Vec<ScanRecord>, _>>()?;
        let next = out
            .last_evaluated_key
            .and_then(|k| text(&k, "sk"))
            .and_then(|sk| sk.strip_prefix("SCAN#").map(str::to_owned));
        Ok(Page { items, next })
    }

    async fn claim(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        scan_key: &str,
        scan_id: &str,
        replacing: Option<&str>,
    ) -> Result<Option<String>, PortError> {
        let now = OffsetDateTime::now_utc();
        let expires = now + time::Duration::days(CLAIM_RETENTION_DAYS);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(children_pk(team, id)))
            .item("sk", s(format!("SCANKEY#{scan_key}")))
            .item("type", s("scan_claim"))
            .item("team_id", s(team.to_string()))
            .item("scan_id", s(scan_id))
            .item("claimed_at", s(rfc3339(now)))
            .item("ttl", n(expires.unix_timestamp()))
            .condition_expression("attribute_not_exists(pk) OR scan_id = :mine OR scan_id = :replacing")
            .expression_attribute_values(":mine", s(scan_id))
            .expression_attribute_values(":replacing", s(replacing.unwrap_or(scan_id)))
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                let existing = match e.into_err() {
                    aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => {
                        c.item.as_ref().and_then(|i| text(i, "scan_id"))
                    }
                    _ => None,
                };
                Ok(Some(existing.unwrap_or_default()))
            }
            Err(e) => Err(PortError::unavailable(e.into_service_error())),
        }
    }

    async fn set_latest(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        project_id: u64,
        target_key: &str,
        scan_id: &str,
        requested_ms: i64,
    ) -> Result<bool, PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(children_pk(team, id)))
            .key("sk", s(target_sk(project_id, target_key)))
            .update_expression("SET latest_scan_id = :id, latest_ms = :ms, team_id = :team, #type = :type")
            .condition_expression("attribute_not_exists(latest_ms) OR latest_ms < :ms OR latest_scan_id = :id")
            .expression_attribute_names("#type", "type")
            .expression_attribute_values(":id", s(scan_id))
            .expression_attribute_values(":ms", n(requested_ms))
            .expression_attribute_values(":team", s(team.to_string()))
            .expression_attribute_values(":type", s("scan_target"))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_conditional(&e) => Ok(false),
            Err(e) => Err(PortError::unavailable(e.into_service_error())),
        }
    }

    async fn check_target(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        project_id: u64,
        target_key: &str,
        scan_id: &str,
        requested_ms: i64,
    ) -> Result<TargetCheck, PortError> {
        let Some(item) = self.target_item(children_pk(team, id), target_sk(project_id, target_key)).await? else {
            return Ok(TargetCheck::Current);
        };
        let number = |k: &str| item.get(k).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<i64>().ok());
        if number("cancelled_ms").is_some_and(|c| c >= requested_ms) {
            return Ok(TargetCheck::Cancelled);
        }
        match text(&item, "latest_scan_id") {
            Some(latest) if latest != scan_id && number("latest_ms").unwrap_or(0) >= requested_ms => {
                Ok(TargetCheck::Superseded)
            }
            _ => Ok(TargetCheck::Current),
        }
    }

    async fn cancel_target(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        project_id: u64,
        target_key: &str,
        at_ms: i64,
    ) -> Result<Option<String>, PortError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(children_pk(team, id)))
            .key("sk", s(target_sk(project_id, target_key)))
            .update_expression("SET cancelled_ms = :ms, team_id = :team, #type = :type")
            // A close handled late never moves the cancellation back in time.
            .condition_expression("attribute_not_exists(cancelled_ms) OR cancelled_ms < :ms")
            .expression_attribute_names("#type", "type")
            .expression_attribute_values(":ms", n(at_ms))
            .expression_attribute_values(":team", s(team.to_string()))
            .expression_attribute_values(":type", s("scan_target"))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => Ok(out.attributes.as_ref().and_then(|a| text(a, "latest_scan_id"))),
            Err(e) if is_conditional(&e) => Ok(None),
            Err(e) => Err(PortError::unavailable(e.into_service_error())),
        }
    }

    async fn last_succeeded(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        project_id: u64,
        target_key: &str,
    ) -> Result<Option<String>, PortError> {
        let item = self.target_item(children_pk(team, id), target_sk(project_id, target_key)).await?;
        Ok(item.as_ref().and_then(|i| text(i, "last_succeeded")))
    }

    async fn store_results(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        scan: &ScanRecord,
        findings: &[Finding],
    ) -> Result<(), PortError> {
        let pk = children_pk(team, id);
        let fpk = findings_pk(&pk, &scan.scan_id);
        let mut requests = Vec::with_capacity(findings.len());
        for (position, finding) in findings.iter().enumerate() {
            let item = HashMap::from([
                ("pk".to_owned(), s(fpk.clone())),
                ("sk".to_owned(), s(format!("F#{position:06}#{}", finding.fingerprint))),
                ("type".to_owned(), s("scan_finding")),
                ("team_id".to_owned(), s(team.to_string())),
                ("finding".to_owned(), s(to_json(finding)?)),
            ]);
            let put = PutRequest::builder().set_item(Some(item)).build().map_err(PortError::unavailable)?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        batch_write(&self.client, &self.table, requests).await?;
        // The latest sighting of each finding that is still there, keeping its triage.
        for finding in findings.iter().filter(|f| f.state != crate::domain::findings::FindingState::Fixed) {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(pk.clone()))
                .key("sk", s(finding_sk(&finding.fingerprint)))
                .update_expression(
                    "SET finding = :f, last_scan_id = :scan, project_id = :p, team_id = :team, #type = :type, \
                     triage = if_not_exists(triage, :open)",
                )
                .expression_attribute_names("#type", "type")
                .expression_attribute_values(":f", s(to_json(finding)?))
                .expression_attribute_values(":scan", s(scan.scan_id.clone()))
                .expression_attribute_values(":p", n(scan.project_id))
                .expression_attribute_values(":team", s(team.to_string()))
                .expression_attribute_values(":type", s("finding"))
                .expression_attribute_values(":open", s("open"))
                .send()
                .await
                .map_err(|e| PortError::unavailable(e.into_service_error()))?;
        }
        self.save_scan(team, id, scan).await?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(target_sk(scan.project_id, &scan.target.key())))
            .update_expression("SET last_succeeded = :id, team_id = :team, #type = :type")
            .condition_expression("attribute_not_exists(last_succeeded) OR last_succeeded < :id")
            .expression_attribute_names("#type", "type")
            .expression_attribute_values(":id", s(scan.scan_id.clone()))
            .expression_attribute_values(":team", s(team.to_string()))
            .expression_attribute_values(":type", s("scan_target"))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_conditional(&e) => Ok(()),
            Err(e) => Err(PortError::unavailable(e.into_service_error())),
        }
    }

    async fn findings(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        scan_id: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Finding>, PortError> {
        let pk = children_pk(team, id);
        let fpk = findings_pk(&pk, scan_id);
        let start = match cursor {
            None => None,
            Some(c) if c.len() <= 60 && c.bytes().all(|b| b.is_ascii_hexdigit() || b == b'.') => {
                let (position, fp) = c.split_once('.').ok_or(PortError::NotFound)?;
                Some(format!("F#{position}#{fp}"))
            }
            Some(_) => return Err(PortError::NotFound),
        };
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(fpk.clone()))
            .expression_attribute_values(":prefix", s("F#"))
            .limit(limit as i32)
            .set_exclusive_start_key(
                start.map(|sk| HashMap::from([("pk".to_owned(), s(fpk.clone())), ("sk".to_owned(), s(sk))])),
            )
            .send()
            .await
            .map_err(|e| PortError::unavailable(e.into_service_error()))?;
        let mut items =
            out.items.unwrap_or_default().iter().map(|i| json(i, "finding")).collect::<Result<Vec<Finding>, _>>()?;
        let fingerprints: Vec<String> = items.iter().map(|f| f.fingerprint.clone()).collect();
        let triage = self.triage(team, id, &fingerprints).await?;
        for f in &mut items {
            f.triage = triage.get(&f.fingerprint).copied().unwrap_or_default();
        }
        let next = out.last_evaluated_key.and_then(|k| text(&k, "sk")).and_then(|sk| {
            let rest = sk.strip_prefix("F#")?;
            let (position, fp) = rest.split_once('#')?;
            Some(format!("{position}.{fp}"))
        });
        Ok(Page { items, next })
    }

    async fn triage(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        fingerprints: &[String],
    ) -> Result<HashMap<String, Triage>, PortError> {
        let views = self.finding_views(&children_pk(team, id), fingerprints).await?;
        Ok(views
            .iter()
            .filter_map(|item| {
                let fp = text(item, "sk")?.strip_prefix("FINDING#")?.to_owned();
                let triage = Triage::parse(&text(item, "triage")?)?;
                Some((fp, triage))
            })
            .collect())
    }

    async fn set_triage(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        fingerprint: &str,
        triage: Triage,
        now: OffsetDateTime,
    ) -> Result<Option<Finding>, PortError> {
        let value = to_json(&triage)?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(children_pk(team, id)))
            .key("sk", s(finding_sk(fingerprint)))
            .update_expression("SET triage = :t, triaged_at = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":t", s(value.trim_matches('"')))
            .expression_attribute_values(":now", s(rfc3339(now)))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => {
                let item = out.attributes.unwrap_or_default();
                let mut finding: Finding = json(&item, "finding")?;
                finding.triage = triage;
                Ok(Some(finding))
            }
            Err(e) if is_conditional(&e) => Ok(None),
            Err(e) => Err(PortError::unavailable(e.into_service_error())),
        }
    }
}

fn report_sk(project_id: u64, target_key: &str) -> String {
    format!("REPORT#{project_id:020}#{target_key}")
}

/// Note budgets are kept a little past their minute.
const NOTE_BUDGET_TTL_SECONDS: i64 = 600;

#[async_trait]
impl crate::ports::ReportStore for DynamoScanStore {
    async fn lease_report(
        &self,
        key: &crate::ports::ReportKey<'_>,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Option<crate::domain::report::ReportState>, PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(children_pk(key.team, key.id)))
            .key("sk", s(report_sk(key.project_id, key.target_key)))
            .update_expression("SET lease_holder = :h, lease_until = :until, team_id = :team, #type = :type")
            .condition_expression("attribute_not_exists(lease_until) OR lease_until < :now OR lease_holder = :h")
            .expression_attribute_names("#type", "type")
            .expression_attribute_values(":h", s(holder))
            .expression_attribute_values(":until", n(until_ms))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":team", s(key.team.to_string()))
            .expression_attribute_values(":type", s("mr_report"))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => {
                let item = out.attributes.unwrap_or_default();
                if item.contains_key("report") { json(&item, "report").map(Some) } else { Ok(Some(Default::default())) }
            }
            Err(e) if is_conditional(&e) => Ok(None),
            Err(e) => Err(PortError::unavailable(e.into_service_error())),
        }
    }

    async fn save_report(
        &self,
        key: &crate::ports::ReportKey<'_>,
        holder: &str,
        state: &crate::domain::report::ReportState,
    ) -> Result<(), PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(children_pk(key.team, key.id)))
            .key("sk", s(report_sk(key.project_id, key.target_key)))
            .update_expression("SET report = :r REMOVE lease_holder, lease_until")
            .condition_expression("lease_holder = :h")
            .expression_attribute_values(":r", s(to_json(state)?))
            .expression_attribute_values(":h", s(holder))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // The lease ran out and another run took it: that run's state wins.
            Err(e) if is_conditional(&e) => Err(PortError::Conflict),
            Err(e) => Err(PortError::unavailable(e.into_service_error())),
        }
    }

    async fn take_note_budget(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        minute: i64,
        limit: u32,
    ) -> Result<bool, PortError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(children_pk(team, id)))
            .key("sk", s(format!("NOTES#{minute}")))
            .update_expression("ADD hits :one SET #ttl = :ttl, team_id = :team")
            .condition_expression("attribute_not_exists(hits) OR hits < :limit")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":limit", n(limit))
            .expression_attribute_values(":ttl", n(minute * 60 + NOTE_BUDGET_TTL_SECONDS))
            .expression_attribute_values(":team", s(team.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_conditional(&e) => Ok(false),
            Err(e) => Err(PortError::unavailable(e.into_service_error())),
        }
    }

    async fn downgrade(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        capability: &str,
        warning: &crate::domain::integration::Warning,
        now: OffsetDateTime,
    ) -> Result<(), PortError> {
        let warning_item = AttributeValue::M(HashMap::from([
            ("code".to_owned(), s(warning.code.clone())),
            ("message".to_owned(), s(warning.message.clone())),
        ]));
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(super::dynamodb::team_pk(team)))
            .key("sk", s(super::dynamodb::integration_sk(id)))
            .update_expression(
                "SET capabilities.#cap = :off, warnings = list_append(if_not_exists(warnings, :empty), :w), updated_at = :now",
            )
            .condition_expression("attribute_exists(pk) AND capabilities.#cap = :on")
            .expression_attribute_names("#cap", capability)
            .expression_attribute_values(":off", AttributeValue::Bool(false))
            .expression_attribute_values(":on", AttributeValue::Bool(true))
            .expression_attribute_values(":w", AttributeValue::L(vec![warning_item]))
            .expression_attribute_values(":empty", AttributeValue::L(vec![]))
            .expression_attribute_values(":now", s(rfc3339(now)))
            .send()
            .await;
        match result {
            // Already off (or the integration is gone): nothing to add.
            Ok(_) => Ok(()),
            Err(e) if is_conditional(&e) => Ok(()),
            Err(e) => Err(PortError::unavailable(e.into_service_error())),
        }
    }
}
