# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The agent's Prometheus metrics (docs/agent.md, "Metrics"), served as text (exposition format
0.0.4) on AGENT_METRICS_PORT of the platform's back network, never published.

Written without a client library: the agent's image holds the standard library and redis-py only.
Counters and histograms are kept here as the agent counts; gauges that read Redis or the agent's
state are collected when Prometheus scrapes (collectors).
"""

from __future__ import annotations

import logging
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG = logging.getLogger("agent")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HEALTH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
COMMAND_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

# Every metric: its type, its help and, for a histogram, its buckets. The docs' table lists them.
FAMILIES = {
    "nocobase_multienv_agent_ready": (
        "gauge", "1 while the worker's NocoBase answers its health check, takes the root account and the "
                 "environment is registered; 0 while heartbeats and commands pause", None),
    "nocobase_multienv_agent_heartbeat_age_seconds": (
        "gauge", "Seconds since the agent last registered its environment or wrote its heartbeat", None),
    "nocobase_multienv_nocobase_health_checks_total": (
        "counter", "Health checks of the worker's NocoBase, by result (ok, failed)", None),
    "nocobase_multienv_nocobase_health_check_duration_seconds": (
        "histogram", "How long NocoBase took to answer its health check", HEALTH_BUCKETS),
    "nocobase_multienv_nocobase_sign_ins_total": (
        "counter", "Sign-ins of the root account to NocoBase (the first one, and each renewal of its token)", None),
    "nocobase_multienv_commands_total": (
        "counter", "Commands of the environment's stream taken by this agent, by action and outcome (completed, "
                   "failed, deferred, duplicate, dropped, aborted)", None),
    "nocobase_multienv_command_duration_seconds": (
        "histogram", "From a command's enqueueing (its stream entry id) to its completion, by action",
        COMMAND_BUCKETS),
    "nocobase_multienv_resyncs_total": (
        "counter", "Resyncs of the worker's apps to the records, by result (completed, failed)", None),
    "nocobase_multienv_stream_length": (
        "gauge", "Entries in the environment's command stream (XLEN; acknowledged ones are trimmed later)", None),
    "nocobase_multienv_stream_pending": (
        "gauge", "Entries delivered to the environment's consumers and not acknowledged yet", None),
    "nocobase_multienv_apps": (
        "gauge", "Apps by their status in this environment (running, stopped, initializing, error, ...)", None),
}


def _escape(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels):
    if not labels:
        return ""
    return "{%s}" % ",".join('%s="%s"' % (name, _escape(value)) for name, value in labels)


def _number(value):
    if value == math.inf:
        return "+Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


class Metrics:
    """The agent's metrics: counters and histograms it counts, gauges its collectors read."""

    def __init__(self, **constant_labels):
        self._lock = threading.Lock()
        self._constant = dict(constant_labels)
        self._values = {}  # (name, labels) -> number, or a histogram's [bucket counts..., sum, count]
        self.collectors = []  # callables returning [(name, {labels}, value)], called at each scrape

    def _key(self, name, labels):
        if name not in FAMILIES:
            raise KeyError(name)
        return name, tuple(sorted(dict(self._constant, **labels).items()))

    def inc(self, name, amount=1, **labels):
        key = self._key(name, labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0) + amount

    def observe(self, name, value, **labels):
        buckets = FAMILIES[name][2]
        key = self._key(name, labels)
        with self._lock:
            counts = self._values.setdefault(key, [0] * len(buckets) + [0.0, 0])
            for index, bound in enumerate(buckets):
                if value <= bound:
                    counts[index] += 1
            counts[-2] += value
            counts[-1] += 1

    def render(self):
        """Every sample, family by family, in the text exposition format."""
        collected = {}
        for collector in self.collectors:
            try:
                samples = collector()
            except Exception as exc:  # noqa: BLE001 - a failing collector leaves its samples out, not the scrape
                LOG.debug("metrics: a collector failed: %s", exc)
                continue
            for name, labels, value in samples:
                collected[self._key(name, labels)] = value
        with self._lock:
            values = {key: list(value) if isinstance(value, list) else value for key, value in self._values.items()}
        values.update(collected)
        lines = []
        for name, (kind, help_text, buckets) in FAMILIES.items():
            samples = sorted((labels, value) for (family, labels), value in values.items() if family == name)
            if not samples:
                continue
            lines += ["# HELP %s %s" % (name, help_text.replace("\\", "\\\\").replace("\n", "\\n")),
                      "# TYPE %s %s" % (name, kind)]
            for labels, value in samples:
                if kind != "histogram":
                    lines.append("%s%s %s" % (name, _labels(labels), _number(value)))
                    continue
                for bound, count in zip(buckets + (math.inf,), value[:len(buckets)] + [value[-1]]):
                    lines.append("%s_bucket%s %d" % (name, _labels(labels + (("le", _number(bound)),)), count))
                lines.append("%s_sum%s %s" % (name, _labels(labels), _number(value[-2])))
                lines.append("%s_count%s %d" % (name, _labels(labels), value[-1]))
        return "\n".join(lines) + "\n"


def serve(metrics, address, port):
    """An HTTP server of GET /metrics in a daemon thread; returns it (shutdown() stops it)."""

    class Handler(BaseHTTPRequestHandler):
        timeout = 10  # a client that sends nothing keeps no thread

        def do_GET(self):  # noqa: N802 - the name http.server calls
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404)
                return
            body = metrics.render().encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # scrapes are not news
            pass

    server = ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
