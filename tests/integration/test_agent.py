# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The worker agent (roles/worker/files/agent/agent.py) as a process, against stand-in NocoBase nodes
(tests/standin/server.py) and a real Redis; commands come from the collection's producer.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import pytest
from helpers import AGENT, clean_env, start_standin, wait_for
from test_hostile_records import DEEP, DEEP_OBJECT

from ansible_collections.nocobase.multienv.plugins.module_utils._keyspace import CONSUMER_GROUP

from conftest import free_port

ROOT_EMAIL = "root@platform.test"
ROOT_PASSWORD = "Root-pass-4711-xyz"


@pytest.fixture
def node(processes, tmp_path):
    """node(env, port, **env overrides) -> a stand-in worker of `env` with its own storage, root account ROOT_*."""

    def start(env="env_a", port=None, **overrides):
        settings = {"ENVIRONMENT_NAME": env, "INIT_ROOT_EMAIL": ROOT_EMAIL, "INIT_ROOT_PASSWORD": ROOT_PASSWORD}
        settings.update(overrides)
        return start_standin(processes, tmp_path / ("storage-" + env), [port or free_port()], **settings)

    return start


@pytest.fixture
def agent(processes, redis_server, key_prefix):
    """agent(env, nocobase_url, **env overrides) -> the agent process, with short times."""

    def start(env, nocobase_url, **overrides):
        settings = {
            "ENVIRONMENT_NAME": env, "ENVIRONMENT_URL": "http://%s.test" % env,
            "ENVIRONMENT_PROXY_URL": "http://worker-%s:13000" % env.replace("_", "-"),
            "AGENT_REDIS_URL": redis_server.url, "AGENT_KEY_PREFIX": key_prefix, "AGENT_NOCOBASE_URL": nocobase_url,
            "AGENT_ROOT_ACCOUNT": ROOT_EMAIL, "AGENT_ROOT_PASSWORD": ROOT_PASSWORD,
            "AGENT_CONSUMER_NAME": "%s-test" % env,
            "AGENT_HEALTH_SECONDS": "0.2", "AGENT_HEARTBEAT_SECONDS": "0.5", "AGENT_RECLAIM_IDLE_MS": "1000",
            "AGENT_LOCK_TTL_MS": "1500", "AGENT_START_TIMEOUT": "30", "AGENT_STOP_TIMEOUT": "10",
            "AGENT_HTTP_TIMEOUT": "5", "AGENT_METRICS_PORT": "0",
        }
        settings.update(overrides)
        return processes.start("agent-" + env, [sys.executable, str(AGENT)], clean_env(**settings))

    return start


def status_of(client, keys, app, env="env_a"):
    raw = client.hget(keys.status(app), env)
    return json.loads(raw) if raw else None


def wait_status(client, keys, app, wanted, env="env_a", timeout=15):
    def reached():
        status = status_of(client, keys, app, env)
        return status if status and status["status"] == wanted else None
    return wait_for(reached, timeout=timeout, interval=0.05,
                    what="%s in %s to be %s (last: %s)" % (app, env, wanted, status_of(client, keys, app, env)))


def beat(client, keys, env="env_a"):
    raw = client.hget(keys.heartbeats, env)
    return int(raw) if raw is not None else None


def put_record(client, keys, name, environments, **fields):
    """An app record as the supervisor's tooling writes it."""
    record = dict({"environments": environments, "name": name, "options": {"dbConnType": "new_database"}}, **fields)
    client.hset(keys.apps, name, json.dumps(record, separators=(",", ":"), sort_keys=True))


def assert_nothing_pending(client, keys, env="env_a", apps=()):
    assert client.xpending(keys.commands(env), CONSUMER_GROUP)["pending"] == 0
    assert client.hlen(keys.pending(env)) == 0, client.hgetall(keys.pending(env))
    for app in apps:
        assert not client.exists(keys.lock(app)), "lock of %s still held" % app


