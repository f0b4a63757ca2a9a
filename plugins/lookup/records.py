# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: records
short_description: Environment and app records of a NocoBase multi-environment platform
version_added: 0.1.0
description:
  - Reads the environment or app records from the platform's Redis control plane (protocol v1,
    C(docs/protocol.md)), with the same derived fields as M(nocobase.multienv.environment_info)
    and M(nocobase.multienv.app_info), that is availability from the last heartbeat, each app's status per
    environment and the environment (and URL) the proxy sends it to.
  - Meant for templates, such as the proxy configuration of the C(nocobase.multienv.proxy) role.
  - Runs on the controller, which must reach Redis.
author:
  - NocoBase multienv maintainers (@nocobase-multienv)
extends_documentation_fragment:
  - nocobase.multienv.connection
  - nocobase.multienv.availability
options:
  _terms:
    description: V(environments) and/or V(apps). The records of each term are returned in order, concatenated.
    required: true
    type: list
    elements: str
seealso:
  - module: nocobase.multienv.environment_info
  - module: nocobase.multienv.app_info
"""

EXAMPLES = r"""
- name: Show the available environments
  ansible.builtin.debug:
    msg: "{{ query('nocobase.multienv.records', 'environments', redis_url=url) | selectattr('available') | map(attribute='name') }}"
  vars:
    url: redis://:secret@127.0.0.1:6379/0

- name: Route every app in a template
  ansible.builtin.template:
    src: apps.conf.j2
    dest: /etc/nginx/conf.d/apps.conf
    mode: "0644"
  vars:
    apps: "{{ query('nocobase.multienv.records', 'apps', redis_url=url) }}"
"""

RETURN = r"""
_list:
  description:
    - The records. Environments carry C(lastHeartbeatAt), C(heartbeatAge) and C(available); apps
      carry C(status) per environment and C(proxyTarget) (C(environment), C(url), C(available), C(registered)).
  type: list
  elements: dict
"""

import os

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase
from ansible.utils.display import Display

from ansible_collections.nocobase.multienv.plugins.module_utils._connection import (
    SUPERVISOR_REDIS_URL_ENV,
    connect,
    connection_argument_spec,
)
from ansible_collections.nocobase.multienv.plugins.module_utils._control_plane import ControlPlane
from ansible_collections.nocobase.multienv.plugins.module_utils._keyspace import ControlPlaneError

from ansible_collections.nocobase.multienv.plugins.module_utils._resp import RedisError

display = Display()

_TERMS = ("environments", "apps")


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        unknown = [term for term in terms if term not in _TERMS]
        if unknown:
            raise AnsibleError("nocobase.multienv.records: unknown term(s) %s; use environments or apps" % unknown)
        params = {option: self.get_option(option) for option in connection_argument_spec()}
        params["redis_url"] = params["redis_url"] or os.environ.get(SUPERVISOR_REDIS_URL_ENV)
        if not params["redis_url"]:
            raise AnsibleError("nocobase.multienv.records: redis_url is required (or set %s)" % SUPERVISOR_REDIS_URL_ENV)
        client = None
        try:
            client = connect(params)
            plane = ControlPlane(client, params["key_prefix"], self.get_option("stale_after"),
                                 self.get_option("expected_environments"))
            records = []
            apps = environments = None
            for term in terms:
                if term == "apps":
                    if apps is None:
                        apps, environments = plane.read_apps()
                    records.extend(apps.values())
                else:
                    if environments is None:
                        environments = plane.read_environments()
                    records.extend(environments.values())
            for problem in plane.skipped:
                display.warning("nocobase.multienv.records: %s" % problem)
            return records
        except (ControlPlaneError, RedisError) as exc:
            raise AnsibleError("nocobase.multienv.records: %s" % exc) from None
        finally:
            if client is not None:
                client.close()
