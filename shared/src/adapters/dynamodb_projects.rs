//! Projects and sync state of an integration in the single table, under the integration's
//! partition `TEAM#<team>#INTEGRATION#<id>`: `PROJECT#<id, 20 digits>` items and one `SYNC`
//! item holding the lease and the run records.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, PutRequest, WriteRequest};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::dynamodb::{batch_write, children_pk, query_partition, query_partition_each};
use crate::domain::ids::{IntegrationId, TeamId};
use crate::domain::project::{Project, ProjectSnapshot, StoredRef};
use crate::domain::sync::{Checkpoint, QueuedSync, SyncRun, SyncStatus};
use crate::ports::{PortError, ProjectPage, ProjectQuery, ProjectStore, ProjectWrite, SyncStateStore, TrackingResult};

/// Sort key of the sync state item.
const SYNC_SK: &str = "SYNC";

/// How long removed projects are kept by default (`REMOVED_PROJECT_RETENTION_DAYS`).
pub const DEFAULT_REMOVED_RETENTION: time::Duration = time::Duration::days(30);

/// The sparse `gsi1` partition holding an integration's tracked projects.
fn tracked_gsi_pk(children_pk: &str) -> String {
    format!("TRACKED#{children_pk}")
}

/// Sort key of a project; zero-padded so items sort by id.
pub fn project_sk(project_id: u64) -> String {
    format!("PROJECT#{project_id:020}")
}

/// Projects and sync state on DynamoDB.
#[derive(Clone, Debug)]
pub struct DynamoProjectStore {
    client: Client,
    table: String,
    removed_retention: time::Duration,
}

impl DynamoProjectStore {
    /// Wraps a client and a table name; removed projects are kept for
    /// [`DEFAULT_REMOVED_RETENTION`].
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), removed_retention: DEFAULT_REMOVED_RETENTION }
    }

    /// An update of an integration's `SYNC` item (lease, runs, queued request, checkpoint).
    fn update_sync(&self, team: &TeamId, id: &IntegrationId) -> UpdateItemFluentBuilder {
        let [(k1, v1), (k2, v2)] = sync_key(team, id);
        self.client.update_item().table_name(&self.table).key(k1, v1).key(k2, v2)
    }

    /// How long a removed project's item is kept before the table's TTL purges it.
    pub fn with_removed_retention(mut self, retention: time::Duration) -> Self {
        self.removed_retention = retention;
        self
    }

    fn snapshot_values(s: &ProjectSnapshot, sync_id: &str) -> Vec<(&'static str, AttributeValue)> {
        let opt = |v: &Option<String>| v.clone().map_or(AttributeValue::Null(true), AttributeValue::S);
        vec![
            ("project_id", AttributeValue::N(s.id.to_string())),
            ("path_with_namespace", AttributeValue::S(s.path_with_namespace.clone())),
            ("path_lower", AttributeValue::S(s.path_with_namespace.to_lowercase())),
            ("web_url", AttributeValue::S(s.web_url.clone())),
            ("default_branch", opt(&s.default_branch)),
            ("visibility", opt(&s.visibility)),
            ("archived", AttributeValue::Bool(s.archived)),
            ("empty_repo", AttributeValue::Bool(s.empty_repo)),
            ("last_activity_at", opt(&s.last_activity_at)),
            ("fingerprint", AttributeValue::S(s.fingerprint())),
            ("sync_id", AttributeValue::S(sync_id.to_owned())),
        ]
    }

    async fn put_batch(&self, items: Vec<HashMap<String, AttributeValue>>) -> Result<u64, PortError> {
        let mut requests = Vec::with_capacity(items.len());
        for item in items {
            let put = PutRequest::builder().set_item(Some(item)).build().map_err(PortError::unavailable)?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        batch_write(&self.client, &self.table, requests).await
    }

    /// Tracked projects that still exist, counted in their sparse index partition (eventually
    /// consistent: two changes racing for the last places may both get them).
    async fn count_tracked(&self, pk: &str) -> Result<u64, PortError> {
        let mut count = 0u64;
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("gsi1")
                .key_condition_expression("gsi1pk = :g")
                .filter_expression("attribute_not_exists(removed_at)")
                .expression_attribute_values(":g", AttributeValue::S(tracked_gsi_pk(pk)))
                .select(aws_sdk_dynamodb::types::Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| PortError::unavailable(e.into_service_error()))?;
            count += out.count.max(0) as u64;
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(count);
            }
        }
    }

    async fn update_snapshot(&self, pk: &str, s: &ProjectSnapshot, sync_id: &str) -> Result<(), PortError> {
        let values = Self::snapshot_values(s, sync_id);
        let mut expr = Vec::new();
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk.to_owned()))
            .key("sk", AttributeValue::S(project_sk(s.id)));
        for (i, (name, value)) in values.into_iter().enumerate() {
            expr.push(format!("#a{i} = :v{i}"));
            req = req
                .expression_attribute_names(format!("#a{i}"), name)
                .expression_attribute_values(format!(":v{i}"), value);
        }
        // Tracking and languages are the team's and the sync's own data: never overwritten here.
        let update = format!(
            "SET {} , #type = :type, tracked = if_not_exists(tracked, :false) REMOVE removed_at, #ttl",
            expr.join(", ")
        );
        req.update_expression(update)
            .expression_attribute_names("#type", "type")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":type", AttributeValue::S("project".into()))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .send()
            .await
            .map_err(|e| PortError::unavailable(e.into_service_error()))?;
        Ok(())
    }
}

