#!/usr/bin/env bash
# The GPU idle gap as the runtime sees it: `sdq up` (embedded transport, one worker) drives an SD
# WebUI peer that is not sdq's code (scripts/sdwebui_peer.py, Python, from the A1111 API), which
# logs its own start and end of every generation. TASKS tasks of 20 steps x STEP_MS are submitted
# at once; the gap is the peer's start of one generation minus its end of the one before, while
# work is waiting. Printed beside sdq's own figure (its status documents' runtime_started_at minus
# the previous runtime_finished_at), how closely sdq's runtime window agrees with the peer's own
# start and end of the same generation, and the overhead (busy span / summed generation time - 1).
# AWS_ENDPOINT (a moto server, or "embedded") runs the same over the AWS transport. RUNTIME comfyui
# drives scripts/comfyui_peer.py (Python, from ComfyUI's HTTP and websocket API) with a
# txt2img workflow instead; its gap is the peer's start of one prompt minus its end of the one
# before.
# Usage: scripts/bench-runtime-gap.sh [path/to/sdq] [TASKS] [STEP_MS] [AWS_ENDPOINT|embedded] [sdwebui|comfyui]
#        (default: the debug build, 200, 10, embedded, sdwebui)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
sdq=${1:-$(cd "$root" && swift build --show-bin-path)/sdq}
tasks=${2:-200}
step_ms=${3:-10}
aws=${4:-}
[[ $aws == embedded ]] && aws=
runtime=${5:-sdwebui}
[[ -x $sdq ]] || { echo "no sdq at $sdq (swift build)" >&2; exit 2; }
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
peer_port=$(free_port)
api_port=$(free_port)
python3 "$root/scripts/${runtime}_peer.py" --port "$peer_port" --log "$work/peer.jsonl" --step-ms "$step_ms" &
peer_pid=$!
transport=(SDQ_TRANSPORT=embedded)
if [[ -n $aws ]]; then
  transport=(SDQ_TRANSPORT=aws SDQ_STACK="gap$RANDOM" AWS_ENDPOINT_URL="$aws" AWS_REGION=us-east-1
    AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench)
fi
if [[ -n $aws ]]; then env "${transport[@]}" LOG_LEVEL=error "$sdq" aws init >"$work/init.log" 2>&1 || { cat "$work/init.log"; exit 1; }; fi
env "${transport[@]}" SDQ_DATA_DIR="$work/data" LOG_LEVEL=error SDQ_RUNTIME="$runtime" SDQ_RUNTIME_URL="http://127.0.0.1:$peer_port" \
  "$sdq" up --port "$api_port" --workers 1 >"$work/up.log" 2>&1 &
up_pid=$!
trap 'kill "$up_pid" "$peer_pid" 2>/dev/null || true; wait "$up_pid" "$peer_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
python3 - "$api_port" "$tasks" "$work/peer.jsonl" "$sdq" "$step_ms" "${aws:-embedded}" "$runtime" <<'PY'
import concurrent.futures, json, statistics, sys, time, urllib.error, urllib.request
base, count, log, binary, step_ms = f"http://127.0.0.1:{sys.argv[1]}", int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
transport = "embedded transport" if sys.argv[6] == "embedded" else f"AWS transport on {sys.argv[6]}"
runtime = sys.argv[7]
peer_name = "SD WebUI peer (scripts/sdwebui_peer.py)" if runtime == "sdwebui" else "ComfyUI peer (scripts/comfyui_peer.py)"

for _ in range(300):
    try:
        urllib.request.urlopen(base + "/healthz", timeout=1); break
    except Exception:
        time.sleep(0.2)
def workflow(i):
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": f"gap {i}", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"seed": i, "steps": 20, "cfg": 7, "sampler_name": "euler", "scheduler": "normal",
              "denoise": 1, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "gap", "images": ["8", 0]}},
    }
def submit(i):
    request = {"prompt": f"gap {i}", "seed": i, "width": 64, "height": 64, "steps": 20}
    if runtime == "comfyui":
        request = {"kind": "comfyui_workflow", "prompt": "", "workflow": workflow(i)}
    body = json.dumps(request).encode()
    request = urllib.request.Request(base + "/v1/tasks", data=body, headers={"content-type": "application/json"}, method="POST")
    try:
        return json.load(urllib.request.urlopen(request))["id"]
    except urllib.error.HTTPError as error:
        sys.exit(f"submission refused: {error.code} {error.read().decode()[:300]}")
