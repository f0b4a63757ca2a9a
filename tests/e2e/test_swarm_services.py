"""Redis and PostgreSQL as Docker Swarm services (nocobase_runtime: swarm; issue 11, item 3).

Two Docker hosts (tests/e2e/multihost.py) made one swarm by playbooks/swarm.yml: Redis on host 1 (the
manager), PostgreSQL, the supervisor, a worker and the proxy on host 2. infrastructure.yml then runs
Redis and PostgreSQL as services pinned to their inventory hosts' nodes (endpoint_mode dnsrr, ports in
host mode, on overlay networks): check mode first predicts them and makes nothing; the run puts each
task on its host's node, PostgreSQL's superuser password comes from a Docker secret
(POSTGRES_PASSWORD_FILE) and Redis's users from a secret file, neither in a service's environment nor
in a -v run's output; Redis takes the platform's password, the node databases are made, the nodes'
host reaches Redis by its service name; a rerun and a check-mode run change nothing.
"""
from __future__ import annotations

import json
import time

import yaml
from harness import recap_changed, run_playbook
from multihost import OFFLINE, DockerHosts


def _write_inventory(root, hosts):
    data, dock = (hosts.addresses[host] for host in hosts.hosts)
    inventory = root / "inventory"
    group_vars = inventory / "group_vars" / "all"
    group_vars.mkdir(parents=True, exist_ok=True)
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {
        "nocobase_redis": {"hosts": {"redis": {"ansible_host": data}}},
        "nocobase_postgres": {"hosts": {"postgres": {"ansible_host": dock, "postgres_published_port": 5432}}},
        "nocobase_supervisor": {"hosts": {"supervisor": {"ansible_host": dock, "supervisor_published_port": 14000}}},
        "nocobase_workers": {"hosts": {"worker_a": {"ansible_host": dock, "worker_environment": "env_a",
                                                    "worker_published_port": 15000}}},
        "nocobase_proxy": {"hosts": {"proxy": {"ansible_host": dock}}},
    }}}))
    (group_vars / "images.yml").write_text(yaml.safe_dump(OFFLINE))
    (group_vars / "connection.yml").write_text(yaml.safe_dump(hosts.connection()))
    (group_vars / "platform.yml").write_text(yaml.safe_dump({
        "nocobase_platform": "nbss" + hosts.run[:6],
        "nocobase_runtime": "swarm",
        "nocobase_secrets_dir": str(root / "secrets"),
        "nocobase_redis_published_port": 6379,
    }))
    return inventory


def _running_task(hosts, manager, service):
    """(node hostname, container id) of the service's running task."""
    line = hosts.inner(manager, "service", "ps", "--filter", "desired-state=running", "--no-trunc",
                       "--format", "{{.Node}} {{.CurrentState}}", service).stdout.split("\n")[0].split()
    assert line and line[1] == "Running", (service, line)
    return line[0]


