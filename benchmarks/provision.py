"""Provisioning benchmark: prints figures, asserts nothing.

From one run on the offline platform (inventories/offline, the local Docker engine, the images of
tools/offline-images.sh), for 2 and for 6 workers:
  - cold converge: playbooks/site.yml on an engine with none of the platform's containers,
    volumes or secrets;
  - idempotent rerun: the same playbook again (its PLAY RECAP must show changed=0; the figure is
    marked otherwise);
  - the rerun-to-cold ratio.
The benchmark platform has its own name, ports (27000-27999) and secrets directory, layered on
top of inventories/offline, so it cannot collide with a deployed platform. It is torn down (with
its volumes and secrets) before each size and at the end, also after a failure or Ctrl-C.

Usage: .venv/bin/python benchmarks/provision.py [--workers 2 6] [--platform nbbench]
"""
from __future__ import annotations

import argparse
import os
import re
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


def changed_total(output: str) -> int:
    return sum(int(n) for n in re.findall(r"\bchanged=(\d+)", output.split("PLAY RECAP")[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 6])
    parser.add_argument("--platform", default="nbbench")
    args = parser.parse_args()

    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, ANSIBLE_NOCOLOR="1", NO_COLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    rows = []
    with tempfile.TemporaryDirectory(prefix="nocobase-bench-") as tmp:
        for workers in args.workers:
            layer = Path(tmp) / ("workers-%d" % workers)
            write_layer(layer, args.platform, workers)
            try:
                run("playbooks/teardown.yml", layer, env)  # cold: nothing of the platform left
                cold, _output = run("playbooks/site.yml", layer, env)
                rerun, output = run("playbooks/site.yml", layer, env)
                rows.append((workers, cold, rerun, changed_total(output)))
            finally:
                run("playbooks/teardown.yml", layer, env)

    print("Provisioning the offline platform (playbooks/site.yml, inventories/offline, %d cores)" % os.cpu_count())
    print("%-8s %12s %18s %16s" % ("workers", "cold [s]", "idempotent [s]", "rerun / cold"))
    for workers, cold, rerun, changed in rows:
        note = "" if changed == 0 else "   (rerun reported changed=%d)" % changed
        print("%-8d %12.1f %18.1f %16.2f%s" % (workers, cold, rerun, rerun / cold, note))
    if len(rows) >= 2:
        (w1, c1, r1, _changed1), (w2, c2, r2, _changed2) = rows[0], rows[-1]
        print("per extra worker: cold +%.1f s, idempotent +%.1f s" % ((c2 - c1) / (w2 - w1), (r2 - r1) / (w2 - w1)))


if __name__ == "__main__":
    main()