def rows(standin):
    """name -> applications row, through the stand-in's own API."""
    token = standin.token(ROOT_EMAIL, ROOT_PASSWORD)
    answer = standin.request("/api/applications:list?pageSize=100", token=token)
    assert answer[0] == 200, answer
    return {row["name"]: row for row in answer[1]["data"]}


def registered(client, keys, env="env_a", timeout=15):
    return wait_for(lambda: beat(client, keys, env), timeout=timeout, interval=0.05, what="%s to register" % env)


# ------------------------------------------------------------------------------------------ health gate


def test_registers_and_beats_only_while_nocobase_is_healthy(rclient, keys, plane, node, agent):
    port = free_port()
    worker = agent("env_a", "http://127.0.0.1:%d" % port)
    worker.wait_log("waiting for NocoBase")  # nothing listens yet
    standin = node(port=port, STANDIN_STARTUP_SECONDS="2")
    worker.wait_log("APP_INITIALIZING")  # the agent has seen the node booting
    assert standin.state()["booted"] is False
    assert not rclient.hexists(keys.environments, "env_a") and beat(rclient, keys) is None

    first = registered(rclient, keys)
    assert standin.state()["booted"] is True
    assert json.loads(rclient.hget(keys.environments, "env_a")) == {
        "appVersion": "2.0.0-standin", "name": "env_a", "proxyUrl": "http://worker-env-a:13000",
        "url": "http://env_a.test"}
    wait_for(lambda: beat(rclient, keys) > first, timeout=5, what="a second heartbeat")
    wait_for(lambda: beat(rclient, keys) > first + 400, timeout=5, what="a later heartbeat")

    # NocoBase goes away: heartbeats stop and commands wait.
    assert standin.process.terminate() == 0
    worker.wait_log("NocoBase not healthy")
    last = beat(rclient, keys)
    time.sleep(1.5)  # three heartbeat intervals (and longer than a read the consumer had begun: see below)
    assert beat(rclient, keys) == last
    put_record(rclient, keys, "crm", ["env_a"])
    assert plane.enqueue("crm", "start", environments=["env_a"])["enqueued"] == ["env_a"]
    time.sleep(1.0)
    assert status_of(rclient, keys, "crm") is None  # not even `initializing`
    assert rclient.xpending(keys.commands("env_a"), CONSUMER_GROUP)["pending"] == 0  # not even read
    assert beat(rclient, keys) == last
    assert rclient.hexists(keys.environments, "env_a")  # the record stays (protocol "On stop")

    # Back again: beats resume and the waiting command is carried out.
    standin.restart(STANDIN_STARTUP_SECONDS="0.2").wait_healthy()
    wait_status(rclient, keys, "crm", "running")
    assert beat(rclient, keys) > last
    assert worker.alive()


def test_no_command_is_taken_right_after_the_agent_paused(rclient, keys, plane, node, agent):
    standin = node()
    worker = agent("env_a", standin.url)
    registered(rclient, keys)
    put_record(rclient, keys, "crm", ["env_a"])
    time.sleep(0.3)  # the consumer is in its blocking read
    assert standin.process.terminate() == 0
    worker.wait_log("heartbeats and commands pause")
    plane.enqueue("crm", "start", environments=["env_a"])
    time.sleep(1.5)
    assert status_of(rclient, keys, "crm") is None


def test_wrong_root_credentials_never_make_the_environment_available(rclient, keys, node, agent):
    standin = node()
    standin.wait_healthy()
    worker = agent("env_a", standin.url, AGENT_ROOT_PASSWORD="Wrong-pass-0815-abc")
    worker.wait_log("refused the root account %s" % ROOT_EMAIL)
    time.sleep(0.6)  # a few more health polls
    assert not rclient.hexists(keys.environments, "env_a")
    assert beat(rclient, keys) is None
    assert worker.alive()
    log = worker.log()
    assert log.count("refused the root account") == 1, log  # said once, not on every poll
    assert "Wrong-pass-0815-abc" not in log


# ------------------------------------------------------------------------------------------ commands


