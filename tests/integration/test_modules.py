"""The modules against a real redis-server: check mode, apply, apply again, diff, and bad input."""
from __future__ import annotations

import json
import multiprocessing

import pytest
from helpers import ModuleFailed, run

from ansible_collections.nocobase.multienv.plugins.module_utils._keyspace import Keyspace, now_ms
from ansible_collections.nocobase.multienv.plugins.module_utils._resp import Client


@pytest.fixture
def keys(key_prefix):
    return Keyspace(key_prefix)


def snapshot(rclient, key_prefix):
    """Every key of the prefix with its value, to prove a task wrote nothing."""
    state = {}
    for key in sorted(rclient.scan_iter(match=key_prefix + "*", count=1000)):
        kind = rclient.type(key)
        if kind == "hash":
            state[key] = rclient.hgetall(key)
        elif kind == "string":
            state[key] = rclient.get(key)
        elif kind == "stream":
            state[key] = rclient.xrange(key)
        elif kind == "zset":
            state[key] = rclient.zrange(key, 0, -1, withscores=True)
        else:
            state[key] = kind
    return state


def four_steps(rclient, key_prefix, module, args):
    """check mode predicts and writes nothing -> apply -> apply again changes nothing."""
    before = snapshot(rclient, key_prefix)
    predicted = run(module, args, check=True, diff=True)
    assert predicted["changed"] is True
    assert snapshot(rclient, key_prefix) == before
    applied = run(module, args, diff=True)
    assert applied["changed"] is True
    assert applied["diff"] == predicted["diff"]
    again = run(module, args, diff=True)
    assert again["changed"] is False
    assert again["diff"] == {"before": {}, "after": {}}
    return applied


def failure(module, args, **kwargs):
    with pytest.raises(ModuleFailed) as info:
        run(module, args, **kwargs)
    return info.value.result["msg"]


# The nginx injection measured against the first release (issue 8): it rendered and passed nginx -t.
HOSTILE_URL = ('http://worker_a"; } server { listen 80 default_server; location / { return 302 '
               'https://phish.example$request_uri; } } map $host $pwn { default "')


# ------------------------------------------------------------------ environment

def test_environment_four_steps_and_diff_of_changed_fields_only(conn, rclient, key_prefix, keys):
    args = dict(conn, name="env_a", url="http://localhost:15000", proxy_url="http://worker_a")
    applied = four_steps(rclient, key_prefix, "environment", args)
    assert applied["diff"]["before"] == {"state": "absent"}
    assert applied["environment"] == {"name": "env_a", "url": "http://localhost:15000", "proxyUrl": "http://worker_a"}
    assert json.loads(rclient.hget(keys.environments, "env_a")) == applied["environment"]
    assert rclient.get(keys.schema) == "1"
    # the consumer group exists from the start, so a worker that comes later misses nothing
    assert [g["name"] for g in rclient.xinfo_groups(keys.commands("env_a"))] == ["workers"]

    update = dict(conn, name="env_a", app_version="2.0.0")
    changed = four_steps(rclient, key_prefix, "environment", update)
    assert changed["diff"] == {"before": {}, "after": {"appVersion": "2.0.0"}}
    # options not set are not compared: url and proxy_url stay
    assert changed["environment"]["proxyUrl"] == "http://worker_a"

    removed = four_steps(rclient, key_prefix, "environment", dict(conn, name="env_a", state="absent"))
    assert removed["diff"]["after"] == {"state": "absent"}
    assert removed["environment"] == {}
    assert not rclient.exists(keys.commands("env_a"))
    assert rclient.hget(keys.environments, "env_a") is None


def test_environment_list_form_reconciles_many_in_one_transaction(conn, rclient, key_prefix, keys):
    items = [dict(name="env_%d" % i, url="http://worker_%d" % i) for i in range(50)]
    applied = four_steps(rclient, key_prefix, "environment", dict(conn, environments=items))
    assert sorted(applied["diff"]["after"]) == sorted(item["name"] for item in items)
    assert rclient.hlen(keys.environments) == 50

    items[3]["url"] = "http://moved"
    items[7]["state"] = "absent"
    changed = run("environment", dict(conn, environments=items), diff=True)
    assert changed["diff"] == {
        "before": {"env_3": {"url": "http://worker_3"}, "env_7": dict(items[7], state="present")},
        "after": {"env_3": {"url": "http://moved"}, "env_7": {"state": "absent"}},
    }
    assert [r["name"] for r in changed["results"] if r["changed"]] == ["env_3", "env_7"]


