//! Repository sync through the local host: connect queues a sync, the sync function lists the
//! simulator's projects and reconciles them into DynamoDB.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

use gitlab_sim::{ListingMode, RateLimit, RateLimitStyle, SimConfig};

use crate::support::{Env, demo, env};

/// Partition key of an integration's children (its `SYNC` item, projects, checkpoint parts).
fn sync_pk(team: &str, id: &str) -> String {
    format!("TEAM#{team}#INTEGRATION#{id}")
}

/// The integration's `SYNC` item (lease, runs, checkpoint), read consistently.
async fn sync_item(
    dynamo: &aws_sdk_dynamodb::Client,
    table: &str,
    pk: &str,
) -> Result<Option<std::collections::HashMap<String, AttributeValue>>, String> {
    let out = dynamo
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(pk.to_owned()))
        .key("sk", AttributeValue::S("SYNC".into()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    Ok(out.item)
}

/// The finished run recorded for an integration, once there is one.
pub(crate) async fn wait_for_run(env: &Env, team: &str, id: &str, previous: Option<&str>) -> Value {
    wait_for_run_within(env, team, id, previous, Duration::from_secs(30)).await
}

/// Like [`wait_for_run`] with a custom time limit (large instances against moto).
pub(crate) async fn wait_for_run_within(
    env: &Env,
    team: &str,
    id: &str,
    previous: Option<&str>,
    limit: Duration,
) -> Value {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let item = sync_item(&env.dynamo(), &env.table(), &sync_pk(team, id)).await.expect("get sync item");
        if let Some(run) = item.as_ref().and_then(|i| i.get("last_run")).and_then(|v| v.as_s().ok()) {
            let run: Value = serde_json::from_str(run).expect("run json");
            if previous.is_none_or(|p| run["sync_id"] != p) {
                return run;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no finished sync run for {id}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The simulator's keyset requests of the main listing (not the filtered ones, not the probe).
fn main_pass_requests(env: &Env) -> Vec<gitlab_sim::RecordedRequest> {
    env.sim
        .requests_to("/api/v4/projects")
        .into_iter()
        .filter(|r| {
            r.param("pagination").as_deref() == Some("keyset")
                && r.param("archived").is_none()
                && r.param("visibility").is_none()
        })
        .collect()
}

/// Project items of an integration, by project id.
pub(crate) async fn project_items(
    env: &Env,
    team: &str,
    id: &str,
) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    env.items()
        .await
        .into_iter()
        .filter(|i| {
            i.get("pk").and_then(|v| v.as_s().ok()).is_some_and(|pk| pk == &sync_pk(team, id))
                && i.get("sk").and_then(|v| v.as_s().ok()).is_some_and(|sk| sk.starts_with("PROJECT#"))
        })
        .collect()
}

#[tokio::test]
async fn connecting_syncs_the_projects_and_a_second_sync_writes_nothing() {
    let env = env("sync_basic").with_workers().start().await;
    let id = env.connect("team-a", demo::API).await["id"].as_str().expect("id").to_owned();
    let run = wait_for_run(&env, "team-a", &id, None).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    let expected = gitlab_sim::SimConfig::default().projects.len() as u64;
    assert_eq!(run["seen"], expected);
    assert_eq!(run["added"], expected);
    let items = project_items(&env, "team-a", &id).await;
    assert_eq!(items.len() as u64, expected);
    for item in &items {
        let path = item["path_with_namespace"].as_s().expect("path");
        assert_eq!(item["web_url"].as_s().expect("url"), &format!("{}/{path}", env.sim.base_url()));
        assert_eq!(item["tracked"], AttributeValue::Bool(false));
    }
    assert_eq!(env.get("team-a", &format!("/integrations/gitlab/{id}")).await.body["status"], "active");
}

/// Triggers a sync through the api route and waits for that run to finish.
async fn resync(env: &Env, team: &str, id: &str) -> Value {
    let accepted = env.request("POST", Some(team), &format!("/integrations/gitlab/{id}/sync"), None).await;
    assert_eq!(accepted.status, 202, "{}", accepted.raw);
    let sync_id = accepted.body["sync_id"].as_str().expect("sync id").to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = env.get(team, &format!("/integrations/gitlab/{id}/sync")).await;
        if status.body["last"]["sync_id"] == sync_id.as_str() {
            return wait_for_run(env, team, id, None).await;
        }
        assert!(tokio::time::Instant::now() < deadline, "run {sync_id} did not finish: {}", status.raw);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn connect_and_sync(env: &Env) -> (String, Value) {
    let id = env.connect("team-a", demo::API).await["id"].as_str().expect("id").to_owned();
    let run = wait_for_run_within(env, "team-a", &id, None, Duration::from_secs(120)).await;
    (id, run)
}

#[tokio::test]
async fn instances_of_0_1_and_250_projects() {
    for n in [0usize, 1, 250] {
        let env = env(&format!("sync_{n}")).sim(SimConfig::with_generated_projects(n)).with_workers().start().await;
        let (id, run) = connect_and_sync(&env).await;
        assert_eq!(
            (run["state"].as_str(), run["seen"].as_u64(), run["added"].as_u64()),
            (Some("succeeded"), Some(n as u64), Some(n as u64)),
            "{run}"
        );
        let items = project_items(&env, "team-a", &id).await;
        assert_eq!(items.len(), n);
        // The simple listing has no archived or visibility: filtered listings fill them in.
        for item in &items {
            let pid: u64 = item["project_id"].as_n().expect("id").parse().expect("number");
            let truth = env.sim.project(pid).expect("sim project");
            assert_eq!(item["archived"], aws_sdk_dynamodb::types::AttributeValue::Bool(truth.archived), "{pid}");
            assert_eq!(item["visibility"].as_s().expect("visibility"), &truth.visibility, "{pid}");
        }
        if n == 250 {
            assert!(env.sim.projects().iter().any(|p| p.archived), "the generated set has archived projects");
        }
        // Small instances need, per listing (all, archived, public, internal), a page and at
        // most one probe for the highest id: no ranges.
        if n <= 100 {
            assert!(run["requests"].as_u64().expect("requests") <= 8, "{run}");
        }
    }
}

#[tokio::test]
async fn twelve_thousand_projects_then_an_unchanged_resync_writes_nothing() {
    let env = env("sync_12k").sim(SimConfig::with_generated_projects(12_000)).with_workers().start().await;
    let (id, first) = connect_and_sync(&env).await;
    assert_eq!(
        (first["state"].as_str(), first["seen"].as_u64(), first["added"].as_u64()),
        (Some("succeeded"), Some(12_000), Some(12_000)),
        "{first}"
    );
    // Keyset over ranges: never offset pages, never past GitLab's caps.
    let listing: Vec<_> = env.sim.requests_to("/api/v4/projects");
    assert!(listing.iter().all(|r| r.param("page").is_none()), "offset pagination used");
    assert!(listing.iter().filter(|r| r.param("pagination").as_deref() == Some("keyset")).count() >= 120);
    let second = resync(&env, "team-a", &id).await;
    assert_eq!(
        (second["seen"].as_u64(), second["unchanged"].as_u64(), second["write_calls"].as_u64()),
        (Some(12_000), Some(12_000), Some(0)),
        "{second}"
    );
}

#[tokio::test]
async fn renames_transfers_and_removals_between_syncs() {
    let env = env("sync_changes").sim(SimConfig::with_generated_projects(300)).with_workers().start().await;
    let (id, _) = connect_and_sync(&env).await;
    let projects = env.sim.projects();
    let (renamed, moved, gone) = (projects[10].id, projects[20].id, projects[30].id);
    assert!(env.sim.rename_project(renamed, "renamed-project"));
    assert!(env.sim.transfer_project(moved, "new-home/sub"));
    assert!(env.sim.delete_project(gone));
    let run = resync(&env, "team-a", &id).await;
    assert_eq!(
        (run["updated"].as_u64(), run["removed"].as_u64(), run["added"].as_u64()),
        (Some(2), Some(1), Some(0)),
        "{run}"
    );
    let items = project_items(&env, "team-a", &id).await;
    let by_id = |pid: u64| {
        items
            .iter()
            .find(|i| i["project_id"].as_n().ok().and_then(|n| n.parse::<u64>().ok()) == Some(pid))
            .expect("item")
            .clone()
    };
    assert!(by_id(renamed)["path_with_namespace"].as_s().expect("path").ends_with("/renamed-project"));
    assert!(by_id(moved)["path_with_namespace"].as_s().expect("path").starts_with("new-home/sub/"));
    assert!(by_id(gone).contains_key("removed_at"));
    // Purged by the table's TTL after the retention period (30 days by default).
    let ttl: i64 = by_id(gone)["ttl"].as_n().expect("ttl").parse().expect("number");
    let in_days = (ttl - time::OffsetDateTime::now_utc().unix_timestamp()) / 86_400;
    assert!((29..=30).contains(&in_days), "{in_days} days");
    assert!(!by_id(renamed).contains_key("ttl"), "a project that still exists is kept");
    // Removed projects disappear from the repository list; the others stay.
    let listed = env.get("team-a", &format!("/integrations/gitlab/{id}/repositories?limit=100")).await;
    assert!(listed.body["items"].as_array().expect("items").iter().all(|i| i["project_id"] != gone));
}

#[tokio::test]
async fn rate_limits_with_and_without_headers_slow_the_sync_down_but_it_completes() {
    let mut limited = std::collections::HashMap::new();
    for style in [RateLimitStyle::RackAttack, RateLimitStyle::RetryAfterOnly, RateLimitStyle::NoHeaders] {
        let env = env(&format!("sync_429_{style:?}").to_lowercase())
            .sim(SimConfig::with_generated_projects(1_200))
            .with_workers()
            .start()
            .await;
        env.sim.set_rate_limit(Some(RateLimit { requests: 4, window: Duration::from_secs(1), style }));
        let started = std::time::Instant::now();
        let (_, run) = connect_and_sync(&env).await;
        assert_eq!((run["state"].as_str(), run["seen"].as_u64()), (Some("succeeded"), Some(1_200)), "{style:?}: {run}");
        limited.insert(format!("{style:?}"), run["rate_limited"].as_u64().expect("count"));
        // 12+ requests at 4 per second cannot finish in under two seconds.
        assert!(started.elapsed() >= Duration::from_secs(2), "{style:?}: {:?}", started.elapsed());
    }
    // Without informational headers the 429 is the only signal...
    assert!(limited["NoHeaders"] > 0, "{limited:?}");
    assert!(limited["RetryAfterOnly"] > 0, "{limited:?}");
    // ...with RateLimit-Remaining and -Reset the sync slows down before the limit. Before the
    // first answer it knows nothing, and the reset time has one-second steps, so a few 429s may still come.
    assert!(limited["RackAttack"] <= 3 && limited["RackAttack"] < limited["NoHeaders"], "{limited:?}");
}

#[tokio::test]
async fn bursts_of_server_errors_are_retried() {
    let env = env("sync_5xx").sim(SimConfig::with_generated_projects(500)).with_workers().start().await;
    let (id, _) = connect_and_sync(&env).await;
    env.sim.fail_next(3, 502);
    let run = resync(&env, "team-a", &id).await;
    assert_eq!(
        (run["state"].as_str(), run["seen"].as_u64(), run["unchanged"].as_u64()),
        (Some("succeeded"), Some(500), Some(500)),
        "{run}"
    );
    let pages = 5 + 1; // five pages of 100 and the highest-id probe
    assert!(run["requests"].as_u64().expect("requests") >= pages + 3, "the failed requests were retried: {run}");
}

#[tokio::test]
async fn a_token_revoked_mid_sync_stops_the_run_and_marks_the_integration() {
    let env = env("sync_dead_token").sim(SimConfig::with_generated_projects(2_000)).with_workers().start().await;
    let (id, first) = connect_and_sync(&env).await;
    assert_eq!(first["state"], "succeeded");
    env.sim.revoke_token_after_project_pages(demo::API, 2);
    let run = resync(&env, "team-a", &id).await;
    assert_eq!(
        (run["state"].as_str(), run["error"].as_str(), run["removed"].as_u64()),
        (Some("failed"), Some("token_revoked"), Some(0)),
        "{run}"
    );
    assert_eq!(env.get("team-a", &format!("/integrations/gitlab/{id}")).await.body["status"], "token_revoked");
    let listing_calls = env.sim.requests_to("/api/v4/projects").len();
    let again = resync(&env, "team-a", &id).await;
    assert_eq!(again["error"], "token_unusable");
    assert_eq!(env.sim.requests_to("/api/v4/projects").len(), listing_calls, "no request with a dead token");
}

#[tokio::test]
async fn hostile_listings_end_the_sync_with_an_error_not_a_loop() {
    for (i, mode) in [
        ListingMode::ForeignNextLink,
        ListingMode::HttpNextLink,
        ListingMode::StuckCursor,
        ListingMode::HugePage(5_000),
        ListingMode::HugeTopId(u64::MAX - 3),
        ListingMode::HugeTopId(i64::MAX as u64 + 1),
        ListingMode::HugeIdInPage(u64::MAX),
    ]
    .into_iter()
    .enumerate()
    {
        let env =
            env(&format!("sync_hostile_{i}")).sim(SimConfig::with_generated_projects(400)).with_workers().start().await;
        let (id, first) = connect_and_sync(&env).await;
        assert_eq!(first["state"], "succeeded");
        env.sim.set_listing_mode(mode.clone());
        env.sim.clear_requests();
        let run = resync(&env, "team-a", &id).await;
        assert_eq!(
            (run["state"].as_str(), run["error"].as_str()),
            (Some("failed"), Some("not_gitlab")),
            "{mode:?}: {run}"
        );
        assert_eq!(run["removed"], 0, "{mode:?}: a partial pass removed projects");
        assert!(env.sim.requests().len() < 20, "{mode:?}: {} requests", env.sim.requests().len());
        assert!(env.sim.requests().iter().all(|r| !r.path.contains("attacker")));
        // The failed run is finished: nothing is left running to block the next request.
        let status = env.get("team-a", &format!("/integrations/gitlab/{id}/sync")).await;
        assert!(status.body["current"].is_null(), "{mode:?}: {}", status.raw);
        env.sim.set_listing_mode(ListingMode::Normal);
        assert_eq!(resync(&env, "team-a", &id).await["state"], "succeeded", "{mode:?}: the next run works");
    }
}

#[tokio::test]
async fn a_sync_requested_while_one_runs_is_coalesced() {
    let env = env("sync_coalesce").sim(SimConfig::with_generated_projects(1_000)).with_workers().start().await;
    let (id, _) = connect_and_sync(&env).await;
    env.sim.set_latency(Duration::from_millis(300));
    let path = format!("/integrations/gitlab/{id}/sync");
    let first = env.request("POST", Some("team-a"), &path, None).await;
    let sync_id = first.body["sync_id"].as_str().expect("id").to_owned();
    // Wait until the run is in progress, then ask again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = env.get("team-a", &path).await;
        if status.body["current"]["sync_id"] == sync_id.as_str() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "run never started: {}", status.raw);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = env.request("POST", Some("team-a"), &path, None).await;
    assert_eq!(
        (second.status, second.body["sync_id"].as_str(), second.body["coalesced"].as_bool()),
        (202, Some(sync_id.as_str()), Some(true)),
        "{}",
        second.raw
    );
}

#[tokio::test]
async fn a_sync_that_runs_out_of_time_checkpoints_and_continues_without_restarting() {
    let env = env("sync_checkpoint")
        .sim(SimConfig::with_generated_projects(1_500))
        .var("SYNC_MAX_RUN_SECONDS", "2")
        .var("SYNC_MAX_CONCURRENCY", "1")
        .with_workers()
        .start()
        .await;
    env.sim.set_latency(Duration::from_millis(100));
    let id = env.connect("team-a", demo::API).await["id"].as_str().expect("id").to_owned();
    let run = wait_for_run_within(&env, "team-a", &id, None, Duration::from_secs(120)).await;
    assert_eq!(
        (run["state"].as_str(), run["seen"].as_u64(), run["added"].as_u64()),
        (Some("succeeded"), Some(1_500), Some(1_500)),
        "{run}"
    );
    assert_eq!(run["removed"], 0, "{run}");
    assert_eq!(project_items(&env, "team-a", &id).await.len(), 1_500);
    let main_pass = main_pass_requests(&env);
    // Several invocations (each re-reads the small filtered listings)...
    let invocations = env
        .sim
        .requests_to("/api/v4/projects")
        .iter()
        .filter(|r| r.param("archived").as_deref() == Some("true") && r.param("id_after").as_deref() == Some("0"))
        .count();
    assert!(invocations >= 2, "the run never checkpointed ({invocations} invocation)");
    // ...but the main pass started from the beginning exactly once, and read each page about once.
    assert_eq!(main_pass.iter().filter(|r| r.param("id_after").as_deref() == Some("0")).count(), 1);
    assert!(
        main_pass.len() < 15 + 16 + 2 * invocations,
        "{} main-pass requests over {invocations} invocations",
        main_pass.len()
    );
    // Every invocation's requests are counted (a request aborted in flight may not have
    // reached the simulator; at most one per invocation at concurrency 1).
    let sent = env.sim.requests_to("/api/v4/projects").len() as u64;
    let counted = run["requests"].as_u64().expect("requests");
    assert!((sent..=sent + invocations as u64).contains(&counted), "{counted} counted, {sent} received");
    // The checkpoint is gone once the pass completed.
    let leftovers: Vec<_> = env
        .all_items()
        .await
        .into_iter()
        .filter(|i| i["sk"].as_s().is_ok_and(|s| s.starts_with("CHECKPOINT#")))
        .collect();
    assert!(leftovers.is_empty());
}

/// Whether the integration's `SYNC` item holds a checkpoint.
async fn has_checkpoint(env: &Env, team: &str, id: &str) -> bool {
    let item = sync_item(&env.dynamo(), &env.table(), &sync_pk(team, id)).await.expect("get sync item");
    item.is_some_and(|i| i.contains_key("checkpoint"))
}

/// What the crashing queue handler needs from the running stack.
#[derive(Clone)]
struct CrashParts {
    deps: std::sync::Arc<sync::Deps>,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    table: String,
    pk: String,
}

#[tokio::test]
async fn a_crashed_sync_is_resumed_from_its_last_checkpoint_by_the_redelivery() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, OnceLock};

    // The first delivery dies (its future is dropped, as when Lambda kills a process) right
    // after the run stored a checkpoint; the message comes back once the lease has expired.
    let stack: Arc<OnceLock<CrashParts>> = Arc::new(OnceLock::new());
    let crashed = Arc::new(AtomicBool::new(false));
    let handler: local_host::queues::BatchHandler = {
        let (stack, crashed) = (Arc::clone(&stack), Arc::clone(&crashed));
        Arc::new(move |event: aws_lambda_events::sqs::SqsEvent| {
            let (stack, crashed) = (Arc::clone(&stack), Arc::clone(&crashed));
            Box::pin(async move {
                // The message can arrive before the test has published the stack's parts.
                let mut waited = 0;
                while stack.get().is_none() && waited < 200 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    waited += 1;
                }
                let CrashParts { deps, sqs, queue_url, table, pk } = stack.get().cloned().ok_or("stack not ready")?;
                if crashed.swap(true, Ordering::SeqCst) {
                    return Ok(sync::process_batch(&deps, event, None).await);
                }
                let receipt = event.records.first().and_then(|r| r.receipt_handle.clone()).unwrap_or_default();
                let mut run = Box::pin(sync::process_batch(&deps, event, None));
                let dynamo = aws_sdk_dynamodb::Client::new(&shared::adapters::aws_config().await);
                loop {
                    tokio::select! {
                        _ = &mut run => return Err("the run finished before it could be interrupted".to_owned()),
                        () = tokio::time::sleep(Duration::from_millis(20)) => {}
                    }
                    if sync_item(&dynamo, &table, &pk).await?.is_some_and(|i| i.contains_key("checkpoint")) {
                        break;
                    }
                }
                drop(run);
                // The lease (SYNC_LEASE_SECONDS=2) runs out, then the visibility timeout.
                tokio::time::sleep(Duration::from_millis(2_500)).await;
                sqs.change_message_visibility()
                    .queue_url(&queue_url)
                    .receipt_handle(receipt)
                    .visibility_timeout(0)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                Err("invocation crashed".to_owned())
            })
        })
    };
    let env = env("sync_crash")
        .sim(SimConfig::with_generated_projects(1_500))
        .var("SYNC_MAX_CONCURRENCY", "2")
        .var("SYNC_CHECKPOINT_PAGES", "3")
        .var("SYNC_LEASE_SECONDS", "2")
        .queue_handler("SyncQueue", handler)
        .start()
        .await;
    env.sim.set_latency(Duration::from_millis(100));
    // The integration id is known only after connecting; the handler waits for it.
    let reply = env.post("team-a", "/integrations/gitlab", &env.connect_body(demo::API)).await;
    assert_eq!(reply.status, 201, "{}", reply.raw);
    let id = reply.body["id"].as_str().expect("id").to_owned();
    let sqs = aws_sdk_sqs::Client::new(&env.stack.sdk);
    let queue_url = env.stack.queue_url("SyncQueue").expect("queue").to_owned();
    let pk = sync_pk("team-a", &id);
    let parts = CrashParts { deps: Arc::clone(&env.stack.sync_deps), sqs, queue_url, table: env.table(), pk };
    assert!(stack.set(parts).is_ok());

    let run = wait_for_run_within(&env, "team-a", &id, None, Duration::from_secs(120)).await;
    assert!(crashed.load(Ordering::SeqCst));
    assert_eq!(
        (run["state"].as_str(), run["seen"].as_u64(), run["updated"].as_u64(), run["removed"].as_u64()),
        (Some("succeeded"), Some(1_500), Some(0), Some(0)),
        "{run}"
    );
    // Pages the crashed invocation wrote after its last checkpoint are listed again and found
    // unchanged; every project is counted once either way.
    let (added, unchanged) = (run["added"].as_u64().expect("added"), run["unchanged"].as_u64().expect("unchanged"));
    assert_eq!(added + unchanged, 1_500, "{run}");
    assert_eq!(project_items(&env, "team-a", &id).await.len(), 1_500);
    let main_pass = main_pass_requests(&env);
    // The redelivery continued from the checkpoint: the pass started from id 0 once, and only
    // the pages after the last checkpoint (at most 3 per range in flight) were listed twice.
    assert_eq!(main_pass.iter().filter(|r| r.param("id_after").as_deref() == Some("0")).count(), 1);
    assert!(main_pass.len() <= 15 + 16 + 2 * 3, "{} main-pass requests", main_pass.len());
    assert!(!has_checkpoint(&env, "team-a", &id).await, "the finished pass cleared its checkpoint");
}

