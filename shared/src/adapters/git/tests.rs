//! Fetches against a real `git http-backend` behind TLS on 127.0.0.1, reached through the
//! pinned client (a private CA, a pinned name, Basic auth checked by the server).

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use base64::Engine as _;
use gix_object::Exists as _;
use secrecy::SecretString;

use super::*;
use crate::adapters::gitlab::GitlabSettings;
use crate::adapters::gitlab::tls::TlsRoots;
use crate::domain::address::Allowlist;
use crate::domain::gitlab::GitlabError;
use crate::domain::url_policy::{InstanceUrl, UrlPolicy};
use crate::ports::ResolvedInstance;

const TOKEN: &str = "glpat-s3cr3t-t0ken-value";
const HOST: &str = "gitlab.test";
const PREFIX: &str = "/gitlab";
const PROJECT: &str = "group/project";
const MR_REF: &str = "refs/merge-requests/1/head";

/// Runs git with no system or global configuration and fixed dates.
fn git(root: &Path, args: &[&str], stdin: &[u8]) -> String {
    let mut child = Command::new("git")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_AUTHOR_DATE", "1700000000 +0000")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_DATE", "1700000000 +0000")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("git runs");
    child.stdin.take().expect("stdin").write_all(stdin).expect("stdin written");
    let out = child.wait_with_output().expect("git finishes");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

/// A bare repository `group/project.git` with two commits: `parent` holds a blob found nowhere
/// else; `head` holds files, an executable, a symlink, a submodule and an LFS pointer.
struct Fixture {
    root: JobDir,
    parent: String,
    head: String,
    parent_only_blob: String,
    /// Commits whose trees break the checkout rules: a `.git` directory, a name held twice.
    hostile: [String; 2],
}

impl Fixture {
    fn new() -> Self {
        let root = JobDir::create(&std::env::temp_dir()).expect("root");
        let repo = root.path().join(format!("{PROJECT}.git"));
        std::fs::create_dir_all(&repo).expect("repo dir");
        let r = root.path();
        let dir = repo.to_str().expect("utf-8 path");
        git(r, &["init", "--bare", "--quiet", dir], b"");
        let blob = |content: &[u8]| git(r, &["--git-dir", dir, "hash-object", "-w", "--stdin"], content);
        let tree = |entries: &str| git(r, &["--git-dir", dir, "mktree", "--missing"], entries.as_bytes());

        let parent_only_blob = blob(b"this blob exists only in the parent commit\n");
        let old_readme = blob(b"old readme\n");
        let parent_tree =
            tree(&format!("100644 blob {old_readme}\tREADME.md\n100644 blob {parent_only_blob}\tonly-in-parent.txt\n"));
        let parent = git(r, &["--git-dir", dir, "commit-tree", &parent_tree, "-m", "parent"], b"");

        let readme = blob(b"# hello\n");
        let main = blob(b"fn main() {}\n");
        let script = blob(b"#!/bin/sh\necho hi\n");
        let link = blob(b"../../etc/passwd");
        let lfs = blob(b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 12345\n");
        let src = tree(&format!("100644 blob {main}\tmain.rs\n"));
        let vendor = tree(&format!("160000 commit {}\tlib\n", "1".repeat(40)));
        let head_tree = tree(&format!(
            "100644 blob {readme}\tREADME.md\n100644 blob {lfs}\tbig.bin\n120000 blob {link}\tlink\n\
             100755 blob {script}\trun.sh\n040000 tree {src}\tsrc\n040000 tree {vendor}\tvendor\n"
        ));
        let head = git(r, &["--git-dir", dir, "commit-tree", &head_tree, "-p", &parent, "-m", "head"], b"");
        git(r, &["--git-dir", dir, "update-ref", "refs/heads/main", &head], b"");
        git(r, &["--git-dir", dir, "update-ref", MR_REF, &head], b"");

        let config = blob(b"[core]\n\thooksPath = /tmp\n");
        let dot_git = tree(&format!("100644 blob {config}\tconfig\n"));
        let with_git_dir = tree(&format!("040000 tree {dot_git}\t.git\n100644 blob {readme}\tREADME.md\n"));
        let twice = tree(&format!("100644 blob {readme}\ta\n100644 blob {main}\ta\n"));
        let hostile =
            [with_git_dir, twice].map(|t| git(r, &["--git-dir", dir, "commit-tree", &t, "-m", "hostile"], b""));
        Self { root, parent, head, parent_only_blob, hostile }
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    git_protocol: Option<String>,
    body: Vec<u8>,
}

struct ServerState {
    root: PathBuf,
    /// Answer a `fetch` with git's "not our ref" until an `ls-refs` was seen, like a server that
    /// serves advertised tips only.
    refuse_by_id: bool,
    ls_refs_seen: AtomicBool,
    seen: Mutex<Vec<Seen>>,
}

struct GitServer {
    addr: SocketAddr,
    ca_pem: String,
    state: Arc<ServerState>,
    handle: axum_server::Handle<SocketAddr>,
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

impl GitServer {
    async fn start(root: &Path, refuse_by_id: bool) -> Self {
        let (ca_pem, config) = tls();
        let state = Arc::new(ServerState {
            root: root.to_owned(),
            refuse_by_id,
            ls_refs_seen: AtomicBool::new(false),
            seen: Mutex::new(Vec::new()),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(listener, axum_server::tls_rustls::RustlsConfig::from_config(config))
            .expect("server")
            .handle(handle.clone());
        let app = axum::Router::new().fallback(serve).with_state(Arc::clone(&state));
        tokio::spawn(async move { server.serve(app.into_make_service()).await });
        Self { addr, ca_pem, state, handle }
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("lock").clone()
    }

    fn client(&self, token: &str) -> GitlabClient {
        let policy = UrlPolicy { allowlist: Allowlist::parse(HOST).expect("allowlist"), denied_hosts: Vec::new() };
        let url = InstanceUrl::parse(&format!("https://{HOST}:{}{PREFIX}", self.addr.port()), &policy).expect("url");
        let instance = ResolvedInstance { url, addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)] };
        let settings = GitlabSettings::default();
        GitlabClient::new(&settings, &TlsRoots::public(), &instance, Some(&self.ca_pem), SecretString::from(token))
            .expect("client")
    }
}

/// A throwaway CA and a certificate for [`HOST`] it signs.
fn tls() -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("ca key");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf =
        CertificateParams::new(vec![HOST.to_owned()]).expect("leaf").signed_by(&leaf_key, &issuer).expect("leaf");
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .expect("server config");
    (ca.pem(), Arc::new(config))
}

fn basic(token: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("oauth2:{token}")))
}

