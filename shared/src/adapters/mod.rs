//! Adapters: the ports implemented over DynamoDB, SQS, Secrets Manager and GitLab's HTTP API.

mod backoff;
pub mod dynamodb;
pub mod dynamodb_projects;
pub mod dynamodb_scans;
pub mod dynamodb_webhooks;
#[cfg(feature = "git")]
pub mod git;
pub mod gitlab;
pub mod secrets;
pub mod sqs;

use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};

/// Roots that AWS service endpoints chain to (see `certs/README.md`).
const AWS_ROOTS_PEM: &[u8] = include_bytes!("../../certs/amazon-trust-services.pem");

/// Loads the AWS SDK configuration once per process (region, credentials and
/// `AWS_ENDPOINT_URL*` overrides from the environment). The HTTPS client trusts only the Amazon
/// Trust Services roots: the SDK's default loads the whole system store from disk at start-up,
/// which was most of this function's init time.
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config_loader().load().await
}

/// Like [`aws_config`], with per-attempt and per-operation (retries included) timeouts on every
/// call, for a caller that must answer within a deadline of its own (the webhook: GitLab waits
/// 10 s).
pub async fn aws_config_with_timeouts(attempt: std::time::Duration, operation: std::time::Duration) -> SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(attempt)
        .operation_timeout(operation)
        .build();
    aws_config_loader().timeout_config(timeouts).load().await
}

fn aws_config_loader() -> aws_config::ConfigLoader {
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    let trust = TrustStore::empty().with_native_roots(false).with_pem_certificate(AWS_ROOTS_PEM);
    match TlsContext::builder().with_trust_store(trust).build() {
        Ok(context) => loader.http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
                .tls_context(context)
                .build_https(),
        ),
        // Unreachable with the bundled PEM; the SDK's default client is the safe fallback.
        Err(_) => loader,
    }
}

/// Re-exports so function crates need not depend on each SDK crate directly.
pub use aws_config::SdkConfig;
pub use aws_sdk_dynamodb::Client as DynamoClient;
pub use aws_sdk_secretsmanager::Client as SecretsClient;
pub use aws_sdk_sqs::Client as SqsClient;

#[cfg(test)]
mod tests {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn the_bundled_aws_roots_parse_as_five_trust_anchors() {
        let certs: Vec<_> =
            CertificateDer::pem_slice_iter(super::AWS_ROOTS_PEM).collect::<Result<_, _>>().expect("pem");
        assert_eq!(certs.len(), 5);
        let mut store = rustls::RootCertStore::empty();
        let (valid, invalid) = store.add_parsable_certificates(certs);
        assert_eq!((valid, invalid), (5, 0));
    }
}
