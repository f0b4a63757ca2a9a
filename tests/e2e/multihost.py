"""Four Docker hosts on the local engine, reached by Ansible over SSH, for the multi-host tests.

Each host is a container of nocobase-multienv/docker-host (tools/docker-host-image.sh) with its own
dockerd and sshd, on a Docker network of this run's own; its engine keeps its data in an anonymous
volume and gets, by `docker save | docker load`, only the offline images its nodes run. Ansible
reaches the hosts at their addresses on that network as root, with a key pair made for the run. The
controller (this machine) reaches the same addresses, so Redis is published on host 1's address for
the control-plane modules, and the proxy on host 2's for the tests.

The hosts run with every capability the local engine can grant and without seccomp or AppArmor
profiles: `--privileged` asks for every capability of the kernel, which a nested engine (a CI runner
that is itself a container) may not hold; the entry point then makes sysfs and the cgroup
hierarchies writable for dockerd.
"""
from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from harness import STANDIN_IMAGE, STANDIN_SETTINGS, run_playbook
from helpers import wait_for

from conftest import REPO

HOST_IMAGE = "nocobase-multienv/docker-host:offline"
# The apps the multi-host platforms run: crm in env_a, ops in env_b, hr in both.
APPS = [
    {"name": "crm", "title": "CRM", "environments": ["env_a"]},
    {"name": "hr", "title": "HR", "environments": ["env_a", "env_b"]},
    {"name": "ops", "title": "Ops", "environments": ["env_b"]},
]
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
LABEL = "org.nocobase-multienv.test"
OFFLINE = yaml.safe_load((REPO / "inventories" / "offline" / "group_vars" / "all" / "images.yml").read_text())

# Linux capabilities by number (capability.h), for the ones the local engine cannot grant.
CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
)


def _ungrantable_capabilities():
    """Capabilities of the kernel missing from this process's bounding set (the engine's, on CI)."""
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    bounding = next(int(line.split()[1], 16) for line in Path("/proc/self/status").read_text().splitlines()
                    if line.startswith("CapBnd:"))
    return [CAPABILITIES[bit] for bit in range(min(last + 1, len(CAPABILITIES))) if not bounding >> bit & 1]


def get(address, port, path):
    """(HTTP status or None, body or the error) of a GET, without any proxy of the environment."""
    try:
        with _OPENER.open("http://%s:%d%s" % (address, port, path), timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return None, str(exc)


def docker(*args, check=True, timeout=120, **kwargs):
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError("docker %s failed: %s" % (" ".join(args[:3]), result.stderr[-2000:]))
    return result


class DockerHosts:
    """host1 .. hostN: privileged-in-effect containers with dockerd and sshd on a network of their own."""

    def __init__(self, root, count=4):
        self.root = Path(root)
        self.run = uuid.uuid4().hex[:8]
        self.name = "nbmh-" + self.run
        self.label = "%s=multihost-%s" % (LABEL, self.run)
        self.hosts = ["%s-host%d" % (self.name, number) for number in range(1, count + 1)]
        self.addresses = {}
        self.key = self.root / "id_ed25519"
        self.timings = {}

    def start(self, images):
        """Start the hosts; `images`: host index (0-based) -> the images its engine needs."""
        started = time.monotonic()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.name, "-f", str(self.key)],
                       check=True, timeout=30)
        docker("network", "create", "--label", self.label, self.name)
        capabilities = ["--cap-add", "ALL"]
        for capability in _ungrantable_capabilities():
            capabilities += ["--cap-drop", capability]
        for host in self.hosts:
            docker("run", "-d", "--name", host, "--hostname", host.rsplit("-", 1)[1], "--label", self.label,
                   "--network", self.name, *capabilities,
                   "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
                   "--security-opt", "systempaths=unconfined", "--tmpfs", "/run", "--tmpfs", "/tmp",
                   "-v", "/var/lib/docker", HOST_IMAGE)
        for host in self.hosts:
            self.addresses[host] = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                                          host).stdout.strip()
            docker("exec", "-i", host, "sh", "-c", "umask 077; mkdir -p /root/.ssh; cat > /root/.ssh/authorized_keys",
                   input=(self.root / "id_ed25519.pub").read_text())
        for host in self.hosts:
            wait_for(lambda host=host: docker("exec", host, "docker", "info", check=False, timeout=20).returncode == 0,
                     timeout=60, interval=0.5, what="dockerd in %s" % host)
            wait_for(lambda host=host: self.ssh(host, "true").returncode == 0, timeout=60, interval=0.5,
                     what="sshd of %s" % host)
        self.timings["hosts"] = time.monotonic() - started
        started = time.monotonic()
        with ThreadPoolExecutor(len(self.hosts)) as pool:
            for result in pool.map(lambda item: self.load(self.hosts[item[0]], item[1]), images.items()):
                assert result.returncode == 0, result.stderr[-2000:]
        self.timings["images"] = time.monotonic() - started

    def load(self, host, images):
        """`docker save` of the local images into `host`'s engine (layers shared by them go once)."""
        with subprocess.Popen(["docker", "save", *images], stdout=subprocess.PIPE) as save:
            result = subprocess.run(["docker", "exec", "-i", host, "docker", "load", "-q"], stdin=save.stdout,
                                    capture_output=True, text=True, timeout=600, check=False)
            save.stdout.close()
            save.wait(timeout=60)
        return result

    def ssh(self, host, command):
        return subprocess.run(["ssh", "-i", str(self.key), "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                               "-o", "LogLevel=ERROR", "root@" + self.addresses[host], command],
                              capture_output=True, text=True, timeout=30, check=False)

    def connection(self):
        """The inventory variables of Ansible's connection to the hosts (root, the run's key pair)."""
        return {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.key),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
            "ansible_python_interpreter": "/usr/bin/python3",
        }

    def inner(self, host, *args, check=True):
        """`docker` on the engine of `host`."""
        return docker("exec", host, "docker", *args, check=check)

    def remove(self):
        """Every container and network of this run (by its label), their volumes, and the key pair."""
        listed = docker("ps", "-aq", "--filter", "label=" + self.label, check=False).stdout.split()
        if listed:
            docker("rm", "-f", "-v", *listed, check=False, timeout=300)
        docker("network", "rm", self.name, check=False)
        for path in (self.key, self.key.with_name(self.key.name + ".pub")):
            path.unlink(missing_ok=True)


