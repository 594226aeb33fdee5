//! `make bench-webhook`: (a) the handler's time per 50 KB merge request delivery with in-memory
//! ports; (b) latency of deliveries through the local host against moto, next to the bare
//! conditional write + queue send the handler makes, interleaved in one run; (c) a burst of
//! 1,000 deliveries with 10 % duplicates, each distinct one on its own head commit: each queued once,
//! and the scan worker's claim (the conditional write it makes before any work) turning whatever
//! reached the queue into one scan per scan key. Report: target/bench/webhook.json.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use shared::domain::ids::{IntegrationId, TeamId};
use shared::domain::integration::webhook_secret_digest;
use shared::ports::IntegrationStore;
use shared::testing::{InMemoryIntegrationStore, InMemorySigningKeys, InMemoryWebhookStore, RecordingJobQueue};

type Error = Box<dyn std::error::Error + Send + Sync>;

const MR: &str = include_str!("../../../tests/fixtures/webhooks/merge_request.json");
const SECRET: &str = "5f0c1d2e3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentiles(mut v: Vec<Duration>) -> Value {
    v.sort();
    let at = |q: f64| ms(v[((v.len() as f64 * q) as usize).min(v.len() - 1)]);
    json!({ "n": v.len(), "p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99), "max_ms": at(1.0) })
}

/// GitLab's merge request example with a description that brings it to about 50 KB.
fn payload_50k() -> String {
    let mut v: Value = serde_json::from_str(MR).expect("fixture");
    let pad = 50 * 1024 - MR.len();
    v["object_attributes"]["description"] = json!("Lorem ipsum dolor sit amet. ".repeat(pad / 28));
    v.to_string()
}

fn function_url_event(id: &str, key: &str, body: &str) -> String {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": format!("/webhooks/gitlab/{id}"),
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "x-gitlab-event": "Merge Request Hook",
            "x-gitlab-token": SECRET,
            "idempotency-key": key,
        },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "bench",
            "domainName": "bench.lambda-url.us-east-1.on.aws",
            "domainPrefix": "bench",
            "http": { "method": "POST", "path": format!("/webhooks/gitlab/{id}"), "protocol": "HTTP/1.1", "sourceIp": "203.0.113.1", "userAgent": "GitLab/17.8.1" },
            "requestId": key,
            "routeKey": "$default",
            "stage": "$default",
            "time": "02/Dec/2026:10:00:00 +0000",
            "timeEpoch": 1_796_205_600_000u64,
        },
        "body": body,
        "isBase64Encoded": false,
    })
    .to_string()
}

/// (a) `handle` with in-memory ports: parsing, authentication, routing, the record and the send.
async fn handler_time(runs: usize) -> Result<Value, Error> {
    let integrations = Arc::new(InMemoryIntegrationStore::default());
    let webhooks = Arc::new(InMemoryWebhookStore::default());
    let id = IntegrationId::generate();
    let mut integration = shared::testing::sample_integration(&TeamId::parse("bench").ok_or("team")?, &id);
    integration.webhook_secret_sha256 = webhook_secret_digest(SECRET);
    integrations.insert(&integration).await?;
    webhooks.set_tracked(&id, 1, true);
    let deps = webhook::Deps {
        directory: integrations,
        deliveries: webhooks,
        state: Arc::new(InMemoryWebhookStore::default()),
        keys: Arc::new(InMemorySigningKeys::default()),
        queue: Arc::new(RecordingJobQueue::default()),
        cache: Arc::new(webhook::Cache::new(Duration::from_secs(30))),
        max_body_bytes: 2 * 1024 * 1024,
        dedup_ttl: Duration::from_secs(96 * 3600),
    };
    let body = payload_50k();
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs + 200 {
        let request = lambda_http::request::from_str(&function_url_event(id.as_str(), &format!("a-{i}"), &body))?;
        let start = Instant::now();
        let response = webhook::handle(&deps, request).await?;
        let took = start.elapsed();
        if response.status() != 200 {
            return Err(format!("handler answered {}", response.status()).into());
        }
        // The first 200 warm the cache and the allocator.
        if i >= 200 {
            times.push(took);
        }
    }
    Ok(json!({ "payload_bytes": body.len(), "handler": percentiles(times) }))
}

struct Live {
    http: reqwest::Client,
    url: String,
    secret: String,
}

impl Live {
    async fn deliver(&self, key: &str, body: &str) -> Result<(u16, Value), Error> {
        let resp = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("x-gitlab-event", "Merge Request Hook")
            .header("x-gitlab-token", &self.secret)
            .header("idempotency-key", key)
            .body(body.to_owned())
            .send()
            .await?;
        let status = resp.status().as_u16();
        Ok((status, serde_json::from_slice(&resp.bytes().await?).unwrap_or(Value::Null)))
    }
}

