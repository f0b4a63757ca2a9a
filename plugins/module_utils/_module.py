# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This file is private to the nocobase.multienv collection and may change at any time.
#
# What every module of the collection shares: the connection options, error handling, and the
# record reconciliation of the `environment` and `app` modules (single and list form).

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nocobase.multienv.plugins.module_utils._connection import (
    CONNECTION_REQUIRED_TOGETHER,
    connection_argument_spec,
    module_connect,
)
from ansible_collections.nocobase.multienv.plugins.module_utils._control_plane import ControlPlane
from ansible_collections.nocobase.multienv.plugins.module_utils._keyspace import (
    DEFAULT_STALE_AFTER_SECONDS,
    ControlPlaneError,
    check_key_prefix,
)
from ansible_collections.nocobase.multienv.plugins.module_utils._records import changed_fields, merge

from ansible_collections.nocobase.multienv.plugins.module_utils._resp import RedisError


def availability_spec():
    """The options of plugins/doc_fragments/availability.py."""
    return dict(stale_after=dict(type="int", default=DEFAULT_STALE_AFTER_SECONDS),
                expected_environments=dict(type="dict", default={}))


def run_module(argument_spec, runner, required_together=(), **module_kwargs):
    """Build the AnsibleModule, connect, run `runner(module, plane)` and exit with its result."""
    spec = connection_argument_spec()
    spec.update(argument_spec)
    module = AnsibleModule(
        argument_spec=spec,
        supports_check_mode=True,
        required_together=CONNECTION_REQUIRED_TOGETHER + list(required_together),
        **module_kwargs
    )
    try:
        check_key_prefix(module.params["key_prefix"])  # before anything connects
    except ControlPlaneError as exc:
        module.fail_json(msg=str(exc))
    client = module_connect(module)
    try:
        plane = ControlPlane(client, module.params["key_prefix"], module.params.get("stale_after") or DEFAULT_STALE_AFTER_SECONDS,
                             module.params.get("expected_environments"))
        result = runner(module, plane)
        for problem in plane.skipped:
            module.warn(problem)
    except ControlPlaneError as exc:
        module.fail_json(msg=str(exc))
    except RedisError as exc:
        module.fail_json(msg="Redis failed during the task, nothing was half written: %s" % exc)
    finally:
        client.close()
    module.exit_json(**result)


class RecordKind:
    """How one kind of record (environment, app) maps between module options and Redis."""

    def __init__(self, list_option, item_fields, hash_key, updates, check, on_create=None, on_remove=None,
                 key_types=None):
        self.list_option = list_option  # "environments"
        self.item_fields = item_fields  # option names of one item
        self.hash_key = hash_key
        self.updates = updates  # (item, prefix) -> validated field updates
        self.check = check  # (merged record, created, prefix) -> raise on a bad record
        self.on_create = on_create
        self.on_remove = on_remove
        self.key_types = key_types  # name -> {key: type} the keys of a created record must have


def _diff_entry(before, after):
    if before is None:
        return {"state": "absent"}, dict(after, state="present")
    if after is None:
        return dict(before, state="present"), {"state": "absent"}
    return changed_fields(before, after)


def diff_result(diffs, single_name=None):
    """{name: (before, after)} as Ansible's diff: one record's pair, or both sides keyed by name."""
    if single_name is not None:
        before, after = diffs.get(single_name, ({}, {}))
        return dict(before=before, after=after)
    return dict(before={name: pair[0] for name, pair in diffs.items()},
                after={name: pair[1] for name, pair in diffs.items()})


def run_record_module(module, plane, kind):
    """Reconcile one record (module options) or a list of them (`kind.list_option`)."""
    params = module.params
    single = params[kind.list_option] is None
    items = [{field: params[field] for field in kind.item_fields}] if single else params[kind.list_option]
    requested = {}
    for index, item in enumerate(items):
        prefix = "" if single else "%s[%d]." % (kind.list_option, index)
        updates = kind.updates(item, prefix)
        if updates["name"] in requested:
            raise ControlPlaneError("%sname: %r is listed twice" % (prefix, updates["name"]))
        requested[updates["name"]] = (item.get("state") or "present", updates, prefix)

    final = {}

    def plan(current):
        final.clear()
        for name, (state, updates, prefix) in requested.items():
            if state == "absent":
                final[name] = None
                continue
            record = merge(current.get(name), updates)
            kind.check(record, name not in current, prefix)
            final[name] = record
        return final

    changes = plane.reconcile(kind.hash_key, requested, plan, module.check_mode, kind.on_create, kind.on_remove,
                              kind.key_types)
    result = dict(
        changed=bool(changes),
        results=[
            dict(name=name, state=state, changed=name in changes, record=final[name])
            for name, (state, _updates, _prefix) in requested.items()
        ],
    )
    if module._diff:
        diffs = {name: _diff_entry(*change) for name, change in changes.items()}
        result["diff"] = diff_result(diffs, items[0]["name"] if single else None)
    return result
