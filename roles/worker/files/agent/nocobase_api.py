# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The part of NocoBase's HTTP API the worker agent uses, with the standard library only.

Open-source NocoBase 2.x with @nocobase/plugin-multi-app-manager enabled:

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

LOG = logging.getLogger("agent.nocobase")

# Pages of applications:list the agent reads at most (x PAGE_SIZE apps).
PAGE_SIZE = 200
MAX_PAGES = 100


class NocoBaseError(Exception):
    """A failed call, phrased for the operator: what was asked, the HTTP status, NocoBase's message."""

    def __init__(self, message, status=None, code=None):
        super().__init__(message)
        self.status = status
        self.code = code


class AuthError(NocoBaseError):
    """Sign-in refused: the node's root account does not accept the platform's credentials."""


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


class NocoBase:
    """One NocoBase node, reached at base_url (e.g. ``http://nocobase-worker-env_a:13000``)."""

    def __init__(self, base_url, account, password, timeout=10.0):
        self.base_url = base_url.rstrip("/")
        self.account = account
        self._password = password
        self.timeout = timeout
        self._token = None
        # Never a proxy: the node is on the platform network.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # ------------------------------------------------------------------ transport

    def request(self, method, path, body=None, params=None, headers=None, auth=True):
        """(status, parsed body or text). Transport failures raise NocoBaseError (status None)."""
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
            raise NocoBaseError("%s %s: %s" % (method, path, getattr(exc, "reason", exc))) from None
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
            return
        if status in (400, 401, 403):
            raise AuthError("NocoBase at %s refused the root account %s (HTTP %d: %s): its database was installed "
                            "with other root credentials" % (self.base_url, self.account, status, error_message(body)),
                            status, error_code(body))
        raise NocoBaseError("sign-in at %s failed (HTTP %s: %s)" % (self.base_url, status, error_message(body)),
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
            raise NocoBaseError("%s failed (HTTP %d: %s)" % (action, status, error_message(answer)),
                                status, error_code(answer))
        return answer.get("data") if isinstance(answer, dict) else answer

    # ------------------------------------------------------------------ main app

    def health(self):
        """(ok, detail): ok only for 200 with the body ``ok``, as NocoBase's own CLI checks."""
        try:
            status, body = self.request("GET", "/api/__health_check", auth=False)
        except NocoBaseError as exc:
            return False, str(exc)
        if status == 200 and isinstance(body, str) and body.strip().lower() == "ok":
            return True, "ok"
        return False, "HTTP %d %s" % (status, error_code(body) or error_message(body))

    def version(self):
        status, body = self.request("GET", "/api/app:getInfo", auth=False)
        data = body.get("data") if isinstance(body, dict) else None
        if status != 200 or not isinstance(data, dict) or not isinstance(data.get("version"), str):
            raise NocoBaseError("app:getInfo answered HTTP %d: %s" % (status, error_message(body)), status)
        return data["version"]

    # ------------------------------------------------------------------ sub-apps

    def get_app(self, name):
        """The applications row of one app (with its ``status``), or None."""
        rows = self.call("GET", "applications:list", params={"filter": json.dumps({"name": name}), "pageSize": 1})
        for row in rows or []:
            if isinstance(row, dict) and row.get("name") == name:
                return row
        return None

    def list_apps(self):
        """name -> applications row, every page (bounded by MAX_PAGES)."""
        out = {}
        for page in range(1, MAX_PAGES + 1):
            rows = self.call("GET", "applications:list", params={"page": page, "pageSize": PAGE_SIZE})
            for row in rows or []:
                if isinstance(row, dict) and isinstance(row.get("name"), str):
                    out[row["name"]] = row
            if not rows or len(rows) < PAGE_SIZE:
                break
        return out

    def create_app(self, name, title, cname, options):
        self.call("POST", "applications:create", {"name": name, "displayName": title or name, "cname": cname or None,
                                                  "options": options})

    def update_app_options(self, name, options):
        self.call("POST", "applications:update", {"options": options}, params={"filterByTk": name})

    def start_app(self, name):
        self.call("POST", "applications:start", params={"filterByTk": name})

    def stop_app(self, name):
        self.call("POST", "applications:stop", params={"filterByTk": name})

    def destroy_app(self, name):
        self.call("POST", "applications:destroy", params={"filterByTk": name})

    def app_info(self, name):
        """(status, body) of the sub-app's own ``app:getInfo``; a request that may start it lazily."""
        return self.request("GET", "/api/__app/%s/app:getInfo" % urllib.parse.quote(name, safe=""), auth=False)
