# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This file is private to the nocobase.multienv collection and may change at any time.
#
# The platform model and its preflight, as pure functions over plain data (no Ansible, no I/O):
# the action plugin nocobase.multienv.platform reads the inventory, these functions decide.
# Every message names the variable (and the inventory host) to fix, never a secret's value.

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.nocobase.multienv.plugins.module_utils._keyspace import (
    KEY_PREFIX_PATTERN,
    is_environment_name,
)
from ansible_collections.nocobase.multienv.plugins.module_utils._secrets import SECRETS

# The variables a node takes from its own host (hostvars), by inventory group. Their defaults are
# the component role's defaults/main.yml: one place, read by the action plugin.
NODE_VARIABLES = {
    "nocobase_supervisor": ("supervisor", ("supervisor_database", "supervisor_published_port",
                                           "supervisor_container_port", "supervisor_extra_env", "supervisor_image")),
    "nocobase_workers": ("worker", ("worker_environment", "worker_state", "worker_database", "worker_published_port",
                                    "worker_container_port", "worker_url", "worker_proxy_url", "worker_extra_env",
                                    "worker_remove_volumes", "worker_image", "worker_replicas")),
    "nocobase_redis": ("redis", ("redis_image", "redis_published_address")),
    "nocobase_postgres": ("postgres", ("postgres_published_port", "postgres_published_address", "postgres_image",
                                       "postgres_superuser")),
    "nocobase_proxy": ("proxy", ("proxy_config_dir", "proxy_image")),
}
# Where a host's Docker engine is: these decide which hosts share one.
ENDPOINT_VARIABLES = ("nocobase_docker_endpoint", "ansible_connection", "ansible_host")
# Where the other Docker hosts reach a host, and where its ports are published (set per host, or
# derived: see addresses()).
ADDRESS_VARIABLES = ("nocobase_advertise_address", "nocobase_published_address")
_WILDCARDS = ("0.0.0.0", "::")
# What runs the platform's containers (nocobase_runtime): the Docker engines one by one, or their
# Docker Swarm (roles/swarm), as services pinned to the inventory hosts' nodes.
RUNTIMES = ("docker", "swarm")

_PLATFORM_NAME_RE = re.compile(r"[a-z][a-z0-9_-]{0,39}")
_DOCKER_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
_PG_NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_KEY_PREFIX_RE = re.compile(KEY_PREFIX_PATTERN)
_URL_RE = re.compile(r"https?://[^/\s]+.*", re.DOTALL)
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[a-z]{2,}")
_USERNAME_RE = re.compile(r"[A-Za-z0-9_-]{1,50}")
_AES_KEY_RE = re.compile(r"[0-9a-fA-F]{64}")
_REDIS_PASSWORD_RE = re.compile(r"[A-Za-z0-9._~+=,:@%-]{12,}")

# Root passwords that are publicly known (NocoBase's first-install default).
ROOT_PASSWORD_DEFAULTS = ("admin123",)
# Values of APP_KEY that NocoBase ignores or that are publicly known.
APP_KEY_PLACEHOLDERS = ("your-secret-key", "test-key", "test-jwt-secret", "secret")
# Environment variables the roles set themselves; extra env dicts must not override them.
MANAGED_ENV = (
    "APP_MODE", "APP_DISCOVERY_ADAPTER", "APP_PROCESS_ADAPTER", "APP_SUPERVISOR_REDIS_URL", "APP_COMMAND_ADAPTER",
    "APP_COMMAND_REDIS_URL", "APPEND_PRESET_BUILT_IN_PLUGINS", "ENVIRONMENT_NAME", "ENVIRONMENT_URL",
    "ENVIRONMENT_PROXY_URL", "DB_DIALECT", "DB_HOST", "DB_PORT", "DB_DATABASE", "DB_USER", "DB_PASSWORD", "APP_KEY",
    "APP_AES_SECRET_KEY", "INIT_ROOT_EMAIL", "INIT_ROOT_USERNAME", "INIT_ROOT_PASSWORD", "TZ",
)


def _unset(value):
    return value is None or value == ""


def is_port(value):
    if isinstance(value, bool):
        return False
    text = str(value)
    return text.isdigit() and len(text) <= 5 and 1 <= int(text) <= 65535


def _fullmatch(regex, value):
    return isinstance(value, str) and regex.fullmatch(value) is not None


