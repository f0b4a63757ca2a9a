# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The postgres_plan filter (documented in postgres_plan.yml)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.nocobase.multienv.plugins.module_utils._postgres import plan


def postgres_plan(observed, user, superuser, databases, user_password, superuser_password):
    try:
        return plan(observed, user, superuser, list(databases), user_password, superuser_password)
    except ValueError as exc:
        raise AnsibleFilterError("postgres_plan: %s" % exc) from None


class FilterModule:
    def filters(self):
        return {"postgres_plan": postgres_plan}
