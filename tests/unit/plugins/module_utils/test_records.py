"""Pure logic of the protocol: names, availability, merging and diffs."""
from __future__ import annotations

import pytest

from ansible_collections.nocobase.multienv.plugins.module_utils import _keyspace as ks
from ansible_collections.nocobase.multienv.plugins.module_utils._records import (
    changed_fields,
    check_http_url,
    encode,
    merge,
)
from ansible_collections.nocobase.multienv.plugins.module_utils._resp import pack


@pytest.mark.parametrize("name, ok", [
    ("env_a", True), ("env-b", True), ("e", True), ("a" * 63, True), ("a" * 64, False),
    ("Env", False), ("1env", False), ("env:a", False), ("env a", False), ("", False), (None, False),
])
def test_environment_names(name, ok):
    assert ks.is_environment_name(name) is ok


@pytest.mark.parametrize("name, ok", [
    ("crm", True), ("a_7zkxoarusnx", True), ("main", False), ("crm-x", False), ("Crm", False), ("_crm", False),
])
def test_app_names(name, ok):
    assert ks.is_app_name(name) is ok


def test_availability_window():
    now = 1_000_000_000
    assert ks.is_available(now - 360_000, 360, now) is True
    assert ks.is_available(now - 360_001, 360, now) is False
    assert ks.is_available(None, 360, now) is False
    assert ks.is_available(0, 360, now) is False
    assert ks.heartbeat_age_seconds(now - 1500, now) == 1.5
    assert ks.heartbeat_age_seconds(now + 5000, now) == 0.0  # clock skew never gives a negative age


@pytest.mark.parametrize("raw, version", [(None, 0), ("1", 1), (b"1", 1)])
def test_schema_version(raw, version):
    assert ks.check_schema_version(raw, "k") == version


@pytest.mark.parametrize("raw, text", [("2", "schema version 2 in k is newer"), ("x", "not a protocol version")])
def test_schema_version_refused(raw, text):
    with pytest.raises(ks.ControlPlaneError, match=text):
        ks.check_schema_version(raw, "k")


def test_merge_applies_only_what_is_set():
    current = {"name": "a", "url": "http://x", "proxyUrl": "http://p"}
    assert merge(current, {"name": "a", "url": None, "proxyUrl": "", "appVersion": "2.0"}) == {
        "name": "a", "url": "http://x", "appVersion": "2.0"}
    assert current["proxyUrl"] == "http://p"  # the stored record is not mutated


def test_changed_fields_only():
    assert changed_fields({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 5, "d": 4}) == ({"b": 2, "c": 3}, {"b": 5, "d": 4})


def test_encode_is_canonical():
    assert encode({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'


@pytest.mark.parametrize("url", ["http://a", "https://a.example.com:8443/x", ""])
def test_good_urls(url):
    check_http_url(url, "url")


@pytest.mark.parametrize("url", ["a", "//a", "ftp://a", "http://", "http://a:70000"])
def test_bad_urls(url):
    with pytest.raises(ks.ControlPlaneError, match="^url: "):
        check_http_url(url, "url")


def test_keys_share_one_prefix():
    keys = ks.Keyspace("p:")
    assert [keys.schema, keys.environments, keys.heartbeats, keys.apps, keys.status("x"), keys.commands("e"),
            keys.pending("e"), keys.processed("e"), keys.lock("x"), keys.request("r")] == [
        "p:schema", "p:environments", "p:heartbeats", "p:apps", "p:status:x", "p:commands:e",
        "p:pending:e", "p:processed:e", "p:lock:x", "p:request:r"]


def test_resp_packing():
    assert pack(("HSET", "k", "f", 1, "é")) == b"*5\r\n$4\r\nHSET\r\n$1\r\nk\r\n$1\r\nf\r\n$1\r\n1\r\n$2\r\n\xc3\xa9\r\n"
