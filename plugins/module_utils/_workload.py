# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This file is private to the nocobase.multienv collection and may change at any time.
#
# The workload spec of every component of a platform, built once, in plain Python, and what each
# runtime makes of it: the arguments of community.docker.docker_container (nocobase_runtime docker)
# or of docker_swarm_service with its Docker secrets (nocobase_runtime swarm). The action
# nocobase.multienv.workload builds and applies it (docs/development.md).
#
# A spec holds no value of the platform's secrets: a secret environment variable or file holds a
# reference (SecretRef, resolve()), which the action turns into the value only for the runtime, as a
# file in the container, never in its configuration. A secret of the inventory's own extra env is a
# SecretRef holding its value: a spec is therefore never shown.

from __future__ import annotations

import hashlib
import re

from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.nocobase.multienv.plugins.module_utils._redis_acl import user_password, user_rules

COMPONENTS = ("redis", "postgres", "proxy", "supervisor", "worker", "agent")

# The fields of a spec, and what each means (docs/development.md has the table).
FIELDS = (
    "name",            # the container's, or the Swarm service's, name
    "image",
    "pull",            # None: nocobase_image_pull; "never" for an image built on its engine
    "command",         # the image entry point's arguments (None: the image's command)
    "init", "hostname", "replicas",
    "env",             # public variables, each value a string
    "secret_env",      # variable -> secret reference: a file env.<NAME> that a wrapper exports
    "secret_files",    # [{name, ref, uid, gid, mode}]: files the program reads itself (secret_path())
    "labels", "networks", "mounts", "ports", "healthcheck",
    "stop_timeout",    # None: nocobase_stop_timeout
    "resources",       # {memory, memory_reservation (bytes), cpus}: None for no limit
    "state",           # present, started, or healthy (started, then waits for its health check)
    "wait_timeout",
)

LABEL = "org.nocobase.multienv"
MIB = 1024 * 1024
GIB = 1024 * MIB

# Where a container finds its secret files: Docker copies them into an existing directory before the
# container first starts; Swarm mounts its Docker secrets under /run/secrets.
SECRET_DIRS = {"docker": "/run", "swarm": "/run/secrets"}
# Exports each env.<NAME> secret file as NAME, then runs the image's entry point and command
# (NocoBase and PostgreSQL read those secrets from their environment only).
SECRET_ENV_WRAPPER = [
    "/bin/sh", "-c",
    'for file in /run/env.* /run/secrets/env.*; do [ -f "$file" ] && export "${file##*/env.}=$(cat "$file")"; done; '
    'exec "$@"',
    "nocobase-secret-env",
]

# NocoBase's health check (/api/__health_check answers ok), with curl, wget or node, whichever the
# image has.
NOCOBASE_HEALTH_CHECK = (
    "url=http://127.0.0.1:%d/api/__health_check; "
    "body=$(curl -fsS --max-time 8 \"$url\" 2>/dev/null || wget -qO- -T 8 \"$url\" 2>/dev/null || "
    "node -e 'fetch(process.argv[1]).then(r => r.text()).then(t => process.stdout.write(t), () => process.exit(1))' "
    "\"$url\" 2>/dev/null); "
    "[ \"$(printf %%s \"$body\" | tr -d '[:space:]' | tr '[:upper:]' '[:lower:]')\" = ok ]")

# The environment of a node by apps runtime (nocobase_apps_runtime) and role.
RUNTIME_ENV = {
    # NocoBase's multi-environment example exactly (with the correct spelling APP_COMMAND_ADAPTER),
    # for the commercial @nocobase/plugin-app-supervisor; the Redis URLs are added by node().
    "plugin": {
        "supervisor": {"APP_MODE": "supervisor", "APP_DISCOVERY_ADAPTER": "remote", "APP_PROCESS_ADAPTER": "remote",
                       "APP_COMMAND_ADAPTER": "redis", "APPEND_PRESET_BUILT_IN_PLUGINS": "@nocobase/plugin-app-supervisor"},
        "worker": {"APP_MODE": "worker", "APP_DISCOVERY_ADAPTER": "remote", "APP_PROCESS_ADAPTER": "local",
                   "APP_COMMAND_ADAPTER": "redis", "APPEND_PRESET_BUILT_IN_PLUGINS": "@nocobase/plugin-app-supervisor"},
    },
    # Open-source NocoBase: the supervisor is a plain node (the entry app); a worker enables the
    # multi-app manager at install. No adapter variables: the open-source build does not register the
    # `remote` adapters, and with them the multi-app manager loses its main app (docs/agent.md). No
    # Redis URL either: only the agent beside the worker talks to Redis.
    "agent": {
        "supervisor": {},
        "worker": {"APP_MODE": "worker", "APPEND_PRESET_BUILT_IN_PLUGINS": "@nocobase/plugin-multi-app-manager"},
    },
}

