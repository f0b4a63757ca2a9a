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
    image its tag names now, and runs (for Redis, PostgreSQL and a node without a published port, is healthy) as the
    run began is left alone without calling Docker, as C(docker compose up) does with its config hash.
    C(nocobase_skip_unchanged=false) or C(nocobase_image_pull=always) turns this off. Once a container of the
    platform changed in the run, one that must be healthy is handed to docker_container, which waits for it again.
  - Its secrets are files, never in the container's configuration (C(docker inspect)); each is copied into the
    container (0400) after it is created and before it first starts. Secret environment variables are files
    C(/run/env.<NAME>) that a shell wrapper exports before the image's entry point runs; a new value makes a new
    container.
  - With C(nocobase_runtime=swarm), runs in two steps. On this host (the swarm node the service is pinned to), it
    pulls the image and reads its entry point, and returns O(swarm_node). Given O(swarm_node), through the swarm
    manager (the task delegated to C(nocobase_swarm_manager)), it creates the service's Docker secrets in rolling
    versions (M(community.docker.docker_secret)), runs the service (M(community.docker.docker_swarm_service)), and
    after a change waits until the update is complete and each of its tasks runs. Swarm starts a task whose
    container has a health check only once it is healthy.
  - The outcome is recorded in the host fact C(__common_containers[name]), read by the roles after this task; on
    Swarm, the first task's container.
  - In check mode, a container whose network or image (O(image_pending)) does not exist yet is only predicted; so is
    a service whose image, secrets or networks are new.
  - Also changes the state of existing containers (O(containers)), removes swarm services with their secrets
    (O(services)), and runs the backup's throw-away jobs on a node's volume (O(volume_job)), so that every container
    and service of the collection goes through this one action.
author:
  - NocoBase multienv maintainers (@nocobase-multienv)
attributes:
  check_mode:
    description:
      - Predicts what docker_container or docker_swarm_service would do, or that the container or service would be
        created; O(containers), O(services) and O(volume_job) run their modules in check mode.
    support: full
  diff_mode:
    description: No diff; the container's arguments hold the inventory's own secrets.
    support: none
  idempotent:
    description:
      - A second run leaves a component's container or service alone, and finds nothing to stop or remove.
      - O(volume_job) with V(extract) always replaces the volume's content.
    support: partial
options:
  component:
    description:
      - The component whose spec to apply, on this inventory host (a worker and its agent are this host's).
      - One of O(component), O(containers), O(services) and O(volume_job) is required.
    type: str
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
  swarm_node:
    description:
      - For the second step on Swarm, the result's RV(swarm_node) of the first step on the node. The task is
        delegated to the swarm manager.
    type: dict
  containers:
    description: Existing containers of this host's engine (names or ids) to bring to O(state).
    type: list
    elements: str
  state:
    description: With O(containers), what they become.
    type: str
    choices: [stopped, absent]
  services:
    description:
      - Swarm services to remove, with every version of their Docker secrets. The task is delegated to the swarm
        manager; an engine that manages no swarm has nothing to remove.
    type: dict
    suboptions:
      filters:
        description: Docker's service filters (for example C(label)) that find them.
        type: dict
        required: true
      names:
        description: Only the services of exactly these names (Docker's C(name) filter matches prefixes).
        type: list
        elements: str
  volume_job:
    description:
      - A throw-away container of a node's image, as root, without network, removed once it ran, that archives a
        volume into O(volume_job.directory) as C(<volume>.tar.gz) (V(archive)), or empties the volume and extracts that
        archive into it (V(extract)).
    type: dict
    suboptions:
      action:
        description: What the job does.
        type: str
        required: true
        choices: [archive, extract]
      name:
        description: The container's name.
        type: str
        required: true
      volume:
        description: The volume.
        type: str
        required: true
      image:
        description: The image (the node's).
        type: str
        required: true
      directory:
        description: The directory of this host that holds the archive.
        type: str
        required: true
      pull:
        description: When to pull the image (C(pull) of M(community.docker.docker_container)).
        type: str
        required: true
        choices: [always, missing, never]
notes:
  - Reads the platform model, the secrets, the platform settings and the role's variables as the roles of the
    collection define them, so it runs in a role of this collection only.
  - The result holds none of the spec's values.
seealso:
  - module: community.docker.docker_container
  - module: community.docker.docker_swarm_service
  - module: community.docker.docker_secret
"""

EXAMPLES = r"""
- name: Run Redis
  nocobase.multienv.workload:
    component: redis

- name: Remove the containers of a worker that left the inventory
  nocobase.multienv.workload:
    containers: [demo-worker-env-c, demo-agent-env-c]
    state: absent
"""

RETURN = r"""
container:
  description: What happened to the component's container, as also recorded in C(__common_containers[name]).
  returned: success, with O(component) (on Swarm, the second step)
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
        Whether it is known healthy: it was waited for until healthy, or it was left alone and Docker found it
        healthy as the run began, when no container of the platform changed earlier in the run.
      type: bool
    addresses:
      description: Network -> its IP address there, when known.
      type: dict
    run:
      description: The run that recorded it.
      type: str
swarm_node:
  description:
    - The first step on Swarm returns the node's C(id) and its image's C(image_config) (C(Entrypoint), C(Cmd)), none
      when the image would be pulled first (check mode).
  returned: success, with O(component), on Swarm, without O(swarm_node)
  type: dict
containers:
  description: The containers of O(containers) that changed.
  returned: success, with O(containers)
  type: list
  elements: str
services:
  description: The services removed.
  returned: success, with O(services)
  type: list
  elements: str
swarm_manager:
  description: Whether the engine the task was delegated to manages a swarm (with O(services)).
  returned: success, with O(services)
  type: bool
"""