fn plain(status: u16, headers: &[(&str, &str)], body: &'static str) -> Response {
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(*name, *value);
    }
    response.body(Body::from(body)).expect("response")
}

/// GitLab's git endpoints in miniature: Basic auth, a redirecting project, a slow project, and
/// everything else handed to `git http-backend` as CGI.
async fn serve(State(state): State<Arc<ServerState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.expect("body").to_vec();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let path = parts.uri.path().to_owned();
    state.seen.lock().expect("lock").push(Seen {
        method: parts.method.to_string(),
        path: path.clone(),
        git_protocol: header("git-protocol"),
        body: body.clone(),
    });
    let Some(path) = path.strip_prefix(PREFIX) else {
        return plain(404, &[], "no such path");
    };
    if path.starts_with("/redirect/") {
        return plain(302, &[("location", "https://elsewhere.example/group/project.git/info/refs")], "");
    }
    if header("authorization").as_deref() != Some(basic(TOKEN).as_str()) {
        return plain(401, &[("www-authenticate", "Basic realm=\"GitLab\"")], "HTTP Basic: Access denied\n");
    }
    if path.starts_with("/slow/") {
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    if body.windows(13).any(|w| w == b"command=ls-re") {
        state.ls_refs_seen.store(true, Ordering::SeqCst);
    }
    if state.refuse_by_id
        && body.windows(13).any(|w| w == b"command=fetch")
        && !state.ls_refs_seen.load(Ordering::SeqCst)
    {
        let line = "ERR upload-pack: not our ref 0000000000000000000000000000000000000000\n";
        let packet = format!("{:04x}{line}", line.len() + 4);
        return Response::builder()
            .header("content-type", "application/x-git-upload-pack-result")
            .body(Body::from(packet))
            .expect("response");
    }
    let cgi: HashMap<&str, String> = HashMap::from([
        ("REQUEST_METHOD", parts.method.to_string()),
        ("PATH_INFO", path.to_owned()),
        ("QUERY_STRING", parts.uri.query().unwrap_or("").to_owned()),
        ("CONTENT_TYPE", header("content-type").unwrap_or_default()),
        ("CONTENT_LENGTH", body.len().to_string()),
        ("GIT_PROTOCOL", header("git-protocol").unwrap_or_default()),
    ]);
    let root = state.root.clone();
    tokio::task::spawn_blocking(move || http_backend(&root, &cgi, &body)).await.expect("backend")
}

fn http_backend(root: &Path, cgi: &HashMap<&str, String>, body: &[u8]) -> Response {
    let mut child = Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "uploadpack.allowAnySHA1InWant")
        .env("GIT_CONFIG_VALUE_0", "true")
        .envs(cgi.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("http-backend runs");
    child.stdin.take().expect("stdin").write_all(body).expect("stdin written");
    let out = child.wait_with_output().expect("http-backend finishes").stdout;
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    let (end, gap) = split.or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2))).expect("cgi headers");
    let mut response = Response::builder();
    for line in String::from_utf8_lossy(&out[..end]).lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        if name.eq_ignore_ascii_case("status") {
            let code = value.trim().split(' ').next().unwrap_or("500").parse::<u16>().expect("status");
            response = response.status(code);
        } else {
            response = response.header(name.trim(), value.trim());
        }
    }
    response.body(Body::from(out[end + gap..].to_vec())).expect("response")
}

