#!/usr/bin/python
# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: environment
short_description: Register, update or unregister NocoBase worker environments
version_added: 0.1.0
description:
  - Writes the environment records of a NocoBase multi-environment platform into its Redis control
    plane (protocol v1, C(docs/protocol.md)), that is the record a worker with E(ENVIRONMENT_NAME) publishes,
    with its C(url), C(proxyUrl) and C(appVersion).
  - Takes one environment (O(name) and its options) or many at once (O(environments)); the list form
    costs the same few Redis round trips whatever its length, and writes everything or nothing.
  - Only the options you set are compared, so a worker that also registers itself (as NocoBase does)
    does not make the task report a change.
  - Unregistering (O(state=absent)) also drops the environment's heartbeat and its command queue.
author:
  - NocoBase multienv maintainers (@nocobase-multienv)
extends_documentation_fragment:
  - nocobase.multienv.connection
  - nocobase.multienv.connection.ACTIONGROUP
  - nocobase.multienv.attributes
options:
  name:
    description:
      - Environment name, the worker's E(ENVIRONMENT_NAME).
      - Lower-case letters, digits, V(_) and V(-), starting with a letter, at most 63 characters.
      - Mutually exclusive with O(environments).
    type: str
  url:
    description:
      - The environment's own access URL (E(ENVIRONMENT_URL)), absolute V(http://) or V(https://).
      - Required when the environment is new. V("") removes it.
    type: str
  proxy_url:
    description:
      - URL the supervisor and the proxy use to reach the environment (E(ENVIRONMENT_PROXY_URL)).
        It must be reachable from their network. Unset means O(url) is used. V("") removes it.
    type: str
  app_version:
    description:
      - NocoBase version the environment runs, as shown in the environment list.
    type: str
  state:
    description:
      - V(present) registers or updates the environment, V(absent) unregisters it.
    type: str
    choices: [present, absent]
    default: present
  environments:
    description:
      - Many environments in one task. Each item takes the options O(name), O(url), O(proxy_url),
        O(app_version) and O(state) described above.
      - Mutually exclusive with O(name).
    type: list
    elements: dict
    suboptions:
      name:
        description: Environment name.
        type: str
        required: true
      url:
        description: The environment's own access URL.
        type: str
      proxy_url:
        description: URL the proxy uses to reach the environment.
        type: str
      app_version:
        description: NocoBase version the environment runs.
        type: str
      state:
        description: V(present) or V(absent).
        type: str
        choices: [present, absent]
        default: present
  heartbeat:
    description:
      - Also stamp a heartbeat for every environment left present, as the worker itself does every
        120 seconds, so it shows as available at once.
      - A heartbeat is liveness, not configuration, so it is never reported as a change; it is not
        written in check mode.
    type: bool
    default: false
seealso:
  - module: nocobase.multienv.environment_info
  - module: nocobase.multienv.app
"""

EXAMPLES = r"""
- name: Register the worker env_a as the seed's docker-compose example does
  nocobase.multienv.environment:
    redis_url: redis://:{{ redis_password }}@127.0.0.1:6379/0
    name: env_a
    url: http://localhost:15000
    proxy_url: http://worker_a
  delegate_to: localhost

- name: Register all workers of the inventory in one task
  nocobase.multienv.environment:
    environments:
      - name: env_a
        url: http://localhost:15000
        proxy_url: http://worker_a
      - name: env_b
        url: http://localhost:16000
        proxy_url: http://worker_b
  delegate_to: localhost

- name: Unregister a worker that left the inventory
  nocobase.multienv.environment:
    name: env_c
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
environment:
  description: The environment record after the task (single form); empty when it is absent.
  returned: when O(name) is given
  type: dict
  sample: {"name": "env_a", "url": "http://localhost:15000", "proxyUrl": "http://worker_a"}
results:
  description: One entry per environment of the task.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Environment name.
      type: str
      returned: always
    state:
      description: The requested state.
      type: str
      returned: always
    changed:
      description: Whether this environment's record changed (or would change in check mode).
      type: bool
      returned: always
    record:
      description: The record after the task; V(null) when absent.
      type: dict
      returned: always
  sample: [{"name": "env_a", "state": "present", "changed": true, "record": {"name": "env_a", "url": "http://localhost:15000"}}]
"""

from ansible_collections.nocobase.multienv.plugins.module_utils._environments import (
    environment_argument_spec,
    run_environment_module,
)
from ansible_collections.nocobase.multienv.plugins.module_utils._module import run_module


def main():
    run_module(
        environment_argument_spec(),
        run_environment_module,
        mutually_exclusive=[("name", "environments")],
        required_one_of=[("name", "environments")],
    )


if __name__ == "__main__":
    main()