# A variable is a secret when its name says so, or when its value is a URL with a password.
_SECRET_NAME_RE = re.compile(r"(PASSWORD|SECRET|TOKEN|_KEY)$")
_URL_WITH_PASSWORD_RE = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@]*:[^/@]*@")
_SIZE_RE = re.compile(r"([0-9]+)\s*([bkmgt]?)i?b?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": MIB, "g": GIB, "t": 1024 * GIB}

# NocoBase's own sizing (docs: installation requirements): 2 GB at least, 4 GB recommended; below
# 1 GiB its V8 heap runs out while it starts.
NODE_MEMORY_REFUSED_BELOW = GIB
NODE_MEMORY_WARNED_BELOW = 2 * GIB
# What a node's Node.js process keeps beside its V8 heap (code, buffers, the sub-apps' native
# memory): the heap gets the rest of the limit, at least half of it.
NODE_NON_HEAP_BYTES = 512 * MIB


class Setting:
    """One per-component setting: the variable an operator sets, its default, its type, and the spec
    field it feeds. Role defaults, argument specs and docs/provisioning.md are tested equal to these."""

    def __init__(self, name, role, default, kind, field, description):
        self.name, self.role, self.default, self.kind, self.field, self.description = (
            name, role, default, kind, field, description)

    def value(self, raw, where):
        """The setting's value from the inventory (None: unset), or ValueError naming it."""
        if raw is None or raw == "":
            return None
        if self.kind == "size":
            return parse_size(raw, "%s of %s" % (self.name, where))
        if self.kind == "cpus":
            try:
                cpus = float(raw)
            except (TypeError, ValueError):
                cpus = -1
            if isinstance(raw, bool) or not 0 < cpus <= 1024:
                raise ValueError("%s of %s must be a number of CPUs above 0 (such as 0.5 or 2), not %r" % (self.name, where, raw))
            return cpus
        raise AssertionError(self.kind)


def _resources(prefix, role, memory, what):
    return (
        Setting(prefix + "_memory", role, memory, "size", "resources.memory",
                "Memory limit of %s, a size such as 512m or 4g; null for none." % what),
        Setting(prefix + "_memory_reservation", role, None, "size", "resources.memory_reservation",
                "Memory reserved for %s (Docker's memory_reservation, Swarm's reservations); null for none." % what),
        Setting(prefix + "_cpus", role, None, "cpus", "resources.cpus",
                "CPUs %s may use, such as 0.5 or 2; null for no limit." % what),
    )


# Every per-component setting, by the component whose spec it feeds. Their defaults are chosen from
# the figures in docs/provisioning.md ("Memory and CPUs"). The nodes' settings are platform-wide
# (group_vars) and may be set on a node's host for that node alone; the others on their component's host.
SETTINGS = {
    "node": _resources("nocobase_node", "_common", "4g", "each NocoBase node (a worker's replica)"),
    "agent": _resources("worker_agent", "worker", "256m", "each worker's agent"),
    "redis": _resources("redis", "redis", "1g", "Redis") + (
        Setting("redis_maxmemory", "redis", None, "size", "command",
                "maxmemory of Redis, policy noeviction (full, it refuses writes, never drops a record); "
                "null for 3/4 of redis_memory."),),
    "postgres": _resources("postgres", "postgres", "4g", "PostgreSQL"),
    "proxy": _resources("proxy", "proxy", "256m", "the proxy"),
}
# The spec builders read these settings of these components.
SETTINGS_OF = {"redis": "redis", "postgres": "postgres", "proxy": "proxy", "supervisor": "node", "worker": "node",
               "agent": "agent"}


def parse_size(raw, what):
    """Bytes of a size such as 1536m, 2g, 2GiB or 1073741824; ValueError naming `what`."""
    match = _SIZE_RE.fullmatch(str(raw).strip()) if not isinstance(raw, bool) else None
    if not match or int(match.group(1)) == 0:
        raise ValueError("%s must be a size such as 512m or 4g, not %r" % (what, raw))
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def settings_values(component, variables, where):
    """{name: value} of the component's settings from `variables` (a host's), and the problems found."""
    values, errors = {}, []
    for setting in SETTINGS[SETTINGS_OF.get(component, component)]:
        try:
            values[setting.name] = setting.value(variables.get(setting.name, setting.default), where)
        except ValueError as exc:
            errors.append(str(exc))
    return values, errors


