//! The scanners a job runs over its checkout: the built-in secret scanner (in process) and the
//! external SARIF scanners declared in configuration (child processes with a cleared
//! environment, a time limit and an output cap).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use shared::domain::findings::{BUILTIN_SCANNER, Finding, ScannerRun};
use shared::domain::sarif::{SarifLimits, parse_sarif};
use shared::domain::secrets::SecretScanner;
use tokio::io::AsyncReadExt;

/// Longest path walked below the checkout (the checkout's own limits are tighter).
const MAX_WALK_DEPTH: usize = 64;

/// An external scanner as declared in `SCANNERS` (JSON list).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalScanner {
    /// Name shown with its findings (`[a-z0-9_-]`, 1-40 characters; not `builtin`).
    pub name: String,
    /// Program and arguments; runs in the checkout directory and writes SARIF 2.1.0 to stdout.
    pub command: Vec<String>,
    /// Time limit (default 300 s).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Cap on its output (default 16 MiB); more is a failed run.
    #[serde(default = "default_output")]
    pub max_output_bytes: u64,
}

fn default_timeout() -> u64 {
    300
}

fn default_output() -> u64 {
    16 * 1024 * 1024
}

/// Reads and checks the `SCANNERS` declaration.
pub fn parse_scanners(raw: &str) -> Result<Vec<ExternalScanner>, String> {
    let list: Vec<ExternalScanner> = serde_json::from_str(raw).map_err(|e| format!("SCANNERS: {e}"))?;
    let mut names = std::collections::HashSet::new();
    for s in &list {
        let name_ok = (1..=40).contains(&s.name.len())
            && s.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && s.name != BUILTIN_SCANNER;
        if !name_ok {
            return Err(format!("SCANNERS: invalid scanner name {:?}", s.name));
        }
        if !names.insert(s.name.clone()) {
            return Err(format!("SCANNERS: {} declared twice", s.name));
        }
        if s.command.is_empty() || s.command[0].is_empty() {
            return Err(format!("SCANNERS: {} has no command", s.name));
        }
        if s.timeout_seconds == 0 || s.max_output_bytes == 0 {
            return Err(format!("SCANNERS: {} needs a positive timeout and output cap", s.name));
        }
    }
    Ok(list)
}

/// The environment every external scanner gets, and nothing else: no token, no AWS
/// credentials, no proxy settings.
pub fn scanner_env(home: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("PATH", "/usr/local/bin:/usr/bin:/bin".to_owned()),
        ("HOME", home.display().to_string()),
        ("LANG", "C.UTF-8".to_owned()),
        ("TMPDIR", home.display().to_string()),
    ]
}

/// What the built-in scanner made of a tree.
#[derive(Debug, Default)]
pub struct BuiltinResult {
    /// Findings, already in the connector's shape.
    pub findings: Vec<Finding>,
    /// Files read.
    pub files_scanned: u64,
    /// Files skipped (binary, generated, allowlisted, too large).
    pub files_skipped: u64,
}

/// Runs the built-in scanner over every regular file under `root` (never following links).
pub fn scan_tree(scanner: &SecretScanner, root: &Path, project_id: u64) -> std::io::Result<BuiltinResult> {
    let mut result = BuiltinResult::default();
    let mut stack: Vec<(PathBuf, String, usize)> = vec![(root.to_path_buf(), String::new(), 0)];
    while let Some((dir, prefix, depth)) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                result.files_skipped += 1;
                continue;
            };
            let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            let meta = std::fs::symlink_metadata(entry.path())?;
            if meta.is_dir() {
                if depth < MAX_WALK_DEPTH {
                    stack.push((entry.path(), rel, depth + 1));
                }
                continue;
            }
            if !meta.is_file() {
                continue;
            }
            let len = usize::try_from(meta.len()).unwrap_or(usize::MAX);
            if scanner.skip_path(&rel, len).is_some() {
                result.files_skipped += 1;
                continue;
            }
            let bytes = std::fs::read(entry.path())?;
            match scanner.scan(&rel, &bytes) {
                Ok(found) => {
                    result.files_scanned += 1;
                    result.findings.extend(found.into_iter().map(|f| Finding::from_secret(project_id, f)));
                }
                Err(_) => result.files_skipped += 1,
            }
        }
    }
    Ok(result)
}

