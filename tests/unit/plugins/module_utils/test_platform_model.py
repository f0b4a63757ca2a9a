"""The platform model and its preflight (plugins/module_utils/_platform.py), on plain data."""
from __future__ import annotations

import copy

import pytest

from ansible_collections.nocobase.multienv.plugins.module_utils._platform import build, preflight, secret_errors

SETTINGS = {
    "nocobase_platform": "nocobase", "nocobase_network": "nocobase", "nocobase_backend_network": "nocobase-backend",
    "nocobase_container_prefix": "nocobase", "nocobase_public_hostname": "localhost",
    "nocobase_redis_published_port": 16379, "nocobase_db_user": "nocobase", "nocobase_key_prefix": "nocobase:",
    "nocobase_image_pull": "missing", "nocobase_extra_env": {}, "nocobase_redis_host": "nocobase-redis",
    "nocobase_postgres_host": "nocobase-postgres", "nocobase_control_redis_url": "",
    "nocobase_root_email": "root@example.com", "nocobase_root_username": "root",
    "nocobase_agent_image": "nocobase-multienv/agent", "nocobase_redis_port": 6379, "nocobase_postgres_port": 5432,
    "nocobase_control_redis_host": "",
}
GROUPS = {"nocobase_redis": ["redis"], "nocobase_postgres": ["postgres"], "nocobase_supervisor": ["supervisor"],
          "nocobase_workers": ["worker_a", "worker_b"], "nocobase_proxy": ["proxy"]}
LOCAL = {"ansible_connection": "local"}
WORKER = {"worker_state": "present", "worker_container_port": 80, "worker_extra_env": {}, "worker_remove_volumes": False}
HOSTS = {
    "redis": dict(LOCAL, redis_image="redis:7"), "postgres": dict(LOCAL, postgres_published_port=None, postgres_image="postgres:16"),
    "proxy": dict(LOCAL, proxy_config_dir="/etc/nocobase-multienv/nocobase/proxy"),
    "supervisor": dict(LOCAL, supervisor_database="nocobase_supervisor", supervisor_published_port=14000,
                       supervisor_container_port=80, supervisor_extra_env={}),
    "worker_a": dict(LOCAL, **WORKER, worker_image="nocobase/nocobase:2.2.15", worker_environment="env_a", worker_database="nocobase_worker_a",
                     worker_published_port=15000),
    "worker_b": dict(LOCAL, **dict(WORKER, worker_container_port=13000), worker_environment="env_b",
                     worker_database="nocobase_worker_b", worker_published_port=15001),
}


def model_and_errors(settings=None, hosts=None, groups=None):
    settings = dict(SETTINGS, **(settings or {}))
    all_hosts = copy.deepcopy(HOSTS)
    for host, variables in (hosts or {}).items():
        all_hosts.setdefault(host, dict(LOCAL, **WORKER)).update(variables)
    model = build(settings, groups or GROUPS, all_hosts)
    return model, preflight(settings, model)


def test_the_model_derives_urls_containers_and_records():
    model, errors = model_and_errors()
    assert errors == []
    env_a, env_b = model["workers"]
    assert env_a["url"] == "http://localhost:15000"
    assert env_a["proxy_url"] == "http://nocobase-worker-env_a"  # port 80 is left out
    assert env_b["proxy_url"] == "http://nocobase-worker-env_b:13000"
    assert env_a["record"] == {"name": "env_a", "url": "http://localhost:15000", "proxy_url": "http://nocobase-worker-env_a"}
    assert (env_a["container"], env_a["agent_container"], env_a["volume"]) == (
        "nocobase-worker-env_a", "nocobase-agent-env_a", "nocobase-worker-env_a-storage")
    assert [node["container"] for node in model["nodes"]] == [
        "nocobase-supervisor", "nocobase-worker-env_a", "nocobase-worker-env_b"]
    assert set(model["endpoints"].values()) == {"localhost"}
    assert model["redis"]["container"] == "nocobase-redis"
    assert model["proxy"] == {"hosts": ["proxy"], "config_dir": "/etc/nocobase-multienv/nocobase/proxy",
                              "container": "nocobase-proxy"}


