//! Sync use case and batch handling against in-memory fakes.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use secrecy::SecretString;
use shared::domain::gitlab::GitlabError;
use shared::domain::ids::{IntegrationId, TeamId};
use shared::domain::integration::{Integration, IntegrationStatus};
use shared::domain::listing::{ListedProject, ListingSettings};
use shared::domain::url_policy::UrlPolicy;
use shared::messages::{MESSAGE_VERSION, Message, SyncReason, SyncRequested};
use shared::ports::{IntegrationStore, StoredToken, SyncStateStore, TokenVault};
use shared::testing::{FakeGitlab, InMemoryIntegrationStore, InMemoryProjectStore, InMemoryVault, RecordingJobQueue};
use time::OffsetDateTime;

use crate::service::{SyncOutcome, fan_out, sync};
use crate::{Deps, process_batch};

const BASE: &str = "https://gitlab.example.com";

struct World {
    deps: Deps,
    integrations: Arc<InMemoryIntegrationStore>,
    projects: Arc<InMemoryProjectStore>,
    gitlab: Arc<FakeGitlab>,
    queue: Arc<RecordingJobQueue>,
    team: TeamId,
    id: IntegrationId,
}

fn listed(id: u64, path: &str) -> ListedProject {
    ListedProject {
        id,
        path_with_namespace: path.into(),
        default_branch: Some("main".into()),
        visibility: None,
        archived: None,
        empty_repo: None,
        last_activity_at: Some("2026-11-20T10:00:00.000Z".into()),
    }
}

fn integration(team: &TeamId, id: &IntegrationId, secret_ref: String, status: IntegrationStatus) -> Integration {
    let mut i = shared::testing::sample_integration(team, id);
    i.instance_url = BASE.into();
    i.api_url = format!("{BASE}/api/v4");
    i.status = status;
    i.secret_ref = secret_ref;
    i
}

async fn world(status: IntegrationStatus) -> World {
    let integrations = Arc::new(InMemoryIntegrationStore::default());
    let projects = Arc::new(InMemoryProjectStore::default());
    let vault = Arc::new(InMemoryVault::default());
    let queue = Arc::new(RecordingJobQueue::default());
    let gitlab = Arc::new(FakeGitlab::default());
    let team = TeamId::parse("team-a").expect("team");
    let id = IntegrationId::generate();
    let token = StoredToken { origin: BASE.into(), token: SecretString::from("glpat-sync-test-0000000001".to_owned()) };
    let secret_ref = vault.create(&team, &id, &token).await.expect("secret");
    integrations.insert(&integration(&team, &id, secret_ref, status)).await.expect("insert");
    let deps = Deps {
        integrations: integrations.clone(),
        directory: integrations.clone(),
        projects: projects.clone(),
        sync_state: projects.clone(),
        checkpoints: projects.clone(),
        max_run: None,
        checkpoint_every: 50,
        lookup_spacing: Duration::ZERO,
        vault,
        queue: queue.clone(),
        deliveries: Arc::new(shared::testing::InMemoryWebhookStore::default()),
        scan_queue: Arc::new(RecordingJobQueue::default()),
        hooks: Arc::new(shared::testing::FakeHooks::default()),
        hook_secrets: Arc::new(shared::testing::InMemoryHookSecrets::default()),
        webhook_base_url: Some("https://hooks.example.com".into()),
        gitlab: gitlab.clone(),
        policy: UrlPolicy::default(),
        listing: ListingSettings::default(),
        lease: Duration::from_secs(960),
    };
    World { deps, integrations, projects, gitlab, queue, team, id }
}

fn request(w: &World) -> SyncRequested {
    SyncRequested {
        version: MESSAGE_VERSION,
        team_id: w.team.clone(),
        integration_id: w.id.clone(),
        reason: SyncReason::Manual,
        requested_at: OffsetDateTime::now_utc(),
        sync_id: None,
    }
}

fn run_of(outcome: SyncOutcome) -> shared::domain::sync::SyncRun {
    match outcome {
        SyncOutcome::Completed { run } | SyncOutcome::Failed { run } => *run,
        other => panic!("no run: {other:?}"),
    }
}