#[async_trait]
impl ProjectStore for DynamoProjectStore {
    #[tracing::instrument(skip_all, fields(integration_id = %id))]
    async fn stored_refs(&self, team: &TeamId, id: &IntegrationId) -> Result<HashMap<u64, StoredRef>, PortError> {
        let mut out = HashMap::new();
        query_partition_each(
            &self.client,
            &self.table,
            children_pk(team, id),
            Some("PROJECT#"),
            Some("project_id, fingerprint, removed_at, tracked, details_fingerprint, empty_repo"),
            &mut |item| {
                let Some(pid) = item.get("project_id").and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<u64>().ok())
                else {
                    return;
                };
                let removed = item.get("removed_at").is_some_and(|v| v.as_s().is_ok());
                // A removed project only needs to be known as stored (it is rewritten in full
                // if it comes back): no strings kept, so projects that no longer exist cost a
                // few bytes each until the TTL purges them.
                let text = |k: &str| (!removed).then(|| item.get(k).and_then(|v| v.as_s().ok()).cloned()).flatten();
                out.insert(
                    pid,
                    StoredRef {
                        fingerprint: text("fingerprint").unwrap_or_default(),
                        removed,
                        tracked: item.get("tracked").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
                        details_fingerprint: text("details_fingerprint"),
                        empty_repo: item.get("empty_repo").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
                    },
                );
            },
        )
        .await?;
        Ok(out)
    }

    #[tracing::instrument(skip_all, fields(integration_id = %id, writes = writes.len()))]
    async fn write_projects(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        sync_id: &str,
        writes: &[ProjectWrite],
    ) -> Result<u64, PortError> {
        let pk = children_pk(team, id);
        let mut new_items = Vec::new();
        let mut calls = 0;
        for write in writes {
            match write {
                ProjectWrite::Add(s) => {
                    let mut item: HashMap<String, AttributeValue> =
                        Self::snapshot_values(s, sync_id).into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                    item.insert("pk".into(), AttributeValue::S(pk.clone()));
                    item.insert("sk".into(), AttributeValue::S(project_sk(s.id)));
                    item.insert("type".into(), AttributeValue::S("project".into()));
                    item.insert("tracked".into(), AttributeValue::Bool(false));
                    new_items.push(item);
                }
                ProjectWrite::Update(s) => {
                    self.update_snapshot(&pk, s, sync_id).await?;
                    calls += 1;
                }
                ProjectWrite::Remove(pid, at) => {
                    self.client
                        .update_item()
                        .table_name(&self.table)
                        .key("pk", AttributeValue::S(pk.clone()))
                        .key("sk", AttributeValue::S(project_sk(*pid)))
                        // Purged by the table's TTL once the retention period has passed,
                        // unless the project comes back first (which removes the TTL).
                        .update_expression("SET removed_at = :at, sync_id = :sync, #ttl = :ttl")
                        .condition_expression("attribute_exists(pk)")
                        .expression_attribute_names("#ttl", "ttl")
                        .expression_attribute_values(
                            ":ttl",
                            AttributeValue::N(
                                (OffsetDateTime::now_utc() + self.removed_retention).unix_timestamp().to_string(),
                            ),
                        )
                        .expression_attribute_values(":at", AttributeValue::S(at.clone()))
                        .expression_attribute_values(":sync", AttributeValue::S(sync_id.to_owned()))
                        .send()
                        .await
                        .map_err(|e| PortError::unavailable(e.into_service_error()))?;
                    calls += 1;
                }
            }
        }
        calls += self.put_batch(new_items).await?;
        Ok(calls)
    }

    #[tracing::instrument(skip_all, fields(integration_id = %id, project_id))]
    async fn set_details(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        project_id: u64,
        languages: &std::collections::BTreeMap<String, f64>,
        fingerprint: &str,
    ) -> Result<(), PortError> {
        let json = serde_json::to_string(languages).map_err(|e| PortError::Corrupt(e.to_string()))?;
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(children_pk(team, id)))
            .key("sk", AttributeValue::S(project_sk(project_id)))
            .update_expression("SET languages = :l, details_fingerprint = :f")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":l", AttributeValue::S(json))
            .expression_attribute_values(":f", AttributeValue::S(fingerprint.to_owned()))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Err(PortError::NotFound)
            }
            Err(e) => Err(PortError::unavailable(e.into_service_error())),
        }
    }

    #[tracing::instrument(skip_all, fields(integration_id = %id))]
    async fn list_projects(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        query: &ProjectQuery,
    ) -> Result<ProjectPage, PortError> {
        let limit = query.limit.clamp(1, 100) as usize;
        let from = project_sk(query.after.map_or(0, |a| a.saturating_add(1)));
        let mut filters = vec!["attribute_not_exists(removed_at)".to_owned()];
        if query.tracked.is_some() {
            filters.push("tracked = :tracked".into());
        }
        if query.search.is_some() {
            filters.push("contains(path_lower, :q)".into());
        }
        let mut items = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let mut req = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":pk", AttributeValue::S(children_pk(team, id)))
                .expression_attribute_values(":from", AttributeValue::S(from.clone()))
                .expression_attribute_values(":to", AttributeValue::S(project_sk(u64::MAX)))
                .filter_expression(filters.join(" AND "))
                .limit(200)
                .set_exclusive_start_key(start);
            if let Some(t) = query.tracked {
                req = req.expression_attribute_values(":tracked", AttributeValue::Bool(t));
            }
            if let Some(q) = &query.search {
                req = req.expression_attribute_values(":q", AttributeValue::S(q.to_lowercase()));
            }
            let page = req.send().await.map_err(|e| PortError::unavailable(e.into_service_error()))?;
            for item in page.items.unwrap_or_default() {
                if let Some(project) = project_from_item(&item) {
                    items.push(project);
                    if items.len() == limit {
                        let next_after = items.last().map(|p| p.snapshot.id);
                        return Ok(ProjectPage { items, next_after });
                    }
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(ProjectPage { items, next_after: None });
            }
        }
    }

    #[tracing::instrument(skip_all, fields(integration_id = %id))]
    async fn hook_targets(
        &self,
        team: &TeamId,
        id: &IntegrationId,
    ) -> Result<Vec<crate::domain::project::HookTarget>, PortError> {
        let mut out = Vec::new();
        query_partition_each(
            &self.client,
            &self.table,
            children_pk(team, id),
            Some("PROJECT#"),
            Some("project_id, tracked, removed_at, hook"),
            &mut |item| {
                let Some(project_id) =
                    item.get("project_id").and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<u64>().ok())
                else {
                    return;
                };
                let tracked = item.get("tracked").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false);
                let removed = item.get("removed_at").is_some_and(|v| v.as_s().is_ok());
                let hook_id = item
                    .get("hook")
                    .and_then(|v| v.as_s().ok())
                    .and_then(|h| serde_json::from_str::<crate::domain::project::HookRecord>(h).ok())
                    .and_then(|h| h.hook_id);
                if (tracked && !removed) || hook_id.is_some() {
                    out.push(crate::domain::project::HookTarget {
                        project_id,
                        wants_hook: tracked && !removed,
                        hook_id,
                    });
                }
            },
        )
        .await?;
        Ok(out)
    }

    #[tracing::instrument(skip_all, fields(integration_id = %id, project_id))]
    async fn set_hook(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        project_id: u64,
        hook: Option<&crate::domain::project::HookRecord>,
    ) -> Result<(), PortError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(children_pk(team, id)))
            .key("sk", AttributeValue::S(project_sk(project_id)))
            .condition_expression("attribute_exists(pk)");
        let request = match hook {
            Some(h) => request.update_expression("SET hook = :h").expression_attribute_values(
                ":h",
                AttributeValue::S(serde_json::to_string(h).map_err(|e| PortError::Corrupt(e.to_string()))?),
            ),
            None => request.update_expression("REMOVE hook"),
        };
        match request.send().await {
            Ok(_) => Ok(()),
            // The project item is gone (integration deleted): nothing to record.
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(()),
            Err(e) => Err(PortError::unavailable(e.into_service_error())),
        }
    }

    #[tracing::instrument(skip_all, fields(integration_id = %id, track = track.len(), untrack = untrack.len()))]
    async fn set_tracking(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        track: &[u64],
        untrack: &[u64],
        max_tracked: Option<u64>,
    ) -> Result<TrackingResult, PortError> {
        let project_ids: Vec<u64> = track.iter().chain(untrack.iter()).copied().collect();
        let project_ids = project_ids.as_slice();
        let pk = children_pk(team, id);
        let mut found: std::collections::HashSet<u64> = std::collections::HashSet::new();
        let mut tracked_now: std::collections::HashSet<u64> = std::collections::HashSet::new();
        for chunk in project_ids.chunks(100) {
            let mut keys = Vec::new();
            let mut unique = std::collections::HashSet::new();
            for pid in chunk.iter().filter(|p| unique.insert(**p)) {
                keys.push(HashMap::from([
                    ("pk".to_owned(), AttributeValue::S(pk.clone())),
                    ("sk".to_owned(), AttributeValue::S(project_sk(*pid))),
                ]));
            }
            let mut request = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .projection_expression("project_id, removed_at, tracked")
                    .consistent_read(true)
                    .build()
                    .map_err(PortError::unavailable)?,
            );
            for attempt in 0..8u32 {
                let Some(keys) = request.take() else { break };
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, keys)
                    .send()
                    .await
                    .map_err(|e| PortError::unavailable(e.into_service_error()))?;
                for item in out.responses.unwrap_or_default().remove(&self.table).unwrap_or_default() {
                    if item.get("removed_at").is_none_or(|v| v.is_null())
                        && let Some(pid) =
                            item.get("project_id").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok())
                    {
                        found.insert(pid);
                        if item.get("tracked").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false) {
                            tracked_now.insert(pid);
                        }
                    }
                }
                request = out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)).filter(|k| !k.keys.is_empty());
                if request.is_some() {
                    tokio::time::sleep(super::dynamodb::unprocessed_retry_wait(attempt)).await;
                }
            }
        }
        let mut unknown: Vec<u64> = project_ids.iter().copied().filter(|p| !found.contains(p)).collect();
        if !unknown.is_empty() {
            unknown.sort_unstable();
            unknown.dedup();
            return Ok(TrackingResult::Unknown(unknown));
        }
        if let Some(max) = max_tracked {
            let added = track.iter().filter(|p| !tracked_now.contains(p)).count() as u64;
            let dropped = untrack.iter().filter(|p| tracked_now.contains(p)).count() as u64;
            let would_track = (self.count_tracked(&pk).await? + added).saturating_sub(dropped);
            if added > 0 && would_track > max {
                return Ok(TrackingResult::OverLimit { would_track, max });
            }
        }
        let flags = track.iter().map(|p| (*p, true)).chain(untrack.iter().map(|p| (*p, false)));
        for (pid, tracked) in flags.collect::<HashMap<u64, bool>>() {
            let req = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", AttributeValue::S(pk.clone()))
                .key("sk", AttributeValue::S(project_sk(pid)))
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_values(":t", AttributeValue::Bool(tracked));
            // Tracked projects also sit in a sparse index partition, which is what they are
            // counted by.
            let req = if tracked {
                req.update_expression("SET tracked = :t, gsi1pk = :g, gsi1sk = :s")
                    .expression_attribute_values(":g", AttributeValue::S(tracked_gsi_pk(&pk)))
                    .expression_attribute_values(":s", AttributeValue::S(project_sk(pid)))
            } else {
                req.update_expression("SET tracked = :t REMOVE gsi1pk, gsi1sk")
            };
            req.send().await.map_err(|e| PortError::unavailable(e.into_service_error()))?;
        }
        Ok(TrackingResult::Done)
    }
}