@pytest.mark.parametrize("value, remove", [(False, False), ("false", False), ("no", False), (None, False),
                                           (True, True), ("true", True), ("yes", True)])
def test_remove_volumes_takes_ansible_booleans(value, remove):
    """An INI inventory or -e gives strings: "false" must never mean delete the data."""
    model, _errors = model_and_errors(hosts={"worker_b": {"worker_remove_volumes": value}})
    assert model["workers"][1]["remove_volumes"] is remove


def test_absent_workers_are_not_nodes_and_need_no_url():
    model, errors = model_and_errors(hosts={"worker_b": {"worker_state": "absent", "worker_published_port": None}})
    assert errors == []
    assert [node["host"] for node in model["nodes"]] == ["supervisor", "worker_a"]


def test_the_docker_endpoint_of_a_host():
    model, _errors = model_and_errors(hosts={
        "worker_a": {"ansible_connection": "ssh", "ansible_host": "10.0.0.3"},
        "worker_b": {"nocobase_docker_endpoint": "engine-b", "worker_proxy_url": "http://10.0.0.4:15001"}})
    assert model["endpoints"]["worker_a"] == "10.0.0.3"
    assert model["endpoints"]["worker_b"] == "engine-b"


@pytest.mark.parametrize("settings, hosts, expected", [
    ({}, {"worker_b": {"worker_environment": "env_a"}},
     "worker_environment 'env_a' of worker_b is also the environment of worker_a"),
    ({}, {"worker_b": {"worker_environment": "include"}}, "worker_environment 'include' of worker_b is not a valid"),
    ({}, {"worker_b": {"worker_environment": None}}, "worker_environment of worker_b is not set"),
    ({}, {"worker_b": {"worker_published_port": 15000}}, "worker_published_port of worker_b publishes port 15000 on localhost"),
    ({}, {"worker_b": {"worker_published_port": "http"}}, "worker_published_port 'http' of worker_b is not a port number"),
    ({}, {"worker_b": {"worker_published_port": 70000}}, "worker_published_port 70000 of worker_b is not a port number"),
    ({}, {"worker_b": {"worker_url": "ftp://x"}}, "worker_url 'ftp://x' of worker_b is not an absolute"),
    ({}, {"worker_b": {"worker_database": "nocobase_supervisor"}},
     "database 'nocobase_supervisor' is used by supervisor_database of supervisor and worker_database of worker_b"),
    ({}, {"worker_b": {"worker_database": "x; DROP"}}, "worker_database 'x; DROP' of worker_b is not a valid database name"),
    ({}, {"worker_b": {"worker_state": "gone"}}, "worker_state 'gone' of worker_b must be present or absent"),
    ({}, {"worker_b": {"ansible_connection": "ssh", "ansible_host": "10.0.0.4", "worker_published_port": None,
                       "worker_url": "http://b.example:15001"}},
     "worker_proxy_url of worker_b must be set: the worker runs on another Docker host (10.0.0.4)"),
    ({}, {"worker_b": {"ansible_connection": "ssh", "ansible_host": "10.0.0.4", "worker_proxy_url": "http://10.0.0.4:15001"}},
     "Redis is published on 127.0.0.1 of redis only, but some NocoBase nodes run on other Docker hosts"),
    ({}, {"worker_a": {"worker_extra_env": {"DB_PASSWORD": "x"}}}, "worker_extra_env of worker_a sets 'DB_PASSWORD'"),
    ({}, {"worker_a": {"worker_extra_env": {"APP_COMMAND_ADPATER": "redis"}}}, "has the misspelt key 'APP_COMMAND_ADPATER'"),
    ({}, {"worker_a": {"worker_extra_env": ["A=1"]}}, "worker_extra_env of worker_a must be a dictionary"),
    ({"nocobase_platform": "Noco Base"}, {}, "nocobase_platform 'Noco Base' is not a valid platform name"),
    ({"nocobase_backend_network": "-x"}, {}, "nocobase_backend_network '-x' is not a valid Docker name"),
    ({"nocobase_db_user": "NocoBase"}, {}, "nocobase_db_user 'NocoBase' is not a valid PostgreSQL role name"),
    ({"nocobase_key_prefix": "a:b:"}, {}, "nocobase_key_prefix 'a:b:' must be one segment"),
    ({"nocobase_image_pull": "sometimes"}, {}, "nocobase_image_pull must be one of never, missing, always"),
    ({"nocobase_redis_published_port": 14000}, {}, "nocobase_redis_published_port publishes port 14000 on localhost"),
    ({"nocobase_redis_published_port": None}, {}, "nocobase_control_redis_url is not set and Redis is not published"),
    ({"nocobase_root_email": "root"}, {}, "nocobase_root_email 'root' is not an email address"),
    ({"nocobase_root_username": "root user"}, {}, "nocobase_root_username 'root user' must be 1 to 50"),
])
def test_preflight_names_the_variable_and_the_host(settings, hosts, expected):
    _model, errors = model_and_errors(settings, hosts)
    assert any(expected in error for error in errors), errors


