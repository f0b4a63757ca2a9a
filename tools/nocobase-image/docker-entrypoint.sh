#!/bin/sh
# /usr/local/bin/docker-entrypoint.sh of nocobase-multienv/nocobase (run by dumb-init; the
# image's CMD is `yarn start --quickstart`). The official nocobase/nocobase image's
# interface, without its nginx (the app itself serves API and client on $APP_PORT, 13000):
#   DB_DIALECT DB_HOST DB_PORT DB_DATABASE DB_USER DB_PASSWORD DB_SCHEMA DB_TABLE_PREFIX ...
#   APP_KEY APP_AES_SECRET_KEY INIT_ROOT_EMAIL INIT_ROOT_USERNAME INIT_ROOT_PASSWORD
#   INIT_ROOT_NICKNAME APPEND_PRESET_BUILT_IN_PLUGINS TZ ...   read by NocoBase itself
#   (the environment wins over /app/nocobase/.env, which holds only non-secret defaults)
#   /app/nocobase/storage        the volume (uploads, plugins, logs, ...)
#   storage/scripts/*.sh         run (sh) before the app starts, like the official image
# Additions:
#   VAR_FILE                     for APP_KEY, APP_AES_SECRET_KEY, DB_PASSWORD,
#                                INIT_ROOT_PASSWORD: read the value from a file
#   APP_KEY unset or empty       NocoBase would sign tokens with its public default
#                                'test-jwt-secret'; instead a random key is generated
#                                once into storage/.app-key and used from then on
# A first argument that starts with "-" is appended to `yarn start` (e.g. `--quickstart`).
set -e

cd /app/nocobase

file_env() {  # usage: file_env VAR -- VAR_FILE names a file holding the value
  eval "_val=\${$1:-}; _file=\${$1_FILE:-}"
  if [ -n "$_val" ] && [ -n "$_file" ]; then
    echo "docker-entrypoint: both $1 and $1_FILE are set (but are exclusive)" >&2
    exit 1
  fi
  if [ -n "$_file" ]; then
    _val="$(cat "$_file")"
    export "$1=$_val"
  fi
  unset "$1_FILE" _val _file
}
for var in APP_KEY APP_AES_SECRET_KEY DB_PASSWORD INIT_ROOT_PASSWORD; do
  file_env "$var"
done

case "${STORAGE_PATH:-}" in
  "") storage=/app/nocobase/storage ;;
  /*) storage="$STORAGE_PATH" ;;
  *) storage="/app/nocobase/$STORAGE_PATH" ;;
esac
mkdir -p "$storage/uploads" "$storage/plugins" "$storage/db" "$storage/logs" "$storage/tmp"

if [ -z "${APP_KEY:-}" ]; then
  if [ ! -s "$storage/.app-key" ]; then
    (umask 077 && node -e 'process.stdout.write(require("crypto").randomBytes(32).toString("hex"))' \
      > "$storage/.app-key")
    echo "docker-entrypoint: APP_KEY is not set: generated a random one into $storage/.app-key" >&2
  fi
  APP_KEY="$(cat "$storage/.app-key")"
  export APP_KEY
fi

if [ -d "$storage/scripts" ]; then
  for f in "$storage"/scripts/*.sh; do
    [ -f "$f" ] || continue
    echo "docker-entrypoint: running $f" >&2
    sh "$f"
  done
fi

if [ "${1#-}" != "$1" ]; then
  set -- yarn start "$@"
fi
exec "$@"
