#!/usr/bin/env bash
# Prints the message bodies waiting on a queue of the local stack (the moto server that
# `make run` started), without consuming them: each is received with a zero visibility timeout.
#
#   scripts/queue-peek.sh QUEUE_URL      (make run prints the scan queue's URL)
set -euo pipefail
url=${1:?usage: scripts/queue-peek.sh QUEUE_URL}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -x .venv-moto/bin/python ]] || scripts/tools.sh moto >&2
endpoint=$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(f"{p.scheme}://{p.netloc}")' "$url")
AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test .venv-moto/bin/python - "$endpoint" "$url" <<'PY'
import sys

import boto3

sqs = boto3.client("sqs", endpoint_url=sys.argv[1], region_name="us-east-1")
out = sqs.receive_message(QueueUrl=sys.argv[2], MaxNumberOfMessages=10, VisibilityTimeout=0)
for message in out.get("Messages", []):
    print(message["Body"])
PY
