"""The whole platform on Docker Swarm (nocobase_runtime: swarm; issue 11, item 3).

Three Docker hosts (tests/e2e/multihost.py) made one swarm by playbooks/swarm.yml: Redis and
PostgreSQL on host 1 (the manager), the supervisor, the proxy and worker env_b on host 2, worker
env_a on host 3 scaled to two replicas (worker_replicas: 2). One test, in the order an operator goes:
check mode predicts the platform and makes nothing; site.yml runs every component as a service
pinned to its inventory host's node (endpoint_mode dnsrr, ports in host mode), with every secret a
Docker secret, never in a service's spec or a -v run's output; the proxy sends each app to the
worker of its environment, and both replicas of env_a serve its apps; env_a's two agents are two
consumers of one consumer group; a rerun and a check-mode run change nothing; worker env_b marked
absent loses its services, their secrets and its record, while env_a's changed environment
replaces both its replicas before the run goes on; teardown leaves no service, secret, network,
container or volume of the platform.
"""
from __future__ import annotations

import json
import time

import redis
from harness import STANDIN_IMAGE, recap_changed
from helpers import wait_for
from multihost import APPS, OFFLINE, DockerHosts, MultiHostPlatform, get


class SwarmPlatform(MultiHostPlatform):
    """MultiHostPlatform's layout on three hosts, as swarm services; env_a scaled to two replicas."""

    worker_a_env = {}

    def groups(self):
        groups = super().groups()
        worker_a = groups["nocobase_workers"]["hosts"]["worker_a"]
        del worker_a["worker_published_port"]  # its replicas are reached by name
        worker_a.update(worker_replicas=2, worker_url="http://%s-worker-env_a:13000" % self.name,
                        worker_extra_env=self.worker_a_env)
        return groups

    def settings(self):
        return dict(super().settings(), nocobase_runtime="swarm")


def _services(hosts, manager, platform):
    """{service name: (spec, the nodes of its running tasks)} of the platform."""
    names = hosts.inner(manager, "service", "ls", "--format", "{{.Name}}", "--filter",
                        "label=org.nocobase.multienv.platform=" + platform.name).stdout.split()
    services = {}
    for name in names:
        spec = json.loads(hosts.inner(manager, "service", "inspect", name).stdout)[0]["Spec"]
        nodes = hosts.inner(manager, "service", "ps", "--filter", "desired-state=running", "--format", "{{.Node}}",
                            name).stdout.split()
        services[name] = (spec, sorted(nodes))
    return services


