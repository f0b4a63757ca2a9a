# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This file is private to the nocobase.multienv collection and may change at any time.
#
# The Redis users of a platform (docs/protocol.md, "Access rights"). One secret, the Redis password,
# is the `default` (admin) user's; every other user's password is derived from it with HMAC, so a
# container gets only its own user's password and cannot compute another's. Redis is given only
# SHA-256 hashes of the passwords (`#<hex>` rules), never a password.

from __future__ import annotations

import hashlib

from ansible_collections.nocobase.multienv.plugins.module_utils._keyspace import (
    ControlPlaneError,
    Keyspace,
    is_environment_name,
)
from ansible_collections.nocobase.multienv.plugins.module_utils._secrets import keyed_hash

ADMIN_USER = "default"
OPERATOR_USER = "operator"
NODE_USER = "node"
AGENT_USER_PREFIX = "agent-"

# Commands a user of the collection never needs: server administration and the commands Redis
# marks dangerous (KEYS, FLUSHALL, DEBUG, ...).
_NO_ADMIN = ["-@admin", "-@dangerous"]
# What a consumer runs: its stream, hashes, sorted sets, strings, scripts and transactions.
_CONSUMER_COMMANDS = ["-@all", "+@connection", "+@transaction", "+@read", "+@stream", "+@hash", "+@sortedset",
                      "+@string", "+@scripting", "+del", "+pexpire", "+time", "-function", "-script|flush", *_NO_ADMIN]


def agent_user(environment):
    if not is_environment_name(environment):
        raise ControlPlaneError("environment: %r is not a valid environment name" % (environment,))
    return AGENT_USER_PREFIX + environment


def user_password(admin_password, user):
    """The password of `user`: the admin (Redis) password itself, or a value derived from it."""
    if not isinstance(admin_password, str) or not admin_password:
        raise ControlPlaneError("the Redis password is empty")
    if user == ADMIN_USER:
        return admin_password
    return keyed_hash(admin_password, "nocobase-multienv redis user " + user, 48)


def _password_rule(admin_password, user):
    return "#" + hashlib.sha256(user_password(admin_password, user).encode()).hexdigest()


def user_rules(admin_password, key_prefix, environments, node_user=False):
    """{user: [ACL rules]} of a platform: admin, operator, one agent per environment, `node` if asked."""
    keys = Keyspace(key_prefix)
    own = "~" + key_prefix + "*"
    users = {
        ADMIN_USER: ["on", "~*", "&*", "+@all"],
        # The control-plane modules, the apps and proxy roles: the platform's keys, no administration.
        OPERATOR_USER: ["on", "resetkeys", own, "resetchannels", "+@all", *_NO_ADMIN],
    }
    for environment in environments:
        users[agent_user(environment)] = (
            ["on", "resetkeys"] + ["~" + pattern for pattern in keys.consumer_writes(environment)]
            + ["%R" + own, "resetchannels"] + _CONSUMER_COMMANDS)
    if node_user:
        # NocoBase's commercial supervisor plugin keeps keys of its own, whose names are not ours to know.
        users[NODE_USER] = ["on", "~*", "&*", "+@all", "-@admin"]
    return {user: [_password_rule(admin_password, user)] + rules for user, rules in users.items()}


def server_arguments(admin_password, key_prefix, environments, node_user=False):
    """redis-server command-line arguments that define the users: ['--user', name, rule, ...]."""
    arguments = []
    for user, rules in user_rules(admin_password, key_prefix, environments, node_user).items():
        arguments += ["--user", user] + rules
    return arguments
