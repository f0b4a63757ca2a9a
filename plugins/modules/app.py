#!/usr/bin/python
# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: app
short_description: Create, update or remove NocoBase apps of a multi-environment platform
version_added: 0.1.0
description:
  - Writes app records (NocoBase's C(AppModel)) into the platform's Redis control plane (protocol v1,
    C(docs/protocol.md)), that is which environments an app runs in, its database options, and the
    environment the proxy sends its traffic to.
  - Takes one app (O(name) and its options) or many at once (O(apps)); the list form costs the same
    few Redis round trips whatever its length, and writes everything or nothing.
  - Only the options you set are compared. Starting and stopping apps is
    M(nocobase.multienv.app_command)'s job.
  - Removing an app (O(state=absent)) drops its record, its statuses and its start lock. Stop it
    first with M(nocobase.multienv.app_command) if it runs.
author:
  - NocoBase multienv maintainers (@nocobase-multienv)
extends_documentation_fragment:
  - nocobase.multienv.connection
  - nocobase.multienv.connection.ACTIONGROUP
  - nocobase.multienv.attributes
options:
  name:
    description:
      - App name. Lower-case letters, digits and V(_), starting with a letter, at most 63 characters,
        because NocoBase uses it as the app's database or schema name. V(main) is reserved for the
        supervisor's own app.
      - Mutually exclusive with O(apps).
    type: str
  title:
    description: Display title.
    type: str
  environments:
    description:
      - Environments the app runs in, in start order. An app in several environments starts in
        one at a time, in this order.
      - Required for a new app. Each must be registered (see O(require_registered_environments)).
    type: list
    elements: str
  options:
    description:
      - NocoBase C(AppModelOptions), stored as given and compared as a whole.
      - C(dbConnType) is one of V(new_database), V(new_connection), V(new_schema); C(database)
        holds C(IDatabaseOptions) such as C(database) or C(schema).
      - A database password stored here is readable by anyone who can read Redis; prefer
        NocoBase's C(encryptedDbPassword).
    type: dict
  proxy_environment:
    description:
      - The environment the proxy sends the app's traffic to when it runs in several. One of
        O(environments). Unset means the first of O(environments).
    type: str
  cname:
    description: Custom domain of the app.
    type: str
  managed_by:
    description:
      - A marker of who manages the record. The collection's playbooks set V(nocobase.multienv) and
        only ever remove apps that carry it.
    type: str
  state:
    description: V(present) creates or updates the app, V(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  apps:
    description:
      - Many apps in one task. Each item takes O(name), O(title), O(environments), O(options),
        O(proxy_environment), O(cname), O(managed_by) and O(state) as described above.
      - Mutually exclusive with O(name).
    type: list
    elements: dict
    suboptions:
      name:
        description: App name.
        type: str
        required: true
      title:
        description: Display title.
        type: str
      environments:
        description: Environments the app runs in, in start order.
        type: list
        elements: str
      options:
        description: NocoBase C(AppModelOptions).
        type: dict
      proxy_environment:
        description: Environment the proxy sends the app's traffic to.
        type: str
      cname:
        description: Custom domain.
        type: str
      managed_by:
        description: Marker of who manages the record.
        type: str
      state:
        description: V(present) or V(absent).
        type: str
        choices: [present, absent]
        default: present
  require_registered_environments:
    description:
      - Fail, naming them, when an app names environments that are not registered.
      - Set to V(false) to create apps before their workers exist.
    type: bool
    default: true
seealso:
  - module: nocobase.multienv.app_info
  - module: nocobase.multienv.app_command
  - module: nocobase.multienv.environment
"""

EXAMPLES = r"""
- name: Create the CRM app in env_a and env_b, served from env_a
  nocobase.multienv.app:
    name: crm
    title: CRM
    environments: [env_a, env_b]
    proxy_environment: env_a
    options:
      dbConnType: new_database
      database:
        database: crm
  delegate_to: localhost

- name: Reconcile many apps in one task
  nocobase.multienv.app:
    apps: "{{ nocobase_apps | map('combine', {'managed_by': 'nocobase.multienv'}) }}"
  delegate_to: localhost

- name: Remove an app
  nocobase.multienv.app:
    name: crm
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
app:
  description: The app record after the task (single form); empty when it is absent.
  returned: when O(name) is given
  type: dict
  sample: {"name": "crm", "title": "CRM", "environments": ["env_a", "env_b"], "proxyEnvironment": "env_a",
           "options": {"dbConnType": "new_database", "database": {"database": "crm"}}}
results:
  description: One entry per app of the task.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: App name.
      type: str
      returned: always
    state:
      description: The requested state.
      type: str
      returned: always
    changed:
      description: Whether this app's record changed (or would change in check mode).
      type: bool
      returned: always
    record:
      description: The record after the task; V(null) when absent.
      type: dict
      returned: always
  sample: [{"name": "crm", "state": "present", "changed": false, "record": {"name": "crm", "environments": ["env_a"]}}]
"""

from ansible_collections.nocobase.multienv.plugins.module_utils._apps import app_argument_spec, run_app_module
from ansible_collections.nocobase.multienv.plugins.module_utils._module import run_module


def main():
    run_module(
        app_argument_spec(),
        run_app_module,
        mutually_exclusive=[("name", "apps")],
        required_one_of=[("name", "apps")],
    )


if __name__ == "__main__":
    main()
