"""Control-plane benchmark: prints figures, asserts nothing.

From one run against a real redis-server on a free 127.0.0.1 port:
  1. one list-form `nocobase.multienv.app` task creating N apps (default 1,000) against the same
     N apps created by a looped single-app task, and their ratio;
  2. an `environment_info` task against an `ansible.builtin.ping` task in the same play
     (each repeated, median), and their ratio.

Usage: .venv/bin/python benchmarks/control_plane.py [--apps 1000] [--repeat 15]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import COLLECTIONS_PATH, RedisServer  # noqa: E402  (also links the collection)

PLAYBOOK = """
- name: Control-plane benchmark
  hosts: localhost
  gather_facts: false
  module_defaults:
    group/nocobase.multienv.control_plane:
      redis_url: "{{ bench_redis_url }}"
      key_prefix: "{{ bench_prefix }}"
  tasks:
    - name: Register the environment the apps run in
      nocobase.multienv.environment:
        name: env_a
        url: http://worker_a
        heartbeat: true
        key_prefix: "{{ item }}"
      loop: ["{{ bench_prefix }}", "{{ bench_prefix }}list:", "{{ bench_prefix }}loop:"]

    - name: Mark list start
      ansible.builtin.set_fact:
        t_list_start: "{{ now().timestamp() }}"

    - name: List form, all apps in one task
      nocobase.multienv.app:
        apps: "{{ bench_apps }}"
        key_prefix: "{{ bench_prefix }}list:"

    - name: Mark loop start
      ansible.builtin.set_fact:
        t_list_end: "{{ now().timestamp() }}"

    - name: Looped single-app tasks
      nocobase.multienv.app:
        name: "{{ item.name }}"
        environments: "{{ item.environments }}"
        key_prefix: "{{ bench_prefix }}loop:"
      loop: "{{ bench_apps }}"

    - name: Mark loop end
      ansible.builtin.set_fact:
        t_loop_end: "{{ now().timestamp() }}"

    - name: Time environment_info and ping alternately
      ansible.builtin.include_tasks: pair.yml
      loop: "{{ range(bench_repeat) | list }}"
      loop_control:
        loop_var: round

    - name: Report
      ansible.builtin.copy:
        dest: "{{ bench_out }}"
        mode: "0600"
        content: "{{ {'list': t_list_end | float - t_list_start | float,
                      'loop': t_loop_end | float - t_list_end | float,
                      'info': info_times | default([]), 'ping': ping_times | default([])} | to_json }}"
"""

PAIR = """
- name: Mark info start
  ansible.builtin.set_fact:
    t0: "{{ now().timestamp() }}"
- name: Read environments
  nocobase.multienv.environment_info:
- name: Mark ping start
  ansible.builtin.set_fact:
    t1: "{{ now().timestamp() }}"
- name: Ping
  ansible.builtin.ping:
- name: Record both
  ansible.builtin.set_fact:
    info_times: "{{ info_times | default([]) + [t1 | float - t0 | float] }}"
    ping_times: "{{ ping_times | default([]) + [now().timestamp() - t1 | float] }}"
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--verbose", action="store_true", help="show the playbook output")
    options = parser.parse_args()
    server = RedisServer(password="bench")
    try:
        with tempfile.TemporaryDirectory() as work:
            work = Path(work)
            (work / "bench.yml").write_text(PLAYBOOK)
            (work / "pair.yml").write_text(PAIR)
            out = work / "figures.json"
            env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, ANSIBLE_NOCOLOR="1",
                       ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
            extra = {"bench_redis_url": server.url, "bench_prefix": "bench:",
                     "bench_apps": [{"name": "app_%d" % i, "environments": ["env_a"]} for i in range(options.apps)],
                     "bench_repeat": options.repeat, "bench_out": str(out),
                     "ansible_python_interpreter": sys.executable}
            started = time.monotonic()
            (work / "vars.json").write_text(json.dumps(extra))
            subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,", "-c", "local",
                            str(work / "bench.yml"), "-e", "@" + str(work / "vars.json")],
                           env=env, check=True, stdout=None if options.verbose else subprocess.DEVNULL, timeout=3600)
            figures = json.loads(out.read_text())
    finally:
        server.stop()
    info, ping = statistics.median(figures["info"]), statistics.median(figures["ping"])
    print("apps created: %d (whole run %.1f s)" % (options.apps, time.monotonic() - started))
    print("list form, one task:        %8.3f s" % figures["list"])
    print("looped single-app tasks:    %8.3f s" % figures["loop"])
    print("loop / list ratio:          %8.1f x" % (figures["loop"] / figures["list"]))
    print("environment_info (median of %d): %6.3f s" % (len(figures["info"]), info))
    print("ansible.builtin.ping (median of %d): %6.3f s" % (len(figures["ping"]), ping))
    print("environment_info / ping ratio:   %6.2f x" % (info / ping))


if __name__ == "__main__":
    main()
