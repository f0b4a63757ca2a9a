"""Real NocoBase benchmark: prints figures, asserts nothing.

One platform on the real NocoBase image of tools/nocobase-image.sh (inventories/offline, own name,
ports 28000-28999 and secrets), with the apps crm in [env_a, env_b] and hr in [env_b]:
  - cold deploy (playbooks/site.yml) and idempotent rerun, with their ratio;
  - node boot to a healthy NocoBase: fresh install (the supervisor, before anything else runs)
    and restart of an installed node (docker restart of env_a's worker);
  - app start to running per environment, from the agents' own log lines;
  - memory per node (supervisor: no sub-app; env_a: crm; env_b: crm and hr) and so per sub-app;
  - every container's CPU and memory at idle (docker stats, after a quiet minute), and its peak
    memory since it started (the cgroup's memory.peak): the figures behind the default limits of
    docs/provisioning.md ("Memory and CPUs").
It is torn down (with its volumes and secrets) at the end, also after a failure or Ctrl-C.

Usage: .venv/bin/python benchmarks/real_nocobase.py
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import COLLECTIONS_PATH  # noqa: E402  (also links the collection)

ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
PLATFORM = "nbbenchreal"
PORTS = {"proxy": 28000, "supervisor": 28001, "env_a": 28002, "env_b": 28003, "redis": 28379}
APPS = [{"name": "crm", "title": "CRM", "environments": ["env_a", "env_b"]},
        {"name": "hr", "title": "HR", "environments": ["env_b"]}]
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def write_layer(path: Path) -> None:
    (path / "group_vars" / "all").mkdir(parents=True)
    (path / "host_vars").mkdir()
    (path / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"nocobase_proxy": {"hosts": {
        "proxy": {"proxy_published_port": PORTS["proxy"]}}}}}}))
    (path / "group_vars" / "all" / "bench.yml").write_text(yaml.safe_dump({
        "nocobase_platform": PLATFORM, "nocobase_redis_published_port": PORTS["redis"],
        "nocobase_secrets_dir": str(path / "secrets"), "nocobase_teardown_volumes": True,
        "nocobase_teardown_secrets": True, "proxy_config_dir": str(path / "proxy"), "apps_list": APPS}))
    (path / "host_vars" / "supervisor.yml").write_text(yaml.safe_dump({"supervisor_published_port": PORTS["supervisor"]}))
    for env, host in (("env_a", "worker_a"), ("env_b", "worker_b")):
        (path / "host_vars" / (host + ".yml")).write_text(yaml.safe_dump({"worker_published_port": PORTS[env]}))


def playbook(name: str, layer: Path, env: dict, *args: str) -> tuple[float, str]:
    start = time.monotonic()
    result = subprocess.run([ANSIBLE_PLAYBOOK, name, "-i", "inventories/offline", "-i", str(layer), *args],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=3600, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-5000:] + result.stderr[-3000:])
        raise SystemExit("%s failed (exit %d)" % (name, result.returncode))
    return time.monotonic() - start, result.stdout


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300, check=True).stdout


def healthy(port: int) -> bool:
    try:
        with OPENER.open("http://127.0.0.1:%d/api/__health_check" % port, timeout=5) as response:
            return response.status == 200 and response.read().strip().lower() == b"ok"
    except (urllib.error.URLError, OSError):
        return False


def wait_healthy(port: int, timeout: float = 900) -> float:
    start = time.monotonic()
    while not healthy(port):
        if time.monotonic() - start > timeout:
            raise SystemExit("port %d not healthy after %.0f s" % (port, timeout))
        time.sleep(0.5)
    return time.monotonic() - start


def agent_start_times(env: str) -> dict:
    """app -> seconds from 'starting <app>' to '<app> -> running' in the agent's log."""
    log = docker("logs", "%s-agent-%s" % (PLATFORM, env))
    stamps = {}
    for line in log.splitlines():
        match = re.match(r"^(\S+ \S+) \[nocobase-agent\] INFO \S+: (starting (\w+) |start (\w+) -> running)", line)
        if match:
            when = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
            app = match.group(3) or match.group(4)
            stamps.setdefault(app, {})["begin" if match.group(3) else "end"] = when
    return {app: (t["end"] - t["begin"]).total_seconds() for app, t in stamps.items() if "begin" in t and "end" in t}


def container_started(name: str) -> float:
    """Epoch seconds at which Docker started the container."""
    stamp = docker("inspect", "-f", "{{.State.StartedAt}}", name).strip()
    return datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp()


