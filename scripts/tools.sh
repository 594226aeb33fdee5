#!/usr/bin/env bash
# Installs the project's non-Rust tools into git-ignored virtualenvs at the repository root.
#
#   scripts/tools.sh moto       .venv-moto  moto server (DynamoDB, SQS, Secrets Manager, EventBridge)
#   scripts/tools.sh cfn        .venv-cfn   cfn-lint + aws-sam-translator (scripts/lint-template.py),
#                                           openapi-spec-validator (openapi.yaml)
#   scripts/tools.sh cl         .venv-cl    cargo-lambda (bundles zig) for Lambda packaging
#   scripts/tools.sh sam        .venv-sam   the AWS SAM CLI, for `make sam-build` (and deploying)
#   scripts/tools.sh bench      .venv-bench python-gitlab, the reference client of `make bench-sync`
#   scripts/tools.sh scan       .venv-scan detect-secrets and .tools/ripsecrets, the reference scanners of
#                                           `make bench-scan`
#   scripts/tools.sh nextest    cargo-nextest, only if `cargo nextest` is missing
#   scripts/tools.sh deny       .tools/cargo-deny  cargo-deny at the pinned version (cargo install from
#                                           crates.io, a few minutes once), for `make deny` / `make audit`
#   scripts/tools.sh all        moto + cfn + nextest (what `make tools` installs)
#
# Idempotent: each venv holds a stamp file listing the interpreter and the exact requirements it
# was built from. A matching stamp means nothing to do; a changed pin (or Python) rebuilds the venv
# from scratch, so an upgrade never leaves a half-mixed environment behind. The stamp is written
# last, so an interrupted install is redone on the next run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"

# Pins follow shared/reference/tooling.md (versions measured on these machines).
MOTO_REQS=("moto[dynamodb,sqs,secretsmanager,events]>=5.2.5,<5.3" "flask>=3,<4" "flask-cors" "boto3")
CFN_REQS=("cfn-lint==1.58.0" "aws-sam-translator==1.115.0" "openapi-spec-validator==0.9.0")
CL_REQS=("cargo-lambda==1.9.2")
SAM_REQS=("aws-sam-cli==1.170.0")
# cargo-deny is a Rust tool: installed with cargo into .tools/, replaced when the pin changes.
DENY_VERSION="0.20.2"
DENY_ROOT="$ROOT/.tools/cargo-deny"
BENCH_REQS=("python-gitlab>=5,<8")
# make bench-scan's reference scanners: detect-secrets (PyPI) and ripsecrets (crates.io).
SCAN_REQS=("detect-secrets==1.5.0")
RIPSECRETS_VERSION="0.1.11"
RIPSECRETS_ROOT="$ROOT/.tools/ripsecrets"

log() { printf 'tools: %s\n' "$*" >&2; }

# ensure_venv DIR PROBE_BIN REQ...
ensure_venv() {
    local name="$1" dir="$ROOT/$1" probe="$2"
    shift 2
    local stamp="$dir/.tools-stamp" want pyver
    pyver="$("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"
    want="$(printf '%s\n' "python $pyver" "$@")"
    if [[ -f "$stamp" && -x "$dir/bin/$probe" ]] && [[ "$(<"$stamp")" == "$want" ]]; then
        log "$name up to date"
        return 0
    fi
    log "installing $name: $*"
    local start=$SECONDS
    rm -rf "$dir"
    "$PYTHON" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
    if [[ ! -x "$dir/bin/$probe" ]]; then
        log "$name: expected $dir/bin/$probe after install, not found"
        return 1
    fi
    printf '%s\n' "$want" >"$stamp"
    log "$name ready in $((SECONDS - start)) s"
}

ensure_nextest() {
    if cargo nextest --version >/dev/null 2>&1; then
        log "cargo-nextest present ($(cargo nextest --version 2>/dev/null | head -n1))"
        return 0
    fi
    log "cargo-nextest missing: cargo install cargo-nextest --locked"
    cargo install cargo-nextest --locked
}

ensure_deny() {
    local bin="$DENY_ROOT/bin/cargo-deny" have=""
    [[ -x "$bin" ]] && have="$("$bin" --version 2>/dev/null || true)"
    if [[ "$have" == "cargo-deny $DENY_VERSION" ]]; then
        log "cargo-deny $DENY_VERSION present"
        return 0
    fi
    log "installing cargo-deny $DENY_VERSION into .tools/cargo-deny (had: ${have:-none})"
    local start=$SECONDS
    # Its own temporary target dir, not the project's (CARGO_TARGET_DIR would be used otherwise).
    env -u CARGO_TARGET_DIR cargo install cargo-deny --locked --version "$DENY_VERSION" --root "$DENY_ROOT" --force
    log "cargo-deny ready in $((SECONDS - start)) s"
}

ensure_ripsecrets() {
    local bin="$RIPSECRETS_ROOT/bin/ripsecrets" stamp="$RIPSECRETS_ROOT/.version"
    if [[ -x "$bin" && -f "$stamp" && "$(<"$stamp")" == "$RIPSECRETS_VERSION" ]]; then
        log "ripsecrets $RIPSECRETS_VERSION present"
        return 0
    fi
    log "installing ripsecrets $RIPSECRETS_VERSION into .tools/ripsecrets"
    local start=$SECONDS
    env -u CARGO_TARGET_DIR cargo install ripsecrets --locked --version "$RIPSECRETS_VERSION" --root "$RIPSECRETS_ROOT" --force
    printf '%s\n' "$RIPSECRETS_VERSION" >"$stamp"
    log "ripsecrets ready in $((SECONDS - start)) s"
}

main() {
    [[ $# -gt 0 ]] || set -- all
    local what
    for what in "$@"; do
        case "$what" in
            moto) ensure_venv .venv-moto moto_server "${MOTO_REQS[@]}" ;;
            cfn) ensure_venv .venv-cfn cfn-lint "${CFN_REQS[@]}" ;;
            cl) ensure_venv .venv-cl cargo-lambda "${CL_REQS[@]}" ;;
            sam) ensure_venv .venv-sam sam "${SAM_REQS[@]}" ;;
            bench) ensure_venv .venv-bench gitlab "${BENCH_REQS[@]}" ;;
            nextest) ensure_nextest ;;
            deny) ensure_deny ;;
            scan)
                ensure_venv .venv-scan detect-secrets "${SCAN_REQS[@]}"
                ensure_ripsecrets
                ;;
            all)
                ensure_venv .venv-moto moto_server "${MOTO_REQS[@]}"
                ensure_venv .venv-cfn cfn-lint "${CFN_REQS[@]}"
                ensure_nextest
                ;;
            clean)
                rm -rf "$ROOT/.venv-moto" "$ROOT/.venv-cfn" "$ROOT/.venv-cl" "$ROOT/.venv-sam" "$ROOT/.venv-bench" "$ROOT/.venv-scan" \
                    "$ROOT/.tools"
                ;;
            *)
                log "unknown tool set '$what' (moto, cfn, cl, sam, bench, scan, nextest, deny, all, clean)"
                return 2
                ;;
        esac
    done
}

main "$@"
