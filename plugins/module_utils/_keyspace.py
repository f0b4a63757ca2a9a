# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This file is private to the nocobase.multienv collection and may change at any time.
#
# Control-plane protocol v1 (docs/protocol.md): every Redis key name, the record vocabulary and the
# pure rules shared by producers (our modules) and consumers (workers, tests/standin).  It imports
# nothing from Ansible or redis-py on purpose: the NocoBase stand-in image copies this one file.

from __future__ import annotations

import json
import re
import time

PROTOCOL_VERSION = 1
DEFAULT_KEY_PREFIX = "nocobase:"
CONSUMER_GROUP = "workers"

# NocoBase beats every 120 s; its newer releases tolerate three missed beats.
DEFAULT_STALE_AFTER_SECONDS = 360
# Heartbeats and the readers' "now" both come from Redis's clock (TIME), so no two machines' clocks
# are compared. A beat further ahead than this was not written by a worker and is not fresh.
MAX_HEARTBEAT_AHEAD_MS = 60_000
# How long a caller-supplied requestId is remembered for deduplication.
DEFAULT_REQUEST_TTL_SECONDS = 7 * 24 * 3600

# NocoBase AppStatus values (packages/core/server/src/app-supervisor/types.ts).
APP_STATUSES = ("preparing", "initializing", "initialized", "running", "commanding", "stopped", "error", "not_found")
ACTIONS = ("create", "start", "stop", "remove")
DB_CONN_TYPES = ("new_database", "new_connection", "new_schema")
# `main` is the supervisor's own app in NocoBase; the others are words of nginx's map and geo
# blocks, where the proxy's config writes app and environment names as keys.
RESERVED_APP_NAMES = ("main", "default", "include", "hostnames", "volatile")
RESERVED_ENVIRONMENT_NAMES = ("default", "include", "hostnames", "volatile")

# Environment names end up in stream keys, container names and nginx upstream names.
ENVIRONMENT_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"
# App names also become database or schema names (NocoBase defaults database=<appName>), so they
# follow the PostgreSQL identifier rule without quoting: lower case, digits, underscore, <= 63.
APP_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
REQUEST_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
# One segment and a colon: two different prefixes can never name each other's keys.
KEY_PREFIX_PATTERN = r"^[A-Za-z0-9_.-]{1,64}:$"

