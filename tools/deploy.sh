#!/usr/bin/env bash
# Deploy the whole platform: `tools/deploy.sh` with the official images (inventories/local),
# `tools/deploy.sh offline` with locally built images (inventories/offline) where no registry is
# reachable. Extra arguments go to ansible-playbook.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
inventory=local
if [ "${1:-}" = "offline" ]; then
  inventory=offline
  shift
  bash tools/setup.sh --offline-images
else
  bash tools/setup.sh
fi
exec .venv/bin/ansible-playbook -i "inventories/$inventory" playbooks/site.yml "$@"
