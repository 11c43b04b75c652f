#!/usr/bin/env bash
# Event streams under load, at their peers: `sdq up` (one worker) drives the independent SD WebUI
# peer (scripts/sdwebui_peer.py, which logs its own start and end of each generation); TASKS tasks
# run with no stream open, then TASKS more with STREAMS event streams open on them. Prints memory
# per stream (sdq up's resident set), events delivered per second, the time from a state change
# in the store to its event at the client (median, p99) and the GPU idle gap with and without
# the streams (scripts/bench_event_streams.py says how each is taken).
# AWS_ENDPOINT (a moto server) runs the same on the AWS transport, where streams read the record
# at most once a second (use fewer streams there: moto is one Python process).
# Usage: scripts/bench-event-streams.sh [path/to/sdq] [STREAMS] [TASKS] [AWS_ENDPOINT|embedded]
#        (default: the debug build, 1000, 200, embedded)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
sdq=${1:-$(cd "$root" && swift build --show-bin-path)/sdq}
streams=${2:-1000}
tasks=${3:-200}
aws=${4:-}
[[ $aws == embedded ]] && aws=
[[ -x $sdq ]] || { echo "no sdq at $sdq (swift build)" >&2; exit 2; }
ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null || true
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
peer_port=$(free_port)
api_port=$(free_port)
python3 "$root/scripts/sdwebui_peer.py" --port "$peer_port" --log "$work/peer.jsonl" --step-ms 10 &
peer_pid=$!
transport=(SDQ_TRANSPORT=embedded)
label="embedded transport"
if [[ -n $aws ]]; then
  transport=(SDQ_TRANSPORT=aws SDQ_STACK="streams$RANDOM" AWS_ENDPOINT_URL="$aws" AWS_REGION=us-east-1
    AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench)
  label="AWS transport on $aws"
  env "${transport[@]}" LOG_LEVEL=error "$sdq" aws init >"$work/init.log" 2>&1 || { cat "$work/init.log"; exit 1; }
fi
env "${transport[@]}" SDQ_DATA_DIR="$work/data" LOG_LEVEL=error SDQ_RUNTIME=sdwebui SDQ_RUNTIME_URL="http://127.0.0.1:$peer_port" \
  "$sdq" up --port "$api_port" --workers 1 >"$work/up.log" 2>&1 &
up_pid=$!
trap 'kill "$up_pid" "$peer_pid" 2>/dev/null || true; wait "$up_pid" "$peer_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
python3 "$root/scripts/bench_event_streams.py" "$api_port" "$up_pid" "$work/peer.jsonl" "$streams" "$tasks" "$label ($(basename "$(dirname "$sdq")") build)"
