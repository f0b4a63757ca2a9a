# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This file is private to the nocobase.multienv collection and may change at any time.
#
# The app, app_info and app_command modules.

from __future__ import annotations

import time

from ansible_collections.nocobase.multienv.plugins.module_utils._keyspace import ControlPlaneError, is_request_id
from ansible_collections.nocobase.multienv.plugins.module_utils._module import (
    RecordKind,
    run_record_module,
    stale_after_spec,
)
from ansible_collections.nocobase.multienv.plugins.module_utils._records import app_updates, check_app, check_app_name

ITEM_FIELDS = ("name", "title", "environments", "options", "proxy_environment", "cname", "managed_by", "state")

# The status each command ends in; None means the status field is gone.
COMMAND_OUTCOME = {"start": "running", "stop": "stopped", "remove": None, "create": "initialized"}
_WAIT_POLL_SECONDS = 0.5


def _item_spec(name_required):
    return dict(
        name=dict(type="str", required=name_required),
        title=dict(type="str"),
        environments=dict(type="list", elements="str"),
        options=dict(type="dict"),
        proxy_environment=dict(type="str"),
        cname=dict(type="str"),
        managed_by=dict(type="str"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    )


def app_argument_spec():
    spec = _item_spec(name_required=False)
    spec.update(
        apps=dict(type="list", elements="dict", options=_item_spec(name_required=True)),
        require_registered_environments=dict(type="bool", default=True),
    )
    return spec


def run_app_module(module, plane):
    registered = plane.registered_environments() if module.params["require_registered_environments"] else set()

    def check(record, _created, prefix):
        check_app(record, registered, module.params["require_registered_environments"], prefix)

    kind = RecordKind(
        list_option="apps",
        item_fields=ITEM_FIELDS,
        hash_key=plane.keys.apps,
        updates=app_updates,
        check=check,
        on_remove=plane.drop_app_keys,
    )
    result = run_record_module(module, plane, kind)
    if module.params["name"] is not None:
        result["app"] = result["results"][0]["record"] or {}
    return result


def app_info_argument_spec():
    return dict(names=dict(type="list", elements="str"), stale_after=stale_after_spec())


def run_app_info_module(module, plane):
    names = module.params["names"]
    for name in names or []:
        check_app_name(name, "names")
    apps, _environments = plane.read_apps(names)
    return dict(changed=False, apps=list(apps.values()), missing=[name for name in names or [] if name not in apps])


def app_command_argument_spec():
    return dict(
        app=dict(type="str", required=True),
        command=dict(type="str", required=True, choices=sorted(COMMAND_OUTCOME)),
        environments=dict(type="list", elements="str"),
        request_id=dict(type="str"),
        payload=dict(type="dict"),
        force=dict(type="bool", default=False),
        wait=dict(type="bool", default=False),
        wait_timeout=dict(type="int", default=600),
    )


def _targets(app_record, requested):
    """The requested environments in the app's own order (its start order)."""
    own = app_record.get("environments") or []
    if requested is None:
        return list(own)
    unknown = [env for env in requested if env not in own]
    if unknown:
        raise ControlPlaneError(
            "environments: %s not among the environments of app %r (%s)"
            % (", ".join(unknown), app_record["name"], ", ".join(own))
        )
    return [env for env in own if env in requested]


def _wait(plane, app, command, targets, timeout):
    """Poll statuses until every target reached the command's outcome; fail on error or timeout."""
    wanted = COMMAND_OUTCOME[command]
    deadline = time.monotonic() + timeout
    while True:
        statuses = plane.read_statuses(app, targets)
        seen = {env: (value or {}).get("status") for env, value in statuses.items()}
        failed = {env: statuses[env] for env, status in seen.items() if status == "error"}
        if failed:
            raise ControlPlaneError("app %r failed to %s in %s" % (app, command, failed))
        if all(status == wanted for status in seen.values()):
            return statuses
        if time.monotonic() >= deadline:
            raise ControlPlaneError(
                "app %r did not reach %s within wait_timeout=%ss; statuses seen: %s" % (app, wanted or "removed", timeout, seen)
            )
        time.sleep(_WAIT_POLL_SECONDS)


def run_app_command_module(module, plane):
    params = module.params
    app, command = params["app"], params["command"]
    check_app_name(app, "app")
    if params["request_id"] is not None and not is_request_id(params["request_id"]):
        raise ControlPlaneError("request_id: %r must match ^[A-Za-z0-9_.:-]{1,128}$" % params["request_id"])
    apps, _environments = plane.read_apps([app])
    if app not in apps:
        raise ControlPlaneError("app: %r is not registered (create it with nocobase.multienv.app)" % app)
    targets = _targets(apps[app], params["environments"])
    current = apps[app]["status"]
    outcome = plane.enqueue(
        app, command, targets, request_id=params["request_id"], payload=params["payload"],
        force=params["force"], dry_run=module.check_mode,
    )
    result = dict(
        changed=bool(outcome["enqueued"]),
        request_id=outcome["request_id"],
        enqueued=outcome["enqueued"],
        skipped=outcome["skipped"],
        duplicate=outcome["duplicate"],
        environments=targets,
    )
    if module._diff:
        result["diff"] = dict(
            before={env: current.get(env, {}).get("status", "absent") for env in outcome["enqueued"]},
            after={env: "%s queued" % command for env in outcome["enqueued"]},
        )
    if params["wait"] and not module.check_mode:
        result["statuses"] = _wait(plane, app, command, targets, params["wait_timeout"])
    return result
