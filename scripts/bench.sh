#!/usr/bin/env bash
# Every benchmark, on the embedded transport and over moto (an AWS emulator on loopback), with the
# figures printed and recorded in BENCHMARKS.md: a new section on top (date, machine, command),
# earlier runs kept below it for comparison.
#   scripts/bench.sh [--release] [--quick]
# --release builds optimised binaries (about 9 minutes from clean); --quick runs fewer iterations.
# Without moto_server on PATH (pip install 'moto[server]') only the embedded figures are taken.
set -euo pipefail
cd "$(dirname "$0")/.."
configuration=debug; quick=0; command="scripts/bench.sh $*"
for argument in "$@"; do
  case "$argument" in --release) configuration=release ;; --quick) quick=1 ;; esac
done
for product in bench-api-lambda bench-gpu-gap bench-dispatcher api-lambda sdq; do
  swift build -c "$configuration" --product "$product" >/dev/null
done
bin=$(swift build -c "$configuration" --show-bin-path)
if [ $quick = 1 ]; then invocations=200; starts=3; tasks=40; idle=10; dispatch=500; else invocations=1000; starts=10; tasks=100; idle=30; dispatch=2000; fi
one_core() { if command -v taskset >/dev/null; then taskset -c 0 "$@"; else "$@"; fi; }

out=$(mktemp)
run() { echo "\$ $*" | tee -a "$out"; "$@" 2>/dev/null | grep -v '^\s*$' | tee -a "$out"; echo | tee -a "$out"; }

run "$bin/bench-gpu-gap" --tasks $tasks --steps 20 --step-ms 10
run "$bin/bench-gpu-gap" --tasks $tasks --steps 20 --step-ms 10 --runtime comfyui
run "$bin/bench-gpu-gap" --idle $idle --steps 4 --step-ms 10
run one_core "$bin/bench-dispatcher" --tasks $dispatch

if command -v moto_server >/dev/null; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
  python3 scripts/ci/moto_atomic.py -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
  moto=$!
  trap 'kill $moto 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break; sleep 0.2; done
  endpoint="http://127.0.0.1:$port"
  export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
  echo "== over moto ($endpoint)" | tee -a "$out"
  stack="bench$RANDOM"
  SDQ_TRANSPORT=aws SDQ_STACK=$stack AWS_ENDPOINT_URL=$endpoint "$bin/sdq" aws init >/dev/null
  # The Lambda function runs on the AWS transport only (it carries no embedded transport).
  SDQ_TRANSPORT=aws SDQ_STACK=$stack AWS_ENDPOINT_URL=$endpoint run "$bin/bench-api-lambda" --invocations $invocations --starts $starts --binary "$bin/api-lambda"
  run "$bin/bench-gpu-gap" --tasks $((tasks / 2)) --steps 20 --step-ms 50 --aws "$endpoint"
  run "$bin/bench-gpu-gap" --idle $idle --steps 4 --step-ms 10 --aws "$endpoint"
  run one_core "$bin/bench-dispatcher" --tasks $((dispatch / 4)) --aws "$endpoint"
fi

# Record: newest section first, the earlier ones kept.
machine="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
section=$(mktemp)
{
  echo "## $(date -u '+%Y-%m-%d %H:%M UTC') — $configuration build"
  echo
  echo "Machine: $machine. Command: \`$command\`."
  echo
  echo '```text'
  sed "s|$PWD/||g" "$out"
  echo '```'
  echo
} > "$section"
if [ -f BENCHMARKS.md ]; then
  awk -v section="$section" 'BEGIN { done = 0 } /^## / && !done { while ((getline line < section) > 0) print line; done = 1 } { print } END { if (!done) while ((getline line < section) > 0) print line }' BENCHMARKS.md > BENCHMARKS.md.new
  mv BENCHMARKS.md.new BENCHMARKS.md
else
  { echo "# Benchmarks"; echo; echo "Written by \`scripts/bench.sh\`; newest first. Figures from one run compare with each other;"; echo "across runs, compare only on the same machine and build."; echo; cat "$section"; } > BENCHMARKS.md
fi
echo "recorded in BENCHMARKS.md"
