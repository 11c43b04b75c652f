#!/usr/bin/env bash
# Release binaries as users run them: the README's main job (`sdq generate`, a valid PNG, exit 0),
# a quick run of every benchmark executable (exit 0, figures printed), and `sdq up` started, used
# (submit, wait, health) and stopped with SIGTERM (exit 0 within the grace period). A crash at
# exit fails like any other failure.
#   scripts/release-check.sh [BIN_DIR]
# BIN_DIR holds sdq, api-lambda and the bench-* executables (CI takes them out of the image build,
# scripts/container-check.sh --export-bin); without it they are built here with -c release.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
start=$(date +%s)
stamp() { echo "[release-check +$(( $(date +%s) - start ))s] $*"; }
if [ $# -ge 1 ]; then
  bin=$(cd "$1" && pwd)
else
  for product in sdq api-lambda bench-api-lambda bench-gpu-gap bench-dispatcher bench-model-affinity; do
    swift build -c release --static-swift-stdlib --product "$product"
  done
  bin=$(swift build -c release --show-bin-path)
fi
work=$(mktemp -d)
up_pid=
cleanup() { [ -n "$up_pid" ] && kill -KILL "$up_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

stamp "the main job: sdq generate \"a fox\" --seed 1 (embedded default, fresh folder)"
mkdir "$work/generate"
if (cd "$work/generate" && "$bin/sdq" generate "a fox" --seed 1 >stdout.log 2>stderr.log); then
  cat "$work/generate/stdout.log"
  pngs=("$work"/generate/sdq-output/*.png)
  if [ -e "${pngs[0]}" ]; then python3 scripts/ci/check-png.py "${pngs[@]}" || fail "generate wrote an invalid PNG"
  else fail "generate exited 0 but wrote no image"; fi
else
  fail "sdq generate exited $?"; tail -20 "$work/generate/stderr.log"
fi

stamp "every benchmark, quick"
bench() {
  local name=$1; shift
  if "$bin/$name" "$@" >"$work/$name.log" 2>"$work/$name.err"; then
    grep -v '^\s*$' "$work/$name.log" | head -40
    [ -s "$work/$name.log" ] || fail "$name printed no figures"
  else
    local rc=$?
    fail "$name $* exited $rc"; tail -20 "$work/$name.err"
  fi
}
# The Lambda function runs on the AWS transport only: moto (CI's, else one started here).
endpoint=${SDQ_TEST_AWS_ENDPOINT:-}
if [ -z "$endpoint" ]; then
  moto_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
  python3 scripts/ci/moto_atomic.py -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
  moto_pid=$!
  trap 'kill "$moto_pid" 2>/dev/null; cleanup' EXIT
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$moto_port/moto-api/" && break; sleep 0.2; done
  endpoint="http://127.0.0.1:$moto_port"
fi
lambda_env=(env SDQ_TRANSPORT=aws SDQ_STACK="rc$RANDOM$RANDOM" AWS_ENDPOINT_URL="$endpoint" AWS_REGION=us-east-1
  AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_EC2_METADATA_DISABLED=true)
"${lambda_env[@]}" "$bin/sdq" aws init >"$work/aws-init.log" 2>&1 || { fail "sdq aws init on moto"; tail -5 "$work/aws-init.log"; }
bench_lambda() {
  if timeout 600 "${lambda_env[@]}" "$bin/bench-api-lambda" "$@" >"$work/bench-api-lambda.log" 2>"$work/bench-api-lambda.err"; then
    grep -v '^\s*$' "$work/bench-api-lambda.log" | head -40
  else
    fail "bench-api-lambda exited $?"; tail -20 "$work/bench-api-lambda.err"
  fi
}
bench_lambda --invocations 200 --starts 3 --binary "$bin/api-lambda"
export SDQ_DATA_DIR="$work/bench-data"
bench bench-gpu-gap --tasks 20 --steps 20 --step-ms 10 --scripts "$root/scripts"
bench bench-gpu-gap --tasks 20 --steps 20 --step-ms 10 --scripts "$root/scripts" --runtime comfyui
bench bench-gpu-gap --idle 5 --steps 4 --step-ms 10
bench bench-dispatcher --tasks 300
bench bench-model-affinity --tasks 200 --rate 40
unset SDQ_DATA_DIR
# The GPU gap as independent runtime peers log it (scripts/sdwebui_peer.py, scripts/comfyui_peer.py),
# short runs: the release build drives both runtimes' real protocols end to end.
for runtime in sdwebui comfyui; do
  log="$work/bench-runtime-gap-$runtime.log"
  if scripts/bench-runtime-gap.sh "$bin/sdq" 20 10 embedded "$runtime" >"$log" 2>&1; then
    cat "$log"
    grep -q "tasks: 20 succeeded of 20" "$log" || fail "bench-runtime-gap ($runtime): not every task succeeded"
  else
    fail "bench-runtime-gap ($runtime) exited $?"; tail -20 "$log"
  fi
done

stamp "sdq up: start, use, SIGTERM"
mkdir "$work/up"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
(cd "$work/up" && exec "$bin/sdq" up --port "$port" --workers 1 >up.log 2>&1) &
up_pid=$!
server="http://127.0.0.1:$port"
for _ in $(seq 1 100); do grep -q "listening on" "$work/up/up.log" 2>/dev/null && break; sleep 0.2; done
if ! grep -q "listening on" "$work/up/up.log"; then
  fail "sdq up did not start"; cat "$work/up/up.log"
else
  id=$("$bin/sdq" submit "a fox in the snow" --seed 2 --server "$server" | tail -1)
  echo "submitted $id"
  "$bin/sdq" wait "$id" --server "$server" >"$work/up/wait.log" 2>&1 || fail "sdq wait $id exited $?"
  "$bin/sdq" status "$id" --server "$server" --json | grep -q '"status" : "succeeded"' || fail "task $id did not succeed"
  python3 -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('$server/healthz', timeout=5).status == 200 else 1)" \
    || fail "GET /healthz"
  kill -TERM "$up_pid"
  grace=30; rc=
  for _ in $(seq 1 $((grace * 5))); do
    if ! kill -0 "$up_pid" 2>/dev/null; then break; fi
    sleep 0.2
  done
  if kill -0 "$up_pid" 2>/dev/null; then
    fail "sdq up still running ${grace}s after SIGTERM"
  else
    wait "$up_pid" && rc=0 || rc=$?
    up_pid=
    if [ "$rc" = 0 ]; then echo "sdq up exited 0 after SIGTERM"; else fail "sdq up exited $rc after SIGTERM"; tail -20 "$work/up/up.log"; fi
  fi
fi

stamp "done: $failures failure(s)"
[ "$failures" = 0 ]
