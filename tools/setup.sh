#!/usr/bin/env bash
# Everything the deploy and test commands need on a fresh Debian 12 machine, installed idempotently:
# Debian packages, the Python venv (.venv) from requirements.txt, this collection on Ansible's
# collection path, a running Docker engine and, with --offline-images, the local images (real
# NocoBase among them).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

log() { printf 'setup: %s\n' "$*" >&2; }

# Debian packages: redis-server (the module tests' real Redis), mmdebstrap (offline images),
# git (sanity copies the tracked tree), python3-venv.
missing=()
for pair in redis-server:redis-server mmdebstrap:mmdebstrap git:git curl:curl; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
done
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The venv is rebuilt only when requirements.txt changed.
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "creating .venv from requirements.txt"
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  echo "$want" > "$stamp"
fi

# ansible.cfg points collections_path at .cache/collections; link this checkout there.
link=.cache/collections/ansible_collections/nocobase/multienv
mkdir -p "$(dirname "$link")"
[ "$(readlink "$link" 2>/dev/null)" = "$repo" ] || ln -sfn "$repo" "$link"

bash tools/docker-engine.sh
if [ "${1:-}" = "--offline-images" ]; then
  bash tools/offline-images.sh
  bash tools/nocobase-image.sh  # real NocoBase from the npm registry (cached by recipe hash)
fi
