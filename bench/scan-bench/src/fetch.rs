//! `scan-bench fetch [runs]`: the scan worker's fetch (gitoxide through the pinned client, depth
//! 1, protocol v2, tree written under the checkout rules) of the tip of a repository with more
//! than 50 MB of history, served by the GitLab simulator, next to `git` doing the same in the
//! same run: `git fetch --depth 1 <url> <sha>` plus a checkout of it, which is what
//! `git clone --depth 1` of one commit amounts to. Prints one JSON line: seconds (best and
//! median) and bytes the simulator sent, for both, and this process's peak RSS.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use base64::Engine;
use gitlab_sim::{HistorySpec, SimConfig, TestRepo};
use secrecy::SecretString;
use shared::adapters::git::{FetchLimits, FetchSpec, JobDir, fetch_commit};
use shared::adapters::gitlab::{GitlabSettings, ReqwestGitlab};
use shared::domain::scan::CommitSha;
use shared::domain::url_policy::InstanceUrl;
use shared::ports::GitlabGateway;

const TOKEN: &str = gitlab_sim::demo::API;

fn stats(mut v: Vec<f64>) -> serde_json::Value {
    v.sort_by(f64::total_cmp);
    serde_json::json!({ "best": v[0], "median": v[v.len() / 2], "runs": v })
}

/// Peak resident set of this process (kB), from `/proc/self/status`.
pub(crate) fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn git(dir: &Path, ca: &Path, args: &[&str]) -> Result<(), Box<dyn std::error::Error>> {
    let header =
        format!("Authorization: Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("oauth2:{TOKEN}")));
    let status = tokio::process::Command::new("git")
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_SSL_CAINFO", ca)
        // The header goes through the environment, as the security policy's recipe does.
        .env("GIT_CONFIG_COUNT", "2")
        .env("GIT_CONFIG_KEY_0", "http.extraHeader")
        .env("GIT_CONFIG_VALUE_0", header)
        .env("GIT_CONFIG_KEY_1", "protocol.version")
        .env("GIT_CONFIG_VALUE_1", "2")
        .args(args)
        .status()
        .await?;
    if !status.success() {
        return Err(format!("git {args:?} failed").into());
    }
    Ok(())
}

pub(crate) async fn run(runs: usize, work: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work)?;
    let started = Instant::now();
    let mut repo = TestRepo::init(work.join("history.git"))?;
    let history = repo.generate_history("main", &HistorySpec::benchmark())?;
    eprintln!(
        "repository: {} MB of history, tip tree {} MB, generated in {:.1} s",
        history.history_bytes / 1_000_000,
        history.tip_tree_bytes / 1_000_000,
        started.elapsed().as_secs_f64()
    );
    let mut config = SimConfig::default();
    config.projects[0].repo = Some(repo.path().to_path_buf());
    let path = config.projects[0].path_with_namespace.clone();
    let sim = gitlab_sim::start(config, SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let ca = work.join("ca.pem");
    std::fs::write(&ca, &sim.ca_pem)?;

    let settings =
        GitlabSettings::from_vars(&|k: &str| (k == "OUTBOUND_ALLOWLIST").then(|| "127.0.0.1/32".to_owned()))?;
    let gitlab = ReqwestGitlab::new(settings.clone());
    let url = InstanceUrl::parse(&sim.base_url(), &settings.policy).map_err(|r| r.message)?;
    let instance = gitlab.resolve(&url).await.map_err(|r| r.message)?;
    let commit = CommitSha::parse(&history.tip).ok_or("tip")?;
    let spec = FetchSpec { project_path: path.clone(), commit, ref_name: Some("refs/heads/main".into()) };
    let limits = FetchLimits::default();
    let jobs = work.join("jobs");
    std::fs::create_dir_all(&jobs)?;

    let (mut ours, mut ours_bytes, mut received) = (Vec::new(), 0, 0);
    let (mut theirs, mut theirs_bytes) = (Vec::new(), 0);
    // Interleaved, so machine noise hits both alike.
    for _ in 0..runs {
        let client = gitlab.client(&instance, Some(&sim.ca_pem), SecretString::from(TOKEN))?;
        let job = JobDir::create(&jobs)?;
        let before = sim.git_bytes_sent();
        let t = Instant::now();
        let fetched = fetch_commit(&client, &spec, job.path(), &limits).await?;
        ours.push(t.elapsed().as_secs_f64());
        ours_bytes = sim.git_bytes_sent() - before;
        received = fetched.bytes_received;
        job.remove()?;

        let dir = jobs.join("git");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let before = sim.git_bytes_sent();
        let t = Instant::now();
        let url = format!("{}/{path}.git", sim.base_url());
        git(&dir, &ca, &["init", "-q", "--template=", "."]).await?;
        git(&dir, &ca, &["fetch", "-q", "--depth", "1", "--no-tags", &url, &history.tip]).await?;
        git(&dir, &ca, &["-c", "advice.detachedHead=false", "checkout", "-q", "FETCH_HEAD"]).await?;
        theirs.push(t.elapsed().as_secs_f64());
        theirs_bytes = sim.git_bytes_sent() - before;
        std::fs::remove_dir_all(&dir)?;
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "{}",
        serde_json::json!({
            "history_bytes": history.history_bytes,
            "tip_tree_bytes": history.tip_tree_bytes,
            "connector": { "seconds": stats(ours.clone()), "bytes_sent_by_gitlab": ours_bytes, "bytes_received": received },
            "git_depth_1": { "seconds": stats(theirs.clone()), "bytes_sent_by_gitlab": theirs_bytes, "version": String::from_utf8_lossy(&std::process::Command::new("git").arg("--version").output()?.stdout).trim() },
            "ratios": { "time_best": best(&ours) / best(&theirs), "bytes": ours_bytes as f64 / theirs_bytes.max(1) as f64 },
            "targets": { "time": "<= 1.2", "bytes": "<= 1.2" },
            "peak_rss_kb": peak_rss_kb(),
        })
    );
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(work);
    Ok(())
}
