"""The status table (plugins/module_utils/_status.py)."""
from __future__ import annotations

from ansible_collections.nocobase.multienv.plugins.module_utils._status import cell, lines

ENVIRONMENTS = [
    {"name": "env_a", "url": "http://localhost:15000", "appVersion": "2.2.15", "heartbeatAge": 3.2, "available": True},
    {"name": "env_b", "url": "http://localhost:15001", "heartbeatAge": None, "available": False},
]
APPS = [{"name": "hr", "environments": ["env_a", "env_b"], "proxyTarget": {"environment": "env_a"},
         "status": {"env_a": {"status": "running"}}}]


def test_the_table_reads_like_the_platform():
    text = lines(ENVIRONMENTS, APPS)
    assert text[0] == "Environments: 2, 1 available"
    assert text[1].split() == ["NAME", "URL", "VERSION", "HEARTBEAT", "AVAILABLE"]
    assert text[2].split() == ["env_a", "http://localhost:15000", "2.2.15", "3", "s", "ago", "yes"]
    assert text[3].split() == ["env_b", "http://localhost:15001", "-", "never", "NO"]
    assert text[5] == "Apps: 1"
    assert text[7].split() == ["hr", "env_a,", "env_b", "env_a", "env_a:", "running,", "env_b:", "none"]


def test_a_hostile_record_stays_one_short_printable_cell():
    assert cell("evil\x1b[2J\nname") == "evil?[2J?name"
    assert len(cell("x" * 500)) == 48 and cell("x" * 500).endswith("~")
    assert len(lines([{"name": "a\nb", "available": True}], [])) == 6  # no line was added by the record
