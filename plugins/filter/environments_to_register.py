# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The environments_to_register filter (documented in environments_to_register.yml)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.nocobase.multienv.plugins.module_utils._keyspace import ControlPlaneError
from ansible_collections.nocobase.multienv.plugins.module_utils._records import environments_to_register as _to_register


def environments_to_register(records, wanted):
    try:
        return _to_register(records, wanted)
    except ControlPlaneError as exc:
        raise AnsibleFilterError("environments_to_register: %s" % exc) from None


class FilterModule:
    def filters(self):
        return {"environments_to_register": environments_to_register}
