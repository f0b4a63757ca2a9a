#!/usr/bin/python
# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: platform
short_description: Build the platform model from the inventory and check it (internal)
version_added: 0.2.0
description:
  - Internal to the roles of nocobase.multienv (C(roles/_common)); an action that runs on the controller.
  - Reads the whole inventory, whatever C(--limit) says, into one platform model. Every node (the
    supervisor and each worker) with its database, ports, URLs, container, volume and Docker engine.
    A per-node variable not set for the host takes the default of its component role's
    C(defaults/main.yml), templated for that host.
  - Then checks the inventory. Names, ports, URLs, databases, duplicates, extra environment keys and
    cross-host reachability are all checked, and the secrets set so far (variables or files of
    C(nocobase_secrets_dir)) are checked too. On any problem it fails with every message, each naming
    the variable and the host to fix, before any container changes.
author:
  - NocoBase multienv maintainers (@nocobase-multienv)
extends_documentation_fragment:
  - nocobase.multienv.attributes.INFO_MODULE
options:
  check:
    description: Check the inventory. V(false) only builds the model (the teardown does not stop at a broken inventory).
    type: bool
    default: true
notes:
  - The platform-wide settings are the C(nocobase_*) variables of the play (defaults in C(roles/_common)).
seealso:
  - module: nocobase.multienv.platform_secrets
"""

EXAMPLES = r"""
- name: Build the platform model from the inventory and check it
  nocobase.multienv.platform:
  register: platform
  run_once: true
"""

RETURN = r"""
run_id:
  description: A new random id of this run, which tells its records from an earlier run's (a fact cache may keep those).
  returned: success
  type: str
platform:
  description: The platform model.
  returned: success
  type: dict
  contains:
    platform:
      description: The platform's name.
      type: str
    endpoints:
      description: Inventory host -> the Docker engine its containers run on.
      type: dict
    images:
      description: Every image the platform's containers run or the agent image is built from, and the repository of the agent image.
      type: list
      elements: str
    engine_images:
      description: >-
        Docker engine -> the images it needs, by image: each C(image), C(hosts) (the inventory hosts whose
        containers run it there, or whose agent image is built from it) and C(build) (true when it is only the
        base of the agent image, built on the engine). The agent image itself is not listed: it is built, not
        pulled.
      type: dict
    supervisor:
      description: The supervisor node (host, database, published_port, container_port, container, image, volume, endpoint, extra_env), or null.
      type: dict
    workers:
      description: >-
        Every host of C(nocobase_workers): host, environment, state, database, ports, url, proxy_url, container, image,
        agent_container, volume, endpoint, extra_env, remove_volumes, and record (its environment record).
      type: list
      elements: dict
    expected_environments:
      description: >-
        The environment of each present worker -> its C(url) and C(proxy_url), as the inventory gives or
        derives them: the proxy's records lookup skips a record that disagrees (its O(nocobase.multienv.records#lookup:expected_environments)).
      type: dict
    nodes:
      description: The supervisor and the present workers.
      type: list
      elements: dict
    redis:
      description: hosts, endpoint, published_port, superuser, container.
      type: dict
    postgres:
      description: hosts, endpoint, published_port, superuser, container.
      type: dict
    proxy:
      description: hosts, config_dir, container.
      type: dict
errors:
  description: The problems of the inventory, when there are any.
  returned: failure
  type: list
  elements: str
"""
