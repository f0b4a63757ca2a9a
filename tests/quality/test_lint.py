"""ansible-lint with the production profile over the whole collection."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_ansible_lint_production_profile():
    lint = Path(sys.executable).with_name("ansible-lint")
    env = dict(os.environ, NO_COLOR="1", PATH="%s:%s" % (lint.parent, os.environ.get("PATH", "")))
    result = subprocess.run([str(lint), "--profile", "production", "--nocolor"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
    assert "Passed" in result.stdout + result.stderr