def test_two_supervisors_are_refused():
    groups = dict(GROUPS, nocobase_supervisor=["supervisor", "supervisor_2"])
    _model, errors = model_and_errors(hosts={"supervisor_2": dict(HOSTS["supervisor"], supervisor_published_port=14001)},
                                      groups=groups)
    assert any("group nocobase_supervisor has 2 hosts (supervisor, supervisor_2)" in error for error in errors)


GOOD_SECRETS = {"app_key": "k" * 40, "aes_secret_key": "0123456789abcdef" * 4, "redis_password": "redis-password-1",
                "postgres_password": "postgres-pw", "db_password": "db-password", "root_password": "root-password"}


@pytest.mark.parametrize("name, value, expected", [
    ("aes_secret_key", "abc", "nocobase_aes_secret_key must be exactly 64 hexadecimal"),
    ("aes_secret_key", "g" * 64, "nocobase_aes_secret_key must be exactly 64 hexadecimal"),
    ("app_key", "your-secret-key", "nocobase_app_key must be a secret of at least 16"),
    ("redis_password", "short", "nocobase_redis_password must be at least 12 characters"),
    ("redis_password", "has space in it", "nocobase_redis_password must be at least 12 characters"),
    ("root_password", "admin123", "publicly known first-install password"),
    ("db_password", "two\nlines", "nocobase_db_password must be at least 8 characters, on one line"),
    ("postgres_password", None, "nocobase_postgres_password is not set and nocobase_secrets_generate is false"),
])
def test_bad_secrets_are_named_never_shown(name, value, expected):
    errors = secret_errors(dict(GOOD_SECRETS, **{name: value}))
    assert any(expected in error for error in errors), errors
    if value:
        assert all(value not in error for error in errors)


def test_good_and_missing_but_generated_secrets_pass():
    assert secret_errors(GOOD_SECRETS) == []
    assert secret_errors(dict(GOOD_SECRETS, db_password=None), missing_ok=True) == []


def test_the_model_lists_every_image_the_platform_runs():
    model, dummy = model_and_errors(hosts={"worker_b": {"worker_image": "nocobase/nocobase:2.3.0"},
                                           "proxy": {"proxy_image": ""}})  # not set: not listed
    assert model["images"] == ["nocobase-multienv/agent", "nocobase/nocobase:2.2.15", "nocobase/nocobase:2.3.0",
                               "postgres:16", "redis:7"]


# ---------------------------------------------------------------- several Docker hosts (issue 11)

REMOTE = {"redis": "10.0.0.10", "postgres": "10.0.0.10", "supervisor": "10.0.0.11", "proxy": "10.0.0.11",
          "worker_a": "10.0.0.12", "worker_b": "10.0.0.13"}


def remote(**more):
    """inventories/multihost's layout: every host over SSH at its ansible_host, more variables per host."""
    hosts = {host: {"ansible_connection": "ssh", "ansible_host": address} for host, address in REMOTE.items()}
    hosts["postgres"]["postgres_published_port"] = 5432
    for host, variables in more.items():
        hosts[host].update(variables)
    return hosts


