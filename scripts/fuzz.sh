#!/usr/bin/env bash
# Fuzzes the decoders that take outside input with libFuzzer, each for a bounded time:
# FuzzAPIRequest (POST /v1/tasks and /v1alpha2 bodies), FuzzLambdaEvent (Lambda events),
# FuzzQueueMessage (queue bodies). Builds them with -sanitize=fuzzer into .build-fuzz.
#   scripts/fuzz.sh [seconds per target, default 60]
# A crash leaves its input in .build-fuzz/crashes/<target>/; add it to Fuzz/Regressions/<kind>/ (a
# test replays every file there) once the bug is fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
scratch=.build-fuzz
flags=(-c debug --scratch-path "$scratch" -Xswiftc -sanitize=fuzzer -Xswiftc -DFUZZING)
status=0
for pair in FuzzAPIRequest:api-request FuzzLambdaEvent:lambda-event FuzzQueueMessage:queue-message; do
  target=${pair%%:*}; kind=${pair##*:}
  swift build "${flags[@]}" --product "$target" >/dev/null
  corpus="$scratch/corpus/$kind"; crashes="$scratch/crashes/$target"
  mkdir -p "$corpus" "$crashes"
  cp -n Fuzz/Corpus/"$kind"/* Fuzz/Regressions/"$kind"/* "$corpus"/ 2>/dev/null || true
  if [ "$kind" = api-request ]; then
    cp -n Tests/Fixtures/anchor-v1alpha2/*.json "$corpus"/ 2>/dev/null || true
  fi
  echo "== $target: ${seconds}s"
  if ! "$scratch/debug/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$crashes/" -print_final_stats=1 "$corpus" 2>"$scratch/$target.log"; then
    echo "$target found a crash: $(ls "$crashes")"; tail -30 "$scratch/$target.log"; status=1
  else
    grep -E "stat::number_of_executed_units|cov:" "$scratch/$target.log" | tail -2
  fi
done
exit $status
