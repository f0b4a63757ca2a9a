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


# The argument spec type of each kind of setting.
KIND_TYPES = {"size": "str", "cpus": "float", "str": "str", "path": "path", "seconds": "int", "port": "int",
              "bool": "bool", "args": "list", "env": "dict", "dict": "dict"}


class Setting:
    """One per-component setting: the variable an operator sets, its default, its kind (its type and
    validation), the spec field it feeds and its description (a string, or a list of paragraphs).
    tools/settings.py writes role defaults, argument specs and docs/provisioning.md from these."""

    def __init__(self, name, role, default, kind, field, description):
        if kind not in KIND_TYPES:
            raise AssertionError(kind)
        self.name, self.role, self.default, self.kind, self.field, self.description = (
            name, role, default, kind, field, description)

    def value(self, raw, where):
        """The setting's value from the inventory (None: unset), or ValueError naming it."""
        what = "%s of %s" % (self.name, where)
        if self.kind in ("size", "cpus") and raw in (None, ""):
            return None  # no limit
        if raw is None:
            if self.kind in ("args", "env", "dict"):
                return [] if self.kind == "args" else {}
            raise ValueError("%s must be set, not null" % what)
        if self.kind == "size":
            return parse_size(raw, what)
        if self.kind == "cpus":
            cpus = _number(raw, float)
            if cpus is None or not 0 < cpus <= 1024:
                raise ValueError("%s must be a number of CPUs above 0 (such as 0.5 or 2), not %r" % (what, raw))
            return cpus
        if self.kind in ("seconds", "port"):
            number = _number(raw, int)
            if number is None or not 0 < number <= (65535 if self.kind == "port" else 86400):
                raise ValueError("%s must be %s, not %r" % (
                    what, "a port number (1 to 65535)" if self.kind == "port" else "a number of seconds above 0", raw))
            return number
        if self.kind == "bool":
            try:
                return boolean(raw, strict=True)
            except TypeError:
                raise ValueError("%s must be true or false, not %r" % (what, raw))
        if self.kind in ("str", "path"):
            if not isinstance(raw, str) or not raw.strip() or raw != raw.strip() or "\n" in raw:
                raise ValueError("%s must be a non-empty string on one line, not %r" % (what, raw))
            if self.kind == "path" and not raw.startswith("/"):
                raise ValueError("%s must be an absolute path, not %r" % (what, raw))
            return raw
        # The values of these may be secrets (a password among Redis's arguments or an agent's environment):
        # an error names the item, never a value.
        if self.kind == "args":
            if not isinstance(raw, list):
                raise ValueError("%s must be a list of arguments, not %s" % (what, _kind_of(raw)))
            for index, arg in enumerate(raw):
                if isinstance(arg, bool) or not isinstance(arg, (str, int, float)):
                    raise ValueError("%s: argument %d must be a string or a number" % (what, index + 1))
            return [str(arg) for arg in raw]
        if not isinstance(raw, dict):
            raise ValueError("%s must be a mapping of names to values, not %s" % (what, _kind_of(raw)))
        for key, value in raw.items():
            if not isinstance(key, str) or not (isinstance(value, (str, int, float)) or value is None and self.kind == "env"):
                raise ValueError("%s: %r must be a name with a string or a number" % (what, key))
        return dict(raw)


def _kind_of(raw):
    """What `raw` is, in words (Ansible's own classes of a value, such as a tagged string, are not for operators)."""
    for kind, words in ((bool, "true or false"), (str, "a string"), (dict, "a mapping"), (list, "a list"),
                        ((int, float), "a number")):
        if isinstance(raw, kind):
            return words
    return "a %s" % type(raw).__name__


def _number(raw, kind):
    """`raw` as an int or float (a string of one too, as -e gives it), None when it is none."""
    if isinstance(raw, bool):
        return None
    try:
        number = kind(raw)
    except (TypeError, ValueError):
        return None
    return number if kind is float or str(number) == str(raw).strip() else None


def _resources(prefix, role, memory, what):
    return (
        Setting(prefix + "_memory", role, memory, "size", "resources.memory",
                "Memory limit of %s, a size such as 512m or 4g; null for none." % what),
        Setting(prefix + "_memory_reservation", role, None, "size", "resources.memory_reservation",
                "Memory reserved for %s (Docker's memory_reservation, Swarm's reservations); null for none." % what),
        Setting(prefix + "_cpus", role, None, "cpus", "resources.cpus",
                "CPUs %s may use, such as 0.5 or 2; null for no limit." % what),
    )


def _wait(name, role, default, what):
    return Setting(name, role, default, "seconds", "wait_timeout",
                   "Seconds to wait until %s." % what)


