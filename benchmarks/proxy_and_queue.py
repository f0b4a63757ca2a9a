"""Proxy and start-queue benchmark: prints figures, asserts nothing.

From one run against a real redis-server on a free 127.0.0.1 port:
  1. proxy config rendering (lookup nocobase.multienv.records + the proxy role's template through
     ansible.builtin.template) for 10, 1,000 and 10,000 apps: time and bytes of config, with
     `nginx -t` on the largest file when an nginx binary or the offline nginx image is at hand;
  2. start-queue throughput: 1,000 starts enqueued by one nocobase.multienv.app_command task
     (list form), drained by two worker agents (roles/worker/files/agent/agent.py, one per
     environment) acting on two NocoBase stand-ins (tests/standin/server.py, the fake NocoBase
     HTTP API): enqueue time, drain time, starts per second.

Usage: .venv/bin/python benchmarks/proxy_and_queue.py [--sizes 10,1000,10000] [--starts 1000]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "integration"))
from conftest import COLLECTIONS_PATH, RedisServer, free_port  # noqa: E402  (also links the collection)
from helpers import producer  # noqa: E402

from ansible_collections.nocobase.multienv.plugins.module_utils._records import encode  # noqa: E402

RENDER = """
- name: Render the proxy config
  hosts: localhost
  gather_facts: false
  vars:
    nocobase_platform: bench
    __proxy_supervisor_url: http://bench-supervisor:80
    __proxy_app_name_regex: "[a-z][a-z0-9_]{0,62}"
    proxy_tls: false
    proxy_maintenance: false
    proxy_container_port: 80
    proxy_resolver: 127.0.0.11
    proxy_client_max_body_size: 100m
    proxy_read_timeout: 600s
  tasks:
    - name: Mark start
      ansible.builtin.set_fact:
        t0: "{{ now().timestamp() }}"
    - name: Render from the records in Redis
      ansible.builtin.template:
        src: "{{ template }}"
        dest: "{{ out }}"
        mode: "0644"
      vars:
        __proxy_apps: "{{ query('nocobase.multienv.records', 'apps', redis_url=url, key_prefix=prefix) }}"
    - name: Report
      ansible.builtin.copy:
        dest: "{{ out }}.seconds"
        content: "{{ now().timestamp() - t0 | float }}"
        mode: "0644"
"""

QUEUE = """
- name: Enqueue starts
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Mark start
      ansible.builtin.set_fact:
        t0: "{{ now().timestamp() }}"
    - name: One task, every start
      nocobase.multienv.app_command:
        redis_url: "{{ url }}"
        key_prefix: "{{ prefix }}"
        apps: "{{ names }}"
        command: start
    - name: Report
      ansible.builtin.copy:
        dest: "{{ out }}"
        content: "{{ [t0 | float, now().timestamp()] | to_json }}"
        mode: "0644"