fn spec(commit: &str, ref_name: Option<&str>) -> FetchSpec {
    FetchSpec {
        project_path: PROJECT.to_owned(),
        commit: CommitSha::parse(commit).expect("sha"),
        ref_name: ref_name.map(str::to_owned),
    }
}

/// Every byte of every file under `dir`.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let entry = entry.expect("entry");
            let kind = entry.file_type().expect("type");
            if kind.is_dir() {
                pending.push(entry.path());
            } else {
                assert!(kind.is_file(), "{:?} is neither file nor directory", entry.path());
                bytes.extend(std::fs::read(entry.path()).expect("read"));
                bytes.extend(entry.path().to_string_lossy().as_bytes());
            }
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn assert_no_token(bytes: &[u8]) {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("oauth2:{TOKEN}"));
    assert!(!contains(bytes, TOKEN) && !contains(bytes, &encoded), "the token was written");
}

#[tokio::test]
async fn fetches_exactly_one_commit_at_depth_one_by_id() {
    let fixture = Fixture::new();
    let server = GitServer::start(fixture.root.path(), false).await;
    let job = JobDir::create(&std::env::temp_dir()).expect("job");

    let fetched = fetch_commit(&server.client(TOKEN), &spec(&fixture.head, None), job.path(), &FetchLimits::default())
        .await
        .expect("fetched");

    let tree = job.path().join("tree");
    assert_eq!(fetched.tree_dir, tree);
    assert_eq!((fetched.files, fetched.bytes), (3, 8 + 13 + 18));
    assert_eq!(std::fs::read(tree.join("README.md")).expect("readme"), b"# hello\n");
    assert_eq!(std::fs::read(tree.join("src/main.rs")).expect("main"), b"fn main() {}\n");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(tree.join("run.sh")).expect("meta").permissions());
    assert_eq!(mode & 0o111, 0, "executable bits are dropped");
    let mut recorded = fetched.recorded.clone();
    recorded.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        recorded,
        vec![
            ("big.bin".to_owned(), Recorded::LfsPointer),
            ("link".to_owned(), Recorded::Symlink("../../etc/passwd".into())),
            ("vendor/lib".to_owned(), Recorded::Submodule),
        ]
    );
    for absent in ["link", "vendor/lib", "big.bin"] {
        assert!(std::fs::symlink_metadata(tree.join(absent)).is_err(), "{absent} was created");
    }

    // Depth 1: the commit is there, its parent and the parent's own blob never arrived.
    let objects = gix_odb::at(job.path().join(".objects"), gix_hash::Kind::Sha1).expect("odb");
    let id = |hex: &str| gix_hash::ObjectId::from_hex(hex.as_bytes()).expect("id");
    assert!(objects.exists(&id(&fixture.head)));
    assert!(!objects.exists(&id(&fixture.parent)));
    assert!(!objects.exists(&id(&fixture.parent_only_blob)));
    assert_eq!(fetched.objects, 9, "1 commit, 3 trees, 5 blobs");
    assert!(fetched.bytes_received > 0);

    // Protocol v2 by id: the advertisement, then one fetch; no ref listing.
    let seen = server.seen();
    assert_eq!(
        seen.iter().map(|s| (s.method.as_str(), s.path.as_str())).collect::<Vec<_>>(),
        vec![("GET", "/gitlab/group/project.git/info/refs"), ("POST", "/gitlab/group/project.git/git-upload-pack")]
    );
    assert!(seen.iter().all(|s| s.git_protocol.as_deref() == Some("version=2")), "{seen:?}");
    let fetch = String::from_utf8_lossy(&seen[1].body).into_owned();
    assert!(fetch.contains(&format!("want {}", fixture.head)) && fetch.contains("deepen 1"), "{fetch}");

    assert_no_token(&all_bytes(job.path()));
    let path = job.path().to_owned();
    drop(job);
    assert!(!path.exists(), "the job directory is removed on drop");
}

