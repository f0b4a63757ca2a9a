"""Real-Docker tests of the offline images built by tools/offline-images.sh.

They check that nocobase-multienv/{redis,postgres,nginx}:offline keep the interfaces of
the official images that the roles rely on. Every container, network and volume gets a
unique name with a random suffix and is removed in a finalizer. Containers are published
on 127.0.0.1 only; clients run inside the test's own Docker network.

When an image is missing it is built first with tools/offline-images.sh (about a minute).
Without a reachable Docker engine they fail: tools/setup.sh starts one.
"""

import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PREFIX = os.environ.get("OFFLINE_IMAGES_PREFIX", "nocobase-multienv")
TAG = os.environ.get("OFFLINE_IMAGES_TAG", "offline")
REDIS_IMAGE = f"{PREFIX}/redis:{TAG}"
POSTGRES_IMAGE = f"{PREFIX}/postgres:{TAG}"
NGINX_IMAGE = f"{PREFIX}/nginx:{TAG}"

READY_TIMEOUT = 60  # seconds, for any server to become ready
STOP_LIMIT = 5.0  # seconds a `docker stop` may take (SIGTERM handled, no 10 s kill)


# --------------------------------------------------------------------------- helpers


def docker(*args, check=True, timeout=120, input=None):
    """Run the docker CLI; return the CompletedProcess (text)."""
    proc = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} failed ({proc.returncode}):\n"
            f"{proc.stdout}\n{proc.stderr}"
        )
    return proc


def wait_for(what, predicate, timeout=READY_TIMEOUT, interval=0.25):
    """Poll predicate() (bounded in time) until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last error
            last = exc
        else:
            if result:
                return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last!r})")


def published_port(container, container_port):
    out = docker("port", container, f"{container_port}/tcp").stdout
    for line in out.splitlines():
        host, _sep, port = line.strip().rpartition(":")
        if host == "127.0.0.1":
            return int(port)
    raise AssertionError(f"{container}:{container_port} not published on 127.0.0.1: {out!r}")


def timed_stop(container):
    start = time.monotonic()
    docker("stop", "-t", "10", container)
    return time.monotonic() - start


class Resources:
    """Unique names, removed (containers, then volumes, then networks) at teardown."""

    def __init__(self):
        self.suffix = secrets.token_hex(4)
        self.containers, self.volumes, self.networks = [], [], []

    def name(self, kind):
        return f"nbme-test-{kind}-{self.suffix}"

    def network(self):
        name = self.name("net")
        docker("network", "create", name)
        self.networks.append(name)
        return name

    def volume(self, kind):
        name = self.name(f"vol-{kind}")
        docker("volume", "create", name)
        self.volumes.append(name)
        return name

    def container(self, kind):
        name = self.name(kind)
        self.containers.append(name)
        return name

    def cleanup(self):
        for name in reversed(self.containers):
            docker("rm", "-f", "-v", name, check=False)
        for name in self.volumes:
            docker("volume", "rm", "-f", name, check=False)
        for name in self.networks:
            docker("network", "rm", name, check=False)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def offline_images():
    if shutil.which("docker") is None or docker("info", check=False, timeout=30).returncode:
        pytest.fail("no reachable Docker engine (run tools/docker-engine.sh)")
    images = {"redis": REDIS_IMAGE, "postgres": POSTGRES_IMAGE, "nginx": NGINX_IMAGE}
    missing = [key for key, ref in images.items() if docker("image", "inspect", ref, check=False).returncode]
    if missing:
        subprocess.run(
            ["bash", str(ROOT / "tools" / "offline-images.sh"), *missing],
            check=True,
            timeout=900,
        )
    return images


@pytest.fixture
def res(request):
    resources = Resources()
    request.addfinalizer(resources.cleanup)
    return resources


# --------------------------------------------------------------------------- redis


def resp_command(sock_file, *words):
    """Send one RESP command and return the first reply line (without CRLF)."""
    payload = f"*{len(words)}\r\n" + "".join(f"${len(w.encode())}\r\n{w}\r\n" for w in words)
    sock_file.write(payload.encode())
    sock_file.flush()
    line = sock_file.readline().decode().rstrip("\r\n")
    if line.startswith("$") and line != "$-1":
        data = sock_file.readline().decode().rstrip("\r\n")
        return data
    return line


def redis_session(port, *commands):
    """Open a TCP connection to 127.0.0.1:port, run commands, return the replies."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with sock.makefile("rwb") as f:
            return [resp_command(f, *cmd) for cmd in commands]


