# Shared fixtures: a real redis-server on a free 127.0.0.1 port, and the collection on sys.path.
from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import redis

REPO = Path(__file__).resolve().parents[1]
# The collection is importable as ansible_collections.nocobase.multienv through the link that
# ansible.cfg's collections_path names (tools/setup.sh makes it too), so tests use exactly the files
# of this checkout, and two checkouts on one machine never see each other's.
_COLLECTIONS_ROOT = REPO / ".cache" / "collections"
_LINK = _COLLECTIONS_ROOT / "ansible_collections" / "nocobase" / "multienv"
_LINK.parent.mkdir(parents=True, exist_ok=True)
if not _LINK.is_symlink() or _LINK.resolve() != REPO:
    if _LINK.is_symlink() or _LINK.exists():
        _LINK.unlink()
    _LINK.symlink_to(REPO)
sys.path.insert(0, str(_COLLECTIONS_ROOT))
COLLECTIONS_PATH = str(_COLLECTIONS_ROOT)


# The slowest test files, slowest first (durations of a CI run). tools/test.sh runs the suite on two
# pytest-xdist workers, a file to a worker, in collection order: starting with the longest files keeps
# one worker from finishing a long file alone at the end. Other files keep pytest's order.
SLOWEST_FIRST = (
    "tests/e2e/test_swarm_platform.py",
    "tests/e2e/test_platform.py",
    "tests/e2e/test_real_nocobase.py",
    "tests/quality/test_molecule.py",
    "tests/e2e/test_walkthrough.py",
    "tests/e2e/test_upgrade.py",
    "tests/e2e/test_multihost.py",
    "tests/quality/test_sanity.py",
    "tests/e2e/test_artifact.py",
    "tests/e2e/test_swarm.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {path: index for index, path in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A real redis-server process owned by the test session."""

    def __init__(self, password=None, extra_args=()):
        self.password = password
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="nocobase-redis-")
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (tests/setup.sh installs it)")
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self.dir]
        if password:
            args += ["--requirepass", password]
        args += list(extra_args)
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client().ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError("redis-server did not start on port %d" % self.port)
                time.sleep(0.05)

    @property
    def url(self):
        if self.password:
            return "redis://:%s@127.0.0.1:%d/0" % (self.password, self.port)
        return "redis://127.0.0.1:%d/0" % self.port

    def client(self, **kwargs):
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                           decode_responses=True, **kwargs)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer(password="test-" + uuid.uuid4().hex[:12])
    yield server
    server.stop()


@pytest.fixture
def key_prefix(redis_server):
    """A fresh prefix per test: tests share one server but never each other's keys."""
    prefix = "t%s:" % uuid.uuid4().hex[:10]
    yield prefix
    client = redis_server.client()
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def conn(redis_server, key_prefix):
    """The connection options of the control-plane modules, for a fresh prefix."""
    return {"redis_url": redis_server.url, "key_prefix": key_prefix}


@pytest.fixture
def rclient(redis_server):
    return redis_server.client()


@pytest.fixture
def keys(key_prefix):
    from ansible_collections.nocobase.multienv.plugins.module_utils._keyspace import Keyspace

    return Keyspace(key_prefix)


@pytest.fixture
def plane(redis_server, key_prefix):
    """The collection's producer, on its own Redis client, as the modules use it."""
    from helpers import producer  # tests/integration is on pytest's pythonpath

    plane = producer(redis_server.url, key_prefix)
    yield plane
    plane.client.close()


@pytest.fixture
def processes(tmp_path):
    """Processes a test starts (tests/integration/helpers.py), killed at teardown."""
    from helpers import Processes

    procs = Processes(tmp_path)
    yield procs
    procs.close()
