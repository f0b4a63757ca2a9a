"""The modules' small RESP client against a real redis-server."""
from __future__ import annotations

import hashlib

import pytest

from ansible_collections.nocobase.multienv.plugins.module_utils._resp import Client, ConnectionFailed, ReplyError, pairs


@pytest.fixture
def client(redis_server):
    connection = Client("127.0.0.1", redis_server.port, db=0, password=redis_server.password, timeout=5)
    yield connection
    connection.close()


def test_pipeline_types(client, key_prefix):
    key = key_prefix + "h"
    replies = client.pipeline([("HSET", key, "a", "1", "b", "é"), ("HGETALL", key), ("HMGET", key, "a", "zz"),
                               ("GET", key), ("PING",)])
    assert replies[0] == 2
    assert pairs(replies[1]) == {"a": "1", "b": "é"}
    assert replies[2] == ["1", None]
    assert isinstance(replies[3], ReplyError) and replies[3].code == "WRONGTYPE"
    assert replies[4] == "PONG"


def test_watch_conflict_aborts_the_transaction(client, redis_server, key_prefix):
    key = key_prefix + "w"
    client.execute("WATCH", key)
    redis_server.client().set(key, "other writer")
    assert client.transaction([("SET", key, "mine")]) is None
    assert redis_server.client().get(key) == "other writer"
    assert client.transaction([("SET", key, "mine"), ("GET", key)]) == ["OK", "mine"]


def test_script_load_and_evalsha_in_one_pipeline(client, redis_server, key_prefix):
    """How the producer calls its script: no NOSCRIPT round trip, even on a server that never saw it."""
    redis_server.client().script_flush()
    script = "return redis.call('SET', KEYS[1], ARGV[1])"
    sha = hashlib.sha1(script.encode()).hexdigest()
    assert client.pipeline([("SCRIPT", "LOAD", script), ("EVALSHA", sha, 1, key_prefix + "s", "v")]) == [sha, "OK"]
    assert redis_server.client().get(key_prefix + "s") == "v"


def test_wrong_password_and_unreachable(redis_server):
    with pytest.raises(ReplyError):
        Client("127.0.0.1", redis_server.port, password="nope", timeout=5)
    with pytest.raises(ConnectionFailed):
        Client("127.0.0.1", 1, timeout=2)
