# Copyright (c) nocobase.multienv contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The secret_fingerprint filter (documented in secret_fingerprint.yml)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.nocobase.multienv.plugins.module_utils._secrets import fingerprint


def secret_fingerprint(value, platform):
    try:
        return fingerprint(value, platform)
    except ValueError as exc:
        raise AnsibleFilterError("secret_fingerprint: %s" % exc) from None


class FilterModule:
    def filters(self):
        return {"secret_fingerprint": secret_fingerprint}
