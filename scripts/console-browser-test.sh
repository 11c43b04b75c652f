#!/usr/bin/env bash
# Drives the browser console (/console/) in headless Chromium against `sdq up` (embedded transport,
# the emulator), with the console files compiled into the binary. Needs chromium, chromedriver
# (Debian: apt-get install chromium chromium-driver) and selenium (pip install selenium).
# Usage: SDQ_BIN=path/to/sdq scripts/console-browser-test.sh   (default .build/debug/sdq)
# Screenshots: .build/console-screenshots/, one PNG per view.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bin=${SDQ_BIN:-.build/debug/sdq}
[ -x "$bin" ] || { echo "console-browser-test: no sdq binary at $bin (swift build, or set SDQ_BIN)" >&2; exit 2; }
shots=${CONSOLE_SCREENSHOTS:-$root/.build/console-screenshots}
mkdir -p "$shots"

work=$(mktemp -d)
cat >"$work/keys.yaml" <<'KEYS'
keys:
  - {name: ops, key: k-ops, role: operator}
  - {name: alice, key: k-alice}
  - {name: bob, key: k-bob}
KEYS
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')

# The compiled-in console is what is tested: SDQ_CONSOLE_DIR is not passed on. With
# SDQ_CONSOLE_TEST_DEV=1 the files are served from the checkout instead (a binary built before the
# last console edit).
console_env=(-u SDQ_CONSOLE_DIR)
if [ "${SDQ_CONSOLE_TEST_DEV:-0}" = 1 ]; then
  console_env=(SDQ_CONSOLE_DIR="$root/Services/ApiLambda/Console")
  echo "console-browser-test: serving the console from $root/Services/ApiLambda/Console (dev mode)"
fi
env "${console_env[@]}" SDQ_DATA_DIR="$work/data" SDQ_API_KEYS_FILE="$work/keys.yaml" \
  "$bin" up --port "$port" --step-ms "${SDQ_STEP_MS:-150}" >"$work/sdq-up.log" 2>&1 &
pid=$!
cleanup() {
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

for _ in $(seq 1 300); do
  grep -q "listening on" "$work/sdq-up.log" && break
  kill -0 "$pid" 2>/dev/null || { echo "console-browser-test: sdq up exited" >&2; cat "$work/sdq-up.log" >&2; exit 1; }
  sleep 0.2
done
grep -q "listening on" "$work/sdq-up.log" || { echo "console-browser-test: sdq up did not start" >&2; cat "$work/sdq-up.log" >&2; exit 1; }

status=0
SDQ_URL="http://127.0.0.1:$port" SDQ_KEY=k-alice SDQ_OPERATOR_KEY=k-ops SDQ_SCREENSHOTS="$shots" \
  python3 Tests/Browser/console_test.py || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- sdq up log (last 60 lines) ---" >&2
  tail -n 60 "$work/sdq-up.log" >&2
fi
exit "$status"
