//! scan-worker: SQS scan queue (ScanRequested, ScanCancelled).
use lambda_runtime::{Error, run, service_fn};
use scan_worker::{Config, Deps, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    scan_worker::harden_process();
    let config = Config::from_env()?;
    let deps = Deps::build(&config).await?;
    run(service_fn(|event| handle(&deps, event))).await
}
