"""Records and stream entries that anything holding a Redis password can write, against the readers
and the producer: nested too deep for Python's parser, too long, or ids that jam an app's commands.
A bad record is skipped with a warning naming it; no reader fails as a whole."""
from __future__ import annotations

import json

import pytest
from helpers import run
from test_modules import failure, warnings_of
from test_playbooks import ansible_playbook

from ansible_collections.nocobase.multienv.plugins.module_utils._keyspace import (
    MAX_RECORD_BYTES,
    MAX_RECORD_DEPTH,
    load_json,
    load_record,
)

# Nested far deeper than Python's recursion limit (json.loads raises RecursionError on it), and
# shorter than the size limit, so that the depth is what refuses it.
DEEP = "[" * 30_000 + "]" * 30_000
DEEP_OBJECT = '{"status":"running","x":' + DEEP + "}"
LONG = json.dumps({"name": "env_l", "url": "http://l", "padding": "x" * MAX_RECORD_BYTES})


@pytest.mark.parametrize("raw, message", [
    (DEEP, "nests deeper than the 32 levels"),
    ("[" * 50_000 + "]" * 50_000, "is 100000 bytes long, over the 65536"),
    ("[" * (MAX_RECORD_DEPTH + 1) + "]" * (MAX_RECORD_DEPTH + 1), "nests deeper than the 32 levels"),
    (LONG, "bytes long, over the 65536"),
    ("{oops", "is not valid JSON"),
])
def test_a_record_out_of_bounds_is_refused_unparsed(raw, message):
    with pytest.raises(ValueError, match=message):
        load_json(raw)


def test_a_record_within_bounds_is_read():
    nested = "[" * MAX_RECORD_DEPTH + "]" * MAX_RECORD_DEPTH
    assert load_json(nested) is not None
    assert load_record(b'{"status": "running"}') == {"status": "running"}
    with pytest.raises(ValueError, match="not a JSON object"):
        load_record("[1]")


@pytest.fixture
def planted(conn, rclient, keys):
    """Two good environments and apps, then records nested 50,000 deep or over the size limit."""
    run("environment", dict(conn, environments=[dict(name="env_a", url="http://a"), dict(name="env_b", url="http://b")]))
    run("app", dict(conn, apps=[dict(name="good", environments=["env_a"]), dict(name="other", environments=["env_b"])]))
    rclient.hset(keys.environments, "env_d", DEEP)
    rclient.hset(keys.environments, "env_l", LONG)
    rclient.hset(keys.apps, "deep", DEEP)
    rclient.hset(keys.status("good"), "env_a", DEEP_OBJECT)
    rclient.hset(keys.status("other"), "env_b", json.dumps({"status": "running", "pad": "y" * MAX_RECORD_BYTES}))


def test_the_modules_skip_deep_and_long_records_with_a_warning(conn, planted):
    envs = run("environment_info", dict(conn))
    assert [env["name"] for env in envs["environments"]] == ["env_a", "env_b"]
    text = warnings_of(envs)
    assert "environment record 'env_d' nests deeper than the 32 levels" in text, text
    assert "environment record 'env_l' is %d bytes long" % len(LONG) in text, text
    apps = run("app_info", dict(conn))
    by_name = {app["name"]: app for app in apps["apps"]}
    assert sorted(by_name) == ["good", "other"]
    assert by_name["good"]["status"] == {"env_a": None} and by_name["other"]["status"] == {"env_b": None}
    text = warnings_of(apps)
    for fragment in ("app record 'deep' nests deeper", "status of app 'good' in environment 'env_a' nests deeper",
                     "status of app 'other' in environment 'env_b' is"):
        assert fragment in text, text


def test_a_status_record_out_of_bounds_decides_nothing_when_a_command_is_queued(conn, planted, rclient, keys):
    # The enqueue script reads the status in Redis (cjson): the deep one counts as no status, so
    # "start" is queued, where a readable "running" would have skipped it.
    result = run("app_command", dict(conn, apps=["good", "other"], command="start"))
    by_app = {entry["app"]: entry for entry in result["results"]}
    assert by_app["good"]["enqueued"] == ["env_a"] and by_app["other"]["enqueued"] == ["env_b"]


def test_the_lookup_skips_deep_records_with_a_warning(redis_server, key_prefix, conn, planted, tmp_path):
    output = tmp_path / "names.json"
    result = ansible_playbook("records_lookup.yml", {"test_redis_url": redis_server.url,
                                                     "test_key_prefix": key_prefix, "test_output": output})
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(output.read_text()) == {"apps": ["good", "other"], "environments": ["env_a", "env_b"]}
    text = " ".join((result.stdout + result.stderr).split())
    assert "app record 'deep' nests deeper than the 32 levels" in text, text
    assert "environment record 'env_d' nests deeper" in text, text


