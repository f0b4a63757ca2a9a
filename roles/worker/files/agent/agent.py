# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The worker agent: what carries out the control plane's commands on a real NocoBase worker.

Open-source NocoBase does not read our Redis keyspace (its multi-environment runtime is a closed
plugin), so one agent runs beside each worker environment (docs/agent.md).  It is the consumer
half of docs/protocol.md (consumer.py) with a backend that runs the worker's apps behind it
(backend.py, the interface; nocobase_api.py, NocoBase's open-source multi-app manager):

- it registers and heartbeats its environment only while the worker answers its health check
  (and accepts the platform's root account), with ``appVersion`` read from NocoBase;
- it consumes the environment's command stream only then: start -> applications:create (first
  time in this worker) or applications:start, then waits until the sub-app answers as itself;
  stop -> applications:stop; remove -> applications:destroy (the app's database is kept);
- every time the worker (re)turns healthy, it brings the worker's apps back to what Redis says
  (apps ``running`` here are started again, apps ``stopped`` here are stopped).

Configuration is environment variables (see Settings); a ``*_FILE`` variant reads a secret from a
file.  Secrets are never logged.  ``agent.py --healthcheck`` is the container's health check: it
passes while the agent is ready (its NocoBase healthy, the environment registered).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import consumer as consumer_mod  # noqa: E402  (also makes _keyspace importable)
from _keyspace import (  # noqa: E402
    ACTIONS,
    APP_STATUSES,
    DEFAULT_KEY_PREFIX,
    ControlPlaneError,
    Keyspace,
    check_key_prefix,
    is_app_name,
    is_cname,
    is_environment_name,
    is_title,
    is_version,
    load_record,
    now_ms,
)
from backend import AuthError, BackendError  # noqa: E402
from metrics import Metrics, serve  # noqa: E402
from nocobase_api import MultiAppManager  # noqa: E402

import redis  # noqa: E402

LOG = logging.getLogger("agent")


class ConfigError(Exception):
    """A setting the agent cannot run with; the message names the variable, never its value."""


def _read(env, name, default=None, secret=False):
    """VALUE of NAME, or the content of the file NAME_FILE names (for secrets)."""
    path = env.get(name + "_FILE")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError("%s_FILE: cannot read %s (%s)" % (name, path, exc.strerror)) from None
    value = env.get(name, default)
    if value is None and secret:
        raise ConfigError("%s (or %s_FILE) is required" % (name, name))
    return value


def _number(env, name, default, kind=float, minimum=0):
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError("%s must be a number, got %r" % (name, raw)) from None
    if value < minimum:
        raise ConfigError("%s must be at least %s, got %s" % (name, minimum, raw))
    return value


def redact(url):
    """A URL without its credentials, for logs (also when the password is not URL-encoded)."""
    scheme, sep, rest = (url or "").partition("://")
    if not sep or "@" not in rest:
        return url
    return "%s://***@%s" % (scheme, rest.rsplit("@", 1)[1])


class Settings:
    """Everything the agent reads from its environment."""

    def __init__(self, env):
        self.environment = env.get("ENVIRONMENT_NAME", "")
        if not is_environment_name(self.environment):
            raise ConfigError("ENVIRONMENT_NAME must match the protocol's environment name rule, got %r"
                              % self.environment[:80])
        self.environment_url = env.get("ENVIRONMENT_URL", "")
        self.environment_proxy_url = env.get("ENVIRONMENT_PROXY_URL", "") or self.environment_url
        self.redis_url = _read(env, "AGENT_REDIS_URL", secret=True)
        if urlsplit(self.redis_url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigError("AGENT_REDIS_URL must be a redis://, rediss:// or unix:// URL")
        # The CA that signed Redis's certificate, for a rediss:// URL (else the system's CAs).
        self.redis_tls_ca_file = env.get("AGENT_REDIS_TLS_CA_FILE") or None
        if self.redis_tls_ca_file and urlsplit(self.redis_url).scheme != "rediss":
            raise ConfigError("AGENT_REDIS_TLS_CA_FILE is set, but AGENT_REDIS_URL is not a rediss:// URL")
        if self.redis_tls_ca_file and not os.access(self.redis_tls_ca_file, os.R_OK):
            raise ConfigError("AGENT_REDIS_TLS_CA_FILE: cannot read %s" % self.redis_tls_ca_file)
        self.nocobase_url = env.get("AGENT_NOCOBASE_URL", "")
        if urlsplit(self.nocobase_url).scheme not in ("http", "https"):
            raise ConfigError("AGENT_NOCOBASE_URL must be the worker's http:// URL, got %r" % self.nocobase_url[:80])
        self.root_account = _read(env, "AGENT_ROOT_ACCOUNT", secret=True)
        self.root_password = _read(env, "AGENT_ROOT_PASSWORD", secret=True)
        self.key_prefix = env.get("AGENT_KEY_PREFIX", DEFAULT_KEY_PREFIX)
        try:
            check_key_prefix(self.key_prefix)
        except ControlPlaneError as exc:
            raise ConfigError("AGENT_KEY_PREFIX: %s" % exc) from None
        self.consumer_name = env.get("AGENT_CONSUMER_NAME") or "%s-%s" % (self.environment, socket.gethostname())
        self.heartbeat_seconds = _number(env, "AGENT_HEARTBEAT_SECONDS", 120.0, minimum=0.1)
        self.health_seconds = _number(env, "AGENT_HEALTH_SECONDS", 5.0, minimum=0.1)
        self.start_timeout = _number(env, "AGENT_START_TIMEOUT", 600.0, minimum=1)
        self.stop_timeout = _number(env, "AGENT_STOP_TIMEOUT", 120.0, minimum=1)
        self.lock_ttl_ms = _number(env, "AGENT_LOCK_TTL_MS", consumer_mod.DEFAULT_LOCK_TTL_MS, int, 100)
        self.reclaim_idle_ms = _number(env, "AGENT_RECLAIM_IDLE_MS", consumer_mod.DEFAULT_RECLAIM_IDLE_MS, int, 100)
        self.stale_after = _number(env, "AGENT_STALE_AFTER", 360.0, minimum=1)
        self.http_timeout = _number(env, "AGENT_HTTP_TIMEOUT", 10.0, minimum=0.5)
        self.health_file = health_file(env)
        # The metrics, on the back network (0: none).
        self.metrics_port = _number(env, "AGENT_METRICS_PORT", 9650, int, 0)
        if self.metrics_port > 65535:
            raise ConfigError("AGENT_METRICS_PORT must be a port number, or 0 for no metrics")
        self.metrics_address = env.get("AGENT_METRICS_ADDRESS") or "0.0.0.0"


def health_file(env):
    return Path(env.get("AGENT_HEALTH_FILE") or "/tmp/nocobase-agent.health")


def healthcheck(env):
    """Exit code of the container health check: 0 while the last health poll found the agent ready."""
    path = health_file(env)
    try:
        state = path.read_text(encoding="utf-8").strip()
        age = time.time() - path.stat().st_mtime
    except OSError:
        print("agent not started yet")
        return 1
    limit = max(30.0, 3 * _number(env, "AGENT_HEALTH_SECONDS", 5.0))
    print("%s (%.0f s ago)" % (state, age))
    return 0 if state == "ready" and age <= limit else 1


def checked_app_record(app, record):
    """The fields of an app record that reach NocoBase, validated (records in Redis are not trusted)."""
    if not isinstance(record, dict):
        raise ValueError("the record of app %s is not a JSON object" % app)
    title, cname = record.get("title"), record.get("cname")
    if title is not None and not is_title(title):
        raise ValueError("app %s: field title must be a one-line string of at most 255 characters" % app)
    if cname is not None and not is_cname(cname):
        raise ValueError("app %s: field cname must be a DNS name" % app)
    options = record.get("options", {})
    if not isinstance(options, dict):
        raise ValueError("app %s: field options must be an object" % app)
    return title, cname, options


class Agent:
    """One worker environment: health-gated registration, command consumption and resync."""

    def __init__(self, settings, client=None, backend=None):
        self.settings = settings
        s = settings
        tls = {"ssl_ca_certs": s.redis_tls_ca_file} if s.redis_tls_ca_file else {}
        self.client = client or redis.Redis.from_url(s.redis_url, decode_responses=True, socket_connect_timeout=5,
                                                     socket_timeout=15, health_check_interval=30, **tls)
        self.backend = backend or MultiAppManager(s.nocobase_url, s.root_account, s.root_password, timeout=s.http_timeout)
        self.keys = Keyspace(s.key_prefix)
        self.stop_event = threading.Event()
        self.ready = threading.Event()  # NocoBase healthy and signed in, environment registered
        self.resync_needed = threading.Event()
        self.consumer = consumer_mod.Consumer(
            self.client, s.environment, key_prefix=s.key_prefix, consumer_name=s.consumer_name,
            url=s.environment_url, proxy_url=s.environment_proxy_url, lock_ttl_ms=s.lock_ttl_ms,
            reclaim_idle_ms=s.reclaim_idle_ms, stale_after_seconds=s.stale_after, heartbeat_seconds=0,
            on_action=self.act, register=False)
        self.consumer.can_act = self.ready.is_set
        self.consumer.on_outcome = self._count_command
        self.metrics = Metrics(environment=s.environment)
        self.metrics.collectors += [self._agent_samples, self._redis_samples]
        self.metrics_server = None
        self.last_beat = None  # time.monotonic() of the last registration or heartbeat
        self.deferred_counted = set()  # entries counted as deferred, until their final outcome
        self.redis_samples = (0.0, [])  # (time.monotonic(), samples): scrapes within a second share one read
        self.redis_samples_lock = threading.Lock()
        self.last_problem = None
        self.fatal = None  # an error the agent must stop on (a newer protocol schema)

    # ------------------------------------------------------------------ health and heartbeat

    def _problem(self, message):
        """Log a problem once, not on every poll."""
        if message != self.last_problem:
            LOG.warning("%s", message)
            self.last_problem = message

    def check_once(self, last_beat):
        """One health poll; returns the time of the last heartbeat written."""
        started = time.monotonic()
        ok, detail = self.backend.health()
        self.metrics.observe("nocobase_multienv_nocobase_health_check_duration_seconds", time.monotonic() - started)
        self.metrics.inc("nocobase_multienv_nocobase_health_checks_total", result="ok" if ok else "failed")
        if ok:
            try:
                if not self.ready.is_set():
                    self.backend.sign_in()  # a node installed with other credentials must not look available
                    self.consumer.app_version = self._version()
                    self.consumer.register()
                    self.resync_needed.set()
                    self.ready.set()
                    self.last_problem = None
                    LOG.info("NocoBase %s healthy (version %s): environment %s registered",
                             self.settings.nocobase_url, self.consumer.app_version, self.settings.environment)
                    return time.monotonic()
                try:
                    version = self._version()
                except BackendError as exc:  # one failed read is no reason to pause the environment
                    self._problem("NocoBase did not say its version (%s): keeping %s" % (exc, self.consumer.app_version))
                    version = self.consumer.app_version
                if version != self.consumer.app_version:
                    # A node replaced faster than one poll (an upgrade) is a new NocoBase all the same.
                    LOG.info("NocoBase %s now reports version %s (was %s): environment %s registered again",
                             self.settings.nocobase_url, version, self.consumer.app_version, self.settings.environment)
                    self.consumer.app_version = version
                    self.consumer.register()
                    self.resync_needed.set()
                    return time.monotonic()
                if time.monotonic() - last_beat >= self.settings.heartbeat_seconds:
                    self.consumer.heartbeat()
                    return time.monotonic()
                return last_beat
            except AuthError as exc:
                detail = str(exc)
            except BackendError as exc:
                detail = "NocoBase answered its health check but not %s" % exc
        if self.ready.is_set():
            LOG.warning("NocoBase not healthy (%s): heartbeats and commands pause", detail)
            self.ready.clear()
        self._problem("waiting for NocoBase at %s: %s" % (self.settings.nocobase_url, detail))
        return last_beat

    def _version(self):
        """The version NocoBase reports, checked: it goes into the environment record."""
        version = self.backend.version()
        if not is_version(version):
            raise BackendError("app:getInfo reported %r, which is not a version" % (version[:80],))
        return version

    def watch(self):
        last_beat = 0.0
        while not self.stop_event.is_set():
            try:
                last_beat = self.check_once(last_beat)
                self.last_beat = last_beat or None
            except consumer_mod.SchemaError as exc:
                self.fatal = exc
                self.stop()
            except (redis.AuthenticationError, redis.exceptions.NoPermissionError) as exc:
                self.ready.clear()
                self._problem("redis: %s: Redis does not know this environment's user (agent-%s) or its rights; "
                              "the redis role defines one per worker environment, so run it (site.yml) after "
                              "adding an environment" % (exc, self.settings.environment))
            except redis.RedisError as exc:
                self.ready.clear()
                self._problem("redis: %s" % exc)
            self._write_health()
            self.stop_event.wait(self.settings.health_seconds)

    def _write_health(self):
        """What the container's health check reads (agent.py --healthcheck)."""
        try:
            tmp = self.settings.health_file.with_suffix(".tmp")
            tmp.write_text("ready" if self.ready.is_set() else "waiting: %s" % (self.last_problem or "starting"),
                           encoding="utf-8")
            tmp.replace(self.settings.health_file)
        except OSError as exc:
            self._problem("cannot write %s: %s" % (self.settings.health_file, exc))

    def gate(self):
        """Consume only while ready, after the worker's apps were brought back to what Redis says."""
        if not self.ready.is_set():
            return False
        if self.resync_needed.is_set():
            self.resync_needed.clear()
            try:
                self.resync()
            except consumer_mod.ActionAborted:
                if not self.stop_event.is_set():
                    self.resync_needed.set()  # it lost an app's lock: again, next round
                return False
            except (BackendError, redis.RedisError, consumer_mod.ActionDeferred) as exc:
                LOG.warning("resync failed (%s); retrying", exc)
                self.metrics.inc("nocobase_multienv_resyncs_total", result="failed")
                self.resync_needed.set()
                return False
            self.metrics.inc("nocobase_multienv_resyncs_total", result="completed")
        return True

    # ------------------------------------------------------------------ actions

    def act(self, app, action, payload, record):
        """The consumer's on_action hook: carry out one command on this worker's NocoBase.

        When NocoBase stops answering in the middle, the command is deferred (and tried again once
        it is healthy), not failed: only NocoBase's own refusals become an ``error`` status.
        """
        try:
            self._act(app, action, record)
        except BackendError as exc:
            if exc.unreachable and not self.backend.health()[0]:
                self.ready.clear()  # the watch thread registers and resyncs again once it is healthy
                raise consumer_mod.ActionDeferred("NocoBase does not answer: %s" % exc) from None
            raise

    def _act(self, app, action, record):
        here = self.backend.get_app(app)
        if action == "remove":
            if here is not None:
                self.backend.destroy_app(app)  # keeps the app's database: a command never drops data
            return
        title, cname, options = checked_app_record(app, record)
        if action == "stop":
            if here is not None:
                # The worker restarts apps with auto_start itself: keep it equal to the wanted state.
                if here.auto_start:
                    self.backend.set_auto_start(app, False)
                self.backend.stop_app(app)
                self._wait_stopped(app)
            return
        if action == "create":
            if here is None:
                self.backend.create_app(app, title, cname, options, auto_start=False)
            return
        # start
        if here is None:
            LOG.info("creating app %s in NocoBase", app)
            self.backend.create_app(app, title, cname, options, auto_start=True)
        else:
            if not here.auto_start:
                self.backend.set_auto_start(app, True)
            # Only a settled, not running app gets started: on a running app NocoBase runs upgrade
            # and restart again, and on one that is booting the two interleave.
            if here.status in ("stopped", "error"):
                self.backend.start_app(app)
        self._wait_running(app)

    def _wait_running(self, app):
        """Until the app answers as itself (the look also starts an app the worker boots lazily)."""
        deadline = time.monotonic() + self.settings.start_timeout
        last = "no answer"
        while True:
            try:
                probe = self.backend.probe_app(app)
            except BackendError as exc:
                if not self.backend.health()[0]:
                    raise  # NocoBase itself is down: act() defers the command
                last = str(exc)
            else:
                if probe.state == "running":
                    return
                if probe.state == "failed":
                    raise BackendError(probe.detail)
                last = probe.detail
            if time.monotonic() >= deadline:
                raise BackendError("app %s did not answer as itself within %.0f s (last answer: %s)"
                                   % (app, self.settings.start_timeout, last))
            if self.stop_event.wait(1.0) or self.consumer.lock_lost():
                raise consumer_mod.ActionAborted()

    def _wait_stopped(self, app):
        deadline = time.monotonic() + self.settings.stop_timeout
        while True:
            here = self.backend.get_app(app)
            if here is None or here.status in ("stopped", None):
                return
            if time.monotonic() >= deadline:
                raise BackendError("app %s still %s after %.0f s" % (app, here.status, self.settings.stop_timeout))
            if self.stop_event.wait(1.0) or self.consumer.lock_lost():
                raise consumer_mod.ActionAborted()

    # ------------------------------------------------------------------ resync

    def resync(self):
        """Bring the worker's apps to what Redis says after NocoBase (re)turned healthy.

        Apps with status ``running`` here are started (created first if the worker lost them);
        apps ``stopped`` here are stopped.  Statuses keep their requestId; a failure is written as
        ``error`` with NocoBase's message.
        """
        env = self.settings.environment
        names = [n for n in self.client.hkeys(self.keys.apps) if is_app_name(n)]
        if not names:
            return
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hget(self.keys.status(name), env)
            pipe.hget(self.keys.apps, name)
        replies = pipe.execute()
        wanted = {}
        for name, raw_status, raw_record in zip(names, replies[0::2], replies[1::2]):
            try:
                status = load_record(raw_status) if raw_status else None
                record = load_record(raw_record) if raw_record else None
            except ValueError as exc:
                LOG.warning("resync: skipping app %s, its status or record %s", name, exc)
                continue
            if isinstance(status, dict) and status.get("status") in ("running", "stopped"):
                wanted[name] = (status, record)
        if not wanted:
            return
        apps_here = self.backend.list_apps()
        waiting = []
        for name, (status, record) in sorted(wanted.items()):
            here = apps_here.get(name)
            try:
                if status["status"] == "running":
                    if here is not None and here.status == "running":
                        continue
                    # Like a start entry: after the app's earlier environments, under its lock.
                    environments = [env for env in (record or {}).get("environments") or [] if isinstance(env, str)]
                    LOG.info("resync: app %s runs here according to Redis; starting it", name)
                    if not self.consumer.start_in_order(name, environments, status.get("requestId"),
                                                        lambda name=name, record=record: self.act(name, "start", None, record)):
                        LOG.info("resync: app %s waits for its lock or an earlier environment", name)
                        waiting.append(name)
                        continue
                elif here is not None and here.status not in ("stopped", None):
                    LOG.info("resync: app %s is stopped here according to Redis; stopping it", name)
                    self.act(name, "stop", None, record)
                else:
                    continue
            except (BackendError, ValueError) as exc:
                self._write_status(name, "error", status.get("requestId"), "resync: %s" % exc)
                continue
            self._write_status(name, status["status"], status.get("requestId"), "")
        if waiting:
            self.resync_needed.set()  # the next round, before the next commands

    def _write_status(self, app, status, request_id, message):
        self.client.hset(self.keys.status(app), self.settings.environment,
                         consumer_mod.dumps({"message": message, "requestId": request_id or "", "status": status,
                                             "updatedAt": now_ms()}))

    # ------------------------------------------------------------------ metrics

    def _count_command(self, entry_id, action, outcome, final_status):
        """The consumer's on_outcome hook: a command taken, and when completed its time since it was enqueued."""
        action = action if action in ACTIONS else "invalid"
        # A deferred entry is retried every quarter second: it counts as deferred once.
        if outcome == "deferred":
            if entry_id in self.deferred_counted:
                return
            self.deferred_counted.add(entry_id)
        else:
            self.deferred_counted.discard(entry_id)
        if outcome == "done":
            outcome = "failed" if final_status in ("error", "not_found") else "completed"
            try:
                enqueued_ms = int(str(entry_id).split("-", 1)[0])
            except ValueError:
                enqueued_ms = None
            if enqueued_ms is not None:  # Redis's clock against the agent's: skew between them shows here
                self.metrics.observe("nocobase_multienv_command_duration_seconds",
                                     max(0.0, (now_ms() - enqueued_ms) / 1000.0), action=action)
        self.metrics.inc("nocobase_multienv_commands_total", action=action, outcome=outcome)

    def _agent_samples(self):
        samples = [("nocobase_multienv_agent_ready", {}, 1 if self.ready.is_set() else 0),
                   ("nocobase_multienv_nocobase_sign_ins_total", {}, getattr(self.backend, "sign_ins", 0))]
        if self.last_beat is not None:
            samples.append(("nocobase_multienv_agent_heartbeat_age_seconds", {},
                            round(time.monotonic() - self.last_beat, 3)))
        return samples

    def _redis_samples(self):
        """The stream's length and pending count, and the apps by their status here, read at the scrape:
        one read at a time, shared by the scrapes within a second."""
        with self.redis_samples_lock:
            read_at, samples = self.redis_samples
            if time.monotonic() - read_at >= 1.0:
                samples = self._read_redis_samples()
                self.redis_samples = (time.monotonic(), samples)
            return samples

    def _read_redis_samples(self):
        env = self.settings.environment
        stream = self.keys.commands(env)
        pipe = self.client.pipeline(transaction=False)
        pipe.xlen(stream)
        pipe.xpending(stream, consumer_mod.CONSUMER_GROUP)
        pipe.hkeys(self.keys.apps)
        length, pending, names = pipe.execute(raise_on_error=False)
        samples = []
        if isinstance(length, int):
            samples.append(("nocobase_multienv_stream_length", {}, length))
        if isinstance(pending, dict):
            samples.append(("nocobase_multienv_stream_pending", {}, int(pending.get("pending") or 0)))
        if not isinstance(names, list):
            return samples
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            if is_app_name(name):
                pipe.hget(self.keys.status(name), env)
        counts = dict.fromkeys(APP_STATUSES, 0)  # every status, 0 too: a series that vanishes alerts nobody
        for raw in pipe.execute(raise_on_error=False):
            try:
                status = load_record(raw).get("status") if isinstance(raw, str) else None
            except (ValueError, AttributeError):
                status = None
            if status in counts:
                counts[status] += 1
        return samples + [("nocobase_multienv_apps", {"status": status}, count) for status, count in sorted(counts.items())]

    # ------------------------------------------------------------------ run

    def run(self):
        if self.settings.metrics_port:
            try:
                self.metrics_server = serve(self.metrics, self.settings.metrics_address, self.settings.metrics_port)
                LOG.info("metrics on %s:%d/metrics", self.settings.metrics_address, self.settings.metrics_port)
            except (OSError, UnicodeError, ValueError) as exc:  # the commands matter more than their metrics
                LOG.warning("no metrics: cannot listen on %s:%d: %s", self.settings.metrics_address,
                            self.settings.metrics_port, exc)
        watcher = threading.Thread(target=self.watch, name="watch", daemon=True)
        watcher.start()
        self.consumer.run(self.stop_event, ready=self.gate)
        watcher.join(timeout=5)
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
        if self.fatal is not None:
            raise self.fatal

    def stop(self):
        self.stop_event.set()


def main():
    if sys.argv[1:] == ["--healthcheck"]:
        return healthcheck(os.environ)
    logging.basicConfig(level=os.environ.get("AGENT_LOG_LEVEL", "INFO").upper(), stream=sys.stdout,
                        format="%(asctime)s [nocobase-agent] %(levelname)s %(message)s")
    try:
        settings = Settings(os.environ)
    except ConfigError as exc:
        LOG.error("configuration error: %s", exc)
        return 2
    LOG.info("environment %s, NocoBase %s, redis %s, consumer %s", settings.environment, settings.nocobase_url,
             redact(settings.redis_url), settings.consumer_name)
    agent = Agent(settings)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.stop())
    try:
        agent.run()
    except consumer_mod.SchemaError as exc:
        LOG.error("refusing to run: %s", exc)
        return 3
    LOG.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
