//! Sync runs: what one pass over an integration's projects did, as shown by the sync status
//! route and kept with the integration.

use serde::{Deserialize, Serialize};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A run in progress that has not shown progress for this long, and holds no live lease, died
/// (its invocation crashed or its continuation was lost): it is shown as abandoned and no
/// longer covers new requests. Progress is saved every few pages and at every checkpoint.
pub const ABANDONED_AFTER: time::Duration = time::Duration::minutes(15);

/// A queued request that no run has picked up for this long no longer covers new requests (its
/// message may have been lost); it is still shown as queued.
pub const QUEUED_COVERS_FOR: time::Duration = time::Duration::minutes(15);

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Requested, not started yet (shown only; never stored on a run).
    Queued,
    /// Listing and writing.
    Running,
    /// Every project was listed and reconciled.
    Succeeded,
    /// Stopped with an error (see `error`).
    Failed,
    /// Stopped without finishing: no progress and no live lease (shown only).
    Abandoned,
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
    /// RFC 3339: when the run was requested (manual requests), shown with `queued`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<String>,
    /// RFC 3339: the last time the run saved progress (a heartbeat while running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// Project pages received from GitLab.
    #[serde(default)]
    pub pages: u64,
    /// Milliseconds spent listing, over every invocation of the pass.
    #[serde(default)]
    pub listing_ms: u64,
    /// Projects the instance is estimated to list (where its id space allows an estimate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_projects: Option<u64>,
}

impl SyncRun {
    /// Pages per second of listing so far.
    pub fn pages_per_second(&self) -> Option<f64> {
        (self.listing_ms > 0).then(|| (self.pages as f64 * 1000.0 / self.listing_ms as f64 * 10.0).round() / 10.0)
    }
}

/// A sync requested (through the API, by connect or by a rotation) and not started yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedSync {
    /// The id the run will carry.
    pub sync_id: String,
    /// Why (`manual`, `connected`, `token_rotated`).
    pub reason: String,
    /// RFC 3339.
    pub requested_at: String,
}

impl QueuedSync {
    /// A request made at `now`, with a fresh id.
    pub fn new(reason: &str, now: OffsetDateTime) -> Self {
        Self {
            sync_id: hex::encode(rand::random::<[u8; 8]>()),
            reason: reason.to_owned(),
            requested_at: now.format(&Rfc3339).unwrap_or_default(),
        }
    }
}

/// Current and last run of an integration, as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// The run in progress, if any (possibly one that died: see [`SyncStatus::view`]).
    pub current: Option<SyncRun>,
    /// The last finished run.
    pub last: Option<SyncRun>,
    /// A requested run not started yet.
    #[serde(default)]
    pub queued: Option<QueuedSync>,
    /// Until when (Unix seconds) a sync invocation holds the integration's lease.
    #[serde(default)]
    pub lease_until: Option<i64>,
    /// When (Unix seconds) a sync was last requested through the API (the cooldown's start).
    #[serde(default)]
    pub last_requested_at: Option<i64>,
}

/// What the status route shows: the run that is queued or going, and the last one that is not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncView {
    /// Queued or running.
    pub current: Option<SyncRun>,
    /// Succeeded, failed or abandoned.
    pub last: Option<SyncRun>,
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

impl SyncStatus {
    /// Whether the stored current run has died: no live lease and no progress for
    /// [`ABANDONED_AFTER`].
    pub fn current_is_abandoned(&self, now: OffsetDateTime) -> bool {
        let Some(run) = &self.current else { return false };
        let leased = self.lease_until.is_some_and(|until| until > now.unix_timestamp());
        let heartbeat = run.updated_at.as_deref().or(Some(run.started_at.as_str())).and_then(parse_time);
        !leased && heartbeat.is_none_or(|at| now - at > ABANDONED_AFTER)
    }

    /// The queued request, unless a run that started after it covers it.
    fn pending(&self) -> Option<&QueuedSync> {
        let queued = self.queued.as_ref()?;
        let requested = parse_time(&queued.requested_at)?;
        let started_after = |run: &SyncRun| parse_time(&run.started_at).is_some_and(|s| s >= requested);
        let covered = self.current.as_ref().is_some_and(started_after) || self.last.as_ref().is_some_and(started_after);
        (!covered).then_some(queued)
    }