/// Reads a project item back into the domain type; malformed items are skipped.
pub(crate) fn project_from_item(item: &HashMap<String, AttributeValue>) -> Option<Project> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let flag = |k: &str| item.get(k).and_then(|v| v.as_bool().ok()).copied().unwrap_or(false);
    let languages = text("languages").and_then(|l| serde_json::from_str(&l).ok());
    let snapshot = ProjectSnapshot {
        id: item.get("project_id")?.as_n().ok()?.parse().ok()?,
        path_with_namespace: text("path_with_namespace")?,
        web_url: text("web_url")?,
        default_branch: text("default_branch"),
        visibility: text("visibility"),
        archived: flag("archived"),
        empty_repo: flag("empty_repo"),
        last_activity_at: text("last_activity_at"),
    };
    Some(Project {
        fingerprint: text("fingerprint").unwrap_or_default(),
        tracked: flag("tracked"),
        languages,
        removed_at: text("removed_at"),
        sync_id: text("sync_id").unwrap_or_default(),
        webhook: crate::domain::project::ProjectWebhook {
            last_delivery_at: text("last_delivery_at"),
            hook: text("hook").and_then(|h| serde_json::from_str(&h).ok()),
        },
        snapshot,
    })
}

fn sync_key(team: &TeamId, id: &IntegrationId) -> [(String, AttributeValue); 2] {
    [("pk".into(), AttributeValue::S(children_pk(team, id))), ("sk".into(), AttributeValue::S(SYNC_SK.into()))]
}