/// Every message on the queue, each received once and deleted.
async fn drain(sqs: &aws_sdk_sqs::Client, queue: &str) -> Result<Vec<Value>, Error> {
    let mut out = Vec::new();
    let mut empty = 0;
    while empty < 2 {
        let batch =
            sqs.receive_message().queue_url(queue).max_number_of_messages(10).wait_time_seconds(1).send().await?;
        let messages = batch.messages.unwrap_or_default();
        if messages.is_empty() {
            empty += 1;
            continue;
        }
        for m in messages {
            out.push(serde_json::from_str(m.body().unwrap_or("null"))?);
            if let Some(handle) = m.receipt_handle() {
                sqs.delete_message().queue_url(queue).receipt_handle(handle).send().await?;
            }
        }
    }
    Ok(out)
}

async fn setup() -> Result<(local_host::Stack, gitlab_sim::RunningSim, Live), Error> {
    let sim = gitlab_sim::start(gitlab_sim::SimConfig::default(), ([127, 0, 0, 1], 0).into()).await?;
    let mut options =
        local_host::StackOptions::new(format!("bench-wh-{}", time::OffsetDateTime::now_utc().unix_timestamp()));
    options.overrides.insert("OUTBOUND_ALLOWLIST".into(), "127.0.0.1/32".into());
    // The queue is read here, not by the scan worker: every message stays to be counted, and
    // no scan competes with the deliveries for moto.
    options.run_scan_worker = false;
    // The webhook's own settings (timeouts, cache) can be tried out from the environment.
    options.overrides.extend(std::env::vars().filter(|(k, _)| k.starts_with("WEBHOOK_")));
    let stack = local_host::Stack::start(options).await?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let body = json!({ "instance_url": sim.base_url(), "token": gitlab_sim::demo::API, "ca_certificate": sim.ca_pem });
    let created = http
        .post(format!("{}/integrations/gitlab", stack.url))
        .header("x-team-id", "bench")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?
        .bytes()
        .await?;
    let created: Value = serde_json::from_slice(&created)?;
    let id = created["id"].as_str().ok_or("connect failed")?.to_owned();
    let repos = format!("{}/integrations/gitlab/{id}/repositories", stack.url);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tracked = http
            .patch(&repos)
            .header("x-team-id", "bench")
            .header("content-type", "application/json")
            .body(json!({ "track": [1] }).to_string())
            .send()
            .await?;
        if tracked.status() == 200 {
            break;
        }
        if Instant::now() > deadline {
            return Err("the first sync did not finish".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let live = Live {
        http,
        url: created["webhook"]["url"].as_str().ok_or("url")?.to_owned(),
        secret: created["webhook"]["secret"].as_str().ok_or("secret")?.to_owned(),
    };
    Ok((stack, sim, live))
}

/// (b) Deliveries through the local host, each followed by the bare write + send it makes.
async fn latency(stack: &local_host::Stack, live: &Live, runs: usize) -> Result<Value, Error> {
    let dynamo = aws_sdk_dynamodb::Client::new(&stack.sdk);
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let table = stack.table("Table").ok_or("table")?.to_owned();
    let queue = stack.queue_url("ScanQueue").ok_or("queue")?.to_owned();
    let message = serde_json::to_string(&json!({
        "type": "scan_requested", "version": 1, "team_id": "bench", "integration_id": "0".repeat(32),
        "project_id": 1, "target": { "kind": "merge_request", "iid": 1, "target_branch": "master" },
        "head_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "trigger": "merge_request",
        "delivery_id": "idem:bare", "requested_at": "2026-12-02T10:00:00Z",
    }))?;
    let body = payload_50k();
    let (mut ours, mut bare) = (Vec::new(), Vec::new());
    for i in 0..runs + 20 {
        let start = Instant::now();
        let (status, _) = live.deliver(&format!("b-{i}"), &body).await?;
        let took = start.elapsed();
        if status != 200 {
            return Err(format!("delivery answered {status}").into());
        }
        let start = Instant::now();
        dynamo
            .put_item()
            .table_name(&table)
            .item("pk", AttributeValue::S("BENCH".into()))
            .item("sk", AttributeValue::S(format!("DELIVERY#bare-{i}")))
            .item("messages", AttributeValue::S(message.clone()))
            .item("ttl", AttributeValue::N("1900000000".into()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await?;
        sqs.send_message().queue_url(&queue).message_body(&message).send().await?;
        let bare_took = start.elapsed();
        if i >= 20 {
            ours.push(took);
            bare.push(bare_took);
        }
    }
    drain(&sqs, &queue).await?;
    let median = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        v[v.len() / 2]
    };
    let added = ms(median(&ours)) / ms(median(&bare)) - 1.0;
    Ok(json!({
        "webhook_through_local_host": percentiles(ours),
        "bare_put_and_send": percentiles(bare),
        "median_added_percent": (added * 1000.0).round() / 10.0,
    }))
}

/// In flight at once during the burst (`BENCH_WEBHOOK_IN_FLIGHT`): by default the template's
/// `WebhookReservedConcurrency` default, the most deliveries the deployed function handles at once.
fn in_flight() -> usize {
    std::env::var("BENCH_WEBHOOK_IN_FLIGHT").ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(20)
}

/// (c) 1,000 deliveries, [`in_flight`] at a time, 100 of them repeating an earlier key.
async fn burst(stack: &local_host::Stack, live: Arc<Live>) -> Result<Value, Error> {
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let queue = stack.queue_url("ScanQueue").ok_or("queue")?.to_owned();
    drain(&sqs, &queue).await?;
    // Every tenth delivery repeats the key and body of the one nine before it; the others each
    // carry their own head commit, so each distinct delivery asks for its own scan.
    let originals: Vec<usize> = (0..1000).map(|i| if i % 10 == 9 { i - 9 } else { i }).collect();
    let keys: Vec<String> = originals.iter().map(|i| format!("c-{i}")).collect();
    let unique: std::collections::HashSet<&String> = keys.iter().collect();
    let template: Value = serde_json::from_str(MR)?;
    let bodies: Vec<Arc<String>> = originals
        .iter()
        .map(|i| {
            let mut v = template.clone();
            v["object_attributes"]["last_commit"]["id"] = json!(format!("{:040x}", 0xc0ff_ee00_u64 + *i as u64));
            Arc::new(v.to_string())
        })
        .collect();
    let in_flight = in_flight();
    let gate = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (key, body) in keys.clone().into_iter().zip(bodies) {
        let (live, gate) = (Arc::clone(&live), Arc::clone(&gate));
        tasks.spawn(async move {
            let _permit = gate.acquire().await;
            let start = Instant::now();
            let answer = live.deliver(&key, &body).await;
            answer.map(|(s, b)| (s, b["status"].as_str().unwrap_or("").to_owned(), start.elapsed()))
        });
    }
    let mut answers: HashMap<String, u64> = HashMap::new();
    let mut times = Vec::with_capacity(keys.len());
    while let Some(done) = tasks.join_next().await {
        let (status, kind, took) = done??;
        *answers.entry(format!("{status} {kind}")).or_default() += 1;
        times.push(took);
    }
    let elapsed = started.elapsed();
    // A send that timed out leaves its delivery marked unsent; the schedule's replay sends it.
    let replayed = sync::replay::replay_deliveries(&stack.sync_deps).await?;
    let messages = drain(&sqs, &queue).await?;
    let mut per_delivery: HashMap<String, u64> = HashMap::new();
    for m in &messages {
        *per_delivery.entry(m["delivery_id"].as_str().unwrap_or("").to_owned()).or_default() += 1;
    }
    let queued_once = per_delivery.values().filter(|n| **n == 1).count();
    // What the scan worker makes of the queue: every message claims its scan key first; only a
    // claim that wins starts a scan.
    let store = shared::adapters::dynamodb_scans::DynamoScanStore::new(
        aws_sdk_dynamodb::Client::new(&stack.sdk),
        stack.table("Table").ok_or("table")?,
    );
    let (mut started_scans, mut scan_keys) = (0u64, std::collections::HashSet::new());
    for (i, m) in messages.iter().enumerate() {
        let Ok(shared::messages::Message::ScanRequested(request)) = serde_json::from_value(m.clone()) else {
            continue;
        };
        scan_keys.insert(request.scan_key());
        let scan_id = format!("{:025x}", i + 1);
        let claim = shared::ports::ScanStore::claim(
            &store,
            &request.team_id,
            &request.integration_id,
            &request.scan_key(),
            &scan_id,
            None,
        )
        .await?;
        if claim.is_none() {
            started_scans += 1;
        }
    }
    Ok(json!({
        "deliveries": keys.len(),
        "in_flight": in_flight,
        "answer_time": percentiles(times),
        "distinct_keys": unique.len(),
        "answers": answers,
        "seconds": elapsed.as_secs_f64(),
        "replayed_after_a_send_timeout": replayed,
        "messages": messages.len(),
        "distinct_delivery_ids": per_delivery.len(),
        "queued_exactly_once": queued_once,
        "lost": unique.len() - per_delivery.len().min(unique.len()),
        "scan_keys": scan_keys.len(),
        "scans_started_by_worker_claims": started_scans,
    }))
}

/// Which parts to run (`BENCH_WEBHOOK_PARTS`, default `abc`); the report keeps the others'
/// figures out.
fn part(name: char) -> bool {
    std::env::var("BENCH_WEBHOOK_PARTS").map_or(true, |p| p.contains(name))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut report = json!({});
    if part('a') {
        let handler = handler_time(5000).await?;
        println!("(a) handler, 50 KB merge request, in-memory ports: {handler}");
        report["handler"] = handler;
    }
    if part('b') || part('c') {
        let (stack, _sim, live) = setup().await?;
        if part('b') {
            let latency = latency(&stack, &live, 300).await?;
            println!("(b) through the local host against moto: {latency}");
            report["latency"] = latency;
        }
        if part('c') {
            let burst = burst(&stack, Arc::new(live)).await?;
            println!("(c) burst: {burst}");
            report["burst"] = burst;
        }
    }
    std::fs::create_dir_all("target/bench")?;
    std::fs::write("target/bench/webhook.json", serde_json::to_vec_pretty(&report)?)?;
    Ok(())
}
