#!/usr/bin/env bash
# Build the "Docker host" of the multi-host test harness (tests/e2e/multihost.py): Debian
# bookworm with Debian's docker.io, openssh-server, and the Python that Ansible's and
# community.docker's modules need on a target (python3, python3-docker, python3-requests). The
# harness runs it as privileged containers, each with its own dockerd and sshd, and reaches them
# over SSH as real hosts.
#
#   nocobase-multienv/docker-host:<hash>   the image of this recipe
#   nocobase-multienv/docker-host:offline  moving tag, which the harness names
#
# Recipe: an mmdebstrap --variant=apt root filesystem of the packages below (cached as a tarball
# keyed by the package list, imported once as nocobase-multienv/docker-host-rootfs:<hash>), plus
# tools/docker-host-image/entrypoint.sh (sshd, then dockerd on /var/lib/docker, overlay2 unless
# DOCKER_HOST_STORAGE_DRIVER says otherwise) as ENTRYPOINT under dumb-init and
# tools/docker-host-image/sshd.conf as sshd's configuration. The image's hash (first 12 hex of a
# sha256) covers this script, tools/lib/images.sh and tools/docker-host-image/*; an image whose
# hash tag exists is up to date and is not rebuilt.
#
# usage: tools/docker-host-image.sh [--force] [--print-tags]
#
# Environment:
#   OFFLINE_IMAGES_PREFIX  image name prefix (default nocobase-multienv)
#   OFFLINE_IMAGES_CACHE   tarball cache dir (default ${XDG_CACHE_HOME:-/var/cache}/nocobase-multienv)
#   OFFLINE_IMAGES_MIRROR  mmdebstrap MIRROR argument (URL or sources file); default: this
#                          machine's apt sources for bookworm, else mmdebstrap's default
set -euo pipefail

T0=$(date +%s.%N)
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SELF="$ROOT/tools/docker-host-image.sh"
RECIPE_DIR="$ROOT/tools/docker-host-image"
PREFIX="${OFFLINE_IMAGES_PREFIX:-nocobase-multienv}"
REPO="$PREFIX/docker-host"
CACHE="${OFFLINE_IMAGES_CACHE:-${XDG_CACHE_HOME:-/var/cache}/nocobase-multienv}"
SUITE=bookworm
PACKAGES=(
  docker.io containerd runc iptables ca-certificates
  openssh-server
  python3 python3-docker python3-requests
  dumb-init procps iproute2 mount
)
DEFAULT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

LOG_NAME=docker-host-image
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

recipe_files=("$SELF" "$ROOT/tools/lib/images.sh")
while IFS= read -r f; do recipe_files+=("$f"); done \
  < <(find "$RECIPE_DIR" -maxdepth 1 -type f | LC_ALL=C sort)
TAG="$( { hash_files "${recipe_files[@]}"; uname -m; } | sha256sum | cut -c1-12)"
IMAGE="$REPO:$TAG"
ROOTFS_HASH="$( { printf '%s\n' "$SUITE" "${PACKAGES[@]}"; uname -m; } | sha256sum | cut -c1-12)"
ROOTFS_REPO="$PREFIX/docker-host-rootfs"
ROOTFS_IMAGE="$ROOTFS_REPO:$ROOTFS_HASH"

if [ "$print_tags" = 1 ]; then
  echo "$IMAGE"
  exit 0
fi

if ! timeout 20 docker info >/dev/null 2>&1; then
  "$ROOT/tools/docker-engine.sh"
fi
mkdir -p "$CACHE"
exec 9>"$CACHE/.docker-host-image.lock"
if command -v flock >/dev/null 2>&1; then
  flock -w 1200 9 || die "another docker-host-image.sh run holds $CACHE/.docker-host-image.lock for too long"
fi

if [ "$force" = 0 ] && image_exists "$IMAGE"; then
  docker tag "$IMAGE" "$REPO:offline"
  log "$IMAGE (:offline) up to date in $(elapsed "$T0")"
  exit 0
fi

# --- the root filesystem: Debian's packages only (tarball cached, imported once as $ROOTFS_IMAGE),
# so that a change of the entry point or of sshd's configuration does not run mmdebstrap again
if [ "$force" = 1 ] || ! image_exists "$ROOTFS_IMAGE"; then
  tarball="$CACHE/docker-host-rootfs-$ROOTFS_HASH.tar"
  if [ "$force" = 1 ] || [ ! -s "$tarball" ]; then
    # shellcheck disable=SC2016  # "$1" is expanded by mmdebstrap's hooks
    mmdebstrap_rootfs "$tarball" "${OFFLINE_IMAGES_MIRROR:-}" \
      --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
      --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb'
  else
    log "using cached $tarball"
  fi
  find "$CACHE" -maxdepth 1 -name 'docker-host-rootfs-*.tar' ! -name "${tarball##*/}" -delete 2>/dev/null || true
  t=$(date +%s.%N)
  docker import --change "ENV PATH=$DEFAULT_PATH" --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' "$tarball" "$ROOTFS_IMAGE" >/dev/null
  log "imported $ROOTFS_IMAGE in $(elapsed "$t")"
  prune_old_tags "$ROOTFS_REPO" '^[0-9a-f]{12}$' "$ROOTFS_HASH"
fi

# --- the image: the entry point and sshd's configuration copied in, committed with its config
t=$(date +%s.%N)
staging="$(mktemp -d)"
TMP_FILES+=("$staging")
install -D -m 0755 "$RECIPE_DIR/entrypoint.sh" "$staging/usr/local/bin/docker-host-entrypoint"
install -D -m 0644 "$RECIPE_DIR/sshd.conf" "$staging/etc/ssh/sshd_config.d/docker-host.conf"
cname="nocobase-multienv-build-docker-host-$$"
BUILD_CONTAINERS+=("$cname")
docker rm -f "$cname" >/dev/null 2>&1 || true
docker create --name "$cname" "$ROOTFS_IMAGE" >/dev/null
tar -C "$staging" --numeric-owner --owner=0 --group=0 -cf - . | docker cp - "$cname:/"
docker commit \
  --change 'VOLUME /var/lib/docker' \
  --change 'EXPOSE 22' \
  --change 'ENTRYPOINT ["/usr/bin/dumb-init", "--", "/usr/local/bin/docker-host-entrypoint"]' \
  --change 'CMD []' \
  --change "LABEL org.nocobase-multienv.recipe=$TAG" \
  "$cname" "$IMAGE" >/dev/null
docker rm -f "$cname" >/dev/null
docker tag "$IMAGE" "$REPO:offline"
prune_old_tags "$REPO" '^[0-9a-f]{12}$' "$TAG"
log "built $IMAGE (:offline) in $(elapsed "$t"), $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
log "done in $(elapsed "$T0")"