#[tokio::test]
async fn falls_back_to_the_merge_request_ref_when_the_server_refuses_the_id() {
    let fixture = Fixture::new();
    let server = GitServer::start(fixture.root.path(), true).await;
    let job = JobDir::create(&std::env::temp_dir()).expect("job");

    let fetched =
        fetch_commit(&server.client(TOKEN), &spec(&fixture.head, Some(MR_REF)), job.path(), &FetchLimits::default())
            .await
            .expect("fetched through the ref");

    assert_eq!(fetched.files, 3);
    let bodies: Vec<String> = server.seen().iter().map(|s| String::from_utf8_lossy(&s.body).into_owned()).collect();
    assert!(bodies.iter().any(|b| b.contains(&format!("ref-prefix {MR_REF}"))), "{bodies:?}");
    assert!(server.seen().iter().all(|s| s.git_protocol.as_deref() == Some("version=2")));
}

#[tokio::test]
async fn a_ref_that_no_longer_points_at_the_commit_is_commit_not_found() {
    let fixture = Fixture::new();
    let server = GitServer::start(fixture.root.path(), true).await;
    let job = JobDir::create(&std::env::temp_dir()).expect("job");

    let result =
        fetch_commit(&server.client(TOKEN), &spec(&fixture.parent, Some(MR_REF)), job.path(), &FetchLimits::default())
            .await;

    assert!(matches!(result, Err(FetchError::CommitNotFound)), "{result:?}");
}