#[tokio::test]
async fn first_sync_adds_everything_and_an_unchanged_second_sync_writes_nothing() {
    let w = world(IntegrationStatus::Active).await;
    w.gitlab.set_projects((1..=250).map(|i| listed(i, &format!("group/p{i}"))).collect());
    let first = run_of(sync(&w.deps, &request(&w), None).await.expect("sync"));
    assert_eq!((first.seen, first.added, first.updated, first.removed), (250, 250, 0, 0));
    assert!(first.write_calls > 0);
    let writes_before = w.projects.write_calls();
    let second = run_of(sync(&w.deps, &request(&w), None).await.expect("sync"));
    assert_eq!((second.seen, second.added, second.updated, second.unchanged), (250, 0, 0, 250));
    assert_eq!(second.write_calls, 0);
    assert_eq!(w.projects.write_calls(), writes_before);
    let status = w.projects.sync_status(&w.team, &w.id).await.expect("status");
    assert_eq!(status.last.expect("last").sync_id, second.sync_id);
    assert!(status.current.is_none());
}

#[tokio::test]
async fn renames_transfers_and_removals_are_reconciled_by_id() {
    let w = world(IntegrationStatus::Active).await;
    w.gitlab.set_projects(vec![listed(1, "g/a"), listed(2, "g/b"), listed(3, "g/c")]);
    sync(&w.deps, &request(&w), None).await.expect("sync");
    w.projects.set_tracked(&w.team, &w.id, 1, true);
    w.gitlab.set_projects(vec![listed(1, "g/a-renamed"), listed(2, "other/b"), listed(4, "g/d")]);
    let run = run_of(sync(&w.deps, &request(&w), None).await.expect("sync"));
    assert_eq!((run.added, run.updated, run.removed, run.unchanged), (1, 2, 1, 0));
    let stored = w.projects.projects(&w.team, &w.id);
    assert_eq!(stored[&1].snapshot.path_with_namespace, "g/a-renamed");
    assert!(stored[&1].tracked, "tracking survives a rename");
    assert_eq!(stored[&2].snapshot.web_url, "https://gitlab.example.com/other/b");
    assert!(stored[&3].removed_at.is_some());
    assert!(stored[&4].removed_at.is_none());
    // A removed project that comes back is restored.
    w.gitlab.set_projects(vec![listed(1, "g/a-renamed"), listed(2, "other/b"), listed(3, "g/c"), listed(4, "g/d")]);
    let run = run_of(sync(&w.deps, &request(&w), None).await.expect("sync"));
    assert_eq!((run.updated, run.removed), (1, 0));
    assert!(w.projects.projects(&w.team, &w.id)[&3].removed_at.is_none());
}

#[tokio::test]
async fn unsafe_listed_values_are_skipped_or_dropped() {
    let w = world(IntegrationStatus::Active).await;
    let mut evil = listed(5, "g/../../etc");
    evil.default_branch = Some("--upload-pack=x".into());
    let mut odd_branch = listed(6, "g/ok");
    odd_branch.default_branch = Some("-x".into());
    w.gitlab.set_projects(vec![evil, odd_branch]);
    let run = run_of(sync(&w.deps, &request(&w), None).await.expect("sync"));
    assert_eq!((run.seen, run.skipped, run.added), (1, 1, 1));
    let stored = w.projects.projects(&w.team, &w.id);
    assert_eq!(stored[&6].snapshot.default_branch, None);
}

#[tokio::test]
async fn a_dead_token_mid_sync_marks_the_integration_and_removes_nothing() {
    let w = world(IntegrationStatus::Active).await;
    w.gitlab.set_projects((1..=150).map(|i| listed(i, &format!("g/p{i}"))).collect());
    sync(&w.deps, &request(&w), None).await.expect("first sync");
    w.gitlab.fail_listing(Some(GitlabError::TokenRevoked));
    let run = run_of(sync(&w.deps, &request(&w), None).await.expect("sync"));
    assert_eq!(run.error.as_deref(), Some("token_revoked"));
    assert_eq!(run.removed, 0, "a partial pass must not remove projects");
    let stored = w.integrations.get(&w.team, &w.id).await.expect("get").expect("exists");
    assert_eq!(stored.status, IntegrationStatus::TokenRevoked);
    // The next request does not call GitLab with the dead token.
    w.gitlab.fail_listing(None);
    let run = run_of(sync(&w.deps, &request(&w), None).await.expect("sync"));
    assert_eq!(run.error.as_deref(), Some("token_unusable"));
    assert_eq!(run.requests, 0);
}