def endpoint(host, variables):
    """The Docker engine a host's containers run on: hosts with the same endpoint share one."""
    if not _unset(variables.get("nocobase_docker_endpoint")):
        return str(variables["nocobase_docker_endpoint"])
    if variables.get("ansible_connection") == "local":
        return "localhost"
    return str(variables.get("ansible_host") or host)


def advertise_address(host, variables):
    """The address the other Docker hosts reach a host at: nocobase_advertise_address, else
    ansible_host (or the inventory name) of a host reached over a connection, else 127.0.0.1."""
    if not _unset(variables.get("nocobase_advertise_address")):
        return str(variables["nocobase_advertise_address"])
    if variables.get("ansible_connection") == "local":
        return "127.0.0.1"
    return str(variables.get("ansible_host") or host)


def is_loopback(hostname):
    """Whether a host name or address names this machine only (so cannot cross hosts)."""
    name = str(hostname or "").strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _is_ipv4(text):
    """IPv4 only: addresses go into URLs and Docker port specs unbracketed."""
    try:
        ipaddress.IPv4Address(str(text))
        return True
    except ValueError:
        return False


def reach(advertised, bound):
    """Where other hosts reach a port bound to `bound` on a host they reach at `advertised`."""
    return advertised if bound in _WILDCARDS else bound


def _url_host(url):
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _port_suffix(port, default):
    return "" if str(port) == str(default) else ":%s" % port


