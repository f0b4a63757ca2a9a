#!/bin/sh
# /entrypoint.sh of nocobase-multienv/redis: the interface of redis/redis-stack-server.
#   - data directory $REDIS_DATA_DIR (default /data), e.g. appendonly files;
#   - $REDIS_ARGS appended to the redis-server command line (word-split, not globbed),
#     e.g. REDIS_ARGS="--requirepass secret --appendonly yes";
#   - listens on 0.0.0.0:6379 with protected-mode off, in the foreground;
#   - /redis-stack.conf is used as configuration file when it exists.
# Arguments starting with "-" are appended to redis-server's; any other
# command (e.g. `redis-cli ...`) is run as is.
set -e
set -f

if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
  exec "$@"
fi

: "${REDIS_DATA_DIR:=/data}"
mkdir -p "$REDIS_DATA_DIR"

CONFFILE=""
if [ -f /redis-stack.conf ]; then
  CONFFILE=/redis-stack.conf
fi

# shellcheck disable=SC2086  # word splitting of CONFFILE and REDIS_ARGS is intended
exec redis-server $CONFFILE \
  --dir "$REDIS_DATA_DIR" \
  --protected-mode no \
  --daemonize no \
  ${REDIS_ARGS:-} \
  "$@"
