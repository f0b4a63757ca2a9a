# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""NocoBase stand-in: a tiny program that behaves like a NocoBase 2.x node, for tests only.

It is NOT NocoBase.  The real multi-environment code lives in the closed plugin
@nocobase/plugin-app-supervisor and no NocoBase image can be pulled where the tests run, so the
image nocobase-multienv/nocobase-standin runs this file instead.  It reads the same environment
variables as a NocoBase node, answers the same health check, registers and heartbeats its
environment, consumes its command stream with the reference consumer (consumer.py, protocol v1 of
docs/protocol.md) and serves /apps/<app>/... with a body naming the app and the environment.
See README.md beside this file for what it honours and what it fakes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import consumer as consumer_mod  # noqa: E402  (also makes _keyspace importable)
from _keyspace import DEFAULT_KEY_PREFIX, Keyspace, is_app_name  # noqa: E402

import redis  # noqa: E402

LOG = logging.getLogger("standin")
STANDIN_VERSION = "2.0.0-standin"
HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
PLACEHOLDER_APP_KEYS = ("your-secret-key", "test-key")
DEFAULT_DB_PORTS = {"postgres": 5432, "mysql": 3306, "mariadb": 3306, "kingbase": 54321}


class ConfigError(Exception):
    """A configuration a real deployer would want to stop on."""


