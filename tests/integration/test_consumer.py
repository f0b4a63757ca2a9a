# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The reference consumer (roles/worker/files/agent/consumer.py) against a real Redis, fed by the real producer.

Commands are enqueued with the collection's ControlPlane (the producer half of docs/protocol.md);
only redeliveries, which no correct producer makes on purpose, are written with a raw XADD.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
from helpers import put_app, stop_processes, wait_for
from test_hostile_records import DEEP, redis_now_ms

from ansible_collections.nocobase.multienv.plugins.module_utils._keyspace import (
    CONSUMER_GROUP,
    now_ms,
    pending_field,
)

AGENT_DIR = Path(__file__).resolve().parents[2] / "roles" / "worker" / "files" / "agent"
sys.path.insert(0, str(AGENT_DIR))
import consumer as standin_consumer  # noqa: E402

# Short times so that reclaim and lock expiry happen within a test.
LOCK_TTL_MS = 1500
RECLAIM_IDLE_MS = 1000


def status_of(client, keys, app, env):
    raw = client.hget(keys.status(app), env)
    return json.loads(raw) if raw else None


def assert_nothing_pending(client, keys, environments, apps=()):
    for env in environments:
        assert client.xpending(keys.commands(env), CONSUMER_GROUP)["pending"] == 0, env
        assert client.hlen(keys.pending(env)) == 0, client.hgetall(keys.pending(env))
    for app in apps:
        assert not client.exists(keys.lock(app)), "lock of %s still held" % app


class Recorder:
    """on_action hook: appends '<env>:<app>:<action>:<begin|end>' to a Redis list (one shared order)."""

    def __init__(self, client, key, env, seconds=0.0, fail=None):
        self.client, self.key, self.env, self.seconds, self.fail = client, key, env, seconds, fail

    def __call__(self, app, action, payload, record):
        self.client.rpush(self.key, "%s:%s:%s:begin" % (self.env, app, action))
        if self.seconds:
            time.sleep(self.seconds)
        if self.fail and action in self.fail:
            raise RuntimeError("simulated %s failure" % action)
        self.client.rpush(self.key, "%s:%s:%s:end" % (self.env, app, action))


@pytest.fixture
def make_consumer(redis_server, key_prefix):
    """Consumers with short times; those started with run=True loop in a thread until teardown."""
    running = []

    def make(env, name, on_action=None, run=False, **kwargs):
        options = dict(consumer_name=name, lock_ttl_ms=LOCK_TTL_MS, reclaim_idle_ms=RECLAIM_IDLE_MS,
                       heartbeat_seconds=1, block_ms=100, url="http://%s.test" % env)
        options.update(kwargs)
        consumer = standin_consumer.Consumer(redis_server.client(), env, key_prefix, on_action=on_action, **options)
        if run:
            consumer.start()
            stop = threading.Event()
            thread = threading.Thread(target=consumer.run, args=(stop, time.monotonic() + 60), daemon=True)
            thread.start()
            running.append((stop, thread))
        return consumer

    yield make
    for stop, _thread in running:
        stop.set()
    for _stop, thread in running:
        thread.join(timeout=5)
        assert not thread.is_alive(), "a consumer thread did not stop"


@pytest.fixture
def cli(redis_server, key_prefix, tmp_path):
    """The consumer's CLI as a subprocess; killed at teardown."""
    procs = []

    def start(env, name, *extra):
        log = open(tmp_path / ("%s-%d.log" % (name, len(procs))), "w")
        args = [sys.executable, str(AGENT_DIR / "consumer.py"), "--redis-url", redis_server.url, "--environment", env,
                "--key-prefix", key_prefix, "--consumer-name", name, "--heartbeat-seconds", "1",
                "--block-ms", "100", "--duration", "60", *extra]
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        procs.append((proc, log))
        return proc

    yield start
    stop_processes(procs)


# ------------------------------------------------------------------------------------------ order