def build(settings, groups, hosts):
    """The platform model: every node of the inventory with what the roles need, defaults applied.

    settings: the platform-wide nocobase_* variables; groups: inventory group -> hosts; hosts: host
    -> its node variables (NODE_VARIABLES, defaults already applied) and ENDPOINT_VARIABLES.
    """
    prefix = settings["nocobase_container_prefix"]
    # On Docker Swarm (nocobase_runtime: swarm) every service reaches the others by name on the
    # platform's overlay networks, whatever node it runs on: nothing "crosses" engines by address.
    swarm = settings.get("nocobase_runtime", "docker") == "swarm"
    endpoints, addresses, published_addresses = {}, {}, {}
    for group in sorted(groups):
        if group.startswith("nocobase_"):
            for host in groups[group]:
                endpoints[host] = endpoint(host, hosts[host])
                addresses[host] = advertise_address(host, hosts[host])
    # Several Docker engines: ports are published on each host's advertise address (which the other
    # hosts reach), else on the loopback interface; nocobase_published_address of a host overrides.
    multihost = len(set(endpoints.values())) > 1
    for host in endpoints:
        explicit = hosts[host].get("nocobase_published_address")
        published_addresses[host] = (str(explicit) if not _unset(explicit)
                                     else addresses[host] if multihost else "127.0.0.1")
    consumers = {endpoints[host] for group in ("nocobase_supervisor", "nocobase_proxy")
                 for host in groups.get(group, [])}
    workers = []
    for host in groups.get("nocobase_workers", []):
        hv = hosts[host]
        environment = None if _unset(hv.get("worker_environment")) else str(hv["worker_environment"])
        name = environment if environment is not None else host
        container = "%s-worker-%s" % (prefix, name)
        port = hv.get("worker_published_port")
        container_port = hv.get("worker_container_port")
        crosses = bool(consumers - {endpoints[host]}) and not swarm  # the supervisor or the proxy is on another engine
        url = hv.get("worker_url")
        reached_at = reach(addresses[host], published_addresses[host])  # its published ports, from other hosts
        if _unset(url) and port is not None:
            public = settings["nocobase_public_hostname"]
            url = "http://%s:%s" % (reached_at if multihost and is_loopback(public) else public, port)
        proxy_url = hv.get("worker_proxy_url")
        proxy_url_set = not _unset(proxy_url)
        if not proxy_url_set:
            if crosses and port is not None:  # through its published port, at its host's address
                proxy_url = "http://%s:%s" % (reached_at, port)
            else:
                proxy_url = "http://%s%s" % (container, _port_suffix(container_port, 80))
        workers.append({
            "host": host,
            "environment": environment,
            "state": hv.get("worker_state"),
            "database": hv.get("worker_database"),
            "published_port": port,
            "container_port": container_port,
            "url": url,
            "proxy_url": proxy_url,
            "proxy_url_set": proxy_url_set,
            "crosses": crosses,
            "container": container,
            "image": hv.get("worker_image"),
            "agent_container": "%s-agent-%s" % (prefix, name),
            "volume": container + "-storage",
            "endpoint": endpoint(host, hv),
            "extra_env": hv.get("worker_extra_env"),
            "remove_volumes": boolean(hv.get("worker_remove_volumes") or False, strict=False),
            "replicas": hv.get("worker_replicas", 1),
            "record": {"name": environment, "url": url, "proxy_url": proxy_url},
        })
    supervisor_hosts = list(groups.get("nocobase_supervisor", []))
    supervisor = None
    if supervisor_hosts:
        host = supervisor_hosts[0]
        hv = hosts[host]
        port = hv.get("supervisor_published_port")
        proxy_endpoints = {endpoints[proxy] for proxy in groups.get("nocobase_proxy", [])}
        crosses = bool(proxy_endpoints - {endpoints[host]}) and not swarm  # the proxy is on another engine
        supervisor = {
            "host": host,
            "database": hv.get("supervisor_database"),
            "published_port": port,
            "container_port": hv.get("supervisor_container_port"),
            # Where the proxy sends what is not an app's: by name on its engine, else its published port.
            "proxy_url": ("http://%s:%s" % (reach(addresses[host], published_addresses[host]), port)
                          if crosses and port is not None else
                          "http://%s-supervisor:%s" % (prefix, hv.get("supervisor_container_port"))),
            "crosses": crosses,
            "container": prefix + "-supervisor",
            "image": hv.get("supervisor_image"),
            "volume": prefix + "-supervisor-storage",
            "endpoint": endpoint(host, hv),
            "extra_env": hv.get("supervisor_extra_env"),
        }
    redis_hosts = list(groups.get("nocobase_redis", []))
    postgres_hosts = list(groups.get("nocobase_postgres", []))
    proxy_hosts = list(groups.get("nocobase_proxy", []))
    engine_images = _engine_images(settings, groups, hosts, endpoints)
    # Every image the platform's containers run or are built from, and the agent's repository (its
    # tags name recipes).
    images = {str(hosts[host][name]) for group, (dummy, names) in NODE_VARIABLES.items() for host in groups.get(group, [])
              for name in names if name.endswith("_image") and not _unset(hosts[host].get(name))}
    images.update(entry["image"] for wanted in engine_images.values() for entry in wanted)
    images.add(str(settings["nocobase_agent_image"]))
    nodes = ([supervisor] if supervisor else []) + [w for w in workers if w["state"] != "absent"]
    redis = _service(settings, hosts, redis_hosts, "redis", settings["nocobase_redis_published_port"], nodes,
                     endpoints, addresses, published_addresses, multihost, swarm)
    postgres = _service(settings, hosts, postgres_hosts, "postgres",
                        hosts[postgres_hosts[0]].get("postgres_published_port") if postgres_hosts else None, nodes,
                        endpoints, addresses, published_addresses, multihost, swarm)
    # Redis as the control-plane modules reach it (nocobase_control_redis_host, else where it is published).
    control = settings.get("nocobase_control_redis_host")
    if _unset(control):
        control = reach(addresses[redis_hosts[0]], redis["published_address"]) if redis_hosts else "127.0.0.1"
    redis["control_host"] = str(control)
    return {
        "platform": settings["nocobase_platform"],
        "runtime": "swarm" if swarm else "docker",
        "endpoints": endpoints,
        "addresses": addresses,
        "published_addresses": published_addresses,
        "multihost": multihost,
        "images": sorted(images),
        "engine_images": engine_images,
        "supervisor": supervisor,
        "supervisor_hosts": supervisor_hosts,
        "workers": workers,
        # Where the inventory says each present worker's environment is: the proxy routes there only.
        "expected_environments": {worker["environment"]: {"url": worker["url"] or None, "proxy_url": worker["proxy_url"]}
                                  for worker in workers if worker["state"] != "absent" and worker["environment"]},
        "nodes": nodes,
        "redis": redis,
        "postgres": dict(postgres, superuser=hosts[postgres_hosts[0]].get("postgres_superuser") if postgres_hosts else None),
        "proxy": {
            "hosts": proxy_hosts,
            "config_dir": hosts[proxy_hosts[0]].get("proxy_config_dir") if proxy_hosts else None,
            "container": prefix + "-proxy",
        },
    }


