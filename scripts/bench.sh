#!/usr/bin/env bash
# make bench: release-profile figures for the connect and webhook functions, side by side with a
# bare lambda_runtime hello-world built with the same profile in the same run.
#
#   binary size, process start -> ready for the first event, first response, peak RSS
#
# The first event is GET /integrations/gitlab as API Gateway delivers it: one DynamoDB Query
# against a local moto server (plain HTTP, so no TLS handshake is counted; on AWS the first
# DynamoDB call adds one). The webhook's first event is a merge request delivery to an unknown
# integration: one DynamoDB Query on the index, then the 401. Results: target/bench/cold-start.json.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
RUNS="${BENCH_RUNS:-30}"
OUT="target/bench"
mkdir -p "$OUT"

scripts/tools.sh moto >/dev/null
echo "==> release build (profile.release; AWS_LC_SYS_NO_JITTER_ENTROPY=1 as for deployment)"
build_start=$(date +%s)
AWS_LC_SYS_NO_JITTER_ENTROPY=1 cargo build --release -p connect -p webhook -p hello-runtime
echo "    build took $(( $(date +%s) - build_start )) s"

cat > "$OUT/hello-event.json" <<'JSON'
{"hello": "world"}
JSON
python3 - "$OUT/list-event.json" <<'PY'
import json, sys
event = json.load(open("functions/connect/tests/fixtures/apigw-v2-request.json"))
event["requestContext"]["http"]["method"] = "GET"
event["body"] = None
json.dump(event, open(sys.argv[1], "w"))
PY
python3 - "$OUT/delivery-event.json" <<'PY'
import json, sys
event = json.load(open("functions/webhook/tests/fixtures/function-url-request.json"))
event["headers"]["x-gitlab-token"] = "0" * 64
event["body"] = open("tests/fixtures/webhooks/merge_request.json").read()
json.dump(event, open(sys.argv[1], "w"))
PY

run_bench() {
    local table="bench-Table"
    .venv-moto/bin/python - "$table" <<'PY'
import sys, boto3
ddb = boto3.client("dynamodb")
ddb.create_table(TableName=sys.argv[1], BillingMode="PAY_PER_REQUEST",
    AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
    KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
PY
    .venv-moto/bin/python - "$table" <<'PY'
import sys, boto3
boto3.client("dynamodb").update_table(TableName=sys.argv[1],
    AttributeDefinitions=[{"AttributeName": "gsi1pk", "AttributeType": "S"}, {"AttributeName": "gsi1sk", "AttributeType": "S"}],
    GlobalSecondaryIndexUpdates=[{"Create": {"IndexName": "gsi1", "Projection": {"ProjectionType": "ALL"},
        "KeySchema": [{"AttributeName": "gsi1pk", "KeyType": "HASH"}, {"AttributeName": "gsi1sk", "KeyType": "RANGE"}]}}])
PY
    TABLE_NAME="$table" SYNC_QUEUE_URL="$AWS_ENDPOINT_URL/123456789012/bench-SyncQueue" \
    SECRET_PREFIX="bench/integrations/" WEBHOOK_SECRET_PREFIX="bench/webhook-keys/" \
    WEBHOOK_BASE_URL="https://hooks.example.com" \
    SCAN_QUEUE_URL="$AWS_ENDPOINT_URL/123456789012/bench-ScanQueue" \
        python3 scripts/bench_cold_start.py "$RUNS" \
            "hello-runtime=target/release/hello-runtime:$OUT/hello-event.json" \
            "connect=target/release/connect:$OUT/list-event.json" \
            "webhook=target/release/webhook:$OUT/delivery-event.json" | tee "$OUT/cold-start.json"
}
export -f run_bench
export RUNS OUT
MOTO_NAME=moto-bench scripts/moto.sh run -- bash -c run_bench

python3 - "$OUT/cold-start.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
h, c, w = r["hello-runtime"], r["connect"], r["webhook"]
print()
print(f"{'':16}{'size':>10}{'ready p50':>12}{'ready p90':>12}{'first resp p50':>16}{'peak RSS p50':>14}")
for name, x in (("hello-runtime", h), ("connect", c), ("webhook", w)):
    print(f"{name:16}{x['binary_bytes']/1e6:>8.2f}MB{x['ready_ms']['median']:>10.2f}ms{x['ready_ms']['p90']:>10.2f}ms"
          f"{x['first_response_ms']['median']:>14.2f}ms{x['peak_rss_kib']['median']/1024:>12.1f}MB")
delta = c["ready_ms"]["median"] - h["ready_ms"]["median"]
print(f"\nconnect init is {delta:.2f} ms above the hello-world median (target: <= 5 ms)")
delta = w["ready_ms"]["median"] - h["ready_ms"]["median"]
print(f"webhook init is {delta:.2f} ms above the hello-world median (target: <= 5 ms)")
PY