def test_start_order_across_environments_with_replicas(rclient, keys, plane, make_consumer):
    """Two consumers for env a, one for env b: every app starts in its list's order, once per env."""
    order_key = keys.prefix + "test:order"
    for env, name in (("a", "a1"), ("a", "a2"), ("b", "b1")):
        make_consumer(env, name, Recorder(rclient, order_key, env, seconds=0.1), run=True)
    wanted = {"crm": ["a", "b"], "erp": ["a", "b"], "hr": ["b", "a"]}
    request_ids = {}
    for app, envs in wanted.items():
        put_app(rclient, keys, app, envs)
        result = plane.enqueue(app, "start", environments=envs)
        assert result["enqueued"] == envs
        request_ids[app] = result["request_id"]

    def all_running():
        return all((status_of(rclient, keys, app, env) or {}).get("status") == "running"
                   for app, envs in wanted.items() for env in envs)

    wait_for(all_running, timeout=15, what="every app running in every environment")
    events = rclient.lrange(order_key, 0, -1)
    for app, (first, second) in wanted.items():
        assert events.count("%s:%s:start:begin" % (first, app)) == 1, events
        assert events.count("%s:%s:start:begin" % (second, app)) == 1, events
        # The later environment began only after the earlier one had finished starting.
        assert events.index("%s:%s:start:end" % (first, app)) < events.index("%s:%s:start:begin" % (second, app))
        for env in (first, second):
            status = status_of(rclient, keys, app, env)
            assert status["requestId"] == request_ids[app]
            assert set(status) == {"message", "requestId", "status", "updatedAt"}
            assert rclient.zscore(keys.processed(env), request_ids[app]) is not None
    assert_nothing_pending(rclient, keys, ["a", "b"], wanted)
    # Registration and heartbeats of both environments.
    envs = rclient.hgetall(keys.environments)
    assert json.loads(envs["a"]) == {"name": "a", "url": "http://a.test"}
    assert set(rclient.hgetall(keys.heartbeats)) == {"a", "b"}


def test_an_old_stopped_status_does_not_let_a_later_environment_go_first(rclient, keys, plane, make_consumer):
    """After stop [a, b], a new start [a, b] still starts a before b."""
    order_key = keys.prefix + "test:order"
    put_app(rclient, keys, "crm", ["a", "b"])
    for env in ("a", "b"):
        rclient.hset(keys.status("crm"), env, json.dumps({"status": "stopped", "requestId": "old", "updatedAt": 1}))
    # b's worker is up first; a's only joins (and beats) a moment later.
    make_consumer("b", "b1", Recorder(rclient, order_key, "b"), run=True)
    rclient.hset(keys.heartbeats, "a", now_ms())
    plane.enqueue("crm", "start", environments=["a", "b"])
    time.sleep(0.5)
    assert rclient.lrange(order_key, 0, -1) == []  # b waits for a, whose status is only an old `stopped`
    make_consumer("a", "a1", Recorder(rclient, order_key, "a", seconds=0.1), run=True)
    wait_for(lambda: (status_of(rclient, keys, "crm", "b") or {}).get("status") == "running", what="crm running in b")
    events = rclient.lrange(order_key, 0, -1)
    assert events.index("a:crm:start:end") < events.index("b:crm:start:begin"), events


def test_replicas_of_one_environment_share_the_stream(rclient, keys, plane, make_consumer):
    """Two consumers of the same environment: every start is carried out exactly once."""
    order_key = keys.prefix + "test:order"
    make_consumer("a", "a1", Recorder(rclient, order_key, "a", seconds=0.02), run=True)
    make_consumer("a", "a2", Recorder(rclient, order_key, "a", seconds=0.02), run=True)
    apps = ["app%d" % i for i in range(12)]
    for app in apps:
        put_app(rclient, keys, app, ["a"])
        plane.enqueue(app, "start", environments=["a"])
    wait_for(lambda: all((status_of(rclient, keys, app, "a") or {}).get("status") == "running" for app in apps),
             timeout=15, what="all apps running")
    events = rclient.lrange(order_key, 0, -1)
    for app in apps:
        assert events.count("a:%s:start:end" % app) == 1, events
    assert_nothing_pending(rclient, keys, ["a"], apps)
    assert rclient.zcard(keys.processed("a")) == len(apps)


