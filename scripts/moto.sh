#!/usr/bin/env bash
# Starts and stops the local AWS stand-in (moto server) on loopback.
#
#   scripts/moto.sh start [--prefer PORT]    start in the background, wait until it answers
#   scripts/moto.sh stop                     stop the server recorded in the state file
#   scripts/moto.sh status                   print pid and port, exit 1 if not running
#   scripts/moto.sh env                      print `export AWS_...` lines for a running server
#   scripts/moto.sh run [--prefer PORT] -- CMD [ARG...]
#                                            start, run CMD with the AWS variables pointing at the
#                                            server, stop the server however CMD ends
#
# Port: MOTO_PORT if set (must be free); otherwise --prefer PORT when that port is free; otherwise
# a free port chosen by the OS. State (pid, port, log path) goes to .local/$MOTO_NAME.env
# (MOTO_NAME defaults to "moto"), so `make test` and `make run` can each run their own server.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-moto"
NAME="${MOTO_NAME:-moto}"
STATE_DIR="$ROOT/.local"
STATE="$STATE_DIR/$NAME.env"
LOG="$STATE_DIR/$NAME.log"
READY_TIMEOUT="${MOTO_READY_TIMEOUT:-20}"

log() { printf 'moto: %s\n' "$*" >&2; }
die() {
    log "$*"
    exit 1
}

port_is_free() {
    "$VENV/bin/python" - "$1" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

free_port() {
    "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# pid_is_moto PID: true when PID is alive and is a moto server (guards against a recycled pid).
pid_is_moto() {
    local pid="$1"
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'moto'
}

read_state() {
    MOTO_PID="" MOTO_PORT_RUNNING=""
    [[ -f "$STATE" ]] || return 1
    MOTO_PID="$(sed -n 's/^MOTO_PID=//p' "$STATE")"
    MOTO_PORT_RUNNING="$(sed -n 's/^MOTO_PORT=//p' "$STATE")"
    [[ -n "$MOTO_PID" && -n "$MOTO_PORT_RUNNING" ]]
}

answers() {
    local code
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/moto-api/" || true)"
    [[ "$code" == 200 ]]
}

# Sets STARTED_PORT.
cmd_start() {
    local prefer=""
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --prefer) prefer="$2"; shift 2 ;;
            *) die "start: unknown argument '$1'" ;;
        esac
    done
    [[ -x "$VENV/bin/moto_server" ]] || die "$VENV/bin/moto_server not found; run 'make tools' (or scripts/tools.sh moto)"

    if read_state; then
        if pid_is_moto "$MOTO_PID"; then
            die "already running as pid $MOTO_PID on port $MOTO_PORT_RUNNING ($STATE); stop it with: MOTO_NAME=$NAME scripts/moto.sh stop"
        fi
        rm -f "$STATE" # stale: the process is gone
    fi

    local port
    if [[ -n "${MOTO_PORT:-}" ]]; then
        port="$MOTO_PORT"
        port_is_free "$port" || die "MOTO_PORT=$port is already in use"
    elif [[ -n "$prefer" ]] && port_is_free "$prefer"; then
        port="$prefer"
    else
        [[ -z "$prefer" ]] || log "port $prefer is busy, picking a free one"
        port="$(free_port)"
    fi

    mkdir -p "$STATE_DIR"
    # Backgrounded from a non-interactive shell, the server ignores the terminal's SIGINT; whoever
    # started it stops it explicitly (cmd_stop), which also covers Ctrl-C in `make run`.
    # moto_server also reads MOTO_PORT itself (and chokes on an empty one); give it the real port.
    MOTO_PORT="$port" "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$LOG" 2>&1 </dev/null &
    local pid=$!
    printf 'MOTO_PID=%s\nMOTO_PORT=%s\nMOTO_LOG=%s\n' "$pid" "$port" "$LOG" >"$STATE"

    local deadline=$((SECONDS + READY_TIMEOUT))
    until answers "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$STATE"
            log "server exited during start-up; last lines of $LOG:"
            tail -n 20 "$LOG" >&2 || true
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "no answer from http://127.0.0.1:$port/moto-api/ within ${READY_TIMEOUT}s; stopping it"
            cmd_stop >/dev/null 2>&1 || true
            tail -n 20 "$LOG" >&2 || true
            exit 1
        fi
        sleep 0.1
    done
    log "ready: pid $pid, http://127.0.0.1:$port (log $LOG)"
    STARTED_PORT="$port"
}

