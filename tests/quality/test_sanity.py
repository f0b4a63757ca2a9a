"""ansible-test sanity with empty ignore files (tools/sanity.sh copies the tree into place)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_no_sanity_ignores():
    ignores = list((REPO / "tests" / "sanity").glob("ignore-*.txt"))
    assert all(path.read_text().strip() == "" for path in ignores), ignores


def test_ansible_test_sanity():
    env = dict(os.environ, NOCOBASE_VENV=str(Path(sys.executable).parent.parent))
    result = subprocess.run(["bash", str(REPO / "tools" / "sanity.sh")], env=env,
                            capture_output=True, text=True, timeout=1800, check=False)
    tail = "\n".join(line for line in result.stdout.splitlines() + result.stderr.splitlines()
                     if line.startswith(("ERROR", "FATAL", "Running")))
    assert result.returncode == 0, tail