class MultiHostPlatform:
    """The platform of inventories/multihost's layout on four DockerHosts: Redis and PostgreSQL on
    host 1, the supervisor and the proxy on host 2, worker env_a on host 3 and env_b on host 4 (on
    three hosts, env_b on host 2)."""

    PORTS = {"redis": 6379, "postgres": 5432, "supervisor": 14000, "proxy": 13000, "worker": 15000}

    def __init__(self, root, hosts, apps):
        self.root = Path(root)
        self.hosts = hosts
        self.apps = apps
        self.name = "nbmh" + hosts.run[:6]
        self.secrets = self.root / "secrets"
        self.inventory = self.root / "inventory"
        address = [hosts.addresses[host] for host in hosts.hosts]
        self.data, self.entry, self.dock_a = address[:3]
        self.dock_b = address[3] if len(address) > 3 else self.entry
        self.workers = {"worker_a": ("env_a", self.dock_a), "worker_b": ("env_b", self.dock_b)}
        self.worker_state = {"worker_a": "present", "worker_b": "present"}

    def groups(self):
        """The inventory's groups. Only where each host is: the cross-host addresses (published ports, Redis
        and PostgreSQL for the nodes and the controller, the workers' URLs) are derived from ansible_host."""
        workers = {}
        for host, (environment, address) in self.workers.items():
            workers[host] = {"ansible_host": address, "worker_environment": environment,
                             "worker_state": self.worker_state[host], "worker_published_port": self.PORTS["worker"]}
        return {
            "nocobase_redis": {"hosts": {"redis": {"ansible_host": self.data}}},
            "nocobase_postgres": {"hosts": {"postgres": {"ansible_host": self.data,
                                                         "postgres_published_port": self.PORTS["postgres"]}}},
            "nocobase_supervisor": {"hosts": {"supervisor": {
                "ansible_host": self.entry, "supervisor_published_port": self.PORTS["supervisor"]}}},
            "nocobase_workers": {"hosts": workers},
            "nocobase_proxy": {"hosts": {"proxy": {"ansible_host": self.entry,
                                                   "proxy_published_port": self.PORTS["proxy"]}}},
        }

    def settings(self):
        """The platform's settings: the stand-in, short agent timings, a teardown that leaves nothing."""
        return {
            **STANDIN_SETTINGS,
            "nocobase_platform": self.name,
            "nocobase_secrets_dir": str(self.secrets),
            "nocobase_redis_published_port": self.PORTS["redis"],
            "apps_list": self.apps,
        }

    def write_inventory(self):
        group_vars = self.inventory / "group_vars" / "all"
        group_vars.mkdir(parents=True, exist_ok=True)
        (self.inventory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": self.groups()}}))
        (group_vars / "images.yml").write_text(yaml.safe_dump(OFFLINE))
        (group_vars / "connection.yml").write_text(yaml.safe_dump(self.hosts.connection()))
        (group_vars / "platform.yml").write_text(yaml.safe_dump(self.settings()))

    def playbook(self, playbook, *args, check=True, timeout=900):
        self.write_inventory()
        return run_playbook([self.inventory], playbook, *args, check=check, timeout=timeout)

    def labelled(self, host, kind):
        """The names of the platform's containers or volumes on `host`'s engine."""
        args = ["ps", "-a", "--format", "{{.Names}}"] if kind == "container" else ["volume", "ls", "-q"]
        listed = self.hosts.inner(host, *args, "--filter", "label=org.nocobase.multienv.platform=" + self.name).stdout
        return sorted(listed.split())

    def assert_torn_down(self):
        """No container, volume or network of the platform on any host, and no secrets directory."""
        for host in self.hosts.hosts:
            assert self.labelled(host, "container") == [], host
            assert self.labelled(host, "volume") == [], host
            networks = self.hosts.inner(host, "network", "ls", "--format", "{{.Name}}").stdout.split()
            assert not [network for network in networks if network.startswith(self.name)], (host, networks)
        assert not self.secrets.exists()

    @property
    def redis_password(self):
        return (self.secrets / "redis_password").read_text().strip()


def host_images():
    """The offline images each host's engine needs: data, entry, and the two worker hosts."""
    node = [STANDIN_IMAGE, OFFLINE["nocobase_agent_base_image"]]
    return {0: [OFFLINE["redis_image"], OFFLINE["postgres_image"]],
            1: [STANDIN_IMAGE, OFFLINE["proxy_image"]],
            2: node, 3: node}
