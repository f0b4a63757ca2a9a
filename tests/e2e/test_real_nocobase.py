"""The platform on REAL NocoBase: the image tools/nocobase-image.sh builds from the npm registry.

inventories/offline (real NocoBase, port 13000) with the same overlay as the stand-in tests (own
name, ports, secrets): supervisor, two workers with their agents, the proxy, and two apps, crm in
[env_a, env_b] and hr in [env_b]. Everything the agent does here goes through NocoBase's own
multi-app manager API.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
from datetime import datetime

import pytest
import yaml
from harness import Platform, recap_changed

from conftest import REPO

IMAGE = "nocobase-multienv/nocobase:offline"
APPS = [
    {"name": "crm", "title": "CRM", "environments": ["env_a", "env_b"]},
    {"name": "hr", "title": "HR", "environments": ["env_b"]},
]
VERSION = (REPO / "tools" / "nocobase-image" / "VERSION").read_text().strip()


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    inspected = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, text=True, check=False)
    assert inspected.returncode == 0, "%s is missing: tools/setup.sh --offline-images builds it" % IMAGE
    platform = Platform(tmp_path_factory.mktemp("real"))
    settings = platform.overlay / "group_vars" / "all" / "e2e.yml"
    variables = yaml.safe_load(settings.read_text())
    for stand_in_only in ("nocobase_image", "nocobase_extra_env", "worker_agent_extra_env", "nocobase_stale_after"):
        variables.pop(stand_in_only)
    variables.update({"apps_list": APPS, "apps_wait_timeout": 900, "worker_agent_heartbeat_interval": 10})
    settings.write_text(yaml.safe_dump(variables))
    started = time.monotonic()
    try:
        platform.cold = platform.playbook("site.yml", timeout=2700)
        platform.cold_seconds = time.monotonic() - started
        yield platform
    finally:
        platform.playbook("teardown.yml", check=False)


def app_info(platform, app, port=None, via_header=False):
    """(HTTP status, data.name or the body) of a sub-app's own app:getInfo."""
    if via_header:
        status, body = platform.get("/api/app:getInfo", {"X-App": app}, port=port)
    else:
        status, body = platform.get("/api/__app/%s/app:getInfo" % app, port=port)
    try:
        return status, json.loads(body)["data"]["name"]
    except (ValueError, KeyError, TypeError):
        return status, body[:300]


def agent_log_times(platform, env, pattern):
    """Times of the agent's log lines that match pattern."""
    log = platform.docker("logs", platform.container("agent-" + env)).stdout
    stamps = re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \[nocobase-agent\] \w+ .*%s" % pattern, log, flags=re.M)
    return [datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f") for stamp in stamps]


def test_the_apps_answer_as_themselves_through_the_proxy(real):
    for app in ("crm", "hr"):
        assert app_info(real, app) == (200, app)
        assert app_info(real, app, via_header=True) == (200, app)
        status, body = real.get("/apps/%s/admin/" % app)
        assert status == 200 and "<html" in body.lower(), (app, status, body[:300])
    # crm runs in both environments; each worker answers for it directly too.
    for env in ("env_a", "env_b"):
        assert app_info(real, "crm", port=real.ports[env]) == (200, "crm")
    status, body = real.get("/api/app:getInfo")
    assert status == 200 and json.loads(body)["data"]["version"] == VERSION  # the supervisor


def test_every_environment_reports_the_real_version(real):
    records = real.redis().hgetall("nocobase:environments")
    for env in ("env_a", "env_b"):
        assert json.loads(records[env])["appVersion"] == VERSION


def test_the_first_environment_ran_before_the_second_started(real):
    first, second = real.status("crm", "env_a"), real.status("crm", "env_b")
    assert first["status"] == second["status"] == "running"
    assert first["requestId"] == second["requestId"]
    assert first["updatedAt"] < second["updatedAt"]
    running_in_a = agent_log_times(real, "env_a", "start crm -> running")
    starting_in_b = agent_log_times(real, "env_b", "starting crm")
    assert len(running_in_a) == 1 and len(starting_in_b) == 1
    assert starting_in_b[0] >= running_in_a[0]  # env_b began only after env_a's install had ended
    assert real.status("hr", "env_b")["status"] == "running"


def test_the_default_root_password_is_refused_everywhere(real):
    for node in ("supervisor", "env_a", "env_b"):
        port = real.ports[node]
        assert real.sign_in(port, "admin@nocobase.com", "admin123") == 401, node
        assert real.sign_in(port, "root@example.com", "admin123") == 401, node
        assert real.sign_in(port, "root@example.com", real.root_password) == 200, node


def test_a_second_converge_changes_nothing(real):
    again = real.playbook("site.yml", timeout=1800)
    assert set(recap_changed(again.stdout).values()) == {0}, again.stdout[-6000:]


def test_a_restarted_worker_brings_its_apps_back(real):
    real.docker("restart", real.container("worker-env_b"))
    started = time.monotonic()
    real.wait(lambda: app_info(real, "hr") == (200, "hr") and app_info(real, "crm", port=real.ports["env_b"]) == (200, "crm"),
              timeout=600, what="hr and crm back in env_b")
    print("apps back %.1f s after docker restart" % (time.monotonic() - started))
    for app in ("crm", "hr"):
        assert real.status(app, "env_b")["status"] == "running"
    assert app_info(real, "crm", port=real.ports["env_a"]) == (200, "crm")  # env_a untouched
