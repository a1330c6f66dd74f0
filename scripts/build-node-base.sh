#!/usr/bin/env bash
# Makes a minimal Node base image locally, for machines that reach no container registry: the
# host's `node` binary and the shared libraries it links (found with ldd: glibc, libstdc++,
# libgcc_s, ...) on Debian's busybox-static rootfs (the same rootfs scripts/build-test-image.sh
# builds). `docker import` only, so no registry and no network inside build containers.
#
# Prints the image reference on stdout (runt/node-base:<hash>); logs go to stderr.
# Usage: scripts/build-node-base.sh
# Env:   DOCKER_HOST (default unix:///run/runt-docker/docker.sock when that socket exists)
#        NODE_BIN (default: the `node` on PATH), BUSYBOX (default /bin/busybox)
#
# Cached by content hash: the tag is a hash of node, its libraries, busybox and this recipe, so
# the image is built once per host Node version and reused afterwards.
set -euo pipefail

RECIPE_VERSION=1
REPO=runt/node-base
LABEL=runt.node-base.hash
NODE_BIN="$(readlink -f "${NODE_BIN:-$(command -v node)}")"
BUSYBOX="${BUSYBOX:-/bin/busybox}"

if [[ -z "${DOCKER_HOST:-}" && -S /run/runt-docker/docker.sock ]]; then
  export DOCKER_HOST=unix:///run/runt-docker/docker.sock
fi

log() { printf '[build-node-base] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ -x "$NODE_BIN" ]] || die "no node binary at $NODE_BIN"
[[ -x "$BUSYBOX" ]] || die "missing $BUSYBOX (apt-get install busybox-static)"
command -v ldd >/dev/null || die "ldd is missing (apt-get install libc-bin)"

# Every shared object node loads, as the path it is loaded from (ldd: "name => path (addr)" or
# "/lib64/ld-linux-x86-64.so.2 (addr)"); linux-vdso has no file.
mapfile -t LIBS < <(ldd "$NODE_BIN" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
[[ ${#LIBS[@]} -gt 0 ]] || die "ldd found no libraries for $NODE_BIN (a static node needs no base; use any image)"

HASH="$( {
  echo "recipe $RECIPE_VERSION"
  sha256sum "$NODE_BIN" "$BUSYBOX" | cut -d' ' -f1
  for lib in "${LIBS[@]}"; do echo "$lib $(sha256sum "$(readlink -f "$lib")" | cut -d' ' -f1)"; done
} | sha256sum | cut -c1-16)"
IMAGE="$REPO:$HASH"

if [[ "$(docker image inspect --format "{{ index .Config.Labels \"${LABEL}\" }}" "$IMAGE" 2>/dev/null || true)" == "$HASH" ]]; then
  log "$IMAGE up to date ($("$NODE_BIN" --version))"
  echo "$IMAGE"
  exit 0
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/rootfs"
mkdir -p "$ROOT"/{bin,sbin,etc,tmp,root,usr/bin,usr/sbin,usr/local/bin,proc,sys,dev}
chmod 1777 "$ROOT/tmp"
cp "$BUSYBOX" "$ROOT/bin/busybox"
for applet in $("$BUSYBOX" --list); do
  [[ "$applet" == busybox ]] && continue
  ln -sf busybox "$ROOT/bin/$applet"
done
cp "$NODE_BIN" "$ROOT/usr/local/bin/node"
for lib in "${LIBS[@]}"; do
  mkdir -p "$ROOT$(dirname "$lib")"
  cp -L "$lib" "$ROOT$lib"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ROOT/etc/group"
printf 'hosts: files dns\n' >"$ROOT/etc/nsswitch.conf"
# Node's own CA bundle covers TLS; the system one is added when present (Postgres with sslrootcert=system).
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
  mkdir -p "$ROOT/etc/ssl/certs" && cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/"
fi

"$ROOT/lib64/ld-linux-x86-64.so.2" --library-path "$ROOT/lib/x86_64-linux-gnu" "$ROOT/usr/local/bin/node" -e 0 2>/dev/null \
  || log "note: could not smoke-test node against the copied libraries on the host; the image check below decides"

log "importing $IMAGE (node $("$NODE_BIN" --version), ${#LIBS[@]} libraries)"
tar --numeric-owner --owner=0 --group=0 -C "$ROOT" -cf "$WORK/rootfs.tar" .
docker import \
  --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin' \
  --change 'WORKDIR /' \
  --change 'CMD ["node"]' \
  --change "LABEL ${LABEL}=${HASH}" \
  "$WORK/rootfs.tar" "$IMAGE" >/dev/null
docker run --rm --network none "$IMAGE" node -e 'process.stdout.write(process.version)' >/dev/null \
  || die "node does not start in $IMAGE"
echo "$IMAGE"
