# gitlab-connector: build, test and local-run entry points.
#
#   make test           fmt check, clippy, all tests against a private moto server, template lint,
#                       dependency checks (make deny)
#   make run            local stack: moto + template resources + GitLab simulator + HTTP host
#   make lint-template  SAM translate + cfn-lint; openapi.yaml against the OpenAPI 3.1 schema
#   make deny           cargo-deny: licences, duplicate versions and sources (deny.toml), offline
#   make audit          cargo-deny: RustSec advisories (fetches the database from github.com)
#   make build-lambda   release Lambda binaries of every function in template.yaml,
#                       target/lambda/<bin>/bootstrap (arm64 if the target is installed)
#   make sam-build      `sam build` of template.yaml into .aws-sam/ (SAM CLI in .venv-sam)
#   make tools          Python tool venvs (idempotent) and cargo-nextest
#
# Tool venvs (.venv-*), Rust tools (.tools/) and run state (.local/) live at the repo root and
# are git-ignored.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# Lambda binaries built by build-lambda; each is a workspace package of the same name. Empty:
# every function of template.yaml (its BuildProperties Binary).
LAMBDA_BINS ?=
# moto port for `make run` when MOTO_PORT is not set and this one is free.
RUN_MOTO_PORT ?= 5055

.PHONY: help tools tools-moto tools-cfn tools-cl tools-sam tools-nextest tools-deny clean-tools \
        fmt-check clippy nextest lint-template deny audit test run build-lambda sam-build bench bench-sync \
        bench-webhook bench-scan bench-report moto-stop

help:
	@echo "targets: test run lint-template deny audit build-lambda sam-build bench bench-sync bench-webhook bench-scan bench-report"
	@echo "         fmt-check clippy nextest tools clean-tools moto-stop"

tools:
	scripts/tools.sh all

tools-moto:
	scripts/tools.sh moto

tools-cfn:
	scripts/tools.sh cfn

tools-cl:
	scripts/tools.sh cl

tools-sam:
	scripts/tools.sh sam

tools-deny:
	scripts/tools.sh deny

tools-nextest:
	scripts/tools.sh nextest

clean-tools:
	scripts/tools.sh clean

fmt-check:
	cargo fmt --all --check

clippy:
	cargo clippy --workspace --all-targets -- -D warnings

# Each test creates uniquely named tables, queues and secrets, so one server serves all of
# nextest's parallel test processes; always a fresh free port (MOTO_PORT is for `make run`), and
# the server is stopped however the run ends.
nextest: tools-moto tools-nextest
	env -u MOTO_PORT MOTO_NAME=moto-test scripts/moto.sh run -- cargo nextest run --workspace --no-fail-fast

lint-template: tools-cfn
	.venv-cfn/bin/python scripts/lint-template.py template.yaml
	.venv-cfn/bin/openapi-spec-validator openapi.yaml

# Licences, duplicate crate versions and sources of the dependency graph (deny.toml). Offline:
# `cargo fetch` first brings every locked crate's manifest from crates.io (a no-op once cached),
# and cargo-deny itself never touches the network (the advisory database is make audit's).
# The workspace rust-version is checked against the lock here as well.
deny: tools-deny
	cargo fetch --locked
	.tools/cargo-deny/bin/cargo-deny --offline --locked check bans licenses sources
	python3 scripts/rust-version.py --check

# RustSec advisories. Fetches the advisory database from github.com, so it needs that access,
# which CI does not have: not part of make test.
audit: tools-deny
	.tools/cargo-deny/bin/cargo-deny --locked check advisories

# Runs every gate even after one fails, so a single run reports all problems; exits non-zero if
# any failed.
test: tools
	@failed=(); \
	for step in fmt-check clippy nextest lint-template deny; do \
	  echo "==> make $$step"; \
	  $(MAKE) --no-print-directory $$step || failed+=("$$step"); \
	done; \
	if (( $${#failed[@]} )); then echo "make test: FAILED steps: $${failed[*]}" >&2; exit 1; fi; \
	echo "make test: all steps succeeded"

# OUTBOUND_ALLOWLIST is left untouched: local-host defaults it to the simulator's loopback address
# only when it is unset, and an explicitly empty value must reach it as empty.
run: tools-moto
	MOTO_NAME=moto-run scripts/moto.sh run --prefer $(RUN_MOTO_PORT) -- \
	  cargo run -p local-host --bin local-host

# Stops servers left behind by a killed `make test` / `make run`.
moto-stop:
	MOTO_NAME=moto-test scripts/moto.sh stop
	MOTO_NAME=moto-run scripts/moto.sh stop

build-lambda: tools-cl
	LAMBDA_BINS="$(LAMBDA_BINS)" scripts/build-lambda.sh

sam-build: tools-cl tools-sam
	scripts/build-lambda.sh --sam

bench:
	scripts/bench.sh

# Project listing: the connector vs python-gitlab against the same simulator (20,000 projects,
# 50 ms per request), then a full sync against moto twice. Report: target/bench/sync.json.
bench-sync: tools-moto
	scripts/tools.sh bench
	MOTO_NAME=moto-bench-sync scripts/moto.sh run -- cargo run --release -p sync-bench

# Webhook: (a) handler time per 50 KB merge request with in-memory ports, (b) deliveries through
# the local host against moto next to the bare conditional write + queue send, (c) a burst of
# 1,000 deliveries with 10 % duplicates (20 in flight, the template's reserved concurrency; parts
# chosen with BENCH_WEBHOOK_PARTS=abc), then (d) cold start next to hello-world (make bench).
# Report: target/bench/webhook.json and target/bench/cold-start.json.
# Secret scanner: the built-in rules over a generated corpus (SCAN_CORPUS_MB, default 200) next to
# ripsecrets and detect-secrets on the same files. Report: target/bench/scan.json.
bench-scan:
	scripts/bench-scan.sh

# From a merge request event to the connector's summary note in the simulator, over 50 merge
# requests: latency, the share of fetch and scan, GitLab requests per merge request.
bench-report: tools-moto
	MOTO_NAME=moto-bench-report scripts/moto.sh run -- cargo run --release -p report-bench

bench-webhook: tools-moto
	MOTO_NAME=moto-bench-webhook scripts/moto.sh run -- cargo run --release -p webhook-bench
	scripts/bench.sh
