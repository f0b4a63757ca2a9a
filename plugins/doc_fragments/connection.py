# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Pairs with connection_argument_spec() in plugins/module_utils/_connection.py.

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  redis_url:
    description:
      - URL of the Redis server that holds the platform's control plane (protocol v1, see C(docs/protocol.md)).
      - V(redis://) or V(rediss://) (TLS), with an optional user and password and a database number,
        for example V(redis://:secret@127.0.0.1:6379/0) or V(rediss://nocobase:secret@redis.example.com:6380/0).
      - If not set, the value of the environment variable E(APP_SUPERVISOR_REDIS_URL) is used,
        the same variable NocoBase's supervisor and workers read.
      - The whole URL and the password in it are kept out of logs and output.
    type: str
    required: true
  key_prefix:
    description:
      - Prefix of every key of the control plane. Two platforms can share one Redis with two prefixes.
      - One segment of letters, digits, C(_), C(.) or C(-), ending in C(:) (for example V(nocobase:) or
        V(staging:)), so that one platform's prefix can never name another's keys.
    type: str
    default: "nocobase:"
  tls_ca_file:
    description:
      - CA bundle to verify the server's certificate with, for V(rediss://) URLs.
    type: path
  tls_cert_file:
    description:
      - Client certificate for V(rediss://) URLs. Requires O(tls_key_file).
    type: path
  tls_key_file:
    description:
      - Private key of O(tls_cert_file).
    type: path
  validate_certs:
    description:
      - Whether to verify the server's certificate for V(rediss://) URLs.
    type: bool
    default: true
  connect_timeout:
    description:
      - Seconds to wait for a connection and for each reply.
    type: float
    default: 10.0
notes:
  - The modules talk to Redis from the host they run on. Run them on the controller (C(delegate_to=localhost))
    or on any host that reaches Redis. They need no Python library beyond the standard one.
"""

    ACTIONGROUP = r"""
attributes:
  action_group:
    description: Use C(group/nocobase.multienv.control_plane) in C(module_defaults) to set the connection options once.
    support: full
    membership:
      - nocobase.multienv.control_plane
"""