def test_across_hosts_every_address_is_one_the_other_hosts_reach():
    model, errors = model_and_errors(hosts=remote())
    assert errors == []
    assert model["multihost"] is True
    # Ports are published on each host's own address, never on every interface.
    assert model["published_addresses"] == REMOTE
    env_a, env_b = model["workers"]
    assert (env_a["url"], env_a["proxy_url"]) == ("http://10.0.0.12:15000", "http://10.0.0.12:15000")
    assert env_b["record"] == {"name": "env_b", "url": "http://10.0.0.13:15001", "proxy_url": "http://10.0.0.13:15001"}
    redis, postgres = model["redis"], model["postgres"]
    assert (redis["published_address"], redis["node_host"], redis["node_port"], redis["control_host"]) == (
        "10.0.0.10", "10.0.0.10", 16379, "10.0.0.10")
    assert (postgres["published_address"], postgres["node_host"], postgres["node_port"]) == ("10.0.0.10", "10.0.0.10", 5432)


def test_an_advertise_address_or_a_published_address_overrides_the_derived_ones():
    model, errors = model_and_errors(
        {"nocobase_public_hostname": "apps.example.com", "nocobase_control_redis_host": "redis.example.internal"},
        remote(redis={"nocobase_advertise_address": "192.168.5.10", "nocobase_published_address": "0.0.0.0"},
               postgres={"nocobase_advertise_address": "192.168.5.10"},
               worker_a={"ansible_host": "dock1.example.internal", "nocobase_advertise_address": "192.168.5.12"}))
    assert errors == []
    assert model["published_addresses"]["redis"] == "0.0.0.0"  # asked for
    assert model["published_addresses"]["worker_a"] == "192.168.5.12"
    env_a = model["workers"][0]
    assert (env_a["url"], env_a["proxy_url"]) == ("http://apps.example.com:15000", "http://192.168.5.12:15000")
    assert (model["redis"]["node_host"], model["redis"]["control_host"]) == ("192.168.5.10", "redis.example.internal")
    assert model["postgres"]["node_host"] == "192.168.5.10"


def test_nodes_on_the_data_host_keep_the_container_names():
    model, errors = model_and_errors(hosts=remote(supervisor={"ansible_host": "10.0.0.10"},
                                                  worker_a={"ansible_host": "10.0.0.10"},
                                                  worker_b={"ansible_host": "10.0.0.10"}))
    assert errors == []
    assert (model["redis"]["node_host"], model["redis"]["node_port"]) == ("nocobase-redis", 6379)
    assert model["postgres"]["node_host"] == "nocobase-postgres"
    assert model["workers"][0]["proxy_url"] == "http://10.0.0.10:15000"  # the proxy is on 10.0.0.11


def test_other_hosts_reach_a_port_where_it_is_bound():
    model, errors = model_and_errors(hosts=remote(
        worker_a={"ansible_host": "203.0.113.12", "nocobase_published_address": "10.0.0.99"},
        redis={"ansible_host": "203.0.113.10", "redis_published_address": "10.0.0.98"},
        proxy={"ansible_host": "10.0.0.14"}, supervisor={"supervisor_published_port": 14000}))
    assert errors == []
    assert model["workers"][0]["proxy_url"] == "http://10.0.0.99:15000"  # not ansible_host: nothing listens there
    assert (model["redis"]["node_host"], model["redis"]["control_host"]) == ("10.0.0.98", "10.0.0.98")
    assert model["supervisor"]["proxy_url"] == "http://10.0.0.11:14000"  # the proxy has an engine of its own
    same_engine, _errors = model_and_errors(hosts=remote())
    assert same_engine["supervisor"]["proxy_url"] == "http://nocobase-supervisor:80"


def test_one_engine_keeps_redis_and_postgres_on_loopback_whatever_the_nodes_publish_on():
    for address in ("0.0.0.0", "10.0.0.5"):
        model, errors = model_and_errors({"nocobase_published_address": address})
        assert errors == []
        assert model["redis"]["published_address"] == "127.0.0.1" and model["redis"]["control_host"] == "127.0.0.1"


