# shellcheck shell=bash
# Shared by tools/offline-images.sh and tools/nocobase-image.sh (sourced, never run): logging,
# recipe hashes, the build's clean-up, a Debian root filesystem made with mmdebstrap from this
# machine's apt sources, and pruning of the hash tags of older recipes.
# The sourcing script sets LOG_NAME and ROOT first, and SUITE and PACKAGES before it calls
# mmdebstrap_rootfs.

log() { printf '%s: %s\n' "$LOG_NAME" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1fs", b - a }'; }
image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# sha256 over file names (relative to $ROOT) and contents, in the given order.
hash_files() {
  local f
  for f in "$@"; do
    printf '%s\0' "${f#"$ROOT"/}"
    cat "$f"
    printf '\0'
  done | sha256sum | cut -c1-64
}

# Build containers and temporary files of this run, removed on exit.
BUILD_CONTAINERS=()
TMP_FILES=()
cleanup() {
  local c f
  for c in "${BUILD_CONTAINERS[@]}"; do docker rm -f "$c" >/dev/null 2>&1 || true; done
  for f in "${TMP_FILES[@]}"; do rm -rf "$f"; done
}
trap cleanup EXIT

# Drop the hash tags of older recipes (images still used by containers are kept).
prune_old_tags() {  # usage: prune_old_tags REPO TAG_REGEX CURRENT_TAG
  docker image ls --format '{{.Tag}}' "$1" | grep -E "$2" | grep -vx "$3" \
    | while IFS= read -r old; do docker rmi "$1:$old" >/dev/null 2>&1 || true; done || true
}

# A $SUITE root filesystem with $PACKAGES as a tarball, from MIRROR (a URL or sources file) or,
# when that is empty, this machine's apt sources for $SUITE (its mirror or proxy), else
# mmdebstrap's default. Further mmdebstrap options (hooks) follow the two arguments.
mmdebstrap_rootfs() {  # usage: mmdebstrap_rootfs TARBALL MIRROR [MMDEBSTRAP_OPTION ...]
  local tarball="$1" mirror="$2" t tmp mirrors=() f
  shift 2
  if ! command -v mmdebstrap >/dev/null 2>&1; then
    log "installing mmdebstrap"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q mmdebstrap >/dev/null
  fi
  if [ -n "$mirror" ]; then
    mirrors=("$mirror")
  else
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
      [ -s "$f" ] || continue
      if grep -Eq "^[^#]*\\b$SUITE\\b" "$f" && grep -Eq '^[^#]*/debian' "$f"; then
        mirrors+=("$f")
      fi
    done
  fi
  mkdir -p "$(dirname "$tarball")"
  tmp="${tarball%.tar}.tmp$$.tar"  # mmdebstrap picks the format from the extension
  TMP_FILES+=("$tmp")
  t=$(date +%s.%N)
  log "building the $SUITE root filesystem with mmdebstrap (${PACKAGES[*]})"
  timeout 1800 mmdebstrap --variant=apt --quiet \
    --include="$(IFS=,; echo "${PACKAGES[*]}")" \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --aptopt='Acquire::Retries "3"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    "$@" \
    "$SUITE" "$tmp" "${mirrors[@]}" </dev/null \
    || die "mmdebstrap failed"
  mv "$tmp" "$tarball"
  log "root filesystem built in $(elapsed "$t") ($(du -h "$tarball" | cut -f1))"
}
