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
use aws_smithy_runtime_api::client::retries::classifiers::RetryClassifierPriority;

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

/// An SQS client whose calls are never repeated after a timeout, for a sender that must not
/// queue a message twice: a send that timed out may still have been stored, and the SDK's default
/// is to try again. Connection errors, throttling and server errors are still retried, each
/// attempt within `attempt`, all within `operation`. The caller treats a timeout as "maybe sent" (the webhook keeps the delivery for the
/// scheduled replay).
pub fn sqs_client_sending_once(
    sdk: &SdkConfig,
    attempt: std::time::Duration,
    operation: std::time::Duration,
) -> SqsClient {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(attempt)
        .operation_timeout(operation)
        .build();
    let config =
        aws_sdk_sqs::config::Builder::from(sdk).timeout_config(timeouts).retry_classifier(NoRetryAfterTimeout).build();
    SqsClient::from_conf(config)
}

/// Runs after the SDK's own classifiers and forbids the retry they ask for when the attempt
/// timed out (attempt timeout, or a read timeout in the connector).
#[derive(Debug)]
struct NoRetryAfterTimeout;

impl aws_sdk_sqs::config::retry::ClassifyRetry for NoRetryAfterTimeout {
    fn classify_retry(
        &self,
        ctx: &aws_sdk_sqs::config::interceptors::InterceptorContext,
    ) -> aws_sdk_sqs::config::retry::RetryAction {
        match ctx.output_or_error() {
            Some(Err(e)) if e.is_timeout_error() || e.as_connector_error().is_some_and(|c| c.is_timeout()) => {
                aws_sdk_sqs::config::retry::RetryAction::RetryForbidden
            }
            _ => aws_sdk_sqs::config::retry::RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "NoRetryAfterTimeout"
    }

    fn priority(&self) -> RetryClassifierPriority {
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
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

    /// A loopback endpoint that counts requests and either never answers or answers 500.
    async fn endpoint(answer_500: bool) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut request = Vec::new();
                    // One request per connection is enough: count it once its headers are in.
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&buf[..n]);
                        if request.windows(4).any(|w| w == b"\r\n\r\n") {
                            seen.fetch_add(1, Ordering::SeqCst);
                            if answer_500 {
                                let body = r#"{"__type":"InternalError","message":"try again"}"#;
                                let reply = format!(
                                    "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                    body.len()
                                );
                                let _ = socket.write_all(reply.as_bytes()).await;
                                return;
                            }
                            // Never answer: hold the connection until the client gives up.
                            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                            return;
                        }
                    }
                });
            }
        });
        (url, count)
    }

    async fn send_once(url: &str) -> Result<(), String> {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "test"))
            .endpoint_url(url)
            .load()
            .await;
        let client = super::sqs_client_sending_once(
            &sdk,
            std::time::Duration::from_millis(800),
            std::time::Duration::from_millis(4000),
        );
        client
            .send_message()
            .queue_url(format!("{url}/000000000000/q"))
            .message_body("{}")
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("{e:?}"))
    }

    #[tokio::test]
    async fn a_send_that_timed_out_is_not_sent_again() {
        let (url, count) = endpoint(false).await;
        let err = send_once(&url).await.expect_err("nothing answers");
        assert!(err.contains("Timeout") || err.contains("timeout"), "{err}");
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1, "one attempt only");
    }

    #[tokio::test]
    async fn a_send_refused_by_a_server_error_is_still_retried() {
        let (url, count) = endpoint(true).await;
        send_once(&url).await.expect_err("always 500");
        assert!(count.load(std::sync::atomic::Ordering::SeqCst) >= 2, "the server error was retried");
    }
}