def test_environment_heartbeat_makes_it_available(conn, rclient, keys):
    run("environment", dict(conn, name="env_a", url="http://a"), check=False)
    info = run("environment_info", dict(conn))
    assert info["environments"][0]["available"] is False
    assert info["environments"][0]["lastHeartbeatAt"] is None

    run("environment", dict(conn, name="env_a", heartbeat=True), check=True)
    assert rclient.hget(keys.heartbeats, "env_a") is None  # check mode writes nothing
    beat = run("environment", dict(conn, name="env_a", heartbeat=True))
    assert beat["changed"] is False  # liveness, not configuration
    env = run("environment_info", dict(conn, names=["env_a", "env_zz"]))
    assert env["missing"] == ["env_zz"]
    assert env["environments"][0]["available"] is True
    assert env["environments"][0]["heartbeatAge"] < 5


def test_environment_info_derives_availability_from_the_window(conn, rclient, keys):
    run("environment", dict(conn, environments=[dict(name="fresh", url="http://f"), dict(name="stale", url="http://s")]))
    rclient.hset(keys.heartbeats, mapping={"fresh": now_ms() - 100_000, "stale": now_ms() - 400_000})
    info = {e["name"]: e for e in run("environment_info", dict(conn))["environments"]}
    assert info["fresh"]["available"] is True
    assert info["stale"]["available"] is False  # older than the default 360 s
    tight = {e["name"]: e for e in run("environment_info", dict(conn, stale_after=60))["environments"]}
    assert tight["fresh"]["available"] is False


@pytest.mark.parametrize(
    "args, field",
    [
        (dict(name="Env_A", url="http://a"), "name: 'Env_A'"),
        (dict(name="env a", url="http://a"), "name: 'env a'"),
        (dict(name="env_a\n", url="http://a"), "name: 'env_a\\n' is not a valid environment name"),
        (dict(name="default", url="http://a"), "name: 'default' is reserved (a word of nginx's configuration)"),
        (dict(name="include", url="http://a"), "name: 'include' is reserved"),
        (dict(name="env_a", url="worker_a:80"), "url: 'worker_a:80' must be an absolute"),
        (dict(name="env_a", url="/relative"), "url: '/relative' must be an absolute"),
        (dict(name="env_a", url="http://a", proxy_url="ftp://a"), "proxy_url: 'ftp://a'"),
        (dict(name="env_a", url="http://a:99999"), "url: 'http://a:99999' is not a valid URL"),
        (dict(name="env_a", url="http://$http_x_target"), "url: 'http://$http_x_target' must be an absolute"),
        (dict(name="env_a", url="http://a", proxy_url='http://w/";}'), "proxy_url: 'http://w/\";}' must be"),
        (dict(name="env_a", url="http://w/\n}"), "url: 'http://w/\\n}' must be"),
        (dict(name="env_a", url="http://w /x"), "url: 'http://w /x' must be"),
        (dict(name="env_a", url="http://a", proxy_url=HOSTILE_URL), "proxy_url: %r must be" % HOSTILE_URL),
        (dict(name="env_a", url="http://a{b}"), "url: 'http://a{b}' must be"),
        (dict(name="env_a", url="http://a", app_version="2.2'; drop"), "app_version: \"2.2'; drop\" is not a version"),
        (dict(name="env_a"), "url is required to register the new environment 'env_a'"),
        (dict(environments=[dict(name="ok", url="http://a"), dict(name="ok", url="http://b")]), "environments[1].name: 'ok' is listed twice"),
        (dict(environments=[dict(name="ok", url="http://a"), dict(name="b", url="b")]), "environments[1].url: 'b'"),
    ],
)
def test_environment_bad_input_names_the_field_and_writes_nothing(conn, rclient, key_prefix, args, field):
    assert field in failure("environment", dict(conn, **args))
    assert snapshot(rclient, key_prefix) == {}


# ------------------------------------------------------------------ app

@pytest.fixture
def two_envs(conn):
    run("environment", dict(conn, environments=[dict(name="env_a", url="http://a"), dict(name="env_b", url="http://b")]))


