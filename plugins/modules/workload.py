#!/usr/bin/python
# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: workload
short_description: Run one component of the platform from its spec (internal)
version_added: 0.3.0
description:
  - Internal to the roles of nocobase.multienv, which run each of their components with it (through the entry point
    C(workload) of the role C(nocobase.multienv._common)); an action.
  - Builds the component's spec in Python (C(plugins/module_utils/_workload.py), see C(docs/development.md)) from
    the platform model, the role's variables and the component's settings (memory, CPUs), with its image, command, environment,
    secrets as references, labels, networks, mounts, ports, health check, resources.
  - With C(nocobase_runtime=docker), runs the container on the host's Docker engine with
    M(community.docker.docker_container) when there is something to do. The container gets the platform's restart
    policy and stop timeout, strict comparison of its environment and networks, and the label
    C(org.nocobase.multienv.spec-hash), a hash of its spec, its secrets and those settings (keyed with the AES key, so
    that the label tells nothing about the secrets). A container that carries the hash of this very spec, runs the
    image its tag names now, and runs (for Redis and PostgreSQL, is healthy) as the run began is left alone without
    calling Docker, as C(docker compose up) does with its config hash. C(nocobase_skip_unchanged=false) or
    C(nocobase_image_pull=always) turns this off.
  - Its secrets are files, never in the container's configuration (C(docker inspect)); each is copied into the
    container (0400) after it is created and before it first starts. Secret environment variables are files
    C(/run/env.<NAME>) that a shell wrapper exports before the image's entry point runs; a new value makes a new
    container.
  - With C(nocobase_runtime=swarm), pulls the image on this host's engine (the swarm node the service is pinned to)
    and returns the service's arguments and its Docker secrets, which the entry point's tasks apply through the swarm
    manager.
  - In check mode, a container whose network or image (O(image_pending)) does not exist yet is only predicted.
  - On Docker, records the outcome in the host fact C(__common_containers[name]), read by the roles after this task
    (on Swarm, the entry point's tasks record the service's first container there).
author:
  - NocoBase multienv maintainers (@nocobase-multienv)
attributes:
  check_mode:
    description: Predicts what docker_container would do, or that the container would be created.
    support: full
  diff_mode:
    description: No diff; the container's arguments hold the inventory's own secrets.
    support: none
  idempotent:
    description: A second run leaves the container alone.
    support: full
options:
  component:
    description: The component, on this inventory host (a worker and its agent are this host's).
    type: str
    required: true
    choices: [redis, postgres, proxy, supervisor, worker, agent]
  labels:
    description: Labels added to the spec's (fingerprints of files the role put on the host, which the container reads).
    type: dict
    default: {}
  image:
    description: The agent's image, built on its engine (required for V(agent), the others' image is the model's).
    type: str
  image_pending:
    description: In check mode, the image would be built first, so the container can only be predicted.
    type: bool
    default: false
notes:
  - Reads the platform model, the secrets, the platform settings and the role's variables as the roles of the
    collection define them, so it runs in a role of this collection only.
  - The result holds none of the spec's values; on Swarm it is hidden as a no_log result is.
seealso:
  - module: community.docker.docker_container
  - module: community.docker.docker_swarm_service
"""

EXAMPLES = r"""
- name: Run Redis
  nocobase.multienv.workload:
    component: redis
"""

RETURN = r"""
container:
  description: What happened to the container, as also recorded in C(__common_containers[name]) (Docker).
  returned: success, nocobase_runtime docker
  type: dict
  contains:
    changed:
      description: Whether it was created, changed or started (in check mode, would be).
      type: bool
    id:
      description: The container's id (none when only predicted).
      type: str
    running:
      description: Whether it runs.
      type: bool
    healthy:
      description: >-
        True only for a container left alone that Docker found healthy as the run began, when no container of
        the platform changed earlier in the run.
      type: bool
    addresses:
      description: Network -> its IP address there, when known.
      type: dict
    run:
      description: The run that recorded it.
      type: str
service:
  description: The arguments of M(community.docker.docker_swarm_service) (Swarm), without its secrets.
  returned: success, nocobase_runtime swarm
  type: dict
secrets:
  description: The service's Docker secrets, C(name), C(data), C(filename), C(uid), C(gid), C(mode) (Swarm).
  returned: success, nocobase_runtime swarm
  type: list
  elements: dict
"""