def _engine_images(settings, groups, hosts, endpoints):
    """Docker engine -> the images it needs, each {image, hosts (whose containers run it, or whose
    agent image is built from it), build (only built from: the agent's base image)}, by image.

    Not the agent image itself: each worker's engine builds it. Not the images of absent workers.
    """
    needed = {}  # (endpoint, image) -> {"hosts": [...], "build": bool}

    def need(host, image, build=False):
        if _unset(image):
            return
        entry = needed.setdefault((endpoints[host], str(image)), {"hosts": [], "build": True})
        entry["build"] = entry["build"] and build
        if host not in entry["hosts"]:
            entry["hosts"].append(host)

    for group, (dummy, names) in NODE_VARIABLES.items():
        for host in groups.get(group, []):
            if group == "nocobase_workers" and hosts[host].get("worker_state") == "absent":
                continue
            for name in names:
                if name.endswith("_image"):
                    need(host, hosts[host].get(name))
            if group == "nocobase_workers" and settings.get("nocobase_apps_runtime", "agent") == "agent":
                need(host, settings.get("nocobase_agent_base_image"), build=True)
    engine_images = {}
    for (where, image), entry in sorted(needed.items()):
        engine_images.setdefault(where, []).append(dict(entry, image=image))
    return engine_images


def _service(settings, hosts, service_hosts, name, published_port, nodes, endpoints, addresses, published_addresses,
             multihost, swarm=False):
    """Redis or PostgreSQL: where it is published, and where the NocoBase containers reach it."""
    container = "%s-%s" % (settings["nocobase_container_prefix"], name)
    service = {"hosts": service_hosts, "endpoint": None, "published_port": published_port, "container": container,
               "published_address": None, "crosses": False,
               "node_host": settings["nocobase_%s_host" % name], "node_port": settings.get("nocobase_%s_port" % name)}
    if not service_hosts:
        return service
    host = service_hosts[0]
    explicit = hosts[host].get("%s_published_address" % name)
    # Left unset: on one Docker engine the loopback interface, whatever the nodes publish on (nothing
    # outside the host needs Redis or PostgreSQL); across engines where the host publishes its ports.
    service.update(endpoint=endpoints[host],
                   published_address=(str(explicit) if not _unset(explicit)
                                      else published_addresses[host] if multihost else "127.0.0.1"),
                   crosses=any(node["endpoint"] != endpoints[host] for node in nodes) and not swarm)
    # Nodes on other engines cannot resolve the container's name: left at the default, they reach
    # the service at its host's advertise address, on its published port.
    if service["crosses"] and service["node_host"] == container and published_port is not None:
        service.update(node_host=reach(addresses[host], service["published_address"]), node_port=published_port)
    return service


def present_workers(model):
    return [w for w in model["workers"] if w["state"] == "present"]


