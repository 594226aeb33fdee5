#!/usr/bin/env bash
# make bench-scan, three parts, release builds:
#  (a) fetch: the scan worker's fetch of one commit (gitoxide through the pinned client, depth 1,
#      tree written) of a repository with 57 MB of history served by the GitLab simulator, next
#      to git's depth-1 fetch and checkout of the same commit, interleaved: time and bytes.
#  (b) scan: the built-in secret scanner (one thread per core) over a generated corpus, in the
#      same run as ripsecrets (crates.io, also one thread per core) and detect-secrets (PyPI, its
#      default plugins) on the same files; recall on the planted set.
#  (c) the worker's peak RSS in (a) and (b), and the scan-worker binary's init next to a bare
#      lambda_runtime hello-world (scripts/bench_cold_start.py, against moto).
#
#   SCAN_CORPUS_MB   corpus size (default 200)
#   SCAN_RUNS        runs of the two fast scanners, best taken (default 3; detect-secrets runs once)
#   FETCH_RUNS       fetch runs of each side (default 5)
#   BENCH_RUNS       cold starts of each binary (default 30)
#
# Result: target/bench/scan.json.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="target/bench"
CORPUS="$OUT/scan-corpus"
MB="${SCAN_CORPUS_MB:-200}"
RUNS="${SCAN_RUNS:-3}"
FETCH_RUNS="${FETCH_RUNS:-5}"
COLD_RUNS="${BENCH_RUNS:-30}"
mkdir -p "$OUT"

scripts/tools.sh scan
scripts/tools.sh moto >/dev/null
echo "==> release build of scan-bench, scan-worker and hello-runtime"
AWS_LC_SYS_NO_JITTER_ENTROPY=1 cargo build --release -p scan-bench -p scan-worker -p hello-runtime

echo "==> (a) fetch of one commit: connector vs git --depth 1 ($FETCH_RUNS runs each)"
target/release/scan-bench fetch "$FETCH_RUNS" >"$OUT/scan-fetch.json"

echo "==> (c) scan-worker init next to hello-world ($COLD_RUNS runs)"
python3 - "$OUT/scan-event.json" <<'PY'
import json, sys
body = {"type": "scan_requested", "version": 1, "team_id": "bench", "integration_id": "0" * 32,
        "project_id": 1, "target": {"kind": "branch", "branch": "main"},
        "head_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "trigger": "push",
        "requested_at": "2026-12-02T10:00:00Z"}
event = {"Records": [{"messageId": "m1", "body": json.dumps(body), "eventSource": "aws:sqs",
                      "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:bench-ScanQueue"}]}
json.dump(event, open(sys.argv[1], "w"))
PY
echo '{"hello": "world"}' >"$OUT/hello-event.json"
cold_start() {
    .venv-moto/bin/python - <<'PY'
import boto3
ddb = boto3.client("dynamodb")
ddb.create_table(TableName="bench-scan-Table", BillingMode="PAY_PER_REQUEST",
    AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "gsi1pk", "gsi1sk")],
    KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    GlobalSecondaryIndexes=[{"IndexName": "gsi1", "Projection": {"ProjectionType": "ALL"},
        "KeySchema": [{"AttributeName": "gsi1pk", "KeyType": "HASH"}, {"AttributeName": "gsi1sk", "KeyType": "RANGE"}]}])
PY
    TABLE_NAME=bench-scan-Table SCAN_DIGEST_KEY=bench-digest-key-0123456789 SCAN_WORK_DIR="$OUT/scan-jobs" \
        python3 scripts/bench_cold_start.py "$COLD_RUNS" \
            "hello-runtime=target/release/hello-runtime:$OUT/hello-event.json" \
            "scan-worker=target/release/scan-worker:$OUT/scan-event.json" >"$OUT/scan-cold-start.json"
}
export -f cold_start
export OUT COLD_RUNS
MOTO_NAME=moto-bench-scan scripts/moto.sh run -- bash -c cold_start

echo "==> (b) corpus: $MB MB"
python3 bench/scan_corpus.py "$CORPUS" --mb "$MB" >"$OUT/scan-manifest.json"

best() { sort -n | head -n1; }
now() { python3 -c 'import time; print(time.monotonic())'; }

echo "==> built-in scanner ($RUNS runs)"
ours_runs=()
for _ in $(seq "$RUNS"); do
    target/release/scan-bench "$CORPUS" >"$OUT/scan-ours.json"
    ours_runs+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["seconds"])' "$OUT/scan-ours.json")")
done
ours=$(printf '%s\n' "${ours_runs[@]}" | best)

echo "==> ripsecrets ($RUNS runs)"
rip_runs=()
for _ in $(seq "$RUNS"); do
    start=$(now)
    # Exit status 1 means "secrets found"; only a crash (>1) is a failure.
    .tools/ripsecrets/bin/ripsecrets "$CORPUS" >"$OUT/scan-ripsecrets.txt" || [[ $? -eq 1 ]]
    rip_runs+=("$(python3 -c "import time; print(time.monotonic() - $start)")")
done
rip=$(printf '%s\n' "${rip_runs[@]}" | best)

echo "==> detect-secrets (1 run)"
start=$(now)
.venv-scan/bin/detect-secrets scan --all-files "$CORPUS" >"$OUT/scan-detect-secrets.json"
detect=$(python3 -c "import time; print(time.monotonic() - $start)")

python3 - "$OUT" "$ours" "$rip" "$detect" <<'PY'
import json, sys
out, ours, rip, detect = sys.argv[1], *map(float, sys.argv[2:])
manifest = json.load(open(f"{out}/scan-manifest.json"))
mine = json.load(open(f"{out}/scan-ours.json"))
fetch = json.load(open(f"{out}/scan-fetch.json"))
cold = json.load(open(f"{out}/scan-cold-start.json"))
mb = manifest["bytes"] / 1e6
rip_results = sum(1 for line in open(f"{out}/scan-ripsecrets.txt") if line.strip())
ds = json.load(open(f"{out}/scan-detect-secrets.json"))
ds_results = sum(len(v) for v in ds.get("results", {}).values())
report = {
    "corpus": manifest,
    "builtin": {"seconds": ours, "mb_per_second": mb / ours, "findings": mine["findings"], "by_rule": mine["by_rule"], "threads": mine["threads"]},
    "ripsecrets": {"seconds": rip, "mb_per_second": mb / rip, "results": rip_results},
    "detect_secrets": {"seconds": detect, "mb_per_second": mb / detect, "results": ds_results},
    "ratios": {"vs_detect_secrets": detect / ours, "vs_ripsecrets": rip / ours},
    "targets": {"vs_detect_secrets": ">= 20", "vs_ripsecrets": ">= 1", "fetch_vs_git": "<= 1.2 in time and bytes"},
    "fetch": fetch,
    "peak_rss_mb": {"fetch": fetch["peak_rss_kb"] / 1024, "scan": mine["peak_rss_kb"] / 1024},
    "init": {name: {"ready_ms_median": cold[name]["ready_ms"]["median"], "ready_ms_p90": cold[name]["ready_ms"]["p90"],
                    "first_response_ms_median": cold[name]["first_response_ms"]["median"],
                    "peak_rss_mb_median": cold[name]["peak_rss_kib"]["median"] / 1024,
                    "binary_mb": cold[name]["binary_bytes"] / 1e6} for name in ("hello-runtime", "scan-worker")},
}
json.dump(report, open(f"{out}/scan.json", "w"), indent=2)
print(json.dumps(report, indent=2))
PY