def test_unavailable_earlier_environment_does_not_block(rclient, keys, plane, make_consumer):
    """Step 3: a fresh earlier env blocks (entry deferred and kept touched); a stale or absent one does not."""
    calls = []
    b = make_consumer("b", "b1", lambda app, action, payload, record: calls.append((app, action)))
    b.start()
    put_app(rclient, keys, "crm", ["a", "b"])
    put_app(rclient, keys, "erp", ["x", "b"])
    put_app(rclient, keys, "hr", ["y", "b"])
    rclient.hset(keys.heartbeats, mapping={"a": now_ms(), "y": now_ms() - 400_000})  # x never beat
    request_ids = {app: plane.enqueue(app, "start", environments=envs)["request_id"]
                   for app, envs in (("crm", ["a", "b"]), ("erp", ["x", "b"]), ("hr", ["y", "b"]))}
    b.drain(timeout=5)
    assert sorted(calls) == [("erp", "start"), ("hr", "start")]
    assert status_of(rclient, keys, "crm", "b") is None
    assert len(b.deferred) == 1
    # While it waits, the deferred entry is touched: its idle time stays under the reclaim time.
    deadline = time.monotonic() + 1.5 * RECLAIM_IDLE_MS / 1000.0
    while time.monotonic() < deadline:
        b.step(block_ms=50)
    (entry,) = rclient.xpending_range(keys.commands("b"), CONSUMER_GROUP, "-", "+", 10)
    assert entry["consumer"] == "b1" and entry["time_since_delivered"] < RECLAIM_IDLE_MS
    # The earlier environment is done with this start: b goes ahead.
    rclient.hset(keys.status("crm"), "a", standin_consumer.status_record("running", request_ids["crm"]))
    b.drain(timeout=5)
    assert ("crm", "start") in calls
    assert status_of(rclient, keys, "crm", "b")["status"] == "running"
    assert_nothing_pending(rclient, keys, ["b"], ["crm", "erp", "hr"])


def test_entries_of_one_app_keep_stream_order_while_deferred(rclient, keys, plane, make_consumer):
    """A stop queued behind a waiting start of the same app waits for it instead of overtaking it."""
    calls = []
    b = make_consumer("b", "b1", lambda app, action, payload, record: calls.append(action))
    b.start()
    put_app(rclient, keys, "crm", ["a", "b"])
    rclient.hset(keys.heartbeats, "a", now_ms())  # a is available but nobody consumes its stream
    start = plane.enqueue("crm", "start", environments=["a", "b"])["request_id"]
    plane.enqueue("crm", "stop", environments=["b"], force=True)
    b.drain(timeout=3)
    assert calls == [] and len(b.deferred) == 2
    rclient.hset(keys.status("crm"), "a", standin_consumer.status_record("running", start))
    b.drain(timeout=5)
    assert calls == ["start", "stop"]
    assert status_of(rclient, keys, "crm", "b")["status"] == "stopped"
    assert_nothing_pending(rclient, keys, ["b"], ["crm"])


# ------------------------------------------------------------------------------------------ crash


def _start_entry_killed_mid_start(rclient, keys, plane, cli):
    put_app(rclient, keys, "crm", ["a"])
    rid = plane.enqueue("crm", "start", environments=["a"])["request_id"]
    record_key = keys.prefix + "test:done"
    victim = cli("a", "victim", "--start-delay", "30", "--lock-ttl-ms", str(LOCK_TTL_MS),
                 "--reclaim-idle-ms", str(RECLAIM_IDLE_MS), "--record-key", record_key)
    wait_for(lambda: (status_of(rclient, keys, "crm", "a") or {}).get("status") == "initializing",
             timeout=15, what="the victim to begin the start")
    assert rclient.exists(keys.lock("crm"))
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    (entry,) = rclient.xpending_range(keys.commands("a"), CONSUMER_GROUP, "-", "+", 10)
    assert entry["consumer"] == "victim"
    return rid, record_key


