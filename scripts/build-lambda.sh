#!/usr/bin/env bash
# Builds the Lambda artefacts with cargo-lambda from .venv-cl.
#
#   scripts/build-lambda.sh          cargo lambda build --release for $LAMBDA_BINS (default: every
#                                    function's binary in template.yaml)
#                                    -> target/lambda/<bin>/bootstrap
#   scripts/build-lambda.sh --sam    `sam build` (rust-cargolambda) with the SAM CLI of .venv-sam
#                                    (scripts/tools.sh sam) -> .aws-sam/build
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

have_arm64() { rustup target list --installed 2>/dev/null | grep -qx 'aarch64-unknown-linux-gnu'; }

if [[ "${1:-}" == "--sam" ]]; then
    sam="$ROOT/.venv-sam/bin/sam"
    if [[ ! -x "$sam" ]]; then
        echo "sam-build: $sam missing; run scripts/tools.sh sam (make sam-build does)" >&2
        exit 1
    fi
    if ! have_arm64; then
        cat >&2 <<'EOF'
sam-build: FAILED: the template's functions are arm64 and sam build cross-compiles for that, but the
aarch64-unknown-linux-gnu standard library is not installed. Run:
  rustup target add aarch64-unknown-linux-gnu
(make build-lambda can still build x86_64 binaries to check that everything builds.)
EOF
        exit 1
    fi
    # Older SAM CLIs gate the rust-cargolambda build method behind this flag.
    export SAM_CLI_BETA_RUST_CARGO_LAMBDA=1 SAM_CLI_TELEMETRY=0
    exec "$sam" build --template-file template.yaml
fi

if have_arm64; then
    arch_flag=--arm64
else
    arch_flag=--x86-64
    cat >&2 <<'EOF'
build-lambda: the aarch64-unknown-linux-gnu standard library is not installed, so this builds
x86_64 binaries instead. They do NOT match the template (Architectures: [arm64]); do not deploy
them. For arm64 run: rustup target add aarch64-unknown-linux-gnu
EOF
fi

# Every function of the template unless the caller names binaries.
bins="${LAMBDA_BINS:-$(awk '$1 == "Binary:" { print $2 }' template.yaml)}"
if [[ -z "${bins// /}" ]]; then
    echo "build-lambda: no binaries given and none found in template.yaml" >&2
    exit 1
fi
bin_args=()
for bin in $bins; do
    bin_args+=(--bin "$bin")
done

echo "build-lambda: cargo lambda build --release $arch_flag ${bin_args[*]}" >&2
cargo lambda build --release "$arch_flag" "${bin_args[@]}"
# cargo-lambda writes into the target dir in use (CARGO_TARGET_DIR if set).
target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
for bin in $bins; do
    ls -l "$target_dir/lambda/$bin/bootstrap"
done
