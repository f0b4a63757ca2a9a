"""TLS end to end: HTTPS at the proxy (plain HTTP redirects) and rediss:// for the control plane.

One stand-in platform (tests/e2e/harness.py) with proxy_tls and nocobase_redis_tls, both with the
pairs the roles generate: the agents heartbeat and start apps over rediss://, the modules of every
role reach Redis with the generated CA, curl reaches the apps over HTTPS with the proxy's generated
certificate, and a second converge changes nothing. Then the proxy switches to a given pair.
"""
from __future__ import annotations

import json
import stat
import subprocess

import pytest
import redis
from harness import Platform, recap_changed
from helpers import make_tls_pair

from conftest import free_port


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    root = tmp_path_factory.mktemp("tls")
    https_port = free_port()
    deployed = Platform(root, extra_vars={"proxy_tls": True, "proxy_tls_published_port": https_port,
                                          "nocobase_redis_tls": True,
                                          "nocobase_redis_tls_dir": str(root / "redis-tls")})
    deployed.ports["https"] = https_port
    try:
        deployed.cold = deployed.playbook("site.yml")
        yield deployed
    finally:
        deployed.playbook("teardown.yml", check=False)


def curl(*args):
    """curl's exit code and output (body, or what -w writes); never through a proxy, bounded."""
    result = subprocess.run(["curl", "-sS", "--noproxy", "*", "--max-time", "10", *args],
                            capture_output=True, text=True, timeout=30, check=False)
    return result.returncode, result.stdout + result.stderr


def tls_redis(platform, ca_file=None, **kwargs):
    return redis.Redis(host="127.0.0.1", port=platform.ports["redis"], password=platform.redis_password,
                       ssl=True, ssl_ca_certs=str(ca_file or platform.secrets / "redis-tls-ca.crt"),
                       decode_responses=True, socket_timeout=10, **kwargs)


def test_the_apps_answer_over_https_with_the_generated_certificate(platform):
    cert = platform.secrets / "proxy-tls.crt"
    for app in ("crm", "hr"):
        code, body = curl("--cacert", str(cert), "https://localhost:%d/apps/%s/" % (platform.ports["https"], app))
        assert code == 0, body
        assert body.startswith("app=%s environment=env_a status=running" % app), body
    code, body = curl("--cacert", str(cert), "https://localhost:%d/" % platform.ports["https"])
    assert (code, body) == (0, "nocobase entry app\n")
    # Without the certificate curl does not trust the proxy.
    code, body = curl("https://localhost:%d/apps/crm/" % platform.ports["https"])
    assert code == 60, (code, body)


