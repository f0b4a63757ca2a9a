#!/usr/bin/python
# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: environment_info
short_description: Read NocoBase worker environments and whether they are available
version_added: 0.1.0
description:
  - Returns the environment records of a NocoBase multi-environment platform from its Redis control
    plane (protocol v1, C(docs/protocol.md)), each with its last heartbeat and whether it is available.
  - An environment is available while its last heartbeat is younger than O(stale_after) seconds.
    This is derived on every read and never stored.
  - One Redis round trip, whatever the number of environments.
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
      - Only these environments. All of them when not set.
      - Names that are not registered are listed in RV(missing).
    type: list
    elements: str
  wait_timeout:
    description:
      - Seconds to wait until every environment in O(names) is registered and available, reading
        again every O(wait_interval) seconds inside this one task (no retry lines). V(0) does not wait.
      - On timeout the task fails naming each environment that is not available and why (not
        registered, never beat, or the age of its last beat).
    type: int
    default: 0
    version_added: 0.2.0
  wait_interval:
    description: Seconds between two reads while waiting.
    type: float
    default: 1.0
    version_added: 0.2.0
  app_version:
    description:
      - With O(wait_timeout), also wait until every environment in O(names) reports this C(appVersion),
        as a worker's agent does once the upgraded node answers.
    type: str
    version_added: 0.2.0
seealso:
  - module: nocobase.multienv.environment
  - plugin: nocobase.multienv.records
    plugin_type: lookup
"""

EXAMPLES = r"""
- name: Read every environment
  nocobase.multienv.environment_info:
    redis_url: "{{ nocobase_redis_url }}"
  delegate_to: localhost
  register: platform

- name: Wait up to 10 minutes until env_a and env_b are available
  nocobase.multienv.environment_info:
    names: [env_a, env_b]
    wait_timeout: 600
  delegate_to: localhost

- name: Wait until env_a runs NocoBase 2.2.16
  nocobase.multienv.environment_info:
    names: [env_a]
    wait_timeout: 300
    app_version: 2.2.16
  delegate_to: localhost
"""

RETURN = r"""
environments:
  description: The environment records, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Environment name (E(ENVIRONMENT_NAME)).
      type: str
      returned: always
    url:
      description: The environment's own URL.
      type: str
      returned: when set
    proxyUrl:
      description: URL the proxy uses to reach it.
      type: str
      returned: when set
    appVersion:
      description: NocoBase version it runs.
      type: str
      returned: when set
    lastHeartbeatAt:
      description: Epoch milliseconds of the last heartbeat, V(null) if it never beat.
      type: int
      returned: always
    heartbeatAge:
      description: Seconds since the last heartbeat, V(null) if it never beat.
      type: float
      returned: always
    available:
      description: Whether the last heartbeat is younger than O(stale_after).
      type: bool
      returned: always
  sample: [{"name": "env_a", "url": "http://localhost:15000", "proxyUrl": "http://worker_a",
            "lastHeartbeatAt": 1767000000000, "heartbeatAge": 12.5, "available": true}]
missing:
  description: Names asked for in O(names) that are not registered.
  returned: always
  type: list
  elements: str
  sample: []
waited:
  description: Seconds the task waited for O(names) to be available (V(0) without O(wait_timeout)).
  returned: always
  type: float
  sample: 4.2
  version_added: 0.2.0
schema_version:
  description: The protocol version the keyspace was written with (V(0) when nothing was written yet).
  returned: success
  type: int
  sample: 1
  version_added: 0.2.0
"""

from ansible_collections.nocobase.multienv.plugins.module_utils._environments import (
    environment_info_argument_spec,
    run_environment_info_module,
)
from ansible_collections.nocobase.multienv.plugins.module_utils._module import run_module


def main():
    run_module(environment_info_argument_spec(), run_environment_info_module)


if __name__ == "__main__":
    main()
