//! The scan worker: each scan-queue message is one scan request (or a cancellation), handled on
//! its own with partial batch failures reported; malformed messages are left to the
//! dead-letter queue. Code is fetched with gitoxide through the pinned GitLab client (Lambda has
//! no `git`), written into a private job directory that is always removed, scanned by the
//! built-in secret scanner and any configured SARIF scanners, and stored as findings that know
//! whether they are new, present or fixed.

pub mod report;
pub mod scanners;
pub mod service;
pub mod source;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Error, LambdaEvent};
use secrecy::ExposeSecret;
use serde_json::Value;
use shared::adapters::dynamodb::DynamoIntegrationStore;
use shared::adapters::dynamodb_scans::DynamoScanStore;
use shared::adapters::git::FetchLimits;
use shared::adapters::gitlab::{GitlabSettings, ReqwestGitlab};
use shared::adapters::secrets::SecretsManagerVault;
use shared::adapters::{DynamoClient, SecretsClient};
use shared::config::{ConfigError, ProcessEnv, VarSource, optional, parsed_or, required};
use shared::domain::checkout::CheckoutLimits;
use shared::domain::secrets::{ScanSettings, SecretScanner};
use shared::messages::{MESSAGE_VERSION, Message};
use shared::ports::{IntegrationDirectory, ReportStore, ScanStore, TokenVault};
use tracing::Instrument;

use crate::scanners::ExternalScanner;
use crate::source::{CodeSource, GitlabSource};

/// Prefix of job directory names under the work root (the sweep removes only these).
pub const JOB_DIR_PREFIX: &str = "job-";

/// Settings read once at start.
#[derive(Clone, Debug)]
pub struct Config {
    /// DynamoDB table (`TABLE_NAME`).
    pub table_name: String,
    /// Where job directories are made (`SCAN_WORK_DIR`, default `/tmp/scan-jobs`).
    pub work_root: PathBuf,
    /// Key of the findings' digests: `SCAN_DIGEST_KEY_SECRET_ARN` (a Secrets Manager secret,
    /// deployed) or `SCAN_DIGEST_KEY` (the value itself, local runs).
    pub digest_key: DigestKey,
    /// Paths never scanned (`SCAN_ALLOW_PATHS`, comma-separated globs).
    pub allow_paths: Vec<String>,
    /// External SARIF scanners (`SCANNERS`, JSON list; default none).
    pub external: Vec<ExternalScanner>,
    /// Fetch and checkout bounds (`SCAN_MAX_FETCH_BYTES`, `SCAN_FETCH_SECONDS`,
    /// `SCAN_MAX_FILES`, `SCAN_MAX_CHECKOUT_BYTES`, `SCAN_MAX_FILE_BYTES`).
    pub limits: FetchLimits,
    /// GitLab network settings and limits.
    pub gitlab: GitlabSettings,
}

/// Where the digest key comes from.
#[derive(Clone)]
pub enum DigestKey {
    /// A Secrets Manager secret's ARN.
    Secret(String),
    /// The key itself.
    Value(secrecy::SecretString),
}

