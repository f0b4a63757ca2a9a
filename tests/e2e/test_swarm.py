"""Docker Swarm from the inventory: three Docker hosts (tests/e2e/multihost.py) made one swarm.

The swarm itself, for running the platform on Docker Swarm (issue 11, item 3): playbooks/swarm.yml
(the role nocobase.multienv.swarm) initialises the swarm on the Redis host's engine and joins the
other two (check mode before that predicts it and makes nothing); with three managers (the group
nocobase_swarm_managers) the other two are promoted; a rerun and a check-mode run change nothing,
the join tokens never appear in a -v run's output, and the swarm carries what the platform's
services need (an overlay network, a Docker secret, a task placed on one inventory host's node, a
port published on that host). swarm_state=absent takes every engine out again.
tests/e2e/test_swarm_platform.py deploys the platform on such a swarm.

The harness hosts' kernel may lack IPVS (a Firecracker guest here): the swarm then has no virtual IP
load balancing and no routing mesh, so the check uses endpoint_mode dnsrr and a port published in
host mode, as the platform's services do.
"""
from __future__ import annotations

import time
import urllib.request

import yaml
from harness import STANDIN_IMAGE, recap_changed, run_playbook
from helpers import wait_for
from multihost import DockerHosts, docker

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _write_inventory(root, hosts, managers=None):
    """Redis and PostgreSQL on host 1, the supervisor and the proxy on host 2, worker env_a on host 3;
    `managers`: the inventory hosts of the group nocobase_swarm_managers (none: no such group)."""
    data, entry, dock = (hosts.addresses[host] for host in hosts.hosts)
    inventory = root / "inventory"
    group_vars = inventory / "group_vars" / "all"
    group_vars.mkdir(parents=True, exist_ok=True)
    groups = {
        "nocobase_redis": {"hosts": {"redis": {"ansible_host": data}}},
        "nocobase_postgres": {"hosts": {"postgres": {"ansible_host": data, "postgres_published_port": 5432}}},
        "nocobase_supervisor": {"hosts": {"supervisor": {"ansible_host": entry, "supervisor_published_port": 14000}}},
        "nocobase_workers": {"hosts": {"worker_a": {"ansible_host": dock, "worker_environment": "env_a",
                                                    "worker_published_port": 15000}}},
        "nocobase_proxy": {"hosts": {"proxy": {"ansible_host": entry}}},
    }
    if managers:
        groups["nocobase_swarm_managers"] = {"hosts": {host: {} for host in managers}}
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": groups}}))
    (group_vars / "connection.yml").write_text(yaml.safe_dump(hosts.connection()))
    (group_vars / "platform.yml").write_text(yaml.safe_dump({
        "nocobase_platform": "nbsw" + hosts.run[:6],
        "nocobase_secrets_dir": str(root / "secrets"),
        "nocobase_redis_published_port": 6379,
    }))
    return inventory


def _swarm(hosts, host):
    """The swarm state of `host`'s engine: (LocalNodeState, NodeID, is a manager)."""
    info = hosts.inner(host, "info", "--format",
                       "{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}} {{.Swarm.ControlAvailable}}").stdout.split()
    return info[0], info[1] if len(info) > 2 else "", info[-1] == "true"