def test_a_request_id_is_checked_with_the_app_suffix_it_is_given(conn, rclient, key_prefix, keys):
    """A 125-character id is valid alone, but not as <id>:crm (129): refused before anything is queued."""
    run("environment", dict(conn, name="env_a", url="http://a"))
    run("app", dict(conn, apps=[dict(name="crm", environments=["env_a"]), dict(name="hr", environments=["env_a"])]))
    message = failure("app_command", dict(conn, apps=["crm", "hr"], command="start", request_id="r" * 125))
    assert "request_id: '%s:crm', the id of app crm's command, must match" % ("r" * 125) in message
    assert rclient.xlen(keys.commands("env_a")) == 0 and not rclient.exists(keys.pending("env_a"))


def test_force_queues_behind_a_pending_mark(conn, rclient, keys):
    run("environment", dict(conn, name="env_a", url="http://a"))
    run("app", dict(conn, name="crm", environments=["env_a"]))
    rclient.hset(keys.pending("env_a"), "crm:start", "lost-request")  # a mark whose entry is gone
    again = run("app_command", dict(conn, app="crm", command="start"))
    assert again["enqueued"] == [] and again["not_queued"] == {"env_a": "queued"}
    forced = run("app_command", dict(conn, app="crm", command="start", force=True))
    assert forced["enqueued"] == ["env_a"]
    assert rclient.hget(keys.pending("env_a"), "crm:start") == forced["request_id"]


# ------------------------------------------------------------------------------------------ one clock


def redis_now_ms(rclient):
    seconds, microseconds = rclient.time()
    return seconds * 1000 + microseconds // 1000


def test_a_heartbeat_from_the_future_is_not_fresh(conn, rclient, keys):
    run("environment", dict(conn, name="env_a", url="http://a"))
    rclient.hset(keys.heartbeats, "env_a", redis_now_ms(rclient) + 75 * 365 * 24 * 3600 * 1000)  # the year 2100
    result = run("environment_info", dict(conn))
    assert result["environments"][0]["available"] is False
    assert result["environments"][0]["lastHeartbeatAt"] is None
    assert "the heartbeat of environment 'env_a' is" in warnings_of(result)
    assert "ahead of Redis's clock" in warnings_of(result)


def test_a_url_longer_than_nginx_takes_is_refused_and_skipped(conn, rclient, keys):
    long_url = "http://a/" + "p" * 4096
    assert "url: a URL of 4105 characters is longer than the 1024 allowed" in failure(
        "environment", dict(conn, name="env_a", url=long_url))
    run("environment", dict(conn, name="env_a", url="http://a"))
    rclient.hset(keys.environments, "env_b", json.dumps({"name": "env_b", "url": long_url}))
    result = run("environment_info", dict(conn))
    assert [env["name"] for env in result["environments"]] == ["env_a"]
    assert "environment record 'env_b': url: a URL of 4105 characters" in warnings_of(result)


# ------------------------------------------------------------------------------- the inventory first


def test_a_record_that_moves_a_known_environment_elsewhere_is_skipped(conn, rclient, keys):
    """env_b's agent could write env_a's record: the proxy reads it with what the inventory says."""
    run("environment", dict(conn, environments=[dict(name="env_a", url="http://a", proxy_url="http://worker-a"),
                                                dict(name="env_b", url="http://b")]))
    run("app", dict(conn, apps=[dict(name="crm", environments=["env_a"]), dict(name="hr", environments=["env_b"])]))
    run("environment", dict(conn, name="env_a", heartbeat=True))
    run("environment", dict(conn, name="env_b", heartbeat=True))
    expected = {"env_a": {"url": "http://a", "proxy_url": "http://worker-a"}, "env_c": {"proxy_url": "http://c"}}
    agreeing = run("app_info", dict(conn, expected_environments=expected))
    assert {app["name"]: app["proxyTarget"]["url"] for app in agreeing["apps"]} == {
        "crm": "http://worker-a", "hr": "http://b"}  # env_b is not in expected_environments: as recorded
    assert not agreeing.get("warnings")

    rclient.hset(keys.environments, "env_a", json.dumps({"name": "env_a", "url": "http://a", "proxyUrl": "http://evil"}))
    moved = run("app_info", dict(conn, expected_environments=expected))
    crm = next(app for app in moved["apps"] if app["name"] == "crm")
    assert crm["proxyTarget"] == {"environment": "env_a", "url": None, "available": False, "registered": False}
    assert ("environment record 'env_a': proxyUrl 'http://evil' is not 'http://worker-a', the one "
            "expected_environments gives") in warnings_of(moved)
    assert "http://evil" not in json.dumps(moved["apps"])


def test_expected_environments_are_checked_naming_the_field(conn):
    assert "expected_environments.env_a.proxy_url: 'http://x;'" in failure(
        "app_info", dict(conn, expected_environments={"env_a": {"proxy_url": "http://x;"}}))
    assert "expected_environments: 'Bad' is not a valid environment name" in failure(
        "environment_info", dict(conn, expected_environments={"Bad": {}}))
