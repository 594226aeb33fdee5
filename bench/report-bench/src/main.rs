//! `make bench-report`: 50 merge requests on a repository with planted credentials, each adding
//! one more; for each, the time from the simulator raising the merge request event (delivered
//! to the local host's webhook path) to the connector's summary note being present in the
//! simulator, with the scan's fetch and scan times and the rest (queueing, storing, writing to
//! GitLab), and the GitLab requests each merge request cost, reads and writes apart. Against
//! moto on loopback. Report: target/bench/report.json.
use std::time::{Duration, Instant};

use gitlab_sim::{TestRepo, planted_secrets};
use serde_json::{Value, json};

type Error = Box<dyn std::error::Error + Send + Sync>;

const MERGE_REQUESTS: u64 = 50;

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

fn stats(mut v: Vec<f64>) -> Value {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    json!({ "n": v.len(), "p50_ms": quantile(&mut v, 0.5), "p95_ms": quantile(&mut v, 0.95), "mean_ms": mean })
}

fn counts(mut v: Vec<f64>) -> Value {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    json!({ "p50": quantile(&mut v, 0.5), "max": quantile(&mut v, 1.0), "mean": mean })
}

/// Milliseconds between two RFC 3339 times of a scan record.
fn between(from: &Value, to: time::OffsetDateTime) -> f64 {
    let rfc = time::format_description::well_known::Rfc3339;
    from.as_str()
        .and_then(|t| time::OffsetDateTime::parse(t, &rfc).ok())
        .map_or(0.0, |t| (to - t).as_seconds_f64() * 1000.0)
}

