"""The roles' contracts that need no running platform.

- Every role's meta/argument_specs.yml is in step with its defaults/main.yml.
- A bad inventory fails in preflight, with a message naming the variable, before any container,
  network or volume of the platform exists (playbooks/site.yml on inventories/offline with one
  inventory layer per case on top).
- An image an engine lacks and cannot pull (no registry reachable) stops the deploy in the same way,
  naming the image, its engine and the fix (IMAGES=offline); check mode names what it would pull.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from conftest import COLLECTIONS_PATH, REPO

ROLES = REPO / "roles"
OWN_ROLES = sorted(path.name for path in ROLES.iterdir() if (path / "meta" / "argument_specs.yml").exists())


def load_yaml(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


# --- argument specs ------------------------------------------------------------------------


@pytest.mark.parametrize("role", OWN_ROLES)
def test_argument_specs_match_defaults(role):
    """Every default is a documented option with the same default; an option documented with a
    default has it in defaults/main.yml; options without one (required, or derived per node from
    the inventory by the platform model) are not in defaults/main.yml, except an int or bool that
    defaults to another variable's value, which its description names."""
    defaults_file = ROLES / role / "defaults" / "main.yml"
    defaults = load_yaml(defaults_file) if defaults_file.exists() else {}
    specs = load_yaml(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]
    assert "main" in specs, "%s has no argument spec for its main entry point" % role
    for entry_point, spec in specs.items():
        options = spec.get("options") or {}
        assert spec.get("short_description"), "%s:%s has no short_description" % (role, entry_point)
        undocumented = sorted(set(defaults) - set(options))
        assert not undocumented, "%s:%s does not document the defaults %s" % (role, entry_point, undocumented)
        for name, option in options.items():
            assert option.get("description"), "%s:%s option %s has no description" % (role, entry_point, name)
            assert option.get("type"), "%s:%s option %s has no type" % (role, entry_point, name)
            if "default" in option:
                assert name in defaults, "%s:%s documents a default for %s, defaults/main.yml has none" % (
                    role, entry_point, name)
                assert option["default"] == defaults[name], "%s:%s default of %s: spec %r, defaults %r" % (
                    role, entry_point, name, option["default"], defaults[name])
            elif derived_default(option, defaults.get(name)):
                # A default that is another variable's value (an int or bool as a Jinja template) is no
                # value of the option's type, so the spec cannot state it (antsibull-docs rejects it):
                # the description names that variable instead.
                variable = derived_default(option, defaults[name])
                description = " ".join(option["description"]) if isinstance(option["description"], list) \
                    else option["description"]
                assert re.search(r"\bDefaults to O\([\w.#:]*\b%s\)" % variable, description), (
                    "%s:%s option %s defaults to %r: its description must say 'Defaults to O(...%s)'"
                    % (role, entry_point, name, defaults[name], variable))
            else:
                assert name not in defaults or defaults[name] is None, (
                    "%s:%s option %s has a default in defaults/main.yml (%r) but not in the spec"
                    % (role, entry_point, name, defaults[name]))


def derived_default(option, value):
    """The variable whose value a non-string option defaults to ('{{ nocobase_container_port }}'), or None."""
    match = re.fullmatch(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}", value) if isinstance(value, str) else None
    return match.group(1) if match and option.get("type") not in ("str", "raw") else None


@pytest.mark.parametrize("role", OWN_ROLES)
def test_role_metadata(role):
    meta = load_yaml(ROLES / role / "meta" / "main.yml")
    info = meta["galaxy_info"]
    assert info["description"] and info["license"] and info["min_ansible_version"]
    dependencies = [dep["role"] if isinstance(dep, dict) else dep for dep in meta.get("dependencies") or []]
    if not role.startswith("_") and role not in ("backup", "upgrade", "swarm"):  # every component role runs _common first
        assert dependencies == ["nocobase.multienv._common"]
    else:  # backup, upgrade and swarm include _common's `platform` entry point: they read the platform, make no network
        assert dependencies == []


# --- preflight -----------------------------------------------------------------------------

