//! The local stack: provisions template.yaml's tables and queues in the moto server, resolves
//! each function's environment from the template, and serves the HTTP routes through the same
//! handlers the Lambda functions run. Used by `make run` and by the end-to-end tests.

pub mod provision;
pub mod server;
pub mod template;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::task::JoinHandle;

pub use template::{Physical, Template};

/// How to start a stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Stack name: prefixes every table, queue and secret, so stacks never share state.
    pub stack_name: String,
    /// Where to listen (port 0: any free port).
    pub bind: SocketAddr,
    /// Variables that win over the template (the caller's environment, test settings).
    pub overrides: HashMap<String, String>,
    /// The template file.
    pub template: PathBuf,
}

impl StackOptions {
    /// Defaults: the repository's template.yaml, an ephemeral loopback port, no overrides.
    pub fn new(stack_name: impl Into<String>) -> Self {
        Self {
            stack_name: stack_name.into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            overrides: HashMap::new(),
            template: default_template_path(),
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
    #[error("connect configuration: {0}")]
    Config(#[from] shared::config::ConfigError),
    /// The listener could not be bound.
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
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
    server: JoinHandle<()>,
}

impl Stack {
    /// Provisions resources, builds the functions from their resolved configuration and serves.
    pub async fn start(options: StackOptions) -> Result<Self, StackError> {
        let template = Template::load(&options.template)?;
        let sdk = shared::adapters::aws_config().await;
        let physical = provision::provision(&template, &sdk, &options.stack_name).await?;
        let listener = tokio::net::TcpListener::bind(options.bind).await?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");

        let mut connect_env = template.function_environment("ConnectFunction", &physical)?;
        // The webhook URL shown at connect time points at this host.
        connect_env.insert("WEBHOOK_BASE_URL".into(), url.clone());
        connect_env.extend(options.overrides.clone());
        let config = connect::Config::from_vars(&|k: &str| connect_env.get(k).cloned())?;
        let deps = connect::Deps::build(&config).await;
        let functions = Arc::new(server::Functions {
            connect: deps,
            team_claim: config.team_claim.clone(),
        });
        let app = server::router(functions);
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error.message = %e, "local host stopped");
            }
        });
        Ok(Self {
            url,
            physical,
            connect_env,
            sdk,
            server,
        })
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
    }
}
