"""Which upstream each request form reaches, through nginx running the proxy role's rendered configuration.

The configuration is rendered by the role's template (as in test_tls_proxy_template.py) with records
whose upstreams are three echo servers in the same nginx container (routing_proxy.py); each echo
answers with its name and the request it received. The
table is NocoBase's app selection (docs/apps-and-proxy.md): the gateway's selectors in its order of
precedence, then the forms of NocoBase's client.
"""
from __future__ import annotations

import subprocess

import pytest
import yaml
from helpers import wait_for
from routing_proxy import request, routing_proxy

from ansible_collections.nocobase.multienv.plugins.module_utils._keyspace import APP_NAME_PATTERN

from conftest import REPO

WS = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
      "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}

# (request target, headers, the upstream that must answer). "unavailable" is the proxy's own 503.
ROUTES = [
    # Nothing selects an app: the supervisor, the entry app.
    ("/", {}, "supervisor"),
    ("/admin/", {}, "supervisor"),
    ("/api/app:getInfo", {}, "supervisor"),
    ("/ws", WS, "supervisor"),
    ("/api/app:getInfo", {"X-App": "main"}, "supervisor"),  # the supervisor's own client
    # The pages of an app (NocoBase's client routes /apps/<app>/ and /_app/<app>/).
    ("/apps/crm/admin/", {}, "env_a"),
    ("/apps/crm", {}, "env_a"),
    ("/apps/crm?x=1", {}, "env_a"),
    ("/apps/hr/signin", {}, "env_b"),
    ("/_app/hr/admin/", {}, "env_b"),
    ("/apps/crmx/admin/", {}, "supervisor"),  # no such app: the supervisor answers for it
    ("/apps/Crm/admin/", {}, "supervisor"),
    ("/apps/crm/admin/", {"X-App": "hr"}, "env_b"),  # the gateway's selectors win over the page path
    # The X-App header (API requests of the client).
    ("/api/app:getInfo", {"X-App": "crm"}, "env_a"),
    ("/api/auth:signIn", {"X-App": "hr"}, "env_b"),
    # The query parameter __appName (the client's WebSocket; the redirect of a local file), over X-App.
    ("/ws?__appName=crm", WS, "env_a"),
    ("/api/app:getInfo?__appName=hr", {"X-App": "crm"}, "env_b"),
    ("/api/app:getInfo?foo=1&__appName=hr&bar=2", {}, "env_b"),
    ("/storage/uploads/a1b2.png?__appName=crm", {}, "env_a"),
    ("/apps/crm/admin/?__appName=hr", {}, "env_b"),
    ("/api/app:getInfo?__appName=", {"X-App": "crm"}, "env_a"),  # empty: not given
    ("/api/app:getInfo?my__appName=hr", {}, "supervisor"),  # another parameter
    ("/api/app:getInfo?__appname=hr", {}, "supervisor"),  # NocoBase's query parser is case-sensitive
    # The query parameter _app (the WebSocket of a page under /_app/<app>/), under X-App, over the pages.
    ("/ws?_app=hr", WS, "env_b"),
    ("/ws?__app=hr", WS, "supervisor"),
    ("/ws?_app=hr", {**WS, "X-App": "crm"}, "env_a"),
    ("/apps/crm/admin/?_app=hr", {}, "env_b"),
    # The path /api/__app/<app>/, over __appName and X-App.
    ("/api/__app/hr/app:getInfo", {}, "env_b"),
    ("/api/__app/hr", {}, "env_b"),
    ("/api/__app/hr?x=1", {}, "env_b"),
    ("/api/__app/hr/app:getInfo?__appName=crm", {"X-App": "crm"}, "env_b"),
    ("/api/__app/crm/app:getInfo", {"X-App": "hr"}, "env_a"),
    # The file access path /files/<app>/<data source>/<collection>/<id>, over everything.
    ("/files/hr/main/attachments/1.png", {}, "env_b"),
    ("/files/hr/main/attachments/1.png?__appName=crm", {"X-App": "crm"}, "env_b"),
    ("/files/crm/main/attachments/7.pdf?preview=1", {}, "env_a"),
    # A selector that is given but names no possible app selects none: the supervisor, as NocoBase's
    # gateway would take the name and not find the app.
    ("/api/app:getInfo", {"X-App": "../crm"}, "supervisor"),
    ("/apps/crm/admin/", {"X-App": "CRM"}, "supervisor"),
    ("/api/app:getInfo?__appName=cr%6D", {"X-App": "crm"}, "supervisor"),
    ("/api/__app/Hr/app:getInfo?__appName=crm", {}, "supervisor"),
    ("/files/..%2Fhr/main/attachments/1.png", {"X-App": "crm"}, "supervisor"),
    ("/api/app:getInfo?__appName=zzz", {"X-App": "crm"}, "supervisor"),  # a name, but no app of the platform
    # Forms NocoBase decodes (qs.parse, url.parse) and nginx does not: never a lower selector's app.
    ("/api/app:getInfo?%5F%5FappName=hr", {"X-App": "crm"}, "supervisor"),
    ("/api/app:getInfo?__app%4Eame=hr", {"X-App": "crm"}, "supervisor"),
    ("/api/app:getInfo?__appName[]=hr", {"X-App": "crm"}, "supervisor"),
    ("/api/app:getInfo?__appName%5B%5D=hr", {"X-App": "crm"}, "supervisor"),
    ("/api/app:getInfo?__appName=crm&__appName=hr", {}, "supervisor"),
    ("/api/app:getInfo?__appName=hr&x=1&__appName=hr", {}, "supervisor"),
    ("/api\\__app\\hr\\app:getInfo", {"X-App": "crm"}, "supervisor"),
    ("/files\\hr\\main\\attachments\\1.png", {}, "supervisor"),
    ("/apps/crm\\admin", {}, "supervisor"),
    ("http://127.0.0.1/api/__app/hr/app:getInfo", {"X-App": "crm"}, "env_b"),  # nginx passes an absolute URI's path
    # The host as the client wrote it, port or not; a client's own X-Forwarded-Host is replaced.
    ("/api/app:getInfo", {"X-App": "crm", "Host": "nocobase.example.test"}, "env_a"),
    ("/api/app:getInfo", {"X-App": "hr", "X-Forwarded-Host": "evil.example.test"}, "env_b"),
    # An app whose environment does not answer.
    ("/api/__app/ops/app:getInfo", {}, "unavailable"),
    ("/ws?__appName=ops", WS, "unavailable"),
]


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    with routing_proxy(tmp_path_factory.mktemp("proxy-routing")) as running:
        yield running