SECRETS = {
    "nocobase_app_key": "k" * 40,
    "nocobase_aes_secret_key": "0123456789abcdef" * 4,
    "nocobase_redis_password": "redis-password-123",
    "nocobase_postgres_password": "postgres-password-123",
    "nocobase_db_password": "db-password-123",
    "nocobase_root_password": "root-password-123",
}

# name: (group_vars/all, host_vars, extra hosts by group, expected message fragments)
CASES = {
    "duplicate environment": (
        {}, {"worker_b": {"worker_environment": "env_a"}}, {},
        ["worker_environment 'env_a' of worker_b is also the environment of worker_a"]),
    "duplicate port": (
        {}, {"worker_b": {"worker_published_port": 15000}}, {},
        ["worker_published_port of worker_b publishes port 15000 on localhost, which worker_published_port of worker_a"]),
    "port taken by redis": (
        {"nocobase_redis_published_port": 14000}, {}, {},
        ["publishes port 14000 on localhost, which supervisor_published_port of supervisor publishes already"]),
    "worker without url": (
        {}, {"worker_b": {"worker_published_port": None}}, {},
        ["worker_url of worker_b is not set"]),
    "bad url": (
        {}, {"worker_a": {"worker_url": "localhost:15000"}}, {},
        ["worker_url 'localhost:15000' of worker_a is not an absolute"]),
    "aes key not 64 hex": (
        {"nocobase_aes_secret_key": "abc123"}, {}, {},
        ["nocobase_aes_secret_key must be exactly 64 hexadecimal characters"]),
    "aes key not hex": (
        {"nocobase_aes_secret_key": "g" * 64}, {}, {},
        ["nocobase_aes_secret_key must be exactly 64 hexadecimal characters"]),
    "placeholder app key": (
        {"nocobase_app_key": "your-secret-key"}, {}, {},
        ["nocobase_app_key must be a secret of at least 16 characters"]),
    "missing password, generation disabled": (
        {"nocobase_secrets_generate": False, "nocobase_db_password": None}, {}, {},
        ["nocobase_db_password is not set and nocobase_secrets_generate is false"]),
    "known default root password": (
        {"nocobase_root_password": "admin123"}, {}, {},
        ["nocobase_root_password is NocoBase's publicly known first-install password"]),
    "bad root email": (
        {"nocobase_root_email": "root"}, {}, {},
        ["nocobase_root_email 'root' is not an email address"]),
    "bad root username": (
        {"nocobase_root_username": "root user"}, {}, {},
        ["nocobase_root_username 'root user' must be 1 to 50 letters"]),
    "managed root variable in extra env": (
        {"nocobase_extra_env": {"INIT_ROOT_PASSWORD": "x" * 12}}, {}, {},
        ["nocobase_extra_env sets 'INIT_ROOT_PASSWORD', which the roles manage"]),
    "key prefix that could overlap another platform's": (
        {"nocobase_key_prefix": "nocobase:staging:"}, {}, {},
        ["nocobase_key_prefix 'nocobase:staging:' must be one segment"]),
    "reserved environment name": (
        {}, {"worker_b": {"worker_environment": "default"}}, {},
        ["worker_environment 'default' of worker_b is not a valid environment name"]),
    "misspelt adapter key in platform env": (
        {"nocobase_extra_env": {"APP_COMMAND_ADPATER": "redis"}}, {}, {},
        ["nocobase_extra_env has the misspelt key 'APP_COMMAND_ADPATER'"]),
    "misspelt adapter key in worker env": (
        {}, {"worker_a": {"worker_extra_env": {"app_command_adpater": "redis"}}}, {},
        ["worker_extra_env of worker_a has the misspelt key 'app_command_adpater'"]),
    "managed key in extra env": (
        {}, {"supervisor": {"supervisor_extra_env": {"APP_MODE": "worker"}}}, {},
        ["supervisor_extra_env of supervisor sets 'APP_MODE', which the roles manage"]),
    "bad environment name": (
        {}, {"worker_b": {"worker_environment": "Env B"}}, {},
        ["worker_environment 'Env B' of worker_b is not a valid environment name"]),
    "missing environment name": (
        {}, {}, {"nocobase_workers": {"worker_c": {"worker_published_port": 17000}}},
        ["worker_environment of worker_c is not set"]),
    "bad platform name": (
        {"nocobase_platform": "Noco Base"}, {}, {},
        ["nocobase_platform 'Noco Base' is not a valid platform name"]),
    "bad database name": (
        {}, {"worker_a": {"worker_database": "nocobase-worker-a"}}, {},
        ["worker_database 'nocobase-worker-a' of worker_a is not a valid database name"]),
    "shared database": (
        {}, {"worker_b": {"worker_database": "nocobase_supervisor"}}, {},
        ["database 'nocobase_supervisor' is used by supervisor_database of supervisor and worker_database of worker_b"]),
    "two supervisors": (
        {}, {}, {"nocobase_supervisor": {"supervisor_2": {"supervisor_published_port": 14001}}},
        ["group nocobase_supervisor has 2 hosts"]),
    "worker replicas on docker": (
        {}, {"worker_b": {"worker_replicas": 2}}, {},
        ["worker_replicas 2 of worker_b needs nocobase_runtime swarm"]),
    "bad worker state": (
        {}, {"worker_b": {"worker_state": "gone"}}, {},
        ["worker_state 'gone' of worker_b must be present or absent"]),
    "node memory below NocoBase's minimum": (
        {}, {"worker_b": {"nocobase_node_memory": "768m"}}, {},
        ["nocobase_node_memory of worker_b is 768 MiB: below 1 GiB NocoBase's heap runs out as it starts"]),
    "memory that is no size": (
        {"redis_memory": "lots"}, {}, {},
        ["redis_memory of redis must be a size such as 512m or 4g, not 'lots'"]),
    "a reservation above its limit": (
        {}, {"proxy": {"proxy_memory": "256m", "proxy_memory_reservation": "1g"}}, {},
        ["proxy_memory_reservation of proxy is above its proxy_memory"]),
    "a component setting of the wrong kind": (
        {}, {"proxy": {"proxy_published_port": 70000, "proxy_config_dir": "etc/proxy"},
             "redis": {"redis_extra_args": "--requirepass s3cret"}}, {},
        ["redis_extra_args of redis must be a list of arguments, not a string",
         "proxy_published_port of proxy must be a port number (1 to 65535), not 70000",
         "proxy_config_dir of proxy must be an absolute path, not 'etc/proxy'"]),
    "several errors at once": (
        {"nocobase_aes_secret_key": "abc"}, {"worker_b": {"worker_environment": "env_a"}}, {},
        ["nocobase_aes_secret_key must be exactly", "worker_environment 'env_a' of worker_b is also"]),
}