def test_start_stop_start_remove(rclient, keys, plane, node, agent):
    standin = node()
    agent("env_a", standin.url)
    registered(rclient, keys)
    put_record(rclient, keys, "crm", ["env_a"], title="CRM", cname="crm.example.test")

    started = plane.enqueue("crm", "start", environments=["env_a"])
    status = wait_status(rclient, keys, "crm", "running")
    assert status["requestId"] == started["request_id"] and status["message"] == ""
    state = standin.state()
    assert state["applications"] == ["crm"] and state["apps"] == {"crm": "running"}
    row = rows(standin)["crm"]
    assert row["displayName"] == "CRM" and row["cname"] == "crm.example.test"
    assert row["options"] == {"autoStart": True, "dbConnType": "new_database"}
    info = standin.request("/api/__app/crm/app:getInfo")
    assert info[0] == 200 and info[1]["data"]["name"] == "crm", info

    again = plane.enqueue("crm", "start", environments=["env_a"])
    assert again["enqueued"] == [] and again["not_queued"] == {"env_a": "running"}

    stopped = plane.enqueue("crm", "stop", environments=["env_a"])
    status = wait_status(rclient, keys, "crm", "stopped")
    assert status["requestId"] == stopped["request_id"]
    assert standin.state()["apps"] == {"crm": "stopped"}
    assert rows(standin)["crm"]["options"]["autoStart"] is False  # a NocoBase restart leaves it stopped
    assert standin.request("/api/__app/crm/app:getInfo")[0] == 503

    plane.enqueue("crm", "start", environments=["env_a"])
    wait_status(rclient, keys, "crm", "running")
    state = standin.state()
    assert state["applications"] == ["crm"] and state["apps"] == {"crm": "running"}
    assert state["startCounts"] == {"crm": 2}
    assert rows(standin)["crm"]["options"]["autoStart"] is True
    log = standin.log()
    assert log.count("/api/applications:create") == 1 and "/api/applications:start" in log

    plane.enqueue("crm", "remove", environments=["env_a"])
    wait_for(lambda: not rclient.hexists(keys.status("crm"), "env_a"), timeout=15, what="the status to go")
    assert standin.state()["applications"] == []
    assert standin.request("/api/__app/crm/app:getInfo")[0] == 404
    assert_nothing_pending(rclient, keys, apps=["crm"])
    assert rclient.zcard(keys.processed("env_a")) == 4


def test_a_failing_start_is_an_error_with_nocobases_message(rclient, keys, plane, node, agent):
    standin = node()
    agent("env_a", standin.url)
    registered(rclient, keys)
    put_record(rclient, keys, "bad", ["env_a"], options={"standinFailStart": "boom"})
    request_id = plane.enqueue("bad", "start", environments=["env_a"])["request_id"]
    status = wait_status(rclient, keys, "bad", "error")
    assert "boom" in status["message"] and status["requestId"] == request_id, status
    assert standin.state()["apps"] == {"bad": "error"}
    assert_nothing_pending(rclient, keys, apps=["bad"])


def test_starts_are_serialised_across_environments(rclient, keys, plane, node, agent):
    nodes = {env: node(env, STANDIN_START_SECONDS="1") for env in ("env_a", "env_b")}
    for env, standin in nodes.items():
        agent(env, standin.url)
    for env in nodes:
        registered(rclient, keys, env)
    put_record(rclient, keys, "crm", ["env_a", "env_b"])
    request_id = plane.enqueue("crm", "start", environments=["env_a", "env_b"])["request_id"]

    b_initializing = None
    deadline = time.monotonic() + 25
    while True:
        a, b = status_of(rclient, keys, "crm", "env_a"), status_of(rclient, keys, "crm", "env_b")
        if (a or {}).get("status") != "running":
            # env_b has not begun: no status there, nothing created in its NocoBase.
            assert b is None, (a, b)
            assert nodes["env_b"].state()["applications"] == []
        if b and b["status"] == "initializing" and b_initializing is None:
            b_initializing = b
        if a and b and a["status"] == b["status"] == "running":
            break
        assert time.monotonic() < deadline, "timed out: %s %s" % (a, b)
        time.sleep(0.03)
    assert b_initializing is not None and b_initializing["requestId"] == request_id
    assert a["updatedAt"] < b_initializing["updatedAt"], (a, b_initializing)
    for env, standin in nodes.items():
        assert standin.state()["startCounts"] == {"crm": 1}, env
        assert_nothing_pending(rclient, keys, env, ["crm"])


