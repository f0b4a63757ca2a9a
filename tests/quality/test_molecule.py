"""The collection's Molecule scenario (extensions/molecule/default): destroy, syntax, create,
converge (playbooks/site.yml on the offline images), idempotence (zero changes), verify, destroy."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import COLLECTIONS_PATH, REPO


def test_molecule_default_scenario():
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, NO_COLOR="1", ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", PY_COLORS="0", PATH="%s:%s" % (bin_dir, os.environ.get("PATH", "")))
    result = subprocess.run([str(bin_dir / "molecule"), "test", "--scenario-name", "default"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=2400, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-12000:]
    assert "idempotence" in output.lower()
