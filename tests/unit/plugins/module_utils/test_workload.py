"""Each component's workload spec (plugins/module_utils/_workload.py) and what each runtime makes of it."""
from __future__ import annotations

import copy
import json
import re
import subprocess
import sys

import pytest
import yaml
from test_platform_model import SETTINGS

from ansible_collections.nocobase.multienv.plugins.module_utils import _workload as workload
from ansible_collections.nocobase.multienv.plugins.module_utils._platform import build as build_model
from ansible_collections.nocobase.multienv.plugins.module_utils._redis_acl import user_password

from conftest import REPO

GROUPS = {"nocobase_redis": ["redis"], "nocobase_postgres": ["postgres"], "nocobase_supervisor": ["supervisor"],
          "nocobase_workers": ["worker_a"], "nocobase_proxy": ["proxy"]}
LOCAL = {"ansible_connection": "local"}
HOSTS = {
    "redis": {"redis_image": "redis:7"}, "postgres": {"postgres_published_port": 15432, "postgres_image": "postgres:16"},
    "proxy": {"proxy_config_dir": "/etc/nocobase-multienv/nocobase/proxy"},
    "supervisor": {"supervisor_database": "nocobase_supervisor", "supervisor_published_port": 14000,
                   "supervisor_container_port": 80, "supervisor_extra_env": {}, "supervisor_image": "nocobase:2"},
    "worker_a": {"worker_state": "present", "worker_container_port": 80, "worker_extra_env": {"LOGGER_LEVEL": "warn"},
                 "worker_image": "nocobase:2", "worker_environment": "env_a", "worker_database": "nocobase_env_a",
                 "worker_published_port": 15000, "worker_replicas": 2},
}
SECRETS = {"db_password": "db-secret-1234", "app_key": "app-key-secret", "aes_secret_key": "a" * 64,
           "root_password": "root-secret-1234", "postgres_password": "pg-secret-1234", "redis_password": "redis-secret-1234"}
VARIABLES = {
    "nocobase_platform": "nocobase", "nocobase_labels": {"team": "ops"}, "nocobase_network": "nocobase",
    "nocobase_backend_network": "nocobase-backend", "nocobase_redis_tls": False,
    "nocobase_redis_tls_dir": "/etc/nocobase-multienv/nocobase/redis-tls", "nocobase_apps_runtime": "agent",
    "nocobase_key_prefix": "nocobase:", "nocobase_redis_db": 0, "nocobase_healthcheck_interval": "10s",
    "redis_image": "redis:7", "redis_volume": "nocobase-redis-data", "redis_appendonly": True, "redis_extra_args": [],
    "redis_wait_timeout": 60, "nocobase_redis_published_port": 16379,
    "postgres_image": "postgres:16", "postgres_volume": "nocobase-postgres-data", "postgres_superuser": "postgres",
    "postgres_settings": {"wal_level": "logical"}, "postgres_wait_timeout": 120,
    "proxy_image": "nginx:1", "proxy_config_dir": "/etc/nocobase-multienv/nocobase/proxy", "proxy_published_port": 8080,
    "proxy_container_port": 80, "proxy_tls": True, "proxy_tls_published_port": 8443, "proxy_tls_container_port": 443,
    "proxy_wait_timeout": 120,
    "nocobase_db_user": "nocobase", "nocobase_timezone": "UTC", "nocobase_root_email": "root@example.com",
    "nocobase_root_username": "root", "nocobase_extra_env": {}, "nocobase_health_timeout": 600,
    "nocobase_stale_after": 90, "worker_agent_heartbeat_interval": 10, "worker_agent_extra_env": {},
    "worker_available_timeout": 300, "_common_redis_tls_ca": "",
}
HOST_OF = {"redis": "redis", "postgres": "postgres", "proxy": "proxy", "supervisor": "supervisor", "worker": "worker_a",
           "agent": "worker_a"}
RUNTIME = {"nocobase_restart_policy": "always", "nocobase_stop_timeout": 45, "nocobase_image_pull": "missing"}


def spec_of(component, runtime="docker", host_variables=None, **variables):
    """The component's spec; `host_variables`: more variables of its host, for the model too."""
    hosts = {host: dict(LOCAL, **own) for host, own in copy.deepcopy(HOSTS).items()}
    hosts[HOST_OF[component]].update(host_variables or {})
    platform = build_model(dict(SETTINGS, nocobase_runtime=runtime), GROUPS, hosts)
    values = dict(VARIABLES, inventory_hostname=HOST_OF[component], **variables)
    for setting in workload.SETTINGS[workload.SETTINGS_OF[component]]:
        values.setdefault(setting.name, setting.default)
    assert set(workload.variable_names(component)) <= set(values)
    return workload.build(component, platform, values, image="nocobase-multienv/agent:abc")


