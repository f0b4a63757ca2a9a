# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The agent's backend today (backend.Backend): NocoBase's HTTP API, with the standard library only.

Open-source NocoBase 2.x with @nocobase/plugin-multi-app-manager enabled (deprecated by NocoBase,
docs/agent.md "The backend"):

- ``GET  /api/__health_check``                  200 ``ok`` once the main app runs
- ``GET  /api/app:getInfo``                     public; ``data.version``, ``data.name``
- ``POST /api/auth:signIn``                     header ``X-Authenticator: basic``, body ``{account, password}``
- ``GET  /api/applications:list``               paginated rows, each with a ``status``
- ``POST /api/applications:create|update|start|stop|destroy``
- ``GET  /api/__app/<app>/app:getInfo``         the sub-app itself (the gateway starts it lazily)

Answers are wrapped in ``{"data": ...}``; failures are ``{"errors": [{"message"}]}`` from actions
or ``{"error": {"code", "message"}}`` from the gateway.  The root password is never logged and
never part of an exception.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request

from backend import App, AuthError, Backend, BackendError, Probe

LOG = logging.getLogger("agent.nocobase")

# Pages of applications:list the agent reads at most (x PAGE_SIZE apps).
PAGE_SIZE = 200
MAX_PAGES = 100


def error_message(body):
    """NocoBase's own message from an error body (either wrapper), else a short excerpt."""
    if isinstance(body, dict):
        if isinstance(body.get("errors"), list) and body["errors"]:
            first = body["errors"][0]
            if isinstance(first, dict):
                return str(first.get("message") or first.get("code") or first)[:500]
        if isinstance(body.get("error"), dict):
            err = body["error"]
            return str(err.get("message") or err.get("code") or err)[:500]
    return str(body)[:200]


def error_code(body):
    if isinstance(body, dict):
        if isinstance(body.get("error"), dict):
            return body["error"].get("code")
        if isinstance(body.get("errors"), list) and body["errors"] and isinstance(body["errors"][0], dict):
            return body["errors"][0].get("code")
    return None


