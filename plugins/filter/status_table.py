# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The status_table filter (documented in status_table.yml)."""

from __future__ import annotations

from ansible_collections.nocobase.multienv.plugins.module_utils._status import lines


def status_table(environments, apps):
    return lines(list(environments or []), list(apps or []))


class FilterModule:
    def filters(self):
        return {"status_table": status_table}