def docker_names(kind, platform):
    """Names of the containers, networks or volumes labelled with the platform."""
    docker = shutil.which("docker")
    assert docker, "the docker CLI is needed (tools/docker-engine.sh installs it)"
    args = {
        "container": ["ps", "--all", "--format", "{{.Names}}"],
        "network": ["network", "ls", "--format", "{{.Name}}"],
        "volume": ["volume", "ls", "--format", "{{.Name}}"],
    }[kind]
    result = subprocess.run([docker] + args + ["--filter", "label=org.nocobase.multienv.platform=" + platform],
                            capture_output=True, text=True, timeout=60, check=True)
    return result.stdout.split()


def write_layer(path, group_vars, host_vars, extra_hosts):
    (path / "group_vars" / "all").mkdir(parents=True)
    (path / "host_vars").mkdir()
    children = {group: {"hosts": hosts} for group, hosts in extra_hosts.items()}
    (path / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": children} if children else {}}))
    (path / "group_vars" / "all" / "case.yml").write_text(yaml.safe_dump(group_vars))
    for host, variables in host_vars.items():
        (path / "host_vars" / ("%s.yml" % host)).write_text(yaml.safe_dump(variables))


def run_playbook(playbook, layer, *args, timeout=300):
    """ansible-playbook of this checkout's playbooks/`playbook` over inventories/offline and `layer`."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, ANSIBLE_NOCOLOR="1", NO_COLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    return subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "playbooks/" + playbook, "--inventory",
         "inventories/offline", "--inventory", str(layer), *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def remove_platform(platform):
    """Whatever a failing test left behind of the platform (nothing should exist)."""
    docker = shutil.which("docker")
    for name in docker_names("container", platform):
        subprocess.run([docker, "rm", "--force", name], capture_output=True, check=False, timeout=120)
    for name in docker_names("network", platform):
        subprocess.run([docker, "network", "rm", name], capture_output=True, check=False, timeout=60)
    for name in docker_names("volume", platform):
        subprocess.run([docker, "volume", "rm", name], capture_output=True, check=False, timeout=60)


@pytest.mark.parametrize("case", sorted(CASES))
def test_preflight_fails_before_any_change(case, tmp_path):
    group_vars, host_vars, extra_hosts, expected = CASES[case]
    platform = "nbpre%s" % uuid.uuid4().hex[:8]
    variables = {"nocobase_platform": platform, "nocobase_secrets_dir": str(tmp_path / "secrets")}
    variables.update(SECRETS)
    variables.update(group_vars)
    for name, value in list(variables.items()):
        if value is None:
            del variables[name]  # "not set"
    write_layer(tmp_path / "layer", variables, host_vars, extra_hosts)

    result = run_playbook("site.yml", tmp_path / "layer")
    output = result.stdout + result.stderr
    try:
        assert result.returncode != 0, output[-4000:]
        assert "Build the platform model from the inventory and check it" in output, output[-4000:]
        assert "nothing was changed" in output, output[-4000:]
        for fragment in expected:
            assert fragment in output, output[-4000:]
        for secret in SECRETS.values():
            assert secret not in output
        for kind in ("container", "network", "volume"):
            assert docker_names(kind, platform) == [], "%s created before preflight failed" % kind
        if (tmp_path / "secrets").exists():
            assert oct((tmp_path / "secrets").stat().st_mode & 0o777) == "0o700"
    finally:
        remove_platform(platform)


# Images no registry has, and none is reachable for (the .invalid domain never resolves).
UNPULLABLE = {"worker_b": "registry.invalid/nocobase/nocobase:0", "proxy": "registry.invalid/nocobase/nginx:0"}


@pytest.mark.parametrize("pull", ["missing", "never"])
def test_an_image_that_cannot_be_pulled_stops_the_deploy_before_any_change(pull, tmp_path):
    """site.yml with images no engine has and no registry serves fails in the run's first setup,
    naming each image, its engine and the fix (IMAGES=offline) as its last words before the recap:
    no container, network, volume or secret of the platform is made. The offline images the engine
    has are not pulled."""
    platform = "nbreg%s" % uuid.uuid4().hex[:8]
    write_layer(tmp_path / "layer", {"nocobase_platform": platform, "nocobase_secrets_dir": str(tmp_path / "secrets"),
                                     "nocobase_image_pull": pull},
                {"worker_b": {"worker_image": UNPULLABLE["worker_b"]}, "proxy": {"proxy_image": UNPULLABLE["proxy"]}}, {})
    started = time.monotonic()
    result = run_playbook("site.yml", tmp_path / "layer")
    elapsed = time.monotonic() - started
    print("nocobase_image_pull %s: site.yml stopped after %.1f s" % (pull, elapsed))
    output = result.stdout + result.stderr
    try:
        assert result.returncode != 0, output[-4000:]
        message = " ".join(result.stdout.split("PLAY RECAP")[0].rsplit("fatal:", 1)[-1].split())
        for image in UNPULLABLE.values():
            assert image + " for " in message, output[-4000:]
        assert "for worker_b, on the Docker engine at localhost" in message
        assert "make deploy IMAGES=offline" in message
        assert ("no registry is reachable" if pull == "missing" else "nocobase_image_pull is never") in message
        assert "nocobase-multienv/" not in message  # the offline images the engine has
        for kind in ("container", "network", "volume"):
            assert docker_names(kind, platform) == [], "%s created before the images were there" % kind
        assert not (tmp_path / "secrets").exists(), "secrets generated before the images were there"
        for image in UNPULLABLE.values():
            assert subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False).returncode
    finally:
        remove_platform(platform)


def test_check_mode_names_the_images_it_would_pull_and_pulls_none(tmp_path):
    platform = "nbchp%s" % uuid.uuid4().hex[:8]
    image = "registry.invalid/nocobase/redis:0"
    write_layer(tmp_path / "layer", {"nocobase_platform": platform, "nocobase_secrets_dir": str(tmp_path / "secrets"),
                                     "nocobase_image_pull": "missing", "redis_image": image}, {}, {})
    result = run_playbook("infrastructure.yml", tmp_path / "layer", "--check")
    output = result.stdout + result.stderr
    try:
        assert result.returncode == 0, output[-4000:]
        assert re.search(r"changed: \[\w+ -> \w+\] => \(item=%s on localhost\)" % re.escape(image), output), output[-4000:]
        assert subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False).returncode
        for kind in ("container", "network", "volume"):
            assert docker_names(kind, platform) == [], "%s created in check mode" % kind
    finally:
        remove_platform(platform)


def test_check_mode_on_a_new_platform_creates_nothing(tmp_path):
    """--check on an engine without the platform predicts changes and creates no container,
    network or volume (the roles predict the containers the missing network keeps them from
    checking, and skip the control plane that is not there yet)."""
    platform = "nbchk%s" % uuid.uuid4().hex[:8]
    write_layer(tmp_path / "layer", {"nocobase_platform": platform, "nocobase_secrets_dir": str(tmp_path / "secrets"),
                                     "nocobase_image": "nocobase-multienv/nocobase-standin:offline"},
                {"worker_b": {"nocobase_node_memory": "1536m"}}, {})
    result = run_playbook("site.yml", tmp_path / "layer", "--check", timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    # A node below NocoBase's 2 GB is allowed, with a warning that gives NocoBase's figures.
    assert "nocobase_node_memory of worker_b is 1536 MiB, below 2 GiB (NocoBase needs 2 GB at least" in " ".join(
        output.split()), output[-4000:]
    assert "%s-worker-env_b would be created" % platform in output
    assert "%s-agent-env_b would be created" % platform in output
    assert "ignored=0" in output and "ignored=1" not in output
    for kind in ("container", "network", "volume"):
        assert docker_names(kind, platform) == [], "%s created in check mode" % kind
    assert not (tmp_path / "secrets").exists(), "check mode wrote the secrets it would generate"


@pytest.mark.parametrize("playbook, extra", [
    ("backup.yml", []), ("upgrade.yml", []),
    ("restore.yml", ["-e", "nocobase_restore_from=20260101T000000Z", "-e", "nocobase_restore_confirm=true"]),
])
def test_operations_on_containers_by_name_refuse_the_swarm_runtime(playbook, extra, tmp_path):
    """backup.yml, restore.yml and upgrade.yml run commands in containers by name: on nocobase_runtime
    swarm they stop at once with a message that says so, and write nothing (no secret, no backup)."""
    platform = "nbswr%s" % uuid.uuid4().hex[:8]
    variables = dict(SECRETS, nocobase_platform=platform, nocobase_secrets_dir=str(tmp_path / "secrets"),
                     nocobase_backup_dir=str(tmp_path / "backups"), nocobase_runtime="swarm")
    write_layer(tmp_path / "layer", variables, {}, {})
    result = run_playbook(playbook, tmp_path / "layer", *extra)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-4000:]
    assert "works on nocobase_runtime docker only" in " ".join(output.split()), output[-4000:]
    assert not (tmp_path / "backups").exists() or not any((tmp_path / "backups").iterdir())
    for kind in ("container", "network", "volume"):
        assert docker_names(kind, platform) == [], kind
