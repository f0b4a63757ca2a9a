"""The stand-in platform the end-to-end tests deploy: inventories/offline with an overlay inventory.

The overlay (like the Molecule scenario's) gives each platform its own name, free ports, secrets
directory and the apps under test, so that it never collides with a platform deployed by hand.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import redis
import yaml
from helpers import wait_for

from conftest import COLLECTIONS_PATH, REPO, free_port

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# The fast tests run the NocoBase stand-in (tests/standin) instead of the offline inventory's real NocoBase.
STANDIN_IMAGE = "nocobase-multienv/nocobase-standin:offline"

APPS = [
    {"name": "crm", "title": "CRM", "environments": ["env_a"]},
    {"name": "hr", "title": "HR", "environments": ["env_a", "env_b"]},
]

# The settings of every e2e platform on the stand-in: records stale soon, agents that beat and
# reclaim fast, apps that start in a second, and a teardown that leaves nothing.
STANDIN_SETTINGS = {
    "nocobase_image": STANDIN_IMAGE,
    "nocobase_stale_after": 8,
    "nocobase_teardown_volumes": True,
    "nocobase_teardown_secrets": True,
    "nocobase_extra_env": {"STANDIN_START_SECONDS": "1"},
    "worker_agent_heartbeat_interval": 1,
    "worker_agent_extra_env": {"AGENT_HEALTH_SECONDS": "0.5", "AGENT_LOCK_TTL_MS": "3000", "AGENT_RECLAIM_IDLE_MS": "2000"},
    "apps_wait_timeout": 120,
}


# env_b's worker is sized on its own host, below NocoBase's recommended 4 GB (a preflight warning):
# real NocoBase runs two sub-apps there (crm and hr) within 1.5 GiB and 1.5 CPUs.
WORKER_HOST_VARS = {"worker_b": {"nocobase_node_memory": "1536m", "nocobase_node_cpus": 1.5}}


class Platform:
    def __init__(self, root, extra_vars=None):
        self.root = root
        self.name = "nbe2e" + uuid.uuid4().hex[:6]
        self.extra_vars = extra_vars or {}  # more group_vars/all of the overlay
        self.ports = {key: free_port() for key in ("redis", "supervisor", "env_a", "env_b", "proxy")}
        self.secrets = root / "secrets"
        self.overlay = root / "inventory"
        self.write_overlay()

    def write_overlay(self, apps=None, extra_hosts=None):
        group_vars = self.overlay / "group_vars" / "all"
        host_vars = self.overlay / "host_vars"
        group_vars.mkdir(parents=True, exist_ok=True)
        host_vars.mkdir(parents=True, exist_ok=True)
        (self.overlay / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {
            "nocobase_proxy": {"hosts": {"proxy": {"proxy_published_port": self.ports["proxy"]}}},
            **(extra_hosts or {})}}}))
        (group_vars / "e2e.yml").write_text(yaml.safe_dump({
            **STANDIN_SETTINGS,
            "nocobase_platform": self.name,
            "nocobase_redis_published_port": self.ports["redis"],
            "nocobase_secrets_dir": str(self.secrets),
            "proxy_config_dir": str(self.root / "proxy"),
            "apps_list": APPS if apps is None else apps,
            **self.extra_vars,
        }))
        (host_vars / "supervisor.yml").write_text(yaml.safe_dump({"supervisor_published_port": self.ports["supervisor"]}))
        for env, host in (("env_a", "worker_a"), ("env_b", "worker_b")):
            (host_vars / (host + ".yml")).write_text(yaml.safe_dump(
                dict({"worker_published_port": self.ports[env]}, **WORKER_HOST_VARS.get(host, {}))))

    def playbook(self, playbook, *args, check=True, timeout=900, overlay=None):
        return run_playbook([REPO / "inventories" / "offline", overlay or self.overlay], playbook, *args,
                            check=check, timeout=timeout)

    @property
    def redis_password(self):
        return (self.secrets / "redis_password").read_text().strip()

    @property
    def root_password(self):
        return (self.secrets / "root_password").read_text().strip()

    def sign_in(self, port, account, password):
        """HTTP status of NocoBase's sign-in on a node's published port."""
        request = urllib.request.Request("http://127.0.0.1:%d/api/auth:signIn" % port, method="POST",
                                         data=json.dumps({"account": account, "password": password}).encode(),
                                         headers={"X-Authenticator": "basic", "Content-Type": "application/json"})
        try:
            with _OPENER.open(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def redis(self):
        return redis.Redis(host="127.0.0.1", port=self.ports["redis"], password=self.redis_password,
                           decode_responses=True, socket_timeout=10)

    def get(self, path, headers=None, port=None):
        request = urllib.request.Request("http://127.0.0.1:%d%s" % (port or self.ports["proxy"], path), headers=headers or {})
        try:
            with _OPENER.open(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def container(self, role_suffix):
        return "%s-%s" % (self.name, role_suffix)

    def docker(self, *args, check=True, input=None):  # noqa: A002 - subprocess's name
        return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, check=check, input=input)

    def standin_state(self, env):
        status, body = self.get("/__standin/state", port=self.ports[env])
        assert status == 200, body
        return json.loads(body)

    def status(self, app, env, prefix="nocobase:", client=None):
        raw = (client or self.redis()).hget(prefix + "status:" + app, env)
        return json.loads(raw) if raw else None

    @staticmethod
    def wait(predicate, timeout=60, what="condition"):
        return wait_for(predicate, timeout=timeout, interval=0.25, what=what)


def run_playbook(inventories, playbook, *args, check=True, timeout=900):
    """ansible-playbook of this checkout's playbooks/`playbook` over the inventories, output captured."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))
    command = [str(Path(sys.executable).with_name("ansible-playbook"))]
    for inventory in inventories:
        command += ["-i", str(inventory)]
    command += [str(REPO / "playbooks" / playbook), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError("%s failed (rc %d):\n%s\n%s"
                             % (playbook, result.returncode, result.stdout[-8000:], result.stderr[-3000:]))
    return result


def recap_changed(output):
    """changed= counts of the PLAY RECAP, per host."""
    counts = {}
    for line in output.splitlines():
        if " : ok=" in line and "changed=" in line:
            host = line.split(":")[0].strip()
            counts[host] = int(line.split("changed=")[1].split()[0])
    return counts
