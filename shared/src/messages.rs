//! SQS message contracts. Producers and consumers import these same types; every message is
//! tagged with its type and carries a schema version so old messages stay readable.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::ids::{IntegrationId, TeamId};

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

/// Every message the connector's queues carry. Never holds tokens or secrets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// See [`SyncRequested`].
    SyncRequested(SyncRequested),
}

impl Message {
    /// Short name for logs and SQS message attributes.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::SyncRequested(_) => "sync_requested",
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
    fn unknown_fields_and_bad_ids_are_rejected() {
        let bad = r#"{"type":"sync_requested","version":1,"team_id":"t","integration_id":"nothex","reason":"manual","requested_at":"2026-11-22T10:00:00Z"}"#;
        assert!(serde_json::from_str::<Message>(bad).is_err());
        let extra = r#"{"type":"sync_requested","version":1,"team_id":"t","integration_id":"0123456789abcdef0123456789abcdef","reason":"manual","requested_at":"2026-11-22T10:00:00Z","token":"x"}"#;
        assert!(serde_json::from_str::<Message>(extra).is_err());
    }
}
