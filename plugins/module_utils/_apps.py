# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This file is private to the nocobase.multienv collection and may change at any time.
#
# The app, app_info and app_command modules.

from __future__ import annotations

import time

from ansible_collections.nocobase.multienv.plugins.module_utils._keyspace import (
    REQUEST_ID_PATTERN,
    ControlPlaneError,
    is_request_id,
)
from ansible_collections.nocobase.multienv.plugins.module_utils._module import (
    RecordKind,
    diff_result,
    run_record_module,
    availability_spec,
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
    return dict(names=dict(type="list", elements="str"), **availability_spec())


def run_app_info_module(module, plane):
    names = module.params["names"]
    for name in names or []:
        check_app_name(name, "names")
    apps, _environments = plane.read_apps(names)
    return dict(changed=False, apps=list(apps.values()), missing=[name for name in names or [] if name not in apps])


def app_command_argument_spec():
    return dict(
        app=dict(type="str"),
        apps=dict(type="list", elements="str"),
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


def _wait(plane, command, requests, timeout):
    """Poll until every environment completed the request it waits for; fail on its error or a timeout.

    `requests` is {app: {env: requestId}}: the command queued now, or the earlier one of the same
    kind still queued there. A status counts only when it carries that requestId, so an old `error`
    from an earlier command neither fails nor ends the wait. Environments that needed nothing (the
    app already in the command's outcome there) are not waited for.
    """
    deadline = time.monotonic() + timeout
    while True:
        seen = plane.read_completions(requests)
        failed = {app: {env: status for env, (_done, status) in envs.items()
                        if status and status.get("requestId") == requests[app][env]
                        and status.get("status") in ("error", "not_found")}
                  for app, envs in seen.items()}
        failed = {app: envs for app, envs in failed.items() if envs}
        if failed:
            raise ControlPlaneError("failed to %s: %s" % (command, "; ".join(
                "app %r in %s" % (app, envs) for app, envs in sorted(failed.items()))))
        late = {app: {env: (status or {}).get("status", "absent") for env, (done, status) in envs.items() if not done}
                for app, envs in seen.items()}
        late = {app: envs for app, envs in late.items() if envs}
        if not late:
            return
        if time.monotonic() >= deadline:
            raise ControlPlaneError("%s did not complete the %s command within wait_timeout=%ss (%s expected); "
                                    "statuses seen: %s" % (
                                        ", ".join("app %r" % app for app in sorted(late)), command, timeout,
                                        COMMAND_OUTCOME[command] or "removed",
                                        "; ".join("%s %s" % (app, envs) for app, envs in sorted(late.items()))))
        time.sleep(_WAIT_POLL_SECONDS)


def run_app_command_module(module, plane):
    params = module.params
    single = params["apps"] is None
    names = [params["app"]] if single else params["apps"]
    field = "app" if single else "apps"
    for name in names:
        check_app_name(name, field)
    if len(set(names)) != len(names):
        raise ControlPlaneError("apps lists an app twice")
    if params["request_id"] is not None and not is_request_id(params["request_id"]):
        raise ControlPlaneError("request_id: %r must match %s" % (params["request_id"], REQUEST_ID_PATTERN))
    apps, _environments = plane.read_apps(names)
    missing = [name for name in names if name not in apps]
    if missing:
        raise ControlPlaneError("%s: not registered: %s (create them with nocobase.multienv.app)" % (field, ", ".join(missing)))
    command = params["command"]
    targets = {name: _targets(apps[name], params["environments"]) for name in names}
    # One request id per app: the caller's as is for one app, suffixed with the app for many.
    request_ids = {name: params["request_id"] if single or params["request_id"] is None
                   else "%s:%s" % (params["request_id"], name) for name in names}
    for name, request_id in request_ids.items():
        if request_id is not None and not is_request_id(request_id):
            raise ControlPlaneError("request_id: %r, the id of app %s's command, must match %s (the id and the app "
                                    "name together)" % (request_id, name, REQUEST_ID_PATTERN))
    outcomes = plane.enqueue_many(
        [dict(app=name, action=command, environments=targets[name], request_id=request_ids[name],
              payload=params["payload"], force=params["force"]) for name in names],
        dry_run=module.check_mode,
    )
    requests = {}
    for name, outcome in zip(names, outcomes):
        requests[name] = dict(outcome.pop("queued_by"), **{env: outcome["request_id"] for env in outcome["enqueued"]})
    results = [dict(outcome, app=name, environments=targets[name]) for name, outcome in zip(names, outcomes)]
    result = dict(changed=any(entry["enqueued"] for entry in results))
    if module._diff:
        diffs = {name: (
            {env: apps[name]["status"].get(env, {}).get("status", "absent") for env in entry["enqueued"]},
            {env: "%s queued" % command for env in entry["enqueued"]},
        ) for name, entry in zip(names, results) if entry["enqueued"]}
        result["diff"] = diff_result(diffs, names[0] if single else None)
    if params["wait"] and not module.check_mode:
        _wait(plane, command, requests, params["wait_timeout"])
        statuses = plane.read_statuses(targets)
        for entry in results:
            entry["statuses"] = statuses[entry["app"]]
    if single:
        result.update(results[0])
        del result["app"]
    else:
        result["results"] = results
    return result
