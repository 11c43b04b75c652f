#!/usr/bin/env bash
# The inference service's acceptance check: `sdq up` with one worker and the emulator at
# 20 steps x 10 ms, 50 tasks submitted at once over HTTP; prints how many succeeded and the GPU idle
# gap (one task's runtime_finished_at to the next one's runtime_started_at) on that worker.
# Needs a built `sdq` (swift build). Usage: scripts/sdq-up-gap-check.sh [TASKS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "$root" && swift build --show-bin-path)/sdq
data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
SDQ_DATA_DIR="$data" LOG_LEVEL=error "$bin" up --port "$port" --workers 1 --step-ms 10 >"$data/up.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data"' EXIT
python3 - "$port" "${1:-50}" <<'PY'
import concurrent.futures, json, statistics, sys, time, urllib.request
base, count = f"http://127.0.0.1:{sys.argv[1]}", int(sys.argv[2])
for _ in range(150):
    try:
        urllib.request.urlopen(base + "/healthz", timeout=1); break
    except Exception:
        time.sleep(0.2)
def submit(i):
    body = json.dumps({"prompt": f"gap check {i}", "seed": i, "width": 64, "height": 64, "steps": 20}).encode()
    request = urllib.request.Request(base + "/v1/tasks", data=body, headers={"content-type": "application/json"}, method="POST")
    return json.load(urllib.request.urlopen(request))["id"]
with concurrent.futures.ThreadPoolExecutor(count) as pool:
    ids = list(pool.map(submit, range(count)))
while True:
    docs = [json.load(urllib.request.urlopen(f"{base}/v1/tasks/{i}")) for i in ids]
    if all(d["status"] in ("succeeded", "failed", "cancelled") for d in docs): break
    time.sleep(0.5)
runs = sorted((d["timings"]["runtime_started_at"], d["timings"]["runtime_finished_at"]) for d in docs if d["status"] == "succeeded")
gaps = sorted(b[0] - a[1] for a, b in zip(runs, runs[1:]))
print(f"succeeded {len(runs)} of {len(docs)}")
print(f"GPU idle gap: median {statistics.median(gaps)} ms, p99 {gaps[int(0.99 * (len(gaps) - 1))]} ms, max {gaps[-1]} ms (goal: median < 5 ms)")
PY
