#!/usr/bin/env bash
# Make sure a Docker engine is installed and running on this (Debian) machine.
#
# Idempotent: installs Debian's docker.io when dockerd is missing, starts dockerd
# in the background when `docker info` fails, then waits (bounded) until the
# engine answers. Safe to run repeatedly, also when dockerd is already up.
#
# Environment:
#   DOCKER_ENGINE_WAIT   seconds to wait for the engine (default 60)
#   DOCKERD_LOG          dockerd log file (default /var/log/dockerd-nocobase.log)
#   DOCKERD_PIDFILE      dockerd pid file (default /var/run/dockerd-nocobase.pid)
#   DOCKERD_ARGS         extra arguments for dockerd (word-split)
set -euo pipefail

WAIT="${DOCKER_ENGINE_WAIT:-60}"
LOG="${DOCKERD_LOG:-/var/log/dockerd-nocobase.log}"
PIDFILE="${DOCKERD_PIDFILE:-/var/run/dockerd-nocobase.pid}"

log() { printf 'docker-engine: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
  else die "need root to run: $*"
  fi
}

engine_ok() { timeout 20 docker info >/dev/null 2>&1; }

# 1. Install the engine when missing.
if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || die "dockerd missing and apt-get not available"
  log "installing docker.io from Debian packages"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q \
    || die "apt-get update failed"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      docker.io iptables ca-certificates \
    || die "apt-get install docker.io failed"
  hash -r
  command -v dockerd >/dev/null 2>&1 || die "dockerd still missing after installing docker.io"
fi

# 2. Already running?
if engine_ok; then
  log "engine is up ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
  exit 0
fi

# 3. One starter at a time (parallel runs wait here), then check again.
if [ "$(id -u)" -eq 0 ] && command -v flock >/dev/null 2>&1; then
  exec 9>/var/lock/nocobase-docker-engine.lock
  flock -w $(( WAIT + 30 )) 9 || die "could not get /var/lock/nocobase-docker-engine.lock"
  if engine_ok; then
    log "engine is up ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
    exit 0
  fi
fi

# 4. Start dockerd unless one we started earlier is still alive (e.g. still booting).
is_dockerd() {  # usage: is_dockerd PID
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null \
    && tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q dockerd
}
running_pid=""
for f in "$PIDFILE" /var/run/docker.pid; do
  pid="$(cat "$f" 2>/dev/null || true)"
  if is_dockerd "$pid"; then running_pid="$pid"; break; fi
done

if [ -n "$running_pid" ]; then
  log "dockerd (pid $running_pid) is running but not answering yet; waiting"
else
  # Prefer systemd when it is really the init system.
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 \
     && as_root systemctl start docker >/dev/null 2>&1; then
    log "started docker.service with systemctl"
  else
    as_root mkdir -p "$(dirname "$LOG")" "$(dirname "$PIDFILE")"
    log "starting dockerd in the background (log: $LOG)"
    # shellcheck disable=SC2086
    as_root nohup dockerd ${DOCKERD_ARGS:-} >>"$LOG" 2>&1 </dev/null 9>&- &
    running_pid=$!
    echo "$running_pid" | as_root tee "$PIDFILE" >/dev/null
    disown || true
  fi
fi

# 5. Bounded wait for the engine.
deadline=$(( $(date +%s) + WAIT ))
while :; do
  if engine_ok; then
    log "engine is up ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
    exit 0
  fi
  if [ -n "$running_pid" ] && ! kill -0 "$running_pid" 2>/dev/null; then
    log "last lines of $LOG:"
    tail -n 30 "$LOG" >&2 2>/dev/null || true
    die "dockerd (pid $running_pid) exited; see $LOG"
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    log "last lines of $LOG:"
    tail -n 30 "$LOG" >&2 2>/dev/null || true
    die "Docker engine did not answer 'docker info' within ${WAIT}s"
  fi
  sleep 1
done
