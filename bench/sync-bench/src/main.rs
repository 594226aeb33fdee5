//! `make bench-sync`: lists N projects from the simulator (latency per request) with the
//! connector and with python-gitlab in one run, then times a full sync against moto twice.
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use secrecy::SecretString;
use shared::adapters::gitlab::{GitlabSettings, ReqwestGitlab};
use shared::domain::address::Allowlist;
use shared::domain::ids::{IntegrationId, TeamId};
use shared::domain::listing::ListingSettings;
use shared::domain::project::StoredRef;
use shared::domain::sync::{Checkpoint, SyncRun, SyncStatus};
use shared::domain::url_policy::{InstanceUrl, UrlPolicy};
use shared::messages::{MESSAGE_VERSION, SyncReason, SyncRequested};
use shared::ports::{
    CheckpointStore, GitlabGateway, PortError, ProjectPage, ProjectQuery, ProjectStore, ProjectWrite, SyncStateStore,
};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn proc_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// Times every DynamoDB call of the sync and counts checkpoint saves.
struct Timed<S> {
    inner: Arc<S>,
    nanos: AtomicU64,
    checkpoints: AtomicU64,
}

impl<S> Timed<S> {
    fn add(&self, since: Instant) {
        self.nanos.fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

#[async_trait]
impl<S: ProjectStore + SyncStateStore> ProjectStore for Timed<S> {
    async fn stored_refs(&self, t: &TeamId, i: &IntegrationId) -> Result<HashMap<u64, StoredRef>, PortError> {
        let s = Instant::now();
        let r = self.inner.stored_refs(t, i).await;
        self.add(s);
        r
    }
    async fn write_projects(
        &self,
        t: &TeamId,
        i: &IntegrationId,
        id: &str,
        w: &[ProjectWrite],
    ) -> Result<u64, PortError> {
        let s = Instant::now();
        let r = self.inner.write_projects(t, i, id, w).await;
        self.add(s);
        r
    }
    async fn set_details(
        &self,
        t: &TeamId,
        i: &IntegrationId,
        p: u64,
        l: &BTreeMap<String, f64>,
        f: &str,
    ) -> Result<(), PortError> {
        let s = Instant::now();
        let r = self.inner.set_details(t, i, p, l, f).await;
        self.add(s);
        r
    }
    async fn list_projects(&self, t: &TeamId, i: &IntegrationId, q: &ProjectQuery) -> Result<ProjectPage, PortError> {
        self.inner.list_projects(t, i, q).await
    }
    async fn hook_targets(
        &self,
        t: &TeamId,
        i: &IntegrationId,
    ) -> Result<Vec<shared::domain::project::HookTarget>, PortError> {
        self.inner.hook_targets(t, i).await
    }
    async fn set_hook(
        &self,
        t: &TeamId,
        i: &IntegrationId,
        p: u64,
        h: Option<&shared::domain::project::HookRecord>,
    ) -> Result<(), PortError> {
        self.inner.set_hook(t, i, p, h).await
    }
    async fn set_tracking(
        &self,
        t: &TeamId,
        i: &IntegrationId,
        a: &[u64],
        b: &[u64],
        m: Option<u64>,
    ) -> Result<shared::ports::TrackingResult, PortError> {
        self.inner.set_tracking(t, i, a, b, m).await
    }
}

#[async_trait]
impl<S: ProjectStore + SyncStateStore> SyncStateStore for Timed<S> {
    async fn acquire_lease(
        &self,
        t: &TeamId,
        i: &IntegrationId,
        h: &str,
        u: time::OffsetDateTime,
        n: time::OffsetDateTime,
    ) -> Result<bool, PortError> {
        let s = Instant::now();
        let r = self.inner.acquire_lease(t, i, h, u, n).await;
        self.add(s);
        r
    }
    async fn release_lease(&self, t: &TeamId, i: &IntegrationId, h: &str) -> Result<(), PortError> {
        let s = Instant::now();
        let r = self.inner.release_lease(t, i, h).await;
        self.add(s);
        r
    }
    async fn save_run(&self, t: &TeamId, i: &IntegrationId, run: &SyncRun) -> Result<(), PortError> {
        let s = Instant::now();
        let r = self.inner.save_run(t, i, run).await;
        self.add(s);
        r
    }
    async fn sync_status(&self, t: &TeamId, i: &IntegrationId) -> Result<SyncStatus, PortError> {
        self.inner.sync_status(t, i).await
    }
    async fn queue_request(
        &self,
        t: &TeamId,
        i: &IntegrationId,
        q: &shared::domain::sync::QueuedSync,
        n: time::OffsetDateTime,
        c: Option<std::time::Duration>,
    ) -> Result<bool, PortError> {
        self.inner.queue_request(t, i, q, n, c).await
    }
    async fn clear_queued(
        &self,
        t: &TeamId,
        i: &IntegrationId,
        q: &shared::domain::sync::QueuedSync,
    ) -> Result<(), PortError> {
        self.inner.clear_queued(t, i, q).await
    }
}

#[async_trait]
impl<S: CheckpointStore> CheckpointStore for Timed<S> {
    async fn save_checkpoint(&self, t: &TeamId, i: &IntegrationId, c: &Checkpoint) -> Result<u32, PortError> {
        let s = Instant::now();
        let r = self.inner.save_checkpoint(t, i, c).await;
        self.add(s);
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        r
    }
    async fn load_checkpoint(&self, t: &TeamId, i: &IntegrationId) -> Result<Option<Checkpoint>, PortError> {
        let s = Instant::now();
        let r = self.inner.load_checkpoint(t, i).await;
        self.add(s);
        r
    }
    async fn clear_checkpoint(&self, t: &TeamId, i: &IntegrationId) -> Result<(), PortError> {
        let s = Instant::now();
        let r = self.inner.clear_checkpoint(t, i).await;
        self.add(s);
        r
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let projects: usize = std::env::var("BENCH_PROJECTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let latency =
        Duration::from_millis(std::env::var("BENCH_LATENCY_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(50));
    let python = std::env::var("BENCH_PYTHON").unwrap_or_else(|_| ".venv-bench/bin/python".into());
    std::fs::create_dir_all("target/bench")?;

    let mut config = gitlab_sim::SimConfig::with_generated_projects(projects);
    config.latency = latency;
    let sim = gitlab_sim::start(config, ([127, 0, 0, 1], 0).into()).await?;
    let ca_file = "target/bench/sim-ca.pem";
    std::fs::write(ca_file, &sim.ca_pem)?;
    let token = gitlab_sim::demo::API;

    // 1. The connector's listing: every page fetched and decoded.
    let policy = UrlPolicy { allowlist: Allowlist::parse("127.0.0.1/32")?, denied_hosts: vec![] };
    let gitlab = ReqwestGitlab::new(GitlabSettings { policy: policy.clone(), ..GitlabSettings::default() });
    let instance = gitlab.resolve(&InstanceUrl::parse(&sim.base_url(), &policy)?).await.map_err(|e| e.message)?;
    sim.clear_requests();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<shared::domain::listing::Listed>(16);
    let counter = tokio::spawn(async move {
        let mut n = 0usize;
        while let Some(event) = rx.recv().await {
            if let shared::domain::listing::Listed::Page { projects, .. } = event {
                n += projects.len();
            }
        }
        n
    });
    let started = Instant::now();
    let report = gitlab
        .list_projects(
            &instance,
            Some(&sim.ca_pem),
            &SecretString::from(token.to_owned()),
            ListingSettings::default(),
            tx,
        )
        .await;
    report.result?;
    let stats = report.stats;
    let listed = counter.await?;
    let ours = started.elapsed();
    let our_requests = sim.requests().len();

    // 2. python-gitlab against the same simulator.
    sim.clear_requests();
    let out = std::process::Command::new(&python)
        .args(["bench/python_gitlab_list.py", &sim.base_url(), token, ca_file])
        .output()?;
    if !out.status.success() {
        return Err(format!("python-gitlab failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let reference: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let reference_requests = sim.requests().len();
    let theirs = reference["seconds"].as_f64().unwrap_or(f64::NAN);

    // 3. A full sync against moto, twice (the second over an unchanged instance).
    sim.clear_requests();
    let rss_before_sync = proc_status("VmRSS:");
    let mut options =
        local_host::StackOptions::new(format!("bench-{}", time::OffsetDateTime::now_utc().unix_timestamp()));
    options.run_workers = false;
    options.overrides.insert("OUTBOUND_ALLOWLIST".into(), "127.0.0.1/32".into());
    let stack = local_host::Stack::start(options).await?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let body = serde_json::json!({ "instance_url": sim.base_url(), "token": token, "ca_certificate": sim.ca_pem });
    let reply = http
        .post(format!("{}/integrations/gitlab", stack.url))
        .header("x-team-id", "bench")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?
        .text()
        .await?;
    let created: serde_json::Value = serde_json::from_str(&reply)?;
    let id = IntegrationId::parse(created["id"].as_str().ok_or("connect failed")?).ok_or("bad id")?;
    let env = stack.connect_env.clone();
    let vars = move |k: &str| match k {
        "TABLE_NAME" => env.get("TABLE_NAME").cloned(),
        "SYNC_QUEUE_URL" => env.get("SYNC_QUEUE_URL").cloned(),
        "OUTBOUND_ALLOWLIST" => Some("127.0.0.1/32".into()),
        "SYNC_CHECKPOINT_PAGES" => std::env::var("SYNC_CHECKPOINT_PAGES").ok(),
        _ => None,
    };
    let config = sync::Config::from_vars(&vars)?;
    let mut deps = sync::Deps::build(&config).await;
    let store = Arc::new(shared::adapters::dynamodb_projects::DynamoProjectStore::new(
        shared::adapters::DynamoClient::new(&stack.sdk),
        config.table_name.clone(),
    ));
    let timed = Arc::new(Timed { inner: store, nanos: AtomicU64::new(0), checkpoints: AtomicU64::new(0) });
    deps.projects = timed.clone();
    deps.sync_state = timed.clone();
    deps.checkpoints = timed.clone();
    let request = SyncRequested {
        version: MESSAGE_VERSION,
        team_id: TeamId::parse("bench").ok_or("team")?,
        integration_id: id,
        reason: SyncReason::Manual,
        requested_at: time::OffsetDateTime::now_utc(),
        sync_id: None,
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        timed.nanos.store(0, Ordering::Relaxed);
        timed.checkpoints.store(0, Ordering::Relaxed);
        let started = Instant::now();
        let outcome = sync::service::sync(&deps, &request, None).await?;
        let total = started.elapsed();
        let run = match outcome {
            sync::service::SyncOutcome::Completed { run }
            | sync::service::SyncOutcome::Failed { run }
            | sync::service::SyncOutcome::Checkpointed { run } => *run,
            other => return Err(format!("sync did not run: {other:?}").into()),
        };
        runs.push(serde_json::json!({
            "state": run.state, "error": run.error,
            "seconds": total.as_secs_f64(),
            "dynamodb_seconds": timed.nanos.load(Ordering::Relaxed) as f64 / 1e9,
            "seen": run.seen, "added": run.added, "unchanged": run.unchanged,
            "write_calls": run.write_calls, "gitlab_requests": run.requests,
            "checkpoint_saves": timed.checkpoints.load(Ordering::Relaxed),
            "rss_kib": proc_status("VmRSS:"),
        }));
    }
    let report = serde_json::json!({
        "projects": projects,
        "latency_ms": latency.as_millis() as u64,
        "listing": {
            "connector": { "seconds": ours.as_secs_f64(), "projects": listed, "requests": our_requests, "ranges": stats.ranges, "rate_limited": stats.rate_limited },
            "python_gitlab": { "seconds": theirs, "projects": reference["projects"], "requests": reference_requests, "version": reference["python_gitlab"] },
            "speedup": theirs / ours.as_secs_f64(),
        },
        "sync": { "first": runs[0], "second": runs[1] },
        "memory_kib": { "peak_rss": proc_status("VmHWM:"), "rss_before_sync": rss_before_sync, "rss_after_sync": proc_status("VmRSS:") },
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    std::fs::write("target/bench/sync.json", serde_json::to_vec_pretty(&report)?)?;
    Ok(())
}
