"""The modules and the lookup through a real ansible-playbook run."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import COLLECTIONS_PATH

PLAYBOOKS = Path(__file__).parent / "playbooks"


def ansible_playbook(playbook, extra_vars, **kwargs):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    args = [str(Path(sys.executable).with_name("ansible-playbook")), str(PLAYBOOKS / playbook),
            "-e", "ansible_python_interpreter=" + sys.executable]
    for key, value in extra_vars.items():  # key "@": value is a file of variables
        args += ["-e", "@%s" % value if key == "@" else "%s=%s" % (key, value)]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, check=False, **kwargs)


def test_control_plane_playbook(redis_server, key_prefix, tmp_path):
    output = tmp_path / "routes.txt"
    run = ansible_playbook("control_plane.yml", {
        "test_redis_url": redis_server.url, "test_key_prefix": key_prefix, "test_output": output})
    assert run.returncode == 0, run.stdout + run.stderr
    assert output.read_text() == "crm -> http://worker_b\n"
    assert redis_server.password not in run.stdout + run.stderr
