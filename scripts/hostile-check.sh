#!/usr/bin/env bash
# Hostile-client check: starts `sdq up` (one worker, emulator at 5 ms a step) on loopback with
# three API keys (clients alice and bob, operator ops) and runs scripts/ci/hostile_client.py
# against it: tenant isolation, upload isolation and URL binding, unsigned-upload memory, deep
# JSON, special-purpose webhook addresses, a webhook name whose DNS never answers, spoofed
# forwarded headers, runtime_options/workflow limits, data-folder permissions and stale temporary
# files. Then one quick start-up check: SDQ_API_KEYS=' , ' (set, listing no key) must refuse to
# start rather than serve an open API.
#
# The server runs in a private mount namespace (unshare -m) whose /etc/resolv.conf names
# 127.0.0.77, where a UDP "black hole" reads queries and never answers, so a lookup of any name
# not in /etc/hosts hangs for the resolver's full timeout. Needs root (CI is root). Loopback only;
# bounded: every request has a timeout and the whole run stays under 4 minutes.
#
# Usage: scripts/hostile-check.sh [SDQ_BINARY]   (default: $(swift build --show-bin-path)/sdq)
#   HOSTILE_KEYS_ENV=1  configure the keys with SDQ_API_KEYS instead of SDQ_API_KEYS_FILE (for
#                       builds without key files; there is no operator then, so that part of
#                       "tenant isolation" fails).
# Exit status: 0 when every check held, 1 when any FAILED, 2 when the check could not run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$(cd "$root" && swift build --show-bin-path)/sdq}
budget=235           # seconds for the whole run
started=$(date +%s.%N)
stage_started=$started

if [[ $EUID -ne 0 ]]; then echo "hostile-check: must run as root (unshare -m, mount --bind)" >&2; exit 2; fi
if [[ ! -x $bin ]]; then echo "hostile-check: no sdq binary at $bin" >&2; exit 2; fi

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
stage() {  # stage NAME: prints how long the stage that just ended took
    echo "[stage] $1: $(elapsed "$stage_started") s (total $(elapsed "$started") s)"
    stage_started=$(date +%s.%N)
}
remaining() { awk -v a="$started" -v b="$(date +%s.%N)" -v n="$budget" 'BEGIN { r = int(n - (b - a)); print (r > 1 ? r : 1) }'; }