def test_killed_consumer_entry_is_reclaimed_by_a_replica(rclient, keys, plane, cli, make_consumer):
    """SIGKILL mid-start: a replica reclaims the entry after the idle time and completes it exactly once."""
    rid, record_key = _start_entry_killed_mid_start(rclient, keys, plane, cli)
    killed_at = time.monotonic()
    make_consumer("a", "survivor", run=True, on_action=lambda app, action, payload, record: rclient.rpush(
        record_key, json.dumps({"app": app, "action": action, "consumer": "survivor"})))
    wait_for(lambda: (status_of(rclient, keys, "crm", "a") or {}).get("status") == "running",
             timeout=15, what="the survivor to finish the start")
    # Reclaimed only once idle: the victim last touched the entry at most a third of the idle time before
    # it died.
    assert time.monotonic() - killed_at >= RECLAIM_IDLE_MS / 1000.0 * 0.5
    done = [json.loads(x) for x in rclient.lrange(record_key, 0, -1)]
    assert done == [{"app": "crm", "action": "start", "consumer": "survivor"}]
    assert status_of(rclient, keys, "crm", "a")["requestId"] == rid
    assert rclient.zscore(keys.processed("a"), rid) is not None
    assert_nothing_pending(rclient, keys, ["a"], ["crm"])


def test_restarted_consumer_finishes_its_own_history(rclient, keys, plane, cli):
    """SIGKILL mid-start, then the same consumer name again: own history first, lock waited out, once."""
    rid, record_key = _start_entry_killed_mid_start(rclient, keys, plane, cli)
    # A reclaim idle far beyond the test: only the own-history read can pick the entry up.
    again = cli("a", "victim", "--lock-ttl-ms", str(LOCK_TTL_MS), "--reclaim-idle-ms", "600000",
                "--record-key", record_key)
    wait_for(lambda: (status_of(rclient, keys, "crm", "a") or {}).get("status") == "running",
             timeout=15, what="the restarted consumer to finish the start")
    done = [json.loads(x) for x in rclient.lrange(record_key, 0, -1)]
    assert [(d["app"], d["action"], d["consumer"]) for d in done] == [("crm", "start", "victim")]
    assert status_of(rclient, keys, "crm", "a")["requestId"] == rid
    assert_nothing_pending(rclient, keys, ["a"], ["crm"])
    again.terminate()
    assert again.wait(timeout=5) == 0


def test_long_start_keeps_lock_and_entry_alive(rclient, keys, plane, make_consumer):
    """A start longer than the lock TTL and the reclaim time: the lock is extended, no replica steals it."""
    order_key = keys.prefix + "test:order"
    make_consumer("a", "slow", Recorder(rclient, order_key, "a"), run=True, start_delay=1.5,
                  lock_ttl_ms=600, reclaim_idle_ms=600)
    put_app(rclient, keys, "crm", ["a"])
    plane.enqueue("crm", "start", environments=["a"])
    wait_for(lambda: (status_of(rclient, keys, "crm", "a") or {}).get("status") == "initializing",
             timeout=10, what="the start to begin")
    make_consumer("a", "thief", Recorder(rclient, order_key, "a"), run=True, lock_ttl_ms=600, reclaim_idle_ms=600)
    for _attempt in range(500):
        # Lock first, then status: the lock is released only after the final status is written.
        locked = rclient.exists(keys.lock("crm"))
        if (status_of(rclient, keys, "crm", "a") or {}).get("status") != "initializing":
            break
        assert locked, "the lock lapsed during a long start"
        time.sleep(0.02)
    assert status_of(rclient, keys, "crm", "a")["status"] == "running"
    assert rclient.lrange(order_key, 0, -1) == ["a:crm:start:begin", "a:crm:start:end"]
    assert_nothing_pending(rclient, keys, ["a"], ["crm"])


# ------------------------------------------------------------------------------------------ dedup


