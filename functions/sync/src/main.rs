//! sync: SQS sync queue (SyncRequested) and the EventBridge schedule (fan-out).
use lambda_runtime::{Error, run, service_fn};
use sync::{Config, Deps, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = Config::from_env()?;
    let deps = Deps::build(&config).await;
    run(service_fn(|event| handle(&deps, event))).await
}