"""


def playbook(work, text, extra):
    path = work / "play.yml"
    path.write_text(text)
    (work / "vars.json").write_text(json.dumps(dict(extra, ansible_python_interpreter=sys.executable)))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,", "-c", "local",
                    str(path), "-e", "@" + str(work / "vars.json")], env=env, check=True,
                   stdout=subprocess.DEVNULL, timeout=1800)


def load_apps(plane, prefix, count):
    """Environments and apps straight into Redis; what is timed is the rendering, not this."""
    client = plane.client
    client.pipeline([("DEL", plane.keys.apps)])
    client.pipeline([("HSET", plane.keys.environments, "env_a", encode({"name": "env_a", "url": "http://w-a:80"}),
                      "env_b", encode({"name": "env_b", "url": "http://w-b:80"})),
                     ("HSET", plane.keys.heartbeats, "env_a", int(time.time() * 1000))])
    batch = []
    for index in range(count):
        name = "app_%d" % index
        batch += [name, encode({"name": name, "environments": ["env_a" if index % 2 else "env_b"]})]
        if len(batch) >= 2000:
            client.pipeline([("HSET", plane.keys.apps) + tuple(batch)])
            batch = []
    if batch:
        client.pipeline([("HSET", plane.keys.apps) + tuple(batch)])


def nginx_check(path):
    """`nginx -t` on the rendered file, with the local nginx or the offline nginx image."""
    wrapper = "events {}\nhttp {\n include %s;\n}\n"
    if shutil.which("nginx"):
        conf = Path(path).with_suffix(".test.conf")
        conf.write_text(wrapper % path)
        return subprocess.run(["nginx", "-t", "-c", str(conf)], capture_output=True, text=True, check=False)
    image = "nocobase-multienv/nginx:offline"
    has_image = shutil.which("docker") and subprocess.run(
        ["docker", "image", "inspect", image], capture_output=True, check=False).returncode == 0
    if has_image:
        return subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", "%s:/etc/nginx/conf.d/default.conf:ro" % path,
                               image, "nginx", "-t"], capture_output=True, text=True,
                              check=False, timeout=120)
    return None


def bench_render(server, sizes):
    plane = producer(server.url, "render:")
    print("proxy config rendering (lookup + template, through ansible-playbook):")
    largest = None
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        for size in sizes:
            load_apps(plane, "render:", size)
            out = work / ("apps-%d.conf" % size)
            playbook(work, RENDER, dict(template=str(REPO / "roles/proxy/templates/nocobase-proxy.conf.j2"),
                                        out=str(out), url=server.url, prefix="render:"))
            seconds = float(Path(str(out) + ".seconds").read_text())
            print("  %6d apps: %7.2f s, %9d bytes of config" % (size, seconds, out.stat().st_size))
            largest = out
        checked = nginx_check(str(largest))
        if checked is None:
            print("  nginx -t: no nginx binary or image at hand, not checked")
        else:
            print("  nginx -t on the largest: %s" % ("ok" if checked.returncode == 0 else checked.stderr.strip()[-300:]))
    plane.client.close()


def bench_queue(server, starts, metrics=False):
    """The starts per second of two agents draining `starts` starts; with `metrics`, each agent serves its
    metrics and is scraped every half second meanwhile (Prometheus scrapes every 15 s by default)."""
    prefix = "queue-metrics:" if metrics else "queue:"
    plane = producer(server.url, prefix)
    names = ["app_%d" % index for index in range(starts)]
    apps = [encode({"name": name, "environments": ["env_a" if index % 2 else "env_b"]}) for index, name in enumerate(names)]
    plane.client.pipeline([("HSET", plane.keys.apps) + tuple(item for pair in zip(names, apps) for item in pair)])
    processes, metrics_ports, scrapes = [], [], []
    storage = tempfile.TemporaryDirectory()
    for env in ("env_a", "env_b"):
        port = free_port()
        node = dict(os.environ, APP_MODE="worker", APPEND_PRESET_BUILT_IN_PLUGINS="@nocobase/plugin-multi-app-manager",
                    ENVIRONMENT_NAME=env, STANDIN_PORTS=str(port), STANDIN_STATE_DIR=os.path.join(storage.name, env),
                    STANDIN_STARTUP_SECONDS="0", STANDIN_LOG_LEVEL="WARNING", INIT_ROOT_EMAIL="root@bench.test",
                    INIT_ROOT_PASSWORD="bench-root-password")
        agent = dict(os.environ, ENVIRONMENT_NAME=env, ENVIRONMENT_URL="http://127.0.0.1:%d" % port,
                     AGENT_REDIS_URL=server.url, AGENT_KEY_PREFIX=prefix, AGENT_NOCOBASE_URL="http://127.0.0.1:%d" % port,
                     AGENT_ROOT_ACCOUNT="root@bench.test", AGENT_ROOT_PASSWORD="bench-root-password",
                     AGENT_HEALTH_SECONDS="0.2", AGENT_HEARTBEAT_SECONDS="2", AGENT_LOG_LEVEL="WARNING",
                     AGENT_HEALTH_FILE=os.path.join(storage.name, env + ".health"),
                     AGENT_METRICS_PORT=str(free_port()) if metrics else "0", AGENT_METRICS_ADDRESS="127.0.0.1")
        metrics_ports.append(int(agent["AGENT_METRICS_PORT"]))
        for program, env_vars in (("tests/standin/server.py", node), ("roles/worker/files/agent/agent.py", agent)):
            processes.append(subprocess.Popen([sys.executable, str(REPO / program)], env=env_vars,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        deadline = time.monotonic() + 60
        while plane.client.execute("HLEN", plane.keys.heartbeats) < 2:
            if time.monotonic() > deadline:
                raise RuntimeError("the agents did not register")
            time.sleep(0.1)
        targets = {name: ["env_a" if index % 2 else "env_b"] for index, name in enumerate(names)}
        done = {}

        def watch():
            """Poll (bounded) until every start runs, from before the enqueue task begins."""
            poller = producer(server.url, prefix)
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline:
                statuses = poller.read_statuses(targets)
                done["running"] = sum(1 for envs in statuses.values() for value in envs.values()
                                      if value and value["status"] == "running")
                if done["running"] == starts:
                    done["at"] = time.time()
                    break
                time.sleep(0.02)
            poller.client.close()

        def scrape():
            """Every agent's /metrics every half second until every start runs (bounded like watch)."""
            deadline = time.monotonic() + 900
            while "at" not in done and time.monotonic() < deadline:
                for port in metrics_ports:
                    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as response:
                        scrapes.append(len(response.read()))
                time.sleep(0.5)

        watcher = threading.Thread(target=watch)
        watcher.start()
        scraper = threading.Thread(target=scrape)
        if metrics:
            scraper.start()
        with tempfile.TemporaryDirectory() as work:
            work = Path(work)
            playbook(work, QUEUE, dict(url=server.url, prefix=prefix, names=names, out=str(work / "times")))
            task_start, task_end = json.loads((work / "times").read_text())
        watcher.join(timeout=900)
        if metrics:
            scraper.join(timeout=30)
        running = done.get("running", 0)
        enqueue = task_end - task_start
        drain = done.get("at", time.time()) - task_start
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
        storage.cleanup()
        plane.client.close()
    print("start queue (%d starts, two agents on two stand-ins, %s):"
          % (starts, "metrics served and scraped every 0.5 s (%d scrapes)" % len(scrapes) if metrics else "no metrics"))
    print("  enqueue, one task:  %7.2f s" % enqueue)
    print("  drain:              %7.2f s  from the task's start to the last start running (%d of %d)"
          % (drain, running, starts))
    throughput = running / drain if drain else 0
    print("  throughput:         %7.1f starts/s" % throughput)
    return throughput


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,1000,10000")
    parser.add_argument("--starts", type=int, default=1000)
    options = parser.parse_args()
    server = RedisServer(password="bench")
    try:
        bench_render(server, [int(size) for size in options.sizes.split(",")])
        without = bench_queue(server, options.starts)
        with_metrics = bench_queue(server, options.starts, metrics=True)
        print("metrics' cost: %.2f times the starts per second without them" % (with_metrics / without if without else 0))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