def test_duplicate_delivery_is_carried_out_once(rclient, keys, plane, make_consumer):
    """The same requestId delivered twice (before and after completion): one start; pending cleared."""
    calls = []
    a = make_consumer("a", "a1", lambda app, action, payload, record: calls.append((app, action)))
    put_app(rclient, keys, "crm", ["a"])
    result = plane.enqueue("crm", "start", environments=["a"], request_id="deploy-42")
    rid = result["request_id"]
    assert rid == "deploy-42"
    assert plane.enqueue("crm", "start", environments=["a"], request_id="deploy-42")["duplicate"] is True
    (entry_id, fields), = rclient.xrange(keys.commands("a"))

    def redeliver():  # what a producer retrying after a lost reply would leave behind
        rclient.xadd(keys.commands("a"), fields)
        rclient.hset(keys.pending("a"), pending_field("crm", "start"), rid)

    redeliver()
    assert a.drain(timeout=5) == 1
    assert calls == [("crm", "start")]
    assert_nothing_pending(rclient, keys, ["a"], ["crm"])
    redeliver()
    a.drain(timeout=5)
    assert calls == [("crm", "start")]
    assert_nothing_pending(rclient, keys, ["a"], ["crm"])
    assert status_of(rclient, keys, "crm", "a")["status"] == "running"
    assert rclient.xlen(keys.commands("a")) == 3
    # The same for an action that takes no lock.
    stop_rid = plane.enqueue("crm", "stop", environments=["a"])["request_id"]
    a.drain(timeout=5)
    (_stop_id, stop_fields), = rclient.xrange(keys.commands("a"), min="(" + entry_id)[-1:]
    assert stop_fields["requestId"] == stop_rid
    rclient.xadd(keys.commands("a"), stop_fields)
    rclient.hset(keys.pending("a"), pending_field("crm", "stop"), stop_rid)
    a.drain(timeout=5)
    assert calls == [("crm", "start"), ("crm", "stop")]
    assert status_of(rclient, keys, "crm", "a")["requestId"] == stop_rid
    assert_nothing_pending(rclient, keys, ["a"], ["crm"])


# ------------------------------------------------------------------------------------------ statuses


def test_unknown_app_is_not_found(rclient, keys, plane, make_consumer):
    calls = []
    a = make_consumer("a", "a1", lambda *args: calls.append(args))
    rid = plane.enqueue("ghost", "start", environments=["a"])["request_id"]
    a.drain(timeout=5)
    status = status_of(rclient, keys, "ghost", "a")
    assert status["status"] == "not_found" and status["requestId"] == rid and "ghost" in status["message"]
    assert calls == []
    assert_nothing_pending(rclient, keys, ["a"], ["ghost"])


def test_create_start_stop_remove_statuses(rclient, keys, plane, make_consumer):
    calls, records = [], []
    a = make_consumer("a", "a1", lambda app, action, payload, record: (calls.append((action, payload)),
                                                                       records.append(record)))
    put_app(rclient, keys, "crm", ["a"])
    steps = [("create", "initialized"), ("start", "running"), ("stop", "stopped"), ("remove", None)]
    for action, wanted in steps:
        result = plane.enqueue("crm", action, environments=["a"], payload={"step": action})
        assert result["enqueued"] == ["a"], result
        a.drain(timeout=5)
        status = status_of(rclient, keys, "crm", "a")
        if wanted is None:
            assert status is None
            assert not rclient.hexists(keys.status("crm"), "a")
        else:
            assert status["status"] == wanted and status["requestId"] == result["request_id"]
            assert status["message"] == ""
        # The status record is protocol JSON: compact, keys sorted.
        raw = rclient.hget(keys.status("crm"), "a")
        assert raw is None or raw == json.dumps(json.loads(raw), separators=(",", ":"), sort_keys=True)
    assert calls == [(action, {"step": action}) for action, _status in steps]
    # The hook gets the app record from Redis as a dict (the app is still registered at its remove).
    assert records == [{"environments": ["a"], "name": "crm", "options": {"dbConnType": "new_database"}}] * 4
    assert_nothing_pending(rclient, keys, ["a"], ["crm"])
    assert rclient.zcard(keys.processed("a")) == 4


