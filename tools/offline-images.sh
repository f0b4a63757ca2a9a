#!/usr/bin/env bash
# Build local images that keep the official images' interfaces, for machines that
# cannot reach any Docker registry (CI). Everything comes from Debian bookworm packages:
# ONE mmdebstrap root filesystem holds redis, PostgreSQL 15, nginx and Python 3 with
# python3-redis; it is imported once, and every image is a `docker commit --change`
# of it with its own entry point (the stand-in also gets its program files).
#
#   nocobase-multienv/redis             interface of redis/redis-stack-server
#   nocobase-multienv/postgres          interface of the official postgres image
#   nocobase-multienv/nginx             interface of the official nginx image
#   nocobase-multienv/nocobase-standin  the NocoBase stand-in (tests/standin/server.py)
#   nocobase-multienv/python            python3 with redis-py: the worker agent's base image
#
# Each image is tagged :offline and :<first 12 hex of sha256 over its recipe> (this
# script, tools/offline-images/*, and for the stand-in its program files). An image
# whose hash tag exists is "up to date" and is not rebuilt; the root filesystem is only
# built when an image needs it, and is cached as a tarball in $OFFLINE_IMAGES_CACHE.
#
# usage: tools/offline-images.sh [--force] [--print-tags] [redis|postgres|nginx|standin|python ...]
#   (no image names: all five)
#   --force       rebuild the selected images (and the root filesystem) even if up to date
#   --print-tags  only print "image:hash-tag" for the selected images, build nothing
#
# Environment:
#   OFFLINE_IMAGES_PREFIX       image name prefix (default nocobase-multienv)
#   OFFLINE_IMAGES_TAG          the moving tag (default offline)
#   OFFLINE_IMAGES_CACHE        tarball cache dir (default ${XDG_CACHE_HOME:-/var/cache}/nocobase-multienv)
#   OFFLINE_IMAGES_MIRROR       mmdebstrap MIRROR argument (URL or sources file); default: this
#                               machine's apt sources for bookworm, else mmdebstrap's default
#   OFFLINE_IMAGES_STANDIN_DIR  directory with the stand-in's *.py (default tests/standin)
set -euo pipefail

T0=$(date +%s.%N)
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$ROOT/tools/offline-images.sh"
RECIPE_DIR="$ROOT/tools/offline-images"
PREFIX="${OFFLINE_IMAGES_PREFIX:-nocobase-multienv}"
MOVING_TAG="${OFFLINE_IMAGES_TAG:-offline}"
CACHE="${OFFLINE_IMAGES_CACHE:-${XDG_CACHE_HOME:-/var/cache}/nocobase-multienv}"
STANDIN_DIR="${OFFLINE_IMAGES_STANDIN_DIR:-$ROOT/tests/standin}"
SUITE=bookworm
PG_MAJOR=15
PACKAGES=(
  redis-server redis-tools
  "postgresql-$PG_MAJOR" "postgresql-client-$PG_MAJOR"
  nginx
  python3 python3-redis
  dumb-init gosu curl procps
)
DEFAULT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ALL_IMAGES=(redis postgres nginx standin python)

LOG_NAME=offline-images
# shellcheck source=tools/lib/images.sh
. "$ROOT/tools/lib/images.sh"

force=0
print_tags=0
selected=()
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --print-tags) print_tags=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    redis|postgres|nginx|standin|python) selected+=("$arg") ;;
    nocobase-standin) selected+=(standin) ;;
    *) die "unknown argument: $arg (images: ${ALL_IMAGES[*]})" ;;
  esac
done
[ "${#selected[@]}" -gt 0 ] || selected=("${ALL_IMAGES[@]}")

repo_of() {
  case "$1" in
    standin) echo "$PREFIX/nocobase-standin" ;;
    *) echo "$PREFIX/$1" ;;
  esac
}

recipe_files=("$SELF" "$ROOT/tools/lib/images.sh")
while IFS= read -r f; do recipe_files+=("$f"); done \
  < <(find "$RECIPE_DIR" -maxdepth 1 -type f | LC_ALL=C sort)
BASE_HASH="$(hash_files "${recipe_files[@]}")"
BASE_TAG="${BASE_HASH:0:12}"
ROOTFS_IMAGE="$PREFIX/rootfs:$BASE_TAG"

standin_files() {
  [ -f "$STANDIN_DIR/server.py" ] || die "stand-in program missing: $STANDIN_DIR/server.py"
  find "$STANDIN_DIR" -maxdepth 1 -type f -name '*.py' | LC_ALL=C sort
}

tag_of() {
  if [ "$1" = standin ]; then
    local files=()
    while IFS= read -r f; do files+=("$f"); done < <(standin_files)
    { echo "$BASE_HASH"; hash_files "${files[@]}"; } | sha256sum | cut -c1-12
  else
    echo "$BASE_TAG"
  fi
}

declare -A TAGS
for img in "${selected[@]}"; do
  TAGS[$img]="$(tag_of "$img")"
done

if [ "$print_tags" = 1 ]; then
  for img in "${selected[@]}"; do echo "$(repo_of "$img"):${TAGS[$img]}"; done
  exit 0
fi

# --- tools
if ! timeout 20 docker info >/dev/null 2>&1; then
  "$ROOT/tools/docker-engine.sh"
fi
# --- one build at a time on this machine (a second run waits, then finds the images built)
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
if command -v flock >/dev/null 2>&1; then
  flock -w 1200 9 || die "another offline-images.sh run holds $CACHE/.lock for too long"
fi

# --- what needs building
needed=()
for img in "${selected[@]}"; do
  repo="$(repo_of "$img")"
  if [ "$force" = 0 ] && image_exists "$repo:${TAGS[$img]}"; then
    docker tag "$repo:${TAGS[$img]}" "$repo:$MOVING_TAG"
    log "$repo:${TAGS[$img]} (:$MOVING_TAG) up to date"
  else
    needed+=("$img")
  fi