@pytest.mark.parametrize("component", workload.COMPONENTS)
def test_a_spec_holds_every_field_and_no_secret(component):
    spec = spec_of(component)
    assert set(spec) == set(workload.FIELDS)
    text = json.dumps(spec)
    for value in SECRETS.values():
        assert value not in text
    assert user_password(SECRETS["redis_password"], "node") not in text
    # Every secret resolves, and only into files.
    items = workload.secret_items(spec, SECRETS)
    assert all(item["value"] for item in items)
    assert spec["labels"]["org.nocobase.multienv.platform"] == "nocobase" and spec["labels"]["team"] == "ops"


def test_redis_includes_its_users_and_never_evicts():
    spec = spec_of("redis")
    assert spec["command"][:2] == ["--include", "/run/redis-users.conf"]
    assert spec["command"][spec["command"].index("--maxmemory-policy") + 1] == "noeviction"
    assert spec["command"][spec["command"].index("--maxmemory") + 1] == str(768 * workload.MIB)  # 3/4 of 1g
    users = workload.secret_items(spec, SECRETS)[0]
    assert users["name"] == "redis-users.conf"
    lines = users["value"].splitlines()
    assert [line.split()[1] for line in lines] == ["default", "operator", "agent-env_a"]
    assert all(line.startswith("user ") and SECRETS["redis_password"] not in line for line in lines)
    assert spec_of("redis", runtime="swarm")["command"][1] == "/run/secrets/redis-users.conf"
    explicit = spec_of("redis", redis_maxmemory="100mb")
    assert explicit["command"][explicit["command"].index("--maxmemory") + 1] == str(100 * workload.MIB)


def test_a_node_gets_its_secrets_as_files_and_a_heap_from_its_memory_limit():
    spec = spec_of("worker")
    assert spec["env"]["ENVIRONMENT_NAME"] == "env_a" and spec["env"]["DB_DATABASE"] == "nocobase_env_a"
    assert spec["env"]["LOGGER_LEVEL"] == "warn"
    assert sorted(spec["secret_env"]) == ["APP_AES_SECRET_KEY", "APP_KEY", "DB_PASSWORD", "INIT_ROOT_PASSWORD"]
    assert spec["resources"]["memory"] == 4 * workload.GIB
    assert spec["env"]["NODE_OPTIONS"] == "--max-old-space-size=3584"
    assert spec["replicas"] == 2
    small = spec_of("worker", nocobase_node_memory="1536m", nocobase_node_cpus="1.5")
    assert small["env"]["NODE_OPTIONS"] == "--max-old-space-size=1024"
    assert small["resources"] == {"memory": 1536 * workload.MIB, "memory_reservation": None, "cpus": 1.5}
    # The inventory's own NODE_OPTIONS wins; no limit, no derived heap.
    assert spec_of("worker", nocobase_extra_env={"NODE_OPTIONS": "--max-old-space-size=900"})["env"]["NODE_OPTIONS"] \
        == "--max-old-space-size=900"
    assert "NODE_OPTIONS" not in spec_of("worker", nocobase_node_memory=None)["env"]
    # A secret of the inventory's extra env is a secret variable too.
    extra = spec_of("worker", nocobase_extra_env={"SMTP_PASSWORD": "smtp-secret", "CACHE_URL": "redis://u:p4ss@cache"})
    assert {"SMTP_PASSWORD", "CACHE_URL"} <= set(extra["secret_env"]) and "smtp-secret" not in json.dumps(extra["env"])


def test_the_plugin_runtime_gives_the_nodes_their_redis_url_as_a_secret():
    spec = spec_of("supervisor", nocobase_apps_runtime="plugin")
    assert spec["env"]["APP_MODE"] == "supervisor"
    url = workload.resolve(spec["secret_env"]["APP_SUPERVISOR_REDIS_URL"], SECRETS)
    assert url == "redis://node:%s@nocobase-redis:6379/0" % user_password(SECRETS["redis_password"], "node")


