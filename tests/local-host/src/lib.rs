//! The local stack: provisions template.yaml's tables and queues in the moto server, resolves
//! each function's environment from the template, and serves the HTTP routes through the same
//! handlers the Lambda functions run. Used by `make run` and by the end-to-end tests.

pub mod provision;
pub mod queues;
pub mod routes;
pub mod schedule;
pub mod server;
pub mod template;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::task::JoinHandle;

pub use template::{Physical, Template};

/// How to start a stack.
#[derive(Clone)]
pub struct StackOptions {
    /// Stack name: prefixes every table, queue and secret, so stacks never share state.
    pub stack_name: String,
    /// Where to listen (port 0: any free port).
    pub bind: SocketAddr,
    /// Variables that win over the template (the caller's environment, test settings).
    pub overrides: HashMap<String, String>,
    /// The template file.
    pub template: PathBuf,
    /// Queue-triggered handlers by the template's queue logical id (event source mappings);
    /// the sync queue is bound to the sync function unless a handler is given for it here.
    pub queue_handlers: Vec<(String, queues::BatchHandler)>,
    /// Schedule tick interval for the sync function (default: the template's `rate(...)`).
    pub schedule_every: Option<std::time::Duration>,
    /// Bind the worker functions to their queue and schedule (off in tests that inspect the
    /// raw queue).
    pub run_workers: bool,
    /// Bind the scan worker to the scan queue (off in tests that read scan requests off it).
    pub run_scan_worker: bool,
}

impl StackOptions {
    /// Defaults: the repository's template.yaml, an ephemeral loopback port, no overrides.
    pub fn new(stack_name: impl Into<String>) -> Self {
        Self {
            stack_name: stack_name.into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            overrides: HashMap::new(),
            template: default_template_path(),
            queue_handlers: Vec::new(),
            schedule_every: None,
            run_workers: true,
            run_scan_worker: true,
        }
    }
}

/// The repository's template.yaml.
pub fn default_template_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml")
}

