#!/usr/bin/env bash
# make bench-scan: the built-in secret scanner (shared::domain::secrets, release build, one
# thread per core) over a generated corpus, in the same run as ripsecrets (crates.io, also one
# thread per core) and detect-secrets (PyPI, its default plugins) on the same files.
#
#   SCAN_CORPUS_MB   corpus size (default 200)
#   SCAN_RUNS        runs of the two fast scanners, best taken (default 3; detect-secrets runs once)
#
# Reported per scanner: seconds, MB/s and credential-looking results; for the built-in scanner
# also by rule next to what the corpus planted. Result: target/bench/scan.json.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="target/bench"
CORPUS="$OUT/scan-corpus"
MB="${SCAN_CORPUS_MB:-200}"
RUNS="${SCAN_RUNS:-3}"
mkdir -p "$OUT"

scripts/tools.sh scan
echo "==> corpus: $MB MB"
python3 bench/scan_corpus.py "$CORPUS" --mb "$MB" >"$OUT/scan-manifest.json"
echo "==> release build of scan-bench"
cargo build --release -p scan-bench

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
    "targets": {"vs_detect_secrets": ">= 20", "vs_ripsecrets": ">= 1"},
}
json.dump(report, open(f"{out}/scan.json", "w"), indent=2)
print(json.dumps(report, indent=2))
PY