#[tokio::test]
async fn tracked_projects_get_their_empty_flag_and_languages_once() {
    // Current GitLab: an empty repository lists the instance's default branch name, and the
    // simple entity has no `empty_repo`; only `GET /projects/:id` tells.
    let sim = SimConfig { empty_repo_default_branch: Some("main".into()), ..SimConfig::default() };
    let env = env("sync_details").sim(sim).var("SYNC_LOOKUPS_PER_MINUTE", "6000").with_workers().start().await;
    let (id, run) = connect_and_sync(&env).await;
    assert_eq!(run["seen"], 3, "{run}");
    let base = format!("/integrations/gitlab/{id}/repositories");
    let repos = |reply: &crate::support::Reply| {
        reply.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| (i["path_with_namespace"].as_str().unwrap_or("").to_owned(), i.clone()))
            .collect::<std::collections::HashMap<_, _>>()
    };
    let before = repos(&env.get("team-a", &base).await);
    assert_eq!(before["demo/docs"]["empty_repo"], false, "untracked: the listing cannot tell");
    assert!(env.sim.requests().iter().all(|r| !r.path.ends_with("/projects/3")), "no lookups for untracked projects");

    let ids: Vec<u64> = before.values().map(|p| p["project_id"].as_u64().expect("id")).collect();
    let body = serde_json::json!({ "track": ids }).to_string().into_bytes();
    let tracked = env.request("PATCH", Some("team-a"), &base, Some(("application/json", body))).await;
    assert_eq!(tracked.status, 200, "{}", tracked.raw);
    resync(&env, "team-a", &id).await;
    let after = repos(&env.get("team-a", &base).await);
    assert_eq!(after["demo/docs"]["empty_repo"], true, "{}", after["demo/docs"]);
    assert_eq!(after["demo/docs"]["languages"], serde_json::json!({}));
    assert_eq!(after["demo/backend"]["empty_repo"], false);
    assert_eq!(after["demo/backend"]["languages"]["Rust"], 81.2);
    assert_eq!(env.sim.requests_to("/api/v4/projects/3/languages").len(), 0, "an empty repository has none");

    // An unchanged instance: the flag stays, nothing is written or looked up again.
    let lookups = env.sim.requests_to("/api/v4/projects/3").len();
    assert_eq!(lookups, 1);
    let run = resync(&env, "team-a", &id).await;
    assert_eq!((run["unchanged"].as_u64(), run["write_calls"].as_u64()), (Some(3), Some(0)), "{run}");
    assert_eq!(env.sim.requests_to("/api/v4/projects/3").len(), lookups);
    assert_eq!(repos(&env.get("team-a", &base).await)["demo/docs"]["empty_repo"], true);
}

