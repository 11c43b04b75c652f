#!/usr/bin/env bash
# What OTLP export costs the pipeline: runs bench-gpu-gap (the whole pipeline in-process, one
# worker on the emulator) with export off and on, alternating (off, on, off, on) in one run, and
# prints each run's figures and the on/off ratios of wall time and GPU overhead.
#
#   scripts/bench-telemetry.sh [--release] [bench-gpu-gap options, e.g. --tasks 100]
#
# "On" exports to a local OTLP/HTTP sink (answers 200 to everything, decodes nothing), so the
# figure is sdq's side of export: span and metric recording, batching, encoding and sending.
set -euo pipefail
cd "$(dirname "$0")/.."
configuration=debug
if [ "${1:-}" = "--release" ]; then configuration=release; shift; fi
swift build -c "$configuration" --product bench-gpu-gap >/dev/null
bin="$(swift build -c "$configuration" --show-bin-path)/bench-gpu-gap"

port_file=$(mktemp)
python3 - "$port_file" <<'PY' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
open(sys.argv[1], "w").write(str(server.server_address[1]))
server.serve_forever()
PY
sink=$!
trap 'kill $sink 2>/dev/null || true; rm -f "$port_file"' EXIT
for _ in $(seq 1 50); do [ -s "$port_file" ] && break; sleep 0.1; done
endpoint="http://127.0.0.1:$(cat "$port_file")"

declare -a walls overheads
for mode in off on off on; do
  if [ "$mode" = on ]; then
    out=$(OTEL_EXPORTER_OTLP_ENDPOINT="$endpoint" "$bin" "$@")
  else
    out=$(env -u OTEL_EXPORTER_OTLP_ENDPOINT "$bin" "$@")
  fi
  echo "== export $mode"
  echo "$out"
  walls+=("$mode $(echo "$out" | sed -n 's/.*wall time for all tasks: \([0-9.]*\) ms/\1/p')")
  overheads+=("$mode $(echo "$out" | sed -n 's/.*overhead ratio (busy span \/ runtime time − 1): \([0-9.-]*\).*/\1/p')")
done
printf '%s\n' "${walls[@]}" | awk '{s[$1]+=$2; n[$1]++} END {printf "wall time, mean of 2: off %.0f ms, on %.0f ms, on/off %.3f\n", s["off"]/n["off"], s["on"]/n["on"], (s["on"]/n["on"])/(s["off"]/n["off"])}'
printf '%s\n' "${overheads[@]}" | awk '{s[$1]+=$2; n[$1]++} END {printf "GPU overhead ratio, mean of 2: off %.4f, on %.4f\n", s["off"]/n["off"], s["on"]/n["on"]}'