impl std::fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DigestKey::Secret(arn) => f.debug_tuple("Secret").field(arn).finish(),
            DigestKey::Value(_) => f.write_str("Value([redacted])"),
        }
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&ProcessEnv)
    }

    /// Reads any variable source.
    pub fn from_vars(src: &dyn VarSource) -> Result<Self, ConfigError> {
        let digest_key = match (optional(src, "SCAN_DIGEST_KEY_SECRET_ARN"), optional(src, "SCAN_DIGEST_KEY")) {
            (Some(arn), _) => DigestKey::Secret(arn),
            (None, Some(value)) if value.len() >= 16 => DigestKey::Value(value.into()),
            (None, Some(_)) => {
                return Err(ConfigError::Invalid { key: "SCAN_DIGEST_KEY", reason: "at least 16 characters".into() });
            }
            (None, None) => return Err(ConfigError::Missing("SCAN_DIGEST_KEY_SECRET_ARN")),
        };
        let external = match optional(src, "SCANNERS") {
            None => Vec::new(),
            Some(raw) => {
                scanners::parse_scanners(&raw).map_err(|reason| ConfigError::Invalid { key: "SCANNERS", reason })?
            }
        };
        let defaults = CheckoutLimits::default();
        let checkout = CheckoutLimits {
            max_files: parsed_or(src, "SCAN_MAX_FILES", defaults.max_files)?,
            max_bytes: parsed_or(src, "SCAN_MAX_CHECKOUT_BYTES", defaults.max_bytes)?,
            max_file_bytes: parsed_or(src, "SCAN_MAX_FILE_BYTES", defaults.max_file_bytes)?,
            ..defaults
        };
        Ok(Self {
            table_name: required(src, "TABLE_NAME")?,
            work_root: PathBuf::from(optional(src, "SCAN_WORK_DIR").unwrap_or_else(|| "/tmp/scan-jobs".into())),
            digest_key,
            allow_paths: optional(src, "SCAN_ALLOW_PATHS")
                .map(|v| v.split(',').map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect())
                .unwrap_or_default(),
            external,
            limits: FetchLimits {
                // With the checkout's 2 GiB, under the template's 4 GiB of /tmp.
                max_fetch_bytes: parsed_or(src, "SCAN_MAX_FETCH_BYTES", 1024u64 * 1024 * 1024)?,
                deadline: Duration::from_secs(parsed_or(src, "SCAN_FETCH_SECONDS", 600u64)?),
                checkout,
                ..FetchLimits::default()
            },
            gitlab: GitlabSettings::from_vars(src)?,
        })
    }
}

/// Everything an invocation needs, built once per process.
#[derive(Clone)]
pub struct Deps {
    /// Integrations by id.
    pub directory: Arc<dyn IntegrationDirectory>,
    /// Scans, findings, triage.
    pub scans: Arc<dyn ScanStore>,
    /// Report state, note budgets, capability downgrades.
    pub reports: Arc<dyn ReportStore>,
    /// Tokens.
    pub vault: Arc<dyn TokenVault>,
    /// The code.
    pub source: Arc<dyn CodeSource>,
    /// The built-in scanner.
    pub scanner: Arc<SecretScanner>,
    /// External scanners.
    pub external: Arc<Vec<ExternalScanner>>,
    /// Parent of job directories.
    pub work_root: PathBuf,
}

impl Deps {
    /// Builds the AWS clients, reads the digest key and sweeps job directories a previous
    /// invocation of this sandbox left behind (a timeout kills the process mid-job).
    pub async fn build(config: &Config) -> Result<Self, Error> {
        let sdk = shared::adapters::aws_config().await;
        let dynamo = DynamoClient::new(&sdk);
        let secrets = SecretsClient::new(&sdk);
        let digest_key = match &config.digest_key {
            DigestKey::Value(v) => v.expose_secret().as_bytes().to_vec(),
            DigestKey::Secret(arn) => shared::adapters::secrets::read_plain(&secrets, arn)
                .await
                .map_err(|e| format!("digest key: {e}"))?
                .expose_secret()
                .as_bytes()
                .to_vec(),
        };
        let scanner = SecretScanner::new(ScanSettings { digest_key, allow_paths: config.allow_paths.clone() });
        std::fs::create_dir_all(&config.work_root)?;
        sweep(&config.work_root);
        Ok(Self {
            directory: Arc::new(DynamoIntegrationStore::new(dynamo.clone(), &config.table_name)),
            scans: Arc::new(DynamoScanStore::new(dynamo.clone(), &config.table_name)),
            reports: Arc::new(DynamoScanStore::new(dynamo, &config.table_name)),
            vault: Arc::new(SecretsManagerVault::new(secrets, "", None)),
            source: Arc::new(GitlabSource {
                gitlab: ReqwestGitlab::new(config.gitlab.clone()),
                policy: config.gitlab.policy.clone(),
                limits: config.limits,
            }),
            scanner: Arc::new(scanner),
            external: Arc::new(config.external.clone()),
            work_root: config.work_root.clone(),
        })
    }
}