#[async_trait]
impl SyncStateStore for DynamoProjectStore {
    #[tracing::instrument(skip_all, fields(integration_id = %id))]
    async fn acquire_lease(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        holder: &str,
        until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, PortError> {
        let result = self
            .update_sync(team, id)
            .update_expression("SET lease_holder = :me, lease_until = :until")
            .condition_expression("attribute_not_exists(lease_until) OR lease_until < :now OR lease_holder = :me")
            .expression_attribute_values(":me", AttributeValue::S(holder.to_owned()))
            .expression_attribute_values(":until", AttributeValue::N(until.unix_timestamp().to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now.unix_timestamp().to_string()))
            .send()
            .await;
        applied(result)
    }

    #[tracing::instrument(skip_all, fields(integration_id = %id))]
    async fn release_lease(&self, team: &TeamId, id: &IntegrationId, holder: &str) -> Result<(), PortError> {
        let result = self
            .update_sync(team, id)
            .update_expression("REMOVE lease_holder, lease_until")
            .condition_expression("lease_holder = :me")
            .expression_attribute_values(":me", AttributeValue::S(holder.to_owned()))
            .send()
            .await;
        // Someone else took over after our lease expired: theirs now.
        applied(result).map(|_| ())
    }

    #[tracing::instrument(skip_all, fields(integration_id = %id))]
    async fn save_run(&self, team: &TeamId, id: &IntegrationId, run: &SyncRun) -> Result<(), PortError> {
        let json = serde_json::to_string(run).map_err(|e| PortError::Corrupt(e.to_string()))?;
        let req = self.update_sync(team, id);
        let req = if run.finished_at.is_some() {
            req.update_expression("SET last_run = :run REMOVE current_run")
        } else {
            // A run that goes on covers the request that queued it.
            req.update_expression("SET current_run = :run REMOVE queued_run")
        };
        req.expression_attribute_values(":run", AttributeValue::S(json))
            .send()
            .await
            .map_err(|e| PortError::unavailable(e.into_service_error()))?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(integration_id = %id))]
    async fn sync_status(&self, team: &TeamId, id: &IntegrationId) -> Result<SyncStatus, PortError> {
        let Some(item) = self.sync_item(team, id).await? else { return Ok(SyncStatus::default()) };
        let run = |k: &str| -> Result<Option<SyncRun>, PortError> {
            item.get(k)
                .and_then(|v| v.as_s().ok())
                .map(|s| serde_json::from_str(s).map_err(|e| PortError::Corrupt(e.to_string())))
                .transpose()
        };
        let queued = item
            .get("queued_run")
            .and_then(|v| v.as_s().ok())
            .map(|s| serde_json::from_str(s).map_err(|e| PortError::Corrupt(e.to_string())))
            .transpose()?;
        let lease_until = item.get("lease_until").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok());
        let last_requested_at = item.get("last_requested_at").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok());
        Ok(SyncStatus { current: run("current_run")?, last: run("last_run")?, queued, lease_until, last_requested_at })
    }

    #[tracing::instrument(skip_all, fields(integration_id = %id))]
    async fn queue_request(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        queued: &QueuedSync,
        now: OffsetDateTime,
        cooldown: Option<std::time::Duration>,
    ) -> Result<bool, PortError> {
        let json = serde_json::to_string(queued).map_err(|e| PortError::Corrupt(e.to_string()))?;
        let req = self.update_sync(team, id).expression_attribute_values(":q", AttributeValue::S(json));
        let req = match cooldown {
            None => req.update_expression("SET queued_run = :q"),
            Some(cooldown) => {
                let cutoff = now.unix_timestamp() - i64::try_from(cooldown.as_secs()).unwrap_or(i64::MAX);
                req.update_expression("SET queued_run = :q, last_requested_at = :now")
                    .condition_expression("attribute_not_exists(last_requested_at) OR last_requested_at <= :cutoff")
                    .expression_attribute_values(":now", AttributeValue::N(now.unix_timestamp().to_string()))
                    .expression_attribute_values(":cutoff", AttributeValue::N(cutoff.to_string()))
            }
        };
        applied(req.send().await)
    }

    #[tracing::instrument(skip_all, fields(integration_id = %id))]
    async fn clear_queued(&self, team: &TeamId, id: &IntegrationId, queued: &QueuedSync) -> Result<(), PortError> {
        let json = serde_json::to_string(queued).map_err(|e| PortError::Corrupt(e.to_string()))?;
        let result = self
            .update_sync(team, id)
            .update_expression("REMOVE queued_run, last_requested_at")
            .condition_expression("queued_run = :q")
            .expression_attribute_values(":q", AttributeValue::S(json))
            .send()
            .await;
        applied(result).map(|_| ())
    }
}