_ENVIRONMENT_NAME_RE = re.compile(ENVIRONMENT_NAME_PATTERN)
_APP_NAME_RE = re.compile(APP_NAME_PATTERN)
_REQUEST_ID_RE = re.compile(REQUEST_ID_PATTERN)
_VERSION_RE = re.compile(r"[0-9A-Za-z.+_-]{1,64}")
_KEY_PREFIX_RE = re.compile(KEY_PREFIX_PATTERN)
# An app's cname reaches nginx server names and NocoBase; its title NocoBase's UI and the logs.
_CNAME_RE = re.compile(r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")


# A record read back from Redis is parsed only within these bounds: records of the protocol are a few
# hundred bytes and a few levels deep, and anything with a Redis password can write a key, so a
# record of megabytes or nested thousands of levels deep (Python's parser recurses) is refused unread.
MAX_RECORD_BYTES = 64 * 1024
MAX_RECORD_DEPTH = 32


class ControlPlaneError(Exception):
    """A problem phrased for the operator: it names the field or record at fault, never a secret."""


def _depth(value):
    """How deeply lists and objects nest in a parsed JSON value (iterative: no recursion)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        value, depth = todo.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            deepest = max(deepest, depth)
            if depth > MAX_RECORD_DEPTH:
                break
            todo.extend((item, depth + 1) for item in value)
    return deepest


def load_json(raw):
    """The JSON value of a record or stream field read back from Redis (str or bytes).

    Raises ValueError, whose message says what is wrong without quoting the value, when it is over
    MAX_RECORD_BYTES, not JSON or nested deeper than MAX_RECORD_DEPTH.
    """
    if len(raw) > MAX_RECORD_BYTES:
        raise ValueError("is %d bytes long, over the %d a record may have" % (len(raw), MAX_RECORD_BYTES))
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ValueError("nests deeper than the %d levels a record may have" % MAX_RECORD_DEPTH) from None
    except ValueError:
        raise ValueError("is not valid JSON") from None
    if _depth(value) > MAX_RECORD_DEPTH:
        raise ValueError("nests deeper than the %d levels a record may have" % MAX_RECORD_DEPTH)
    return value


def load_record(raw):
    """load_json() of a record, which must be a JSON object."""
    value = load_json(raw)
    if not isinstance(value, dict):
        raise ValueError("is not a JSON object")
    return value


class Keyspace:
    """Every key of protocol v1, relative to one prefix."""

    def __init__(self, prefix=DEFAULT_KEY_PREFIX):
        self.prefix = check_key_prefix(prefix)

    @property
    def schema(self):
        """String: the protocol version that wrote this keyspace."""
        return self.prefix + "schema"

    @property
    def environments(self):
        """Hash: environment name -> JSON {name, url, proxyUrl, appVersion}."""
        return self.prefix + "environments"

    @property
    def heartbeats(self):
        """Hash: environment name -> epoch milliseconds of its last heartbeat."""
        return self.prefix + "heartbeats"

    @property
    def apps(self):
        """Hash: app name -> JSON app record."""
        return self.prefix + "apps"

    def status(self, app):
        """Hash: environment name -> JSON {status, updatedAt, requestId, message}."""
        return self.prefix + "status:" + app

    def commands(self, environment):
        """Stream of command entries for one environment, consumer group CONSUMER_GROUP."""
        return self.prefix + "commands:" + environment

    def pending(self, environment):
        """Hash: '<app>:<action>' -> requestId of the command not yet acknowledged."""
        return self.prefix + "pending:" + environment

    def processed(self, environment):
        """Sorted set: requestId -> epoch ms when the environment completed it."""
        return self.prefix + "processed:" + environment

    def lock(self, app):
        """String: owner token of the app's bootstrap lock, with an expiry."""
        return self.prefix + "lock:" + app

    def request(self, request_id):
        """String: JSON summary of a command enqueued under a caller-supplied requestId, with a TTL."""
        return self.prefix + "request:" + request_id

    def consumer_writes(self, environment):
        """Key patterns (Redis glob) a consumer of `environment` writes; it only reads the others.

        The shared hashes (environments, heartbeats, status) are written field by field, one field per
        environment: Redis ACLs cannot tell fields apart, so those fields are the protocol's rule only.
        """
        return [self.commands(environment), self.pending(environment), self.processed(environment),
                self.environments, self.heartbeats, self.status("*"), self.lock("*"), self.schema]


def check_key_prefix(prefix):
    """The prefix, or a ControlPlaneError when it could name another platform's keys."""
    if not isinstance(prefix, str) or not _KEY_PREFIX_RE.fullmatch(prefix):
        raise ControlPlaneError(
            "key_prefix: %r must be one segment of letters, digits, '_', '.' or '-' ending in ':' "
            "(pattern %s), so that it cannot overlap another platform's keys" % (prefix, KEY_PREFIX_PATTERN)
        )
    return prefix


def pending_field(app, action):
    return app + ":" + action


def now_ms():
    return int(time.time() * 1000)


def is_environment_name(name):
    return (isinstance(name, str) and bool(_ENVIRONMENT_NAME_RE.fullmatch(name))
            and name not in RESERVED_ENVIRONMENT_NAMES)


def is_app_name(name):
    return isinstance(name, str) and bool(_APP_NAME_RE.fullmatch(name)) and name not in RESERVED_APP_NAMES


def is_cname(value):
    """A lower-case DNS name."""
    return isinstance(value, str) and bool(_CNAME_RE.fullmatch(value))


def is_title(value):
    """One line of at most 255 characters, no control character."""
    return isinstance(value, str) and len(value) <= 255 and not any(ord(c) < 32 or c == "\x7f" for c in value)


def is_version(value):
    """A NocoBase version (appVersion) that may be shown and compared."""
    return isinstance(value, str) and bool(_VERSION_RE.fullmatch(value))


def is_request_id(value):
    return isinstance(value, str) and bool(_REQUEST_ID_RE.fullmatch(value))


def heartbeat_age_seconds(last_heartbeat_ms, now=None):
    """Age of a heartbeat in seconds, or None when there never was one."""
    if last_heartbeat_ms is None or last_heartbeat_ms <= 0:
        return None
    return max(0.0, ((now_ms() if now is None else now) - last_heartbeat_ms) / 1000.0)


def is_beat_from_the_future(last_heartbeat_ms, now):
    return last_heartbeat_ms is not None and last_heartbeat_ms > now + MAX_HEARTBEAT_AHEAD_MS


def is_available(last_heartbeat_ms, stale_after_seconds=DEFAULT_STALE_AFTER_SECONDS, now=None):
    """Derived, never stored: an environment is available while its last beat is fresh enough, and
    not from the future. `now` is Redis's clock (redis_time_ms)."""
    now = now_ms() if now is None else now
    age = heartbeat_age_seconds(last_heartbeat_ms, now)
    return age is not None and age <= stale_after_seconds and not is_beat_from_the_future(last_heartbeat_ms, now)


def redis_time_ms(reply):
    """Epoch milliseconds of Redis's TIME reply (seconds and microseconds, as bytes, str or int)."""
    seconds, microseconds = reply
    return int(seconds) * 1000 + int(microseconds) // 1000


def parse_schema_version(raw):
    """Schema version stored in Redis (bytes, str or None) -> int; 0 means an empty keyspace."""
    if raw is None:
        return 0
    if isinstance(raw, bytes):
        raw = raw.decode()
    try:
        return int(raw)
    except ValueError:
        raise ControlPlaneError("schema key holds %r, not a protocol version number" % raw) from None


def check_schema_version(raw, key):
    """Refuse a keyspace written by a newer protocol; return its version (0 when empty)."""
    version = parse_schema_version(raw)
    if version > PROTOCOL_VERSION:
        raise ControlPlaneError(
            "schema version %d in %s is newer than this collection understands (%d); upgrade the collection"
            % (version, key, PROTOCOL_VERSION)
        )
    return version