def stats(names: list) -> dict:
    """name -> (CPU %, MiB) from one docker stats sample."""
    out = docker("stats", "--no-stream", "--format", "{{json .}}", *names)
    units = {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}
    result = {}
    for line in out.splitlines():
        row = json.loads(line)
        used = row["MemUsage"].split("/")[0].strip()
        number, unit = re.match(r"([\d.]+)(\w+)", used).groups()
        result[row["Name"]] = (float(row["CPUPerc"].rstrip("%")), float(number) * units.get(unit, 1))
    return result


def peak_mib(name: str):
    """The container's peak memory since it started (cgroup v2 memory.peak, v1 memory.max_usage_in_bytes), or None."""
    found = subprocess.run(["docker", "exec", name, "sh", "-c", "cat /sys/fs/cgroup/memory.peak 2>/dev/null || "
                            "cat /sys/fs/cgroup/memory/memory.max_usage_in_bytes"], capture_output=True, text=True,
                           timeout=60, check=False).stdout.strip()
    return int(found) / 1024 / 1024 if found.isdigit() else None


def main() -> None:
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, ANSIBLE_NOCOLOR="1", NO_COLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    with tempfile.TemporaryDirectory(prefix="nocobase-bench-real-") as tmp:
        layer = Path(tmp) / "layer"
        write_layer(layer)
        try:
            playbook("playbooks/teardown.yml", layer, env)
            playbook("playbooks/infrastructure.yml", layer, env)
            started = time.monotonic()
            playbook("playbooks/supervisor.yml", layer, env)  # it ends right after the node's health gate
            fresh_boot = time.time() - container_started("%s-supervisor" % PLATFORM)
            playbook("playbooks/site.yml", layer, env)
            cold = time.monotonic() - started
            rerun, output = playbook("playbooks/site.yml", layer, env)
            changed = sum(int(n) for n in re.findall(r"\bchanged=(\d+)", output.split("PLAY RECAP")[-1]))
            starts = {env_name: agent_start_times(env_name) for env_name in ("env_a", "env_b")}
            time.sleep(60)  # idle
            names = ["%s-%s" % (PLATFORM, suffix) for suffix in
                     ("supervisor", "worker-env_a", "worker-env_b", "agent-env_a", "agent-env_b", "redis", "postgres",
                      "proxy")]
            sample = stats(names)
            peaks = {name: peak_mib(name) for name in names}
            docker("restart", "%s-worker-env_a" % PLATFORM)
            restart_boot = wait_healthy(PORTS["env_a"])
        finally:
            playbook("playbooks/teardown.yml", layer, env)

    print("Real NocoBase (%s, %d cores)" % ((REPO / "tools/nocobase-image/VERSION").read_text().strip(), os.cpu_count()))
    print("  cold deploy (site.yml, 3 nodes, 2 apps):  %7.1f s" % cold)
    print("  idempotent rerun:                         %7.1f s  (rerun / cold %.2f%s)"
          % (rerun, rerun / cold, "" if changed == 0 else ", changed=%d" % changed))
    print("  fresh node (supervisor) start to healthy: %7.1f s  (install included; +-2 s of the gate's polling)" % fresh_boot)
    print("  worker restart to healthy:                %7.1f s" % restart_boot)
    for env_name, apps in starts.items():
        for app, seconds in sorted(apps.items()):
            print("  start %-4s in %s to running:          %7.1f s" % (app, env_name, seconds))
    mib = {name.replace(PLATFORM + "-", ""): value for name, value in sample.items()}
    for name, (cpu, memory) in sorted(mib.items()):
        peak = peaks["%s-%s" % (PLATFORM, name)]
        print("  %-14s idle: %6.1f %% CPU, %7.1f MiB; peak since its start %s"
              % (name, cpu, memory, "n/a" if peak is None else "%.1f MiB" % peak))
    base = mib["supervisor"][1]
    print("  per sub-app (worker minus supervisor): env_a (crm) %+.0f MiB, env_b (crm, hr) %+.0f MiB"
          % (mib["worker-env_a"][1] - base, mib["worker-env_b"][1] - base))
    print("  one more sub-app (env_b's two minus env_a's one): %+.0f MiB idle, %+.0f MiB at peak"
          % (mib["worker-env_b"][1] - mib["worker-env_a"][1],
             (peaks["%s-worker-env_b" % PLATFORM] or 0) - (peaks["%s-worker-env_a" % PLATFORM] or 0)))


if __name__ == "__main__":
    main()