with concurrent.futures.ThreadPoolExecutor(32) as pool:
    ids = list(pool.map(submit, range(count)))
deadline = time.time() + 600
while time.time() < deadline:
    docs = [json.load(urllib.request.urlopen(f"{base}/v1/tasks/{i}")) for i in ids]
    if all(d["status"] in ("succeeded", "failed", "cancelled") for d in docs): break
    time.sleep(1)
peer = [json.loads(line) for line in open(log)]
peer.sort(key=lambda r: r["start"])
def q(values, p): return values[min(len(values) - 1, int(round(p * (len(values) - 1))))]
gaps = sorted((b["start"] - a["end"]) * 1000 for a, b in zip(peer, peer[1:]))
busy = peer[-1]["end"] - peer[0]["start"]
generating = sum(r["end"] - r["start"] for r in peer)
runs = sorted((d["timings"]["runtime_started_at"], d["timings"]["runtime_finished_at"]) for d in docs if d["status"] == "succeeded")
own = sorted(b[0] - a[1] for a, b in zip(runs, runs[1:]))
print(f"runtime gap benchmark: {binary}, one worker, {count} tasks x 20 steps x {step_ms} ms, {transport}, {peer_name}")
print(f"  tasks: {sum(d['status'] == 'succeeded' for d in docs)} succeeded of {len(docs)}; generations the peer logged: {len(peer)}")
print(f"  gap as the peer sees it:  median {statistics.median(gaps):.2f} ms  p90 {q(gaps, 0.9):.2f} ms  p99 {q(gaps, 0.99):.2f} ms  max {gaps[-1]:.2f} ms")
print(f"  gap in sdq's own figures: median {statistics.median(own)} ms  p99 {q(own, 0.99)} ms")
waited = sum(1 for a, b in zip(peer, peer[1:]) if b["received"] < a["end"])
print(f"  requests already waiting in the peer's queue when the one ahead ended: {waited} of {len(peer) - 1}")
# sdq's runtime window against the peer's own clock for the same generation (force_task_id sdq-<task>-<n>).
by_id = {d["id"]: d for d in docs if d["status"] == "succeeded"}
starts, ends = [], []
for r in peer:
    task = r.get("sdq_task") or (r.get("task") or "")[4:].rsplit("-", 1)[0]
    d = by_id.get(task)
    if d:
        starts.append(abs(d["timings"]["runtime_started_at"] - r["start"] * 1000))
        ends.append(abs(d["timings"]["runtime_finished_at"] - r["end"] * 1000))
starts.sort(); ends.sort()
if starts:
    print(f"  sdq's runtime window vs the peer's ({len(starts)} matched): start |diff| median {statistics.median(starts):.2f} ms p99 {q(starts, 0.99):.2f} ms; end |diff| median {statistics.median(ends):.2f} ms p99 {q(ends, 0.99):.2f} ms")
# The slowest hand-overs: where the late task was, in sdq's stage times, when the one ahead ended.
pairs = sorted(zip(peer, peer[1:]), key=lambda ab: ab[1]["start"] - ab[0]["end"], reverse=True)[:3]
for a, b in pairs:
    task = b.get("sdq_task") or (b.get("task") or "")[4:].rsplit("-", 1)[0]
    d = by_id.get(task)
    if not d or (b["start"] - a["end"]) * 1000 < 5: continue
    t, ended = d["timings"], a["end"] * 1000
    stages = ", ".join(f"{k} {t[k] - ended:+.0f}" for k in ("dispatched_at", "worker_received_at", "inputs_ready_at", "started_at", "runtime_started_at") if k in t)
    print(f"    a {(b['start'] - a['end']) * 1000:.1f} ms gap: the late task's stages relative to the end of the one ahead (ms): {stages}")
print(f"  overhead: busy span {busy:.2f} s / generating {generating:.2f} s - 1 = {(busy / generating - 1) * 100:.2f} %")
PY