done
if [ "${#needed[@]}" -eq 0 ]; then
  log "all up to date in $(elapsed "$T0")"
  exit 0
fi

# --- the shared root filesystem (tarball cached, imported once as $ROOTFS_IMAGE); the recipe
# files are copied in and rootfs-setup.sh runs inside it
build_rootfs_tarball() {
  # shellcheck disable=SC2016  # "$1" is expanded by mmdebstrap's hooks
  mmdebstrap_rootfs "$1" "${OFFLINE_IMAGES_MIRROR:-}" \
    --customize-hook='mkdir -p "$1/tmp/offline-images"' \
    --customize-hook="copy-in $(printf '%q ' "${recipe_files[@]:2}") /tmp/offline-images" \
    --customize-hook='chroot "$1" sh /tmp/offline-images/rootfs-setup.sh'
}

if [ "$force" = 1 ] || ! image_exists "$ROOTFS_IMAGE"; then
  tarball="$CACHE/rootfs-$BASE_TAG.tar"
  if [ "$force" = 1 ] || [ ! -s "$tarball" ]; then
    build_rootfs_tarball "$tarball"
  else
    log "using cached $tarball"
  fi
  # drop tarballs of older recipes
  find "$CACHE" -maxdepth 1 -name 'rootfs-*.tar' ! -name "rootfs-$BASE_TAG.tar" -delete 2>/dev/null || true
  t=$(date +%s.%N)
  docker import \
    --change "ENV PATH=$DEFAULT_PATH" \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --change "LABEL org.nocobase-multienv.recipe=$BASE_HASH" \
    "$tarball" "$ROOTFS_IMAGE" >/dev/null
  log "imported $ROOTFS_IMAGE in $(elapsed "$t")"
  prune_old_tags "$PREFIX/rootfs" '^[0-9a-f]{12}$' "$BASE_TAG"
fi

# --- one image: create a container of the rootfs, optionally copy files in, commit with its config
# usage: derive IMAGE STAGING_DIR_OR_EMPTY CHANGE...
derive() {
  local img="$1" staging="$2" repo tag cname args=() c t
  shift 2
  repo="$(repo_of "$img")"
  tag="${TAGS[$img]}"
  t=$(date +%s.%N)
  cname="nocobase-multienv-build-$img-$$"
  BUILD_CONTAINERS+=("$cname")
  docker rm -f "$cname" >/dev/null 2>&1 || true
  docker create --name "$cname" "$ROOTFS_IMAGE" >/dev/null
  if [ -n "$staging" ]; then
    docker cp "$staging/." "$cname:/"
  fi
  for c in "$@"; do args+=(--change "$c"); done
  args+=(--change "LABEL org.nocobase-multienv.recipe=$tag")
  docker commit "${args[@]}" "$cname" "$repo:$tag" >/dev/null
  docker rm -f "$cname" >/dev/null
  docker tag "$repo:$tag" "$repo:$MOVING_TAG"
  prune_old_tags "$repo" '^[0-9a-f]{12}$' "$tag"
  log "built $repo:$tag (:$MOVING_TAG) in $(elapsed "$t")"
}

# dumb-init as PID 1: signals reach the server, zombies are reaped. `docker import/commit`
# cannot set STOPSIGNAL, so for PostgreSQL dumb-init rewrites docker stop's SIGTERM into
# SIGINT (fast shutdown), which is what the official image's STOPSIGNAL SIGINT does.
INIT='"/usr/bin/dumb-init", "--"'
PG_INIT='"/usr/bin/dumb-init", "--rewrite", "15:2", "--"'
for img in "${needed[@]}"; do
  case "$img" in
    redis)
      derive redis "" \
        "ENV REDIS_DATA_DIR=/data" \
        "ENV REDIS_ARGS=" \
        "WORKDIR /data" \
        "EXPOSE 6379" \
        "ENTRYPOINT [$INIT, \"/entrypoint.sh\"]" \
        'CMD []'
      ;;
    postgres)
      derive postgres "" \
        "ENV PG_MAJOR=$PG_MAJOR" \
        "ENV PATH=/usr/lib/postgresql/$PG_MAJOR/bin:$DEFAULT_PATH" \
        "ENV PGDATA=/var/lib/postgresql/data" \
        "WORKDIR /" \
        "EXPOSE 5432" \
        "ENTRYPOINT [$PG_INIT, \"/usr/local/bin/docker-entrypoint.sh\"]" \
        'CMD ["postgres"]'
      ;;
    python)
      derive python "" \
        "WORKDIR /" \
        'CMD ["python3"]'
      ;;
    nginx)
      derive nginx "" \
        "WORKDIR /" \
        "EXPOSE 80" \
        "ENTRYPOINT [$INIT, \"/docker-entrypoint.sh\"]" \
        'CMD ["nginx", "-g", "daemon off;"]'
      ;;
    standin)
      staging="$(mktemp -d)"
      TMP_FILES+=("$staging")
      mkdir -p "$staging/opt/standin" "$staging/app/nocobase/storage"
      while IFS= read -r f; do cp "$f" "$staging/opt/standin/"; done < <(standin_files)
      chmod -R a+rX "$staging"
      derive standin "$staging" \
        "ENV PYTHONUNBUFFERED=1" \
        "ENV PYTHONDONTWRITEBYTECODE=1" \
        "WORKDIR /app/nocobase" \
        "EXPOSE 80" \
        "ENTRYPOINT [$INIT, \"python3\", \"/opt/standin/server.py\"]" \
        'CMD []'
      ;;
  esac
done

log "done in $(elapsed "$T0")"
