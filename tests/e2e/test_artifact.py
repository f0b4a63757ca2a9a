"""The Galaxy artifact, as a user gets it: built, installed into an empty collections path, and run.

The artifact must hold what users run (plugins, roles, playbooks, docs, example inventories) and
none of the project's own machinery (tools that install and start dockerd, tests, CI, benchmarks).
Installed, it checks and converges a platform (with the stand-in image, like the other fast tests)
without this checkout's ansible.cfg or collection link, and tears it down.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from harness import Platform, recap_changed

from conftest import REPO

BIN = Path(sys.executable).parent
SHIPPED = ("plugins/modules/app_command.py", "plugins/filter/redis_users.py", "roles/worker/files/agent/agent.py",
           "playbooks/site.yml", "inventories/offline/hosts.yml", "docs/protocol.md", "meta/runtime.yml",
           "MANIFEST.json", "FILES.json")
NOT_SHIPPED = ("tools/", "tests/", ".ci/", "benchmarks/", "extensions/", ".venv/", ".cache/", "Makefile")


def user_env(root):
    """A user's environment: an empty Ansible configuration, not this checkout's (nor its collection link)."""
    config = root / "ansible.cfg"
    config.write_text("[defaults]\n")
    return dict(os.environ, ANSIBLE_CONFIG=str(config), ANSIBLE_COLLECTIONS_PATH=str(root / "collections"),
                ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifact")
    build = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", str(REPO), "--output-path", str(root)],
                           capture_output=True, text=True, timeout=300, check=False)
    assert build.returncode == 0, build.stdout + build.stderr
    (artifact,) = root.glob("nocobase-multienv-*.tar.gz")
    install = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "--no-deps", "-p",
                              str(root / "collections"), str(artifact)],
                             cwd=root, env=user_env(root), capture_output=True, text=True, timeout=300, check=False)
    assert install.returncode == 0, install.stdout + install.stderr
    path = root / "collections" / "ansible_collections" / "nocobase" / "multienv"
    assert (path / "playbooks" / "site.yml").is_file(), install.stdout + install.stderr
    return artifact, root, path


def test_the_artifact_ships_the_collection_and_nothing_of_the_project(installed):
    artifact, _root, _path = installed
    with tarfile.open(artifact) as tar:
        names = tar.getnames()
    for name in SHIPPED:
        assert name in names, name
    for prefix in NOT_SHIPPED:
        assert not [n for n in names if n == prefix.rstrip("/") or n.startswith(prefix)], prefix


def test_the_installed_collection_checks_and_converges_a_platform(installed, tmp_path):
    _artifact, root, path = installed
    platform = Platform(tmp_path)
    env = user_env(root)

    def playbook(name, *args):
        result = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(path / "inventories" / "offline"),
                                 "-i", str(platform.overlay), "nocobase.multienv." + name, *args],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False)
        assert result.returncode == 0, "%s failed:\n%s\n%s" % (name, result.stdout[-6000:], result.stderr[-3000:])
        return result

    try:
        check = playbook("site", "--check")
        assert "%s-redis would be created" % platform.name in check.stdout  # the roles ran from the artifact
        playbook("site")
        assert platform.get("/apps/crm/admin/")[0] == 200
        assert set(recap_changed(playbook("site").stdout).values()) == {0}
    finally:
        playbook("teardown")
