# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The consumer half of control-plane protocol v1 (docs/protocol.md), shipped in the worker agent.

The agent (agent.py beside this file) runs one Consumer per worker environment and gives it the
NocoBase actions as its on_action hook; tests run it directly against a real Redis.  Plain Python
3.11, stdlib and redis-py only (works with redis-py 4.3.4, Debian's python3-redis, and 8.x).

Every key name comes from _keyspace.py; nothing here spells a key.

Manual use (a consumer with no NocoBase behind it, for experiments)::

    python3 roles/worker/files/agent/consumer.py --redis-url redis://127.0.0.1:6379/0 --environment env_a
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import redis

try:  # beside this file in the agent image
    import _keyspace
except ImportError:  # in the collection: roles/worker/files/agent/ -> plugins/module_utils/
    sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "plugins" / "module_utils"))
    import _keyspace

from _keyspace import (  # noqa: E402
    ACTIONS,
    CONSUMER_GROUP,
    DEFAULT_KEY_PREFIX,
    DEFAULT_STALE_AFTER_SECONDS,
    PROTOCOL_VERSION,
    Keyspace,
    is_app_name,
    is_available,
    is_environment_name,
    is_request_id,
    load_json,
    load_record,
    now_ms,
    parse_schema_version,
    pending_field,
    redis_time_ms,
)

# parse_schema_version's error for a schema key that is not a number.
_SCHEMA_PARSE_ERRORS = (ValueError, getattr(_keyspace, "ControlPlaneError", ValueError))

LOG = logging.getLogger("agent.consumer")

DEFAULT_LOCK_TTL_MS = 60_000
DEFAULT_RECLAIM_IDLE_MS = 30_000
DEFAULT_HEARTBEAT_SECONDS = 120.0
DEFAULT_BLOCK_MS = 1000
DEFAULT_COUNT = 10
# How often deferred entries are retried (and touched); capped below a third of the reclaim time.
DEFAULT_RETRY_MS = 250
PROCESSED_RETENTION_MS = 7 * 24 * 3600 * 1000
# A consumer name with nothing pending and idle this long belongs to a replica that is gone.
DEFAULT_DEAD_CONSUMER_IDLE_MS = 24 * 3600 * 1000
# Statuses of an earlier environment that let a later one go ahead (processing step 3).
FINAL_STATUS = {"start": "running", "stop": "stopped", "create": "initialized", "remove": None}

# Processing step 6: final status (or delete it), dedup mark, compare-delete of the pending field
# and XACK, atomically.  KEYS: status processed pending commands;
# ARGV: env statusJson-or-"" requestId now <app>:<action> id group.
COMPLETE_LUA = """
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
if redis.call('HGET', KEYS[3], ARGV[5]) == ARGV[3] then
  redis.call('HDEL', KEYS[3], ARGV[5])
end
return redis.call('XACK', KEYS[4], ARGV[7], ARGV[6])
"""
# Acknowledging a redelivered (already processed) entry: the same compare-delete of the pending
# field and XACK as above, without touching the status or the dedup mark.
# KEYS: pending commands; ARGV: <app>:<action> requestId id group.
ACK_LUA = """
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return redis.call('XACK', KEYS[2], ARGV[4], ARGV[3])
"""
# Processing steps 4 and 7, verbatim from docs/protocol.md.
EXTEND_LUA = "if redis.call('get',KEYS[1])==ARGV[1] then return redis.call('pexpire',KEYS[1],ARGV[2]) end return 0"
RELEASE_LUA = "if redis.call('get',KEYS[1])==ARGV[1] then return redis.call('del',KEYS[1]) end return 0"


class SchemaError(RuntimeError):
    """The keyspace was written by a newer protocol version (or holds garbage)."""


class ActionAborted(Exception):
    """Raised by an on_action hook that gave up because the consumer is stopping: the entry stays
    unacknowledged (its status shows the progress) and is carried out after a restart."""


class ActionDeferred(Exception):
    """Raised by an on_action hook that cannot act now (its NocoBase is down): the entry stays
    unacknowledged in the consumer's deferred list and is tried again, not turned into an error."""