def test_the_platform_runs_as_swarm_services_scales_agents_reruns_unchanged_and_tears_down(tmp_path):
    timings = {}
    hosts = DockerHosts(tmp_path, count=3)
    try:
        node = [STANDIN_IMAGE, OFFLINE["nocobase_agent_base_image"]]
        hosts.start({0: [OFFLINE["redis_image"], OFFLINE["postgres_image"]], 1: node + [OFFLINE["proxy_image"]], 2: node})
        timings.update(hosts.timings)
        data, entry, dock = hosts.hosts
        platform = SwarmPlatform(tmp_path, hosts, APPS)
        name = platform.name
        started = time.monotonic()
        platform.playbook("swarm.yml")
        timings["swarm"] = time.monotonic() - started

        # Check mode first: it predicts the platform and makes nothing (no service, secret or network).
        started = time.monotonic()
        predicted = platform.playbook("site.yml", "--check")
        timings["check first"] = time.monotonic() - started
        assert sum(recap_changed(predicted.stdout).values()) > 0, predicted.stdout[-4000:]
        for kind in ("service", "secret"):
            assert hosts.inner(data, kind, "ls", "-q").stdout.strip() == "", kind
        assert name not in hosts.inner(data, "network", "ls", "--format", "{{.Name}}").stdout

        started = time.monotonic()
        first = platform.playbook("site.yml", "-v")
        timings["deploy"] = time.monotonic() - started

        # Every component a service whose tasks run on its inventory host's node only: dnsrr, host-mode ports.
        services = _services(hosts, data, platform)
        expected = {
            "redis": ["host1"], "postgres": ["host1"], "supervisor": ["host2"], "proxy": ["host2"],
            "worker-env_b": ["host2"], "agent-env_b": ["host2"], "worker-env_a": ["host3", "host3"],
            "agent-env_a": ["host3", "host3"],
        }
        assert {service: nodes for service, (spec, nodes) in services.items()} == {
            "%s-%s" % (name, service): nodes for service, nodes in expected.items()}
        for service, (spec, nodes) in services.items():
            assert spec["EndpointSpec"]["Mode"] == "dnsrr", service
            assert {port["PublishMode"] for port in spec["EndpointSpec"].get("Ports", [])} <= {"host"}, service
        for host in (data, entry, dock):  # the containers carry the platform's labels on their engines
            assert platform.labelled(host, "container"), host

        # Every secret a Docker secret: none in a service's environment, arguments or command, nor in the -v output.
        secrets = {path.name: path.read_text().strip() for path in platform.secrets.iterdir()
                   if path.is_file() and not path.name.startswith("verified-")}  # those hold fingerprints of checks
        assert {"redis_password", "postgres_password", "db_password", "root_password", "app_key",
                "aes_secret_key"} <= set(secrets), sorted(secrets)
        for service, (spec, nodes) in services.items():
            container = spec["TaskTemplate"]["ContainerSpec"]
            visible = json.dumps([container.get("Env"), container.get("Args"), container.get("Command"), spec["Labels"]])
            for secret, value in secrets.items():
                assert value not in visible, (service, secret)
        for secret, value in secrets.items():
            assert value not in first.stdout + first.stderr, "%s in the -v output" % secret
        supervisor = services[name + "-supervisor"][0]["TaskTemplate"]["ContainerSpec"]
        assert sorted(secret["File"]["Name"] for secret in supervisor["Secrets"]) == [
            "env.APP_AES_SECRET_KEY", "env.APP_KEY", "env.DB_PASSWORD", "env.INIT_ROOT_PASSWORD"]
        postgres = services[name + "-postgres"][0]["TaskTemplate"]["ContainerSpec"]
        assert [secret["File"]["Name"] for secret in postgres["Secrets"]] == ["env.POSTGRES_PASSWORD"]
        # The same limits as on Docker, from the same spec (the defaults of _workload.SETTINGS).
        mib = 1024 * 1024
        limits = {component: services[name + "-" + component][0]["TaskTemplate"]["Resources"]["Limits"]
                  for component in ("supervisor", "worker-env_a", "agent-env_a", "redis", "postgres", "proxy")}
        assert {component: limit["MemoryBytes"] for component, limit in limits.items()} == {
            "supervisor": 4096 * mib, "worker-env_a": 4096 * mib, "agent-env_a": 256 * mib, "redis": 1024 * mib,
            "postgres": 4096 * mib, "proxy": 256 * mib}
        # Each service carries its spec's hash, so that any change of the spec updates it.
        assert all(len(services[name + "-" + component][0]["Labels"]["org.nocobase.multienv.spec-hash"]) == 24
                   for component in limits)
        supervisor_env = dict(item.split("=", 1) for item in supervisor["Env"])
        assert supervisor_env["NODE_OPTIONS"] == "--max-old-space-size=3584"

        # Through the proxy on host 2, each app from the worker of its environment, reached by service name.
        proxy = platform.PORTS["proxy"]
        assert get(platform.entry, proxy, "/") == (200, "nocobase entry app\n")

        # env_a has two replicas behind its service name: the one that did not carry out an app's start
        # boots the app on its first request (503 "initializing" meanwhile), so each app is asked until
        # it answers, for at most 30 s.
        def answered(app):
            status, body = get(platform.entry, proxy, "/apps/%s/admin/" % app)
            return body if status == 200 else None

        for app, environment in (("crm", "env_a"), ("hr", "env_a"), ("ops", "env_b")):
            body = wait_for(lambda app=app: answered(app), timeout=30, interval=0.5, what="%s answered through the proxy" % app)
            assert body.startswith("app=%s environment=%s status=running" % (app, environment)), (app, body)

        # Both replicas of env_a serve its apps: the one an agent created them on, and the other from
        # the database they share (the stand-in boots an app with autoStart on demand, as NocoBase does).
        replicas = hosts.inner(dock, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=%s-worker-env_a" % name)
        replicas = replicas.stdout.split()
        assert len(replicas) == 2, replicas
        fetch = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:13000/apps/%s/admin/').read().decode())"

        def serves(replica, app):
            answer = hosts.inner(dock, "exec", replica, "python3", "-c", fetch % app, check=False).stdout
            return answer.startswith("app=%s environment=env_a status=running" % app)

        for replica in replicas:
            for app in ("crm", "hr"):
                wait_for(lambda replica=replica, app=app: serves(replica, app), timeout=60, interval=1,
                         what="%s on the replica %s" % (app, replica[:12]))

        # env_a's two agents: one consumer group, two consumers named after their tasks' slots, both reading.
        control = redis.Redis(host=platform.data, port=platform.PORTS["redis"], password=platform.redis_password,
                              decode_responses=True, socket_timeout=10)
        records = {env: json.loads(record) for env, record in control.hgetall("nocobase:environments").items()}
        assert sorted(records) == ["env_a", "env_b"]
        assert records["env_a"]["proxyUrl"] == "http://%s-worker-env_a:13000" % name, records["env_a"]
        assert [group["name"] for group in control.xinfo_groups("nocobase:commands:env_a")] == ["workers"]
        consumers = control.xinfo_consumers("nocobase:commands:env_a", "workers")
        assert sorted(consumer["name"] for consumer in consumers) == [
            "env_a-%s-agent-env_a-1" % name, "env_a-%s-agent-env_a-2" % name], consumers
        wait_for(lambda: all(consumer["idle"] < 30000 for consumer in  # since its last XREADGROUP
                             control.xinfo_consumers("nocobase:commands:env_a", "workers")),
                 timeout=60, interval=1, what="both agents of env_a reading the stream")

        # A rerun and a check-mode run change nothing on any host.
        started = time.monotonic()
        rerun = platform.playbook("site.yml")
        timings["rerun"] = time.monotonic() - started
        changed = recap_changed(rerun.stdout)
        assert set(changed) >= {"redis", "postgres", "supervisor", "worker_a", "worker_b", "proxy"}, rerun.stdout[-3000:]
        assert set(changed.values()) == {0}, rerun.stdout[-6000:]
        check = platform.playbook("site.yml", "--check")
        assert set(recap_changed(check.stdout).values()) == {0}, check.stdout[-6000:]
        assert {service: spec["TaskTemplate"] for service, (spec, nodes) in _services(hosts, data, platform).items()} \
            == {service: spec["TaskTemplate"] for service, (spec, nodes) in services.items()}, "a service changed"

        # Worker env_b marked absent: its services go from the swarm, its record from Redis. In the same
        # run env_a's environment changes: its two replicas are replaced one by one, and the run goes on
        # only with both new ones healthy; env_a still serves.
        platform.worker_state["worker_b"] = "absent"
        platform.worker_a_env = {"STANDIN_STARTUP_SECONDS": "2"}
        started = time.monotonic()
        platform.playbook("workers.yml")
        timings["scale-down and update"] = time.monotonic() - started
        updated = hosts.inner(dock, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=%s-worker-env_a" % name,
                              "--filter", "health=healthy").stdout.split()
        assert len(updated) == 2 and not set(updated) & set(replicas), (updated, replicas)
        inspected = json.loads(hosts.inner(data, "service", "inspect", "%s-worker-env_a" % name).stdout)[0]
        assert inspected["UpdateStatus"]["State"] == "completed", inspected.get("UpdateStatus")
        assert sorted(_services(hosts, data, platform)) == sorted(
            "%s-%s" % (name, service) for service in expected if not service.endswith("env_b"))
        assert sorted(control.hgetall("nocobase:environments")) == ["env_a"]
        left = hosts.inner(data, "secret", "ls", "--format", "{{.Name}}").stdout.split()
        assert left and not [secret for secret in left if "env_b" in secret], left
        wait_for(lambda: get(platform.entry, proxy, "/apps/crm/admin/")[0] == 200, timeout=30, interval=0.5,
                 what="crm still served through the proxy")
        control.close()

        # Teardown with the volumes: nothing of the platform in the swarm or on any host.
        started = time.monotonic()
        platform.playbook("teardown.yml")
        timings["teardown"] = time.monotonic() - started
        assert _services(hosts, data, platform) == {}
        assert hosts.inner(data, "secret", "ls", "-q").stdout.strip() == ""
        platform.assert_torn_down()
    finally:
        started = time.monotonic()
        hosts.remove()
        timings["remove hosts"] = time.monotonic() - started
        print("swarm platform timings: " + ", ".join("%s %.1fs" % item for item in timings.items()))
