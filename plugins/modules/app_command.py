#!/usr/bin/python
# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: app_command
short_description: Queue a start, stop or remove of a NocoBase app in its environments
version_added: 0.1.0
description:
  - Enqueues a command for an app on the command streams of its environments, through the
    platform's Redis control plane (protocol v1, C(docs/protocol.md)). The workers carry it out;
    an app in several environments starts in one at a time, in the order of its environments.
  - Idempotent by intent. Unless O(force), nothing is queued for an environment that already has the
    same command queued for the app, nor where the app is already in the command's outcome,
    V(running) for V(start), V(stopped) or never started for V(stop), absent for V(remove).
    The decision and the write are one atomic script, so racing tasks queue one command.
  - With O(request_id), a retried task that already queued its command queues nothing more.
  - Takes one app (O(app)) or many (O(apps)).
author:
  - NocoBase multienv maintainers (@nocobase-multienv)
extends_documentation_fragment:
  - nocobase.multienv.connection
  - nocobase.multienv.connection.ACTIONGROUP
  - nocobase.multienv.attributes
attributes:
  idempotent:
    support: partial
    details:
      - Idempotent by intent as described above. O(force=true) queues the command again.
options:
  app:
    description:
      - The app, as created with M(nocobase.multienv.app).
      - Mutually exclusive with O(apps).
    type: str
  apps:
    description:
      - Many apps in one task. The same command goes to each of them, in one Redis round trip
        whatever their number. With O(request_id), each app's command gets the id C(<request_id>:<app>).
      - Mutually exclusive with O(app).
    type: list
    elements: str
  command:
    description:
      - V(start), V(stop) or V(remove) the app; V(create) asks the workers to prepare it (its
        database) without starting it.
    type: str
    required: true
    choices: [create, remove, start, stop]
  environments:
    description:
      - Only these of the app's environments. All of them when not set.
    type: list
    elements: str
  request_id:
    description:
      - An id of your own for the command, so that a retried task does not queue it twice.
        Remembered for 7 days. A random id is used when not set.
    type: str
  payload:
    description: Extra data passed to the workers with the command.
    type: dict
  force:
    description:
      - Queue the command even where the app is already in the command's outcome, or where a command
        of the same kind is still queued (it is carried out first).
    type: bool
    default: false
  wait:
    description:
      - Wait until every environment the command was queued for has completed it, and return the
        statuses. Where an earlier command of the same kind was still queued (RV(not_queued) says
        V(queued)), the task waits for that one instead. Where nothing was queued because the app
        already is in the command's outcome (never started, for a V(stop); absent, for a
        V(remove)), there is nothing to wait for.
      - Only statuses written for the awaited request count. Fails when one of them is V(error)
        (or V(not_found)), or on timeout, with the statuses seen; an old V(error) left by an
        earlier command neither fails the wait nor ends it.
      - Not done in check mode.
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait with O(wait). A first start of a NocoBase app can take minutes.
    type: int
    default: 600
seealso:
  - module: nocobase.multienv.app
  - module: nocobase.multienv.app_info
"""

EXAMPLES = r"""
- name: Start crm everywhere it is placed and wait until it runs
  nocobase.multienv.app_command:
    app: crm
    command: start
    wait: true
    wait_timeout: 900
  delegate_to: localhost

- name: Stop crm in env_b only
  nocobase.multienv.app_command:
    app: crm
    command: stop
    environments: [env_b]
  delegate_to: localhost

- name: Start every app of the inventory in one task and wait for all of them
  nocobase.multienv.app_command:
    apps: "{{ nocobase_apps | map(attribute='name') }}"
    command: start
    wait: true
  delegate_to: localhost

- name: A start that a retried pipeline job must not queue twice
  nocobase.multienv.app_command:
    app: crm
    command: start
    request_id: "deploy-{{ pipeline_id }}-crm"
  delegate_to: localhost
"""

RETURN = r"""
request_id:
  description: The command's id.
  returned: when O(app) is given
  type: str
  sample: 3f0a6c8e4b7d4c4f9d1e2a7b5c6d8e9f
environments:
  description: The environments the task targeted, in the app's start order.
  returned: when O(app) is given
  type: list
  elements: str
  sample: [env_a, env_b]
enqueued:
  description: The environments the command was queued for (or would be, in check mode).
  returned: when O(app) is given
  type: list
  elements: str
  sample: [env_b]
not_queued:
  description:
    - Environments nothing was queued for, with the reason; V(queued) (the same command is already
      queued there), or the app already is in the command's outcome there (V(running), V(stopped),
      V(not started), V(not present)).
  returned: when O(app) is given
  type: dict
  sample: {"env_a": "running"}
duplicate:
  description: Whether O(request_id) had already queued its command, so nothing was queued now.
  returned: when O(app) is given
  type: bool
  sample: false
statuses:
  description: The final status per environment, with O(wait).
  returned: when O(app) is given, O(wait=true) and not in check mode
  type: dict
  sample: {"env_a": {"status": "running", "updatedAt": 1767000000000, "requestId": "3f0a...", "message": ""}}
results:
  description:
    - One entry per app of O(apps), with the keys RV(request_id), RV(environments), RV(enqueued),
      RV(not_queued), RV(duplicate), RV(statuses) described above, and C(app).
  returned: when O(apps) is given
  type: list
  elements: dict
  sample: [{"app": "crm", "request_id": "deploy-7:crm", "environments": ["env_a"], "enqueued": ["env_a"],
            "not_queued": {}, "duplicate": false}]
"""

from ansible_collections.nocobase.multienv.plugins.module_utils._apps import (
    app_command_argument_spec,
    run_app_command_module,
)
from ansible_collections.nocobase.multienv.plugins.module_utils._module import run_module


def main():
    run_module(
        app_command_argument_spec(),
        run_app_command_module,
        mutually_exclusive=[("app", "apps")],
        required_one_of=[("app", "apps")],
    )


if __name__ == "__main__":
    main()
