//! The bridge between gix's blocking `Http` trait and the pinned async client. gix runs on a
//! blocking thread and hands each request over a channel; the async side sends it with
//! [`GitlabClient::git_request`] (pinned addresses, instance CA, token, no redirects) and streams
//! the answer back through bounded channels, counting every byte against the fetch limit.

use std::any::Any;
use std::io::{self, BufRead, Read, Write};
use std::time::Duration;

use gix_transport::client::AuthenticationRequired;
use gix_transport::client::blocking_io::http::{GetResponse, Http, PostBodyDataKind, PostResponse};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::FetchError;
use crate::adapters::gitlab::{GitlabClient, retry_after};
use crate::domain::gitlab::GitlabError;

/// Request headers gix may set; anything else it writes (its user agent, credentials it never
/// has) is dropped, and `git_request` adds the token itself.
const FORWARDED: [&str; 3] = ["git-protocol", "content-type", "accept"];
/// A fetch request is a handful of `want`/`deepen`/`done` lines.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Chunks in flight between the async side and gix, each way.
const CHANNEL_CHUNKS: usize = 8;

/// One request from gix: where, what, and the channels its answer comes back on.
pub(super) struct Call {
    method: reqwest::Method,
    url: String,
    headers: HeaderMap,
    body: Option<mpsc::Receiver<Vec<u8>>>,
    head: oneshot::Sender<io::Result<Vec<u8>>>,
    response: mpsc::Sender<io::Result<Vec<u8>>>,
}

/// gix's side: an [`Http`] implementation that only talks to the async side.
#[derive(Clone)]
pub(super) struct PinnedHttp {
    calls: mpsc::Sender<Call>,
}

impl PinnedHttp {
    pub(super) fn new(calls: mpsc::Sender<Call>) -> Self {
        Self { calls }
    }

    fn start(
        &self,
        method: reqwest::Method,
        url: &str,
        lines: impl IntoIterator<Item = impl AsRef<str>>,
        body: Option<mpsc::Receiver<Vec<u8>>>,
    ) -> gix_error::Result<(HeadReader, BodyReader)> {
        let mut headers = HeaderMap::new();
        for line in lines {
            if let Some((name, value)) = line.as_ref().split_once(':')
                && FORWARDED.iter().any(|allowed| name.trim().eq_ignore_ascii_case(allowed))
                && let (Ok(name), Ok(value)) =
                    (HeaderName::from_bytes(name.trim().as_bytes()), HeaderValue::from_str(value.trim()))
            {
                headers.append(name, value);
            }
        }
        let (head, head_rx) = oneshot::channel();
        let (response, response_rx) = mpsc::channel(CHANNEL_CHUNKS);
        let call = Call { method, url: url.to_owned(), headers, body, head, response };
        self.calls.blocking_send(call).map_err(|_| gix_error::Error::from_error(closed()))?;
        Ok((HeadReader::Waiting(Some(head_rx)), BodyReader { chunks: response_rx, chunk: Vec::new(), pos: 0 }))
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the fetch was stopped")
}

impl Http for PinnedHttp {
    type Headers = HeadReader;
    type ResponseBody = BodyReader;
    type PostBody = BodyWriter;

    fn get(
        &mut self,
        url: &str,
        _base_url: &str,
        headers: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> gix_error::Result<GetResponse<Self::Headers, Self::ResponseBody>> {
        let (headers, body) = self.start(reqwest::Method::GET, url, headers, None)?;
        Ok(GetResponse { headers, body })
    }

    fn post(
        &mut self,
        url: &str,
        _base_url: &str,
        headers: impl IntoIterator<Item = impl AsRef<str>>,
        _body: PostBodyDataKind,
    ) -> gix_error::Result<PostResponse<Self::Headers, Self::ResponseBody, Self::PostBody>> {
        let (sender, receiver) = mpsc::channel(CHANNEL_CHUNKS);
        let (headers, body) = self.start(reqwest::Method::POST, url, headers, Some(receiver))?;
        Ok(PostResponse { post_body: BodyWriter { sender: Some(sender) }, headers, body })
    }

    /// Nothing is taken from git configuration: proxies, extra headers, redirects, CA paths
    /// and timeouts are the pinned client's.
    fn configure(&mut self, _config: &dyn Any) -> gix_error::Result {
        Ok(())
    }
}

/// The answer's headers, as `name: value` lines once the answer arrives, or the reason there is
/// none (a 401 as `PermissionDenied`, as the `Http` contract asks).
pub(super) enum HeadReader {
    Waiting(Option<oneshot::Receiver<io::Result<Vec<u8>>>>),
    Ready(io::Cursor<Vec<u8>>),
}

impl HeadReader {
    fn ready(&mut self) -> io::Result<&mut io::Cursor<Vec<u8>>> {
        if let Self::Waiting(receiver) = self {
            let lines = receiver.take().ok_or_else(closed)?.blocking_recv().map_err(|_| closed())??;
            *self = Self::Ready(io::Cursor::new(lines));
        }
        match self {
            Self::Ready(cursor) => Ok(cursor),
            Self::Waiting(_) => Err(closed()),
        }
    }
}

impl Read for HeadReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.ready()?.read(buf)
    }
}

impl BufRead for HeadReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.ready()?.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        if let Self::Ready(cursor) = self {
            cursor.consume(amount);
        }
    }
}

