#!/usr/bin/python
# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: platform_secrets
short_description: Load the platform secrets, generating the missing ones once (internal)
version_added: 0.2.0
description:
  - Internal to the roles of nocobase.multienv (C(roles/_common)); an action that runs on the controller.
  - Each secret (C(nocobase_app_key), C(nocobase_aes_secret_key), C(nocobase_redis_password),
    C(nocobase_postgres_password), C(nocobase_db_password), C(nocobase_root_password)) is the variable
    when it is set (vault), else the file of the same name in C(nocobase_secrets_dir). Else, with
    C(nocobase_secrets_generate), a new random value is written there once (directory 0700, file
    0600, never overwritten). Check mode writes nothing and uses a value for this run only.
  - Refuses to go on when the node volumes in O(volumes) hold data encrypted with an AES key that is
    not there any more (the secrets directory was lost) or that differs from the one loaded.
  - The secrets that are set are checked by M(nocobase.multienv.platform), which runs first; generated ones have the
    required form.
author:
  - NocoBase multienv maintainers (@nocobase-multienv)
attributes:
  check_mode:
    description: Writes no secret file in check mode; the values it would generate are used for that run only.
    support: full
  diff_mode:
    description: Secrets are never shown.
    support: none
  idempotent:
    description: A secret is generated once; later runs read it.
    support: full
options:
  volumes:
    description:
      - The platform's node storage volumes as C(community.docker.docker_host_info) lists them (C(Name),
        C(Labels)), from every Docker engine of the platform.
    type: list
    elements: dict
    default: []
  fingerprint_label:
    description: The volume label that holds the fingerprint of the AES key the volume's data is encrypted with.
    type: str
    required: true
notes:
  - Its result holds the secrets and is hidden as with C(no_log) (which would also hide why it refused to go on).
seealso:
  - module: nocobase.multienv.platform
  - plugin: nocobase.multienv.secret_fingerprint
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Load the platform secrets, generating the ones not set once
  nocobase.multienv.platform_secrets:
    volumes: "{{ node_volumes }}"
    fingerprint_label: org.nocobase.multienv.aes-key-fingerprint
  register: platform_secrets
  run_once: true
"""

RETURN = r"""
secrets:
  description: Secret name (C(app_key), C(aes_secret_key), C(redis_password), C(postgres_password), C(db_password), C(root_password)) -> value.
  returned: success
  type: dict
aes_key_fingerprint:
  description: The fingerprint of the AES key, the label value of new node volumes.
  returned: success
  type: str
verified:
  description: >-
    Check name -> the fingerprint of the container and inputs it last passed with, from the files
    C(verified-<check>) of C(nocobase_secrets_dir) the roles write (a check whose fingerprint is unchanged is
    not run again while C(nocobase_skip_unchanged) is true).
  returned: success
  type: dict
generated:
  description: The variables whose secret was generated in this run (in check mode, would be).
  returned: always
  type: list
  elements: str
"""
