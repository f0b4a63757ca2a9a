# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action plugin of nocobase.multienv.workload (documented in plugins/modules/workload.py)."""

from __future__ import annotations

import re
import time

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
    LABEL,
    SECRET_DIRS,
    VOLUME_JOBS,
    build,
    docker_container_args,
    secret_items,
    swarm_secret_name,
    swarm_service_args,
    variable_names,
    volume_job_args,
    wrapped_command,
)

ARGUMENT_SPEC = {
    "component": {"type": "str", "choices": list(COMPONENTS)},
    "labels": {"type": "dict", "default": {}},
    "image": {"type": "str"},
    "image_pending": {"type": "bool", "default": False},
    "swarm_node": {"type": "dict"},
    "containers": {"type": "list", "elements": "str"},
    "state": {"type": "str", "choices": ["stopped", "absent"]},
    "services": {"type": "dict", "options": {
        "filters": {"type": "dict", "required": True},
        "names": {"type": "list", "elements": "str"},
    }},
    "volume_job": {"type": "dict", "options": {
        "action": {"type": "str", "required": True, "choices": list(VOLUME_JOBS)},
        "name": {"type": "str", "required": True},
        "volume": {"type": "str", "required": True},
        "image": {"type": "str", "required": True},
        "directory": {"type": "str", "required": True},
        "pull": {"type": "str", "required": True, "choices": ["always", "missing", "never"]},
    }},
}
_MODES = ["component", "containers", "services", "volume_job"]