def start_redis(res, network, volume, name):
    docker(
        "run", "-d", "--name", name, "--network", network,
        "-p", "127.0.0.1::6379",
        "-e", "REDIS_ARGS=--requirepass x --appendonly yes",
        "-v", f"{volume}:/data",
        REDIS_IMAGE,
    )
    port = published_port(name, 6379)
    wait_for(
        f"redis {name}",
        lambda: redis_session(port, ("AUTH", "x"), ("PING",)) == ["+OK", "+PONG"],
    )
    return port


def test_redis_password_appendonly_and_restart(offline_images, res):
    network = res.network()
    volume = res.volume("redis")
    name = res.container("redis")
    port = start_redis(res, network, volume, name)

    # without the password: refused; with it: works
    assert redis_session(port, ("PING",))[0].startswith("-NOAUTH")
    assert redis_session(port, ("AUTH", "wrong"))[0].startswith("-WRONGPASS")
    assert redis_session(port, ("AUTH", "x"), ("PING",), ("SET", "k", "v1")) == ["+OK", "+PONG", "+OK"]

    # the roles run redis-cli inside the container
    inside = docker("exec", name, "redis-cli", "-a", "x", "--no-auth-warning", "ping").stdout.strip()
    assert inside == "PONG"
    inside = docker("exec", name, "redis-cli", "ping").stdout.strip()
    assert "NOAUTH" in inside

    # configuration the seed relies on
    conf = docker("exec", name, "redis-cli", "-a", "x", "--no-auth-warning",
                  "config", "get", "*").stdout.split("\n")
    settings = dict(zip(conf[0::2], conf[1::2]))
    assert settings["dir"] == "/data"
    assert settings["appendonly"] == "yes"
    assert settings["protected-mode"] == "no"
    assert settings["daemonize"] == "no"

    # appendonly files are in the /data volume
    listing = docker("exec", name, "sh", "-c", "ls -R /data").stdout
    assert "appendonly" in listing

    # a restart keeps the data (and SIGTERM stops it quickly)
    assert timed_stop(name) < STOP_LIMIT
    docker("start", name)
    port = published_port(name, 6379)
    wait_for("redis after restart", lambda: redis_session(port, ("AUTH", "x"), ("GET", "k")) == ["+OK", "v1"])

    # so does a new container on the same volume
    docker("rm", "-f", name)
    port = start_redis(res, network, volume, name)
    assert redis_session(port, ("AUTH", "x"), ("GET", "k")) == ["+OK", "v1"]


# --------------------------------------------------------------------------- postgres

INIT_SQL = """\
CREATE TABLE init_runs (id serial PRIMARY KEY, at timestamptz DEFAULT now());
INSERT INTO init_runs DEFAULT VALUES;
"""

INIT_SH = """\
#!/bin/bash
set -e
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<-EOSQL
  CREATE TABLE init_sh (note text);
  INSERT INTO init_sh VALUES ('from-sh');
EOSQL
"""


def psql_client(network, host, password, *sql, user="admin", db="appdb"):
    """psql over TCP from a throw-away client container on the test network."""
    args = ["run", "--rm", "--network", network, "-e", f"PGPASSWORD={password}",
            "-e", "PGCONNECT_TIMEOUT=5", POSTGRES_IMAGE,
            "psql", "-h", host, "-U", user, "-d", db, "-v", "ON_ERROR_STOP=1", "-tA"]
    for statement in sql:
        args += ["-c", statement]
    return docker(*args, check=False, timeout=60)


def pg_ready_tcp(name):
    # TCP inside the container: the temporary init server listens on the socket only
    return docker("exec", name, "pg_isready", "-h", "127.0.0.1", "-U", "admin", "-d", "appdb",
                  check=False, timeout=20).returncode == 0


