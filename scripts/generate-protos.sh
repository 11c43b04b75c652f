#!/usr/bin/env bash
# Regenerates the committed Swift code for Shared/Messages/proto/**/*.proto.
#
# Needs Debian's protoc (`apt-get install protobuf-compiler libprotobuf-dev`) and protoc-gen-swift
# built from the swift-protobuf version Package.swift depends on; this script builds the plugin
# from the resolved checkout in .build/checkouts when it is not on PATH.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

plugin=$(command -v protoc-gen-swift || true)
if [ -z "$plugin" ]; then
  swift package resolve >/dev/null
  checkout="$root/.build/checkouts/swift-protobuf"
  swift build --package-path "$checkout" --scratch-path "$root/.build-protoc" \
    --product protoc-gen-swift >/dev/null
  plugin="$root/.build-protoc/debug/protoc-gen-swift"
fi

out="$root/Shared/Messages/Generated"
mkdir -p "$out"
rm -f "$out"/*.pb.swift
protoc --plugin=protoc-gen-swift="$plugin" \
  --proto_path=Shared/Messages/proto \
  --swift_out="$out" \
  --swift_opt=Visibility=Public \
  --swift_opt=FileNaming=PathToUnderscores \
  $(cd Shared/Messages/proto && find . -name '*.proto' | sort | sed 's|^\./||')
echo "generated: $(ls "$out")"