def test_app_four_steps_and_update(conn, rclient, key_prefix, keys, two_envs):
    args = dict(conn, name="crm", title="CRM", environments=["env_a", "env_b"], proxy_environment="env_b",
                options={"dbConnType": "new_database", "database": {"database": "crm"}})
    applied = four_steps(rclient, key_prefix, "app", args)
    stored = json.loads(rclient.hget(keys.apps, "crm"))
    assert stored == applied["app"] == {
        "name": "crm", "title": "CRM", "environments": ["env_a", "env_b"], "proxyEnvironment": "env_b",
        "options": {"dbConnType": "new_database", "database": {"database": "crm"}},
    }
    retitled = four_steps(rclient, key_prefix, "app", dict(conn, name="crm", title="Customers"))
    assert retitled["diff"] == {"before": {"title": "CRM"}, "after": {"title": "Customers"}}

    info = run("app_info", dict(conn))
    assert info["apps"][0]["proxyTarget"] == {"environment": "env_b", "url": "http://b", "available": False, "registered": True}

    rclient.hset(keys.status("crm"), "env_a", json.dumps({"status": "stopped", "updatedAt": 1}))
    four_steps(rclient, key_prefix, "app", dict(conn, name="crm", state="absent"))
    assert not rclient.exists(keys.status("crm"))


def test_app_list_form_is_all_or_nothing(conn, rclient, key_prefix, keys, two_envs):
    apps = [dict(name="app_%d" % i, environments=["env_a"]) for i in range(100)]
    four_steps(rclient, key_prefix, "app", dict(conn, apps=apps))
    assert rclient.hlen(keys.apps) == 100
    apps.append(dict(name="late", environments=["env_missing"]))
    apps[0]["title"] = "would change"
    before = snapshot(rclient, key_prefix)
    msg = failure("app", dict(conn, apps=apps))
    assert "apps[100].environments: not registered: env_missing" in msg
    assert snapshot(rclient, key_prefix) == before


@pytest.mark.parametrize(
    "args, field",
    [
        (dict(name="main", environments=["env_a"]), "name: 'main' is reserved"),
        (dict(name="Bad-Name", environments=["env_a"]), "name: 'Bad-Name' is not a valid app name"),
        (dict(name="crm\n", environments=["env_a"]), "name: 'crm\\n' is not a valid app name"),
        (dict(name="default", environments=["env_a"]), "name: 'default' is reserved (a word of nginx's configuration)"),
        (dict(name="include", environments=["env_a"]), "name: 'include' is reserved"),
        (dict(name="hostnames", environments=["env_a"]), "name: 'hostnames' is reserved"),
        (dict(name="volatile", environments=["env_a"]), "name: 'volatile' is reserved"),
        (dict(name="crm", environments=["env_a", "env_x", "env_y"]), "environments: not registered: env_x, env_y"),
        (dict(name="crm", environments=["env_a"], proxy_environment="env_b"), "proxy_environment: 'env_b' is not one of"),
        (dict(name="crm"), "environments must name at least one environment"),
        (dict(name="crm", environments=["env_a", "env_a"]), "environments lists an environment twice"),
        (dict(name="crm", environments=["env_a"], options={"dbConnType": "copy"}), "options.dbConnType: 'copy'"),
        (dict(name="crm", environments=["env_a"], cname="crm.example.com;"), "cname: 'crm.example.com;' is not a DNS name"),
        (dict(name="crm", environments=["env_a"], title="CRM\ninclude /etc/passwd;"), "title: must be one line"),
    ],
)
def test_app_bad_input_names_the_field_and_writes_nothing(conn, rclient, key_prefix, two_envs, args, field):
    before = snapshot(rclient, key_prefix)
    assert field in failure("app", dict(conn, **args))
    assert snapshot(rclient, key_prefix) == before


def test_app_may_name_unregistered_environments_when_asked(conn, rclient, keys):
    run("app", dict(conn, name="crm", environments=["later"], require_registered_environments=False))
    assert json.loads(rclient.hget(keys.apps, "crm"))["environments"] == ["later"]


# ------------------------------------------------------------------ app_command

@pytest.fixture
def crm(conn, two_envs):
    run("app", dict(conn, name="crm", environments=["env_a", "env_b"]))


