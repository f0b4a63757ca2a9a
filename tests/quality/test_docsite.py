"""The docs site and the ecosystem's docs and changelog linters.

- tools/docsite/build.py (what `make docs` runs) renders every module, plugin and role of the collection with
  antsibull-docs and builds the HTML with Sphinx, offline, without a warning: one page per module, lookup, filter
  and role argument spec, no more, no less.
- `antsibull-docs lint-collection-docs --plugin-docs` (docs.ansible.com's check of a collection) and
  `antsibull-changelog lint` (the fragments) and `lint-changelog-yaml` pass.

The linters start in the background when the module starts and run while the site builds.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import COLLECTIONS_PATH, REPO

BIN = Path(sys.executable).parent
ENV = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, ANSIBLE_NOCOLOR="1", NO_COLOR="1",
           PATH="%s%s%s" % (BIN, os.pathsep, os.environ.get("PATH", "")))
INSTALLED = Path(COLLECTIONS_PATH) / "ansible_collections" / "nocobase" / "multienv"
LINTERS = {
    "lint-collection-docs": [BIN / "antsibull-docs", "lint-collection-docs", "--plugin-docs", INSTALLED],
    "changelog lint": [BIN / "antsibull-changelog", "lint"],
    "changelog lint-changelog-yaml": [BIN / "antsibull-changelog", "lint-changelog-yaml",
                                      REPO / "changelogs" / "changelog.yaml"],
}


def expected_pages():
    pages = {path.stem + "_module.html" for path in (REPO / "plugins" / "modules").glob("*.py")}
    pages |= {path.stem + "_lookup.html" for path in (REPO / "plugins" / "lookup").glob("*.py")}
    pages |= {path.stem + "_filter.html" for path in (REPO / "plugins" / "filter").glob("*.yml")}
    pages |= {path.parent.parent.name + "_role.html" for path in (REPO / "roles").glob("*/meta/argument_specs.yml")}
    return pages


@pytest.fixture(scope="module")
def linters():
    running = {name: subprocess.Popen([str(arg) for arg in args], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)
               for name, args in LINTERS.items()}
    yield running
    for process in running.values():
        if process.poll() is None:
            process.kill()
        process.communicate()


@pytest.fixture(autouse=True)
def start_the_linters_first(linters):
    """Every test of this module waits for nothing here; the linters run in the background from the first one."""


def test_the_docs_site_builds_without_warnings(tmp_path):
    dest = tmp_path / "site"
    result = subprocess.run([sys.executable, str(REPO / "tools" / "docsite" / "build.py"), str(dest)], env=ENV,
                            capture_output=True, text=True, timeout=600, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    assert "WARNING" not in output and "ERROR" not in output, output[-8000:]
    html = dest / "build" / "html"
    pages = {path.name for path in (html / "collections" / "nocobase" / "multienv").glob("*.html")} - {"index.html"}
    assert pages == expected_pages()
    assert len(pages) >= 25
    worker = (html / "collections" / "nocobase" / "multienv" / "worker_role.html").read_text()
    assert "worker_container_port" in worker and "nocobase_container_port" in worker
    # the offline links to docs.ansible.com (tools/docsite/ansible_docs_links.py)
    workload = (html / "collections" / "nocobase" / "multienv" / "workload_module.html").read_text()
    assert "https://docs.ansible.com/projects/ansible/latest/collections/community/docker/docker_container_module.html" \
        in workload


@pytest.mark.parametrize("linter", sorted(LINTERS))
def test_linter_passes(linters, linter):
    output = linters[linter].communicate(timeout=600)[0]
    assert linters[linter].returncode == 0, output[-8000:]
    assert output.strip() == "", output[-8000:]