#[tokio::test]
async fn a_resumed_open_ended_range_is_split_again_and_lists_each_project_once() {
    use secrecy::SecretString;
    use shared::adapters::gitlab::{GitlabSettings, ReqwestGitlab};
    use shared::domain::address::Allowlist;
    use shared::domain::listing::{Listed, ListingSettings};
    use shared::domain::url_policy::{InstanceUrl, UrlPolicy};
    use shared::ports::GitlabGateway;

    let sim = gitlab_sim::start(SimConfig::with_generated_projects(3_000), ([127, 0, 0, 1], 0).into())
        .await
        .expect("simulator");
    let policy = UrlPolicy { allowlist: Allowlist::parse("127.0.0.1/32").expect("allowlist"), denied_hosts: vec![] };
    let gitlab = ReqwestGitlab::new(GitlabSettings { policy: policy.clone(), ..GitlabSettings::default() });
    let url = InstanceUrl::parse(&sim.base_url(), &policy).expect("url");
    let instance = gitlab.resolve(&url).await.expect("resolves");
    let ids: Vec<u64> = sim.projects().iter().map(|p| p.id).collect();
    let start = ids[999];
    let settings = ListingSettings { resume: Some(vec![(start, None)]), ..ListingSettings::default() };
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let collect = async move {
        let (mut plans, mut listed) = (Vec::new(), Vec::new());
        while let Some(event) = rx.recv().await {
            match event {
                Listed::Plan(ranges) => plans.push(ranges),
                Listed::Page { projects, .. } => listed.extend(projects.into_iter().map(|p| p.id)),
            }
        }
        (plans, listed)
    };
    let token = SecretString::from(demo::API.to_owned());
    let (report, (plans, mut listed)) =
        tokio::join!(gitlab.list_projects(&instance, Some(&sim.ca_pem), &token, settings, tx), collect);
    report.result.expect("listing completes");
    assert_eq!(plans[0], vec![(start, None)], "continues where the pass stopped");
    assert!(plans.len() == 2 && plans[1].len() > 1, "the rest is split into ranges again: {plans:?}");
    listed.sort_unstable();
    assert_eq!(listed, ids[1_000..].to_vec(), "every project after the cursor, once");
}

