"""nocobase_apps_runtime=plugin: the seed's environment exactly, no agent, no heartbeat gate.

For owners of the commercial @nocobase/plugin-app-supervisor the collection deploys and wires
the nodes and leaves the apps to the plugin. The stand-in does not emulate that plugin, so this
checks what the collection promises there: the containers' environment, that the deploy finishes
without waiting for heartbeats, and that the apps role refuses what it cannot do.
"""
from __future__ import annotations

import json

import pytest
import yaml
from ansible_collections.nocobase.multienv.plugins.module_utils._redis_acl import user_password
from harness import Platform

SEED_ENV = {
    "supervisor": {"APP_MODE": "supervisor", "APP_DISCOVERY_ADAPTER": "remote", "APP_PROCESS_ADAPTER": "remote",
                   "APP_COMMAND_ADAPTER": "redis", "APPEND_PRESET_BUILT_IN_PLUGINS": "@nocobase/plugin-app-supervisor"},
    "worker": {"APP_MODE": "worker", "APP_DISCOVERY_ADAPTER": "remote", "APP_PROCESS_ADAPTER": "local",
               "APP_COMMAND_ADAPTER": "redis", "APPEND_PRESET_BUILT_IN_PLUGINS": "@nocobase/plugin-app-supervisor"},
}


@pytest.fixture(scope="module")
def plugin_platform(tmp_path_factory):
    deployed = Platform(tmp_path_factory.mktemp("plugin"))
    settings = deployed.overlay / "group_vars" / "all" / "e2e.yml"
    variables = yaml.safe_load(settings.read_text())
    variables.update({"nocobase_apps_runtime": "plugin", "apps_list": []})
    settings.write_text(yaml.safe_dump(variables))
    try:
        deployed.infra = deployed.playbook("infrastructure.yml")
        deployed.nodes = deployed.playbook("supervisor.yml")
        deployed.workers = deployed.playbook("workers.yml")
        yield deployed
    finally:
        deployed.playbook("teardown.yml", check=False)


def container_env(platform, suffix):
    """The environment NocoBase gets: the container's, and its secrets, files that its entry point
    exports (checked absent from the container's configuration)."""
    inspected = json.loads(platform.docker("inspect", platform.container(suffix)).stdout)[0]
    configured = dict(item.split("=", 1) for item in inspected["Config"]["Env"])
    files = platform.docker("exec", platform.container(suffix), "sh", "-c",
                            'for f in /run/env.*; do printf "%s=%s\\0" "${f##*/env.}" "$(cat "$f")"; done').stdout
    secrets = dict(item.split("=", 1) for item in files.split("\0") if item)
    assert not set(secrets) & set(configured), suffix
    return dict(configured, **secrets)


def test_nodes_get_the_seed_environment_and_no_agent_runs(plugin_platform):
    platform = plugin_platform
    redis_url = "redis://node:%s@%s-redis:6379/0" % (user_password(platform.redis_password, "node"), platform.name)
    for suffix, role, environment in (("supervisor", "supervisor", None), ("worker-env_a", "worker", "env_a"),
                                      ("worker-env_b", "worker", "env_b")):
        env = container_env(platform, suffix)
        for key, value in SEED_ENV[role].items():
            assert env.get(key) == value, (suffix, key)
        assert env["APP_SUPERVISOR_REDIS_URL"] == env["APP_COMMAND_REDIS_URL"] == redis_url, suffix
        assert not [key for key in env if "ADPATER" in key.upper()], suffix
        assert env.get("ENVIRONMENT_NAME") == environment, suffix
        assert env["INIT_ROOT_PASSWORD"] == platform.root_password, suffix
    names = platform.docker("ps", "--all", "--format", "{{.Names}}",
                            "--filter", "label=org.nocobase.multienv.platform=" + platform.name).stdout.split()
    assert not [name for name in names if "-agent-" in name], names


def test_the_deploy_does_not_wait_for_heartbeats_and_says_why(plugin_platform):
    output = " ".join(plugin_platform.workers.stdout.split())  # the YAML callback folds long lines
    assert "the collection does not wait for environment heartbeats and cannot start apps there" in output
    # Nothing beats (no agent, and the stand-in is not the commercial plugin): a gate would have failed.
    assert plugin_platform.redis().hlen("nocobase:heartbeats") == 0


def test_the_apps_role_refuses_what_only_the_plugin_can_do(plugin_platform):
    extra = plugin_platform.root / "apps.yml"
    extra.write_text(yaml.safe_dump({"apps_list": [{"name": "crm", "environments": ["env_a"]}]}))
    run = plugin_platform.playbook("apps.yml", "-e", "@" + str(extra), check=False)
    assert run.returncode != 0
    assert "nocobase_apps_runtime is plugin" in " ".join(run.stdout.split())
    assert plugin_platform.redis().hlen("nocobase:apps") == 0
