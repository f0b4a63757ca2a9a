#!/usr/bin/env bash
# The whole test suite: setup, then pytest over tests/ (module and consumer tests on a real Redis,
# offline images and roles on a real Docker engine, ansible-doc, ansible-lint, ansible-test sanity
# and the Molecule scenario; real NocoBase in Chromium). Extra arguments go to pytest.
# Two pytest-xdist workers (TEST_WORKERS), a test file to a worker, the slowest files first
# (tests/conftest.py): most of the time goes to waiting on containers, so two files run side by side.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
bash tools/setup.sh --offline-images --oldest-core --browser
exec .venv/bin/python -m pytest -n "${TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@"
