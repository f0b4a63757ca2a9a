"""Helpers shared by the integration tests: run modules in-process, poll, write raw records."""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from ansible.module_utils.common import warnings as ansible_warnings

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core before 2.19, the oldest the collection supports
    from ansible.module_utils import basic

    @contextlib.contextmanager
    def patch_module_args(args):
        saved = basic._ANSIBLE_ARGS
        basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = saved


class ModuleFailed(Exception):
    def __init__(self, result):
        super().__init__(result.get("msg"))
        self.result = result


def run(name, args, check=False, diff=False):
    """Run a module in-process, as Ansible would (argument parsing included).

    Return the module's result dict; raise ModuleFailed with it when the module fails."""
    module = importlib.import_module("ansible_collections.nocobase.multienv.plugins.modules." + name)
    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    ansible_warnings._global_warnings.clear()  # a module's warnings are its own run's, as in a real process
    out = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(out):
        try:
            module.main()
        except SystemExit:
            pass
    result = json.loads(out.getvalue())
    if result.get("failed"):
        raise ModuleFailed(result)
    return result


def wait_for(predicate, timeout=10.0, interval=0.02, what="condition"):
    """Poll until `predicate()` is truthy (and return it), bounded by `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def put_app(client, keys, name, environments):
    """An app record written directly, as a supervisor would (redis-py client)."""
    record = {"environments": environments, "name": name, "options": {"dbConnType": "new_database"}}
    client.hset(keys.apps, name, json.dumps(record, separators=(",", ":"), sort_keys=True))


def stop_processes(started):
    """Kill what a fixture started ((process, log file) pairs) and close the logs."""
    for process, log in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        log.close()


def producer(url, key_prefix="nocobase:", stale_after=None):
    """The collection's producer (ControlPlane) on its own connection, as the modules use it."""
    from ansible_collections.nocobase.multienv.plugins.module_utils._connection import connect
    from ansible_collections.nocobase.multienv.plugins.module_utils._control_plane import ControlPlane

    plane = ControlPlane(connect({"redis_url": url, "connect_timeout": 10}), key_prefix)
    if stale_after is not None:
        plane.stale_after = stale_after
    return plane


# ------------------------------------------------------------------ stand-in and agent processes

REPO = Path(__file__).resolve().parents[2]
STANDIN_SERVER = REPO / "tests" / "standin" / "server.py"
AGENT = REPO / "roles" / "worker" / "files" / "agent" / "agent.py"
# Variables of the stand-in and the agent: a test process never inherits them from the caller's shell.
_OWN_PREFIXES = ("APP_", "DB_", "STANDIN_", "ENVIRONMENT_", "AGENT_", "INIT_ROOT_", "APPEND_PRESET_")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy


def clean_env(**overrides):
    """os.environ without the stand-in's and the agent's variables, plus overrides (None removes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES) and "ADPATER" not in k}
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


def http(port, path, method="GET", body=None, headers=None, timeout=5):
    """(status, JSON body or text) from 127.0.0.1:port, or None when nothing answers there."""
    data = None if body is None else json.dumps(body).encode()
    all_headers = dict({"Content-Type": "application/json"} if data is not None else {}, **(headers or {}))
    request = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data, method=method,
                                     headers=all_headers)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status, raw = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


class Process:
    """A subprocess with its output in a log file."""

    def __init__(self, args, env, log_path):
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self):
        return self.log_path.read_text()

    def wait_log(self, text, timeout=10.0):
        wait_for(lambda: text in self.log(), timeout=timeout, interval=0.05, what="%r in %s" % (text, self.log_path))

    def alive(self):
        return self.proc.poll() is None

    def terminate(self, timeout=10):
        """SIGTERM, then the exit code (SIGKILL after `timeout` seconds)."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait(timeout=10)

    def close(self):
        stop_processes([(self.proc, self._log)])


class Processes:
    """The processes a test starts; close() kills what is still running (fixture teardown)."""

    def __init__(self, directory):
        self.directory = Path(directory)
        self.started = []

    def start(self, name, args, env):
        process = Process(args, env, self.directory / ("%s-%d.log" % (name, len(self.started))))
        self.started.append(process)
        return process

    def close(self):
        for process in self.started:
            process.close()


MULTI_APP_MANAGER = "@nocobase/plugin-multi-app-manager"


class StandIn:
    """A stand-in node (tests/standin/server.py, a fake NocoBase HTTP API) run as a process."""

    def __init__(self, processes, env, ports):
        self.processes, self.env, self.ports = processes, env, ports
        self.process = processes.start("standin", [sys.executable, str(STANDIN_SERVER)], env)

    @property
    def port(self):
        return self.ports[0]

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def log(self):
        return self.process.log()

    def request(self, path, method="GET", body=None, headers=None, token=None, port=None):
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = "Bearer " + token
        return http(port or self.port, path, method, body, headers)

    def sign_in(self, account, password):
        return self.request("/api/auth:signIn", "POST", {"account": account, "password": password},
                            headers={"X-Authenticator": "basic"})

    def token(self, account, password):
        answer = self.sign_in(account, password)
        assert answer[0] == 200, answer
        return answer[1]["data"]["token"]

    def wait_healthy(self, timeout=15):
        def healthy():
            assert self.process.alive(), "stand-in exited early:\n" + self.log()
            return self.request("/api/__health_check") == (200, "ok")
        wait_for(healthy, timeout=timeout, interval=0.05, what="the stand-in's health check")

    def state(self):
        answer = self.request("/__standin/state")
        assert answer is not None and answer[0] == 200, answer
        return answer[1]

    def restart(self, **overrides):
        """A new process on the same ports and state directory (this one must have stopped)."""
        assert not self.process.alive()
        env = dict(self.env)
        for key, value in overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = str(value)
        return StandIn(self.processes, env, self.ports)


def start_standin(processes, state_dir, ports, **overrides):
    """A worker stand-in with the multi-app manager on `ports` (127.0.0.1); overrides: env (None removes)."""
    settings = {"APP_MODE": "worker", "ENVIRONMENT_NAME": "env_a", "APP_KEY": "a-test-app-key",
                "APP_HOST": "127.0.0.1", "APPEND_PRESET_BUILT_IN_PLUGINS": MULTI_APP_MANAGER,
                "STANDIN_PORTS": ",".join(str(p) for p in ports), "STANDIN_STATE_DIR": str(state_dir),
                "STANDIN_STARTUP_SECONDS": "0.2"}
    settings.update(overrides)
    return StandIn(processes, clean_env(**settings), list(ports))


def make_tls_pair(directory, names, prefix="server"):
    """A small CA and a certificate it signed for `names` (DNS names or IPv4 addresses), as PEM files
    <prefix>-ca.crt, <prefix>.crt and <prefix>.key (mode 0600) in `directory`; returns their paths."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(common_name):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name(prefix + " test CA")).issuer_name(name(prefix + " test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    alt_names = []
    for item in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(item)))
        except ValueError:
            alt_names.append(x509.DNSName(item))
    cert = (x509.CertificateBuilder().subject_name(name(names[0])).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory = Path(directory)
    paths = {"ca": directory / (prefix + "-ca.crt"), "cert": directory / (prefix + ".crt"), "key": directory / (prefix + ".key")}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].touch(mode=0o600)
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths
