# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The NocoBase stand-in (tests/standin/server.py), a fake NocoBase HTTP API, as a process.

The stand-in never talks to Redis: it is what the worker agent (tests/integration/test_agent.py)
drives in place of NocoBase, so these tests pin the parts of NocoBase's HTTP API it fakes.
"""
from __future__ import annotations

import json
import os
import socket
import stat
import time
import urllib.parse

import pytest
from helpers import start_standin, wait_for

from conftest import free_port

AES_KEY = "0123456789abcdef" * 4
ROOT_EMAIL = "root@platform.test"
ROOT_USERNAME = "platform_root"
ROOT_PASSWORD = "first-Root-pass-1"
DEFAULT_ROOT = ("admin@nocobase.com", "admin123")


@pytest.fixture
def standin(processes, tmp_path):
    """start(**env overrides) -> a stand-in on two free ports with its own state directory."""

    def start(**overrides):
        settings = {"APP_AES_SECRET_KEY": AES_KEY, "INIT_ROOT_EMAIL": ROOT_EMAIL, "INIT_ROOT_USERNAME": ROOT_USERNAME,
                    "INIT_ROOT_PASSWORD": ROOT_PASSWORD}
        settings.update(overrides)
        return start_standin(processes, tmp_path / "storage", [free_port(), free_port()], **settings)

    return start


def error_code(answer):
    """The code of either error wrapper (gateway `error`, action `errors`)."""
    body = answer[1]
    if "error" in body:
        return body["error"]["code"]
    return body["errors"][0].get("code")


def apps_path(action, **params):
    query = urllib.parse.urlencode(params)
    return "/api/applications:%s%s" % (action, "?" + query if query else "")


# ------------------------------------------------------------------------------------------ boot


def test_health_check_initializing_then_ok_on_both_ports(standin):
    node = standin(STANDIN_STARTUP_SECONDS="1.5")
    first = wait_for(lambda: node.request("/api/__health_check"), timeout=10, what="the port to open")
    # Before it has booted, the health check says so the way NocoBase does, on both ports.
    assert first[0] == 503 and first[1]["error"]["code"] == "APP_INITIALIZING", first
    second = node.request("/api/__health_check", port=node.ports[1])
    assert second[0] == 503 and error_code(second) == "APP_INITIALIZING", second
    assert node.sign_in(ROOT_EMAIL, ROOT_PASSWORD)[0] == 503
    assert node.state()["booted"] is False
    node.wait_healthy()
    assert node.request("/api/__health_check", port=node.ports[1]) == (200, "ok")  # nginx port and app port
    assert node.request("/api/app:getInfo") == (200, {"data": {"lang": "en-US", "name": "main",
                                                               "version": "2.0.0-standin"}})
    state = node.state()
    assert state["booted"] is True and state["environment"] == "env_a" and state["mode"] == "worker"
    assert state["rootAccount"] == ROOT_EMAIL and state["applications"] == []
    # Its "database": the root password is stored as a salted digest, readable by the owner only.
    db_file = node.env["STANDIN_STATE_DIR"] + "/standin-db.json"
    with open(db_file) as handle:
        assert ROOT_PASSWORD not in handle.read()
    assert stat.S_IMODE(os.stat(db_file).st_mode) == 0o600
    assert ROOT_PASSWORD not in node.log()


def test_database_wait_records_the_database(standin):
    # Any TCP listener stands for PostgreSQL here: the stand-in only checks that it accepts connections.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        node = standin(DB_DIALECT="postgres", DB_HOST="127.0.0.1", DB_PORT=str(listener.getsockname()[1]),
                       DB_DATABASE="nocobase_env_a", DB_USER="nocobase", DB_PASSWORD="db-secret-42")
        node.wait_healthy()
    assert node.state()["database"] == {"database": "nocobase_env_a", "dialect": "postgres", "host": "127.0.0.1",
                                        "port": int(node.env["DB_PORT"])}
    assert "db-secret-42" not in node.log()


def test_unreachable_database_fails_the_start(standin):
    node = standin(DB_HOST="127.0.0.1", DB_PORT=str(free_port()), STANDIN_DB_WAIT_SECONDS="1")
    assert node.process.proc.wait(timeout=10) == 1
    assert "not reachable" in node.log()


def test_misspelt_adapter_variable_is_fatal(standin):
    node = standin(APP_COMMAND_ADPATER="redis")
    assert node.process.proc.wait(timeout=10) == 2
    assert "APP_COMMAND_ADPATER" in node.log()


@pytest.mark.parametrize("key", ["short-key", AES_KEY[:-1] + "g", AES_KEY + "00"])
def test_bad_aes_key_is_rejected(standin, key):
    node = standin(APP_AES_SECRET_KEY=key)
    assert node.process.proc.wait(timeout=10) == 2
    assert "APP_AES_SECRET_KEY must be 64 hex characters" in node.log()
    assert key not in node.log()


def test_sigterm_in_the_middle_of_a_start_is_fast(standin):
    node = standin(STANDIN_START_SECONDS="30")
    node.wait_healthy()
    token = node.token(ROOT_EMAIL, ROOT_PASSWORD)
    assert node.request(apps_path("create"), "POST", {"name": "crm"}, token=token)[0] == 200
    assert node.state()["apps"] == {"crm": "initializing"}
    started = time.monotonic()
    assert node.process.terminate() == 0
    assert time.monotonic() - started < 2.0


# ------------------------------------------------------------------------------------------ sign-in


def test_sign_in_accepts_the_init_root_account_only(standin):
    node = standin()
    node.wait_healthy()
    for account in (ROOT_EMAIL, ROOT_USERNAME):
        code, body = node.sign_in(account, ROOT_PASSWORD)
        assert code == 200, body
        assert isinstance(body["data"]["token"], str) and len(body["data"]["token"]) >= 16
        assert body["data"]["user"] == {"id": 1, "email": ROOT_EMAIL, "username": ROOT_USERNAME}
    # NocoBase's first-install default does not work once INIT_ROOT_PASSWORD was set.
    refused = node.sign_in(ROOT_EMAIL, "admin123")
    assert refused[0] == 401 and "incorrect" in refused[1]["errors"][0]["message"], refused
    assert node.sign_in(*DEFAULT_ROOT)[0] == 401
    assert node.sign_in("someone@else.test", ROOT_PASSWORD)[0] == 401
    # The basic authenticator must be named, as NocoBase requires.
    no_authenticator = node.request("/api/auth:signIn", "POST", {"account": ROOT_EMAIL, "password": ROOT_PASSWORD})
    assert no_authenticator[0] == 400, no_authenticator
    assert ROOT_PASSWORD not in node.log()


def test_default_root_account_without_init_root(standin):
    node = standin(INIT_ROOT_EMAIL=None, INIT_ROOT_USERNAME=None, INIT_ROOT_PASSWORD=None)
    node.wait_healthy()
    assert node.sign_in(*DEFAULT_ROOT)[0] == 200
    assert node.sign_in("nocobase", "admin123")[0] == 200
    assert node.sign_in(ROOT_EMAIL, ROOT_PASSWORD)[0] == 401
    assert node.state()["rootAccount"] == DEFAULT_ROOT[0]


def test_restart_keeps_the_first_credentials_and_the_apps(standin):
    node = standin()
    node.wait_healthy()
    token = node.token(ROOT_EMAIL, ROOT_PASSWORD)
    assert node.request(apps_path("create"), "POST", {"name": "crm"}, token=token)[0] == 200
    assert node.process.terminate() == 0
    # INIT_ROOT_* only matter at the first install: a restart with other values keeps the first ones.
    again = node.restart(INIT_ROOT_EMAIL="other@platform.test", INIT_ROOT_PASSWORD="second-Root-pass-2")
    again.wait_healthy()
    assert again.sign_in("other@platform.test", "second-Root-pass-2")[0] == 401
    assert again.sign_in(ROOT_EMAIL, "second-Root-pass-2")[0] == 401
    token = again.token(ROOT_EMAIL, ROOT_PASSWORD)
    assert "INIT_ROOT_* are ignored" in again.log()
    assert again.state()["rootAccount"] == ROOT_EMAIL
    listed = again.request(apps_path("list"), token=token)
    assert [row["name"] for row in listed[1]["data"]] == ["crm"]


# ------------------------------------------------------------------------------------------ applications:*


def test_applications_need_a_token(standin):
    node = standin()
    node.wait_healthy()
    for path, method in ((apps_path("list"), "GET"), (apps_path("create"), "POST"),
                         (apps_path("start", filterByTk="crm"), "POST")):
        answer = node.request(path, method, {"name": "crm"} if method == "POST" else None)
        assert answer[0] == 401 and error_code(answer) == "EMPTY_TOKEN", (path, answer)
        assert node.request(path, method, {"name": "crm"} if method == "POST" else None,
                            token="0" * 32)[0] == 401
    assert node.state()["applications"] == []  # nothing was created without a token


def test_applications_need_the_multi_app_manager(standin):
    node = standin(APPEND_PRESET_BUILT_IN_PLUGINS="@nocobase/plugin-something-else")
    node.wait_healthy()
    assert "@nocobase/plugin-multi-app-manager" in node.log()  # the warning names the missing plugin
    token = node.token(ROOT_EMAIL, ROOT_PASSWORD)
    for path, method in ((apps_path("list"), "GET"), (apps_path("create"), "POST")):
        answer = node.request(path, method, {"name": "crm"} if method == "POST" else None, token=token)
        assert answer[0] == 404, answer
    assert node.state()["applications"] == []


def test_applications_lifecycle_shapes(standin):
    node = standin()
    node.wait_healthy()
    token = node.token(ROOT_EMAIL, ROOT_PASSWORD)

    def call(action, body=None, method="POST", **params):
        return node.request(apps_path(action, **params), method, body, token=token)

    created = call("create", {"name": "crm", "displayName": "CRM", "cname": "crm.example.test",
                              "options": {"autoStart": True, "dbConnType": "new_database"}})
    assert created == (200, {"data": {"name": "crm"}})
    for bad in ({"name": "crm"}, {"name": "main"}, {"name": "Bad-Name"}, {}):
        assert call("create", bad)[0] == 400, bad  # unique, not main, a NocoBase app name
    assert call("create", {"name": "hr"})[0] == 200
    assert call("create", method="GET")[0] == 405
    wait_for(lambda: node.state()["apps"] == {"crm": "running", "hr": "running"}, timeout=5, what="both running")

    code, listed = call("list", method="GET")
    assert code == 200
    assert listed["data"] == [
        {"cname": "crm.example.test", "displayName": "CRM", "name": "crm",
         "options": {"autoStart": True, "dbConnType": "new_database"}, "status": "running"},
        {"cname": None, "displayName": None, "name": "hr", "options": {}, "status": "running"}]
    assert listed["meta"] == {"count": 2, "page": 1, "pageSize": 20, "totalPage": 1}
    one = call("list", method="GET", filter=json.dumps({"name": "hr"}), pageSize=1)[1]
    assert [row["name"] for row in one["data"]] == ["hr"] and one["meta"]["count"] == 1
    page2 = call("list", method="GET", page=2, pageSize=1)[1]
    assert [row["name"] for row in page2["data"]] == ["hr"] and page2["meta"]["totalPage"] == 2

    # The sub-app, in NocoBase's three request forms and the client path.
    info = {"data": {"lang": "en-US", "name": "crm", "version": "2.0.0-standin"}}
    assert node.request("/api/__app/crm/app:getInfo") == (200, info)
    assert node.request("/api/app:getInfo", headers={"X-App": "crm"}) == (200, info)
    assert node.request("/api/app:getInfo?__appName=crm") == (200, info)
    assert node.request("/apps/crm/admin") == (200, "app=crm environment=env_a status=running\n")

    assert call("stop", filterByTk="crm") == (200, {"data": "ok"})
    assert node.state()["apps"]["crm"] == "stopped"
    stopped = node.request("/api/__app/crm/app:getInfo")
    assert stopped[0] == 503 and error_code(stopped) == "APP_STOPPED", stopped
    assert node.request("/apps/crm/admin") == (503, "app=crm environment=env_a status=stopped\n")

    updated = call("update", {"options": {"autoStart": False}}, filterByTk="crm")
    assert updated[0] == 200 and updated[1]["data"][0]["options"] == {"autoStart": False}
    assert call("update", {"options": {}}, filterByTk="ghost")[0] == 404

    assert call("start", filterByTk="crm") == (200, {"data": "ok"})
    wait_for(lambda: node.state()["apps"]["crm"] == "running", timeout=5, what="crm running again")
    assert node.state()["startCounts"] == {"crm": 2, "hr": 1}

    assert call("destroy", filterByTk="crm") == (200, {"data": 1})
    assert call("destroy", filterByTk="crm") == (200, {"data": 0})
    assert [row["name"] for row in call("list", method="GET")[1]["data"]] == ["hr"]
    gone = node.request("/api/__app/crm/app:getInfo")
    assert gone[0] == 404 and error_code(gone) == "APP_NOT_FOUND", gone
    assert node.request("/apps/crm/admin") == (503, "app=crm environment=env_a status=not_found\n")


def test_slow_and_failing_starts(standin):
    node = standin(STANDIN_START_SECONDS="1")
    node.wait_healthy()
    token = node.token(ROOT_EMAIL, ROOT_PASSWORD)
    assert node.request(apps_path("create"), "POST", {"name": "crm"}, token=token)[0] == 200
    assert node.request(apps_path("create"), "POST", {"name": "bad", "options": {"standinFailStart": "boom"}},
                        token=token)[0] == 200
    starting = node.request("/api/__app/crm/app:getInfo")
    assert starting[0] == 503 and error_code(starting) == "APP_INITIALIZING", starting
    wait_for(lambda: node.state()["apps"] == {"bad": "error", "crm": "running"}, timeout=5, what="both settled")
    failed = node.request("/api/__app/bad/app:getInfo")
    assert failed[0] == 503 and failed[1]["error"] == {"code": "APP_ERROR", "message": "boom", "status": 503}
    rows = node.request(apps_path("list"), token=token)[1]["data"]
    assert {row["name"]: row["status"] for row in rows} == {"bad": "error", "crm": "running"}
    assert node.state()["startCounts"] == {"crm": 1}


def test_auto_start_apps_come_back_after_a_restart(standin):
    node = standin()
    node.wait_healthy()
    token = node.token(ROOT_EMAIL, ROOT_PASSWORD)
    for name, auto in (("crm", True), ("hr", False)):
        assert node.request(apps_path("create"), "POST", {"name": name, "options": {"autoStart": auto}},
                            token=token)[0] == 200
    wait_for(lambda: node.state()["running"] == ["crm", "hr"], timeout=5, what="both running")
    assert node.process.terminate() == 0
    again = node.restart()
    again.wait_healthy()
    # NocoBase's multi-app manager starts the apps with options.autoStart after the main app.
    wait_for(lambda: again.state()["apps"] == {"crm": "running", "hr": "stopped"}, timeout=5,
             what="crm started again, hr left stopped")
    assert again.state()["startCounts"] == {"crm": 1}


def test_replicas_sharing_one_storage_volume_share_their_database_and_tokens(processes, tmp_path):
    """Two replicas of one worker (Docker Swarm, worker_replicas) on one storage directory: one
    install, a token from either is good on both, an app created on one is in the other's table and
    boots there on its first request (it has autoStart), and a stop reaches only the replica asked."""
    def replica(storage, app_key):
        return start_standin(processes, tmp_path / storage, [free_port(), free_port()], APP_KEY=app_key,
                             APP_AES_SECRET_KEY=AES_KEY, INIT_ROOT_EMAIL=ROOT_EMAIL, INIT_ROOT_USERNAME=ROOT_USERNAME,
                             INIT_ROOT_PASSWORD=ROOT_PASSWORD)

    first, second = replica("storage", "shared-app-key-1"), replica("storage", "shared-app-key-1")
    first.wait_healthy()
    second.wait_healthy()
    token = first.token(ROOT_EMAIL, ROOT_PASSWORD)
    assert second.request(apps_path("list"), token=token)[0] == 200, "a token of the other replica"
    other_key = replica("other", "another-app-key")
    other_key.wait_healthy()
    assert other_key.request(apps_path("list"), token=token)[0] == 401, "a token signed with another APP_KEY"

    assert first.request(apps_path("create"), "POST", {"name": "crm", "options": {"autoStart": True}},
                         token=token)[0] == 200
    assert first.request(apps_path("create"), "POST", {"name": "hr"}, token=second.token(ROOT_EMAIL, ROOT_PASSWORD))[0] == 200
    listed = second.request(apps_path("list"), token=token)
    assert sorted(row["name"] for row in listed[1]["data"]) == ["crm", "hr"]
    assert second.state()["running"] == []
    wait_for(lambda: second.request("/api/__app/crm/app:getInfo")[0] == 200, timeout=5, what="crm on the second")
    assert second.state()["startCounts"] == {"crm": 1}  # booted there on demand
    assert error_code(second.request("/api/__app/hr/app:getInfo")) == "APP_STOPPED"  # no autoStart: not booted

    assert second.request(apps_path("stop", filterByTk="crm"), "POST", token=token)[0] == 200
    assert error_code(second.request("/api/__app/crm/app:getInfo")) == "APP_STOPPED"
    assert first.request("/api/__app/crm/app:getInfo")[0] == 200  # no cluster-mode sync between replicas
    assert json.loads((tmp_path / "storage" / "standin-db.json").read_text())["root"]["email"] == ROOT_EMAIL
