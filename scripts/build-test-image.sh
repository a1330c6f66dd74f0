#!/usr/bin/env bash
# Builds the tiny test image `runt-test/busybox:latest` from Debian's busybox-static and imports
# it into Docker and/or Podman. No container registry is needed.
#
# Usage: scripts/build-test-image.sh [docker|podman|all]   (default: all)
# Env:   DOCKER_HOST (default unix:///run/runt-docker/docker.sock when that socket exists)
#        RUNT_TEST_IMAGE (default runt-test/busybox:latest)
#
# Idempotent: the image carries a label with a hash of its inputs; an engine that already has an
# image with the same hash is left alone.
set -euo pipefail

TARGET="${1:-all}"
IMAGE="${RUNT_TEST_IMAGE:-runt-test/busybox:latest}"
BUSYBOX="${BUSYBOX:-/bin/busybox}"
RECIPE_VERSION=2
LABEL=runt.test-image.hash
# The default command stays up (a "shell that stays up") and exits 0 promptly on SIGTERM.
STAY_UP='trap "exit 0" TERM INT; sleep 2147483647 & wait'

if [[ -z "${DOCKER_HOST:-}" && -S /run/runt-docker/docker.sock ]]; then
  export DOCKER_HOST=unix:///run/runt-docker/docker.sock
fi

log() { printf '[build-test-image] %s\n' "$*" >&2; }

[[ -x "$BUSYBOX" ]] || { log "missing $BUSYBOX (apt-get install busybox-static)"; exit 1; }

HASH="$( { sha256sum "$BUSYBOX" | cut -d' ' -f1; echo "$RECIPE_VERSION $STAY_UP"; } | sha256sum | cut -c1-16)"

CHANGES=(
  --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin'
  --change 'WORKDIR /'
  --change "CMD [\"/bin/sh\", \"-c\", \"${STAY_UP//\"/\\\"}\"]"
  --change "LABEL ${LABEL}=${HASH}"
)

TARBALL=""
cleanup() { [[ -n "$TARBALL" ]] && rm -rf "$(dirname "$TARBALL")"; return 0; }
trap cleanup EXIT

make_rootfs_tar() {
  [[ -n "$TARBALL" ]] && return 0
  local dir
  dir="$(mktemp -d)"
  local root="$dir/rootfs"
  mkdir -p "$root"/{bin,etc,tmp,root,workspace,proc,sys,dev,usr/bin,usr/sbin,sbin}
  chmod 1777 "$root/tmp"
  cp "$BUSYBOX" "$root/bin/busybox"
  local applet
  for applet in $("$BUSYBOX" --list); do
    [[ "$applet" == busybox ]] && continue
    ln -sf busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  TARBALL="$dir/rootfs.tar"
  tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$TARBALL" .
}

current_hash() { # engine-cli
  "$1" image inspect --format "{{ index .Config.Labels \"${LABEL}\" }}" "$IMAGE" 2>/dev/null || true
}

import_into() { # engine-cli
  local cli="$1"
  if [[ "$(current_hash "$cli")" == "$HASH" ]]; then
    log "$cli: $IMAGE up to date ($HASH)"
    return 0
  fi
  make_rootfs_tar
  log "$cli: importing $IMAGE ($HASH)"
  local quiet=()
  [[ "$cli" == podman ]] && quiet=(--quiet)
  "$cli" import "${quiet[@]}" "${CHANGES[@]}" "$TARBALL" "$IMAGE" >/dev/null
  [[ "$(current_hash "$cli")" == "$HASH" ]] || { log "$cli: import did not produce the expected image"; exit 1; }
}

case "$TARGET" in
  docker) import_into docker ;;
  podman) import_into podman ;;
  all) import_into docker; import_into podman ;;
  *) log "unknown target $TARGET (docker|podman|all)"; exit 2 ;;
esac
