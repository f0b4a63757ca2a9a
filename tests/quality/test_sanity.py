"""ansible-test sanity with empty ignore files (tools/sanity.sh copies the tree into place), on the
ansible-core the tests run and on the oldest one meta/runtime.yml claims (.venv-oldest, made by
tools/setup.sh --oldest-core), where the module tests run too."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

CURRENT = Path(sys.executable).parent.parent
OLDEST = REPO / ".venv-oldest"
# The module, lookup, filter and consumer tests: everything that runs without Docker.
PORTABLE_TESTS = ["tests/unit", "tests/integration/test_modules.py", "tests/integration/test_redis_users.py",
                  "tests/integration/test_resp.py", "tests/integration/test_consumer.py"]


def oldest_venv():
    assert (OLDEST / "bin" / "python").exists(), "%s is missing: run tools/setup.sh --oldest-core" % OLDEST
    return OLDEST


def test_no_sanity_ignores():
    ignores = list((REPO / "tests" / "sanity").glob("ignore-*.txt"))
    assert all(path.read_text().strip() == "" for path in ignores), ignores


def test_the_oldest_venv_has_the_oldest_claimed_ansible_core():
    claimed = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())["requires_ansible"]
    version = subprocess.run([str(oldest_venv() / "bin" / "python"), "-c", "import ansible; print(ansible.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert claimed.startswith(">=") and version.split(".")[:2] == claimed[2:].split(".")[:2], (claimed, version)


@pytest.mark.parametrize("venv", ["current", "oldest"])
def test_ansible_test_sanity(venv):
    env = dict(os.environ, NOCOBASE_VENV=str(CURRENT if venv == "current" else oldest_venv()))
    result = subprocess.run(["bash", str(REPO / "tools" / "sanity.sh")], env=env,
                            capture_output=True, text=True, timeout=1800, check=False)
    tail = "\n".join(line for line in result.stdout.splitlines() + result.stderr.splitlines()
                     if line.startswith(("ERROR", "FATAL", "Running")))
    assert result.returncode == 0, tail


def test_the_module_tests_pass_on_the_oldest_ansible_core():
    result = subprocess.run([str(oldest_venv() / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             *PORTABLE_TESTS], cwd=REPO, capture_output=True, text=True, timeout=1200, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-500:]