async fn sync_status(env: &Env, id: &str) -> Value {
    env.get("team-a", &format!("/integrations/gitlab/{id}/sync")).await.body
}

/// Runs the sync function on every message waiting on the sync queue.
async fn run_queued_syncs(env: &Env) {
    for message in env.sync_messages().await {
        if let Ok(shared::messages::Message::SyncRequested(request)) = serde_json::from_value(message) {
            sync::service::sync(&env.stack.sync_deps, &request, None).await.expect("sync runs");
        }
    }
}

#[tokio::test]
async fn a_requested_sync_is_queued_at_once_and_carries_the_id_it_was_given() {
    let env = env("sync_queued").sim(SimConfig::with_generated_projects(30)).start().await;
    let id = env.connect("team-a", demo::API).await["id"].as_str().expect("id").to_owned();
    // The first sync, queued by connect, shows at once too.
    let first = sync_status(&env, &id).await["current"].clone();
    assert_eq!((first["state"].as_str(), first["reason"].as_str()), (Some("queued"), Some("connected")), "{first}");
    run_queued_syncs(&env).await;
    assert_eq!(sync_status(&env, &id).await["last"]["sync_id"], first["sync_id"]);
    let path = format!("/integrations/gitlab/{id}/sync");
    let accepted = env.request("POST", Some("team-a"), &path, None).await;
    assert_eq!((accepted.status, accepted.body["coalesced"].as_bool()), (202, Some(false)), "{}", accepted.raw);
    let sync_id = accepted.body["sync_id"].as_str().expect("id").to_owned();
    let status = sync_status(&env, &id).await;
    assert_eq!(
        (status["current"]["state"].as_str(), status["current"]["sync_id"].as_str()),
        (Some("queued"), Some(sync_id.as_str())),
        "{status}"
    );
    assert!(status["current"]["requested_at"].is_string() && status["current"]["started_at"].is_null());
    // A second request while it is queued is answered with it.
    let again = env.request("POST", Some("team-a"), &path, None).await;
    assert_eq!(
        (again.body["sync_id"].as_str(), again.body["coalesced"].as_bool()),
        (Some(sync_id.as_str()), Some(true))
    );
    run_queued_syncs(&env).await;
    let status = sync_status(&env, &id).await;
    assert!(status["current"].is_null(), "{status}");
    assert_eq!(
        (status["last"]["sync_id"].as_str(), status["last"]["state"].as_str()),
        (Some(sync_id.as_str()), Some("succeeded")),
        "the run carries the id the request returned: {status}"
    );
    assert!(status["last"]["progress"]["pages"].as_u64().is_some_and(|p| p >= 1), "{status}");
}