def test_postgres_init_auth_and_restart(offline_images, res, tmp_path):
    network = res.network()
    volume = res.volume("pg")
    name = res.container("pg")
    password = "s3cret-" + res.suffix

    docker(
        "create", "--name", name, "--network", network,
        "-p", "127.0.0.1::5432",
        "-e", f"POSTGRES_PASSWORD={password}",
        "-e", "POSTGRES_USER=admin",
        "-e", "POSTGRES_DB=appdb",
        "-v", f"{volume}:/var/lib/postgresql/data",
        POSTGRES_IMAGE, "-c", "wal_level=logical",
    )
    (tmp_path / "10-init.sql").write_text(INIT_SQL)
    (tmp_path / "20-init.sh").write_text(INIT_SH)
    for f in tmp_path.iterdir():
        f.chmod(0o755)
        docker("cp", str(f), f"{name}:/docker-entrypoint-initdb.d/{f.name}")
    docker("start", name)
    wait_for(f"postgres {name}", lambda: pg_ready_tcp(name))
    published_port(name, 5432)  # published on 127.0.0.1 only

    # pg_isready and psql are on PATH; the server got the extra argument
    assert "accepting connections" in docker("exec", name, "pg_isready", "-U", "admin").stdout
    show = docker("exec", name, "psql", "-U", "admin", "-d", "appdb", "-tAc", "SHOW wal_level").stdout
    assert show.strip() == "logical"
    owner = docker("exec", name, "ps", "-o", "user=", "-C", "postgres").stdout.split()
    assert owner and set(owner) == {"postgres"}

    # login over TCP with the password works; the init scripts ran once
    ok = psql_client(network, name, password,
                     "SELECT count(*) FROM init_runs", "SELECT note FROM init_sh",
                     "SELECT current_setting('listen_addresses')")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split() == ["1", "from-sh", "*"]

    # a wrong password fails (scram-sha-256 for host connections)
    bad = psql_client(network, name, "wrong-password", "SELECT 1")
    assert bad.returncode != 0
    assert "password authentication failed" in bad.stderr

    # the default database of the default user does not exist: POSTGRES_DB was used
    assert psql_client(network, name, password, "SELECT 1", db="admin").returncode != 0

    # write, restart (SIGTERM -> fast shutdown), data kept, no re-initialisation
    assert psql_client(network, name, password,
                       "CREATE TABLE kept (v text)", "INSERT INTO kept VALUES ('v1')").returncode == 0
    assert timed_stop(name) < STOP_LIMIT
    docker("start", name)
    wait_for(f"postgres {name} after restart", lambda: pg_ready_tcp(name))
    again = psql_client(network, name, password,
                        "SELECT v FROM kept", "SELECT count(*) FROM init_runs")
    assert again.returncode == 0, again.stderr
    assert again.stdout.split() == ["v1", "1"]
    logs = docker("logs", name).stdout + docker("logs", name).stderr
    assert "Skipping initialization" in logs
    assert logs.count("PostgreSQL init process complete") == 1


def test_postgres_requires_password(offline_images, res):
    name = res.container("pg-nopw")
    docker("run", "--name", name, POSTGRES_IMAGE, check=False, timeout=60)
    state = docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip()
    assert state != "0"
    logs = docker("logs", name)
    assert "POSTGRES_PASSWORD" in logs.stderr + logs.stdout


# --------------------------------------------------------------------------- nginx

SITE_CONF = """\
server {
    listen 8080;
    location / {
        default_type text/plain;
        return 200 "%s\\n";
    }
}
"""


def http_get(port, path="/"):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return resp.status, resp.read().decode()


def test_nginx_conf_d_test_and_reload(offline_images, res, tmp_path):
    network = res.network()
    name = res.container("nginx")
    docker("create", "--name", name, "--network", network,
           "-p", "127.0.0.1::8080", "-p", "127.0.0.1::80", NGINX_IMAGE)
    conf = tmp_path / "site.conf"
    conf.write_text(SITE_CONF % "first-body")
    conf.chmod(0o644)
    docker("cp", str(conf), f"{name}:/etc/nginx/conf.d/site.conf")
    docker("start", name)
    port = published_port(name, 8080)

    # the official layout: nginx.conf includes conf.d/*.conf, default.conf serves port 80
    main_conf = docker("exec", name, "cat", "/etc/nginx/nginx.conf").stdout
    assert "include /etc/nginx/conf.d/*.conf;" in main_conf
    test = docker("exec", name, "nginx", "-t")
    assert "test is successful" in test.stderr

    assert wait_for("nginx", lambda: http_get(port)) == (200, "first-body\n")
    status, body = http_get(published_port(name, 80))
    assert status == 200 and "nginx" in body

    # logs go to the container's stdout
    assert "GET / HTTP" in docker("logs", name).stdout

    # change the conf.d file and reload in place
    conf.write_text(SITE_CONF % "second-body")
    docker("cp", str(conf), f"{name}:/etc/nginx/conf.d/site.conf")
    docker("exec", name, "nginx", "-t")
    docker("exec", name, "nginx", "-s", "reload")
    assert wait_for("nginx reload", lambda: http_get(port)[1] == "second-body\n")

    # a broken configuration is reported by nginx -t
    docker("exec", name, "sh", "-c", "echo 'server { listen 8081; bogus_directive; }' > /etc/nginx/conf.d/bad.conf")
    assert docker("exec", name, "nginx", "-t", check=False).returncode != 0
    docker("exec", name, "rm", "/etc/nginx/conf.d/bad.conf")

    assert timed_stop(name) < STOP_LIMIT