def test_one_engine_keeps_the_loopback_defaults():
    model, errors = model_and_errors()
    assert errors == [] and model["multihost"] is False
    assert set(model["published_addresses"].values()) == {"127.0.0.1"}
    assert (model["redis"]["node_host"], model["redis"]["control_host"]) == ("nocobase-redis", "127.0.0.1")


@pytest.mark.parametrize("settings, hosts, expected", [
    ({}, remote(worker_b={"worker_proxy_url": "http://127.0.0.1:15001"}),
     "worker_proxy_url 'http://127.0.0.1:15001' of worker_b names this machine only"),
    ({}, remote(worker_b={"worker_url": "http://localhost:15001"}),
     "worker_url 'http://localhost:15001' of worker_b names this machine only"),
    ({"nocobase_redis_host": "localhost"}, remote(), "nocobase_redis_host 'localhost' names this machine only"),
    ({"nocobase_postgres_host": "127.0.0.1"}, remote(), "nocobase_postgres_host '127.0.0.1' names this machine only"),
    ({}, remote(postgres={"postgres_published_port": None}),
     "PostgreSQL is not published (postgres_published_port) and some NocoBase nodes run on other Docker hosts"),
    ({}, remote(redis={"redis_published_address": "127.0.0.1"}),
     "Redis is published on 127.0.0.1 of redis only, but some NocoBase nodes run on other Docker hosts"),
    ({}, remote(worker_a={"ansible_host": "dock1.example.internal"}),
     "worker_a publishes its ports on 'dock1.example.internal', which is not an IPv4 address"),
    ({}, remote(worker_a={"ansible_host": "fd00::12"}), "worker_a publishes its ports on 'fd00::12', which is not an IPv4"),
    ({}, remote(proxy={"ansible_host": "10.0.0.14"}, supervisor={"supervisor_published_port": None}),
     "supervisor_published_port must be set: the proxy runs on another Docker host than the supervisor"),
])
def test_preflight_refuses_addresses_that_do_not_cross_hosts(settings, hosts, expected):
    _model, errors = model_and_errors(settings, hosts)
    assert any(expected in error for error in errors), errors


# ---------------------------------------------------------------- Docker Swarm (issue 11, item 3)

def test_on_swarm_every_service_is_reached_by_name_on_the_overlay_networks():
    model, errors = model_and_errors({"nocobase_runtime": "swarm"}, remote(proxy={"ansible_host": "10.0.0.14"}))
    assert errors == [] and model["runtime"] == "swarm"
    assert (model["redis"]["node_host"], model["redis"]["node_port"]) == ("nocobase-redis", 6379)
    assert (model["postgres"]["node_host"], model["postgres"]["node_port"]) == ("nocobase-postgres", 5432)
    assert not model["redis"]["crosses"] and not model["postgres"]["crosses"]
    assert [w["proxy_url"] for w in model["workers"]] == ["http://nocobase-worker-env_a", "http://nocobase-worker-env_b:13000"]
    assert model["supervisor"]["proxy_url"] == "http://nocobase-supervisor:80"
    # The control-plane modules still reach Redis where its host publishes it.
    assert model["redis"]["control_host"] == "10.0.0.10"
    docker, _errors = model_and_errors(hosts=remote())
    assert docker["runtime"] == "docker" and docker["redis"]["node_host"] == "10.0.0.10"


def test_an_unknown_runtime_is_refused():
    _model, errors = model_and_errors({"nocobase_runtime": "kubernetes"})
    assert errors == ["nocobase_runtime 'kubernetes' must be one of docker, swarm"]