async fn call(http: &reqwest::Client, method: reqwest::Method, url: &str, body: Option<Value>) -> Result<Value, Error> {
    let mut request = http.request(method, url).header("x-team-id", "bench");
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_string());
    }
    let bytes = request.send().await?.bytes().await?;
    Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let dir = std::env::temp_dir().join(format!("report-bench-{}", std::process::id()));
    let mut repo = TestRepo::init(dir.join("backend.git"))?;
    let base = repo.commit(&planted_secrets(), "planted", &[])?;
    repo.branch("main", &base)?;
    for iid in 1..=MERGE_REQUESTS {
        let path = format!("src/mr{iid}.rs");
        let tree = planted_secrets().file(&path, format!("const T: &str = \"glpat-SIMbench0mr{iid:04}Tok00\";\n"));
        let head = repo.commit(&tree, &format!("merge request {iid}"), &[&base])?;
        repo.branch(&format!("feature-{iid}"), &head)?;
        repo.merge_request(iid, &head)?;
    }
    let sim = gitlab_sim::start(gitlab_sim::SimConfig::default(), ([127, 0, 0, 1], 0).into()).await?;
    sim.set_repository(1, Some(repo.path().to_path_buf()));
    for iid in 1..=MERGE_REQUESTS {
        sim.open_merge_request(1, iid, &format!("feature-{iid}"), "main", &format!("Change {iid}"));
    }
    let mut options =
        local_host::StackOptions::new(format!("bench-report-{}", time::OffsetDateTime::now_utc().unix_timestamp()));
    options.overrides.insert("OUTBOUND_ALLOWLIST".into(), "127.0.0.1/32".into());
    let stack = local_host::Stack::start(options).await?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let body = json!({ "instance_url": sim.base_url(), "token": gitlab_sim::demo::API, "ca_certificate": sim.ca_pem });
    let created = call(&http, reqwest::Method::POST, &format!("{}/integrations/gitlab", stack.url), Some(body)).await?;
    let id = created["id"].as_str().ok_or("connect failed")?.to_owned();
    let base_url = format!("{}/integrations/gitlab/{id}", stack.url);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tracked =
            call(&http, reqwest::Method::PATCH, &format!("{base_url}/repositories"), Some(json!({ "track": [1] })))
                .await?;
        if tracked["tracked"].is_number() {
            break;
        }
        if Instant::now() > deadline {
            return Err("the first sync did not finish".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    while sim.hooks().is_empty() {
        if Instant::now() > deadline {
            return Err("the hook was not created".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The default branch scanned first, as it would be in use: merge requests are compared with it.
    let started =
        call(&http, reqwest::Method::POST, &format!("{base_url}/repositories/1/scans"), Some(json!({}))).await?;
    let scan_id = started["scan_id"].as_str().ok_or("scan")?.to_owned();
    loop {
        let scan = call(&http, reqwest::Method::GET, &format!("{base_url}/scans/{scan_id}?limit=1"), None).await?;
        if scan["state"] == "succeeded" && !scan["report"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let sim_http = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(sim.ca_pem.as_bytes())?])
        .build()?;
    let (mut total, mut fetch, mut scan_ms, mut rest) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut to_worker, mut to_note) = (Vec::new(), Vec::new());
    let (mut reads, mut writes, mut git) = (Vec::new(), Vec::new(), Vec::new());
    for iid in 1..=MERGE_REQUESTS {
        let before = sim.requests().len();
        let t0 = Instant::now();
        let raised = sim_http
            .post(format!("{}/-/sim/projects/1/events", sim.base_url()))
            .body(json!({ "kind": "merge_request", "iid": iid, "action": "open" }).to_string())
            .send()
            .await?;
        if !raised.status().is_success() {
            return Err("the simulator did not raise the event".into());
        }
        let marker = format!("<!-- gitlab-connector:summary integration={id} ");
        loop {
            if sim.notes(1, iid).iter().any(|n| n.body.starts_with(&marker)) {
                break;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                return Err(format!("no summary note on merge request {iid}").into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let elapsed = t0.elapsed().as_secs_f64() * 1000.0;
        let seen_at = time::OffsetDateTime::now_utc();
        // Let the rest of the report (threads, status) land before counting requests.
        let settle = Instant::now();
        let scan = loop {
            let list =
                call(&http, reqwest::Method::GET, &format!("{base_url}/scans?project_id=1&limit=5"), None).await?;
            let found = list["items"]
                .as_array()
                .and_then(|items| {
                    items
                        .iter()
                        .find(|s| s["ref"] == format!("refs/merge-requests/{iid}/head") && !s["report"].is_null())
                })
                .cloned();
            if let Some(scan) = found {
                break scan;
            }
            if settle.elapsed() > Duration::from_secs(30) {
                return Err("the scan record never showed its report".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let f =
            scan["stats"]["fetch_ms"].as_f64().unwrap_or(0.0) + scan["stats"]["checkout_ms"].as_f64().unwrap_or(0.0);
        let s = scan["stats"]["scan_ms"].as_f64().unwrap_or(0.0);
        let parse = |v: &Value| {
            v.as_str().and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        };
        if let (Some(started), Some(finished)) = (parse(&scan["started_at"]), parse(&scan["finished_at"])) {
            // The webhook's record time to the worker's start: delivery, queue, claim, checks.
            to_worker.push(between(&scan["created_at"], started));
            // Results stored to the note seen: storing and the GitLab report.
            to_note.push((seen_at - finished).as_seconds_f64() * 1000.0);
        }
        total.push(elapsed);
        fetch.push(f);
        scan_ms.push(s);
        rest.push((elapsed - f - s).max(0.0));
        let requests = sim.requests();
        let mine = &requests[before..];
        git.push(mine.iter().filter(|r| r.path.contains(".git/")).count() as f64);
        let api = mine.iter().filter(|r| r.path.contains("/api/v4/") && !r.path.contains("/hooks"));
        let (w, r): (Vec<_>, Vec<_>) = api.partition(|r| r.method != "GET");
        reads.push(r.len() as f64);
        writes.push(w.len() as f64);
    }
    let sum = |v: &[f64]| v.iter().sum::<f64>();
    let all = sum(&total);
    let report = json!({
        "merge_requests": MERGE_REQUESTS,
        "event_to_summary_note": stats(total.clone()),
        "share": {
            "fetch_and_checkout": sum(&fetch) / all,
            "scan": sum(&scan_ms) / all,
            "delivery_queue_store_and_gitlab_writes": sum(&rest) / all,
        },
        "fetch_ms": stats(fetch),
        "scan_ms": stats(scan_ms),
        "webhook_record_to_worker_start_ms": stats(to_worker),
        "results_stored_to_note_seen_ms": stats(to_note),
        "gitlab_requests_per_merge_request": {
            "api_reads": counts(reads),
            "api_writes": counts(writes),
            "git_http": counts(git),
        },
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    std::fs::create_dir_all("target/bench")?;
    std::fs::write("target/bench/report.json", serde_json::to_vec_pretty(&report)?)?;
    drop(stack);
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
