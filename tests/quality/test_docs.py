"""ansible-doc renders every plugin and every role's argument spec of the collection."""
from __future__ import annotations

import os
import re
import subprocess
import textwrap
import sys
from pathlib import Path

import pytest

from conftest import COLLECTIONS_PATH, REPO

PLUGINS = sorted(
    [("module", path.stem) for path in (REPO / "plugins" / "modules").glob("*.py")]
    + [("lookup", path.stem) for path in (REPO / "plugins" / "lookup").glob("*.py")]
    + [("filter", path.stem) for path in (REPO / "plugins" / "filter").glob("*.yml")]
)
ROLES = sorted(path.parent.parent.name for path in (REPO / "roles").glob("*/meta/argument_specs.yml")
               if not path.parent.parent.name.startswith("_"))


def ansible_doc(*args):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, ANSIBLE_NOCOLOR="1")
    return subprocess.run([str(Path(sys.executable).with_name("ansible-doc")), *args],
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def test_every_plugin_is_listed():
    assert len(PLUGINS) >= 6
    listing = ansible_doc("-l", "nocobase.multienv")
    assert listing.returncode == 0, listing.stderr
    for plugin_type, name in PLUGINS:
        if plugin_type == "module":
            assert "nocobase.multienv.%s " % name in listing.stdout


@pytest.mark.parametrize("plugin_type, name", PLUGINS)
def test_plugin_doc_renders(plugin_type, name):
    result = ansible_doc("-t", plugin_type, "nocobase.multienv." + name)
    assert result.returncode == 0, result.stderr
    assert "[WARNING]" not in result.stderr, result.stderr
    assert "EXAMPLES" in result.stdout and "OPTIONS" in result.stdout


@pytest.mark.parametrize("role", ROLES)
def test_role_argument_spec_renders(role):
    result = ansible_doc("-t", "role", "nocobase.multienv." + role)
    assert result.returncode == 0, result.stderr
    assert re.search(r"ENTRY POINT: \*?main\*?", result.stdout), result.stdout[:500]


def test_the_protocol_quotes_the_consumers_scripts_verbatim():
    """docs/protocol.md shows a worker author the very Lua the reference consumer runs."""
    sys.path.insert(0, str(REPO / "roles" / "worker" / "files" / "agent"))
    import consumer

    text = (REPO / "docs" / "protocol.md").read_text()
    quoted = [textwrap.dedent(block).strip() for block in re.findall(r"```lua\n(.*?)```", text, re.S)]
    for script in (consumer.COMPLETE_LUA, consumer.ACK_LUA, consumer.EXTEND_LUA, consumer.RELEASE_LUA):
        assert script.strip() in quoted, script
