"""The agent's metrics in Prometheus's text exposition format (roles/worker/files/agent/metrics.py)."""
from __future__ import annotations

import sys

import pytest
import yaml

from conftest import REPO

sys.path.insert(0, str(REPO / "roles" / "worker" / "files" / "agent"))

import agent  # noqa: E402
import metrics  # noqa: E402


def test_counters_histograms_and_collected_gauges_render_as_prometheus_reads_them():
    registry = metrics.Metrics(environment="env_a")
    registry.inc("nocobase_multienv_commands_total", action="start", outcome="completed")
    registry.inc("nocobase_multienv_commands_total", action="start", outcome="completed")
    registry.observe("nocobase_multienv_command_duration_seconds", 0.3, action="start")
    registry.observe("nocobase_multienv_command_duration_seconds", 700, action="start")
    registry.collectors.append(lambda: [("nocobase_multienv_apps", {"status": "running"}, 3)])
    text = registry.render()
    lines = text.splitlines()
    assert "# TYPE nocobase_multienv_commands_total counter" in lines
    assert 'nocobase_multienv_commands_total{action="start",environment="env_a",outcome="completed"} 2' in lines
    assert 'nocobase_multienv_command_duration_seconds_bucket{action="start",environment="env_a",le="0.25"} 0' in lines
    # Buckets are cumulative; 700 s is above the last bound, so only +Inf holds it.
    assert 'nocobase_multienv_command_duration_seconds_bucket{action="start",environment="env_a",le="0.5"} 1' in lines
    assert 'nocobase_multienv_command_duration_seconds_bucket{action="start",environment="env_a",le="600.0"} 1' in lines
    assert 'nocobase_multienv_command_duration_seconds_bucket{action="start",environment="env_a",le="+Inf"} 2' in lines
    assert 'nocobase_multienv_command_duration_seconds_sum{action="start",environment="env_a"} 700.3' in lines
    assert 'nocobase_multienv_command_duration_seconds_count{action="start",environment="env_a"} 2' in lines
    assert 'nocobase_multienv_apps{environment="env_a",status="running"} 3' in lines
    assert "nocobase_multienv_stream_length" not in text  # no sample, no family
    assert text.endswith("\n")


def test_a_failing_collector_leaves_its_samples_out_not_the_scrape():
    registry = metrics.Metrics(environment="env_a")

    def broken():
        raise ConnectionError("redis is down")

    registry.collectors += [broken, lambda: [("nocobase_multienv_agent_ready", {}, 0)]]
    assert 'nocobase_multienv_agent_ready{environment="env_a"} 0' in registry.render().splitlines()


def test_label_values_are_escaped_and_unknown_metrics_refused():
    registry = metrics.Metrics(environment='a"b\\c\nd')
    registry.inc("nocobase_multienv_resyncs_total", result="completed")
    assert 'nocobase_multienv_resyncs_total{environment="a\\"b\\\\c\\nd",result="completed"} 1' in registry.render()
    with pytest.raises(KeyError):
        registry.inc("nocobase_multienv_not_declared_total")


def test_every_metric_follows_prometheus_naming():
    for name, (kind, help_text, buckets) in metrics.FAMILIES.items():
        assert name.startswith("nocobase_multienv_") and help_text
        assert name.endswith("_total") == (kind == "counter"), name
        assert (buckets is not None) == (kind == "histogram"), name
        if kind == "histogram":
            assert name.endswith("_seconds") and list(buckets) == sorted(buckets), name


def test_the_agent_image_gets_every_program_file():
    """The worker role copies a fixed list into the image's build context: a module missing from it makes
    an agent that cannot start."""
    sources = yaml.safe_load((REPO / "roles" / "worker" / "vars" / "main.yml").read_text())["_worker_agent_sources"]
    listed = {source.rsplit("/", 1)[-1] for source in sources}
    assert {path.name for path in (REPO / "roles" / "worker" / "files" / "agent").glob("*.py")} <= listed


def test_a_deferred_command_counts_once_however_often_it_is_retried():
    """The consumer retries a deferred entry every quarter second; the counter counts commands, not retries."""
    counted = agent.Agent.__new__(agent.Agent)
    counted.metrics, counted.deferred_counted = metrics.Metrics(environment="env_a"), set()
    for dummy in range(5):
        counted._count_command("1767000000000-0", "start", "deferred", None)
    counted._count_command("1767000000000-0", "start", "done", "running")
    counted._count_command("1767000000001-0", "stop", "done", "error")
    lines = counted.metrics.render().splitlines()
    assert 'nocobase_multienv_commands_total{action="start",environment="env_a",outcome="deferred"} 1' in lines
    assert 'nocobase_multienv_commands_total{action="start",environment="env_a",outcome="completed"} 1' in lines
    assert 'nocobase_multienv_commands_total{action="stop",environment="env_a",outcome="failed"} 1' in lines
    assert counted.deferred_counted == set()
