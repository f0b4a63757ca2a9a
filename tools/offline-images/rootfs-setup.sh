#!/bin/sh
# Runs inside the mmdebstrap chroot (customize hook) of the shared offline rootfs.
# The entry points and configuration files were uploaded to /tmp/offline-images/.
set -eu
src=/tmp/offline-images
PG_MAJOR=15

# --- entry points (same paths as in the official images)
install -m 0755 "$src/redis-entrypoint.sh" /entrypoint.sh
install -m 0755 "$src/nginx-entrypoint.sh" /docker-entrypoint.sh
install -m 0755 "$src/postgres-entrypoint.sh" /usr/local/bin/docker-entrypoint.sh

# --- redis: data directory
mkdir -p /data

# --- postgres: no Debian cluster; listen on all addresses; directories
if command -v pg_dropcluster >/dev/null 2>&1 && [ -d "/etc/postgresql/$PG_MAJOR/main" ]; then
  pg_dropcluster "$PG_MAJOR" main || true
fi
rm -rf "/etc/postgresql/$PG_MAJOR/main" "/var/lib/postgresql/$PG_MAJOR/main"
sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" \
  "/usr/share/postgresql/$PG_MAJOR/postgresql.conf.sample"
grep -F "listen_addresses = '*'" "/usr/share/postgresql/$PG_MAJOR/postgresql.conf.sample" >/dev/null
mkdir -p /docker-entrypoint-initdb.d /var/run/postgresql /var/lib/postgresql/data
chown postgres:postgres /var/run/postgresql /var/lib/postgresql/data
chmod 03775 /var/run/postgresql
chmod 00700 /var/lib/postgresql/data

# --- nginx: the official layout (nginx.conf includes conf.d/*.conf), logs to stdout/stderr
getent group nginx >/dev/null || groupadd --system nginx
getent passwd nginx >/dev/null || useradd --system --gid nginx --no-create-home \
  --home-dir /nonexistent --shell /usr/sbin/nologin nginx
install -m 0644 "$src/nginx.conf" /etc/nginx/nginx.conf
mkdir -p /etc/nginx/conf.d /docker-entrypoint.d /usr/share/nginx/html /var/cache/nginx
install -m 0644 "$src/nginx-default.conf" /etc/nginx/conf.d/default.conf
rm -f /etc/nginx/sites-enabled/default
cat > /usr/share/nginx/html/index.html <<'HTML'
<!DOCTYPE html>
<html><head><title>Welcome to nginx!</title></head>
<body><h1>Welcome to nginx!</h1></body></html>
HTML
mkdir -p /var/log/nginx
ln -sf /dev/stdout /var/log/nginx/access.log
ln -sf /dev/stderr /var/log/nginx/error.log

# --- NocoBase stand-in: program directory and the official image's layout
mkdir -p /opt/standin /app/nocobase/storage

# --- leaner image
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb
rm -rf "$src"