/// Runs the built-in scanner on a blocking thread.
pub async fn run_builtin(scanner: Arc<SecretScanner>, root: PathBuf, project_id: u64) -> (Vec<Finding>, ScannerRun) {
    let started = Instant::now();
    let outcome = tokio::task::spawn_blocking(move || scan_tree(&scanner, &root, project_id)).await;
    let duration_ms = elapsed_ms(started);
    match outcome {
        Ok(Ok(r)) => {
            let run = ScannerRun {
                name: BUILTIN_SCANNER.into(),
                state: "succeeded".into(),
                findings: r.findings.len() as u64,
                duration_ms,
                error: None,
            };
            (r.findings, run)
        }
        Ok(Err(_)) | Err(_) => (
            Vec::new(),
            ScannerRun {
                name: BUILTIN_SCANNER.into(),
                state: "failed".into(),
                findings: 0,
                duration_ms,
                error: Some("the checkout could not be read".into()),
            },
        ),
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn failed(name: &str, started: Instant, why: &str) -> (Vec<Finding>, Fixes, ScannerRun) {
    (
        Vec::new(),
        Vec::new(),
        ScannerRun {
            name: name.to_owned(),
            state: "failed".into(),
            findings: 0,
            duration_ms: elapsed_ms(started),
            error: Some(why.to_owned()),
        },
    )
}

/// Kills a scanner's process group when dropped (the scanner finished, failed or ran out of
/// time): nothing it started outlives it in the job directory.
struct GroupGuard(rustix::process::Pid);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        // The group is usually gone already; ESRCH is the expected answer.
        let _ = rustix::process::kill_process_group(self.0, rustix::process::Signal::KILL);
    }
}

/// The edits a scanner proposed, by the fingerprint of the finding they fix.
pub type Fixes = Vec<(String, Vec<shared::domain::sarif::Edit>)>;