# ------------------------------------------------------------------------------------------ restarts


def test_nocobase_restart_keeps_running_apps_running_and_stopped_apps_stopped(rclient, keys, plane, node, agent):
    standin = node()
    worker = agent("env_a", standin.url)
    registered(rclient, keys)
    for app in ("crm", "hr"):
        put_record(rclient, keys, app, ["env_a"])
        plane.enqueue(app, "start", environments=["env_a"])
    wait_status(rclient, keys, "crm", "running")
    wait_status(rclient, keys, "hr", "running")
    plane.enqueue("hr", "stop", environments=["env_a"])
    wait_status(rclient, keys, "hr", "stopped")
    before = {app: status_of(rclient, keys, app) for app in ("crm", "hr")}

    assert standin.process.terminate() == 0
    worker.wait_log("NocoBase not healthy")
    again = standin.restart(STANDIN_STARTUP_SECONDS="0.5")
    seen = set()

    def back():
        seen.add(status_of(rclient, keys, "crm")["status"])
        return again.state()["apps"] if again.request("/api/__health_check") == (200, "ok") else None

    wait_for(lambda: (back() or {}) == {"crm": "running", "hr": "stopped"}, timeout=15, interval=0.05,
             what="crm running and hr stopped in the new NocoBase process")
    assert again.state()["startCounts"] == {"crm": 1}  # started by the new process itself (autoStart)
    worker.wait_log("registered", timeout=5)
    wait_for(lambda: worker.log().count("registered") >= 2, timeout=10, what="the agent to register again")
    time.sleep(0.5)  # the resync after the comeback
    assert seen == {"running"}
    assert status_of(rclient, keys, "crm")["status"] == "running"
    assert status_of(rclient, keys, "hr") == before["hr"]
    assert again.state()["apps"] == {"crm": "running", "hr": "stopped"}

    # The agent signs in again with the new process (tokens do not survive it) and goes on working.
    plane.enqueue("crm", "stop", environments=["env_a"])
    wait_status(rclient, keys, "crm", "stopped")
    assert again.state()["apps"] == {"crm": "stopped", "hr": "stopped"}


def test_a_node_replaced_with_another_version_is_registered_with_it(rclient, keys, plane, node, agent):
    """An upgraded image, swapped between two polls: the record follows, and the apps come back."""
    standin = node(STANDIN_APP_VERSION="2.0.0-old")
    worker = agent("env_a", standin.url, AGENT_HEALTH_SECONDS="2")
    registered(rclient, keys)
    assert json.loads(rclient.hget(keys.environments, "env_a"))["appVersion"] == "2.0.0-old"
    put_record(rclient, keys, "crm", ["env_a"])
    plane.enqueue("crm", "start", environments=["env_a"])
    wait_status(rclient, keys, "crm", "running")

    assert standin.process.terminate() == 0
    upgraded = standin.restart(STANDIN_APP_VERSION="2.0.1-new", STANDIN_STARTUP_SECONDS="0")
    wait_for(lambda: json.loads(rclient.hget(keys.environments, "env_a"))["appVersion"] == "2.0.1-new",
             timeout=15, interval=0.1, what="the record to carry the new version")
    worker.wait_log("now reports version 2.0.1-new (was 2.0.0-old)")
    wait_for(lambda: upgraded.state()["apps"] == {"crm": "running"}, timeout=15, what="crm running again")
    assert status_of(rclient, keys, "crm")["status"] == "running"


