//! Logging set-up. Whatever level is asked for, the libraries that log request and event bodies
//! at DEBUG and TRACE stay at INFO: `lambda_runtime` logs the raw invocation event (a connect or
//! rotate request carries the token), the AWS SDK logs request bodies (`CreateSecret` and
//! `PutSecretValue` carry it), and the HTTP stack logs headers (`PRIVATE-TOKEN`).
//!
//! In Lambda the level follows the function's `LoggingConfig` (`AWS_LAMBDA_LOG_LEVEL`, then
//! `RUST_LOG`, then INFO) and `AWS_LAMBDA_LOG_FORMAT=JSON` gives JSON lines, as the runtime's own
//! default subscriber does; elsewhere `RUST_LOG` overrides the caller's default.

use tracing::Subscriber;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

/// Target prefixes held at INFO or above at every configured level (prefixes of the target
/// string: `aws_` covers `aws_sdk_*`, `aws_smithy_*`, `aws_config`, `aws_sigv4`, ...).
pub const QUIET_TARGETS: &[&str] =
    &["lambda_runtime", "lambda_http", "aws_", "hyper", "h2", "rustls", "reqwest", "tower", "http_body"];

/// The cap on [`QUIET_TARGETS`]; everything else passes to the configured filter.
pub fn quiet_filter() -> Targets {
    QUIET_TARGETS
        .iter()
        .fold(Targets::new().with_default(LevelFilter::TRACE), |t, target| t.with_target(*target, LevelFilter::INFO))
}

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Lambda text: no timestamp (CloudWatch adds one), no target.
    Lambda,
    /// Lambda JSON lines (`AWS_LAMBDA_LOG_FORMAT=JSON`).
    LambdaJson,
    /// A local process: timestamps, no colour codes when `ansi` is off.
    Local {
        /// Colour codes.
        ansi: bool,
    },
}

/// A subscriber for `directives` (`RUST_LOG` syntax; unparsable parts are ignored) with the
/// quiet targets capped, writing to `writer`.
pub fn subscriber<W>(directives: &str, style: Style, writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::builder().with_default_directive(LevelFilter::INFO.into()).parse_lossy(directives);
    let base = tracing_subscriber::registry().with(filter).with(quiet_filter());
    let layer = tracing_subscriber::fmt::layer().with_target(false).with_writer(writer);
    match style {
        Style::Lambda => Box::new(base.with(layer.without_time().with_ansi(false))),
        Style::LambdaJson => Box::new(base.with(layer.json().without_time())),
        Style::Local { ansi } => Box::new(base.with(layer.with_ansi(ansi))),
    }
}

/// Installs the Lambda subscriber (see the module documentation for the level and format).
pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_default();
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let style = if json { Style::LambdaJson } else { Style::Lambda };
    let _ = tracing::subscriber::set_global_default(subscriber(&level, style, std::io::stdout));
}

/// Installs a human-readable subscriber for local processes; `RUST_LOG` overrides `default`.
pub fn init_local(default: &str) {
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| default.to_owned());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing::subscriber::set_global_default(subscriber(&directives, Style::Local { ansi }, std::io::stderr));
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(directives: &str, style: Style) -> String {
        let capture = Capture::default();
        let sink = capture.clone();
        let subscriber = subscriber(directives, style, move || sink.clone());
        tracing::subscriber::with_default(subscriber, || {
            // What the libraries log at their most verbose, with their own targets.
            tracing::trace!(target: "lambda_runtime", body = "{\"token\":\"glpat-event-secret\"}", "raw JSON event");
            tracing::debug!(target: "lambda_runtime_api_client", "glpat-client-secret");
            tracing::trace!(target: "aws_smithy_runtime::client::orchestrator", "glpat-sdk-body-secret");
            tracing::debug!(target: "aws_sigv4::http_request::sign", "glpat-sigv4-secret");
            tracing::trace!(target: "hyper_util::client::legacy", "glpat-header-secret");
            tracing::trace!(target: "reqwest::connect", "glpat-reqwest-secret");
            tracing::info!(target: "lambda_runtime", "runtime info line");
            tracing::trace!(target: "connect::service", "own trace line");
        });
        String::from_utf8(capture.0.lock().expect("lock").clone()).expect("utf-8")
    }

    #[test]
    fn library_bodies_stay_out_at_every_level() {
        for directives in [
            "trace",
            "TRACE",
            "lambda_runtime=trace,aws_smithy_runtime=trace,hyper_util=trace,reqwest=trace,trace",
            "lambda_runtime::layers=trace,aws_smithy_runtime::client::orchestrator=trace,info",
            "debug",
        ] {
            for style in [Style::Lambda, Style::LambdaJson, Style::Local { ansi: false }] {
                let out = logged(directives, style);
                assert!(!out.contains("glpat-"), "{directives} {style:?}: {out}");
                assert!(out.contains("runtime info line"), "{directives} {style:?}: INFO still passes: {out}");
            }
        }
        // The configured level still applies to everything else.
        assert!(logged("trace", Style::Lambda).contains("own trace line"));
        assert!(!logged("info", Style::Lambda).contains("own trace line"));
        assert!(logged("", Style::Lambda).contains("runtime info line"), "INFO when nothing is configured");
    }
}
