"""Records and stream entries that anything holding a Redis password can write, against the readers
and the producer: nested too deep for Python's parser, too long, or ids that jam an app's commands.
A bad record is skipped with a warning naming it; no reader fails as a whole."""
from __future__ import annotations

import json
import time

import pytest
import redis
from helpers import put_app, run, wait_for
from test_agent import agent, node, registered, status_of, wait_status  # noqa: F401 - agent, node: fixtures
from test_consumer import make_consumer  # noqa: F401 - a fixture
from test_modules import failure, warnings_of
from test_playbooks import ansible_playbook

from ansible_collections.nocobase.multienv.plugins.module_utils._keyspace import (
    MAX_RECORD_BYTES,
    MAX_RECORD_DEPTH,
    load_json,
    load_record,
)

# Nested far deeper than Python's recursion limit (json.loads raises RecursionError on it), and
# shorter than the size limit, so that the depth is what refuses it.
DEEP = "[" * 30_000 + "]" * 30_000
DEEP_OBJECT = '{"status":"running","x":' + DEEP + "}"
LONG = json.dumps({"name": "env_l", "url": "http://l", "padding": "x" * MAX_RECORD_BYTES})


@pytest.mark.parametrize("raw, message", [
    (DEEP, "nests deeper than the 32 levels"),
    ("[" * 50_000 + "]" * 50_000, "is 100000 bytes long, over the 65536"),
    ("[" * (MAX_RECORD_DEPTH + 1) + "]" * (MAX_RECORD_DEPTH + 1), "nests deeper than the 32 levels"),
    (LONG, "bytes long, over the 65536"),
    ("{oops", "is not valid JSON"),
])
def test_a_record_out_of_bounds_is_refused_unparsed(raw, message):
    with pytest.raises(ValueError, match=message):
        load_json(raw)


def test_a_record_within_bounds_is_read():
    nested = "[" * MAX_RECORD_DEPTH + "]" * MAX_RECORD_DEPTH
    assert load_json(nested) is not None
    assert load_record(b'{"status": "running"}') == {"status": "running"}
    with pytest.raises(ValueError, match="not a JSON object"):
        load_record("[1]")


@pytest.fixture
def planted(conn, rclient, keys):
    """Two good environments and apps, then records nested 50,000 deep or over the size limit."""
    run("environment", dict(conn, environments=[dict(name="env_a", url="http://a"), dict(name="env_b", url="http://b")]))
    run("app", dict(conn, apps=[dict(name="good", environments=["env_a"]), dict(name="other", environments=["env_b"])]))
    rclient.hset(keys.environments, "env_d", DEEP)
    rclient.hset(keys.environments, "env_l", LONG)
    rclient.hset(keys.apps, "deep", DEEP)
    rclient.hset(keys.status("good"), "env_a", DEEP_OBJECT)
    rclient.hset(keys.status("other"), "env_b", json.dumps({"status": "running", "pad": "y" * MAX_RECORD_BYTES}))


def test_the_modules_skip_deep_and_long_records_with_a_warning(conn, planted):
    envs = run("environment_info", dict(conn))
    assert [env["name"] for env in envs["environments"]] == ["env_a", "env_b"]
    text = warnings_of(envs)
    assert "environment record 'env_d' nests deeper than the 32 levels" in text, text
    assert "environment record 'env_l' is %d bytes long" % len(LONG) in text, text
    apps = run("app_info", dict(conn))
    by_name = {app["name"]: app for app in apps["apps"]}
    assert sorted(by_name) == ["good", "other"]
    assert by_name["good"]["status"] == {"env_a": None} and by_name["other"]["status"] == {"env_b": None}
    text = warnings_of(apps)
    for fragment in ("app record 'deep' nests deeper", "status of app 'good' in environment 'env_a' nests deeper",
                     "status of app 'other' in environment 'env_b' is"):
        assert fragment in text, text