def _values(component, variables):
    """The component's settings on this host; ValueError naming what is wrong (preflight says it first)."""
    values, errors = settings_values(component, variables, variables["inventory_hostname"])
    if errors:
        raise ValueError("; ".join(errors))
    return values


def resource_errors(values, prefix, where):
    """What is wrong with a component's resources together, and the warnings (NocoBase's minimum)."""
    errors, warnings = [], []
    memory, reservation = values.get(prefix + "_memory"), values.get(prefix + "_memory_reservation")
    if memory is not None and reservation is not None and reservation > memory:
        errors.append("%s_memory_reservation of %s is above its %s_memory" % (prefix, where, prefix))
    if prefix == "nocobase_node" and memory is not None:
        figures = "NocoBase needs 2 GB at least and recommends 4 GB; a worker runs all of its apps in one process"
        if memory < NODE_MEMORY_REFUSED_BELOW:
            errors.append("nocobase_node_memory of %s is %s: below 1 GiB NocoBase's heap runs out as it starts (%s)"
                          % (where, format_size(memory), figures))
        elif memory < NODE_MEMORY_WARNED_BELOW:
            warnings.append("nocobase_node_memory of %s is %s, below 2 GiB (%s)" % (where, format_size(memory), figures))
    if prefix == "redis" and values.get("redis_maxmemory") is not None and memory is not None \
            and values["redis_maxmemory"] > memory:
        errors.append("redis_maxmemory of %s is above its redis_memory" % where)
    return errors, warnings


# The components each inventory group runs, whose settings its hosts take.
GROUP_COMPONENTS = {"nocobase_supervisor": ("node",), "nocobase_workers": ("node", "agent"),
                    "nocobase_redis": ("redis",), "nocobase_postgres": ("postgres",), "nocobase_proxy": ("proxy",)}
# Each setting's default, by name.
DEFAULTS = {setting.name: setting.default for settings in SETTINGS.values() for setting in settings}


def setting_names(group):
    return [setting.name for component in GROUP_COMPONENTS.get(group, ()) for setting in SETTINGS[component]]


def default_of(name):
    return DEFAULTS.get(name)


def settings_problems(groups, hosts):
    """(errors, warnings) of every host's component settings (hosts: host -> its variables)."""
    errors, warnings = [], []
    for group in sorted(GROUP_COMPONENTS):
        for host in groups.get(group, []):
            for component in GROUP_COMPONENTS[group]:
                values, problems = settings_values(component, hosts[host], host)
                prefix = SETTINGS[component][0].name[:-len("_memory")]  # the _resources() prefix
                more, warned = resource_errors(values, prefix, host)
                errors += problems + more
                warnings += warned
    return sorted(set(errors), key=errors.index), sorted(set(warnings), key=warnings.index)