def preflight(settings, model):
    """Every problem of the inventory that can be seen before any container changes, as messages."""
    errors = []
    s = settings
    if not _fullmatch(_PLATFORM_NAME_RE, s["nocobase_platform"]):
        errors.append("nocobase_platform %r is not a valid platform name (lower-case letters, digits, '_' and '-', "
                      "starting with a letter, at most 40 characters)" % (s["nocobase_platform"],))
    for var in ("nocobase_network", "nocobase_backend_network", "nocobase_container_prefix"):
        if not _fullmatch(_DOCKER_NAME_RE, s[var]):
            errors.append("%s %r is not a valid Docker name" % (var, s[var]))
    if not _fullmatch(_PG_NAME_RE, s["nocobase_db_user"]):
        errors.append("nocobase_db_user %r is not a valid PostgreSQL role name (lower-case letters, digits and '_', "
                      "at most 63 characters)" % (s["nocobase_db_user"],))
    if not _fullmatch(_KEY_PREFIX_RE, s["nocobase_key_prefix"]):
        errors.append("nocobase_key_prefix %r must be one segment of letters, digits, '_', '.' or '-' ending in ':' "
                      "(so that it cannot overlap another platform's keys)" % (s["nocobase_key_prefix"],))
    if s.get("nocobase_runtime", "docker") not in RUNTIMES:
        errors.append("nocobase_runtime %r must be one of %s" % (s["nocobase_runtime"], ", ".join(RUNTIMES)))
    if s["nocobase_image_pull"] not in ("never", "missing", "always"):
        errors.append("nocobase_image_pull must be one of never, missing, always")
    if s["nocobase_redis_published_port"] is not None and not is_port(s["nocobase_redis_published_port"]):
        errors.append("nocobase_redis_published_port %r is not a port number" % (s["nocobase_redis_published_port"],))
    if not _fullmatch(_EMAIL_RE, s["nocobase_root_email"]):
        errors.append("nocobase_root_email %r is not an email address" % (s["nocobase_root_email"],))
    if not _fullmatch(_USERNAME_RE, s["nocobase_root_username"]):
        errors.append("nocobase_root_username %r must be 1 to 50 letters, digits, '_' or '-'"
                      % (s["nocobase_root_username"],))

    errors += _extra_env_errors(s, model)
    if model["runtime"] == "swarm":
        errors += _service_name_errors(model)
    supervisor = model["supervisor"]
    if len(model["supervisor_hosts"]) > 1:
        errors.append("group nocobase_supervisor has %d hosts (%s); a platform has exactly one supervisor"
                      % (len(model["supervisor_hosts"]), ", ".join(model["supervisor_hosts"])))
    databases = []  # (name, variable)
    ports = []  # (endpoint, port, variable)
    if supervisor:
        where = " of " + supervisor["host"]
        databases.append((supervisor["database"], "supervisor_database" + where))
        if supervisor["published_port"] is not None:
            ports.append((supervisor["endpoint"], supervisor["published_port"], "supervisor_published_port" + where))
        errors += _node_errors("supervisor", supervisor, where)

    seen_environments = {}
    for worker in model["workers"]:
        where = " of " + worker["host"]
        environment = worker["environment"]
        if environment is None:
            errors.append("worker_environment%s is not set: every host of nocobase_workers names its environment "
                          "(ENVIRONMENT_NAME)" % where)
        elif not is_environment_name(environment):
            errors.append("worker_environment %r%s is not a valid environment name (lower-case letters, digits, '_' and "
                          "'-', starting with a letter, at most 63 characters; not an nginx word such as default or "
                          "include)" % (environment, where))
        elif environment in seen_environments:
            errors.append("worker_environment %r%s is also the environment of %s: environment names must be unique"
                          % (environment, where, seen_environments[environment]))
        else:
            seen_environments[environment] = worker["host"]
        if worker["state"] not in ("present", "absent"):
            errors.append("worker_state %r%s must be present or absent" % (worker["state"], where))
        databases.append((worker["database"], "worker_database" + where))
        errors += _node_errors("worker", worker, where)
        if worker["state"] != "present":
            continue
        if worker["published_port"] is not None:
            ports.append((worker["endpoint"], worker["published_port"], "worker_published_port" + where))
        errors += _replicas_errors(worker, where, s.get("nocobase_runtime", "docker"))
        if _unset(worker["url"]):
            errors.append("worker_url%s is not set (and there is no worker_published_port to derive it from): every "
                          "worker needs its ENVIRONMENT_URL" % where)
        elif not _fullmatch(_URL_RE, worker["url"]):
            errors.append("worker_url %r%s is not an absolute http:// or https:// URL" % (worker["url"], where))
        if not _fullmatch(_URL_RE, worker["proxy_url"]):
            errors.append("worker_proxy_url %r%s is not an absolute http:// or https:// URL"
                          % (worker["proxy_url"], where))
        elif worker["crosses"] and not worker["proxy_url_set"] and worker["published_port"] is None:
            errors.append("worker_proxy_url%s must be set: the worker runs on another Docker host (%s) than the "
                          "supervisor or the proxy, which cannot resolve its container name, and it publishes no "
                          "port (worker_published_port) to derive it from" % (where, worker["endpoint"]))
        elif worker["crosses"] and is_loopback(_url_host(worker["proxy_url"])):
            errors.append("worker_proxy_url %r%s names this machine only, but the supervisor or the proxy runs on "
                          "another Docker host: use an address of %s that they reach (nocobase_advertise_address)"
                          % (worker["proxy_url"], where, worker["host"]))
        if worker["crosses"] and not _unset(worker["url"]) and is_loopback(_url_host(worker["url"])):
            errors.append("worker_url %r%s names this machine only, but the supervisor runs on another Docker host: "
                          "use a name or address of %s that they reach (nocobase_public_hostname, "
                          "nocobase_advertise_address)" % (worker["url"], where, worker["host"]))

    supervisor = model["supervisor"]
    if supervisor and supervisor["crosses"]:
        if supervisor["published_port"] is None:
            errors.append("supervisor_published_port must be set: the proxy runs on another Docker host than the "
                          "supervisor (%s), and reaches it only at a published port" % supervisor["endpoint"])
        elif is_loopback(_url_host(supervisor["proxy_url"])):
            where = (_url_host(supervisor["proxy_url"]), supervisor["host"], supervisor["host"])
            errors.append("the supervisor publishes its port on %s of %s only, but the proxy runs on another Docker "
                          "host: set nocobase_advertise_address of %s to an address the proxy reaches (or "
                          "nocobase_published_address)" % where)

    reported = set()
    for name, var in databases:
        users = [other for other_name, other in databases if other_name == name]
        if len(users) > 1 and name not in reported:
            reported.add(name)
            errors.append("database %r is used by %s: every node needs its own database" % (name, " and ".join(users)))

    redis, postgres = model["redis"], model["postgres"]
    if s["nocobase_redis_published_port"] is not None and redis["endpoint"] is not None:
        ports.append((redis["endpoint"], s["nocobase_redis_published_port"], "nocobase_redis_published_port"))
    if postgres["published_port"] is not None:
        var = "postgres_published_port of " + postgres["hosts"][0]
        if not is_port(postgres["published_port"]):
            errors.append("postgres_published_port %r of %s is not a port number"
                          % (postgres["published_port"], postgres["hosts"][0]))
        ports.append((postgres["endpoint"], postgres["published_port"], var))
    published = {}
    for where, port, var in ports:
        key = (where, str(port))
        if key in published:
            errors.append("%s publishes port %s on %s, which %s publishes already" % (var, port, where, published[key]))
        else:
            published[key] = var

    for service, var, label, port_var in (
            (redis, "nocobase_redis_host", "Redis", "nocobase_redis_published_port"),
            (postgres, "nocobase_postgres_host", "PostgreSQL", "postgres_published_port")):
        if not service["crosses"]:
            continue
        if service["node_host"] == service["container"]:
            errors.append("%s is not published (%s) and some NocoBase nodes run on other Docker hosts than %s (%s), "
                          "which cannot resolve its container name: publish it, or set %s to an address of the %s "
                          "host" % (label, port_var, label, service["endpoint"], var, label))
        elif is_loopback(service["published_address"]):
            errors.append("%s is published on %s of %s only, but some NocoBase nodes run on other Docker hosts: set "
                          "nocobase_advertise_address of %s to an address they reach (or %s_published_address)" % (
                              label, service["published_address"], service["hosts"][0], service["hosts"][0],
                              label.lower().replace("postgresql", "postgres")))
        elif is_loopback(service["node_host"]):
            errors.append("%s %r names this machine only, but some NocoBase nodes run on other Docker hosts than %s "
                          "(%s): use an address of the %s host that they reach" % (
                              var, service["node_host"], label, service["endpoint"], label))
    publishing = set(model["proxy"]["hosts"][:1]) | {node["host"] for node in model["nodes"] if node["published_port"] is not None}
    publishing |= {service["hosts"][0] for service in (redis, postgres) if service["hosts"] and service["published_port"] is not None}
    for host, address in sorted(model["published_addresses"].items()):
        if host in publishing and not _is_ipv4(address):
            errors.append("%s publishes its ports on %r, which is not an IPv4 address (Docker binds published ports "
                          "to addresses only, and the URLs made of them take IPv4): set nocobase_advertise_address or "
                          "nocobase_published_address of %s to an IPv4 address of its host" % (host, address, host))
    if model["workers"] and _unset(s["nocobase_control_redis_url"]) and s["nocobase_redis_published_port"] is None:
        errors.append("nocobase_control_redis_url is not set and Redis is not published (nocobase_redis_published_port): "
                      "the worker role needs to reach Redis from nocobase_control_host to register environments")
    return errors


