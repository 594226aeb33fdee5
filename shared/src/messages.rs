//! SQS message contracts. Producers and consumers import these same types; every message is
//! tagged with its type and carries a schema version so old messages stay readable.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::ids::{IntegrationId, TeamId};
use crate::domain::scan::{CommitSha, ScanTarget, ScanTrigger, scan_key};
use crate::domain::webhook::CancelReason;

/// Current schema version written by producers.
pub const MESSAGE_VERSION: u32 = 1;

/// Why a sync was requested.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncReason {
    /// First sync after connect.
    Connected,
    /// The token was rotated.
    TokenRotated,
    /// A person asked for it.
    Manual,
    /// The periodic schedule.
    Scheduled,
    /// Continuation of a checkpointed sync.
    Continuation,
}

/// Command: list the integration's projects and reconcile them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequested {
    /// Schema version.
    pub version: u32,
    /// Owning team; the consumer re-checks it against the stored integration.
    pub team_id: TeamId,
    /// Integration to sync.
    pub integration_id: IntegrationId,
    /// Why.
    pub reason: SyncReason,
    /// When the request was made.
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    /// Id the run will carry, when the requester already told someone (the sync route's 202).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_id: Option<String>,
}

/// Command: scan one commit of a tracked project (scan queue).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanRequested {
    /// Schema version.
    pub version: u32,
    /// Owning team; the worker re-checks it against the stored integration.
    pub team_id: TeamId,
    /// Integration whose token fetches the code.
    pub integration_id: IntegrationId,
    /// GitLab project id.
    pub project_id: u64,
    /// Merge request (iid and target branch) or branch.
    pub target: ScanTarget,
    /// The commit to scan; absent for a manual scan of a branch, whose head the worker reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_sha: Option<CommitSha>,
    /// The scan's id when the requester already handed it out (the api's 202).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_id: Option<String>,
    /// Why.
    pub trigger: ScanTrigger,
    /// The webhook delivery that asked for it (its deduplication key), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
    /// When the request was made.
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
}

impl ScanRequested {
    /// The key the worker deduplicates on: integration, project, MR iid or ref, head SHA. A
    /// manual scan of a branch head not yet known is its own key (the scan id).
    pub fn scan_key(&self) -> String {
        match &self.head_sha {
            Some(sha) => scan_key(&self.integration_id, self.project_id, &self.target, sha),
            None => format!(
                "{}:{}:{}:scan-{}",
                self.integration_id,
                self.project_id,
                self.target.key(),
                self.scan_id.as_deref().unwrap_or_default()
            ),
        }
    }
}

/// Command: drop pending scan work of a merge request that was merged or closed (scan queue).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanCancelled {
    /// Schema version.
    pub version: u32,
    /// Owning team.
    pub team_id: TeamId,
    /// Integration.
    pub integration_id: IntegrationId,
    /// GitLab project id.
    pub project_id: u64,
    /// The merge request's project-local id.
    pub merge_request_iid: u64,
    /// Merged or closed.
    pub reason: CancelReason,
    /// The webhook delivery that said so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
}

/// Why managed hooks are reconciled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HooksReason {
    /// Projects were tracked or untracked.
    Tracking,
    /// The webhook secret was rotated: every hook gets the new one.
    SecretRotated,
    /// The periodic check (drift, disabled hooks).
    Scheduled,
}

/// Command: make the integration's managed project hooks match its tracked projects (sync
/// queue; the sync function holds the GitLab token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksRequested {
    /// Schema version.
    pub version: u32,
    /// Owning team.
    pub team_id: TeamId,
    /// Integration.
    pub integration_id: IntegrationId,
    /// Why.
    pub reason: HooksReason,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
}

/// Every message the connector's queues carry. Never holds tokens or secrets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// See [`SyncRequested`] (sync queue).
    SyncRequested(SyncRequested),
    /// See [`ScanRequested`] (scan queue).
    ScanRequested(ScanRequested),
    /// See [`ScanCancelled`] (scan queue).
    ScanCancelled(ScanCancelled),
    /// See [`HooksRequested`] (sync queue).
    HooksRequested(HooksRequested),
}

impl Message {
    /// Short name for logs and SQS message attributes.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::SyncRequested(_) => "sync_requested",
            Message::ScanRequested(_) => "scan_requested",
            Message::ScanCancelled(_) => "scan_cancelled",
            Message::HooksRequested(_) => "hooks_requested",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_requested_round_trips_with_its_tag() {
        let msg = Message::SyncRequested(SyncRequested {
            version: MESSAGE_VERSION,
            team_id: TeamId::parse("team-a").expect("valid"),
            integration_id: IntegrationId::generate(),
            reason: SyncReason::Connected,
            requested_at: time::macros::datetime!(2026-11-22 10:00 UTC),
            sync_id: None,
        });
        let json = serde_json::to_value(&msg).expect("serialises");
        assert_eq!(json["type"], "sync_requested");
        assert_eq!(json["reason"], "connected");
        assert_eq!(json["requested_at"], "2026-11-22T10:00:00Z");
        let back: Message = serde_json::from_value(json).expect("parses");
        assert_eq!(back, msg);
    }

    #[test]
    fn scan_requests_round_trip_and_refuse_bad_commits() {
        let msg = Message::ScanRequested(ScanRequested {
            version: MESSAGE_VERSION,
            team_id: TeamId::parse("team-a").expect("valid"),
            integration_id: IntegrationId::parse("0123456789abcdef0123456789abcdef").expect("id"),
            project_id: 15,
            target: ScanTarget::MergeRequest { iid: 3, target_branch: "main".into() },
            head_sha: CommitSha::parse("da1560886d4f094c3e6c9ef40349f7d38b5d27d7"),
            scan_id: None,
            trigger: ScanTrigger::MergeRequest,
            delivery_id: Some("idem:abc".into()),
            requested_at: time::macros::datetime!(2026-12-02 10:00 UTC),
        });
        let json = serde_json::to_value(&msg).expect("serialises");
        assert_eq!(json["type"], "scan_requested");
        assert_eq!(json["target"], serde_json::json!({"kind": "merge_request", "iid": 3, "target_branch": "main"}));
        let back: Message = serde_json::from_value(json.clone()).expect("parses");
        assert_eq!(back, msg);
        let Message::ScanRequested(req) = &back else { panic!("kind") };
        assert_eq!(req.scan_key(), "0123456789abcdef0123456789abcdef:15:mr:3:da1560886d4f094c3e6c9ef40349f7d38b5d27d7");
        let mut bad = json;
        bad["head_sha"] = serde_json::json!("0000000000000000000000000000000000000000");
        assert!(serde_json::from_value::<Message>(bad).is_err());
    }

    #[test]
    fn unknown_fields_and_bad_ids_are_rejected() {
        let bad = r#"{"type":"sync_requested","version":1,"team_id":"t","integration_id":"nothex","reason":"manual","requested_at":"2026-11-22T10:00:00Z"}"#;
        assert!(serde_json::from_str::<Message>(bad).is_err());
        let extra = r#"{"type":"sync_requested","version":1,"team_id":"t","integration_id":"0123456789abcdef0123456789abcdef","reason":"manual","requested_at":"2026-11-22T10:00:00Z","token":"x"}"#;
        assert!(serde_json::from_str::<Message>(extra).is_err());
    }
}
