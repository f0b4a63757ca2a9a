# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action plugin of nocobase.multienv.container (documented in plugins/modules/container.py)."""

from __future__ import annotations

import shlex

from ansible.errors import AnsibleError
from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

from ansible_collections.nocobase.multienv.plugins.module_utils._docker_state import (
    SPEC_LABEL,
    container_is_current,
    spec_hash,
)

PLATFORM_LABEL = "org.nocobase.multienv.platform"

# The spec, as in community.docker.docker_container; image_pending is not part of it.
ARGUMENT_SPEC = {
    "name": {"type": "str", "required": True},
    "image": {"type": "str", "required": True},
    "state": {"type": "str", "default": "started", "choices": ["present", "started", "healthy"]},
    "networks": {"type": "list", "elements": "dict", "required": True},
    "labels": {"type": "dict"},
    "env": {"type": "dict"},
    "secret_env": {"type": "dict", "no_log": True},
    "command": {"type": "raw"},
    "mounts": {"type": "list", "elements": "dict"},
    "published_ports": {"type": "list", "elements": "str"},
    "healthcheck": {"type": "dict"},
    "init": {"type": "bool"},
    "stop_timeout": {"type": "int"},
    "healthy_wait_timeout": {"type": "int"},
    "pull": {"type": "str", "choices": ["always", "missing", "never", "not_present"]},
    "image_pending": {"type": "bool", "default": False},
}

# secret_env: each variable is a file /run/env.<NAME> in the container, readable by root only, written
# after the container is created and before it starts (Docker copies into existing directories only,
# and /run/secrets exists only where Swarm mounts secrets); this wrapper exports them, then runs the
# image's entry point and command. The Swarm runtime's services use the same wrapper with their Docker
# secrets /run/secrets/env.<NAME> (roles/_common/tasks/service.yml).
SECRET_ENV_DIR = "/run"
SECRET_ENV_WRAPPER = [
    "/bin/sh", "-c",
    'for file in /run/env.* /run/secrets/env.*; do [ -f "$file" ] && export "${file##*/env.}=$(cat "$file")"; done; '
    'exec "$@"',
    "nocobase-secret-env",
]