def _node_errors(role, node, where):
    errors = []
    if not _fullmatch(_PG_NAME_RE, node["database"]):
        errors.append("%s_database %r%s is not a valid database name (lower-case letters, digits and '_', at most 63 "
                      "characters)" % (role, node["database"], where))
    if not is_port(node["container_port"]):
        errors.append("%s_container_port %r%s is not a port number" % (role, node["container_port"], where))
    port = node["published_port"]
    if port is not None and not is_port(port) and (role == "supervisor" or node["state"] == "present"):
        errors.append("%s_published_port %r%s is not a port number" % (role, port, where))
    return errors


def _replicas_errors(worker, where, runtime):
    """worker_replicas: a whole number, more than 1 only on Docker Swarm and without a published port."""
    replicas = worker["replicas"]
    if isinstance(replicas, bool) or not isinstance(replicas, int) and not str(replicas).isdigit() \
            or int(replicas) < 1:
        return ["worker_replicas %r%s must be a whole number of at least 1" % (replicas, where)]
    if int(replicas) == 1:
        return []
    if runtime != "swarm":
        return ["worker_replicas %s%s needs nocobase_runtime swarm: on docker a worker is one container"
                % (replicas, where)]
    if worker["published_port"] is not None:
        return ["worker_replicas %s%s cannot go with worker_published_port: its replicas would publish the same port "
                "on one node (leave the port unset; the proxy and the supervisor reach the worker by name)"
                % (replicas, where)]
    return []