def test_a_status_record_out_of_bounds_decides_nothing_when_a_command_is_queued(conn, planted, rclient, keys):
    # The enqueue script reads the status in Redis (cjson): the deep one counts as no status, so
    # "start" is queued, where a readable "running" would have skipped it.
    result = run("app_command", dict(conn, apps=["good", "other"], command="start"))
    by_app = {entry["app"]: entry for entry in result["results"]}
    assert by_app["good"]["enqueued"] == ["env_a"] and by_app["other"]["enqueued"] == ["env_b"]


def test_the_lookup_skips_deep_records_with_a_warning(redis_server, key_prefix, conn, planted, tmp_path):
    output = tmp_path / "names.json"
    result = ansible_playbook("records_lookup.yml", {"test_redis_url": redis_server.url,
                                                     "test_key_prefix": key_prefix, "test_output": output})
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(output.read_text()) == {"apps": ["good", "other"], "environments": ["env_a", "env_b"]}
    text = " ".join((result.stdout + result.stderr).split())
    assert "app record 'deep' nests deeper than the 32 levels" in text, text
    assert "environment record 'env_d' nests deeper" in text, text


def test_a_request_id_is_checked_with_the_app_suffix_it_is_given(conn, rclient, key_prefix, keys):
    """A 125-character id is valid alone, but not as <id>:crm (129): refused before anything is queued."""
    run("environment", dict(conn, name="env_a", url="http://a"))
    run("app", dict(conn, apps=[dict(name="crm", environments=["env_a"]), dict(name="hr", environments=["env_a"])]))
    message = failure("app_command", dict(conn, apps=["crm", "hr"], command="start", request_id="r" * 125))
    assert "request_id: '%s:crm', the id of app crm's command, must match" % ("r" * 125) in message
    assert rclient.xlen(keys.commands("env_a")) == 0 and not rclient.exists(keys.pending("env_a"))


def test_force_queues_behind_a_pending_mark(conn, rclient, keys):
    run("environment", dict(conn, name="env_a", url="http://a"))
    run("app", dict(conn, name="crm", environments=["env_a"]))
    rclient.hset(keys.pending("env_a"), "crm:start", "lost-request")  # a mark whose entry is gone
    again = run("app_command", dict(conn, app="crm", command="start"))
    assert again["enqueued"] == [] and again["not_queued"] == {"env_a": "queued"}
    forced = run("app_command", dict(conn, app="crm", command="start", force=True))
    assert forced["enqueued"] == ["env_a"]
    assert rclient.hget(keys.pending("env_a"), "crm:start") == forced["request_id"]


# ------------------------------------------------------------------------------ the agent's consumer


def test_an_entry_dropped_for_its_request_id_takes_its_pending_mark_along(rclient, keys, plane, make_consumer):
    """An entry with a 129-character id (an older producer appended ':<app>' after its check): the
    consumer drops it, and the app's next start is queued instead of reported queued forever."""
    consumer = make_consumer("a", "a1", lambda *args: None)
    put_app(rclient, keys, "crm", ["a"])
    consumer.start()
    long_id = "r" * 125 + ":crm"
    rclient.xadd(keys.commands("a"), {"requestId": long_id, "appName": "crm", "action": "start",
                                      "environments": '["a"]', "payload": "{}", "enqueuedAt": "1"})
    rclient.hset(keys.pending("a"), "crm:start", long_id)
    consumer.drain(timeout=5)
    assert not rclient.hexists(keys.pending("a"), "crm:start")
    assert rclient.xpending(keys.commands("a"), "workers")["pending"] == 0
    assert plane.enqueue("crm", "start", environments=["a"])["enqueued"] == ["a"]


def test_out_of_bounds_records_and_fields_never_stop_the_consumer(rclient, keys, plane, make_consumer):
    calls = []
    consumer = make_consumer("a", "a1", lambda app, action, payload, record: calls.append((app, action, payload)))
    put_app(rclient, keys, "crm", ["a"])
    rclient.hset(keys.apps, "deep", DEEP)
    deep = plane.enqueue("deep", "start", environments=["a"])
    # A start whose stream fields are nested too deep: they count as absent.
    rclient.xadd(keys.commands("a"), {"requestId": "odd-1", "appName": "crm", "action": "start",
                                      "environments": DEEP, "payload": DEEP, "enqueuedAt": "1"})
    consumer.drain(timeout=5)
    status = status_of(rclient, keys, "deep", "a")
    assert status["status"] == "error" and status["requestId"] == deep["request_id"]
    assert "the record of app deep nests deeper than the 32 levels" in status["message"]
    assert calls == [("crm", "start", {})]