#[tokio::test]
async fn an_unknown_commit_is_commit_not_found() {
    let fixture = Fixture::new();
    let server = GitServer::start(fixture.root.path(), false).await;
    let job = JobDir::create(&std::env::temp_dir()).expect("job");

    let result =
        fetch_commit(&server.client(TOKEN), &spec(&"ab".repeat(20), None), job.path(), &FetchLimits::default()).await;

    assert!(matches!(result, Err(FetchError::CommitNotFound)), "{result:?}");
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized_and_never_shown_or_written() {
    let fixture = Fixture::new();
    let server = GitServer::start(fixture.root.path(), false).await;
    let job = JobDir::create(&std::env::temp_dir()).expect("job");
    let wrong = "glpat-wrong-token-value";

    let error = fetch_commit(&server.client(wrong), &spec(&fixture.head, None), job.path(), &FetchLimits::default())
        .await
        .expect_err("refused");

    assert!(matches!(error, FetchError::Unauthorized), "{error:?}");
    let text = format!("{error} {error:?}");
    assert!(!text.contains(wrong) && !text.contains(TOKEN), "{text}");
    assert!(!contains(&all_bytes(job.path()), wrong));
    assert_eq!(server.seen().len(), 1, "no retry with other credentials");
}

#[tokio::test]
async fn a_redirect_is_an_error_and_not_followed() {
    let fixture = Fixture::new();
    let server = GitServer::start(fixture.root.path(), false).await;
    let job = JobDir::create(&std::env::temp_dir()).expect("job");
    let spec = FetchSpec { project_path: "redirect/me".into(), ..spec(&fixture.head, None) };

    let result = fetch_commit(&server.client(TOKEN), &spec, job.path(), &FetchLimits::default()).await;

    assert!(matches!(result, Err(FetchError::Redirected)), "{result:?}");
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn the_byte_limit_and_the_deadline_stop_a_fetch() {
    let fixture = Fixture::new();
    let server = GitServer::start(fixture.root.path(), false).await;
    let client = server.client(TOKEN);

    let job = JobDir::create(&std::env::temp_dir()).expect("job");
    let small = FetchLimits { max_fetch_bytes: 300, ..FetchLimits::default() };
    let result = fetch_commit(&client, &spec(&fixture.head, None), job.path(), &small).await;
    assert!(matches!(result, Err(FetchError::TooLarge)), "{result:?}");

    let job = JobDir::create(&std::env::temp_dir()).expect("job");
    let slow = FetchSpec { project_path: "slow/project".into(), ..spec(&fixture.head, None) };
    let quick = FetchLimits { deadline: Duration::from_millis(300), ..FetchLimits::default() };
    let started = std::time::Instant::now();
    let result = fetch_commit(&client, &slow, job.path(), &quick).await;
    assert!(matches!(result, Err(FetchError::Timeout)), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn specs_that_could_leave_the_instance_are_refused_before_any_request() {
    let fixture = Fixture::new();
    let server = GitServer::start(fixture.root.path(), false).await;
    let client = server.client(TOKEN);
    for (path, ref_name) in [
        ("../etc", None),
        ("/group/project", None),
        ("group//project", None),
        ("group/project.git", None),
        ("group/pro ject", None),
        ("group/%2e%2e", None),
        ("group/-project", None),
        (PROJECT, Some("main")),
        (PROJECT, Some("refs/heads/../x")),
        (PROJECT, Some("refs/heads/-x")),
        (PROJECT, Some("refs/heads/a b")),
    ] {
        let job = JobDir::create(&std::env::temp_dir()).expect("job");
        let spec =
            FetchSpec { project_path: path.into(), ref_name: ref_name.map(str::to_owned), ..spec(&fixture.head, None) };
        let result = fetch_commit(&client, &spec, job.path(), &FetchLimits::default()).await;
        assert!(matches!(result, Err(FetchError::InvalidSpec)), "{path} {ref_name:?}: {result:?}");
    }
    assert!(server.seen().is_empty());
    assert!(valid_project_path("a/b.c/d_e-f") && valid_ref(MR_REF) && valid_ref("refs/heads/feature/x"));
}

#[tokio::test]
async fn trees_that_break_the_checkout_rules_stop_the_checkout() {
    let fixture = Fixture::new();
    let server = GitServer::start(fixture.root.path(), false).await;
    let client = server.client(TOKEN);
    for commit in &fixture.hostile {
        let job = JobDir::create(&std::env::temp_dir()).expect("job");

        let result = fetch_commit(&client, &spec(commit, None), job.path(), &FetchLimits::default()).await;

        assert!(matches!(result, Err(FetchError::Checkout(CheckoutError::UnsafePath(_)))), "{result:?}");
        assert!(!job.path().join("tree/.git").exists());
    }
}

#[tokio::test]
async fn the_git_request_carries_the_token_only_to_upload_pack_endpoints() {
    let fixture = Fixture::new();
    let server = GitServer::start(fixture.root.path(), false).await;
    let client = server.client(TOKEN);
    let base = client.instance().url.base_url();
    for (method, url) in [
        (reqwest::Method::GET, format!("{base}/api/v4/user")),
        (reqwest::Method::GET, format!("{base}/{PROJECT}.git/info/refs?service=git-receive-pack")),
        (reqwest::Method::POST, format!("{base}/{PROJECT}.git/git-receive-pack")),
        (reqwest::Method::POST, format!("{base}/{PROJECT}.git/info/refs?service=git-upload-pack")),
        (reqwest::Method::GET, format!("{base}/{PROJECT}.git/git-upload-pack")),
        (reqwest::Method::GET, format!("https://elsewhere.example/{PROJECT}.git/info/refs?service=git-upload-pack")),
        (reqwest::Method::GET, format!("{base}/../{PROJECT}.git/info/refs?service=git-upload-pack")),
    ] {
        let result = client.git_request(method, &url, http::HeaderMap::new(), None, Duration::from_secs(5)).await;
        assert!(matches!(result, Err(GitlabError::OffOrigin)), "{url}: {result:?}");
    }
    assert!(server.seen().is_empty());
}
