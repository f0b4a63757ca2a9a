# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""NocoBase stand-in: a fake NocoBase HTTP API for fast tests.  It is NOT NocoBase.

It answers the part of NocoBase 2.x's HTTP API that the collection's worker agent and roles use
(health check, app:getInfo, auth:signIn, the open-source multi-app manager's applications:*
actions, the sub-app forms /api/__app/<app>/..., X-App and /apps/<app>/...) and keeps its
"database" (the root account and the applications table) in a JSON file in its storage volume, so
that a restart keeps both, as a real node does.  The worker agent (roles/worker/files/agent/)
drives it exactly as it drives real NocoBase; the stand-in itself never talks to Redis.
See README.md beside this file for what it honours and what it fakes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LOG = logging.getLogger("standin")
STANDIN_VERSION = "2.0.0-standin"
HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
APP_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
PLACEHOLDER_APP_KEYS = ("your-secret-key", "test-key")
DEFAULT_DB_PORTS = {"postgres": 5432, "mysql": 3306, "mariadb": 3306, "kingbase": 54321}
# NocoBase's first-install root account (packages/core/create-nocobase-app/templates/app/.env.tpl).
DEFAULT_ROOT = {"email": "admin@nocobase.com", "username": "nocobase", "password": "admin123"}
# Stand-in only, in an app's options: fail its start with this message; take this many seconds to
# start (instead of STANDIN_START_SECONDS).
FAIL_OPTION = "standinFailStart"
START_SECONDS_OPTION = "standinStartSeconds"


class ConfigError(Exception):
    """A configuration a real deployer would want to stop on."""


def _float(env, name, default):
    try:
        return float(env.get(name, default))
    except ValueError:
        raise ConfigError("%s must be a number, got %r" % (name, env.get(name))) from None


def _digest(password, salt):
    return hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), 10_000).hex()


class Settings:
    """What the stand-in reads from its environment; validation that a deployer would want."""

    def __init__(self, env):
        misspelt = sorted(name for name in env if "ADPATER" in name.upper())
        if misspelt:
            raise ConfigError("misspelt variable(s) %s: NocoBase reads *_ADAPTER (e.g. APP_COMMAND_ADAPTER) and "
                              "silently ignores these, so supervisor->worker commands would be lost"
                              % ", ".join(misspelt))
        self.mode = env.get("APP_MODE", "")
        self.environment_name = env.get("ENVIRONMENT_NAME", "")
        self.preset_plugins = [p.strip() for p in env.get("APPEND_PRESET_BUILT_IN_PLUGINS", "").split(",") if p.strip()]
        self.multi_app_manager = "@nocobase/plugin-multi-app-manager" in self.preset_plugins
        self.db_dialect = env.get("DB_DIALECT", "")
        self.db_host = env.get("DB_HOST", "")
        self.db_database = env.get("DB_DATABASE", "")
        port = env.get("DB_PORT") or DEFAULT_DB_PORTS.get(self.db_dialect or "postgres", 5432)
        try:
            self.db_port = int(port)
        except ValueError:
            raise ConfigError("DB_PORT must be a port number, got %r" % port) from None
        self.app_key = env.get("APP_KEY", "")
        aes = env.get("APP_AES_SECRET_KEY")
        if aes is not None and not HEX64.match(aes):
            raise ConfigError("APP_AES_SECRET_KEY must be 64 hex characters (32 bytes), got %d characters" % len(aes))
        self.root = {"email": env.get("INIT_ROOT_EMAIL") or DEFAULT_ROOT["email"],
                     "username": env.get("INIT_ROOT_USERNAME") or DEFAULT_ROOT["username"],
                     "password": env.get("INIT_ROOT_PASSWORD") or DEFAULT_ROOT["password"]}
        self.app_host = env.get("APP_HOST", "0.0.0.0")
        self.app_port = env.get("APP_PORT", "13000")
        ports = env.get("STANDIN_PORTS") or "80,%s" % self.app_port
        try:
            self.ports = sorted({int(p) for p in ports.split(",") if p.strip()})
        except ValueError:
            raise ConfigError("STANDIN_PORTS must be a comma-separated list of ports, got %r" % ports) from None
        if not self.ports:
            raise ConfigError("STANDIN_PORTS names no port")
        self.state_dir = Path(env.get("STANDIN_STATE_DIR", "/app/nocobase/storage"))
        self.startup_seconds = _float(env, "STANDIN_STARTUP_SECONDS", 1)
        self.start_seconds = _float(env, "STANDIN_START_SECONDS", 0)
        self.db_wait_seconds = _float(env, "STANDIN_DB_WAIT_SECONDS", 120)
        self.app_version = env.get("STANDIN_APP_VERSION", STANDIN_VERSION)
        # A broken release for some environments only (an upgrade test): boot fails there.
        self.fail_boot = self.environment_name in {
            name.strip() for name in env.get("STANDIN_FAIL_BOOT_ENVIRONMENTS", "").split(",") if name.strip()}

    def warnings(self):
        out = []
        if self.mode == "worker" and not self.multi_app_manager:
            out.append("APPEND_PRESET_BUILT_IN_PLUGINS does not name @nocobase/plugin-multi-app-manager: "
                       "applications:* answers 404, as on a real node without the plugin")
        if not self.app_key:
            out.append("APP_KEY is not set")
        elif self.app_key in PLACEHOLDER_APP_KEYS:
            out.append("APP_KEY is a documentation placeholder that NocoBase ignores")
        return out