def _str(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _loaded(raw, kind):
    """The JSON value of a stream field if it is a `kind` within load_json's bounds, else None."""
    try:
        value = load_json(raw) if raw else None
    except ValueError:
        return None
    return value if isinstance(value, kind) else None


def _fields(raw):
    if raw is None:
        return None
    return {_str(k): _str(v) for k, v in raw.items()}


def _id_key(entry_id):
    ms, _sep, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def dumps(record):
    """Protocol JSON: compact, keys sorted."""
    return json.dumps(record, separators=(",", ":"), sort_keys=True)


def status_record(status, request_id, message=""):
    return dumps({"message": message or "", "requestId": request_id or "", "status": status, "updatedAt": now_ms()})


def _stream_entries(response):
    """XREADGROUP reply -> [(id, fields-or-None)] (RESP2 list; a RESP3 dict is accepted too)."""
    if not response:
        return []
    pairs = response.items() if isinstance(response, dict) else response
    entries = []
    for _stream, items in pairs:
        if len(items) == 1 and isinstance(items[0], list) and items[0] and isinstance(items[0][0], (list, tuple)):
            items = items[0]  # RESP3 wraps the entries once more
        for item in items:
            entries.append((_str(item[0]), _fields(item[1])))
    return entries


def _autoclaim_entries(response):
    """XAUTOCLAIM reply of redis-py 4.x/8.x on Redis 6.2/7.x -> [(id, fields-or-None)]."""
    if not response or len(response) < 2:
        return []
    out = []
    for item in response[1] or []:
        if item is None or item[0] is None:
            continue  # deleted from the stream (Redis 6.2); Redis 7 drops those from the PEL itself
        out.append((_str(item[0]), _fields(item[1])))
    return out


class _KeepAlive:
    """While an action runs: extend the bootstrap lock and touch the entry so neither lapses."""

    def __init__(self, consumer, entry_id, app, lock_token=None):
        self.consumer = consumer
        self.entry_id = entry_id
        self.app = app
        self.lock_token = lock_token
        self.done = threading.Event()
        intervals = [consumer.reclaim_idle_ms / 3.0]
        if lock_token:
            intervals.append(consumer.lock_ttl_ms / 3.0)
        self.interval = max(0.01, min(intervals) / 1000.0)
        self.thread = None

    def __enter__(self):
        self.thread = threading.Thread(target=self._run, name="keepalive-%s" % (self.entry_id or self.app), daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join(timeout=5)

    def _run(self):
        c = self.consumer
        while not self.done.wait(self.interval):
            try:
                if self.entry_id:
                    c.client.xclaim(c.keys.commands(c.environment), CONSUMER_GROUP, c.consumer_name, 0,
                                    [self.entry_id], justid=True)
                if self.lock_token and not c.lock_lost():
                    if not c._extend(keys=[c.keys.lock(self.app)], args=[self.lock_token, c.lock_ttl_ms]):
                        c._lock_lost.set()
                        LOG.warning("%s: lost the bootstrap lock of %s while starting it: giving the start up",
                                    c.consumer_name, self.app)
            except redis.RedisError as exc:
                LOG.warning("%s: keep-alive failed: %s", c.consumer_name, exc)


class Consumer:
    """One worker of one environment, following docs/protocol.md "Consumer half".

    on_action(app, action, payload, record) is what really creating/starting/stopping/removing an
    app means (record: the app record from Redis as a dict, None for a remove of an unknown app);
    it runs after the progress status is written and before the final one.  An exception from it
    turns into status ``error`` with the exception text as message.
    """

    def __init__(self, client, environment, key_prefix=DEFAULT_KEY_PREFIX, consumer_name=None,
                 url=None, proxy_url=None, app_version=None, lock_ttl_ms=DEFAULT_LOCK_TTL_MS,
                 reclaim_idle_ms=DEFAULT_RECLAIM_IDLE_MS, heartbeat_seconds=DEFAULT_HEARTBEAT_SECONDS,
                 on_action=None, start_delay=0.0, block_ms=DEFAULT_BLOCK_MS, count=DEFAULT_COUNT,
                 retry_ms=DEFAULT_RETRY_MS, stale_after_seconds=DEFAULT_STALE_AFTER_SECONDS,
                 register=True, dead_consumer_idle_ms=DEFAULT_DEAD_CONSUMER_IDLE_MS):
        if not is_environment_name(environment):
            raise ValueError("environment name %r does not match the protocol's pattern" % (environment,))
        if isinstance(client, str):
            client = redis.Redis.from_url(client, decode_responses=True, socket_connect_timeout=5,
                                          socket_timeout=max(10.0, block_ms / 1000.0 + 5))
        self.client = client
        self.environment = environment
        self.keys = Keyspace(key_prefix)
        self.consumer_name = consumer_name or "%s-%d-%s" % (socket.gethostname(), os.getpid(), secrets.token_hex(3))
        self.url = url or ""
        self.proxy_url = proxy_url or ""
        self.app_version = app_version or ""
        self.lock_ttl_ms = int(lock_ttl_ms)
        self.reclaim_idle_ms = int(reclaim_idle_ms)
        self.heartbeat_seconds = float(heartbeat_seconds)
        self.on_action = on_action
        self.start_delay = float(start_delay or 0)
        self.block_ms = int(block_ms)
        self.count = int(count)
        self.retry_ms = max(10, min(int(retry_ms), self.reclaim_idle_ms // 3))
        self.stale_after_seconds = stale_after_seconds
        self.dead_consumer_idle_ms = int(dead_consumer_idle_ms)
        self.register_environment = register
        # Optional callable: while it returns false, entries are deferred before anything is
        # written for them (the agent: while its NocoBase is not healthy).
        self.can_act = None
        # Called after each entry with (entry id, action, outcome of process(), the final status written or
        # None): the agent's metrics.
        self.on_outcome = None
        self.final_status = None
        self._complete = client.register_script(COMPLETE_LUA)
        self._ack = client.register_script(ACK_LUA)
        self._extend = client.register_script(EXTEND_LUA)
        self._release = client.register_script(RELEASE_LUA)
        self._deferred = {}  # entry id -> fields, waiting for order or lock
        # entry id -> the arguments of _finish: carried out, but completing it failed (Redis went
        # away); completed again before anything else, never carried out again.
        self._unfinished = {}
        # Set while an action runs if its lock was lost: the action gives up (lock_lost()).
        self._lock_lost = threading.Event()
        self._history_done = False
        self._started = False
        self._stop_event = threading.Event()
        self._heartbeat_thread = None
        self._heartbeat_stop = threading.Event()

    # ---------------------------------------------------------------------- on start

    def environment_record(self):
        record = {"name": self.environment, "url": self.url, "proxyUrl": self.proxy_url, "appVersion": self.app_version}
        return dumps({k: v for k, v in record.items() if v})

    def check_schema(self):
        """On start, step 1: refuse a keyspace written by a newer protocol version."""
        try:
            version = parse_schema_version(self.client.get(self.keys.schema))
        except _SCHEMA_PARSE_ERRORS as exc:
            raise SchemaError(str(exc)) from None
        if version > PROTOCOL_VERSION:
            raise SchemaError("schema version %d is newer than this consumer understands (%d)"
                              % (version, PROTOCOL_VERSION))
        return version

    def register(self):
        """On start, step 2: environment record and first heartbeat, in one transaction.

        Like every writer, it sets the schema key when the keyspace is empty (under WATCH, so a
        newer version written in between is still refused).
        """
        with self.client.pipeline(transaction=True) as pipe:
            for _attempt in range(10):
                try:
                    pipe.watch(self.keys.schema)
                    try:
                        version = parse_schema_version(pipe.get(self.keys.schema))
                    except _SCHEMA_PARSE_ERRORS as exc:
                        raise SchemaError(str(exc)) from None
                    if version > PROTOCOL_VERSION:
                        raise SchemaError("schema version %d is newer than this consumer understands (%d)"
                                          % (version, PROTOCOL_VERSION))
                    now = redis_time_ms(pipe.time())
                    pipe.multi()
                    if version == 0:
                        pipe.set(self.keys.schema, PROTOCOL_VERSION)
                    pipe.hset(self.keys.environments, self.environment, self.environment_record())
                    pipe.hset(self.keys.heartbeats, self.environment, now)
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue
        raise RuntimeError("could not register environment %s: the schema key kept changing" % self.environment)

    def ensure_group(self):
        """On start, step 3: the consumer group from id 0; BUSYGROUP means it exists."""
        try:
            self.client.xgroup_create(self.keys.commands(self.environment), CONSUMER_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def remove_dead_consumers(self):
        """On start, step 3: forget the names of replicas gone for good (nothing pending, long idle).

        A live consumer reads every second, so its idle time stays small; one removed by mistake is
        created again by its next XREADGROUP. Returns the names removed.
        """
        stream = self.keys.commands(self.environment)
        removed = []
        for info in self.client.xinfo_consumers(stream, CONSUMER_GROUP):
            name = _str(info.get("name"))
            if name != self.consumer_name and int(info.get("pending", 1)) == 0 \
                    and int(info.get("idle", 0)) > self.dead_consumer_idle_ms:
                self.client.xgroup_delconsumer(stream, CONSUMER_GROUP, name)
                removed.append(name)
        if removed:
            LOG.info("%s: removed the consumers gone for good: %s", self.consumer_name, ", ".join(removed))
        return removed

    def heartbeat(self):
        """On start, step 4: one beat, at Redis's clock. Nothing else is written by a beat."""
        self.client.hset(self.keys.heartbeats, self.environment, redis_time_ms(self.client.time()))

    def _heartbeat_loop(self):
        while not self._heartbeat_stop.wait(self.heartbeat_seconds):
            try:
                self.heartbeat()
            except redis.RedisError as exc:
                LOG.warning("%s: heartbeat failed: %s", self.consumer_name, exc)

    def start(self):
        """Schema check, registration, consumer group and heartbeat thread."""
        if self._started:
            return
        self.check_schema()
        if self.register_environment:
            self.register()
        self.ensure_group()
        self.remove_dead_consumers()
        if self.register_environment and self.heartbeat_seconds > 0:
            self._heartbeat_stop.clear()
            self._heartbeat_thread = threading.Thread(target=self._heartbeat_loop, daemon=True,
                                                      name="heartbeat-" + self.environment)
            self._heartbeat_thread.start()
        self._started = True
        LOG.info("%s: consuming %s as %s", self.environment, self.keys.commands(self.environment), self.consumer_name)

    def stop(self):
        """On stop: stop beating (the record stays; a restarting node keeps it); aborts a slow start."""
        self._stop_event.set()
        self._stop_beating()

    def _stop_beating(self):
        self._heartbeat_stop.set()
        if self._heartbeat_thread is not None:
            self._heartbeat_thread.join(timeout=5)
            self._heartbeat_thread = None
        self._started = False

    # ---------------------------------------------------------------------- loop

    @property
    def deferred(self):
        return dict(self._deferred)

    def step(self, block_ms=None):
        """One loop iteration: own history (once), deferred retries, reclaim, new entries.

        Returns the number of entries completed (acknowledged) in this iteration.
        """
        if not self._started:
            self.start()
        stream = self.keys.commands(self.environment)
        seen = set(self._unfinished)
        done = self._finish_unfinished()
        # 1. Own history first: entries delivered to this consumer name and never acknowledged.
        if not self._history_done:
            last = "0"
            for _page in range(10_000):
                entries = _stream_entries(self.client.xreadgroup(CONSUMER_GROUP, self.consumer_name, {stream: last},
                                                                 count=self.count))
                if not entries:
                    break
                for entry_id, fields in entries:
                    last = entry_id
                    done += self._handle(entry_id, fields, seen)
            self._history_done = True
        # Deferred entries: touch them all (one XCLAIM ... JUSTID), then retry them in order.
        if self._deferred:
            ids = sorted(self._deferred, key=_id_key)
            claimed = {_str(i) for i in self.client.xclaim(stream, CONSUMER_GROUP, self.consumer_name, 0, ids,
                                                           justid=True)}
            for entry_id in ids:
                if entry_id in seen:
                    continue  # deferred earlier in this very step
                fields = self._deferred.pop(entry_id)
                if entry_id not in claimed:
                    continue  # acknowledged meanwhile (by a replica): nothing left to do
                done += self._handle(entry_id, fields, seen)
        # 2. Reclaim entries of consumers that died.
        reclaimed = _autoclaim_entries(self.client.xautoclaim(stream, CONSUMER_GROUP, self.consumer_name,
                                                              self.reclaim_idle_ms, "0-0", count=self.count))
        for entry_id, fields in reclaimed:
            if entry_id in seen:
                continue
            LOG.info("%s: reclaimed %s", self.consumer_name, entry_id)
            done += self._handle(entry_id, fields, seen)
        # 3. New entries; while some wait, block only for the retry interval.
        block = self.block_ms if block_ms is None else int(block_ms)
        if self._deferred:
            block = min(block, self.retry_ms)
        if self._stop_event.is_set():
            return done
        entries = _stream_entries(self.client.xreadgroup(CONSUMER_GROUP, self.consumer_name, {stream: ">"},
                                                         count=self.count, block=max(1, block)))
        for entry_id, fields in entries:
            done += self._handle(entry_id, fields, seen)
        return done

    def drain(self, timeout=10.0, block_ms=50, wait_deferred=False):
        """Step until an iteration completes nothing (and, with wait_deferred, nothing waits).

        Bounded by timeout; returns the number of entries completed.
        """
        deadline = time.monotonic() + timeout
        total = 0
        while time.monotonic() < deadline:
            n = self.step(block_ms=block_ms)
            total += n
            if n == 0 and not (wait_deferred and self._deferred):
                break
        return total

    def run(self, stop_event=None, deadline=None, ready=None):
        """Loop until stop_event is set or time.monotonic() passes deadline; then stop beating.

        ready, when given, is called before every iteration: while it returns false nothing is
        consumed (the agent holds commands back while its NocoBase is not healthy).  Redis errors
        are logged and retried with a bounded backoff; a consumer group that vanished (the stream
        was deleted, e.g. by unregistering the environment) is created again.
        """
        if stop_event is not None:
            self._stop_event = stop_event
        backoff = 0.1
        try:
            while not self._stop_event.is_set() and (deadline is None or time.monotonic() < deadline):
                try:
                    if ready is not None and not ready():
                        self._stop_event.wait(self.retry_ms / 1000.0)
                        continue
                    self.step()
                    backoff = 0.1
                    continue
                except redis.ResponseError as exc:
                    if "NOGROUP" in str(exc):
                        LOG.warning("%s: consumer group gone (%s), creating it again", self.consumer_name, exc)
                        self._deferred.clear()
                        self.ensure_group()
                        continue
                    LOG.warning("%s: redis error (%s), retrying in %.1fs", self.consumer_name, exc, backoff)
                except redis.RedisError as exc:
                    LOG.warning("%s: redis unreachable (%s), retrying in %.1fs", self.consumer_name, exc, backoff)
                self._stop_event.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        finally:
            self._stop_beating()

    # ---------------------------------------------------------------------- processing

    def start_in_order(self, app, environments, request_id, start):
        """Call start() as a start entry of `app` would be carried out (its request `request_id`):
        after the earlier of its `environments`, under its lock. For the agent's resync; returns
        False, without calling start(), while it must wait for either."""
        if self._must_wait(app, environments, request_id):
            return False
        token = secrets.token_hex(16)
        if not self.client.set(self.keys.lock(app), token, nx=True, px=self.lock_ttl_ms):
            return False
        self._lock_lost.clear()
        try:
            with _KeepAlive(self, None, app, token):
                start()
        finally:
            self._release(keys=[self.keys.lock(app)], args=[token])
        return True

    def lock_lost(self):
        """Whether the running action's lock was lost (another consumer may act on the app now)."""
        return self._lock_lost.is_set()

    def _finish_unfinished(self):
        """Complete, in stream order, the entries whose completion failed; never act on them again."""
        done = 0
        for entry_id in sorted(self._unfinished, key=_id_key):
            action = self._unfinished[entry_id][1]
            self._finish(entry_id, *self._unfinished[entry_id])
            del self._unfinished[entry_id]
            LOG.info("%s: completed %s after Redis came back", self.consumer_name, entry_id)
            self._outcome(entry_id, action, "done")
            done += 1
        return done

    def _outcome(self, entry_id, action, result):
        """Tell on_outcome; a failure there is logged, it never stops the consumer."""
        if self.on_outcome is None:
            return
        try:
            self.on_outcome(entry_id, action, result, self.final_status)
        except Exception:  # noqa: BLE001 - metrics must not cost a command
            LOG.exception("%s: on_outcome failed for %s", self.consumer_name, entry_id)

    def _handle(self, entry_id, fields, seen):
        if entry_id in seen:
            return 0
        seen.add(entry_id)
        app = (fields or {}).get("appName")
        # Entries of one app run in stream order: while an earlier one waits, later ones wait too.
        if app and any(_id_key(d) < _id_key(entry_id) and (f or {}).get("appName") == app
                       for d, f in self._deferred.items()):
            self._deferred[entry_id] = fields
            return 0
        self.final_status = None
        try:
            result = self.process(entry_id, fields)
        except redis.RedisError:
            raise
        except Exception:  # noqa: BLE001 - one entry that cannot be processed never stops the consumer
            LOG.exception("%s: entry %s could not be processed; acknowledged without action", self.consumer_name, entry_id)
            self._drop(entry_id, fields)
            result = "dropped"
        self._outcome(entry_id, (fields or {}).get("action"), result)
        if result == "dropped":
            return 0
        if result == "deferred":
            self._deferred[entry_id] = fields
            return 0
        return 1 if result == "done" else 0

    def _drop(self, entry_id, fields):
        """Acknowledge an entry without acting, and clear its pending mark if the mark is its own, so
        that the producer can queue the app's command again."""
        fields = fields or {}
        app, action, request_id = fields.get("appName"), fields.get("action"), fields.get("requestId")
        if is_app_name(app) and action in ACTIONS and isinstance(request_id, str) and request_id:
            self._ack_only(entry_id, pending_field(app, action), request_id)
        else:
            self._ack_only(entry_id, "", "")

    def _ack_only(self, entry_id, field, request_id):
        self._ack(keys=[self.keys.pending(self.environment), self.keys.commands(self.environment)],
                  args=[field, request_id, entry_id, CONSUMER_GROUP])

    def _finish(self, entry_id, app, action, request_id, status_json, lock_token=None):
        """Step 6 (complete + trim) and step 7 (release), in one round trip."""
        env = self.environment
        self.final_status = json.loads(status_json).get("status") if status_json else "removed"
        now = now_ms()
        pipe = self.client.pipeline(transaction=False)
        self._complete(keys=[self.keys.status(app), self.keys.processed(env), self.keys.pending(env),
                             self.keys.commands(env)],
                       args=[env, status_json or "", request_id, now, pending_field(app, action), entry_id,
                             CONSUMER_GROUP], client=pipe)
        pipe.zremrangebyscore(self.keys.processed(env), "-inf", now - PROCESSED_RETENTION_MS)
        if lock_token:
            self._release(keys=[self.keys.lock(app)], args=[lock_token], client=pipe)
        pipe.execute()

    def _must_wait(self, app, environments, request_id):
        """Step 3: an available earlier environment that has not finished this start blocks this one.

        Finished means `running` or `error` written for this very request, or `running` with no start
        queued there (the producer skipped it as running). An old `stopped` or `error` from an earlier
        command, or the `running` of an app a forced restart is about to restart, does not count.
        """
        if self.environment not in environments:
            return False
        earlier = environments[:environments.index(self.environment)]
        if not earlier:
            return False
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(self.keys.heartbeats, earlier)
        pipe.hmget(self.keys.status(app), earlier)
        pipe.time()
        for env in earlier:
            pipe.hget(self.keys.pending(env), pending_field(app, "start"))
        beats, statuses, now, *queued_starts = pipe.execute()
        now = redis_time_ms(now)
        for env, beat, raw, queued_start in zip(earlier, beats, statuses, queued_starts):
            try:
                last = int(_str(beat)) if beat is not None else None
            except ValueError:
                last = None
            if not is_available(last, self.stale_after_seconds, now):
                continue
            record = {}
            if raw is not None:
                try:
                    record = load_record(raw)
                except ValueError:
                    record = {}
            status = record.get("status")
            this_request = record.get("requestId") == request_id
            done = (status in ("running", "error") and this_request) or (status == "running" and queued_start is None)
            if not done:
                LOG.debug("%s: %s waits for %s (status %s)", self.consumer_name, app, env, status)
                return True
        return False

    def _status(self, app, status, request_id, message=""):
        self.client.hset(self.keys.status(app), self.environment, status_record(status, request_id, message))

    def _call(self, app, action, payload, record):
        if self.on_action is not None:
            self.on_action(app, action, payload, record)

    def process(self, entry_id, fields):
        """Process one entry. Returns 'done', 'deferred', 'duplicate', 'dropped' or 'aborted'."""
        env = self.environment
        if fields is None:  # the entry was deleted from the stream: nothing to carry out
            self._ack_only(entry_id, "", "")
            return "dropped"
        request_id = fields.get("requestId")
        app = fields.get("appName")
        action = fields.get("action")
        if not is_request_id(request_id) or not is_app_name(app) or action not in ACTIONS:
            LOG.warning("%s: malformed entry %s %.300r acknowledged without action", self.consumer_name, entry_id, fields)
            self._drop(entry_id, fields)
            return "dropped"
        field = pending_field(app, action)
        # 1. Duplicate?
        if self.client.zscore(self.keys.processed(env), request_id) is not None:
            LOG.info("%s: %s already processed, acknowledging redelivery %s", self.consumer_name, request_id, entry_id)
            self._ack_only(entry_id, field, request_id)
            return "duplicate"
        if self.can_act is not None and not self.can_act():
            return "deferred"
        # 2. App known?
        raw_record = self.client.hget(self.keys.apps, app)
        if action != "remove" and raw_record is None:
            self._finish(entry_id, app, action, request_id,
                         status_record("not_found", request_id, "app %s is not registered" % app))
            return "done"
        try:
            record = load_record(raw_record) if raw_record is not None else None
        except ValueError as exc:
            LOG.warning("%s: the record of app %s %s", self.consumer_name, app, exc)
            self._finish(entry_id, app, action, request_id,
                         status_record("error", request_id, "the record of app %s %s" % (app, exc)))
            return "done"
        environments = _loaded(fields.get("environments"), list) or []
        payload = _loaded(fields.get("payload"), dict) or {}
        token = None
        if action == "start":
            # 3. Order.
            if self._must_wait(app, [_str(e) for e in environments], request_id):
                return "deferred"
            # 4. Lock.
            token = secrets.token_hex(16)
            if not self.client.set(self.keys.lock(app), token, nx=True, px=self.lock_ttl_ms):
                return "deferred"
            # Between our duplicate check and the lock, a replica may have completed it.
            if self.client.zscore(self.keys.processed(env), request_id) is not None:
                self._release(keys=[self.keys.lock(app)], args=[token])
                self._ack_only(entry_id, field, request_id)
                return "duplicate"
        # 5. Act.
        final = FINAL_STATUS[action]
        message = ""
        self._lock_lost.clear()
        with _KeepAlive(self, entry_id, app, token):
            try:
                if action == "start":
                    self._status(app, "initializing", request_id)
                    LOG.info("%s: starting %s (%s)", self.consumer_name, app, request_id)
                    if self.start_delay and self._stop_event.wait(self.start_delay):
                        raise ActionAborted()
                self._call(app, action, payload, record)
            except ActionAborted:
                LOG.info("%s: stopped in the middle of %s %s", self.consumer_name, action, app)
                if token:
                    self._release(keys=[self.keys.lock(app)], args=[token])
                return "aborted"
            except ActionDeferred as exc:
                LOG.info("%s: %s %s deferred: %s", self.consumer_name, action, app, exc)
                if token:
                    self._release(keys=[self.keys.lock(app)], args=[token])
                return "deferred"
            except Exception as exc:  # noqa: BLE001 - any failure of the action is the app's error status
                LOG.warning("%s: %s %s failed: %s", self.consumer_name, action, app, exc)
                final, message = "error", "%s failed: %s" % (action, exc)
        if self.lock_lost():
            # Another consumer may hold the lock and start the app: nothing is completed here, and the
            # entry, left pending, is carried out again under the lock once it is reclaimed.
            LOG.warning("%s: %s %s abandoned: its lock was lost", self.consumer_name, action, app)
            return "aborted"
        # 6. Complete, 7. release. If Redis fails now, the entry is completed again by itself.
        finish = (app, action, request_id, status_record(final, request_id, message) if final else "", token)
        try:
            self._finish(entry_id, *finish)
        except redis.RedisError:
            self._unfinished[entry_id] = finish
            LOG.warning("%s: completing %s %s failed; completed once Redis answers, not carried out again",
                        self.consumer_name, action, app)
            raise
        LOG.info("%s: %s %s -> %s", self.consumer_name, action, app, final or "removed")
        return "done"


def main(argv=None):
    env = os.environ
    parser = argparse.ArgumentParser(
        description="Reference consumer of the nocobase.multienv control-plane protocol v1 (a test tool)")
    parser.add_argument("--redis-url", default=env.get("APP_COMMAND_REDIS_URL"), help="redis:// or rediss:// URL")
    parser.add_argument("--environment", default=env.get("ENVIRONMENT_NAME"), help="environment name E")
    parser.add_argument("--key-prefix", default=env.get("STANDIN_KEY_PREFIX", DEFAULT_KEY_PREFIX))
    parser.add_argument("--consumer-name", default=None, help="unique per replica; default <host>-<pid>-<random>")
    parser.add_argument("--url", default=env.get("ENVIRONMENT_URL", ""))
    parser.add_argument("--proxy-url", default=env.get("ENVIRONMENT_PROXY_URL", ""))
    parser.add_argument("--app-version", default="")
    parser.add_argument("--lock-ttl-ms", type=int, default=DEFAULT_LOCK_TTL_MS)
    parser.add_argument("--reclaim-idle-ms", type=int, default=DEFAULT_RECLAIM_IDLE_MS)
    parser.add_argument("--heartbeat-seconds", type=float, default=DEFAULT_HEARTBEAT_SECONDS)
    parser.add_argument("--block-ms", type=int, default=DEFAULT_BLOCK_MS)
    parser.add_argument("--start-delay", type=float, default=float(env.get("CONSUMER_START_DELAY", "0")),
                        help="seconds a start takes (simulated), after 'initializing'")
    parser.add_argument("--record-key", default=None,
                        help="test hook: RPUSH a JSON line per completed action to this Redis list")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if not args.redis_url or not args.environment:
        parser.error("--redis-url and --environment are required")
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stdout,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")

    client = redis.Redis.from_url(args.redis_url, decode_responses=True, socket_connect_timeout=5,
                                  socket_timeout=max(10.0, args.block_ms / 1000.0 + 5))
    consumer_name = args.consumer_name or "%s-%d" % (socket.gethostname(), os.getpid())

    def on_action(app, action, payload, _record):
        LOG.info("action %s %s payload=%s", action, app, dumps(payload))
        if args.record_key:
            client.rpush(args.record_key, dumps({"app": app, "action": action, "environment": args.environment,
                                                 "consumer": consumer_name, "at": now_ms()}))

    consumer = Consumer(client, args.environment, key_prefix=args.key_prefix, consumer_name=consumer_name,
                        url=args.url, proxy_url=args.proxy_url, app_version=args.app_version,
                        lock_ttl_ms=args.lock_ttl_ms, reclaim_idle_ms=args.reclaim_idle_ms,
                        heartbeat_seconds=args.heartbeat_seconds, on_action=on_action,
                        start_delay=args.start_delay, block_ms=args.block_ms)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    deadline = time.monotonic() + args.duration if args.duration else None
    try:
        consumer.run(stop, deadline)
    except SchemaError as exc:
        LOG.error("refusing to run: %s", exc)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
