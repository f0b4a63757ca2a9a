"""The control-plane modules and the lookup over rediss:// against a real redis-server with TLS.

The server serves TLS only (--port 0 --tls-port), with a CA and a server certificate made here for
127.0.0.1 and localhost; clients need no certificate of their own (--tls-auth-clients no), as the
platform's Redis with nocobase_redis_tls.
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from helpers import ModuleFailed, make_tls_pair, run
from test_playbooks import ansible_playbook

from ansible_collections.nocobase.multienv.plugins.module_utils._connection import connect

from conftest import free_port

PASSWORD = "tls-" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def tls_redis():
    directory = Path(tempfile.mkdtemp(prefix="nocobase-tls-redis-"))
    pair = make_tls_pair(directory, ["127.0.0.1", "localhost"])
    other = make_tls_pair(directory, ["127.0.0.1", "localhost"], prefix="other")
    port = free_port()
    process = subprocess.Popen(
        [shutil.which("redis-server"), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(pair["cert"]), "--tls-key-file", str(pair["key"]),
         "--tls-ca-cert-file", str(pair["ca"]), "--tls-auth-clients", "no",
         "--requirepass", PASSWORD, "--save", "", "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:  # the port accepts connections (TLS is checked by the tests)
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "redis-server did not start with TLS"
                time.sleep(0.05)
        yield {"port": port, "ca": str(pair["ca"]), "other_ca": str(other["ca"])}
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def tls_conn(tls_redis):
    prefix = "t%s:" % uuid.uuid4().hex[:10]
    conn = {"redis_url": "rediss://:%s@127.0.0.1:%d/0" % (PASSWORD, tls_redis["port"]), "key_prefix": prefix,
            "tls_ca_file": tls_redis["ca"]}
    yield conn
    client = connect(dict(conn, validate_certs=True, tls_cert_file=None, tls_key_file=None, connect_timeout=5))
    try:
        keys = list(client.execute("KEYS", prefix + "*"))
        if keys:
            client.execute("DEL", *keys)
    finally:
        client.close()


def failure(module, args):
    with pytest.raises(ModuleFailed) as info:
        run(module, args)
    return info.value.result["msg"]


def test_the_modules_work_over_rediss_with_the_ca(tls_conn):
    changed = run("environment", dict(tls_conn, environments=[dict(name="env_a", url="http://a")]))
    assert changed["changed"] is True
    run("environment", dict(tls_conn, name="env_a", heartbeat=True))
    [env] = run("environment_info", dict(tls_conn))["environments"]
    assert env["name"] == "env_a" and env["available"] is True
    assert run("app", dict(tls_conn, name="crm", environments=["env_a"]))["changed"] is True
    assert run("app", dict(tls_conn, name="crm", environments=["env_a"]))["changed"] is False
    [app] = run("app_info", dict(tls_conn))["apps"]
    assert app["name"] == "crm" and app["proxyTarget"]["environment"] == "env_a"


@pytest.mark.parametrize("module", ["environment_info", "app_info"])
def test_without_the_ca_or_with_another_the_modules_fail_naming_the_tls_options(tls_conn, tls_redis, module):
    system = dict(tls_conn)
    del system["tls_ca_file"]
    for args in (system, dict(tls_conn, tls_ca_file=tls_redis["other_ca"])):
        msg = failure(module, args)
        assert "over TLS" in msg and "tls_ca_file" in msg and "validate_certs" in msg, msg
        assert "certificate verify failed" in msg, msg
        assert PASSWORD not in msg


def test_a_missing_ca_file_is_named(tls_conn, tmp_path):
    msg = failure("environment_info", dict(tls_conn, tls_ca_file=str(tmp_path / "nope.crt")))
    assert msg == "tls_ca_file %s cannot be read" % (tmp_path / "nope.crt"), msg


def test_validate_certs_false_skips_the_check(tls_conn, tls_redis):
    insecure = dict(tls_conn, tls_ca_file=tls_redis["other_ca"], validate_certs=False)
    assert run("environment_info", insecure)["environments"] == []


def test_plain_redis_to_the_tls_port_fails(tls_conn):
    plain = dict(tls_conn, redis_url=tls_conn["redis_url"].replace("rediss://", "redis://"))
    msg = failure("environment_info", plain)
    assert "cannot reach Redis" in msg or "refused" in msg, msg
    assert PASSWORD not in msg


def test_the_lookup_reads_the_records_over_rediss(tls_conn, tls_redis, tmp_path):
    run("environment", dict(tls_conn, environments=[dict(name="env_a", url="http://a")]))
    run("app", dict(tls_conn, name="crm", environments=["env_a"]))
    output = tmp_path / "records.json"
    args = {"test_redis_url": tls_conn["redis_url"], "test_key_prefix": tls_conn["key_prefix"], "test_output": output}
    good = ansible_playbook("tls_lookup.yml", dict(args, test_ca=tls_conn["tls_ca_file"], test_other_ca=tls_redis["other_ca"]))
    assert good.returncode == 0, good.stdout + good.stderr
    assert json.loads(output.read_text()) == {"apps": ["crm"], "environments": ["env_a"]}
    assert PASSWORD not in good.stdout + good.stderr
    # Another CA, checked: the lookup fails and says which options to look at.
    bad = ansible_playbook("tls_lookup.yml", dict(args, test_ca=tls_redis["other_ca"], test_other_ca=tls_redis["other_ca"]))
    assert bad.returncode != 0
    assert "tls_ca_file" in bad.stdout and "certificate verify failed" in bad.stdout, bad.stdout[-3000:]
    assert PASSWORD not in bad.stdout + bad.stderr
