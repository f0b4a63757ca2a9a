#!/usr/bin/env bash
# The whole test suite: setup, then pytest over tests/ (module and consumer tests on a real Redis,
# offline images and roles on a real Docker engine, ansible-doc, ansible-lint, ansible-test sanity
# and the Molecule scenario; real NocoBase in Chromium). Extra arguments go to pytest.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
bash tools/setup.sh --offline-images --oldest-core --browser
exec .venv/bin/python -m pytest "$@"
