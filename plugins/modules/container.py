#!/usr/bin/python
# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: container
short_description: Run one container of the platform, left alone when nothing about it changed (internal)
version_added: 0.2.0
description:
  - Internal to the roles of nocobase.multienv, which run each of their containers with it; an action that
    runs M(community.docker.docker_container) on the host's Docker engine when there is something to do.
  - The container gets the platform's labels, restart policy and stop timeout, strict comparison of its
    environment and networks, and the label C(org.nocobase.multienv.spec-hash), a hash of its spec and those
    platform settings (keyed with the AES key, so that the label tells nothing about the secrets in the spec).
  - A container that carries the hash of this very spec, runs the image its tag names now, and runs (with
    O(state=healthy), is healthy) as the run began is left alone without calling Docker, as C(docker compose up)
    does with its config hash. C(nocobase_skip_unchanged=false) or O(pull=always) turns this off.
  - In check mode, a container whose network or image (O(image_pending)) does not exist yet is only predicted.
  - Records the outcome in the host fact C(__common_containers[name]), read by the roles after this task.
author:
  - NocoBase multienv maintainers (@nocobase-multienv)
attributes:
  check_mode:
    description: Predicts what docker_container would do, or that the container would be created.
    support: full
  diff_mode:
    description: No diff; the spec holds secrets.
    support: none
  idempotent:
    description: A second run leaves the container alone.
    support: full
options:
  name:
    description: The container's name.
    type: str
    required: true
  image:
    description: Its image.
    type: str
    required: true
  state:
    description: V(present), V(started), or V(healthy) (started, then waits for Docker's health check; V(started) in check mode).
    type: str
    default: started
    choices: [present, started, healthy]
  networks:
    description: The networks (C({name}) each); the first one is the network mode.
    type: list
    elements: dict
    required: true
  labels:
    description: Its own labels, added to C(nocobase_labels) and the platform's.
    type: dict
  env:
    description: Its environment; every value is masked in a failure message.
    type: dict
  secret_env:
    description:
      - Environment variables that hold secrets, for an image that reads them from its environment only.
        None of them is in the container's configuration (C(docker inspect)).
      - Each is a file C(/run/env.<NAME>), mode 0400 for root, copied into the container after it is
        created and before it starts; a shell wrapper exports them, then runs the image's entry point and
        command (O(command) instead of the image's command when given). The Swarm services of the collection
        run the same wrapper over their Docker secrets C(/run/secrets/env.<NAME>). A new value makes a new
        container.
      - The image needs C(/bin/sh) and C(/run), and must be on the Docker engine (a run pulls its images as it
        begins).
    type: dict
  command:
    description: Its command.
    type: raw
  mounts:
    description: As in M(community.docker.docker_container).
    type: list
    elements: dict
  published_ports:
    description: As in M(community.docker.docker_container); none by default.
    type: list
    elements: str
  healthcheck:
    description: As in M(community.docker.docker_container).
    type: dict
  init:
    description: Run an init process in the container.
    type: bool
  stop_timeout:
    description: Seconds to wait for it to stop; default C(nocobase_stop_timeout).
    type: int
  healthy_wait_timeout:
    description: With O(state=healthy), seconds to wait for the health check.
    type: int
  pull:
    description: When to pull the image; default C(nocobase_image_pull). Not part of the spec hash.
    type: str
    choices: [always, missing, never, not_present]
  image_pending:
    description: In check mode, the image would be built first, so the container can only be predicted.
    type: bool
    default: false
notes:
  - Reads the platform settings (C(nocobase_platform), C(nocobase_labels), C(nocobase_restart_policy),
    C(nocobase_stop_timeout), C(nocobase_image_pull), C(nocobase_skip_unchanged)) and what the run found
    (roles/_common), so it runs in a role of this collection only.
  - The result holds none of the arguments.
seealso:
  - module: community.docker.docker_container
"""

EXAMPLES = r"""
- name: Run the Redis container
  nocobase.multienv.container:
    name: nocobase-redis
    image: redis:7
    state: healthy
    healthy_wait_timeout: 60
    networks:
      - name: nocobase-backend
"""

RETURN = r"""
container:
  description: What happened to the container, as also recorded in C(__common_containers[name]).
  returned: success
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
"""