def test_resync_after_nocobase_lost_or_changed_its_apps(rclient, keys, plane, node, agent):
    """What Redis says wins after a comeback: started, created again, or stopped by the agent."""
    standin = node()
    worker = agent("env_a", standin.url)
    registered(rclient, keys)
    for app in ("crm", "erp", "hr"):
        put_record(rclient, keys, app, ["env_a"])
        plane.enqueue(app, "start", environments=["env_a"])
    for app in ("crm", "erp", "hr"):
        wait_status(rclient, keys, app, "running")
    plane.enqueue("hr", "stop", environments=["env_a"])
    wait_status(rclient, keys, "hr", "stopped")
    assert standin.process.terminate() == 0
    worker.wait_log("NocoBase not healthy")

    # Behind the agent's back: crm would not start by itself, erp is gone, hr would start by itself.
    db_file = standin.env["STANDIN_STATE_DIR"] + "/standin-db.json"
    with open(db_file) as handle:
        db = json.load(handle)
    db["applications"]["crm"]["options"]["autoStart"] = False
    del db["applications"]["erp"]
    db["applications"]["hr"]["options"]["autoStart"] = True
    with open(db_file, "w") as handle:
        json.dump(db, handle)

    again = standin.restart()
    again.wait_healthy()
    wait_for(lambda: again.state()["apps"] == {"crm": "running", "erp": "running", "hr": "stopped"}, timeout=15,
             interval=0.1, what="the agent's resync (last: %s)" % again.state()["apps"])
    assert {app: status_of(rclient, keys, app)["status"] for app in ("crm", "erp", "hr")} == {
        "crm": "running", "erp": "running", "hr": "stopped"}
    log = worker.log()
    assert "resync: app crm runs here" in log and "resync: app erp runs here" in log
    assert "resync: app hr is stopped here" in log
    new_rows = rows(again)
    assert new_rows["crm"]["options"]["autoStart"] is True and new_rows["hr"]["options"]["autoStart"] is False


def test_agent_killed_in_the_middle_of_a_start(rclient, keys, plane, node, agent):
    standin = node(STANDIN_START_SECONDS="5")
    first = agent("env_a", standin.url, AGENT_CONSUMER_NAME="env_a-node1")
    registered(rclient, keys)
    put_record(rclient, keys, "crm", ["env_a"])
    request_id = plane.enqueue("crm", "start", environments=["env_a"])["request_id"]
    wait_status(rclient, keys, "crm", "initializing")
    wait_for(lambda: standin.state()["apps"] == {"crm": "initializing"}, timeout=5, what="the start in NocoBase")
    first.kill()
    assert rclient.xpending(keys.commands("env_a"), CONSUMER_GROUP)["pending"] == 1

    second = agent("env_a", standin.url, AGENT_CONSUMER_NAME="env_a-node1")
    status = wait_status(rclient, keys, "crm", "running", timeout=25)
    assert status["requestId"] == request_id and status["message"] == ""
    assert_nothing_pending(rclient, keys, apps=["crm"])
    assert rclient.zrange(keys.processed("env_a"), 0, -1) == [request_id]
    state = standin.state()
    assert state["applications"] == ["crm"] and state["startCounts"] == {"crm": 1}
    assert standin.log().count("/api/applications:create") == 1
    assert "creating app crm" not in second.log()  # the second agent found the app and did not create it again
    assert second.alive()


def test_sigterm_in_the_middle_of_a_start(rclient, keys, plane, node, agent):
    """The entry stays unacknowledged (a restarted agent carries it out) and the lock is let go."""
    standin = node(STANDIN_START_SECONDS="30")
    worker = agent("env_a", standin.url)
    registered(rclient, keys)
    put_record(rclient, keys, "crm", ["env_a"])
    plane.enqueue("crm", "start", environments=["env_a"])
    wait_status(rclient, keys, "crm", "initializing")
    started = time.monotonic()
    assert worker.terminate() == 0
    assert time.monotonic() - started < 3.0
    assert "stopped in the middle of start crm" in worker.log()
    assert rclient.xpending(keys.commands("env_a"), CONSUMER_GROUP)["pending"] == 1
    assert not rclient.exists(keys.lock("crm"))
    assert status_of(rclient, keys, "crm")["status"] == "initializing"


