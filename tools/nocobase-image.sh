#!/usr/bin/env bash
# Build a REAL NocoBase image from the npm registry, for machines that cannot pull from any
# Docker registry (CI). The NocoBase version is pinned in ONE place: tools/nocobase-image/VERSION.
#
#   nocobase-multienv/nocobase:<version>-<hash>  the image of this recipe
#   nocobase-multienv/nocobase:<version>         moving tag, e.g. :2.2.15
#   nocobase-multienv/nocobase:offline           moving tag, named by inventories/offline
#
# Recipe (the official image's builder, without nginx):
#   app     `npx create-nocobase-app@<version> app --skip-dev-dependencies -d postgres
#           -e APP_ENV=production`, resolutions xlsx 0.18.5, `yarn install --production`
#           (yarn 1, `npm pack`ed once into the cache) -- tools/nocobase-image/build-app.sh.
#           The installed tree is cached as a tarball keyed by version + build-app.sh + yarn
#           + node major, so a change of the root filesystem or the entry point does not
#           redo npm.
#   rootfs  Debian bookworm by mmdebstrap --variant=apt (ca-certificates, postgresql-client,
#           dumb-init, curl, procps, tzdata), cached as a tarball and imported once as
#           nocobase-multienv/nocobase-rootfs:<hash>.
#   image   rootfs + this machine's node (major >= 20) as /usr/local/bin/node + yarn 1 +
#           the app in /app/nocobase (storage: /app/nocobase/storage) + the entry point
#           tools/nocobase-image/docker-entrypoint.sh, committed with
#           ENTRYPOINT dumb-init, CMD yarn start --quickstart, WORKDIR /app/nocobase,
#           ENV APP_ENV=production APP_HOST=0.0.0.0 APP_PORT=13000 NOCOBASE_RUNNING_IN_DOCKER=true,
#           EXPOSE 13000.
# The hash (first 12 hex of a sha256) covers this script, tools/nocobase-image/*, the node
# version and the machine architecture. An image whose hash tag exists is up to date and
# is not rebuilt (only the moving tag is set again).
#
# usage: tools/nocobase-image.sh [--force] [--print-tags]
#   --force       rebuild the app tree, the root filesystem and the image even if up to date
#   --print-tags  only print "image:hash-tag", build nothing
#
# Environment:
#   NOCOBASE_IMAGE_PREFIX       image name prefix (default nocobase-multienv)
#   NOCOBASE_IMAGE_CACHE        tarball cache dir (default ${XDG_CACHE_HOME:-/var/cache}/nocobase-multienv)
#   NOCOBASE_IMAGE_MIRROR       mmdebstrap MIRROR argument (URL or sources file); default:
#                               $OFFLINE_IMAGES_MIRROR, else this machine's apt sources for
#                               bookworm, else mmdebstrap's default
#   NOCOBASE_IMAGE_NPM_TIMEOUT  seconds allowed for each npm/yarn step (default 2400)
#   NOCOBASE_IMAGE_LOCK_WAIT    seconds to wait for another run's lock (default 3600)
set -euo pipefail

T0=$(date +%s.%N)
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$ROOT/tools/nocobase-image.sh"
RECIPE_DIR="$ROOT/tools/nocobase-image"
NOCOBASE_VERSION="$(tr -d ' \t\r\n' < "$RECIPE_DIR/VERSION")"
YARN_VERSION=1.22.22
PREFIX="${NOCOBASE_IMAGE_PREFIX:-nocobase-multienv}"
REPO="$PREFIX/nocobase"
ROOTFS_REPO="$PREFIX/nocobase-rootfs"
CACHE="${NOCOBASE_IMAGE_CACHE:-${XDG_CACHE_HOME:-/var/cache}/nocobase-multienv}"
LOCK_WAIT="${NOCOBASE_IMAGE_LOCK_WAIT:-3600}"
SUITE=bookworm
PACKAGES=(ca-certificates postgresql-client dumb-init curl procps tzdata)
DEFAULT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

LOG_NAME=nocobase-image
# shellcheck source=tools/lib/images.sh
. "$ROOT/tools/lib/images.sh"

force=0
print_tags=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --print-tags) print_tags=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $arg" ;;
  esac
done