# Every per-component setting, by the component whose spec it feeds. The resources' defaults are
# chosen from the figures in docs/provisioning.md ("Memory and CPUs"). The nodes' settings are
# platform-wide (group_vars) and may be set on a node's host for that node alone; the others on their
# component's host.
SETTINGS = {
    "node": _resources("nocobase_node", "_common", "4g", "each NocoBase node (a worker's replica)"),
    "agent": (
        Setting("worker_agent_heartbeat_interval", "worker", 120, "seconds", "env.AGENT_HEARTBEAT_SECONDS", [
            "Seconds between two heartbeats of a worker's agent (NocoBase's own interval is 120). Keep it well "
            "below C(nocobase_stale_after)."]),
        Setting("worker_agent_extra_env", "worker", {}, "env", "env",
                "Extra environment variables of the worker's agent (C(AGENT_*) settings, see C(docs/agent.md))."),
        Setting("worker_available_timeout", "worker", 300, "seconds", "wait_timeout", [
            "Seconds to wait until the workers' environments are available (a fresh heartbeat from each agent) "
            "before failing with what each one lacks."]),
    ) + _resources("worker_agent", "worker", "256m", "each worker's agent"),
    "redis": (
        Setting("redis_image", "redis", "redis/redis-stack-server:7.4.0-v1", "str", "image",
                "Redis image; its interface must be that of C(redis/redis-stack-server). Pinned."),
        Setting("redis_volume", "redis", "{{ nocobase_container_prefix }}-redis-data", "str", "mounts",
                "Named volume mounted at C(/data)."),
        Setting("redis_appendonly", "redis", True, "bool", "command",
                "Persist every write in an append-only file (C(--appendonly yes))."),
        Setting("redis_extra_args", "redis", [], "args", "command", [
            "More C(redis-server) arguments, appended to its command, for example C([--hz, 20])."]),
        _wait("redis_wait_timeout", "redis", 60, "Redis is healthy (it answers C(PING), checked by Docker every 2 seconds)"),
    ) + _resources("redis", "redis", "1g", "Redis") + (
        Setting("redis_maxmemory", "redis", None, "size", "command",
                "maxmemory of Redis, policy noeviction (full, it refuses writes, never drops a record); "
                "null for 3/4 of redis_memory."),),
    "postgres": (
        Setting("postgres_image", "postgres", "postgres:16.4", "str", "image",
                "PostgreSQL image (10 or newer) with the interface of the official image. Pinned."),
        Setting("postgres_volume", "postgres", "{{ nocobase_container_prefix }}-postgres-data", "str", "mounts",
                "Named volume mounted at C(/var/lib/postgresql/data)."),
        Setting("postgres_superuser", "postgres", "postgres", "str", "env.POSTGRES_USER",
                "Name of the superuser (C(POSTGRES_USER)); its password is C(nocobase_postgres_password)."),
        Setting("postgres_settings", "postgres", {"wal_level": "logical"}, "dict", "command", [
            "Server settings, passed as C(-c key=value). NocoBase's own compose files use C(wal_level=logical)."]),
        _wait("postgres_wait_timeout", "postgres", 120,
              "PostgreSQL is healthy (C(pg_isready), checked by Docker every 2 seconds)"),
    ) + _resources("postgres", "postgres", "4g", "PostgreSQL"),
    "proxy": (
        Setting("proxy_image", "proxy", "nginx:1.27.5", "str", "image",
                "nginx image (the official one's interface, C(/etc/nginx/conf.d))."),
        Setting("proxy_published_port", "proxy", 13000, "port", "ports",
                "Host port the proxy is published on (address C(nocobase_published_address))."),
        Setting("proxy_container_port", "proxy", 80, "port", "ports", "Port nginx listens on inside the container."),
        Setting("proxy_config_dir", "proxy", "/etc/nocobase-multienv/{{ nocobase_platform }}/proxy", "path", "mounts", [
            "Directory on the proxy's Docker host that holds the rendered configuration, mounted read-only as "
            "C(/etc/nginx/conf.d). The whole directory is mounted so that a replaced file is seen."]),
        _wait("proxy_wait_timeout", "proxy", 120, "the proxy answers its health URL"),
        Setting("proxy_tls", "proxy", False, "bool", "ports", [
            "Serve HTTPS on C(proxy_tls_published_port) with the routes above; plain HTTP on C(proxy_published_port) "
            "then answers every request with a C(301) redirect to the same URL over HTTPS, except the proxy's health "
            "URL C(/__nocobase_proxy_health).",
            "The certificate and key are C(proxy_tls_cert) and C(proxy_tls_key); when both are empty, a self-signed "
            "pair for C(proxy_tls_subject_alt_names) is generated once on the controller into C(nocobase_secrets_dir) "
            "(C(proxy-tls.crt), C(proxy-tls.key)) with C(community.crypto).",
            "Either way both are copied to C(<proxy_config_dir>/tls/) on the proxy host (the directory mode C(0700), "
            "the key C(0600), never shown in a diff or log) and nginx is reloaded when they change."]),
        Setting("proxy_tls_published_port", "proxy", 13443, "port", "ports", [
            "Host port HTTPS is published on with C(proxy_tls) (address C(nocobase_published_address)), and the port "
            "of the URLs plain HTTP redirects to (left out when it is 443)."]),
        Setting("proxy_tls_container_port", "proxy", 443, "port", "ports",
                "Port nginx serves HTTPS on inside the container."),
    ) + _resources("proxy", "proxy", "256m", "the proxy"),
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
# The prefix of each component's _resources() settings.
RESOURCE_PREFIXES = {component: setting.name[:-len("_memory")] for component, settings in SETTINGS.items()
                     for setting in settings if setting.field == "resources.memory"}
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
                prefix = RESOURCE_PREFIXES[component]
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
    maxmemory = variables["redis_maxmemory"]
    if maxmemory is None and variables["redis_memory"] is not None:
        maxmemory = variables["redis_memory"] * 3 // 4
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
        command=command + (variables["redis_extra_args"] or []),
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
        resources=resources(variables, "redis"), state="healthy", wait_timeout=variables["redis_wait_timeout"])


