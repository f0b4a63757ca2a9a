"""The execution environment (meta/execution-environment.yml, ansible-builder schema 3), as ansible-builder reads it.

- `ansible-builder create` from the collection's root (execution-environment.yml there links to the file) writes
  the build context: no image is built, nothing is fetched. Its Containerfile installs the ansible-core the tests
  run; the context carries the collections galaxy.yml depends on and meta/ee-requirements.txt, meta/ee-bindep.txt.
- ansible-builder's introspection, which reads the same file when an EE it builds installs this collection, finds
  the same packages (its paths are relative to the collection's root), and the artifact ships the files.
- The packages are those the modules the roles call need, and the collection's own plugins import nothing beyond
  Python's standard library and ansible-core.
"""
from __future__ import annotations

import ast
import fnmatch
import re
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import COLLECTIONS_PATH, REPO

BUILDER = Path(sys.executable).with_name("ansible-builder")
EE = REPO / "meta" / "execution-environment.yml"
EE_FILES = ("meta/execution-environment.yml", "meta/ee-requirements.txt", "meta/ee-bindep.txt")


def pinned(requirements, name):
    """The version requirements.txt pins `name` to."""
    for line in requirements.read_text().splitlines():
        match = re.fullmatch(r"%s==(\S+)" % re.escape(name), line.strip())
        if match:
            return match.group(1)
    raise AssertionError("%s pins no %s" % (requirements, name))


def requirement_names(path):
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return {re.split(r"[\s<>=!~;\[]", line)[0].lower() for line in lines if line}


def test_the_link_at_the_root_is_the_definition():
    link = REPO / "execution-environment.yml"
    assert link.is_symlink() and link.resolve() == EE.resolve()


def test_ansible_builder_creates_the_build_context(tmp_path):
    context = tmp_path / "context"
    result = subprocess.run([str(BUILDER), "create", "--file", "execution-environment.yml", "--context", str(context),
                             "--output-filename", "Containerfile"],
                            cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    containerfile = (context / "Containerfile").read_text()
    definition = yaml.safe_load(EE.read_text())
    assert definition["version"] == 3
    assert 'ARG EE_BASE_IMAGE="%s"' % definition["images"]["base_image"]["name"] in containerfile
    core = pinned(REPO / "requirements.txt", "ansible-core")
    assert re.search(r'ARG ANSIBLE_INSTALL_REFS=".*\bansible-core==%s\b' % re.escape(core), containerfile)
    # the collections' and these packages' installation, and the introspection that adds the collections' own
    assert "ansible-galaxy collection install" in containerfile
    assert "introspect --user-pip=requirements.txt --user-bindep=bindep.txt" in containerfile
    assert (context / "_build" / "requirements.txt").read_text() == (REPO / "meta" / "ee-requirements.txt").read_text()
    assert (context / "_build" / "bindep.txt").read_text() == (REPO / "meta" / "ee-bindep.txt").read_text()
    collections = yaml.safe_load((context / "_build" / "requirements.yml").read_text())["collections"]
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    assert {item["name"]: item["version"] for item in collections} == galaxy["dependencies"]
    requirements_yml = yaml.safe_load((REPO / "requirements.yml").read_text())["collections"]
    assert {item["name"]: item["version"] for item in requirements_yml} == galaxy["dependencies"]


def test_introspection_finds_the_collections_packages():
    """What an EE that installs nocobase.multienv gets from it: the packages of meta/ee-*.txt."""
    result = subprocess.run([str(BUILDER), "introspect", "--sanitize", COLLECTIONS_PATH],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    found = yaml.safe_load(result.stdout)

    def ours(lines):
        return sorted(line.split("#")[0].strip() for line in lines if line.endswith("# from collection nocobase.multienv"))

    def listed(path):
        return sorted(line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))

    assert ours(found["python"]) == listed(REPO / "meta" / "ee-requirements.txt")
    assert ours(found["system"]) == listed(REPO / "meta" / "ee-bindep.txt")


def test_the_artifact_ships_the_files_and_not_the_link():
    """ansible-galaxy collection build leaves out what matches build_ignore (relative paths, fnmatch)."""
    ignored = yaml.safe_load((REPO / "galaxy.yml").read_text())["build_ignore"]
    for path in EE_FILES:
        assert not [pattern for pattern in ignored if fnmatch.fnmatch(path, pattern)], path
    assert [pattern for pattern in ignored if fnmatch.fnmatch("execution-environment.yml", pattern)]


def test_the_packages_are_what_the_roles_modules_need():
    tasks = "\n".join(path.read_text() for path in sorted((REPO / "roles").rglob("*.yml"))
                      + sorted((REPO / "playbooks").rglob("*.yml")))
    modules = set(re.findall(r"^\s*-?\s*((?:community|ansible)\.\w+\.\w+):", tasks, re.M))
    needs = set()
    if any(module.startswith("community.crypto.") for module in modules):
        needs.add("cryptography")  # its modules' cryptography backend
    if modules & {"community.docker.docker_swarm", "community.docker.docker_swarm_info", "community.docker.docker_node",
                  "community.docker.docker_swarm_service", "community.docker.docker_secret"}:
        needs.add("docker")  # the Docker SDK for Python
    if any(module.startswith("community.docker.") for module in modules):
        needs.add("requests")  # the vendored Docker API client
    assert needs == {"cryptography", "docker", "requests"}, modules
    assert requirement_names(REPO / "meta" / "ee-requirements.txt") == needs


def test_the_plugins_import_only_the_standard_library_and_ansible():
    allowed = set(sys.stdlib_module_names) | {"__future__", "ansible"}
    foreign = []
    for path in sorted((REPO / "plugins").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.startswith("ansible_collections."):
                    if not name.startswith("ansible_collections.nocobase.multienv."):
                        foreign.append("%s: %s" % (path.relative_to(REPO), name))
                elif name.split(".")[0] not in allowed:
                    foreign.append("%s: %s" % (path.relative_to(REPO), name))
    assert not foreign, "meta/ee-requirements.txt lists no package for: %s" % foreign