def _service_name_errors(model):
    """Docker Swarm: a service name has at most 63 characters, a task's hostname 64 (an agent's is its
    service's name, '-' and its slot), so every service name of the platform has at most 60."""
    names = [(model[service]["container"], service) for service in ("redis", "postgres", "proxy")]
    if model["supervisor"]:
        names.append((model["supervisor"]["container"], "the supervisor"))
    for worker in model["workers"]:
        if worker["state"] == "present":
            names += [(worker["container"], "the worker of " + worker["host"]),
                      (worker["agent_container"], "the agents of " + worker["host"])]
    return ["the swarm service %r of %s has %d characters, more than 60: shorten nocobase_container_prefix or "
            "worker_environment" % (name, what, len(name)) for name, what in names if len(name) > 60]


def _extra_env_errors(settings, model):
    errors = []
    envs = [("nocobase_extra_env", "", settings["nocobase_extra_env"])]
    if model["supervisor"]:
        envs.append(("supervisor_extra_env", " of " + model["supervisor"]["host"], model["supervisor"]["extra_env"]))
    envs += [("worker_extra_env", " of " + w["host"], w["extra_env"]) for w in model["workers"]]
    for var, where, env in envs:
        if not isinstance(env, dict):
            errors.append("%s%s must be a dictionary of environment variables" % (var, where))
            continue
        for key in env:
            upper = str(key).upper()
            if "ADPATER" in upper:
                errors.append("%s%s has the misspelt key %r: NocoBase ignores it silently; the roles set "
                              "APP_COMMAND_ADAPTER themselves" % (var, where, key))
            elif upper in MANAGED_ENV:
                errors.append("%s%s sets %r, which the roles manage; use the role variables for it" % (var, where, key))
    return errors


def secret_errors(secrets, missing_ok=False):
    """What is wrong with the platform secrets (name -> value, None when not set); a missing one is
    wrong unless it will be generated (`missing_ok`)."""
    errors = []
    for secret in SECRETS:
        if secrets.get(secret["name"]) is None and not missing_ok:
            errors.append("%s is not set and nocobase_secrets_generate is false: set it (from vault) or allow "
                          "generation" % secret["var"])
    aes_key, app_key = secrets.get("aes_secret_key"), secrets.get("app_key")
    if aes_key is not None and not _fullmatch(_AES_KEY_RE, aes_key):
        errors.append("nocobase_aes_secret_key must be exactly 64 hexadecimal characters (a 32-byte AES-256 key)")
    if app_key is not None and (len(app_key) < 16 or app_key in APP_KEY_PLACEHOLDERS):
        errors.append("nocobase_app_key must be a secret of at least 16 characters, not a documentation placeholder")
    redis_password = secrets.get("redis_password")
    if redis_password is not None and not _fullmatch(_REDIS_PASSWORD_RE, redis_password):
        errors.append("nocobase_redis_password must be at least 12 characters of A-Z a-z 0-9 . _ ~ + = , : @ % - "
                      "(it is passed on the redis-server command line)")
    if secrets.get("root_password") in ROOT_PASSWORD_DEFAULTS:
        errors.append("nocobase_root_password is NocoBase's publicly known first-install password: whoever reaches a "
                      "node would be root; set another one or leave it unset to generate one")
    for name, var in (("postgres_password", "nocobase_postgres_password"), ("db_password", "nocobase_db_password"),
                      ("root_password", "nocobase_root_password")):
        value = secrets.get(name)
        if value is not None and (len(value) < 8 or re.search(r"[\x00\n\r]", value)):
            errors.append("%s must be at least 8 characters, on one line" % var)
    return errors