def test_the_agent_reads_its_secrets_from_files_of_its_user():
    for runtime, directory in (("docker", "/run"), ("swarm", "/run/secrets")):
        spec = spec_of("agent", runtime=runtime)
        assert spec["env"]["AGENT_REDIS_URL_FILE"] == directory + "/agent.redis_url"
        assert spec["pull"] == "never" and spec["image"] == "nocobase-multienv/agent:abc"
        items = {item["name"]: item for item in workload.secret_items(spec, SECRETS)}
        assert items["agent.root_password"]["value"] == SECRETS["root_password"]
        assert (items["agent.redis_url"]["uid"], items["agent.redis_url"]["mode"]) == (65534, 0o400)
    assert spec_of("agent", runtime="swarm")["hostname"] == "nocobase-agent-env_a-{{.Task.Slot}}"
    assert spec_of("agent")["hostname"] is None


def test_docker_and_swarm_get_the_same_spec():
    spec = spec_of("proxy")
    spec["resources"] = {"memory": 256 * workload.MIB, "memory_reservation": 128 * workload.MIB, "cpus": 0.5}
    docker = workload.docker_container_args(spec, RUNTIME)
    swarm = workload.swarm_service_args(spec, RUNTIME, {}, "node-1")
    assert docker["published_ports"] == ["127.0.0.1:8080:80", "127.0.0.1:8443:443"]
    assert [(port["published_port"], port["target_port"], port["mode"]) for port in swarm["publish"]] == [
        (8080, 80, "host"), (8443, 443, "host")]
    assert docker["mounts"][0]["read_only"] is True and swarm["mounts"][0]["readonly"] is True
    assert (docker["memory"], docker["memory_reservation"], docker["cpus"]) == (str(256 * workload.MIB), str(128 * workload.MIB), 0.5)
    assert swarm["limits"] == {"memory": str(256 * workload.MIB), "cpus": 0.5}
    assert swarm["reservations"] == {"memory": str(128 * workload.MIB)}
    assert docker["stop_timeout"] == 10 and swarm["stop_grace_period"] == "10s"
    assert docker["healthcheck"] == swarm["healthcheck"] == spec["healthcheck"]
    assert swarm["placement"] == {"constraints": ["node.id == node-1"]}


def test_a_secret_variable_runs_the_image_through_the_wrapper():
    spec = spec_of("postgres")
    entrypoint, command = workload.wrapped_command(spec, {"Entrypoint": ["docker-entrypoint.sh"], "Cmd": ["postgres"]})
    assert entrypoint == workload.SECRET_ENV_WRAPPER
    assert command == ["docker-entrypoint.sh", "postgres", "-c", "wal_level=logical"]
    assert workload.wrapped_command(spec_of("proxy"), {"Cmd": ["nginx"]}) == (None, None)
    assert len(workload.swarm_secret_name("x" * 60, "env.POSTGRES_PASSWORD")) == 58


@pytest.mark.parametrize(("raw", "size"), [("512m", 512 * workload.MIB), ("4g", 4 * workload.GIB), ("2GiB", 2 * workload.GIB),
                                           ("1536M", 1536 * workload.MIB), (1073741824, workload.GIB), ("100mb", 100 * workload.MIB)])
def test_sizes(raw, size):
    assert workload.parse_size(raw, "x") == size


@pytest.mark.parametrize("raw", ["", "0", "-1g", "4 gigabytes", "1.5g", True])
def test_bad_sizes_name_the_setting(raw):
    values, errors = workload.settings_values("worker", {"nocobase_node_memory": raw}, "worker_a")
    assert (raw == "" and errors == [] and values["nocobase_node_memory"] is None) or \
        errors == ["nocobase_node_memory of worker_a must be a size such as 512m or 4g, not %r" % (raw,)]


