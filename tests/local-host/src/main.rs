//! `make run`: the whole system on one machine (moto for AWS, the GitLab simulator for GitLab).
use std::collections::HashMap;
use std::net::SocketAddr;

use local_host::{Stack, StackOptions};

/// Variables a caller may set for a run, as in a deployment; they win over the template.
const PASSED_THROUGH: &[&str] = &[
    "TEAM_CLAIM",
    "OUTBOUND_ALLOWLIST",
    "DNS_SERVER",
    "DNS_TIMEOUT_MS",
    "OWN_HOSTS",
    "GITLAB_CONNECT_TIMEOUT_MS",
    "GITLAB_HTTP_TIMEOUT_MS",
    "GITLAB_MAX_BODY_BYTES",
    "WEBHOOK_BASE_URL",
    "WEBHOOK_MAX_BODY_BYTES",
    "WEBHOOK_CACHE_SECONDS",
    "WEBHOOK_DEDUP_TTL_HOURS",
    "WEBHOOK_SECRET_GRACE_HOURS",
    "SECRETS_KMS_KEY_ID",
    "CONNECT_TESTS_PER_MINUTE",
    "GITLAB_INSPECT_DEADLINE_MS",
    "SCANNERS",
    "SCAN_DIGEST_KEY",
    "SCAN_ALLOW_PATHS",
    "SCAN_MAX_FETCH_BYTES",
    "SCAN_FETCH_SECONDS",
    "SCAN_MAX_FILES",
    "SCAN_MAX_CHECKOUT_BYTES",
    "SCAN_MAX_FILE_BYTES",
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    shared::telemetry::init_local("info");
    let port: u16 = std::env::var("LOCAL_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    let sim_port: u16 = std::env::var("SIM_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(8443);

    // Demo repositories (real Git, served over the simulator's smart HTTP): demo/backend carries
    // fake planted credentials and merge request 1.
    let repos = std::path::Path::new(".local/gitlab-sim-repos");
    if repos.exists() {
        std::fs::remove_dir_all(repos)?;
    }
    std::fs::create_dir_all(repos)?;
    let mut sim_config = gitlab_sim::SimConfig::default();
    gitlab_sim::attach_demo_repositories(&mut sim_config, &std::fs::canonicalize(repos)?)?;
    let sim = match gitlab_sim::start(sim_config.clone(), SocketAddr::from(([127, 0, 0, 1], sim_port))).await {
        Ok(sim) => sim,
        Err(_) => gitlab_sim::start(sim_config, SocketAddr::from(([127, 0, 0, 1], 0))).await?,
    };
    std::fs::create_dir_all(".local")?;
    std::fs::write(".local/gitlab-sim-ca.pem", &sim.ca_pem)?;

    let mut overrides: HashMap<String, String> =
        PASSED_THROUGH.iter().filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v))).collect();
    // The simulator listens on loopback, which the URL policy refuses unless allowlisted. Only
    // fill this in when the caller said nothing: an explicitly empty value stays empty.
    overrides.entry("OUTBOUND_ALLOWLIST".into()).or_insert_with(|| "127.0.0.1/32".into());

    let stack_name = std::env::var("STACK_NAME")
        .unwrap_or_else(|_| format!("local-{}", time::OffsetDateTime::now_utc().unix_timestamp()));
    let mut options = StackOptions::new(stack_name);
    options.bind = SocketAddr::from(([127, 0, 0, 1], port));
    options.overrides = overrides;
    if let Ok(path) = std::env::var("TEMPLATE_PATH") {
        options.template = path.into();
    }
    let stack = Stack::start(options).await?;

    let instance = sim.base_url();
    let body = serde_json::json!({
        "instance_url": instance,
        "token": "glpat-demo-api-0000000000001",
        "name": "Demo GitLab",
        "ca_certificate": sim.ca_pem,
    });
    std::fs::write(".local/connect-demo.json", serde_json::to_vec_pretty(&body)?)?;
    let api = &stack.url;
    println!(
        r#"
gitlab-connector is running locally (Ctrl-C stops it)
  HTTP API        {api}   (the X-Team-Id header stands in for the JWT team claim)
  GitLab          {instance}   (simulator; CA in .local/gitlab-sim-ca.pem, demo tokens in tests/gitlab-sim/README.md)
  webhooks        {api}/webhooks/gitlab/<id>   (the webhook function URL's path)
  DynamoDB table  {table}
  sync queue      {queue}
  scan queue      {scan_queue}   (the scan worker consumes it)

Try it:
  # 1. check an instance URL (syntax, DNS, address rules; no other network call)
  curl -s -X POST {api}/integrations/gitlab/preflight -H 'X-Team-Id: demo' \
       -H 'content-type: application/json' -d '{{"instance_url": "{instance}"}}'
  # 2. connect the simulator (the body carries the simulator's private CA)
  curl -s -X POST {api}/integrations/gitlab -H 'X-Team-Id: demo' \
       -H 'content-type: application/json' -d @.local/connect-demo.json
  # 3. list, then verify one (use the id from step 2)
  curl -s {api}/integrations/gitlab -H 'X-Team-Id: demo'
  curl -s -X POST {api}/integrations/gitlab/<id>/verify -H 'X-Team-Id: demo'
  # 4. another team sees nothing
  curl -s {api}/integrations/gitlab/<id> -H 'X-Team-Id: other'
  # 5. after the first sync (a second or two), track demo/backend (project 1)
  curl -s -X PATCH {api}/integrations/gitlab/<id>/repositories -H 'X-Team-Id: demo' \
       -H 'content-type: application/json' -d '{{"track": [1]}}'
  # 6. the demo token has the api scope: tracking made the connector create project 1's hook
  curl -s --cacert .local/gitlab-sim-ca.pem {instance}/api/v4/projects/1/hooks \
       -H 'PRIVATE-TOKEN: glpat-demo-api-0000000000001'
  # 7. open a merge request: the simulator delivers GitLab's event to the connector
  curl -s --cacert .local/gitlab-sim-ca.pem -X POST {instance}/-/sim/projects/1/events \
       -d '{{"kind": "merge_request", "iid": 1, "action": "open"}}'
  #    {{"deliveries":[{{"hook_id":1,"status":200,"response":"{{\"status\":\"queued\"}}"}}]}}
  # 8. the scan worker fetched the merge request's head (gitoxide over the simulator's Git smart
  #    HTTP) and scanned it: list the scans, then read one with its findings (redacted secrets)
  curl -s '{api}/integrations/gitlab/<id>/scans?project_id=1' -H 'X-Team-Id: demo'
  curl -s {api}/integrations/gitlab/<id>/scans/<scan_id> -H 'X-Team-Id: demo'
  # 9. scan the default branch by hand (202 with the scan id; read it as in step 8)
  curl -s -X POST {api}/integrations/gitlab/<id>/repositories/1/scans -H 'X-Team-Id: demo' \
       -H 'content-type: application/json' -d '{{}}'
  # 10. dismiss a finding (a fingerprint from step 8): it stays dismissed in every later scan
  curl -s -X PATCH {api}/integrations/gitlab/<id>/findings/<fingerprint> -H 'X-Team-Id: demo' \
       -H 'content-type: application/json' -d '{{"triage": "dismissed"}}'
  # 11. the merge request of step 7 carries the connector's report: one summary note (edited in
  #     place on later pushes), a thread on each added line with a new finding, and the commit
  #     status gitlab-connector/secrets on its head
  curl -s --cacert .local/gitlab-sim-ca.pem {instance}/api/v4/projects/1/merge_requests/1/notes \
       -H 'PRIVATE-TOKEN: glpat-demo-api-0000000000001'
  curl -s --cacert .local/gitlab-sim-ca.pem {instance}/api/v4/projects/1/repository/commits/<sha>/statuses \
       -H 'PRIVATE-TOKEN: glpat-demo-api-0000000000001'
"#,
        table = stack.table("Table").unwrap_or("?"),
        queue = stack.queue_url("SyncQueue").unwrap_or("?"),
        scan_queue = stack.queue_url("ScanQueue").unwrap_or("?"),
    );
    tokio::signal::ctrl_c().await?;
    drop(stack);
    sim.shutdown().await;
    Ok(())
}
