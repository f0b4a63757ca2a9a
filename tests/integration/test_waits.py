"""The waits that poll inside one task: health_check against the NocoBase stand-in, and
environment_info's wait_timeout against a real Redis."""
from __future__ import annotations

import json
import threading
import time

import pytest
from helpers import ModuleFailed, run, start_standin

from ansible_collections.nocobase.multienv.plugins.module_utils._keyspace import now_ms
from conftest import free_port

ROOT = {"INIT_ROOT_EMAIL": "root@platform.test", "INIT_ROOT_PASSWORD": "Root-pass-4711-xyz"}


def test_health_check_waits_for_a_slow_node_and_signs_in(processes, tmp_path):
    node = start_standin(processes, tmp_path / "node", [free_port()], STANDIN_STARTUP_SECONDS="2.5", **ROOT)
    result = run("health_check", dict(url=node.url, interval=0.5, timeout=30, root_account="root@platform.test",
                                      root_password="Root-pass-4711-xyz"))
    assert result["changed"] is False and result["elapsed"] >= 2 and result["attempts"] > 1
    assert result["signed_in"] is True and result["sign_in_status"] == 200
    refused = run("health_check", dict(url=node.url, root_account="root@platform.test", root_password="wrong"))
    assert refused["signed_in"] is False and refused["sign_in_status"] == 401
    assert refused["attempts"] == 1  # healthy already: no wait


def test_health_check_times_out_with_the_last_answer(processes, tmp_path):
    port = free_port()
    with pytest.raises(ModuleFailed) as failed:
        run("health_check", dict(url="http://127.0.0.1:%d" % port, timeout=1.5, interval=0.5))
    message = str(failed.value)
    assert message.startswith("http://127.0.0.1:%d/api/__health_check did not answer 'ok' within 1.5 s" % port)
    assert "last: no answer (" in message and "refused" in message.lower()
    node = start_standin(processes, tmp_path / "node", [free_port()], **ROOT)
    node.wait_healthy()
    with pytest.raises(ModuleFailed, match=r"did not answer 'ready' within 1 s \(\d+ requests\); last: HTTP 200 'ok'"):
        run("health_check", dict(url=node.url, expect="ready", timeout=1, interval=0.3))


def test_environment_info_waits_inside_the_task(conn, rclient, keys):
    run("environment", dict(conn, environments=[dict(name="env_a", url="http://a"), dict(name="env_b", url="http://b")]))
    rclient.hset(keys.heartbeats, "env_a", now_ms())
    with pytest.raises(ModuleFailed) as failed:
        run("environment_info", dict(conn, names=["env_a", "env_b", "env_c"], wait_timeout=1, wait_interval=0.2))
    assert str(failed.value) == "not available after 1 s (stale_after 360 s): env_b (never beat), env_c (not registered)"

    def beat_later():
        time.sleep(0.6)
        rclient.hset(keys.heartbeats, "env_b", now_ms())

    threading.Thread(target=beat_later, daemon=True).start()
    result = run("environment_info", dict(conn, names=["env_a", "env_b"], wait_timeout=10, wait_interval=0.2))
    assert 0.4 <= result["waited"] < 5 and all(e["available"] for e in result["environments"])
    with pytest.raises(ModuleFailed, match="wait_timeout: name the environments"):
        run("environment_info", dict(conn, wait_timeout=5))


def test_health_check_reports_the_version_and_waits_for_the_apps(processes, tmp_path):
    node = start_standin(processes, tmp_path / "node", [free_port()], STANDIN_APP_VERSION="2.1.0-beta.3", **ROOT)
    healthy = run("health_check", dict(url=node.url, interval=0.3, timeout=30, read_version=True))
    assert healthy["version"] == "2.1.0-beta.3"
    assert "version" not in run("health_check", dict(url=node.url))
    # An app that is not there is named with the node's last answer, and the task fails.
    with pytest.raises(ModuleFailed) as failed:
        run("health_check", dict(url=node.url, apps=["crm"], timeout=1.5, interval=0.3))
    assert "apps that did not answer as themselves within 1.5 s: crm (HTTP 404" in str(failed.value)
    with pytest.raises(ModuleFailed, match=r"apps: 'crm; rm' is not an app name"):
        run("health_check", dict(url=node.url, apps=["crm; rm"]))
    # Created (and started) a moment later, it is waited for inside the task.
    token = node.token(ROOT["INIT_ROOT_EMAIL"], ROOT["INIT_ROOT_PASSWORD"])
    threading.Timer(0.8, lambda: node.request("/api/applications:create", "POST", {"name": "crm"}, token=token)).start()
    answered = run("health_check", dict(url=node.url, apps=["crm"], timeout=20, interval=0.3))
    assert answered["elapsed"] >= 0.5


def test_environment_info_waits_for_a_version(conn, rclient, keys):
    run("environment", dict(conn, name="env_a", url="http://a", app_version="2.0.0"))
    rclient.hset(keys.heartbeats, "env_a", now_ms())
    with pytest.raises(ModuleFailed) as failed:
        run("environment_info", dict(conn, names=["env_a"], app_version="2.0.1", wait_timeout=1, wait_interval=0.2))
    assert str(failed.value) == ("not available with appVersion 2.0.1 after 1 s (stale_after 360 s): "
                                 "env_a (appVersion 2.0.0, not 2.0.1)")
    # The new version arrives as the agent writes it, meanwhile. Not by a second in-process module run:
    # two at once would share this process's stdout and module arguments.
    record = json.loads(rclient.hget(keys.environments, "env_a"))
    upgraded = json.dumps(dict(record, appVersion="2.0.1"), separators=(",", ":"), sort_keys=True)
    threading.Timer(0.6, lambda: rclient.hset(keys.environments, "env_a", upgraded)).start()
    result = run("environment_info", dict(conn, names=["env_a"], app_version="2.0.1", wait_timeout=10, wait_interval=0.2))
    assert result["environments"][0]["appVersion"] == "2.0.1" and result["waited"] >= 0.4
    with pytest.raises(ModuleFailed, match="app_version: '2.0.1' must be a version, and is waited for with wait_timeout"):
        run("environment_info", dict(conn, names=["env_a"], app_version="2.0.1"))