def test_failed_start_reports_error_and_releases_everything(rclient, keys, plane, make_consumer):
    a = make_consumer("a", "a1", Recorder(rclient, keys.prefix + "x", "a", fail=("start",)))
    put_app(rclient, keys, "crm", ["a"])
    plane.enqueue("crm", "start", environments=["a"])
    a.drain(timeout=5)
    status = status_of(rclient, keys, "crm", "a")
    assert status["status"] == "error" and "simulated start failure" in status["message"]
    assert_nothing_pending(rclient, keys, ["a"], ["crm"])


def test_processed_set_is_trimmed(rclient, keys, plane, make_consumer):
    a = make_consumer("a", "a1")
    rclient.zadd(keys.processed("a"), {"ancient": now_ms() - 8 * 24 * 3600 * 1000, "recent": now_ms() - 1000})
    put_app(rclient, keys, "crm", ["a"])
    rid = plane.enqueue("crm", "start", environments=["a"])["request_id"]
    a.drain(timeout=5)
    assert set(rclient.zrange(keys.processed("a"), 0, -1)) == {"recent", rid}


# ------------------------------------------------------------------------------------------ schema


@pytest.mark.parametrize("stored", ["2", "not-a-number"])
def test_newer_or_garbled_schema_is_refused(rclient, keys, make_consumer, stored):
    rclient.set(keys.schema, stored)
    consumer = make_consumer("a", "a1")
    with pytest.raises(standin_consumer.SchemaError):
        consumer.start()
    assert not rclient.exists(keys.environments, keys.heartbeats, keys.commands("a"))


def test_cli_refuses_newer_schema(rclient, keys, cli):
    rclient.set(keys.schema, "2")
    proc = cli("a", "a1")
    assert proc.wait(timeout=15) == 3
    assert not rclient.exists(keys.environments, keys.commands("a"))


def test_consumer_sets_schema_on_an_empty_keyspace(rclient, keys, make_consumer):
    make_consumer("a", "a1").start()
    assert rclient.get(keys.schema) == "1"
    groups = rclient.xinfo_groups(keys.commands("a"))
    assert [g["name"] for g in groups] == [CONSUMER_GROUP]


def test_consumer_survives_its_stream_being_deleted(rclient, keys, plane, make_consumer):
    """Unregistering deletes the stream under a running consumer; it creates its group again."""
    calls = []
    make_consumer("a", "a1", lambda app, action, payload, record: calls.append(app), run=True)
    put_app(rclient, keys, "crm", ["a"])
    rclient.delete(keys.commands("a"))
    wait_for(lambda: rclient.exists(keys.commands("a")), timeout=5, what="the consumer group again")
    plane.enqueue("crm", "start", environments=["a"])
    wait_for(lambda: calls == ["crm"], timeout=5, what="the start")
    assert_nothing_pending(rclient, keys, ["a"], ["crm"])


# ------------------------------------------------------------- app_command wait, against real consumers

def test_app_command_waits_for_the_workers(rclient, keys, redis_server, make_consumer):
    from helpers import ModuleFailed, run

    conn = dict(redis_url=redis_server.url, key_prefix=keys.prefix)
    run("environment", dict(conn, environments=[dict(name="a", url="http://a"), dict(name="b", url="http://b")]))
    run("app", dict(conn, name="crm", environments=["a", "b"]))
    for env in ("a", "b"):
        make_consumer(env, env + "1", Recorder(rclient, keys.prefix + "order", env), run=True)

    started = run("app_command", dict(conn, app="crm", command="start", wait=True, wait_timeout=30))
    assert {env: status["status"] for env, status in started["statuses"].items()} == {"a": "running", "b": "running"}
    assert run("app_command", dict(conn, app="crm", command="start", wait=True))["changed"] is False

    stopped = run("app_command", dict(conn, app="crm", command="stop", environments=["b"], wait=True, wait_timeout=30))
    assert stopped["statuses"]["b"]["status"] == "stopped"
    removed = run("app_command", dict(conn, app="crm", command="remove", wait=True, wait_timeout=30))
    assert removed["statuses"] == {"a": None, "b": None}

    # Nobody serves env `nobody`: the wait times out and says what it saw.
    run("app", dict(conn, name="orphan", environments=["nobody"], require_registered_environments=False))
    with pytest.raises(ModuleFailed) as failed:
        run("app_command", dict(conn, app="orphan", command="start", wait=True, wait_timeout=1))
    assert "did not complete the start command within wait_timeout=1s (running expected)" in failed.value.result["msg"]
    assert "orphan {'nobody': 'absent'}" in failed.value.result["msg"]


