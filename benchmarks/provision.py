"""Provisioning benchmark: prints figures, asserts nothing.

From one run on the offline platform (inventories/offline, the local Docker engine, the images of
tools/offline-images.sh), for 2 and for 6 workers:
  - cold converge: playbooks/site.yml on an engine with none of the platform's containers,
    volumes or secrets;
  - idempotent rerun: the same playbook again (its PLAY RECAP must show changed=0; the figure is
    marked otherwise);
  - the rerun-to-cold ratio, for a rerun right after the cold run and for one 20 s later, when
    Docker's health checks have passed and no wait is left (how an operator reruns);
  - the baseline people would otherwise use: `docker-compose up -d` of an equivalent stack (the same
    images, containers, networks, volumes and published ports; Debian's docker-compose, installed
    when missing), cold and then doing nothing, and the rerun-to-compose-no-op ratio.
The benchmark platform has its own name, ports (27000-27999) and secrets directory, layered on
top of inventories/offline, so it cannot collide with a deployed platform. It is torn down (with
its volumes and secrets) before each size and at the end, also after a failure or Ctrl-C.

Usage: .venv/bin/python benchmarks/provision.py [--workers 2 6] [--platform nbbench]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import COLLECTIONS_PATH  # noqa: E402  (also links the collection)

ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
PORT_BASE = 27000
SETTLE_SECONDS = 20


def write_layer(path: Path, platform: str, workers: int) -> None:
    """An inventory layer over inventories/offline: platform name, ports, secrets, and workers
    beyond the offline inventory's worker_a and worker_b."""
    (path / "group_vars" / "all").mkdir(parents=True)
    (path / "host_vars").mkdir()
    (path / "group_vars" / "all" / "bench.yml").write_text(yaml.safe_dump({
        "nocobase_platform": platform,
        "nocobase_image": "nocobase-multienv/nocobase-standin:offline",  # the stand-in, not real NocoBase
        "nocobase_redis_published_port": PORT_BASE + 379,
        "nocobase_secrets_dir": str(path / "secrets"),
        "nocobase_teardown_volumes": True,
        "nocobase_teardown_secrets": True,
    }))
    (path / "host_vars" / "supervisor.yml").write_text(yaml.safe_dump({"supervisor_published_port": PORT_BASE}))
    extra = {}
    for index in range(workers):
        letter = "abcdefghijklmnopqrstuvwxyz"[index]
        host = "worker_%s" % letter
        port = PORT_BASE + 1 + index
        if index < 2:  # defined by inventories/offline; only the port moves
            (path / "host_vars" / ("%s.yml" % host)).write_text(yaml.safe_dump({"worker_published_port": port}))
        else:
            extra[host] = {"worker_environment": "env_%s" % letter, "worker_published_port": port}
    if workers < 2:
        raise SystemExit("at least 2 workers (the offline inventory has worker_a and worker_b)")
    hosts = {"all": {"children": {"nocobase_workers": {"hosts": extra}}}} if extra else {"all": {}}
    (path / "hosts.yml").write_text(yaml.safe_dump(hosts))


def run(playbook: str, layer: Path, env: dict) -> tuple[float, str]:
    start = time.monotonic()
    result = subprocess.run(
        [ANSIBLE_PLAYBOOK, playbook, "--inventory", "inventories/offline", "--inventory", str(layer)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1800, check=False)
    elapsed = time.monotonic() - start
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-5000:] + result.stderr[-3000:])
        raise SystemExit("%s failed (exit %d)" % (playbook, result.returncode))
    return elapsed, result.stdout


