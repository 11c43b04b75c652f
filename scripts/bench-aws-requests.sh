#!/usr/bin/env bash
# AWS requests per task, counted at the AWS endpoint: moto behind a counting proxy
# (scripts/ci/aws_counting_proxy.py), `sdq aws init`, then `sdq up` (one worker, the in-process
# emulator at 50 ms per step) on the AWS transport through the proxy.
#   1. idle: no tasks for BENCH_IDLE_SECONDS (30) -> requests per second by operation;
#   2. tasks: BENCH_TASKS (20) tasks of 20 steps submitted over HTTP at once, counted until all are
#      terminal plus 5 s. Completion is watched by reading the task table from moto directly,
#      not through the proxy and not through sdq's status API, so no client reads are counted;
#   3. one status read: what one GET /v1/tasks/{id} of a finished task costs (the client's
#      cost, reported apart from the pipeline's);
#   4. event streams: one long task (BENCH_STREAM_STEPS x 50 ms) with no stream open, then one with
#      BENCH_STREAMS (5) event streams open on it; the difference in requests, per stream and per
#      second of the second task's run, is what an open stream costs (goal: at most one record
#      read a second);
#   5. quotas: the same BENCH_TASKS tasks again from a tenant with a submission rate and an
#      in-flight limit (both too high to refuse anything); the difference per task and operation
#      from phase 2 (each net of idle polling) is what quotas cost.
# Phases 1-4 submit as the key file's tenant `plain` (no quotas), phase 5 as `quota`.
# BENCH_FAIR_SHARE=off runs the stack with `fair_share: {lane_depth: 0}` (every task straight to
# its lane); the default is fair share on with its default lane depth (10), so phase 2's 20 tasks
# on one worker hold about half of them back: run it both ways to see what holding costs.
# Prints a table (and writes JSON to $OUT_JSON when set). Needs moto: pip install 'moto[server]'.
# Usage: scripts/bench-aws-requests.sh [path/to/sdq]   (default .build/release/sdq)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
sdq=${1:-$root/.build/release/sdq}
[[ -x $sdq ]] || { echo "no sdq binary at $sdq (swift build -c release)" >&2; exit 2; }
sdq=$(cd "$(dirname "$sdq")" && pwd)/$(basename "$sdq")
command -v moto_server >/dev/null || { echo "moto_server not found: pip install 'moto[server]'" >&2; exit 2; }

