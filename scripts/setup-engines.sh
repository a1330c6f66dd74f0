#!/usr/bin/env bash
# Sets up the real container engines runt's tests use, on a Debian machine, as root, without
# systemd, and without touching any engine the machine already runs:
#   - installs docker.io podman runc busybox-static containerd netavark docker-compose haproxy
#     when missing (the last two: the deploy tests check deploy/compose.yaml, run deploy/haproxy.cfg)
#   - merges runc + no default ulimits into /etc/containers/containers.conf (crun and the default
#     rlimits fail on hybrid-cgroup kernels)
#   - runs a private containerd + dockerd on /run/runt-docker/ (own data-root, no networking setup)
#   - imports the local test image runt-test/busybox:latest into Docker and Podman
# Idempotent and quick when everything already runs. Logs go to stderr; stdout carries only the
# env lines tests need, so `eval "$(scripts/setup-engines.sh)"` works.
set -euo pipefail

RUN_DIR="${RUNT_DOCKER_RUN_DIR:-/run/runt-docker}"
DATA_DIR="${RUNT_DOCKER_DATA_DIR:-/var/lib/runt-docker}"
LOG_DIR="${RUNT_DOCKER_LOG_DIR:-/var/log/runt-docker}"
DOCKER_SOCK="$RUN_DIR/docker.sock"
CONTAINERD_SOCK="$RUN_DIR/containerd.sock"
CONTAINERS_CONF=/etc/containers/containers.conf
# netavark: podman's network stack (only recommended, and without it apt may pick CNI plugins).
PACKAGES=(docker.io podman runc busybox-static containerd netavark docker-compose haproxy)
WAIT_SECONDS="${RUNT_ENGINE_WAIT_SECONDS:-60}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

log() { printf '[setup-engines] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ "$(id -u)" == 0 ]] || die "run as root (it installs packages and starts dockerd)"

# --- 1. packages --------------------------------------------------------------------------
install_packages() {
  local missing=() pkg
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "installing ${missing[*]}"
  # Keep apt from trying to start services (no systemd here; we start our own daemons).
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
  fi
  local apt=(apt-get -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold
    install --no-install-recommends "${missing[@]}")
  export DEBIAN_FRONTEND=noninteractive
  if ! "${apt[@]}" >&2; then
    log "install failed; running apt-get update and retrying"
    apt-get -q update >&2
    "${apt[@]}" >&2
  fi
  [[ $created_policy == 1 ]] && rm -f "$policy"
  return 0
}

# --- 2. podman configuration ----------------------------------------------------------------
# conf_set FILE SECTION KEY VALUE: sets KEY = VALUE inside [SECTION], keeping everything else.
conf_set() {
  local file="$1" section="$2" key="$3" value="$4" tmp
  tmp="$(mktemp)"
  # Pass 1 notes whether the key is set (uncommented) in the section; pass 2 rewrites the file:
  # replace the key's line, or add it right under the header, or append the section.
  awk -v section="[$section]" -v key="$key" -v line="$key = $value" '
    function header(s) { s = $0; gsub(/[[:space:]]/, "", s); return s }
    /^[[:space:]]*\[/ { in_section = (header() == section); if (FNR == NR) seen = seen || in_section; else if (in_section && !has) { print; print line; next } }
    in_section && $0 ~ "^[[:space:]]*" key "[[:space:]]*=" { if (FNR == NR) has = 1; else { print line; next } }
    FNR != NR { print }
    END { if (!seen) { print ""; print section; print line } }
  ' "$file" "$file" >"$tmp"
  if cmp -s "$tmp" "$file"; then rm -f "$tmp"; else cat "$tmp" >"$file"; rm -f "$tmp"; log "set [$section] $key in $file"; fi
}

configure_podman() {
  mkdir -p "$(dirname "$CONTAINERS_CONF")"
  [[ -e "$CONTAINERS_CONF" ]] || : >"$CONTAINERS_CONF"
  conf_set "$CONTAINERS_CONF" engine runtime '"runc"'
  conf_set "$CONTAINERS_CONF" containers default_ulimits '[]'
}

# --- 3. private containerd + dockerd --------------------------------------------------------
containerd_up() {
  [[ -S "$CONTAINERD_SOCK" ]] && ctr --address "$CONTAINERD_SOCK" --connect-timeout 2s version >/dev/null 2>&1
}
dockerd_up() { [[ -S "$DOCKER_SOCK" ]] && docker -H "unix://$DOCKER_SOCK" version >/dev/null 2>&1; }

wait_for() { # description command...
  local what="$1"; shift
  local deadline=$((SECONDS + WAIT_SECONDS))
  until "$@"; do
    ((SECONDS < deadline)) || die "$what did not come up within ${WAIT_SECONDS}s (logs: $LOG_DIR)"
    sleep 0.2
  done
}

start_containerd() {
  containerd_up && return 0
  log "starting containerd on $CONTAINERD_SOCK"
  cat >"$DATA_DIR/containerd.toml" <<EOF
version = 2
root = "$DATA_DIR/containerd"
state = "$RUN_DIR/containerd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
EOF
  rm -f "$CONTAINERD_SOCK" "$CONTAINERD_SOCK.ttrpc"
  setsid nohup containerd --config "$DATA_DIR/containerd.toml" \
    </dev/null >>"$LOG_DIR/containerd.log" 2>&1 &
  echo $! >"$RUN_DIR/containerd.pid"
  wait_for containerd containerd_up
}

start_dockerd() {
  dockerd_up && return 0
  log "starting dockerd on $DOCKER_SOCK"
  if [[ -f "$RUN_DIR/dockerd.pid" ]] && kill -0 "$(cat "$RUN_DIR/dockerd.pid")" 2>/dev/null; then
    log "dockerd (pid $(cat "$RUN_DIR/dockerd.pid")) runs but does not answer yet; waiting"
  else
    rm -f "$DOCKER_SOCK" "$RUN_DIR/dockerd.pid"
    # Network sandboxes of a dead dockerd are all stale; dockerd would remove them one by one at
    # start (~80 ms each, minutes after many test runs). This private engine has no user networks,
    # so drop its network store and let dockerd recreate the defaults.
    rm -f "$DATA_DIR/data/network/files/local-kv.db"
    setsid nohup dockerd \
      --host "unix://$DOCKER_SOCK" \
      --containerd "$CONTAINERD_SOCK" \
      --data-root "$DATA_DIR/data" \
      --exec-root "$RUN_DIR/exec" \
      --pidfile "$RUN_DIR/dockerd.pid" \
      --iptables=false --ip6tables=false --ip-masq=false --bridge=none \
      </dev/null >>"$LOG_DIR/dockerd.log" 2>&1 &
  fi
  wait_for dockerd dockerd_up
}

main() {
  install_packages
  configure_podman
  mkdir -p "$RUN_DIR" "$DATA_DIR" "$LOG_DIR"
  start_containerd
  start_dockerd
  DOCKER_HOST="unix://$DOCKER_SOCK" "$HERE/build-test-image.sh" all
  podman version --format '{{.Client.Version}}' >/dev/null || die "podman does not run"
  log "ready: docker $(docker -H "unix://$DOCKER_SOCK" version --format '{{.Server.Version}}'), podman $(podman version --format '{{.Client.Version}}')"
  echo "export DOCKER_HOST=unix://$DOCKER_SOCK"
}

main "$@"
