"""The status table (plugins/module_utils/_status.py)."""
from __future__ import annotations

from ansible_collections.nocobase.multienv.plugins.module_utils._status import cell, lines

ENVIRONMENTS = [
    {"name": "env_a", "url": "http://localhost:15000", "appVersion": "2.2.15", "heartbeatAge": 3.2, "available": True},
    {"name": "env_b", "url": "http://localhost:15001", "heartbeatAge": None, "available": False},
]
NOW_MS = 1767000000000
APPS = [{"name": "hr", "environments": ["env_a", "env_b"], "proxyTarget": {"environment": "env_a"},
         "status": {"env_a": {"status": "running", "updatedAt": NOW_MS - 300000},
                    "env_b": {"status": "error", "updatedAt": NOW_MS - 5000, "message": "start failed: APP_ERROR\x1b[2J"}}}]


def test_the_table_reads_like_the_platform():
    text = lines(ENVIRONMENTS, APPS, now_ms=NOW_MS)
    assert text[0] == "Environments: 2, 1 available"
    assert text[1].split() == ["NAME", "URL", "VERSION", "HEARTBEAT", "AVAILABLE"]
    assert text[2].split() == ["env_a", "http://localhost:15000", "2.2.15", "3", "s", "ago", "yes"]
    assert text[3].split() == ["env_b", "http://localhost:15001", "-", "never", "NO"]
    assert text[5] == "Apps: 1"
    assert text[6].split() == ["NAME", "ENVIRONMENTS", "PROXIED", "TO", "STATUS", "LAST", "CHANGE"]
    # The newest status among its environments, and the message of each one in error, one printable line.
    assert text[7].split() == ["hr", "env_a,", "env_b", "env_a", "env_a:", "running,", "env_b:", "error",
                               "env_b:", "error", "5", "s", "ago"]
    assert text[8:] == ["", "Errors:", "  hr in env_b: start failed: APP_ERROR?[2J"]
    assert lines(ENVIRONMENTS, [dict(APPS[0], status={})], now_ms=NOW_MS)[7].split()[-1] == "-"  # never changed


def test_a_hostile_record_stays_one_short_printable_cell():
    assert cell("evil\x1b[2J\nname") == "evil?[2J?name"
    assert len(cell("x" * 500)) == 48 and cell("x" * 500).endswith("~")
    assert len(lines([{"name": "a\nb", "available": True}], [])) == 6  # no line was added by the record


def test_a_hostile_change_time_is_ignored_not_trusted():
    """updatedAt comes from Redis: a bool, a string, a negative or a far-future time is no time at all."""
    for hostile in (True, "1767000000000", -10 ** 400, NOW_MS + 10 ** 12, 1.5e12):
        app = dict(APPS[0], status={"env_a": {"status": "running", "updatedAt": hostile},
                                    "env_b": {"status": "stopped", "updatedAt": NOW_MS - 120000}})
        assert lines(ENVIRONMENTS, [app], now_ms=NOW_MS)[7].split()[-5:] == ["env_b:", "stopped", "2", "min", "ago"], hostile
