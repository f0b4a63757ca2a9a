"""Which environments the worker role registers (environments_to_register in plugins/module_utils/_records.py)."""
from __future__ import annotations

import pytest
from ansible_collections.nocobase.multienv.plugins.module_utils._keyspace import ControlPlaneError
from ansible_collections.nocobase.multienv.plugins.module_utils._records import environments_to_register

# As the records lookup returns them: the stored record and the derived fields.
RECORDS = [
    {"name": "env_a", "url": "http://nb-worker-env_a:13000", "proxyUrl": "http://proxy/env_a", "appVersion": "2.0.1",
     "available": True, "heartbeatAge": 3.2},
    {"name": "env_b", "url": "http://nb-worker-env_b:13000", "available": False, "heartbeatAge": None},
]


def test_registered_environments_are_left_alone():
    wanted = [{"name": "env_a", "url": "http://nb-worker-env_a:13000", "proxy_url": "http://proxy/env_a"},
              {"name": "env_b", "url": "http://nb-worker-env_b:13000", "proxy_url": None}]
    assert environments_to_register(RECORDS, wanted) == []


@pytest.mark.parametrize("item", [
    {"name": "env_c", "url": "http://nb-worker-env_c:13000"},  # no record
    {"name": "env_a", "url": "http://elsewhere:13000"},  # another URL
    {"name": "env_b", "url": "http://nb-worker-env_b:13000", "proxy_url": "http://proxy/env_b"},  # a field to add
    {"name": "env_a", "url": "http://nb-worker-env_a:13000", "proxy_url": ""},  # a field to remove
])
def test_missing_or_different_records_are_registered(item):
    assert environments_to_register(RECORDS, [item]) == [item]


def test_nothing_read_means_everything_is_registered():
    wanted = [{"name": "env_a", "url": "http://nb-worker-env_a:13000"}]
    assert environments_to_register([], wanted) == wanted


def test_a_bad_wanted_item_names_the_field():
    with pytest.raises(ControlPlaneError, match="url"):
        environments_to_register(RECORDS, [{"name": "env_a", "url": "javascript:alert(1)"}])