    /// The status as shown at `now`: a dead run moves to `last` as `abandoned`; a pending
    /// request shows as a `queued` current run.
    pub fn view(&self, now: OffsetDateTime) -> SyncView {
        let mut view = SyncView { current: None, last: self.last.clone() };
        match &self.current {
            Some(run) if self.current_is_abandoned(now) => {
                view.last = Some(SyncRun { state: Some(RunState::Abandoned), ..run.clone() });
            }
            Some(run) => view.current = Some(run.clone()),
            None => {}
        }
        if view.current.is_none() {
            view.current = self.pending().map(|q| SyncRun {
                sync_id: q.sync_id.clone(),
                state: Some(RunState::Queued),
                reason: q.reason.clone(),
                requested_at: Some(q.requested_at.clone()),
                ..SyncRun::default()
            });
        }
        view
    }

    /// The id of a run that already covers a new request at `now`: one in progress, or one
    /// queued recently enough that its message is still expected to start it.
    pub fn covering_run(&self, now: OffsetDateTime) -> Option<String> {
        if let Some(run) = &self.current
            && !self.current_is_abandoned(now)
        {
            return Some(run.sync_id.clone());
        }
        let queued = self.pending()?;
        parse_time(&queued.requested_at).filter(|at| now - *at <= QUEUED_COVERS_FOR).map(|_| queued.sync_id.clone())
    }
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

    const NOW: OffsetDateTime = time::macros::datetime!(2026-12-02 12:00 UTC);

    fn at(minutes_ago: i64) -> String {
        (NOW - time::Duration::minutes(minutes_ago)).format(&Rfc3339).expect("time")
    }

    fn running(started: i64, heartbeat: i64) -> SyncRun {
        SyncRun {
            sync_id: "run1".into(),
            state: Some(RunState::Running),
            started_at: at(started),
            updated_at: Some(at(heartbeat)),
            ..SyncRun::default()
        }
    }

    #[test]
    fn a_run_without_lease_or_progress_is_abandoned_and_covers_nothing() {
        let lease_live = Some(NOW.unix_timestamp() + 60);
        let lease_gone = Some(NOW.unix_timestamp() - 60);
        // Live lease: running, even without recent progress (a slow page).
        let status = SyncStatus { current: Some(running(40, 30)), lease_until: lease_live, ..SyncStatus::default() };
        assert_eq!(status.view(NOW).current.and_then(|r| r.state), Some(RunState::Running));
        assert_eq!(status.covering_run(NOW).as_deref(), Some("run1"));
        // Between invocations of a pass: no lease, fresh heartbeat: still running.
        let status = SyncStatus { current: Some(running(40, 2)), lease_until: None, ..SyncStatus::default() };
        assert!(!status.current_is_abandoned(NOW));
        // Lease expired, no progress for 16 minutes: abandoned, shown as the last run.
        let status = SyncStatus { current: Some(running(40, 16)), lease_until: lease_gone, ..SyncStatus::default() };
        let view = status.view(NOW);
        assert_eq!(view.current, None);
        assert_eq!(view.last.and_then(|r| r.state), Some(RunState::Abandoned));
        assert_eq!(status.covering_run(NOW), None, "a dead run does not block new requests");
    }

    #[test]
    fn a_queued_request_shows_until_a_later_run_starts() {
        let queued = QueuedSync { sync_id: "q1".into(), reason: "manual".into(), requested_at: at(1) };
        let status = SyncStatus { queued: Some(queued.clone()), ..SyncStatus::default() };
        let current = status.view(NOW).current.expect("queued run shown");
        assert_eq!((current.sync_id.as_str(), current.state), ("q1", Some(RunState::Queued)));
        assert_eq!(status.covering_run(NOW).as_deref(), Some("q1"));
        // A run that started after the request covers it.
        let finished = SyncRun { started_at: at(0), state: Some(RunState::Succeeded), ..SyncRun::default() };
        let covered = SyncStatus { last: Some(finished), queued: Some(queued.clone()), ..SyncStatus::default() };
        assert_eq!(covered.view(NOW).current, None);
        // A request whose message never started a run stops covering new ones.
        let stale = QueuedSync { requested_at: at(20), ..queued };
        let status = SyncStatus { queued: Some(stale), ..SyncStatus::default() };
        assert_eq!(status.covering_run(NOW), None);
        assert!(status.view(NOW).current.is_some(), "still shown as queued");
    }

    #[test]
    fn pages_per_second_comes_from_listing_time() {
        let run = SyncRun { pages: 30, listing_ms: 12_000, ..SyncRun::default() };
        assert_eq!(run.pages_per_second(), Some(2.5));
        assert_eq!(SyncRun::default().pages_per_second(), None);
    }

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