def test_sigterm_during_a_resync_start_stops_cleanly(rclient, keys, node, agent):
    standin = node(STANDIN_START_SECONDS="30")
    standin.wait_healthy()
    token = standin.token(ROOT_EMAIL, ROOT_PASSWORD)
    assert standin.request("/api/applications:create", "POST", {"name": "crm", "options": {"autoStart": False}},
                           token=token)[0] == 200
    assert standin.request("/api/applications:stop?filterByTk=crm", "POST", token=token)[0] == 200
    put_record(rclient, keys, "crm", ["env_a"])
    rclient.hset(keys.status("crm"), "env_a", json.dumps({"message": "", "requestId": "r1", "status": "running",
                                                         "updatedAt": 1}))
    worker = agent("env_a", standin.url)
    worker.wait_log("resync: app crm runs here")  # it is now waiting for NocoBase to start crm
    time.sleep(0.3)
    assert worker.terminate() == 0, worker.log()[-2000:]


def test_newer_schema_is_refused(rclient, keys, node, agent):
    rclient.set(keys.schema, "2")
    standin = node()
    worker = agent("env_a", standin.url)
    worker.wait_log("schema version 2 is newer")
    assert worker.proc.wait(timeout=10) == 3  # it stops: a newer protocol is not ours to run
    assert not rclient.exists(keys.environments, keys.heartbeats, keys.commands("env_a"))
    assert rclient.get(keys.schema) == "2"


# ------------------------------------------------------------------------------------------ secrets, settings


def test_no_secret_in_the_output(rclient, keys, plane, node, agent, redis_server):
    assert redis_server.password
    standin = node()
    worker = agent("env_a", standin.url, AGENT_LOG_LEVEL="DEBUG")
    registered(rclient, keys)
    put_record(rclient, keys, "crm", ["env_a"])
    plane.enqueue("crm", "start", environments=["env_a"])
    wait_status(rclient, keys, "crm", "running")
    assert worker.terminate() == 0
    log = worker.log()
    assert "redis://***@127.0.0.1:%d/0" % redis_server.port in log  # the URL, redacted
    assert ROOT_PASSWORD not in log
    assert redis_server.password not in log


def test_a_malformed_redis_url_is_not_logged_with_its_password(agent, redis_server):
    worker = agent("env_a", "http://127.0.0.1:%d" % free_port(),
                   AGENT_REDIS_URL="redis://:Sec/ret-77@127.0.0.1:%d/0" % redis_server.port)
    worker.wait_log("environment env_a, NocoBase")
    worker.terminate()
    assert "Sec/ret-77" not in worker.log()


@pytest.mark.parametrize("overrides, variable", [
    ({"ENVIRONMENT_NAME": None}, "ENVIRONMENT_NAME"),
    ({"ENVIRONMENT_NAME": "Env A"}, "ENVIRONMENT_NAME"),
    ({"AGENT_NOCOBASE_URL": "127.0.0.1:13000"}, "AGENT_NOCOBASE_URL"),
    ({"AGENT_NOCOBASE_URL": None}, "AGENT_NOCOBASE_URL"),
    ({"AGENT_ROOT_PASSWORD": None}, "AGENT_ROOT_PASSWORD"),
    ({"AGENT_ROOT_PASSWORD": None, "AGENT_ROOT_PASSWORD_FILE": "/nonexistent/root-password"},
     "AGENT_ROOT_PASSWORD_FILE"),
    ({"AGENT_REDIS_URL": None}, "AGENT_REDIS_URL"),
    ({"AGENT_HEARTBEAT_SECONDS": "often"}, "AGENT_HEARTBEAT_SECONDS"),
    ({"AGENT_METRICS_PORT": "70000"}, "AGENT_METRICS_PORT"),
])
def test_settings_errors_exit_2_naming_the_variable(agent, redis_server, overrides, variable):
    worker = agent("env_a", "http://127.0.0.1:%d" % free_port(), **overrides)
    assert worker.proc.wait(timeout=15) == 2
    log = worker.log()
    assert "configuration error" in log and variable in log, log
    assert ROOT_PASSWORD not in log and redis_server.password not in log


