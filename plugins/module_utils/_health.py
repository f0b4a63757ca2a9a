# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This file is private to the nocobase.multienv collection and may change at any time.
#
# The wait of module health_check: poll one HTTP health URL inside one task, so that a healthy
# deploy prints no retry lines, and say on timeout what the last answer was.

from __future__ import annotations

import json
import time
from urllib.parse import quote

from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.urls import open_url
from ansible.module_utils.six.moves.urllib.error import HTTPError

from ansible_collections.nocobase.multienv.plugins.module_utils._keyspace import is_version

# How much of an unexpected answer the failure message quotes.
_QUOTE = 120


def _request(url, request_timeout, **kwargs):
    """(status, body) of one request, never through a proxy; (None, reason) when there is no HTTP answer."""
    try:
        response = open_url(url, timeout=request_timeout, use_proxy=False, follow_redirects="none", **kwargs)
        return response.getcode(), to_text(response.read(), errors="replace")
    except HTTPError as exc:
        return exc.code, to_text(exc.read(), errors="replace") if exc.fp is not None else ""
    except Exception as exc:  # noqa: BLE001 - any failure to connect is "no answer yet"
        return None, to_text(getattr(exc, "reason", exc))


def describe(status, body):
    text = " ".join(body.split())
    text = text if len(text) <= _QUOTE else text[:_QUOTE] + "..."
    return ("HTTP %d %r" % (status, text)) if status is not None else "no answer (%s)" % text


def wait_healthy(url, expect, timeout, interval, request_timeout):
    """Poll until `url` answers 200 with the body `expect` (trimmed, any case).

    Returns (ok, elapsed seconds, attempts, description of the last answer)."""
    started = time.monotonic()
    attempts = 0
    while True:
        attempts += 1
        status, body = _request(url, request_timeout)
        elapsed = time.monotonic() - started
        if status == 200 and body.strip().lower() == expect.lower():
            return True, round(elapsed, 1), attempts, describe(status, body)
        if elapsed + interval > timeout:
            return False, round(elapsed, 1), attempts, describe(status, body)
        time.sleep(interval)


def sign_in_status(base_url, account, password, request_timeout):
    """HTTP status of NocoBase's basic sign-in (200: the account and password are right; None: no answer)."""
    status, _body = _request(base_url.rstrip("/") + "/api/auth:signIn", request_timeout, method="POST",
                             data=json.dumps({"account": account, "password": password}),
                             headers={"Content-Type": "application/json", "X-Authenticator": "basic"})
    return status


def _info(url, request_timeout):
    """(data of NocoBase's public app:getInfo answer or None, description of the answer)."""
    status, body = _request(url, request_timeout)
    try:
        data = json.loads(body).get("data") if status == 200 else None
    except (ValueError, AttributeError):
        data = None
    return (data if isinstance(data, dict) else None), describe(status, body)


def wait_version(base_url, timeout, interval, request_timeout):
    """Poll until the node reports a version on app:getInfo (a node's answer is not trusted: it must
    be one). Returns (version or None, description of the last answer, elapsed seconds)."""
    started = time.monotonic()
    while True:
        data, answer = _info(base_url.rstrip("/") + "/api/app:getInfo", request_timeout)
        version = (data or {}).get("version")
        elapsed = time.monotonic() - started
        if is_version(version) or elapsed + interval > timeout:
            return (version if is_version(version) else None), answer, round(elapsed, 1)
        time.sleep(interval)


def wait_apps_answer(base_url, apps, timeout, interval, request_timeout):
    """Poll until each sub-app answers app:getInfo as itself (NocoBase's gateway starts one lazily).

    Returns (app -> description of its last answer, for the apps that did not answer, elapsed seconds)."""
    started = time.monotonic()
    waiting = {app: "" for app in apps}
    while True:
        for app in list(waiting):
            data, answer = _info("%s/api/__app/%s/app:getInfo" % (base_url.rstrip("/"), quote(app, safe="")),
                                 request_timeout)
            if (data or {}).get("name") == app:
                del waiting[app]
            else:
                waiting[app] = answer
        elapsed = time.monotonic() - started
        if not waiting or elapsed + interval > timeout:
            return waiting, round(elapsed, 1)
        time.sleep(interval)