#[tokio::test]
async fn a_run_that_died_is_shown_abandoned_and_does_not_block_a_new_request() {
    let env = env("sync_abandoned").sim(SimConfig::with_generated_projects(30)).start().await;
    let id = env.connect("team-a", demo::API).await["id"].as_str().expect("id").to_owned();
    run_queued_syncs(&env).await;
    // A run that saved progress twenty minutes ago and holds no lease: its invocation died.
    let long_ago = time::OffsetDateTime::now_utc() - time::Duration::minutes(20);
    let stamp = shared::adapters::dynamodb_projects::rfc3339(long_ago);
    let dead = shared::domain::sync::SyncRun {
        sync_id: "deadrun".into(),
        state: Some(shared::domain::sync::RunState::Running),
        reason: "manual".into(),
        started_at: stamp.clone(),
        updated_at: Some(stamp),
        ..Default::default()
    };
    let team = shared::domain::ids::TeamId::parse("team-a").expect("team");
    let iid = shared::domain::ids::IntegrationId::parse(&id).expect("id");
    env.stack.sync_deps.sync_state.save_run(&team, &iid, &dead).await.expect("saved");
    let status = sync_status(&env, &id).await;
    assert!(status["current"].is_null(), "{status}");
    assert_eq!(
        (status["last"]["sync_id"].as_str(), status["last"]["state"].as_str()),
        (Some("deadrun"), Some("abandoned"))
    );
    let accepted = env.request("POST", Some("team-a"), &format!("/integrations/gitlab/{id}/sync"), None).await;
    assert_eq!(accepted.body["coalesced"], false, "{}", accepted.raw);
    assert_ne!(accepted.body["sync_id"], "deadrun");
    run_queued_syncs(&env).await;
    let status = sync_status(&env, &id).await;
    assert_eq!(status["last"]["sync_id"], accepted.body["sync_id"], "{status}");
    assert_eq!(status["last"]["state"], "succeeded", "{status}");
}

