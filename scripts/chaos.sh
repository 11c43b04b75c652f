#!/usr/bin/env bash
# Fault injection: builds the executables and runs scripts/chaos.py (see its header). Bounded by
# --timeout (default 900 s). Examples:
#   scripts/chaos.sh --tasks 500 --kills 20                 # prints lost: 0 and completed twice: 0
#   scripts/chaos.sh --mode up --tasks 10000 --kills 0      # the soak: sdq up with 4 workers, memory sampled
#   scripts/chaos.sh --release ...                          # release build
set -euo pipefail
cd "$(dirname "$0")/.."
configuration=debug
if [ "${1:-}" = "--release" ]; then configuration=release; shift; fi
for product in sdq api dispatcher result-writer inference-service; do
  swift build -c "$configuration" --product "$product" >/dev/null
done
exec python3 scripts/chaos.py --bin "$(swift build -c "$configuration" --show-bin-path)" "$@"