#[tokio::test]
async fn a_held_lease_coalesces_and_another_teams_message_finds_nothing() {
    let w = world(IntegrationStatus::Active).await;
    let now = OffsetDateTime::now_utc();
    assert!(
        w.projects
            .acquire_lease(&w.team, &w.id, "other-run", now + time::Duration::minutes(5), now)
            .await
            .expect("lease")
    );
    assert_eq!(sync(&w.deps, &request(&w), None).await.expect("sync"), SyncOutcome::Coalesced);
    let mut foreign = request(&w);
    foreign.team_id = TeamId::parse("team-b").expect("team");
    assert_eq!(sync(&w.deps, &foreign, None).await.expect("sync"), SyncOutcome::IntegrationGone);
    // An expired lease is taken over.
    w.projects.release_lease(&w.team, &w.id, "other-run").await.expect("release");
    assert!(
        w.projects
            .acquire_lease(
                &w.team,
                &w.id,
                "crashed-run",
                now - time::Duration::seconds(1),
                now - time::Duration::minutes(20)
            )
            .await
            .expect("lease")
    );
    assert!(matches!(sync(&w.deps, &request(&w), None).await.expect("sync"), SyncOutcome::Completed { .. }));
}

fn sqs_message(id: &str, body: &str) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(id.into());
    m.body = Some(body.into());
    m
}

#[tokio::test]
async fn unreadable_messages_are_reported_and_good_ones_acknowledged() {
    let w = world(IntegrationStatus::Active).await;
    let good = serde_json::to_string(&Message::SyncRequested(request(&w))).expect("json");
    let mut event = SqsEvent::default();
    event.records = vec![
        sqs_message("m1", &good),
        sqs_message("m2", "{not json"),
        sqs_message("m3", r#"{"type":"scan_requested","version":1}"#),
        sqs_message("m4", &good.replace("\"version\":1", "\"version\":99")),
    ];
    let response = process_batch(&w.deps, event, None).await;
    let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, vec!["m2", "m3", "m4"]);
}

#[tokio::test]
async fn the_schedule_queues_one_sync_per_live_integration() {
    let w = world(IntegrationStatus::Active).await;
    let revoked_id = IntegrationId::generate();
    w.integrations
        .insert(&integration(&w.team, &revoked_id, "arn:x".into(), IntegrationStatus::TokenRevoked))
        .await
        .expect("insert");
    let other_team = TeamId::parse("team-b").expect("team");
    let other_id = IntegrationId::generate();
    w.integrations
        .insert(&integration(&other_team, &other_id, "arn:y".into(), IntegrationStatus::TokenExpiring))
        .await
        .expect("insert");
    assert_eq!(fan_out(&w.deps).await.expect("fan out"), 2);
    let mut sent: Vec<(String, String)> = w
        .queue
        .sent_messages()
        .into_iter()
        .filter_map(|m| match m {
            Message::SyncRequested(r) => Some(r),
            Message::HooksRequested(_) => None,
            other => panic!("{other:?}"),
        })
        .map(|r| {
            assert_eq!(r.reason, SyncReason::Scheduled);
            (r.team_id.to_string(), r.integration_id.to_string())
        })
        .collect();
    sent.sort();
    let mut expected = vec![("team-a".to_owned(), w.id.to_string()), ("team-b".to_owned(), other_id.to_string())];
    expected.sort();
    assert_eq!(sent, expected);
}

#[tokio::test]
async fn languages_are_fetched_for_tracked_projects_only_when_needed() {
    let w = world(IntegrationStatus::Active).await;
    w.gitlab.set_projects(vec![listed(1, "g/a"), listed(2, "g/b")]);
    sync(&w.deps, &request(&w), None).await.expect("sync");
    assert!(w.gitlab.language_calls().is_empty(), "untracked projects get no lookups");
    w.projects.set_tracked(&w.team, &w.id, 1, true);
    sync(&w.deps, &request(&w), None).await.expect("sync");
    assert_eq!(w.gitlab.language_calls(), vec![1], "tracked without languages");
    assert!(w.projects.projects(&w.team, &w.id)[&1].languages.is_some());
    sync(&w.deps, &request(&w), None).await.expect("sync");
    assert_eq!(w.gitlab.language_calls(), vec![1], "unchanged: no new lookup");
    w.gitlab.set_projects(vec![listed(1, "g/a-moved"), listed(2, "g/b")]);
    sync(&w.deps, &request(&w), None).await.expect("sync");
    assert_eq!(w.gitlab.language_calls(), vec![1, 1], "changed tracked project: looked up again");
}