/// Whether a conditional update was applied: `Ok(false)` when its condition failed.
fn applied<T>(result: Result<T, SdkError<UpdateItemError>>) -> Result<bool, PortError> {
    match result {
        Ok(_) => Ok(true),
        Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(false),
        Err(e) => Err(PortError::unavailable(e.into_service_error())),
    }
}

/// RFC 3339 text of a time (for `removed_at` and run records).
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Ids per checkpoint part: at most 10 bytes each encoded, so a part stays under 100 KB.
const CHECKPOINT_IDS_PER_PART: usize = 10_000;

#[async_trait]
impl crate::ports::CheckpointStore for DynamoProjectStore {
    #[tracing::instrument(skip_all, fields(integration_id = %id))]
    async fn save_checkpoint(
        &self,
        team: &TeamId,
        id: &IntegrationId,
        checkpoint: &Checkpoint,
    ) -> Result<u32, PortError> {
        let pk = children_pk(team, id);
        // Each part is decodable on its own and stays well under the 400 KB item limit.
        let mut parts = checkpoint.parts;
        for chunk in checkpoint.seen.chunks(CHECKPOINT_IDS_PER_PART) {
            let bytes = crate::domain::sync::encode_ids(chunk);
            self.client
                .put_item()
                .table_name(&self.table)
                .item("pk", AttributeValue::S(pk.clone()))
                .item("sk", AttributeValue::S(format!("CHECKPOINT#{parts:06}")))
                .item("seen", AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(bytes)))
                .send()
                .await
                .map_err(|e| PortError::unavailable(e.into_service_error()))?;
            parts += 1;
        }
        let stored = Checkpoint { parts, seen: Vec::new(), ..checkpoint.clone() };
        let json = serde_json::to_string(&stored).map_err(|e| PortError::Corrupt(e.to_string()))?;
        self.update_sync(team, id)
            .update_expression("SET #cp = :cp")
            .expression_attribute_names("#cp", "checkpoint")
            .expression_attribute_values(":cp", AttributeValue::S(json))
            .send()
            .await
            .map_err(|e| PortError::unavailable(e.into_service_error()))?;
        Ok(parts)
    }

    #[tracing::instrument(skip_all, fields(integration_id = %id))]
    async fn load_checkpoint(&self, team: &TeamId, id: &IntegrationId) -> Result<Option<Checkpoint>, PortError> {
        let item = self.sync_item(team, id).await?;
        let Some(json) = item.as_ref().and_then(|i| i.get("checkpoint")).and_then(|v| v.as_s().ok()) else {
            return Ok(None);
        };
        let mut checkpoint: Checkpoint = serde_json::from_str(json).map_err(|e| PortError::Corrupt(e.to_string()))?;
        // Parts past the recorded count are leftovers of a save that did not finish.
        let mut found = 0u32;
        for item in self.query_checkpoint_parts(team, id).await? {
            let part = item.get("sk").and_then(|v| v.as_s().ok()).and_then(|sk| sk.strip_prefix("CHECKPOINT#"));
            if part.and_then(|n| n.parse::<u32>().ok()).is_none_or(|n| n >= checkpoint.parts) {
                continue;
            }
            let Some(AttributeValue::B(blob)) = item.get("seen") else {
                return Err(PortError::Corrupt("checkpoint part without ids".into()));
            };
            let ids = crate::domain::sync::decode_ids(blob.as_ref())
                .ok_or_else(|| PortError::Corrupt("checkpoint ids".into()))?;
            checkpoint.seen.extend(ids);
            found += 1;
        }
        if found != checkpoint.parts {
            return Err(PortError::Corrupt("checkpoint parts missing".into()));
        }
        Ok(Some(checkpoint))
    }

    #[tracing::instrument(skip_all, fields(integration_id = %id))]
    async fn clear_checkpoint(&self, team: &TeamId, id: &IntegrationId) -> Result<(), PortError> {
        let pk = children_pk(team, id);
        let parts = self.query_checkpoint_parts(team, id).await?;
        let mut requests = Vec::new();
        for item in parts {
            if let Some(AttributeValue::S(sk)) = item.get("sk") {
                let delete = aws_sdk_dynamodb::types::DeleteRequest::builder()
                    .key("pk", AttributeValue::S(pk.clone()))
                    .key("sk", AttributeValue::S(sk.clone()))
                    .build()
                    .map_err(PortError::unavailable)?;
                requests.push(WriteRequest::builder().delete_request(delete).build());
            }
        }
        batch_write(&self.client, &self.table, requests).await?;
        self.update_sync(team, id)
            .update_expression("REMOVE #cp")
            .expression_attribute_names("#cp", "checkpoint")
            .send()
            .await
            .map_err(|e| PortError::unavailable(e.into_service_error()))?;
        Ok(())
    }
}

impl DynamoProjectStore {
    async fn query_checkpoint_parts(
        &self,
        team: &TeamId,
        id: &IntegrationId,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, PortError> {
        query_partition(&self.client, &self.table, children_pk(team, id), Some("CHECKPOINT#"), None).await
    }

    /// The integration's `SYNC` item (lease, runs, checkpoint), read consistently.
    async fn sync_item(
        &self,
        team: &TeamId,
        id: &IntegrationId,
    ) -> Result<Option<HashMap<String, AttributeValue>>, PortError> {
        let [(k1, v1), (k2, v2)] = sync_key(team, id);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(k1, v1)
            .key(k2, v2)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| PortError::unavailable(e.into_service_error()))?;
        Ok(out.item)
    }
}