def test_app_command_check_apply_again(conn, rclient, key_prefix, keys, crm):
    args = dict(conn, app="crm", command="start")
    before = snapshot(rclient, key_prefix)
    predicted = run("app_command", args, check=True, diff=True)
    assert predicted["changed"] is True and predicted["enqueued"] == ["env_a", "env_b"]
    assert snapshot(rclient, key_prefix) == before
    applied = run("app_command", args, diff=True)
    assert applied["enqueued"] == ["env_a", "env_b"]
    assert applied["diff"] == {"before": {"env_a": "absent", "env_b": "absent"},
                               "after": {"env_a": "start queued", "env_b": "start queued"}}
    entry = rclient.xrange(keys.commands("env_b"))[0][1]
    assert entry["requestId"] == applied["request_id"]
    assert json.loads(entry["environments"]) == ["env_a", "env_b"]
    again = run("app_command", args, diff=True)
    assert again["changed"] is False and again["not_queued"] == {"env_a": "queued", "env_b": "queued"}
    forced = run("app_command", dict(args, force=True))
    assert forced["enqueued"] == ["env_a", "env_b"]  # forced: queued behind the one still queued
    assert rclient.xlen(keys.commands("env_a")) == 2
    assert rclient.hget(keys.pending("env_a"), "crm:start") == forced["request_id"]


def test_app_command_skips_what_is_already_done(conn, rclient, keys, crm):
    rclient.hset(keys.status("crm"), "env_a", json.dumps({"status": "running", "updatedAt": 1}))
    result = run("app_command", dict(conn, app="crm", command="start"))
    assert result["enqueued"] == ["env_b"] and result["not_queued"] == {"env_a": "running"}
    stop = run("app_command", dict(conn, app="crm", command="stop"))
    assert stop["enqueued"] == ["env_a"] and stop["not_queued"] == {"env_b": "not started"}
    forced = run("app_command", dict(conn, app="crm", command="start", environments=["env_a"], force=True))
    assert forced["enqueued"] == ["env_a"]


def test_app_command_request_id_makes_a_retry_safe(conn, rclient, keys, crm):
    args = dict(conn, app="crm", command="start", environments=["env_b"], request_id="deploy-42")
    first = run("app_command", args)
    assert first["changed"] is True and first["request_id"] == "deploy-42"
    rclient.delete(keys.pending("env_b"))  # as if a worker had already taken it
    retry = run("app_command", args)
    assert retry["changed"] is False and retry["duplicate"] is True
    assert rclient.xlen(keys.commands("env_b")) == 1


@pytest.mark.parametrize(
    "args, field",
    [
        (dict(app="nope", command="start"), "app: not registered: nope"),
        (dict(apps=["crm", "nope", "gone"], command="start"), "apps: not registered: nope, gone"),
        (dict(apps=["crm", "crm"], command="start"), "apps lists an app twice"),
        (dict(app="crm", apps=["crm"], command="start"), "mutually exclusive"),
        (dict(app="main", command="start"), "app: 'main' is reserved"),
        (dict(app="crm", command="start", environments=["env_c"]), "environments: env_c not among the environments of app 'crm'"),
        (dict(app="crm", command="start", request_id="has space"), "request_id: 'has space'"),
        (dict(app="crm", command="launch"), "command"),
    ],
)
def test_app_command_bad_input(conn, rclient, key_prefix, crm, args, field):
    before = snapshot(rclient, key_prefix)
    assert field in failure("app_command", dict(conn, **args))
    assert snapshot(rclient, key_prefix) == before


def test_app_command_list_form(conn, rclient, key_prefix, keys, crm):
    run("app", dict(conn, apps=[dict(name="app_%d" % i, environments=["env_b"]) for i in range(30)]))
    names = ["crm"] + ["app_%d" % i for i in range(30)]
    rclient.hset(keys.status("app_3"), "env_b", json.dumps({"status": "running", "updatedAt": 1}))
    args = dict(conn, apps=names, command="start", request_id="deploy-7")
    before = snapshot(rclient, key_prefix)
    predicted = run("app_command", args, check=True, diff=True)
    assert snapshot(rclient, key_prefix) == before
    applied = run("app_command", args, diff=True)
    assert applied["changed"] is True and applied["diff"] == predicted["diff"]
    assert applied["diff"]["after"]["crm"] == {"env_a": "start queued", "env_b": "start queued"}
    assert "app_3" not in applied["diff"]["after"]
    by_app = {entry["app"]: entry for entry in applied["results"]}
    assert by_app["crm"]["request_id"] == "deploy-7:crm"
    assert by_app["app_3"]["not_queued"] == {"env_b": "running"}
    assert rclient.xlen(keys.commands("env_b")) == 30  # crm and 29 apps; app_3 runs already
    again = run("app_command", args, diff=True)
    assert again["changed"] is False and all(entry["duplicate"] for entry in again["results"] if entry["app"] != "app_3")


