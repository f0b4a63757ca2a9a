"""The worker agent reaches its worker's apps through one interface (backend.Backend) only, so that a
second backend (NocoBase 3's app API, say) is one new class (docs/agent.md, "The backend")."""
from __future__ import annotations

import ast
import inspect
import sys

import pytest

from conftest import REPO

AGENT_DIR = REPO / "roles" / "worker" / "files" / "agent"
sys.path.insert(0, str(AGENT_DIR))

import backend  # noqa: E402
import nocobase_api  # noqa: E402


def backend_calls(path):
    """Names of the attributes used on `self.backend` in a module."""
    tree = ast.parse(path.read_text())
    return {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute) and node.value.attr == "backend"}


def test_the_agent_uses_nothing_of_its_backend_but_the_interface():
    used = backend_calls(AGENT_DIR / "agent.py")
    assert used, "the agent calls its backend"
    assert used <= set(backend.Backend.__abstractmethods__), used - set(backend.Backend.__abstractmethods__)


def imported_modules(path):
    tree = ast.parse(path.read_text())
    return ({alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
            | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module})


@pytest.mark.parametrize("module", ["agent.py", "consumer.py", "backend.py"])
def test_only_the_backend_implementation_speaks_http(module):
    assert not imported_modules(AGENT_DIR / module) & {"urllib.request", "urllib.error", "http.client"}
    assert "urllib.request" in imported_modules(AGENT_DIR / "nocobase_api.py")


def test_the_multi_app_manager_backend_implements_every_method_with_its_signature():
    assert issubclass(nocobase_api.MultiAppManager, backend.Backend)
    assert not nocobase_api.MultiAppManager.__abstractmethods__
    for name in backend.Backend.__abstractmethods__:
        assert (inspect.signature(getattr(nocobase_api.MultiAppManager, name))
                == inspect.signature(getattr(backend.Backend, name))), name


def test_a_backend_missing_a_method_cannot_be_made():
    class Partial(backend.Backend):
        def health(self):
            return True, "ok"

    with pytest.raises(TypeError, match="abstract"):
        Partial()


@pytest.mark.parametrize(("status", "unreachable"), [(None, True), (502, True), (504, True), (500, False),
                                                     (401, False), (404, False)])
def test_a_failure_defers_a_command_only_when_the_backend_did_not_answer(status, unreachable):
    assert backend.BackendError("x", status).unreachable is unreachable