def format_size(size):
    for unit, factor in (("GiB", GIB), ("MiB", MIB)):
        if size % factor == 0:
            return "%d %s" % (size // factor, unit)
    return "%d bytes" % size


def heap_mib(memory):
    """The V8 heap (MiB) of a node limited to `memory` bytes: the limit less what is not heap, at
    least half of the limit."""
    return max(memory - NODE_NON_HEAP_BYTES, memory // 2) // MIB


def resources(values, prefix):
    return {"memory": values.get(prefix + "_memory"), "memory_reservation": values.get(prefix + "_memory_reservation"),
            "cpus": values.get(prefix + "_cpus")}


def _port(address, published, target):
    return [] if published is None else [{"address": address, "published": int(published), "target": int(target)}]


def _labels(variables, role, environment=None):
    labels = dict(variables.get("nocobase_labels") or {})
    labels.update({LABEL + ".platform": variables["nocobase_platform"], LABEL + ".role": role})
    if environment is not None:
        labels[LABEL + ".environment"] = environment
    return labels


def _strings(env):
    return {str(name): "" if value is None else str(value) for name, value in env.items()}


def secret_path(runtime, name):
    return "%s/%s" % (SECRET_DIRS[runtime], name)


def _redis_address(platform, variables):
    return "%s:%s/%s" % (platform["redis"]["node_host"], platform["redis"]["node_port"], variables["nocobase_redis_db"])


def _redis_scheme(variables):
    return "rediss" if variables["nocobase_redis_tls"] else "redis"


class SecretRef(dict):
    """A secret in a spec, by reference (resolve() gives its value): its own type, so that no value
    of the inventory (an extra env's dict) can pass for one."""


def _secret(name):
    return SecretRef(secret=name)


def _redis_url(user, variables, platform):
    return SecretRef(redis_url=user, scheme=_redis_scheme(variables), address=_redis_address(platform, variables))


# ---------------------------------------------------------------------------------------- the specs

def redis(platform, variables):
    """Redis, the control plane: its users (with their password hashes) in a secret file it includes,
    maxmemory with the noeviction policy, TLS when nocobase_redis_tls."""
    runtime = platform["runtime"]
    values = _values("redis", variables)
    maxmemory = values["redis_maxmemory"]
    if maxmemory is None and values["redis_memory"] is not None:
        maxmemory = values["redis_memory"] * 3 // 4
    users_file = secret_path(runtime, "redis-users.conf")
    tls_dir = "/etc/redis-tls"
    tls = variables["nocobase_redis_tls"]
    command = ["--include", users_file, "--appendonly", "yes" if variables["redis_appendonly"] else "no",
               "--maxmemory-policy", "noeviction"] + (["--maxmemory", str(maxmemory)] if maxmemory else [])
    if tls:
        command += ["--port", "0", "--tls-port", "6379", "--tls-cert-file", tls_dir + "/redis.crt",
                    "--tls-key-file", tls_dir + "/redis.key", "--tls-ca-cert-file", tls_dir + "/ca.crt",
                    "--tls-auth-clients", "no"]
    ping = "redis-cli %sping" % ("--tls --cacert %s/ca.crt " % tls_dir if tls else "")
    environments = [worker["environment"] for worker in platform["workers"] if worker["state"] == "present"]
    return _spec(
        name=platform["redis"]["container"], image=variables["redis_image"],
        command=command + [str(arg) for arg in variables["redis_extra_args"] or []],
        secret_files=[{"name": "redis-users.conf", "ref": SecretRef(redis_users={
            "key_prefix": variables["nocobase_key_prefix"], "environments": environments,
            "node_user": variables["nocobase_apps_runtime"] == "plugin"})}],
        labels=_labels(variables, "redis"), networks=[variables["nocobase_backend_network"]],
        mounts=[{"type": "volume", "source": variables["redis_volume"], "target": "/data"}]
        + ([{"type": "bind", "source": variables["nocobase_redis_tls_dir"], "target": tls_dir, "read_only": True}]
           if tls else []),
        ports=_port(platform["redis"]["published_address"], variables["nocobase_redis_published_port"], 6379),
        # Answers PONG, or NOAUTH without the password: either way the server is up.
        healthcheck=_healthcheck(["CMD-SHELL", ping + " 2>&1 | grep -qE 'PONG|NOAUTH'"], "2s", "5s", 5, "30s"),
        resources=resources(values, "redis"), state="healthy", wait_timeout=variables["redis_wait_timeout"])


def postgres(platform, variables):
    """PostgreSQL: the superuser's password a secret variable of the image's entry point."""
    values = _values("postgres", variables)
    superuser = variables["postgres_superuser"]
    command = ["postgres"]
    for key, value in (variables["postgres_settings"] or {}).items():
        command += ["-c", "%s=%s" % (key, value)]
    return _spec(
        name=platform["postgres"]["container"], image=variables["postgres_image"], command=command,
        env={"POSTGRES_USER": superuser}, secret_env={"POSTGRES_PASSWORD": _secret("postgres_password")},
        labels=_labels(variables, "postgres"), networks=[variables["nocobase_backend_network"]],
        mounts=[{"type": "volume", "source": variables["postgres_volume"], "target": "/var/lib/postgresql/data"}],
        ports=_port(platform["postgres"]["published_address"], platform["postgres"]["published_port"], 5432),
        healthcheck=_healthcheck(["CMD-SHELL", "pg_isready -q -h 127.0.0.1 -U %s -d postgres" % superuser],
                                 "2s", "5s", 5, "60s"),
        resources=resources(values, "postgres"), state="healthy", wait_timeout=variables["postgres_wait_timeout"])


def proxy(platform, variables):
    """The proxy (nginx), its configuration directory on its host mounted read-only."""
    values = _values("proxy", variables)
    address = platform["published_addresses"][variables["inventory_hostname"]]
    ports = _port(address, variables["proxy_published_port"], variables["proxy_container_port"])
    if variables["proxy_tls"]:
        ports += _port(address, variables["proxy_tls_published_port"], variables["proxy_tls_container_port"])
    return _spec(
        name=platform["proxy"]["container"], image=variables["proxy_image"],
        labels=_labels(variables, "proxy"), networks=[variables["nocobase_network"]],
        mounts=[{"type": "bind", "source": variables["proxy_config_dir"], "target": "/etc/nginx/conf.d",
                 "read_only": True}],
        ports=ports,
        # Cheap and frequent: healthy soon after a start, so that the next run need not wait itself.
        healthcheck=_healthcheck(["CMD", "curl", "-fsS", "-o", "/dev/null",
                                  "http://127.0.0.1:%s/__nocobase_proxy_health" % variables["proxy_container_port"]],
                                 "2s", "5s", 3, "5s"),
        stop_timeout=10, resources=resources(values, "proxy"), state="started",
        wait_timeout=variables["proxy_wait_timeout"])


def node(role, platform, variables):
    """A NocoBase node, the supervisor or this host's worker: its secrets are secret variables
    (NocoBase reads them from its environment only), its heap sized from its memory limit."""
    entry = _this_node(role, platform, variables)
    values = _values(role, variables)
    redis_url = _redis_url("node", variables, platform)
    env = {
        "DB_DIALECT": "postgres", "DB_HOST": platform["postgres"]["node_host"], "DB_PORT": platform["postgres"]["node_port"],
        "DB_DATABASE": entry["database"], "DB_USER": variables["nocobase_db_user"], "DB_PASSWORD": _secret("db_password"),
        "TZ": variables["nocobase_timezone"], "APP_KEY": _secret("app_key"),
        "APP_AES_SECRET_KEY": _secret("aes_secret_key"), "INIT_ROOT_EMAIL": variables["nocobase_root_email"],
        "INIT_ROOT_USERNAME": variables["nocobase_root_username"], "INIT_ROOT_PASSWORD": _secret("root_password"),
    }
    env.update(RUNTIME_ENV[variables["nocobase_apps_runtime"]][role])
    if variables["nocobase_apps_runtime"] == "plugin":
        env.update(APP_SUPERVISOR_REDIS_URL=redis_url, APP_COMMAND_REDIS_URL=redis_url)
    mounts = [{"type": "volume", "source": entry["volume"], "target": "/app/nocobase/storage"}]
    if variables["nocobase_redis_tls"] and variables["nocobase_apps_runtime"] == "plugin":
        # rediss://: Node.js trusts Redis's CA, a file on the node's host.
        ca_path = "/etc/ssl/nocobase-redis-ca.crt"
        mounts.append({"type": "bind", "source": variables["nocobase_redis_tls_dir"] + "/ca.crt", "target": ca_path,
                       "read_only": True})
        env["NODE_EXTRA_CA_CERTS"] = ca_path
    if role == "worker":
        env.update(ENVIRONMENT_NAME=entry["environment"], ENVIRONMENT_URL=entry["url"],
                   ENVIRONMENT_PROXY_URL=entry["proxy_url"])
    if values["nocobase_node_memory"] is not None:
        env["NODE_OPTIONS"] = "--max-old-space-size=%d" % heap_mib(values["nocobase_node_memory"])
    env.update(variables["nocobase_extra_env"] or {})
    env.update(entry["extra_env"] or {})
    public, secret = {}, {}
    for name, value in env.items():
        if isinstance(value, SecretRef):
            secret[name] = value
        elif _SECRET_NAME_RE.search(name) or _URL_WITH_PASSWORD_RE.match(str(value)):
            secret[name] = SecretRef(value="" if value is None else str(value))  # an extra env's own secret
        else:
            public[name] = value
    return _spec(
        name=entry["container"], image=entry["image"], init=True, replicas=int(entry.get("replicas") or 1),
        env=_strings(public), secret_env=secret, labels=_labels(variables, role, entry.get("environment") or ""),
        # The front network for the proxy, the back one for PostgreSQL, Redis and the agent.
        networks=[variables["nocobase_network"], variables["nocobase_backend_network"]], mounts=mounts,
        ports=_port(platform["published_addresses"][entry["host"]], entry["published_port"], entry["container_port"]),
        healthcheck=_healthcheck(["CMD-SHELL", NOCOBASE_HEALTH_CHECK % int(entry["container_port"])],
                                 variables["nocobase_healthcheck_interval"], "10s", 3, "600s"),
        resources=resources(values, "nocobase_node"),
        # Unpublished, Docker's health check is how the run knows it answers (published, the role signs in).
        state="started" if entry["published_port"] is not None else "healthy",
        wait_timeout=variables["nocobase_health_timeout"])


def agent(platform, variables, image):
    """This host's worker's agent (nocobase_apps_runtime agent), its image built on the worker's
    engine; its secrets are files it reads (AGENT_*_FILE). On Swarm, one agent per worker replica,
    each named after its task's slot."""
    entry = _this_node("worker", platform, variables)
    runtime = platform["runtime"]
    values = _values("agent", variables)
    environment = entry["environment"]
    files = [
        {"name": "redis_url", "ref": _redis_url("agent-" + environment, variables, platform)},
        {"name": "root_password", "ref": _secret("root_password")},
    ]
    if variables["nocobase_redis_tls"]:
        files.append({"name": "redis_ca", "ref": SecretRef(value=variables["_common_redis_tls_ca"])})
    env = {
        "ENVIRONMENT_NAME": environment, "ENVIRONMENT_URL": entry["url"], "ENVIRONMENT_PROXY_URL": entry["proxy_url"],
        "AGENT_NOCOBASE_URL": "http://%s:%s" % (entry["container"], entry["container_port"]),
        "AGENT_REDIS_URL_FILE": secret_path(runtime, "agent.redis_url"),
        "AGENT_KEY_PREFIX": variables["nocobase_key_prefix"], "AGENT_ROOT_ACCOUNT": variables["nocobase_root_email"],
        "AGENT_ROOT_PASSWORD_FILE": secret_path(runtime, "agent.root_password"),
        "AGENT_STALE_AFTER": variables["nocobase_stale_after"],
        "AGENT_HEARTBEAT_SECONDS": variables["worker_agent_heartbeat_interval"],
    }
    if variables["nocobase_redis_tls"]:
        env["AGENT_REDIS_TLS_CA_FILE"] = secret_path(runtime, "agent.redis_ca")
    env.update(variables["worker_agent_extra_env"] or {})
    return _spec(
        name=entry["agent_container"], image=image, pull="never", init=True, replicas=int(entry.get("replicas") or 1),
        hostname=entry["agent_container"] + "-{{.Task.Slot}}" if runtime == "swarm" else None,
        env=_strings(env),
        # Readable by the agent's user (nobody) only.
        secret_files=[dict(file, name="agent." + file["name"], uid=65534, gid=65534, mode=0o400) for file in files],
        labels=_labels(variables, "agent", environment), networks=[variables["nocobase_backend_network"]],
        # Healthy while its worker is healthy and the environment is registered.
        healthcheck=_healthcheck(["CMD", "python3", "/opt/nocobase-agent/agent.py", "--healthcheck"],
                                 variables["nocobase_healthcheck_interval"], "10s", 3, "600s"),
        stop_timeout=15, resources=resources(values, "worker_agent"), state="started",
        wait_timeout=variables["worker_available_timeout"])


# The variables each builder reads, besides those of its settings (SETTINGS).
VARIABLES = {
    "common": ("nocobase_platform", "nocobase_labels", "nocobase_network", "nocobase_backend_network",
               "nocobase_redis_tls", "nocobase_redis_tls_dir", "nocobase_apps_runtime", "nocobase_key_prefix",
               "nocobase_redis_db", "nocobase_healthcheck_interval", "inventory_hostname"),
    "redis": ("redis_image", "redis_volume", "redis_appendonly", "redis_extra_args", "redis_wait_timeout",
              "nocobase_redis_published_port"),
    "postgres": ("postgres_image", "postgres_volume", "postgres_superuser", "postgres_settings", "postgres_wait_timeout"),
    "proxy": ("proxy_image", "proxy_config_dir", "proxy_published_port", "proxy_container_port", "proxy_tls",
              "proxy_tls_published_port", "proxy_tls_container_port", "proxy_wait_timeout"),
    "supervisor": ("nocobase_db_user", "nocobase_timezone", "nocobase_root_email", "nocobase_root_username",
                   "nocobase_extra_env", "nocobase_health_timeout"),
    "agent": ("nocobase_root_email", "nocobase_stale_after", "worker_agent_heartbeat_interval", "worker_agent_extra_env",
              "worker_available_timeout", "_common_redis_tls_ca"),
}
VARIABLES["worker"] = VARIABLES["supervisor"]


def variable_names(component):
    return (VARIABLES["common"] + VARIABLES[component]
            + tuple(setting.name for setting in SETTINGS[SETTINGS_OF[component]]))


# Variables that are Ansible booleans: "false" from -e or an INI inventory is false.
BOOLEAN_VARIABLES = ("nocobase_redis_tls", "proxy_tls", "redis_appendonly")


def build(component, platform, variables, image=None):
    """The spec of `component` on this host (variables: its variable_names(), templated)."""
    variables = dict(variables, **{name: boolean(variables[name], strict=False) for name in BOOLEAN_VARIABLES
                                   if name in variables})
    if component in ("supervisor", "worker"):
        return node(component, platform, variables)
    if component == "agent":
        return agent(platform, variables, image)
    return {"redis": redis, "postgres": postgres, "proxy": proxy}[component](platform, variables)


def _this_node(role, platform, variables):
    if role == "supervisor":
        return platform["supervisor"]
    return [worker for worker in platform["workers"] if worker["host"] == variables["inventory_hostname"]][0]


def _healthcheck(test, interval, timeout, retries, start_period):
    return {"test": test, "interval": interval, "timeout": timeout, "retries": retries, "start_period": start_period}


def _spec(**fields):
    spec = dict.fromkeys(FIELDS)
    spec.update(replicas=1, init=False, env={}, secret_env={}, secret_files=[], labels={}, mounts=[], ports=[])
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise AssertionError("not spec fields: %s" % sorted(unknown))
    spec.update(fields)
    return spec


# ------------------------------------------------------------------------------------ the secrets

def resolve(ref, secrets):
    """The value a secret reference stands for, from the platform's secrets."""
    if "secret" in ref:
        return str(secrets[ref["secret"]])
    if "value" in ref:
        return ref["value"]
    if "redis_url" in ref:
        return "%s://%s:%s@%s" % (ref["scheme"], ref["redis_url"],
                                  user_password(secrets["redis_password"], ref["redis_url"]), ref["address"])
    if "redis_users" in ref:
        users = ref["redis_users"]
        rules = user_rules(secrets["redis_password"], users["key_prefix"], list(users["environments"]),
                           bool(users["node_user"]))
        return "".join("user %s %s\n" % (user, " ".join(rules[user])) for user in rules)
    raise AssertionError("unknown secret reference %r" % sorted(ref))


def secret_items(spec, secrets):
    """[{name, value, uid, gid, mode}]: the files of the spec's secret variables (env.<NAME>, read by
    root) and its secret files, each a file `name` in the runtime's SECRET_DIRS."""
    items = [{"name": "env." + variable, "ref": ref} for variable, ref in sorted(spec["secret_env"].items())]
    items += spec["secret_files"]
    return [dict({"uid": 0, "gid": 0, "mode": 0o400}, name=item["name"], value=resolve(item["ref"], secrets),
                 **{key: item[key] for key in ("uid", "gid", "mode") if key in item}) for item in items]


# ---------------------------------------------------------------------------------- the runtimes

def docker_container_args(spec, settings):
    """community.docker.docker_container's arguments for a spec (secrets left out: see secret_items)."""
    limits = spec["resources"] or {}
    return {
        "name": spec["name"], "image": spec["image"], "pull": spec["pull"] or settings["nocobase_image_pull"],
        "state": spec["state"], "healthy_wait_timeout": spec["wait_timeout"] if spec["state"] == "healthy" else None,
        "restart_policy": settings["nocobase_restart_policy"],
        "stop_timeout": spec["stop_timeout"] if spec["stop_timeout"] is not None else settings["nocobase_stop_timeout"],
        "init": spec["init"], "command": spec["command"], "env": spec["env"], "labels": spec["labels"],
        "network_mode": spec["networks"][0], "networks": [{"name": network} for network in spec["networks"]],
        "mounts": [_docker_mount(mount) for mount in spec["mounts"]],
        "published_ports": ["%s:%d:%d" % (port["address"], port["published"], port["target"]) for port in spec["ports"]],
        "healthcheck": spec["healthcheck"],
        "memory": _docker_size(limits.get("memory")),
        "memory_reservation": _docker_size(limits.get("memory_reservation")),
        "cpus": limits.get("cpus"),
        "comparisons": {"env": "strict", "networks": "strict"},
    }


def _docker_size(size):
    # docker_container and docker_swarm_service take a number of bytes; None leaves it out.
    return None if size is None else str(size)


def _docker_mount(mount):
    return dict(mount, read_only=bool(mount.get("read_only")))


def wrapped_command(spec, image_config):
    """(entry point, command) that runs the image's own through SECRET_ENV_WRAPPER when the spec has
    secret variables; (None, the spec's command) otherwise."""
    if not spec["secret_env"]:
        return None, spec["command"]
    command = spec["command"] if spec["command"] is not None else (image_config.get("Cmd") or [])
    return SECRET_ENV_WRAPPER, (image_config.get("Entrypoint") or []) + list(command)


# The throw-away jobs on a node's storage volume (the backup's and the restore's): the shell script,
# run with the volume's name as $0, and whether the volume or the directory is mounted read-only.
VOLUME_JOBS = {
    # GNU tar exits 1 when a file changed while it was read (a running node writes its logs).
    "archive": ('tar -C /data --warning=no-file-changed -czf "/backup/$0.tar.gz" . || [ $? -eq 1 ]', True, False),
    "extract": ('find /data -mindepth 1 -delete && tar -C /data -xzf "/backup/$0.tar.gz"', False, True),
}


def volume_job_args(action, name, volume, image, directory, pull):
    """docker_container's arguments for a throw-away container of a node's image (as root, no network,
    removed once it ran) that archives the volume into `directory` as <volume>.tar.gz, or extracts that
    archive into the emptied volume."""
    script, volume_read_only, directory_read_only = VOLUME_JOBS[action]
    return {
        "name": name, "image": image, "pull": pull, "entrypoint": ["sh", "-c"], "command": [script, volume],
        "user": "0", "network_mode": "none",
        "mounts": [{"type": "volume", "source": volume, "target": "/data", "read_only": volume_read_only},
                   {"type": "bind", "source": directory, "target": "/backup", "read_only": directory_read_only}],
        "detach": False, "cleanup": True, "output_logs": True,
    }


def swarm_cpus(cpus):
    """`cpus` as a float that survives docker_swarm_service's round trip: it sends int(cpus * 1e9)
    nano-CPUs and compares what it reads back divided by 1e9 (4.1 would read back 4.099999999 and
    update the service on every run)."""
    if cpus is None:
        return None
    nano = round(cpus * 1e9)
    for candidate in sorted(range(nano - 3, nano + 4), key=lambda value: abs(value - nano)):
        if int(candidate / 1e9 * 1e9) == candidate:
            return candidate / 1e9
    return cpus


def swarm_secret_name(service, file_name):
    """A Docker secret's name: the service's and the file's, capped below Docker's 64 characters
    with the versions' suffix (_vN), shortened with a hash of the whole name."""
    name = "%s-%s" % (service, file_name.lower().replace("_", "-").replace(".", "-"))
    return name if len(name) <= 58 else "%s-%s" % (name[:49], hashlib.sha1(name.encode()).hexdigest()[:8])


def swarm_service_args(spec, settings, image_config, node_id):
    """docker_swarm_service's arguments for a spec, pinned to the Swarm node `node_id` (its volumes,
    bind mounts and local images are there), endpoint_mode dnsrr, ports published in host mode.
    Its secrets are added by the caller (secret_name per file, swarm_secret_name())."""
    entrypoint, command = wrapped_command(spec, image_config)
    limits = spec["resources"] or {}
    return {
        "name": spec["name"], "image": spec["image"], "resolve_image": False,
        "command": entrypoint, "args": command, "env": spec["env"], "hostname": spec["hostname"], "init": spec["init"],
        "mode": "replicated", "replicas": spec["replicas"], "endpoint_mode": "dnsrr", "networks": spec["networks"],
        "placement": {"constraints": ["node.id == %s" % node_id]},
        "publish": [{"published_port": port["published"], "target_port": port["target"], "mode": "host",
                     "protocol": "tcp"} for port in spec["ports"]],
        # readonly only when set: Docker leaves a false one out of the service, and a false here would differ.
        "mounts": [{"type": mount["type"], "source": mount["source"], "target": mount["target"],
                    "readonly": True if mount.get("read_only") else None} for mount in spec["mounts"]],
        "healthcheck": spec["healthcheck"], "labels": spec["labels"],
        "container_labels": spec["labels"],  # found by label on the node's engine, as containers are
        "restart_config": {"condition": "any"},
        "update_config": {"order": "stop-first"},  # one task owns the volume
        "stop_grace_period": "%ss" % (spec["stop_timeout"] if spec["stop_timeout"] is not None
                                      else settings["nocobase_stop_timeout"]),
        "limits": {"memory": _docker_size(limits.get("memory")), "cpus": swarm_cpus(limits.get("cpus"))},
        "reservations": {"memory": _docker_size(limits.get("memory_reservation"))},
    }