/// Makes this process non-dumpable: processes of the same user (the external scanners) can then
/// read neither its `/proc/<pid>/environ` (the function's AWS credentials) nor its memory (a
/// token while it is fetched). Called once at start by the Lambda binary.
pub fn harden_process() {
    if let Err(e) = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable) {
        tracing::warn!(error = %e, "the process could not be made non-dumpable");
    }
}

/// Removes job directories left under `root` (by a process that was killed); returns how many.
pub fn sweep(root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let is_job = entry.file_name().to_str().is_some_and(|n| n.starts_with(JOB_DIR_PREFIX));
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_job && is_dir && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::warn!(removed, "job directories of an interrupted invocation removed");
    }
    removed
}

/// Why a message was not processed.
#[derive(Debug)]
enum MessageError {
    /// Not a message this function understands; retried until it lands in the DLQ.
    Poison(String),
    /// A back end failed; SQS redelivers it.
    Transient(String),
}

/// The scan queue's `maxReceiveCount` (template.yaml `ScanQueue.RedrivePolicy`): the delivery
/// with this receive count is the last before the dead-letter queue.
pub const MAX_RECEIVES: u32 = 5;

/// Time kept back from the invocation's deadline to record a scan that ran out of time.
const DEADLINE_MARGIN: Duration = Duration::from_secs(20);

/// Entry point: an SQS batch from the scan queue.
pub async fn handle(deps: &Deps, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, context) = event.into_parts();
    if payload.get("Records").is_none() {
        return Err("unsupported event: expected an SQS batch".into());
    }
    // One invocation at a time per sandbox: anything under the work root is a killed one's.
    sweep(&deps.work_root);
    let left = context.deadline().duration_since(std::time::SystemTime::now()).unwrap_or_default();
    let deadline = tokio::time::Instant::now() + left.saturating_sub(DEADLINE_MARGIN);
    let event: SqsEvent = serde_json::from_value(payload)?;
    Ok(serde_json::to_value(process_batch_until(deps, event, Some(deadline)).await)?)
}

/// Processes each record on its own; failures are reported per message id.
pub async fn process_batch(deps: &Deps, event: SqsEvent) -> SqsBatchResponse {
    process_batch_until(deps, event, None).await
}

/// Like [`process_batch`], with the fetch and scanners of each scan bounded by `deadline` (the
/// invocation's end less a margin): past it a scan is recorded as failed (`timeout`) and its
/// job directory removed.
pub async fn process_batch_until(
    deps: &Deps,
    event: SqsEvent,
    deadline: Option<tokio::time::Instant>,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let result = process_message(deps, &record, deadline).await;
        match result {
            Ok(()) => continue,
            Err(MessageError::Poison(why)) => {
                tracing::error!(message_id = %id, reason = %why, "unreadable message; left for the dead-letter queue");
            }
            Err(MessageError::Transient(why)) => {
                tracing::warn!(message_id = %id, reason = %why, "message will be retried");
            }
        }
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    response
}

