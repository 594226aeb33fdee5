//! The connect function as Lambda runs it: its `main` (the real `lambda_runtime` loop and the
//! functions' log set-up) in a child process, fed by a stand-in for the Lambda Runtime API, with
//! the most verbose log level configured. Tokens must not reach its output.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::sync::{Mutex, mpsc};

use crate::support::{demo, env};

/// Set on the child process: run the function instead of skipping.
const CHILD: &str = "E2E_CONNECT_FUNCTION_PROCESS";

/// The connect function's process, as `functions/connect/src/main.rs` starts it. Started by
/// [`tokens_stay_out_of_the_lambda_functions_logs_at_trace`]; ignored in a normal run.
#[tokio::test]
#[ignore = "the connect function's own process; its parent test starts it"]
async fn connect_function_process() {
    assert!(std::env::var_os(CHILD).is_some(), "started by its parent test only");
    shared::telemetry::init();
    let config = connect::Config::from_env().expect("connect configuration");
    let deps = connect::Deps::build(&config).await;
    lambda_http::run(lambda_http::service_fn(|req| connect::handle(&deps, req))).await.expect("runtime loop");
}

/// The Lambda Runtime API: hands out queued events, collects responses.
#[derive(Clone)]
struct RuntimeApi {
    events: Arc<Mutex<mpsc::Receiver<Value>>>,
    responses: mpsc::Sender<Value>,
}

async fn next_event(State(api): State<RuntimeApi>) -> Response {
    let Some(event) = api.events.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let deadline = (time::OffsetDateTime::now_utc().unix_timestamp() + 60) * 1000;
    let mut headers = HeaderMap::new();
    let request_id = hex_id();
    for (name, value) in [
        ("lambda-runtime-aws-request-id", request_id.as_str()),
        ("lambda-runtime-deadline-ms", &deadline.to_string()),
        ("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:123456789012:function:connect"),
        ("content-type", "application/json"),
    ] {
        headers.insert(name, HeaderValue::from_str(value).expect("header"));
    }
    (headers, event.to_string()).into_response()
}

async fn response(State(api): State<RuntimeApi>, body: String) -> StatusCode {
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let _ = api.responses.send(value).await;
    StatusCode::ACCEPTED
}

fn hex_id() -> String {
    format!("{:032x}", time::OffsetDateTime::now_utc().unix_timestamp_nanos())
}

/// Drains a child's pipe as it writes (a full pipe would stall the child).
fn drain(mut pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut out = Vec::new();
        let _ = pipe.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    })
}

#[tokio::test]
async fn tokens_stay_out_of_the_lambda_functions_logs_at_trace() {
    let env = env("runtime_trace").start().await;
    let (event_tx, event_rx) = mpsc::channel(4);
    let (response_tx, mut response_rx) = mpsc::channel(4);
    let api = RuntimeApi { events: Arc::new(Mutex::new(event_rx)), responses: response_tx };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next_event))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(response))
        .route("/2018-06-01/runtime/init/error", post(response))
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let runtime_api = listener.local_addr().expect("addr").to_string();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut child = tokio::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["runtime_logs::connect_function_process", "--exact", "--ignored", "--nocapture"])
        .envs(&env.stack.connect_env)
        .env(CHILD, "1")
        .env("AWS_LAMBDA_RUNTIME_API", &runtime_api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "connect")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        // The most verbose settings there are: the function's LoggingConfig level and RUST_LOG.
        .env("AWS_LAMBDA_LOG_LEVEL", "TRACE")
        .env("RUST_LOG", "trace,lambda_runtime=trace,aws_smithy_runtime=trace")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("child starts");
    let stdout = drain(child.stdout.take().expect("stdout"));
    let stderr = drain(child.stderr.take().expect("stderr"));

    let claim =
        connect::Config::from_vars(&|k: &str| env.stack.connect_env.get(k).cloned()).expect("config").team_claim;
    let event = |method: &str, path: &str, body: &Value| {
        let mut headers = HeaderMap::new();
        headers.insert("x-team-id", HeaderValue::from_static("team-a"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        local_host::server::gateway_event(method, path, "", &headers, body.to_string().as_bytes(), &claim)
    };
    let mut answer = async |event: Value| -> Value {
        event_tx.send(event).await.expect("queued");
        let reply = tokio::time::timeout(Duration::from_secs(60), response_rx.recv())
            .await
            .expect("the function answers within a minute")
            .expect("answer");
        serde_json::json!({
            "status": reply["statusCode"],
            "body": serde_json::from_str::<Value>(reply["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null),
        })
    };
    let connected = answer(event("POST", "/integrations/gitlab", &env.connect_body(demo::API))).await;
    assert_eq!(connected["status"], 201, "{connected}");
    let id = connected["body"]["id"].as_str().expect("id").to_owned();
    let rotated =
        answer(event("PUT", &format!("/integrations/gitlab/{id}/token"), &json!({ "token": demo::READONLY }))).await;
    assert_eq!(rotated["status"], 200, "{rotated}");

    let _ = child.kill().await;
    server.abort();
    let output = format!("{}{}", stdout.await.expect("stdout"), stderr.await.expect("stderr"));
    // Positive controls: the function logged, at the verbose levels too.
    assert!(output.contains("integration connected") && output.contains("token rotated"), "{output}");
    assert!(output.contains("TRACE") || output.contains("DEBUG"), "verbose lines are written: {output}");
    for token in [demo::API, demo::READONLY] {
        assert!(!output.contains(token), "a token reached the function's output");
    }
}
