//! Sync runs: what one pass over an integration's projects did, as shown by the sync status
//! route and kept with the integration.

use serde::{Deserialize, Serialize};

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Listing and writing.
    Running,
    /// Every project was listed and reconciled.
    Succeeded,
    /// Stopped with an error (see `error`).
    Failed,
}

/// One sync run's record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRun {
    /// Id of the run.
    pub sync_id: String,
    /// State.
    pub state: Option<RunState>,
    /// Why it ran (`connected`, `scheduled`, ...).
    pub reason: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339, once finished.
    pub finished_at: Option<String>,
    /// Projects listed.
    pub seen: u64,
    /// New projects written.
    pub added: u64,
    /// Changed projects written.
    pub updated: u64,
    /// Projects marked removed.
    pub removed: u64,
    /// Projects listed without change.
    pub unchanged: u64,
    /// Listed projects skipped as invalid (unsafe path and the like).
    pub skipped: u64,
    /// GitLab requests.
    pub requests: u64,
    /// Retries after 429.
    pub rate_limited: u64,
    /// DynamoDB write calls.
    pub write_calls: u64,
    /// Stable error code when failed.
    pub error: Option<String>,
    /// One sentence for a person when failed.
    pub error_message: Option<String>,
}

/// Current and last run of an integration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// The run in progress, if any.
    pub current: Option<SyncRun>,
    /// The last finished run.
    pub last: Option<SyncRun>,
}

/// Where a pass stands, saved every few pages and when an invocation runs out of time, so the
/// next invocation (a continuation, or a redelivery after a crash) continues instead of starting
/// over.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The run so far (counts keep adding up across invocations).
    pub run: SyncRun,
    /// Id ranges still to list, each from its last cursor.
    pub ranges: Vec<(u64, Option<u64>)>,
    /// Parts of the seen-id list stored before this checkpoint. Required: a checkpoint without
    /// it is of an older layout and is discarded rather than resumed with no seen ids.
    pub parts: u32,
    /// Loaded: every id listed so far in the pass (needed to decide removals at its end).
    /// Saved: only the ids listed since the previous checkpoint, stored as new parts.
    #[serde(skip)]
    pub seen: Vec<u64>,
}

/// Sorted ids as delta-encoded LEB128 varints: about two bytes an id for dense id spaces.
pub fn encode_ids(ids: &[u64]) -> Vec<u8> {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = Vec::with_capacity(sorted.len() * 2);
    let mut previous = 0u64;
    for id in sorted {
        let mut delta = id - previous;
        previous = id;
        loop {
            let byte = (delta & 0x7f) as u8;
            delta >>= 7;
            if delta == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    out
}

/// Inverse of [`encode_ids`]; `None` for malformed input.
pub fn decode_ids(bytes: &[u8]) -> Option<Vec<u64>> {
    let mut ids = Vec::new();
    let (mut value, mut shift, mut previous) = (0u64, 0u32, 0u64);
    for &byte in bytes {
        if shift > 63 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            previous = previous.checked_add(value)?;
            ids.push(previous);
            value = 0;
            shift = 0;
        } else {
            shift += 7;
        }
    }
    (shift == 0).then_some(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_lists_round_trip_compactly() {
        let ids: Vec<u64> = (0..10_000u64).map(|i| 1_000_000 + i * 3).chain([u64::MAX - 1, 7]).collect();
        let bytes = encode_ids(&ids);
        assert!(bytes.len() < 10_100 + 30, "{} bytes", bytes.len());
        let mut expected = ids;
        expected.sort_unstable();
        assert_eq!(decode_ids(&bytes), Some(expected));
        assert_eq!(decode_ids(&[0x80]), None);
        assert_eq!(decode_ids(&[]), Some(vec![]));
    }

    #[test]
    fn a_checkpoint_of_the_older_layout_does_not_load() {
        let run = serde_json::to_value(SyncRun::default()).expect("run");
        let old = serde_json::json!({ "run": run, "ranges": [[500, null]] });
        assert!(serde_json::from_value::<Checkpoint>(old.clone()).is_err(), "no parts: discarded, not resumed");
        let mut current = old;
        current["parts"] = 2.into();
        let loaded: Checkpoint = serde_json::from_value(current).expect("current layout");
        assert_eq!((loaded.parts, loaded.ranges), (2, vec![(500, None)]));
    }
}