/// Failure to start the stack.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// Template problem.
    #[error(transparent)]
    Template(#[from] template::TemplateError),
    /// Resource creation failed (is the moto server running and AWS_ENDPOINT_URL set?).
    #[error(transparent)]
    Provision(#[from] provision::ProvisionError),
    /// A function's configuration is incomplete.
    #[error("function configuration: {0}")]
    Config(#[from] shared::config::ConfigError),
    /// The listener could not be bound.
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
    /// A worker could not be built.
    #[error("worker: {0}")]
    Worker(String),
    /// A handler names a queue the template does not declare.
    #[error("no queue {0} in the template")]
    UnknownQueue(String),
}

/// A running local stack.
pub struct Stack {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// What the template's logical ids stand for here.
    pub physical: Physical,
    /// The connect function's resolved environment.
    pub connect_env: HashMap<String, String>,
    /// The AWS configuration in use (moto endpoint).
    pub sdk: aws_config::SdkConfig,
    /// The sync function's dependencies, as its queue binding uses them.
    pub sync_deps: Arc<sync::Deps>,
    /// The scan worker's dependencies, as its queue binding uses them.
    pub scan_deps: Arc<scan_worker::Deps>,
    /// The HTTP functions and the template's HTTP API routes, as the local host serves them
    /// (tests call the functions directly through it, bypassing the routing).
    pub gateway: Arc<server::Gateway>,
    server: JoinHandle<()>,
    pollers: Vec<JoinHandle<()>>,
}

impl Stack {
    /// Provisions resources, builds the functions from their resolved configuration and serves.
    pub async fn start(options: StackOptions) -> Result<Self, StackError> {
        let template = Template::load(&options.template)?;
        let sdk = shared::adapters::aws_config().await;
        let mut physical = provision::provision(&template, &sdk, &options.stack_name).await?;
        let listener = tokio::net::TcpListener::bind(options.bind).await?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        // This host serves every function URL's paths, as it serves the HTTP API's.
        for (logical_id, _) in template.resources_of_type("AWS::Lambda::Url") {
            physical.attrs.insert(format!("{logical_id}.FunctionUrl"), format!("{url}/"));
        }

        let mut connect_env = template.function_environment("ConnectFunction", &physical)?;
        connect_env.extend(options.overrides.clone());
        let config = connect::Config::from_vars(&|k: &str| connect_env.get(k).cloned())?;
        let deps = connect::Deps::build(&config).await;
        let mut api_env = template.function_environment("ApiFunction", &physical)?;
        api_env.extend(options.overrides.clone());
        let api_config = api::Config::from_vars(&|k: &str| api_env.get(k).cloned())?;
        let api_deps = api::Deps::build(&api_config).await;
        let mut webhook_env = template.function_environment("WebhookFunction", &physical)?;
        webhook_env.extend(options.overrides.clone());
        let webhook_config = webhook::Config::from_vars(&|k: &str| webhook_env.get(k).cloned())?;
        let webhook_deps = webhook::Deps::build(&webhook_config).await;
        let functions = server::Functions {
            connect: deps,
            api: api_deps,
            webhook: webhook_deps,
            team_claim: config.team_claim.clone(),
        };
        let routes = template.api_routes()?;
        if let Some(route) = routes.iter().find(|r| !server::Functions::SERVED.contains(&r.function.as_str())) {
            return Err(StackError::Template(template::TemplateError::Shape(format!(
                "route {} {} goes to {}, which the local host does not run",
                route.method, route.path, route.function
            ))));
        }
        let gateway = Arc::new(server::Gateway { functions, routes });
        let app = server::router(Arc::clone(&gateway));
        // The sync function, fed by the sync queue and the schedule as in the template.
        let mut sync_env = template.function_environment("SyncFunction", &physical)?;
        sync_env.extend(options.overrides.clone());
        let sync_config = sync::Config::from_vars(&|k: &str| sync_env.get(k).cloned())?;
        let sync_deps = Arc::new(sync::Deps::build(&sync_config).await);
        let mut handlers: Vec<(String, queues::BatchHandler)> = options.queue_handlers;
        if options.run_workers && !handlers.iter().any(|(q, _)| q == "SyncQueue") {
            let deps = Arc::clone(&sync_deps);
            let handler: queues::BatchHandler = Arc::new(move |event| {
                let deps = Arc::clone(&deps);
                Box::pin(async move { Ok(sync::process_batch(&deps, event, None).await) })
            });
            handlers.push(("SyncQueue".to_owned(), handler));
        }
        // The scan worker on the scan queue. Its job directories live under a per-stack root (the
        // worker sweeps its root at start), and the digest key, a generated secret when
        // deployed, is a random per-stack value unless the caller gives one.
        let mut scan_env = template.function_environment("ScanWorkerFunction", &physical)?;
        scan_env.extend(options.overrides.clone());
        scan_env.entry("SCAN_DIGEST_KEY".into()).or_insert_with(|| {
            let bytes: [u8; 32] = rand::random();
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        });
        if !options.overrides.contains_key("SCAN_WORK_DIR") {
            let root = std::env::temp_dir().join(format!("scan-jobs-{}", options.stack_name));
            scan_env.insert("SCAN_WORK_DIR".into(), root.display().to_string());
        }
        let scan_config = scan_worker::Config::from_vars(&|k: &str| scan_env.get(k).cloned())?;
        let scan_deps =
            Arc::new(scan_worker::Deps::build(&scan_config).await.map_err(|e| StackError::Worker(e.to_string()))?);
        if options.run_scan_worker && !handlers.iter().any(|(q, _)| q == "ScanQueue") {
            let deps = Arc::clone(&scan_deps);
            let handler: queues::BatchHandler = Arc::new(move |event| {
                let deps = Arc::clone(&deps);
                Box::pin(async move { Ok(scan_worker::process_batch(&deps, event).await) })
            });
            handlers.push(("ScanQueue".to_owned(), handler));
        }
        let mut pollers = Vec::new();
        let region = sdk.region().map(ToString::to_string).unwrap_or_else(|| "us-east-1".to_owned());
        for (queue, handler) in handlers {
            let (Some(queue_url), Some(queue_arn)) =
                (physical.refs.get(&queue), physical.attrs.get(&format!("{queue}.Arn")))
            else {
                return Err(StackError::UnknownQueue(queue));
            };
            let binding = queues::QueueBinding {
                queue_url: queue_url.clone(),
                queue_arn: queue_arn.clone(),
                region: region.clone(),
                // The template's SQS event uses BatchSize 1 for the sync queue.
                batch_size: 1,
                handler,
            };
            pollers.push(queues::spawn(aws_sdk_sqs::Client::new(&sdk), binding));
        }
        if options.run_workers
            && let Some(every) = options.schedule_every.or_else(|| template.schedule_interval("SyncFunction"))
        {
            pollers.push(schedule::spawn(every, Arc::clone(&sync_deps)));
        }
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error.message = %e, "local host stopped");
            }
        });
        Ok(Self { url, physical, connect_env, sdk, sync_deps, scan_deps, gateway, server, pollers })
    }

    /// Table name of a template logical id.
    pub fn table(&self, logical_id: &str) -> Option<&str> {
        self.physical.refs.get(logical_id).map(String::as_str)
    }

    /// Queue URL of a template logical id.
    pub fn queue_url(&self, logical_id: &str) -> Option<&str> {
        self.physical.refs.get(logical_id).map(String::as_str)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.server.abort();
        for poller in &self.pollers {
            poller.abort();
        }
    }
}
