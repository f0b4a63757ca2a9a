#!/usr/bin/env bash
# Deploy the whole platform: tools/deploy.sh INVENTORY [--offline-images] [ansible-playbook options].
# --offline-images builds the local images first (inventories/offline and copies of it use them).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
inventory=${1:?usage: tools/deploy.sh INVENTORY [--offline-images] [ansible-playbook options]}
shift
if [ "${1:-}" = "--offline-images" ]; then
  shift
  bash tools/setup.sh --offline-images
else
  bash tools/setup.sh
fi
exec .venv/bin/ansible-playbook -i "$inventory" playbooks/site.yml "$@"