class MultiAppManager(Backend):
    """One NocoBase node, reached at base_url (e.g. ``http://nocobase-worker-env_a:13000``), whose apps
    NocoBase's multi-app manager runs in the node's own process."""

    def __init__(self, base_url, account, password, timeout=10.0):
        self.base_url = base_url.rstrip("/")
        self.account = account
        self._password = password
        self.timeout = timeout
        self._token = None
        self.sign_ins = 0  # successful sign-ins, the first and each renewal (the agent's metrics)
        # Never a proxy: the node is on the platform network.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # ------------------------------------------------------------------ transport

    def request(self, method, path, body=None, params=None, headers=None, auth=True):
        """(status, parsed body or text). Transport failures raise BackendError (status None)."""
        url = self.base_url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = None
        all_headers = {"Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            all_headers["Content-Type"] = "application/json"
        if auth and self._token:
            all_headers["Authorization"] = "Bearer " + self._token
        all_headers.update(headers or {})
        req = urllib.request.Request(url, data=data, method=method, headers=all_headers)
        try:
            with self._opener.open(req, timeout=self.timeout) as response:
                status, raw, new_token = response.status, response.read(), response.headers.get("X-New-Token")
        except urllib.error.HTTPError as exc:
            status, raw, new_token = exc.code, exc.read(), exc.headers.get("X-New-Token") if exc.headers else None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise BackendError("%s %s: %s" % (method, path, getattr(exc, "reason", exc))) from None
        if new_token and auth:
            self._token = new_token  # NocoBase renews an expiring token in this header
        text = raw.decode("utf-8", "replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def sign_in(self):
        status, body = self.request("POST", "/api/auth:signIn", {"account": self.account, "password": self._password},
                                    headers={"X-Authenticator": "basic"}, auth=False)
        token = body.get("data", {}).get("token") if isinstance(body, dict) and isinstance(body.get("data"), dict) else None
        if status == 200 and isinstance(token, str) and token:
            self._token = token
            self.sign_ins += 1
            return
        if status in (400, 401, 403):
            raise AuthError("NocoBase at %s refused the root account %s (HTTP %d: %s): its database was installed "
                            "with other root credentials" % (self.base_url, self.account, status, error_message(body)),
                            status, error_code(body))
        raise BackendError("sign-in at %s failed (HTTP %s: %s)" % (self.base_url, status, error_message(body)),
                           status, error_code(body))

    def call(self, method, action, body=None, params=None):
        """An authenticated action: signs in when needed and once more on 401. Returns ``data``."""
        if not self._token:
            self.sign_in()
        status, answer = self.request(method, "/api/" + action, body, params)
        if status == 401:
            self._token = None
            self.sign_in()
            status, answer = self.request(method, "/api/" + action, body, params)
        if not 200 <= status < 300:
            raise BackendError("%s failed (HTTP %d: %s)" % (action, status, error_message(answer)),
                               status, error_code(answer))
        return answer.get("data") if isinstance(answer, dict) else answer

    # ------------------------------------------------------------------ main app

    def health(self):
        """(ok, detail): ok only for 200 with the body ``ok``, as NocoBase's own CLI checks."""
        try:
            status, body = self.request("GET", "/api/__health_check", auth=False)
        except BackendError as exc:
            return False, str(exc)
        if status == 200 and isinstance(body, str) and body.strip().lower() == "ok":
            return True, "ok"
        return False, "HTTP %d %s" % (status, error_code(body) or error_message(body))

    def version(self):
        status, body = self.request("GET", "/api/app:getInfo", auth=False)
        data = body.get("data") if isinstance(body, dict) else None
        if status != 200 or not isinstance(data, dict) or not isinstance(data.get("version"), str):
            raise BackendError("app:getInfo answered HTTP %d: %s" % (status, error_message(body)), status)
        return data["version"]

    # ------------------------------------------------------------------ sub-apps

    def _row(self, name):
        """The applications row of one app, or None."""
        rows = self.call("GET", "applications:list", params={"filter": json.dumps({"name": name}), "pageSize": 1})
        for row in rows or []:
            if isinstance(row, dict) and row.get("name") == name:
                return row
        return None

    def get_app(self, name):
        row = self._row(name)
        return None if row is None else _app(row)

    def list_apps(self):
        """name -> App, every page of applications:list (bounded by MAX_PAGES)."""
        out = {}
        for page in range(1, MAX_PAGES + 1):
            rows = self.call("GET", "applications:list", params={"page": page, "pageSize": PAGE_SIZE})
            for row in rows or []:
                if isinstance(row, dict) and isinstance(row.get("name"), str):
                    out[row["name"]] = _app(row)
            if not rows or len(rows) < PAGE_SIZE:
                break
        return out

    def create_app(self, name, title, cname, options, auto_start):
        # NocoBase restarts the apps with options.autoStart itself, and starts a new one with it.
        self.call("POST", "applications:create", {"name": name, "displayName": title or name, "cname": cname or None,
                                                  "options": dict(options, autoStart=auto_start)})

    def set_auto_start(self, name, auto_start):
        row = self._row(name)
        options = row.get("options") if row is not None and isinstance(row.get("options"), dict) else {}
        if bool(options.get("autoStart")) != auto_start:
            self.call("POST", "applications:update", {"options": dict(options, autoStart=auto_start)},
                      params={"filterByTk": name})

    def start_app(self, name):
        self.call("POST", "applications:start", params={"filterByTk": name})

    def stop_app(self, name):
        self.call("POST", "applications:stop", params={"filterByTk": name})

    def destroy_app(self, name):
        self.call("POST", "applications:destroy", params={"filterByTk": name})

    def probe_app(self, name):
        """The sub-app's own ``app:getInfo`` (the gateway starts a lazily booting app on it)."""
        status, body = self.request("GET", "/api/__app/%s/app:getInfo" % urllib.parse.quote(name, safe=""), auth=False)
        data = body.get("data") if isinstance(body, dict) else None
        if status == 200 and isinstance(data, dict) and data.get("name") == name:
            return Probe("running", "")
        code = error_code(body)
        if code in ("APP_ERROR", "COMMAND_ERROR"):
            return Probe("failed", "NocoBase reports %s for app %s: %s" % (code, name, error_message(body)))
        return Probe("pending", "HTTP %d %s" % (status, code or error_message(body)))


def _app(row):
    options = row.get("options") if isinstance(row.get("options"), dict) else {}
    return App(row.get("status"), bool(options.get("autoStart")))