def postgres(platform, variables):
    """PostgreSQL: the superuser's password a secret variable of the image's entry point."""
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
        resources=resources(variables, "postgres"), state="healthy", wait_timeout=variables["postgres_wait_timeout"])


def proxy(platform, variables):
    """The proxy (nginx), its configuration directory on its host mounted read-only."""
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
        stop_timeout=10, resources=resources(variables, "proxy"), state="started",
        wait_timeout=variables["proxy_wait_timeout"])


def node(role, platform, variables):
    """A NocoBase node, the supervisor or this host's worker: its secrets are secret variables
    (NocoBase reads them from its environment only), its heap sized from its memory limit."""
    entry = _this_node(role, platform, variables)
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
    if variables["nocobase_node_memory"] is not None:
        env["NODE_OPTIONS"] = "--max-old-space-size=%d" % heap_mib(variables["nocobase_node_memory"])
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
        resources=resources(variables, "nocobase_node"),
        # Unpublished, Docker's health check is how the run knows it answers (published, the role signs in).
        state="started" if entry["published_port"] is not None else "healthy",
        wait_timeout=variables["nocobase_health_timeout"])


def agent(platform, variables, image):
    """This host's worker's agent (nocobase_apps_runtime agent), its image built on the worker's
    engine; its secrets are files it reads (AGENT_*_FILE). On Swarm, one agent per worker replica,
    each named after its task's slot."""
    entry = _this_node("worker", platform, variables)
    runtime = platform["runtime"]
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
        stop_timeout=15, resources=resources(variables, "worker_agent"), state="started",
        wait_timeout=variables["worker_available_timeout"])


# The platform-wide variables each builder reads, besides its component's settings (SETTINGS).
VARIABLES = {
    "common": ("nocobase_platform", "nocobase_labels", "nocobase_network", "nocobase_backend_network",
               "nocobase_redis_tls", "nocobase_redis_tls_dir", "nocobase_apps_runtime", "nocobase_key_prefix",
               "nocobase_redis_db", "nocobase_healthcheck_interval", "inventory_hostname"),
    "redis": ("nocobase_redis_published_port",),
    "postgres": (),
    "proxy": (),
    "supervisor": ("nocobase_db_user", "nocobase_timezone", "nocobase_root_email", "nocobase_root_username",
                   "nocobase_extra_env", "nocobase_health_timeout"),
    "agent": ("nocobase_root_email", "nocobase_stale_after", "_common_redis_tls_ca"),
}
VARIABLES["worker"] = VARIABLES["supervisor"]


def variable_names(component):
    return (VARIABLES["common"] + VARIABLES[component]
            + tuple(setting.name for setting in SETTINGS[SETTINGS_OF[component]]))


def build(component, platform, variables, image=None):
    """The spec of `component` on this host (variables: its variable_names(), templated); its settings
    validated (ValueError naming the first wrong ones: preflight says it first)."""
    # An Ansible boolean: "false" from -e or an INI inventory is false (the settings' are read by their kind).
    variables = dict(variables, nocobase_redis_tls=boolean(variables["nocobase_redis_tls"], strict=False))
    variables.update(_values(component, variables))
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
