//! webhook: Lambda function URL (GitLab webhook deliveries).
use lambda_http::{Error, run, service_fn};
use webhook::{Config, Deps, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = Config::from_env()?;
    let deps = Deps::build(&config).await;
    run(service_fn(|req| handle(&deps, req))).await
}