def _race(url, prefix, barrier, results):
    barrier.wait(timeout=30)
    results.put(run("app_command", dict(redis_url=url, key_prefix=prefix, app="crm", command="start"))["enqueued"])


def test_app_command_two_racing_processes_queue_one_command(conn, rclient, keys, crm):
    context = multiprocessing.get_context("fork")
    for _round in range(5):
        rclient.delete(keys.commands("env_a"), keys.commands("env_b"), keys.pending("env_a"), keys.pending("env_b"))
        barrier, results = context.Barrier(2), context.Queue()
        racers = [context.Process(target=_race, args=(conn["redis_url"], conn["key_prefix"], barrier, results))
                  for _racer in range(2)]
        for racer in racers:
            racer.start()
        outcomes = [results.get(timeout=60) for _racer in racers]
        for racer in racers:
            racer.join(timeout=30)
        assert sorted(map(len, outcomes)) == [0, 2]
        assert rclient.xlen(keys.commands("env_a")) == 1
        assert rclient.xlen(keys.commands("env_b")) == 1


# ------------------------------------------------------------------ connection and schema

def test_unreachable_redis_names_the_url_without_password(conn):
    msg = failure("environment_info", dict(conn, redis_url="redis://:s3cret@127.0.0.1:1/0", connect_timeout=2))
    assert "cannot reach Redis at 127.0.0.1:1 (database 0) (redis_url)" in msg
    assert "s3cret" not in msg


def test_wrong_password_is_refused_clearly(conn, redis_server):
    url = "redis://:wrong@127.0.0.1:%d/0" % redis_server.port
    msg = failure("environment", dict(conn, redis_url=url, name="env_a", url="http://a"))
    assert "rejected the user name or password given in redis_url" in msg
    assert "wrong" not in msg


def test_missing_password_is_named(conn, redis_server):
    msg = failure("environment_info", dict(conn, redis_url="redis://127.0.0.1:%d/0" % redis_server.port))
    assert "needs a password" in msg


@pytest.mark.parametrize("url, text", [
    ("http://127.0.0.1:6379/0", "redis_url must start with redis:// or rediss://"),
    ("redis:///0", "redis_url has no host name"),
    ("redis://127.0.0.1:6379/zero", "redis_url must end in a database number"),
    ("redis://127.0.0.1:port/0", "redis_url is malformed"),
])
def test_malformed_url(conn, url, text):
    assert text in failure("environment_info", dict(conn, redis_url=url))


def test_password_never_appears_in_results(conn, redis_server):
    result = run("environment", dict(conn, name="env_a", url="http://a"), diff=True)
    assert redis_server.password not in json.dumps(result)


def test_newer_schema_is_refused_and_nothing_written(conn, rclient, key_prefix, keys, crm):
    rclient.set(keys.schema, 2)
    before = snapshot(rclient, key_prefix)
    for module, args in [
        ("environment", dict(name="env_c", url="http://c")),
        ("app", dict(name="other", environments=["env_a"])),
        ("app_command", dict(app="crm", command="start")),
        ("environment_info", {}),
        ("app_info", {}),
    ]:
        assert "schema version 2" in failure(module, dict(conn, **args)), module
    assert snapshot(rclient, key_prefix) == before


def count_round_trips(monkeypatch, task):
    """Run `task` counting the module's round trips to Redis (each pipeline is one)."""
    trips = []
    send = Client.pipeline

    def counted(self, commands):
        trips.append(len(commands))
        return send(self, commands)

    monkeypatch.setattr(Client, "pipeline", counted)
    task()
    monkeypatch.setattr(Client, "pipeline", send)
    return len(trips)


@pytest.mark.parametrize("module, items", [
    ("environment", lambda n, o: dict(environments=[dict(name="env_%d" % (o + i), url="http://w") for i in range(n)])),
    ("app", lambda n, o: dict(apps=[dict(name="app_%d" % (o + i), environments=["env_a"]) for i in range(n)])),
    ("app_command", lambda n, o: dict(apps=["app_%d" % (o + i) for i in range(n)], command="start")),
    ("app_info", lambda n, o: dict(names=["app_%d" % (o + i) for i in range(n)])),
])
def test_list_forms_cost_a_fixed_number_of_round_trips(conn, monkeypatch, module, items):
    run("environment", dict(conn, name="env_a", url="http://a"))
    run("app", dict(conn, apps=[dict(name="app_%d" % i, environments=["env_a"]) for i in range(1600)]))
    small = count_round_trips(monkeypatch, lambda: run(module, dict(conn, **items(5, 0))))
    large = count_round_trips(monkeypatch, lambda: run(module, dict(conn, **items(500, 1000))))
    assert small == large <= 6


