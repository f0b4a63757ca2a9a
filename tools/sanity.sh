#!/usr/bin/env bash
# ansible-test sanity (empty ignore files) on a copy of the tracked tree laid out as
# ansible_collections/nocobase/multienv, which is where ansible-test insists on finding it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${NOCOBASE_VENV:-$repo/.venv}
python=$venv/bin/python

# ansible-test bootstraps pip in its venvs with a script it downloads from a host outside the
# package index; give it a local equivalent (tools/get_pip_offline.py) and pip's wheel instead.
pip_version=$("$python" - <<'PY'
from ansible_test._internal.python_requirements import get_venv_packages
from ansible_test._internal.host_configs import NativePythonConfig
import sys
print(get_venv_packages(NativePythonConfig(version="%d.%d" % sys.version_info[:2], path=sys.executable))["pip"])
PY
)
cache=$HOME/.ansible/test/cache
mkdir -p "$cache"
if [ ! -f "$cache/get_pip_${pip_version//./_}.py" ]; then
  "$python" -m pip download -q --no-deps --only-binary=:all: -d "$cache" "pip==$pip_version"
  cp "$repo/tools/get_pip_offline.py" "$cache/get_pip_${pip_version//./_}.py"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
target=$work/ansible_collections/nocobase/multienv
mkdir -p "$target"
(cd "$repo" && git ls-files -co --exclude-standard -z | xargs -0 tar -cf - | tar -xf - -C "$target")
cd "$target"
"$venv/bin/ansible-test" sanity --python "$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" --requirements --color no "$@"
