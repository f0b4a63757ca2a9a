"""The README's walkthrough, command for command, on the local Docker engine.

The shell blocks between <!-- walkthrough --> and <!-- /walkthrough --> in README.md run in order
from the repository root; after each one the test checks what the README says it does.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import redis

from conftest import REPO

PLATFORM = "nocobase"  # what inventories/offline (and so the walkthrough's copy) deploys


def walkthrough_blocks():
    text = (REPO / "README.md").read_text()
    section = text.split("<!-- walkthrough -->", 1)[1].split("<!-- /walkthrough -->", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def run_block(block):
    return subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=REPO, capture_output=True, text=True,
                          timeout=1800, check=False)


def containers():
    listing = subprocess.run(["docker", "ps", "-a", "--filter", "label=org.nocobase.multienv.platform=" + PLATFORM,
                              "--format", "{{.Names}} {{.State}}"], capture_output=True, text=True, check=True)
    return dict(line.split(" ", 1) for line in listing.stdout.splitlines())


SECRETS = Path.home() / ".local/share/nocobase-multienv/secrets" / PLATFORM


def environments():
    client = redis.Redis(host="127.0.0.1", port=16379, password=(SECRETS / "redis_password").read_text().strip(),
                         decode_responses=True, socket_timeout=10)
    return {name: json.loads(raw) for name, raw in client.hgetall("nocobase:environments").items()}


@pytest.fixture
def walkthrough():
    if containers():
        pytest.fail("a platform named %r already runs on this Docker engine; tear it down first" % PLATFORM)
    blocks = walkthrough_blocks()
    assert len(blocks) == 5
    yield blocks
    if (REPO / "my-platform").exists():
        run_block("make teardown INVENTORY=my-platform VOLUMES=true")
        shutil.rmtree(REPO / "my-platform", ignore_errors=True)


def test_readme_walkthrough(walkthrough):
    deploy, declare, reach, remove, teardown = walkthrough

    done = run_block(deploy)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    # Its last lines say where to sign in, with the file that holds the root password, never the password.
    last = done.stdout.split("PLAY RECAP")[0].rsplit("TASK [", 1)[1]
    for line in ("NocoBase is at http://127.0.0.1:13000/", "Supervisor (the entry app) admin: http://127.0.0.1:13000/admin/",
                 "Sign in as the root account root@example.com (username root).",
                 "Its password: in the file %s on the controller" % (SECRETS / "root_password")):
        assert line in last, last
    assert (SECRETS / "root_password").read_text().strip() not in done.stdout + done.stderr
    assert containers() == {name: "running" for name in (
        "nocobase-redis", "nocobase-postgres", "nocobase-supervisor", "nocobase-worker-env_a",
        "nocobase-worker-env_b", "nocobase-agent-env_a", "nocobase-agent-env_b", "nocobase-proxy")}
    assert sorted(environments()) == ["env_a", "env_b"]

    done = run_block(declare)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "App crm admin: http://127.0.0.1:13000/apps/crm/admin/" in done.stdout.split("PLAY RECAP")[0].rsplit("TASK [", 1)[1]

    done = run_block(reach)
    assert done.returncode == 0, done.stderr
    info, signed_in = done.stdout.splitlines()
    assert json.loads(info)["data"]["name"] == "crm"  # real NocoBase's sub-app, through the proxy
    assert signed_in == "200"  # its root account, with the password of the secrets directory

    done = run_block(remove)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "nocobase-worker-env_b" not in containers() and "nocobase-agent-env_b" not in containers()
    assert sorted(environments()) == ["env_a"]
    volumes = subprocess.run(["docker", "volume", "ls", "--format", "{{.Name}}"], capture_output=True, text=True, check=True)
    assert "nocobase-worker-env_b-storage" in volumes.stdout.split()

    done = run_block(teardown)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert containers() == {}
    assert not (REPO / "my-platform").exists()
