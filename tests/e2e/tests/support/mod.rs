//! Test environment: a GitLab simulator, a local stack with its own tables, queue and secret
//! prefix in the shared moto server, an HTTP client, and a capture of every log line.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use gitlab_sim::{RunningSim, SimConfig};
use local_host::{Stack, StackOptions};
use serde_json::Value;

pub use gitlab_sim::demo;

/// Every log line the process wrote, for the "no token in logs" checks.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log lock")).into_owned()
    }
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(buf);
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = std::io::stderr().write_all(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures logs at debug level for the whole process (nextest runs one test per process).
pub fn logs() -> Logs {
    logs_at("debug")
}

/// Captures logs for the whole process with the functions' own subscriber at `directives`
/// (`RUST_LOG` syntax); the first call in a process decides the level.
pub fn logs_at(directives: &str) -> Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let sink = logs.0.clone();
        let subscriber =
            shared::telemetry::subscriber(directives, shared::telemetry::Style::Local { ansi: false }, move || {
                LogWriter(sink.clone())
            });
        let _ = tracing::subscriber::set_global_default(subscriber);
        logs
    })
    .clone()
}

/// A unique stack name per test run: isolates tables, queues and secrets in the shared moto.
pub fn stack_name(test: &str) -> String {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    format!("e2e-{}-{}-{}", test.replace('_', "-"), std::process::id(), nanos % 1_000_000_000)
}

/// One answer: status and JSON body (Null when empty).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub raw: String,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

pub struct Env {
    pub stack: Stack,
    pub sim: RunningSim,
    pub http: reqwest::Client,
    pub logs: Logs,
    pub replies: Mutex<Vec<String>>,
}

pub struct EnvBuilder {
    test: String,
    sim: SimConfig,
    overrides: HashMap<String, String>,
    handlers: Vec<(String, local_host::queues::BatchHandler)>,
    workers: bool,
    scan_worker: bool,
    schedule_every: Option<std::time::Duration>,
}

impl EnvBuilder {
    pub fn sim(mut self, sim: SimConfig) -> Self {
        self.sim = sim;
        self
    }

    /// Binds a queue-triggered handler to a template queue, as an event source mapping would.
    pub fn queue_handler(mut self, queue: &str, handler: local_host::queues::BatchHandler) -> Self {
        self.handlers.push((queue.to_owned(), handler));
        self
    }

    /// Runs the sync function on the sync queue (off by default so tests can read the queue).
    pub fn with_workers(mut self) -> Self {
        self.workers = true;
        self
    }

    /// Runs the scan worker on the scan queue (off by default so tests can read scan requests).
    pub fn with_scan_worker(mut self) -> Self {
        self.scan_worker = true;
        self
    }

    /// Delivers schedule ticks this often (implies workers).
    pub fn schedule_every(mut self, every: std::time::Duration) -> Self {
        self.workers = true;
        self.schedule_every = Some(every);
        self
    }

    pub fn var(mut self, key: &str, value: &str) -> Self {
        self.overrides.insert(key.to_owned(), value.to_owned());
        self
    }

    pub async fn start(self) -> Env {
        assert!(
            std::env::var_os("AWS_ENDPOINT_URL").is_some(),
            "AWS_ENDPOINT_URL is not set: run the tests through `make test`, which starts the moto server"
        );
        let logs = logs();
        let sim = gitlab_sim::start(self.sim, SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("simulator starts");
        let mut options = StackOptions::new(stack_name(&self.test));
        options.overrides = self.overrides;
        options.queue_handlers = self.handlers;
        options.run_workers = self.workers;
        options.run_scan_worker = self.scan_worker;
        options.schedule_every = self.schedule_every;
        let stack = Stack::start(options).await.expect("local stack starts (is moto running?)");
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        Env { stack, sim, http, logs, replies: Mutex::new(Vec::new()) }
    }
}

/// Defaults for tests: the simulator's loopback address allowlisted, short GitLab timeouts.
pub fn env(test: &str) -> EnvBuilder {
    EnvBuilder {
        test: test.to_owned(),
        sim: SimConfig::default(),
        handlers: Vec::new(),
        workers: false,
        scan_worker: false,
        schedule_every: None,
        overrides: HashMap::from([
            ("OUTBOUND_ALLOWLIST".to_owned(), "127.0.0.1/32".to_owned()),
            ("GITLAB_CONNECT_TIMEOUT_MS".to_owned(), "2000".to_owned()),
            ("GITLAB_HTTP_TIMEOUT_MS".to_owned(), "3000".to_owned()),
            ("CONNECT_TESTS_PER_MINUTE".to_owned(), "1000".to_owned()),
            // Tests sync again and again; the cooldown has its own test.
            ("SYNC_COOLDOWN_SECONDS".to_owned(), "0".to_owned()),
            // The moto server on a loaded two-core machine answers far slower than DynamoDB and
            // SQS do; the webhook's production timeouts (1 s / 2.5 s) made deliveries 503 there.
            ("WEBHOOK_SDK_ATTEMPT_TIMEOUT_MS".to_owned(), "4000".to_owned()),
            ("WEBHOOK_SDK_OPERATION_TIMEOUT_MS".to_owned(), "9000".to_owned()),
            ("WEBHOOK_QUEUE_SEND_TIMEOUT_MS".to_owned(), "4000".to_owned()),
        ]),
    }
}

impl Env {
    pub async fn request(&self, method: &str, team: Option<&str>, path: &str, body: Option<(&str, Vec<u8>)>) -> Reply {
        let url = format!("{}{}", self.stack.url, path);
        let mut req = self.http.request(method.parse().expect("method"), url);
        if let Some(team) = team {
            req = req.header("x-team-id", team);
        }
        if let Some((content_type, bytes)) = body {
            req = req.header("content-type", content_type).body(bytes);
        }
        let resp = req.send().await.expect("local host answers");
        let status = resp.status().as_u16();
        let raw = resp.text().await.expect("body");
        self.replies.lock().expect("lock").push(raw.clone());
        let body = if raw.is_empty() { Value::Null } else { serde_json::from_str(&raw).unwrap_or(Value::Null) };
        Reply { status, body, raw }
    }