def test_root_password_from_a_file(rclient, keys, node, agent, tmp_path):
    secret = tmp_path / "root-password"
    secret.write_text(ROOT_PASSWORD + "\n")
    standin = node()
    worker = agent("env_a", standin.url, AGENT_ROOT_PASSWORD=None, AGENT_ROOT_PASSWORD_FILE=str(secret))
    registered(rclient, keys)
    assert json.loads(rclient.hget(keys.environments, "env_a"))["appVersion"] == "2.0.0-standin"
    assert ROOT_PASSWORD not in worker.log()


def test_the_container_health_check_follows_readiness(node, agent, tmp_path):
    health = tmp_path / "agent.health"
    check = [sys.executable, str(AGENT), "--healthcheck"]

    def healthy():
        env = clean_env(AGENT_HEALTH_FILE=str(health), AGENT_HEALTH_SECONDS="0.2")
        return subprocess.run(check, env=env, capture_output=True, text=True, timeout=30, check=False)

    assert healthy().returncode == 1  # no agent yet
    standin = node(STANDIN_STARTUP_SECONDS="1")
    worker = agent("env_a", standin.url, AGENT_HEALTH_FILE=str(health))
    worker.wait_log("waiting for NocoBase")
    waiting = healthy()
    assert waiting.returncode == 1 and "waiting" in waiting.stdout
    wait_for(lambda: healthy().returncode == 0, timeout=15, what="the agent to report healthy")
    assert standin.process.terminate() == 0
    wait_for(lambda: healthy().returncode == 1, timeout=15, what="the agent to report its NocoBase down")


# ------------------------------------------------------------------------------ hostile records, the lock


def test_the_agent_stays_up_when_its_resync_meets_deep_records(rclient, keys, plane, node, agent):
    """The resync at every start reads every app's record and status: deep ones are skipped."""
    standin = node()
    for app in ("crm", "deep", "odd"):
        put_record = {"environments": ["env_a"], "name": app, "options": {"dbConnType": "new_database"}}
        rclient.hset(keys.apps, app, json.dumps(put_record))
    rclient.hset(keys.apps, "deep", DEEP)
    rclient.hset(keys.status("deep"), "env_a", json.dumps({"status": "running", "requestId": "r1", "updatedAt": 1}))
    rclient.hset(keys.status("odd"), "env_a", DEEP_OBJECT)
    rclient.hset(keys.status("crm"), "env_a", json.dumps({"status": "running", "requestId": "r2", "updatedAt": 1}))
    worker = agent("env_a", standin.url)
    registered(rclient, keys)
    wait_for(lambda: standin.state()["apps"].get("crm") == "running", timeout=15, interval=0.1,
             what="the resync to start crm")
    worker.wait_log("resync: skipping app deep, its status or record nests deeper than the 32 levels")
    worker.wait_log("resync: skipping app odd, its status or record nests deeper")
    plane.enqueue("crm", "stop", environments=["env_a"])
    wait_status(rclient, keys, "crm", "stopped")
    assert worker.alive()


def test_the_resync_starts_an_app_only_under_its_lock(rclient, keys, node, agent):
    standin = node()
    rclient.hset(keys.apps, "crm", json.dumps({"environments": ["env_a"], "name": "crm",
                                               "options": {"dbConnType": "new_database"}}))
    rclient.hset(keys.status("crm"), "env_a", json.dumps({"status": "running", "requestId": "r1", "updatedAt": 1}))
    rclient.set(keys.lock("crm"), "a-start-elsewhere", px=4000)
    worker = agent("env_a", standin.url)
    registered(rclient, keys)
    worker.wait_log("resync: app crm waits for its lock or an earlier environment")
    assert standin.state()["apps"].get("crm") != "running"
    wait_for(lambda: standin.state()["apps"].get("crm") == "running", timeout=20, interval=0.2,
             what="the resync to start crm once the lock is free")
    assert not rclient.exists(keys.lock("crm"))


