"""The Redis users of a platform (docs/protocol.md, "Access rights") on a real redis-server.

The server gets exactly the arguments the redis role gives it; the consumer runs as its
environment's agent user and the producer as the operator, through a whole create/start/stop/remove
cycle, so a right the protocol needs and the users lack fails here first.
"""
from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
import redis
from helpers import producer, put_app

from ansible_collections.nocobase.multienv.plugins.module_utils._keyspace import ControlPlaneError, Keyspace
from ansible_collections.nocobase.multienv.plugins.module_utils._redis_acl import server_arguments, user_password
from conftest import RedisServer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "roles" / "worker" / "files" / "agent"))
import consumer as agent_consumer  # noqa: E402

PREFIX = "nocobase:"
ADMIN_PASSWORD = "admin-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def acl_server():
    server = RedisServer(password=ADMIN_PASSWORD, extra_args=server_arguments(ADMIN_PASSWORD, PREFIX, ["env_a", "env_b"]))
    yield server
    server.stop()


def connect(server, user):
    return redis.Redis(host="127.0.0.1", port=server.port, username=user,
                       password=user_password(ADMIN_PASSWORD, user), decode_responses=True, socket_timeout=10)


def test_the_users_run_a_whole_command_cycle(acl_server):
    keys = Keyspace(PREFIX)
    plane = producer("redis://operator:%s@127.0.0.1:%d/0" % (user_password(ADMIN_PASSWORD, "operator"), acl_server.port))
    consumer = agent_consumer.Consumer(connect(acl_server, "agent-env_a"), "env_a", PREFIX, consumer_name="a1",
                                       heartbeat_seconds=1, block_ms=50, url="http://env_a.test",
                                       on_action=lambda *args: None)
    consumer.start()
    try:
        put_app(connect(acl_server, "operator"), keys, "crm", ["env_a"])
        for action, wanted in (("create", "initialized"), ("start", "running"), ("stop", "stopped"), ("remove", None)):
            result = plane.enqueue("crm", action, environments=["env_a"])
            assert result["enqueued"] == ["env_a"], result
            consumer.drain(timeout=5)
            raw = acl_server.client().hget(keys.status("crm"), "env_a")
            assert (raw is None) if wanted is None else ('"status":"%s"' % wanted in raw), (action, raw)
        assert not acl_server.client().hlen(keys.pending("env_a"))
    finally:
        consumer.stop()
        plane.client.close()


@pytest.mark.parametrize("what, command", [
    ("another environment's stream", ("XADD", "nocobase:commands:env_b", "*", "action", "remove")),
    ("another environment's pending marks", ("HSET", "nocobase:pending:env_b", "crm:stop", "x")),
    ("another environment's completions", ("DEL", "nocobase:processed:env_b")),
    ("the app records", ("HSET", "nocobase:apps", "crm", "{}")),
    ("a request summary", ("SET", "nocobase:request:r1", "{}")),
    ("a key outside the platform", ("SET", "other:key", "1")),
    ("the configuration", ("CONFIG", "SET", "appendonly", "no")),
    ("the users", ("ACL", "SETUSER", "agent-env_a", "~*")),
    ("flushing", ("FLUSHALL",)),
])
def test_an_agent_user_is_refused(acl_server, what, command):
    with pytest.raises(redis.exceptions.NoPermissionError):
        connect(acl_server, "agent-env_a").execute_command(*command)
        pytest.fail("agent-env_a may write " + what)


def test_the_operator_has_the_platform_keys_and_no_administration(acl_server):
    operator = connect(acl_server, "operator")
    operator.hset("nocobase:apps", "probe", "{}")
    operator.hdel("nocobase:apps", "probe")
    for command in (("CONFIG", "GET", "requirepass"), ("SET", "other:key", "1"), ("FLUSHALL",)):
        with pytest.raises(redis.exceptions.NoPermissionError):
            operator.execute_command(*command)


def test_one_users_password_opens_no_other(acl_server):
    agent_password = user_password(ADMIN_PASSWORD, "agent-env_a")
    for user in ("agent-env_b", "operator", "default"):
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=acl_server.port, username=user, password=agent_password).ping()
    assert "redis_password" not in " ".join(server_arguments(ADMIN_PASSWORD, PREFIX, ["env_a"]))
    assert ADMIN_PASSWORD not in " ".join(server_arguments(ADMIN_PASSWORD, PREFIX, ["env_a"]))


def test_a_hostile_environment_name_makes_no_user():
    with pytest.raises(ControlPlaneError, match="environment"):
        server_arguments(ADMIN_PASSWORD, PREFIX, ["env_a ~* +@all"])
    with pytest.raises(ControlPlaneError, match="key_prefix"):
        server_arguments(ADMIN_PASSWORD, "* +@all", ["env_a"])