@pytest.mark.parametrize("prefix", ["", "nocobase", "a:b:", "no space:", "nocobase:\n", "x" * 70 + ":"])
def test_a_key_prefix_that_could_overlap_another_platform_is_refused(redis_server, rclient, prefix):
    message = failure("environment_info", dict(redis_url=redis_server.url, key_prefix=prefix))
    assert "key_prefix: %r must be one segment" % prefix in message


def warnings_of(result):
    """The module's warnings as one text (ansible-core 2.19 returns them as structured events)."""
    return "\n".join(w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings", []))


def test_readers_skip_untrusted_records_with_a_warning_naming_them(conn, rclient, keys):
    """Records written straight into Redis (every node of the plugin runtime holds its password)."""
    run("environment", dict(conn, environments=[dict(name="env_a", url="http://a"), dict(name="env_b", url="http://b")]))
    run("app", dict(conn, apps=[dict(name="good", environments=["env_a"]), dict(name="other", environments=["env_b"])]))
    rclient.hset(keys.environments, "env_b", json.dumps({"name": "env_b", "url": "http://b", "proxyUrl": HOSTILE_URL}))
    rclient.hset(keys.environments, "env_c", "{not json")
    rclient.hset(keys.environments, "env_d", json.dumps({"name": "env_x", "url": "http://d"}))
    rclient.hset(keys.heartbeats, "env_a", "soon")
    rclient.hset(keys.apps, "evil", json.dumps({"name": "evil", "environments": ["env_a"], "title": "x\ninclude /etc/x;"}))
    rclient.hset(keys.apps, "bytes", b"\xff\xfe{")
    rclient.hset(keys.apps, "wrong", json.dumps({"name": "wrong", "environments": "env_a"}))
    rclient.hset(keys.status("good"), "env_a", json.dumps({"status": "pwned", "requestId": "x", "updatedAt": 1}))

    envs = run("environment_info", dict(conn))
    assert [e["name"] for e in envs["environments"]] == ["env_a"]
    assert envs["environments"][0]["available"] is False  # its heartbeat is not a number
    text = warnings_of(envs)
    for fragment in ("environment record 'env_b': proxyUrl:", "environment record 'env_c' is not valid JSON",
                     "environment record 'env_d': name: 'env_x' is not the record's key", "the heartbeat 'soon' of environment 'env_a'"):
        assert fragment in text, text

    apps = run("app_info", dict(conn))
    assert sorted(a["name"] for a in apps["apps"]) == ["good", "other"]
    by_name = {a["name"]: a for a in apps["apps"]}
    assert by_name["good"]["status"] == {"env_a": None}
    assert by_name["other"]["proxyTarget"] == {"environment": "env_b", "url": None, "available": False,
                                               "registered": False}  # its environment was not trusted
    text = warnings_of(apps)
    for fragment in ("app record 'evil': title:", "app record 'bytes' is not valid JSON",
                     "app record 'wrong': environments: must be a list", "in environment 'env_a', 'pwned', is not one of"):
        assert fragment in text, text
    assert HOSTILE_URL not in json.dumps(apps["apps"])


def test_a_key_of_the_wrong_type_fails_naming_it_and_nothing_is_half_written(conn, rclient, keys, two_envs):
    # An environment record is not written when its stream key holds something else.
    rclient.set(keys.commands("env_c"), "not a stream")
    message = failure("environment", dict(conn, name="env_c", url="http://c"))
    assert "%s holds a string, not a stream; nothing was written" % keys.commands("env_c") in message
    assert not rclient.hexists(keys.environments, "env_c")
    # A list-form command: the app whose key is corrupt is named, the others are reported queued.
    run("app", dict(conn, apps=[dict(name="one", environments=["env_a", "env_b"]), dict(name="two", environments=["env_a"])]))
    rclient.set(keys.commands("env_b"), "corrupt")
    message = failure("app_command", dict(conn, apps=["one", "two"], command="start"))
    assert "app 'one': WRONGTYPE %s holds a string, not a stream (nothing queued for it)" % keys.commands("env_b") in message
    assert "queued for the others: two (env_a)" in message
    assert rclient.xlen(keys.commands("env_a")) == 1  # two's start only: one's env_a entry was never written
    assert rclient.hkeys(keys.pending("env_a")) == ["two:start"]
