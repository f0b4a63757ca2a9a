# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This file is private to the nocobase.multienv collection and may change at any time.
#
# What must change in PostgreSQL so that the NocoBase role exists with LOGIN CREATEDB and the
# platform's password, the superuser has the platform's password, and every node database exists
# and is owned by the NocoBase role: SQL statements with their quoting, from what was observed.

from __future__ import annotations

import re

_NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def quote_identifier(name):
    """A role or database name as an SQL identifier; only the names preflight allows get here."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError("%r is not a valid PostgreSQL name (lower-case letters, digits and '_', at most 63 "
                         "characters)" % (name,))
    return '"%s"' % name


def quote_literal(value):
    if not isinstance(value, str) or "\x00" in value:
        raise ValueError("a password must be a string without NUL characters")
    return "'%s'" % value.replace("'", "''")


def plan(observed, user, superuser, databases, user_password, superuser_password):
    """[{action, sql}]: `action` may be shown, `sql` carries passwords.

    observed: {"role": {"login", "createdb"} or None, "databases": {name: owner}, "user_login": bool,
    "superuser_login": bool}, as the postgres role reads it inside the container.
    """
    steps = []
    role, quoted_user = observed.get("role"), quote_identifier(user)
    if role is None:
        steps.append(("create role %s" % user,
                      "CREATE ROLE %s LOGIN CREATEDB PASSWORD %s;" % (quoted_user, quote_literal(user_password))))
    else:
        if not (role.get("login") and role.get("createdb")):
            steps.append(("grant LOGIN CREATEDB to %s" % user, "ALTER ROLE %s LOGIN CREATEDB;" % quoted_user))
        if not observed.get("user_login"):
            steps.append(("set the password of %s" % user,
                          "ALTER ROLE %s PASSWORD %s;" % (quoted_user, quote_literal(user_password))))
    if not observed.get("superuser_login"):
        steps.append(("set the password of %s" % superuser,
                      "ALTER ROLE %s PASSWORD %s;" % (quote_identifier(superuser), quote_literal(superuser_password))))
    owners = observed.get("databases") or {}
    for database in databases:
        if database not in owners:
            steps.append(("create database %s" % database,
                          "CREATE DATABASE %s OWNER %s;" % (quote_identifier(database), quoted_user)))
        elif owners[database] != user:
            steps.append(("make %s the owner of %s" % (user, database),
                          "ALTER DATABASE %s OWNER TO %s;" % (quote_identifier(database), quoted_user)))
    return [{"action": action, "sql": sql} for action, sql in steps]
