# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This file is private to the nocobase.multienv collection and may change at any time.
#
# The producer half of docs/protocol.md.  Every public method costs a fixed number of Redis round
# trips, whatever the number of records, and every multi-key write is one transaction or script.

from __future__ import annotations

import hashlib
import json
import uuid

from ansible_collections.nocobase.multienv.plugins.module_utils._keyspace import (
    APP_STATUSES,
    CONSUMER_GROUP,
    DEFAULT_KEY_PREFIX,
    DEFAULT_REQUEST_TTL_SECONDS,
    DEFAULT_STALE_AFTER_SECONDS,
    MAX_RECORD_BYTES,
    PROTOCOL_VERSION,
    REQUEST_ID_PATTERN,
    ControlPlaneError,
    Keyspace,
    check_schema_version,
    heartbeat_age_seconds,
    is_available,
    is_beat_from_the_future,
    is_request_id,
    now_ms,
    redis_time_ms,
)
from ansible_collections.nocobase.multienv.plugins.module_utils._records import (
    check_expected_environments,
    decode,
    encode,
    record_problem,
)
from ansible_collections.nocobase.multienv.plugins.module_utils._resp import ReplyError, pairs

# How often a transaction is retried when a concurrent writer touched a watched key.
_WATCH_ATTEMPTS = 5

# Decide and enqueue in one step, so that racing producers never queue the same action twice.
# KEYS: schema, status:<app>, request:<rid>, then commands:<env>, pending:<env> for each env.
# ARGV: version, requestId, app, action, environmentsJson, payloadJson, now, force, dryRun,
#       requestTtl, callerSuppliedId, env...
ENQUEUE_SCRIPT = """
local stored = redis.call('GET', KEYS[1])
if stored and (tonumber(stored) == nil or tonumber(stored) > tonumber(ARGV[1])) then
  return redis.error_reply('SCHEMA ' .. stored)
end
if ARGV[11] == '1' then
  local seen = redis.call('GET', KEYS[3])
  if seen then return {'duplicate', seen} end
end
local app, action, force, dry = ARGV[3], ARGV[4], ARGV[8] == '1', ARGV[9] == '1'
local field = app .. ':' .. action
local chosen, skipped, queued_by, writes = {}, {}, {}, {}
-- Every key is checked before anything is written: a script is not rolled back on an error.
local expected = {{KEYS[2], 'hash'}}
for i = 12, #ARGV do
  table.insert(expected, {KEYS[4 + (i - 12) * 2], 'stream'})
  table.insert(expected, {KEYS[5 + (i - 12) * 2], 'hash'})
end
for _, pair in ipairs(expected) do
  local found = redis.call('TYPE', pair[1])['ok']
  if found ~= 'none' and found ~= pair[2] then
    return redis.error_reply('WRONGTYPE ' .. pair[1] .. ' holds a ' .. found .. ', not a ' .. pair[2])
  end
end
for i = 12, #ARGV do
  local env = ARGV[i]
  local commands, pending = KEYS[4 + (i - 12) * 2], KEYS[5 + (i - 12) * 2]
  local reason = false
  local earlier = redis.call('HGET', pending, field)
  if earlier and not force then
    reason = 'queued'
    table.insert(queued_by, env)
    table.insert(queued_by, earlier)
  elseif not force then
    -- A status that is not a protocol record (unreadable, too deep for cjson) decides nothing.
    local raw = redis.call('HGET', KEYS[2], env)
    local ok, record = false, nil
    if raw and #raw <= @MAX_RECORD_BYTES@ then ok, record = pcall(cjson.decode, raw) end
    local status = ok and type(record) == 'table' and type(record['status']) == 'string' and record['status'] or false
    if action == 'start' and status == 'running' then reason = 'running'
    elseif action == 'stop' and (status == 'stopped' or not status) then reason = status or 'not started'
    elseif action == 'remove' and not status then reason = 'not present'
    end
  end
  if reason then
    table.insert(skipped, env)
    table.insert(skipped, reason)
  else
    table.insert(chosen, env)
    table.insert(writes, {commands, pending})
  end
end
if dry or #chosen == 0 then return {'planned', chosen, skipped, queued_by} end
for _, w in ipairs(writes) do
  pcall(redis.call, 'XGROUP', 'CREATE', w[1], '@GROUP@', '0', 'MKSTREAM')
  redis.call('XADD', w[1], '*', 'requestId', ARGV[2], 'appName', app, 'action', action,
             'environments', ARGV[5], 'payload', ARGV[6], 'enqueuedAt', ARGV[7])
  redis.call('HSET', w[2], field, ARGV[2])
end
redis.call('SET', KEYS[1], ARGV[1], 'NX')
if ARGV[11] == '1' then
  redis.call('SET', KEYS[3], cjson.encode({app = app, action = action, environments = chosen}), 'EX', ARGV[10])
end
return {'enqueued', chosen, skipped, queued_by}
""".replace("@GROUP@", CONSUMER_GROUP).replace("@MAX_RECORD_BYTES@", str(MAX_RECORD_BYTES))
ENQUEUE_SHA = hashlib.sha1(ENQUEUE_SCRIPT.encode()).hexdigest()


