//! Logging set-up. In Lambda the runtime's subscriber honours the function's `LoggingConfig`
//! (JSON, level); elsewhere a plain subscriber reads `RUST_LOG`.

/// Installs the Lambda runtime's default subscriber (JSON when the function asks for it).
pub fn init() {
    lambda_runtime::tracing::init_default_subscriber();
}

/// Installs a human-readable subscriber for local processes; `RUST_LOG` overrides `default`.
pub fn init_local(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).try_init();
}