work=$(mktemp -d)
pids=()
cleanup() {
  local status=$? pid
  # Newest first, each gone before the next: sdq (SIGTERM, graceful) while moto still answers.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[i]}
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if ((status != 0)); then
    for log in "$work"/*.log; do [[ -s $log ]] && { echo "--- $(basename "$log") (last lines)"; tail -n 20 "$log"; }; done >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# wait_for URL SECONDS: until URL answers at all.
wait_for() {
  for _ in $(seq $(($2 * 5))); do curl -s -o /dev/null "$1" && return 0; sleep 0.2; done
  echo "$1 did not answer within $2 s" >&2; return 1
}
t0=$EPOCHREALTIME
stage_start=$t0
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%6.1f s", b - a }'; }
stage() {  # prints the duration of the stage that just ended
  printf 'stage %-22s %s\n' "$1" "$(since "$stage_start")"
  stage_start=$EPOCHREALTIME
}

moto_port=$(free_port)
proxy_port=$(free_port)
api_port=$(free_port)
moto_server -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
moto_pid=$!
pids+=("$moto_pid")
wait_for "http://127.0.0.1:$moto_port/moto-api/" 60
python3 "$root/scripts/ci/aws_counting_proxy.py" --port "$proxy_port" --upstream "http://127.0.0.1:$moto_port" \
  --moto-pid "$moto_pid" >"$work/proxy.log" 2>&1 &
pids+=("$!")
wait_for "http://127.0.0.1:$proxy_port/__counts" 30
stage "moto + proxy"

export SDQ_TRANSPORT=aws AWS_ENDPOINT_URL="http://127.0.0.1:$proxy_port" AWS_ACCESS_KEY_ID=test \
  AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
  SDQ_STACK="bench$(date +%s)$$" SDQ_DATA_DIR="$work/data" LOG_LEVEL="${LOG_LEVEL:-warning}"
cat >"$work/keys.yaml" <<'KEYS'
keys:
  - {name: plain, key: bench-plain}
  - {name: quota, key: bench-quota, quotas: {submissions_per_minute: 100000, max_in_flight: 100000}}
KEYS
export SDQ_API_KEYS_FILE="$work/keys.yaml"
unset AWS_SESSION_TOKEN AWS_PROFILE SDQ_POOLS_FILE SDQ_API_KEYS \
  AWS_ENDPOINT_URL_SQS AWS_ENDPOINT_URL_SNS AWS_ENDPOINT_URL_S3 AWS_ENDPOINT_URL_DYNAMODB AWS_ENDPOINT_URL_STS
case ${BENCH_FAIR_SHARE:-on} in
  on) ;;
  off)
    printf 'pools:\n  - {name: default, runtime: emulator, models: [emulator-v1]}\nfair_share: {lane_depth: 0}\n' >"$work/pools.yaml"
    export SDQ_POOLS_FILE="$work/pools.yaml" ;;
  *) echo "BENCH_FAIR_SHARE is on or off" >&2; exit 2 ;;
esac
echo "fair share: ${BENCH_FAIR_SHARE:-on}"
"$sdq" aws init >"$work/init.log" 2>&1
stage "sdq aws init"

"$sdq" up --port "$api_port" --workers 1 --step-ms 50 >"$work/up.log" 2>&1 &
pids+=("$!")
for _ in $(seq 300); do
  grep -q '^listening on http://' "$work/up.log" && break
  kill -0 "${pids[-1]}" 2>/dev/null || { echo "sdq up exited" >&2; exit 1; }
  sleep 0.2
done
grep -q '^listening on http://' "$work/up.log" || { echo "sdq up did not listen within 60 s" >&2; exit 1; }
stage "sdq up listening"

python3 - "$proxy_port" "$moto_port" "$api_port" "$SDQ_STACK" "${BENCH_IDLE_SECONDS:-30}" "${BENCH_TASKS:-20}" \
  "$sdq" "${OUT_JSON:-}" <<'PY'
import concurrent.futures, http.client, json, os, sys, time, urllib.request
proxy, moto, api, stack, idle_seconds, tasks, binary, out_json = sys.argv[1:]
idle_seconds, tasks = float(idle_seconds), int(tasks)
proxy_url, api_url = f"http://127.0.0.1:{proxy}", f"http://127.0.0.1:{api}"
STEPS, REFERENCE_PER_TASK, SETTLE_SECONDS, TIMEOUT_SECONDS, STATUS_READS, WARMUP_SECONDS = 20, 5, 5, 300, 10, 3
stage_started = time.time()

def stage(name):
    global stage_started
    now = time.time()
    print(f"stage {name:<22} {now - stage_started:6.1f} s", flush=True)
    stage_started = now

def counts():
    return json.load(urllib.request.urlopen(proxy_url + "/__counts", timeout=10))

def reset():
    urllib.request.urlopen(urllib.request.Request(proxy_url + "/__reset", data=b"", method="POST"), timeout=10)
    return counts()  # the moto CPU time at the reset

def statuses(ids):
    """Task statuses read from moto's table directly (bypassing the proxy, so never counted)."""
    found = {}
    connection = http.client.HTTPConnection("127.0.0.1", int(moto), timeout=30)
    for start in range(0, len(ids), 100):
        body = json.dumps({"RequestItems": {f"{stack}-tasks": {
            "Keys": [{"id": {"S": i}} for i in ids[start:start + 100]],
            "ProjectionExpression": "id, #s", "ExpressionAttributeNames": {"#s": "status"}}}})
        connection.request("POST", "/", body, {
            "Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "DynamoDB_20120810.BatchGetItem",
            "Authorization": "AWS4-HMAC-SHA256 Credential=test/20000101/us-east-1/dynamodb/aws4_request, "
                             "SignedHeaders=host, Signature=0"})
        document = json.load(connection.getresponse())
        for item in document.get("Responses", {}).get(f"{stack}-tasks", []):
            found[item["id"]["S"]] = item["status"]["S"]
    connection.close()
    return found

def cpu_between(before, after):
    if before.get("moto_cpu_seconds") is None or after.get("moto_cpu_seconds") is None:
        return None
    return after["moto_cpu_seconds"] - before["moto_cpu_seconds"]

# 1. Idle, after a short warm-up so that start-up calls (queue URL look-ups) are not counted.
time.sleep(WARMUP_SECONDS)
stage("warm-up")
idle_before = reset()
time.sleep(idle_seconds)
idle = counts()
idle_elapsed = idle["elapsed"]
idle_rate = {op: n / idle_elapsed for op, n in idle["counts"].items()}
stage("idle")

# 2. Tasks: submit all at once, watch completion on moto, settle, count.
PLAIN, QUOTA = {"Authorization": "Bearer bench-plain"}, {"Authorization": "Bearer bench-quota"}
def run_tasks(auth, first_seed):
    """Submits `tasks` tasks at once as `auth`'s tenant; counts until all are terminal plus settling."""
    before = reset()
    began = time.time()
    def submit(i):
        body = json.dumps({"prompt": f"aws request count {i}", "seed": i, "width": 512, "height": 512, "steps": STEPS}).encode()
        request = urllib.request.Request(api_url + "/v1/tasks", data=body, method="POST",
                                         headers={"Content-Type": "application/json", **auth})
        return json.load(urllib.request.urlopen(request, timeout=30))["id"]
    with concurrent.futures.ThreadPoolExecutor(min(tasks, 20)) as pool:
        task_ids = list(pool.map(submit, range(first_seed, first_seed + tasks)))
    sent = time.time()
    seen = {}
    while time.time() - began < TIMEOUT_SECONDS:
        seen = statuses(task_ids)
        if len(seen) == len(task_ids) and all(s in ("succeeded", "failed", "cancelled") for s in seen.values()):
            break
        time.sleep(1)
    else:
        sys.exit(f"tasks not terminal after {TIMEOUT_SECONDS} s: {seen}")
    ended = time.time()
    time.sleep(SETTLE_SECONDS)
    return before, began, task_ids, sent, seen, ended, counts()
run_before, started, ids, submitted, final, finished, run = run_tasks(PLAIN, 0)
run_elapsed = run["elapsed"]
stage("tasks")

# 3. What one status read of a finished task costs.
before_reads = reset()
for _ in range(STATUS_READS):
    urllib.request.urlopen(urllib.request.Request(f"{api_url}/v1/tasks/{ids[0]}", headers=PLAIN), timeout=30).read()
reads = counts()
stage("status reads")

# 4. Event streams: a long task alone, then one with streams open on it.
STREAMS, STREAM_STEPS = int(os.environ.get("BENCH_STREAMS", "5")), int(os.environ.get("BENCH_STREAM_STEPS", "100"))
def long_task(seed, streams):
    body = json.dumps({"prompt": f"stream cost {seed}", "seed": seed, "width": 64, "height": 64, "steps": STREAM_STEPS}).encode()
    request = urllib.request.Request(api_url + "/v1/tasks", data=body, method="POST",
                                     headers={"Content-Type": "application/json", **PLAIN})
    task = json.load(urllib.request.urlopen(request, timeout=30))["id"]
    events = []
    def follow(_):
        connection = http.client.HTTPConnection("127.0.0.1", int(api), timeout=120)
        connection.request("GET", f"/v1/tasks/{task}/events", headers={"Accept": "text/event-stream", **PLAIN})
        response, seen = connection.getresponse(), 0
        while line := response.readline():
            seen += line.startswith(b"event:")
        connection.close()
        return seen
    began = time.time()
    with concurrent.futures.ThreadPoolExecutor(max(1, streams)) as pool:
        followers = [pool.submit(follow, n) for n in range(streams)]
        while statuses([task]).get(task) not in ("succeeded", "failed", "cancelled"):
            time.sleep(0.2)
        events = [f.result() for f in followers]
    return task, time.time() - began, events
stream_before = reset()
_, quiet_seconds, _ = long_task(10_001, 0)
time.sleep(2)
quiet = counts()
reset()
_, streamed_seconds, stream_events = long_task(10_002, STREAMS)
time.sleep(2)
streamed = counts()
stage("event streams")

# 5. Quotas: the same tasks from the tenant with quotas (too high to refuse any).
_, _, quota_ids, _, quota_final, _, quota_run = run_tasks(QUOTA, 20_000)
stage("quotas")

# Report.
ops = sorted(set(run["counts"]) | set(idle["counts"]))
rows = []
for op in ops:
    total = run["counts"].get(op, 0)
    background = idle_rate.get(op, 0.0) * run_elapsed  # what idling alone makes in the same time
    rows.append({"operation": op, "total": total, "per_task": total / tasks, "idle_per_second": idle_rate.get(op, 0.0),
                 "net_per_task": (total - background) / tasks, "request_bytes": run["bytes"].get(op, 0)})
total_requests = sum(r["total"] for r in rows)
net_requests = sum(r["net_per_task"] for r in rows)
outcome = {s: list(final.values()).count(s) for s in sorted(set(final.values()))}
writes = run.get("dynamodb_writes", {})
estimated_wcu = sum(w["estimated_wcu"] for w in writes.values())
per_read = {op: n / STATUS_READS for op, n in sorted(reads["counts"].items())}

print()
print(f"AWS requests per task: {tasks} tasks x {STEPS} steps x 50 ms, one worker, sdq up over moto ({binary})")
print(f"tasks: {outcome}; submit {submitted - started:.2f} s, all terminal after {finished - started:.1f} s, "
      f"counted over {run_elapsed:.1f} s (incl. {SETTLE_SECONDS} s settle)")
print(f"{'operation':<34} {'total':>7} {'per task':>9} {'idle /s':>8} {'net/task':>9}")
for r in rows:
    print(f"{r['operation']:<34} {r['total']:>7} {r['per_task']:>9.2f} {r['idle_per_second']:>8.3f} {r['net_per_task']:>9.2f}")
print(f"{'all':<34} {total_requests:>7} {total_requests / tasks:>9.2f} {sum(idle_rate.values()):>8.3f} {net_requests:>9.2f}")
print(f"requests per task: {total_requests / tasks:.1f} (net of idle polling: {net_requests:.1f}); "
      f"reference guidance: about {REFERENCE_PER_TASK} per task")
print(f"  net/task = (total - idle rate x counted time) / tasks; the {tasks} submissions (POST /v1/tasks) are included,")
print("  no status reads are: completion was watched on moto directly")
if writes:
    parts = ", ".join(f"{op.split(':')[1]} {w['n']} ({w['request_bytes']} B)" for op, w in sorted(writes.items()))
    reported = sum(w["consumed_wcu"] for w in writes.values())
    print(f"DynamoDB writes: {parts}; estimated WCU {estimated_wcu} ({estimated_wcu / tasks:.1f} per task, from request sizes)"
          + (f"; moto-reported ConsumedCapacity {reported:g}" if any(w["consumed_reported"] for w in writes.values()) else ""))
print(f"idle ({idle_elapsed:.0f} s, no tasks): {sum(idle_rate.values()):.2f} requests/s: "
      + (", ".join(f"{op} {rate:.2f}" for op, rate in sorted(idle_rate.items())) or "none"))
print(f"one status read (GET /v1/tasks/{{id}}, finished task, client's cost): "
      + (", ".join(f"{op} {n:g}" for op, n in per_read.items()) or "none"))
idle_cpu, run_cpu = cpu_between(idle_before, idle), cpu_between(run_before, run)
def fmt(cpu): return "n/a" if cpu is None else f"{cpu:.2f} s"
print(f"moto CPU: idle {fmt(idle_cpu)} ({idle_elapsed:.0f} s), tasks {fmt(run_cpu)} ({run_elapsed:.0f} s"
      + (f", {run_cpu / tasks:.3f} s per task)" if run_cpu is not None else ")"))
print(f"wall time: tasks {finished - started:.1f} s to all terminal")
stream_ops = sorted(set(quiet["counts"]) | set(streamed["counts"]))
extra = {op: streamed["counts"].get(op, 0) - quiet["counts"].get(op, 0) * streamed["elapsed"] / quiet["elapsed"] for op in stream_ops}
extra = {op: n for op, n in extra.items() if abs(n) >= 0.5}
per_stream_second = {op: n / (STREAMS * streamed_seconds) for op, n in extra.items()}
print(f"event streams: one task of {STREAM_STEPS} steps x 50 ms alone ({quiet_seconds:.1f} s), then with {STREAMS} streams open "
      f"({streamed_seconds:.1f} s, {sum(stream_events)} events received, {min(stream_events) if stream_events else 0}-"
      f"{max(stream_events) if stream_events else 0} per stream)")
print("  extra requests per stream per second (scaled to equal counted time): "
      + (", ".join(f"{op} {rate:.2f}" for op, rate in sorted(per_stream_second.items())) or "none"))

def net_per_task(counted):
    return {op: (n - idle_rate.get(op, 0.0) * counted["elapsed"]) / tasks for op, n in counted["counts"].items()}
plain_net, quota_net = net_per_task(run), net_per_task(quota_run)
quota_extra = {op: quota_net.get(op, 0.0) - plain_net.get(op, 0.0) for op in sorted(set(plain_net) | set(quota_net))}
quota_extra = {op: n for op, n in quota_extra.items() if abs(n) >= 0.05}
quota_outcome = {s: list(quota_final.values()).count(s) for s in sorted(set(quota_final.values()))}
print(f"quotas (submissions_per_minute and max_in_flight, {tasks} tasks, {quota_outcome}): requests per task "
      f"{sum(quota_net.values()):.1f} vs {sum(plain_net.values()):.1f} without, net of idle polling; difference by operation: "
      + (", ".join(f"{op} {n:+.2f}" for op, n in quota_extra.items()) or "none"))

if out_json:
    with open(out_json, "w") as f:
        json.dump({"binary": binary, "tasks": tasks, "steps": STEPS, "step_ms": 50, "workers": 1, "outcome": outcome,
                   "submit_seconds": submitted - started, "terminal_seconds": finished - started,
                   "counted_seconds": run_elapsed, "operations": rows, "requests_per_task": total_requests / tasks,
                   "net_requests_per_task": net_requests, "reference_requests_per_task": REFERENCE_PER_TASK,
                   "dynamodb_writes": writes, "estimated_wcu_per_task": estimated_wcu / tasks,
                   "idle_seconds": idle_elapsed, "idle_requests_per_second": idle_rate,
                   "status_read_cost": per_read, "moto_cpu_seconds": {"idle": idle_cpu, "tasks": run_cpu},
                   "event_streams": {"streams": STREAMS, "steps": STREAM_STEPS, "seconds": streamed_seconds,
                                     "events": stream_events, "extra_per_stream_second": per_stream_second},
                   "quotas": {"outcome": quota_outcome, "net_requests_per_task": sum(quota_net.values()),
                              "extra_per_task": quota_extra}}, f, indent=2)
        f.write("\n")
    print(f"wrote {out_json}")
PY
printf 'wall time, whole script: %s\n' "$(since "$t0")"
