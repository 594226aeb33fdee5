#!/usr/bin/env python3
"""Cold-start benchmark for Lambda binaries, run locally against a stand-in Runtime API.

For each run: start a tiny Lambda Runtime API on loopback, spawn the binary with the variables
Lambda sets, and record
  ready    process spawn -> its first `GET /runtime/invocation/next` (init finished),
  first    delivery of the first event -> its response,
  rss      the process's peak RSS (VmHWM) after that response.
Binaries are compared in one run, interleaved, so machine noise hits both alike.

usage: bench_cold_start.py RUNS NAME=BINARY:EVENT_FILE [NAME=BINARY:EVENT_FILE ...]
"""
import http.server
import json
import os
import statistics
import subprocess
import sys
import threading
import time


class RuntimeApi(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # The benchmark kills each process while its second poll is parked: expected resets.
        pass

    def __init__(self, event):
        super().__init__(("127.0.0.1", 0), Handler)
        self.event = event
        self.ready = threading.Event()
        self.done = threading.Event()
        self.t_ready = None
        self.t_event = None
        self.t_done = None
        self.served = False
        self.response = None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        if self.path.endswith("/runtime/invocation/next"):
            if srv.served:
                # Second poll: park it until the benchmark kills the process.
                srv.done.wait(30)
                return
            srv.t_ready = time.perf_counter_ns()
            srv.served = True
            body = srv.event
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Lambda-Runtime-Aws-Request-Id", "bench-1")
            self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
            self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:bench")
            self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            srv.t_event = time.perf_counter_ns()
            self.wfile.write(body)
            srv.ready.set()
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def do_POST(self):
        srv = self.server
        length = int(self.headers.get("Content-Length", "0") or 0)
        data = self.rfile.read(length) if length else b""
        if "/response" in self.path or "/error" in self.path:
            srv.t_done = time.perf_counter_ns()
            srv.response = (self.path, data)
            srv.done.set()
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()


def peak_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def one_run(binary, event):
    api = RuntimeApi(event)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    env = {
        k: v
        for k, v in os.environ.items()
        if k.startswith(("AWS_", "PATH", "HOME", "TABLE_", "SYNC_", "SCAN_", "SECRET", "WEBHOOK", "OUTBOUND", "TEAM_", "DNS_"))
    }
    env.update({
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{api.server_address[1]}",
        "AWS_LAMBDA_FUNCTION_NAME": "bench",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "AWS_LAMBDA_LOG_GROUP_NAME": "bench",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_LAMBDA_LOG_LEVEL": "WARN",
    })
    t0 = time.perf_counter_ns()
    proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ok = api.done.wait(30)
    rss = peak_rss_kib(proc.pid)
    proc.kill()
    _, err = proc.communicate()
    api.shutdown()
    api.server_close()
    if not ok or api.response is None:
        raise SystemExit(f"{binary}: no response; stderr: {err.decode(errors='replace')[-2000:]}")
    path, data = api.response
    if "/error" in path:
        raise SystemExit(f"{binary}: invocation error {data[:500]!r}")
    return {
        "ready_ms": (api.t_ready - t0) / 1e6,
        "first_ms": (api.t_done - api.t_event) / 1e6,
        "rss_kib": rss,
        "response": data,
    }


def summary(values):
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
    return {"median": statistics.median(values), "p90": p90, "min": values[0]}


def main():
    runs = int(sys.argv[1])
    targets = []
    for spec in sys.argv[2:]:
        name, rest = spec.split("=", 1)
        binary, event_file = rest.split(":", 1)
        with open(event_file, "rb") as f:
            targets.append((name, binary, f.read()))
    results = {name: [] for name, _, _ in targets}
    for name, binary, event in targets:  # warm the page cache once
        one_run(binary, event)
    for _ in range(runs):
        for name, binary, event in targets:
            results[name].append(one_run(binary, event))
    report = {}
    for name, binary, _ in targets:
        rs = results[name]
        report[name] = {
            "binary_bytes": os.path.getsize(binary),
            "ready_ms": summary([r["ready_ms"] for r in rs]),
            "first_response_ms": summary([r["first_ms"] for r in rs]),
            "peak_rss_kib": summary([r["rss_kib"] for r in rs if r["rss_kib"]]),
            "sample_response": rs[-1]["response"][:160].decode(errors="replace"),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