@pytest.mark.parametrize("runtime, worker, expected", [
    ("swarm", {"worker_replicas": 3, "worker_published_port": None, "worker_url": "http://b.example"}, None),
    ("docker", {"worker_replicas": 1}, None),
    ("docker", {"worker_replicas": 2, "worker_published_port": None, "worker_url": "http://b.example"},
     "worker_replicas 2 of worker_b needs nocobase_runtime swarm"),
    ("swarm", {"worker_replicas": 2}, "worker_replicas 2 of worker_b cannot go with worker_published_port"),
    ("swarm", {"worker_replicas": 0}, "worker_replicas 0 of worker_b must be a whole number of at least 1"),
    ("swarm", {"worker_replicas": "two"}, "worker_replicas 'two' of worker_b must be a whole number"),
    ("swarm", {"worker_replicas": True}, "worker_replicas True of worker_b must be a whole number"),
])
def test_worker_replicas_need_swarm_and_no_published_port(runtime, worker, expected):
    model, errors = model_and_errors({"nocobase_runtime": runtime}, {"worker_b": worker})
    if expected is None:
        assert errors == [] and model["workers"][1]["replicas"] == worker["worker_replicas"]
    else:
        assert [error for error in errors if error.startswith("worker_replicas")] == [
            error for error in errors if error.startswith(expected)], errors
        assert any(error.startswith(expected) for error in errors), errors


def test_on_swarm_a_service_name_longer_than_60_characters_is_refused():
    environment = "env_" + "b" * 50
    _model, errors = model_and_errors({"nocobase_runtime": "swarm"}, {"worker_b": {"worker_environment": environment}})
    assert errors == ["the swarm service 'nocobase-worker-%s' of the worker of worker_b has 70 characters, more than 60: "
                      "shorten nocobase_container_prefix or worker_environment" % environment,
                      "the swarm service 'nocobase-agent-%s' of the agents of worker_b has 69 characters, more than "
                      "60: shorten nocobase_container_prefix or worker_environment" % environment]
    _model, errors = model_and_errors({}, {"worker_b": {"worker_environment": environment}})
    assert errors == []  # container names on docker have no such limit


def test_each_docker_engine_lists_the_images_its_containers_run_and_the_agent_base():
    """What each engine must have before anything changes: the images of the nodes it runs, the
    base of the agent image it builds for its workers; not the agent image, not an absent worker's."""
    model, errors = model_and_errors(
        {"nocobase_agent_base_image": "python:3.12-slim", "nocobase_apps_runtime": "agent"},
        remote(worker_a={"worker_image": "nb:2"}, worker_b={"worker_image": "nb:old", "worker_state": "absent",
                                                            "worker_published_port": None},
               supervisor={"supervisor_image": "nb:2"}, proxy={"proxy_image": "nginx:1"}, redis={"redis_image": "redis:7"},
               postgres={"postgres_image": "postgres:16"}))
    assert errors == []
    assert model["engine_images"] == {
        "10.0.0.10": [{"image": "postgres:16", "hosts": ["postgres"], "build": False},
                      {"image": "redis:7", "hosts": ["redis"], "build": False}],
        "10.0.0.11": [{"image": "nb:2", "hosts": ["supervisor"], "build": False},
                      {"image": "nginx:1", "hosts": ["proxy"], "build": False}],
        "10.0.0.12": [{"image": "nb:2", "hosts": ["worker_a"], "build": False},
                      {"image": "python:3.12-slim", "hosts": ["worker_a"], "build": True}],
    }
    assert "python:3.12-slim" in model["images"]  # the engines are read for it


def test_one_engine_lists_an_image_once_with_every_host_that_needs_it():
    model, dummy = model_and_errors({"nocobase_agent_base_image": "nb:1", "nocobase_apps_runtime": "agent"},
                                    {"supervisor": {"supervisor_image": "nb:1"}, "worker_b": {"worker_image": "nb:1"}})
    assert model["engine_images"]["localhost"][0] == {"image": "nb:1", "hosts": ["supervisor", "worker_a", "worker_b"],
                                                      "build": False}  # run by some: pulled as theirs
    assert [entry["image"] for entry in model["engine_images"]["localhost"]] == [
        "nb:1", "nocobase/nocobase:2.2.15", "postgres:16", "redis:7"]


def test_the_plugin_runtime_builds_no_agent_image():
    model, dummy = model_and_errors({"nocobase_agent_base_image": "python:3.12-slim", "nocobase_apps_runtime": "plugin"})
    assert not [entry for entry in model["engine_images"]["localhost"] if entry["build"]]
