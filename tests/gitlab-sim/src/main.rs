//! `gitlab-sim`: runs the simulator with the demo data until Ctrl-C or SIGTERM, after printing
//! one JSON line with the base URL and the CA file to trust.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use gitlab_sim::{SimConfig, attach_demo_repositories, start};

const USAGE: &str = "usage: gitlab-sim [--bind ADDR:PORT] [--base-path /PATH] [--ca-out FILE] [--projects N]
                 [--latency-ms MS] [--repos-dir DIR]
  --bind        listen address (default 127.0.0.1:8443; port 0 picks a free one)
  --base-path   relative URL root, e.g. /gitlab (default: none)
  --ca-out      where to write the generated CA certificate (default: a file in the temp dir)
  --projects    serve N generated projects instead of the three demo ones
  --latency-ms  delay every /api answer by this many milliseconds (default 0)
  --repos-dir   where the demo projects' repositories are generated (default: a fresh directory
                in the temp dir, removed on exit; an existing directory is kept)";

struct Args {
    bind: SocketAddr,
    base_path: String,
    ca_out: Option<PathBuf>,
    projects: Option<usize>,
    latency_ms: u64,
    repos_dir: Option<PathBuf>,
}

fn parse_args(mut raw: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        bind: SocketAddr::from(([127, 0, 0, 1], 8443)),
        base_path: String::new(),
        ca_out: None,
        projects: None,
        latency_ms: 0,
        repos_dir: None,
    };
    while let Some(arg) = raw.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_string(), Some(value.into())),
            _ => (arg, None),
        };
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let Some(value) = inline.or_else(|| raw.next()) else {
            return Err(format!("{flag} needs a value"));
        };
        match flag.as_str() {
            "--bind" => {
                args.bind = value.parse().map_err(|e| format!("--bind {value}: {e}"))?;
            }
            "--base-path" => args.base_path = value,
            "--ca-out" => args.ca_out = Some(PathBuf::from(value)),
            "--projects" => {
                args.projects = Some(value.parse().map_err(|e| format!("--projects {value}: {e}"))?);
            }
            "--latency-ms" => {
                args.latency_ms = value.parse().map_err(|e| format!("--latency-ms {value}: {e}"))?;
            }
            "--repos-dir" => args.repos_dir = Some(PathBuf::from(value)),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("gitlab-sim: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let base = match args.projects {
        Some(n) => SimConfig::with_generated_projects(n),
        None => SimConfig::default(),
    };
    let mut config =
        SimConfig { base_path: args.base_path, latency: std::time::Duration::from_millis(args.latency_ms), ..base };
    // The demo projects get repositories made with the real `git` (a warning, not a failure,
    // where git is missing: the API works without them).
    let (repos_dir, remove_repos) = match args.repos_dir {
        Some(dir) => (dir, false),
        None => (std::env::temp_dir().join(format!("gitlab-sim-repos-{}", std::process::id())), true),
    };
    if args.projects.is_none()
        && let Err(e) = attach_demo_repositories(&mut config, &repos_dir)
    {
        eprintln!("gitlab-sim: no demo repositories in {}: {e}", repos_dir.display());
    }
    let remove = || {
        if remove_repos {
            let _ = std::fs::remove_dir_all(&repos_dir);
        }
    };
    let sim = match start(config, args.bind).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("gitlab-sim: cannot start on {}: {e}", args.bind);
            remove();
            return ExitCode::FAILURE;
        }
    };
    let ca_file =
        args.ca_out.unwrap_or_else(|| std::env::temp_dir().join(format!("gitlab-sim-ca-{}.pem", sim.addr.port())));
    if let Err(e) = std::fs::write(&ca_file, &sim.ca_pem) {
        eprintln!("gitlab-sim: cannot write {}: {e}", ca_file.display());
        remove();
        return ExitCode::FAILURE;
    }
    println!("{}", serde_json::json!({"base_url": sim.base_url(), "ca_file": ca_file, "repos_dir": repos_dir}));

    wait_for_stop().await;
    sim.shutdown().await;
    remove();
    ExitCode::SUCCESS
}

async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(list: &[&str]) -> Result<Args, String> {
        parse_args(list.iter().map(|s| (*s).to_string()))
    }

    #[test]
    fn defaults_and_flags() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.bind.to_string(), "127.0.0.1:8443");
        assert!(args.base_path.is_empty());
        let args = parse(&["--bind", "127.0.0.1:0", "--base-path=/gitlab", "--ca-out", "/tmp/x"]).unwrap();
        assert_eq!(args.bind.port(), 0);
        assert_eq!(args.base_path, "/gitlab");
        assert_eq!(args.ca_out, Some(PathBuf::from("/tmp/x")));
        assert_eq!(args.projects, None);
        let args = parse(&["--projects", "20000", "--latency-ms=250", "--repos-dir", "/tmp/r"]).unwrap();
        assert_eq!(args.projects, Some(20_000));
        assert_eq!(args.latency_ms, 250);
        assert_eq!(args.repos_dir, Some(PathBuf::from("/tmp/r")));
        assert!(parse(&["--projects", "many"]).is_err());
        assert!(parse(&["--bind"]).is_err());
        assert!(parse(&["--nope", "1"]).is_err());
        assert!(parse(&["--help"]).is_err());
    }
}
