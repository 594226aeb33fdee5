//! Adapters: the ports implemented over DynamoDB, SQS, Secrets Manager and GitLab's HTTP API.

pub mod dynamodb;
pub mod gitlab;
pub mod secrets;
pub mod sqs;

/// Loads the AWS SDK configuration once per process (region, credentials and
/// `AWS_ENDPOINT_URL*` overrides from the environment).
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// Re-exports so function crates need not depend on each SDK crate directly.
pub use aws_config::SdkConfig;
pub use aws_sdk_dynamodb::Client as DynamoClient;
pub use aws_sdk_secretsmanager::Client as SecretsClient;
pub use aws_sdk_sqs::Client as SqsClient;