dir=$(mktemp -d /tmp/sdq-hostile.XXXXXX)
server_pid='' hole_pid=''
running() {  # PID exists and is not a zombie waiting to be reaped
    [[ -e /proc/$1/stat ]] && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]
}
stop() {  # stop PID: TERM, up to 10 s to go, then KILL
    local pid=$1
    [[ -n $pid ]] && running "$pid" || { [[ -n $pid ]] && wait "$pid" 2>/dev/null; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do running "$pid" || break; sleep 0.1; done
    if running "$pid" && kill -KILL "$pid" 2>/dev/null; then echo "(process $pid did not exit within 10 s of SIGTERM; killed)"; fi
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    stop "$server_pid"
    stop "$hole_pid"
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 2' INT TERM

# The resolver the server sees: one name server that never answers (5 s x 2 tries per lookup).
printf 'nameserver 127.0.0.77\noptions timeout:5 attempts:2\n' >"$dir/resolv.conf"
python3 -u - "$dir" >"$dir/hole.log" 2>&1 <<'PY' &
import socket, sys
hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
hole.bind(("127.0.0.77", 53))
open(sys.argv[1] + "/hole.ready", "w").close()
while True:  # read every query, answer none
    data, peer = hole.recvfrom(65535)
    print(f"query from {peer[0]}:{peer[1]} ({len(data)} bytes)", flush=True)
PY
hole_pid=$!
for _ in $(seq 50); do [[ -e $dir/hole.ready ]] && break; sleep 0.1; done
if [[ ! -e $dir/hole.ready ]]; then echo "hostile-check: the DNS black hole did not start:" >&2; cat "$dir/hole.log" >&2; exit 2; fi

cat >"$dir/keys.yaml" <<'YAML'
keys:
  - name: alice
    key: k1-alice-secret
    role: client
  - name: bob
    key: k2-bob-secret
    role: client
  - name: ops
    key: k3-ops-secret
    role: operator
YAML
if [[ ${HOSTILE_KEYS_ENV:-} == 1 ]]; then
    keys=(-u SDQ_API_KEYS_FILE SDQ_API_KEYS=k1-alice-secret,k2-bob-secret,k3-ops-secret)
else
    keys=(-u SDQ_API_KEYS SDQ_API_KEYS_FILE="$dir/keys.yaml")
fi

# What a crash in the middle of an object write leaves behind; the server must sweep it at start.
# Leftovers untouched for 5 minutes are swept (newer ones may belong to another process sharing
# the folder), so the planted file is dated an hour back, as after a crash and a later restart.
# (This also creates the data folder, 0755 by the umask: the server must tighten it.)
mkdir -p "$dir/data/objects/sdq-objects/outputs/stale"
: >"$dir/data/objects/sdq-objects/outputs/stale/.image-0.png.0000.tmp"
touch -d '1 hour ago' "$dir/data/objects/sdq-objects/outputs/stale/.image-0.png.0000.tmp"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
base="http://127.0.0.1:$port"
stage setup

# env, unshare (no --fork) and sh all exec, so $! is the server's own PID.
env -u SDQ_PUBLIC_URL "${keys[@]}" SDQ_DATA_DIR="$dir/data" LOG_LEVEL=error \
    unshare -m sh -c 'mount --bind "$1/resolv.conf" /etc/resolv.conf && exec "$2" up --port "$3" --workers 1 --step-ms 5' \
    sh "$dir" "$bin" "$port" >"$dir/server.log" 2>&1 &
server_pid=$!
up=0
for _ in $(seq 300); do  # GET /healthz, up to 60 s
    running "$server_pid" || break
    if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/healthz", timeout=1)' "$base" 2>/dev/null; then
        up=1; break
    fi
    sleep 0.2
done
if [[ $up != 1 ]]; then
    why=$(running "$server_pid" && echo "did not become healthy on $base within 60 s" || echo "exited before it was healthy")
    echo "hostile-check: the server $why; its output:" >&2
    tail -n 30 "$dir/server.log" >&2
    exit 2
fi
if grep -q 127.0.0.77 "/proc/$server_pid/root/etc/resolv.conf" 2>/dev/null; then
    echo "server $server_pid up on $base; its resolver: 127.0.0.77 (never answers)"
else
    echo "server $server_pid up on $base; WARNING: its /etc/resolv.conf is not the private one"
fi
stage "server start"

status=0
checks=$(( $(remaining) - 30 ))  # leave time for the start-up check and cleanup
timeout -k 5 "$checks" python3 -u "$root/scripts/ci/hostile_client.py" "$base" "$server_pid" "$dir/data" || status=$?
if [[ $status == 124 || $status == 137 ]]; then echo "FAILED hostile client: did not finish within $checks s"; fi
echo "DNS queries the black hole swallowed: $(grep -c '^query' "$dir/hole.log" || true)"
if ! running "$server_pid"; then
    echo "FAILED server: exited during the checks; its last output:"; tail -n 20 "$dir/server.log"; status=1
fi
stage "hostile checks"
stop "$server_pid"; server_pid=''
stage "server stop"

# SDQ_API_KEYS set but listing no key must refuse to start (not serve an open API).
rc=0
env -u SDQ_API_KEYS_FILE -u SDQ_PUBLIC_URL SDQ_API_KEYS=' , ' SDQ_DATA_DIR="$dir/data2" \
    timeout -k 5 20 "$bin" up --port 0 >"$dir/empty-keys.log" 2>&1 || rc=$?
if [[ $rc != 0 && $rc != 124 && $rc != 137 ]] && grep -q SDQ_API_KEYS "$dir/empty-keys.log"; then
    echo "HELD   empty SDQ_API_KEYS: refused to start (exit $rc): $(grep -m1 SDQ_API_KEYS "$dir/empty-keys.log" | cut -c1-160)"
else
    what=$([[ $rc == 124 || $rc == 137 ]] && echo "still serving after 20 s" || echo "exit $rc")
    echo "FAILED empty SDQ_API_KEYS: $what; $(grep -c SDQ_API_KEYS "$dir/empty-keys.log" || true) line(s) name SDQ_API_KEYS"
    status=1
fi
stage "empty-keys start-up check"

echo "hostile-check: $([[ $status == 0 ]] && echo "all held" || echo "FAILED") in $(elapsed "$started") s"
[[ $status == 0 ]] || exit 1
