"""The proxy's configuration template with and without proxy_tls and proxy_maintenance, rendered by
ansible-playbook as the role renders it (nginx -t of the rendered file runs in tests/e2e/test_tls.py
and tests/e2e/test_upgrade.py, the role's own check)."""
from __future__ import annotations

import json

import pytest
from test_playbooks import ansible_playbook

RECORDS = [{"name": "crm", "proxyTarget": {"available": True, "url": "http://worker_a:13000"}},
           {"name": "hr", "proxyTarget": {"available": False, "url": "http://worker_b:13000"}}]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("proxy-template")
    variants = [{"name": "plain", "tls": False, "port": 13443}, {"name": "tls", "tls": True, "port": 13443},
                {"name": "tls443", "tls": True, "port": 443},
                {"name": "maintenance", "tls": True, "port": 13443, "maintenance": "false"},
                {"name": "maintenance_on", "tls": True, "port": 13443, "maintenance": True}]
    return render_proxy_template(out, variants, RECORDS, "http://test-supervisor:13000")


def render_proxy_template(out, variants, apps, supervisor_url, template=None):
    """{variant name: the proxy configuration rendered by the role's template (or another) with these records}."""
    (out / "vars.json").write_text(json.dumps({
        "test_output_dir": str(out), "test_variants": variants, "__proxy_apps": apps,
        "__proxy_supervisor_url": supervisor_url, "__proxy_tls_container_dir": "/etc/nginx/conf.d/tls",
        **({"test_template": str(template)} if template else {})}))
    run = ansible_playbook("proxy_template.yml", {"@": out / "vars.json"})
    assert run.returncode == 0, run.stdout + run.stderr
    return {variant["name"]: (out / (variant["name"] + ".conf")).read_text() for variant in variants}


def servers(text):
    """The server blocks of a rendered file."""
    return ["server {" + part.split("\n}\n", 1)[0] for part in text.split("\nserver {")[1:]]


def test_without_tls_one_plain_server_routes_everything(rendered):
    [server] = servers(rendered["plain"])
    assert "    listen 80;\n" in server
    assert "ssl" not in rendered["plain"] and "301" not in rendered["plain"]
    assert "proxy_pass $nocobase_upstream;" in server and "location = /__nocobase_proxy_health" in server


def test_with_tls_http_redirects_but_answers_its_health_url_and_https_routes(rendered):
    http, https = servers(rendered["tls"])
    assert "    listen 80;\n" in http and "proxy_pass" not in http
    assert "return 301 https://$host:13443$request_uri;" in http
    assert "location = /__nocobase_proxy_health {\n        default_type text/plain;\n        return 200" in http
    assert "    listen 443 ssl;\n" in https
    assert "ssl_certificate /etc/nginx/conf.d/tls/nocobase.crt;" in https
    assert "ssl_certificate_key /etc/nginx/conf.d/tls/nocobase.key;" in https
    assert "return 301" not in https
    # The routes are the same as without TLS: one location / block, written once in the template.
    plain_route = servers(rendered["plain"])[0].split("    location / {", 1)[1]
    assert https.split("    location / {", 1)[1] == plain_route


def test_the_redirect_leaves_out_port_443(rendered):
    assert "return 301 https://$host$request_uri;" in servers(rendered["tls443"])[0]


def test_the_maintenance_page_answers_over_https_and_the_redirect_stays(rendered):
    http, https = servers(rendered["maintenance_on"])
    assert "return 301 https://$host:13443$request_uri;" in http and "503" not in http
    route = https.split("    location / {", 1)[1]
    assert route.index('return 503 "NocoBase is being upgraded.') < route.index("proxy_pass")
    assert "add_header Retry-After 120 always;" in route
    # The string "false" (as -e passes it) is false: the routes as without maintenance.
    assert rendered["maintenance"] == rendered["tls"]