cmd_stop() {
    if ! read_state; then
        log "not running ($STATE missing)"
        return 0
    fi
    if pid_is_moto "$MOTO_PID"; then
        kill -TERM "$MOTO_PID" 2>/dev/null || true
        local i
        for ((i = 0; i < 50; i++)); do
            pid_is_moto "$MOTO_PID" || break
            sleep 0.1
        done
        if pid_is_moto "$MOTO_PID"; then
            log "pid $MOTO_PID ignored SIGTERM; sending SIGKILL"
            kill -KILL "$MOTO_PID" 2>/dev/null || true
        fi
        # Reap it when it is our own child (the `run` case), so no zombie lingers.
        wait "$MOTO_PID" 2>/dev/null || true
        log "stopped pid $MOTO_PID (port $MOTO_PORT_RUNNING)"
    else
        log "pid $MOTO_PID was no longer running"
    fi
    rm -f "$STATE"
}

cmd_status() {
    if read_state && pid_is_moto "$MOTO_PID"; then
        printf 'pid %s port %s\n' "$MOTO_PID" "$MOTO_PORT_RUNNING"
        return 0
    fi
    echo "not running"
    return 1
}

# The variables the AWS SDKs need to talk to the local server and nothing else. The shared config
# and credential files are blanked so a developer's profile (credentials, endpoint_url, region)
# cannot leak into local runs or tests.
aws_env_lines() {
    local port="$1"
    cat <<EOF
export AWS_ENDPOINT_URL=http://127.0.0.1:$port
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=/dev/null
export AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_IGNORE_CONFIGURED_ENDPOINT_URLS
EOF
    # Service-specific endpoint variables override AWS_ENDPOINT_URL in the SDKs.
    local v
    for v in $(compgen -e | grep '^AWS_ENDPOINT_URL_' || true); do
        printf 'unset %s\n' "$v"
    done
}

cmd_env() {
    if ! read_state || ! pid_is_moto "$MOTO_PID"; then
        die "not running"
    fi
    aws_env_lines "$MOTO_PORT_RUNNING"
}

cmd_run() {
    local start_args=()
    while [[ $# -gt 0 && "$1" != "--" ]]; do
        start_args+=("$1")
        shift
    done
    [[ "${1:-}" == "--" ]] && shift
    [[ $# -gt 0 ]] || die "run: no command given (scripts/moto.sh run [--prefer PORT] -- CMD...)"

    # Started in this shell (not a command substitution) so the server is our child and the
    # EXIT trap can reap it.
    cmd_start "${start_args[@]}"
    local port="$STARTED_PORT"
    # EXIT covers normal ends and `set -e` failures; INT/TERM exit through it with the usual codes.
    trap 'cmd_stop' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    eval "$(aws_env_lines "$port")"
    log "AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL; running: $*"
    local rc=0
    "$@" || rc=$?
    return "$rc"
}

main() {
    local cmd="${1:-}"
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
        start)
            cmd_start "$@"
            printf '%s\n' "$STARTED_PORT"
            ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        env) cmd_env ;;
        run) cmd_run "$@" ;;
        *)
            echo "usage: scripts/moto.sh {start [--prefer PORT]|stop|status|env|run [--prefer PORT] -- CMD...}" >&2
            exit 2
            ;;
    esac
}

main "$@"