def test_plain_http_redirects_to_https_but_the_health_url(platform):
    code, out = curl("-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                     "http://localhost:%d/apps/crm/admin/?a=1" % platform.ports["proxy"])
    assert (code, out) == (0, "301 https://localhost:%d/apps/crm/admin/?a=1" % platform.ports["https"])
    assert platform.get("/__nocobase_proxy_health") == (200, "ok")


def test_redis_speaks_tls_only_and_the_agents_work_over_it(platform):
    with pytest.raises(redis.ConnectionError):
        platform.redis().ping()  # plain RESP to the TLS port
    client = tls_redis(platform)
    assert client.ping()
    # The agents ran the apps over rediss:// (the statuses are theirs) ...
    for env in ("env_a", "env_b"):
        assert platform.status("hr", env, client=client)["status"] == "running"
    assert platform.status("crm", "env_a", client=client)["status"] == "running"


def test_the_status_playbook_reads_the_records_over_rediss(platform, tmp_path):
    """... and heartbeat their environments; the modules of the roles reach Redis with the generated CA."""
    status_file = tmp_path / "status.json"
    result = platform.playbook("status.yml", "-e", "nocobase_status_file=%s" % status_file)
    assert "Environments: 2, 2 available" in result.stdout, result.stdout[-3000:]
    status = json.loads(status_file.read_text())
    assert [(env["name"], env["available"]) for env in status["environments"]] == [("env_a", True), ("env_b", True)]
    apps = {app["name"]: app for app in status["apps"]}
    assert apps["crm"]["status"]["env_a"]["status"] == "running"


def test_another_ca_is_refused(platform):
    other = make_tls_pair(platform.root, ["localhost"], prefix="other")
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        tls_redis(platform, ca_file=other["ca"]).ping()


def test_the_agent_gets_a_rediss_url_and_the_ca(platform):
    agent = platform.container("agent-env_a")
    env = dict(item.split("=", 1) for item in json.loads(platform.docker(
        "inspect", "-f", "{{json .Config.Env}}", agent).stdout))
    url = platform.docker("exec", agent, "cat", env["AGENT_REDIS_URL_FILE"]).stdout
    assert url.startswith("rediss://agent-env_a:") and url.endswith("@%s:6379/0" % platform.container("redis"))
    ca = platform.docker("exec", agent, "cat", env["AGENT_REDIS_TLS_CA_FILE"]).stdout
    assert ca.strip() == (platform.secrets / "redis-tls-ca.crt").read_text().strip()


def test_the_keys_are_private(platform):
    for path in (platform.secrets / "proxy-tls.key", platform.root / "proxy" / "tls" / "nocobase.key",
                 platform.secrets / "redis-tls-ca.key", platform.secrets / "redis-tls.key",
                 platform.root / "redis-tls" / "redis.key"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for path in (platform.root / "proxy" / "tls", platform.root / "redis-tls"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for key in ("proxy-tls.key", "redis-tls.key", "redis-tls-ca.key"):
        text = (platform.secrets / key).read_text()
        body = "".join(text.strip().splitlines()[1:-1])
        assert body[:40] not in platform.cold.stdout + platform.cold.stderr


def test_a_second_converge_changes_nothing(platform):
    again = platform.playbook("site.yml")
    assert set(recap_changed(again.stdout).values()) == {0}, again.stdout[-6000:]
    assert "Generate the proxy's private key" not in again.stdout  # the TLS tasks did not even run


def test_a_given_pair_replaces_the_generated_certificate(platform, tmp_path):
    given = make_tls_pair(tmp_path, ["localhost", "127.0.0.1"], prefix="proxy")
    other = make_tls_pair(tmp_path, ["localhost"], prefix="other")
    # A key of another certificate is refused, naming the variables, and the key never shows.
    wrong = platform.playbook("proxy.yml", "-e", "proxy_tls_cert=%s" % given["cert"], "-e",
                              "proxy_tls_key=%s" % other["key"], check=False)
    assert wrong.returncode != 0
    assert "the key does not belong to the certificate" in wrong.stdout, wrong.stdout[-3000:]
    assert "proxy_tls_key (%s)" % other["key"] in wrong.stdout
    assert "PRIVATE KEY" not in wrong.stdout + wrong.stderr
    switched = platform.playbook("proxy.yml", "-e", "proxy_tls_cert=%s" % given["cert"],
                                 "-e", "proxy_tls_key=%s" % given["key"])
    assert recap_changed(switched.stdout)["proxy"] > 0
    code, body = curl("--cacert", str(given["ca"]), "https://localhost:%d/apps/crm/" % platform.ports["https"])
    assert code == 0 and body.startswith("app=crm environment=env_a status=running"), body
    code, body = curl("--cacert", str(platform.secrets / "proxy-tls.crt"), "https://localhost:%d/" % platform.ports["https"])
    assert code == 60, (code, body)  # the generated certificate is no longer served
    again = platform.playbook("proxy.yml", "-e", "proxy_tls_cert=%s" % given["cert"], "-e", "proxy_tls_key=%s" % given["key"])
    assert set(recap_changed(again.stdout).values()) == {0}, again.stdout[-4000:]