def _redact(url):
    """A Redis URL without its password, for logs."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return "%s://%s:***@%s%s" % (parts.scheme, user, netloc, parts.path)


def _float(env, name, default):
    try:
        return float(env.get(name, default))
    except ValueError:
        raise ConfigError("%s must be a number, got %r" % (name, env.get(name))) from None


def _banner(message):
    line = "!" * 78
    for text in (line, "!! " + message, line):
        LOG.warning(text)


class Settings:
    """What the stand-in reads from its environment; validation that a deployer would want."""

    def __init__(self, env):
        misspelt = sorted(name for name in env if "ADPATER" in name.upper())
        if misspelt:
            raise ConfigError("misspelt variable(s) %s: NocoBase reads *_ADAPTER (e.g. APP_COMMAND_ADAPTER) and "
                              "silently ignores these, so supervisor->worker commands would be lost"
                              % ", ".join(misspelt))
        self.mode = env.get("APP_MODE", "")
        self.discovery_adapter = env.get("APP_DISCOVERY_ADAPTER", "")
        self.process_adapter = env.get("APP_PROCESS_ADAPTER", "")
        self.command_adapter = env.get("APP_COMMAND_ADAPTER", "")
        self.supervisor_redis_url = env.get("APP_SUPERVISOR_REDIS_URL", "")
        self.command_redis_url = env.get("APP_COMMAND_REDIS_URL", "")
        self.environment_name = env.get("ENVIRONMENT_NAME", "")
        self.environment_url = env.get("ENVIRONMENT_URL", "")
        self.environment_proxy_url = env.get("ENVIRONMENT_PROXY_URL", "")
        self.db_dialect = env.get("DB_DIALECT", "")
        self.db_host = env.get("DB_HOST", "")
        self.db_database = env.get("DB_DATABASE", "")
        self.db_user = env.get("DB_USER", "")
        port = env.get("DB_PORT") or DEFAULT_DB_PORTS.get(self.db_dialect or "postgres", 5432)
        try:
            self.db_port = int(port)
        except ValueError:
            raise ConfigError("DB_PORT must be a port number, got %r" % port) from None
        self.app_key = env.get("APP_KEY", "")
        aes = env.get("APP_AES_SECRET_KEY")
        if aes is not None and not HEX64.match(aes):
            raise ConfigError("APP_AES_SECRET_KEY must be 64 hex characters (32 bytes), got %d characters" % len(aes))
        self.aes_key_set = aes is not None
        self.app_host = env.get("APP_HOST", "0.0.0.0")
        self.app_port = env.get("APP_PORT", "13000")
        ports = env.get("STANDIN_PORTS") or "80,%s" % self.app_port
        try:
            self.ports = sorted({int(p) for p in ports.split(",") if p.strip()})
        except ValueError:
            raise ConfigError("STANDIN_PORTS must be a comma-separated list of ports, got %r" % ports) from None
        if not self.ports:
            raise ConfigError("STANDIN_PORTS names no port")
        self.heartbeat_seconds = _float(env, "STANDIN_HEARTBEAT_SECONDS", 120)
        self.startup_seconds = _float(env, "STANDIN_STARTUP_SECONDS", 1)
        self.start_seconds = _float(env, "STANDIN_START_SECONDS", 0)
        self.db_wait_seconds = _float(env, "STANDIN_DB_WAIT_SECONDS", 120)
        self.redis_wait_seconds = _float(env, "STANDIN_REDIS_WAIT_SECONDS", 120)
        self.key_prefix = env.get("STANDIN_KEY_PREFIX", DEFAULT_KEY_PREFIX)
        self.lock_ttl_ms = int(_float(env, "STANDIN_LOCK_TTL_MS", consumer_mod.DEFAULT_LOCK_TTL_MS))
        self.reclaim_idle_ms = int(_float(env, "STANDIN_RECLAIM_IDLE_MS", consumer_mod.DEFAULT_RECLAIM_IDLE_MS))
        self.app_version = env.get("STANDIN_APP_VERSION", STANDIN_VERSION)
        self.multi_env = self.mode in ("supervisor", "worker")
        # Protocol v1 keeps registry and commands in one keyspace (docs/protocol.md).
        self.registry_url = self.supervisor_redis_url or self.command_redis_url
        self.commands_url = self.command_redis_url or self.supervisor_redis_url
        if self.multi_env and not self.registry_url:
            raise ConfigError("APP_MODE=%s needs APP_SUPERVISOR_REDIS_URL and APP_COMMAND_REDIS_URL" % self.mode)

    def warnings(self):
        out = []
        if self.mode and not self.multi_env:
            out.append("APP_MODE=%r is neither supervisor nor worker: running as a single app" % self.mode)
        if self.multi_env:
            if self.command_adapter != "redis":
                out.append("APP_COMMAND_ADAPTER is %r, not 'redis': NocoBase has no default command adapter, "
                           "so commands between supervisor and workers are SILENTLY LOST"
                           % self.command_adapter)
            if self.discovery_adapter != "remote":
                out.append("APP_DISCOVERY_ADAPTER is %r, multi-environment mode needs 'remote'"
                           % self.discovery_adapter)
            wanted = "remote" if self.mode == "supervisor" else "local"
            if self.process_adapter != wanted:
                out.append("APP_PROCESS_ADAPTER is %r, a %s needs %r" % (self.process_adapter, self.mode, wanted))
            if self.supervisor_redis_url and self.command_redis_url and \
                    self.supervisor_redis_url != self.command_redis_url:
                out.append("APP_SUPERVISOR_REDIS_URL and APP_COMMAND_REDIS_URL differ; protocol v1 keeps registry "
                           "and commands in one keyspace, the stand-in uses APP_COMMAND_REDIS_URL for both")
            if self.mode == "worker" and not self.environment_name:
                out.append("ENVIRONMENT_NAME is empty: this worker does not register as an environment")
        if not self.app_key:
            out.append("APP_KEY is not set")
        elif self.app_key in PLACEHOLDER_APP_KEYS:
            out.append("APP_KEY is a documentation placeholder that NocoBase ignores")
        return out


class StandIn:
    """State of one stand-in node, shared by the HTTP threads, the boot thread and the consumer."""

    def __init__(self, settings):
        self.settings = settings
        self.keys = Keyspace(settings.key_prefix)
        self.booted = threading.Event()
        self.stop_event = threading.Event()
        self.shutdown = threading.Event()
        self.exit_code = 0
        self.lock = threading.Lock()
        self.apps = {}  # app -> in-memory status (running, stopped, initialized)
        self.action_counts = {}  # action -> {app: count}
        self.database = None
        self.client = None
        self.consumer = None
        self.consuming = False
        self.consumer_thread = None
        self.started_at = time.time()

    # ------------------------------------------------------------------ boot

    def fail(self, message, code=1):
        LOG.error(message)
        self.exit_code = code
        self.shutdown.set()

    def wait_for_database(self):
        s = self.settings
        if not s.db_host:
            LOG.info("DB_HOST not set: no database to wait for")
            return True
        deadline = time.monotonic() + s.db_wait_seconds
        attempt = 0
        while not self.stop_event.is_set():
            attempt += 1
            try:
                with socket.create_connection((s.db_host, s.db_port), timeout=2):
                    pass
                self.database = {"dialect": s.db_dialect or "postgres", "host": s.db_host, "port": s.db_port,
                                 "database": s.db_database, "user": s.db_user}
                LOG.info("database %s at %s:%d reachable (attempt %d)", s.db_database, s.db_host, s.db_port, attempt)
                return True
            except OSError as exc:
                if time.monotonic() >= deadline:
                    self.fail("database %s:%d not reachable after %.0fs: %s"
                              % (s.db_host, s.db_port, s.db_wait_seconds, exc))
                    return False
                LOG.info("waiting for database %s:%d (%s)", s.db_host, s.db_port, exc)
                self.stop_event.wait(min(1.0, max(0.05, deadline - time.monotonic())))
        return False

    def connect_redis(self):
        s = self.settings
        url = s.commands_url
        client = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=3, socket_timeout=10)
        deadline = time.monotonic() + s.redis_wait_seconds
        while not self.stop_event.is_set():
            try:
                client.ping()
                LOG.info("redis %s reachable", _redact(url))
                self.client = client
                return True
            except redis.RedisError as exc:
                if time.monotonic() >= deadline:
                    self.fail("redis %s not reachable after %.0fs: %s" % (_redact(url), s.redis_wait_seconds, exc))
                    return False
                LOG.info("waiting for redis %s (%s)", _redact(url), exc)
                self.stop_event.wait(min(1.0, max(0.05, deadline - time.monotonic())))
        return False

    def on_action(self, app, action, payload):
        """What the reference consumer's actions mean here: an in-memory app table."""
        with self.lock:
            counts = self.action_counts.setdefault(action, {})
            counts[app] = counts.get(app, 0) + 1
            if action == "start":
                self.apps[app] = "running"
            elif action == "stop":
                self.apps[app] = "stopped"
            elif action == "create":
                self.apps.setdefault(app, "initialized")
            elif action == "remove":
                self.apps.pop(app, None)
        LOG.info("app %s: %s done (payload %s)", app, action, consumer_mod.dumps(payload or {}))

    def consume(self):
        try:
            self.consumer.run(self.stop_event)
        except Exception as exc:  # noqa: BLE001 - a worker whose consumer died must not look healthy
            LOG.exception("consumer failed")
            self.fail("consumer failed: %s" % exc)

    def boot(self):
        s = self.settings
        try:
            if not self.wait_for_database():
                return
            if s.multi_env and not self.connect_redis():
                return
            if s.startup_seconds > 0 and self.stop_event.wait(s.startup_seconds):
                return
            if s.mode == "worker" and s.environment_name:
                register = s.discovery_adapter == "remote"
                self.consuming = s.command_adapter == "redis"
                self.consumer = consumer_mod.Consumer(
                    self.client, s.environment_name, key_prefix=s.key_prefix,
                    consumer_name="%s-%s-%d" % (s.environment_name, socket.gethostname(), os.getpid()),
                    url=s.environment_url, proxy_url=s.environment_proxy_url or s.environment_url,
                    app_version=s.app_version, lock_ttl_ms=s.lock_ttl_ms, reclaim_idle_ms=s.reclaim_idle_ms,
                    heartbeat_seconds=s.heartbeat_seconds, on_action=self.on_action,
                    start_delay=s.start_seconds, block_ms=500, register=register)
                self.consumer.start()
                if register:
                    LOG.info("environment %s registered, heartbeat every %.0fs", s.environment_name,
                             s.heartbeat_seconds)
                if self.consuming:
                    self.consumer_thread = threading.Thread(target=self.consume, name="consumer", daemon=True)
                    self.consumer_thread.start()
                else:
                    _banner("not consuming commands: APP_COMMAND_ADAPTER is not 'redis'")
            self.booted.set()
            LOG.info("%s ready in %.1fs", s.mode or "app", time.time() - self.started_at)
        except consumer_mod.SchemaError as exc:
            self.fail("refusing to start: %s" % exc)
        except Exception as exc:  # noqa: BLE001 - any boot failure ends the process, like a failed NocoBase start
            LOG.exception("boot failed")
            self.fail("boot failed: %s" % exc)

    def stop(self):
        self.stop_event.set()
        if self.consumer is not None:
            if self.consumer_thread is not None:
                self.consumer_thread.join(timeout=1.0)
            else:
                self.consumer.stop()

    # ------------------------------------------------------------------ views

    def app_status(self, app):
        with self.lock:
            local = self.apps.get(app)
        if local == "running":
            return local
        if self.client is not None and self.settings.environment_name:
            try:
                raw = self.client.hget(self.keys.status(app), self.settings.environment_name)
                if raw:
                    return json.loads(raw).get("status") or "not_found"
            except (redis.RedisError, ValueError):
                pass
        return local or "not_found"

    def state(self):
        s = self.settings
        with self.lock:
            return {
                "mode": s.mode or "single",
                "environment": s.environment_name,
                "booted": self.booted.is_set(),
                "consuming": self.consuming,
                "appVersion": s.app_version,
                "apps": dict(self.apps),
                "running": sorted(a for a, st in self.apps.items() if st == "running"),
                "startCounts": dict(self.action_counts.get("start", {})),
                "actionCounts": {k: dict(v) for k, v in self.action_counts.items()},
                "database": self.database,
                "ports": s.ports,
                "standin": True,
            }