class Refused(Exception):
    """A change the stand-in's "database" refuses; raised inside a transaction, it saves nothing."""


class StandIn:
    """The node's state, shared by the HTTP threads and the boot and start threads."""

    def __init__(self, settings):
        self.settings = settings
        self.booted = threading.Event()
        self.shutdown = threading.Event()
        self.exit_code = 0
        self.lock = threading.Lock()
        self.db = {"root": None, "applications": {}}  # what NocoBase keeps in its database
        self.status = {}  # app -> AppStatus, in memory as in NocoBase's supervisor
        self.errors = {}  # app -> message of a failed start
        self.start_counts = {}  # app -> how often it turned running
        self.db_version = None  # of the state file as last read: another replica may have written it since
        self.database = None
        self.started_at = time.time()

    # ------------------------------------------------------------------ "database"

    @property
    def state_file(self):
        return self.settings.state_dir / "standin-db.json"

    def load(self):
        try:
            self.db_version = self.state_file_version()
            self.db = json.loads(self.state_file.read_text())
            return True
        except FileNotFoundError:
            return False

    def save(self):
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.db, sort_keys=True))
        os.chmod(tmp, 0o600)
        tmp.replace(self.state_file)
        self.db_version = self.state_file_version()

    # Replicas of one node (Docker Swarm, worker_replicas) share the storage volume, so the state
    # file is their database: every change is read-modify-write under a file lock, and reads see
    # another replica's writes, as NocoBase processes share one PostgreSQL database.
    @contextlib.contextmanager
    def transaction(self):
        """Hold the state file's lock and self.lock with the newest state; save it at the end unless the
        block raised (a refusal raises Refused, which leaves the state as it was)."""
        with open(self.settings.state_dir / "standin-db.lock", "a", encoding="utf-8") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            with self.lock:
                self.load()
                yield self.db
                self.save()

    def refresh(self):
        """Read the state file again if another replica replaced it (call with self.lock held)."""
        try:
            if self.state_file_version() != self.db_version:
                self.load()
        except FileNotFoundError:
            pass

    def state_file_version(self):
        status = self.state_file.stat()
        return status.st_ino, status.st_mtime_ns  # save() replaces the file: a new inode each time

    # ------------------------------------------------------------------ boot

    def fail(self, message, code=1):
        LOG.error(message)
        self.exit_code = code
        self.shutdown.set()

    def wait_for_database(self):
        s = self.settings
        if not s.db_host:
            return True
        deadline = time.monotonic() + s.db_wait_seconds
        while not self.shutdown.is_set():
            try:
                with socket.create_connection((s.db_host, s.db_port), timeout=2):
                    pass
                self.database = {"dialect": s.db_dialect or "postgres", "host": s.db_host, "port": s.db_port,
                                 "database": s.db_database}
                return True
            except OSError as exc:
                if time.monotonic() >= deadline:
                    self.fail("database %s:%d not reachable after %.0fs: %s"
                              % (s.db_host, s.db_port, s.db_wait_seconds, exc))
                    return False
                self.shutdown.wait(min(1.0, max(0.05, deadline - time.monotonic())))
        return False

    def boot(self):
        s = self.settings
        try:
            if not self.wait_for_database():
                return
            if s.startup_seconds > 0 and self.shutdown.wait(s.startup_seconds):
                return
            if s.fail_boot:
                self.fail("migration failed (STANDIN_FAIL_BOOT_ENVIRONMENTS names %s)" % s.environment_name)
                return
            s.state_dir.mkdir(parents=True, exist_ok=True)
            with self.transaction() as db:
                if db.get("root"):
                    LOG.info("database already installed: INIT_ROOT_* are ignored, as NocoBase does")
                else:
                    salt = secrets.token_hex(8)
                    db.update({"root": {"email": s.root["email"], "username": s.root["username"], "salt": salt,
                                        "password": _digest(s.root["password"], salt)}, "applications": {}})
                    LOG.info("installed (root account %s)", s.root["email"])
            self.booted.set()
            LOG.info("%s ready in %.1fs", s.mode or "app", time.time() - self.started_at)
            # NocoBase's multi-app manager starts the apps with options.autoStart after the main app.
            for name, row in sorted(self.db["applications"].items()):
                if (row.get("options") or {}).get("autoStart"):
                    self.start_app(name)
        except Exception as exc:  # noqa: BLE001 - any boot failure ends the process, like a failed NocoBase start
            LOG.exception("boot failed")
            self.fail("boot failed: %s" % exc)

    # ------------------------------------------------------------------ sub-apps

    def start_app(self, name):
        """Boot a sub-app in the background, as the supervisor does: initializing, then running."""
        with self.lock:
            if self.status.get(name) in ("initializing", "running"):
                return
            self.status[name] = "initializing"
            self.errors.pop(name, None)

        with self.lock:
            options = (self.db["applications"].get(name) or {}).get("options") or {}
        seconds = float(options.get(START_SECONDS_OPTION, self.settings.start_seconds))

        def run():
            if seconds and self.shutdown.wait(seconds):
                return
            with self.lock:
                row = self.db["applications"].get(name)
                if row is None or self.status.get(name) != "initializing":
                    return
                failure = (row.get("options") or {}).get(FAIL_OPTION)
                if failure:
                    self.status[name], self.errors[name] = "error", str(failure)
                    return
                self.status[name] = "running"
                self.start_counts[name] = self.start_counts.get(name, 0) + 1
            LOG.info("app %s running", name)

        threading.Thread(target=run, name="start-" + name, daemon=True).start()

    def app_status(self, name):
        with self.lock:
            self.refresh()
            row = self.db["applications"].get(name)
            if row is None:
                return None
            lazy = name not in self.status and (row.get("options") or {}).get("autoStart")
            if not lazy:
                return self.status.get(name, "stopped")
        # Created or started by another replica: this process boots it on demand, as NocoBase's
        # multi-app manager boots an app with autoStart that it does not run yet.
        self.start_app(name)
        with self.lock:
            return self.status.get(name, "initializing")

    def sign_in(self, account, password):
        root = self.db.get("root") or {}
        if account not in (root.get("email"), root.get("username")) or not isinstance(password, str):
            return None
        if not hmac.compare_digest(_digest(password, root["salt"]), root["password"]):
            return None
        # Signed with APP_KEY, as NocoBase's JWTs: every replica with the same key accepts it.
        nonce = secrets.token_hex(16)
        return nonce + "." + self.token_signature(nonce)

    def token_signature(self, nonce):
        return hmac.new(self.settings.app_key.encode(), nonce.encode(), hashlib.sha256).hexdigest()

    def token_valid(self, token):
        nonce, signature = (token.split(".", 1) + [""])[:2]
        return bool(nonce) and hmac.compare_digest(self.token_signature(nonce), signature)

    def state(self):
        s = self.settings
        with self.lock:
            return {
                "mode": s.mode or "single",
                "environment": s.environment_name,
                "booted": self.booted.is_set(),
                "appVersion": s.app_version,
                "rootAccount": (self.db.get("root") or {}).get("email"),
                "applications": sorted(self.db["applications"]),
                "apps": {name: self.status.get(name, "stopped") for name in self.db["applications"]},
                "running": sorted(a for a, st in self.status.items() if st == "running"),
                "startCounts": dict(self.start_counts),
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

    # ------------------------------------------------------------------ answers

    def _send(self, code, body, content_type="text/plain; charset=utf-8"):
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _json(self, code, obj):
        self._send(code, json.dumps(obj, sort_keys=True), "application/json; charset=utf-8")

    def _data(self, data, **extra):
        self._json(200, dict({"data": data}, **extra))

    def _errors(self, code, message, error_code=None):
        item = {"message": message}
        if error_code:
            item["code"] = error_code
        self._json(code, {"errors": [item]})

    def _gateway_error(self, code, error_code, message):
        self._json(code, {"error": {"status": code, "code": error_code, "message": message}})

    # ------------------------------------------------------------------ routing

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return {}
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _selected_app(self, path):
        """(app, path) as NocoBase's gateway selects it: path /api/__app/<name>/ over query __appName over X-App."""
        query = parse_qs(urlsplit(self.path).query)
        app = (query.get("__appName") or [None])[0] or self.headers.get("X-App")
        if path.startswith("/api/__app/"):
            app, rest = (path[len("/api/__app/"):].split("/", 1) + [""])[:2]
            path = "/api/" + rest
        return (unquote(app) if app else None), path

    def do_GET(self):
        st = self.standin
        parts = urlsplit(self.path)
        path = parts.path
        if path == "/__standin/state":
            return self._json(200, st.state())
        if path.startswith("/apps/"):
            return self._client(path[len("/apps/"):].split("/", 1)[0])
        app, path = self._selected_app(path)
        if path in ("/api/__health_check", "/api/__health_check/") and app is None:
            if st.booted.is_set():
                return self._send(200, "ok")
            return self._gateway_error(503, "APP_INITIALIZING", "application main is initializing")
        if not st.booted.is_set():
            return self._gateway_error(503, "APP_INITIALIZING", "application main is initializing")
        if app is not None and app != "main":
            return self._sub_app(app, path)
        if not path.startswith("/api/"):
            env = st.settings.environment_name
            return self._send(200, "nocobase worker environment=%s\n" % env if env else "nocobase entry app\n")
        action = path[len("/api/"):]
        if action == "app:getInfo":
            return self._data({"name": "main", "version": st.settings.app_version, "lang": "en-US"})
        if action == "auth:signIn" and self.command == "POST":
            return self._sign_in()
        if action.startswith("applications:"):
            if not st.settings.multi_app_manager:
                return self._errors(404, "resource applications not found")
            if not self._authenticated():
                return self._errors(401, "Unauthenticated. Please sign in to continue.", "EMPTY_TOKEN")
            return self._applications(action.split(":", 1)[1], parse_qs(parts.query))
        return self._errors(404, "not found")

    do_HEAD = do_GET
    do_POST = do_GET

    def _authenticated(self):
        header = self.headers.get("Authorization") or ""
        return header.startswith("Bearer ") and self.standin.token_valid(header[len("Bearer "):])

    def _sign_in(self):
        if (self.headers.get("X-Authenticator") or "") != "basic":
            return self._errors(400, "Authenticator not found")
        body = self._body() or {}
        token = self.standin.sign_in(body.get("account"), body.get("password"))
        if token is None:
            return self._errors(401, "The username/email or password is incorrect, please re-enter")
        root = self.standin.db["root"]
        return self._data({"token": token, "user": {"id": 1, "email": root["email"], "username": root["username"]}})

    def _client(self, app):
        """/apps/<app>/...: the client of a sub-app. Body names the app and the environment."""
        st = self.standin
        status = st.app_status(app) if APP_NAME.match(app or "") else None
        code = 200 if status == "running" else 503
        return self._send(code, "app=%s environment=%s status=%s\n"
                          % (app[:64], st.settings.environment_name or "-", status or "not_found"))

    def _sub_app(self, app, path):
        st = self.standin
        status = st.app_status(app)
        if status is None:
            return self._gateway_error(404, "APP_NOT_FOUND", "application %s not found" % app[:64])
        if status == "error":
            return self._gateway_error(503, "APP_ERROR", st.errors.get(app, "app error"))
        if status == "stopped":
            return self._gateway_error(503, "APP_STOPPED", "application %s is stopped" % app)
        if status != "running":
            return self._gateway_error(503, "APP_INITIALIZING", "application %s is initializing" % app)
        if path == "/api/app:getInfo":
            return self._data({"name": app, "version": st.settings.app_version, "lang": "en-US"})
        return self._send(200, "app=%s environment=%s status=running\n" % (app, st.settings.environment_name or "-"))

    def _applications(self, action, query):
        st = self.standin
        key = (query.get("filterByTk") or [None])[0]
        if action == "list":
            try:
                filt = json.loads((query.get("filter") or ["{}"])[0] or "{}")
                page = max(1, int((query.get("page") or ["1"])[0]))
                size = max(1, int((query.get("pageSize") or ["20"])[0]))
            except ValueError:
                return self._errors(400, "bad filter or paging parameters")
            if not isinstance(filt, dict):
                return self._errors(400, "filter must be an object")
            with st.lock:
                st.refresh()
                rows = [dict(row, name=name, status=st.status.get(name, "stopped"))
                        for name, row in sorted(st.db["applications"].items())
                        if "name" not in filt or filt["name"] == name]
            chunk = rows[(page - 1) * size: page * size]
            return self._data(chunk, meta={"count": len(rows), "page": page, "pageSize": size,
                                           "totalPage": max(1, -(-len(rows) // size))})
        if self.command != "POST":
            return self._errors(405, "method not allowed")
        if action == "create":
            body = self._body()
            name = (body or {}).get("name")
            if not isinstance(name, str) or not APP_NAME.match(name) or name == "main":
                return self._errors(400, "invalid application name")
            try:
                with st.transaction() as db:
                    if name in db["applications"]:
                        raise Refused("name must be unique")
                    options = body.get("options") if isinstance(body.get("options"), dict) else {}
                    db["applications"][name] = {"displayName": body.get("displayName"), "cname": body.get("cname"),
                                                "options": options}
            except Refused as exc:
                return self._errors(400, str(exc))
            st.start_app(name)  # create bootstraps the app; the stand-in lets it run at once
            return self._data({"name": name})
        with st.lock:
            st.refresh()
            row = st.db["applications"].get(key)
        if action == "start":
            if row is not None:
                st.start_app(key)
            return self._data("ok")
        if action == "stop":
            with st.lock:
                if row is not None:
                    st.status[key] = "stopped"
            return self._data("ok")
        if action == "update":
            body = self._body() or {}
            try:
                with st.transaction() as db:
                    row = db["applications"].get(key)
                    if row is None:
                        raise Refused("application %s not found" % key)
                    if isinstance(body.get("options"), dict):
                        row["options"] = body["options"]
            except Refused as exc:
                return self._errors(404, str(exc))
            return self._data([dict(row, name=key)])
        if action == "destroy":
            with st.transaction() as db:
                gone = db["applications"].pop(key, None)
                st.status.pop(key, None)
            return self._data(1 if gone is not None else 0)
        return self._errors(404, "action %s not found" % action)


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
        LOG.warning(warning)
    LOG.info("mode=%s environment=%s database=%s@%s", settings.mode or "single",
             settings.environment_name or "-", settings.db_database or "-", settings.db_host or "-")
    try:
        return serve(settings)
    except OSError as exc:
        LOG.error("cannot listen: %s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