def test_app_command_waits_for_its_own_request_not_an_old_error(rclient, keys, redis_server, make_consumer):
    from helpers import run

    conn = dict(redis_url=redis_server.url, key_prefix=keys.prefix)
    run("environment", dict(conn, name="c", url="http://c"))
    run("app", dict(conn, name="crm", environments=["c"]))
    rclient.hset(keys.status("crm"), "c", json.dumps({"message": "old failure", "requestId": "an-earlier-one",
                                                      "status": "error", "updatedAt": now_ms()}))
    make_consumer("c", "c1", Recorder(rclient, keys.prefix + "order", "c", seconds=0.5), run=True)
    started = run("app_command", dict(conn, app="crm", command="start", wait=True, wait_timeout=30))
    assert started["statuses"]["c"]["status"] == "running"
    assert started["statuses"]["c"]["requestId"] == started["request_id"]


def test_stop_and_remove_of_an_app_never_started_need_no_wait(rclient, keys, redis_server):
    from helpers import run

    conn = dict(redis_url=redis_server.url, key_prefix=keys.prefix)
    run("environment", dict(conn, name="c", url="http://c"))
    run("app", dict(conn, name="idle", environments=["c"]))
    began = time.monotonic()  # nobody consumes env c: a wait for anything would time out
    stopped = run("app_command", dict(conn, app="idle", command="stop", wait=True, wait_timeout=20))
    removed = run("app_command", dict(conn, app="idle", command="remove", wait=True, wait_timeout=20))
    assert time.monotonic() - began < 5
    assert stopped["changed"] is False and stopped["not_queued"] == {"c": "not started"}
    assert removed["changed"] is False and removed["not_queued"] == {"c": "not present"}
    assert stopped["statuses"] == removed["statuses"] == {"c": None}


def test_a_stop_then_remove_playbook_runs_twice(rclient, keys, redis_server, make_consumer):
    from helpers import run
    from test_playbooks import ansible_playbook

    conn = dict(redis_url=redis_server.url, key_prefix=keys.prefix)
    run("environment", dict(conn, environments=[dict(name="a", url="http://a"), dict(name="b", url="http://b")]))
    run("app", dict(conn, name="crm", environments=["a", "b"]))
    for env in ("a", "b"):
        make_consumer(env, env + "1", Recorder(rclient, keys.prefix + "order", env), run=True)
    run("app_command", dict(conn, app="crm", command="start", wait=True, wait_timeout=30))
    recaps = []
    for _run in range(2):
        played = ansible_playbook("stop_remove.yml", {"test_redis_url": redis_server.url, "test_key_prefix": keys.prefix})
        assert played.returncode == 0, played.stdout[-4000:] + played.stderr[-2000:]
        recaps.append(played.stdout.split("PLAY RECAP")[-1])
    assert "changed=2" in recaps[0] and "changed=0" in recaps[1], recaps
    assert rclient.hlen(keys.status("crm")) == 0


def test_app_command_wait_fails_on_a_worker_error(rclient, keys, redis_server, make_consumer):
    from helpers import ModuleFailed, run

    conn = dict(redis_url=redis_server.url, key_prefix=keys.prefix)
    run("environment", dict(conn, name="c", url="http://c"))
    run("app", dict(conn, name="broken", environments=["c"]))
    make_consumer("c", "c1", Recorder(rclient, keys.prefix + "order", "c", fail={"start"}), run=True)
    with pytest.raises(ModuleFailed) as failed:
        run("app_command", dict(conn, app="broken", command="start", wait=True, wait_timeout=30))
    assert "failed to start: app 'broken' in" in failed.value.result["msg"]
    assert "simulated start failure" in failed.value.result["msg"]


# ------------------------------------------------ the worker author's questions (docs/protocol.md)

