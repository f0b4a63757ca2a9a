# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This file is private to the nocobase.multienv collection and may change at any time.
#
# The environment and environment_info modules.

from __future__ import annotations

import time

from ansible_collections.nocobase.multienv.plugins.module_utils._keyspace import ControlPlaneError, is_version
from ansible_collections.nocobase.multienv.plugins.module_utils._module import RecordKind, availability_spec, run_record_module
from ansible_collections.nocobase.multienv.plugins.module_utils._records import (
    check_environment_name,
    check_new_environment,
    environment_updates,
)

ITEM_FIELDS = ("name", "url", "proxy_url", "app_version", "state")


def _item_spec(name_required):
    return dict(
        name=dict(type="str", required=name_required),
        url=dict(type="str"),
        proxy_url=dict(type="str"),
        app_version=dict(type="str"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    )


def environment_argument_spec():
    spec = _item_spec(name_required=False)
    spec.update(
        environments=dict(type="list", elements="dict", options=_item_spec(name_required=True)),
        heartbeat=dict(type="bool", default=False),
    )
    return spec


def _check(record, created, prefix):
    if created:
        check_new_environment(record, prefix)


def run_environment_module(module, plane):
    kind = RecordKind(
        list_option="environments",
        item_fields=ITEM_FIELDS,
        hash_key=plane.keys.environments,
        updates=environment_updates,
        check=_check,
        on_create=plane.create_consumer_group,
        on_remove=plane.drop_environment_keys,
        key_types=plane.environment_key_types,
    )
    result = run_record_module(module, plane, kind)
    if module.params["heartbeat"] and not module.check_mode:
        plane.beat([entry["name"] for entry in result["results"] if entry["state"] == "present"])
    if module.params["name"] is not None:
        result["environment"] = result["results"][0]["record"] or {}
    return result


def environment_info_argument_spec():
    return dict(names=dict(type="list", elements="str"), **availability_spec(),
                wait_timeout=dict(type="int", default=0), wait_interval=dict(type="float", default=1.0),
                app_version=dict(type="str"))


def _not_ready(names, environments, app_version=None):
    """'<name> (why)' for each name that is not available, or (app_version set) reports another version."""
    reasons = []
    for name in names:
        record = environments.get(name)
        if record is None:
            reasons.append("%s (not registered)" % name)
        elif not record["available"]:
            age = record["heartbeatAge"]
            reasons.append("%s (%s)" % (name, "never beat" if age is None else "last beat %.0f s ago" % age))
        elif app_version is not None and record.get("appVersion") != app_version:
            reasons.append("%s (appVersion %s, not %s)" % (name, record.get("appVersion") or "unset", app_version))
    return reasons


def run_environment_info_module(module, plane):
    names = module.params["names"]
    for name in names or []:
        check_environment_name(name, "names")
    timeout = module.params["wait_timeout"]
    app_version = module.params["app_version"]
    if timeout > 0 and not names:
        raise ControlPlaneError("wait_timeout: name the environments to wait for in names")
    if app_version is not None and not (timeout > 0 and is_version(app_version)):
        raise ControlPlaneError("app_version: %r must be a version, and is waited for with wait_timeout" % (app_version,))
    started = time.monotonic()
    while True:
        environments = plane.read_environments(names)
        waiting = _not_ready(names, environments, app_version) if timeout > 0 else []
        waited = round(time.monotonic() - started, 1)
        if not waiting:
            break
        if waited >= timeout:
            raise ControlPlaneError("not available%s after %d s (stale_after %d s): %s"
                                    % (" with appVersion " + app_version if app_version else "", timeout,
                                       plane.stale_after, ", ".join(waiting)))
        time.sleep(min(module.params["wait_interval"], max(0.0, timeout - waited)))
    return dict(
        changed=False,
        environments=list(environments.values()),
        missing=[name for name in names or [] if name not in environments],
        waited=waited,
        schema_version=plane.schema_version,
    )