#[tokio::test]
async fn manual_syncs_of_one_integration_have_a_cooldown() {
    let env = env("sync_cooldown")
        .var("SYNC_COOLDOWN_SECONDS", "3600")
        .sim(SimConfig::with_generated_projects(5))
        .start()
        .await;
    let id = env.connect("team-a", demo::API).await["id"].as_str().expect("id").to_owned();
    // The first sync (queued by connect) does not start the cooldown.
    run_queued_syncs(&env).await;
    let path = format!("/integrations/gitlab/{id}/sync");
    let first = env.request("POST", Some("team-a"), &path, None).await;
    assert_eq!((first.status, first.body["coalesced"].as_bool()), (202, Some(false)), "{}", first.raw);
    run_queued_syncs(&env).await;
    let refused = env.request("POST", Some("team-a"), &path, None).await;
    assert_eq!((refused.status, refused.code()), (429, "rate_limited"), "{}", refused.raw);
    assert_eq!(refused.body["error"]["details"]["limit"], "sync_cooldown");
    assert_eq!(refused.body["error"]["details"]["cooldown_seconds"], 3600);
    // The wait is what is left of the cooldown, not all of it.
    let wait = refused.body["error"]["details"]["retry_after_seconds"].as_u64().expect("wait");
    assert!((3590..=3600).contains(&wait), "{wait}");
    // Another integration has its own cooldown.
    let other = env.connect("team-a", demo::API).await["id"].as_str().expect("id").to_owned();
    assert_eq!(
        env.request("POST", Some("team-a"), &format!("/integrations/gitlab/{other}/sync"), None).await.status,
        202
    );
}