async fn process_message(
    deps: &Deps,
    record: &SqsMessage,
    deadline: Option<tokio::time::Instant>,
) -> Result<(), MessageError> {
    let body = record.body.as_deref().ok_or_else(|| MessageError::Poison("no body".into()))?;
    if body.len() > 256 * 1024 {
        return Err(MessageError::Poison("body larger than an SQS message can be".into()));
    }
    let message: Message = serde_json::from_str(body).map_err(|e| MessageError::Poison(e.to_string()))?;
    match message {
        Message::ScanRequested(request) => {
            if request.version > MESSAGE_VERSION {
                return Err(MessageError::Poison(format!("unknown message version {}", request.version)));
            }
            let span =
                tracing::info_span!("scan", integration_id = %request.integration_id, project_id = request.project_id);
            let receives = record.attributes.get("ApproximateReceiveCount").and_then(|n| n.parse::<u32>().ok());
            let final_attempt = receives.is_some_and(|n| n >= MAX_RECEIVES);
            match service::scan(deps, &request, deadline, final_attempt).instrument(span).await {
                Ok(outcome) => {
                    tracing::info!(outcome = ?outcome, "scan request handled");
                    Ok(())
                }
                Err(e) => Err(MessageError::Transient(e.to_string())),
            }
        }
        Message::ScanCancelled(request) => {
            if request.version > MESSAGE_VERSION {
                return Err(MessageError::Poison(format!("unknown message version {}", request.version)));
            }
            service::cancel(deps, &request).await.map(|_| ()).map_err(|e| MessageError::Transient(e.to_string()))
        }
        other => Err(MessageError::Poison(format!("{} does not belong on the scan queue", other.kind()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hardened_process_hides_its_environment_from_its_children() {
        use rustix::process::{DumpableBehavior, dumpable_behavior, geteuid};
        // Each test is its own process under nextest, so this changes no other test.
        assert_eq!(dumpable_behavior().expect("prctl"), DumpableBehavior::Dumpable);
        harden_process();
        assert_eq!(dumpable_behavior().expect("prctl"), DumpableBehavior::NotDumpable);
        // A child of the same user (as on Lambda) can no longer read the environment; root can
        // read anything, so that half only runs as another user.
        if !geteuid().is_root() {
            let own = format!("/proc/{}/environ", std::process::id());
            let read = std::process::Command::new("cat").arg(&own).output().expect("cat");
            assert!(!read.status.success() && read.stdout.is_empty(), "a child still read the environment");
        }
    }

    #[test]
    fn the_sweep_removes_only_job_directories() {
        let root = std::env::temp_dir().join(format!("scan-sweep-{}", rand::random::<u64>()));
        std::fs::create_dir_all(root.join("job-a/tree/x")).expect("mkdir");
        std::fs::write(root.join("job-a/tree/x/f"), b"secret").expect("write");
        std::fs::create_dir_all(root.join("job-b")).expect("mkdir");
        std::fs::create_dir_all(root.join("keep")).expect("mkdir");
        std::fs::write(root.join("job-file"), b"not a dir").expect("write");
        assert_eq!(sweep(&root), 2);
        assert!(!root.join("job-a").exists() && !root.join("job-b").exists());
        assert!(root.join("keep").exists() && root.join("job-file").exists());
        std::fs::remove_dir_all(&root).expect("cleanup");
    }

    #[test]
    fn configuration_needs_a_digest_key_and_checks_scanners() {
        let vars = |pairs: &[(&str, &str)]| {
            let map: std::collections::HashMap<String, String> =
                pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            move |key: &str| map.get(key).cloned()
        };
        let base = [("TABLE_NAME", "t"), ("SCAN_DIGEST_KEY", "0123456789abcdef0123")];
        assert!(Config::from_vars(&vars(&base)).is_ok());
        assert!(Config::from_vars(&vars(&[("TABLE_NAME", "t")])).is_err());
        assert!(Config::from_vars(&vars(&[("TABLE_NAME", "t"), ("SCAN_DIGEST_KEY", "short")])).is_err());
        let mut bad = base.to_vec();
        bad.push(("SCANNERS", r#"[{"name":"builtin","command":["x"]}]"#));
        assert!(Config::from_vars(&vars(&bad)).is_err());
        let debug = format!("{:?}", Config::from_vars(&vars(&base)).expect("ok"));
        assert!(!debug.contains("0123456789abcdef0123"), "{debug}");
    }
}
