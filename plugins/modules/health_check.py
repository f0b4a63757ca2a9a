#!/usr/bin/python
# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: health_check
short_description: Wait until a NocoBase node (or the proxy) answers its health check
version_added: 0.2.0
description:
  - Polls an HTTP health URL inside this one task until it answers C(200) with the expected body,
    as NocoBase's C(/api/__health_check) answers C(ok) once the node is up. A healthy deploy prints
    no retry lines; on timeout the task fails with the last answer it saw.
  - With O(root_account), it then signs in to NocoBase with that account and returns whether it was
    accepted (RV(signed_in)). A refusal does not fail the task; the caller says what it means.
  - With O(read_version) it then waits, within the same O(timeout), until the node reports its version
    (NocoBase's public C(app:getInfo)), and with O(apps) until each of those sub-apps answers as itself.
  - Runs where the URL is reachable, usually the Docker host that publishes the node's port.
author:
  - NocoBase multienv maintainers (@nocobase-multienv)
extends_documentation_fragment:
  - nocobase.multienv.attributes.INFO_MODULE
options:
  url:
    description: Base URL of the node, for example V(http://127.0.0.1:14000).
    type: str
    required: true
  path:
    description: Path of the health check.
    type: str
    default: /api/__health_check
  expect:
    description: The body that means healthy (compared trimmed, in any case).
    type: str
    default: ok
  timeout:
    description: Seconds to wait in all.
    type: float
    default: 600
  interval:
    description: Seconds between two requests.
    type: float
    default: 2
  request_timeout:
    description: Seconds one request may take.
    type: float
    default: 5
  root_account:
    description: E-mail or user name to sign in with once the node is healthy.
    type: str
  root_password:
    description: Its password.
    type: str
  read_version:
    description: Wait until the node reports its version, and return it (RV(version)).
    type: bool
    default: false
  apps:
    description:
      - Sub-apps of the node's multi-app manager that must answer C(/api/__app/<app>/app:getInfo) with
        their own name (NocoBase's gateway starts a stopped one on that request).
      - The task fails naming each app that did not, with its last answer.
    type: list
    elements: str
    default: []
seealso:
  - module: nocobase.multienv.environment_info
"""

EXAMPLES = r"""
- name: Wait until the supervisor is up and accepts the platform's root account
  nocobase.multienv.health_check:
    url: http://127.0.0.1:14000
    root_account: root@example.com
    root_password: "{{ vault_root_password }}"
  register: supervisor_health
  no_log: true

- name: Wait for the proxy's own health URL
  nocobase.multienv.health_check:
    url: http://127.0.0.1:8080
    path: /__nocobase_proxy_health
    timeout: 60
"""

RETURN = r"""
elapsed:
  description: Seconds it waited.
  returned: always
  type: float
  sample: 18.9
attempts:
  description: Requests it made.
  returned: always
  type: int
  sample: 10
signed_in:
  description: Whether the sign-in with O(root_account) was accepted.
  returned: when O(root_account) is set
  type: bool
sign_in_status:
  description: HTTP status of the sign-in (V(200) when accepted, V(401) for wrong credentials).
  returned: when O(root_account) is set
  type: int
version:
  description: The version the node reports on C(app:getInfo).
  returned: when O(read_version) is true
  type: str
  sample: 2.2.15
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.nocobase.multienv.plugins.module_utils._health import (
    sign_in_status,
    wait_apps_answer,
    wait_healthy,
    wait_version,
)
from ansible_collections.nocobase.multienv.plugins.module_utils._keyspace import is_app_name


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", required=True),
            path=dict(type="str", default="/api/__health_check"),
            expect=dict(type="str", default="ok"),
            timeout=dict(type="float", default=600),
            interval=dict(type="float", default=2),
            request_timeout=dict(type="float", default=5),
            root_account=dict(type="str"),
            root_password=dict(type="str", no_log=True),
            read_version=dict(type="bool", default=False),
            apps=dict(type="list", elements="str", default=[]),
        ),
        required_together=[("root_account", "root_password")],
        supports_check_mode=True,
    )
    params = module.params
    for app in params["apps"]:
        if not is_app_name(app):
            module.fail_json(msg="apps: %r is not an app name" % (app,))
    url = params["url"].rstrip("/") + params["path"]
    ok, elapsed, attempts, last = wait_healthy(url, params["expect"], params["timeout"], params["interval"],
                                               params["request_timeout"])
    result = dict(changed=False, elapsed=elapsed, attempts=attempts)
    if not ok:
        module.fail_json(msg="%s did not answer %r within %g s (%d requests); last: %s"
                         % (url, params["expect"], params["timeout"], attempts, last), **result)
    if params["root_account"]:
        # Signing in hashes the password: it may take longer than a health request.
        status = sign_in_status(params["url"], params["root_account"], params["root_password"],
                                max(params["request_timeout"], 30))
        result.update(signed_in=status == 200, sign_in_status=status)
    if params["read_version"]:
        version, last, waited = wait_version(params["url"], max(0.0, params["timeout"] - elapsed), params["interval"],
                                             params["request_timeout"])
        elapsed = result["elapsed"] = round(elapsed + waited, 1)
        if version is None:
            module.fail_json(msg="%s/api/app:getInfo did not report a version within %g s; last: %s"
                             % (params["url"].rstrip("/"), params["timeout"], last), **result)
        result["version"] = version
    if params["apps"]:
        silent, waited = wait_apps_answer(params["url"], params["apps"], max(0.0, params["timeout"] - elapsed),
                                          params["interval"], params["request_timeout"])
        result["elapsed"] = round(elapsed + waited, 1)
        if silent:
            module.fail_json(msg="%s: apps that did not answer as themselves within %g s: %s"
                             % (params["url"], params["timeout"],
                                "; ".join("%s (%s)" % item for item in sorted(silent.items()))), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
