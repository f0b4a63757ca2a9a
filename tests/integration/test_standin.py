# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The NocoBase stand-in (tests/standin/server.py) as a process, against a real Redis."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers import producer, put_app, stop_processes, wait_for

from ansible_collections.nocobase.multienv.plugins.module_utils._keyspace import CONSUMER_GROUP, Keyspace

from conftest import free_port

SERVER = Path(__file__).resolve().parents[1] / "standin" / "server.py"
AES_KEY = "0123456789abcdef" * 4
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy


def http_get(port, path, headers=None):
    """(status, body) or None when nothing answers on the port."""
    request = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), headers=headers or {})
    try:
        with _OPENER.open(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


class StandIn:
    def __init__(self, proc, ports, log_path):
        self.proc, self.ports, self.log_path = proc, ports, log_path

    @property
    def port(self):
        return self.ports[0]

    def log(self):
        return self.log_path.read_text()

    def get(self, path, port=None, headers=None):
        return http_get(port or self.port, path, headers)

    def wait_healthy(self, timeout=15):
        def healthy():
            assert self.proc.poll() is None, "stand-in exited early:\n" + self.log()
            return self.get("/api/__health_check") == (200, "ok")
        wait_for(healthy, timeout=timeout, what="the health check")

    def state(self):
        code, body = self.get("/__standin/state")
        assert code == 200
        return json.loads(body)


@pytest.fixture
def standin(redis_server, key_prefix, tmp_path):
    procs = []

    def start(mode="worker", environment="env_a", **overrides):
        ports = [free_port(), free_port()]
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("APP_", "DB_", "STANDIN_", "ENVIRONMENT_")) and "ADPATER" not in k}
        env.update({
            "APP_MODE": mode,
            "APP_DISCOVERY_ADAPTER": "remote",
            "APP_PROCESS_ADAPTER": "remote" if mode == "supervisor" else "local",
            "APP_COMMAND_ADAPTER": "redis",
            "APP_SUPERVISOR_REDIS_URL": redis_server.url,
            "APP_COMMAND_REDIS_URL": redis_server.url,
            "APP_KEY": "a-test-app-key",
            "APP_AES_SECRET_KEY": AES_KEY,
            "APP_HOST": "127.0.0.1",
            "STANDIN_PORTS": ",".join(map(str, ports)),
            "STANDIN_KEY_PREFIX": key_prefix,
            "STANDIN_HEARTBEAT_SECONDS": "1",
            "STANDIN_STARTUP_SECONDS": "0.2",
        })
        if mode == "worker":
            env.update({"ENVIRONMENT_NAME": environment, "ENVIRONMENT_URL": "http://localhost:15000",
                        "ENVIRONMENT_PROXY_URL": "http://worker_a"})
        for key, value in overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        log_path = tmp_path / ("standin-%d.log" % len(procs))
        log = open(log_path, "w")
        proc = subprocess.Popen([sys.executable, str(SERVER)], env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append((proc, log))
        return StandIn(proc, ports, log_path)

    yield start
    stop_processes(procs)


@pytest.fixture
def plane(redis_server, key_prefix):
    """The collection's producer, on its own Redis client, as the modules use it."""
    plane = producer(redis_server.url, key_prefix)
    yield plane
    plane.client.close()


def test_worker_registers_heartbeats_consumes_and_serves(standin, rclient, key_prefix, plane):
    keys = Keyspace(key_prefix)
    node = standin(STANDIN_STARTUP_SECONDS="1.5")
    # Before it has booted, the health check says so the way NocoBase does.
    first = wait_for(lambda: node.get("/api/__health_check"), what="the port to open")
    assert first[0] == 503 and json.loads(first[1])["error"]["code"] == "APP_INITIALIZING"
    node.wait_healthy()
    assert node.get("/api/__health_check", port=node.ports[1]) == (200, "ok")  # nginx port and app port

    record = json.loads(rclient.hget(keys.environments, "env_a"))
    assert record == {"appVersion": "2.0.0-standin", "name": "env_a", "proxyUrl": "http://worker_a",
                      "url": "http://localhost:15000"}
    first_beat = int(rclient.hget(keys.heartbeats, "env_a"))
    wait_for(lambda: int(rclient.hget(keys.heartbeats, "env_a")) > first_beat, timeout=5, what="a second heartbeat")

    assert node.get("/apps/crm/admin") == (503, "app=crm environment=env_a status=not_found\n")
    put_app(rclient, keys, "crm", ["env_a"])
    result = plane.enqueue("crm", "start", environments=["env_a"])
    assert result["enqueued"] == ["env_a"]
    wait_for(lambda: node.get("/apps/crm/admin")[0] == 200, timeout=10, what="the app to be served")
    body = "app=crm environment=env_a status=running\n"
    assert node.get("/apps/crm/admin") == (200, body)
    assert node.get("/api/__app/crm/collections:list") == (200, body)
    assert node.get("/api/users:list", headers={"X-App": "crm"}) == (200, body)
    assert node.get("/apps/crm/admin", port=node.ports[1]) == (200, body)
    assert json.loads(rclient.hget(keys.status("crm"), "env_a"))["status"] == "running"
    assert rclient.xpending(keys.commands("env_a"), CONSUMER_GROUP)["pending"] == 0
    state = node.state()
    assert state["environment"] == "env_a" and state["running"] == ["crm"] and state["startCounts"] == {"crm": 1}

    started = time.monotonic()
    node.proc.terminate()
    assert node.proc.wait(timeout=5) == 0
    assert time.monotonic() - started < 2.0
    # A node that only stops keeps its record (protocol "On stop").
    assert rclient.hexists(keys.environments, "env_a")


def test_sigterm_in_the_middle_of_a_start_is_fast(standin, rclient, key_prefix, plane):
    keys = Keyspace(key_prefix)
    node = standin(STANDIN_START_SECONDS="30")
    node.wait_healthy()
    put_app(rclient, keys, "crm", ["env_a"])
    plane.enqueue("crm", "start", environments=["env_a"])
    wait_for(lambda: (json.loads(rclient.hget(keys.status("crm"), "env_a") or "{}")).get("status") == "initializing",
             timeout=10, what="the start to begin")
    assert node.get("/apps/crm/") == (503, "app=crm environment=env_a status=initializing\n")
    started = time.monotonic()
    node.proc.terminate()
    assert node.proc.wait(timeout=5) == 0
    assert time.monotonic() - started < 2.0
    # Not acknowledged: another replica or the restarted node carries it out; the lock was let go.
    assert rclient.xpending(keys.commands("env_a"), CONSUMER_GROUP)["pending"] == 1
    assert not rclient.exists(keys.lock("crm"))


def test_supervisor(standin, rclient, key_prefix):
    keys = Keyspace(key_prefix)
    node = standin(mode="supervisor")
    node.wait_healthy()
    assert node.get("/") == (200, "nocobase supervisor\n")
    assert node.get("/apps/crm/admin") == (200, "app=crm served-by=supervisor\n")
    assert node.state()["mode"] == "supervisor"
    assert not rclient.exists(keys.environments)  # a supervisor is not an environment


def test_database_wait_records_the_database(standin, redis_server):
    # Any TCP listener stands for PostgreSQL here: the stand-in only checks that it accepts connections.
    node = standin(DB_DIALECT="postgres", DB_HOST="127.0.0.1", DB_PORT=str(redis_server.port),
                   DB_DATABASE="nocobase_env_a", DB_USER="nocobase", DB_PASSWORD="secret")
    node.wait_healthy()
    assert node.state()["database"]["database"] == "nocobase_env_a"
    assert "secret" not in node.log()


def test_unreachable_database_fails_the_start(standin):
    node = standin(DB_HOST="127.0.0.1", DB_PORT=str(free_port()), STANDIN_DB_WAIT_SECONDS="1")
    assert node.proc.wait(timeout=10) == 1
    assert "not reachable" in node.log()


def test_misspelt_command_adapter_is_fatal(standin):
    node = standin(APP_COMMAND_ADAPTER=None, APP_COMMAND_ADPATER="redis")
    assert node.proc.wait(timeout=10) == 2
    assert "APP_COMMAND_ADPATER" in node.log()


def test_missing_command_adapter_warns_and_does_not_consume(standin, rclient, key_prefix):
    keys = Keyspace(key_prefix)
    node = standin(APP_COMMAND_ADAPTER=None)
    node.wait_healthy()
    assert "SILENTLY LOST" in node.log()
    assert node.state()["consuming"] is False
    assert rclient.hexists(keys.environments, "env_a")  # discovery still registers the environment


@pytest.mark.parametrize("key", ["short-key", AES_KEY[:-1] + "g", AES_KEY + "00"])
def test_bad_aes_key_is_rejected(standin, key):
    node = standin(APP_AES_SECRET_KEY=key)
    assert node.proc.wait(timeout=10) == 2
    assert "APP_AES_SECRET_KEY must be 64 hex characters" in node.log()
    assert key not in node.log()


def test_newer_schema_stops_the_worker(standin, rclient, key_prefix):
    rclient.set(Keyspace(key_prefix).schema, "2")
    node = standin()
    assert node.proc.wait(timeout=10) == 1
    assert "schema version 2 is newer" in node.log()
