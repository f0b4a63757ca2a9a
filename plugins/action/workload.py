# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action plugin of nocobase.multienv.workload (documented in plugins/modules/workload.py)."""

from __future__ import annotations

from ansible.errors import AnsibleError
from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

from ansible_collections.nocobase.multienv.plugins.module_utils._docker_state import (
    SPEC_LABEL,
    container_is_current,
    spec_hash,
)
from ansible_collections.nocobase.multienv.plugins.module_utils._workload import (
    COMPONENTS,
    SECRET_DIRS,
    build,
    docker_container_args,
    secret_items,
    swarm_secret_name,
    swarm_service_args,
    variable_names,
    wrapped_command,
)

ARGUMENT_SPEC = {
    "component": {"type": "str", "required": True, "choices": list(COMPONENTS)},
    "labels": {"type": "dict", "default": {}},
    "image": {"type": "str"},
    "image_pending": {"type": "bool", "default": False},
}

# The platform settings and run state the action reads, as the roles of the collection define them.
SETTINGS = (
    "nocobase_restart_policy", "nocobase_stop_timeout", "nocobase_image_pull", "nocobase_skip_unchanged",
    "__nocobase_platform", "__nocobase_secrets", "__nocobase_run_id", "_common_engine", "_common_network_pending",
    "_common_run_changed",
)
# The platform settings a container's spec hash covers besides its spec (the action applies them).
HASHED_SETTINGS = ("nocobase_restart_policy", "nocobase_stop_timeout")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        dummy, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        task_vars = task_vars or {}
        component = args["component"]
        if component == "agent" and not args["image"]:
            raise AnsibleError("nocobase.multienv.workload: the agent's image is built on its engine: give its name (image)")
        try:
            settings = {name: self._templar.template(task_vars[name]) for name in SETTINGS}
            variables = {name: self._templar.template(task_vars[name]) for name in variable_names(component)}
        except KeyError as exc:
            raise AnsibleError("nocobase.multienv.workload runs in a role of nocobase.multienv, which defines %s" % exc)
        platform = settings["__nocobase_platform"]
        try:
            spec = build(component, platform, variables, args["image"])
        except ValueError as exc:
            return dict(result, failed=True, changed=False, msg="nocobase.multienv.workload %s: %s" % (component, exc))
        spec["labels"].update(args["labels"])
        secrets = secret_items(spec, settings["__nocobase_secrets"])
        # Every secret and every value of the environment is masked in a failure message.
        masked = {str(value) for value in list(spec["env"].values()) + [item["value"] for item in secrets]
                  if len(str(value)) > 3}
        try:
            if platform["runtime"] == "swarm":
                return dict(result, **self._swarm(spec, secrets, settings, task_vars))
            return dict(result, **self._docker(spec, secrets, settings, args["image_pending"], task_vars))
        except _Failed as failed:
            return dict(result, failed=True, changed=failed.changed,
                        msg=remove_values("%s: %s" % (spec["name"], failed.msg), masked))

    def _docker(self, spec, secrets, settings, image_pending, task_vars):
        """The container of the spec on this host's engine, left alone when it is current."""
        name = spec["name"]
        module_args = docker_container_args(spec, settings)
        spec_label = self._spec_hash(spec, secrets, settings)
        module_args["labels"] = dict(module_args["labels"], **{SPEC_LABEL: spec_label})
        engine = settings["_common_engine"] or {}
        found = (engine.get("containers") or {}).get(name) or {}
        check_mode = bool(self._play_context.check_mode)
        state = spec["state"]

        if (boolean(settings["nocobase_skip_unchanged"], strict=False) and module_args["pull"] != "always"
                and container_is_current(engine, name, spec_label, spec["image"], state != "present", state == "healthy")):
            # Docker's health as the run began holds only while nothing it depends on changed since.
            record = {"changed": False, "id": found["id"], "running": found["running"], "addresses": found["addresses"],
                      "healthy": found["health"] == "healthy" and not boolean(settings["_common_run_changed"], strict=False)}
            msg = "%s is what its role wants and was left alone" % name
            predicted = False
        elif check_mode and (boolean(settings["_common_network_pending"], strict=False) or image_pending):
            # Its network or image does not exist yet: docker_container could not check it.
            record = {"changed": True, "id": None, "running": False, "addresses": {}, "healthy": False}
            msg = "%s would be created" % name
            predicted = True
        else:
            if check_mode and state == "healthy":
                module_args["state"] = "started"
            outcome = self._run_container(spec, module_args, secrets, check_mode, task_vars)
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
        # The result holds none of the spec (secrets of the inventory may be in it). A prediction is
        # shown, as debug's msg is.
        return dict(changed=record["changed"], msg=msg, container=record,
                    ansible_facts={"__common_containers": containers}, _ansible_verbose_always=predicted)

    def _run_container(self, spec, module_args, secrets, check_mode, task_vars):
        """docker_container; with secrets, the container is created, given its secret files if it is
        new, then brought to the wanted state (its secret variables through the wrapper)."""
        if not secrets:
            return self._module("community.docker.docker_container", module_args, task_vars)
        if spec["secret_env"]:
            config = self._image_config(spec["image"], task_vars)
            if config is None and check_mode:  # it would be pulled first: the container can only be predicted
                return {"changed": True, "container": {}}
            if config is None:
                raise _Failed("the image %s is not on the Docker engine (it is pulled as the run begins)" % spec["image"])
            module_args["entrypoint"], module_args["command"] = wrapped_command(spec, config)
        created = self._module("community.docker.docker_container", dict(module_args, state="present"), task_vars)
        if created.get("changed") and not check_mode:
            container = (created.get("container") or {}).get("Id") or spec["name"]
            for item in secrets:
                self._module("community.docker.docker_container_copy_into", {
                    "container": container, "container_path": "%s/%s" % (SECRET_DIRS["docker"], item["name"]),
                    "content": item["value"], "mode": item["mode"], "owner_id": item["uid"], "group_id": item["gid"]},
                    task_vars)
        if spec["state"] == "present":
            return created
        started = self._module("community.docker.docker_container", module_args, task_vars)
        return dict(started, changed=bool(created.get("changed") or started.get("changed")))

    def _swarm(self, spec, secrets, settings, task_vars):
        """What roles/_common/tasks/service.yml runs through the swarm manager: the service's arguments
        and its Docker secrets. The image is pulled here first (nocobase_image_pull), on this host's
        engine, the node the service is pinned to."""
        pull = spec["pull"] or settings["nocobase_image_pull"]
        check_mode = bool(self._play_context.check_mode)
        changed = False
        if pull != "never":
            pulled = self._module("community.docker.docker_image", {
                "name": spec["image"], "source": "pull", "force_source": pull == "always"}, task_vars)
            changed = bool(pulled.get("changed"))
        config = self._image_config(spec["image"], task_vars) if spec["secret_env"] else {}
        if config is None and not (check_mode and pull != "never"):
            raise _Failed("%s is not on the Docker engine of this host: a service runs the image of its node's engine, "
                          "so load or build it there, or let it be pulled (nocobase_image_pull)" % spec["image"])
        node_id = ((settings["_common_engine"] or {}).get("swarm") or {}).get("node_id")
        service = swarm_service_args(spec, settings, config or {}, node_id)
        # Any change of the spec updates the service, which then takes all of its arguments (docker_swarm_service
        # compares only the arguments given: a limit set to null would otherwise stay).
        service["labels"] = dict(service["labels"], **{SPEC_LABEL: self._spec_hash(spec, secrets, settings)})
        docker_secrets = [{"name": swarm_secret_name(spec["name"], item["name"]), "filename": item["name"],
                           "data": item["value"], "uid": str(item["uid"]), "gid": str(item["gid"]), "mode": item["mode"]}
                          for item in secrets]
        # Hidden like a no_log task's: the secrets' data.
        return dict(changed=changed, service=service, secrets=docker_secrets, wait_timeout=int(spec["wait_timeout"]),
                    replicas=int(spec["replicas"]), predicted=config is None, _ansible_no_log=True)

    @staticmethod
    def _spec_hash(spec, secrets, settings):
        """The spec's hash with its secrets' values, keyed with the AES key (the label tells nothing of them)."""
        return spec_hash(settings["__nocobase_secrets"]["aes_secret_key"],
                         dict(spec, secrets=[[item[field] for field in sorted(item)] for item in secrets]),
                         [settings[setting] for setting in HASHED_SETTINGS])

    def _image_config(self, image, task_vars):
        """The image's Config on this host's engine (its entry point and command), None if it is not there."""
        images = self._module("community.docker.docker_image_info", {"name": [image]}, task_vars)["images"]
        return (images[0].get("Config") or {}) if images else None

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


class _Failed(Exception):
    def __init__(self, msg, changed=False):
        super().__init__(msg)
        self.msg = msg
        self.changed = changed