class ControlPlane:
    """Records, statuses and commands of one platform in Redis (producer side).

    `client` is a plugins/module_utils/_resp.py Client.
    """

    def __init__(self, client, key_prefix=DEFAULT_KEY_PREFIX, stale_after=DEFAULT_STALE_AFTER_SECONDS,
                 expected_environments=None):
        self.client = client
        self.keys = Keyspace(key_prefix)
        self.stale_after = stale_after
        # {environment: {url, proxy_url}} the caller knows (check_expected_environments).
        self.expected = check_expected_environments(expected_environments or {})
        # Records the readers left out because they cannot be trusted, one message each (the
        # modules and the lookup turn them into warnings).
        self.skipped = []
        # The protocol version the keyspace says it was written with (0 when empty), once read.
        self.schema_version = None

    # ---------------------------------------------------------------- reads

    def _read(self, commands):
        """One pipelined round trip; error replies are raised."""
        replies = self.client.pipeline(commands)
        for reply in replies:
            if isinstance(reply, ReplyError):
                raise reply
        return replies

    @staticmethod
    def _hash_read(key, names):
        """HGETALL for all fields (names None), HMGET for some."""
        return ("HGETALL", key) if names is None else ("HMGET", key) + tuple(names)

    @staticmethod
    def _hash_result(raw, names):
        if names is None:
            return pairs(raw)
        return {name: value for name, value in zip(names, raw) if value is not None}

    def _environment_view(self, name, raw, beat, now):
        record = decode(raw, "environment record %r" % name)
        try:
            beat = int(beat) if beat else None
        except ValueError:  # not a beat: the environment counts as never beaten
            self.skipped.append("skipped an untrusted record in %s: the heartbeat %r of environment %r is not "
                                "epoch milliseconds" % (self.keys.heartbeats, beat[:40], name))
            beat = None
        if is_beat_from_the_future(beat, now):  # the same: no worker beats ahead of Redis's clock
            self.skipped.append("skipped an untrusted record in %s: the heartbeat of environment %r is %d s ahead "
                                "of Redis's clock" % (self.keys.heartbeats, name, (beat - now) // 1000))
            beat = None
        record["lastHeartbeatAt"] = beat
        record["available"] = is_available(beat, self.stale_after, now)
        record["heartbeatAge"] = heartbeat_age_seconds(beat, now)
        return record

    def _trusted(self, kind, records):
        """The records {key: raw JSON} that pass record_problem(); the others go to self.skipped."""
        trusted = {}
        for key, raw in records.items():
            problem = record_problem(kind, key, raw)
            if problem is None:
                trusted[key] = raw
            elif problem not in self.skipped:
                where = self.keys.environments if kind == "environment" else self.keys.apps
                self.skipped.append("skipped an untrusted record in %s: %s" % (where, problem))
        return trusted

    def _disagreement(self, name, raw):
        """Why the trusted record `raw` of environment `name` is not where the caller knows it is, or None."""
        expected = self.expected.get(name)
        if not expected:
            return None
        record = decode(raw, "environment record %r" % name)
        found = {"url": record.get("url"), "proxy_url": record.get("proxyUrl") or record.get("url")}
        for option, field in (("url", "url"), ("proxy_url", "proxyUrl")):
            if expected.get(option) and found[option] != expected[option]:
                return "environment record %r: %s %r is not %r, the one expected_environments gives" % (
                    name, field, found[option], expected[option])
        return None

    def _environments(self, raw, beats, names, now):
        raw = self._trusted("environment", self._hash_result(raw, names))
        for name in sorted(raw):
            problem = self._disagreement(name, raw[name])
            if problem:
                self.skipped.append("skipped a record in %s: %s" % (self.keys.environments, problem))
                del raw[name]
        beats = self._hash_result(beats, names)
        return {name: self._environment_view(name, raw[name], beats.get(name), now) for name in sorted(raw)}

    def read_environments(self, names=None):
        """{name: record + lastHeartbeatAt, available, heartbeatAge}; one round trip."""
        if names == []:
            return {}
        schema, raw, beats, now = self._read([
            ("GET", self.keys.schema),
            self._hash_read(self.keys.environments, names),
            self._hash_read(self.keys.heartbeats, names),
            ("TIME",),
        ])
        self.schema_version = check_schema_version(schema, self.keys.schema)
        return self._environments(raw, beats, names, redis_time_ms(now))

    def read_apps(self, names=None):
        """({name: record + status per environment + proxy target}, environments); two round trips."""
        if names == []:
            return {}, self.read_environments()
        schema, raw_envs, beats, raw_apps, now = self._read([
            ("GET", self.keys.schema),
            self._hash_read(self.keys.environments, None),
            self._hash_read(self.keys.heartbeats, None),
            self._hash_read(self.keys.apps, names),
            ("TIME",),
        ])
        self.schema_version = check_schema_version(schema, self.keys.schema)
        environments = self._environments(raw_envs, beats, None, redis_time_ms(now))
        raw_apps = self._trusted("app", self._hash_result(raw_apps, names))
        apps = {name: decode(raw_apps[name], "app record %r" % name) for name in sorted(raw_apps)}
        statuses = self._read([("HGETALL", self.keys.status(name)) for name in apps])
        for (name, app), status in zip(apps.items(), statuses):
            app["status"] = {env: self._status(name, env, value) for env, value in pairs(status).items()}
            app["proxyTarget"] = self._proxy_target(app, environments)
        return apps, environments

    def _status(self, app, env, raw):
        """A status record, or None (absent, or not one: then reported in self.skipped)."""
        if raw is None:
            return None
        try:
            status = decode(raw, "status of app %r in environment %r" % (app, env))
        except ControlPlaneError as exc:
            self.skipped.append("skipped an untrusted record in %s: %s" % (self.keys.status(app), exc))
            return None
        if status.get("status") not in APP_STATUSES:
            message = "the status of app %r in environment %r, %r, is not one of NocoBase's AppStatus values" % (
                app, env, status.get("status"))
            self.skipped.append("skipped an untrusted record in %s: %s" % (self.keys.status(app), message))
            return None
        return status

    @staticmethod
    def _proxy_target(app, environments):
        """Where the proxy sends the app: its proxyEnvironment, else its first environment."""
        envs = app.get("environments") or []
        name = app.get("proxyEnvironment") or (envs[0] if envs else None)
        env = environments.get(name) if name else None
        return {
            "environment": name,
            "url": (env.get("proxyUrl") or env.get("url")) if env else None,
            "available": bool(env and env["available"]),
            "registered": env is not None,
        }

    def read_statuses(self, targets):
        """{app: {env: status record or None}} for {app: [env, ...]}; one round trip."""
        apps = list(targets)
        replies = self._read([("HMGET", self.keys.status(app)) + tuple(targets[app]) for app in apps])
        return {app: {env: self._status(app, env, value) for env, value in zip(targets[app], raw)}
                for app, raw in zip(apps, replies)}

    def read_completions(self, requests):
        """{app: {env: (completed, status record or None)}} for {app: {env: requestId}}: whether that
        environment completed that request (its processed mark), and its status now. One round trip."""
        order = [(app, env, rid) for app, envs in requests.items() for env, rid in envs.items()]
        commands = []
        for app, env, rid in order:
            commands += [("ZSCORE", self.keys.processed(env), rid), ("HGET", self.keys.status(app), env)]
        replies = self._read(commands) if commands else []
        out = {app: {} for app in requests}
        for (app, env, _rid), score, status in zip(order, replies[0::2], replies[1::2]):
            out[app][env] = (score is not None, self._status(app, env, status))
        return out

    def registered_environments(self):
        (names,) = self._read([("HKEYS", self.keys.environments)])
        return set(names)

    # ---------------------------------------------------------------- writes

    def reconcile(self, hash_key, names, plan, check_mode, on_create=None, on_remove=None, key_types=None):
        """Bring the records `names` of one hash to what `plan` wants, in one transaction.

        `plan(current)` gets {name: stored record} and returns {name: wanted record, or None to
        remove}; it may raise ControlPlaneError before anything is written.  `on_create(name)` and
        `on_remove(name)` return more commands for the same transaction (a record's other keys);
        `key_types(name)` gives {key: type} those keys of a created record must have (or not
        exist), checked under WATCH before the transaction, since Redis does not roll back the
        rest of a MULTI when one command meets a key of the wrong type.
        Returns {name: (before, after)} for the records that change.  Two round trips: WATCH and
        read, then MULTI/EXEC (retried if a concurrent writer touched the hash in between).
        """
        names = sorted(names)
        for _attempt in range(_WATCH_ATTEMPTS):
            _ok, schema, raw = self._read([
                ("WATCH", self.keys.schema, hash_key),
                ("GET", self.keys.schema),
                self._hash_read(hash_key, names),
            ])
            schema = check_schema_version(schema, self.keys.schema)
            current = {name: decode(value, "record %r in %s" % (name, hash_key))
                       for name, value in self._hash_result(raw, names).items()}
            try:
                wanted = plan(current)
            except Exception:
                self.client.pipeline([("UNWATCH",)])
                raise
            changes = {}
            for name in names:
                if current.get(name) != wanted[name]:
                    changes[name] = (current.get(name), wanted[name])
            created = [name for name, (before, _after) in changes.items() if before is None]
            if key_types and created:
                self._check_key_types({key: kind for name in created for key, kind in key_types(name).items()})
            if check_mode or not changes:
                self._read([("UNWATCH",)])
                return changes
            commands = []
            if schema == 0:
                commands.append(("SET", self.keys.schema, PROTOCOL_VERSION))
            updates = [item for name, (_b, after) in changes.items() if after is not None for item in (name, encode(after))]
            if updates:
                commands.append(("HSET", hash_key) + tuple(updates))
            removed = [name for name, (_b, after) in changes.items() if after is None]
            if removed:
                commands.append(("HDEL", hash_key) + tuple(removed))
            for name, (before, after) in changes.items():
                if before is None and on_create:
                    commands.extend(on_create(name))
                if after is None and on_remove:
                    commands.extend(on_remove(name))
            replies = self.client.transaction(commands)
            if replies is None:
                continue  # a concurrent writer won; read again
            for reply in replies:
                # Redis runs every command of EXEC; BUSYGROUP (the group exists) is expected.
                if isinstance(reply, ReplyError) and reply.code != "BUSYGROUP":
                    raise ControlPlaneError("Redis refused part of the transaction: %s" % reply)
            return changes
        raise ControlPlaneError("%s kept changing under concurrent writers; nothing was written, try again" % hash_key)

    def _check_key_types(self, wanted):
        """Watch the keys {key: type} too and refuse, writing nothing, when one holds another type."""
        keys = sorted(wanted)
        replies = self._read([("WATCH",) + tuple(keys)] + [("TYPE", key) for key in keys])
        wrong = ["%s holds a %s, not a %s" % (key, found, wanted[key])
                 for key, found in zip(keys, replies[1:]) if found not in ("none", wanted[key])]
        if wrong:
            self._read([("UNWATCH",)])
            raise ControlPlaneError("%s; nothing was written" % "; ".join(wrong))

    def environment_key_types(self, environment):
        """The types of an environment's own keys (protocol v1)."""
        return {self.keys.commands(environment): "stream", self.keys.pending(environment): "hash",
                self.keys.processed(environment): "zset"}

    def beat(self, names):
        """Stamp a heartbeat for environments, as a worker would."""
        if names:
            now = redis_time_ms(self._read([("TIME",)])[0])
            self._read([("HSET", self.keys.heartbeats) + tuple(item for name in names for item in (name, now))])

    def create_consumer_group(self, environment):
        """XGROUP CREATE ... 0 MKSTREAM: a worker that comes later still gets every entry."""
        return [("XGROUP", "CREATE", self.keys.commands(environment), CONSUMER_GROUP, "0", "MKSTREAM")]

    def drop_environment_keys(self, environment):
        """An unregistered environment's heartbeat and queue go with its record."""
        return [
            ("HDEL", self.keys.heartbeats, environment),
            ("DEL", self.keys.commands(environment), self.keys.pending(environment), self.keys.processed(environment)),
        ]

    def drop_app_keys(self, app):
        return [("DEL", self.keys.status(app), self.keys.lock(app))]

    def enqueue(self, app, action, environments, request_id=None, payload=None, force=False, dry_run=False,
                request_ttl=DEFAULT_REQUEST_TTL_SECONDS):
        """Queue `action` for `app` in `environments` (ordered); see docs/protocol.md.

        Returns {request_id, enqueued: [...], not_queued: {env: reason}, queued_by: {env: requestId of
        the earlier command of the same kind still queued there}, duplicate: bool}.
        """
        return self.enqueue_many([dict(app=app, action=action, environments=environments, request_id=request_id,
                                       payload=payload, force=force)], dry_run, request_ttl)[0]

    def enqueue_many(self, commands, dry_run=False, request_ttl=DEFAULT_REQUEST_TTL_SECONDS):
        """enqueue() for many commands (dicts of its arguments) in one round trip, one script call each."""
        calls, request_ids = [("SCRIPT", "LOAD", ENQUEUE_SCRIPT)], []
        for command in commands:
            environments = list(command["environments"])
            caller_supplied = command.get("request_id") is not None
            request_id = command.get("request_id") or uuid.uuid4().hex
            if not is_request_id(request_id):
                raise ControlPlaneError("request_id: %r (of app %s) must match %s"
                                        % (request_id, command["app"], REQUEST_ID_PATTERN))
            request_ids.append(request_id)
            keys = [self.keys.schema, self.keys.status(command["app"]), self.keys.request(request_id)]
            for env in environments:
                keys += [self.keys.commands(env), self.keys.pending(env)]
            args = [PROTOCOL_VERSION, request_id, command["app"], command["action"],
                    json.dumps(environments, separators=(",", ":")), encode(command.get("payload") or {}), now_ms(),
                    int(bool(command.get("force"))), int(dry_run), int(request_ttl), int(caller_supplied)] + environments
            calls.append(("EVALSHA", ENQUEUE_SHA, len(keys)) + tuple(keys) + tuple(args))
        outcomes, failures = [], []
        for command, request_id, reply in zip(commands, request_ids, self.client.pipeline(calls)[1:]):
            if isinstance(reply, ReplyError):
                if "SCHEMA" in str(reply):
                    check_schema_version(str(reply).rsplit("SCHEMA ", 1)[1].split()[0], self.keys.schema)
                # The script decides before it writes, so a refused app wrote nothing.
                failures.append("app %r: %s (nothing queued for it)" % (command["app"], reply))
                outcomes.append(None)
                continue
            if reply[0] == "duplicate":
                # The summary the first enqueue stored: the environments this request id was queued for.
                summary = decode(reply[1], "request %r" % request_id) or {}
                outcomes.append(dict(request_id=request_id, enqueued=[], not_queued={}, duplicate=True,
                                     queued_by={env: request_id for env in summary.get("environments") or []}))
            else:
                outcomes.append(dict(request_id=request_id, enqueued=list(reply[1]), not_queued=pairs(reply[2]),
                                     queued_by=pairs(reply[3]), duplicate=False))
        if failures:
            queued = ["%s (%s)" % (command["app"], ", ".join(outcome["enqueued"]))
                      for command, outcome in zip(commands, outcomes) if outcome and outcome["enqueued"]]
            raise ControlPlaneError("Redis refused the command for %s; %s" % (
                "; ".join(failures), "queued for the others: " + "; ".join(queued) if queued else "nothing was queued"))
        return outcomes