def compose_file(path: Path, project: str, workers: int) -> Path:
    """A docker-compose file of the platform's containers as the roles make them (stand-in nodes)."""
    node_env = {"DB_DIALECT": "postgres", "DB_HOST": "postgres", "DB_PORT": "5432", "DB_USER": "nocobase",
                "DB_PASSWORD": "bench-db-password", "APP_KEY": "bench-app-key-0123456789",
                "APP_AES_SECRET_KEY": "0" * 64, "INIT_ROOT_EMAIL": "root@example.com",
                "INIT_ROOT_PASSWORD": "bench-root-password", "TZ": "UTC"}
    health = {"test": ["CMD-SHELL", "curl -fsS http://127.0.0.1:13000/api/__health_check"], "interval": "10s"}
    services = {
        "redis": {"image": "nocobase-multienv/redis:offline", "networks": ["back"], "volumes": ["redis:/data"],
                  "environment": {"REDIS_ARGS": "--requirepass bench --appendonly yes"},
                  "ports": ["127.0.0.1:%d:6379" % (PORT_BASE + 500)], "restart": "always"},
        "postgres": {"image": "nocobase-multienv/postgres:offline", "networks": ["back"], "restart": "always",
                     "volumes": ["postgres:/var/lib/postgresql/data"], "environment": {"POSTGRES_PASSWORD": "bench"}},
        "supervisor": {"image": "nocobase-multienv/nocobase-standin:offline", "networks": ["front", "back"],
                       "environment": dict(node_env, DB_DATABASE="supervisor"), "restart": "always",
                       "volumes": ["supervisor:/app/nocobase/storage"], "healthcheck": health,
                       "ports": ["127.0.0.1:%d:13000" % (PORT_BASE + 501)]},
        "proxy": {"image": "nocobase-multienv/nginx:offline", "networks": ["front"], "restart": "always",
                  "ports": ["127.0.0.1:%d:80" % (PORT_BASE + 502)]},
    }
    volumes = {"redis": {}, "postgres": {}, "supervisor": {}}
    for index in range(workers):
        env = "env_%s" % "abcdefghijklmnopqrstuvwxyz"[index]
        services["worker_" + env] = {
            "image": "nocobase-multienv/nocobase-standin:offline", "networks": ["front", "back"], "restart": "always",
            "environment": dict(node_env, DB_DATABASE=env, APP_MODE="worker", ENVIRONMENT_NAME=env),
            "volumes": ["%s:/app/nocobase/storage" % env], "healthcheck": health,
            "ports": ["127.0.0.1:%d:13000" % (PORT_BASE + 510 + index)]}
        services["agent_" + env] = {"image": "nocobase-multienv/python:offline", "networks": ["back"],
                                    "restart": "always", "command": ["sleep", "infinity"]}
        volumes[env] = {}
    path.mkdir(parents=True, exist_ok=True)
    compose = path / "docker-compose.yml"
    compose.write_text(yaml.safe_dump({"version": "3.7", "services": services, "volumes": volumes,
                                       "networks": {"front": {}, "back": {}}}))
    return compose


def compose(compose_path: Path, project: str, *args: str) -> float:
    start = time.monotonic()
    subprocess.run(["docker-compose", "-p", project, "-f", str(compose_path), *args],
                   capture_output=True, text=True, timeout=600, check=True)
    return time.monotonic() - start


def ensure_docker_compose() -> None:
    if shutil.which("docker-compose") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "docker-compose"],
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), check=True, timeout=600)


def changed_total(output: str) -> int:
    return sum(int(n) for n in re.findall(r"\bchanged=(\d+)", output.split("PLAY RECAP")[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 6])
    parser.add_argument("--platform", default="nbbench")
    args = parser.parse_args()

    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, ANSIBLE_NOCOLOR="1", NO_COLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    ensure_docker_compose()
    rows = []
    with tempfile.TemporaryDirectory(prefix="nocobase-bench-") as tmp:
        for workers in args.workers:
            layer = Path(tmp) / ("workers-%d" % workers)
            write_layer(layer, args.platform, workers)
            try:
                run("playbooks/teardown.yml", layer, env)  # cold: nothing of the platform left
                cold, _output = run("playbooks/site.yml", layer, env)
                rerun, output = run("playbooks/site.yml", layer, env)
                # An operator's rerun comes later: by then Docker's health checks (every 10 s) have
                # passed for the containers the cold run started, so no wait is needed.
                time.sleep(SETTLE_SECONDS)
                settled, settled_output = run("playbooks/site.yml", layer, env)
            finally:
                run("playbooks/teardown.yml", layer, env)
            stack = compose_file(Path(tmp) / ("compose-%d" % workers), args.platform + "compose", workers)
            project = args.platform + "compose"
            try:
                compose(stack, project, "down", "--volumes")
                compose_cold = compose(stack, project, "up", "-d")
                compose(stack, project, "up", "-d")  # settles anything the first one left
                compose_noop = compose(stack, project, "up", "-d")
            finally:
                compose(stack, project, "down", "--volumes")
            rows.append((workers, cold, rerun, settled, changed_total(output) + changed_total(settled_output),
                         compose_cold, compose_noop))

    print("Provisioning the offline platform (playbooks/site.yml, inventories/offline, %d cores)" % os.cpu_count())
    header = ("workers", "cold [s]", "rerun [s]", "rerun / cold", "settled [s]", "settled / cold", "compose [s]",
              "no-op [s]", "rerun / no-op", "settled / no-op")
    print("%-8s %9s %10s %13s %12s %15s %12s %10s %14s %16s" % header)
    for workers, cold, rerun, settled, changed, compose_cold, compose_noop in rows:
        note = "" if changed == 0 else "   (reruns reported changed=%d)" % changed
        print("%-8d %9.1f %10.1f %13.2f %12.1f %15.2f %12.1f %10.2f %14.1f %16.1f%s" % (
            workers, cold, rerun, rerun / cold, settled, settled / cold, compose_cold, compose_noop,
            rerun / compose_noop, settled / compose_noop, note))
    if len(rows) >= 2:
        (w1, c1, r1, *_rest1), (w2, c2, r2, *_rest2) = rows[0], rows[-1]
        print("per extra worker: cold +%.1f s, idempotent +%.1f s" % ((c2 - c1) / (w2 - w1), (r2 - r1) / (w2 - w1)))


if __name__ == "__main__":
    main()
