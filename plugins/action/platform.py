# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action plugin of nocobase.multienv.platform (documented in plugins/modules/platform.py)."""

from __future__ import annotations

import os
import uuid

from ansible.errors import AnsibleError
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.nocobase.multienv.plugins.module_utils._platform import (
    ADDRESS_VARIABLES,
    ENDPOINT_VARIABLES,
    NODE_VARIABLES,
    build,
    is_port,
    preflight,
    secret_errors,
)
from ansible_collections.nocobase.multienv.plugins.module_utils._secrets import load
from ansible_collections.nocobase.multienv.plugins.module_utils._workload import (
    default_of,
    setting_names,
    settings_problems,
)

# The platform-wide variables the model and its preflight read (defaults: roles/_common).
SETTINGS = (
    "nocobase_platform", "nocobase_network", "nocobase_backend_network", "nocobase_container_prefix",
    "nocobase_public_hostname", "nocobase_redis_published_port", "nocobase_db_user", "nocobase_key_prefix",
    "nocobase_image_pull", "nocobase_extra_env", "nocobase_redis_host", "nocobase_postgres_host",
    "nocobase_control_redis_url", "nocobase_root_email", "nocobase_root_username", "nocobase_agent_image",
    "nocobase_redis_port", "nocobase_postgres_port", "nocobase_control_redis_host", "nocobase_runtime",
    "nocobase_apps_runtime", "nocobase_agent_base_image",
)
display = Display()
ROLES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "roles")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        dummy, args = self.validate_argument_spec(argument_spec={"check": {"type": "bool", "default": True}})
        task_vars = task_vars or {}
        try:
            settings = {name: self._templar.template(task_vars[name]) for name in SETTINGS}
        except KeyError as exc:
            raise AnsibleError("nocobase.multienv.platform runs in a role of nocobase.multienv, which defines %s" % exc)
        groups = {name: list(hosts) for name, hosts in task_vars["groups"].items() if name.startswith("nocobase_")}
        hosts = {}
        for group, (role, names) in NODE_VARIABLES.items():
            defaults = self._role_defaults(role)
            for host in groups.get(group, []):
                hosts.setdefault(host, {}).update(
                    self._node_variables(host, names + tuple(setting_names(group)), defaults, task_vars))
        for host in {host for members in groups.values() for host in members}:
            host_vars = task_vars["hostvars"][host]
            hosts.setdefault(host, {}).update(
                {name: self._templar.template(host_vars[name]) for name in ENDPOINT_VARIABLES + ADDRESS_VARIABLES
                 if name in host_vars})
        model = build(settings, groups, hosts)
        errors, warnings = [], []
        if args["check"]:
            # The secrets as set or kept so far; the missing ones are generated later (platform_secrets).
            secrets = load(self._templar.template(task_vars["nocobase_secrets_dir"]), task_vars, self._templar.template)
            errors, warnings = settings_problems(groups, hosts)
            errors = preflight(settings, model) + errors + secret_errors(
                secrets, missing_ok=boolean(self._templar.template(task_vars["nocobase_secrets_generate"]), strict=False))
        if errors:
            return dict(result, changed=False, failed=True, errors=errors,
                        msg="The inventory has %d problem(s); nothing was changed:\n- %s" % (len(errors), "\n- ".join(errors)))
        # Hidden like a no_log task's (the extra environments may hold keys); its refusals above stay readable.
        for warning in warnings:  # shown here: the result is hidden
            display.warning(warning)
        return dict(result, changed=False, platform=model, run_id=uuid.uuid4().hex, _ansible_no_log=True)

    def _role_defaults(self, role):
        """The role's defaults/main.yml, its strings templates (as Ansible trusts a role's defaults)."""
        path = os.path.join(ROLES_DIR, role, "defaults", "main.yml")
        try:
            return self._loader.load_from_file(path, trusted_as_template=True) or {}
        except TypeError:  # ansible-core < 2.19 templates every string
            return self._loader.load_from_file(path) or {}

    def _node_variables(self, host, names, defaults, task_vars):
        """A node's variables from its host, else the role's default templated for that host."""
        host_vars = task_vars["hostvars"][host]
        templar = self._templar.copy_with_new_env()
        templar.available_variables = dict(task_vars, inventory_hostname=host,
                                           inventory_hostname_short=host.split(".")[0])
        values = {}
        for name in names:
            if name in host_vars:
                value = self._templar.template(host_vars[name])
            else:  # a component setting's default is its declaration's (_workload.SETTINGS)
                value = templar.template(defaults.get(name, default_of(name)))
            if name.endswith("_port") and is_port(value):
                value = int(value)
            values[name] = value
        return values