@pytest.mark.parametrize(("name", "raw", "error"), [
    ("redis_wait_timeout", "soon", "must be a number of seconds above 0, not 'soon'"),
    ("redis_wait_timeout", 0, "must be a number of seconds above 0, not 0"),
    ("proxy_published_port", 70000, "must be a port number (1 to 65535), not 70000"),
    ("proxy_published_port", "80.5", "must be a port number (1 to 65535), not '80.5'"),
    ("proxy_config_dir", "etc/proxy", "must be an absolute path, not 'etc/proxy'"),
    ("redis_image", "redis:7\n--privileged", "must be a non-empty string on one line, not 'redis:7\\n--privileged'"),
    ("redis_image", "", "must be a non-empty string on one line, not ''"),
    ("redis_appendonly", "maybe", "must be true or false, not 'maybe'"),
    ("redis_wait_timeout", None, "must be set, not null"),
    ("proxy_published_port", "", "must be a port number (1 to 65535), not ''"),
    ("redis_extra_args", "--requirepass s3cret-value", "must be a list of arguments, not a string"),
    ("redis_extra_args", ["--requirepass", {"s3cret": "value"}], ": argument 2 must be a string or a number"),
    ("postgres_settings", {"work_mem": {"s3cret": 1}}, ": 'work_mem' must be a name with a string or a number"),
    ("worker_agent_extra_env", ["AGENT_X=s3cret"], "must be a mapping of names to values, not a list"),
])
def test_a_bad_component_setting_is_refused_naming_it_and_its_host(name, raw, error):
    component = {"redis": "redis", "proxy": "proxy", "postgres": "postgres", "worker": "agent"}[name.split("_")[0]]
    values, errors = workload.settings_values(component, {name: raw}, "somehost")
    assert errors == ["%s of somehost%s%s" % (name, "" if error.startswith(":") else " ", error)]
    assert "s3cret" not in errors[0]  # a value of these kinds may be a secret: the error names the item


def test_collections_may_be_null_and_arguments_may_hold_spaces():
    """null is an empty list or mapping; Redis's arguments are a list, so a space or an empty one is fine."""
    values, errors = workload.settings_values("redis", {"redis_extra_args": ["--save", "", "--x", "a b"]}, "redis")
    assert errors == [] and values["redis_extra_args"] == ["--save", "", "--x", "a b"]
    values, errors = workload.settings_values("agent", {"worker_agent_extra_env": None}, "worker_a")
    assert errors == [] and values["worker_agent_extra_env"] == {}


def test_component_settings_from_the_command_line_are_read_by_their_kind():
    """-e gives strings: "90" is 90 seconds, "no" is false, and a spec gets them as such."""
    values, errors = workload.settings_values("redis", {"redis_wait_timeout": "90", "redis_appendonly": "no"}, "redis")
    assert errors == [] and values["redis_wait_timeout"] == 90 and values["redis_appendonly"] is False
    spec = spec_of("redis", redis_wait_timeout="90", redis_extra_args=["--hz", 20])
    assert spec["wait_timeout"] == 90 and spec["command"][-2:] == ["--hz", "20"]
    with pytest.raises(ValueError, match="^proxy_published_port of proxy must be a port number"):
        spec_of("proxy", proxy_published_port="http")


def test_the_preflight_refuses_a_node_below_1_gib_and_warns_below_2():
    hosts = {"supervisor": {"nocobase_node_memory": "768m"}, "worker_a": {"nocobase_node_memory": "1536m",
                                                                          "worker_agent_cpus": "none"},
             "redis": {"redis_memory": "64m", "redis_maxmemory": "128m"}, "postgres": {}, "proxy": {}}
    errors, warnings = workload.settings_problems(GROUPS, hosts)
    assert any(error.startswith("nocobase_node_memory of supervisor is 768 MiB: below 1 GiB") for error in errors)
    assert "worker_agent_cpus of worker_a must be a number of CPUs above 0 (such as 0.5 or 2), not 'none'" in errors
    assert "redis_maxmemory of redis is above its redis_memory" in errors
    assert len(errors) == 3
    assert warnings == ["nocobase_node_memory of worker_a is 1536 MiB, below 2 GiB (NocoBase needs 2 GB at least "
                        "and recommends 4 GB; a worker runs all of its apps in one process)"]


