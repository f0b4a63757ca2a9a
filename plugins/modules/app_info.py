#!/usr/bin/python
# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: app_info
short_description: Read NocoBase apps with their status in every environment
version_added: 0.1.0
description:
  - Returns the app records of a NocoBase multi-environment platform from its Redis control plane
    (protocol v1, C(docs/protocol.md)), each with its status per environment and the environment
    the proxy sends its traffic to.
  - Two Redis round trips, whatever the number of apps.
author:
  - NocoBase multienv maintainers (@nocobase-multienv)
extends_documentation_fragment:
  - nocobase.multienv.connection
  - nocobase.multienv.availability
  - nocobase.multienv.connection.ACTIONGROUP
  - nocobase.multienv.attributes.INFO_MODULE
options:
  names:
    description:
      - Only these apps. All of them when not set. Names not registered are listed in RV(missing).
    type: list
    elements: str
seealso:
  - module: nocobase.multienv.app
  - module: nocobase.multienv.app_command
"""

EXAMPLES = r"""
- name: Read every app
  nocobase.multienv.app_info:
  delegate_to: localhost
  register: platform

- name: Show where crm runs
  ansible.builtin.debug:
    msg: "{{ (platform.apps | selectattr('name', 'equalto', 'crm') | first).status }}"
"""

RETURN = r"""
apps:
  description: The app records, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: App name.
      type: str
      returned: always
    title:
      description: Display title.
      type: str
      returned: when set
    environments:
      description: Environments the app runs in, in start order.
      type: list
      elements: str
      returned: always
    options:
      description: NocoBase C(AppModelOptions).
      type: dict
      returned: when set
    proxyEnvironment:
      description: Environment chosen for proxying.
      type: str
      returned: when set
    status:
      description: Per environment, NocoBase's C(AppStatus) (C(status)), when it was set (C(updatedAt)),
        the command that set it (C(requestId)) and a C(message).
      type: dict
      returned: always
    proxyTarget:
      description: Where the proxy sends the app's traffic (C(environment), C(url), C(available), C(registered)).
      type: dict
      returned: always
  sample: [{"name": "crm", "environments": ["env_a"], "status": {"env_a": {"status": "running", "updatedAt": 1767000000000}},
            "proxyTarget": {"environment": "env_a", "url": "http://worker_a", "available": true, "registered": true}}]
missing:
  description: Names asked for in O(names) that are not registered.
  returned: always
  type: list
  elements: str
  sample: []
"""

from ansible_collections.nocobase.multienv.plugins.module_utils._apps import app_info_argument_spec, run_app_info_module
from ansible_collections.nocobase.multienv.plugins.module_utils._module import run_module


def main():
    run_module(app_info_argument_spec(), run_app_info_module)


if __name__ == "__main__":
    main()