[[ "$NOCOBASE_VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+([-.][0-9A-Za-z.]+)?$ ]] \
  || die "bad version in $RECIPE_DIR/VERSION: '$NOCOBASE_VERSION'"

# --- the host's node goes into the image: NocoBase 2.x needs node 20+
command -v node >/dev/null 2>&1 || die "node not found: install Node.js 20 or newer (its binary is copied into the image)"
NODE_BIN="$(readlink -f "$(command -v node)")"
NODE_VERSION="$(node -p 'process.versions.node')"
NODE_MAJOR="${NODE_VERSION%%.*}"
[ "$NODE_MAJOR" -ge 20 ] 2>/dev/null \
  || die "node $NODE_VERSION at $NODE_BIN is too old: NocoBase $NOCOBASE_VERSION needs node 20 or newer (Debian 12's nodejs is 18; install Node.js 20+)"
ARCH="$(uname -m)"

recipe_files=("$SELF" "$ROOT/tools/lib/images.sh")
while IFS= read -r f; do recipe_files+=("$f"); done \
  < <(find "$RECIPE_DIR" -maxdepth 1 -type f | LC_ALL=C sort)
IMAGE_HASH="$( { hash_files "${recipe_files[@]}"; echo "node=$NODE_VERSION arch=$ARCH"; } | sha256sum | cut -c1-12)"
APP_HASH="$( { hash_files "$RECIPE_DIR/VERSION" "$RECIPE_DIR/build-app.sh"; echo "yarn=$YARN_VERSION node-major=$NODE_MAJOR arch=$ARCH"; } | sha256sum | cut -c1-12)"
ROOTFS_HASH="$(printf '%s\n' "$SUITE" "${PACKAGES[@]}" | sha256sum | cut -c1-12)"
HASH_TAG="$NOCOBASE_VERSION-$IMAGE_HASH"
IMAGE="$REPO:$HASH_TAG"
ROOTFS_IMAGE="$ROOTFS_REPO:$ROOTFS_HASH"

if [ "$print_tags" = 1 ]; then
  echo "$IMAGE"
  exit 0
fi

# --- tools
if ! timeout 20 docker info >/dev/null 2>&1; then
  "$ROOT/tools/docker-engine.sh"
fi
# The moving tags: the version, and :offline, which inventories/offline names.
tag_moving() {
  docker tag "$IMAGE" "$REPO:$NOCOBASE_VERSION"
  docker tag "$IMAGE" "$REPO:offline"
}

# --- one build at a time on this machine (a second run waits, then finds the image built)
mkdir -p "$CACHE"
exec 9>"$CACHE/.nocobase-image.lock"
if command -v flock >/dev/null 2>&1; then
  flock -w "$LOCK_WAIT" 9 || die "another nocobase-image.sh run holds $CACHE/.nocobase-image.lock for too long"
fi

if [ "$force" = 0 ] && image_exists "$IMAGE"; then
  tag_moving
  log "$IMAGE (:$NOCOBASE_VERSION, :offline) up to date in $(elapsed "$T0")"
  exit 0
fi
log "building $IMAGE (node $NODE_VERSION from $NODE_BIN)"

# --- yarn 1: one npm pack, used to install the app here and copied into the image
YARN_TGZ="$CACHE/yarn-$YARN_VERSION.tgz"
if [ ! -s "$YARN_TGZ" ]; then
  command -v npm >/dev/null 2>&1 || die "npm not found: install npm (it comes with Node.js 20+)"
  t=$(date +%s.%N)
  tmp="$(mktemp -d)"
  TMP_FILES+=("$tmp")
  (cd "$tmp" && timeout 600 npm pack --silent "yarn@$YARN_VERSION" </dev/null >/dev/null) \
    || die "npm pack yarn@$YARN_VERSION failed"
  mv "$tmp/yarn-$YARN_VERSION.tgz" "$YARN_TGZ"
  log "fetched yarn $YARN_VERSION in $(elapsed "$t")"
fi
YARN_DIR="$(mktemp -d)"
TMP_FILES+=("$YARN_DIR")
tar -xzf "$YARN_TGZ" -C "$YARN_DIR"   # -> $YARN_DIR/package/bin/yarn.js
[ -f "$YARN_DIR/package/bin/yarn.js" ] || die "$YARN_TGZ has no package/bin/yarn.js"

# --- the app tree (tarball with paths app/nocobase/...)
APP_TARBALL="$CACHE/nocobase-app-$NOCOBASE_VERSION-$APP_HASH.tar.gz"
if [ "$force" = 1 ] || [ ! -s "$APP_TARBALL" ]; then
  command -v npx >/dev/null 2>&1 || die "npx not found: install npm (it comes with Node.js 20+)"
  t=$(date +%s.%N)
  build="$(mktemp -d "${TMPDIR:-/tmp}/nocobase-image.XXXXXX")"
  TMP_FILES+=("$build")
  log "building the app tree of NocoBase $NOCOBASE_VERSION from the npm registry (takes minutes)"
  bash "$RECIPE_DIR/build-app.sh" "$NOCOBASE_VERSION" "$build" "$YARN_DIR/package/bin/yarn.js"
  log "app tree built in $(elapsed "$t") ($(du -sh "$build/app" | cut -f1))"
  t=$(date +%s.%N)
  mkdir -p "$build/root/app"
  mv "$build/app" "$build/root/app/nocobase"
  tar -C "$build/root" --numeric-owner --owner=0 --group=0 -cf - app \
    | gzip -1 > "$APP_TARBALL.tmp$$"
  TMP_FILES+=("$APP_TARBALL.tmp$$")
  mv "$APP_TARBALL.tmp$$" "$APP_TARBALL"
  rm -rf "$build"
  log "app tree cached as $APP_TARBALL in $(elapsed "$t") ($(du -h "$APP_TARBALL" | cut -f1))"
else
  log "using cached $APP_TARBALL"
fi
find "$CACHE" -maxdepth 1 -name 'nocobase-app-*.tar.gz' ! -name "${APP_TARBALL##*/}" -delete 2>/dev/null || true

# images that a rebuild (--force) replaces under the same tag: removed once untagged
image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }
REPLACED_IDS=("$(image_id "$IMAGE")" "$(image_id "$ROOTFS_IMAGE")")
remove_replaced() {
  local id
  for id in "${REPLACED_IDS[@]}"; do
    [ -n "$id" ] || continue
    [ -z "$(docker image inspect -f '{{join .RepoTags " "}}' "$id" 2>/dev/null)" ] || continue
    docker rmi "$id" >/dev/null 2>&1 || true
  done
}

# --- the root filesystem (tarball cached, imported once as $ROOTFS_IMAGE)
build_rootfs_tarball() {
  # shellcheck disable=SC2016  # "$1" is expanded by mmdebstrap's hooks
  mmdebstrap_rootfs "$1" "${NOCOBASE_IMAGE_MIRROR:-${OFFLINE_IMAGES_MIRROR:-}}" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb'
}

if [ "$force" = 1 ] || ! image_exists "$ROOTFS_IMAGE"; then
  tarball="$CACHE/nocobase-rootfs-$ROOTFS_HASH.tar"
  if [ "$force" = 1 ] || [ ! -s "$tarball" ]; then
    build_rootfs_tarball "$tarball"
  else
    log "using cached $tarball"
  fi
  find "$CACHE" -maxdepth 1 -name 'nocobase-rootfs-*.tar' ! -name "${tarball##*/}" -delete 2>/dev/null || true
  t=$(date +%s.%N)
  docker import \
    --change "ENV PATH=$DEFAULT_PATH" \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    "$tarball" "$ROOTFS_IMAGE" >/dev/null
  log "imported $ROOTFS_IMAGE in $(elapsed "$t")"
  prune_old_tags "$ROOTFS_REPO" '^[0-9a-f]{12}$' "$ROOTFS_HASH"
fi

# --- the image: a container of the rootfs, node + yarn + entry point + app copied in, committed
t=$(date +%s.%N)
staging="$(mktemp -d)"
TMP_FILES+=("$staging")
mkdir -p "$staging/usr/local/bin" "$staging/usr/local/lib"
cp "$NODE_BIN" "$staging/usr/local/bin/node"
cp -a "$YARN_DIR/package" "$staging/usr/local/lib/yarn"
ln -s ../lib/yarn/bin/yarn.js "$staging/usr/local/bin/yarn"
ln -s ../lib/yarn/bin/yarn.js "$staging/usr/local/bin/yarnpkg"
install -m 0755 "$RECIPE_DIR/docker-entrypoint.sh" "$staging/usr/local/bin/docker-entrypoint.sh"
chmod -R a+rX "$staging"
cname="nocobase-multienv-build-nocobase-$$"
BUILD_CONTAINERS+=("$cname")
docker rm -f "$cname" >/dev/null 2>&1 || true
docker create --name "$cname" "$ROOTFS_IMAGE" >/dev/null
tar -C "$staging" --numeric-owner --owner=0 --group=0 -cf - . | docker cp - "$cname:/"
gzip -dc "$APP_TARBALL" | docker cp - "$cname:/"
log "files copied into the build container in $(elapsed "$t")"
t=$(date +%s.%N)
docker commit \
  --change "ENV PATH=$DEFAULT_PATH" \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV APP_ENV=production' \
  --change 'ENV APP_HOST=0.0.0.0' \
  --change 'ENV APP_PORT=13000' \
  --change "ENV NOCOBASE_VERSION=$NOCOBASE_VERSION" \
  --change 'ENV NOCOBASE_RUNNING_IN_DOCKER=true' \
  --change 'WORKDIR /app/nocobase' \
  --change 'EXPOSE 13000' \
  --change 'ENTRYPOINT ["/usr/bin/dumb-init", "--", "/usr/local/bin/docker-entrypoint.sh"]' \
  --change 'CMD ["yarn", "start", "--quickstart"]' \
  --change "LABEL org.nocobase-multienv.recipe=$IMAGE_HASH" \
  --change "LABEL org.nocobase-multienv.nocobase-version=$NOCOBASE_VERSION" \
  "$cname" "$IMAGE" >/dev/null
docker rm -f "$cname" >/dev/null
tag_moving
prune_old_tags "$REPO" "^${NOCOBASE_VERSION//./\\.}-[0-9a-f]{12}\$" "$HASH_TAG"
remove_replaced
log "committed $IMAGE (:$NOCOBASE_VERSION, :offline) in $(elapsed "$t"), $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
log "done in $(elapsed "$T0")"