def test_a_forced_restart_keeps_the_environment_order(rclient, keys, plane, make_consumer):
    """The app runs in a and b; a forced start restarts a first, although a's old status is running."""
    order_key = keys.prefix + "test:order"
    for env in ("a", "b"):
        make_consumer(env, env + "1", Recorder(rclient, order_key, env, seconds=0.3), run=True)
    put_app(rclient, keys, "crm", ["a", "b"])
    plane.enqueue("crm", "start", environments=["a", "b"])
    wait_for(lambda: all((status_of(rclient, keys, "crm", e) or {}).get("status") == "running" for e in "ab"),
             timeout=15, what="crm running in a and b")
    rclient.delete(order_key)
    rid = plane.enqueue("crm", "start", environments=["a", "b"], force=True)["request_id"]

    def restarted(env):
        status = status_of(rclient, keys, "crm", env)
        return status["requestId"] == rid and status["status"] == "running"

    wait_for(lambda: restarted("a") and restarted("b"), timeout=15, what="the forced start done in a and b")
    events = rclient.lrange(order_key, 0, -1)
    assert events.index("a:crm:start:end") < events.index("b:crm:start:begin"), events
    assert_nothing_pending(rclient, keys, ["a", "b"], ["crm"])


def test_what_a_status_says_while_an_action_runs(rclient, keys, plane, make_consumer):
    """start shows `initializing`; stop and remove leave the previous status until they finish;
    `preparing` and `commanding` are never written."""
    seen = []
    a = make_consumer("a", "a1", lambda app, action, payload, record: seen.append(
        (action, (status_of(rclient, keys, app, "a") or {}).get("status"))))
    put_app(rclient, keys, "crm", ["a"])
    for action in ("create", "start", "stop", "start", "remove"):
        plane.enqueue("crm", action, environments=["a"])
        a.drain(timeout=5)
    assert seen == [("create", None), ("start", "initializing"), ("stop", "running"),
                    ("start", "initializing"), ("remove", "running")]


def test_reclaim_pages_through_more_entries_than_one_count(rclient, keys, plane, make_consumer):
    """25 entries left by a dead consumer: XAUTOCLAIM from 0-0 with COUNT 10 each loop finds them all."""
    for number in range(25):
        put_app(rclient, keys, "app%d" % number, ["a"])
        plane.enqueue("app%d" % number, "start", environments=["a"])
    rclient.xreadgroup(CONSUMER_GROUP, "dead", {keys.commands("a"): ">"}, count=100)
    time.sleep(RECLAIM_IDLE_MS / 1000.0 + 0.2)
    a = make_consumer("a", "a1", lambda *args: None, count=10)
    a.drain(timeout=15)
    assert all(status_of(rclient, keys, "app%d" % n, "a")["status"] == "running" for n in range(25))
    assert_nothing_pending(rclient, keys, ["a"])


def test_dead_consumer_names_are_removed_on_start(rclient, keys, make_consumer):
    stream = keys.commands("a")
    rclient.xgroup_create(stream, CONSUMER_GROUP, id="0", mkstream=True)
    rclient.xadd(stream, {"requestId": "r1", "appName": "crm", "action": "stop"})
    rclient.xreadgroup(CONSUMER_GROUP, "busy", {stream: ">"}, count=1)  # holds an entry
    rclient.xgroup_createconsumer(stream, CONSUMER_GROUP, "gone")  # nothing pending
    time.sleep(0.3)
    make_consumer("a", "a1", lambda *args: None, dead_consumer_idle_ms=200, register=False).start()
    names = {info["name"] for info in rclient.xinfo_consumers(stream, CONSUMER_GROUP)}
    assert names == {"busy"}  # its entry waits for XAUTOCLAIM, so its name stays


def test_a_worker_registering_replaces_the_operators_record(rclient, keys, make_consumer):
    rclient.hset(keys.environments, "a", json.dumps({"name": "a", "url": "http://operator.example"}))
    make_consumer("a", "a1", url="http://worker.example").start()
    assert json.loads(rclient.hget(keys.environments, "a"))["url"] == "http://worker.example"


# ------------------------------------------------------------------------------ hostile entries and records


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