#[tokio::test]
async fn a_pass_that_fails_midway_resumes_from_its_last_checkpoint() {
    let mut w = world(IntegrationStatus::Active).await;
    w.deps.checkpoint_every = 1;
    w.gitlab.set_projects((1..=350).map(|i| listed(i, &format!("group/p{i}"))).collect());
    // Two pages are written and checkpointed, then the table stops taking writes.
    w.projects.set_failing_writes_after(Some(200));
    assert!(sync(&w.deps, &request(&w), None).await.is_err(), "a back-end failure is retried by SQS");
    let (cp, parts) = w.projects.checkpoint(&w.team, &w.id).expect("checkpoint kept");
    assert_eq!(cp.ranges, vec![(200, None)]);
    assert_eq!(parts.concat().len(), 200);
    assert_eq!((cp.run.added, cp.run.seen), (200, 200));

    w.projects.set_failing_writes_after(None);
    let run = run_of(sync(&w.deps, &request(&w), None).await.expect("sync"));
    let main: Vec<_> = w.gitlab.listings().into_iter().filter(|(filter, _)| filter.is_empty()).collect();
    assert_eq!(main.len(), 2);
    assert_eq!(main[1].1, Some(vec![(200, None)]), "the retry continues after the checkpoint");
    assert_eq!(run.sync_id, cp.run.sync_id, "one pass, one id");
    assert_eq!((run.seen, run.added, run.removed), (350, 350, 0), "{run:?}");
    assert_eq!(w.projects.projects(&w.team, &w.id).len(), 350);
    assert!(w.projects.checkpoint(&w.team, &w.id).is_none(), "a finished pass clears its checkpoint");
}

#[tokio::test]
async fn an_old_checkpoint_is_discarded_and_the_pass_starts_over() {
    let mut w = world(IntegrationStatus::Active).await;
    w.deps.checkpoint_every = 1;
    w.gitlab.set_projects((1..=350).map(|i| listed(i, &format!("group/p{i}"))).collect());
    w.projects.set_failing_writes_after(Some(200));
    assert!(sync(&w.deps, &request(&w), None).await.is_err());
    // Make the stored pass two days old.
    let (mut cp, parts) = w.projects.checkpoint(&w.team, &w.id).expect("checkpoint");
    cp.run.started_at = "2026-01-01T00:00:00Z".into();
    cp.parts = 0;
    cp.seen = parts.concat();
    use shared::ports::CheckpointStore;
    w.projects.clear_checkpoint(&w.team, &w.id).await.expect("clear");
    w.projects.save_checkpoint(&w.team, &w.id, &cp).await.expect("save");
    w.projects.set_failing_writes_after(None);
    let run = run_of(sync(&w.deps, &request(&w), None).await.expect("sync"));
    let main: Vec<_> = w.gitlab.listings().into_iter().filter(|(filter, _)| filter.is_empty()).collect();
    assert_eq!(main.last().map(|(_, resume)| resume.clone()), Some(None), "listed from the start");
    assert_ne!(run.sync_id, cp.run.sync_id);
    assert_eq!((run.seen, run.unchanged, run.added), (350, 200, 150));
}

#[test]
fn the_listing_leaves_time_to_write_and_checkpoint() {
    use crate::listing_time;
    assert_eq!(listing_time(Duration::from_secs(900)), Duration::from_secs(840));
    assert_eq!(listing_time(Duration::from_secs(120)), Duration::from_secs(90));
    assert_eq!(listing_time(Duration::from_secs(8)), Duration::from_secs(6));
    assert_eq!(listing_time(Duration::ZERO), Duration::ZERO);
}

#[tokio::test]
async fn tracked_projects_are_looked_up_for_what_the_simple_listing_lacks_without_flapping() {
    let w = world(IntegrationStatus::Active).await;
    let mut empty = listed(2, "g/empty");
    // Current GitLab names the instance's default branch even for an empty repository.
    empty.empty_repo = Some(true);
    let mut archived = listed(3, "g/old");
    archived.archived = Some(true);
    archived.visibility = Some("internal".into());
    w.gitlab.set_projects(vec![listed(1, "g/a"), empty, archived]);
    sync(&w.deps, &request(&w), None).await.expect("sync");
    let stored = w.projects.projects(&w.team, &w.id);
    assert!(!stored[&2].snapshot.empty_repo, "untracked: the listing cannot tell");
    assert!(stored[&3].snapshot.archived, "archived comes from the filtered listing");
    assert_eq!(stored[&3].snapshot.visibility.as_deref(), Some("internal"));
    assert!(w.gitlab.detail_calls().is_empty());

    for pid in [1, 2] {
        w.projects.set_tracked(&w.team, &w.id, pid, true);
    }
    sync(&w.deps, &request(&w), None).await.expect("sync");
    let stored = w.projects.projects(&w.team, &w.id);
    assert!(stored[&2].snapshot.empty_repo, "flagged from GET /projects/:id");
    assert!(!stored[&1].snapshot.empty_repo);
    assert_eq!(stored[&2].languages.as_ref().map(|l| l.len()), Some(0), "an empty repository has no languages");
    assert_eq!(w.gitlab.language_calls(), vec![1], "no languages call for the empty repository");
    let mut looked_up = w.gitlab.detail_calls();
    looked_up.sort_unstable();
    assert_eq!(looked_up, vec![1, 2]);

    // Nothing changed: the stored flag is kept, nothing is written or looked up again.
    let writes = w.projects.write_calls();
    let run = run_of(sync(&w.deps, &request(&w), None).await.expect("sync"));
    assert_eq!((run.unchanged, run.updated, run.write_calls), (3, 0, 0), "{run:?}");
    assert_eq!(w.projects.write_calls(), writes);
    assert_eq!(w.gitlab.detail_calls().len(), 2);
    assert!(w.projects.projects(&w.team, &w.id)[&2].snapshot.empty_repo);
}

