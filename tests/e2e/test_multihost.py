"""A real multi-host deployment: the platform spread over four Docker hosts reached over SSH.

Redis and PostgreSQL on host 1, the supervisor and the proxy on host 2, worker env_a on host 3 and
env_b on host 4 (tests/e2e/multihost.py makes the hosts). One test, in the order an operator goes:
deploy with site.yml, every app answered through the proxy by the worker of its environment, a rerun
that changes nothing on any host, a worker host scaled down with worker_state: absent, teardown.
Meanwhile a local user of host 3 keeps planting a Dockerfile where the agent's build context was
staged before: the agent image is built from the collection's recipe all the same.
"""
from __future__ import annotations

import json
import time

import redis
from harness import recap_changed
from helpers import wait_for
from multihost import APPS, OFFLINE, DockerHosts, MultiHostPlatform, docker, get, host_images

# The build context directory of earlier releases: fixed, and kept with its owner if it existed.
OLD_BUILD_DIR = "/var/tmp/nocobase-multienv-agent/%s/worker_a"


def plant_dockerfiles(host, platform_name):
    """As user nobody on `host`: make the old build directory first, then replace its Dockerfile
    every 10 ms (for at most 15 minutes) with one that labels the image planted=yes."""
    directory = OLD_BUILD_DIR % platform_name
    script = ("mkdir -p {d} && chmod 777 {d} && printf 'FROM {base}\\nLABEL planted=yes\\n' > /tmp/planted && "
              "timeout 900 sh -c 'while :; do cp /tmp/planted {d}/.p && mv -f {d}/.p {d}/Dockerfile; sleep 0.01; done'"
              ).format(d=directory, base=OFFLINE["nocobase_agent_base_image"])
    docker("exec", "-d", "-u", "nobody", host, "sh", "-c", script)


def test_a_platform_over_four_docker_hosts_deploys_reruns_unchanged_scales_down_and_tears_down(tmp_path):
    timings = {}
    hosts = DockerHosts(tmp_path)
    try:
        hosts.start(host_images())
        timings.update(hosts.timings)
        platform = MultiHostPlatform(tmp_path, hosts, APPS)
        data, entry, dock_a, dock_b = hosts.hosts
        name = platform.name

        plant_dockerfiles(dock_a, name)
        started = time.monotonic()
        platform.playbook("site.yml")
        timings["deploy"] = time.monotonic() - started

        # The agent image of host 3 is the collection's, and its build context is gone.
        agent_image = hosts.inner(dock_a, "inspect", "-f", "{{.Config.Image}}", "%s-agent-env_a" % name).stdout.strip()
        labels = hosts.inner(dock_a, "image", "inspect", "-f", "{{json .Config.Labels}}", agent_image).stdout
        assert "planted" not in labels, labels
        assert docker("exec", dock_a, "ls", OLD_BUILD_DIR % name).stdout.split() == ["Dockerfile"]  # still planted
        leftovers = docker("exec", dock_a, "sh", "-c", "ls -d /tmp/nocobase-agent-* 2>/dev/null", check=False).stdout
        assert leftovers == "", leftovers

        # Each node on its own host's engine, published on that host's address only.
        expected = {
            data: ["%s-postgres" % name, "%s-redis" % name],
            entry: ["%s-proxy" % name, "%s-supervisor" % name],
            dock_a: ["%s-agent-env_a" % name, "%s-worker-env_a" % name],
            dock_b: ["%s-agent-env_b" % name, "%s-worker-env_b" % name],
        }
        for host, containers in expected.items():
            assert platform.labelled(host, "container") == containers, host
            ports = hosts.inner(host, "ps", "--format", "{{.Ports}}").stdout
            assert "0.0.0.0" not in ports and hosts.addresses[host] in ports, (host, ports)

        # Through the proxy on host 2, each app from the worker of its environment on host 3 or 4.
        proxy = platform.PORTS["proxy"]
        assert get(platform.entry, proxy, "/") == (200, "nocobase entry app\n")
        for app, environment in (("crm", "env_a"), ("hr", "env_a"), ("ops", "env_b")):
            status, body = get(platform.entry, proxy, "/apps/%s/admin/" % app)
            assert status == 200, (app, body)
            assert body.startswith("app=%s environment=%s status=running" % (app, environment)), (app, body)
        # hr runs in both environments: env_b's worker on host 4 serves it too.
        status, body = get(platform.dock_b, platform.PORTS["worker"], "/apps/hr/admin/")
        assert status == 200 and body.startswith("app=hr environment=env_b status=running"), body

        control = redis.Redis(host=platform.data, port=platform.PORTS["redis"], password=platform.redis_password,
                              decode_responses=True, socket_timeout=10)
        records = {env: json.loads(record) for env, record in control.hgetall("nocobase:environments").items()}
        assert sorted(records) == ["env_a", "env_b"]
        # Derived from ansible_host: the worker's URLs, and Redis and PostgreSQL on host 1's address.
        worker_b = "http://%s:%d" % (platform.dock_b, platform.PORTS["worker"])
        assert (records["env_b"]["url"], records["env_b"]["proxyUrl"]) == (worker_b, worker_b)
        node_env = hosts.inner(dock_b, "inspect", "-f", "{{json .Config.Env}}", "%s-worker-env_b" % name).stdout
        assert '"DB_HOST=%s"' % platform.data in node_env and '"DB_PORT=5432"' in node_env
        agent_url = hosts.inner(dock_b, "exec", "%s-agent-env_b" % name, "cat",
                                "/run/agent.redis_url").stdout
        assert agent_url.endswith("@%s:%d/0" % (platform.data, platform.PORTS["redis"])), "agent's Redis address"

        # A second run changes nothing on any host.
        started = time.monotonic()
        rerun = platform.playbook("site.yml")
        timings["rerun"] = time.monotonic() - started
        changed = recap_changed(rerun.stdout)
        assert set(changed) >= {"redis", "postgres", "supervisor", "worker_a", "worker_b", "proxy"}, rerun.stdout[-3000:]
        assert set(changed.values()) == {0}, rerun.stdout[-6000:]

        # Host 4's worker marked absent: its containers go from host 4, its record from Redis.
        platform.worker_state["worker_b"] = "absent"
        started = time.monotonic()
        platform.playbook("workers.yml")
        timings["scale-down"] = time.monotonic() - started
        assert platform.labelled(dock_b, "container") == []
        assert sorted(control.hgetall("nocobase:environments")) == ["env_a"]
        assert platform.labelled(dock_a, "container") == expected[dock_a]
        wait_for(lambda: get(platform.entry, proxy, "/apps/crm/admin/")[0] == 200, timeout=30, interval=0.5,
                 what="crm still served through the proxy")
        control.close()

        # Teardown with the volumes: nothing of the platform on any host.
        started = time.monotonic()
        platform.playbook("teardown.yml")
        timings["teardown"] = time.monotonic() - started
        platform.assert_torn_down()
    finally:
        started = time.monotonic()
        hosts.remove()
        timings["remove hosts"] = time.monotonic() - started
        print("multi-host timings: " + ", ".join("%s %.1fs" % item for item in timings.items()))