# The platform settings and run state the action reads, as the roles of the collection define them.
SETTINGS = (
    "nocobase_platform", "nocobase_labels", "nocobase_restart_policy", "nocobase_stop_timeout",
    "nocobase_image_pull", "nocobase_skip_unchanged", "__nocobase_secrets", "__nocobase_run_id",
    "_common_engine", "_common_network_pending", "_common_run_changed",
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        dummy, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        task_vars = task_vars or {}
        try:
            settings = {name: self._templar.template(task_vars[name]) for name in SETTINGS}
        except KeyError as exc:
            raise AnsibleError("nocobase.multienv.container runs in a role of nocobase.multienv, which defines %s" % exc)
        # The spec as the role gave it (validation adds None for what it left out).
        spec = {name: value for name, value in self._task.args.items() if name != "image_pending"}
        name = args["name"]
        pull = args["pull"] or settings["nocobase_image_pull"]
        stop_timeout = args["stop_timeout"] if args["stop_timeout"] is not None else settings["nocobase_stop_timeout"]
        labels = dict(settings["nocobase_labels"], **(args["labels"] or {}))
        labels[PLATFORM_LABEL] = settings["nocobase_platform"]
        labels[SPEC_LABEL] = spec_hash(
            settings["__nocobase_secrets"]["aes_secret_key"], spec,
            (settings["nocobase_platform"], settings["nocobase_labels"], settings["nocobase_restart_policy"],
             settings["nocobase_stop_timeout"]))
        engine = settings["_common_engine"] or {}
        found = (engine.get("containers") or {}).get(name) or {}
        check_mode = bool(self._play_context.check_mode)

        if (boolean(settings["nocobase_skip_unchanged"], strict=False) and pull != "always" and container_is_current(
                engine, name, labels[SPEC_LABEL], args["image"], args["state"] != "present", args["state"] == "healthy")):
            # Docker's health as the run began holds only while nothing it depends on changed since.
            record = {"changed": False, "id": found["id"], "running": found["running"], "addresses": found["addresses"],
                      "healthy": found["health"] == "healthy" and not boolean(settings["_common_run_changed"], strict=False)}
            msg = "%s is what its role wants and was left alone" % name
            predicted = False
        elif check_mode and (boolean(settings["_common_network_pending"], strict=False) or args["image_pending"]):
            # Its network or image does not exist yet: docker_container could not check it.
            record = {"changed": True, "id": None, "running": False, "addresses": {}, "healthy": False}
            msg = "%s would be created" % name
            predicted = True
        else:
            module_args = {
                "name": name, "image": args["image"], "pull": pull,
                "state": "started" if check_mode and args["state"] == "healthy" else args["state"],
                "healthy_wait_timeout": args["healthy_wait_timeout"],
                "restart_policy": settings["nocobase_restart_policy"], "stop_timeout": stop_timeout,
                "init": args["init"], "command": args["command"], "env": args["env"], "labels": labels,
                "network_mode": args["networks"][0]["name"], "networks": args["networks"], "mounts": args["mounts"],
                "published_ports": args["published_ports"] or [], "healthcheck": args["healthcheck"],
                "comparisons": {"env": "strict", "networks": "strict"},
            }
            # Every value of the environment is masked in a failure message.
            secrets = {str(value) for value in list((args["env"] or {}).values()) + list((args["secret_env"] or {}).values())
                       if len(str(value)) > 3}
            try:
                if args["secret_env"]:
                    outcome = self._run_with_secret_env(module_args, args["secret_env"], check_mode, task_vars)
                else:
                    outcome = self._module("community.docker.docker_container", module_args, task_vars)
            except _Failed as failed:
                return dict(result, failed=True, changed=failed.changed,
                            msg=remove_values("%s: %s" % (name, failed.msg), secrets))
            container = outcome.get("container") or {}
            networks = (container.get("NetworkSettings") or {}).get("Networks") or {}
            record = {"changed": bool(outcome.get("changed")), "id": container.get("Id"),
                      "running": bool((container.get("State") or {}).get("Running")),
                      "addresses": {network: (values or {}).get("IPAddress") for network, values in networks.items()},
                      "healthy": False}
            msg = "%s was %s" % (name, "changed" if record["changed"] else "checked; nothing to change")
            predicted = False

        record["run"] = settings["__nocobase_run_id"]
        containers = dict(self._templar.template(task_vars.get("__common_containers")) or {}, **{name: record})
        # The result holds none of the arguments (they hold secrets). A prediction is shown, as debug's msg is.
        return dict(result, changed=record["changed"], msg=msg, container=record,
                    ansible_facts={"__common_containers": containers}, _ansible_verbose_always=predicted)

    def _module(self, module_name, module_args, task_vars):
        """A module's result, run as a no_log task (its arguments hold secrets); _Failed if it failed."""
        task_no_log, self._task.no_log = self._task.no_log, True
        try:
            outcome = self._execute_module(module_name=module_name, task_vars=task_vars,
                                           module_args={key: value for key, value in module_args.items() if value is not None})
        finally:
            self._task.no_log = task_no_log
        if outcome.get("failed"):
            raise _Failed(outcome.get("msg", "%s failed" % module_name), bool(outcome.get("changed")))
        return outcome

    def _run_with_secret_env(self, module_args, secret_env, check_mode, task_vars):
        """docker_container with the secret_env wrapper around the image's entry point and command: the
        container is created, given its secret files if it is new, then brought to the wanted state."""
        images = self._module("community.docker.docker_image_info", {"name": [module_args["image"]]}, task_vars)["images"]
        if not images and check_mode:  # it would be pulled first: the container can only be predicted
            return {"changed": True, "container": {}}
        if not images:
            raise _Failed("the image %s is not on the Docker engine (it is pulled as the run begins)" % module_args["image"])
        config = images[0].get("Config") or {}
        command = module_args["command"]
        if command is None:
            command = config.get("Cmd") or []
        elif isinstance(command, str):
            command = shlex.split(command)  # as docker_container splits a command given as a string
        wrapped = dict(module_args, entrypoint=SECRET_ENV_WRAPPER, command=(config.get("Entrypoint") or []) + list(command))
        created = self._module("community.docker.docker_container", dict(wrapped, state="present"), task_vars)
        if created.get("changed") and not check_mode:
            container = (created.get("container") or {}).get("Id") or module_args["name"]
            for variable, value in sorted(secret_env.items()):
                self._module("community.docker.docker_container_copy_into", {
                    "container": container, "container_path": "%s/env.%s" % (SECRET_ENV_DIR, variable),
                    "content": str(value), "mode": 0o400, "owner_id": 0, "group_id": 0}, task_vars)
        if module_args["state"] == "present":
            return created
        started = self._module("community.docker.docker_container", wrapped, task_vars)
        return dict(started, changed=bool(created.get("changed") or started.get("changed")))


class _Failed(Exception):
    def __init__(self, msg, changed=False):
        super().__init__(msg)
        self.msg = msg
        self.changed = changed