#[tokio::test]
async fn a_skipped_lookup_of_a_changed_tracked_project_is_retried_next_sync() {
    let w = world(IntegrationStatus::Active).await;
    w.gitlab.set_projects(vec![listed(1, "g/a")]);
    sync(&w.deps, &request(&w), None).await.expect("sync");
    w.projects.set_tracked(&w.team, &w.id, 1, true);
    sync(&w.deps, &request(&w), None).await.expect("sync");
    assert_eq!(w.gitlab.detail_calls(), vec![1]);
    // The project is renamed, and GitLab answers the lookup with a 429.
    w.gitlab.set_projects(vec![listed(1, "g/a-renamed")]);
    w.gitlab.fail_details(Some(GitlabError::RateLimited { retry_after: None }));
    let run = run_of(sync(&w.deps, &request(&w), None).await.expect("sync"));
    assert_eq!((run.updated, w.gitlab.detail_calls().len()), (1, 2));
    // Next sync: the listing is unchanged, but the new state was never confirmed.
    w.gitlab.fail_details(None);
    let run = run_of(sync(&w.deps, &request(&w), None).await.expect("sync"));
    assert_eq!((run.unchanged, w.gitlab.detail_calls().len()), (1, 3));
    sync(&w.deps, &request(&w), None).await.expect("sync");
    assert_eq!(w.gitlab.detail_calls().len(), 3, "confirmed now: no more lookups");
}

#[tokio::test]
async fn a_schedule_tick_replays_deliveries_the_webhook_could_not_queue() {
    use shared::domain::scan::{CommitSha, ScanTarget, ScanTrigger};
    use shared::messages::ScanRequested;
    use shared::ports::{DeliveryRecord, DeliveryStore};

    let w = world(IntegrationStatus::Active).await;
    let deliveries = Arc::new(shared::testing::InMemoryWebhookStore::default());
    let scan_queue = Arc::new(RecordingJobQueue::default());
    let mut deps = w.deps.clone();
    deps.deliveries = deliveries.clone();
    deps.scan_queue = scan_queue.clone();
    let scan = Message::ScanRequested(ScanRequested {
        version: MESSAGE_VERSION,
        team_id: w.team.clone(),
        integration_id: w.id.clone(),
        project_id: 15,
        target: ScanTarget::Branch { branch: "main".into() },
        head_sha: CommitSha::parse(&"ab".repeat(20)),
        scan_id: None,
        trigger: ScanTrigger::Push,
        delivery_id: Some("idem:1".into()),
        requested_at: OffsetDateTime::now_utc(),
    });
    let record = DeliveryRecord {
        team_id: w.team.clone(),
        integration_id: w.id.clone(),
        key: "idem:1".into(),
        event: "Push Hook".into(),
        messages: vec![scan.clone()],
        recorded_at: OffsetDateTime::now_utc(),
        attempt: "a1".into(),
    };
    deliveries.record(&record, OffsetDateTime::now_utc() + time::Duration::days(4)).await.expect("record");
    deliveries.mark_unsent(&record).await.expect("mark");
    let tick = || {
        let event = serde_json::json!({ "detail-type": "Scheduled Event", "source": "aws.events", "detail": {} });
        crate::handle(&deps, lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default()))
    };

    scan_queue.set_failing(true);
    let out = tick().await.expect("tick");
    assert_eq!(out["replayed"], 0);
    assert!(deliveries.deliveries()[0].1, "still marked unsent while the queue is down");

    scan_queue.set_failing(false);
    let out = tick().await.expect("tick");
    assert_eq!(out["replayed"], 1);
    assert_eq!(scan_queue.sent_messages(), vec![scan]);
    assert!(!deliveries.deliveries()[0].1, "the mark is cleared once sent");
    let out = tick().await.expect("tick");
    assert_eq!(out["replayed"], 0, "nothing is sent twice");
    assert_eq!(scan_queue.sent_messages().len(), 1);
}
