//! api: API Gateway HTTP API (repository and sync routes).
use api::{Config, Deps, handle};
use lambda_http::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = Config::from_env()?;
    let deps = Deps::build(&config).await;
    run(service_fn(|req| handle(&deps, req))).await
}