class Handler(BaseHTTPRequestHandler):
    server_version = "nocobase-standin/" + STANDIN_VERSION
    standin = None  # set on the subclass made per process

    def log_message(self, fmt, *args):
        if "__health_check" not in self.path:
            LOG.info("%s %s", self.address_string(), fmt % args)

    def _send(self, code, body, content_type="text/plain; charset=utf-8"):
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _json(self, code, obj):
        self._send(code, json.dumps(obj, sort_keys=True), "application/json")

    def _app_of_request(self, path):
        for prefix in ("/apps/", "/api/__app/"):
            if path.startswith(prefix):
                return path[len(prefix):].split("/", 1)[0]
        return self.headers.get("X-App") or None

    def do_GET(self):
        st = self.standin
        path = urlsplit(self.path).path
        if path in ("/api/__health_check", "/api/__health_check/"):
            if st.booted.is_set():
                return self._send(200, "ok")
            return self._json(503, {"error": {"code": "APP_INITIALIZING", "message": "the stand-in is starting"}})
        if path == "/__standin/state":
            return self._json(200, st.state())
        app = self._app_of_request(path)
        mode = st.settings.mode
        if app is not None:
            if not is_app_name(app):
                return self._send(404, "app=%s not a valid app name\n" % app[:64])
            if mode == "worker":
                env = st.settings.environment_name
                status = st.app_status(app)
                return self._send(200 if status == "running" else 503,
                                  "app=%s environment=%s status=%s\n" % (app, env, status))
            return self._send(200, "app=%s served-by=%s\n" % (app, mode or "single"))
        if path == "/":
            if mode == "worker":
                return self._send(200, "nocobase worker environment=%s\n" % st.settings.environment_name)
            return self._send(200, "nocobase %s\n" % (mode or "app"))
        return self._send(404, "not found\n")

    do_HEAD = do_GET
    do_POST = do_GET


