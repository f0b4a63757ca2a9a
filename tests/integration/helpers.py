"""Helpers shared by the integration tests: run modules in-process, poll, write raw records."""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import time

from ansible.module_utils.testing import patch_module_args


class ModuleFailed(Exception):
    def __init__(self, result):
        super().__init__(result.get("msg"))
        self.result = result


def run(name, args, check=False, diff=False):
    """Run a module in-process, as Ansible would (argument parsing included).

    Return the module's result dict; raise ModuleFailed with it when the module fails."""
    module = importlib.import_module("ansible_collections.nocobase.multienv.plugins.modules." + name)
    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)
    out = io.StringIO()
    with patch_module_args(args), contextlib.redirect_stdout(out):
        try:
            module.main()
        except SystemExit:
            pass
    result = json.loads(out.getvalue())
    if result.get("failed"):
        raise ModuleFailed(result)
    return result


def wait_for(predicate, timeout=10.0, interval=0.02, what="condition"):
    """Poll until `predicate()` is truthy (and return it), bounded by `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def put_app(client, keys, name, environments):
    """An app record written directly, as a supervisor would (redis-py client)."""
    record = {"environments": environments, "name": name, "options": {"dbConnType": "new_database"}}
    client.hset(keys.apps, name, json.dumps(record, separators=(",", ":"), sort_keys=True))


def stop_processes(started):
    """Kill what a fixture started ((process, log file) pairs) and close the logs."""
    for process, log in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        log.close()


def producer(url, key_prefix="nocobase:", stale_after=None):
    """The collection's producer (ControlPlane) on its own connection, as the modules use it."""
    from ansible_collections.nocobase.multienv.plugins.module_utils._connection import connect
    from ansible_collections.nocobase.multienv.plugins.module_utils._control_plane import ControlPlane

    plane = ControlPlane(connect({"redis_url": url, "connect_timeout": 10}), key_prefix)
    if stale_after is not None:
        plane.stale_after = stale_after
    return plane