/// The answer's body, chunk by chunk as the async side reads it.
pub(super) struct BodyReader {
    chunks: mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for BodyReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos >= self.chunk.len() {
            match self.chunks.blocking_recv() {
                Some(chunk) => {
                    self.chunk = chunk?;
                    self.pos = 0;
                }
                None => return Ok(&[]),
            }
        }
        Ok(&self.chunk[self.pos..])
    }

    fn consume(&mut self, amount: usize) {
        self.pos = (self.pos + amount).min(self.chunk.len());
    }
}

/// The request body gix writes before it reads the answer; dropping it ends the body.
pub(super) struct BodyWriter {
    sender: Option<mpsc::Sender<Vec<u8>>>,
}

impl Write for BodyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let sender = self.sender.as_ref().ok_or_else(closed)?;
        sender.blocking_send(buf.to_vec()).map_err(|_| closed())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The async side: sends gix's requests one after the other and keeps the first failure seen on
/// the wire, which explains gix's own (less specific) error.
pub(super) struct Wire<'a> {
    client: &'a GitlabClient,
    deadline: Instant,
    max_bytes: u64,
    pub(super) received: u64,
    pub(super) failure: Option<FetchError>,
}

impl<'a> Wire<'a> {
    pub(super) fn new(client: &'a GitlabClient, deadline: Instant, max_bytes: u64) -> Self {
        Self { client, deadline, max_bytes, received: 0, failure: None }
    }

    pub(super) fn fail(&mut self, error: FetchError) {
        self.failure.get_or_insert(error);
    }

    /// Serves calls until gix drops its last sender.
    pub(super) async fn serve(&mut self, mut calls: mpsc::Receiver<Call>) {
        while let Some(call) = calls.recv().await {
            self.serve_one(call).await;
        }
    }

    async fn serve_one(&mut self, call: Call) {
        let Call { method, url, headers, body, head, response } = call;
        let body = match body {
            None => None,
            Some(chunks) => match collect(chunks).await {
                Some(body) => Some(body),
                None => {
                    let _ = head.send(Err(io::Error::other("the request body is larger than a fetch needs")));
                    return;
                }
            },
        };
        let timeout = self.deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let mut answer = match self.client.git_request(method, &url, headers, body, timeout).await {
            Ok(answer) => answer,
            Err(error) => {
                let error = FetchError::from(error);
                let _ = head.send(Err(io::Error::other(error.to_string())));
                self.fail(error);
                return;
            }
        };
        let status = answer.status();
        if !status.is_success() {
            let error = status_error(status, answer.headers());
            let io_error = if status == StatusCode::UNAUTHORIZED {
                io::Error::new(io::ErrorKind::PermissionDenied, AuthenticationRequired { www_authenticate: Vec::new() })
            } else {
                io::Error::other(error.to_string())
            };
            let _ = head.send(Err(io_error));
            self.fail(error);
            return;
        }
        if answer.content_length().is_some_and(|n| self.received.saturating_add(n) > self.max_bytes) {
            let _ = head.send(Err(io::Error::other(FetchError::TooLarge.to_string())));
            self.fail(FetchError::TooLarge);
            return;
        }
        // gix checks only the content type (smart protocol or not); the rest stays here.
        let content_type = answer.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if head.send(Ok(format!("content-type: {content_type}\n").into_bytes())).is_err() {
            return;
        }
        loop {
            match answer.chunk().await {
                Ok(Some(chunk)) => {
                    self.received = self.received.saturating_add(chunk.len() as u64);
                    if self.received > self.max_bytes {
                        self.fail(FetchError::TooLarge);
                        let _ = response.send(Err(io::Error::other(FetchError::TooLarge.to_string()))).await;
                        return;
                    }
                    if response.send(Ok(Vec::from(chunk))).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(error) => {
                    let error = if error.is_timeout() {
                        FetchError::Timeout
                    } else {
                        FetchError::Transport("the connection broke while reading the answer".into())
                    };
                    let _ = response.send(Err(io::Error::other(error.to_string()))).await;
                    self.fail(error);
                    return;
                }
            }
        }
    }
}

/// The whole request body, or `None` past [`MAX_REQUEST_BYTES`].
async fn collect(mut chunks: mpsc::Receiver<Vec<u8>>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = chunks.recv().await {
        if body.len() + chunk.len() > MAX_REQUEST_BYTES {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    Some(body)
}

/// What a git endpoint's status means (GitLab: 401 bad credentials, 403 no read access or
/// scope, 404 no such project or hidden from the token).
fn status_error(status: StatusCode, headers: &HeaderMap) -> FetchError {
    match status {
        StatusCode::UNAUTHORIZED => FetchError::Unauthorized,
        StatusCode::FORBIDDEN => FetchError::Forbidden,
        StatusCode::NOT_FOUND => FetchError::NotFound,
        StatusCode::TOO_MANY_REQUESTS => FetchError::RateLimited { retry_after: retry_after(headers) },
        status if status.is_server_error() => FetchError::Server { status: status.as_u16() },
        status => FetchError::Transport(format!("unexpected status {}", status.as_u16())),
    }
}

impl From<GitlabError> for FetchError {
    fn from(error: GitlabError) -> Self {
        match error {
            GitlabError::Timeout => Self::Timeout,
            GitlabError::NotGitlab { why: "redirect" } => Self::Redirected,
            GitlabError::Unauthorized | GitlabError::TokenExpired | GitlabError::TokenRevoked => Self::Unauthorized,
            GitlabError::Tls => Self::Transport("the TLS handshake with the instance failed".into()),
            GitlabError::Unreachable => Self::Transport("the instance could not be reached".into()),
            GitlabError::OffOrigin => Self::Transport("the request left the instance".into()),
            other => Self::Transport(other.to_string()),
        }
    }
}
