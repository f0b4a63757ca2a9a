#!/usr/bin/env bash
# The docs site: setup, then tools/docsite/build.py (antsibull-docs renders every module, plugin and role
# of this checkout, Sphinx makes HTML of it, offline; a warning fails). The site lands in
# .cache/docsite/build/html, or in the directory given as the first argument.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
bash tools/setup.sh
exec .venv/bin/python tools/docsite/build.py "$@"
