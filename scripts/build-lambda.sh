#!/usr/bin/env bash
# Builds the Lambda artefacts with cargo-lambda from .venv-cl.
#
#   scripts/build-lambda.sh          cargo lambda build --release for $LAMBDA_BINS (default: connect)
#                                    -> target/lambda/<bin>/bootstrap
#   scripts/build-lambda.sh --sam    `sam build` (rust-cargolambda) when the sam CLI is installed
#
# The functions are deployed as arm64. The aarch64 standard library is not on every machine (it
# comes from rustup's own distribution server, not a package registry), so without it the build
# falls back to x86_64, which checks that everything builds but does not match the template.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

[[ -x .venv-cl/bin/cargo-lambda ]] || {
    echo "build-lambda: .venv-cl/bin/cargo-lambda missing; run scripts/tools.sh cl" >&2
    exit 1
}
# cargo-lambda finds zig through `python3 -m ziglang`, i.e. the first python3 on PATH.
export PATH="$ROOT/.venv-cl/bin:$PATH"
# aws-lc-sys reads this at build time: it leaves the CPU jitter entropy source out of the build,
# which avoids its one-time ~10-50 ms latency on first use of randomness (a cold start cost) and
# its -O0 compile requirement, which does not always survive zig cross-compilation.
export AWS_LC_SYS_NO_JITTER_ENTROPY=1

if [[ "${1:-}" == "--sam" ]]; then
    if ! command -v sam >/dev/null 2>&1; then
        echo "sam-build: the sam CLI is not installed; skipping (make build-lambda builds the same binaries)" >&2
        exit 0
    fi
    # Older SAM CLIs gate the rust-cargolambda build method behind this flag.
    export SAM_CLI_BETA_RUST_CARGO_LAMBDA=1
    exec sam build --template-file template.yaml
fi

if rustup target list --installed 2>/dev/null | grep -qx 'aarch64-unknown-linux-gnu'; then
    arch_flag=--arm64
else
    arch_flag=--x86-64
    cat >&2 <<'EOF'
build-lambda: the aarch64-unknown-linux-gnu standard library is not installed, so this builds
x86_64 binaries instead. They do NOT match the template (Architectures: [arm64]); do not deploy
them. For arm64 run: rustup target add aarch64-unknown-linux-gnu
EOF
fi

bin_args=()
for bin in ${LAMBDA_BINS:-connect}; do
    bin_args+=(--bin "$bin")
done

echo "build-lambda: cargo lambda build --release $arch_flag ${bin_args[*]}" >&2
cargo lambda build --release "$arch_flag" "${bin_args[@]}"
for bin in ${LAMBDA_BINS:-connect}; do
    ls -l "target/lambda/$bin/bootstrap"
done
