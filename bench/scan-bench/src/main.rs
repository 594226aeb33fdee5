//! Scans every file under a directory with the built-in secret scanner, on as many threads as
//! the machine has (as ripsecrets does), and prints one JSON line: bytes and files read, files
//! skipped, findings by rule, seconds (reading included) and MB/s.
//!
//! `scan-bench <dir> [threads]`; `scripts/bench-scan.sh` runs it next to the other scanners.
//! `scan-bench fetch [runs]`: see `fetch.rs`.

mod fetch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use shared::domain::secrets::{ScanSettings, SecretScanner};

fn files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            files(&entry.path(), out)?;
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
    Ok(())
}

#[derive(Default)]
struct Totals {
    bytes: u64,
    files: u64,
    skipped: u64,
    findings: BTreeMap<String, u64>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let first = args.next().ok_or("usage: scan-bench <dir> [threads] | scan-bench fetch [runs]")?;
    if first == "fetch" {
        let runs: usize = args.next().map_or(Ok(5), |n| n.parse())?;
        let work = std::env::temp_dir().join(format!("scan-bench-fetch-{}", std::process::id()));
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        return runtime.block_on(fetch::run(runs.max(1), &work));
    }
    let root = PathBuf::from(first);
    let threads: usize = match args.next() {
        Some(n) => n.parse()?,
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
    let started = Instant::now();
    let mut paths = Vec::new();
    files(&root, &mut paths)?;
    let scanner = SecretScanner::new(ScanSettings { digest_key: b"bench".to_vec(), allow_paths: Vec::new() });
    let next = AtomicUsize::new(0);
    let totals = Mutex::new(Totals::default());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                let mut local = Totals::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = paths.get(i) else { break };
                    let Ok(bytes) = std::fs::read(path) else { continue };
                    let relative = path.strip_prefix(&root).unwrap_or(path).to_string_lossy().replace('\\', "/");
                    local.bytes += bytes.len() as u64;
                    local.files += 1;
                    match scanner.scan(&relative, &bytes) {
                        Ok(found) => {
                            for f in found {
                                *local.findings.entry(f.rule_id).or_default() += 1;
                            }
                        }
                        Err(_) => local.skipped += 1,
                    }
                }
                let mut all = totals.lock().expect("totals");
                all.bytes += local.bytes;
                all.files += local.files;
                all.skipped += local.skipped;
                for (rule, n) in local.findings {
                    *all.findings.entry(rule).or_default() += n;
                }
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let totals = totals.into_inner().expect("totals");
    let total_findings: u64 = totals.findings.values().sum();
    println!(
        "{}",
        serde_json::json!({
            "threads": threads,
            "bytes": totals.bytes,
            "files": totals.files,
            "skipped": totals.skipped,
            "findings": total_findings,
            "by_rule": totals.findings,
            "seconds": seconds,
            "mb_per_second": totals.bytes as f64 / 1e6 / seconds,
            "peak_rss_kb": fetch::peak_rss_kb(),
        })
    );
    Ok(())
}