#[tokio::test]
async fn progress_is_shown_while_a_sync_runs() {
    let env = env("sync_progress").sim(SimConfig::with_generated_projects(3_000)).with_workers().start().await;
    let (id, _) = connect_and_sync(&env).await;
    env.sim.set_latency(Duration::from_millis(150));
    let accepted = env.request("POST", Some("team-a"), &format!("/integrations/gitlab/{id}/sync"), None).await;
    let sync_id = accepted.body["sync_id"].as_str().expect("id").to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let progress = loop {
        let status = sync_status(&env, &id).await;
        let current = &status["current"];
        if current["sync_id"] == sync_id.as_str()
            && current["state"] == "running"
            && current["progress"]["pages"].as_u64().unwrap_or(0) > 0
        {
            break current.clone();
        }
        assert!(status["last"]["sync_id"] != sync_id.as_str(), "the run finished before progress was seen: {status}");
        assert!(tokio::time::Instant::now() < deadline, "no progress shown: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(progress["projects"]["seen"].as_u64().is_some_and(|n| n > 0), "{progress}");
    assert!(progress["requests"].as_u64().is_some_and(|n| n > 0), "{progress}");
    assert!(progress["progress"]["pages_per_second"].as_f64().is_some_and(|r| r > 0.0), "{progress}");
    assert!(progress["updated_at"].is_string(), "{progress}");
    let estimate = progress["progress"]["estimated_projects"].as_u64().expect("estimate from the id space");
    assert!((2_000..=4_000).contains(&estimate), "{estimate}");
}