    pub async fn post(&self, team: &str, path: &str, body: &Value) -> Reply {
        self.request("POST", Some(team), path, Some(("application/json", body.to_string().into_bytes()))).await
    }

    pub async fn put(&self, team: &str, path: &str, body: &Value) -> Reply {
        self.request("PUT", Some(team), path, Some(("application/json", body.to_string().into_bytes()))).await
    }

    pub async fn get(&self, team: &str, path: &str) -> Reply {
        self.request("GET", Some(team), path, None).await
    }

    pub async fn delete(&self, team: &str, path: &str) -> Reply {
        self.request("DELETE", Some(team), path, None).await
    }

    /// The connect body for a simulator token, trusting the simulator's CA.
    pub fn connect_body(&self, token: &str) -> Value {
        serde_json::json!({ "instance_url": self.sim.base_url(), "token": token, "ca_certificate": self.sim.ca_pem })
    }

    /// Connects and returns the 201 body.
    pub async fn connect(&self, team: &str, token: &str) -> Value {
        let reply = self.post(team, "/integrations/gitlab", &self.connect_body(token)).await;
        assert_eq!(reply.status, 201, "connect failed: {}", reply.raw);
        reply.body
    }

    pub fn table(&self) -> String {
        self.stack.table("Table").expect("table").to_owned()
    }

    pub fn secret_prefix(&self) -> String {
        self.stack.connect_env["SECRET_PREFIX"].clone()
    }

    pub fn dynamo(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.stack.sdk)
    }

    pub fn secrets(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.stack.sdk)
    }

    /// Every item of the stack's table except the per-team rate-limit counters (`RATE#...`),
    /// which connection tests write even when they fail, and the integrations' `SYNC` items
    /// (the queued first sync that connect records).
    pub async fn items(&self) -> Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        self.all_items()
            .await
            .into_iter()
            .filter(|i| {
                !i.get("sk").and_then(|v| v.as_s().ok()).is_some_and(|sk| sk.starts_with("RATE#") || sk == "SYNC")
            })
            .collect()
    }

    /// Every item of the stack's table (all scan pages).
    pub async fn all_items(&self) -> Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .dynamo()
                .scan()
                .table_name(self.table())
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("scan");
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() {
                return items;
            }
        }
    }

    /// Messages waiting on the sync queue (received once, then left to expire).
    pub async fn sync_messages(&self) -> Vec<Value> {
        self.queue_messages("SyncQueue").await
    }

    /// Messages waiting on the scan queue (received once, then left to expire).
    pub async fn scan_messages(&self) -> Vec<Value> {
        self.queue_messages("ScanQueue").await
    }

    /// Messages waiting on a template queue (received once, then left to expire).
    pub async fn queue_messages(&self, logical_id: &str) -> Vec<Value> {
        let sqs = aws_sdk_sqs::Client::new(&self.stack.sdk);
        let url = self.stack.queue_url(logical_id).expect("queue").to_owned();
        let mut found = Vec::new();
        for _ in 0..3 {
            let out = sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await
                .expect("receive");
            let batch = out.messages.unwrap_or_default();
            if batch.is_empty() {
                break;
            }
            for m in batch {
                found.push(serde_json::from_str(m.body().unwrap_or("null")).expect("message is JSON"));
            }
        }
        found
    }

    /// Names of this stack's token secrets that still exist.
    pub async fn secret_names(&self) -> Vec<String> {
        let prefix = self.secret_prefix();
        // The moto server is shared by every test process: page through all secrets.
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .secrets()
                .list_secrets()
                .max_results(100)
                .set_next_token(token)
                .send()
                .await
                .expect("list secrets");
            names.extend(out.secret_list.unwrap_or_default().into_iter().filter_map(|s| s.name));
            token = out.next_token;
            if token.is_none() {
                break;
            }
        }
        names.retain(|n| n.starts_with(&prefix));
        names.sort();
        names
    }

    /// Every HTTP answer body seen by this test.
    pub fn all_replies(&self) -> String {
        self.replies.lock().expect("lock").join("\n")
    }
}