def _route_id(route):
    target, headers, dummy = route
    return " ".join([target] + (["websocket"] if headers is WS else ["%s: %s" % item for item in headers.items()]))


@pytest.mark.parametrize(("target", "headers", "upstream"), ROUTES, ids=[_route_id(route) for route in ROUTES])
def test_each_request_form_reaches_the_upstream_nocobase_would_select(proxy, target, headers, upstream):
    dummy, port = proxy
    status, body = request(port, target, headers)
    if upstream == "unavailable":
        assert status == 503 and "is unavailable" in body, (status, body)
        return
    assert status == 200, (status, body)
    # The upstream got the request as the browser sent it: the same target (an absolute URI as its path),
    # the WebSocket upgrade kept, and the host with its port (NocoBase checks a sign-in's Origin against it).
    host = headers.get("Host", "127.0.0.1" if target.startswith("http:") else "127.0.0.1:%d" % port)
    path = "/" + target.split("/", 3)[3] if target.startswith("http:") else target
    assert body == "%s %s upgrade=%s host=%s forwarded=%s,http" % (
        upstream, path, headers.get("Upgrade", ""), host, host), body


def test_the_access_log_names_the_app_and_the_upstream(proxy):
    name, port = proxy
    assert request(port, "/ws?__appName=hr", WS)[0] == 200

    def logged():  # Docker copies the log asynchronously
        log = subprocess.run(["docker", "logs", name], capture_output=True, text=True, check=True, timeout=30).stdout
        return [line for line in log.splitlines() if '"GET /ws?__appName=hr HTTP/1.1"' in line]

    line = wait_for(logged, timeout=10, interval=0.2, what="the request in the access log")[-1]
    assert " app=hr upstream=http://127.0.0.1:9002 upstream_addr=127.0.0.1:9002" in line, line


def test_the_proxy_accepts_exactly_the_app_names_the_records_allow():
    """The regex in the proxy role's vars is _keyspace.APP_NAME_PATTERN without its anchors: one rule."""
    regex = yaml.safe_load((REPO / "roles" / "proxy" / "vars" / "main.yml").read_text())["__proxy_app_name_regex"]
    assert "^%s$" % regex == APP_NAME_PATTERN