def test_every_setting_is_declared_once_and_the_roles_and_docs_agree():
    """One declaration per setting: the role's defaults, its argument spec and docs/provisioning.md say the
    same, as tools/settings.py writes them."""
    check = subprocess.run([sys.executable, str(REPO / "tools" / "settings.py"), "--check"], capture_output=True,
                           text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    docs = (REPO / "docs" / "provisioning.md").read_text()
    names = [setting.name for settings in workload.SETTINGS.values() for setting in settings]
    assert len(names) == len(set(names))
    for settings in workload.SETTINGS.values():
        for setting in settings:
            defaults = yaml.safe_load((REPO / "roles" / setting.role / "defaults" / "main.yml").read_text())
            assert setting.name in defaults and defaults[setting.name] == setting.default, setting.name
            specs = yaml.safe_load((REPO / "roles" / setting.role / "meta" / "argument_specs.yml").read_text())
            option = specs["argument_specs"]["main"]["options"][setting.name]
            assert option.get("default") == setting.default and option["description"] == setting.description
            assert option["type"] == workload.KIND_TYPES[setting.kind]
            row = re.search(r"^\| `%s` \| ([^|]*) \| ([^|]*) \|" % setting.name, docs, re.MULTILINE)
            assert row and row.group(1) == setting.role, setting.name
            assert (yaml.safe_load(row.group(2).strip("`")) if row.group(2) != "none" else None) == setting.default


def test_no_role_defines_a_container_or_a_service():
    """Every component's spec is built in _workload, and every container and service of the collection
    goes through the one action nocobase.multienv.workload: no role runs Docker's own modules for them."""
    for path in sorted((REPO / "roles").rglob("*.yml")):
        text = path.read_text()
        assert not re.search(r"^__\w+_service:", text, re.MULTILINE), path
        for module in ("container", "docker_container", "docker_swarm_service", "docker_secret"):
            assert not re.search(r"^\s*-?\s*(community\.docker|nocobase\.multienv)\.%s:" % module, text, re.MULTILINE), \
                (path, module)


def test_the_volume_jobs_archive_read_only_and_extract_into_an_emptied_volume():
    """The backup's archive mounts the node's volume read-only; the restore's mounts the archive read-only."""
    archive = workload.volume_job_args("archive", "demo-worker.backup", "demo-storage", "img", "/tmp/x", "never")
    extract = workload.volume_job_args("extract", "demo-worker.restore", "demo-storage", "img", "/tmp/x", "never")
    assert [mount["read_only"] for mount in archive["mounts"]] == [True, False]
    assert [mount["read_only"] for mount in extract["mounts"]] == [False, True]
    for args in (archive, extract):
        assert args["network_mode"] == "none" and args["cleanup"] and not args["detach"]
        assert args["command"][1] == "demo-storage"  # $0 of the script: a value, never part of the shell text
    assert extract["command"][0].startswith("find /data -mindepth 1 -delete && ")


def test_a_spec_is_not_built_from_a_bad_setting():
    """Preflight refuses it first; a spec built without preflight (check=false) refuses it too."""
    with pytest.raises(ValueError, match="^postgres_memory of postgres must be a size such as 512m or 4g, not '4 GB!'$"):
        spec_of("postgres", postgres_memory="4 GB!")


def test_booleans_are_read_as_ansible_reads_them():
    """-e nocobase_redis_tls=false is the string "false": off, as the roles read it."""
    spec = spec_of("redis", nocobase_redis_tls="false", redis_appendonly="no")
    assert "--tls-port" not in spec["command"] and len(spec["mounts"]) == 1
    assert spec["command"][spec["command"].index("--appendonly") + 1] == "no"
    assert [port["target"] for port in spec_of("proxy", proxy_tls="False")["ports"]] == [80]
    assert workload.resolve(spec_of("agent", nocobase_redis_tls="yes", _common_redis_tls_ca="CA")["secret_files"][0]["ref"],
                            SECRETS).startswith("rediss://")


def test_no_value_of_the_inventory_passes_for_a_secret_reference():
    """An extra env's dict is a value (a string), never a reference to the platform's secrets."""
    spec = spec_of("worker", nocobase_extra_env={"FOO": {"secret": "postgres_password"}})
    assert spec["env"]["FOO"] == str({"secret": "postgres_password"}) and "FOO" not in spec["secret_env"]
    assert SECRETS["postgres_password"] not in json.dumps([item["value"] for item in workload.secret_items(spec, SECRETS)])


@pytest.mark.parametrize("cpus", [0.5, 1.5, 2.01, 4.1, 8.2, 3.3, 1024])
def test_cpus_survive_the_swarm_round_trip(cpus):
    """docker_swarm_service sends int(cpus * 1e9) and compares what it reads back: no update on every run."""
    sent = workload.swarm_cpus(cpus)
    assert int(sent * 1e9) / 1e9 == sent and abs(sent - cpus) < 1e-8


def test_an_unpublished_node_is_waited_for_until_docker_finds_it_healthy():
    """Published, the role signs in through its port; unpublished, Docker's health check is all the run has."""
    assert spec_of("worker")["state"] == "started"
    unpublished = spec_of("worker", host_variables={"worker_published_port": None, "worker_url": "http://worker-a:80"})
    assert unpublished["ports"] == [] and unpublished["state"] == "healthy"
    assert workload.docker_container_args(unpublished, {"nocobase_image_pull": "never", "nocobase_restart_policy": "always",
                                                        "nocobase_stop_timeout": 30})["healthy_wait_timeout"] == 600
