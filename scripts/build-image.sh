#!/usr/bin/env bash
# `pnpm image`: builds the control plane image (Dockerfile) as runt/control-plane:dev on the
# engine at DOCKER_HOST.
#   1. NODE_BASE: given, or made locally by scripts/build-node-base.sh (cached by content hash),
#      since no container registry is reachable on our machines.
#   2. The control plane and its @runt dependencies are built on the host and deployed with
#      `pnpm deploy --prod` into .image/app, passed to the Dockerfile as PREBUILT (build
#      containers of the private engine have no network, so `pnpm install` cannot run inside).
#      RUNT_IMAGE_BUILD_INSIDE=1 skips this and lets the Dockerfile install and build itself.
#   3. docker build with NODE_BASE and PREBUILT; prints the image size.
# Env: RUNT_IMAGE (default runt/control-plane:dev), NODE_BASE, RUNT_IMAGE_BUILD_INSIDE,
#      RUNT_IMAGE_SKIP_BUILD=1 (the workspace is already built, e.g. by turbo before the tests).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

IMAGE="${RUNT_IMAGE:-runt/control-plane:dev}"
if [[ -z "${DOCKER_HOST:-}" && -S /run/runt-docker/docker.sock ]]; then
  export DOCKER_HOST=unix:///run/runt-docker/docker.sock
fi
log() { printf '[image] %s\n' "$*" >&2; }

NODE_BASE="${NODE_BASE:-$(bash scripts/build-node-base.sh)}"
args=(--build-arg "NODE_BASE=$NODE_BASE")

if [[ "${RUNT_IMAGE_BUILD_INSIDE:-}" != 1 ]]; then
  if [[ "${RUNT_IMAGE_SKIP_BUILD:-}" != 1 ]]; then
    log "building @runt/control-plane and its dependencies on the host"
    pnpm exec turbo run build --filter='@runt/control-plane...' --output-logs=errors-only >&2
  fi
  rm -rf .image/app
  mkdir -p .image
  pnpm --filter @runt/control-plane deploy --prod --legacy --prefer-offline .image/app >&2
  args+=(--build-arg PREBUILT=.image/app)
fi

log "docker build -t $IMAGE (NODE_BASE=$NODE_BASE)"
DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}" docker build --quiet "${args[@]}" -t "$IMAGE" . >/dev/null
# Earlier builds leave untagged images behind (the build stage, the previous tag): drop them.
for label in org.runt.image.stage=build org.runt.image=control-plane; do
  docker image prune -f --filter dangling=true --filter "label=$label" >/dev/null || true
done
size="$(docker image inspect --format '{{.Size}}' "$IMAGE")"
log "$IMAGE: $((size / 1000 / 1000)) MB"
echo "$IMAGE"