def serve(settings):
    standin = StandIn(settings)
    handler = type("StandInHandler", (Handler,), {"standin": standin})
    servers = []
    for port in settings.ports:
        httpd = ThreadingHTTPServer((settings.app_host, port), handler)
        httpd.daemon_threads = True
        servers.append(httpd)
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True,
                         name="http-%d" % port).start()
    LOG.info("listening on %s port(s) %s", settings.app_host, ",".join(str(p) for p in settings.ports))

    def on_signal(signum, _frame):
        LOG.info("signal %d: stopping", signum)
        standin.shutdown.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=standin.boot, name="boot", daemon=True).start()
    while not standin.shutdown.wait(0.5):
        pass
    standin.stop()
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()
    LOG.info("stopped (exit %d)", standin.exit_code)
    return standin.exit_code


def main():
    logging.basicConfig(level=os.environ.get("STANDIN_LOG_LEVEL", "INFO").upper(), stream=sys.stdout,
                        format="%(asctime)s [nocobase-standin] %(levelname)s %(message)s")
    LOG.info("NocoBase stand-in %s (a test double, not NocoBase)", STANDIN_VERSION)
    try:
        settings = Settings(os.environ)
    except ConfigError as exc:
        LOG.error("configuration error: %s", exc)
        return 2
    for warning in settings.warnings():
        if "SILENTLY" in warning:
            _banner(warning)
        else:
            LOG.warning(warning)
    LOG.info("mode=%s environment=%s redis=%s database=%s@%s", settings.mode or "single",
             settings.environment_name or "-", _redact(settings.commands_url) or "-",
             settings.db_database or "-", settings.db_host or "-")
    try:
        return serve(settings)
    except OSError as exc:
        LOG.error("cannot listen: %s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