def scrape(port):
    """{sample name with its labels: value} of the agent's /metrics."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def scraped_once(port, sample, value):
    """The agent's metrics once `sample` has `value` (bounded)."""
    found = {}

    def reached():
        found.clear()
        found.update(scrape(port))
        return found.get(sample) == value

    wait_for(reached, timeout=10, interval=0.2, what="%s to be %s" % (sample, value))
    return found


def test_the_agent_serves_its_metrics(rclient, keys, plane, node, agent):
    """Readiness, heartbeat age, health checks, commands by action and outcome with their latency, the
    stream, and the apps by status, as Prometheus reads them."""
    standin = node()
    port = free_port()
    agent("env_a", standin.url, AGENT_METRICS_PORT=str(port), AGENT_METRICS_ADDRESS="127.0.0.1")
    registered(rclient, keys)
    put_record(rclient, keys, "crm", ["env_a"])
    put_record(rclient, keys, "hr", ["env_a"])
    plane.enqueue("crm", "start", environments=["env_a"])
    wait_status(rclient, keys, "crm", "running")
    plane.enqueue("hr", "start", environments=["env_a"])
    wait_status(rclient, keys, "hr", "running")
    plane.enqueue("hr", "stop", environments=["env_a"])
    wait_status(rclient, keys, "hr", "stopped")

    env = 'environment="env_a"'
    scraped_once(port, 'nocobase_multienv_commands_total{action="stop",%s,outcome="completed"}' % env, 1)
    # What Redis holds is read at most once a second: the apps' gauges follow within it.
    metrics = scraped_once(port, 'nocobase_multienv_apps{%s,status="stopped"}' % env, 1)
    assert metrics["nocobase_multienv_agent_ready{%s}" % env] == 1
    assert 0 <= metrics["nocobase_multienv_agent_heartbeat_age_seconds{%s}" % env] < 5
    assert metrics['nocobase_multienv_nocobase_health_checks_total{%s,result="ok"}' % env] >= 1
    assert metrics["nocobase_multienv_nocobase_sign_ins_total{%s}" % env] >= 1
    assert metrics['nocobase_multienv_commands_total{action="start",%s,outcome="completed"}' % env] == 2
    assert metrics['nocobase_multienv_command_duration_seconds_count{action="start",%s}' % env] == 2
    assert metrics['nocobase_multienv_command_duration_seconds_bucket{action="start",%s,le="+Inf"}' % env] == 2
    assert 0 < metrics['nocobase_multienv_command_duration_seconds_sum{action="start",%s}' % env] < 30
    assert metrics['nocobase_multienv_apps{%s,status="running"}' % env] == 1
    assert metrics['nocobase_multienv_apps{%s,status="stopped"}' % env] == 1
    assert metrics["nocobase_multienv_stream_pending{%s}" % env] == 0
    assert metrics['nocobase_multienv_apps{%s,status="error"}' % env] == 0  # every status, 0 too

    # NocoBase refuses a start: a failed command, and the app counts as an error.
    put_record(rclient, keys, "bad", ["env_a"], options={"standinFailStart": "boom"})
    plane.enqueue("bad", "start", environments=["env_a"])
    wait_status(rclient, keys, "bad", "error")
    scraped_once(port, 'nocobase_multienv_commands_total{action="start",%s,outcome="failed"}' % env, 1)
    metrics = scraped_once(port, 'nocobase_multienv_apps{%s,status="error"}' % env, 1)
    assert metrics['nocobase_multienv_commands_total{action="start",%s,outcome="completed"}' % env] == 2