def test_an_entry_that_fails_for_another_reason_is_dropped_and_the_next_one_runs(
        rclient, keys, plane, make_consumer, monkeypatch, caplog):
    calls = []
    consumer = make_consumer("a", "a1", lambda app, action, payload, record: calls.append((app, action)))
    put_app(rclient, keys, "crm", ["a"])
    put_app(rclient, keys, "hr", ["a"])
    real_must_wait = consumer._must_wait

    def fault(app, environments, request_id):  # a fault of the consumer itself, for one app only
        if app == "crm":
            raise KeyError("simulated fault")
        return real_must_wait(app, environments, request_id)

    monkeypatch.setattr(consumer, "_must_wait", fault)
    plane.enqueue("crm", "start", environments=["a"])
    plane.enqueue("hr", "start", environments=["a"])
    consumer.drain(timeout=5)
    assert calls == [("hr", "start")]
    assert "could not be processed; acknowledged without action" in caplog.text
    assert rclient.xpending(keys.commands("a"), "workers")["pending"] == 0
    assert not rclient.hexists(keys.pending("a"), "crm:start")


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


# ------------------------------------------------------------------------------------------ one clock


def redis_now_ms(rclient):
    seconds, microseconds = rclient.time()
    return seconds * 1000 + microseconds // 1000


def test_a_controller_clock_7_minutes_ahead_still_sees_a_beating_environment(
        rclient, keys, plane, make_consumer, monkeypatch):
    consumer = make_consumer("env_a", "a1")
    consumer.register()
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 420)  # this process: the agent's and the controller's
    consumer.heartbeat()
    assert abs(int(rclient.hget(keys.heartbeats, "env_a")) - redis_now_ms(rclient)) < 5000  # Redis's clock
    environments = plane.read_environments()
    assert environments["env_a"]["available"] is True, environments
    assert environments["env_a"]["heartbeatAge"] < 5


def test_a_heartbeat_from_the_future_is_not_fresh(conn, rclient, keys):
    run("environment", dict(conn, name="env_a", url="http://a"))
    rclient.hset(keys.heartbeats, "env_a", redis_now_ms(rclient) + 75 * 365 * 24 * 3600 * 1000)  # the year 2100
    result = run("environment_info", dict(conn))
    assert result["environments"][0]["available"] is False
    assert result["environments"][0]["lastHeartbeatAt"] is None
    assert "the heartbeat of environment 'env_a' is" in warnings_of(result)
    assert "ahead of Redis's clock" in warnings_of(result)


def test_a_url_longer_than_nginx_takes_is_refused_and_skipped(conn, rclient, keys):
    long_url = "http://a/" + "p" * 4096
    assert "url: a URL of 4105 characters is longer than the 1024 allowed" in failure(
        "environment", dict(conn, name="env_a", url=long_url))
    run("environment", dict(conn, name="env_a", url="http://a"))
    rclient.hset(keys.environments, "env_b", json.dumps({"name": "env_b", "url": long_url}))
    result = run("environment_info", dict(conn))
    assert [env["name"] for env in result["environments"]] == ["env_a"]
    assert "environment record 'env_b': url: a URL of 4105 characters" in warnings_of(result)


# ------------------------------------------------------------------------------- the inventory first


