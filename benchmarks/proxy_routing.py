"""Proxy routing benchmark: prints figures, asserts nothing.

What NocoBase's app selection costs nginx per request. nginx (the offline image) runs the proxy
role's configuration, rendered from three app records, with echo upstreams in the same container
(tests/integration/routing_proxy.py); wrk (Debian's, installed when missing) loads it on 127.0.0.1
with one request form at a time, for a fixed time, 16 connections on 2 threads. The baseline is the
same measurement on the template before NocoBase's full selection (commit fd307bf: path and X-App
only), in the same run; the ratio is this template's requests per second over the baseline's.

Usage: .venv/bin/python benchmarks/proxy_routing.py [--seconds 5] [--connections 16] [--baseline fd307bf]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "integration"))
from routing_proxy import routing_proxy  # noqa: E402  (conftest, imported by it, links the collection)

TEMPLATE = "roles/proxy/templates/nocobase-proxy.conf.j2"
# (what, target, headers): the forms a browser sends most, and the longest chain (no selector at all).
FORMS = [
    ("page /apps/crm/admin/", "/apps/crm/admin/", {}),
    ("API X-App: crm", "/api/app:getInfo", {"X-App": "crm"}),
    ("WebSocket ?__appName=crm", "/ws?__appName=crm", {}),
    ("file /files/hr/...", "/files/hr/main/attachments/1.png", {}),
    ("no selector (supervisor)", "/api/app:getInfo?page=1&pageSize=20", {}),
]


def ensure_wrk():
    if shutil.which("wrk") is None:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, env=env, capture_output=True)


def requests_per_second(port, target, headers, seconds, connections):
    command = ["wrk", "-t2", "-c%d" % connections, "-d%ds" % seconds]
    for name, value in headers.items():
        command += ["-H", "%s: %s" % (name, value)]
    out = subprocess.run(command + ["http://127.0.0.1:%d%s" % (port, target)], capture_output=True, text=True,
                         check=True, timeout=seconds + 60).stdout
    if "Non-2xx" in out:
        raise RuntimeError("wrk saw answers other than 2xx for %s:\n%s" % (target, out))
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def measure(template, seconds, connections):
    with tempfile.TemporaryDirectory(prefix="nbbench-routing-") as out, routing_proxy(Path(out), template) as running:
        dummy, port = running
        return {what: requests_per_second(port, target, headers, seconds, connections) for what, target, headers in FORMS}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--baseline", default="fd307bf", help="the commit whose proxy template is the baseline")
    args = parser.parse_args()
    ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="nbbench-baseline-") as tmp:
        baseline_template = Path(tmp) / "baseline.conf.j2"
        baseline_template.write_text(subprocess.run(["git", "-C", str(REPO), "show", "%s:%s" % (args.baseline, TEMPLATE)],
                                                    capture_output=True, text=True, check=True).stdout)
        baseline = measure(baseline_template, args.seconds, args.connections)
    current = measure(None, args.seconds, args.connections)
    print("nginx requests/s by request form (%d s each, %d connections; baseline: the template of %s)"
          % (args.seconds, args.connections, args.baseline))
    print("%-28s %12s %12s %8s" % ("form", "baseline", "now", "ratio"))
    for what, dummy, dummy_headers in FORMS:
        print("%-28s %12.0f %12.0f %8.2f" % (what, baseline[what], current[what], current[what] / baseline[what]))


if __name__ == "__main__":
    main()
