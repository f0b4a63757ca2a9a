#!/usr/bin/env bash
# Everything the deploy and test commands need on a fresh Debian 12 machine, installed idempotently:
# Debian packages, the Python venv (.venv) from requirements.txt, this collection on Ansible's
# collection path, a running Docker engine and, with --offline-images, the local images (real
# NocoBase among them); with --oldest-core, the venv of the oldest supported ansible-core (.venv-oldest);
# with --browser, Debian's Chromium and its driver (the browser tests).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

log() { printf 'setup: %s\n' "$*" >&2; }

offline_images=false oldest_core=false browser=false
for arg in "$@"; do
  case $arg in
    --offline-images) offline_images=true ;;
    --oldest-core) oldest_core=true ;;
    --browser) browser=true ;;
    *) log "unknown option $arg"; exit 2 ;;
  esac
done

# Debian packages: redis-server (the module tests' real Redis), mmdebstrap (offline images),
# git (sanity copies the tracked tree), openssh-client (the multi-host tests reach their Docker
# hosts over SSH), python3-venv.
# With --browser: chromium and chromium-driver (the browser tests drive Debian's Chromium).
commands=(redis-server:redis-server mmdebstrap:mmdebstrap git:git curl:curl ssh:openssh-client ssh-keygen:openssh-client)
$browser && commands+=(chromium:chromium chromedriver:chromium-driver)
missing=()
for pair in "${commands[@]}"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
done
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# usage: make_venv DIR REQUIREMENTS -- rebuilt only when the requirements file changed.
make_venv() {
  local dir=$1 requirements=$2 stamp want
  stamp=$dir/.requirements.sha256
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  if [ ! -x "$dir/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "creating $dir from $requirements"
    python3 -m venv --clear "$dir"
    "$dir/bin/python" -m pip install -q --upgrade pip
    "$dir/bin/python" -m pip install -q -r "$requirements"
    echo "$want" > "$stamp"
  fi
}
# The venvs are made while the Docker engine starts and the images build (neither needs them);
# the script waits for them before it ends, and stops them if it fails first.
venv_jobs=()
trap 'kill "${venv_jobs[@]}" 2>/dev/null || true' EXIT
make_venv .venv requirements.txt & venv_jobs+=($!)
if $oldest_core; then
  # The oldest ansible-core that meta/runtime.yml claims, for its sanity and module tests.
  make_venv .venv-oldest tests/requirements-oldest.txt & venv_jobs+=($!)
fi

# ansible.cfg points collections_path at .cache/collections; link this checkout there.
link=.cache/collections/ansible_collections/nocobase/multienv
mkdir -p "$(dirname "$link")"
[ "$(readlink "$link" 2>/dev/null)" = "$repo" ] || ln -sfn "$repo" "$link"

bash tools/docker-engine.sh
if $offline_images; then
  bash tools/offline-images.sh
  bash tools/docker-host-image.sh  # the multi-host tests' Docker hosts (dockerd and sshd)
  bash tools/nocobase-image.sh  # real NocoBase from the npm registry (cached by recipe hash)
fi
for job in "${venv_jobs[@]}"; do
  wait "$job" || { log "a Python venv could not be made (see pip's output above)"; exit 1; }
done
venv_jobs=()
