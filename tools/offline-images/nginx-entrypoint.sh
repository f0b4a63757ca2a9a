#!/bin/sh
# /docker-entrypoint.sh of nocobase-multienv/nginx: the interface of the official nginx image.
# When the command is nginx, executable /docker-entrypoint.d/*.sh scripts run first
# (NGINX_ENTRYPOINT_QUIET_LOGS=1 silences this entry point), then the command is exec'd.
set -e

entrypoint_log() {
  if [ -z "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ]; then
    echo "$@"
  fi
}

if [ "$1" = "nginx" ] || [ "$1" = "nginx-debug" ]; then
  for f in /docker-entrypoint.d/*.sh; do
    [ -e "$f" ] || continue
    if [ -x "$f" ]; then
      entrypoint_log "$0: Launching $f"
      "$f"
    else
      entrypoint_log "$0: Ignoring $f, not executable"
    fi
  done
  entrypoint_log "$0: Configuration complete; ready for start up"
fi

exec "$@"
