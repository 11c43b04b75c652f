#!/usr/bin/env bash
# Makes, on a machine that reaches Debian's packages but no container registry, the base images
# the Dockerfiles name, under those names:
#   debian:12.12-slim        debootstrap --variant=minbase bookworm, imported
#   swift:6.3.1-bookworm     that Debian + Swift's build dependencies + this machine's toolchain
#                            (/opt/swift) + its Swift package mirror (git's insteadOf for github.com)
#   sdq-ci/moto:latest       moto server (LocalStack's stand-in) from wheels downloaded on the host
# A connected machine pulls the first two from Docker Hub instead; the Dockerfiles do not change.
# Needs: root, debootstrap, a running engine (DOCKER_HOST), pip on the host. Idempotent: an image
# that exists is kept.
set -euo pipefail
work=${SDQ_CI_WORK:-$(mktemp -d)}
mirror=${SDQ_DEBIAN_MIRROR:-http://deb.debian.org/debian}
toolchain=${SDQ_SWIFT_TOOLCHAIN:-/opt/swift}
packages=${SDQ_SWIFT_PACKAGES:-/opt/swift-packages}
has() { docker image inspect "$1" >/dev/null 2>&1; }
stamp() { echo "[$(date +%T)] $*"; }

if ! has debian:12.12-slim; then
  stamp "debootstrap bookworm (minbase)"
  rootfs="$work/rootfs"
  rm -rf "$rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log"; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import --change 'CMD ["bash"]' - debian:12.12-slim >/dev/null
  rm -rf "$rootfs"
fi

if ! has swift:6.3.1-bookworm; then
  stamp "swift:6.3.1-bookworm from $toolchain and $packages"
  # Swift's own build dependencies, as the official swift:*-bookworm image installs them.
  docker rm -f sdq-swift-base >/dev/null 2>&1 || true
  docker run --name sdq-swift-base -v "$toolchain:/mnt/toolchain:ro" -v "$packages:/mnt/packages:ro" \
    debian:12.12-slim bash -euc '
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        binutils ca-certificates git gnupg2 libc6-dev libcurl4-openssl-dev libedit2 libgcc-12-dev \
        libpython3-dev libsqlite3-0 libstdc++-12-dev libxml2-dev libncurses-dev libz3-dev pkg-config \
        tzdata unzip zlib1g-dev >/dev/null
      rm -rf /var/lib/apt/lists/*
      mkdir -p /opt && cp -a /mnt/toolchain /opt/swift && cp -a /mnt/packages /opt/swift-packages
      for prefix in https://github.com/ git@github.com: ssh://git@github.com/; do
        git config --system --add "url./opt/swift-packages/.insteadOf" "$prefix"
      done
      git config --system --add safe.directory "*"
      /opt/swift/usr/bin/swift --version' >"$work/swift-base.log" 2>&1 || { tail -20 "$work/swift-base.log"; exit 1; }
  docker commit --change 'ENV PATH=/opt/swift/usr/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' sdq-swift-base swift:6.3.1-bookworm >/dev/null
  docker rm sdq-swift-base >/dev/null
fi

if ! has sdq-ci/moto:latest; then
  stamp "sdq-ci/moto from host-downloaded wheels"
  ctx="$work/moto"
  rm -rf "$ctx" && mkdir -p "$ctx/wheels"
  python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
    --python-version 3.11 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform any \
    -d "$ctx/wheels" 'moto[server]' >"$work/moto-wheels.log" 2>&1 || { tail -20 "$work/moto-wheels.log"; exit 1; }
  cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM debian:12.12-slim
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv && rm -rf /var/lib/apt/lists/*
COPY wheels /wheels
RUN python3 -m venv /opt/moto && /opt/moto/bin/pip install --no-index --find-links /wheels 'moto[server]' && rm -rf /wheels
USER 65534:65534
EXPOSE 4566
HEALTHCHECK --interval=2s --timeout=3s --retries=30 \
  CMD ["/opt/moto/bin/python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:4566/moto-api/data.json', timeout=2)"]
ENTRYPOINT ["/opt/moto/bin/moto_server", "-H", "0.0.0.0", "-p", "4566"]
DOCKERFILE
  docker build -q -t sdq-ci/moto:latest "$ctx" >/dev/null
  rm -rf "$ctx"
fi
stamp "base images ready"