def test_three_docker_hosts_form_a_swarm_rerun_unchanged_and_leave_it(tmp_path):
    timings = {}
    hosts = DockerHosts(tmp_path, count=3)
    try:
        hosts.start({2: [STANDIN_IMAGE]})
        timings.update(hosts.timings)
        data, entry, dock = hosts.hosts
        inventory = _write_inventory(tmp_path, hosts)
        platform = "nbsw" + hosts.run[:6]

        # Check mode first: it predicts the swarm and makes nothing.
        predicted = run_playbook([inventory], "swarm.yml", "--check")
        assert sum(recap_changed(predicted.stdout).values()) > 0, predicted.stdout[-4000:]
        assert {_swarm(hosts, host)[0] for host in hosts.hosts} == {"inactive"}

        started = time.monotonic()
        first = run_playbook([inventory], "swarm.yml", "-v")
        timings["form"] = time.monotonic() - started
        states = {host: _swarm(hosts, host) for host in hosts.hosts}
        assert {state for state, node, manager in states.values()} == {"active"}, states
        assert [states[host][2] for host in hosts.hosts] == [True, False, False], "the Redis host's engine manages"
        nodes = hosts.inner(data, "node", "ls", "--format", "{{.ID}} {{.Hostname}} {{.Status}}").stdout.split("\n")
        assert sorted(line.split()[1:] for line in nodes if line) == [
            ["host1", "Ready"], ["host2", "Ready"], ["host3", "Ready"]], nodes
        for host in hosts.hosts:
            label = hosts.inner(data, "node", "inspect", "-f",
                                '{{index .Spec.Labels "org.nocobase.multienv.platform"}}', states[host][1]).stdout
            assert label.strip() == platform, host

        # Three managers (the group nocobase_swarm_managers): hosts 2 and 3 are promoted, nothing else changes.
        inventory = _write_inventory(tmp_path, hosts, managers=["redis", "supervisor", "worker_a"])
        started = time.monotonic()
        promote = run_playbook([inventory], "swarm.yml", "-v")
        timings["promote"] = time.monotonic() - started
        assert sum(recap_changed(promote.stdout).values()) == 2, promote.stdout[-4000:]  # one change per node
        wait_for(lambda: [_swarm(hosts, host) for host in hosts.hosts] == [(*states[host][:2], True) for host in hosts.hosts],
                 timeout=60, interval=0.5, what="three managers, the same nodes")

        # A rerun and a check-mode run change nothing; the join tokens never show, even with -v.
        started = time.monotonic()
        rerun = run_playbook([inventory], "swarm.yml", "-v")
        timings["rerun"] = time.monotonic() - started
        assert set(recap_changed(rerun.stdout).values()) == {0}, rerun.stdout[-4000:]
        check = run_playbook([inventory], "swarm.yml", "--check")
        assert set(recap_changed(check.stdout).values()) == {0}, check.stdout[-4000:]
        for role in ("worker", "manager"):
            token = hosts.inner(data, "swarm", "join-token", "-q", role).stdout.strip()
            assert token and token not in first.stdout + promote.stdout + rerun.stdout, "a join token in the output"

        # What the platform's services will use: an overlay network, a Docker secret, a task placed on the
        # node of one inventory host (worker_a on host 3), its port published there in host mode.
        secret = "nbsw-secret-" + hosts.run
        hosts.inner(data, "network", "create", "-d", "overlay", "--attachable", platform + "-check")
        docker("exec", "-i", data, "docker", "secret", "create", secret, "-", input="from-a-secret")
        hosts.inner(data, "service", "create", "-d", "--name", platform + "-check", "--network", platform + "-check",
                    "--endpoint-mode", "dnsrr", "--constraint", "node.id==" + states[dock][1],
                    "--secret", "source=%s,target=check" % secret, "--env", "STANDIN_PORTS=13000",
                    "--publish", "mode=host,published=15500,target=13000", STANDIN_IMAGE)
        wait_for(lambda: _answers("http://%s:15500/api/__health_check" % hosts.addresses[dock]), timeout=90,
                 interval=1, what="the check service on host 3")
        task = hosts.inner(dock, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=%s-check" % platform).stdout
        assert task.strip(), "the task runs on host 3"
        assert hosts.inner(dock, "exec", task.split()[0], "cat", "/run/secrets/check").stdout == "from-a-secret"
        hosts.inner(data, "service", "rm", platform + "-check")
        hosts.inner(data, "secret", "rm", secret)
        wait_for(lambda: hosts.inner(data, "network", "rm", platform + "-check", check=False).returncode == 0,
                 timeout=60, interval=1, what="the check network removed")

        # Out again: every engine leaves; a rerun has nothing to do.
        started = time.monotonic()
        run_playbook([inventory], "swarm.yml", "-e", "swarm_state=absent")
        timings["leave"] = time.monotonic() - started
        assert {_swarm(hosts, host)[0] for host in hosts.hosts} == {"inactive"}
        again = run_playbook([inventory], "swarm.yml", "-e", "swarm_state=absent")
        assert set(recap_changed(again.stdout).values()) == {0}, again.stdout[-4000:]
    finally:
        started = time.monotonic()
        hosts.remove()
        timings["remove hosts"] = time.monotonic() - started
        print("swarm timings: " + ", ".join("%s %.1fs" % item for item in timings.items()))


def _answers(url):
    try:
        with _OPENER.open(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False