def test_redis_and_postgres_run_as_swarm_services_on_their_hosts_nodes(tmp_path):
    timings = {}
    hosts = DockerHosts(tmp_path, count=2)
    try:
        hosts.start({0: [OFFLINE["redis_image"]], 1: [OFFLINE["postgres_image"]]})
        timings.update(hosts.timings)
        data, dock = hosts.hosts
        inventory = _write_inventory(tmp_path, hosts)
        platform = "nbss" + hosts.run[:6]
        redis, postgres = platform + "-redis", platform + "-postgres"
        started = time.monotonic()
        run_playbook([inventory], "swarm.yml")
        timings["swarm"] = time.monotonic() - started

        # Check mode first: it predicts the services and makes nothing (no service, secret or network).
        started = time.monotonic()
        predicted = run_playbook([inventory], "infrastructure.yml", "--check")
        timings["check first"] = time.monotonic() - started
        assert sum(recap_changed(predicted.stdout).values()) > 0, predicted.stdout[-4000:]
        for kind in ("service", "secret"):
            assert hosts.inner(data, kind, "ls", "-q").stdout.strip() == "", kind
        assert platform not in hosts.inner(data, "network", "ls", "--format", "{{.Name}}").stdout

        started = time.monotonic()
        first = run_playbook([inventory], "infrastructure.yml", "-v")
        timings["deploy"] = time.monotonic() - started

        # Each service's task runs on its inventory host's node, and there only.
        assert _running_task(hosts, data, redis) == "host1"
        assert _running_task(hosts, data, postgres) == "host2"
        containers = {}
        for service, host in ((redis, data), (postgres, dock)):
            listed = hosts.inner(host, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=" + service).stdout.split()
            assert len(listed) == 1, (service, host, listed)
            containers[service] = (host, listed[0])
            other = dock if host == data else data
            assert hosts.inner(other, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=" + service).stdout.strip() == ""
            spec = json.loads(hosts.inner(data, "service", "inspect", service).stdout)[0]["Spec"]
            assert spec["EndpointSpec"]["Mode"] == "dnsrr"
            assert [port["PublishMode"] for port in spec["EndpointSpec"].get("Ports", [])] == ["host"]

        # The passwords come from Docker secrets, never from a service's environment or a -v run's output.
        secrets = tmp_path / "secrets"
        postgres_password = (secrets / "postgres_password").read_text().strip()
        redis_password = (secrets / "redis_password").read_text().strip()
        for service in (redis, postgres):
            task = json.loads(hosts.inner(data, "service", "inspect", service).stdout)[0]["Spec"]["TaskTemplate"]
            assert [secret["SecretName"] for secret in task["ContainerSpec"]["Secrets"]] == [service + (
                "-users_v1" if service == redis else "-password_v1")]
            environment = "\n".join(task["ContainerSpec"].get("Env", []) + task["ContainerSpec"].get("Args", []))
            assert postgres_password not in environment and redis_password not in environment
        assert "POSTGRES_PASSWORD_FILE=/run/secrets/postgres-password" in json.dumps(
            json.loads(hosts.inner(data, "service", "inspect", postgres).stdout))
        for password in (postgres_password, redis_password):
            assert password not in first.stdout + first.stderr, "a password in the -v output"

        # Redis takes the platform's password; the superuser logs in with the secret's password over
        # the network, and the node databases exist; the nodes' host reaches Redis by its service name.
        host, container = containers[redis]
        ping = hosts.inner(host, "exec", "-e", "REDISCLI_AUTH=" + redis_password, container,
                           "redis-cli", "--no-auth-warning", "ping")
        assert ping.stdout.strip() == "PONG"
        host, container = containers[postgres]
        databases = hosts.inner(host, "exec", "-e", "PGPASSWORD=" + postgres_password, container, "psql", "-h",
                                postgres, "-U", "postgres", "-d", "postgres", "-tAc",
                                "SELECT datname FROM pg_database ORDER BY 1").stdout.split()
        assert {"nocobase_supervisor", "nocobase_worker_a"} <= set(databases), databases
        resolved = hosts.inner(host, "exec", container, "getent", "hosts", redis).stdout.split()
        redis_address = json.loads(hosts.inner(data, "inspect", containers[redis][1]).stdout)[0][
            "NetworkSettings"]["Networks"][platform + "-backend"]["IPAddress"]
        assert resolved[:1] == [redis_address], resolved

        # A rerun and a check-mode run change nothing.
        started = time.monotonic()
        rerun = run_playbook([inventory], "infrastructure.yml", "-v")
        timings["rerun"] = time.monotonic() - started
        assert set(recap_changed(rerun.stdout).values()) == {0}, rerun.stdout[-6000:]
        check = run_playbook([inventory], "infrastructure.yml", "--check")
        assert set(recap_changed(check.stdout).values()) == {0}, check.stdout[-6000:]
        assert hosts.inner(data, "ps", "-q").stdout.split() == [containers[redis][1]], "the same Redis task"
    finally:
        started = time.monotonic()
        hosts.remove()
        timings["remove hosts"] = time.monotonic() - started
        print("swarm services timings: " + ", ".join("%s %.1fs" % item for item in timings.items()))