/// Runs one external scanner in `checkout` with `home` as its private home and temp directory.
/// Its stderr is discarded (it may quote repository content); its stdout is read up to the cap.
pub async fn run_external(
    scanner: &ExternalScanner,
    checkout: &Path,
    home: &Path,
    project_id: u64,
) -> (Vec<Finding>, Fixes, ScannerRun) {
    let started = Instant::now();
    let mut command = tokio::process::Command::new(&scanner.command[0]);
    command
        .args(&scanner.command[1..])
        .current_dir(checkout)
        .env_clear()
        .envs(scanner_env(home))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Its own process group, so whatever it starts is stopped with it.
        .process_group(0)
        .kill_on_drop(true);
    let Ok(mut child) = command.spawn() else {
        return failed(&scanner.name, started, "the scanner could not be started");
    };
    let group =
        child.id().and_then(|pid| i32::try_from(pid).ok()).and_then(rustix::process::Pid::from_raw).map(GroupGuard);
    let Some(stdout) = child.stdout.take() else {
        return failed(&scanner.name, started, "the scanner's output could not be read");
    };
    let cap = scanner.max_output_bytes;
    // Read on its own task: a descendant that keeps the pipe open must not hold the result.
    let read = tokio::spawn(async move {
        let mut out = Vec::new();
        let mut limited = stdout.take(cap + 1);
        limited.read_to_end(&mut out).await.map(|_| out)
    });
    let deadline = Duration::from_secs(scanner.timeout_seconds);
    let output = match tokio::time::timeout(deadline, async {
        let status = child.wait().await;
        // The scanner is done: whatever it left running goes, and with it the pipe's last writer.
        drop(group);
        let out = read.await.unwrap_or_else(|e| Err(std::io::Error::other(e)));
        (out, status)
    })
    .await
    {
        Err(_) => return failed(&scanner.name, started, "the scanner ran out of time and was stopped"),
        Ok((Err(_), _)) => return failed(&scanner.name, started, "the scanner's output could not be read"),
        Ok((Ok(out), status)) => {
            if out.len() as u64 > cap {
                return failed(&scanner.name, started, "the scanner's output exceeded its cap");
            }
            if !status.is_ok_and(|s| s.success() || s.code() == Some(1)) {
                // Exit code 1 is "findings present" for most scanners (semgrep --error, gitleaks).
                return failed(&scanner.name, started, "the scanner exited with an error");
            }
            out
        }
    };
    match parse_sarif(&output, &scanner.name, SarifLimits::default()) {
        Ok(report) => {
            let mut fixes = Fixes::new();
            let findings: Vec<Finding> = report
                .findings
                .into_iter()
                .map(|f| {
                    // The first proposed fix that changes something.
                    let edits = f.fixes.iter().find(|e| !e.is_empty()).cloned();
                    let finding = Finding::from_sarif(project_id, f);
                    if let Some(edits) = edits {
                        fixes.push((finding.fingerprint.clone(), edits));
                    }
                    finding
                })
                .collect();
            let run = ScannerRun {
                name: scanner.name.clone(),
                state: "succeeded".into(),
                findings: findings.len() as u64,
                duration_ms: elapsed_ms(started),
                error: None,
            };
            (findings, fixes, run)
        }
        Err(e) => failed(&scanner.name, started, &format!("the scanner's SARIF was refused: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_declarations_are_checked() {
        let ok = parse_scanners(r#"[{"name":"semgrep","command":["semgrep","scan","--sarif","."]}]"#).expect("ok");
        assert_eq!(ok[0].timeout_seconds, 300);
        for bad in [
            r#"[{"name":"builtin","command":["x"]}]"#,
            r#"[{"name":"Bad Name","command":["x"]}]"#,
            r#"[{"name":"a","command":[]}]"#,
            r#"[{"name":"a","command":["x"]},{"name":"a","command":["y"]}]"#,
            r#"[{"name":"a","command":["x"],"timeout_seconds":0}]"#,
            r#"[{"name":"a","command":["x"],"env":{"TOKEN":"x"}}]"#,
        ] {
            assert!(parse_scanners(bad).is_err(), "{bad}");
        }
    }

    fn script(dir: &Path, name: &str, body: &str) -> ExternalScanner {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("script");
        let mut perms = std::fs::metadata(&path).expect("meta").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&path, perms).expect("chmod");
        ExternalScanner {
            name: name.into(),
            command: vec![path.display().to_string()],
            timeout_seconds: 2,
            max_output_bytes: 4096,
        }
    }

    #[tokio::test]
    async fn external_scanners_are_bounded_in_time_and_output_and_their_failures_named() {
        let dir = std::env::temp_dir().join(format!("scanner-test-{}", rand::random::<u64>()));
        std::fs::create_dir_all(dir.join("home")).expect("dir");
        let sarif = r#"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"t"}},"results":[{"ruleId":"r","message":{"text":"m"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"a.txt"},"region":{"startLine":3}}}]}]}]}"#;
        let cases = [
            (script(&dir, "ok", &format!("echo '{sarif}'")), None),
            (script(&dir, "findings-exit", &format!("echo '{sarif}'; exit 1")), None),
            (script(&dir, "slow", "sleep 30"), Some("ran out of time")),
            (script(&dir, "chatty", "yes 0123456789"), Some("exceeded its cap")),
            (script(&dir, "crash", "exit 3"), Some("exited with an error")),
            (script(&dir, "garbage", "echo not-sarif"), Some("SARIF was refused")),
            (
                script(&dir, "forks", &format!("(sleep 30; touch '{}') & echo not-sarif", dir.join("late").display())),
                Some("SARIF was refused"),
            ),
        ];
        for (scanner, failure) in cases {
            let started = std::time::Instant::now();
            let (findings, _, run) = run_external(&scanner, &dir, &dir.join("home"), 7).await;
            assert!(started.elapsed() < Duration::from_secs(10), "{} was not stopped", scanner.name);
            match failure {
                None => {
                    assert_eq!(run.state, "succeeded", "{}: {run:?}", scanner.name);
                    assert_eq!(findings.len(), 1);
                    assert_eq!((findings[0].path.as_str(), findings[0].line), ("a.txt", 3));
                    assert_eq!(findings[0].scanner, scanner.name);
                }
                Some(why) => {
                    assert_eq!(run.state, "failed", "{}", scanner.name);
                    assert!(run.error.as_deref().is_some_and(|e| e.contains(why)), "{}: {:?}", scanner.name, run.error);
                    assert!(findings.is_empty());
                }
            }
        }
        // The background child of `forks` died with its group.
        let mut ps = String::new();
        for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
            ps.push_str(&std::fs::read_to_string(entry.path().join("cmdline")).unwrap_or_default().replace('\0', " "));
            ps.push('\n');
        }
        assert!(!ps.contains(&dir.join("late").display().to_string()), "a scanner's child outlived it");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn scanners_get_no_credentials() {
        let env = scanner_env(Path::new("/tmp/job/home"));
        let names: Vec<&str> = env.iter().map(|(k, _)| *k).collect();
        assert_eq!(names, ["PATH", "HOME", "LANG", "TMPDIR"]);
    }
}