# The platform settings and run state the action reads, as the roles of the collection define them.
SETTINGS = (
    "nocobase_restart_policy", "nocobase_stop_timeout", "nocobase_image_pull", "nocobase_skip_unchanged",
    "__nocobase_platform", "__nocobase_secrets", "__nocobase_run_id", "_common_engine", "_common_network_pending",
    "_common_run_changed",
)
# The platform settings a container's spec hash covers besides its spec (the action applies them).
HASHED_SETTINGS = ("nocobase_restart_policy", "nocobase_stop_timeout")
# A Swarm service's update that ended without its new tasks.
_UPDATE_FAILED = ("paused", "rollback_started", "rollback_completed", "rollback_paused")
_SECRET_VERSION_RE = re.compile(r"_v[0-9]+$")
# The record of a container or service that check mode can only predict.
_PREDICTED = {"changed": True, "id": None, "running": False, "addresses": {}, "healthy": False}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        dummy, args = self.validate_argument_spec(
            argument_spec=ARGUMENT_SPEC, mutually_exclusive=[_MODES], required_one_of=[_MODES],
            required_by={"containers": "state"})
        task_vars = task_vars or {}
        try:
            if args["containers"] is not None:
                return dict(result, **self._containers_state(args["containers"], args["state"], task_vars))
            if args["services"] is not None:
                return dict(result, **self._services_absent(args["services"], task_vars))
            if args["volume_job"] is not None:
                return dict(result, **self._volume_job(args["volume_job"], task_vars))
        except _Failed as failed:
            return dict(result, failed=True, changed=failed.changed, msg=failed.msg)
        return dict(result, **self._component(args, task_vars))

    # ------------------------------------------------------------------------- a component's spec

    def _component(self, args, task_vars):
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
            return dict(failed=True, changed=False, msg="nocobase.multienv.workload %s: %s" % (component, exc))
        spec["labels"].update(args["labels"])
        secrets = secret_items(spec, settings["__nocobase_secrets"])
        # Every secret is masked in a failure message (the environment holds none: a spec's secret
        # variables are references), before the name is put in front of it.
        masked = {item["value"] for item in secrets if len(item["value"]) > 3}
        try:
            if platform["runtime"] != "swarm":
                return self._docker(spec, secrets, settings, args["image_pending"], task_vars)
            if args["swarm_node"] is None:
                return self._swarm_node(spec, settings, args["image_pending"], task_vars)
            return self._swarm_service(spec, secrets, settings, variables, args["swarm_node"], task_vars)
        except _Failed as failed:
            return dict(failed=True, changed=failed.changed, msg="%s: %s" % (spec["name"], remove_values(failed.msg, masked)))

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

        # Docker's health as the run began holds only while nothing it depends on changed since: a container
        # that must be healthy is then handed to docker_container, which waits for it again.
        run_changed = boolean(settings["_common_run_changed"], strict=False)
        if (boolean(settings["nocobase_skip_unchanged"], strict=False) and module_args["pull"] != "always"
                and not (state == "healthy" and run_changed)
                and container_is_current(engine, name, spec_label, spec["image"], state != "present", state == "healthy")):
            record = {"changed": False, "id": found["id"], "running": found["running"], "addresses": found["addresses"],
                      "healthy": found["health"] == "healthy" and not run_changed}
            msg = "%s is what its role wants and was left alone" % name
            predicted = False
        elif check_mode and (boolean(settings["_common_network_pending"], strict=False) or image_pending):
            # Its network or image does not exist yet: docker_container could not check it.
            record = dict(_PREDICTED)
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
                      "healthy": state == "healthy" and not check_mode}
            msg = "%s was %s" % (name, "changed" if record["changed"] else "checked; nothing to change")
            predicted = False
        return self._recorded(name, record, msg, settings, task_vars, _ansible_verbose_always=predicted)

    def _recorded(self, name, record, msg, settings, task_vars, **result):
        """The result, and the record in the host fact __common_containers that the roles read after this
        task. It holds none of the spec (secrets of the inventory may be in it); a prediction is shown, as
        debug's msg is."""
        record["run"] = settings["__nocobase_run_id"]
        containers = dict(self._templar.template(task_vars.get("__common_containers")) or {}, **{name: record})
        return dict(result, changed=record["changed"], msg=msg, container=record,
                    ansible_facts={"__common_containers": containers})

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

    def _swarm_node(self, spec, settings, image_pending, task_vars):
        """Swarm, first step, on the node the service is pinned to: its image is pulled there
        (nocobase_image_pull) and its entry point read; the task then runs again through the manager
        with this result (swarm_node), which this host cannot reach."""
        engine_swarm = (settings["_common_engine"] or {}).get("swarm") or {}
        manager = self._templar.template(task_vars.get("nocobase_swarm_manager"))
        if engine_swarm.get("state") != "active" or manager not in settings["__nocobase_platform"]["endpoints"]:
            raise _Failed("nocobase_runtime is swarm: the Docker engine of %s must be a node of the platform's swarm "
                          "(run playbooks/swarm.yml first), and nocobase_swarm_manager (%s) a host of the platform's "
                          "inventory groups whose engine manages that swarm"
                          % (task_vars.get("inventory_hostname"), manager))
        pull = spec["pull"] or settings["nocobase_image_pull"]
        check_mode = bool(self._play_context.check_mode)
        changed = False
        if pull != "never":
            pulled = self._module("community.docker.docker_image", {
                "name": spec["image"], "source": "pull", "force_source": pull == "always"}, task_vars)
            changed = bool(pulled.get("changed"))
        if check_mode and image_pending:
            config = None  # it would be built first
        elif spec["secret_env"]:  # the wrapper runs the image's own entry point
            config = self._image_config(spec["image"], task_vars)
            if config is None and not (check_mode and pull != "never"):
                raise _Failed("%s is not on the Docker engine of this host: a service runs the image of its node's "
                              "engine, so load or build it there, or let it be pulled (nocobase_image_pull)" % spec["image"])
        else:
            config = {}
        image = None if config is None else {"Entrypoint": config.get("Entrypoint"), "Cmd": config.get("Cmd")}
        return dict(changed=changed, msg="%s: the image is on this node" % spec["name"],
                    swarm_node={"id": engine_swarm["node_id"], "image_config": image})

    def _swarm_service(self, spec, secrets, settings, variables, node, task_vars):
        """Swarm, second step, through the manager (the task is delegated there): the service's Docker
        secrets in rolling versions (a secret cannot change: a new value is a new version, the service
        moves to it, older versions beyond one are removed), then the service, pinned to the node, and
        after a change the wait until its update is complete and each of its tasks runs (Swarm starts a
        task whose container has a health check only once it is healthy). Its first task's container is
        recorded, as a container is on Docker."""
        name = spec["name"]
        check_mode = bool(self._play_context.check_mode)
        service = swarm_service_args(spec, settings, node["image_config"] or {}, node["id"])
        # Any change of the spec updates the service, which then takes all of its arguments (docker_swarm_service
        # compares only the arguments given: a limit set to null would otherwise stay).
        service["labels"] = dict(service["labels"], **{SPEC_LABEL: self._spec_hash(spec, secrets, settings)})
        secret_labels = dict(variables["nocobase_labels"] or {}, **{
            LABEL + ".platform": variables["nocobase_platform"], LABEL + ".service": name})
        service["secrets"], secrets_changed = [], False
        for item in secrets:
            created = self._module("community.docker.docker_secret", {
                "name": swarm_secret_name(name, item["name"]), "data": item["value"], "labels": secret_labels,
                "rolling_versions": True, "versions_to_keep": 2}, task_vars)  # 2: the one the service uses until it moves
            secrets_changed = secrets_changed or bool(created.get("changed"))
            service["secrets"].append({"secret_name": created.get("secret_name"), "filename": item["name"],
                                       "uid": str(item["uid"]), "gid": str(item["gid"]), "mode": item["mode"]})
        if check_mode and (node["image_config"] is None or secrets_changed
                           or boolean(settings["_common_network_pending"], strict=False)):
            record = dict(_PREDICTED)
            return self._recorded(name, record, "%s: its image, secrets or the platform networks are new; the service "
                                  "would be created or updated" % name, settings, task_vars, _ansible_verbose_always=True)
        changed = bool(self._module("community.docker.docker_swarm_service", service, task_vars).get("changed"))
        running = self._service_tasks(name, spec, wait=changed and not check_mode, task_vars=task_vars)
        first = min(running, key=lambda task: task.get("Slot") or 0) if running else {}
        record = {"changed": changed or secrets_changed, "running": bool(first), "healthy": bool(first),
                  "id": ((first.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID"),
                  "addresses": {(attachment.get("Network") or {}).get("Spec", {}).get("Name"):
                                (attachment.get("Addresses") or [""])[0].split("/")[0]
                                for attachment in first.get("NetworksAttachments") or []}}
        msg = "%s was %s" % (name, "changed" if record["changed"] else "checked; nothing to change")
        return self._recorded(name, record, msg, settings, task_vars)

    def _service_tasks(self, name, spec, wait, task_vars):
        """The service's running tasks, once all of its replicas run; after this run changed it (wait),
        also once its update is complete. Waits at most the spec's wait_timeout; in check mode, reads once."""
        replicas, deadline = int(spec["replicas"]), time.monotonic() + int(spec["wait_timeout"])
        while True:
            info = self._module("community.docker.docker_swarm_info", {
                "services": True, "services_filters": {"name": name}, "tasks": True, "verbose_output": True,
                "tasks_filters": {"service": name, "desired-state": "running"}}, task_vars)
            found = [item for item in info.get("services") or [] if (item.get("Spec") or {}).get("Name") == name]
            service_id = found[0].get("ID") if found else None
            update = ((found[0].get("UpdateStatus") or {}).get("State") or "") if found else ""
            tasks = [task for task in info.get("tasks") or [] if task.get("ServiceID") == service_id]
            running = [task for task in tasks if (task.get("Status") or {}).get("State") == "running"]
            # An update's state is this run's only after this run changed the service (a paused one stays so).
            if (not wait or update in ("", "completed")) and len(running) == replicas or self._play_context.check_mode:
                return running
            if wait and update in _UPDATE_FAILED or time.monotonic() > deadline:
                states = "; ".join("%s %s" % ((task.get("Status") or {}).get("State") or "",
                                              (task.get("Status") or {}).get("Err") or (task.get("Status") or {}).get("Message") or "")
                                   for task in tasks) or "no task"
                raise _Failed("%d of its %d tasks run (healthy) after %s s (its update: %s; its tasks: %s); docker service "
                              "ps %s and the task containers' logs on its node say more"
                              % (len(running), replicas, spec["wait_timeout"], update or "none", states, name), wait)
            time.sleep(2)

    # ----------------------------------------------------------------- lifecycle and throw-away jobs

    def _containers_state(self, containers, state, task_vars):
        """Existing containers of this engine (names or ids), stopped or removed."""
        changed = self._each("community.docker.docker_container",
                             [{"name": container, "state": state} for container in containers], task_vars)
        return dict(changed=bool(changed), containers=changed,
                    msg="%s: %s" % (state, ", ".join(changed)) if changed else "nothing to change")

    def _services_absent(self, services, task_vars):
        """The swarm services that Docker's service filters find (only those named `names`, when given:
        Docker's name filter matches prefixes) removed, then their Docker secrets, every version. Runs
        through the swarm manager (the task is delegated there); an engine that manages no swarm (it left
        it already) has nothing to remove."""
        try:
            found = self._module("community.docker.docker_swarm_info", {
                "services": True, "services_filters": services["filters"], "verbose_output": True}, task_vars)
        except _Failed:
            found = {}
        removed = [item for item in found.get("services") or []
                   if services["names"] is None or item["Spec"]["Name"] in services["names"]]
        secrets = sorted({_SECRET_VERSION_RE.sub("", secret["SecretName"]) for item in removed
                          for secret in item["Spec"]["TaskTemplate"]["ContainerSpec"].get("Secrets") or []})
        done = self._each("community.docker.docker_swarm_service",
                          [{"name": item["Spec"]["Name"], "state": "absent"} for item in removed], task_vars)
        self._each("community.docker.docker_secret",
                   [{"name": secret, "rolling_versions": True, "state": "absent"} for secret in secrets], task_vars, done)
        names = [item["Spec"]["Name"] for item in removed]
        return dict(changed=bool(names), services=names, swarm_manager=bool(found.get("docker_swarm_manager")),
                    msg="removed: %s" % ", ".join(names) if names else "no service")

    def _volume_job(self, job, task_vars):
        """A throw-away container of a node's image that archives its volume into `directory` or extracts
        the archive there into it (no network, removed after it ran)."""
        check_mode = bool(self._play_context.check_mode)
        self._module("community.docker.docker_container", volume_job_args(**job), task_vars)
        # An archive changes nothing of the platform; an extract replaces the volume's content.
        return dict(changed=job["action"] == "extract", msg="%s: %s of %s %s" % (
            job["name"], job["action"], job["volume"], "would run" if check_mode else "done"))

    # -------------------------------------------------------------------------------------- helpers

    def _each(self, module_name, calls, task_vars, changed_before=()):
        """The module once per argument dict, in turn; the names it changed. A failure names its item and
        reports changed when an earlier call (or `changed_before`) changed something."""
        changed = list(changed_before)
        for module_args in calls:
            try:
                if self._module(module_name, module_args, task_vars).get("changed"):
                    changed.append(module_args["name"])
            except _Failed as failed:
                raise _Failed("%s: %s" % (module_args["name"], failed.msg), bool(changed) or failed.changed)
        return changed[len(changed_before):]

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
