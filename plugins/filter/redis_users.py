# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Filters for the Redis users of a platform (documented in redis_user_password.yml and redis_server_users.yml)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.nocobase.multienv.plugins.module_utils._keyspace import ControlPlaneError
from ansible_collections.nocobase.multienv.plugins.module_utils._redis_acl import server_arguments, user_password


def redis_user_password(admin_password, user):
    try:
        return user_password(admin_password, user)
    except ControlPlaneError as exc:
        raise AnsibleFilterError("redis_user_password: %s" % exc) from None


def redis_server_users(admin_password, key_prefix, environments, node_user=False):
    try:
        return server_arguments(admin_password, key_prefix, list(environments), bool(node_user))
    except ControlPlaneError as exc:
        raise AnsibleFilterError("redis_server_users: %s" % exc) from None


class FilterModule:
    def filters(self):
        return {"redis_user_password": redis_user_password, "redis_server_users": redis_server_users}