def test_a_record_that_moves_a_known_environment_elsewhere_is_skipped(conn, rclient, keys):
    """env_b's agent could write env_a's record: the proxy reads it with what the inventory says."""
    run("environment", dict(conn, environments=[dict(name="env_a", url="http://a", proxy_url="http://worker-a"),
                                                dict(name="env_b", url="http://b")]))
    run("app", dict(conn, apps=[dict(name="crm", environments=["env_a"]), dict(name="hr", environments=["env_b"])]))
    run("environment", dict(conn, name="env_a", heartbeat=True))
    run("environment", dict(conn, name="env_b", heartbeat=True))
    expected = {"env_a": {"url": "http://a", "proxy_url": "http://worker-a"}, "env_c": {"proxy_url": "http://c"}}
    agreeing = run("app_info", dict(conn, expected_environments=expected))
    assert {app["name"]: app["proxyTarget"]["url"] for app in agreeing["apps"]} == {
        "crm": "http://worker-a", "hr": "http://b"}  # env_b is not in expected_environments: as recorded
    assert not agreeing.get("warnings")

    rclient.hset(keys.environments, "env_a", json.dumps({"name": "env_a", "url": "http://a", "proxyUrl": "http://evil"}))
    moved = run("app_info", dict(conn, expected_environments=expected))
    crm = next(app for app in moved["apps"] if app["name"] == "crm")
    assert crm["proxyTarget"] == {"environment": "env_a", "url": None, "available": False, "registered": False}
    assert ("environment record 'env_a': proxyUrl 'http://evil' is not 'http://worker-a', the one "
            "expected_environments gives") in warnings_of(moved)
    assert "http://evil" not in json.dumps(moved["apps"])


def test_expected_environments_are_checked_naming_the_field(conn):
    assert "expected_environments.env_a.proxy_url: 'http://x;'" in failure(
        "app_info", dict(conn, expected_environments={"env_a": {"proxy_url": "http://x;"}}))
    assert "expected_environments: 'Bad' is not a valid environment name" in failure(
        "environment_info", dict(conn, expected_environments={"Bad": {}}))


# ------------------------------------------------------------------------------ exactly once, in order


def test_a_completion_that_fails_is_retried_without_acting_again(rclient, keys, plane, make_consumer, monkeypatch):
    calls = []
    consumer = make_consumer("a", "a1", lambda app, action, payload, record: calls.append((app, action)))
    put_app(rclient, keys, "crm", ["a"])
    request = plane.enqueue("crm", "start", environments=["a"])["request_id"]
    complete = consumer._complete
    failures = []

    def once_unreachable(*args, **kwargs):  # Redis goes away right after the action
        if not failures:
            failures.append(1)
            raise redis.ConnectionError("simulated: Redis went away")
        return complete(*args, **kwargs)

    monkeypatch.setattr(consumer, "_complete", once_unreachable)
    with pytest.raises(redis.ConnectionError):
        consumer.drain(timeout=5)
    time.sleep(1.2)  # past the reclaim idle time: a consumer that forgot would carry it out again
    consumer.drain(timeout=5)
    assert calls == [("crm", "start")]
    status = status_of(rclient, keys, "crm", "a")
    assert status["status"] == "running" and status["requestId"] == request
    assert rclient.xpending(keys.commands("a"), "workers")["pending"] == 0
    assert not rclient.hexists(keys.pending("a"), "crm:start") and not rclient.exists(keys.lock("crm"))


def test_a_start_whose_lock_was_lost_is_abandoned_then_carried_out_under_the_lock(rclient, keys, plane, make_consumer):
    calls = []

    def slow_start(app, action, payload, record):
        calls.append(action)
        if len(calls) == 1:  # meanwhile another consumer takes the lock (it had expired)
            rclient.set(keys.lock(app), "another-consumer", px=1500)
            time.sleep(1.0)

    consumer = make_consumer("a", "a1", slow_start)
    put_app(rclient, keys, "crm", ["a"])
    request = plane.enqueue("crm", "start", environments=["a"])["request_id"]
    consumer.drain(timeout=5)
    assert calls == ["start"]
    assert status_of(rclient, keys, "crm", "a")["status"] == "initializing"  # never completed as running
    assert rclient.get(keys.lock("crm")) == "another-consumer"
    assert rclient.xpending(keys.commands("a"), "workers")["pending"] == 1
    wait_for(lambda: not rclient.exists(keys.lock("crm")), timeout=5, what="the other lock to expire")
    wait_for(lambda: consumer.drain(timeout=1) or status_of(rclient, keys, "crm", "a")["status"] == "running",
             timeout=10, interval=0.2, what="the start carried out again under the lock")
    assert calls == ["start", "start"]
    assert status_of(rclient, keys, "crm", "a")["requestId"] == request


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
